using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Bert.Cli;
using Bert.Data;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Data;

/// <summary>Corpora as they are usually kept: gzipped, and as JSON lines (a document in each record's "text", as Hugging
/// Face datasets write them).</summary>
public sealed class CorpusFormatsTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("bert-formats-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static byte[] Gzip(byte[] bytes)
    {
        var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(bytes);
        return ms.ToArray();
    }

    static readonly string[] Pieces = ["a", "é", "😀", " ", "\r", "word", "\t", "ção", "\n", "\n", "\r\n"];

    /// <summary>A gzipped file reads as the file it holds, whatever its name, through a buffer of any size.</summary>
    [Property(MaxTest = 60)]
    public Property ReadLines_OfAGzippedFile_AreThoseOfTheText(NonEmptyArray<byte> shape, bool bom, byte buffer)
    {
        var text = string.Concat(shape.Get.Select(b => Pieces[b % Pieces.Length])) + "end";
        var bytes = (bom ? new byte[] { 0xEF, 0xBB, 0xBF } : []).Concat(Encoding.UTF8.GetBytes(text)).ToArray();
        string plain = Write("p.txt", bytes);
        string gz = Write("g.txt", Gzip(bytes));   // no .gz in its name: the magic bytes tell
        var expected = TextSource.ReadLines(plain).ToList();
        return (expected.SequenceEqual(TextSource.ReadLines(gz)) && expected.SequenceEqual(TextSource.ReadLines(gz, bufferBytes: 4 + buffer % 13)))
            .Label($"{expected.Count} lines");
    }

    [Fact]
    public void ReadLines_RefusesADamagedGzipFile_InOneSentence()
    {
        var whole = Gzip(Encoding.UTF8.GetBytes(string.Join("\n", Enumerable.Range(0, 5000).Select(i => $"line {i} of a corpus that was cut short"))));
        string corrupt = Write("c.txt.gz", [.. whole[..20], .. Enumerable.Repeat((byte)0xFF, 40), .. whole[60..]]);
        var e = Assert.Throws<DataException>(() => TextSource.ReadLines(corrupt).Count());
        Assert.StartsWith($"Data file '{corrupt}' is not a whole gzip file (", e.Message);
        Assert.EndsWith("); download or compress it again.", e.Message);

        // Cut short (an interrupted download), at any length: .NET would end it early without a word; its trailer tells.
        foreach (int keep in new[] { whole.Length / 2, whole.Length - 9, whole.Length - 1 })
        {
            string cut = Write($"t{keep}.txt.gz", whole[..keep]);
            e = Assert.Throws<DataException>(() => TextSource.ReadLines(cut).Count());
            Assert.StartsWith($"Data file '{cut}' does not end where its gzip trailer says (", e.Message);
            Assert.EndsWith($"read): a download cut short (fetch it again), or several gzip files joined into one (`zcat t{keep}.txt.gz | gzip > whole.gz` makes it one).", e.Message);
        }
        string stub = Write("s.txt.gz", whole[..12]);
        e = Assert.Throws<DataException>(() => TextSource.ReadLines(stub).Count());
        Assert.StartsWith($"Data file '{stub}' is not a whole gzip file (", e.Message);
        string joined = Write("j.txt.gz", [.. Gzip("first\n"u8.ToArray()), .. Gzip("second\n"u8.ToArray())]);
        e = Assert.Throws<DataException>(() => TextSource.ReadLines(joined).Count());
        Assert.Equal($"Data file '{joined}' does not end where its gzip trailer says (7 bytes of text by the trailer, 13 read): a download cut short (fetch it again), or several gzip files joined into one (`zcat j.txt.gz | gzip > whole.gz` makes it one).", e.Message);

        string empty = Write("e.txt.gz", Gzip([]));
        e = Assert.Throws<DataException>(() => TextSource.ReadLines(empty).Count());
        Assert.Contains("is empty", e.Message);
        string latin1 = Write("l.txt.gz", Gzip([0x63, 0x61, 0x66, 0xE9, 0x0A]));
        e = Assert.Throws<DataException>(() => TextSource.ReadLines(latin1).Count());
        Assert.Contains("is not valid UTF-8 (first bad byte on line 1)", e.Message);
    }

    /// <summary>From a pipe (no seeking, as `--corpus <(curl …)` gives): gzip is still known by its first bytes, and the
    /// trailer checked from the bytes as they pass.</summary>
    [Fact]
    public void ReadLines_OfAGzippedPipe_AreThoseOfTheText()
    {
        var text = Encoding.UTF8.GetBytes(string.Join("\n", Enumerable.Range(0, 20_000).Select(i => $"line {i}: café ção")) + "\n");
        foreach (var (bytes, fails) in new[] { (Gzip(text), false), (Gzip(text)[..^5], true), (text, false) })
        {
            string fifo = Path.Combine(_dir, "fifo" + Guid.NewGuid().ToString("N")[..6]);
            using (var mk = System.Diagnostics.Process.Start("mkfifo", fifo)) mk.WaitForExit();
            var writer = Task.Run(() => { using var w = new FileStream(fifo, FileMode.Open, FileAccess.Write); w.Write(bytes); });
            try
            {
                var lines = TextSource.ReadLines(fifo).Select(l => l.Line).ToList();
                Assert.False(fails, "a cut gzip stream read whole");
                Assert.Equal(20_000, lines.Count);
                Assert.Equal("line 19999: café ção", lines[^1]);
            }
            catch (DataException e) when (fails)
            {
                Assert.Contains("does not end where its gzip trailer says", e.Message);
            }
            writer.Wait();
        }
    }

    [Fact]
    public void JsonTexts_TakeEachRecordsText_AndNameABadLine()
    {
        string ok = Write("ok.jsonl", Encoding.UTF8.GetBytes(
            "{\"id\": 1, \"text\": \"First document.\\n\\nIts second paragraph.\", \"url\": \"x\"}\n\n" +
            "  {\"text\": \"Caf\\u00e9 \\\"quoted\\\" and a tab\\there.\"}\r\n" +
            "{\"meta\": {\"text\": 5}, \"text\": \"\"}\n" +
            "{\"text\": null}\n"));
        Assert.True(TextSource.IsJsonLines(ok));
        Assert.Equal([(1, "First document.\n\nIts second paragraph."), (3, "Café \"quoted\" and a tab\there."), (4, ""), (5, "")], TextSource.JsonTexts(ok).ToList());
        Assert.Equal(TextSource.JsonTexts(ok), TextSource.JsonTexts(Write("ok.json.gz", Gzip(File.ReadAllBytes(ok)))));

        void Refused(string name, string content, string message)
        {
            string path = Write(name, Encoding.UTF8.GetBytes(content));
            var e = Assert.Throws<DataException>(() => TextSource.JsonTexts(path).Count());
            Assert.Equal(message.Replace("PATH", path), e.Message);
        }
        const string Form = "each line of a JSON-lines corpus is one object with its document in \"text\" (as Hugging Face datasets' to_json writes)";
        Refused("a.jsonl", "{\"text\": \"fine\"}\n{\"text\": 5}\n", $"Line 2 of 'PATH' has no \"text\" string; {Form}.");
        Refused("b.jsonl", "{\"text\": \"fine\"}\n\n{\"body\": \"no text\"}\n", $"Line 3 of 'PATH' has no \"text\" string; {Form}.");
        Refused("c.jsonl", "\"just a string\"\n", $"Line 1 of 'PATH' has no \"text\" string; {Form}.");
        Refused("d.json", "[\n  {\"text\": \"an array\"}\n]\n", $"'PATH' is one JSON array, not JSON lines; {Form}: `jq -c '.[]' d.json` writes it so.");
        Refused("d1.json", "[{\"text\": \"an array\"}, {\"text\": \"on one line\"}]\n", $"'PATH' is one JSON array, not JSON lines; {Form}: `jq -c '.[]' d1.json` writes it so.");
        Refused("f.json", "{\n  \"text\": \"pretty-printed\"\n}\n", $"Line 1 of 'PATH' opens a JSON object that goes on over several lines; {Form}: `jq -c . f.json` writes it so.");
        string e = Assert.Throws<DataException>(() => TextSource.JsonTexts(Write("e.jsonl", Encoding.UTF8.GetBytes("{\"text\": \"fine\"}\n{\"text\": \"cut"))).Count()).Message;
        Assert.StartsWith($"Line 2 of '{Path.Combine(_dir, "e.jsonl")}' is not JSON (", e);
        Assert.EndsWith($"); {Form}.", e);
    }

    [Fact]
    public void RecordDocuments_MakeEachRecordOneDocument()
    {
        var docs = Pretraining.RecordDocuments([
            "The first record. It has two sentences.\n\nAnd a second paragraph, joined to it.",
            "   \n\n ",
            "One more.",
        ]).ToList();
        Assert.Equal(2, docs.Count);
        Assert.Equal(["The first record.", "It has two sentences.", "And a second paragraph, joined to it."], docs[0]);
        Assert.Equal(["One more."], docs[1]);
    }

    /// <summary>The same documents as JSON lines, gzipped, or text make the same corpus (documents and sentences), alone
    /// and as shards of one folder.</summary>
    [Fact]
    public void ACorpus_ReadsAlikeAsTextJsonLinesAndGzip()
    {
        var documents = DataSets.Corpus(["machado"]).Documents.Take(60).Select(d => string.Join("\n", d)).ToList();
        string text = Write("corpus.txt", Encoding.UTF8.GetBytes(string.Join("\n\n", documents) + "\n"));
        string json = Write("corpus.jsonl", Encoding.UTF8.GetBytes(string.Join("\n", documents.Select(d => JsonSerializer.Serialize(new { text = d, source = "machado" }))) + "\n"));
        string jsonGz = Write("corpus.jsonl.gz", Gzip(File.ReadAllBytes(json)));
        string textGz = Write("corpus.txt.gz", Gzip(File.ReadAllBytes(text)));
        List<IReadOnlyList<string>> Docs(params string[] specs) => DataSets.CorpusDocuments(specs).Documents.ToList();
        var expected = Docs(text);
        Assert.Equal(60, expected.Count);
        foreach (var other in new[] { json, jsonGz, textGz })
            Assert.Equal(expected, Docs(other));

        string shards = Path.Combine(_dir, "shards");
        Directory.CreateDirectory(shards);
        File.WriteAllText(Path.Combine(shards, "a.txt"), string.Join("\n\n", documents.Take(20)));
        File.WriteAllBytes(Path.Combine(shards, "b.jsonl.gz"), Gzip(Encoding.UTF8.GetBytes(string.Join("\n", documents.Skip(20).Take(20).Select(d => JsonSerializer.Serialize(new { text = d }))))));
        File.WriteAllBytes(Path.Combine(shards, "c.txt.gz"), Gzip(Encoding.UTF8.GetBytes(string.Join("\n\n", documents.Skip(40)))));
        File.WriteAllText(Path.Combine(shards, "dataset_info.json"), "{\"description\": \"metadata, not a shard\"}");
        File.WriteAllText(Path.Combine(shards, "part-0.xml.gz"), "not a corpus file");
        Assert.Equal(["a.txt", "b.jsonl.gz", "c.txt.gz"], DataSets.ExpandFolders([shards]).Select(Path.GetFileName));
        var (folderDocs, how, _) = DataSets.CorpusDocuments([shards]);
        Assert.Equal(expected, folderDocs.ToList());
        Assert.Equal($"{shards}/ (3 corpus files)", how);

        string upper = Path.Combine(_dir, "upper");
        Directory.CreateDirectory(upper);
        File.Copy(textGz, Path.Combine(upper, "PART-0.TXT.GZ"));
        Assert.Equal(expected, DataSets.CorpusDocuments([upper]).Documents.ToList());

        // A vocabulary learns from a JSON-lines file's texts, not its JSON.
        var lines = DataSets.VocabLines([jsonGz]).ToList();
        Assert.Equal(documents, lines);
    }
}
