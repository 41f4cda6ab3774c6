using System.Runtime.InteropServices;

namespace Bert.Runtime.Cuda;

/// <summary>cudaDataType_t values (library_types.h).</summary>
public enum CudaDataType
{
    R32F = 0,
    R64F = 1,
    R16F = 2,
    R8I = 3,
    R32I = 10,
    R16BF = 14,
}

/// <summary>cublasOperation_t.</summary>
public enum CublasOperation
{
    N = 0,
    T = 1,
    C = 2,
}

/// <summary>cublasComputeType_t.</summary>
public enum CublasComputeType
{
    Compute16F = 64,
    Compute16FPedantic = 65,
    Compute32F = 68,
    Compute32FPedantic = 69,
    Compute64F = 70,
    Compute64FPedantic = 71,
    Compute32I = 72,
    Compute32IPedantic = 73,
    Compute32FFast16F = 74,
    Compute32FFast16BF = 75,
    Compute32FFastTF32 = 77,
}

/// <summary>cublasMath_t (flags).</summary>
[Flags]
public enum CublasMath
{
    Default = 0,
    TensorOp = 1,
    Pedantic = 2,
    Tf32TensorOp = 3,
    DisallowReducedPrecisionReduction = 16,
}

/// <summary>cublasStatus_t.</summary>
public enum CublasStatus
{
    Success = 0,
    NotInitialized = 1,
    AllocFailed = 3,
    InvalidValue = 7,
    ArchMismatch = 8,
    MappingError = 11,
    ExecutionFailed = 13,
    InternalError = 14,
    NotSupported = 15,
    LicenseError = 16,
}

/// <summary>A cuBLAS or cuBLASLt call failed; the message names the call and the status, e.g.
/// "cublasGemmEx failed: CUBLAS_STATUS_INVALID_VALUE (an invalid numeric value was used as an argument)".</summary>
public sealed class CublasException : CudaException
{
    public CublasException(string call, int status, string statusName, string? description) : base(call, status, statusName, description) { }

    public CublasStatus Status => (CublasStatus)Code;
}

/// <summary>The arguments of a column-major cuBLAS GEMM that computes a row-major product; see <see cref="Cublas.RowMajorToColumnMajor"/>.
/// The cuBLAS "A" slot receives the caller's B and the "B" slot the caller's A.</summary>
public readonly record struct ColumnMajorGemm(CublasOperation TransA, CublasOperation TransB, int M, int N, int K, int Lda, int Ldb, int Ldc);

/// <summary>A cuBLAS handle (libcublas.so.13 / .12) with the GEMM entry points, bound through function pointers.</summary>
/// <remarks>cuBLAS is column-major. A row-major matrix X (r×c, row stride ld) is, byte for byte, the column-major matrix Xᵀ (c×r,
/// leading dimension ld). So the row-major product C = op(A)·op(B) (M×N) is computed as the column-major product
/// Cᵀ = op(B)ᵀ·op(A)ᵀ (N×M): cuBLAS gets m = N, n = M, k = K, the caller's B in its first slot (with the caller's transB and ldb)
/// and the caller's A in its second (transA, lda); ldc stays the row stride of C. No data moves.</remarks>
public sealed unsafe class Cublas : IDisposable
{
    /// <summary>CUBLAS_GEMM_DEFAULT.</summary>
    public const int GemmDefault = -1;

    private sealed class Api
    {
        public required LoadedCudaLibrary Library;
        public delegate* unmanaged[Cdecl]<nint*, int> cublasCreate_v2;
        public delegate* unmanaged[Cdecl]<nint, int> cublasDestroy_v2;
        public delegate* unmanaged[Cdecl]<nint, nint, int> cublasSetStream_v2;
        public delegate* unmanaged[Cdecl]<nint, int, int> cublasSetMathMode;
        public delegate* unmanaged[Cdecl]<nint, void*, nuint, int> cublasSetWorkspace_v2; // optional (12.0+)
        public delegate* unmanaged[Cdecl]<nint, int*, int> cublasGetVersion_v2;
        public delegate* unmanaged[Cdecl]<nint, int, int, int, int, int, void*, void*, int, int, void*, int, int, void*, void*, int, int, int, int, int> cublasGemmEx;
        public delegate* unmanaged[Cdecl]<nint, int, int, int, int, int, void*, void*, int, int, long, void*, int, int, long, void*, void*, int, int, long, int, int, int, int> cublasGemmStridedBatchedEx;
        public delegate* unmanaged[Cdecl]<nint, int, int, int, int, int, void*, ulong, int, int, ulong, int, int, void*, ulong, int, int, int, int, int, int> cublasGemmBatchedEx;
        public delegate* unmanaged[Cdecl]<int, byte*> cublasGetStatusName;   // optional (11.4.2+)
        public delegate* unmanaged[Cdecl]<int, byte*> cublasGetStatusString; // optional
    }

    private static Api? _api;
    private static readonly object Gate = new();
    private static Api Fn => Volatile.Read(ref _api) ?? LoadApi();

    /// <summary>Opens cuBLAS (see <see cref="CudaLibraries"/>); throws <see cref="CudaUnavailableException"/>.</summary>
    public static LoadedCudaLibrary Load() => Fn.Library;

