using System;
using System.Collections.Generic;
using System.Linq;

namespace Bert.Generators;

/// <summary>Fuse: merges chains of element-wise nodes (bias, activation, dropout, residual, scaling) into one
/// kernel. A producer joins its consumer when the consumer is its only reader and both have one shape; the
/// intermediate value then lives only in registers, forward and backward.</summary>
public static class Fuse
{
    public static void Run(Graph g)
    {
        bool changed = true;
        while (changed)
        {
            changed = false;
            foreach (var p in g.Nodes.ToList())
            {
                if (p.Kind != OpKind.Pointwise || !g.Nodes.Contains(p)) continue;
                for (int k = 0; k < p.Inputs.Count; k++)
                {
                    var v = p.Inputs[k];
                    var q = v.Producer;
                    if (q is null || q.Kind != OpKind.Pointwise || v.Consumers.Count != 1 || v == g.Output || !v.Shape.SequenceEqual(p.Out.Shape)) continue;
                    Merge(g, p, k, q);
                    changed = true;
                    break;
                }
            }
        }
        for (int i = 0; i < g.Nodes.Count; i++) g.Nodes[i].Id = i;
    }

    static void Merge(Graph g, Node p, int k, Node q)
    {
        var inputs = new List<Value>();
        int Idx(Value v) { int i = inputs.IndexOf(v); if (i < 0) { i = inputs.Count; inputs.Add(v); } return i; }
        var mapP = new int[p.Inputs.Count];
        for (int j = 0; j < p.Inputs.Count; j++) if (j != k) mapP[j] = Idx(p.Inputs[j]);
        var mapQ = q.Inputs.Select(Idx).ToArray();
        var memoQ = new Dictionary<FE, FE>(FeRef.Instance);
        var qExpr = Remap(q.Expr!, mapQ, null, memoQ);
        var memoP = new Dictionary<FE, FE>(FeRef.Instance);
        p.Expr = Remap(p.Expr!, mapP, (k, qExpr), memoP);
        foreach (var v in q.Inputs.Distinct()) { v.Consumers.Remove(q); if (!v.Consumers.Contains(p)) v.Consumers.Add(p); }
        p.Inputs[k].Consumers.Remove(p);
        p.Inputs = inputs;
        p.Sources.InsertRange(0, q.Sources);
        p.FusedFrom += q.FusedFrom;
        p.Label = string.Join("+", p.Sources);
        g.Nodes.Remove(q);
    }

    static FE Remap(FE e, int[] map, (int K, FE Expr)? subst, Dictionary<FE, FE> memo)
    {
        if (memo.TryGetValue(e, out var r)) return r;
        r = e switch
        {
            FIn i when subst is { } s && i.Index == s.K => s.Expr,
            FIn i => new FIn(map[i.Index]),
            FConst c => c,
            FOp o when o.Args.Length == 0 => o,
            FOp o => new FOp(o.Op, o.Args.Select(a => Remap(a, map, subst, memo)).ToArray()) { Site = o.Site, P = o.P },
            _ => e,
        };
        memo[e] = r;
        return r;
    }

}

public enum BufRole { Activation, Saved, Gradient }

public sealed class Buf
{
    public int Id; public string Name = ""; public BufRole Role; public Size Size; public Value? Of;
    public int Def, Last; public bool Pinned;
    /// <summary>Read after forward (a cross-entropy's probabilities): kept alive to the end of the inference plan.</summary>
    public bool ReadAfterForward;
    public int SlotTrain = -1, SlotInfer = -1;
}

/// <summary>Plan: the buffers a step needs, their lifetimes over the forward-then-backward schedule, and
/// which share memory. Sizes stay symbolic in B, T, G; the runtime evaluates them per batch.</summary>
public sealed class Plan
{
    public readonly List<Buf> Bufs = new();
    public readonly Dictionary<Value, Buf> Act = new();
    public readonly Dictionary<Value, Buf> Grad = new();
    public readonly Dictionary<(Node, int), Buf> Saved = new();
    public int SlotsTrain, SlotsInfer;
    /// <summary>The activations that are operands of a product (Linear, MatMul), numbered in the order the forward first
    /// reads them: on a GPU in bf16 each gets a bf16 copy made once, at its first product, that its later products and the
    /// backward's (dW = dYᵀ·X) read instead of rounding it again (CudaExec.ToShadow).</summary>
    public readonly Dictionary<Value, int> Shadows = new();

