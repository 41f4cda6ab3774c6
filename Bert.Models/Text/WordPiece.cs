using System.Text;
using Bert.Data;
using Bert.Runtime.Checkpoints;
using Microsoft.ML.Tokenizers;

namespace Bert.Text;

/// <summary>Ids of a BERT input: <c>[CLS] a [SEP]</c> or <c>[CLS] a [SEP] b [SEP]</c>, segment (token type) ids
/// 0 for <c>[CLS] a [SEP]</c> and 1 for <c>b [SEP]</c>, and how many word pieces truncation dropped.</summary>
public readonly record struct EncodedPair(int[] Ids, int[] TypeIds, int Truncated);

/// <summary>BERT's WordPiece tokenizer, giving the ids of Hugging Face's fast tokenizer (transformers' BertTokenizerFast,
/// AutoTokenizer's default): Microsoft.ML.Tokenizers' <see cref="BertTokenizer"/> for the greedy longest-match-first word
/// pieces, and ours for the rest, where the package differs from transformers:
/// <list type="number">
/// <item>Every character is classified by the fast tokenizer's own tables (<see cref="HfUnicode"/>, read from the library
/// for every code point), not .NET's Unicode data, which is newer: 618 code points (marks and punctuation added
/// since its tables were made) would otherwise split, strip or drop differently.</item>
/// <item>Pre-tokenization splits on whitespace and on BERT's punctuation — ASCII <c>!"#$%&amp;'()*+,-./:;&lt;=&gt;?@[\]^_`{|}~</c>
/// and the library's Unicode P* — and keeps every other character in its word. The package's default
/// (<c>\w+|\p{P}</c>) silently drops symbols: "$5" became "5" and "1+1=2" became "1 1 2"; here they are "$ 5"
/// and "1 + 1 = 2", and "x😀y" is one word ([UNK] in bert-base-uncased) as in Hugging Face.</item>
/// <item>Before the package sees the text, control, format and private-use characters (not tab, CR, LF), U+0000 and
/// U+FFFD are removed and all whitespace becomes a space, as BERT's <c>_clean_text</c> does; the package deleted tabs
/// (gluing "a\tb" into "ab") and kept U+200B inside words.</item>
/// <item>The five special tokens written literally in the text ("[MASK]") are split out first and kept whole,
/// as Hugging Face's added-token split does, before lower-casing could turn them into "[mask]".</item>
/// <item>Accents are stripped by <see cref="Accents"/> (NFD without the Mn marks, from tables that ship with the code),
/// not by the package, whose <c>string.Normalize</c> needs ICU: under InvariantGlobalization, as `bert` runs,
/// "café" stayed "café" and became [UNK] in bert-base-uncased.</item>
/// <item>A word's length against <see cref="TokenizerSettings.MaxWordChars"/> is counted in characters, not UTF-16
/// units: 60 emoji are a word of 60.</item>
/// </list>
/// Checked against the library itself: bench/parity/tokenizer.sh (every embedded text and every code point, four
/// normalizations, sentence pairs, and the tokenizer.json <see cref="Save"/> writes), HfTokenizerTests in the suite.
/// Special ids come from the vocabulary file itself (<see cref="SpecialTokenIds"/>), never from constants.</summary>
public sealed class WordPiece
{
    public const string VocabFileName = "vocab.txt";
    public const string PadToken = "[PAD]", UnkToken = "[UNK]", ClsToken = "[CLS]", SepToken = "[SEP]", MaskToken = "[MASK]";

    /// <summary>The five special tokens, in the <see cref="SpecialTokenIds"/> order.</summary>
    public static IReadOnlyList<string> SpecialTokens { get; } = [PadToken, UnkToken, ClsToken, SepToken, MaskToken];

    readonly string[] _vocab;
    readonly Dictionary<string, int> _ids;
    readonly BertTokenizer _bert;
    readonly BertText _text;

