using Bert.Runtime.Training;

namespace Bert.Runtime.Cuda;

/// <summary>What the device optimizers share, the twin of <see cref="Optimizer{T}"/>: fp32 moments m and v over the flat
/// buffer (the master weights are the fp32 parameters), the step count, the per-element decay mask (ParamInfo.Decay), and
/// global-norm clipping as <c>clip_grad_norm_</c> computed on the device in fixed chunks. Nothing here waits for the
/// stream except the read-backs.</summary>
public abstract class CudaOptimizer : IDisposable
{
    const long NormChunk = 1 << 16;
    private protected readonly CudaModel Model;
    private protected readonly ulong M, V, DecayMask, Norm;
    private protected readonly long N;
    readonly ulong _partial;
    readonly int _parts;
    readonly double[] _normHost = new double[2];

    private protected CudaOptimizer(CudaModel model, double beta1, double beta2, double epsilon, double weightDecay)
    {
        Model = model;
        Beta1 = beta1; Beta2 = beta2; Epsilon = epsilon; WeightDecay = weightDecay;
        N = Math.Max(1, model.Info.ParameterCount);
        model.Device.MakeCurrent();
        M = CudaDriver.MemAlloc((ulong)N * 4);
        V = CudaDriver.MemAlloc((ulong)N * 4);
        DecayMask = CudaDriver.MemAlloc((ulong)N);
        _parts = (int)((N + NormChunk - 1) / NormChunk);
        _partial = CudaDriver.MemAlloc((ulong)_parts * 8);
        Norm = CudaDriver.MemAlloc(16);
        var mask = new byte[N];
        foreach (var p in model.Info.Parameters)
            if (p.Decay) mask.AsSpan((int)p.Offset, (int)p.Length).Fill(1);
        CudaDriver.MemcpyHtoDAsync<byte>(DecayMask, mask, model.Stream);
        CudaDriver.MemsetD8Async(M, 0, (ulong)N * 4, model.Stream);
        CudaDriver.MemsetD8Async(V, 0, (ulong)N * 4, model.Stream);
        _normHost[0] = 0; _normHost[1] = 1; // no clipping until ComputeNorm runs
        CudaDriver.MemcpyHtoDAsync<double>(Norm, _normHost, model.Stream);
        model.Synchronize();
    }

    /// <summary>The device twin of a CPU optimizer (AdamW or LAMB), with its hyperparameters; its state is not copied (see
    /// <see cref="SetState"/>).</summary>
    public static CudaOptimizer Like(CudaModel model, Optimizer<float> cpu) => cpu switch
    {
        AdamW<float> => new CudaAdamW(model, cpu.Beta1, cpu.Beta2, cpu.Epsilon, cpu.WeightDecay),
        Lamb<float> => new CudaLamb(model, cpu.Beta1, cpu.Beta2, cpu.Epsilon, cpu.WeightDecay),
        _ => throw new ArgumentException($"There is no device twin of the optimizer {cpu.GetType().Name}; use AdamW or LAMB.", nameof(cpu)),
    };

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Epsilon { get; }
    public double WeightDecay { get; }
    public long StepCount { get; private protected set; }

    /// <summary>The gradients' global 2-norm (Σ g² in fixed chunks, in double), recording the clipping scale to
    /// <paramref name="maxNorm"/> (0: no clipping) that the next <see cref="Step"/> applies. Does not wait for the stream.</summary>
    public void ComputeNorm(double maxNorm)
    {
        var ex = Model.Exec;
        using (var a = new KernelArguments().Add(_partial).Add(Model.GradientsPointer).Add(N).Add(NormChunk))
            CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_sumsq_partial"), (uint)_parts, CudaKernels.Block, 0, ex.Stream, a);
        using (var a = new KernelArguments().Add(Norm).Add(_partial).Add(_parts).Add(maxNorm))
            CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_norm_finish"), 1, 32, 0, ex.Stream, a);
    }

    /// <summary>The norm of the last <see cref="ComputeNorm"/> (waits for the stream).</summary>
    public double LastNorm
    {
        get
        {
            CudaDriver.MemcpyDtoHAsync<double>(_normHost, Norm, Model.Stream);
            Model.Synchronize();
            return _normHost[0];
        }
    }

