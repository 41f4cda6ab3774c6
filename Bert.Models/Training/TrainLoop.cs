using System.Diagnostics;
using System.Text.Json;
using System.Globalization;
using Bert.Runtime;
using Bert.Runtime.Checkpoints;
using Bert.Runtime.Training;

namespace Bert.Training;

/// <summary>Settings shared by pre-training and fine-tuning (BERT's defaults where it has them).</summary>
public sealed record TrainOptions
{
    public int BatchSize { get; init; } = 32;
    /// <summary>Micro-batches whose gradients are summed (and averaged) into one optimizer step.</summary>
    public int Accumulate { get; init; } = 1;
    public double LearningRate { get; init; } = 1e-4;
    public double WarmupFraction { get; init; } = 0.1;
    public double ClipNorm { get; init; } = 1.0;
    public double WeightDecay { get; init; } = 0.01;
    public string Optimizer { get; init; } = "adamw";
    public ulong Seed { get; init; } = 1;
    public int EvalEvery { get; init; } = 0;
    /// <summary>Dropout during training (the model's declared rates); off trains the deterministic network, as
    /// short pre-training budgets prefer (Geiping &amp; Goldstein 2022, "Cramming").</summary>
    public bool Dropout { get; init; } = true;
    /// <summary>Also save a resumable checkpoint (to the run's folder) every N steps, so a crash or a killed process
    /// loses at most N steps; 0 saves only at the end, on Ctrl-C and for the best evaluation.</summary>
    public int SaveEvery { get; init; } = 0;
}

public sealed record StepReport(long Step, long TotalSteps, double Loss, double Lr, double TokensPerSecond, TimeSpan Elapsed, TimeSpan Eta,
    IReadOnlyDictionary<string, double> Metrics);

public sealed record EvalReport(double Loss, IReadOnlyDictionary<string, double> Metrics, double Score);

/// <summary>Raised when training cannot go on (a non-finite loss): one sentence naming the step and what was kept.</summary>
public sealed class TrainingException(string message) : Exception(message);

/// <summary>The optimization loop: micro-batches → forward/backward → average → clip → AdamW/LAMB with BERT's
/// warm-up and linear decay; evaluation and best-checkpoint keeping; a resumable checkpoint on cancellation.
/// Every random choice derives from (seed, step), so a resumed run repeats an uninterrupted one exactly.</summary>
public sealed class TrainLoop
{
    public required Model<float> Model { get; init; }
    public required TrainOptions Options { get; init; }
    public required long TotalSteps { get; init; }
    /// <summary>Binds the inputs of one micro-batch (global index); returns its token count.</summary>
    public required Func<long, int> Bind { get; init; }
    /// <summary>Metrics of the micro-batch just run forward (accuracy from the saved probabilities).</summary>
    public Func<IReadOnlyDictionary<string, double>>? StepMetrics { get; init; }
    /// <summary>The same metrics on a <see cref="Device"/>, from each cross-entropy's right and counted rows (counted there,
    /// so the probabilities never come back).</summary>
    public Func<IReadOnlyList<(int Right, int Total)>, IReadOnlyDictionary<string, double>>? DeviceMetrics { get; init; }
    public Func<EvalReport>? Evaluate { get; init; }
    /// <summary>Called after each evaluation with the step, the report and whether it is the best so far (then saved to
    /// Dir/best): progress displays show it.</summary>
    public Action<long, EvalReport, bool>? Evaluated { get; set; }
    /// <summary>Where checkpoints go (latest in Dir, best in Dir/best); null keeps nothing on disk.</summary>
    public string? Dir { get; init; }
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>The declaration of the experiment this run is (<c>bert run</c>), kept in trainer_state.json: a folder that
    /// holds a run of another declaration is not resumed or reused.</summary>
    public string? Experiment { get; init; }
    /// <summary>The tokenizer the model is trained with: saved beside every checkpoint and stamped into its
    /// metadata (<see cref="CheckpointTokenizer"/>); <see cref="TryResume"/> refuses a run stamped with another.</summary>
    public Text.WordPiece? Tokenizer { get; init; }
    /// <summary>A classifier's class names (the training file's), saved as config.json's id2label; classes the model has
    /// beyond them are LABEL_i.</summary>
    public IReadOnlyList<string>? Labels { get; init; }
    /// <summary>Runs the steps on a CUDA device (forward, backward, clipping, AdamW); null runs them on the CPU. The CPU
    /// model keeps the inputs and receives the weights before every save and evaluation.</summary>
    public Bert.Runtime.Cuda.CudaTrainer? Device { get; init; }

