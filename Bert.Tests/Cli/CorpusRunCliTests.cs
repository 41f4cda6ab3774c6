using Bert.Data;
using Xunit;

namespace Bert.Tests.Cli;

public partial class CliTests
{
    /// <summary>pretrain keeps a tokenized corpus for the next run on the same files: that run (another --out, or the
    /// same one resumed) reads it back instead of tokenizing, and trains on the same pieces; a damaged cache is a remark
    /// and a fresh tokenizing, never a failure; BERT_CORPUS_CACHE=off keeps nothing.</summary>
    [Fact]
    public void Pretrain_KeepsTheTokenizedCorpus_ForTheNextRunOnTheSameFiles()
    {
        string corpus = Corpus(), cache = Path.Combine(_dir, "corpora");
        long minimum = CorpusCache.MinSourceBytes;
        string? before = Environment.GetEnvironmentVariable(CorpusCache.EnvironmentVariable);
        CorpusCache.MinSourceBytes = 0;   // the test corpus is far below the 64 MiB where caching starts
        Environment.SetEnvironmentVariable(CorpusCache.EnvironmentVariable, cache);
        try
        {
            string[] Args(string outDir, int steps = 2) => ["pretrain", "--corpus", corpus, "--size", "nano", "--steps", steps.ToString(), "--batch", "8", "--max-len", "32", "--out", Path.Combine(_dir, outDir)];
            string Line(string output, string start) => output.Split('\n').First(l => l.StartsWith(start, StringComparison.Ordinal));
            string Losses(string outDir) => System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, outDir, "trainer_state.json")))!["Losses"]!.ToJsonString();

            var first = Run(Args("a"));
            Assert.True(first.Code == 0, first.Out + first.Err);
            Assert.Contains("tokenized in", Line(first.Out, "Corpus:"));
            string kept = Assert.Single(Directory.GetFiles(cache));
            Assert.Contains($"Tokenized corpus cached in {kept} (", first.Out);

            var second = Run(Args("b"));
            Assert.True(second.Code == 0, second.Out + second.Err);
            Assert.Contains($"read from the cache {kept} in", Line(second.Out, "Corpus:"));
            Assert.DoesNotContain("Tokenized corpus cached", second.Out);
            string Counts(string output) => Line(output, "Corpus:")[..Line(output, "Corpus:").IndexOf(" (", StringComparison.Ordinal)];
            Assert.Equal(Counts(first.Out), Counts(second.Out));
            Assert.Equal(Losses("a"), Losses("b"));

            // Resumed for two more steps: the cached corpus again, and the losses of the same two runs without the cache.
            var resumed = Run(Args("a", steps: 4));
            Assert.True(resumed.Code == 0, resumed.Out + resumed.Err);
            Assert.Contains("read from the cache", resumed.Out);
            Assert.Contains("Resuming from step 2", resumed.Out);
            Environment.SetEnvironmentVariable(CorpusCache.EnvironmentVariable, "off");
            Assert.Equal(0, Run(Args("c")).Code);
            var uncached = Run(Args("c", steps: 4));
            Assert.True(uncached.Code == 0, uncached.Out + uncached.Err);
            Assert.Contains("tokenized in", Line(uncached.Out, "Corpus:"));
            Assert.Equal(Losses("c"), Losses("a"));
            Environment.SetEnvironmentVariable(CorpusCache.EnvironmentVariable, cache);

            // A cut cache file: a remark, the corpus tokenized again (the same losses), and the file made whole again.
            var bytes = File.ReadAllBytes(kept);
            File.WriteAllBytes(kept, bytes[..(bytes.Length - 3)]);
            var damaged = Run(Args("d"));
            Assert.True(damaged.Code == 0, damaged.Out + damaged.Err);
            Assert.Contains($"Note: The cached corpus {kept} cannot be used (its length is not what its counts make (a cut or damaged file)); tokenizing again.", damaged.Err);
            Assert.Contains("tokenized in", Line(damaged.Out, "Corpus:"));
            Assert.Equal(Losses("b"), Losses("d"));
            Assert.Equal(bytes, File.ReadAllBytes(kept));

            Environment.SetEnvironmentVariable(CorpusCache.EnvironmentVariable, "off");
            File.Delete(kept);
            var off = Run(Args("e"));
            Assert.True(off.Code == 0, off.Out + off.Err);
            Assert.DoesNotContain("cache", off.Out);
            Assert.Empty(Directory.GetFiles(cache));
        }
        finally
        {
            CorpusCache.MinSourceBytes = minimum;
            Environment.SetEnvironmentVariable(CorpusCache.EnvironmentVariable, before);
        }
    }

    /// <summary>A folder that holds a run this one may not continue is refused before the corpus is read: here the new
    /// corpus is not even UTF-8, and the refusal is about the folder, not the text (which tokenizing would have met first).</summary>
    [Fact]
    public void Pretrain_RefusesAnotherRunsFolder_BeforeReadingTheCorpus()
    {
        string outDir = Path.Combine(_dir, "run");
        string[] Args(string corpus) => ["pretrain", "--corpus", corpus, "--size", "nano", "--steps", "2", "--batch", "8", "--max-len", "32", "--out", outDir];
        var first = Run(Args(Corpus()));
        Assert.True(first.Code == 0, first.Out + first.Err);
        string other = Path.Combine(_dir, "other.txt");
        File.WriteAllBytes(other, [0x41, 0x20, 0xC3, 0x28, 0x0A]);
        var refused = Run(Args(other));
        Assert.NotEqual(0, refused.Code);
        Assert.Contains($"{outDir} holds a run on {Path.GetFullPath(Path.Combine(_dir, "corpus.txt"))}, not on {Path.GetFullPath(other)}", refused.Err);
        Assert.DoesNotContain("Corpus:", refused.Out);
    }

    /// <summary>A run remembers its files' lengths: after a shard is added to its folder, or a file grows, resuming is
    /// refused (it would go on over other pairs than it began with), naming what changed; put back, it resumes.</summary>
    [Fact]
    public void Resuming_IsRefused_WhenTheRunsFilesHaveChanged()
    {
        string shards = Path.Combine(_dir, "shards"), outDir = Path.Combine(_dir, "run");
        Directory.CreateDirectory(shards);
        var text = File.ReadAllText(Corpus()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        string a = Path.Combine(shards, "a.txt"), b = Path.Combine(shards, "b.txt"), c = Path.Combine(shards, "c.txt");
        File.WriteAllText(a, string.Join("\n\n", text.Take(15)));
        File.WriteAllText(b, string.Join("\n\n", text.Skip(15)));
        string[] Args(int steps) => ["pretrain", "--corpus", shards, "--size", "nano", "--steps", steps.ToString(), "--batch", "8", "--max-len", "32", "--out", outDir];
        var first = Run(Args(2));
        Assert.True(first.Code == 0, first.Out + first.Err);

        File.WriteAllText(c, "A third shard. It was not there before.");
        long aBytes = new FileInfo(a).Length;
        File.AppendAllText(a, "\n\nOne more document. With two sentences.");
        var refused = Run(Args(4));
        Assert.NotEqual(0, refused.Code);
        Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{outDir} holds a run on files that have changed since it started ({a} went from {aBytes:N0} to {new FileInfo(a).Length:N0} bytes; {c} was added); resuming would go on over other text"), refused.Err);
        Assert.Contains($"or start from its weights in another --out (--from {outDir}).", refused.Err);

        File.Delete(c);
        File.WriteAllText(a, string.Join("\n\n", text.Take(15)));
        var resumed = Run(Args(3));
        Assert.True(resumed.Code == 0, resumed.Out + resumed.Err);
        Assert.Contains("Resuming from step 2", resumed.Out);

        // A run saved by a bert that did not keep its files' lengths is not compared.
        File.WriteAllText(c, "A third shard. It was not there before.");
        Assert.NotEqual(0, Run(Args(4)).Code);
        string statePath = Path.Combine(outDir, "trainer_state.json");
        var state = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(statePath))!.AsObject();
        Assert.True(state.Remove("DataFiles"));
        File.WriteAllText(statePath, state.ToJsonString());
        var older = Run(Args(4));
        Assert.True(older.Code == 0, older.Out + older.Err);
        Assert.Contains("Resuming from step 3", older.Out);

        // Fine-tuning too: its training file edited since.
        string set = Labeled(), ft = Path.Combine(_dir, "ft");
        string[] Fine(int epochs) => ["finetune", "--data", set, "--size", "nano", "--epochs", epochs.ToString(), "--batch", "8", "--max-len", "32", "--out", ft];
        var tuned = Run(Fine(1));
        Assert.True(tuned.Code == 0, tuned.Out + tuned.Err);
        File.AppendAllText(set, "one more great film\t1\n");
        var edited = Run(Fine(2));
        Assert.NotEqual(0, edited.Code);
        Assert.Contains($"holds a run on files that have changed since it started ({Path.GetFullPath(set)} went from", edited.Err);
    }
}
