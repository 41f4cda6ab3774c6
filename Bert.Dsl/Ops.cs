namespace Bert.Dsl;

/// <summary>The op vocabulary of forward methods (<c>using static Bert.Dsl.Ops;</c>).
/// Dimension letters: B batch · T sequence · C hidden · H heads · D head size · F feed-forward · V vocabulary · G gathered rows.</summary>
public static class Ops
{
    /// <summary>x[..., K] · w[K, N] → [..., N].</summary>
    public static Tensor MatMul(Tensor x, Tensor w) => throw Compiled.Only();
    /// <summary>x[..., In] · w[Out, In]ᵀ + b[Out] → [..., Out]; w laid out as Hugging Face's nn.Linear.</summary>
    public static Tensor Linear(Tensor x, Tensor w, Tensor b) => throw Compiled.Only();
    /// <summary>x[..., In] · w[Out, In]ᵀ → [..., Out].</summary>
    public static Tensor Linear(Tensor x, Tensor w) => throw Compiled.Only();
    /// <summary>Concatenates weights declared next to each other along their first axis, at no cost:
    /// <c>Linear(x, Cat(Wq, Wk, Wv), Cat(Bq, Bk, Bv))</c> is one GEMM for Q, K and V.</summary>
    public static Tensor Cat(params Tensor[] parts) => throw Compiled.Only();
    /// <summary>table[V, C] gathered at ids[B, T] → [B, T, C].</summary>
    public static Tensor Embed(Tensor table, Tokens ids) => throw Compiled.Only();
    /// <summary>The first T rows of table[P, C] → [T, C] (position embeddings).</summary>
    public static Tensor Positions(Tensor table) => throw Compiled.Only();
    /// <summary>Layer normalization over the last axis, ε = 1e-12 as in BERT.</summary>
    public static Tensor LayerNorm(Tensor x, Tensor gamma, Tensor beta) => throw Compiled.Only();
    /// <summary>Multi-head self-attention: qkv[B, T, 3C] → [B, T, C]; scaled QKᵀ, additive padding mask,
    /// softmax, dropout on the probabilities, ·V.</summary>
    public static Tensor Attention(Tensor qkv, Mask mask, int heads, float dropout) => throw Compiled.Only();
    /// <summary>Inverted dropout with probability p while training; the mask is regenerated in backward.</summary>
    public static Tensor Dropout(Tensor x, float p) => throw Compiled.Only();
    /// <summary>x[B, T, C] at rows[G] of the flattened [B·T] → [G, C].</summary>
    public static Tensor Gather(Tensor x, Rows rows) => throw Compiled.Only();
    /// <summary>x[B, T, C] → x[:, 0, :] = [B, C].</summary>
    public static Tensor First(Tensor x) => throw Compiled.Only();
    /// <summary>x[B, T, K] → [B, K, T], y[b, k, t] = x[b, t, k]; K a constant. For extractive question answering: the start
    /// and end logits of <c>Linear(x, W[2, C], b[2])</c> turned to rows over the positions, so that
    /// <c>CrossEntropy(Transpose(logits), span)</c> with <c>[Shape(Dim.Batch, 2)] Labels span</c> (start and end positions)
    /// is a cross-entropy over the T positions of each of the B·2 rows, averaged: transformers' BertForQuestionAnswering
    /// loss, (start loss + end loss) / 2.</summary>
    public static Tensor Transpose(Tensor x) => throw Compiled.Only();
    /// <summary>Mean softmax cross-entropy of logits[N, K] against labels[N]; label -100 is ignored. → scalar.
    /// Per token: logits[B, T, K] against labels declared <c>[Shape(Dim.Batch, Dim.Seq)] Labels</c>; over positions:
    /// <c>Transpose</c>'s [B, K, T] against labels declared <c>[Shape(Dim.Batch, K)] Labels</c>.</summary>
    public static Tensor CrossEntropy(Tensor logits, Labels labels) => throw Compiled.Only();

    public static Tensor Gelu(Tensor x) => throw Compiled.Only();
    public static Tensor GeluTanh(Tensor x) => throw Compiled.Only();
    public static Tensor Tanh(Tensor x) => throw Compiled.Only();
    public static Tensor Relu(Tensor x) => throw Compiled.Only();
    public static Tensor Swish(Tensor x) => throw Compiled.Only();
    public static Tensor Sigmoid(Tensor x) => throw Compiled.Only();
}
