using Bert.Data;
using Bert.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Data;

public class PretrainingTests
{
    static readonly WordPiece Tok = WordPiece.BertBaseUncased();

    /// <summary>Tiny Shakespeare tokenized once for all tests here: about 3 000 pairs of T ≤ 128.</summary>
    static readonly Lazy<List<List<int[]>>> ShakespeareDocs = new(() =>
        Pretraining.Tokenize(Pretraining.ShakespeareDocuments(DefaultData.ReadText(DataFile.TinyShakespeare)), Tok));

    static readonly Lazy<PretrainingInstances> ShakespearePairs = new(() =>
        Pretraining.CreateInstances(ShakespeareDocs.Value, Tok.ClsId, Tok.SepId, new PretrainingOptions(), seed: 12345));

    // ---- sentences and documents ----

    [Theory]
    [InlineData("Hello there. How are you? Fine!", new[] { "Hello there.", "How are you?", "Fine!" })]
    [InlineData("Mr. Smith went to Washington. He left.", new[] { "Mr. Smith went to Washington.", "He left." })]
    [InlineData("J. R. R. Tolkien wrote it. Then he slept", new[] { "J. R. R. Tolkien wrote it.", "Then he slept" })]
    [InlineData("Resolved. resolved.", new[] { "Resolved. resolved." })]
    [InlineData("It is 1.5 metres.  Next one", new[] { "It is 1.5 metres.", "Next one" })]
    [InlineData("He said \"Stop.\" Then he left.", new[] { "He said \"Stop.\"", "Then he left." })]
    [InlineData("an actor . He had a role", new[] { "an actor .", "He had a role" })]
    [InlineData("The U.S. Army came. \"Why?\" asked\n he.", new[] { "The U.S. Army came.", "\"Why?\" asked he." })]
    [InlineData("", new string[0])]
    public void SentencesEndAtStopsBeforeACapital(string text, string[] expected)
    {
        Assert.Equal(expected, Pretraining.SplitSentences(text));
    }

    [Fact]
    public void ShakespeareSpeechesGroupIntoDocuments()
    {
        var docs = Pretraining.ShakespeareDocuments(DefaultData.ReadText(DataFile.TinyShakespeare), linesPerDocument: 60);
        Assert.Equal(["First Citizen:", "Before we proceed any further, hear me speak.", "All:", "Speak, speak."], docs[0].Take(4));
        // 40 000 lines of which 7 223 blank: about 32 800 text lines, so a little under 550 documents of ≥ 60.
        Assert.InRange(docs.Count, 450, 550);
        Assert.All(docs, d => Assert.NotEmpty(d));
        var small = Pretraining.ShakespeareDocuments("A:\nHi. There.\n\nB:\nYes.\n\nC:\nNo.\n", linesPerDocument: 4);
        Assert.Equal([["A:", "Hi.", "There.", "B:", "Yes."], ["C:", "No."]], small);
    }

    [Fact]
    public void WikiTextTitlesStartDocuments()
    {
        var docs = Pretraining.WikiTextDocuments(DefaultData.ReadText(DataFile.WikiText2RawTest));
        // 62 lines of the form " = Title = " (grep -c '^ = [^=].* = $' after removing CRs).
        Assert.Equal(62, docs.Count);
        Assert.Equal("Robert Boulter is an English film , television and theatre actor .", docs[0][0]);
        Assert.Contains("He had a guest-starring role on the television series The Bill in 2000 .", docs[0]);
        // No artifacts, no CRs, no headings; the table legend lines " = Qualified for the next round " and " q = "
        // are not headings (they lack one side) and stay as text.
        Assert.DoesNotContain(docs.SelectMany(d => d), s => s.Contains("@-@") || (s.StartsWith("= ") && s.EndsWith(" =")) || s.Contains('\r'));
        Assert.Contains("= Qualified for the next round", docs.SelectMany(d => d));
    }

    [Fact]
    public void ParagraphDocumentsSplitOnBlankLines()
    {
        string text = "One. Two\nthree.\n\n\nFour.\r\n";
        Assert.Equal([["One.", "Two three."], ["Four."]], Pretraining.ParagraphDocuments(text));
        Assert.Equal([["One. Two", "three."], ["Four."]], Pretraining.ParagraphDocuments(text, lineIsSentence: true));
    }

    // ---- segment pairs ----

