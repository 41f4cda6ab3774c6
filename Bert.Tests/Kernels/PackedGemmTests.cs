using Bert.Models;
using Bert.Runtime;
using Bert.Runtime.Kernels;
using Xunit;

namespace Bert.Tests.Kernels;

/// <summary>Weights packed once (ManagedGemm.Pack / RunPacked, WeightPacks, Model.PackWeights): bit for bit the unpacked
/// products, and never stale.</summary>
public class PackedGemmTests
{
    static float[] Random(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => (float)(r.NextDouble() * 2 - 1)).ToArray();
    }

    [Theory]
    [InlineData(1, 1, 1, 1, false)]
    [InlineData(7, 5, 3, 1, false)]
    [InlineData(128, 1024, 256, 2, false)]   // columns split between threads (M < N)
    [InlineData(300, 64, 1000, 2, false)]    // rows split, K over three blocks
    [InlineData(130, 770, 400, 2, true)]     // op(A) transposed, N not a multiple of the sliver width
    [InlineData(33, 2000, 17, 2, false)]     // N over several column blocks
    public void RunPacked_GivesTheBitsOfTheUnpackedProduct(int M, int N, int K, int threads, bool transA)
    {
        float[] a = Random(M * K, 1), w = Random(N * K, 2), c0 = Random(M * N, 3);
        int lda = transA ? M : K;
        var want = (float[])c0.Clone();
        ManagedGemm.Run(transA, true, M, N, K, 0.75f, a, lda, w, K, 0.5f, want, N, threads);
        var packed = ManagedGemm.Pack<float>(true, w, K, K, N);
        var got = (float[])c0.Clone();
        ManagedGemm.RunPacked(transA, M, 0.75f, a, lda, packed, 0.5f, got, N, threads);
        Assert.Equal(want, got);
        // Packed from op(B) stored K×N (not transposed): the same.
        var wt = new float[K * N];
        for (int n = 0; n < N; n++) for (int k = 0; k < K; k++) wt[k * N + n] = w[n * K + k];
        var got2 = (float[])c0.Clone();
        ManagedGemm.RunPacked(transA, M, 0.75f, a, lda, ManagedGemm.Pack<float>(false, wt, N, K, N), 0.5f, got2, N, threads);
        Assert.Equal(want, got2);
    }

    [Fact]
    public void Pack_RefusesAMatrixTooSmallForItsShape()
    {
        var e = Assert.Throws<ArgumentException>(() => ManagedGemm.Pack<float>(true, new float[10], 4, 4, 3));
        Assert.Contains("needs 12", e.Message);
    }

    static (Bert.Runtime.Model<float> Model, float[] Out) Forward(Bert.Runtime.Model<float> m, int B, int T)
    {
        var rng = new Random(9);
        m.Bind(B, T, 0, training: false);
        m.SetInput("ids", Enumerable.Range(0, B * T).Select(_ => rng.Next(1000, 30000)).ToArray());
        m.SetInput("types", new int[B * T]);
        m.SetInput("mask", Enumerable.Repeat(1, B * T).ToArray());
        m.SetInput("labels", new int[B]);
        return (m, m.Forward(training: false).ToArray());
    }

    [Fact]
    public void InferenceWithPackedWeights_IsBitForBitTheUnpackedForward_AndFollowsNewWeights()
    {
        if (Gemm.Backend != GemmBackend.Managed) return;   // OpenBLAS has no packed path: both runs are the same calls
        var packed = BertClassifier.Create<float>();
        packed.InitParameters(4);
        var plain = BertClassifier.Create<float>();
        plain.PackWeights = false;
        plain.InitParameters(4);

        var (_, a) = Forward(packed, 2, 16);
        var (_, b) = Forward(plain, 2, 16);
        Assert.Equal(b, a);
        Assert.NotNull(packed.Packs);
        Assert.Null(plain.Packs);
        int matrices = packed.Packs!.Count;
        Assert.True(matrices > 0);
        Forward(packed, 2, 16);
        Forward(packed, 1, 9);                           // another shape: the same packed weights
        Assert.Equal(matrices, packed.Packs.Packings);   // packed once each

        // New weights through Parameters: the next forward packs again and sees them.
        foreach (var m in new[] { packed, plain })
        {
            var p = m.Parameters;
            for (int i = 0; i < p.Length; i += 7) p[i] += 0.003f;
        }
        var (_, a2) = Forward(packed, 2, 16);
        var (_, b2) = Forward(plain, 2, 16);
        Assert.NotEqual(a, a2);
        Assert.Equal(b2, a2);
        Assert.Equal(2 * matrices, packed.Packs.Packings);

        // A training binding keeps no packed copies.
        packed.Bind(2, 16, 0, training: true);
        Assert.Null(packed.Packs);
    }
}
