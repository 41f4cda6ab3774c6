using System.Text;
using Bert.Data;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Data;

public class LabeledTests
{
    [Theory]
    [InlineData(DataFile.UciAmazon)]
    [InlineData(DataFile.UciImdb)]
    [InlineData(DataFile.UciYelp)]
    public void UciFilesHoldAThousandBalancedExamples(DataFile file)
    {
        var set = Labeled.Load(file);
        Assert.Equal(1000, set.Examples.Count);
        Assert.Equal(2, set.Classes);
        Assert.Equal([500, 500], set.LabelCounts());
        Assert.All(set.Examples, e => Assert.DoesNotContain('\t', e.Text));
    }

    [Fact]
    public void ImdbKeepsNelInsideItsLineAndQuotesAsText()
    {
        // SOURCES.md: lines 179 and 968 contain U+0085; line 19 opens a quote that closes on line 20. A reader
        // with quote handling would glue the two; here each line stays one example.
        var set = Labeled.Load(DataFile.UciImdb);
        Assert.Contains('\u0085', set.Examples[178].Text);
        Assert.Contains('\u0085', set.Examples[967].Text);
        Assert.Equal(2, set.Examples.Count(e => e.Text.Contains('\u0085')));
        Assert.EndsWith("faux \"masterpieces.", set.Examples[18].Text);
        Assert.StartsWith("\" The structure", set.Examples[19].Text);
    }

    [Theory]
    [InlineData(DataFile.Sst2Train, 6920, 3310, 3610)]
    [InlineData(DataFile.Sst2Dev, 872, 428, 444)]
    public void Sst2SplitsHaveTheirPublishedCounts(DataFile file, int total, int negative, int positive)
    {
        var set = Labeled.Load(file);
        Assert.Equal(total, set.Examples.Count);
        Assert.Equal([negative, positive], set.LabelCounts());
        Assert.DoesNotContain(set.Examples, e => e.Text.Length == 0 || e.Text[0] == ' ');
    }

    [Fact]
    public void UciSplitsOnTheLastTabAndTrimsCarriageReturns()
    {
        var set = Labeled.ParseUci("one\ttwo  \t1\r\nthree\t0\n\n  \nfour\u0085five\t1", "t.txt");
        Assert.Equal([("one\ttwo", 1), ("three", 0), ("four\u0085five", 1)], set.Examples);
        Assert.Equal("t.txt", set.Name);
    }

    [Fact]
    public void TsvInfersClassesOrChecksThem()
    {
        Assert.Equal(4, Labeled.ParseTsv("a\t0\nb\t3\n", "t.tsv").Classes);
        var e = Assert.Throws<DataException>(() => Labeled.ParseTsv("a\t0\nb\t3\n", "t.tsv", classes: 3));
        Assert.Equal(2, e.Line);
        Assert.Throws<DataException>(() => Labeled.ParseTsv("a\t-1\n", "t.tsv"));
    }

    /// <summary>Labels may be names: the classes are then the names in ordinal order (a dev file keeps its training
    /// file's ids), a name the training file lacks is an error, and a file mixing names and numbers is one.</summary>
    [Fact]
    public void TsvLabelsMayBeNames_ADevFileKeepsTheTrainingIds()
    {
        var train = Labeled.ParseTsv("great\tpositive\nawful\tnegative\nmeh\tneutral\nfine\tpositive\n", "t.tsv");
        Assert.Equal(["negative", "neutral", "positive"], train.LabelNames);
        Assert.Equal(3, train.Classes);
        Assert.Equal([("great", 2), ("awful", 0), ("meh", 1), ("fine", 2)], train.Examples);

        var dev = Labeled.ParseTsv("good\tpositive\n", "d.tsv", names: train.LabelNames);
        Assert.Equal([("good", 2)], dev.Examples);   // alone it would be class 0 of 1
        Assert.Equal(0, Labeled.ParseTsv("good\tpositive\n", "d.tsv").Examples[0].Label);

        var e = Assert.Throws<DataException>(() => Labeled.ParseTsv("ok\tmixed\n", "d.tsv", names: train.LabelNames));
        Assert.Equal("d.tsv line 1 has label 'mixed', which is not one of the classes it is read with (negative, neutral, positive); fix the label or add examples of it to the training file.", e.Message);
        e = Assert.Throws<DataException>(() => Labeled.ParseTsv("a\tpositive\nb\t1\n", "m.tsv"));
        Assert.Contains("m.tsv line 1 has label 'positive', which is not an integer", e.Message);
        // UCI files are numbered, always.
        Assert.Throws<DataException>(() => Labeled.ParseUci("a\tpositive\n", "u.txt"));
    }

