using Bert.Models;
using Bert.Runtime;
using Bert.Tests.Support;
using Xunit;

namespace Bert.Tests.Models;

/// <summary>Whole models differentiated end to end: the generated backward against central differences in
/// double, float against double, and bitwise determinism.</summary>
public class ModelGradientTests
{
    internal static void FeedPreTraining<TF>(Model<TF> m, Random rng, int B, int T, int G, int vocab)
        where TF : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<TF>
    {
        m.Bind(B, T, G);
        m.SetInput("ids", Enumerable.Range(0, B * T).Select(_ => rng.Next(vocab)).ToArray());
        m.SetInput("types", Enumerable.Range(0, B * T).Select(i => i % T < T / 2 ? 0 : 1).ToArray());
        m.SetInput("mask", Enumerable.Range(0, B * T).Select(i => i % T < T - (i / T) ? 1 : 0).ToArray());
        m.SetInput("masked", Enumerable.Range(0, B * T).OrderBy(_ => rng.Next()).Take(G).ToArray());
        m.SetInput("mlmLabels", Enumerable.Range(0, G).Select(i => i == 0 ? -100 : rng.Next(vocab)).ToArray());
        m.SetInput("nspLabels", Enumerable.Range(0, B).Select(_ => rng.Next(2)).ToArray());
    }

    /// <summary>Backward against central differences for every parameter tensor: in each, the coordinates with
    /// the largest analytic gradients plus random ones (an embedding table is mostly rows no token used).</summary>
    internal static string? CheckModel(Model<double> m, Func<double> loss, Random rng, int perParam = 6)
    {
        m.ZeroGradients();
        loss();
        m.Backward();
        var analytic = m.Gradients.ToArray();
        var x = m.Parameters.ToArray();
        var coords = new List<int>();
        foreach (var p in m.Info.Parameters)
        {
            var idx = Enumerable.Range((int)p.Offset, (int)p.Length);
            coords.AddRange(idx.OrderByDescending(i => Math.Abs(analytic[i])).Take(perParam));
            coords.AddRange(Enumerable.Range(0, perParam).Select(_ => (int)p.Offset + rng.Next((int)p.Length)));
        }
        var sub = coords.Distinct().ToArray();
        var xs = sub.Select(i => x[i]).ToArray();
        var gs = sub.Select(i => analytic[i]).ToArray();
        double Loss() { for (int k = 0; k < sub.Length; k++) x[sub[k]] = xs[k]; x.CopyTo(m.Parameters); return loss(); }
        var err = GradCheck.Check(m.Info.Name, Loss, xs, gs, rng, maxCoords: sub.Length);
        if (err is null) return null;
        return err + " (coordinates: " + string.Join(", ", sub.Take(3).Select(i => m.Info.Parameters.First(p => i >= p.Offset && i < p.Offset + p.Length).Name)) + " …)";
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SmallEncoder_PreTrainingGradients_MatchFiniteDifferences(bool dropout)
    {
        var m = BertNanoPreTraining.Create<double>();
        m.InitParameters(7, std: 0.2);
        var rng = new Random(11);
        FeedPreTraining(m, rng, B: 2, T: 5, G: 3, vocab: 30522);
        var err = CheckModel(m, () => m.Forward(training: dropout, seed: 99)[0], new Random(5));
        Assert.True(err is null, err);
    }

    [Fact]
    public void SharedLayers_AccumulateGradientsFromEveryRepetition()
    {
        var m = AlbertNanoClassifier.Create<double>();
        m.InitParameters(3, std: 0.3);
        var rng = new Random(2);
        m.Bind(3, 4);
        m.SetInput("ids", Enumerable.Range(0, 12).Select(_ => rng.Next(30522)).ToArray());
        m.SetInput("types", Enumerable.Range(0, 12).Select(i => i % 2).ToArray());
        m.SetInput("mask", Enumerable.Range(0, 12).Select(i => i % 4 == 3 && i > 4 ? 0 : 1).ToArray());
        m.SetInput("labels", new[] { 0, 1, 1 });
        var err = CheckModel(m, () => m.Forward(training: true, seed: 4)[0], new Random(9));
        Assert.True(err is null, err);
    }

    /// <summary>Question answering's loss (QaSpanHead): CrossEntropy(Transpose(logits [B,T,2]), span [B,2]) is, per sequence,
    /// the mean of the cross-entropy over the positions of the start logits against the start and of the end logits
    /// against the end, averaged over the batch — transformers' (start_loss + end_loss) / 2 — here computed by hand from
    /// the parameters; then the parameter gradients against central differences.</summary>
    [Fact]
    public void QaSpanHead_LossIsTheMeanOfStartAndEndCrossEntropies_AndGradientsMatchFiniteDifferences()
    {
        const int B = 3, T = 5, H = QaSpanHead.Hidden;
        var m = QaSpanHead.Create<double>();
        m.InitParameters(17, std: 0.8);
        var rng = new Random(6);
        int[] ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(QaSpanHead.Vocab)).ToArray();
        int[] span = { 1, 3, 0, 0, 4, 2 };   // (start, end) of each sequence
        m.Bind(B, T);
        m.SetInput("ids", ids);
        m.SetInput("span", span);
        double loss = m.Forward()[0];

        var words = m.Parameter("Words").ToArray(); var w = m.Parameter("W").ToArray(); var bias = m.Parameter("B").ToArray();
        double Logit(int b, int t, int k)
        {
            double z = bias[k];
            for (int h = 0; h < H; h++) z += w[k * H + h] * Math.Tanh(words[ids[b * T + t] * H + h]);
            return z;
        }
        double CrossEntropyOverPositions(int b, int k, int label)
        {
            double max = Enumerable.Range(0, T).Max(t => Logit(b, t, k));
            double logSum = max + Math.Log(Enumerable.Range(0, T).Sum(t => Math.Exp(Logit(b, t, k) - max)));
            return logSum - Logit(b, label, k);
        }
        double want = Enumerable.Range(0, B).Average(b => (CrossEntropyOverPositions(b, 0, span[2 * b]) + CrossEntropyOverPositions(b, 1, span[2 * b + 1])) / 2);
        Assert.True(Math.Abs(loss - want) <= 1e-12 * Math.Abs(want), $"loss {loss:R}, by hand {want:R}");
        // the probabilities are rows over the positions: [B·2, T], each summing to 1
        var probs = m.Probabilities().ToArray();
        Assert.Equal(B * 2 * T, probs.Length);
        for (int r = 0; r < B * 2; r++) Assert.Equal(1.0, probs.Skip(r * T).Take(T).Sum(), 12);

        var err = CheckModel(m, () => m.Forward()[0], new Random(4));
        Assert.True(err is null, err);
    }

