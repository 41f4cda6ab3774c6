using System.Text;
using Bert.Cli;
using Xunit;

namespace Bert.Tests.Cli;

/// <summary>What a command must never do with a user's files: overwrite a model it did not write, resume a run on other
/// data or from a damaged state, or replace a checkpoint's tokenizer; and the notes and refusals that keep predict and
/// eval honest about their input.</summary>
public partial class CliTests
{
    /// <summary>A BERT-Nano classifier fine-tuned for an epoch on <see cref="Labeled"/> into _dir/<paramref name="name"/>;
    /// returns its best checkpoint's folder.</summary>
    string FineTunedNano(string name)
    {
        var dir = Path.Combine(_dir, name);
        var r = Run("finetune", "--data", Labeled(), "--size", "nano", "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", dir);
        Assert.True(r.Code == 0, r.Out + r.Err);
        return Path.Combine(dir, "best");
    }

    /// <summary>BERT-Nano pre-trained for <paramref name="steps"/> steps on <see cref="Corpus"/> into _dir/<paramref name="name"/>.</summary>
    string PretrainedNano(string name, int steps = 1)
    {
        var dir = Path.Combine(_dir, name);
        var r = Run("pretrain", "--corpus", Corpus(), "--size", "nano", "--steps", steps.ToString(), "--batch", "8", "--max-len", "32", "--out", dir);
        Assert.True(r.Code == 0, r.Out + r.Err);
        return dir;
    }

