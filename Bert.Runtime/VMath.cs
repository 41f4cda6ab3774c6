using System.Runtime.Intrinsics;

namespace Bert.Runtime;

/// <summary>Vector math the generated float kernels use where System.Runtime.Intrinsics has none.</summary>
public static class VMath
{
    /// <summary>tanh: an odd polynomial below |x| = 0.5 (where 1 − 2/(e²ˣ+1) would cancel), the exponential form above.</summary>
    public static Vector512<float> Tanh(Vector512<float> x)
    {
        var a = Vector512.Abs(x);
        var e = Vector512.Exp(Vector512.Min(a + a, Vector512.Create(80f)));
        var big = Vector512<float>.One - Vector512.Create(2f) / (e + Vector512<float>.One);
        big = Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<float>.Zero), -big, big);
        var x2 = x * x;
        // x − x³/3 + 2x⁵/15 − 17x⁷/315 + 62x⁹/2835
        var p = Vector512.Create(62f / 2835f);
        p = p * x2 - Vector512.Create(17f / 315f);
        p = p * x2 + Vector512.Create(2f / 15f);
        p = p * x2 - Vector512.Create(1f / 3f);
        var small = x + x * x2 * p;
        return Vector512.ConditionalSelect(Vector512.LessThan(a, Vector512.Create(0.5f)), small, big);
    }

    /// <summary>erf as MathT's float erf (Abramowitz and Stegun 7.1.26, |error| ≤ 1.5e-7).</summary>
    public static Vector512<float> Erf(Vector512<float> x)
    {
        var a = Vector512.Abs(x);
        var t = Vector512<float>.One / (Vector512<float>.One + Vector512.Create(0.3275911f) * a);
        var p = Vector512.Create(1.061405429f) * t - Vector512.Create(1.453152027f);
        p = p * t + Vector512.Create(1.421413741f);
        p = p * t - Vector512.Create(0.284496736f);
        p = p * t + Vector512.Create(0.254829592f);
        var y = Vector512<float>.One - p * t * Vector512.Exp(-a * a);
        return Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<float>.Zero), -y, y);
    }
}
