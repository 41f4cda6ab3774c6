using System.Reflection;
using Bert.Runtime;
using Bert.Tests.Support;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bert.Tests.Models;

/// <summary>Gradient properties enumerated from what the generator produced, so that no op or fused kernel
/// escapes a check: every fused kernel of every model in Bert.Models and in these tests, and every op kind.</summary>
public class OpCoverageTests
{
    /// <summary>Every compiled model: the types with a generated static ModelInfo Info.</summary>
    public static IReadOnlyList<ModelInfo> AllModels() =>
        new[] { typeof(Bert.Models.BertPreTraining).Assembly, typeof(OpCoverageTests).Assembly }
            .SelectMany(a => a.GetTypes())
            .Select(t => t.GetProperty("Info", BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly))
            .Where(p => p?.PropertyType == typeof(ModelInfo))
            .Select(p => (ModelInfo)p!.GetValue(null)!)
            .ToList();

    /// <summary>Distinct kernels: the same expression with the same broadcasting pattern is the same code
    /// whatever the sizes, so the smallest instance stands for the family.</summary>
    public static IEnumerable<object[]> Kernels() => AllModels()
        .SelectMany(m => m.Kernels.Select(k => (m, k)))
        .GroupBy(x => x.k.Expression + "|" + string.Join(",", x.k.Inputs.Select(i => i == x.k.Output ? "full" : i.PT > 0 ? "rows" : "vector")))
        .Select(g => g.OrderBy(x => x.k.Output.C).First())
        .Select(x => new object[] { x.m.Name + "." + x.k.Name });

    static FusedKernelInfo Find(string id)
    {
        var (model, kernel) = (id.Split('.')[0], id.Split('.')[1]);
        return AllModels().First(m => m.Name == model).Kernels.First(k => k.Name == kernel);
    }

    [Fact]
    public void TheModelsCompileToTheKernelsTheTestsEnumerate()
    {
        var models = AllModels();
        Assert.Contains(models, m => m.Name == "BertPreTraining");
        Assert.Contains(models, m => m.Name == "PointwiseZoo");
        Assert.True(Kernels().Count() >= 10, "expected at least ten distinct fused kernels");
    }

