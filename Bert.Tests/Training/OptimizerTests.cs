using System.Numerics;
using Bert.Dsl;
using Bert.Runtime;
using Bert.Runtime.Training;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Training;

/// <summary>AdamW and LAMB against plain per-tensor reference loops and hand-computed numbers; gradient clipping,
/// the warm-up/decay schedule, optimizer checkpoints, the finiteness check and accumulation.</summary>
public class OptimizerTests
{
    /// <summary>The tolerances of this file, each with its reason.</summary>
    static class Tol
    {
        /// <summary>Hand-computed (exact decimal) vs double: a step is ~10 roundings of O(1) values with unit
        /// roundoff 1.1e-16, so errors are ~1e-15; 1e-12 leaves a wide margin and still catches a wrong term
        /// (the smallest term, ε = 1e-6 in the denominator, moves p by ~2e-7).</summary>
        public const double HandAbs = 1e-12;

        /// <summary>LAMB vs its reference, relative: the norms are summed in another order (per chunk piece vs one
        /// loop), which changes ‖w‖/‖u‖ by a few ulps (~1e-15) per step; 1e-12 covers several steps.</summary>
        public const double LambRel = 1e-12;

        /// <summary>‖Δw‖ vs lr·‖w‖ for LAMB in double: the same few-ulp norm differences, plus the rounding of
        /// w − Δw before Δw is measured back (|w| ~ 1, lr·|u| ~ 1e-2, so ~1e-14 relative); 1e-9 is generous.</summary>
        public const double TrustRel = 1e-9;

        /// <summary>A global norm vs a plain sequential double sum: different summation order over ~7e4 squares,
        /// error ≲ n·1.1e-16 ≈ 1e-11 relative in the worst case; 1e-10.</summary>
        public const double NormRel = 1e-10;

        /// <summary>After clipping, norm ≤ maxNorm·(1 + this): float grads are scaled by a coefficient rounded to
        /// float and each element rounds again (6e-8 relative each), so 1e-6 bounds it.</summary>
        public const double ClipRel = 1e-6;
    }

    // Sizes chosen to cross the 32 Ki chunk boundaries inside tensors and to leave vector tails: 70 010 elements,
    // three chunks; decay and no-decay tensors alternate.
    static readonly (int Length, bool Decay)[] Layout = [(40_000, true), (3, false), (30_000, true), (7, false)];

    static ParamInfo[] Tensors(params (int Length, bool Decay)[] ts)
    {
        var ps = new ParamInfo[ts.Length];
        long offset = 0;
        for (int i = 0; i < ts.Length; i++)
        {
            ps[i] = new ParamInfo($"t{i}", $"t{i}", [ts[i].Length], offset, ts[i].Length, Init.Normal, ts[i].Decay, "b");
            offset += ts[i].Length;
        }
        return ps;
    }

    static T[] Random<T>(Random rng, int n, double scale = 1) where T : IBinaryFloatingPointIeee754<T>
    {
        var a = new T[n];
        for (int i = 0; i < n; i++) a[i] = T.CreateTruncating((rng.NextDouble() * 2 - 1) * scale);
        return a;
    }

    /// <summary>torch.optim.AdamW written plainly: tensor by tensor, element by element, scalars in double rounded to T.</summary>
    static void ReferenceAdamW<T>(ParamInfo[] ps, T[] p, T[] g, T[] m, T[] v, long t, double lr,
        double b1 = 0.9, double b2 = 0.999, double eps = 1e-6, double wd = 0.01) where T : IBinaryFloatingPointIeee754<T>
    {
        T stepSize = T.CreateTruncating(lr / (1 - Math.Pow(b1, t)));
        T bc2Sqrt = T.CreateTruncating(Math.Sqrt(1 - Math.Pow(b2, t)));
        foreach (var q in ps)
            for (long i = q.Offset; i < q.Offset + q.Length; i++)
            {
                if (q.Decay) p[i] *= T.CreateTruncating(1 - lr * wd);
                m[i] = T.CreateTruncating(b1) * m[i] + T.CreateTruncating(1 - b1) * g[i];
                v[i] = T.CreateTruncating(b2) * v[i] + T.CreateTruncating(1 - b2) * g[i] * g[i];
                p[i] -= stepSize * (m[i] / (T.Sqrt(v[i]) / bc2Sqrt + T.CreateTruncating(eps)));
            }
    }

