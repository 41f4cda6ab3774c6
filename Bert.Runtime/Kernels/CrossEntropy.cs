using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;

namespace Bert.Runtime.Kernels;

/// <summary>Softmax cross-entropy: loss = mean, over the rows whose label is not ignoreIndex, of
/// -log softmax(logits[n])[labels[n]]; 0 when no row counts. N rows · V classes (vocabulary).
/// Forward saves the softmax of every row (ignored rows included) for Backward.</summary>
public static class CrossEntropy
{
    /// <summary>The label of a row that counts for nothing (Hugging Face's and PyTorch's -100).</summary>
    public const int DefaultIgnoreIndex = -100;

    // Below this many logits the work is too small to pay for a parallel loop.
    const int ParallelMinElements = 1 << 15;

    public static unsafe void Forward<T>(Span<T> loss, Span<T> probs, ReadOnlySpan<T> logits, ReadOnlySpan<int> labels,
        int N, int V, int ignoreIndex = DefaultIgnoreIndex)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // loss (1), probs (N,V), logits (N,V), labels (N)
        Check(probs.Length, logits.Length, labels.Length, N, V);
        int count = CountAndCheckLabels(labels, N, V, ignoreIndex);
        T sum = T.Zero;
        if ((long)N * V < ParallelMinElements || Environment.ProcessorCount == 1)
        {
            for (int n = 0; n < N; n++) sum += ForwardRow(probs, logits, labels, n, V, ignoreIndex);
        }
        else
        {
            T[] rowLoss = ArrayPool<T>.Shared.Rent(N); // (N) loss of each row, summed below in row order
            try
            {
                fixed (T* pProbs = probs, pLogits = logits, pRow = rowLoss)
                fixed (int* pLabels = labels)
                {
                    var body = new ForwardRows<T> { Probs = pProbs, Logits = pLogits, Labels = pLabels, RowLoss = pRow, N = N, V = V, IgnoreIndex = ignoreIndex };
                    Par.For(N, RowGrain(V), ref body);
                }
                for (int n = 0; n < N; n++) sum += rowLoss[n];
            }
            finally { ArrayPool<T>.Shared.Return(rowLoss); }
        }
        loss[0] = count == 0 ? T.Zero : sum / T.CreateTruncating(count);
    }

    /// <summary>Writes the softmax of row n (max subtracted first, for stability) and returns its loss, 0 if ignored: three
    /// passes over the row (the maximum; the exponentials and their sum; the division).</summary>
    static T ForwardRow<T>(Span<T> probs, ReadOnlySpan<T> logits, ReadOnlySpan<int> labels, int n, int V, int ignoreIndex)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ReadOnlySpan<T> x = logits.Slice(n * V, V); // (V)
        Span<T> p = probs.Slice(n * V, V);          // (V)
        T max = TensorPrimitives.Max(x);
        T sum = VMath.ExpShiftedSum(x, max, p);   // p = e^(x − max), and their sum, in one pass
        TensorPrimitives.Divide(p, sum, p);
        int label = labels[n];
        return label == ignoreIndex ? T.Zero : T.Log(sum) + max - x[label];
    }

    /// <summary>dLogits (N,V) += (or, <paramref name="accumulate"/> false, =: rows of ignored labels, or all when none counts,
    /// then zeros) g·(probs − onehot(label)), g = dLoss / the counted rows; dLoss (1), probs (N,V), labels (N).</summary>
    public static unsafe void Backward<T>(Span<T> dLogits, ReadOnlySpan<T> dLoss, ReadOnlySpan<T> probs, ReadOnlySpan<int> labels,
        int N, int V, int ignoreIndex = DefaultIgnoreIndex, bool accumulate = true)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        Check(dLogits.Length, probs.Length, labels.Length, N, V);
        int count = CountAndCheckLabels(labels, N, V, ignoreIndex);
        if (count == 0)
        {
            if (!accumulate) dLogits.Slice(0, N * V).Clear();
            return;
        }
        T g = dLoss[0] / T.CreateTruncating(count); // d loss / d logit = g · (probs - onehot(label))
        if ((long)N * V < ParallelMinElements || Environment.ProcessorCount == 1)
        {
            for (int n = 0; n < N; n++) BackwardRow(dLogits, probs, labels, n, V, ignoreIndex, g, accumulate);
            return;
        }
        fixed (T* pd = dLogits, pProbs = probs)
        fixed (int* pLabels = labels)
        {
            var body = new BackwardRows<T> { DLogits = pd, Probs = pProbs, Labels = pLabels, N = N, V = V, IgnoreIndex = ignoreIndex, G = g, Accumulate = accumulate };
            Par.For(N, RowGrain(V), ref body);
        }
    }

    /// <summary>Rows per task: about Par.Grain logits (rows are independent, so the split does not change results).</summary>
    static int RowGrain(int V) => Math.Max(1, Par.Grain / V);

    unsafe struct ForwardRows<T> : IRangeBody where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        public T* Probs, Logits, RowLoss; public int* Labels; public int N, V, IgnoreIndex;

        public readonly void Run(int lo, int hi)
        {
            for (int n = lo; n < hi; n++)
                RowLoss[n] = ForwardRow(new Span<T>(Probs, N * V), new ReadOnlySpan<T>(Logits, N * V), new ReadOnlySpan<int>(Labels, N), n, V, IgnoreIndex);
        }
    }

    unsafe struct BackwardRows<T> : IRangeBody where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        public T* DLogits, Probs; public int* Labels; public int N, V, IgnoreIndex; public T G; public bool Accumulate;

        public readonly void Run(int lo, int hi)
        {
            for (int n = lo; n < hi; n++)
                BackwardRow(new Span<T>(DLogits, N * V), new ReadOnlySpan<T>(Probs, N * V), new ReadOnlySpan<int>(Labels, N), n, V, IgnoreIndex, G, Accumulate);
        }
    }

    static void BackwardRow<T>(Span<T> dLogits, ReadOnlySpan<T> probs, ReadOnlySpan<int> labels, int n, int V, int ignoreIndex, T g, bool accumulate)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int label = labels[n];
        Span<T> d = dLogits.Slice(n * V, V); // (V)
        if (label == ignoreIndex)
        {
            if (!accumulate) d.Clear();
            return;
        }
        if (accumulate) TensorPrimitives.MultiplyAdd(probs.Slice(n * V, V), g, d, d);
        else TensorPrimitives.Multiply(probs.Slice(n * V, V), g, d);
        d[label] -= g;
    }

    static int CountAndCheckLabels(ReadOnlySpan<int> labels, int N, int V, int ignoreIndex)
    {
        int count = 0;
        for (int n = 0; n < N; n++)
        {
            int label = labels[n];
            if (label == ignoreIndex) continue;
            if ((uint)label >= (uint)V)
                throw new ArgumentOutOfRangeException(nameof(labels), label,
                    $"CrossEntropy label {label} at row {n} is outside the classes [0, {V}) and is not the ignore index {ignoreIndex}.");
            count++;
        }
        return count;
    }

    static void Check(int aLen, int bLen, int labelsLen, int N, int V)
    {
        if (N < 0 || V <= 0) throw new ArgumentOutOfRangeException(nameof(V), $"CrossEntropy needs N >= 0 and V > 0; got N = {N}, V = {V}.");
        if (aLen < N * V || bLen < N * V || labelsLen < N)
            throw new ArgumentException($"CrossEntropy buffers are too short for N = {N}, V = {V}: need (N,V) = {N * V} and (N) = {N} elements.");
    }
}