    private static Api LoadApi()
    {
        lock (Gate)
        {
            if (_api != null) return _api;
            LoadedCudaLibrary lib = CudaLibraries.Get(CudaLibrary.Cublas);
            var a = new Api
            {
                Library = lib,
                cublasCreate_v2 = (delegate* unmanaged[Cdecl]<nint*, int>)lib.GetExport("cublasCreate_v2"),
                cublasDestroy_v2 = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cublasDestroy_v2"),
                cublasSetStream_v2 = (delegate* unmanaged[Cdecl]<nint, nint, int>)lib.GetExport("cublasSetStream_v2"),
                cublasSetMathMode = (delegate* unmanaged[Cdecl]<nint, int, int>)lib.GetExport("cublasSetMathMode"),
                cublasSetWorkspace_v2 = (delegate* unmanaged[Cdecl]<nint, void*, nuint, int>)lib.TryGetExport("cublasSetWorkspace_v2"),
                cublasGetVersion_v2 = (delegate* unmanaged[Cdecl]<nint, int*, int>)lib.GetExport("cublasGetVersion_v2"),
                cublasGemmEx = (delegate* unmanaged[Cdecl]<nint, int, int, int, int, int, void*, void*, int, int, void*, int, int, void*, void*, int, int, int, int, int>)lib.GetExport("cublasGemmEx"),
                cublasGemmStridedBatchedEx = (delegate* unmanaged[Cdecl]<nint, int, int, int, int, int, void*, void*, int, int, long, void*, int, int, long, void*, void*, int, int, long, int, int, int, int>)lib.GetExport("cublasGemmStridedBatchedEx"),
                cublasGemmBatchedEx = (delegate* unmanaged[Cdecl]<nint, int, int, int, int, int, void*, ulong, int, int, ulong, int, int, void*, ulong, int, int, int, int, int, int>)lib.GetExport("cublasGemmBatchedEx"),
                cublasGetStatusName = (delegate* unmanaged[Cdecl]<int, byte*>)lib.TryGetExport("cublasGetStatusName"),
                cublasGetStatusString = (delegate* unmanaged[Cdecl]<int, byte*>)lib.TryGetExport("cublasGetStatusString"),
            };
            Volatile.Write(ref _api, a);
            return a;
        }
    }

    /// <summary>The cublasStatus_t name from cublasGetStatusName, else from the enum ("CUBLAS_STATUS_INVALID_VALUE").</summary>
    public static string StatusName(int status)
    {
        if (Volatile.Read(ref _api) is { } a && a.cublasGetStatusName != null && a.cublasGetStatusName(status) is var s && s != null)
            return Marshal.PtrToStringUTF8((nint)s) ?? KnownStatusName(status);
        return KnownStatusName(status);
    }

    /// <summary>"CUBLAS_STATUS_" + the enum member in upper snake case, or "cuBLAS status {n}" for an unknown value.</summary>
    public static string KnownStatusName(int status) => status switch
    {
        0 => "CUBLAS_STATUS_SUCCESS",
        1 => "CUBLAS_STATUS_NOT_INITIALIZED",
        3 => "CUBLAS_STATUS_ALLOC_FAILED",
        7 => "CUBLAS_STATUS_INVALID_VALUE",
        8 => "CUBLAS_STATUS_ARCH_MISMATCH",
        11 => "CUBLAS_STATUS_MAPPING_ERROR",
        13 => "CUBLAS_STATUS_EXECUTION_FAILED",
        14 => "CUBLAS_STATUS_INTERNAL_ERROR",
        15 => "CUBLAS_STATUS_NOT_SUPPORTED",
        16 => "CUBLAS_STATUS_LICENSE_ERROR",
        _ => $"cuBLAS status {status}",
    };

    private static string? StatusString(int status)
    {
        if (Volatile.Read(ref _api) is { } a && a.cublasGetStatusString != null && a.cublasGetStatusString(status) is var s && s != null)
            return Marshal.PtrToStringUTF8((nint)s);
        return null;
    }

    /// <summary>Throws <see cref="CublasException"/> for a non-zero cublasStatus_t.</summary>
    public static void Check(int status, string call)
    {
        if (status != 0) throw new CublasException(call, status, StatusName(status), StatusString(status));
    }

    private nint _handle;

