using Bert.Models;
using Bert.Runtime;
using Xunit;

namespace Bert.Tests.Models;

/// <summary>The generated memory plan: buffers share memory when their lifetimes allow, and sharing never
/// changes a result.</summary>
public class MemoryPlanTests
{
    [Fact]
    public void Plan_ReusesMemory_AndInferenceNeedsLessThanTraining()
    {
        var info = BertBasePreTraining.Info;
        long train = info.ActivationBytes(32, 128, 640, 4, training: true);
        long unplanned = info.UnplannedBytes(32, 128, 640, 4, training: true);
        long infer = info.ActivationBytes(32, 128, 640, 4, training: false);
        Assert.True(train < unplanned * 0.8, $"training plan {train} bytes vs {unplanned} without reuse");
        Assert.True(infer < train / 4, $"inference plan {infer} bytes vs training {train}");
        // Sizes are symbolic in B and T: doubling the batch doubles the plan (every activation is per token).
        long half = info.ActivationBytes(16, 128, 320, 4, true);
        Assert.InRange(train - 2 * half, -info.Buffers.Count * 128L, info.Buffers.Count * 128L);
    }

    [Fact]
    public void Plan_GivesBitwiseTheSameLossAndGradientsAsNoReuse()
    {
        (float[] Out, float[] Grads) Run(bool reuse)
        {
            var m = BertNanoPreTraining.Create<float>();
            m.ReuseMemory = reuse;
            m.InitParameters(5);
            ModelGradientTests.FeedPreTraining(m, new Random(3), 3, 9, 5, 30522);
            var loss = m.Forward(training: true, seed: 77).ToArray();
            m.ZeroGradients();
            m.Backward();
            return (loss, m.Gradients.ToArray());
        }
        var planned = Run(true); var separate = Run(false);
        Assert.Equal(separate.Out, planned.Out);
        Assert.True(planned.Grads.AsSpan().SequenceEqual(separate.Grads), "the memory plan changed the gradients");
    }

    [Fact]
    public void Inference_UsesTheSmallerPlan_AndMatchesTraining()
    {
        var m = BertNanoClassifier.Create<float>();
        m.InitParameters(9);
        float Loss(bool training)
        {
            m.Bind(2, 7, training: training);
            var rng = new Random(1);
            m.SetInput("ids", Enumerable.Range(0, 14).Select(_ => rng.Next(30522)).ToArray());
            m.SetInput("types", new int[14]);
            m.SetInput("mask", Enumerable.Range(0, 14).Select(i => i == 13 ? 0 : 1).ToArray());
            m.SetInput("labels", new[] { 2, 0 });
            return m.Forward()[0];
        }
        Assert.Equal(Loss(true), Loss(false));
        Assert.Throws<InvalidOperationException>(() => m.Backward());
    }
}