    /// <summary>Documents of random sentences over ids 1000..1999 (no specials), from a seed.</summary>
    static List<IReadOnlyList<int[]>> RandomDocs(Random rng, int docs, int maxSentences, int maxSentenceLength)
    {
        var result = new List<IReadOnlyList<int[]>>();
        for (int d = 0; d < docs; d++)
        {
            var doc = new List<int[]>();
            int n = 1 + rng.Next(maxSentences);
            for (int s = 0; s < n; s++)
                doc.Add(Enumerable.Range(0, 1 + rng.Next(maxSentenceLength)).Select(_ => 1000 + rng.Next(1000)).ToArray());
            result.Add(doc);
        }
        return result;
    }

    [Property(MaxTest = 40)]
    public Property PairsFitMaxLenAndAreWellFormed(int seed, byte maxLenByte, bool shortSeqs)
    {
        var rng = new Random(seed);
        int maxLen = 5 + maxLenByte % 120;
        var docs = RandomDocs(rng, 1 + rng.Next(8), 12, 40);
        var options = new PretrainingOptions { MaxSeqLength = maxLen, ShortSeqProb = shortSeqs ? 0.5 : 0.1, DupeFactor = 2 };
        var instances = Pretraining.CreateInstances(docs, clsId: 101, sepId: 102, options, seed);
        var prop = (instances.Count > 0).Label("some instances");
        foreach (var x in instances)
        {
            int t = x.Tokens.Length;
            int firstSep = Array.IndexOf(x.Tokens, 102);
            bool ok = t <= maxLen && x.TypeIds.Length == t
                && x.Tokens[0] == 101 && x.Tokens[^1] == 102
                && firstSep >= 2 && firstSep <= t - 3
                && x.Tokens.Count(id => id is 101 or 102) == 3
                && x.TypeIds.Take(firstSep + 1).All(v => v == 0) && x.TypeIds.Skip(firstSep + 1).All(v => v == 1);
            prop = prop.And(ok.Label($"T={t} ≤ {maxLen}, [CLS] A [SEP] B [SEP] with both segments non-empty: {string.Join(",", x.Tokens)}"));
        }
        return prop;
    }

    [Property(MaxTest = 10)]
    public Property AboutHalfOfTheSecondSegmentsAreRandom(int seed)
    {
        // One-piece sentences and no short targets: a chunk then always has ≥ 2 sentences except, at most, the last
        // chunk of each document, which is forced to a random B. So the share is 0.5 within the binomial tolerance,
        // plus at most docs/instances of forced ones on the high side.
        var rng = new Random(seed);
        var docs = Enumerable.Range(0, 20).Select(_ =>
            (IReadOnlyList<int[]>)Enumerable.Range(0, 400 + rng.Next(400)).Select(_ => new[] { 1000 + rng.Next(1000) }).ToList()).ToList();
        var instances = Pretraining.CreateInstances(docs, 101, 102, new PretrainingOptions { MaxSeqLength = 32, ShortSeqProb = 0 }, seed);
        int n = instances.Count;
        double share = instances.Count(x => x.IsRandomNext) / (double)n;
        double tol = SamplingTolerances.Binomial(0.5, n);
        return (share >= 0.5 - tol && share <= 0.5 + tol + docs.Count / (double)n)
            .Label($"random-next share {share:F4} over {n} pairs, allowed 0.5 - {tol:F4} .. 0.5 + {tol + docs.Count / (double)n:F4}");
    }

    [Fact]
    public void ShakespearePairsAreAboutHalfRandomAndDeterministic()
    {
        var pairs = ShakespearePairs.Value;
        Assert.InRange(pairs.Count, 2000, 6000);
        double share = pairs.Count(x => x.IsRandomNext) / (double)pairs.Count;
        // Speeches give many one-sentence chunks at document ends, so the share sits a little above 0.5.
        Assert.InRange(share, 0.5 - SamplingTolerances.Binomial(0.5, pairs.Count), 0.6);
        Assert.All(pairs, x => Assert.True(x.Tokens.Length <= 128));
        var again = Pretraining.CreateInstances(ShakespeareDocs.Value, Tok.ClsId, Tok.SepId, new PretrainingOptions(), seed: 12345);
        Assert.Equal(pairs.Select(x => x.Tokens), again.Select(x => x.Tokens));
    }

