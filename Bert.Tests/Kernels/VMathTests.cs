using System.Runtime.Intrinsics;
using Bert.Runtime;
using Xunit;

namespace Bert.Tests.Kernels;

/// <summary>The vector exponential the float kernels use (GELU's erf, tanh, the "exp" op, attention's and the
/// cross-entropy's softmax) against Math.Exp in double.</summary>
public class VMathTests
{
    [Fact]
    public void Exp_IsWithinTwoUlpOfTheCorrectlyRoundedExponential_OverTheNormalRange()
    {
        var rng = new Random(11);
        double worst = 0; float at = 0;
        for (int k = 0; k < 1 << 16; k++)
        {
            var xs = new float[16];
            for (int i = 0; i < 16; i++) xs[i] = (float)(rng.NextDouble() * (88.72 + 87.33) - 87.33);
            if (k == 0) { xs[0] = 0; xs[1] = 1; xs[2] = -1; xs[3] = 88.72f; xs[4] = -87.33f; xs[5] = 1e-8f; xs[6] = -1e-8f; xs[7] = 0.3465736f; }
            var y = VMath.Exp(Vector512.Create(xs));
            for (int i = 0; i < 16; i++)
            {
                double want = Math.Exp(xs[i]);
                double ulp = (double)MathF.BitIncrement((float)want) - (float)want;   // one float ulp at the result
                double e = Math.Abs(y[i] - want) / ulp;
                if (e > worst) { worst = e; at = xs[i]; }
            }
        }
        Assert.True(worst <= 2.0, $"VMath.Exp is {worst:F2} ulp off at x = {at}");
    }

