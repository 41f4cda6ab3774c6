using System.Globalization;
using Bert.Dsl;
using Bert.Runtime;
using Bert.Runtime.Cuda;
using Bert.Runtime.Kernels;
using Bert.Runtime.Training;
using Xunit;

namespace Bert.Tests.Generator;

/// <summary>Runtime CUDA kernels that need a block's threads at once (barriers, warp shuffles, block sums), compiled for the
/// host from the runtime's CUDA source and run with a block's threads as coroutines against the CPU code they mirror: the device optimizers'
/// kernels (global norm and clipping, AdamW, LAMB's four launches) over several steps, and the fused attention kernels,
/// forward and backward, with and without dropout.</summary>
public partial class CudaSourceTests
{
    /// <summary>The host emulation's prelude: CUDA keywords for a host compiler, a block's threads as coroutines.</summary>
    const string ThreadedHostPrelude = CudaEmulation.Prelude;

    /// <summary>The runtime source's shared helpers (Philox, warp and block sums, everything before the first section) and
    /// the sections whose header lines ("// ---------------- NAME") start with the given names, each up to the next
    /// header. A kernel's dynamic shared memory becomes a static array of <paramref name="dynamicShared"/> floats.</summary>
    static string RuntimeSections(int dynamicShared, params string[] names)
    {
        const string Header = "// ----------------";
        string src = CudaKernels.Source;
        int first = src.IndexOf(Header, StringComparison.Ordinal);
        Assert.True(first > 0, "the runtime CUDA source has no sections");
        var sb = new System.Text.StringBuilder(src[..first]);
        foreach (string name in names)
        {
            int at = src.IndexOf(Header + " " + name, StringComparison.Ordinal);
            Assert.True(at > 0, $"the runtime CUDA source has no section '{name}'");
            int end = src.IndexOf(Header, at + Header.Length, StringComparison.Ordinal);
            sb.Append(src[at..(end < 0 ? src.Length : end)]);
        }
        return sb.ToString().Replace("extern __shared__ float rt_sh[];", $"__shared__ float rt_sh[{Math.Max(1, dynamicShared)}];", StringComparison.Ordinal);
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
            int n = h[0], tensors = h[1], pcount = h[2], steps = h[3], lamb = h[4];   // 0 AdamW, 1 LAMB, 2 AdamW four at a time
            unsigned char* decay = (unsigned char*)rdall(in, n);
            int* pieces = (int*)rdall(in, 8 * (size_t)pcount);
            int* pieceTensor = (int*)rdall(in, 4 * (size_t)pcount);
            int* firstPiece = (int*)rdall(in, 4 * (size_t)(tensors + 1));
            float* p = (float*)rdall(in, 4 * (size_t)n);
            float* m = (float*)rdall(in, 4 * (size_t)n);
            float* v = (float*)rdall(in, 4 * (size_t)n);
            unsigned short* p16 = (unsigned short*)malloc(2 * (size_t)n + 8);
            for (int i = 0; i < n; i++) p16[i] = 0xFFFF;                   // a NaN pattern no rounding gives
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
                if (lamb == 2 && ((((unsigned long long)p | (unsigned long long)g | (unsigned long long)m | (unsigned long long)v | (unsigned long long)decay | (unsigned long long)p16) & 15) != 0)) return 4;   // rt_adamw4's alignment
                if (lamb == 2)
                    bert_launch(3, 256, [&] { rt_adamw4(p, g, m, v, decay, norm, n, k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], s == steps - 1 ? p16 : nullptr); });
                else if (!lamb)
                    bert_launch(3, 256, [&] { rt_adamw(p, g, m, v, decay, norm, n, k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], s == steps - 1 ? p16 : nullptr); });
                else
                {
                    bert_launch(3, 256, [&] { rt_lamb_direction(g, m, v, p, decay, norm, n, k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]); });
                    bert_launch(pcount, 256, [&] { rt_lamb_norms(piecePart, p, g, pieces); });
                    bert_launch((tensors + 127) / 128, 128, [&] { rt_lamb_ratios(scale, ratios, piecePart, firstPiece, tensors, lr); });
                    bert_launch(pcount, 256, [&] { rt_lamb_apply(p, g, scale, pieces, pieceTensor, s == steps - 1 ? p16 : nullptr); });
                }
                free(g);
            }
            fwrite(p, 4, n, out); fwrite(m, 4, n, out); fwrite(v, 4, n, out); fwrite(p16, 2, n, out);
            if (lamb == 1) fwrite(ratios, 8, tensors, out);
            return 0;
        }
        """;

    /// <summary>Tensors that cross the CPU optimizer's 32 Ki chunks (so one tensor has several pieces), a tensor of zeros (LAMB's
    /// ratio-1 case), tensors with and without decay; three steps: clipping active, clipping off (0), a limit above the norm.
    /// <paramref name="four"/>: AdamW four elements at a time (rt_adamw4; n = 70 974 leaves two for its scalar tail).</summary>
    [ClangTheory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    public void OptimizerKernels_RunOnTheHostWithThreads_MatchTheCpuOptimizer(bool lamb, bool four)
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
            File.WriteAllText(Path.Combine(dir, "main.cpp"), ThreadedHostPrelude + RuntimeSections(0, "bf16 operands", "optimizer") + "\n" + OptimizerDriver);
            var build = Run(Clang, ["-x", "c++", "-std=c++17", "-O1", .. HostChecks, "-w", "main.cpp", "-lm", "-o", "run"], dir);
            Assert.True(build.Code == 0, $"clang-14 could not compile the runtime's optimizer kernels for the host:\n{Tail(build.Output)}");
            using (var f = new BinaryWriter(File.Create(Path.Combine(dir, "in.bin"))))
            {
                foreach (int x in new[] { n, firstPiece.Length - 1, pieceTensor.Length, 3, lamb ? 1 : four ? 2 : 0 }) f.Write(x);
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
            if (four)
            {
                // The same case through rt_adamw, one element a thread: the same bits everywhere.
                byte[] input = File.ReadAllBytes(Path.Combine(dir, "in.bin"));
                BitConverter.GetBytes(0).CopyTo(input, 16);
                File.WriteAllBytes(Path.Combine(dir, "in1.bin"), input);
                var one = Run(Path.Combine(dir, "run"), new[] { Path.Combine(dir, "in1.bin"), Path.Combine(dir, "out1.bin") }, dir);
                Assert.True(one.Code == 0, Tail(one.Output));
                Assert.True(File.ReadAllBytes(Path.Combine(dir, "out.bin")).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(dir, "out1.bin"))),
                    "rt_adamw4 and rt_adamw wrote different bits");
            }
            using var r = new BinaryReader(File.OpenRead(Path.Combine(dir, "out.bin")));
            for (int s = 0; s < 3; s++)
            {
                double norm = r.ReadDouble();
                Assert.True(Math.Abs(norm - cpuNorms[s]) <= 1e-6 * cpuNorms[s], $"step {s + 1}: gradient norm {norm:R}, CPU {cpuNorms[s]:R}");
            }
            float[] Read() => Enumerable.Range(0, n).Select(_ => r.ReadSingle()).ToArray();
            float[] pg = Read(), mg = Read(), vg = Read();
            // The last step also wrote the bf16 weight copy: each value the new parameter rounded to nearest even.
            for (int i = 0; i < n; i++)
            {
                ushort want16 = Bert.Runtime.Checkpoints.SafeTensors.ToBFloat16(pg[i]), got16 = r.ReadUInt16();
                Assert.True(want16 == got16, $"bf16 copy [{i}] = 0x{got16:X4}, want 0x{want16:X4} (parameter {pg[i]:R})");
            }
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

    /// <summary>Runs the fused attention kernels as CudaExec launches them (grid B·H × ⌈T/32⌉, 256 threads): forward, then
    /// backward_q and backward_kv on the forward's probabilities, adding into a prefilled dqkv (or, the header's sixth int 0,
    /// writing over it); writes out, probs, dqkv.</summary>
    const string AttentionDriver = """
        static void* rdall(FILE* f, size_t bytes) { void* p = malloc(bytes + 8); if (fread(p, 1, bytes, f) != bytes) exit(3); return p; }
        int main(int argc, char** argv)
        {
            FILE* in = fopen(argv[1], "rb"); FILE* out = fopen(argv[2], "wb");
            if (!in || !out) return 2;
            int h[6]; float f[2]; unsigned long long u[2];
            if (fread(h, 4, 6, in) != 6 || fread(f, 4, 2, in) != 2 || fread(u, 8, 2, in) != 2) return 3;
            int B = h[0], T = h[1], C = h[2], H = h[3], drop = h[4], acc = h[5];
            float p = f[0], scale = f[1];
            size_t btc = (size_t)B * T * C, bhtt = (size_t)B * H * T * T;
            float* qkv = (float*)rdall(in, 12 * btc);
            int* mask = (int*)rdall(in, 4 * (size_t)B * T);
            float* dy = (float*)rdall(in, 4 * btc);
            float* dqkv = (float*)rdall(in, 12 * btc);
            float* o = (float*)calloc(btc, 4); float* probs = (float*)calloc(bhtt, 4); float* dS = (float*)calloc(bhtt, 4);
            unsigned gy = (unsigned)((T + 31) / 32);
            bert_launch2(B * H, gy, 256, [&] { rt_attention_fused_forward(o, probs, qkv, mask, B, T, C, H, scale, p, &u[0], u[1], drop); });
            bert_launch2(B * H, gy, 256, [&] { rt_attention_fused_backward_q(dqkv, dS, dy, qkv, probs, B, T, C, H, scale, p, &u[0], u[1], drop, acc); });
            bert_launch2(B * H, gy, 256, [&] { rt_attention_fused_backward_kv(dqkv, dS, dy, qkv, probs, B, T, C, H, scale, p, &u[0], u[1], drop, acc); });
            fwrite(o, 4, btc, out); fwrite(probs, 4, bhtt, out); fwrite(dqkv, 4, 3 * btc, out);
            return 0;
        }
        """;

    /// <summary>Compiles an attention driver <paramref name="program"/> for the host in <paramref name="dir"/>, runs it on the
    /// inputs (the header's ints, then p, scale, seed and site, qkv, mask, dy and the prefilled dqkv) and returns a reader
    /// over what it wrote.</summary>
    static BinaryReader RunAttentionProgram(string dir, string program, string what, int[] header, float p, float scale, ulong seed, ulong site,
        float[] qkv, int[] mask, float[] dy, float[] dqkv0)
    {
        File.WriteAllText(Path.Combine(dir, "main.cpp"), program);
        var build = Run(Clang, ["-x", "c++", "-std=c++17", "-O1", .. HostChecks, "-w", "main.cpp", "-lm", "-o", "run"], dir);
        Assert.True(build.Code == 0, $"clang-14 could not compile the {what} kernels for the host:\n{Tail(build.Output)}");
        using (var f = new BinaryWriter(File.Create(Path.Combine(dir, "in.bin"))))
        {
            foreach (int x in header) f.Write(x);
            f.Write(p); f.Write(scale); f.Write(seed); f.Write(site);
            foreach (float x in qkv) f.Write(x);
            foreach (int x in mask) f.Write(x);
            foreach (float x in dy) f.Write(x);
            foreach (float x in dqkv0) f.Write(x);
        }
        var run = Run(Path.Combine(dir, "run"), new[] { Path.Combine(dir, "in.bin"), Path.Combine(dir, "out.bin") }, dir);
        Assert.True(run.Code == 0, $"the host build of the {what} kernels failed (exit {run.Code}):\n{Tail(run.Output)}");
        return new BinaryReader(File.OpenRead(Path.Combine(dir, "out.bin")));
    }

    /// <summary>T past one tile of 32 rows (a partial second tile), padded keys in the second sequence, head sizes 16 and 72
    /// (72: a partial fourth group of columns per lane).</summary>
    [ClangTheory]
    [InlineData(2, 37, 16, 1, false)]
    [InlineData(2, 37, 32, 2, true)]
    [InlineData(1, 33, 144, 2, true)]
    [InlineData(2, 37, 32, 2, true, true)]
    public void FusedAttentionKernels_RunOnTheHostWithThreads_MatchTheCpuAttention(int B, int T, int C, int H, bool drop, bool written = false)
    {
        RequireClang();
        const float P = 0.1f;
        const ulong Seed = 0x5EED, Site = 7;
        var rng = new Random(B * 1000 + T + C + (drop ? 1 : 0));
        float[] Random(long n, double scale) => Enumerable.Range(0, (int)n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray();
        float[] qkv = Random(3L * B * T * C, 1.0), dy = Random((long)B * T * C, 1.0), dqkv0 = Random(3L * B * T * C, 0.1);
        // written: the first gradient into dqkv, which the schedule did not clear (NaN here), is written, not added.
        if (written) Array.Fill(dqkv0, float.NaN);
        int[] mask = Enumerable.Range(0, B * T).Select(i => i % T < T - 5 * (i / T) ? 1 : 0).ToArray();
        float scale = 1f / MathF.Sqrt(C / H);   // as CudaExec passes it

        int bhtt = B * H * T * T;
        var outCpu = new double[B * T * C];
        var probsCpu = new double[bhtt];
        double[] Double(float[] x) => x.Select(v => (double)v).ToArray();
        Attention.Forward<double>(outCpu, probsCpu, Double(qkv), mask, B, T, C, H, P, Seed, Site, training: drop);
        double[] dqkvCpu = Double(dqkv0);
        Attention.Backward<double>(dqkvCpu, Double(dy), Double(qkv), probsCpu, mask, B, T, C, H, P, Seed, Site, training: drop, accumulate: !written);

        var dir = Directory.CreateTempSubdirectory("bert-cuda-attn-").FullName;
        try
        {
            using var r = RunAttentionProgram(dir, ThreadedHostPrelude + RuntimeSections(2 * 32 * 129, "attention, fused") + "\n" + AttentionDriver, "fused attention",
                [B, T, C, H, drop ? 1 : 0, written ? 0 : 1], P, scale, Seed, Site, qkv, mask, dy, dqkv0);
            float[] Read(int n) => Enumerable.Range(0, n).Select(_ => r.ReadSingle()).ToArray();
            float[] o = Read(B * T * C), probs = Read(bhtt), dqkv = Read(3 * B * T * C);
            Assert.Equal(r.BaseStream.Length, r.BaseStream.Position);
            Assert.Null(Compare("fused attention out", o, outCpu, false));
            Assert.Null(Compare("fused attention probs", probs, probsCpu, false));
            Assert.Null(Compare(written ? "fused attention dqkv (written over NaN)" : "fused attention dqkv (added to the prefilled values)", dqkv, dqkvCpu, false));
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>The embedding backward over rows grouped by id and cut into segments (rt_embed_backward_segments and
    /// rt_embed_backward_finish on CudaExec.GroupById's and SegmentRuns' layout, launched as CudaExec does: 2 blocks here so
    /// the block loop wraps, 32 threads for 40 columns so the column loop wraps) against the CPU's Embedding.Backward in
    /// double, adding into a prefilled table; the one id at or past V is skipped. Segments of 4 rows: one id has 25 rows
    /// (7 segments, as the token types' two ids have thousands), others one segment or several.</summary>
    [ClangFact]
    public void EmbeddingBackwardSegments_RunOnTheHost_MatchTheCpuEmbedding()
    {
        RequireClang();
        const int N = 80, C = 40, V = 9, SegmentRows = 4;
        var rng = new Random(31);
        int[] ids = Enumerable.Range(0, N).Select(i => i % 3 == 0 ? 2 : rng.Next(V)).ToArray();
        ids[17] = V;                                                        // outside the table: the kernel skips it
        float[] dy = Enumerable.Range(0, N * C).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        float[] table = Enumerable.Range(0, V * C).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var packed = new int[CudaExec.GroupedLength(N)];
        int[] counts = [];
        int runs = CudaExec.GroupById(ids, packed, ref counts);
        Assert.Equal(ids.Distinct().Count(), runs);
        var (segments, multi, parts) = CudaExec.SegmentRuns(packed, N, runs, SegmentRows);
        var lengths = ids.GroupBy(i => i).Select(g => g.Count()).ToArray();
        Assert.Equal(lengths.Sum(l => (l + SegmentRows - 1) / SegmentRows), segments);
        Assert.Equal(lengths.Count(l => l > SegmentRows), multi);
        Assert.Equal(lengths.Where(l => l > SegmentRows).Sum(l => (l + SegmentRows - 1) / SegmentRows), parts);
        Assert.True(lengths.Max() >= 25 && multi >= 2, "the test wants long runs");

        double[] want = table.Select(v => (double)v).ToArray();
        var valid = Enumerable.Range(0, N).Where(n => ids[n] < V).ToArray();
        Embedding.Backward<double>(want, valid.SelectMany(n => dy.Skip(n * C).Take(C)).Select(v => (double)v).ToArray(), valid.Select(n => ids[n]).ToArray(), valid.Length, C);

        var dir = Directory.CreateTempSubdirectory("bert-cuda-embed-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "main.cpp"), ThreadedHostPrelude + RuntimeSections(0, "embedding") + "\n" + """
                int main(int argc, char** argv)
                {
                    FILE* in = fopen(argv[1], "rb"); FILE* out = fopen(argv[2], "wb");
                    if (!in || !out) return 2;
                    int h[15]; if (fread(h, 4, 15, in) != 15) return 3;
                    int N = h[0], C = h[1], V = h[2], multi = h[5], parts = h[6], segRows = h[7], length = h[14];
                    int* packed = (int*)malloc(4 * length); float* dy = (float*)malloc(4 * N * C); float* table = (float*)malloc(4 * V * C);
                    float* part = (float*)malloc(4 * (parts * C + 1));
                    for (int i = 0; i < parts * C; i++) part[i] = __builtin_nanf("");
                    if (fread(packed, 4, length, in) != length || fread(dy, 4, N * C, in) != N * C || fread(table, 4, V * C, in) != V * C) return 3;
                    int *runStart = packed + N, *runId = packed + 2 * N + 1, *segLo = packed + h[8], *segRun = packed + h[9], *segPart = packed + h[10];
                    int *multiRun = packed + h[11], *multiFirst = packed + h[12], *counts = packed + h[13];
                    bert_launch(2, 32, [&] { rt_embed_backward_segments(table, part, dy, packed, runStart, runId, segLo, segRun, segPart, counts, segRows, C, V); });
                    bert_launch2(1, multi + 1, 64, [&] { rt_embed_backward_finish(table, part, runId, multiRun, multiFirst, counts, C, V); });
                    fwrite(table, 4, V * C, out);
                    return 0;
                }
                """);
            var build = Run(Clang, ["-x", "c++", "-std=c++17", "-O1", .. HostChecks, "-w", "main.cpp", "-lm", "-o", "run"], dir);
            Assert.True(build.Code == 0, $"clang-14 could not compile the embedding kernels for the host:\n{Tail(build.Output)}");
            using (var f = new BinaryWriter(File.Create(Path.Combine(dir, "in.bin"))))
            {
                var at = CudaExec.SegmentLayout.Of(N);
                Assert.Equal(segments, packed[at.Counts]);
                Assert.Equal(multi, packed[at.Counts + 1]);
                foreach (int x in new[] { N, C, V, runs, segments, multi, parts, SegmentRows, at.SegLo, at.SegRun, at.SegPart, at.MultiRun, at.MultiFirst, at.Counts, at.End }) f.Write(x);
                foreach (int x in packed.AsSpan(0, at.End)) f.Write(x);
                foreach (float x in dy) f.Write(x);
                foreach (float x in table) f.Write(x);
            }
            var run = Run(Path.Combine(dir, "run"), new[] { Path.Combine(dir, "in.bin"), Path.Combine(dir, "out.bin") }, dir);
            Assert.True(run.Code == 0, $"the host build of the embedding kernels failed (exit {run.Code}):\n{Tail(run.Output)}");
            var bytes = File.ReadAllBytes(Path.Combine(dir, "out.bin"));
            Assert.Equal(4 * V * C, bytes.Length);
            float[] got = Enumerable.Range(0, V * C).Select(i => BitConverter.ToSingle(bytes, 4 * i)).ToArray();
            Assert.Null(Compare("embedding backward over segments", got, want, false));
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>The transpose of the last two axes (question answering's start and end logits) launched with fewer threads
    /// than elements, so the grid-stride loops wrap: y (B,K,T) = x (B,T,K) and the backward, added into a prefilled dx and
    /// written over NaN, against the CPU kernel in double (the copies exact, the addition within the float-vs-double bounds).</summary>
    [ClangFact]
    public void TransposeKernels_RunOnTheHost_MatchTheCpuTranspose()
    {
        RequireClang();
        const int B = 3, T = 37, K = 2, N = B * T * K;
        var rng = new Random(23);
        float[] Random(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        double[] D(float[] a) => a.Select(v => (double)v).ToArray();
        float[] x = Random(N), dy = Random(N), dx0 = Random(N);
        var y = new double[N];
        Transpose.Forward<double>(y, D(x), B, T, K);
        double[] dx = D(dx0);
        Transpose.Backward<double>(dx, D(dy), B, T, K);
        double[] dxWritten = Enumerable.Repeat(double.NaN, N).ToArray();
        Transpose.Backward<double>(dxWritten, D(dy), B, T, K, accumulate: false);

        var dir = Directory.CreateTempSubdirectory("bert-cuda-transpose-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "main.cpp"), ThreadedHostPrelude + RuntimeSections(0, "transpose") + "\n" + $$"""
                static float* rdf(FILE* f, int n) { float* p = (float*)malloc(4 * (size_t)n + 16); if (fread(p, 4, n, f) != (size_t)n) exit(3); return p; }
                int main(int argc, char** argv)
                {
                    FILE* in = fopen(argv[1], "rb"); FILE* out = fopen(argv[2], "wb");
                    if (!in || !out) return 2;
                    const int B = {{B}}, T = {{T}}, K = {{K}}, N = B * T * K;
                    float *x = rdf(in, N), *dy = rdf(in, N), *dx = rdf(in, N);
                    float* y = (float*)malloc(4 * (size_t)N); for (int i = 0; i < N; i++) y[i] = __builtin_nanf("");
                    float* dxw = (float*)malloc(4 * (size_t)N); for (int i = 0; i < N; i++) dxw[i] = __builtin_nanf("");
                    bert_launch(2, 32, [&] { rt_transpose_forward(y, x, B, T, K); });
                    bert_launch(2, 32, [&] { rt_transpose_backward(dx, dy, B, T, K, 1); });
                    bert_launch(3, 32, [&] { rt_transpose_backward(dxw, dy, B, T, K, 0); });
                    fwrite(y, 4, N, out); fwrite(dx, 4, N, out); fwrite(dxw, 4, N, out);
                    return 0;
                }
                """);
            var build = Run(Clang, ["-x", "c++", "-std=c++17", "-O1", .. HostChecks, "-w", "main.cpp", "-lm", "-o", "run"], dir);
            Assert.True(build.Code == 0, $"clang-14 could not compile the transpose kernels for the host:\n{Tail(build.Output)}");
            using (var f = new BinaryWriter(File.Create(Path.Combine(dir, "in.bin"))))
                foreach (var a in new[] { x, dy, dx0 }) foreach (float v in a) f.Write(v);
            var run = Run(Path.Combine(dir, "run"), new[] { Path.Combine(dir, "in.bin"), Path.Combine(dir, "out.bin") }, dir);
            Assert.True(run.Code == 0, $"the host build of the transpose kernels failed (exit {run.Code}):\n{Tail(run.Output)}");
            using var r = new BinaryReader(File.OpenRead(Path.Combine(dir, "out.bin")));
            float[] Read(int n) => Enumerable.Range(0, n).Select(_ => r.ReadSingle()).ToArray();
            float[] yGot = Read(N);
            Assert.Equal(y.Select(v => (float)v), yGot);
            Assert.Null(Compare("transpose dx (added)", Read(N), dx, true));
            Assert.Equal(dxWritten.Select(v => (float)v), Read(N));
            Assert.Equal(r.BaseStream.Length, r.BaseStream.Position);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>LayerNorm (warp per row; weight and bias gradients by chunked column sums) and softmax cross-entropy (block per
    /// row, ignored labels, the count of counted rows), launched as CudaExec launches them, against the CPU kernels in double,
    /// the gradients added into prefilled buffers. N = 70 rows are 5 chunks of 16, the last partial (in the one-pass backward
    /// two of its four warps have no row), C = 300 columns cross a 256-thread block and are not a multiple of 32; V = 1500
    /// classes exceed a block of 1024 threads, and (the other case) V = 7 leave most of its threads without a class (the
    /// online softmax's empty running sums). The forward's bf16 copy of y is y rounded, bit for bit. <paramref name="registers"/>:
    /// the LayerNorm kernels that hold a row in registers four at a time (300 columns: 75 groups, the third lane pass
    /// partial), and the one-pass backward (dx the two-pass kernel's bits; the weight and bias sums against the CPU).</summary>
    [ClangTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void LayerNormAndCrossEntropyKernels_RunOnTheHost_MatchTheCpuKernels(bool registers)
    {
        RequireClang();
        const int N = 70, C = 300, Rows = 5, RowChunk = CudaKernels.RowChunk;
        int V = registers ? 1500 : 7;
        const float Eps = 1e-12f;
        var rng = new Random(41);
        float[] Random(int n, double scale, double shift = 0) => Enumerable.Range(0, n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale + shift)).ToArray();
        double[] D(float[] x) => x.Select(v => (double)v).ToArray();
        float[] x = Random(N * C, 2, 0.5), w = Random(C, 1, 1), b = Random(C, 0.5), dy = Random(N * C, 1);
        float[] dx0 = Random(N * C, 0.1), dw0 = Random(C, 0.1), db0 = Random(C, 0.1);
        float[] logits = Random(Rows * V, 4), dlogits0 = Random(Rows * V, 0.01);
        int[] labels = { 3, -100, V - 1, 0, Math.Min(777, V - 2) };
        const float DLoss = 1.3f;
        Assert.True((N + RowChunk - 1) / RowChunk >= 2, "the test wants two row chunks");

        var y = new double[N * C]; var mean = new double[N]; var rstd = new double[N];
        LayerNorm.Forward<double>(y, mean, rstd, D(x), D(w), D(b), N, C, Eps);
        double[] dx = D(dx0), dw = D(dw0), db = D(db0);
        LayerNorm.Backward<double>(dx, dw, db, D(dy), D(x), D(w), mean, rstd, N, C);
        // The first gradient into dx is written, not added (the schedule does not clear it): NaN there must not survive.
        double[] dxWritten = Enumerable.Repeat(double.NaN, N * C).ToArray();
        LayerNorm.Backward<double>(dxWritten, new double[C], new double[C], D(dy), D(x), D(w), mean, rstd, N, C, accumulate: false);
        var loss = new double[1]; var probs = new double[Rows * V];
        CrossEntropy.Forward<double>(loss, probs, D(logits), labels, Rows, V);
        double[] dlogits = D(dlogits0);
        CrossEntropy.Backward<double>(dlogits, new double[] { DLoss }, probs, labels, Rows, V);
        double[] dlogitsWritten = Enumerable.Repeat(double.NaN, Rows * V).ToArray();
        CrossEntropy.Backward<double>(dlogitsWritten, new double[] { DLoss }, probs, labels, Rows, V, accumulate: false);

        var dir = Directory.CreateTempSubdirectory("bert-cuda-lnce-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "main.cpp"), ThreadedHostPrelude + RuntimeSections(0, "LayerNorm", "softmax cross-entropy") + "\n" + $$"""
                static float* rdf(FILE* f, int n) { float* p = (float*)aligned_alloc(16, 4 * (size_t)n + 16); if (fread(p, 4, n, f) != (size_t)n) exit(3); return p; }
                static float* rdcopy(const float* src, int n) { float* p = (float*)aligned_alloc(16, 4 * (size_t)n + 16); memcpy(p, src, 4 * (size_t)n); return p; }
                int main(int argc, char** argv)
                {
                    FILE* in = fopen(argv[1], "rb"); FILE* out = fopen(argv[2], "wb");
                    if (!in || !out) return 2;
                    const int N = {{N}}, C = {{C}}, R = {{Rows}}, V = {{V}}, chunk = {{RowChunk}}, block = 256;
                    float *x = rdf(in, N * C), *w = rdf(in, C), *b = rdf(in, C), *dy = rdf(in, N * C), *dx = rdf(in, N * C), *dw = rdf(in, C), *db = rdf(in, C);
                    float* dx0 = rdcopy(dx, N * C); float* dw0 = rdcopy(dw, C); float* db0 = rdcopy(db, C);   // the prefilled gradients, before the kernels add
                    float *logits = rdf(in, R * V), *dlogits = rdf(in, R * V);
                    int labels[R]; if (fread(labels, 4, R, in) != R) return 3;
                    float* y = (float*)calloc(N * C, 4); float* mean = (float*)calloc(N, 4); float* rstd = (float*)calloc(N, 4);
                    int chunks = (N + chunk - 1) / chunk;
                    float* part = (float*)calloc(2 * chunks * C, 4);
                    unsigned rowBlocks = (N + block / 32 - 1) / (block / 32);
                    unsigned short* y16 = (unsigned short*)aligned_alloc(16, 2 * (size_t)N * C + 16); for (int i = 0; i < N * C; i++) y16[i] = 0xFFFF;
                    float* y2 = (float*)calloc(N * C, 4); float* mean2 = (float*)calloc(N, 4); float* rstd2 = (float*)calloc(N, 4);
                    bert_launch(rowBlocks, block, [&] { rt_layernorm_forward{{(registers ? "4" : "")}}(y, mean, rstd, x, w, b, N, C, {{Eps.ToString("R", CultureInfo.InvariantCulture)}}f, 0); });
                    bert_launch(rowBlocks, block, [&] { rt_layernorm_forward{{(registers ? "4" : "")}}(y2, mean2, rstd2, x, w, b, N, C, {{Eps.ToString("R", CultureInfo.InvariantCulture)}}f, y16); });
                    bert_launch(rowBlocks, block, [&] { rt_layernorm_backward_x{{(registers ? "4" : "")}}(dx, dy, x, w, mean, rstd, N, C, 1); });
                    float* dxw = (float*)malloc(4 * (size_t)N * C); for (int i = 0; i < N * C; i++) dxw[i] = __builtin_nanf("");
                    bert_launch(rowBlocks, block, [&] { rt_layernorm_backward_x{{(registers ? "4" : "")}}(dxw, dy, x, w, mean, rstd, N, C, 0); });
                    bert_launch2((C + block - 1) / block, chunks, block, [&] { rt_layernorm_backward_wb_partial(part, dy, x, mean, rstd, N, C, chunk); });
                    bert_launch((C + 31) / 32, 1024, [&] { rt_layernorm_backward_wb_finish(dw, db, part, C, chunks); });
                    float* probs = (float*)calloc(R * V, 4); float* rowLoss = (float*)calloc(R, 4); float loss = 0.0f, count[2] = { 0.0f, 0.0f }, dloss = {{DLoss.ToString("R", CultureInfo.InvariantCulture)}}f;
                    bert_launch(R, 1024, [&] { rt_ce_forward_rows(probs, rowLoss, logits, labels, R, V); });
                    bert_launch(1, 1024, [&] { rt_ce_forward_total(&loss, 0, rowLoss, labels, R); });
                    bert_launch(1, 1024, [&] { rt_ce_count(count, labels, R); });
                    bert_launch2((V + block - 1) / block, R, block, [&] { rt_ce_backward(dlogits, &dloss, count, probs, labels, R, V, 1); });
                    float* dlw = (float*)malloc(4 * (size_t)R * V); for (int i = 0; i < R * V; i++) dlw[i] = __builtin_nanf("");
                    bert_launch2((V + block - 1) / block, R, block, [&] { rt_ce_backward(dlw, &dloss, count, probs, labels, R, V, 0); });
                    fwrite(y, 4, N * C, out); fwrite(mean, 4, N, out); fwrite(rstd, 4, N, out);
                    fwrite(dx, 4, N * C, out); fwrite(dw, 4, C, out); fwrite(db, 4, C, out);
                    fwrite(&loss, 4, 1, out); fwrite(probs, 4, R * V, out); fwrite(dlogits, 4, R * V, out);
                    fwrite(dxw, 4, N * C, out); fwrite(dlw, 4, R * V, out);
                    fwrite(y2, 4, N * C, out); fwrite(y16, 2, N * C, out);
                    if ({{(registers ? 1 : 0)}})
                    {
                        // the one-pass backward (rt_layernorm_backward4): dx added and written over NaN, then the sums
                        float* dxf = (float*)aligned_alloc(16, 4 * (size_t)N * C + 16); memcpy(dxf, dx0, 4 * (size_t)N * C);
                        float* dxfw = (float*)aligned_alloc(16, 4 * (size_t)N * C + 16); for (int i = 0; i < N * C; i++) dxfw[i] = __builtin_nanf("");
                        float* dwf = rdcopy(dw0, C); float* dbf = rdcopy(db0, C);
                        float* partf = (float*)aligned_alloc(16, 4 * (size_t)2 * chunks * C + 16);
                        bert_launch(chunks, 128, [&] { rt_layernorm_backward4(dxf, partf, dy, x, w, mean, rstd, N, C, chunk, 1); });
                        bert_launch(chunks, 128, [&] { rt_layernorm_backward4(dxfw, partf, dy, x, w, mean, rstd, N, C, chunk, 0); });
                        bert_launch((C + 31) / 32, 1024, [&] { rt_layernorm_backward_wb_finish(dwf, dbf, partf, C, chunks); });
                        fwrite(dxf, 4, N * C, out); fwrite(dxfw, 4, N * C, out); fwrite(dwf, 4, C, out); fwrite(dbf, 4, C, out);
                    }
                    return 0;
                }
                """);
            var build = Run(Clang, ["-x", "c++", "-std=c++17", "-O1", .. HostChecks, "-w", "main.cpp", "-lm", "-o", "run"], dir);
            Assert.True(build.Code == 0, $"clang-14 could not compile the LayerNorm and cross-entropy kernels for the host:\n{Tail(build.Output)}");
            using (var f = new BinaryWriter(File.Create(Path.Combine(dir, "in.bin"))))
            {
                foreach (var a in new[] { x, w, b, dy, dx0, dw0, db0, logits, dlogits0 }) foreach (float v in a) f.Write(v);
                foreach (int l in labels) f.Write(l);
            }
            var run = Run(Path.Combine(dir, "run"), new[] { Path.Combine(dir, "in.bin"), Path.Combine(dir, "out.bin") }, dir);
            Assert.True(run.Code == 0, $"the host build of the LayerNorm and cross-entropy kernels failed (exit {run.Code}):\n{Tail(run.Output)}");
            using var r = new BinaryReader(File.OpenRead(Path.Combine(dir, "out.bin")));
            float[] Read(int n) => Enumerable.Range(0, n).Select(_ => r.ReadSingle()).ToArray();
            float[] yGot = Read(N * C);
            Assert.Null(Compare("LayerNorm y", yGot, y, false));
            Assert.Null(Compare("LayerNorm mean", Read(N), mean, false));
            Assert.Null(Compare("LayerNorm rstd", Read(N), rstd, false));
            float[] dxGot = Read(N * C);
            Assert.Null(Compare("LayerNorm dx (added)", dxGot, dx, false));
            Assert.Null(Compare("LayerNorm dweight (added)", Read(C), dw, false));
            Assert.Null(Compare("LayerNorm dbias (added)", Read(C), db, false));
            Assert.Null(Compare("cross-entropy loss", Read(1), loss, false));
            Assert.Null(Compare("cross-entropy probabilities", Read(Rows * V), probs, false));
            Assert.Null(Compare("cross-entropy dlogits (added)", Read(Rows * V), dlogits, false));
            float[] dxWrittenGot = Read(N * C);
            Assert.Null(Compare("LayerNorm dx (written over NaN)", dxWrittenGot, dxWritten, false));
            Assert.Null(Compare("cross-entropy dlogits (written over NaN; zeros on the ignored row)", Read(Rows * V), dlogitsWritten, false));
            // With a bf16 output (CudaExec.Out16): the same y, bit for bit, and y rounded to bf16 bit for bit.
            float[] y2 = Read(N * C);
            Assert.True(y2.AsSpan().SequenceEqual(yGot), "LayerNorm y differs when the kernel also writes its bf16 copy");
            for (int i = 0; i < N * C; i++)
            {
                ushort got = r.ReadUInt16(), want = Bf16Reference(y2[i]);
                Assert.True(got == want, $"LayerNorm's bf16 copy of y[{i}] = {y2[i]:R} is 0x{got:X4}, expected 0x{want:X4}");
            }
            if (registers)
            {
                // The one-pass backward: dx the bits of the two-pass one's (added, and written over NaN), the weight and bias
                // gradients from its partial sums against the CPU.
                Assert.True(Read(N * C).AsSpan().SequenceEqual(dxGot), "rt_layernorm_backward4's dx (added) differs from rt_layernorm_backward_x4's");
                Assert.True(Read(N * C).AsSpan().SequenceEqual(dxWrittenGot), "rt_layernorm_backward4's dx (written over NaN) differs from rt_layernorm_backward_x4's");
                Assert.Null(Compare("LayerNorm dweight (added; one pass)", Read(C), dw, false));
                Assert.Null(Compare("LayerNorm dbias (added; one pass)", Read(C), db, false));
            }
            Assert.Equal(r.BaseStream.Length, r.BaseStream.Position);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>The four-at-a-time kernels against the scalar ones they replace, bit for bit: the head-major split of a qkv
    /// block (stride 3C, offset C) and the accumulating merge back; bf16 rounding of values that include NaN, infinities,
    /// ties and overflow; the gather backward over distinct rows (one thread per element) against the row loop; and the fixed-tree column sums of the partials (rt_colsum_finish, 70 chunks by 45 columns, more
    /// chunks than a block's 32 rows and columns not a multiple of 32) against the sums in double.</summary>
    [ClangFact]
    public void FourAtATimeKernelsAndColumnSums_RunOnTheHost_MatchTheScalarKernels()
    {
        RequireClang();
        const int B = 2, T = 5, C = 16, H = 2, Stride = 3 * C, Offset = C, N4 = 250, Nb = 45, Chunks = 70;
        var rng = new Random(53);
        float[] Random(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        float[] qkv = Random(B * T * Stride), heads = Random(B * T * C), merged = Random(B * T * Stride);
        float[] values = Random(4 * N4).Select((v, i) => i % 5 == 0 ? v * 1e30f : v).ToArray();
        values[0] = float.NaN; values[1] = float.PositiveInfinity; values[2] = float.NegativeInfinity; values[3] = 3.4e38f;
        values[4] = BitConverter.Int32BitsToSingle(0x3f808000); values[5] = BitConverter.Int32BitsToSingle(0x3f818000); // ties: to even
        float[] part = Random(Chunks * Nb), dx0 = Random(Nb);
        const int G = 7, Gc = 37, Gn = 12;
        int[] gatherRows = { 5, 0, -1, 11, 3, 12, 8 };                       // distinct; -1 and 12 (= N) are skipped
        float[] gdy = Random(G * Gc), gdx = Random(Gn * Gc);
        var want = new double[Nb];
        for (int j = 0; j < Nb; j++) { want[j] = dx0[j]; for (int k = 0; k < Chunks; k++) want[j] += part[k * Nb + j]; }

        var dir = Directory.CreateTempSubdirectory("bert-cuda-vec4-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "main.cpp"), ThreadedHostPrelude + RuntimeSections(2 * 32 * 129, "LayerNorm", "attention", "gathers", "bf16 operands") + "\n" + $$"""
                static float* rdf(FILE* f, int n) { float* p = (float*)aligned_alloc(16, 4 * (size_t)n + 16); if (fread(p, 4, n, f) != (size_t)n) exit(3); return p; }
                int main(int argc, char** argv)
                {
                    FILE* in = fopen(argv[1], "rb"); FILE* out = fopen(argv[2], "wb");
                    if (!in || !out) return 2;
                    const int B = {{B}}, T = {{T}}, C = {{C}}, H = {{H}}, S = {{Stride}}, O = {{Offset}}, N4 = {{N4}}, nb = {{Nb}}, chunks = {{Chunks}};
                    float *qkv = rdf(in, B * T * S), *heads = rdf(in, B * T * C), *merged = rdf(in, B * T * S), *values = rdf(in, 4 * N4), *part = rdf(in, chunks * nb), *dx = rdf(in, nb);
                    float *split1 = (float*)aligned_alloc(16, 4 * B * T * C), *split4 = (float*)aligned_alloc(16, 4 * B * T * C);
                    float *m1 = (float*)aligned_alloc(16, 4 * B * T * S), *m4 = (float*)aligned_alloc(16, 4 * B * T * S);
                    memcpy(m1, merged, 4 * B * T * S); memcpy(m4, merged, 4 * B * T * S);
                    bert_launch(1, 64, [&] { rt_heads_split(split1, qkv, B, T, C, H, S, O); });
                    bert_launch(1, 8, [&] { rt_heads_split4(split4, qkv, B * T, T, C, H, S, O); });
                    bert_launch(1, 64, [&] { rt_heads_merge(m1, heads, B, T, C, H, S, O, 1); });
                    bert_launch(1, 8, [&] { rt_heads_merge4(m4, heads, B * T, T, C, H, S, O, 1); });
                    unsigned short *h1 = (unsigned short*)aligned_alloc(16, 8 * N4), *h4 = (unsigned short*)aligned_alloc(16, 8 * N4);
                    bert_launch(2, 256, [&] { rt_to_bf16(h1, values, 1, 4 * N4, 4 * N4); });
                    bert_launch(2, 32, [&] { rt_to_bf16_4((rt_h4*)h4, (const rt_f4*)values, N4); });
                    bert_launch((nb + 31) / 32, 1024, [&] { rt_colsum_finish(dx, part, nb, chunks); });
                    const int G = {{G}}, Gc = {{Gc}}, Gn = {{Gn}};
                    float *gdy = rdf(in, G * Gc), *gdx1 = rdf(in, Gn * Gc); int grows[G]; if (fread(grows, 4, G, in) != G) return 3;
                    float* gdx2 = (float*)malloc(4 * Gn * Gc); memcpy(gdx2, gdx1, 4 * Gn * Gc);
                    bert_launch(1, 64, [&] { rt_gather_backward(gdx1, gdy, grows, G, Gc, Gn); });
                    bert_launch(3, 32, [&] { rt_gather_backward_distinct(gdx2, gdy, grows, G, Gc, Gn); });
                    fwrite(split1, 4, B * T * C, out); fwrite(split4, 4, B * T * C, out);
                    fwrite(m1, 4, B * T * S, out); fwrite(m4, 4, B * T * S, out);
                    fwrite(h1, 2, 4 * N4, out); fwrite(h4, 2, 4 * N4, out); fwrite(dx, 4, nb, out);
                    fwrite(gdx1, 4, Gn * Gc, out); fwrite(gdx2, 4, Gn * Gc, out);
                    return 0;
                }
                """);
            var build = Run(Clang, ["-x", "c++", "-std=c++17", "-O1", .. HostChecks, "-w", "main.cpp", "-lm", "-o", "run"], dir);
            Assert.True(build.Code == 0, $"clang-14 could not compile the four-at-a-time kernels for the host:\n{Tail(build.Output)}");
            using (var f = new BinaryWriter(File.Create(Path.Combine(dir, "in.bin"))))
            {
                foreach (var a in new[] { qkv, heads, merged, values, part, dx0, gdy, gdx }) foreach (float v in a) f.Write(v);
                foreach (int g in gatherRows) f.Write(g);
            }
            var run = Run(Path.Combine(dir, "run"), new[] { Path.Combine(dir, "in.bin"), Path.Combine(dir, "out.bin") }, dir);
            Assert.True(run.Code == 0, $"the host build of the four-at-a-time kernels failed (exit {run.Code}):\n{Tail(run.Output)}");
            using var r = new BinaryReader(File.OpenRead(Path.Combine(dir, "out.bin")));
            int[] Bits(int n) => Enumerable.Range(0, n).Select(_ => r.ReadInt32()).ToArray();
            ushort[] Halves(int n) => Enumerable.Range(0, n).Select(_ => r.ReadUInt16()).ToArray();
            int[] split1 = Bits(B * T * C), split4 = Bits(B * T * C);
            Assert.Equal(split1, split4);
            Assert.Equal(BitConverter.SingleToInt32Bits(qkv[(1 * T + 3) * Stride + Offset + 1 * (C / H) + 2]), split1[((1 * H + 1) * T + 3) * (C / H) + 2]);
            int[] m1 = Bits(B * T * Stride), m4 = Bits(B * T * Stride);
            Assert.Equal(m1, m4);
            Assert.Equal(merged[(1 * T + 3) * Stride + Offset + 1 * (C / H) + 2] + heads[((1 * H + 1) * T + 3) * (C / H) + 2],
                BitConverter.Int32BitsToSingle(m1[(1 * T + 3) * Stride + Offset + 1 * (C / H) + 2]));
            Assert.Equal(BitConverter.SingleToInt32Bits(merged[0]), m1[0]);   // outside the merged columns: untouched
            ushort[] h1 = Halves(4 * N4), h4 = Halves(4 * N4);
            Assert.Equal(h1, h4);
            Assert.Equal((ushort)0x7fc0, h4[0]); Assert.Equal((ushort)0x7f80, h4[1]); Assert.Equal((ushort)0xff80, h4[2]);
            Assert.Equal((ushort)0x3f80, h4[4]); Assert.Equal((ushort)0x3f82, h4[5]);
            float[] dx = Enumerable.Range(0, Nb).Select(_ => r.ReadSingle()).ToArray();
            Assert.Null(Compare("column sums of the partials (added)", dx, want, false));
            int[] g1 = Bits(Gn * Gc), g2 = Bits(Gn * Gc);
            Assert.Equal(g1, g2);                                             // distinct rows: the same bits as the row loop
            Assert.Equal(gdx[5 * Gc + 4] + gdy[0 * Gc + 4], BitConverter.Int32BitsToSingle(g2[5 * Gc + 4]));
            Assert.Equal(BitConverter.SingleToInt32Bits(gdx[1 * Gc]), g2[1 * Gc]);   // row 1 is not gathered: untouched
            Assert.Equal(r.BaseStream.Length, r.BaseStream.Position);
        }
        finally { Directory.Delete(dir, true); }
    }
}
