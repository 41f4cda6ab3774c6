using System.Runtime.InteropServices;

namespace Bert.Runtime.Cuda;

/// <summary>The NVIDIA libraries the CUDA backend binds to.</summary>
public enum CudaLibrary
{
    /// <summary>The CUDA driver API, libcuda.so.1 (installed with the NVIDIA driver).</summary>
    Driver,
    /// <summary>The runtime compiler NVRTC, libnvrtc.so (CUDA toolkit or the nvidia-cuda-nvrtc wheel).</summary>
    Nvrtc,
    /// <summary>cuBLAS, libcublas.so.</summary>
    Cublas,
    /// <summary>cuBLASLt, libcublasLt.so.</summary>
    CublasLt,
}

/// <summary>A CUDA library, or a CUDA device, is not there: the message is one sentence naming what is missing,
/// where it was looked for, and the fix.</summary>
public sealed class CudaUnavailableException : Exception
{
    public CudaUnavailableException(string message) : base(message) { }
    public CudaUnavailableException(string message, Exception? inner) : base(message, inner) { }
}

/// <summary>What the search knows about one library: how to name it, its override variable, the file names tried
/// (newest first) and an export that proves the file is that library.</summary>
public sealed record CudaLibrarySpec(CudaLibrary Library, string DisplayName, string EnvironmentVariable,
    IReadOnlyList<string> FileNames, string RequiredExport);

/// <summary>A library opened with <see cref="NativeLibrary.Load(string)"/>; the handle stays open for the life of the process.</summary>
public sealed class LoadedCudaLibrary
{
    internal LoadedCudaLibrary(CudaLibrarySpec spec, nint handle, string path, string place)
    {
        Spec = spec; Handle = handle; Path = path; Place = place;
    }

    /// <summary>A library whose exports come from <paramref name="exports"/> (0: not exported) instead of a loaded file: the
    /// host emulation (<see cref="CudaEmulation"/>).</summary>
    internal LoadedCudaLibrary(CudaLibrarySpec spec, string path, string place, Func<string, nint> exports) : this(spec, 0, path, place)
    {
        _exports = exports;
    }

    readonly Func<string, nint>? _exports;

    public CudaLibrarySpec Spec { get; }
    public nint Handle { get; }
    /// <summary>The full path, or the bare file name when the loader's default path found it.</summary>
    public string Path { get; }
    /// <summary>Where it was found, e.g. "BERT_NVRTC", "CUDA_PATH", "/usr/local/cuda/lib64", "the loader's default path", "a Python wheel".</summary>
    public string Place { get; }

    /// <summary>The address of an exported function; throws <see cref="CudaUnavailableException"/> naming the library when it is missing
    /// (an older library than this binding needs).</summary>
    public nint GetExport(string name)
    {
        if (TryGetExport(name) is var p && p != 0) return p;
        throw new CudaUnavailableException(
            $"{Spec.DisplayName} at {Path} does not export {name}, so it is older than this runtime needs; install a newer NVIDIA driver / CUDA toolkit, or set {Spec.EnvironmentVariable} to a newer library's path.");
    }

    /// <summary>The address of an exported function, or 0.</summary>
    public nint TryGetExport(string name) => _exports is { } e ? e(name) : NativeLibrary.TryGetExport(Handle, name, out nint p) ? p : 0;

    public override string ToString() => $"{Spec.DisplayName} ({Path}, from {Place})";
}

/// <summary>Where the search looks; <see cref="Default"/> reads the real environment. Tests pass their own.</summary>
public sealed class CudaLibrarySearch
{
    /// <summary>The process environment and the standard places.</summary>
    public static CudaLibrarySearch Default { get; } = new();

    /// <summary>Reads an environment variable (null or empty: unset).</summary>
    public Func<string, string?> GetEnvironmentVariable { get; init; } = Environment.GetEnvironmentVariable;

    /// <summary>Fixed directories searched after CUDA_PATH / CUDA_HOME.</summary>
    public IReadOnlyList<string> SystemDirectories { get; init; } = ["/usr/local/cuda/lib64"];

    /// <summary>Whether the bare file names are handed to the loader (LD_LIBRARY_PATH, /etc/ld.so.cache, system lib folders).</summary>
    public bool UseLoaderDefaultPath { get; init; } = true;

    /// <summary>Folders holding python3.*/{site,dist}-packages; null: $VIRTUAL_ENV/lib, $CONDA_PREFIX/lib, the lib beside each bin on
    /// PATH that holds a python3, ~/.local/lib,
    /// /usr/local/lib, /usr/lib, /opt/conda/lib. Only directories are globbed (no Python is run).</summary>
    public IReadOnlyList<string>? PythonLibRoots { get; init; }

