using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace Bert.Runtime.Checkpoints;

/// <summary>Element types of the safetensors format, as its header spells them (F8E5M2 is "F8_E5M2", ...).</summary>
public enum SafeTensorDType { Bool, U8, I8, F8E5M2, F8E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, C64 }

/// <summary>One tensor of a safetensors file: element type, shape, and byte range relative to the data section.</summary>
public sealed record SafeTensorInfo(string Name, SafeTensorDType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Number of elements (1 for a scalar, shape []).</summary>
    public long Count => SafeTensors.CountOf(Shape);
    public long ByteLength => End - Begin;
    public override string ToString() => $"{Name}: {SafeTensors.Name(DType)} {SafeTensors.ShapeString(Shape)}";
}

/// <summary>The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian header
/// length N, N bytes of UTF-8 JSON (padded with spaces to a multiple of 8) mapping each tensor name to its dtype,
/// shape and data_offsets (relative to the data section) plus an optional "__metadata__" string map, then the
/// raw little-endian tensor data, contiguous, in offset order.</summary>
public static class SafeTensors
{
    /// <summary>The reference implementation's limit on the JSON header.</summary>
    public const long MaxHeaderBytes = 100_000_000;
    public const string MetadataKey = "__metadata__";

    static readonly (SafeTensorDType T, string Name, int Size)[] Table =
    [
        (SafeTensorDType.Bool, "BOOL", 1), (SafeTensorDType.U8, "U8", 1), (SafeTensorDType.I8, "I8", 1),
        (SafeTensorDType.F8E5M2, "F8_E5M2", 1), (SafeTensorDType.F8E4M3, "F8_E4M3", 1),
        (SafeTensorDType.I16, "I16", 2), (SafeTensorDType.U16, "U16", 2), (SafeTensorDType.F16, "F16", 2), (SafeTensorDType.BF16, "BF16", 2),
        (SafeTensorDType.I32, "I32", 4), (SafeTensorDType.U32, "U32", 4), (SafeTensorDType.F32, "F32", 4),
        (SafeTensorDType.F64, "F64", 8), (SafeTensorDType.I64, "I64", 8), (SafeTensorDType.U64, "U64", 8), (SafeTensorDType.C64, "C64", 8),
    ];

    /// <summary>Bytes per element.</summary>
    public static int SizeOf(SafeTensorDType t) => Table[(int)t].Size;

    /// <summary>The header spelling: "F32", "BF16", "F8_E4M3", ...</summary>
    public static string Name(SafeTensorDType t) => Table[(int)t].Name;

    public static bool TryParse(string name, out SafeTensorDType t)
    {
        foreach (var e in Table)
            if (e.Name == name) { t = e.T; return true; }
        t = default;
        return false;
    }

    /// <summary>Whether <see cref="SafeTensorsReader.Read{T}(string, Span{T})"/> converts this type to floating point.</summary>
    public static bool IsFloat(SafeTensorDType t) => t is SafeTensorDType.F16 or SafeTensorDType.BF16 or SafeTensorDType.F32 or SafeTensorDType.F64;

    /// <summary>The file type that holds T without loss: F32 for float, F64 for double, F16 for Half.</summary>
    public static SafeTensorDType DTypeOf<T>() =>
        typeof(T) == typeof(float) ? SafeTensorDType.F32 :
        typeof(T) == typeof(double) ? SafeTensorDType.F64 :
        typeof(T) == typeof(Half) ? SafeTensorDType.F16 :
        throw new NotSupportedException($"No safetensors dtype for {typeof(T).Name}.");

    public static SafeTensorsReader Open(string path) => SafeTensorsReader.Open(path);

    internal static long CountOf(long[] shape)
    {
        long n = 1;
        foreach (var d in shape) n = checked(n * d);
        return n;
    }

