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
