using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Bert.Dsl;
using Bert.Runtime.Kernels;

namespace Bert.Runtime;

/// <summary>A compiled model ready to run on the CPU: flat parameters and gradients, an arena sized by the
/// memory plan, and the generated forward and backward schedules.</summary>
public sealed unsafe class Model<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    readonly IModelProgram<T> _program;
    readonly Exec<T> _ex = new();
    T[] _params, _grads = Array.Empty<T>(), _arena = Array.Empty<T>();
    bool _bound, _boundTraining, _boundReuse, _forwardDone;
    readonly InputInfo[] _intInputs;
    (int, int, int, bool, bool) _layoutKey = (-1, -1, -1, false, false);
    long[] _offsets = [], _lengths = [];
    long _total;

    public Model(ModelInfo info, IModelProgram<T> program)
    {
        Info = info;
        _program = program;
        _params = GC.AllocateArray<T>(checked((int)Math.Max(1, info.ParameterCount)), pinned: true);
        _ex.Params = (T*)Unsafe.AsPointer(ref _params[0]);
        _ex.IntData = info.Inputs.Where(i => i.Kind != InputKind.Tensor).OrderBy(i => i.Index).Select(_ => Array.Empty<int>()).ToArray();
        _ex.IntLengths = new int[_ex.IntData.Length];
        _intInputs = info.Inputs.Where(i => i.Kind != InputKind.Tensor).ToArray();
    }

    public ModelInfo Info { get; }
    /// <summary>Bind keeps the integer inputs only, allocating no arena and no gradients: set while another device (a
    /// <c>CudaModel</c>) runs the steps and reads the inputs from here (<see cref="IntInput"/>). Forward needs it off.</summary>
    public bool InputsOnly { get; set; }
    /// <summary>Runs Forward elsewhere (a GPU) when set; Backward stays on the CPU (training on a device uses its own loop).</summary>
    public IModelRunner<T>? Runner { get; set; }
    /// <summary>Whether the current binding is for training (keeps what backward needs).</summary>
    public bool BoundForTraining => _boundTraining;
    /// <summary>Share memory between buffers whose lifetimes do not overlap (the generated plan). Off gives every
    /// buffer its own memory, which must compute exactly the same thing.</summary>
    public bool ReuseMemory { get; set; } = true;
    /// <summary>The flat parameter buffer. Taking it drops the packed copies of the weights an inference binding keeps
    /// (<see cref="PackWeights"/>), so that writes through it are seen; after writing through a span taken before the
    /// last inference forward, call <see cref="WeightsChanged"/>.</summary>
    public Span<T> Parameters { get { WeightsChanged(); return _params.AsSpan(0, (int)Info.ParameterCount); } }

    /// <summary>Inference bindings pack each layer's weight matrix once for the forward's products (the managed GEMM;
    /// the same bits, without re-transposing the weights on every call), at the cost of a second copy of those weights.
    /// On by default.</summary>
    public bool PackWeights { get; set; } = true;

    /// <summary>Drops the packed weights (they are packed again from the current parameters at the next forward).</summary>
    public void WeightsChanged() => _ex.Packs?.Clear();

    /// <summary>The packed weights of the current inference binding, or null.</summary>
    public Kernels.WeightPacks<T>? Packs => _ex.Packs;
    public Span<T> Gradients => _grads.Length == 0 ? Span<T>.Empty : _grads.AsSpan(0, (int)Info.ParameterCount);
    public int Batch => _ex.Batch;
    public int Seq => _ex.Seq;
    public int Rows => _ex.Rows;
    /// <summary>Called with each op's index as the schedules run (profiling).</summary>
    public Action<int>? OnOp { get => _ex.OnOp; set => _ex.OnOp = value; }

    public Span<T> Parameter(string name)
    {
        var p = Info.Parameters.FirstOrDefault(x => x.Name == name || x.HfName == name)
            ?? throw new ArgumentException($"Model {Info.Name} has no parameter '{name}'.");
        WeightsChanged();
        return _params.AsSpan((int)p.Offset, (int)p.Length);
    }

    public Span<T> Gradient(string name)
    {
        var p = Info.Parameters.First(x => x.Name == name || x.HfName == name);
        return Gradients.Slice((int)p.Offset, (int)p.Length);
    }

    /// <summary>Initializes every parameter as declared (N(0, 0.02), zeros or ones) from a seed, or only those whose
    /// Hugging Face names are in <paramref name="only"/>: each value depends on the seed and its offset alone, so a
    /// parameter gets the same values either way.</summary>
    public void InitParameters(ulong seed, double std = 0.02, IReadOnlyCollection<string>? only = null)
    {
        WeightsChanged();
        foreach (var p in Info.Parameters)
        {
            if (only is not null && !only.Contains(p.HfName)) continue;
            var dst = _params.AsSpan((int)p.Offset, (int)p.Length);
            switch (p.Init)
            {
                case Init.Zeros: dst.Clear(); break;
                case Init.Ones: dst.Fill(T.One); break;
                default:
                    // Box–Muller on the counter-based generator: the value depends on (seed, offset) only, so the
                    // threads' split changes no bit (BERT-Base's 110 M values took about 6 s on one core here).
                    long offset = p.Offset;
                    var all = _params;
                    Par.For((int)p.Length, 1 << 15, (from, to) =>
                    {
                        for (int i = from; i < to; i++)
                        {
                            ulong idx = (ulong)(offset + i);
                            double u1 = Philox.Uniform(seed, 0xA11CE, 2 * idx), u2 = Philox.Uniform(seed, 0xA11CE, 2 * idx + 1);
                            double z = Math.Sqrt(-2 * Math.Log(1 - u1)) * Math.Cos(2 * Math.PI * u2);
                            all[offset + i] = T.CreateTruncating(z * std);
                        }
                    });
                    break;
            }
        }
    }

    /// <summary>Sizes the arena for a batch shape. Training plans keep what backward needs.</summary>
    public void Bind(int batch, int seq, int rows = 0, bool training = true)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), $"Batch size {batch} must be at least 1.");
        if (seq < 1 || seq > Info.MaxLen) throw new ArgumentOutOfRangeException(nameof(seq), $"Sequence length {seq} is outside 1..{Info.MaxLen} (the model's MaxLen); truncate the input.");
        if (rows < 0) throw new ArgumentOutOfRangeException(nameof(rows), "The number of gathered rows cannot be negative.");
        // A step binds the same shape again and again: keep the layout (and allocate nothing) when it is unchanged.
        var key = (batch, seq, rows, training, ReuseMemory);
        if (key != _layoutKey)
        {
            var layout = Info.Layout(batch, seq, rows, training, ReuseMemory);
            if (!InputsOnly && layout.Total + 16 > Array.MaxLength)
            {
                long fits = Math.Max(1, (long)batch * (Array.MaxLength - 16) / Math.Max(1, layout.Total));
                throw new ArgumentOutOfRangeException(nameof(batch), $"A batch of {batch} sequences of {seq} tokens needs {layout.Total:N0} values of working memory, more than one array can hold ({Array.MaxLength:N0}); use a batch of at most about {fits} (--batch), or shorter sequences.");
            }
            (_offsets, _lengths, _total) = layout;
            _layoutKey = key;
        }
        long total = _total;
        if (InputsOnly) total = -16; // a device runs the step: keep the inputs only
        if (total + 16 > _arena.Length)
        {
            _arena = GC.AllocateArray<T>((int)(total + 16), pinned: true);
            _ex.Arena = (T*)Unsafe.AsPointer(ref _arena[0]);
        }
        if (training && _grads.Length == 0 && !InputsOnly)
        {
            _grads = GC.AllocateArray<T>(_params.Length, pinned: true);
            _ex.Grads = (T*)Unsafe.AsPointer(ref _grads[0]);
        }
        _ex.Offsets = _offsets; _ex.Lengths = _lengths;
        _ex.Batch = batch; _ex.Seq = seq; _ex.Rows = rows;
        foreach (var i in _intInputs)
        {
            int n = checked((int)Size(i.Shape));
            if (_ex.IntData[i.Index].Length < n) _ex.IntData[i.Index] = new int[n];
            _ex.IntLengths[i.Index] = n;
        }
        _ex.Packs = training || !PackWeights ? null : _ex.Packs ?? new Kernels.WeightPacks<T>();
        _bound = true; _boundTraining = training; _boundReuse = ReuseMemory; _forwardDone = false;
    }

    /// <summary>Bytes of arena the current binding uses.</summary>
    public long ArenaBytes => _arena.Length * (long)sizeof(T);

    long Size(int[] shape) => ModelInfo.ShapeSize(shape, _ex.Batch, _ex.Seq, _ex.Rows);

    void RequireBound() { if (!_bound) throw new InvalidOperationException("Call Bind(batch, seq, rows) before setting inputs or running the model."); }

    /// <summary>Copies an integer input (token ids, mask, labels, rows) for the bound shape.</summary>
    public void SetInput(string name, ReadOnlySpan<int> data)
    {
        RequireBound();
        var i = Info.Input(name);
        if (i.Kind == InputKind.Tensor) throw new ArgumentException($"Input '{name}' is a tensor of {typeof(T).Name}; pass numbers of that type.");
        long n = Size(i.Shape);
        if (data.Length != n) throw new ArgumentException($"Input '{name}' needs {n} values for B={_ex.Batch}, T={_ex.Seq}, G={_ex.Rows} but got {data.Length}.");
        data.CopyTo(_ex.IntData[i.Index]);
    }

    /// <summary>Buffer <paramref name="id"/> to write into (a runner leaves its results there).</summary>
    internal Span<T> WritableBuffer(int id)
    {
        RequireBound();
        return _ex.Offsets[id] < 0 ? Span<T>.Empty : _ex.Buf(id);
    }

    /// <summary>The integer input as last set for the bound shape.</summary>
    public ReadOnlySpan<int> IntInput(string name)
    {
        RequireBound();
        var i = Info.Input(name);
        if (i.Kind == InputKind.Tensor) throw new ArgumentException($"Input '{name}' is a tensor, not integers.");
        return _ex.Ints(i.Index);
    }

    /// <summary>Copies a tensor input for the bound shape.</summary>
    public void SetInput(string name, ReadOnlySpan<T> data)
    {
        RequireBound();
        var i = Info.Input(name);
        if (i.Kind != InputKind.Tensor) throw new ArgumentException($"Input '{name}' takes integers.");
        var dst = _ex.Buf(i.Buffer);
        if (data.Length != dst.Length) throw new ArgumentException($"Input '{name}' needs {dst.Length} values but got {data.Length}.");
        data.CopyTo(dst);
    }

    /// <summary>Runs the forward schedule; training turns dropout on with masks drawn from the seed.</summary>
    public ReadOnlySpan<T> Forward(bool training = false, ulong seed = 0)
    {
        RequireBound();
        if (_arena.Length == 0) throw new InvalidOperationException("This model was bound with InputsOnly set; clear it and Bind again to run Forward on the CPU.");
        _ex.Training = training; _ex.Seed = seed;
        if (Runner is { } runner) runner.Forward(this, training, seed);
        else _program.Forward(_ex);
        _forwardDone = true;
        return Output;
    }

    public ReadOnlySpan<T> Output => _ex.Buf(Info.OutputBuffer);

    /// <summary>Buffer <paramref name="id"/> of the memory plan as the last schedule left it (empty when this binding gives
    /// it no memory); with ReuseMemory on, a later buffer may share its memory.</summary>
    public ReadOnlySpan<T> Buffer(int id)
    {
        RequireBound();
        return _ex.Offsets[id] < 0 ? ReadOnlySpan<T>.Empty : _ex.Buf(id);
    }

    /// <summary>The softmax probabilities [N, K] of the index-th CrossEntropy of the forward schedule (in the
    /// order written), valid after Forward until Backward: accuracy and predictions read them.</summary>
    public ReadOnlySpan<T> Probabilities(int index = 0)
    {
        if (!_forwardDone) throw new InvalidOperationException("Call Forward before reading probabilities.");
        var ce = Info.Ops.Where(o => o.Kind == OpKind.CrossEntropy).ElementAtOrDefault(index)
            ?? throw new ArgumentOutOfRangeException(nameof(index), $"Model {Info.Name} has no CrossEntropy number {index}.");
        return _ex.Buf(ce.Saved[0]);
    }

    /// <summary>The logits [N, K] the index-th CrossEntropy of the forward schedule read, valid after Forward. A plan
    /// that reuses memory may have written a later op's output over them (the masked-LM logits of pre-training, for
    /// one): then this throws, and a binding made with ReuseMemory off has them.</summary>
    public ReadOnlySpan<T> Logits(int index = 0)
    {
        if (!_forwardDone) throw new InvalidOperationException("Call Forward before reading logits.");
        var ce = Info.Ops.Where(o => o.Kind == OpKind.CrossEntropy).ElementAtOrDefault(index)
            ?? throw new ArgumentOutOfRangeException(nameof(index), $"Model {Info.Name} has no CrossEntropy number {index}.");
        if (ce.Operands.Length == 0 || ce.Operands[0].Kind != OperandKind.Buffer)
            throw new InvalidOperationException($"Model {Info.Name} was generated without operand metadata; rebuild it to read logits.");
        var buf = Info.Buffers[ce.Operands[0].Index];
        int Slot(BufferInfo b) => _boundTraining ? b.SlotTrain : b.SlotInfer;
        if (_boundReuse && Info.Buffers.Any(b => b.Id > buf.Id && Slot(b) == Slot(buf) && (_boundTraining || b.Role != BufferRole.Gradient)))
            throw new InvalidOperationException($"The logits of CrossEntropy {index} of {Info.Name} share memory with a later buffer; set ReuseMemory = false before Bind to read them.");
        return _ex.Buf(buf.Id);
    }

    /// <summary>Runs the backward schedule after Forward, accumulating into Gradients (call ZeroGradients
    /// between steps). A scalar output is seeded with 1; otherwise pass dOutput.</summary>
    public void Backward(ReadOnlySpan<T> dOutput = default)
    {
        if (!_forwardDone) throw new InvalidOperationException("Call Forward before Backward.");
        if (!_boundTraining) throw new InvalidOperationException("This binding is for inference; call Bind(..., training: true) to run Backward.");
        var d = _ex.Buf(Info.OutputGradBuffer);
        if (dOutput.IsEmpty)
        {
            if (d.Length != 1) throw new ArgumentException("The model's output is not a scalar; pass the gradient of the output to Backward.");
            d[0] = T.One;
        }
        else
        {
            if (dOutput.Length != d.Length) throw new ArgumentException($"The output gradient needs {d.Length} values but got {dOutput.Length}.");
            dOutput.CopyTo(d);
        }
        _program.Backward(_ex);
    }

    public void ZeroGradients() => Gradients.Clear();

    /// <summary>Fills every gradient buffer of the plan but the output's with <paramref name="value"/> (NaN, say) after
    /// Forward: a check that the backward schedule writes each element of a gradient it does not clear first. Only for a
    /// binding made with ReuseMemory off, where no gradient shares memory with an activation the backward still reads.</summary>
    public void FillGradientBuffers(T value)
    {
        RequireBound();
        if (!_boundTraining || _boundReuse)
            throw new InvalidOperationException("FillGradientBuffers needs a training binding made with ReuseMemory = false: otherwise the gradients share memory with activations the backward reads.");
        foreach (var b in Info.Buffers)
            if (b.Role == BufferRole.Gradient && b.Id != Info.OutputGradBuffer && _ex.Offsets[b.Id] >= 0)
                _ex.Buf(b.Id).Fill(value);
    }

    /// <summary>The gradient of a tensor input after Backward.</summary>
    public ReadOnlySpan<T> InputGradient(string name) => _ex.Buf(Info.Input(name).GradBuffer);
}
