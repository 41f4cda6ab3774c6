using System.Text;
using System.Text.Json;
using Bert.Cli;
using Bert.Text;
using Xunit;

namespace Bert.Tests.Cli;

/// <summary>`bert tokenize`: what a model gets of a text, and a corpus's summary under a tokenizer.</summary>
[Collection("Console")]
public class TokenizeCliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("bert-tokenize-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static (int Code, string Out, string Err) Run(params string[] args) => CliTests.Run(args);

    static (int Code, string Out, string Err) RunWithInput(string stdin, params string[] args)
    {
        Program.StandardInput = new StringReader(stdin);
        try { return Run(args); }
        finally { Program.StandardInput = null; }
    }

    static string[] Lines(string output) => output.Split('\n').Select(l => l.TrimEnd('\r')).ToArray()[..^1];

    [Fact]
    public void Tokens_Ids_AndJson_AreWhatFinetuneEncodes()
    {
        var tok = WordPiece.BertBaseUncased();
        const string text = "The unaffable Brontë sisters' café!";
        var expected = tok.EncodePair(text, null, 128);

        var (code, output, err) = Run("tokenize", text);
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Equal("[CLS] the una ##ffa ##ble bro ##nte sisters ' cafe ! [SEP]\n", output.ReplaceLineEndings("\n"));

        (code, output, _) = Run("tokenize", "--output", "ids", text);
        Assert.Equal(0, code);
        Assert.Equal(string.Join(' ', expected.Ids), output.Trim());

        (code, output, _) = Run("tokenize", "--output", "json", text);
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal(expected.Ids, doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(expected.Ids.Select(tok.TokenOf), doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetString()));
        Assert.All(doc.RootElement.GetProperty("type_ids").EnumerateArray(), e => Assert.Equal(0, e.GetInt32()));
        Assert.Equal(0, doc.RootElement.GetProperty("truncated").GetInt32());
    }

    [Fact]
    public void StandardInput_Pairs_BlankLines_AndTruncation()
    {
        // Pairs: type ids 0 for [CLS] first [SEP], 1 for second [SEP]; a blank line answered by an empty object.
        var (code, output, err) = RunWithInput("good phone\tgreat\n\nbad\tawful thing\n", "tokenize", "--pairs", "--output", "json");
        Assert.Equal(0, code);
        Assert.Equal("", err);
        var lines = Lines(output.ReplaceLineEndings("\n"));
        Assert.Equal(3, lines.Length);
        using (var first = JsonDocument.Parse(lines[0]))
        {
            Assert.Equal(["[CLS]", "good", "phone", "[SEP]", "great", "[SEP]"], first.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetString()));
            Assert.Equal([0, 0, 0, 0, 1, 1], first.RootElement.GetProperty("type_ids").EnumerateArray().Select(e => e.GetInt32()));
        }
        using (var blank = JsonDocument.Parse(lines[1])) Assert.Equal(0, blank.RootElement.GetProperty("ids").GetArrayLength());

        // One text per line; the blank one keeps its place; --max-len cuts, and says so once on standard error.
        (code, output, err) = RunWithInput("one two three four five six\n\nseven\n", "tokenize", "--max-len", "5");
        Assert.Equal(0, code);
        Assert.Equal(["[CLS] one two three [SEP]", "", "[CLS] seven [SEP]"], Lines(output.ReplaceLineEndings("\n")));
        Assert.Contains("1 of 2 texts was longer than 5 tokens", err);
    }

    [Fact]
    public void Stats_CountWords_Pieces_Unknowns_AndLengths()
    {
        string file = Path.Combine(_dir, "corpus.txt");
        // Ten texts: nine of 2 words, one of 30; "⌬" (U+232C) is not in bert-base-uncased, so that word is [UNK].
        File.WriteAllLines(file, [.. Enumerable.Repeat("good film", 8), "bad ⌬ film", string.Join(' ', Enumerable.Repeat("word", 30)), ""]);
        var (code, output, err) = Run("tokenize", "--stats", "--corpus", file, "--max-len", "16");
        Assert.Equal(0, code);
        Assert.Equal("", err);
        Assert.Contains("Texts: 10 (1 blank line skipped); 49 words, 49 word pieces: 1.00 pieces a word.", output);
        Assert.Contains("[UNK]: 1 piece, 2.04 % of all; most frequent unknown words: ⌬ (1).", output);
        Assert.Contains("Length with [CLS] and [SEP]: median 4, 90th percentile 5, 99th 32, longest 32.", output);
        Assert.Contains("1 of 10 (10.0 %) longer than --max-len 16", output);
        Assert.Contains("a --max-len of 32 keeps every one whole", output);

        // Pairs count both sides' words; a [MASK] written in a text is one word and one piece.
        (code, output, _) = RunWithInput("hello world\tfoo [MASK] bar\n", "tokenize", "--stats", "--pairs");
        Assert.Equal(0, code);
        Assert.Contains("Texts: 1 sentence pair; 5 words, 5 word pieces: 1.00 pieces a word.", output);

        // A corpus file's summary is read as it streams: a bad line is still refused before anything is printed, and a
        // file of blank lines has no text.
        File.WriteAllLines(file, ["one\ttwo", "three\tfour", "five six", "seven\teight"]);
        (code, output, err) = Run("tokenize", "--stats", "--pairs", "--corpus", file);
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Contains($"Line 3 of {file} has 1 tab-separated field, but with --pairs", err);
        File.WriteAllLines(file, ["", "  ", ""]);
        (code, output, err) = Run("tokenize", "--stats", "--corpus", file);
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Contains($"The corpus ({file}) has no text to tokenize", err);

        // An embedded set by name, read without any file.
        (code, output, _) = Run("tokenize", "--stats", "--corpus", "amazon");
        Assert.Equal(0, code);
        Assert.Matches(@"Texts: [\d,]+; [\d,]+ words", output);
    }

    [Fact]
    public void Vocab_AndModel_GiveTheirOwnTokenizer()
    {
        // A vocabulary of our own (cased, accents kept) changes the pieces; --model reads the one saved with a checkpoint.
        var cased = new WordPiece([.. WordPiece.SpecialTokens, "Café", "caf", "##é", "c"], new TokenizerSettings { LowerCase = false, StripAccents = false });
        string vocab = Path.Combine(_dir, "vocab");
        cased.Save(vocab);
        var (code, output, _) = Run("tokenize", "--vocab", vocab, "Café café");
        Assert.Equal(0, code);
        Assert.Equal("[CLS] Café caf ##é [SEP]", output.Trim());

        (code, output, _) = Run("tokenize", "--model", vocab, "--stats", "Café");
        Assert.Equal(0, code);
        Assert.Contains($"Tokenizer: {vocab} (9 entries; lower case: False, strip accents: False).", output);

        // A checkpoint's MaxLen bounds --max-len: more is refused, the default lowered to it.
        File.WriteAllText(Path.Combine(vocab, "config.json"), """{"model_type": "bert", "max_position_embeddings": 8}""");
        (code, _, string err) = Run("tokenize", "--model", vocab, "--max-len", "16", "Café");
        Assert.Equal(1, code);
        Assert.Contains($"--max-len 16 is over the MaxLen of the model in {vocab}, 8; give --max-len 8 or less.", err);
        (code, output, err) = Run("tokenize", "--model", vocab, "a b c d e f g h i j");
        Assert.Equal(0, code);
        Assert.Equal(8, output.Trim().Split(' ').Length);
        Assert.Contains("cut to 8 (--max-len)", err);
    }

    [Theory]
    [InlineData(new[] { "tokenize", "text", "--corpus", "amazon" }, "Give the texts one way")]
    [InlineData(new[] { "tokenize", "   " }, "The text to tokenize is empty")]
    [InlineData(new[] { "tokenize", "--stats", "--output", "ids", "text" }, "--stats prints a summary instead of each text")]
    [InlineData(new[] { "tokenize", "--model", "a", "--vocab", "b", "text" }, "Give the tokenizer once")]
    [InlineData(new[] { "tokenize", "--pairs", "no tab here" }, "The text has 1 tab-separated field, but with --pairs a text is 'first text<TAB>second text'; put a tab between the two texts, or drop --pairs.")]
    [InlineData(new[] { "tokenize", "--pairs", "a\tb\tc" }, "The text has 3 tab-separated fields")]
    [InlineData(new[] { "tokenize", "--pairs", "good\t " }, "The text has an empty second text; with --pairs both sides of the tab need text.")]
    [InlineData(new[] { "tokenize", "--max-len", "2", "text" }, "--max-len 2 leaves no room for text")]
    [InlineData(new[] { "tokenize", "--pairs", "--max-len", "4", "a\tb" }, "--max-len 4 leaves no room for both texts")]
    [InlineData(new[] { "tokenize", "--corpus", "/nonexistent/corpus.txt" }, "Corpus file '/nonexistent/corpus.txt' does not exist")]
    [InlineData(new[] { "tokenize", "--vocab", "/nonexistent/vocab", "text" }, "/nonexistent/vocab")]
    [InlineData(new[] { "tokenize", "--output", "xml", "text" }, "--output")]
    public void Mistakes_AreOneSentence_AndExitNonZero(string[] args, string message)
    {
        var (code, output, err) = Run(args);
        Assert.NotEqual(0, code);
        Assert.Equal("", output);
        Assert.Contains(message, err);
        Assert.Single(err.Trim().Split('\n'));
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void EmptyInput_IsRefused()
    {
        var (code, _, err) = RunWithInput("\n\n", "tokenize");
        Assert.Equal(1, code);
        Assert.Contains("No text to tokenize", err);
    }

    /// <summary>The command in its own process runs with InvariantGlobalization (no ICU), as every `bert` does: accents
    /// must be stripped there too (they were not before the normalizer became ours: "café" was [UNK]).</summary>
    [Fact]
    public void InItsOwnProcess_WithoutIcu_StripsAccentsAsTheTestsDo()
    {
        const string text = "Café naïve BRONTË 한 cafe\u0301";
        var (code, output, err) = Bert.Tests.Support.BertProcess.Run(["tokenize", text]);
        Assert.True(code == 0, err);
        var tok = WordPiece.BertBaseUncased();
        Assert.Equal(string.Join(' ', tok.EncodePair(text, null, 128).Ids.Select(tok.TokenOf)), output.Trim());
        Assert.Equal("[CLS] cafe naive bro ##nte ᄒ ##ᅡ ##ᆫ cafe [SEP]", output.Trim());
    }
}
