using System.Text.RegularExpressions;
using Xunit;

namespace Bert.Tests.Cli;

/// <summary>`bert demo` end to end at the smallest size and budget: the pipeline runs, the table has a row per set
/// with both arms, and the pre-trained checkpoint carries its tokenizer. (The claim itself needs the real budget;
/// its measured table is in the README.)</summary>
[Collection("Console")]
public class DemoTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("bert-demo-test-").FullName;
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>Checks each set's table row and returns its two accuracies (%), from scratch and pre-trained.</summary>
    static Dictionary<string, (double Scratch, double Pretrained)> AssertTable(string output, params string[] sets)
    {
        var cells = new Dictionary<string, (double, double)>();
        foreach (var set in sets)
        {
            // a row: set, train, dev, two accuracies (with their spread when there are several runs), and the gain
            var row = Regex.Match(output, $@"│\s*{Regex.Escape(set)}\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*([\d.]+) %(?:\s*± [\d.]+)?\s*│\s*([\d.]+) %(?:\s*± [\d.]+)?\s*│\s*([+-][\d.]+) pts");
            Assert.True(row.Success, $"no table row for {set} in:\n{output}");
            double scratch = double.Parse(row.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture);
            double pre = double.Parse(row.Groups[4].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(scratch, 0, 100); Assert.InRange(pre, 0, 100);
            Assert.Equal(Math.Round(pre - scratch, 1), double.Parse(row.Groups[5].Value, System.Globalization.CultureInfo.InvariantCulture), 1);
            cells[set] = (scratch, pre);
        }
        Assert.Matches(@"Pre-trained beats from scratch on \d of " + sets.Length + " sets", output);
        return cells;
    }

    [Fact]
    public void English_demo_runs_both_arms_and_prints_the_table()
    {
        var (code, output, err) = CliTests.Run("demo", "--size", "nano", "--pretrain-steps", "4", "--epochs", "1", "--runs", "2",
            "--sets", "amazon", "--out", _dir);
        Assert.True(code == 0, err + output);
        var amazon = AssertTable(output, "amazon")["amazon"];
        Assert.Contains("run 2 of 2", output);
        // Each run's best dev accuracy is printed, and the table's cell is their mean.
        foreach (var (arm, cell) in new[] { ("from scratch", amazon.Scratch), ("pre-trained", amazon.Pretrained) })
        {
            var runs = Regex.Matches(output, $@"amazon {arm} run \d+: best dev accuracy ([\d.]+) %").Select(m => double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
            Assert.Equal(2, runs.Count);
            Assert.Equal(runs.Average(), cell, 0.11);
        }
        Assert.Contains("masked LM only, 15 % of tokens predicted, output bias from token frequencies", output);   // the defaults
        Assert.DoesNotContain("NSP accuracy", output);
        Assert.Contains("the pre-trained arm starts attention afresh", output);                                    // --reinit's default
        Assert.True(File.Exists(Path.Combine(_dir, "pretrained", "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(_dir, "pretrained", "vocab.txt")));

        // Again into the same folder: the finished pre-training is resumed, not redone, and the table comes out.
        var (again, output2, err2) = CliTests.Run("demo", "--size", "nano", "--pretrain-steps", "4", "--epochs", "1", "--runs", "1",
            "--sets", "amazon", "--reinit", "none", "--out", _dir);
        Assert.True(again == 0, err2 + output2);
        Assert.DoesNotContain("afresh", output2);                                                                    // the whole encoder transferred
        Assert.Contains("Resuming pre-training from step 4", output2);
        Assert.Matches(@"held-out MLM accuracy [\d.]+ %", output2);
    }

    [Fact]
    public void Portuguese_demo_builds_its_vocabulary_and_fine_tunes_three_classes()
    {
        var (code, output, err) = CliTests.Run("demo", "--lang", "pt", "--size", "nano", "--pretrain-steps", "3", "--epochs", "1", "--runs", "2",
            "--out", _dir);
        Assert.True(code == 0, err + output);
        Assert.Contains("accent-keeping WordPiece vocabulary", output);
        Assert.Contains("pt-tweets: ", output);
        Assert.Contains("3 classes", output);
        AssertTable(output, "pt-reviews", "pt-tweets");
        var vocab = File.ReadAllLines(Path.Combine(_dir, "pretrained", "vocab.txt"));
        Assert.Contains("é", vocab);                       // accents kept
        Assert.Contains(vocab, v => v.Length > 0 && char.IsUpper(v[0]));   // case kept
    }

    [Fact]
    public void BertsOwnObjective_trains_and_reports_next_sentence_accuracy()
    {
        var (code, output, err) = CliTests.Run("demo", "--size", "nano", "--pretrain-steps", "3", "--epochs", "1", "--runs", "1",
            "--sets", "amazon", "--objective", "mlm+nsp", "--output-bias", "zeros", "--out", _dir);
        Assert.True(code == 0, err + output);
        Assert.Contains("masked LM + next sentence", output);
        Assert.DoesNotContain("output bias from token frequencies", output);
        Assert.Matches(@"NSP accuracy [\d.]+ %", output);
        AssertTable(output, "amazon");
    }

    [Theory]
    [InlineData("--objective", "nsp")]
    [InlineData("--output-bias", "random")]
    [InlineData("--mask-prob", "0")]
    [InlineData("--reinit", "attn")]
    public void Bad_pretraining_setting_is_refused_before_anything_is_written(string option, string value)
    {
        var (code, output, err) = CliTests.Run("demo", "--size", "nano", option, value, "--out", _dir);
        Assert.NotEqual(0, code);
        Assert.Contains(option, err + output);
        Assert.False(Directory.EnumerateFileSystemEntries(_dir).Any(), "nothing is written before the inputs are checked");
    }

    [Fact]
    public void Unknown_set_for_the_language_is_one_clear_error()
    {
        var (code, _, err) = CliTests.Run("demo", "--lang", "pt", "--sets", "amazon", "--size", "nano", "--out", _dir);
        Assert.NotEqual(0, code);
        Assert.Contains("Unknown set 'amazon'", err);
        Assert.False(Directory.EnumerateFileSystemEntries(_dir).Any(), "nothing is written before the inputs are checked");
    }
}
