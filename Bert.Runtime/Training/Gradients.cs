using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;

namespace Bert.Runtime.Training;

/// <summary>Global-norm gradient clipping as <c>torch.nn.utils.clip_grad_norm_</c> (2-norm over all parameters at
/// once), and the finiteness check a training loop stops on.</summary>
public static unsafe class GradientClipping
{
    /// <summary>‖grads‖₂ over the whole buffer. Deterministic on every machine: squares are summed in double
    /// within fixed chunks (four accumulators in a fixed pattern, no SIMD width dependence), and the chunk sums
    /// are added in chunk order.</summary>
    public static double GlobalNorm<T>(ReadOnlySpan<T> grads) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int chunks = ParameterChunks.ChunksOf(grads.Length);
        if (chunks == 0) return 0;
        var partial = ArrayPool<double>.Shared.Rent(chunks);
        try
        {
            fixed (T* g = grads)
            fixed (double* p = partial)
            {
                var body = new ChunkSquares<T> { G = g, N = grads.Length, Partial = p };
                Par.For(chunks, ref body);
            }
            double sum = 0;
            for (int c = 0; c < chunks; c++) sum += partial[c];
            return Math.Sqrt(sum);
        }
        finally { ArrayPool<double>.Shared.Return(partial); }
    }

    struct ChunkSquares<T> : IRangeBody where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        public T* G; public int N; public double* Partial;

        public readonly void Run(int lo, int hi)
        {
            for (int c = lo; c < hi; c++)
            {
                int s = c * ParameterChunks.ChunkSize, e = Math.Min(s + ParameterChunks.ChunkSize, N);
                Partial[c] = SumOfSquares(G + s, e - s);
            }
        }
    }

    /// <summary>Σ x² in double with four accumulators in a fixed pattern (the same bits on every machine).</summary>
    internal static double SumOfSquares<T>(T* x, int n) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        int i = 0;
        for (; i <= n - 4; i += 4)
        {
            double x0 = double.CreateTruncating(x[i]), x1 = double.CreateTruncating(x[i + 1]);
            double x2 = double.CreateTruncating(x[i + 2]), x3 = double.CreateTruncating(x[i + 3]);
            a0 += x0 * x0; a1 += x1 * x1; a2 += x2 * x2; a3 += x3 * x3;
        }
        for (; i < n; i++) { double xi = double.CreateTruncating(x[i]); a0 += xi * xi; }
        return (a0 + a1) + (a2 + a3);
    }

    /// <summary>Scales grads in place so their global norm is at most maxNorm, and returns the norm before
    /// clipping. As PyTorch: coef = maxNorm / (norm + 1e-6), applied only when coef &lt; 1 (clamped to 1), so
    /// gradients under the limit keep their bits. A NaN or infinite norm leaves grads untouched; check the
    /// returned value (or AllFinite) and skip the step.</summary>
    public static double ClipByGlobalNorm<T>(Span<T> grads, double maxNorm) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (!(maxNorm > 0 && double.IsFinite(maxNorm)))
            throw new ArgumentOutOfRangeException(nameof(maxNorm), $"The clipping norm {maxNorm} must be positive and finite.");
        double norm = GlobalNorm<T>(grads);
        if (!double.IsFinite(norm)) return norm;
        double coef = maxNorm / (norm + 1e-6);
        if (coef < 1) TensorPrimitives.Multiply(grads, T.CreateTruncating(coef), grads);
        return norm;
    }

    /// <summary>True when no element is NaN or ±∞ (check the loss or the gradients and stop training otherwise);
    /// true for an empty span (TensorPrimitives.IsFiniteAll alone answers false there).</summary>
    public static bool AllFinite<T>(ReadOnlySpan<T> xs) where T : unmanaged, IBinaryFloatingPointIeee754<T>
        => xs.IsEmpty || TensorPrimitives.IsFiniteAll(xs);
}

/// <summary>Gradient accumulation over micro-batches. Backward adds (+=) into Model.Gradients, so running
/// Forward/Backward on k micro-batches without ZeroGradients in between leaves the sum of their gradients; scale
/// by 1/k before clipping and the optimizer step to get the mean a k-times larger batch would give (when the
/// loss is a mean over each micro-batch of equal size):
/// <code>
/// model.ZeroGradients();
/// for (int i = 0; i &lt; k; i++) { /* set inputs of micro-batch i */ model.Forward(true, seed); model.Backward(); }
/// GradientAccumulator.Scale(model.Gradients, 1f / k);
/// GradientClipping.ClipByGlobalNorm(model.Gradients, 1.0);
/// optimizer.Step(model.Parameters, model.Gradients, schedule.At(optimizer.StepCount));
/// </code></summary>
public static class GradientAccumulator
{
    /// <summary>grads ← factor · grads, in place.</summary>
    public static void Scale<T>(Span<T> grads, T factor) where T : unmanaged, IBinaryFloatingPointIeee754<T>
        => TensorPrimitives.Multiply(grads, factor, grads);
}
