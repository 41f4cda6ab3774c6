namespace Bert.Dsl;

/// <summary>Marks a partial class as a model: its constants are hyperparameters, its <see cref="ParamAttribute"/>
/// fields are weights, and its single <c>Forward</c> method is compiled by the Bert generator.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class ModelAttribute : Attribute { }

/// <summary>Marks a nested partial class as a block: parameters and a <c>Forward</c> method that a model
/// instantiates through a field, once or <see cref="StackAttribute"/> times.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class BlockAttribute : Attribute { }

/// <summary>A weight tensor. The shape is written in the model's constants: <c>[Param(Hidden, 3 * Hidden)]</c>.</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class ParamAttribute : Attribute
{
    public ParamAttribute(params int[] shape) => Shape = shape;
    public int[] Shape { get; }
    /// <summary>How the weight starts: N(0, 0.02) as BERT does, zeros or ones.</summary>
    public Init Init { get; set; } = Init.Normal;
    /// <summary>The Hugging Face tensor name, relative to the enclosing block's <see cref="StackAttribute.Hf"/> prefix.</summary>
    public string? Hf { get; set; }
}

public enum Init { Normal = 0, Zeros = 1, Ones = 2 }

/// <summary>On a block-typed field: the block is applied Count times in sequence.</summary>
[AttributeUsage(AttributeTargets.Field, Inherited = false)]
public sealed class StackAttribute : Attribute
{
    public StackAttribute(int count) => Count = count;
    public int Count { get; }
    /// <summary>One set of weights serves every repetition (ALBERT).</summary>
    public bool Shared { get; set; }
    /// <summary>Hugging Face name prefix of each repetition; <c>{i}</c> is the repetition index.</summary>
    public string? Hf { get; set; }
}

/// <summary>An expression-bodied element-wise function of floats. The generator differentiates it
/// symbolically, fuses it with its neighbours, and emits a tensor overload beside it.</summary>
[AttributeUsage(AttributeTargets.Method, Inherited = false)]
public sealed class PointwiseAttribute : Attribute { }

/// <summary>The shape of a forward input, in constants and the run-time dimensions of <see cref="Dim"/>.</summary>
[AttributeUsage(AttributeTargets.Parameter, Inherited = false)]
public sealed class ShapeAttribute : Attribute
{
    public ShapeAttribute(params int[] dims) => Dims = dims;
    public int[] Dims { get; }
}

/// <summary>Run-time dimensions, usable in <see cref="ShapeAttribute"/>.</summary>
public static class Dim
{
    /// <summary>B: the batch size.</summary>
    public const int Batch = -1;
    /// <summary>T: the sequence length (at most the model's <c>MaxLen</c>).</summary>
    public const int Seq = -2;
    /// <summary>G: the number of gathered rows (e.g. masked positions).</summary>
    public const int Rows = -3;
}
