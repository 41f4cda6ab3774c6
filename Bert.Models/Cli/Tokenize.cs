using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using Bert.Text;
using Bert.Training;

namespace Bert.Cli;

/// <summary>`bert tokenize`: what the model sees of a text (its word pieces or ids, as fine-tuning, eval and predict
/// encode it), or a summary of a corpus under a tokenizer (pieces a word, [UNK], lengths against --max-len).</summary>
public static partial class Program
{
    static Command TokenizeCommand()
    {
        var cmd = new Command("tokenize", "Show how a tokenizer splits texts: the word pieces or ids a model gets ([CLS] … [SEP], cut at --max-len), or with --stats a corpus's pieces a word, [UNK] share and lengths.");
        var text = new Argument<string?>("text") { Description = "the text (omit to read --corpus, or one text per line from standard input)", Arity = ArgumentArity.ZeroOrOne };
        var corpus = new Option<string[]>("--corpus")
        {
            Description = "text files (one text per line; JSON lines: one text a record; .gz read as it is; a folder: its corpus files) or embedded names (" + string.Join(", ", DataSets.NamedCorpora.Concat(DataSets.Named).Concat(DataSets.NamedPortuguese)) + "; a labeled set's training texts)",
            AllowMultipleArgumentsPerToken = true,
        };
        var model = new Option<string?>("--model") { Description = "the tokenizer saved with this checkpoint (ours, or a Hugging Face folder)" };
        var vocab = new Option<string?>("--vocab") { Description = "instead of --model: a folder with vocab.txt and tokenizer_config.json, as `bert vocab` writes (default: bert-base-uncased)" };
        var output = Opt("--output", "tokens (the word pieces), ids (the input ids), or json (one object a line: tokens, ids, type_ids, truncated)", "tokens");
        output.AcceptOnlyFromAmong("tokens", "ids", "json");
        var pairs = Opt("--pairs", "each text is a sentence pair, first text<TAB>second text: [CLS] first [SEP] second [SEP], type ids 0 then 1", false);
        var stats = Opt("--stats", "print a summary instead of each text: words, pieces a word, the [UNK] share and its most frequent words, lengths and how many exceed --max-len", false);
        var maxLen = Opt("--max-len", "cut each encoding to this many tokens, [CLS] and [SEP] included, as finetune, eval and predict do with theirs", 128);
        cmd.Arguments.Add(text);
        foreach (var o in new Option[] { corpus, model, vocab, output, pairs, stats, maxLen }) cmd.Options.Add(o);
        cmd.SetAction(pr =>
        {
            if (pr.GetValue(stats) && pr.GetResult(output) is { Implicit: false })
                throw new ArgumentException("--stats prints a summary instead of each text, so --output has nothing to shape; drop one of the two.");
            if (pr.GetValue(model) is not null && pr.GetValue(vocab) is not null)
                throw new ArgumentException("Give the tokenizer once: --model DIR (the one saved with a checkpoint) or --vocab DIR, not both.");
            int len = CheckMaxLen("--max-len", pr.GetValue(maxLen), 3);
            if (pr.GetValue(pairs)) RequirePairRoom(len, "a sentence pair");
            return Tokenize(pr.GetValue(text), pr.GetValue(corpus), pr.GetValue(model), pr.GetValue(vocab), pr.GetValue(output)!, pr.GetValue(pairs), pr.GetValue(stats), len,
                pr.GetResult(maxLen) is { Implicit: false });
        });
        return cmd;
    }

