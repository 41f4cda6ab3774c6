using System.Text;
using Bert.Cli;
using Bert.Data;
using Bert.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Data;

/// <summary>A tokenized corpus kept on disk (<see cref="CorpusCache"/>): written and read back whole, refused when it is
/// anything else, keyed by what its pieces depend on.</summary>
public sealed class CorpusCacheTests : IDisposable
{
    static readonly WordPiece Tok = WordPiece.BertBaseUncased();
    readonly string _dir = Directory.CreateTempSubdirectory("bert-corpus-cache-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static readonly byte[] Key = Enumerable.Range(0, 32).Select(i => (byte)(i * 7 + 1)).ToArray();

    static TokenizedCorpus Random(int seed, int vocab, int documents)
    {
        var rng = new Random(seed);
        var docs = Enumerable.Range(0, documents).Select(_ => (IReadOnlyList<int[]>)Enumerable.Range(0, 1 + rng.Next(6))
            .Select(_ => Enumerable.Range(0, rng.Next(40)).Select(_ => rng.Next(vocab)).ToArray()).ToList());
        return TokenizedCorpus.From(docs, vocab);
    }

    static byte[] Bytes(TokenizedCorpus corpus, byte[]? key = null)
    {
        var ms = new MemoryStream();
        corpus.Write(ms, key ?? Key);
        return ms.ToArray();
    }

    static void AssertSame(TokenizedCorpus expected, TokenizedCorpus actual)
    {
        Assert.Equal((expected.VocabSize, expected.Documents, expected.Sentences, expected.Pieces, expected.Bytes),
            (actual.VocabSize, actual.Documents, actual.Sentences, actual.Pieces, actual.Bytes));
        for (int d = 0; d < expected.Documents; d++)
        {
            Assert.Equal(expected.SentenceCount(d), actual.SentenceCount(d));
            for (int j = 0; j < expected.SentenceCount(d); j++) Assert.Equal(expected.Sentence(d, j), actual.Sentence(d, j));
        }
    }

    /// <summary>Any corpus, of a two-byte or a four-byte vocabulary, reads back as it was written.</summary>
    [Property(MaxTest = 60)]
    public Property WriteThenRead_GivesTheSameCorpus(PositiveInt seed, bool wide, byte documents)
    {
        int vocab = wide ? 119_547 : 30_522;
        var corpus = Random(seed.Get, vocab, documents % 50);
        var read = TokenizedCorpus.Read(new MemoryStream(Bytes(corpus)), Key, vocab, out string? problem);
        if (read is null) return false.Label(problem ?? "null");
        AssertSame(corpus, read);
        return (problem is null).Label("no problem");
    }

    /// <summary>More documents and more sentences than the 1 Mi counts written and read at a time.</summary>
    [Fact]
    public void WriteThenRead_TakesTheCountsInRuns()
    {
        int many = (1 << 20) + 7;
        var docs = Enumerable.Range(0, many).Select(i => (IReadOnlyList<int[]>)[[i % 30_522]])
            .Append(Enumerable.Range(0, many).Select(i => new[] { i % 29, 5 }).ToList());
        var corpus = TokenizedCorpus.From(docs, 30_522);
        var read = TokenizedCorpus.Read(new MemoryStream(Bytes(corpus)), Key, 30_522, out string? problem)!;
        Assert.Null(problem);
        Assert.Equal((many + 1, 2 * many, 3L * many), (read.Documents, read.Sentences, read.Pieces));
        Assert.Equal(many, read.SentenceCount(many));
        foreach (int d in new[] { 0, 1 << 20, many - 1 }) Assert.Equal([d % 30_522], read.Sentence(d, 0));
        foreach (int j in new[] { 0, (1 << 20) - 1, 1 << 20, many - 1 }) Assert.Equal([j % 29, 5], read.Sentence(many, j));
    }

    [Fact]
    public void Read_AcrossTheStoresArrays_GivesEveryPiece()
    {
        // 17 Mi pieces: the second of the store's 16 Mi-piece arrays is read too, and checked against the vocabulary.
        var rng = new Random(3);
        var docs = new List<IReadOnlyList<int[]>>();
        for (long total = 0; total < (17 << 20);)
        {
            var s = Enumerable.Range(0, 1000 + rng.Next(4000)).Select(_ => rng.Next(30_522)).ToArray();
            docs.Add([s]);
            total += s.Length;
        }
        var corpus = TokenizedCorpus.From(docs, 30_522);
        var read = TokenizedCorpus.Read(new MemoryStream(Bytes(corpus)), Key, 30_522, out _)!;
        Assert.Equal(corpus.Pieces, read.Pieces);
        var a = new int[4096];
        var b = new int[4096];
        for (long at = 0; at + a.Length <= corpus.Pieces; at += 997_331)
        {
            corpus.CopyTo(at, a);
            read.CopyTo(at, b);
            Assert.Equal(a, b);
        }
    }

    /// <summary>Nothing in the file is trusted: each way it can be wrong is refused with its reason, never read as a corpus.</summary>
    [Fact]
    public void Read_RefusesAnythingElse_SayingWhy()
    {
        var corpus = Random(11, 30_522, 20);
        var good = Bytes(corpus);
        string? Refused(byte[] bytes, byte[]? key = null, int vocab = 30_522)
        {
            var read = TokenizedCorpus.Read(new MemoryStream(bytes), key ?? Key, vocab, out string? problem);
            Assert.Null(read);
            return problem;
        }
        Assert.Contains("not a tokenized corpus", Refused([]));
        Assert.Contains("not a tokenized corpus", Refused(Encoding.UTF8.GetBytes("the quick brown fox jumps over the lazy dog, again and again")));
        Assert.Contains("made from these files as they were before, or by another build", Refused(good, key: Enumerable.Repeat((byte)9, 32).ToArray()));
        Assert.Contains("vocabulary of 30522, not 30000", Refused(good, vocab: 30_000));
        Assert.Contains("a cut or damaged file", Refused(good[..^1]));
        Assert.Contains("a cut or damaged file", Refused([.. good, 0]));

        var outside = (byte[])good.Clone();
        outside[^10] = 0xFF; outside[^9] = 0xFF;   // the last piece (before the 8-byte checksum): 65 535
        Assert.Contains("an id outside the vocabulary of 30522", Refused(outside));
        var flipped = (byte[])good.Clone();
        flipped[^10] ^= 1;   // another id, still in the vocabulary: only the checksum sees it
        Assert.Contains("its checksum does not match", Refused(flipped));
        var zeroed = (byte[])good.Clone();   // a crash's hole: the pieces zeroed ([PAD], in the vocabulary)
        Array.Clear(zeroed, zeroed.Length - 200, 192);
        Assert.Contains("its checksum does not match", Refused(zeroed));

        const int header = 8 + 32 + 4 + 4 + 4 + 8;
        var noSentences = (byte[])good.Clone();
        BitConverter.GetBytes(0).CopyTo(noSentences, header);   // the first document's sentence count
        Assert.Contains("do not add up", Refused(noSentences));
        var emptySentence = (byte[])good.Clone();
        BitConverter.GetBytes(0).CopyTo(emptySentence, header + 4 * corpus.Documents);   // the first sentence's length
        Assert.Contains("do not add up", Refused(emptySentence));
        var moved = (byte[])good.Clone();   // one sentence a piece longer and the next a piece shorter: every count holds
        int first = BitConverter.ToInt32(good, header + 4 * corpus.Documents), second = BitConverter.ToInt32(good, header + 4 * corpus.Documents + 4);
        Assert.True(second > 1, "the corpus's second sentence has two pieces or more");
        BitConverter.GetBytes(first + 1).CopyTo(moved, header + 4 * corpus.Documents);
        BitConverter.GetBytes(second - 1).CopyTo(moved, header + 4 * corpus.Documents + 4);
        Assert.Contains("its checksum does not match", Refused(moved));

        // An empty corpus is a corpus.
        var none = TokenizedCorpus.From([], 30_522);
        Assert.Equal(0, TokenizedCorpus.Read(new MemoryStream(Bytes(none)), Key, 30_522, out _)!.Documents);
    }

    [Fact]
    public void DefaultDirectory_FollowsTheEnvironment_AndOffTurnsItOff()
    {
        Assert.Equal("/x/corpora", CorpusCache.DefaultDirectory(n => n switch { "BERT_CORPUS_CACHE" => "/x/corpora", "XDG_CACHE_HOME" => "/xdg", _ => "/home/u" }));
        Assert.Null(CorpusCache.DefaultDirectory(n => n switch { "BERT_CORPUS_CACHE" => " OFF ", _ => "/home/u" }));
        Assert.Equal("/xdg/bert/corpora", CorpusCache.DefaultDirectory(n => n switch { "XDG_CACHE_HOME" => "/xdg", "HOME" => "/home/u", _ => null }));
        Assert.Equal("/home/u/.cache/bert/corpora", CorpusCache.DefaultDirectory(n => n == "HOME" ? "/home/u" : n == "BERT_CORPUS_CACHE" ? "" : null));
    }

    string CorpusFile(string name, int documents)
    {
        string path = Path.Combine(_dir, name);
        var rng = new Random(documents);
        string[] words = ["the", "story", "of", "a", "phone", "whose", "battery", "lasted", "longer", "than", "expected"];
        File.WriteAllText(path, string.Join("\n\n", Enumerable.Range(0, documents).Select(_ =>
            string.Join("\n", Enumerable.Range(0, 2 + rng.Next(4)).Select(_ => string.Join(' ', Enumerable.Range(0, 5 + rng.Next(9)).Select(_ => words[rng.Next(words.Length)])) + ".")))));
        return path;
    }

    static TokenizedCorpus Tokenized(IReadOnlyList<string> specs) =>
        TokenizedCorpus.Tokenize(DataSets.CorpusDocuments(specs).Documents, Tok);

    /// <summary>The key is what the pieces depend on: a file's path, length and time, a named corpus, the tokenizer; a
    /// corpus saved under it is read back the same, and the threshold and "off" keep small corpora out.</summary>
    [Fact]
    public void TheCache_KeepsACorpusUnderWhatMadeIt()
    {
        string file = CorpusFile("c.txt", 40), cache = Path.Combine(_dir, "cache");
        long size = new FileInfo(file).Length;
        Assert.Null(CorpusCache.For([file], DataSets.IsNamedCorpus, Tok, cache, minSourceBytes: size + 1));
        var entry = CorpusCache.For([file], DataSets.IsNamedCorpus, Tok, cache, minSourceBytes: size)!;
        Assert.StartsWith(cache, entry.Path);
        Assert.Null(entry.TryLoad(out string? problem));
        Assert.Null(problem);   // none yet: nothing to say

        var corpus = Tokenized([file]);
        long? written = entry.Save(corpus, out problem);
        Assert.Null(problem);
        Assert.Equal(new FileInfo(entry.Path).Length, written);
        Assert.Equal([entry.Path], Directory.GetFiles(cache));   // no temporary file left
        AssertSame(corpus, CorpusCache.For([file], DataSets.IsNamedCorpus, Tok, cache, 0)!.TryLoad(out problem)!);

        // Everything the pieces depend on changes the key.
        var cased = new WordPiece(Tok.Vocab, Tok.Settings with { LowerCase = false, StripAccents = false });
        string Other(IReadOnlyList<string> files, WordPiece? tok = null) => CorpusCache.For(files, DataSets.IsNamedCorpus, tok ?? Tok, cache, 0)!.Path;
        Assert.NotEqual(entry.Path, Other([file], cased));
        Assert.NotEqual(entry.Path, Other([file, "machado"]));
        Assert.NotEqual(entry.Path, Other([file, file]));
        string copy = Path.Combine(_dir, "copy.txt");
        File.Copy(file, copy);
        File.SetLastWriteTimeUtc(copy, File.GetLastWriteTimeUtc(file));
        Assert.NotEqual(entry.Path, Other([copy]));

        // The same files changed keep the entry's name, and its key tells the change: a file's time, or its text with the
        // same length and time (a copy that keeps times). The entry is tokenized again and replaced.
        void Stale(string why)
        {
            var now = CorpusCache.For([file], DataSets.IsNamedCorpus, Tok, cache, 0)!;
            Assert.Equal(entry.Path, now.Path);
            Assert.Null(now.TryLoad(out string? p));
            Assert.Equal($"the cached corpus {entry.Path} cannot be used (it was made from these files as they were before, or by another build); tokenizing again", p);
            var again = Tokenized([file]);
            Assert.NotNull(now.Save(again, out _));
            AssertSame(again, CorpusCache.For([file], DataSets.IsNamedCorpus, Tok, cache, 0)!.TryLoad(out p)!);
            Assert.True(p is null, why);
        }
        File.SetLastWriteTimeUtc(file, File.GetLastWriteTimeUtc(file).AddSeconds(-5));
        Stale("time");
        var time = File.GetLastWriteTimeUtc(file);
        var text = File.ReadAllText(file);
        File.WriteAllText(file, "The" + text[3..]);   // "the" → "The" at the start: the same length
        File.SetLastWriteTimeUtc(file, time);
        Assert.Equal(size, new FileInfo(file).Length);
        Stale("text");
        Assert.Single(Directory.GetFiles(cache));
        Assert.Null(CorpusCache.For(["no-such-file.txt"], DataSets.IsNamedCorpus, Tok, cache, 0));
    }

    [Fact]
    public void TheCache_NeverCostsTheRun_WhenItCannotBeUsed()
    {
        string file = CorpusFile("c.txt", 30), cache = Path.Combine(_dir, "cache");
        var corpus = Tokenized([file]);
        var entry = CorpusCache.For([file], DataSets.IsNamedCorpus, Tok, cache, 0)!;
        Assert.NotNull(entry.Save(corpus, out _));

        // A cut file is not read as a corpus: the reason names the file.
        var bytes = File.ReadAllBytes(entry.Path);
        File.WriteAllBytes(entry.Path, bytes[..(bytes.Length / 2)]);
        Assert.Null(entry.TryLoad(out string? problem));
        Assert.Equal($"the cached corpus {entry.Path} cannot be used (its length is not what its counts make (a cut or damaged file)); tokenizing again", problem);
        // It is replaced by the next save.
        Assert.NotNull(entry.Save(corpus, out _));
        AssertSame(corpus, entry.TryLoad(out _)!);

        // A file that changed while it was read: what was read is not kept under the old file's key.
        var changed = CorpusCache.For([file], DataSets.IsNamedCorpus, Tok, Path.Combine(_dir, "cache2"), 0)!;
        File.AppendAllText(file, "\n\nOne more document.");
        Assert.Null(changed.Save(corpus, out problem));
        Assert.Equal("a corpus file changed while it was read, so it is not cached", problem);
        Assert.False(File.Exists(changed.Path));

        // A directory that cannot be made: a remark, no exception, nothing left behind.
        string blocked = Path.Combine(_dir, "blocked");
        File.WriteAllText(blocked, "a file where the cache folder would go");
        var unwritable = CorpusCache.For([file], DataSets.IsNamedCorpus, Tok, Path.Combine(blocked, "corpora"), 0)!;
        Assert.Null(unwritable.Save(corpus, out problem));
        Assert.StartsWith($"the corpus is not cached in {Path.Combine(blocked, "corpora")} (", problem);
        Assert.EndsWith("); the next run on these files tokenizes them again", problem);
    }
}
