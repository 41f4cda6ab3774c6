using System.Globalization;
using Bert.Dsl;
using Bert.Runtime;
using Bert.Runtime.Cuda;
using Bert.Runtime.Training;
using Xunit;

namespace Bert.Tests.Generator;

/// <summary>The device optimizers' kernels (global norm and clipping, AdamW, LAMB's four launches), compiled for the host from
/// the runtime's CUDA source and run with real threads — every thread of a block at once, so <c>__syncthreads</c>, the
/// warp shuffles and the block sums behave as on a GPU — against the CPU optimizers they mirror, over several steps.</summary>
public partial class CudaSourceTests
{
    /// <summary>A host C++ compiler's view of the CUDA keywords, with threads: a launch runs its blocks one after another and
    /// the threads of a block as concurrent pthreads; <c>__syncthreads</c> is a block barrier, a warp shuffle exchanges
    /// through a lane array between two warp barriers, and a thread that returns leaves the barriers (as an exited GPU thread
    /// does). <c>__shared__</c> becomes a function-level static: one block runs at a time.</summary>
    const string ThreadedHostPrelude = """
        #include <math.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <pthread.h>
        #define __global__
        #define __device__
        #define __forceinline__ inline
        #define __restrict__ __restrict
        #define __shared__ static
        struct bert_uint3 { unsigned int x, y, z; };
        static thread_local bert_uint3 threadIdx, blockIdx;
        static bert_uint3 blockDim, gridDim;
        static inline float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }
        static inline int __float_as_int(float f) { int i; memcpy(&i, &f, sizeof i); return i; }

        struct bert_barrier { pthread_mutex_t mu; pthread_cond_t cv; int expected, arrived; unsigned long gen; };
        static void bert_barrier_init(bert_barrier* b, int n) { pthread_mutex_init(&b->mu, 0); pthread_cond_init(&b->cv, 0); b->expected = n; b->arrived = 0; b->gen = 0; }
        static void bert_barrier_release(bert_barrier* b) { b->arrived = 0; b->gen++; pthread_cond_broadcast(&b->cv); }
        static void bert_barrier_wait(bert_barrier* b)
        {
            pthread_mutex_lock(&b->mu);
            unsigned long g = b->gen;
            if (++b->arrived == b->expected) bert_barrier_release(b);
            else while (g == b->gen) pthread_cond_wait(&b->cv, &b->mu);
            pthread_mutex_unlock(&b->mu);
        }
        static void bert_barrier_drop(bert_barrier* b)
        {
            pthread_mutex_lock(&b->mu);
            b->expected--;
            if (b->arrived > 0 && b->arrived == b->expected) bert_barrier_release(b);
            pthread_mutex_unlock(&b->mu);
        }
        static bert_barrier bert_block_bar, bert_warp_bar[32];
        static float bert_lanes[1024];
        static void __syncthreads() { bert_barrier_wait(&bert_block_bar); }
        static float bert_exchange(float v, int from)
        {
            int t = (int)threadIdx.x;
            bert_lanes[t] = v;
            bert_barrier_wait(&bert_warp_bar[t >> 5]);
            float r = bert_lanes[(t & ~31) | (from & 31)];
            bert_barrier_wait(&bert_warp_bar[t >> 5]);
            return r;
        }
        static float __shfl_xor_sync(unsigned int, float v, int m) { return bert_exchange(v, (int)threadIdx.x ^ m); }
        static float __shfl_sync(unsigned int, float v, int src) { return bert_exchange(v, src); }

        struct bert_thread { unsigned t, b; void (*run)(void*); void* body; };
        static void* bert_thread_main(void* a)
        {
            bert_thread* th = (bert_thread*)a;
            threadIdx.x = th->t; threadIdx.y = threadIdx.z = 0; blockIdx.x = th->b; blockIdx.y = blockIdx.z = 0;
            th->run(th->body);
            bert_barrier_drop(&bert_warp_bar[th->t >> 5]);
            bert_barrier_drop(&bert_block_bar);
            return 0;
        }
        template <class F> static void bert_call(void* f) { (*(F*)f)(); }
        // kernel<<<grid, block>>>: the lambda calls the kernel with its arguments.
        template <class F> static void bert_launch(unsigned grid, unsigned block, F f)
        {
            if (block == 0 || block > 1024) exit(5);
            gridDim.x = grid; gridDim.y = gridDim.z = 1; blockDim.x = block; blockDim.y = blockDim.z = 1;
            static pthread_t ids[1024]; static bert_thread ths[1024];
            pthread_attr_t attr; pthread_attr_init(&attr); pthread_attr_setstacksize(&attr, 1 << 18);
            for (unsigned b = 0; b < grid; b++)
            {
                bert_barrier_init(&bert_block_bar, (int)block);
                for (unsigned w = 0; w * 32 < block; w++) bert_barrier_init(&bert_warp_bar[w], (int)(block - w * 32 < 32 ? block - w * 32 : 32));
                for (unsigned t = 0; t < block; t++)
                {
                    ths[t].t = t; ths[t].b = b; ths[t].run = bert_call<F>; ths[t].body = &f;
                    if (pthread_create(&ids[t], &attr, bert_thread_main, &ths[t]) != 0) exit(6);
                }
                for (unsigned t = 0; t < block; t++) pthread_join(ids[t], 0);
            }
            pthread_attr_destroy(&attr);
        }

        """;

