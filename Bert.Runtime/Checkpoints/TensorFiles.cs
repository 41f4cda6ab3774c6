using System.Numerics;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace Bert.Runtime.Checkpoints;

/// <summary>Opens a file of tensors with the reader its contents call for.</summary>
public static class TensorFiles
{
    /// <summary>The weight files a model folder may hold, in the order transformers prefers them.</summary>
    public static readonly string[] ModelFiles =
        [Checkpoint.ModelFile, ShardedTensorReader.SafeTensorsIndex, TorchModelFile, ShardedTensorReader.TorchIndex];

    public const string TorchModelFile = "pytorch_model.bin";

    /// <summary>Opens a weights file to read, or says in one sentence why it cannot be (every reader's opening).</summary>
    internal static SafeFileHandle OpenRead(string path)
    {
        try { return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw CannotOpen(path, e); }
    }

    internal static CheckpointException CannotOpen(string path, Exception e) =>
        new($"Cannot open {path} ({e.Message.TrimEnd('.')}); check that the file exists and is readable.", path, e);

    /// <summary>A shard index (<c>*.index.json</c>) → <see cref="ShardedTensorReader"/>; a <c>.safetensors</c> file, or
    /// one shaped as safetensors (its JSON header's '{' at byte 8) → <see cref="SafeTensorsReader"/>; a zip, a pickle or
    /// another <c>.bin</c>, <c>.pt</c>, <c>.pth</c> file → <see cref="TorchCheckpointReader"/>; anything else →
    /// <see cref="SafeTensorsReader"/>, which checks its layout. A Git LFS pointer in place of the weights (or of an
    /// index) is one sentence saying so.</summary>
    public static ITensorReader Open(string path)
    {
        Span<byte> head = stackalloc byte[24];
        int n;
        using (var h = OpenRead(path)) n = RandomAccess.Read(h, head, 0);
        head = head[..n];
        if (head.StartsWith("version https://git-lfs"u8))
            throw new CheckpointException($"{path} is a Git LFS pointer, not the weights it stands for; fetch them (git lfs pull in the clone) or download the file itself.", path);
        if (path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)) return ShardedTensorReader.Open(path);
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return SafeTensorsReader.Open(path);
        // safetensors: an 8-byte header length, then the JSON header's '{' (the length's first byte may be 0x80, as a
        // pickle's first byte is); torch: a zip, or a pickle (PROTO 2..5).
        bool torch = head.StartsWith("PK\x03\x04"u8)
            || (!(n > 8 && head[8] == (byte)'{') && (head is [0x80, >= 2 and <= 5, ..]
                || path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".pt", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".pth", StringComparison.OrdinalIgnoreCase)));
        return torch ? TorchCheckpointReader.Open(path) : SafeTensorsReader.Open(path);
    }
}

/// <summary>A checkpoint split into shards, as transformers' save_pretrained writes a large model
/// (<c>model.safetensors.index.json</c> or <c>pytorch_model.bin.index.json</c>: a <c>weight_map</c> from each tensor's
/// name to the shard that holds it, beside the shards). Every shard is opened and checked up front, and must hold
/// the tensors the index places in it; a tensor in two shards is refused.</summary>
public sealed class ShardedTensorReader : ITensorReader
{
    public const string SafeTensorsIndex = "model.safetensors.index.json", TorchIndex = "pytorch_model.bin.index.json";

    readonly List<ITensorReader> _shards = [];
    readonly Dictionary<string, (ITensorReader Shard, SafeTensorInfo Info)> _byName = new(StringComparer.Ordinal);

    public string Source { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    public SafeTensorInfo this[string name] => _byName.TryGetValue(name, out var t) ? t.Info
        : throw new KeyNotFoundException($"{Source} has no tensor '{name}'.");

    CheckpointException Invalid(string problem) =>
        new($"{Source} is not a shard index this reader can use: {problem}; download the checkpoint again or re-save it with save_pretrained.", Source);

    ShardedTensorReader(string index)
    {
        Source = index;
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(index)); }
        catch (JsonException e) { throw Invalid($"it is not valid JSON (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1})"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw TensorFiles.CannotOpen(index, e); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            throw Invalid("it has no weight_map object");
        string dir = Path.GetDirectoryName(Path.GetFullPath(index))!;
        var placed = new Dictionary<string, List<string>>(StringComparer.Ordinal);   // shard file → the tensors the index puts there
        foreach (var p in map.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String) throw Invalid($"the shard of '{p.Name}' is not a file name");
            string file = p.Value.GetString()!;
            if (file.Length == 0 || file.Contains('/') || file.Contains('\\') || file is "." or "..")
                throw Invalid($"the shard of '{p.Name}' is \"{file}\", not a file beside the index");
            if (file.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase))
                throw Invalid($"the shard of '{p.Name}' is \"{file}\", another index rather than a file of tensors");
            if (!placed.TryGetValue(file, out var names)) placed[file] = names = [];
            names.Add(p.Name);
        }
        if (placed.Count == 0) throw Invalid("its weight_map is empty");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var tensors = new List<SafeTensorInfo>();
        try
        {
            foreach (var (file, names) in placed.OrderBy(p => p.Key, StringComparer.Ordinal))
            {
                string path = Path.Combine(dir, file);
                if (!File.Exists(path)) throw Invalid($"its shard {file} is missing (an interrupted download?)");
                var shard = TensorFiles.Open(path);
                _shards.Add(shard);
                var held = shard.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
                foreach (var n in names)
                    if (!held.Contains(n)) throw Invalid($"its shard {file} has no tensor '{n}', which the index places there");
                foreach (var t in shard.Tensors)
                {
                    if (_byName.TryGetValue(t.Name, out var other))
                        throw Invalid($"the tensor '{t.Name}' is in both {Path.GetFileName(other.Shard.Source)} and {file}");
                    _byName[t.Name] = (shard, t);
                    tensors.Add(t);
                }
                foreach (var (k, v) in shard.Metadata) metadata.TryAdd(k, v);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
        Metadata = metadata;
        Tensors = tensors;
    }

    /// <summary>Opens an index and every shard it names; keep the reader open while reading tensors.</summary>
    public static ShardedTensorReader Open(string index) => new(index);

    public void Read<T>(string name, Span<T> destination) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (!_byName.TryGetValue(name, out var t)) throw new KeyNotFoundException($"{Source} has no tensor '{name}'.");
        t.Shard.Read(name, destination);
    }

    public void Dispose()
    {
        foreach (var s in _shards) s.Dispose();
        _shards.Clear();
    }
}
