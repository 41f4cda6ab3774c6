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
    /// <summary>Machado de Assis, <i>Casa Velha</i> (luxedo/dataset-machado-de-assis), hard-wrapped PDF lines, LF.</summary>
    MachadoCasaVelha,
    /// <summary>Machado de Assis, <i>Dom Casmurro</i> (luxedo/dataset-machado-de-assis), hard-wrapped PDF lines, LF.</summary>
    MachadoDomCasmurro,
    /// <summary>Machado de Assis, <i>Esaú e Jacó</i> (luxedo/dataset-machado-de-assis), hard-wrapped PDF lines, LF.</summary>
    MachadoEsau,
    /// <summary>Machado de Assis, <i>Helena</i> (luxedo/dataset-machado-de-assis), hard-wrapped PDF lines, LF.</summary>
    MachadoHelena,
    /// <summary>Machado de Assis, <i>Iaiá Garcia</i> (luxedo/dataset-machado-de-assis), hard-wrapped PDF lines, LF.</summary>
    MachadoIaia,
    /// <summary>Machado de Assis, <i>A Mão e a Luva</i> (luxedo/dataset-machado-de-assis), hard-wrapped PDF lines, LF.</summary>
    MachadoMaoLuva,
    /// <summary>Machado de Assis, <i>Memorial de Aires</i> (luxedo/dataset-machado-de-assis), hard-wrapped PDF lines, LF.</summary>
    MachadoMemorialDeAires,
    /// <summary>Machado de Assis, <i>Memórias Póstumas de Brás Cubas</i> (luxedo/dataset-machado-de-assis), hard-wrapped PDF lines, LF.</summary>
    MachadoMemoriasBras,
    /// <summary>Machado de Assis, <i>Quincas Borba</i> (luxedo/dataset-machado-de-assis), hard-wrapped PDF lines, LF.</summary>
    MachadoQuincas,
    /// <summary>Machado de Assis, <i>Ressurreição</i> (luxedo/dataset-machado-de-assis), hard-wrapped PDF lines, LF.</summary>
    MachadoRessurreicao,
    /// <summary>Amazon Brasil book reviews, negative (books_pt_neg): 1000 reviews, one per line, CRLF, no final line break.</summary>
    BooksPtNeg,
    /// <summary>Amazon Brasil book reviews, positive (books_pt_pos): 1000 reviews, one per line, CRLF, no final line break.</summary>
    BooksPtPos,
    /// <summary>UMSAB/TweetSentBR Portuguese tweets, train texts: 1839 lines, no final line break.</summary>
    TweetsPtTrainText,
    /// <summary>Labels of <see cref="TweetsPtTrainText"/>: 0 negative, 1 neutral, 2 positive, round-robin order.</summary>
    TweetsPtTrainLabels,
    /// <summary>UMSAB/TweetSentBR Portuguese tweets, validation texts: 324 lines, no final line break.</summary>
    TweetsPtValText,
    /// <summary>Labels of <see cref="TweetsPtValText"/>: 0 negative, 1 neutral, 2 positive, round-robin order.</summary>
    TweetsPtValLabels,
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
        DataFile.MachadoCasaVelha => "pt-machado-casaVelha.txt",
        DataFile.MachadoDomCasmurro => "pt-machado-domCasmurro.txt",
        DataFile.MachadoEsau => "pt-machado-esau.txt",
        DataFile.MachadoHelena => "pt-machado-helena.txt",
        DataFile.MachadoIaia => "pt-machado-iaia.txt",
        DataFile.MachadoMaoLuva => "pt-machado-maoLuva.txt",
        DataFile.MachadoMemorialDeAires => "pt-machado-memorial-de-aires.txt",
        DataFile.MachadoMemoriasBras => "pt-machado-memoriasBras.txt",
        DataFile.MachadoQuincas => "pt-machado-quincas.txt",
        DataFile.MachadoRessurreicao => "pt-machado-ressurreicao.txt",
        DataFile.BooksPtNeg => "pt-books_pt_neg",
        DataFile.BooksPtPos => "pt-books_pt_pos",
        DataFile.TweetsPtTrainText => "pt-tweets-train_text.txt",
        DataFile.TweetsPtTrainLabels => "pt-tweets-train_labels.txt",
        DataFile.TweetsPtValText => "pt-tweets-val_text.txt",
        DataFile.TweetsPtValLabels => "pt-tweets-val_labels.txt",
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
