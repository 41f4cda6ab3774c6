using Bert.Data;
using Bert.Tests.Data;
using Bert.Text;
using Xunit;

namespace Bert.Tests.Text;

/// <summary>Expected ids were read off the embedded bert-base-uncased vocabulary: the id of a token is its 0-based
/// line number, i.e. <c>grep -nxF -- 'TOKEN' vocab.txt</c> minus one (for example <c>grep -nxF cafe</c> prints
/// 7669:cafe, so cafe is 7668). Pieces follow BERT's greedy longest-match-first rule over that file.</summary>
public class WordPieceTests
{
    static readonly WordPiece Bert = WordPiece.BertBaseUncased();

    [Fact]
    public void SpecialIdsComeFromTheVocabularyFile()
    {
        // vocab.txt lines 1, 101–104: [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103.
        Assert.Equal(30522, Bert.VocabSize);
        Assert.Equal(SpecialTokenIds.BertBase, Bert.Ids);
        Assert.Equal((0, 100, 101, 102, 103), (Bert.PadId, Bert.UnkId, Bert.ClsId, Bert.SepId, Bert.MaskId));
        Assert.Equal("cafe", Bert.TokenOf(7668));
        Assert.Equal(7668, Bert.IdOf("cafe"));
        Assert.Equal(Bert.UnkId, Bert.IdOf("café")); // not in the file: the accent is stripped before lookup
    }

    [Fact]
    public void CafeLosesItsAccentAndItsCapital()
    {
        // "Café" → lower "café" → NFD + drop U+0301 → "cafe", a whole word at line 7669.
        Assert.Equal([7668], Bert.Encode("Café"));
    }

    [Fact]
    public void NaiveLosesItsDiaeresis()
    {
        // "naïve" → "naive" (line 15744); the vocabulary has no "naïve".
        Assert.Equal([15743], Bert.Encode("naïve"));
    }

    [Fact]
    public void UnaffableSplitsByLongestMatchFirst()
    {
        // BERT's docstring example "un ##aff ##able" came from a different vocabulary: this file has no "##aff".
        // Longest prefix of "unaffable" in the file is "una" (14477); of "##ffable" it is "##ffa" (20961); then
        // "##ble" (3468).
        Assert.Equal(["una", "##ffa", "##ble"], Bert.Tokenize("unaffable"));
        Assert.Equal([14477, 20961, 3468], Bert.Encode("unaffable"));
        Assert.Equal("unaffable", Bert.Decode(Bert.Encode("unaffable")));
    }

    [Fact]
    public void PunctuationIsSplitOff()
    {
        // hello 7592, "," 1010, world 2088, "!" 999.
        Assert.Equal([7592, 1010, 2088, 999], Bert.Encode("Hello, world!"));
    }

    [Fact]
    public void AsciiSymbolsAreBertPunctuationNotDropped()
    {
        // BERT counts every ASCII non-alphanumeric as punctuation: "$" 1002, "5" 1019, "1" 1015, "+" 1009,
        // "=" 1027, "2" 1016. (The package's default pre-tokenizer dropped these characters.)
        Assert.Equal([1002, 1019], Bert.Encode("$5"));
        Assert.Equal([1015, 1009, 1015, 1027, 1016], Bert.Encode("1+1=2"));
    }

    [Fact]
    public void CjkCharactersAreOneTokenEach()
    {
        // 我 1855, 日 1864, 本 1876, 語 1950; "爱" is not in the file, so that one character alone is [UNK] 100.
        Assert.Equal([1855, 1864, 1876, 1950], Bert.Encode("我日本語"));
        Assert.Equal([1864, 100, 1876], Bert.Encode("日爱本"));
    }

    [Fact]
    public void AWordLongerThanMaxWordCharsIsUnknown()
    {
        // MaxWordChars is BERT's 100; a 200-letter word becomes one [UNK] even though "a" and "##a" exist.
        Assert.Equal([100], Bert.Encode(new string('a', 200)));
        Assert.Equal([100, 7592], Bert.Encode(new string('a', 200) + " hello"));
    }

    [Fact]
    public void MixedCaseIsLowered()
    {
        Assert.Equal([7592, 2088], Bert.Encode("HeLLo WoRLD"));
    }

    [Fact]
    public void EmptyAndBlankTextGiveNoIds()
    {
        Assert.Empty(Bert.Encode(""));
        Assert.Empty(Bert.Encode(" \t\r\n"));
        var (ids, types, truncated) = Bert.EncodePair("", null, 8);
        Assert.Equal([101, 102], ids);
        Assert.Equal([0, 0], types);
        Assert.Equal(0, truncated);
    }

    [Fact]
    public void TabsAndInvisibleCharactersAreCleanedLikeBert()
    {
        // Tab is whitespace: "a" 1037, "b" 1038. U+200B (Cf) and U+0085 (Cc) are removed, gluing "ab" (11113).
        Assert.Equal([1037, 1038], Bert.Encode("a\tb"));
        Assert.Equal([11113], Bert.Encode("a\u200Bb"));
        Assert.Equal([11113], Bert.Encode("a\u0085b"));
    }