    internal static string ShapeString(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";

    /// <summary>float → bfloat16 bits, rounding to nearest even; NaN stays a (quiet) NaN.</summary>
    public static ushort ToBFloat16(float x)
    {
        uint u = BitConverter.SingleToUInt32Bits(x);
        if (float.IsNaN(x)) return (ushort)((u >> 16) | 0x0040);
        u += 0x7FFF + ((u >> 16) & 1);
        return (ushort)(u >> 16);
    }

    public static float FromBFloat16(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>What every reader checks before reading <paramref name="t"/> into <paramref name="destination"/>: a
    /// floating-point tensor (else a <see cref="CheckpointException"/> naming <paramref name="source"/>) of as many elements.</summary>
    internal static void CheckRead<T>(SafeTensorInfo t, string source, Span<T> destination)
    {
        if (!IsFloat(t.DType))
            throw new CheckpointException($"Tensor '{t.Name}' in {source} is stored as {Name(t.DType)}, not floating point, so it cannot be read as {typeof(T).Name}; re-save it as F32.", source);
        if (destination.Length != t.Count)
            throw new ArgumentException($"Tensor '{t.Name}' has {t.Count} elements but the destination holds {destination.Length}.", nameof(destination));
    }

    /// <summary>Little-endian elements of a floating-point <paramref name="dtype"/> (F32, F64, F16, BF16) converted to T,
    /// rounding to nearest when narrowing; <paramref name="source"/> holds exactly <paramref name="destination"/>'s count.</summary>
    public static void Convert<T>(ReadOnlySpan<byte> source, SafeTensorDType dtype, Span<T> destination) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (!IsFloat(dtype)) throw new ArgumentException($"{Name(dtype)} is not a floating-point type.", nameof(dtype));
        if (source.Length != destination.Length * SizeOf(dtype))
            throw new ArgumentException($"{source.Length} bytes of {Name(dtype)} do not make {destination.Length} elements.", nameof(source));
        int n = destination.Length;
        switch (dtype)
        {
            case SafeTensorDType.F32:
                for (int i = 0; i < n; i++) destination[i] = T.CreateTruncating(BinaryPrimitives.ReadSingleLittleEndian(source[(4 * i)..]));
                break;
            case SafeTensorDType.F64:
                for (int i = 0; i < n; i++) destination[i] = T.CreateTruncating(BinaryPrimitives.ReadDoubleLittleEndian(source[(8 * i)..]));
                break;
            case SafeTensorDType.F16:
                for (int i = 0; i < n; i++) destination[i] = T.CreateTruncating((float)BinaryPrimitives.ReadHalfLittleEndian(source[(2 * i)..]));
                break;
            case SafeTensorDType.BF16:
                for (int i = 0; i < n; i++) destination[i] = T.CreateTruncating(FromBFloat16(BinaryPrimitives.ReadUInt16LittleEndian(source[(2 * i)..])));
                break;
        }
    }
}

/// <summary>A file of named tensors that <see cref="Checkpoint.Load{T}"/> reads: safetensors (<see cref="SafeTensorsReader"/>),
/// a PyTorch checkpoint (<see cref="TorchCheckpointReader"/>) or the shards of either behind an index
/// (<see cref="ShardedTensorReader"/>). <see cref="TensorFiles.Open"/> picks the reader by the file's name and first bytes.</summary>
public interface ITensorReader : IDisposable
{
    /// <summary>The file path (or source name) used in messages.</summary>
    string Source { get; }
    IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Every tensor; for safetensors Begin and End are the data offsets, for the others 0 and the byte length.</summary>
    IReadOnlyList<SafeTensorInfo> Tensors { get; }
    SafeTensorInfo this[string name] { get; }
    /// <summary>Reads a floating-point tensor (F32, F64, F16 or BF16) into <paramref name="destination"/>, converting to
    /// T (rounding to nearest when narrowing).</summary>
    void Read<T>(string name, Span<T> destination) where T : unmanaged, IBinaryFloatingPointIeee754<T>;
}

/// <summary>Reads a safetensors file. <see cref="Open"/> validates the whole layout up front (header length,
/// JSON, dtypes, shapes against byte ranges, ranges contiguous and exactly covering the data) and throws
/// <see cref="CheckpointException"/> naming the file and the problem; tensors are then read on demand.</summary>
public sealed class SafeTensorsReader : ITensorReader
{
    readonly SafeFileHandle? _file;
    readonly byte[]? _bytes;
    readonly Dictionary<string, SafeTensorInfo> _byName;
    readonly long _dataStart;

