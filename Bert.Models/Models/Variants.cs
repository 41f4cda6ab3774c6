using Bert.Dsl;
using static Bert.Dsl.Ops;

namespace Bert.Models;

/// <summary>Pre-LayerNorm BERT: each sub-layer normalizes its input and adds its output to the residual stream,
/// x + Dropout(Attn(LN(x))), x + Dropout(FFN(LN(x))), with one LayerNorm after the stack (Xiong et al. 2020: it
/// trains without a long warm-up). The layout and tensor names are transformers' Megatron-BERT
/// (model_type "megatron-bert"): no LayerNorm in the embeddings, attention.ln and ln inside each layer, and
/// bert.encoder.ln at the end, so a checkpoint of one never loads into post-LN BERT by mistake.</summary>
public partial class PreLnArchitecture : BertArchitecture
{
    /// <summary>Word + position + token-type embeddings and dropout; the layers normalize.</summary>
    [Block]
    public partial class PreLnEmbeddings
    {
        [Param(Vocab, Hidden, Hf = "word_embeddings.weight")] internal Tensor Word;
        [Param(MaxLen, Hidden, Hf = "position_embeddings.weight")] Tensor Position;
        [Param(Types, Hidden, Hf = "token_type_embeddings.weight")] Tensor Type;

        public Tensor Forward(Tokens ids, Tokens types) =>
            Dropout(Embed(Word, ids) + Positions(Position) + Embed(Type, types), 0.1f);
    }

    /// <summary>One pre-LN encoder layer.</summary>
    [Block]
    public partial class PreLnLayer
    {
        [Param(Hidden, Init = Init.Ones, Hf = "attention.ln.weight")] Tensor Ln1W;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.ln.bias")] Tensor Ln1B;
        [Param(Hidden, Hidden, Hf = "attention.self.query.weight")] Tensor Wq;
        [Param(Hidden, Hidden, Hf = "attention.self.key.weight")] Tensor Wk;
        [Param(Hidden, Hidden, Hf = "attention.self.value.weight")] Tensor Wv;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.self.query.bias")] Tensor Bq;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.self.key.bias")] Tensor Bk;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.self.value.bias")] Tensor Bv;
        [Param(Hidden, Hidden, Hf = "attention.output.dense.weight")] Tensor Wo;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.output.dense.bias")] Tensor Bo;
        [Param(Hidden, Init = Init.Ones, Hf = "ln.weight")] Tensor Ln2W;
        [Param(Hidden, Init = Init.Zeros, Hf = "ln.bias")] Tensor Ln2B;
        [Param(Ffn, Hidden, Hf = "intermediate.dense.weight")] Tensor W1;
        [Param(Ffn, Init = Init.Zeros, Hf = "intermediate.dense.bias")] Tensor B1;
        [Param(Hidden, Ffn, Hf = "output.dense.weight")] Tensor W2;
        [Param(Hidden, Init = Init.Zeros, Hf = "output.dense.bias")] Tensor B2;

        public Tensor Forward(Tensor x, Mask mask)
        {
            var ctx = Attention(Linear(LayerNorm(x, Ln1W, Ln1B), Cat(Wq, Wk, Wv), Cat(Bq, Bk, Bv)), mask, Heads, 0.1f);
            x = x + Dropout(Linear(ctx, Wo, Bo), 0.1f);
            var h = Gelu(Linear(LayerNorm(x, Ln2W, Ln2B), W1, B1));
            return x + Dropout(Linear(h, W2, B2), 0.1f);
        }
    }

    /// <summary>The LayerNorm after the last layer.</summary>
    [Block]
    public partial class FinalNorm
    {
        [Param(Hidden, Init = Init.Ones, Hf = "weight")] Tensor W;
        [Param(Hidden, Init = Init.Zeros, Hf = "bias")] Tensor B;
        public Tensor Forward(Tensor x) => LayerNorm(x, W, B);
    }
}

/// <summary>Pre-LN pre-training: masked LM + next sentence, as <see cref="BertPreTraining"/>.</summary>
[Model]
public partial class BertPreLnPreTraining : PreLnArchitecture
{
    [Stack(1, Hf = "bert.embeddings.")] PreLnEmbeddings embeddings;
    [Stack(Layers, Hf = "bert.encoder.layer.{i}.")] PreLnLayer layers;
    [Stack(1, Hf = "bert.encoder.ln.")] FinalNorm norm;
    [Stack(1, Hf = "bert.pooler.")] Pooler pooler;
    [Stack(1, Hf = "cls.predictions.")] MlmHead mlm;
    [Stack(1, Hf = "cls.seq_relationship.")] Output nsp;

