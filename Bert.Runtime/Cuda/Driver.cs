using System.Runtime.InteropServices;

namespace Bert.Runtime.Cuda;

/// <summary>A CUDA library call failed. <see cref="Exception.Message"/> names the call, the status name and its description,
/// e.g. "cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)".</summary>
public class CudaException : Exception
{
    public CudaException(string call, int code, string errorName, string? description)
        : this(call, code, errorName, description, Format(call, errorName, description)) { }

    protected CudaException(string call, int code, string errorName, string? description, string message) : base(message)
    {
        Call = call; Code = code; ErrorName = errorName; Description = description;
    }

    /// <summary>The function that failed, e.g. "cuMemAlloc_v2".</summary>
    public string Call { get; }
    /// <summary>The numeric status (CUresult, nvrtcResult or cublasStatus_t).</summary>
    public int Code { get; }
    /// <summary>The status name, e.g. "CUDA_ERROR_OUT_OF_MEMORY".</summary>
    public string ErrorName { get; }
    /// <summary>The library's description of the status, e.g. "out of memory", when it has one.</summary>
    public string? Description { get; }

    /// <summary>"{call} failed: {name} ({description})", or without the parenthesis when there is no description or it only repeats the name.</summary>
    public static string Format(string call, string errorName, string? description) =>
        string.IsNullOrWhiteSpace(description) || description == errorName
            ? $"{call} failed: {errorName}"
            : $"{call} failed: {errorName} ({description})";
}

/// <summary>CUdevice_attribute values this runtime reads.</summary>
public enum CuDeviceAttribute
{
    MaxThreadsPerBlock = 1,
    MaxSharedMemoryPerBlock = 8,
    WarpSize = 10,
    ClockRate = 13,
    MultiprocessorCount = 16,
    MemoryClockRate = 36,
    GlobalMemoryBusWidth = 37,
    L2CacheSize = 38,
    MaxThreadsPerMultiprocessor = 39,
    ComputeCapabilityMajor = 75,
    ComputeCapabilityMinor = 76,
    MaxSharedMemoryPerMultiprocessor = 81,
    MaxSharedMemoryPerBlockOptin = 97,
}

/// <summary>CUfunction_attribute values, read with <see cref="CudaDriver.FuncGetAttribute"/> or set with <see cref="CudaDriver.FuncSetAttribute"/>.</summary>
public enum CuFunctionAttribute
{
    MaxThreadsPerBlock = 0,
    SharedSizeBytes = 1,
    LocalSizeBytes = 3,
    NumRegs = 4,
    MaxDynamicSharedSizeBytes = 8,
    PreferredSharedMemoryCarveout = 9,
}

/// <summary>CUstreamCaptureMode.</summary>
public enum CuStreamCaptureMode
{
    Global = 0,
    ThreadLocal = 1,
    Relaxed = 2,
}

/// <summary>Grid or block dimensions of a kernel launch.</summary>
public readonly record struct Dim3(uint X, uint Y = 1, uint Z = 1)
{
    public static implicit operator Dim3(uint x) => new(x);
    public static implicit operator Dim3(int x) => new(checked((uint)x));
    public override string ToString() => $"({X}, {Y}, {Z})";
}

/// <summary>The kernelParams of cuLaunchKernel: each argument's value copied into one unmanaged block, and an array of pointers
/// to them. The driver copies the values at launch (and at capture), so the block may be reused or freed right after.</summary>
public sealed unsafe class KernelArguments : IDisposable
{
    private byte* _values;
    private void** _pointers;
    private int _bytes, _used, _pointerCapacity;
    private readonly List<int> _offsets = [];

    public KernelArguments(int capacityBytes = 256)
    {
        _bytes = Math.Max(16, capacityBytes);
        _values = (byte*)NativeMemory.AlignedAlloc((nuint)_bytes, 16);
    }

    public int Count => _offsets.Count;

