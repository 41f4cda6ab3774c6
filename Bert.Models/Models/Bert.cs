using Bert.Dsl;
using static Bert.Dsl.Ops;

namespace Bert.Models;


/// <summary>The BERT architecture (Devlin et al. 2018), declared once: post-LayerNorm encoder layers,
/// GELU (erf), dropout 0.1, N(0, 0.02) initialization, Hugging Face tensor names. The constants are
/// BERT-Tiny's; a model class deriving from one of the models below re-declares them for another size.</summary>
public partial class BertArchitecture
{
    public const int Vocab = 30522, Hidden = 128, Layers = 2, Heads = 2, Ffn = 4 * Hidden, MaxLen = 512, Types = 2, Classes = 2;

    /// <summary>Word + position + token-type embeddings, LayerNorm, dropout.</summary>
    [Block]
    public partial class Embeddings
    {
        [Param(Vocab, Hidden, Hf = "word_embeddings.weight")] internal Tensor Word;
        [Param(MaxLen, Hidden, Hf = "position_embeddings.weight")] Tensor Position;
        [Param(Types, Hidden, Hf = "token_type_embeddings.weight")] Tensor Type;
        [Param(Hidden, Init = Init.Ones, Hf = "LayerNorm.weight")] Tensor LnW;
        [Param(Hidden, Init = Init.Zeros, Hf = "LayerNorm.bias")] Tensor LnB;

        public Tensor Forward(Tokens ids, Tokens types) =>
            Dropout(LayerNorm(Embed(Word, ids) + Positions(Position) + Embed(Type, types), LnW, LnB), 0.1f);
    }

    /// <summary>One encoder layer: self-attention, then the feed-forward network, each wrapped in
    /// dropout + residual + LayerNorm.</summary>
    [Block]
    public partial class Layer
    {
        [Param(Hidden, Hidden, Hf = "attention.self.query.weight")] Tensor Wq;
        [Param(Hidden, Hidden, Hf = "attention.self.key.weight")] Tensor Wk;
        [Param(Hidden, Hidden, Hf = "attention.self.value.weight")] Tensor Wv;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.self.query.bias")] Tensor Bq;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.self.key.bias")] Tensor Bk;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.self.value.bias")] Tensor Bv;
        [Param(Hidden, Hidden, Hf = "attention.output.dense.weight")] Tensor Wo;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.output.dense.bias")] Tensor Bo;
        [Param(Hidden, Init = Init.Ones, Hf = "attention.output.LayerNorm.weight")] Tensor Ln1W;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.output.LayerNorm.bias")] Tensor Ln1B;
        [Param(Ffn, Hidden, Hf = "intermediate.dense.weight")] Tensor W1;
        [Param(Ffn, Init = Init.Zeros, Hf = "intermediate.dense.bias")] Tensor B1;
        [Param(Hidden, Ffn, Hf = "output.dense.weight")] Tensor W2;
        [Param(Hidden, Init = Init.Zeros, Hf = "output.dense.bias")] Tensor B2;
        [Param(Hidden, Init = Init.Ones, Hf = "output.LayerNorm.weight")] Tensor Ln2W;
        [Param(Hidden, Init = Init.Zeros, Hf = "output.LayerNorm.bias")] Tensor Ln2B;

        public Tensor Forward(Tensor x, Mask mask)
        {
            var ctx = Attention(Linear(x, Cat(Wq, Wk, Wv), Cat(Bq, Bk, Bv)), mask, Heads, 0.1f);
            x = LayerNorm(x + Dropout(Linear(ctx, Wo, Bo), 0.1f), Ln1W, Ln1B);
            var h = Gelu(Linear(x, W1, B1));
            return LayerNorm(x + Dropout(Linear(h, W2, B2), 0.1f), Ln2W, Ln2B);
        }
    }

    /// <summary>First token → dense → tanh.</summary>
    [Block]
    public partial class Pooler
    {
        [Param(Hidden, Hidden, Hf = "dense.weight")] Tensor W;
        [Param(Hidden, Init = Init.Zeros, Hf = "dense.bias")] Tensor B;
        public Tensor Forward(Tensor x) => Tanh(Linear(First(x), W, B));
    }

    /// <summary>Masked-LM head on the gathered positions: dense + GELU + LayerNorm, then the decoder tied to
    /// the word embeddings plus an output bias.</summary>
    [Block]
    public partial class MlmHead
    {
        [Param(Hidden, Hidden, Hf = "transform.dense.weight")] Tensor W;
        [Param(Hidden, Init = Init.Zeros, Hf = "transform.dense.bias")] Tensor B;
        [Param(Hidden, Init = Init.Ones, Hf = "transform.LayerNorm.weight")] Tensor LnW;
        [Param(Hidden, Init = Init.Zeros, Hf = "transform.LayerNorm.bias")] Tensor LnB;
        [Param(Vocab, Init = Init.Zeros, Hf = "bias")] Tensor DecoderBias;
        public Tensor Forward(Tensor h, Tensor wordEmbeddings) =>
            Linear(LayerNorm(Gelu(Linear(h, W, B)), LnW, LnB), wordEmbeddings, DecoderBias);
    }

    /// <summary>A linear N-way output (next-sentence prediction, sequence or token classification).</summary>
    [Block]
    public partial class Output
    {
        [Param(Classes, Hidden, Hf = "weight")] Tensor W;
        [Param(Classes, Init = Init.Zeros, Hf = "bias")] Tensor B;
        public Tensor Forward(Tensor x) => Linear(x, W, B);
    }
}

