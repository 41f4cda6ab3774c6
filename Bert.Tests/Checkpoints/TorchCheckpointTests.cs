using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Bert.Models;
using Bert.Runtime;
using Bert.Runtime.Checkpoints;
using Bert.Tests.Data;
using Bert.Tests.Support;
using Xunit;

namespace Bert.Tests.Checkpoints;

/// <summary>The other weight files of Hugging Face folders: PyTorch's <c>pytorch_model.bin</c> (files torch 1.13 wrote,
/// in Fixtures/, in both of its formats: every dtype, a transposed view, a storage offset, a parameter, a 0-d tensor; and
/// pickles that are not a state dict, refused by name without running anything), sharded checkpoints behind an index,
/// and a masked-LM decoder that is not the word embeddings (refused: the model ties them).</summary>
public sealed class TorchCheckpointTests : IDisposable
{
    readonly string _dir = TempDir.Create();

    public void Dispose() => TempDir.Delete(_dir);

    static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Checkpoints", "Fixtures", name);

    static uint[] Bits(ReadOnlySpan<float> x) => MemoryMarshal.Cast<float, uint>(x).ToArray();

    [Theory]
    [InlineData("state-zip.bin")]
    [InlineData("state-legacy.bin")]
    public void TorchFiles_ReadAsTorchWroteThem_EveryDtypeViewOffsetAndParameter(string file)
    {
        using var r = TensorFiles.Open(Fixture(file));
        Assert.IsType<TorchCheckpointReader>(r);
        Assert.Equal(new[] { "a.weight", "a.transposed", "slice", "half", "bf16", "double", "ids", "scalar", "param" }, r.Tensors.Select(t => t.Name));
        Assert.Equal(new long[] { 2, 3 }, r["a.weight"].Shape);
        Assert.Equal(new long[] { 3, 2 }, r["a.transposed"].Shape);
        Assert.Equal(SafeTensorDType.F16, r["half"].DType);
        Assert.Equal(SafeTensorDType.BF16, r["bf16"].DType);
        Assert.Equal(SafeTensorDType.F64, r["double"].DType);
        Assert.Equal(SafeTensorDType.I64, r["ids"].DType);
        Assert.Empty(r["scalar"].Shape);

        float[] a = [.. Enumerable.Range(0, 6).Select(i => i * 0.25f - 0.5f)];
        Assert.Equal(a, Read(r, "a.weight"));
        Assert.Equal(new[] { a[0], a[3], a[1], a[4], a[2], a[5] }, Read(r, "a.transposed"));   // gathered through strides (1, 3)
        Assert.Equal(new[] { 1.5f, 2f, 2.5f, 3f }, Read(r, "slice"));                           // elements 3..6 of 0.5·i
        Assert.Equal(new[] { 1.5f, -2f, 0.25f, 1024f }, Read(r, "half"));
        Assert.Equal(new[] { 1.5f, -2f, 3f }, Read(r, "bf16"));
        var d = new double[4];
        r.Read<double>("double", d);
        Assert.Equal(new[] { 1.0, 2.0, 3.0, -4.5 }, d);
        Assert.Equal(new[] { 7f }, Read(r, "scalar"));
        Assert.Equal(new[] { 0.5f, 0.75f }, Read(r, "param"));
        var e = Assert.Throws<CheckpointException>(() => Read(r, "ids"));
        Assert.Contains("is stored as I64, not floating point", e.Message);
    }

    static float[] Read(ITensorReader r, string name)
    {
        var v = new float[r[name].Count];
        r.Read<float>(name, v);
        return v;
    }

    /// <summary>Opens a weights file and reads every floating-point tensor in it.</summary>
    static void ReadAll(string path)
    {
        using var r = TensorFiles.Open(path);
        foreach (var t in r.Tensors.Where(t => SafeTensors.IsFloat(t.DType))) Read(r, t.Name);
    }

    /// <summary>The CheckpointException <paramref name="act"/> throws, whose message must be one sentence.</summary>
    static CheckpointException Refused(Action act)
    {
        var e = Assert.Throws<CheckpointException>(act);
        Assert.Single(e.Message.Split(". ", StringSplitOptions.None));
        return e;
    }