    [Fact]
    public void LiteralSpecialTokensStayWhole()
    {
        // "[MASK]" 103, hi 7632, "[SEP]" 102, there 2045; "[mask]" in lower case is ordinary text: [ mask ].
        Assert.Equal([103, 7632, 102, 2045], Bert.Encode("[MASK] hi[SEP]there"));
        Assert.Equal(["[", "mask", "]"], Bert.Tokenize("[mask]"));
    }

    [Fact]
    public void PairIsTruncatedLongerSegmentFirst()
    {
        // a = hello world hello world (4 pieces), b = hello (1); maxLen 6 leaves 3 pieces: a loses its last two.
        var (ids, types, truncated) = Bert.EncodePair("hello world hello world", "hello", 6);
        Assert.Equal([101, 7592, 2088, 102, 7592, 102], ids);
        Assert.Equal([0, 0, 0, 0, 1, 1], types);
        Assert.Equal(2, truncated);

        // Equal lengths: b gives way first, then they alternate.
        var even = Bert.EncodePair("hello world", "hello world", 6);
        Assert.Equal([101, 7592, 2088, 102, 7592, 102], even.Ids);
        Assert.Equal(1, even.Truncated);
    }

    [Fact]
    public void PairThatFitsIsUntouched()
    {
        var (ids, types, truncated) = Bert.EncodePair("hello", "world!", 16);
        Assert.Equal([101, 7592, 102, 2088, 999, 102], ids);
        Assert.Equal([0, 0, 0, 1, 1, 1], types);
        Assert.Equal(0, truncated);
        Assert.Throws<ArgumentOutOfRangeException>(() => Bert.EncodePair("a", "b", 2));
    }

    [Fact]
    public void CasedSettingsKeepCaseAndAccents()
    {
        string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nCafé\ncafe\nc\n##a\n##f\n##e\n##é\n";
        var cased = WordPiece.FromVocabText(vocab, TokenizerSettings.Cased, "cased-test");
        Assert.Equal([5], cased.Encode("Café"));
        Assert.Equal(["c", "##a", "##f", "##é"], cased.Tokenize("café"));
        var uncased = WordPiece.FromVocabText(vocab, TokenizerSettings.Uncased, "uncased-test");
        Assert.Equal([6], uncased.Encode("Café"));
    }

    [Fact]
    public void SaveAndLoadKeepVocabularyAndNormalizationTogether()
    {
        string dir = TempDir.Create();
        try
        {
            string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nÉ\nA\n##É\n";
            var cased = WordPiece.FromVocabText(vocab, TokenizerSettings.Cased with { MaxWordChars = 7 }, "v");
            cased.Save(dir);
            var back = WordPiece.Load(dir);
            Assert.Equal(cased.Vocab, back.Vocab);
            Assert.Equal(TokenizerSettings.Cased with { MaxWordChars = 7, SpecialIds = SpecialTokenIds.Compact }, back.Settings);
            Assert.Equal([6, 7], back.Encode("AÉ"));
            string json = File.ReadAllText(Path.Combine(dir, TokenizerSettings.FileName));
            Assert.Contains("\"do_lower_case\": false", json);
            Assert.Contains("\"strip_accents\": false", json);
        }
        finally { TempDir.Delete(dir); }
    }

    [Fact]
    public void HuggingFaceConfigWithNullStripAccentsFollowsLowerCase()
    {
        var s = TokenizerSettings.FromJson("""{"do_lower_case": true, "strip_accents": null, "model_max_length": 512}""", "hf.json");
        Assert.True(s.LowerCase);
        Assert.True(s.StripAccents);
        Assert.Equal(100, s.MaxWordChars);
    }

    [Fact]
    public void BadVocabulariesAreOneSentenceErrors()
    {
        var missing = Assert.Throws<DataException>(() => WordPiece.FromVocabText("[PAD]\n[UNK]\n[CLS]\n[SEP]\nx\n", TokenizerSettings.Uncased, "v.txt"));
        Assert.Contains("[MASK]", missing.Message);
        var dup = Assert.Throws<DataException>(() => WordPiece.FromVocabText("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nx\nx\n", TokenizerSettings.Uncased, "v.txt"));
        Assert.Equal(7, dup.Line);
        var blank = Assert.Throws<DataException>(() => WordPiece.FromVocabText("[PAD]\n\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", TokenizerSettings.Uncased, "v.txt"));
        Assert.Equal(2, blank.Line);
        var mismatch = Assert.Throws<DataException>(() => WordPiece.FromVocabText("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n",
            TokenizerSettings.Uncased with { SpecialIds = SpecialTokenIds.BertBase }, "v.txt"));
        Assert.Contains("records", mismatch.Message);
        string dir = TempDir.Create();
        try
        {
            File.WriteAllText(Path.Combine(dir, WordPiece.VocabFileName), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
            var noConfig = Assert.Throws<DataException>(() => WordPiece.Load(dir));
            Assert.Contains(TokenizerSettings.FileName, noConfig.Message);
            File.WriteAllText(Path.Combine(dir, TokenizerSettings.FileName), "{ not json");
            Assert.Throws<DataException>(() => WordPiece.Load(dir));
        }
        finally { TempDir.Delete(dir); }
    }
}