    /// <summary>Appends one argument (a device pointer as ulong, an int, a float, a small struct…), aligned to its size up to 16 bytes.</summary>
    public KernelArguments Add<T>(T value) where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(_values == null, this);
        int size = sizeof(T);
        int align = Math.Min(16, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(1, size)));
        int offset = (_used + align - 1) & ~(align - 1);
        if (offset + size > _bytes)
        {
            int bytes = Math.Max(_bytes * 2, offset + size);
            byte* values = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 16);
            Buffer.MemoryCopy(_values, values, bytes, _used);
            NativeMemory.AlignedFree(_values);
            _values = values; _bytes = bytes;
        }
        *(T*)(_values + offset) = value;
        _used = offset + size;
        _offsets.Add(offset);
        return this;
    }

    /// <summary>Forgets the arguments, keeping the memory, for the next launch.</summary>
    public void Clear() { _offsets.Clear(); _used = 0; }

    /// <summary>The void** to pass as kernelParams (valid until the next <see cref="Add{T}"/> or <see cref="Dispose"/>).</summary>
    public void** Pointers
    {
        get
        {
            ObjectDisposedException.ThrowIf(_values == null, this);
            if (_pointerCapacity < Math.Max(1, _offsets.Count))
            {
                NativeMemory.Free(_pointers);
                _pointerCapacity = Math.Max(8, _offsets.Count);
                _pointers = (void**)NativeMemory.Alloc((nuint)(_pointerCapacity * sizeof(void*)));
            }
            for (int i = 0; i < _offsets.Count; i++) _pointers[i] = _values + _offsets[i];
            return _pointers;
        }
    }

    public void Dispose()
    {
        if (_values == null) return;
        NativeMemory.AlignedFree(_values); _values = null;
        NativeMemory.Free(_pointers); _pointers = null;
    }
}

/// <summary>Thin bindings to the CUDA driver API (libcuda.so.1) through function pointers from <see cref="NativeLibrary.GetExport"/>
/// on a handle opened by <see cref="CudaLibraries"/>. Every status is checked: a failure throws <see cref="CudaException"/>
/// naming the call, the CUresult name and its description. Device pointers are <c>ulong</c> (CUdeviceptr); contexts, streams,
/// events, modules, functions and graphs are <c>nint</c>. A context must be current on the calling thread
/// (<see cref="CudaDevice.MakeCurrent"/>) for everything after <see cref="Init"/> and the device queries.</summary>
public static unsafe class CudaDriver
{
    public const uint StreamNonBlocking = 1;
    public const uint EventDefault = 0, EventBlockingSync = 1, EventDisableTiming = 2;

