using System.Text;
using System.Text.Json;
using Bert.Runtime.Checkpoints;
using Xunit;

namespace Bert.Tests.Cli;

/// <summary>`bert parity-batch`: what it writes for bench/parity/parity.py is self-consistent — the loss is the one the
/// logits give, the gradients cover every parameter with its shape — and wrong checkpoints are refused.</summary>
[Collection("Console")]
public class ParityBatchTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("bert-parity-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    string Pretrained()
    {
        var corpus = Path.Combine(_dir, "corpus.txt");
        var rng = new Random(3);
        string[] words = ["the", "movie", "was", "good", "bad", "great", "phone", "battery", "film", "actor", "story", "really", "not", "very", "and"];
        var sb = new StringBuilder();
        // Short documents (2-3 sentences of 3-6 words) and --max-len 64: sequences of several lengths, so padding is exercised.
        for (int d = 0; d < 40; d++)
        {
            for (int s = 0; s < 2 + rng.Next(2); s++) sb.Append(string.Join(' ', Enumerable.Range(0, 3 + rng.Next(4)).Select(_ => words[rng.Next(words.Length)]))).Append(". ");
            sb.Append("\n\n");
        }
        File.WriteAllText(corpus, sb.ToString());
        var pre = Path.Combine(_dir, "pre");
        var r = CliTests.Run("pretrain", "--corpus", corpus, "--size", "nano", "--steps", "2", "--batch", "8", "--max-len", "64", "--out", pre);
        Assert.True(r.Code == 0, r.Out + r.Err);
        return corpus;
    }

    static double LogSumExp(double[] xs) { double m = xs.Max(); return m + Math.Log(xs.Sum(x => Math.Exp(x - m))); }

    [Fact]
    public void WritesInputsLogitsAndGradients_ThatAgreeWithTheLoss()
    {
        var corpus = Pretrained();
        var outDir = Path.Combine(_dir, "parity");
        var r = CliTests.Run("parity-batch", Path.Combine(_dir, "pre"), "--out", outDir, "--batch", "6", "--max-len", "64", "--corpus", corpus);
        Assert.True(r.Code == 0, r.Out + r.Err);

        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(outDir, "batch.json")));
        var root = doc.RootElement;
        int[][] Rows(string name) => root.GetProperty(name).EnumerateArray().Select(a => a.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();
        int[] Ints(string name) => root.GetProperty(name).EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var ids = Rows("input_ids"); var types = Rows("token_type_ids"); var mask = Rows("attention_mask");
        int B = ids.Length, T = ids[0].Length;
        Assert.Equal(6, B);
        Assert.All(ids.Concat(types).Concat(mask), row => Assert.Equal(T, row.Length));
        Assert.Contains(mask, row => row.Contains(0));                                   // some padding is exercised
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) if (mask[b][t] == 0) Assert.Equal(0, ids[b][t]); // padding is [PAD]
        var positions = Ints("masked_positions"); var labels = Ints("mlm_labels"); var nsp = Ints("nsp_labels");
        Assert.Equal(positions.Length, labels.Length);
        Assert.Equal(B, nsp.Length);
        Assert.All(positions, p => Assert.Equal(1, mask[p / T][p % T]));                  // predictions only at real tokens
        Assert.All(nsp, l => Assert.InRange(l, 0, 1));                                    // the next-sentence loss is exercised too

        // The loss written is the mean MLM cross-entropy plus the mean NSP cross-entropy of the logits written.
        var mlm = root.GetProperty("mlm_logits").EnumerateArray().Select(a => a.EnumerateArray().Select(x => x.GetDouble()).ToArray()).ToArray();
        var nspLogits = root.GetProperty("nsp_logits").EnumerateArray().Select(a => a.EnumerateArray().Select(x => x.GetDouble()).ToArray()).ToArray();
        Assert.Equal(labels.Length, mlm.Length);
        Assert.All(mlm, row => Assert.Equal(30522, row.Length));
        double mlmLoss = Enumerable.Range(0, labels.Length).Average(g => LogSumExp(mlm[g]) - mlm[g][labels[g]]);
        double nspLoss = Enumerable.Range(0, B).Average(b => LogSumExp(nspLogits[b]) - nspLogits[b][nsp[b]]);
        Assert.Equal(mlmLoss + nspLoss, root.GetProperty("loss").GetDouble(), 4);

        // Every parameter's gradient, under its Hugging Face name and with its shape.
        var info = Bert.Models.Catalog.ByName(root.GetProperty("bert_model").GetString()!).Info;
        Assert.Equal("BertNanoPreTraining", info.Name);
        using var grads = SafeTensors.Open(Path.Combine(outDir, "gradients.safetensors"));
        Assert.Equal(info.Parameters.Count, grads.Tensors.Count);
        foreach (var p in info.Parameters)
            Assert.Equal(p.Shape.Select(x => (long)x), grads[p.HfName].Shape);
        float Max(string name) => grads.Read<float>(name).Max(MathF.Abs);
        Assert.True(Max("bert.embeddings.word_embeddings.weight") > 0);
        Assert.True(Max("cls.seq_relationship.weight") > 0);
        // Softmax ignores a constant added to every score, so the key bias has no gradient (up to rounding).
        Assert.True(Max("bert.encoder.layer.0.attention.self.key.bias") < 1e-4 * Max("bert.encoder.layer.0.attention.self.query.bias"));
    }

    /// <summary>--out takes a new or empty folder, or an earlier parity-batch's (its two files replaced); a folder with anything
    /// else in it — here the checkpoint's own folder — is refused in one sentence before any work, and left as it was.</summary>
    [Fact]
    public void AnOutFolderHoldingOtherFiles_IsRefused_AndAnEarlierBatchIsReplaced()
    {
        var corpus = Pretrained();
        var pre = Path.Combine(_dir, "pre");
        var before = Directory.GetFiles(pre).ToDictionary(f => f, File.ReadAllBytes);
        var r = CliTests.Run("parity-batch", pre, "--out", pre, "--batch", "4", "--max-len", "64", "--corpus", corpus);
        Assert.NotEqual(0, r.Code);
        Assert.Contains("holds other files", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));
        Assert.Equal(before.Keys.Order(), Directory.GetFiles(pre).Order());
        Assert.All(before, kv => Assert.Equal(kv.Value, File.ReadAllBytes(kv.Key)));

        var outDir = Path.Combine(_dir, "parity");
        r = CliTests.Run("parity-batch", pre, "--out", outDir, "--batch", "4", "--max-len", "64", "--corpus", corpus);
        Assert.True(r.Code == 0, r.Out + r.Err);
        r = CliTests.Run("parity-batch", pre, "--out", outDir, "--batch", "5", "--max-len", "64", "--corpus", corpus);
        Assert.True(r.Code == 0, r.Out + r.Err);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(outDir, "batch.json")));
        Assert.Equal(5, doc.RootElement.GetProperty("input_ids").GetArrayLength());   // the second run's batch
        Assert.Equal(new[] { "batch.json", "gradients.safetensors" }, Directory.GetFiles(outDir).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void AClassifierCheckpoint_IsRefusedInOneSentence()
    {
        var corpus = Pretrained();
        var labeled = Path.Combine(_dir, "set.tsv");
        File.WriteAllText(labeled, string.Join("\n", Enumerable.Range(0, 20).Select(i => i % 2 == 0 ? $"great film {i}\t1" : $"bad phone {i}\t0")) + "\n");
        var ft = Path.Combine(_dir, "ft");
        var r = CliTests.Run("finetune", "--data", labeled, "--size", "nano", "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        var outDir = Path.Combine(_dir, "never");
        r = CliTests.Run("parity-batch", ft, "--out", outDir, "--corpus", corpus);
        Assert.NotEqual(0, r.Code);
        Assert.Contains("not a pre-training model", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));
        Assert.False(Directory.Exists(outDir));

        r = CliTests.Run("parity-batch", Path.Combine(_dir, "pre"), "--out", outDir, "--batch", "0", "--corpus", corpus);
        Assert.NotEqual(0, r.Code);
        Assert.Contains("--batch 0 is not a count; give 1 or more", r.Err);
        Assert.False(Directory.Exists(outDir));
    }
}
