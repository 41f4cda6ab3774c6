using System.CommandLine;
using Bert.Data;
using Bert.Models;
using Bert.Runtime;
using Bert.Training;

namespace Bert.Cli;

/// <summary>`bert run`: the experiments declared in this project (<c>[Experiment]</c> classes, Experiments/Declared.cs), each
/// run as `bert pretrain` or `bert finetune` runs it, after the experiment it starts from when that one's folder holds no
/// finished run.</summary>
public static partial class Program
{
    /// <summary>The declared experiments, in name order.</summary>
    public static IReadOnlyList<ExperimentInfo> Experiments => Bert.Generated.DeclaredExperiments.All;

    /// <summary>The experiment of that name (any case); an unknown one is one sentence naming them.</summary>
    public static ExperimentInfo Experiment(string name) =>
        Experiments.FirstOrDefault(e => e.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"There is no experiment named '{name}'; declared: {string.Join(", ", Experiments.Select(e => e.Name))} (`bert run --list` describes them).");

    static Command RunCommand(CancellationToken cancel)
    {
        var run = new Command("run", "Run an experiment declared in code ([Experiment] classes, checked at build time), after the one it starts from.");
        var name = new Argument<string?>("experiment") { Description = "the experiment's name (see --list)", Arity = ArgumentArity.ZeroOrOne };
        var list = Opt("--list", "list the declared experiments with their memory estimates", false);
        var root = Opt("--out", "folder that holds a folder per experiment", "runs");
        var device = new Option<string?>("--device") { Description = "cpu or cuda instead of the declared device (the build-time memory check was for the declared one)" };
        device.AcceptOnlyFromAmong("cpu", "cuda");
        run.Arguments.Add(name);
        foreach (var o in new Option[] { list, root, device }) run.Options.Add(o);
        run.SetAction(pr =>
        {
            if (pr.GetValue(list))
            {
                foreach (var e in Experiments) Console.WriteLine(e);
                return 0;
            }
            if (pr.GetValue(name) is null)
            {
                Console.Error.WriteLine($"Name the experiment to run: bert run NAME, one of {string.Join(", ", Experiments.Select(e => e.Name))} (`bert run --list` describes them).");
                return 2;
            }
            var experiment = Experiment(pr.GetValue(name)!);
            CheckDevices(experiment, pr.GetValue(device));
            RequireWritableFolder(pr.GetValue(root)!, "--out");
            return RunExperiment(experiment, pr.GetValue(root)!, pr.GetValue(device), cancel);
        });
        return run;
    }

    /// <summary>"cpu", or "cuda-" and the declared precision (and "-flash" for a declared flash attention), for the declared
    /// device or the one asked for instead.</summary>
    static string DeviceOf(ExperimentInfo e, string? asked) =>
        (asked ?? (e.Device == Bert.Dsl.Device.Cpu ? "cpu" : "cuda")) == "cpu" ? "cpu"
            : "cuda-" + e.Precision.ToString().ToLowerInvariant() + (e.Attention == Bert.Dsl.AttentionKernel.Flash ? "-flash" : "");

    /// <summary>The experiment and those it starts from, nearest first (a chain that leads back is BERT0220 at build time;
    /// this stops at a repeat all the same).</summary>
    static List<ExperimentInfo> Chain(ExperimentInfo e)
    {
        var chain = new List<ExperimentInfo> { e };
        while (chain[^1].From is { } from && Experiments.FirstOrDefault(x => x.Name == from) is { } next && !chain.Contains(next)) chain.Add(next);
        return chain;
    }

    /// <summary>Before anything runs: a GPU for every experiment of the chain that runs on one (else one sentence naming
    /// the missing library and how to run here), and a warning for a step the build-time estimate says exceeds it.</summary>
    static void CheckDevices(ExperimentInfo e, string? device)
    {
        var onGpu = Chain(e).Where(x => DeviceOf(x, device) != "cpu").ToList();
        if (onGpu.Count == 0) return;
        if (!Bert.Runtime.Cuda.CudaDevice.TryOpen(out var gpu, out string why))
            throw new ArgumentException($"{why.TrimEnd('.')}; or run {string.Join(" and ", onGpu.Select(x => x.Name))} on this machine's CPU with --device cpu.");
        using (gpu)
        {
            long room = (long)gpu!.TotalMemory - MemoryEstimate.GpuReserve;
            foreach (var x in onGpu)
            {
                var need = MemoryEstimate.For(x.Info(), x.Batch, x.Seq, x.Rows, Bert.Dsl.Device.H100, x.Precision, x.Job, flash: x.Attention == Bert.Dsl.AttentionKernel.Flash && gpu.ComputeCapabilityMajor >= 8);   // below 8.0 the flash kernels do not run
                if (need.Total > room)
                    Console.Error.WriteLine($"warning: {x.Name} needs about {MemoryEstimate.Format(need.Total)} per step by the build-time estimate, more than {gpu.Name}'s {MemoryEstimate.Format(room)} (its memory less 1 GiB); it may run out of memory: declare a smaller Batch with Accumulate.");
            }
        }
    }

