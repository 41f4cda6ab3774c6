using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Bert.Runtime;

/// <summary>The widest float vectors this machine runs in hardware: <see cref="FloatLanes"/> is 16 (AVX-512), 8 (AVX2)
/// or 0 (neither: the kernels' scalar loops). The generated element-wise kernels, the vector exponential and the managed
/// GEMM's micro-kernel and packing take their width from here. <c>BERT_SIMD=256</c> caps it at AVX2 on an AVX-512
/// machine (to measure what an AVX2 machine runs), <c>BERT_SIMD=scalar</c> turns those vector loops off (the softmaxes'
/// exponentials and their sums too, <see cref="VMath.ExpShiftedSum{T}"/>); LayerNorm's rows and the softmaxes' maxima and
/// divisions are Vector&lt;T&gt; code, and the dropout mask's Philox AVX2 code wherever AVX2 is present: they do not
/// follow it.</summary>
public static class Simd
{
    /// <summary>Floats per vector in the element-wise kernels: 16, 8 or 0.</summary>
    public static int FloatLanes { get; } = Pick(Environment.GetEnvironmentVariable("BERT_SIMD"));

    static int Pick(string? cap)
    {
        int lanes = Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 0;
        switch (cap?.Trim().ToLowerInvariant())
        {
            case null or "" or "512" or "avx512": return lanes;
            case "256" or "avx2": return Math.Min(lanes, 8);
            case "scalar" or "0" or "none": return 0;
            default:
                Console.Error.WriteLine($"BERT_SIMD={cap} is not 512, 256 or scalar; using {(lanes == 16 ? "AVX-512" : lanes == 8 ? "AVX2" : "scalar")} loops, as the machine allows.");
                return lanes;
        }
    }

    /// <summary>"AVX-512 (16 floats)", "AVX2 (8 floats)" or "scalar", for benchmark lines.</summary>
    public static string Describe() => FloatLanes switch { 16 => "AVX-512 (16 floats)", 8 => "AVX2 (8 floats)", _ => "scalar" };
}

/// <summary>A vector width as a type, for code that is compiled once per width (the generated kernels' row loops): with
/// <c>typeof(TW) == typeof(Lanes16)</c> the JIT keeps only that width's loop in each instantiation, so the loops of the
/// widths a machine does not run are never compiled and do not use up the inlining budget of the one it does.</summary>
public interface ILanes;
/// <summary>16 floats (AVX-512).</summary>
public readonly struct Lanes16 : ILanes;
/// <summary>8 floats (AVX2).</summary>
public readonly struct Lanes8 : ILanes;
/// <summary>No vector loop: the scalar one only.</summary>
public readonly struct NoLanes : ILanes;

/// <summary>Vector math the generated float kernels use where System.Runtime.Intrinsics has none, for 16 floats
/// (Vector512) and 8 (Vector256): one body per function, <see cref="VMath{TV}"/>, instantiated per width.</summary>
public static class VMath
{
    /// <summary>tanh: an odd polynomial below |x| = 0.5 (where 1 − 2/(e²ˣ+1) would cancel), the exponential form above.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Tanh(Vector512<float> x) => VMath<F512>.Tanh(new(x)).V;

    /// <inheritdoc cref="Tanh(Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Tanh(Vector256<float> x) => VMath<F256>.Tanh(new(x)).V;

    /// <summary>eˣ: x = n·ln 2 + r with |r| ≤ ln 2 / 2 (n rounded by the 1.5·2²³ trick, ln 2 in two parts), eʳ by
    /// Cephes' degree-6 polynomial, then 2ⁿ as two normal powers of two (so that n = 128 near the top and the subnormal
    /// results near the bottom come out right). Within 2 ulp of the correctly rounded result for normal results
    /// (checked against Math.Exp in the tests); +∞ above 88.72, 0 below −103.97, NaN stays NaN. Vector512.Exp and
    /// TensorPrimitives.Exp run far slower (20 cycles an element and more, .NET 10.0.12, measured 2026-11-27).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x) => VMath<F512>.Exp(new(x)).V;

    /// <inheritdoc cref="Exp(Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x) => VMath<F256>.Exp(new(x)).V;

    /// <summary>erf as MathT's float erf (Abramowitz and Stegun 7.1.26, |error| ≤ 1.5e-7).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Erf(Vector512<float> x) => VMath<F512>.Erf(new(x)).V;

