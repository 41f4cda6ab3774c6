using System.Globalization;
using Bert.Runtime.Cuda;
using Bert.Runtime.Kernels;
using Xunit;

namespace Bert.Tests.Generator;

/// <summary>The tensor-core flash attention kernels (BERT_CUDA_ATTENTION=flash), compiled for the host with the emulation's
/// prelude — mma.sync as a warp collective over the PTX ISA's fragment layout, a block's threads as coroutines — and run as
/// CudaExec launches them, against the CPU attention in double.</summary>
public partial class CudaSourceTests
{
    /// <summary>Runs rt_flash_forward, rt_flash_backward_q and rt_flash_backward_kv for head size D as CudaExec launches
    /// them (grid B·H × ⌈T/64⌉, 128 threads; the backward reads the forward's output and keep bits), the output, its bf16
    /// copy, the log-sum-exp and the keep bits poisoned first, dqkv prefilled (added into, or, the header's seventh int 0,
    /// written over); the header's eighth int 1 flips every keep bit between the forward and the backward (a mutation: the
    /// backward must follow the bits); writes out, lse, delta, dqkv, the output's bf16 copy and the keep bits.</summary>
    const string FlashDriver = """
        static void* rdall(FILE* f, size_t bytes) { void* p = malloc(bytes + 8); if (fread(p, 1, bytes, f) != bytes) exit(3); return p; }
        int main(int argc, char** argv)
        {
            FILE* in = fopen(argv[1], "rb"); FILE* out = fopen(argv[2], "wb");
            if (!in || !out) return 2;
            int h[8]; float f[2]; unsigned long long u[2];
            if (fread(h, 4, 8, in) != 8 || fread(f, 4, 2, in) != 2 || fread(u, 8, 2, in) != 2) return 3;
            int B = h[0], T = h[1], C = h[2], H = h[3], drop = h[4], D = C / H, misalign = h[5], acc = h[6], flip = h[7];
            float p = f[0], scale = f[1];
            size_t btc = (size_t)B * T * C, bht = (size_t)B * H * T;
            float* qkv = (float*)rdall(in, 12 * btc);
            if (misalign)   // one float off 16-byte alignment: the tiles load a float at a time
            {
                float* moved = (float*)malloc(12 * btc + 16) + 1;
                memcpy(moved, qkv, 12 * btc);
                qkv = moved;
            }
            int* mask = (int*)rdall(in, 4 * (size_t)B * T);
            float* dy = (float*)rdall(in, 4 * btc);
            float* dqkv = (float*)rdall(in, 12 * btc);
            float* o = (float*)malloc(4 * btc); float* lse = (float*)malloc(4 * bht); float* delta = (float*)malloc(4 * bht);
            float nan = __int_as_float(0x7fc00000);
            for (size_t i = 0; i < btc; i++) o[i] = nan;
            for (size_t i = 0; i < bht; i++) { lse[i] = nan; delta[i] = nan; }
            unsigned gx = (unsigned)(B * H), gy = (unsigned)((T + 63) / 64);
            if (D != DHEAD) return 4;   // DHEAD: the head size this program was built for
            unsigned short* o16 = (unsigned short*)malloc(2 * btc + 8);   // the output's bf16 copy (CudaExec.Out16), poisoned too
            for (size_t i = 0; i < btc; i++) o16[i] = 0xFFFF;
            size_t words = bht * (size_t)((T + 31) / 32);   // the keep mask's bits (CudaExec.FlashStatisticsFloats)
            unsigned int* bits = (unsigned int*)malloc(4 * words + 8);
            for (size_t i = 0; i < words; i++) bits[i] = 0xA5A5A5A5u;
            bert_launch2(gx, gy, 128, [&] { rt_flash_forward_dDHEAD(o, lse, qkv, mask, T, C, H, scale, p, &u[0], u[1], drop, o16, bits); });
            if (flip) for (size_t i = 0; i < words; i++) bits[i] = ~bits[i];
            bert_launch2(gx, gy, 128, [&] { rt_flash_backward_q_dDHEAD(dqkv, delta, dy, o, qkv, lse, mask, T, C, H, scale, p, &u[0], u[1], drop, acc, bits); });
            bert_launch2(gx, gy, 128, [&] { rt_flash_backward_kv_dDHEAD(dqkv, delta, dy, o, qkv, lse, mask, T, C, H, scale, p, &u[0], u[1], drop, acc, bits); });
            fwrite(o, 4, btc, out); fwrite(lse, 4, bht, out); fwrite(delta, 4, bht, out); fwrite(dqkv, 4, 3 * btc, out); fwrite(o16, 2, btc, out);
            fwrite(bits, 4, words, out);
            return 0;
        }
        """;