    /// <summary>LAMB (You et al. 2019, Algorithm 2) written plainly in double, one tensor at a time.</summary>
    static void ReferenceLamb(ParamInfo[] ps, double[] p, double[] g, double[] m, double[] v, long t, double lr,
        double b1 = 0.9, double b2 = 0.999, double eps = 1e-6, double wd = 0.01)
    {
        foreach (var q in ps)
        {
            int o = (int)q.Offset, n = (int)q.Length;
            var u = new double[n];
            double w2 = 0, u2 = 0;
            for (int i = 0; i < n; i++)
            {
                m[o + i] = b1 * m[o + i] + (1 - b1) * g[o + i];
                v[o + i] = b2 * v[o + i] + (1 - b2) * g[o + i] * g[o + i];
                double mHat = m[o + i] / (1 - Math.Pow(b1, t)), vHat = v[o + i] / (1 - Math.Pow(b2, t));
                u[i] = mHat / (Math.Sqrt(vHat) + eps) + (q.Decay ? wd * p[o + i] : 0);
                w2 += p[o + i] * p[o + i]; u2 += u[i] * u[i];
            }
            double ratio = w2 > 0 && u2 > 0 ? Math.Sqrt(w2) / Math.Sqrt(u2) : 1;
            for (int i = 0; i < n; i++) p[o + i] -= lr * ratio * u[i];
        }
    }

