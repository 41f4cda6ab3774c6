using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Bert.Models;
using Bert.Runtime;
using Bert.Runtime.Checkpoints;
using Bert.Tests.Data;
using Bert.Tests.Models;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Checkpoints;

/// <summary>Checkpoints (Bert.Runtime/Checkpoints): the safetensors reader and writer, config.json, and saving and
/// loading the real generated models — bit-exact round trips, Hugging Face layouts (no "bert." prefix, gamma/beta,
/// extra tensors, half precision), partial loads into a classifier, atomic saves, and one-sentence errors for
/// corrupt or mismatched files.</summary>
public sealed class CheckpointTests : IDisposable
{
    readonly string _dir = TempDir.Create();

    public void Dispose() => TempDir.Delete(_dir);

    string Sub(string name) => Path.Combine(_dir, name);

    // InitParameters draws a million normals (about 0.3 s in Debug); each seed's result is computed once and copied.
    static readonly Dictionary<(string, ulong), float[]> Initialized = [];

    static Model<float> Init(Model<float> m, ulong seed)
    {
        float[]? p;
        lock (Initialized)
            if (!Initialized.TryGetValue((m.Info.Name, seed), out p))
            {
                m.InitParameters(seed);
                Initialized[(m.Info.Name, seed)] = p = m.Parameters.ToArray();
            }
        p.CopyTo(m.Parameters);
        return m;
    }

    static Model<float> PreTraining(ulong seed) => Init(BertNanoPreTraining.Create<float>(), seed);

    static Model<float> Classifier(ulong seed) => Init(BertNanoClassifier.Create<float>(), seed);

    /// <summary>A model to load into (or a second, different one to save): every parameter the same value, no init cost.</summary>
    static Model<float> Blank(Model<float> m, float value = 0.5f)
    {
        m.Parameters.Fill(value);
        return m;
    }

    static Model<float> BlankPreTraining(float value = 0.5f) => Blank(BertNanoPreTraining.Create<float>(), value);

    static uint[] Bits(ReadOnlySpan<float> x) => MemoryMarshal.Cast<float, uint>(x).ToArray();
    static ulong[] Bits(ReadOnlySpan<double> x) => MemoryMarshal.Cast<double, ulong>(x).ToArray();

    static float Loss(Model<float> m)
    {
        ModelGradientTests.FeedPreTraining(m, new Random(17), B: 2, T: 6, G: 3, vocab: 30522);
        return m.Forward(training: true, seed: 5)[0];
    }

    static string[] TempFiles(string dir) => Directory.GetFiles(dir, "*.tmp", SearchOption.AllDirectories);

    // ---------------------------------------------------------------- round trips

    [Fact]
    public void SaveThenLoad_PreTraining_IsBitExact_AndGivesTheSameLoss()
    {
        var a = PreTraining(1);
        float lossA = Loss(a);
        string dir = Sub("nested/ckpt");   // created by Save
        Checkpoint.Save(dir, a, new Dictionary<string, string> { ["step"] = "42" });

        var b = BlankPreTraining();
        Assert.NotEqual(Bits(a.Parameters), Bits(b.Parameters));
        var report = Checkpoint.Load(dir, b);

        Assert.Equal(Bits(a.Parameters), Bits(b.Parameters));
        Assert.Equal(BitConverter.SingleToUInt32Bits(lossA), BitConverter.SingleToUInt32Bits(Loss(b)));
        Assert.Equal(a.Info.Parameters.Select(p => p.HfName), report.Loaded);
        Assert.Empty(report.Missing);
        Assert.Empty(report.Unused);
        Assert.Equal(["cls.predictions.decoder.weight"], report.Ignored);
        Assert.Equal("42", report.Metadata["step"]);
        Assert.Equal("pt", report.Metadata["format"]);
        Assert.Equal("BertNanoPreTraining", report.Metadata["bert_model"]);
        Assert.NotNull(report.Config);
        Assert.Empty(TempFiles(_dir));
    }

    [Fact]
    public void SaveThenLoad_DoubleModel_IsBitExactInF64()
    {
        var a = BertNanoClassifier.Create<double>();
        a.InitParameters(3);
        Checkpoint.Save(_dir, a);
        using (var r = SafeTensorsReader.Open(Path.Combine(_dir, Checkpoint.ModelFile)))
            Assert.All(r.Tensors, t => Assert.Equal(SafeTensorDType.F64, t.DType));
        var b = BertNanoClassifier.Create<double>();
        b.Parameters.Fill(0.25);
        Checkpoint.Load(_dir, b);
        Assert.Equal(Bits(a.Parameters), Bits(b.Parameters));
    }