    /// <summary>Head sizes 8, 16, 24, 32, 48, 64 and 128 (8 and 24 padded to the mma's k of 16); T within one tile, across two forward tiles with a partial last one (70), and
    /// across several backward tiles; padded keys in the second sequence; with and without dropout; once with the
    /// projections one float off 16-byte alignment (the tiles then load a float at a time). bf16 operands give
    /// about 3e-3 relative error; the limits (1e-2 of each part's norm, 6e-2 of its RMS per element) leave room for that
    /// and none for a misplaced fragment, a wrong row's statistics or another dropout mask. With dropout the forward's keep
    /// bits must be the CPU's mask bit for bit (none set past T), and the backward must follow them: with every bit flipped
    /// between the two (<paramref name="flipBits"/>) the gradients are far off.</summary>
    [ClangTheory]
    [InlineData(2, 37, 64, 2, true, false)]
    [InlineData(1, 70, 128, 2, false, false)]
    [InlineData(2, 24, 128, 1, true, true)]
    [InlineData(1, 45, 96, 3, true, false)]
    [InlineData(2, 33, 32, 2, true, false)]
    [InlineData(1, 40, 96, 2, false, false)]
    [InlineData(2, 29, 16, 2, true, false)]
    [InlineData(1, 50, 72, 3, true, false)]
    [InlineData(2, 37, 64, 2, true, false, true)]
    [InlineData(2, 24, 128, 1, true, true, true)]
    [InlineData(2, 70, 64, 2, true, false, false, true)]
    [InlineData(1, 68, 64, 2, true, false)]   // T % 4 = 0 past one key tile: the dropout words shared by lane pairs, a partial second tile
    public void FlashAttentionKernels_OnTheEmulatedTensorCores_MatchTheCpuAttention(int B, int T, int C, int H, bool drop, bool misaligned, bool written = false, bool flipBits = false)
    {
        RequireClang();
        const float P = 0.1f;
        const ulong Seed = 0x5EED, Site = 7;
        var rng = new Random(B * 1000 + T + C + (drop ? 1 : 0));
        float[] Random(long n, double scale) => Enumerable.Range(0, (int)n).Select(_ => (float)((rng.NextDouble() * 2 - 1) * scale)).ToArray();
        // Scores of a few units, as in a trained model, so the softmax is not flat.
        float[] qkv = Random(3L * B * T * C, 1.5), dy = Random((long)B * T * C, 1.0), dqkv0 = Random(3L * B * T * C, 0.1);
        // written: the first gradient into dqkv, which the schedule did not clear (NaN here), is written, not added.
        if (written) Array.Fill(dqkv0, float.NaN);
        int[] mask = Enumerable.Range(0, B * T).Select(i => i % T < T - 5 * (i / T) ? 1 : 0).ToArray();
        float scale = 1f / MathF.Sqrt(C / H);

        int D = C / H, bht = B * H * T;
        var outCpu = new double[B * T * C];
        var probsCpu = new double[bht * T];
        double[] Double(float[] x) => x.Select(v => (double)v).ToArray();
        Attention.Forward<double>(outCpu, probsCpu, Double(qkv), mask, B, T, C, H, P, Seed, Site, training: drop);
        double[] dqkvCpu = Double(dqkv0);
        Attention.Backward<double>(dqkvCpu, Double(dy), Double(qkv), probsCpu, mask, B, T, C, H, P, Seed, Site, training: drop, accumulate: !written);
        // The log-sum-exp of each row's scaled, masked scores, and Δ = Σ_k P·dP, in double.
        var lseCpu = new double[bht];
        var deltaCpu = new double[bht];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int q = 0; q < T; q++)
                {
                    var s = new double[T];
                    for (int k = 0; k < T; k++)
                    {
                        double dot = 0;
                        for (int d = 0; d < D; d++) dot += (double)qkv[(b * T + q) * 3 * C + h * D + d] * qkv[(b * T + k) * 3 * C + C + h * D + d];
                        s[k] = (double)scale * dot + (mask[b * T + k] == 0 ? -10000.0 : 0.0);
                    }
                    double mx = s.Max(), sum = s.Sum(x => Math.Exp(x - mx));
                    int row = (b * H + h) * T + q;
                    lseCpu[row] = mx + Math.Log(sum);
                    double delta = 0;
                    for (int k = 0; k < T; k++)
                    {
                        double keep = !drop ? 1.0 : Philox.Keep(Seed, Site, (ulong)((long)row * T + k), P) ? 1.0 / (1.0 - P) : 0.0;
                        double dpd = 0;
                        for (int d = 0; d < D; d++) dpd += (double)dy[(b * T + q) * C + h * D + d] * qkv[(b * T + k) * 3 * C + 2 * C + h * D + d];
                        delta += probsCpu[(long)row * T + k] * dpd * keep;
                    }
                    deltaCpu[row] = delta;
                }

