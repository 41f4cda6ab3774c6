using System.Globalization;
using System.Text;
using Bert.Data;
using Bert.Tests.Data;
using Bert.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Text;

public class VocabBuilderTests
{
    // Characters the generated corpora draw from: ASCII and Portuguese letters in both cases, BERT punctuation
    // (ASCII symbols count), CJK (always split one per word), digits, and two emoji (non-BMP, surrogate pairs).
    const string Letters = "abcdefghijklmnopqrstuvwxyzçãéíóúâêôàü";
    const string Punctuation = ".,;:!?'\"()-—“”$+";
    static readonly string[] Extras = ["日", "本", "語", "0", "7", "😀", "🎉"];

    /// <summary>A corpus of <paramref name="lines"/> lines over a Zipf-like word list, with a few one-off words
    /// so some characters fall below the frequency threshold.</summary>
    static List<string> Corpus(int seed, int lines)
    {
        var rng = new Random(seed);
        var words = new List<string>();
        for (int i = 0; i < 40; i++)
        {
            var sb = new StringBuilder();
            int len = 1 + rng.Next(9);
            for (int k = 0; k < len; k++)
            {
                int pick = rng.Next(20);
                if (pick == 0) sb.Append(Extras[rng.Next(Extras.Length)]);
                else sb.Append(Letters[rng.Next(pick < 15 ? 12 : Letters.Length)]);
            }
            words.Add(sb.ToString());
        }
        var corpus = new List<string>();
        for (int l = 0; l < lines; l++)
        {
            var line = new StringBuilder();
            int n = 1 + rng.Next(12);
            for (int k = 0; k < n; k++)
            {
                // Zipf-ish: the square of a uniform index favours the first words.
                string w = words[(int)(Math.Pow(rng.NextDouble(), 2) * words.Count)];
                if (rng.Next(4) == 0) w = CultureInfo.InvariantCulture.TextInfo.ToTitleCase(w);
                if (rng.Next(10) == 0) w = w.ToUpperInvariant();
                if (rng.Next(30) == 0) w += (char)('Ā' + rng.Next(48)); // rare letters U+0100–U+012F (before İ, whose lower case differs between .NET and Python)
                line.Append(w);
                line.Append(rng.Next(6) == 0 ? Punctuation[rng.Next(Punctuation.Length)].ToString() : "");
                line.Append(rng.Next(8) == 0 ? "\t" : " ");
            }
            corpus.Add(line.ToString());
        }
        return corpus;
    }

    /// <summary>The normalization and word split written out independently of the product: lower-case
    /// (invariant), strip accents (NFD, drop Mn, NFC), then split on whitespace, BERT punctuation and CJK.</summary>
    static List<string> ReferenceWords(string line, TokenizerSettings s)
    {
        string t = line;
        if (s.LowerCase) t = t.ToLowerInvariant();
        if (s.StripAccents)
            t = new string(t.Normalize(NormalizationForm.FormD)
                .Where(c => CharUnicodeInfo.GetUnicodeCategory(c) != UnicodeCategory.NonSpacingMark).ToArray())
                .Normalize(NormalizationForm.FormC);
        var words = new List<string>();
        var cur = new StringBuilder();
        void Flush() { if (cur.Length > 0) { words.Add(cur.ToString()); cur.Clear(); } }
        foreach (Rune r in t.EnumerateRunes())
        {
            string c = r.ToString();
            if (Rune.IsWhiteSpace(r)) Flush();
            else if (IsBertPunctuation(r) || r.Value is >= 0x4E00 and <= 0x9FFF) { Flush(); words.Add(c); }
            else cur.Append(c);
        }
        Flush();
        return words;
    }

    static bool IsBertPunctuation(Rune r) => r.Value is (>= 33 and <= 47) or (>= 58 and <= 64) or (>= 91 and <= 96) or (>= 123 and <= 126)
        || Rune.GetUnicodeCategory(r).ToString().EndsWith("Punctuation", StringComparison.Ordinal);

    /// <summary>Groups pieces into words: a piece without "##" starts a word, continuations join it.</summary>
    static List<string> JoinPieces(IEnumerable<string> pieces)
    {
        var words = new List<string>();
        foreach (string p in pieces)
        {
            if (p.StartsWith("##", StringComparison.Ordinal) && words.Count > 0) words[^1] += p[2..];
            else words.Add(p);
        }
        return words;
    }

    static TokenizerSettings Settings(bool cased, int maxWordChars) =>
        (cased ? TokenizerSettings.Cased : TokenizerSettings.Uncased) with { MaxWordChars = maxWordChars };

