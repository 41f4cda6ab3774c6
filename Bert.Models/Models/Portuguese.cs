using Bert.Dsl;

namespace Bert.Models;

// BERT-Mini (Hidden 256, 4 layers, 4 heads) over the Portuguese vocabulary: Vocab is Bert.Data.Portuguese.VocabSize
// (the cased, accent-keeping WordPiece vocabulary `bert vocab --lang pt` builds), not bert-base-uncased's 30522,
// so the embedding and the MLM head hold only the entries that occur. Catalog size "mini-pt".
[Model] public partial class BertMiniPtPreTraining : BertPreTraining { public new const int Vocab = Bert.Data.Portuguese.VocabSize, Hidden = 256, Layers = 4, Heads = 4; }
[Model] public partial class BertMiniPtClassifier : BertClassifier { public new const int Vocab = Bert.Data.Portuguese.VocabSize, Hidden = 256, Layers = 4, Heads = 4; }
[Model] public partial class BertMiniPt3Classifier : BertClassifier { public new const int Vocab = Bert.Data.Portuguese.VocabSize, Hidden = 256, Layers = 4, Heads = 4, Classes = 3; }