    Optimizer<float>? _opt;
    public Optimizer<float> Optimizer => _opt ??= Options.Optimizer.ToLowerInvariant() switch
    {
        "adamw" => new AdamW<float>(Model.Info, weightDecay: Options.WeightDecay),
        "lamb" => new Lamb<float>(Model.Info, weightDecay: Options.WeightDecay),
        var o => throw new ArgumentException($"Unknown optimizer '{o}'; use adamw or lamb."),
    };

    public long Step { get; private set; }
    public EvalReport? Best { get; private set; }
    public List<(long Step, double Loss)> Losses { get; } = new();

    /// <summary>Whether <paramref name="dir"/> holds a run of <paramref name="model"/> that reached its last step (its
    /// trainer_state.json says so), and when <paramref name="totalSteps"/> is given, a run of that many steps.</summary>
    public static bool Finished(string dir, string model, long? totalSteps = null, string? experiment = null) =>
        ReadState(dir) is { } s && s.Model == model && s.Step >= s.TotalSteps
            && (totalSteps is null || s.TotalSteps == totalSteps) && (experiment is null || s.Experiment == experiment);

    /// <summary>The step and the total steps of the run in <paramref name="dir"/> (its trainer_state.json), or null.</summary>
    public static (long Step, long TotalSteps)? Progress(string dir) => ReadState(dir) is { } s ? (s.Step, s.TotalSteps) : null;

    /// <summary>The best evaluation's score of the run in <paramref name="dir"/> (its trainer_state.json), or null.</summary>
    public static double? BestScore(string dir) => ReadState(dir)?.BestScore;