    [Property(MaxTest = 25)]
    public Property SpecialsFixedNoDuplicatesSizeAsAsked(int seed, bool cased, byte extra)
    {
        var settings = Settings(cased, 100);
        var corpus = Corpus(seed, 60);
        var all = VocabBuilder.Build(corpus, int.MaxValue, settings, minFrequency: 2);
        int needed = 5 + 2 * all.Characters;
        int asked = needed + extra;
        var built = VocabBuilder.Build(corpus, asked, settings, minFrequency: 2);
        var tok = built.ToTokenizer();
        bool sizeOk = built.Tokens.Count == Math.Min(asked, all.Tokens.Count)
            && built.Exhausted == (asked > all.Tokens.Count)
            && built.Tokens.SequenceEqual(all.Tokens.Take(built.Tokens.Count));
        return (built.Tokens.Take(5).SequenceEqual(WordPiece.SpecialTokens)
                && tok.Ids == SpecialTokenIds.Compact
                && built.Settings.SpecialIds == SpecialTokenIds.Compact).Label("specials at 0..4")
            .And((built.Tokens.Distinct(StringComparer.Ordinal).Count() == built.Tokens.Count).Label("no duplicates"))
            .And(sizeOk.Label($"size {built.Tokens.Count} for {asked} asked (all {all.Tokens.Count}, exhausted {built.Exhausted})"))
            .And(all.Exhausted.Label("an unlimited build runs out of pairs"));
    }

    [Property(MaxTest = 25)]
    public Property PiecesJoinBackToTheNormalizedWords(int seed, bool cased, bool shortWords, bool minTwo)
    {
        int maxWordChars = shortWords ? 6 : 100;
        int minFrequency = minTwo ? 2 : 3;
        var settings = Settings(cased, maxWordChars);
        var corpus = Corpus(seed, 50);

        // Characters below the threshold, counted on the reference words that are short enough to tokenize.
        var refLines = corpus.Select(l => ReferenceWords(l, settings)).ToList();
        var charCounts = new Dictionary<string, int>();
        foreach (var w in refLines.SelectMany(x => x).Where(w => w.EnumerateRunes().Count() <= maxWordChars))   // characters, as transformers counts them
            foreach (Rune r in w.EnumerateRunes())
                charCounts[r.ToString()] = charCounts.GetValueOrDefault(r.ToString()) + 1;
        int frequent = charCounts.Count(kv => kv.Value >= minFrequency);

        var built = VocabBuilder.Build(corpus, 5 + 2 * frequent + 150, settings, minFrequency);
        var tok = built.ToTokenizer();
        var prop = (built.Characters == frequent).Label($"characters {built.Characters}, reference {frequent}");
        for (int i = 0; i < corpus.Count; i++)
        {
            var expected = refLines[i].Select(w =>
                w.EnumerateRunes().Count() > maxWordChars || w.EnumerateRunes().Any(r => charCounts[r.ToString()] < minFrequency) ? WordPiece.UnkToken : w).ToList();
            var actual = JoinPieces(tok.Tokenize(corpus[i]));
            prop = prop.And(expected.SequenceEqual(actual)
                .Label($"line {i}: '{corpus[i]}' → [{string.Join(" ", actual)}], expected [{string.Join(" ", expected)}]"));
        }
        return prop;
    }

    [Fact]
    public void SameCorpusSameVocabulary()
    {
        var corpus = Corpus(7, 80);
        var a = VocabBuilder.Build(corpus, 300, TokenizerSettings.Cased);
        var b = VocabBuilder.Build(corpus, 300, TokenizerSettings.Cased);
        Assert.Equal(a.Tokens, b.Tokens);
    }

    [Fact]
    public void TooSmallASizeSaysHowManyEntriesAreNeeded()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => VocabBuilder.Build(["abc abd"], 6, TokenizerSettings.Uncased, 1));
        Assert.Contains("ask for at least 13", e.Message); // 5 specials + {a, b, c, d} twice
    }

    [Fact]
    public void TinyShakespeareBuildsAnExactSizeVocabularyThatSavesAndReloads()
    {
        // 1.1 MB of text: builds in a couple of seconds (not asserted; see the test log).
        string text = DefaultData.ReadText(DataFile.TinyShakespeare);
        var lines = TextSource.Lines(text).Select(l => l.Line).ToList();
        var built = VocabBuilder.Build(lines, 4000, TokenizerSettings.Uncased);
        Assert.Equal(4000, built.Tokens.Count);
        Assert.False(built.Exhausted);
        var tok = built.ToTokenizer();
        Assert.Contains("the", built.Tokens);
        Assert.Equal(["first", "citizen", ":"], tok.Tokenize("First Citizen:"));

        string dir = TempDir.Create();
        try
        {
            tok.Save(dir);
            var back = WordPiece.Load(dir);
            Assert.Equal(tok.Vocab, back.Vocab);
            Assert.Equal(SpecialTokenIds.Compact, back.Ids);
            Assert.Equal(tok.Encode(lines[100]), back.Encode(lines[100]));
        }
        finally { TempDir.Delete(dir); }
    }
}
