using Bert.Cli;
using Bert.Models;
using Bert.Runtime;
using Bert.Runtime.Cuda;
using Xunit;

namespace Bert.Tests.Cuda;

/// <summary>The CUDA backend's pieces that run anywhere (the generated schedules, the self-test's inputs, the CPU model's
/// inputs-only binding), and on a machine with a GPU the self-test itself: every kernel through whole models against the CPU.</summary>
[Collection("Cuda environment")]
public sealed class CudaModelTests
{
    static IEnumerable<Catalog.Entry> SmallModels => Catalog.All.Where(e => e.Info.ParameterCount < 20_000_000);

    [Fact]
    public void EveryCatalogModel_HasACudaSchedule_WhoseSourceIsItsCudaSource()
    {
        foreach (var e in Catalog.All)
        {
            ICudaProgram p = e.CreateCuda();
            Assert.Contains($"// {e.Info.Name}: fused element-wise kernels", p.Source);
            // Every fused kernel is there, and the chunked backward for those whose broadcast inputs share one size.
            foreach (var k in e.Info.Kernels)
            {
                string name = k.Name.ToLowerInvariant();
                Assert.Contains($"void {name}_forward(", p.Source);
                Assert.Contains($"void {name}_backward(", p.Source);
                var bs = k.Inputs.Where(x => x != k.Output).Distinct().ToList();
                Assert.Equal(bs.Count == 1, p.Source.Contains($"void {name}_backward_rows("));
            }
        }
    }

    /// <summary>The flash attention's memory plan: each probabilities buffer of BERT-Base (head size 64) gets B·H·T floats
    /// (each query row's log-sum-exp) and B·H·T·⌈T/32⌉ words of dropout keep bits instead of B·H·T·T floats, without and
    /// with reuse; nothing else moves or shrinks, and the reusing plan still keeps every buffer inside the arena. At B=64,
    /// T=128 that is 553 MiB less, and the kernels' scratch shrinks from attention's copies to the other ops' partial sums.</summary>
    [Fact]
    public void FlashLayout_GivesTheProbabilitiesBuffers_RowStatisticsOnly()
    {
        var info = Catalog.Get("base", "pretraining").Info;
        const int B = 64, T = 128, G = 1229;
        var flash = info.Ops.Where(o => o.Kind == OpKind.Attention).ToArray();
        Assert.All(flash, o => Assert.True(CudaExec.TakesFlash(o)));
        var stats = flash.SelectMany(o => o.Saved.Select(id => (id, (long)B * o.Heads * T * (1 + T / 32)))).ToDictionary(x => x.id, x => x.Item2);
        Assert.Equal(stats, CudaModel.FlashStatistics(info, B, T));
        Assert.Equal(12, stats.Count);
        foreach (bool reuse in new[] { false, true })
        {
            var plan = info.Layout(B, T, G, training: true, reuse);
            var small = info.Layout(B, T, G, training: true, reuse, stats);
            foreach (var b in info.Buffers)
            {
                long want = stats.TryGetValue(b.Id, out long n) ? n : plan.Lengths[b.Id];
                Assert.Equal(want, small.Lengths[b.Id]);
                if (small.Offsets[b.Id] >= 0) Assert.True(small.Offsets[b.Id] + small.Lengths[b.Id] <= small.Total, b.Name);
            }
            if (!reuse)
                Assert.Equal(12L * B * 12 * T * (T - 1 - T / 32), plan.Total - small.Total);   // every buffer its own room
            else
                Assert.True(plan.Total - small.Total >= 12L * B * 12 * T * (T - 1 - T / 32) / 2, $"{plan.Total} → {small.Total}");
        }
        // The kernels' scratch: attention's head-major copies and T×T blocks (7·B·T·C + 2·B·H·T² floats) are not needed,
        // only Δ per query row; what is left is the largest of the other ops' partial sums.
        long scratch = CudaModel.ScratchFloats(info, B, T, G), flashScratch = CudaModel.ScratchFloats(info, B, T, G, flash: true);
        Assert.Equal(CudaExec.AttentionScratch(B, T, 768, 12), scratch);
        Assert.True(flashScratch >= (long)B * 12 * T && flashScratch < scratch / 10, $"{scratch} → {flashScratch}");
    }

