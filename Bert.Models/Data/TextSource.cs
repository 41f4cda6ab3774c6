using System.IO.Compression;
using System.Text;
using System.Text.Json;

namespace Bert.Data;

/// <summary>Reads text files the way every reader here needs: strict UTF-8 (a leading BOM is dropped), lines split
/// on <c>'\n'</c> only with one trailing <c>'\r'</c> trimmed. Other characters that some readers treat as line
/// breaks (U+0085 NEL, U+2028) stay inside their line: the UCI imdb file has NEL inside two sentences.</summary>
public static class TextSource
{
    static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Reads a whole file as UTF-8; a missing, empty or non-UTF-8 file is a <see cref="DataException"/>.</summary>
    public static string ReadFile(string path)
    {
        if (!File.Exists(path)) throw Missing(path);
        return Decode(File.ReadAllBytes(path), path);
    }

    static DataException Missing(string path) =>
        new($"Data file '{path}' does not exist; check the path (relative paths start at '{Environment.CurrentDirectory}').", path);

    static DataException Empty(string what, string name) => new($"{what} is empty; point to the file that holds the data.", name);

    /// <summary>Bytes that are not UTF-8 at <paramref name="line"/>: a file is to be re-saved, standard input
    /// (<paramref name="subject"/> given) converted and passed again.</summary>
    static DataException NotUtf8(string what, string name, int line, string? subject, Exception inner) =>
        new($"{what} is not valid UTF-8 (first bad byte on line {line}); " + (subject is null
            ? "re-save it as UTF-8, for example with `iconv -f cp1252 -t utf-8`."
            : "convert it to UTF-8, for example with `iconv -f cp1252 -t utf-8`, and pass it again."), name, line, inner);

    /// <summary>The longest line <see cref="ReadLines"/> takes, in bytes with its line break (64 MiB): a limit of ours, so
    /// that a file without line breaks (not text to pair into sentences, or not text at all) is refused in one sentence
    /// instead of filling memory.</summary>
    public const int MaxLineBytes = 64 << 20;

    /// <summary>A file's lines as <see cref="Lines"/> splits them, read as they are needed: the whole file is never in
    /// memory, so a corpus may be larger than memory or than a string can hold. A gzip file (known by its first two
    /// bytes, whatever its name) is read through its decompression, and checked against its trailer at the end (a file
    /// cut short would otherwise just end early; several gzip files joined into one are refused too, as they cannot be
    /// told from it). Strict UTF-8 line by line
    /// (the error names the line of the first bad byte), a leading BOM dropped; a missing or empty file, a damaged gzip
    /// file and a line over <see cref="MaxLineBytes"/> are a <see cref="DataException"/>.</summary>
    /// <param name="bufferBytes">The first read buffer's size (it grows to hold a longer line): the tests' way to cross
    /// reads everywhere.</param>
    public static IEnumerable<(int Number, string Line)> ReadLines(string path, int bufferBytes = 1 << 20)
    {
        if (!File.Exists(path)) throw Missing(path);
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferBytes, 4);
        return Iterate(path, Math.Min(bufferBytes, MaxLineBytes));

        static IEnumerable<(int, string)> Iterate(string path, int bufferBytes)
        {
            using var file = Open(path);
            var buffer = new byte[bufferBytes];
            int filled = 0, number = 0, scanned = 0;   // scanned: bytes of the unfinished line already searched for '\n'
            bool first = true, any = false, end = false;
            while (!end)
            {
                int read = Read(file, buffer.AsSpan(filled), path);
                end = read == 0;
                filled += read;
                int start = 0;
                if (first && (filled >= 3 || end))
                {
                    first = false;
                    if (filled >= 3 && buffer[0] == 0xEF && buffer[1] == 0xBB && buffer[2] == 0xBF) start = 3;
                }
                else if (first) continue;
                while (true)
                {
                    int from = start + scanned;
                    scanned = 0;
                    int nl = buffer.AsSpan(from, filled - from).IndexOf((byte)'\n');
                    if (nl < 0 && !(end && start < filled)) { scanned = filled - start; break; }
                    int stop = nl < 0 ? filled : from + nl;
                    number++;
                    any = true;
                    yield return (number, Line(buffer.AsSpan(start, stop - start), path, number));
                    start = nl < 0 ? filled : stop + 1;
                }
                // Keep the unfinished line at the front; grow the buffer when one line fills it.
                filled -= start;
                Buffer.BlockCopy(buffer, start, buffer, 0, filled);
                if (filled == buffer.Length)
                {
                    if (buffer.Length >= MaxLineBytes)
                        throw new DataException($"Line {number + 1} of '{path}' is longer than {MaxLineBytes >> 20} MiB; put line breaks in it (blank lines between documents), or give a text file.", path, number + 1);
                    Array.Resize(ref buffer, Math.Min(MaxLineBytes, buffer.Length * 2));
                }
            }
            if (!any) throw Empty($"Data file '{path}'", path);
        }

