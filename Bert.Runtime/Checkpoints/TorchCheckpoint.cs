using System.Buffers.Binary;
using System.IO.Compression;
using System.Numerics;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Bert.Runtime.Checkpoints;

/// <summary>Reads a PyTorch state dict (<c>pytorch_model.bin</c>, <c>torch.save(model.state_dict(), f)</c>) without
/// Python: the zip format of torch 1.6 and later (<c>archive/data.pkl</c> beside one entry per storage) and the legacy
/// format before it (five pickles in a row, then the storages). The pickles are read by a data-only unpickler that
/// knows the few globals a state dict holds (OrderedDict, the tensor rebuild functions, the storage types) and refuses
/// any other (a pickled model class, a function: things that would run code when Python loads them) before building
/// anything. <see cref="Open"/> checks the whole layout up front (every storage present and as long as its tensors
/// need), and every problem is a <see cref="CheckpointException"/> in one sentence naming the file.</summary>
public sealed class TorchCheckpointReader : ITensorReader
{
    sealed record Storage(string Key, SafeTensorDType DType, long Numel, long Offset);
    sealed record TensorRef(Storage Storage, long Offset, long[] Shape, long[] Stride);
    sealed record StorageType(SafeTensorDType DType);

    static readonly Dictionary<string, SafeTensorDType> StorageTypes = new(StringComparer.Ordinal)
    {
        ["FloatStorage"] = SafeTensorDType.F32, ["DoubleStorage"] = SafeTensorDType.F64, ["HalfStorage"] = SafeTensorDType.F16,
        ["BFloat16Storage"] = SafeTensorDType.BF16, ["LongStorage"] = SafeTensorDType.I64, ["IntStorage"] = SafeTensorDType.I32,
        ["ShortStorage"] = SafeTensorDType.I16, ["CharStorage"] = SafeTensorDType.I8, ["ByteStorage"] = SafeTensorDType.U8,
        ["BoolStorage"] = SafeTensorDType.Bool,
    };

    static readonly HashSet<string> Rebuilders = new(StringComparer.Ordinal)
    {
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state", "torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type",
    };

    /// <summary>The tensor classes <c>_rebuild_from_type_v2</c> may name (a plain tensor or a parameter).</summary>
    static readonly HashSet<string> TensorTypes = new(StringComparer.Ordinal)
    {
        "torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter",
    };

    readonly ZipArchive? _zip;
    readonly string _zipPrefix = "";
    readonly SafeFileHandle? _file;
    readonly Dictionary<string, long> _legacyOffsets = new(StringComparer.Ordinal);   // storage key → file offset of its data
    readonly Dictionary<string, (SafeTensorDType DType, long Numel)> _legacySizes = new(StringComparer.Ordinal);   // storage key → its type and size
    readonly Dictionary<string, TensorRef> _refs = new(StringComparer.Ordinal);
    readonly Dictionary<string, long> _needed = new(StringComparer.Ordinal);   // zip storage key → the bytes its tensors reach
    readonly Dictionary<string, SafeTensorInfo> _byName = new(StringComparer.Ordinal);
    (string Key, byte[] Bytes)? _cached;

    public string Source { get; }
    /// <summary>Empty: a state dict carries no metadata.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; } = new Dictionary<string, string>();
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    public SafeTensorInfo this[string name] => _byName.TryGetValue(name, out var t) ? t
        : throw new KeyNotFoundException($"{Source} has no tensor '{name}'.");

    CheckpointException Invalid(string problem) =>
        new($"{Source} is not a PyTorch checkpoint this reader can use: {problem}; re-save it with transformers (model.save_pretrained(dir) writes model.safetensors) or download it again.", Source);

