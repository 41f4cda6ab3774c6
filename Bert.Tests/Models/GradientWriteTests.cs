using System.Reflection;
using Bert.Runtime;
using Xunit;

namespace Bert.Tests.Models;

/// <summary>The backward schedule clears a gradient buffer only when its first contribution is added (+=); the first op to
/// reach a gradient that it writes whole (a product's operand with β = 0, LayerNorm's input, attention's projections,
/// cross-entropy's logits, an element-wise kernel's full-size input) writes it (=) and nothing clears it. These tests check that no element is left to chance: the
/// gradient buffers filled with NaN before the backward give the same bits as over zeros.</summary>
public class GradientWriteTests
{
    /// <summary>Every compiled model (Bert.Models and these tests) small enough to run twice in double within a second.</summary>
    public static IEnumerable<object[]> SmallModels() => Generator.CudaSourceTests.ModelTypes()
        .Where(t => Generator.CudaSourceTests.Info(t).ParameterCount <= 12_000_000)
        .OrderBy(t => t.FullName, StringComparer.Ordinal)
        .Select(t => new object[] { t.FullName! });

    static Model<double> Create(Type t) =>
        (Model<double>)t.GetMethod("Create", BindingFlags.Public | BindingFlags.Static)!.MakeGenericMethod(typeof(double)).Invoke(null, null)!;

    [Theory]
    [MemberData(nameof(SmallModels))]
    public void Backward_OverNaNGradientBuffers_GivesTheBitsOfTheBackwardOverZeros(string typeName)
    {
        var type = Generator.CudaSourceTests.ModelType(typeName);
        var info = Generator.CudaSourceTests.Info(type);
        var m = Create(type);
        m.InitParameters(11, std: 0.3);
        int B = 2, T = Math.Min(info.MaxLen, 7), G = info.Inputs.Any(i => i.Kind == InputKind.Rows) ? 3 : 0;
        m.ReuseMemory = false;
        m.Bind(B, T, G, training: true);
        var rng = new Random(5);
        foreach (var (name, values) in Bert.Cli.GpuSelfTest.RandomInputs(info, B, T, G, rng))
            if (info.Input(name).Kind != InputKind.Tensor) m.SetInput(name, values);
        foreach (var input in info.Inputs.Where(i => i.Kind == InputKind.Tensor))
            m.SetInput(input.Name, Enumerable.Range(0, (int)ModelInfo.ShapeSize(input.Shape, B, T, G)).Select(_ => rng.NextDouble() * 2 - 1).ToArray());
        double[]? dOut = null;

        (double[] Grads, double[][] Buffers) Step(bool poison)
        {
            m.ZeroGradients();
            var y = m.Forward(training: true, seed: 99);
            dOut ??= y.Length == 1 ? null : Enumerable.Range(0, y.Length).Select(_ => rng.NextDouble() - 0.5).ToArray();
            if (poison) m.FillGradientBuffers(double.NaN);
            m.Backward(dOut);
            return (m.Gradients.ToArray(), info.Buffers.Where(b => b.Role == BufferRole.Gradient).Select(b => m.Buffer(b.Id).ToArray()).ToArray());
        }

        var (gradsZero, buffersZero) = Step(poison: false);
        var (gradsNaN, buffersNaN) = Step(poison: true);
        int nan = Array.FindIndex(gradsNaN, double.IsNaN);
        Assert.True(nan < 0, $"{info.Name}: parameter gradient {nan} is NaN after a backward over NaN-filled gradient buffers: a gradient was written by halves.");
        Assert.True(gradsZero.AsSpan().SequenceEqual(gradsNaN), $"{info.Name}: the parameter gradients differ between the backward over zeros and over NaN.");
        var gradientBuffers = info.Buffers.Where(b => b.Role == BufferRole.Gradient).ToArray();
        for (int k = 0; k < gradientBuffers.Length; k++)
        {
            int at = Array.FindIndex(buffersNaN[k], double.IsNaN);
            Assert.True(at < 0, $"{info.Name}: gradient buffer {gradientBuffers[k].Name} (id {gradientBuffers[k].Id}) keeps NaN at element {at} of {buffersNaN[k].Length}: its first write does not cover it.");
            Assert.True(buffersZero[k].AsSpan().SequenceEqual(buffersNaN[k]), $"{info.Name}: gradient buffer {gradientBuffers[k].Name} differs between the backward over zeros and over NaN.");
        }
    }

