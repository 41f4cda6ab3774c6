// Where a training step's time goes, per op kind, for BERT shapes; and the step's speed against the
// GEMM-bound (the model's FLOPs at the measured sgemm rate of the same backend, in the same run).
// Usage: dotnet run -c Release --project bench/TrainStep -- [size=base] [batch=8] [seq=128] [steps=3]
using System.Diagnostics;
using Bert.Models;
using Bert.Runtime;
using Bert.Runtime.Kernels;

string size = args.Length > 0 ? args[0] : "base";
int B = args.Length > 1 ? int.Parse(args[1]) : 8, T = args.Length > 2 ? int.Parse(args[2]) : 128, steps = args.Length > 3 ? int.Parse(args[3]) : 3;
int G = (int)(B * T * 0.15);
var entry = Catalog.Get(size, "pretraining");
var cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"))?.Split(':')[1].Trim() ?? "unknown CPU";
Console.WriteLine($"{DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC · {cpu} · {Environment.ProcessorCount} cores · {Gemm.Describe()}");
Console.WriteLine($"{entry.Info.Name}: {entry.Info.ParameterCount:N0} parameters, B={B} T={T} G={G}");

// The GEMM rate of this backend on this step's biggest shape, measured now.
int C = (int)entry.Info.Constants["Hidden"], F = (int)entry.Info.Constants["Ffn"];
double Rate(int m, int n, int k)
{
    var a = new float[m * k]; var b = new float[k * n]; var c = new float[m * n];
    new Random(1).NextBytes(new byte[1]);
    for (int i = 0; i < a.Length; i++) a[i] = (i % 7) * 0.01f;
    for (int i = 0; i < b.Length; i++) b[i] = (i % 5) * 0.01f;
    Gemm.Run(false, true, m, n, k, 1f, a, k, b, k, 0f, c, n);
    var sw = Stopwatch.StartNew(); int reps = 0;
    while (sw.Elapsed.TotalSeconds < 1.5) { Gemm.Run(false, true, m, n, k, 1f, a, k, b, k, 0f, c, n); reps++; }
    return 2.0 * m * n * k * reps / sw.Elapsed.TotalSeconds / 1e9;
}
double gemmRate = Rate(B * T, F, C);
Console.WriteLine($"sgemm {B * T}×{F}×{C} (x·Wᵀ): {gemmRate:F1} GFLOP/s");

var m = entry.Create();
m.InitParameters(1);
var rng = new Random(1);
m.Bind(B, T, G);
m.SetInput("ids", Enumerable.Range(0, B * T).Select(_ => rng.Next(30522)).ToArray());
m.SetInput("types", Enumerable.Range(0, B * T).Select(i => i % T < T / 2 ? 0 : 1).ToArray());
m.SetInput("mask", Enumerable.Repeat(1, B * T).ToArray());
m.SetInput("masked", Enumerable.Range(0, B * T).OrderBy(_ => rng.Next()).Take(G).ToArray());
m.SetInput("mlmLabels", Enumerable.Range(0, G).Select(_ => rng.Next(30522)).ToArray());
m.SetInput("nspLabels", Enumerable.Range(0, B).Select(_ => rng.Next(2)).ToArray());

var perOp = new double[m.Info.Ops.Count];
var clock = new Stopwatch(); int current = -1;
m.OnOp = id => { if (current >= 0) perOp[current] += clock.Elapsed.TotalSeconds; current = id; clock.Restart(); };
var times = new List<double>();
for (int s = 0; s <= steps; s++)
{
    if (s == 1) Array.Clear(perOp);     // step 0 warms up
    var sw = Stopwatch.StartNew();
    m.Forward(training: true, seed: (ulong)s);
    m.ZeroGradients();
    m.Backward();
    if (current >= 0) perOp[current] += clock.Elapsed.TotalSeconds;
    current = -1;
    if (s > 0) times.Add(sw.Elapsed.TotalSeconds);
}
double step = times.Order().ElementAt(times.Count / 2);
double total = perOp.Sum();
Console.WriteLine($"step (median of {steps}): {step * 1000:F0} ms, {B * T / step:F0} tokens/s");
foreach (var g in m.Info.Ops.GroupBy(o => o.Kind).Select(g => (Kind: g.Key, Sec: g.Sum(o => perOp[o.Id]))).OrderByDescending(x => x.Sec))
    Console.WriteLine($"  {g.Kind,-13} {g.Sec / steps * 1000,8:F1} ms  {g.Sec / total,6:P1}");
double gemmShare = m.Info.Ops.Where(o => o.Kind is OpKind.Linear or OpKind.MatMul).Sum(o => perOp[o.Id]) / total;
double flops = Catalog.FlopsPerToken(m.Info, T, (double)G / (B * T)) * B * T;
double bound = flops / (gemmRate * 1e9);
Console.WriteLine($"time in Linear/MatMul GEMMs: {gemmShare:P1} (attention's batched products are inside Attention)");
Console.WriteLine($"model FLOPs per step {flops / 1e9:F1} G; GEMM-bound {bound * 1000:F0} ms; achieved {flops / step / 1e9:F1} GFLOP/s = {bound / step:P1} of the GEMM-bound");