    /// <summary>Inputs (node, index) of fused element-wise nodes whose gradient is the node's output gradient itself: y = … + x
    /// along additions only (<see cref="IdentityAdjoint"/>), x full-size, and the node the first op of the backward to reach
    /// x's gradient, so its backward would only copy dy there. x's gradient takes dy's buffer instead (the plan extends its
    /// lifetime), the schedule passes no dx for it, and the ops after add into it: BERT's residual connections and the query,
    /// key and value bias, the embeddings' sum.</summary>
    public readonly HashSet<(Node, int)> GradAliases = new();

    /// <summary>Whether input <paramref name="input"/>'s gradient is <paramref name="n"/>'s output gradient (<see cref="GradAliases"/>).</summary>
    public bool AliasesGrad(Node n, int input) => GradAliases.Contains((n, input));

    /// <summary>Whether ∂y/∂x_k is 1 with y's adjoint passed to x_k unchanged: x_k read once in the expression, and every node
    /// from the root down to it an addition (either side) or a subtraction's left side, each read once.</summary>
    public static bool IdentityAdjoint(FE root, int k)
    {
        var refs = new Dictionary<FE, int>(FeRef.Instance);
        int reads = 0;
        var seen = new HashSet<FE>(FeRef.Instance);
        void Visit(FE e)
        {
            if (!seen.Add(e)) return;
            if (e is FOp o)
                foreach (var a in o.Args)
                {
                    refs[a] = refs.TryGetValue(a, out int c) ? c + 1 : 1;
                    if (a is FIn f && f.Index == k) reads++;
                    Visit(a);
                }
        }
        Visit(root);
        if (root is FIn r0) return r0.Index == k;
        if (reads != 1) return false;
        bool Holds(FE e) => e is FIn f ? f.Index == k : e is FOp o && o.Args.Any(Holds);
        var at = root;
        while (at is FOp op)
        {
            FE? next = op.Op switch
            {
                "add" when Holds(op.Args[0]) != Holds(op.Args[1]) => Holds(op.Args[0]) ? op.Args[0] : op.Args[1],
                "sub" when Holds(op.Args[0]) && !Holds(op.Args[1]) => op.Args[0],
                _ => null,
            };
            if (next is null || refs[next] != 1) return false;
            at = next;
        }
        return at is FIn leaf && leaf.Index == k;
    }

    /// <summary>The shadow of an operand of a product, or -1 (a parameter: the weights have their bf16 copy already).</summary>
    public int ShadowOf(Value v) => Shadows.TryGetValue(v, out int k) ? k : -1;

    public static int Fwd(int i) => 2 * (i + 1);
    public static int Bwd(int n, int i) => 2 * (2 * n - i);

    /// <summary>Which float inputs a node's backward reads (by index into Inputs). A fused element-wise kernel reads only the
    /// inputs its derivative rules need (<see cref="BackwardNeeds"/>): a bias add or bias + dropout + residual reads none, so
    /// the product output before it need not live until the backward (BERT-Base at B=64, T=128: the query-key-value,
    /// attention-output and second feed-forward products' outputs, about 1.5 GB).</summary>
    public static bool BackwardReads(Node n, int input) => n.Kind switch
    {
        OpKind.Embed or OpKind.Gather or OpKind.First or OpKind.Transpose or OpKind.CrossEntropy => false,
        OpKind.Pointwise => BackwardNeeds.Of(n.Expr!).Inputs.Contains(input),
        _ => true,
    };

    public static Size RowsOf(int[] shape) => Size.Of(shape.Take(shape.Length - 1).ToList());

    /// <summary>Whether node <paramref name="n"/>'s backward writes the gradient of input <paramref name="input"/> (=) instead
    /// of adding into it (+=), so that the schedule neither clears that buffer first nor reads it back: n is the first op of
    /// the backward to reach that gradient (its buffer is defined there), the value is that one input of n alone, and the op
    /// writes every element of it — a product's operand (β = 0), LayerNorm's input, attention's projections, cross-entropy's
    /// logits (zeros on ignored rows), a transpose's input, an element-wise kernel's full-size input. A gather, a first-token
    /// pick or an embedding writes some rows only; they are not named here.</summary>
    public static bool AssignsGrad(Plan plan, int count, Node n, int input)
    {
        var v = n.Inputs[input];
        if (v.Kind == ValueKind.Param || !v.NeedsGrad || !plan.Grad.TryGetValue(v, out var gb) || gb.Def != Bwd(count, n.Id)) return false;
        if (n.Inputs.Count(x => x == v) != 1) return false;
        return n.Kind switch
        {
            OpKind.MatMul or OpKind.Linear => true,
            OpKind.LayerNorm or OpKind.Attention or OpKind.CrossEntropy or OpKind.Transpose => input == 0,
            OpKind.Pointwise => v.Size == n.Out.Size,
            _ => false,
        };
    }

