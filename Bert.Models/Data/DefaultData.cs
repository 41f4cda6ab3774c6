using System.Reflection;

namespace Bert.Data;

/// <summary>The data files embedded in this assembly (origins and licences: <c>Resources/ATTRIBUTION.md</c>).</summary>
public enum DataFile
{
    /// <summary>Google's bert-base-uncased WordPiece vocabulary, 30522 lines.</summary>
    BertBaseUncasedVocab,
    /// <summary>Tiny Shakespeare (karpathy/char-rnn), 1115394 bytes, LF.</summary>
    TinyShakespeare,
    /// <summary>WikiText-2 raw test split, 2891 lines, CRLF, empty lines dropped.</summary>
    WikiText2RawTest,
    /// <summary>UCI Sentiment Labelled Sentences: amazon_cells_labelled.txt, 1000 lines.</summary>
    UciAmazon,
    /// <summary>UCI Sentiment Labelled Sentences: imdb_labelled.txt, 1000 lines (NEL inside two of them).</summary>
    UciImdb,
    /// <summary>UCI Sentiment Labelled Sentences: yelp_labelled.txt, 1000 lines.</summary>
    UciYelp,
    /// <summary>SST-2 sentence-level train split (stsa.binary.train), 6920 lines.</summary>
    Sst2Train,
    /// <summary>SST-2 sentence-level dev split (stsa.binary.dev), 872 lines.</summary>
    Sst2Dev,
}

/// <summary>Opens the embedded default data. Nothing here reads the file system.</summary>
public static class DefaultData
{
    /// <summary>Every embedded file, in <see cref="DataFile"/> order.</summary>
    public static IReadOnlyList<DataFile> All { get; } = Enum.GetValues<DataFile>();

    /// <summary>The file name inside <c>Bert.Models/Resources/</c>.</summary>
    public static string FileName(DataFile file) => file switch
    {
        DataFile.BertBaseUncasedVocab => "vocab.txt",
        DataFile.TinyShakespeare => "tinyshakespeare.txt",
        DataFile.WikiText2RawTest => "wikitext-2-raw.test.raw",
        DataFile.UciAmazon => "amazon_cells_labelled.txt",
        DataFile.UciImdb => "imdb_labelled.txt",
        DataFile.UciYelp => "yelp_labelled.txt",
        DataFile.Sst2Train => "stsa.binary.train",
        DataFile.Sst2Dev => "stsa.binary.dev",
        _ => throw new ArgumentOutOfRangeException(nameof(file), file, "Unknown embedded data file."),
    };

    /// <summary>The manifest resource name (the csproj's LogicalName): <c>Bert.Data.</c> + file name.</summary>
    public static string ResourceName(DataFile file) => "Bert.Data." + FileName(file);

    /// <summary>Opens the embedded bytes; the caller disposes the stream.</summary>
    public static Stream Open(DataFile file) =>
        typeof(DefaultData).Assembly.GetManifestResourceStream(ResourceName(file))
        ?? throw new InvalidOperationException($"Embedded resource '{ResourceName(file)}' is missing from {typeof(DefaultData).Assembly.GetName().Name}; rebuild Bert.Models so its Resources folder is embedded.");

    /// <summary>The embedded bytes, exactly as in the source file.</summary>
    public static byte[] ReadBytes(DataFile file)
    {
        using var stream = Open(file);
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return buffer.ToArray();
    }

    /// <summary>The embedded file decoded as strict UTF-8 (line endings untouched).</summary>
    public static string ReadText(DataFile file) => TextSource.Decode(ReadBytes(file), ResourceName(file));
}