    /// <summary>One update with learning rate <paramref name="lr"/> after <see cref="ComputeNorm"/>, whose clipping scale
    /// applies to the gradients first. Does not wait for the stream.</summary>
    public void Step(double lr)
    {
        if (!(lr >= 0 && double.IsFinite(lr)))
            throw new ArgumentOutOfRangeException(nameof(lr), $"The learning rate {lr} must be zero or positive and finite.");
        // In bf16 precision the update writes the products' bf16 weight copy in the same pass, if the copy was current (a
        // stale one may differ where no update reaches: it is made again before the next forward).
        bool copy = Model.Precision == CudaPrecision.Bf16 && Model.Bf16WeightsCurrent;
        Apply(lr, ++StepCount, copy ? Model.Exec.Params16 : 0UL);
        if (!copy) Model.ParametersChanged();
    }

    /// <summary>The update for step t (1-based); <paramref name="params16"/> (0: none) receives the new parameters in bf16.</summary>
    private protected abstract void Apply(double lr, long t, ulong params16);

    /// <summary>Multiplies the gradients by s (the mean over accumulated micro-batches).</summary>
    public void ScaleGradients(float s)
    {
        var ex = Model.Exec;
        using var a = new KernelArguments().Add(Model.GradientsPointer).Add(N).Add(s);
        CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_scale"), ElementGrid, 256, 0, ex.Stream, a);
    }

    /// <summary>Blocks of 256 threads for a grid-stride pass over the flat buffer.</summary>
    private protected uint ElementGrid => (uint)Math.Min(65535, (N + 255) / 256);

    /// <summary>Takes the moments and step count of a CPU optimizer (a resumed run).</summary>
    public void SetState(ReadOnlySpan<float> m, ReadOnlySpan<float> v, long step)
    {
        if (m.Length != N || v.Length != N) throw new ArgumentException($"The optimizer state has {m.Length} and {v.Length} values; the model has {N} parameters.");
        CudaDriver.MemcpyHtoDAsync(M, m, Model.Stream);
        CudaDriver.MemcpyHtoDAsync(V, v, Model.Stream);
        Model.Synchronize();
        StepCount = step;
    }

    /// <summary>Copies the moments into CPU spans (for a checkpoint); returns the step count.</summary>
    public long GetState(Span<float> m, Span<float> v)
    {
        CudaDriver.MemcpyDtoHAsync(m, M, Model.Stream);
        CudaDriver.MemcpyDtoHAsync(v, V, Model.Stream);
        Model.Synchronize();
        return StepCount;
    }

    public float[] FirstMoment() => Read(M);
    public float[] SecondMoment() => Read(V);

    float[] Read(ulong p)
    {
        var h = new float[N];
        CudaDriver.MemcpyDtoHAsync<float>(h, p, Model.Stream);
        Model.Synchronize();
        return h;
    }

    public virtual void Dispose()
    {
        foreach (ulong p in new[] { M, V, DecayMask, _partial, Norm }) CudaDriver.MemFree(p);
    }
}

/// <summary>AdamW on the device, the twin of <see cref="AdamW{T}"/> (PyTorch's update, decay only where ParamInfo.Decay):
/// one fused pass over the flat buffers per step, the clipping scale applied in the same pass.</summary>
public sealed class CudaAdamW(CudaModel model, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-6, double weightDecay = 0.01)
    : CudaOptimizer(model, beta1, beta2, epsilon, weightDecay)
{
    private protected override void Apply(double lr, long t, ulong params16)
    {
        double bc1 = 1 - Math.Pow(Beta1, t), bc2 = 1 - Math.Pow(Beta2, t);
        var ex = Model.Exec;
        using var a = new KernelArguments(256).Add(Model.ParametersPointer).Add(Model.GradientsPointer).Add(M).Add(V).Add(DecayMask).Add(Norm).Add(N)
            .Add((float)Beta1).Add((float)(1 - Beta1)).Add((float)Beta2).Add((float)(1 - Beta2)).Add((float)(lr / bc1)).Add((float)Math.Sqrt(bc2))
            .Add((float)Epsilon).Add((float)(1 - lr * WeightDecay)).Add(params16);
        // Four elements a thread (16-byte accesses; every buffer is an allocation of its own, so aligned): the same bits as rt_adamw.
        CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_adamw4"), (uint)Math.Min(65535, (N / 4 + 255) / 256 + 1), 256, 0, ex.Stream, a);
    }
}

/// <summary>LAMB on the device, the twin of <see cref="Lamb{T}"/>: the Adam direction with decoupled decay, then each
/// tensor moves by lr·(‖w‖ / ‖u‖)·u. Four launches per step (direction, per-piece norms, per-tensor trust ratios, update)
/// over the CPU optimizer's pieces, so the norms are summed in the same fixed order every run. After a step the gradient
/// buffer holds the update direction u (the gradients are spent).</summary>
public sealed class CudaLamb : CudaOptimizer
{
    readonly ulong _pieces, _pieceTensor, _firstPiece, _part, _scale, _ratios;
    readonly int _pieceCount, _tensors;

