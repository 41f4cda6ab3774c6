using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Bert.Runtime.Checkpoints;
using Bert.Runtime.Cuda;
using Bert.Tests.Data;
using Xunit;
using Xunit.Abstractions;

namespace Bert.Tests.Generator;

/// <summary>The whole CUDA backend without a GPU: the <c>bert</c> command run in a child process with
/// <c>BERT_CUDA_EMULATE=1</c>, where the driver, NVRTC and cuBLAS are <see cref="CudaEmulation"/> (the model's CUDA C
/// built for the host by clang-14, kernels with barriers and warp shuffles run a block's threads as coroutines, fresh
/// device memory full of 0xFF). Everything above the three libraries is the code a GPU runs: CudaModel, the generated
/// launch schedules, the fused attention, the optimizers, CudaTrainer, the CUDA graphs, the CLI. A child process,
/// because the libraries are chosen once per process and the other tests must see this machine as it is.</summary>
public partial class CudaSourceTests(ITestOutputHelper output)
{
    readonly ITestOutputHelper? _output = output;

    /// <summary>Runs bert.dll (beside the tests) with the emulation on and a private kernel cache.</summary>
    (int Code, string Output) RunBert(string dir, bool emulate, params string[] args) => RunBertOrdered(dir, emulate, null, args);