    /// <inheritdoc cref="Erf(Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Erf(Vector256<float> x) => VMath<F256>.Erf(new(x)).V;

    /// <summary><see cref="Erf(Vector512{float})"/>, and in <paramref name="expNegX2"/> the e^(−x²) it computes on the
    /// way, bit for bit <c>Exp(-x * x)</c> for any x but NaN (a NaN may come out with the other sign): the backward of erf (2/√π·e^(−x²)) then costs no second exponential.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Erf(Vector512<float> x, out Vector512<float> expNegX2)
    {
        var y = VMath<F512>.Erf(new(x), out var e).V;
        expNegX2 = e.V;
        return y;
    }

    /// <inheritdoc cref="Erf(Vector512{float}, out Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Erf(Vector256<float> x, out Vector256<float> expNegX2)
    {
        var y = VMath<F256>.Erf(new(x), out var e).V;
        expNegX2 = e.V;
        return y;
    }

    /// <summary>y[i] = e^(x[i] − shift) and their sum, in one pass (x and y may be the same span): a softmax's or a
    /// cross-entropy's exponentials after the row's maximum. Floats: the vector <see cref="Exp(Vector512{float})"/> at
    /// <see cref="Simd.FloatLanes"/> and MathF.Exp for the tail, summed lane by lane, then across the lanes, then the tail;
    /// doubles through TensorPrimitives (exact to the last bits, for the double models the tests check gradients with).</summary>
    public static T ExpShiftedSum<T>(ReadOnlySpan<T> x, T shift, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (y.Length < x.Length) throw new ArgumentException($"ExpShiftedSum writes {x.Length} values into a span of {y.Length}.", nameof(y));
        if (typeof(T) == typeof(float))
        {
            float sum = ExpShiftedSum(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(x), Unsafe.As<T, float>(ref shift),
                System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(y), Simd.FloatLanes);
            return Unsafe.As<float, T>(ref sum);
        }
        System.Numerics.Tensors.TensorPrimitives.Subtract(x, shift, y);
        System.Numerics.Tensors.TensorPrimitives.Exp<T>(y[..x.Length], y);
        return System.Numerics.Tensors.TensorPrimitives.Sum<T>(y[..x.Length]);
    }

    /// <summary>As <see cref="ExpShiftedSum{T}"/> for floats with the vector width given (16, 8 or 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // a softmax's row: tier 0 would run its tail several times slower
    public static float ExpShiftedSum(ReadOnlySpan<float> x, float shift, Span<float> y, int lanes)
    {
        float sum = 0f;
        int i = lanes == 16 ? ExpShiftedSum16(x, shift, y, ref sum) : lanes == 8 ? ExpShiftedSum8(x, shift, y, ref sum) : 0;
        for (; i < x.Length; i++) { float e = MathF.Exp(x[i] - shift); y[i] = e; sum += e; }
        return sum;
    }