    SafeTensorsReader(string source, SafeFileHandle? file, byte[]? bytes)
    {
        Source = source; _file = file; _bytes = bytes;
        long length = file is not null ? RandomAccess.GetLength(file) : bytes!.LongLength;
        (Metadata, Tensors, _dataStart) = Parse(length);
        _byName = Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>Opens and validates a file; keep the reader open while reading tensors.</summary>
    public static SafeTensorsReader Open(string path)
    {
        var h = TensorFiles.OpenRead(path);
        try { return new SafeTensorsReader(path, h, null); }
        catch { h.Dispose(); throw; }
    }

    /// <summary>Reads from bytes in memory (validated like a file); <paramref name="source"/> names them in errors.</summary>
    public static SafeTensorsReader FromBytes(byte[] bytes, string source = "<memory>") => new(source, null, bytes);

    /// <summary>The file path (or source name) used in messages.</summary>
    public string Source { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>Every tensor, in data-offset order.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    public bool Contains(string name) => _byName.ContainsKey(name);
    public bool TryGet(string name, out SafeTensorInfo info) => _byName.TryGetValue(name, out info!);

    public SafeTensorInfo this[string name] => _byName.TryGetValue(name, out var t) ? t
        : throw new KeyNotFoundException($"{Source} has no tensor '{name}'.");

    CheckpointException Invalid(string problem) =>
        new($"{Source} is not a valid safetensors file: {problem}; re-save it or download it again.", Source);

    void ReadAt(long offset, Span<byte> dst)
    {
        if (_bytes is not null) { _bytes.AsSpan(checked((int)offset), dst.Length).CopyTo(dst); return; }
        while (dst.Length > 0)
        {
            int n = RandomAccess.Read(_file!, dst, offset);
            if (n <= 0) throw new CheckpointException($"{Source} ended early while reading it (was it truncated while open?); re-save it or download it again.", Source);
            dst = dst[n..]; offset += n;
        }
    }

    (IReadOnlyDictionary<string, string>, IReadOnlyList<SafeTensorInfo>, long) Parse(long fileLength)
    {
        if (fileLength < 8) throw Invalid($"it is {fileLength} bytes long, shorter than the 8-byte header length that starts the format");
        Span<byte> head = stackalloc byte[8];
        ReadAt(0, head);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(head);
        if (n > (ulong)SafeTensors.MaxHeaderBytes)
            throw Invalid($"the header length field says {n} bytes, more than the format's limit of {SafeTensors.MaxHeaderBytes} (the file is probably not safetensors, or corrupt)");
        if ((long)n > fileLength - 8)
            throw Invalid($"the header length field says {n} bytes but only {fileLength - 8} bytes follow it (the file is probably truncated)");
        if (n < 2) throw Invalid($"the header is {n} bytes long, too short to hold a JSON object");
        var headerBytes = new byte[(int)n];
        ReadAt(8, headerBytes);
        long dataStart = 8 + (long)n, dataLength = fileLength - dataStart;

        string json;
        try { json = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(headerBytes); }
        catch (DecoderFallbackException) { throw Invalid("its JSON header is not valid UTF-8"); }
        if (json.TrimStart().FirstOrDefault() != '{') throw Invalid("its header does not start with a JSON object '{'");

        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 }); }
        catch (JsonException e) { throw Invalid($"its header is not valid JSON ({e.Message.TrimEnd('.')})"); }

