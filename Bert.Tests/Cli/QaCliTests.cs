using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Bert.Data;
using Xunit;

namespace Bert.Tests.Cli;

/// <summary>Extractive question answering end to end: finetune --format squad, eval, predict, and the Hugging Face
/// folder it writes.</summary>
public partial class CliTests
{
    static readonly string[] Filler = ["the", "river", "runs", "past", "an", "old", "mill", "and", "a", "small", "farm", "near", "town", "while", "birds", "sing"];
    static readonly string[] Codes = ["red", "blue", "green", "seven", "tiger", "apple", "stone", "cloud", "violet", "eagle"];

    /// <summary>SQuAD-2.0-style questions on made-up texts: "what is the code?" whose answer is the word after "the code is"
    /// somewhere in the text; one question in five has a text without a code (no answer).</summary>
    string QaFile(string name, int questions, int seed)
    {
        var rng = new Random(seed);
        var lines = new List<string>();
        for (int i = 0; i < questions; i++)
        {
            var words = Enumerable.Range(0, 8 + rng.Next(16)).Select(_ => Filler[rng.Next(Filler.Length)]).ToList();
            bool none = i % 5 == 4;
            string code = Codes[rng.Next(Codes.Length)];
            int at = rng.Next(words.Count + 1);
            if (!none) words.InsertRange(at, ["the", "code", "is", code + ","]);
            string context = string.Join(' ', words) + ".";
            int start = none ? -1 : string.Join(' ', words.Take(at + 3)).Length + 1;
            var answers = new JsonObject { ["text"] = none ? new JsonArray() : new JsonArray(code), ["answer_start"] = none ? new JsonArray() : new JsonArray(start) };
            lines.Add(new JsonObject { ["id"] = $"{name}-{i}", ["question"] = "What is the code?", ["context"] = context, ["answers"] = answers }.ToJsonString());
        }
        return WriteLines(name, lines);
    }