    [Fact]
    public void WithoutNextSentence_PairsAreRealContinuations_AndTheirLabelIsIgnored()
    {
        var o = new PretrainingOptions { NextSentence = false };
        var pairs = Pretraining.CreateInstances(ShakespeareDocs.Value, Tok.ClsId, Tok.SepId, o, seed: 12345);
        // Only a chunk of one sentence (which has no continuation) still takes a random B.
        double share = pairs.Count(x => x.IsRandomNext) / (double)pairs.Count;
        Assert.InRange(share, 0, 0.25);
        Assert.True(share < ShakespearePairs.Value.Count(x => x.IsRandomNext) / (double)ShakespearePairs.Value.Count / 2);
        var masker = new Masker(Tok, o);
        var rng = new Random(3);
        Assert.All(pairs.Take(200), x => Assert.Equal(-100, masker.Mask(x, rng).NspLabel));
        Assert.Equal(0, new Masker(Tok, new PretrainingOptions()).Mask(pairs.First(x => !x.IsRandomNext), rng).NspLabel);
    }

    // ---- masking ----

    static Masker MaskerFor(PretrainingOptions o) => new(Tok, o);

    [Property(MaxTest = 5)]
    public Property MaskingPicksFifteenPercentOfMaskableTokensAndNeverSpecials(int seed)
    {
        // With the cap out of the way each pair gets exactly round(0.15 × maskable) predictions (at least one), so
        // the only departure from 15% overall is rounding: at most half a token per pair, i.e. at most
        // 0.5 / (mean maskable per pair) in share.
        var masker = MaskerFor(new PretrainingOptions { MaxPredictionsPerSeq = 1000 });
        var rng = new Random(seed);
        long chosen = 0, maskable = 0;
        var prop = true.Label("start");
        foreach (var x in ShakespearePairs.Value)
        {
            var m = masker.Mask(x, rng);
            int n = x.Tokens.Count(id => !masker.IsSpecial(id));
            int expected = Math.Max(1, (int)Math.Round(0.15 * n, MidpointRounding.ToEven));
            chosen += m.MaskedPositions.Length;
            maskable += n;
            if (m.MaskedPositions.Length != expected || m.MaskedPositions.Any(p => masker.IsSpecial(x.Tokens[p])))
                prop = prop.And(false.Label($"pair with {n} maskable: {m.MaskedPositions.Length} chosen, expected {expected}, none special"));
        }
        double share = chosen / (double)maskable;
        double tol = 0.5 * ShakespearePairs.Value.Count / maskable;
        return prop.And((Math.Abs(share - 0.15) <= tol).Label($"share {share:F5}, allowed 0.15 ± {tol:F5}"));
    }

    [Property(MaxTest = 5)]
    public Property ChosenTokensAreEightyMaskTenRandomTenKept(int seed, bool wholeWord)
    {
        var masker = MaskerFor(new PretrainingOptions { WholeWordMask = wholeWord });
        var rng = new Random(seed);
        int mask = 0, random = 0, kept = 0;
        var prop = true.Label("start");
        foreach (var x in ShakespearePairs.Value)
        {
            var m = masker.Mask(x, rng);
            prop = prop.And((m.MaskedPositions.Length <= 20).Label("cap of 20 predictions"));
            for (int k = 0; k < m.MaskedPositions.Length; k++)
            {
                int p = m.MaskedPositions[k], now = m.InputIds[p];
                if (m.MaskedLabels[k] != x.Tokens[p]) prop = prop.And(false.Label("label is the original token"));
                if (now == Tok.MaskId) mask++;
                else if (now == x.Tokens[p]) kept++; // includes random draws equal to the original: p ≈ 0.1/30517
                else
                {
                    random++;
                    if (now is 0 or 100 or 101 or 102 or 103) prop = prop.And(false.Label($"random replacement {now} is a special token"));
                }
            }
            for (int p = 0; p < x.Tokens.Length; p++)
                if (Array.BinarySearch(m.MaskedPositions, p) < 0 && m.InputIds[p] != x.Tokens[p])
                    prop = prop.And(false.Label($"position {p} changed without being chosen"));
        }
        int total = mask + random + kept;
        double tMask = SamplingTolerances.Binomial(0.8, total), tTen = SamplingTolerances.Binomial(0.1, total);
        return prop
            .And((Math.Abs(mask / (double)total - 0.8) <= tMask).Label($"[MASK] share {mask / (double)total:F4}, 0.8 ± {tMask:F4} over {total}"))
            .And((Math.Abs(random / (double)total - 0.1) <= tTen).Label($"random share {random / (double)total:F4}, 0.1 ± {tTen:F4}"))
            .And((Math.Abs(kept / (double)total - 0.1) <= tTen).Label($"kept share {kept / (double)total:F4}, 0.1 ± {tTen:F4}"));
    }

