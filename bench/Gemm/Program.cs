// GEMM benchmark: GFLOP/s of the managed SIMD GEMM and of OpenBLAS on the same float products.
// Usage: bench/Gemm/run.sh [reps]   (run.sh unsets OPENBLAS_CORETYPE so OpenBLAS picks its own AVX-512 kernels)
using System.Diagnostics;
using Bert.Runtime.Kernels;

// Arguments: [reps] [threads] — threads limits the managed GEMM (set OPENBLAS_NUM_THREADS to match for OpenBLAS).
int reps = args.Length > 0 ? int.Parse(args[0]) : 9;
int threads = args.Length > 1 ? int.Parse(args[1]) : ManagedGemm.DefaultThreads;
// transB: y = x·Wᵀ with W stored N×K, as a Linear layer runs (the rows of BERT-Base at B = 1, T = 128).
(int M, int N, int K, string note, bool transB)[] shapes =
[
    (512, 512, 512, "square", false),
    (1024, 1024, 1024, "square", false),
    (2048, 2048, 2048, "square", false),
    (4096, 768, 768, "attention projection (seq·batch 4096, hidden 768)", false),
    (4096, 768, 3072, "FFN down (4096×3072 · 3072×768)", false),
    (4096, 3072, 768, "FFN up (4096×768 · 768×3072)", false),
    (128, 2304, 768, "BERT-Base B=1: query-key-value, x·Wᵀ", true),
    (128, 768, 768, "BERT-Base B=1: attention output, x·Wᵀ", true),
    (128, 3072, 768, "BERT-Base B=1: FFN up, x·Wᵀ", true),
    (128, 768, 3072, "BERT-Base B=1: FFN down, x·Wᵀ", true),
];

string cpu = File.Exists("/proc/cpuinfo")
    ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':', 2)[1].Trim() ?? "?"
    : "?";
Console.WriteLine($"# GEMM benchmark, float, {DateTime.Now:yyyy-MM-dd HH:mm}");
Console.WriteLine($"CPU: {cpu}, {Environment.ProcessorCount} logical cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}");
Console.WriteLine($"OPENBLAS_CORETYPE={Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE") ?? "(unset)"}");
Console.WriteLine($"managed : {ManagedGemm.Describe()}");
Console.WriteLine($"openblas: {OpenBlasGemm.Describe()}");
Console.WriteLine($"Gemm.Describe() (default backend): {Gemm.Describe()}");
Console.WriteLine($"load average at start (other processes on the machine): {LoadAverage()}");
Console.WriteLine($"managed threads: {threads}; OPENBLAS_NUM_THREADS={Environment.GetEnvironmentVariable("OPENBLAS_NUM_THREADS") ?? "(unset)"}");
Console.WriteLine($"GFLOP/s = 2·M·N·K / time; median (and best) of {reps} timed reps after warm-up, managed and OpenBLAS reps interleaved");
Console.WriteLine();
Console.WriteLine("| M×N×K | managed GFLOP/s | OpenBLAS GFLOP/s | managed/OpenBLAS (median) | managed best | OpenBLAS best | ratio (best) | max rel diff |");
Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");

var rng = new Random(42);
foreach (var (M, N, K, _, transB) in shapes)
{
    float[] a = new float[M * K], b = new float[K * N], c1 = new float[M * N], c2 = new float[M * N];
    for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
    for (int i = 0; i < b.Length; i++) b[i] = (float)(rng.NextDouble() * 2 - 1);

    double flops = 2.0 * M * N * K;
    Action managed = () => ManagedGemm.Run(false, transB, M, N, K, 1f, a, K, b, transB ? K : N, 0f, c1, N, threads);
    Action openblas = OpenBlasGemm.IsAvailable ? () => OpenBlasGemm.Run(false, transB, M, N, K, 1f, a, K, b, transB ? K : N, 0f, c2, N) : () => { };
    Warm(managed);
    Warm(openblas);
    var tm = new double[reps];
    var to = new double[reps];
    var sw = new Stopwatch();
    for (int r = 0; r < reps; r++)
    {
        sw.Restart(); managed(); tm[r] = sw.Elapsed.TotalSeconds;
        sw.Restart(); openblas(); to[r] = sw.Elapsed.TotalSeconds;
    }
    Array.Sort(tm);
    Array.Sort(to);
    double gm = flops / tm[reps / 2] / 1e9, go = OpenBlasGemm.IsAvailable ? flops / to[reps / 2] / 1e9 : double.NaN;
    double bm = flops / tm[0] / 1e9, bo = OpenBlasGemm.IsAvailable ? flops / to[0] / 1e9 : double.NaN;
    double maxRel = 0;
    if (OpenBlasGemm.IsAvailable)
    {
        double scale = 0;
        foreach (float v in c2) scale = Math.Max(scale, Math.Abs(v));
        for (int i = 0; i < c1.Length; i++) maxRel = Math.Max(maxRel, Math.Abs(c1[i] - c2[i]) / scale);
    }
    Console.WriteLine($"| {M}×{N}×{K}{(transB ? " (Bᵀ)" : "")} | {gm:F1} | {go:F1} | {gm / go * 100:F0}% | {bm:F1} | {bo:F1} | {bm / bo * 100:F0}% | {maxRel:E1} |");
}

Console.WriteLine();
Console.WriteLine($"load average at end: {LoadAverage()}");

static string LoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "?";

static void Warm(Action run)
{
    // Warm-up: JIT tiering (the kernels are AggressiveOptimization, the drivers tier up), page faults, thread pools.
    var sw = Stopwatch.StartNew();
    int n = 0;
    while (n < 3 || (sw.Elapsed.TotalSeconds < 0.5 && n < 50)) { run(); n++; }
}
