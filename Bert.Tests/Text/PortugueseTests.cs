using System.Globalization;
using System.Text;
using Bert.Data;
using Bert.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Text;

/// <summary>Tokenizing Portuguese with case and accents kept, and the vocabulary builder's properties on
/// Portuguese text: accents, dialogue dashes, enclitic hyphens, emoji (surrogate pairs), @user and hashtags.</summary>
public class PortugueseTests
{
    // A hand-written vocabulary, so that the expected pieces below follow from BERT's rules alone:
    // whitespace separates words, every punctuation character (— - , . ! @ #) is a word of its own, letters,
    // marks and symbols (emoji) stay in their word, and each word is cut by greedy longest match.
    static readonly string[] HandVocab =
    [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
        "—", ",", ".", "!", "-", "@", "#", "Não", "disse", "me", "ele", "É", "é", "e", "café", "cafe", "Que", "lindo",
        "😍", "##😍", "❤", "##\uFE0F", "user", "Master", "##Chef", "##BR", "Vou", "sentar",
    ];

    static WordPiece Hand(TokenizerSettings settings) => new(HandVocab, settings, "hand vocabulary");

    static readonly WordPiece Cased = Hand(Portuguese.Settings);

    [Fact]
    public void PortugueseSettingsKeepCaseAndAccents()
    {
        Assert.False(Portuguese.Settings.LowerCase);
        Assert.False(Portuguese.Settings.StripAccents);
    }

    [Fact]
    public void DialogueDashAndEncliticHyphenAreWordsOfTheirOwn()
    {
        // "—" (U+2014, Pd) and "-" are punctuation: each is a word, so "disse-me" is disse / - / me.
        Assert.Equal(["—", "Não", ",", "disse", "-", "me", "ele", "."], Cased.Tokenize("— Não, disse-me ele."));
        Assert.Equal(["Vou", "sentar", "-", "me"], Cased.Tokenize("Vou sentar-me"));
    }

    [Fact]
    public void AccentsAndCaseAreKept()
    {
        Assert.Equal(["É", "café", ",", "e", "é", "cafe", "."], Cased.Tokenize("É café, e é cafe."));
        var ids = Cased.Encode("É é e");
        Assert.Equal(3, ids.Distinct().Count());
        Assert.Equal("É café", Cased.Normalize("É café"));

        // The same text under uncased settings folds "É"/"é" to "e" and "café" to "cafe": the difference a
        // checkpoint must never meet by mistake.
        var uncased = Hand(TokenizerSettings.Uncased);
        Assert.Equal(["e", "cafe", ",", "e", "e", "cafe", "."], uncased.Tokenize("É café, e é cafe."));
    }

    [Fact]
    public void EmojiStayWholeAndUnknownEmojiBecomeUnk()
    {
        // 😍 is U+1F60D, a surrogate pair; a run of two is one word cut into 😍 ##😍.
        Assert.Equal(["Que", "lindo", "😍", "##😍", "!"], Cased.Tokenize("Que lindo 😍😍!"));
        // ❤️ is U+2764 U+FE0F; the variation selector is a non-spacing mark, kept when accents are kept …
        Assert.Equal(["❤", "##\uFE0F"], Cased.Tokenize("❤\uFE0F"));
        // … and dropped with accent stripping.
        Assert.Equal(["❤"], Hand(TokenizerSettings.Uncased).Tokenize("❤\uFE0F"));
        // 🎉 is not in the vocabulary: the whole word is [UNK], never half of its pair.
        Assert.Equal(["[UNK]"], Cased.Tokenize("🎉"));
        Assert.Equal(["Que", "[UNK]"], Cased.Tokenize("Que lindo🎉"));
        // The zero-width joiner (Cf) is removed by BERT's cleaning; the emoji around it stay whole.
        Assert.Equal(["😍", "##😍"], Cased.Tokenize("😍\u200D😍"));
    }

    [Fact]
    public void UserHandlesAndHashtagsSplitAtTheirSign()
    {
        Assert.Equal(["@", "user", "#", "Master", "##Chef", "##BR"], Cased.Tokenize("@user #MasterChefBR"));
        Assert.Equal(["@", "user", "Não", "!"], Cased.Tokenize("@user\u00A0 Não!")); // NBSP is whitespace
    }

    // ---- the embedded Portuguese vocabulary --------------------------------------------------------------------

