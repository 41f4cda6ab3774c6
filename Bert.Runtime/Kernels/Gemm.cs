using System.Linq;
using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Bert.Runtime.Kernels;

/// <summary>A model's weight matrices packed for <see cref="ManagedGemm.RunPacked{T}"/>, keyed by the weights' address
/// (a model's parameters live in one pinned buffer) and shape. The owner clears it whenever the weights may have
/// changed (<see cref="Model{T}"/> does on every access to its parameters); a stale entry would compute with old weights.</summary>
public sealed unsafe class WeightPacks<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    readonly Dictionary<(nint, int, int), ManagedGemm.PackedMatrix<T>> _packs = new();

    /// <summary>How many matrices are packed.</summary>
    public int Count => _packs.Count;
    /// <summary>Memory the packed copies take.</summary>
    public long Bytes => _packs.Values.Sum(p => p.Bytes);
    /// <summary>How many times a matrix was packed (a second pack of the same weights means they were cleared between).</summary>
    public int Packings { get; private set; }

    public void Clear() => _packs.Clear();

    /// <summary>W (N×K, row-major) packed as op(B) = Wᵀ.</summary>
    public ManagedGemm.PackedMatrix<T> Get(ReadOnlySpan<T> w, int K, int N)
    {
        var key = ((nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(w)), K, N);
        if (!_packs.TryGetValue(key, out var p))
        {
            _packs[key] = p = ManagedGemm.Pack(true, w, K, K, N);
            Packings++;
        }
        return p;
    }
}

/// <summary>Which implementation <see cref="Gemm.Run{T}"/> dispatches to.</summary>
public enum GemmBackend
{
    /// <summary>cblas_sgemm / cblas_dgemm from the system OpenBLAS (libopenblas.so.0).</summary>
    OpenBlas,
    /// <summary>The managed SIMD implementation in <see cref="ManagedGemm"/>.</summary>
    Managed,
}

/// <summary>Row-major general matrix product: C(M,N) = alpha · op(A)(M,K) · op(B)(K,N) + beta · C.
/// op(X) is X or Xᵀ; lda/ldb/ldc are row strides of the matrices as stored.</summary>
/// <remarks>The backend is the managed SIMD GEMM unless the environment variable <c>BERT_BLAS</c> = <c>openblas</c>
/// asks for OpenBLAS: measured on whole training and inference steps (bench/RESULTS.md), OpenBLAS's own spinning
/// threads fight the runtime's parallel kernels, so the managed GEMM is faster end to end even where OpenBLAS
/// wins on a lone product. T must be float or double.
/// beta == 0 ignores the old contents of C (they may be NaN); K == 0 or alpha == 0 gives C = beta·C.</remarks>
public static class Gemm
{
    public const string EnvironmentVariable = "BERT_BLAS";

    private static int _backend = -1; // -1: not resolved yet; else (int)GemmBackend

    public static GemmBackend Backend
    {
        get
        {
            int b = Volatile.Read(ref _backend);
            if (b < 0) b = Resolve();
            return (GemmBackend)b;
        }
    }

    private static int Resolve()
    {
        string? v = Environment.GetEnvironmentVariable(EnvironmentVariable)?.Trim();
        GemmBackend b;
        if (string.IsNullOrEmpty(v))
            b = GemmBackend.Managed;
        else if (v.Equals("openblas", StringComparison.OrdinalIgnoreCase))
        {
            if (!OpenBlasGemm.IsAvailable)
                throw new InvalidOperationException(
                    $"{EnvironmentVariable}=openblas but OpenBLAS could not be loaded (looked for {string.Join(", ", OpenBlasGemm.LibraryNames)}: {OpenBlasGemm.LoadError}); install the Debian/Ubuntu package libopenblas0-pthread or unset {EnvironmentVariable}.");
            b = GemmBackend.OpenBlas;
        }
        else if (v.Equals("managed", StringComparison.OrdinalIgnoreCase))
            b = GemmBackend.Managed;
        else
            throw new InvalidOperationException(
                $"{EnvironmentVariable}='{v}' is not a known GEMM backend; allowed values are 'openblas' and 'managed' (or leave it unset for the managed GEMM).");
        Volatile.Write(ref _backend, (int)b);
        return (int)b;
    }

    /// <summary>y = x·Wᵀ (x: M×K, W: N×K, y: M×N), a layer's forward product. With <paramref name="packs"/> and the
    /// managed backend, W is packed once and reused (<see cref="WeightPacks{T}"/>): the same bits, without transposing
    /// the weights again on every call.</summary>
    public static void Linear<T>(WeightPacks<T>? packs, int M, int N, int K, ReadOnlySpan<T> x, ReadOnlySpan<T> w, Span<T> y)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (packs is null || Backend != GemmBackend.Managed)
            Run(false, true, M, N, K, T.One, x, K, w, K, T.Zero, y, N);
        else
            ManagedGemm.RunPacked(false, M, T.One, x, K, packs.Get(w, K, N), T.Zero, y, N);
    }

    /// <summary>One line naming the backend in use, e.g. "OpenBLAS 0.3.21 ... (libopenblas.so.0, pthread, 2 threads)".</summary>
    public static string Describe() => Backend == GemmBackend.OpenBlas ? OpenBlasGemm.Describe() : ManagedGemm.Describe();

    public static void Run<T>(bool transA, bool transB, int M, int N, int K,
        T alpha, ReadOnlySpan<T> A, int lda, ReadOnlySpan<T> B, int ldb,
        T beta, Span<T> C, int ldc) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (Backend == GemmBackend.OpenBlas)
            OpenBlasGemm.Run(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        else
            ManagedGemm.Run(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }

    /// <summary>Checks the shapes and that the spans hold every element addressed; returns false when C is empty (M or N is 0).</summary>
    internal static bool Validate<T>(bool transA, bool transB, int M, int N, int K,
        ReadOnlySpan<T> A, int lda, ReadOnlySpan<T> B, int ldb, Span<T> C, int ldc)
    {
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double))
            throw new NotSupportedException($"Gemm supports float and double, not {typeof(T).Name}.");
        if (M < 0 || N < 0 || K < 0)
            throw new ArgumentOutOfRangeException(nameof(M), $"Gemm dimensions must be non-negative (M={M}, N={N}, K={K}).");
        if (M == 0 || N == 0) return false;
        if (ldc < N) throw new ArgumentOutOfRangeException(nameof(ldc), $"ldc={ldc} must be at least N={N}.");
        if ((long)(M - 1) * ldc + N > C.Length)
            throw new ArgumentException($"C has {C.Length} elements; M={M}, N={N}, ldc={ldc} needs {(long)(M - 1) * ldc + N}.", nameof(C));
        if (K == 0) return true;
        CheckOperand(nameof(A), nameof(lda), transA ? K : M, transA ? M : K, A.Length, lda);
        CheckOperand(nameof(B), nameof(ldb), transB ? N : K, transB ? K : N, B.Length, ldb);
        return true;
    }

    private static void CheckOperand(string name, string ldName, int rows, int cols, int length, int ld)
    {
        if (ld < cols) throw new ArgumentOutOfRangeException(ldName, $"{ldName}={ld} must be at least {cols} (the stored row length of {name}).");
        if ((long)(rows - 1) * ld + cols > length)
            throw new ArgumentException($"{name} has {length} elements; {rows}×{cols} stored with {ldName}={ld} needs {(long)(rows - 1) * ld + cols}.", name);
    }

    /// <summary>C = beta·C over the M×N window (beta == 0 writes zeros, ignoring NaNs in C).</summary>
    internal static void Scale<T>(int M, int N, T beta, Span<T> C, int ldc) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (beta == T.One) return;
        for (int i = 0; i < M; i++)
        {
            Span<T> row = C.Slice(i * ldc, N);
            if (beta == T.Zero) row.Clear();
            else for (int j = 0; j < row.Length; j++) row[j] *= beta;
        }
    }
}

/// <summary>Thin bindings to cblas_sgemm / cblas_dgemm of the system OpenBLAS, called through function pointers
/// from <see cref="NativeLibrary.GetExport"/> (no DllImport resolver, so no conflict with other bindings).</summary>
public static unsafe class OpenBlasGemm
{
    private const int CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112;

    /// <summary>Library names tried in order; the 64-bit-integer build (libopenblas64_) exports symbols with a "64_" suffix.</summary>
    public static readonly string[] LibraryNames = ["libopenblas.so.0", "libopenblas.so", "libopenblas64_.so.0", "libopenblas.dylib", "libopenblas.dll"];