    /// <summary>Builds a tokenizer from the vocabulary's tokens in id order. <paramref name="source"/> names the
    /// vocabulary in error messages.</summary>
    public WordPiece(IReadOnlyList<string> vocab, TokenizerSettings settings, string source = "vocabulary")
    {
        Settings = settings;
        _vocab = vocab.ToArray();
        _ids = new Dictionary<string, int>(_vocab.Length, StringComparer.Ordinal);
        for (int i = 0; i < _vocab.Length; i++)
        {
            string token = _vocab[i];
            if (token.Length == 0 || token.AsSpan().IndexOfAny('\n', '\r') >= 0)
                throw new DataException($"{source} entry {i} (line {i + 1}) is empty or holds a line break; write exactly one token per line.", source, i + 1);
            if (!_ids.TryAdd(token, i))
                throw new DataException($"{source} lists '{token}' twice (lines {_ids[token] + 1} and {i + 1}); remove the duplicate so every token has one id.", source, i + 1);
        }
        foreach (string special in SpecialTokens)
            if (!_ids.ContainsKey(special))
                throw new DataException($"{source} has no {special} token; a BERT vocabulary needs all of {string.Join(", ", SpecialTokens)} (VocabBuilder puts them at 0–4).", source);
        Ids = new SpecialTokenIds(_ids[PadToken], _ids[UnkToken], _ids[ClsToken], _ids[SepToken], _ids[MaskToken]);
        if (settings.SpecialIds is SpecialTokenIds recorded && recorded != Ids)
            throw new DataException($"{source} has the special tokens at {Ids} but its {TokenizerSettings.FileName} records {recorded}; the two files are from different vocabularies: use the vocab.txt and tokenizer_config.json that were saved together.", source);
        if (settings.MaxWordChars < 1)
            throw new ArgumentOutOfRangeException(nameof(settings), settings.MaxWordChars, "MaxWordChars must be positive.");

        var bytes = Encoding.UTF8.GetBytes(string.Join('\n', _vocab) + "\n");
        _bert = BertTokenizer.Create(new MemoryStream(bytes), Options(settings));
        _text = new BertText(settings);
    }

    /// <summary>Reads a vocabulary file (one token per line, the line index is the id).</summary>
    public static WordPiece FromVocabFile(string path, TokenizerSettings settings) =>
        new(ParseVocab(TextSource.ReadFile(path)), settings, path);

    /// <summary>Reads vocabulary text (one token per line); <paramref name="source"/> names it in errors.</summary>
    public static WordPiece FromVocabText(string text, TokenizerSettings settings, string source) =>
        new(ParseVocab(text), settings, source);

    public const string TokenizerJsonFileName = "tokenizer.json";

