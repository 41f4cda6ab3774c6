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

    /// <summary>The code points of the cases file and the library's answers: the ids uncased (lower case, accents
    /// stripped) and cased, the text normalized uncased, and the character with its accents stripped.</summary>
    internal static List<(int CodePoint, string Uncased, string Cased, string Normalized, string Stripped)> Cases() =>
        File.ReadLines(CasesFile).Where(l => !l.StartsWith('#') && l.Length > 0)
            .Select(l => l.Split('\t')).Select(f => (Convert.ToInt32(f[0], 16), f[1], f[2], Units(f[3]), Units(f[4]))).ToList();

    static string Units(string hex) =>
        hex.Length == 0 ? "" : new string(hex.Split(' ').Select(u => (char)Convert.ToUInt16(u, 16)).ToArray());

    static string Text(int c) { string ch = char.ConvertFromUtf32(c); return $"a{ch}b {ch} A{ch}B"; }

    [Fact]
    public void EveryCharacterTheLibraryClassifiesOtherwiseThanIcu_GetsItsIds()
    {
        var uncased = WordPiece.BertBaseUncased();
        var cased = new WordPiece(uncased.Vocab, TokenizerSettings.Cased);
        var cases = Cases();
        var differ = new List<string>();
        foreach (var (c, u, k, normalized, stripped) in cases)
        {
            string ours = string.Join(' ', uncased.EncodePair(Text(c), null, 512).Ids);
            string oursCased = string.Join(' ', cased.EncodePair(Text(c), null, 512).Ids);
            if (ours != u) differ.Add($"U+{c:X4} uncased: ours {ours}, transformers {u}");
            if (oursCased != k) differ.Add($"U+{c:X4} cased: ours {oursCased}, transformers {k}");
            // The normalizer's own output, which ids cannot show where both sides are [UNK].
            if (uncased.Normalize(Text(c)) != normalized) differ.Add($"U+{c:X4} normalized: ours '{uncased.Normalize(Text(c))}', transformers '{normalized}'");
            if (Accents.Strip(char.ConvertFromUtf32(c)) != stripped) differ.Add($"U+{c:X4} stripped: ours '{Accents.Strip(char.ConvertFromUtf32(c))}', transformers '{stripped}'");
        }
        // The ~670 characters where the library answers otherwise than Node's ICU (Unicode 17), and a sample of every 509th code point.
        Assert.InRange(cases.Count, 2500, 4000);
        Assert.True(differ.Count == 0, $"{differ.Count} of {4 * cases.Count} answers differ from Hugging Face tokenizers': " + string.Join("; ", differ.Take(8)));
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

    [Fact]
    public void WordsInTextWithAstralCharacters_GetThePiecesTheyGetInTextWithout()
    {
        // Text holding a character beyond the BMP is matched word by word by our greedy match, other text by the
        // package's: every word of every embedded English line must get the same pieces either way.
        var tok = WordPiece.BertBaseUncased();
        var lines = Bert.Data.DefaultData.ReadText(Bert.Data.DataFile.Sst2Dev).Split('\n').Take(400).ToList();
        Assert.True(lines.Count > 300);
        foreach (string line in lines)
        {
            if (line.Trim().Length == 0) continue;
            var plain = tok.Encode(line);
            var astral = tok.Encode(line + " 😀");   // [UNK] in bert-base-uncased
            Assert.Equal([.. plain, tok.UnkId], astral);
        }
        var compact = Compact(TokenizerSettings.Cased);
        Assert.Equal([5, 6, 8, compact.UnkId, 14], compact.Encode("cafeé cafeé😀 😀"));
    }

    [Fact]
    public void AHuggingFaceFolderWithBothFiles_TokenizesAsItsTokenizerJsonSays_AsAutoTokenizerDoes()
    {
        string dir = Directory.CreateTempSubdirectory("bert-hfboth-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "config.json"), """{"architectures": ["BertForMaskedLM"], "model_type": "bert"}""");
            var cased = Compact(TokenizerSettings.Cased);
            File.WriteAllText(Path.Combine(dir, WordPiece.VocabFileName), string.Join('\n', cased.Vocab) + "\n");
            // vocab.txt alone, no tokenizer_config.json: transformers' BertTokenizer defaults (lower-cased).
            Assert.True(CheckpointTokenizer.Load(dir).Settings.LowerCase);
            // With a tokenizer.json that keeps case, that file decides, as AutoTokenizer's fast tokenizer would.
            File.WriteAllBytes(Path.Combine(dir, WordPiece.TokenizerJsonFileName), cased.ToTokenizerJson());
            var loaded = CheckpointTokenizer.Load(dir);
            Assert.False(loaded.Settings.LowerCase);
            Assert.Equal(cased.Encode("Café ü"), loaded.Encode("Café ü"));
            // One this tokenizer does not follow (another normalizer) leaves vocab.txt to decide, as before.
            var other = JsonNode.Parse(cased.ToTokenizerJson())!;
            other["normalizer"] = new JsonObject { ["type"] = "NFKC" };
            File.WriteAllText(Path.Combine(dir, WordPiece.TokenizerJsonFileName), other.ToJsonString());
            Assert.True(CheckpointTokenizer.Load(dir).Settings.LowerCase);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void ARunOrVocabularyIntoAFolderHoldingAnotherTokenizerJson_IsRefused()
    {
        string dir = Directory.CreateTempSubdirectory("bert-tokjsonrun-").FullName;
        try
        {
            var cased = Compact(TokenizerSettings.Cased);
            File.WriteAllBytes(Path.Combine(dir, WordPiece.TokenizerJsonFileName), cased.ToTokenizerJson());
            TrainLoop.RequireRunOrEmpty(dir, cased);   // the same tokenizer: the run may write it again
            var e = Assert.Throws<Bert.Runtime.Checkpoints.CheckpointException>(() => TrainLoop.RequireRunOrEmpty(dir, WordPiece.BertBaseUncased()));
            Assert.Contains("holds a tokenizer (tokenizer.json) that this run, with another one, would replace", e.Message);
            var r = Bert.Tests.Cli.CliTests.Run("vocab", "--corpus", "amazon", "--size", "200", "--out", dir);
            Assert.Equal(1, r.Code);
            Assert.Contains($"{dir} already holds tokenizer.json; give another --out", r.Err);
            Assert.Equal(cased.ToTokenizerJson(), File.ReadAllBytes(Path.Combine(dir, WordPiece.TokenizerJsonFileName)));
        }
        finally { Directory.Delete(dir, true); }
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
            Assert.Equal(Enumerable.Range(0, tok.VocabSize), root["model"]!["vocab"]!.AsObject().Select(kv => (int)kv.Value!));
            Assert.Equal(("WordPiece", "[UNK]", "##"), ((string?)root["model"]!["type"], (string?)root["model"]!["unk_token"], (string?)root["model"]!["continuing_subword_prefix"]));
            Assert.Equal(("BertNormalizer", true, true), ((string?)root["normalizer"]!["type"], (bool)root["normalizer"]!["clean_text"]!, (bool)root["normalizer"]!["handle_chinese_chars"]!));
            Assert.Equal(("WordPiece", "##", true), ((string?)root["decoder"]!["type"], (string?)root["decoder"]!["prefix"], (bool)root["decoder"]!["cleanup"]!));
            Assert.Equal("TemplateProcessing", (string?)root["post_processor"]!["type"]);
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
            var loaded = CheckpointTokenizer.Load(dir);
            Assert.False(loaded.Settings.LowerCase);
            Assert.Equal(tok.Vocab, loaded.Vocab);
            // The same tokenizer written otherwise (indentation) is recognized as the same; another is refused.
            File.WriteAllText(json, JsonNode.Parse(File.ReadAllText(json))!.ToJsonString());
            Assert.Equal(tok.Vocab, CheckpointTokenizer.Load(dir).Vocab);
            Assert.Contains("\"lowercase\":false", File.ReadAllText(json));
            File.WriteAllText(json, File.ReadAllText(json).Replace("\"lowercase\":false", "\"lowercase\":true"));
            var e = Assert.Throws<Bert.Data.DataException>(() => CheckpointTokenizer.Load(dir));
            Assert.Contains("(it lower-cases, tokenizer_config.json keeps case)", e.Message);
            File.WriteAllText(json, File.ReadAllText(json).Replace("\"##f\":7,", ""));
            Assert.Contains("is not the tokenizer of the vocab.txt and tokenizer_config.json beside it", Assert.Throws<Bert.Data.DataException>(() => WordPiece.Load(dir)).Message);
            // Saving again replaces each file whole (no temporary files left beside them).
            tok.Save(dir);
            Assert.Equal(3, Directory.GetFiles(dir).Length);
            Assert.Equal(tok.ToTokenizerJson(), File.ReadAllBytes(json));
        }
        finally { Directory.Delete(dir, true); }
    }
}
