using System.Numerics;

namespace Bert.Runtime;

/// <summary>Math that generic math lacks.</summary>
public static class MathT
{
    /// <summary>The error function: a power series below |x| = 2, a continued fraction for erfc above;
    /// |error| ≲ 1e-15 in double. Float goes through double.</summary>
    public static T Erf<T>(T x) where T : IBinaryFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) return T.CreateTruncating(ErfF(float.CreateTruncating(x)));
        return T.CreateTruncating(Erf(double.CreateTruncating(x)));
    }

    /// <summary>Float erf (Abramowitz and Stegun 7.1.26, |error| ≤ 1.5e-7, below float precision near ±1).</summary>
    static float ErfF(float x)
    {
        float a = MathF.Abs(x);
        float t = 1f / (1f + 0.3275911f * a);
        float y = 1f - (((((1.061405429f * t - 1.453152027f) * t) + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t * MathF.Exp(-a * a);
        return x < 0 ? -y : y;
    }

    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return x;
        double a = Math.Abs(x);
        double r;
        if (a < 2)
        {
            double s = 0, t = a;
            for (int n = 0; n < 100; n++)
            {
                double term = t / (2 * n + 1);
                s += term;
                if (Math.Abs(term) < 1e-17 * Math.Abs(s)) break;
                t *= -a * a / (n + 1);
            }
            r = 2 / Math.Sqrt(Math.PI) * s;
        }
        else if (a > 6) r = 1;
        else
        {
            double f = a;
            for (int k = 80; k >= 1; k--) f = a + k / 2.0 / f;
            r = 1 - Math.Exp(-a * a) / Math.Sqrt(Math.PI) / f;
        }
        return x < 0 ? -r : r;
    }
}