    /// <summary>For each fused kernel: random B, T, G and values; backward against central differences of
    /// Σ y·w in double, with and without dropout.</summary>
    [Theory]
    [MemberData(nameof(Kernels))]
    public void FusedKernel_BackwardMatchesCentralDifferences(string id)
    {
        var k = Find(id);
        var gen = from b in Gen.Choose(1, 2) from t in Gen.Choose(1, 3) from g in Gen.Choose(1, 3) from seed in Gen.Choose(0, 1 << 30) from train in Gen.Elements(false, true)
                  select (b, t, g, seed, train);
        var prop = Prop.ForAll(gen.ToArbitrary(), c =>
        {
            var rng = new Random(c.seed);
            var xs = k.Inputs.Select(s => GradCheck.Uniform(rng, (int)s.Eval(c.b, c.t, c.g), -2, 2)).ToArray();
            int n = (int)k.Output.Eval(c.b, c.t, c.g);
            var w = GradCheck.Uniform(rng, n);
            var y = new double[n];
            double Loss() { k.Forward(y, xs, (ulong)c.seed, c.train); return GradCheck.WeightedSum(y, w); }
            Loss();
            // Prefilled: the backward must add into a gradient it does not write, and write over (NaN) one it writes.
            var dxs = xs.Select((x, i) => k.WritesGradient(i) ? Enumerable.Repeat(double.NaN, x.Length).ToArray() : GradCheck.Uniform(rng, x.Length)).ToArray();
            var before = dxs.Select(d => (double[])d.Clone()).ToArray();
            k.Backward(w, dxs, xs, (ulong)c.seed, c.train);
            for (int i = 0; i < xs.Length; i++)
            {
                var added = k.WritesGradient(i) ? dxs[i] : dxs[i].Select((v, j) => v - before[i][j]).ToArray();
                if (k.WritesGradient(i) && Array.FindIndex(added, double.IsNaN) is var left and >= 0)
                    return false.Label($"{id} input {i}: the backward writes this gradient but left element {left} of {added.Length} unwritten (NaN).");
                var err = GradCheck.Check($"{id} ({k.Expression}) input {i}, B={c.b} T={c.t} G={c.g} training={c.train}", Loss, xs[i], added, rng, 40);
                if (err is not null) return false.Label(err);
            }
            return true.Label("ok");
        });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(12).WithQuietOnSuccess(true), prop);
    }

    /// <summary>Where each op kind's gradient property lives. A new kind without an entry fails this test.</summary>
    static readonly Dictionary<OpKind, string> Properties = new()
    {
        [OpKind.MatMul] = nameof(MatMulAndLinear_BackwardMatchesCentralDifferences),
        [OpKind.Linear] = nameof(MatMulAndLinear_BackwardMatchesCentralDifferences),
        [OpKind.Embed] = "StructuredOpGradientTests.Embedding_BackwardMatchesFiniteDifferences_FloatMatchesDouble",
        [OpKind.LayerNorm] = "StructuredOpGradientTests.LayerNorm_BackwardMatchesFiniteDifferences_FloatMatchesDouble",
        [OpKind.Attention] = "StructuredOpGradientTests.Attention_Dropout_BackwardMatchesFiniteDifferences_FloatMatchesDouble",
        [OpKind.Gather] = "StructuredOpGradientTests.GatherRows_RepeatedRows_BackwardMatchesFiniteDifferences_FloatMatchesDouble",
        [OpKind.First] = "StructuredOpGradientTests.FirstToken_BackwardMatchesFiniteDifferences_FloatMatchesDouble",
        [OpKind.CrossEntropy] = "StructuredOpGradientTests.CrossEntropy_IgnoredLabels_BackwardMatchesFiniteDifferences_FloatMatchesDouble",
        [OpKind.Pointwise] = nameof(FusedKernel_BackwardMatchesCentralDifferences),
        [OpKind.Transpose] = "StructuredOpGradientTests.Transpose_BackwardMatchesFiniteDifferences_FloatMatchesDouble",
    };

    [Fact]
    public void EveryOpKind_InEveryModel_HasAGradientProperty()
    {
        var used = AllModels().SelectMany(m => m.Ops.Select(o => o.Kind)).ToHashSet();
        foreach (var kind in Enum.GetValues<OpKind>().Concat(used))
        {
            Assert.True(Properties.TryGetValue(kind, out var test), $"op kind {kind} has no gradient property");
            var (cls, method) = test!.Contains('.') ? (test.Split('.')[0], test.Split('.')[1]) : (nameof(OpCoverageTests), test);
            var type = typeof(OpCoverageTests).Assembly.GetTypes().Single(t => t.Name == cls);
            Assert.NotNull(type.GetMethod(method));
        }
    }

    /// <summary>Sums whose sides share an input (SharedResidual): the input and parameter gradients against central
    /// differences, so that a gradient buffer shared by two sides of a sum that other ops add into shows.</summary>
    [Property(MaxTest = 10)]
    public Property SharedSides_BackwardMatchesCentralDifferences() =>
        TensorInputGradients(SharedResidual.Create<double>, "SharedResidual", SharedResidual.C, SharedResidual.C);

    /// <summary>Transposes and element-wise kernels over values whose last axis is T (TransposeZoo): the parameter and input
    /// gradients against central differences, the transpose's backward both writing and adding into its input's gradient.</summary>
    [Property(MaxTest = 10)]
    public Property Transposes_BackwardMatchesCentralDifferences() =>
        TensorInputGradients(TransposeZoo.Create<double>, "TransposeZoo", TransposeZoo.C, TransposeZoo.K);

    [Property(MaxTest = 15)]
    public Property MatMulAndLinear_BackwardMatchesCentralDifferences() => TensorInputGradients(MatrixOps.Create<double>, "MatrixOps", 5, 3);

    /// <summary>A model of one tensor input "x" (<paramref name="inWidth"/> values a position) and a tensor output
    /// (<paramref name="outWidth"/> a position), at random B, T and parameters: the parameter and input gradients of Σ y·w
    /// against central differences.</summary>
    static Property TensorInputGradients(Func<Model<double>> create, string name, int inWidth, int outWidth) => Prop.ForAll(
        (from b in Gen.Choose(1, 3) from t in Gen.Choose(1, 6) from s in Gen.Choose(0, 1 << 30) select (b, t, s)).ToArbitrary(),
        c =>
        {
            var m = create();
            m.InitParameters((ulong)c.s, std: 0.5);
            m.Bind(c.b, c.t);
            var rng = new Random(c.s);
            var x = GradCheck.Uniform(rng, c.b * c.t * inWidth);
            var w = GradCheck.Uniform(rng, c.b * c.t * outWidth);
            double Loss() { m.SetInput("x", x); return GradCheck.WeightedSum(m.Forward(), w); }
            Loss();
            m.ZeroGradients();
            m.Backward(w);
            var p = m.Parameters.ToArray();
            var dp = m.Gradients.ToArray();
            var dx = m.InputGradient("x").ToArray();
            var err = GradCheck.Check($"{name} parameters", () => { p.CopyTo(m.Parameters); return Loss(); }, p, dp, rng)
                   ?? GradCheck.Check($"{name} input", Loss, x, dx, rng);
            return (err is null).Label(err ?? "");
        });
}

