using Bert.Data;
using Bert.Models;
using Bert.Text;
using Bert.Training;
using Xunit;

namespace Bert.Tests.Training;

/// <summary>The training loop on real generated models: learning happens, interruption and resumption repeat an
/// uninterrupted run exactly, and a diverging run stops naming its step.</summary>
public class TrainLoopTests
{
    static readonly WordPiece Tok = WordPiece.BertBaseUncased();

    static LabeledSet Eight() => new("eight",
    [
        ("a wonderful film", 1), ("truly great acting", 1), ("i loved this phone", 1), ("best purchase ever", 1),
        ("a terrible film", 0), ("awful boring acting", 0), ("i hated this phone", 0), ("worst purchase ever", 0),
    ], 2);

    [Fact]
    public void TinyClassifier_OverfitsEightExamples()
    {
        var m = BertClassifier.Create<float>();
        m.InitParameters(3);
        var job = new FinetuneJob(m, Tok, Eight(), Eight(), 16, 8, 1);
        var loop = new TrainLoop
        {
            Model = m, TotalSteps = 60, Bind = job.Bind, Evaluate = job.Evaluate,
            Options = new TrainOptions { BatchSize = 8, LearningRate = 1e-3, WarmupFraction = 0.1, EvalEvery = 60 },
        };
        loop.Run(null, CancellationToken.None);
        Assert.Equal(1.0, job.Evaluate().Score);
        Assert.True(loop.Losses[^1].Loss < 0.1, $"final loss {loop.Losses[^1].Loss}");
    }

    static (PretrainJob Job, Bert.Runtime.Model<float> Model) Pretraining(int seed = 1)
    {
        var text = DefaultData.ReadText(DataFile.WikiText2RawTest);
        var lines = text.Split('\n').Take(600);   // a few hundred lines of WikiText
        var docs = global::Bert.Data.Pretraining.WikiTextDocuments(string.Join('\n', lines));
        var options = new PretrainingOptions { MaxSeqLength = 48 };
        var instances = global::Bert.Data.Pretraining.CreateInstances(docs, Tok, options, seed);
        var m = BertNanoPreTraining.Create<float>();
        m.InitParameters((ulong)seed);
        return (new PretrainJob(m, Tok, instances, options, 16, (ulong)seed), m);
    }

    /// <summary>RowMultiple pads a batch's masked rows with ignored rows at unmasked positions (so batches of one length
    /// share a shape, and a CUDA graph): the step sees the same loss, the same accuracies and the same gradients as
    /// without, up to the order of sums; the padding rows are distinct, not masked, and labelled -100.</summary>
    [Fact]
    public void PaddedMaskedRows_GiveTheUnpaddedLossAccuracyAndGradients()
    {
        var (plain, m1) = Pretraining();
        var (padded, m2) = Pretraining();
        padded.RowMultiple = 32;
        for (long step = 0; step < 3; step++)
        {
            plain.Bind(step); padded.Bind(step);
            Assert.True(m2.Rows % 32 == 0 && m2.Rows >= m1.Rows && m2.Rows < m1.Rows + 32, $"{m1.Rows} rows padded to {m2.Rows}");
            if (step == 0) Assert.True(m2.Rows > m1.Rows, "the first batch needs padding for the test to say anything");
            var rows = m2.IntInput("masked"); var labels = m2.IntInput("mlmLabels");
            Assert.Equal(m1.IntInput("masked").ToArray(), rows[..m1.Rows].ToArray());
            Assert.Equal(rows.Length, rows.ToArray().Distinct().Count());
            for (int g = m1.Rows; g < m2.Rows; g++) Assert.Equal(-100, labels[g]);
            float l1 = m1.Forward(training: true, seed: (ulong)step)[0], l2 = m2.Forward(training: true, seed: (ulong)step)[0];
            Assert.True(Math.Abs(l1 - l2) <= 1e-6f * Math.Abs(l1), $"step {step}: loss {l1} unpadded, {l2} padded");
            Assert.Equal(plain.Metrics()["mlm_acc"], padded.Metrics()["mlm_acc"]);
            m1.ZeroGradients(); m2.ZeroGradients();
            m1.Backward(); m2.Backward();
            double num = 0, den = 0;
            var g1 = m1.Gradients; var g2 = m2.Gradients;
            for (int i = 0; i < g1.Length; i++) { double d = g1[i] - g2[i]; num += d * d; den += (double)g1[i] * g1[i]; }
            Assert.True(Math.Sqrt(num / den) <= 1e-5, $"step {step}: gradients differ by {Math.Sqrt(num / den):E2} relative");
        }
    }

