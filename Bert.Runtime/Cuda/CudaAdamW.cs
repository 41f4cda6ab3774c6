namespace Bert.Runtime.Cuda;

/// <summary>AdamW on the device, the twin of <see cref="Training.AdamW{T}"/> (PyTorch's update, decay only where
/// ParamInfo.Decay), with global-norm clipping as <c>clip_grad_norm_</c> computed on the device in fixed chunks: one fused
/// pass over the flat buffers per step, fp32 moments (the master weights are the fp32 parameters).</summary>
public sealed class CudaAdamW : IDisposable
{
    const long NormChunk = 1 << 16;
    readonly CudaModel _model;
    readonly ulong _m, _v, _decay, _partial, _norm;
    readonly long _n;
    readonly int _parts;
    readonly double[] _normHost = new double[2];

    public CudaAdamW(CudaModel model, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-6, double weightDecay = 0.01)
    {
        _model = model;
        Beta1 = beta1; Beta2 = beta2; Epsilon = epsilon; WeightDecay = weightDecay;
        _n = Math.Max(1, model.Info.ParameterCount);
        model.Device.MakeCurrent();
        _m = CudaDriver.MemAlloc((ulong)_n * 4);
        _v = CudaDriver.MemAlloc((ulong)_n * 4);
        _decay = CudaDriver.MemAlloc((ulong)_n);
        _parts = (int)((_n + NormChunk - 1) / NormChunk);
        _partial = CudaDriver.MemAlloc((ulong)_parts * 8);
        _norm = CudaDriver.MemAlloc(16);
        var mask = new byte[_n];
        foreach (var p in model.Info.Parameters)
            if (p.Decay) mask.AsSpan((int)p.Offset, (int)p.Length).Fill(1);
        CudaDriver.MemcpyHtoDAsync<byte>(_decay, mask, model.Stream);
        CudaDriver.MemsetD8Async(_m, 0, (ulong)_n * 4, model.Stream);
        CudaDriver.MemsetD8Async(_v, 0, (ulong)_n * 4, model.Stream);
        _normHost[0] = 0; _normHost[1] = 1; // no clipping until ComputeNorm runs
        CudaDriver.MemcpyHtoDAsync<double>(_norm, _normHost, model.Stream);
        model.Synchronize();
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Epsilon { get; }
    public double WeightDecay { get; }
    public long StepCount { get; private set; }

    /// <summary>The gradients' global 2-norm (Σ g² in fixed chunks, in double), clipping the gradients on the device to
    /// <paramref name="maxNorm"/> when above it (0: no clipping). Does not wait for the stream.</summary>
    public void ComputeNorm(double maxNorm)
    {
        var ex = _model.Exec;
        using (var a = new KernelArguments().Add(_partial).Add(_model.GradientsPointer).Add(_n).Add(NormChunk))
            CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_sumsq_partial"), (uint)_parts, CudaKernels.Block, 0, ex.Stream, a);
        using (var a = new KernelArguments().Add(_norm).Add(_partial).Add(_parts).Add(maxNorm))
            CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_norm_finish"), 1, 32, 0, ex.Stream, a);
    }

    /// <summary>The norm of the last <see cref="ComputeNorm"/> (waits for the stream).</summary>
    public double LastNorm
    {
        get
        {
            CudaDriver.MemcpyDtoHAsync<double>(_normHost, _norm, _model.Stream);
            _model.Synchronize();
            return _normHost[0];
        }
    }

    /// <summary>One update with learning rate <paramref name="lr"/> after <see cref="ComputeNorm"/> (whose clipping scale it
    /// applies to the gradients first). Does not wait for the stream.</summary>
    public void Step(double lr)
    {
        long t = ++StepCount;
        double bc1 = 1 - Math.Pow(Beta1, t), bc2 = 1 - Math.Pow(Beta2, t);
        var ex = _model.Exec;
        using var a = new KernelArguments(256).Add(_model.ParametersPointer).Add(_model.GradientsPointer).Add(_m).Add(_v).Add(_decay).Add(_norm).Add(_n)
            .Add((float)Beta1).Add((float)(1 - Beta1)).Add((float)Beta2).Add((float)(1 - Beta2)).Add((float)(lr / bc1)).Add((float)Math.Sqrt(bc2))
            .Add((float)Epsilon).Add((float)(1 - lr * WeightDecay));
        CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_adamw"), (uint)Math.Min(65535, (_n + 255) / 256), 256, 0, ex.Stream, a);
    }

    /// <summary>Multiplies the gradients by s (the mean over accumulated micro-batches).</summary>
    public void ScaleGradients(float s)
    {
        var ex = _model.Exec;
        using var a = new KernelArguments().Add(_model.GradientsPointer).Add(_n).Add(s);
        CudaDriver.LaunchKernel(CudaDriver.ModuleGetFunction(ex.Module, "rt_scale"), (uint)Math.Min(65535, (_n + 255) / 256), 256, 0, ex.Stream, a);
    }

    /// <summary>Takes the moments and step count of a CPU optimizer (a resumed run).</summary>
    public void SetState(ReadOnlySpan<float> m, ReadOnlySpan<float> v, long step)
    {
        if (m.Length != _n || v.Length != _n) throw new ArgumentException($"The optimizer state has {m.Length} and {v.Length} values; the model has {_n} parameters.");
        CudaDriver.MemcpyHtoDAsync(_m, m, _model.Stream);
        CudaDriver.MemcpyHtoDAsync(_v, v, _model.Stream);
        _model.Synchronize();
        StepCount = step;
    }

    /// <summary>Copies the moments into CPU spans (for a checkpoint); returns the step count.</summary>
    public long GetState(Span<float> m, Span<float> v)
    {
        CudaDriver.MemcpyDtoHAsync(m, _m, _model.Stream);
        CudaDriver.MemcpyDtoHAsync(v, _v, _model.Stream);
        _model.Synchronize();
        return StepCount;
    }

    public float[] FirstMoment() => Read(_m);
    public float[] SecondMoment() => Read(_v);

    float[] Read(ulong p)
    {
        var h = new float[_n];
        CudaDriver.MemcpyDtoHAsync<float>(h, p, _model.Stream);
        _model.Synchronize();
        return h;
    }

    public void Dispose()
    {
        foreach (ulong p in new[] { _m, _v, _decay, _partial, _norm }) CudaDriver.MemFree(p);
    }
}
