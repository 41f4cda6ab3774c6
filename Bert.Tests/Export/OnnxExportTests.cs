using Bert.Dsl;
using Bert.Export;
using Bert.Models;
using Bert.Runtime;
using Bert.Tests.Support;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Xunit;
using Xunit.Abstractions;

namespace Bert.Tests.Export;

/// <summary>The ONNX export run in ONNX Runtime against our own forward pass: the same logits for padded batches
/// of two shapes (so batch and sequence are dynamic), for BERT-Tiny pre-training, a BERT classifier and the ALBERT
/// classifier (factorized embeddings, one layer's weights shared by all).</summary>
public class OnnxExportTests(ITestOutputHelper log)
{
    /// <summary>Every parameter random (biases and LayerNorm too, so each is exercised), around the declared init.</summary>
    internal static Model<float> RandomModel(Func<Model<float>> create, int seed)
    {
        var model = create();
        var rng = new Random(seed);
        foreach (var p in model.Info.Parameters)
        {
            var span = model.Parameter(p.Name);
            for (int i = 0; i < span.Length; i++)
                span[i] = (p.Init == Init.Ones ? 1f : 0f) + (float)(rng.NextDouble() * 0.2 - 0.1);
        }
        return model;
    }

    /// <summary>A batch with padding: row b has length lengths[b] (mask 1, tokens random, type 1 on its second
    /// half), then pad id 0 with mask 0.</summary>
    internal sealed record Batch(int B, int T, int[] Ids, int[] Types, int[] Mask)
    {
        public static Batch Make(int B, int T, int vocab, int seed)
        {
            var rng = new Random(seed);
            var (ids, types, mask) = (new int[B * T], new int[B * T], new int[B * T]);
            for (int b = 0; b < B; b++)
            {
                int len = b == 0 ? T : rng.Next(1, T);     // the first row full, the others padded
                for (int t = 0; t < len; t++)
                {
                    ids[b * T + t] = rng.Next(1, vocab);
                    types[b * T + t] = t >= len / 2 ? 1 : 0;
                    mask[b * T + t] = 1;
                }
            }
            return new Batch(B, T, ids, types, mask);
        }
    }

    /// <summary>Our forward at inference: every CrossEntropy's logits (the masked-LM head over every position).</summary>
    internal static List<float[]> OurLogits(Model<float> model, Batch x)
    {
        model.ReuseMemory = false; // keep every buffer, so each CrossEntropy's logits are still there after forward
        int rows = x.B * x.T;
        model.Bind(x.B, x.T, rows, training: false);
        foreach (var i in model.Info.Inputs)
        {
            switch (i.Kind)
            {
                case InputKind.Tokens: model.SetInput(i.Name, i.Name == "types" ? x.Types : x.Ids); break;
                case InputKind.Mask: model.SetInput(i.Name, x.Mask); break;
                case InputKind.Rows: model.SetInput(i.Name, Enumerable.Range(0, rows).ToArray()); break;
                case InputKind.Labels:
                    model.SetInput(i.Name, new int[i.Shape.Aggregate(1, (a, d) => a * (d == -1 ? x.B : d == -3 ? rows : d))]);
                    break;
            }
        }
        model.Forward();
        int n = model.Info.Ops.Count(o => o.Kind == OpKind.CrossEntropy);
        return Enumerable.Range(0, n).Select(k => model.Logits(k).ToArray()).ToList();
    }

