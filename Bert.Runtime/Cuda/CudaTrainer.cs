using Bert.Runtime.Training;

namespace Bert.Runtime.Cuda;

/// <summary>Runs a training loop's steps on a CUDA device while the CPU <see cref="Model{T}"/> stays the model of record:
/// the CPU model is bound with <see cref="Model{T}.InputsOnly"/> (the data pipeline sets its inputs, no arena), the device
/// takes the inputs, runs forward, backward, clipping and the optimizer (AdamW or LAMB), and the weights and optimizer state come back to the CPU
/// model only when a checkpoint is saved or the CPU evaluates.</summary>
public sealed class CudaTrainer : IDisposable, IModelRunner<float>
{
    readonly CudaModel _gpu;
    CudaOptimizer? _optimizer;
    readonly InputInfo[] _intInputs;
    readonly int[] _probabilities;

    CudaOptimizer _opt => _optimizer ?? throw new InvalidOperationException("Upload the CPU model and its optimizer before training on the device.");

    /// <param name="precision">How the matrix products treat their operands (TF32 by default: about 1e-3 relative and several
    /// times faster than exact fp32; bf16 rounds the linear layers' operands to bf16).</param>
    public CudaTrainer(ModelInfo info, ICudaProgram program, CudaDevice device, CudaPrecision precision = CudaPrecision.Tf32, KernelCache? cache = null)
    {
        _gpu = new CudaModel(info, program, device, cache) { Precision = precision };
        _intInputs = info.Inputs.Where(i => i.Kind != InputKind.Tensor).ToArray();
        _probabilities = info.Ops.Where(o => o.Kind == OpKind.CrossEntropy).Select(o => o.Saved[0]).ToArray();
    }

    /// <summary>The CPU model's weights to the device (for inference; training uploads with <see cref="Upload"/>).</summary>
    public void SetParameters(Model<float> cpu) => _gpu.SetParameters(cpu.Parameters);

    /// <summary>Forward on the device for a CPU model bound as usual (its inputs set): the output and every cross-entropy's
    /// probabilities come back into the CPU model's buffers. The device holds the weights last uploaded or trained.</summary>
    public void Forward(Model<float> cpu, bool training, ulong seed)
    {
        _gpu.Bind(cpu.Batch, cpu.Seq, cpu.Rows, training: cpu.BoundForTraining);
        foreach (var i in _intInputs) _gpu.SetInput(i.Name, cpu.IntInput(i.Name));
        _gpu.Forward(training, seed);
        foreach (int id in _probabilities.Append(_gpu.Info.OutputBuffer))
        {
            var dst = cpu.WritableBuffer(id);
            if (!dst.IsEmpty) _gpu.ReadBuffer(id).CopyTo(dst);
        }
    }

    public CudaModel Model => _gpu;
    public string Describe() => _gpu.Device.Describe() + _gpu.Precision switch
    {
        CudaPrecision.Tf32 => ", fp32 with TF32 products",
        CudaPrecision.Bf16 => ", fp32 with bf16 linear-layer products",
        _ => ", fp32",
    } + _gpu.FlashAttentionState switch
    {
        (true, _) => "; attention on the tensor-core flash kernels",
        (false, string why) => $"; {CudaModel.FusedAttentionVariable}=flash ignored: {why}",
        _ => "",
    } + (UseGraphs ? "; training steps replayed as CUDA graphs" : "");

