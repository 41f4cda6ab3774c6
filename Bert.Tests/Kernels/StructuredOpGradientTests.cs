using Bert.Runtime.Kernels;
using Bert.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Kernels;

/// <summary>The hand-written structured CPU ops (Bert.Runtime/Kernels): for each, on random small shapes and
/// values, Backward against central differences in double (through <see cref="GradCheck"/>), Backward's
/// accumulation into prefilled gradients, and the float instantiation against the double one. Also Philox's
/// known answers and keep rate, bitwise repeatability on the parallel paths, and the out-of-range errors.
/// B batch · T sequence · C hidden · H heads · D head size · V vocabulary · N rows · G gathered rows.</summary>
public class StructuredOpGradientTests
{
    const int Cases = 30;
    const double Eps = 1e-5; // LayerNorm epsilon, BERT's

    static Property Verdict(string? error) => (error is null).Label(error ?? "");

    static Gen<int> Seeds => Gen.Choose(0, 1_000_000_000);

    /// <summary>A gradient buffer prefilled with random values, and a copy, to check that Backward adds (+=).</summary>
    static (double[] Buf, double[] Before) Prefilled(Random rng, int n)
    {
        var buf = GradCheck.Uniform(rng, n);
        return (buf, (double[])buf.Clone());
    }

    /// <summary>A backward that writes its input gradient (accumulate: false, the first gradient into a buffer the schedule did
    /// not clear) must cover every element of a NaN-filled buffer with the bits the adding backward leaves in zeros.</summary>
    static string? WrittenOverNaN(string what, int n, Action<double[]> write, Action<double[]> add)
    {
        var written = Enumerable.Repeat(double.NaN, n).ToArray();
        write(written);
        var added = new double[n];
        add(added);
        int nan = Array.FindIndex(written, double.IsNaN);
        if (nan >= 0) return $"{what}: written over NaN, element {nan} of {n} was left unwritten.";
        int diff = Enumerable.Range(0, n).FirstOrDefault(i => !written[i].Equals(added[i]), -1);
        return diff < 0 ? null : $"{what}: written over NaN, element {diff} is {written[diff]:R} but {added[diff]:R} added into zeros.";
    }

    /// <summary>What Backward added: buf - before.</summary>
    static double[] Added(double[] buf, double[] before)
    {
        var d = new double[buf.Length];
        for (int i = 0; i < d.Length; i++) d[i] = buf[i] - before[i];
        return d;
    }

    static string? SameBits<T>(string what, T[] a, T[] b) where T : unmanaged
    {
        for (int i = 0; i < a.Length; i++)
            if (!EqualityComparer<T>.Default.Equals(a[i], b[i]))
                return $"{what}: element [{i}] differs between two identical calls ({a[i]} vs {b[i]}).";
        return null;
    }

    // ---------------------------------------------------------------- Embedding

    public record EmbeddingCase(int N, int C, int V, int Seed);

    [Property(MaxTest = Cases)]
    public Property Embedding_BackwardMatchesFiniteDifferences_FloatMatchesDouble() => Prop.ForAll(
        (from n in Gen.Choose(1, 6) from c in Gen.Choose(1, 5) from v in Gen.Choose(2, 7) from s in Seeds
         select new EmbeddingCase(n, c, v, s)).ToArbitrary(),
        k =>
        {
            var (N, C, V) = (k.N, k.C, k.V);
            var rng = new Random(k.Seed);
            var (tableF, table) = GradCheck.SameInputs(GradCheck.Uniform(rng, V * C));
            var ids = Enumerable.Range(0, N).Select(_ => rng.Next(V)).ToArray();
            var (wF, w) = GradCheck.SameInputs(GradCheck.Uniform(rng, N * C));   // (N,C) weights of the outputs = dOut

            var out_ = new double[N * C];
            double Loss() { Embedding.Forward<double>(out_, table, ids, N, C); return GradCheck.WeightedSum(out_, w); }
            var (dTable, before) = Prefilled(rng, V * C);
            Embedding.Backward<double>(dTable, w, ids, N, C);
            string? error = GradCheck.Check("Embedding dTable", Loss, table, Added(dTable, before), rng);

            var outF = new float[N * C];
            var dTableF = new float[V * C];
            Embedding.Forward<float>(outF, tableF, ids, N, C);
            Embedding.Backward<float>(dTableF, wF, ids, N, C);
            var dTableD = new double[V * C];
            Embedding.Forward<double>(out_, table, ids, N, C);
            Embedding.Backward<double>(dTableD, w, ids, N, C);
            return Verdict(error
                ?? GradCheck.AllClose("Embedding out", outF, out_)
                ?? GradCheck.AllClose("Embedding dTable", dTableF, dTableD));
        });

    // ---------------------------------------------------------------- LayerNorm

    public record LayerNormCase(int N, int C, int Seed);