    /// <summary>A folder holding a model but no run (a Hugging Face folder, a copied checkpoint) is refused as --out by
    /// pretrain and finetune before any work, and keeps its files byte for byte.</summary>
    [Fact]
    public void OutFolder_HoldingAModelButNoRun_IsRefused_AndKeptIntact()
    {
        var hf = AsHuggingFace(PretrainedNano("pre"), "hf", "BertNanoPreTraining", _ => true, "{\"architectures\": [\"BertForPreTraining\"], " + NanoSizes + "}");
        var before = Directory.GetFiles(hf).ToDictionary(f => f, File.ReadAllBytes);
        foreach (var args in new[]
        {
            new[] { "finetune", "--data", Labeled(), "--from", hf, "--epochs", "1", "--out", hf },
            ["pretrain", "--corpus", Corpus(), "--size", "nano", "--steps", "1", "--batch", "8", "--max-len", "32", "--out", hf],
        })
        {
            var r = Run(args);
            Assert.Equal(1, r.Code);
            Assert.Contains($"{hf} already holds a model (model.safetensors) but no run to resume (trainer_state.json), and this run would overwrite it", r.Err);
            Assert.Single(r.Err.Trim().Split('\n'));
            Assert.Equal(before.Keys.Order(), Directory.GetFiles(hf).Order());
            foreach (var (f, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(f));
        }
    }

    /// <summary>Resuming needs the same data, a readable state, the optimizer's state and no fewer steps than were run;
    /// each refusal is one sentence and leaves the run's files as they were.</summary>
    [Fact]
    public void Resume_RefusesOtherData_ADamagedState_AMissingOptimizer_AndFewerSteps()
    {
        var run = Path.Combine(_dir, "run");
        string[] Pretrain(string corpus, int steps) => ["pretrain", "--corpus", corpus, "--size", "nano", "--steps", steps.ToString(), "--batch", "8", "--max-len", "32", "--out", run];
        string corpus = Corpus();
        var r = Run(Pretrain(corpus, 2));
        Assert.True(r.Code == 0, r.Out + r.Err);
        var other = Path.Combine(_dir, "other.txt");
        File.WriteAllText(other, File.ReadAllText(corpus).Replace("movie", "picture"));
        var snapshot = Directory.GetFiles(run).ToDictionary(f => f, File.ReadAllBytes);
        void Refused(string[] args, string expected)
        {
            var before = Directory.GetFiles(run).ToDictionary(f => f, File.ReadAllBytes);
            var rr = Run(args);
            Assert.Equal(1, rr.Code);
            var err = rr.Err.Trim();
            Assert.Single(err.Split('\n'));
            Assert.StartsWith("error: ", err);
            Assert.Contains(expected, err);
            Assert.Equal(before.Keys.Order(), Directory.GetFiles(run).Order());
            foreach (var (f, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(f));
        }

        Refused(Pretrain(other, 4), $"{run} holds a run on {corpus}, not on {other}");
        Refused(Pretrain(corpus, 1), $"The run in {run} is at step 2, past the 1 steps asked for");
        var state = Path.Combine(run, "trainer_state.json");
        File.WriteAllText(state, "{garbage");
        Refused(Pretrain(corpus, 4), $"{state} is not a training state");
        File.WriteAllBytes(state, snapshot[state]);
        File.Move(Path.Combine(run, "optimizer.bin"), Path.Combine(_dir, "optimizer.bin"));
        Refused(Pretrain(corpus, 4), $"{run} holds a run at step 2 but no optimizer state (optimizer.bin)");
        File.WriteAllBytes(Path.Combine(run, "optimizer.bin"), snapshot[Path.Combine(run, "optimizer.bin")][..100]);
        Refused(Pretrain(corpus, 4), "optimizer.bin cannot be read");
        File.Move(Path.Combine(_dir, "optimizer.bin"), Path.Combine(run, "optimizer.bin"), overwrite: true);
        Refused([.. Pretrain(corpus, 4), "--optimizer", "lamb"], $"The run in {run} was trained with another optimizer (AdamW optimizer state, not Lamb); resume it with the --optimizer it used");
        // Changed options would continue the run as another one (and relabel its start): refused, naming them.
        Refused([.. Pretrain(corpus, 4), "--lr", "0.5", "--seed", "5"], $"{run} holds a run with --seed 1, --lr 0.0005, not --seed 5, --lr 0.5; give the options it was started with to continue it, or another --out.");
        r = Run(Pretrain(corpus, 4));   // all put back: it resumes
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("Resuming from step 2", r.Out);
        // The same file written another way is the same data.
        r = Run(Pretrain(Path.Combine(_dir, ".", "corpus.txt"), 5));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("Resuming from step 4", r.Out);
    }

    /// <summary>Mistakes in a labelled file, and options a set cannot honour, are one sentence each before any work: a header
    /// row, a line with an extra column, a text file read as CoNLL, --accumulate past an epoch, a batch too large for one
    /// array, and a demo pointed at another run's folder (whose files stay as they were).</summary>
    [Fact]
    public void DataAndOptionMistakes_AreOneSentenceEach_BeforeAnyWork()
    {
        string Refusal(params string[] args)
        {
            var x = Run(args);
            Assert.Equal(1, x.Code);
            var err = x.Err.Trim();
            Assert.Single(err.Split('\n'));
            Assert.StartsWith("error: ", err);
            return err;
        }
        string[] Finetune(string data, string outName) => ["finetune", "--data", data, "--size", "nano", "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", Path.Combine(_dir, outName)];
        var header = Path.Combine(_dir, "header.tsv");
        File.WriteAllText(header, "sentence\tlabel\n" + File.ReadAllText(Labeled()));
        Assert.Contains($"{header} line 1 looks like a header ('sentence<TAB>label'), not an example; delete that line", Refusal(Finetune(header, "h")));
        var named = Path.Combine(_dir, "named.tsv");
        File.WriteAllText(named, "text\tsentiment\n" + File.ReadAllText(Labeled()).Replace("\t1\n", "\tpositive\n").Replace("\t0\n", "\tnegative\n"));
        Assert.Contains("line 1 looks like a header", Refusal(Finetune(named, "n")));
        var cols = Path.Combine(_dir, "cols.tsv");
        File.WriteAllText(cols, File.ReadAllText(Labeled()) + "a fine film\textra\t1\n");
        Assert.Contains($"{cols} line 41 has 3 tab-separated fields, not 2; write each example as 'text<TAB>label' (for two texts and a label, use --format pairs).", Refusal(Finetune(cols, "c")));
        Assert.Contains("line 1 has several words before its tab ('a really great film number 0'), as a text<TAB>label file has", Refusal([.. Finetune(Labeled(), "k"), "--format", "conll"]));
        Assert.Contains("--accumulate 50 asks for more micro-batches per optimizer step than an epoch of", Refusal([.. Finetune(Labeled(), "a"), "--accumulate", "50"]));
        Assert.Contains("use a batch of at most about", Refusal("pretrain", "--size", "nano", "--steps", "1", "--batch", "100000", "--max-len", "32", "--out", Path.Combine(_dir, "big")));
        Assert.StartsWith("error: 'frobnicate' is not a bert command; `bert --help` lists them (demo, pretrain,", Refusal("frobnicate", "--size", "nano"));
        foreach (var name in new[] { "h", "n", "c", "k", "a", "big" }) Assert.False(Directory.Exists(Path.Combine(_dir, name)) && Directory.EnumerateFileSystemEntries(Path.Combine(_dir, name)).Any(), name);

        var tuned = FineTunedNano("tuned");
        var before = Directory.GetFiles(tuned).ToDictionary(f => f, File.ReadAllBytes);
        Assert.Contains($"--out {tuned} holds ", Refusal("demo", "--size", "nano", "--pretrain-steps", "1", "--epochs", "1", "--sst2-epochs", "1", "--runs", "1", "--pretrain-max-len", "32", "--sets", "amazon", "--out", tuned));
        Assert.Equal(before.Keys.Order(), Directory.GetFiles(tuned).Order());
        Assert.Empty(Directory.GetDirectories(tuned));
        foreach (var (f, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(f));

        // A checkpoint that lost its vocabulary says so, not that some data file is missing.
        var novocab = Directory.CreateDirectory(Path.Combine(_dir, "novocab")).FullName;
        foreach (var f in Directory.GetFiles(tuned).Where(f => Path.GetFileName(f) is not ("vocab.txt" or "tokenizer.json"))) File.Copy(f, Path.Combine(novocab, Path.GetFileName(f)));
        Assert.Contains($"{novocab} has no vocab.txt (nor tokenizer.json), so the tokenizer its model was trained with is missing", Refusal("predict", "--model", novocab, "a film"));
        // With its tokenizer.json it still predicts, by that file (the checkpoint's stamp checks it), as it did with vocab.txt.
        File.Copy(Path.Combine(tuned, "tokenizer.json"), Path.Combine(novocab, "tokenizer.json"));
        var withJson = CliTests.Run("predict", "--model", novocab, "a film");
        Assert.True(withJson.Code == 0, withJson.Err);
        Assert.Equal(CliTests.Run("predict", "--model", tuned, "a film").Out, withJson.Out);
        // A tokenizer.json that is not the vocab.txt's (here: lower-casing turned off) is refused, naming the difference.
        var stale = Directory.CreateDirectory(Path.Combine(_dir, "stale")).FullName;
        foreach (var f in Directory.GetFiles(tuned)) File.Copy(f, Path.Combine(stale, Path.GetFileName(f)));
        string json = Path.Combine(stale, "tokenizer.json");
        Assert.Contains("\"lowercase\": true", File.ReadAllText(json));
        File.WriteAllText(json, File.ReadAllText(json).Replace("\"lowercase\": true", "\"lowercase\": false"));
        Assert.Contains($"{json} is not the tokenizer of the vocab.txt and tokenizer_config.json beside it (it keeps case, tokenizer_config.json lower-cases); transformers reads it rather than vocab.txt, so delete it", Refusal("predict", "--model", stale, "a film"));
        File.Delete(json);
        Assert.Equal(0, CliTests.Run("predict", "--model", stale, "a film").Code);
    }

    /// <summary>A head with more outputs than the data has classes (BERT-Nano's classifier has 3, the set 2): the spare
    /// output starts at bias −10000, says so, keeps that bias through training, and so is never predicted.</summary>
    [Fact]
    public void Finetune_OnFewerClassesThanTheHeadHas_KeepsTheSpareOutputsOut()
    {
        var dir = Path.Combine(_dir, "spare");
        var r = Run("finetune", "--data", Labeled(), "--size", "nano", "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", dir);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("BertNanoClassifier has 3 outputs and the data 2 classes: the other 1 is kept out (bias −10000).", r.Out);
        var m = Bert.Models.BertNanoClassifier.Create<float>();
        Bert.Runtime.Checkpoints.Checkpoint.Load(dir, m);
        Assert.InRange(m.Parameter("classifier.bias")[2], -10001f, -9999f);
        var p = Run("predict", "--model", dir, "a really great film");
        Assert.True(p.Code == 0, p.Out + p.Err);
        Assert.Matches(@"^[01]\t", p.Out);

        // Standard input's blank lines get empty lines of output: line i of the output answers line i of the input.
        Program.StandardInput = new StringReader("a really great film\n\n  \na very bad phone\n\n");
        try { p = Run("predict", "--model", dir); }
        finally { Program.StandardInput = null; }
        Assert.True(p.Code == 0, p.Out + p.Err);
        var lines = p.Out.Replace("\r", "").Split('\n');
        Assert.True(lines.Length >= 5, p.Out);
        Assert.Matches(@"^[01]\t[0-9.]+\ta really great film$", lines[0]);
        Assert.Equal(["", ""], lines[1..3]);
        Assert.Matches(@"^[01]\t[0-9.]+\ta very bad phone$", lines[3]);
        Assert.Equal("", lines[4]);

        // One batch of texts runs without the packed weights, more with them: the same answers.
        var single = Run("predict", "--model", dir, "a really great film");
        Program.StandardInput = new StringReader(string.Concat(Enumerable.Repeat("a really great film\n", 40)));
        try { p = Run("predict", "--model", dir); }
        finally { Program.StandardInput = null; }
        Assert.True(p.Code == 0, p.Out + p.Err);
        Assert.Equal(Enumerable.Repeat(single.Out.Replace("\r", "").Trim(), 40), p.Out.Replace("\r", "").Trim().Split('\n'));

        // A start whose run stopped early (its trainer_state.json short of its total) is taken, and said to be.
        string state = Path.Combine(dir, "trainer_state.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(state))!;
        long step = (long)json["Step"]!;
        json["TotalSteps"] = 1000;
        File.WriteAllText(state, json.ToJsonString());
        r = Run("finetune", "--data", Labeled(), "--from", dir, "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", Path.Combine(_dir, "from-stopped"));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains($"Note: {dir} holds a run stopped at step {step} of 1,000; starting from those weights", r.Err);
        r = Run("finetune", "--data", Labeled(), "--from", Path.Combine(_dir, "from-stopped"), "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", Path.Combine(_dir, "from-finished"));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.DoesNotContain("Note:", r.Err);
    }

    /// <summary>vocab never writes over a vocabulary or a model's tokenizer.</summary>
    [Fact]
    public void Vocab_IntoAFolderWithAVocabularyOrAModel_IsRefused()
    {
        var voc = Path.Combine(_dir, "voc");
        var r = Run("vocab", "--corpus", Corpus(), "--size", "200", "--out", voc);
        Assert.True(r.Code == 0, r.Out + r.Err);
        var before = File.ReadAllBytes(Path.Combine(voc, "vocab.txt"));
        r = Run("vocab", "--corpus", Corpus(), "--size", "100", "--out", voc);
        Assert.Equal(1, r.Code);
        Assert.Contains($"{voc} already holds vocab.txt; give another --out", r.Err);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(voc, "vocab.txt")));
        // Nor does a run with another vocabulary put its own there; with this one (--vocab) it trains in the folder.
        string[] Pretrain(params string[] more) => ["pretrain", "--corpus", Corpus(), "--size", "nano", "--steps", "1", "--batch", "8", "--max-len", "32", "--out", voc, .. more];
        r = Run(Pretrain());
        Assert.Equal(1, r.Code);
        Assert.Contains($"{voc} holds a vocabulary (vocab.txt) that this run, with another one, would replace; pass --vocab {voc}", r.Err);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(voc, "vocab.txt")));
        r = Run(Pretrain("--vocab", voc));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(voc, "vocab.txt")));
        var model = Path.Combine(_dir, "model");
        Directory.CreateDirectory(model);
        File.WriteAllText(Path.Combine(model, "config.json"), "{}");
        r = Run("vocab", "--corpus", Corpus(), "--size", "100", "--out", model);
        Assert.Equal(1, r.Code);
        Assert.Contains("already holds config.json (a model, whose tokenizer a new vocabulary would replace)", r.Err);
        Assert.False(File.Exists(Path.Combine(model, "vocab.txt")));
    }

    /// <summary>Fine-tuning from a fine-tuned classifier starts its head afresh, as the line says (the classes are the new
    /// data's); the saved tokenizer_config.json tells transformers the model's longest input; predict notes the texts it
    /// cut, refuses an empty one, and eval a label the model does not have.</summary>
    [Fact]
    public void Finetune_FromAClassifier_StartsTheHeadAfresh_AndPredictAndEvalSayWhatTheyDid()
    {
        var model = FineTunedNano("first");
        var config = File.ReadAllText(Path.Combine(_dir, "first", "tokenizer_config.json"));
        Assert.Contains("\"model_max_length\": 64", config);
        var second = Path.Combine(_dir, "second");
        var r = Run("finetune", "--data", Labeled(), "--from", model, "--epochs", "1", "--batch", "8", "--max-len", "16", "--lr", "1e-12", "--out", second);
        Assert.True(r.Code == 0, r.Out + r.Err);
        var info = Bert.Models.BertNanoClassifier.Info;
        Assert.Contains($"Initialized {info.Parameters.Count - 2} of {info.Parameters.Count} tensors", r.Out);
        Assert.Contains("the classifier head starts fresh", r.Out);
        var a = Bert.Models.BertNanoClassifier.Create<float>();
        var b = Bert.Models.BertNanoClassifier.Create<float>();
        Bert.Runtime.Checkpoints.Checkpoint.Load(model, a);
        Bert.Runtime.Checkpoints.Checkpoint.Load(second, b);
        Assert.NotEqual(a.Parameter("classifier.weight").ToArray(), b.Parameter("classifier.weight").ToArray());

        r = Run("predict", "--model", model, "--max-len", "8", string.Join(' ', Enumerable.Repeat("great", 40)));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("1 of 1 text was longer than 8 tokens and classified by its first 8 (--max-len; the model takes up to 64).", r.Err);
        // A --max-len beyond the model's positions is refused, by predict and eval alike; the default (128) is lowered to 64.
        foreach (var command in new[] { "predict", "eval" })
        {
            r = Run([command, "--model", model, "--max-len", "100", .. command == "eval" ? new[] { "--data", Labeled() } : ["a fine film"]]);
            Assert.Equal(1, r.Code);
            Assert.Equal("error: --max-len 100 is over BertNanoClassifier's MaxLen of 64; give --max-len 64 or less.", r.Err.Trim());
        }
        r = Run("predict", "--model", model, string.Join(' ', Enumerable.Repeat("great", 80)));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("1 of 1 text was longer than 64 tokens and classified by its first 64", r.Err);
        r = Run("predict", "--model", model, "  ");
        Assert.Equal(1, r.Code);
        Assert.Contains("The text to classify is empty", r.Err);
        var seven = Path.Combine(_dir, "seven.tsv");
        File.WriteAllText(seven, "good film\t1\nbad film\t7\n");
        r = Run("eval", "--model", model, "--data", seven);
        Assert.Equal(1, r.Code);
        Assert.Contains($"{seven} has the label 7, but the model in {model} has 3 classes (0 to 2)", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));
        r = Run("eval", "--model", model, "--data", Labeled(), "--format", "conll");
        Assert.Equal(1, r.Code);
        Assert.Contains($"--format conll is for taggers, and {model} holds a classifier (BertNanoClassifier) of texts", r.Err);
    }

    /// <summary>A Hugging Face classifier folder whose vocab.txt has more entries than the model embeds is refused when
    /// loaded, not at the first word past the table.</summary>
    [Fact]
    public void Predict_WithAVocabularyLargerThanTheModel_IsOneSentence()
    {
        var hf = AsHuggingFace(FineTunedNano("ft"), "hf-big", "BertNanoClassifier", _ => true,
            "{\"architectures\": [\"BertForSequenceClassification\"], " + NanoSizes + ", \"num_labels\": 3}");
        File.AppendAllLines(Path.Combine(hf, "vocab.txt"), Enumerable.Range(0, 100).Select(i => "extra" + i));
        var r = Run("predict", "--model", hf, "hello extra99");
        Assert.Equal(1, r.Code);
        Assert.Contains($"The vocab.txt in {hf} has 30622 entries but BertNanoClassifier embeds 30522", r.Err);
    }

    /// <summary>pretrain --from continues from a Hugging Face masked-LM folder: the model is the checkpoint's size (no
    /// --size), its tensors are where the run starts (at a learning rate too small to move them, the saved encoder equals
    /// the folder's), the heads it lacks start fresh and are named, its vocabulary is the run's, and --output-bias
    /// frequencies, which would replace its masked-LM bias, is refused.</summary>
    [Fact]
    public void Pretrain_FromAHuggingFaceFolder_StartsFromItsWeights()
    {
        var pre = PretrainedNano("pre", steps: 2);
        var hf = AsHuggingFace(pre, "hf-mlm", "BertNanoPreTraining", n => !n.Contains("pooler") && !n.Contains("seq_relationship"),
            "{\"architectures\": [\"BertForMaskedLM\"], " + NanoSizes + "}");
        var more = Path.Combine(_dir, "more");
        var r = Run("pretrain", "--from", hf, "--corpus", Corpus(), "--steps", "1", "--batch", "8", "--max-len", "32", "--lr", "1e-30", "--no-dropout", "--out", more);
        Assert.True(r.Code == 0, r.Out + r.Err);
        var info = Bert.Models.BertNanoPreTraining.Info;
        Assert.Contains($"Initialized {info.Parameters.Count - 4} of {info.Parameters.Count} tensors from {hf}; 4 tensors {hf} lacks (bert.pooler.dense.weight", r.Out);
        var a = Bert.Models.BertNanoPreTraining.Create<float>();
        var b = Bert.Models.BertNanoPreTraining.Create<float>();
        Bert.Runtime.Checkpoints.Checkpoint.Load(pre, a);
        Bert.Runtime.Checkpoints.Checkpoint.Load(more, b);
        foreach (var p in info.Parameters.Where(p => !p.HfName.Contains("pooler") && !p.HfName.Contains("seq_relationship")))
        {
            var x = a.Parameter(p.Name).ToArray();
            var y = b.Parameter(p.Name).ToArray();
            for (int i = 0; i < x.Length; i++) Assert.True(MathF.Abs(x[i] - y[i]) <= 1e-6f * (1 + MathF.Abs(x[i])), $"{p.HfName}[{i}]: {x[i]} then {y[i]}");
        }
        Assert.Equal(File.ReadAllText(Path.Combine(hf, "vocab.txt")), File.ReadAllText(Path.Combine(more, "vocab.txt")));

        r = Run("pretrain", "--from", hf, "--corpus", Corpus(), "--steps", "1", "--output-bias", "frequencies", "--out", Path.Combine(_dir, "freq"));
        Assert.Equal(1, r.Code);
        Assert.Contains("--output-bias frequencies would replace the masked-LM output bias", r.Err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "freq")));
        r = Run("pretrain", "--from", hf, "--size", "mini", "--corpus", Corpus(), "--steps", "1", "--out", Path.Combine(_dir, "mini"));
        Assert.Equal(1, r.Code);
        Assert.Contains("which does not fit BertMiniPreTraining", r.Err);
    }

    /// <summary>A Hugging Face classifier whose label count no declared model has: eval refuses it naming the nearest
    /// declared model and the field it differs in, while finetune --from takes its encoder (the head a start never takes).</summary>
    [Fact]
    public void HuggingFaceClassifier_OfAnUndeclaredLabelCount_IsAStartButNotAModel()
    {
        var best = FineTunedNano("ft");
        var hf = AsHuggingFace(best, "hf-4", "BertNanoClassifier", n => !n.StartsWith("classifier."),
            "{\"architectures\": [\"BertForSequenceClassification\"], " + NanoSizes + ", \"num_labels\": 4}");
        var r = Run("eval", "--model", hf, "--data", Labeled());
        Assert.Equal(1, r.Code);
        Assert.Contains("describes a bert classifier with 4 labels", r.Err);
        Assert.Contains("(the nearest, BertNanoClassifier, has num_labels 3)", r.Err);
        var again = Path.Combine(_dir, "again");
        r = Run("finetune", "--data", Labeled(), "--from", hf, "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", again);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains($"{hf} is a Hugging Face BertForSequenceClassification checkpoint, whose head (4 labels) no declared model of its size has; its encoder loaded as BertNanoPreTraining", r.Err);
        var info = Bert.Models.BertNanoClassifier.Info;
        Assert.Contains($"Initialized {info.Parameters.Count - 2} of {info.Parameters.Count} tensors from {hf}", r.Out);
        // A multi-label head is refused as a model (its sigmoid scores would be read as a softmax) but is no obstacle to a start.
        var multi = AsHuggingFace(best, "hf-multi", "BertNanoClassifier", _ => true,
            "{\"architectures\": [\"BertForSequenceClassification\"], " + NanoSizes + ", \"num_labels\": 3, \"problem_type\": \"multi_label_classification\"}");
        r = Run("predict", "--model", multi, "a great film");
        Assert.Equal(1, r.Code);
        Assert.Contains("was saved from a multi label classification model", r.Err);
        r = Run("finetune", "--data", Labeled(), "--from", multi, "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", Path.Combine(_dir, "from-multi"));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("whose head (3 labels, multi label classification) no declared model of its size has; its encoder loaded as BertNanoPreTraining", r.Err);
    }

    /// <summary>Input that would be read wrongly is one sentence each: a config whose num_labels and id2label disagree or
    /// whose id2label is not numbered 0 .. n-1, a predicted text of three tab-separated fields, a --max-len that leaves a
    /// sentence pair's second text no token (predict and finetune), a checkpoint holding NaN weights, and standard input
    /// that is not UTF-8.</summary>
    [Fact]
    public void LabelMaps_Tabs_PairRoom_NanWeights_AndInvalidUtf8_AreOneSentenceEach()
    {
        var best = FineTunedNano("ft");
        string Classifier(string extra) => "{\"architectures\": [\"BertForSequenceClassification\"], " + NanoSizes + extra + "}";
        var disagree = AsHuggingFace(best, "hf-disagree", "BertNanoClassifier", _ => true,
            Classifier(", \"num_labels\": 3, \"id2label\": {\"0\": \"neg\", \"1\": \"pos\"}"));
        var r = Run("predict", "--model", disagree, "a great film");
        Assert.Equal(1, r.Code);
        Assert.Contains("has num_labels 3 but its id2label names 2 classes; make the two agree", r.Err);
        var gaps = AsHuggingFace(best, "hf-gaps", "BertNanoClassifier", _ => true,
            Classifier(", \"id2label\": {\"0\": \"neg\", \"1\": \"pos\", \"5\": \"odd\"}"));
        r = Run("predict", "--model", gaps, "a great film");
        Assert.Equal(1, r.Code);
        Assert.Contains("id2label keys (0, 1, 5) are not the class numbers 0 to 2", r.Err);

        // A Hugging Face classifier does not say whether it was fine-tuned on pairs: a tab separates a pair's texts.
        var hf = AsHuggingFace(best, "hf", "BertNanoClassifier", _ => true, Classifier(", \"num_labels\": 3"));
        r = Run("predict", "--model", hf, "a great\tfilm\tindeed");
        Assert.Equal(1, r.Code);
        Assert.Contains("The text has 3 tab-separated fields, but a sentence pair is 'first text<TAB>second text'", r.Err);
        r = Run("predict", "--model", hf, "--max-len", "4", "a great\tfilm");
        Assert.Equal(1, r.Code);
        Assert.Contains("--max-len 4 leaves no room for both texts of the sentence pair", r.Err);
        r = Run("predict", "--model", hf, "--max-len", "5", "a great\tfilm");
        Assert.True(r.Code == 0, r.Out + r.Err);
        var pairs = Path.Combine(_dir, "pairs.tsv");
        File.WriteAllLines(pairs, Enumerable.Range(0, 20).Select(i => $"first text {i}\tsecond text {i}\t{i % 2}"));
        r = Run("finetune", "--data", pairs, "--format", "pairs", "--size", "nano", "--epochs", "1", "--max-len", "4", "--out", Path.Combine(_dir, "pairs-run"));
        Assert.Equal(1, r.Code);
        Assert.Contains("--max-len 4 leaves no room for both texts of the sentence pairs of", r.Err);
        Assert.False(Directory.Exists(Path.Combine(_dir, "pairs-run")));

        // NaN in one weight: refused at load, naming the tensor, instead of NaN scores.
        var m = Bert.Models.BertNanoClassifier.Create<float>();
        Bert.Runtime.Checkpoints.Checkpoint.Load(best, m);
        var nan = Path.Combine(_dir, "hf-nan");
        Directory.CreateDirectory(nan);
        var w = new Bert.Runtime.Checkpoints.SafeTensorsWriter();
        foreach (var p in m.Info.Parameters)
        {
            var values = m.Parameter(p.Name).ToArray();
            if (p.HfName == "bert.encoder.layer.1.output.dense.weight") values[7] = float.NaN;
            w.Add<float>(p.HfName, p.Shape, values);
        }
        w.Save(Path.Combine(nan, "model.safetensors"));
        File.Copy(Path.Combine(best, "vocab.txt"), Path.Combine(nan, "vocab.txt"));
        File.WriteAllText(Path.Combine(nan, "config.json"), Classifier(", \"num_labels\": 3"));
        r = Run("predict", "--model", nan, "a great film");
        Assert.Equal(1, r.Code);
        Assert.Contains("holds NaN values in bert.encoder.layer.1.output.dense.weight", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));

        // Standard input in Latin-1 (é as the byte E9): refused naming the line, not read as U+FFFD.
        var bytes = Encoding.UTF8.GetBytes("a fine film\ncaf").Concat(new byte[] { 0xE9, (byte)'\n' }).ToArray();
        var e = Assert.Throws<Bert.Data.DataException>(() => Program.ReadLines(bytes));
        Assert.Equal("Standard input is not valid UTF-8 (first bad byte on line 2); convert it to UTF-8, for example with `iconv -f cp1252 -t utf-8`, and pass it again.", e.Message);
        Assert.Equal(["a fine film", "", "café"], Program.ReadLines(Encoding.UTF8.GetBytes("\uFEFFa fine film\n\ncafé\n")));
        Assert.Empty(Program.ReadLines(Array.Empty<byte>()));
        Assert.Empty(Program.ReadLines(new byte[] { 0xEF, 0xBB, 0xBF }));
    }

    /// <summary>The path the in-process tests cannot take: bert in a process of its own, its standard input redirected
    /// (a pipe, as `cat texts | bert predict`), read as strict UTF-8 — a line per text, and Latin-1 bytes refused in one
    /// sentence naming the line, exit 1.</summary>
    [Fact]
    public void Predict_InItsOwnProcess_ReadsARedirectedStandardInputAsStrictUtf8()
    {
        var best = FineTunedNano("ft");
        (int Code, string Out, string Err) Child(byte[] stdin) => Bert.Tests.Support.BertProcess.Run(["predict", "--model", best], stdin);
        var r = Child(Encoding.UTF8.GetBytes("a fine film\ncafé au lait\n"));
        Assert.True(r.Code == 0, r.Out + r.Err);
        var lines = r.Out.Trim().Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.EndsWith("\ta fine film", lines[0]);
        Assert.EndsWith("\tcafé au lait", lines[1]);

        r = Child(Encoding.UTF8.GetBytes("a fine film\ncaf").Concat(new byte[] { 0xE9, (byte)'\n' }).ToArray());
        Assert.Equal(1, r.Code);
        Assert.Equal("error: Standard input is not valid UTF-8 (first bad byte on line 2); convert it to UTF-8, for example with `iconv -f cp1252 -t utf-8`, and pass it again.", r.Err.Trim());
        Assert.Equal("", r.Out);
    }
}
