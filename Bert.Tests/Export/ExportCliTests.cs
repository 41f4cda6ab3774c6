using Bert.Models;
using Bert.Runtime.Checkpoints;
using Bert.Tests.Cli;
using Bert.Tests.Support;
using Xunit;

namespace Bert.Tests.Export;

/// <summary>`bert export --onnx`: from a checkpoint folder and from a size, and its mistakes.</summary>
[Collection("Console")]
public class ExportCliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("bert-export-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    [Fact]
    public void Checkpoint_ExportsWhatItHolds()
    {
        var model = OnnxExportTests.RandomModel(BertNanoClassifier.Create<float>, 7);
        var ckpt = Path.Combine(_dir, "ckpt");
        Checkpoint.Save(ckpt, model);
        var file = Path.Combine(_dir, "out", "nano.onnx");
        var r = CliTests.Run("export", "--onnx", file, "--model", ckpt);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("BertNanoClassifier", r.Out);
        Assert.Contains("logits", r.Out);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(file)!, "*.tmp")); // written through a temporary file, then renamed

        // The file holds the checkpoint's weights: ONNX Runtime gives our logits.
        var x = OnnxExportTests.Batch.Make(2, 10, 64, 8);
        var ours = OnnxExportTests.OurLogits(model, x)[0];
        var (theirs, dims) = OnnxExportTests.RunOnnx(File.ReadAllBytes(file), x)["logits"];
        Assert.Equal([2, 3], dims);
        Assert.True(OnnxExportTests.RelativeError(ours, theirs) <= Tolerances.OnnxVsOursRel);
    }

    /// <summary>An existing file is not written over (the same rule as --hf's folder), and the options of a fresh model
    /// are refused rather than dropped: --classes without a classifier or tagger head, --seed or --head with --model.</summary>
    [Fact]
    public void Onnx_RefusesAnExistingFile_AndOptionsItWouldIgnore()
    {
        string Refusal(params string[] args)
        {
            var x = CliTests.Run(args);
            Assert.Equal(1, x.Code);
            Assert.Single(x.Err.Trim().Split('\n'));
            return x.Err;
        }
        var keep = Path.Combine(_dir, "keep.onnx");
        File.WriteAllText(keep, "precious");
        Assert.Contains($"--onnx {keep} already exists; give a new file name, or delete the old file first", Refusal("export", "--onnx", keep, "--size", "nano"));
        Assert.Equal("precious", File.ReadAllText(keep));
        Assert.Contains("--classes applies to a classifier or tagger head", Refusal("export", "--onnx", Path.Combine(_dir, "c.onnx"), "--size", "nano", "--classes", "5"));
        var ckpt = Path.Combine(_dir, "ckpt");
        Checkpoint.Save(ckpt, OnnxExportTests.RandomModel(BertNanoClassifier.Create<float>, 3));
        Assert.Contains("--seed describes a fresh model (with --size); --model exports the checkpoint as it is", Refusal("export", "--onnx", Path.Combine(_dir, "s.onnx"), "--model", ckpt, "--seed", "4"));
        Assert.False(File.Exists(Path.Combine(_dir, "c.onnx")) || File.Exists(Path.Combine(_dir, "s.onnx")));
    }

    [Fact]
    public void Size_ExportsAFreshModel()
    {
        var file = Path.Combine(_dir, "albert.onnx");
        var r = CliTests.Run("export", "--onnx", file, "--size", "albert", "--head", "classifier");
        Assert.True(r.Code == 0, r.Out + r.Err);
        var x = OnnxExportTests.Batch.Make(3, 5, 100, 9);
        var (logits, dims) = OnnxExportTests.RunOnnx(File.ReadAllBytes(file), x)["logits"];
        Assert.Equal([3, 2], dims);
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));

        file = Path.Combine(_dir, "pre.onnx");
        r = CliTests.Run("export", "--onnx", file, "--size", "nano");
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.Contains("prediction_logits", r.Out);
        Assert.Contains("seq_relationship_logits", r.Out);
    }

    /// <summary>`export --hf`: a fine-tuned checkpoint as a folder to publish, in f32, f16 and bf16: exactly the four files
    /// transformers reads (no optimizer or trainer state), the weights in that dtype, config.json's torch_dtype and class
    /// names kept, and bert predicts from it as from the checkpoint (bf16 to its rounding); a folder that holds files,
    /// weights f16 cannot hold, and --dtype with --onnx are one sentence each.</summary>
    [Fact]
    public void Hf_WritesAPublishableFolder_InEachDtype_ThatPredictsAsTheCheckpoint()
    {
        var data = Path.Combine(_dir, "set.tsv");
        File.WriteAllLines(data, Enumerable.Range(0, 40).Select(i => i % 2 == 0 ? $"a really great film number {i}\tpositive" : $"a very bad phone number {i}\tnegative"));
        var ft = Path.Combine(_dir, "ft");
        var r = CliTests.Run("finetune", "--data", data, "--size", "nano", "--epochs", "1", "--batch", "8", "--max-len", "16", "--out", ft);
        Assert.True(r.Code == 0, r.Out + r.Err);
        var best = Path.Combine(ft, "best");
        var mine = CliTests.Run("predict", "--model", best, "a really great film").Out.Trim().Split('\t');

        foreach (var (dtype, file, tolerance) in new[] { ("f32", SafeTensorDType.F32, 0.0), ("f16", SafeTensorDType.F16, 2e-3), ("bf16", SafeTensorDType.BF16, 2e-2) })
        {
            var hf = Path.Combine(_dir, "hub", dtype);
            r = CliTests.Run("export", "--hf", hf, "--model", best, "--dtype", dtype);
            Assert.True(r.Code == 0, r.Out + r.Err);
            Assert.Contains($"BertNanoClassifier with {dtype} weights", r.Out);
            Assert.Contains($"AutoModelForSequenceClassification.from_pretrained(\"{hf}\")", r.Out);
            Assert.Equal(new[] { "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt" }, Directory.GetFiles(hf).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            Assert.DoesNotContain(Directory.GetDirectories(Path.Combine(_dir, "hub")), d => Path.GetFileName(d).StartsWith('.'));   // no temporary folder left
            using (var reader = SafeTensorsReader.Open(Path.Combine(hf, "model.safetensors")))
                Assert.All(reader.Tensors, t => Assert.Equal(file, t.DType));
            var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(hf, "config.json")))!;
            Assert.Equal(dtype switch { "f16" => "float16", "bf16" => "bfloat16", _ => "float32" }, config["torch_dtype"]!.GetValue<string>());
            Assert.Equal("positive", config["id2label"]!["1"]!.GetValue<string>());

            var theirs = CliTests.Run("predict", "--model", hf, "a really great film");
            Assert.True(theirs.Code == 0, theirs.Out + theirs.Err);
            var line = theirs.Out.Trim().Split('\t');
            Assert.Equal(mine[0], line[0]);
            Assert.InRange(double.Parse(line[1], System.Globalization.CultureInfo.InvariantCulture) - double.Parse(mine[1], System.Globalization.CultureInfo.InvariantCulture), -tolerance - 1e-3, tolerance + 1e-3);
        }

        string Refusal(params string[] args)
        {
            var x = CliTests.Run(args);
            Assert.Equal(1, x.Code);
            Assert.Single(x.Err.Trim().Split('\n'));
            return x.Err;
        }
        Assert.Contains("already holds files; give a new or empty folder (export never writes over files)", Refusal("export", "--hf", Path.Combine(_dir, "hub", "bf16"), "--model", best));
        Assert.Contains("--dtype applies to --hf only (an ONNX graph keeps f32 weights); drop it, or export with --hf.", Refusal("export", "--onnx", Path.Combine(_dir, "x.onnx"), "--size", "nano", "--dtype", "bf16"));
        Assert.Contains("--size describes a fresh model, which only --onnx exports", Refusal("export", "--hf", Path.Combine(_dir, "z"), "--size", "nano"));
        // The current folder (a child process, so that this one's stays put), empty as it may be, is not replaced.
        var here = Directory.CreateDirectory(Path.Combine(_dir, "here")).FullName;
        var child = BertProcess.Run(["export", "--hf", ".", "--model", best], workingDirectory: here);
        Assert.Equal(1, child.Code);
        Assert.Contains("--hf . is the current folder (or holds it), which the export would replace; give a new folder's name.", child.Err);
        Assert.Empty(Directory.GetFileSystemEntries(here));
        // A trailing separator (as tab completion leaves it) names the same folder.
        var slash = Path.Combine(_dir, "slash") + Path.DirectorySeparatorChar;
        r = CliTests.Run("export", "--hf", slash, "--model", best);
        Assert.True(r.Code == 0, r.Out + r.Err);
        Assert.True(File.Exists(Path.Combine(_dir, "slash", "model.safetensors")));
        Assert.DoesNotContain(Directory.GetDirectories(_dir), d => Path.GetFileName(d).StartsWith('.'));
        Assert.Contains("one of the two", Refusal("export", "--onnx", Path.Combine(_dir, "x.onnx"), "--hf", Path.Combine(_dir, "y"), "--model", best));

        // A weight past float16's largest value (65504) would be infinite in f16.
        var big = Path.Combine(_dir, "big");
        Directory.CreateDirectory(big);
        foreach (var f in Directory.GetFiles(best)) File.Copy(f, Path.Combine(big, Path.GetFileName(f)));
        var m = BertNanoClassifier.Create<float>();
        Checkpoint.Load(big, m);
        m.Parameter("classifier.bias")[0] = 1e5f;
        using (var reader = SafeTensorsReader.Open(Path.Combine(big, "model.safetensors")))
            Checkpoint.Save(big, m, new Dictionary<string, string>(reader.Metadata), labels: ["negative", "positive", "LABEL_2"]);
        Assert.Contains("has weights beyond float16's range (classifier.bias holds 1E+05, above 65504), which f16 would make infinite; export with --dtype bf16", Refusal("export", "--hf", Path.Combine(_dir, "big-f16"), "--model", big, "--dtype", "f16"));
        Assert.False(Directory.Exists(Path.Combine(_dir, "big-f16")));
    }

    [Theory]
    [InlineData("neither", "Say which model")]
    [InlineData("both", "not both")]
    [InlineData("missing", "does not exist")]
    [InlineData("size", "no model size")]
    public void Mistakes_AreOneSentenceAndNonZero(string mistake, string says)
    {
        var file = Path.Combine(_dir, "x.onnx");
        string[] args = mistake switch
        {
            "neither" => ["export", "--onnx", file],
            "both" => ["export", "--onnx", file, "--model", _dir, "--size", "nano"],
            "missing" => ["export", "--onnx", file, "--model", Path.Combine(_dir, "nothing-here")],
            _ => ["export", "--onnx", file, "--size", "gigantic"],
        };
        var r = CliTests.Run(args);
        Assert.NotEqual(0, r.Code);
        Assert.Contains(says, r.Err);
        Assert.StartsWith("error: ", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));
        Assert.False(File.Exists(file));
    }
}