    private static readonly nint Handle;
    private static readonly bool Int64;
    private static readonly delegate* unmanaged[Cdecl]<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> Sgemm32;
    private static readonly delegate* unmanaged[Cdecl]<int, int, int, int, int, int, double, double*, int, double*, int, double, double*, int, void> Dgemm32;
    private static readonly delegate* unmanaged[Cdecl]<int, int, int, long, long, long, float, float*, long, float*, long, float, float*, long, void> Sgemm64;
    private static readonly delegate* unmanaged[Cdecl]<int, int, int, long, long, long, double, double*, long, double*, long, double, double*, long, void> Dgemm64;
    private static readonly delegate* unmanaged[Cdecl]<byte*> GetConfig;
    private static readonly delegate* unmanaged[Cdecl]<int> GetNumThreads;
    private static readonly delegate* unmanaged[Cdecl]<int> GetParallel;

    /// <summary>True when an OpenBLAS library with cblas_sgemm and cblas_dgemm was loaded.</summary>
    public static bool IsAvailable { get; }
    /// <summary>File name of the loaded library, or null.</summary>
    public static string? LibraryName { get; }
    /// <summary>Why loading failed (null when it succeeded).</summary>
    public static string? LoadError { get; }

    static OpenBlasGemm()
    {
        foreach (string name in LibraryNames)
        {
            if (!NativeLibrary.TryLoad(name, typeof(OpenBlasGemm).Assembly, null, out nint h)) continue;
            string suffix = name.Contains("64_") ? "64_" : "";
            if (NativeLibrary.TryGetExport(h, "cblas_sgemm" + suffix, out nint s) && NativeLibrary.TryGetExport(h, "cblas_dgemm" + suffix, out nint d))
            {
                Handle = h; LibraryName = name; Int64 = suffix.Length > 0;
                if (Int64) { Sgemm64 = (delegate* unmanaged[Cdecl]<int, int, int, long, long, long, float, float*, long, float*, long, float, float*, long, void>)s; Dgemm64 = (delegate* unmanaged[Cdecl]<int, int, int, long, long, long, double, double*, long, double*, long, double, double*, long, void>)d; }
                else { Sgemm32 = (delegate* unmanaged[Cdecl]<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)s; Dgemm32 = (delegate* unmanaged[Cdecl]<int, int, int, int, int, int, double, double*, int, double*, int, double, double*, int, void>)d; }
                if (NativeLibrary.TryGetExport(h, "openblas_get_config" + suffix, out nint p)) GetConfig = (delegate* unmanaged[Cdecl]<byte*>)p;
                if (NativeLibrary.TryGetExport(h, "openblas_get_num_threads" + suffix, out p)) GetNumThreads = (delegate* unmanaged[Cdecl]<int>)p;
                if (NativeLibrary.TryGetExport(h, "openblas_get_parallel" + suffix, out p)) GetParallel = (delegate* unmanaged[Cdecl]<int>)p;
                IsAvailable = true;
                return;
            }
            NativeLibrary.Free(h);
        }
        LoadError = "none of the libraries could be loaded or none exported cblas_sgemm/cblas_dgemm";
    }

    /// <summary>e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64 (libopenblas.so.0, pthread, 2 threads)".</summary>
    public static string Describe()
    {
        if (!IsAvailable) return "OpenBLAS (not available: " + LoadError + ")";
        string config = GetConfig != null ? Marshal.PtrToStringUTF8((nint)GetConfig()) ?? "OpenBLAS" : "OpenBLAS";
        if (!config.StartsWith("OpenBLAS", StringComparison.Ordinal)) config = "OpenBLAS " + config;
        string par = GetParallel == null ? "?" : GetParallel() switch { 0 => "sequential", 1 => "pthread", 2 => "openmp", var x => x.ToString() };
        string threads = GetNumThreads != null ? GetNumThreads().ToString() : "?";
        return $"{config.Trim()} ({LibraryName}, {par}, {threads} threads)";
    }

    /// <summary>Same contract as <see cref="Gemm.Run{T}"/>, always through OpenBLAS (throws when it is not installed).</summary>
    public static void Run<T>(bool transA, bool transB, int M, int N, int K,
        T alpha, ReadOnlySpan<T> A, int lda, ReadOnlySpan<T> B, int ldb,
        T beta, Span<T> C, int ldc) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (!IsAvailable)
            throw new InvalidOperationException($"OpenBLAS could not be loaded (looked for {string.Join(", ", LibraryNames)}); install the package libopenblas0-pthread.");
        if (!Gemm.Validate(transA, transB, M, N, K, A, lda, B, ldb, C, ldc)) return;
        // Degenerate products are done here so that no OpenBLAS version's handling of K == 0 matters.
        if (K == 0 || alpha == T.Zero) { Gemm.Scale(M, N, beta, C, ldc); return; }
        int ta = transA ? CblasTrans : CblasNoTrans, tb = transB ? CblasTrans : CblasNoTrans;
        fixed (T* pa = A) fixed (T* pb = B) fixed (T* pc = C)
        {
            if (typeof(T) == typeof(float))
            {
                float al = Unsafe.BitCast<T, float>(alpha), be = Unsafe.BitCast<T, float>(beta);
                if (Int64) Sgemm64(CblasRowMajor, ta, tb, M, N, K, al, (float*)pa, lda, (float*)pb, ldb, be, (float*)pc, ldc);
                else Sgemm32(CblasRowMajor, ta, tb, M, N, K, al, (float*)pa, lda, (float*)pb, ldb, be, (float*)pc, ldc);
            }
            else
            {
                double al = Unsafe.BitCast<T, double>(alpha), be = Unsafe.BitCast<T, double>(beta);
                if (Int64) Dgemm64(CblasRowMajor, ta, tb, M, N, K, al, (double*)pa, lda, (double*)pb, ldb, be, (double*)pc, ldc);
                else Dgemm32(CblasRowMajor, ta, tb, M, N, K, al, (double*)pa, lda, (double*)pb, ldb, be, (double*)pc, ldc);
            }
        }
    }
}

/// <summary>Managed SIMD GEMM, structured like BLIS: op(A) is packed into MR-row slivers (kc×MR, broadcast operand,
/// L1-resident), op(B) into NR-column slivers (kc×NR, vector operand, a kc×nc block kept in L2), and a register-blocked
/// micro-kernel (12×32 floats / 12×16 doubles with Vector512, 6×16 / 6×8 with Vector256) accumulates with FMA.
/// Work is split between threads by rows (or columns when N &gt; M) into independent sub-products; K is never split and
/// K blocking depends only on K, so every element is summed in the same order whatever the thread count: results are
/// bitwise reproducible. Packing buffers are per-thread pinned arrays, reused across calls.</summary>
public static unsafe class ManagedGemm
{
    /// <summary>512 (AVX-512), 256 (AVX2) or 0 (Vector&lt;T&gt;): the width <see cref="Bert.Runtime.Simd.FloatLanes"/> picked
    /// (so that BERT_SIMD=256 measures an AVX2 machine's products too).</summary>
    private static readonly int Width = Bert.Runtime.Simd.FloatLanes * 32;

    /// <summary>Products with M·N·K below this run on the calling thread only.</summary>
    public const long ParallelThreshold = 64L * 64 * 64;

    /// <summary>K block (depth of a packed panel); fixed per element type so that the summation order depends only on K.</summary>
    private static int Kc<T>() => typeof(T) == typeof(float) ? 384 : 256;
    /// <summary>The depth of the K blocks of every product with this K.</summary>
    private static int KBlock<T>(int K) { int nPc = (K + Kc<T>() - 1) / Kc<T>(); return (K + nPc - 1) / nPc; }
    /// <summary>Most columns of op(B) packed at once (the kc×nc block of B should stay in L2).</summary>
    private static int NcMax<T>() => typeof(T) == typeof(float) ? 512 : 256;
    /// <summary>Most rows of op(A) packed at once.</summary>
    private static int McMax<T>() => typeof(T) == typeof(float) ? 768 : 384;

    private static int Mr => Width == 512 ? 12 : Width == 256 ? 6 : 4;
    private static int Nr<T>() where T : unmanaged =>
        Width == 512 ? 2 * Vector512<T>.Count : Width == 256 ? 2 * Vector256<T>.Count : 2 * Vector<T>.Count;

    /// <summary>Threads used by default for large products.</summary>
    public static int DefaultThreads { get; } = Math.Max(1, Environment.ProcessorCount);

    public static string Describe()
    {
        string simd = Width switch
        {
            512 => "Vector512",
            256 => "Vector256",
            _ => $"Vector<T> {Vector<byte>.Count * 8}-bit" + (Vector.IsHardwareAccelerated ? "" : " (not accelerated)"),
        };
        return $"managed SIMD ({simd}, {DefaultThreads} threads)";
    }

