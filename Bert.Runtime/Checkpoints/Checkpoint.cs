using System.Numerics;
using System.Text;

namespace Bert.Runtime.Checkpoints;

/// <summary>A checkpoint cannot be read, does not fit the model, or cannot be written. The message is one
/// sentence naming the file and what to do about it.</summary>
public sealed class CheckpointException : Exception
{
    public CheckpointException(string message, string? file = null, Exception? inner = null) : base(message, inner) => File = file;

    /// <summary>The file or checkpoint directory at fault, when known.</summary>
    public string? File { get; }
}

/// <summary>What <see cref="Checkpoint.Load{T}"/> did. Loaded and Missing are the model's tensor names (HfName);
/// Unused and Ignored are the file's tensor names as spelled there.</summary>
public sealed record CheckpointReport(
    string File,
    IReadOnlyList<string> Loaded,
    IReadOnlyList<string> Missing,
    IReadOnlyList<string> Unused,
    IReadOnlyList<string> Ignored,
    IReadOnlyDictionary<string, string> Metadata,
    HfConfig? Config)
{
    public override string ToString()
    {
        var sb = new StringBuilder($"{File}: loaded {Loaded.Count} tensors");
        if (Missing.Count > 0) sb.Append($"; kept the initialization of {Missing.Count} missing ({string.Join(", ", Missing)})");
        if (Unused.Count > 0) sb.Append($"; did not use {Unused.Count} ({string.Join(", ", Unused)})");
        if (Ignored.Count > 0) sb.Append($"; ignored {Ignored.Count} known extras ({string.Join(", ", Ignored)})");
        return sb.Append('.').ToString();
    }
}

/// <summary>Checkpoints in the Hugging Face layout: a directory with <c>model.safetensors</c> (tensors under their
/// Hugging Face names), <c>config.json</c> (BertConfig fields) and, when training state is saved,
/// <c>optimizer.bin</c>. <c>BertForPreTraining.from_pretrained(dir)</c> loads what <see cref="Save{T}"/> writes.</summary>
public static class Checkpoint
{
    public const string ModelFile = "model.safetensors";
    public const string ConfigFile = "config.json";
    public const string OptimizerFile = "optimizer.bin";

    const string DecoderWeight = "cls.predictions.decoder.weight", DecoderBias = "cls.predictions.decoder.bias", MlmBias = "cls.predictions.bias";

    /// <summary>Writes the model's parameters (F32 for float models, F64 for double, unless <paramref name="dtype"/>
    /// says otherwise) to <c>model.safetensors</c> with metadata "format": "pt", "bert_model" and
    /// <paramref name="metadata"/>; for a model with an MLM head, <c>cls.predictions.decoder.weight</c> is
    /// written too (a copy of the tied word embeddings, which transformers expects). Writes <c>config.json</c> and,
    /// when <paramref name="optimizerState"/> is given, <c>optimizer.bin</c> with what it writes (do not dispose the
    /// stream). Every file goes to a temporary file in <paramref name="dir"/> first and all are moved into place only
    /// after every one was written and flushed, so a failure (or crash) never leaves a half-written file and a
    /// failed save leaves the previous checkpoint as it was. A save without optimizer state deletes a stale
    /// <c>optimizer.bin</c>. The directory is created if missing.</summary>
    public static void Save<T>(string dir, Model<T> model, IReadOnlyDictionary<string, string>? metadata = null,
        Action<Stream>? optimizerState = null, IReadOnlyList<string>? labels = null, SafeTensorDType? dtype = null)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        var info = model.Info;
        var dt = dtype ?? SafeTensors.DTypeOf<T>();
        var writer = new SafeTensorsWriter();
        if (metadata is not null)
            foreach (var (k, v) in metadata) writer.Metadata[k] = v;
        writer.Metadata.TryAdd("format", "pt");
        writer.Metadata.TryAdd(HfConfig.BertModelKey, info.Name);

