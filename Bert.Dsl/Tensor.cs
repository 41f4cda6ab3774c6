namespace Bert.Dsl;

/// <summary>A value in a forward computation. Forward methods are compiled by the Bert generator and are
/// never executed, so every member here only states a signature.</summary>
public readonly struct Tensor
{
    public static Tensor operator +(Tensor a, Tensor b) => throw Compiled.Only();
    public static Tensor operator -(Tensor a, Tensor b) => throw Compiled.Only();
    public static Tensor operator *(Tensor a, Tensor b) => throw Compiled.Only();
    public static Tensor operator /(Tensor a, Tensor b) => throw Compiled.Only();
    public static Tensor operator +(Tensor a, float b) => throw Compiled.Only();
    public static Tensor operator -(Tensor a, float b) => throw Compiled.Only();
    public static Tensor operator *(Tensor a, float b) => throw Compiled.Only();
    public static Tensor operator /(Tensor a, float b) => throw Compiled.Only();
    public static Tensor operator +(float a, Tensor b) => throw Compiled.Only();
    public static Tensor operator -(float a, Tensor b) => throw Compiled.Only();
    public static Tensor operator *(float a, Tensor b) => throw Compiled.Only();
    public static Tensor operator -(Tensor a) => throw Compiled.Only();
}

/// <summary>Token ids, shape [B, T].</summary>
public readonly struct Tokens { }

/// <summary>Attention mask, shape [B, T]: 1 for a token, 0 for padding.</summary>
public readonly struct Mask { }

/// <summary>Integer class labels; shape [B] unless a <see cref="ShapeAttribute"/> says otherwise. -100 is ignored.</summary>
public readonly struct Labels { }

/// <summary>Row indices into the flattened [B·T] positions, shape [G].</summary>
public readonly struct Rows { }

internal static class Compiled
{
    internal static NotSupportedException Only() =>
        new("Bert forward methods are compiled by the Bert source generator and never run as C#; call the generated model instead.");
}