    [Theory]
    [InlineData(88.73f)]
    [InlineData(1000f)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    [InlineData(-104f)]
    [InlineData(float.NaN)]
    public void Exp_OverflowUnderflowAndNaN_AreThoseOfMathF(float x)
    {
        float got = VMath.Exp(Vector512.Create(x))[0], want = MathF.Exp(x);
        Assert.Equal(want, got);
    }

    [Theory]
    [InlineData(-87.4f)]
    [InlineData(-95f)]
    [InlineData(-100f)]
    [InlineData(-103.5f)]
    public void Exp_OfSubnormalResults_StaysCloseToMathF(float x)
    {
        float got = VMath.Exp(Vector512.Create(x))[0], want = MathF.Exp(x);
        Assert.True(got > 0 && Math.Abs(got - want) <= 2 * float.Epsilon + 2.4e-7 * want, $"exp({x}) = {got}, MathF {want}");
    }

    [Fact]
    public void ExpInPlace_CoversTheVectorPartAndTheTail()
    {
        var xs = Enumerable.Range(0, 37).Select(i => (i - 18) * 0.7f).ToArray();
        var ys = (float[])xs.Clone();
        VMath.ExpInPlace(ys);
        for (int i = 0; i < xs.Length; i++)
            Assert.True(Math.Abs(ys[i] - Math.Exp(xs[i])) <= 2.4e-7 * Math.Exp(xs[i]), $"element {i}: {ys[i]} vs {Math.Exp(xs[i])}");
    }

    [Fact]
    public void Erf_AndTanh_MatchTheirScalarTwins()
    {
        var rng = new Random(5);
        for (int k = 0; k < 4096; k++)
        {
            var xs = new float[16];
            for (int i = 0; i < 16; i++) xs[i] = (float)(rng.NextDouble() * 12 - 6);
            var erf = VMath.Erf(Vector512.Create(xs));
            var tanh = VMath.Tanh(Vector512.Create(xs));
            for (int i = 0; i < 16; i++)
            {
                // Abramowitz–Stegun 7.1.26 (1.5e-7) plus float rounding of 1 − p·t·e^(−x²), which cancels near 0.
                Assert.True(Math.Abs(erf[i] - MathT.Erf((double)xs[i])) <= 1e-6, $"erf({xs[i]}) = {erf[i]}");
                // tanh's odd polynomial below |x| = 0.5 is good to ~4.5e-6 at the edge (a Taylor series; left as it was); above, the exponential form.
                Assert.True(Math.Abs(tanh[i] - Math.Tanh(xs[i])) <= (Math.Abs(xs[i]) < 0.5 ? 5e-6 : 4e-7), $"tanh({xs[i]}) = {tanh[i]}");
            }
        }
    }

    /// <summary>The AVX2 width (8 floats) computes what the AVX-512 width computes, lane by lane, bit for bit: one body
    /// (VMath&lt;TV&gt;) serves both, and a machine runs whichever it has (Simd.FloatLanes).</summary>
    [Fact]
    public void EightLanes_GiveTheBitsOfSixteen_ForExpErfAndTanh()
    {
        var rng = new Random(17);
        float[] specials = [0f, -0f, 1f, -1f, 0.4999f, 0.5f, 88.72f, 88.73f, -103.9f, -104f, 1e-8f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, 30f, -30f];
        for (int k = 0; k < 2048; k++)
        {
            var xs = k == 0 ? specials : Enumerable.Range(0, 16).Select(_ => (float)(rng.NextDouble() * 200 - 100) * (rng.Next(4) == 0 ? 0.01f : 1f)).ToArray();
            var x16 = Vector512.Create(xs);
            var (lo, hi) = (Vector256.Create(xs.AsSpan(0, 8)), Vector256.Create(xs.AsSpan(8, 8)));
            foreach (var (name, wide, narrow) in new (string, Func<Vector512<float>, Vector512<float>>, Func<Vector256<float>, Vector256<float>>)[]
                     { ("exp", VMath.Exp, VMath.Exp), ("erf", VMath.Erf, VMath.Erf), ("tanh", VMath.Tanh, VMath.Tanh) })
            {
                var w = wide(x16);
                var (a, b) = (narrow(lo), narrow(hi));
                for (int i = 0; i < 16; i++)
                {
                    float n8 = i < 8 ? a[i] : b[i - 8];
                    Assert.True(BitConverter.SingleToInt32Bits(n8) == BitConverter.SingleToInt32Bits(w[i]), $"{name}({xs[i]}): 8 lanes {n8}, 16 lanes {w[i]}");
                }
            }
        }
    }

    [Theory]
    [InlineData(16)]
    [InlineData(8)]
    [InlineData(0)]
    public void ExpInPlace_AtEachWidth_IsTheExponential(int lanes)
    {
        var xs = Enumerable.Range(0, 45).Select(i => (i - 22) * 0.9f).ToArray();
        var ys = (float[])xs.Clone();
        VMath.ExpInPlace(ys, lanes);
        for (int i = 0; i < xs.Length; i++)
            Assert.True(Math.Abs(ys[i] - Math.Exp(xs[i])) <= 2.4e-7 * Math.Exp(xs[i]), $"{lanes} lanes, element {i}: {ys[i]} vs {Math.Exp(xs[i])}");
    }

    /// <summary>The fused pass of the softmaxes and the cross-entropy: at each width and length (vector part and tail, in
    /// place or not), the exponentials of x − shift bit for bit as <see cref="VMath.ExpInPlace(System.Span{float}, int)"/>
    /// gives them, and their sum within float rounding of the exact one; doubles through the generic entry.</summary>
    [Theory]
    [InlineData(16)]
    [InlineData(8)]
    [InlineData(0)]
    public void ExpShiftedSum_IsExpInPlaceOfTheShiftedRow_AndItsSum(int lanes)
    {
        var rng = new Random(lanes + 1);
        foreach (int n in new[] { 0, 1, 7, 8, 15, 16, 17, 33, 130 })
            foreach (bool inPlace in new[] { false, true })
            {
                var x = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 30 - 20)).ToArray();
                float shift = n == 0 ? 0f : x.Max();
                var want = x.Select(v => v - shift).ToArray();
                VMath.ExpInPlace(want, lanes);
                var y = inPlace ? (float[])x.Clone() : new float[n + 3];
                float sum = VMath.ExpShiftedSum(inPlace ? y : x, shift, y, lanes);
                for (int i = 0; i < n; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(want[i]) == BitConverter.SingleToInt32Bits(y[i]), $"{lanes} lanes, n = {n}, element {i}: {y[i]} vs {want[i]}");
                double exact = want.Sum(v => (double)v);
                Assert.True(Math.Abs(sum - exact) <= 1e-6 * Math.Max(1, exact), $"{lanes} lanes, n = {n}: sum {sum} vs {exact}");
            }
        var xd = Enumerable.Range(0, 21).Select(i => i * 0.37 - 3).ToArray();
        var yd = new double[21];
        double sd = VMath.ExpShiftedSum<double>(xd, 2.0, yd);
        for (int i = 0; i < xd.Length; i++) Assert.Equal(Math.Exp(xd[i] - 2.0), yd[i], 1e-15);
        Assert.Equal(xd.Sum(v => Math.Exp(v - 2.0)), sd, 1e-12);
    }
}