        using var _ = doc;
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var tensors = new List<SafeTensorInfo>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Invalid("its header is JSON but not an object");
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (!seen.Add(p.Name)) throw Invalid($"the header lists '{p.Name}' twice");
            if (p.Name == SafeTensors.MetadataKey)
            {
                if (p.Value.ValueKind != JsonValueKind.Object) throw Invalid("its __metadata__ is not a JSON object");
                foreach (var m in p.Value.EnumerateObject())
                {
                    if (m.Value.ValueKind != JsonValueKind.String) throw Invalid($"metadata entry '{m.Name}' is not a string");
                    if (!metadata.TryAdd(m.Name, m.Value.GetString()!)) throw Invalid($"metadata entry '{m.Name}' appears twice");
                }
                continue;
            }
            tensors.Add(ParseTensor(p.Name, p.Value));
        }

        // Contiguous from 0, no overlap, no gap, exactly covering the data: what the reference implementation accepts.
        var ordered = tensors.OrderBy(t => t.Begin).ThenBy(t => t.End).ToList();
        long at = 0;
        SafeTensorInfo? prev = null;
        foreach (var t in ordered)
        {
            if (t.End > dataLength)
                throw Invalid($"tensor '{t.Name}' has data_offsets [{t.Begin}, {t.End}] beyond the {dataLength} bytes of data (the file is probably truncated)");
            if (t.Begin < at)
                throw Invalid($"tensors '{prev!.Name}' (bytes {prev.Begin}–{prev.End}) and '{t.Name}' (bytes {t.Begin}–{t.End}) overlap");
            if (t.Begin > at)
                throw Invalid(prev is null
                    ? $"the data starts with {t.Begin} bytes that no tensor describes (the first, '{t.Name}', begins at {t.Begin}, not 0)"
                    : $"there are {t.Begin - at} bytes between tensors '{prev.Name}' and '{t.Name}' that no tensor describes");
            at = t.End; prev = t;
        }
        if (at != dataLength)
            throw Invalid($"its {dataLength} bytes of data are {dataLength - at} more than the header's tensors describe ({at} bytes)");
        return (metadata, ordered, dataStart);
    }

    SafeTensorInfo ParseTensor(string name, JsonElement v)
    {
        if (v.ValueKind != JsonValueKind.Object) throw Invalid($"the header entry for '{name}' is not an object");
        if (!v.TryGetProperty("dtype", out var d) || d.ValueKind != JsonValueKind.String)
            throw Invalid($"tensor '{name}' has no dtype string");
        var dts = d.GetString()!;
        if (!SafeTensors.TryParse(dts, out var dtype)) throw Invalid($"tensor '{name}' has dtype \"{dts}\", which this reader does not know");
        if (!v.TryGetProperty("shape", out var s) || s.ValueKind != JsonValueKind.Array)
            throw Invalid($"tensor '{name}' has no shape array");
        var shape = new long[s.GetArrayLength()];
        int i = 0;
        foreach (var e in s.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out var x) || x < 0)
                throw Invalid($"tensor '{name}' has shape {s.GetRawText()}, which is not a list of non-negative integers");
            shape[i++] = x;
        }
        if (!v.TryGetProperty("data_offsets", out var o) || o.ValueKind != JsonValueKind.Array || o.GetArrayLength() != 2)
            throw Invalid($"tensor '{name}' has no data_offsets pair [begin, end]");
        var off = new long[2];
        i = 0;
        foreach (var e in o.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out var x) || x < 0)
                throw Invalid($"tensor '{name}' has data_offsets {o.GetRawText()}, which are not non-negative integers");
            off[i++] = x;
        }
        if (off[1] < off[0]) throw Invalid($"tensor '{name}' has data_offsets [{off[0]}, {off[1]}] that end before they begin");
        long bytes;
        try { bytes = checked(SafeTensors.CountOf(shape) * SafeTensors.SizeOf(dtype)); }
        catch (OverflowException) { throw Invalid($"tensor '{name}' has shape {SafeTensors.ShapeString(shape)}, too large to exist"); }
        if (bytes != off[1] - off[0])
            throw Invalid($"tensor '{name}' is {dts} {SafeTensors.ShapeString(shape)}, which takes {bytes} bytes, but its data_offsets [{off[0]}, {off[1]}] span {off[1] - off[0]}");
        return new SafeTensorInfo(name, dtype, shape, off[0], off[1]);
    }

    /// <summary>The tensor's raw little-endian bytes.</summary>
    public byte[] ReadBytes(string name)
    {
        var t = this[name];
        var b = new byte[checked((int)t.ByteLength)];
        ReadAt(_dataStart + t.Begin, b);
        return b;
    }

    public T[] Read<T>(string name) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var r = new T[checked((int)this[name].Count)];
        Read<T>(name, r);
        return r;
    }

    /// <summary>Reads a floating-point tensor (F32, F64, F16 or BF16) into <paramref name="destination"/>,
    /// converting to T (rounding to nearest when narrowing).</summary>
    public void Read<T>(string name, Span<T> destination) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var t = this[name];
        SafeTensors.CheckRead(t, Source, destination);
        int size = SafeTensors.SizeOf(t.DType);
        long offset = _dataStart + t.Begin;
        // Same type on a little-endian machine: straight into the destination's bytes.
        if (BitConverter.IsLittleEndian && ((typeof(T) == typeof(float) && t.DType == SafeTensorDType.F32)
            || (typeof(T) == typeof(double) && t.DType == SafeTensorDType.F64) || (typeof(T) == typeof(Half) && t.DType == SafeTensorDType.F16)))
        {
            ReadAt(offset, MemoryMarshal.AsBytes(destination));
            return;
        }
        const int ChunkElements = 1 << 16;
        var buf = new byte[ChunkElements * size];
        for (int start = 0; start < destination.Length; start += ChunkElements)
        {
            int n = Math.Min(ChunkElements, destination.Length - start);
            var b = buf.AsSpan(0, n * size);
            ReadAt(offset + (long)start * size, b);
            SafeTensors.Convert(b, t.DType, destination.Slice(start, n));
        }
    }

    public void Dispose() => _file?.Dispose();
}

