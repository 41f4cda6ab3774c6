// The CPU benchmark of issue 5, all in one run (medians; our runs and ONNX Runtime's interleaved so both see
// the same background load):
//   1. inference of BERT-Mini and BERT-Base classifiers at T=128 — latency at B=1, throughput at B=32 — ours
//      (Bind(B, T, 0, training: false) + Forward) against ONNX Runtime (ORT_ENABLE_ALL, 2 intra-op threads)
//      running the model our exporter wrote, with the same weights;
//   2. training tokens/s of BERT-Mini and BERT-Base pre-training at T=128 (forward, backward, AdamW step) and
//      its fraction of the GEMM-bound: Catalog.FlopsPerToken at the sgemm rate measured in this run;
//   3. peak memory of each: our planned bytes (arena + parameters [+ gradients + AdamW moments]) and the
//      process's peak resident set above the level before the phase (VmHWM after resetting it through
//      /proc/self/clear_refs), the only measure that also sees ONNX Runtime's native allocations.
// Usage: bench/cpu/run.sh [--quick | --profile | --latency | --profile-train | --gemm-training | --attention | --torch]   (--torch: training against PyTorch's CPU step, see TrainingAgainstTorch)
using System.Diagnostics;
using Bert.Export;
using Bert.Models;
using Bert.Runtime;
using Bert.Runtime.Kernels;
using Bert.Runtime.Training;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;

bool quick = args.Contains("--quick");
if (args.Contains("--profile")) { ProfileInference(); return; }
if (args.Contains("--latency")) { LatencyCurve(); return; }
if (args.Contains("--profile-train")) { ProfileTraining(); return; }
if (args.Contains("--gemm-training")) { GemmTrainingShapes(); return; }
if (args.Contains("--attention")) { AttentionShapes(); return; }
const int T = 128, OrtThreads = 2;
var cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':')[1].Trim() ?? "unknown CPU";
Console.WriteLine($"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC · {cpu} · {Environment.ProcessorCount} cores · {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1 << 30)} GiB · .NET {Environment.Version}");
Console.WriteLine($"GEMM: {Gemm.Describe()}; element-wise kernels: {Simd.Describe()}");
if (args.Contains("--torch")) { TrainingAgainstTorch(quick); return; }
Console.WriteLine($"ONNX Runtime {OrtEnv.Instance().GetVersionString()}: GraphOptimizationLevel ORT_ENABLE_ALL, IntraOpNumThreads {OrtThreads}, sequential execution");
Console.WriteLine($"load average at start: {LoadAverage()}");
Console.WriteLine();

// ---- the sgemm rate, per model, on its biggest shape (x·W1ᵀ of the FFN at the training batch) ----
var sgemm = new Dictionary<string, double>();
foreach (var (size, B) in new[] { ("mini", 32), ("base", 8) })
{
    var info = Catalog.Get(size, "pretraining").Info;
    int C = (int)info.Constants["Hidden"], F = (int)info.Constants["Ffn"];
    sgemm[size] = GemmRate(B * T, F, C, quick ? 0.3 : 1.5);
    Console.WriteLine($"sgemm {B * T}×{F}×{C} (x·Wᵀ, {size} FFN at B={B}): {sgemm[size]:F1} GFLOP/s");
}
Console.WriteLine();

