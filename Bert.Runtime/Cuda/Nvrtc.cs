using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace Bert.Runtime.Cuda;

/// <summary>An NVRTC call failed; the message names the call and the nvrtcResult, e.g. "nvrtcCreateProgram failed: NVRTC_ERROR_INVALID_INPUT".</summary>
public class NvrtcException : CudaException
{
    /// <param name="detail">Appended to the message, e.g. the options and the log.</param>
    public NvrtcException(string call, int code, string errorName, string? detail = null)
        : base(call, code, errorName, null, Format(call, errorName, null) + detail) { }

    private protected NvrtcException(string call, int code, string errorName, string message, bool _)
        : base(call, code, errorName, null, message) { }
}

/// <summary>NVRTC rejected a kernel source: the message gives the program, the architecture, the first error with the source line
/// it points at, then the whole log.</summary>
public sealed class NvrtcCompileException : NvrtcException
{
    public NvrtcCompileException(string programName, string architecture, string log, int? failingLine, string? failingSource)
        : base("nvrtcCompileProgram", 6, "NVRTC_ERROR_COMPILATION", Describe(programName, architecture, log, failingLine, failingSource), true)
    {
        ProgramName = programName; Architecture = architecture; Log = log; FailingLine = failingLine; FailingSource = failingSource;
    }

    public string ProgramName { get; }
    public string Architecture { get; }
    /// <summary>NVRTC's program log.</summary>
    public string Log { get; }
    /// <summary>1-based line of the first error, when the log names one.</summary>
    public int? FailingLine { get; }
    /// <summary>That line of the kernel source.</summary>
    public string? FailingSource { get; }

    private static string Describe(string name, string arch, string log, int? line, string? text)
    {
        string first = Nvrtc.FirstErrorMessage(log) ?? "see the log";
        string where = line is { } l ? $" at line {l}: `{text?.Trim()}`" : "";
        return $"NVRTC could not compile {name} for {arch}: {first}{where}{Environment.NewLine}{log.TrimEnd()}";
    }
}

/// <summary>What <see cref="Nvrtc.Compile"/> produced: a CUBIN when an -arch=sm_XX option was given, else NUL-terminated PTX.</summary>
public sealed record NvrtcOutput(byte[] Image, bool IsCubin, string Log);

/// <summary>Thin bindings to NVRTC (libnvrtc.so.13 / .12) through function pointers, and a compile helper.</summary>
public static unsafe class Nvrtc
{
    private sealed class Api
    {
        public required LoadedCudaLibrary Library;
        public delegate* unmanaged[Cdecl]<nint*, byte*, byte*, int, byte**, byte**, int> nvrtcCreateProgram;
        public delegate* unmanaged[Cdecl]<nint, int, byte**, int> nvrtcCompileProgram;
        public delegate* unmanaged[Cdecl]<nint, nuint*, int> nvrtcGetPTXSize;
        public delegate* unmanaged[Cdecl]<nint, byte*, int> nvrtcGetPTX;
        public delegate* unmanaged[Cdecl]<nint, nuint*, int> nvrtcGetCUBINSize;
        public delegate* unmanaged[Cdecl]<nint, byte*, int> nvrtcGetCUBIN;
        public delegate* unmanaged[Cdecl]<nint, nuint*, int> nvrtcGetProgramLogSize;
        public delegate* unmanaged[Cdecl]<nint, byte*, int> nvrtcGetProgramLog;
        public delegate* unmanaged[Cdecl]<nint*, int> nvrtcDestroyProgram;
        public delegate* unmanaged[Cdecl]<int, byte*> nvrtcGetErrorString;
        public delegate* unmanaged[Cdecl]<int*, int*, int> nvrtcVersion;
        public delegate* unmanaged[Cdecl]<int*, int> nvrtcGetNumSupportedArchs; // optional (NVRTC 11.2+)
        public delegate* unmanaged[Cdecl]<int*, int> nvrtcGetSupportedArchs;    // optional
    }