    /// <summary>The trainer_state.json in <paramref name="dir"/>, or null when there is none or it does not parse.</summary>
    static TrainerState? ReadState(string dir)
    {
        string path = Path.Combine(dir, StateFile);
        if (!File.Exists(path)) return null;
        try { return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path)); }
        catch (JsonException) { return null; }
    }

    /// <summary>A run's output folder must be new, empty, or hold a run to resume (trainer_state.json): a folder that holds a
    /// model without one (a Hugging Face folder, a copied checkpoint, a run whose first save was cut off) would be
    /// overwritten by the new run's weights, and a vocabulary folder's vocab.txt (or a tokenizer.json saved alone) by the
    /// run's tokenizer (<paramref name="tokenizer"/>, when it is another), so both are refused before any work.</summary>
    public static void RequireRunOrEmpty(string dir, Text.WordPiece? tokenizer = null)
    {
        if (!Directory.Exists(dir) || File.Exists(Path.Combine(dir, StateFile))) return;
        foreach (string held in TensorFiles.ModelFiles.Append("config.json"))
            if (File.Exists(Path.Combine(dir, held)))
                throw new CheckpointException($"{dir} already holds a model ({held}) but no run to resume ({StateFile}), and this run would overwrite it; give another --out (--from {dir} starts from that model), or delete the folder if it is a run whose first save was cut off.", dir);
        string vocab = Path.Combine(dir, Text.WordPiece.VocabFileName);
        if (tokenizer is not null && File.Exists(vocab) && !File.ReadAllLines(vocab).SequenceEqual(tokenizer.Vocab))
            throw new CheckpointException($"{dir} holds a vocabulary ({Text.WordPiece.VocabFileName}) that this run, with another one, would replace; pass --vocab {dir} to train with it, or give another --out.", dir);
        // A Hugging Face fast tokenizer saved alone (tokenizer.json without vocab.txt) would be replaced as well.
        string json = Path.Combine(dir, Text.WordPiece.TokenizerJsonFileName);
        if (tokenizer is not null && !File.Exists(vocab) && File.Exists(json) && !SameTokenizer(json, tokenizer))
            throw new CheckpointException($"{dir} holds a tokenizer ({Text.WordPiece.TokenizerJsonFileName}) that this run, with another one, would replace; give another --out.", dir);
    }

    static bool SameTokenizer(string json, Text.WordPiece tokenizer)
    {
        try { return Text.WordPiece.FromTokenizerJson(json).Vocab.SequenceEqual(tokenizer.Vocab); }
        catch (Data.DataException) { return false; }
    }

    /// <summary>What identifies a run's data for <see cref="TryResume"/> (kept in trainer_state.json): a file by its full
    /// path, a named set or corpus by its lower-cased name; several joined in order. With <paramref name="isName"/> (the
    /// commands that take a folder of files), a folder that is not a name is identified by its full path too.</summary>
    public static string DataIdentity(IEnumerable<string> specs, Func<string, bool>? isName = null) =>
        string.Join(", ", specs.Select(s => File.Exists(s) ? Path.GetFullPath(s)
            : isName is not null && !isName(s) && Directory.Exists(s) ? Path.TrimEndingDirectorySeparator(Path.GetFullPath(s))
            : s.ToLowerInvariant()));

    /// <summary>The run's data (<see cref="DataIdentity"/>): resuming with other data is refused. Null: not compared.</summary>
    public string? Data { get; init; }

    /// <summary>A data file as a run found it: its full path and length.</summary>
    public sealed record DataFile(string Path, long Bytes);

    /// <summary>The files among <paramref name="specs"/> (folders already expanded) as they are now; with
    /// <paramref name="isName"/>, as in <see cref="DataIdentity"/>, a name is left out even where a file of that name exists.</summary>
    public static List<DataFile> DataFilesOf(IEnumerable<string> specs, Func<string, bool>? isName = null) =>
        specs.Where(f => File.Exists(f) && isName?.Invoke(f) != true).Select(f => new DataFile(Path.GetFullPath(f), new FileInfo(f).Length)).ToList();

    /// <summary>The run's data files as they were when it started (<see cref="DataFilesOf"/>, kept in trainer_state.json):
    /// resuming after one was added to a folder, removed or changed in length is refused, since the run would go on over
    /// other text than it began with. Null: not compared.</summary>
    public IReadOnlyList<DataFile>? DataFiles { get; init; }

    static string FileChanges(IReadOnlyList<DataFile> then, IReadOnlyList<DataFile> now)
    {
        var was = then.GroupBy(f => f.Path).ToDictionary(g => g.Key, g => g.First().Bytes);
        var @is = now.GroupBy(f => f.Path).ToDictionary(g => g.Key, g => g.First().Bytes);
        var changes = new List<string>();
        foreach (var f in now.Select(f => f.Path).Distinct())
            if (!was.TryGetValue(f, out long b)) changes.Add($"{f} was added");
            else if (b != @is[f]) changes.Add(string.Create(CultureInfo.InvariantCulture, $"{f} went from {b:N0} to {@is[f]:N0} bytes"));
        foreach (var f in then.Select(f => f.Path).Distinct())
            if (!@is.ContainsKey(f)) changes.Add($"{f} was removed");
        if (changes.Count == 0) return "their order changed";
        return changes.Count <= 3 ? string.Join("; ", changes) : string.Join("; ", changes.Take(3)) + $"; and {changes.Count - 3} more";
    }

    /// <summary>The run's state beside its checkpoint.</summary>
    public const string StateFile = "trainer_state.json";

    /// <summary>Restores weights, optimizer state and step from Dir when a resumable checkpoint is there.</summary>
    public bool TryResume()
    {
        if (Dir is null || CheckResumable() is not { } state) return false;
        var report = Checkpoint.Load(Dir, Model);
        bool hasOptimizer;
        string optimizerPath = Path.Combine(Dir, Checkpoint.OptimizerFile);
        try
        {
            using var s = Checkpoint.LoadOptimizerState(Dir);
            hasOptimizer = s is not null;
            if (s is not null) Optimizer.LoadState(s);
        }
        catch (InvalidDataException e) when (e.Message.StartsWith("The stream holds ", StringComparison.Ordinal))
        {
            throw new CheckpointException($"The run in {Dir} was trained with another optimizer ({e.Message.Split(';')[0]["The stream holds ".Length..]}); resume it with the --optimizer it used, or give another --out.", Dir);
        }
        catch (InvalidDataException e)
        {
            throw new CheckpointException($"{optimizerPath} cannot be read ({e.Message.TrimEnd('.')}); restore it, or move {Dir} away to start afresh.", Dir);
        }
        if (!hasOptimizer && state.Step > 0)
            throw new CheckpointException($"{Dir} holds a run at step {state.Step} but no optimizer state ({Checkpoint.OptimizerFile}), which resuming needs; restore the file, or start afresh from these weights (--from {Dir}) in another --out.", Dir);
        Step = state.Step;
        // A save writes the weights and the optimizer state together, then trainer_state.json: a process killed in
        // between leaves the state one save behind. The weights' own step (their metadata) then wins when the optimizer
        // agrees with it; anything else cannot be pieced together.
        long weightsStep = report.Metadata.TryGetValue("step", out var stepText) && long.TryParse(stepText, out long w) ? w : state.Step;
        bool optimizerFits = !hasOptimizer || Optimizer.StepCount == weightsStep;
        if (weightsStep > state.Step && hasOptimizer && optimizerFits)
        {
            Console.Error.WriteLine($"{Dir}/trainer_state.json is from step {state.Step} but the weights and optimizer state are from step {weightsStep} (the last save stopped before its last file); resuming from step {weightsStep}.");
            Step = weightsStep;
        }
        else if (weightsStep != state.Step || !optimizerFits)
            throw new CheckpointException($"{Dir} holds weights from step {weightsStep}, optimizer state from step {(hasOptimizer ? Optimizer.StepCount : 0)} and trainer_state.json from step {state.Step}, which do not belong together; resume from {Path.Combine(Dir, "best")} or delete {Dir} to start afresh.", Dir);
        if (state.BestScore is double b) Best = new EvalReport(state.BestLoss ?? double.NaN, state.BestMetrics ?? new Dictionary<string, double>(), b);
        Losses.AddRange(state.Losses.Select(l => ((long)l[0], l[1])));
        return true;
    }

    /// <summary>Checks, before any costly work (a large corpus's tokenizing), that Dir is new, empty or holds a run this
    /// one may continue: the model, experiment, data, recipe, steps and tokenizer <see cref="TryResume"/> would refuse,
    /// without reading the weights. Returns the run's state, or null when there is none to resume.</summary>
    TrainerState? CheckResumable()
    {
        if (Dir is null) return null;
        RequireRunOrEmpty(Dir, Tokenizer);
        string statePath = Path.Combine(Dir, StateFile);
        if (!File.Exists(statePath)) return null;
        var state = ReadState(Dir) is { Model: not null, Losses: not null } read ? read
            : throw new CheckpointException($"{statePath} is not a training state (empty or not the JSON `bert` writes), so the run there cannot be resumed; restore the file, or move the folder away to start afresh.", Dir);
        if (state.Model != Model.Info.Name)
            throw new CheckpointException($"{Dir} holds a run of {state.Model}, not {Model.Info.Name}; choose another output folder.", Dir);
        if (Experiment is not null && state.Experiment != Experiment)
            throw new CheckpointException($"{Dir} holds a run of {(state.Experiment is null ? "a command other than bert run" : "another declaration of this experiment (" + state.Experiment + ")")}, not of {Experiment}; move or delete the folder, or give bert run another --out.", Dir);
        if (state.Data is not null && Data is not null && state.Data != Data)
            throw new CheckpointException($"{Dir} holds a run on {state.Data}, not on {Data}; resuming it would mix the two, so give the same data to continue it, or another --out.", Dir);
        if (state.DataFiles is { } filesThen && DataFiles is { } filesNow && !filesThen.SequenceEqual(filesNow))
            throw new CheckpointException($"{Dir} holds a run on files that have changed since it started ({FileChanges(filesThen, filesNow)}); resuming would go on over other text, so put them back as they were to continue it, or start from its weights in another --out (--from {Dir}).", Dir);
        if (state.Recipe is { } was)
        {
            var now = Recipe();
            var changed = now.Where(kv => was.TryGetValue(kv.Key, out var v) && v != kv.Value).ToList();
            if (changed.Count > 0)
            {
                static string Say(string key, string value) => key == "dropout" ? $"dropout {value}" : $"{key} {(value == "" ? "(none)" : value)}";
                throw new CheckpointException($"{Dir} holds a run with {string.Join(", ", changed.Select(kv => Say(kv.Key, was[kv.Key])))}, not {string.Join(", ", changed.Select(kv => Say(kv.Key, kv.Value)))}; give the options it was started with to continue it, or another --out.", Dir);
            }
        }
        if (state.Step > TotalSteps)
            throw new CheckpointException($"The run in {Dir} is at step {state.Step}, past the {TotalSteps} steps asked for; ask for at least {state.Step} steps (or the epochs that make them) to continue it, or give another --out.", Dir);
        if (Tokenizer is not null) CheckpointTokenizer.Require(Tokenizer, Dir, "this run's tokenizer");
        return state;
    }

    /// <summary>Whether Dir holds a run that <see cref="TryResume"/> will continue; throws what it would refuse (see
    /// <see cref="CheckResumable"/>) before the caller's costly preparation.</summary>
    public bool CanResume() => CheckResumable() is not null;

    /// <summary>trainer_state.json. BestLoss and BestMetrics (the best evaluation's, so a resumed run reports it whole),
    /// and Data (the set or corpus the run trains on), are absent from states written before they were.</summary>
    sealed record TrainerState(string Model, long Step, long TotalSteps, double? BestScore, List<double[]> Losses,
        double? BestLoss = null, Dictionary<string, double>? BestMetrics = null, string? Experiment = null, string? Data = null,
        Dictionary<string, string>? Recipe = null, List<DataFile>? DataFiles = null);

    /// <summary>The options a run must keep to be continued (kept in trainer_state.json; a state written before it was is
    /// not compared): its start, seed, learning rate, batch, accumulation, warm-up and dropout (the optimizer: by its state). The epochs or
    /// steps may grow.</summary>
    Dictionary<string, string> Recipe() => new()
    {
        ["--from"] = Metadata?.GetValueOrDefault("from") ?? "",
        ["--seed"] = Options.Seed.ToString(CultureInfo.InvariantCulture),
        ["--lr"] = Options.LearningRate.ToString("R", CultureInfo.InvariantCulture),
        ["--batch"] = Options.BatchSize.ToString(CultureInfo.InvariantCulture),
        ["--accumulate"] = Options.Accumulate.ToString(CultureInfo.InvariantCulture),
        ["--warmup"] = Options.WarmupFraction.ToString("R", CultureInfo.InvariantCulture),
        ["dropout"] = Options.Dropout ? "on" : "off",
    };

    /// <summary>Runs from the current step to TotalSteps, or until cancelled (then saves a resumable checkpoint). With a
    /// <see cref="Device"/>, the steps (forward, backward, clipping, AdamW) and the evaluation's forwards run there, on the
    /// same batches, seeds and schedule; the CPU model receives the weights before every save and evaluation, and the step
    /// metrics come from <see cref="DeviceMetrics"/> (left out without it).</summary>
    public void Run(Action<StepReport>? progress, CancellationToken cancel)
    {
        var schedule = new LinearWarmupDecay(Options.LearningRate, (long)(Options.WarmupFraction * TotalSteps), TotalSteps);
        var sw = Stopwatch.StartNew();
        long tokens = 0, startStep = Step;
        int accumulate = Math.Max(1, Options.Accumulate);
        Device?.Upload(Model, Optimizer);
        if (Device is not null) Device.CountAccuracy = DeviceMetrics is not null;
        try
        {
            while (Step < TotalSteps)
            {
                if (cancel.IsCancellationRequested) { SyncFromDevice(); Save(Dir, interrupted: true); return; }
                if (Device is null) Model.ZeroGradients(); else Device.ZeroGradients();
                double loss = 0;
                var metrics = new Dictionary<string, double>();
                for (int micro = 0; micro < accumulate; micro++)
                {
                    long index = Step * accumulate + micro;
                    Model.InputsOnly = Device is not null;   // the device runs the step: the CPU model keeps the inputs only
                    tokens += Bind(index);
                    float l = Device?.ForwardBackward(Model, Options.Dropout, StepSeed(index)) ?? Model.Forward(training: Options.Dropout, seed: StepSeed(index))[0];
                    if (!float.IsFinite(l))
                        throw new TrainingException($"The loss became {l} at step {Step + 1}; {Kept()}; lower the learning rate or check the data.");
                    loss += l / accumulate;
                    if (Device is not null)
                    {
                        if (DeviceMetrics is not null) foreach (var (k, v) in DeviceMetrics(Device.LastAccuracy)) metrics[k] = metrics.GetValueOrDefault(k) + v / accumulate;
                        continue;
                    }
                    if (StepMetrics is not null) foreach (var (k, v) in StepMetrics()) metrics[k] = metrics.GetValueOrDefault(k) + v / accumulate;
                    Model.Backward();
                }
                double lr = schedule.At(Step);
                if (Device is null)
                {
                    var grads = Model.Gradients;
                    if (accumulate > 1) GradientAccumulator.Scale(grads, 1f / accumulate);
                    if (!GradientClipping.AllFinite<float>(grads))
                        throw new TrainingException($"The gradients became non-finite at step {Step + 1}; {Kept()}; lower the learning rate.");
                    GradientClipping.ClipByGlobalNorm(grads, Options.ClipNorm);
                    Optimizer.Step(Model.Parameters, grads, lr);
                }
                else
                {
                    if (!double.IsFinite(Device.ClipGradients(accumulate, Options.ClipNorm)))
                        throw new TrainingException($"The gradients became non-finite at step {Step + 1}; {Kept()}; lower the learning rate.");
                    Device.Step(lr);
                }
                Step++;
                Losses.Add((Step, loss));
                var elapsed = sw.Elapsed;
                double perStep = elapsed.TotalSeconds / Math.Max(1, Step - startStep);
                progress?.Invoke(new StepReport(Step, TotalSteps, loss, lr, tokens / Math.Max(1e-9, elapsed.TotalSeconds), elapsed,
                    TimeSpan.FromSeconds(perStep * (TotalSteps - Step)), metrics));
                bool last = Step == TotalSteps;
                if (Options.SaveEvery > 0 && Step % Options.SaveEvery == 0 && !last) { SyncFromDevice(); Save(Dir, interrupted: false); }
                if (Evaluate is not null && ((Options.EvalEvery > 0 && Step % Options.EvalEvery == 0) || last))
                {
                    SyncFromDevice();
                    Model.Runner = Device;   // on a device, the evaluation's forwards run there too
                    EvalReport e;
                    try { e = Evaluate(); }
                    finally { Model.Runner = null; }
                    bool better = Best is null || e.Score > Best.Score;
                    if (better)
                    {
                        Best = e;
                        if (Dir is not null) Save(Path.Combine(Dir, "best"), interrupted: false);
                    }
                    Evaluated?.Invoke(Step, e, better);
                }
            }
            SyncFromDevice();
            Save(Dir, interrupted: false);
        }
        finally { Model.InputsOnly = false; }
    }

    /// <summary>With a device: its weights and optimizer state into the CPU model and optimizer, which then evaluate or
    /// save (and may run Forward: the inputs-only binding ends).</summary>
    void SyncFromDevice()
    {
        if (Device is null) return;
        Device.Download(Model, Optimizer);
        Model.InputsOnly = false;
    }

    /// <summary>What a stopped run leaves behind: the step of the checkpoint on disk (nothing is written after a
    /// non-finite loss, so it is the last good one), or that there is none.</summary>
    string Kept()
    {
        if (Dir is null) return "nothing was saved";
        string path = Path.Combine(Dir, "trainer_state.json");
        TrainerState? saved = null;
        try { if (File.Exists(path)) saved = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path)); }
        catch (Exception e) when (e is JsonException or IOException) { }
        return saved is null ? $"no checkpoint had been saved in {Dir} yet" : $"the last good checkpoint (step {saved.Step}) is in {Dir}";
    }

    ulong StepSeed(long microIndex) => Options.Seed * 0x9E3779B97F4A7C15UL ^ (ulong)microIndex * 0xBF58476D1CE4E5B9UL;

    void Save(string? dir, bool interrupted)
    {
        if (dir is null) return;
        var meta = new Dictionary<string, string>(Metadata ?? new Dictionary<string, string>()) { ["step"] = Step.ToString() };
        if (Tokenizer is not null) foreach (var (k, v) in CheckpointTokenizer.Stamp(Tokenizer)) meta[k] = v;
        IReadOnlyList<string>? labels = Labels is null ? null : Enumerable.Range(0, (int)Model.Info.Constants.GetValueOrDefault("Classes", Labels.Count))
            .Select(i => i < Labels.Count ? Labels[i] : $"LABEL_{i}").ToList();
        Checkpoint.Save(dir, Model, meta, optimizerState: s => Optimizer.SaveState(s), labels: labels);
        Tokenizer?.Save(dir, Model.Info.MaxLen);
        var state = new TrainerState(Model.Info.Name, Step, TotalSteps, Best?.Score, Losses.Select(l => new[] { (double)l.Step, l.Loss }).ToList(),
            Best is { Loss: var bl } && double.IsFinite(bl) ? bl : null, Best is null ? null : new Dictionary<string, double>(Best.Metrics), Experiment, Data, Recipe(), DataFiles?.ToList());
        AtomicFile.Write(Path.Combine(dir, StateFile), s => JsonSerializer.Serialize(s, state));
        if (interrupted) Console.Error.WriteLine($"Stopped at step {Step}; a resumable checkpoint is in {dir} (run the same command again to continue).");
    }
}