// ---- 1. inference against ONNX Runtime ----
var inferRows = new List<string>();
foreach (var size in new[] { "mini", "base" })
{
    var entry = Catalog.Get(size, "classifier");
    ResetPeak(); long before = Rss();
    var model = entry.Create();
    model.InitParameters(1);
    model.Bind(32, T, 0, training: false);
    SetInputs(model, 32, 0, new Random(1));
    model.Forward();
    long oursPeak = Hwm() - before;
    long oursPlanned = model.ArenaBytes + model.Info.ParameterCount * 4;

    var onnx = OnnxExport.Build(model.Info, model.Parameters).ToByteArray();
    ResetPeak(); before = Rss();
    using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = OrtThreads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };
    using var session = new InferenceSession(onnx, options);
    using (var warm = new OrtBatch(session, 32, new Random(1))) warm.Run();
    long ortPeak = Hwm() - before;
    onnx = null;

    foreach (var B in new[] { 1, 32 })
    {
        var rng = new Random(B);
        model.Bind(B, T, 0, training: false);
        var ids = SetInputs(model, B, 0, rng);
        using var ort = new OrtBatch(session, B, ids);
        model.Forward(); ort.Run();               // warm-up at this shape
        double rel = Compare(model, ort);
        double budget = quick ? 1 : size == "base" && B == 32 ? 40 : 12;
        int minReps = quick ? 2 : B == 32 && size == "base" ? 3 : 5, maxReps = quick ? 3 : 200;
        var (ours, theirs) = Interleaved(() => model.Forward(), ort.Run, minReps, maxReps, budget);
        double o = Median(ours), t = Median(theirs);
        string what = B == 1 ? "latency" : "throughput";
        string oursS = B == 1 ? $"{o * 1000:F1} ms" : $"{B / o:F1} seq/s", theirsS = B == 1 ? $"{t * 1000:F1} ms" : $"{B / t:F1} seq/s";
        Console.WriteLine($"{entry.Info.Name} B={B} T={T} {what}: ours {oursS}, ONNX Runtime {theirsS}, ours/ORT speed {t / o:F2}× ({ours.Count} + {theirs.Count} reps; max |Δlogit|/max|logit| {rel:E1}; load {LoadAverage()})");
        inferRows.Add($"| {size} | {B} | {what} | {oursS} | {theirsS} | **{t / o:F2}×** |");
    }
    Console.WriteLine($"{entry.Info.Name} memory: ours planned {Mib(oursPlanned)} (arena at B=32 {Mib(model.ArenaBytes)} + parameters {Mib(model.Info.ParameterCount * 4)}), process peak +{Mib(oursPeak)}; ONNX Runtime process peak +{Mib(ortPeak)} (session creation + one B=32 run)");
    inferRows.Add($"| {size} | memory | peak | planned {Mib(oursPlanned)}, RSS +{Mib(oursPeak)} | RSS +{Mib(ortPeak)} | |");
    Console.WriteLine();
}

// ---- 2. training against the GEMM-bound ----
var trainRows = new List<string>();
foreach (var (size, B, steps) in new[] { ("mini", 32, quick ? 2 : 6), ("base", 8, quick ? 1 : 4) })
{
    var entry = Catalog.Get(size, "pretraining");
    int G = (int)(B * T * 0.15);
    ResetPeak(); long before = Rss();
    var (model, opt) = Trainer(entry, B, G);
    var times = new List<double>();
    for (int s = 0; s <= steps; s++)
    {
        var sw = Stopwatch.StartNew();
        Step(model, opt, (ulong)s);
        if (s > 0) times.Add(sw.Elapsed.TotalSeconds);     // step 0 warms up
    }
    long peak = Hwm() - before;
    long planned = model.ArenaBytes + model.Info.ParameterCount * 4 * 4;   // arena + parameters, gradients, m, v
    double step = Median(times), tps = B * T / step;
    double flopsPerToken = Catalog.FlopsPerToken(model.Info, T, (double)G / (B * T));
    double achieved = flopsPerToken * tps / 1e9, frac = achieved / sgemm[size];
    Console.WriteLine($"{entry.Info.Name} training B={B} T={T} G={G}: {step * 1000:F0} ms/step, {tps:F0} tokens/s, {flopsPerToken / 1e6:F1} MFLOP/token → {achieved:F1} GFLOP/s = {frac:P0} of the GEMM-bound ({sgemm[size]:F1} GFLOP/s) (median of {steps}; load {LoadAverage()})");
    Console.WriteLine($"{entry.Info.Name} memory: planned {Mib(planned)} (arena {Mib(model.ArenaBytes)}, parameters + gradients + AdamW m, v {Mib(model.Info.ParameterCount * 16)}), process peak +{Mib(peak)}");
    trainRows.Add($"| {size} | {B} | {step * 1000:F0} ms | {tps:F0} | {achieved:F1} | {sgemm[size]:F1} | **{frac:P0}** | planned {Mib(planned)}, RSS +{Mib(peak)} |");
}

Console.WriteLine();
Console.WriteLine($"load average at end: {LoadAverage()}");
Console.WriteLine();
Console.WriteLine("| model | B | measure | ours | ONNX Runtime | ours/ORT |");
Console.WriteLine("| --- | ---: | --- | ---: | ---: | ---: |");
inferRows.ForEach(Console.WriteLine);
Console.WriteLine();
Console.WriteLine("| model | B | step | tokens/s | GFLOP/s | sgemm GFLOP/s | of GEMM-bound | memory |");
Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
trainRows.ForEach(Console.WriteLine);

// ---- helpers ----

