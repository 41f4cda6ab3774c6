namespace Bert.Dsl;

/// <summary>The math a <see cref="PointwiseAttribute"/> function may use. These run as ordinary C# too.</summary>
public static class Scalar
{
    public static float Exp(float x) => MathF.Exp(x);
    public static float Log(float x) => MathF.Log(x);
    public static float Tanh(float x) => MathF.Tanh(x);
    public static float Sqrt(float x) => MathF.Sqrt(x);
    public static float Max(float a, float b) => MathF.Max(a, b);
    public static float Min(float a, float b) => MathF.Min(a, b);
    public static float Abs(float x) => MathF.Abs(x);
    /// <summary>The error function (Abramowitz and Stegun 7.1.26, |error| ≤ 1.5e-7).</summary>
    public static float Erf(float x)
    {
        float s = MathF.Sign(x), a = MathF.Abs(x);
        float t = 1f / (1f + 0.3275911f * a);
        float y = 1f - (((((1.061405429f * t - 1.453152027f) * t) + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t * MathF.Exp(-a * a);
        return s * y;
    }
}
