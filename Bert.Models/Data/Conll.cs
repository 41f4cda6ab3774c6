namespace Bert.Data;

/// <summary>A token-tagging set: sentences as words with one tag each (ids into <see cref="Tags"/>).</summary>
public sealed record TaggedSet(string Name, IReadOnlyList<(string[] Words, int[] Tags)> Sentences, IReadOnlyList<string> Tags);

/// <summary>CoNLL-style tagging files (CoNLL-2003 NER, Universal Dependencies' POS columns exported the same way): one
/// word per line with its columns separated by spaces or tabs, the word first and its tag last; a blank line ends a
/// sentence; <c>-DOCSTART-</c> lines are skipped. Tags are names (<c>B-PER</c>, <c>O</c>, <c>NOUN</c>), numbered in
/// ordinal order, or in a training file's order when a dev file is read with its tags.</summary>
public static class Conll
{
    /// <param name="tagsFrom">What <paramref name="tags"/> came from, for the message about a tag outside them.</param>
    public static TaggedSet Read(string path, IReadOnlyList<string>? tags = null, string tagsFrom = "the training file") => Parse(TextSource.ReadFile(path), path, tags, tagsFrom);

    public static TaggedSet Parse(string text, string file, IReadOnlyList<string>? tags = null, string tagsFrom = "the training file")
    {
        var sentences = new List<(List<string> Words, List<string> Tags, int Line)>();
        List<string>? words = null, names = null;
        foreach (var (number, line) in TextSource.Lines(text))
        {
            var fields = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length == 0 || fields[0] == "-DOCSTART-") { words = null; continue; }
            // "several words<TAB>label" is a text classification line (--format tsv), not a word and its columns
            int tab = line.IndexOf('\t');
            if (tab > 0 && line[..tab].Trim().Contains(' '))
                throw new DataException($"{file} line {number} has several words before its tab ('{line[..tab].Trim()}'), as a text<TAB>label file has, while a CoNLL file has one word and its tag per line; classify such texts with --format tsv and a classifier.", file, number);
            if (fields.Length < 2)
                throw new DataException($"{file} line {number} has one column ('{fields[0]}'); write each word and its tag on one line ('Paris B-LOC'), with a blank line between sentences.", file, number);
            if (words is null) { words = []; names = []; sentences.Add((words, names, number)); }
            words.Add(fields[0]); names!.Add(fields[^1]);
        }
        if (sentences.Count == 0)
            throw new DataException($"Data file '{file}' holds no tagged words; write one word and its tag per line, with a blank line between sentences.", file);
        var order = tags ?? sentences.SelectMany(s => s.Tags).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < order.Count; i++) ids[order[i]] = i;
        var result = new List<(string[], int[])>(sentences.Count);
        foreach (var (w, t, line) in sentences)
        {
            var tagIds = new int[t.Count];
            for (int i = 0; i < t.Count; i++)
                if (!ids.TryGetValue(t[i], out tagIds[i]))
                    throw new DataException($"{file} line {line + i} has the tag '{t[i]}', which {tagsFrom} does not have ({string.Join(", ", order)}); fix the tag{(tagsFrom == "the training file" ? " or add examples of it to the training file" : "")}.", file, line + i);
            result.Add((w.ToArray(), tagIds));
        }
        return new TaggedSet(Path.GetFileName(file), result, order);
    }

    /// <summary>Entities as (first word, end word exclusive, type) from BIO tags, as conlleval counts them: a chunk
    /// starts at B-X, or at I-X after anything but B-X or I-X; it ends before O, B-, or a tag of another type.</summary>
    public static List<(int Start, int End, string Type)> Chunks(IReadOnlyList<string> tags)
    {
        var chunks = new List<(int, int, string)>();
        int start = -1; string type = "";
        for (int i = 0; i <= tags.Count; i++)
        {
            string tag = i < tags.Count ? tags[i] : "O";
            string prefix = tag.Length > 2 && tag[1] == '-' ? tag[..1] : "";
            string t = prefix == "" ? "" : tag[2..];
            bool continues = start >= 0 && prefix == "I" && t == type;
            if (start >= 0 && !continues) { chunks.Add((start, i, type)); start = -1; }
            if (start < 0 && (prefix == "B" || prefix == "I")) { start = i; type = t; }
        }
        return chunks;
    }

    /// <summary>Whether the tags are BIO chunk tags (every tag O or B-X / I-X), so that entity F1 means something; a
    /// model's unused classes (LABEL_i, config.json's default names) are left out.</summary>
    public static bool IsBio(IReadOnlyList<string> tags)
    {
        var used = tags.Where(t => !(t.StartsWith("LABEL_", StringComparison.Ordinal) && int.TryParse(t.AsSpan(6), out _))).ToList();
        return used.All(t => t == "O" || (t.Length > 2 && t[1] == '-' && (t[0] == 'B' || t[0] == 'I'))) && used.Any(t => t != "O");
    }

    /// <summary>Entity precision, recall and F1 over sentences (conlleval's micro average): a predicted entity counts when
    /// its span and type equal a gold one.</summary>
    public static (double Precision, double Recall, double F1) EntityScores(IEnumerable<(IReadOnlyList<string> Gold, IReadOnlyList<string> Predicted)> sentences)
    {
        int correct = 0, gold = 0, predicted = 0;
        foreach (var (g, p) in sentences)
        {
            var gc = Chunks(g).ToHashSet();
            var pc = Chunks(p);
            gold += gc.Count; predicted += pc.Count;
            correct += pc.Count(gc.Contains);
        }
        double precision = predicted == 0 ? 0 : (double)correct / predicted, recall = gold == 0 ? 0 : (double)correct / gold;
        return (precision, recall, precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall));
    }
}
