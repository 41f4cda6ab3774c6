using Bert.Data;

namespace Bert.Cli;

/// <summary>Named labeled sets and pre-training corpora: the embedded defaults, or files.</summary>
public static class DataSets
{
    public static readonly string[] Named = ["amazon", "imdb", "yelp", "sst2"];
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
        }
        if (!File.Exists(spec))
            throw new ArgumentException($"'{spec}' is neither a data set ({string.Join(", ", Named)}) nor a file; give one of those names or the path of a text<TAB>label file.");
        LabeledSet Read(string path) => format switch
        {
            "tsv" => Labeled.ReadTsv(path),
            "sst2" => Labeled.ReadSst2(path),
            _ => throw new ArgumentException($"Unknown --format '{format}'; use tsv (text<TAB>label) or sst2 (label first)."),
        };
        var set = Read(spec);
        if (devFile is not null)
        {
            var dev = Read(devFile);
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

    /// <summary>Documents of the pre-training corpus: the embedded Tiny Shakespeare and WikiText-2, or the given
    /// files (documents separated by blank lines).</summary>
    public static (List<List<string>> Documents, string How) Corpus(IReadOnlyList<string>? files)
    {
        if (files is null || files.Count == 0)
        {
            var docs = Pretraining.ShakespeareDocuments(DefaultData.ReadText(DataFile.TinyShakespeare))
                .Concat(Pretraining.WikiTextDocuments(DefaultData.ReadText(DataFile.WikiText2RawTest))).ToList();
            return (docs, "embedded Tiny Shakespeare + WikiText-2 (raw test)");
        }
        var all = new List<List<string>>();
        foreach (var f in files)
        {
            if (!File.Exists(f)) throw new ArgumentException($"Corpus file '{f}' does not exist; check the path.");
            var docs = Pretraining.ParagraphDocuments(TextSource.ReadFile(f));
            if (docs.Count == 0) throw new ArgumentException($"Corpus file '{f}' has no text; give a file of plain text with blank lines between documents.");
            all.AddRange(docs);
        }
        return (all, string.Join(", ", files.Select(Path.GetFileName)));
    }
}