    /// <summary>cublasCreate_v2 (needs a current CUDA context, see <see cref="CudaDevice.MakeCurrent"/>).</summary>
    public Cublas()
    {
        nint h;
        Check(Fn.cublasCreate_v2(&h), "cublasCreate_v2");
        _handle = h;
    }

    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle == 0, this);
            return _handle;
        }
    }

    /// <summary>cublasGetVersion_v2, e.g. 120402 for 12.4.2.</summary>
    public int Version
    {
        get
        {
            int v;
            Check(Fn.cublasGetVersion_v2(Handle, &v), "cublasGetVersion_v2");
            return v;
        }
    }

    public void SetStream(nint stream) => Check(Fn.cublasSetStream_v2(Handle, stream), "cublasSetStream_v2");

    public void SetMathMode(CublasMath mode) => Check(Fn.cublasSetMathMode(Handle, (int)mode), "cublasSetMathMode");

    /// <summary>cublasSetWorkspace_v2: a workspace of our own, so that GEMMs allocate nothing (needed under graph capture).</summary>
    public void SetWorkspace(ulong devicePointer, ulong bytes)
    {
        Api a = Fn;
        if (a.cublasSetWorkspace_v2 == null)
            throw new CudaUnavailableException($"cuBLAS at {a.Library.Path} does not export cublasSetWorkspace_v2 (CUDA 12 or newer has it); install a newer CUDA toolkit, or set BERT_CUBLAS to a newer library's path.");
        Check(a.cublasSetWorkspace_v2(Handle, (void*)devicePointer, (nuint)bytes), "cublasSetWorkspace_v2");
    }

    /// <summary>cublasGemmEx with host float alpha/beta (so a 32F compute type): column-major
    /// C(m×n) = alpha·op(A)(m×k)·op(B)(k×n) + beta·C. Pointers are device pointers.</summary>
    public void GemmEx(CublasOperation transa, CublasOperation transb, int m, int n, int k,
        float alpha, ulong A, CudaDataType aType, int lda, ulong B, CudaDataType bType, int ldb,
        float beta, ulong C, CudaDataType cType, int ldc,
        CublasComputeType computeType = CublasComputeType.Compute32F, int algo = GemmDefault)
    {
        CheckFloatScale(computeType);
        Check(Fn.cublasGemmEx(Handle, (int)transa, (int)transb, m, n, k, &alpha, (void*)A, (int)aType, lda, (void*)B, (int)bType, ldb,
            &beta, (void*)C, (int)cType, ldc, (int)computeType, algo), "cublasGemmEx");
    }

    /// <summary>cublasGemmStridedBatchedEx with host float alpha/beta: <paramref name="batchCount"/> column-major GEMMs, the i-th
    /// reading A + i·strideA, B + i·strideB and writing C + i·strideC (strides in elements).</summary>
    public void GemmStridedBatchedEx(CublasOperation transa, CublasOperation transb, int m, int n, int k,
        float alpha, ulong A, CudaDataType aType, int lda, long strideA, ulong B, CudaDataType bType, int ldb, long strideB,
        float beta, ulong C, CudaDataType cType, int ldc, long strideC, int batchCount,
        CublasComputeType computeType = CublasComputeType.Compute32F, int algo = GemmDefault)
    {
        CheckFloatScale(computeType);
        Check(Fn.cublasGemmStridedBatchedEx(Handle, (int)transa, (int)transb, m, n, k, &alpha, (void*)A, (int)aType, lda, strideA,
            (void*)B, (int)bType, ldb, strideB, &beta, (void*)C, (int)cType, ldc, strideC, batchCount, (int)computeType, algo),
            "cublasGemmStridedBatchedEx");
    }

    /// <summary>cublasGemmBatchedEx with host float alpha/beta: <paramref name="batchCount"/> column-major GEMMs, the i-th
    /// reading Aarray[i] and Barray[i] and writing Carray[i] (device arrays of device pointers).</summary>
    public void GemmBatchedEx(CublasOperation transa, CublasOperation transb, int m, int n, int k,
        float alpha, ulong Aarray, CudaDataType aType, int lda, ulong Barray, CudaDataType bType, int ldb,
        float beta, ulong Carray, CudaDataType cType, int ldc, int batchCount,
        CublasComputeType computeType = CublasComputeType.Compute32F, int algo = GemmDefault)
    {
        CheckFloatScale(computeType);
        Check(Fn.cublasGemmBatchedEx(Handle, (int)transa, (int)transb, m, n, k, &alpha, Aarray, (int)aType, lda, Barray, (int)bType, ldb,
            &beta, Carray, (int)cType, ldc, batchCount, (int)computeType, algo), "cublasGemmBatchedEx");
    }

    private static void CheckFloatScale(CublasComputeType t)
    {
        if (t is not (CublasComputeType.Compute32F or CublasComputeType.Compute32FPedantic or CublasComputeType.Compute32FFast16F
            or CublasComputeType.Compute32FFast16BF or CublasComputeType.Compute32FFastTF32))
            throw new ArgumentException($"This binding passes alpha and beta as float, which cuBLAS reads only for the 32F compute types, not {t}.", nameof(t));
    }

    /// <summary>Maps a row-major GEMM C(M×N) = op(A)·op(B) (op(A) M×K, op(B) K×N, lda/ldb/ldc the row strides as stored) to the
    /// column-major cuBLAS call Cᵀ = op(B)ᵀ·op(A)ᵀ: m = N, n = M, first operand B (transB, ldb), second A (transA, lda).
    /// Checks the strides as cuBLAS would (at least the stored row length, and at least 1).</summary>
    public static ColumnMajorGemm RowMajorToColumnMajor(bool transA, bool transB, int M, int N, int K, int lda, int ldb, int ldc)
    {
        if (M < 0 || N < 0 || K < 0)
            throw new ArgumentOutOfRangeException(nameof(M), $"GEMM dimensions must be non-negative (M={M}, N={N}, K={K}).");
        int aCols = transA ? M : K, bCols = transB ? K : N;
        if (lda < Math.Max(1, aCols)) throw new ArgumentOutOfRangeException(nameof(lda), $"lda={lda} must be at least {Math.Max(1, aCols)} (the stored row length of A).");
        if (ldb < Math.Max(1, bCols)) throw new ArgumentOutOfRangeException(nameof(ldb), $"ldb={ldb} must be at least {Math.Max(1, bCols)} (the stored row length of B).");
        if (ldc < Math.Max(1, N)) throw new ArgumentOutOfRangeException(nameof(ldc), $"ldc={ldc} must be at least {Math.Max(1, N)} (N).");
        return new ColumnMajorGemm(
            TransA: transB ? CublasOperation.T : CublasOperation.N,
            TransB: transA ? CublasOperation.T : CublasOperation.N,
            M: N, N: M, K: K, Lda: ldb, Ldb: lda, Ldc: ldc);
    }

    /// <summary>Row-major C(M×N) = alpha·op(A)·op(B) + beta·C on device pointers, with the same contract as
    /// <see cref="Kernels.Gemm.Run{T}"/> (lda/ldb/ldc are row strides as stored). A and B are <paramref name="dtype"/>
    /// (R32F or R16BF), C is <paramref name="cType"/> (default: dtype), accumulation is FP32 (CUBLAS_COMPUTE_32F), algorithm
    /// CUBLAS_GEMM_DEFAULT. Implemented as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ (see <see cref="RowMajorToColumnMajor"/>).</summary>
    public void Gemm(bool transA, bool transB, int M, int N, int K, float alpha, ulong A, int lda, ulong B, int ldb,
        float beta, ulong C, int ldc, CudaDataType dtype, CudaDataType? cType = null,
        CublasComputeType computeType = CublasComputeType.Compute32F)
    {
        ColumnMajorGemm g = RowMajorToColumnMajor(transA, transB, M, N, K, lda, ldb, ldc);
        if (M == 0 || N == 0) return;
        GemmEx(g.TransA, g.TransB, g.M, g.N, g.K, alpha, B, dtype, g.Lda, A, dtype, g.Ldb, beta, C, cType ?? dtype, g.Ldc, computeType);
    }

    /// <summary>Row-major strided-batched GEMM: for i &lt; batch, C_i = alpha·op(A_i)·op(B_i) + beta·C_i with X_i = X + i·strideX
    /// (elements); the same row-major → column-major mapping as <see cref="Gemm"/>.</summary>
    public void GemmStridedBatched(bool transA, bool transB, int M, int N, int K, float alpha,
        ulong A, int lda, long strideA, ulong B, int ldb, long strideB, float beta, ulong C, int ldc, long strideC, int batch,
        CudaDataType dtype, CudaDataType? cType = null, CublasComputeType computeType = CublasComputeType.Compute32F)
    {
        ColumnMajorGemm g = RowMajorToColumnMajor(transA, transB, M, N, K, lda, ldb, ldc);
        if (batch < 0) throw new ArgumentOutOfRangeException(nameof(batch), $"batch={batch} must be non-negative.");
        if (M == 0 || N == 0 || batch == 0) return;
        GemmStridedBatchedEx(g.TransA, g.TransB, g.M, g.N, g.K, alpha, B, dtype, g.Lda, strideB, A, dtype, g.Ldb, strideA,
            beta, C, cType ?? dtype, g.Ldc, strideC, batch, computeType);
    }

    /// <summary>Row-major batched GEMM over device arrays of device pointers: for i &lt; batch, C[i] = alpha·op(A[i])·op(B[i]) +
    /// beta·C[i]; the same row-major → column-major mapping as <see cref="Gemm"/>. The matrices may sit anywhere (attention's
    /// heads inside the B×T×3C projections, rows lda apart), which no single stride describes.</summary>
    public void GemmBatched(bool transA, bool transB, int M, int N, int K, float alpha, ulong Aarray, int lda, ulong Barray, int ldb,
        float beta, ulong Carray, int ldc, int batch, CudaDataType dtype, CudaDataType? cType = null, CublasComputeType computeType = CublasComputeType.Compute32F)
    {
        ColumnMajorGemm g = RowMajorToColumnMajor(transA, transB, M, N, K, lda, ldb, ldc);
        if (batch < 0) throw new ArgumentOutOfRangeException(nameof(batch), $"batch={batch} must be non-negative.");
        if (M == 0 || N == 0 || batch == 0) return;
        GemmBatchedEx(g.TransA, g.TransB, g.M, g.N, g.K, alpha, Barray, dtype, g.Lda, Aarray, dtype, g.Ldb, beta, Carray, cType ?? dtype, g.Ldc, batch, computeType);
    }

    public void Dispose()
    {
        if (_handle == 0) return;
        nint h = _handle;
        _handle = 0;
        Check(Fn.cublasDestroy_v2(h), "cublasDestroy_v2");
    }
}