    /// <summary>The CPU model's weights and the CPU optimizer's state to the device (at the start, and after a resume); the
    /// device runs the same optimizer (AdamW or LAMB) with the same hyperparameters.</summary>
    public void Upload(Model<float> cpu, Optimizer<float> optimizer)
    {
        if (_optimizer is not null && _optimizer.GetType() != (optimizer is Lamb<float> ? typeof(CudaLamb) : typeof(CudaAdamW)))
        {
            _optimizer.Dispose(); _optimizer = null;
        }
        _optimizer ??= CudaOptimizer.Like(_gpu, optimizer);
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

    /// <summary>Whether <see cref="ForwardBackward"/> also counts, on the device, how many rows of each cross-entropy
    /// the model got right (<see cref="LastAccuracy"/>): the progress display's accuracies.</summary>
    public bool CountAccuracy { get; set; }

    /// <summary>Per cross-entropy, in order: right and counted rows of the last micro-batch (with <see cref="CountAccuracy"/>).</summary>
    public (int Right, int Total)[] LastAccuracy { get; private set; } = [];

    /// <summary>One micro-batch, forward and backward, on the inputs the CPU model was bound with; returns the loss. The
    /// backward is queued before the loss is read, so it runs even when the loss is not finite: the gradients are then not
    /// fit to apply (the training loop stops on such a loss).</summary>
    public float ForwardBackward(Model<float> cpu, bool training, ulong seed)
    {
        _gpu.Bind(cpu.Batch, cpu.Seq, cpu.Rows, training: true);
        foreach (var i in _intInputs) _gpu.SetInput(i.Name, cpu.IntInput(i.Name));
        // Forward, the loss kept aside, accuracy counted, backward, all queued before the one wait that reads the loss (a
        // non-finite loss stops the training loop, so a backward on it is never applied): one graph replay where a step of
        // the same key was captured, else kernel by kernel, and captured after its second time so.
        if (_gpu.MemoryGeneration != _graphGeneration)
        {
            DropAll();   // they point at memory that moved
            _graphGeneration = _gpu.MemoryGeneration;
        }
        _steps++;
        string? key = UseGraphs ? _gpu.TrainingStepKey(training, CountAccuracy) : null;
        if (key != null && _graphs.TryGetValue(key, out var graph))
        {
            _gpu.ReplayTrainingStep(graph, seed);
            GraphReplays++;
            _graphOrder.Remove(key);      // the most recently used last: eviction drops the least recently used
            _graphOrder.AddLast(key);
        }
        else
        {
            _gpu.Forward(training, seed);
            _gpu.KeepOutput();
            if (CountAccuracy) _gpu.CountAccuracy();
            _gpu.Backward();
            if (key != null) Remember(training);
        }
        float loss = _gpu.ReadKeptOutput();
        if (CountAccuracy) LastAccuracy = _gpu.ReadAccuracy();
        return loss;
    }

    /// <summary>Whether training steps are captured into CUDA graphs and replayed (one launch for the hundreds of kernels
    /// and products of a step), per shape: on unless BERT_CUDA_GRAPHS=0. A replay computes the same bits as the launches.</summary>
    public bool UseGraphs { get; set; } = Environment.GetEnvironmentVariable(GraphsVariable) != "0";
    /// <summary>BERT_CUDA_GRAPHS=0 runs every training step kernel by kernel.</summary>
    public const string GraphsVariable = "BERT_CUDA_GRAPHS";
    /// <summary>Steps replayed from a graph so far, and graphs captured.</summary>
    public long GraphReplays { get; private set; }
    public int GraphsCaptured { get; private set; }
    /// <summary>One sentence on how the micro-batches ran: how many were graph replays, or why graphs were off.</summary>
    public string GraphSummary => GraphsOff is { } why ? $"CUDA graphs off: {why}."
        : UseGraphs ? $"CUDA graphs: {GraphReplays:N0} of {_steps:N0} micro-batches replayed from {GraphsCaptured} captured shape(s)."
        : "CUDA graphs off (BERT_CUDA_GRAPHS=0): every micro-batch ran kernel by kernel.";
    long _steps;

    /// <summary>Why graphs were turned off, if a capture failed (the steps then run kernel by kernel).</summary>
    public string? GraphsOff { get; private set; }

    // Captured steps by key, the most recently used last (a few shapes: pre-training's rows vary by batch), and keys seen.
    const int MaxGraphs = 16;
    readonly Dictionary<string, CudaGraph> _graphs = new();
    readonly LinkedList<string> _graphOrder = new();
    readonly HashSet<string> _seenOnce = new();
    int _graphGeneration = -1;

    /// <summary>After a step ran kernel by kernel: a key seen before is captured (the step just run made every buffer and
    /// pointer array it needs); graphs of another memory generation are dropped.</summary>
    void Remember(bool training)
    {
        string key = _gpu.TrainingStepKey(training, CountAccuracy);   // after the step: its memory generation
        if (_seenOnce.Count > 4096) _seenOnce.Clear();
        if (_seenOnce.Add(key)) return;
        if (GraphsCaptured >= GiveUpAfter && GraphReplays < GraphsCaptured)
        {
            // Shapes vary too much (padding to each batch's longest text, pre-training's masked-row counts): capturing
            // costs more than replaying saves.
            TurnOff($"the step shapes varied too much for graphs to pay ({GraphsCaptured} captured, {GraphReplays} replayed)");
            return;
        }
        try
        {
            var graph = _gpu.CaptureTrainingStep(training, CountAccuracy);
            _graphs[key] = graph;
            _graphOrder.AddLast(key);
            GraphsCaptured++;
            if (_graphOrder.Count > MaxGraphs) Drop(_graphOrder.First!.Value);
        }
        catch (InvalidOperationException) { }   // memory moved during the capture: captured again when the key comes back
        catch (CudaException e)
        {
            if (++_captureFailures >= 2) TurnOff($"capturing a training step failed ({e.Message})");
        }
    }

    /// <summary>Captures before giving up on graphs when fewer steps than that were replayed.</summary>
    const int GiveUpAfter = 64;
    int _captureFailures;

    void TurnOff(string why)
    {
        UseGraphs = false;
        GraphsOff = why + "; the steps run kernel by kernel";
        DropAll();
    }

    void DropAll() { foreach (var k in _graphOrder.ToList()) Drop(k); }

    void Drop(string key)
    {
        if (_graphs.Remove(key, out var g)) g.Dispose();
        _graphOrder.Remove(key);
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
        DropAll();
        _optimizer?.Dispose();
        _gpu.Dispose();
    }
}
