using System.Runtime.Intrinsics;

namespace Bert.Runtime;

/// <summary>Vector math the generated float kernels use where System.Runtime.Intrinsics has none.</summary>
public static class VMath
{
    /// <summary>tanh: an odd polynomial below |x| = 0.5 (where 1 − 2/(e²ˣ+1) would cancel), the exponential form above.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Tanh(Vector512<float> x)
    {
        var a = Vector512.Abs(x);
        var e = Exp(Vector512.Min(a + a, Vector512.Create(80f)));
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

    /// <summary>eˣ for 16 floats: x = n·ln 2 + r with |r| ≤ ln 2 / 2 (n rounded by the 1.5·2²³ trick, ln 2 in two parts),
    /// eʳ by Cephes' degree-6 polynomial, then 2ⁿ as two normal powers of two (so that n = 128 near the top and the
    /// subnormal results near the bottom come out right). Within 2 ulp of the correctly rounded result for normal results
    /// (checked against Math.Exp in the tests); +∞ above 88.72, 0 below −103.97, NaN stays NaN. Vector512.Exp and
    /// TensorPrimitives.Exp run far slower here (20 cycles an element and more, .NET 10.0.12, measured 2026-11-27).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        var hi = Vector512.Create(88.72283f);
        var lo = Vector512.Create(-103.97208f);
        var magic = Vector512.Create(12582912f);                // 1.5·2²³
        var xc = Vector512.Min(Vector512.Max(x, lo), hi);
        var t = xc * Vector512.Create(1.44269504088896341f) + magic;
        var n = t - magic;                                      // round(x / ln 2), to nearest even
        var ni = t.AsInt32() - magic.AsInt32();
        var r = xc - n * Vector512.Create(0.693359375f);
        r -= n * Vector512.Create(-2.12194440e-4f);
        var p = Vector512.Create(1.9875691500E-4f);
        p = p * r + Vector512.Create(1.3981999507E-3f);
        p = p * r + Vector512.Create(8.3334519073E-3f);
        p = p * r + Vector512.Create(4.1665795894E-2f);
        p = p * r + Vector512.Create(1.6666665459E-1f);
        p = p * r + Vector512.Create(5.0000001201E-1f);
        var e = p * (r * r) + r + Vector512<float>.One;
        var h = Vector512.ShiftRightArithmetic(ni, 1);
        var bias = Vector512.Create(127);
        var y = e * Vector512.ShiftLeft(h + bias, 23).AsSingle() * Vector512.ShiftLeft(ni - h + bias, 23).AsSingle();
        y = Vector512.ConditionalSelect(Vector512.GreaterThan(x, hi), Vector512.Create(float.PositiveInfinity), y);
        y = Vector512.ConditionalSelect(Vector512.LessThan(x, lo), Vector512<float>.Zero, y);
        return Vector512.ConditionalSelect(Vector512.Equals(x, x), y, x);
    }

    /// <summary>xs[i] = e^xs[i] in place: floats through <see cref="ExpInPlace(System.Span{float})"/>, doubles through
    /// TensorPrimitives (exact to the last bits, for the double models the tests check gradients with).</summary>
    public static void ExpInPlace<T>(System.Span<T> xs) where T : unmanaged, System.Numerics.IExponentialFunctions<T>
    {
        if (typeof(T) == typeof(float)) ExpInPlace(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(xs));
        else System.Numerics.Tensors.TensorPrimitives.Exp<T>(xs, xs);
    }

    /// <summary>xs[i] = e^xs[i] in place (the vector <see cref="Exp(Vector512{float})"/>, then MathF.Exp for a tail of
    /// fewer than 16).</summary>
    public static unsafe void ExpInPlace(System.Span<float> xs)
    {
        int i = 0;
        fixed (float* p = xs)
        {
            if (Vector512.IsHardwareAccelerated)
                for (; i + 16 <= xs.Length; i += 16) Vector512.Store(Exp(Vector512.Load(p + i)), p + i);
            for (; i < xs.Length; i++) p[i] = System.MathF.Exp(p[i]);
        }
    }

    /// <summary>erf as MathT's float erf (Abramowitz and Stegun 7.1.26, |error| ≤ 1.5e-7).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Erf(Vector512<float> x)
    {
        var a = Vector512.Abs(x);
        var t = Vector512<float>.One / (Vector512<float>.One + Vector512.Create(0.3275911f) * a);
        var p = Vector512.Create(1.061405429f) * t - Vector512.Create(1.453152027f);
        p = p * t + Vector512.Create(1.421413741f);
        p = p * t - Vector512.Create(0.284496736f);
        p = p * t + Vector512.Create(0.254829592f);
        var y = Vector512<float>.One - p * t * Exp(-a * a);
        return Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<float>.Zero), -y, y);
    }
}