    internal string? Env(string name)
    {
        string? v = GetEnvironmentVariable(name);
        return string.IsNullOrWhiteSpace(v) ? null : v.Trim();
    }

    internal string Home => Env("HOME") ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);

    internal IReadOnlyList<string> PythonRoots()
    {
        if (PythonLibRoots != null) return PythonLibRoots;
        var roots = new List<string>();
        if (Env("VIRTUAL_ENV") is { } venv) roots.Add(System.IO.Path.Combine(venv, "lib"));
        if (Env("CONDA_PREFIX") is { } conda) roots.Add(System.IO.Path.Combine(conda, "lib"));
        // The environment of the python3 on PATH (a venv's bin/python3 → its lib), e.g. /opt/torch/.venv/lib.
        foreach (string dir in (Env("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            if (System.IO.File.Exists(System.IO.Path.Combine(dir, "python3")) && System.IO.Path.GetDirectoryName(dir.TrimEnd('/')) is { Length: > 0 } prefix)
                roots.Add(System.IO.Path.Combine(prefix, "lib"));
        if (Home is { Length: > 0 } home) roots.Add(System.IO.Path.Combine(home, ".local", "lib"));
        roots.AddRange(["/usr/local/lib", "/usr/lib", "/opt/conda/lib"]);
        return roots.Distinct(StringComparer.Ordinal).ToArray();
    }
}

/// <summary>Finds and opens the CUDA libraries with <see cref="NativeLibrary"/> handles of our own (no DllImport resolver,
/// so nothing else in the process is affected; OpenBLAS is bound the same way).</summary>
/// <remarks>Search order, per library: the override variable (BERT_CUDA_DRIVER, BERT_NVRTC, BERT_CUBLAS, BERT_CUBLASLT; a full
/// path, used alone when set); $CUDA_PATH and $CUDA_HOME (lib64, targets/&lt;arch&gt;-linux/lib); /usr/local/cuda/lib64; the loader's
/// default path (bare names: LD_LIBRARY_PATH, ld.so.cache); the lib folders of NVIDIA's Python wheels
/// (python3*/{site,dist}-packages/nvidia/*/lib under the usual prefixes). In each place the newest version's name is tried first.</remarks>
public static class CudaLibraries
{
    private static readonly CudaLibrarySpec[] Specs =
    [
        new(CudaLibrary.Driver, "the CUDA driver", "BERT_CUDA_DRIVER", ["libcuda.so.1"], "cuInit"),
        new(CudaLibrary.Nvrtc, "NVRTC", "BERT_NVRTC", ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"], "nvrtcCreateProgram"),
        new(CudaLibrary.Cublas, "cuBLAS", "BERT_CUBLAS", ["libcublas.so.13", "libcublas.so.12", "libcublas.so"], "cublasCreate_v2"),
        new(CudaLibrary.CublasLt, "cuBLASLt", "BERT_CUBLASLT", ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"], "cublasLtCreate"),
    ];

    private static readonly LoadedCudaLibrary?[] Cache = new LoadedCudaLibrary?[Specs.Length];
    private static readonly object Gate = new();

    public static CudaLibrarySpec Spec(CudaLibrary library) => Specs[(int)library];

    /// <summary>The library from the default search, opened once per process; throws <see cref="CudaUnavailableException"/> when it is not found.</summary>
    public static LoadedCudaLibrary Get(CudaLibrary library)
    {
        LoadedCudaLibrary? hit = Volatile.Read(ref Cache[(int)library]);
        if (hit != null) return hit;
        lock (Gate)
        {
            hit = Cache[(int)library];
            if (hit != null) return hit;
            hit = CudaEmulation.Enabled ? CudaEmulation.Library(Spec(library)) : Load(library);
            Volatile.Write(ref Cache[(int)library], hit);
            return hit;
        }
    }

    /// <summary><see cref="Get"/> that reports a miss as a sentence instead of throwing.</summary>
    public static bool TryGet(CudaLibrary library, out LoadedCudaLibrary? loaded, out string why)
    {
        try { loaded = Get(library); why = ""; return true; }
        catch (CudaUnavailableException e) { loaded = null; why = e.Message; return false; }
    }

    /// <summary>Runs the search afresh (not cached) and opens the library; throws <see cref="CudaUnavailableException"/>
    /// with one sentence naming the library, every place looked and the fix.</summary>
    public static LoadedCudaLibrary Load(CudaLibrary library, CudaLibrarySearch? search = null)
    {
        search ??= CudaLibrarySearch.Default;
        CudaLibrarySpec spec = Spec(library);
        string fix = $"install the NVIDIA driver / CUDA toolkit, or set {spec.EnvironmentVariable} to the library's path";

        // 1. The override: a full path, used alone.
        if (search.Env(spec.EnvironmentVariable) is { } overridePath)
        {
            if (!File.Exists(overridePath))
                throw new CudaUnavailableException(
                    $"{spec.EnvironmentVariable} is set to {overridePath}, but that file does not exist; point {spec.EnvironmentVariable} at {spec.DisplayName}'s library ({string.Join(" or ", spec.FileNames)}), or unset it to search the usual places.");
            string? error = TryOpen(spec, overridePath, null, out LoadedCudaLibrary? loaded, spec.EnvironmentVariable);
            if (loaded != null) return loaded;
            throw new CudaUnavailableException(
                $"{spec.EnvironmentVariable} is set to {overridePath}, but {error}; point {spec.EnvironmentVariable} at {spec.DisplayName}'s library ({string.Join(" or ", spec.FileNames)}), or unset it to search the usual places.");
        }

        var rejected = new List<string>();
        // 2-3. CUDA_PATH, CUDA_HOME, the fixed directories.
        foreach ((string place, string dir) in ToolkitDirectories(search))
        {
            if (TryDirectory(spec, dir, place, rejected) is { } hit) return hit;
        }
        // 4. The loader's default path.
        if (search.UseLoaderDefaultPath)
        {
            foreach (string name in spec.FileNames)
            {
                string? error = TryOpen(spec, name, null, out LoadedCudaLibrary? loaded, "the loader's default path");
                if (loaded != null) return loaded;
                if (error != null && !IsNotFound(error, name)) rejected.Add($"{name} ({error})");
            }
        }
        // 5. NVIDIA's Python wheels.
        IReadOnlyList<string> wheelDirs = PythonWheelDirectories(search);
        foreach (string dir in wheelDirs)
        {
            if (TryDirectory(spec, dir, "a Python wheel", rejected) is { } hit) return hit;
        }

        throw new CudaUnavailableException(MissMessage(spec, search, wheelDirs.Count, rejected, fix));
    }

    /// <summary>CUDA_PATH and CUDA_HOME (lib64, targets/&lt;arch&gt;-linux/lib) then <see cref="CudaLibrarySearch.SystemDirectories"/>, in search order, without duplicates.</summary>
    public static IReadOnlyList<(string Place, string Directory)> ToolkitDirectories(CudaLibrarySearch search)
    {
        var list = new List<(string, string)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string variable in (string[])["CUDA_PATH", "CUDA_HOME"])
        {
            if (search.Env(variable) is not { } root) continue;
            foreach (string sub in ToolkitSubdirectories)
            {
                string dir = Path.Combine(root, sub);
                if (seen.Add(dir)) list.Add((variable, dir));
            }
        }
        foreach (string dir in search.SystemDirectories)
            if (seen.Add(dir)) list.Add((dir, dir));
        return list;
    }

    private static string[] ToolkitSubdirectories =>
        ["lib64", Path.Combine("targets", RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? "sbsa-linux" : "x86_64-linux", "lib")];

    /// <summary>The existing python3*/{site,dist}-packages/nvidia/*/lib folders under the search's Python roots, in a stable order.</summary>
    public static IReadOnlyList<string> PythonWheelDirectories(CudaLibrarySearch search)
    {
        var dirs = new List<string>();
        foreach (string root in search.PythonRoots())
        {
            try
            {
                if (!Directory.Exists(root)) continue;
                foreach (string py in Directory.EnumerateDirectories(root, "python3*").Order(StringComparer.Ordinal))
                    foreach (string packages in (string[])["site-packages", "dist-packages"])
                    {
                        string nvidia = Path.Combine(py, packages, "nvidia");
                        if (!Directory.Exists(nvidia)) continue;
                        foreach (string pkg in Directory.EnumerateDirectories(nvidia).Order(StringComparer.Ordinal))
                        {
                            string lib = Path.Combine(pkg, "lib");
                            if (Directory.Exists(lib)) dirs.Add(lib);
                        }
                    }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return dirs;
    }

    private static LoadedCudaLibrary? TryDirectory(CudaLibrarySpec spec, string dir, string place, List<string> rejected)
    {
        foreach (string name in spec.FileNames)
        {
            string path = Path.Combine(dir, name);
            if (!File.Exists(path)) continue;
            string? error = TryOpen(spec, path, dir, out LoadedCudaLibrary? loaded, place);
            if (loaded != null) return loaded;
            rejected.Add($"{path} ({error})");
        }
        return null;
    }

    /// <summary>Opens one candidate; returns null with the library, or the reason it is unusable.</summary>
    private static string? TryOpen(CudaLibrarySpec spec, string pathOrName, string? dir, out LoadedCudaLibrary? loaded, string place)
    {
        loaded = null;
        if (dir != null) PreloadCompanions(spec, dir, Path.GetFileName(pathOrName));
        nint h;
        try { h = NativeLibrary.Load(pathOrName); }
        catch (DllNotFoundException e) { return "it could not be loaded: " + LoaderError(e.Message, pathOrName); }
        catch (BadImageFormatException e) { return "it could not be loaded: " + LoaderError(e.Message, pathOrName); }
        if (!NativeLibrary.TryGetExport(h, spec.RequiredExport, out _))
        {
            NativeLibrary.Free(h);
            return $"it does not export {spec.RequiredExport}, so it is not {spec.DisplayName}";
        }
        loaded = new LoadedCudaLibrary(spec, h, pathOrName, place);
        return null;
    }

    /// <summary>cuBLAS needs the cuBLASLt of its own version and NVRTC loads its builtins library by name at compile time;
    /// when they sit in the same folder, open them first so that the loader finds them whatever the library's RUNPATH says.</summary>
    private static void PreloadCompanions(CudaLibrarySpec spec, string dir, string fileName)
    {
        string version = fileName.Contains(".so.") ? fileName[(fileName.IndexOf(".so.", StringComparison.Ordinal) + 4)..] : "";
        IEnumerable<string> companions = spec.Library switch
        {
            CudaLibrary.Cublas => [Path.Combine(dir, version.Length > 0 ? "libcublasLt.so." + version : "libcublasLt.so")],
            CudaLibrary.Nvrtc => SafeGlob(dir, version.Length > 0 ? $"libnvrtc-builtins.so.{version}*" : "libnvrtc-builtins.so*"),
            _ => [],
        };
        foreach (string c in companions)
            if (File.Exists(c)) NativeLibrary.TryLoad(c, out _);
    }

    private static IEnumerable<string> SafeGlob(string dir, string pattern)
    {
        try { return Directory.GetFiles(dir, pattern).Order(StringComparer.Ordinal).ToArray(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }

    /// <summary>The dlerror text inside .NET's DllNotFoundException message, which repeats every probe; keeps the part about this file.</summary>
    private static string LoaderError(string message, string pathOrName)
    {
        string flat = message.ReplaceLineEndings(" ").Trim().TrimEnd('.');
        int at = flat.LastIndexOf(pathOrName + ":", StringComparison.Ordinal);
        if (at >= 0) return flat[at..].Trim().TrimEnd('.');
        return flat.Length > 300 ? flat[..300] + "…" : flat;
    }

    /// <summary>The loader has no file of that name (as opposed to a file it found but could not load, e.g. for a missing dependency).</summary>
    private static bool IsNotFound(string error, string name) =>
        error.StartsWith($"it could not be loaded: {name}: cannot open shared object file", StringComparison.Ordinal);

    /// <summary>The one-sentence miss: the library, every place looked, what was found but rejected, and the fix.</summary>
    private static string MissMessage(CudaLibrarySpec spec, CudaLibrarySearch search, int wheelDirs, List<string> rejected, string fix)
    {
        var places = new List<string> { $"{spec.EnvironmentVariable} (unset)" };
        foreach (string variable in (string[])["CUDA_PATH", "CUDA_HOME"])
            places.Add(search.Env(variable) is { } root
                ? $"{variable} ({string.Join(", ", ToolkitSubdirectories.Select(s => Path.Combine(root, s)))})"
                : $"{variable} (unset)");
        places.AddRange(search.SystemDirectories);
        if (search.UseLoaderDefaultPath) places.Add("the loader's default path (LD_LIBRARY_PATH, ld.so.cache)");
        string home = search.Home;
        string roots = string.Join(", ", search.PythonRoots().Select(r => home.Length > 0 && r.StartsWith(home + "/", StringComparison.Ordinal) ? "~" + r[home.Length..] : r));
        string wheels = $"Python wheels (python3*/site-packages or dist-packages/nvidia/*/lib under {roots}: "
            + (wheelDirs == 0 ? "no such folder)" : $"{wheelDirs} folder{(wheelDirs == 1 ? "" : "s")}, none with it)");
        string lookedIn = string.Join(", ", places) + " or " + wheels;
        string found = rejected.Count == 0 ? "" : $", and what was found is unusable: {string.Join("; ", rejected)}";
        return $"{Capitalize(spec.DisplayName)} ({string.Join(", ", spec.FileNames)}) was not found in {lookedIn}{found}; {fix}.";
    }

    /// <summary>"the CUDA driver" → "The CUDA driver"; proper names such as cuBLAS keep their case.</summary>
    private static string Capitalize(string s) => s.StartsWith("the ", StringComparison.Ordinal) ? "The" + s[3..] : s;
}
