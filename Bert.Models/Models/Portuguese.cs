using Bert.Dsl;

namespace Bert.Models;

// BERT-Mini (Hidden 256, 4 layers, 4 heads) over the Portuguese vocabulary: Vocab is the size of the cased,
// accent-keeping WordPiece vocabulary `bert vocab --lang pt` builds (Bert.Data.Portuguese.VocabSize is this
// constant; why 8000 is explained there), not bert-base-uncased's 30522, so the embedding and the MLM head hold only
// entries that occur. The model files compile on their own (the generator tests build them alone), hence the literal.
// Catalog size "mini-pt".
[Model] public partial class BertMiniPtPreTraining : BertPreTraining { public new const int Vocab = 8000, Hidden = 256, Layers = 4, Heads = 4; }
[Model] public partial class BertMiniPtClassifier : BertClassifier { public new const int Vocab = 8000, Hidden = 256, Layers = 4, Heads = 4; }
[Model] public partial class BertMiniPt3Classifier : BertClassifier { public new const int Vocab = 8000, Hidden = 256, Layers = 4, Heads = 4, Classes = 3; }
