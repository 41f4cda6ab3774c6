using System.Diagnostics;
using System.Globalization;
using Bert.Data;
using Bert.Models;
using Bert.Runtime;
using Bert.Runtime.Kernels;
using Bert.Text;
using Bert.Training;

namespace Bert.Cli;

/// <summary>BERT's claim, measured: pre-train on unlabeled text, fine-tune on small labeled sets, and compare
/// with the same architecture trained on the labeled sets alone, with the same fine-tuning budget.</summary>
public static class Demo
{
    public sealed record Settings(string Size, int PretrainSteps, int Epochs, int Sst2Epochs, string Out, string[] Sets, int Seed, int MaxLen = 64,
        double PretrainLr = 1e-3, double FinetuneLr = 2e-4, bool TaskText = true, string Lang = "en", int Runs = 3, int VocabSize = 0,
        bool NextSentence = false, bool FrequencyBias = true, double MaskProb = 0.15, bool PretrainDropout = true,
        Bert.Runtime.Cuda.CudaPrecision? Cuda = null, Reinit? Reinit = null);

    /// <summary>What the pre-trained arm starts afresh by default (<c>--reinit</c>): the attention's projections. At this
    /// pre-training budget the attention learnt is the part that transfers worst: chosen on Amazon, IMDb and Yelp, it
    /// also lifted SST-2 and another checkpoint's four sets above scratch (README), but not the Portuguese sets. The
    /// embeddings, feed-forward layers and LayerNorms carry over.</summary>
    public const string DefaultReinit = "attention";

    /// <summary>One labeled set's result: mean dev accuracy (and its spread) over the fine-tuning runs of each arm.</summary>
    public sealed record Row(string Set, int Train, int Dev, double Scratch, double Pretrained, double ScratchSd, double PretrainedSd);

    /// <summary>The sets and model size the demo uses by default for a language.</summary>
    public static (string Size, string[] Sets) Defaults(string lang) => lang switch
    {
        "en" => ("mini", DataSets.Named),
        "pt" => ("mini-pt", DataSets.NamedPortuguese),
        _ => throw new ArgumentException($"Unknown --lang '{lang}'; use en (English) or pt (Portuguese)."),
    };