    [Property(MaxTest = 10)]
    public Property WholeWordMaskingNeverSplitsAWord(int seed)
    {
        var masker = MaskerFor(new PretrainingOptions { WholeWordMask = true });
        var rng = new Random(seed);
        var prop = true.Label("start");
        int withPieces = 0;
        foreach (var x in ShakespearePairs.Value.Take(800))
        {
            var m = masker.Mask(x, rng);
            var chosen = new HashSet<int>(m.MaskedPositions);
            int maskable = x.Tokens.Count(id => !masker.IsSpecial(id));
            int target = Math.Min(20, Math.Max(1, (int)Math.Round(0.15 * maskable, MidpointRounding.ToEven)));
            int longest = 0;
            // A word: a piece that is not "##" (or follows a special token) and the "##" pieces right after it.
            for (int start = 1; start < x.Tokens.Length; start++)
            {
                if (masker.IsSpecial(x.Tokens[start])) continue;
                int end = start + 1;
                while (end < x.Tokens.Length && Tok.IsContinuation(x.Tokens[end])) end++;
                longest = Math.Max(longest, end - start);
                int inWord = Enumerable.Range(start, end - start).Count(chosen.Contains);
                if (inWord != 0 && inWord != end - start)
                    prop = prop.And(false.Label($"word at {start}..{end - 1} partly masked ({inWord} of {end - start})"));
                if (inWord > 0 && end - start > 1) withPieces++;
                start = end - 1;
            }
            // Skipping words that would overshoot can leave fewer than the target, by less than the longest word.
            if (chosen.Count > target || chosen.Count < target - (longest - 1))
                prop = prop.And(false.Label($"{chosen.Count} chosen for a target of {target}, longest word {longest}"));
        }
        return prop.And((withPieces > 0).Label("some multi-piece words were masked"));
    }

    [Fact]
    public void MasksAreDrawnAnewEachEpochAndRepeatFromTheSameSeed()
    {
        var masker = MaskerFor(new PretrainingOptions());
        var x = ShakespearePairs.Value.First(p => p.Tokens.Length > 100);
        var epoch1 = masker.Mask(x, new Random(1));
        var epoch2 = masker.Mask(x, new Random(2));
        var again = masker.Mask(x, new Random(1));
        Assert.NotEqual(epoch1.MaskedPositions, epoch2.MaskedPositions);
        Assert.Equal(epoch1.MaskedPositions, again.MaskedPositions);
        Assert.Equal(epoch1.InputIds, again.InputIds);
        Assert.Equal(x.IsRandomNext ? 1 : 0, epoch1.NspLabel);
        Assert.Equal(x.TypeIds, epoch1.TypeIds);
        Assert.True(epoch1.MaskedPositions.SequenceEqual(epoch1.MaskedPositions.Order()));
    }

    [Fact]
    public void EndToEndFromTextWithABuiltVocabulary()
    {
        string text = DefaultData.ReadText(DataFile.WikiText2RawTest);
        var docs = Pretraining.WikiTextDocuments(text).Take(20).ToList();
        var vocab = VocabBuilder.Build(docs.SelectMany(d => d), 2000, TokenizerSettings.Uncased).ToTokenizer();
        var pairs = Pretraining.CreateInstances(docs, vocab, new PretrainingOptions { MaxSeqLength = 64 }, seed: 3);
        var masked = new Masker(vocab, new PretrainingOptions { MaxSeqLength = 64, WholeWordMask = true }).Mask(pairs[0], new Random(4));
        Assert.Equal(SpecialTokenIds.Compact, vocab.Ids);
        Assert.Equal(2, masked.InputIds[0]); // [CLS] at the built vocabulary's id
        Assert.True(pairs.Count > 300, $"{pairs.Count} pairs");
        Assert.All(pairs, p => Assert.True(p.Tokens.Length <= 64));
    }
}
