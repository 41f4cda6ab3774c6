using Bert.Data;

namespace Bert.Cli;

/// <summary>Named labeled sets and pre-training corpora: the embedded defaults, or files.</summary>
public static class DataSets
{
    /// <summary>The English sets (the demo's default).</summary>
    public static readonly string[] Named = ["amazon", "imdb", "yelp", "sst2"];

    /// <summary>The Portuguese sets: Amazon Brasil book reviews (2 classes, fixed stratified split) and
    /// TweetSentBR tweets (3 classes, train → val).</summary>
    public static readonly string[] NamedPortuguese = ["pt-reviews", "pt-tweets"];

    /// <summary>Embedded pre-training corpora by name: the Portuguese novels, and the default English corpus (Tiny
    /// Shakespeare + WikiText-2), named so that it can be listed with others.</summary>
    public static readonly string[] NamedCorpora = ["machado", "english"];

    internal static IEnumerable<string> AllNamed => Named.Concat(NamedPortuguese);
    public const int SplitSeed = 13;
    public const double DevFraction = 0.2;

    /// <summary>Train and dev sets for a name or a file, with a sentence saying where the dev set came from.</summary>
    public static (LabeledSet Train, LabeledSet Dev, string How) Load(string spec, string? devFile = null, string format = "tsv")
    {
        switch (spec.ToLowerInvariant())
        {
            case "amazon": return Split(Labeled.Load(DataFile.UciAmazon));
            case "imdb": return Split(Labeled.Load(DataFile.UciImdb));
            case "yelp": return Split(Labeled.Load(DataFile.UciYelp));
            case "sst2": return (Labeled.Load(DataFile.Sst2Train), Labeled.Load(DataFile.Sst2Dev), "SST-2 train → dev");
            case "pt-reviews": return Split(Portuguese.BookReviews().Set);
            case "pt-tweets":
                var (train, val) = Portuguese.Tweets();
                return (train, val, "TweetSentBR (UMSAB) train → val");
        }
        if (!File.Exists(spec))
            throw new ArgumentException($"'{spec}' is neither a data set ({string.Join(", ", AllNamed)}) nor a file; give one of those names or the path of a text<TAB>label file.");
        LabeledSet Read(string path, IReadOnlyList<string>? names) => format switch
        {
            "tsv" => Labeled.ReadTsv(path, names: names),
            "pairs" => Labeled.ReadPairs(path, names),
            "sst2" => Labeled.ReadSst2(path),
            _ => throw new ArgumentException($"Unknown --format '{format}'; use tsv (text<TAB>label), pairs (text<TAB>text<TAB>label) or sst2 (label first)."),
        };
        var set = Read(spec, null);
        if (devFile is not null)
        {
            var dev = Read(devFile, set.LabelNames);   // named classes keep the training file's ids
            if (set.LabelNames is null && dev.LabelNames is not null)
                throw new DataException($"{devFile} names its classes ({string.Join(", ", dev.LabelNames)}) but {spec} numbers them; label both files the same way.", devFile);
            if (dev.Classes > set.Classes) set = set with { Classes = dev.Classes };
            return (set, dev with { Classes = set.Classes }, $"{Path.GetFileName(spec)} → {Path.GetFileName(devFile)}");
        }
        return Split(set);
    }

    static (LabeledSet, LabeledSet, string) Split(LabeledSet set)
    {
        var (train, dev) = Labeled.Split(set, DevFraction, SplitSeed);
        return (train, dev, $"fixed stratified split of {set.Name}: {train.Examples.Count} train / {dev.Examples.Count} dev (seed {SplitSeed})");
    }

    /// <summary>Whether a corpus spec is an embedded corpus or labeled set by name: a name wins over a file or folder of
    /// that name in the working directory.</summary>
    public static bool IsNamedCorpus(string spec) => NamedCorpora.Concat(AllNamed).Contains(spec.ToLowerInvariant());