// ---------------------------------------------------------------------------------------------------------------------------
// cuBLASLt

/// <summary>cublasLtEpilogue_t: what cublasLtMatmul applies to the product before storing D.</summary>
public enum CublasLtEpilogue : uint
{
    Default = 1,
    Relu = 2,
    ReluAux = Relu | 128,
    Bias = 4,
    ReluBias = Relu | Bias,
    ReluAuxBias = ReluAux | Bias,
    DRelu = 8 | 128,
    DReluBGrad = DRelu | 16,
    Gelu = 32,
    GeluAux = Gelu | 128,
    GeluBias = Gelu | Bias,
    GeluAuxBias = GeluAux | Bias,
    DGelu = 64 | 128,
    DGeluBGrad = DGelu | 16,
    BGradA = 256,
    BGradB = 512,
}

/// <summary>cublasLtMatmulDescAttributes_t (the ones this runtime sets).</summary>
public enum CublasLtMatmulDescAttribute
{
    ComputeType = 0,
    ScaleType = 1,
    PointerMode = 2,
    TransA = 3,
    TransB = 4,
    TransC = 5,
    FillMode = 6,
    Epilogue = 7,
    BiasPointer = 8,
    BiasBatchStride = 10,
    EpilogueAuxPointer = 11,
    EpilogueAuxLd = 12,
    EpilogueAuxBatchStride = 13,
    AlphaVectorBatchStride = 14,
    SmCountTarget = 15,
    BiasDataType = 26,
}

/// <summary>cublasLtMatrixLayoutAttribute_t.</summary>
public enum CublasLtMatrixLayoutAttribute
{
    Type = 0,
    Order = 1,
    Rows = 2,
    Cols = 3,
    Ld = 4,
    BatchCount = 5,
    StridedBatchOffset = 6,
    PlaneOffset = 7,
}

/// <summary>cublasLtOrder_t.</summary>
public enum CublasLtOrder
{
    Col = 0,
    Row = 1,
}

/// <summary>cublasLtMatmulPreferenceAttributes_t (the ones this runtime sets).</summary>
public enum CublasLtMatmulPreferenceAttribute
{
    SearchMode = 0,
    MaxWorkspaceBytes = 1,
    MinAlignmentABytes = 5,
    MinAlignmentBBytes = 6,
    MinAlignmentCBytes = 7,
    MinAlignmentDBytes = 8,
}

