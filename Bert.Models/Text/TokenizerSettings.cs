using System.Text.Json;
using System.Text.Json.Nodes;
using Bert.Data;

namespace Bert.Text;

/// <summary>The ids of the five special tokens in a vocabulary file.</summary>
public readonly record struct SpecialTokenIds(int Pad, int Unk, int Cls, int Sep, int Mask)
{
    /// <summary>"[PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103".</summary>
    public override string ToString() => $"[PAD] {Pad}, [UNK] {Unk}, [CLS] {Cls}, [SEP] {Sep}, [MASK] {Mask}";

    /// <summary>Google's layout (bert-base-uncased and -cased): [PAD] 0, [unused0..98] 1–99, [UNK] 100,
    /// [CLS] 101, [SEP] 102, [MASK] 103.</summary>
    public static SpecialTokenIds BertBase => new(0, 100, 101, 102, 103);

    /// <summary>The layout <see cref="VocabBuilder"/> writes: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, no
    /// [unused] slots, so a small vocabulary spends nothing on placeholders.</summary>
    public static SpecialTokenIds Compact => new(0, 1, 2, 3, 4);
}

/// <summary>How text is normalized before WordPiece. It is saved as <see cref="FileName"/> beside
/// <c>vocab.txt</c> so a vocabulary and its normalization travel together. JSON fields: Hugging Face's
/// <c>do_lower_case</c> and <c>strip_accents</c> (HF's null means "same as do_lower_case"), plus our own
/// <c>max_word_chars</c> and <c>special_token_ids</c>; HF's <c>*_token</c> names are written for readers that
/// want them and are otherwise fixed ([PAD] [UNK] [CLS] [SEP] [MASK]).</summary>
public sealed record TokenizerSettings
{
    public const string FileName = "tokenizer_config.json";

    /// <summary>Lower-case the text (uncased vocabularies).</summary>
    public bool LowerCase { get; init; } = true;

    /// <summary>Decompose (NFD) and drop non-spacing marks, so "Café" becomes "cafe". Keep false for cased or
    /// accent-bearing vocabularies (Portuguese "é" then stays its own character).</summary>
    public bool StripAccents { get; init; } = true;

    /// <summary>A word longer than this many characters (code points, as transformers counts them) becomes [UNK] whole
    /// (BERT's 100).</summary>
    public int MaxWordChars { get; init; } = 100;

    /// <summary>The special ids the vocabulary file is expected to have, when recorded. The tokenizer always
    /// takes the ids from the file; a recorded value that disagrees with the file is an error.</summary>
    public SpecialTokenIds? SpecialIds { get; init; }

    /// <summary>The longest input the model saved beside this tokenizer takes (its MaxLen), written as transformers'
    /// model_max_length so that its tokenizer truncates there; not read back (the model's config says it) and not part of
    /// the checkpoint's tokenizer stamp.</summary>
    public int? ModelMaxLength { get; init; }

    /// <summary>English uncased BERT: lower-case, strip accents.</summary>
    public static TokenizerSettings Uncased { get; } = new();

    /// <summary>Cased or accented vocabularies: keep case and accents.</summary>
    public static TokenizerSettings Cased { get; } = new() { LowerCase = false, StripAccents = false };

    public string ToJson()
    {
        var json = new JsonObject
        {
            ["tokenizer_class"] = "BertTokenizer",
            ["do_lower_case"] = LowerCase,
            ["strip_accents"] = StripAccents,
            ["max_word_chars"] = MaxWordChars,
            ["pad_token"] = WordPiece.PadToken,
            ["unk_token"] = WordPiece.UnkToken,
            ["cls_token"] = WordPiece.ClsToken,
            ["sep_token"] = WordPiece.SepToken,
            ["mask_token"] = WordPiece.MaskToken,
        };
        if (ModelMaxLength is int max) json["model_max_length"] = max;
        if (SpecialIds is SpecialTokenIds ids)
            json["special_token_ids"] = new JsonObject
            {
                ["pad"] = ids.Pad, ["unk"] = ids.Unk, ["cls"] = ids.Cls, ["sep"] = ids.Sep, ["mask"] = ids.Mask,
            };
        return json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    /// <summary>Parses <see cref="ToJson"/>'s format (or a Hugging Face tokenizer_config.json);
    /// <paramref name="file"/> names the source in errors.</summary>
    public static TokenizerSettings FromJson(string json, string file)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject
                ?? throw new DataException($"{file} is not a JSON object; write it as {{\"do_lower_case\": true, \"strip_accents\": true}}.", file);
        }
        catch (JsonException e)
        {
            throw new DataException($"{file} is not valid JSON ({e.Message}); fix it, or put back the one saved with the vocabulary (bert vocab and every training command write one).", file, 0, e);
        }
        bool lower = Bool(root, "do_lower_case", file) ?? true;
        bool strip = Bool(root, "strip_accents", file) ?? lower;
        int maxChars = Int(root, "max_word_chars", file) ?? 100;
        if (maxChars < 1)
            throw new DataException($"{file} has max_word_chars {maxChars}; use a positive number such as BERT's 100.", file);
        SpecialTokenIds? ids = null;
        if (root["special_token_ids"] is JsonObject s)
            ids = new SpecialTokenIds(Need(s, "pad", file), Need(s, "unk", file), Need(s, "cls", file), Need(s, "sep", file), Need(s, "mask", file));
        return new TokenizerSettings { LowerCase = lower, StripAccents = strip, MaxWordChars = maxChars, SpecialIds = ids };
    }

    /// <summary>Writes <c>directory/tokenizer_config.json</c>.</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        Bert.Runtime.Checkpoints.AtomicFile.Write(Path.Combine(directory, FileName), s => s.Write(System.Text.Encoding.UTF8.GetBytes(ToJson())));
    }

    /// <summary>Reads <c>directory/tokenizer_config.json</c>.</summary>
    public static TokenizerSettings Load(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!Directory.Exists(directory))
            throw new DataException($"The folder {directory} does not exist; check the path of the checkpoint or vocabulary.", directory);
        if (!File.Exists(path))
            throw new DataException($"'{path}' does not exist; put the {FileName} saved with this vocabulary there (bert vocab and every training command write one), or write {{\"do_lower_case\": true, \"strip_accents\": true}} there for an uncased vocabulary.", path);
        return FromJson(TextSource.ReadFile(path), path);
    }

    static bool? Bool(JsonObject o, string key, string file)
    {
        var node = o[key];
        if (node is null) return null;
        if (node is JsonValue v && v.TryGetValue(out bool b)) return b;
        throw new DataException($"{file} has {key} = {node.ToJsonString()}; write true or false.", file);
    }

    static int? Int(JsonObject o, string key, string file)
    {
        var node = o[key];
        if (node is null) return null;
        if (node is JsonValue v && v.TryGetValue(out int i)) return i;
        throw new DataException($"{file} has {key} = {node.ToJsonString()}; write a whole number.", file);
    }

    static int Need(JsonObject o, string key, string file) =>
        Int(o, key, file) ?? throw new DataException($"{file} has special_token_ids without \"{key}\"; list all of pad, unk, cls, sep and mask.", file);
}
