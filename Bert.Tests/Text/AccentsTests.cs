using System.Globalization;
using System.Text;
using Bert.Text;
using Xunit;

namespace Bert.Tests.Text;

/// <summary>Accent stripping without ICU (<see cref="Accents"/>) against ICU's own NFD, which this test host has (the
/// `bert` command runs without it), and the normalizer around it against what transformers' fast BertNormalizer does.</summary>
public class AccentsTests
{
    /// <summary>transformers' strip_accents through ICU: NFD, then the Mn characters dropped.</summary>
    static string IcuStrip(string s)
    {
        var sb = new StringBuilder();
        string nfd = s.Normalize(NormalizationForm.FormD);
        for (int i = 0; i < nfd.Length; i += char.IsSurrogatePair(nfd, i) ? 2 : 1)
            if (CharUnicodeInfo.GetUnicodeCategory(nfd, i) != UnicodeCategory.NonSpacingMark)
                sb.Append(nfd, i, char.IsSurrogatePair(nfd, i) ? 2 : 1);
        return sb.ToString();
    }

    /// <summary>The library's strip_accents is ICU's NFD without Mn, but for the characters its older tables do not know
    /// as marks or as decomposable: every character where ours differs from ICU here must be one of those, which the
    /// cases file lists with the library's own ids (checked by HfTokenizerTests).</summary>
    [Fact]
    public void Strip_IsIcusNfdWithoutNonspacingMarks_ButWhereHuggingFacesTablesDiffer()
    {
        Assert.True("é".Normalize(NormalizationForm.FormD).Length == 2, "This test compares with ICU's NFD, but the test host runs without ICU (InvariantGlobalization); it must not.");
        var asked = HfTokenizerTests.Cases().ToDictionary(c => c.CodePoint, c => c.Stripped);
        var differ = new List<string>();
        int changed = 0, refused = 0, known = 0;
        for (int c = 0; c <= 0x10FFFF; c++)
        {
            if (c is >= 0xD800 and <= 0xDFFF) continue;
            string s = char.ConvertFromUtf32(c);
            string expected;
            try { expected = IcuStrip(s); }
            catch (ArgumentException) { refused++; continue; }   // ICU refuses the noncharacters (U+FDD0…, U+xFFFE/F) outright
            string actual = Accents.Strip(s);
            if (actual != s) changed++;
            if (expected == actual) continue;
            if (asked.TryGetValue(c, out var library) && library == actual) known++;
            else differ.Add($"U+{c:X4} → ICU '{expected}' ({string.Join(' ', expected.Select(ch => ((int)ch).ToString("X4")))}), ours '{actual}'");
        }
        Assert.True(differ.Count == 0, $"{differ.Count} characters strip differently from ICU other than the library's answer in the cases file (rerun scripts/hf_unicode.sh): " + string.Join("; ", differ.Take(10)));
        Assert.InRange(known, 300, 700);        // the marks the library's tables predate (384 against ICU 72)
        Assert.InRange(changed, 3900, 20000);   // its ~2000 decomposable characters, ~1500 Mn, 11172 Hangul syllables
        Assert.InRange(refused, 0, 66);         // the 66 noncharacters at most
    }

    [Theory]
    [InlineData("café", "cafe")]
    [InlineData("Ñandú", "Nandu")]
    [InlineData("naïve façade", "naive facade")]
    [InlineData("cafe\u0301", "cafe")]                       // an accent written as a combining mark
    [InlineData("\u0301", "")]                               // a lone mark
    [InlineData("한", "\u1112\u1161\u11AB")]                  // a syllable with a final: three jamo
    [InlineData("가", "\u1100\u1161")]                        // without a final: two
    [InlineData("\uF900", "\u8C48")]                          // a compatibility ideograph's canonical singleton
    [InlineData("plain ASCII text", "plain ASCII text")]
    [InlineData("\U0001D15E", "\U0001D157\U0001D165")]        // 𝅗𝅥 (a half note): its decomposition has no Mn, so it stays decomposed (Mc)
    public void Strip_Examples(string text, string stripped) => Assert.Equal(stripped, Accents.Strip(text));

    [Fact]
    public void Strip_ReturnsTheSameString_WhenNothingChanges()
    {
        string s = "no accents here, ß and ø stay";   // ß and ø have no canonical decomposition
        Assert.Same(s, Accents.Strip(s));
    }

    /// <summary>The normalizer is ours end to end: no NFC recomposition (Microsoft.ML.Tokenizers' normalizer recomposed,
    /// with ICU only), the order and the lower-casing of transformers' fast BertNormalizer.</summary>
    [Fact]
    public void Normalize_IsBertNormalizers_WithOrWithoutIcu()
    {
        var uncased = WordPiece.BertBaseUncased();
        Assert.Equal("cafe naive bronte", uncased.Normalize("Café Naïve BRONTË"));
        Assert.Equal("\u1112\u1161\u11AB\u1100\u116E\u11A8", uncased.Normalize("한국"));   // stays in jamo, as transformers gives it
        Assert.Equal(["ᄒ", "##ᅡ", "##ᆫ"], uncased.Tokenize("한"));
        Assert.Equal("istanbul", uncased.Normalize("İstanbul"));                           // İ: NFD I + U+0307, the mark dropped
        Assert.Equal("σοφια", uncased.Normalize("ΣΟΦΙΑ"));
        Assert.Equal(" 中  文 ", uncased.Normalize("中文"));                                  // each ideograph a word of its own
        Assert.Equal(["[CLS]", "cafe", "[SEP]"], uncased.EncodePair("Cafe\u0301", null, 8).Ids.Select(uncased.TokenOf));

        // transformers' fast tokenizer: CJK extension E spaced from U+2B920 (not U+2B820), unassigned characters kept
        // (then [UNK]), control, format and private-use ones dropped.
        Assert.Equal("\U0002B820z", uncased.Normalize("\U0002B820z"));
        Assert.Equal(" \U0002B920 z", uncased.Normalize("\U0002B920z"));
        Assert.Equal("x\u0378y", uncased.Normalize("x\u0378y"));
        Assert.Equal("pq ab", uncased.Normalize("p\uE001q a\u200Bb"));
        Assert.Equal(["the", "[MASK]", "is"], uncased.Words("The [MASK] is"));   // a special written in the text is one word

        var cased = new WordPiece(uncased.Vocab, new TokenizerSettings { LowerCase = false, StripAccents = false });
        Assert.Equal("Cafe\u0301", cased.Normalize("Cafe\u0301"));       // a decomposed accent stays decomposed (no NFC)
        Assert.Equal("Café", cased.Normalize("Café"));
        var lowerOnly = new WordPiece(uncased.Vocab, new TokenizerSettings { LowerCase = true, StripAccents = false });
        Assert.Equal("i\u0307stanbul café", lowerOnly.Normalize("İSTANBUL CAFÉ"));   // İ's full lower-case mapping, as Rust's
    }
}
