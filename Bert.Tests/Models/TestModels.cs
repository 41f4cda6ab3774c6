using Bert.Dsl;
using static Bert.Dsl.Ops;
using static Bert.Dsl.Scalar;

namespace Bert.Tests.Models;

/// <summary>Every element-wise construct: built-in activations, a user [Pointwise] function with a
/// conditional, arithmetic with scalars and broadcasting, MatMul and dropout, on a tensor input.</summary>
[Model]
public partial class PointwiseZoo
{
    public const int C = 6, N = 5, MaxLen = 8;

    [Param(C, N)] Tensor W;
    [Param(N)] Tensor Bias;
    [Param(C)] Tensor Scale;

    [Pointwise] static float LeakyRelu(float x) => x > 0f ? x : 0.01f * x;
    [Pointwise] static float SoftClip(float x, float y) => x * Tanh(y) / (1f + Abs(y)) - Log(1f + Exp(-Max(x, y)));

    public Tensor Forward([Shape(Dim.Batch, Dim.Seq, C)] Tensor x)
    {
        var a = Gelu(x) + GeluTanh(x) * Scale - Sigmoid(x) / 2f;
        var b = Swish(a) + Relu(a) + Tanh(a) + LeakyRelu(x);
        var h = MatMul(Dropout(b, 0.25f), W) + Bias;
        return SoftClip(h, -h * 0.5f + 1f);
    }
}

/// <summary>Sums whose sides share an input: y = h + Linear(h) after a LayerNorm (h also feeds the product), then
/// z = Linear(y) + y·2 and t = Tanh(y) + z; the plan lets one side of a sum share the output's gradient buffer, never
/// two sides when another op adds into one of them (Plan.GradAliases).</summary>
[Model]
public partial class SharedResidual
{
    public const int C = 6, MaxLen = 8;
    [Param(C, Init = Init.Ones)] Tensor Gamma;
    [Param(C, Init = Init.Zeros)] Tensor Beta;
    [Param(C, C)] Tensor W;
    [Param(C)] Tensor B;
    [Param(C, C)] Tensor V;

    public Tensor Forward([Shape(Dim.Batch, Dim.Seq, C)] Tensor x)
    {
        var h = LayerNorm(x, Gamma, Beta);
        var y = h + Linear(h, W, B);
        var z = Linear(y, V) + y * 2f;
        return Tanh(y) + z;
    }
}

/// <summary>The two matrix-product ops on a tensor input, for their gradient property.</summary>
[Model]
public partial class MatrixOps
{
    public const int C = 5, F = 7, N = 3, MaxLen = 6;
    [Param(F, C)] Tensor W1;
    [Param(F)] Tensor B1;
    [Param(F, N)] Tensor W2;

    public Tensor Forward([Shape(Dim.Batch, Dim.Seq, C)] Tensor x) => MatMul(Linear(x, W1, B1), W2);
}

/// <summary>A BERT-named feed-forward block with transformers' "gelu_new" (the tanh approximation), for config.json's
/// hidden_act.</summary>
[Model]
public partial class TanhGeluFeedForward
{
    public const int Hidden = 8, Ffn = 16, MaxLen = 8;
    [Param(Ffn, Hidden, Hf = "bert.encoder.layer.0.intermediate.dense.weight")] Tensor W1;
    [Param(Ffn, Init = Init.Zeros, Hf = "bert.encoder.layer.0.intermediate.dense.bias")] Tensor B1;
    [Param(Hidden, Ffn, Hf = "bert.encoder.layer.0.output.dense.weight")] Tensor W2;

    public Tensor Forward([Shape(Dim.Batch, Dim.Seq, Hidden)] Tensor x) => Linear(GeluTanh(Linear(x, W1, B1)), W2);
}

/// <summary>Extractive question answering's head (transformers' BertForQuestionAnswering) on an embedding: the start and end
/// logits [B,T,2] turned into rows over the positions [B,2,T], one cross-entropy over the B·2 rows against the start and end
/// positions.</summary>
[Model]
public partial class QaSpanHead
{
    public const int Vocab = 13, Hidden = 4, MaxLen = 16;
    [Param(Vocab, Hidden, Hf = "bert.embeddings.word_embeddings.weight")] Tensor Words;
    [Param(2, Hidden, Hf = "qa_outputs.weight")] Tensor W;
    [Param(2, Init = Init.Zeros, Hf = "qa_outputs.bias")] Tensor B;

    public Tensor Forward(Tokens ids, [Shape(Dim.Batch, 2)] Labels span) =>
        CrossEntropy(Transpose(Linear(Tanh(Embed(Words, ids)), W, B)), span);
}

/// <summary>Transposes and element-wise ops on values whose last axis is the run-time sequence length T: h is read by a
/// transpose (whose backward then adds into h's gradient) and by Tanh (whose backward writes it first); the sum after them
/// is one fused kernel over [B,K,T].</summary>
[Model]
public partial class TransposeZoo
{
    public const int C = 5, K = 3, MaxLen = 8;
    [Param(K, C)] Tensor W;
    [Param(K)] Tensor Bias;

    public Tensor Forward([Shape(Dim.Batch, Dim.Seq, C)] Tensor x)
    {
        var h = Linear(x, W, Bias);
        var t = Transpose(h);
        var u = Transpose(Tanh(h));
        return Tanh(t) * u + t * 0.5f;
    }
}