    /// <summary>For a fused element-wise node whose backward writes the output gradient of the product just before it (a
    /// Linear's or MatMul's output that only this node reads), or whose output gradient is that gradient (<see cref="GradAliases"/>):
    /// that input's index, else -1. In bf16 its CUDA backward also
    /// writes the gradient's bf16 copy into the products' first operand slot, which the product's backward then reads
    /// instead of rounding dY itself (CudaExec.Grad16).</summary>
    public static int GradientToSlot(Plan plan, int count, Node p)
    {
        if (p.Kind != OpKind.Pointwise) return -1;
        for (int k = 0; k < p.Inputs.Count; k++)
        {
            var v = p.Inputs[k];
            if (v.Producer is { Kind: OpKind.Linear or OpKind.MatMul } n && n.Id == p.Id - 1 && v.Consumers.Count == 1 && (AssignsGrad(plan, count, p, k) || plan.AliasesGrad(p, k)))
                return k;
        }
        return -1;
    }

    /// <summary>For an op that writes every element of its output in one kernel (a fused element-wise kernel, LayerNorm,
    /// attention) when that output is a product's activation operand: the output's shadow (<see cref="Shadows"/>), else -1. In bf16 the CUDA
    /// kernel then also writes the output rounded to bf16 (CudaExec.Out16): into the shadow when the forward keeps them, else
    /// into the operand slot of the product right after it (<see cref="NextProductSlot"/>), so that no conversion pass reads
    /// the output again.</summary>
    public static int Bf16Output(Plan plan, Node n) => n.Kind is OpKind.Pointwise or OpKind.LayerNorm or OpKind.Attention ? plan.ShadowOf(n.Out) : -1;

    /// <summary>Whether <paramref name="n"/>'s kernel always writes the copy <see cref="Bf16Output"/> names (a fused kernel,
    /// LayerNorm), so that the products read the shadow without converting; attention writes it only on the flash path, and
    /// its first product converts unless it did (CudaExec.ToShadow).</summary>
    public static bool Bf16OutputAlways(Plan plan, Node n) => n.Kind is OpKind.Pointwise or OpKind.LayerNorm && Bf16Output(plan, n) >= 0;

    /// <summary>Whether fused node <paramref name="n"/>'s output is read by products only (not the model's output), which take
    /// it in bf16 from the copy n's kernel writes (<see cref="Bf16Output"/>): from the kept shadow in training, or, when its
    /// only reader is the product right after n and reads it once, from that product's operand slot in inference. Then, in
    /// bf16, the fp32 output need not be written at all (CudaExec.Out32): BERT's GELU output, 4·C floats a token a layer.</summary>
    public static bool Bf16OnlyOutput(Graph g, Plan plan, Node n) =>
        n.Kind == OpKind.Pointwise && Bf16Output(plan, n) >= 0 && n.Out != g.Output && n.Out.Consumers.Count > 0
        && n.Out.Consumers.All(c => c.Kind is OpKind.Linear or OpKind.MatMul);

    /// <summary>For <see cref="Bf16OnlyOutput"/>: whether n's output has one reader, the product right after n, reading it once
    /// (inference can then skip the fp32 output too: the product takes the operand slot n's kernel wrote).</summary>
    public static bool OnlyNextProductReads(Graph g, Node n) =>
        NextProductSlot(g, n) >= 0 && n.Out.Consumers.Distinct().Count() == 1 && g.Nodes[n.Id + 1].Inputs.Count(x => x == n.Out) == 1;

    /// <summary>Which operand (0: A, 1: B) of the op right after <paramref name="n"/> is n's output, when that op is a product
    /// and the first to read it; else -1.</summary>
    public static int NextProductSlot(Graph g, Node n)
    {
        if (n.Id + 1 >= g.Nodes.Count) return -1;
        var next = g.Nodes[n.Id + 1];
        if (next.Kind is not (OpKind.Linear or OpKind.MatMul)) return -1;
        int i = next.Inputs.IndexOf(n.Out);
        return i is 0 or 1 && FirstProduct(n.Out) == next ? i : -1;
    }