    /// <summary>The endings a corpus folder's files may have, in any case (<see cref="ExpandFolders"/>): text, and JSON
    /// lines (<see cref="TextSource.IsJsonLines"/>), either gzipped. A bare <c>.json</c> is left out: a folder that holds a
    /// data set often has its metadata in one.</summary>
    public static readonly string[] CorpusFileEndings = [".txt", ".txt.gz", ".jsonl", ".jsonl.gz", ".json.gz"];

    /// <summary>The corpus specs with each folder (that is not a name, <see cref="IsNamedCorpus"/>) replaced by its corpus
    /// files (<see cref="CorpusFileEndings"/>; not those of its subfolders, nor hidden ones), in ordinal order of their
    /// names: a corpus kept as shards. A folder without one, or with an empty one, is refused in one sentence before
    /// anything is read.</summary>
    public static List<string> ExpandFolders(IReadOnlyList<string> specs)
    {
        var files = new List<string>();
        foreach (var f in specs)
        {
            if (IsNamedCorpus(f) || !Directory.Exists(f)) { files.Add(f); continue; }
            var inside = Directory.EnumerateFiles(f, "*", SearchOption.TopDirectoryOnly)
                .Where(p => !Path.GetFileName(p).StartsWith('.') && CorpusFileEndings.Any(e => p.EndsWith(e, StringComparison.OrdinalIgnoreCase)))
                .Order(StringComparer.Ordinal).ToList();
            if (inside.Count == 0)
                throw new ArgumentException($"Corpus folder '{f}' holds no corpus files; put the corpus there as text (*.txt) or JSON lines (*.jsonl), either maybe gzipped (.gz), or name the files themselves.");
            if (inside.FirstOrDefault(p => new FileInfo(p).Length == 0) is { } empty)
                throw new ArgumentException($"Corpus file '{empty}' is empty; delete it or fill it, so that the folder holds only the corpus.");
            files.AddRange(inside);
        }
        return files;
    }

    /// <summary>Documents of the pre-training corpus, all in memory; see <see cref="CorpusDocuments"/>.</summary>
    public static (List<List<string>> Documents, string How) Corpus(IReadOnlyList<string>? specs)
    {
        var (docs, how, _) = CorpusDocuments(specs);
        return (docs.Select(d => d as List<string> ?? d.ToList()).ToList(), how);
    }

