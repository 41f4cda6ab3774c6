using System.Globalization;
using System.Numerics;
using System.Numerics.Tensors;
using Bert.Runtime.Kernels;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Kernels;

/// <summary>Both GEMM backends (managed SIMD and OpenBLAS) against a naive double-precision reference, over every
/// transpose combination, padded strides, alpha/beta values (beta = 0 with NaN-filled C), float and double.</summary>
public class GemmTests
{
    /// <summary>float: |C - ref| &lt;= 1e-5·sqrt(K)·scale, where scale = |alpha|·Σₖ|a·b| + |beta|·|C₀| bounds the
    /// magnitude of every term. Each of the K fused multiply-adds rounds with unit roundoff 6e-8; the errors of a
    /// dot product add up like a random walk, ~6e-8·sqrt(K)·scale, so 1e-5·sqrt(K) leaves a margin of ~100 for
    /// the alpha/beta roundings and unlucky correlations while still catching a wrong or missing term.</summary>
    const double FloatRel = 1e-5;

    /// <summary>double: the same argument with unit roundoff 1.1e-16, so 1e-12·sqrt(K) again leaves a large margin.</summary>
    const double DoubleRel = 1e-12;

    public enum Impl { Managed, OpenBlas }

    /// <summary>Runs one product on one backend and returns null when it matches the reference, else a description.
    /// A, B and C are stored with row strides larger than needed by padA/padB/padC; C's padding (and the pad rows of
    /// A and B) hold sentinels that must come through untouched.</summary>
    static string? Check<T>(Impl impl, bool transA, bool transB, int M, int N, int K, double alpha, double beta,
        int padA, int padB, int padC, int seed, int threads = 0) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var rng = new Random(seed);
        int aRows = transA ? K : M, aCols = transA ? M : K, lda = aCols + padA;
        int bRows = transB ? N : K, bCols = transB ? K : N, ldb = bCols + padB;
        int ldc = N + padC;
        T[] A = Fill<T>(rng, Math.Max(0, (aRows - 1) * lda + aCols) + padA);
        T[] B = Fill<T>(rng, Math.Max(0, (bRows - 1) * ldb + bCols) + padB);
        T[] C = Fill<T>(rng, M * ldc);
        T sentinel = T.CreateTruncating(12345.0);
        for (int i = 0; i < M; i++)
            for (int j = N; j < ldc; j++) C[i * ldc + j] = sentinel;
        if (beta == 0) for (int i = 0; i < M; i++) C.AsSpan(i * ldc, N).Fill(T.NaN);
        T[] C0 = (T[])C.Clone();

        T al = T.CreateTruncating(alpha), be = T.CreateTruncating(beta);
        if (impl == Impl.Managed)
        {
            if (threads > 0) ManagedGemm.Run(transA, transB, M, N, K, al, A, lda, B, ldb, be, C, ldc, threads);
            else ManagedGemm.Run(transA, transB, M, N, K, al, A, lda, B, ldb, be, C, ldc);
        }
        else OpenBlasGemm.Run(transA, transB, M, N, K, al, A, lda, B, ldb, be, C, ldc);

