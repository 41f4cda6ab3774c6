using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Bert.Data;

/// <summary>One extractive question: its context, the gold answers (text and the character where it starts in the
/// context; several in a dev set, as SQuAD's three annotators gave them) and whether it has none (SQuAD 2.0).</summary>
public sealed record QaExample(string Id, string Question, string Context, IReadOnlyList<(string Text, int Start)> Answers, bool Impossible);

/// <summary>A set of extractive questions read from one file.</summary>
public sealed record QaSet(string Name, IReadOnlyList<QaExample> Examples)
{
    /// <summary>Whether some questions have no answer (SQuAD 2.0): predictions may then be empty.</summary>
    public bool HasImpossible => Examples.Any(e => e.Impossible);
}

/// <summary>Extractive question answering data and its scores, as SQuAD defines them. Files: SQuAD's own JSON (v1.1 or
/// v2.0: <c>data[].paragraphs[].context</c> and <c>qas[]</c> with <c>id</c>, <c>question</c>, <c>answers[].text</c>,
/// <c>answers[].answer_start</c>, <c>is_impossible</c>), or JSON lines as Hugging Face datasets' <c>to_json</c> writes
/// <c>squad</c> and <c>squad_v2</c> (one object a line: <c>id</c>, <c>question</c>, <c>context</c>,
/// <c>answers: {text: [...], answer_start: [...]}</c>, no answers meaning none), either maybe gzipped.</summary>
public static partial class Squad
{
    const string Form = "SQuAD's JSON ({\"data\": [{\"paragraphs\": [{\"context\": …, \"qas\": [{\"id\", \"question\", \"answers\": [{\"text\", \"answer_start\"}]}]}]}]}) or JSON lines as Hugging Face datasets' to_json writes squad ({\"id\", \"question\", \"context\", \"answers\": {\"text\": […], \"answer_start\": […]}} a line)";