    static readonly Lazy<(BuiltVocab Built, WordPiece Tok, List<string> Lines)> Default = new(() =>
    {
        var lines = Portuguese.VocabLines(taskText: true).ToList();
        var built = VocabBuilder.Build(lines, Portuguese.VocabSize, Portuguese.Settings);
        return (built, built.ToTokenizer(), lines);
    });

    [Fact]
    public void DefaultVocabularyHasTheAskedSizeSpecialsAndPortugueseWords()
    {
        var (built, tok, _) = Default.Value;
        Assert.Equal(Portuguese.VocabSize, built.Tokens.Count);
        Assert.False(built.Exhausted);
        Assert.Equal(WordPiece.SpecialTokens, built.Tokens.Take(5));
        Assert.Equal(SpecialTokenIds.Compact, tok.Ids);
        Assert.Equal(built.Tokens.Count, built.Tokens.Distinct(StringComparer.Ordinal).Count());
        // Accented and unaccented forms are different entries, and case is kept.
        foreach (var w in new[] { "é", "e", "É", "não", "Não", "você", "ação", "—" }) Assert.Contains(w, built.Tokens);
        Assert.NotEqual(tok.IdOf("é"), tok.IdOf("e"));
        Assert.Equal(["—", "Não", ",", "disse", "-", "me", "ele", "."], tok.Tokenize("— Não, disse-me ele."));
        // A letter the corpus never has (U+A66E, Cyrillic) is below the frequency threshold: its word is [UNK].
        Assert.Equal(["Que", "[UNK]"], tok.Tokenize("Que \uA66E"));
    }

    /// <summary>The tweets' training text is part of the corpus, so their commonest emoji has entries of its own.</summary>
    [Fact]
    public void EmojiOfTheTweetsHaveEntries()
    {
        var (built, tok, _) = Default.Value;
        Assert.Contains("😂", built.Tokens);
        Assert.Contains("##😂", built.Tokens);
        Assert.Equal(["😂"], tok.Tokenize("😂"));
        Assert.Equal(["Adorei", "😂"], tok.Tokenize("Adorei 😂"));
        // Runs of laughing faces are so common in the tweets that the run itself was merged into one entry.
        Assert.Equal(["😂😂😂"], tok.Tokenize("😂😂😂"));
    }

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

    /// <summary>The words of a line under the Portuguese settings, written out apart from the product: drop
    /// C* characters other than whitespace, split on whitespace and on BERT punctuation (ASCII symbols and P*).
    /// No case or accent folding.</summary>
    static List<string> ReferenceWords(string line)
    {
        var words = new List<string>();
        var cur = new StringBuilder();
        void Flush() { if (cur.Length > 0) { words.Add(cur.ToString()); cur.Clear(); } }
        foreach (Rune r in line.EnumerateRunes())
        {
            var cat = Rune.GetUnicodeCategory(r);
            if (Rune.IsWhiteSpace(r)) Flush();
            else if (cat is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.OtherNotAssigned or UnicodeCategory.PrivateUse) continue;
            else if (r.Value is (>= 33 and <= 47) or (>= 58 and <= 64) or (>= 91 and <= 96) or (>= 123 and <= 126) || cat.ToString().EndsWith("Punctuation", StringComparison.Ordinal))
            { Flush(); words.Add(r.ToString()); }
            else cur.Append(r.ToString());
        }
        Flush();
        return words;
    }