        static string Line(ReadOnlySpan<byte> bytes, string path, int number)
        {
            if (bytes.Length > 0 && bytes[^1] == (byte)'\r') bytes = bytes[..^1];
            try { return Strict.GetString(bytes); }
            catch (DecoderFallbackException e) { throw NotUtf8($"Data file '{path}'", path, number, subject: null, e); }
        }
    }

    /// <summary>The file as a stream of its bytes: through a <see cref="GZipStream"/> when it starts with gzip's magic
    /// bytes (1F 8B), a file or a pipe alike.</summary>
    static Stream Open(string path)
    {
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        try
        {
            var raw = new RawBytes(file);
            var magic = raw.Peek(2);
            return magic is [0x1F, 0x8B] ? new CheckedGzip(raw) : raw;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>A stream that can only be read, for the two below.</summary>
    abstract class ReadOnlyStream : Stream
    {
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>A file's or a pipe's bytes, the first few given again after <see cref="Peek"/>, and the count and the last
    /// four of those read kept (a gzip trailer's ISIZE, without seeking: a pipe cannot).</summary>
    sealed class RawBytes(Stream inner) : ReadOnlyStream
    {
        byte[] _peeked = [];
        int _given;
        readonly byte[] _tail = new byte[4];

        /// <summary>Bytes read so far.</summary>
        public long Count { get; private set; }

        /// <summary>The last four bytes read, little-endian.</summary>
        public uint LastFour => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(_tail);

        /// <summary>The first <paramref name="n"/> bytes (fewer at the end), which reading then gives again.</summary>
        public byte[] Peek(int n)
        {
            var bytes = new byte[n];
            _peeked = bytes[..inner.ReadAtLeast(bytes, n, throwOnEndOfStream: false)];
            return _peeked;
        }

        public override int Read(Span<byte> buffer)
        {
            int n;
            if (_given < _peeked.Length)
            {
                n = Math.Min(buffer.Length, _peeked.Length - _given);
                _peeked.AsSpan(_given, n).CopyTo(buffer);
                _given += n;
            }
            else n = inner.Read(buffer);
            var read = buffer[..n];
            Count += n;
            if (n >= 4) read[^4..].CopyTo(_tail);
            else
                foreach (byte b in read) { _tail.AsSpan(1).CopyTo(_tail); _tail[3] = b; }
            return n;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }

    /// <summary>A gzip file's text, its length checked at the end against the trailer's (ISIZE, the text's length modulo
    /// 2³²): .NET's <see cref="GZipStream"/> ends a cut file early without a word. Several gzip files joined into one
    /// (whose last trailer counts only the last's text) cannot be told from a cut one, and are refused too.</summary>
    sealed class CheckedGzip(RawBytes raw) : ReadOnlyStream
    {
        readonly GZipStream _gz = new(raw, CompressionMode.Decompress);
        long _out;
        bool _checked;

        public override int Read(Span<byte> buffer)
        {
            int n = _gz.Read(buffer);
            _out += n;
            if (n == 0 && buffer.Length > 0 && !_checked)
            {
                _checked = true;
                if (raw.Count < 18) throw new InvalidDataException("it is shorter than a gzip header and trailer");
                if (raw.LastFour != (uint)_out) throw new GzipLengthException(raw.LastFour, _out);
            }
            return n;
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) _gz.Dispose();
            base.Dispose(disposing);
        }
    }

    sealed class GzipLengthException(uint trailer, long read) : IOException
    {
        public uint Trailer { get; } = trailer;
        public long ReadBytes { get; } = read;
    }

    /// <summary>A read that turns a damaged gzip stream into one sentence.</summary>
    static int Read(Stream stream, Span<byte> buffer, string path)
    {
        try { return stream.Read(buffer); }
        catch (GzipLengthException e)
        {
            throw new DataException(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"Data file '{path}' does not end where its gzip trailer says ({e.Trailer:N0} bytes of text by the trailer, {e.ReadBytes:N0} read): a download cut short (fetch it again), or several gzip files joined into one (`zcat {Path.GetFileName(path)} | gzip > whole.gz` makes it one)."), path, 0, e);
        }
        catch (InvalidDataException e)
        {
            throw new DataException($"Data file '{path}' is not a whole gzip file ({e.Message.TrimEnd('.')}); download or compress it again.", path, 0, e);
        }
    }

    /// <summary>Whether a corpus file holds JSON lines — a <c>.jsonl</c> or <c>.json</c> file, either maybe <c>.gz</c>:
    /// a document a line, in the <c>text</c> field of a JSON object (what Hugging Face datasets' <c>to_json</c> writes, and
    /// corpora such as C4 are kept in).</summary>
    public static bool IsJsonLines(string path)
    {
        string name = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? path[..^3] : path;
        return name.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".json", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The texts of a JSON-lines file (<see cref="IsJsonLines"/>), read as <see cref="ReadLines"/> reads: each
    /// non-blank line one JSON object whose <c>text</c> is a string (other fields are passed over), with its line's
    /// number. A line that is not such an object, or a file that is one JSON array, is a <see cref="DataException"/>
    /// naming the line.</summary>
    public static IEnumerable<(int Number, string Text)> JsonTexts(string path)
    {
        foreach (var (number, line) in ReadLines(path))
            if (!string.IsNullOrWhiteSpace(line)) yield return (number, JsonText(line, path, number));
    }

    static string JsonText(string line, string path, int number)
    {
        const string Form = "each line of a JSON-lines corpus is one object with its document in \"text\" (as Hugging Face datasets' to_json writes)";
        string Array() => $"'{path}' is one JSON array, not JSON lines; {Form}: `jq -c '.[]' {Path.GetFileName(path)}` writes it so.";
        try
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            if (root.ValueKind == JsonValueKind.Array && number == 1) throw new DataException(Array(), path, number);
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("text", out var text))
            {
                if (text.ValueKind == JsonValueKind.String) return text.GetString()!;
                if (text.ValueKind == JsonValueKind.Null) return "";   // a record without text, as some dumps have: no document
            }
            throw new DataException($"Line {number} of '{path}' has no \"text\" string; {Form}.", path, number);
        }
        catch (JsonException e)
        {
            string start = line.Trim();
            throw new DataException(start.StartsWith('[') && number == 1 ? Array()
                : start == "{" ? $"Line {number} of '{path}' opens a JSON object that goes on over several lines; {Form}: `jq -c . {Path.GetFileName(path)}` writes it so."
                : $"Line {number} of '{path}' is not JSON ({e.Message.Split(" Path:")[0].TrimEnd('.')}); {Form}.", path, number, e);
        }
    }

    /// <summary>Reads a stream to its end as UTF-8; <paramref name="name"/> names it in error messages.</summary>
    public static string ReadStream(Stream stream, string name)
    {
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return Decode(buffer.ToArray(), name);
    }

    /// <summary>Decodes strict UTF-8, dropping a leading byte order mark. <paramref name="subject"/>: how the messages name
    /// a source that is not a file (standard input); null for a file.</summary>
    public static string Decode(byte[] bytes, string name, string? subject = null)
    {
        string what = subject ?? $"Data file '{name}'";
        if (bytes.Length == 0) throw Empty(what, name);
        string text;
        try
        {
            text = Strict.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            int line = 1;
            int at = Math.Clamp(e.Index, 0, bytes.Length);
            for (int i = 0; i < at; i++)
                if (bytes[i] == (byte)'\n') line++;
            throw NotUtf8(what, name, line, subject, e);
        }
        if (text.Length > 0 && text[0] == '\uFEFF') text = text[1..];
        if (text.Length == 0) throw Empty(what, name);
        return text;
    }

    /// <summary>Splits on <c>'\n'</c> only and trims one trailing <c>'\r'</c> per line; yields 1-based line numbers.
    /// A final <c>'\n'</c> does not start an extra empty line.</summary>
    public static IEnumerable<(int Number, string Line)> Lines(string text)
    {
        int start = 0, number = 0;
        while (start < text.Length)
        {
            int end = text.IndexOf('\n', start);
            if (end < 0) end = text.Length;
            int stop = end > start && text[end - 1] == '\r' ? end - 1 : end;
            yield return (++number, text[start..stop]);
            start = end + 1;
        }
    }
}