    /// <summary>Sentence pairs: three fields on every line; a split keeps each second text with its first.</summary>
    [Fact]
    public void PairsHoldTheSecondTextBesideEachExample_AndSplitKeepsThemTogether()
    {
        var text = string.Join("\n", Enumerable.Range(0, 20).Select(i => $"premise {i}\thypothesis {i}\t{(i % 3 == 0 ? "entailment" : "contradiction")}"));
        var set = Labeled.ParsePairs(text, "p.tsv");
        Assert.Equal(["contradiction", "entailment"], set.LabelNames);
        Assert.Equal(("premise 3", 1), set.Examples[3]);
        Assert.Equal("hypothesis 3", set.Pair(3));
        var (train, dev) = Labeled.Split(set, 0.25, 13);
        foreach (var part in new[] { train, dev })
        {
            Assert.Equal(part.Examples.Count, part.Pairs!.Count);
            for (int i = 0; i < part.Examples.Count; i++) Assert.Equal(part.Examples[i].Text.Replace("premise", "hypothesis"), part.Pair(i));
        }
        var joined = train.Concat(dev);
        Assert.Equal(20, joined.Pairs!.Count);
        Assert.Equal(joined.Examples.Select(x => x.Text.Replace("premise", "hypothesis")), joined.Pairs);

        var e = Assert.Throws<DataException>(() => Labeled.ParsePairs("a\tb\t1\nonly one\t0\n", "p.tsv"));
        Assert.Equal("p.tsv line 2 has 2 tab-separated fields, not 3; write each sentence pair as 'first text<TAB>second text<TAB>label'.", e.Message);
        Assert.Null(Labeled.ParseTsv("a\t1\n", "t.tsv").Pairs);
    }

    [Fact]
    public void FilesOnDiskReadTheSameAsText()
    {
        string dir = TempDir.Create();
        try
        {
            string uci = Path.Combine(dir, "u.txt"), sst = Path.Combine(dir, "s.txt"), tsv = Path.Combine(dir, "t.tsv");
            File.WriteAllText(uci, "Good.  \t1\nBad.  \t0\n");
            File.WriteAllText(sst, "1 a gorgeous film\n0 a mess\n");
            File.WriteAllBytes(tsv, [0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes("ok\t2\n")]);
            Assert.Equal([("Good.", 1), ("Bad.", 0)], Labeled.ReadUci(uci).Examples);
            Assert.Equal([("a gorgeous film", 1), ("a mess", 0)], Labeled.ReadSst2(sst).Examples);
            var t = Labeled.ReadTsv(tsv);
            Assert.Equal([("ok", 2)], t.Examples); // the BOM is dropped
            Assert.Equal(3, t.Classes);
        }
        finally { TempDir.Delete(dir); }
    }

