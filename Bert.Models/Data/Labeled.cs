using System.Globalization;

namespace Bert.Data;

/// <summary>A labelled text classification set: labels are <c>0 .. Classes-1</c>. <see cref="LabelNames"/> names them
/// when the file did (in id order); <see cref="Pairs"/>, when set, holds each example's second text (sentence-pair
/// tasks: entailment, paraphrase), in the order of <see cref="Examples"/>.</summary>
public sealed record LabeledSet(string Name, IReadOnlyList<(string Text, int Label)> Examples, int Classes)
{
    public IReadOnlyList<string>? LabelNames { get; init; }
    public IReadOnlyList<string>? Pairs { get; init; }

    /// <summary>The second text of example <paramref name="i"/>, or null for single-text sets.</summary>
    public string? Pair(int i) => Pairs?[i];

    /// <summary>This set followed by <paramref name="other"/> (same labels).</summary>
    public LabeledSet Concat(LabeledSet other) => this with
    {
        Examples = [.. Examples, .. other.Examples],
        Pairs = Pairs is null ? null : [.. Pairs, .. other.Pairs ?? throw new ArgumentException("Only sentence-pair sets can be joined to a sentence-pair set.", nameof(other))],
    };

    /// <summary>How many examples carry each label.</summary>
    public int[] LabelCounts()
    {
        var counts = new int[Classes];
        foreach (var (_, label) in Examples) counts[label]++;
        return counts;
    }
}

/// <summary>Readers for the sentence classification sets, and a fixed stratified split.
/// <list type="bullet">
/// <item>UCI Sentiment Labelled Sentences: <c>sentence TAB label</c>; the label is after the LAST tab; no quote
/// handling (imdb has an unbalanced <c>"</c> on line 19); 2 classes.</item>
/// <item>SST-2 (<c>stsa.binary.*</c>): <c>label SPACE sentence</c>; 2 classes.</item>
/// <item>Generic TSV: <c>text TAB label</c>, label after the last tab; classes given or the largest label + 1.</item>
/// </list>
/// Every reader splits lines on <c>'\n'</c> only (see <see cref="TextSource.Lines"/>), trims the text, and skips
/// lines that are empty or all whitespace. Any other bad line is a <see cref="DataException"/> naming file and line.</summary>
public static class Labeled
{
    /// <summary>Reads a UCI sentiment file (amazon/imdb/yelp layout).</summary>
    public static LabeledSet ReadUci(string path) => ParseUci(TextSource.ReadFile(path), path);

    /// <summary>Parses UCI sentiment text; <paramref name="file"/> names the source in errors and the set.</summary>
    public static LabeledSet ParseUci(string text, string file) => ParseTabbed(text, file, classes: 2, allowNames: false, oneTab: false);

    /// <summary>Reads an SST-2 file (<c>label SPACE sentence</c>).</summary>
    public static LabeledSet ReadSst2(string path) => ParseSst2(TextSource.ReadFile(path), path);

