using Bert.Models;
using Bert.Runtime;
using Bert.Training;
using Xunit;

namespace Bert.Tests.Training;

/// <summary>--reinit: the named parts of a pre-trained encoder keep the classifier's fresh initialization (the
/// from-scratch arm's values), everything else is copied.</summary>
public class ReinitTests
{
    static (Model<float> Pre, Model<float> Fresh, Model<float> Tuned) Transfer(string? spec)
    {
        var pre = BertNanoPreTraining.Create<float>(); pre.InitParameters(1);
        var fresh = BertNanoClassifier.Create<float>(); fresh.InitParameters(2);
        var tuned = BertNanoClassifier.Create<float>(); tuned.InitParameters(2);
        FinetuneJob.Transfer(pre, tuned, Reinit.Parse(spec));
        return (pre, fresh, tuned);
    }

    /// <summary>From a fine-tuned classifier of the same shape, everything but the task head is copied: its classes are the
    /// new data's, so the head keeps the new model's initialization.</summary>
    [Fact]
    public void FromAClassifier_TheHeadStartsAfresh()
    {
        var tuned = BertNanoClassifier.Create<float>(); tuned.InitParameters(1);
        var next = BertNanoClassifier.Create<float>(); next.InitParameters(2);
        var fresh = BertNanoClassifier.Create<float>(); fresh.InitParameters(2);
        Assert.Equal(next.Info.Parameters.Count - 2, FinetuneJob.Transfer(tuned, next));
        foreach (var p in next.Info.Parameters)
            Assert.Equal(Tensor(p.HfName.StartsWith(FinetuneJob.HeadPrefix, StringComparison.Ordinal) ? fresh : tuned, p.HfName), Tensor(next, p.HfName));
    }

    /// <summary>The commands copy a start in first and draw only what it does not give (InitOrStartFrom): the same bits as
    /// drawing everything and copying over it, under each --reinit.</summary>
    [Theory]
    [InlineData(null)]
    [InlineData("qk")]
    [InlineData("top-1,pooler")]
    public void CopyingFirstAndDrawingTheRest_GivesTheBitsOfDrawingAllThenCopying(string? spec)
    {
        var (_, _, tuned) = Transfer(spec);
        var pre = BertNanoPreTraining.Create<float>(); pre.InitParameters(1);
        var lazy = BertNanoClassifier.Create<float>();
        var copied = new HashSet<string>(StringComparer.Ordinal);
        int n = FinetuneJob.Transfer(pre, lazy, Reinit.Parse(spec), copied: copied);
        Assert.Equal(n, copied.Count);
        lazy.InitParameters(2, only: lazy.Info.Parameters.Select(p => p.HfName).Where(h => !copied.Contains(h)).ToHashSet());
        Assert.Equal(tuned.Parameters.ToArray().Select(BitConverter.SingleToInt32Bits), lazy.Parameters.ToArray().Select(BitConverter.SingleToInt32Bits));
    }

    static float[] Tensor(Model<float> m, string hf)
    {
        var p = m.Info.Parameters.Single(x => x.HfName == hf);
        return m.Parameters.Slice((int)p.Offset, (int)p.Length).ToArray();
    }

    /// <summary>Which tensors of the classifier start afresh under a spec (the head always does).</summary>
    static HashSet<string> Fresh(string? spec)
    {
        var (pre, fresh, tuned) = Transfer(spec);
        var result = new HashSet<string>();
        foreach (var p in tuned.Info.Parameters)
        {
            var t = Tensor(tuned, p.HfName);
            if (t.AsSpan().SequenceEqual(Tensor(fresh, p.HfName))) result.Add(p.HfName);
            else Assert.Equal(Tensor(pre, p.HfName), t);   // anything not fresh is the pre-trained tensor, bit for bit
        }
        return result;
    }

    static readonly string[] Head = ["classifier.weight", "classifier.bias"];