    /// <param name="order">BERT_CUDA_EMULATE_ORDER for the child ("reverse"), or null.</param>
    /// <param name="lt">BERT_CUDA_EMULATE_LT for the child, or null.</param>
    (int Code, string Output) RunBertOrdered(string dir, bool emulate, string? order, string[] args, string? attention = null, string? lt = null)
    {
        var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "bert.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (emulate) psi.Environment[CudaEmulation.Variable] = "1";
        else psi.Environment.Remove(CudaEmulation.Variable);
        if (order != null) psi.Environment["BERT_CUDA_EMULATE_ORDER"] = order;
        else psi.Environment.Remove("BERT_CUDA_EMULATE_ORDER");
        if (attention != null) psi.Environment[CudaModel.FusedAttentionVariable] = attention;
        else psi.Environment.Remove(CudaModel.FusedAttentionVariable);
        if (lt != null) psi.Environment[CudaEmulation.LtVariable] = lt;
        else psi.Environment.Remove(CudaEmulation.LtVariable);
        psi.Environment[KernelCache.EnvironmentVariable] = Path.Combine(dir, "kernels");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(600_000)) { p.Kill(entireProcessTree: true); return (-1, "bert did not finish in 10 minutes"); }
        string text = stdout.Result + stderr.Result;
        _output?.WriteLine($"$ {(emulate ? CudaEmulation.Variable + "=1 " : "")}bert {string.Join(' ', args)}\n{text}");
        return (p.ExitCode, text);
    }

    /// <summary>`bert selftest --device cuda --models …` on the emulated device (threads in <paramref name="order"/>, or in
    /// order): it must run there, exit 0, fail no check; returns what it printed.</summary>
    string EmulatedSelfTest(string[] models, string? order, string? attention = null)
    {
        RequireClang();
        string dir = TempDir.Create();
        try
        {
            var (code, text) = RunBertOrdered(dir, emulate: true, order, ["selftest", "--device", "cuda", "--models", string.Join(',', models)], attention);
            Assert.True(code == 0, Tail(text));
            Assert.Contains("host emulation", text);
            Assert.DoesNotContain("FAIL", text);
            Assert.Matches(@"\d+ checks passed, 0 failed", text);
            return text;
        }
        finally { TempDir.Delete(dir); }
    }

    /// <summary>`bert selftest --device cuda` on the emulated device: every check of every model but BERT-Base (too slow
    /// for loops on the host) — cuBLAS, forward and backward buffers and every parameter gradient against the CPU in
    /// double with outputs poisoned first, the fused attention, bf16 products and the bf16 weight copy through a replayed
    /// graph, bitwise repeatability, inference, AdamW and LAMB with clipping, evaluation and both training loops.</summary>
    [ClangFact]
    public void Emulated_SelfTest_PassesEveryCheck_OnEveryModelButBase()
    {
        string[] models = ["BertNanoPreTraining", "BertNanoClassifier", "AlbertClassifier", "BertNanoPreLnPreTraining", "BertNanoTokenClassifier", "BertNanoQuestionAnswering", "BertMiniPreTraining"];
        string text = EmulatedSelfTest(models, order: null);
        // 19 checks per model (compile, forward, backward, gradients, fused attention, the bias epilogue off, bf16, bf16 with bf16 product outputs, bf16 operands kept from the forward,
        // bf16 rounded by cuBLAS, the bf16 copy written by the optimizers, the bf16 copy through a graph, bf16 inference with
        // the operands written by their producers, repeatability, inference, accuracy counted on the device, AdamW, LAMB),
        // the flash attention (head sizes 64 and, padded, the nano models' 8), cuBLAS twice, cuBLASLt's bias epilogue, the memory estimate against what a
        // step takes, evaluation, two training loops, training steps replayed from graphs.
        var total = Regex.Match(text, @"(\d+) checks passed, 0 failed");
        Assert.Equal(models.Length * 19 + 8, int.Parse(total.Groups[1].Value, CultureInfo.InvariantCulture));
        foreach (var m in models) Assert.Matches($@"PASS  {m}: flash attention \(bf16\) vs CPU double .*twice: 0 of \d+ gradient elements differ.*flash off without Bind: refused", text);
        // Under the emulation every device allocation is counted: beyond cuBLAS's workspace and the pointer arrays, only the
        // inputs are left out of the estimate (a few KiB), so a part the estimate missed (the kernels' scratch is 3 MiB here) shows.
        var memory = Regex.Match(text, @"PASS  memory estimate: BertNanoPreTraining bf16 step, B=16 T=64 +taken [\d.]+ MiB, build-time estimate [\d.]+ MiB.*scratch ([\d.]+) MiB.*beyond them ([\d.]+) MiB");
        Assert.True(memory.Success, Tail(text));
        Assert.True(double.Parse(memory.Groups[1].Value, CultureInfo.InvariantCulture) >= 2.0, memory.Value);
        Assert.True(double.Parse(memory.Groups[2].Value, CultureInfo.InvariantCulture) < 0.5, memory.Value);
        foreach (var m in models)
        {
            Assert.Contains($"PASS  {m}: parameter gradients vs CPU double", text);
            // every model ends in a Linear whose bias only a cross-entropy reads: at least that product takes cuBLASLt's epilogue
            Assert.Matches($@"PASS  {m}: forward buffers vs CPU double .*; [1-9]\d* product outputs folded into their bias", text);
            Assert.Matches($@"PASS  {m}: bias epilogue off vs CPU double +[1-9]\d* products added their bias in cuBLASLt with it on .*, 0 buffers unwritten", text);
            // in inference (no dropout) the products before a residual connection add the residual too
            Assert.Matches($@"PASS  {m}: inference output vs CPU float .*; [1-9]\d* products added their bias in cuBLASLt, [1-9]\d* the residual too", text);
            Assert.Contains($"PASS  {m}: bf16 products rounded by cuBLAS vs CPU double", text);
            Assert.Matches($@"PASS  {m}: bf16 products vs CPU double .*; 0 product outputs written in bf16", text);
            Assert.Matches($@"PASS  {m}: bf16 products, bf16 outputs vs CPU double .*; [1-9]\d* product outputs written in bf16 \(off: 0 in a forward without dropout\)", text);
            Assert.Matches($@"PASS  {m}: bf16 operands kept from the forward = rounded per product +\d+ activation operands kept in bf16 .*; 0 of \d+ gradient elements and 0 of \d+ buffers differ \([1-9]\d* not written in fp32: read in bf16 alone\); turned on after the forward: 0 differ", text);
            Assert.Matches($@"PASS  {m}: bf16 inference, operands written by their producers = rounded per product +\d+ conversion launches a forward instead of \d+; 0 of \d+ buffers and the output differ; [1-9]\d* product outputs written in bf16, [1-9]\d* outputs read in bf16 alone; replayed from a graph after another forward: 0 differ", text);
        }
    }

    /// <summary>`bert selftest --device cuda --timing` on the emulated device with BERT-Mini as the timed model (head size 64,
    /// so the flash attention's rows run too): every
    /// timing, profile and inference row runs and passes (the code a GPU session spends its minutes on, checked before it
    /// gets there) — the bf16 variants, the product's training loop replayed from CUDA graphs at every timed step, the
    /// per-kernel profiles of training and inference, inference as a replayed graph giving the same bits.</summary>
    [ClangFact]
    public void Emulated_SelfTestTiming_RunsEveryRow()
    {
        RequireClang();
        string dir = TempDir.Create();
        try
        {
            var (code, text) = RunBert(dir, emulate: true, "selftest", "--device", "cuda", "--models", "BertNanoClassifier", "--timing", "--timing-size", "mini",
                "--batches", "2", "--seq", "8", "--steps", "1");
            Assert.True(code == 0, Tail(text));
            Assert.DoesNotContain("FAIL", text);
            Assert.Contains("time BERT-Mini step bf16 cublas-rounded B=2 T=8", text);
            Assert.Contains("PASS  time BERT-Mini step bf16 rounded-per-product B=2 T=8", text);
            Assert.Contains("PASS  time BERT-Mini step bf16 separate-ln-sums B=2 T=8", text);
            Assert.Contains("PASS  memory estimate: BertMiniPreTraining bf16 step, B=2 T=8", text);
            Assert.Matches(@"PASS  time BERT-Mini step bf16 B=2 T=8, the product's training loop, graph .*every step a graph replay", text);
            Assert.Contains("PASS  profile BERT-Mini bf16 cublas-rounded step B=2 by kernel", text);
            Assert.Contains("PASS  time BERT-Mini step bf16 flash-attn B=2 T=8", text);
            Assert.Contains("PASS  profile BERT-Mini bf16 flash-attn step B=2 by kernel", text);
            Assert.Matches(@"PASS  time BERT-Mini step bf16 flash-attn B=2 T=8, the product's training loop, graph .*every step a graph replay", text);
            Assert.Matches(@"PASS  time BERT-Mini classifier inference B=2 T=8, flash attention, bf16, graph .*the same bits as kernel by kernel", text);
            Assert.Contains("PASS  profile BERT-Mini classifier inference bf16 B=2 T=8 by kernel", text);
            Assert.Matches(@"PASS  time BERT-Mini classifier inference B=2 T=8, bf16 cublas-rounded, graph .*the same bits as kernel by kernel", text);
            Assert.Matches(@"PASS  time BERT-Mini classifier inference B=2 T=8, bf16 fp32-outputs, graph .*the same bits as kernel by kernel", text);
            Assert.Contains("PASS  time BERT-Mini step bf16 bf16-outputs B=2 T=8", text);
            Assert.Contains("PASS  time BERT-Mini step bf16 no-bias-epilogue B=2 T=8", text);
            Assert.Matches(@"PASS  time BERT-Mini classifier inference B=2 T=8, bf16 no-bias-epilogue, graph .*the same bits as kernel by kernel", text);
            // the profiles name the products that added their bias themselves
            Assert.Contains("gemm+bias bf16", text);
        }
        finally { TempDir.Delete(dir); }
    }

    /// <summary>With a cuBLASLt that declines every product with bf16 operands (BERT_CUDA_EMULATE_LT=decline-bf16): in bf16
    /// the schedules make the operands' bf16 copies for the product that would add its bias, find it declined, and run the
    /// product and the bias kernel on those copies instead. Every model check passes (training and inference, the kept
    /// copies against rounding per product, graph replays); only the binding row reports the four bf16 products declined.</summary>
    [ClangFact]
    public void Emulated_SelfTest_FallsBackWhenCublasLtDeclinesBf16()
    {
        RequireClang();
        string dir = TempDir.Create();
        try
        {
            var (code, text) = RunBertOrdered(dir, emulate: true, null, ["selftest", "--device", "cuda", "--models", "BertNanoPreTraining"], lt: "decline-bf16");
            Assert.True(code != 0, Tail(text));
            Assert.Matches(@"\d+ checks passed, 1 failed", text);
            Assert.Matches(@"FAIL  cuBLASLt bias epilogue \(8 products\) .*; 4 declined", text);
            Assert.Contains("PASS  BertNanoPreTraining: bf16 products vs CPU double", text);
            Assert.Contains("PASS  BertNanoPreTraining: bf16 operands kept from the forward = rounded per product", text);
            Assert.Contains("PASS  BertNanoPreTraining: bf16 inference, operands written by their producers = rounded per product", text);
            Assert.Contains("PASS  BertNanoPreTraining: bias epilogue off vs CPU double", text);   // fp32: taken
        }
        finally { TempDir.Delete(dir); }
    }

    /// <summary>The same with blocks, and each block's threads, run last first: a kernel whose result depends on the
    /// order of its threads or blocks (a missing barrier, a race between blocks) fails here. BERT_CUDA_ATTENTION=flash is
    /// set, and ignored.</summary>
    [ClangFact]
    public void Emulated_SelfTest_PassesInReverseThreadOrder()
    {
        string[] models = ["BertNanoPreTraining", "BertNanoClassifier", "BertNanoTokenClassifier"];
        // With the product's attention variable set too: the self-test picks each path itself (a flash-sized binding would
        // fail the rows that compare the probabilities).
        string text = EmulatedSelfTest(models, order: "reverse", attention: "flash");
        Assert.Contains("BERT_CUDA_ATTENTION=flash ignored: the self-test runs each attention path and rounding itself", text);
        foreach (var m in models)
        {
            Assert.Contains($"PASS  {m}: fused attention vs CPU double", text);
            Assert.Contains($"PASS  {m}: flash attention (bf16) vs CPU double", text);
        }
    }

    /// <summary>A small English corpus in <paramref name="dir"/> for pre-training runs: 12 documents of 30 short sentences.</summary>
    static string SmallCorpus(string dir)
    {
        string corpus = Path.Combine(dir, "corpus.txt");
        string[] nouns = ["king", "queen", "river", "horse", "garden", "city", "ship", "lord", "child", "house", "storm"];
        string[] verbs = ["walked", "slept", "spoke"];
        File.WriteAllText(corpus, string.Join("\n\n", Enumerable.Range(0, 12).Select(d => string.Join(' ', Enumerable.Range(0, 30).Select(i =>
            $"The {nouns[(i * 7 + d) % nouns.Length]} {verbs[(i + d) % verbs.Length]} {(i % 2 == 0 ? "slowly" : "well")}.")))) + "\n");
        return corpus;
    }

    /// <summary>The losses `bert pretrain` printed for steps 1 … <paramref name="steps"/>.</summary>
    static double[] Losses(string text, int steps) => Regex.Matches(text, $@"step \d+/{steps}\s+loss ([0-9.]+)")
        .Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>`bert pretrain --device cuda` through the CLI on the emulated device gives the CPU run's losses and
    /// accuracies step by step (the device counts them) and, after the optimizer steps, its weights: same seed, same
    /// batches, same masks, same dropout.</summary>
    [ClangFact]
    public void Emulated_PretrainOnTheDevice_GivesTheCpuRunsLossesAndWeights()
    {
        RequireClang();
        string dir = TempDir.Create();
        try
        {
            string corpus = SmallCorpus(dir);
            string[] common = ["pretrain", "--corpus", corpus, "--size", "nano", "--steps", "4", "--batch", "4", "--max-len", "32", "--accumulate", "2", "--seed", "3"];
            var cpu = RunBert(dir, emulate: false, [.. common, "--out", Path.Combine(dir, "cpu")]);
            Assert.True(cpu.Code == 0, Tail(cpu.Output));
            var gpu = RunBert(dir, emulate: true, [.. common, "--out", Path.Combine(dir, "cuda"), "--device", "cuda", "--precision", "fp32"]);
            Assert.True(gpu.Code == 0, Tail(gpu.Output));

            double[] a = Losses(cpu.Output, 4), b = Losses(gpu.Output, 4);
            Assert.Equal(4, a.Length);
            // printed to 4 decimals: equal but for a last digit rounded the other way (the device sums in another order)
            for (int i = 0; i < a.Length; i++)
                Assert.True(Math.Abs(a[i] - b[i]) <= 1.5e-4, $"step {i + 1}: the CPU printed loss {a[i]}, the device {b[i]}");
            static string[] Accuracies(string text) => Regex.Matches(text, @"step \d+/4\s+loss [0-9.]+\s+(mlm_acc [0-9.]+ %\s+nsp_acc [0-9.]+ %)")
                .Select(m => m.Groups[1].Value).ToArray();
            Assert.Equal(4, Accuracies(cpu.Output).Length);
            Assert.Equal(Accuracies(cpu.Output), Accuracies(gpu.Output));

            using var ra = SafeTensors.Open(Path.Combine(dir, "cpu", "model.safetensors"));
            using var rb = SafeTensors.Open(Path.Combine(dir, "cuda", "model.safetensors"));
            Assert.Equal(ra.Tensors.Select(t => t.Name).Order(), rb.Tensors.Select(t => t.Name).Order());
            double worst = 0;
            string worstName = "";
            foreach (var t in ra.Tensors)
            {
                float[] x = ra.Read<float>(t.Name), y = rb.Read<float>(t.Name);
                Assert.Equal(x.Length, y.Length);
                double scale = Math.Max(1e-3, x.Max(Math.Abs));
                for (int i = 0; i < x.Length; i++)
                {
                    double e = Math.Abs(x[i] - (double)y[i]) / scale;
                    if (e > worst) { worst = e; worstName = t.Name; }
                }
            }
            Assert.True(worst < 1e-4, $"the device's weights after 4 steps differ from the CPU's by {worst:E2} of the tensor's scale ({worstName})");
        }
        finally { TempDir.Delete(dir); }
    }

    /// <summary>`bert pretrain --device cuda --precision bf16` with BERT_CUDA_ATTENTION=flash on the emulated device, BERT-Mini
    /// (head size 64): the trainer says the flash kernels run and the losses follow the CPU run's in fp32 (bf16 operands:
    /// within 2 %); with fp32 products the same variable is ignored, and the trainer says why.</summary>
    [ClangFact]
    public void Emulated_PretrainWithFlashAttention_FollowsTheCpuRun()
    {
        RequireClang();
        string dir = TempDir.Create();
        try
        {
            string corpus = SmallCorpus(dir);
            string[] common = ["pretrain", "--corpus", corpus, "--size", "mini", "--batch", "4", "--max-len", "32", "--seed", "3"];
            var cpu = RunBert(dir, emulate: false, [.. common, "--steps", "3", "--out", Path.Combine(dir, "cpu")]);
            Assert.True(cpu.Code == 0, Tail(cpu.Output));
            var flash = RunBertOrdered(dir, emulate: true, null, [.. common, "--steps", "3", "--out", Path.Combine(dir, "flash"), "--device", "cuda", "--precision", "bf16"], attention: "flash");
            Assert.True(flash.Code == 0, Tail(flash.Output));
            Assert.Contains("attention on the tensor-core flash kernels", flash.Output);
            double[] a = Losses(cpu.Output, 3), b = Losses(flash.Output, 3);
            Assert.Equal(3, a.Length);
            Assert.Equal(3, b.Length);
            for (int i = 0; i < 3; i++) Assert.True(Math.Abs(a[i] - b[i]) <= 0.02 * a[i], $"step {i + 1}: loss {b[i]} with the flash kernels, {a[i]} on the CPU");

            var fp32 = RunBertOrdered(dir, emulate: true, null, [.. common, "--steps", "1", "--out", Path.Combine(dir, "fp32"), "--device", "cuda", "--precision", "fp32"], attention: "flash");
            Assert.True(fp32.Code == 0, Tail(fp32.Output));
            Assert.Contains("BERT_CUDA_ATTENTION=flash ignored: they need bf16 precision (--precision bf16)", fp32.Output);
        }
        finally { TempDir.Delete(dir); }
    }

    /// <summary>`bert run NanoFlashCheck` (declared with Attention = AttentionKernel.Flash, bf16, an H100) on the emulated
    /// device: the trainer runs the flash kernels, and the run folder records a declaration that says so.</summary>
    [ClangFact]
    public void Emulated_RunOfAFlashExperiment_UsesTheFlashKernels()
    {
        RequireClang();
        string dir = TempDir.Create();
        try
        {
            var (code, text) = RunBert(dir, emulate: true, "run", "NanoFlashCheck", "--out", dir);
            Assert.True(code == 0, Tail(text));
            Assert.Contains("with flash attention", text);
            Assert.Contains("attention on the tensor-core flash kernels", text);
            var declared = Bert.Cli.Program.Experiment("NanoFlashCheck").Declaration;
            Assert.EndsWith(" attention=Flash", declared);
            Assert.True(Bert.Training.TrainLoop.Finished(Path.Combine(dir, "NanoFlashCheck"), "BertNanoPreTraining", 3, declared));
        }
        finally { TempDir.Delete(dir); }
    }

    /// <summary>`bert finetune --format conll --device cuda` on the emulated device: the tagger trains with its steps
    /// replayed from CUDA graphs (sentences padded to multiples of 8 tokens, so few shapes), evaluates entity F1 every
    /// epoch, and keeps its best checkpoint.</summary>
    [ClangFact]
    public void Emulated_TaggerFineTuning_ReplaysItsStepsFromGraphs()
    {
        RequireClang();
        string dir = TempDir.Create();
        try
        {
            string data = Path.Combine(dir, "ner.conll");
            string[] people = ["John", "Mary", "Peter"], places = ["Paris", "Rome"];
            File.WriteAllText(data, string.Join("\n\n", Enumerable.Range(0, 30).Select(i => i % 3 == 0
                ? $"{people[i % 3]} B-PER\nSmith I-PER\nlives O\nin O\n{places[i % 2]} B-LOC"
                : $"In O\n{places[i % 2]} B-LOC\n{people[i % 3]} B-PER\nsmiled O")) + "\n");
            var run = RunBert(dir, emulate: true, "finetune", "--data", data, "--format", "conll", "--size", "nano", "--epochs", "2", "--batch", "8",
                "--max-len", "32", "--lr", "1e-3", "--device", "cuda", "--precision", "fp32", "--out", Path.Combine(dir, "ft"));
            Assert.True(run.Code == 0, Tail(run.Output));
            Assert.Matches(@"step \d+ \(epoch 2\): dev entity F1 \d+\.\d\d %", run.Output);
            var graphs = Regex.Match(run.Output, @"CUDA graphs: (\d+) of (\d+) micro-batches replayed from (\d+) captured shape");
            Assert.True(graphs.Success, Tail(run.Output));
            Assert.Equal(6, int.Parse(graphs.Groups[2].Value));             // 24 training sentences in batches of 8, 2 epochs
            Assert.InRange(int.Parse(graphs.Groups[3].Value), 1, 2);        // lengths 6-9 pad to 8 or 16
            Assert.True(File.Exists(Path.Combine(dir, "ft", "best", "model.safetensors")));
        }
        finally { TempDir.Delete(dir); }
    }

    /// <summary>The emulated NVRTC builds kernels with their accesses checked for alignment. A 16-byte load through a float
    /// pointer that is only 4-byte aligned, which a GPU stops the kernel for (CUDA_ERROR_MISALIGNED_ADDRESS) and x86
    /// would take, fails the launch and names the source line, the alignment and the thread: a whole vector struct copied
    /// (its BERT_VECTOR_COPY members check), and a member read through a misaligned struct pointer (clang's alignment
    /// check), and a store. The same kernel on aligned addresses runs, before and after, with no error left over. A warp
    /// shuffle that reads a lane which has returned (undefined on a GPU) fails too; one whose full mask names lanes that
    /// returned but reads only live ones runs, as it does with every lane there.</summary>
    [ClangFact]
    public unsafe void Emulation_FailsALaunchThatMakesAMisalignedAccess()
    {
        RequireClang();
        string dir = TempDir.Create();
        float* p = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(4 * 128, 256);
        try
        {
            const string source = """
                struct alignas(16) q4 { float x, y, z, w; BERT_VECTOR_COPY(q4, float, 16) };
                extern "C" __global__ void probe(float* p, int shift, int member)
                {
                    float s;
                    if (member == 1) s = ((const q4*)(p + 4 * threadIdx.x + shift))->y;
                    else { q4 v = *(const q4*)(p + 4 * threadIdx.x + shift); s = v.x + v.y + v.z + v.w; }
                    if (member == 2) *(q4*)(p + 92 + 4 * threadIdx.x + (shift >= 8)) = q4(s, s, s, s);
                    p[64 + threadIdx.x] = s;
                }
                extern "C" __global__ void lanes(float* p, int early)
                {
                    if (early && threadIdx.x >= 16) return;   // early 1: lanes 0-15 then read lanes 16-31; 2: read each other
                    p[64 + threadIdx.x] = __shfl_xor_sync(0xffffffffu, p[threadIdx.x], early == 2 ? 1 : 16);
                }
                """;
            File.WriteAllText(Path.Combine(dir, "k.cpp"), CudaEmulation.HostProgram(source, "misaligned.cu"));
            var build = Run(Clang, [.. CudaEmulation.HostCompilerArguments, "k.cpp", "-lm", "-o", "k.so"], dir);
            Assert.True(build.Code == 0, Tail(build.Output));
            nint lib = System.Runtime.InteropServices.NativeLibrary.Load(Path.Combine(dir, "k.so"));
            try
            {
                var kernel = (delegate* unmanaged[Cdecl]<byte*, int>)System.Runtime.InteropServices.NativeLibrary.GetExport(lib, "bert_emu_kernel");
                var launch = (delegate* unmanaged[Cdecl]<int, uint, uint, uint, uint, uint, uint, void**, int>)System.Runtime.InteropServices.NativeLibrary.GetExport(lib, "bert_emu_launch");
                var error = (delegate* unmanaged[Cdecl]<byte*>)System.Runtime.InteropServices.NativeLibrary.GetExport(lib, "bert_emu_error");
                int k;
                fixed (byte* name = "probe\0"u8) k = kernel(name);
                Assert.Equal(0, k);
                for (int i = 0; i < 128; i++) p[i] = i;
                int Launch(int shift, int member)
                {
                    float* pp = p; int s = shift, m = member;
                    void** a = stackalloc void*[3];
                    a[0] = &pp; a[1] = &s; a[2] = &m;
                    return launch(k, 1, 1, 1, 8, 1, 1, a);
                }
                string Error() => System.Runtime.InteropServices.Marshal.PtrToStringUTF8((nint)error()) ?? "";
                Assert.Equal(0, Launch(0, 0));
                Assert.Equal("", Error());
                Assert.Equal(0 + 1 + 2 + 3, p[64]);
                Assert.Equal(3, Launch(1, 0));
                Assert.Matches(@"^misaligned\.cu\(6\): an access of 16 bytes' alignment at address 0x[0-9a-f]+ \(thread \d+ of block 0, 0\)$", Error());
                Assert.Equal(0, Launch(0, 1));
                Assert.Equal("", Error());
                Assert.Equal(1, p[64]);
                Assert.Equal(3, Launch(2, 1));
                Assert.Matches(@"^misaligned\.cu\(5\): an access of 16 bytes' alignment at address 0x[0-9a-f]+ \(thread \d+ of block 0, 0\)$", Error());
                Assert.Equal(0, Launch(4, 0));
                Assert.Equal("", Error());
                Assert.Equal(4 + 5 + 6 + 7, p[64]);
                Assert.Equal(3, Launch(8, 2));   // the load aligned, the store one float off
                Assert.Matches(@"^misaligned\.cu\(7\): an access of 16 bytes' alignment at address 0x[0-9a-f]+ \(thread \d+ of block 0, 0\)$", Error());
                Assert.Equal(0, Launch(4, 2));

                // A warp shuffle that reads a lane which returned (undefined on a GPU); one over a mask naming them that reads live lanes only.
                int lanes;
                fixed (byte* name = "lanes\0"u8) lanes = kernel(name);
                Assert.Equal(1, lanes);
                int Lanes(int early)
                {
                    float* pp = p; int e = early;
                    void** a = stackalloc void*[2];
                    a[0] = &pp; a[1] = &e;
                    return launch(lanes, 1, 1, 1, 32, 1, 1, a);
                }
                Assert.Equal(0, Lanes(0));
                Assert.Equal("", Error());
                Assert.Equal(p[16], p[64]);
                Assert.Equal(4, Lanes(1));
                Assert.Matches(@"^misaligned\.cu\(13\): __shfl_xor_sync with mask 0xffffffff reads lane 16 of warp 0, which has returned or does not exist \(thread \d+ of block 0, 0\)$", Error());
                Assert.Equal(0, Lanes(2));   // the mask names lanes that returned, but none is read: allowed
                Assert.Equal("", Error());
            }
            finally { System.Runtime.InteropServices.NativeLibrary.Free(lib); }
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(p);
            TempDir.Delete(dir);
        }
    }
}
