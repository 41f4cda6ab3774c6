using System.Globalization;

namespace Bert.Runtime.Cuda;

/// <summary>An opened CUDA device: its primary context retained and made current on the opening thread, with the properties the
/// runtime chooses kernels by. Dispose releases the primary context.</summary>
public sealed class CudaDevice : IDisposable
{
    private nint _context;

    private CudaDevice(int ordinal, int handle, nint context, string name, int major, int minor, int sms, ulong totalMemory, int driverVersion)
    {
        Ordinal = ordinal; Handle = handle; _context = context; Name = name;
        ComputeCapabilityMajor = major; ComputeCapabilityMinor = minor; MultiprocessorCount = sms;
        TotalMemory = totalMemory; DriverVersion = driverVersion;
    }

    public int Ordinal { get; }
    /// <summary>The CUdevice.</summary>
    public int Handle { get; }
    /// <summary>The retained primary CUcontext.</summary>
    public nint Context
    {
        get
        {
            ObjectDisposedException.ThrowIf(_context == 0, this);
            return _context;
        }
    }
    public string Name { get; }
    public int ComputeCapabilityMajor { get; }
    public int ComputeCapabilityMinor { get; }
    /// <summary>"sm_90" for compute capability 9.0: the NVRTC architecture for this device.</summary>
    public string Architecture => Nvrtc.Architecture(ComputeCapabilityMajor, ComputeCapabilityMinor);
    public int MultiprocessorCount { get; }
    /// <summary>Device memory in bytes.</summary>
    public ulong TotalMemory { get; }
    /// <summary>The driver's CUDA version, 1000·major + 10·minor.</summary>
    public int DriverVersion { get; }

    /// <summary>Opens device <paramref name="ordinal"/>. No driver library, a stub driver, or no device throws
    /// <see cref="CudaUnavailableException"/> with one sentence; other driver failures throw <see cref="CudaException"/>.</summary>
    public static CudaDevice Open(int ordinal = 0)
    {
        CudaDriver.Load(); // CudaUnavailableException naming libcuda.so.1, the places looked and the fix
        int r = CudaDriver.TryInit();
        if (r != 0)
        {
            string name = CudaDriver.ErrorName(r), text = CudaDriver.ErrorString(r) ?? name;
            string lib = CudaDriver.Load().Path;
            throw r switch
            {
                100 => new CudaUnavailableException($"The CUDA driver ({lib}) found no CUDA device (cuInit: {name}); run on a machine with an NVIDIA GPU, or check that the GPU is visible to this process (nvidia-smi, CUDA_VISIBLE_DEVICES, the container's --gpus option)."),
                34 => new CudaUnavailableException($"{lib} is the CUDA toolkit's stub driver, not the real one (cuInit: {name}); install the NVIDIA driver, or set BERT_CUDA_DRIVER to the real libcuda.so.1's path."),
                803 or 804 => new CudaUnavailableException($"The CUDA driver ({lib}) does not match the kernel module (cuInit: {name}, {text}); reboot after a driver update or reinstall the NVIDIA driver."),
                _ => CudaDriver.Error(r, "cuInit"),
            };
        }
        int count = CudaDriver.DeviceGetCount();
        if (count == 0)
            throw new CudaUnavailableException($"The CUDA driver ({CudaDriver.Load().Path}) reports no CUDA device; run on a machine with an NVIDIA GPU, or check that the GPU is visible to this process (nvidia-smi, CUDA_VISIBLE_DEVICES).");
        if (ordinal < 0 || ordinal >= count)
            throw new ArgumentOutOfRangeException(nameof(ordinal), $"Device {ordinal} does not exist; this machine has {count} CUDA device{(count == 1 ? "" : "s")} (0 to {count - 1}).");
        int dev = CudaDriver.DeviceGet(ordinal);
        string devName = CudaDriver.DeviceGetName(dev);
        int major = CudaDriver.DeviceGetAttribute(CuDeviceAttribute.ComputeCapabilityMajor, dev);
        int minor = CudaDriver.DeviceGetAttribute(CuDeviceAttribute.ComputeCapabilityMinor, dev);
        int sms = CudaDriver.DeviceGetAttribute(CuDeviceAttribute.MultiprocessorCount, dev);
        ulong memory = CudaDriver.DeviceTotalMem(dev);
        int version = CudaDriver.DriverGetVersion();
        nint ctx = CudaDriver.DevicePrimaryCtxRetain(dev);
        try { CudaDriver.CtxSetCurrent(ctx); }
        catch { CudaDriver.DevicePrimaryCtxRelease(dev); throw; }
        return new CudaDevice(ordinal, dev, ctx, devName, major, minor, sms, memory, version);
    }

    /// <summary><see cref="Open"/> that reports failure as a sentence in <paramref name="why"/> instead of throwing.</summary>
    public static bool TryOpen(out CudaDevice? device, out string why, int ordinal = 0)
    {
        try
        {
            device = Open(ordinal);
            why = "";
            return true;
        }
        catch (Exception e) when (e is CudaUnavailableException or CudaException or ArgumentOutOfRangeException)
        {
            device = null;
            why = e.Message;
            return false;
        }
    }

    /// <summary>Makes this device's context current on the calling thread (each thread that issues CUDA work needs it once).</summary>
    public void MakeCurrent() => CudaDriver.CtxSetCurrent(Context);

    /// <summary>e.g. "NVIDIA H100 80GB HBM3 (device 0, sm_90, 132 SMs, 79.1 GiB, CUDA driver 12.4)".</summary>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"{Name} (device {Ordinal}, {Architecture}, {MultiprocessorCount} SMs, {TotalMemory / (1024.0 * 1024 * 1024):F1} GiB, CUDA driver {DriverVersion / 1000}.{DriverVersion % 1000 / 10})");

    public override string ToString() => Describe();

    public void Dispose()
    {
        if (_context == 0) return;
        _context = 0;
        CudaDriver.DevicePrimaryCtxRelease(Handle);
    }
}