        ReadOnlySpan<T> all = model.Parameters;
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in info.Parameters)
        {
            if (!names.Add(p.HfName))
                throw new InvalidOperationException($"{info.Name} declares the tensor name '{p.HfName}' twice; give each parameter its own Hf name.");
            writer.Add(p.HfName, p.Shape, all.Slice((int)p.Offset, (int)p.Length), dt);
        }
        string prefix = HfConfig.BaseModelPrefix(info);
        var word = info.Parameters.FirstOrDefault(p => p.HfName == prefix + "embeddings.word_embeddings.weight");
        if (names.Contains(MlmBias) && word is not null && !names.Contains(DecoderWeight))
            writer.Add(DecoderWeight, word.Shape, all.Slice((int)word.Offset, (int)word.Length), dt);

        var config = HfConfig.FromModel(info, labels, dt == SafeTensorDType.F64 ? "float64" : dt == SafeTensorDType.F16 ? "float16" : dt == SafeTensorDType.BF16 ? "bfloat16" : "float32");
        byte[] configBytes = Encoding.UTF8.GetBytes(config.ToJson());

        Directory.CreateDirectory(dir);
        string modelPath = Path.Combine(dir, ModelFile), configPath = Path.Combine(dir, ConfigFile), optimizerPath = Path.Combine(dir, OptimizerFile);
        var pending = new List<(string Temp, string Final)>();
        try
        {
            pending.Add((AtomicFile.WriteTemp(modelPath, writer.WriteTo), modelPath));
            pending.Add((AtomicFile.WriteTemp(configPath, s => s.Write(configBytes)), configPath));
            if (optimizerState is not null) pending.Add((AtomicFile.WriteTemp(optimizerPath, optimizerState), optimizerPath));
            while (pending.Count > 0)
            {
                File.Move(pending[0].Temp, pending[0].Final, overwrite: true);
                pending.RemoveAt(0);
            }
        }
        finally
        {
            foreach (var (temp, _) in pending) AtomicFile.TryDelete(temp);
        }
        if (optimizerState is null && File.Exists(optimizerPath)) File.Delete(optimizerPath);
    }

    /// <summary>Loads a checkpoint directory (or a weights file) into <paramref name="model"/>: its model.safetensors,
    /// else a sharded one's index, else a PyTorch pytorch_model.bin (read without Python, refusing any pickled object
    /// that is not a tensor) or its shards' index (see <see cref="TensorFiles"/>). When
    /// <c>config.json</c> is present it must describe a model of the same type and sizes. Tensor names are matched
    /// to the model's Hugging Face names, also without the base-model prefix ("bert.") and with the old
    /// TensorFlow LayerNorm names gamma/beta for weight/bias; F32, F64, F16 and BF16 are converted to T. Known
    /// extras (<c>embeddings.position_ids</c>, the tied <c>cls.predictions.decoder.*</c>) are ignored; other tensors
    /// the model has no place for are reported as unused. A tensor the model needs but the file lacks is an error
    /// unless <paramref name="allowMissing"/> accepts its name (e.g. <c>n =&gt; n.StartsWith("classifier.")</c> to
    /// fine-tune from a pre-training checkpoint): such tensors keep their current values. A tensor holding a NaN or an
    /// infinity is refused, by name. Nothing in the model changes unless the whole load succeeds, except with
    /// <paramref name="freshModel"/>: a model made for this load and dropped if it fails is read into directly (no copy
    /// of the parameters; its values are then undefined after a failure).</summary>
    public static CheckpointReport Load<T>(string dir, Model<T> model, Func<string, bool>? allowMissing = null, bool freshModel = false)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentException.ThrowIfNullOrEmpty(dir);
        var info = model.Info;
        var (file, configPath) = Resolve(dir);
        HfConfig? config = null;
        if (configPath is not null && File.Exists(configPath))
        {
            config = HfConfig.Read(configPath);
            config.Check(info, configPath);
        }

        using var reader = TensorFiles.Open(file);
        string prefix = HfConfig.BaseModelPrefix(info);
        var byHf = new Dictionary<string, ParamInfo>(StringComparer.Ordinal);
        foreach (var p in info.Parameters) byHf.TryAdd(p.HfName, p);
        string wordName = prefix + "embeddings.word_embeddings.weight";
        bool tied = byHf.ContainsKey(MlmBias) && byHf.ContainsKey(wordName);
        var extras = new HashSet<string>(StringComparer.Ordinal) { prefix + "embeddings.position_ids", DecoderBias };
        if (tied) extras.Add(DecoderWeight);

        string Canonical(string name)
        {
            string n = name.EndsWith(".gamma", StringComparison.Ordinal) ? name[..^".gamma".Length] + ".weight"
                : name.EndsWith(".beta", StringComparison.Ordinal) ? name[..^".beta".Length] + ".bias" : name;
            bool Known(string x) => byHf.ContainsKey(x) || extras.Contains(x);
            if (Known(n)) return n;
            if (prefix != "" && !n.StartsWith(prefix, StringComparison.Ordinal) && Known(prefix + n)) return prefix + n;
            return name;
        }

        var source = new Dictionary<string, string>(StringComparer.Ordinal);   // model HfName → file tensor name
        var unused = new List<string>();
        var ignored = new List<string>();
        string? decoderInFile = null, decoderBiasInFile = null;
        foreach (var t in reader.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            string c = Canonical(t.Name);
            if (byHf.ContainsKey(c))
            {
                if (source.TryGetValue(c, out var other))
                    throw new CheckpointException($"{file} holds both '{other}' and '{t.Name}' for the tensor {c}; remove one of them and re-save the file.", file);
                source[c] = t.Name;
            }
            else if (extras.Contains(c))
            {
                ignored.Add(t.Name);
                if (c == DecoderWeight) decoderInFile = t.Name;
                if (c == DecoderBias) decoderBiasInFile = t.Name;
            }
            else unused.Add(t.Name);
        }
        // A file with only the decoder copy of the tied embeddings: take them from there.
        if (tied && !source.ContainsKey(wordName) && decoderInFile is not null)
        {
            source[wordName] = decoderInFile;
            ignored.Remove(decoderInFile);
        }
        // Likewise the masked-LM bias, which transformers ties to the decoder's bias and some files hold only there.
        if (byHf.ContainsKey(MlmBias) && !source.ContainsKey(MlmBias) && decoderBiasInFile is not null)
        {
            source[MlmBias] = decoderBiasInFile;
            ignored.Remove(decoderBiasInFile);
        }

        var missing = info.Parameters.Where(p => !source.ContainsKey(p.HfName)).Select(p => p.HfName).ToList();
        var required = missing.Where(n => allowMissing?.Invoke(n) != true).ToList();
        if (required.Count > 0)
        {
            string first = required[0];
            string others = required.Count > 1 ? $" (and {required.Count - 1} more: {string.Join(", ", required.Skip(1).Take(4))}{(required.Count > 5 ? ", …" : "")})" : "";
            throw new CheckpointException(
                $"{file} has no tensor {first}{others}, which {info.Name} needs; point to a checkpoint saved from {info.Name} (or, from code, let allowMissing keep the initialization of the tensors it lacks).", file);
        }

        foreach (var (hf, name) in source)
        {
            var p = byHf[hf];
            var t = reader[name];
            if (!t.Shape.Select(d => d).SequenceEqual(p.Shape.Select(d => (long)d)))
                throw new CheckpointException(
                    $"{file} holds {name} with shape {SafeTensors.ShapeString(t.Shape)} but {info.Name} needs {SafeTensors.ShapeString(p.Shape.Select(d => (long)d))} for {hf}; load it into a model of the same size or re-save it from one.", file);
            if (!SafeTensors.IsFloat(t.DType))
                throw new CheckpointException(
                    $"{file} holds {name} as {SafeTensors.Name(t.DType)}, not floating point; re-save it as F32 (or F16, BF16, F64).", file);
        }

        // Read everything into a copy, so a failure halfway leaves the model as it was; a fresh model (thrown away when
        // this fails) is read into directly, which spares BERT-Base 440 MB of copy and its page faults.
        T[]? copy = freshModel ? null : model.Parameters.ToArray();
        Span<T> staged = copy ?? model.Parameters;
        foreach (var (hf, name) in source)
        {
            var p = byHf[hf];
            var values = staged.Slice((int)p.Offset, (int)p.Length);
            reader.Read<T>(name, values);
            // A NaN or an infinity would only show later, as a NaN loss or NaN scores: refuse it here, naming the tensor.
            if (!Training.GradientClipping.AllFinite<T>(values))
            {
                bool nan = false;
                foreach (var v in values) nan |= T.IsNaN(v);
                throw new CheckpointException($"{file} holds {(nan ? "NaN" : "infinite")} values in {name} (a run that diverged before it saved?); load an earlier checkpoint.", file);
            }
        }
        // The model ties the masked-LM decoder to the word embeddings; a file whose decoder is another matrix
        // (tie_word_embeddings false) would predict otherwise once loaded, so it is refused rather than dropped.
        if (tied && decoderInFile is not null && source.TryGetValue(wordName, out var wordInFile) && wordInFile != decoderInFile)
        {
            var p = byHf[wordName];
            var t = reader[decoderInFile];
            bool same = t.Count == p.Length && SafeTensors.IsFloat(t.DType);
            if (same)
            {
                var decoder = new T[p.Length];
                reader.Read<T>(decoderInFile, decoder);
                same = decoder.AsSpan().SequenceEqual(staged.Slice((int)p.Offset, (int)p.Length));
            }
            if (!same)
                throw new CheckpointException($"{file} holds a masked-LM decoder weight ({decoderInFile}) that is not its word embeddings ({wordInFile}), but {info.Name} ties the two, so its masked-LM predictions would change; fine-tune from it (a classifier has no masked-LM head) or declare a model with an untied decoder.", file);
        }
        if (copy is not null) copy.CopyTo(model.Parameters);

        return new CheckpointReport(file,
            info.Parameters.Where(p => source.ContainsKey(p.HfName)).Select(p => p.HfName).ToArray(),
            missing, unused, ignored, reader.Metadata, config);
    }

    /// <summary>The optimizer state saved with the checkpoint (the caller disposes it), or null when there is none.</summary>
    public static Stream? LoadOptimizerState(string dir)
    {
        string path = Path.Combine(dir, OptimizerFile);
        return File.Exists(path) ? new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read) : null;
    }

    /// <summary>The weights file and the config.json beside it for a checkpoint directory or a file path. A directory's
    /// weights are the first of <see cref="TensorFiles.ModelFiles"/> it holds: model.safetensors, its shard index,
    /// pytorch_model.bin, its shard index (transformers' own order).</summary>
    static (string File, string? Config) Resolve(string dirOrFile)
    {
        if (File.Exists(dirOrFile))
            return (dirOrFile, Path.Combine(Path.GetDirectoryName(Path.GetFullPath(dirOrFile))!, ConfigFile));
        if (!Directory.Exists(dirOrFile))
            throw new CheckpointException($"The checkpoint directory {dirOrFile} does not exist; check the path or save a checkpoint there first.", dirOrFile);
        foreach (string name in TensorFiles.ModelFiles)
        {
            string file = Path.Combine(dirOrFile, name);
            if (File.Exists(file)) return (file, Path.Combine(dirOrFile, ConfigFile));
        }
        throw new CheckpointException($"{dirOrFile} has no {ModelFile} (nor pytorch_model.bin, nor a shard index of either); point to the directory a checkpoint was saved in.", dirOrFile);
    }
}

/// <summary>Writes through a temporary file in the target's folder, flushed to disk, then moved over the target,
/// so readers see either the old file or the whole new one.</summary>
public static class AtomicFile
{
    /// <summary>Writes a temporary sibling of <paramref name="path"/> (created with its folder) and returns its path;
    /// on failure the temporary file is removed and the exception rethrown.</summary>
    public static string WriteTemp(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
            write(fs);
            if (fs.CanWrite) fs.Flush(flushToDisk: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        return temp;
    }

    public static void Write(string path, Action<Stream> write)
    {
        string temp = WriteTemp(path, write);
        try { File.Move(temp, Path.GetFullPath(path), overwrite: true); }
        catch { TryDelete(temp); throw; }
    }

    public static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
