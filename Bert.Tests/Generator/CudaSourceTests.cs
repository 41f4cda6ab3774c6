using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using Bert.Generators;
using Bert.Runtime;
using Bert.Runtime.Kernels;
using Bert.Tests.Models;
using Bert.Tests.Support;
using Xunit;

namespace Bert.Tests.Generator;

/// <summary>The generated CUDA C of every model, checked without a GPU: clang-14 parses and type-checks it as device
/// code against a prelude that declares the NVRTC built-ins it may use; and the same source, compiled for the host with
/// the CUDA thread variables emulated, runs every distinct fused kernel against the CPU kernel it must mirror.
/// Without clang-14 these tests skip, except on CI (CI=true), where .ci/run installs it and its absence is a failure.</summary>
public partial class CudaSourceTests
{
    // ---------------- clang ----------------

    const string Clang = "clang-14";

    static readonly Lazy<string?> ClangError = new(() =>
    {
        try { return Run(Clang, new[] { "--version" }, Path.GetTempPath()).Code == 0 ? null : $"{Clang} --version failed"; }
        catch (Win32Exception e) { return $"{Clang} is not installed ({e.Message})"; }
    });

    static bool OnCi => Environment.GetEnvironmentVariable("CI") is { } ci && (ci.Equals("true", StringComparison.OrdinalIgnoreCase) || ci == "1");

    /// <summary>Why the clang tests skip here, or null when they run: clang-14 is present, or this is CI, where its
    /// absence must fail (see <see cref="RequireClang"/>).</summary>
    static string? SkipReason => ClangError.Value is { } why && !OnCi
        ? $"{why}; install clang-14 (apt-get install clang-14) to check the generated CUDA C without a GPU." : null;

    static void RequireClang()
    {
        if (ClangError.Value is { } why)
            Assert.Fail($"{why}, but CI=true: CI must check the generated CUDA C. .ci/run installs clang-14 with apt-get; install it on this machine.");
    }

    public sealed class ClangFactAttribute : FactAttribute
    {
        public ClangFactAttribute() { if (SkipReason is { } why) Skip = why; }
    }

    public sealed class ClangTheoryAttribute : TheoryAttribute
    {
        public ClangTheoryAttribute() { if (SkipReason is { } why) Skip = why; }
    }

    /// <summary>The host programs' check of every typed access's alignment (a GPU stops a kernel at a misaligned one, x86
    /// does not): a misaligned access traps, so the program dies and its test fails (the emulation's own
    /// <see cref="CudaEmulation.HostCompilerArguments"/> records it instead and fails the launch).</summary>
    static readonly string[] HostChecks = ["-fsanitize=alignment", "-fsanitize-trap=alignment", "-DBERT_TRAP_MISALIGNED"];