    /// <summary>The schedules of BERT really take the shortcut: most of the fused kernels write a gradient (the residual
    /// adds, the bias and GELU, the dropouts), so that their buffers are neither cleared nor read back.</summary>
    [Fact]
    public void BertSchedules_WriteTheirFirstGradients_InsteadOfClearingThem()
    {
        var info = Bert.Models.BertMiniPreTraining.Info;
        int writing = info.Kernels.Count(k => k.Writes.Any(w => w));
        Assert.True(writing * 2 > info.Kernels.Count, $"only {writing} of {info.Kernels.Count} fused kernels of {info.Name} write a gradient; the schedule clears and adds into the rest.");
        // Each layer's four products get their output gradient in bf16 from the fused kernel after them (CudaExec.Grad16),
        // and the kernels the host tests run for each family include such ones (their bf16 copy is checked bit for bit).
        int layers = (int)info.Constants["Layers"];
        Assert.True(info.Kernels.Count(k => k.Grad16Input >= 0) >= 4 * layers, $"{info.Name}: {info.Kernels.Count(k => k.Grad16Input >= 0)} kernels write a product's output gradient in bf16");
        var families = OpCoverageTests.Kernels().Select(o => ((string)o[0]).Split('.'))
            .Select(id => OpCoverageTests.AllModels().First(m => m.Name == id[0]).Kernels.First(k => k.Name == id[1]));
        Assert.Contains(families, k => k.Grad16Input >= 0);
        // Each layer's bias + GELU writes its output in bf16 too, for the product that reads it (CudaExec.Out16), and a
        // family kernel the host tests run does (its copy checked bit for bit).
        Assert.True(info.Kernels.Count(k => k.Out16) >= layers, $"{info.Name}: {info.Kernels.Count(k => k.Out16)} kernels write their output in bf16 for a product");
        Assert.Contains(families, k => k.Out16);
    }

    /// <summary>An identity adjoint (y = … + x along additions) shares dy's buffer instead of copying dy into x's own: each
    /// BERT layer's two residual connections and its query, key and value bias, and the embeddings' sum. A kernel whose bf16
    /// copy of a product's output gradient is then dy's (the QKV bias) is among the kernels the host tests run, which check
    /// that copy against dy rounded.</summary>
    [Fact]
    public void IdentityAdjoints_ShareTheOutputGradientsBuffer()
    {
        var info = Bert.Models.BertMiniPreTraining.Info;
        int layers = (int)info.Constants["Layers"];
        int aliased = info.Kernels.Sum(k => k.Aliases.Count(a => a));
        Assert.True(aliased >= 3 * layers + 2, $"{info.Name}: {aliased} kernel inputs share their output's gradient buffer");
        // (That the shared buffers hold the right sums is what the NaN-filled runs above, the gradient properties and the
        // self-test check.)
        var families = OpCoverageTests.Kernels().Select(o => ((string)o[0]).Split('.'))
            .Select(id => OpCoverageTests.AllModels().First(m => m.Name == id[0]).Kernels.First(k => k.Name == id[1]));
        Assert.Contains(families, k => k.Grad16Input >= 0 && k.AliasesGradient(k.Grad16Input));
    }

    /// <summary>Each BERT layer's four products (query-key-value, attention output, the two feed-forward ones) are read only by
    /// the fused kernel after them, so in bf16 they write their outputs in bf16 and those kernels read them so (Plan.Bf16Stored);
    /// a product whose output something else reads (the output, a structured op) is not among them. Kernels of the families the
    /// host tests run take bf16 inputs, which those tests feed (CudaSourceTests).</summary>
    [Fact]
    public void ProductsReadOnlyByFusedKernels_MayWriteBf16()
    {
        var info = Bert.Models.BertMiniPreTraining.Info;
        int layers = (int)info.Constants["Layers"];
        int taking = info.Kernels.Sum(k => k.Bf16Inputs.Count(h => h));
        Assert.True(taking >= 4 * layers, $"{info.Name}: {taking} fused kernel inputs may come in bf16 from their product");
        // the bias + GELU of every layer reads its product's output so, forward and backward
        Assert.True(info.Kernels.Count(k => k.Expression.Contains("erf") && k.Bf16Inputs.Any(h => h)) >= layers);
        // only products' outputs: a residual input (a LayerNorm's output) never
        var source = Bert.Models.BertMiniPreTraining.CudaSource;
        foreach (var k in info.Kernels)
            for (int i = 0; i < k.Inputs.Length; i++)
                Assert.Equal(k.TakesBf16(i), source.Contains($"{k.Name.ToLowerInvariant()}_forward(") && KernelSignature(source, k.Name.ToLowerInvariant() + "_forward").Contains($"h{i}"));
        var families = OpCoverageTests.Kernels().Select(o => ((string)o[0]).Split('.'))
            .Select(id => OpCoverageTests.AllModels().First(m => m.Name == id[0]).Kernels.First(k => k.Name == id[1]));
        Assert.Contains(families, k => k.Bf16Inputs.Any(h => h) && HasRows(k));
        Assert.Contains(families, k => k.Bf16Inputs.Any(h => h) && k.Dropout);
    }

    static bool HasRows(FusedKernelInfo k) => k.Inputs.Where(x => x != k.Output).Distinct().Count() == 1;

    static string KernelSignature(string source, string name)
    {
        int at = source.IndexOf($"void {name}(", StringComparison.Ordinal);
        return at < 0 ? "" : source[at..source.IndexOf(')', at)];
    }

    [Fact]
    public void FillGradientBuffers_RefusesABindingThatReusesMemory()
    {
        var m = Bert.Models.BertNanoClassifier.Create<double>();
        m.Bind(1, 4, training: true);
        var e = Assert.Throws<InvalidOperationException>(() => m.FillGradientBuffers(double.NaN));
        Assert.Contains("ReuseMemory = false", e.Message);
    }
}