/// <summary>cublasLtMatmulAlgo_t: 8 × uint64, opaque.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct CublasLtMatmulAlgo
{
    public fixed ulong Data[8];
}

/// <summary>cublasLtMatmulHeuristicResult_t: the algorithm, its workspace size, status, waves count, 4 reserved ints (96 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct CublasLtMatmulHeuristicResult
{
    public CublasLtMatmulAlgo Algo;
    public nuint WorkspaceSize;
    public int State;
    public float WavesCount;
    public fixed int Reserved[4];
}

/// <summary>A cuBLASLt handle (libcublasLt.so.13 / .12): descriptors, heuristics and cublasLtMatmul, for GEMMs with fused bias
/// and GELU epilogues (CUBLASLT_EPILOGUE_BIAS, CUBLASLT_EPILOGUE_GELU_BIAS). Like cuBLAS it is column-major; the bias vector has
/// one element per row of D, i.e. per column of a row-major output mapped as in <see cref="Cublas.RowMajorToColumnMajor"/>.</summary>
public sealed unsafe class CublasLt : IDisposable
{
    private sealed class Api
    {
        public required LoadedCudaLibrary Library;
        public delegate* unmanaged[Cdecl]<nint*, int> cublasLtCreate;
        public delegate* unmanaged[Cdecl]<nint, int> cublasLtDestroy;
        public delegate* unmanaged[Cdecl]<nint*, int, int, int> cublasLtMatmulDescCreate;
        public delegate* unmanaged[Cdecl]<nint, int> cublasLtMatmulDescDestroy;
        public delegate* unmanaged[Cdecl]<nint, int, void*, nuint, int> cublasLtMatmulDescSetAttribute;
        public delegate* unmanaged[Cdecl]<nint*, int, ulong, ulong, long, int> cublasLtMatrixLayoutCreate;
        public delegate* unmanaged[Cdecl]<nint, int> cublasLtMatrixLayoutDestroy;
        public delegate* unmanaged[Cdecl]<nint, int, void*, nuint, int> cublasLtMatrixLayoutSetAttribute;
        public delegate* unmanaged[Cdecl]<nint*, int> cublasLtMatmulPreferenceCreate;
        public delegate* unmanaged[Cdecl]<nint, int> cublasLtMatmulPreferenceDestroy;
        public delegate* unmanaged[Cdecl]<nint, int, void*, nuint, int> cublasLtMatmulPreferenceSetAttribute;
        public delegate* unmanaged[Cdecl]<nint, nint, nint, nint, nint, nint, nint, int, CublasLtMatmulHeuristicResult*, int*, int> cublasLtMatmulAlgoGetHeuristic;
        public delegate* unmanaged[Cdecl]<nint, nint, void*, void*, nint, void*, nint, void*, void*, nint, void*, nint, CublasLtMatmulAlgo*, void*, nuint, nint, int> cublasLtMatmul;
        public delegate* unmanaged[Cdecl]<int, byte*> cublasLtGetStatusName;   // optional
        public delegate* unmanaged[Cdecl]<int, byte*> cublasLtGetStatusString; // optional
    }

    private static Api? _api;
    private static readonly object Gate = new();
    private static Api Fn => Volatile.Read(ref _api) ?? LoadApi();

    /// <summary>Opens cuBLASLt (see <see cref="CudaLibraries"/>); throws <see cref="CudaUnavailableException"/>.</summary>
    public static LoadedCudaLibrary Load() => Fn.Library;

    private static Api LoadApi()
    {
        lock (Gate)
        {
            if (_api != null) return _api;
            LoadedCudaLibrary lib = CudaLibraries.Get(CudaLibrary.CublasLt);
            var a = new Api
            {
                Library = lib,
                cublasLtCreate = (delegate* unmanaged[Cdecl]<nint*, int>)lib.GetExport("cublasLtCreate"),
                cublasLtDestroy = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cublasLtDestroy"),
                cublasLtMatmulDescCreate = (delegate* unmanaged[Cdecl]<nint*, int, int, int>)lib.GetExport("cublasLtMatmulDescCreate"),
                cublasLtMatmulDescDestroy = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cublasLtMatmulDescDestroy"),
                cublasLtMatmulDescSetAttribute = (delegate* unmanaged[Cdecl]<nint, int, void*, nuint, int>)lib.GetExport("cublasLtMatmulDescSetAttribute"),
                cublasLtMatrixLayoutCreate = (delegate* unmanaged[Cdecl]<nint*, int, ulong, ulong, long, int>)lib.GetExport("cublasLtMatrixLayoutCreate"),
                cublasLtMatrixLayoutDestroy = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cublasLtMatrixLayoutDestroy"),
                cublasLtMatrixLayoutSetAttribute = (delegate* unmanaged[Cdecl]<nint, int, void*, nuint, int>)lib.GetExport("cublasLtMatrixLayoutSetAttribute"),
                cublasLtMatmulPreferenceCreate = (delegate* unmanaged[Cdecl]<nint*, int>)lib.GetExport("cublasLtMatmulPreferenceCreate"),
                cublasLtMatmulPreferenceDestroy = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cublasLtMatmulPreferenceDestroy"),
                cublasLtMatmulPreferenceSetAttribute = (delegate* unmanaged[Cdecl]<nint, int, void*, nuint, int>)lib.GetExport("cublasLtMatmulPreferenceSetAttribute"),
                cublasLtMatmulAlgoGetHeuristic = (delegate* unmanaged[Cdecl]<nint, nint, nint, nint, nint, nint, nint, int, CublasLtMatmulHeuristicResult*, int*, int>)lib.GetExport("cublasLtMatmulAlgoGetHeuristic"),
                cublasLtMatmul = (delegate* unmanaged[Cdecl]<nint, nint, void*, void*, nint, void*, nint, void*, void*, nint, void*, nint, CublasLtMatmulAlgo*, void*, nuint, nint, int>)lib.GetExport("cublasLtMatmul"),
                cublasLtGetStatusName = (delegate* unmanaged[Cdecl]<int, byte*>)lib.TryGetExport("cublasLtGetStatusName"),
                cublasLtGetStatusString = (delegate* unmanaged[Cdecl]<int, byte*>)lib.TryGetExport("cublasLtGetStatusString"),
            };
            Volatile.Write(ref _api, a);
            return a;
        }
    }