    static (int Code, string Output) Run(string exe, IEnumerable<string> args, string dir)
    {
        var psi = new ProcessStartInfo(exe) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(120_000)) { p.Kill(); return (-1, $"{exe} did not finish in 120 s"); }
        // 128 + SIGILL: the trap of HostChecks (a misaligned access, which would stop the kernel on a GPU)
        return (p.ExitCode, stdout.Result + stderr.Result + (p.ExitCode == 132 ? "\n(killed by SIGILL: a kernel made a misaligned access, trapped by the alignment checks)" : ""));
    }

    static string Tail(string s, int max = 6000) => s.Length <= max ? s : "…" + s.Substring(s.Length - max);

    // ---------------- the models ----------------

    /// <summary>Every type in Bert.Models and in these tests that declares a generated CudaSource.</summary>
    internal static IReadOnlyList<Type> ModelTypes() =>
        new[] { typeof(Bert.Models.BertPreTraining).Assembly, typeof(CudaSourceTests).Assembly }
            .SelectMany(a => a.GetTypes())
            .Where(t => Source(t) is not null)
            .ToList();

    static string? Source(Type t) =>
        t.GetProperty("CudaSource", BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly) is { PropertyType: var p } f && p == typeof(string)
            ? (string?)f.GetValue(null) : null;

    internal static Type ModelType(string fullName) => ModelTypes().Single(t => t.FullName == fullName);

    internal static ModelInfo Info(Type t) =>
        (ModelInfo)t.GetProperty("Info", BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly)!.GetValue(null)!;

    public static IEnumerable<object[]> Models() => ModelTypes().Select(t => new object[] { t.FullName! });

    // ---------------- device syntax check ----------------

    /// <summary>What NVRTC provides without any header, declared for clang: the CUDA keywords, the thread variables
    /// and the device built-ins the generated kernels may call.</summary>
    internal const string DevicePrelude = """
        #define __global__ __attribute__((global))
        #define __device__ __attribute__((device))
        #define __shared__ __attribute__((shared))
        #define __forceinline__ __inline__ __attribute__((always_inline))
        #include <__clang_cuda_builtin_vars.h>
        extern "C" __device__ float expf(float);
        extern "C" __device__ float logf(float);
        extern "C" __device__ float tanhf(float);
        extern "C" __device__ float sqrtf(float);
        extern "C" __device__ float erff(float);
        extern "C" __device__ float fmaxf(float, float);
        extern "C" __device__ float fminf(float, float);
        extern "C" __device__ float fabsf(float);
        __device__ float __int_as_float(int);
        __device__ int __float_as_int(float);
        __device__ float __shfl_xor_sync(unsigned int mask, float var, int lane_mask, int width = 32);
        __device__ int __shfl_xor_sync(unsigned int mask, int var, int lane_mask, int width = 32);
        __device__ unsigned int __shfl_xor_sync(unsigned int mask, unsigned int var, int lane_mask, int width = 32);
        __device__ float atomicAdd(float* address, float val);
        __device__ int atomicAdd(int* address, int val);
        __device__ void __syncthreads();
        __device__ void __syncwarp(unsigned int mask = 0xffffffffu);
        __device__ float __shfl_sync(unsigned int mask, float var, int srcLane, int width = 32);
        extern "C" __device__ double sqrt(double);

        """;

    /// <summary>The runtime's structured kernels with every head size's flash attention kernels (the templates instantiated).</summary>
    static string AllRuntimeKernels => global::Bert.Runtime.Cuda.CudaKernels.Source + "\n"
        + string.Concat(global::Bert.Runtime.Cuda.CudaKernels.FlashHeadSizes.Select(global::Bert.Runtime.Cuda.CudaKernels.FlashKernels));

    /// <summary>The runtime's kernels (every flash instance included) type-check for cards before sm_80 too (a T4 is sm_75),
    /// and the flash attention's bf16 mma sits behind the architecture guard there. clang does not assemble inline PTX, so
    /// whether ptxas would take the unguarded mma for sm_75 shows only on a GPU; CudaModel leaves the flash kernels out of
    /// programs for such cards anyway.</summary>
    [ClangFact]
    public void RuntimeCuda_CompilesForSm75Too()
    {
        RequireClang();
        AssertCompilesAsDeviceCode(AllRuntimeKernels, "the runtime's CUDA source for sm_75", "sm_75");
        Assert.Contains("#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800", global::Bert.Runtime.Cuda.CudaKernels.Source);
    }

    /// <summary>clang-14 type-checks the model's CUDA C as sm_80 device code; an implicit double (a literal without f,
    /// a promotion) is an error too, since the kernels are fp32 by contract.</summary>
    [ClangTheory]
    [MemberData(nameof(Models))]
    public void GeneratedCuda_CompilesAsDeviceCode(string model)
    {
        RequireClang();
        AssertCompilesAsDeviceCode(Source(ModelType(model))!, $"the CUDA source of {model}");
    }

    /// <summary>clang-14, sm_80 device code against <see cref="DevicePrelude"/>, every warning (implicit doubles too) an error.</summary>
    static void AssertCompilesAsDeviceCode(string source, string what, string arch = "sm_80")
    {
        var dir = Directory.CreateTempSubdirectory("bert-cuda-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "prelude.h"), DevicePrelude);
            File.WriteAllText(Path.Combine(dir, "k.cu"), source);
            var (code, output) = Run(Clang, new[]
            {
                "-x", "cuda", "--cuda-device-only", $"--cuda-gpu-arch={arch}", "-nocudainc", "-nocudalib",
                "-include", "prelude.h", "-fsyntax-only", "-Wdouble-promotion", "-Wimplicit-float-conversion", "-Werror", "k.cu",
            }, dir);
            Assert.True(code == 0, $"clang-14 rejected {what} (exit {code}):\n{Tail(output)}");
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>What NVRTC compiles at run time is the runtime's structured kernels followed by the model's fused ones, as
    /// one program (CudaModel): it must type-check as one translation unit (no clashing names), under the same rules.</summary>
    [ClangTheory]
    [MemberData(nameof(Models))]
    public void GeneratedCuda_WithTheRuntimeKernels_CompilesAsOneProgram(string model)
    {
        RequireClang();
        AssertCompilesAsDeviceCode(AllRuntimeKernels + Source(ModelType(model))!,
            $"the runtime kernels + the CUDA source of {model}");
    }

    [Fact]
    public void EveryModelHasCudaSource_WithBothKernelsOfEveryFusedKernel()
    {
        var types = ModelTypes();
        Assert.Contains(types, t => t == typeof(Bert.Models.BertPreTraining));
        Assert.Contains(types, t => t == typeof(PointwiseZoo));
        var compiled = new[] { typeof(Bert.Models.BertPreTraining).Assembly, typeof(CudaSourceTests).Assembly }
            .SelectMany(a => a.GetTypes())
            .Where(t => t.GetProperty("Info", BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly)?.PropertyType == typeof(ModelInfo));
        Assert.Equal(compiled.OrderBy(t => t.FullName), types.OrderBy(t => t.FullName));
        foreach (var t in types)
        {
            var source = Source(t)!;
            Assert.StartsWith("// <auto-generated/>", source);
            foreach (var k in Info(t).Kernels)
            {
                var name = k.Name.ToLowerInvariant();
                Assert.Contains($"// {name}: y = {k.Expression}\n", source);
                Assert.Contains($"extern \"C\" __global__ void {name}_forward(float* __restrict__ y, ", source);
                Assert.Contains($"extern \"C\" __global__ void {name}_backward(const float* __restrict__ dy, ", source);
            }
            Assert.DoesNotContain("#include", source);
            Assert.True(source.All(c => c < 128), $"the CUDA source of {t.Name} is not ASCII");
        }
    }

    /// <summary>The text of one kernel pair: from its comment to the next kernel's.</summary>
    static string KernelText(string source, Func<string, bool> which)
    {
        var parts = source.Split("\n// k").Skip(1).Select(p => "// k" + p).ToList();
        var hit = parts.FirstOrDefault(p => which(p.Substring(0, p.IndexOf('\n'))));
        Assert.True(hit is not null, "no such kernel in:\n" + Tail(source));
        return hit!;
    }

    [Fact]
    public void GeluKernel_UsesErff_AndSpecializesItsConstantsAsFloatLiterals()
    {
        var gelu = KernelText(Bert.Models.BertPreTraining.CudaSource, c => c.Contains("erf("));
        Assert.Contains("0.5f * v", gelu);
        Assert.Contains("* 0.70710677f;", gelu);
        Assert.Contains("= erff(v", gelu);
        Assert.Contains("1.0f + v", gelu);
        // d/dx erf(x) = 2/sqrt(pi) exp(-x^2), as the CPU kernel's rule:
        Assert.Contains("* 1.1283792f * expf(-v", gelu);
        // The bias is a broadcast input: its gradient is summed per column by one thread, no atomics.
        Assert.Contains("for (int r = 0; r < rows; r++)", gelu);
        // Its shape is fixed by the model ([Ffn]), so its period is that literal, not the runtime n1; the chunked
        // variant, where every broadcast input has nb elements, reads column j directly.
        int ffn = Bert.Models.BertPreTraining.Ffn;
        Assert.Contains($"dx1[i % {ffn}] += ", gelu);
        Assert.Contains($"x1[i % {ffn}];", gelu);
        Assert.Contains($"int nb = {ffn};", gelu);
        Assert.DoesNotContain("% n1", gelu);
        Assert.Contains("= x1[j];", gelu);
        Assert.DoesNotContain("atomicAdd", gelu);
        Assert.DoesNotContain("bert_keep", gelu);
    }

    [Fact]
    public void DropoutKernels_RegenerateTheMaskWithThePhiloxPrelude()
    {
        var source = Bert.Models.BertPreTraining.CudaSource;
        Assert.Contains("static __device__ __forceinline__ float bert_uniform(", source);
        Assert.Contains("0xD2511F53ull", source);
        Assert.Contains("0xCD9E8D57ull", source);
        Assert.Contains("0x9E3779B9u", source);
        Assert.Contains("0xBB67AE85u", source);
        var drop = KernelText(source, c => c.Contains("dropmask("));
        var mask = "training ? (bert_keep(seed, ";
        Assert.Equal(2, drop.Split(mask).Length - 1);   // forward and backward draw the same mask (their scalar loops)
        Assert.Contains("(unsigned long long)i, 0.1f) ? 1.1111112f : 0.0f) : 1.0f;", drop);
        // and their vector paths (four elements a thread), one Philox evaluation per four
        Assert.Equal(2, drop.Split("// vector path:").Length - 1);
        Assert.Equal(2, drop.Split("if (training) bert_philox(seed, ").Length - 1);
        Assert.Contains("(unsigned long long)(i0 >> 2), ws0);", drop);
        Assert.Contains("training ? (bert_unit(ws0[e]) >= 0.1f ? 1.1111112f : 0.0f) : 1.0f;", drop);
        // A model without dropout has no Philox.
        Assert.DoesNotContain("bert_uniform", MatrixOps.CudaSource);
    }

    /// <summary>Every fused kernel of BERT has the vector path (four elements a thread) in its forward and in the backward the
    /// schedule calls, except where a broadcast input of fixed size is not a multiple of 4 (the masked-LM decoder's bias over
    /// 30 522 words, the next-sentence bias over 2), whose four consecutive elements would wrap round it.</summary>
    [Fact]
    public void FusedKernels_HaveTheVectorPath_WhereFourElementsCannotWrapABroadcast()
    {
        var source = Bert.Models.BertPreTraining.CudaSource;
        var kernels = source.Split("\n// k").Skip(1).Select(p => "// k" + p).ToList();
        Assert.True(kernels.Count >= 10, $"{kernels.Count} kernels");
        int with = 0, without = 0;
        foreach (var k in kernels)
        {
            var fixedSizes = System.Text.RegularExpressions.Regex.Matches(k, @"x\d+ is \[(\d+)\] \(broadcast\)").Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToList();
            bool wraps = fixedSizes.Any(c => c % 4 != 0);
            int paths = k.Split("// vector path:").Length - 1;
            bool rows = k.Contains("_backward_rows(", StringComparison.Ordinal);
            // forward, and the backward the schedule calls: the chunked one with broadcast inputs, else the plain one
            Assert.True(paths == (wraps ? 0 : 2), $"{paths} vector paths in:\n{k[..Math.Min(400, k.Length)]}");
            if (rows && !wraps) Assert.Contains("for (int j = (int)(blockIdx.x * blockDim.x + threadIdx.x) << 2; j < nb;", k);
            if (wraps) without++; else with++;
        }
        Assert.True(without >= 2 && with >= 8, $"{with} kernels with the vector path, {without} without");
    }

    [Theory]
    [InlineData(0.5, "0.5f")]
    [InlineData(1.0, "1.0f")]
    [InlineData(-2.0, "(-2.0f)")]
    [InlineData(0.7071067811865476, "0.70710677f")]
    [InlineData(1e-12, "1E-12f")]
    [InlineData(3e38, "3E+38f")]
    [InlineData(1e39, "__int_as_float(0x7f800000)")]
    [InlineData(double.NegativeInfinity, "(-__int_as_float(0x7f800000))")]
    public void FloatLiterals_AreRoundTripInvariantWithSuffix(double value, string expected)
    {
        Assert.Equal(expected, CudaEmitter.Float(value));
    }

    // ---------------- host run against the CPU kernels ----------------

    /// <summary>The CUDA keywords and built-ins for a host C++ compiler: kernels become plain functions and the
    /// driver sets blockIdx/threadIdx itself, running the threads of a small grid one after another (valid for
    /// these kernels: no barriers, no two threads write one element).</summary>
    const string HostPrelude = """
        #include <math.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #define __global__
        #define __device__
        #define __forceinline__ inline
        struct bert_uint3 { unsigned int x, y, z; };
        static bert_uint3 threadIdx, blockIdx, blockDim, gridDim;
        static inline float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }
        static inline int __float_as_int(float f) { int i; memcpy(&i, &f, sizeof i); return i; }

        """ + Bert.Runtime.Cuda.CudaEmulation.AlignmentChecks;

    const int Grid = 2, Block = 3;   // six emulated threads: the grid-stride loops wrap

    /// <summary>A driver reading cases from argv[1] and writing results to argv[2]. A case: int kernel, int mode
    /// (0 forward, 1 backward, 2 Philox uniform), int training, u64 seed, int n, int ni, int ns[ni]; then forward: the
    /// inputs; backward: dy[n], the inputs, the prefilled dx; uniform: n (site, index) pairs of u64. Writes y, the
    /// dx, or the n uniforms.</summary>
    static string Driver(ModelInfo info, bool philox)
    {
        var sb = new StringBuilder();
        sb.Append(HostPrelude).Append("#include \"k.cu\"\n");
        // Per kernel: whether its backward also writes a product's output gradient in bf16 (FusedKernelInfo.Grad16Input).
        sb.Append($"static const int grad16[] = {{ {string.Join(", ", info.Kernels.Select(k => k.Grad16Input >= 0 ? "1" : "0").Append("0"))} }};\n");
        // Per kernel: whether its forward also writes y in bf16 (FusedKernelInfo.Out16).
        sb.Append($"static const int out16[] = {{ {string.Join(", ", info.Kernels.Select(k => k.Out16 ? "1" : "0").Append("0"))} }};\n");
        // Per kernel: which inputs may come in bf16 (FusedKernelInfo.Bf16Inputs), as a bit mask.
        sb.Append($"static const int takes16[] = {{ {string.Join(", ", info.Kernels.Select(k => Enumerable.Range(0, k.Inputs.Length).Sum(i => k.TakesBf16(i) ? 1 << i : 0).ToString(CultureInfo.InvariantCulture)).Append("0"))} }};\n");
        sb.Append("""
            static int rd(FILE* f, void* p, size_t bytes) { return fread(p, 1, bytes, f) == bytes; }
            // Every array the kernels see: zeroed, 16-byte aligned, or with argv[3] = 1 shifted by one float (then no pointer is
            // 8- or 16-byte aligned and the kernels take their scalar loops instead of the vector paths). Kept to the end.
            static int shift = 0;
            static void* al(size_t bytes) { char* p = (char*)calloc(bytes + 64, 1); if (!p) exit(7); return p + 16 + 4 * shift; }
            static float* rdf(FILE* f, int n) { float* p = (float*)al(sizeof(float) * (n + 1)); if (!rd(f, p, sizeof(float) * n)) exit(3); return p; }
            // bf16 values widened to the floats they stand for
            static void wr16(FILE* out, const unsigned short* d16, int n) { for (int i = 0; i < n; i++) { unsigned int b = (unsigned int)d16[i] << 16; float f; memcpy(&f, &b, 4); fwrite(&f, 4, 1, out); } }
            int main(int argc, char** argv)
            {
                FILE* in = fopen(argv[1], "rb"); FILE* out = fopen(argv[2], "wb");
                if (!in || !out) return 2;
                if (argc > 3) shift = atoi(argv[3]);
                int h[3], n, ni, ns[16]; unsigned long long seed;
                while (rd(in, h, sizeof h) && rd(in, &seed, 8) && rd(in, &n, 4) && rd(in, &ni, 4))
                {
                    if (ni > 16 || !rd(in, ns, 4 * ni)) return 3;
                    // mode | 4: the inputs that may come in bf16 are given so (h{k}, rounded from the floats read, which the
                    // test rounded already), their fp32 pointers null
                    int half = h[1] & 4; h[1] &= 3;
                    if (h[1] == 2)
                    {

            """);
        if (philox)
            sb.Append("""
                        for (int k = 0; k < n; k++)
                        {
                            unsigned long long si[2]; if (!rd(in, si, 16)) return 3;
                            float u = bert_uniform(seed, si[0], si[1]); fwrite(&u, 4, 1, out);
                        }

            """);
        else sb.Append("            return 4;\n");
        sb.Append("""
                        continue;
                    }
                    float* dy = h[1] == 1 || h[1] == 3 ? rdf(in, n) : 0;
                    float* x[16]; float* dx[16];
                    for (int k = 0; k < ni; k++) x[k] = rdf(in, ns[k]);
                    for (int k = 0; k < ni; k++) dx[k] = h[1] == 1 || h[1] == 3 ? rdf(in, ns[k]) : 0;
                    float* xa[16]; unsigned short* hx[16];
                    for (int k = 0; k < ni; k++)
                    {
                        hx[k] = 0; xa[k] = x[k];
                        if (!half || !((takes16[h[0]] >> k) & 1)) continue;
                        hx[k] = (unsigned short*)al(2 * ((size_t)ns[k] + 1));
                        for (int i = 0; i < ns[k]; i++) { unsigned int b; memcpy(&b, &x[k][i], 4); hx[k][i] = (unsigned short)(b >> 16); }
                        xa[k] = 0;
                    }
                    // a product's output gradient in bf16 (kernels with Grad16Input), written after the dx as floats
                    unsigned short* d16 = (unsigned short*)al(((size_t)n + 1) * sizeof(unsigned short));
                    for (int i = 0; i < n; i++) d16[i] = 0xFFFF;
                    if (h[1] == 3)
                    {
                        // k{id}_backward_rows: chunks of 2 rows as blockIdx.y, then the partials added in chunk order.
                        int nb = n, nbc = 0;
                        for (int k = 0; k < ni; k++) if (ns[k] != n) { nbc++; if (ns[k] < nb) nb = ns[k]; }
                        int rows = n / nb, rowChunk = 2, chunks = (rows + rowChunk - 1) / rowChunk;
                        float* part = (float*)al(((size_t)nbc * chunks * nb + 1) * sizeof(float));
                        blockDim.x = BLOCK; gridDim.x = GRID; gridDim.y = chunks; blockDim.y = blockDim.z = gridDim.z = 1;
                        for (unsigned c = 0; c < gridDim.y; c++)
                        for (unsigned b = 0; b < gridDim.x; b++)
                        for (unsigned t = 0; t < blockDim.x; t++)
                        {
                            blockIdx.x = b; blockIdx.y = c; threadIdx.x = t;
                            switch (h[0])
                            {

            """.Replace("BLOCK", Block.ToString(CultureInfo.InvariantCulture)).Replace("GRID", Grid.ToString(CultureInfo.InvariantCulture)));
        for (int q = 0; q < info.Kernels.Count; q++)
        {
            var k = info.Kernels[q];
            var name = k.Name.ToLowerInvariant();
            if (!HasRowsVariant(k)) continue;
            int ni = k.Inputs.Length;
            var xs = string.Join(", ", Enumerable.Range(0, ni).Select(i => $"xa[{i}], ns[{i}]" + (k.TakesBf16(i) ? $", hx[{i}]" : "")));
            var dxs = string.Join(", ", Enumerable.Range(0, ni).Select(i => $"dx[{i}]"));
            sb.Append($"                                case {q}: {name}_backward_rows(dy, {dxs}, {xs}, n, &seed, h[2], part, rowChunk{(k.Grad16Input >= 0 ? ", d16" : "")}); break;\n");
        }
        sb.Append("""
                                default: return 6;
                            }
                        }
                        for (int k = 0, slot = 0; k < ni; k++)
                        {
                            if (ns[k] == n) continue;
                            for (int j = 0; j < nb; j++)
                            {
                                float sum = 0.0f;
                                for (int c = 0; c < chunks; c++) sum += part[((long long)slot * chunks + c) * nb + j];
                                dx[k][j] += sum;
                            }
                            slot++;
                        }
                        for (int k = 0; k < ni; k++) fwrite(dx[k], sizeof(float), ns[k], out);
                        if (grad16[h[0]]) wr16(out, d16, n);
                        continue;
                    }
                    float* y = (float*)al(sizeof(float) * (n + 1));

            """);
        sb.Append("""
                    blockDim.x = BLOCK; gridDim.x = GRID; blockDim.y = blockDim.z = gridDim.y = gridDim.z = 1;
                    for (unsigned b = 0; b < gridDim.x; b++)
                    for (unsigned t = 0; t < blockDim.x; t++)
                    {
                        blockIdx.x = b; threadIdx.x = t;
                        switch (h[0] * 2 + h[1])
                        {

            """.Replace("BLOCK", Block.ToString(CultureInfo.InvariantCulture)).Replace("GRID", Grid.ToString(CultureInfo.InvariantCulture)));
        for (int q = 0; q < info.Kernels.Count; q++)
        {
            var k = info.Kernels[q];
            var name = k.Name.ToLowerInvariant();
            int ni = k.Inputs.Length;
            var xs = string.Join(", ", Enumerable.Range(0, ni).Select(i => $"xa[{i}], ns[{i}]" + (k.TakesBf16(i) ? $", hx[{i}]" : "")));
            var dxs = string.Join(", ", Enumerable.Range(0, ni).Select(i => $"dx[{i}]"));
            sb.Append($"                case {2 * q}: {name}_forward(y, {xs}, n, &seed, h[2]{(k.Out16 ? ", d16" : "")}); break;\n");
            sb.Append($"                case {2 * q + 1}: {name}_backward(dy, {dxs}, {xs}, n, &seed, h[2]{(k.Grad16Input >= 0 ? ", d16" : "")}); break;\n");
        }
        sb.Append("""
                            default: return 5;
                        }
                    }
                    if (h[1] == 0) { fwrite(y, sizeof(float), n, out); if (out16[h[0]]) wr16(out, d16, n); }
                    else for (int k = 0; k < ni; k++) fwrite(dx[k], sizeof(float), ns[k], out);
                    if ((h[1] == 1 || h[1] == 3) && grad16[h[0]]) wr16(out, d16, n);
                }
                fclose(out);
                return 0;
            }

            """);
        return sb.ToString();
    }

    /// <summary>Whether the generator gave the kernel a chunked backward (broadcast inputs, all of one size).</summary>
    static bool HasRowsVariant(FusedKernelInfo k) => k.Inputs.Where(x => x != k.Output).Distinct().Count() == 1;

    /// <summary>The models that stand for the distinct fused kernels (the same families as the CPU gradient properties).</summary>
    public static IEnumerable<object[]> KernelModels() => OpCoverageTests.Kernels()
        .Select(o => ((string)o[0]).Split('.')[0]).Distinct()
        .Select(name => new object[] { ModelTypes().Single(t => t.Name == name).FullName! });

    sealed record Case(int Kernel, int Mode, bool Training, ulong Seed, int N, float[][] Arrays, int OutLength);

    static float[] Floats(Random rng, int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 4 - 2)).ToArray();
    static double[] Doubles(float[] x) => x.Select(v => (double)v).ToArray();

    /// <summary>Every fused kernel of the model that stands for a family, run from the model's CUDA source compiled for
    /// the host: forward and backward, with and without dropout, B=2 T=4 G=2, on aligned arrays (the vector paths) and again unaligned (the scalar loops, the same bits),, against the CPU kernel in double on the
    /// same float inputs. The dropout mask must be the CPU's element for element; the Philox uniforms must be the
    /// CPU's bit for bit, for indices and sites past 2^32.</summary>
    [ClangTheory]
    [MemberData(nameof(KernelModels))]
    public void CudaKernels_RunOnTheHost_MatchTheCpuKernels(string model)
    {
        RequireClang();
        var type = ModelType(model);
        var info = Info(type);
        var source = Source(type)!;
        var families = OpCoverageTests.Kernels().Select(o => (string)o[0]).Where(id => id.Split('.')[0] == info.Name).Select(id => id.Split('.')[1]).ToHashSet();
        bool philox = source.Contains("bert_uniform(");
        var dir = Directory.CreateTempSubdirectory("bert-cuda-host-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "k.cu"), source);
            File.WriteAllText(Path.Combine(dir, "main.cpp"), Driver(info, philox));
            var build = Run(Clang, ["-x", "c++", "-std=c++17", "-O1", .. HostChecks, "-ffp-contract=off", "-w", "main.cpp", "-o", "run", "-lm"], dir);
            Assert.True(build.Code == 0, $"clang-14 could not compile the CUDA source of {model} for the host (exit {build.Code}):\n{Tail(build.Output)}");

            const int B = 2, T = 4, G = 2;   // B·T a multiple of 4: the vector paths take the unbroadcast kernels (the unaligned rerun, the scalar loops)
            var rng = new Random(20240611);
            var cases = new List<(Case Case, Func<float[], string?> Check)>();
            for (int q = 0; q < info.Kernels.Count; q++)
            {
                var k = info.Kernels[q];
                if (!families.Contains(k.Name)) continue;
                int n = (int)k.Output.Eval(B, T, G);
                var ns = k.Inputs.Select(s => (int)s.Eval(B, T, G)).ToArray();
                foreach (bool training in new[] { false, true })
                foreach (bool half in k.Bf16Inputs.Any(b => b) ? new[] { false, true } : new[] { false })
                {
                    ulong seed = 0x9E3779B97F4A7C15UL + (ulong)(q * 7 + (training ? 1 : 0));
                    var xs = ns.Select(len => Floats(rng, len)).ToArray();
                    // half: the inputs a product may write in bf16 come so (h{k}; their fp32 pointers null), the values bf16's
                    int halfMode = half ? 4 : 0;
                    if (half)
                        for (int i = 0; i < xs.Length; i++)
                            if (k.TakesBf16(i)) xs[i] = xs[i].Select(v => BitConverter.UInt32BitsToSingle((uint)Bf16Reference(v) << 16)).ToArray();
                    var what = $"{info.Name}.{k.Name} ({k.Expression}) training={training}{(half ? ", bf16 inputs " + string.Join(",", Enumerable.Range(0, xs.Length).Where(k.TakesBf16)) : "")}";

                    var yCpu = new double[n];
                    k.Forward(yCpu, xs.Select(Doubles).ToArray(), seed, training);
                    // With Out16, the bf16 copy of y follows: the kernel's own y rounded, bit for bit.
                    cases.Add((new Case(q, 0 | halfMode, training, seed, n, xs, k.Out16 ? 2 * n : n), y => Compare(what + " forward", y[..n], yCpu, k.Dropout && training)
                        ?? (!k.Out16 ? null : Enumerable.Range(0, n).Where(i => BitConverter.SingleToUInt32Bits(y[n + i]) != (uint)Bf16Reference(y[i]) << 16)
                            .Select(i => $"{what} forward: the bf16 copy of y[{i}] = {y[i]:R} is 0x{BitConverter.SingleToUInt32Bits(y[n + i]) >> 16:X4}, expected 0x{Bf16Reference(y[i]):X4}").FirstOrDefault())));

                    var dy = Floats(rng, n);
                    var prefill = ns.Select(len => Floats(rng, len)).ToArray();   // backward must add
                    var dxCpu = prefill.Select(Doubles).ToArray();
                    k.Backward(Doubles(dy), dxCpu, xs.Select(Doubles).ToArray(), seed, training);
                    var expected = dxCpu.SelectMany(d => d).ToArray();
                    // With Grad16Input, the bf16 copy of that input's gradient follows: the kernel's own dx rounded, bit for bit
                    // (or, when that gradient is dy's own buffer, Aliases, dy rounded: the adjoint passed on unchanged).
                    int extra = k.Grad16Input >= 0 ? n : 0, at = ns.Take(Math.Max(0, k.Grad16Input)).Sum();
                    bool ofDy = k.Grad16Input >= 0 && k.AliasesGradient(k.Grad16Input);
                    string? Backward(string name, float[] got)
                    {
                        float Source(int i) => ofDy ? dy[i] : got[at + i];
                        return Compare(name, got[..expected.Length], expected, false)
                            ?? (extra == 0 ? null : Enumerable.Range(0, n).Where(i => BitConverter.SingleToUInt32Bits(got[expected.Length + i]) != (uint)Bf16Reference(Source(i)) << 16)
                                .Select(i => $"{name}: the bf16 copy of {(ofDy ? "dy" : "dx" + k.Grad16Input)}[{i}] = {Source(i):R} is 0x{BitConverter.SingleToUInt32Bits(got[expected.Length + i]) >> 16:X4}, expected 0x{Bf16Reference(Source(i)):X4}").FirstOrDefault());
                    }
                    cases.Add((new Case(q, 1 | halfMode, training, seed, n, new[] { dy }.Concat(xs).Concat(prefill).ToArray(), expected.Length + extra),
                        dx => Backward(what + " backward (dx of all inputs, concatenated)", dx)));
                    if (HasRowsVariant(k))   // the chunked backward the GPU schedule calls: the same gradients
                        cases.Add((new Case(q, 3 | halfMode, training, seed, n, new[] { dy }.Concat(xs).Concat(prefill).ToArray(), expected.Length + extra),
                            dx => Backward(what + " backward_rows (chunks of 2 rows, then summed in order)", dx)));
                }
            }
            Assert.NotEmpty(cases);

            // Philox: bit-exact against the CPU generator, with the high words of seed, site and index in play.
            var pairs = new List<(ulong Site, ulong Index)>();
            if (philox)
            {
                for (int i = 0; i < 64; i++) pairs.Add(((ulong)(i % 5) + ((ulong)(i % 3) << 32), (ulong)i * 0x9E3779B1UL + ((ulong)i << 33)));
                pairs.Add((ulong.MaxValue, ulong.MaxValue));
            }
            const ulong PhiloxSeed = 0xFEDCBA9876543210UL;

            var inPath = Path.Combine(dir, "cases.bin");
            using (var f = new BinaryWriter(File.Create(inPath)))
            {
                foreach (var (c, _) in cases)
                {
                    var kernel = info.Kernels[c.Kernel];
                    f.Write(c.Kernel); f.Write(c.Mode); f.Write(c.Training ? 1 : 0); f.Write(c.Seed); f.Write(c.N);
                    f.Write(kernel.Inputs.Length);
                    foreach (var s in kernel.Inputs) f.Write((int)s.Eval(B, T, G));
                    foreach (var a in c.Arrays) foreach (var v in a) f.Write(v);
                }
                if (philox)
                {
                    f.Write(0); f.Write(2); f.Write(0); f.Write(PhiloxSeed); f.Write(pairs.Count); f.Write(0);
                    foreach (var (site, index) in pairs) { f.Write(site); f.Write(index); }
                }
            }
            var outPath = Path.Combine(dir, "out.bin");
            var run = Run(Path.Combine(dir, "run"), new[] { inPath, outPath }, dir);
            Assert.True(run.Code == 0, $"the host build of {model}'s CUDA kernels failed (exit {run.Code}):\n{Tail(run.Output)}");
            // Again with every array one float off alignment: the scalar loops instead of the vector paths (four elements a
            // thread, one Philox evaluation per four) wherever the sizes allowed those; the same bits either way.
            var scalarPath = Path.Combine(dir, "out-scalar.bin");
            var scalarRun = Run(Path.Combine(dir, "run"), new[] { inPath, scalarPath, "1" }, dir);
            Assert.True(scalarRun.Code == 0, $"the host build of {model}'s CUDA kernels failed on unaligned arrays (exit {scalarRun.Code}):\n{Tail(scalarRun.Output)}");
            byte[] vectorBytes = File.ReadAllBytes(outPath), scalarBytes = File.ReadAllBytes(scalarPath);
            int differ = Enumerable.Range(0, Math.Min(vectorBytes.Length, scalarBytes.Length)).FirstOrDefault(i => vectorBytes[i] != scalarBytes[i], -1);
            Assert.True(vectorBytes.Length == scalarBytes.Length && differ < 0,
                $"{model}: the kernels on aligned arrays (vector paths) and on unaligned ones (scalar loops) differ, first at byte {differ} of {vectorBytes.Length}");

            using var r = new BinaryReader(File.OpenRead(outPath));
            float[] Read(int len) => Enumerable.Range(0, len).Select(_ => r.ReadSingle()).ToArray();
            var failures = cases.Select(c => c.Check(Read(c.Case.OutLength))).Where(e => e is not null).ToList();
            if (philox)
                foreach (var (site, index) in pairs)
                {
                    float got = r.ReadSingle(), want = Philox.KeepUniform(PhiloxSeed, site, index);
                    if (BitConverter.SingleToInt32Bits(got) != BitConverter.SingleToInt32Bits(want))
                        failures.Add($"Philox uniform(seed {PhiloxSeed:X}, site {site:X}, index {index:X}) is {got:R} on the GPU path but {want:R} on the CPU.");
                }
            Assert.True(r.BaseStream.Position == r.BaseStream.Length, "the host driver wrote more results than the cases asked for");
            Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>The runtime's fp32 → bf16 conversion (the bf16 products' operands), compiled for the host from the runtime
    /// source and run on edge cases and random values, packed and strided, against round-to-nearest-even worked out in
    /// double from the two neighbouring bf16 values (NaN → quiet NaN, overflow → infinity).</summary>
    [ClangFact]
    public void RuntimeBf16Conversion_RoundsToNearestEven_PackedAndStrided()
    {
        RequireClang();
        string src = global::Bert.Runtime.Cuda.CudaKernels.Source;
        // the shared helpers from rt_f4 to rt_bf16 (and its four-wide form), then the conversion kernels' section
        int from = src.IndexOf("struct alignas(16) rt_f4", StringComparison.Ordinal), fromEnd = src.IndexOf("// end rt_bf16", StringComparison.Ordinal);
        int at = src.IndexOf("// ---------------- bf16 operands", StringComparison.Ordinal), to = src.IndexOf("// ---------------- attention, flash", StringComparison.Ordinal);
        Assert.True(from >= 0 && fromEnd > from && at > fromEnd && to > at, "rt_bf16 and rt_to_bf16 are not where the test looks for them");
        var rng = new Random(77);
        var values = new List<float> { 0f, -0f, 1f, -1f, float.Epsilon, -float.Epsilon, float.MaxValue, -float.MaxValue,
            float.PositiveInfinity, float.NegativeInfinity, float.NaN, BitConverter.UInt32BitsToSingle(0xFFC12345), BitConverter.UInt32BitsToSingle(0x7F800001),
            BitConverter.UInt32BitsToSingle(0x3F808000), BitConverter.UInt32BitsToSingle(0x3F818000), BitConverter.UInt32BitsToSingle(0x3F807FFF),
            BitConverter.UInt32BitsToSingle(0x7F7F8000), BitConverter.UInt32BitsToSingle(0x7F7F7FFF), BitConverter.UInt32BitsToSingle(0x00008000) };
        while (values.Count < 6 * 40) values.Add(BitConverter.UInt32BitsToSingle((uint)rng.NextInt64(0, 1L << 32)));
        const int Rows = 6, Cols = 40, Ld = 43;
        var dir = Directory.CreateTempSubdirectory("bert-bf16-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "main.cpp"), HostPrelude + """
                #define __restrict__ __restrict
                """ + "\n" + src[from..fromEnd] + src[at..to] + $$"""
                int main(int argc, char** argv)
                {
                    const int rows = {{Rows}}, cols = {{Cols}}, ld = {{Ld}};
                    static float packed[rows * cols], strided[rows * ld];
                    static unsigned short a[rows * cols], b[rows * cols];
                    FILE* in = fopen(argv[1], "rb"); FILE* out = fopen(argv[2], "wb");
                    if (!in || !out || fread(packed, 4, rows * cols, in) != rows * cols) return 2;
                    for (int r = 0; r < rows; r++) for (int c = 0; c < ld; c++) strided[r * ld + c] = c < cols ? packed[r * cols + c] : -7.0f;
                    blockDim.x = 3; gridDim.x = 2;
                    for (unsigned k = 0; k < gridDim.x; k++) for (unsigned t = 0; t < blockDim.x; t++)
                    {
                        blockIdx.x = k; threadIdx.x = t;
                        rt_to_bf16(a, packed, rows, cols, cols);
                        rt_to_bf16(b, strided, rows, cols, ld);
                    }
                    fwrite(a, 2, rows * cols, out); fwrite(b, 2, rows * cols, out);
                    return 0;
                }
                """);
            var build = Run(Clang, ["-x", "c++", "-std=c++17", "-O1", .. HostChecks, "-w", "main.cpp", "-o", "run"], dir);
            Assert.True(build.Code == 0, $"clang-14 could not compile the runtime's bf16 conversion for the host:\n{Tail(build.Output)}");
            using (var f = new BinaryWriter(File.Create(Path.Combine(dir, "in.bin")))) foreach (var v in values) f.Write(v);
            var run = Run(Path.Combine(dir, "run"), new[] { Path.Combine(dir, "in.bin"), Path.Combine(dir, "out.bin") }, dir);
            Assert.True(run.Code == 0, Tail(run.Output));
            var bytes = File.ReadAllBytes(Path.Combine(dir, "out.bin"));
            Assert.Equal(4 * values.Count, bytes.Length);
            for (int pass = 0; pass < 2; pass++)
                for (int i = 0; i < values.Count; i++)
                {
                    ushort got = BitConverter.ToUInt16(bytes, 2 * (pass * values.Count + i)), want = Bf16Reference(values[i]);
                    Assert.True(got == want, $"{(pass == 0 ? "packed" : "strided")}: {values[i]:R} (0x{BitConverter.SingleToUInt32Bits(values[i]):X8}) became 0x{got:X4}, expected 0x{want:X4}");
                }
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>Round to nearest even by distances in double between the two bf16 neighbours (the larger one's magnitude is
    /// 2^128 when it is infinity, which is how IEEE rounding treats overflow).</summary>
    static ushort Bf16Reference(float f)
    {
        if (float.IsNaN(f)) return 0x7FC0;
        ushort lo = (ushort)(BitConverter.SingleToUInt32Bits(f) >> 16);   // toward zero
        static double Value(ushort h) => (h & 0x7FFF) == 0x7F80 ? Math.CopySign(Math.Pow(2, 128), (h & 0x8000) != 0 ? -1 : 1) : BitConverter.UInt32BitsToSingle((uint)h << 16);
        if (Value(lo) == f || float.IsInfinity(f)) return lo;
        ushort hi = (ushort)(lo + 1);                                      // away from zero
        double dlo = Math.Abs(f - Value(lo)), dhi = Math.Abs(Value(hi) - f);
        return dlo < dhi ? lo : dhi < dlo ? hi : (lo & 1) == 0 ? lo : hi;
    }

    /// <summary>fp32 against the CPU kernel in double, within the float-vs-double bounds; with dropout, the dropped
    /// elements (exact zeros) must be the same.</summary>
    static string? Compare(string what, float[] got, double[] want, bool sameZeros)
    {
        if (got.Length != want.Length) return $"{what}: {got.Length} values, expected {want.Length}.";
        for (int i = 0; i < got.Length; i++)
        {
            double bound = Tolerances.FloatVsDoubleAbs + Tolerances.FloatVsDoubleRel * Math.Abs(want[i]);
            if (!(Math.Abs(got[i] - want[i]) <= bound))
                return string.Create(CultureInfo.InvariantCulture, $"{what}: [{i}] is {got[i]:R} in CUDA C but {want[i]:R} on the CPU (|diff| {Math.Abs(got[i] - want[i]):G3} > {bound:G3}).");
            if (sameZeros && (got[i] == 0) != (want[i] == 0))
                return string.Create(CultureInfo.InvariantCulture, $"{what}: [{i}] is {got[i]:R} in CUDA C but {want[i]:R} on the CPU: the dropout masks differ.");
        }
        return null;
    }
}