    [Theory]
    [InlineData("module.bin", "pickles torch.nn.modules.linear.Linear, which a PyTorch state dict never holds")]
    [InlineData("function.bin", "pickles posix.system, which a PyTorch state dict never holds")]
    public void APickledModuleOrFunction_IsRefusedByName_BeforeAnythingIsBuilt(string file, string expected)
    {
        var e = Assert.Throws<CheckpointException>(() => TensorFiles.Open(Fixture(file)).Dispose());
        Assert.Contains(expected, e.Message);
        Assert.EndsWith("save its state dict with model.save_pretrained(dir).", e.Message);
    }

    [Fact]
    public void DamagedTorchFiles_AreOneSentenceEach()
    {
        string Write(string name, byte[] bytes) { var p = Path.Combine(_dir, name); File.WriteAllBytes(p, bytes); return p; }
        string Refusal(string path)
        {
            var e = Refused(() => ReadAll(path));
            Assert.Equal(path, e.File);
            return e.Message;
        }
        var zip = File.ReadAllBytes(Fixture("state-zip.bin"));
        var legacy = File.ReadAllBytes(Fixture("state-legacy.bin"));

        Assert.Contains("its zip layout is damaged", Refusal(Write("cut.bin", zip[..(zip.Length - 100)])));
        Assert.Contains("it ends inside the storage", Refusal(Write("cut-legacy.bin", legacy[..(legacy.Length - 3)])));
        Assert.Contains("its pickle is not a state dict this reader understands (the pickle ends before its STOP opcode", Refusal(Write("cut-pickle.bin", legacy[..400])));
        Assert.Contains("neither a zip nor a pickle", Refusal(Write("text.bin", "hello"u8.ToArray())));
        // What a clone without git-lfs holds in place of the weights.
        var lfs = "version https://git-lfs.github.com/spec/v1\noid sha256:4a8f\nsize 440473133\n"u8.ToArray();
        Assert.Contains("is a Git LFS pointer, not the weights it stands for; fetch them (git lfs pull in the clone)", Refusal(Write("pytorch_model.bin", lfs)));
        Assert.Contains("is a Git LFS pointer", Refusal(Write("model.safetensors", lfs)));

        // A zip whose storage entry is gone, or shorter than its tensors.
        string Rezip(string name, Func<string, byte[], byte[]?> edit)
        {
            var path = Path.Combine(_dir, name);
            using (var src = new ZipArchive(new MemoryStream(zip)))
            using (var dst = new ZipArchive(File.Create(path), ZipArchiveMode.Create))
                foreach (var entry in src.Entries)
                {
                    using var ms = new MemoryStream();
                    using (var s = entry.Open()) s.CopyTo(ms);
                    var bytes = edit(entry.FullName, ms.ToArray());
                    if (bytes is null) continue;
                    using var o = dst.CreateEntry(entry.FullName).Open();
                    o.Write(bytes);
                }
            return path;
        }
        Assert.Contains("its storage data/1 (of tensor 'slice') is missing", Refusal(Rezip("no-storage.bin", (n, b) => n.EndsWith("data/1") ? null : b)));
        Assert.Contains("its storage data/1 is 12 bytes where tensor 'slice' needs 40", Refusal(Rezip("short-storage.bin", (n, b) => n.EndsWith("data/1") ? b[..12] : b)));
    }

    /// <summary>Damage anywhere: a file with random bytes changed, or cut short, is read or refused in one
    /// CheckpointException, never another exception (an index out of range, an overflow, a huge allocation).</summary>
    [Theory]
    [InlineData("state-zip.bin")]
    [InlineData("state-legacy.bin")]
    public void RandomlyDamagedTorchFiles_AreReadOrRefused_NeverAnotherException(string file)
    {
        var good = File.ReadAllBytes(Fixture(file));
        var rng = new Random(17);
        var path = Path.Combine(_dir, "damaged.bin");
        int refused = 0;
        for (int trial = 0; trial < 400; trial++)
        {
            var bytes = trial % 4 == 3 ? good[..rng.Next(good.Length)] : (byte[])good.Clone();
            if (trial % 4 != 3)
                for (int k = rng.Next(1, 4); k > 0; k--) bytes[rng.Next(bytes.Length)] = (byte)rng.Next(256);
            File.WriteAllBytes(path, bytes);
            try { ReadAll(path); }
            catch (CheckpointException) { refused++; }
        }
        Assert.InRange(refused, 40, 400);   // the damage is seen often (a changed float value is not damage it can see)
    }