    private static void Check(int status, string call)
    {
        if (status == 0) return;
        Api? a = Volatile.Read(ref _api);
        string name = a != null && a.cublasLtGetStatusName != null && a.cublasLtGetStatusName(status) is var n && n != null
            ? Marshal.PtrToStringUTF8((nint)n) ?? Cublas.KnownStatusName(status) : Cublas.KnownStatusName(status);
        string? text = a != null && a.cublasLtGetStatusString != null && a.cublasLtGetStatusString(status) is var t && t != null
            ? Marshal.PtrToStringUTF8((nint)t) : null;
        throw new CublasException(call, status, name, text);
    }

    /// <summary>The epilogue for a fused bias and/or GELU (tanh approximation, as cuBLASLt computes it); <paramref name="aux"/>
    /// also stores the GELU input (for the backward pass).</summary>
    public static CublasLtEpilogue Epilogue(bool bias, bool gelu, bool aux = false)
    {
        if (aux && !gelu) throw new ArgumentException("The auxiliary output is the GELU input; it needs gelu.", nameof(aux));
        uint e = 0;
        if (bias) e |= (uint)CublasLtEpilogue.Bias;
        if (gelu) e |= (uint)CublasLtEpilogue.Gelu;
        if (aux) e |= 128;
        return e == 0 ? CublasLtEpilogue.Default : (CublasLtEpilogue)e;
    }

    /// <summary>The size in bytes cuBLASLt expects for a matmul descriptor attribute (int32/uint32 values: 4; pointers and int64 strides: 8).</summary>
    public static int AttributeSize(CublasLtMatmulDescAttribute attribute) => attribute switch
    {
        CublasLtMatmulDescAttribute.BiasPointer or CublasLtMatmulDescAttribute.EpilogueAuxPointer => sizeof(nint),
        CublasLtMatmulDescAttribute.BiasBatchStride or CublasLtMatmulDescAttribute.EpilogueAuxLd
            or CublasLtMatmulDescAttribute.EpilogueAuxBatchStride or CublasLtMatmulDescAttribute.AlphaVectorBatchStride => 8,
        _ => 4,
    };

    /// <summary>The size in bytes cuBLASLt expects for a matrix layout attribute (rows, cols: uint64; ld, batch offset, plane offset: int64; others 4).</summary>
    public static int AttributeSize(CublasLtMatrixLayoutAttribute attribute) => attribute switch
    {
        CublasLtMatrixLayoutAttribute.Rows or CublasLtMatrixLayoutAttribute.Cols or CublasLtMatrixLayoutAttribute.Ld
            or CublasLtMatrixLayoutAttribute.StridedBatchOffset or CublasLtMatrixLayoutAttribute.PlaneOffset => 8,
        _ => 4,
    };

    /// <summary>The size in bytes cuBLASLt expects for a preference attribute (max workspace: uint64; search mode: uint32).</summary>
    public static int AttributeSize(CublasLtMatmulPreferenceAttribute attribute) =>
        attribute == CublasLtMatmulPreferenceAttribute.MaxWorkspaceBytes ? 8 : 4;

    /// <summary>Throws <see cref="ArgumentException"/> when a value of type T does not have the attribute's size (before any native call).</summary>
    public static void CheckAttributeSize<T>(string attribute, int expected) where T : unmanaged
    {
        if (sizeof(T) != expected)
            throw new ArgumentException($"cuBLASLt attribute {attribute} takes {expected} bytes, but a {typeof(T).Name} has {sizeof(T)}.");
    }

    private nint _handle;

    /// <summary>cublasLtCreate.</summary>
    public CublasLt()
    {
        nint h;
        Check(Fn.cublasLtCreate(&h), "cublasLtCreate");
        _handle = h;
    }

    public nint Handle
    {
        get
        {
            ObjectDisposedException.ThrowIf(_handle == 0, this);
            return _handle;
        }
    }

    public static nint MatmulDescCreate(CublasComputeType computeType, CudaDataType scaleType)
    {
        nint d;
        Check(Fn.cublasLtMatmulDescCreate(&d, (int)computeType, (int)scaleType), "cublasLtMatmulDescCreate");
        return d;
    }

    public static void MatmulDescDestroy(nint desc) => Check(Fn.cublasLtMatmulDescDestroy(desc), "cublasLtMatmulDescDestroy");

    public static void MatmulDescSetAttribute<T>(nint desc, CublasLtMatmulDescAttribute attribute, T value) where T : unmanaged
    {
        CheckAttributeSize<T>(attribute.ToString(), AttributeSize(attribute));
        Check(Fn.cublasLtMatmulDescSetAttribute(desc, (int)attribute, &value, (nuint)sizeof(T)), "cublasLtMatmulDescSetAttribute");
    }

    public static nint MatrixLayoutCreate(CudaDataType type, ulong rows, ulong cols, long ld)
    {
        nint l;
        Check(Fn.cublasLtMatrixLayoutCreate(&l, (int)type, rows, cols, ld), "cublasLtMatrixLayoutCreate");
        return l;
    }