    static void AdamWMatchesReference<T>() where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var ps = Tensors(Layout);
        int n = ps.Sum(p => (int)p.Length);
        var rng = new Random(7);
        var p = Random<T>(rng, n);
        var refP = (T[])p.Clone();
        var refM = new T[n]; var refV = new T[n];
        var opt = new AdamW<T>(ps);
        var schedule = new LinearWarmupDecay(1e-2, 2, 6);
        for (int s = 0; s < 5; s++)
        {
            var g = Random<T>(rng, n, scale: 1 + s);
            double lr = schedule.At(opt.StepCount) + 1e-3; // never 0, so every step moves
            opt.Step(p, g, lr);
            ReferenceAdamW(ps, refP, g, refM, refV, s + 1, lr);
        }
        Assert.Equal(5, opt.StepCount);
        Assert.Equal(refP, p);
        Assert.Equal(refM, opt.FirstMoment.ToArray());
        Assert.Equal(refV, opt.SecondMoment.ToArray());
    }

    [Fact]
    public void AdamW_Double_MatchesPlainReferenceBitwise_OverSeveralSteps() => AdamWMatchesReference<double>();

    [Fact]
    public void AdamW_Float_MatchesPlainReferenceBitwise_OverSeveralSteps() => AdamWMatchesReference<float>();

    /// <summary>Two one-element tensors, a weight w (decayed) and a bias b (not), both 1; lr 0.1, g = 0.5 then −0.5.
    /// By hand from torch.optim.AdamW's formula (exact decimal arithmetic):
    /// step 1: m = 0.1·0.5 = 0.05, v = 0.001·0.25 = 0.00025, 1 − β1 = 0.1, 1 − β2 = 0.001, √v/√0.001 = 0.5, so the
    ///   update is (0.1/0.1)·0.05/(0.5 + 1e-6) = 0.05/0.500001 = 0.0999998000004…;
    ///   w = 1·(1 − 0.1·0.01) − 0.0999998000004 = 0.8990001999996…, b = 0.9000001999996….
    /// step 2: m = 0.045 − 0.05 = −0.005, v = 0.00024975 + 0.00025 = 0.00049975, 1 − β1² = 0.19, 1 − β2² = 0.001999,
    ///   √(0.00049975/0.001999) = √0.25 = 0.5, update = (0.1/0.19)·(−0.005)/0.500001 = −0.1/19.000038 = −0.00526314736…;
    ///   w = 0.8990001999996·0.999 + 0.00526314736… = 0.90336434716804…, b = 0.90526334736804….</summary>
    [Fact]
    public void AdamW_TwoSteps_EqualHandComputedValues()
    {
        var opt = new AdamW<double>(Tensors((1, true), (1, false)));
        double[] p = [1, 1];
        opt.Step(p, [0.5, 0.5], 0.1);
        Assert.Equal(0.8990001999996000008, p[0], Tol.HandAbs);
        Assert.Equal(0.9000001999996000008, p[1], Tol.HandAbs);
        Assert.Equal(0.05, opt.FirstMoment[0], Tol.HandAbs);
        Assert.Equal(0.00025, opt.SecondMoment[1], Tol.HandAbs);
        opt.Step(p, [-0.5, -0.5], 0.1);
        Assert.Equal(0.9033643471680425060, p[0], Tol.HandAbs);
        Assert.Equal(0.9052633473680421060, p[1], Tol.HandAbs);
        Assert.Equal(-0.005, opt.FirstMoment[0], Tol.HandAbs);
        Assert.Equal(0.00049975, opt.SecondMoment[0], Tol.HandAbs);
    }

    [Fact]
    public void AdamW_ZeroLearningRate_LeavesParametersButAdvancesMoments()
    {
        var ps = Tensors(Layout);
        var rng = new Random(3);
        var p = Random<double>(rng, 70_010);
        var before = (double[])p.Clone();
        var opt = new AdamW<double>(ps);
        opt.Step(p, Random<double>(rng, p.Length), 0.0);
        Assert.Equal(before, p);
        Assert.Equal(1, opt.StepCount);
        Assert.Contains(opt.FirstMoment.ToArray(), x => x != 0);
    }

    [Fact]
    public void Lamb_MatchesPlainReference_OverSeveralSteps()
    {
        var ps = Tensors(Layout);
        int n = ps.Sum(p => (int)p.Length);
        var rng = new Random(11);
        var p = Random<double>(rng, n);
        var refP = (double[])p.Clone();
        var refM = new double[n]; var refV = new double[n];
        var opt = new Lamb<double>(ps);
        for (int s = 0; s < 4; s++)
        {
            var g = Random<double>(rng, n, scale: 0.5 + s);
            opt.Step(p, g, 0.01);
            ReferenceLamb(ps, refP, g, refM, refV, s + 1, 0.01);
        }
        for (int i = 0; i < n; i++)
            Assert.True(Math.Abs(p[i] - refP[i]) <= Tol.LambRel * Math.Max(1, Math.Abs(refP[i])), $"p[{i}] = {p[i]:R}, reference {refP[i]:R}");
    }

    /// <summary>The trust ratio scales each tensor's update u to length ‖w‖, so a step moves every tensor (with
    /// non-zero weights and update) by exactly lr·‖w‖, whatever the tensor's size, scale and gradient scale.</summary>
    [Property(MaxTest = 30)]
    public Property Lamb_EachTensorMovesByLrTimesItsWeightNorm() => Prop.ForAll(
        (from a in Gen.Choose(1, 300) from b in Gen.Choose(1, 300) from decay in Gen.Elements(true, false)
         from wScale in Gen.Elements(1e-3, 1.0, 50.0) from gScale in Gen.Elements(1e-4, 1.0, 1e3) from seed in Gen.Choose(0, 1 << 30)
         select (a, b, decay, wScale, gScale, seed)).ToArbitrary(), c =>
        {
            var ps = Tensors((c.a, c.decay), (c.b, !c.decay));
            var rng = new Random(c.seed);
            var p = Random<double>(rng, c.a + c.b, c.wScale);
            var opt = new Lamb<double>(ps);
            const double lr = 0.01;
            for (int s = 0; s < 3; s++)
            {
                var before = (double[])p.Clone();
                opt.Step(p, Random<double>(rng, p.Length, c.gScale), lr);
                foreach (var q in ps)
                {
                    double w2 = 0, d2 = 0;
                    for (long i = q.Offset; i < q.Offset + q.Length; i++) { w2 += before[i] * before[i]; d2 += (p[i] - before[i]) * (p[i] - before[i]); }
                    double expected = lr * Math.Sqrt(w2), moved = Math.Sqrt(d2);
                    if (Math.Abs(moved - expected) > Tol.TrustRel * expected) return false;
                }
            }
            return true;
        });

    /// <summary>A tensor of zero weights (‖w‖ = 0) and a tensor with zero gradients and no decay (‖u‖ = 0) both take
    /// ratio 1: the first moves by lr·u, with u = g/(|g| + ε) on the first step (m̂ = g, √v̂ = |g|); the second stays.</summary>
    [Fact]
    public void Lamb_ZeroWeightOrZeroUpdateNorm_UsesRatioOne()
    {
        var opt = new Lamb<double>(Tensors((3, true), (2, false)));
        double[] p = [0, 0, 0, 0.5, -2];
        double[] g = [0.25, -4, 1e-3, 0, 0];
        opt.Step(p, g, 0.1);
        Assert.Equal([1.0, 1.0], opt.LastTrustRatios.ToArray());
        for (int i = 0; i < 3; i++) Assert.Equal(-0.1 * g[i] / (Math.Abs(g[i]) + 1e-6), p[i], Tol.HandAbs);
        Assert.Equal(0.5, p[3]);
        Assert.Equal(-2, p[4]);
    }

    [Fact]
    public void GlobalNorm_MatchesPlainDoubleSum_AndRepeatsBitwise()
    {
        var g = Random<float>(new Random(5), 70_010, scale: 3);
        double plain = 0;
        foreach (var x in g) plain += (double)x * x;
        double norm = GradientClipping.GlobalNorm<float>(g);
        Assert.True(Math.Abs(norm - Math.Sqrt(plain)) <= Tol.NormRel * norm, $"norm {norm:R}, plain {Math.Sqrt(plain):R}");
        Assert.Equal(norm, GradientClipping.GlobalNorm<float>(g));
        Assert.Equal(0, GradientClipping.GlobalNorm<double>([]));
    }

    static void ClipsAboveLimit<T>() where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var g = Random<T>(new Random(9), 70_010, scale: 0.5);
        var before = (T[])g.Clone();
        double norm0 = GradientClipping.GlobalNorm<T>(g);
        const double maxNorm = 1.0;
        Assert.True(norm0 > 10 * maxNorm);
        Assert.Equal(norm0, GradientClipping.ClipByGlobalNorm<T>(g, maxNorm));
        double after = GradientClipping.GlobalNorm<T>(g);
        Assert.True(after <= maxNorm * (1 + Tol.ClipRel), $"norm after clipping {after:R}");
        Assert.True(after >= maxNorm * (1 - Tol.ClipRel), $"norm after clipping {after:R}");
        // Direction unchanged: every element scaled by the same factor maxNorm / norm.
        double c = maxNorm / norm0;
        for (int i = 0; i < g.Length; i++)
        {
            double expected = c * double.CreateTruncating(before[i]);
            Assert.True(Math.Abs(double.CreateTruncating(g[i]) - expected) <= Tol.ClipRel * Math.Abs(expected) + 1e-300, $"g[{i}]");
        }
    }

    [Fact]
    public void ClipByGlobalNorm_AboveLimit_ScalesToMaxNormKeepingDirection_Float() => ClipsAboveLimit<float>();

    [Fact]
    public void ClipByGlobalNorm_AboveLimit_ScalesToMaxNormKeepingDirection_Double() => ClipsAboveLimit<double>();

    [Fact]
    public void ClipByGlobalNorm_UnderLimit_LeavesGradientsUnchanged()
    {
        var g = Random<float>(new Random(2), 1000, scale: 0.01);
        var before = (float[])g.Clone();
        double norm = GradientClipping.ClipByGlobalNorm<float>(g, 1.0);
        Assert.True(norm < 1.0);
        Assert.Equal(before, g);
    }

    [Fact]
    public void LinearWarmupDecay_ValuesAtStartWarmupEndMidpointAndTotal()
    {
        var s = new LinearWarmupDecay(1e-4, 100, 1100);
        Assert.Equal(0, s.At(0));
        Assert.Equal(5e-5, s.At(50), 1e-20);
        Assert.Equal(1e-4, s.At(100));
        Assert.Equal(5e-5, s.At(600), 1e-20);
        Assert.Equal(1e-5, s.At(1000), 1e-20);
        Assert.Equal(0, s.At(1100));
        Assert.Equal(0, s.At(5000));
        Assert.Equal(2e-3, new LinearWarmupDecay(2e-3, 0, 10).At(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LinearWarmupDecay(1e-4, 10, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LinearWarmupDecay(-1, 0, 5));
        Assert.Throws<ArgumentOutOfRangeException>(() => s.At(-1));
    }

    static Optimizer<T> Make<T>(bool lamb, ParamInfo[] ps) where T : unmanaged, IBinaryFloatingPointIeee754<T>
        => lamb ? new Lamb<T>(ps) : new AdamW<T>(ps);

    static void RoundTrip<T>(bool lamb) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var ps = Tensors(Layout);
        var rng = new Random(13);
        var p = Random<T>(rng, 70_010);
        var a = Make<T>(lamb, ps);
        for (int s = 0; s < 3; s++) a.Step(p, Random<T>(rng, p.Length), 1e-3);
        var saved = new MemoryStream();
        a.SaveState(saved);
        Assert.Equal(8 + 4 + 4 + 8 + 8 + 2L * 70_010 * System.Runtime.CompilerServices.Unsafe.SizeOf<T>(), saved.Length);

        var b = Make<T>(lamb, ps);
        saved.Position = 0;
        b.LoadState(saved);
        Assert.Equal(3, b.StepCount);
        var q = (T[])p.Clone();
        for (int s = 0; s < 3; s++)
        {
            var g = Random<T>(rng, p.Length);
            a.Step(p, g, 1e-3);
            b.Step(q, g, 1e-3);
        }
        Assert.Equal(p, q);
        Assert.Equal(a.FirstMoment.ToArray(), b.FirstMoment.ToArray());
        Assert.Equal(a.SecondMoment.ToArray(), b.SecondMoment.ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SaveLoadState_RoundTrip_GivesIdenticalSubsequentSteps_Float(bool lamb) => RoundTrip<float>(lamb);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SaveLoadState_RoundTrip_GivesIdenticalSubsequentSteps_Double(bool lamb) => RoundTrip<double>(lamb);

    static MemoryStream Saved(Optimizer<float> opt) { var s = new MemoryStream(); opt.SaveState(s); s.Position = 0; return s; }
    static MemoryStream Saved(Optimizer<double> opt) { var s = new MemoryStream(); opt.SaveState(s); s.Position = 0; return s; }

    [Fact]
    public void LoadState_WrongParameterCount_ThrowsNamingBothCounts_AndChangesNothing()
    {
        var small = new AdamW<float>(Tensors((10, true), (2, false)));
        small.Step(new float[12], Enumerable.Repeat(1f, 12).ToArray(), 0.1f);
        var big = new AdamW<float>(Tensors((10, true), (3, false)));
        var e = Assert.Throws<InvalidDataException>(() => big.LoadState(Saved(small)));
        Assert.Contains("12", e.Message);
        Assert.Contains("13", e.Message);
        Assert.Contains("same architecture", e.Message);
        Assert.Equal(0, big.StepCount);
    }

    [Fact]
    public void LoadState_WrongTypeOrOptimizerOrTruncated_ThrowsClearly()
    {
        var ps = Tensors((5, true));
        var adamF = new AdamW<float>(ps);
        adamF.Step(new float[5], [1, 2, 3, 4, 5], 0.1f);

        var typeError = Assert.Throws<InvalidDataException>(() => new AdamW<double>(ps).LoadState(Saved(adamF)));
        Assert.Contains("4-byte", typeError.Message);
        Assert.Contains("AdamW<float>", typeError.Message);

        var kindError = Assert.Throws<InvalidDataException>(() => new Lamb<float>(ps).LoadState(Saved(adamF)));
        Assert.Contains("holds AdamW optimizer state, not Lamb", kindError.Message);

        Assert.Throws<InvalidDataException>(() => new AdamW<float>(ps).LoadState(new MemoryStream("not a checkpoint at all"u8.ToArray())));
        Assert.Throws<InvalidDataException>(() => new AdamW<float>(ps).LoadState(new MemoryStream([1, 2, 3])));

        var full = Saved(adamF).ToArray();
        var target = new AdamW<float>(ps);
        var cut = Assert.Throws<InvalidDataException>(() => target.LoadState(new MemoryStream(full[..^3])));
        Assert.Contains("truncated", cut.Message);
        Assert.Equal(0, target.StepCount);
        Assert.All(target.FirstMoment.ToArray(), x => Assert.Equal(0f, x));
    }

    [Fact]
    public void Step_WrongLengthsOrBadLayout_ThrowOneSentence()
    {
        var opt = new AdamW<float>(Tensors((4, true)));
        var e = Assert.Throws<ArgumentException>(() => opt.Step(new float[3], new float[4], 0.1f));
        Assert.Contains("4 parameters but was given 3", e.Message);
        Assert.Throws<ArgumentException>(() => opt.Step(new float[4], new float[5], 0.1f));
        Assert.Throws<ArgumentOutOfRangeException>(() => opt.Step(new float[4], new float[4], float.NaN));
        var gap = new[] { new ParamInfo("a", "a", [2], 0, 2, Init.Normal, true, "b"), new ParamInfo("c", "c", [2], 3, 2, Init.Normal, true, "b") };
        Assert.Contains("'c' starts at element 3", Assert.Throws<ArgumentException>(() => new Lamb<float>(gap)).Message);
    }

    static void DetectsNonFinite<T>() where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        Assert.True(GradientClipping.AllFinite<T>([]));
        var xs = Random<T>(new Random(1), 1003);
        Assert.True(GradientClipping.AllFinite<T>(xs));
        foreach (var bad in new[] { T.NaN, T.PositiveInfinity, T.NegativeInfinity })
            foreach (int at in new[] { 0, 517, 1002 })
            {
                var ys = (T[])xs.Clone();
                ys[at] = bad;
                Assert.False(GradientClipping.AllFinite<T>(ys), $"{bad} at {at}");
            }
    }

    [Fact]
    public void AllFinite_DetectsNaNAndInfinities_Float() => DetectsNonFinite<float>();

    [Fact]
    public void AllFinite_DetectsNaNAndInfinities_Double() => DetectsNonFinite<double>();

    /// <summary>Backward adds, so k micro-batch gradients summed and scaled by 1/k are their mean (k = 4: the scale
    /// is exact, so the result equals the plainly computed mean bit for bit).</summary>
    [Fact]
    public void GradientAccumulator_SumThenScale_IsTheMean()
    {
        var rng = new Random(4);
        var micro = Enumerable.Range(0, 4).Select(_ => Random<double>(rng, 100)).ToArray();
        var grads = new double[100];
        foreach (var m in micro) for (int i = 0; i < grads.Length; i++) grads[i] += m[i];
        GradientAccumulator.Scale<double>(grads, 0.25);
        for (int i = 0; i < grads.Length; i++) Assert.Equal((((micro[0][i] + micro[1][i]) + micro[2][i]) + micro[3][i]) / 4, grads[i]);
    }

    /// <summary>f(w) = ½·Σ aᵢ(wᵢ − cᵢ)², curvatures aᵢ from 0.5 to 5, from w = 0; AdamW (no decay on this tensor, which
    /// would move the optimum) under the linear warm-up/decay schedule reaches every cᵢ within 1e-3.</summary>
    [Fact]
    public void AdamW_ConvergesOnAQuadratic()
    {
        const int n = 64;
        var rng = new Random(21);
        var a = Enumerable.Range(0, n).Select(_ => 0.5 + 4.5 * rng.NextDouble()).ToArray();
        var c = Enumerable.Range(0, n).Select(_ => 4 * rng.NextDouble() - 2).ToArray();
        var w = new double[n];
        var g = new double[n];
        var opt = new AdamW<double>(Tensors((n, false)));
        var schedule = new LinearWarmupDecay(0.05, 50, 1000);
        double Loss() => Enumerable.Range(0, n).Sum(i => 0.5 * a[i] * (w[i] - c[i]) * (w[i] - c[i]));
        double start = Loss();
        while (opt.StepCount < schedule.TotalSteps)
        {
            for (int i = 0; i < n; i++) g[i] = a[i] * (w[i] - c[i]);
            Assert.True(GradientClipping.AllFinite<double>(g));
            opt.Step(w, g, schedule.At(opt.StepCount));
        }
        for (int i = 0; i < n; i++) Assert.True(Math.Abs(w[i] - c[i]) < 1e-3, $"w[{i}] = {w[i]}, optimum {c[i]}");
        Assert.True(Loss() < 1e-6 * start);
    }
}
