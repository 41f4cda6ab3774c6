using System.Runtime.InteropServices;

namespace Bert.Runtime.Cuda;

/// <summary>A compiled model on a CUDA device (fp32): flat parameters and gradients and an arena laid out by the same
/// memory plan as the CPU's, the model's kernels compiled once by NVRTC (cached on disk), and the generated CUDA schedule.
/// The CPU <see cref="Model{T}"/>'s twin: Bind, SetInput, Forward, Backward, then read results back.</summary>
public sealed unsafe class CudaModel : IDisposable
{
    readonly ICudaProgram _program;
    readonly CudaExec _ex = new();
    readonly InputInfo[] _intInputs;
    readonly int[] _intCapacity;
    ulong _arenaBytes, _scratchBytes;
    bool _bound, _boundTraining, _forwardDone, _disposed;
    (int, int, int, bool, bool, bool) _layoutKey = (-1, -1, -1, false, false, false);

    /// <summary>Opens the model on <paramref name="device"/>: compiles (or takes from <paramref name="cache"/>) its kernels for
    /// the device's architecture, allocates the parameters, and creates the stream and the cuBLAS handle.</summary>
    public CudaModel(ModelInfo info, ICudaProgram program, CudaDevice device, KernelCache? cache = null)
    {
        Info = info;
        _program = program;
        Device = device;
        device.MakeCurrent();
        cache ??= new KernelCache();
        var (source, options, arch) = ProgramFor(info, program, device);   // flash kernels only where they can run
        _source = source;
        Image = cache.GetOrCompile(source, info.Name + ".cu", options, arch);
        _ex.Module = CudaDriver.ModuleLoadData(Image);
        _ex.Stream = CudaDriver.StreamCreate();
        _ex.Blas = new Cublas();
        _ex.Blas.SetStream(_ex.Stream);
        _ex.Blas.SetMathMode(CublasMath.Pedantic); // fp32 products in fp32 (no TF32) unless asked otherwise
        // A workspace of our own: cuBLAS then allocates nothing while a graph is being captured.
        _workspace = CudaDriver.MemAlloc(WorkspaceBytes);
        _ex.Blas.SetWorkspace(_workspace, WorkspaceBytes);
        // cuBLASLt for the products that add their bias themselves (CudaExec.GemmBias), on the same workspace; without the
        // library those products and their bias kernels run as before.
        try { _ex.Lt = new CublasLt(); }
        catch (Exception e) when (e is CudaUnavailableException or CublasException) { _ex.Lt = null; }
        _ex.Workspace = _workspace;
        _ex.WorkspaceBytes = WorkspaceBytes;
        _ex.BiasEpilogue = Environment.GetEnvironmentVariable(BiasEpilogueVariable) is not { } epilogue
            || !(epilogue == "0" || epilogue.Equals("off", StringComparison.OrdinalIgnoreCase));
        string? attention = Environment.GetEnvironmentVariable(FusedAttentionVariable);
        _ex.FusedAttention = string.Equals(attention, "fused", StringComparison.OrdinalIgnoreCase);
        _ex.SplitHeads = string.Equals(attention, "split", StringComparison.OrdinalIgnoreCase);
        _ex.FlashAttention = string.Equals(attention, "flash", StringComparison.OrdinalIgnoreCase);
        _ex.FlashCapable = device.ComputeCapabilityMajor >= 8;
        string? bf16 = Environment.GetEnvironmentVariable(Bf16Variable);
        _ex.Bf16InCublas = string.Equals(bf16, "cublas", StringComparison.OrdinalIgnoreCase);
        _ex.Bf16Outputs = !string.Equals(bf16, "fp32-outputs", StringComparison.OrdinalIgnoreCase);
        _ex.Bf16OutputsInTraining = string.Equals(bf16, "bf16-outputs", StringComparison.OrdinalIgnoreCase);
        long n = Math.Max(1, info.ParameterCount);
        _ex.Params = CudaDriver.MemAlloc((ulong)n * 4);
        _ex.ParamCount = (ulong)info.ParameterCount;
        _ex.Count = CudaDriver.MemAlloc(16);
        _one = CudaDriver.MemAlloc(16);   // the 1.0, 4 bytes on the kept output, 8 bytes on the dropout seed
        _ex.SeedPointer = _one + 8;
        float one = 1f;
        CudaDriver.MemcpyHtoDAsync(_one, &one, 4, _ex.Stream);
        Synchronize();
        _intInputs = info.Inputs.Where(i => i.Kind != InputKind.Tensor).OrderBy(i => i.Index).ToArray();
        _ex.IntPtrs = new ulong[_intInputs.Length == 0 ? 0 : _intInputs.Max(i => i.Index) + 1];
        _intCapacity = new int[_ex.IntPtrs.Length];
        _ex.RunPtrs = new ulong[_ex.IntPtrs.Length];
        _ex.RunCounts = new int[_ex.IntPtrs.Length];
        _runCapacity = new int[_ex.IntPtrs.Length];
        _embedIds = new bool[_ex.IntPtrs.Length];
        _gatherRows = new bool[_ex.IntPtrs.Length];
        _ex.DistinctRows = new bool[_ex.IntPtrs.Length];
        _takesFlash = info.Ops.Any(CudaExec.TakesFlash);
        foreach (var op in info.Ops)
        {
            if (op.Kind == OpKind.Embed && op.IntInput >= 0 && op.IntInput < _embedIds.Length) _embedIds[op.IntInput] = true;
            if (op.Kind == OpKind.Gather && op.IntInput >= 0 && op.IntInput < _gatherRows.Length) _gatherRows[op.IntInput] = true;
        }
    }

    // Embedding ids grouped by id as they are set (training bindings): the device copies, their capacity in ints, which
    // inputs an embedding reads, and the host scratch of the grouping.
    readonly int[] _runCapacity;
    readonly bool[] _embedIds;
    readonly bool[] _gatherRows;
    int[] _groupCounts = [], _grouped = [];

    /// <summary>cuBLAS's workspace, allocated with the model.</summary>
    public const ulong WorkspaceBytes = 32UL << 20;
    /// <summary>Layouts of the size that grew the attention pointer pool that it then holds.</summary>
    public const int HeadPoolLayouts = 8;

    /// <summary>BERT_CUDA_BIAS_EPILOGUE: <c>0</c> or <c>off</c> runs a Linear's (or MatMul's) bias as a kernel after the product instead of in
    /// cuBLASLt's bias epilogue (<see cref="BiasEpilogue"/>).</summary>
    public const string BiasEpilogueVariable = "BERT_CUDA_BIAS_EPILOGUE";