    /// <summary>The embedding backward groups an input's rows by id when the input is set (CudaModel.SetInput), which needs
    /// every embedding to read a model input.</summary>
    [Fact]
    public void EveryEmbedding_ReadsAnIntegerInput()
    {
        foreach (var e in Catalog.All)
            foreach (var op in e.Info.Ops.Where(o => o.Kind == OpKind.Embed))
                Assert.True(e.Info.Inputs.Any(i => i.Index == op.IntInput && i.Kind == InputKind.Tokens),
                    $"{e.Info.Name}: embedding op {op.Id} reads integer input {op.IntInput}, which is not a token input");
    }

    /// <summary>GroupById against a plain reference (rows with a non-negative id, ordered by id then row; one run per distinct
    /// id), on random ids with repeats, negatives and an empty input; ids past the limit decline.</summary>
    [Fact]
    public void GroupById_OrdersRowsById_ThenByRow_WithOneRunPerId()
    {
        var rng = new Random(21);
        int[] counts = [];
        foreach (int n in new[] { 0, 1, 7, 64, 300 })
            for (int rep = 0; rep < 5; rep++)
            {
                int[] ids = Enumerable.Range(0, n).Select(_ => rng.Next(10) == 0 ? -1 - rng.Next(3) : rng.Next(rep == 0 ? 3 : 200)).ToArray();
                var packed = new int[3 * n + 2];
                int runs = CudaExec.GroupById(ids, packed, ref counts);
                var want = Enumerable.Range(0, n).Where(r => ids[r] >= 0).OrderBy(r => ids[r]).ThenBy(r => r).ToArray();
                var distinct = want.Select(r => ids[r]).Distinct().ToArray();
                Assert.Equal(distinct.Length, runs);
                Assert.Equal(want, packed[..want.Length]);
                for (int k = 0; k < runs; k++)
                {
                    int lo = packed[n + k], hi = packed[n + k + 1], id = packed[2 * n + 1 + k];
                    Assert.Equal(distinct[k], id);
                    Assert.True(hi > lo);
                    Assert.All(want[lo..hi], r => Assert.Equal(id, ids[r]));
                }
                Assert.Equal(want.Length, packed[n + runs]);
            }
        Assert.Equal(-1, CudaExec.GroupById(new[] { 3, CudaExec.MaxGroupedId + 1 }, new int[8], ref counts));
        Assert.Throws<ArgumentException>(() => CudaExec.GroupById(new[] { 1, 2 }, new int[7], ref counts));
    }

    [Fact]
    public void SelfTestInputs_AreValidForEveryModel_AndTheCpuRunsThem()
    {
        var rng = new Random(4);
        foreach (var e in SmallModels)
        {
            var info = e.Info;
            int B = 3, T = Math.Min(info.MaxLen, 12), G = info.Inputs.Any(i => i.Kind == InputKind.Rows) ? 5 : 0;
            var inputs = GpuSelfTest.RandomInputs(info, B, T, G, rng);
            var rows = inputs.Where(kv => info.Input(kv.Key).Kind == InputKind.Rows).SelectMany(kv => kv.Value).ToList();
            Assert.Equal(rows.Count, rows.Distinct().Count());
            Assert.All(rows, r => Assert.InRange(r, 0, B * T - 1));
            var mask = inputs.Where(kv => info.Input(kv.Key).Kind == InputKind.Mask).SelectMany(kv => kv.Value).ToList();
            Assert.Contains(0, mask);                   // some padding is exercised
            var m = e.Create();
            m.InitParameters(1);
            m.Bind(B, T, G, training: true);
            foreach (var (k, v) in inputs) m.SetInput(k, v);
            float loss = m.Forward(training: true, seed: 3)[0];
            Assert.True(float.IsFinite(loss), $"{info.Name}: loss {loss}");
        }
    }