    /// <summary>Reads a Hugging Face fast tokenizer's <c>tokenizer.json</c> (what transformers saves beside, or instead
    /// of, vocab.txt): its WordPiece model's vocabulary and added tokens, which must number 0 to n-1, and its
    /// BertNormalizer's lowercase and strip_accents (null: as lowercase) and max_input_chars_per_word. Another model
    /// (BPE, Unigram), another normalizer or another sub-word prefix than "##" is refused in one sentence, since the
    /// text would be split otherwise than the model learnt.</summary>
    public static WordPiece FromTokenizerJson(string path)
    {
        System.Text.Json.Nodes.JsonObject root;
        try
        {
            root = System.Text.Json.Nodes.JsonNode.Parse(TextSource.ReadFile(path)) as System.Text.Json.Nodes.JsonObject
                ?? throw new DataException($"{path} is not a JSON object; put back the tokenizer.json transformers saved, or a vocab.txt.", path);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new DataException($"{path} is not valid JSON (line {e.LineNumber + 1}); put back the tokenizer.json transformers saved, or a vocab.txt.", path, 0, e);
        }
        string? Str(System.Text.Json.Nodes.JsonNode? n, string key) => n?[key] is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<string>(out var x) ? x : null;
        var model = root["model"] as System.Text.Json.Nodes.JsonObject;
        string type = Str(model, "type") ?? "none";
        if (type != "WordPiece")
            throw new DataException($"{path} describes a {type} tokenizer, not BERT's WordPiece; use the tokenizer the checkpoint was trained with (a vocab.txt of word pieces).", path);
        if ((Str(model, "continuing_subword_prefix") ?? "##") != "##")
            throw new DataException($"{path} marks word pieces with '{Str(model, "continuing_subword_prefix")}', not BERT's '##'; use the vocab.txt of this checkpoint.", path);
        var normalizer = root["normalizer"] as System.Text.Json.Nodes.JsonObject;
        if (normalizer is null || Str(normalizer, "type") != "BertNormalizer")
            throw new DataException($"{path} normalizes text with {(normalizer is null ? "nothing" : Str(normalizer, "type"))}, not BERT's BertNormalizer, which this tokenizer follows; use a vocab.txt with a tokenizer_config.json instead.", path);
        bool? Flag(string key) => normalizer?[key] is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<bool>(out var b) ? b : null;
        foreach (string always in new[] { "clean_text", "handle_chinese_chars" })
            if (Flag(always) == false)
                throw new DataException($"{path} turns BertNormalizer's {always} off, which this tokenizer always does; use a tokenizer that has it on (BERT's default).", path);
        if (root["pre_tokenizer"] is System.Text.Json.Nodes.JsonObject pre && Str(pre, "type") != "BertPreTokenizer")
            throw new DataException($"{path} splits words with {Str(pre, "type")}, not BERT's BertPreTokenizer, which this tokenizer follows; use a vocab.txt with a tokenizer_config.json instead.", path);
        bool lower = Flag("lowercase") ?? true;
        var settings = new TokenizerSettings
        {
            LowerCase = lower,
            StripAccents = Flag("strip_accents") ?? lower,
            MaxWordChars = model!["max_input_chars_per_word"] is System.Text.Json.Nodes.JsonValue m && m.TryGetValue<int>(out var max) && max > 0 ? max : 100,
        };
        var byId = new SortedDictionary<int, string>();
        void Add(string token, System.Text.Json.Nodes.JsonNode? id)
        {
            if (id is not System.Text.Json.Nodes.JsonValue v || !v.TryGetValue<int>(out int i) || i < 0)
                throw new DataException($"{path} gives '{token}' an id that is not a non-negative integer; put back the tokenizer.json transformers saved.", path);
            if (byId.TryGetValue(i, out var other) && other != token)
                throw new DataException($"{path} gives the id {i} to both '{other}' and '{token}'; put back the tokenizer.json transformers saved.", path);
            byId[i] = token;
        }
        if (model["vocab"] is not System.Text.Json.Nodes.JsonObject vocab)
            throw new DataException($"{path} has no WordPiece vocabulary (model.vocab); put back the tokenizer.json transformers saved, or a vocab.txt.", path);
        foreach (var (token, id) in vocab) Add(token, id);
        if (root["added_tokens"] is System.Text.Json.Nodes.JsonArray added)
            foreach (var t in added)
                if (Str(t, "content") is { } content)
                {
                    // transformers splits every added token out of the text; this tokenizer splits out BERT's five only.
                    if (!SpecialTokens.Contains(content))
                        throw new DataException($"{path} adds the token '{content}', which transformers splits out of the text and this tokenizer does not (it splits out {string.Join(", ", SpecialTokens)} only); use a tokenizer without added tokens.", path);
                    Add(content, t!["id"]);
                }
        int expected = 0;
        foreach (int id in byId.Keys)
            if (id != expected++)
                throw new DataException($"{path} numbers its tokens with a gap (no token has the id {expected - 1}); put back the tokenizer.json transformers saved.", path);
        return new WordPiece(byId.Values.ToList(), settings, path);
    }

    /// <summary>Google's bert-base-uncased vocabulary, embedded, with <see cref="TokenizerSettings.Uncased"/>.</summary>
    public static WordPiece BertBaseUncased() =>
        FromVocabText(DefaultData.ReadText(DataFile.BertBaseUncasedVocab), TokenizerSettings.Uncased, DefaultData.ResourceName(DataFile.BertBaseUncasedVocab));

    /// <summary>Loads <c>vocab.txt</c> and <c>tokenizer_config.json</c> from a folder written by <see cref="Save"/>, and
    /// refuses it when a <c>tokenizer.json</c> beside them describes another tokenizer (<see
    /// cref="RequireMatchingTokenizerJson"/>).</summary>
    public static WordPiece Load(string directory)
    {
        var tokenizer = FromVocabFile(Path.Combine(directory, VocabFileName), TokenizerSettings.Load(directory));
        tokenizer.RequireMatchingTokenizerJson(directory);
        return tokenizer;
    }

