using System.Numerics;
using System.Numerics.Tensors;

namespace Bert.Runtime.Kernels;

/// <summary>Layer normalization over the last dimension:
/// out = (inp - mean) · rstd · weight + bias, rstd = 1 / sqrt(var + eps), var the biased variance.
/// N rows (B·T) · C hidden. Forward saves mean and rstd per row for Backward.</summary>
public static class LayerNorm
{
    // Below this many elements the work is too small to pay for Parallel.For.
    const int ParallelMinElements = 1 << 15;
    // Columns per task in the dWeight/dBias reduction.
    const int ColumnBlock = 64;

    public static unsafe void Forward<T>(Span<T> out_, Span<T> mean, Span<T> rstd, ReadOnlySpan<T> inp,
        ReadOnlySpan<T> weight, ReadOnlySpan<T> bias, int N, int C, double eps)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // out_ (N,C), mean (N), rstd (N), inp (N,C), weight (C), bias (C)
        Check(out_.Length, inp.Length, weight.Length, bias.Length, N, C);
        if (mean.Length < N || rstd.Length < N) throw new ArgumentException($"LayerNorm mean and rstd need {N} elements; they have {mean.Length} and {rstd.Length}.");
        T e = T.CreateTruncating(eps);
        if ((long)N * C < ParallelMinElements || Environment.ProcessorCount == 1)
        {
            for (int n = 0; n < N; n++) ForwardRow(out_, mean, rstd, inp, weight, bias, n, C, e);
            return;
        }
        fixed (T* pOut = out_, pMean = mean, pRstd = rstd, pInp = inp, pW = weight, pB = bias)
        {
            // Each row is written by exactly one task: no shared outputs, so the result is independent of scheduling.
            nint o = (nint)pOut, m = (nint)pMean, r = (nint)pRstd, x = (nint)pInp, w = (nint)pW, bb = (nint)pB;
            Parallel.For(0, N, n => ForwardRow(
                new Span<T>((void*)o, N * C), new Span<T>((void*)m, N), new Span<T>((void*)r, N),
                new ReadOnlySpan<T>((void*)x, N * C), new ReadOnlySpan<T>((void*)w, C), new ReadOnlySpan<T>((void*)bb, C),
                n, C, e));
        }
    }

    static void ForwardRow<T>(Span<T> out_, Span<T> mean, Span<T> rstd, ReadOnlySpan<T> inp,
        ReadOnlySpan<T> weight, ReadOnlySpan<T> bias, int n, int C, T eps)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ReadOnlySpan<T> x = inp.Slice(n * C, C);  // (C)
        Span<T> y = out_.Slice(n * C, C);         // (C)
        T c = T.CreateTruncating(C);
        T m = TensorPrimitives.Sum(x) / c;
        TensorPrimitives.Subtract(x, m, y);       // y = x - mean
        T v = TensorPrimitives.SumOfSquares<T>(y) / c;
        T s = T.One / T.Sqrt(v + eps);
        TensorPrimitives.Multiply(y, s, y);       // y = norm
        TensorPrimitives.MultiplyAdd<T>(y, weight, bias, y);
        mean[n] = m;
        rstd[n] = s;
    }

    public static unsafe void Backward<T>(Span<T> dInp, Span<T> dWeight, Span<T> dBias, ReadOnlySpan<T> dOut,
        ReadOnlySpan<T> inp, ReadOnlySpan<T> weight, ReadOnlySpan<T> mean, ReadOnlySpan<T> rstd, int N, int C)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // dInp (N,C) +=, dWeight (C) +=, dBias (C) +=, dOut (N,C), inp (N,C), weight (C), mean (N), rstd (N)
        Check(dInp.Length, inp.Length, weight.Length, dWeight.Length, N, C);
        if (dOut.Length < N * C || dBias.Length < C || mean.Length < N || rstd.Length < N)
            throw new ArgumentException($"LayerNorm.Backward needs dOut of {N * C}, dBias of {C}, mean and rstd of {N} elements.");
        if ((long)N * C < ParallelMinElements || Environment.ProcessorCount == 1)
        {
            for (int n = 0; n < N; n++) BackwardRow(dInp, dOut, inp, weight, mean, rstd, n, C);
            ParamColumns(dWeight, dBias, dOut, inp, mean, rstd, 0, C, N, C);
            return;
        }
        fixed (T* pdInp = dInp, pdW = dWeight, pdB = dBias, pdOut = dOut, pInp = inp, pW = weight, pMean = mean, pRstd = rstd)
        {
            nint di = (nint)pdInp, dw = (nint)pdW, db = (nint)pdB, dO = (nint)pdOut, x = (nint)pInp, w = (nint)pW, m = (nint)pMean, r = (nint)pRstd;
            // dInp: one task per row, each owning its row.
            Parallel.For(0, N, n => BackwardRow(
                new Span<T>((void*)di, N * C), new ReadOnlySpan<T>((void*)dO, N * C), new ReadOnlySpan<T>((void*)x, N * C),
                new ReadOnlySpan<T>((void*)w, C), new ReadOnlySpan<T>((void*)m, N), new ReadOnlySpan<T>((void*)r, N), n, C));
            // dWeight, dBias: one task per block of columns; each column sums its rows in the order n = 0..N-1,
            // so the result does not depend on the partitioning or the thread count.
            int blocks = (C + ColumnBlock - 1) / ColumnBlock;
            Parallel.For(0, blocks, blk => ParamColumns(
                new Span<T>((void*)dw, C), new Span<T>((void*)db, C), new ReadOnlySpan<T>((void*)dO, N * C),
                new ReadOnlySpan<T>((void*)x, N * C), new ReadOnlySpan<T>((void*)m, N), new ReadOnlySpan<T>((void*)r, N),
                blk * ColumnBlock, Math.Min(C, (blk + 1) * ColumnBlock), N, C));
        }
    }

    static void BackwardRow<T>(Span<T> dInp, ReadOnlySpan<T> dOut, ReadOnlySpan<T> inp, ReadOnlySpan<T> weight,
        ReadOnlySpan<T> mean, ReadOnlySpan<T> rstd, int n, int C)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ReadOnlySpan<T> x = inp.Slice(n * C, C), dy = dOut.Slice(n * C, C); // (C)
        Span<T> dx = dInp.Slice(n * C, C);                                  // (C)
        T m = mean[n], s = rstd[n];
        // dx = rstd · (w·dy - mean(w·dy) - norm · mean(w·dy·norm))
        T dNormMean = T.Zero, dNormNormMean = T.Zero;
        for (int i = 0; i < C; i++)
        {
            T norm = (x[i] - m) * s;
            T dNorm = weight[i] * dy[i];
            dNormMean += dNorm;
            dNormNormMean += dNorm * norm;
        }
        T c = T.CreateTruncating(C);
        dNormMean /= c;
        dNormNormMean /= c;
        for (int i = 0; i < C; i++)
        {
            T norm = (x[i] - m) * s;
            dx[i] += (weight[i] * dy[i] - dNormMean - norm * dNormNormMean) * s;
        }
    }

    static void ParamColumns<T>(Span<T> dWeight, Span<T> dBias, ReadOnlySpan<T> dOut, ReadOnlySpan<T> inp,
        ReadOnlySpan<T> mean, ReadOnlySpan<T> rstd, int c0, int c1, int N, int C)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        for (int n = 0; n < N; n++)
        {
            T m = mean[n], s = rstd[n];
            int row = n * C;
            for (int i = c0; i < c1; i++)
            {
                T dy = dOut[row + i];
                dBias[i] += dy;
                dWeight[i] += (inp[row + i] - m) * s * dy;
            }
        }
    }

    static void Check(int outLen, int inpLen, int weightLen, int otherLen, int N, int C)
    {
        if (N < 0 || C <= 0) throw new ArgumentOutOfRangeException(nameof(C), $"LayerNorm needs N >= 0 and C > 0; got N = {N}, C = {C}.");
        if (outLen < N * C || inpLen < N * C || weightLen < C || otherLen < C)
            throw new ArgumentException($"LayerNorm buffers are too short for N = {N}, C = {C}: need (N,C) = {N * C} and (C) = {C} elements.");
    }
}