        var dir = Directory.CreateTempSubdirectory("bert-cuda-flash-").FullName;
        try
        {
            string program = ThreadedHostPrelude + RuntimeSections(1, "bf16 operands", "attention, flash") + "\n"
                + CudaKernels.FlashKernels(D) + FlashDriver.Replace("DHEAD", D.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);
            using var r = RunAttentionProgram(dir, program, "flash attention", [B, T, C, H, drop ? 1 : 0, misaligned ? 1 : 0, written ? 0 : 1, flipBits ? 1 : 0],
                P, scale, Seed, Site, qkv, mask, dy, dqkv0);
            float[] Read(int n) => Enumerable.Range(0, n).Select(_ => r.ReadSingle()).ToArray();
            float[] o = Read(B * T * C), lse = Read(bht), delta = Read(bht), dqkv = Read(3 * B * T * C);
            ushort[] o16 = Enumerable.Range(0, B * T * C).Select(_ => r.ReadUInt16()).ToArray();
            int W = (T + 31) / 32;
            uint[] bits = Enumerable.Range(0, bht * W).Select(_ => r.ReadUInt32()).ToArray();
            Assert.Equal(r.BaseStream.Length, r.BaseStream.Position);
            if (!drop)   // no dropout: the forward writes no bits (and the backward reads none)
                Assert.All(bits, word => Assert.Equal(0xA5A5A5A5u, word));
            if (drop)
                for (int row = 0; row < bht; row++)
                    for (int w = 0; w < W; w++)
                    {
                        uint want = 0;
                        for (int k = 32 * w; k < Math.Min(T, 32 * w + 32); k++)
                            if (Philox.Keep(Seed, Site, (ulong)((long)row * T + k), P)) want |= 1u << (k - 32 * w);
                        uint got = flipBits ? ~bits[row * W + w] : bits[row * W + w];
                        Assert.True(got == want, $"keep bits of row {row}, word {w}: 0x{got:X8}, the CPU's mask 0x{want:X8}");
                    }
            // the bf16 copy is the output rounded, bit for bit
            int bad = Enumerable.Range(0, o.Length).FirstOrDefault(i => o16[i] != Bf16Reference(o[i]), -1);
            Assert.True(bad < 0, bad < 0 ? "" : $"the flash output's bf16 copy at {bad} is 0x{o16[bad]:X4}, {o[bad]:R} rounded is 0x{Bf16Reference(o[bad]):X4}");

            AssertNear("out", o, outCpu, 1e-2);
            AssertNear("log-sum-exp", lse, lseCpu, 1e-3);
            AssertNear("delta", delta, deltaCpu, 2e-2);
            // dQ, dK, dV apart (each its own kernel's work), the prefilled values subtracted so that only the added part counts.
            for (int part = 0; part < 3; part++)
            {
                var got = new List<float>(); var want = new List<double>();
                for (int bt = 0; bt < B * T; bt++)
                    for (int c = 0; c < C; c++)
                    {
                        int at = bt * 3 * C + part * C + c;
                        got.Add(written ? dqkv[at] : dqkv[at] - dqkv0[at]);
                        want.Add(written ? dqkvCpu[at] : dqkvCpu[at] - dqkv0[at]);
                    }
                if (flipBits)
                {
                    // every kept element dropped and every dropped one kept: dK (through dS) and dV far off the CPU's
                    double num = 0, den = 0;
                    for (int i = 0; i < got.Count; i++) { num += (got[i] - want[i]) * (got[i] - want[i]); den += want[i] * want[i]; }
                    Assert.True(Math.Sqrt(num / den) > 0.3, $"d{"QKV"[part]} with the keep bits flipped is within {Math.Sqrt(num / den):E2} of the CPU: the backward did not read the bits");
                }
                else AssertNear("d" + "QKV"[part], got.ToArray(), want.ToArray(), 1.5e-2);
            }
        }
        finally { Directory.Delete(dir, true); }

        static void AssertNear(string what, float[] got, double[] want, double limit)
        {
            Assert.Equal(want.Length, got.Length);
            double num = 0, den = 0, worst = 0;
            for (int i = 0; i < got.Length; i++)
            {
                Assert.False(float.IsNaN(got[i]), $"{what}[{i}] is NaN: an element no thread wrote");
                double d = got[i] - want[i];
                num += d * d; den += want[i] * want[i];
                worst = Math.Max(worst, Math.Abs(d));
            }
            double rel = Math.Sqrt(num / den), rms = Math.Sqrt(den / got.Length);
            Assert.True(rel <= limit, string.Create(CultureInfo.InvariantCulture, $"{what}: relative error {rel:E2} over the limit {limit:E0}"));
            Assert.True(worst <= 6 * limit * rms, string.Create(CultureInfo.InvariantCulture, $"{what}: worst element off by {worst:E2}, {worst / rms:E2} of the RMS {rms:E2}"));
        }
    }
}