    /// <summary>A pickle in a zip as torch writes one (archive/data.pkl), from opcodes given as text and bytes.</summary>
    string CraftedZip(string name, params object[] parts)
    {
        var pkl = new MemoryStream();
        foreach (var part in parts)
            if (part is string text) pkl.Write(System.Text.Encoding.Latin1.GetBytes(text));
            else pkl.Write((byte[])part);
        var path = Path.Combine(_dir, name);
        using (var zip = new ZipArchive(File.Create(path), ZipArchiveMode.Create))
        using (var e = zip.CreateEntry("archive/data.pkl").Open())
            e.Write(pkl.ToArray());
        return path;
    }

    /// <summary>Files made to hurt the reader (a nested rebuild that would recurse without end, a storage of 2^62
    /// elements, a length past the data, a dict of 100 000 keys) are refused in one CheckpointException each, at once.</summary>
    [Fact]
    public void CraftedPickles_AreRefused_WithoutRecursionOverflowOrQuadraticTime()
    {
        string Refusal(string path) => Refused(() => ReadAll(path)).Message;
        const string FromType = "ctorch._tensor\n_rebuild_from_type_v2\n";
        // {'x': _rebuild_from_type_v2(_rebuild_from_type_v2, Tensor, (), {})}: torch never nests it.
        Assert.Contains("a rebuild of a type around something other than a tensor rebuild",
            Refusal(CraftedZip("nested.bin", "\x80\x02}X", new byte[] { 1, 0, 0, 0 }, "x", FromType, "(", FromType, "ctorch\nTensor\n)}tRs.")));
        // A storage whose element count is 2^62: every byte count made of it would overflow.
        var huge = new byte[] { 0x8a, 8, 0, 0, 0, 0, 0, 0, 0, 0x40 };
        Assert.Contains("a storage size of 4611686018427387904 elements, more than a storage this reader reads",
            Refusal(CraftedZip("huge.bin", "\x80\x02}X", new byte[] { 1, 0, 0, 0 }, "x", "ctorch._utils\n_rebuild_tensor_v2\n((X", new byte[] { 7, 0, 0, 0 },
                "storagectorch\nFloatStorage\nX", new byte[] { 1, 0, 0, 0 }, "0X", new byte[] { 3, 0, 0, 0 }, "cpu", huge, "tQK\x00K\x01\x85K\x01\x85\x89tRs.")));
        // LONG4 claiming 2 GiB of digits.
        Assert.Contains("runs past the end of the data", Refusal(CraftedZip("long4.bin", "\x80\x02\x8b", new byte[] { 0, 0, 0, 0x80 }, "\x00.")));
        // 100 000 distinct keys: a dict built in linear time (each key looked up, not searched for), then refused for what it holds.
        var many = new List<object> { "\x80\x02}(" };
        for (int i = 0; i < 100_000; i++) many.Add(new byte[] { (byte)'J', (byte)i, (byte)(i >> 8), (byte)(i >> 16), 0, (byte)'N' });
        many.Add("u.");
        Assert.Contains("one of its dict's keys is not a string", Refusal(CraftedZip("many.bin", [.. many])));
    }

    /// <summary>A safetensors file whose header length starts with the byte 0x80 (a header of 128, 384, … bytes) is not
    /// taken for a pickle, whatever its name.</summary>
    [Fact]
    public void ASafetensorsHeaderLengthOf0x80_IsNotTakenForAPickle()
    {
        for (int pad = 0; ; pad++)
        {
            var w = new SafeTensorsWriter();
            w.Metadata["pad"] = new string('x', pad);
            w.Add<float>("w", [2], [1.5f, -2f]);
            var bytes = w.ToArray();
            if (bytes[0] != 0x80) continue;
            foreach (var name in new[] { "model.safetensors", "weights.bin", "weights" })
            {
                var path = Path.Combine(_dir, name);
                File.WriteAllBytes(path, bytes);
                using var r = TensorFiles.Open(path);
                Assert.IsType<SafeTensorsReader>(r);
                Assert.Equal(new[] { 1.5f, -2f }, Read(r, "w"));
            }
            break;
        }
    }

    // ----- whole models -----

    static Model<float> Nano(ulong seed)
    {
        var m = BertNanoPreTraining.Create<float>();
        m.InitParameters(seed);
        return m;
    }

    const string NanoConfig = """
        {"architectures": ["BertForPreTraining"], "model_type": "bert", "vocab_size": 30522, "hidden_size": 32,
         "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "max_position_embeddings": 64,
         "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12}
        """;

