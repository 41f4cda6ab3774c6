using System.Text;
using Bert.Cli;
using Bert.Tests.Cuda;
using Xunit;

namespace Bert.Tests.Cli;

[CollectionDefinition("Console", DisableParallelization = true)]
public class ConsoleCollection { }

/// <summary>The `bert` command end to end with small budgets, in process, on temporary files.</summary>
[Collection("Console")]
public partial class CliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("bert-cli-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (o, e) = (new StringWriter(), new StringWriter());
        Console.SetOut(o); Console.SetError(e);
        try { return (Program.Main(args), o.ToString(), e.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
    }

    string Corpus()
    {
        var path = Path.Combine(_dir, "corpus.txt");
        var sb = new StringBuilder();
        var rng = new Random(1);
        string[] words = ["the", "movie", "was", "good", "bad", "great", "phone", "battery", "film", "actor", "story", "really", "not", "very", "and"];
        for (int d = 0; d < 30; d++)
        {
            for (int s = 0; s < 6; s++) sb.Append(string.Join(' ', Enumerable.Range(0, 8).Select(_ => words[rng.Next(words.Length)]))).Append(". ");
            sb.Append("\n\n");
        }
        File.WriteAllText(path, sb.ToString());
        return path;
    }

    string Labeled(string name = "set.tsv")
    {
        var path = Path.Combine(_dir, name);
        var lines = Enumerable.Range(0, 40).Select(i => i % 2 == 0 ? $"a really great film number {i}\t1" : $"a very bad phone number {i}\t0");
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    [Fact]
    public void Info_ShowsParametersFlopsAndMemory()
    {
        var (code, output, _) = Run("info", "mini");
        Assert.Equal(0, code);
        Assert.Contains("BertMiniPreTraining", output);
        Assert.Contains("FLOPs per token", output);
        Assert.Contains("MiB", output);
        Assert.Matches(@"training step, CPU [\d.]+ GiB at B=32, T=128", System.Text.RegularExpressions.Regex.Replace(output.Replace("│", " "), @"\s+", " "));
    }

    /// <summary>info --gpu: a training step on a named card by the experiments' estimate, with the largest batch that fits
    /// (the same figure BERT0219 gives for docs/diagnostics.md's BERT-Large on an L4).</summary>
    [Fact]
    public void Info_EstimatesAStepOnANamedGpu()
    {
        // The table wraps long cells: read it as one line of text.
        static string Flat(string table) => System.Text.RegularExpressions.Regex.Replace(table.Replace("│", " "), @"\s+", " ");
        var (code, output, _) = Run("info", "large", "--batch", "256", "--seq", "512", "--gpu", "l4", "--precision", "tf32");
        Assert.Equal(0, code);
        Assert.Contains("training step, L4 (tf32) 343.12 GiB of 21.49 GiB at B=256, T=512: does not fit; at most B=12 fits", Flat(output));
        (code, output, _) = Run("info", "mini", "--head", "classifier", "--batch", "32", "--seq", "100", "--gpu", "h100", "--precision", "bf16");
        Assert.Equal(0, code);
        Assert.Matches(@"training step, H100 \(bf16\) [\d.]+ GiB of 78\.65 GiB at B=32, T=104: fits", Flat(output));   // fine-tuning on a GPU pads to 8
        // In bf16 also with the flash attention: BERT-Large at T=512 on an H100 fits a larger batch without the T×T
        // probabilities and their gradient (49 → 68).
        (code, output, _) = Run("info", "large", "--batch", "64", "--seq", "512", "--gpu", "h100", "--precision", "bf16");
        Assert.Equal(0, code);
        var flat = Flat(output);
        int Most(string rowName) => int.Parse(System.Text.RegularExpressions.Regex.Match(flat, System.Text.RegularExpressions.Regex.Escape(rowName) + @" [\d.]+ GiB of [\d.]+ GiB at B=64, T=512: (?:does not fit|fits); at most B=(\d+) fits").Groups[1].Value);
        int plain = Most("training step, H100 (bf16)"), flash = Most("training step, H100 (bf16, flash)");
        Assert.True(flash > plain, $"with the flash attention at most B={flash} fits, without B={plain}:\n{flat}");
        (code, _, var err) = Run("info", "mini", "--gpu", "v100");
        Assert.NotEqual(0, code);
        Assert.Contains("v100", err);
    }

    /// <summary>A corpus kept as shards: a folder names its *.txt files, in order, and nothing else in it; pre-training on
    /// it reads the same documents as the files named one by one (the same corpus line, the same loss).</summary>
    [Fact]
    public void Pretrain_AndVocab_TakeAFolderOfTextFiles()
    {
        string shards = Path.Combine(_dir, "shards");
        Directory.CreateDirectory(shards);
        var text = File.ReadAllText(Corpus()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        File.WriteAllText(Path.Combine(shards, "b.txt"), string.Join("\n\n", text.Skip(15)));
        File.WriteAllText(Path.Combine(shards, "a.txt"), string.Join("\n\n", text.Take(15)));
        File.WriteAllText(Path.Combine(shards, "notes.md"), "\u00ff not a shard \u00ff");
        Directory.CreateDirectory(Path.Combine(shards, "sub"));
        File.WriteAllText(Path.Combine(shards, "sub", "c.txt"), "Never read. Not at all.");
        string[] Args(string outDir, params string[] corpus) => ["pretrain", "--corpus", .. corpus, "--size", "nano", "--steps", "2", "--batch", "8", "--max-len", "32", "--out", outDir];
        var folder = Run(Args(Path.Combine(_dir, "p1"), shards));
        Assert.True(folder.Code == 0, folder.Out + folder.Err);
        Assert.Contains($"corpus: {shards}/ (2 .txt files)", folder.Out);
        var files = Run(Args(Path.Combine(_dir, "p2"), Path.Combine(shards, "a.txt"), Path.Combine(shards, "b.txt")));
        Assert.True(files.Code == 0, files.Out + files.Err);
        string Line(string output, string start) => output.Split('\n').First(l => l.StartsWith(start, StringComparison.Ordinal));
        Assert.Equal(Line(files.Out, "Corpus:")[..Line(files.Out, "Corpus:").IndexOf(" pieces", StringComparison.Ordinal)],
            Line(folder.Out, "Corpus:")[..Line(folder.Out, "Corpus:").IndexOf(" pieces", StringComparison.Ordinal)]);
        Assert.Equal(Line(files.Out, "  step 2/2")[..30], Line(folder.Out, "  step 2/2")[..30]);

        var vocab = Run("vocab", "--corpus", shards, "--size", "60", "--min-frequency", "1", "--out", Path.Combine(_dir, "v"));
        Assert.True(vocab.Code == 0, vocab.Out + vocab.Err);
        Assert.Contains("learnt from 58 lines", vocab.Out);   // 15 and 15 documents, a blank line between each two

        // A shard of blank lines and a hidden file are passed over; an empty shard is refused before anything is read.
        File.WriteAllText(Path.Combine(shards, "c.txt"), "\n  \n");
        File.WriteAllBytes(Path.Combine(shards, "._a.txt"), [0x00, 0x05, 0x16, 0x07, 0xC3]);
        var tolerant = Run(Args(Path.Combine(_dir, "p4"), shards));
        Assert.True(tolerant.Code == 0, tolerant.Out + tolerant.Err);
        Assert.Contains($"corpus: {shards}/ (3 .txt files)", tolerant.Out);
        File.WriteAllText(Path.Combine(shards, "d.txt"), "");
        var refused = Run(Args(Path.Combine(_dir, "p5"), shards));
        Assert.NotEqual(0, refused.Code);
        Assert.Contains($"Corpus file '{Path.Combine(shards, "d.txt")}' is empty; delete it or fill it", refused.Err);

        string empty = Path.Combine(_dir, "no-shards");
        Directory.CreateDirectory(empty);
        refused = Run(Args(Path.Combine(_dir, "p3"), empty));
        Assert.NotEqual(0, refused.Code);
        Assert.Contains($"Corpus folder '{empty}' holds no corpus files; put the corpus there as text (*.txt) or JSON lines (*.jsonl), either maybe gzipped (.gz), or name the files themselves.", refused.Err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "p3")) && Directory.EnumerateFileSystemEntries(Path.Combine(_dir, "p3")).Any());
    }

    /// <summary>A name wins over a folder of that name in the working directory (after `finetune --data imdb --out imdb`,
    /// say): the embedded set is read, and the run's data identity stays the name, so it can be resumed.</summary>
    [Fact]
    public void ACorpusName_WinsOverAFolderOfThatName()
    {
        string folder = Path.Combine(Environment.CurrentDirectory, "pt-tweets");
        bool made = !Directory.Exists(folder);
        Directory.CreateDirectory(folder);
        try
        {
            File.WriteAllText(Path.Combine(folder, "vocab.txt"), "[PAD]\n[UNK]\n");
            Assert.Equal(["pt-tweets"], DataSets.ExpandFolders(["pt-tweets"]));
            Assert.Equal("pt-tweets", Bert.Training.TrainLoop.DataIdentity(["pt-tweets"], DataSets.IsNamedCorpus));
            Assert.Equal(DataSets.VocabLines(["pt-tweets"]).Take(5), DataSets.Load("pt-tweets").Train.Examples.Take(5).Select(e => e.Text));
            Assert.Equal(Path.GetFullPath(_dir), Bert.Training.TrainLoop.DataIdentity([_dir + "/"], DataSets.IsNamedCorpus));
        }
        finally { if (made) Directory.Delete(folder, recursive: true); }
    }

    [Fact]
    public void PretrainThenFinetuneThenEvalAndPredict()
    {
        var pre = Path.Combine(_dir, "pre");
        var r = Run("pretrain", "--corpus", Corpus(), "--size", "nano", "--steps", "4", "--batch", "8", "--max-len", "32", "--out", pre);
        Assert.True(r.Code == 0, r.Out + r.Err);
        foreach (var f in new[] { "model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json", "optimizer.bin", "trainer_state.json" })
            Assert.True(File.Exists(Path.Combine(pre, f)), f + " missing");

        var ft = Path.Combine(_dir, "ft");
        r = Run("finetune", "--data", Labeled(), "--from", pre, "--reinit", "qk,pooler", "--size", "nano", "--epochs", "2", "--batch", "8", "--max-len", "16", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("Initialized", r.Out);
        Assert.Contains("the classifier head and qk,pooler start fresh", r.Out);
        Assert.Contains("Best dev accuracy", r.Out);
        // Evaluated after every epoch (the best epoch's weights go to best/), each evaluation on its own line.
        Assert.Matches(@"step \d+ \(epoch 1\): dev accuracy \d+\.\d\d %, loss \d\.\d{4}, best so far", r.Out);
        Assert.Matches(@"step \d+ \(epoch 2\): dev accuracy", r.Out);
        using (var saved = Bert.Runtime.Checkpoints.SafeTensorsReader.Open(Path.Combine(ft, "model.safetensors")))
        {
            Assert.Equal(pre, saved.Metadata["from"]);         // the checkpoint says how it started
            Assert.Equal("qk,pooler", saved.Metadata["reinit"]);
        }

        r = Run("eval", "--model", Path.Combine(ft, "best"), "--data", Labeled());
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("accuracy", r.Out);

        r = Run("predict", "--model", Path.Combine(ft, "best"), "a really great film");
        Assert.True(r.Code == 0, r.Out + r.Err);
        var line = r.Out.Trim().Split('\n').Last();
        Assert.Matches(@"^[0-2]\t0\.\d{3}\ta really great film$", line);
    }

    /// <summary>Rewrites one of our checkpoint folders as transformers writes it: the tensors of <paramref name="keep"/>
    /// only, no metadata, a config.json without our bert_model field (and with <paramref name="config"/>'s fields), no
    /// tokenizer_config.json (as the Hub's older BERT repositories).</summary>
    string AsHuggingFace(string ours, string name, string modelName, Func<string, bool> keep, string config)
    {
        var m = Bert.Models.Catalog.ByName(modelName).Create();
        Bert.Runtime.Checkpoints.Checkpoint.Load(ours, m);
        var dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        var w = new Bert.Runtime.Checkpoints.SafeTensorsWriter();
        foreach (var p in m.Info.Parameters.Where(p => keep(p.HfName))) w.Add<float>(p.HfName, p.Shape, m.Parameter(p.Name));
        w.Save(Path.Combine(dir, "model.safetensors"));
        File.Copy(Path.Combine(ours, "vocab.txt"), Path.Combine(dir, "vocab.txt"));
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        return dir;
    }

    const string NanoSizes = "\"model_type\": \"bert\", \"vocab_size\": 30522, \"hidden_size\": 32, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, " +
        "\"intermediate_size\": 128, \"max_position_embeddings\": 64, \"type_vocab_size\": 2, \"hidden_act\": \"gelu\"";

    [Fact]
    public void HuggingFaceFolders_FinetuneFromAMaskedLm_ThenEvalAndPredictAClassifier()
    {
        var pre = Path.Combine(_dir, "pre");
        var r = Run("pretrain", "--corpus", Corpus(), "--size", "nano", "--steps", "2", "--batch", "8", "--max-len", "32", "--out", pre);
        Assert.True(r.Code == 0, r.Out + r.Err);
        // BertForMaskedLM: no pooler, no next-sentence head.
        var hfMlm = AsHuggingFace(pre, "hf-mlm", "BertNanoPreTraining", n => !n.Contains("pooler") && !n.Contains("seq_relationship"),
            "{\"architectures\": [\"BertForMaskedLM\"], " + NanoSizes + "}");

        // No --size: the checkpoint's (nano) is taken; the pooler it lacks starts fresh rather than copied from nowhere.
        var ft = Path.Combine(_dir, "ft");
        r = Run("finetune", "--data", Labeled(), "--from", hfMlm, "--epochs", "2", "--batch", "8", "--max-len", "16", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("is a Hugging Face BertForMaskedLM checkpoint; loaded as BertNanoPreTraining (4 tensors it lacks start fresh", r.Err);
        Assert.Contains("tokenizing as transformers' BertTokenizer does by default (lower-cased, accents stripped)", r.Err);
        var info = Bert.Models.BertNanoClassifier.Info;
        int encoder = info.Parameters.Count(p => p.HfName.StartsWith("bert.", StringComparison.Ordinal) && !p.HfName.Contains("pooler"));
        Assert.Contains($"Initialized {encoder} of {info.Parameters.Count} tensors from {hfMlm}", r.Out);
        Assert.Contains("BertNanoClassifier", r.Out);

        // Our classifier as transformers' BertForSequenceClassification (3 labels, BertNanoClassifier's classes).
        var ours = Path.Combine(ft, "best");
        var hfCls = AsHuggingFace(ours, "hf-cls", "BertNanoClassifier", _ => true,
            "{\"architectures\": [\"BertForSequenceClassification\"], " + NanoSizes + ", \"id2label\": {\"0\": \"neg\", \"1\": \"pos\", \"2\": \"other\"}}");
        var mine = Run("predict", "--model", ours, "a really great film");
        var theirs = Run("predict", "--model", hfCls, "a really great film");
        Assert.True(theirs.Code == 0, theirs.Out + theirs.Err);
        Assert.Contains("loaded as BertNanoClassifier.", theirs.Err);
        // The same prediction, named by the folder's id2label.
        var mineLine = mine.Out.Trim().Split('\n').Last().Split('\t');
        mineLine[0] = new[] { "neg", "pos", "other" }[int.Parse(mineLine[0])];
        Assert.Equal(string.Join('\t', mineLine), theirs.Out.Trim().Split('\n').Last());

        // The same folder with its weights as PyTorch's pytorch_model.bin, and as safetensors shards behind an index.
        var m = Bert.Models.Catalog.ByName("BertNanoClassifier").Create();
        Bert.Runtime.Checkpoints.Checkpoint.Load(hfCls, m);
        var tensors = m.Info.Parameters.Select(p => (p.HfName, p.Shape.Select(d => (long)d).ToArray(), m.Parameter(p.Name).ToArray())).ToList();
        var torch = Path.Combine(_dir, "hf-cls-torch");
        var sharded = Path.Combine(_dir, "hf-cls-sharded");
        var map = new System.Text.Json.Nodes.JsonObject();
        foreach (var dir in new[] { torch, sharded })
        {
            Directory.CreateDirectory(dir);
            foreach (var f in new[] { "vocab.txt", "config.json" }) File.Copy(Path.Combine(hfCls, f), Path.Combine(dir, f));
        }
        Bert.Tests.Support.TorchZip.Write(Path.Combine(torch, "pytorch_model.bin"), tensors);
        for (int s = 0; s < 2; s++)
        {
            var w = new Bert.Runtime.Checkpoints.SafeTensorsWriter();
            foreach (var (name, shape, values) in tensors.Where((_, i) => i % 2 == s))
            {
                w.Add<float>(name, shape, values);
                map[name] = $"model-0000{s + 1}-of-00002.safetensors";
            }
            w.Save(Path.Combine(sharded, $"model-0000{s + 1}-of-00002.safetensors"));
        }
        File.WriteAllText(Path.Combine(sharded, "model.safetensors.index.json"), new System.Text.Json.Nodes.JsonObject { ["weight_map"] = map }.ToJsonString());
        // And with transformers' tokenizer.json in place of vocab.txt (a fast tokenizer saved alone).
        var fast = Path.Combine(_dir, "hf-cls-fast");
        Directory.CreateDirectory(fast);
        foreach (var f in new[] { "model.safetensors", "config.json" }) File.Copy(Path.Combine(hfCls, f), Path.Combine(fast, f));
        var vocab = File.ReadAllLines(Path.Combine(hfCls, "vocab.txt"));
        var specials = new System.Text.Json.Nodes.JsonArray();
        foreach (var t in new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" })
            specials.Add(new System.Text.Json.Nodes.JsonObject { ["id"] = Array.IndexOf(vocab, t), ["content"] = t, ["special"] = true });
        var wordPieces = new System.Text.Json.Nodes.JsonObject();
        for (int i = 0; i < vocab.Length; i++) wordPieces[vocab[i]] = i;
        var tokenizerJson = new System.Text.Json.Nodes.JsonObject
        {
            ["version"] = "1.0", ["added_tokens"] = specials,
            ["normalizer"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "BertNormalizer", ["clean_text"] = true, ["handle_chinese_chars"] = true, ["strip_accents"] = null, ["lowercase"] = true },
            ["pre_tokenizer"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "BertPreTokenizer" },
            ["model"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "WordPiece", ["unk_token"] = "[UNK]", ["continuing_subword_prefix"] = "##", ["max_input_chars_per_word"] = 100, ["vocab"] = wordPieces },
        };
        File.WriteAllText(Path.Combine(fast, "tokenizer.json"), tokenizerJson.ToJsonString());
        foreach (var dir in new[] { torch, sharded, fast })
        {
            var other = Run("predict", "--model", dir, "a really great film");
            Assert.True(other.Code == 0, other.Out + other.Err);
            Assert.Equal(theirs.Out, other.Out);
        }
        Assert.Contains($"has no vocab.txt; tokenizing with the WordPiece vocabulary of its tokenizer.json ({vocab.Length} tokens, lower case: True, strip accents: True)", Run("predict", "--model", fast, "x").Err);
        tokenizerJson["model"]!["type"] = "BPE";
        File.WriteAllText(Path.Combine(fast, "tokenizer.json"), tokenizerJson.ToJsonString());
        var bpe = Run("predict", "--model", fast, "a really great film");
        Assert.Equal(1, bpe.Code);
        Assert.Contains("describes a BPE tokenizer, not BERT's WordPiece; use the tokenizer the checkpoint was trained with", bpe.Err);
        tokenizerJson["model"]!["type"] = "WordPiece";
        // What transformers would do otherwise than this tokenizer is refused, one sentence each: no normalizer, a
        // normalizer step turned off, another word split, a token added beyond BERT's five (split out of the text there).
        void Refused(Action<System.Text.Json.Nodes.JsonObject> change, string message)
        {
            var copy = System.Text.Json.Nodes.JsonNode.Parse(tokenizerJson.ToJsonString())!.AsObject();
            change(copy);
            File.WriteAllText(Path.Combine(fast, "tokenizer.json"), copy.ToJsonString());
            var x = Run("predict", "--model", fast, "a really great film");
            Assert.Equal(1, x.Code);
            Assert.Contains(message, x.Err);
            Assert.Single(x.Err.Trim().Split('\n'), l => l.StartsWith("error: "));
        }
        Refused(j => j["normalizer"] = null, "normalizes text with nothing, not BERT's BertNormalizer");
        Refused(j => j["normalizer"]!["handle_chinese_chars"] = false, "turns BertNormalizer's handle_chinese_chars off");
        Refused(j => j["normalizer"]!["clean_text"] = false, "turns BertNormalizer's clean_text off");
        Refused(j => j["pre_tokenizer"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "Whitespace" }, "splits words with Whitespace, not BERT's BertPreTokenizer");
        Refused(j => j["added_tokens"]!.AsArray().Add(new System.Text.Json.Nodes.JsonObject { ["id"] = vocab.Length, ["content"] = "[E1]", ["special"] = true }),
            "adds the token '[E1]', which transformers splits out of the text and this tokenizer does not");

        // eval scores a file whole (40 examples), not the 20 % dev split fine-tuning held out.
        r = Run("eval", "--model", hfCls, "--data", Labeled());
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("all 40", r.Out);   // the title (wrapped by the table) says where the examples came from
        Assert.Matches(@"│ 40 +│", r.Out);
    }

    [Fact]
    public void HuggingFaceFolder_OfAnUndeclaredSize_IsOneSentenceNamingTheSizes()
    {
        var pre = PretrainedNano("pre");
        var hf = AsHuggingFace(pre, "hf", "BertNanoPreTraining", _ => true,
            "{\"architectures\": [\"BertForPreTraining\"], " + NanoSizes.Replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3") + "}");
        var ft = Path.Combine(_dir, "ft");
        var r = Run("finetune", "--data", Labeled(), "--from", hf, "--epochs", "1", "--out", ft);
        Assert.Equal(1, r.Code);
        var lines = r.Err.Trim().Split('\n');
        Assert.Contains("describes a bert model (vocab_size 30522, hidden_size 32, num_hidden_layers 3, num_attention_heads 4", lines.Last());
        Assert.Contains("that no declared model matches (the nearest, BertNanoPreTraining, has num_hidden_layers 2); declare a variant with those sizes in Bert.Models/Models", lines.Last());
        Assert.False(Directory.Exists(ft));
    }

    /// <summary>finetune --accumulate: K micro-batches per optimizer step, so an epoch is a K-th as many steps, the dev set
    /// is still scored once an epoch, and the run records its step count; a count below 1 is one sentence.</summary>
    [Fact]
    public void Finetune_Accumulates_MicroBatchesIntoEachStep()
    {
        var ft = Path.Combine(_dir, "acc");
        // 40 texts: 32 train (4 micro-batches of 8), 8 dev; 2 micro-batches a step → 2 steps an epoch, 4 in 2 epochs.
        var r = Run("finetune", "--data", Labeled(), "--size", "nano", "--epochs", "2", "--batch", "8", "--accumulate", "2", "--max-len", "16", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        var state = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(ft, "trainer_state.json")))!;
        Assert.Equal(4, state["TotalSteps"]!.GetValue<long>());
        Assert.Equal(4, state["Step"]!.GetValue<long>());
        Assert.Contains("step 2 (epoch 1): dev accuracy", r.Out);
        Assert.Contains("step 4 (epoch 2): dev accuracy", r.Out);
        Assert.DoesNotContain("(epoch 3)", r.Out);

        r = Run("finetune", "--data", Labeled(), "--size", "nano", "--accumulate", "0", "--out", Path.Combine(_dir, "acc0"));
        Assert.NotEqual(0, r.Code);
        Assert.Contains("--accumulate 0 is not a count; give 1 or more.", r.Err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "acc0")));
    }

    /// <summary>Sentence pairs with named classes: the names go to config.json's id2label, predict prints them (a tab in
    /// the text makes a pair), and eval matches a file's names to the model's (a file of one class is not class 0).</summary>
    [Fact]
    public void Finetune_OnNamedSentencePairs_SavesTheNames_AndPredictAndEvalUseThem()
    {
        string Pairs(string name, int n, bool onlyPositive) => WriteLines(name, Enumerable.Range(0, n).Select(i => onlyPositive || i % 2 == 0
            ? $"a really great film number {i}\ti liked it\tpositive" : $"a very bad phone number {i}\ti hated it\tnegative"));
        var ft = Path.Combine(_dir, "ft");
        var r = Run("finetune", "--data", Pairs("pairs.tsv", 40, false), "--format", "pairs", "--size", "nano", "--epochs", "2", "--batch", "8", "--max-len", "24", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        var id2label = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(ft, "best", "config.json")))!["id2label"]!;
        Assert.Equal("negative", id2label["0"]!.GetValue<string>());
        Assert.Equal("positive", id2label["1"]!.GetValue<string>());
        Assert.Equal("LABEL_2", id2label["2"]!.GetValue<string>());   // BertNanoClassifier has a third class

        var best = Path.Combine(ft, "best");
        r = Run("predict", "--model", best, "a really great film\ti liked it");
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Matches(@"^(negative|positive|LABEL_2)\t[01]\.\d{3}\ta really great film\ti liked it$", r.Out.Trim().Split('\n').Last());

        // Ten "positive" pairs: eval's accuracy is the share predict calls positive.
        var positives = Pairs("positives.tsv", 10, true);
        Program.StandardInput = new StringReader(string.Join("\n", File.ReadAllLines(positives).Select(l => l[..l.LastIndexOf('\t')])));
        try { r = Run("predict", "--model", best); }
        finally { Program.StandardInput = null; }
        Assert.True(r.Code == 0, r.Out + r.Err);
        int called = r.Out.Trim().Split('\n').Count(l => l.StartsWith("positive\t", StringComparison.Ordinal));
        r = Run("eval", "--model", best, "--data", positives, "--format", "pairs");
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains((called / 10.0).ToString("P2", System.Globalization.CultureInfo.InvariantCulture), r.Out);
        var implicitFormat = Run("eval", "--model", best, "--data", positives);   // the checkpoint says pairs: read as pairs
        Assert.True(implicitFormat.Code == 0, implicitFormat.Out + implicitFormat.Err);
        Assert.Equal(r.Out, implicitFormat.Out);

        r = Run("eval", "--model", best, "--data", WriteLines("odd.tsv", ["a film\tit was\tneutral"]), "--format", "pairs");
        Assert.Equal(1, r.Code);
        Assert.Contains("has the label 'neutral', which is not one of the model's classes (negative, positive, LABEL_2)", r.Err);
    }

    /// <summary>Token classification from CoNLL files: the tags become id2label, every epoch reports entity F1, predict
    /// tags each word, and eval counts entities over a whole file.</summary>
    [Fact]
    public void Finetune_OnConllTags_ThenPredictAndEvalTagWords()
    {
        var rng = new Random(3);
        string[] people = ["John", "Mary", "Peter", "Anna"], places = ["Paris", "London", "Rome"];
        var lines = new List<string> { "-DOCSTART- -X- -X- O", "" };
        for (int i = 0; i < 40; i++)
        {
            lines.AddRange([$"{people[rng.Next(4)]} NNP B-PER", "Smith NNP I-PER", "lives VBZ O", "in IN O", $"{places[rng.Next(3)]} NNP B-LOC", ""]);
        }
        var data = WriteLines("ner.conll", lines);
        var ft = Path.Combine(_dir, "tagger");
        var r = Run("finetune", "--data", data, "--format", "conll", "--size", "nano", "--epochs", "2", "--batch", "8", "--max-len", "16", "--lr", "1e-3", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("BertNanoTokenClassifier on fixed split of ner.conll: 32 train / 8 dev sentences", r.Out);
        Assert.Contains("4 tags (B-LOC, B-PER, I-PER, O)", r.Out);
        Assert.Matches(@"step \d+ \(epoch 1\): dev entity F1 \d+\.\d\d % \(precision", r.Out);
        var best = Path.Combine(ft, "best");
        var id2label = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(best, "config.json")))!["id2label"]!;
        Assert.Equal("B-LOC", id2label["0"]!.GetValue<string>());
        Assert.Equal("LABEL_4", id2label["4"]!.GetValue<string>());   // BertNanoTokenClassifier has five classes

        r = Run("predict", "--model", best, "Anna Smith lives in Rome");
        Assert.True(r.Code == 0, r.Out + r.Err);
        var tagged = r.Out.TrimEnd().Split('\n');
        Assert.Equal(["Anna", "Smith", "lives", "in", "Rome"], tagged.Select(l => l.Split('\t')[0]));
        Assert.All(tagged, l => Assert.Matches(@"^\S+\t(B-LOC|B-PER|I-PER|O|LABEL_4)\t[01]\.\d{3}$", l));

        r = Run("eval", "--model", best, "--data", data);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Matches(@"│ 40 +│ 200 +│ 0 +│ \d+\.\d\d % +│ \d+\.\d\d % +│ \d+\.\d\d % +│ \d+\.\d\d % +│", r.Out);
        // Words past --max-len are not dropped: they count as wrong (and as tagged O for the entities). With 3 tokens
        // ([CLS] piece [SEP]) only the first word of each sentence is read, so at most 40 of the 200 words are right.
        r = Run("eval", "--model", best, "--data", data, "--max-len", "3");
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Matches(@"│ 40 +│ 200 +│ 40 +│ ([0-9]|1[0-9]|20)\.\d\d % +│", r.Out);

        // The same command again: the run is complete, and the best evaluation is reported whole from trainer_state.json.
        var again = Run("finetune", "--data", data, "--format", "conll", "--size", "nano", "--epochs", "2", "--batch", "8", "--max-len", "16", "--lr", "1e-3", "--out", ft);
        Assert.True(again.Code == 0, again.Out + again.Err);
        Assert.Contains("Resuming from step", again.Out);
        Assert.Matches(@"Best dev entity F1 \d+\.\d\d % \(precision", again.Out);

        // A tag the model does not know is one sentence naming it and the model's tags.
        r = Run("eval", "--model", best, "--data", WriteLines("odd.conll", ["Rome B-GPE"]));
        Assert.Equal(1, r.Code);
        Assert.Contains("has the tag 'B-GPE', which the model does not have (B-LOC, B-PER, I-PER, O, LABEL_4); fix the tag.", r.Err);
        // A named set of labeled texts is not what a tagger is scored on.
        r = Run("eval", "--model", best, "--data", "amazon");
        Assert.Equal(1, r.Code);
        Assert.Contains("holds a tagger (BertNanoTokenClassifier), which is scored on a CoNLL file of tagged words, and amazon is a set of labeled texts", r.Err);
    }

    /// <summary>The dev scores printed while fine-tuning a tagger are eval's on the same file: words past --max-len count as
    /// wrong in both. A set too small to set a dev example aside is one sentence.</summary>
    [Fact]
    public void TaggerDevScores_AreEvals_AndAnEmptyDevSetIsRefused()
    {
        var lines = Enumerable.Range(0, 12).SelectMany(i => new[] { $"{(i % 2 == 0 ? "Anna" : "Rome")} {(i % 2 == 0 ? "B-PER" : "B-LOC")}", "is O", "here O", "today O", "" });
        var train = WriteLines("train.conll", lines);
        var dev = WriteLines("dev.conll", lines.Take(10));
        var ft = Path.Combine(_dir, "tagger");
        var r = Run("finetune", "--data", train, "--dev", dev, "--format", "conll", "--size", "nano", "--epochs", "1", "--batch", "4", "--max-len", "4", "--lr", "1e-3", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        var printed = System.Text.RegularExpressions.Regex.Match(r.Out, @"Best dev entity F1 (\d+\.\d\d %) \(precision (\d+\.\d\d %), recall (\d+\.\d\d %)\), word accuracy (\d+\.\d\d %)");
        Assert.True(printed.Success, r.Out);
        r = Run("eval", "--model", Path.Combine(ft, "best"), "--data", dev, "--max-len", "4");
        Assert.True(r.Code == 0, r.Out + r.Err);
        // sentences, words, truncated, word accuracy, precision, recall, F1: the same four numbers.
        Assert.Matches($@"│ 2 +│ 8 +│ 2 +│ {printed.Groups[4].Value} +│ {printed.Groups[2].Value} +│ {printed.Groups[3].Value} +│ {printed.Groups[1].Value} +│", r.Out);

        r = Run("finetune", "--data", WriteLines("two.tsv", ["good\t1", "bad\t0"]), "--size", "nano", "--epochs", "1", "--max-len", "16", "--out", Path.Combine(_dir, "two"));
        Assert.Equal(1, r.Code);
        Assert.Contains("has no examples (too few per class to set one aside); give more examples or a --dev file.", r.Err);
    }

    [Fact]
    public void EvalAndPredict_OfAPreTrainingModel_SayToFineTuneFirst()
    {
        var pre = PretrainedNano("pre");
        foreach (var args in new[] { new[] { "predict", "--model", pre, "a text" }, ["eval", "--model", pre, "--data", Labeled()] })
        {
            var r = Run(args);
            Assert.Equal(1, r.Code);
            Assert.Equal($"error: {pre} holds BertNanoPreTraining, a pretraining model without a classifier or tagging head; fine-tune it first (bert finetune --from {pre} --data …) and use that folder.", r.Err.Trim());
        }
    }

    /// <summary>A numbered training file with a named dev file is refused (their ids could not be matched); for a model not
    /// fine-tuned on pairs, a tab in predict's text is part of the text.</summary>
    [Fact]
    public void NamedAndNumberedFiles_DoNotMix_AndATabIsTextForSingleTextModels()
    {
        var ft = Path.Combine(_dir, "ft");
        var r = Run("finetune", "--data", Labeled(), "--dev", WriteLines("dev.tsv", ["a great film\tpositive"]), "--size", "nano", "--epochs", "1", "--out", ft);
        Assert.Equal(1, r.Code);
        Assert.Contains("dev.tsv names its classes (positive) but", r.Err);
        Assert.Contains("numbers them; label both files the same way.", r.Err);

        r = Run("finetune", "--data", Labeled(), "--size", "nano", "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        r = Run("predict", "--model", ft, "a really great\tfilm");
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.EndsWith("\ta really great\tfilm", r.Out.Trim());
        var joined = Run("predict", "--model", ft, "a really great film");
        // The tab is whitespace to the tokenizer: the same pieces, the same segment, so the same prediction.
        Assert.Equal(joined.Out.Trim().Split('\t')[..2], r.Out.Trim().Split('\t')[..2]);
    }

    /// <summary>Four named classes take the smallest classifier that has room (BERT-Mini's five-way), the fifth unnamed.</summary>
    [Fact]
    public void Finetune_FourNamedClasses_TakesTheSmallestClassifierWithRoom()
    {
        string[] stars = ["one", "two", "three", "four"];
        var data = WriteLines("stars.tsv", Enumerable.Range(0, 24).Select(i => $"review {i} with {stars[i % 4]} stars\t{stars[i % 4]}"));
        var ft = Path.Combine(_dir, "stars");
        var r = Run("finetune", "--data", data, "--size", "mini", "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("BertMini5Classifier on", r.Out);
        var id2label = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(ft, "config.json")))!["id2label"]!.AsObject();
        Assert.Equal(["four", "one", "three", "two", "LABEL_4"], id2label.Select(kv => kv.Value!.GetValue<string>()));
    }

    string WriteLines(string name, IEnumerable<string> lines)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    [Fact]
    public void Vocab_BuildsAVocabularyOfTheAskedSize()
    {
        var outDir = Path.Combine(_dir, "vocab");
        var r = Run("vocab", "--corpus", Corpus(), "--size", "60", "--min-frequency", "1", "--cased", "--keep-accents", "--out", outDir);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Equal(60, File.ReadAllLines(Path.Combine(outDir, "vocab.txt")).Length);
        Assert.Contains("\"do_lower_case\": false", File.ReadAllText(Path.Combine(outDir, "tokenizer_config.json")));
    }

    [Fact]
    public void Pretrain_MaskedLmOnly_WithoutDropout_FromTheFrequencyPrior()
    {
        var pre = Path.Combine(_dir, "mlm-only");
        var r = Run("pretrain", "--corpus", Corpus(), "--size", "nano", "--steps", "3", "--batch", "8", "--max-len", "32", "--mask-prob", "0.3",
            "--objective", "mlm", "--no-dropout", "--output-bias", "frequencies", "--out", pre);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("masked LM only (no next-sentence objective); no dropout; output bias from token frequencies", r.Out);
        Assert.True(File.Exists(Path.Combine(pre, "model.safetensors")));
        Assert.DoesNotContain("nsp_acc", r.Out);   // no next-sentence labels, so no accuracy to show
        Assert.Contains("mlm_acc", r.Out);
    }

    [Theory]
    [InlineData("finetune --data /nonexistent/x.tsv --size nano --out {dir}/a", "neither a data set")]
    [InlineData("pretrain --corpus /nonexistent/c.txt --size nano --steps 1 --out {dir}/b", "does not exist")]
    [InlineData("pretrain --size galactic --steps 1 --out {dir}/c", "no model size 'galactic'")]
    [InlineData("predict --model {dir}/nothing hello", "")]
    [InlineData("finetune --data {bad} --size nano --out {dir}/d", "line 2")]
    [InlineData("pretrain --size nano --steps 1 --max-len 100000 --out {dir}/e", "MaxLen")]
    [InlineData("finetune --data {empty} --size nano --out {dir}/f", "is empty")]
    [InlineData("finetune --data {latin1} --size nano --out {dir}/g", "not valid UTF-8")]
    [InlineData("pretrain --corpus {latin1} --size nano --steps 1 --max-len 32 --out {dir}/h", "not valid UTF-8 (first bad byte on line 2)")]
    [InlineData("vocab --corpus {latin1} --out {dir}/i", "not valid UTF-8 (first bad byte on line 2)")]
    [InlineData("finetune --data {negative} --size nano --out {dir}/h", "line 2 has label -1")]
    [InlineData("finetune --data {five} --size nano --out {dir}/i", "no nano classifier with 5 classes")]
    [InlineData("pretrain --vocab {bigvocab} --size nano --steps 1 --out {dir}/j", "embeds 30522")]
    [InlineData("finetune --data {five} --dev {dir}/missing.tsv --size nano --out {dir}/k", "does not exist")]
    [InlineData("pretrain --size nano --steps 1 --mask-prob 1.5 --out {dir}/l", "--mask-prob 1.5 must be above 0 and below 1")]
    [InlineData("pretrain --size nano --steps 1 --save-every -3 --out {dir}/m", "--save-every -3 must be 0 or more")]
    [InlineData("parity-batch {dir}/nothing --out {dir}/n", "The checkpoint folder")]
    [InlineData("finetune --data amazon --size nano --reinit qk --out {dir}/o", "--reinit qk needs --from")]
    [InlineData("finetune --data amazon --size nano --reinit attn --out {dir}/p", "Unknown part 'attn' in --reinit")]
    [InlineData("pretrain --size nano --steps 1 --batch 0 --out {dir}/q", "--batch 0 is not a count; give 1 or more")]
    [InlineData("finetune --data amazon --size nano --epochs 0 --out {dir}/r", "--epochs 0 is not a count")]
    [InlineData("pretrain --size nano --steps 0 --out {dir}/s", "--steps 0 is not a count")]
    [InlineData("pretrain --size nano --steps 1 --lr -1 --out {dir}/t", "--lr -1 is not a learning rate")]
    [InlineData("finetune --data amazon --size nano --warmup 1.5 --out {dir}/u", "--warmup 1.5 is the share of the steps spent warming up")]
    [InlineData("pretrain --size nano --steps 1 --max-len 0 --out {dir}/v", "--max-len 0 leaves no room for text")]
    [InlineData("predict --model {dir}/nothing --max-len 2 hello", "--max-len 2 leaves no room for text")]
    [InlineData("pretrain --size nano --steps 1 --precision bf16 --out {dir}/w", "--precision bf16 applies to --device cuda")]
    [InlineData("pretrain --size nano --steps 1 --out {file}", "is a file; give a folder")]
    [InlineData("finetune --data amazon --size nano --out /proc/bert-test-out", "cannot be written (no file can be made in /proc)")]
    [InlineData("export --size nano --onnx /proc/bert-test.onnx", "cannot be written")]
    [InlineData("export --size nano --head classifier --classes 0 --onnx {dir}/m.onnx", "--classes 0 is too few")]
    [InlineData("info nano --seq 100000", "--seq 100000 is longer than BertNanoPreTraining's MaxLen of 64")]
    [InlineData("vocab --corpus {blank} --out {dir}/x", "has no text to learn a vocabulary from")]
    [InlineData("demo --runs 0 --out {dir}/y", "--runs 0 is not a count")]
    [InlineData("pretrain --corpus {blank} --size nano --steps 1 --batch -4 --out {dir}/z", "--batch -4 is not a count")]
    [InlineData("finetune --data {oneclass} --size nano --out {dir}/aa", "has examples of one class only")]
    public void BadInput_IsOneSentenceAndANonZeroExit(string command, string expected)
    {
        File.WriteAllText(Path.Combine(_dir, "a-file"), "not a folder");
        File.WriteAllText(Path.Combine(_dir, "blank.txt"), "\n\n   \n\n");
        File.WriteAllText(Path.Combine(_dir, "oneclass.tsv"), string.Join("\n", Enumerable.Range(0, 20).Select(i => $"text {i}\t1")));
        var bad = Path.Combine(_dir, "bad.tsv");
        File.WriteAllText(bad, "fine text\t1\nno label here\n");
        File.WriteAllBytes(Path.Combine(_dir, "empty.tsv"), []);
        File.WriteAllBytes(Path.Combine(_dir, "latin1.tsv"), [.. Encoding.UTF8.GetBytes("fine\t1\ncaf"), 0xE9, .. Encoding.UTF8.GetBytes("\t0\n")]);
        File.WriteAllText(Path.Combine(_dir, "negative.tsv"), "good\t1\nbad\t-1\n");
        File.WriteAllText(Path.Combine(_dir, "five.tsv"), string.Join("\n", Enumerable.Range(0, 10).Select(i => $"text {i}\t{i % 5}")));
        // A vocabulary with more entries than the model embeds (30522).
        var bigVocab = Path.Combine(_dir, "bigvocab");
        Directory.CreateDirectory(bigVocab);
        File.WriteAllLines(Path.Combine(bigVocab, "vocab.txt"),
            new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(Enumerable.Range(0, 30600).Select(i => "w" + i)));
        File.WriteAllText(Path.Combine(bigVocab, "tokenizer_config.json"), "{\"do_lower_case\": true, \"strip_accents\": true}");
        var args = command.Replace("{dir}", _dir).Replace("{bad}", bad).Replace("{bigvocab}", bigVocab)
            .Replace("{empty}", Path.Combine(_dir, "empty.tsv")).Replace("{latin1}", Path.Combine(_dir, "latin1.tsv"))
            .Replace("{negative}", Path.Combine(_dir, "negative.tsv")).Replace("{five}", Path.Combine(_dir, "five.tsv"))
            .Replace("{file}", Path.Combine(_dir, "a-file")).Replace("{blank}", Path.Combine(_dir, "blank.txt")).Replace("{oneclass}", Path.Combine(_dir, "oneclass.tsv")).Split(' ');
        var r = Run(args);
        int outAt = Array.IndexOf(args, "--out");
        if (outAt >= 0)                                                   // nothing half-written
            Assert.False(Directory.Exists(args[outAt + 1]) && Directory.EnumerateFileSystemEntries(args[outAt + 1]).Any(), "the failed command wrote to " + args[outAt + 1]);
        Assert.NotEqual(0, r.Code);
        var err = r.Err.Trim();
        Assert.StartsWith("error: ", err);
        Assert.DoesNotContain("   at ", err);                        // no stack trace
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(expected, err);
        Assert.DoesNotContain("(Parameter '", err);                  // .NET's note of a variable name, not the user's flag
        Assert.Equal("not a folder", File.ReadAllText(Path.Combine(_dir, "a-file")));
        Assert.Empty(Directory.EnumerateFiles(_dir, ".bert-write-check-*", SearchOption.AllDirectories));   // the probe of --out is gone
    }

    [Fact]
    public void Finetune_FromACheckpointOfAnotherSize_IsRefused()
    {
        var pre = PretrainedNano("pre");
        var ft = Path.Combine(_dir, "ft");
        var r = Run("finetune", "--data", Labeled(), "--from", pre, "--size", "nano-preln", "--epochs", "1", "--out", ft);
        Assert.Equal(1, r.Code);
        Assert.Single(r.Err.Trim().Split('\n'));
        Assert.Contains("holds BertNanoPreTraining", r.Err);
        Assert.Contains("pass the --size the checkpoint was pre-trained with", r.Err);
        Assert.False(Directory.Exists(ft));
    }

    [Fact]
    public void Finetune_CountsTheTextsItTruncates()
    {
        // "a really great film number 12" is 6 word pieces; with [CLS] and [SEP] every text is cut at --max-len 6.
        var r = Run("finetune", "--data", Labeled(), "--size", "nano", "--epochs", "1", "--batch", "8", "--max-len", "6", "--out", Path.Combine(_dir, "ft"));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("40 texts truncated to 6 tokens", r.Out);
        r = Run("finetune", "--data", Labeled(), "--size", "nano", "--epochs", "1", "--batch", "8", "--max-len", "8", "--out", Path.Combine(_dir, "ft8"));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("0 texts truncated to 8 tokens", r.Out);
    }

    /// <summary>Cancels (as Ctrl-C does) when a line containing the text is written.</summary>
    sealed class CancelOn(string text, CancellationTokenSource cts) : StringWriter
    {
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value is not null && value.Contains(text)) cts.Cancel();
        }
    }

    [Fact]
    public void CtrlC_SavesAResumableCheckpoint_AndTheResumedRunEqualsAnUninterruptedOne()
    {
        var corpus = Corpus();
        string[] Args(string outDir) => ["pretrain", "--corpus", corpus, "--size", "nano", "--steps", "6", "--batch", "8", "--max-len", "32", "--out", outDir];
        var whole = Path.Combine(_dir, "whole");
        var r = Run(Args(whole));
        Assert.True(r.Code == 0, r.Out + r.Err);

        var cut = Path.Combine(_dir, "cut");
        using var cts = new CancellationTokenSource();
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (o, e) = (new CancelOn("step 2/6", cts), new StringWriter());
        Console.SetOut(o); Console.SetError(e);
        int code;
        try { code = Program.Build(cts.Token).Parse(Args(cut)).Invoke(); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
        Assert.Equal(130, code);
        Assert.Contains("Stopped at step 2", e.ToString());
        Assert.Empty(Directory.GetFiles(cut, "*.tmp", SearchOption.AllDirectories));
        Assert.Contains("\"Step\":2", File.ReadAllText(Path.Combine(cut, "trainer_state.json")));

        r = Run(Args(cut));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("Resuming from step 2", r.Out);
        static string Losses(string dir) => System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "trainer_state.json")))!["Losses"]!.ToJsonString();
        Assert.Equal(Losses(whole), Losses(cut));
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, "model.safetensors")), File.ReadAllBytes(Path.Combine(cut, "model.safetensors")));
    }

    [WithoutCudaFact(Bert.Runtime.Cuda.CudaLibrary.Driver)]
    public void CudaDevice_WithoutADriver_IsOneSentence_AndWritesNothing()
    {
        var r = Run("info", "mini");
        Assert.Equal(0, r.Code);
        string outDir = Path.Combine(_dir, "x");
        foreach (var args in new[]
        {
            new[] { "finetune", "--data", "amazon", "--size", "nano", "--out", outDir, "--device", "cuda" },
            new[] { "pretrain", "--size", "nano", "--steps", "1", "--out", outDir, "--device", "cuda" },
        })
        {
            r = Run(args);
            Assert.Equal(1, r.Code);
            Assert.StartsWith("error: The CUDA driver (libcuda.so.1) was not found", r.Err);
            Assert.Contains("install the NVIDIA driver", r.Err);
            Assert.Single(r.Err.Trim().Split('\n'));
            Assert.False(Directory.Exists(outDir), "nothing is written when the device cannot be opened");
        }
        r = Run("selftest", "--device", "cuda");
        Assert.Equal(2, r.Code);
        Assert.StartsWith("error: The CUDA driver (libcuda.so.1) was not found", r.Err);
        r = Run("selftest");
        Assert.Equal(2, r.Code);
        Assert.Contains("run it as `bert selftest --device cuda`", r.Err);
        foreach (var command in new[] { "demo", "eval", "predict" })
        {
            r = command == "demo" ? Run("demo", "--device", "cuda", "--out", outDir)
                : Run(command, "--model", Path.Combine(_dir, "none"), "--data", "amazon", "--device", "cuda");
            Assert.NotEqual(0, r.Code);
            Assert.Single(r.Err.Trim().Split('\n'));
        }
        Assert.False(Directory.Exists(outDir), "the demo writes nothing when the device cannot be opened");
    }

    [Fact]
    public void UnknownPrecision_IsAParseError_NamingTheChoices()
    {
        var r = Run("finetune", "--data", "amazon", "--size", "nano", "--out", Path.Combine(_dir, "p"), "--device", "cuda", "--precision", "fp16");
        Assert.NotEqual(0, r.Code);
        Assert.Contains("fp16", r.Err);
        Assert.Contains("bf16", r.Err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "p")));
    }

    /// <summary>LAMB has a device twin (CudaLamb), so `--optimizer lamb --device cuda` goes as far as opening the device:
    /// here, without a driver, the one sentence is the driver's, and nothing is written.</summary>
    [WithoutCudaFact(Bert.Runtime.Cuda.CudaLibrary.Driver)]
    public void CudaTraining_WithLamb_GoesToTheDevice()
    {
        var r = Run("pretrain", "--size", "nano", "--steps", "1", "--optimizer", "lamb", "--out", Path.Combine(_dir, "y"), "--device", "cuda");
        Assert.Equal(1, r.Code);
        Assert.StartsWith("error: The CUDA driver (libcuda.so.1) was not found", r.Err.Trim());
        Assert.Single(r.Err.Trim().Split('\n'));
        Assert.False(Directory.Exists(Path.Combine(_dir, "y")));
    }

    [Fact]
    public void UnknownFlag_IsAParseError()
    {
        var r = Run("pretrain", "--size", "nano", "--out", _dir, "--bogus", "1");
        Assert.NotEqual(0, r.Code);
        // The error and where the options are listed, not the whole help after it.
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Contains(lines, l => l.Contains("--bogus"));
        Assert.EndsWith("; see `bert pretrain --help` for the options.", lines[^1]);
        Assert.True(lines.Length <= 2, r.Err);   // the flag, and its value taken as a stray argument
        Assert.DoesNotContain("Usage:", r.Err + r.Out);
        r = Run("pretrain", "--size", "nano", "--out", _dir, "--steps", "many");
        Assert.Contains("Cannot parse argument 'many' for option '--steps' as a whole number", r.Err);
        Assert.DoesNotContain("System.", r.Err);
        r = Run();   // a bare `bert` lists the commands
        Assert.Equal(0, r.Code);
        Assert.Contains("pretrain", r.Out);
        Assert.Contains("finetune", r.Out);
    }
}