    static int Tokenize(string? text, string[]? corpus, string? modelDir, string? vocabDir, string output, bool pairs, bool stats, int maxLen, bool maxLenGiven)
    {
        bool fromCorpus = corpus is { Length: > 0 };
        if (text is not null && fromCorpus)
            throw new ArgumentException("Give the texts one way: the text argument, --corpus, or lines on standard input, not two of them.");
        if (text is not null && text.Trim().Length == 0)
            throw new ArgumentException("The text to tokenize is empty; pass some text, or omit it to read --corpus or one text per line from standard input.");
        var tok = modelDir is not null ? CheckpointTokenizer.Load(modelDir) : Tokenizer(vocabDir);
        // A checkpoint's positions bound --max-len as they do for eval and predict: a larger one given is refused, the
        // default lowered to them.
        int positions = 512;
        if (modelDir is not null && File.Exists(Path.Combine(modelDir, "config.json"))
            && Bert.Runtime.Checkpoints.HfConfig.Read(Path.Combine(modelDir, "config.json")).Get("max_position_embeddings") is long mp and > 0)
        {
            positions = (int)Math.Min(mp, int.MaxValue);
            if (maxLen > positions && maxLenGiven)
                throw new ArgumentException($"--max-len {maxLen} is over the MaxLen of the model in {modelDir}, {positions}; give --max-len {positions} or less.");
            maxLen = Math.Min(maxLen, positions);
        }
        string empty = fromCorpus ? $"The corpus ({string.Join(", ", corpus!)}) has no text to tokenize; give files with text in them."
            : "No text to tokenize; pass it as an argument, with --corpus, or one per line on standard input.";
        // Where text i came from, for a message: the argument, a line of standard input or of the one corpus file, or the
        // i-th text of several corpus inputs.
        string Where(int i) => text is not null ? "The text"
            : !fromCorpus ? $"Line {i + 1} of standard input"
            : corpus!.Length == 1 && File.Exists(corpus[0]) ? $"{(Bert.Data.TextSource.IsJsonLines(corpus[0]) ? "Record" : "Line")} {i + 1} of {corpus[0]}"
            : $"Text {i + 1} of --corpus {string.Join(' ', corpus!)}";
        void CheckPair(int i, string t)
        {
            if (!pairs || t.Trim().Length == 0) return;
            int tabs = t.Count(c => c == '\t');
            if (tabs != 1)
                throw new ArgumentException($"{Where(i)} has {tabs + 1} tab-separated field{(tabs == 0 ? "" : "s")}, but with --pairs a text is 'first text<TAB>second text'; {(tabs == 0 ? "put a tab between the two texts, or drop --pairs" : "remove the extra tabs")}.");
            int tab = t.IndexOf('\t');
            bool firstEmpty = t[..tab].Trim().Length == 0;
            if (firstEmpty || t[(tab + 1)..].Trim().Length == 0)
                throw new ArgumentException($"{Where(i)} has an empty {(firstEmpty ? "first" : "second")} text; with --pairs both sides of the tab need text.");
        }
        // A corpus's summary reads it as it goes (a file of any size), each line checked as it comes; nothing is printed
        // before the whole corpus has been read.
        if (stats && fromCorpus)
            return TokenizeStats(tok, DataSets.VocabLines(corpus!).Select((t, i) => { CheckPair(i, t); return t; }), modelDir ?? vocabDir, maxLen, pairs, positions, empty);

        List<string> texts = text is not null ? [text] : fromCorpus ? DataSets.VocabLines(corpus!).ToList() : ReadStdin();
        int nonBlank = texts.Count(t => t.Trim().Length > 0);
        if (nonBlank == 0) throw new ArgumentException(empty);
        for (int i = 0; i < texts.Count; i++) CheckPair(i, texts[i]);

        if (stats) return TokenizeStats(tok, texts, modelDir ?? vocabDir, maxLen, pairs, positions, empty);

        int longer = 0;
        var json = new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        var outp = Console.Out;
        foreach (string t in texts)
        {
            if (t.Trim().Length == 0)
            {
                // A blank line gets an empty answer, so that output line i answers input line i.
                outp.WriteLine(output == "json" ? """{"tokens":[],"ids":[],"type_ids":[],"truncated":0}""" : "");
                continue;
            }
            var p = EncodeLine(tok, t, pairs, maxLen);
            if (p.Truncated > 0) longer++;
            outp.WriteLine(output switch
            {
                "ids" => string.Join(' ', p.Ids),
                "json" => JsonSerializer.Serialize(new TokenizedJson(Array.ConvertAll(p.Ids, tok.TokenOf), p.Ids, p.TypeIds, p.Truncated), json),
                _ => string.Join(' ', Array.ConvertAll(p.Ids, tok.TokenOf)),
            });
        }
        if (longer > 0)
            Console.Error.WriteLine($"{longer} of {nonBlank} text{(nonBlank == 1 ? "" : "s")} {(longer == 1 ? "was" : "were")} longer than {maxLen} tokens and cut to {maxLen} (--max-len), as finetune, eval and predict would cut {(longer == 1 ? "it" : "them")}.");
        return 0;
    }