    [Fact]
    public void SavedFile_FollowsTheSafeTensorsLayout_WithTheTiedDecoderCopy()
    {
        var a = PreTraining(1);
        Checkpoint.Save(_dir, a);
        var bytes = File.ReadAllBytes(Path.Combine(_dir, Checkpoint.ModelFile));
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, n % 8);
        var header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, (int)n)).RootElement;
        Assert.Equal("pt", header.GetProperty("__metadata__").GetProperty("format").GetString());
        var names = header.EnumerateObject().Select(p => p.Name).Where(x => x != "__metadata__").Order(StringComparer.Ordinal);
        Assert.Equal(a.Info.Parameters.Select(p => p.HfName).Append("cls.predictions.decoder.weight").Order(StringComparer.Ordinal), names);
        var q = header.GetProperty("bert.encoder.layer.1.attention.self.query.weight");
        Assert.Equal("F32", q.GetProperty("dtype").GetString());
        Assert.Equal([32, 32], q.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));

        using var r = SafeTensorsReader.Open(Path.Combine(_dir, Checkpoint.ModelFile));
        Assert.Equal(Bits(a.Parameter("bert.embeddings.word_embeddings.weight")), Bits(r.Read<float>("cls.predictions.decoder.weight")));
        Assert.Equal(Bits(a.Parameter("layers.1.Wq")), Bits(r.Read<float>("bert.encoder.layer.1.attention.self.query.weight")));
    }

    [Fact]
    public void ConfigJson_HasBertConfigFields()
    {
        Checkpoint.Save(Sub("pt"), PreTraining(1));
        Checkpoint.Save(Sub("cls"), Classifier(1), labels: ["negative", "neutral", "positive"]);
        var pt = JsonNode.Parse(File.ReadAllText(Path.Combine(Sub("pt"), Checkpoint.ConfigFile)))!.AsObject();
        var cls = JsonNode.Parse(File.ReadAllText(Path.Combine(Sub("cls"), Checkpoint.ConfigFile)))!.AsObject();

        Assert.Equal("BertForPreTraining", pt["architectures"]![0]!.GetValue<string>());
        Assert.Equal("bert", pt["model_type"]!.GetValue<string>());
        Assert.Equal("BertNanoPreTraining", pt["bert_model"]!.GetValue<string>());
        foreach (var (key, value) in new (string, long)[] { ("vocab_size", 30522), ("hidden_size", 32), ("num_hidden_layers", 2),
                     ("num_attention_heads", 4), ("intermediate_size", 128), ("max_position_embeddings", 64), ("type_vocab_size", 2), ("pad_token_id", 0) })
            Assert.Equal(value, pt[key]!.GetValue<long>());
        Assert.Equal("gelu", pt["hidden_act"]!.GetValue<string>());
        Assert.Equal(0.1, pt["hidden_dropout_prob"]!.GetValue<double>());
        Assert.Equal(0.1, pt["attention_probs_dropout_prob"]!.GetValue<double>());
        Assert.Equal(0.02, pt["initializer_range"]!.GetValue<double>());
        Assert.Equal(1e-12, pt["layer_norm_eps"]!.GetValue<double>());
        Assert.Null(pt["id2label"]);

        Assert.Equal("BertForSequenceClassification", cls["architectures"]![0]!.GetValue<string>());
        Assert.Equal(3, cls["num_labels"]!.GetValue<long>());
        Assert.Equal("neutral", cls["id2label"]!["1"]!.GetValue<string>());
        Assert.Equal(2, cls["label2id"]!["positive"]!.GetValue<long>());
        Assert.Equal(["negative", "neutral", "positive"], HfConfig.Read(Path.Combine(Sub("cls"), Checkpoint.ConfigFile)).Labels);

        var albert = HfConfig.FromModel(AlbertNanoClassifier.Info);
        Assert.Equal("albert", albert.ModelType);
        Assert.Equal(8, albert.Get("embedding_size"));
        Assert.Equal(["AlbertForSequenceClassification"], albert.Architectures);
    }

    // ---------------------------------------------------------------- Hugging Face layouts

    /// <summary>The model's HF name as an older or base-model checkpoint spells it: no "bert." prefix, gamma/beta.</summary>
    static string OldStyle(string hf)
    {
        string n = hf.StartsWith("bert.") ? hf["bert.".Length..] : hf;
        if (n.EndsWith("LayerNorm.weight")) n = n[..^"weight".Length] + "gamma";
        if (n.EndsWith("LayerNorm.bias")) n = n[..^"bias".Length] + "beta";
        return n;
    }

    [Fact]
    public void HfLayout_WithoutPrefix_GammaBeta_Extras_AndHalfPrecision_Loads()
    {
        var a = PreTraining(1);
        // Make the half-precision tensors exactly representable, so the load must be bit-exact.
        var word = a.Parameter("embeddings.Word");
        for (int i = 0; i < word.Length; i++) word[i] = SafeTensors.FromBFloat16(SafeTensors.ToBFloat16(word[i]));
        var pos = a.Parameter("embeddings.Position");
        for (int i = 0; i < pos.Length; i++) pos[i] = (float)(Half)pos[i];

        var w = new SafeTensorsWriter();
        w.Metadata["format"] = "pt";
        foreach (var p in a.Info.Parameters)
        {
            var dtype = p.Name == "embeddings.Word" ? SafeTensorDType.BF16 : p.Name == "embeddings.Position" ? SafeTensorDType.F16 : SafeTensorDType.F32;
            w.Add<float>(OldStyle(p.HfName), p.Shape, a.Parameter(p.Name), dtype);
        }
        var ids = new byte[64 * 8];
        for (int i = 0; i < 64; i++) BinaryPrimitives.WriteInt64LittleEndian(ids.AsSpan(8 * i), i);
        w.AddRaw("embeddings.position_ids", SafeTensorDType.I64, [1, 64], ids);
        w.Add<float>("cls.predictions.decoder.weight", [30522, 32], a.Parameter("embeddings.Word"));
        w.Add<float>("cls.predictions.decoder.bias", [30522], a.Parameter("cls.predictions.bias"));
        w.Save(Path.Combine(_dir, "model.safetensors"));
        // A config as transformers writes it for this size: no bert_model, no num_labels.
        File.WriteAllText(Path.Combine(_dir, "config.json"), """
            {"architectures": ["BertForPreTraining"], "model_type": "bert", "vocab_size": 30522, "hidden_size": 32,
             "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "max_position_embeddings": 64,
             "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12}
            """);

        var b = BlankPreTraining();
        var report = Checkpoint.Load(_dir, b);
        Assert.Equal(Bits(a.Parameters), Bits(b.Parameters));
        Assert.Equal(a.Info.Parameters.Count, report.Loaded.Count);
        Assert.Empty(report.Missing);
        Assert.Empty(report.Unused);
        Assert.Equal(new[] { "cls.predictions.decoder.bias", "cls.predictions.decoder.weight", "embeddings.position_ids" }, report.Ignored.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void PreTrainingCheckpoint_LoadsIntoClassifier_WhenClassifierMayBeMissing()
    {
        var pt = PreTraining(1);
        Checkpoint.Save(_dir, pt);
        var c = Blank(BertNanoClassifier.Create<float>());
        var headBefore = Bits(c.Parameter("classifier.weight"));
        var cBefore = Bits(c.Parameters);

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(_dir, c));
        Assert.Contains("has no tensor classifier.weight (and 1 more: classifier.bias), which BertNanoClassifier needs", e.Message);
        Assert.Contains("point to a checkpoint saved from BertNanoClassifier", e.Message);
        Assert.Equal(cBefore, Bits(c.Parameters));   // a failed load changes nothing

        var report = Checkpoint.Load(_dir, c, allowMissing: n => n.StartsWith("classifier."));
        Assert.Equal(["classifier.weight", "classifier.bias"], report.Missing);
        Assert.Contains("cls.seq_relationship.weight", report.Unused);
        Assert.Contains("cls.predictions.transform.dense.weight", report.Unused);
        Assert.Equal(headBefore, Bits(c.Parameter("classifier.weight")));
        foreach (var p in c.Info.Parameters.Where(p => !p.HfName.StartsWith("classifier.")))
            Assert.Equal(Bits(pt.Parameter(p.HfName)), Bits(c.Parameter(p.HfName)));
    }

    /// <summary>A fresh model (the command line's loads) is read into directly, without the staging copy: the same values
    /// as a staged load; and initializing only the tensors a file lacks gives them the values a full initialization would
    /// (each value depends on the seed and its offset), touching nothing else.</summary>
    [Fact]
    public void FreshModelLoad_ReadsTheSameValues_AndInitializingOnlyTheMissingTensors_MatchesAFullInitialization()
    {
        var pt = PreTraining(1);
        Checkpoint.Save(_dir, pt);
        var staged = Blank(BertNanoClassifier.Create<float>());
        staged.InitParameters(7);
        Checkpoint.Load(_dir, staged, allowMissing: n => n.StartsWith("classifier."));

        var fresh = BertNanoClassifier.Create<float>();
        var report = Checkpoint.Load(_dir, fresh, allowMissing: n => n.StartsWith("classifier."), freshModel: true);
        Assert.Equal(["classifier.weight", "classifier.bias"], report.Missing);
        Assert.Equal(0, fresh.Parameter("classifier.weight").ToArray().Count(v => v != 0));   // not read, not initialized yet
        fresh.InitParameters(7, only: report.Missing.ToHashSet());
        Assert.Equal(Bits(staged.Parameters), Bits(fresh.Parameters));
        Assert.True(fresh.Parameter("classifier.weight").ToArray().Count(v => v != 0) > 10);
    }

    /// <summary>The initialization runs on every core, but each value is still Box–Muller of the counter-based generator at
    /// (seed, offset): checked at every element of every normally initialized tensor of BERT-Nano's pre-training model.</summary>
    [Fact]
    public void InitParameters_OnEveryCore_GivesEachValueItsOffsetsDraw()
    {
        var m = BertNanoPreTraining.Create<float>();
        m.InitParameters(5);
        int normal = 0;
        foreach (var p in m.Info.Parameters.Where(p => p.Init is not (Bert.Dsl.Init.Zeros or Bert.Dsl.Init.Ones)))
        {
            normal++;
            for (long i = 0; i < p.Length; i++)
            {
                ulong idx = (ulong)(p.Offset + i);
                double u1 = Bert.Runtime.Kernels.Philox.Uniform(5, 0xA11CE, 2 * idx), u2 = Bert.Runtime.Kernels.Philox.Uniform(5, 0xA11CE, 2 * idx + 1);
                float expected = (float)(Math.Sqrt(-2 * Math.Log(1 - u1)) * Math.Cos(2 * Math.PI * u2) * 0.02);
                Assert.Equal(BitConverter.SingleToInt32Bits(expected), BitConverter.SingleToInt32Bits(m.Parameters[(int)(p.Offset + i)]));
            }
        }
        Assert.True(normal > 10);
    }

    /// <summary>config.json's hidden_act names the function the model's element-wise ops compute, and a config whose
    /// activation computes another function is refused, in one sentence (transformers' aliases and GELU's approximations
    /// count as the same function).</summary>
    [Fact]
    public void HiddenAct_IsTheModelsActivation_AndAnotherOneIsRefused()
    {
        Assert.Equal("gelu", HfConfig.FromModel(BertNanoClassifier.Info).Json["hidden_act"]!.GetValue<string>());
        Assert.Equal("gelu_new", HfConfig.FromModel(Bert.Tests.Models.TanhGeluFeedForward.Info).Json["hidden_act"]!.GetValue<string>());

        var json = HfConfig.FromModel(BertNanoClassifier.Info).Json;
        // GELU's tanh approximation (ALBERT's published "gelu_new") loads into an erf-GELU model: they differ by < 1e-3.
        foreach (var (act, ok) in new[] { ("gelu", true), ("gelu_python", true), ("gelu_new", true), ("gelu_pytorch_tanh", true), ("relu", false), ("silu", false), ("quick_gelu", false) })
        {
            json["hidden_act"] = act;
            var config = new HfConfig(json);
            if (ok) { config.Check(BertNanoClassifier.Info, "c.json"); continue; }
            var e = Assert.Throws<CheckpointException>(() => config.Check(BertNanoClassifier.Info, "c.json"));
            Assert.Contains($"c.json was saved from a model with hidden_act \"{act}\" but this model (BertNanoClassifier) computes \"gelu\"", e.Message);
        }
        json = HfConfig.FromModel(Bert.Tests.Models.TanhGeluFeedForward.Info).Json;
        json["hidden_act"] = "gelu_pytorch_tanh";   // the same function under another name
        new HfConfig(json).Check(Bert.Tests.Models.TanhGeluFeedForward.Info, "c.json");
        json["hidden_act"] = "relu";
        Assert.Contains("computes \"gelu_new\"", Assert.Throws<CheckpointException>(() => new HfConfig(json).Check(Bert.Tests.Models.TanhGeluFeedForward.Info, "c.json")).Message);
    }

    /// <summary>A file that holds the masked-LM bias only under transformers' tied name (cls.predictions.decoder.bias) loads
    /// it from there instead of leaving the bias at its initialization.</summary>
    [Fact]
    public void MlmBias_OnlyAsTheDecoderBias_IsTakenFromThere()
    {
        var a = PreTraining(1);
        var w = new SafeTensorsWriter();
        foreach (var p in a.Info.Parameters.Where(p => p.HfName != "cls.predictions.bias")) w.Add<float>(p.HfName, p.Shape, a.Parameter(p.Name));
        w.Add<float>("cls.predictions.decoder.bias", [30522], a.Parameter("cls.predictions.bias"));
        w.Save(Path.Combine(_dir, "model.safetensors"));
        var b = BlankPreTraining();
        var report = Checkpoint.Load(_dir, b);
        Assert.Empty(report.Missing);
        Assert.DoesNotContain("cls.predictions.decoder.bias", report.Ignored);
        Assert.Equal(Bits(a.Parameters), Bits(b.Parameters));
    }

    /// <summary>The config fields beyond the sizes that change what transformers' BERT computes from the same weights:
    /// relative position terms, another LayerNorm ε, a multi-label (sigmoid) head. Each is refused in one sentence naming
    /// the field; BERT's values load.</summary>
    [Fact]
    public void ConfigFieldsThatChangeTheComputation_AreRefused()
    {
        void Check(string key, JsonNode value, string? refusal)
        {
            var json = HfConfig.FromModel(BertNanoClassifier.Info).Json;
            json[key] = value;
            var config = new HfConfig(json);
            if (refusal is null) { config.Check(BertNanoClassifier.Info, "c.json"); return; }
            var e = Assert.Throws<CheckpointException>(() => config.Check(BertNanoClassifier.Info, "c.json"));
            Assert.Contains(refusal, e.Message);
            Assert.Single(e.Message.Split('\n'));
        }
        Check("position_embedding_type", "absolute", null);
        Check("position_embedding_type", "relative_key", "c.json was saved from a model with position_embedding_type \"relative_key\"");
        Check("position_embedding_type", "relative_key_query", "has absolute position embeddings only");
        Check("layer_norm_eps", 1e-12, null);
        Check("layer_norm_eps", 1e-5, "c.json was saved from a model with layer_norm_eps 1E-05 but this model's (BertNanoClassifier) LayerNorms use 1E-12");
        Check("problem_type", "single_label_classification", null);
        Check("problem_type", "multi_label_classification", "c.json was saved from a multi label classification model but this model (BertNanoClassifier) picks one class");
    }

    // ---------------------------------------------------------------- mismatches

    [Fact]
    public void ConfigOfAnotherSize_GivesOneSentenceError()
    {
        var a = PreTraining(1);
        Checkpoint.Save(_dir, a);
        string cfg = Path.Combine(_dir, Checkpoint.ConfigFile);
        var json = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
        json["hidden_size"] = 256;
        json["bert_model"] = "BertMiniPreTraining";
        File.WriteAllText(cfg, json.ToJsonString());

        var b = BlankPreTraining();
        var before = Bits(b.Parameters);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(_dir, b));
        Assert.Contains("was saved from a model with hidden_size 256 but this model (BertNanoPreTraining) has 32", e.Message);
        Assert.Contains("load it into the matching model (BertMiniPreTraining)", e.Message);
        Assert.Contains(cfg, e.Message);
        Assert.Equal(before, Bits(b.Parameters));

        File.WriteAllText(cfg, "{\"hidden_size\": 32,");
        e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(_dir, b));
        Assert.Contains($"{cfg} is not valid JSON", e.Message);
    }

    [Fact]
    public void ClassifierWithOtherLabelCount_IsRejectedByConfig()
    {
        Checkpoint.Save(_dir, Classifier(1));
        string cfg = Path.Combine(_dir, Checkpoint.ConfigFile);
        var json = JsonNode.Parse(File.ReadAllText(cfg))!.AsObject();
        json["num_labels"] = 5;
        File.WriteAllText(cfg, json.ToJsonString());
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(_dir, Blank(BertNanoClassifier.Create<float>())));
        Assert.Contains("num_labels 5 but this model (BertNanoClassifier) has 3", e.Message);
    }

    [Fact]
    public void ShapeMismatch_NamesTheTensorAndBothShapes()
    {
        var a = PreTraining(1);
        var w = new SafeTensorsWriter();
        foreach (var p in a.Info.Parameters)
        {
            if (p.Name == "embeddings.Position") w.Add<float>(p.HfName, [32, 32], a.Parameter(p.Name)[..1024]);
            else w.Add<float>(p.HfName, p.Shape, a.Parameter(p.Name));
        }
        w.Save(Path.Combine(_dir, Checkpoint.ModelFile));
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(_dir, BlankPreTraining()));
        Assert.Contains("bert.embeddings.position_embeddings.weight with shape [32, 32] but BertNanoPreTraining needs [64, 32]", e.Message);
    }

    [Fact]
    public void MissingTensor_IsNamed()
    {
        var a = PreTraining(1);
        var w = new SafeTensorsWriter();
        foreach (var p in a.Info.Parameters.Where(p => p.HfName != "bert.pooler.dense.bias"))
            w.Add<float>(p.HfName, p.Shape, a.Parameter(p.Name));
        w.Save(Path.Combine(_dir, Checkpoint.ModelFile));
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(_dir, BlankPreTraining()));
        Assert.Contains("has no tensor bert.pooler.dense.bias, which BertNanoPreTraining needs", e.Message);
    }

    [Fact]
    public void MissingDirectoryOrFile_GivesClearErrors()
    {
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(Sub("nowhere"), PreTraining(1)));
        Assert.Contains("does not exist", e.Message);
        Directory.CreateDirectory(Sub("empty"));
        e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(Sub("empty"), PreTraining(1)));
        Assert.Contains("has no model.safetensors (nor pytorch_model.bin, nor a shard index of either)", e.Message);
        Assert.Null(Checkpoint.LoadOptimizerState(Sub("empty")));
    }

    // ---------------------------------------------------------------- corrupt files

    /// <summary>A file with the given header text (unpadded) and data bytes.</summary>
    static byte[] Raw(string header, int dataBytes, ulong? declaredLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var b = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(b, declaredLength ?? (ulong)h.Length);
        h.CopyTo(b, 8);
        return b;
    }

    public static IEnumerable<object[]> CorruptFiles() =>
    [
        ["truncated", "beyond the 31 bytes of data"],
        ["bad json", "its header is not valid JSON"],
        ["huge header length", "more than the format's limit"],
        ["header length past the end", "only 40 bytes follow it"],
        ["overlapping offsets", "overlap"],
        ["gap", "that no tensor describes"],
        ["size mismatch", "which takes 24 bytes, but its data_offsets [0, 20] span 20"],
        ["unknown dtype", "dtype \"F12\", which this reader does not know"],
        ["trailing bytes", "more than the header's tensors describe"],
        ["tiny", "shorter than the 8-byte header length"],
        ["not an object", "does not start with a JSON object"],
        ["negative shape", "not a list of non-negative integers"],
        ["duplicate name", "lists 'a' twice"],
    ];

    static byte[] Corrupt(string kind)
    {
        var good = new SafeTensorsWriter().Add<float>("a", [2, 2], new float[4]).Add<float>("b", [4], new float[4]).ToArray();
        return kind switch
        {
            "truncated" => good[..^1],
            "bad json" => Raw("{\"a\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]", 16),
            "huge header length" => Raw("{}", 0, ulong.MaxValue / 2),
            "header length past the end" => Raw("{}", 38, 1000),
            "overlapping offsets" => Raw("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}""", 24),
            "gap" => Raw("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}""", 20),
            "size mismatch" => Raw("""{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}""", 20),
            "unknown dtype" => Raw("""{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}""", 4),
            "trailing bytes" => Raw("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 12),
            "tiny" => [1, 2, 3],
            "not an object" => Raw("[1, 2]", 0),
            "negative shape" => Raw("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4),
            "duplicate name" => Raw("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8),
            _ => throw new ArgumentException(kind),
        };
    }

    [Theory]
    [MemberData(nameof(CorruptFiles))]
    public void CorruptFile_GivesOneSentenceCheckpointException(string kind, string expected)
    {
        string path = Path.Combine(_dir, Checkpoint.ModelFile);
        File.WriteAllBytes(path, Corrupt(kind));
        var e = Assert.Throws<CheckpointException>(() => SafeTensorsReader.Open(path).Dispose());
        Assert.StartsWith($"{path} is not a valid safetensors file: ", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.EndsWith("; re-save it or download it again.", e.Message);
        Assert.DoesNotContain("\n", e.Message);
        Assert.Equal(path, e.File);

        var m = PreTraining(1);
        var before = Bits(m.Parameters);
        Assert.Throws<CheckpointException>(() => Checkpoint.Load(_dir, m));
        Assert.Equal(before, Bits(m.Parameters));
    }

    [Property(MaxTest = 200)]
    public Property AnyTruncationOrHeaderByteFlip_GivesCheckpointExceptionOrAValidRead() => Prop.ForAll(
        (from cut in Gen.Choose(0, 400) from at in Gen.Choose(0, 200) from value in Gen.Choose(0, 255) from truncate in Gen.Elements(true, false)
         select (cut, at, value, truncate)).ToArbitrary(),
        c =>
        {
            var good = new SafeTensorsWriter().Add<float>("a.weight", [3, 5], new float[15]).Add<double>("b", [2], new double[2], SafeTensorDType.F64)
                .Add<float>("c", Array.Empty<long>(), new float[1], SafeTensorDType.BF16).ToArray();
            byte[] bad;
            if (c.truncate) bad = good[..Math.Min(c.cut, good.Length - 1)];
            else { bad = (byte[])good.Clone(); bad[c.at % bad.Length] = (byte)c.value; }
            try
            {
                using var r = SafeTensorsReader.FromBytes(bad, "x.safetensors");
                foreach (var t in r.Tensors) if (SafeTensors.IsFloat(t.DType)) r.Read<double>(t.Name);
                return true.Label("read");
            }
            catch (CheckpointException e) { return e.Message.StartsWith("x.safetensors is not a valid safetensors file: ").Label(e.Message); }
        });

    // ---------------------------------------------------------------- atomic saves

    [Fact]
    public void SecondSave_ReplacesTheCheckpoint_LeavesNoTempFiles_AndOptimizerStateRoundTrips()
    {
        Checkpoint.Save(_dir, PreTraining(1), optimizerState: s => s.Write([1, 2, 3]));
        using (var s = Checkpoint.LoadOptimizerState(_dir)!)
        {
            var ms = new MemoryStream();
            s.CopyTo(ms);
            Assert.Equal(new byte[] { 1, 2, 3 }, ms.ToArray());
        }
        var second = BlankPreTraining();
        Checkpoint.Save(_dir, second, optimizerState: s => s.Write([9]));
        Assert.Empty(TempFiles(_dir));
        Assert.Equal(new byte[] { 9 }, File.ReadAllBytes(Path.Combine(_dir, Checkpoint.OptimizerFile)));
        var b = PreTraining(1);
        Checkpoint.Load(_dir, b);
        Assert.Equal(Bits(second.Parameters), Bits(b.Parameters));

        // Saving weights only removes optimizer state that no longer belongs to them.
        Checkpoint.Save(_dir, second);
        Assert.Null(Checkpoint.LoadOptimizerState(_dir));
        Assert.Equal([".", "config.json", "model.safetensors"], Directory.GetFiles(_dir).Select(Path.GetFileName).Prepend(".").Order(StringComparer.Ordinal));
    }

    [Fact]
    public void SaveThatFailsMidway_LeavesThePreviousCheckpointUntouched()
    {
        Checkpoint.Save(_dir, PreTraining(1), optimizerState: s => s.Write([1, 2, 3]));
        var files = Directory.GetFiles(_dir).ToDictionary(f => f, File.ReadAllBytes);

        var e = Assert.Throws<IOException>(() => Checkpoint.Save(_dir, BlankPreTraining(), optimizerState: s =>
        {
            s.Write(new byte[100_000]);
            throw new IOException("disk full");
        }));
        Assert.Equal("disk full", e.Message);
        Assert.Empty(TempFiles(_dir));
        Assert.Equal(files.Keys.Order(), Directory.GetFiles(_dir).Order());
        foreach (var (f, bytes) in files) Assert.Equal(bytes, File.ReadAllBytes(f));
    }

    // ---------------------------------------------------------------- safetensors properties

    public record TensorCase(string Name, SafeTensorDType DType, long[] Shape, float[] Values);

    static readonly Gen<float> Floats = Gen.OneOf(
        Gen.Choose(-1_000_000, 1_000_000).Select(i => i / 1000f),
        Gen.Choose(int.MinValue, int.MaxValue).Select(BitConverter.Int32BitsToSingle).Where(float.IsFinite),
        Gen.Elements(0f, -0f, float.Epsilon, float.MaxValue, float.PositiveInfinity, float.NegativeInfinity, 65504f, 1e-8f));

    static readonly Gen<TensorCase> Tensors =
        from name in Gen.Elements("w", "bert.encoder.layer.0.attention.self.query.weight", "ünï/cødé \"quoted\"", "a.b", "x0", "LayerNorm.gamma")
        from dtype in Gen.Elements(SafeTensorDType.F32, SafeTensorDType.F64, SafeTensorDType.F16, SafeTensorDType.BF16)
        from rank in Gen.Choose(0, 3)
        from shape in Gen.ArrayOf(Gen.Choose(0, 4).Select(d => (long)d), rank)
        from values in Gen.ArrayOf(Floats, (int)shape.Aggregate(1L, (p, d) => p * d))
        select new TensorCase(name, dtype, shape, values);

    /// <summary>What reading back must give: the value rounded to the file's type (to nearest even), as float.</summary>
    static float Expected(SafeTensorDType t, float x) => t switch
    {
        SafeTensorDType.F16 => (float)(Half)x,
        SafeTensorDType.BF16 => BfRound(x),
        _ => x,
    };

    /// <summary>bfloat16 rounding written independently: keep the top 16 bits, round half to even via exact arithmetic.</summary>
    static float BfRound(float x)
    {
        if (!float.IsFinite(x)) return x;
        uint u = BitConverter.SingleToUInt32Bits(x);
        float lo = BitConverter.UInt32BitsToSingle(u & 0xFFFF0000u);
        float hi = BitConverter.UInt32BitsToSingle((u & 0xFFFF0000u) + 0x10000u);   // next bf16 away from zero
        // Past the largest bf16 the next step is infinity, which rounding treats as 2^128.
        double hiValue = float.IsInfinity(hi) ? Math.CopySign(Math.Pow(2, 128), x) : hi;
        double dl = Math.Abs((double)x - lo), dh = Math.Abs(hiValue - x);
        if (dl < dh) return lo;
        if (dh < dl) return hi;
        return ((u >> 16) & 1) == 0 ? lo : hi;
    }

    [Property(MaxTest = 150)]
    public Property SafeTensors_RoundTrip_OverRandomShapesAndDTypes() => Prop.ForAll(
        (from list in Gen.ListOf(Tensors).Select(l => l.DistinctBy(t => t.Name).ToArray())
         from meta in Gen.Elements(0, 1, 2)
         select (list, meta)).ToArbitrary(),
        c =>
        {
            var w = new SafeTensorsWriter();
            for (int i = 0; i < c.meta; i++) w.Metadata[$"k{i}"] = $"v{i} ü \"{i}\"";
            foreach (var t in c.list)
            {
                if (t.DType == SafeTensorDType.F64) w.Add<double>(t.Name, t.Shape, t.Values.Select(v => (double)v).ToArray(), t.DType);
                else w.Add<float>(t.Name, t.Shape, t.Values, t.DType);
            }
            var bytes = w.ToArray();
            if (BinaryPrimitives.ReadUInt64LittleEndian(bytes) % 8 != 0) return false.Label("header not padded to 8");
            using var r = SafeTensorsReader.FromBytes(bytes);
            if (r.Tensors.Count != c.list.Length) return false.Label("tensor count");
            if (r.Metadata.Count != c.meta || (c.meta > 0 && r.Metadata["k0"] != "v0 ü \"0\"")) return false.Label("metadata");
            foreach (var t in c.list)
            {
                var info = r[t.Name];
                if (info.DType != t.DType || !info.Shape.SequenceEqual(t.Shape)) return false.Label($"{t.Name}: {info}");
                var back = r.Read<float>(t.Name);
                for (int i = 0; i < back.Length; i++)
                {
                    float want = Expected(t.DType, t.Values[i]);
                    if (BitConverter.SingleToUInt32Bits(back[i]) != BitConverter.SingleToUInt32Bits(want))
                        return false.Label($"{t.Name} {t.DType} [{i}]: wrote {t.Values[i]:R}, read {back[i]:R}, expected {want:R}");
                }
                if (t.DType == SafeTensorDType.F64 && !r.Read<double>(t.Name).SequenceEqual(t.Values.Select(v => (double)v)))
                    return false.Label($"{t.Name} as double");
            }
            return true.ToProperty();
        });
}