    /// <summary>A <c>tokenizer.json</c> in <paramref name="directory"/> must be this tokenizer (the same entries and
    /// normalization): transformers' AutoTokenizer reads it rather than vocab.txt, so a stale one — vocab.txt put back
    /// from another run, tokenizer_config.json edited — would make transformers tokenize otherwise than we do. The file
    /// we write is recognized by its bytes; another is read and compared.</summary>
    public void RequireMatchingTokenizerJson(string directory)
    {
        string path = Path.Combine(directory, TokenizerJsonFileName);
        if (!File.Exists(path) || File.ReadAllBytes(path).AsSpan().SequenceEqual(ToTokenizerJson())) return;
        string fix = $"transformers reads it rather than {VocabFileName}, so delete it (bert writes it again from {VocabFileName} at its next save, and export --hf writes it) or put back the three files saved together.";
        WordPiece other;
        try { other = FromTokenizerJson(path); }
        catch (DataException e)
        {
            throw new DataException($"{path} is not the tokenizer of the {VocabFileName} and {TokenizerSettings.FileName} beside it ({e.Message.TrimEnd('.')}); {fix}", path, 0, e);
        }
        string? differs = !other.Vocab.SequenceEqual(Vocab) ? $"its {other.VocabSize} entries are not the {VocabSize} of {VocabFileName}"
            : other.Settings.LowerCase != Settings.LowerCase ? $"it {(other.Settings.LowerCase ? "lower-cases" : "keeps case")}, {TokenizerSettings.FileName} {(Settings.LowerCase ? "lower-cases" : "keeps case")}"
            : other.Settings.StripAccents != Settings.StripAccents ? $"it {(other.Settings.StripAccents ? "strips" : "keeps")} accents, {TokenizerSettings.FileName} {(Settings.StripAccents ? "strips" : "keeps")} them"
            : other.Settings.MaxWordChars != Settings.MaxWordChars ? $"its words are [UNK] over {other.Settings.MaxWordChars} characters, {TokenizerSettings.FileName}'s over {Settings.MaxWordChars}"
            : null;
        if (differs is not null)
            throw new DataException($"{path} is not the tokenizer of the {VocabFileName} and {TokenizerSettings.FileName} beside it ({differs}); {fix}", path);
    }

