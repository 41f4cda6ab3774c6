using Bert.Runtime.Training;

namespace Bert.Runtime.Cuda;

/// <summary>Runs a training loop's steps on a CUDA device while the CPU <see cref="Model{T}"/> stays the model of record:
/// the CPU model is bound with <see cref="Model{T}.InputsOnly"/> (the data pipeline sets its inputs, no arena), the device
/// takes the inputs, runs forward, backward, clipping and AdamW, and the weights and optimizer state come back to the CPU
/// model only when a checkpoint is saved or the CPU evaluates.</summary>
public sealed class CudaTrainer : IDisposable
{
    readonly CudaModel _gpu;
    readonly CudaAdamW _opt;
    readonly InputInfo[] _intInputs;

    /// <param name="tf32">Matrix products on TF32 tensor cores (about 1e-3 relative, several times faster) instead of exact fp32.</param>
    public CudaTrainer(ModelInfo info, ICudaProgram program, CudaDevice device, double weightDecay, bool tf32 = true, KernelCache? cache = null)
    {
        _gpu = new CudaModel(info, program, device, cache) { AllowTf32 = tf32 };
        Tf32 = tf32;
        _opt = new CudaAdamW(_gpu, weightDecay: weightDecay);
        _intInputs = info.Inputs.Where(i => i.Kind != InputKind.Tensor).ToArray();
    }

    public CudaModel Model => _gpu;
    public bool Tf32 { get; }
    public string Describe() => _gpu.Device.Describe() + (Tf32 ? ", fp32 with TF32 products" : ", fp32");

    /// <summary>The CPU model's weights and the CPU optimizer's state to the device (at the start, and after a resume).</summary>
    public void Upload(Model<float> cpu, Optimizer<float> optimizer)
    {
        if (optimizer is not AdamW<float>)
            throw new ArgumentException("On a CUDA device the optimizer is AdamW; LAMB runs on the CPU only (--optimizer adamw, or --device cpu).");
        _gpu.SetParameters(cpu.Parameters);
        _opt.SetState(optimizer.FirstMoment, optimizer.SecondMoment, optimizer.StepCount);
    }

    /// <summary>The device's weights and optimizer state back to the CPU model (before saving or evaluating there).</summary>
    public void Download(Model<float> cpu, Optimizer<float> optimizer)
    {
        _gpu.GetParameters().CopyTo(cpu.Parameters);
        optimizer.StepCount = _opt.GetState(optimizer.FirstMoment, optimizer.SecondMoment);
    }

    public void ZeroGradients() => _gpu.ZeroGradients();

    /// <summary>One micro-batch, forward and backward, on the inputs the CPU model was bound with; returns the loss.</summary>
    public float ForwardBackward(Model<float> cpu, bool training, ulong seed)
    {
        _gpu.Bind(cpu.Batch, cpu.Seq, cpu.Rows, training: true);
        foreach (var i in _intInputs) _gpu.SetInput(i.Name, cpu.IntInput(i.Name));
        _gpu.Forward(training, seed);
        float loss = _gpu.ReadBuffer(_gpu.Info.OutputBuffer)[0];
        if (float.IsFinite(loss)) _gpu.Backward();
        return loss;
    }

    /// <summary>Averages accumulated gradients, clips them to <paramref name="clipNorm"/> and returns their norm before
    /// clipping (waits for the device); a non-finite norm leaves them as they are.</summary>
    public double ClipGradients(int accumulate, double clipNorm)
    {
        if (accumulate > 1) _opt.ScaleGradients(1f / accumulate);
        _opt.ComputeNorm(clipNorm);
        return _opt.LastNorm;
    }

    public void Step(double lr) => _opt.Step(lr);

    public void Dispose()
    {
        _opt.Dispose();
        _gpu.Dispose();
    }
}