    /// <summary>Whether a Linear whose bias is added by a kernel of its own (y = x·Wᵀ + b, nothing else fused after it) adds it
    /// in the product (cuBLASLt's bias epilogue; on by default where cuBLASLt is found). Change it between steps only.</summary>
    public bool BiasEpilogue { get => _ex.BiasEpilogue; set => _ex.BiasEpilogue = value; }

    /// <summary>Whether cuBLASLt was found (the bias epilogue needs it).</summary>
    public bool HasCublasLt => _ex.Lt != null;

    /// <summary>BERT_CUDA_ATTENTION: <c>flash</c> the tensor-core flash kernels in bf16 (<see cref="FlashAttention"/>),
    /// <c>fused</c> the fused CUDA-core kernels (<see cref="FusedAttention"/>), <c>split</c> head-major copies
    /// (<see cref="SplitHeads"/>); unset, cuBLAS products on the heads where they lie.</summary>
    public const string FusedAttentionVariable = "BERT_CUDA_ATTENTION";

    /// <summary>Attention by the fused kernels instead of cuBLAS batched products around a softmax (head sizes ≤ 128).</summary>
    public bool FusedAttention { get => _ex.FusedAttention; set => _ex.FusedAttention = value; }

    /// <summary>In bf16 precision, attention by the tensor-core flash kernels (head sizes multiples of 8 up to 128; see
    /// <see cref="CudaExec.FlashAttention"/>); BERT_CUDA_ATTENTION=flash.</summary>
    public bool FlashAttention { get => _ex.FlashAttention; set => _ex.FlashAttention = value; }

    /// <summary>Whether the model has an attention whose head size the flash kernels take (their buffers: FlashStatistics).</summary>
    readonly bool _takesFlash;

    /// <summary>Whether attention runs on the flash kernels now (flash chosen, bf16 precision, a head size they take): the
    /// memory plan then gives the probabilities buffers B·H·T floats. Bind lays memory out by it; changing it after Bind
    /// needs another Bind before the next forward.</summary>
    bool FlashLayout => _ex.FlashOn && _takesFlash;

    /// <summary>Whether attention runs on the flash kernels now; and, when they were asked for but do not run, why.</summary>
    public (bool Active, string? WhyNot) FlashAttentionState => !_ex.FlashAttention ? (false, null)
        : FlashLayout ? (true, null)
        : !_ex.FlashCapable ? (false, $"they need bf16 tensor cores (compute capability 8.0 or newer; this card has {Device.ComputeCapabilityMajor}.{Device.ComputeCapabilityMinor})")
        : !_takesFlash ? (false, $"no attention of {Info.Name} has a head size the flash kernels take (a multiple of 8 up to 128)")
        : (false, "they need bf16 precision (--precision bf16)");

    void RequireLayoutForAttention()
    {
        if (_layoutKey.Item6 != FlashLayout)
            throw new InvalidOperationException($"The flash attention was turned {(FlashLayout ? "on" : "off")} (or the precision changed) since Bind, and the room attention's probabilities take depends on it; call Bind again before running the model.");
    }

    /// <summary>BERT_CUDA_BF16=cublas: bf16 products rounded by cuBLAS (see <see cref="Bf16InCublas"/>); =fp32-outputs: every
    /// product writes fp32 (see <see cref="Bf16Outputs"/>); =bf16-outputs: on training bindings too
    /// (<see cref="Bf16OutputsInTraining"/>).</summary>
    public const string Bf16Variable = "BERT_CUDA_BF16";

    /// <summary>In bf16 precision, the products' fp32 operands rounded by cuBLAS (CUBLAS_COMPUTE_32F_FAST_16BF) instead of by our
    /// conversion kernels into bf16 operand buffers; BERT_CUDA_BF16=cublas.</summary>
    public bool Bf16InCublas { get => _ex.Bf16InCublas; set => _ex.Bf16InCublas = value; }

    /// <summary>In bf16 precision, a training step keeps each product's activation operand in bf16 from its first product to the
    /// backward's instead of rounding it per product (CudaExec.Bf16Shadows; on by default; off gives the same bits). Change
    /// it between steps only.</summary>
    public bool Bf16Shadows { get => _ex.Bf16Shadows; set => _ex.Bf16Shadows = value; }

    /// <summary>In bf16 precision, the products whose outputs only fused element-wise kernels read write them in bf16
    /// on inference bindings (CudaExec.Bf16Outputs; on by default; off, BERT_CUDA_BF16=fp32-outputs, to compare).
    /// Change it between steps only.</summary>
    public bool Bf16Outputs { get => _ex.Bf16Outputs; set => _ex.Bf16Outputs = value; }

    /// <summary><see cref="Bf16Outputs"/> on training bindings too (CudaExec.Bf16OutputsInTraining; off by default: it adds
    /// to the bf16 gradients' error; BERT_CUDA_BF16=bf16-outputs).</summary>
    public bool Bf16OutputsInTraining { get => _ex.Bf16OutputsInTraining; set => _ex.Bf16OutputsInTraining = value; }

    /// <summary>LayerNorm's backward in two passes over dy and x (dx, then the weight and bias gradients' partial sums) instead
    /// of one (CudaExec.SeparateLayerNormSums; to time them against each other; the same dx bits).</summary>
    public bool SeparateLayerNormSums { get => _ex.SeparateLayerNormSums; set => _ex.SeparateLayerNormSums = value; }

    /// <summary>Attention's products on head-major copies (strided batched) instead of on the heads where they lie (pointer-array
    /// batched, the default); BERT_CUDA_ATTENTION=split.</summary>
    public bool SplitHeads { get => _ex.SplitHeads; set => _ex.SplitHeads = value; }
    readonly ulong _workspace;

    public ModelInfo Info { get; }
    public CudaDevice Device { get; }
    readonly string _source;

    /// <summary>What NVRTC compiles for a model on this device: the structured kernels, the flash attention's kernels for
    /// the model's head sizes only (each set is seconds of NVRTC's time), the model's fused kernels; the options
    /// (--fmad=false: + and * round as on the CPU, whose twins selftest compares) and the target architecture.</summary>
    public static (string Source, string[] Options, string Architecture) ProgramFor(ModelInfo info, ICudaProgram program, CudaDevice device)
    {
        string arch = Nvrtc.TargetArchitecture(device.ComputeCapabilityMajor, device.ComputeCapabilityMinor);
        string flash = device.ComputeCapabilityMajor < 8 ? ""   // no bf16 mma: the kernels could only trap there
            : string.Concat(info.Ops.Where(CudaExec.TakesFlash)
                .Select(o => o.Shape[^1] / o.Heads).Distinct().Order().Select(CudaKernels.FlashKernels));
        return (CudaKernels.Source + "\n" + flash + program.Source, Nvrtc.Options(arch, extra: "--fmad=false").Skip(1).ToArray(), arch);
    }

