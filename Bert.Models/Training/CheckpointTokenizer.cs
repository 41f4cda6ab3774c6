using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Bert.Data;
using Bert.Runtime.Checkpoints;
using Bert.Text;

namespace Bert.Training;

/// <summary>Binds a checkpoint to the tokenizer it was trained with. Every checkpoint <see cref="TrainLoop"/>
/// writes with a <see cref="TrainLoop.Tokenizer"/> holds the tokenizer's files (<c>vocab.txt</c>,
/// <c>tokenizer_config.json</c>, and Hugging Face's <c>tokenizer.json</c>, which must agree with them) and, in the
/// metadata of <c>model.safetensors</c>, a stamp of them: a SHA-256 of
/// the entries and the normalization, the entry count, and <c>do_lower_case</c>/<c>strip_accents</c>.
/// <see cref="Load"/> and <see cref="Require"/> refuse a tokenizer that does not match the stamp, so a cased
/// Portuguese model can never be run with an uncased vocabulary or the other way round. Checkpoints without a
/// stamp (written before it existed, or by other tools) are taken with the files beside them.</summary>
public static class CheckpointTokenizer
{
    public const string Sha256Key = "tokenizer_sha256", EntriesKey = "tokenizer_entries", LowerCaseKey = "do_lower_case", StripAccentsKey = "strip_accents";

    /// <summary>SHA-256 (lower-case hex) of the entries in id order and the normalization settings.</summary>
    public static string Fingerprint(WordPiece tokenizer)
    {
        var s = tokenizer.Settings;
        string text = string.Join('\n', tokenizer.Vocab) + "\n" +
            string.Create(CultureInfo.InvariantCulture, $"do_lower_case={s.LowerCase};strip_accents={s.StripAccents};max_word_chars={s.MaxWordChars}");
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
    }

    /// <summary>The metadata entries that stamp a checkpoint with <paramref name="tokenizer"/>.</summary>
    public static Dictionary<string, string> Stamp(WordPiece tokenizer) => new()
    {
        [Sha256Key] = Fingerprint(tokenizer),
        [EntriesKey] = tokenizer.VocabSize.ToString(CultureInfo.InvariantCulture),
        [LowerCaseKey] = tokenizer.Settings.LowerCase ? "true" : "false",
        [StripAccentsKey] = tokenizer.Settings.StripAccents ? "true" : "false",
    };

    /// <summary>The stamp recorded in <c>dir/model.safetensors</c>, or null when there is no checkpoint or it has
    /// no stamp.</summary>
    public static IReadOnlyDictionary<string, string>? ReadStamp(string dir)
    {
        string path = Path.Combine(dir, Checkpoint.ModelFile);
        if (!File.Exists(path)) return null;
        using var reader = SafeTensorsReader.Open(path);
        return reader.Metadata.ContainsKey(Sha256Key) ? new Dictionary<string, string>(reader.Metadata) : null;
    }

    /// <summary>The tokenizer saved with the checkpoint in <paramref name="dir"/> (<c>vocab.txt</c> and
    /// <c>tokenizer_config.json</c>, a <c>tokenizer.json</c> beside them checked to agree; a Hugging Face folder's
    /// <c>tokenizer.json</c> first, as transformers reads it), checked against the checkpoint's stamp.</summary>
    public static WordPiece Load(string dir)
    {
        string json = Path.Combine(dir, WordPiece.TokenizerJsonFileName);
        if (Directory.Exists(dir) && !File.Exists(Path.Combine(dir, WordPiece.VocabFileName)) && !File.Exists(json))
            throw new CheckpointException($"{dir} has no {WordPiece.VocabFileName} (nor {WordPiece.TokenizerJsonFileName}), so the tokenizer its model was trained with is missing; copy that {WordPiece.VocabFileName} (and {TokenizerSettings.FileName}) back into the folder.", dir);
        bool hasVocab = File.Exists(Path.Combine(dir, WordPiece.VocabFileName));
        var tokenizer = !hasVocab && File.Exists(json) ? FromTokenizerJson(dir, json)
            : File.Exists(json) && IsHfFolder(dir) ? HfFolderTokenizer(dir, json)
            : IsHfFolderWithoutSettings(dir) ? WordPiece.FromVocabFile(Path.Combine(dir, WordPiece.VocabFileName), TokenizerSettings.Uncased)
            : null;
        bool ours = tokenizer is null;
        tokenizer ??= WordPiece.FromVocabFile(Path.Combine(dir, WordPiece.VocabFileName), TokenizerSettings.Load(dir));
        if (ReadStamp(dir) is { } stamp && stamp[Sha256Key] != Fingerprint(tokenizer))
            throw new CheckpointException(
                $"The model in {dir} was trained with {Describe(stamp)}, but the {WordPiece.VocabFileName} and {TokenizerSettings.FileName} beside it give {Describe(Stamp(tokenizer))}; put back the tokenizer files saved with the checkpoint.", dir);
        if (ours) tokenizer.RequireMatchingTokenizerJson(dir);   // after the stamp, whose sentence says more
        return tokenizer;
    }