    /// <summary>Whether <paramref name="v"/> is a product's output (Linear, MatMul) that only fused element-wise kernels read
    /// (a bias, bias + GELU, bias + dropout + residual) and not the model's output: on a GPU in bf16 the product may then write
    /// it in bf16 (half the bytes, in the first half of its buffer) and those kernels, forward and backward, read it so
    /// (CudaExec.Store16, In16), as autocast keeps a product's output. Its gradient stays fp32. Not where those kernels feed a
    /// cross-entropy or are the model's output, directly or through a transpose: the logits keep fp32 (rounding them moves
    /// every probability by up to 2⁻⁸ of the logit).</summary>
    public static bool Bf16Stored(Graph g, Value v) =>
        v.Producer is { Kind: OpKind.Linear or OpKind.MatMul } && v != g.Output && v.Consumers.Count > 0
        && v.Consumers.All(c => c.Kind == OpKind.Pointwise && !IsLogits(g, c.Out));

    /// <summary>Whether <paramref name="v"/> is logits: the model's output or a cross-entropy's operand, directly or through
    /// transposes (the start and end logits of question answering).</summary>
    static bool IsLogits(Graph g, Value v) =>
        v == g.Output || v.Consumers.Any(d => d.Kind == OpKind.CrossEntropy || d.Kind == OpKind.Transpose && IsLogits(g, d.Out));

    /// <summary>Per input of fused node <paramref name="n"/>: whether it may come in bf16 (<see cref="Bf16Stored"/>); its CUDA
    /// kernels then take <c>h{k}</c>, the bf16 values, beside <c>x{k}</c> (one of the two null).</summary>
    public static bool[] Bf16Inputs(Graph g, Node n) => n.Inputs.Select(v => n.Kind == OpKind.Pointwise && Bf16Stored(g, v)).ToArray();

    /// <summary>Whether fused node <paramref name="p"/> is a bias add right after the product (Linear, MatMul) that computes x — y = x + b, or
    /// y = r + (x + b) with a residual r, the sum possibly dropped out (y = r + dropout(x + b)) — with x read by p alone, once
    /// (not the model's output), b a parameter of one element per output column, and p's output read by no product: on a GPU
    /// the product then adds the bias itself (cuBLASLt's bias epilogue, CudaExec.GemmBias), and the residual too when no
    /// dropout applies (an inference forward: cuBLASLt's C = r, β = 1), writing y, and p's forward kernel does not run
    /// (BERT's query-key-value bias, the masked-LM decoder's and the output layers' biases; in inference also each layer's
    /// attention-output and second feed-forward products with their residual). p's backward is unchanged (it reads neither
    /// x nor b, <see cref="BackwardNeeds"/>). y's buffer is defined from the product on.</summary>
    public static Epilogue? EpilogueOf(Graph g, Node p)
    {
        if (p.Kind != OpKind.Pointwise || p.Id < 1 || p.Expr is not FOp root) return null;
        var prod = g.Nodes[p.Id - 1];
        if (prod.Kind is not (OpKind.Linear or OpKind.MatMul)) return null;
        var y = prod.Out;
        int x = p.Inputs.IndexOf(y);
        if (x < 0 || y == g.Output || y.Consumers.Count != 1 || !p.Out.Shape.SequenceEqual(y.Shape) || y.Shape.Length == 0 || y.Shape[^1] <= 0) return null;
        // Not where a product reads p's output: p's kernel would write its bf16 copy for it (Bf16Output).
        if (p.Out.Consumers.Any(c => c.Kind is OpKind.Linear or OpKind.MatMul)) return null;
        bool IsBias(int k) => k != x && p.Inputs[k] is { Kind: ValueKind.Param } b && b.Shape.Length == 1 && b.Shape[0] == y.Shape[^1];
        // x + b (either side): b's index
        int Bare(FE e) => e is FOp { Op: "add" } a && a.Args[0] is FIn l && a.Args[1] is FIn r
            ? (l.Index == x && IsBias(r.Index) ? r.Index : r.Index == x && IsBias(l.Index) ? l.Index : -1) : -1;
        int bias = Bare(root);
        if (bias >= 0) return p.Inputs.Count == 2 ? new Epilogue(x, bias, -1, false) : null;
        // r + T or T + r, T = x + b or (x + b)·dropout (either side)
        if (root.Op != "add" || p.Inputs.Count != 3) return null;
        foreach (var (rs, t) in new[] { (root.Args[0], root.Args[1]), (root.Args[1], root.Args[0]) })
        {
            if (rs is not FIn res || res.Index == x) continue;
            var v = p.Inputs[res.Index];
            // the residual in fp32, as large as y (a product's output kept in bf16 would not do)
            if (v.Kind == ValueKind.Param || v.Size != p.Out.Size || Bf16Stored(g, v)) continue;
            bool dropout = false;
            int b = Bare(t);
            if (b < 0 && t is FOp { Op: "mul" } m)
            {
                if (m.Args[1] is FOp { Op: "drop" }) b = Bare(m.Args[0]);
                else if (m.Args[0] is FOp { Op: "drop" }) b = Bare(m.Args[1]);
                dropout = b >= 0;
            }
            if (b >= 0 && b != res.Index) return new Epilogue(x, b, res.Index, dropout);
        }
        return null;
    }