    private static Api? _api;
    private static readonly object Gate = new();
    private static Api A => Volatile.Read(ref _api) ?? LoadApi();

    /// <summary>Opens NVRTC (see <see cref="CudaLibraries"/>); throws <see cref="CudaUnavailableException"/>.</summary>
    public static LoadedCudaLibrary Load() => A.Library;

    private static Api LoadApi()
    {
        lock (Gate)
        {
            if (_api != null) return _api;
            LoadedCudaLibrary lib = CudaLibraries.Get(CudaLibrary.Nvrtc);
            var a = new Api
            {
                Library = lib,
                nvrtcCreateProgram = (delegate* unmanaged[Cdecl]<nint*, byte*, byte*, int, byte**, byte**, int>)lib.GetExport("nvrtcCreateProgram"),
                nvrtcCompileProgram = (delegate* unmanaged[Cdecl]<nint, int, byte**, int>)lib.GetExport("nvrtcCompileProgram"),
                nvrtcGetPTXSize = (delegate* unmanaged[Cdecl]<nint, nuint*, int>)lib.GetExport("nvrtcGetPTXSize"),
                nvrtcGetPTX = (delegate* unmanaged[Cdecl]<nint, byte*, int>)lib.GetExport("nvrtcGetPTX"),
                nvrtcGetCUBINSize = (delegate* unmanaged[Cdecl]<nint, nuint*, int>)lib.GetExport("nvrtcGetCUBINSize"),
                nvrtcGetCUBIN = (delegate* unmanaged[Cdecl]<nint, byte*, int>)lib.GetExport("nvrtcGetCUBIN"),
                nvrtcGetProgramLogSize = (delegate* unmanaged[Cdecl]<nint, nuint*, int>)lib.GetExport("nvrtcGetProgramLogSize"),
                nvrtcGetProgramLog = (delegate* unmanaged[Cdecl]<nint, byte*, int>)lib.GetExport("nvrtcGetProgramLog"),
                nvrtcDestroyProgram = (delegate* unmanaged[Cdecl]<nint*, int>)lib.GetExport("nvrtcDestroyProgram"),
                nvrtcGetErrorString = (delegate* unmanaged[Cdecl]<int, byte*>)lib.GetExport("nvrtcGetErrorString"),
                nvrtcVersion = (delegate* unmanaged[Cdecl]<int*, int*, int>)lib.GetExport("nvrtcVersion"),
                nvrtcGetNumSupportedArchs = (delegate* unmanaged[Cdecl]<int*, int>)lib.TryGetExport("nvrtcGetNumSupportedArchs"),
                nvrtcGetSupportedArchs = (delegate* unmanaged[Cdecl]<int*, int>)lib.TryGetExport("nvrtcGetSupportedArchs"),
            };
            Volatile.Write(ref _api, a);
            return a;
        }
    }

    private static void Check(int result, string call)
    {
        if (result != 0) throw new NvrtcException(call, result, ErrorName(result));
    }

    /// <summary>nvrtcGetErrorString (which gives the enum's name, e.g. "NVRTC_ERROR_COMPILATION"), else this binding's table.</summary>
    public static string ErrorName(int result)
    {
        if (Volatile.Read(ref _api) is { } a && a.nvrtcGetErrorString(result) is var s && s != null)
            return Marshal.PtrToStringUTF8((nint)s) ?? KnownErrorName(result);
        return KnownErrorName(result);
    }