    /// <summary>SeqMultiple pads a fine-tuning batch to a length that is a multiple of 8 (fewer shapes for CUDA graphs): the
    /// padding is masked out of attention, so without dropout the classifier's loss and probabilities are the unpadded ones.</summary>
    /// <summary>A sentence pair is encoded as [CLS] a [SEP] b [SEP] with segment 1 from b on, and bound as the token types.</summary>
    [Fact]
    public void SentencePairs_BindTheSecondTextAsSegmentOne()
    {
        var set = Bert.Data.Labeled.ParsePairs("a great film\ti liked it\tyes\ngood\tbad\tno\n", "p.tsv");
        var (examples, cut) = FinetuneJob.Encode(Tok, set, 32);
        Assert.Equal(0, cut);
        var x = examples[0];
        int sep = Array.IndexOf(x.Ids, Tok.SepId);
        Assert.Equal(Tok.EncodePair("a great film", "i liked it", 32).Ids, x.Ids);
        Assert.All(x.Types[..(sep + 1)], t => Assert.Equal(0, t));
        Assert.All(x.Types[(sep + 1)..], t => Assert.Equal(1, t));
        var m = BertClassifier.Create<float>();
        FinetuneJob.BindBatch(m, examples, Tok.PadId, training: false);
        var types = m.IntInput("types");
        Assert.Equal(x.Types, types[..x.Ids.Length].ToArray());
        Assert.Equal(examples[1].Types, types.Slice(m.Seq, examples[1].Ids.Length).ToArray());
    }

    [Fact]
    public void PaddedSequences_GiveTheUnpaddedClassification()
    {
        var m1 = BertClassifier.Create<float>(); var m2 = BertClassifier.Create<float>();
        m1.InitParameters(5); m2.InitParameters(5);
        var batch = FinetuneJob.Encode(Tok, Eight(), 32).Examples.ToArray();
        int T = batch.Max(x => x.Ids.Length);
        Assert.True(T % 8 != 0, "the batch must need padding for the test to say anything");
        FinetuneJob.BindBatch(m1, batch, Tok.PadId, training: false);
        FinetuneJob.BindBatch(m2, batch, Tok.PadId, training: false, seqMultiple: 8);
        Assert.Equal(T, m1.Seq);
        Assert.Equal((T + 7) / 8 * 8, m2.Seq);
        float l1 = m1.Forward()[0], l2 = m2.Forward()[0];
        Assert.True(Math.Abs(l1 - l2) <= 1e-6f * Math.Abs(l1), $"loss {l1} unpadded, {l2} padded");
        var p1 = m1.Probabilities(0).ToArray(); var p2 = m2.Probabilities(0).ToArray();
        Assert.Equal(p1.Length, p2.Length);
        for (int i = 0; i < p1.Length; i++) Assert.True(Math.Abs(p1[i] - p2[i]) <= 1e-6f, $"probability {i}: {p1[i]} vs {p2[i]}");
    }