    /// <summary>One line of `tokenize --output json` (the names transformers gives the same lists).</summary>
    sealed record TokenizedJson(
        [property: System.Text.Json.Serialization.JsonPropertyName("tokens")] string[] Tokens,
        [property: System.Text.Json.Serialization.JsonPropertyName("ids")] int[] Ids,
        [property: System.Text.Json.Serialization.JsonPropertyName("type_ids")] int[] TypeIds,
        [property: System.Text.Json.Serialization.JsonPropertyName("truncated")] int Truncated);

    /// <summary>`tokenize --stats`: the summary that tells whether a tokenizer fits a corpus (pieces a word, [UNK]) and
    /// which --max-len its texts need (length percentiles, how many would be cut).</summary>
    /// <param name="empty">The sentence that refuses texts without a non-blank one.</param>
    static int TokenizeStats(WordPiece tok, IEnumerable<string> texts, string? from, int maxLen, bool pairs, int positions, string empty)
    {
        long words = 0, pieces = 0, unkPieces = 0;
        int blank = 0, longer = 0;
        var lengths = new List<int>();
        var unknown = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string t in texts)
        {
            if (t.Trim().Length == 0) { blank++; continue; }
            var segments = pairs ? t.Split('\t') : [t];
            int length = segments.Length + 1;       // [CLS], and a [SEP] after each text
            foreach (string s in segments)
            {
                var ws = tok.Words(s);
                words += ws.Count;
                var ids = tok.Encode(s);
                pieces += ids.Length;
                length += ids.Length;
                int unk = ids.Count(id => id == tok.UnkId);
                if (unk == 0) continue;
                unkPieces += unk;
                foreach (string w in ws)
                    if (Array.IndexOf(tok.Encode(w), tok.UnkId) >= 0) unknown[w] = unknown.GetValueOrDefault(w) + 1;
            }
            // The whole encoding's length; EncodePair would cut it to maxLen.
            if (length > maxLen) longer++;
            lengths.Add(length);
        }
        if (lengths.Count == 0) throw new ArgumentException(empty);
        lengths.Sort();
        int n = lengths.Count;
        static string Percent(long part, long whole) { double p = 100.0 * part / whole; return p.ToString(p >= 0.01 ? "F2" : "G2", Inv); }
        int Pct(double q) => lengths[Math.Min(n - 1, (int)Math.Ceiling(q * n) - 1)];
        var s0 = tok.Settings;
        string Plural(long k, string one) => k == 1 ? one : one + "s";
        Console.WriteLine(string.Create(Inv, $"Tokenizer: {from ?? "bert-base-uncased"} ({tok.VocabSize:N0} entries; lower case: {s0.LowerCase}, strip accents: {s0.StripAccents})."));
        Console.WriteLine(string.Create(Inv, $"Texts: {n:N0}{(pairs ? " sentence " + Plural(n, "pair") : "")}{(blank > 0 ? $" ({blank:N0} blank {Plural(blank, "line")} skipped)" : "")}; {words:N0} {Plural(words, "word")}, {pieces:N0} word {Plural(pieces, "piece")}: {(double)pieces / Math.Max(1, words):F2} pieces a word."));
        string top = string.Join(", ", unknown.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal).Take(10).Select(kv => string.Create(Inv, $"{kv.Key} ({kv.Value:N0})")));
        Console.WriteLine(unkPieces == 0 ? "[UNK]: none; every word has pieces in the vocabulary."
            : string.Create(Inv, $"[UNK]: {unkPieces:N0} {Plural(unkPieces, "piece")}, {Percent(unkPieces, pieces)} % of all; most frequent unknown words: {top}."));
        Console.WriteLine(string.Create(Inv, $"Length with [CLS] and [SEP]: median {Pct(0.5)}, 90th percentile {Pct(0.9)}, 99th {Pct(0.99)}, longest {lengths[n - 1]}."));
        Console.WriteLine(longer == 0 ? $"None longer than --max-len {maxLen}."
            : string.Create(Inv, $"{longer:N0} of {n:N0} ({100.0 * longer / n:F1} %) longer than --max-len {maxLen}: finetune, eval and predict would cut them to {maxLen} tokens{(lengths[n - 1] <= positions ? $" (a --max-len of {lengths[n - 1]} keeps every one whole)" : $" ({lengths.Count(l => l > positions):N0} longer than the {positions} positions a model takes)")}."));
        return 0;
    }
}