    /// <summary>Our model as transformers writes BertForPreTraining's pytorch_model.bin: the decoder weight shares the word
    /// embeddings' storage.</summary>
    string AsTorchFolder(Model<float> m, string name)
    {
        var dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        var tensors = m.Info.Parameters.Select(p => (p.HfName, p.Shape.Select(d => (long)d).ToArray(), m.Parameter(p.Name).ToArray())).ToList();
        var word = m.Info.Parameters.Single(p => p.HfName == "bert.embeddings.word_embeddings.weight");
        tensors.Add(("cls.predictions.decoder.weight", [word.Shape[0], word.Shape[1]], m.Parameter(word.Name).ToArray()));
        TorchZip.Write(Path.Combine(dir, TensorFiles.TorchModelFile), tensors,
            new Dictionary<string, string> { ["cls.predictions.decoder.weight"] = "bert.embeddings.word_embeddings.weight" });
        File.WriteAllText(Path.Combine(dir, "config.json"), NanoConfig);
        return dir;
    }

    [Fact]
    public void AHuggingFaceFolderWithPytorchModelBin_LoadsBitExact_TheTiedDecoderIgnored()
    {
        var a = Nano(3);
        var dir = AsTorchFolder(a, "torch");
        var b = BertNanoPreTraining.Create<float>();
        var report = Checkpoint.Load(dir, b);
        Assert.Equal(Bits(a.Parameters), Bits(b.Parameters));
        Assert.Equal(Path.Combine(dir, "pytorch_model.bin"), report.File);
        Assert.Equal(new[] { "cls.predictions.decoder.weight" }, report.Ignored);
        Assert.Empty(report.Unused);

        // Beside a model.safetensors, the safetensors file is the one read (as transformers prefers it).
        Checkpoint.Save(dir, Nano(4));
        report = Checkpoint.Load(dir, b);
        Assert.Equal(Path.Combine(dir, "model.safetensors"), report.File);
        Assert.Equal(Bits(Nano(4).Parameters), Bits(b.Parameters));
    }

    [Fact]
    public void AMaskedLmDecoderThatIsNotTheWordEmbeddings_IsRefused_WhereTheModelTiesThem()
    {
        var a = Nano(5);
        var dir = Path.Combine(_dir, "untied");
        Directory.CreateDirectory(dir);
        var w = new SafeTensorsWriter();
        foreach (var p in a.Info.Parameters) w.Add<float>(p.HfName, p.Shape, a.Parameter(p.Name));
        var decoder = a.Parameter("embeddings.Word").ToArray();
        decoder[7] += 1;
        w.Add<float>("cls.predictions.decoder.weight", [30522, 32], decoder);
        w.Save(Path.Combine(dir, "model.safetensors"));
        File.WriteAllText(Path.Combine(dir, "config.json"), NanoConfig);

        var b = BertNanoPreTraining.Create<float>();
        b.Parameters.Fill(0.5f);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(dir, b));
        Assert.Contains("holds a masked-LM decoder weight (cls.predictions.decoder.weight) that is not its word embeddings (bert.embeddings.word_embeddings.weight), but BertNanoPreTraining ties the two", e.Message);
        Assert.All(b.Parameters.ToArray(), v => Assert.Equal(0.5f, v));   // nothing loaded