    [Property(MaxTest = Cases)]
    public Property LayerNorm_BackwardMatchesFiniteDifferences_FloatMatchesDouble() => Prop.ForAll(
        (from n in Gen.Choose(1, 6) from c in Gen.Choose(1, 8) from s in Seeds select new LayerNormCase(n, c, s)).ToArbitrary(),
        k =>
        {
            var (N, C) = (k.N, k.C);
            var rng = new Random(k.Seed);
            var (xF, x) = GradCheck.SameInputs(GradCheck.Uniform(rng, N * C, -2, 2));  // (N,C)
            var (weightF, weight) = GradCheck.SameInputs(GradCheck.Uniform(rng, C, 0.5, 1.5));
            var (biasF, bias) = GradCheck.SameInputs(GradCheck.Uniform(rng, C));
            var (wF, w) = GradCheck.SameInputs(GradCheck.Uniform(rng, N * C));        // (N,C) = dOut

            var out_ = new double[N * C];
            var mean = new double[N];
            var rstd = new double[N];
            double Loss() { LayerNorm.Forward<double>(out_, mean, rstd, x, weight, bias, N, C, Eps); return GradCheck.WeightedSum(out_, w); }
            Loss();
            var (dInp, dInp0) = Prefilled(rng, N * C);
            var (dWeight, dWeight0) = Prefilled(rng, C);
            var (dBias, dBias0) = Prefilled(rng, C);
            LayerNorm.Backward<double>(dInp, dWeight, dBias, w, x, weight, mean, rstd, N, C);
            string? error = GradCheck.Check("LayerNorm dInp", Loss, x, Added(dInp, dInp0), rng)
                ?? GradCheck.Check("LayerNorm dWeight", Loss, weight, Added(dWeight, dWeight0), rng)
                ?? GradCheck.Check("LayerNorm dBias", Loss, bias, Added(dBias, dBias0), rng)
                ?? WrittenOverNaN("LayerNorm dInp", N * C,
                    d => LayerNorm.Backward<double>(d, new double[C], new double[C], w, x, weight, mean, rstd, N, C, accumulate: false),
                    d => LayerNorm.Backward<double>(d, new double[C], new double[C], w, x, weight, mean, rstd, N, C));

            var (outF, dInpF, dWeightF, dBiasF) = LayerNormRun(xF, weightF, biasF, wF, N, C);
            var (outD, dInpD, dWeightD, dBiasD) = LayerNormRun(x, weight, bias, w, N, C);
            return Verdict(error
                ?? GradCheck.AllClose("LayerNorm out", outF, outD)
                ?? GradCheck.AllClose("LayerNorm dInp", dInpF, dInpD)
                ?? GradCheck.AllClose("LayerNorm dWeight", dWeightF, dWeightD)
                ?? GradCheck.AllClose("LayerNorm dBias", dBiasF, dBiasD));
        });

    static (T[] Out, T[] DInp, T[] DWeight, T[] DBias) LayerNormRun<T>(T[] x, T[] weight, T[] bias, T[] dOut, int N, int C)
        where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T>
    {
        var (out_, mean, rstd) = (new T[N * C], new T[N], new T[N]);
        var (dInp, dWeight, dBias) = (new T[N * C], new T[C], new T[C]);
        LayerNorm.Forward<T>(out_, mean, rstd, x, weight, bias, N, C, Eps);
        LayerNorm.Backward<T>(dInp, dWeight, dBias, dOut, x, weight, mean, rstd, N, C);
        return (out_, dInp, dWeight, dBias);
    }

