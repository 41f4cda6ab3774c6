using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Bert.Models;
using Bert.Runtime;
using Bert.Runtime.Checkpoints;
using Bert.Tests.Data;
using Bert.Training;
using Xunit;

namespace Bert.Tests.Checkpoints;

/// <summary>What the variants write and read: ALBERT under transformers' ALBERT names and config, pre-LN BERT as
/// Megatron-BERT, the token classifier as BertForTokenClassification; and how fine-tuning carries a pre-trained
/// encoder into a classifier (FinetuneJob.Transfer).</summary>
public sealed class VariantCheckpointTests : IDisposable
{
    readonly string _dir = TempDir.Create();
    public void Dispose() => TempDir.Delete(_dir);

    static string[] SavedNames(string dir)
    {
        using var r = SafeTensorsReader.Open(Path.Combine(dir, Checkpoint.ModelFile));
        return r.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal).ToArray();
    }

    static JsonObject Config(string dir) => JsonNode.Parse(File.ReadAllText(Path.Combine(dir, Checkpoint.ConfigFile)))!.AsObject();

    [Fact]
    public void Albert_SavesTransformersAlbertNames_AndAnAlbertConfig()
    {
        var m = AlbertNanoClassifier.Create<float>();
        m.InitParameters(1);
        Checkpoint.Save(_dir, m);
        // AlbertForSequenceClassification's state dict with num_hidden_groups = inner_group_num = 1.
        const string layer = "albert.encoder.albert_layer_groups.0.albert_layers.0.";
        string[] expected =
        [
            "albert.embeddings.word_embeddings.weight", "albert.embeddings.position_embeddings.weight",
            "albert.embeddings.token_type_embeddings.weight", "albert.embeddings.LayerNorm.weight", "albert.embeddings.LayerNorm.bias",
            "albert.encoder.embedding_hidden_mapping_in.weight", "albert.encoder.embedding_hidden_mapping_in.bias",
            .. new[] { "attention.query", "attention.key", "attention.value", "attention.dense", "attention.LayerNorm",
                       "ffn", "ffn_output", "full_layer_layer_norm" }.SelectMany(n => new[] { layer + n + ".weight", layer + n + ".bias" }),
            "albert.pooler.weight", "albert.pooler.bias", "classifier.weight", "classifier.bias",
        ];
        Assert.Equal(expected.Order(StringComparer.Ordinal), SavedNames(_dir));

        var c = Config(_dir);
        Assert.Equal("albert", c["model_type"]!.GetValue<string>());
        Assert.Equal("AlbertForSequenceClassification", c["architectures"]![0]!.GetValue<string>());
        Assert.Equal(8, c["embedding_size"]!.GetValue<long>());
        Assert.Equal(16, c["hidden_size"]!.GetValue<long>());
        Assert.Equal(3, c["num_hidden_layers"]!.GetValue<long>());
        Assert.Equal(64, c["intermediate_size"]!.GetValue<long>());
        Assert.Equal(1, c["num_hidden_groups"]!.GetValue<long>());
        Assert.Equal(1, c["inner_group_num"]!.GetValue<long>());
        Assert.Equal("gelu", c["hidden_act"]!.GetValue<string>());   // AlbertConfig's default is gelu_new; ours is erf GELU

        // and it loads back bit-exactly
        var b = AlbertNanoClassifier.Create<float>();
        b.Parameters.Fill(0.5f);
        var report = Checkpoint.Load(_dir, b);
        Assert.Empty(report.Missing);
        Assert.True(m.Parameters.SequenceEqual(b.Parameters));
    }

    [Fact]
    public void BertConfig_IsUnchangedByTheVariants()
    {
        Assert.Equal("bert", HfConfig.ModelTypeOf(BertNanoPreTraining.Info));
        Assert.Equal("BertForPreTraining", HfConfig.ArchitectureOf(BertNanoPreTraining.Info));
        Assert.Equal("BertForSequenceClassification", HfConfig.ArchitectureOf(BertNanoClassifier.Info));
        Assert.Equal("BertForTokenClassification", HfConfig.ArchitectureOf(BertNanoTokenClassifier.Info));
        Assert.Equal(5, HfConfig.FromModel(BertNanoTokenClassifier.Info).NumLabels());
    }

    [Fact]
    public void PreLn_SavesAsMegatronBert_AndDoesNotLoadIntoPostLnBert()
    {
        var m = BertNanoPreLnPreTraining.Create<float>();
        m.InitParameters(2);
        Checkpoint.Save(_dir, m);
        var c = Config(_dir);
        Assert.Equal("megatron-bert", c["model_type"]!.GetValue<string>());
        Assert.Equal("MegatronBertForPreTraining", c["architectures"]![0]!.GetValue<string>());
        Assert.Contains("bert.encoder.ln.weight", SavedNames(_dir));

        var post = BertNanoPreTraining.Create<float>();
        post.Parameters.Fill(0.5f);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(_dir, post));
        Assert.Contains("was saved from a megatron-bert model but this model (BertNanoPreTraining) is a bert model", e.Message);
        Assert.All(post.Parameters.ToArray(), x => Assert.Equal(0.5f, x));

        var back = BertNanoPreLnPreTraining.Create<float>();
        Checkpoint.Load(_dir, back);
        Assert.True(m.Parameters.SequenceEqual(back.Parameters));
    }

    static uint[] Bits(ReadOnlySpan<float> x) => MemoryMarshal.Cast<float, uint>(x).ToArray();

    [Theory]
    [InlineData("bert")]
    [InlineData("preln")]
    public void Transfer_CopiesEverySharedTensorBitExactly_AndLeavesTheHeadAlone(string kind)
    {
        Model<float> pre = kind == "bert" ? BertNanoPreTraining.Create<float>() : BertNanoPreLnPreTraining.Create<float>();
        Model<float> cls = kind == "bert" ? BertNanoClassifier.Create<float>() : BertNanoPreLnClassifier.Create<float>();
        pre.InitParameters(11);
        cls.InitParameters(12);
        var before = cls.Parameters.ToArray();
        var shared = cls.Info.Parameters.Select(p => p.HfName).Intersect(pre.Info.Parameters.Select(p => p.HfName)).ToHashSet();
        // Everything but the classifier head is shared: embeddings, every encoder layer, the pooler.
        Assert.Equal(cls.Info.Parameters.Where(p => !p.HfName.StartsWith("classifier.", StringComparison.Ordinal)).Select(p => p.HfName).ToHashSet(), shared);

        FinetuneJob.CheckTransferable(pre.Info, cls.Info, "pre");
        int n = FinetuneJob.Transfer(pre, cls);

        Assert.Equal(shared.Count, n);
        foreach (var p in cls.Info.Parameters)
        {
            var mine = Bits(cls.Parameters.Slice((int)p.Offset, (int)p.Length));
            if (shared.Contains(p.HfName))
            {
                var q = pre.Info.Parameters.Single(x => x.HfName == p.HfName);
                Assert.True(mine.SequenceEqual(Bits(pre.Parameters.Slice((int)q.Offset, (int)q.Length))), p.HfName + " was not copied exactly");
            }
            else
                Assert.True(mine.SequenceEqual(Bits(before.AsSpan((int)p.Offset, (int)p.Length))), p.HfName + " changed");
        }
    }

    [Fact]
    public void Transfer_FromAnotherSizeOrStructure_IsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => FinetuneJob.CheckTransferable(BertMiniPreTraining.Info, BertNanoClassifier.Info, "/ckpt"));
        Assert.Contains("BertMiniPreTraining (Hidden 256", e.Message);
        Assert.Contains("--size", e.Message);
        Assert.Throws<ArgumentException>(() => FinetuneJob.CheckTransferable(BertNanoPreLnPreTraining.Info, BertNanoClassifier.Info, "/ckpt"));
        Assert.Throws<ArgumentException>(() => FinetuneJob.CheckTransferable(AlbertNanoClassifier.Info, BertNanoClassifier.Info, "/ckpt"));
    }
}