    /// <summary>What the product before a fused node adds itself (<see cref="EpilogueOf"/>): the indices of the product's output,
    /// the bias and the residual (-1: none) among the node's inputs, and whether the residual's term is dropped out (then the
    /// product adds the residual only when dropout is off).</summary>
    public sealed record Epilogue(int Product, int Bias, int Residual, bool Dropout);

    /// <summary>The first product (Linear, MatMul) to read <paramref name="v"/>, or null.</summary>
    public static Node? FirstProduct(Value v) => v.Consumers.Where(c => c.Kind is OpKind.Linear or OpKind.MatMul).OrderBy(c => c.Id).FirstOrDefault();

    /// <summary><see cref="AliasesGrad"/> for each input of <paramref name="n"/>.</summary>
    public bool[] AliasesGrads(Node n) => Enumerable.Range(0, n.Inputs.Count).Select(k => AliasesGrad(n, k)).ToArray();

    /// <summary><see cref="AssignsGrad"/> for each input of <paramref name="n"/>.</summary>
    public static bool[] AssignsGrads(Plan plan, int count, Node n) =>
        Enumerable.Range(0, n.Inputs.Count).Select(i => AssignsGrad(plan, count, n, i)).ToArray();

    public static Plan Build(Graph g)
    {
        var plan = new Plan();
        int n = g.Nodes.Count;
        Buf New(string name, BufRole role, Size size, Value? of)
        {
            var b = new Buf { Id = plan.Bufs.Count, Name = name, Role = role, Size = size, Of = of };
            plan.Bufs.Add(b);
            return b;
        }
        foreach (var v in g.FloatInputs) plan.Act[v] = New(v.Name, BufRole.Activation, v.Size, v);
        foreach (var node in g.Nodes)
        {
            plan.Act[node.Out] = New(node.Label, BufRole.Activation, node.Out.Size, node.Out);
            switch (node.Kind)
            {
                case OpKind.LayerNorm:
                    plan.Saved[(node, 0)] = New(node.Label + ".mean", BufRole.Saved, RowsOf(node.Out.Shape), null);
                    plan.Saved[(node, 1)] = New(node.Label + ".rstd", BufRole.Saved, RowsOf(node.Out.Shape), null);
                    break;
                case OpKind.Attention:
                    plan.Saved[(node, 0)] = New(node.Label + ".probs", BufRole.Saved, new Size(node.Heads, 1, 2, 0), null);
                    break;
                case OpKind.CrossEntropy:
                    plan.Saved[(node, 0)] = New(node.Label + ".probs", BufRole.Saved, Size.Of(node.Inputs[0].Shape), null);
                    plan.Saved[(node, 0)].ReadAfterForward = true;
                    break;
            }
        }
        foreach (var v in g.FloatInputs.Concat(g.Nodes.Select(x => x.Out)))
            if (v.NeedsGrad) plan.Grad[v] = New("d" + (v.Producer?.Label ?? v.Name), BufRole.Gradient, v.Size, v);

        // Lifetimes for training (forward then backward).
        foreach (var (v, b) in plan.Act)
        {
            b.Def = v.Producer is null ? 0 : Fwd(v.Producer.Id);
            b.Last = b.Def;
            foreach (var c in v.Consumers)
            {
                b.Last = Math.Max(b.Last, Fwd(c.Id));
                if (BackwardReads(c, c.Inputs.IndexOf(v))) b.Last = Math.Max(b.Last, Bwd(n, c.Id));
            }
            // Attention's output stays until its backward: the CUDA flash backward takes Δ = rowsum(dO ⊙ O) from it.
            if (v.Producer is { Kind: OpKind.Attention } att) b.Last = Math.Max(b.Last, Bwd(n, att.Id));
            // A bias the product before adds itself (EpilogueOf): the product writes the sum.
            if (v.Producer is { } bp && EpilogueOf(g, bp) != null) b.Def = Fwd(bp.Id - 1);
            b.Pinned = v == g.Output || v.Kind == ValueKind.Input;
        }
        foreach (var ((node, _), b) in plan.Saved) { b.Def = Fwd(node.Id); b.Last = Bwd(n, node.Id); }
        foreach (var (v, b) in plan.Grad)
        {
            // The output's gradient is written by the caller between forward and backward.
            b.Def = v == g.Output ? 2 * n + 1 : v.Consumers.Count == 0 ? 4 * n + 3 : v.Consumers.Min(c => Bwd(n, c.Id));
            b.Last = v.Producer is null ? int.MaxValue : Bwd(n, v.Producer.Id);
            b.Pinned = v.Kind == ValueKind.Input || v == g.Output;
        }
        // Identity adjoints share dy's buffer (GradAliases), from the node the backward reaches first (the last one) down, so
        // that chains merge into one buffer. The ops after the node add their parts of x's gradient into that buffer, so two
        // inputs of one node share it only when nothing else reads either of them (the embeddings' sum); otherwise one does
        // (preferably one that only this node reads: a product's output, whose bf16 copy is then dy's).
        for (int i = n - 1; i >= 0; i--)
        {
            var node = g.Nodes[i];
            if (node.Kind != OpKind.Pointwise || node.Out == g.Output || !plan.Grad.TryGetValue(node.Out, out var gy) || gy.Pinned || node.Out.Consumers.Count == 0) continue;
            var aliased = Enumerable.Range(0, node.Inputs.Count).Where(k =>
                node.Inputs[k] is { Kind: ValueKind.Node } v && v.Size == node.Out.Size && AssignsGrad(plan, n, node, k) && IdentityAdjoint(node.Expr!, k)).ToList();
            if (aliased.Count > 1 && aliased.Any(k => node.Inputs[k].Consumers.Count != 1))
                aliased = new List<int> { aliased.OrderBy(k => node.Inputs[k].Consumers.Count == 1 ? 0 : 1).First() };
            foreach (int k in aliased)
            {
                var gx = plan.Grad[node.Inputs[k]];
                gy.Last = Math.Max(gy.Last, gx.Last);
                plan.Bufs.Remove(gx);
                plan.Grad[node.Inputs[k]] = gy;
                plan.GradAliases.Add((node, k));
            }
        }
        for (int i = 0; i < plan.Bufs.Count; i++) plan.Bufs[i].Id = i;
        foreach (var node in g.Nodes)
            if (node.Kind is OpKind.Linear or OpKind.MatMul)
                foreach (var v in node.Inputs)
                    if (v.Kind != ValueKind.Param && !plan.Shadows.ContainsKey(v)) plan.Shadows[v] = plan.Shadows.Count;
        plan.SlotsTrain = Assign(plan.Bufs, b => b.Pinned ? int.MaxValue : b.Last, (b, s) => b.SlotTrain = s);
        // Inference: forward only; saved tensors die at once and no gradient exists.
        plan.SlotsInfer = Assign(plan.Bufs.Where(b => b.Role != BufRole.Gradient).ToList(),
            b =>
            {
                // A cross-entropy's probabilities stay readable after forward (accuracy, predictions).
                if (b.Role == BufRole.Saved) return b.ReadAfterForward ? int.MaxValue : b.Def;
                if (b.Pinned && b.Of == g.Output) return int.MaxValue;
                if (b.Of is { } v && v.Kind == ValueKind.Input) return int.MaxValue;
                return b.Of is { } o && o.Consumers.Count > 0 ? o.Consumers.Max(c => Fwd(c.Id)) : b.Def;
            }, (b, s) => b.SlotInfer = s);
        return plan;
    }

