using System.Runtime.CompilerServices;
using System.Numerics;

namespace Bert.Runtime.Kernels;

/// <summary>Layer normalization over the last dimension:
/// out = (inp - mean) · rstd · weight + bias, rstd = 1 / sqrt(var + eps), var the biased variance.
/// N rows (B·T) · C hidden. Forward saves mean and rstd per row for Backward.</summary>
public static class LayerNorm
{
    // Below this many elements the work is too small to pay for a parallel loop.
    const int ParallelMinElements = 1 << 15;

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
            var body = new ForwardRows<T> { Out = pOut, Mean = pMean, Rstd = pRstd, Inp = pInp, W = pW, B = pB, N = N, C = C, Eps = e };
            Par.For(N, Math.Max(1, Par.Grain / C), ref body);
        }
    }

    unsafe struct ForwardRows<T> : IRangeBody where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        public T* Out, Mean, Rstd, Inp, W, B; public int N, C; public T Eps;

        public readonly void Run(int lo, int hi)
        {
            for (int n = lo; n < hi; n++)
                ForwardRow(new Span<T>(Out, N * C), new Span<T>(Mean, N), new Span<T>(Rstd, N), new ReadOnlySpan<T>(Inp, N * C),
                    new ReadOnlySpan<T>(W, C), new ReadOnlySpan<T>(B, C), n, C, Eps);
        }
    }

    /// <remarks>Vector&lt;T&gt; loops of its own rather than TensorPrimitives: compiled optimized at the first call (the
    /// library's generic methods start at tier 0 and take dozens of forwards to be rejitted, which a short predict or eval
    /// run pays on every forward), and never inlined into the row loop's caller, whose inlining budget it would share.</remarks>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void ForwardRow<T>(Span<T> out_, Span<T> mean, Span<T> rstd, ReadOnlySpan<T> inp,
        ReadOnlySpan<T> weight, ReadOnlySpan<T> bias, int n, int C, T eps)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ReadOnlySpan<T> x = inp.Slice(n * C, C);  // (C)
        Span<T> y = out_.Slice(n * C, C);         // (C)
        int W = Vector.IsHardwareAccelerated ? Vector<T>.Count : int.MaxValue, i;
        T c = T.CreateTruncating(C);
        // mean
        var acc = Vector<T>.Zero;
        for (i = 0; i + W <= C; i += W) acc += new Vector<T>(x.Slice(i));
        T sum = Vector.Sum(acc);
        for (; i < C; i++) sum += x[i];
        T m = sum / c;
        // y = x - mean, and the sum of its squares
        var vm = new Vector<T>(m);
        acc = Vector<T>.Zero;
        for (i = 0; i + W <= C; i += W)
        {
            var d = new Vector<T>(x.Slice(i)) - vm;
            d.CopyTo(y.Slice(i));
            acc += d * d;
        }
        T squares = Vector.Sum(acc);
        for (; i < C; i++) { T d = x[i] - m; y[i] = d; squares += d * d; }
        T s = T.One / T.Sqrt(squares / c + eps);
        // y = (y · rstd) · weight + bias
        var vs = new Vector<T>(s);
        for (i = 0; i + W <= C; i += W)
            (new Vector<T>(y.Slice(i)) * vs * new Vector<T>(weight.Slice(i)) + new Vector<T>(bias.Slice(i))).CopyTo(y.Slice(i));
        for (; i < C; i++) y[i] = y[i] * s * weight[i] + bias[i];
        mean[n] = m;
        rstd[n] = s;
    }

    /// <summary>dInp (N,C) += (or, <paramref name="accumulate"/> false, =), dWeight (C) +=, dBias (C) +=; dOut (N,C), inp (N,C),
    /// weight (C), mean (N), rstd (N).</summary>
    public static unsafe void Backward<T>(Span<T> dInp, Span<T> dWeight, Span<T> dBias, ReadOnlySpan<T> dOut,
        ReadOnlySpan<T> inp, ReadOnlySpan<T> weight, ReadOnlySpan<T> mean, ReadOnlySpan<T> rstd, int N, int C, bool accumulate = true)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        Check(dInp.Length, inp.Length, weight.Length, dWeight.Length, N, C);
        if (dOut.Length < N * C || dBias.Length < C || mean.Length < N || rstd.Length < N)
            throw new ArgumentException($"LayerNorm.Backward needs dOut of {N * C}, dBias of {C}, mean and rstd of {N} elements.");
        if ((long)N * C < ParallelMinElements || Environment.ProcessorCount == 1)
        {
            for (int n = 0; n < N; n++) BackwardRow(dInp, dOut, inp, weight, mean, rstd, n, C, accumulate);
            ParamColumns(dWeight, dBias, dOut, inp, mean, rstd, 0, C, N, C);
            return;
        }
        fixed (T* pdInp = dInp, pdW = dWeight, pdB = dBias, pdOut = dOut, pInp = inp, pW = weight, pMean = mean, pRstd = rstd)
        {
            var body = new BackwardRows<T> { DInp = pdInp, DW = pdW, DB = pdB, DOut = pdOut, Inp = pInp, W = pW, Mean = pMean, Rstd = pRstd, N = N, C = C, Accumulate = accumulate };
            // dInp: each row owned by one task.
            Par.For(N, Math.Max(1, Par.Grain / C), ref body);
            // dWeight, dBias: one task per block of columns; each column sums its rows in the order n = 0..N-1,
            // so the result does not depend on the partitioning or the thread count.
            body.Columns = true;
            Par.For(C, Par.ColumnGrain(N, C), ref body);
        }
    }

    unsafe struct BackwardRows<T> : IRangeBody where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        public T* DInp, DW, DB, DOut, Inp, W, Mean, Rstd; public int N, C; public bool Columns, Accumulate;

        /// <summary>Rows lo .. hi - 1 of dInp, or (Columns) columns lo .. hi - 1 of dWeight and dBias.</summary>
        public readonly void Run(int lo, int hi)
        {
            if (Columns)
                ParamColumns(new Span<T>(DW, C), new Span<T>(DB, C), new ReadOnlySpan<T>(DOut, N * C), new ReadOnlySpan<T>(Inp, N * C),
                    new ReadOnlySpan<T>(Mean, N), new ReadOnlySpan<T>(Rstd, N), lo, hi, N, C);
            else
                for (int n = lo; n < hi; n++)
                    BackwardRow(new Span<T>(DInp, N * C), new ReadOnlySpan<T>(DOut, N * C), new ReadOnlySpan<T>(Inp, N * C),
                        new ReadOnlySpan<T>(W, C), new ReadOnlySpan<T>(Mean, N), new ReadOnlySpan<T>(Rstd, N), n, C, Accumulate);
        }
    }

    /// <remarks>Vector&lt;T&gt; loops, as <see cref="ForwardRow{T}"/>: the row's two sums are taken lane by lane and then
    /// across the lanes.</remarks>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void BackwardRow<T>(Span<T> dInp, ReadOnlySpan<T> dOut, ReadOnlySpan<T> inp, ReadOnlySpan<T> weight,
        ReadOnlySpan<T> mean, ReadOnlySpan<T> rstd, int n, int C, bool accumulate)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ReadOnlySpan<T> x = inp.Slice(n * C, C), dy = dOut.Slice(n * C, C); // (C)
        Span<T> dx = dInp.Slice(n * C, C);                                  // (C)
        int W = Vector.IsHardwareAccelerated ? Vector<T>.Count : int.MaxValue, i;
        T m = mean[n], s = rstd[n];
        var vm = new Vector<T>(m); var vs = new Vector<T>(s);
        // dx = rstd · (w·dy - mean(w·dy) - norm · mean(w·dy·norm))
        Vector<T> aMean = Vector<T>.Zero, aNormMean = Vector<T>.Zero;
        for (i = 0; i + W <= C; i += W)
        {
            var norm = (new Vector<T>(x.Slice(i)) - vm) * vs;
            var dNorm = new Vector<T>(weight.Slice(i)) * new Vector<T>(dy.Slice(i));
            aMean += dNorm;
            aNormMean += dNorm * norm;
        }
        T dNormMean = Vector.Sum(aMean), dNormNormMean = Vector.Sum(aNormMean);
        for (; i < C; i++)
        {
            T norm = (x[i] - m) * s;
            T dNorm = weight[i] * dy[i];
            dNormMean += dNorm;
            dNormNormMean += dNorm * norm;
        }
        T c = T.CreateTruncating(C);
        dNormMean /= c;
        dNormNormMean /= c;
        var vMean = new Vector<T>(dNormMean); var vNormMean = new Vector<T>(dNormNormMean);
        for (i = 0; i + W <= C; i += W)
        {
            var norm = (new Vector<T>(x.Slice(i)) - vm) * vs;
            var d = (new Vector<T>(weight.Slice(i)) * new Vector<T>(dy.Slice(i)) - vMean - norm * vNormMean) * vs;
            (accumulate ? new Vector<T>(dx.Slice(i)) + d : d).CopyTo(dx.Slice(i));
        }
        for (; i < C; i++)
        {
            T norm = (x[i] - m) * s;
            T d = (weight[i] * dy[i] - dNormMean - norm * dNormNormMean) * s;
            dx[i] = accumulate ? dx[i] + d : d;
        }
    }

    /// <summary>dBias[i] += Σₙ dy[n, i] and dWeight[i] += Σₙ (x[n, i] − mean[n]) · rstd[n] · dy[n, i] for columns c0 .. c1 − 1,
    /// each column's terms added in the order n = 0 .. N − 1 (the same bits whichever way the columns are split). Two vectors of
    /// columns at a time, their sums held in registers across the rows.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void ParamColumns<T>(Span<T> dWeight, Span<T> dBias, ReadOnlySpan<T> dOut, ReadOnlySpan<T> inp,
        ReadOnlySpan<T> mean, ReadOnlySpan<T> rstd, int c0, int c1, int N, int C)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // Without vector hardware the scalar loop takes every column (W stays finite: c1 - i >= 2·W cannot overflow).
        bool vec = Vector.IsHardwareAccelerated;
        int W = Vector<T>.Count, i = c0;
        for (; vec && c1 - i >= 2 * W; i += 2 * W)
        {
            Vector<T> b0 = new(dBias.Slice(i)), b1 = new(dBias.Slice(i + W)), w0 = new(dWeight.Slice(i)), w1 = new(dWeight.Slice(i + W));
            for (int n = 0; n < N; n++)
            {
                var vm = new Vector<T>(mean[n]); var vs = new Vector<T>(rstd[n]);
                int row = n * C + i;
                Vector<T> dy0 = new(dOut.Slice(row)), dy1 = new(dOut.Slice(row + W));
                b0 += dy0; b1 += dy1;
                w0 += (new Vector<T>(inp.Slice(row)) - vm) * vs * dy0;
                w1 += (new Vector<T>(inp.Slice(row + W)) - vm) * vs * dy1;
            }
            b0.CopyTo(dBias.Slice(i)); b1.CopyTo(dBias.Slice(i + W)); w0.CopyTo(dWeight.Slice(i)); w1.CopyTo(dWeight.Slice(i + W));
        }
        for (; vec && c1 - i >= W; i += W)
        {
            Vector<T> b0 = new(dBias.Slice(i)), w0 = new(dWeight.Slice(i));
            for (int n = 0; n < N; n++)
            {
                int row = n * C + i;
                Vector<T> dy0 = new(dOut.Slice(row));
                b0 += dy0;
                w0 += (new Vector<T>(inp.Slice(row)) - new Vector<T>(mean[n])) * new Vector<T>(rstd[n]) * dy0;
            }
            b0.CopyTo(dBias.Slice(i)); w0.CopyTo(dWeight.Slice(i));
        }
        for (; i < c1; i++)
        {
            T b = dBias[i], w = dWeight[i];
            for (int n = 0; n < N; n++)
            {
                T dy = dOut[n * C + i];
                b += dy;
                w += (inp[n * C + i] - mean[n]) * rstd[n] * dy;
            }
            dBias[i] = b; dWeight[i] = w;
        }
    }

    static void Check(int outLen, int inpLen, int weightLen, int otherLen, int N, int C)
    {
        if (N < 0 || C <= 0) throw new ArgumentOutOfRangeException(nameof(C), $"LayerNorm needs N >= 0 and C > 0; got N = {N}, C = {C}.");
        if (outLen < N * C || inpLen < N * C || weightLen < C || otherLen < C)
            throw new ArgumentException($"LayerNorm buffers are too short for N = {N}, C = {C}: need (N,C) = {N * C} and (C) = {C} elements.");
    }
}