    /// <summary>Documents of the pre-training corpus, read as they are enumerated (a file a line at a time, so a corpus
    /// may be larger than memory): the embedded Tiny Shakespeare and WikiText-2 when <paramref name="specs"/> is empty;
    /// otherwise, for each spec, the embedded corpus of that name (<c>machado</c>: the novels of Machado de Assis, a
    /// document per chapter), the training texts of a named labeled set without their labels (documents of 8 texts; dev
    /// texts are never used), a text file (documents separated by blank lines), or a folder of them (its <c>*.txt</c>
    /// files, <see cref="ExpandFolders"/>). Every spec is checked before the first document comes; a file without text
    /// throws when it has been read. <c>Sources</c> are what will be read, in order: the names, and the files with each
    /// folder's listed once, here (a shard added later is not read).</summary>
    public static (IEnumerable<IReadOnlyList<string>> Documents, string How, IReadOnlyList<string> Sources) CorpusDocuments(IReadOnlyList<string>? specs)
    {
        static IEnumerable<IReadOnlyList<string>> English() => Pretraining.ShakespeareDocuments(DefaultData.ReadText(DataFile.TinyShakespeare))
            .Concat(Pretraining.WikiTextDocuments(DefaultData.ReadText(DataFile.WikiText2RawTest)));
        const string EnglishHow = "embedded Tiny Shakespeare + WikiText-2 (raw test)";
        if (specs is null || specs.Count == 0) return (English(), EnglishHow, ["english"]);
        var parts = new List<Func<IEnumerable<IReadOnlyList<string>>>>();
        var how = new List<string>();
        var sources = new List<string>();
        foreach (var f in specs)
        {
            if (IsNamedCorpus(f)) sources.Add(f);
            if (f.Equals("english", StringComparison.OrdinalIgnoreCase))
            {
                parts.Add(English);
                how.Add(EnglishHow);
                continue;
            }
            if (f.Equals("machado", StringComparison.OrdinalIgnoreCase))
            {
                parts.Add(Portuguese.MachadoDocuments);
                how.Add("the ten novels of Machado de Assis (embedded)");
                continue;
            }
            if (AllNamed.Contains(f.ToLowerInvariant()))
            {
                parts.Add(() => Load(f).Train.Examples.Select(e => e.Text).Chunk(8).Select(c => (IReadOnlyList<string>)c.ToList()));
                how.Add($"the unlabeled training texts of {f}");
                continue;
            }
            if (Directory.Exists(f))
            {
                var files = ExpandFolders([f]);
                sources.AddRange(files);
                parts.Add(() => FileDocuments(files, $"Corpus folder '{f}' has no text in its files; give files of plain text with blank lines between documents, or JSON lines with a \"text\" in each."));
                string kind = files.All(x => x.EndsWith(".txt", StringComparison.OrdinalIgnoreCase)) ? ".txt file" : "corpus file";
                how.Add($"{Path.TrimEndingDirectorySeparator(f)}/ ({files.Count} {kind}{(files.Count == 1 ? "" : "s")})");
                continue;
            }
            if (!File.Exists(f)) throw NoSuchCorpus(f);
            sources.Add(f);
            parts.Add(() => FileDocuments([f], TextSource.IsJsonLines(f) ? $"Corpus file '{f}' has no text in its records; give JSON lines with a document in each \"text\"."
                : $"Corpus file '{f}' has no text; give a file of plain text with blank lines between documents."));
            how.Add(Path.GetFileName(f));
        }
        return (parts.SelectMany(p => p()), string.Join(", ", how), sources);

        // The documents of text files read in turn; none at all is the sentence given. (A shard of blank lines is no
        // mistake within a folder, so a folder is checked as a whole.)
        static IEnumerable<IReadOnlyList<string>> FileDocuments(IEnumerable<string> files, string noText)
        {
            int n = 0;
            foreach (var doc in files.SelectMany(f => TextSource.IsJsonLines(f) ? Pretraining.RecordDocuments(TextSource.JsonTexts(f).Select(r => r.Text))
                         : Pretraining.ParagraphDocuments(TextSource.ReadLines(f).Select(l => l.Line))))
            {
                n++;
                yield return doc;
            }
            if (n == 0) throw new ArgumentException(noText);
        }
    }

    static ArgumentException NoSuchCorpus(string spec) =>
        new($"Corpus file '{spec}' does not exist and is not a named corpus ({string.Join(", ", NamedCorpora.Concat(AllNamed))}); check the path.");

    /// <summary>Lines to learn a vocabulary from: for a named corpus or labeled set, the sentences or training
    /// texts of <see cref="Corpus"/>; for a file, its lines as they are (a JSON-lines file: its records' texts), read as
    /// they are enumerated (a file of any size). Every spec is checked before the first line comes.</summary>
    public static IEnumerable<string> VocabLines(IReadOnlyList<string> specs)
    {
        specs = ExpandFolders(specs);
        foreach (var f in specs)
            if (!IsNamedCorpus(f) && !File.Exists(f)) throw NoSuchCorpus(f);
        return specs.SelectMany(f => IsNamedCorpus(f)
            ? CorpusDocuments([f]).Documents.SelectMany(d => d)
            : TextSource.IsJsonLines(f) ? TextSource.JsonTexts(f).Select(r => r.Text) : TextSource.ReadLines(f).Select(l => l.Line));
    }
}