    /// <summary>ONNX Runtime's outputs by name, with their shapes.</summary>
    internal static Dictionary<string, (float[] Data, int[] Dims)> RunOnnx(byte[] onnx, Batch x)
    {
        using var options = new SessionOptions();
        using var session = new InferenceSession(onnx, options);
        long[] L(int[] a) => a.Select(v => (long)v).ToArray();
        var feeds = new List<NamedOnnxValue>();
        foreach (var name in session.InputMetadata.Keys)
        {
            var data = name switch { "input_ids" => x.Ids, "token_type_ids" => x.Types, "attention_mask" => x.Mask, _ => throw new InvalidOperationException("unexpected input " + name) };
            feeds.Add(NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(L(data), [x.B, x.T])));
        }
        using var results = session.Run(feeds);
        return results.ToDictionary(r => r.Name, r => { var t = r.AsTensor<float>(); return (t.ToArray(), t.Dimensions.ToArray()); });
    }

    /// <summary>max |ours - theirs| over max |ours|: relative to the logits' scale, as an element near zero has no
    /// meaningful relative error of its own.</summary>
    internal static double RelativeError(float[] ours, float[] theirs)
    {
        Assert.Equal(ours.Length, theirs.Length);
        double maxDiff = 0, scale = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            Assert.True(float.IsFinite(theirs[i]), $"ONNX Runtime gave {theirs[i]} at {i}");
            maxDiff = Math.Max(maxDiff, Math.Abs(ours[i] - (double)theirs[i]));
            scale = Math.Max(scale, Math.Abs((double)ours[i]));
        }
        Assert.True(scale > 0, "our logits are all zero: the comparison would prove nothing");
        return maxDiff / scale;
    }

    void Compare(Model<float> model, string[] outputs, int[][] outDims)
    {
        var onnx = OnnxExport.Build(model.Info, model.Parameters).ToByteArray();
        foreach (var (B, T, seed) in new[] { (2, 7, 1), (3, 12, 2) })
        {
            var x = Batch.Make(B, T, (int)model.Info.Constants["Vocab"], seed);
            var ours = OurLogits(model, x);
            var theirs = RunOnnx(onnx, x);
            Assert.Equal(outputs.OrderBy(o => o), theirs.Keys.OrderBy(k => k));
            for (int k = 0; k < outputs.Length; k++)
            {
                var (data, dims) = theirs[outputs[k]];
                var want = outDims[k].Select(d => d == -1 ? B : d == -2 ? T : d).ToArray();
                Assert.Equal(want, dims);
                double rel = RelativeError(ours[k], data);
                log.WriteLine($"{model.Info.Name} B={B} T={T} {outputs[k]}: max |Δ| / max |logit| = {rel:E2}");
                Assert.True(rel <= Tolerances.OnnxVsOursRel, $"{outputs[k]} of {model.Info.Name} at B={B}, T={T}: relative error {rel:E2}");
            }
        }
    }

    [Fact]
    public void BertTinyPreTraining_MatchesOurForward()
    {
        var model = RandomModel(BertPreTraining.Create<float>, 1);
        int V = (int)model.Info.Constants["Vocab"];
        Compare(model, ["prediction_logits", "seq_relationship_logits"], [[-1, -2, V], [-1, 2]]);
    }

    [Fact]
    public void BertClassifier_MatchesOurForward() =>
        Compare(RandomModel(BertClassifier.Create<float>, 2), ["logits"], [[-1, 2]]);

    [Fact]
    public void AlbertClassifier_MatchesOurForward() =>
        Compare(RandomModel(AlbertClassifier.Create<float>, 3), ["logits"], [[-1, 2]]);

    /// <summary>Question answering's head: the transposed logits [batch, 2, sequence] (an ONNX Transpose, perm 0 2 1).</summary>
    [Fact]
    public void QaSpanHead_TransposedLogits_MatchOurForward()
    {
        var model = RandomModel(Bert.Tests.Models.QaSpanHead.Create<float>, 7);
        Compare(model, ["logits"], [[-1, 2, -2]]);
        var perms = OnnxExport.Build(model.Info, model.Parameters).Graph.Node.Where(n => n.OpType == "Transpose")
            .Select(n => string.Join(" ", n.Attribute.Single(a => a.Name == "perm").Ints)).ToList();
        Assert.Contains("0 2 1", perms);   // and the Linear weight's "1 0"
    }

    [Fact]
    public void Padding_ChangesNothingButThePaddedPositions()
    {
        // A padded row's logits must not depend on what the padding holds: the mask reaches the ONNX attention.
        var model = RandomModel(BertClassifier.Create<float>, 4);
        var onnx = OnnxExport.Build(model.Info, model.Parameters).ToByteArray();
        var x = Batch.Make(3, 9, 1000, 5);
        var y = x with { Ids = (int[])x.Ids.Clone() };
        for (int i = 0; i < y.Ids.Length; i++) if (y.Mask[i] == 0) y.Ids[i] = 999;
        Assert.NotEqual(x.Ids, y.Ids);
        var a = RunOnnx(onnx, x)["logits"].Data;
        var b = RunOnnx(onnx, y)["logits"].Data;
        Assert.True(RelativeError(a, b) <= Tolerances.OnnxVsOursRel);
        // …and the mask matters: unmasking the padding changes them.
        var z = x with { Mask = x.Mask.Select(_ => 1).ToArray() };
        Assert.True(RelativeError(a, RunOnnx(onnx, z)["logits"].Data) > 100 * Tolerances.OnnxVsOursRel);
    }

    [Fact]
    public void Graph_IsStandardOnnxWithDynamicAxesAndNamedWeights()
    {
        var model = RandomModel(BertPreTraining.Create<float>, 6);
        var proto = OnnxExport.Build(model.Info, model.Parameters);
        Assert.True(proto.OpsetImport.Single(o => o.Domain == "").Version >= 17);
        var g = proto.Graph;
        Assert.Equal(["input_ids", "token_type_ids", "attention_mask"], g.Input.Select(i => i.Name));
        foreach (var i in g.Input)
        {
            Assert.Equal((int)Onnx.TensorProto.Types.DataType.Int64, i.Type.TensorType.ElemType);
            Assert.Equal(["batch", "sequence"], i.Type.TensorType.Shape.Dim.Select(d => d.DimParam));
        }
        var dims = g.Output.ToDictionary(o => o.Name, o => o.Type.TensorType.Shape.Dim.Select(d => d.HasDimParam ? d.DimParam : d.DimValue.ToString()).ToArray());
        Assert.Equal(["batch", "sequence", "30522"], dims["prediction_logits"]);
        Assert.Equal(["batch", "2"], dims["seq_relationship_logits"]);
        var ops = g.Node.Select(n => n.OpType).ToHashSet();
        foreach (var op in new[] { "LayerNormalization", "Erf", "MatMul", "Softmax", "Gather", "Tanh" }) Assert.Contains(op, ops);
        Assert.DoesNotContain("Dropout", ops);
        // Every parameter is an initializer under its Hugging Face name, with its values (the decoder is tied to
        // the word embeddings, so it is one of them, not another).
        var inits = g.Initializer.ToDictionary(t => t.Name);
        foreach (var p in model.Info.Parameters)
        {
            Assert.True(inits.TryGetValue(p.HfName, out var t), p.HfName + " is not an initializer");
            Assert.Equal(p.Shape.Select(d => (long)d), t.Dims);
            Assert.Equal(model.Parameter(p.Name).ToArray(), System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray());
        }
        Assert.Equal(model.Info.ParameterCount, g.Initializer.Where(t => t.DataType == (int)Onnx.TensorProto.Types.DataType.Float && t.Dims.Count > 0).Sum(t => t.Dims.Aggregate(1L, (a, d) => a * d)));
    }

    [Fact]
    public void Logits_UnderMemoryReuse_AreIntactOrRefused()
    {
        // With the inference plan's reuse, a CrossEntropy's logits are returned only where no later buffer shares their
        // memory; the classifier's are, and match a plan without reuse bit for bit.
        foreach (var (create, seed) in new (Func<Model<float>>, int)[] { (BertClassifier.Create<float>, 10), (BertPreTraining.Create<float>, 11) })
        {
            var model = RandomModel(create, seed);
            var x = Batch.Make(2, 6, 500, seed);
            var plain = OurLogits(model, x);
            model.ReuseMemory = true;
            model.Bind(x.B, x.T, x.B * x.T, training: false);
            foreach (var i in model.Info.Inputs.Where(i => i.Kind != InputKind.Tensor))
                model.SetInput(i.Name, i.Kind switch
                {
                    InputKind.Tokens => i.Name == "types" ? x.Types : x.Ids,
                    InputKind.Mask => x.Mask,
                    InputKind.Rows => Enumerable.Range(0, x.B * x.T).ToArray(),
                    _ => new int[i.Shape[0] == -1 ? x.B : x.B * x.T],
                });
            model.Forward();
            for (int k = 0; k < plain.Count; k++)
            {
                try { Assert.Equal(plain[k], model.Logits(k).ToArray()); }
                catch (InvalidOperationException e) when (model.Info.Name != nameof(BertClassifier)) { Assert.Contains("ReuseMemory = false", e.Message); }
            }
        }
    }

    [Fact]
    public void Metadata_WiresEveryOpAndKernel()
    {
        // What the export reads: each op's operands and each kernel's expression nodes, for every model declared.
        foreach (var info in Catalog.All.Select(e => e.Info))
        {
            foreach (var op in info.Ops)
            {
                Assert.NotEmpty(op.Operands);
                foreach (var o in op.Operands.Where(o => o.Kind == OperandKind.Buffer))
                    Assert.Contains(info.Ops, p => p.Buffer == o.Index && p.Id < op.Id);
                Assert.Equal(op.Kind is OpKind.Embed or OpKind.Attention or OpKind.Gather or OpKind.CrossEntropy, op.IntInput >= 0);
            }
            foreach (var k in info.Kernels)
            {
                Assert.NotEmpty(k.Nodes);
                for (int i = 0; i < k.Nodes.Length; i++) Assert.All(k.Nodes[i].Args, a => Assert.InRange(a, 0, i - 1));
                var op = info.Ops.Single(o => o.Kernel == k.Name);
                Assert.Equal(op.Operands.Length, k.Nodes.Count(n => n.Op == "in"));
            }
        }
    }
}