    private sealed class Api
    {
        public required LoadedCudaLibrary Library;
        public delegate* unmanaged[Cdecl]<uint, int> cuInit;
        public delegate* unmanaged[Cdecl]<int*, int> cuDriverGetVersion;
        public delegate* unmanaged[Cdecl]<int*, int> cuDeviceGetCount;
        public delegate* unmanaged[Cdecl]<int*, int, int> cuDeviceGet;
        public delegate* unmanaged[Cdecl]<byte*, int, int, int> cuDeviceGetName;
        public delegate* unmanaged[Cdecl]<int*, int, int, int> cuDeviceGetAttribute;
        public delegate* unmanaged[Cdecl]<nuint*, int, int> cuDeviceTotalMem_v2;
        public delegate* unmanaged[Cdecl]<nint*, int, int> cuDevicePrimaryCtxRetain;
        public delegate* unmanaged[Cdecl]<int, int> cuDevicePrimaryCtxRelease_v2;
        public delegate* unmanaged[Cdecl]<nint, int> cuCtxSetCurrent;
        public delegate* unmanaged[Cdecl]<nint*, int> cuCtxGetCurrent;
        public delegate* unmanaged[Cdecl]<int> cuCtxSynchronize;
        public delegate* unmanaged[Cdecl]<nuint*, nuint*, int> cuMemGetInfo_v2;
        public delegate* unmanaged[Cdecl]<ulong*, nuint, int> cuMemAlloc_v2;
        public delegate* unmanaged[Cdecl]<ulong, int> cuMemFree_v2;
        public delegate* unmanaged[Cdecl]<ulong, void*, nuint, nint, int> cuMemcpyHtoDAsync_v2;
        public delegate* unmanaged[Cdecl]<void*, ulong, nuint, nint, int> cuMemcpyDtoHAsync_v2;
        public delegate* unmanaged[Cdecl]<ulong, ulong, nuint, nint, int> cuMemcpyDtoDAsync_v2;
        public delegate* unmanaged[Cdecl]<ulong, byte, nuint, nint, int> cuMemsetD8Async;
        public delegate* unmanaged[Cdecl]<nint*, uint, int> cuStreamCreate;
        public delegate* unmanaged[Cdecl]<nint, int> cuStreamSynchronize;
        public delegate* unmanaged[Cdecl]<nint, int> cuStreamDestroy_v2;
        public delegate* unmanaged[Cdecl]<nint*, uint, int> cuEventCreate;
        public delegate* unmanaged[Cdecl]<nint, nint, int> cuEventRecord;
        public delegate* unmanaged[Cdecl]<nint, int> cuEventSynchronize;
        public delegate* unmanaged[Cdecl]<float*, nint, nint, int> cuEventElapsedTime;
        public delegate* unmanaged[Cdecl]<nint, int> cuEventDestroy_v2;
        public delegate* unmanaged[Cdecl]<nint*, void*, int> cuModuleLoadData;
        public delegate* unmanaged[Cdecl]<nint*, nint, byte*, int> cuModuleGetFunction;
        public delegate* unmanaged[Cdecl]<nint, int> cuModuleUnload;
        public delegate* unmanaged[Cdecl]<nint, int, int, int> cuFuncSetAttribute;
        public delegate* unmanaged[Cdecl]<int*, int, nint, int> cuFuncGetAttribute;
        public delegate* unmanaged[Cdecl]<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int> cuLaunchKernel;
        public delegate* unmanaged[Cdecl]<nint, int, int> cuStreamBeginCapture_v2;
        public delegate* unmanaged[Cdecl]<nint, nint*, int> cuStreamEndCapture;
        public delegate* unmanaged[Cdecl]<nint*, nint, ulong, int> cuGraphInstantiateWithFlags;
        public delegate* unmanaged[Cdecl]<nint, nint, int> cuGraphLaunch;
        public delegate* unmanaged[Cdecl]<nint, int> cuGraphExecDestroy;
        public delegate* unmanaged[Cdecl]<nint, int> cuGraphDestroy;
        public delegate* unmanaged[Cdecl]<int, byte**, int> cuGetErrorName;
        public delegate* unmanaged[Cdecl]<int, byte**, int> cuGetErrorString;
    }

    private static Api? _api;
    private static readonly object Gate = new();

    private static Api A => Volatile.Read(ref _api) ?? LoadApi();

    /// <summary>Opens libcuda.so.1 (see <see cref="CudaLibraries"/>) and resolves every function; throws <see cref="CudaUnavailableException"/>.</summary>
    public static LoadedCudaLibrary Load() => A.Library;

    /// <summary>True when the driver library is loaded already (no search is started).</summary>
    public static bool IsLoaded => Volatile.Read(ref _api) != null;