    public CudaLamb(CudaModel model, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-6, double weightDecay = 0.01)
        : base(model, beta1, beta2, epsilon, weightDecay)
    {
        var (pieces, pieceTensor, firstPiece) = PieceLayout(model.Info.Parameters);
        _pieceCount = pieceTensor.Length;
        _tensors = firstPiece.Length - 1;
        _pieces = Upload(_pieceCount > 0 ? pieces : new int[2]);
        _pieceTensor = Upload(_pieceCount > 0 ? pieceTensor : new int[1]);
        _firstPiece = Upload(firstPiece);
        _part = CudaDriver.MemAlloc((ulong)Math.Max(2, pieces.Length) * 8);
        _scale = CudaDriver.MemAlloc((ulong)Math.Max(1, _tensors) * 4);
        _ratios = CudaDriver.MemAlloc((ulong)Math.Max(1, _tensors) * 8);
        model.Synchronize();
    }

    /// <summary>The pieces the kernels run over, the CPU <see cref="Lamb{T}"/>'s: stretches of one tensor, cut at tensors and
    /// at fixed 32 Ki-element chunks. Pieces: start and end of piece k at [2k], [2k + 1]; PieceTensor: its tensor (buffer
    /// order, empty tensors left out); FirstPiece: tensor j's pieces are FirstPiece[j] .. FirstPiece[j + 1] - 1.</summary>
    public static (int[] Pieces, int[] PieceTensor, int[] FirstPiece) PieceLayout(IReadOnlyList<ParamInfo> parameters)
    {
        var layout = new ParameterChunks(parameters);
        int count = layout.PieceStart.Length;
        var pieces = new int[2 * count];
        var firstPiece = new int[layout.Decay.Length + 1];
        for (int k = 0; k < count; k++)
        {
            pieces[2 * k] = layout.PieceStart[k]; pieces[2 * k + 1] = layout.PieceEnd[k];
            firstPiece[layout.PieceTensor[k] + 1] = k + 1;   // pieces of a tensor are consecutive and every tensor has one
        }
        return (pieces, layout.PieceTensor, firstPiece);
    }

    ulong Upload(int[] values)
    {
        ulong p = CudaDriver.MemAlloc((ulong)values.Length * 4);
        CudaDriver.MemcpyHtoDAsync<int>(p, values, Model.Stream);
        return p;
    }

    /// <summary>The trust ratio ‖w‖ / ‖u‖ of each tensor (buffer order, empty tensors left out) at the last step (waits
    /// for the stream).</summary>
    public double[] LastTrustRatios()
    {
        var h = new double[_tensors];
        if (_tensors > 0) CudaDriver.MemcpyDtoHAsync<double>(h, _ratios, Model.Stream);
        Model.Synchronize();
        return h;
    }

    private protected override void Apply(double lr, long t, ulong params16)
    {
        if (_pieceCount == 0) return;
        var ex = Model.Exec;
        using (var a = new KernelArguments(256).Add(Model.GradientsPointer).Add(M).Add(V).Add(Model.ParametersPointer).Add(DecayMask).Add(Norm).Add(N)
            .Add((float)Beta1).Add((float)(1 - Beta1)).Add((float)Beta2).Add((float)(1 - Beta2)).Add((float)(1 - Math.Pow(Beta1, t)))
            .Add((float)Math.Sqrt(1 - Math.Pow(Beta2, t))).Add((float)Epsilon).Add((float)WeightDecay))
            CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_lamb_direction"), ElementGrid, 256, 0, ex.Stream, a);
        using (var a = new KernelArguments().Add(_part).Add(Model.ParametersPointer).Add(Model.GradientsPointer).Add(_pieces))
            CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_lamb_norms"), (uint)_pieceCount, CudaKernels.Block, 0, ex.Stream, a);
        using (var a = new KernelArguments().Add(_scale).Add(_ratios).Add(_part).Add(_firstPiece).Add(_tensors).Add(lr))
            CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_lamb_ratios"), (uint)((_tensors + 127) / 128), 128, 0, ex.Stream, a);
        using (var a = new KernelArguments().Add(Model.ParametersPointer).Add(Model.GradientsPointer).Add(_scale).Add(_pieces).Add(_pieceTensor).Add(params16))
            CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_lamb_apply"), (uint)_pieceCount, CudaKernels.Block, 0, ex.Stream, a);
    }

    public override void Dispose()
    {
        foreach (ulong p in new[] { _pieces, _pieceTensor, _firstPiece, _part, _scale, _ratios }) CudaDriver.MemFree(p);
        base.Dispose();
    }
}