// `--torch`: a pre-training step (forward with dropout, masked LM + next sentence, backward, AdamW) of BERT-Mini at B=32
// and BERT-Base at B=8, T=128, ours against PyTorch's eager CPU step (bench/cpu/torch_train.py: the masked-LM head over
// every position as transformers' BertForPreTraining computes it, and over the masked rows only), each in its own
// process for torch, in rounds that alternate the three so that each sees the same background load; medians.
// PYTHON names the interpreter (default: the first of python3 and /usr/bin/python3 that imports torch).
static void TrainingAgainstTorch(bool quick)
{
    string python = Environment.GetEnvironmentVariable("PYTHON") is { Length: > 0 } p ? p
        : new[] { "python3", "/usr/bin/python3" }.FirstOrDefault(py => RunPython(py, "-c", "import torch").Code == 0)
          ?? throw new InvalidOperationException("No python3 here imports torch; install it (pip install torch, or apt-get install python3-torch) or name an interpreter with PYTHON.");
    string script = Path.Combine("bench", "cpu", "torch_train.py");
    Console.WriteLine($"load average at start: {LoadAverage()}");
    Console.WriteLine();
    int rounds = quick ? 1 : 3;
    var rows = new List<string>();
    foreach (var (size, B, steps) in new[] { ("mini", 32, quick ? 2 : 4), ("base", 8, quick ? 1 : 2) })
    {
        var entry = Catalog.Get(size, "pretraining");
        var (model, opt) = Trainer(entry, B, (int)(B * T * 0.15));
        var ours = new List<double>();
        var torch = new Dictionary<string, List<double>> { ["masked"] = [], ["all"] = [] };
        ulong seed = 0;
        Step(model, opt, seed++);   // warms up, as torch_train.py's two
        for (int r = 0; r < rounds; r++)
        {
            for (int s = 0; s < steps; s++)
            {
                var sw = Stopwatch.StartNew();
                Step(model, opt, seed++);
                ours.Add(sw.Elapsed.TotalMilliseconds);
            }
            foreach (var mlm in torch.Keys)
            {
                var (code, output) = RunPython(python, script, "--size", size, "--batch", $"{B}", "--seq", $"{T}", "--steps", $"{steps}",
                    "--threads", $"{Environment.ProcessorCount}", "--mlm", mlm);
                var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("ms_per_step="))
                    ?? throw new InvalidOperationException($"{script} failed (exit {code}): {output}");
                torch[mlm].Add(double.Parse(line["ms_per_step=".Length..], System.Globalization.CultureInfo.InvariantCulture));
                if (size == "mini" && r == 0 && mlm == "masked") Console.WriteLine($"PyTorch ({python}): {output.Split('\n')[0].Trim()}");
            }
            Console.WriteLine($"{entry.Info.Name} B={B} round {r + 1}: ours {Median(ours.TakeLast(steps).ToList()):F0} ms, torch masked rows {torch["masked"][^1]:F0} ms, torch every position {torch["all"][^1]:F0} ms (load {LoadAverage()})");
        }
        double o = Median(ours), tm = Median(torch["masked"]), ta = Median(torch["all"]);
        rows.Add($"| {entry.Info.Name} | {B} | {o:F0} ms | {ta:F0} ms | **{ta / o:F2}×** | {tm:F0} ms | **{tm / o:F2}×** |");
    }
    Console.WriteLine();
    Console.WriteLine($"load average at end: {LoadAverage()}");
    Console.WriteLine();
    Console.WriteLine("| model | B | ours | PyTorch, MLM over every position (as transformers) | ratio | PyTorch, MLM over masked rows | ratio |");
    Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    rows.ForEach(Console.WriteLine);
    Console.WriteLine("ratio = PyTorch's step ÷ ours (> 1: ours is faster); T = 128, dropout 0.1, AdamW, medians");
}

static (int Code, string Out) RunPython(string python, params string[] args)
{
    var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
    foreach (var a in args) psi.ArgumentList.Add(a);
    try
    {
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output + err.Result);
    }
    catch (System.ComponentModel.Win32Exception) { return (-1, $"{python} not found"); }
}