    private static Api LoadApi()
    {
        lock (Gate)
        {
            if (_api != null) return _api;
            LoadedCudaLibrary lib = CudaLibraries.Get(CudaLibrary.Driver);
            var a = new Api { Library = lib };
            a.cuGetErrorName = (delegate* unmanaged[Cdecl]<int, byte**, int>)lib.GetExport("cuGetErrorName");
            a.cuGetErrorString = (delegate* unmanaged[Cdecl]<int, byte**, int>)lib.GetExport("cuGetErrorString");
            a.cuInit = (delegate* unmanaged[Cdecl]<uint, int>)lib.GetExport("cuInit");
            a.cuDriverGetVersion = (delegate* unmanaged[Cdecl]<int*, int>)lib.GetExport("cuDriverGetVersion");
            a.cuDeviceGetCount = (delegate* unmanaged[Cdecl]<int*, int>)lib.GetExport("cuDeviceGetCount");
            a.cuDeviceGet = (delegate* unmanaged[Cdecl]<int*, int, int>)lib.GetExport("cuDeviceGet");
            a.cuDeviceGetName = (delegate* unmanaged[Cdecl]<byte*, int, int, int>)lib.GetExport("cuDeviceGetName");
            a.cuDeviceGetAttribute = (delegate* unmanaged[Cdecl]<int*, int, int, int>)lib.GetExport("cuDeviceGetAttribute");
            a.cuDeviceTotalMem_v2 = (delegate* unmanaged[Cdecl]<nuint*, int, int>)lib.GetExport("cuDeviceTotalMem_v2");
            a.cuDevicePrimaryCtxRetain = (delegate* unmanaged[Cdecl]<nint*, int, int>)lib.GetExport("cuDevicePrimaryCtxRetain");
            a.cuDevicePrimaryCtxRelease_v2 = (delegate* unmanaged[Cdecl]<int, int>)lib.GetExport("cuDevicePrimaryCtxRelease_v2");
            a.cuCtxSetCurrent = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cuCtxSetCurrent");
            a.cuCtxGetCurrent = (delegate* unmanaged[Cdecl]<nint*, int>)lib.GetExport("cuCtxGetCurrent");
            a.cuCtxSynchronize = (delegate* unmanaged[Cdecl]<int>)lib.GetExport("cuCtxSynchronize");
            a.cuMemGetInfo_v2 = (delegate* unmanaged[Cdecl]<nuint*, nuint*, int>)lib.GetExport("cuMemGetInfo_v2");
            a.cuMemAlloc_v2 = (delegate* unmanaged[Cdecl]<ulong*, nuint, int>)lib.GetExport("cuMemAlloc_v2");
            a.cuMemFree_v2 = (delegate* unmanaged[Cdecl]<ulong, int>)lib.GetExport("cuMemFree_v2");
            a.cuMemcpyHtoDAsync_v2 = (delegate* unmanaged[Cdecl]<ulong, void*, nuint, nint, int>)lib.GetExport("cuMemcpyHtoDAsync_v2");
            a.cuMemcpyDtoHAsync_v2 = (delegate* unmanaged[Cdecl]<void*, ulong, nuint, nint, int>)lib.GetExport("cuMemcpyDtoHAsync_v2");
            a.cuMemcpyDtoDAsync_v2 = (delegate* unmanaged[Cdecl]<ulong, ulong, nuint, nint, int>)lib.GetExport("cuMemcpyDtoDAsync_v2");
            a.cuMemsetD8Async = (delegate* unmanaged[Cdecl]<ulong, byte, nuint, nint, int>)lib.GetExport("cuMemsetD8Async");
            a.cuStreamCreate = (delegate* unmanaged[Cdecl]<nint*, uint, int>)lib.GetExport("cuStreamCreate");
            a.cuStreamSynchronize = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cuStreamSynchronize");
            a.cuStreamDestroy_v2 = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cuStreamDestroy_v2");
            a.cuEventCreate = (delegate* unmanaged[Cdecl]<nint*, uint, int>)lib.GetExport("cuEventCreate");
            a.cuEventRecord = (delegate* unmanaged[Cdecl]<nint, nint, int>)lib.GetExport("cuEventRecord");
            a.cuEventSynchronize = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cuEventSynchronize");
            a.cuEventElapsedTime = (delegate* unmanaged[Cdecl]<float*, nint, nint, int>)lib.GetExport("cuEventElapsedTime");
            a.cuEventDestroy_v2 = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cuEventDestroy_v2");
            a.cuModuleLoadData = (delegate* unmanaged[Cdecl]<nint*, void*, int>)lib.GetExport("cuModuleLoadData");
            a.cuModuleGetFunction = (delegate* unmanaged[Cdecl]<nint*, nint, byte*, int>)lib.GetExport("cuModuleGetFunction");
            a.cuModuleUnload = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cuModuleUnload");
            a.cuFuncSetAttribute = (delegate* unmanaged[Cdecl]<nint, int, int, int>)lib.GetExport("cuFuncSetAttribute");
            a.cuFuncGetAttribute = (delegate* unmanaged[Cdecl]<int*, int, nint, int>)lib.GetExport("cuFuncGetAttribute");
            a.cuLaunchKernel = (delegate* unmanaged[Cdecl]<nint, uint, uint, uint, uint, uint, uint, uint, nint, void**, void**, int>)lib.GetExport("cuLaunchKernel");
            a.cuStreamBeginCapture_v2 = (delegate* unmanaged[Cdecl]<nint, int, int>)lib.GetExport("cuStreamBeginCapture_v2");
            a.cuStreamEndCapture = (delegate* unmanaged[Cdecl]<nint, nint*, int>)lib.GetExport("cuStreamEndCapture");
            a.cuGraphInstantiateWithFlags = (delegate* unmanaged[Cdecl]<nint*, nint, ulong, int>)lib.GetExport("cuGraphInstantiateWithFlags");
            a.cuGraphLaunch = (delegate* unmanaged[Cdecl]<nint, nint, int>)lib.GetExport("cuGraphLaunch");
            a.cuGraphExecDestroy = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cuGraphExecDestroy");
            a.cuGraphDestroy = (delegate* unmanaged[Cdecl]<nint, int>)lib.GetExport("cuGraphDestroy");
            Volatile.Write(ref _api, a);
            return a;
        }
    }