    [Fact]
    public void Finetune_OnSquadQuestions_ThenEvalAndPredictAnswerSpans()
    {
        var train = QaFile("qa-train.jsonl", 240, 1);
        var dev = QaFile("qa-dev.jsonl", 40, 2);
        var ft = Path.Combine(_dir, "reader");
        var r = Run("finetune", "--data", train, "--dev", dev, "--format", "squad", "--size", "nano", "--epochs", "6", "--batch", "16", "--max-len", "32", "--doc-stride", "8", "--lr", "2e-3", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        // Texts of up to 28 words plus a question of 5 pieces do not fit 32 tokens: the long ones are read in windows.
        Assert.Matches(@"BertNanoQuestionAnswering on qa-train\.jsonl → qa-dev\.jsonl; \d+ training windows of up to 32 tokens \([1-9]\d* contexts read in several, stride 8\); unanswerable questions: the empty answer may be predicted\.", r.Out);
        Assert.Matches(@"step \d+ \(epoch 1\): dev F1 \d+\.\d\d %, exact match \d+\.\d\d % \(answerable F1 \d+\.\d\d %, unanswerable right \d+\.\d\d %\)", r.Out);
        var best = Path.Combine(ft, "best");
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(best, "config.json")))!;
        Assert.Equal("BertForQuestionAnswering", config["architectures"]![0]!.GetValue<string>());
        var printed = Regex.Match(r.Out, @"Best dev F1 (\d+\.\d\d) %, exact match (\d+\.\d\d) %");
        Assert.True(printed.Success, r.Out);
        // Far above what a model that has not learnt the task gets (the empty answer for every question scores 20 %).
        Assert.True(double.Parse(printed.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= 80, r.Out);

        // eval scores the dev file as fine-tuning did, with SQuAD's own scoring.
        r = Run("eval", "--model", best, "--data", dev, "--max-len", "32");
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Matches($@"│ 40 +│ 8 +│ {printed.Groups[2].Value} % +│ {printed.Groups[1].Value} % +│ \d+\.\d\d % +│ \d+\.\d\d % +│", r.Out);

        // Without --max-len, eval reads windows of the length the model was fine-tuned with (saved with it).
        r = Run("eval", "--model", best, "--data", dev);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Matches($@"│ 40 +│ 8 +│ {printed.Groups[2].Value} % +│ {printed.Groups[1].Value} % +│", r.Out);

        // predict: question TAB context in, answer (the context's own characters) TAB probability TAB question out.
        var set = Squad.Read(dev);
        var answerable = set.Examples.Where(e => !e.Impossible).Take(6).ToList();
        Bert.Cli.Program.StandardInput = new StringReader(string.Join("\n", answerable.Select(e => e.Question + "\t" + e.Context).Prepend("")));
        try { r = Run("predict", "--model", best, "--max-len", "32"); }
        finally { Bert.Cli.Program.StandardInput = null; }
        Assert.True(r.Code == 0, r.Out + r.Err);
        var outLines = r.Out.Split('\n');
        Assert.Equal("", outLines[0]);   // a blank line in, a blank line out
        int right = 0;
        for (int i = 0; i < answerable.Count; i++)
        {
            var fields = outLines[i + 1].Split('\t');
            Assert.Equal(3, fields.Length);
            Assert.Matches(@"^[01]\.\d{3}$", fields[1]);
            Assert.Equal("What is the code?", fields[2]);
            Assert.Contains(fields[0], answerable[i].Context);
            if (fields[0] == answerable[i].Answers[0].Text) right++;
        }
        Assert.True(right >= 5, r.Out);
        string answered = r.Out;

        // As a Hugging Face folder (what transformers' save_pretrained of a BertForQuestionAnswering holds: no bert_model
        // in config.json), it loads by its architecture and sizes and answers alike.
        var hf = Path.Combine(_dir, "reader-hf");
        r = Run("export", "--hf", hf, "--model", best);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("AutoModelForQuestionAnswering.from_pretrained", r.Out);
        var hfConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(hf, "config.json")))!.AsObject();
        Assert.Equal("BertForQuestionAnswering", hfConfig["architectures"]![0]!.GetValue<string>());
        Assert.False(hfConfig.ContainsKey("id2label"));
        hfConfig.Remove("bert_model");
        File.WriteAllText(Path.Combine(hf, "config.json"), hfConfig.ToJsonString());
        Bert.Cli.Program.StandardInput = new StringReader(string.Join("\n", answerable.Select(e => e.Question + "\t" + e.Context).Prepend("")));
        try { r = Run("predict", "--model", hf, "--max-len", "32"); }
        finally { Bert.Cli.Program.StandardInput = null; }
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("Hugging Face BertForQuestionAnswering checkpoint; loaded as BertNanoQuestionAnswering", r.Err);
        Assert.Equal(answered, r.Out);

        // A line without the tab is one sentence; so is a question-answering model given labeled texts.
        r = Run("predict", "--model", best, "What is the code?");
        Assert.Equal(1, r.Code);
        Assert.Contains("is not 'question<TAB>context'", r.Err);
        r = Run("eval", "--model", best, "--data", "amazon");
        Assert.Equal(1, r.Code);
        Assert.Contains("holds a question-answering model (BertNanoQuestionAnswering), which is scored on a SQuAD file of questions", r.Err);
        r = Run("finetune", "--data", "amazon", "--format", "squad", "--size", "nano", "--out", Path.Combine(_dir, "other"));
        Assert.Equal(1, r.Code);
        Assert.Contains("amazon is a set of labeled texts, and --format squad reads questions", r.Err);
        r = Run("finetune", "--data", train, "--size", "nano", "--doc-stride", "8", "--out", Path.Combine(_dir, "other"));
        Assert.Equal(1, r.Code);
        Assert.Contains("--doc-stride applies to question answering; add --format squad", r.Err);

        // Fine-tuning a question-answering checkpoint further keeps its answer-span head.
        r = Run("finetune", "--data", train, "--format", "squad", "--from", best, "--epochs", "1", "--batch", "16", "--max-len", "32", "--out", Path.Combine(_dir, "again"));
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains($"Initialized {Bert.Models.BertNanoQuestionAnswering.Info.Parameters.Count} of {Bert.Models.BertNanoQuestionAnswering.Info.Parameters.Count} tensors from {best}.", r.Out);
    }
}