/// <summary>Builds a safetensors file: tensors are copied (converted to their file dtype) as they are added,
/// then written with the header padded to a multiple of 8 and the data ordered as the reference implementation
/// orders it (wider dtypes first, then by name).</summary>
public sealed class SafeTensorsWriter
{
    readonly List<(string Name, SafeTensorDType DType, long[] Shape, byte[] Data)> _tensors = [];
    readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <summary>String metadata written under "__metadata__" (Hugging Face expects "format": "pt").</summary>
    public Dictionary<string, string> Metadata { get; } = new(StringComparer.Ordinal);

    public int Count => _tensors.Count;

    public SafeTensorsWriter Add<T>(string name, int[] shape, ReadOnlySpan<T> values, SafeTensorDType? dtype = null)
        where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        Add(name, shape.Select(d => (long)d).ToArray(), values, dtype);

    /// <summary>Adds a floating-point tensor, stored as <paramref name="dtype"/> (F32, F64, F16 or BF16; by default
    /// the type that holds T exactly). Narrowing rounds to nearest even.</summary>
    public SafeTensorsWriter Add<T>(string name, long[] shape, ReadOnlySpan<T> values, SafeTensorDType? dtype = null)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var dt = dtype ?? SafeTensors.DTypeOf<T>();
        if (!SafeTensors.IsFloat(dt)) throw new ArgumentException($"Add<{typeof(T).Name}> writes floating-point dtypes only, not {SafeTensors.Name(dt)}; use AddRaw.", nameof(dtype));
        Check(name, shape, values.Length);
        int size = SafeTensors.SizeOf(dt);
        var data = new byte[checked(values.Length * size)];
        var b = data.AsSpan();
        if (BitConverter.IsLittleEndian && ((typeof(T) == typeof(float) && dt == SafeTensorDType.F32)
            || (typeof(T) == typeof(double) && dt == SafeTensorDType.F64) || (typeof(T) == typeof(Half) && dt == SafeTensorDType.F16)))
        {
            MemoryMarshal.AsBytes(values).CopyTo(b);
            _tensors.Add((name, dt, (long[])shape.Clone(), data));
            return this;
        }
        for (int i = 0; i < values.Length; i++)
        {
            switch (dt)
            {
                case SafeTensorDType.F32: BinaryPrimitives.WriteSingleLittleEndian(b[(4 * i)..], float.CreateTruncating(values[i])); break;
                case SafeTensorDType.F64: BinaryPrimitives.WriteDoubleLittleEndian(b[(8 * i)..], double.CreateTruncating(values[i])); break;
                case SafeTensorDType.F16: BinaryPrimitives.WriteHalfLittleEndian(b[(2 * i)..], Half.CreateTruncating(values[i])); break;
                case SafeTensorDType.BF16: BinaryPrimitives.WriteUInt16LittleEndian(b[(2 * i)..], SafeTensors.ToBFloat16(float.CreateTruncating(values[i]))); break;
            }
        }
        _tensors.Add((name, dt, (long[])shape.Clone(), data));
        return this;
    }

    /// <summary>Adds a tensor of any dtype from its little-endian bytes.</summary>
    public SafeTensorsWriter AddRaw(string name, SafeTensorDType dtype, long[] shape, ReadOnlySpan<byte> littleEndianData)
    {
        long count = Check(name, shape, -1);
        if (littleEndianData.Length != count * SafeTensors.SizeOf(dtype))
            throw new ArgumentException($"Tensor '{name}' is {SafeTensors.Name(dtype)} {SafeTensors.ShapeString(shape)}, {count * SafeTensors.SizeOf(dtype)} bytes, but {littleEndianData.Length} bytes were given.");
        _tensors.Add((name, dtype, (long[])shape.Clone(), littleEndianData.ToArray()));
        return this;
    }

    long Check(string name, long[] shape, int length)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name == SafeTensors.MetadataKey) throw new ArgumentException($"'{name}' is reserved for metadata.", nameof(name));
        if (shape.Any(d => d < 0)) throw new ArgumentException($"Tensor '{name}' has a negative dimension in {SafeTensors.ShapeString(shape)}.", nameof(shape));
        long count = SafeTensors.CountOf(shape);
        if (length >= 0 && count != length)
            throw new ArgumentException($"Tensor '{name}' has shape {SafeTensors.ShapeString(shape)} ({count} elements) but {length} values were given.");
        if (!_names.Add(name)) throw new ArgumentException($"Tensor '{name}' was already added.", nameof(name));
        return count;
    }

    /// <summary>The JSON header, padded with spaces to a multiple of 8 bytes.</summary>
    byte[] Header(List<(string Name, SafeTensorDType DType, long[] Shape, byte[] Data)> ordered)
    {
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (Metadata.Count > 0)
            {
                w.WriteStartObject(SafeTensors.MetadataKey);
                foreach (var (k, v) in Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long at = 0;
            foreach (var t in ordered)
            {
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", SafeTensors.Name(t.DType));
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(at);
                w.WriteNumberValue(at + t.Data.LongLength);
                w.WriteEndArray();
                w.WriteEndObject();
                at += t.Data.LongLength;
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    public void WriteTo(Stream stream)
    {
        var ordered = _tensors.OrderByDescending(t => SafeTensors.SizeOf(t.DType)).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
        var header = Header(ordered);
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
        stream.Write(len);
        stream.Write(header);
        foreach (var t in ordered) stream.Write(t.Data);
    }

    public byte[] ToArray()
    {
        var ms = new MemoryStream();
        WriteTo(ms);
        return ms.ToArray();
    }

    /// <summary>Writes the file atomically: a temporary file in the same folder, flushed, then moved over
    /// <paramref name="path"/>. The folder is created if missing.</summary>
    public void Save(string path) => AtomicFile.Write(path, WriteTo);
}