    /// <summary>The nvrtcResult names of nvrtc.h.</summary>
    public static string KnownErrorName(int result) => result switch
    {
        0 => "NVRTC_SUCCESS",
        1 => "NVRTC_ERROR_OUT_OF_MEMORY",
        2 => "NVRTC_ERROR_PROGRAM_CREATION_FAILURE",
        3 => "NVRTC_ERROR_INVALID_INPUT",
        4 => "NVRTC_ERROR_INVALID_PROGRAM",
        5 => "NVRTC_ERROR_INVALID_OPTION",
        6 => "NVRTC_ERROR_COMPILATION",
        7 => "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE",
        8 => "NVRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION",
        9 => "NVRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION",
        10 => "NVRTC_ERROR_NAME_EXPRESSION_NOT_VALID",
        11 => "NVRTC_ERROR_INTERNAL_ERROR",
        _ => $"NVRTC error {result}",
    };

    /// <summary>nvrtcVersion, e.g. (12, 4).</summary>
    public static (int Major, int Minor) Version()
    {
        int major, minor;
        Check(A.nvrtcVersion(&major, &minor), "nvrtcVersion");
        return (major, minor);
    }

    /// <summary>The SM versions this NVRTC can generate code for (e.g. 75, 80, 86, 89, 90…), or empty when it cannot say.</summary>
    public static int[] SupportedArchitectures()
    {
        Api a = A;
        if (a.nvrtcGetNumSupportedArchs == null || a.nvrtcGetSupportedArchs == null) return [];
        int n;
        Check(a.nvrtcGetNumSupportedArchs(&n), "nvrtcGetNumSupportedArchs");
        var archs = new int[n];
        fixed (int* p = archs) Check(a.nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
        return archs;
    }

    /// <summary>The -arch value for a device of compute capability major.minor: its own sm_XY (a CUBIN) when this NVRTC supports it
    /// or cannot say, else PTX for the newest older architecture it supports (compute_XY, which the driver compiles at load).</summary>
    public static string TargetArchitecture(int major, int minor)
    {
        int sm = major * 10 + minor;
        int[] supported = SupportedArchitectures();
        if (supported.Length == 0 || supported.Contains(sm)) return Architecture(major, minor);
        int[] older = supported.Where(a => a <= sm).ToArray();
        if (older.Length == 0)
            throw new CudaUnavailableException(
                $"NVRTC {Version().Major}.{Version().Minor} at {Load().Path} cannot generate code for sm_{sm} (it supports sm_{supported.Min()} to sm_{supported.Max()}); install a CUDA toolkit that supports this GPU, or set BERT_NVRTC to its libnvrtc's path.");
        return $"compute_{older.Max()}";
    }

    /// <summary>"sm_90" for compute capability 9.0.</summary>
    public static string Architecture(int major, int minor) => $"sm_{major}{minor}";

    /// <summary>The usual options: -arch=&lt;architecture&gt; (sm_XX gives a CUBIN, compute_XX gives PTX), -default-device (functions
    /// without an execution-space annotation are device functions), --use_fast_math when asked, -std=c++17, then any extras.</summary>
    public static List<string> Options(string architecture, bool fastMath = false, bool defaultDevice = true, params string[] extra)
    {
        var o = new List<string> { "-arch=" + architecture, "-std=c++17" };
        if (defaultDevice) o.Add("-default-device");
        if (fastMath) o.Add("--use_fast_math");
        o.AddRange(extra);
        return o;
    }

    /// <summary>Compiles CUDA C++ source. Returns the CUBIN when the options hold -arch=sm_XX (or --gpu-architecture=sm_XX), else PTX
    /// (NUL-terminated, ready for cuModuleLoadData). A compile error throws <see cref="NvrtcCompileException"/> with the log and the
    /// source line of the first error; other failures throw <see cref="NvrtcException"/>.</summary>
    public static NvrtcOutput Compile(string source, string programName, IReadOnlyList<string> options)
    {
        Api a = A;
        string arch = ArchitectureOption(options) ?? "(NVRTC's default architecture)";
        bool wantCubin = arch.StartsWith("sm_", StringComparison.Ordinal);
        byte[] src = CudaDriver.NulTerminated(source), name = CudaDriver.NulTerminated(programName);
        byte[][] opts = options.Select(CudaDriver.NulTerminated).ToArray();
        var handles = new GCHandle[opts.Length];
        nint prog = 0;
        try
        {
            fixed (byte* ps = src) fixed (byte* pn = name)
                Check(a.nvrtcCreateProgram(&prog, ps, pn, 0, null, null), "nvrtcCreateProgram");
            byte** optPtrs = stackalloc byte*[Math.Max(1, opts.Length)];
            for (int i = 0; i < opts.Length; i++)
            {
                handles[i] = GCHandle.Alloc(opts[i], GCHandleType.Pinned);
                optPtrs[i] = (byte*)handles[i].AddrOfPinnedObject();
            }
            int result = a.nvrtcCompileProgram(prog, opts.Length, optPtrs);
            string log = ProgramLog(a, prog);
            if (result == 6)
            {
                (int line, string text)? failing = FirstFailingLine(log, source, programName);
                throw new NvrtcCompileException(programName, arch, log, failing?.line, failing?.text);
            }
            if (result != 0)
                throw new NvrtcException("nvrtcCompileProgram", result, ErrorName(result),
                    $" for {programName} with options [{string.Join(" ", options)}]" + (log.Trim().Length > 0 ? Environment.NewLine + log.TrimEnd() : ""));

            nuint size;
            if (wantCubin)
            {
                Check(a.nvrtcGetCUBINSize(prog, &size), "nvrtcGetCUBINSize");
                if (size > 0)
                {
                    var cubin = new byte[(int)size];
                    fixed (byte* p = cubin) Check(a.nvrtcGetCUBIN(prog, p), "nvrtcGetCUBIN");
                    return new NvrtcOutput(cubin, true, log);
                }
            }
            Check(a.nvrtcGetPTXSize(prog, &size), "nvrtcGetPTXSize");
            var ptx = new byte[(int)size]; // the size includes the terminating NUL
            fixed (byte* p = ptx) Check(a.nvrtcGetPTX(prog, p), "nvrtcGetPTX");
            return new NvrtcOutput(ptx, false, log);
        }
        finally
        {
            foreach (GCHandle h in handles) if (h.IsAllocated) h.Free();
            if (prog != 0) a.nvrtcDestroyProgram(&prog);
        }
    }

    private static string ProgramLog(Api a, nint prog)
    {
        nuint size;
        if (a.nvrtcGetProgramLogSize(prog, &size) != 0 || size <= 1) return "";
        var buf = new byte[(int)size];
        fixed (byte* p = buf) if (a.nvrtcGetProgramLog(prog, p) != 0) return "";
        return Encoding.UTF8.GetString(buf, 0, Math.Max(0, buf.Length - 1));
    }

    /// <summary>The value of -arch=X / --gpu-architecture=X / -arch X among the options, or null.</summary>
    public static string? ArchitectureOption(IReadOnlyList<string> options)
    {
        for (int i = 0; i < options.Count; i++)
        {
            string o = options[i];
            foreach (string prefix in (string[])["-arch=", "--gpu-architecture=", "-arch ", "--gpu-architecture "])
                if (o.StartsWith(prefix, StringComparison.Ordinal)) return o[prefix.Length..].Trim();
            if ((o == "-arch" || o == "--gpu-architecture") && i + 1 < options.Count) return options[i + 1].Trim();
        }
        return null;
    }

    private static readonly Regex ErrorLine = new(@"^(?<file>.*?)\((?<line>\d+)\): (?:catastrophic )?error", RegexOptions.Multiline | RegexOptions.CultureInvariant);

    /// <summary>The 1-based line number and text of the first error NVRTC reports in <paramref name="programName"/>
    /// (log lines look like "kernel.cu(12): error: identifier "x" is undefined"), or null when the log names none.</summary>
    public static (int Line, string Text)? FirstFailingLine(string log, string source, string programName)
    {
        foreach (Match m in ErrorLine.Matches(log))
        {
            string file = m.Groups["file"].Value.Trim();
            if (file.Length > 0 && file != programName && !programName.EndsWith(file, StringComparison.Ordinal) && !file.EndsWith(programName, StringComparison.Ordinal))
                continue; // an error inside an included header
            int line = int.Parse(m.Groups["line"].Value, System.Globalization.CultureInfo.InvariantCulture);
            string[] lines = source.Split('\n');
            string text = line >= 1 && line <= lines.Length ? lines[line - 1].TrimEnd('\r') : "";
            return (line, text);
        }
        return null;
    }

    /// <summary>The first error of a log without its "file(line): " prefix, e.g. "error: identifier "x" is undefined", or null.</summary>
    public static string? FirstErrorMessage(string log)
    {
        Match m = ErrorLine.Match(log);
        if (m.Success)
        {
            int end = log.IndexOf('\n', m.Index);
            string line = (end < 0 ? log[m.Index..] : log[m.Index..end]).TrimEnd('\r');
            return line[(line.IndexOf("): ", StringComparison.Ordinal) + 3)..].Trim();
        }
        foreach (string l in log.Split('\n'))
            if (l.Contains("error", StringComparison.OrdinalIgnoreCase)) return l.Trim();
        return null;
    }
}

/// <summary>Compiles a kernel source (to a CUBIN or PTX image).</summary>
/// <param name="source">CUDA C++ source.</param>
/// <param name="programName">The name NVRTC gives the source in its log, e.g. "layernorm.cu".</param>
/// <param name="options">Compiler options, without the architecture.</param>
/// <param name="architecture">Target architecture, e.g. "sm_90".</param>
public delegate byte[] KernelCompiler(string source, string programName, IReadOnlyList<string> options, string architecture);

/// <summary>Compiles each kernel source once per (SHA-256 of compiler, source and options; architecture) and keeps the image in a
/// directory (default <c>$XDG_CACHE_HOME/bert/kernels</c> or <c>~/.cache/bert/kernels</c>; override <c>BERT_KERNEL_CACHE</c>),
/// as <c>&lt;dir&gt;/&lt;architecture&gt;/&lt;sha256&gt;.bin</c>. Files are written to a temporary name and renamed, so that a
/// reader (another process too) sees a whole image or none. Images are also kept in memory for the life of the cache object;
/// concurrent requests for one key compile once.</summary>
public sealed class KernelCache
{
    public const string EnvironmentVariable = "BERT_KERNEL_CACHE";

