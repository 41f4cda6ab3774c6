using Bert.Dsl;
using static Bert.Dsl.Ops;

namespace Bert.Models;

/// <summary>ALBERT-style classifier (Lan et al. 2019): a factorized embedding of width E projected to C, and
/// one set of encoder-layer weights shared by every layer. Tensor names are those of transformers'
/// AlbertForSequenceClassification with one layer group of one layer (num_hidden_groups = inner_group_num = 1).</summary>
[Model]
public partial class AlbertClassifier : BertArchitecture
{
    public const int Embedding = 128; public new const int Hidden = 256, Layers = 4, Heads = 4;

    [Param(Vocab, Embedding, Hf = "albert.embeddings.word_embeddings.weight")] Tensor Word;
    [Param(MaxLen, Embedding, Hf = "albert.embeddings.position_embeddings.weight")] Tensor Position;
    [Param(Types, Embedding, Hf = "albert.embeddings.token_type_embeddings.weight")] Tensor Type;
    [Param(Embedding, Init = Init.Ones, Hf = "albert.embeddings.LayerNorm.weight")] Tensor LnW;
    [Param(Embedding, Init = Init.Zeros, Hf = "albert.embeddings.LayerNorm.bias")] Tensor LnB;
    [Param(Hidden, Embedding, Hf = "albert.encoder.embedding_hidden_mapping_in.weight")] Tensor Project;
    [Param(Hidden, Init = Init.Zeros, Hf = "albert.encoder.embedding_hidden_mapping_in.bias")] Tensor ProjectB;
    [Stack(Layers, Shared = true, Hf = "albert.encoder.albert_layer_groups.0.albert_layers.0.")] AlbertLayer layers;
    [Stack(1, Hf = "albert.pooler.")] AlbertPooler pooler;
    [Stack(1, Hf = "classifier.")] Output classifier;

    /// <summary>BERT's post-LayerNorm encoder layer under ALBERT's names: attention.{query,key,value,dense,LayerNorm},
    /// ffn, ffn_output, full_layer_layer_norm.</summary>
    [Block]
    public partial class AlbertLayer
    {
        [Param(Hidden, Hidden, Hf = "attention.query.weight")] Tensor Wq;
        [Param(Hidden, Hidden, Hf = "attention.key.weight")] Tensor Wk;
        [Param(Hidden, Hidden, Hf = "attention.value.weight")] Tensor Wv;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.query.bias")] Tensor Bq;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.key.bias")] Tensor Bk;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.value.bias")] Tensor Bv;
        [Param(Hidden, Hidden, Hf = "attention.dense.weight")] Tensor Wo;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.dense.bias")] Tensor Bo;
        [Param(Hidden, Init = Init.Ones, Hf = "attention.LayerNorm.weight")] Tensor Ln1W;
        [Param(Hidden, Init = Init.Zeros, Hf = "attention.LayerNorm.bias")] Tensor Ln1B;
        [Param(Ffn, Hidden, Hf = "ffn.weight")] Tensor W1;
        [Param(Ffn, Init = Init.Zeros, Hf = "ffn.bias")] Tensor B1;
        [Param(Hidden, Ffn, Hf = "ffn_output.weight")] Tensor W2;
        [Param(Hidden, Init = Init.Zeros, Hf = "ffn_output.bias")] Tensor B2;
        [Param(Hidden, Init = Init.Ones, Hf = "full_layer_layer_norm.weight")] Tensor Ln2W;
        [Param(Hidden, Init = Init.Zeros, Hf = "full_layer_layer_norm.bias")] Tensor Ln2B;

        public Tensor Forward(Tensor x, Mask mask)
        {
            var ctx = Attention(Linear(x, Cat(Wq, Wk, Wv), Cat(Bq, Bk, Bv)), mask, Heads, 0.1f);
            x = LayerNorm(x + Dropout(Linear(ctx, Wo, Bo), 0.1f), Ln1W, Ln1B);
            var h = Gelu(Linear(x, W1, B1));
            return LayerNorm(x + Dropout(Linear(h, W2, B2), 0.1f), Ln2W, Ln2B);
        }
    }

    /// <summary>ALBERT's pooler is a bare linear layer (albert.pooler.weight), not BERT's pooler.dense.</summary>
    [Block]
    public partial class AlbertPooler
    {
        [Param(Hidden, Hidden, Hf = "weight")] Tensor W;
        [Param(Hidden, Init = Init.Zeros, Hf = "bias")] Tensor B;
        public Tensor Forward(Tensor x) => Tanh(Linear(First(x), W, B));
    }

    public Tensor Forward(Tokens ids, Tokens types, Mask mask, Labels labels)
    {
        var e = Dropout(LayerNorm(Embed(Word, ids) + Positions(Position) + Embed(Type, types), LnW, LnB), 0.1f);
        var x = layers.Forward(Linear(e, Project, ProjectB), mask);
        return CrossEntropy(classifier.Forward(Dropout(pooler.Forward(x), 0.1f)), labels);
    }
}

/// <summary>ALBERT at gradient-check size.</summary>
[Model] public partial class AlbertNanoClassifier : AlbertClassifier { public new const int Embedding = 8, Hidden = 16, Layers = 3, Heads = 2, MaxLen = 32; }