    /// <summary>A cross-entropy over positions (question answering's CrossEntropy(Transpose(logits), span)) has T classes, a
    /// run-time length: the self-test's labels are drawn below T, and the CPU runs them.</summary>
    [Fact]
    public void SelfTestInputs_DrawPositionLabelsBelowTheSequenceLength()
    {
        var info = Bert.Tests.Models.QaSpanHead.Info;
        const int B = 4, T = 7;
        var rng = new Random(9);
        var span = GpuSelfTest.RandomInputs(info, B, T, 0, rng)["span"];
        Assert.Equal(B * 2, span.Length);
        Assert.All(span, l => Assert.True(l == -100 || l is >= 0 and < T, $"label {l} outside [0, {T})"));
        Assert.Contains(span, l => l >= 2);   // not the logits' 2 columns
        var m = Bert.Tests.Models.QaSpanHead.Create<float>();
        m.InitParameters(1);
        m.Bind(B, T, training: true);
        foreach (var (k, v) in GpuSelfTest.RandomInputs(info, B, T, 0, new Random(9))) m.SetInput(k, v);
        Assert.True(float.IsFinite(m.Forward(training: true, seed: 3)[0]));
    }

    [Fact]
    public void InputsOnlyBinding_KeepsTheInputs_AllocatesNoArena_AndRefusesForward()
    {
        var e = Catalog.Get("nano", "classifier", 3);
        var m = e.Create();
        m.InitParameters(2);
        var inputs = GpuSelfTest.RandomInputs(e.Info, 2, 8, 0, new Random(1));
        m.InputsOnly = true;
        m.Bind(2, 8, 0, training: true);
        foreach (var (k, v) in inputs) m.SetInput(k, v);
        Assert.Equal(0, m.ArenaBytes);
        Assert.True(m.Gradients.IsEmpty);
        foreach (var (k, v) in inputs) Assert.Equal(v, m.IntInput(k).ToArray());
        var ex = Assert.Throws<InvalidOperationException>(() => m.Forward());
        Assert.Contains("InputsOnly", ex.Message);

        // Cleared and bound again, the same inputs run as on a model that never had the flag.
        m.InputsOnly = false;
        m.Bind(2, 8, 0, training: true);
        foreach (var (k, v) in inputs) m.SetInput(k, v);
        float a = m.Forward(training: false)[0];
        var fresh = e.Create();
        fresh.InitParameters(2);
        fresh.Bind(2, 8, 0, training: true);
        foreach (var (k, v) in inputs) fresh.SetInput(k, v);
        Assert.Equal(fresh.Forward(training: false)[0], a);
    }

    [Fact]
    public void AttentionScratch_HoldsTheHeadMajorCopiesAndTheScoreGradients()
    {
        // 7 (B,T,C) tensors (Q, K, V, dO, dQ, dK, dV) and 2 (B,H,T,T) ones (dS, dropped).
        Assert.Equal(7L * 2 * 5 * 8 + 2L * 2 * 4 * 5 * 5, CudaExec.AttentionScratch(2, 5, 8, 4));
    }

    [SkippableGpuFact]
    public void Gpu_SelfTest_EveryCheckPasses_OnTheNanoModels()
    {
        _ = Gpu.Device;
        var o = new StringWriter();
        int code = GpuSelfTest.Run(new GpuSelfTest.Settings(["BertNanoPreTraining", "BertNanoClassifier", "BertNanoPreLnPreTraining"], [8], 32, 2, false, null), o);
        Assert.True(code == 0, o.ToString());
        Assert.DoesNotContain("FAIL", o.ToString());
    }
}
