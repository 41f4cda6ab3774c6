using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Bert.Data;
using Bert.Export;
using Bert.Models;
using Bert.Runtime;
using Bert.Runtime.Checkpoints;
using Bert.Runtime.Kernels;
using Bert.Text;
using Bert.Training;
using Spectre.Console;

namespace Bert.Cli;

/// <summary>The `bert` command: tokenize, pre-train, fine-tune, evaluate, predict, inspect, and the demo.</summary>
public static partial class Program
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static int Main(string[] args)
    {
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (cancel.IsCancellationRequested) return;  // a second Ctrl-C ends the process
            e.Cancel = true;
            cancel.Cancel();
            Console.Error.WriteLine("Stopping after this step (Ctrl-C again to quit at once)…");
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            var root = Build(cancel.Token);
            var parsed = root.Parse(args.Length == 0 ? ["--help"] : args);   // a bare `bert` lists the commands
            if (parsed.Errors.Count > 0 && parsed.CommandResult.Command is RootCommand && args.Length > 0 && !args[0].StartsWith('-'))
            {
                // An unknown command is one sentence, not the parser's three ("Required command was not provided", and each
                // word unrecognized).
                Console.Error.WriteLine($"error: '{args[0]}' is not a bert command; `bert --help` lists them ({string.Join(", ", root.Subcommands.Select(c => c.Name))}).");
                return 1;
            }
            if (parsed.Errors.Count > 0)
            {
                // Each error on a line of its own, naming its option, the last saying where the options are listed: not the
                // whole help after them.
                string command = parsed.CommandResult.Command is RootCommand ? "" : parsed.CommandResult.Command.Name + " ";
                for (int i = 0; i < parsed.Errors.Count; i++)
                    Console.Error.WriteLine("error: " + ParseError(parsed.Errors[i]).TrimEnd('.') + (i == parsed.Errors.Count - 1 ? $"; see `bert {command}--help` for the options." : "."));
                return 1;
            }
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
        }
        catch (Exception e) when (UserError(e) is string message)
        {
            Console.Error.WriteLine("error: " + message);
            return 1;
        }
        finally { Console.CancelKeyPress -= onCancel; }
    }

    /// <summary>The one sentence to show for a mistake a user can make; null for a bug (which then shows its trace).</summary>
    static string? UserError(Exception e) => e switch
    {
        ArgumentException a => Sentence(a),
        DataException or CheckpointException or TrainingException or FileNotFoundException or Bert.Runtime.Cuda.CudaUnavailableException
            or DirectoryNotFoundException or UnauthorizedAccessException or InvalidDataException => e.Message,
        IOException io => io.Message,
        InvalidOperationException io when io.Message.Contains("OpenBLAS") || io.Message.Contains("BERT_BLAS") => io.Message,
        _ => null,
    };

    /// <summary>A parse error on one line, prefixed with its option when the parser's message does not name it ("Argument
    /// 'nsp' not recognized. Must be one of: 'mlm' 'mlm+nsp'").</summary>
    static string ParseError(System.CommandLine.Parsing.ParseError e)
    {
        string message = string.Join(' ', e.Message.Split(['\r', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        var option = e.SymbolResult switch
        {
            System.CommandLine.Parsing.OptionResult o => o.Option,
            System.CommandLine.Parsing.ArgumentResult { Parent: System.CommandLine.Parsing.OptionResult o } => o.Option,
            _ => null,
        };
        // .NET's type names are not what a user typed: "as expected type 'System.Int32'" is "as a whole number".
        message = message.Replace(" as expected type 'System.Int32'", " as a whole number").Replace(" as expected type 'System.Int64'", " as a whole number")
            .Replace(" as expected type 'System.Double'", " as a number").Replace(" as expected type 'System.Boolean'", " as true or false");
        return option is not null && !message.Contains(option.Name, StringComparison.Ordinal) ? $"{option.Name}: {message}" : message;
    }

    /// <summary>An argument exception's sentence without what .NET appends to it (" (Parameter 'x')" and, for a value out of
    /// range, a line "Actual value was …"), which names a variable of the code rather than anything the user typed.</summary>
    static string Sentence(ArgumentException a)
    {
        string m = a.Message.Split('\n')[0].TrimEnd('\r');
        return a.ParamName is { } name ? m.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : m;
    }

    /// <summary>--reinit for fine-tuning from a pre-trained checkpoint (finetune, demo).</summary>
    static Option<string?> ReinitOption(string defaultValue) => new("--reinit")
    {
        Description = "with a pre-trained start: parts that start afresh instead of copied, comma-separated: qk (attention query and key), qkv, attention (query, key, value and output), ffn, layernorm, pooler, top-N (the last N layers), or none",
        DefaultValueFactory = _ => defaultValue,
    };

    static Option<T> Opt<T>(string name, string description, T defaultValue) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue };

    public static RootCommand Build(CancellationToken cancel)
    {
        var root = new RootCommand("Bert: declare, pre-train and fine-tune BERT models in C#. Runs on the CPU, or on an NVIDIA GPU with --device cuda.");
        var device = Opt("--device", "cpu or cuda", "cpu");
        device.AcceptOnlyFromAmong("cpu", "cuda");
        var seed = Opt("--seed", "random seed: the same seed gives the same run", 1);
        var precision = Opt("--precision", "with --device cuda: tf32 (matrix products on TF32 tensor cores, fp32 elsewhere), bf16 (the linear layers' operands rounded to bf16, the weights through a copy made once per step; fp32 accumulation, master weights and optimizer) or fp32 (exact)", "tf32");
        precision.AcceptOnlyFromAmong("tf32", "fp32", "bf16");

        // ---- demo ----
        var demo = new Command("demo", "Pre-train BERT on the embedded corpus, then fine-tune on Amazon, IMDb, Yelp and SST-2; compare with training from scratch.");
        var dSize = new Option<string?>("--size") { Description = "model size (default: mini for en, mini-pt for pt)" };
        var dLang = Opt("--lang", "en: English corpus and sets; pt: Portuguese (Machado de Assis, book reviews, tweets)", "en");
        dLang.AcceptOnlyFromAmong("en", "pt");
        var dVocab = Opt("--vocab-size", "en: build a vocabulary of this many entries from the pre-training text (0: bert-base-uncased's)", 0);
        var dRuns = Opt("--runs", "fine-tuning runs per set and arm (seeds); the table shows their mean", 3);
        var dSteps = Opt("--pretrain-steps", "pre-training steps (more takes longer and helps more)", 700);
        var dEpochs = Opt("--epochs", "fine-tuning epochs on each set", 5);
        var dOut = new Option<string?>("--out") { Description = "folder for the checkpoints (default: bert-demo-LANG in the temporary folder)" };
        var dSets = new Option<string?>("--sets") { Description = "comma-separated labeled sets (default: amazon,imdb,yelp,sst2 for en; pt-reviews,pt-tweets for pt)" };
        var dSst2Epochs = Opt("--sst2-epochs", "fine-tuning epochs on SST-2 (larger than the others)", 2);
        var dLen = Opt("--pretrain-max-len", "pre-training sequence length", 64);
        var dPreLr = Opt("--pretrain-lr", "pre-training peak learning rate", 1e-3);
        var dFtLr = Opt("--finetune-lr", "fine-tuning peak learning rate (both arms)", 2e-4);
        var dNoTask = Opt("--no-task-text", "pre-train on the embedded corpus only, without the sets' unlabeled training texts", false);
        var dObjective = Opt("--objective", "pre-training objective: mlm (masked LM only, as RoBERTa; measured better here) or mlm+nsp (BERT's, with next-sentence prediction)", "mlm");
        dObjective.AcceptOnlyFromAmong("mlm", "mlm+nsp");
        var dBias = Opt("--output-bias", "masked-LM output bias at the start: frequencies (log unigram frequencies of the corpus) or zeros (BERT's)", "frequencies");
        dBias.AcceptOnlyFromAmong("frequencies", "zeros");
        var dMask = Opt("--mask-prob", "share of tokens chosen for prediction in pre-training", 0.15);
        var dNoDrop = Opt("--no-pretrain-dropout", "pre-train without dropout", false);
        var dReinit = ReinitOption(Demo.DefaultReinit);
        foreach (var o in new Option[] { dLang, dSize, dSteps, dEpochs, dSst2Epochs, dLen, dPreLr, dFtLr, dNoTask, dObjective, dBias, dMask, dNoDrop, dReinit, dRuns, dVocab, dOut, dSets, seed, device, precision }) demo.Options.Add(o);
        demo.SetAction(pr =>
        {
            var cuda = DeviceOf(pr, device, precision) switch
            {
                "cuda-fp32" => Bert.Runtime.Cuda.CudaPrecision.Fp32, "cuda-bf16" => Bert.Runtime.Cuda.CudaPrecision.Bf16, "cuda-tf32" => Bert.Runtime.Cuda.CudaPrecision.Tf32,
                _ => (Bert.Runtime.Cuda.CudaPrecision?)null,
            };
            string lang = pr.GetValue(dLang)!;
            var (defSize, defSets) = Demo.Defaults(lang);
            var sets = pr.GetValue(dSets) is string list ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : defSets;
            string demoOut = pr.GetValue(dOut) ?? Path.Combine(Path.GetTempPath(), "bert-demo-" + lang);
            RequireWritableFolder(demoOut, "--out");
            // The demo keeps its pre-trained checkpoint in --out/pretrained (an earlier demo's is resumed or refused there);
            // a folder holding anything else is some other run's, which the demo must not write into.
            if (Directory.Exists(demoOut) && Directory.EnumerateFileSystemEntries(demoOut).FirstOrDefault(e => Path.GetFileName(e) != "pretrained") is { } other)
                throw new ArgumentException($"--out {demoOut} holds {Path.GetFileName(other)}, so it is not a demo's folder; give a new or empty folder, or an earlier demo's.");
            return Demo.Run(new Demo.Settings(pr.GetValue(dSize) ?? defSize, CheckNonNegative("--pretrain-steps", pr.GetValue(dSteps)), CheckPositive("--epochs", pr.GetValue(dEpochs)),
                CheckPositive("--sst2-epochs", pr.GetValue(dSst2Epochs)), demoOut, sets, pr.GetValue(seed),
                CheckMaxLen("--pretrain-max-len", pr.GetValue(dLen), PretrainingOptions.MinSeqLength), CheckRate("--pretrain-lr", pr.GetValue(dPreLr)), CheckRate("--finetune-lr", pr.GetValue(dFtLr)),
                !pr.GetValue(dNoTask), lang, CheckPositive("--runs", pr.GetValue(dRuns)), CheckNonNegative("--vocab-size", pr.GetValue(dVocab)),
                NextSentence: pr.GetValue(dObjective) == "mlm+nsp", FrequencyBias: pr.GetValue(dBias) == "frequencies", MaskProb: CheckMaskProb(pr.GetValue(dMask)), PretrainDropout: !pr.GetValue(dNoDrop),
                Cuda: cuda, Reinit: Reinit.Parse(pr.GetValue(dReinit))), cancel);
        });
        root.Subcommands.Add(demo);

        // ---- pretrain ----
        var pre = new Command("pretrain", "Pre-train a BERT model (masked LM + next sentence) on text.");
        var corpus = new Option<string[]>("--corpus") { Description = "text files (documents separated by blank lines) or JSON lines (.jsonl: a document in each record's \"text\"), either maybe gzipped, or a folder of them (its *.txt, *.jsonl, *.txt.gz, *.jsonl.gz and *.json.gz files), read a line at a time, or embedded names (machado: the Portuguese novels; a labeled set's name: its training texts); default: the embedded English corpus", AllowMultipleArgumentsPerToken = true };
        var size = new Option<string?>("--size") { Description = "model size: " + string.Join(", ", Catalog.Sizes) + " (default: the size of the --from checkpoint, else mini)" };
        var preFrom = new Option<string?>("--from") { Description = "checkpoint to continue pre-training from (ours, or a Hugging Face BERT folder): domain-adaptive pre-training; its vocabulary comes with it (default: random initialization)" };
        var steps = Opt("--steps", "optimizer steps", 1000);
        var batch = Opt("--batch", "sequences per micro-batch", 32);
        var accumulate = Opt("--accumulate", "micro-batches per optimizer step", 1);
        var maxLen = Opt("--max-len", "maximum sequence length in tokens", 128);
        var lr = Opt("--lr", "peak learning rate", 5e-4);
        var warmup = Opt("--warmup", "fraction of steps spent warming up", 0.1);
        var optimizer = Opt("--optimizer", "adamw, or lamb for large batches", "adamw");
        optimizer.AcceptOnlyFromAmong("adamw", "lamb");
        var wholeWord = Opt("--whole-word", "mask whole words", false);
        var vocabDir = new Option<string?>("--vocab") { Description = "folder with vocab.txt and tokenizer_config.json (default: bert-base-uncased)" };
        var evalEvery = Opt("--eval-every", "evaluate on held-out text every N steps (0: at the end)", 0);
        var saveEvery = Opt("--save-every", "also save a resumable checkpoint every N steps (0: at the end and on Ctrl-C only)", 0);
        var maskProb = Opt("--mask-prob", "share of tokens chosen for prediction (BERT: 0.15)", 0.15);
        var objective = Opt("--objective", "mlm+nsp (BERT: masked LM and next-sentence prediction) or mlm (masked LM only, as RoBERTa: every pair a real continuation)", "mlm+nsp");
        objective.AcceptOnlyFromAmong("mlm", "mlm+nsp");
        var noDropout = Opt("--no-dropout", "train without dropout (short budgets)", false);
        var outputBias = Opt("--output-bias", "masked-LM output bias at the start: zeros (BERT's) or frequencies (the corpus's log unigram frequencies)", "zeros");
        outputBias.AcceptOnlyFromAmong("frequencies", "zeros");
        var output = new Option<string>("--out") { Description = "checkpoint folder (resumes when it holds a run)", Required = true };
        foreach (var o in new Option[] { corpus, size, preFrom, steps, batch, accumulate, maxLen, lr, warmup, optimizer, wholeWord, maskProb, objective, noDropout, outputBias, vocabDir, evalEvery, saveEvery, output, seed, device, precision }) pre.Options.Add(o);
        pre.SetAction(pr => Pretrain(DeviceOf(pr, device, precision), pr.GetValue(corpus), pr.GetValue(preFrom) is null ? Catalog.Get(pr.GetValue(size) ?? "mini", "pretraining") : null, pr.GetValue(vocabDir), pr.GetValue(output)!,
            new PretrainingOptions { MaxSeqLength = CheckMaxLen("--max-len", pr.GetValue(maxLen), PretrainingOptions.MinSeqLength), WholeWordMask = pr.GetValue(wholeWord), NextSentence = pr.GetValue(objective) == "mlm+nsp",
                MaskedLmProb = CheckMaskProb(pr.GetValue(maskProb)), MaxPredictionsPerSeq = MaxPredictions(pr.GetValue(maxLen), pr.GetValue(maskProb)) },
            new TrainOptions { BatchSize = CheckPositive("--batch", pr.GetValue(batch)), Accumulate = CheckPositive("--accumulate", pr.GetValue(accumulate)), LearningRate = CheckRate("--lr", pr.GetValue(lr)),
                WarmupFraction = CheckWarmup(pr.GetValue(warmup)), Optimizer = pr.GetValue(optimizer)!, Seed = (ulong)pr.GetValue(seed), EvalEvery = CheckNonNegative("--eval-every", pr.GetValue(evalEvery)),
                Dropout = !pr.GetValue(noDropout), SaveEvery = CheckNonNegative("--save-every", pr.GetValue(saveEvery)) },
            CheckPositive("--steps", pr.GetValue(steps)), pr.GetValue(outputBias) == "frequencies", cancel, from: pr.GetValue(preFrom), size: pr.GetValue(size)));
        root.Subcommands.Add(pre);

        // ---- finetune ----
        var ft = new Command("finetune", "Fine-tune a classifier of texts or sentence pairs, a tagger of words (--format conll), or a reader that answers questions from a text (--format squad), on a labeled set.");
        var data = new Option<string>("--data") { Description = "amazon, imdb, yelp, sst2, pt-reviews, pt-tweets, or a file (its layout: --format)", Required = true };
        var dev = new Option<string?>("--dev") { Description = "dev file (default: a fixed stratified 80/20 split)" };
        var format = Opt("--format", "file format: tsv (text<TAB>label), pairs (first text<TAB>second text<TAB>label: entailment, paraphrase), sst2 (label first), conll (a word and its tag per line, blank lines between sentences: token classification), or squad (questions with their context and answers, SQuAD 1.1/2.0 JSON or Hugging Face JSON lines: extractive question answering); labels are class numbers or names", "tsv");
        format.AcceptOnlyFromAmong("tsv", "pairs", "sst2", "conll", "squad");
        var from = new Option<string?>("--from") { Description = "pre-trained checkpoint folder (default: random initialization)" };
        var epochs = Opt("--epochs", "passes over the training set", 3);
        var ftLr = Opt("--lr", "peak learning rate", 1e-4);
        var ftLen = Opt("--max-len", "maximum tokens per text (longer ones are truncated and counted)", 128);
        var ftOut = new Option<string>("--out") { Description = "checkpoint folder", Required = true };
        var ftVocab = new Option<string?>("--vocab") { Description = "folder with vocab.txt and tokenizer_config.json (default: the one saved with --from, else bert-base-uncased)" };
        var ftReinit = ReinitOption("none");
        var ftSize = new Option<string?>("--size") { Description = "model size: " + string.Join(", ", Catalog.Sizes) + " (default: the size of the --from checkpoint, else mini)" };
        var ftEvalEvery = Opt("--eval-every", "evaluate on the dev set every N steps and keep the best checkpoint (0: after every epoch)", 0);
        var docStride = Opt("--doc-stride", "with --format squad: a context longer than a window is read in windows that start at most this many word pieces apart (and at most half a window, so they overlap); eval and predict use the run's", QuestionAnsweringJob.DefaultStride);
        foreach (var o in new Option[] { data, dev, format, from, ftReinit, ftVocab, ftSize, ftEvalEvery, epochs, batch, accumulate, ftLr, ftLen, docStride, warmup, ftOut, seed, device, precision }) ft.Options.Add(o);
        ft.SetAction(pr => Finetune(DeviceOf(pr, device, precision), pr.GetValue(data)!, pr.GetValue(dev), pr.GetValue(format)!, pr.GetValue(from), Reinit.Parse(pr.GetValue(ftReinit)), pr.GetValue(ftVocab), pr.GetValue(ftSize),
            pr.GetValue(ftOut)!, CheckMaxLen("--max-len", pr.GetValue(ftLen), 3), CheckPositive("--epochs", pr.GetValue(epochs)),
            new TrainOptions { BatchSize = CheckPositive("--batch", pr.GetValue(batch)), Accumulate = CheckPositive("--accumulate", pr.GetValue(accumulate)), LearningRate = CheckRate("--lr", pr.GetValue(ftLr)),
                WarmupFraction = CheckWarmup(pr.GetValue(warmup)), Seed = (ulong)pr.GetValue(seed), EvalEvery = CheckNonNegative("--eval-every", pr.GetValue(ftEvalEvery)) }, cancel,
            docStride: pr.GetResult(docStride) is { Implicit: false } && pr.GetValue(format) != "squad"
                ? throw new ArgumentException("--doc-stride applies to question answering; add --format squad, or drop --doc-stride.")
                : CheckPositive("--doc-stride", pr.GetValue(docStride))));
        root.Subcommands.Add(ft);

        // ---- eval ----
        var ev = new Command("eval", "Accuracy of a fine-tuned classifier on a labeled set (a tagger's word accuracy and entity F1 on a CoNLL file; a question-answering model's exact match and F1 on a SQuAD file).");
        var model = new Option<string>("--model") { Description = "checkpoint folder of a classifier", Required = true };
        foreach (var o in new Option[] { model, data, dev, format, ftLen, device }) ev.Options.Add(o);
        ev.Options.Add(precision);
        ev.SetAction(pr => Eval(DeviceOf(pr, device, precision), pr.GetValue(model)!, pr.GetValue(data)!, pr.GetValue(dev), pr.GetValue(format)!, CheckMaxLen("--max-len", pr.GetValue(ftLen), 3), pr.GetResult(ftLen) is { Implicit: false }));
        root.Subcommands.Add(ev);

        // ---- predict ----
        var pred = new Command("predict", "Classify texts: the argument, or one text per line on standard input (a question-answering model: question<TAB>context, and it prints the answer).");
        var text = new Argument<string?>("text") { Description = "the text (omit to read lines from standard input)", Arity = ArgumentArity.ZeroOrOne };
        pred.Arguments.Add(text);
        foreach (var o in new Option[] { model, ftLen, device }) pred.Options.Add(o);
        pred.Options.Add(precision);
        pred.SetAction(pr => Predict(DeviceOf(pr, device, precision), pr.GetValue(model)!, pr.GetValue(text), CheckMaxLen("--max-len", pr.GetValue(ftLen), 3), pr.GetResult(ftLen) is { Implicit: false }));
        root.Subcommands.Add(pred);
        root.Subcommands.Add(TokenizeCommand());

        // ---- vocab ----
        var voc = new Command("vocab", "Build a WordPiece vocabulary from a corpus (for another language).");
        var vCorpus = new Option<string[]>("--corpus")
        {
            Description = "text files (one line each; JSON lines: each record's \"text\"; either maybe gzipped; a folder: its *.txt, *.jsonl, *.txt.gz, *.jsonl.gz and *.json.gz files) or embedded names: machado, or a labeled set's training texts (" + string.Join(", ", DataSets.Named.Concat(DataSets.NamedPortuguese)) +
                "); default for --lang pt: machado pt-reviews pt-tweets",
            AllowMultipleArgumentsPerToken = true,
        };
        var lang = Opt("--lang", "en: lower-case and strip accents (BERT uncased); pt: keep case and accents", "en");
        lang.AcceptOnlyFromAmong("en", "pt");
        var vSize = new Option<int?>("--size") { Description = $"entries in the vocabulary (default 8000; for --lang pt {Portuguese.VocabSize}, the Vocab of the mini-pt models)" };
        var cased = Opt("--cased", "keep upper case (implied by --lang pt)", false);
        var keepAccents = Opt("--keep-accents", "keep accents: é and e stay different (implied by --lang pt)", false);
        var minFreq = Opt("--min-frequency", "characters seen fewer times become [UNK]", 2);
        var vOut = new Option<string>("--out") { Description = "folder for vocab.txt, tokenizer_config.json and tokenizer.json", Required = true };
        foreach (var o in new Option[] { vCorpus, lang, vSize, cased, keepAccents, minFreq, vOut }) voc.Options.Add(o);
        voc.SetAction(pr => Vocab(pr.GetValue(vCorpus), pr.GetValue(lang)!, pr.GetValue(vSize) is int vs ? CheckPositive("--size", vs) : null, pr.GetValue(cased), pr.GetValue(keepAccents),
            CheckPositive("--min-frequency", pr.GetValue(minFreq)), pr.GetValue(vOut)!));
        root.Subcommands.Add(voc);

        // ---- info ----
        var info = new Command("info", "Parameters, FLOPs per token and the memory plan of a declared model.");
        var which = new Argument<string>("model") { Description = "a size (" + string.Join(", ", Catalog.Sizes) + ") or a model name (e.g. BertMiniClassifier)" };
        var head = Opt("--head", "pretraining, classifier, token-classifier or question-answering", "pretraining");
        head.AcceptOnlyFromAmong("pretraining", "classifier", "token-classifier", QaHead);
        var iBatch = Opt("--batch", "batch size for the memory plan", 32);
        var iSeq = Opt("--seq", "sequence length for the memory plan", 128);
        var iGpu = new Option<string?>("--gpu") { Description = "also estimate a training step on this GPU, as an [Experiment]'s build-time check does: " + string.Join(", ", GpuNames.Keys) };
        iGpu.AcceptOnlyFromAmong([.. GpuNames.Keys]);
        info.Arguments.Add(which);
        foreach (var o in new Option[] { head, iBatch, iSeq, iGpu, precision }) info.Options.Add(o);
        info.SetAction(pr => Info(pr.GetValue(which)!, pr.GetValue(head)!, CheckPositive("--batch", pr.GetValue(iBatch)), CheckPositive("--seq", pr.GetValue(iSeq)), pr.GetValue(iGpu), pr.GetValue(precision)!));
        root.Subcommands.Add(info);

        // ---- export ----
        var export = new Command("export", "Write a model as an ONNX inference graph (opset 17, dynamic batch and sequence, weights inside), or as a Hugging Face folder to publish (weights in f32, f16 or bf16, config.json, tokenizer; no training state).");
        var onnx = new Option<string?>("--onnx") { Description = "the .onnx file to write" };
        var eHf = new Option<string?>("--hf") { Description = "instead of --onnx: a new folder for transformers' from_pretrained and the Hub: model.safetensors, config.json, vocab.txt, tokenizer_config.json, tokenizer.json" };
        var eDtype = Opt("--dtype", "with --hf: the weights' type, f32, f16 or bf16 (half the size; what transformers loads with torch_dtype)", "f32");
        eDtype.AcceptOnlyFromAmong("f32", "f16", "bf16");
        var eModel = new Option<string?>("--model") { Description = "checkpoint folder to export" };
        var eSize = new Option<string?>("--size") { Description = "instead of --model: a freshly initialized model of this size (" + string.Join(", ", Catalog.Sizes) + ") or name (e.g. AlbertClassifier)" };
        var eClasses = Opt("--classes", "with --size and --head classifier: number of classes", 2);
        foreach (var o in new Option[] { onnx, eHf, eDtype, eModel, eSize, head, eClasses, seed }) export.Options.Add(o);
        export.SetAction(pr =>
        {
            string? onnxFile = pr.GetValue(onnx), hfDir = pr.GetValue(eHf);
            if ((onnxFile is null) == (hfDir is null))
                throw new ArgumentException("Say what to write: --onnx FILE for an ONNX graph or --hf DIR for a Hugging Face folder, one of the two.");
            if (hfDir is not null)
            {
                if (new Option[] { eSize, head, eClasses, seed }.FirstOrDefault(o => pr.GetResult(o) is { Implicit: false }) is { } fresh)
                    throw new ArgumentException($"{fresh.Name} describes a fresh model, which only --onnx exports; --hf exports a checkpoint, given with --model DIR.");
                return ExportHf(hfDir, pr.GetValue(eModel) ?? throw new ArgumentException("--hf exports a checkpoint: give it with --model DIR (a fine-tuned or pre-trained folder)."), pr.GetValue(eDtype)!);
            }
            if (pr.GetValue(eDtype) != "f32") throw new ArgumentException("--dtype applies to --hf only (an ONNX graph keeps f32 weights); drop it, or export with --hf.");
            if (pr.GetValue(eModel) is not null && new Option[] { head, eClasses, seed }.FirstOrDefault(o => pr.GetResult(o) is { Implicit: false }) is { } unused)
                throw new ArgumentException($"{unused.Name} describes a fresh model (with --size); --model exports the checkpoint as it is: drop {unused.Name}.");
            if (pr.GetResult(eClasses) is { Implicit: false } && pr.GetValue(head) == "pretraining")
                throw new ArgumentException($"--classes applies to a classifier or tagger head; add --head classifier (or token-classifier), or drop --classes.");
            return ExportOnnx(onnxFile!, pr.GetValue(eModel), pr.GetValue(eSize), pr.GetValue(head)!, pr.GetValue(eClasses) >= 2 ? pr.GetValue(eClasses)
                : throw new ArgumentException($"--classes {pr.GetValue(eClasses)} is too few for a classifier; give 2 or more."), pr.GetValue(seed));
        });
        root.Subcommands.Add(export);

        // ---- parity-batch ----
        var par = new Command("parity-batch", "Write one pre-training batch, our loss, logits and gradients for bench/parity/parity.py to replay in PyTorch or transformers.");
        var pModel = new Argument<string>("model") { Description = "a pre-training checkpoint folder (as `bert pretrain` writes)" };
        var pOut = new Option<string>("--out") { Description = "folder for batch.json and gradients.safetensors", Required = true };
        var pBatch = Opt("--batch", "sequences in the batch", 8);
        var pLen = Opt("--max-len", "maximum sequence length in tokens", 64);
        par.Arguments.Add(pModel);
        foreach (var o in new Option[] { pOut, pBatch, pLen, corpus, seed }) par.Options.Add(o);
        par.SetAction(pr =>
        {
            RequireWritableFolder(pr.GetValue(pOut)!, "--out");
            var r = Parity.Write(pr.GetValue(pModel)!, pr.GetValue(pOut)!, CheckPositive("--batch", pr.GetValue(pBatch)), CheckMaxLen("--max-len", pr.GetValue(pLen), PretrainingOptions.MinSeqLength), pr.GetValue(seed), pr.GetValue(corpus));
            Console.WriteLine(string.Create(Inv, $"{r.Model}: B={r.Batch} T={r.Seq}, {r.Predictions} masked positions, loss {r.Loss:R} (no dropout); wrote {Parity.BatchFile} and {Parity.GradientsFile} to {pr.GetValue(pOut)}."));
            return 0;
        });
        root.Subcommands.Add(par);

        // ---- selftest ----
        var st = new Command("selftest", "Check the CUDA backend against the CPU on this machine's GPU: cuBLAS, then every kernel through whole models (forward, backward, AdamW), and time BERT-Base pre-training steps.");
        var stModels = Opt("--models", "comma-separated model names (or size-head) to check against the CPU in double", "BertNanoPreTraining,BertNanoClassifier,AlbertClassifier,BertNanoPreLnPreTraining,BertNanoTokenClassifier,BertNanoQuestionAnswering,BertMiniPreTraining,BertBasePreTraining");
        var stTiming = Opt("--timing", "also time pre-training steps (fp32, TF32, bf16 and its variants; the product's training loop with and without CUDA graphs), profile them, and time inference", false);
        var stBatches = Opt("--batches", "batch sizes to time", "32,64,128");
        var stSeq = Opt("--seq", "sequence length to time", 128);
        var stSteps = Opt("--steps", "timed steps per batch size", 5);
        var stJson = new Option<string?>("--json") { Description = "also write the results to this JSON file" };
        var stSize = Opt("--timing-size", "the model size --timing times (base: BERT-Base, as issue 4 measures; nano for a quick run of the timing code)", "base");
        stSize.AcceptOnlyFromAmong("nano", "tiny", "mini", "small", "medium", "base", "large");
        foreach (var o in new Option[] { stModels, stTiming, stBatches, stSeq, stSteps, stSize, stJson, device }) st.Options.Add(o);
        st.SetAction(pr =>
        {
            if (pr.GetValue(device) != "cuda")
            {
                Console.Error.WriteLine("error: selftest checks the CUDA backend; run it as `bert selftest --device cuda` on a machine with an NVIDIA GPU.");
                return 2;
            }
            int[] batches;
            try { batches = pr.GetValue(stBatches)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(b => int.Parse(b, Inv)).ToArray(); }
            catch (FormatException) { throw new ArgumentException($"--batches '{pr.GetValue(stBatches)}' is not a comma-separated list of whole numbers; write e.g. --batches 32,64."); }
            return GpuSelfTest.Run(new GpuSelfTest.Settings(pr.GetValue(stModels)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                batches, pr.GetValue(stSeq), pr.GetValue(stSteps), pr.GetValue(stTiming), pr.GetValue(stJson), pr.GetValue(stSize)!), Console.Out);
        });
        root.Subcommands.Add(st);
        root.Subcommands.Add(RunCommand(cancel));
        return root;
    }

    internal static WordPiece Tokenizer(string? dir) => dir is null ? WordPiece.BertBaseUncased() : WordPiece.Load(dir);

    /// <summary>The tokenizer for fine-tuning: --vocab when given (it must be the one a --from checkpoint was
    /// trained with), else the one saved with --from, else bert-base-uncased.</summary>
    internal static WordPiece FinetuneTokenizer(string? from, string? vocab)
    {
        if (vocab is null) return from is null ? WordPiece.BertBaseUncased() : CheckpointTokenizer.Load(from);
        var tok = WordPiece.Load(vocab);
        if (from is not null) CheckpointTokenizer.Require(tok, from, $"the vocabulary in {vocab}");
        return tok;
    }

    static int CheckPositive(string flag, int value) => value >= 1 ? value
        : throw new ArgumentException($"{flag} {value} is not a count; give 1 or more.");

    /// <summary>A peak learning rate: positive and finite.</summary>
    static double CheckRate(string flag, double value) => double.IsFinite(value) && value > 0 ? value
        : throw new ArgumentException($"{flag} {value.ToString(Inv)} is not a learning rate; give a positive number such as 1e-4.");

    /// <summary>The share of the steps spent warming up.</summary>
    static double CheckWarmup(double value) => value >= 0 && value < 1 ? value
        : throw new ArgumentException($"--warmup {value.ToString(Inv)} is the share of the steps spent warming up; give a number from 0 up to 1 (not 1 itself), such as 0.1.");

    /// <summary>A maximum length with room for a text between the special tokens (<paramref name="least"/> tokens).</summary>
    static int CheckMaxLen(string flag, int value, int least) => value >= least ? value
        : throw new ArgumentException($"{flag} {value} leaves no room for text between [CLS] and [SEP]; give {least} or more (BERT uses 128 or 512).");

    /// <summary>A sentence pair packs two texts between three special tokens ([CLS] first [SEP] second [SEP]): a --max-len below
    /// 5 leaves one of them no token, which CheckMaxLen's 3 (for one text) allows.</summary>
    static void RequirePairRoom(int maxLen, string what)
    {
        if (maxLen < 5)
            throw new ArgumentException($"--max-len {maxLen} leaves no room for both texts of {what} ([CLS] first [SEP] second [SEP] needs 5 tokens or more); give --max-len 5 or more (BERT uses 128 or 512).");
    }

    /// <summary>--precision is the GPU's: given with the CPU (which computes in fp32) it is one sentence instead of being ignored.</summary>
    static string DeviceOf(System.CommandLine.ParseResult pr, Option<string> device, Option<string> precision)
    {
        string d = pr.GetValue(device)!, p = pr.GetValue(precision)!;
        if (d != "cuda" && pr.GetResult(precision) is { Implicit: false })
            throw new ArgumentException($"--precision {p} applies to --device cuda; the CPU computes in fp32, so drop --precision or add --device cuda.");
        return Device(d, p);
    }

    /// <summary>An output folder this process can write, checked before any work: a file in its place, or a place where no
    /// file can be made, is one sentence now instead of an error after the training. Leaves nothing behind (the folder is
    /// made later, by what writes it).</summary>
    internal static void RequireWritableFolder(string dir, string flag)
    {
        if (File.Exists(Path.GetFullPath(dir))) throw new ArgumentException($"{flag} {dir} is a file; give a folder (it is made when missing).");
        RequireWritable(Path.GetFullPath(dir), $"{flag} {dir}");
    }

    /// <summary>An output file whose folder can take files (made when missing, as for <see cref="RequireWritableFolder"/>),
    /// at a path that is not a folder.</summary>
    internal static void RequireWritableFile(string file, string flag)
    {
        string full = Path.GetFullPath(file);
        if (Directory.Exists(full)) throw new ArgumentException($"{flag} {file} is a folder; give the file's name.");
        RequireWritable(Path.GetDirectoryName(full)!, $"{flag} {file}");
    }

    /// <summary>The nearest existing folder at or above <paramref name="folder"/> takes a file (made and deleted at once).</summary>
    static void RequireWritable(string folder, string what)
    {
        string existing = folder;
        while (!Directory.Exists(existing))
        {
            if (File.Exists(existing)) throw new ArgumentException($"{what} cannot be made: {existing} is a file; give another path.");
            existing = Path.GetDirectoryName(existing) ?? throw new ArgumentException($"{what} has no existing folder above it; give another path.");
        }
        try { using (File.Create(Path.Combine(existing, $".bert-write-check-{Environment.ProcessId}"), 1, FileOptions.DeleteOnClose)) { } }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"{what} cannot be written (no file can be made in {existing}); choose a folder you can write to.");
        }
    }

    /// <summary>Optimizer steps in an epoch of <paramref name="microBatches"/> micro-batches taken <paramref name="accumulate"/>
    /// at a time (the last step of an epoch may reach into the next).</summary>
    static int CheckNonNegative(string flag, int value) => value >= 0 ? value
        : throw new ArgumentException($"{flag} {value} must be 0 or more.");

    /// <summary>--mask-prob must leave something to predict and something to read.</summary>
    static double CheckMaskProb(double p) => p > 0 && p < 1 ? p
        : throw new ArgumentException($"--mask-prob {p.ToString(Inv)} must be above 0 and below 1 (BERT uses 0.15).");

    /// <summary>Optimizer steps an epoch of <paramref name="microBatches"/> micro-batches makes; refuses an --accumulate
    /// larger than the epoch (each step would otherwise run the data round again and again).</summary>
    static int EpochSteps(int microBatches, TrainOptions train, string what)
    {
        if (train.Accumulate > microBatches)
            throw new ArgumentException($"--accumulate {train.Accumulate} asks for more micro-batches per optimizer step than an epoch of {what} has ({microBatches} of --batch {train.BatchSize}); give --accumulate {microBatches} or less.");
        return (microBatches + train.Accumulate - 1) / Math.Max(1, train.Accumulate);
    }

    /// <summary>BERT's cap of 20 predictions for 128 tokens at 15 %, scaled to the length and share asked for.</summary>
    internal static int MaxPredictions(int maxLen, double maskProb) => MemoryEstimate.MaxPredictionsPerSeq(maxLen, maskProb);

    /// <summary>"cpu", or "cuda-" and the precision of the products (tf32, bf16, fp32).</summary>
    static string Device(string device, string precision) => device == "cuda" ? "cuda-" + precision : device;

    /// <summary>The CUDA trainer for --device cuda (null for cpu); no usable GPU is one sentence (CudaUnavailableException).
    /// The optimizer (AdamW or LAMB) and its hyperparameters come from the training loop's CPU optimizer. A device ending in
    /// "-flash" (bert run's experiments declared with the flash attention) turns the flash kernels on.</summary>
    static Bert.Runtime.Cuda.CudaTrainer? OpenTrainer(string device, Catalog.Entry entry, TrainOptions train)
    {
        if (!device.StartsWith("cuda", StringComparison.Ordinal)) return null;
        var gpu = Bert.Runtime.Cuda.CudaDevice.Open();
        var precision = (device.Split('-') is [_, var p, ..] ? p : "") switch { "fp32" => Bert.Runtime.Cuda.CudaPrecision.Fp32, "bf16" => Bert.Runtime.Cuda.CudaPrecision.Bf16, _ => Bert.Runtime.Cuda.CudaPrecision.Tf32 };
        var trainer = new Bert.Runtime.Cuda.CudaTrainer(entry.Info, entry.CreateCuda(), gpu, precision);
        if (device.EndsWith("-flash", StringComparison.Ordinal)) trainer.Model.FlashAttention = true;
        Console.Error.WriteLine($"Device: {trainer.Describe()}; kernels compiled by NVRTC (cached).");
        return trainer;
    }

    /// <param name="entry">The model to pre-train; null with <paramref name="from"/>: the pre-training model of the
    /// checkpoint's size (or of <paramref name="size"/>, which must fit it).</param>
    /// <param name="from">A checkpoint to continue from (ours, or a Hugging Face folder): its tensors replace the fresh
    /// initialization (the heads it lacks start fresh), and its tokenizer is the run's.</param>
    static int Pretrain(string device, string[]? corpusFiles, Catalog.Entry? entry, string? vocab, string outDir, PretrainingOptions data, TrainOptions train, long steps, bool frequencyBias, CancellationToken cancel,
        string? experiment = null, string? from = null, string? size = null)
    {
        RequireWritableFolder(outDir, "--out");
        TrainLoop.RequireRunOrEmpty(outDir);
        var start = from is null ? null : LoadModel(from, asEncoder: true);
        entry ??= Catalog.Get(size ?? start?.Entry.Size ?? "mini", "pretraining");
        const string MlmBias = "cls.predictions.bias";
        if (frequencyBias && start is not null && start.Model.Info.Parameters.Any(p => p.HfName == MlmBias) && !start.Missing.Contains(MlmBias))
            throw new ArgumentException($"--output-bias frequencies would replace the masked-LM output bias {from} holds; drop it to keep the pre-trained bias.");
        using var trainer = OpenTrainer(device, entry, train);
        var tok = from is null ? Tokenizer(vocab) : FinetuneTokenizer(from, vocab);
        var (docs, how, sources) = DataSets.CorpusDocuments(corpusFiles);   // names checked, folders listed, nothing read yet
        PretrainJob.CheckFits(entry.Info, tok, data);
        Console.WriteLine($"Model {entry.Info.Name}: {entry.Info.ParameterCount:N0} parameters; corpus: {how}; {Gemm.Describe()}");
        var model = entry.Create();
        PretrainJob? job = null;   // made once the corpus is read; the loop checks the folder's run first
        var loop = new TrainLoop
        {
            Model = model, Options = train, TotalSteps = steps, Bind = i => job!.Bind(i), StepMetrics = () => job!.Metrics(), DeviceMetrics = PretrainJob.DeviceMetrics,
            Evaluate = () => job!.Evaluate(), Dir = outDir,
            Tokenizer = tok, Metadata = new Dictionary<string, string> { ["task"] = "pretraining", ["data"] = how, ["from"] = from ?? "random initialization" }, Device = trainer, Experiment = experiment,
            Data = TrainLoop.DataIdentity(corpusFiles is { Length: > 0 } ? corpusFiles : ["english"], DataSets.IsNamedCorpus),
            DataFiles = TrainLoop.DataFilesOf(sources, DataSets.IsNamedCorpus),
        };
        loop.CanResume();   // a run the folder holds that this one may not continue is refused before the corpus is read

        var read = Stopwatch.StartNew();
        var cache = CorpusCache.For(sources, DataSets.IsNamedCorpus, tok);
        string? cacheProblem = null;
        var corpus = cache?.TryLoad(out cacheProblem);
        if (cacheProblem is not null) Note(cacheProblem);
        bool fromCache = corpus is not null;
        if (corpus is null)
        {
            try { corpus = Data.TokenizedCorpus.Tokenize(docs, tok, (d, pieces) => Reporter.Progress($"tokenizing: {d:N0} documents, {pieces:N0} pieces, {read.Elapsed.TotalSeconds:F0} s")); }
            finally { Reporter.Progress(null); }
        }
        double readSeconds = read.Elapsed.TotalSeconds;
        var instances = Data.Pretraining.CreateInstances(corpus, tok.ClsId, tok.SepId, data, (int)train.Seed);
        Console.WriteLine($"Corpus: {corpus.Documents:N0} documents, {corpus.Sentences:N0} sentences, {corpus.Pieces:N0} pieces ({corpus.Bytes / 1048576.0:N0} MiB), " +
            $"{(fromCache ? $"read from the cache {cache!.Path}" : "tokenized")} in {readSeconds:F1} s and paired in {read.Elapsed.TotalSeconds - readSeconds:F1} s.");
        if (cache is not null && !fromCache)
        {
            var writing = Stopwatch.StartNew();
            var saved = cache.Save(corpus, out string? saveProblem);
            if (saved is long bytes) Console.WriteLine($"Tokenized corpus cached in {cache.Path} ({bytes / 1048576.0:N0} MiB, written in {writing.Elapsed.TotalSeconds:F1} s; ${CorpusCache.EnvironmentVariable}=off turns the cache off), so the next run on these files skips tokenizing.");
            else if (saveProblem is not null) Note(saveProblem);
        }
        InitOrStartFrom(model, train.Seed, start, from, reinit: null, headName: null);

        job = new PretrainJob(model, tok, instances, data, train.BatchSize, train.Seed);
        if (trainer is { UseGraphs: true }) job.RowMultiple = PretrainJob.GraphRowMultiple;   // batches of a length share a graph
        job.Prefetch = trainer is not null;   // the next batch is made while the GPU runs this one
        if (frequencyBias && !job.InitOutputBiasFromFrequencies())
            throw new ArgumentException($"{entry.Info.Name} has no masked-LM output bias for --output-bias frequencies.");
        Console.WriteLine($"{job.TrainInstances:N0} training sequences ({job.StepsPerEpoch} steps an epoch), {job.HeldOutInstances:N0} held out; masks drawn anew each epoch" +
            $"{(data.NextSentence ? "" : "; masked LM only (no next-sentence objective)")}{(train.Dropout ? "" : "; no dropout")}{(frequencyBias ? "; output bias from token frequencies" : "")}.");
        if (loop.TryResume()) Console.WriteLine($"Resuming from step {loop.Step} in {outDir}.");
        Reporter.Run("pre-training", loop, cancel);
        if (cancel.IsCancellationRequested) return 130;
        var best = loop.Best!;
        Reporter.Table("pre-training", ["steps", "final loss", "held-out MLM loss", "held-out MLM accuracy", "held-out NSP accuracy"],
            [[loop.Step.ToString(Inv), loop.Losses[^1].Loss.ToString("F4", Inv), (-best.Score).ToString("F4", Inv),
              best.Metrics.GetValueOrDefault("mlm_acc").ToString("P1", Inv), best.Metrics.TryGetValue("nsp_acc", out double nspAcc) ? nspAcc.ToString("P1", Inv) : "—"]]);
        Console.WriteLine($"Saved to {outDir} (best held-out checkpoint in {Path.Combine(outDir, "best")}).");
        if (trainer is not null) Console.Error.WriteLine(trainer.GraphSummary);
        return 0;
    }

    /// <summary>A remark on stderr that does not stop the command (a cache that could not be used).</summary>
    static void Note(string remark) => Console.Error.WriteLine($"Note: {char.ToUpperInvariant(remark[0])}{remark[1..]}.");

    /// <summary>A model loaded from a checkpoint folder: the declared model, its weights, and the tensors the folder did
    /// not have (a Hugging Face masked-LM folder has no pooler or next-sentence head), which keep a fresh initialization.</summary>
    internal sealed record Loaded(Catalog.Entry Entry, Model<float> Model, IReadOnlyList<string> Missing, IReadOnlyDictionary<string, string> Metadata, HfConfig Config)
    {
        /// <summary>The class names config.json gives (id2label), or null when it has none or only the LABEL_i defaults.</summary>
        public IReadOnlyList<string>? LabelNames => Config.Labels is { } names && names.Where((n, i) => n != $"LABEL_{i}").Any() ? names : null;

        /// <summary>Whether the checkpoint says the model was fine-tuned on sentence pairs.</summary>
        public bool Pairs => Metadata.GetValueOrDefault(PairsKey) == "true";

        /// <summary>Whether predict reads a tab as a pair's separator: unless the checkpoint says it was fine-tuned on single
        /// texts (a Hugging Face classifier does not say; a tab given to it is taken as deliberate).</summary>
        public bool TabSeparatesPairs => Metadata.GetValueOrDefault(PairsKey) != "false";

        public void Deconstruct(out Catalog.Entry entry, out Model<float> model) { entry = Entry; model = Model; }
    }

    /// <summary>Loads a checkpoint folder: ours names its model in config.json (bert_model); a Hugging Face BERT folder
    /// (from the Hub or save_pretrained) is matched to a declared model by its architecture and sizes
    /// (<see cref="Catalog.FromHfConfig"/>). A pre-training model may lack the heads that only pre-training uses (the
    /// pooler, the masked-LM and next-sentence heads); a classifier must have every tensor.</summary>
    /// <param name="asEncoder">For a start (--from): a Hugging Face classifier or tagger whose label count no declared model
    /// has loads as the pre-training model of its size instead (its encoder is what a start takes; its head is left out).</param>
    internal static Loaded LoadModel(string dir, bool asEncoder = false)
    {
        string configPath = Path.Combine(dir, "config.json");
        if (File.Exists(dir))
            throw new CheckpointException($"{dir} is a file; give the folder of a checkpoint (one that `bert` or transformers' save_pretrained wrote).", dir);
        if (!Directory.Exists(dir))
            throw new CheckpointException($"The checkpoint folder {dir} does not exist; check the path (a folder that `bert finetune` or transformers' save_pretrained wrote).", dir);
        if (!File.Exists(configPath))
            throw new CheckpointException($"{dir} has no config.json, so which model it holds is unknown; point to a folder that `bert` or transformers' save_pretrained wrote.", dir);
        var config = HfConfig.Read(configPath);
        if (config.BertModel is { } name)
        {
            Catalog.Entry entry;
            try { entry = Catalog.ByName(name); }
            catch (ArgumentException)
            {
                throw new CheckpointException($"{configPath} names the model {name}, which this build does not declare; run it with the build that wrote it, or use a checkpoint of a declared model ({string.Join(", ", Catalog.Sizes)}).", dir);
            }
            var model = entry.Create();
            var ours = Checkpoint.Load(dir, model, freshModel: true);
            return new Loaded(entry, model, [], ours.Metadata, config);
        }
        Catalog.Entry? hfEntry = null;
        string note = "";
        string arch = config.Architectures.FirstOrDefault() ?? "";
        bool headed = arch.EndsWith("ForSequenceClassification", StringComparison.Ordinal) || arch.EndsWith("ForTokenClassification", StringComparison.Ordinal);
        // A start takes the encoder only: a head no declared model has (its label count at this size, or a multi-label or
        // regression head) does not stand in its way.
        string? problem = config.Json["problem_type"] is System.Text.Json.Nodes.JsonValue pt && pt.TryGetValue<string>(out var p) ? p : null;
        bool otherHead = asEncoder && problem is not null && problem != "single_label_classification";
        if (!otherHead)
        {
            try { hfEntry = Catalog.FromHfConfig(config, configPath); }
            catch (CheckpointException) when (asEncoder && headed) { }
        }
        if (hfEntry is null)
        {
            var encoder = (System.Text.Json.Nodes.JsonObject)config.Json.DeepClone();
            encoder["architectures"] = new System.Text.Json.Nodes.JsonArray("BertModel");
            foreach (string key in new[] { "num_labels", "id2label", "label2id", "problem_type" }) encoder.Remove(key);
            hfEntry = Catalog.FromHfConfig(new HfConfig(encoder), configPath);   // the sizes must still match: else this one's sentence
            note = $", whose head ({config.NumLabels(configPath)} labels{(otherHead ? ", " + problem!.Replace('_', ' ') : "")}) no declared model of its size has; its encoder";
        }
        var hfModel = hfEntry.Create();
        string prefix = HfConfig.BaseModelPrefix(hfEntry.Info);
        bool Optional(string n) => hfEntry.Head == "pretraining" && (!n.StartsWith(prefix, StringComparison.Ordinal) || n.StartsWith(prefix + "pooler.", StringComparison.Ordinal));
        var report = Checkpoint.Load(dir, hfModel, Optional, freshModel: true);
        hfModel.InitParameters(1, only: report.Missing.ToHashSet(StringComparer.Ordinal));   // what it lacks starts fresh (the values InitParameters(1) gives every parameter)
        Console.Error.WriteLine($"{dir} is a Hugging Face {config.Architectures.FirstOrDefault() ?? config.ModelType ?? "BERT"} checkpoint{note}{(note.Length == 0 ? ";" : "")} loaded as {hfEntry.Name}" +
            (report.Missing.Count == 0 ? "" : $" ({report.Missing.Count} tensors it lacks start fresh: {string.Join(", ", report.Missing.Take(3))}{(report.Missing.Count > 3 ? ", …" : "")})") +
            (report.Unused.Count == 0 ? "." : $"; {report.Unused.Count} of its tensors have no place in {hfEntry.Name} and are left out: {string.Join(", ", report.Unused.Take(3))}{(report.Unused.Count > 3 ? ", …" : "")}."));
        return new Loaded(hfEntry, hfModel, report.Missing, report.Metadata, config);
    }

    /// <param name="declared">The model to fine-tune when an experiment names it (else the catalog's of --size and the set's classes).</param>
    static int Finetune(string device, string dataSpec, string? devFile, string format, string? from, Reinit? reinit, string? vocab, string? size, string outDir, int maxLen, int epochs, TrainOptions train, CancellationToken cancel,
        Catalog.Entry? declared = null, string? experiment = null, int docStride = QuestionAnsweringJob.DefaultStride)
    {
        if (reinit is not null && from is null) throw new ArgumentException($"--reinit {reinit} needs --from: without a pre-trained checkpoint every tensor starts afresh already.");
        RequireWritableFolder(outDir, "--out");
        TrainLoop.RequireRunOrEmpty(outDir);
        if (format == "conll") return FinetuneTagger(device, dataSpec, devFile, from, reinit, vocab, size, outDir, maxLen, epochs, train, cancel, declared, experiment);
        if (format == "squad") return FinetuneReader(device, dataSpec, devFile, from, reinit, vocab, size, outDir, maxLen, docStride, epochs, train, cancel, declared, experiment);
        var (trainSet, devSet, how) = DataSets.Load(dataSpec, devFile, format);
        if (trainSet.Examples.Select(e => e.Label).Distinct().Count() < 2)
            throw new ArgumentException($"The training part of {how} has examples of one class only; a classifier needs examples of at least two.");
        if (trainSet.Pairs is not null) RequirePairRoom(maxLen, $"the sentence pairs of {how}");
        var tok = FinetuneTokenizer(from, vocab);
        var (entry, model) = StartingModel(from, reinit, size, "classifier", Math.Max(2, trainSet.Classes), train.Seed, declared);
        SilenceSpareClasses(model, Math.Max(2, trainSet.Classes), "classes");
        using var trainer = OpenTrainer(device, entry, train);
        var job = new FinetuneJob(model, tok, trainSet, devSet, maxLen, train.BatchSize, (int)train.Seed);
        if (trainer is { UseGraphs: true }) job.SeqMultiple = FinetuneJob.GraphSeqMultiple;   // fewer shapes: graphs replay
        Console.WriteLine($"{entry.Info.Name} on {how}; {job.Truncated} texts truncated to {maxLen} tokens.");
        int perEpoch = EpochSteps(job.StepsPerEpoch, train, how);
        string[] dataSpecs = devFile is null ? [dataSpec] : [dataSpec, devFile];
        var loop = new TrainLoop
        {
            Model = model, Options = PerEpoch(train, perEpoch), TotalSteps = (long)epochs * perEpoch, Bind = job.Bind, StepMetrics = job.Metrics, DeviceMetrics = FinetuneJob.DeviceMetrics,
            Evaluate = job.Evaluate, Dir = outDir, Tokenizer = tok, Device = trainer, Labels = trainSet.LabelNames, Experiment = experiment,
            Data = TrainLoop.DataIdentity(dataSpecs),
            DataFiles = TrainLoop.DataFilesOf(dataSpecs, DataSets.IsNamedCorpus),
            Metadata = new Dictionary<string, string>
            {
                ["task"] = "classification", ["data"] = dataSpec, ["from"] = from ?? "random initialization", ["reinit"] = reinit?.ToString() ?? "none",
                [PairsKey] = trainSet.Pairs is null ? "false" : "true",
            },
        };
        return RunFineTuning(loop, perEpoch, e => string.Create(Inv, $"accuracy {e.Score:P2}"), outDir, trainer, cancel);
    }

    /// <summary>The checkpoint metadata that says whether a classifier was fine-tuned on sentence pairs: eval then reads its
    /// files as pairs, and predict reads a tab as part of the text only when it says "false".</summary>
    internal const string PairsKey = "sentence_pairs";

    /// <summary>eval and predict need a fine-tuned head; a pre-training model is one sentence saying so.</summary>
    static void RequireFineTuned(Loaded loaded, string dir)
    {
        if (loaded.Entry.Head is "classifier" or "token-classifier" or QaHead) return;
        throw new ArgumentException($"{dir} holds {loaded.Entry.Name}, a {loaded.Entry.Head} model without a classifier or tagging head; fine-tune it first (bert finetune --from {dir} --data …) and use that folder.");
    }

    /// <summary>The model a fine-tuning run starts from: the declared <paramref name="head"/> with room for the classes, of
    /// --size or else the --from checkpoint's size, freshly initialized, then the pre-trained tensors copied in (except
    /// <paramref name="reinit"/>'s and those the checkpoint lacked).</summary>
    static (Catalog.Entry Entry, Model<float> Model) StartingModel(string? from, Reinit? reinit, string? size, string head, int classes, ulong seed, Catalog.Entry? declared = null)
    {
        var pre = from is null ? null : LoadModel(from, asEncoder: true);
        // A start whose run was cut short (Ctrl-C, --save-every) is taken as it is, but said: its weights are those of an
        // early step, and finishing the run first is one command.
        if (from is not null && TrainLoop.Progress(from) is { } p && p.Step < p.TotalSteps)
            Console.Error.WriteLine($"Note: {from} holds a run stopped at step {p.Step:N0} of {p.TotalSteps:N0}; starting from those weights (running its command again with --out {from} finishes it first).");
        var entry = declared ?? Catalog.Get(size ?? pre?.Entry.Size ?? "mini", head, classes);
        if (declared is not null && (declared.Head != head || declared.Classes < classes))
            throw new ArgumentException($"{declared.Name} is a {declared.Head} with {declared.Classes} classes, and the data needs a {head} with {classes}; name another model in the experiment.");
        var model = entry.Create();
        // An answer-span head means the same (start, end) whatever the data: one the start has is kept.
        string? headName = head == "classifier" ? "the classifier head" : head == QaHead ? (pre?.Model.Info.Parameters.Any(p => p.HfName == QuestionAnsweringJob.HeadPrefix + "weight") == true && pre.Missing.Count(n => n.StartsWith(QuestionAnsweringJob.HeadPrefix, StringComparison.Ordinal)) == 0 ? null : "the answer-span head") : "the tagging head";
        InitOrStartFrom(model, seed, pre, from, reinit, headName);
        return (entry, model);
    }

    /// <summary>A head with more outputs than the data has classes (the catalog's nearest size): the spare outputs start with
    /// a bias of −10000, so that they never win an argmax nor take probability, in training, evaluation, prediction and
    /// the exported models alike (their gradients are then about 0: they stay there).</summary>
    internal static void SilenceSpareClasses(Model<float> model, int used, string what)
    {
        var bias = model.Info.Parameters.FirstOrDefault(p => p.HfName == FinetuneJob.HeadPrefix + "bias");
        if (bias is null || bias.Length <= used) return;
        model.Parameter(bias.HfName)[used..].Fill(-10000f);
        long spare = bias.Length - used;
        Console.WriteLine($"{model.Info.Name} has {bias.Length} outputs and the data {used} {what}: the other {spare} {(spare == 1 ? "is" : "are")} kept out (bias −10000).");
    }

    /// <summary>Copies a start's tensors into a freshly initialized model (<see cref="FinetuneJob.Transfer"/>) and says what
    /// starts fresh: the task head (<paramref name="headName"/>; none when pre-training), the --reinit parts, and the
    /// tensors the checkpoint lacked (a masked-LM folder has no pooler).</summary>
    static HashSet<string> StartFrom(Loaded pre, Model<float> model, string from, Reinit? reinit, string? headName)
    {
        FinetuneJob.CheckTransferable(pre.Model.Info, model.Info, from);
        var copied = new HashSet<string>(StringComparer.Ordinal);
        int n = FinetuneJob.Transfer(pre.Model, model, reinit, notLoaded: pre.Missing, copied: copied);
        var lacked = pre.Missing.Where(name => !name.StartsWith(FinetuneJob.HeadPrefix, StringComparison.Ordinal) && model.Info.Parameters.Any(p => p.HfName == name)).ToList();
        var parts = new List<string>();
        if (headName is not null) parts.Add(headName);
        if (reinit is not null) parts.Add(reinit.ToString());
        if (lacked.Count > 0) parts.Add($"{lacked.Count} tensor{(lacked.Count == 1 ? "" : "s")} {from} lacks ({string.Join(", ", lacked.Take(2))}{(lacked.Count > 2 ? ", …" : "")})");
        Console.WriteLine($"Initialized {n} of {model.Info.Parameters.Count} tensors from {from}" + (parts.Count == 0 ? "."
            : $"; {string.Join(parts.Count > 2 ? ", " : " and ", parts)} start{(parts.Count == 1 && headName is not null ? "s" : "")} fresh."));
        return copied;
    }

    /// <summary>A fresh model's parameters: drawn from <paramref name="seed"/>, or with a start, copied from it
    /// (<see cref="StartFrom"/>) and drawn only for the tensors it does not give, with the values a full draw gives them
    /// (each depends on the seed and its offset), so BERT-Base's 110 M draws are not made to be overwritten.</summary>
    static void InitOrStartFrom(Model<float> model, ulong seed, Loaded? start, string? from, Reinit? reinit, string? headName)
    {
        if (start is null) { model.InitParameters(seed); return; }
        var copied = StartFrom(start, model, from!, reinit, headName);
        model.InitParameters(seed, only: model.Info.Parameters.Select(p => p.HfName).Where(n => !copied.Contains(n)).ToHashSet(StringComparer.Ordinal));
    }

    /// <summary>--eval-every 0: the dev set is scored after every epoch (the best epoch's weights are kept in best/).</summary>
    static TrainOptions PerEpoch(TrainOptions train, int stepsPerEpoch) => train.EvalEvery == 0 ? train with { EvalEvery = stepsPerEpoch } : train;

    /// <summary>Runs a fine-tuning loop (resuming a run in its folder), printing each dev evaluation and the best.</summary>
    static int RunFineTuning(TrainLoop loop, int stepsPerEpoch, Func<EvalReport, string> scores, string outDir, Bert.Runtime.Cuda.CudaTrainer? trainer, CancellationToken cancel)
    {
        if (loop.TryResume()) Console.WriteLine($"Resuming from step {loop.Step} in {outDir}.");
        Reporter.Run("fine-tuning", loop, cancel, evaluation: (step, e, best) =>
            string.Create(Inv, $"step {step} (epoch {(step + stepsPerEpoch - 1) / stepsPerEpoch}): dev {scores(e)}, loss {e.Loss:F4}{(best ? ", best so far" : "")}"));
        if (cancel.IsCancellationRequested) return 130;
        Console.WriteLine($"Best dev {scores(loop.Best!)}; best checkpoint in {Path.Combine(outDir, "best")}.");
        if (trainer is not null) Console.Error.WriteLine(trainer.GraphSummary);
        return 0;
    }

    /// <summary>A tagging set's fixed dev split when no dev file is given: every fifth sentence of a seeded shuffle
    /// (sentences are not stratified: they carry many tags).</summary>
    static (TaggedSet Train, TaggedSet Dev, string How) TaggedSplit(string dataSpec, string? devFile)
    {
        var all = Conll.Read(dataSpec);
        if (devFile is not null) return (all, Conll.Read(devFile, all.Tags), $"{Path.GetFileName(dataSpec)} → {Path.GetFileName(devFile)}");
        var order = Enumerable.Range(0, all.Sentences.Count).ToList();
        Labeled.Shuffle(order, new Random(DataSets.SplitSeed));
        int dev = Math.Max(1, (int)Math.Round(order.Count * DataSets.DevFraction));
        if (dev >= order.Count) throw new DataException($"{dataSpec} holds {order.Count} sentence(s), too few to set some aside for dev; give more sentences or a --dev file.", dataSpec);
        var inDev = order.Take(dev).ToHashSet();
        TaggedSet Part(bool want, string suffix) => all with { Name = all.Name + suffix, Sentences = Enumerable.Range(0, all.Sentences.Count).Where(i => inDev.Contains(i) == want).Select(i => all.Sentences[i]).ToList() };
        return (Part(false, "-train"), Part(true, "-dev"), $"fixed split of {all.Name}: {all.Sentences.Count - dev} train / {dev} dev sentences (seed {DataSets.SplitSeed})");
    }

    /// <summary>A tagger's dev scores; a report restored from an older trainer_state.json has only its score.</summary>
    static string TaggingScores(EvalReport e) =>
        e.Metrics.TryGetValue("f1", out double f1) && e.Metrics.TryGetValue("precision", out double p) && e.Metrics.TryGetValue("recall", out double r) && e.Metrics.TryGetValue("acc", out double a)
            ? string.Create(Inv, $"entity F1 {f1:P2} (precision {p:P2}, recall {r:P2}), word accuracy {a:P2}")
            : e.Metrics.TryGetValue("acc", out a) ? string.Create(Inv, $"word accuracy {a:P2}") : string.Create(Inv, $"score {e.Score:P2}");

    /// <summary>finetune --format conll: token classification (named entities, parts of speech) from CoNLL files.</summary>
    static int FinetuneTagger(string device, string dataSpec, string? devFile, string? from, Reinit? reinit, string? vocab, string? size, string outDir, int maxLen, int epochs, TrainOptions train, CancellationToken cancel,
        Catalog.Entry? declared = null, string? experiment = null)
    {
        var (trainSet, devSet, how) = TaggedSplit(dataSpec, devFile);
        var tok = FinetuneTokenizer(from, vocab);
        var (entry, model) = StartingModel(from, reinit, size, "token-classifier", trainSet.Tags.Count, train.Seed, declared);
        SilenceSpareClasses(model, trainSet.Tags.Count, "tags");
        using var trainer = OpenTrainer(device, entry, train);
        var job = new TokenTaggingJob(model, tok, trainSet.Sentences, devSet.Sentences, maxLen, train.BatchSize, (int)train.Seed) { TagNames = trainSet.Tags };
        if (trainer is { UseGraphs: true }) job.SeqMultiple = FinetuneJob.GraphSeqMultiple;   // fewer shapes: graphs replay
        Console.WriteLine($"{entry.Info.Name} on {how}; {trainSet.Tags.Count} tags ({string.Join(", ", trainSet.Tags.Take(12))}{(trainSet.Tags.Count > 12 ? ", …" : "")}); {job.Truncated} sentences truncated to {maxLen} tokens.");
        int perEpoch = EpochSteps(job.StepsPerEpoch, train, how);
        string[] dataSpecs = devFile is null ? [dataSpec] : [dataSpec, devFile];
        var loop = new TrainLoop
        {
            Model = model, Options = PerEpoch(train, perEpoch), TotalSteps = (long)epochs * perEpoch, Bind = job.Bind, StepMetrics = job.Metrics, DeviceMetrics = TokenTaggingJob.DeviceMetrics,
            Evaluate = job.Evaluate, Dir = outDir, Tokenizer = tok, Device = trainer, Labels = trainSet.Tags, Experiment = experiment,
            Data = TrainLoop.DataIdentity(dataSpecs),
            DataFiles = TrainLoop.DataFilesOf(dataSpecs, DataSets.IsNamedCorpus),
            Metadata = new Dictionary<string, string> { ["task"] = "token-classification", ["data"] = dataSpec, ["from"] = from ?? "random initialization", ["reinit"] = reinit?.ToString() ?? "none" },
        };
        return RunFineTuning(loop, perEpoch, TaggingScores, outDir, trainer, cancel);
    }

    /// <summary>The catalog's head of extractive question answering.</summary>
    internal const string QaHead = "question-answering";

    /// <summary>The checkpoint metadata of a question-answering run: the window length and stride it read contexts with, and
    /// whether it learnt that a question may have no answer (SQuAD 2.0), so that eval and predict read and answer alike.</summary>
    internal const string StrideKey = "doc_stride", EmptyAnswersKey = "empty_answers", MaxLenKey = "max_seq_length";

    /// <summary>A question set's fixed dev split when no dev file is given: every fifth context of a seeded shuffle with all
    /// its questions (questions on one text never straddle the split).</summary>
    static (QaSet Train, QaSet Dev, string How) QaSplit(string dataSpec, string? devFile)
    {
        var all = Squad.Read(dataSpec);
        if (devFile is not null) return (all, Squad.Read(devFile), $"{Path.GetFileName(dataSpec)} → {Path.GetFileName(devFile)}");
        var contexts = all.Examples.Select(e => e.Context).Distinct(StringComparer.Ordinal).ToList();
        var order = Enumerable.Range(0, contexts.Count).ToList();
        Labeled.Shuffle(order, new Random(DataSets.SplitSeed));
        int dev = Math.Max(1, (int)Math.Round(order.Count * DataSets.DevFraction));
        if (dev >= order.Count) throw new DataException($"{dataSpec} holds questions on {order.Count} text(s), too few to set some aside for dev; give questions on more texts or a --dev file.", dataSpec);
        var inDev = order.Take(dev).Select(i => contexts[i]).ToHashSet(StringComparer.Ordinal);
        QaSet Part(bool want, string suffix) => new(all.Name + suffix, all.Examples.Where(e => inDev.Contains(e.Context) == want).ToList());
        var (train, devSet) = (Part(false, "-train"), Part(true, "-dev"));
        return (train, devSet, $"fixed split of {all.Name}: {train.Examples.Count} train / {devSet.Examples.Count} dev questions on {contexts.Count - dev} / {dev} texts (seed {DataSets.SplitSeed})");
    }

    static string ReadingScores(EvalReport e) =>
        e.Metrics.TryGetValue("f1", out double f1) && e.Metrics.TryGetValue("exact", out double em)
            ? string.Create(Inv, $"F1 {f1:P2}, exact match {em:P2}") + (e.Metrics.TryGetValue("has_ans_f1", out double hf) && e.Metrics.TryGetValue("no_ans_exact", out double ne)
                ? string.Create(Inv, $" (answerable F1 {hf:P2}, unanswerable right {ne:P2})") : "")
            : string.Create(Inv, $"F1 {e.Score:P2}");

    /// <summary>finetune --format squad: extractive question answering (a start and an end score at every position).</summary>
    static int FinetuneReader(string device, string dataSpec, string? devFile, string? from, Reinit? reinit, string? vocab, string? size, string outDir, int maxLen, int docStride, int epochs, TrainOptions train, CancellationToken cancel,
        Catalog.Entry? declared = null, string? experiment = null)
    {
        QuestionAnsweringJob.CheckLengths(maxLen, docStride);
        if (!File.Exists(dataSpec) && DataSets.AllNamed.Contains(dataSpec.ToLowerInvariant()))
            throw new ArgumentException($"{dataSpec} is a set of labeled texts, and --format squad reads questions with their context and answers; give a SQuAD file (JSON, or JSON lines as datasets' to_json writes squad), or drop --format squad to train a classifier.");
        var (trainSet, devSet, how) = QaSplit(dataSpec, devFile);
        var tok = FinetuneTokenizer(from, vocab);
        var (entry, model) = StartingModel(from, reinit, size, QaHead, 2, train.Seed, declared);
        using var trainer = OpenTrainer(device, entry, train);
        var job = new QuestionAnsweringJob(model, tok, trainSet, devSet, maxLen, docStride, train.BatchSize, (int)train.Seed);
        if (trainer is { UseGraphs: true }) job.SeqMultiple = FinetuneJob.GraphSeqMultiple;   // fewer shapes: graphs replay
        Console.WriteLine($"{entry.Info.Name} on {how}; {job.TrainWindows} training windows of up to {maxLen} tokens ({job.Split} contexts read in several, stride {docStride})" +
            (job.Unfound > 0 ? $"; {job.Unfound} question{(job.Unfound == 1 ? "" : "s")} left out (answer not found in the context's words)" : "") +
            (job.AllowEmpty ? "; unanswerable questions: the empty answer may be predicted." : "."));
        int perEpoch = EpochSteps(job.StepsPerEpoch, train, how);
        string[] dataSpecs = devFile is null ? [dataSpec] : [dataSpec, devFile];
        var loop = new TrainLoop
        {
            Model = model, Options = PerEpoch(train, perEpoch), TotalSteps = (long)epochs * perEpoch, Bind = job.Bind, StepMetrics = job.Metrics, DeviceMetrics = FinetuneJob.DeviceMetrics,
            Evaluate = job.Evaluate, Dir = outDir, Tokenizer = tok, Device = trainer, Experiment = experiment,
            Data = TrainLoop.DataIdentity(dataSpecs),
            DataFiles = TrainLoop.DataFilesOf(dataSpecs, DataSets.IsNamedCorpus),
            Metadata = new Dictionary<string, string>
            {
                ["task"] = QaHead, ["data"] = dataSpec, ["from"] = from ?? "random initialization", ["reinit"] = reinit?.ToString() ?? "none",
                [StrideKey] = docStride.ToString(Inv), [MaxLenKey] = maxLen.ToString(Inv), [EmptyAnswersKey] = job.AllowEmpty ? "true" : "false",
            },
        };
        return RunFineTuning(loop, perEpoch, ReadingScores, outDir, trainer, cancel);
    }

    /// <summary>A question-answering checkpoint's windows (their length, unless --max-len is given, and stride) and whether
    /// it answers "none": as its run recorded them; a Hugging Face folder has BERT's run_squad.py stride (128) and
    /// --max-len's, and says nothing about empty answers (null) unless its config has version_2_with_negative.</summary>
    static (int MaxLen, int Stride, bool? AllowEmpty) ReaderSettings(Loaded loaded, int maxLen, bool maxLenGiven) =>
        (!maxLenGiven && int.TryParse(loaded.Metadata.GetValueOrDefault(MaxLenKey), NumberStyles.None, Inv, out int m) && m > 0 ? Math.Min(m, loaded.Model.Info.MaxLen) : maxLen,
         int.TryParse(loaded.Metadata.GetValueOrDefault(StrideKey), NumberStyles.None, Inv, out int s) && s > 0 ? s : QuestionAnsweringJob.DefaultStride,
         loaded.Metadata.GetValueOrDefault(EmptyAnswersKey) is { } e ? e == "true"
            : loaded.Config.Json["version_2_with_negative"] is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<bool>(out bool b) ? b : null);

    /// <summary>A question-answering model on a SQuAD file: exact match and F1 (SQuAD's own scoring), and for a file with
    /// unanswerable questions the answerable and unanswerable ones apart.</summary>
    static int EvalReader(Loaded loaded, WordPiece tok, string file, int maxLen, bool maxLenGiven)
    {
        var (entry, model) = loaded;
        var set = Squad.Read(file);
        (maxLen, var stride, var allowEmpty) = ReaderSettings(loaded, maxLen, maxLenGiven);
        QuestionAnsweringJob.CheckLengths(maxLen, stride);
        // A model that does not say whether it answers "none" does on a set of SQuAD 2.0's kind.
        var r = QuestionAnsweringJob.Evaluate(model, tok, set, maxLen, stride, allowEmpty ?? set.HasImpossible);
        string Cell(string key) => r.Metrics.TryGetValue(key, out double v) ? v.ToString("P2", Inv) : "—";
        Reporter.Table($"{entry.Info.Name} on {set.Name}", ["questions", "unanswerable", "exact match", "F1", "answerable F1", "unanswerable right", "loss"],
            [[set.Examples.Count.ToString(Inv), set.Examples.Count(e => e.Impossible).ToString(Inv), Cell("exact"), Cell("f1"), Cell("has_ans_f1"), Cell("no_ans_exact"), r.Loss.ToString("F4", Inv)]]);
        return 0;
    }

    /// <summary>predict with a question-answering model: each line is question TAB context; each answer line is the answer
    /// (empty for none), its probability and the question.</summary>
    static int PredictReader(Loaded loaded, WordPiece tok, List<string> lines, bool fromArgument, int maxLen, bool maxLenGiven)
    {
        var (_, model) = loaded;
        (maxLen, var stride, var allowEmpty) = ReaderSettings(loaded, maxLen, maxLenGiven);
        QuestionAnsweringJob.CheckLengths(maxLen, stride);
        var questions = new List<QaExample>();
        for (int i = 0; i < lines.Count; i++)
        {
            if (lines[i].Trim().Length == 0) continue;
            int tab = lines[i].IndexOf('\t');
            string where = fromArgument ? "The text" : $"Line {i + 1} of standard input";
            if (tab < 0 || lines[i].IndexOf('\t', tab + 1) >= 0)
                throw new ArgumentException($"{where} is not 'question<TAB>context': a question-answering model reads the question, one tab, then the text that holds the answer.");
            questions.Add(new QaExample((i + 1).ToString(Inv), lines[i][..tab], lines[i][(tab + 1)..], [], false));
        }
        var answers = QuestionAnsweringJob.Predict(model, tok, questions, maxLen, stride, allowEmpty ?? false);
        int next = 0;
        for (int i = 0; i < lines.Count; i++)
        {
            if (lines[i].Trim().Length == 0) { Console.WriteLine(); continue; }
            var a = answers[next]; var q = questions[next++];
            Console.WriteLine(string.Create(Inv, $"{a.Text}\t{a.Probability:F3}\t{q.Question}"));
        }
        return 0;
    }

    /// <summary>For --device cuda: runs the model's forward on the GPU from now on (its weights copied there).</summary>
    static Bert.Runtime.Cuda.CudaTrainer? OnDevice(string device, Catalog.Entry entry, Model<float> model)
    {
        var trainer = OpenTrainer(device, entry, new TrainOptions());
        if (trainer is null) return null;
        trainer.SetParameters(model);
        model.Runner = trainer;
        return trainer;
    }

    static int Eval(string device, string dir, string dataSpec, string? devFile, string format, int maxLen, bool maxLenGiven)
    {
        var loaded = LoadModel(dir);
        RequireFineTuned(loaded, dir);
        var (entry, model) = loaded;
        RequireMaxLenFits(maxLen, maxLenGiven, model);
        using var gpu = OnDevice(device, entry, model);
        var tok = CheckpointTokenizer.Load(dir);
        RequireVocabFits(tok, model, dir);
        int len = Math.Min(maxLen, model.Info.MaxLen);
        if (entry.Head == QaHead)
        {
            string file = devFile ?? dataSpec;
            if (!File.Exists(file) && DataSets.AllNamed.Contains(file.ToLowerInvariant()))
                throw new ArgumentException($"{dir} holds a question-answering model ({entry.Name}), which is scored on a SQuAD file of questions, and {file} is a set of labeled texts; give a SQuAD file.");
            if (format is not ("tsv" or "squad"))
                throw new ArgumentException($"{dir} holds a question-answering model ({entry.Name}), which reads SQuAD files; drop --format {format}.");
            return EvalReader(loaded, tok, file, len, maxLenGiven);
        }
        if (format == "squad")
            throw new ArgumentException($"--format squad is for question-answering models, and {dir} holds a {entry.Head} ({entry.Name}); fine-tune one with --format squad, or drop --format squad.");
        if (entry.Head == "token-classifier")
        {
            string file = devFile ?? dataSpec;
            if (!File.Exists(file) && DataSets.AllNamed.Contains(file.ToLowerInvariant()))
                throw new ArgumentException($"{dir} holds a tagger ({entry.Name}), which is scored on a CoNLL file of tagged words, and {file} is a set of labeled texts; give a CoNLL file.");
            return EvalTagger(loaded, tok, file, len);
        }
        if (format == "conll")
            throw new ArgumentException($"--format conll is for taggers, and {dir} holds a classifier ({entry.Name}) of texts; drop --format conll, or evaluate a tagger.");
        // A file is scored whole; --dev FILE scores that file; a named set, its dev split (the part fine-tuning never trains on).
        string source = devFile ?? dataSpec;
        if (loaded.Pairs && format == "tsv") format = "pairs";   // a model of sentence pairs reads its files as pairs
        var (trainSet, devSet, how) = DataSets.Load(source, null, format);
        if (trainSet.Pairs is not null) RequirePairRoom(len, $"the sentence pairs of {source}");
        if (File.Exists(source))
            (devSet, how) = (trainSet.Concat(devSet), $"all {trainSet.Examples.Count + devSet.Examples.Count} examples of {Path.GetFileName(source)}");
        // Named classes are matched to the model's by name, not by the file's order.
        if (devSet.LabelNames is { } fileNames)
        {
            var modelNames = loaded.LabelNames ?? throw new ArgumentException($"The labels in {source} are names ({string.Join(", ", fileNames)}) but the model in {dir} has none (its config.json's id2label is LABEL_0, …); give the labels as class numbers.");
            var remap = fileNames.Select(n => modelNames.ToList().IndexOf(n)).ToArray();
            if (remap.Any(i => i < 0))
                throw new ArgumentException($"{source} has the label '{fileNames[Array.IndexOf(remap, -1)]}', which is not one of the model's classes ({string.Join(", ", modelNames)}); fix the data or evaluate another model.");
            devSet = devSet with { Examples = devSet.Examples.Select(e => (e.Text, remap[e.Label])).ToList() };
        }
        if (devSet.Examples.FirstOrDefault(e => e.Label >= entry.Classes) is { Text: not null } outside)
            throw new ArgumentException($"{source} has the label {outside.Label}, but the model in {dir} has {entry.Classes} classes (0 to {entry.Classes - 1}); evaluate it on data of its own classes.");
        var (set, cut) = FinetuneJob.Encode(tok, devSet, len);
        var r = FinetuneJob.Evaluate(model, set, tok.PadId, 32);
        Reporter.Table($"{entry.Info.Name} on {how}", ["examples", "truncated", "accuracy", "loss"],
            [[set.Count.ToString(Inv), cut.ToString(Inv), r.Score.ToString("P2", Inv), r.Loss.ToString("F4", Inv)]]);
        return 0;
    }

    /// <summary>A tagger on a CoNLL file read with the model's tags (id2label): word accuracy and conlleval's entity scores
    /// over every word, the words past the maximum length counted as tagged O (so their entities are missed, not dropped).</summary>
    static int EvalTagger(Loaded loaded, WordPiece tok, string file, int maxLen)
    {
        var (entry, model) = loaded;
        var tags = loaded.Config.Labels ?? Enumerable.Range(0, entry.Classes).Select(i => $"LABEL_{i}").ToList();
        var tagged = Conll.Read(file, tags, "the model");
        var predicted = TokenTaggingJob.Predict(model, tok, tagged.Sentences.Select(x => x.Words).ToList(), maxLen);
        int words = 0, right = 0, truncated = 0;
        string Name(int t) => t >= 0 && t < tags.Count ? tags[t] : "O";
        var pairs = new List<(IReadOnlyList<string>, IReadOnlyList<string>)>();
        for (int i = 0; i < tagged.Sentences.Count; i++)
        {
            var gold = tagged.Sentences[i].Tags;
            if (predicted[i].Any(p => p.Tag < 0)) truncated++;
            for (int w = 0; w < gold.Length; w++) { words++; if (predicted[i][w].Tag == gold[w]) right++; }
            pairs.Add((gold.Select(Name).ToList(), predicted[i].Select(p => Name(p.Tag)).ToList()));
        }
        bool bio = Conll.IsBio(tags);
        var (precision, recall, f1) = Conll.EntityScores(pairs);
        string Cell(double v) => bio ? v.ToString("P2", Inv) : "—";
        Reporter.Table($"{entry.Info.Name} on {tagged.Name}", ["sentences", "words", "truncated", "word accuracy", "entity precision", "entity recall", "entity F1"],
            [[tagged.Sentences.Count.ToString(Inv), words.ToString(Inv), truncated.ToString(Inv), ((double)right / Math.Max(1, words)).ToString("P2", Inv), Cell(precision), Cell(recall), Cell(f1)]]);
        return 0;
    }

    /// <summary>Prints label (its name when the checkpoint names its classes), probability and text for each text; a
    /// text with a tab is a sentence pair (first TAB second), for models fine-tuned on pairs.</summary>
    static int Predict(string device, string dir, string? text, int maxLen, bool maxLenGiven)
    {
        var loaded = LoadModel(dir);
        RequireFineTuned(loaded, dir);
        var (entry, model) = loaded;
        RequireMaxLenFits(maxLen, maxLenGiven, model);
        using var gpu = OnDevice(device, entry, model);
        var tok = CheckpointTokenizer.Load(dir);
        RequireVocabFits(tok, model, dir);
        var names = loaded.LabelNames;
        if (text is not null && text.Trim().Length == 0) throw new ArgumentException("The text to classify is empty; pass some text, or omit it to read one text per line from standard input.");
        var texts = text is not null ? new List<string> { text } : ReadStdin();
        int nonBlank = texts.Count(t => t.Trim().Length > 0);
        if (nonBlank == 0) throw new ArgumentException("No text to classify; pass it as an argument or one per line on standard input.");
        int limit = Math.Min(maxLen, model.Info.MaxLen), longer = 0, printed = 0;
        if (entry.Head == QaHead) return PredictReader(loaded, tok, texts, text is not null, limit, maxLenGiven);
        // The packed copy of the weights pays for itself over several forwards; one batch of texts is one forward, which
        // would pay for packing all of them (BERT-Base: 440 MB more to fault in, about 0.5 s here) and gain nothing.
        model.PackWeights = nonBlank > 32;
        if (entry.Head != "token-classifier" && loaded.TabSeparatesPairs)
            for (int i = 0; i < texts.Count; i++)
            {
                int tabs = texts[i].Count(c => c == '\t');
                string where = text is not null ? "The text" : $"Line {i + 1} of standard input";
                if (tabs > 1)
                    throw new ArgumentException($"{where} has {tabs + 1} tab-separated fields, but a sentence pair is 'first text<TAB>second text'; remove the extra tabs.");
                if (tabs == 1) RequirePairRoom(limit, text is not null ? "the sentence pair" : $"the sentence pair on line {i + 1}");
            }
        if (entry.Head == "token-classifier")
        {
            // Words are what spaces separate (as in a CoNLL file); each gets a line: word, tag, probability; a blank line after each text.
            // A blank line of standard input gets its blank line of output only, so that the blocks stay in step with the input.
            var sentences = texts.Select(t => t.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)).ToList();
            var words = sentences.Where(s => s.Length > 0).ToList();
            var taggedWords = TokenTaggingJob.Predict(model, tok, words, Math.Min(maxLen, model.Info.MaxLen));
            int next = 0;
            var tagged = sentences.Select(s => s.Length > 0 ? taggedWords[next++] : []).ToList();
            for (int i = 0; i < sentences.Count; i++)
            {
                for (int w = 0; w < sentences[i].Length; w++)
                {
                    var (tag, prob) = tagged[i][w];
                    Console.WriteLine(tag < 0 ? $"{sentences[i][w]}\t-\t-" : string.Create(Inv, $"{sentences[i][w]}\t{(names is not null && tag < names.Count ? names[tag] : tag.ToString(Inv))}\t{prob:F3}"));
                }
                Console.WriteLine();
            }
            return 0;
        }
        // A blank line of standard input gets an empty line of output, so that output line i answers input line i.
        foreach (var chunk in texts.Select((t, i) => (Text: t, Line: i)).Where(x => x.Text.Trim().Length > 0).Chunk(32))
        {
            var items = chunk.Select(x => x.Text).Select(t =>
            {
                var p = EncodeLine(tok, t, loaded.TabSeparatesPairs, limit);
                if (p.Truncated > 0) longer++;
                return new FinetuneJob.Example(p.Ids, p.TypeIds, Bert.Runtime.Kernels.CrossEntropy.DefaultIgnoreIndex);
            }).ToArray();
            FinetuneJob.BindBatch(model, items, tok.PadId, training: false);
            model.Forward();
            var p = model.Probabilities(0);
            int K = p.Length / items.Length;
            for (int b = 0; b < items.Length; b++)
            {
                var row = p.Slice(b * K, K);
                int label = PretrainJob.ArgMax(row);
                string shown = names is not null && label < names.Count ? names[label] : label.ToString(Inv);
                for (; printed < chunk[b].Line; printed++) Console.WriteLine();   // the blank lines before it
                Console.WriteLine(string.Create(Inv, $"{shown}\t{row[label]:F3}\t{chunk[b].Text}"));
                printed++;
            }
        }
        for (; printed < texts.Count; printed++) Console.WriteLine();
        if (longer > 0)
            Console.Error.WriteLine($"{longer} of {nonBlank} text{(nonBlank == 1 ? "" : "s")} {(longer == 1 ? "was" : "were")} longer than {limit} tokens and classified by {(longer == 1 ? "its" : "their")} first {limit} (--max-len; the model takes up to {model.Info.MaxLen}).");
        return 0;
    }

    /// <summary>A line of text as BERT input: with <paramref name="pairs"/>, a tab separates the two texts of a sentence pair
    /// (a line without one is a single text).</summary>
    static EncodedPair EncodeLine(WordPiece tok, string line, bool pairs, int maxLen)
    {
        int tab = pairs ? line.IndexOf('\t') : -1;
        return tab < 0 ? tok.EncodePair(line, null, maxLen) : tok.EncodePair(line[..tab], line[(tab + 1)..], maxLen);
    }

    /// <summary>A --max-len given beyond the model's positions is one sentence (eval, predict), as in finetune, instead of
    /// being lowered to MaxLen unsaid; the default (128) is lowered to a smaller model's MaxLen.</summary>
    static void RequireMaxLenFits(int maxLen, bool given, Model<float> model)
    {
        if (given) FinetuneJob.CheckMaxLen(model.Info, maxLen);
    }

    /// <summary>A tokenizer whose ids the model's embedding holds: more entries than it embeds is one sentence up front
    /// (eval, predict), not an index error at the first rare word.</summary>
    static void RequireVocabFits(WordPiece tok, Model<float> model, string dir)
    {
        long embeds = model.Info.Constants.GetValueOrDefault("Vocab", long.MaxValue);
        if (tok.VocabSize > embeds)
            throw new CheckpointException($"The {WordPiece.VocabFileName} in {dir} has {tok.VocabSize} entries but {model.Info.Name} embeds {embeds}; put back the vocabulary saved with the checkpoint.", dir);
    }

    /// <summary>The texts on standard input, one per line: redirected input is decoded as strict UTF-8 (as the data files are),
    /// so that bytes of another encoding are refused, naming the line, instead of turning into U+FFFD.</summary>
    static List<string> ReadStdin()
    {
        if (StandardInput is null && !Console.IsInputRedirected)
            Console.Error.WriteLine("Reading texts from the terminal, one per line; end with Ctrl-D (or pass a text as an argument).");
        if (StandardInput is not null || !Console.IsInputRedirected) return ReadLines(StandardInput ?? Console.In);
        using var buffer = new MemoryStream();
        Console.OpenStandardInput().CopyTo(buffer);
        return ReadLines(buffer.ToArray());
    }

    /// <summary>The lines of UTF-8 <paramref name="bytes"/> (standard input), blank ones included (predict answers each line
    /// with one); bytes that are not UTF-8 are a <see cref="DataException"/> naming the line.</summary>
    public static List<string> ReadLines(byte[] bytes) =>
        bytes is [] or [0xEF, 0xBB, 0xBF] ? [] : ReadLines(new StringReader(TextSource.Decode(bytes, "standard input", subject: "Standard input")));

    /// <summary>The lines of <paramref name="reader"/>, blank ones included, a byte-order mark dropped.</summary>
    public static List<string> ReadLines(TextReader reader)
    {
        var lines = new List<string>();
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            if (lines.Count == 0) line = line.TrimStart('\uFEFF');   // a byte-order mark is not text
            lines.Add(line);
        }
        return lines;
    }

    /// <summary>Where predict reads its texts when none is given; null (the default): the process's standard input. For a
    /// host that runs the command in process (the tests), as Console.SetIn would be, which the strict decoding bypasses.</summary>
    public static TextReader? StandardInput { get; set; }

    static int Vocab(string[]? corpus, string lang, int? size, bool cased, bool keepAccents, int minFrequency, string outDir)
    {
        RequireWritableFolder(outDir, "--out");
        foreach (string held in TensorFiles.ModelFiles.Prepend("config.json").Prepend(WordPiece.TokenizerJsonFileName).Prepend(WordPiece.VocabFileName))
            if (File.Exists(Path.Combine(outDir, held)))
                throw new ArgumentException($"{outDir} already holds {held}{(held is WordPiece.VocabFileName or WordPiece.TokenizerJsonFileName ? "" : " (a model, whose tokenizer a new vocabulary would replace)")}; give another --out.");
        bool pt = lang == "pt";
        if ((corpus is null || corpus.Length == 0) && !pt)
            throw new ArgumentException("Give the corpus with --corpus (text files or embedded names such as machado), or --lang pt for the embedded Portuguese text.");
        var source = corpus is null || corpus.Length == 0 ? Portuguese.VocabLines(taskText: true) : DataSets.VocabLines(corpus);
        long lineCount = 0;
        bool anyText = false;
        var lines = source.Select(l => { lineCount++; anyText = anyText || l.Trim().Length > 0; return l; });   // read once, as it streams
        var settings = new TokenizerSettings { LowerCase = !(cased || pt), StripAccents = !(keepAccents || pt) };
        var sw = Stopwatch.StartNew();
        var built = VocabBuilder.Build(lines, size ?? (pt ? Portuguese.VocabSize : 8000), settings, minFrequency);
        if (!anyText)
            throw new ArgumentException($"The corpus ({string.Join(", ", corpus ?? [])}) has no text to learn a vocabulary from; give files with text in them.");
        var tok = built.ToTokenizer();
        tok.Save(outDir);
        Console.WriteLine($"Wrote {tok.VocabSize} entries ({built.Characters} characters) learnt from {lineCount:N0} lines to {Path.Combine(outDir, WordPiece.VocabFileName)} in {sw.Elapsed.TotalSeconds:F1} s " +
            $"(lower case: {settings.LowerCase}, strip accents: {settings.StripAccents}; saved in {TokenizerSettings.FileName}, and the whole tokenizer for Hugging Face in {WordPiece.TokenizerJsonFileName}){(built.Exhausted ? "; the corpus ran out of pairs before the size asked" : "")}.");
        return 0;
    }

    static int ExportOnnx(string file, string? dir, string? size, string head, int classes, int seed)
    {
        if ((dir is null) == (size is null))
            throw new ArgumentException("Say which model to export: --model DIR for a checkpoint, or --size SIZE (with --head) for a freshly initialized one, not both.");
        RequireWritableFile(file, "--onnx");
        if (File.Exists(file))
            throw new ArgumentException($"--onnx {file} already exists; give a new file name, or delete the old file first (export never writes over files).");
        Model<float> model;
        if (dir is not null) model = LoadModel(dir).Model;
        else
        {
            var entry = Catalog.All.FirstOrDefault(e => e.Name.Equals(size, StringComparison.OrdinalIgnoreCase)) ?? Catalog.Get(size!, head, classes);
            model = entry.Create();
            model.InitParameters((ulong)seed);
        }
        var proto = OnnxExport.Write(model, file);
        var g = proto.Graph;
        Console.WriteLine(string.Create(Inv, $"Wrote {file}: {model.Info.Name}, ONNX opset {OnnxExport.Opset}, {g.Node.Count} nodes, {model.Info.ParameterCount:N0} weights; " +
            $"inputs {string.Join(", ", g.Input.Select(i => i.Name))}; outputs {string.Join(", ", g.Output.Select(o => o.Name))}."));
        return 0;
    }

    /// <summary>export --hf: a checkpoint as a folder to publish — the weights (in <paramref name="dtype"/>), config.json
    /// and the tokenizer, without optimizer.bin and trainer_state.json — written in a temporary sibling folder and moved
    /// into place whole, so a failed export leaves nothing behind. The folder must be new or empty.</summary>
    static int ExportHf(string outDir, string dir, string dtype)
    {
        RequireWritableFolder(outDir, "--hf");
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outDir));
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw new ArgumentException($"--hf {outDir} already holds files; give a new or empty folder (export never writes over files).");
        string cwd = Path.TrimEndingDirectorySeparator(Path.GetFullPath(Environment.CurrentDirectory));
        if (cwd == full || cwd.StartsWith(full + Path.DirectorySeparatorChar, StringComparison.Ordinal) || Path.GetDirectoryName(full) is null)
            throw new ArgumentException($"--hf {outDir} is the current folder (or holds it), which the export would replace; give a new folder's name.");
        var loaded = LoadModel(dir);
        var tokenizer = CheckpointTokenizer.Load(dir);
        var model = loaded.Model;
        var type = dtype switch { "f16" => SafeTensorDType.F16, "bf16" => SafeTensorDType.BF16, _ => SafeTensorDType.F32 };
        if (type == SafeTensorDType.F16)
        {
            float largest = 0;
            string where = "";
            foreach (var p in model.Info.Parameters)
            {
                float m = System.Numerics.Tensors.TensorPrimitives.MaxMagnitude<float>(model.Parameter(p.Name));
                if (Math.Abs(m) > largest) (largest, where) = (Math.Abs(m), p.HfName);
            }
            if (largest > (float)Half.MaxValue)
                throw new ArgumentException(string.Create(Inv, $"{dir} has weights beyond float16's range ({where} holds {largest:G4}, above {(float)Half.MaxValue}), which f16 would make infinite; export with --dtype bf16 (float32's range) or f32."));
        }
        var meta = new Dictionary<string, string>(loaded.Metadata);
        meta.Remove("step");
        foreach (var (k, v) in CheckpointTokenizer.Stamp(tokenizer)) meta[k] = v;
        string parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        string temp = Path.Combine(parent, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            Checkpoint.Save(temp, model, meta, labels: loaded.Config.Labels, dtype: type);
            tokenizer.Save(temp, model.Info.MaxLen);
            if (Directory.Exists(full)) Directory.Delete(full);   // empty, checked above
            Directory.Move(temp, full);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
        long bytes = new FileInfo(Path.Combine(full, Checkpoint.ModelFile)).Length;
        string auto = loaded.Entry.Head switch { "classifier" => "AutoModelForSequenceClassification", "token-classifier" => "AutoModelForTokenClassification", QaHead => "AutoModelForQuestionAnswering", _ => "AutoModelForPreTraining" };
        Console.WriteLine(string.Create(Inv, $"Wrote {outDir}: {model.Info.Name} with {dtype} weights ({bytes / 1048576.0:F1} MiB {Checkpoint.ModelFile}), config.json, {WordPiece.VocabFileName}, {TokenizerSettings.FileName} and {WordPiece.TokenizerJsonFileName}; " +
            $"transformers loads it with {auto}.from_pretrained(\"{outDir}\") and bert with --model {outDir}."));
        return 0;
    }

    /// <summary>The GPUs an experiment (and `info --gpu`) can be checked against, by their command-line names.</summary>
    /// <summary>A training step's memory by the experiments' estimate (MemoryEstimate.For): on the CPU, and with
    /// <paramref name="gpu"/> on that card at <paramref name="precision"/>, whether it fits and the largest batch that does.</summary>
    static IEnumerable<string[]> StepMemoryRows(ModelInfo info, string head, int batch, int seq, string? gpu, string precision)
    {
        var job = head == "pretraining" ? Bert.Dsl.Job.Pretrain : Bert.Dsl.Job.FineTune;
        int Rows(int b) => job == Bert.Dsl.Job.Pretrain ? MemoryEstimate.PretrainingRows(b, seq, 0.15) : 0;
        var cpu = MemoryEstimate.For(info, batch, seq, Rows(batch), Bert.Dsl.Device.Cpu, Bert.Dsl.Precision.Fp32, job);
        yield return ["training step, CPU", $"{MemoryEstimate.Format(cpu.Total)} at B={batch}, T={seq} (activations, parameters, gradients, AdamW)"];
        if (gpu is null) yield break;
        var device = GpuNames[gpu];
        var p = precision switch { "bf16" => Bert.Dsl.Precision.Bf16, "fp32" => Bert.Dsl.Precision.Fp32, _ => Bert.Dsl.Precision.Tf32 };
        // In bf16, also with the flash attention (Attention = AttentionKernel.Flash, BERT_CUDA_ATTENTION=flash) where the model
        // has an attention its kernels take: no T×T probabilities.
        bool flashToo = p == Bert.Dsl.Precision.Bf16 && info.Ops.Any(Bert.Runtime.Cuda.CudaExec.TakesFlash);
        foreach (bool flash in flashToo ? new[] { false, true } : [false])
        {
            MemoryEstimate At(int b) => MemoryEstimate.For(info, b, seq, Rows(b), device, p, job, flash: flash);
            var step = At(batch);
            int lo = 0, hi = 1 << 16;   // the largest batch that fits: the estimate grows with the batch
            while (lo < hi) { int mid = (lo + hi + 1) / 2; if (At(mid).Total <= step.Capacity) lo = mid; else hi = mid - 1; }
            string fits = step.Total <= step.Capacity ? "fits" : "does not fit";
            yield return [$"training step, {device} ({precision}{(flash ? ", flash" : "")})",
                $"{MemoryEstimate.Format(step.Total)} of {MemoryEstimate.Format(step.Capacity)} at B={batch}, T={step.Seq}: {fits}; at most B={lo} fits (kernel scratch {MemoryEstimate.Format(step.Scratch)}, bf16 copies {MemoryEstimate.Format(step.Bf16)})"];
        }
    }

    static readonly Dictionary<string, Bert.Dsl.Device> GpuNames = new()
    {
        ["a100-40gb"] = Bert.Dsl.Device.A100_40GB, ["a100-80gb"] = Bert.Dsl.Device.A100_80GB, ["h100"] = Bert.Dsl.Device.H100,
        ["h200"] = Bert.Dsl.Device.H200, ["l4"] = Bert.Dsl.Device.L4,
    };

    static int Info(string which, string head, int batch, int seq, string? gpu = null, string precision = "tf32")
    {
        var entry = Catalog.All.FirstOrDefault(e => e.Name.Equals(which, StringComparison.OrdinalIgnoreCase)) ?? Catalog.Get(which, head);
        var i = entry.Info;
        if (seq > i.MaxLen) throw new ArgumentException($"--seq {seq} is longer than {i.Name}'s MaxLen of {i.MaxLen}; give {i.MaxLen} or less.");
        int rows = (int)Math.Round(batch * seq * 0.15);
        double flops = Catalog.FlopsPerToken(i, seq, 0.15);
        Reporter.Table(i.Name, ["property", "value"],
        [
            ["parameters", i.ParameterCount.ToString("N0", Inv)],
            ["constants", string.Join(", ", i.Constants.OrderBy(c => c.Key).Select(c => $"{c.Key}={c.Value}"))],
            ["ops after fusion", $"{i.Ops.Count} ({i.Kernels.Count} fused element-wise kernels)"],
            ["training FLOPs per token", $"{flops / 1e6:F1} M (6·N + 12·L·T·C + 6·(C²+C·V)·f, T={seq}, f=0.15)"],
            ["activation memory, training", $"{i.ActivationBytes(batch, seq, rows, 4, true) / 1048576.0:F1} MiB at B={batch}, T={seq} (without reuse {i.UnplannedBytes(batch, seq, rows, 4, true) / 1048576.0:F1} MiB)"],
            ["activation memory, inference", $"{i.ActivationBytes(batch, seq, rows, 4, false) / 1048576.0:F1} MiB"],
            ["parameters + gradients + AdamW", $"{i.ParameterCount * 16 / 1048576.0:F1} MiB (fp32)"],
            .. StepMemoryRows(i, entry.Head, batch, seq, gpu, precision),
        ]);
        return 0;
    }
}
