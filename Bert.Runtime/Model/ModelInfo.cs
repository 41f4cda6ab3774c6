using Bert.Dsl;

namespace Bert.Runtime;

public enum InputKind { Tensor, Tokens, Mask, Labels, Rows }
public enum BufferRole { Activation, Saved, Gradient }
/// <summary>The kinds of op. New kinds go at the end: a model compiled by an older generator holds these values as
/// numbers, which must keep their meaning.</summary>
public enum OpKind { MatMul, Linear, Embed, LayerNorm, Attention, Gather, First, CrossEntropy, Pointwise, Transpose }

/// <summary>A size c·B^b·T^t·G^g in elements.</summary>
public readonly record struct SizeExpr(long C, int PB, int PT, int PG)
{
    public long Eval(int batch, int seq, int rows)
    {
        long s = C;
        for (int i = 0; i < PB; i++) s *= batch;
        for (int i = 0; i < PT; i++) s *= seq;
        for (int i = 0; i < PG; i++) s *= rows;
        return s;
    }
    public override string ToString() =>
        string.Join("·", new[] { C != 1 || PB + PT + PG == 0 ? C.ToString() : null }
            .Concat(Enumerable.Repeat("B", PB)).Concat(Enumerable.Repeat("T", PT)).Concat(Enumerable.Repeat("G", PG)).Where(s => s is not null));
}

/// <summary>One weight tensor: where it lives in the flat buffer and what Hugging Face calls it.</summary>
public sealed record ParamInfo(string Name, string HfName, int[] Shape, long Offset, long Length, Init Init, bool Decay, string Block)
{
    public ParamInfo(string name, string hf, int[] shape, long offset, long length, Init init, bool decay, string block, int _ = 0)
        : this(name, hf, shape, offset, length, init, decay, block) { }
}

public sealed record InputInfo(string Name, InputKind Kind, int[] Shape, int Index, int Buffer, int GradBuffer)
{
    public InputInfo(string name, InputKind kind, int[] shape, int index, int buffer, int gradBuffer, int _ = 0)
        : this(name, kind, shape, index, buffer, gradBuffer) { }
}

public sealed record BufferInfo(int Id, string Name, BufferRole Role, SizeExpr Size, int SlotTrain, int SlotInfer)
{
    public BufferInfo(int id, string name, BufferRole role, SizeExpr size, int slotTrain, int slotInfer, int _ = 0)
        : this(id, name, role, size, slotTrain, slotInfer) { }
}

public enum OperandKind { Param, Input, Buffer }

/// <summary>What an op reads. Param: the parameter numbered Index, or a view of it at Offset in the flat buffer
/// (Positions' first T rows, or Cat's rows of Index and the parameters declared after it); Input: the tensor input
/// numbered Index; Buffer: the activation buffer Index, written by an earlier op. Shape as declared, with -1, -2,
/// -3 standing for B, T, G.</summary>
public sealed record OperandInfo(OperandKind Kind, int Index, long Offset, int[] Shape)
{
    public OperandInfo(OperandKind kind, int index, long offset, int[] shape, int _ = 0) : this(kind, index, offset, shape) { }
}

/// <summary>One op of the compiled forward schedule (after fusion); Sources are the DSL ops it stands for,
/// Buffer its output, Saved what it keeps for backward. Operands are what it reads (a Pointwise op's kernel
/// names them x0, x1, … in this order), IntInput the integer input it reads (token ids, mask, rows or labels;
/// -1 for none), Shape its output's (-1, -2, -3 for B, T, G).</summary>
public sealed record OpInfo(int Id, OpKind Kind, string Label, string[] InputShapes, string OutputShape, string Location,
    string[] Sources, string? Kernel, int Heads, double Dropout, int Buffer, int[] Saved, OperandInfo[] Operands, int IntInput, int[] Shape)
{
    /// <summary>The shape written before ops carried their operands.</summary>
    public OpInfo(int id, OpKind kind, string label, string[] inputShapes, string outputShape, string location,
        string[] sources, string? kernel, int heads, double dropout, int buffer, int[] saved, int _ = 0)
        : this(id, kind, label, inputShapes, outputShape, location, sources, kernel, heads, dropout, buffer, saved, [], -1, []) { }

    public OpInfo(int id, OpKind kind, string label, string[] inputShapes, string outputShape, string location,
        string[] sources, string? kernel, int heads, double dropout, int buffer, int[] saved, OperandInfo[] operands, int intInput, int[] shape, int _ = 0)
        : this(id, kind, label, inputShapes, outputShape, location, sources, kernel, heads, dropout, buffer, saved, operands, intInput, shape) { }
}

/// <summary>One node of a fused kernel's expression, in topological order (the last one is the result). Op "in"
/// reads the kernel's input number Value, "const" is the number Value, "drop" is a dropout keep scale with
/// probability Value (1 at inference). Any other Op applies to the earlier nodes named by Args: add, sub, mul, div,
/// neg, exp, log, tanh, sqrt, erf, max, min, abs, and sel&lt;, sel&lt;=, sel&gt;, sel&gt;= (Args[2] where Args[0]
/// compares so with Args[1], else Args[3]).</summary>
public sealed record ExprNode(string Op, int[] Args, double Value)
{
    public ExprNode(string op, int[] args, double value, int _ = 0) : this(op, args, value) { }
}