// `--profile-train`: where a BERT-Mini pre-training step (B = 32, T = 128, dropout) goes, per op kind, forward and backward
// apart, plus clearing the gradients and AdamW; medians over PROFILE_REPS steps (default 8) after two warm-up steps.
static void ProfileTraining()
{
    // PROFILE_SIZE (mini, base, …) and PROFILE_BATCH pick another model and batch (default BERT-Mini, B = 32).
    string size = Environment.GetEnvironmentVariable("PROFILE_SIZE") ?? "mini";
    var entry = Catalog.Get(size, "pretraining");
    int B = int.TryParse(Environment.GetEnvironmentVariable("PROFILE_BATCH"), out int pb) ? pb : size == "mini" ? 32 : 8, G = (int)(B * T * 0.15);
    var (model, opt) = Trainer(entry, B, G);
    var ops = model.Info.Ops;
    var sums = new Dictionary<string, List<double>>();
    var totals = new List<double>();
    int reps = int.TryParse(Environment.GetEnvironmentVariable("PROFILE_REPS"), out int pr) ? pr : 8;
    for (int rep = 0; rep < reps + 2; rep++)
    {
        var acc = new Dictionary<string, double>();
        var sw = Stopwatch.StartNew();
        string phase = "fwd"; int current = -1; double at = 0;
        void Close(double now) { if (current >= 0) { string k = $"{phase} {Kind(ops[current])}"; acc[k] = acc.GetValueOrDefault(k) + now - at; } }
        model.OnOp = id => { double now = sw.Elapsed.TotalMilliseconds; Close(now); current = id; at = now; };
        model.Forward(training: true, seed: (ulong)rep);
        Close(sw.Elapsed.TotalMilliseconds); current = -1;
        double t0 = sw.Elapsed.TotalMilliseconds;
        model.ZeroGradients();
        acc["zero gradients"] = sw.Elapsed.TotalMilliseconds - t0;
        phase = "bwd";
        model.Backward();
        Close(sw.Elapsed.TotalMilliseconds); current = -1;
        model.OnOp = null;
        t0 = sw.Elapsed.TotalMilliseconds;
        opt.Step(model.Parameters, model.Gradients, 1e-4f);
        double end = sw.Elapsed.TotalMilliseconds;
        acc["AdamW step"] = end - t0;
        if (rep < 2) continue;
        totals.Add(end);
        foreach (var (k, v) in acc) (sums.TryGetValue(k, out var l) ? l : sums[k] = []).Add(v);
    }
    double total = Median(totals);
    Console.WriteLine($"{entry.Info.Name} training B={B} T={T} G={G}: {total:F0} ms a step (median of {totals.Count}); {Gemm.Describe()}; {Simd.Describe()}");
    foreach (var (k, l) in sums.OrderByDescending(x => Median(x.Value)))
        Console.WriteLine($"  {k,-48} {Median(l),9:F2} ms  {Median(l) / total,6:P1}");
}

// A pre-training model of the entry's, bound for B × T with G masked rows, its inputs set, and its AdamW.
static (Model<float> Model, AdamW<float> Optimizer) Trainer(Catalog.Entry entry, int B, int G)
{
    var model = entry.Create();
    model.InitParameters(1);
    model.Bind(B, T, G, training: true);
    SetInputs(model, B, G, new Random(1));
    return (model, new AdamW<float>(model.Info));
}

// One training step: forward with dropout, backward, AdamW.
static void Step(Model<float> model, AdamW<float> opt, ulong seed)
{
    model.Forward(training: true, seed: seed);
    model.ZeroGradients();
    model.Backward();
    opt.Step(model.Parameters, model.Gradients, 1e-4f);
}

// How the profiles name an op: a product by its shapes, a fused kernel by its label, any other by its kind.
static string Kind(Bert.Runtime.OpInfo op) => op.Kind switch
{
    Bert.Runtime.OpKind.Linear or Bert.Runtime.OpKind.MatMul => $"{op.Kind} {op.InputShapes.FirstOrDefault()} -> {op.OutputShape}",
    Bert.Runtime.OpKind.Pointwise => "pointwise " + op.Label,
    _ => op.Kind.ToString(),
};

// A classifier of this size with fresh weights, bound for inference at B = 1, T = 128, its inputs set (the ids returned).
static (Catalog.Entry Entry, Model<float> Model, int[] Ids) ClassifierAtB1(string size)
{
    var entry = Catalog.Get(size, "classifier");
    var model = entry.Create();
    model.InitParameters(1);
    model.Bind(1, T, 0, training: false);
    return (entry, model, SetInputs(model, 1, 0, new Random(1)));
}

