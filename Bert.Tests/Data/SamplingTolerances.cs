namespace Bert.Tests.Data;

/// <summary>Tolerances of the data tests that count random draws (masking, next-sentence pairing), with the
/// reason for each value. (Kept beside these tests; they belong with Bert.Tests/Support/Tolerances.cs, which is
/// another area's file.)</summary>
public static class SamplingTolerances
{
    /// <summary>How many binomial standard deviations a share may stray from its probability. Every draw here is
    /// an independent Bernoulli(p) trial, so over n trials the observed share has standard deviation
    /// sqrt(p(1-p)/n); a two-sided normal tail beyond 5σ has probability 5.7e-7, so a correct implementation fails a
    /// check about once in two million runs, while a wrong probability (say 0.7 instead of 0.8 over 10 000 draws,
    /// 25σ away) is always caught.</summary>
    public const double Sigmas = 5;

    /// <summary>Allowed |observed share - p| over n independent draws: <see cref="Sigmas"/> standard deviations.</summary>
    public static double Binomial(double p, int n) => Sigmas * Math.Sqrt(p * (1 - p) / n);
}
