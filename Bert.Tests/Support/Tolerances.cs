namespace Bert.Tests.Support;

/// <summary>Every numeric tolerance the tests use, in one place, each with the reason for its value.</summary>
public static class Tolerances
{
    /// <summary>Step of the central difference (f(x+h) - f(x-h)) / 2h: PyTorch gradcheck's default eps in double.
    /// Truncation error is O(h²·f''') ~ 1e-12, round-off O(ulp(f)/h) ~ 1e-10 for |f| ~ 10.</summary>
    public const double FiniteDifferenceEps = 1e-6;

    /// <summary>Absolute part of |analytic - numeric| &lt;= GradAbs + GradRel·|numeric|: PyTorch gradcheck's atol in double.</summary>
    public const double GradAbs = 1e-5;

    /// <summary>Relative part of the gradient check: PyTorch gradcheck's rtol in double.</summary>
    public const double GradRel = 1e-3;

    /// <summary>float32 result vs the same computation in double, relative: JAX check_grads' float32 tolerance;
    /// fp32 rounding (ulp 6e-8) compounds through ~10 ops and a softmax's exp.</summary>
    public const double FloatVsDoubleRel = 2e-3;

    /// <summary>float32 vs double, absolute floor for values near zero, where a relative bound means nothing:
    /// outputs built from O(1) terms that cancel (x - mean, p - onehot) carry fp32 errors ~1e-6 absolute, times
    /// LayerNorm's rstd of at most 1/sqrt(eps) ~ 300 in the worst rows; 1e-4 leaves a margin over both.</summary>
    public const double FloatVsDoubleAbs = 1e-4;

    /// <summary>Kept fraction of dropout over 100 000 indices vs 1 - p: the binomial standard deviation is
    /// sqrt(p(1-p)/n) &lt;= 1.6e-3, so 5e-3 is over 3σ for every p and about 5σ at p = 0.1.</summary>
    public const double KeepFractionAbs = 5e-3;

    /// <summary>ONNX Runtime's float32 logits vs ours, max |Δ| over max |logit|: the bound issue 5 sets (1e-5 relative in
    /// float32). Both sides compute the same float32 graph with sums in different orders (ulp 6e-8), through two to
    /// twelve layers; measured errors are about ten times smaller.</summary>
    public const double OnnxVsOursRel = 1e-5;
}