    /// <summary>Greedy interval colouring: a buffer takes a slot whose last occupant is dead before it is
    /// written (preferring one whose occupants have the same size), else a new slot.</summary>
    static int Assign(IList<Buf> bufs, Func<Buf, int> last, Action<Buf, int> set)
    {
        var slotEnd = new List<int>();
        var slotSize = new List<Size>();
        foreach (var b in bufs.OrderBy(b => b.Def).ThenBy(b => b.Id))
        {
            int d = b.Def, best = -1;
            for (int s = 0; s < slotEnd.Count; s++)
            {
                if (slotEnd[s] >= d) continue;
                if (best < 0 || (slotSize[s] == b.Size && slotSize[best] != b.Size)) best = s;
            }
            if (best < 0) { best = slotEnd.Count; slotEnd.Add(0); slotSize.Add(b.Size); }
            slotEnd[best] = last(b);
            set(b, best);
        }
        return slotEnd.Count;
    }
}

/// <summary>What a fused element-wise kernel's backward must recompute: the values its derivative rules read, for the nodes
/// that receive an adjoint (the same rules the CPU and CUDA emitters write: add, sub, neg and dropout's scale read nothing;
/// mul the other factor; div the divisor and, for the divisor's adjoint, its own value; exp, tanh and sqrt their own value;
/// log, abs and erf their argument; max, min and the selects their two compared operands), and everything those values are
/// computed from. An input outside <see cref="Inputs"/> is not read by the backward at all.</summary>
public sealed class BackwardNeeds
{
    /// <summary>The operation nodes whose values the backward computes (by reference).</summary>
    public readonly HashSet<FE> Ops = new(FeRef.Instance);
    /// <summary>The input indices whose values the backward loads.</summary>
    public readonly HashSet<int> Inputs = new();