// lanes: the float vector width the kernel runs (16, 8, or 0 for its scalar loop; -1, Simd.FloatLanes), so that tests check
// every width on any machine; the double entry points have only the scalar loop and ignore it.
public delegate void FusedForward(double[] y, double[][] xs, ulong seed, bool training, int lanes = -1);
public delegate void FusedBackward(double[] dy, double[]?[] dxs, double[][] xs, ulong seed, bool training, int lanes = -1);
public delegate void FusedForwardF(float[] y, float[][] xs, ulong seed, bool training, int lanes = -1);
public delegate void FusedBackwardF(float[] dy, float[]?[] dxs, float[][] xs, ulong seed, bool training, int lanes = -1);

/// <summary>A generated fused element-wise kernel, with entry points in double (gradient checks) and float (the
/// vectorized path, checked against double). Expression is for people to read; Nodes is the same expression for
/// programs (the ONNX export).</summary>
public sealed record FusedKernelInfo(string Name, string Expression, SizeExpr Output, SizeExpr[] Inputs, string[] Sources,
    bool Dropout, FusedForward Forward, FusedBackward Backward, FusedForwardF ForwardF, FusedBackwardF BackwardF, ExprNode[] Nodes)
{
    /// <summary>Per input: the backward writes its gradient (=) instead of adding into it (+=) — the model's schedule gives that
    /// kernel the first gradient into the buffer and clears it no more. Empty: it adds into every one.</summary>
    public bool[] Writes { get; init; } = [];

    /// <summary>The input whose gradient (a product's output gradient, written here) the CUDA backward also writes rounded to
    /// bf16, into its last argument <c>dx16</c> (CudaExec.Grad16); -1: the kernels take no such argument.</summary>
    public int Grad16Input { get; init; } = -1;

    /// <summary>Whether the CUDA forward also writes y rounded to bf16 into its last argument <c>y16</c> (0: none), its output
    /// being a product's operand (CudaExec.Out16).</summary>
    public bool Out16 { get; init; }

    /// <summary>Per input: its gradient is the kernel's output gradient itself (y = … + x along additions only), so the
    /// model's schedule gives it no dx (the buffer of dy is x's gradient, which the ops after add into). Empty: none.</summary>
    public bool[] Aliases { get; init; } = [];

    /// <summary>Per input: a product's output that the product may write in bf16 (a GPU run in bf16 keeps it so): the CUDA
    /// kernels then take, right after that input's <c>x{k}, n{k}</c>, <c>h{k}</c>, its bf16 values, one of the two null
    /// (CudaExec.In32, In16). Empty: none.</summary>
    public bool[] Bf16Inputs { get; init; } = [];

    /// <summary>Whether input <paramref name="input"/> comes with a bf16 pointer (<see cref="Bf16Inputs"/>).</summary>
    public bool TakesBf16(int input) => input < Bf16Inputs.Length && Bf16Inputs[input];

    /// <summary>Whether input <paramref name="input"/>'s gradient is the output gradient's buffer.</summary>
    public bool AliasesGradient(int input) => input < Aliases.Length && Aliases[input];

    /// <summary>Whether the backward writes input <paramref name="input"/>'s gradient instead of adding into it.</summary>
    public bool WritesGradient(int input) => input < Writes.Length && Writes[input];

    /// <summary>The shape written before kernels carried their expression nodes.</summary>
    public FusedKernelInfo(string name, string expression, SizeExpr output, SizeExpr[] inputs, string[] sources, bool dropout,
        FusedForward forward, FusedBackward backward, FusedForwardF forwardF, FusedBackwardF backwardF, int _ = 0)
        : this(name, expression, output, inputs, sources, dropout, forward, backward, forwardF, backwardF, []) { }

    public FusedKernelInfo(string name, string expression, SizeExpr output, SizeExpr[] inputs, string[] sources, bool dropout,
        FusedForward forward, FusedBackward backward, FusedForwardF forwardF, FusedBackwardF backwardF, ExprNode[] nodes, int _ = 0)
        : this(name, expression, output, inputs, sources, dropout, forward, backward, forwardF, backwardF, nodes) { }
}

/// <summary>Everything the generator compiled for one model.</summary>
public sealed class ModelInfo
{
    public ModelInfo(string name, (string, long)[] constants, ParamInfo[] parameters, InputInfo[] inputs, BufferInfo[] buffers,
        OpInfo[] ops, FusedKernelInfo[] kernels, int[] output, int outputBuffer, int outputGradBuffer, int slotsTrain, int slotsInfer, int dropoutSites,
        SizeExpr[]? shadows = null)
    {
        Shadows = shadows ?? [];
        Name = name; Constants = constants.ToDictionary(c => c.Item1, c => c.Item2); Parameters = parameters; Inputs = inputs;
        Buffers = buffers; Ops = ops; Kernels = kernels; OutputShape = output; OutputBuffer = outputBuffer; OutputGradBuffer = outputGradBuffer;
        SlotsTrain = slotsTrain; SlotsInfer = slotsInfer; DropoutSites = dropoutSites;
        ParameterCount = parameters.Sum(p => p.Length);
        MaxLen = Constants.TryGetValue("MaxLen", out var m) ? (int)m : int.MaxValue;
    }

