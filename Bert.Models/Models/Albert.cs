using Bert.Dsl;
using static Bert.Dsl.Ops;

namespace Bert.Models;

/// <summary>ALBERT-style classifier (Lan et al. 2019): a factorized embedding of width E projected to C, and
/// one set of encoder-layer weights shared by every layer.</summary>
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
    [Stack(Layers, Shared = true, Hf = "albert.encoder.albert_layer_groups.0.albert_layers.0.")] Layer layers;
    [Stack(1, Hf = "albert.pooler.")] Pooler pooler;
    [Stack(1, Hf = "classifier.")] Output classifier;

    public Tensor Forward(Tokens ids, Tokens types, Mask mask, Labels labels)
    {
        var e = Dropout(LayerNorm(Embed(Word, ids) + Positions(Position) + Embed(Type, types), LnW, LnB), 0.1f);
        var x = layers.Forward(Linear(e, Project, ProjectB), mask);
        return CrossEntropy(classifier.Forward(Dropout(pooler.Forward(x), 0.1f)), labels);
    }
}

/// <summary>ALBERT at gradient-check size.</summary>
[Model] public partial class AlbertNanoClassifier : AlbertClassifier { public new const int Embedding = 8, Hidden = 16, Layers = 3, Heads = 2, MaxLen = 32; }