    /// <summary>Same contract as <see cref="Gemm.Run{T}"/>, always through the managed implementation.</summary>
    public static void Run<T>(bool transA, bool transB, int M, int N, int K,
        T alpha, ReadOnlySpan<T> A, int lda, ReadOnlySpan<T> B, int ldb,
        T beta, Span<T> C, int ldc) where T : unmanaged, IBinaryFloatingPointIeee754<T>
        => Run(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, DefaultThreads);

    /// <summary>As <see cref="Run{T}(bool,bool,int,int,int,T,ReadOnlySpan{T},int,ReadOnlySpan{T},int,T,Span{T},int)"/>
    /// with at most <paramref name="maxThreads"/> threads (the result does not depend on it).</summary>
    public static void Run<T>(bool transA, bool transB, int M, int N, int K,
        T alpha, ReadOnlySpan<T> A, int lda, ReadOnlySpan<T> B, int ldb,
        T beta, Span<T> C, int ldc, int maxThreads) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (!Gemm.Validate(transA, transB, M, N, K, A, lda, B, ldb, C, ldc)) return;
        if (K == 0 || alpha == T.Zero) { Gemm.Scale(M, N, beta, C, ldc); return; }
        fixed (T* pa = A) fixed (T* pb = B) fixed (T* pc = C)
            Blocked(transA, transB, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc, maxThreads, null, 0);
    }

    /// <summary>The validated product (K &gt; 0) on one thread or split between up to <paramref name="maxThreads"/>; with
    /// <paramref name="packed"/>, op(B) comes from a <see cref="PackedMatrix{T}"/> of that width and B is not read.</summary>
    private static void Blocked<T>(bool transA, bool transB, int M, int N, int K, T alpha, T* pa, int lda, T* pb, int ldb,
        T beta, T* pc, int ldc, int maxThreads, T* packed, long packedWidth) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int threads = Math.Max(1, maxThreads);
        if ((long)M * N * K < ParallelThreshold) threads = 1;
        bool splitRows = M >= N;
        int unit = splitRows ? Mr : Nr<T>();
        int units = ((splitRows ? M : N) + unit - 1) / unit;
        threads = Math.Min(threads, units);
        if (threads == 1) Sequential(transA, transB, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc, packed, packedWidth, 0);
        else RunParallel(transA, transB, M, N, K, alpha, pa, lda, pb, ldb, beta, pc, ldc, threads, splitRows, unit, units, packed, packedWidth);
    }

    /// <summary>op(B) (K×N) packed once for the products that reuse it (a layer's weights at inference): per K block, with
    /// the blocking every product with this K uses, all NR-column slivers of the full width in column order. A product
    /// through it (<see cref="RunPacked{T}"/>) is bit for bit the one <see cref="Run{T}(bool,bool,int,int,int,T,ReadOnlySpan{T},int,ReadOnlySpan{T},int,T,Span{T},int)"/>
    /// computes from the same op(B), without packing B again on every call (for y = x·Wᵀ that is a transposing copy of
    /// the whole weight matrix per call, per thread).</summary>
    public sealed class PackedMatrix<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        internal readonly T[] Data;
        internal readonly long Width;
        public int K { get; }
        public int N { get; }
        public long Bytes => (long)Data.Length * sizeof(T);

        internal PackedMatrix(int k, int n, long width)
        {
            K = k; N = n; Width = width;
            Data = GC.AllocateArray<T>(checked((int)Math.Max(1, (long)k * width)), pinned: true);
        }
    }

    /// <summary>Packs op(B) (K×N; B is N×K with <paramref name="transB"/>, K×N without) once.</summary>
    public static PackedMatrix<T> Pack<T>(bool transB, ReadOnlySpan<T> B, int ldb, int K, int N) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (K < 0 || N < 0) throw new ArgumentOutOfRangeException(K < 0 ? nameof(K) : nameof(N), "Matrix sizes cannot be negative.");
        long need = K == 0 || N == 0 ? 0 : transB ? (long)(N - 1) * ldb + K : (long)(K - 1) * ldb + N;
        if (B.Length < need || ldb < (transB ? K : N)) throw new ArgumentException($"B holds {B.Length} elements with leading dimension {ldb}; a {K}×{N} op(B) needs {need}.", nameof(B));
        int nr = Nr<T>();
        var m = new PackedMatrix<T>(K, N, RoundUp(Math.Max(N, 1), nr));
        if (K == 0 || N == 0) return m;
        int kcBlk = KBlock<T>(K);
        fixed (T* pb = B) fixed (T* dst = m.Data)
            for (int pc = 0; pc < K; pc += kcBlk)
                PackB(transB, pb, ldb, pc, 0, Math.Min(kcBlk, K - pc), N, nr, dst + (long)pc * m.Width);
        return m;
    }

    /// <summary>C = alpha·op(A)·B + beta·C with B packed by <see cref="Pack{T}"/>: the same bits as the unpacked product.</summary>
    public static void RunPacked<T>(bool transA, int M, T alpha, ReadOnlySpan<T> A, int lda, PackedMatrix<T> B, T beta, Span<T> C, int ldc)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
        => RunPacked(transA, M, alpha, A, lda, B, beta, C, ldc, DefaultThreads);

    /// <summary>As <see cref="RunPacked{T}(bool,int,T,ReadOnlySpan{T},int,PackedMatrix{T},T,Span{T},int)"/> with at most
    /// <paramref name="maxThreads"/> threads (the result does not depend on it).</summary>
    public static void RunPacked<T>(bool transA, int M, T alpha, ReadOnlySpan<T> A, int lda, PackedMatrix<T> B, T beta, Span<T> C, int ldc,
        int maxThreads) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int N = B.N, K = B.K;
        // The packed data holds K·Width ≥ K·N elements, so it passes for a K×N op(B) with leading dimension N.
        if (!Gemm.Validate(transA, false, M, N, K, A, lda, B.Data, N, C, ldc)) return;
        if (K == 0 || alpha == T.Zero) { Gemm.Scale(M, N, beta, C, ldc); return; }
        fixed (T* pa = A) fixed (T* pc = C) fixed (T* pb = B.Data)
            Blocked(transA, false, M, N, K, alpha, pa, lda, pb, N, beta, pc, ldc, maxThreads, pb, B.Width);
    }

    /// <summary>Splits the rows (or columns) into <paramref name="threads"/> contiguous ranges of whole micro-tiles and runs
    /// them as independent sequential products.</summary>
    private static void RunParallel<T>(bool transA, bool transB, int M, int N, int K, T alpha, T* pa, int lda, T* pb, int ldb,
        T beta, T* pc, int ldc, int threads, bool splitRows, int unit, int units, T* packed, long packedWidth) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var body = new Parts<T> { TransA = transA, TransB = transB, M = M, N = N, K = K, Alpha = alpha, A = pa, Lda = lda, B = pb, Ldb = ldb,
            Beta = beta, C = pc, Ldc = ldc, Threads = threads, SplitRows = splitRows, Unit = unit, Units = units, Packed = packed, PackedWidth = packedWidth };
        Par.For(threads, ref body);
    }

    private struct Parts<T> : IRangeBody where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        public bool TransA, TransB, SplitRows; public int M, N, K, Lda, Ldb, Ldc, Threads, Unit, Units;
        public T Alpha, Beta; public T* A, B, C;
        public T* Packed; public long PackedWidth;

        public readonly void Run(int t0, int t1)
        {
            for (int t = t0; t < t1; t++)
            {
                int lo = (int)((long)Units * t / Threads) * Unit;
                int hi = Math.Min((int)((long)Units * (t + 1) / Threads) * Unit, SplitRows ? M : N);
                if (hi <= lo) continue;
                if (SplitRows)
                    Sequential(TransA, TransB, hi - lo, N, K, Alpha, A + (TransA ? lo : (long)lo * Lda), Lda, B, Ldb, Beta, C + (long)lo * Ldc, Ldc, Packed, PackedWidth, 0);
                else
                    Sequential(TransA, TransB, M, hi - lo, K, Alpha, A, Lda, Packed != null ? B : B + (TransB ? (long)lo * Ldb : lo), Ldb, Beta, C + lo, Ldc, Packed, PackedWidth, lo);
            }
        }
    }

    /// <summary>The single-threaded blocked product on raw pointers (shapes already validated, K &gt; 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // fully optimized from the first call (no tier-0 driver)
    private static void Sequential<T>(bool transA, bool transB, int M, int N, int K,
        T alpha, T* A, int lda, T* B, int ldb, T beta, T* C, int ldc, T* packed, long packedWidth, int packedCol)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int mr = Mr, nr = Nr<T>();
        int kcBlk = KBlock<T>(K);                             // depends on K only (determinism)
        int nIc = (M + McMax<T>() - 1) / McMax<T>();
        int mcBlk = RoundUp((M + nIc - 1) / nIc, mr);
        int nJc = (N + NcMax<T>() - 1) / NcMax<T>();
        int ncBlk = RoundUp((N + nJc - 1) / nJc, nr);

        long aLen = RoundUp(mcBlk * kcBlk, 64), bLen = RoundUp(kcBlk * ncBlk, 64);
        T* packA = Scratch<T>.Get(aLen + bLen + mr * nr);
        T* packB = packA + aLen;
        T* tile = packB + bLen;

        for (int ic = 0; ic < M; ic += mcBlk)
        {
            int mc = Math.Min(mcBlk, M - ic);
            for (int pc = 0; pc < K; pc += kcBlk)
            {
                int kc = Math.Min(kcBlk, K - pc);
                PackA(transA, A, lda, ic, pc, mc, kc, mr, packA);
                T be = pc == 0 ? beta : T.One;
                for (int jc = 0; jc < N; jc += ncBlk)
                {
                    int nc = Math.Min(ncBlk, N - jc);
                    // A matrix packed beforehand (PackedMatrix): K block pc holds every sliver of the full width in
                    // column order, so columns packedCol + jc on start (packedCol + jc)·kc elements into it.
                    if (packed != null) packB = packed + (long)pc * packedWidth + (long)(packedCol + jc) * kc;
                    else PackB(transB, B, ldb, pc, jc, kc, nc, nr, packB);
                    for (int ir = 0; ir < mc; ir += mr)
                    {
                        T* ap = packA + (long)ir * kc;
                        T* crow = C + (long)(ic + ir) * ldc + jc;
                        int m = Math.Min(mr, mc - ir);
                        for (int jr = 0; jr < nc; jr += nr)
                            Kernel(kc, ap, packB + (long)jr * kc, crow + jr, ldc, alpha, be, m, Math.Min(nr, nc - jr), tile);
                    }
                }
            }
        }
    }

    private static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    /// <summary>Packs op(A)[i0..i0+mc, p0..p0+kc] into MR-row slivers: sliver s holds, for each k, the MR values
    /// op(A)[i0+s·MR+r, p0+k] (rows past mc are zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // fully optimized from the first call (no tier-0 driver)
    private static void PackA<T>(bool transA, T* A, int lda, int i0, int p0, int mc, int kc, int mr, T* dst) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        for (int s = 0; s < mc; s += mr, dst += (long)mr * kc)
        {
            int rows = Math.Min(mr, mc - s);
            if (VectorPacking && typeof(T) == typeof(float))
            {
                if (!transA) PackTransposedF((float*)(A + (long)(i0 + s) * lda + p0), lda, rows, mr, kc, (float*)dst);
                else PackRowsF((float*)(A + (long)p0 * lda + i0 + s), lda, rows, mr, kc, (float*)dst);
                continue;
            }
            if (!transA)
            {
                T* src = A + (long)(i0 + s) * lda + p0;
                if (rows == mr)
                {
                    for (int k = 0; k < kc; k++)
                    {
                        T* d = dst + (long)k * mr;
                        T* sp = src + k;
                        for (int r = 0; r < mr; r++) d[r] = sp[(long)r * lda];
                    }
                }
                else
                {
                    for (int k = 0; k < kc; k++)
                    {
                        T* d = dst + (long)k * mr;
                        T* sp = src + k;
                        int r = 0;
                        for (; r < rows; r++) d[r] = sp[(long)r * lda];
                        for (; r < mr; r++) d[r] = T.Zero;
                    }
                }
            }
            else
            {
                T* src = A + (long)p0 * lda + i0 + s;
                for (int k = 0; k < kc; k++)
                {
                    T* d = dst + (long)k * mr;
                    T* sp = src + (long)k * lda;
                    int r = 0;
                    for (; r < rows; r++) d[r] = sp[r];
                    for (; r < mr; r++) d[r] = T.Zero;
                }
            }
        }
    }

    /// <summary>Packs op(B)[p0..p0+kc, j0..j0+nc] into NR-column slivers: sliver t holds, for each k, the NR values
    /// op(B)[p0+k, j0+t·NR+j] (columns past nc are zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // fully optimized from the first call (no tier-0 driver)
    private static void PackB<T>(bool transB, T* B, int ldb, int p0, int j0, int kc, int nc, int nr, T* dst) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        for (int t = 0; t < nc; t += nr, dst += (long)nr * kc)
        {
            int cols = Math.Min(nr, nc - t);
            if (VectorPacking && typeof(T) == typeof(float))
            {
                if (!transB) PackRowsF((float*)(B + (long)p0 * ldb + j0 + t), ldb, cols, nr, kc, (float*)dst);
                else PackTransposedF((float*)(B + (long)(j0 + t) * ldb + p0), ldb, cols, nr, kc, (float*)dst);
                continue;
            }
            if (!transB)
            {
                T* src = B + (long)p0 * ldb + j0 + t;
                for (int k = 0; k < kc; k++)
                {
                    T* d = dst + (long)k * nr;
                    Unsafe.CopyBlockUnaligned(d, src + (long)k * ldb, (uint)(cols * sizeof(T)));
                    if (cols < nr) new Span<T>(d + cols, nr - cols).Clear();
                }
            }
            else
            {
                T* src = B + (long)(j0 + t) * ldb + p0;
                for (int j = 0; j < cols; j++)
                {
                    T* sp = src + (long)j * ldb;
                    T* d = dst + j;
                    for (int k = 0; k < kc; k++) d[(long)k * nr] = sp[k];
                }
                if (cols < nr)
                    for (int k = 0; k < kc; k++) new Span<T>(dst + (long)k * nr + cols, nr - cols).Clear();
            }
        }
    }

    /// <summary>Packing with AVX vectors (float, and a 256- or 512-bit GEMM, whose MR and NR are 6 or 12 and 16 or 32);
    /// the scalar loops otherwise. Both move the same values, so the products' bits do not depend on it.</summary>
    private static readonly bool VectorPacking = Avx.IsSupported && Width >= 256;

    /// <summary>dst[k·width + r] = src[k·ld + r] for r &lt; valid, 0 for valid ≤ r &lt; width, k &lt; kc: a sliver whose
    /// values are already contiguous in memory (op(A) of a transposed A, op(B) of a plain B), copied a vector at a time
    /// rather than through a memmove call per k.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackRowsF(float* src, int ld, int valid, int width, int kc, float* dst)
    {
        for (int k = 0; k < kc; k++, src += ld, dst += width)
        {
            int r = 0;
            for (; r + 8 <= valid; r += 8) Vector256.Store(Vector256.Load(src + r), dst + r);
            if (r + 4 <= valid) { Vector128.Store(Vector128.Load(src + r), dst + r); r += 4; }
            for (; r < valid; r++) dst[r] = src[r];
            for (; r < width; r++) dst[r] = 0f;
        }
    }

    /// <summary>dst[k·width + r] = src[r·ld + k] for r &lt; valid, 0 for valid ≤ r &lt; width, k &lt; kc: a sliver whose
    /// values lie across rows (op(A) of a plain A, op(B) of a transposed B). Eight rows by eight k at a time are loaded
    /// as eight vectors and transposed in registers; the k past the last multiple of 8 go one value at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackTransposedF(float* src, int ld, int valid, int width, int kc, float* dst)
    {
        int k = 0;
        for (; k + 8 <= kc; k += 8)
            for (int g = 0; g < width; g += 8)
            {
                // rows g .. g+7 of the source (those past `valid` read as zero), k .. k+7 of each
                float* s = src + (long)g * ld + k;
                int n = valid - g;
                Vector256<float> r0 = n > 0 ? Vector256.Load(s) : default, r1 = n > 1 ? Vector256.Load(s + ld) : default,
                    r2 = n > 2 ? Vector256.Load(s + 2L * ld) : default, r3 = n > 3 ? Vector256.Load(s + 3L * ld) : default,
                    r4 = n > 4 ? Vector256.Load(s + 4L * ld) : default, r5 = n > 5 ? Vector256.Load(s + 5L * ld) : default,
                    r6 = n > 6 ? Vector256.Load(s + 6L * ld) : default, r7 = n > 7 ? Vector256.Load(s + 7L * ld) : default;
                Transpose8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
                // now r_j holds rows g .. g+7 at k + j: the j-th packed column's entries g .. g+7
                int lanes = Math.Min(8, width - g);
                float* d = dst + (long)k * width + g;
                StoreLanes(r0, d, lanes); StoreLanes(r1, d + width, lanes); StoreLanes(r2, d + 2 * width, lanes);
                StoreLanes(r3, d + 3 * width, lanes); StoreLanes(r4, d + 4 * width, lanes); StoreLanes(r5, d + 5 * width, lanes);
                StoreLanes(r6, d + 6 * width, lanes); StoreLanes(r7, d + 7 * width, lanes);
            }
        for (; k < kc; k++)
        {
            float* d = dst + (long)k * width;
            int r = 0;
            for (; r < valid; r++) d[r] = src[(long)r * ld + k];
            for (; r < width; r++) d[r] = 0f;
        }
    }

    /// <summary>The first <paramref name="lanes"/> (8, 6 or 4: the widths' remainders after groups of 8) of v to d.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreLanes(Vector256<float> v, float* d, int lanes)
    {
        if (lanes == 8) { Vector256.Store(v, d); return; }
        Vector128.Store(v.GetLower(), d);
        if (lanes == 6) *(ulong*)(d + 4) = v.GetUpper().AsUInt64().ToScalar();
    }

    /// <summary>8×8 transpose in registers: afterwards r_j[i] is what r_i[j] was (unpack, shuffle, then swap 128-bit halves).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8(ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2, ref Vector256<float> r3,
        ref Vector256<float> r4, ref Vector256<float> r5, ref Vector256<float> r6, ref Vector256<float> r7)
    {
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
        r0 = Avx.Permute2x128(u0, u4, 0x20); r1 = Avx.Permute2x128(u1, u5, 0x20); r2 = Avx.Permute2x128(u2, u6, 0x20); r3 = Avx.Permute2x128(u3, u7, 0x20);
        r4 = Avx.Permute2x128(u0, u4, 0x31); r5 = Avx.Permute2x128(u1, u5, 0x31); r6 = Avx.Permute2x128(u2, u6, 0x31); r7 = Avx.Permute2x128(u3, u7, 0x31);
    }

    /// <summary>Writes the (alpha-scaled) accumulator tile to the mr×nr corner of C: C = tile (beta == 0) or fma(beta, C, tile),
    /// the same arithmetic as the vector stores of full tiles.</summary>
    private static void StoreTail<T>(T* tile, int ldt, T* c, int ldc, T beta, int mr, int nr) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        for (int r = 0; r < mr; r++)
        {
            T* t = tile + (long)r * ldt;
            T* cr = c + (long)r * ldc;
            if (beta == T.Zero) for (int j = 0; j < nr; j++) cr[j] = t[j];
            else for (int j = 0; j < nr; j++) cr[j] = T.FusedMultiplyAdd(beta, cr[j], t[j]);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Kernel<T>(int kc, T* a, T* b, T* c, int ldc, T alpha, T beta, int mr, int nr, T* tile) where T : unmanaged
    {
        if (typeof(T) == typeof(float))
        {
            float al = Unsafe.BitCast<T, float>(alpha), be = Unsafe.BitCast<T, float>(beta);
            if (Width == 512) KernelF512(kc, (float*)a, (float*)b, (float*)c, ldc, al, be, mr, nr, (float*)tile);
            else if (Width == 256) KernelF256(kc, (float*)a, (float*)b, (float*)c, ldc, al, be, mr, nr, (float*)tile);
            else KernelFVec(kc, (float*)a, (float*)b, (float*)c, ldc, al, be, mr, nr, (float*)tile);
        }
        else
        {
            double al = Unsafe.BitCast<T, double>(alpha), be = Unsafe.BitCast<T, double>(beta);
            if (Width == 512) KernelD512(kc, (double*)a, (double*)b, (double*)c, ldc, al, be, mr, nr, (double*)tile);
            else if (Width == 256) KernelD256(kc, (double*)a, (double*)b, (double*)c, ldc, al, be, mr, nr, (double*)tile);
            else KernelDVec(kc, (double*)a, (double*)b, (double*)c, ldc, al, be, mr, nr, (double*)tile);
        }
    }

    /// <summary>Per-thread packing buffer: a pinned array, grown on demand and kept, 64-byte aligned.</summary>
    private static class Scratch<T> where T : unmanaged
    {
        [ThreadStatic] private static T[]? _buffer;

        public static T* Get(long elements)
        {
            long need = elements + 64 / sizeof(T);
            T[]? buf = _buffer;
            if (buf == null || buf.Length < need)
            {
                buf = GC.AllocateUninitializedArray<T>((int)need, pinned: true);
                _buffer = buf;
            }
            nint p = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buf));
            return (T*)((p + 63) & ~(nint)63);
        }
    }

    // ---- Micro-kernels. All six follow one template (written out per vector type so that every accumulator is a
    // separate local the JIT keeps in a register): for k in 0..kc: load two B vectors, and for each of the MR rows
    // broadcast A[r] and FMA into that row's two accumulators. Then C = alpha·acc (+ beta·C).

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelF512(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta, int mr, int nr, float* tile)
    {
        Vector512<float> c000 = default, c001 = default, c010 = default, c011 = default, c020 = default, c021 = default, c030 = default, c031 = default, c040 = default, c041 = default, c050 = default, c051 = default, c060 = default, c061 = default, c070 = default, c071 = default, c080 = default, c081 = default, c090 = default, c091 = default, c100 = default, c101 = default, c110 = default, c111 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector512<float> b0 = Vector512.Load(b), b1 = Vector512.Load(b + 16);
            Vector512<float> ar;
            ar = Vector512.Create(a[0]); c000 = Vector512.FusedMultiplyAdd(ar, b0, c000); c001 = Vector512.FusedMultiplyAdd(ar, b1, c001);
            ar = Vector512.Create(a[1]); c010 = Vector512.FusedMultiplyAdd(ar, b0, c010); c011 = Vector512.FusedMultiplyAdd(ar, b1, c011);
            ar = Vector512.Create(a[2]); c020 = Vector512.FusedMultiplyAdd(ar, b0, c020); c021 = Vector512.FusedMultiplyAdd(ar, b1, c021);
            ar = Vector512.Create(a[3]); c030 = Vector512.FusedMultiplyAdd(ar, b0, c030); c031 = Vector512.FusedMultiplyAdd(ar, b1, c031);
            ar = Vector512.Create(a[4]); c040 = Vector512.FusedMultiplyAdd(ar, b0, c040); c041 = Vector512.FusedMultiplyAdd(ar, b1, c041);
            ar = Vector512.Create(a[5]); c050 = Vector512.FusedMultiplyAdd(ar, b0, c050); c051 = Vector512.FusedMultiplyAdd(ar, b1, c051);
            ar = Vector512.Create(a[6]); c060 = Vector512.FusedMultiplyAdd(ar, b0, c060); c061 = Vector512.FusedMultiplyAdd(ar, b1, c061);
            ar = Vector512.Create(a[7]); c070 = Vector512.FusedMultiplyAdd(ar, b0, c070); c071 = Vector512.FusedMultiplyAdd(ar, b1, c071);
            ar = Vector512.Create(a[8]); c080 = Vector512.FusedMultiplyAdd(ar, b0, c080); c081 = Vector512.FusedMultiplyAdd(ar, b1, c081);
            ar = Vector512.Create(a[9]); c090 = Vector512.FusedMultiplyAdd(ar, b0, c090); c091 = Vector512.FusedMultiplyAdd(ar, b1, c091);
            ar = Vector512.Create(a[10]); c100 = Vector512.FusedMultiplyAdd(ar, b0, c100); c101 = Vector512.FusedMultiplyAdd(ar, b1, c101);
            ar = Vector512.Create(a[11]); c110 = Vector512.FusedMultiplyAdd(ar, b0, c110); c111 = Vector512.FusedMultiplyAdd(ar, b1, c111);
            a += 12; b += 32;
        }
        Vector512<float> va = Vector512.Create(alpha);
        if (mr == 12 && nr == 32)
        {
            if (beta == 0)
            {
                Vector512.Store(c000 * va, c + 0 * ldc); Vector512.Store(c001 * va, c + 0 * ldc + 16);
                Vector512.Store(c010 * va, c + 1 * ldc); Vector512.Store(c011 * va, c + 1 * ldc + 16);
                Vector512.Store(c020 * va, c + 2 * ldc); Vector512.Store(c021 * va, c + 2 * ldc + 16);
                Vector512.Store(c030 * va, c + 3 * ldc); Vector512.Store(c031 * va, c + 3 * ldc + 16);
                Vector512.Store(c040 * va, c + 4 * ldc); Vector512.Store(c041 * va, c + 4 * ldc + 16);
                Vector512.Store(c050 * va, c + 5 * ldc); Vector512.Store(c051 * va, c + 5 * ldc + 16);
                Vector512.Store(c060 * va, c + 6 * ldc); Vector512.Store(c061 * va, c + 6 * ldc + 16);
                Vector512.Store(c070 * va, c + 7 * ldc); Vector512.Store(c071 * va, c + 7 * ldc + 16);
                Vector512.Store(c080 * va, c + 8 * ldc); Vector512.Store(c081 * va, c + 8 * ldc + 16);
                Vector512.Store(c090 * va, c + 9 * ldc); Vector512.Store(c091 * va, c + 9 * ldc + 16);
                Vector512.Store(c100 * va, c + 10 * ldc); Vector512.Store(c101 * va, c + 10 * ldc + 16);
                Vector512.Store(c110 * va, c + 11 * ldc); Vector512.Store(c111 * va, c + 11 * ldc + 16);
            }
            else
            {
                Vector512<float> vb = Vector512.Create(beta);
                { float* p = c + 0 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c000 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c001 * va), p + 16); }
                { float* p = c + 1 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c010 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c011 * va), p + 16); }
                { float* p = c + 2 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c020 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c021 * va), p + 16); }
                { float* p = c + 3 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c030 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c031 * va), p + 16); }
                { float* p = c + 4 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c040 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c041 * va), p + 16); }
                { float* p = c + 5 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c050 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c051 * va), p + 16); }
                { float* p = c + 6 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c060 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c061 * va), p + 16); }
                { float* p = c + 7 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c070 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c071 * va), p + 16); }
                { float* p = c + 8 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c080 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c081 * va), p + 16); }
                { float* p = c + 9 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c090 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c091 * va), p + 16); }
                { float* p = c + 10 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c100 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c101 * va), p + 16); }
                { float* p = c + 11 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c110 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 16), c111 * va), p + 16); }
            }
        }
        else
        {
            Vector512.Store(c000 * va, tile + 0 * 32); Vector512.Store(c001 * va, tile + 0 * 32 + 16);
            Vector512.Store(c010 * va, tile + 1 * 32); Vector512.Store(c011 * va, tile + 1 * 32 + 16);
            Vector512.Store(c020 * va, tile + 2 * 32); Vector512.Store(c021 * va, tile + 2 * 32 + 16);
            Vector512.Store(c030 * va, tile + 3 * 32); Vector512.Store(c031 * va, tile + 3 * 32 + 16);
            Vector512.Store(c040 * va, tile + 4 * 32); Vector512.Store(c041 * va, tile + 4 * 32 + 16);
            Vector512.Store(c050 * va, tile + 5 * 32); Vector512.Store(c051 * va, tile + 5 * 32 + 16);
            Vector512.Store(c060 * va, tile + 6 * 32); Vector512.Store(c061 * va, tile + 6 * 32 + 16);
            Vector512.Store(c070 * va, tile + 7 * 32); Vector512.Store(c071 * va, tile + 7 * 32 + 16);
            Vector512.Store(c080 * va, tile + 8 * 32); Vector512.Store(c081 * va, tile + 8 * 32 + 16);
            Vector512.Store(c090 * va, tile + 9 * 32); Vector512.Store(c091 * va, tile + 9 * 32 + 16);
            Vector512.Store(c100 * va, tile + 10 * 32); Vector512.Store(c101 * va, tile + 10 * 32 + 16);
            Vector512.Store(c110 * va, tile + 11 * 32); Vector512.Store(c111 * va, tile + 11 * 32 + 16);
            StoreTail(tile, 32, c, ldc, beta, mr, nr);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelD512(int kc, double* a, double* b, double* c, int ldc, double alpha, double beta, int mr, int nr, double* tile)
    {
        Vector512<double> c000 = default, c001 = default, c010 = default, c011 = default, c020 = default, c021 = default, c030 = default, c031 = default, c040 = default, c041 = default, c050 = default, c051 = default, c060 = default, c061 = default, c070 = default, c071 = default, c080 = default, c081 = default, c090 = default, c091 = default, c100 = default, c101 = default, c110 = default, c111 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector512<double> b0 = Vector512.Load(b), b1 = Vector512.Load(b + 8);
            Vector512<double> ar;
            ar = Vector512.Create(a[0]); c000 = Vector512.FusedMultiplyAdd(ar, b0, c000); c001 = Vector512.FusedMultiplyAdd(ar, b1, c001);
            ar = Vector512.Create(a[1]); c010 = Vector512.FusedMultiplyAdd(ar, b0, c010); c011 = Vector512.FusedMultiplyAdd(ar, b1, c011);
            ar = Vector512.Create(a[2]); c020 = Vector512.FusedMultiplyAdd(ar, b0, c020); c021 = Vector512.FusedMultiplyAdd(ar, b1, c021);
            ar = Vector512.Create(a[3]); c030 = Vector512.FusedMultiplyAdd(ar, b0, c030); c031 = Vector512.FusedMultiplyAdd(ar, b1, c031);
            ar = Vector512.Create(a[4]); c040 = Vector512.FusedMultiplyAdd(ar, b0, c040); c041 = Vector512.FusedMultiplyAdd(ar, b1, c041);
            ar = Vector512.Create(a[5]); c050 = Vector512.FusedMultiplyAdd(ar, b0, c050); c051 = Vector512.FusedMultiplyAdd(ar, b1, c051);
            ar = Vector512.Create(a[6]); c060 = Vector512.FusedMultiplyAdd(ar, b0, c060); c061 = Vector512.FusedMultiplyAdd(ar, b1, c061);
            ar = Vector512.Create(a[7]); c070 = Vector512.FusedMultiplyAdd(ar, b0, c070); c071 = Vector512.FusedMultiplyAdd(ar, b1, c071);
            ar = Vector512.Create(a[8]); c080 = Vector512.FusedMultiplyAdd(ar, b0, c080); c081 = Vector512.FusedMultiplyAdd(ar, b1, c081);
            ar = Vector512.Create(a[9]); c090 = Vector512.FusedMultiplyAdd(ar, b0, c090); c091 = Vector512.FusedMultiplyAdd(ar, b1, c091);
            ar = Vector512.Create(a[10]); c100 = Vector512.FusedMultiplyAdd(ar, b0, c100); c101 = Vector512.FusedMultiplyAdd(ar, b1, c101);
            ar = Vector512.Create(a[11]); c110 = Vector512.FusedMultiplyAdd(ar, b0, c110); c111 = Vector512.FusedMultiplyAdd(ar, b1, c111);
            a += 12; b += 16;
        }
        Vector512<double> va = Vector512.Create(alpha);
        if (mr == 12 && nr == 16)
        {
            if (beta == 0)
            {
                Vector512.Store(c000 * va, c + 0 * ldc); Vector512.Store(c001 * va, c + 0 * ldc + 8);
                Vector512.Store(c010 * va, c + 1 * ldc); Vector512.Store(c011 * va, c + 1 * ldc + 8);
                Vector512.Store(c020 * va, c + 2 * ldc); Vector512.Store(c021 * va, c + 2 * ldc + 8);
                Vector512.Store(c030 * va, c + 3 * ldc); Vector512.Store(c031 * va, c + 3 * ldc + 8);
                Vector512.Store(c040 * va, c + 4 * ldc); Vector512.Store(c041 * va, c + 4 * ldc + 8);
                Vector512.Store(c050 * va, c + 5 * ldc); Vector512.Store(c051 * va, c + 5 * ldc + 8);
                Vector512.Store(c060 * va, c + 6 * ldc); Vector512.Store(c061 * va, c + 6 * ldc + 8);
                Vector512.Store(c070 * va, c + 7 * ldc); Vector512.Store(c071 * va, c + 7 * ldc + 8);
                Vector512.Store(c080 * va, c + 8 * ldc); Vector512.Store(c081 * va, c + 8 * ldc + 8);
                Vector512.Store(c090 * va, c + 9 * ldc); Vector512.Store(c091 * va, c + 9 * ldc + 8);
                Vector512.Store(c100 * va, c + 10 * ldc); Vector512.Store(c101 * va, c + 10 * ldc + 8);
                Vector512.Store(c110 * va, c + 11 * ldc); Vector512.Store(c111 * va, c + 11 * ldc + 8);
            }
            else
            {
                Vector512<double> vb = Vector512.Create(beta);
                { double* p = c + 0 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c000 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c001 * va), p + 8); }
                { double* p = c + 1 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c010 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c011 * va), p + 8); }
                { double* p = c + 2 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c020 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c021 * va), p + 8); }
                { double* p = c + 3 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c030 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c031 * va), p + 8); }
                { double* p = c + 4 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c040 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c041 * va), p + 8); }
                { double* p = c + 5 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c050 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c051 * va), p + 8); }
                { double* p = c + 6 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c060 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c061 * va), p + 8); }
                { double* p = c + 7 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c070 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c071 * va), p + 8); }
                { double* p = c + 8 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c080 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c081 * va), p + 8); }
                { double* p = c + 9 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c090 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c091 * va), p + 8); }
                { double* p = c + 10 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c100 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c101 * va), p + 8); }
                { double* p = c + 11 * ldc; Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p), c110 * va), p); Vector512.Store(Vector512.FusedMultiplyAdd(vb, Vector512.Load(p + 8), c111 * va), p + 8); }
            }
        }
        else
        {
            Vector512.Store(c000 * va, tile + 0 * 16); Vector512.Store(c001 * va, tile + 0 * 16 + 8);
            Vector512.Store(c010 * va, tile + 1 * 16); Vector512.Store(c011 * va, tile + 1 * 16 + 8);
            Vector512.Store(c020 * va, tile + 2 * 16); Vector512.Store(c021 * va, tile + 2 * 16 + 8);
            Vector512.Store(c030 * va, tile + 3 * 16); Vector512.Store(c031 * va, tile + 3 * 16 + 8);
            Vector512.Store(c040 * va, tile + 4 * 16); Vector512.Store(c041 * va, tile + 4 * 16 + 8);
            Vector512.Store(c050 * va, tile + 5 * 16); Vector512.Store(c051 * va, tile + 5 * 16 + 8);
            Vector512.Store(c060 * va, tile + 6 * 16); Vector512.Store(c061 * va, tile + 6 * 16 + 8);
            Vector512.Store(c070 * va, tile + 7 * 16); Vector512.Store(c071 * va, tile + 7 * 16 + 8);
            Vector512.Store(c080 * va, tile + 8 * 16); Vector512.Store(c081 * va, tile + 8 * 16 + 8);
            Vector512.Store(c090 * va, tile + 9 * 16); Vector512.Store(c091 * va, tile + 9 * 16 + 8);
            Vector512.Store(c100 * va, tile + 10 * 16); Vector512.Store(c101 * va, tile + 10 * 16 + 8);
            Vector512.Store(c110 * va, tile + 11 * 16); Vector512.Store(c111 * va, tile + 11 * 16 + 8);
            StoreTail(tile, 16, c, ldc, beta, mr, nr);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelF256(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta, int mr, int nr, float* tile)
    {
        Vector256<float> c000 = default, c001 = default, c010 = default, c011 = default, c020 = default, c021 = default, c030 = default, c031 = default, c040 = default, c041 = default, c050 = default, c051 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector256<float> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 8);
            Vector256<float> ar;
            ar = Vector256.Create(a[0]); c000 = Vector256.MultiplyAddEstimate(ar, b0, c000); c001 = Vector256.MultiplyAddEstimate(ar, b1, c001);
            ar = Vector256.Create(a[1]); c010 = Vector256.MultiplyAddEstimate(ar, b0, c010); c011 = Vector256.MultiplyAddEstimate(ar, b1, c011);
            ar = Vector256.Create(a[2]); c020 = Vector256.MultiplyAddEstimate(ar, b0, c020); c021 = Vector256.MultiplyAddEstimate(ar, b1, c021);
            ar = Vector256.Create(a[3]); c030 = Vector256.MultiplyAddEstimate(ar, b0, c030); c031 = Vector256.MultiplyAddEstimate(ar, b1, c031);
            ar = Vector256.Create(a[4]); c040 = Vector256.MultiplyAddEstimate(ar, b0, c040); c041 = Vector256.MultiplyAddEstimate(ar, b1, c041);
            ar = Vector256.Create(a[5]); c050 = Vector256.MultiplyAddEstimate(ar, b0, c050); c051 = Vector256.MultiplyAddEstimate(ar, b1, c051);
            a += 6; b += 16;
        }
        Vector256<float> va = Vector256.Create(alpha);
        if (mr == 6 && nr == 16)
        {
            if (beta == 0)
            {
                Vector256.Store(c000 * va, c + 0 * ldc); Vector256.Store(c001 * va, c + 0 * ldc + 8);
                Vector256.Store(c010 * va, c + 1 * ldc); Vector256.Store(c011 * va, c + 1 * ldc + 8);
                Vector256.Store(c020 * va, c + 2 * ldc); Vector256.Store(c021 * va, c + 2 * ldc + 8);
                Vector256.Store(c030 * va, c + 3 * ldc); Vector256.Store(c031 * va, c + 3 * ldc + 8);
                Vector256.Store(c040 * va, c + 4 * ldc); Vector256.Store(c041 * va, c + 4 * ldc + 8);
                Vector256.Store(c050 * va, c + 5 * ldc); Vector256.Store(c051 * va, c + 5 * ldc + 8);
            }
            else
            {
                Vector256<float> vb = Vector256.Create(beta);
                { float* p = c + 0 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c000 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 8), c001 * va), p + 8); }
                { float* p = c + 1 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c010 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 8), c011 * va), p + 8); }
                { float* p = c + 2 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c020 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 8), c021 * va), p + 8); }
                { float* p = c + 3 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c030 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 8), c031 * va), p + 8); }
                { float* p = c + 4 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c040 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 8), c041 * va), p + 8); }
                { float* p = c + 5 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c050 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 8), c051 * va), p + 8); }
            }
        }
        else
        {
            Vector256.Store(c000 * va, tile + 0 * 16); Vector256.Store(c001 * va, tile + 0 * 16 + 8);
            Vector256.Store(c010 * va, tile + 1 * 16); Vector256.Store(c011 * va, tile + 1 * 16 + 8);
            Vector256.Store(c020 * va, tile + 2 * 16); Vector256.Store(c021 * va, tile + 2 * 16 + 8);
            Vector256.Store(c030 * va, tile + 3 * 16); Vector256.Store(c031 * va, tile + 3 * 16 + 8);
            Vector256.Store(c040 * va, tile + 4 * 16); Vector256.Store(c041 * va, tile + 4 * 16 + 8);
            Vector256.Store(c050 * va, tile + 5 * 16); Vector256.Store(c051 * va, tile + 5 * 16 + 8);
            StoreTail(tile, 16, c, ldc, beta, mr, nr);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelD256(int kc, double* a, double* b, double* c, int ldc, double alpha, double beta, int mr, int nr, double* tile)
    {
        Vector256<double> c000 = default, c001 = default, c010 = default, c011 = default, c020 = default, c021 = default, c030 = default, c031 = default, c040 = default, c041 = default, c050 = default, c051 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector256<double> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 4);
            Vector256<double> ar;
            ar = Vector256.Create(a[0]); c000 = Vector256.MultiplyAddEstimate(ar, b0, c000); c001 = Vector256.MultiplyAddEstimate(ar, b1, c001);
            ar = Vector256.Create(a[1]); c010 = Vector256.MultiplyAddEstimate(ar, b0, c010); c011 = Vector256.MultiplyAddEstimate(ar, b1, c011);
            ar = Vector256.Create(a[2]); c020 = Vector256.MultiplyAddEstimate(ar, b0, c020); c021 = Vector256.MultiplyAddEstimate(ar, b1, c021);
            ar = Vector256.Create(a[3]); c030 = Vector256.MultiplyAddEstimate(ar, b0, c030); c031 = Vector256.MultiplyAddEstimate(ar, b1, c031);
            ar = Vector256.Create(a[4]); c040 = Vector256.MultiplyAddEstimate(ar, b0, c040); c041 = Vector256.MultiplyAddEstimate(ar, b1, c041);
            ar = Vector256.Create(a[5]); c050 = Vector256.MultiplyAddEstimate(ar, b0, c050); c051 = Vector256.MultiplyAddEstimate(ar, b1, c051);
            a += 6; b += 8;
        }
        Vector256<double> va = Vector256.Create(alpha);
        if (mr == 6 && nr == 8)
        {
            if (beta == 0)
            {
                Vector256.Store(c000 * va, c + 0 * ldc); Vector256.Store(c001 * va, c + 0 * ldc + 4);
                Vector256.Store(c010 * va, c + 1 * ldc); Vector256.Store(c011 * va, c + 1 * ldc + 4);
                Vector256.Store(c020 * va, c + 2 * ldc); Vector256.Store(c021 * va, c + 2 * ldc + 4);
                Vector256.Store(c030 * va, c + 3 * ldc); Vector256.Store(c031 * va, c + 3 * ldc + 4);
                Vector256.Store(c040 * va, c + 4 * ldc); Vector256.Store(c041 * va, c + 4 * ldc + 4);
                Vector256.Store(c050 * va, c + 5 * ldc); Vector256.Store(c051 * va, c + 5 * ldc + 4);
            }
            else
            {
                Vector256<double> vb = Vector256.Create(beta);
                { double* p = c + 0 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c000 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 4), c001 * va), p + 4); }
                { double* p = c + 1 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c010 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 4), c011 * va), p + 4); }
                { double* p = c + 2 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c020 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 4), c021 * va), p + 4); }
                { double* p = c + 3 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c030 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 4), c031 * va), p + 4); }
                { double* p = c + 4 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c040 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 4), c041 * va), p + 4); }
                { double* p = c + 5 * ldc; Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p), c050 * va), p); Vector256.Store(Vector256.MultiplyAddEstimate(vb, Vector256.Load(p + 4), c051 * va), p + 4); }
            }
        }
        else
        {
            Vector256.Store(c000 * va, tile + 0 * 8); Vector256.Store(c001 * va, tile + 0 * 8 + 4);
            Vector256.Store(c010 * va, tile + 1 * 8); Vector256.Store(c011 * va, tile + 1 * 8 + 4);
            Vector256.Store(c020 * va, tile + 2 * 8); Vector256.Store(c021 * va, tile + 2 * 8 + 4);
            Vector256.Store(c030 * va, tile + 3 * 8); Vector256.Store(c031 * va, tile + 3 * 8 + 4);
            Vector256.Store(c040 * va, tile + 4 * 8); Vector256.Store(c041 * va, tile + 4 * 8 + 4);
            Vector256.Store(c050 * va, tile + 5 * 8); Vector256.Store(c051 * va, tile + 5 * 8 + 4);
            StoreTail(tile, 8, c, ldc, beta, mr, nr);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelFVec(int kc, float* a, float* b, float* c, int ldc, float alpha, float beta, int mr, int nr, float* tile)
    {
        Vector<float> c000 = default, c001 = default, c010 = default, c011 = default, c020 = default, c021 = default, c030 = default, c031 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector<float> b0 = Vector.Load(b), b1 = Vector.Load(b + Vector<float>.Count);
            Vector<float> ar;
            ar = Vector.Create(a[0]); c000 = Vector.MultiplyAddEstimate(ar, b0, c000); c001 = Vector.MultiplyAddEstimate(ar, b1, c001);
            ar = Vector.Create(a[1]); c010 = Vector.MultiplyAddEstimate(ar, b0, c010); c011 = Vector.MultiplyAddEstimate(ar, b1, c011);
            ar = Vector.Create(a[2]); c020 = Vector.MultiplyAddEstimate(ar, b0, c020); c021 = Vector.MultiplyAddEstimate(ar, b1, c021);
            ar = Vector.Create(a[3]); c030 = Vector.MultiplyAddEstimate(ar, b0, c030); c031 = Vector.MultiplyAddEstimate(ar, b1, c031);
            a += 4; b += 2*Vector<float>.Count;
        }
        Vector<float> va = Vector.Create(alpha);
        if (mr == 4 && nr == 2*Vector<float>.Count)
        {
            if (beta == 0)
            {
                Vector.Store(c000 * va, c + 0 * ldc); Vector.Store(c001 * va, c + 0 * ldc + Vector<float>.Count);
                Vector.Store(c010 * va, c + 1 * ldc); Vector.Store(c011 * va, c + 1 * ldc + Vector<float>.Count);
                Vector.Store(c020 * va, c + 2 * ldc); Vector.Store(c021 * va, c + 2 * ldc + Vector<float>.Count);
                Vector.Store(c030 * va, c + 3 * ldc); Vector.Store(c031 * va, c + 3 * ldc + Vector<float>.Count);
            }
            else
            {
                Vector<float> vb = Vector.Create(beta);
                { float* p = c + 0 * ldc; Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p), c000 * va), p); Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p + Vector<float>.Count), c001 * va), p + Vector<float>.Count); }
                { float* p = c + 1 * ldc; Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p), c010 * va), p); Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p + Vector<float>.Count), c011 * va), p + Vector<float>.Count); }
                { float* p = c + 2 * ldc; Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p), c020 * va), p); Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p + Vector<float>.Count), c021 * va), p + Vector<float>.Count); }
                { float* p = c + 3 * ldc; Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p), c030 * va), p); Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p + Vector<float>.Count), c031 * va), p + Vector<float>.Count); }
            }
        }
        else
        {
            Vector.Store(c000 * va, tile + 0 * 2*Vector<float>.Count); Vector.Store(c001 * va, tile + 0 * 2*Vector<float>.Count + Vector<float>.Count);
            Vector.Store(c010 * va, tile + 1 * 2*Vector<float>.Count); Vector.Store(c011 * va, tile + 1 * 2*Vector<float>.Count + Vector<float>.Count);
            Vector.Store(c020 * va, tile + 2 * 2*Vector<float>.Count); Vector.Store(c021 * va, tile + 2 * 2*Vector<float>.Count + Vector<float>.Count);
            Vector.Store(c030 * va, tile + 3 * 2*Vector<float>.Count); Vector.Store(c031 * va, tile + 3 * 2*Vector<float>.Count + Vector<float>.Count);
            StoreTail(tile, 2*Vector<float>.Count, c, ldc, beta, mr, nr);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KernelDVec(int kc, double* a, double* b, double* c, int ldc, double alpha, double beta, int mr, int nr, double* tile)
    {
        Vector<double> c000 = default, c001 = default, c010 = default, c011 = default, c020 = default, c021 = default, c030 = default, c031 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector<double> b0 = Vector.Load(b), b1 = Vector.Load(b + Vector<double>.Count);
            Vector<double> ar;
            ar = Vector.Create(a[0]); c000 = Vector.MultiplyAddEstimate(ar, b0, c000); c001 = Vector.MultiplyAddEstimate(ar, b1, c001);
            ar = Vector.Create(a[1]); c010 = Vector.MultiplyAddEstimate(ar, b0, c010); c011 = Vector.MultiplyAddEstimate(ar, b1, c011);
            ar = Vector.Create(a[2]); c020 = Vector.MultiplyAddEstimate(ar, b0, c020); c021 = Vector.MultiplyAddEstimate(ar, b1, c021);
            ar = Vector.Create(a[3]); c030 = Vector.MultiplyAddEstimate(ar, b0, c030); c031 = Vector.MultiplyAddEstimate(ar, b1, c031);
            a += 4; b += 2*Vector<double>.Count;
        }
        Vector<double> va = Vector.Create(alpha);
        if (mr == 4 && nr == 2*Vector<double>.Count)
        {
            if (beta == 0)
            {
                Vector.Store(c000 * va, c + 0 * ldc); Vector.Store(c001 * va, c + 0 * ldc + Vector<double>.Count);
                Vector.Store(c010 * va, c + 1 * ldc); Vector.Store(c011 * va, c + 1 * ldc + Vector<double>.Count);
                Vector.Store(c020 * va, c + 2 * ldc); Vector.Store(c021 * va, c + 2 * ldc + Vector<double>.Count);
                Vector.Store(c030 * va, c + 3 * ldc); Vector.Store(c031 * va, c + 3 * ldc + Vector<double>.Count);
            }
            else
            {
                Vector<double> vb = Vector.Create(beta);
                { double* p = c + 0 * ldc; Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p), c000 * va), p); Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p + Vector<double>.Count), c001 * va), p + Vector<double>.Count); }
                { double* p = c + 1 * ldc; Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p), c010 * va), p); Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p + Vector<double>.Count), c011 * va), p + Vector<double>.Count); }
                { double* p = c + 2 * ldc; Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p), c020 * va), p); Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p + Vector<double>.Count), c021 * va), p + Vector<double>.Count); }
                { double* p = c + 3 * ldc; Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p), c030 * va), p); Vector.Store(Vector.MultiplyAddEstimate(vb, Vector.Load(p + Vector<double>.Count), c031 * va), p + Vector<double>.Count); }
            }
        }
        else
        {
            Vector.Store(c000 * va, tile + 0 * 2*Vector<double>.Count); Vector.Store(c001 * va, tile + 0 * 2*Vector<double>.Count + Vector<double>.Count);
            Vector.Store(c010 * va, tile + 1 * 2*Vector<double>.Count); Vector.Store(c011 * va, tile + 1 * 2*Vector<double>.Count + Vector<double>.Count);
            Vector.Store(c020 * va, tile + 2 * 2*Vector<double>.Count); Vector.Store(c021 * va, tile + 2 * 2*Vector<double>.Count + Vector<double>.Count);
            Vector.Store(c030 * va, tile + 3 * 2*Vector<double>.Count); Vector.Store(c031 * va, tile + 3 * 2*Vector<double>.Count + Vector<double>.Count);
            StoreTail(tile, 2*Vector<double>.Count, c, ldc, beta, mr, nr);
        }
    }
}
