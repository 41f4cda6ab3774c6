using System.Globalization;

namespace Bert.Tests.Support;

/// <summary>Gradient checking by central differences in double, in the manner of PyTorch's gradcheck, plus the
/// float-vs-double comparison. Reusable for hand-written ops, generated fused kernels and whole models:
/// reduce any output to a scalar with <see cref="WeightedSum"/> against fixed random weights w (then the
/// backward pass's incoming gradient is exactly w), and check each input array with <see cref="Check"/>.
/// Every method returns null on success or one descriptive message, ready for an FsCheck label or Assert.</summary>
public static class GradCheck
{
    /// <summary>Compares <paramref name="analyticGrad"/> with (loss(x+h·eᵢ) - loss(x-h·eᵢ)) / 2h for every coordinate i
    /// of <paramref name="x"/>, or for a sample of <paramref name="maxCoords"/> of them drawn with <paramref name="rng"/>
    /// (seed it from the property's input so failures reproduce). <paramref name="loss"/> must read x itself (by
    /// reference), recomputing the forward pass on each call; x is restored after each probe.
    /// Passes when |analytic - numeric| &lt;= GradAbs + GradRel·|numeric| everywhere checked.</summary>
    public static string? Check(string what, Func<double> loss, double[] x, double[] analyticGrad, Random rng, int maxCoords = 200)
    {
        if (x.Length != analyticGrad.Length)
            return $"{what}: the input has {x.Length} elements but the analytic gradient has {analyticGrad.Length}.";
        const double h = Tolerances.FiniteDifferenceEps;
        foreach (int i in Coordinates(x.Length, maxCoords, rng))
        {
            double saved = x[i];
            x[i] = saved + h;
            double plus = loss();
            x[i] = saved - h;
            double minus = loss();
            x[i] = saved;
            double numeric = (plus - minus) / (2 * h);
            double analytic = analyticGrad[i];
            double bound = Tolerances.GradAbs + Tolerances.GradRel * Math.Abs(numeric);
            if (!(Math.Abs(analytic - numeric) <= bound))
                return string.Create(CultureInfo.InvariantCulture,
                    $"{what}: gradient at [{i}] of {x.Length} is {analytic:R} analytically but {numeric:R} by central differences (|diff| {Math.Abs(analytic - numeric):G3} > {bound:G3}).");
        }
        return null;
    }

    /// <summary>All of 0..n-1 when n &lt;= max, else max distinct indices in random order (partial Fisher–Yates).</summary>
    static int[] Coordinates(int n, int max, Random rng)
    {
        var all = new int[n];
        for (int i = 0; i < n; i++) all[i] = i;
        if (n <= max) return all;
        for (int i = 0; i < max; i++)
        {
            int j = rng.Next(i, n);
            (all[i], all[j]) = (all[j], all[i]);
        }
        return all[..max];
    }

    /// <summary>Σ out·w: reduces a vector output to a scalar whose gradient with respect to out is w.</summary>
    public static double WeightedSum(ReadOnlySpan<double> output, ReadOnlySpan<double> w)
    {
        double s = 0;
        for (int i = 0; i < output.Length; i++) s += output[i] * w[i];
        return s;
    }

    /// <summary>n values uniform in [lo, hi).</summary>
    public static double[] Uniform(Random rng, int n, double lo = -1, double hi = 1)
    {
        var a = new double[n];
        for (int i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.NextDouble();
        return a;
    }

    /// <summary>The values rounded to float, and those floats widened back to double, so that a float run and a
    /// double run see exactly the same inputs.</summary>
    public static (float[] F, double[] D) SameInputs(double[] values)
    {
        var f = Array.ConvertAll(values, v => (float)v);
        return (f, Array.ConvertAll(f, v => (double)v));
    }

    /// <summary>Checks |actual - expected| &lt;= abs + rel·|expected| elementwise, by default with the float-vs-double tolerances.</summary>
    public static string? AllClose(string what, ReadOnlySpan<float> actual, ReadOnlySpan<double> expected,
        double rel = Tolerances.FloatVsDoubleRel, double abs = Tolerances.FloatVsDoubleAbs)
    {
        if (actual.Length != expected.Length)
            return $"{what}: {actual.Length} values but {expected.Length} expected.";
        for (int i = 0; i < actual.Length; i++)
        {
            double bound = abs + rel * Math.Abs(expected[i]);
            if (!(Math.Abs(actual[i] - expected[i]) <= bound))
                return string.Create(CultureInfo.InvariantCulture,
                    $"{what}: element [{i}] of {actual.Length} is {actual[i]:R} in float but {expected[i]:R} in double (|diff| {Math.Abs(actual[i] - expected[i]):G3} > {bound:G3}).");
        }
        return null;
    }
}