    /// <summary>The runtime source's shared helpers (Philox, warp and block sums) and its optimizer section.</summary>
    static string RuntimeOptimizerSource()
    {
        string src = CudaKernels.Source;
        int helpersEnd = src.IndexOf("// ---------------- embedding", StringComparison.Ordinal);
        int optimizer = src.IndexOf("// ---------------- optimizer", StringComparison.Ordinal);
        Assert.True(helpersEnd > 0 && optimizer > helpersEnd, "the runtime CUDA source's sections are not where the test looks for them");
        return src[..helpersEnd] + src[optimizer..];
    }

    /// <summary>Reads the case file, runs the steps as CudaOptimizer launches them (the same grids and blocks, except the
    /// element-wise passes get 3 blocks so their grid-stride loops wrap), writes each step's norm, then p, m, v and, for
    /// LAMB, the last trust ratios.</summary>
    const string OptimizerDriver = """
        static void* rdall(FILE* f, size_t bytes) { void* p = malloc(bytes + 8); if (fread(p, 1, bytes, f) != bytes) exit(3); return p; }
        int main(int argc, char** argv)
        {
            FILE* in = fopen(argv[1], "rb"); FILE* out = fopen(argv[2], "wb");
            if (!in || !out) return 2;
            int h[5]; if (fread(h, 4, 5, in) != 5) return 3;
            int n = h[0], tensors = h[1], pcount = h[2], steps = h[3], lamb = h[4];
            unsigned char* decay = (unsigned char*)rdall(in, n);
            int* pieces = (int*)rdall(in, 8 * (size_t)pcount);
            int* pieceTensor = (int*)rdall(in, 4 * (size_t)pcount);
            int* firstPiece = (int*)rdall(in, 4 * (size_t)(tensors + 1));
            float* p = (float*)rdall(in, 4 * (size_t)n);
            float* m = (float*)rdall(in, 4 * (size_t)n);
            float* v = (float*)rdall(in, 4 * (size_t)n);
            const long long normChunk = 1 << 16;
            int parts = (int)((n + normChunk - 1) / normChunk);
            double* partial = (double*)calloc(parts + 1, 8);
            double norm[2] = { 0.0, 1.0 };
            double* piecePart = (double*)calloc(2 * (size_t)pcount + 2, 8);
            float* scale = (float*)calloc(tensors + 1, 4);
            double* ratios = (double*)calloc(tensors + 1, 8);
            for (int s = 0; s < steps; s++)
            {
                float* g = (float*)rdall(in, 4 * (size_t)n);
                double maxNorm, lr; float k[8];
                if (fread(&maxNorm, 8, 1, in) != 1 || fread(&lr, 8, 1, in) != 1 || fread(k, 4, 8, in) != 8) return 3;
                bert_launch(parts, 256, [&] { rt_sumsq_partial(partial, g, n, normChunk); });
                bert_launch(1, 32, [&] { rt_norm_finish(norm, partial, parts, maxNorm); });
                fwrite(&norm[0], 8, 1, out);
                if (!lamb)
                    bert_launch(3, 256, [&] { rt_adamw(p, g, m, v, decay, norm, n, k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]); });
                else
                {
                    bert_launch(3, 256, [&] { rt_lamb_direction(g, m, v, p, decay, norm, n, k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]); });
                    bert_launch(pcount, 256, [&] { rt_lamb_norms(piecePart, p, g, pieces); });
                    bert_launch((tensors + 127) / 128, 128, [&] { rt_lamb_ratios(scale, ratios, piecePart, firstPiece, tensors, lr); });
                    bert_launch(pcount, 256, [&] { rt_lamb_apply(p, g, scale, pieces, pieceTensor); });
                }
                free(g);
            }
            fwrite(p, 4, n, out); fwrite(m, 4, n, out); fwrite(v, 4, n, out);
            if (lamb) fwrite(ratios, 8, tensors, out);
            return 0;
        }
        """;