/// <summary>BERT pre-training: masked LM on the gathered positions plus next-sentence prediction;
/// returns the sum of both losses.</summary>
[Model]
public partial class BertPreTraining : BertArchitecture
{
    [Stack(1, Hf = "bert.embeddings.")] Embeddings embeddings;
    [Stack(Layers, Hf = "bert.encoder.layer.{i}.")] Layer layers;
    [Stack(1, Hf = "bert.pooler.")] Pooler pooler;
    [Stack(1, Hf = "cls.predictions.")] MlmHead mlm;
    [Stack(1, Hf = "cls.seq_relationship.")] Output nsp;

    public Tensor Forward(Tokens ids, Tokens types, Mask mask, Rows masked, [Shape(Dim.Rows)] Labels mlmLabels, Labels nspLabels)
    {
        var x = layers.Forward(embeddings.Forward(ids, types), mask);
        var mlmLogits = mlm.Forward(Gather(x, masked), embeddings.Word);
        var nspLogits = nsp.Forward(pooler.Forward(x));
        return CrossEntropy(mlmLogits, mlmLabels) + CrossEntropy(nspLogits, nspLabels);
    }
}

/// <summary>Sequence classification: pooler, dropout, N-way output; returns the mean cross-entropy.</summary>
[Model]
public partial class BertClassifier : BertArchitecture
{
    [Stack(1, Hf = "bert.embeddings.")] Embeddings embeddings;
    [Stack(Layers, Hf = "bert.encoder.layer.{i}.")] Layer layers;
    [Stack(1, Hf = "bert.pooler.")] Pooler pooler;
    [Stack(1, Hf = "classifier.")] Output classifier;

    public Tensor Forward(Tokens ids, Tokens types, Mask mask, Labels labels)
    {
        var x = layers.Forward(embeddings.Forward(ids, types), mask);
        return CrossEntropy(classifier.Forward(Dropout(pooler.Forward(x), 0.1f)), labels);
    }
}

// Sizes as published (Turc et al. 2019; Devlin et al. 2018). Feed-forward 4C follows from Hidden.
[Model] public partial class BertMiniPreTraining : BertPreTraining { public new const int Hidden = 256, Layers = 4, Heads = 4; }
[Model] public partial class BertMiniClassifier : BertClassifier { public new const int Hidden = 256, Layers = 4, Heads = 4; }
[Model] public partial class BertBasePreTraining : BertPreTraining { public new const int Hidden = 768, Layers = 12, Heads = 12; }

/// <summary>BERT-Nano (2 layers, hidden 32, 4 heads): small enough for gradient checks and smoke runs.</summary>
[Model] public partial class BertNanoPreTraining : BertPreTraining { public new const int Hidden = 32, Layers = 2, Heads = 4, MaxLen = 64; }
[Model] public partial class BertNanoClassifier : BertClassifier { public new const int Hidden = 32, Layers = 2, Heads = 4, MaxLen = 64, Classes = 3; }

[Model] public partial class BertSmallPreTraining : BertPreTraining { public new const int Hidden = 512, Layers = 4, Heads = 8; }
[Model] public partial class BertMediumPreTraining : BertPreTraining { public new const int Hidden = 512, Layers = 8, Heads = 8; }
[Model] public partial class BertLargePreTraining : BertPreTraining { public new const int Hidden = 1024, Layers = 24, Heads = 16; }
[Model] public partial class BertSmallClassifier : BertClassifier { public new const int Hidden = 512, Layers = 4, Heads = 8; }
[Model] public partial class BertMediumClassifier : BertClassifier { public new const int Hidden = 512, Layers = 8, Heads = 8; }
[Model] public partial class BertBaseClassifier : BertClassifier { public new const int Hidden = 768, Layers = 12, Heads = 12; }
[Model] public partial class BertLargeClassifier : BertClassifier { public new const int Hidden = 1024, Layers = 24, Heads = 16; }
/// <summary>BERT-Mini with a three-way output (negative, neutral, positive).</summary>
[Model] public partial class BertMini3Classifier : BertClassifier { public new const int Hidden = 256, Layers = 4, Heads = 4, Classes = 3; }
/// <summary>More classes: five (star ratings, SST-5) and twenty (topics: AG News' 4, DBpedia's 14, 20 Newsgroups); a set
/// with fewer classes than a model's leaves the rest unused (the command line picks the smallest that fits).</summary>
[Model] public partial class BertMini5Classifier : BertClassifier { public new const int Hidden = 256, Layers = 4, Heads = 4, Classes = 5; }
[Model] public partial class BertMini20Classifier : BertClassifier { public new const int Hidden = 256, Layers = 4, Heads = 4, Classes = 20; }
[Model] public partial class BertBase3Classifier : BertClassifier { public new const int Hidden = 768, Layers = 12, Heads = 12, Classes = 3; }
[Model] public partial class BertBase5Classifier : BertClassifier { public new const int Hidden = 768, Layers = 12, Heads = 12, Classes = 5; }
[Model] public partial class BertBase20Classifier : BertClassifier { public new const int Hidden = 768, Layers = 12, Heads = 12, Classes = 20; }
