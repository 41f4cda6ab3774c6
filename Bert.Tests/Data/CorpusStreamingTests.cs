using System.Text;
using Bert.Data;
using Bert.Models;
using Bert.Text;
using Bert.Training;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Data;

/// <summary>Pre-training on a corpus of any size: files read a line at a time, documents tokenized into a flat store,
/// pairs kept as ranges of it, masks drawn per batch.</summary>
public class CorpusStreamingTests
{
    static readonly WordPiece Tok = WordPiece.BertBaseUncased();

    // ---- reading a file a line at a time ----

    static string Write(byte[] bytes)
    {
        string path = Path.Combine(Path.GetTempPath(), "bert-lines-" + Guid.NewGuid().ToString("N") + ".txt");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static readonly string[] Pieces = ["a", "é", "😀", " ", "\r", "\u0085", "\u2028", "word", "\t", "ção"];

    /// <summary>Read with the usual 1 MiB buffer and with one of 4 to 16 bytes, which every line, \r\n and BOM crosses
    /// (the buffer grows to hold the longest line).</summary>
    [Property(MaxTest = 150)]
    public Property ReadLines_GivesTheLinesOfTheWholeFile(NonEmptyArray<byte[]> shape, bool bom, bool finalBreak, byte bufferByte)
    {
        // Lines from the pieces above (lone \r, NEL and U+2028 stay inside a line), each ended by \n or \r\n.
        var sb = new StringBuilder();
        foreach (var line in shape.Get)
        {
            foreach (byte b in line) sb.Append(Pieces[b % Pieces.Length]);
            sb.Append(line.Length % 2 == 0 ? "\n" : "\r\n");
        }
        if (!finalBreak) sb.Length -= sb[^1] == '\n' && sb.Length > 1 && sb[^2] == '\r' ? 2 : 1;
        var bytes = (bom ? new byte[] { 0xEF, 0xBB, 0xBF } : []).Concat(Encoding.UTF8.GetBytes(sb.ToString())).ToArray();
        string path = Write(bytes);
        try
        {
            bool emptyWhole = sb.Length == 0;
            if (emptyWhole)
                return Throws(() => TextSource.ReadLines(path).ToList(), "is empty").Label("empty file");
            var whole = TextSource.Lines(TextSource.ReadFile(path)).ToList();
            var streamed = TextSource.ReadLines(path).ToList();
            var tiny = TextSource.ReadLines(path, bufferBytes: 4 + bufferByte % 13).ToList();
            return (whole.SequenceEqual(streamed) && whole.SequenceEqual(tiny)).Label($"{whole.Count} lines whole, {streamed.Count} streamed, {tiny.Count} through a {4 + bufferByte % 13}-byte buffer");
        }
        finally { File.Delete(path); }
    }

    static bool Throws(Action read, string words)
    {
        try { read(); return false; }
        catch (DataException e) { return e.Message.Contains(words, StringComparison.Ordinal); }
    }

    [Fact]
    public void ReadLines_TakesLinesLongerThanItsBuffer_AndNamesTheLineOfABadByte()
    {
        string longLine = string.Concat(Enumerable.Repeat("ação 😀 ", 400_000));   // 4.4 MB, over the 1 MiB first buffer
        var bytes = Encoding.UTF8.GetBytes("first\n" + longLine + "\nthird\n").ToList();
        string path = Write([.. bytes]);
        try { Assert.Equal(["first", longLine, "third"], TextSource.ReadLines(path).Select(l => l.Line)); }
        finally { File.Delete(path); }

        bytes.InsertRange(bytes.Count - 3, [0xC3, 0x28]);   // an invalid sequence in line 3
        path = Write([.. bytes]);
        try
        {
            var e = Assert.Throws<DataException>(() => TextSource.ReadLines(path).ToList());
            Assert.Equal(3, e.Line);
            Assert.Contains("not valid UTF-8 (first bad byte on line 3)", e.Message);
            Assert.Equal(2, TextSource.ReadLines(path).Take(2).Count());   // the lines before it still come
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void ReadLines_RefusesAMissingOrEmptyFileAndALineOverItsLimit()
    {
        Assert.Contains("does not exist", Assert.Throws<DataException>(() => TextSource.ReadLines("/nonexistent/c.txt")).Message);
        foreach (var bytes in new byte[][] { [], [0xEF, 0xBB, 0xBF] })
        {
            string path = Write(bytes);
            try { Assert.Contains("is empty", Assert.Throws<DataException>(() => TextSource.ReadLines(path).ToList()).Message); }
            finally { File.Delete(path); }
        }
        var huge = new byte[TextSource.MaxLineBytes + 10];
        huge.AsSpan().Fill((byte)'a');
        huge[0] = (byte)'\n';
        string hugePath = Write(huge);
        try
        {
            var e = Assert.Throws<DataException>(() => TextSource.ReadLines(hugePath).ToList());
            Assert.Equal(2, e.Line);
            Assert.Contains("Line 2 of", e.Message);
            Assert.Contains("longer than 64 MiB", e.Message);
        }
        finally { File.Delete(hugePath); }
    }

    [Fact]
    public void ParagraphDocuments_CutsARunOfLinesWithoutABlankOneAtItsLimit()
    {
        // 3000 lines of about 1000 characters and no blank line: one document before, about three now, cut at lines.
        var lines = Enumerable.Range(0, 3000).Select(i => $"Line {i} says " + new string('x', 990) + ".").ToList();
        var docs = Pretraining.ParagraphDocuments(lines).ToList();
        Assert.Equal(3, docs.Count);
        Assert.All(docs, d => Assert.True(d.Sum(s => s.Length + 1) <= Pretraining.MaxDocumentChars, $"{d.Sum(s => s.Length + 1)} characters"));
        Assert.Equal(lines, docs.SelectMany(d => d));   // each line is a sentence here, and none is lost or split
        Assert.Equal(Pretraining.ParagraphDocuments(string.Join('\n', lines.Take(50)) + "\n\nNext one."),
            Pretraining.ParagraphDocuments(lines.Take(50).Append("").Append("Next one.")).ToList());
    }

    // ---- the flat store ----

    [Fact]
    public void TokenizedCorpus_KeepsEveryPieceAcrossItsArrays_InTwoOrFourBytes()
    {
        // 17 Mi pieces in documents of ragged sentences: the store's 16 Mi-piece arrays are crossed inside a sentence.
        var rng = new Random(5);
        var docs = new List<IReadOnlyList<int[]>>();
        long total = 0;
        while (total < (17 << 20))
        {
            var doc = Enumerable.Range(0, 1 + rng.Next(30)).Select(_ => Enumerable.Range(0, rng.Next(300)).Select(_ => rng.Next(30522)).ToArray()).ToList();
            total += doc.Sum(s => s.Length);
            docs.Add(doc);
        }
        var corpus = TokenizedCorpus.From(docs, 30522);
        Assert.Equal(total, corpus.Pieces);
        var kept = docs.Select(d => d.Where(s => s.Length > 0).ToList()).Where(d => d.Count > 0).ToList();
        Assert.Equal(kept.Count, corpus.Documents);
        Assert.Equal(kept.Sum(d => d.Count), corpus.Sentences);
        Assert.InRange(corpus.Bytes, 2 * total, 2 * total + (16 << 20) * 2L + corpus.Sentences * 8L + corpus.Documents * 4L + 1024);
        for (int d = 0; d < kept.Count; d += 1 + d / 50)
            for (int j = 0; j < kept[d].Count; j++)
                Assert.Equal(kept[d][j], corpus.Sentence(d, j));
        long across = (16 << 20) - 5;
        var ten = new int[10];
        corpus.CopyTo(across, ten);
        var flat = kept.SelectMany(d => d).SelectMany(s => s).Skip((int)across).Take(10);
        Assert.Equal(flat, ten);
        Assert.Throws<ArgumentOutOfRangeException>(() => corpus.CopyTo(corpus.Pieces - 5, ten));

        var wide = TokenizedCorpus.From([[[70_000, 3, 119_546]], [[], [65_536]]], 119_547);   // a multilingual vocabulary
        Assert.Equal([70_000, 3, 119_546], wide.Sentence(0, 0));
        Assert.Equal([65_536], wide.Sentence(1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenizedCorpus.From([[[30_522]]], 30_522));

        // A bad id anywhere in a document stores none of it.
        var partial = TokenizedCorpus.From([[[1, 2]]], 100);
        Assert.Throws<ArgumentOutOfRangeException>(() => partial.Add([[3, 4], [5, 100]]));
        Assert.True(partial.Add([[6]]));
        Assert.Equal((2, 2, 3L), (partial.Documents, partial.Sentences, partial.Pieces));
        Assert.Equal([6], partial.Sentence(1, 0));
    }

    /// <summary>The documents are read on a thread of their own: a reading error comes out of Tokenize as it was thrown
    /// (its type and sentence), and a failure on the tokenizing side stops the reader instead of leaving it blocked.</summary>
    [Fact]
    public void Tokenize_ReadsOnAThreadOfItsOwn_AndPassesItsErrorsOn()
    {
        IEnumerable<IReadOnlyList<string>> Failing()
        {
            for (int i = 0; i < 50; i++) yield return [$"Document {i} has a sentence.", "And another one."];
            throw new DataException("Line 101 of 'x.txt' is not valid UTF-8; re-save it.", "x.txt", 101);
        }
        var e = Assert.Throws<DataException>(() => TokenizedCorpus.Tokenize(Failing(), Tok, blockChars: 200));
        Assert.Equal("Line 101 of 'x.txt' is not valid UTF-8; re-save it.", e.Message);

        int readerThread = -1, produced = 0;
        IEnumerable<IReadOnlyList<string>> Endless()
        {
            readerThread = Environment.CurrentManagedThreadId;
            while (true) { produced++; yield return ["An endless corpus, read until it is told to stop."]; }
        }
        int calls = 0;
        var stopped = Assert.Throws<InvalidOperationException>(() => TokenizedCorpus.Tokenize(Endless(), Tok,
            (_, _) => { if (++calls == 3) throw new InvalidOperationException("the caller gave up"); }, blockChars: 500));
        Assert.Equal("the caller gave up", stopped.Message);
        Assert.NotEqual(Environment.CurrentManagedThreadId, readerThread);
        int after = produced;
        Thread.Sleep(50);
        Assert.Equal(after, produced);   // the reader has stopped
    }

    [Fact]
    public void Tokenize_OnEveryCore_GivesTheSentencesOfTheOneByOneEncoding()
    {
        var docs = Bert.Cli.DataSets.Corpus(["machado"]).Documents.Cast<IReadOnlyList<string>>().Append(["", "   "]).Append(["Ok."]).ToList();
        var reports = new List<(int Docs, long Pieces)>();
        var corpus = TokenizedCorpus.Tokenize(docs, Tok, (d, p) => reports.Add((d, p)), blockChars: 300_000);
        var one = Pretraining.Tokenize(docs, Tok);
        Assert.Equal(one.Count, corpus.Documents);
        Assert.Equal(one.Sum(d => d.Sum(s => (long)s.Length)), corpus.Pieces);
        for (int d = 0; d < one.Count; d++)
        {
            Assert.Equal(one[d].Count, corpus.SentenceCount(d));
            for (int j = 0; j < one[d].Count; j++) Assert.Equal(one[d][j], corpus.Sentence(d, j));
        }
        Assert.True(reports.Count > 5, $"{reports.Count} progress reports");   // the novels are several blocks
        Assert.Equal((corpus.Documents, corpus.Pieces), reports[^1]);
    }

    // ---- pairs as ranges ----

    /// <summary>BERT's create_instances_from_document written plainly over lists of ids, drawing in the same order: the
    /// reference the ranges must reproduce pair for pair.</summary>
    static List<PretrainingInstance> PlainPairs(List<List<int[]>> docs, PretrainingOptions o, int seed)
    {
        docs = docs.Select(d => d.Where(s => s.Length > 0).ToList()).Where(d => d.Count > 0).ToList();
        var rng = new Random(seed);
        var output = new List<PretrainingInstance>();
        for (int dupe = 0; dupe < o.DupeFactor; dupe++)
        {
            var order = Enumerable.Range(0, docs.Count).ToArray();
            for (int i = order.Length - 1; i > 0; i--) { int j = rng.Next(i + 1); (order[i], order[j]) = (order[j], order[i]); }
            for (int d = 0; d < order.Length; d++)
            {
                var document = docs[order[d]];
                int maxTokens = o.MaxSeqLength - 3;
                int target = rng.NextDouble() < o.ShortSeqProb ? rng.Next(2, maxTokens + 1) : maxTokens;
                var chunk = new List<int[]>();
                int length = 0;
                for (int i = 0; i < document.Count; i++)
                {
                    chunk.Add(document[i]);
                    length += document[i].Length;
                    if (i != document.Count - 1 && length < target) continue;
                    int aEnd = chunk.Count >= 2 ? rng.Next(1, chunk.Count) : 1;
                    var a = chunk.Take(aEnd).SelectMany(s => s).ToList();
                    var b = new List<int>();
                    bool randomNext = chunk.Count == 1 || (o.NextSentence && rng.NextDouble() < o.RandomNextProb);
                    if (randomNext)
                    {
                        int other = d;
                        for (int tries = 0; tries < 10 && other == d; tries++) other = rng.Next(order.Length);
                        var r = docs[order[other]];
                        for (int j = rng.Next(r.Count); j < r.Count && (b.Count == 0 || b.Count < target - a.Count); j++) b.AddRange(r[j]);
                        i -= chunk.Count - aEnd;
                    }
                    else b.AddRange(chunk.Skip(aEnd).SelectMany(s => s));
                    while (a.Count + b.Count > maxTokens)
                    {
                        var longer = a.Count > b.Count ? a : b;
                        longer.RemoveAt(rng.NextDouble() < 0.5 ? 0 : longer.Count - 1);
                    }
                    int[] tokens = [101, .. a, 102, .. b, 102];
                    output.Add(new(tokens, tokens.Select((_, k) => k > a.Count + 1 ? 1 : 0).ToArray(), randomNext));
                    chunk.Clear();
                    length = 0;
                }
            }
        }
        for (int i = output.Count - 1; i > 0; i--) { int j = rng.Next(i + 1); (output[i], output[j]) = (output[j], output[i]); }
        return output;
    }

    [Property(MaxTest = 60)]
    public Property Pairs_AreThoseOfThePlainAlgorithm(int seed, byte maxLenByte, byte dupes, bool nextSentence, bool shortSeqs)
    {
        var rng = new Random(seed);
        var docs = Enumerable.Range(0, rng.Next(12)).Select(_ => Enumerable.Range(0, rng.Next(15))
            .Select(_ => Enumerable.Range(0, rng.Next(4) == 0 ? rng.Next(200) : rng.Next(25)).Select(_ => 1000 + rng.Next(1000)).ToArray()).ToList()).ToList();
        var o = new PretrainingOptions
        {
            MaxSeqLength = 5 + maxLenByte % 130, DupeFactor = 1 + dupes % 3, NextSentence = nextSentence, ShortSeqProb = shortSeqs ? 0.5 : 0.1,
        };
        var compact = Pretraining.CreateInstances(docs.Select(d => (IReadOnlyList<int[]>)d).ToList(), 101, 102, o, seed);
        var plain = PlainPairs(docs, o, seed);
        bool same = compact.Count == plain.Count && compact.Zip(plain).All(p =>
            p.First.Tokens.SequenceEqual(p.Second.Tokens) && p.First.TypeIds.SequenceEqual(p.Second.TypeIds) && p.First.IsRandomNext == p.Second.IsRandomNext);
        return same.Label($"{compact.Count} pairs as ranges, {plain.Count} written out");
    }

    // ---- masks per batch ----

    /// <summary>Documents of <paramref name="sentences"/> sentences of 3 to 14 random word ids each.</summary>
    static List<IReadOnlyList<int[]>> SentenceDocs(int seed, int documents, int sentences)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, documents).Select(_ => (IReadOnlyList<int[]>)Enumerable.Range(0, sentences)
            .Select(_ => Enumerable.Range(0, 3 + rng.Next(12)).Select(_ => 1000 + rng.Next(5000)).ToArray()).ToList()).ToList();
    }

    [Fact]
    public void PretrainJob_ABatchsMasksDoNotDependOnTheBatchesBoundBefore_AndAtMostItsCapIsHeldOut()
    {
        var o = new PretrainingOptions { MaxSeqLength = 32 };
        var pairs = Pretraining.CreateInstances(SentenceDocs(seed: 9, documents: 700, sentences: 200), Tok.ClsId, Tok.SepId, o, 3);
        Assert.True(pairs.Count * 0.05 > PretrainJob.MaxHeldOut, $"{pairs.Count} pairs");
        PretrainJob Job() => new(BertNanoPreTraining.Create<float>(), Tok, pairs, o, 16, 4);
        var forward = Job();
        var backward = Job();
        Assert.Equal(PretrainJob.MaxHeldOut, forward.HeldOutInstances);
        Assert.Equal(pairs.Count - PretrainJob.MaxHeldOut, forward.TrainInstances);
        long second = forward.StepsPerEpoch + 3;   // a batch of the second epoch
        var seen = new Dictionary<long, MaskedInstance[]>();
        foreach (long step in new long[] { 0, 1, second })
        {
            forward.Bind(step);
            seen[step] = forward.Current.ToArray();
        }
        foreach (long step in new long[] { second, 1, 0 })
        {
            backward.Bind(step);
            var a = seen[step];
            var b = backward.Current;
            Assert.Equal(a.Length, b.Count);
            for (int i = 0; i < a.Length; i++)
            {
                Assert.Equal(a[i].InputIds, b[i].InputIds);
                Assert.Equal(a[i].MaskedPositions, b[i].MaskedPositions);
                Assert.Equal(a[i].MaskedLabels, b[i].MaskedLabels);
            }
        }
    }

    /// <summary>With Prefetch (as on a GPU), each micro-batch is prepared on another thread while the one before runs:
    /// in order across an epoch's end, and after a jump (a resumed or re-bound index), the batches, their masks and their
    /// padded rows are those bound without it.</summary>
    [Fact]
    public void PretrainJob_Prefetching_BindsTheSameBatches()
    {
        var o = new PretrainingOptions { MaxSeqLength = 32 };
        var pairs = Pretraining.CreateInstances(SentenceDocs(seed: 4, documents: 40, sentences: 30), Tok.ClsId, Tok.SepId, o, 3);
        PretrainJob Job(bool prefetch) => new(BertNanoPreTraining.Create<float>(), Tok, pairs, o, 8, 4) { RowMultiple = 32, Prefetch = prefetch };
        var plain = Job(false);
        var ahead = Job(true);
        int perEpoch = plain.StepsPerEpoch;
        Assert.InRange(perEpoch, 3, 200);
        var order = Enumerable.Range(0, perEpoch + 3).Select(i => (long)i).Concat([2, 3, 2 * perEpoch + 1, 1, 2]).ToList();
        foreach (long index in order)
        {
            Assert.Equal(plain.Bind(index), ahead.Bind(index));
            Assert.Equal(plain.Current.Count, ahead.Current.Count);
            for (int i = 0; i < plain.Current.Count; i++)
            {
                Assert.Equal(plain.Current[i].InputIds, ahead.Current[i].InputIds);
                Assert.Equal(plain.Current[i].MaskedPositions, ahead.Current[i].MaskedPositions);
                Assert.Equal(plain.Current[i].MaskedLabels, ahead.Current[i].MaskedLabels);
            }
        }
        Assert.Equal(0, plain.PrefetchedBinds);
        Assert.Equal(perEpoch + 2 + 2, ahead.PrefetchedBinds);   // every bind in order after the first, then 2 → 3 and 1 → 2 after the jumps
    }

    [Fact]
    public void PretrainJob_RefusesACorpusOfNoPairsInOneSentence()
    {
        // Lines of characters the tokenizer drops (zero-width spaces, controls) give documents but no pieces.
        var pairs = Pretraining.CreateInstances([["\u200B\u200B", "\u0001"], ["\u200B"]], Tok, new PretrainingOptions(), 1);
        Assert.Empty(pairs);
        var e = Assert.Throws<ArgumentException>(() => new PretrainJob(BertNanoPreTraining.Create<float>(), Tok, pairs, new PretrainingOptions { MaxSeqLength = 32 }, 8, 1));
        Assert.Equal("The corpus gives too few pre-training instances; give it more text.", e.Message);
    }

    [Fact]
    public void PretrainJob_MasksAnInstanceAnewEachEpoch()
    {
        var o = new PretrainingOptions { MaxSeqLength = 32 };
        var job = new PretrainJob(BertNanoPreTraining.Create<float>(), Tok, Pretraining.CreateInstances(SentenceDocs(seed: 2, documents: 30, sentences: 20), Tok.ClsId, Tok.SepId, o, 3), o, 8, 4);
        // Each epoch's masks by instance (its ids with the labels put back; no two instances here are the same).
        Dictionary<string, string> Epoch(int e)
        {
            var masks = new Dictionary<string, string>();
            for (long step = (long)e * job.StepsPerEpoch; step < (e + 1L) * job.StepsPerEpoch; step++)
            {
                job.Bind(step);
                foreach (var x in job.Current)
                {
                    var ids = (int[])x.InputIds.Clone();
                    for (int k = 0; k < x.MaskedPositions.Length; k++) ids[x.MaskedPositions[k]] = x.MaskedLabels[k];
                    masks.Add(string.Join(',', ids), string.Join(',', x.MaskedPositions) + "|" + string.Join(',', x.InputIds));
                }
            }
            return masks;
        }
        var first = Epoch(0);
        var second = Epoch(1);
        Assert.Equal(job.TrainInstances, first.Count);
        Assert.Equal(first.Keys.Order(), second.Keys.Order());
        int same = first.Count(kv => second[kv.Key] == kv.Value);
        Assert.True(same < first.Count / 10, $"{same} of {first.Count} instances masked alike in two epochs");
        Assert.Equal(first, Epoch(0));   // and the same again for the same epoch
    }
}
