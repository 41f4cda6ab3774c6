using System.Text;

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
        if (!File.Exists(path))
            throw new DataException($"Data file '{path}' does not exist; check the path (relative paths start at '{Environment.CurrentDirectory}').", path);
        return Decode(File.ReadAllBytes(path), path);
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
        if (bytes.Length == 0)
            throw new DataException($"{what} is empty; point to the file that holds the data.", name);
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
            throw new DataException($"{what} is not valid UTF-8 (first bad byte on line {line}); " + (subject is null
                ? "re-save it as UTF-8, for example with `iconv -f cp1252 -t utf-8`."
                : "convert it to UTF-8, for example with `iconv -f cp1252 -t utf-8`, and pass it again."), name, line, e);
        }
        if (text.Length > 0 && text[0] == '\uFEFF') text = text[1..];
        if (text.Length == 0)
            throw new DataException($"{what} is empty; point to the file that holds the data.", name);
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