    private readonly KernelCompiler _compiler;
    private readonly Func<string> _compilerId;
    private string? _compilerIdValue;
    private readonly ConcurrentDictionary<string, Lazy<byte[]>> _memory = new(StringComparer.Ordinal);
    private int _compilations, _diskHits;

    /// <summary>A cache over NVRTC (the compiler id is NVRTC's version, so an upgrade recompiles everything; under the host
    /// emulation, the emulation's own id, so that its host libraries never mix with real images or an older emulation's).</summary>
    public KernelCache(string? directory = null)
        : this(directory, NvrtcCompiler, () => CudaEmulation.Enabled ? CudaEmulation.CompilerId : NvrtcId()) { }

    static string NvrtcId() { var (ma, mi) = Nvrtc.Version(); return $"nvrtc-{ma}.{mi}"; }

    /// <summary>A cache over any compiler; <paramref name="compilerId"/> is part of every key (e.g. the compiler's version).</summary>
    public KernelCache(string? directory, KernelCompiler compiler, string compilerId) : this(directory, compiler, () => compilerId) { }

    private KernelCache(string? directory, KernelCompiler compiler, Func<string> compilerId)
    {
        Directory = directory ?? DefaultDirectory();
        _compiler = compiler;
        _compilerId = compilerId;
    }

