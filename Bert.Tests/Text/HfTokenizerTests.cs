using System.Text;
using System.Text.Json.Nodes;
using Bert.Text;
using Bert.Training;
using Xunit;

namespace Bert.Tests.Text;

/// <summary>The tokenizer against Hugging Face's own (the Rust tokenizers library transformers' BertTokenizerFast runs),
/// through ids that library gave (HfTokenizerCases.txt, written by scripts/hf_unicode.cjs), and the tokenizer.json we
/// write for it. bench/parity/tokenizer.sh runs the library itself over every embedded text and every code point.</summary>
public class HfTokenizerTests
{
    static string CasesFile => Path.Combine(AppContext.BaseDirectory, "Text", "HfTokenizerCases.txt");

    /// <summary>The code points of the cases file and the library's ids, uncased (lower case, accents stripped) and cased.</summary>
    internal static List<(int CodePoint, string Uncased, string Cased)> Cases() =>
        File.ReadLines(CasesFile).Where(l => !l.StartsWith('#') && l.Length > 0)
            .Select(l => l.Split('\t')).Select(f => (Convert.ToInt32(f[0], 16), f[1], f[2])).ToList();

    static string Text(int c) { string ch = char.ConvertFromUtf32(c); return $"a{ch}b {ch} A{ch}B"; }

    [Fact]
    public void EveryCharacterTheLibraryClassifiesOtherwiseThanIcu_GetsItsIds()
    {
        var uncased = WordPiece.BertBaseUncased();
        var cased = new WordPiece(uncased.Vocab, TokenizerSettings.Cased);
        var cases = Cases();
        var differ = new List<string>();
        foreach (var (c, u, k) in cases)
        {
            string ours = string.Join(' ', uncased.EncodePair(Text(c), null, 512).Ids);
            string oursCased = string.Join(' ', cased.EncodePair(Text(c), null, 512).Ids);
            if (ours != u) differ.Add($"U+{c:X4} uncased: ours {ours}, transformers {u}");
            if (oursCased != k) differ.Add($"U+{c:X4} cased: ours {oursCased}, transformers {k}");
        }
        // About 650 characters where the library's tables are not ICU's, and a sample of every 509th code point.
        Assert.InRange(cases.Count, 2500, 4000);
        Assert.True(differ.Count == 0, $"{differ.Count} of {2 * cases.Count} encodings differ from Hugging Face tokenizers': " + string.Join("; ", differ.Take(8)));
    }

    [Fact]
    public void CharactersNewerThanTheLibrarysTables_AreClassifiedAsTheLibraryDoes_NotAsDotNet()
    {
        var uncased = WordPiece.BertBaseUncased();
        // U+061D ARABIC END OF TEXT MARK: Po since Unicode 14 (.NET's), not punctuation to the library: one word.
        Assert.Equal(System.Globalization.UnicodeCategory.OtherPunctuation, char.GetUnicodeCategory('\u061D'));
        Assert.Equal(["a\u061Db"], uncased.Words("a\u061Db"));
        // U+166D CANADIAN SYLLABICS CHI SIGN: So since Unicode 12, punctuation to the library: a word of its own.
        Assert.Equal(System.Globalization.UnicodeCategory.OtherSymbol, char.GetUnicodeCategory('\u166D'));
        Assert.Equal(["a", "\u166D", "b"], uncased.Words("a\u166Db"));
        // U+07FD NKO DANTAYALAN: Mn since Unicode 11, kept by the library's strip_accents.
        Assert.Equal(System.Globalization.UnicodeCategory.NonSpacingMark, char.GetUnicodeCategory('\u07FD'));
        Assert.Equal("a\u07FDb", uncased.Normalize("a\u07FDb"));
        // U+0890 ARABIC POUND MARK ABOVE: Cf since Unicode 14, kept by the library's clean_text.
        Assert.Equal(System.Globalization.UnicodeCategory.Format, char.GetUnicodeCategory('\u0890'));
        Assert.Equal("a\u0890b", uncased.Normalize("a\u0890b"));
        // Each of the four is in the cases file, with the library's ids.
        Assert.Equal(4, Cases().Count(x => x.CodePoint is 0x061D or 0x166D or 0x07FD or 0x0890));
    }