    TorchCheckpointReader(string path, ZipArchive? zip, SafeFileHandle? file)
    {
        Source = path; _zip = zip; _file = file;
        object? root;
        if (zip is not null)
        {
            var pkl = zip.Entries.Where(e => e.FullName.EndsWith("data.pkl", StringComparison.Ordinal)
                && (e.FullName == "data.pkl" || e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal))).ToList();
            if (pkl.Count != 1) throw Invalid(pkl.Count == 0 ? "the zip holds no data.pkl (is it a PyTorch file?)" : "the zip holds more than one data.pkl");
            _zipPrefix = pkl[0].FullName[..^"data.pkl".Length];
            var order = zip.GetEntry(_zipPrefix + "byteorder");
            if (order is not null && ReadEntry(order, 16).AsSpan().SequenceEqual("big"u8))
                throw Invalid("its tensors are stored big-endian");
            var bytes = ReadEntry(pkl[0], 64L << 20);   // a state dict's pickle is kilobytes: its tensors are elsewhere
            root = Unpickle(new MemoryStream(bytes, writable: false), legacyViews: false);
        }
        else
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            root = ReadLegacy(fs);
        }
        Tensors = BuildTensors(root);
    }

    /// <summary>Opens and checks a PyTorch checkpoint; keep the reader open while reading tensors.</summary>
    public static TorchCheckpointReader Open(string path)
    {
        var h = TensorFiles.OpenRead(path);
        try
        {
            Span<byte> head = stackalloc byte[4];
            int n = RandomAccess.Read(h, head, 0);
            if (n == 4 && head.SequenceEqual("PK\x03\x04"u8))
            {
                h.Dispose();
                ZipArchive? zip = null;
                try
                {
                    zip = ZipFile.OpenRead(path);
                    return new TorchCheckpointReader(path, zip, null);
                }
                catch (Exception e)
                {
                    zip?.Dispose();
                    if (e is InvalidDataException)
                        throw new CheckpointException($"{path} is not a PyTorch checkpoint this reader can use: its zip layout is damaged ({e.Message.TrimEnd('.')}); download it again or re-save it.", path, e);
                    throw;
                }
            }
            if (n >= 1 && head[0] == 0x80) return new TorchCheckpointReader(path, null, h);
            throw new CheckpointException(RandomAccess.GetLength(h) > 262 && IsTar(h)
                ? $"{path} is a PyTorch checkpoint in the tar format of torch 0.3 and older, which this reader does not read; load it with torch and re-save it (model.save_pretrained(dir) writes model.safetensors)."
                : $"{path} is neither a zip nor a pickle, so not a PyTorch checkpoint (torch.save); point to the pytorch_model.bin or model.safetensors that transformers wrote.", path);
        }
        catch
        {
            h.Dispose();
            throw;
        }
    }

    static bool IsTar(SafeFileHandle h)
    {
        Span<byte> magic = stackalloc byte[5];
        return RandomAccess.Read(h, magic, 257) == 5 && magic.SequenceEqual("ustar"u8);
    }

    /// <summary>An entry's first <paramref name="count"/> bytes (all of it by default), no more than <paramref name="limit"/>.</summary>
    byte[] ReadEntry(ZipArchiveEntry e, long limit, long? count = null)
    {
        long n = Math.Min(count ?? e.Length, e.Length);
        if (n > limit || n > Array.MaxLength) throw Invalid($"its entry {e.FullName} is {e.Length} bytes, more than this reader holds at once");
        var b = new byte[n];
        try
        {
            using var s = e.Open();
            s.ReadExactly(b);
        }
        catch (EndOfStreamException) { throw Invalid($"its entry {e.FullName} ends early"); }
        catch (InvalidDataException x) { throw Invalid($"its entry {e.FullName} is damaged ({x.Message.TrimEnd('.')})"); }
        return b;
    }

    /// <summary>The legacy format: magic number, protocol version, system info, the object, the storage keys; then each
    /// storage as an 8-byte element count and its bytes, in the keys' order.</summary>
    object? ReadLegacy(FileStream fs)
    {
        object? Next() => Unpickle(fs, legacyViews: true, plain: true);
        if (Next() is not BigInteger magic || magic != BigInteger.Parse("119547037146038801333356"))
            throw Invalid("it starts with a pickle but not with torch.save's magic number");
        if (!Equals(Next(), 1001L)) throw Invalid("its legacy protocol version is not 1001");
        if (Next() is not PyDict info) throw Invalid("its system information is not a dict");
        foreach (var (k, v) in info.Items)
            if (Equals(k, "little_endian") && Equals(v, false)) throw Invalid("its tensors are stored big-endian");
        var root = Unpickle(fs, legacyViews: true);
        if (Next() is not List<object?> keys || keys.Any(k => k is not string)) throw Invalid("its list of storages is not a list of names");
        long at = fs.Position, length = fs.Length;
        Span<byte> count = stackalloc byte[8];
        foreach (string key in keys.Cast<string>())
        {
            if (!_legacySizes.TryGetValue(key, out var size)) throw Invalid($"it lists the storage {key}, which no tensor uses");
            if (length - at < 8) throw Invalid($"it ends before the storage {key} (the file is probably truncated)");
            RandomAccess.Read(_file!, count, at);
            long numel = BinaryPrimitives.ReadInt64LittleEndian(count);
            if (numel != size.Numel) throw Invalid($"its storage {key} says {numel} elements where its tensors say {size.Numel}");
            _legacyOffsets[key] = at + 8;
            at = checked(at + 8 + numel * SafeTensors.SizeOf(size.DType));
            if (at > length) throw Invalid($"it ends inside the storage {key} (the file is probably truncated)");
        }
        foreach (var key in _legacySizes.Keys)
            if (!_legacyOffsets.ContainsKey(key)) throw Invalid($"its storage {key} is used by a tensor but not stored");
        return root;
    }

    object? Unpickle(Stream s, bool legacyViews, bool plain = false)
    {
        object Global(PyGlobal g)
        {
            string full = g.ToString();
            if (!plain)
            {
                if (full == "collections.OrderedDict" || Rebuilders.Contains(full) || TensorTypes.Contains(full) || full == "torch.Size") return g;
                if (g.Module == "torch" && StorageTypes.TryGetValue(g.Name, out var dt)) return new StorageType(dt);
            }
            throw new CheckpointException(
                $"{Source} pickles {full}, which a PyTorch state dict never holds (it could run code when Python loads it), so it was not loaded; load it only if you trust it, in Python, and save its state dict with model.save_pretrained(dir).", Source);
        }

        object? Call(object f, object?[] args)
        {
            if (f is not PyGlobal g) throw new FormatException($"a call of {f.GetType().Name}, which is not callable");
            string full = g.ToString();
            switch (full)
            {
                case "collections.OrderedDict" when args.Length == 0: return new PyDict();
                case "torch.Size" when args is [object?[] dims]: return dims;
                case "torch._utils._rebuild_tensor" or "torch._utils._rebuild_tensor_v2" when args.Length >= 4:
                    return new TensorRef(args[0] as Storage ?? throw new FormatException("a tensor's storage is not a storage"),
                        Long(args[1], "storage offset"), Longs(args[2], "size"), Longs(args[3], "stride"));
                case "torch._utils._rebuild_parameter" or "torch._utils._rebuild_parameter_with_state" when args.Length >= 1:
                    return args[0] as TensorRef ?? throw new FormatException("a parameter's data is not a tensor");
                case "torch._tensor._rebuild_from_type_v2" or "torch._tensor._rebuild_from_type" when args.Length >= 3:
                    if (args[1] is not PyGlobal t || !TensorTypes.Contains(t.ToString())) throw new FormatException("a tensor of a class other than Tensor or Parameter");
                    // torch wraps one of the plain rebuilds, never itself: no recursion for a crafted file to nest.
                    if (args[0] is not PyGlobal { Module: "torch._utils" } inner) throw new FormatException("a rebuild of a type around something other than a tensor rebuild");
                    return Call(inner, args[2] as object?[] ?? throw new FormatException("a rebuild's arguments are not a tuple"));
                default: throw new FormatException($"a call of {full} with {args.Length} arguments, which a state dict does not make");
            }
        }

        object? Persistent(object? pid)
        {
            // ('storage', type, key, location, numel) in the zip format; legacy adds view metadata (view key, offset, size) or None.
            if (pid is not object?[] { Length: >= 5 } t || !Equals(t[0], "storage") || t[1] is not StorageType type || t[2] is not string key)
                throw new FormatException("a persistent id that is not a storage");
            long numel = Elements(t[4], "storage size");
            if (!legacyViews)
                return new Storage(key, type.DType, numel, 0);
            if (_legacySizes.TryGetValue(key, out var known) && (known.DType != type.DType || known.Numel != numel))
                throw new FormatException($"the storage {key} is described twice, differently");
            _legacySizes[key] = (type.DType, numel);
            if (t.Length >= 6 && t[5] is object?[] { Length: 3 } view && view[0] is string)
                return new Storage(key, type.DType, Elements(view[2], "view size"), Elements(view[1], "view offset"));
            return new Storage(key, type.DType, numel, 0);
        }

        try { return new Unpickler(s, Global, Call, Persistent).Load(); }
        catch (FormatException e) { throw Invalid($"its pickle is not a state dict this reader understands ({e.Message})"); }
    }

    static long Long(object? o, string what) => o is long v && v >= 0 ? v : throw new FormatException($"a {what} that is not a non-negative integer");

    /// <summary>A storage's element count or offset: at most what one array holds, so that every byte count made of it
    /// fits a long.</summary>
    static long Elements(object? o, string what) => Long(o, what) is var v && v <= Array.MaxLength ? v
        : throw new FormatException($"a {what} of {v} elements, more than a storage this reader reads");

    static long[] Longs(object? o, string what) => o is object?[] t ? t.Select(x => Long(x, what)).ToArray()
        : throw new FormatException($"a tensor {what} that is not a tuple");

    IReadOnlyList<SafeTensorInfo> BuildTensors(object? root)
    {
        if (root is not PyDict dict)
            throw Invalid("it holds a single object, not a dict of tensors (torch.save(model.state_dict(), f) writes one)");
        var infos = new List<SafeTensorInfo>();
        var entryLengths = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (k, v) in dict.Items)
        {
            if (k is not string name) throw Invalid("one of its dict's keys is not a string");
            if (v is not TensorRef t)
                throw Invalid($"its entry '{name}' is {(v is PyDict ? "a dict" : v?.GetType().Name ?? "None")}, not a tensor (a training checkpoint rather than a state dict?)");
            if (t.Shape.Length != t.Stride.Length) throw Invalid($"tensor '{name}' has {t.Shape.Length} sizes but {t.Stride.Length} strides");
            long count, last;
            try
            {
                count = SafeTensors.CountOf(t.Shape);
                last = t.Offset;
                for (int i = 0; i < t.Shape.Length; i++) if (t.Shape[i] > 0) last = checked(last + (t.Shape[i] - 1) * t.Stride[i]);
            }
            catch (OverflowException) { throw Invalid($"tensor '{name}' has a shape too large to exist"); }
            if (count > 0 && last >= t.Storage.Numel)
                throw Invalid($"tensor '{name}' reaches element {last} of a storage of {t.Storage.Numel}");
            long storageBytes = checked((t.Storage.Offset + t.Storage.Numel) * SafeTensors.SizeOf(t.Storage.DType));
            if (_zip is not null)
            {
                if (!entryLengths.TryGetValue(t.Storage.Key, out long have))
                    entryLengths[t.Storage.Key] = have = (_zip.GetEntry(_zipPrefix + "data/" + t.Storage.Key)
                        ?? throw Invalid($"its storage data/{t.Storage.Key} (of tensor '{name}') is missing")).Length;
                if (have < storageBytes) throw Invalid($"its storage data/{t.Storage.Key} is {have} bytes where tensor '{name}' needs {storageBytes}");
                _needed[t.Storage.Key] = Math.Max(_needed.GetValueOrDefault(t.Storage.Key), storageBytes);
            }
            else if (t.Storage.Offset + t.Storage.Numel > _legacySizes[t.Storage.Key].Numel)
                throw Invalid($"tensor '{name}' views elements past the end of its storage {t.Storage.Key}");
            _refs[name] = t;
            var info = new SafeTensorInfo(name, t.Storage.DType, t.Shape, 0, count * SafeTensors.SizeOf(t.Storage.DType));
            _byName[name] = info;
            infos.Add(info);
        }
        return infos;
    }

    /// <summary>A storage's bytes (the last one read is kept: tied weights share one).</summary>
    byte[] StorageBytes(Storage s)
    {
        if (_cached is { } c && c.Key == s.Key) return c.Bytes;
        byte[] bytes;
        if (_zip is not null)
            bytes = ReadEntry(_zip.GetEntry(_zipPrefix + "data/" + s.Key)!, Array.MaxLength, _needed[s.Key]);
        else
        {
            var (dt, numel) = _legacySizes[s.Key];
            long n = numel * SafeTensors.SizeOf(dt);
            if (n > Array.MaxLength) throw Invalid($"its storage {s.Key} is {n} bytes, more than this reader holds at once");
            bytes = new byte[n];
            for (long at = 0; at < n;)
            {
                int r = RandomAccess.Read(_file!, bytes.AsSpan((int)at), _legacyOffsets[s.Key] + at);
                if (r <= 0) throw Invalid($"it ended while reading the storage {s.Key} (was it truncated while open?)");
                at += r;
            }
        }
        _cached = (s.Key, bytes);
        return bytes;
    }

    public void Read<T>(string name, Span<T> destination) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var info = this[name];
        var t = _refs[name];
        SafeTensors.CheckRead(info, Source, destination);
        int size = SafeTensors.SizeOf(info.DType);
        var bytes = StorageBytes(t.Storage);
        long start = t.Storage.Offset + t.Offset;
        if (IsContiguous(t.Shape, t.Stride))
        {
            SafeTensors.Convert(bytes.AsSpan(checked((int)(start * size)), destination.Length * size), info.DType, destination);
            return;
        }
        // A view (a transposed or sliced tensor saved as it was): gather its elements in row-major order.
        var gathered = new byte[destination.Length * size];
        var index = new long[t.Shape.Length];
        for (int e = 0; e < destination.Length; e++)
        {
            long at = start;
            for (int d = 0; d < index.Length; d++) at += index[d] * t.Stride[d];
            bytes.AsSpan(checked((int)(at * size)), size).CopyTo(gathered.AsSpan(e * size, size));
            for (int d = index.Length - 1; d >= 0 && ++index[d] == t.Shape[d]; d--) index[d] = 0;
        }
        SafeTensors.Convert(gathered, info.DType, destination);
    }

    static bool IsContiguous(long[] shape, long[] stride)
    {
        long expected = 1;
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            if (shape[d] != 1 && stride[d] != expected) return false;
            expected *= shape[d];
        }
        return true;
    }

    public void Dispose()
    {
        _zip?.Dispose();
        _file?.Dispose();
    }
}