    /// <summary>Whether the backward computes <paramref name="e"/>'s value (a constant: always available).</summary>
    public bool Has(FE e) => e switch { FIn f => Inputs.Contains(f.Index), FConst => true, _ => Ops.Contains(e) };

    public static BackwardNeeds Of(FE root)
    {
        var r = new BackwardNeeds();
        var order = new List<FE>();
        var seen = new HashSet<FE>(FeRef.Instance);
        void Topo(FE e)
        {
            if (!seen.Add(e)) return;
            if (e is FOp o) foreach (var a in o.Args) Topo(a);
            order.Add(e);
        }
        Topo(root);
        void Need(FE e)
        {
            switch (e)
            {
                case FIn f: r.Inputs.Add(f.Index); break;
                case FOp o when r.Ops.Add(o): foreach (var a in o.Args) Need(a); break;
            }
        }
        // An adjoint reaches every argument but constants and dropout's scale (the emitters' Acc skips those), and not the
        // compared operands of a select.
        static bool Takes(FE e) => e is not FConst && e is not FOp { Op: "drop" };
        var adj = new HashSet<FE>(FeRef.Instance) { root };
        for (int k = order.Count - 1; k >= 0; k--)
        {
            if (order[k] is not FOp o || !adj.Contains(o)) continue;
            var a = o.Args;
            switch (o.Op)
            {
                case "add" or "sub": break;
                case "neg" or "drop": break;
                case "mul":
                    if (Takes(a[0])) Need(a[1]);
                    if (Takes(a[1])) Need(a[0]);
                    break;
                case "div":
                    if (Takes(a[0])) Need(a[1]);
                    if (Takes(a[1])) { Need(o); Need(a[1]); }
                    break;
                case "exp" or "tanh" or "sqrt":
                    if (Takes(a[0])) Need(o);
                    break;
                case "log" or "abs" or "erf":
                    if (Takes(a[0])) Need(a[0]);
                    break;
                case "max" or "min":
                    if (Takes(a[0]) || Takes(a[1])) { Need(a[0]); Need(a[1]); }
                    break;
                default:
                    if (!o.Op.StartsWith("sel", StringComparison.Ordinal)) throw new InvalidOperationException(o.Op);
                    if (Takes(a[2]) || Takes(a[3])) { Need(a[0]); Need(a[1]); }
                    foreach (var x in a.Skip(2)) if (Takes(x)) adj.Add(x);
                    continue;
            }
            foreach (var x in a) if (Takes(x)) adj.Add(x);
        }
        return r;
    }

}