    /// <summary>Writes <c>vocab.txt</c> (LF, one token per line), <c>tokenizer_config.json</c> with the ids recorded,
    /// and <c>tokenizer.json</c> (<see cref="ToTokenizerJson"/>), each through a temporary file moved into place (each
    /// file whole; a save cut off between two files leaves an old tokenizer.json beside a new vocab.txt, which <see
    /// cref="Load"/> then refuses). Our readers take vocab.txt and tokenizer_config.json; tokenizer.json is for Hugging
    /// Face's fast tokenizers, which transformers' AutoTokenizer prefers, and for the tools that read nothing else (Rust's
    /// tokenizers, transformers.js, text-embeddings-inference).</summary>
    public void Save(string directory, int? modelMaxLength = null)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.Write(Path.Combine(directory, VocabFileName), s => s.Write(new UTF8Encoding(false).GetBytes(string.Join('\n', _vocab) + "\n")));
        (Settings with { SpecialIds = Ids, ModelMaxLength = modelMaxLength ?? Settings.ModelMaxLength }).Save(directory);
        AtomicFile.Write(Path.Combine(directory, TokenizerJsonFileName), s => s.Write(ToTokenizerJson()));
    }

    /// <summary>This tokenizer as Hugging Face's <c>tokenizer.json</c> (the tokenizers library's format, version 1.0):
    /// BertNormalizer with this tokenizer's lowercase and strip_accents (written out, never null), BertPreTokenizer, a
    /// WordPiece model over the whole vocabulary in id order with the "##" prefix and <see
    /// cref="TokenizerSettings.MaxWordChars"/>, the five special tokens as added tokens (split out of the text before
    /// normalization, as <see cref="Encode"/> does), <c>[CLS] A [SEP]</c> / <c>[CLS] A [SEP] B:1 [SEP]:1</c> templates with
    /// this vocabulary's ids, and the WordPiece decoder. No truncation or padding: transformers sets those per call
    /// (model_max_length is in tokenizer_config.json). <see cref="FromTokenizerJson"/> reads it back.</summary>
    public byte[] ToTokenizerJson()
    {
        var buffer = new MemoryStream();
        using (var w = new System.Text.Json.Utf8JsonWriter(buffer, new System.Text.Json.JsonWriterOptions
               { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteNull("truncation");
            w.WriteNull("padding");
            w.WriteStartArray("added_tokens");
            foreach (var (id, token) in SpecialTokens.Select(t => (_ids[t], t)).OrderBy(p => p.Item1))
            {
                w.WriteStartObject();
                w.WriteNumber("id", id);
                w.WriteString("content", token);
                w.WriteBoolean("single_word", false);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("normalized", false);
                w.WriteBoolean("special", true);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("normalizer");
            w.WriteString("type", "BertNormalizer");
            w.WriteBoolean("clean_text", true);
            w.WriteBoolean("handle_chinese_chars", true);
            w.WriteBoolean("strip_accents", Settings.StripAccents);
            w.WriteBoolean("lowercase", Settings.LowerCase);
            w.WriteEndObject();
            w.WriteStartObject("pre_tokenizer");
            w.WriteString("type", "BertPreTokenizer");
            w.WriteEndObject();
            w.WriteStartObject("post_processor");
            w.WriteString("type", "TemplateProcessing");
            void Piece(string kind, string id, int typeId)
            {
                w.WriteStartObject();
                w.WriteStartObject(kind);
                w.WriteString("id", id);
                w.WriteNumber("type_id", typeId);
                w.WriteEndObject();
                w.WriteEndObject();
            }
            w.WriteStartArray("single");
            Piece("SpecialToken", ClsToken, 0); Piece("Sequence", "A", 0); Piece("SpecialToken", SepToken, 0);
            w.WriteEndArray();
            w.WriteStartArray("pair");
            Piece("SpecialToken", ClsToken, 0); Piece("Sequence", "A", 0); Piece("SpecialToken", SepToken, 0);
            Piece("Sequence", "B", 1); Piece("SpecialToken", SepToken, 1);
            w.WriteEndArray();
            w.WriteStartObject("special_tokens");
            foreach (var (token, id) in new[] { (ClsToken, ClsId), (SepToken, SepId) })
            {
                w.WriteStartObject(token);
                w.WriteString("id", token);
                w.WriteStartArray("ids"); w.WriteNumberValue(id); w.WriteEndArray();
                w.WriteStartArray("tokens"); w.WriteStringValue(token); w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteStartObject("decoder");
            w.WriteString("type", "WordPiece");
            w.WriteString("prefix", "##");
            w.WriteBoolean("cleanup", true);
            w.WriteEndObject();
            w.WriteStartObject("model");
            w.WriteString("type", "WordPiece");
            w.WriteString("unk_token", UnkToken);
            w.WriteString("continuing_subword_prefix", "##");
            w.WriteNumber("max_input_chars_per_word", Settings.MaxWordChars);
            w.WriteStartObject("vocab");
            for (int i = 0; i < _vocab.Length; i++) w.WriteNumber(_vocab[i], i);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        return buffer.ToArray();
    }

    public TokenizerSettings Settings { get; }

    /// <summary>The tokens in id order.</summary>
    public IReadOnlyList<string> Vocab => _vocab;

    /// <summary>V, the vocabulary size.</summary>
    public int VocabSize => _vocab.Length;

    /// <summary>The special ids as they are in the vocabulary file.</summary>
    public SpecialTokenIds Ids { get; }

    public int PadId => Ids.Pad;
    public int UnkId => Ids.Unk;
    public int ClsId => Ids.Cls;
    public int SepId => Ids.Sep;
    public int MaskId => Ids.Mask;

    public bool TryGetId(string token, out int id) => _ids.TryGetValue(token, out id);

    /// <summary>The id of a token, or <see cref="UnkId"/> when the vocabulary lacks it.</summary>
    public int IdOf(string token) => _ids.TryGetValue(token, out int id) ? id : UnkId;

    public string TokenOf(int id) => _vocab[id];

    /// <summary>True for pieces that continue a word (<c>##</c> prefix).</summary>
    public bool IsContinuation(int id) => _vocab[id].StartsWith("##", StringComparison.Ordinal);

    /// <summary>Word-piece ids of <paramref name="text"/>, without [CLS]/[SEP]. Empty text gives no ids.</summary>
    public int[] Encode(string text)
    {
        var ids = new List<int>();
        int start = 0;
        while (start < text.Length)
        {
            var (at, special) = NextSpecial(text, start);
            if (at > start)
            {
                string normalized = _text.Normalize(text.AsSpan(start, at - start));
                if (normalized.Length > 0) EncodeNormalized(normalized, ids);
            }
            if (special is null) break;
            ids.Add(_ids[special]);
            start = at + special.Length;
        }
        return ids.ToArray();
    }

    /// <summary>Word pieces of normalized text. A word longer than <see cref="TokenizerSettings.MaxWordChars"/> characters
    /// is [UNK], as in transformers, which counts characters (code points) where the package counts UTF-16 units: the
    /// same unless a word holds characters beyond the BMP (emoji, CJK extensions), so text that has one is split into
    /// words here and each word is matched by <see cref="Pieces"/>. (Cleaning drops unpaired surrogates.)</summary>
    void EncodeNormalized(string normalized, List<int> ids)
    {
        if (normalized.AsSpan().IndexOfAnyInRange('\uD800', '\uDBFF') < 0)
        {
            ids.AddRange(_bert.EncodeToIds(normalized, addSpecialTokens: false, considerPreTokenization: true, considerNormalization: false));
            return;
        }
        foreach (var (offset, length) in BertPreTokenizer.Split(normalized))
            Pieces(normalized.AsSpan(offset, length), ids);
    }

    /// <summary>WordPiece's greedy longest match over one word, as the package and transformers do it (the longest
    /// vocabulary entry that starts the rest of the word, "##" before all but the first; none: the whole word is [UNK]),
    /// never ending a piece inside a surrogate pair; a word over <see cref="TokenizerSettings.MaxWordChars"/> characters is
    /// [UNK].</summary>
    void Pieces(ReadOnlySpan<char> word, List<int> ids)
    {
        if (CharCount(word) > Settings.MaxWordChars) { ids.Add(UnkId); return; }
        var lookup = _ids.GetAlternateLookup<ReadOnlySpan<char>>();
        Span<char> buffer = word.Length + 2 <= 256 ? stackalloc char[256] : new char[word.Length + 2];
        "##".CopyTo(buffer);
        int first = ids.Count;
        for (int start = 0; start < word.Length;)
        {
            int end = word.Length, found = -1;
            while (end > start)
            {
                scoped ReadOnlySpan<char> piece = word[start..end];
                if (start > 0)
                {
                    piece.CopyTo(buffer[2..]);
                    piece = buffer[..(piece.Length + 2)];
                }
                if (lookup.TryGetValue(piece, out int id)) { found = id; break; }
                end--;
                if (end > start && char.IsLowSurrogate(word[end])) end--;
            }
            if (found < 0)
            {
                ids.RemoveRange(first, ids.Count - first);
                ids.Add(UnkId);
                return;
            }
            ids.Add(found);
            start = end;
        }
    }

    /// <summary>A word's length as transformers counts it against max_input_chars_per_word: its characters (code points).</summary>
    internal static int CharCount(ReadOnlySpan<char> word)
    {
        int chars = word.Length;
        foreach (char c in word)
            if (char.IsHighSurrogate(c)) chars--;
        return chars;
    }

    /// <summary>The word pieces of <paramref name="text"/> as strings (continuations keep their <c>##</c>).</summary>
    public string[] Tokenize(string text) => Array.ConvertAll(Encode(text), id => _vocab[id]);

    /// <summary>The normalized text WordPiece sees: cleaned, CJK spaced, lower-cased and accent-stripped per
    /// <see cref="Settings"/>.</summary>
    public string Normalize(string text) => _text.Normalize(text);

    /// <summary>The words (pre-tokens) of the normalized text, before word pieces.</summary>
    public IReadOnlyList<string> Words(string text)
    {
        // As Encode splits: a special token written in the text is one word, the text between them normalized.
        var words = new List<string>();
        for (int start = 0; start < text.Length;)
        {
            var (at, special) = NextSpecial(text, start);
            if (at > start) words.AddRange(_text.Words(text[start..at]));
            if (special is null) break;
            words.Add(special);
            start = at + special.Length;
        }
        return words;
    }

    /// <summary>Encodes one text or a pair as BERT input of at most <paramref name="maxLen"/> ids.</summary>
    public EncodedPair EncodePair(string a, string? b, int maxLen) =>
        Pack(Encode(a), b is null ? null : Encode(b), maxLen);

    /// <summary>Packs already-encoded segments: <c>[CLS] a [SEP] (b [SEP])</c>. When too long, drops the last
    /// piece of the longer segment (of <paramref name="b"/> on a tie) until it fits, as BERT's
    /// <c>_truncate_seq_pair</c> does for classification.</summary>
    public EncodedPair Pack(IReadOnlyList<int> a, IReadOnlyList<int>? b, int maxLen)
    {
        int specials = b is null ? 2 : 3;
        if (maxLen < specials)
            throw new ArgumentOutOfRangeException(nameof(maxLen), maxLen, $"maxLen must leave room for the {specials} special tokens.");
        int la = a.Count, lb = b?.Count ?? 0;
        while (la + lb > maxLen - specials)
        {
            if (la > lb) la--;
            else lb--;
        }
        int t = la + lb + specials;
        var ids = new int[t];
        var types = new int[t];
        int k = 0;
        ids[k++] = ClsId;
        for (int i = 0; i < la; i++) ids[k++] = a[i];
        ids[k++] = SepId;
        if (b is not null)
        {
            for (int i = 0; i < lb; i++) { types[k] = 1; ids[k++] = b[i]; }
            types[k] = 1;
            ids[k++] = SepId;
        }
        return new EncodedPair(ids, types, a.Count + (b?.Count ?? 0) - la - lb);
    }

    /// <summary>Text from ids: pieces joined, <c>##</c> glued to the previous piece, specials dropped unless
    /// <paramref name="skipSpecialTokens"/> is false.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) => _bert.Decode(ids, skipSpecialTokens);

    static BertOptions Options(TokenizerSettings settings) => new()
    {
        LowerCaseBeforeTokenization = settings.LowerCase,
        RemoveNonSpacingMarks = settings.StripAccents,   // unused: BertText normalizes (the package's normalizer is never called)
        ApplyBasicTokenization = true,
        IndividuallyTokenizeCjk = true,
        SplitOnSpecialTokens = false, // Encode splits them out itself, before normalization
        PreTokenizer = BertPreTokenizer.Instance,
        MaxInputCharsPerWord = settings.MaxWordChars,
        UnknownToken = UnkToken,
        ClassificationToken = ClsToken,
        SeparatorToken = SepToken,
        PaddingToken = PadToken,
        MaskingToken = MaskToken,
    };

    static (int At, string? Special) NextSpecial(string text, int start)
    {
        for (int at = text.IndexOf('[', start); at >= 0; at = text.IndexOf('[', at + 1))
            foreach (string special in SpecialTokens)
                if (string.CompareOrdinal(text, at, special, 0, special.Length) == 0)
                    return (at, special);
        return (text.Length, null);
    }

    /// <summary>Vocabulary text to tokens: every line is a token (its index is its id); one final line break
    /// does not add an entry.</summary>
    internal static List<string> ParseVocab(string text) =>
        TextSource.Lines(text).Select(l => l.Line).ToList();

    /// <summary>The normalizer for a settings object when no vocabulary exists yet (VocabBuilder).</summary>
    internal static BertText TextFor(TokenizerSettings settings) => new(settings);
}

/// <summary>BERT's text pipeline before word pieces, in the order of transformers' (fast) BertNormalizer:
/// <see cref="Clean"/>, a space around each CJK ideograph, the accents stripped (<see cref="Accents"/>), lower case;
/// then <see cref="BertPreTokenizer"/>. Shared by <see cref="WordPiece"/> and <see cref="VocabBuilder"/> so that a
/// built vocabulary sees exactly the words the tokenizer will.
/// <para>All of it is ours rather than Microsoft.ML.Tokenizers' normalizer, which recomposes its output (NFC) and
/// strips accents with <c>string.Normalize</c>: both need ICU, so under InvariantGlobalization, as `bert` runs, the
/// same text tokenized differently from the tests' ICU runs ("café" stayed whole, [UNK] in bert-base-uncased), and with
/// ICU the recomposition turned the jamo that transformers gives a Korean syllable back into the syllable.</para></summary>
internal sealed class BertText(TokenizerSettings settings)
{
    public TokenizerSettings Settings { get; } = settings;

    public string Normalize(string text) => Normalize(text.AsSpan());

    public string Normalize(ReadOnlySpan<char> text)
    {
        string s = SpaceCjk(Clean(text));
        if (Settings.StripAccents) s = Accents.Strip(s);
        return Settings.LowerCase ? Lower(s) : s;
    }

    /// <summary>Lower case by each character's own mapping, as transformers' fast tokenizer does (Rust's
    /// char::to_lowercase, from <see cref="HfUnicode"/>: no final-sigma rule; U+0130 (İ) becomes "i̇", its full mapping).
    /// The same string when it has no letter A-Z and nothing beyond ASCII.</summary>
    internal static string Lower(string text)
    {
        int i = 0;
        while (i < text.Length && text[i] < 0x80 && !char.IsAsciiLetterUpper(text[i])) i++;
        if (i == text.Length) return text;
        var sb = new StringBuilder(text.Length + 8).Append(text, 0, i);
        Span<char> form = stackalloc char[HfUnicode.MaxForm];
        while (i < text.Length)
        {
            char ch = text[i];
            if (ch < 0x80) { sb.Append(char.IsAsciiLetterUpper(ch) ? (char)(ch | 0x20) : ch); i++; continue; }
            Rune.DecodeFromUtf16(text.AsSpan(i), out Rune r, out int used);
            int n = HfUnicode.Lower(r.Value, form);
            if (n < 0) sb.Append(text, i, used);
            else sb.Append(form[..n]);
            i += used;
        }
        return sb.ToString();
    }

    /// <summary>A space before and after each CJK ideograph, BERT's <c>_tokenize_chinese_chars</c> (its ranges: the CJK
    /// Unified Ideographs and their extensions A–E, and the compatibility ideographs), so each is a word of its own. The
    /// ranges are transformers' fast BertNormalizer's (<see cref="HfUnicode.IsIdeograph"/>), whose extension E starts at
    /// U+2B920 where Google's starts at U+2B820.</summary>
    internal static string SpaceCjk(string text)
    {
        int i = 0;
        while (i < text.Length && text[i] < 0x3400) i++;
        if (i == text.Length) return text;
        StringBuilder? sb = null;
        for (i = 0; i < text.Length;)
        {
            Rune.DecodeFromUtf16(text.AsSpan(i), out Rune r, out int used);
            if (HfUnicode.IsIdeograph(r.Value))
            {
                sb ??= new StringBuilder(text.Length + 16).Append(text, 0, i);
                sb.Append(' ').Append(text, i, used).Append(' ');
            }
            else sb?.Append(text, i, used);
            i += used;
        }
        return sb?.ToString() ?? text;
    }

    public List<string> Words(string text)
    {
        string normalized = Normalize(text);
        var words = new List<string>();
        foreach (var (offset, length) in BertPreTokenizer.Split(normalized))
            words.Add(normalized.Substring(offset, length));
        return words;
    }

    /// <summary>BERT's <c>_clean_text</c> as transformers' fast BertNormalizer does it (<see cref="HfUnicode"/>): drop
    /// U+0000, U+FFFD, unpaired surrogates and its Cc, Cf and Co characters other than tab/CR/LF; turn its whitespace
    /// (tab, CR, LF, Zs, U+2028, U+2029) into a space. Unassigned characters stay (WordPiece then makes them [UNK]), where
    /// Google's tokenization.py drops them. Returns the input when nothing changes.</summary>
    public static string Clean(ReadOnlySpan<char> text)
    {
        StringBuilder? sb = null;
        int i = 0;
        while (i < text.Length)
        {
            int used = 1, cp = text[i];
            if (cp >= 0x80) { Rune.DecodeFromUtf16(text[i..], out Rune rune, out used); cp = rune.Value; }
            bool drop = HfUnicode.IsDropped(cp);   // an unpaired surrogate decodes as U+FFFD
            bool space = !drop && cp != ' ' && HfUnicode.IsSpace(cp);
            if ((drop || space) && sb is null) sb = new StringBuilder(text.Length).Append(text[..i]);
            if (space) sb!.Append(' ');
            else if (!drop) sb?.Append(text.Slice(i, used));
            i += used;
        }
        return sb?.ToString() ?? text.ToString();
    }
}

/// <summary>BERT's basic split of normalized text, as transformers' fast BertPreTokenizer does it (<see
/// cref="HfUnicode"/>): whitespace separates words, and each punctuation character is a word of its own. Punctuation is
/// BERT's: the ASCII ranges 33–47, 58–64, 91–96, 123–126 (so <c>$ + &lt; = &gt; ^ ` | ~</c> count) plus the library's
/// Unicode P*. All other characters (letters, digits, marks, symbols, emoji) stay in their word.</summary>
internal sealed class BertPreTokenizer : PreTokenizer
{
    public static BertPreTokenizer Instance { get; } = new();

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text);

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    public static List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        var words = new List<(int, int)>();
        int start = -1, i = 0;
        while (i < text.Length)
        {
            int used = 1, cp = text[i];
            if (cp >= 0x80) { Rune.DecodeFromUtf16(text[i..], out Rune rune, out used); cp = rune.Value; }
            bool separator = HfUnicode.IsSeparator(cp);
            if (separator || HfUnicode.IsPunctuation(cp))
            {
                if (start >= 0) words.Add((start, i - start));
                start = -1;
                if (!separator) words.Add((i, used));
            }
            else if (start < 0)
            {
                start = i;
            }
            i += used;
        }
        if (start >= 0) words.Add((start, text.Length - start));
        return words;
    }
}
