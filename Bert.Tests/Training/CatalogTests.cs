using Bert.Models;
using Xunit;

namespace Bert.Tests.Training;

/// <summary>The catalog names its models without touching them (their static initializers run on first use of
/// <c>Info</c>), so each entry's name, size, head and classes must agree with the model it loads.</summary>
public class CatalogTests
{
    [Fact]
    public void EveryEntry_NamesTheModelItLoads()
    {
        foreach (var e in Catalog.All)
        {
            Assert.Equal(e.Name, e.Info.Name);
            Assert.Equal(e.Name, e.Create().Info.Name);
            if (e.Head == "classifier") Assert.Equal(e.Classes, (int)e.Info.Constants.GetValueOrDefault("Classes", 2));
        }
        Assert.Equal(Catalog.All.Count, Catalog.All.Select(e => e.Name).Distinct().Count());
        Assert.Same(Catalog.ByName("BertMiniClassifier"), Catalog.Get("mini", "classifier"));
        // A classifier with exactly that many classes, else the smallest with more; past the largest, one sentence.
        Assert.Equal("BertMini3Classifier", Catalog.Get("mini", "classifier", 3).Name);
        Assert.Equal("BertMini5Classifier", Catalog.Get("mini", "classifier", 4).Name);
        Assert.Equal("BertBase20Classifier", Catalog.Get("base", "classifier", 14).Name);
        Assert.Equal("BertMini48TokenClassifier", Catalog.Get("mini", "token-classifier", 17).Name);
        Assert.Contains("There is no base classifier with 21 classes; declare one in Bert.Models/Models", Assert.Throws<ArgumentException>(() => Catalog.Get("base", "classifier", 21)).Message);
        Assert.Contains("no model named 'BertHugeClassifier'", Assert.Throws<ArgumentException>(() => Catalog.ByName("BertHugeClassifier")).Message);
    }

    static Bert.Runtime.Checkpoints.HfConfig Config(string json) => Bert.Runtime.Checkpoints.HfConfig.Parse(json);

    /// <summary>Hugging Face configs as the Hub's BERT repositories have them (no bert_model field) find the declared
    /// model of their architecture, type and sizes; every declared model's own config finds itself.</summary>
    [Fact]
    public void FromHfConfig_FindsTheDeclaredModelOfThoseSizes()
    {
        // bert-base-uncased (BertForMaskedLM) and google/bert_uncased_L-4_H-256_A-4 (BERT-Mini; no architectures field).
        Assert.Equal("BertBasePreTraining", Catalog.FromHfConfig(Config("""
            {"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
             "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2}
            """), "config.json").Name);
        Assert.Equal("BertMiniPreTraining", Catalog.FromHfConfig(Config("""
            {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024, "vocab_size": 30522}
            """), "config.json").Name);
        Assert.Equal("BertMini3Classifier", Catalog.FromHfConfig(Config("""
            {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "hidden_size": 256, "num_hidden_layers": 4,
             "num_attention_heads": 4, "id2label": {"0": "negative", "1": "neutral", "2": "positive"}}
            """), "config.json").Name);
        foreach (var e in Catalog.All.Where(e => e.Head is "pretraining" or "classifier"))
        {
            var json = Bert.Runtime.Checkpoints.HfConfig.FromModel(e.Info).Json;
            json.Remove(Bert.Runtime.Checkpoints.HfConfig.BertModelKey);
            Assert.Equal(e.Name, Catalog.FromHfConfig(new Bert.Runtime.Checkpoints.HfConfig(json), "config.json").Name);
        }
        var error = Assert.Throws<Bert.Runtime.Checkpoints.CheckpointException>(() => Catalog.FromHfConfig(Config("""
            {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "hidden_size": 256, "num_hidden_layers": 4, "num_labels": 7}
            """), "x/config.json"));
        Assert.StartsWith("x/config.json describes a bert classifier with 7 labels (hidden_size 256, num_hidden_layers 4) that no declared model matches", error.Message);
    }
}
