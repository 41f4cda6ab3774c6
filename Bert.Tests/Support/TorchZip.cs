using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Text;

namespace Bert.Tests.Support;

/// <summary>Writes a float32 state dict as torch.save does (the zip format, pickle protocol 2, the same opcodes as
/// torch 1.13's files in Checkpoints/Fixtures), for tests that need a whole model as <c>pytorch_model.bin</c> where no
/// torch is installed. The reader is checked against files torch wrote (TorchCheckpointTests); this only makes more.</summary>
public static class TorchZip
{
    /// <param name="tensors">name, shape and values, in order.</param>
    /// <param name="shares">name → the earlier name whose storage it shares (as a tied weight is saved).</param>
    public static void Write(string path, IEnumerable<(string Name, long[] Shape, float[] Values)> tensors, IReadOnlyDictionary<string, string>? shares = null)
    {
        var pkl = new MemoryStream();
        void Op(byte b) => pkl.WriteByte(b);
        void Str(string s)
        {
            var b = Encoding.UTF8.GetBytes(s);
            Op((byte)'X');
            Span<byte> n = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(n, (uint)b.Length);
            pkl.Write(n);
            pkl.Write(b);
        }
        void Int(long v)
        {
            Op((byte)'J');
            Span<byte> n = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(n, checked((int)v));
            pkl.Write(n);
        }
        void Global(string module, string name) => pkl.Write(Encoding.ASCII.GetBytes($"c{module}\n{name}\n"));
        void Tuple(IEnumerable<long> xs) { Op((byte)'('); foreach (var x in xs) Int(x); Op((byte)'t'); }

        var storages = new List<(string Key, float[] Values)>();
        var keyOf = new Dictionary<string, (string Key, long Numel)>();
        Op(0x80); Op(2);
        Global("collections", "OrderedDict"); Op((byte)')'); Op((byte)'R');
        Op((byte)'(');
        foreach (var (name, shape, values) in tensors)
        {
            if (shares is not null && shares.TryGetValue(name, out var other)) keyOf[name] = keyOf[other];
            else
            {
                keyOf[name] = (storages.Count.ToString(), values.Length);
                storages.Add((keyOf[name].Key, values));
            }
            var stride = new long[shape.Length];
            for (long d = shape.Length - 1, s = 1; d >= 0; s *= shape[d], d--) stride[d] = s;
            Str(name);
            Global("torch._utils", "_rebuild_tensor_v2");
            Op((byte)'(');
            Op((byte)'('); Str("storage"); Global("torch", "FloatStorage"); Str(keyOf[name].Key); Str("cpu"); Int(keyOf[name].Numel); Op((byte)'t');
            Op((byte)'Q');
            Int(0); Tuple(shape); Tuple(stride); Op(0x89);
            Global("collections", "OrderedDict"); Op((byte)')'); Op((byte)'R');
            Op((byte)'t'); Op((byte)'R');
        }
        Op((byte)'u'); Op((byte)'.');

        using var zip = new ZipArchive(File.Create(path), ZipArchiveMode.Create);
        void Entry(string name, ReadOnlySpan<byte> bytes)
        {
            using var s = zip.CreateEntry("archive/" + name, CompressionLevel.NoCompression).Open();
            s.Write(bytes);
        }
        Entry("data.pkl", pkl.ToArray());
        Entry("byteorder", "little"u8);
        foreach (var (key, values) in storages) Entry("data/" + key, MemoryMarshal.AsBytes(values.AsSpan()));
        Entry("version", "3\n"u8);
    }
}