    // ---- errors ----

    /// <summary>Throws <see cref="CudaException"/> for a non-zero CUresult.</summary>
    public static void Check(int result, string call)
    {
        if (result != 0) throw Error(result, call);
    }

    public static CudaException Error(int result, string call) => new(call, result, ErrorName(result), ErrorString(result));

    /// <summary>The CUresult's name from cuGetErrorName, else from this binding's table, else "CUDA error {code}".</summary>
    public static string ErrorName(int result)
    {
        if (Volatile.Read(ref _api) is { } a)
        {
            byte* s = null;
            if (a.cuGetErrorName(result, &s) == 0 && s != null) return Marshal.PtrToStringUTF8((nint)s) ?? KnownErrorName(result);
        }
        return KnownErrorName(result);
    }

    /// <summary>The CUresult's description from cuGetErrorString, or null when the driver is not loaded or does not know it.</summary>
    public static string? ErrorString(int result)
    {
        if (Volatile.Read(ref _api) is { } a)
        {
            byte* s = null;
            if (a.cuGetErrorString(result, &s) == 0 && s != null) return Marshal.PtrToStringUTF8((nint)s);
        }
        return null;
    }

    /// <summary>The CUresult names of cuda.h for the statuses this runtime is likely to meet (used when the driver cannot name one).</summary>
    public static string KnownErrorName(int result) => result switch
    {
        0 => "CUDA_SUCCESS",
        1 => "CUDA_ERROR_INVALID_VALUE",
        2 => "CUDA_ERROR_OUT_OF_MEMORY",
        3 => "CUDA_ERROR_NOT_INITIALIZED",
        4 => "CUDA_ERROR_DEINITIALIZED",
        34 => "CUDA_ERROR_STUB_LIBRARY",
        46 => "CUDA_ERROR_DEVICE_UNAVAILABLE",
        100 => "CUDA_ERROR_NO_DEVICE",
        101 => "CUDA_ERROR_INVALID_DEVICE",
        200 => "CUDA_ERROR_INVALID_IMAGE",
        201 => "CUDA_ERROR_INVALID_CONTEXT",
        209 => "CUDA_ERROR_NO_BINARY_FOR_GPU",
        218 => "CUDA_ERROR_INVALID_PTX",
        221 => "CUDA_ERROR_JIT_COMPILER_NOT_FOUND",
        222 => "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
        300 => "CUDA_ERROR_INVALID_SOURCE",
        400 => "CUDA_ERROR_INVALID_HANDLE",
        500 => "CUDA_ERROR_NOT_FOUND",
        600 => "CUDA_ERROR_NOT_READY",
        700 => "CUDA_ERROR_ILLEGAL_ADDRESS",
        701 => "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
        702 => "CUDA_ERROR_LAUNCH_TIMEOUT",
        715 => "CUDA_ERROR_ILLEGAL_INSTRUCTION",
        716 => "CUDA_ERROR_MISALIGNED_ADDRESS",
        719 => "CUDA_ERROR_LAUNCH_FAILED",
        801 => "CUDA_ERROR_NOT_SUPPORTED",
        803 => "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
        804 => "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
        900 => "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
        901 => "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
        906 => "CUDA_ERROR_STREAM_CAPTURE_IMPLICIT",
        908 => "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD",
        999 => "CUDA_ERROR_UNKNOWN",
        _ => $"CUDA error {result}",
    };

