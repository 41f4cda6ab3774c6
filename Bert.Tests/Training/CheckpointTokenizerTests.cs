using Bert.Data;
using Bert.Models;
using Bert.Runtime.Checkpoints;
using Bert.Tests.Cli;
using Bert.Tests.Data;
using Bert.Text;
using Bert.Training;
using Xunit;

namespace Bert.Tests.Training;

/// <summary>A checkpoint travels with its tokenizer: a cased vocabulary reloads with cased settings, and a
/// different vocabulary or normalization is refused in one sentence.</summary>
public class CheckpointTokenizerTests
{
    static readonly string[] Lines =
    [
        "— Não, disse-me ele. É café, e é cafe.", "Capitu tinha olhos de ressaca.", "— Não! — disse Bentinho.",
        "A Capitu e o Bentinho não disseram nada.", "Ele é o José Dias, e ela é a prima Justina.",
    ];

    static WordPiece CasedTok() => VocabBuilder.Build(Lines, 120, Portuguese.Settings, 1).ToTokenizer();

    static string SaveNano(WordPiece tok, bool stamp = true)
    {
        string dir = TempDir.Create();
        var m = BertNanoPreTraining.Create<float>();
        m.InitParameters(1);
        Checkpoint.Save(dir, m, stamp ? CheckpointTokenizer.Stamp(tok) : null);
        tok.Save(dir);
        return dir;
    }

    [Fact]
    public void CasedCheckpointReloadsWithCasedSettings()
    {
        var tok = CasedTok();
        string dir = SaveNano(tok);
        try
        {
            var back = CheckpointTokenizer.Load(dir);
            Assert.False(back.Settings.LowerCase);
            Assert.False(back.Settings.StripAccents);
            Assert.Equal(tok.Vocab, back.Vocab);
            Assert.Equal(["É", "café"], back.Tokenize("É café"));
            CheckpointTokenizer.Require(back, dir);  // the same tokenizer passes
            var stamp = CheckpointTokenizer.ReadStamp(dir)!;
            Assert.Equal("false", stamp[CheckpointTokenizer.LowerCaseKey]);
            Assert.Equal(tok.VocabSize.ToString(), stamp[CheckpointTokenizer.EntriesKey]);
        }
        finally { TempDir.Delete(dir); }
    }

    [Fact]
    public void UncasedSettingsBesideACasedCheckpointAreRefusedInOneSentence()
    {
        var tok = CasedTok();
        string dir = SaveNano(tok);
        try
        {
            // Someone overwrites the settings: same entries, now lower-cased and accent-stripped.
            (TokenizerSettings.Uncased with { SpecialIds = SpecialTokenIds.Compact }).Save(dir);
            var e = Assert.Throws<CheckpointException>(() => CheckpointTokenizer.Load(dir));
            Assert.Contains($"was trained with a cased vocabulary of {tok.VocabSize} entries with accents kept", e.Message);
            Assert.Contains($"give a lower-cased vocabulary of {tok.VocabSize} entries with accents stripped", e.Message);
            Assert.EndsWith(".", e.Message);
            Assert.DoesNotContain("\n", e.Message);
        }
        finally { TempDir.Delete(dir); }
    }

    [Fact]
    public void AnotherVocabularyIsRefusedEvenWithTheSameSettings()
    {
        var tok = CasedTok();
        string dir = SaveNano(tok);
        try
        {
            var other = VocabBuilder.Build(Lines, 100, Portuguese.Settings, 1).ToTokenizer();
            var e = Assert.Throws<CheckpointException>(() => CheckpointTokenizer.Require(other, dir, "the vocabulary given"));
            Assert.Contains("but the vocabulary given is a cased vocabulary of 100 entries", e.Message);
            var uncased = Assert.Throws<CheckpointException>(() => CheckpointTokenizer.Require(WordPiece.BertBaseUncased(), dir));
            Assert.Contains("lower-cased vocabulary of 30522 entries", uncased.Message);
        }
        finally { TempDir.Delete(dir); }
    }

    [Fact]
    public void ACheckpointWithoutAStampTakesTheFilesBesideIt()
    {
        var tok = CasedTok();
        string dir = SaveNano(tok, stamp: false);
        try
        {
            Assert.Null(CheckpointTokenizer.ReadStamp(dir));
            Assert.Equal(tok.Vocab, CheckpointTokenizer.Load(dir).Vocab);
            CheckpointTokenizer.Require(WordPiece.BertBaseUncased(), dir); // nothing recorded, nothing to refuse
        }
        finally { TempDir.Delete(dir); }
    }

    [Fact]
    public void TrainLoopSavesTheTokenizerAndRefusesToResumeWithAnother()
    {
        var tok = CasedTok();
        var docs = Enumerable.Range(0, 6).Select(_ => Lines.ToList()).ToList();
        var options = new PretrainingOptions { MaxSeqLength = 32 };
        var instances = Pretraining.CreateInstances(docs, tok, options, 1);
        var m = BertNanoPreTraining.Create<float>();
        m.InitParameters(1);
        var job = new PretrainJob(m, tok, instances, options, 4, 1);
        string dir = TempDir.Create();
        try
        {
            var loop = new TrainLoop
            {
                Model = m, TotalSteps = 1, Bind = job.Bind, Dir = dir, Tokenizer = tok,
                Options = new TrainOptions { BatchSize = 4, LearningRate = 1e-3 },
            };
            loop.Run(null, CancellationToken.None);
            Assert.False(TokenizerSettings.Load(dir).LowerCase);
            Assert.Equal(tok.Vocab, CheckpointTokenizer.Load(dir).Vocab);

            TrainLoop Resume(WordPiece t) => new()
            {
                Model = BertNanoPreTraining.Create<float>(), TotalSteps = 2, Bind = job.Bind, Dir = dir, Tokenizer = t,
                Options = new TrainOptions { BatchSize = 4, LearningRate = 1e-3 },
            };
            Assert.True(Resume(tok).TryResume());
            var e = Assert.Throws<CheckpointException>(() => Resume(WordPiece.BertBaseUncased()).TryResume());
            Assert.Contains("but this run's tokenizer is a lower-cased vocabulary of 30522 entries", e.Message);
        }
        finally { TempDir.Delete(dir); }
    }