// `--latency`: B = 1 forwards one after another from a cold start, BERT-Mini and BERT-Base classifiers at T = 128: the
// median of each block of 20 (so the JIT's tiering shows: about twice as slow for the first 40-140 forwards), ours
// alone, ONNX Runtime's alone, then the two strictly interleaved, back to back and 50 ms apart, to tell warm-up from
// interference. ORT_SPIN=0 turns ONNX Runtime's thread spinning off (session.intra_op.allow_spinning); LATENCY_ALONE=1
// prints only our cold-start curve.
static void LatencyCurve()
{
    foreach (var size in new[] { "mini", "base" })
    {
        var (entry, model, ids) = ClassifierAtB1(size);
        int reps = size == "mini" ? 400 : 120;
        var alone = new List<double>();
        for (int r = 0; r < reps; r++) { var sw = Stopwatch.StartNew(); model.Forward(); alone.Add(sw.Elapsed.TotalMilliseconds); }
        if (Environment.GetEnvironmentVariable("LATENCY_ALONE") == "1")
        {
            Console.WriteLine($"{entry.Info.Name} B=1, ours alone from cold, medians of blocks of 20: {string.Join(" ", alone.Chunk(20).Select(c => Median([.. c]).ToString("F1")))}");
            continue;
        }
        var onnx = OnnxExport.Build(model.Info, model.Parameters).ToByteArray();
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = 2, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL };
        if (Environment.GetEnvironmentVariable("ORT_SPIN") == "0") options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        using var session = new InferenceSession(onnx, options);
        using var ort = new OrtBatch(session, 1, ids);
        var ortAlone = new List<double>();
        for (int r = 0; r < reps / 2; r++) { var sw = Stopwatch.StartNew(); ort.Run(); ortAlone.Add(sw.Elapsed.TotalMilliseconds); }
        string Blocks(List<double> xs) => string.Join(" ", xs.Chunk(20).Select(c => Median([.. c]).ToString("F1")));
        Console.WriteLine($"{entry.Info.Name} B=1 T={T}, ms, medians of blocks of 20 forwards:");
        Console.WriteLine($"  ours alone, from cold:                {Blocks(alone)}");
        Console.WriteLine($"  ORT alone:                            {Blocks(ortAlone)}");
        foreach (int pause in new[] { 0, 50 })
        {
            var ours = new List<double>(); var theirs = new List<double>();
            for (int r = 0; r < reps / 2; r++)
            {
                var sw = Stopwatch.StartNew(); model.Forward(); ours.Add(sw.Elapsed.TotalMilliseconds);
                if (pause > 0) Thread.Sleep(pause);
                sw.Restart(); ort.Run(); theirs.Add(sw.Elapsed.TotalMilliseconds);
                if (pause > 0) Thread.Sleep(pause);
            }
            Console.WriteLine($"  interleaved, {pause,2} ms apart: ours    {Blocks(ours)}");
            Console.WriteLine($"  interleaved, {pause,2} ms apart: ORT     {Blocks(theirs)}");
        }
    }
}

// `--profile`: where the time of a B = 1 forward goes, per op kind (the model's OnOp hook with a stopwatch; medians of
// the per-kind sums over the last 30 of PROFILE_REPS forwards, default 200: the JIT's tiering needs about a hundred
// forwards before the kernels run their optimized code, and the first few dozen are 2-3× slower), for BERT-Mini and
// BERT-Base classifiers at T = 128.
static void ProfileInference()
{
    foreach (var size in new[] { "mini", "base" })
    {
        var (entry, model, _) = ClassifierAtB1(size);
        var ops = model.Info.Ops;
        var sums = new Dictionary<string, List<double>>();
        var totals = new List<double>();
        int reps = int.TryParse(Environment.GetEnvironmentVariable("PROFILE_REPS"), out int pr) ? pr : 200;
        for (int rep = 0; rep < reps; rep++)
        {
            var acc = new Dictionary<string, double>();
            var sw = Stopwatch.StartNew();
            int current = -1; double at = 0;
            model.OnOp = id =>
            {
                double now = sw.Elapsed.TotalMilliseconds;
                if (current >= 0) { string k = Kind(ops[current]); acc[k] = acc.GetValueOrDefault(k) + now - at; }
                current = id; at = now;
            };
            model.Forward();
            double end = sw.Elapsed.TotalMilliseconds;
            if (current >= 0) { string k = Kind(ops[current]); acc[k] = acc.GetValueOrDefault(k) + end - at; }
            model.OnOp = null;
            if (rep < reps - 30) continue;
            totals.Add(end);
            foreach (var (k, v) in acc) (sums.TryGetValue(k, out var l) ? l : sums[k] = []).Add(v);
        }
        double total = Median(totals);
        Console.WriteLine($"{entry.Info.Name} B=1 T={T}: {total:F2} ms (median of {totals.Count}); {Gemm.Describe()}");
        foreach (var (k, l) in sums.OrderByDescending(x => Median(x.Value)))
            Console.WriteLine($"  {k,-40} {Median(l),8:F3} ms  {Median(l) / total,6:P1}");
    }
}