    public static void MatrixLayoutDestroy(nint layout) => Check(Fn.cublasLtMatrixLayoutDestroy(layout), "cublasLtMatrixLayoutDestroy");

    public static void MatrixLayoutSetAttribute<T>(nint layout, CublasLtMatrixLayoutAttribute attribute, T value) where T : unmanaged
    {
        CheckAttributeSize<T>(attribute.ToString(), AttributeSize(attribute));
        Check(Fn.cublasLtMatrixLayoutSetAttribute(layout, (int)attribute, &value, (nuint)sizeof(T)), "cublasLtMatrixLayoutSetAttribute");
    }

    public static nint MatmulPreferenceCreate()
    {
        nint p;
        Check(Fn.cublasLtMatmulPreferenceCreate(&p), "cublasLtMatmulPreferenceCreate");
        return p;
    }

    public static void MatmulPreferenceDestroy(nint preference) => Check(Fn.cublasLtMatmulPreferenceDestroy(preference), "cublasLtMatmulPreferenceDestroy");

    public static void MatmulPreferenceSetAttribute<T>(nint preference, CublasLtMatmulPreferenceAttribute attribute, T value) where T : unmanaged
    {
        CheckAttributeSize<T>(attribute.ToString(), AttributeSize(attribute));
        Check(Fn.cublasLtMatmulPreferenceSetAttribute(preference, (int)attribute, &value, (nuint)sizeof(T)), "cublasLtMatmulPreferenceSetAttribute");
    }

    /// <summary>cublasLtMatmulAlgoGetHeuristic: up to <paramref name="requested"/> algorithms, best first (empty when none fits).</summary>
    public CublasLtMatmulHeuristicResult[] AlgoGetHeuristic(nint operationDesc, nint aDesc, nint bDesc, nint cDesc, nint dDesc, nint preference, int requested = 1)
    {
        var results = new CublasLtMatmulHeuristicResult[Math.Max(1, requested)];
        int returned = 0;
        fixed (CublasLtMatmulHeuristicResult* p = results)
            Check(Fn.cublasLtMatmulAlgoGetHeuristic(Handle, operationDesc, aDesc, bDesc, cDesc, dDesc, preference, results.Length, p, &returned),
                "cublasLtMatmulAlgoGetHeuristic");
        return results[..returned];
    }

    /// <summary>cublasLtMatmul with host float alpha/beta: D = epilogue(alpha·op(A)·op(B) + beta·C (+ bias)). <paramref name="algo"/>
    /// null lets cuBLASLt choose.</summary>
    public void Matmul(nint computeDesc, float alpha, ulong A, nint aDesc, ulong B, nint bDesc, float beta, ulong C, nint cDesc,
        ulong D, nint dDesc, CublasLtMatmulAlgo? algo, ulong workspace, ulong workspaceBytes, nint stream)
    {
        CublasLtMatmulAlgo a = algo.GetValueOrDefault();
        Check(Fn.cublasLtMatmul(Handle, computeDesc, &alpha, (void*)A, aDesc, (void*)B, bDesc, &beta, (void*)C, cDesc, (void*)D, dDesc,
            algo.HasValue ? &a : null, (void*)workspace, (nuint)workspaceBytes, stream), "cublasLtMatmul");
    }

    /// <summary>A product's descriptors and algorithm, made once per shape, types and operand alignment (null: no algorithm).</summary>
    sealed class BiasPlan(nint desc, nint a, nint b, nint c, CublasLtMatmulAlgo algo)
    {
        public readonly nint Desc = desc, A = a, B = b, C = c;
        public readonly CublasLtMatmulAlgo Algo = algo;
    }

    readonly record struct BiasKey(bool TransA, bool TransB, int M, int N, int K, int Lda, int Ldb, int Ldc, CudaDataType Type,
        CublasComputeType Compute, int AlignA, int AlignB, int AlignC, int AlignD, ulong WorkspaceBytes);

    static BiasKey KeyOf(bool transA, bool transB, int M, int N, int K, int lda, int ldb, int ldc, CudaDataType type, CublasComputeType compute,
        ulong A, ulong B, ulong D, ulong residual, ulong workspaceBytes) =>
        new(transA, transB, M, N, K, lda, ldb, ldc, type, compute, Alignment(A), Alignment(B), Alignment(residual != 0 ? residual : D), Alignment(D), workspaceBytes);

    readonly Dictionary<BiasKey, BiasPlan?> _biasPlans = new();

    /// <summary>The alignment cuBLASLt may assume of a pointer: its lowest set bit, up to 256 bytes (the default it assumes
    /// when not told).</summary>
    public static int Alignment(ulong pointer) => pointer == 0 ? 256 : (int)Math.Min(256UL, pointer & (~pointer + 1));

    /// <summary>Whether <see cref="RowMajorBias"/> has an algorithm for this product (asked once per key, then remembered).</summary>
    public bool CanBias(bool transA, bool transB, int M, int N, int K, int lda, int ldb, int ldc, CudaDataType type, CublasComputeType compute,
        ulong A, ulong B, ulong C, ulong residual, ulong workspaceBytes) =>
        Plan(KeyOf(transA, transB, M, N, K, lda, ldb, ldc, type, compute, A, B, C, residual, workspaceBytes)) != null;