    [Fact]
    public void MiniPtModelsEmbedThePortugueseVocabulary()
    {
        var pre = Catalog.Get("mini-pt", "pretraining");
        Assert.Equal("BertMiniPtPreTraining", pre.Info.Name);
        Assert.Equal(Portuguese.VocabSize, pre.Info.Constants["Vocab"]);
        Assert.Equal(256, pre.Info.Constants["Hidden"]);
        Assert.Equal(4, pre.Info.Constants["Layers"]);
        var two = Catalog.Get("mini-pt", "classifier", 2);
        var three = Catalog.Get("mini-pt", "classifier", 3);
        Assert.Equal("BertMiniPtClassifier", two.Info.Name);
        Assert.Equal("BertMiniPt3Classifier", three.Info.Name);
        Assert.Equal(3, three.Info.Constants["Classes"]);
        Assert.Equal(Portuguese.VocabSize, three.Info.Constants["Vocab"]);
        // The word embedding is V × C.
        var word = pre.Info.Parameters.Single(p => p.HfName == "bert.embeddings.word_embeddings.weight");
        Assert.Equal([Portuguese.VocabSize, 256], word.Shape);
        // The Mini encoder carries over from pre-training to both classifiers.
        var p = pre.Create(); var c = three.Create();
        Assert.Equal(c.Info.Parameters.Count - 2, FinetuneJob.Transfer(p, c)); // all but the fresh classifier head
    }
}

/// <summary>`bert vocab --lang pt` and the tokenizer travelling with checkpoints, end to end.</summary>
[Collection("Console")]
public class PortugueseCliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("bert-cli-pt-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    [Fact]
    public void VocabLangPt_IsCasedKeepsAccentsAndHasTheAskedSize()
    {
        var outDir = Path.Combine(_dir, "v");
        var r = CliTests.Run("vocab", "--lang", "pt", "--size", "1000", "--out", outDir);
        Assert.True(r.Code == 0, r.Out + r.Err);
        var tok = WordPiece.Load(outDir);
        Assert.Equal(1000, tok.VocabSize);
        Assert.False(tok.Settings.LowerCase);
        Assert.False(tok.Settings.StripAccents);
        Assert.Equal(SpecialTokenIds.Compact, tok.Ids);
        Assert.NotEqual(tok.IdOf("é"), tok.IdOf("e"));
    }

    [Fact]
    public void PretrainedCasedCheckpointRefusesAnUncasedVocabulary()
    {
        string corpus = Path.Combine(_dir, "pt.txt");
        File.WriteAllText(corpus, string.Join("\n\n", Enumerable.Range(0, 20).Select(i =>
            $"— Não, disse-me ele {i}. É café, e é cafe. Capitu tinha olhos de ressaca. A prima Justina não disse nada.")) + "\n");
        string cased = Path.Combine(_dir, "cased"), uncased = Path.Combine(_dir, "uncased"), pre = Path.Combine(_dir, "pre");
        Assert.Equal(0, CliTests.Run("vocab", "--corpus", corpus, "--lang", "pt", "--size", "120", "--min-frequency", "1", "--out", cased).Code);
        Assert.Equal(0, CliTests.Run("vocab", "--corpus", corpus, "--size", "120", "--min-frequency", "1", "--out", uncased).Code);

        var r = CliTests.Run("pretrain", "--corpus", corpus, "--vocab", cased, "--size", "nano", "--steps", "2", "--batch", "4", "--max-len", "32", "--out", pre);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.False(TokenizerSettings.Load(pre).LowerCase);

        string tsv = Path.Combine(_dir, "set.tsv");
        File.WriteAllText(tsv, string.Join("\n", Enumerable.Range(0, 16).Select(i => i % 2 == 0 ? $"É café {i}\t1" : $"Não é cafe {i}\t0")) + "\n");
        foreach (var args in new[]
        {
            new[] { "finetune", "--data", tsv, "--from", pre, "--vocab", uncased, "--size", "nano", "--epochs", "1", "--out", Path.Combine(_dir, "ft-bad") },
            new[] { "pretrain", "--corpus", corpus, "--vocab", uncased, "--size", "nano", "--steps", "3", "--batch", "4", "--max-len", "32", "--out", pre },
        })
        {
            r = CliTests.Run(args);
            Assert.NotEqual(0, r.Code);
            var err = r.Err.Trim();
            Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.True(err.Contains("was trained with a cased vocabulary of 120 entries with accents kept"), err);
            Assert.Matches(@"is a lower-cased vocabulary of \d+ entries with accents stripped", err);
        }

        // With the checkpoint's own tokenizer, fine-tuning, evaluation and prediction run (and stay cased).
        var ft = Path.Combine(_dir, "ft");
        r = CliTests.Run("finetune", "--data", tsv, "--from", pre, "--size", "nano", "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.False(TokenizerSettings.Load(Path.Combine(ft, "best")).LowerCase);
        r = CliTests.Run("predict", "--model", Path.Combine(ft, "best"), "É café");
        Assert.True(r.Code == 0, r.Out + r.Err);
    }
}