// `--gemm-training`: the GEMM backend on BERT-Mini's training products at B = 32, T = 128 (FFN in and out, the masked-LM
// decoder over G = 614 rows), each in its three forms: the forward y = x·Wᵀ, the input gradient dX = dY·W and the weight
// gradient dW = dYᵀ·X; medians over 1 s each.
static void GemmTrainingShapes()
{
    // Twice: the first pass runs slower for about a second per form (bench/RESULTS.md).
    for (int pass = 1; pass <= 2; pass++)
    foreach (var (name, rows, outF, inF) in new[] { ("FFN in", 4096, 1024, 256), ("FFN out", 4096, 256, 1024), ("MLM decoder", 614, 30522, 256) })
    {
        double fwd = GemmRate(rows, outF, inF, 1), dx = GemmRate(rows, inF, outF, 1, transB: false), dw = GemmRate(outF, inF, rows, 1, transA: true, transB: false);
        Console.WriteLine($"pass {pass}: {name,-12} [{rows}×{inF}]·Wᵀ[{outF}×{inF}]: forward {fwd:F1}, dX {dx:F1}, dW {dw:F1} GFLOP/s");
    }
}

// `--attention`: the CPU attention kernel alone on BERT-Mini's (B = 32, H = 4) and BERT-Base's (B = 8, H = 12) training
// shapes at T = 128, forward and backward, with and without attention dropout; then one head's products alone and the
// dropout mask alone. Medians and minima (best) over 2 s each; the per-layer GFLOP/s counts the products only (forward
// 2, backward 4 of B·H·T·T·D multiply-adds each) at the minimum; the one-head lines give the median's rate and the best's.
static void AttentionShapes()
{
    const int T = 128;
    foreach (var (name, B, C, H) in new[] { ("BERT-Mini", 32, 256, 4), ("BERT-Base", 8, 768, 12) })
    foreach (float dropout in new[] { 0f, 0.1f })
    {
        var rng = new Random(1);
        var qkv = Enumerable.Range(0, B * T * 3 * C).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var dOut = Enumerable.Range(0, B * T * C).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var mask = Enumerable.Range(0, B * T).Select(i => i % T < T - 8 * (i / T % 4) ? 1 : 0).ToArray();
        var out_ = new float[B * T * C]; var probs = new float[B * H * T * T]; var dQkv = new float[B * T * 3 * C];
        ulong seed = 7;
        var (fwd, fwdBest) = Time(() => Attention.Forward<float>(out_, probs, qkv, mask, B, T, C, H, dropout, seed++, 3, training: true));
        var (bwd, bwdBest) = Time(() => Attention.Backward<float>(dQkv, dOut, qkv, probs, mask, B, T, C, H, dropout, seed, 3, training: true, accumulate: false));
        double macs = (double)B * H * T * T * (C / H);
        Console.WriteLine($"{name,-9} B={B,-2} dropout {dropout:F1}: forward {fwd * 1e3,6:F2} ms (best {fwdBest * 1e3,6:F2}; {2 * 2 * macs / fwdBest / 1e9,5:F1} GFLOP/s), " +
            $"backward {bwd * 1e3,6:F2} ms (best {bwdBest * 1e3,6:F2}; {4 * 2 * macs / bwdBest / 1e9,5:F1} GFLOP/s) per layer");
    }

    // one head's products alone on one thread, operands hot in cache
    {
        int Tq = 128, D = 64, ld = 768;
        var q = new float[Tq * ld]; var p = new float[Tq * Tq]; var o = new float[Tq * ld];
        for (int i = 0; i < q.Length; i++) q[i] = (i % 7) * 0.01f;
        for (int i = 0; i < p.Length; i++) p[i] = (i % 5) * 0.01f;
        foreach (var (what, run) in new (string, Action)[] {
            ("Q·Kᵀ  (NT, 128×128×64)", () => ManagedGemm.Run(false, true, Tq, Tq, D, 1f, q, ld, q.AsSpan(64), ld, 0f, o, Tq, 1)),
            ("P·V   (NN, 128×64×128)", () => ManagedGemm.Run(false, false, Tq, D, Tq, 1f, p, Tq, q, ld, 0f, o, ld, 1)),
            ("Pᵀ·dO (TN, 128×64×128)", () => ManagedGemm.Run(true, false, Tq, D, Tq, 1f, p, Tq, q, ld, 0f, o, ld, 1)) })
        {
            var (med, best) = Time(run);
            Console.WriteLine($"one thread, hot: {what}: {2.0 * Tq * Tq * D / med / 1e9:F1} GFLOP/s (best {2.0 * Tq * Tq * D / best / 1e9:F1})");
        }
    }

    // the dropout mask alone (attention's and the fused kernels'): one thread, 2^20 decisions a call
    {
        var ks = new float[1 << 20];
        ulong at = 0;
        var (med, best) = Time(() => { Philox.FillKeepScales<float>(ks, 7, 3, at, 0.1f, 1f / 0.9f); at += 1UL << 20; });
        Console.WriteLine($"one thread: dropout keep mask (Philox4x32-10) {med * 1e9 / ks.Length:F2} ns an element (best {best * 1e9 / ks.Length:F2})");
    }

    // median and minimum over 2 s after 3 untimed calls (this VM's slowdowns come and go: the minimum moves less)
    static (double Median, double Best) Time(Action a)
    {
        for (int i = 0; i < 3; i++) a();
        var times = new List<double>();
        var total = Stopwatch.StartNew();
        while (total.Elapsed.TotalSeconds < 2 || times.Count < 5) { var sw = Stopwatch.StartNew(); a(); times.Add(sw.Elapsed.TotalSeconds); }
        return (Median(times), times.Min());
    }
}

