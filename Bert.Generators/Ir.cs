using System;
using System.Collections.Generic;
using System.Linq;

namespace Bert.Generators;

// The IR: a straight-line graph of ops over values with symbolic shapes. Dimensions are ints: a positive
// number is a constant; Sym.B, Sym.T, Sym.G are the run-time batch size, sequence length and gathered rows.
public static class Sym
{
    public const int B = -1, T = -2, G = -3;
    public static string Name(int d) => d switch { B => "B", T => "T", G => "G", _ => d.ToString(System.Globalization.CultureInfo.InvariantCulture) };
    public static string Shape(IReadOnlyList<int> s) => "[" + string.Join(",", s.Select(Name)) + "]";
}

/// <summary>A buffer size c·B^b·T^t·G^g.</summary>
public readonly record struct Size(long C, int PB, int PT, int PG)
{
    public static Size Of(IReadOnlyList<int> shape)
    {
        long c = 1; int b = 0, t = 0, g = 0;
        foreach (var d in shape) switch (d) { case Sym.B: b++; break; case Sym.T: t++; break; case Sym.G: g++; break; default: c *= d; break; }
        return new Size(c, b, t, g);
    }
    public Size Times(Size o) => new(C * o.C, PB + o.PB, PT + o.PT, PG + o.PG);
    /// <summary>C# text of the size, in terms of ex.Batch, ex.Seq, ex.Rows.</summary>
    public string Code(string ex = "ex")
    {
        var parts = new List<string>();
        for (int i = 0; i < PB; i++) parts.Add(ex + ".Batch");
        for (int i = 0; i < PT; i++) parts.Add(ex + ".Seq");
        for (int i = 0; i < PG; i++) parts.Add(ex + ".Rows");
        if (C != 1 || parts.Count == 0) parts.Add(C.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return parts.Count == 1 ? parts[0] : "(" + string.Join(" * ", parts) + ")";
    }
    public override string ToString()
    {
        var p = new List<string>();
        if (C != 1 || (PB + PT + PG) == 0) p.Add(C.ToString(System.Globalization.CultureInfo.InvariantCulture));
        for (int i = 0; i < PB; i++) p.Add("B");
        for (int i = 0; i < PT; i++) p.Add("T");
        for (int i = 0; i < PG; i++) p.Add("G");
        return string.Join("·", p);
    }
}

public enum ValueKind { Param, Input, Node }

public sealed class Value
{
    public int Id;
    public string Name = "";
    public int[] Shape = Array.Empty<int>();
    public ValueKind Kind;
    /// <summary>For Param values (whole parameters and views such as Positions or Cat): offset into the flat buffer.</summary>
    public long ParamOffset;
    public int ParamIndex = -1;
    public int InputIndex = -1;
    public Node? Producer;
    public readonly List<Node> Consumers = new();
    public bool NeedsGrad;
    public Size Size => Size.Of(Shape);
}

/// <summary>The kinds of op, in the order of Bert.Runtime.OpKind (the generated metadata names them). New kinds go at
/// the end there.</summary>
public enum OpKind { MatMul, Linear, Embed, LayerNorm, Attention, Gather, First, CrossEntropy, Pointwise, Transpose }

public sealed class Node
{
    public int Id;
    public OpKind Kind;
    public List<Value> Inputs = new();
    public Value Out = null!;
    public Loc Loc = Loc.None;
    public string Label = "";
    // attributes
    public int Heads;
    public double P;
    public int Site;
    public int IntInput = -1;     // ids, mask, labels or rows
    public FE? Expr;              // Pointwise: expression over Inputs
    public int FusedFrom = 1;     // how many source ops this node stands for
    public List<string> Sources = new();
}

// ---- element-wise expressions of Pointwise nodes (a DAG: shared subtrees are shared objects) ----
public abstract class FE { }
public sealed class FIn : FE { public int Index; public FIn(int i) => Index = i; }
public sealed class FConst : FE { public double Value; public FConst(double v) => Value = v; }
/// <summary>Op: add sub mul div neg exp log tanh sqrt erf max min abs, sel&lt; sel&lt;= sel&gt; sel&gt;= (l, r, then, else), drop (no args).</summary>
public sealed class FOp : FE
{
    public string Op; public FE[] Args; public int Site; public double P;
    public FOp(string op, params FE[] args) { Op = op; Args = args; }
}

/// <summary>Expression nodes by reference (a DAG shares subtrees, and equal-looking subtrees are distinct nodes).</summary>
internal sealed class FeRef : IEqualityComparer<FE>
{
    public static readonly FeRef Instance = new();
    public bool Equals(FE? x, FE? y) => ReferenceEquals(x, y);
    public int GetHashCode(FE obj) => System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(obj);
}

/// <summary>An expression's nodes in topological order (arguments first), numbered as both kernel emitters number their
/// values (v0, v1, …): one number per input however many leaves name it, so each input is loaded once.</summary>
internal sealed class Topo
{
    public readonly List<FE> Order = new();
    readonly Dictionary<FE, int> _ids = new(FeRef.Instance);
    readonly Dictionary<int, int> _inputs = new();
    public int this[FE e] => _ids[e];
    public Topo(FE root) => Visit(root);
    void Visit(FE e)
    {
        if (_ids.ContainsKey(e)) return;
        if (e is FIn f)
        {
            if (_inputs.TryGetValue(f.Index, out var first)) { _ids[e] = first; return; }
            _inputs[f.Index] = Order.Count;
        }
        if (e is FOp o) foreach (var a in o.Args) Visit(a);
        _ids[e] = Order.Count;
        Order.Add(e);
    }
}

public sealed class IntInput
{
    public string Name = ""; public ArgKind Kind; public int[] Shape = Array.Empty<int>(); public int Index;
}

public sealed class Graph
{
    public readonly List<Value> Values = new();
    public readonly List<Node> Nodes = new();
    public readonly List<IntInput> IntInputs = new();
    public readonly List<Value> FloatInputs = new();
    public readonly List<ParamEntry> Params = new();
    public Value? Output;
    public int Sites;
    public long ParamCount;

    public Value NewValue(string name, int[] shape, ValueKind kind)
    {
        var v = new Value { Id = Values.Count, Name = name, Shape = shape, Kind = kind };
        Values.Add(v);
        return v;
    }
}

public sealed class ParamEntry
{
    public string Name = ""; public string Hf = ""; public int[] Shape = Array.Empty<int>(); public long Offset; public long Length;
    public int Init; public bool Decay; public ParamSpec Spec = null!; public Value Value = null!; public string Block = "";
}
