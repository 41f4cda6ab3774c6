using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Bert.Models;
using Bert.Runtime;
using Bert.Runtime.Cuda;
using Bert.Runtime.Kernels;
using Bert.Runtime.Training;

namespace Bert.Cli;

/// <summary><c>bert selftest --device cuda</c>: the CUDA backend against the CPU, on this machine's GPU. Checks the
/// bindings (cuBLAS fp32 and bf16 products), then, per model, one training step's every activation, saved tensor and
/// gradient against the CPU model in double (dropout on: the masks must agree exactly), run to run determinism, inference,
/// AdamW with clipping against the CPU optimizer, bf16 products against the CPU; the product's training loop on the device
/// against the CPU; and the timing of BERT-Base (or --timing-size) pre-training steps (fp32, TF32, bf16) and inference (kernel by kernel and
/// as a replayed CUDA graph).</summary>
public static class GpuSelfTest
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public sealed record Settings(string[] Models, int[] Batches, int Seq, int Steps, bool Timing, string? Json, string TimingSize = "base")
    {
        /// <summary>The timed model's name in the rows: BERT-Base, BERT-Nano, …</summary>
        public string Name => "BERT-" + char.ToUpperInvariant(TimingSize[0]) + TimingSize[1..];
    }

    sealed class Report(TextWriter o)
    {
        public int Passed, Failed;
        public readonly List<Dictionary<string, object>> Rows = [];

        public void Row(string check, bool ok, string detail, Dictionary<string, object>? data = null)
        {
            if (ok) Passed++; else Failed++;
            o.WriteLine($"{(ok ? "PASS" : "FAIL")}  {check,-44} {detail}");
            var d = data ?? [];
            d["check"] = check; d["ok"] = ok; d["detail"] = detail;
            Rows.Add(d);
        }

        public void Info(string line) { o.WriteLine("      " + line); }
    }

    public static int Run(Settings s, TextWriter o)
    {
        if (!CudaDevice.TryOpen(out var device, out string why))
        {
            Console.Error.WriteLine("error: " + why);
            return 2;
        }
        using var _ = device!;
        _flashCapable = device!.ComputeCapabilityMajor >= 8;
        // Every row picks its attention path and bf16 rounding itself: the variables that pick them for the product would
        // make the rows that compare the probabilities, or measure memory, check something else.
        foreach (string v in new[] { CudaModel.FusedAttentionVariable, CudaModel.Bf16Variable })
            if (Environment.GetEnvironmentVariable(v) is { Length: > 0 } set)
            {
                o.WriteLine($"  {v}={set} ignored: the self-test runs each attention path and rounding itself");
                Environment.SetEnvironmentVariable(v, null);
            }
        var r = new Report(o);
        o.WriteLine($"device: {device!.Describe()}");
        foreach (var lib in new[] { CudaDriver.Load(), Nvrtc.Load(), Cublas.Load() }) o.WriteLine($"  {lib}");
        try { o.WriteLine($"  {CublasLt.Load()}"); }
        catch (CudaUnavailableException e) { o.WriteLine($"  cuBLASLt not found, so the products add no bias themselves: {e.Message}"); }
        var (nvMaj, nvMin) = Nvrtc.Version();
        o.WriteLine($"  NVRTC {nvMaj}.{nvMin}, target {Nvrtc.TargetArchitecture(device.ComputeCapabilityMajor, device.ComputeCapabilityMinor)}; CPU GEMM: {Gemm.Describe()}");
        var cache = new KernelCache();
        o.WriteLine($"  kernel cache: {cache.Directory}");

        Guard(r, "cuBLAS fp32 GEMM (4 transpositions)", CublasFp32);
        Guard(r, "cuBLAS bf16 strided-batched GEMM", CublasBf16);
        Guard(r, "cuBLASLt bias epilogue (8 products)", CublasLtBias);
        // Every program the run will open, compiled at once on all cores into the cache (the models' own rows then report
        // a cache hit's time; a compile error shows again there, at its model).
        {
            var wanted = s.Models.Select(FindModel)
                .OfType<Catalog.Entry>().Append(Catalog.Get("nano", "pretraining"));
            if (s.Timing) wanted = wanted.Concat([Catalog.Get(s.TimingSize, "pretraining"), Catalog.Get(s.TimingSize, "classifier"), Catalog.Get("mini", "pretraining")]);
            var all = wanted.DistinctBy(e => e.Name).ToArray();
            var sw = Stopwatch.StartNew();
            try
            {
                CudaModel.Precompile(all.Select(e => (e.Info, e.CreateCuda())), device, cache);
                o.WriteLine(string.Create(Inv, $"  {all.Length} programs compiled (or found in the cache) in parallel in {sw.Elapsed.TotalSeconds:F1} s"));
            }
            catch (AggregateException e) { o.WriteLine("  compiling in parallel failed (each model compiles again below): " + e.InnerExceptions[0].Message); }
        }
        foreach (string name in s.Models)
        {
            var entry = FindModel(name);
            if (entry is null) { r.Row($"model {name}", false, "no such model in the catalog"); continue; }
            try { CheckModel(r, entry, device, cache); }
            catch (Exception e) when (e is CudaException or NvrtcCompileException or InvalidOperationException or ArgumentException)
            {
                r.Row($"{entry.Info.Name}", false, e.GetType().Name + ": " + e.Message);
            }
        }
        // The build-time memory estimate (BERT0219) against the device: BERT-Nano always, the timed model with --timing.
        var memoryChecks = new List<(Catalog.Entry Entry, int B, int T)> { (Catalog.Get("nano", "pretraining"), 16, 64) };
        if (s.Timing) memoryChecks.Add((Catalog.Get(s.TimingSize, "pretraining"), s.Batches.Max(), s.Seq));
        foreach (var (entry, b, t) in memoryChecks)
        {
            try { MemoryCheck(r, entry, device, cache, b, t); }
            catch (Exception e) when (e is CudaException or InvalidOperationException or ArgumentException)
            {
                r.Row($"memory estimate: {entry.Info.Name}", false, e.GetType().Name + ": " + e.Message);
            }
        }
        try { EvaluationCheck(r, device, cache); }
        catch (Exception e) when (e is CudaException or InvalidOperationException or ArgumentException)
        {
            r.Row("evaluation with the forward on the device", false, e.GetType().Name + ": " + e.Message);
        }
        try { TrainLoopCheck(r, device, cache); }
        catch (Exception e) when (e is CudaException or InvalidOperationException or ArgumentException)
        {
            r.Row("training loop on the device", false, e.GetType().Name + ": " + e.Message);
        }
        try { GraphStepCheck(r, device, cache); }
        catch (Exception e) when (e is CudaException or InvalidOperationException or ArgumentException)
        {
            r.Row("training steps replayed from CUDA graphs", false, e.GetType().Name + ": " + e.Message);
        }
        if (s.Timing)
        {
            try { Timing(r, device, cache, s); }
            catch (Exception e) when (e is CudaException or InvalidOperationException)
            {
                r.Row("timing", false, e.GetType().Name + ": " + e.Message);
            }
        }
        o.WriteLine($"{r.Passed} checks passed, {r.Failed} failed");
        if (s.Json is string path)
        {
            File.WriteAllText(path, JsonSerializer.Serialize(new Dictionary<string, object> { ["device"] = device.Describe(), ["date"] = DateTime.UtcNow.ToString("u", Inv), ["rows"] = r.Rows },
                new JsonSerializerOptions { WriteIndented = true }));
        }
        return r.Failed == 0 ? 0 : 1;
    }

    /// <summary>A --models name: a catalog model's class name or size-head (any case); null when none.</summary>
    static Catalog.Entry? FindModel(string name) =>
        Catalog.All.FirstOrDefault(e => e.Name.Equals(name, StringComparison.OrdinalIgnoreCase) || $"{e.Size}-{e.Head}".Equals(name, StringComparison.OrdinalIgnoreCase));

    static void Guard(Report r, string check, Func<(bool, string)> f)
    {
        try { var (ok, d) = f(); r.Row(check, ok, d); }
        catch (Exception e) when (e is CudaException or InvalidOperationException) { r.Row(check, false, e.GetType().Name + ": " + e.Message); }
    }

    // ---------------------------------------------------------------- bindings

    static float[] RandomFloats(Random rng, int n) { var a = new float[n]; for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1); return a; }

    static ulong Upload<T>(T[] a, nint stream) where T : unmanaged
    {
        ulong p = CudaDriver.MemAlloc((ulong)Math.Max(1, a.Length) * (ulong)System.Runtime.CompilerServices.Unsafe.SizeOf<T>());
        CudaDriver.MemcpyHtoDAsync<T>(p, a, stream);
        return p;
    }

    static float[] Download(ulong p, int n, nint stream)
    {
        var h = new float[n];
        CudaDriver.MemcpyDtoHAsync<float>(h, p, stream);
        CudaDriver.StreamSynchronize(stream);
        return h;
    }

    static (bool, string) CublasFp32()
    {
        nint stream = CudaDriver.StreamCreate();
        using var blas = new Cublas();
        blas.SetStream(stream);
        blas.SetMathMode(CublasMath.Pedantic);
        var rng = new Random(3);
        double worst = 0;
        foreach (bool tA in (bool[])[false, true])
            foreach (bool tB in (bool[])[false, true])
                foreach ((int M, int N, int K) in ((int, int, int)[])[(1, 1, 1), (37, 53, 29), (128, 96, 200)])
                {
                    int lda = (tA ? M : K) + 2, ldb = (tB ? K : N) + 1, ldc = N + 3;
                    float[] A = RandomFloats(rng, (tA ? K : M) * lda), B = RandomFloats(rng, (tB ? N : K) * ldb), C = RandomFloats(rng, M * ldc);
                    ulong dA = Upload(A, stream), dB = Upload(B, stream), dC = Upload(C, stream);
                    blas.Gemm(tA, tB, M, N, K, 0.75f, dA, lda, dB, ldb, -0.5f, dC, ldc, CudaDataType.R32F);
                    float[] got = Download(dC, C.Length, stream);
                    foreach (ulong p in new[] { dA, dB, dC }) CudaDriver.MemFree(p);
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < ldc; j++)
                        {
                            double want = C[i * ldc + j];
                            if (j < N)
                            {
                                double acc = 0;
                                for (int p = 0; p < K; p++)
                                    acc += (double)(tA ? A[p * lda + i] : A[i * lda + p]) * (tB ? B[j * ldb + p] : B[p * ldb + j]);
                                want = 0.75 * acc - 0.5 * C[i * ldc + j];
                            }
                            worst = Math.Max(worst, Math.Abs(got[i * ldc + j] - want) / (1 + Math.Abs(want)));
                        }
                }
        CudaDriver.StreamDestroy(stream);
        return (worst <= 1e-5, string.Create(Inv, $"max error {worst:E2} (limit 1e-5; padding untouched)"));
    }

    static ushort ToBf16(float f) { uint b = BitConverter.SingleToUInt32Bits(f); return (ushort)((b + 0x7FFF + ((b >> 16) & 1)) >> 16); }
    static float FromBf16(ushort b) => BitConverter.UInt32BitsToSingle((uint)b << 16);

    static (bool, string) CublasBf16()
    {
        nint stream = CudaDriver.StreamCreate();
        using var blas = new Cublas();
        blas.SetStream(stream);
        const int batch = 3, M = 64, N = 48, K = 128;
        var rng = new Random(5);
        ushort[] A = RandomFloats(rng, batch * M * K).Select(ToBf16).ToArray(), B = RandomFloats(rng, batch * N * K).Select(ToBf16).ToArray();
        ulong dA = Upload(A, stream), dB = Upload(B, stream), dC = CudaDriver.MemAlloc(batch * M * N * 4);
        blas.GemmStridedBatched(false, true, M, N, K, 1f, dA, K, M * K, dB, K, N * K, 0f, dC, N, M * N, batch, CudaDataType.R16BF, CudaDataType.R32F);
        float[] got = Download(dC, batch * M * N, stream);
        double worst = 0;
        for (int b = 0; b < batch; b++)
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++)
                {
                    double acc = 0;
                    for (int p = 0; p < K; p++) acc += (double)FromBf16(A[b * M * K + i * K + p]) * FromBf16(B[b * N * K + j * K + p]);
                    worst = Math.Max(worst, Math.Abs(got[b * M * N + i * N + j] - acc) / (1 + Math.Abs(acc)));
                }
        // The same product of the first batch written in bf16 (a product whose output only fused kernels read,
        // CudaExec.Store16), with a row stride past N whose padding must stay as it was: the sum rounded once, to within
        // half a bf16 ulp (2⁻⁹ relative) and the fp32 accumulation's error.
        const int Ldc16 = N + 6;
        var pad = Enumerable.Repeat((ushort)0x7FC1, M * Ldc16).ToArray();
        ulong dC16 = Upload(pad, stream);
        blas.Gemm(false, true, M, N, K, 1f, dA, K, dB, K, 0f, dC16, Ldc16, CudaDataType.R16BF, CudaDataType.R16BF);
        var got16 = new ushort[M * Ldc16];
        CudaDriver.MemcpyDtoHAsync<ushort>(got16, dC16, stream);
        CudaDriver.StreamSynchronize(stream);
        CudaDriver.MemFree(dC16);
        double worst16 = 0;
        int padTouched = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < Ldc16; j++)
            {
                if (j >= N) { padTouched += got16[i * Ldc16 + j] == 0x7FC1 ? 0 : 1; continue; }
                double acc = 0;
                for (int p = 0; p < K; p++) acc += (double)FromBf16(A[i * K + p]) * FromBf16(B[j * K + p]);
                worst16 = Math.Max(worst16, Math.Abs(FromBf16(got16[i * Ldc16 + j]) - acc) / (1e-3 + Math.Abs(acc)));
            }
        foreach (ulong p in new[] { dA, dB, dC }) CudaDriver.MemFree(p);
        CudaDriver.StreamDestroy(stream);
        return (worst <= 1e-4 && worst16 <= 1.0 / 256 + 1e-5 && padTouched == 0, string.Create(Inv,
            $"max error {worst:E2} vs double on the bf16 inputs (limit 1e-4); bf16 output {worst16:E2} relative (limit 3.9e-3: bf16's unit roundoff 2⁻⁸), {padTouched} padding elements written"));
    }

    /// <summary>The products that add a Linear's (or a MatMul's) bias, and a residual after it, in cuBLASLt (CudaExec.GemmBias):
    /// row-major C = A·op(W) + bias (+ R) with W transposed or not, fp32 or bf16 operands, against double.</summary>
    static (bool, string) CublasLtBias()
    {
        CublasLt lt;
        try { lt = new CublasLt(); }
        catch (CudaUnavailableException e) { return (true, "not run: " + e.Message + " (the products then leave their bias to the kernels)"); }
        nint stream = CudaDriver.StreamCreate();
        const ulong WorkspaceBytes = 4UL << 20;
        ulong ws = 0;
        var live = new List<ulong>();
        ulong Keep(ulong p) { live.Add(p); return p; }
        const int M = 64, N = 48, K = 40;
        var rng = new Random(7);
        double worst32 = 0, worst16 = 0;
        int declined = 0, declined16 = 0;
        try
        {
            ws = CudaDriver.MemAlloc(WorkspaceBytes);
            foreach (bool tB in (bool[])[false, true])
                foreach (bool bf16 in (bool[])[false, true])
                    foreach (bool residual in (bool[])[false, true])
                    {
                        float[] A = RandomFloats(rng, M * K), W = RandomFloats(rng, N * K), bias = RandomFloats(rng, N), R = RandomFloats(rng, M * N);
                        if (bf16) { A = A.Select(x => FromBf16(ToBf16(x))).ToArray(); W = W.Select(x => FromBf16(ToBf16(x))).ToArray(); }
                        int ldb = tB ? K : N;   // W as N×K (transposed, a Linear's) or K×N (a MatMul's)
                        ulong dA = Keep(bf16 ? Upload(A.Select(ToBf16).ToArray(), stream) : Upload(A, stream));
                        ulong dW = Keep(bf16 ? Upload(W.Select(ToBf16).ToArray(), stream) : Upload(W, stream));
                        ulong dBias = Keep(Upload(bias, stream)), dR = residual ? Keep(Upload(R, stream)) : 0, dC = Keep(CudaDriver.MemAlloc(M * N * 4));
                        var type = bf16 ? CudaDataType.R16BF : CudaDataType.R32F;
                        if (!lt.CanBias(false, tB, M, N, K, K, ldb, N, type, CublasComputeType.Compute32F, dA, dW, dC, dR, WorkspaceBytes)) { declined++; if (bf16) declined16++; }
                        else
                        {
                            lt.RowMajorBias(false, tB, M, N, K, dA, K, dW, ldb, dC, N, dBias, dR, type, CublasComputeType.Compute32F, ws, WorkspaceBytes, stream);
                            float[] got = Download(dC, M * N, stream);
                            for (int i = 0; i < M; i++)
                                for (int j = 0; j < N; j++)
                                {
                                    double want = bias[j] + (residual ? R[i * N + j] : 0);
                                    for (int p = 0; p < K; p++) want += (double)A[i * K + p] * (tB ? W[j * K + p] : W[p * N + j]);
                                    double e = Math.Abs(got[i * N + j] - want) / (1 + Math.Abs(want));
                                    if (bf16) worst16 = Math.Max(worst16, e); else worst32 = Math.Max(worst32, e);
                                }
                        }
                        foreach (ulong p in live) CudaDriver.MemFree(p);
                        live.Clear();
                    }
        }
        finally
        {
            foreach (ulong p in live) CudaDriver.MemFree(p);
            if (ws != 0) CudaDriver.MemFree(ws);
            CudaDriver.StreamDestroy(stream);
            lt.Dispose();
        }
        string E(double e, int declinedOf4) => declinedOf4 == 4 ? "n/a" : e.ToString("E2", Inv);
        return (declined == 0 && worst32 <= 1e-5 && worst16 <= 1e-4, string.Create(Inv,
            $"W transposed or not, fp32 and bf16 operands, with and without a residual: max error {E(worst32, declined - declined16)} fp32 (limit 1e-5), {E(worst16, declined16)} bf16 vs double on the bf16 inputs (limit 1e-4); {declined} declined"));
    }

    // ---------------------------------------------------------------- models

    /// <summary>Random integer inputs for any declared model: token ids below the table they index, a mask with padded
    /// tails, distinct gathered rows, labels below their class count with some ignored (-100).</summary>
    public static Dictionary<string, int[]> RandomInputs(ModelInfo info, int B, int T, int G, Random rng)
    {
        var inputs = new Dictionary<string, int[]>();
        int[] lengths = Enumerable.Range(0, B).Select(b => b == 0 ? T : rng.Next(Math.Max(1, T / 2), Math.Max(2, T))).ToArray(); // padding past b = 0
        foreach (var i in info.Inputs)
        {
            int n = (int)ModelInfo.ShapeSize(i.Shape, B, T, G);
            var v = new int[n];
            switch (i.Kind)
            {
                case InputKind.Tokens:
                {
                    var embed = info.Ops.First(o => o.IntInput == i.Index && o.Kind == OpKind.Embed);
                    int V = embed.Operands[0].Shape[0];
                    for (int k = 0; k < n; k++) v[k] = rng.Next(V);
                    break;
                }
                case InputKind.Mask:
                    for (int k = 0; k < n; k++) v[k] = k % T < lengths[k / T] ? 1 : 0;
                    break;
                case InputKind.Rows:
                {
                    var pool = Enumerable.Range(0, B * T).OrderBy(_ => rng.Next()).Take(n).OrderBy(x => x).ToArray();
                    pool.CopyTo(v, 0);
                    break;
                }
                case InputKind.Labels:
                {
                    var ce = info.Ops.First(o => o.IntInput == i.Index && o.Kind == OpKind.CrossEntropy);
                    // the classes: the logits' last axis, a run-time length for a cross-entropy over positions (Transpose)
                    int K = (int)ModelInfo.ShapeSize([ce.Operands[0].Shape[^1]], B, T, G);
                    for (int k = 0; k < n; k++) v[k] = k > 0 && rng.Next(8) == 0 ? -100 : rng.Next(K);
                    break;
                }
            }
            inputs[i.Name] = v;
        }
        return inputs;
    }

    static double RelErr(ReadOnlySpan<float> got, ReadOnlySpan<double> want, out double maxAbs)
    {
        double num = 0, den = 0; maxAbs = 0;
        for (int i = 0; i < want.Length; i++)
        {
            double d = got[i] - want[i];
            if (double.IsNaN(got[i]) && !double.IsNaN(want[i])) { maxAbs = double.NaN; return double.NaN; }
            num += d * d; den += want[i] * want[i];
            maxAbs = Math.Max(maxAbs, Math.Abs(d));
        }
        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
    }

    /// <summary>A LayerNorm's saved mean in units of its row's standard deviation (RMS over rows of |Δmean|·rstd): what the
    /// normalized output sees of it. Relative to the means themselves the error says little: BERT's residual rows have means
    /// near zero, so a tiny absolute error looks large (BERT-Base with bf16 products on the host emulation: 2.3e-2 that way,
    /// over the 2e-2 limit, while every other forward buffer was within 1.2e-2).</summary>
    static double StdErr(ReadOnlySpan<float> got, ReadOnlySpan<double> mean, ReadOnlySpan<double> rstd)
    {
        double num = 0;
        for (int i = 0; i < mean.Length; i++)
        {
            if (double.IsNaN(got[i]) && !double.IsNaN(mean[i])) return double.NaN;
            double d = (got[i] - mean[i]) * rstd[i];
            num += d * d;
        }
        return mean.Length == 0 ? 0 : Math.Sqrt(num / mean.Length);
    }

    /// <summary>A buffer's error against the CPU: relative (‖got − want‖ / ‖want‖), except a LayerNorm's mean (see
    /// <see cref="StdErr"/>).</summary>
    static double BufferErr(ModelInfo info, BufferInfo b, float[] got, Dictionary<int, double[]> cpuBuffers)
    {
        foreach (var op in info.Ops)
            if (op.Kind == OpKind.LayerNorm && op.Saved.Length == 2 && op.Saved[0] == b.Id && cpuBuffers[op.Saved[1]].Length == cpuBuffers[b.Id].Length)
                return StdErr(got, cpuBuffers[b.Id], cpuBuffers[op.Saved[1]]);
        return RelErr(got, cpuBuffers[b.Id], out _);
    }

    static void CheckModel(Report r, Catalog.Entry entry, CudaDevice device, KernelCache cache)
    {
        var info = entry.Info;
        var sw = Stopwatch.StartNew();
        using var gpu = new CudaModel(info, entry.CreateCuda(), device, cache);
        r.Row($"{info.Name}: NVRTC compile + load", true, string.Create(Inv, $"{info.Kernels.Count} fused + structured kernels, {gpu.Image.Length / 1024} KiB image, {sw.Elapsed.TotalSeconds:F1} s"));
        // What the compiler made of the kernels: local memory means spills (slow, not wrong); the flash kernels' registers.
        var resources = gpu.KernelResources();
        var spills = resources.Where(k => k.LocalBytes > 0).Select(k => string.Create(Inv, $"{k.Name} {k.LocalBytes} B")).ToArray();
        var flashRes = resources.Where(k => k.Name.StartsWith("rt_flash_", StringComparison.Ordinal)).Select(k => string.Create(Inv, $"{k.Name[3..]} {k.Registers}r/{k.SharedBytes / 1024.0:F1}K")).ToArray();
        r.Info($"{resources.Count} kernels; local memory (spills) in {(spills.Length == 0 ? "none" : string.Join(", ", spills))}{(flashRes.Length == 0 ? "; no flash attention kernels (head size)" : "; flash registers/shared: " + string.Join(", ", flashRes))}");

        var cpuF = entry.Create();
        cpuF.InitParameters(7);
        var rng = new Random(11);
        var pf = cpuF.Parameters;
        for (int i = 0; i < pf.Length; i++) pf[i] += (float)((rng.NextDouble() * 2 - 1) * 0.05); // no exact ones and zeros
        float[] p32 = pf.ToArray();
        var cpu = entry.CreateDouble();
        for (int i = 0; i < p32.Length; i++) cpu.Parameters[i] = p32[i];
        gpu.SetParameters(p32);

        int B = 3, T = Math.Min(info.MaxLen, 24), G = info.Inputs.Any(i => i.Kind == InputKind.Rows) ? 7 : 0;
        var inputs = RandomInputs(info, B, T, G, rng);
        const ulong seed = 1234;
        cpu.ReuseMemory = false; gpu.ReuseMemory = false;
        cpu.Bind(B, T, G, training: true); gpu.Bind(B, T, G, training: true);
        foreach (var (k, v) in inputs) { cpu.SetInput(k, v); gpu.SetInput(k, v); }
        gpu.PoisonArena();
        cpu.ZeroGradients(); gpu.ZeroGradients();
        cpu.Forward(training: true, seed: seed);
        // (the products that add their bias in cuBLASLt, counted: see the bias epilogue row)
        int taken = 0;
        gpu.OnLaunch = name => { if (name.StartsWith("gemm+bias", StringComparison.Ordinal)) taken++; };
        try
        {
            gpu.Forward(training: true, seed: seed);
            cpu.Backward();
            gpu.Backward();
        }
        finally { gpu.OnLaunch = null; }

        // Every buffer of the plan, forward (activations, saved) and backward (gradients).
        var cpuBuffers = CpuBuffers(cpu, info);
        double worstF = 0, worstB = 0; string worstFName = "", worstBName = "";
        var failures = new List<string>();
        // A product that added its bias itself (CudaExec.GemmBias) never wrote its own output: the sum it wrote is compared,
        // and reading the output back is refused in one sentence that names the switch.
        int folded = 0;
        string? refusal = null;
        foreach (var b in info.Buffers)
        {
            double[] want = cpuBuffers[b.Id];
            if (want.Length == 0) continue;
            if (!gpu.Readable(b.Id))
            {
                if (folded++ == 0)
                    try { gpu.ReadBuffer(b.Id); }
                    catch (InvalidOperationException refused) { refusal = refused.Message; }
                continue;
            }
            double e = BufferErr(info, b, gpu.ReadBuffer(b.Id), cpuBuffers);
            bool fwd = b.Role != BufferRole.Gradient;
            double limit = fwd ? 1e-5 : 1e-4;
            if (!(e <= limit)) failures.Add(string.Create(Inv, $"{b.Name}#{b.Id} {e:E2}"));
            if (fwd && !(e <= worstF)) { worstF = e; worstFName = b.Name; }
            if (!fwd && !(e <= worstB)) { worstB = e; worstBName = b.Name; }
        }
        r.Row($"{info.Name}: forward buffers vs CPU double", failures.All(f => !IsForward(info, f)),
            string.Create(Inv, $"worst {worstF:E2} ({worstFName}); limit 1e-5; B={B} T={T} G={G}, dropout on; {folded} product outputs folded into their bias (cuBLASLt epilogue)"));
        r.Row($"{info.Name}: backward buffers vs CPU double", failures.All(f => IsForward(info, f)),
            string.Create(Inv, $"worst {worstB:E2} ({worstBName}); limit 1e-4"));
        if (failures.Count > 0) r.Info("over the limit: " + string.Join(", ", failures.Take(12)));

        float[] g1 = gpu.GetGradients();
        var gWant = cpu.Gradients.ToArray();
        double worstP = 0; string worstPName = "";
        var pFail = new List<string>();
        double global = Math.Sqrt(gWant.Sum(x => x * x));
        int negligible = 0;
        foreach (var p in info.Parameters)
        {
            var want = gWant.AsSpan((int)p.Offset, (int)p.Length);
            var got = g1.AsSpan((int)p.Offset, (int)p.Length);
            double norm = 0, gotNorm = 0;
            foreach (double x in want) norm += x * x;
            foreach (float x in got) gotNorm += (double)x * x;
            if (Math.Sqrt(norm) < 1e-6 * global)
            {
                // Zero in exact arithmetic (the attention key bias: softmax ignores a shift of all scores): both must be tiny.
                negligible++;
                if (!(Math.Sqrt(gotNorm) < 1e-5 * global)) pFail.Add(string.Create(Inv, $"{p.Name} {Math.Sqrt(gotNorm):E2} where ~0 is expected"));
                continue;
            }
            double e = RelErr(got, want, out _);
            if (!(e <= 1e-4)) pFail.Add(string.Create(Inv, $"{p.Name} {e:E2}"));
            if (!(e <= worstP)) { worstP = e; worstPName = p.Name; }
        }
        r.Row($"{info.Name}: parameter gradients vs CPU double", pFail.Count == 0,
            string.Create(Inv, $"worst {worstP:E2} ({worstPName}); limit 1e-4; {info.Parameters.Count} tensors, {negligible} ~0 in both"));
        if (pFail.Count > 0) r.Info("over the limit: " + string.Join(", ", pFail.Take(12)));

        // The fused attention kernels (BERT_CUDA_ATTENTION=fused): the same step, every buffer and gradient, same limits.
        {
            bool before = gpu.FusedAttention;
            gpu.FusedAttention = true;
            PoisonedStep(gpu, inputs, B, T, G, seed);
            var (wf, wfName, wb, wbName, wp, wpName, _) = StepErrors(gpu, info, cpuBuffers, gWant, global);
            r.Row($"{info.Name}: fused attention vs CPU double", wf <= 1e-5 && wb <= 1e-4 && wp <= 1e-4,
                string.Create(Inv, $"forward worst {wf:E2} ({wfName}), backward {wb:E2} ({wbName}), parameter gradients {wp:E2} ({wpName})"));
            gpu.FusedAttention = before;
        }

        // The bias epilogue (cuBLASLt adds a Linear's or MatMul's bias in the product; on by default) was in the step above,
        // which counted the products that took it; here the same step without it (the product, then its bias kernel) is
        // checked against the CPU in double at the same limits, every buffer now written.
        // (With BERT_CUDA_BIAS_EPILOGUE=0 both runs are without it, and that setting is left as it was.)
        if (gpu.HasCublasLt)
        {
            bool epilogueOn = gpu.BiasEpilogue;
            gpu.BiasEpilogue = false;
            (double, string, double, string, double, string, int) off;
            try
            {
                PoisonedStep(gpu, inputs, B, T, G, seed);
                off = StepErrors(gpu, info, cpuBuffers, gWant, global);
            }
            finally { gpu.BiasEpilogue = epilogueOn; }
            var (wf, wfName, wb, wbName, wp, wpName, unread) = off;
            bool refused = folded == 0 || refusal?.Contains("BERT_CUDA_BIAS_EPILOGUE=0", StringComparison.Ordinal) == true;
            r.Row($"{info.Name}: bias epilogue off vs CPU double", taken == folded && (taken > 0) == epilogueOn && refused && unread == 0 && wf <= 1e-5 && wb <= 1e-4 && wp <= 1e-4,
                string.Create(Inv, $"{taken} products added their bias in cuBLASLt with it on ({folded} outputs unwritten; reading one back: {(folded == 0 ? "none to read" : refusal ?? "not refused")}); off: forward worst {wf:E2} ({wfName}), backward {wb:E2} ({wbName}), parameter gradients {wp:E2} ({wpName}), {unread} buffers unwritten"));
        }

        // bf16 products (the linear layers' operands rounded to bf16): the loss, every buffer and the gradients against the
        // CPU in double, looser (bf16 keeps 8 bits of mantissa).
        {
            gpu.Precision = CudaPrecision.Bf16;
            var (worstBf, worstBfName, eg) = Bf16Step(gpu, info, inputs, cpuBuffers, gWant, B, T, G, seed);
            // A training step keeps its products' outputs in fp32 by default (CudaExec.Bf16OutputsInTraining off).
            int takers = info.Kernels.Sum(k => k.Bf16Inputs.Count(h => h)), held = info.Buffers.Count(b => gpu.HoldsBf16(b.Id));
            r.Row($"{info.Name}: bf16 products vs CPU double", worstBf <= 2e-2 && eg <= 2e-2 && (takers == 0 || !(gpu.Bf16Outputs && gpu.Bf16OutputsInTraining)) == (held == 0),
                string.Create(Inv, $"forward buffers worst {worstBf:E2} ({worstBfName}), all gradients {eg:E2} (limits 2e-2); {held} product outputs written in bf16; the error's largest shares: {ErrorShares(info, gpu.GetGradients(), gWant, 4)}"));

            // The products' activation operands kept in bf16 from the forward to the backward (the shadows, on by default)
            // round the same values as rounding per product: the same bits, every buffer and gradient.
            if (info.Shadows.Count > 0)
            {
                float[] withShadows = gpu.GetGradients();
                // (the products' output gradients that went to the products in bf16 alone were not written in fp32: SkipUnreadFp32)
                var buffersWith = info.Buffers.Select(b => gpu.Readable(b.Id) ? gpu.ReadBuffer(b.Id) : null).ToArray();
                int unwritten = buffersWith.Count(b => b is null);
                // (and one whose fp32 write was skipped for the copy kept in bf16 reads back as that copy: compared rounded)
                var asBf16 = info.Buffers.Select(b => gpu.ReadsBf16(b.Id)).ToArray();
                // the conversion launches a step makes either way (the kept copies should save some)
                int conversions = 0;
                gpu.OnLaunch = name => { if (name.StartsWith("rt_to_bf16", StringComparison.Ordinal)) conversions++; };
                PoisonedStep(gpu, inputs, B, T, G, seed);
                int kept = conversions;
                conversions = 0;
                gpu.Bf16Shadows = false;
                try { PoisonedStep(gpu, inputs, B, T, G, seed); }
                finally { gpu.Bf16Shadows = true; gpu.OnLaunch = null; }
                int rounded = conversions;
                float[] perProduct = gpu.GetGradients();
                int Differ(float[] g) => Enumerable.Range(0, g.Length).Count(i => BitConverter.SingleToInt32Bits(g[i]) != BitConverter.SingleToInt32Bits(withShadows[i]));
                int differ = Differ(perProduct);
                int buffersDiffer = info.Buffers.Count(b => buffersWith[b.Id] is { } with
                    && !(asBf16[b.Id] ? gpu.ReadBuffer(b.Id).Select(x => FromBf16(ToBf16(x))).ToArray() : gpu.ReadBuffer(b.Id)).AsSpan().SequenceEqual(with));
                // Turned on between a forward that made no copies and its backward (the copies poisoned): the backward
                // rounds per product rather than read copies its forward did not make.
                gpu.Bf16Shadows = false;
                PoisonedStep(gpu, inputs, B, T, G, seed, beforeBackward: () => gpu.Bf16Shadows = true);
                int midStep = Differ(gpu.GetGradients());
                r.Row($"{info.Name}: bf16 operands kept from the forward = rounded per product", differ == 0 && buffersDiffer == 0 && midStep == 0 && kept < rounded,
                    string.Create(Inv, $"{info.Shadows.Count} activation operands kept in bf16 ({CudaModel.ShadowBytes(info, B, T, G) / 1024.0:F1} KiB at B={B}, T={T}), output gradients from the fused kernels: {kept} conversion launches a step instead of {rounded}; {differ} of {perProduct.Length} gradient elements and {buffersDiffer} of {info.Buffers.Count - unwritten} buffers differ ({unwritten} not written in fp32: read in bf16 alone); turned on after the forward: {midStep} differ"));
            }

            // The same with the products whose outputs only fused kernels read writing them in bf16 (as inference does, and
            // here the backward reading them so too; BERT_CUDA_BF16=bf16-outputs): what that adds to the errors.
            {
                // (by default not in a training binding's forward without dropout either: a backward may follow it)
                gpu.Forward(training: false);
                int heldNoDropout = info.Buffers.Count(b => gpu.HoldsBf16(b.Id));
                bool before = gpu.Bf16OutputsInTraining;
                gpu.Bf16OutputsInTraining = true;
                try
                {
                    var (wf16, wf16Name, eg16) = Bf16Step(gpu, info, inputs, cpuBuffers, gWant, B, T, G, seed);
                    int held16 = info.Buffers.Count(b => gpu.HoldsBf16(b.Id));
                    r.Row($"{info.Name}: bf16 products, bf16 outputs vs CPU double", wf16 <= 2e-2 && eg16 <= 2e-2 && (takers == 0) == (held16 == 0) && (heldNoDropout == 0 || before),
                        string.Create(Inv, $"forward buffers worst {wf16:E2} ({wf16Name}), all gradients {eg16:E2} (limits 2e-2; with fp32 outputs {worstBf:E2} and {eg:E2}); {held16} product outputs written in bf16 (off: {heldNoDropout} in a forward without dropout)"));
                }
                finally { gpu.Bf16OutputsInTraining = before; }
            }

            // The same with cuBLAS rounding the fp32 operands (CUBLAS_COMPUTE_32F_FAST_16BF; BERT_CUDA_BF16=cublas).
            {
                bool before = gpu.Bf16InCublas;
                gpu.Bf16InCublas = true;
                try
                {
                    var (wfc, wfcName, egc) = Bf16Step(gpu, info, inputs, cpuBuffers, gWant, B, T, G, seed);
                    r.Row($"{info.Name}: bf16 products rounded by cuBLAS vs CPU double", wfc <= 2e-2 && egc <= 2e-2,
                        string.Create(Inv, $"forward buffers worst {wfc:E2} ({wfcName}), all gradients {egc:E2} (limits 2e-2)"));
                }
                finally { gpu.Bf16InCublas = before; }
            }

            // The tensor-core flash attention (BERT_CUDA_ATTENTION=flash) in a whole model: every buffer but the attention
            // probabilities (which then hold each query row's log-sum-exp), all gradients, and the same bits twice (no atomics).
            var flashProbs = FlashOps(info).SelectMany(o => o.Saved).ToHashSet();
            if (flashProbs.Count > 0)
            {
                bool before = gpu.FlashAttention;
                gpu.FlashAttention = true;
                try
                {
                    var (wfl, wflName, egl) = Bf16Step(gpu, info, inputs, cpuBuffers, gWant, B, T, G, seed, skip: flashProbs);
                    float[] gl1 = gpu.GetGradients();
                    PoisonedStep(gpu, inputs, B, T, G, seed);
                    float[] gl2 = gpu.GetGradients();
                    int differ = 0;
                    for (int i = 0; i < gl1.Length; i++) if (BitConverter.SingleToInt32Bits(gl1[i]) != BitConverter.SingleToInt32Bits(gl2[i])) differ++;
                    // The flash kernel writes its output's bf16 copy for the product after it (CudaExec.Out16): the same bits
                    // as rounding per product, in a training step and in an inference forward.
                    gpu.Bf16Shadows = false;
                    float[] gl3;
                    try { PoisonedStep(gpu, inputs, B, T, G, seed); gl3 = gpu.GetGradients(); }
                    finally { gpu.Bf16Shadows = true; }
                    int keptDiffer = Enumerable.Range(0, gl1.Length).Count(i => BitConverter.SingleToInt32Bits(gl1[i]) != BitConverter.SingleToInt32Bits(gl3[i]));
                    float[] Infer(bool copies)
                    {
                        gpu.Bf16Shadows = copies;
                        try
                        {
                            gpu.Bind(B, T, G, training: false);
                            foreach (var (k, v) in inputs) gpu.SetInput(k, v);
                            gpu.PoisonArena();
                            gpu.Forward(training: false);
                            return gpu.Output;
                        }
                        finally { gpu.Bf16Shadows = true; }
                    }
                    float[] inferWritten = Infer(true), inferRounded = Infer(false);
                    int inferDiffer = Enumerable.Range(0, inferWritten.Length).Count(i => BitConverter.SingleToInt32Bits(inferWritten[i]) != BitConverter.SingleToInt32Bits(inferRounded[i]));
                    gpu.Bind(B, T, G, training: true);
                    foreach (var (k, v) in inputs) gpu.SetInput(k, v);
                    // The binding gave each probabilities buffer B·H·T row statistics and the keep mask's bits (read back: the
                    // length the binding has), and without the flash kernels that binding must be refused until bound again.
                    var sizes = flashProbs.Select(id => gpu.ReadBuffer(id).Length).ToArray();
                    long want = FlashOps(info).Select(o => CudaExec.FlashStatisticsFloats(B, o.Heads, T)).Max();
                    bool planned = sizes.All(n => n == want);
                    gpu.FlashAttention = false;
                    string refused = "NOT refused";
                    try { gpu.Forward(training: true, seed: seed); }
                    catch (InvalidOperationException e) when (e.Message.Contains("call Bind again", StringComparison.Ordinal)) { refused = "refused"; }
                    r.Row($"{info.Name}: flash attention (bf16) vs CPU double", wfl <= 2e-2 && egl <= 2e-2 && differ == 0 && keptDiffer == 0 && inferDiffer == 0 && planned && refused == "refused",
                        string.Create(Inv, $"forward buffers worst {wfl:E2} ({wflName}), all gradients {egl:E2} (limits 2e-2); twice: {differ} of {gl1.Length} gradient elements differ; bf16 copies from the kernels against rounding per product: {keptDiffer} gradient elements and {inferDiffer} of {inferWritten.Length} inference outputs differ; probabilities buffers of {string.Join('/', sizes.Distinct())} floats (B·H·T·(1 + ⌈T/32⌉) = {want}); flash off without Bind: {refused}"));
                }
                finally { gpu.FlashAttention = before; }
                PoisonedStep(gpu, inputs, B, T, G, seed);   // bound again: the probabilities take B·H·T·T floats again
            }

            // The optimizers write the bf16 weight copy in their update pass: after a step the copy is current and holds
            // each new parameter rounded to nearest even (the copy poisoned first, so an element no update wrote shows).
            {
                var parts = new List<string>();
                bool okOpt = true;
                foreach (string kind in new[] { "AdamW", "LAMB" })
                {
                    gpu.SetParameters(p32);
                    gpu.ZeroGradients();
                    gpu.Forward(training: true, seed: seed);   // makes the copy current
                    gpu.Backward();
                    gpu.PoisonBf16Weights();
                    using CudaOptimizer o = kind == "AdamW" ? new CudaAdamW(gpu) : new CudaLamb(gpu);
                    o.ComputeNorm(1.0);
                    o.Step(1e-3);
                    bool current = gpu.Bf16WeightsCurrent;
                    ushort[] w16 = gpu.ReadBf16Weights();
                    float[] w = gpu.GetParameters();
                    int wrong = 0;
                    for (int i = 0; i < w.Length; i++)
                    {
                        ushort want = float.IsNaN(w[i]) ? (ushort)0x7FC0 : ToBf16(w[i]);   // the kernels' quiet NaN
                        if (w16[i] != want) wrong++;
                    }
                    okOpt &= current && wrong == 0;
                    parts.Add($"{kind}: {(current ? "current" : "NOT current")}, {wrong} of {w.Length} values differ from the new parameters rounded");
                }
                r.Row($"{info.Name}: bf16 copy written by the optimizer", okOpt, string.Join("; ", parts));
                gpu.SetParameters(p32);
            }

            // The products read the weights from a bf16 copy, made again when the parameters change: new weights must reach
            // a forward and a replayed graph captured before them, and the old weights back give the old bits.
            gpu.Bind(B, T, G, training: false);
            foreach (var (k, v) in inputs) gpu.SetInput(k, v);
            gpu.Forward(training: false);
            float[] o1 = gpu.Output;
            using (var graph = gpu.CaptureForward(training: false))
            {
                gpu.SetParameters(p32.Select(x => x * 0.75f).ToArray());
                graph.Launch();
                float[] o2 = gpu.Output;
                gpu.Forward(training: false);
                float[] o3 = gpu.Output;
                gpu.SetParameters(p32);
                graph.Launch();
                float[] o4 = gpu.Output;
                static bool Same(float[] a, float[] b) => a.AsSpan().SequenceEqual(b);
                r.Row($"{info.Name}: bf16 weight copy follows the parameters", !Same(o1, o2) && Same(o2, o3) && Same(o1, o4),
                    $"new weights {(Same(o1, o2) ? "NOT seen" : "seen")} by the replayed graph, {(Same(o2, o3) ? "the same bits" : "DIFFERENT bits")} as a forward; the old weights back: {(Same(o1, o4) ? "the old bits" : "DIFFERENT bits")}");
            }
            gpu.SetParameters(p32);

            // The inference forward: LayerNorm and the fused kernels write a product's operand in bf16 too, into the operand
            // slot of the product right after them (CudaExec.Out16), instead of that product rounding it: the same output
            // bits, fewer conversion launches. The arena and the slots poisoned first.
            if (info.Shadows.Count > 0)
            {
                int conversions = 0;
                gpu.OnLaunch = name => { if (name.StartsWith("rt_to_bf16", StringComparison.Ordinal)) conversions++; };
                var forwardBuffers = info.Buffers.Where(b => b.Role != BufferRole.Gradient).ToArray();
                float[]?[] Run()
                {
                    gpu.PoisonArena();
                    gpu.Forward(training: false);
                    // (an output that only the product after it read, from its bf16 copy, is not written in fp32: SkipUnreadFp32)
                    return forwardBuffers.Select(b => gpu.Readable(b.Id) ? gpu.ReadBuffer(b.Id) : null).Append(gpu.Output).ToArray();
                }
                float[]?[] written = Run();
                int unwrittenInference = written.Count(b => b is null);
                int kept = conversions;
                // and the products whose outputs only fused kernels read write them in bf16 (CudaExec.Bf16Outputs)
                int outputs16 = forwardBuffers.Count(b => gpu.HoldsBf16(b.Id));
                conversions = 0;
                gpu.OnLaunch = null;
                using var replay = gpu.CaptureForward();
                gpu.OnLaunch = name => { if (name.StartsWith("rt_to_bf16", StringComparison.Ordinal)) conversions++; };
                gpu.Bf16Shadows = false;
                float[]?[] perProduct;
                try { perProduct = Run(); }
                finally { gpu.Bf16Shadows = true; gpu.OnLaunch = null; }
                // The captured forward replayed after that other forward: the host reads the buffers as the replay wrote them
                // (which are in bf16, which only went to a product), not as the last forward ran: the same as `written`.
                gpu.PoisonArena();
                replay.Launch();
                var replayed = forwardBuffers.Select(b => gpu.Readable(b.Id) ? gpu.ReadBuffer(b.Id) : null).Append(gpu.Output).ToArray();
                int replayDiffer = Enumerable.Range(0, written.Length).Count(i => (written[i] is null) != (replayed[i] is null) || !Bits(written[i], replayed[i]));
                static bool Bits(float[]? a, float[]? b) => a is null || (b is not null && MemoryMarshal.Cast<float, int>(a).SequenceEqual(MemoryMarshal.Cast<float, int>(b)));
                int differ = Enumerable.Range(0, written.Length).Count(i => !Bits(written[i], perProduct[i]));
                r.Row($"{info.Name}: bf16 inference, operands written by their producers = rounded per product", differ == 0 && replayDiffer == 0 && kept < conversions && (takers == 0) == (outputs16 == 0),
                    $"{kept} conversion launches a forward instead of {conversions}; {differ} of {forwardBuffers.Length - unwrittenInference} buffers and the output differ; {outputs16} product outputs written in bf16, {unwrittenInference} outputs read in bf16 alone; replayed from a graph after another forward: {replayDiffer} differ");
            }
            gpu.Precision = CudaPrecision.Fp32;
            gpu.Bind(B, T, G, training: true);
            foreach (var (k, v) in inputs) gpu.SetInput(k, v);
        }

        // The same step again: bit for bit.
        gpu.ZeroGradients();
        gpu.Forward(training: true, seed: seed);
        gpu.Backward();
        float[] g2 = gpu.GetGradients();
        int diff = 0;
        for (int i = 0; i < g1.Length; i++) if (BitConverter.SingleToInt32Bits(g1[i]) != BitConverter.SingleToInt32Bits(g2[i])) diff++;
        r.Row($"{info.Name}: same step twice, same bits", diff == 0, $"{diff} of {g1.Length} gradient elements differ");

        // Inference (dropout off, the reusing plan) against the CPU float model.
        cpuF.Bind(B, T, G, training: false); gpu.ReuseMemory = true; gpu.Bind(B, T, G, training: false);
        foreach (var (k, v) in inputs) { cpuF.SetInput(k, v); gpu.SetInput(k, v); }
        var outCpu = cpuF.Forward(training: false).ToArray();
        // The products that add their bias (and, without dropout, the residual after it) in cuBLASLt, counted; then the same
        // forward with the bias kernels instead.
        int withBias = 0, withResidual = 0;
        gpu.OnLaunch = name => { if (name.StartsWith("gemm+bias", StringComparison.Ordinal)) { withBias++; if (name.StartsWith("gemm+bias+residual", StringComparison.Ordinal)) withResidual++; } };
        try { gpu.Forward(training: false); }
        finally { gpu.OnLaunch = null; }
        float[] outGpu = gpu.Output;
        double eo = RelErr(outGpu, outCpu.Select(x => (double)x).ToArray(), out _);
        bool biasEpilogue = gpu.BiasEpilogue;
        gpu.BiasEpilogue = false;
        try { gpu.Forward(training: false); }
        finally { gpu.BiasEpilogue = biasEpilogue; }
        double eOff = RelErr(gpu.Output, outCpu.Select(x => (double)x).ToArray(), out _);
        r.Row($"{info.Name}: inference output vs CPU float", eo <= 1e-5 && eOff <= 1e-5 && (withBias > 0) == (gpu.HasCublasLt && biasEpilogue),
            string.Create(Inv, $"{eo:E2} (limit 1e-5), {outGpu.Length} values, memory reused; {withBias} products added their bias in cuBLASLt, {withResidual} the residual too (bias epilogue off: {eOff:E2})"));

        // Accuracy counted on the device (the progress display's, without reading the probabilities back) against the
        // argmax of the probabilities read back: on the random labels, then on labels made right on every even row.
        Guard(r, $"{info.Name}: accuracy counted on the device", () =>
        {
            var ces = info.Ops.Where(o => o.Kind == OpKind.CrossEntropy).ToArray();
            var parts = new List<string>();
            bool ok = true;
            for (int round = 0; round < 2; round++)
            {
                var counted = gpu.CrossEntropyAccuracy();
                ok &= counted.Length == ces.Length;
                for (int c = 0; c < ces.Length && c < counted.Length; c++)
                {
                    float[] probs = gpu.ReadBuffer(ces[c].Saved[0]);
                    string name = info.Inputs.First(i => i.Index == ces[c].IntInput).Name;
                    int[] labels = inputs[name];
                    int V = labels.Length == 0 ? 1 : probs.Length / labels.Length;
                    if (round == 1)
                    {
                        labels = labels.Select((l, n) => n % 5 == 4 ? -100 : (Bert.Training.PretrainJob.ArgMax(probs.AsSpan(n * V, V)) + (n % 2)) % V).ToArray();
                        gpu.SetInput(name, labels);
                        counted[c] = gpu.CrossEntropyAccuracy()[c];
                    }
                    int right = 0, total = 0;
                    for (int n = 0; n < labels.Length; n++)
                    {
                        if (labels[n] < 0) continue;
                        total++;
                        if (Bert.Training.PretrainJob.ArgMax(probs.AsSpan(n * V, V)) == labels[n]) right++;
                    }
                    ok &= counted[c] == (right, total) && (round == 0 || right > 0);
                    parts.Add(string.Create(Inv, $"{counted[c].Right}/{counted[c].Total} (read back: {right}/{total})"));
                }
            }
            return (ok, "right/counted rows per cross-entropy, random labels then half made right: " + string.Join(", ", parts));
        });

        // AdamW and LAMB with clipping, two steps each, against the CPU optimizer on the same gradients.
        if (info.Inputs.Any(i => i.Kind == InputKind.Labels))
            foreach (Optimizer<float> cpuOpt in new Optimizer<float>[] { new AdamW<float>(info), new Lamb<float>(info) })
            {
                gpu.Bind(B, T, G, training: true);
                gpu.SetParameters(p32);
                using var opt = CudaOptimizer.Like(gpu, cpuOpt);
                float[] pc = (float[])p32.Clone(), gc;
                double worstNorm = 0;
                for (int step = 0; step < 2; step++)
                {
                    CudaDriver.MemcpyHtoDAsync<float>(gpu.GradientsPointer, g1, gpu.Stream);
                    opt.ComputeNorm(0.05);
                    opt.Step(1e-3);
                    double gn = opt.LastNorm;
                    gc = (float[])g1.Clone();
                    double cn = GradientClipping.ClipByGlobalNorm<float>(gc, 0.05);
                    worstNorm = Math.Max(worstNorm, Math.Abs(gn - cn) / cn);
                    cpuOpt.Step(pc, gc, 1e-3);
                }
                float[] pg = gpu.GetParameters();
                double ep = 0;
                for (int i = 0; i < pc.Length; i++) ep = Math.Max(ep, Math.Abs(pg[i] - pc[i]) / (1e-3 + Math.Abs(pc[i])));
                string ratios = "";
                if (opt is CudaLamb lamb && cpuOpt is Lamb<float> cpuLamb)
                {
                    double[] rg = lamb.LastTrustRatios();
                    double er = rg.Zip(cpuLamb.LastTrustRatios.ToArray()).Max(x => Math.Abs(x.First - x.Second) / x.Second);
                    ep = Math.Max(ep, er);
                    ratios = string.Create(Inv, $", trust ratios {er:E2} ({rg.Length} tensors)");
                }
                string name = cpuOpt is Lamb<float> ? "LAMB" : "AdamW";
                r.Row($"{info.Name}: {name} + clipping, 2 steps vs CPU", ep <= 1e-5 && worstNorm <= 1e-5,
                    string.Create(Inv, $"parameters {ep:E2}, gradient norm {worstNorm:E2}{ratios} (limits 1e-5)"));
            }
    }

    /// <summary>What an experiment's build-time estimate (MemoryEstimate.For, BERT0219) says a bf16 training step with
    /// AdamW takes, against the device memory it takes: the model, its optimizer, one step at B × T (pre-training's
    /// masked rows as `bert pretrain` binds them). The estimate must not exceed what was taken, and what it leaves out
    /// (cuBLAS's workspace, the attention pointer arrays, the inputs, the loaded kernels) must fit the 1 GiB margin the
    /// check keeps below the device's memory.</summary>
    static void MemoryCheck(Report r, Catalog.Entry entry, CudaDevice device, KernelCache cache, int B, int T)
    {
        var info = entry.Info;
        int G = info.Inputs.Any(i => i.Kind == InputKind.Rows) ? MemoryEstimate.PretrainingRows(B, T, 0.15) : 0;
        var estimate = MemoryEstimate.For(info, B, T, G, Bert.Dsl.Device.H100, Bert.Dsl.Precision.Bf16, Bert.Dsl.Job.Pretrain);
        CudaDriver.CtxSynchronize();
        var (free0, _) = CudaDriver.MemGetInfo();
        long taken;
        var cpu = entry.Create();
        cpu.InitParameters(1);
        using (var gpu = new CudaModel(info, entry.CreateCuda(), device, cache) { Precision = CudaPrecision.Bf16 })
        using (var opt = new CudaAdamW(gpu))
        {
            gpu.SetParameters(cpu.Parameters);
            gpu.Bind(B, T, G, training: true);
            foreach (var (k, v) in RandomInputs(info, B, T, G, new Random(4))) gpu.SetInput(k, v);
            gpu.ZeroGradients();
            gpu.Forward(training: true, seed: 1);
            gpu.Backward();
            opt.ComputeNorm(1.0);
            opt.Step(1e-4);
            CudaDriver.CtxSynchronize();
            var (free1, _) = CudaDriver.MemGetInfo();
            taken = (long)free0 - (long)free1;
        }
        static string MiB(long bytes) => string.Create(Inv, $"{bytes / 1048576.0:F1} MiB");
        // What the estimate leaves out by design: cuBLAS's workspace and the attention pointer arrays' pool; the rest
        // (inputs, the loaded kernels, cuBLAS's own) is what remains beyond them.
        long known = (long)CudaModel.WorkspaceBytes + CudaModel.HeadArrayBytes(info, B) * CudaModel.HeadPoolLayouts;
        long beyond = taken - estimate.Total - known;
        r.Row($"memory estimate: {info.Name} bf16 step, B={B} T={T}", beyond >= 0 && taken - estimate.Total <= MemoryEstimate.GpuReserve,
            $"taken {MiB(taken)}, build-time estimate {MiB(estimate.Total)} (activations {MiB(estimate.Activations)}, weights/gradients/AdamW {MiB(estimate.ParameterState)}, bf16 {MiB(estimate.Bf16)}, scratch {MiB(estimate.Scratch)}); cuBLAS workspace and pointer arrays {MiB(known)}; beyond them {MiB(beyond)} (all left out must be 0 to 1024 MiB)",
            new Dictionary<string, object> { ["taken"] = taken, ["estimate"] = estimate.Total, ["beyond"] = beyond });
    }

    /// <summary>The product's training loop (the pre-training job on the embedded corpus, dropout on, clipping, AdamW with
    /// warm-up, a checkpoint at the end) run on the device and on the CPU from the same start: the losses and the saved
    /// weights must agree.</summary>
    static void TrainLoopCheck(Report r, CudaDevice device, KernelCache cache)
    {
        var entry = Catalog.Get("nano", "pretraining");
        var tok = Bert.Text.WordPiece.BertBaseUncased();
        var (docs, _) = DataSets.Corpus(null);
        var data = new Bert.Data.PretrainingOptions { MaxSeqLength = 32, MaxPredictionsPerSeq = 6 };
        var instances = Bert.Data.Pretraining.CreateInstances(docs.Take(40).ToList(), tok, data, 1);
        (List<(long, double)> Losses, float[] Weights) Train(bool gpu, string optimizer)
        {
            var model = entry.Create();
            model.InitParameters(3);
            var job = new Bert.Training.PretrainJob(model, tok, instances, data, 8, 5) { Prefetch = gpu };   // as bert pretrain --device cuda
            using var trainer = gpu ? new CudaTrainer(entry.Info, entry.CreateCuda(), device, CudaPrecision.Fp32, cache) : null;
            var loop = new Bert.Training.TrainLoop
            {
                Model = model, TotalSteps = 6, Bind = job.Bind, Device = trainer,
                Options = new Bert.Training.TrainOptions { BatchSize = 8, LearningRate = 1e-3, WarmupFraction = 0.3, Seed = 9, Accumulate = 2, Optimizer = optimizer },
            };
            loop.Run(null, CancellationToken.None);
            return (loop.Losses, model.Parameters.ToArray());
        }
        foreach (string optimizer in new[] { "adamw", "lamb" })
        {
            var (lc, wc) = Train(gpu: false, optimizer);
            var (lg, wg) = Train(gpu: true, optimizer);
            double dl = lc.Zip(lg).Max(x => Math.Abs(x.First.Item2 - x.Second.Item2) / Math.Abs(x.First.Item2));
            // The attention key bias is left out: its gradient is zero in exact arithmetic (softmax ignores a shift of all
            // scores), so Adam turns rounding noise of either sign into full steps there, on any two machines.
            double dw = 0, nw = 0;
            foreach (var p in entry.Info.Parameters.Where(p => !p.Name.EndsWith(".Bk", StringComparison.Ordinal)))
                for (long i = p.Offset; i < p.Offset + p.Length; i++) { double d = wc[i] - wg[i]; dw += d * d; nw += (double)wc[i] * wc[i]; }
            double ew = Math.Sqrt(dw / nw);
            r.Row($"training loop ({optimizer}): 6 steps on the device vs the CPU", dl <= 1e-4 && ew <= 1e-4,
                string.Create(Inv, $"{entry.Info.Name}, accumulating 2 micro-batches of 8, dropout on: losses {dl:E2}, weights after {ew:E2} (limits 1e-4); loss {lc[0].Item2:F3} → {lc[^1].Item2:F3}"));
        }
    }

    /// <summary>CudaTrainer's steps captured into CUDA graphs and replayed against the same steps kernel by kernel: eight
    /// micro-batches of two shapes (the masked rows differ, as in pre-training), fresh inputs and dropout seeds each,
    /// accuracy counted, clipping and AdamW between them. Losses, accuracies and the weights after must be the same bits,
    /// and four of the steps must have been replays (each shape is captured after its second step).</summary>
    static void GraphStepCheck(Report r, CudaDevice device, KernelCache cache)
    {
        var entry = Catalog.Get("nano", "pretraining");
        var info = entry.Info;
        const int B = 3, T = 16;
        int[] rows = [7, 7, 5, 7, 5, 5, 7, 7];
        (List<float> Losses, List<string> Accuracy, float[] Weights, long Replays) Run(bool graphs)
        {
            var cpu = entry.Create();
            cpu.InitParameters(8);
            using var trainer = new CudaTrainer(info, entry.CreateCuda(), device, CudaPrecision.Fp32, cache) { CountAccuracy = true, UseGraphs = graphs };
            trainer.Upload(cpu, new AdamW<float>(info));
            cpu.InputsOnly = true;
            var rng = new Random(12);
            var losses = new List<float>(); var accuracy = new List<string>();
            for (int step = 0; step < rows.Length; step++)
            {
                cpu.Bind(B, T, rows[step], training: true);
                foreach (var (k, v) in RandomInputs(info, B, T, rows[step], rng)) cpu.SetInput(k, v);
                trainer.ZeroGradients();
                losses.Add(trainer.ForwardBackward(cpu, true, (ulong)(100 + step)));
                accuracy.Add(string.Join(" ", trainer.LastAccuracy.Select(a => $"{a.Right}/{a.Total}")));
                trainer.ClipGradients(1, 1.0);
                trainer.Step(1e-3);
            }
            return (losses, accuracy, trainer.Model.GetParameters(), trainer.GraphReplays);
        }
        var eager = Run(graphs: false);
        var replayed = Run(graphs: true);
        string failed = FailedCaptureLeavesTheModelUsable(entry, device, cache);
        int lossDiff = eager.Losses.Zip(replayed.Losses).Count(x => BitConverter.SingleToInt32Bits(x.First) != BitConverter.SingleToInt32Bits(x.Second));
        int accDiff = eager.Accuracy.Zip(replayed.Accuracy).Count(x => x.First != x.Second);
        int wDiff = eager.Weights.Zip(replayed.Weights).Count(x => BitConverter.SingleToInt32Bits(x.First) != BitConverter.SingleToInt32Bits(x.Second));
        r.Row("training steps replayed from CUDA graphs", lossDiff == 0 && accDiff == 0 && wDiff == 0 && replayed.Replays == 4 && eager.Replays == 0 && failed == "",
            string.Create(Inv, $"{info.Name}, {rows.Length} micro-batches of two shapes, dropout and accuracy counting on: {replayed.Replays} replayed (4 expected); {lossDiff} losses, {accDiff} accuracies and {wDiff} of {eager.Weights.Length} weights differ from kernel by kernel; loss {eager.Losses[0]:F3} → {eager.Losses[^1]:F3}; {(failed == "" ? "a failed capture left the model usable" : failed)}"));
    }

    /// <summary>A capture that fails (a training step captured at a binding that never ran kernel by kernel: its attention
    /// pointer arrays do not exist yet) must end the capture: the same model then runs a step and gives the loss it gives
    /// on a fresh model. Returns "" or what went wrong.</summary>
    static string FailedCaptureLeavesTheModelUsable(Catalog.Entry entry, CudaDevice device, KernelCache cache)
    {
        var cpu = entry.Create();
        cpu.InitParameters(4);
        var inputs = RandomInputs(entry.Info, 2, 12, 5, new Random(21));
        float Loss(CudaModel m)
        {
            m.Bind(2, 12, 5, training: true);
            foreach (var (k, v) in inputs) m.SetInput(k, v);
            m.Forward(training: true, seed: 77);
            return m.ReadBuffer(entry.Info.OutputBuffer)[0];
        }
        using var fresh = new CudaModel(entry.Info, entry.CreateCuda(), device, cache);
        fresh.SetParameters(cpu.Parameters);
        float want = Loss(fresh);
        using var gpu = new CudaModel(entry.Info, entry.CreateCuda(), device, cache);
        gpu.SetParameters(cpu.Parameters);
        gpu.Bind(2, 12, 5, training: true);
        foreach (var (k, v) in inputs) gpu.SetInput(k, v);
        try
        {
            using var graph = gpu.CaptureTrainingStep(training: true, countAccuracy: false);
            return "a capture at a binding that never ran was expected to fail, and did not";
        }
        catch (Exception e) when (e is InvalidOperationException or CudaException) { }
        float got = Loss(gpu);
        return BitConverter.SingleToInt32Bits(got) == BitConverter.SingleToInt32Bits(want) ? "" : string.Create(Inv, $"after a failed capture the loss is {got:R}, on a fresh model {want:R}");
    }

    /// <summary>The fine-tuning evaluation (FinetuneJob.Evaluate) with the model's forward on the device (Model.Runner) and on
    /// the CPU: the same accuracy, the same loss.</summary>
    static void EvaluationCheck(Report r, CudaDevice device, KernelCache cache)
    {
        var entry = Catalog.Get("nano", "classifier", 3);
        var model = entry.Create();
        model.InitParameters(4);
        var rng = new Random(6);
        var set = Enumerable.Range(0, 45).Select(i => (Ids: new[] { 101 }.Concat(Enumerable.Range(0, rng.Next(3, 30)).Select(_ => rng.Next(1000, 30000))).Append(102).ToArray(), Label: rng.Next(3))).Select(x => new Bert.Training.FinetuneJob.Example(x.Ids, x.Label)).ToList();
        var cpu = Bert.Training.FinetuneJob.Evaluate(model, set, 0, 16);
        using var trainer = new CudaTrainer(entry.Info, entry.CreateCuda(), device, CudaPrecision.Fp32, cache);
        trainer.SetParameters(model);
        model.Runner = trainer;
        var gpu = Bert.Training.FinetuneJob.Evaluate(model, set, 0, 16);
        model.Runner = null;
        double dl = Math.Abs(cpu.Loss - gpu.Loss) / Math.Abs(cpu.Loss);
        r.Row("evaluation with the forward on the device", dl <= 1e-5 && cpu.Score == gpu.Score,
            string.Create(Inv, $"{set.Count} texts in batches of 16: accuracy {gpu.Score:P1} (CPU {cpu.Score:P1}), loss {dl:E2} relative (limit 1e-5)"));
    }

    /// <summary>The attention ops the flash kernels take (head sizes multiples of 8 up to 128, on a card with bf16 tensor cores); the
    /// others keep cuBLAS.</summary>
    static OpInfo[] FlashOps(ModelInfo info) => !_flashCapable ? []
        : info.Ops.Where(CudaExec.TakesFlash).ToArray();

    static bool _flashCapable = true;

    /// <summary>One training step in the model's current (bf16) precision on fresh poisoned memory: the worst forward buffer's
    /// error against the CPU in double, its name, and the relative error of all the parameter gradients together.</summary>
    static (double Worst, string WorstName, double Gradients) Bf16Step(CudaModel gpu, ModelInfo info, Dictionary<string, int[]> inputs,
        Dictionary<int, double[]> cpuBuffers, double[] gWant, int B, int T, int G, ulong seed, IReadOnlySet<int>? skip = null)
    {
        PoisonedStep(gpu, inputs, B, T, G, seed);
        double worst = 0; string worstName = "";
        foreach (var b in info.Buffers)
        {
            double[] want = cpuBuffers[b.Id];
            if (want.Length == 0 || b.Role == BufferRole.Gradient || skip?.Contains(b.Id) == true || !gpu.Readable(b.Id)) continue;
            double e = BufferErr(info, b, gpu.ReadBuffer(b.Id), cpuBuffers);
            if (!(e <= worst)) { worst = e; worstName = b.Name; }
        }
        float[] gb = gpu.GetGradients();
        double num = 0, den = 0;
        for (int i = 0; i < gb.Length; i++) { double d = gb[i] - gWant[i]; num += d * d; den += gWant[i] * gWant[i]; }
        return (worst, worstName, Math.Sqrt(num / den));
    }

    /// <summary>The last step's errors against the CPU in double: the worst forward buffer (activations, saved) and backward
    /// buffer (gradients) with their names, the worst parameter gradient (those ~0 in exact arithmetic left out) and its name,
    /// and how many buffers could not be read back (not written in fp32; skipped).</summary>
    static (double Forward, string ForwardName, double Backward, string BackwardName, double Params, string ParamsName, int Unread) StepErrors(
        CudaModel gpu, ModelInfo info, Dictionary<int, double[]> cpuBuffers, double[] gWant, double global)
    {
        double wf = 0, wb = 0, wp = 0; string wfName = "", wbName = "", wpName = "";
        int unread = 0;
        foreach (var b in info.Buffers)
        {
            double[] want = cpuBuffers[b.Id];
            if (want.Length == 0) continue;
            if (!gpu.Readable(b.Id)) { unread++; continue; }
            double e = BufferErr(info, b, gpu.ReadBuffer(b.Id), cpuBuffers);
            if (b.Role != BufferRole.Gradient) { if (!(e <= wf)) { wf = e; wfName = b.Name; } }
            else if (!(e <= wb)) { wb = e; wbName = b.Name; }
        }
        float[] got = gpu.GetGradients();
        foreach (var p in info.Parameters)
        {
            var want = gWant.AsSpan((int)p.Offset, (int)p.Length);
            double norm = 0; foreach (double x in want) norm += x * x;
            if (Math.Sqrt(norm) < 1e-6 * global) continue;   // ~0 in exact arithmetic (the attention key bias)
            double e = RelErr(got.AsSpan((int)p.Offset, (int)p.Length), want, out _);
            if (!(e <= wp)) { wp = e; wpName = p.Name; }
        }
        return (wf, wfName, wb, wbName, wp, wpName, unread);
    }

    /// <summary>Which parameter tensors carry most of the gradients' squared error against the CPU (‖g − want‖² per tensor over
    /// the total), the <paramref name="top"/> largest with their shares: where bf16's error budget goes.</summary>
    static string ErrorShares(ModelInfo info, float[] got, double[] want, int top)
    {
        var shares = info.Parameters.Select(p =>
        {
            double e = 0;
            for (long i = p.Offset; i < p.Offset + p.Length; i++) { double d = got[i] - want[i]; e += d * d; }
            return (p.Name, Error: e);
        }).ToList();
        double total = shares.Sum(x => x.Error);
        return total <= 0 ? "none" : string.Join(", ", shares.OrderByDescending(x => x.Error).Take(top).Select(x => string.Create(Inv, $"{x.Name} {x.Error / total:P0}")));
    }

    /// <summary>One training step, forward and backward, at a fresh binding of the arena poisoned first and zero gradients;
    /// <paramref name="beforeBackward"/> runs between the two (a setting changed mid-step).</summary>
    static void PoisonedStep(CudaModel gpu, Dictionary<string, int[]> inputs, int B, int T, int G, ulong seed, Action? beforeBackward = null)
    {
        gpu.Bind(B, T, G, training: true);
        foreach (var (k, v) in inputs) gpu.SetInput(k, v);
        gpu.PoisonArena();
        gpu.ZeroGradients();
        gpu.Forward(training: true, seed: seed);
        beforeBackward?.Invoke();
        gpu.Backward();
    }

    static bool IsForward(ModelInfo info, string failure)
    {
        int id = int.Parse(failure[(failure.IndexOf('#') + 1)..failure.IndexOf(' ')], Inv);
        return info.Buffers[id].Role != BufferRole.Gradient;
    }

    /// <summary>Every buffer of the CPU model (bound with ReuseMemory off) as double.</summary>
    static Dictionary<int, double[]> CpuBuffers(Model<double> cpu, ModelInfo info)
    {
        var d = new Dictionary<int, double[]>();
        foreach (var b in info.Buffers) d[b.Id] = cpu.Buffer(b.Id).ToArray();
        return d;
    }

    // ---------------------------------------------------------------- timing

    static void Timing(Report r, CudaDevice device, KernelCache cache, Settings s)
    {
        var entry = Catalog.Get(s.TimingSize, "pretraining");
        var info = entry.Info;
        using var gpu = new CudaModel(info, entry.CreateCuda(), device, cache);
        var cpu = entry.Create();
        cpu.InitParameters(1);
        gpu.SetParameters(cpu.Parameters);
        using var opt = new CudaAdamW(gpu);
        double fpt = Catalog.FlopsPerToken(info, s.Seq, 0.15);
        bool flashApplies = FlashOps(info).Length > 0;   // else the flash rows would time cuBLAS again
        var rng = new Random(2);
        nint start = CudaDriver.EventCreate(), stop = CudaDriver.EventCreate();
        // The fused CUDA-core attention (BERT_CUDA_ATTENTION=fused) lost to cuBLAS on the H100 (59.8 against 36.5 ms at B=64)
        // and is checked above, not timed; its tensor-core successor is (flash).
        // perProduct: bf16 operands rounded at every product, as before the shadows (the forward's bf16 copies kept for the
        // backward, written by the kernels that compute them); separateLn: LayerNorm's backward in two passes over dy and x.
        // bf16Out: the products whose outputs only fused kernels read write them in bf16 in training too (off by default).
        bool epilogueDefault = gpu.BiasEpilogue;   // BERT_CUDA_BIAS_EPILOGUE as set
        // noEpilogue: a Linear's bias as a kernel after the product instead of cuBLASLt's bias epilogue (BERT_CUDA_BIAS_EPILOGUE=0).
        foreach (var (precision, flash, split, inCublas, perProduct, separateLn, bf16Out, noEpilogue) in ((CudaPrecision, bool, bool, bool, bool, bool, bool, bool)[])[(CudaPrecision.Fp32, false, false, false, false, false, false, false),
            (CudaPrecision.Tf32, false, false, false, false, false, false, false), (CudaPrecision.Bf16, false, false, false, false, false, false, false), (CudaPrecision.Bf16, false, false, false, false, false, true, false),
            (CudaPrecision.Bf16, false, false, false, false, false, false, true),
            (CudaPrecision.Bf16, false, false, false, true, false, false, false), (CudaPrecision.Bf16, false, false, false, false, true, false, false),
            (CudaPrecision.Bf16, false, true, false, false, false, false, false), (CudaPrecision.Bf16, false, false, true, false, false, false, false),
            (CudaPrecision.Bf16, true, false, false, false, false, false, false), (CudaPrecision.Bf16, true, false, true, false, false, false, false)])
        {
            if (flash && !flashApplies) continue;
            if (noEpilogue && !(gpu.HasCublasLt && epilogueDefault)) continue;   // else the same as the default row
            gpu.BiasEpilogue = epilogueDefault && !noEpilogue;
            gpu.FlashAttention = flash;
            gpu.SplitHeads = split;
            gpu.Bf16InCublas = inCublas;
            gpu.Bf16Shadows = !perProduct;
            gpu.SeparateLayerNormSums = separateLn;
            gpu.Bf16OutputsInTraining = bf16Out;
            foreach (int B in s.Batches)
            {
                int G = (int)Math.Round(0.15 * B * s.Seq);
                var inputs = RandomInputs(info, B, s.Seq, G, rng);
                for (int k = 0; k < B * s.Seq; k++) inputs["mask"][k] = 1; // full sequences, as the HF baseline
                try
                {
                    gpu.Bind(B, s.Seq, G, training: true);
                    foreach (var (k, v) in inputs) gpu.SetInput(k, v);
                    void Step(ulong seed)
                    {
                        gpu.ZeroGradients();
                        gpu.Forward(training: true, seed: seed);
                        gpu.Backward();
                        opt.ComputeNorm(1.0);
                        opt.Step(1e-4);
                    }
                    for (int w = 0; w < 2; w++) Step((ulong)w);
                    gpu.Synchronize();
                    CudaDriver.EventRecord(start, gpu.Stream);
                    for (int k = 0; k < s.Steps; k++) Step((ulong)(10 + k));
                    CudaDriver.EventRecord(stop, gpu.Stream);
                    CudaDriver.EventSynchronize(stop);
                    double ms = CudaDriver.EventElapsedTime(start, stop) / s.Steps;
                    double seqs = B / (ms / 1000), mfu = seqs * s.Seq * fpt / 989e12;
                    float loss = gpu.ReadBuffer(info.OutputBuffer)[0];
                    r.Row($"time {s.Name} step {precision.ToString().ToLowerInvariant()}{(flash ? " flash-attn" : "")}{(split ? " split-heads" : "")}{(inCublas ? " cublas-rounded" : "")}{(perProduct ? " rounded-per-product" : "")}{(separateLn ? " separate-ln-sums" : "")}{(bf16Out ? " bf16-outputs" : "")}{(noEpilogue ? " no-bias-epilogue" : "")} B={B} T={s.Seq}", float.IsFinite(loss),
                        string.Create(Inv, $"{ms:F1} ms/step, {seqs:F1} seq/s, MFU {mfu:P1} of 989 TFLOP/s; loss {loss:F3}; arena {gpu.ArenaBytes / (1 << 20)} MiB"),
                        new() { ["batch"] = B, ["seq"] = s.Seq, ["precision"] = precision.ToString(), ["flash_attention"] = flash, ["split_heads"] = split, ["cublas_rounded"] = inCublas, ["rounded_per_product"] = perProduct, ["separate_ln_sums"] = separateLn, ["bf16_outputs"] = bf16Out, ["bias_epilogue"] = gpu.BiasEpilogue && gpu.HasCublasLt && !inCublas, ["step_ms"] = ms, ["seq_per_s"] = seqs, ["mfu"] = mfu });
                }
                catch (CudaException e) when (e.Message.Contains("OUT_OF_MEMORY"))
                {
                    r.Info($"B={B}: out of device memory");
                }
            }
        }
        CudaDriver.EventDestroy(start); CudaDriver.EventDestroy(stop);
        gpu.Bf16InCublas = false;
        gpu.FlashAttention = false;
        gpu.Bf16Shadows = true;
        gpu.SeparateLayerNormSums = false;
        gpu.Bf16OutputsInTraining = false;
        gpu.BiasEpilogue = epilogueDefault;
        TrainerSteps(r, device, cache, s, rng);
        Profile(r, gpu, opt, info, s, rng, CudaPrecision.Tf32, flash: false, byKernel: false);
        Profile(r, gpu, opt, info, s, rng, CudaPrecision.Bf16, flash: false, byKernel: false);
        if (flashApplies) Profile(r, gpu, opt, info, s, rng, CudaPrecision.Bf16, flash: true, byKernel: false);
        Profile(r, gpu, opt, info, s, rng, CudaPrecision.Bf16, flash: false, byKernel: true);
        if (flashApplies) Profile(r, gpu, opt, info, s, rng, CudaPrecision.Bf16, flash: true, byKernel: true);
        gpu.Bf16InCublas = true;
        Profile(r, gpu, opt, info, s, rng, CudaPrecision.Bf16, flash: false, byKernel: true);
        gpu.Bf16InCublas = false;
        gpu.Dispose();
        Inference(r, device, cache, s);
    }

    /// <summary>The product's training step as `bert pretrain --device cuda --precision bf16` runs it (CudaTrainer: the CPU
    /// model's inputs set on the device, forward, accuracy counted, backward, the loss read back, clipping with the norm read
    /// back, AdamW), timed by the host clock over whole steps: the kernels' time above plus what the host adds; kernel by
    /// kernel and as CUDA graph replays.</summary>
    static void TrainerSteps(Report r, CudaDevice device, KernelCache cache, Settings s, Random rng)
    {
        // The timed model at the largest batch, and BERT-Mini (the demo's model: small kernels, where launching them is the cost),
        // each kernel by kernel and replayed from a CUDA graph.
        // The timed model once more with the flash attention (bf16 tensor cores), replayed.
        var runs = new[] { (s.TimingSize, s.Batches.Max()), ("mini", Math.Min(32, s.Batches.Max())) }
            .SelectMany(x => new[] { (x.Item1, x.Item2, false, false), (x.Item1, x.Item2, true, false) })
            .Append((s.TimingSize, s.Batches.Max(), true, true))
            .Where(x => !x.Item4 || FlashOps(Catalog.Get(x.Item1, "pretraining").Info).Length > 0);
        foreach (var (size, B, graphs, flash) in runs)
            {
                var entry = Catalog.Get(size, "pretraining");
                var info = entry.Info;
                int G = (int)Math.Round(0.15 * B * s.Seq);
                var cpu = entry.Create();
                cpu.InitParameters(1);
                using var trainer = new CudaTrainer(info, entry.CreateCuda(), device, CudaPrecision.Bf16, cache) { CountAccuracy = true, UseGraphs = graphs };
                trainer.Model.FlashAttention = flash;
                trainer.Upload(cpu, new AdamW<float>(info));
                cpu.InputsOnly = true;
                cpu.Bind(B, s.Seq, G, training: true);
                var inputs = RandomInputs(info, B, s.Seq, G, rng);
                for (int k = 0; k < B * s.Seq; k++) inputs["mask"][k] = 1;
                foreach (var (k, v) in inputs) cpu.SetInput(k, v);
                void Step(ulong seed)
                {
                    trainer.ZeroGradients();
                    trainer.ForwardBackward(cpu, true, seed);
                    trainer.ClipGradients(1, 1.0);
                    trainer.Step(1e-4);
                }
                for (int w = 0; w < 3; w++) Step((ulong)w);   // the second step of a shape is captured
                trainer.Model.Synchronize();
                long replays = trainer.GraphReplays;
                var sw = System.Diagnostics.Stopwatch.StartNew();
                for (int k = 0; k < s.Steps; k++) Step((ulong)(10 + k));
                trainer.Model.Synchronize();
                double ms = sw.Elapsed.TotalMilliseconds / s.Steps;
                bool replayed = trainer.GraphReplays - replays == s.Steps;
                cpu.InputsOnly = false;
                r.Row($"time BERT-{char.ToUpperInvariant(size[0])}{size[1..]} step bf16{(flash ? " flash-attn" : "")} B={B} T={s.Seq}, the product's training loop{(graphs ? ", graph" : "")}", double.IsFinite(ms) && (!graphs || replayed),
                    string.Create(Inv, $"{ms:F2} ms/step by the host clock ({B / (ms / 1000):F1} seq/s): CudaTrainer's step with inputs set, accuracy counted, loss and norm read back{(graphs ? (replayed ? "; every step a graph replay" : $"; only {trainer.GraphReplays - replays} of {s.Steps} steps replayed ({trainer.GraphsOff ?? "no capture"})") : "")}"),
                    new() { ["model"] = size, ["batch"] = B, ["seq"] = s.Seq, ["precision"] = "Bf16", ["trainer"] = true, ["graph"] = graphs, ["flash_attention"] = flash, ["step_ms"] = ms });
            }
    }

    /// <summary>BERT-Base (or the --timing-size) sequence classification, forward only (dropout off, the reusing plan): latency at batch 1 and
    /// throughput at the largest batch, T = seq, TF32 products.</summary>
    static void Inference(Report r, CudaDevice device, KernelCache cache, Settings s)
    {
        var entry = Catalog.Get(s.TimingSize, "classifier");
        using var gpu = new CudaModel(entry.Info, entry.CreateCuda(), device, cache) { AllowTf32 = true };
        var cpu = entry.Create();
        cpu.InitParameters(1);
        gpu.SetParameters(cpu.Parameters);
        bool flashApplies = FlashOps(entry.Info).Length > 0;
        var rng = new Random(8);
        nint start = CudaDriver.EventCreate(), stop = CudaDriver.EventCreate();
        int most = s.Batches.Max();
        // fp32Out: every product writes fp32 (CudaModel.Bf16Outputs off; on by default in inference), to compare.
        bool epilogueDefault = gpu.BiasEpilogue;   // BERT_CUDA_BIAS_EPILOGUE as set
        // noEpilogue: the Linears' bias kernels instead of cuBLASLt's bias epilogue (on by default where cuBLASLt is found).
        foreach (var (B, flash, bf16, inCublas, fp32Out, noEpilogue) in new[] { (1, false, false, false, false, false), (most, false, false, false, false, false),
            (1, false, true, false, false, false), (most, false, true, false, false, false), (most, false, true, false, true, false), (most, false, true, false, false, true),
            (1, false, true, true, false, false), (most, false, true, true, false, false),
            (1, true, true, false, false, false), (most, true, true, false, false, false) })
        {
            if (flash && !flashApplies) continue;
            if (noEpilogue && !(gpu.HasCublasLt && epilogueDefault)) continue;   // else the same as the default row
            gpu.BiasEpilogue = epilogueDefault && !noEpilogue;
            gpu.FlashAttention = flash;
            gpu.Precision = bf16 ? CudaPrecision.Bf16 : CudaPrecision.Tf32;
            gpu.Bf16InCublas = inCublas;
            gpu.Bf16Outputs = !fp32Out;
            string attn = (flash ? ", flash attention" : "") + (bf16 ? ", bf16" : "") + (inCublas ? " cublas-rounded" : "") + (fp32Out ? " fp32-outputs" : "") + (noEpilogue ? " no-bias-epilogue" : "");
            var inputs = RandomInputs(entry.Info, B, s.Seq, 0, rng);
            foreach (var k in inputs.Keys.Where(k => entry.Info.Input(k).Kind == InputKind.Mask)) Array.Fill(inputs[k], 1);
            gpu.Bind(B, s.Seq, 0, training: false);
            foreach (var (k, v) in inputs) gpu.SetInput(k, v);
            for (int w = 0; w < 5; w++) gpu.Forward(training: false);
            gpu.Synchronize();
            const int Runs = 50;
            var ms = new List<double>();
            for (int i = 0; i < Runs; i++)
            {
                CudaDriver.EventRecord(start, gpu.Stream);
                gpu.Forward(training: false);
                CudaDriver.EventRecord(stop, gpu.Stream);
                CudaDriver.EventSynchronize(stop);
                ms.Add(CudaDriver.EventElapsedTime(start, stop));
            }
            ms.Sort();
            double median = ms[Runs / 2];
            float[] direct = gpu.Output;
            r.Row($"time {s.Name} classifier inference B={B} T={s.Seq}{attn}", float.IsFinite(direct[0]),
                string.Create(Inv, $"{median:F3} ms (median of {Runs}), {B / (median / 1000):F0} seq/s; {(bf16 ? "bf16" : "TF32")} products, kernel by kernel"),
                new() { ["batch"] = B, ["seq"] = s.Seq, ["infer_ms"] = median, ["seq_per_s"] = B / (median / 1000), ["graph"] = false, ["flash_attention"] = flash, ["bf16"] = bf16, ["cublas_rounded"] = inCublas, ["fp32_outputs"] = fp32Out, ["bias_epilogue"] = gpu.BiasEpilogue && gpu.HasCublasLt && !inCublas });

            // The same forward captured once as a CUDA graph and replayed: one launch instead of one per kernel.
            using var graph = gpu.CaptureForward();
            var probsDirect = gpu.ReadBuffer(entry.Info.Ops.First(o => o.Kind == OpKind.CrossEntropy).Saved[0]);
            gpu.PoisonArena();
            graph.Launch();
            var probsGraph = gpu.ReadBuffer(entry.Info.Ops.First(o => o.Kind == OpKind.CrossEntropy).Saved[0]);
            bool same = probsDirect.AsSpan().SequenceEqual(probsGraph);
            var gms = new List<double>();
            for (int i = 0; i < Runs; i++)
            {
                CudaDriver.EventRecord(start, gpu.Stream);
                graph.Launch();
                CudaDriver.EventRecord(stop, gpu.Stream);
                CudaDriver.EventSynchronize(stop);
                gms.Add(CudaDriver.EventElapsedTime(start, stop));
            }
            gms.Sort();
            double gmedian = gms[Runs / 2];
            r.Row($"time {s.Name} classifier inference B={B} T={s.Seq}{attn}, graph", same,
                string.Create(Inv, $"{gmedian:F3} ms (median of {Runs}), {B / (gmedian / 1000):F0} seq/s; replayed CUDA graph, {(same ? "the same bits as kernel by kernel" : "DIFFERENT from kernel by kernel")} (arena poisoned first)"),
                new() { ["batch"] = B, ["seq"] = s.Seq, ["infer_ms"] = gmedian, ["seq_per_s"] = B / (gmedian / 1000), ["graph"] = true, ["flash_attention"] = flash, ["bf16"] = bf16, ["cublas_rounded"] = inCublas, ["fp32_outputs"] = fp32Out, ["bias_epilogue"] = gpu.BiasEpilogue && gpu.HasCublasLt && !inCublas });
        }
        gpu.Bf16Outputs = true;
        gpu.BiasEpilogue = epilogueDefault;
        CudaDriver.EventDestroy(start); CudaDriver.EventDestroy(stop);

        // Where a bf16 forward at the largest batch spends its time, kernel by kernel (rounded by our kernels, then by cuBLAS,
        // then with the flash attention).
        foreach (var (inCublas, flash) in new[] { (false, false), (true, false), (false, true) })
        {
            if (flash && !flashApplies) continue;
            gpu.FlashAttention = flash;
            gpu.Precision = CudaPrecision.Bf16;
            gpu.Bf16InCublas = inCublas;
            var inputs = RandomInputs(entry.Info, most, s.Seq, 0, rng);
            gpu.Bind(most, s.Seq, 0, training: false);
            foreach (var (k, v) in inputs) gpu.SetInput(k, v);
            gpu.Forward(training: false);
            gpu.Synchronize();
            using var t = new EventTimeline(gpu.Stream);
            gpu.OnLaunch = name => t.Mark(name);
            t.Mark("start");
            gpu.Forward(training: false);
            gpu.OnLaunch = null;
            t.Report(r, $"profile {s.Name} classifier inference bf16{(inCublas ? " cublas-rounded" : "")}{(flash ? " flash-attn" : "")} B={most} T={s.Seq} by kernel", "launch", most, 20);
        }
        gpu.Bf16InCublas = false;
        gpu.FlashAttention = false;
    }

    /// <summary>One step at the largest batch with an event at every op (or, <paramref name="byKernel"/>, at every kernel
    /// launch and cuBLAS product): where the time goes, by op kind (or kernel, or product shape) and phase.</summary>
    static void Profile(Report r, CudaModel gpu, CudaOptimizer opt, ModelInfo info, Settings s, Random rng, CudaPrecision precision, bool flash, bool byKernel)
    {
        int B = s.Batches.Max(), G = (int)Math.Round(0.15 * B * s.Seq);
        var inputs = RandomInputs(info, B, s.Seq, G, rng);
        gpu.Precision = precision;
        gpu.FlashAttention = flash;
        gpu.Bind(B, s.Seq, G, training: true);
        foreach (var (k, v) in inputs) gpu.SetInput(k, v);
        var ops = info.Ops.ToDictionary(o => o.Id);
        using var t = new EventTimeline(gpu.Stream);
        string phase = "forward";
        if (byKernel) gpu.OnLaunch = name => t.Mark($"{phase[0]} {name}");
        else gpu.OnOp = id => t.Mark($"{phase} {ops[id].Kind}");
        gpu.ZeroGradients();
        t.Mark("zero gradients");
        gpu.Forward(training: true, seed: 5);
        phase = "backward";
        t.Mark("backward seed");
        gpu.Backward();
        gpu.OnOp = null;
        gpu.OnLaunch = null;
        t.Mark("optimizer");
        opt.ComputeNorm(1.0);
        opt.Step(1e-4);
        t.Report(r, $"profile {s.Name} {precision.ToString().ToLowerInvariant()}{(flash ? " flash-attn" : "")}{(gpu.Bf16InCublas ? " cublas-rounded" : "")} step B={B}{(byKernel ? " by kernel" : "")}",
            byKernel ? "launch" : "op", B, byKernel ? 30 : 14);
    }

    /// <summary>Events recorded on a stream between labelled marks: the time from each mark to the next, summed per label.</summary>
    sealed class EventTimeline(nint stream) : IDisposable
    {
        readonly List<nint> _events = [];
        readonly List<string> _labels = [];

        public void Mark(string label)
        {
            nint e = CudaDriver.EventCreate();
            CudaDriver.EventRecord(e, stream);
            _events.Add(e); _labels.Add(label);
        }

        /// <summary>Marks the end, waits for it and reports the sums as a row and the largest as lines.</summary>
        public void Report(Report r, string row, string what, int batch, int lines)
        {
            Mark("end");
            CudaDriver.EventSynchronize(_events[^1]);
            var sums = new Dictionary<string, double>();
            for (int i = 0; i + 1 < _events.Count; i++)
                sums[_labels[i]] = sums.GetValueOrDefault(_labels[i]) + CudaDriver.EventElapsedTime(_events[i], _events[i + 1]);
            double total = CudaDriver.EventElapsedTime(_events[0], _events[^1]);
            var data = new Dictionary<string, object> { ["batch"] = batch, ["total_ms"] = total };
            foreach (var (k, v) in sums) data[k] = v;
            r.Row(row, true, string.Create(Inv, $"{total:F1} ms in all (events at every {what}, {_events.Count} of them)"), data);
            foreach (var (k, v) in sums.OrderByDescending(x => x.Value).Take(lines))
                r.Info(string.Create(Inv, $"{k,-44} {v,8:F2} ms  {v / total,6:P1}"));
        }

        public void Dispose() { foreach (var e in _events) CudaDriver.EventDestroy(e); }
    }
}