// GFLOP/s of C (m×n) = op(A)·op(B) over k, by default x·Wᵀ (A m×k, B n×k); the median over `seconds` after one untimed call
// (GEMM_BEST=1: the fastest call instead, which this VM's passing slowdowns move less; the main run's GEMM table too).
static double GemmRate(int m, int n, int k, double seconds, bool transA = false, bool transB = true)
{
    var a = new float[m * k]; var b = new float[n * k]; var c = new float[m * n];
    for (int i = 0; i < a.Length; i++) a[i] = (i % 7) * 0.01f;
    for (int i = 0; i < b.Length; i++) b[i] = (i % 5) * 0.01f;
    int lda = transA ? m : k, ldb = transB ? k : n;
    Gemm.Run(transA, transB, m, n, k, 1f, a, lda, b, ldb, 0f, c, n);
    var times = new List<double>();
    var total = Stopwatch.StartNew();
    while (total.Elapsed.TotalSeconds < seconds || times.Count < 3)
    {
        var sw = Stopwatch.StartNew();
        Gemm.Run(transA, transB, m, n, k, 1f, a, lda, b, ldb, 0f, c, n);
        times.Add(sw.Elapsed.TotalSeconds);
    }
    return 2.0 * m * n * k / (Environment.GetEnvironmentVariable("GEMM_BEST") == "1" ? times.Min() : Median(times)) / 1e9;
}

// Random ids (types: second half 1, mask all 1, rows the first G positions of a shuffle, labels in range);
// returns the ids, which ONNX Runtime is fed too.
static int[] SetInputs(Model<float> model, int B, int G, Random rng)
{
    int V = (int)model.Info.Constants["Vocab"];
    var ids = Enumerable.Range(0, B * T).Select(_ => rng.Next(1, V)).ToArray();
    foreach (var i in model.Info.Inputs)
    {
        int n = i.Shape.Aggregate(1, (a, d) => a * (d == -1 ? B : d == -2 ? T : d == -3 ? G : d));
        switch (i.Kind)
        {
            case InputKind.Tokens: model.SetInput(i.Name, i.Name == "types" ? Enumerable.Range(0, n).Select(k => k % T < T / 2 ? 0 : 1).ToArray() : ids); break;
            case InputKind.Mask: model.SetInput(i.Name, Enumerable.Repeat(1, n).ToArray()); break;
            case InputKind.Rows: model.SetInput(i.Name, Enumerable.Range(0, B * T).OrderBy(_ => rng.Next()).Take(n).ToArray()); break;
            case InputKind.Labels: model.SetInput(i.Name, Enumerable.Range(0, n).Select(_ => rng.Next(i.Shape.Contains(-3) ? V : 2)).ToArray()); break;
        }
    }
    return ids;
}

