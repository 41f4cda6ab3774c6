using Bert.Models;
using Bert.Runtime;
using Bert.Text;
using Bert.Training;
using Xunit;

namespace Bert.Tests.Models;

/// <summary>The structural variant (pre-LayerNorm BERT) and the token-classification head: whole-model gradients
/// against central differences in double, and that each learns.</summary>
public class VariantTests
{
    static void FeedClassifier(Model<double> m, Random rng, int B, int T, int classes, int vocab = 30522)
    {
        m.Bind(B, T);
        m.SetInput("ids", Enumerable.Range(0, B * T).Select(_ => rng.Next(vocab)).ToArray());
        m.SetInput("types", Enumerable.Range(0, B * T).Select(i => i % T < T / 2 ? 0 : 1).ToArray());
        m.SetInput("mask", Enumerable.Range(0, B * T).Select(i => i % T < T - (i / T) ? 1 : 0).ToArray());
        m.SetInput("labels", Enumerable.Range(0, B).Select(_ => rng.Next(classes)).ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PreLn_PreTrainingGradients_MatchFiniteDifferences(bool dropout)
    {
        var m = BertNanoPreLnPreTraining.Create<double>();
        m.InitParameters(7, std: 0.2);
        ModelGradientTests.FeedPreTraining(m, new Random(11), B: 2, T: 5, G: 3, vocab: 30522);
        var err = ModelGradientTests.CheckModel(m, () => m.Forward(training: dropout, seed: 99)[0], new Random(5));
        Assert.True(err is null, err);
    }

    [Fact]
    public void PreLn_ClassifierGradients_MatchFiniteDifferences()
    {
        var m = BertNanoPreLnClassifier.Create<double>();
        m.InitParameters(8, std: 0.2);
        FeedClassifier(m, new Random(12), B: 3, T: 4, classes: 2);
        var err = ModelGradientTests.CheckModel(m, () => m.Forward(training: true, seed: 17)[0], new Random(6));
        Assert.True(err is null, err);
    }

    [Fact]
    public void PreLn_HasTheFinalLayerNorm_AndNoneInTheEmbeddings()
    {
        var names = BertNanoPreLnPreTraining.Info.Parameters.Select(p => p.HfName).ToHashSet();
        Assert.Contains("bert.encoder.ln.weight", names);
        Assert.Contains("bert.encoder.layer.1.attention.ln.weight", names);
        Assert.Contains("bert.encoder.layer.1.ln.bias", names);
        Assert.DoesNotContain("bert.embeddings.LayerNorm.weight", names);
        Assert.DoesNotContain(names, n => n.Contains("output.LayerNorm", StringComparison.Ordinal));
    }

    [Fact]
    public void TokenClassifierGradients_MatchFiniteDifferences_WithIgnoredPositions()
    {
        var m = BertNanoTokenClassifier.Create<double>();
        m.InitParameters(9, std: 0.2);
        var rng = new Random(13);
        const int B = 2, T = 5, K = 5;
        m.Bind(B, T);
        m.SetInput("ids", Enumerable.Range(0, B * T).Select(_ => rng.Next(30522)).ToArray());
        m.SetInput("types", new int[B * T]);
        m.SetInput("mask", Enumerable.Range(0, B * T).Select(i => i >= T && i % T >= 3 ? 0 : 1).ToArray());
        // [CLS], padding and a continuation piece are -100.
        var labels = Enumerable.Range(0, B * T).Select(i => i % T == 0 || (i >= T && i % T >= 3) || i == 2 ? -100 : rng.Next(K)).ToArray();
        m.SetInput("labels", labels);
        var err = ModelGradientTests.CheckModel(m, () => m.Forward(training: true, seed: 23)[0], new Random(7));
        Assert.True(err is null, err);

        // A padded position (masked out of attention, label -100) does not change the loss; a counted label does.
        var ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(30522)).ToArray();
        m.SetInput("ids", ids);
        double loss = m.Forward(training: false)[0];
        ids[T + 3] = (ids[T + 3] + 1) % 30522;
        m.SetInput("ids", ids);
        Assert.Equal(loss, m.Forward(training: false)[0]);
        var changed = (int[])labels.Clone();
        changed[1] = (labels[1] + 1) % K;
        m.SetInput("labels", changed);
        Assert.NotEqual(loss, m.Forward(training: false)[0]);
    }

    static readonly WordPiece Tok = WordPiece.BertBaseUncased();

    static Bert.Data.LabeledSet Eight() => new("eight",
    [
        ("a wonderful film", 1), ("truly great acting", 1), ("i loved this phone", 1), ("best purchase ever", 1),
        ("a terrible film", 0), ("awful boring acting", 0), ("i hated this phone", 0), ("worst purchase ever", 0),
    ], 2);

    [Fact]
    public void PreLnClassifier_OverfitsEightExamples()
    {
        var m = BertNanoPreLnClassifier.Create<float>();
        m.InitParameters(3);
        var set = Eight();
        var job = new FinetuneJob(m, Tok, set, set, 16, 8, 1);
        double before = job.Evaluate().Loss;
        var loop = new TrainLoop
        {
            Model = m, TotalSteps = 80, Bind = job.Bind, Evaluate = job.Evaluate,
            Options = new TrainOptions { BatchSize = 8, LearningRate = 3e-3, WarmupFraction = 0.1, EvalEvery = 80 },
        };
        loop.Run(null, CancellationToken.None);
        var after = job.Evaluate();
        Assert.Equal(1.0, after.Score);
        Assert.True(after.Loss < 0.1 && after.Loss < before, $"dev loss {before:F3} → {after.Loss:F3}");
    }

    // Tags: 0 O · 1 PER · 2 LOC · 3 ORG · 4 MISC (one tag per word; sub-word pieces after the first are ignored).
    static readonly (string[] Words, int[] Tags)[] Tagged =
    [
        ("alice lives in paris".Split(' '), [1, 0, 0, 2]),
        ("bob works at google in london".Split(' '), [1, 0, 0, 3, 0, 2]),
        ("the unesco office in nairobi hired carol".Split(' '), [0, 3, 0, 0, 2, 0, 1]),
        ("dave flew to tokyo with microsoft".Split(' '), [1, 0, 0, 2, 0, 3]),
        ("eve speaks esperanto in berlin".Split(' '), [1, 0, 4, 0, 2]),
        ("the olympics came to sydney".Split(' '), [0, 4, 0, 0, 2]),
    ];

    [Fact]
    public void TokenTagging_LabelsTheFirstPieceOfEachWord_AndIgnoresTheRest()
    {
        var (ids, labels, cut) = TokenTaggingJob.Encode(Tok, "unesco hired carol".Split(' '), [3, 0, 1], maxLen: 32);
        Assert.Equal(0, cut);
        Assert.Equal(Tok.ClsId, ids[0]);
        Assert.Equal(Tok.SepId, ids[^1]);
        Assert.Equal(ids.Length, labels.Length);
        Assert.Equal(3, labels.Count(l => l != TokenTaggingJob.Ignore));
        Assert.Equal([3, 0, 1], labels.Where(l => l != TokenTaggingJob.Ignore));
        for (int i = 1; i < ids.Length - 1; i++)
            Assert.Equal(Tok.IsContinuation(ids[i]), labels[i] == TokenTaggingJob.Ignore);
        var (shortIds, shortLabels, shortCut) = TokenTaggingJob.Encode(Tok, Tagged[2].Words, Tagged[2].Tags, maxLen: 5);
        Assert.Equal(5, shortIds.Length);
        Assert.Equal(5, shortLabels.Length);
        Assert.Equal(Tok.SepId, shortIds[^1]);
        Assert.True(shortCut > 0);
    }

    [Fact]
    public void TokenClassifier_OverfitsAHandfulOfTaggedSentences()
    {
        var m = BertNanoTokenClassifier.Create<float>();
        m.InitParameters(4);
        var job = new TokenTaggingJob(m, Tok, Tagged, Tagged, 32, 6, 1);
        Assert.True(job.Evaluate().Score < 0.9);
        var loop = new TrainLoop
        {
            Model = m, TotalSteps = 120, Bind = job.Bind, Evaluate = job.Evaluate, StepMetrics = job.Metrics,
            Options = new TrainOptions { BatchSize = 6, LearningRate = 3e-3, WarmupFraction = 0.1, EvalEvery = 120 },
        };
        loop.Run(null, CancellationToken.None);
        var after = job.Evaluate();
        Assert.Equal(1.0, after.Score);
        Assert.True(loop.Losses[^1].Loss < loop.Losses[0].Loss / 4, $"loss {loop.Losses[0].Loss:F3} → {loop.Losses[^1].Loss:F3}");
    }

    [Fact]
    public void TokenTagging_TagOutOfRange_IsOneSentence()
    {
        var m = BertNanoTokenClassifier.Create<float>();
        var e = Assert.Throws<ArgumentException>(() => new TokenTaggingJob(m, Tok, [(["paris"], [7])], [], 16, 2, 1));
        Assert.Contains("tag 7", e.Message);
        Assert.Contains("0 to 4", e.Message);
        e = Assert.Throws<ArgumentException>(() => new TokenTaggingJob(m, Tok, [(["in", "paris"], [0])], [], 16, 2, 1));
        Assert.Contains("2 words but 1 tags", e.Message);
    }
}