    /// <remarks>A chain of starts that leads back to itself does not build (BERT0220), so the recursion ends.</remarks>
    static int RunExperiment(ExperimentInfo e, string root, string? device, CancellationToken cancel)
    {
        string? fromDir = null;
        if (e.From is { } fromName)
        {
            var from = Experiment(fromName);
            fromDir = Path.Combine(root, from.Name);
            // A pre-training run counts as finished at the declared number of steps (one of another length is continued or
            // restarted by pretrain's own resume); a fine-tuning run's steps depend on its data, so any finished one counts.
            if (TrainLoop.Finished(fromDir, from.Model, from.Job == Bert.Dsl.Job.Pretrain ? from.Steps : (long?)null, from.Declaration))
                Console.WriteLine($"{e.Name} starts from {from.Name}: reusing its finished run in {fromDir}.");
            else
            {
                string missing = from.Job == Bert.Dsl.Job.Pretrain ? $"no finished run of {from.Steps} steps" : "no finished run";
                Console.WriteLine($"{e.Name} starts from {from.Name}, which has {missing} in {fromDir}: running it first.");
                int code = RunExperiment(from, root, device, cancel);
                if (code != 0) return code;
            }
        }
        string dir = Path.Combine(root, e.Name);
        Console.WriteLine("Experiment " + e);
        string declared = DeviceOf(e, null), actual = DeviceOf(e, device);
        if (actual != declared)
            Console.WriteLine(actual == "cpu"
                ? $"Running on the CPU (fp32 products) instead of the declared {e.Device} ({e.Precision}); the estimate above is the declared device's."
                : $"Running on the GPU ({e.Precision} products) instead of the declared CPU; the estimate above is the CPU's.");
        var entry = Catalog.Of(e);
        var train = new TrainOptions
        {
            BatchSize = e.Batch, Accumulate = e.Accumulate, LearningRate = e.LearningRate, WarmupFraction = e.Warmup, Seed = (ulong)e.Seed,
            Optimizer = e.Optimizer == Bert.Dsl.Optimizer.Lamb ? "lamb" : "adamw",
        };
        if (e.Job == Bert.Dsl.Job.Pretrain)
        {
            var corpus = e.Data.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var data = new PretrainingOptions { MaxSeqLength = e.Seq, NextSentence = e.NextSentence, MaskedLmProb = e.MaskProb, MaxPredictionsPerSeq = MaxPredictions(e.Seq, e.MaskProb) };
            return Pretrain(DeviceOf(e, device), corpus.Length == 0 ? null : corpus, entry, null, dir, data, train, e.Steps, e.FrequencyBias, cancel, e.Declaration);
        }
        string format = entry.Head == "token-classifier" ? "conll" : entry.Head == QaHead ? "squad" : "tsv";
        // Seeds Seed, Seed + 1, …: one run in the experiment's folder, several each in a folder of its own, then each best
        // dev score and their mean ± sd.
        var scores = new List<double>();
        for (int run = 0; run < e.Runs; run++)
        {
            string runDir = e.Runs == 1 ? dir : Path.Combine(dir, $"run-{run + 1}");
            if (e.Runs > 1) Console.WriteLine($"{e.Name}, run {run + 1} of {e.Runs} (seed {e.Seed + run})");
            int code = Finetune(DeviceOf(e, device), e.Data, null, format, fromDir, Reinit.Parse(e.Reinit), null, null, runDir, e.Seq, e.Epochs,
                train with { Seed = (ulong)(e.Seed + run) }, cancel, entry, e.DeclarationOf(run));
            if (code != 0 || e.Runs == 1) return code;
            scores.Add(TrainLoop.BestScore(runDir) ?? throw new InvalidOperationException($"{runDir} finished without a dev score."));
        }
        string Pct(double x) => x.ToString("P1", System.Globalization.CultureInfo.InvariantCulture);
        Console.WriteLine($"{e.Name}: best dev {(format == "tsv" ? "accuracy" : format == "squad" ? "F1" : "score")} of {e.Runs} runs {string.Join(", ", scores.Select(Pct))}; " +
            $"mean {Pct(Bert.Cli.Demo.Mean(scores))} ± {(Bert.Cli.Demo.Sd(scores) * 100).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)} (sd).");
        return 0;
    }
}