    /// <summary>Where the images are kept.</summary>
    public string Directory { get; }
    /// <summary>How many times this cache called the compiler.</summary>
    public int Compilations => Volatile.Read(ref _compilations);
    /// <summary>How many images this cache read from disk instead of compiling.</summary>
    public int DiskHits => Volatile.Read(ref _diskHits);

    private string CompilerId => _compilerIdValue ??= _compilerId();

    /// <summary>NVRTC with -arch=&lt;architecture&gt; added in front of the options (when they have none).</summary>
    public static byte[] NvrtcCompiler(string source, string programName, IReadOnlyList<string> options, string architecture)
    {
        List<string> all = Nvrtc.ArchitectureOption(options) == null ? ["-arch=" + architecture, .. options] : [.. options];
        return Nvrtc.Compile(source, programName, all).Image;
    }

    /// <summary>$BERT_KERNEL_CACHE, else $XDG_CACHE_HOME/bert/kernels, else ~/.cache/bert/kernels.</summary>
    public static string DefaultDirectory(Func<string, string?>? getEnvironmentVariable = null) =>
        UserCache.Directory(EnvironmentVariable, "kernels", getEnvironmentVariable);

    /// <summary>Lower-case hex SHA-256 over the compiler id, the source and the options (each length-prefixed, so that no two
    /// different inputs share an encoding). The architecture is the other half of the key: it names the subdirectory.</summary>
    public static string Hash(string compilerId, string source, IReadOnlyList<string> options)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendField("bert-kernel-cache-v1");
        h.AppendField(compilerId);
        h.AppendField(source);
        h.AppendField(options.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (string o in options) h.AppendField(o);
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    /// <summary>The file that holds (or will hold) the image for this source, options and architecture.</summary>
    public string PathFor(string source, IReadOnlyList<string> options, string architecture)
    {
        if (string.IsNullOrWhiteSpace(architecture) || architecture.IndexOfAny(['/', '\\', '\0']) >= 0 || architecture.Contains(".."))
            throw new ArgumentException($"'{architecture}' is not an architecture name such as sm_90.", nameof(architecture));
        return Path.Combine(Directory, architecture, Hash(CompilerId, source, options) + ".bin");
    }

    /// <summary>The image: from memory, else from the cache directory, else compiled (once, even when asked concurrently) and written there.
    /// A cache directory that cannot be written is not an error: the image is returned and kept in memory.</summary>
    public byte[] GetOrCompile(string source, string programName, IReadOnlyList<string> options, string architecture)
    {
        string path = PathFor(source, options, architecture);
        Lazy<byte[]> lazy = _memory.GetOrAdd(path, p => new Lazy<byte[]>(() => LoadOrCompile(p, source, programName, options, architecture)));
        try { return lazy.Value; }
        catch
        {
            _memory.TryRemove(new KeyValuePair<string, Lazy<byte[]>>(path, lazy)); // let a later call retry
            throw;
        }
    }

    private byte[] LoadOrCompile(string path, string source, string programName, IReadOnlyList<string> options, string architecture)
    {
        try
        {
            if (File.Exists(path))
            {
                byte[] cached = File.ReadAllBytes(path);
                if (cached.Length > 0)
                {
                    Interlocked.Increment(ref _diskHits);
                    return cached;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }

        Interlocked.Increment(ref _compilations);
        byte[] image = _compiler(source, programName, options, architecture);
        if (image.Length == 0) throw new InvalidOperationException($"The kernel compiler returned an empty image for {programName} ({architecture}).");
        try { WriteAtomically(path, image); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return image;
    }

    /// <summary>Writes the bytes to a unique temporary file beside <paramref name="path"/>, flushes it to disk and renames it over
    /// <paramref name="path"/> (atomic on one file system); the temporary file is removed when anything fails.</summary>
    public static void WriteAtomically(string path, ReadOnlySpan<byte> bytes)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        System.IO.Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var f = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                f.Write(bytes);
                f.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            throw;
        }
    }
}