        // A classifier has no masked-LM head: the decoder is just left out.
        File.Delete(Path.Combine(dir, "config.json"));
        var c = BertNanoClassifier.Create<float>();
        var report = Checkpoint.Load(Path.Combine(dir, "model.safetensors"), c, n => n.StartsWith("classifier.") || n.Contains("pooler"));
        Assert.Contains("cls.predictions.decoder.weight", report.Unused);
    }

    /// <summary>Our model split as save_pretrained splits a large one: shards and an index naming each tensor's shard.</summary>
    string AsShards(Model<float> m, string name, int shards, string? indexFile = null, Func<string, string>? shardOf = null)
    {
        var dir = Path.Combine(_dir, name);
        Directory.CreateDirectory(dir);
        var map = new JsonObject();
        var writers = Enumerable.Range(0, shards).Select(_ => new SafeTensorsWriter()).ToArray();
        var ps = m.Info.Parameters;
        for (int i = 0; i < ps.Count; i++)
        {
            int s = i * shards / ps.Count;
            writers[s].Add<float>(ps[i].HfName, ps[i].Shape, m.Parameter(ps[i].Name));
            map[ps[i].HfName] = shardOf?.Invoke(ps[i].HfName) ?? $"model-{s + 1:00000}-of-{shards:00000}.safetensors";
        }
        for (int s = 0; s < shards; s++) writers[s].Save(Path.Combine(dir, $"model-{s + 1:00000}-of-{shards:00000}.safetensors"));
        File.WriteAllText(Path.Combine(dir, indexFile ?? ShardedTensorReader.SafeTensorsIndex), new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = 1 }, ["weight_map"] = map }.ToJsonString());
        File.WriteAllText(Path.Combine(dir, "config.json"), NanoConfig);
        return dir;
    }

    [Fact]
    public void AShardedCheckpoint_LoadsBitExact_AndItsFaultsAreOneSentenceEach()
    {
        var a = Nano(6);
        var dir = AsShards(a, "sharded", 3);
        var b = BertNanoPreTraining.Create<float>();
        var report = Checkpoint.Load(dir, b);
        Assert.Equal(Bits(a.Parameters), Bits(b.Parameters));
        Assert.Equal(Path.Combine(dir, ShardedTensorReader.SafeTensorsIndex), report.File);
        Assert.Equal(a.Info.Parameters.Count, report.Loaded.Count);

        // PyTorch shards behind pytorch_model.bin.index.json.
        var torchDir = Path.Combine(_dir, "torch-shards");
        Directory.CreateDirectory(torchDir);
        var map = new JsonObject();
        var ps = a.Info.Parameters;
        for (int s = 0; s < 2; s++)
        {
            var part = ps.Where((_, i) => i % 2 == s).ToList();
            string file = $"pytorch_model-0000{s + 1}-of-00002.bin";
            TorchZip.Write(Path.Combine(torchDir, file), part.Select(p => (p.HfName, p.Shape.Select(d => (long)d).ToArray(), a.Parameter(p.Name).ToArray())));
            foreach (var p in part) map[p.HfName] = file;
        }
        File.WriteAllText(Path.Combine(torchDir, ShardedTensorReader.TorchIndex), new JsonObject { ["weight_map"] = map }.ToJsonString());
        File.WriteAllText(Path.Combine(torchDir, "config.json"), NanoConfig);
        b.Parameters.Clear();
        Checkpoint.Load(torchDir, b);
        Assert.Equal(Bits(a.Parameters), Bits(b.Parameters));

        string Refusal(string d) => Refused(() => Checkpoint.Load(d, BertNanoPreTraining.Create<float>())).Message;
        File.Delete(Path.Combine(dir, "model-00002-of-00003.safetensors"));
        Assert.Contains("is not a shard index this reader can use: its shard model-00002-of-00003.safetensors is missing (an interrupted download?)", Refusal(dir));

        var wrong = AsShards(a, "misplaced", 2, shardOf: n => n.EndsWith("pooler.dense.bias") ? "model-00001-of-00002.safetensors" : null!);
        Assert.Contains("its shard model-00001-of-00002.safetensors has no tensor 'bert.pooler.dense.bias', which the index places there", Refusal(wrong));

        var outside = AsShards(a, "outside", 2, shardOf: n => n.EndsWith("pooler.dense.bias") ? "../model.safetensors" : null!);
        Assert.Contains("the shard of 'bert.pooler.dense.bias' is \"../model.safetensors\", not a file beside the index", Refusal(outside));

        var twice = AsShards(a, "twice", 2);
        var first = Path.Combine(twice, "model-00001-of-00002.safetensors");
        var extra = new SafeTensorsWriter();
        using (var r1 = SafeTensorsReader.Open(first))
        using (var r2 = SafeTensorsReader.Open(Path.Combine(twice, "model-00002-of-00002.safetensors")))
            foreach (var (r, t) in r1.Tensors.Select(t => (r1, t)).Append((r2, r2.Tensors[0])))
                extra.AddRaw(t.Name, t.DType, t.Shape, r.ReadBytes(t.Name));
        extra.Save(first);
        Assert.Contains("is in both model-00001-of-00002.safetensors and model-00002-of-00002.safetensors", Refusal(twice));

        File.WriteAllText(Path.Combine(twice, ShardedTensorReader.SafeTensorsIndex), "{\"weight_map\": ");
        Assert.Contains("it is not valid JSON", Refusal(twice));

        // An index that names itself (or another index) as a shard would open indexes without end.
        File.WriteAllText(Path.Combine(twice, ShardedTensorReader.SafeTensorsIndex), "{\"weight_map\": {\"a\": \"model.safetensors.index.json\"}}");
        Assert.Contains("the shard of 'a' is \"model.safetensors.index.json\", another index rather than a file of tensors", Refusal(twice));
    }
}