    // One method per width, so that each is compiled (and inlines its vector math) only where it runs.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static unsafe int ExpShiftedSum16(ReadOnlySpan<float> x, float shift, Span<float> y, ref float sum)
    {
        int i = 0;
        var acc = Vector512<float>.Zero;
        var s = Vector512.Create(shift);
        fixed (float* px = x, py = y)
            for (; i + 16 <= x.Length; i += 16) { var e = Exp(Vector512.Load(px + i) - s); Vector512.Store(e, py + i); acc += e; }
        sum = Vector512.Sum(acc);
        return i;
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static unsafe int ExpShiftedSum8(ReadOnlySpan<float> x, float shift, Span<float> y, ref float sum)
    {
        int i = 0;
        var acc = Vector256<float>.Zero;
        var s = Vector256.Create(shift);
        fixed (float* px = x, py = y)
            for (; i + 8 <= x.Length; i += 8) { var e = Exp(Vector256.Load(px + i) - s); Vector256.Store(e, py + i); acc += e; }
        sum = Vector256.Sum(acc);
        return i;
    }

    /// <summary>xs[i] = e^xs[i] in place: <see cref="ExpShiftedSum(ReadOnlySpan{float}, float, Span{float}, int)"/> with a shift
    /// of 0 (x − 0 is x, bit for bit), its sum unused; the vector <see cref="Exp(Vector512{float})"/> at
    /// <see cref="Simd.FloatLanes"/>, then MathF.Exp for the tail.</summary>
    public static void ExpInPlace(Span<float> xs) => ExpInPlace(xs, Simd.FloatLanes);

    /// <summary>As <see cref="ExpInPlace(System.Span{float})"/> with the vector width given (16, 8 or 0): the tests run
    /// each width on any machine (Vector512 without AVX-512 is emulated, slowly but exactly).</summary>
    public static void ExpInPlace(Span<float> xs, int lanes) => ExpShiftedSum(xs, 0f, xs, lanes);
}

/// <summary>A float vector of one width as the vector math sees it (<see cref="F512"/>, <see cref="F256"/>): operators
/// and the few lane operations it needs, all static, so that every call is resolved and inlined when the JIT
/// specializes <see cref="VMath{TV}"/> for the width. (Vector512 and Vector256 implement the operator interfaces only
/// inside the runtime, so a generic method cannot use their operators directly; these wrappers add nothing at run
/// time.)</summary>
public interface IFloatVector<TSelf> where TSelf : struct, IFloatVector<TSelf>
{
    static abstract TSelf operator +(TSelf a, TSelf b);
    static abstract TSelf operator -(TSelf a, TSelf b);
    static abstract TSelf operator *(TSelf a, TSelf b);
    static abstract TSelf operator /(TSelf a, TSelf b);
    static abstract TSelf operator -(TSelf a);
    static abstract TSelf Create(float x);
    static abstract TSelf Min(TSelf a, TSelf b);
    static abstract TSelf Max(TSelf a, TSelf b);
    static abstract TSelf Abs(TSelf a);
    /// <summary>Lanes of a where mask is all ones, of b where it is zero.</summary>
    static abstract TSelf Select(TSelf mask, TSelf a, TSelf b);
    static abstract TSelf LessThan(TSelf a, TSelf b);
    static abstract TSelf GreaterThan(TSelf a, TSelf b);
    /// <summary>All ones where a lane is not NaN.</summary>
    static abstract TSelf IsNumber(TSelf a);
    /// <summary>e·2ⁿ, n the integer that adding the 1.5·2²³ <paramref name="magic"/> left in the low bits of
    /// <paramref name="t"/>: as two normal powers of two, 2^⌊n/2⌋ and 2^(n − ⌊n/2⌋), so that 2¹²⁸ and the subnormal
    /// results come out without an overflowing or zero factor.</summary>
    static abstract TSelf ScaleByPow2(TSelf e, TSelf t, TSelf magic);
}

/// <summary>AVX-512's 16 floats.</summary>
public readonly struct F512(Vector512<float> v) : IFloatVector<F512>
{
    public readonly Vector512<float> V = v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 operator +(F512 a, F512 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 operator -(F512 a, F512 b) => new(a.V - b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 operator *(F512 a, F512 b) => new(a.V * b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 operator /(F512 a, F512 b) => new(a.V / b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 operator -(F512 a) => new(-a.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 Create(float x) => new(Vector512.Create(x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 Min(F512 a, F512 b) => new(Vector512.Min(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 Max(F512 a, F512 b) => new(Vector512.Max(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 Abs(F512 a) => new(Vector512.Abs(a.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 Select(F512 mask, F512 a, F512 b) => new(Vector512.ConditionalSelect(mask.V, a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 LessThan(F512 a, F512 b) => new(Vector512.LessThan(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 GreaterThan(F512 a, F512 b) => new(Vector512.GreaterThan(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 IsNumber(F512 a) => new(Vector512.Equals(a.V, a.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F512 ScaleByPow2(F512 e, F512 t, F512 magic)
    {
        var n = t.V.AsInt32() - magic.V.AsInt32();
        var h = Vector512.ShiftRightArithmetic(n, 1);
        var bias = Vector512.Create(127);
        return new(e.V * Vector512.ShiftLeft(h + bias, 23).AsSingle() * Vector512.ShiftLeft(n - h + bias, 23).AsSingle());
    }
}

/// <summary>AVX2's 8 floats.</summary>
public readonly struct F256(Vector256<float> v) : IFloatVector<F256>
{
    public readonly Vector256<float> V = v;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 operator +(F256 a, F256 b) => new(a.V + b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 operator -(F256 a, F256 b) => new(a.V - b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 operator *(F256 a, F256 b) => new(a.V * b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 operator /(F256 a, F256 b) => new(a.V / b.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 operator -(F256 a) => new(-a.V);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 Create(float x) => new(Vector256.Create(x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 Min(F256 a, F256 b) => new(Vector256.Min(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 Max(F256 a, F256 b) => new(Vector256.Max(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 Abs(F256 a) => new(Vector256.Abs(a.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 Select(F256 mask, F256 a, F256 b) => new(Vector256.ConditionalSelect(mask.V, a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 LessThan(F256 a, F256 b) => new(Vector256.LessThan(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 GreaterThan(F256 a, F256 b) => new(Vector256.GreaterThan(a.V, b.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 IsNumber(F256 a) => new(Vector256.Equals(a.V, a.V));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static F256 ScaleByPow2(F256 e, F256 t, F256 magic)
    {
        var n = t.V.AsInt32() - magic.V.AsInt32();
        var h = Vector256.ShiftRightArithmetic(n, 1);
        var bias = Vector256.Create(127);
        return new(e.V * Vector256.ShiftLeft(h + bias, 23).AsSingle() * Vector256.ShiftLeft(n - h + bias, 23).AsSingle());
    }
}

/// <summary>The vector math written once for any width <typeparamref name="TV"/>. Every lane computes what the other
/// widths' lanes compute, bit for bit.</summary>
public static class VMath<TV> where TV : struct, IFloatVector<TV>
{
    /// <inheritdoc cref="VMath.Exp(Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Exp(TV x)
    {
        var hi = TV.Create(88.72283f);
        var lo = TV.Create(-103.97208f);
        var magic = TV.Create(12582912f);                      // 1.5·2²³
        var xc = TV.Min(TV.Max(x, lo), hi);
        var t = xc * TV.Create(1.44269504088896341f) + magic;
        var n = t - magic;                                      // round(x / ln 2), to nearest even
        var r = xc - n * TV.Create(0.693359375f);
        r -= n * TV.Create(-2.12194440e-4f);
        var p = TV.Create(1.9875691500E-4f);
        p = p * r + TV.Create(1.3981999507E-3f);
        p = p * r + TV.Create(8.3334519073E-3f);
        p = p * r + TV.Create(4.1665795894E-2f);
        p = p * r + TV.Create(1.6666665459E-1f);
        p = p * r + TV.Create(5.0000001201E-1f);
        var e = p * (r * r) + r + TV.Create(1f);
        var y = TV.ScaleByPow2(e, t, magic);
        y = TV.Select(TV.GreaterThan(x, hi), TV.Create(float.PositiveInfinity), y);
        y = TV.Select(TV.LessThan(x, lo), TV.Create(0f), y);
        return TV.Select(TV.IsNumber(x), y, x);
    }

    /// <inheritdoc cref="VMath.Tanh(Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Tanh(TV x)
    {
        var one = TV.Create(1f);
        var a = TV.Abs(x);
        var e = Exp(TV.Min(a + a, TV.Create(80f)));
        var big = one - TV.Create(2f) / (e + one);
        big = TV.Select(TV.LessThan(x, TV.Create(0f)), -big, big);
        var x2 = x * x;
        // x − x³/3 + 2x⁵/15 − 17x⁷/315 + 62x⁹/2835
        var p = TV.Create(62f / 2835f);
        p = p * x2 - TV.Create(17f / 315f);
        p = p * x2 + TV.Create(2f / 15f);
        p = p * x2 - TV.Create(1f / 3f);
        var small = x + x * x2 * p;
        return TV.Select(TV.LessThan(a, TV.Create(0.5f)), small, big);
    }

    /// <inheritdoc cref="VMath.Erf(Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Erf(TV x) => Erf(x, out _);

    /// <inheritdoc cref="VMath.Erf(Vector512{float}, out Vector512{float})"/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TV Erf(TV x, out TV expNegX2)
    {
        var one = TV.Create(1f);
        var a = TV.Abs(x);
        var t = one / (one + TV.Create(0.3275911f) * a);
        var p = TV.Create(1.061405429f) * t - TV.Create(1.453152027f);
        p = p * t + TV.Create(1.421413741f);
        p = p * t - TV.Create(0.284496736f);
        p = p * t + TV.Create(0.254829592f);
        expNegX2 = Exp(-(a * a));                            // a·a = x·x exactly, and −(x·x) = (−x)·x: Exp(-x * x)'s bits (NaN: maybe another sign)
        var y = one - p * t * expNegX2;
        return TV.Select(TV.LessThan(x, TV.Create(0f)), -y, y);
    }
}
