using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Bert.Runtime.Cuda;
using Bert.Runtime.Kernels;
using Xunit;

namespace Bert.Tests.Cuda;

/// <summary>Every CUDA test: they read or set the BERT_* library variables and share one device, so none runs beside another.</summary>
[CollectionDefinition("Cuda environment", DisableParallelization = true)]
public class CudaEnvironmentCollection { }

/// <summary>The device shared by the GPU tests, opened once; <see cref="Why"/> says why there is none.</summary>
internal static class Gpu
{
    private static readonly Lazy<(CudaDevice? Device, string Why)> Opened = new(() =>
        CudaDevice.TryOpen(out CudaDevice? d, out string why) ? (d, "") : (null, why));

    public static string? Why => Opened.Value.Device == null ? Opened.Value.Why : null;

    /// <summary>The device, made current on the calling thread (xunit may run each test on another thread).</summary>
    public static CudaDevice Device
    {
        get
        {
            CudaDevice d = Opened.Value.Device ?? throw new InvalidOperationException("no CUDA device: " + Opened.Value.Why);
            d.MakeCurrent();
            return d;
        }
    }
}

/// <summary>A fact that runs only where <see cref="CudaDevice.TryOpen"/> succeeds, and is skipped with the reason elsewhere.</summary>
public sealed class SkippableGpuFactAttribute : FactAttribute
{
    public SkippableGpuFactAttribute()
    {
        if (Gpu.Why is { } why) Skip = "no CUDA device: " + why;
    }
}

/// <summary>A fact about the messages given when CUDA is missing: skipped where the library it is about can be loaded.</summary>
public sealed class WithoutCudaFactAttribute : FactAttribute
{
    public WithoutCudaFactAttribute(CudaLibrary library)
    {
        if (CudaLibraries.TryGet(library, out LoadedCudaLibrary? lib, out _))
            Skip = $"{lib} is installed here; this test checks the message given where it is not.";
    }
}