    // ---- initialization and devices ----

    /// <summary>cuInit; returns the raw CUresult (0: success) so that <see cref="CudaDevice"/> can turn "no device" into a sentence.</summary>
    public static int TryInit(uint flags = 0) => A.cuInit(flags);

    public static void Init(uint flags = 0) => Check(A.cuInit(flags), "cuInit");

    /// <summary>The driver's CUDA version as 1000·major + 10·minor (e.g. 12040).</summary>
    public static int DriverGetVersion()
    {
        int v;
        Check(A.cuDriverGetVersion(&v), "cuDriverGetVersion");
        return v;
    }

    public static int DeviceGetCount()
    {
        int n;
        Check(A.cuDeviceGetCount(&n), "cuDeviceGetCount");
        return n;
    }

    public static int DeviceGet(int ordinal)
    {
        int d;
        Check(A.cuDeviceGet(&d, ordinal), "cuDeviceGet");
        return d;
    }

    public static string DeviceGetName(int device)
    {
        byte* buf = stackalloc byte[256];
        Check(A.cuDeviceGetName(buf, 256, device), "cuDeviceGetName");
        buf[255] = 0;
        return Marshal.PtrToStringUTF8((nint)buf) ?? "";
    }

    public static int DeviceGetAttribute(CuDeviceAttribute attribute, int device)
    {
        int v;
        Check(A.cuDeviceGetAttribute(&v, (int)attribute, device), "cuDeviceGetAttribute");
        return v;
    }

    public static ulong DeviceTotalMem(int device)
    {
        nuint bytes;
        Check(A.cuDeviceTotalMem_v2(&bytes, device), "cuDeviceTotalMem_v2");
        return bytes;
    }

    /// <summary>Retains the device's primary context (one per device per process, shared with any other CUDA user in the process).</summary>
    public static nint DevicePrimaryCtxRetain(int device)
    {
        nint ctx;
        Check(A.cuDevicePrimaryCtxRetain(&ctx, device), "cuDevicePrimaryCtxRetain");
        return ctx;
    }

    public static void DevicePrimaryCtxRelease(int device) => Check(A.cuDevicePrimaryCtxRelease_v2(device), "cuDevicePrimaryCtxRelease_v2");

    /// <summary>Binds the context to the calling thread.</summary>
    public static void CtxSetCurrent(nint context) => Check(A.cuCtxSetCurrent(context), "cuCtxSetCurrent");

    public static nint CtxGetCurrent()
    {
        nint ctx;
        Check(A.cuCtxGetCurrent(&ctx), "cuCtxGetCurrent");
        return ctx;
    }

    public static void CtxSynchronize() => Check(A.cuCtxSynchronize(), "cuCtxSynchronize");

