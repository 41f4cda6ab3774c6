using System.Globalization;
using Bert.Training;
using Spectre.Console;

namespace Bert.Cli;

/// <summary>Shows training progress: a live Spectre.Console display on a terminal, one plain line every few
/// steps when the output goes to a file or a pipe.</summary>
public static class Reporter
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>A console over whatever Console.Out is now (so redirected output is captured too).</summary>
    static IAnsiConsole Out => AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });

    public static bool Interactive => !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    public static string Line(StepReport r) =>
        string.Create(Inv, $"step {r.Step}/{r.TotalSteps}  loss {r.Loss:F4}  ") +
        string.Join("  ", r.Metrics.Select(kv => string.Create(Inv, $"{kv.Key} {kv.Value:P1}"))) +
        string.Create(Inv, $"  lr {r.Lr:E2}  {r.TokensPerSecond:F0} tok/s  {r.Elapsed:mm\\:ss} elapsed  ETA {r.Eta:mm\\:ss}");

    /// <summary>Runs a training loop with progress shown under a title; with <paramref name="evaluation"/>, a line for each
    /// evaluation (its step, the report, whether it is the best so far) above the progress.</summary>
    public static void Run(string title, TrainLoop loop, CancellationToken cancel, int plainEvery = 0, Func<long, EvalReport, bool, string>? evaluation = null)
    {
        if (!Interactive)
        {
            int every = plainEvery > 0 ? plainEvery : (int)Math.Max(1, loop.TotalSteps / 20);
            Console.WriteLine(title);
            if (evaluation is not null) loop.Evaluated = (step, e, best) => Console.WriteLine("  " + evaluation(step, e, best));
            loop.Run(r => { if (r.Step % every == 0 || r.Step == r.TotalSteps) Console.WriteLine("  " + Line(r)); }, cancel);
            return;
        }
        var console = Out;
        if (evaluation is not null) loop.Evaluated = (step, e, best) => console.WriteLine(evaluation(step, e, best));   // drawn above the live progress
        console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: loop.TotalSteps);
                task.Value = loop.Step;
                loop.Run(r =>
                {
                    task.Value = r.Step;
                    task.Description = Markup.Escape(title + "  " + Line(r));
                }, cancel);
            });
    }

    [ThreadStatic] static System.Diagnostics.Stopwatch? _lastPlain;   // per thread: each run reports from its own

    /// <summary>A one-line status on a terminal's standard error, rewritten in place (reading a large corpus); null clears
    /// it (and ends the status). When standard error is not a terminal, the line is written as it is every 30 s at most,
    /// counted from the first status, so a log holds a few lines of a long read and none of a short one.</summary>
    public static void Progress(string? line)
    {
        if (Console.IsErrorRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            // A log gets a plain line every half minute, so that a long read is not silence.
            if (line is null) { _lastPlain = null; return; }
            _lastPlain ??= System.Diagnostics.Stopwatch.StartNew();
            if (_lastPlain.Elapsed.TotalSeconds < 30) return;
            Console.Error.WriteLine(line);
            _lastPlain.Restart();
            return;
        }
        int width = Math.Max(20, Console.BufferWidth - 1);
        string text = line is null ? "" : line.Length > width ? line[..width] : line;
        Console.Error.Write("\r" + text.PadRight(width) + (line is null ? "\r" : ""));
    }

    public static void Table(string title, string[] headers, IEnumerable<string[]> rows)
    {
        var t = new Table().Title(Markup.Escape(title)).Border(TableBorder.Rounded);
        foreach (var h in headers) t.AddColumn(Markup.Escape(h));
        foreach (var r in rows) t.AddRow(r.Select(Markup.Escape).ToArray());
        Out.Write(t);
    }
}
