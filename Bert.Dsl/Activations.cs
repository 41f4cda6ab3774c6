using static Bert.Dsl.Scalar;

namespace Bert.Dsl;

/// <summary>The built-in activations, written as <see cref="PointwiseAttribute"/> functions. The generator reads
/// this very file, differentiates each body and fuses it like a user's own function.</summary>
public static partial class Activations
{
    [Pointwise] public static float Gelu(float x) => 0.5f * x * (1f + Erf(x * 0.7071067811865476f));
    [Pointwise] public static float GeluTanh(float x) => 0.5f * x * (1f + Tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    [Pointwise] public static float Tanh(float x) => Scalar.Tanh(x);
    [Pointwise] public static float Relu(float x) => Max(x, 0f);
    [Pointwise] public static float Sigmoid(float x) => 1f / (1f + Exp(-x));
    [Pointwise] public static float Swish(float x) => x / (1f + Exp(-x));
}