    // ---- memory ----

    public static (ulong Free, ulong Total) MemGetInfo()
    {
        nuint free, total;
        Check(A.cuMemGetInfo_v2(&free, &total), "cuMemGetInfo_v2");
        return (free, total);
    }

    public static ulong MemAlloc(ulong bytes)
    {
        ulong p;
        Check(A.cuMemAlloc_v2(&p, (nuint)bytes), "cuMemAlloc_v2");
        return p;
    }

    public static void MemFree(ulong devicePointer) => Check(A.cuMemFree_v2(devicePointer), "cuMemFree_v2");

    public static void MemcpyHtoDAsync(ulong dst, void* src, ulong bytes, nint stream) =>
        Check(A.cuMemcpyHtoDAsync_v2(dst, src, (nuint)bytes, stream), "cuMemcpyHtoDAsync_v2");

    /// <summary>Copies a managed span to the device. From pageable memory the driver has staged the data when the call returns,
    /// so the span may change right after; from pinned memory the copy is truly asynchronous and the memory must outlive it.</summary>
    public static void MemcpyHtoDAsync<T>(ulong dst, ReadOnlySpan<T> src, nint stream) where T : unmanaged
    {
        if (src.IsEmpty) return;
        fixed (T* p = src) MemcpyHtoDAsync(dst, p, (ulong)src.Length * (ulong)sizeof(T), stream);
    }

    public static void MemcpyDtoHAsync(void* dst, ulong src, ulong bytes, nint stream) =>
        Check(A.cuMemcpyDtoHAsync_v2(dst, src, (nuint)bytes, stream), "cuMemcpyDtoHAsync_v2");

    /// <summary>Copies device memory into a managed span. Into pageable memory the call returns when the copy is done; into pinned
    /// memory it is asynchronous, so synchronize the stream before reading.</summary>
    public static void MemcpyDtoHAsync<T>(Span<T> dst, ulong src, nint stream) where T : unmanaged
    {
        if (dst.IsEmpty) return;
        fixed (T* p = dst) MemcpyDtoHAsync(p, src, (ulong)dst.Length * (ulong)sizeof(T), stream);
    }

    public static void MemcpyDtoDAsync(ulong dst, ulong src, ulong bytes, nint stream) =>
        Check(A.cuMemcpyDtoDAsync_v2(dst, src, (nuint)bytes, stream), "cuMemcpyDtoDAsync_v2");

    public static void MemsetD8Async(ulong dst, byte value, ulong count, nint stream) =>
        Check(A.cuMemsetD8Async(dst, value, (nuint)count, stream), "cuMemsetD8Async");

    // ---- streams and events ----

    public static nint StreamCreate(uint flags = StreamNonBlocking)
    {
        nint s;
        Check(A.cuStreamCreate(&s, flags), "cuStreamCreate");
        return s;
    }

    public static void StreamSynchronize(nint stream) => Check(A.cuStreamSynchronize(stream), "cuStreamSynchronize");

    public static void StreamDestroy(nint stream) => Check(A.cuStreamDestroy_v2(stream), "cuStreamDestroy_v2");

    public static nint EventCreate(uint flags = EventDefault)
    {
        nint e;
        Check(A.cuEventCreate(&e, flags), "cuEventCreate");
        return e;
    }

    public static void EventRecord(nint ev, nint stream) => Check(A.cuEventRecord(ev, stream), "cuEventRecord");

    public static void EventSynchronize(nint ev) => Check(A.cuEventSynchronize(ev), "cuEventSynchronize");

    /// <summary>Milliseconds between two recorded, completed events.</summary>
    public static float EventElapsedTime(nint start, nint end)
    {
        float ms;
        Check(A.cuEventElapsedTime(&ms, start, end), "cuEventElapsedTime");
        return ms;
    }

    public static void EventDestroy(nint ev) => Check(A.cuEventDestroy_v2(ev), "cuEventDestroy_v2");

    // ---- modules and launches ----