    /// <summary>The same for tagging: a batch padded to a multiple of 8 (as on a GPU with graphs) has the unpadded loss,
    /// and the padded positions carry no label.</summary>
    [Fact]
    public void PaddedSentences_GiveTheUnpaddedTagging()
    {
        var m1 = BertNanoTokenClassifier.Create<float>(); var m2 = BertNanoTokenClassifier.Create<float>();
        m1.InitParameters(5); m2.InitParameters(5);
        var set = Conll.Parse("Mary B-PER\nSmith I-PER\nlives O\nin O\nRome B-LOC\n\nHi O\n", "t.conll");
        var batch = set.Sentences.Select(x => { var e = TokenTaggingJob.Encode(Tok, x.Words, x.Tags, 32); return (e.Ids, e.Labels); }).ToArray();
        int T = batch.Max(x => x.Ids.Length);
        Assert.True(T % 8 != 0, "the batch must need padding for the test to say anything");
        TokenTaggingJob.BindBatch(m1, batch, Tok.PadId, training: false);
        TokenTaggingJob.BindBatch(m2, batch, Tok.PadId, training: false, seqMultiple: 8);
        Assert.Equal((T + 7) / 8 * 8, m2.Seq);
        Assert.All(m2.IntInput("labels").ToArray().Where((_, i) => i % m2.Seq >= T), l => Assert.Equal(TokenTaggingJob.Ignore, l));
        float l1 = m1.Forward()[0], l2 = m2.Forward()[0];
        Assert.True(Math.Abs(l1 - l2) <= 1e-6f * Math.Abs(l1), $"loss {l1} unpadded, {l2} padded");
    }

    [Fact]
    public void Pretraining_LowersTheHeldOutMaskedLmLoss()
    {
        var (job, m) = Pretraining();
        double before = -job.Evaluate().Score;
        var loop = new TrainLoop
        {
            Model = m, TotalSteps = 40, Bind = job.Bind, Evaluate = job.Evaluate,
            Options = new TrainOptions { BatchSize = 16, LearningRate = 2e-3, WarmupFraction = 0.1 },
        };
        loop.Run(null, CancellationToken.None);
        double after = -job.Evaluate().Score;
        Assert.True(after < before - 1.0, $"held-out loss {before:F3} → {after:F3}");
    }

    [Fact]
    public void OutputBiasFromFrequencies_IsTheCentredLogUnigramPrior_AndLowersTheStartingLoss()
    {
        var (job, m) = Pretraining();
        double before = -job.Evaluate().Score;
        Assert.True(job.InitOutputBiasFromFrequencies());
        var p = m.Info.Parameters.Single(x => x.HfName == "cls.predictions.bias");
        var bias = m.Parameters.Slice((int)p.Offset, (int)p.Length).ToArray();
        Assert.Equal(0, bias.Average(x => (double)x), 4);
        int the = Tok.IdOf("the"), comma = Tok.IdOf(","), rare = Tok.IdOf("[unused5]");   // a piece no text holds
        Assert.True(bias[the] > bias[rare] + 3 && bias[comma] > bias[rare] + 3, $"the {bias[the]}, ',' {bias[comma]}, [unused5] {bias[rare]}");
        Assert.Equal(bias[Tok.ClsId], bias[rare]);   // [CLS] and [SEP] are never predicted: counted as unseen
        double after = -job.Evaluate().Score;
        // Random init predicts about uniformly over 30522 pieces (ln 30522 ≈ 10.3 nats); the prior starts near the
        // unigram entropy of the text, several nats lower.
        Assert.True(after < before - 2, $"held-out loss {before:F3} → {after:F3}");
        PretrainingInstance[] two = [new([101, 1996, 102, 2003, 102], [0, 0, 0, 1, 1], false), new([101, 2003, 102, 1996, 102], [0, 0, 0, 1, 1], true)];
        Assert.False(new PretrainJob(BertClassifier.Create<float>(), Tok, two, new PretrainingOptions(), 4, 1).InitOutputBiasFromFrequencies());
    }

    [Fact]
    public void WithoutDropout_TheStepDoesNotDependOnItsSeed()
    {
        static double[] Losses(bool dropout, ulong seed)
        {
            var (job, m) = Pretraining();
            var loop = new TrainLoop
            {
                Model = m, TotalSteps = 3, Bind = job.Bind,
                Options = new TrainOptions { BatchSize = 16, LearningRate = 1e-3, Seed = seed, Dropout = dropout },
            };
            loop.Run(null, CancellationToken.None);
            return loop.Losses.Select(l => l.Loss).ToArray();
        }
        Assert.Equal(Losses(false, 1), Losses(false, 2));
        Assert.NotEqual(Losses(true, 1), Losses(true, 2));
    }