    [Fact]
    public void None_CopiesTheWholeEncoder()
    {
        Assert.Null(Reinit.Parse(null));
        Assert.Null(Reinit.Parse(" none "));
        // Zero-initialized biases and LayerNorms are equal in both models, so compare the weights that differ.
        var fresh = Fresh(null).Where(n => !n.EndsWith(".bias") && !n.Contains("LayerNorm")).ToHashSet();
        Assert.Equal(["classifier.weight"], fresh);
    }

    [Theory]
    [InlineData("qk", new[] { "attention.self.query.weight", "attention.self.key.weight" })]
    [InlineData("qkv", new[] { "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight" })]
    [InlineData("attention", new[] { "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight", "attention.output.dense.weight" })]
    [InlineData("ffn", new[] { "intermediate.dense.weight", "output.dense.weight" })]
    public void APart_StartsAfreshInEveryLayer_AndNothingElse(string spec, string[] inLayer)
    {
        var expected = new[] { 0, 1 }.SelectMany(i => inLayer.Select(n => $"bert.encoder.layer.{i}.{n}")).Append(Head[0]).ToHashSet();
        var fresh = Fresh(spec).Where(n => !n.EndsWith(".bias") && !n.Contains("LayerNorm")).ToHashSet();
        Assert.Equal(expected.Order(), fresh.Order());
    }

    [Fact]
    public void TopOne_IsTheLastLayer_AndParts_Combine()
    {
        var fresh = Fresh("top-1,pooler").Where(n => !n.EndsWith(".bias") && !n.Contains("LayerNorm")).ToHashSet();
        var expected = BertNanoClassifier.Create<float>().Info.Parameters.Select(p => p.HfName)
            .Where(n => (n.StartsWith("bert.encoder.layer.1.") || n.StartsWith("bert.pooler.") || n == Head[0]) && !n.EndsWith(".bias") && !n.Contains("LayerNorm"));
        Assert.Equal(expected.Order(), fresh.Order());
        // The matcher itself names the biases and LayerNorms too (their fresh values equal the pre-trained init here).
        var info = BertNanoClassifier.Create<float>().Info;
        var r = Reinit.Parse("top-1")!;
        Assert.True(r.Matches("bert.encoder.layer.1.output.LayerNorm.weight", info));
        Assert.False(r.Matches("bert.encoder.layer.0.output.LayerNorm.weight", info));
        Assert.True(Reinit.Parse("layernorm")!.Matches("bert.encoder.layer.0.attention.output.LayerNorm.bias", info));
        Assert.False(Reinit.Parse("layernorm")!.Matches("bert.embeddings.LayerNorm.weight", info));
        Assert.False(Reinit.Parse("ffn")!.Matches("bert.encoder.layer.0.attention.output.dense.weight", info));
    }

    [Theory]
    [InlineData("attn", "Unknown part 'attn'")]
    [InlineData("top-0", "Unknown part 'top-0'")]
    [InlineData("top-N", "Unknown part 'top-N'")]   // the placeholder itself, not a number of layers
    [InlineData("qk,top-x", "Unknown part 'top-x'")]
    public void UnknownParts_AreRefused(string spec, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => Reinit.Parse(spec));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void PartsThatNameNothing_AreRefused()
    {
        var pre = BertNanoPreTraining.Create<float>(); var cls = BertNanoClassifier.Create<float>();
        Assert.Contains("more layers than BertNanoClassifier has (2)", Assert.Throws<ArgumentException>(() => FinetuneJob.Transfer(pre, cls, Reinit.Parse("top-3"))).Message);
        // ALBERT shares one layer: it has no numbered layers to re-initialize, but its attention has a query and key.
        var albert = AlbertNanoClassifier.Create<float>().Info;
        Assert.Contains("names no tensor of AlbertNanoClassifier", Assert.Throws<ArgumentException>(() => Reinit.Parse("top-1")!.CheckMatches(albert)).Message);
        Reinit.Parse("qk,ffn,layernorm")!.CheckMatches(albert);
        Assert.True(Reinit.Parse("ffn")!.Matches("albert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output.weight", albert));
    }
}