    static bool WellFormed(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { i++; continue; }
            if (char.IsSurrogate(s[i])) return false;
        }
        return true;
    }

    [Property(MaxTest = 40)]
    public Property AnyCorpusLineJoinsBackToItsWordsApartFromRareCharacters()
    {
        var (built, tok, lines) = Default.Value;
        // Character counts over the words the builder saw (the threshold is 2).
        var counts = new Dictionary<int, long>();
        foreach (var line in lines)
            foreach (var w in ReferenceWords(line))
                foreach (Rune r in w.EnumerateRunes()) counts[r.Value] = counts.GetValueOrDefault(r.Value) + 1;
        Assert.Equal(counts.Count(kv => kv.Value >= 2), built.Characters);
        return Prop.ForAll(Gen.Choose(0, lines.Count - 1).ToArbitrary(), i =>
        {
            string line = lines[i];
            var expected = ReferenceWords(line).Select(w => w.EnumerateRunes().Any(r => counts[r.Value] < 2) ? WordPiece.UnkToken : w).ToList();
            var pieces = tok.Tokenize(line);
            var actual = JoinPieces(pieces);
            return (expected.SequenceEqual(actual) && pieces.All(WellFormed))
                .Label($"line {i}: '{line}' → [{string.Join(" ", actual)}], expected [{string.Join(" ", expected)}]");
        });
    }

    // Generated Portuguese-like text: accented words in both cases, dialogue dashes, enclitic hyphens, emoji
    // outside the BMP (with and without U+FE0F), @user and hashtags.
    static readonly string[] Fragments =
    [
        "não", "Não", "é", "É", "e", "ação", "coração", "você", "Brás", "Capitu", "olhos", "de", "ressaca", "disse-me",
        "fê-lo", "apertá-los", "— ", "—", "–", "“", "”", ",", ".", "!", "?", "...", "😂", "😍", "❤️", "👏🏻", "🇧🇷", "🎉",
        "@user", "#MasterChefBR", "#Encontro", "kkkk", "ç", "Ç", "à", "ü", "ñ", "2018", "\u00A0", "\t",
    ];

    static Gen<string> Line => Gen.ListOf(Gen.Elements(Fragments).SelectMany(f => Gen.Elements(" ", "", "", " ").Select(sep => f + sep)))
        .Select(parts => string.Concat(parts));

    [Property(MaxTest = 30)]
    public Property BuilderOnPortugueseText_SpecialsFixedNoDuplicatesSizeAsAskedPiecesJoinBack() => Prop.ForAll(
        (from lines in Gen.ArrayOf(Line, 40) from extra in Gen.Choose(0, 60) from minFrequency in Gen.Choose(1, 3) select (lines, extra, minFrequency)).ToArbitrary(),
        c =>
        {
            var (lines, extra, minFrequency) = c;
            var all = VocabBuilder.Build(lines, int.MaxValue, Portuguese.Settings, minFrequency);
            int asked = 5 + 2 * all.Characters + extra;
            var built = VocabBuilder.Build(lines, asked, Portuguese.Settings, minFrequency);
            var tok = built.ToTokenizer();

            var counts = new Dictionary<int, long>();
            foreach (var w in lines.SelectMany(ReferenceWords))
                foreach (Rune r in w.EnumerateRunes()) counts[r.Value] = counts.GetValueOrDefault(r.Value) + 1;

            var prop = (built.Tokens.Take(5).SequenceEqual(WordPiece.SpecialTokens) && tok.Ids == SpecialTokenIds.Compact).Label("specials at 0–4")
                .And((built.Tokens.Distinct(StringComparer.Ordinal).Count() == built.Tokens.Count).Label("no duplicates"))
                .And((built.Tokens.Count == Math.Min(asked, all.Tokens.Count) && built.Exhausted == (asked > all.Tokens.Count))
                    .Label($"size {built.Tokens.Count} for {asked} asked (all {all.Tokens.Count})"))
                .And(built.Tokens.All(WellFormed).Label("no entry holds half a surrogate pair"));
            foreach (var line in lines)
            {
                var expected = ReferenceWords(line).Select(w => w.EnumerateRunes().Any(r => counts[r.Value] < minFrequency) ? WordPiece.UnkToken : w).ToList();
                var pieces = tok.Tokenize(line);
                var actual = JoinPieces(pieces);
                prop = prop.And((expected.SequenceEqual(actual) && pieces.All(WellFormed))
                    .Label($"'{line}' → [{string.Join(" ", actual)}], expected [{string.Join(" ", expected)}]"));
            }
            return prop;
        });

    [Property(MaxTest = 100)]
    public Property NoPieceIsEverHalfASurrogatePair() => Prop.ForAll(
        Gen.ArrayOf(Gen.OneOf(Gen.Choose(0x1F300, 0x1FAFF), Gen.Choose(0x20, 0x24F), Gen.Elements(0x2014, 0x200D, 0xFE0F, 0x20, 0x2D, 0x40, 0x23)))
            .Select(cps => string.Concat(cps.Select(char.ConvertFromUtf32))).ToArbitrary(),
        text =>
        {
            var pieces = Default.Value.Tok.Tokenize(text);
            return pieces.All(p => WellFormed(p) && (p.Length > 0)).Label($"'{text}' → [{string.Join(" ", pieces)}]");
        });
}