    /// <summary>Row-major C(M×N) = op(A)·op(B) + bias, the bias one fp32 element per column of C (16-byte aligned), in one
    /// cublasLtMatmul with CUBLASLT_EPILOGUE_BIAS: A and B of <paramref name="type"/> (fp32 or bf16), C fp32, fp32 accumulation
    /// (<paramref name="compute"/>: 32F, or 32F_FAST_TF32). The same row-major → column-major mapping as <see cref="Cublas.Gemm"/>
    /// (cuBLASLt's D = C = Cᵀ column-major, whose rows are C's columns: the bias runs along them). <paramref name="residual"/>
    /// (0: none), packed like C, is added too: cuBLASLt's input C with β = 1, out of place (D = C here). <see cref="CanBias"/>
    /// first.</summary>
    public void RowMajorBias(bool transA, bool transB, int M, int N, int K, ulong A, int lda, ulong B, int ldb, ulong C, int ldc, ulong bias,
        ulong residual, CudaDataType type, CublasComputeType compute, ulong workspace, ulong workspaceBytes, nint stream)
    {
        var plan = Plan(KeyOf(transA, transB, M, N, K, lda, ldb, ldc, type, compute, A, B, C, residual, workspaceBytes))
            ?? throw new InvalidOperationException($"cuBLASLt has no algorithm for a {M}×{N}×{K} product with a bias; ask CanBias first.");
        MatmulDescSetAttribute(plan.Desc, CublasLtMatmulDescAttribute.BiasPointer, (nint)bias);
        // Column-major: the caller's B is cuBLASLt's first operand, the caller's A its second.
        Matmul(plan.Desc, 1f, B, plan.A, A, plan.B, residual != 0 ? 1f : 0f, residual != 0 ? residual : C, plan.C, C, plan.C, plan.Algo, workspace, workspaceBytes, stream);
    }

    BiasPlan? Plan(BiasKey key)
    {
        if (_biasPlans.TryGetValue(key, out var plan)) return plan;
        var g = Cublas.RowMajorToColumnMajor(key.TransA, key.TransB, key.M, key.N, key.K, key.Lda, key.Ldb, key.Ldc);
        nint desc = 0, a = 0, b = 0, c = 0, pref = 0;
        try
        {
            desc = MatmulDescCreate(key.Compute, CudaDataType.R32F);
            MatmulDescSetAttribute(desc, CublasLtMatmulDescAttribute.TransA, (int)g.TransA);
            MatmulDescSetAttribute(desc, CublasLtMatmulDescAttribute.TransB, (int)g.TransB);
            MatmulDescSetAttribute(desc, CublasLtMatmulDescAttribute.Epilogue, (uint)CublasLtEpilogue.Bias);
            MatmulDescSetAttribute(desc, CublasLtMatmulDescAttribute.BiasDataType, (int)CudaDataType.R32F);
            // Matrices as stored: op(X) is rows × cols after the transpose, X itself before it.
            a = g.TransA == CublasOperation.N ? MatrixLayoutCreate(key.Type, (ulong)g.M, (ulong)g.K, g.Lda) : MatrixLayoutCreate(key.Type, (ulong)g.K, (ulong)g.M, g.Lda);
            b = g.TransB == CublasOperation.N ? MatrixLayoutCreate(key.Type, (ulong)g.K, (ulong)g.N, g.Ldb) : MatrixLayoutCreate(key.Type, (ulong)g.N, (ulong)g.K, g.Ldb);
            c = MatrixLayoutCreate(CudaDataType.R32F, (ulong)g.M, (ulong)g.N, g.Ldc);
            pref = MatmulPreferenceCreate();
            MatmulPreferenceSetAttribute(pref, CublasLtMatmulPreferenceAttribute.MaxWorkspaceBytes, key.WorkspaceBytes);
            // The caller's B is cuBLASLt's A.
            MatmulPreferenceSetAttribute(pref, CublasLtMatmulPreferenceAttribute.MinAlignmentABytes, (uint)key.AlignB);
            MatmulPreferenceSetAttribute(pref, CublasLtMatmulPreferenceAttribute.MinAlignmentBBytes, (uint)key.AlignA);
            MatmulPreferenceSetAttribute(pref, CublasLtMatmulPreferenceAttribute.MinAlignmentCBytes, (uint)key.AlignC);
            MatmulPreferenceSetAttribute(pref, CublasLtMatmulPreferenceAttribute.MinAlignmentDBytes, (uint)key.AlignD);
            // Any refusal (no algorithm, a shape or alignment it does not take) means the product and its bias kernel run
            // instead; remembered, so that it is asked once.
            CublasLtMatmulHeuristicResult[] found;
            try { found = AlgoGetHeuristic(desc, a, b, c, c, pref, 1); }
            catch (CublasException) { found = []; }
            if (found.Length > 0 && found[0].State == 0)
            {
                plan = new BiasPlan(desc, a, b, c, found[0].Algo);
                desc = a = b = c = 0;   // the plan owns them
            }
            _biasPlans[key] = plan;
            return plan;
        }
        catch (CublasException)
        {
            _biasPlans[key] = null;   // a layout or attribute it refuses for this shape: the same fallback
            return null;
        }
        finally
        {
            if (pref != 0) MatmulPreferenceDestroy(pref);
            if (c != 0) MatrixLayoutDestroy(c);
            if (b != 0) MatrixLayoutDestroy(b);
            if (a != 0) MatrixLayoutDestroy(a);
            if (desc != 0) MatmulDescDestroy(desc);
        }
    }

    public void Dispose()
    {
        if (_handle == 0) return;
        foreach (var p in _biasPlans.Values)
            if (p != null) { MatmulDescDestroy(p.Desc); MatrixLayoutDestroy(p.A); MatrixLayoutDestroy(p.B); MatrixLayoutDestroy(p.C); }
        _biasPlans.Clear();
        nint h = _handle;
        _handle = 0;
        Check(Fn.cublasLtDestroy(h), "cublasLtDestroy");
    }
}