    /// <summary>LayerNorm's backward at row widths its vector loops take in whole vectors, with tails, and on the parallel
    /// path (N·C ≥ 2¹⁵): dx against the formula in double, and the weight and bias gradients bit for bit the sums a plain
    /// loop takes over the rows in order (each column's terms in row order, whichever way the columns are split between
    /// threads), added onto what the buffers held.</summary>
    [Theory]
    [InlineData(400, 100)]
    [InlineData(400, 88)]     // two threads: the second task's columns 64 … 87 start at a single vector
    [InlineData(160, 256)]
    [InlineData(64, 771)]
    [InlineData(3, 40)]
    public void LayerNorm_WideRows_BackwardMatchesTheFormula_ParamSumsInRowOrder(int N, int C)
    {
        var rng = new Random(N * 1000 + C);
        float[] F(int n, double scale) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * scale); return a; }
        float[] x = F(N * C, 3), weight = F(C, 1.5), bias = F(C, 1), dy = F(N * C, 1), dx0 = F(N * C, 1), dw0 = F(C, 1), db0 = F(C, 1);
        var (y, mean, rstd) = (new float[N * C], new float[N], new float[N]);
        LayerNorm.Forward<float>(y, mean, rstd, x, weight, bias, N, C, Eps);
        float[] dx = (float[])dx0.Clone(), dw = (float[])dw0.Clone(), db = (float[])db0.Clone();
        LayerNorm.Backward<float>(dx, dw, db, dy, x, weight, mean, rstd, N, C);
        for (int c = 0; c < C; c++)
        {
            float b = db0[c], w = dw0[c];
            for (int n = 0; n < N; n++) { float g = dy[n * C + c]; b += g; w += (x[n * C + c] - mean[n]) * rstd[n] * g; }
            Assert.True(BitConverter.SingleToInt32Bits(b) == BitConverter.SingleToInt32Bits(db[c]), $"dBias[{c}] = {db[c]}, the row-order sum is {b}");
            Assert.True(BitConverter.SingleToInt32Bits(w) == BitConverter.SingleToInt32Bits(dw[c]), $"dWeight[{c}] = {dw[c]}, the row-order sum is {w}");
        }
        for (int n = 0; n < N; n++)
        {
            double m = mean[n], s = rstd[n], a = 0, bsum = 0;
            for (int c = 0; c < C; c++) { double g = (double)weight[c] * dy[n * C + c]; a += g; bsum += g * (x[n * C + c] - m) * s; }
            a /= C; bsum /= C;
            for (int c = 0; c < C; c++)
            {
                double norm = (x[n * C + c] - m) * s;
                double want = dx0[n * C + c] + ((double)weight[c] * dy[n * C + c] - a - norm * bsum) * s;
                Assert.True(Math.Abs(dx[n * C + c] - want) <= 1e-4 * (1 + Math.Abs(want)), $"dx[{n}, {c}] = {dx[n * C + c]}, want {want}");
            }
        }
    }

    // ---------------------------------------------------------------- Attention

    public record AttentionCase(int B, int T, int H, int D, int Seed);

    static Arbitrary<AttentionCase> AttentionCases =>
        (from b in Gen.Choose(1, 3) from t in Gen.Choose(1, 5) from h in Gen.Choose(1, 3) from d in Gen.Choose(1, 4) from s in Seeds
         select new AttentionCase(b, t, h, d, s)).ToArbitrary();

    [Property(MaxTest = Cases)]
    public Property Attention_NoDropout_BackwardMatchesFiniteDifferences_FloatMatchesDouble() => Prop.ForAll(AttentionCases, k =>
    {
        // Dropout is off either way: not training, or training with dropout 0.
        bool training = new Random(k.Seed).Next(2) == 0;
        return Verdict(AttentionCheck(k, dropout: training ? 0f : 0.3f, training));
    });

    [Property(MaxTest = Cases)]
    public Property Attention_Dropout_BackwardMatchesFiniteDifferences_FloatMatchesDouble() =>
        Prop.ForAll(AttentionCases, k => Verdict(AttentionCheck(k, dropout: 0.3f, training: true)));

    static string? AttentionCheck(AttentionCase k, float dropout, bool training)
    {
        var (B, T, H, D) = (k.B, k.T, k.H, k.D);
        int C = H * D;
        var rng = new Random(k.Seed + 1);
        var (qkvF, qkv) = GradCheck.SameInputs(GradCheck.Uniform(rng, B * T * 3 * C, -2, 2)); // (B,T,3C)
        var mask = Enumerable.Range(0, B * T).Select(_ => rng.NextDouble() < 0.3 ? 0 : 1).ToArray(); // (B,T), ~30% padding
        var (wF, w) = GradCheck.SameInputs(GradCheck.Uniform(rng, B * T * C));                  // (B,T,C) = dOut
        ulong seed = (ulong)rng.NextInt64(), site = (ulong)rng.Next(100);

        var out_ = new double[B * T * C];
        var probs = new double[B * H * T * T];
        double Loss() { Attention.Forward<double>(out_, probs, qkv, mask, B, T, C, H, dropout, seed, site, training); return GradCheck.WeightedSum(out_, w); }
        Loss();
        var (dQkv, before) = Prefilled(rng, B * T * 3 * C);
        Attention.Backward<double>(dQkv, w, qkv, probs, mask, B, T, C, H, dropout, seed, site, training);
        string? error = GradCheck.Check($"Attention dQkv (B={B},T={T},C={C},H={H},dropout={dropout},training={training})",
            Loss, qkv, Added(dQkv, before), rng)
            ?? WrittenOverNaN($"Attention dQkv (B={B},T={T},C={C},H={H})", B * T * 3 * C,
                d => Attention.Backward<double>(d, w, qkv, probs, mask, B, T, C, H, dropout, seed, site, training, accumulate: false),
                d => Attention.Backward<double>(d, w, qkv, probs, mask, B, T, C, H, dropout, seed, site, training));

        // In float, a row whose keys are all padded scores near -10000, where the float ulp (1e-3) alone shifts its
        // softmax by more than the float tolerance: compare float and double with the first key of each sequence
        // unmasked, as BERT's [CLS] always is.
        var maskF = (int[])mask.Clone();
        for (int b = 0; b < B; b++) maskF[b * T] = 1;
        var (outF, probsF, dQkvF) = AttentionRun(qkvF, maskF, wF, B, T, C, H, dropout, seed, site, training);
        var (outD, probsD, dQkvD) = AttentionRun(qkv, maskF, w, B, T, C, H, dropout, seed, site, training);
        return error
            ?? GradCheck.AllClose("Attention out", outF, outD)
            ?? GradCheck.AllClose("Attention probs", probsF, probsD)
            ?? GradCheck.AllClose("Attention dQkv", dQkvF, dQkvD);
    }

    static (T[] Out, T[] Probs, T[] DQkv) AttentionRun<T>(T[] qkv, int[] mask, T[] dOut, int B, int Tn, int C, int H,
        float dropout, ulong seed, ulong site, bool training)
        where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T>
    {
        var (out_, probs, dQkv) = (new T[B * Tn * C], new T[B * H * Tn * Tn], new T[B * Tn * 3 * C]);
        Attention.Forward<T>(out_, probs, qkv, mask, B, Tn, C, H, dropout, seed, site, training);
        Attention.Backward<T>(dQkv, dOut, qkv, probs, mask, B, Tn, C, H, dropout, seed, site, training);
        return (out_, probs, dQkv);
    }

    [Fact]
    public void Attention_PaddedKeys_GetNoProbability()
    {
        int B = 1, T = 3, C = 4, H = 2;
        var qkv = GradCheck.Uniform(new Random(1), B * T * 3 * C);
        var out_ = new double[B * T * C];
        var probs = new double[B * H * T * T];
        Attention.Forward<double>(out_, probs, qkv, [1, 1, 0], B, T, C, H, 0f, 0, 0, false);
        for (int row = 0; row < B * H * T; row++)
        {
            Assert.True(probs[row * T + 2] < 1e-30, $"padded key has probability {probs[row * T + 2]} in row {row}");
            Assert.Equal(1.0, probs[row * T] + probs[row * T + 1], 12);
        }
    }

    /// <summary>Rows long enough for the vectorized keep mask (16 float / 8 double counters at a time, then a scalar tail)
    /// and the GEMM paths, on both the sequential and the parallel path, against a direct evaluation of the documented
    /// semantics with Philox.Keep per element, in double and in float.</summary>
    [Theory]
    [InlineData(1, 19, 2, 3, 0.3f, true)]   // B·H·T·T·D = 4 332: sequential
    [InlineData(2, 37, 3, 8, 0.1f, true)]   // 65 712: parallel
    [InlineData(2, 37, 3, 8, 0.1f, false)]  // parallel, no dropout
    [InlineData(3, 48, 2, 16, 0.5f, true)]  // parallel, rows a multiple of 16
    public void Attention_LongRows_MatchDirectEvaluation(int B, int T, int H, int D, float dropout, bool training)
    {
        int C = H * D;
        var rng = new Random(B * 1000 + T);
        var (qkvF, qkv) = GradCheck.SameInputs(GradCheck.Uniform(rng, B * T * 3 * C, -2, 2));
        var (dOutF, dOut) = GradCheck.SameInputs(GradCheck.Uniform(rng, B * T * C));
        var mask = Enumerable.Range(0, B * T).Select(i => i % T == 0 || rng.NextDouble() >= 0.3 ? 1 : 0).ToArray();
        ulong seed = 0x0123_4567_89AB_CDEFUL, site = (1UL << 33) + 5;
        var (outE, probsE, dQkvE) = AttentionDirect(qkv, mask, dOut, B, T, C, H, dropout, seed, site, training);

        var (outD, probsD, dQkvD) = AttentionRun(qkv, mask, dOut, B, T, C, H, dropout, seed, site, training);
        static string? Close(string what, double[] a, double[] e)
        {
            for (int i = 0; i < a.Length; i++)
                if (!(Math.Abs(a[i] - e[i]) <= 1e-10 + 1e-10 * Math.Abs(e[i])))
                    return $"{what}: element [{i}] is {a[i]:R}, directly {e[i]:R}.";
            return null;
        }
        Assert.Null(Close("Attention out", outD, outE) ?? Close("Attention probs", probsD, probsE) ?? Close("Attention dQkv", dQkvD, dQkvE));

        var (outF, probsF, dQkvF) = AttentionRun(qkvF, mask, dOutF, B, T, C, H, dropout, seed, site, training);
        Assert.Null(GradCheck.AllClose("Attention out", outF, outE) ?? GradCheck.AllClose("Attention probs", probsF, probsE)
            ?? GradCheck.AllClose("Attention dQkv", dQkvF, dQkvE));
    }

    /// <summary>Attention forward and backward (into zeroed dQkv) straight from the definition, element by element.</summary>
    static (double[] Out, double[] Probs, double[] DQkv) AttentionDirect(double[] qkv, int[] mask, double[] dOut,
        int B, int T, int C, int H, float dropout, ulong seed, ulong site, bool training)
    {
        int D = C / H, C3 = 3 * C;
        double scale = 1 / Math.Sqrt(D), keepScale = dropout >= 1f ? 0 : 1.0 / (1.0 - dropout);
        var (out_, probs, dQkv) = (new double[B * T * C], new double[B * H * T * T], new double[B * T * 3 * C]);
        double Q(int b, int t, int h, int d) => qkv[(b * T + t) * C3 + h * D + d];
        double K(int b, int t, int h, int d) => qkv[(b * T + t) * C3 + C + h * D + d];
        double V(int b, int t, int h, int d) => qkv[(b * T + t) * C3 + 2 * C + h * D + d];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
            {
                var ks = new double[T, T];
                var dS = new double[T, T];
                for (int q = 0; q < T; q++)
                {
                    int row = ((b * H + h) * T + q) * T;
                    for (int k = 0; k < T; k++)
                    {
                        double s = 0;
                        for (int d = 0; d < D; d++) s += Q(b, q, h, d) * K(b, k, h, d);
                        probs[row + k] = s * scale + (mask[b * T + k] == 0 ? -10000.0 : 0);
                        ks[q, k] = training && dropout > 0 ? (Philox.Keep(seed, site, (ulong)(row + k), dropout) ? keepScale : 0) : 1;
                    }
                    double max = double.NegativeInfinity, sum = 0;
                    for (int k = 0; k < T; k++) max = Math.Max(max, probs[row + k]);
                    for (int k = 0; k < T; k++) sum += probs[row + k] = Math.Exp(probs[row + k] - max);
                    for (int k = 0; k < T; k++) probs[row + k] /= sum;
                    for (int d = 0; d < D; d++)
                        for (int k = 0; k < T; k++)
                            out_[(b * T + q) * C + h * D + d] += probs[row + k] * ks[q, k] * V(b, k, h, d);
                    // backward of this row
                    var dP = new double[T];
                    double pdp = 0;
                    for (int k = 0; k < T; k++)
                    {
                        for (int d = 0; d < D; d++)
                        {
                            double g = dOut[(b * T + q) * C + h * D + d];
                            dQkv[(b * T + k) * C3 + 2 * C + h * D + d] += probs[row + k] * ks[q, k] * g;
                            dP[k] += g * V(b, k, h, d) * ks[q, k];
                        }
                        pdp += probs[row + k] * dP[k];
                    }
                    for (int k = 0; k < T; k++) dS[q, k] = probs[row + k] * (dP[k] - pdp) * scale;
                }
                for (int q = 0; q < T; q++)
                    for (int k = 0; k < T; k++)
                        for (int d = 0; d < D; d++)
                        {
                            dQkv[(b * T + q) * C3 + h * D + d] += dS[q, k] * K(b, k, h, d);
                            dQkv[(b * T + k) * C3 + C + h * D + d] += dS[q, k] * Q(b, q, h, d);
                        }
            }
        return (out_, probs, dQkv);
    }

    // ---------------------------------------------------------------- CrossEntropy

    public record CrossEntropyCase(int N, int V, int Seed);

    [Property(MaxTest = Cases)]
    public Property CrossEntropy_IgnoredLabels_BackwardMatchesFiniteDifferences_FloatMatchesDouble() => Prop.ForAll(
        (from n in Gen.Choose(1, 6) from v in Gen.Choose(2, 7) from s in Seeds select new CrossEntropyCase(n, v, s)).ToArbitrary(),
        k =>
        {
            var (N, V) = (k.N, k.V);
            const int ignore = -100;
            var rng = new Random(k.Seed);
            var (logitsF, logits) = GradCheck.SameInputs(GradCheck.Uniform(rng, N * V, -3, 3)); // (N,V)
            var labels = Enumerable.Range(0, N).Select(_ => rng.NextDouble() < 0.3 ? ignore : rng.Next(V)).ToArray();
            var (dLossF, dLoss) = GradCheck.SameInputs([0.5 + rng.NextDouble()]);              // (1)

            var loss = new double[1];
            var probs = new double[N * V];
            double Loss() { CrossEntropy.Forward<double>(loss, probs, logits, labels, N, V, ignore); return loss[0] * dLoss[0]; }
            Loss();
            var (dLogits, before) = Prefilled(rng, N * V);
            CrossEntropy.Backward<double>(dLogits, dLoss, probs, labels, N, V, ignore);
            string? error = GradCheck.Check("CrossEntropy dLogits", Loss, logits, Added(dLogits, before), rng)
                ?? WrittenOverNaN("CrossEntropy dLogits", N * V,
                    d => CrossEntropy.Backward<double>(d, dLoss, probs, labels, N, V, ignore, accumulate: false),
                    d => CrossEntropy.Backward<double>(d, dLoss, probs, labels, N, V, ignore));

            var (lossF, probsF, dLogitsF) = CrossEntropyRun(logitsF, labels, dLossF, N, V);
            var (lossD, probsD, dLogitsD) = CrossEntropyRun(logits, labels, dLoss, N, V);
            return Verdict(error
                ?? GradCheck.AllClose("CrossEntropy loss", lossF, lossD)
                ?? GradCheck.AllClose("CrossEntropy probs", probsF, probsD)
                ?? GradCheck.AllClose("CrossEntropy dLogits", dLogitsF, dLogitsD));
        });

    static (T[] Loss, T[] Probs, T[] DLogits) CrossEntropyRun<T>(T[] logits, int[] labels, T[] dLoss, int N, int V)
        where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T>
    {
        var (loss, probs, dLogits) = (new T[1], new T[N * V], new T[N * V]);
        CrossEntropy.Forward<T>(loss, probs, logits, labels, N, V);
        CrossEntropy.Backward<T>(dLogits, dLoss, probs, labels, N, V);
        return (loss, probs, dLogits);
    }

    [Fact]
    public void CrossEntropy_AllLabelsIgnored_LossIsZeroAndNoGradient()
    {
        int N = 3, V = 4;
        var logits = GradCheck.Uniform(new Random(2), N * V);
        var loss = new double[] { 42 };
        var probs = new double[N * V];
        var dLogits = new double[N * V];
        CrossEntropy.Forward<double>(loss, probs, logits, [-100, -100, -100], N, V);
        CrossEntropy.Backward<double>(dLogits, [1.0], probs, [-100, -100, -100], N, V);
        Assert.Equal(0.0, loss[0]);
        Assert.All(dLogits, d => Assert.Equal(0.0, d));
        // Written instead of added (the first gradient into the buffer): zeros over whatever was there.
        var written = Enumerable.Repeat(double.NaN, N * V).ToArray();
        CrossEntropy.Backward<double>(written, [1.0], probs, [-100, -100, -100], N, V, accumulate: false);
        Assert.All(written, d => Assert.Equal(0.0, d));
    }

    // ---------------------------------------------------------------- GatherRows

    public record GatherRowsCase(int N, int G, int C, int Seed);

    [Property(MaxTest = Cases)]
    public Property GatherRows_RepeatedRows_BackwardMatchesFiniteDifferences_FloatMatchesDouble() => Prop.ForAll(
        (from n in Gen.Choose(1, 6) from g in Gen.Choose(1, 6) from c in Gen.Choose(1, 5) from s in Seeds
         select new GatherRowsCase(n, g, c, s)).ToArbitrary(),
        k =>
        {
            var (N, G, C) = (k.N, k.G, k.C);
            var rng = new Random(k.Seed);
            var (inpF, inp) = GradCheck.SameInputs(GradCheck.Uniform(rng, N * C)); // (N,C)
            var rows = Enumerable.Range(0, G).Select(_ => rng.Next(N)).ToArray(); // (G)
            if (G > 1) rows[G - 1] = rows[0];                                      // at least one repeat
            var (wF, w) = GradCheck.SameInputs(GradCheck.Uniform(rng, G * C));     // (G,C) = dOut

            var out_ = new double[G * C];
            double Loss() { GatherRows.Forward<double>(out_, inp, rows, G, C); return GradCheck.WeightedSum(out_, w); }
            var (dInp, before) = Prefilled(rng, N * C);
            GatherRows.Backward<double>(dInp, w, rows, G, C);
            string? error = GradCheck.Check("GatherRows dInp", Loss, inp, Added(dInp, before), rng);

            var (outF, dInpF) = (new float[G * C], new float[N * C]);
            GatherRows.Forward<float>(outF, inpF, rows, G, C);
            GatherRows.Backward<float>(dInpF, wF, rows, G, C);
            var dInpD = new double[N * C];
            GatherRows.Forward<double>(out_, inp, rows, G, C);
            GatherRows.Backward<double>(dInpD, w, rows, G, C);
            return Verdict(error
                ?? GradCheck.AllClose("GatherRows out", outF, out_)
                ?? GradCheck.AllClose("GatherRows dInp", dInpF, dInpD));
        });

    // ---------------------------------------------------------------- FirstToken

    public record FirstTokenCase(int B, int T, int C, int Seed);

    [Property(MaxTest = Cases)]
    public Property FirstToken_BackwardMatchesFiniteDifferences_FloatMatchesDouble() => Prop.ForAll(
        (from b in Gen.Choose(1, 3) from t in Gen.Choose(1, 5) from c in Gen.Choose(1, 5) from s in Seeds
         select new FirstTokenCase(b, t, c, s)).ToArbitrary(),
        k =>
        {
            var (B, T, C) = (k.B, k.T, k.C);
            var rng = new Random(k.Seed);
            var (inpF, inp) = GradCheck.SameInputs(GradCheck.Uniform(rng, B * T * C)); // (B,T,C)
            var (wF, w) = GradCheck.SameInputs(GradCheck.Uniform(rng, B * C));         // (B,C) = dOut

            var out_ = new double[B * C];
            double Loss() { FirstToken.Forward<double>(out_, inp, B, T, C); return GradCheck.WeightedSum(out_, w); }
            var (dInp, before) = Prefilled(rng, B * T * C);
            FirstToken.Backward<double>(dInp, w, B, T, C);
            string? error = GradCheck.Check("FirstToken dInp", Loss, inp, Added(dInp, before), rng);

            var (outF, dInpF) = (new float[B * C], new float[B * T * C]);
            FirstToken.Forward<float>(outF, inpF, B, T, C);
            FirstToken.Backward<float>(dInpF, wF, B, T, C);
            var dInpD = new double[B * T * C];
            FirstToken.Forward<double>(out_, inp, B, T, C);
            FirstToken.Backward<double>(dInpD, w, B, T, C);
            return Verdict(error
                ?? GradCheck.AllClose("FirstToken out", outF, out_)
                ?? GradCheck.AllClose("FirstToken dInp", dInpF, dInpD));
        });

    // ---------------------------------------------------------------- Transpose

    public record TransposeCase(int B, int T, int K, int Seed);

    /// <summary>y[b,k,t] = x[b,t,k] element for element; the backward against central differences (adding into a prefilled
    /// gradient, and written over NaN with accumulate: false); float against double.</summary>
    [Property(MaxTest = Cases)]
    public Property Transpose_BackwardMatchesFiniteDifferences_FloatMatchesDouble() => Prop.ForAll(
        (from b in Gen.Choose(1, 3) from t in Gen.Choose(1, 7) from k in Gen.Choose(1, 3) from s in Seeds
         select new TransposeCase(b, t, k, s)).ToArbitrary(),
        c =>
        {
            var (B, T, K) = (c.B, c.T, c.K);
            var rng = new Random(c.Seed);
            var (inpF, inp) = GradCheck.SameInputs(GradCheck.Uniform(rng, B * T * K)); // (B,T,K)
            var (wF, w) = GradCheck.SameInputs(GradCheck.Uniform(rng, B * K * T));     // (B,K,T) = dOut

            var out_ = new double[B * K * T];
            Transpose.Forward<double>(out_, inp, B, T, K);
            string? error = null;
            for (int b = 0; b < B && error is null; b++)
                for (int k = 0; k < K && error is null; k++)
                    for (int t = 0; t < T && error is null; t++)
                        if (out_[(b * K + k) * T + t] != inp[(b * T + t) * K + k]) error = $"Transpose out[{b},{k},{t}] is not inp[{b},{t},{k}] (B={B}, T={T}, K={K}).";

            double Loss() { Transpose.Forward<double>(out_, inp, B, T, K); return GradCheck.WeightedSum(out_, w); }
            var (dInp, before) = Prefilled(rng, B * T * K);
            Transpose.Backward<double>(dInp, w, B, T, K);
            error ??= GradCheck.Check("Transpose dInp", Loss, inp, Added(dInp, before), rng)
                ?? WrittenOverNaN("Transpose dInp", B * T * K,
                    d => Transpose.Backward<double>(d, w, B, T, K, accumulate: false),
                    d => Transpose.Backward<double>(d, w, B, T, K));

            var (outF, dInpF) = (new float[B * K * T], new float[B * T * K]);
            Transpose.Forward<float>(outF, inpF, B, T, K);
            Transpose.Backward<float>(dInpF, wF, B, T, K);
            var dInpD = new double[B * T * K];
            Transpose.Forward<double>(out_, inp, B, T, K);
            Transpose.Backward<double>(dInpD, w, B, T, K);
            return Verdict(error
                ?? GradCheck.AllClose("Transpose out", outF, out_)
                ?? GradCheck.AllClose("Transpose dInp", dInpF, dInpD));
        });

    // ---------------------------------------------------------------- Philox

    // Philox4x32-10 known answers from Random123's kat_vectors (Salmon et al. 2011).
    [Theory]
    [InlineData(0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u, 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u)]
    [InlineData(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu)]
    [InlineData(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u, 0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u)]
    public void Philox_Round10_MatchesRandom123KnownAnswers(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1,
        uint e0, uint e1, uint e2, uint e3)
    {
        Assert.Equal((e0, e1, e2, e3), Philox.Round10(c0, c1, c2, c3, k0, k1));
    }

    [Theory]
    [InlineData(0.1f)]
    [InlineData(0.5f)]
    [InlineData(0.9f)]
    public void Philox_Keep_KeepsOneMinusPOfIndices(float p)
    {
        const int n = 100_000;
        int kept = 0;
        for (ulong i = 0; i < n; i++)
        {
            float u = Philox.Uniform(1234, 7, i);
            Assert.InRange(u, 0f, 0.99999994f);
            if (Philox.Keep(1234, 7, i, p)) kept++;
        }
        Assert.InRange((double)kept / n, 1 - p - Tolerances.KeepFractionAbs, 1 - p + Tolerances.KeepFractionAbs);
    }

    /// <summary>The vectorized mask (16, 8 or 4 counters a step, two chains interleaved, then one, then one at a time)
    /// is bit for bit Philox.Keep element by element: every length from 0 past two interleaved steps, any start (low
    /// word about to carry into the high one included), sites with a high word, p at its edges, float and double. (The
    /// machine's own width runs: AVX-512's lanes are checked on an AVX-512 machine, AVX2's elsewhere.)</summary>
    [Property(MaxTest = 200)]
    public Property Philox_FillKeepScales_IsKeepElementByElement() =>
        Prop.ForAll(Gen.Choose(0, 80).ToArbitrary(), Gen.Choose(0, int.MaxValue).ToArbitrary(),
            Gen.Elements(0f, 1e-7f, 0.1f, 0.5f, 0.9f, 1f).ToArbitrary(), (int n, int r, float p) =>
        {
            var rng = new Random(r);
            ulong seed = (ulong)rng.NextInt64(), site = rng.Next(2) == 0 ? (ulong)rng.Next(0, 9) : (ulong)rng.NextInt64(); // the site's high word too
            ulong index0 = rng.Next(3) switch { 0 => (ulong)rng.Next(0, 1000), 1 => 0xFFFFFFFFUL - (ulong)rng.Next(0, 40), _ => (ulong)rng.NextInt64() };
            var f = new float[n]; var d = new double[n];
            Philox.FillKeepScales(f, seed, site, index0, p, 1.25f);
            Philox.FillKeepScales(d, seed, site, index0, p, 1.25);
            for (int k = 0; k < n; k++)
            {
                bool keep = Philox.Keep(seed, site, index0 + (ulong)k, p);
                Assert.True(f[k] == (keep ? 1.25f : 0f), $"float element {k} of {n} (index {index0 + (ulong)k}, p = {p}): {f[k]}, Keep says {keep}");
                Assert.True(d[k] == (keep ? 1.25 : 0.0), $"double element {k} of {n} (index {index0 + (ulong)k}, p = {p}): {d[k]}, Keep says {keep}");
            }
        });

    [Fact]
    public void Philox_Keep_DependsOnSeedAndSite()
    {
        int sameSeed = 0, sameSite = 0;
        for (ulong i = 0; i < 1000; i++)
        {
            if (Philox.Keep(1, 0, i, 0.5f) == Philox.Keep(2, 0, i, 0.5f)) sameSeed++;
            if (Philox.Keep(1, 0, i, 0.5f) == Philox.Keep(1, 1, i, 0.5f)) sameSite++;
        }
        Assert.InRange(sameSeed, 400, 600); // independent streams agree about half the time
        Assert.InRange(sameSite, 400, 600);
    }

    // ---------------------------------------------------------------- Determinism (sizes large enough for the parallel paths)

    [Fact]
    public void Attention_TwoIdenticalCalls_GiveBitwiseIdenticalResults()
    {
        int B = 2, T = 48, H = 4, D = 16, C = H * D; // B·H·T·T·D = 294 912 multiply-adds: the parallel path
        var rng = new Random(3);
        var qkv = Array.ConvertAll(GradCheck.Uniform(rng, B * T * 3 * C), v => (float)v);
        var dOut = Array.ConvertAll(GradCheck.Uniform(rng, B * T * C), v => (float)v);
        var mask = Enumerable.Range(0, B * T).Select(i => i % T < T - 5 ? 1 : 0).ToArray();
        var first = AttentionRun(qkv, mask, dOut, B, T, C, H, 0.1f, 99, 3, true);
        var second = AttentionRun(qkv, mask, dOut, B, T, C, H, 0.1f, 99, 3, true);
        Assert.Null(SameBits("Attention out", first.Out, second.Out)
            ?? SameBits("Attention probs", first.Probs, second.Probs)
            ?? SameBits("Attention dQkv", first.DQkv, second.DQkv));
    }

    [Fact]
    public void LayerNorm_TwoIdenticalBackwardCalls_GiveBitwiseIdenticalResults()
    {
        int N = 512, C = 96; // N·C = 49 152: the parallel path, with a partial last column block
        var rng = new Random(4);
        var x = Array.ConvertAll(GradCheck.Uniform(rng, N * C), v => (float)v);
        var weight = Array.ConvertAll(GradCheck.Uniform(rng, C), v => (float)v);
        var bias = Array.ConvertAll(GradCheck.Uniform(rng, C), v => (float)v);
        var dOut = Array.ConvertAll(GradCheck.Uniform(rng, N * C), v => (float)v);
        var first = LayerNormRun(x, weight, bias, dOut, N, C);
        var second = LayerNormRun(x, weight, bias, dOut, N, C);
        Assert.Null(SameBits("LayerNorm out", first.Out, second.Out)
            ?? SameBits("LayerNorm dInp", first.DInp, second.DInp)
            ?? SameBits("LayerNorm dWeight", first.DWeight, second.DWeight)
            ?? SameBits("LayerNorm dBias", first.DBias, second.DBias));
    }

    [Fact]
    public void CrossEntropy_TwoIdenticalCalls_GiveBitwiseIdenticalResults()
    {
        int N = 64, V = 1024; // N·V = 65 536: the parallel path
        var rng = new Random(5);
        var logits = Array.ConvertAll(GradCheck.Uniform(rng, N * V, -5, 5), v => (float)v);
        var labels = Enumerable.Range(0, N).Select(n => n % 5 == 0 ? -100 : rng.Next(V)).ToArray();
        var first = CrossEntropyRun(logits, labels, [1f], N, V);
        var second = CrossEntropyRun(logits, labels, [1f], N, V);
        Assert.Null(SameBits("CrossEntropy loss", first.Loss, second.Loss)
            ?? SameBits("CrossEntropy probs", first.Probs, second.Probs)
            ?? SameBits("CrossEntropy dLogits", first.DLogits, second.DLogits));
    }

    // ---------------------------------------------------------------- Errors a caller can cause

    [Fact]
    public void Embedding_OutOfRangeId_ThrowsNamingIdPositionAndRange()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            Embedding.Forward<float>(new float[4], new float[6], [0, 7], 2, 2));
        Assert.Contains("id 7 at position 1", e.Message);
        Assert.Contains("[0, 3)", e.Message);
    }

    [Fact]
    public void GatherRows_NegativeRow_ThrowsNamingRowPositionAndRange()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            GatherRows.Backward<double>(new double[6], new double[4], [-1, 0], 2, 2));
        Assert.Contains("row -1 at position 0", e.Message);
        Assert.Contains("[0, 3)", e.Message);
    }

    [Fact]
    public void Transpose_ShortBuffersOrEmptyAxes_ThrowNamingTheShape()
    {
        var e = Assert.Throws<ArgumentException>(() => Transpose.Forward<float>(new float[5], new float[6], 1, 3, 2));
        Assert.Contains("B = 1, T = 3, K = 2", e.Message);
        Assert.Contains("(B,K,T) and (B,T,K) = 6 elements each; got 5 and 6", e.Message);
        var z = Assert.Throws<ArgumentOutOfRangeException>(() => Transpose.Backward<double>(new double[6], new double[6], 1, 0, 2));
        Assert.Contains("T, K > 0; got B = 1, T = 0, K = 2", z.Message);
    }

    [Fact]
    public void CrossEntropy_OutOfRangeLabel_ThrowsNamingLabelRowAndRange()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            CrossEntropy.Forward<float>(new float[1], new float[6], new float[6], [1, 3], 2, 3));
        Assert.Contains("label 3 at row 1", e.Message);
        Assert.Contains("[0, 3)", e.Message);
    }
}