    /// <summary>Loads a CUBIN (ELF) or PTX image; PTX text is given its terminating NUL when it lacks one.</summary>
    public static nint ModuleLoadData(ReadOnlySpan<byte> image)
    {
        if (image.IsEmpty) throw new ArgumentException("The module image is empty.", nameof(image));
        bool elf = image.Length >= 4 && image[0] == 0x7F && image[1] == (byte)'E' && image[2] == (byte)'L' && image[3] == (byte)'F';
        byte[]? copy = null;
        if (!elf && image[^1] != 0)
        {
            copy = new byte[image.Length + 1];
            image.CopyTo(copy);
            image = copy;
        }
        nint module;
        fixed (byte* p = image) Check(A.cuModuleLoadData(&module, p), "cuModuleLoadData");
        return module;
    }

    public static nint ModuleGetFunction(nint module, string name)
    {
        nint f;
        byte[] utf8 = NulTerminated(name);
        int r;
        fixed (byte* p = utf8) r = A.cuModuleGetFunction(&f, module, p);
        if (r != 0)
            throw new CudaException("cuModuleGetFunction", r, ErrorName(r),
                (ErrorString(r) ?? "") + $"; no kernel named '{name}' (declare it extern \"C\" __global__ so that its name is not mangled)");
        return f;
    }

    public static void ModuleUnload(nint module) => Check(A.cuModuleUnload(module), "cuModuleUnload");

    /// <summary>A compiled kernel's attribute: its registers per thread, its local memory per thread (spills), its static shared memory.</summary>
    public static int FuncGetAttribute(nint function, CuFunctionAttribute attribute)
    {
        int v;
        Check(A.cuFuncGetAttribute(&v, (int)attribute, function), "cuFuncGetAttribute");
        return v;
    }

    public static void FuncSetAttribute(nint function, CuFunctionAttribute attribute, int value) =>
        Check(A.cuFuncSetAttribute(function, (int)attribute, value), "cuFuncSetAttribute");

    public static void LaunchKernel(nint function, Dim3 grid, Dim3 block, uint sharedMemBytes, nint stream, void** kernelParams) =>
        Check(A.cuLaunchKernel(function, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z, sharedMemBytes, stream, kernelParams, null), "cuLaunchKernel");

    public static void LaunchKernel(nint function, Dim3 grid, Dim3 block, uint sharedMemBytes, nint stream, KernelArguments args) =>
        LaunchKernel(function, grid, block, sharedMemBytes, stream, args.Pointers);

    // ---- graphs ----

    public static void StreamBeginCapture(nint stream, CuStreamCaptureMode mode = CuStreamCaptureMode.ThreadLocal) =>
        Check(A.cuStreamBeginCapture_v2(stream, (int)mode), "cuStreamBeginCapture_v2");

    /// <summary>Ends the capture and returns the captured CUgraph.</summary>
    public static nint StreamEndCapture(nint stream)
    {
        nint graph;
        Check(A.cuStreamEndCapture(stream, &graph), "cuStreamEndCapture");
        return graph;
    }

    public static nint GraphInstantiate(nint graph, ulong flags = 0)
    {
        nint exec;
        Check(A.cuGraphInstantiateWithFlags(&exec, graph, flags), "cuGraphInstantiateWithFlags");
        return exec;
    }

    public static void GraphLaunch(nint graphExec, nint stream) => Check(A.cuGraphLaunch(graphExec, stream), "cuGraphLaunch");

    public static void GraphExecDestroy(nint graphExec) => Check(A.cuGraphExecDestroy(graphExec), "cuGraphExecDestroy");

    public static void GraphDestroy(nint graph) => Check(A.cuGraphDestroy(graph), "cuGraphDestroy");

    internal static byte[] NulTerminated(string s)
    {
        int n = System.Text.Encoding.UTF8.GetByteCount(s);
        var b = new byte[n + 1];
        System.Text.Encoding.UTF8.GetBytes(s, b);
        return b;
    }
}