    [Fact]
    public void PointwiseZoo_GradientsOfParametersAndInput_MatchFiniteDifferences()
    {
        var m = PointwiseZoo.Create<double>();
        m.InitParameters(1, std: 0.5);
        var rng = new Random(3);
        m.Bind(2, 3);
        var input = GradCheck.Uniform(rng, 2 * 3 * 6, -2, 2);
        m.SetInput("x", input);
        var w = GradCheck.Uniform(rng, 2 * 3 * 5);
        double Loss() { m.SetInput("x", input); return GradCheck.WeightedSum(m.Forward(training: true, seed: 8), w); }
        Loss();
        m.ZeroGradients();
        m.Backward(w);
        var dParams = m.Gradients.ToArray();
        var dInput = m.InputGradient("x").ToArray();
        var p = m.Parameters.ToArray();
        var e1 = GradCheck.Check("PointwiseZoo params", () => { p.CopyTo(m.Parameters); return Loss(); }, p, dParams, new Random(1));
        Assert.True(e1 is null, e1);
        var e2 = GradCheck.Check("PointwiseZoo input", Loss, input, dInput, new Random(1));
        Assert.True(e2 is null, e2);
    }

    [Fact]
    public void FloatMatchesDouble_OnTheSmallEncoder()
    {
        var md = BertNanoPreTraining.Create<double>();
        var mf = BertNanoPreTraining.Create<float>();
        md.InitParameters(21); mf.InitParameters(21);
        FeedPreTraining(md, new Random(4), 2, 6, 3, 30522);
        FeedPreTraining(mf, new Random(4), 2, 6, 3, 30522);
        double ld = md.Forward(true, 5)[0]; float lf = mf.Forward(true, 5)[0];
        Assert.InRange(Math.Abs(lf - ld), 0, Tolerances.FloatVsDoubleRel * Math.Abs(ld));
        md.ZeroGradients(); mf.ZeroGradients();
        md.Backward(); mf.Backward();
        var err = GradCheck.AllClose("dParams float vs double", mf.Gradients, md.Gradients);
        Assert.True(err is null, err);
    }

    [Fact]
    public void SameSeed_GivesBitwiseIdenticalLossAndGradients()
    {
        (float Loss, float[] Grads) Run()
        {
            var m = BertNanoPreTraining.Create<float>();
            m.InitParameters(42);
            FeedPreTraining(m, new Random(8), 4, 12, 6, 30522);
            var loss = m.Forward(training: true, seed: 1234)[0];
            m.ZeroGradients();
            m.Backward();
            return (loss, m.Gradients.ToArray());
        }
        var a = Run(); var b = Run();
        Assert.Equal(BitConverter.SingleToInt32Bits(a.Loss), BitConverter.SingleToInt32Bits(b.Loss));
        Assert.True(a.Grads.AsSpan().SequenceEqual(b.Grads), "gradients differ between two runs with the same seed");
        // and another seed draws other dropout masks
        var m2 = BertNanoPreTraining.Create<float>();
        m2.InitParameters(42);
        FeedPreTraining(m2, new Random(8), 4, 12, 6, 30522);
        Assert.NotEqual(a.Loss, m2.Forward(training: true, seed: 1235)[0]);
    }
}