    /// <summary>Each bad file gives one DataException: one sentence (a single final period, no line breaks) that
    /// names the file and, for a bad line, its number.</summary>
    [Theory]
    [InlineData("missing", "missing.txt", 0, "does not exist")]
    [InlineData("empty", "empty.txt", 0, "is empty")]
    [InlineData("blank", "blank.txt", 0, "no examples")]
    [InlineData("latin1", "latin1.txt", 2, "not valid UTF-8")]
    [InlineData("notab", "notab.txt", 2, "no tab")]
    [InlineData("notint", "notint.txt", 3, "not an integer")]
    [InlineData("range", "range.txt", 1, "must be a class number from 0 to 1")]
    [InlineData("sstspace", "sstspace.txt", 2, "no space")]
    [InlineData("sstlabel", "sstlabel.txt", 1, "not an integer")]
    [InlineData("huge", "huge.txt", 2, "has label 99999999999, far past any class")]
    public void BadFilesAreOneClearSentence(string kind, string name, int line, string says)
    {
        string dir = TempDir.Create();
        try
        {
            string path = Path.Combine(dir, name);
            byte[]? bytes = kind switch
            {
                "missing" => null,
                "empty" => [],
                "blank" => Encoding.UTF8.GetBytes("\n  \n"),
                "latin1" => [.. Encoding.UTF8.GetBytes("ok\t1\ncaf"), 0xE9, .. Encoding.UTF8.GetBytes("\t0\n")],
                "notab" => Encoding.UTF8.GetBytes("ok\t1\nno tab here 0\n"),
                "notint" => Encoding.UTF8.GetBytes("a\t1\nb\t0\nc\tpositive\n"),
                "range" => Encoding.UTF8.GetBytes("a\t2\n"),
                "sstspace" => Encoding.UTF8.GetBytes("1 fine\n0\n"),
                "sstlabel" => Encoding.UTF8.GetBytes("good fine\n"),
                "huge" => Encoding.UTF8.GetBytes("a\t1\nb\t99999999999\n"),
                _ => throw new ArgumentException(kind),
            };
            if (bytes is not null) File.WriteAllBytes(path, bytes);
            var e = Assert.Throws<DataException>(() => kind.StartsWith("sst") ? Labeled.ReadSst2(path) : Labeled.ReadUci(path));
            Assert.Contains(says, e.Message);
            Assert.Contains(name, e.Message);
            Assert.Equal(line, e.Line);
            if (line > 0) Assert.Contains($"line {line}", e.Message);
            Assert.DoesNotContain('\n', e.Message);
            Assert.EndsWith(".", e.Message);
            Assert.DoesNotContain(". ", e.Message); // one sentence
        }
        finally { TempDir.Delete(dir); }
    }

    [Property(MaxTest = 100)]
    public Property SplitIsAStratifiedDeterministicPartition(int seed, byte size, byte classesByte, byte percent)
    {
        int classes = 1 + classesByte % 4;
        double fraction = (1 + percent % 98) / 100.0;
        var rng = new Random(seed);
        var examples = Enumerable.Range(0, size).Select(i => ($"text {i}", rng.Next(classes))).ToList();
        var set = new LabeledSet("s", examples, classes);

        var (train, dev) = Labeled.Split(set, fraction, seed);
        var again = Labeled.Split(set, fraction, seed);
        var merged = train.Examples.Concat(dev.Examples).OrderBy(e => int.Parse(e.Text[5..])).ToList();
        var prop = (train.Examples.SequenceEqual(again.Train.Examples) && dev.Examples.SequenceEqual(again.Dev.Examples)).Label("deterministic")
            .And(merged.SequenceEqual(examples).Label("train and dev partition the set"))
            .And((train.Classes == classes && dev.Classes == classes).Label("classes kept"));
        var all = set.LabelCounts();
        var inDev = dev.LabelCounts();
        for (int c = 0; c < classes; c++)
        {
            int expected = (int)Math.Round(all[c] * fraction, MidpointRounding.AwayFromZero);
            if (all[c] >= 2) expected = Math.Clamp(expected, 1, all[c] - 1);
            prop = prop.And((inDev[c] == expected).Label($"class {c}: {inDev[c]} of {all[c]} in dev, expected {expected}"));
        }
        return prop;
    }

    [Fact]
    public void SplitOfAUciSetIsStratified()
    {
        var (train, dev) = Labeled.Split(Labeled.Load(DataFile.UciYelp), 0.1, seed: 1);
        Assert.Equal([450, 450], train.LabelCounts());
        Assert.Equal([50, 50], dev.LabelCounts());
        Assert.Equal("yelp_labelled.txt-dev", dev.Name);
        var (_, otherDev) = Labeled.Split(Labeled.Load(DataFile.UciYelp), 0.1, seed: 2);
        Assert.NotEqual(dev.Examples, otherDev.Examples);
    }
}