[Collection("Cuda environment")]
public sealed class CudaBindingTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("bert-cuda-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    // ---------------------------------------------------------------------------------------------------------------------
    // Helpers

    /// <summary>One sentence: one line, ends with a period, no ". X" sentence break inside.</summary>
    static void AssertOneSentence(string message)
    {
        Assert.DoesNotContain('\n', message);
        Assert.EndsWith(".", message);
        Assert.False(Regex.IsMatch(message, @"[.!?]\s+[A-Z]"), "more than one sentence: " + message);
        Assert.True(char.IsUpper(message[0]) || message.StartsWith("cu", StringComparison.Ordinal), "does not start a sentence: " + message);
    }

    /// <summary>Sets environment variables for the life of the scope and restores the old values.</summary>
    sealed class EnvScope : IDisposable
    {
        readonly List<(string Name, string? Old)> _saved = [];
        public EnvScope Set(string name, string? value)
        {
            _saved.Add((name, Environment.GetEnvironmentVariable(name)));
            Environment.SetEnvironmentVariable(name, value);
            return this;
        }
        public void Dispose()
        {
            for (int i = _saved.Count - 1; i >= 0; i--) Environment.SetEnvironmentVariable(_saved[i].Name, _saved[i].Old);
        }
    }

    /// <summary>The C library this process runs on: a real shared library that is certainly not a CUDA one.</summary>
    static string NonCudaLibrary()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/maps"))
            {
                int at = line.IndexOf('/');
                if (at >= 0 && line.EndsWith("/libc.so.6", StringComparison.Ordinal)) return line[at..];
            }
        }
        catch (IOException) { }
        foreach (string p in (string[])["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/usr/lib64/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"])
            if (File.Exists(p)) return p;
        throw new InvalidOperationException("no libc.so.6 found");
    }

    /// <summary>A search that looks only in this test's folders: nothing from the real machine.</summary>
    CudaLibrarySearch IsolatedSearch(Dictionary<string, string>? env = null, string[]? pythonRoots = null) => new()
    {
        GetEnvironmentVariable = name => env != null && env.TryGetValue(name, out string? v) ? v : name == "HOME" ? _dir : null,
        SystemDirectories = [Path.Combine(_dir, "usr-local-cuda", "lib64")],
        UseLoaderDefaultPath = false,
        PythonLibRoots = pythonRoots ?? [Path.Combine(_dir, "py")],
    };

    // ---------------------------------------------------------------------------------------------------------------------
    // Finding the libraries

    [WithoutCudaFact(CudaLibrary.Nvrtc)]
    public void DefaultSearch_WithoutNvrtc_FailsWithOneSentenceNamingTheLibraryThePlacesAndTheFix()
    {
        using var env = new EnvScope().Set("BERT_NVRTC", null);
        var e = Assert.Throws<CudaUnavailableException>(() => CudaLibraries.Load(CudaLibrary.Nvrtc));
        AssertOneSentence(e.Message);
        Assert.StartsWith("NVRTC (libnvrtc.so.13, libnvrtc.so.12, libnvrtc.so) was not found in BERT_NVRTC (unset), CUDA_PATH", e.Message);
        foreach (string place in (string[])["CUDA_HOME", "/usr/local/cuda/lib64", "the loader's default path", "Python wheels", "/usr/lib", "/usr/local/lib", "~/.local/lib"])
            Assert.Contains(place, e.Message);
        Assert.EndsWith("; install the NVIDIA driver / CUDA toolkit, or set BERT_NVRTC to the library's path.", e.Message);
    }

    [WithoutCudaFact(CudaLibrary.Driver)]
    public void CudaDeviceOpen_WithoutDriver_ThrowsOneSentenceAndTryOpenSaysWhy()
    {
        using var env = new EnvScope().Set("BERT_CUDA_DRIVER", null);
        var e = Assert.Throws<CudaUnavailableException>(() => CudaDevice.Open());
        AssertOneSentence(e.Message);
        Assert.StartsWith("The CUDA driver (libcuda.so.1) was not found in BERT_CUDA_DRIVER (unset)", e.Message);
        Assert.EndsWith("install the NVIDIA driver / CUDA toolkit, or set BERT_CUDA_DRIVER to the library's path.", e.Message);

        Assert.False(CudaDevice.TryOpen(out CudaDevice? device, out string why));
        Assert.Null(device);
        Assert.Equal(e.Message, why);
    }

    [Fact]
    public void IsolatedSearch_NamesEveryPlaceLooked_WithTheValuesOfCudaPathAndTheWheelFolders()
    {
        string cuda = Path.Combine(_dir, "cuda-12.4");
        Directory.CreateDirectory(Path.Combine(cuda, "lib64"));
        Directory.CreateDirectory(Path.Combine(_dir, "py", "python3.12", "site-packages", "nvidia", "cublas", "lib")); // a wheel, without NVRTC
        var search = IsolatedSearch(new() { ["CUDA_PATH"] = cuda, ["HOME"] = _dir });

        var e = Assert.Throws<CudaUnavailableException>(() => CudaLibraries.Load(CudaLibrary.Nvrtc, search));
        AssertOneSentence(e.Message);
        Assert.Contains($"CUDA_PATH ({cuda}/lib64, {cuda}/targets/", e.Message);
        Assert.Contains("CUDA_HOME (unset)", e.Message);
        Assert.Contains(Path.Combine(_dir, "usr-local-cuda", "lib64"), e.Message);
        Assert.DoesNotContain("loader's default path", e.Message); // switched off in this search
        Assert.Contains("1 folder, none with it", e.Message);

        Assert.Equal([Path.Combine(_dir, "py", "python3.12", "site-packages", "nvidia", "cublas", "lib")], CudaLibraries.PythonWheelDirectories(search));
        var dirs = CudaLibraries.ToolkitDirectories(search);
        Assert.Equal(("CUDA_PATH", Path.Combine(cuda, "lib64")), dirs[0]);
        Assert.Equal(Path.Combine(_dir, "usr-local-cuda", "lib64"), dirs[^1].Directory);
    }

    [Fact]
    public void IsolatedSearch_WithNoWheelFolder_SaysSo()
    {
        var e = Assert.Throws<CudaUnavailableException>(() => CudaLibraries.Load(CudaLibrary.Cublas, IsolatedSearch()));
        AssertOneSentence(e.Message);
        Assert.StartsWith("cuBLAS (libcublas.so.13, libcublas.so.12, libcublas.so) was not found in BERT_CUBLAS (unset)", e.Message);
        Assert.Contains("no such folder", e.Message);
        Assert.EndsWith("set BERT_CUBLAS to the library's path.", e.Message);
    }

    [Fact]
    public void WheelFolder_HoldingANonCudaLibraryUnderTheRightName_IsReportedAsUnusable()
    {
        string lib = Path.Combine(_dir, "py", "python3.11", "dist-packages", "nvidia", "cuda_nvrtc", "lib");
        Directory.CreateDirectory(lib);
        string fake = Path.Combine(lib, "libnvrtc.so.12");
        File.CreateSymbolicLink(fake, NonCudaLibrary()); // a link, so the loader sees the libc it has already mapped

        var e = Assert.Throws<CudaUnavailableException>(() => CudaLibraries.Load(CudaLibrary.Nvrtc, IsolatedSearch()));
        AssertOneSentence(e.Message);
        Assert.Contains($"what was found is unusable: {fake} (it does not export nvrtcCreateProgram, so it is not NVRTC)", e.Message);
    }

    [Fact]
    public void EnvironmentOverride_ToAMissingFile_SaysTheFileDoesNotExist()
    {
        string missing = Path.Combine(_dir, "nowhere", "libnvrtc.so.12");
        using var env = new EnvScope().Set("BERT_NVRTC", missing);
        var e = Assert.Throws<CudaUnavailableException>(() => CudaLibraries.Load(CudaLibrary.Nvrtc));
        AssertOneSentence(e.Message);
        Assert.Equal(
            $"BERT_NVRTC is set to {missing}, but that file does not exist; point BERT_NVRTC at NVRTC's library (libnvrtc.so.13 or libnvrtc.so.12 or libnvrtc.so), or unset it to search the usual places.",
            e.Message);
    }

    [Theory]
    [InlineData(CudaLibrary.Nvrtc, "BERT_NVRTC", "nvrtcCreateProgram", "NVRTC")]
    [InlineData(CudaLibrary.Driver, "BERT_CUDA_DRIVER", "cuInit", "the CUDA driver")]
    [InlineData(CudaLibrary.Cublas, "BERT_CUBLAS", "cublasCreate_v2", "cuBLAS")]
    [InlineData(CudaLibrary.CublasLt, "BERT_CUBLASLT", "cublasLtCreate", "cuBLASLt")]
    public void EnvironmentOverride_ToANonCudaLibrary_SaysItDoesNotExportTheEntryPoint(CudaLibrary library, string variable, string export, string display)
    {
        string libc = NonCudaLibrary();
        using var env = new EnvScope().Set(variable, libc);
        var e = Assert.Throws<CudaUnavailableException>(() => CudaLibraries.Load(library));
        AssertOneSentence(e.Message);
        Assert.StartsWith($"{variable} is set to {libc}, but it does not export {export}, so it is not {display}; point {variable} at", e.Message);
    }

    [Fact]
    public void EnvironmentOverride_ToAFileThatIsNotALibrary_SaysTheLoaderRefusedIt()
    {
        string text = Path.Combine(_dir, "libcublas.so.12");
        File.WriteAllText(text, "not an ELF file\n");
        using var env = new EnvScope().Set("BERT_CUBLAS", text);
        var e = Assert.Throws<CudaUnavailableException>(() => CudaLibraries.Load(CudaLibrary.Cublas));
        AssertOneSentence(e.Message);
        Assert.StartsWith($"BERT_CUBLAS is set to {text}, but it could not be loaded: {text}:", e.Message);
    }

    // ---------------------------------------------------------------------------------------------------------------------
    // Error formatting

    [Fact]
    public void CudaException_NamesTheCallTheErrorNameAndTheDescription()
    {
        Assert.Equal("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)",
            new CudaException("cuMemAlloc_v2", 2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory").Message);
        Assert.Equal("cuInit failed: CUDA_ERROR_NO_DEVICE", CudaException.Format("cuInit", "CUDA_ERROR_NO_DEVICE", null));
        Assert.Equal("nvrtcVersion failed: NVRTC_ERROR_INVALID_INPUT", CudaException.Format("nvrtcVersion", "NVRTC_ERROR_INVALID_INPUT", "NVRTC_ERROR_INVALID_INPUT"));

        // Without a driver the name comes from the binding's table; with one, cuGetErrorName gives the same name plus a description.
        CudaException err = CudaDriver.Error(2, "cuMemAlloc_v2");
        Assert.StartsWith("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY", err.Message);
        Assert.Equal(("cuMemAlloc_v2", 2, "CUDA_ERROR_OUT_OF_MEMORY"), (err.Call, err.Code, err.ErrorName));
        Assert.Equal("CUDA_ERROR_ILLEGAL_ADDRESS", CudaDriver.KnownErrorName(700));
        Assert.Equal("CUDA error 12345", CudaDriver.KnownErrorName(12345));

        Assert.Equal("NVRTC_ERROR_COMPILATION", Nvrtc.KnownErrorName(6));
        Assert.Equal("nvrtcCreateProgram failed: NVRTC_ERROR_INVALID_INPUT", new NvrtcException("nvrtcCreateProgram", 3, "NVRTC_ERROR_INVALID_INPUT").Message);

        Assert.Equal("CUBLAS_STATUS_INVALID_VALUE", Cublas.KnownStatusName((int)CublasStatus.InvalidValue));
        Assert.Equal("CUBLAS_STATUS_NOT_SUPPORTED", Cublas.KnownStatusName(15));
        var ce = new CublasException("cublasGemmEx", 7, "CUBLAS_STATUS_INVALID_VALUE", null);
        Assert.Equal("cublasGemmEx failed: CUBLAS_STATUS_INVALID_VALUE", ce.Message);
        Assert.Equal(CublasStatus.InvalidValue, ce.Status);
        Assert.IsAssignableFrom<CudaException>(ce);
    }

    const string BrokenKernel = """
        extern "C" __global__ void scale(float* x, int n)
        {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) x[i] = x[i] * factor;
        }
        """;

    [Fact]
    public void NvrtcLog_FirstFailingLine_IsFoundInTheKernelSource_AndHeaderErrorsAreSkipped()
    {
        string log = """
            helpers.cuh(2): error: expected a ";"
            scale.cu(4): error: identifier "factor" is undefined

            2 errors detected in the compilation of "scale.cu".
            """;
        Assert.Equal((4, "    if (i < n) x[i] = x[i] * factor;"), Nvrtc.FirstFailingLine(log, BrokenKernel, "scale.cu"));
        Assert.Null(Nvrtc.FirstFailingLine("nothing useful", BrokenKernel, "scale.cu"));
        Assert.Equal("error: expected a \";\"", Nvrtc.FirstErrorMessage(log));

        var e = new NvrtcCompileException("scale.cu", "sm_90", "scale.cu(4): error: identifier \"factor\" is undefined\n", 4, "    if (i < n) x[i] = x[i] * factor;");
        string first = e.Message.Split('\n')[0];
        Assert.Equal("NVRTC could not compile scale.cu for sm_90: error: identifier \"factor\" is undefined at line 4: `if (i < n) x[i] = x[i] * factor;`", first.TrimEnd('\r'));
        Assert.Contains("scale.cu(4): error", e.Message);
        Assert.Equal("nvrtcCompileProgram", e.Call);
        Assert.Equal("NVRTC_ERROR_COMPILATION", e.ErrorName);
    }

    [Fact]
    public void NvrtcOptions_CarryTheArchitectureAndTheFlags()
    {
        var o = Nvrtc.Options("sm_90", fastMath: true);
        Assert.Equal(["-arch=sm_90", "-std=c++17", "-default-device", "--use_fast_math"], o);
        Assert.Equal("sm_90", Nvrtc.ArchitectureOption(o));
        Assert.Equal("compute_80", Nvrtc.ArchitectureOption(["--gpu-architecture=compute_80"]));
        Assert.Equal("sm_86", Nvrtc.ArchitectureOption(["-arch", "sm_86"]));
        Assert.Null(Nvrtc.ArchitectureOption(["-default-device"]));
        Assert.Equal("sm_89", Nvrtc.Architecture(8, 9));
    }

    // ---------------------------------------------------------------------------------------------------------------------
    // Row-major GEMM on column-major cuBLAS

    /// <summary>cuBLAS's semantics on the CPU: column-major C(m×n) = alpha·op(A)(m×k)·op(B)(k×n) + beta·C, X(i,j) at X[i + j·ld].</summary>
    static void ColumnMajorGemm(CublasOperation ta, CublasOperation tb, int m, int n, int k,
        double alpha, double[] A, int lda, double[] B, int ldb, double beta, double[] C, int ldc)
    {
        Assert.True(lda >= Math.Max(1, ta == CublasOperation.N ? m : k), "cuBLAS would reject lda");
        Assert.True(ldb >= Math.Max(1, tb == CublasOperation.N ? k : n), "cuBLAS would reject ldb");
        Assert.True(ldc >= Math.Max(1, m), "cuBLAS would reject ldc");
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                {
                    double a = ta == CublasOperation.N ? A[i + p * lda] : A[p + i * lda];
                    double b = tb == CublasOperation.N ? B[p + j * ldb] : B[j + p * ldb];
                    s += a * b;
                }
                C[i + j * ldc] = alpha * s + (beta == 0 ? 0 : beta * C[i + j * ldc]);
            }
    }

    /// <summary>The row-major definition: C(M×N) = alpha·op(A)·op(B) + beta·C, X(i,j) at X[i·ld + j].</summary>
    static void RowMajorGemm(bool tA, bool tB, int M, int N, int K, double alpha, double[] A, int lda, double[] B, int ldb, double beta, double[] C, int ldc)
    {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                double s = 0;
                for (int p = 0; p < K; p++)
                    s += (tA ? A[p * lda + i] : A[i * lda + p]) * (tB ? B[j * ldb + p] : B[p * ldb + j]);
                C[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * C[i * ldc + j]);
            }
    }

    [Fact]
    public void RowMajorToColumnMajor_SwapsOperandsAndDimensions_AndGivesTheRowMajorProduct()
    {
        var g = Cublas.RowMajorToColumnMajor(transA: true, transB: false, M: 3, N: 5, K: 4, lda: 7, ldb: 6, ldc: 9);
        Assert.Equal(new ColumnMajorGemm(CublasOperation.N, CublasOperation.T, M: 5, N: 3, K: 4, Lda: 6, Ldb: 7, Ldc: 9), g);

        var rng = new Random(7);
        int cases = 0;
        foreach (bool tA in (bool[])[false, true])
            foreach (bool tB in (bool[])[false, true])
                foreach ((int M, int N, int K) in ((int, int, int)[])[(1, 1, 1), (3, 5, 4), (7, 2, 9), (6, 6, 1), (2, 8, 5)])
                    foreach (int pad in (int[])[0, 3])
                    {
                        int lda = (tA ? M : K) + pad, ldb = (tB ? K : N) + pad, ldc = N + pad;
                        double[] A = Fill(rng, (tA ? K : M) * lda), B = Fill(rng, (tB ? N : K) * ldb), C0 = Fill(rng, M * ldc);
                        foreach ((double alpha, double beta) in ((double, double)[])[(1, 0), (-0.5, 1.5)])
                        {
                            double[] expected = (double[])C0.Clone(), got = (double[])C0.Clone();
                            RowMajorGemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, expected, ldc);
                            var m = Cublas.RowMajorToColumnMajor(tA, tB, M, N, K, lda, ldb, ldc);
                            // cuBLAS's first operand is the caller's B, its second the caller's A.
                            ColumnMajorGemm(m.TransA, m.TransB, m.M, m.N, m.K, alpha, B, m.Lda, A, m.Ldb, beta, got, m.Ldc);
                            for (int i = 0; i < got.Length; i++)
                                Assert.True(Math.Abs(got[i] - expected[i]) <= 1e-12,
                                    $"tA={tA} tB={tB} {M}x{N}x{K} pad={pad}: C[{i}] = {got[i]}, expected {expected[i]}");
                            cases++;
                        }
                    }
        Assert.Equal(80, cases);
    }

    [Fact]
    public void RowMajorToColumnMajor_RejectsStridesCublasWouldReject()
    {
        Assert.Equal("lda", Assert.Throws<ArgumentOutOfRangeException>(() => Cublas.RowMajorToColumnMajor(false, false, 4, 5, 6, 5, 5, 5)).ParamName);
        Assert.Equal("ldb", Assert.Throws<ArgumentOutOfRangeException>(() => Cublas.RowMajorToColumnMajor(false, true, 4, 5, 6, 6, 5, 5)).ParamName);
        Assert.Equal("ldc", Assert.Throws<ArgumentOutOfRangeException>(() => Cublas.RowMajorToColumnMajor(false, false, 4, 5, 6, 6, 5, 4)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => Cublas.RowMajorToColumnMajor(false, false, -1, 5, 6, 6, 5, 5));
        Cublas.RowMajorToColumnMajor(true, true, 4, 5, 6, 4, 6, 5); // transposed operands are stored K×M and N×K
    }

    static double[] Fill(Random rng, int n)
    {
        var x = new double[n];
        for (int i = 0; i < n; i++) x[i] = Math.Round(rng.NextDouble() * 4 - 2, 3);
        return x;
    }

    // ---------------------------------------------------------------------------------------------------------------------
    // cuBLASLt and launch arguments: the parts that need no GPU

    [Fact]
    public void CublasLt_EpiloguesAndLayouts_MatchTheHeader()
    {
        Assert.Equal(4u, (uint)CublasLtEpilogue.Bias);
        Assert.Equal(32u, (uint)CublasLtEpilogue.Gelu);
        Assert.Equal(36u, (uint)CublasLtEpilogue.GeluBias);
        Assert.Equal(164u, (uint)CublasLtEpilogue.GeluAuxBias);
        Assert.Equal(208u, (uint)CublasLtEpilogue.DGeluBGrad);
        Assert.Equal(CublasLtEpilogue.Bias, CublasLt.Epilogue(bias: true, gelu: false));
        Assert.Equal(CublasLtEpilogue.GeluBias, CublasLt.Epilogue(bias: true, gelu: true));
        Assert.Equal(CublasLtEpilogue.Gelu, CublasLt.Epilogue(bias: false, gelu: true));
        Assert.Equal(CublasLtEpilogue.GeluAuxBias, CublasLt.Epilogue(bias: true, gelu: true, aux: true));
        Assert.Equal(CublasLtEpilogue.Default, CublasLt.Epilogue(bias: false, gelu: false));
        Assert.Throws<ArgumentException>(() => CublasLt.Epilogue(bias: true, gelu: false, aux: true));

        Assert.Equal(7, (int)CublasLtMatmulDescAttribute.Epilogue);
        Assert.Equal(8, (int)CublasLtMatmulDescAttribute.BiasPointer);
        Assert.Equal(26, (int)CublasLtMatmulDescAttribute.BiasDataType);
        Assert.Equal(64, Unsafe.SizeOf<CublasLtMatmulAlgo>());
        Assert.Equal(96, Unsafe.SizeOf<CublasLtMatmulHeuristicResult>());

        Assert.Equal(8, CublasLt.AttributeSize(CublasLtMatmulDescAttribute.BiasPointer));
        Assert.Equal(4, CublasLt.AttributeSize(CublasLtMatmulDescAttribute.Epilogue));
        Assert.Equal(8, CublasLt.AttributeSize(CublasLtMatrixLayoutAttribute.StridedBatchOffset));
        Assert.Equal(4, CublasLt.AttributeSize(CublasLtMatrixLayoutAttribute.BatchCount));
        Assert.Equal(8, CublasLt.AttributeSize(CublasLtMatmulPreferenceAttribute.MaxWorkspaceBytes));
        var e = Assert.Throws<ArgumentException>(() => CublasLt.CheckAttributeSize<long>("Epilogue", 4));
        Assert.Contains("Epilogue takes 4 bytes, but a Int64 has 8", e.Message);

        Assert.Equal(14, (int)CudaDataType.R16BF);
        Assert.Equal(68, (int)CublasComputeType.Compute32F);
        Assert.Equal(-1, Cublas.GemmDefault);
    }

    [Fact]
    public unsafe void KernelArguments_PointToAlignedCopiesOfEachValue()
    {
        using var args = new KernelArguments(capacityBytes: 16);
        args.Add(0x1122334455667788UL).Add(7).Add(2.5f).Add((byte)3).Add(0xAABBCCDDEEFF0011UL);
        Assert.Equal(5, args.Count);
        void** p = args.Pointers;
        Assert.Equal(0x1122334455667788UL, *(ulong*)p[0]);
        Assert.Equal(7, *(int*)p[1]);
        Assert.Equal(2.5f, *(float*)p[2]);
        Assert.Equal((byte)3, *(byte*)p[3]);
        Assert.Equal(0xAABBCCDDEEFF0011UL, *(ulong*)p[4]);
        Assert.Equal(0, (long)p[4] % 8);
        args.Clear();
        Assert.Equal(0, args.Count);
    }

    // ---------------------------------------------------------------------------------------------------------------------
    // Kernel cache

    sealed class FakeCompiler
    {
        public int Calls;
        public Func<string, IReadOnlyList<string>, string, byte[]> Output = (s, o, a) => System.Text.Encoding.UTF8.GetBytes($"{a}|{string.Join(",", o)}|{s}");
        public byte[] Compile(string source, string name, IReadOnlyList<string> options, string arch)
        {
            Interlocked.Increment(ref Calls);
            return Output(source, options, arch);
        }
    }

    [Fact]
    public void KernelCache_CompilesOncePerSourceOptionsAndArchitecture_AndLoadsFromDiskLater()
    {
        var fake = new FakeCompiler();
        var cache = new KernelCache(_dir, fake.Compile, "fake-1");
        string[] opts = ["-default-device"];

        byte[] first = cache.GetOrCompile("kernel A", "a.cu", opts, "sm_90");
        Assert.Equal("sm_90|-default-device|kernel A", System.Text.Encoding.UTF8.GetString(first));
        string path = cache.PathFor("kernel A", opts, "sm_90");
        Assert.Equal(Path.Combine(_dir, "sm_90", KernelCache.Hash("fake-1", "kernel A", opts) + ".bin"), path);
        Assert.Equal(first, File.ReadAllBytes(path));

        cache.GetOrCompile("kernel A", "renamed.cu", opts, "sm_90"); // the program name is not part of the key
        Assert.Equal(1, fake.Calls);

        cache.GetOrCompile("kernel A", "a.cu", ["-default-device", "--use_fast_math"], "sm_90");
        cache.GetOrCompile("kernel A", "a.cu", opts, "sm_80");
        cache.GetOrCompile("kernel B", "a.cu", opts, "sm_90");
        Assert.Equal(4, fake.Calls);
        Assert.Equal(4, cache.Compilations);

        // A new cache (another process) over the same folder compiles nothing.
        var fake2 = new FakeCompiler();
        var again = new KernelCache(_dir, fake2.Compile, "fake-1");
        Assert.Equal(first, again.GetOrCompile("kernel A", "a.cu", opts, "sm_90"));
        Assert.Equal(0, fake2.Calls);
        Assert.Equal(1, again.DiskHits);

        // Another compiler version is another key.
        var fake3 = new FakeCompiler();
        new KernelCache(_dir, fake3.Compile, "fake-2").GetOrCompile("kernel A", "a.cu", opts, "sm_90");
        Assert.Equal(1, fake3.Calls);

        Assert.Empty(Directory.GetFiles(_dir, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void KernelCache_Hash_IsHexSha256_AndUnambiguous()
    {
        string h = KernelCache.Hash("id", "src", ["-a", "-b"]);
        Assert.Matches("^[0-9a-f]{64}$", h);
        Assert.Equal(h, KernelCache.Hash("id", "src", ["-a", "-b"]));
        Assert.NotEqual(h, KernelCache.Hash("id", "src", ["-b", "-a"]));
        Assert.NotEqual(KernelCache.Hash("id", "ab", ["c"]), KernelCache.Hash("id", "a", ["bc"]));
        Assert.NotEqual(KernelCache.Hash("id", "src", ["-a,-b"]), KernelCache.Hash("id", "src", ["-a", "-b"]));
        Assert.NotEqual(KernelCache.Hash("id", "src", []), KernelCache.Hash("id2", "src", []));
    }

    [Fact]
    public void KernelCache_WritesAtomically_ReplacingAnOldFile_AndLeavingNoTemporaryFile()
    {
        string path = Path.Combine(_dir, "sub", "x.bin");
        KernelCache.WriteAtomically(path, [1, 2, 3]);
        KernelCache.WriteAtomically(path, [4, 5]);
        Assert.Equal([4, 5], File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(Path.Combine(_dir, "sub")));

        // The target is a directory: the rename fails, the temporary file is removed, the error surfaces.
        string blocked = Path.Combine(_dir, "blocked.bin");
        Directory.CreateDirectory(blocked);
        Assert.ThrowsAny<IOException>(() => KernelCache.WriteAtomically(blocked, [1]));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void KernelCache_EmptyOrUnwritableCache_StillGivesTheImage_AndAFailedCompileIsRetried()
    {
        var fake = new FakeCompiler();
        var cache = new KernelCache(_dir, fake.Compile, "fake");
        string path = cache.PathFor("k", [], "sm_90");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, []); // a truncated file from a crash of some other writer: recompiled
        Assert.NotEmpty(cache.GetOrCompile("k", "k.cu", [], "sm_90"));
        Assert.Equal(1, fake.Calls);
        Assert.NotEmpty(File.ReadAllBytes(path));

        string blocker = Path.Combine(_dir, "file-not-dir");
        File.WriteAllText(blocker, "");
        var unwritable = new KernelCache(Path.Combine(blocker, "kernels"), fake.Compile, "fake");
        Assert.NotEmpty(unwritable.GetOrCompile("k", "k.cu", [], "sm_90"));

        var failing = new FakeCompiler { Output = (_, _, _) => throw new NvrtcCompileException("k.cu", "sm_90", "k.cu(1): error: boom", 1, "k") };
        var c2 = new KernelCache(Path.Combine(_dir, "c2"), failing.Compile, "fake");
        Assert.Throws<NvrtcCompileException>(() => c2.GetOrCompile("k", "k.cu", [], "sm_90"));
        Assert.Throws<NvrtcCompileException>(() => c2.GetOrCompile("k", "k.cu", [], "sm_90"));
        Assert.Equal(2, failing.Calls);
        Assert.False(File.Exists(c2.PathFor("k", [], "sm_90")));
    }

    [Fact]
    public void KernelCache_ConcurrentRequestsForOneKernel_CompileOnce()
    {
        var fake = new FakeCompiler();
        fake.Output = (s, o, a) => { Thread.Sleep(50); return [1, 2, 3]; };
        var cache = new KernelCache(_dir, fake.Compile, "fake");
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, _ => cache.GetOrCompile("same", "s.cu", [], "sm_90"));
        Assert.Equal(1, fake.Calls);
    }

    [Fact]
    public void KernelCache_DefaultDirectory_FollowsTheEnvironment()
    {
        Assert.Equal("/x/cache", KernelCache.DefaultDirectory(n => n switch { "BERT_KERNEL_CACHE" => "/x/cache", "XDG_CACHE_HOME" => "/xdg", _ => "/home/u" }));
        Assert.Equal("/xdg/bert/kernels", KernelCache.DefaultDirectory(n => n switch { "XDG_CACHE_HOME" => "/xdg", "HOME" => "/home/u", _ => null }));
        Assert.Equal("/home/u/.cache/bert/kernels", KernelCache.DefaultDirectory(n => n == "HOME" ? "/home/u" : n == "XDG_CACHE_HOME" ? " " : null));
        Assert.Throws<ArgumentException>(() => new KernelCache(_dir, new FakeCompiler().Compile, "f").PathFor("s", [], "../sm_90"));
    }

    // ---------------------------------------------------------------------------------------------------------------------
    // On a GPU: NVRTC, launches, graphs, cuBLAS and cuBLASLt against the CPU

    const string AxpyKernel = """
        extern "C" __global__ void axpy(float a, const float* x, float* y, int n)
        {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) y[i] = a * x[i] + y[i];
        }

        extern "C" __global__ void add_one(float* y, int n)
        {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) y[i] += 1.0f;
        }
        """;

    static string Target(CudaDevice d) => Nvrtc.TargetArchitecture(d.ComputeCapabilityMajor, d.ComputeCapabilityMinor);

    static float[] RandomFloats(Random rng, int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

    static ulong Upload(float[] data, nint stream)
    {
        ulong p = CudaDriver.MemAlloc((ulong)data.Length * sizeof(float));
        CudaDriver.MemcpyHtoDAsync<float>(p, data, stream);
        return p;
    }

    static float[] Download(ulong p, int n, nint stream)
    {
        var h = new float[n];
        CudaDriver.MemcpyDtoHAsync<float>(h, p, stream);
        CudaDriver.StreamSynchronize(stream);
        return h;
    }

    [SkippableGpuFact]
    public void Gpu_Device_IsDescribed()
    {
        CudaDevice d = Gpu.Device;
        string s = d.Describe();
        Assert.Contains(d.Name, s);
        Assert.Contains(d.Architecture, s);
        Assert.True(d.MultiprocessorCount > 0 && d.TotalMemory > 0 && d.DriverVersion >= 11000, s);
        var (free, total) = CudaDriver.MemGetInfo();
        Assert.True(free > 0 && free <= total, $"free {free}, total {total}");
    }

    [SkippableGpuFact]
    public void Gpu_NvrtcKernel_ThroughTheCache_RunsAndMatchesTheCpu_AndEventsTimeIt()
    {
        CudaDevice d = Gpu.Device;
        var (maj, min) = Nvrtc.Version();
        Assert.True(maj >= 11, $"NVRTC {maj}.{min}");
        var cache = new KernelCache(Path.Combine(_dir, "kernels"));
        string arch = Target(d);
        byte[] image = cache.GetOrCompile(AxpyKernel, "axpy.cu", Nvrtc.Options(arch).Skip(1).ToArray(), arch);
        Assert.Equal(1, cache.Compilations);
        Assert.Equal(image, new KernelCache(Path.Combine(_dir, "kernels")).GetOrCompile(AxpyKernel, "axpy.cu", Nvrtc.Options(arch).Skip(1).ToArray(), arch));

        nint module = CudaDriver.ModuleLoadData(image);
        nint axpy = CudaDriver.ModuleGetFunction(module, "axpy");
        nint stream = CudaDriver.StreamCreate();
        nint start = CudaDriver.EventCreate(), stop = CudaDriver.EventCreate();
        const int n = 10_000;
        var rng = new Random(1);
        float[] x = RandomFloats(rng, n), y = RandomFloats(rng, n);
        ulong dx = Upload(x, stream), dy = Upload(y, stream);
        try
        {
            using var args = new KernelArguments().Add(2.5f).Add(dx).Add(dy).Add(n);
            CudaDriver.EventRecord(start, stream);
            CudaDriver.LaunchKernel(axpy, (uint)((n + 255) / 256), 256, 0, stream, args);
            CudaDriver.EventRecord(stop, stream);
            float[] got = Download(dy, n, stream);
            CudaDriver.EventSynchronize(stop);
            Assert.True(CudaDriver.EventElapsedTime(start, stop) >= 0);
            for (int i = 0; i < n; i++)
                Assert.True(Math.Abs(got[i] - MathF.FusedMultiplyAdd(2.5f, x[i], y[i])) <= 1e-6f, $"y[{i}] = {got[i]}");

            var e = Assert.Throws<CudaException>(() => CudaDriver.ModuleGetFunction(module, "no_such_kernel"));
            Assert.StartsWith("cuModuleGetFunction failed: CUDA_ERROR_NOT_FOUND", e.Message);
        }
        finally
        {
            CudaDriver.MemFree(dx); CudaDriver.MemFree(dy);
            CudaDriver.EventDestroy(start); CudaDriver.EventDestroy(stop);
            CudaDriver.StreamDestroy(stream);
            CudaDriver.ModuleUnload(module);
        }
    }

    [SkippableGpuFact]
    public void Gpu_NvrtcCompileError_GivesTheLogAndTheFailingLine()
    {
        CudaDevice d = Gpu.Device;
        var e = Assert.Throws<NvrtcCompileException>(() => Nvrtc.Compile(BrokenKernel, "scale.cu", Nvrtc.Options(Target(d))));
        Assert.Equal(4, e.FailingLine);
        Assert.Contains("factor", e.FailingSource);
        Assert.Contains("scale.cu(4)", e.Log);
        Assert.StartsWith($"NVRTC could not compile scale.cu for {Target(d)}: ", e.Message);
    }

    [SkippableGpuFact]
    public void Gpu_CapturedGraph_ReplaysTheLaunch()
    {
        CudaDevice d = Gpu.Device;
        string arch = Target(d);
        NvrtcOutput compiled = Nvrtc.Compile(AxpyKernel, "axpy.cu", Nvrtc.Options(arch));
        Assert.Equal(arch.StartsWith("sm_"), compiled.IsCubin);
        nint module = CudaDriver.ModuleLoadData(compiled.Image);
        nint addOne = CudaDriver.ModuleGetFunction(module, "add_one");
        nint stream = CudaDriver.StreamCreate();
        const int n = 1000;
        ulong dy = CudaDriver.MemAlloc(n * sizeof(float));
        try
        {
            CudaDriver.MemsetD8Async(dy, 0, n * sizeof(float), stream); // 0.0f
            CudaDriver.StreamSynchronize(stream);
            CudaDriver.StreamBeginCapture(stream);
            using (var args = new KernelArguments().Add(dy).Add(n))
                CudaDriver.LaunchKernel(addOne, (n + 127) / 128, 128, 0, stream, args);
            nint graph = CudaDriver.StreamEndCapture(stream);
            nint exec = CudaDriver.GraphInstantiate(graph);
            CudaDriver.GraphLaunch(exec, stream);
            CudaDriver.GraphLaunch(exec, stream);
            CudaDriver.GraphLaunch(exec, stream);
            float[] got = Download(dy, n, stream);
            Assert.All(got, v => Assert.Equal(3f, v));
            CudaDriver.GraphExecDestroy(exec);
            CudaDriver.GraphDestroy(graph);
        }
        finally
        {
            CudaDriver.MemFree(dy);
            CudaDriver.StreamDestroy(stream);
            CudaDriver.ModuleUnload(module);
        }
    }

    [SkippableGpuFact]
    public void Gpu_AllocatingTooMuch_NamesTheCallAndTheError()
    {
        _ = Gpu.Device;
        var e = Assert.Throws<CudaException>(() => CudaDriver.MemAlloc(1UL << 50));
        Assert.Equal("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)", e.Message);
    }

    [SkippableGpuFact]
    public void Gpu_CublasRowMajorGemm_Fp32_MatchesTheCpu()
    {
        _ = Gpu.Device;
        nint stream = CudaDriver.StreamCreate();
        using var blas = new Cublas();
        blas.SetStream(stream);
        blas.SetMathMode(CublasMath.Pedantic);
        Assert.True(blas.Version > 0);
        var rng = new Random(3);
        foreach (bool tA in (bool[])[false, true])
            foreach (bool tB in (bool[])[false, true])
                foreach ((int M, int N, int K) in ((int, int, int)[])[(1, 1, 1), (37, 53, 29), (64, 128, 96)])
                {
                    int lda = (tA ? M : K) + 2, ldb = (tB ? K : N) + 1, ldc = N + 3;
                    float[] A = RandomFloats(rng, (tA ? K : M) * lda), B = RandomFloats(rng, (tB ? N : K) * ldb), C = RandomFloats(rng, M * ldc);
                    float[] expected = (float[])C.Clone();
                    ManagedGemm.Run<float>(tA, tB, M, N, K, 0.75f, A, lda, B, ldb, -0.5f, expected, ldc);
                    ulong dA = Upload(A, stream), dB = Upload(B, stream), dC = Upload(C, stream);
                    blas.Gemm(tA, tB, M, N, K, 0.75f, dA, lda, dB, ldb, -0.5f, dC, ldc, CudaDataType.R32F);
                    float[] got = Download(dC, C.Length, stream);
                    CudaDriver.MemFree(dA); CudaDriver.MemFree(dB); CudaDriver.MemFree(dC);
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < ldc; j++)
                        {
                            int at = i * ldc + j;
                            float want = j < N ? expected[at] : C[at]; // the padding past N is untouched
                            Assert.True(Math.Abs(got[at] - want) <= 1e-4f * (1 + Math.Abs(want)),
                                $"tA={tA} tB={tB} {M}x{N}x{K}: C[{i},{j}] = {got[at]}, expected {want}");
                        }
                }
        CudaDriver.StreamDestroy(stream);
    }

    static ushort ToBf16(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    static float FromBf16(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    [SkippableGpuFact]
    public void Gpu_CublasStridedBatchedGemm_Bf16InputsFp32Output_MatchesTheCpu()
    {
        _ = Gpu.Device;
        nint stream = CudaDriver.StreamCreate();
        using var blas = new Cublas();
        blas.SetStream(stream);
        const int batch = 3, M = 24, N = 40, K = 72;
        var rng = new Random(5);
        // Q·Kᵀ-like: A is M×K, B is stored N×K and used transposed.
        ushort[] A = RandomFloats(rng, batch * M * K).Select(ToBf16).ToArray(), B = RandomFloats(rng, batch * N * K).Select(ToBf16).ToArray();
        ulong dA = CudaDriver.MemAlloc((ulong)A.Length * 2), dB = CudaDriver.MemAlloc((ulong)B.Length * 2), dC = CudaDriver.MemAlloc(batch * M * N * 4);
        CudaDriver.MemcpyHtoDAsync<ushort>(dA, A, stream);
        CudaDriver.MemcpyHtoDAsync<ushort>(dB, B, stream);
        blas.GemmStridedBatched(false, true, M, N, K, 1f, dA, K, M * K, dB, K, N * K, 0f, dC, N, M * N, batch, CudaDataType.R16BF, CudaDataType.R32F);
        float[] got = Download(dC, batch * M * N, stream);
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++)
                {
                    double s = 0;
                    for (int p = 0; p < K; p++) s += (double)FromBf16(A[b * M * K + i * K + p]) * FromBf16(B[b * N * K + j * K + p]);
                    float g = got[b * M * N + i * N + j];
                    Assert.True(Math.Abs(g - s) <= 1e-3 * (1 + Math.Abs(s)), $"batch {b}: C[{i},{j}] = {g}, expected {s}");
                }
        CudaDriver.MemFree(dA); CudaDriver.MemFree(dB); CudaDriver.MemFree(dC);
        CudaDriver.StreamDestroy(stream);
    }

    /// <summary>CUBLAS_COMPUTE_32F_FAST_16BF on fp32 operands and output (BERT_CUDA_BF16=cublas): the product of the operands
    /// rounded to bf16 where cuBLAS takes the tensor-core path, the exact one where it may not; never anything else. The
    /// operands carry bits below bf16's mantissa (2⁻⁹ relative) so the two differ by far more than the tolerance.</summary>
    [SkippableGpuFact]
    public void Gpu_CublasFast16BF_Fp32Operands_GiveTheBf16RoundedOrExactProduct()
    {
        _ = Gpu.Device;
        nint stream = CudaDriver.StreamCreate();
        using var blas = new Cublas();
        blas.SetStream(stream);
        blas.SetMathMode(CublasMath.Tf32TensorOp);
        const int M = 64, N = 96, K = 128;
        var rng = new Random(8);
        // bf16 values plus 2⁻⁹ of themselves: below half an ulp of bf16, so nearest-even and truncation both drop it.
        float Off(float x) => FromBf16(ToBf16(x)) * (1 + 1f / 512);
        float[] A = RandomFloats(rng, M * K).Select(x => Off(Math.Abs(x) + 0.5f)).ToArray(), B = RandomFloats(rng, K * N).Select(x => Off(Math.Abs(x) + 0.5f)).ToArray();
        ulong dA = Upload(A, stream), dB = Upload(B, stream), dC = CudaDriver.MemAlloc(M * N * 4);
        blas.Gemm(false, false, M, N, K, 1f, dA, K, dB, N, 0f, dC, N, CudaDataType.R32F, computeType: CublasComputeType.Compute32FFast16BF);
        float[] got = Download(dC, M * N, stream);
        CudaDriver.MemFree(dA); CudaDriver.MemFree(dB); CudaDriver.MemFree(dC);
        CudaDriver.StreamDestroy(stream);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                double exact = 0, r16 = 0;
                for (int p = 0; p < K; p++)
                {
                    exact += (double)A[i * K + p] * B[p * N + j];
                    r16 += (double)FromBf16(ToBf16(A[i * K + p])) * FromBf16(ToBf16(B[p * N + j]));
                }
                double g = got[i * N + j];
                Assert.True(exact - r16 > 2e-3 * exact, "the operands were meant to differ from their bf16 roundings");
                bool isRounded = Math.Abs(g - r16) <= 1e-5 * r16, isExact = Math.Abs(g - exact) <= 1e-5 * exact;
                Assert.True(isRounded || isExact, $"C[{i},{j}] = {g}: neither the bf16-rounded product {r16} nor the exact {exact}");
            }
    }

    /// <summary>The pointer-array batched product as attention uses it: each head's Q and K rows 3C apart inside one B×T×3C
    /// block, the scores of (b, h) at their own place, β = 1 adding into what C held.</summary>
    [SkippableGpuFact]
    public void Gpu_CublasPointerArrayBatchedGemm_HeadsInsideTheProjection_MatchesTheCpu()
    {
        _ = Gpu.Device;
        nint stream = CudaDriver.StreamCreate();
        using var blas = new Cublas();
        blas.SetStream(stream);
        const int Bt = 2, H = 3, T = 5, D = 8, C = H * D;
        var rng = new Random(6);
        float[] qkv = RandomFloats(rng, Bt * T * 3 * C), c0 = RandomFloats(rng, Bt * H * T * T);
        ulong dQkv = Upload(qkv, stream), dC = Upload(c0, stream);
        ulong[] Pointers(ulong at, long batchStride, long headStride) =>
            Enumerable.Range(0, Bt * H).Select(i => at + (ulong)(i / H * batchStride + i % H * headStride)).ToArray();
        ulong UploadPointers(ulong[] p) { ulong d = CudaDriver.MemAlloc((ulong)p.Length * 8); CudaDriver.MemcpyHtoDAsync<ulong>(d, p, stream); return d; }
        ulong q = UploadPointers(Pointers(dQkv, T * 3 * C * 4, D * 4)), k = UploadPointers(Pointers(dQkv + C * 4, T * 3 * C * 4, D * 4));
        ulong c = UploadPointers(Pointers(dC, H * T * T * 4, T * T * 4));
        blas.GemmBatched(false, true, T, T, D, 0.5f, q, 3 * C, k, 3 * C, 1f, c, T, Bt * H, CudaDataType.R32F);
        float[] got = Download(dC, Bt * H * T * T, stream);
        for (int b = 0; b < Bt; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < T; i++)
                    for (int j = 0; j < T; j++)
                    {
                        double s = 0;
                        for (int p = 0; p < D; p++) s += (double)qkv[(b * T + i) * 3 * C + h * D + p] * qkv[(b * T + j) * 3 * C + C + h * D + p];
                        int at = ((b * H + h) * T + i) * T + j;
                        double want = 0.5 * s + c0[at];
                        Assert.True(Math.Abs(got[at] - want) <= 1e-5 * (1 + Math.Abs(want)), $"head ({b},{h}): C[{i},{j}] = {got[at]}, expected {want}");
                    }
        foreach (ulong d in new[] { dQkv, dC, q, k, c }) CudaDriver.MemFree(d);
        CudaDriver.StreamDestroy(stream);
    }

    [SkippableGpuFact]
    public void Gpu_CublasLtMatmul_WithBiasAndGeluEpilogue_MatchesTheCpu()
    {
        _ = Gpu.Device;
        // Row-major Y(M×N) = gelu(X(M×K)·Wᵀ + b), W stored N×K like a Linear layer. Column-major: D = Yᵀ (N×M, ld N) = W·Xᵀ,
        // A = W seen as K×N column-major, transposed; B = X seen as K×M, not transposed; the bias has one value per row of D.
        const int M = 33, N = 48, K = 64;
        var rng = new Random(9);
        float[] X = RandomFloats(rng, M * K), W = RandomFloats(rng, N * K), bias = RandomFloats(rng, N);
        nint stream = CudaDriver.StreamCreate();
        ulong dX = Upload(X, stream), dW = Upload(W, stream), dBias = Upload(bias, stream), dY = CudaDriver.MemAlloc(M * N * 4);
        const ulong workspaceBytes = 4 << 20;
        ulong workspace = CudaDriver.MemAlloc(workspaceBytes);
        using var lt = new CublasLt();
        nint desc = CublasLt.MatmulDescCreate(CublasComputeType.Compute32F, CudaDataType.R32F);
        CublasLt.MatmulDescSetAttribute(desc, CublasLtMatmulDescAttribute.TransA, (int)CublasOperation.T);
        CublasLt.MatmulDescSetAttribute(desc, CublasLtMatmulDescAttribute.TransB, (int)CublasOperation.N);
        CublasLt.MatmulDescSetAttribute(desc, CublasLtMatmulDescAttribute.Epilogue, (uint)CublasLt.Epilogue(bias: true, gelu: true));
        CublasLt.MatmulDescSetAttribute(desc, CublasLtMatmulDescAttribute.BiasPointer, dBias);
        nint aDesc = CublasLt.MatrixLayoutCreate(CudaDataType.R32F, K, N, K);
        nint bDesc = CublasLt.MatrixLayoutCreate(CudaDataType.R32F, K, M, K);
        nint dDesc = CublasLt.MatrixLayoutCreate(CudaDataType.R32F, N, M, N);
        nint pref = CublasLt.MatmulPreferenceCreate();
        CublasLt.MatmulPreferenceSetAttribute(pref, CublasLtMatmulPreferenceAttribute.MaxWorkspaceBytes, workspaceBytes);
        CublasLtMatmulHeuristicResult[] algos = lt.AlgoGetHeuristic(desc, aDesc, bDesc, dDesc, dDesc, pref, 4);
        Assert.NotEmpty(algos);
        lt.Matmul(desc, 1f, dW, aDesc, dX, bDesc, 0f, dY, dDesc, dY, dDesc, algos[0].Algo, workspace, workspaceBytes, stream);
        float[] got = Download(dY, M * N, stream);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                double z = bias[j];
                for (int p = 0; p < K; p++) z += (double)X[i * K + p] * W[j * K + p];
                double gelu = 0.5 * z * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (z + 0.044715 * z * z * z)));
                Assert.True(Math.Abs(got[i * N + j] - gelu) <= 2e-3 * (1 + Math.Abs(gelu)), $"Y[{i},{j}] = {got[i * N + j]}, expected {gelu}");
            }
        CublasLt.MatmulPreferenceDestroy(pref);
        CublasLt.MatrixLayoutDestroy(aDesc); CublasLt.MatrixLayoutDestroy(bDesc); CublasLt.MatrixLayoutDestroy(dDesc);
        CublasLt.MatmulDescDestroy(desc);
        foreach (ulong p in (ulong[])[dX, dW, dBias, dY, workspace]) CudaDriver.MemFree(p);
        CudaDriver.StreamDestroy(stream);
    }
}