    internal static double Mean(IReadOnlyList<double> xs) => xs.Average();
    /// <summary>The sample standard deviation (0 for fewer than two values).</summary>
    internal static double Sd(IReadOnlyList<double> xs) => xs.Count < 2 ? 0 : Math.Sqrt(xs.Sum(x => (x - xs.Average()) * (x - xs.Average())) / (xs.Count - 1));

    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static int Run(Settings s, CancellationToken cancel)
    {
        var total = Stopwatch.StartNew();
        if (s.Runs < 1) throw new ArgumentException($"--runs {s.Runs} must be at least 1.");
        // --device cuda: every training loop (pre-training and each fine-tuning run) steps on the GPU.
        using var gpu = s.Cuda is null ? null : Bert.Runtime.Cuda.CudaDevice.Open();
        if (gpu is not null) Console.WriteLine($"Device: {gpu.Describe()}, {s.Cuda} products.");
        Bert.Runtime.Cuda.CudaTrainer? Trainer(Catalog.Entry e) =>
            gpu is null ? null : new Bert.Runtime.Cuda.CudaTrainer(e.Info, e.CreateCuda(), gpu, s.Cuda!.Value);
        var known = Defaults(s.Lang).Sets;
        foreach (var set in s.Sets)
            if (!known.Contains(set)) throw new ArgumentException($"Unknown set '{set}' in --sets for --lang {s.Lang}; choose from {string.Join(", ", known)}.");
        WordPiece tok;
        if (s.Lang == "pt")
        {
            // A Portuguese vocabulary from the novels and the sets' training texts: cased, accents kept.
            tok = Portuguese.BuildVocab(taskText: s.TaskText).ToTokenizer();
            Console.WriteLine($"Built a cased, accent-keeping WordPiece vocabulary of {tok.VocabSize:N0} entries from the Machado de Assis novels{(s.TaskText ? " and the sets' training texts" : "")}.");
        }
        else tok = WordPiece.BertBaseUncased();
        var entry = Catalog.Get(s.Size, "pretraining");
        Console.WriteLine($"Bert demo: {entry.Info.Name} ({entry.Info.ParameterCount:N0} parameters) on {Environment.ProcessorCount} CPU cores; {Gemm.Describe()}.");

        // 1. Pre-training on the embedded unlabeled corpus, plus (task-adaptive pre-training, Gururangan et al.
        //    2020) the training texts of the fine-tuning sets without their labels; dev texts are never seen.
        var (docs, how) = s.Lang == "pt" ? DataSets.Corpus(["machado"]) : DataSets.Corpus(null);
        if (s.TaskText)
        {
            int before = docs.Count;
            foreach (var set in s.Sets)
            {
                var (train, _, _) = DataSets.Load(set);
                docs.AddRange(train.Examples.Select(e => e.Text).Chunk(8).Select(c => c.ToList()));
            }
            how += $" + the unlabeled training texts of {string.Join(", ", s.Sets)} ({docs.Count - before} documents of 8)";
        }
        if (s.VocabSize > 0 && s.Lang == "en")
        {
            // A vocabulary learnt from the pre-training text itself instead of bert-base-uncased's 30522 entries.
            tok = VocabBuilder.Build(docs.SelectMany(d => d), s.VocabSize, TokenizerSettings.Uncased).ToTokenizer();
            Console.WriteLine($"Built an uncased WordPiece vocabulary of {tok.VocabSize:N0} entries from the pre-training text.");
        }
        var data = new PretrainingOptions
        {
            MaxSeqLength = s.MaxLen, NextSentence = s.NextSentence, MaskedLmProb = s.MaskProb, MaxPredictionsPerSeq = Program.MaxPredictions(s.MaxLen, s.MaskProb),
        };
        var instances = Data.Pretraining.CreateInstances(docs, tok, data, s.Seed);
        var pre = entry.Create();
        pre.InitParameters((ulong)s.Seed);
        var job = new PretrainJob(pre, tok, instances, data, 32, (ulong)s.Seed);
        if (s.FrequencyBias) job.InitOutputBiasFromFrequencies();
        var preDir = Path.Combine(s.Out, "pretrained");
        using var preTrainer = Trainer(entry);
        if (preTrainer is { UseGraphs: true }) job.RowMultiple = PretrainJob.GraphRowMultiple;   // batches of a length share a graph
        job.Prefetch = preTrainer is not null;   // the next batch is made while the GPU runs this one
        var loop = new TrainLoop
        {
            Model = pre, TotalSteps = s.PretrainSteps, Bind = job.Bind, StepMetrics = job.Metrics, DeviceMetrics = PretrainJob.DeviceMetrics, Evaluate = job.Evaluate, Dir = preDir, Tokenizer = tok,
            Device = preTrainer,
            Options = new TrainOptions { BatchSize = 32, LearningRate = s.PretrainLr, WarmupFraction = 0.1, Seed = (ulong)s.Seed, Dropout = s.PretrainDropout },
            Metadata = new Dictionary<string, string> { ["task"] = "pretraining" },
        };
        if (loop.TryResume()) Console.WriteLine($"Resuming pre-training from step {loop.Step} in {preDir}.");
        Console.WriteLine($"Pre-training on {how}: {job.TrainInstances:N0} sequences of up to {data.MaxSeqLength} tokens, {s.PretrainSteps} steps of 32; " +
            $"{(s.NextSentence ? "masked LM + next sentence" : "masked LM only")}, {(s.MaskProb * 100).ToString("0.#", Inv)} % of tokens predicted{(s.PretrainDropout ? "" : ", no dropout")}{(s.FrequencyBias ? ", output bias from token frequencies" : "")}.");
        Reporter.Run("pre-training", loop, cancel);
        if (cancel.IsCancellationRequested) return 130;
        var preTime = total.Elapsed;
        var held = job.Evaluate();   // also when the run was already complete and only resumed
        string nspPart = s.NextSentence ? string.Create(Inv, $", NSP accuracy {held.Metrics["nsp_acc"]:P1}") : "";
        Console.WriteLine(string.Create(Inv, $"Pre-trained in {preTime:mm\\:ss}: held-out MLM accuracy {held.Metrics["mlm_acc"]:P1}{nspPart}."));

        // 2. Fine-tuning from the pre-trained weights and from scratch, same budget.
        var rows = new List<Row>();
        string name = "";
        foreach (var set in s.Sets)
        {
            var (train, dev, split) = DataSets.Load(set);
            var classifier = Catalog.Get(s.Size, "classifier", train.Classes);
            name = classifier.Info.Name;
            int epochs = set == "sst2" ? s.Sst2Epochs : s.Epochs;
            // Run r of an arm: both arms share the head's initialization and the batch order of run r.
            double Tune(bool pretrained, int run)
            {
                var m = classifier.Create();
                m.InitParameters((ulong)(s.Seed + 100 + run));
                if (pretrained) FinetuneJob.Transfer(pre, m, s.Reinit);
                var ft = new FinetuneJob(m, tok, train, dev, Math.Min(128, m.Info.MaxLen), 32, s.Seed + run);   // texts up to 128 tokens (longer ones are cut)
                using var trainer = Trainer(classifier);
                if (trainer is { UseGraphs: true }) ft.SeqMultiple = FinetuneJob.GraphSeqMultiple;   // fewer shapes: graphs replay
                var l = new TrainLoop
                {
                    Model = m, TotalSteps = (long)epochs * ft.StepsPerEpoch, Bind = ft.Bind, StepMetrics = ft.Metrics, DeviceMetrics = FinetuneJob.DeviceMetrics, Evaluate = ft.Evaluate, Device = trainer,
                    Options = new TrainOptions { BatchSize = 32, LearningRate = s.FinetuneLr, WarmupFraction = 0.1, Seed = (ulong)(s.Seed + run), EvalEvery = ft.StepsPerEpoch },
                };
                string arm = pretrained ? "pre-trained" : "from scratch";
                Reporter.Run($"{set} ({arm}, run {run + 1} of {s.Runs})", l, cancel, plainEvery: ft.StepsPerEpoch * epochs);
                double best = l.Best?.Score ?? double.NaN;
                Console.WriteLine(string.Create(Inv, $"  {set} {arm} run {run + 1}: best dev accuracy {best:P1}"));
                return best;
            }
            Console.WriteLine($"{set}: {split}; {train.Classes} classes; {s.Runs} fine-tuning run(s) per arm{(s.Reinit is null ? "" : $"; the pre-trained arm starts {s.Reinit} afresh")}.");
            var scratch = new List<double>(); var fine = new List<double>();
            for (int run = 0; run < s.Runs; run++)
            {
                scratch.Add(Tune(false, run));
                if (cancel.IsCancellationRequested) return 130;
                fine.Add(Tune(true, run));
                if (cancel.IsCancellationRequested) return 130;
            }
            rows.Add(new Row(set, train.Examples.Count, dev.Examples.Count, Mean(scratch), Mean(fine), Sd(scratch), Sd(fine)));
        }

        string Acc(double mean, double sd) => mean.ToString("P1", Inv) + (s.Runs > 1 ? " ± " + (sd * 100).ToString("0.0", Inv) : "");
        Reporter.Table($"{name}: dev accuracy (best epoch, mean ± sd of {s.Runs} runs), {s.PretrainSteps} pre-training steps{(s.Reinit is null ? "" : $", {s.Reinit} afresh")}, {total.Elapsed:mm\\:ss} in all",
            ["set", "train", "dev", "from scratch", "pre-trained", "gain"],
            rows.Select(r => new[]
            {
                r.Set, r.Train.ToString(Inv), r.Dev.ToString(Inv), Acc(r.Scratch, r.ScratchSd), Acc(r.Pretrained, r.PretrainedSd),
                ((r.Pretrained - r.Scratch) * 100).ToString("+0.0;-0.0", Inv) + " pts",
            }));
        int wins = rows.Count(r => r.Pretrained > r.Scratch);
        Console.WriteLine($"Pre-trained beats from scratch on {wins} of {rows.Count} sets. Pre-training took {preTime:mm\\:ss}; everything {total.Elapsed:mm\\:ss}.");
        return 0;
    }
}