    /// <summary>A Hugging Face folder with a tokenizer.json but no vocab.txt (transformers' fast tokenizer alone), said
    /// on standard error, as the other guesses about a folder's tokenizer are.</summary>
    static WordPiece FromTokenizerJson(string dir, string json)
    {
        var tokenizer = WordPiece.FromTokenizerJson(json);
        Console.Error.WriteLine($"{dir} has no {WordPiece.VocabFileName}; tokenizing with the WordPiece vocabulary of its {WordPiece.TokenizerJsonFileName} ({tokenizer.VocabSize} tokens, lower case: {tokenizer.Settings.LowerCase}, strip accents: {tokenizer.Settings.StripAccents}).");
        return tokenizer;
    }

    /// <summary>A Hugging Face folder: a config.json without our bert_model field (ours, and what export --hf writes,
    /// have it).</summary>
    static bool IsHfFolder(string dir)
    {
        string config = Path.Combine(dir, "config.json");
        return File.Exists(config) && HfConfig.Read(config).BertModel is null;
    }

    /// <summary>A Hugging Face folder with both a tokenizer.json and a vocab.txt tokenizes as its tokenizer.json says, as
    /// transformers' AutoTokenizer does (the fast tokenizer first); where that file is not a BERT WordPiece tokenizer this
    /// one follows, its vocab.txt is taken instead (as transformers' BertTokenizer would), saying so on standard error.</summary>
    static WordPiece HfFolderTokenizer(string dir, string json)
    {
        try { return WordPiece.FromTokenizerJson(json); }
        catch (DataException e)
        {
            bool settings = File.Exists(Path.Combine(dir, TokenizerSettings.FileName));
            Console.Error.WriteLine($"{e.Message} Tokenizing with its {WordPiece.VocabFileName} instead{(settings ? "" : " (lower-cased, accents stripped: transformers' BertTokenizer's defaults)")}.");
            return WordPiece.FromVocabFile(Path.Combine(dir, WordPiece.VocabFileName), settings ? TokenizerSettings.Load(dir) : TokenizerSettings.Uncased);
        }
    }

    /// <summary>A Hugging Face folder (config.json without our bert_model field) with a vocab.txt but no
    /// tokenizer_config.json, as the Hub's older BERT repositories are: transformers' BertTokenizer then lower-cases and
    /// strips accents (its defaults), and so do we, saying so.</summary>
    static bool IsHfFolderWithoutSettings(string dir)
    {
        if (File.Exists(Path.Combine(dir, TokenizerSettings.FileName)) || !File.Exists(Path.Combine(dir, WordPiece.VocabFileName)) || !IsHfFolder(dir)) return false;
        Console.Error.WriteLine($"{dir} has no {TokenizerSettings.FileName}; tokenizing as transformers' BertTokenizer does by default (lower-cased, accents stripped).");
        return true;
    }

    /// <summary>Refuses <paramref name="tokenizer"/> when the checkpoint in <paramref name="dir"/> is stamped with
    /// another one (resuming a run, or fine-tuning a pre-trained model, with a different vocabulary or
    /// normalization); <paramref name="what"/> names where the tokenizer came from in the message.</summary>
    public static void Require(WordPiece tokenizer, string dir, string what = "the tokenizer given")
    {
        if (ReadStamp(dir) is { } stamp && stamp[Sha256Key] != Fingerprint(tokenizer))
            throw new CheckpointException(
                $"The model in {dir} was trained with {Describe(stamp)}, but {what} is {Describe(Stamp(tokenizer))}; use the vocabulary saved in {dir} (or start afresh in another folder).", dir);
    }

    /// <summary>"a cased vocabulary of 8000 entries with accents kept (sha256 1a2b3c4d…)".</summary>
    public static string Describe(IReadOnlyDictionary<string, string> stamp)
    {
        string cased = stamp.GetValueOrDefault(LowerCaseKey) == "true" ? "lower-cased" : "cased";
        string accents = stamp.GetValueOrDefault(StripAccentsKey) == "true" ? "stripped" : "kept";
        string sha = stamp.GetValueOrDefault(Sha256Key) ?? "";
        return $"a {cased} vocabulary of {stamp.GetValueOrDefault(EntriesKey, "?")} entries with accents {accents} (sha256 {sha[..Math.Min(8, sha.Length)]}…)";
    }
}