    public Tensor Forward(Tokens ids, Tokens types, Mask mask, Rows masked, [Shape(Dim.Rows)] Labels mlmLabels, Labels nspLabels)
    {
        var x = norm.Forward(layers.Forward(embeddings.Forward(ids, types), mask));
        var mlmLogits = mlm.Forward(Gather(x, masked), embeddings.Word);
        var nspLogits = nsp.Forward(pooler.Forward(x));
        return CrossEntropy(mlmLogits, mlmLabels) + CrossEntropy(nspLogits, nspLabels);
    }
}

/// <summary>Pre-LN sequence classification, as <see cref="BertClassifier"/>.</summary>
[Model]
public partial class BertPreLnClassifier : PreLnArchitecture
{
    [Stack(1, Hf = "bert.embeddings.")] PreLnEmbeddings embeddings;
    [Stack(Layers, Hf = "bert.encoder.layer.{i}.")] PreLnLayer layers;
    [Stack(1, Hf = "bert.encoder.ln.")] FinalNorm norm;
    [Stack(1, Hf = "bert.pooler.")] Pooler pooler;
    [Stack(1, Hf = "classifier.")] Output classifier;

    public Tensor Forward(Tokens ids, Tokens types, Mask mask, Labels labels)
    {
        var x = norm.Forward(layers.Forward(embeddings.Forward(ids, types), mask));
        return CrossEntropy(classifier.Forward(Dropout(pooler.Forward(x), 0.1f)), labels);
    }
}

[Model] public partial class BertMiniPreLnPreTraining : BertPreLnPreTraining { public new const int Hidden = 256, Layers = 4, Heads = 4; }
[Model] public partial class BertMiniPreLnClassifier : BertPreLnClassifier { public new const int Hidden = 256, Layers = 4, Heads = 4; }
[Model] public partial class BertNanoPreLnPreTraining : BertPreLnPreTraining { public new const int Hidden = 32, Layers = 2, Heads = 4, MaxLen = 64; }
[Model] public partial class BertNanoPreLnClassifier : BertPreLnClassifier { public new const int Hidden = 32, Layers = 2, Heads = 4, MaxLen = 64; }

/// <summary>Token classification (named entities, parts of speech): an N-way output at every position, as
/// transformers' BertForTokenClassification (no pooler). Labels are per token, [B, T]; -100 marks the positions
/// that do not count (padding, [CLS]/[SEP], the continuation pieces of a word). The default nine classes are
/// CoNLL-2003's BIO tags.</summary>
[Model]
public partial class BertTokenClassifier : BertArchitecture
{
    public new const int Classes = 9;

    [Stack(1, Hf = "bert.embeddings.")] Embeddings embeddings;
    [Stack(Layers, Hf = "bert.encoder.layer.{i}.")] Layer layers;
    [Stack(1, Hf = "classifier.")] Output classifier;

    public Tensor Forward(Tokens ids, Tokens types, Mask mask, [Shape(Dim.Batch, Dim.Seq)] Labels labels)
    {
        var x = layers.Forward(embeddings.Forward(ids, types), mask);
        return CrossEntropy(classifier.Forward(Dropout(x, 0.1f)), labels);
    }
}

[Model] public partial class BertNanoTokenClassifier : BertTokenClassifier { public new const int Hidden = 32, Layers = 2, Heads = 4, MaxLen = 64, Classes = 5; }
/// <summary>BERT-Mini and BERT-Base taggers: CoNLL-2003's nine BIO tags, and 48 for larger tag sets (Penn Treebank's 45
/// parts of speech, OntoNotes' 37 entity tags; a set with fewer tags leaves the rest unused).</summary>
[Model] public partial class BertMiniTokenClassifier : BertTokenClassifier { public new const int Hidden = 256, Layers = 4, Heads = 4; }
[Model] public partial class BertMini48TokenClassifier : BertTokenClassifier { public new const int Hidden = 256, Layers = 4, Heads = 4, Classes = 48; }
[Model] public partial class BertBaseTokenClassifier : BertTokenClassifier { public new const int Hidden = 768, Layers = 12, Heads = 12; }
[Model] public partial class BertBase48TokenClassifier : BertTokenClassifier { public new const int Hidden = 768, Layers = 12, Heads = 12, Classes = 48; }
