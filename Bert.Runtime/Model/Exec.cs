using System.Numerics;
using System.Runtime.CompilerServices;

namespace Bert.Runtime;

/// <summary>What every <c>[Model]</c> class is, through its generated statics: its metadata, the model for an element type
/// and its CUDA schedule. Code that takes a model as a type parameter (<c>where TModel : IDeclaredModel</c>) reaches
/// them as <c>TModel.Info</c>, <c>TModel.Create&lt;float&gt;()</c>, …; a model derived from another re-implements it
/// with its own statics.</summary>
public interface IDeclaredModel
{
    static abstract ModelInfo Info { get; }
    static abstract Model<T> Create<T>() where T : unmanaged, IBinaryFloatingPointIeee754<T>;
    static abstract Cuda.ICudaProgram CreateCudaProgram();
}

/// <summary>What generated schedules run against: one step's buffers, parameters and inputs.</summary>
public interface IModelProgram<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    void Forward(Exec<T> ex);
    void Backward(Exec<T> ex);
}

/// <summary>Runs a model's forward somewhere else (a GPU): takes the inputs the model was bound with and leaves its output
/// and its softmax probabilities in the model's buffers, so that Output and Probabilities read them as usual.</summary>
public interface IModelRunner<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    void Forward(Model<T> model, bool training, ulong seed);
}

/// <summary>The state of one step as generated code sees it. Buffers live in one pinned arena laid out by
/// the memory plan; parameters and gradients in two flat pinned buffers.</summary>
public sealed unsafe class Exec<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    internal T* Arena, Params, Grads;
    internal long[] Offsets = Array.Empty<long>(), Lengths = Array.Empty<long>();
    internal int[][] IntData = Array.Empty<int[]>();
    internal int[] IntLengths = Array.Empty<int>();

    /// <summary>B, T and G of this step.</summary>
    public int Batch { get; internal set; }
    public int Seq { get; internal set; }
    public int Rows { get; internal set; }
    /// <summary>The dropout seed of this step; backward regenerates the same masks from it.</summary>
    public ulong Seed { get; internal set; }
    /// <summary>Packed weight matrices for the forward's products (inference bindings only; null otherwise).</summary>
    public Kernels.WeightPacks<T>? Packs { get; internal set; }
    public bool Training { get; internal set; }
    /// <summary>The op being run (for error messages and profiling).</summary>
    public int CurrentOp { get; private set; } = -1;
    public Action<int>? OnOp { get; set; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Op(int id) { CurrentOp = id; OnOp?.Invoke(id); }

    public Span<T> Buf(int id) => new(Arena + Offsets[id], checked((int)Lengths[id]));
    public T* Ptr(int id) => Arena + Offsets[id];
    public Span<T> Param(long offset, int length) => new(Params + offset, length);
    public T* ParamPtr(long offset) => Params + offset;
    public Span<T> Grad(long offset, int length) => Grads == null ? throw NoGrads() : new(Grads + offset, length);
    public T* GradPtr(long offset) => Grads == null ? throw NoGrads() : Grads + offset;
    public ReadOnlySpan<int> Ints(int input) => IntData[input].AsSpan(0, IntLengths[input]);
    public void Zero(int id) => Buf(id).Clear();

    static InvalidOperationException NoGrads() => new("This model has no gradient buffer; call Backward only on a model created for training.");
}