    public static QaSet Read(string path)
    {
        var text = new StringBuilder();
        var lines = new List<(int Number, string Line)>();
        foreach (var (number, line) in TextSource.ReadLines(path))
            if (!string.IsNullOrWhiteSpace(line)) lines.Add((number, line));
        if (lines.Count == 0) throw new DataException($"Data file '{path}' holds no questions; give {Form}.", path);
        string name = Path.GetFileName(path);
        // One object spread over the file (SQuAD's JSON, pretty-printed or not) or one object a line (JSON lines).
        if (lines.Count == 1 || !lines[0].Line.TrimEnd().EndsWith('}'))
        {
            foreach (var (_, line) in lines) text.Append(line).Append('\n');
            JsonDocument doc;
            try { doc = JsonDocument.Parse(text.ToString()); }
            catch (JsonException e)
            {
                throw new DataException($"'{path}' is not JSON ({e.Message.Split(" Path:")[0].TrimEnd('.')}); give {Form}.", path, 0, e);
            }
            using (doc)
            {
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("data", out var data))
                    return Check(new QaSet(name, Nested(data, path)), path);
                if (lines.Count == 1 && doc.RootElement.ValueKind == JsonValueKind.Object)
                    return Check(new QaSet(name, [Record(doc.RootElement, path, lines[0].Number)]), path);
                throw new DataException($"'{path}' is JSON without SQuAD's \"data\" list; give {Form}.", path);
            }
        }
        var examples = new List<QaExample>(lines.Count);
        foreach (var (number, line) in lines)
        {
            try
            {
                using var doc = JsonDocument.Parse(line);
                examples.Add(Record(doc.RootElement, path, number));
            }
            catch (JsonException e)
            {
                throw new DataException($"Line {number} of '{path}' is not JSON ({e.Message.Split(" Path:")[0].TrimEnd('.')}); give {Form}.", path, number, e);
            }
        }
        return Check(new QaSet(name, examples), path);
    }

    static QaSet Check(QaSet set, string path)
    {
        if (set.Examples.Count == 0) throw new DataException($"Data file '{path}' holds no questions; give {Form}.", path);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in set.Examples)
            if (!seen.Add(e.Id))
                throw new DataException($"'{path}' has the question id '{e.Id}' twice; give each question its own id (predictions and scores are kept by id).", path);
        return set;
    }

    static List<QaExample> Nested(JsonElement data, string path)
    {
        if (data.ValueKind != JsonValueKind.Array) throw new DataException($"'{path}' has a \"data\" that is not a list; give {Form}.", path);
        var examples = new List<QaExample>();
        int article = 0;
        foreach (var a in data.EnumerateArray())
        {
            article++;
            if (a.ValueKind != JsonValueKind.Object || !a.TryGetProperty("paragraphs", out var paragraphs) || paragraphs.ValueKind != JsonValueKind.Array)
                throw new DataException($"Article {article} of '{path}' has no \"paragraphs\" list; give {Form}.", path);
            foreach (var p in paragraphs.EnumerateArray())
            {
                string context = String(p, "context", path, $"a paragraph of article {article}");
                if (!p.TryGetProperty("qas", out var qas) || qas.ValueKind != JsonValueKind.Array)
                    throw new DataException($"A paragraph of article {article} of '{path}' has no \"qas\" list; give {Form}.", path);
                foreach (var q in qas.EnumerateArray())
                {
                    string id = Id(q, path, $"a question of article {article}");
                    string where = $"question '{id}'";
                    var answers = new List<(string, int)>();
                    if (q.TryGetProperty("answers", out var list) && list.ValueKind == JsonValueKind.Array)
                        foreach (var ans in list.EnumerateArray())
                            answers.Add((String(ans, "text", path, $"an answer of {where}"), Int(ans, "answer_start", path, $"an answer of {where}")));
                    bool impossible = q.TryGetProperty("is_impossible", out var imp) && imp.ValueKind == JsonValueKind.True;
                    examples.Add(Example(id, String(q, "question", path, where), context, impossible ? [] : answers, path, where));
                }
            }
        }
        return examples;
    }

    static QaExample Record(JsonElement r, string path, int number)
    {
        string where = $"line {number}";
        if (r.ValueKind != JsonValueKind.Object) throw new DataException($"Line {number} of '{path}' is not a JSON object; give {Form}.", path, number);
        string id = Id(r, path, where);
        var answers = new List<(string, int)>();
        if (r.TryGetProperty("answers", out var a) && a.ValueKind == JsonValueKind.Object)
        {
            if (!a.TryGetProperty("text", out var texts) || texts.ValueKind != JsonValueKind.Array || !a.TryGetProperty("answer_start", out var starts) || starts.ValueKind != JsonValueKind.Array
                || texts.GetArrayLength() != starts.GetArrayLength())
                throw new DataException($"Line {number} of '{path}' has \"answers\" without equally long \"text\" and \"answer_start\" lists; give {Form}.", path, number);
            foreach (var (t, s) in texts.EnumerateArray().Zip(starts.EnumerateArray()))
            {
                if (t.ValueKind != JsonValueKind.String || s.ValueKind != JsonValueKind.Number || !s.TryGetInt32(out int start))
                    throw new DataException($"Line {number} of '{path}' has an answer whose text is not a string or whose answer_start is not a whole number; give {Form}.", path, number);
                answers.Add((t.GetString()!, start));
            }
        }
        else if (r.TryGetProperty("answers", out a) && a.ValueKind != JsonValueKind.Null)
            throw new DataException($"Line {number} of '{path}' has \"answers\" that is not an object of lists; give {Form}.", path, number);
        return Example(id, String(r, "question", path, where), String(r, "context", path, where), answers, path, where);
    }

    /// <summary>An example whose answers lie in its context: an answer_start outside it, or an answer that runs past its end,
    /// is refused, naming the question (a file whose offsets count bytes, or another context's, would train on nonsense).</summary>
    static QaExample Example(string id, string question, string context, List<(string Text, int Start)> answers, string path, string where)
    {
        foreach (var (text, start) in answers)
            if (start < 0 || start + text.Length > context.Length)
                throw new DataException($"In '{path}', {where} has the answer '{Short(text)}' at character {start}, which does not lie inside its context of {context.Length} characters; fix answer_start (it counts characters of the context, from 0).", path);
        return new QaExample(id, question, context, answers.Select(x => (x.Text, x.Start)).ToList(), answers.Count == 0);
    }

    static string Short(string s) => s.Length <= 40 ? s : s[..40] + "…";

    static string Id(JsonElement e, string path, string where) =>
        e.TryGetProperty("id", out var id) && id.ValueKind is JsonValueKind.String or JsonValueKind.Number ? id.ToString()
            : throw new DataException($"In '{path}', {where} has no \"id\"; give each question an id; {Form}.", path);

    static string String(JsonElement e, string property, string path, string where) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(property, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
            : throw new DataException($"In '{path}', {where} has no \"{property}\" string; give {Form}.", path);

    static int Int(JsonElement e, string property, string path, string where) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(property, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i
            : throw new DataException($"In '{path}', {where} has no whole-number \"{property}\"; give {Form}.", path);

    // ---------------- the scores (SQuAD's evaluate-v2.0.py) ----------------

    /// <summary>SQuAD's answer normalization: lower case, punctuation removed (Python's string.punctuation, ASCII), the
    /// articles a, an, the replaced by a space where they stand as words (<c>\b(a|an|the)\b</c>, so also beside a quote mark
    /// or dash that string.punctuation lacks), whitespace collapsed.</summary>
    public static string Normalize(string s)
    {
        var sb = new StringBuilder(s.Length);
        foreach (char c in s.ToLowerInvariant())
            if (!Punctuation.Contains(c)) sb.Append(c);
        return string.Join(' ', Articles().Replace(sb.ToString(), " ").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"\b(a|an|the)\b")]
    private static partial System.Text.RegularExpressions.Regex Articles();

    const string Punctuation = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

    static string[] Tokens(string s) => Normalize(s).Split(' ', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>1 when the normalized texts are equal, else 0.</summary>
    public static double ExactMatch(string gold, string predicted) => Normalize(gold) == Normalize(predicted) ? 1 : 0;

    /// <summary>The F1 of the normalized texts' word bags; when either has no words, 1 if both have none, else 0.</summary>
    public static double F1(string gold, string predicted)
    {
        var g = Tokens(gold); var p = Tokens(predicted);
        if (g.Length == 0 || p.Length == 0) return g.Length == p.Length ? 1 : 0;
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var w in g) counts[w] = counts.GetValueOrDefault(w) + 1;
        int common = 0;
        foreach (var w in p)
            if (counts.GetValueOrDefault(w) > 0) { common++; counts[w]--; }
        if (common == 0) return 0;
        double precision = (double)common / p.Length, recall = (double)common / g.Length;
        return 2 * precision * recall / (precision + recall);
    }

    /// <summary>An example's exact match and F1: the best over its gold answers (an unanswerable question's gold is the
    /// empty answer), as the official script scores them.</summary>
    public static (double ExactMatch, double F1) Score(QaExample e, string predicted)
    {
        IEnumerable<string> golds = e.Answers.Count == 0 ? [""] : e.Answers.Select(a => a.Text).Where(t => Normalize(t).Length > 0).DefaultIfEmpty("");
        return (golds.Max(g => ExactMatch(g, predicted)), golds.Max(g => F1(g, predicted)));
    }

    internal static string Percent(double v) => v.ToString("P2", CultureInfo.InvariantCulture);
}