/// <summary>The float path of every fused kernel against the double path, forward and backward, on rows long enough to
/// use the vectors, at each width the kernels have: 16 lanes (AVX-512), 8 (AVX2) and the scalar loop, whatever this
/// machine has (Vector512 without AVX-512 runs emulated, slowly but exactly), so that a width no CI machine picks is
/// still checked.</summary>
public class FusedKernelFloatTests
{
    public static IEnumerable<object[]> Kernels() => OpCoverageTests.AllModels()
        .SelectMany(m => m.Kernels.Select(k => (m, k)))
        .GroupBy(x => x.k.Expression + "|" + string.Join(",", x.k.Inputs.Select(i => i == x.k.Output ? "full" : i.PT > 0 ? "rows" : "vector")))
        .Select(g => g.Where(x => x.k.Output.C >= 16).OrderBy(x => x.k.Output.C).FirstOrDefault())
        .Where(x => x.k is not null)
        .Select(x => new object[] { x.m.Name + "." + x.k.Name });

    [Theory]
    [MemberData(nameof(Kernels))]
    public void FusedKernel_FloatPathMatchesDouble(string id)
    {
        var k = OpCoverageTests.AllModels().First(m => m.Name == id.Split('.')[0]).Kernels.First(x => x.Name == id.Split('.')[1]);
        foreach (var (b, t, g) in new[] { (2, 3, 5), (1, 7, 17) })
            foreach (bool train in new[] { false, true })
            {
                var rng = new Random(b * 100 + t);
                var xs = k.Inputs.Select(s => GradCheck.Uniform(rng, (int)s.Eval(b, t, g), -2, 2)).ToArray();
                int n = (int)k.Output.Eval(b, t, g);
                var dy = GradCheck.Uniform(rng, n);
                var y = new double[n];
                k.Forward(y, xs, 7, train);
                var dxs = xs.Select(x => new double[x.Length]).ToArray();
                k.Backward(dy, dxs, xs, 7, train);

                var xf = xs.Select(x => x.Select(v => (float)v).ToArray()).ToArray();
                foreach (int lanes in new[] { 16, 8, 0 })
                {
                    var yf = new float[n];
                    k.ForwardF(yf, xf, 7, train, lanes);
                    var dxf = xs.Select(x => new float[x.Length]).ToArray();
                    k.BackwardF(dy.Select(v => (float)v).ToArray(), dxf, xf, 7, train, lanes);
                    var err = GradCheck.AllClose($"{id} ({k.Expression}) forward, {lanes} lanes, training={train}", yf, y);
                    for (int i = 0; err is null && i < xs.Length; i++)
                        err = GradCheck.AllClose($"{id} ({k.Expression}) d input {i}, {lanes} lanes, training={train}", dxf[i], dxs[i]);
                    Assert.True(err is null, err);
                }
            }
    }
}