    /// <summary>Compiles several models' programs into <paramref name="cache"/> at once, one NVRTC program per thread (NVRTC
    /// needs no context), so that opening them after takes the images from the cache: a self-test of seven models waited
    /// about 50 s for NVRTC one model after the other on an H100's host.</summary>
    public static void Precompile(IEnumerable<(ModelInfo Info, ICudaProgram Program)> models, CudaDevice device, KernelCache cache) =>
        Parallel.ForEach(models, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, m =>
        {
            var (source, options, arch) = ProgramFor(m.Info, m.Program, device);
            cache.GetOrCompile(source, m.Info.Name + ".cu", options, arch);
        });

    /// <summary>Every kernel of this model's program (the structured kernels and the fused ones) with what the driver
    /// reports for it after loading: registers per thread, local memory per thread (above 0: spilled registers or arrays
    /// the compiler could not keep in registers) and static shared memory per block.</summary>
    public IReadOnlyList<(string Name, int Registers, int LocalBytes, int SharedBytes)> KernelResources()
    {
        Device.MakeCurrent();
        var list = new List<(string, int, int, int)>();
        foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(_source, @"extern\s+""C""\s+__global__\s+void\s+(\w+)\s*\("))
        {
            nint f = CudaDriver.ModuleGetFunction(_ex.Module, m.Groups[1].Value);
            list.Add((m.Groups[1].Value, CudaDriver.FuncGetAttribute(f, CuFunctionAttribute.NumRegs),
                CudaDriver.FuncGetAttribute(f, CuFunctionAttribute.LocalSizeBytes), CudaDriver.FuncGetAttribute(f, CuFunctionAttribute.SharedSizeBytes)));
        }
        return list;
    }

    /// <summary>The compiled module (CUBIN or PTX) of this model's kernels.</summary>
    public byte[] Image { get; }
    /// <summary>Share memory between buffers whose lifetimes do not overlap; off gives every buffer its own (to compare).</summary>
    public bool ReuseMemory { get; set; } = true;
    /// <summary>TF32 tensor-core products (faster, about 1e-3 relative) instead of exact fp32.</summary>
    public bool AllowTf32 { set => Precision = value ? CudaPrecision.Tf32 : CudaPrecision.Fp32; }

    /// <summary>How the matrix products treat their operands: exact fp32, TF32, or bf16 (the linear layers).</summary>
    public CudaPrecision Precision
    {
        get => _ex.Precision;
        set
        {
            _ex.Blas.SetMathMode(value == CudaPrecision.Fp32 ? CublasMath.Pedantic : CublasMath.Tf32TensorOp);
            _ex.Precision = value;
            if (value == CudaPrecision.Bf16)
            {
                if (_bound) AllocateGemmScratch(_ex.Batch, _ex.Seq, _ex.Rows);
                if (_bound && _boundTraining) BindShadows(_ex.Batch, _ex.Seq, _ex.Rows);
                if (_ex.Params16 == 0) { _ex.Params16 = CudaDriver.MemAlloc((ulong)Math.Max(1, Info.ParameterCount) * 2); _ex.Generation++; }
                _params16Stale = true;
            }
        }
    }

    // bf16 products read the weights from a bf16 copy of the parameters (CudaExec.Params16), made again before a forward
    // (or a graph replay) after the parameters changed.
    bool _params16Stale = true;

    /// <summary>Tells the model its parameters changed on the device (the optimizers call it after a step; call it after
    /// writing through <see cref="ParametersPointer"/>), so the bf16 copy the products read is made again before the next
    /// forward.</summary>
    public void ParametersChanged() => _params16Stale = true;

    /// <summary>Whether the bf16 weight copy matches the parameters (the optimizers keep it so in bf16 precision).</summary>
    public bool Bf16WeightsCurrent => _ex.Params16 != 0 && !_params16Stale;

    /// <summary>The bf16 weight copy as it is on the device (not made again first; empty before bf16 precision is chosen).</summary>
    public ushort[] ReadBf16Weights()
    {
        if (_ex.Params16 == 0) return [];
        var h = new ushort[Math.Max(1, Info.ParameterCount)];
        CudaDriver.MemcpyDtoHAsync<ushort>(h, _ex.Params16, _ex.Stream);
        Synchronize();
        return h.AsSpan(0, (int)Info.ParameterCount).ToArray();
    }

    /// <summary>In bf16 precision, rounds the parameters into their bf16 copy if they changed since it was made (one launch).</summary>
    void RefreshBf16Weights()
    {
        if (_ex.Precision != CudaPrecision.Bf16 || !_params16Stale) return;
        _ex.ToBf16(_ex.Params16, _ex.Params, Math.Max(1, Info.ParameterCount));
        _params16Stale = false;
    }

    /// <summary>Bytes of the bf16 shadows of the products' activation operands at this shape (<see cref="ModelInfo.Shadows"/>,
    /// CudaExec.ToShadow), each 128-byte aligned; an experiment's build-time memory estimate counts the same.</summary>
    public static long ShadowBytes(ModelInfo info, int batch, int seq, int rows)
    {
        long total = 0;
        foreach (var z in info.Shadows) total += ShadowSpan(z.Eval(batch, seq, rows));
        return total;
    }

    static long ShadowSpan(long elements) => (elements * 2 + 127) & ~127L;

    /// <summary>A training binding in bf16: the shadows' memory (grown, never shrunk) and their offsets at this shape.</summary>
    void BindShadows(int batch, int seq, int rows)
    {
        long need = ShadowBytes(Info, batch, seq, rows);
        if (need > _shadowBytes)
        {
            if (_shadows != 0) CudaDriver.MemFree(_shadows);
            _shadows = CudaDriver.MemAlloc((ulong)need);
            _shadowBytes = need;
            _ex.Generation++;   // what a captured graph points at moved
        }
        var offsets = new long[Info.Shadows.Count];
        long at = 0;
        for (int k = 0; k < offsets.Length; k++) { offsets[k] = at; at += ShadowSpan(Info.Shadows[k].Eval(batch, seq, rows)); }
        _ex.ShadowOffsets = offsets;
        _ex.ShadowBase = _shadows;
    }

    ulong _shadows;
    long _shadowBytes;

    /// <summary>Two bf16 operand slots, each as large as the largest operand of any product of the model at this shape.</summary>
    void AllocateGemmScratch(int batch, int seq, int rows)
    {
        long slot = GemmSlotElements(Info, batch, seq, rows);
        if (slot <= _ex.GemmSlot) return;
        if (_ex.GemmScratch != 0) CudaDriver.MemFree(_ex.GemmScratch);
        _ex.ForgetOperands();
        _ex.GemmScratch = CudaDriver.MemAlloc((ulong)slot * 4); // two slots of 2-byte elements
        _ex.Generation++;   // what a captured graph points at moved
        _ex.GemmSlot = slot;
    }
    /// <summary>Elements of one bf16 operand slot at this shape: the largest operand of any product of the model, rounded
    /// up so that the second slot starts 128-byte aligned (cuBLAS picks its fast kernels on aligned operands). The two
    /// slots take this many floats' bytes; an experiment's build-time memory estimate counts the same.</summary>
    public static long GemmSlotElements(ModelInfo info, int batch, int seq, int rows)
    {
        long slot = 16;
        foreach (var op in info.Ops.Where(o => o.Kind is OpKind.Linear or OpKind.MatMul && o.Operands.Length >= 2))
        {
            var x = op.Operands[0].Shape; var w = op.Operands[1].Shape;
            long r = ModelInfo.ShapeSize(x, batch, seq, rows, to: x.Length - 1), k = x[^1], wn = ModelInfo.ShapeSize(w, batch, seq, rows), o = wn / Math.Max(1, k);
            slot = Math.Max(slot, Math.Max(Math.Max(r * k, r * o), wn));
        }
        return (slot + 63) & ~63L;
    }

    public nint Stream => _ex.Stream;
    public ulong ParametersPointer => _ex.Params;
    public ulong GradientsPointer => _ex.Grads;
    public int Batch => _ex.Batch;
    public int Seq => _ex.Seq;
    public int Rows => _ex.Rows;
    public Action<int>? OnOp { get => _ex.OnOp; set => _ex.OnOp = value; }
    /// <summary>Called before each kernel launch and cuBLAS product with its label (<see cref="CudaExec.OnLaunch"/>).</summary>
    public Action<string>? OnLaunch { get => _ex.OnLaunch; set => _ex.OnLaunch = value; }
    /// <summary>Bytes of device memory held for activations and scratch at the current binding.</summary>
    public ulong ArenaBytes => _arenaBytes + _scratchBytes;

    public void SetParameters(ReadOnlySpan<float> values)
    {
        if (values.Length != Info.ParameterCount) throw new ArgumentException($"{Info.Name} has {Info.ParameterCount} parameters; got {values.Length}.");
        CudaDriver.MemcpyHtoDAsync(_ex.Params, values, _ex.Stream);
        Synchronize();
        ParametersChanged();
    }

    public float[] GetParameters() => Download(_ex.Params, Info.ParameterCount);
    public float[] GetGradients() => _ex.Grads == 0 ? [] : Download(_ex.Grads, Info.ParameterCount);

    public void Bind(int batch, int seq, int rows = 0, bool training = true)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), $"Batch size {batch} must be at least 1.");
        if (seq < 1 || seq > Info.MaxLen) throw new ArgumentOutOfRangeException(nameof(seq), $"Sequence length {seq} is outside 1..{Info.MaxLen} (the model's MaxLen); truncate the input.");
        if (rows < 0) throw new ArgumentOutOfRangeException(nameof(rows), "The number of gathered rows cannot be negative.");
        Device.MakeCurrent();
        bool flash = FlashLayout;
        var key = (batch, seq, rows, training, ReuseMemory, flash);
        if (key != _layoutKey)
        {
            // With the flash attention a probabilities buffer holds B·H·T row statistics instead of B·H·T·T probabilities.
            var stats = flash ? FlashStatistics(Info, batch, seq) : null;
            var (offsets, lengths, total) = Info.Layout(batch, seq, rows, training, ReuseMemory, stats);
            _ex.Offsets = offsets; _ex.Lengths = lengths;
            _ex.ResetBufferState();
            // The attention pointer arrays of this layout; the pool keeps those of earlier layouts (a captured graph of
            // one reads them) until it is full, holding those of several layouts like this one.
            long pool = HeadArrayBytes(Info, batch);
            // A schedule never spans a restart of the pool: with less room left than a whole layout's arrays, start over
            // now (a forward that lost its early arrays to a restart in its middle could not be captured after it).
            if (pool <= _ex.HeadPoolBytes && !_ex.LayoutsInPool.Contains(key) && _ex.HeadPoolFree < pool) _ex.ResetHeads();
            if (pool > _ex.HeadPoolBytes)
            {
                pool *= HeadPoolLayouts;
                if (_ex.HeadPool != 0) CudaDriver.MemFree(_ex.HeadPool);
                _ex.HeadPool = CudaDriver.MemAlloc((ulong)pool);
                _ex.HeadPoolBytes = pool;
                _ex.ResetHeads();
            }
            ulong bytes = (ulong)(total + 16) * 4;
            if (bytes > _arenaBytes)
            {
                if (_ex.Arena != 0) CudaDriver.MemFree(_ex.Arena);
                _ex.Arena = CudaDriver.MemAlloc(bytes);
                _arenaBytes = bytes;
                _ex.ResetHeads();   // the arrays held point into the old arena; moves the generation (graphs are stale)
            }
            long scratch = ScratchFloats(batch, seq, rows);
            if ((ulong)scratch * 4 > _scratchBytes)
            {
                if (_ex.Scratch != 0) CudaDriver.MemFree(_ex.Scratch);
                _ex.Scratch = CudaDriver.MemAlloc((ulong)scratch * 4);
                _ex.Generation++;   // what a captured graph points at moved
                _scratchBytes = (ulong)scratch * 4;
            }
            _ex.ScratchFloats = (long)(_scratchBytes / 4);
            _layoutKey = key;
            _ex.LayoutsInPool.Add(key);
        }
        if (training && _ex.Grads == 0)
        {
            _ex.Grads = CudaDriver.MemAlloc((ulong)Math.Max(1, Info.ParameterCount) * 4);
            _ex.Generation++;   // what a captured graph points at moved
            CudaDriver.MemsetD8Async(_ex.Grads, 0, (ulong)Math.Max(1, Info.ParameterCount) * 4, _ex.Stream);
        }
        _ex.Batch = batch; _ex.Seq = seq; _ex.Rows = rows;
        foreach (var i in _intInputs)
        {
            int n = checked((int)Size(i.Shape));
            if (_intCapacity[i.Index] < n)
            {
                if (_ex.IntPtrs[i.Index] != 0) CudaDriver.MemFree(_ex.IntPtrs[i.Index]);
                _ex.IntPtrs[i.Index] = CudaDriver.MemAlloc((ulong)Math.Max(1, n) * 4);
                _ex.Generation++;   // what a captured graph points at moved
                _intCapacity[i.Index] = n;
            }
            _ex.RunCounts[i.Index] = -1;
            if (training && _embedIds[i.Index] && _runCapacity[i.Index] < CudaExec.GroupedLength((int)n))
            {
                if (_ex.RunPtrs[i.Index] != 0) CudaDriver.MemFree(_ex.RunPtrs[i.Index]);
                _ex.RunPtrs[i.Index] = CudaDriver.MemAlloc((ulong)CudaExec.GroupedLength((int)n) * 4);
                _ex.Generation++;   // what a captured graph points at moved
                _runCapacity[i.Index] = CudaExec.GroupedLength((int)n);
            }
        }
        if (_ex.Precision == CudaPrecision.Bf16) AllocateGemmScratch(batch, seq, rows);
        // Shadows on a training binding in bf16 only: an inference forward rounds per product (nothing reads them after).
        _ex.ShadowBase = 0;
        if (training && _ex.Precision == CudaPrecision.Bf16 && Info.Shadows.Count > 0) BindShadows(batch, seq, rows);
        _bound = true; _boundTraining = training; _forwardDone = false;
        _ex.BackwardMayFollow = training;
    }

    /// <summary>What the structured kernels need beyond the plan: attention's T×T per head (twice in backward with dropout),
    /// LayerNorm's partial column sums, cross-entropy's per-row losses.</summary>
    long ScratchFloats(int batch, int seq, int rows) => ScratchFloats(Info, batch, seq, rows, FlashLayout);

    /// <summary>The lengths the flash layout gives the probabilities buffers of the attentions the flash kernels take: B·H·T
    /// row statistics each (the log-sum-exp per query row) and the dropout keep mask as bits (⌈T/32⌉ words a row,
    /// <see cref="CudaExec.FlashStatisticsFloats"/>) instead of B·H·T·T probabilities; the override of
    /// <see cref="ModelInfo.Layout"/>, for a binding and for the memory estimate.</summary>
    public static Dictionary<int, long> FlashStatistics(ModelInfo info, int batch, int seq)
    {
        var lengths = new Dictionary<int, long>();
        foreach (var op in info.Ops)
            if (CudaExec.TakesFlash(op))
                foreach (int saved in op.Saved) lengths[saved] = CudaExec.FlashStatisticsFloats(batch, op.Heads, seq);
        return lengths;
    }

    /// <summary>Bytes of one layout's attention pointer arrays at this batch size (the pool holds
    /// <see cref="HeadPoolLayouts"/> layouts' worth).</summary>
    public static long HeadArrayBytes(ModelInfo info, int batch) =>
        info.Ops.Where(o => o.Kind == OpKind.Attention).Sum(o => (long)CudaExec.HeadArrays * ((8L * batch * o.Heads + 15) & ~15L));

    /// <summary>The floats of kernel scratch a model binds at this shape: attention's head-major copies and the
    /// probabilities' gradient, LayerNorm's and the embedding's partial sums, the fused kernels' partial sums of broadcast
    /// gradients (the largest of them; an experiment's build-time memory estimate counts the same).</summary>
    /// <param name="flash">With the flash attention: its ops need B·H·T floats (Δ per query row) instead of attention's
    /// head-major copies and T×T blocks (an experiment that declares the flash attention is estimated so at build time).</param>
    public static long ScratchFloats(ModelInfo info, int batch, int seq, int rows, bool flash = false)
    {
        long n = Math.Max(Math.Max((long)batch * seq, rows), batch);
        long s = n + 16;
        foreach (var op in info.Ops)
        {
            int last = op.Shape.Length > 0 ? op.Shape[^1] : 1;
            if (op.Kind == OpKind.Attention)
                s = Math.Max(s, flash && CudaExec.TakesFlash(op) ? (long)batch * op.Heads * seq : CudaExec.AttentionScratch(batch, seq, last, op.Heads));
            if (op.Kind == OpKind.LayerNorm && last > 0) s = Math.Max(s, 2L * ((n + CudaKernels.RowChunk - 1) / CudaKernels.RowChunk) * last);
            // the embedding backward's partials: runs longer than a segment have fewer than 2·len/segment of them
            if (op.Kind == OpKind.Embed) s = Math.Max(s, (2 * n / CudaKernels.EmbedSegmentRows + 1) * last);
        }
        foreach (var k in info.Kernels)
        {
            long out_ = k.Output.Eval(batch, seq, rows);
            var bs = k.Inputs.Select(x => x.Eval(batch, seq, rows)).Where(x => x != out_).ToList();
            if (bs.Count == 0 || bs.Min() == 0) continue;
            long nb = bs.Min(), chunks = (out_ / nb + CudaExec.PointwiseRowChunk - 1) / CudaExec.PointwiseRowChunk;
            s = Math.Max(s, bs.Count * chunks * nb);
        }
        return s;
    }

    long Size(int[] shape) => ModelInfo.ShapeSize(shape, _ex.Batch, _ex.Seq, _ex.Rows);

    void RequireBound() { if (!_bound) throw new InvalidOperationException("Call Bind(batch, seq, rows) before setting inputs or running the model."); }

    public void SetInput(string name, ReadOnlySpan<int> data)
    {
        RequireBound();
        var i = Info.Input(name);
        if (i.Kind == InputKind.Tensor) throw new ArgumentException($"Input '{name}' is a tensor; the CUDA model takes integer inputs only.");
        long n = Size(i.Shape);
        if (data.Length != n) throw new ArgumentException($"Input '{name}' needs {n} values for B={_ex.Batch}, T={_ex.Seq}, G={_ex.Rows} but got {data.Length}.");
        if (n > 0) CudaDriver.MemcpyHtoDAsync(_ex.IntPtrs[i.Index], data, _ex.Stream);
        if (_gatherRows[i.Index]) _ex.DistinctRows[i.Index] = CudaExec.AllDistinct(data);
        if (_boundTraining && _embedIds[i.Index])
        {
            // The embedding backward's rows grouped by id (CudaExec.GroupById); the copy of pageable memory is staged before
            // MemcpyHtoDAsync returns, so the host scratch can be reused at once.
            if (_grouped.Length < CudaExec.GroupedLength(data.Length)) _grouped = new int[CudaExec.GroupedLength(data.Length)];
            int runs = CudaExec.GroupById(data, _grouped, ref _groupCounts);
            if (runs >= 0)
            {
                CudaExec.SegmentRuns(_grouped, data.Length, runs, CudaKernels.EmbedSegmentRows);
                CudaDriver.MemcpyHtoDAsync<int>(_ex.RunPtrs[i.Index], _grouped.AsSpan(0, CudaExec.GroupedLength(data.Length)), _ex.Stream);
            }
            _ex.RunCounts[i.Index] = runs;
        }
    }

    /// <summary>Runs the forward schedule (asynchronously; reading a result waits for it).</summary>
    public void Forward(bool training = false, ulong seed = 0)
    {
        RequireBound();
        RequireLayoutForAttention();
        Device.MakeCurrent();
        _ex.Training = training;
        RefreshBf16Weights();
        _ex.SetSeed(seed);
        _ex.ForgetOperands();
        _ex.BeginForward(); _program.Forward(_ex);
        _forwardDone = true;
    }

    /// <summary>Runs the backward schedule after Forward, accumulating into the gradients; a scalar output is seeded with 1.</summary>
    public void Backward()
    {
        if (!_forwardDone) throw new InvalidOperationException("Call Forward before Backward.");
        RequireLayoutForAttention();
        if (!_boundTraining) throw new InvalidOperationException("This binding is for inference; call Bind(..., training: true) to run Backward.");
        ulong d = _ex.Buf(Info.OutputGradBuffer);
        if (_ex.Lengths[Info.OutputGradBuffer] != 1) throw new InvalidOperationException("The CUDA model seeds only a scalar output's gradient.");
        CudaDriver.MemcpyDtoDAsync(d, _one, 4, _ex.Stream);   // from a device 1.0: nothing on this stack for the stream to read later
        RefreshBf16Weights();
        _ex.ForgetOperands();
        _program.Backward(_ex);
    }

    // A device 1.0f (the scalar output's gradient seed) followed by the output KeepOutput copied (and, 8 bytes on, the
    // dropout seed the kernels read); the per-row results of
    // CountAccuracy with their layout.
    readonly ulong _one;
    ulong Kept => _one + 4;
    ulong _accuracyRows;
    long _accuracyCapacity;
    readonly List<long> _accuracyCounts = [];

    /// <summary>Captures the forward schedule at the bound shape into a CUDA graph: one launch replays all its kernels and
    /// products, reading whatever inputs were set since (SetInput copies into the same device buffers). The dropout seed
    /// and mode are those given here; Bind again (another shape) and the graph no longer applies: capture anew.</summary>
    public CudaGraph CaptureForward(bool training = false, ulong seed = 0)
    {
        RequireBound();
        Device.MakeCurrent();
        Forward(training, seed);   // once outside the capture: every kernel looked up, every lazy allocation made
        Synchronize();
        _ex.Training = training;
        nint graph = Capture(() => { _ex.SetSeed(seed); _ex.BeginForward(); _program.Forward(_ex); });
        _forwardDone = true;
        return new CudaGraph(graph, Instantiate(graph), _ex.Stream, ReplayBefore(_ex.SaveBufferState()));
    }

    /// <summary>Records what <paramref name="body"/> launches on the stream into a graph (thread-local capture mode: nothing
    /// may copy to or from the host, allocate or wait meanwhile); if it throws, the capture is ended and dropped.</summary>
    nint Capture(Action body)
    {
        CudaDriver.StreamBeginCapture(_ex.Stream, CuStreamCaptureMode.ThreadLocal);
        _ex.ForgetOperands();
        _ex.Capturing = true;
        try { body(); }
        catch
        {
            _ex.Capturing = false;
            try { CudaDriver.GraphDestroy(CudaDriver.StreamEndCapture(_ex.Stream)); } catch (CudaException) { }
            throw;
        }
        _ex.Capturing = false;
        return CudaDriver.StreamEndCapture(_ex.Stream);
    }

    /// <summary>Instantiates a captured graph; the graph is destroyed if that fails.</summary>
    static nint Instantiate(nint graph)
    {
        try { return CudaDriver.GraphInstantiate(graph); }
        catch { CudaDriver.GraphDestroy(graph); throw; }
    }

    /// <summary>Changes whenever memory that the schedules point at moves (a captured graph of another value is stale).</summary>
    public int MemoryGeneration => _ex.Generation;

    /// <summary>What a captured training step depends on beyond the inputs' values: the binding's shape, the precision and
    /// attention settings, how each integer input was prepared (rows distinct, ids grouped) and the memory generation. A
    /// step whose key equals a graph's may replay it.</summary>
    public string TrainingStepKey(bool training, bool countAccuracy)
    {
        RequireBound();
        var sb = new System.Text.StringBuilder();
        sb.Append(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{_ex.Batch},{_ex.Seq},{_ex.Rows},{_boundTraining},{ReuseMemory},{training},{countAccuracy},{_ex.Precision},{_ex.FusedAttention},{_ex.FlashAttention},{_ex.SplitHeads},{_ex.Bf16InCublas},{_ex.Bf16Shadows},{_ex.Bf16Outputs},{_ex.Bf16OutputsInTraining},{_ex.SkipUnreadFp32},{_ex.BiasEpilogue},{_ex.Generation};"));
        for (int i = 0; i < _ex.IntPtrs.Length; i++)
            sb.Append(_ex.DistinctRows.Length > i && _ex.DistinctRows[i] ? 'd' : '-').Append(_ex.RunCounts[i] >= 0 ? 'g' : '-');
        return sb.ToString();
    }

    /// <summary>Captures one training micro-batch at the bound shape into a CUDA graph, without running it: the forward, the
    /// loss kept aside (<see cref="KeepOutput"/>), the accuracy counted (with <paramref name="countAccuracy"/>) and the
    /// backward. Run the same step kernel by kernel first at this binding (every kernel looked up, every pointer array and
    /// buffer made); replay with <see cref="ReplayTrainingStep"/>, which sets that step's dropout seed. The graph holds
    /// while <see cref="TrainingStepKey"/> stays the same.</summary>
    public CudaGraph CaptureTrainingStep(bool training, bool countAccuracy)
    {
        RequireBound();
        RequireLayoutForAttention();
        if (!_boundTraining) throw new InvalidOperationException("This binding is for inference; call Bind(..., training: true) to capture a training step.");
        if (_ex.Lengths[Info.OutputGradBuffer] != 1) throw new InvalidOperationException("The CUDA model seeds only a scalar output's gradient.");
        Device.MakeCurrent();
        RefreshBf16Weights();   // outside the graph: its replays remake the copy first when the parameters changed (CudaGraph.Launch)
        if (countAccuracy) SizeAccuracyRows();   // no allocation inside the capture
        _ex.Training = training;
        int generation = _ex.Generation;
        nint graph = Capture(() =>
        {
            _ex.BeginForward(); _program.Forward(_ex);
            _forwardDone = true;
            KeepOutput();
            if (countAccuracy) CountAccuracy();
            CudaDriver.MemcpyDtoDAsync(_ex.Buf(Info.OutputGradBuffer), _one, 4, _ex.Stream);
            _ex.ForgetOperands();
            _program.Backward(_ex);
        });
        if (_ex.Generation != generation)
        {
            CudaDriver.GraphDestroy(graph);
            throw new InvalidOperationException("Memory moved while a training step was being captured; run the step kernel by kernel at this binding first.");
        }
        return new CudaGraph(graph, Instantiate(graph), _ex.Stream, ReplayBefore(_ex.SaveBufferState()))
        {
            AccuracyCounts = countAccuracy ? _accuracyCounts.ToArray() : null,
        };
    }

    /// <summary>Replays a graph of <see cref="CaptureTrainingStep"/> with this step's dropout seed (asynchronous); the inputs are
    /// those set since, the loss is read with <see cref="ReadKeptOutput"/>, the accuracy with <see cref="ReadAccuracy"/>.</summary>
    public void ReplayTrainingStep(CudaGraph graph, ulong seed)
    {
        RequireBound();
        Device.MakeCurrent();
        _ex.SetSeed(seed);
        graph.Launch();
        _forwardDone = true;
        if (graph.AccuracyCounts is { } counts) { _accuracyCounts.Clear(); _accuracyCounts.AddRange(counts); }
    }

    public void ZeroGradients()
    {
        if (_ex.Grads != 0) CudaDriver.MemsetD8Async(_ex.Grads, 0, (ulong)Math.Max(1, Info.ParameterCount) * 4, _ex.Stream);
    }

    public void Synchronize() => CudaDriver.StreamSynchronize(_ex.Stream);

    /// <summary>What a graph's replay does first: the weights' bf16 copy made current, and what the host knows of the buffers
    /// (which a product wrote in bf16, which were left in their bf16 copy alone) set to what the captured schedule did, so
    /// that a backward run after it and <see cref="ReadBuffer"/> read them as that schedule wrote them.</summary>
    Action ReplayBefore(object state) => () => { RefreshBf16Weights(); _ex.RestoreBufferState(state); };

    /// <summary>A buffer of the memory plan, copied back (waits for the stream); one that its product wrote in bf16
    /// (CudaExec.Holds16) widened to the floats its values stand for.</summary>
    public float[] ReadBuffer(int id)
    {
        long n = _ex.Lengths[id];
        if (_ex.Offsets[id] < 0) throw new InvalidOperationException($"Buffer {id} has no memory in this binding.");
        if (_ex.FoldedIntoBias(id))
            throw new InvalidOperationException($"Buffer {id} was never written: its product added the bias after it and wrote the sum instead (cuBLASLt's epilogue); turn BiasEpilogue off (BERT_CUDA_BIAS_EPILOGUE=0) to read it back.");
        if (!_ex.Readable(id))
            throw new InvalidOperationException($"Buffer {id} was not written in fp32: its only readers took the bf16 copy its kernel wrote for them (CudaModel.SkipUnreadFp32); turn SkipUnreadFp32 off to read it back.");
        if (_ex.Fp32SkippedShadow(id) is int k && k >= 0) return Widen(Download(_ex.ShadowAddress(k), (n + 1) / 2), n);
        if (!_ex.Holds16(id)) return Download(_ex.Buf(id), n);
        return Widen(Download(_ex.Buf(id), (n + 1) / 2), n);
    }

    /// <summary>bf16 values, two to a float as they lie in memory, widened to the floats they stand for.</summary>
    static float[] Widen(float[] raw, long n)
    {
        var wide = new float[n];
        for (long i = 0; i < n; i++)
        {
            uint pair = BitConverter.SingleToUInt32Bits(raw[i / 2]);
            wide[i] = BitConverter.UInt32BitsToSingle((i % 2 == 0 ? pair & 0xFFFFu : pair >> 16) << 16);
        }
        return wide;
    }

    /// <summary>Whether <see cref="ReadBuffer"/> reads buffer <paramref name="id"/> from bf16 values (a product wrote it so, or
    /// only its bf16 copy was written).</summary>
    public bool ReadsBf16(int id) => _ex.Holds16(id) || _ex.Fp32SkippedShadow(id) >= 0;

    /// <summary>Whether <see cref="ReadBuffer"/> can read buffer <paramref name="id"/> back: not a value whose only readers took
    /// its bf16 copy from an operand slot (CudaExec.SkipUnreadFp32), nor a product's output its product folded into the sum
    /// with its bias (<see cref="BiasEpilogue"/>).</summary>
    public bool Readable(int id) => _ex.Readable(id);

    /// <summary>In bf16, a value that only products read from the bf16 copy its kernel writes for them is not written in fp32
    /// (CudaExec.SkipUnreadFp32; on by default). Change it between steps only.</summary>
    public bool SkipUnreadFp32 { get => _ex.SkipUnreadFp32; set => _ex.SkipUnreadFp32 = value; }

    /// <summary>Whether buffer <paramref name="id"/> holds bf16 values now (its product wrote it so, CudaExec.Bf16Outputs).</summary>
    public bool HoldsBf16(int id) => _ex.Holds16(id);

    public float[] Output => ReadBuffer(Info.OutputBuffer);

    /// <summary>For each cross-entropy of the model, in order: the rows whose most probable class is their label, and the
    /// rows with a label (not ignored), from the probabilities of the last forward, counted on the device (a few bytes come
    /// back, not the probabilities). Call it before Backward: the backward may reuse the probabilities' memory.</summary>
    public (int Right, int Total)[] CrossEntropyAccuracy()
    {
        CountAccuracy();
        return ReadAccuracy();
    }

    /// <summary>Launches <see cref="CrossEntropyAccuracy"/>'s counting into a buffer of its own without waiting, so that
    /// Backward may follow at once (it may reuse the probabilities' memory, not this buffer); <see cref="ReadAccuracy"/>
    /// reads the counts later.</summary>
    public void CountAccuracy()
    {
        if (!_forwardDone) throw new InvalidOperationException("Call Forward before counting accuracy.");
        var ces = SizeAccuracyRows();
        long at = 0;
        for (int k = 0; k < ces.Count; k++)
        {
            long n = _accuracyCounts[k];
            if (n == 0) continue;
            var op = ces[k];
            _ex.CrossEntropyCorrect(_ex.Buf(op.Saved[0]), _ex.Ints(op.IntInput), checked((int)n), checked((int)(_ex.Lengths[op.Saved[0]] / n)), _accuracyRows + (ulong)at * 4);
            at += n;
        }
    }

    /// <summary>The rows <see cref="CountAccuracy"/> counts per cross-entropy at this binding (its labels, or none where its
    /// probabilities have no memory), and a buffer large enough for them; returns the cross-entropy ops.</summary>
    List<OpInfo> SizeAccuracyRows()
    {
        var ces = Info.Ops.Where(o => o.Kind == OpKind.CrossEntropy).ToList();
        _accuracyCounts.Clear();
        foreach (var op in ces)
            _accuracyCounts.Add(_ex.Offsets[op.Saved[0]] < 0 ? 0 : Size(Info.Inputs.First(i => i.Index == op.IntInput).Shape));
        long total = _accuracyCounts.Sum();
        if (total > _accuracyCapacity)
        {
            if (_accuracyRows != 0) CudaDriver.MemFree(_accuracyRows);
            _accuracyRows = CudaDriver.MemAlloc((ulong)total * 4);
            _ex.Generation++;   // what a captured graph points at moved
            _accuracyCapacity = total;
        }
        return ces;
    }

    /// <summary>The counts of the last <see cref="CountAccuracy"/> (waits for the stream): per cross-entropy, right and
    /// counted rows.</summary>
    public (int Right, int Total)[] ReadAccuracy()
    {
        long all = _accuracyCounts.Sum();
        float[] rows = all > 0 ? Download(_accuracyRows, all) : [];
        var result = new (int, int)[_accuracyCounts.Count];
        long at = 0;
        for (int k = 0; k < _accuracyCounts.Count; k++)
        {
            int r = 0, t = 0;
            for (long i = at; i < at + _accuracyCounts[k]; i++)
            {
                int c = BitConverter.SingleToInt32Bits(rows[i]);
                if (c >= 0) { t++; r += c; }
            }
            result[k] = (r, t);
            at += _accuracyCounts[k];
        }
        return result;
    }

    /// <summary>Keeps the scalar output (the loss) aside on the device without waiting, past a Backward that may reuse the
    /// output's memory; <see cref="ReadKeptOutput"/> reads it later.</summary>
    public void KeepOutput()
    {
        if (_ex.Offsets[Info.OutputBuffer] < 0) throw new InvalidOperationException("The output has no memory in this binding.");
        CudaDriver.MemcpyDtoDAsync(Kept, _ex.Buf(Info.OutputBuffer), 4, _ex.Stream);
    }

    /// <summary>The output last kept by <see cref="KeepOutput"/> (waits for the stream).</summary>
    public float ReadKeptOutput() => Download(Kept, 1)[0];

    /// <summary>Poisons the whole arena, the kernels' scratch and the bf16 operand copies with NaN (so that a buffer no kernel
    /// wrote, or a copy no forward made, shows up in a comparison).</summary>
    public void PoisonArena()
    {
        // 0xFF bytes are a NaN in fp32.
        CudaDriver.MemsetD8Async(_ex.Arena, 0xFF, _arenaBytes, _ex.Stream);
        CudaDriver.MemsetD8Async(_ex.Scratch, 0xFF, _scratchBytes, _ex.Stream);
        // and the bf16 copies of the products' operands (0xFFFF is a NaN in bf16): a product that read one its forward did
        // not make shows up too
        if (_shadows != 0) CudaDriver.MemsetD8Async(_shadows, 0xFF, (ulong)_shadowBytes, _ex.Stream);
        // and the two operand slots, which then hold nothing: a product that took a slot no kernel wrote shows up
        if (_ex.GemmScratch != 0) CudaDriver.MemsetD8Async(_ex.GemmScratch, 0xFF, (ulong)_ex.GemmSlot * 4, _ex.Stream);
        _ex.ForgetOperands();
    }

    /// <summary>Poisons the bf16 weight copy with NaN without marking it stale (so that a value an optimizer step should
    /// have written shows up).</summary>
    public void PoisonBf16Weights()
    {
        if (_ex.Params16 != 0) CudaDriver.MemsetD8Async(_ex.Params16, 0xFF, (ulong)Math.Max(1, Info.ParameterCount) * 2, _ex.Stream);
    }

    float[] Download(ulong src, long n)
    {
        var h = new float[n];
        if (n > 0) CudaDriver.MemcpyDtoHAsync<float>(h, src, _ex.Stream);
        Synchronize();
        return h;
    }

    /// <summary>The kernel module, stream and exec for the optimizer and the timing code (same stream as the schedules).</summary>
    internal CudaExec Exec => _ex;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Device.MakeCurrent();
        try { Synchronize(); } catch (CudaException) { }
        foreach (ulong p in _ex.IntPtrs.Concat(_ex.RunPtrs)) if (p != 0) CudaDriver.MemFree(p);
        foreach (ulong p in new[] { _one, _accuracyRows, _ex.HeadPool }) if (p != 0) CudaDriver.MemFree(p);
        foreach (ulong p in new[] { _ex.Arena, _ex.Scratch, _ex.Params, _ex.Params16, _ex.Grads, _ex.Count, _ex.GemmScratch, _shadows, _workspace }) if (p != 0) CudaDriver.MemFree(p);
        _ex.Blas.Dispose();
        _ex.Lt?.Dispose();
        CudaDriver.StreamDestroy(_ex.Stream);
        CudaDriver.ModuleUnload(_ex.Module);
    }
}

/// <summary>A captured and instantiated CUDA graph, replayed on its stream.</summary>
public sealed class CudaGraph : IDisposable
{
    nint _graph, _exec;
    readonly nint _stream;
    readonly Action _before;

    internal CudaGraph(nint graph, nint exec, nint stream, Action before) { _graph = graph; _exec = exec; _stream = stream; _before = before; }

    /// <summary>A captured training step's rows counted per cross-entropy (how to read the counts it writes), or null.</summary>
    internal long[]? AccuracyCounts { get; init; }

    /// <summary>Enqueues one replay (asynchronous, like the launches it stands for); in bf16 precision, after remaking the
    /// weights' bf16 copy first if the parameters changed since the last forward.</summary>
    public void Launch()
    {
        ObjectDisposedException.ThrowIf(_exec == 0, this);
        _before();
        CudaDriver.GraphLaunch(_exec, _stream);
    }

    public void Dispose()
    {
        if (_exec != 0) { CudaDriver.GraphExecDestroy(_exec); _exec = 0; }
        if (_graph != 0) { CudaDriver.GraphDestroy(_graph); _graph = 0; }
    }
}
