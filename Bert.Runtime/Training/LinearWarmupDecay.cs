namespace Bert.Runtime.Training;

/// <summary>BERT's learning-rate schedule, as Hugging Face's <c>get_linear_schedule_with_warmup</c>: linear
/// warm-up from 0 at step 0 to PeakLr at WarmupSteps, then linear decay to 0 at TotalSteps (and 0 after).</summary>
/// <remarks>step counts the optimizer steps already taken, as HF's scheduler does, so the first update uses
/// At(0) = 0 when there is a warm-up: <c>optimizer.Step(p, g, schedule.At(optimizer.StepCount))</c>.</remarks>
public sealed record LinearWarmupDecay(double PeakLr, long WarmupSteps, long TotalSteps)
{
    public double PeakLr { get; init; } = PeakLr >= 0 && double.IsFinite(PeakLr) ? PeakLr
        : throw new ArgumentOutOfRangeException(nameof(PeakLr), $"The peak learning rate {PeakLr} must be zero or positive and finite.");

    public long WarmupSteps { get; init; } = WarmupSteps >= 0 ? WarmupSteps
        : throw new ArgumentOutOfRangeException(nameof(WarmupSteps), $"The warm-up length {WarmupSteps} cannot be negative.");

    public long TotalSteps { get; init; } = TotalSteps >= WarmupSteps ? TotalSteps
        : throw new ArgumentOutOfRangeException(nameof(TotalSteps), $"TotalSteps ({TotalSteps}) is less than WarmupSteps ({WarmupSteps}); the schedule must end after its warm-up.");

    /// <summary>The learning rate for the update after `step` completed steps.</summary>
    public double At(long step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), $"Step {step} cannot be negative.");
        if (step < WarmupSteps) return PeakLr * ((double)step / Math.Max(1, WarmupSteps));
        return PeakLr * Math.Max(0.0, (double)(TotalSteps - step) / Math.Max(1, TotalSteps - WarmupSteps));
    }
}