    /// <summary>Parses SST-2 text; <paramref name="file"/> names the source in errors and the set.</summary>
    public static LabeledSet ParseSst2(string text, string file)
    {
        const int classes = 2;
        var examples = new List<(string, int)>();
        foreach (var (number, line) in TextSource.Lines(text))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            int space = line.IndexOf(' ');
            if (space < 0)
                throw new DataException($"{file} line {number} has no space after the label; write SST-2 lines as 'LABEL sentence', such as '1 a gorgeous film'.", file, number);
            int label = ParseLabel(line[..space], classes, file, number);
            examples.Add((line[(space + 1)..].Trim(), label));
        }
        return Finish(file, examples, classes);
    }

    /// <summary>Reads a generic <c>text TAB label</c> file. With <paramref name="classes"/> null the number of
    /// classes is the largest label + 1 and labels must be non-negative.</summary>
    public static LabeledSet ReadTsv(string path, int? classes = null, IReadOnlyList<string>? names = null) => ParseTsv(TextSource.ReadFile(path), path, classes, names);

    /// <summary>Parses generic <c>text TAB label</c> text. Labels are class numbers, or names (every label a word that
    /// is not a number: <c>positive</c>, <c>negative</c>): then the classes are the names in ordinal order, or
    /// <paramref name="names"/>' order when given (a dev file read with its training file's names; a name it lacks is
    /// an error).</summary>
    public static LabeledSet ParseTsv(string text, string file, int? classes = null, IReadOnlyList<string>? names = null)
    {
        if (classes is < 1)
            throw new ArgumentOutOfRangeException(nameof(classes), classes, "A labelled set needs at least one class.");
        return ParseTabbed(text, file, classes, pairs: false, names);
    }

    /// <summary>Reads a sentence-pair file: <c>first text TAB second text TAB label</c> on every line (labels as in
    /// <see cref="ParseTsv"/>).</summary>
    public static LabeledSet ReadPairs(string path, IReadOnlyList<string>? names = null) => ParsePairs(TextSource.ReadFile(path), path, names);

    public static LabeledSet ParsePairs(string text, string file, IReadOnlyList<string>? names = null) => ParseTabbed(text, file, null, pairs: true, names);

    /// <summary>An embedded labelled set: the three UCI files and the two SST-2 splits.</summary>
    public static LabeledSet Load(DataFile file)
    {
        string text = DefaultData.ReadText(file);
        string name = DefaultData.FileName(file);
        return file switch
        {
            DataFile.UciAmazon or DataFile.UciImdb or DataFile.UciYelp => ParseUci(text, name),
            DataFile.Sst2Train or DataFile.Sst2Dev => ParseSst2(text, name),
            _ => throw new ArgumentException($"{file} is not a labelled set; use one of UciAmazon, UciImdb, UciYelp, Sst2Train, Sst2Dev.", nameof(file)),
        };
    }

    /// <summary>A fixed stratified split: within each class, a <see cref="Random"/>(<paramref name="seed"/>)
    /// shuffle picks <c>round(count × devFraction)</c> examples for dev (at least one while the class has two or
    /// more). Both halves keep the original order. The same set, fraction and seed always give the same split.</summary>
    public static (LabeledSet Train, LabeledSet Dev) Split(LabeledSet set, double devFraction, int seed)
    {
        if (!(devFraction > 0 && devFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(devFraction), devFraction, "The dev fraction must lie strictly between 0 and 1.");
        var rng = new Random(seed);
        var inDev = new bool[set.Examples.Count];
        for (int c = 0; c < set.Classes; c++)
        {
            var members = new List<int>();
            for (int i = 0; i < set.Examples.Count; i++)
                if (set.Examples[i].Label == c) members.Add(i);
            Shuffle(members, rng);
            int take = (int)Math.Round(members.Count * devFraction, MidpointRounding.AwayFromZero);
            if (take == 0 && members.Count >= 2) take = 1;
            if (take == members.Count && members.Count >= 2) take = members.Count - 1;
            for (int k = 0; k < take; k++) inDev[members[k]] = true;
        }
        var train = new List<(string, int)>();
        var dev = new List<(string, int)>();
        for (int i = 0; i < inDev.Length; i++) (inDev[i] ? dev : train).Add(set.Examples[i]);
        List<string>? Pairs(bool want) => set.Pairs is null ? null : Enumerable.Range(0, inDev.Length).Where(i => inDev[i] == want).Select(i => set.Pairs[i]).ToList();
        return (set with { Name = set.Name + "-train", Examples = train, Pairs = Pairs(false) }, set with { Name = set.Name + "-dev", Examples = dev, Pairs = Pairs(true) });
    }

    /// <summary>Fisher–Yates with the given generator; the one shuffle every reader here uses.</summary>
    internal static void Shuffle<T>(IList<T> items, Random rng)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <param name="oneTab">Refuse a tab inside the text (a user's file); the UCI files' texts may hold one (split at the last).</param>
    static LabeledSet ParseTabbed(string text, string file, int? classes, bool pairs = false, IReadOnlyList<string>? names = null, bool allowNames = true, bool oneTab = true)
    {
        var rows = new List<(int Number, string Text, string? Second, string Label)>();
        foreach (var (number, line) in TextSource.Lines(text))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            int tab = line.LastIndexOf('\t');
            if (tab < 0)
                throw new DataException(pairs
                    ? $"{file} line {number} has no tab; write each sentence pair as 'first text<TAB>second text<TAB>label'."
                    : $"{file} line {number} has no tab between the text and the label; write each example as 'text<TAB>label'.", file, number);
            string body = line[..tab], second = "";
            if (pairs)
            {
                int mid = body.IndexOf('\t');
                if (mid < 0 || body.IndexOf('\t', mid + 1) >= 0)
                    throw new DataException($"{file} line {number} has {line.Count(c => c == '\t') + 1} tab-separated fields, not 3; write each sentence pair as 'first text<TAB>second text<TAB>label'.", file, number);
                (body, second) = (body[..mid], body[(mid + 1)..].Trim());
            }
            else if (oneTab && body.Contains('\t'))
                throw new DataException($"{file} line {number} has {line.Count(c => c == '\t') + 1} tab-separated fields, not 2; write each example as 'text<TAB>label' (for two texts and a label, use --format pairs).", file, number);
            rows.Add((number, body.Trim(), pairs ? second : null, line[(tab + 1)..].Trim()));
        }
        if (rows.Count == 0)
            throw new DataException($"Data file '{file}' holds no examples, only blank lines; point to the file that holds the data.", file);
        // A header row ("sentence<TAB>label", as SST-2's and many exported files have): its label is a column name that no
        // other line repeats. Read as data it would become a class of its own (or, among class numbers, an error).
        if (rows.Count > 1 && IsHeaderLabel(rows[0].Label) && rows.Skip(1).All(r => r.Label != rows[0].Label))
            throw new DataException($"{file} line {rows[0].Number} looks like a header ('{rows[0].Text}<TAB>{rows[0].Label}'), not an example; delete that line, so that the file holds examples only.", file, rows[0].Number);

        // Class numbers, or names: a file whose labels are all words that are not numbers names its classes.
        static bool IsNumber(string s) => int.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _);
        bool named = allowNames && (names is not null || rows.All(r => !IsNumber(r.Label)));
        var examples = new List<(string, int)>();
        var seconds = pairs ? rows.Select(r => r.Second!).ToList() : null;
        if (!named)
        {
            int maxLabel = -1;
            foreach (var r in rows)
            {
                int label = ParseLabel(r.Label, classes, file, r.Number);
                maxLabel = Math.Max(maxLabel, label);
                examples.Add((r.Text, label));
            }
            return Finish(file, examples, classes ?? maxLabel + 1) with { Pairs = seconds };
        }
        var order = names ?? rows.Select(r => r.Label).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < order.Count; i++) ids[order[i]] = i;
        foreach (var r in rows)
        {
            if (!ids.TryGetValue(r.Label, out int label))
                throw new DataException(names is not null
                    ? $"{file} line {r.Number} has label '{r.Label}', which is not one of the classes it is read with ({string.Join(", ", order)}); fix the label or add examples of it to the training file."
                    : $"{file} line {r.Number} has label '{r.Label}' while others are names; give every line a class name (or every line a class number).", file, r.Number);
            examples.Add((r.Text, label));
        }
        if (classes is int c && order.Count > c)
            throw new DataException($"{file} names {order.Count} classes ({string.Join(", ", order)}) but the set has {c}; fix the labels.", file);
        return Finish(file, examples, Math.Max(classes ?? 0, order.Count)) with { LabelNames = order, Pairs = seconds };
    }

    /// <summary>Column names files put above their labels.</summary>
    static bool IsHeaderLabel(string label) => label.ToLowerInvariant() is "label" or "labels" or "class" or "category" or "sentiment"
        or "polarity" or "target" or "tag" or "y" or "gold_label" or "intent" or "topic";

    static int ParseLabel(string field, int? classes, string file, int number)
    {
        string s = field.Trim();
        string allowed = classes is int c ? $"a class number from 0 to {c - 1}" : "a class number of 0 or more";
        if (!int.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int label))
            throw new DataException(System.Numerics.BigInteger.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _)
                ? $"{file} line {number} has label {s}, far past any class; the label must be {allowed}."
                : $"{file} line {number} has label '{s}', which is not an integer; the label must be {allowed}.", file, number);
        if (label < 0 || label >= classes)
            throw new DataException($"{file} line {number} has label {label}, but the label must be {allowed}; fix the label (classes are numbered from 0, or named with words).", file, number);
        return label;
    }

    static LabeledSet Finish(string file, List<(string, int)> examples, int classes)
    {
        if (examples.Count == 0)
            throw new DataException($"Data file '{file}' holds no examples, only blank lines; point to the file that holds the data.", file);
        return new LabeledSet(Path.GetFileName(file), examples, classes);
    }
}