        double rel = typeof(T) == typeof(float) ? FloatRel : DoubleRel;
        string what = string.Create(CultureInfo.InvariantCulture,
            $"{impl} {typeof(T).Name} transA={transA} transB={transB} M={M} N={N} K={K} alpha={alpha} beta={beta} lda={lda} ldb={ldb} ldc={ldc} seed={seed}");
        // The reference: op(A) and op(B)ᵀ copied to contiguous double rows (and their magnitudes, for the error
        // scale), then dot products in double (TensorPrimitives, so that the Debug test build stays fast).
        var opA = new double[M * K];
        var opBt = new double[N * K];
        for (int i = 0; i < M; i++)
            for (int k = 0; k < K; k++) opA[i * K + k] = double.CreateTruncating(transA ? A[k * lda + i] : A[i * lda + k]);
        for (int j = 0; j < N; j++)
            for (int k = 0; k < K; k++) opBt[j * K + k] = double.CreateTruncating(transB ? B[j * ldb + k] : B[k * ldb + j]);
        double[] absA = new double[opA.Length], absBt = new double[opBt.Length];
        TensorPrimitives.Abs(opA, absA);
        TensorPrimitives.Abs(opBt, absBt);
        for (int i = 0; i < M; i++)
        {
            for (int j = 0; j < N; j++)
            {
                double sum = TensorPrimitives.Dot(opA.AsSpan(i * K, K), opBt.AsSpan(j * K, K));
                double abs = TensorPrimitives.Dot(absA.AsSpan(i * K, K), absBt.AsSpan(j * K, K));
                double c0 = beta == 0 ? 0 : double.CreateTruncating(C0[i * ldc + j]);
                double expected = alpha * sum + beta * c0;
                double scale = Math.Abs(alpha) * abs + Math.Abs(beta * c0);
                double got = double.CreateTruncating(C[i * ldc + j]);
                double bound = rel * Math.Sqrt(Math.Max(K, 1)) * scale + double.Epsilon;
                if (!(Math.Abs(got - expected) <= bound))
                    return string.Create(CultureInfo.InvariantCulture,
                        $"{what}: C[{i},{j}] = {got:R}, expected {expected:R} (|diff| {Math.Abs(got - expected):G3} > {bound:G3})");
            }
            for (int j = N; j < ldc; j++)
                if (C[i * ldc + j] != sentinel)
                    return $"{what}: C[{i},{j}] is in the padding past N but was overwritten.";
        }
        return null;
    }

    static T[] Fill<T>(Random rng, int n) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var x = new T[n];
        for (int i = 0; i < n; i++) x[i] = T.CreateTruncating(rng.NextDouble() * 2 - 1);
        return x;
    }

    /// <summary>The skip reason for OpenBLAS tests, or null when OpenBLAS is installed (as it is on CI).</summary>
    internal static string? OpenBlasMissing => OpenBlasGemm.IsAvailable ? null
        : $"OpenBLAS is not installed ({OpenBlasGemm.LoadError}); install libopenblas0-pthread to test that backend.";

    /// <summary>A property that is skipped, with the reason, when OpenBLAS is not installed.</summary>
    public sealed class OpenBlasPropertyAttribute : PropertyAttribute
    {
        public OpenBlasPropertyAttribute() { if (OpenBlasMissing is { } why) Skip = why; }
    }

    /// <summary>A theory that is skipped, with the reason, when OpenBLAS is not installed.</summary>
    public sealed class OpenBlasTheoryAttribute : TheoryAttribute
    {
        public OpenBlasTheoryAttribute() { if (OpenBlasMissing is { } why) Skip = why; }
    }

    public record Case(bool TransA, bool TransB, int M, int N, int K, double Alpha, double Beta, int PadA, int PadB, int PadC, int Seed)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"tA={TransA} tB={TransB} {M}x{N}x{K} alpha={Alpha} beta={Beta} pads=({PadA},{PadB},{PadC}) seed={Seed}");
    }

    static readonly Gen<Case> Cases =
        from tA in Gen.Elements(false, true)
        from tB in Gen.Elements(false, true)
        from m in Gen.Choose(1, 70)
        from n in Gen.Choose(1, 70)
        from k in Gen.Choose(1, 70)
        from alpha in Gen.Elements(1.0, -0.5, 2.25)
        from beta in Gen.Elements(0.0, 1.0, -1.5, 0.5)
        from pa in Gen.Choose(0, 5)
        from pb in Gen.Choose(0, 5)
        from pc in Gen.Choose(0, 5)
        from seed in Gen.Choose(0, int.MaxValue)
        select new Case(tA, tB, m, n, k, alpha, beta, pa, pb, pc, seed);

    static Property Holds(Func<Case, string?> check) =>
        Prop.ForAll(Cases.ToArbitrary(), (Case c) =>
        {
            string? error = check(c);
            if (error != null) throw new Xunit.Sdk.XunitException(error);
        });

    [Property(MaxTest = 60)]
    public Property Managed_float_matches_reference() =>
        Holds(c => Check<float>(Impl.Managed, c.TransA, c.TransB, c.M, c.N, c.K, c.Alpha, c.Beta, c.PadA, c.PadB, c.PadC, c.Seed));

    [Property(MaxTest = 60)]
    public Property Managed_double_matches_reference() =>
        Holds(c => Check<double>(Impl.Managed, c.TransA, c.TransB, c.M, c.N, c.K, c.Alpha, c.Beta, c.PadA, c.PadB, c.PadC, c.Seed));

    [OpenBlasProperty(MaxTest = 60)]
    public Property OpenBlas_float_matches_reference() =>
        Holds(c => Check<float>(Impl.OpenBlas, c.TransA, c.TransB, c.M, c.N, c.K, c.Alpha, c.Beta, c.PadA, c.PadB, c.PadC, c.Seed));

    [OpenBlasProperty(MaxTest = 60)]
    public Property OpenBlas_double_matches_reference() =>
        Holds(c => Check<double>(Impl.OpenBlas, c.TransA, c.TransB, c.M, c.N, c.K, c.Alpha, c.Beta, c.PadA, c.PadB, c.PadC, c.Seed));

    /// <summary>Sizes past one register tile, cache block and the single-thread threshold, odd in every dimension:
    /// 257×131×301 splits rows between threads and blocks K; 67×301×129 splits columns (N &gt; M).</summary>
    public static TheoryData<bool, bool, int, int, int> LargeCases()
    {
        var data = new TheoryData<bool, bool, int, int, int>();
        foreach (bool tA in new[] { false, true })
            foreach (bool tB in new[] { false, true })
            {
                data.Add(tA, tB, 257, 131, 301);
                data.Add(tA, tB, 67, 301, 129);
            }
        data.Add(false, true, 13, 797, 1025); // K over several K blocks, N over several column blocks
        data.Add(true, false, 785, 33, 17);    // M over several row blocks
        return data;
    }

    [Theory]
    [MemberData(nameof(LargeCases))]
    public void Managed_large_odd_sizes_match_reference(bool transA, bool transB, int M, int N, int K) =>
        LargeOddSizes(Impl.Managed, transA, transB, M, N, K);

    [OpenBlasTheory]
    [MemberData(nameof(LargeCases))]
    public void OpenBlas_large_odd_sizes_match_reference(bool transA, bool transB, int M, int N, int K) =>
        LargeOddSizes(Impl.OpenBlas, transA, transB, M, N, K);

    static void LargeOddSizes(Impl impl, bool transA, bool transB, int M, int N, int K)
    {
        Assert.Null(Check<float>(impl, transA, transB, M, N, K, 1.5, 0.0, 3, 1, 7, seed: M + N + K));
        Assert.Null(Check<double>(impl, transA, transB, M, N, K, -0.75, 0.5, 0, 5, 2, seed: M * N + K));
    }

    [Fact]
    public void Managed_degenerate_shapes() => DegenerateShapes(Impl.Managed);

    [OpenBlasTheory]
    [InlineData(Impl.OpenBlas)]
    public void OpenBlas_degenerate_shapes(Impl impl) => DegenerateShapes(impl);

    static void DegenerateShapes(Impl impl)
    {
        Action<bool, bool, int, int, int, float, float[], int, float[], int, float, float[], int> run = impl == Impl.Managed
            ? (ta, tb, m, n, k, al, a, la, b, lb, be, c, lc) => ManagedGemm.Run<float>(ta, tb, m, n, k, al, a, la, b, lb, be, c, lc)
            : (ta, tb, m, n, k, al, a, la, b, lb, be, c, lc) => OpenBlasGemm.Run<float>(ta, tb, m, n, k, al, a, la, b, lb, be, c, lc);

        // K == 0: C = beta·C; with beta == 0 the NaNs in C are overwritten by zeros.
        float[] c = [1, 2, 3, 4, 5, 6];
        run(false, false, 2, 3, 0, 1f, [], 0, [], 3, 2f, c, 3);
        Assert.Equal(new float[] { 2, 4, 6, 8, 10, 12 }, c);
        c = [float.NaN, float.NaN, float.NaN, float.NaN];
        run(true, true, 2, 2, 0, 1f, [], 2, [], 0, 0f, c, 2);
        Assert.Equal(new float[] { 0, 0, 0, 0 }, c);

        // alpha == 0 with beta == 0: zeros, whatever A and B hold.
        c = [float.NaN, float.NaN, float.NaN, float.NaN];
        run(false, false, 2, 2, 1, 0f, [float.NaN, 1], 1, [1, float.NaN], 2, 0f, c, 2);
        Assert.Equal(new float[] { 0, 0, 0, 0 }, c);

        // M == 0 or N == 0: nothing is touched, even with empty spans.
        c = [7];
        run(false, false, 0, 1, 3, 1f, [], 3, [1, 2, 3], 1, 0f, c, 1);
        run(false, false, 1, 0, 3, 1f, [1, 2, 3], 3, [], 0, 0f, c, 0);
        Assert.Equal(7f, c[0]);
    }

    [Fact]
    public void Too_short_spans_are_rejected()
    {
        float[] a = new float[5], b = new float[6], c = new float[4];
        Assert.Throws<ArgumentException>(() => ManagedGemm.Run<float>(false, false, 2, 2, 3, 1f, a, 3, b, 2, 0f, c, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => ManagedGemm.Run<float>(false, false, 2, 2, 3, 1f, new float[6], 2, b, 2, 0f, c, 2));
    }

    /// <summary>The managed GEMM is bitwise reproducible: the same call twice, and the same call on one thread and
    /// on several, give identical bits (K is never split across threads and its blocking depends only on K).</summary>
    [Theory]
    [InlineData(false, false, 300, 200, 777)]
    [InlineData(true, true, 150, 333, 515)]
    [InlineData(false, true, 800, 900, 300)]   // columns split, each thread's rows over two blocks
    [InlineData(true, false, 1000, 70, 500)]   // rows split
    public void Managed_is_deterministic(bool transA, bool transB, int M, int N, int K)
    {
        var rng = new Random(7);
        float[] a = Fill<float>(rng, M * K), b = Fill<float>(rng, K * N), c0 = Fill<float>(rng, M * N);
        int lda = transA ? M : K, ldb = transB ? K : N;
        float[] Run(int threads)
        {
            float[] c = (float[])c0.Clone();
            ManagedGemm.Run<float>(transA, transB, M, N, K, 0.7f, a, lda, b, ldb, -0.3f, c, N, threads);
            return c;
        }
        float[] first = Run(ManagedGemm.DefaultThreads), second = Run(ManagedGemm.DefaultThreads), single = Run(1), three = Run(3);
        Assert.True(first.AsSpan().SequenceEqual(second), "two identical calls differ");
        Assert.True(first.AsSpan().SequenceEqual(single), "the multi-threaded result differs from the single-threaded one");
        Assert.True(first.AsSpan().SequenceEqual(three), "the result depends on the thread count");
    }

    /// <summary>Packing buffers are pooled per thread: after a first call, a single-threaded product allocates nothing.</summary>
    [Fact]
    public void Managed_single_threaded_calls_do_not_allocate()
    {
        var rng = new Random(3);
        float[] a = Fill<float>(rng, 50 * 40), b = Fill<float>(rng, 40 * 30), c = new float[50 * 30];
        ManagedGemm.Run<float>(true, false, 50, 30, 40, 1f, a, 50, b, 30, 0f, c, 30);
        long before = GC.GetAllocatedBytesForCurrentThread();
        ManagedGemm.Run<float>(true, false, 50, 30, 40, 1f, a, 50, b, 30, 0.5f, c, 30);
        ManagedGemm.Run<float>(false, true, 50, 30, 40, 1f, a, 40, b, 40, 0f, c, 30);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Backend_and_description()
    {
        string? env = Environment.GetEnvironmentVariable(Gemm.EnvironmentVariable);
        if (string.IsNullOrEmpty(env))
            Assert.Equal(GemmBackend.Managed, Gemm.Backend);
        Assert.StartsWith(Gemm.Backend == GemmBackend.OpenBlas ? "OpenBLAS" : "managed SIMD", Gemm.Describe());
        Assert.StartsWith("managed SIMD (", ManagedGemm.Describe());
        if (OpenBlasGemm.IsAvailable) Assert.Contains("OpenBLAS", OpenBlasGemm.Describe());

        // The dispatcher gives the same answer as a backend called directly (to within the float tolerance).
        float[] a = [1, 2, 3, 4, 5, 6], b = [7, 8, 9, 10, 11, 12], c = new float[4];
        Gemm.Run<float>(false, false, 2, 2, 3, 1f, a, 3, b, 2, 0f, c, 2);
        Assert.Equal(new float[] { 58, 64, 139, 154 }, c);
    }
}