    public string Name { get; }
    public IReadOnlyDictionary<string, long> Constants { get; }
    public IReadOnlyList<ParamInfo> Parameters { get; }
    public IReadOnlyList<InputInfo> Inputs { get; }
    public IReadOnlyList<BufferInfo> Buffers { get; }
    public IReadOnlyList<OpInfo> Ops { get; }
    public IReadOnlyList<FusedKernelInfo> Kernels { get; }
    public int[] OutputShape { get; }
    public int OutputBuffer { get; }
    public int OutputGradBuffer { get; }
    public int SlotsTrain { get; }
    public int SlotsInfer { get; }
    public int DropoutSites { get; }
    public long ParameterCount { get; }
    public int MaxLen { get; }
    /// <summary>The elements of each activation that a product reads (a Linear's input, a MatMul's operands), in the order the
    /// forward first reads them: a GPU training step in bf16 keeps a bf16 copy of each from its first product to the
    /// backward's (CUDA: CudaExec.ToShadow).</summary>
    public IReadOnlyList<SizeExpr> Shadows { get; }

    public InputInfo Input(string name)
    {
        for (int k = 0; k < Inputs.Count; k++) if (Inputs[k].Name == name) return Inputs[k];   // no LINQ: called every step
        throw new ArgumentException($"Model {Name} has no input '{name}'; its inputs are {string.Join(", ", Inputs.Select(i => i.Name))}.");
    }

    /// <summary>Elements of a declared shape (dims -1, -2, -3 standing for B, T, G) from dimension <paramref name="from"/>
    /// up to <paramref name="to"/> (exclusive; -1 for the end) at one batch shape. A loop, not LINQ: called every step.</summary>
    public static long ShapeSize(int[] shape, int batch, int seq, int rows, int from = 0, int to = -1)
    {
        long n = 1;
        for (int k = from, end = to < 0 ? shape.Length : to; k < end; k++)
            n *= shape[k] switch { -1 => batch, -2 => seq, -3 => rows, var d => d };
        return n;
    }

    /// <summary>The memory plan for one batch shape: element offset of every buffer and the arena size.</summary>
    /// <param name="reuse">false gives every buffer memory of its own (to check the plan against).</param>
    /// <param name="lengths">Lengths that replace the plan's for some buffers (a backend that stores less in them: the CUDA
    /// flash attention keeps B·H·T row statistics where the plan has B·H·T·T probabilities).</param>
    public (long[] Offsets, long[] Lengths, long Total) Layout(int batch, int seq, int rows, bool training, bool reuse = true, IReadOnlyDictionary<int, long>? lengths = null)
    {
        long Length(BufferInfo b) => lengths != null && lengths.TryGetValue(b.Id, out long n) ? n : b.Size.Eval(batch, seq, rows);
        if (!reuse)
        {
            var len = Buffers.Select(Length).ToArray();
            var off = new long[len.Length];
            long t = 0;
            foreach (var b in Buffers)
            {
                if (!training && b.Role == BufferRole.Gradient) { off[b.Id] = -1; continue; }
                off[b.Id] = t; t += (len[b.Id] + 15) & ~15L;
            }
            return (off, len, t);
        }
        int slots = training ? SlotsTrain : SlotsInfer;
        var slotSize = new long[slots];
        var planned = new long[Buffers.Count];
        foreach (var b in Buffers)
        {
            planned[b.Id] = Length(b);
            int s = training ? b.SlotTrain : b.SlotInfer;
            if (s >= 0) slotSize[s] = Math.Max(slotSize[s], planned[b.Id]);
        }
        var slotOffset = new long[slots];
        long total = 0;
        for (int s = 0; s < slots; s++) { slotOffset[s] = total; total += (slotSize[s] + 15) & ~15L; }
        var offsets = new long[Buffers.Count];
        foreach (var b in Buffers)
        {
            int s = training ? b.SlotTrain : b.SlotInfer;
            offsets[b.Id] = s >= 0 ? slotOffset[s] : -1;
        }
        return (offsets, planned, total);
    }

    /// <summary>Bytes of activation memory (after reuse) for one step at this shape.</summary>
    public long ActivationBytes(int batch, int seq, int rows, int elementSize, bool training) =>
        Layout(batch, seq, rows, training).Total * elementSize;

    /// <summary>Bytes the same buffers would take with no reuse at all.</summary>
    public long UnplannedBytes(int batch, int seq, int rows, int elementSize, bool training) =>
        Buffers.Where(b => training || b.Role != BufferRole.Gradient).Sum(b => b.Size.Eval(batch, seq, rows)) * elementSize;
}