// Our logits against ONNX Runtime's, relative to their scale: the two ran the same model on the same input.
static double Compare(Model<float> model, OrtBatch ort)
{
    var ours = model.Logits(0);
    var theirs = ort.Logits();
    if (ours.Length != theirs.Length) throw new InvalidOperationException($"logits: ours {ours.Length}, ONNX Runtime {theirs.Length}");
    double diff = 0, scale = 0;
    for (int i = 0; i < ours.Length; i++) { diff = Math.Max(diff, Math.Abs(ours[i] - theirs[i])); scale = Math.Max(scale, Math.Abs(ours[i])); }
    return diff / scale;
}

// The two alternate in blocks of about half a second each, 150 ms apart, the first call of a block not counted when calls
// are short: ONNX Runtime's pool keeps its threads spinning for tens of milliseconds after a run returns (its
// allow_spinning default, which speeds its own next call), and on 2 cores that spinning took a core from whatever ran
// next: BERT-Mini's B=1 forward, 5.0 ms alone, took 9-13 ms when called right after an ONNX Runtime run
// (bench/RESULTS.md, 2026-12-07 later; `--latency`). Blocks still alternate, so both see the VM's drift alike.
static (List<double>, List<double>) Interleaved(Action a, Action b, int minReps, int maxReps, double budgetSeconds)
{
    var ta = new List<double>(); var tb = new List<double>();
    var total = Stopwatch.StartNew();
    while (ta.Count < maxReps && (ta.Count < minReps || total.Elapsed.TotalSeconds < budgetSeconds))
    {
        foreach (var (run, times) in new[] { (a, ta), (b, tb) })
        {
            Thread.Sleep(150);
            var block = Stopwatch.StartNew();
            var sw = Stopwatch.StartNew(); run();
            double first = sw.Elapsed.TotalSeconds;
            if (first >= 1) times.Add(first);     // a long call: a residue of milliseconds is noise, and a rep costs seconds
            while (times.Count < maxReps && block.Elapsed.TotalSeconds < 0.5 && first < 1)
            {
                sw.Restart(); run(); times.Add(sw.Elapsed.TotalSeconds);
            }
        }
        int n = Math.Min(ta.Count, tb.Count);
        ta.RemoveRange(n, ta.Count - n); tb.RemoveRange(n, tb.Count - n);   // as many of each
    }
    return (ta, tb);
}

static double Median(List<double> xs) { var s = xs.Order().ToList(); return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2; }
static string LoadAverage() => string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
static string Mib(long bytes) => $"{bytes / 1048576.0:F0} MiB";
static long Status(string key) => long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith(key + ":")).Split(':')[1].Trim().Split(' ')[0]) * 1024;
static long Rss() => Status("VmRSS");
static long Hwm() => Status("VmHWM");
// Collects garbage, then resets the kernel's peak-RSS counter (VmHWM) to the current RSS.
static void ResetPeak() { GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect(); File.WriteAllText("/proc/self/clear_refs", "5"); }

/// <summary>One input batch for ONNX Runtime, in pinned int64 OrtValues made once, so a run measures the session.</summary>
sealed class OrtBatch : IDisposable
{
    readonly InferenceSession _session;
    readonly string[] _inputs, _outputs;
    readonly OrtValue[] _values;
    readonly RunOptions _run = new();
    float[] _logits = [];

    public OrtBatch(InferenceSession session, int B, int[] ids)
    {
        _session = session;
        _inputs = session.InputMetadata.Keys.ToArray();
        _outputs = [session.OutputMetadata.Keys.First()];
        _values = _inputs.Select(name => OrtValue.CreateTensorValueFromMemory(name switch
        {
            "input_ids" => ids.Select(v => (long)v).ToArray(),
            "token_type_ids" => Enumerable.Range(0, ids.Length).Select(k => k % 128 < 64 ? 0L : 1L).ToArray(),
            "attention_mask" => Enumerable.Repeat(1L, ids.Length).ToArray(),
            _ => throw new InvalidOperationException("unexpected input " + name),
        }, new long[] { B, ids.Length / B })).ToArray();
    }

    public OrtBatch(InferenceSession session, int B, Random rng) : this(session, B, Enumerable.Range(0, B * 128).Select(_ => rng.Next(1, 30522)).ToArray()) { }

    public void Run()
    {
        using var results = _session.Run(_run, _inputs, _values, _outputs);
        var span = results[0].GetTensorDataAsSpan<float>();
        if (_logits.Length != span.Length) _logits = new float[span.Length];
        span.CopyTo(_logits);
    }

    public float[] Logits() => _logits;

    public void Dispose() { foreach (var v in _values) v.Dispose(); _run.Dispose(); }
}