    [Fact]
    public void AWordsLength_IsCountedInCharacters_NotUtf16Units()
    {
        // transformers' max_input_chars_per_word counts characters: 60 emoji (120 UTF-16 units) are a word of 60.
        var tok = new WordPiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "😀", "##😀", "a", "##a"], TokenizerSettings.Cased);
        Assert.Equal([5, .. Enumerable.Repeat(6, 59)], tok.Encode(string.Concat(Enumerable.Repeat("😀", 60))));
        Assert.Equal(100, tok.Encode(string.Concat(Enumerable.Repeat("😀", 100))).Length);
        Assert.Equal([tok.UnkId], tok.Encode(string.Concat(Enumerable.Repeat("😀", 101))));
        Assert.Equal(100, tok.Encode(new string('a', 99) + "😀").Length);                     // 100 characters, 101 units
        Assert.Equal([tok.UnkId], tok.Encode(new string('a', 101)));
        Assert.Equal([tok.UnkId, 7, 5], tok.Encode(new string('a', 101) + " a 😀"));            // the rest of the text goes on
    }

    static WordPiece Compact(TokenizerSettings settings) =>
        new(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "ca", "##fe", "##f", "##é", "é", "ü", "!", "\"", "日", "😀"], settings);

    public static TheoryData<string> Tokenizers => ["bert-base-uncased", "compact cased", "compact uncased, accents kept"];

    static WordPiece Named(string name) => name switch
    {
        "bert-base-uncased" => WordPiece.BertBaseUncased(),
        "compact cased" => Compact(TokenizerSettings.Cased),
        _ => Compact(new TokenizerSettings { LowerCase = true, StripAccents = false, MaxWordChars = 37 }),
    };

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public void TokenizerJson_ReadsBackAsTheSameTokenizer(string name)
    {
        var tok = Named(name);
        string dir = Directory.CreateTempSubdirectory("bert-tokjson-").FullName;
        try
        {
            string path = Path.Combine(dir, WordPiece.TokenizerJsonFileName);
            File.WriteAllBytes(path, tok.ToTokenizerJson());
            var back = WordPiece.FromTokenizerJson(path);
            Assert.Equal(tok.Vocab, back.Vocab);
            Assert.Equal(tok.Ids, back.Ids);
            Assert.Equal((tok.Settings.LowerCase, tok.Settings.StripAccents, tok.Settings.MaxWordChars),
                (back.Settings.LowerCase, back.Settings.StripAccents, back.Settings.MaxWordChars));
            foreach (string text in new[] { "Café CAFÉ [MASK] 日本 \"ü\"!", "x😀y" })
                Assert.Equal(tok.Encode(text), back.Encode(text));

            // What transformers' loader reads: the normalizer's flags, the templates' ids, the added tokens at their ids.
            var root = JsonNode.Parse(File.ReadAllText(path))!;
            Assert.Equal("1.0", (string?)root["version"]);
            Assert.Equal(tok.Settings.LowerCase, (bool)root["normalizer"]!["lowercase"]!);
            Assert.Equal(tok.Settings.StripAccents, (bool)root["normalizer"]!["strip_accents"]!);
            Assert.Equal("BertPreTokenizer", (string?)root["pre_tokenizer"]!["type"]);
            Assert.Equal(tok.ClsId, (int)root["post_processor"]!["special_tokens"]!["[CLS]"]!["ids"]![0]!);
            Assert.Equal(tok.SepId, (int)root["post_processor"]!["special_tokens"]!["[SEP]"]!["ids"]![0]!);
            Assert.Equal(["[CLS]", "A", "[SEP]", "B", "[SEP]"], root["post_processor"]!["pair"]!.AsArray().Select(p => (string)(p!["SpecialToken"] ?? p["Sequence"])!["id"]!));
            Assert.Equal([0, 0, 0, 1, 1], root["post_processor"]!["pair"]!.AsArray().Select(p => (int)(p!["SpecialToken"] ?? p["Sequence"])!["type_id"]!));
            var added = root["added_tokens"]!.AsArray().Select(t => ((string)t!["content"]!, (int)t["id"]!, (bool)t["special"]!, (bool)t["normalized"]!)).ToList();
            Assert.Equal(WordPiece.SpecialTokens.Select(t => (t, tok.IdOf(t), true, false)).OrderBy(t => t.Item2), added);
            Assert.Equal(tok.VocabSize, root["model"]!["vocab"]!.AsObject().Count);
            Assert.Equal(tok.Settings.MaxWordChars, (int)root["model"]!["max_input_chars_per_word"]!);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Save_WritesTheThreeFiles_AndACheckpointFolderStillTokenizesByItsVocabTxt()
    {
        var tok = Compact(TokenizerSettings.Cased);
        string dir = Directory.CreateTempSubdirectory("bert-toksave-").FullName;
        try
        {
            tok.Save(dir, modelMaxLength: 64);
            Assert.Equal(["tokenizer.json", "tokenizer_config.json", "vocab.txt"], Directory.GetFiles(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            Assert.Equal(tok.ToTokenizerJson(), File.ReadAllBytes(Path.Combine(dir, WordPiece.TokenizerJsonFileName)));
            // vocab.txt with tokenizer_config.json is what we read when both are there: a tokenizer.json edited by hand
            // (here: lower-casing turned on) does not change our tokenization.
            string json = Path.Combine(dir, WordPiece.TokenizerJsonFileName);
            File.WriteAllText(json, File.ReadAllText(json).Replace("\"lowercase\": false", "\"lowercase\": true"));
            var loaded = CheckpointTokenizer.Load(dir);
            Assert.False(loaded.Settings.LowerCase);
            Assert.Equal(tok.Vocab, loaded.Vocab);
            // Saving again replaces each file whole (no temporary files left beside them).
            tok.Save(dir);
            Assert.Equal(3, Directory.GetFiles(dir).Length);
            Assert.Equal(tok.ToTokenizerJson(), File.ReadAllBytes(json));
        }
        finally { Directory.Delete(dir, true); }
    }
}