    /// <summary>Tensors that cross the CPU optimizer's 32 Ki chunks (so one tensor has several pieces), a tensor of zeros (LAMB's
    /// ratio-1 case), tensors with and without decay; three steps: clipping active, clipping off (0), a limit above the norm.</summary>
    [ClangTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void OptimizerKernels_RunOnTheHostWithThreads_MatchTheCpuOptimizer(bool lamb)
    {
        RequireClang();
        int[] sizes = { 70, 40_000, 3, 30_000, 1, 900 };
        bool[] decays = { true, true, false, true, false, true };
        var ps = new List<ParamInfo>();
        long offset = 0;
        for (int j = 0; j < sizes.Length; j++)
        {
            ps.Add(new ParamInfo($"t{j}", $"t{j}", new[] { sizes[j] }, offset, sizes[j], Init.Zeros, decays[j], "b"));
            offset += sizes[j];
        }
        int n = (int)offset;
        var rng = new Random(12);
        float[] p = Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * 0.05f).ToArray();
        Array.Clear(p, (int)ps[2].Offset, sizes[2]);                    // a tensor of zeros ...
        var grads = Enumerable.Range(0, 3).Select(s => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * 0.01f * (s + 1)).ToArray()).ToArray();
        foreach (var g in grads) Array.Clear(g, (int)ps[2].Offset, sizes[2]);   // ... with no gradient and no decay: it stays 0
        double[] maxNorms = { 0.5, 0, 1e3 };
        double[] lrs = { 1e-2, 5e-3, 2e-3 };
        (double b1, double b2, double eps, double wd) = (0.9, 0.999, 1e-6, 0.01);
        var (pieces, pieceTensor, firstPiece) = CudaLamb.PieceLayout(ps);
        Assert.True(firstPiece[2] - firstPiece[1] >= 2, "the test wants a tensor cut into several pieces");

        // The CPU optimizer, from the same start.
        Optimizer<float> cpu = lamb ? new Lamb<float>(ps, b1, b2, eps, wd) : new AdamW<float>(ps, b1, b2, eps, wd);
        float[] pc = (float[])p.Clone();
        var cpuNorms = new double[3];
        for (int s = 0; s < 3; s++)
        {
            float[] g = (float[])grads[s].Clone();
            cpuNorms[s] = maxNorms[s] > 0 ? GradientClipping.ClipByGlobalNorm<float>(g, maxNorms[s]) : GradientClipping.GlobalNorm<float>(g);
            cpu.Step(pc, g, lrs[s]);
        }