    [Fact]
    public void InterruptedThenResumed_RepeatsTheUninterruptedLossesExactly()
    {
        var dir = Directory.CreateTempSubdirectory("bert-resume-").FullName;
        try
        {
            TrainLoop Loop(PretrainJob job, Bert.Runtime.Model<float> m, string? d) => new()
            {
                Model = m, TotalSteps = 8, Bind = job.Bind, Dir = d,
                Options = new TrainOptions { BatchSize = 16, LearningRate = 1e-3, Seed = 5 },
            };
            var (j1, m1) = Pretraining(2);
            var whole = Loop(j1, m1, null);
            whole.Run(null, CancellationToken.None);

            var (j2, m2) = Pretraining(2);
            var first = Loop(j2, m2, dir);
            using var cts = new CancellationTokenSource();
            first.Run(r => { if (r.Step == 3) cts.Cancel(); }, cts.Token);   // Ctrl-C after step 3
            Assert.Equal(3, first.Step);

            var (j3, m3) = Pretraining(2);
            var second = Loop(j3, m3, dir);
            Assert.True(second.TryResume());
            Assert.Equal(3, second.Step);
            second.Run(null, CancellationToken.None);
            Assert.Equal(whole.Losses.Select(l => l.Loss), second.Losses.Select(l => l.Loss));
            Assert.True(m1.Parameters.SequenceEqual(m3.Parameters), "resumed weights differ from the uninterrupted run");
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void SaveEvery_KilledMidRun_ResumesFromTheLastSave_AndRepeatsTheUninterruptedRun()
    {
        var dir = Directory.CreateTempSubdirectory("bert-save-every-").FullName;
        try
        {
            TrainLoop Loop(PretrainJob job, Bert.Runtime.Model<float> m, string? d, Func<long, int>? bind = null) => new()
            {
                Model = m, TotalSteps = 7, Bind = bind ?? job.Bind, Dir = d,
                Options = new TrainOptions { BatchSize = 16, LearningRate = 1e-3, Seed = 9, SaveEvery = 2 },
            };
            var (j1, m1) = Pretraining(4);
            var whole = Loop(j1, m1, null);
            whole.Run(null, CancellationToken.None);

            // The process dies while binding step 6 (index 5): no Ctrl-C, no final save.
            var (j2, m2) = Pretraining(4);
            var crashing = Loop(j2, m2, dir, i => i == 5 ? throw new IOException("killed") : j2.Bind(i));
            Assert.Throws<IOException>(() => crashing.Run(null, CancellationToken.None));

            var (j3, m3) = Pretraining(4);
            var resumed = Loop(j3, m3, dir);
            Assert.True(resumed.TryResume());
            Assert.Equal(4, resumed.Step);                                  // the save after step 4, not 2
            resumed.Run(null, CancellationToken.None);
            Assert.Equal(whole.Losses.Select(l => l.Loss), resumed.Losses.Select(l => l.Loss));
            Assert.True(m1.Parameters.SequenceEqual(m3.Parameters), "resumed weights differ from the uninterrupted run");
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>A process killed after a save's weights and optimizer state but before trainer_state.json: resuming takes the
    /// weights' step (and says so) and repeats the uninterrupted run; a folder whose weights and optimizer disagree too is
    /// one sentence naming the three steps.</summary>
    [Fact]
    public void Resume_WithTrainerStateOneSaveBehind_TakesTheWeightsStep_AndMismatchedFilesAreOneSentence()
    {
        var dir = Directory.CreateTempSubdirectory("bert-resume-behind-").FullName;
        try
        {
            TrainLoop Loop(PretrainJob job, Bert.Runtime.Model<float> m, string? d, long steps, Func<long, int>? bind = null) => new()
            {
                Model = m, TotalSteps = steps, Bind = bind ?? job.Bind, Dir = d,
                Options = new TrainOptions { BatchSize = 16, LearningRate = 1e-3, Seed = 5, SaveEvery = 2 },
            };
            var (j1, m1) = Pretraining(4);
            var whole = Loop(j1, m1, null, 6);
            whole.Run(null, CancellationToken.None);

            // A run killed while binding step 5 (after the save at step 4) whose trainer_state.json is still step 2's.
            var (j2, m2) = Pretraining(4);
            var first = Loop(j2, m2, dir, 6, i => i == 4 ? throw new IOException("killed") : j2.Bind(i));
            Assert.Throws<IOException>(() => first.Run(null, CancellationToken.None));
            string statePath = Path.Combine(dir, "trainer_state.json");
            var state = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(statePath))!.AsObject();
            state["Step"] = 2;
            state["Losses"] = new System.Text.Json.Nodes.JsonArray(state["Losses"]!.AsArray().Take(2).Select(x => x!.DeepClone()).ToArray());
            File.WriteAllText(statePath, state.ToJsonString());

            var (j3, m3) = Pretraining(4);
            var resumed = Loop(j3, m3, dir, 6);
            var err = new StringWriter();
            var old = Console.Error;
            Console.SetError(err);
            try { Assert.True(resumed.TryResume()); }
            finally { Console.SetError(old); }
            Assert.Equal(4, resumed.Step);
            Assert.Contains("trainer_state.json is from step 2 but the weights and optimizer state are from step 4", err.ToString());
            resumed.Run(null, CancellationToken.None);
            Assert.True(m1.Parameters.SequenceEqual(m3.Parameters), "the resumed run's weights differ from the uninterrupted run's");

            // Weights from one save, optimizer state from another: nothing fits together.
            string opt = Path.Combine(dir, "optimizer.bin");
            var (j4, m4) = Pretraining(4);
            var other = Loop(j4, m4, Path.Combine(dir, "other"), 2);
            other.Run(null, CancellationToken.None);
            File.Copy(Path.Combine(dir, "other", "optimizer.bin"), opt, overwrite: true);
            var (j5, m5) = Pretraining(4);
            var e = Assert.Throws<Bert.Runtime.Checkpoints.CheckpointException>(() => Loop(j5, m5, dir, 8).TryResume());
            Assert.Contains("holds weights from step 6, optimizer state from step 2 and trainer_state.json from step 6", e.Message.Replace(dir, "DIR"));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void DivergingRun_StopsNamingTheStep_AndKeepsTheLastGoodCheckpoint()
    {
        var dir = Directory.CreateTempSubdirectory("bert-nan-").FullName;
        try
        {
            var (job, m) = Pretraining(3);
            var loop = new TrainLoop
            {
                Model = m, TotalSteps = 2, Bind = job.Bind, Dir = dir,
                Options = new TrainOptions { BatchSize = 16, LearningRate = 1e-3 },
            };
            loop.Run(null, CancellationToken.None);               // a good checkpoint at step 2
            var saved = File.ReadAllBytes(Path.Combine(dir, "model.safetensors"));
            m.Parameters[0] = float.NaN;                          // then the weights go bad
            var bad = new TrainLoop
            {
                Model = m, TotalSteps = 5, Bind = job.Bind, Dir = dir,
                Options = new TrainOptions { BatchSize = 16, LearningRate = 1e-3 },
            };
            var e = Assert.Throws<TrainingException>(() => bad.Run(null, CancellationToken.None));
            Assert.Contains("at step 1", e.Message);
            Assert.Contains($"the last good checkpoint (step 2) is in {dir}", e.Message);
            Assert.Equal(saved, File.ReadAllBytes(Path.Combine(dir, "model.safetensors")));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void DivergingRun_WithNothingSavedYet_SaysSo_AndWritesNothing()
    {
        var dir = Path.Combine(Path.GetTempPath(), "bert-nan-fresh-" + Guid.NewGuid().ToString("N"));
        var (job, m) = Pretraining(3);
        m.Parameters[0] = float.NaN;
        var loop = new TrainLoop
        {
            Model = m, TotalSteps = 3, Bind = job.Bind, Dir = dir,
            Options = new TrainOptions { BatchSize = 16, LearningRate = 1e-3 },
        };
        var e = Assert.Throws<TrainingException>(() => loop.Run(null, CancellationToken.None));
        Assert.Contains("at step 1", e.Message);
        Assert.Contains($"no checkpoint had been saved in {dir} yet", e.Message);
        Assert.False(Directory.Exists(dir));
    }
}