        var dir = Directory.CreateTempSubdirectory("bert-cuda-opt-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "main.cpp"), ThreadedHostPrelude + RuntimeOptimizerSource() + "\n" + OptimizerDriver);
            var build = Run(Clang, new[] { "-x", "c++", "-std=c++17", "-O1", "-w", "-pthread", "main.cpp", "-lm", "-o", "run" }, dir);
            Assert.True(build.Code == 0, $"clang-14 could not compile the runtime's optimizer kernels for the host:\n{Tail(build.Output)}");
            using (var f = new BinaryWriter(File.Create(Path.Combine(dir, "in.bin"))))
            {
                foreach (int x in new[] { n, firstPiece.Length - 1, pieceTensor.Length, 3, lamb ? 1 : 0 }) f.Write(x);
                foreach (var q in ps) for (int i = 0; i < q.Length; i++) f.Write((byte)(q.Decay ? 1 : 0));
                foreach (int x in pieces) f.Write(x);
                foreach (int x in pieceTensor) f.Write(x);
                foreach (int x in firstPiece) f.Write(x);
                foreach (float x in p) f.Write(x);
                for (int i = 0; i < 2 * n; i++) f.Write(0f);               // m, v
                for (int s = 0; s < 3; s++)
                {
                    foreach (float x in grads[s]) f.Write(x);
                    f.Write(maxNorms[s]); f.Write(lrs[s]);
                    // The scalars as CudaAdamW / CudaLamb pass them for step t.
                    int t = s + 1;
                    double bc1 = 1 - Math.Pow(b1, t), bc2 = 1 - Math.Pow(b2, t);
                    float[] k = lamb
                        ? new[] { (float)b1, (float)(1 - b1), (float)b2, (float)(1 - b2), (float)bc1, (float)Math.Sqrt(bc2), (float)eps, (float)wd }
                        : new[] { (float)b1, (float)(1 - b1), (float)b2, (float)(1 - b2), (float)(lrs[s] / bc1), (float)Math.Sqrt(bc2), (float)eps, (float)(1 - lrs[s] * wd) };
                    foreach (float x in k) f.Write(x);
                }
            }
            var run = Run(Path.Combine(dir, "run"), new[] { Path.Combine(dir, "in.bin"), Path.Combine(dir, "out.bin") }, dir);
            Assert.True(run.Code == 0, $"the host build of the optimizer kernels failed (exit {run.Code}):\n{Tail(run.Output)}");
            using var r = new BinaryReader(File.OpenRead(Path.Combine(dir, "out.bin")));
            for (int s = 0; s < 3; s++)
            {
                double norm = r.ReadDouble();
                Assert.True(Math.Abs(norm - cpuNorms[s]) <= 1e-6 * cpuNorms[s], $"step {s + 1}: gradient norm {norm:R}, CPU {cpuNorms[s]:R}");
            }
            float[] Read() => Enumerable.Range(0, n).Select(_ => r.ReadSingle()).ToArray();
            float[] pg = Read(), mg = Read(), vg = Read();
            AssertClose("parameters", pg, pc);
            AssertClose("first moment", mg, cpu.FirstMoment.ToArray());
            AssertClose("second moment", vg, cpu.SecondMoment.ToArray());
            if (lamb)
            {
                var want = ((Lamb<float>)cpu).LastTrustRatios.ToArray();
                Assert.Equal(sizes.Length, want.Length);
                for (int j = 0; j < want.Length; j++)
                {
                    double got = r.ReadDouble();
                    Assert.True(Math.Abs(got - want[j]) <= 1e-5 * want[j], $"tensor {j}: trust ratio {got:R}, CPU {want[j]:R}");
                }
                Assert.Equal(1.0, want[2]);                               // the tensor of zeros: ‖w‖ = ‖u‖ = 0
            }
            Assert.Equal(r.BaseStream.Length, r.BaseStream.Position);
            // The update moved every parameter of a decaying or non-zero tensor: nothing was left unwritten.
            Assert.True(pg.Zip(p).Count(x => x.First == x.Second) < n / 100, "most parameters did not move");
        }
        finally { Directory.Delete(dir, true); }

        static void AssertClose(string what, float[] got, float[] want)
        {
            double rms = Math.Sqrt(want.Sum(x => (double)x * x) / want.Length);
            for (int i = 0; i < want.Length; i++)
                Assert.True(Math.Abs(got[i] - want[i]) <= 1e-5 * (Math.Abs(want[i]) + 1e-3 * rms),
                    string.Create(CultureInfo.InvariantCulture, $"{what}[{i}] = {got[i]:R}, CPU {want[i]:R}"));
        }
    }
}
