using System;
using System.Collections.Generic;
using System.Linq;

namespace Bert.Generators;

/// <summary>Specs → IR: inlines blocks and [Pointwise] functions, lays out parameters, infers and checks
/// every shape. Reports mistakes as diagnostics at the offending expression.</summary>
public sealed class Lowering
{
    static readonly Dictionary<string, string[]> OpParams = new()
    {
        ["MatMul"] = new[] { "x", "w" }, ["Linear"] = new[] { "x", "w", "b" }, ["Embed"] = new[] { "table", "ids" },
        ["Positions"] = new[] { "table" }, ["LayerNorm"] = new[] { "x", "gamma", "beta" },
        ["Attention"] = new[] { "qkv", "mask", "heads", "dropout" }, ["Dropout"] = new[] { "x", "p" },
        ["Gather"] = new[] { "x", "rows" }, ["First"] = new[] { "x" }, ["Transpose"] = new[] { "x" }, ["CrossEntropy"] = new[] { "logits", "labels" },
    };
    public static readonly string[] Vocabulary = OpParams.Keys.Concat(new[] { "Cat", "Gelu", "GeluTanh", "Tanh", "Relu", "Swish", "Sigmoid" }).ToArray();

    readonly ModelSpec _m;
    readonly Dictionary<string, PointwiseSpec> _pwByKey = new();
    readonly Dictionary<string, PointwiseSpec> _pwLocal = new();
    readonly Dictionary<string, BlockSpec> _blocks;
    readonly List<Diag> _diags = new();
    readonly Graph _g = new();
    readonly HashSet<string> _reportedPw = new();
    long _maxLen = -1;
    bool _failed;

    Lowering(ModelSpec m, IEnumerable<PointwiseSpec> pws)
    {
        _m = m;
        _blocks = m.Blocks.ToDictionary(b => b.Name);
        var names = new HashSet<string>(new[] { m.ClassName }.Concat(m.Blocks.Select(b => b.Name)));
        foreach (var p in pws)
        {
            _pwByKey[p.ContainingType + "." + p.Name] = p;
            if (p.ContainingType == "Bert.Dsl.Activations") { if (!_pwLocal.ContainsKey(p.Name)) _pwLocal[p.Name] = p; }
        }
        // The model's own functions (and its blocks') win over the built-ins of the same name.
        foreach (var p in pws)
        {
            var owner = p.ContainingType.Split('.').Last();
            if (p.ContainingType.Length > 0 && (names.Contains(owner) || p.ContainingType.EndsWith("." + m.ClassName) || p.ContainingType == m.ClassName))
                _pwLocal[p.Name] = p;
        }
        foreach (var p in pws)
            if (!_pwLocal.ContainsKey(p.Name)) _pwLocal[p.Name] = p;
    }

    /// <summary>Failed is true when the model cannot be compiled (its diagnostics say why, or a function it
    /// uses has its own).</summary>
    public static (Graph Graph, List<Diag> Diags, bool Failed) Run(ModelSpec m, IEnumerable<PointwiseSpec> pws)
    {
        var l = new Lowering(m, pws);
        l.Build();
        return (l._g, l._diags, l._failed || l._diags.Count > 0 || l._g.Output is null);
    }

    void Report(string id, Loc loc, params object[] args) =>
        _diags.Add(new Diag(id, loc, args.Select(a => Convert.ToString(a, System.Globalization.CultureInfo.InvariantCulture) ?? "").ToEquatable()));

    // ---------------- model structure ----------------

    sealed class Instance
    {
        public BlockSpec Spec = null!;
        public string Path = "";
        public Dictionary<string, (Value V, ParamEntry E)> Params = new();
        public Dictionary<string, (SubSpec Sub, List<Instance> Reps)> Subs = new();
    }

    void Build()
    {
        foreach (var d in _m.Diags) _diags.Add(d);
        if (_diags.Count > 0) return;
        if (!_m.IsPartial) Report("BERT0001", _m.Loc, _m.ClassName);
        var ml = _m.Constants.FirstOrDefault(c => c.Name == "MaxLen");
        if (ml is null) Report("BERT0010", _m.Loc, _m.ClassName); else _maxLen = ml.Value;

        var root = Instantiate(_m.Root, "", "", 0);
        _g.ParamCount = _g.Params.Sum(p => p.Length);
        var fwd = ForwardOf(_m.Root, _m.ClassName);
        if (fwd is null) return;

        var env = new Dictionary<string, object>();
        foreach (var a in fwd.Args)
        {
            switch (a.Kind)
            {
                case ArgKind.Tensor:
                    if (!a.HasShape) { Report("BERT0016", a.Loc, a.Name); env[a.Name] = Reported; continue; }
                    if (!CheckDims(a.Name, a.Shape, a.Loc, allowSym: true)) { env[a.Name] = Reported; continue; }
                    var v = _g.NewValue(a.Name, a.Shape.ToArray(), ValueKind.Input);
                    v.InputIndex = _g.FloatInputs.Count; v.NeedsGrad = true;
                    _g.FloatInputs.Add(v); env[a.Name] = v; break;
                case ArgKind.Other:
                    Report("BERT0012", a.Loc, a.Name); env[a.Name] = Reported; break;
                default:
                    var shape = a.HasShape ? a.Shape.ToArray() : a.Kind switch
                    {
                        ArgKind.Labels => new[] { Sym.B },
                        ArgKind.Rows => new[] { Sym.G },
                        _ => new[] { Sym.B, Sym.T },
                    };
                    if (!CheckDims(a.Name, shape.ToEquatable(), a.Loc, allowSym: true)) { env[a.Name] = Reported; continue; }
                    var ii = new IntInput { Name = a.Name, Kind = a.Kind, Shape = shape, Index = _g.IntInputs.Count };
                    _g.IntInputs.Add(ii); env[a.Name] = ii; break;
            }
        }
        var result = LowerBody(fwd, root, env);
        if (result is Value outV) _g.Output = outV;
        else if (result is not null && !(result is string)) Report("BERT0106", fwd.Loc, "Forward", "to return a tensor", "another kind of value");

        // Parameters nobody reads (only meaningful once the rest compiled).
        if (_diags.Count > 0 || _failed) return;
        var seen = new HashSet<ParamSpec>();
        foreach (var p in _g.Params)
            if (p.Value.Consumers.Count == 0 && !IsViewed(p) && seen.Add(p.Spec))
                Report("BERT0007", p.Spec.Loc, p.Spec.Name);
    }

    readonly HashSet<ParamEntry> _viewed = new();
    bool IsViewed(ParamEntry p) => _viewed.Contains(p);

    MethodSpec? ForwardOf(BlockSpec b, string name)
    {
        if (b.Forwards.Count == 0) { Report("BERT0002", b.Loc, name); return null; }
        if (b.Forwards.Count > 1) { Report("BERT0003", b.Forwards[1].Loc, name); return null; }
        return b.Forwards[0];
    }

    bool CheckDims(string name, EquatableArray<int> dims, Loc loc, bool allowSym)
    {
        foreach (var d in dims)
            if (d <= 0 && !(allowSym && d is Sym.B or Sym.T or Sym.G)) { Report("BERT0009", loc, name, d); return false; }
        return true;
    }

    Instance Instantiate(BlockSpec b, string path, string hf, int depth)
    {
        var inst = new Instance { Spec = b, Path = path };
        if (depth > 16) return inst;
        foreach (var p in b.Params)
        {
            if (_badDecl.Contains(b.Name + "." + p.Name)) continue;
            if (!CheckDims(p.Name, p.Shape, p.ShapeLoc, allowSym: false)) { _badDecl.Add(b.Name + "." + p.Name); continue; }
            if (p.Shape.Count == 0) { Report("BERT0009", p.ShapeLoc, p.Name, "none"); _badDecl.Add(b.Name + "." + p.Name); continue; }
            long len = p.Shape.Aggregate(1L, (a, d) => a * d);
            var name = path + p.Name;
            var e = new ParamEntry
            {
                Name = name, Hf = hf + (p.Hf ?? p.Name), Shape = p.Shape.ToArray(), Offset = _g.Params.Sum(x => x.Length), Length = len,
                Init = p.Init, Decay = p.Shape.Count > 1, Spec = p, Block = b.Name,
            };
            var v = _g.NewValue(name, e.Shape, ValueKind.Param);
            v.ParamOffset = e.Offset; v.ParamIndex = _g.Params.Count; v.NeedsGrad = true;
            e.Value = v;
            _g.Params.Add(e);
            inst.Params[p.Name] = (v, e);
        }
        foreach (var s in b.Subs)
        {
            if (s.Count < 1) { if (_badDecl.Add(b.Name + "." + s.Name)) Report("BERT0006", s.Loc, s.Name, s.Count); continue; }
            if (!_blocks.TryGetValue(s.BlockType, out var bs)) continue;
            var reps = new List<Instance>();
            for (int i = 0; i < s.Count; i++)
            {
                if (s.Shared && i > 0) { reps.Add(reps[0]); continue; }
                var subPath = path + s.Name + (s.Count > 1 && !s.Shared ? "." + i : "") + ".";
                var subHf = s.Hf is null ? hf + s.Name + "." + (s.Count > 1 && !s.Shared ? i + "." : "") : hf + s.Hf.Replace("{i}", i.ToString(System.Globalization.CultureInfo.InvariantCulture));
                reps.Add(Instantiate(bs, subPath, subHf, depth + 1));
            }
            inst.Subs[s.Name] = (s, reps);
        }
        return inst;
    }

    // ---------------- forward bodies ----------------

    /// <summary>Lowers a method body; returns the returned value, or null after a reported error.</summary>
    object? LowerBody(MethodSpec m, Instance inst, Dictionary<string, object> env)
    {
        foreach (var s in m.Body)
        {
            switch (s)
            {
                case StLet let:
                    var v = Lower(let.Value, inst, env);
                    if (v is null) return null;
                    env[let.Name] = v;
                    break;
                case StReturn r:
                    return Lower(r.Value, inst, env);
                case StBad bad:
                    Report("BERT0103", bad.Loc, bad.Description);
                    return null;
            }
        }
        Report("BERT0103", m.Loc, "Forward method without a final 'return'");
        return null;
    }

    /// <summary>Stands for a name whose declaration already has an error (an input without a shape, a parameter with
    /// a bad dimension, a block stacked 0 times): its uses fail without a second, misleading diagnostic.</summary>
    static readonly object Reported = new();
    /// <summary>"Block.member" of parameters and block fields whose declarations were reported.</summary>
    readonly HashSet<string> _badDecl = new();

    /// <summary>A number that is not a compile-time constant; the op that needs a constant reports it.</summary>
    sealed class NotConst { public string Text = ""; }

    object? Lookup(string name, Instance inst, Dictionary<string, object> env)
    {
        if (env.TryGetValue(name, out var v)) return v;
        if (inst.Params.TryGetValue(name, out var p)) return p.V;
        if (inst.Subs.TryGetValue(name, out var s)) return s;
        if (_badDecl.Contains(inst.Spec.Name + "." + name)) return Reported;
        return null;
    }

    object? Lower(Ex e, Instance inst, Dictionary<string, object> env)
    {
        switch (e)
        {
            case ExNum n: return n.Value;
            case ExIdent id:
            {
                var v = Lookup(id.Name, inst, env);
                if (v is null) Report("BERT0015", id.Loc, id.Name, inst.Spec.Name);
                return v == Reported ? null : v;
            }
            case ExNotConst nc: return new NotConst { Text = nc.Text };
            case ExBad bad: Report("BERT0103", bad.Loc, bad.Description); return null;
            case ExMember mem:
            {
                var t = Lookup(mem.Target, inst, env);
                if (t == Reported) return null;
                if (t is ValueTuple<SubSpec, List<Instance>> sub)
                {
                    if (sub.Item2.Distinct().Count() != 1) { Report("BERT0107", mem.Loc, $"'{mem.Target}' is stacked {sub.Item2.Count} times; name one repetition's parameter only of a single or shared block"); return null; }
                    if (sub.Item2[0].Params.TryGetValue(mem.Name, out var pv)) return pv.V;
                    Report("BERT0015", mem.Loc, mem.Target + "." + mem.Name, inst.Spec.Name); return null;
                }
                Report("BERT0015", mem.Loc, mem.Target + "." + mem.Name, inst.Spec.Name);
                return null;
            }
            case ExUnary u:
            {
                var x = Lower(u.X, inst, env);
                if (x is double d) return -d;
                if (x is NotConst) return x;
                if (x is Value xv) return Pw("neg", new List<Value> { xv }, new FOp("neg", new FIn(0)), u.Loc, xv.Shape);
                if (x is not null) Report("BERT0106", u.Loc, "'-'", "a tensor or a number", Kind(x));
                return null;
            }
            case ExBinary b: return Binary(b, inst, env);
            case ExCallN c: return Call(c, inst, env);
        }
        return null;
    }

    static string Kind(object o) => o switch
    {
        Value v => "a tensor " + Sym.Shape(v.Shape),
        double => "a number",
        NotConst n => "'" + n.Text + "', a number that is not a compile-time constant",
        IntInput i => "the integer input '" + i.Name + "'",
        _ => "a block",
    };

    object? Binary(ExBinary b, Instance inst, Dictionary<string, object> env)
    {
        var l = Lower(b.L, inst, env);
        var r = Lower(b.R, inst, env);
        if (l is null || r is null) return null;
        string op = b.Op switch { "+" => "add", "-" => "sub", "*" => "mul", _ => "div" };
        // Arithmetic on a run-time number stays one (reported by the op that needs a constant); with a tensor it is
        // a scalar operand that has to be a constant.
        if (l is NotConst || r is NotConst)
        {
            if (l is NotConst or double && r is NotConst or double) return l as NotConst ?? r;
            if (l is Value || r is Value) { Report("BERT0104", (l is NotConst ? b.L : b.R).Loc, "scalar operand of '" + b.Op + "'"); return null; }
        }
        if (l is double dl && r is double dr) return op switch { "add" => dl + dr, "sub" => dl - dr, "mul" => dl * dr, _ => dl / dr };
        if (l is Value lv && r is double rd) return Pw(op, new List<Value> { lv }, new FOp(op, new FIn(0), new FConst(rd)), b.Loc, lv.Shape);
        if (l is double ld && r is Value rv) return Pw(op, new List<Value> { rv }, new FOp(op, new FConst(ld), new FIn(0)), b.Loc, rv.Shape);
        if (l is Value a && r is Value c)
        {
            var shape = BroadcastShape(a.Shape, c.Shape);
            if (shape is null) { Report("BERT0101", b.Loc, b.Op, Sym.Shape(a.Shape), Sym.Shape(c.Shape)); return null; }
            if (a == c) return Pw(op, new List<Value> { a }, new FOp(op, new FIn(0), new FIn(0)), b.Loc, shape);
            return Pw(op, new List<Value> { a, c }, new FOp(op, new FIn(0), new FIn(1)), b.Loc, shape);
        }
        Report("BERT0106", b.Loc, "'" + b.Op + "'", "tensors or numbers", Kind(l is Value or double ? r : l));
        return null;
    }

    static int[]? BroadcastShape(int[] a, int[] b)
    {
        var (big, small) = a.Length >= b.Length ? (a, b) : (b, a);
        for (int i = 1; i <= small.Length; i++) if (big[big.Length - i] != small[small.Length - i]) return null;
        return big;
    }

    Value Pw(string label, List<Value> inputs, FE expr, Loc loc, int[] shape)
    {
        var out_ = _g.NewValue(label, shape, ValueKind.Node);
        var n = new Node { Id = _g.Nodes.Count, Kind = OpKind.Pointwise, Inputs = inputs, Out = out_, Loc = loc, Label = label, Expr = expr };
        n.Sources.Add(label);
        return Add(n);
    }

    Value Add(Node n)
    {
        n.Id = _g.Nodes.Count;
        _g.Nodes.Add(n);
        n.Out.Producer = n;
        n.Out.NeedsGrad = n.Inputs.Any(i => i.NeedsGrad);
        foreach (var i in n.Inputs.Distinct()) i.Consumers.Add(n);
        return n.Out;
    }

    Value Op(OpKind kind, string label, Loc loc, int[] shape, params Value[] inputs) =>
        Add(new Node { Kind = kind, Label = label, Loc = loc, Out = _g.NewValue(label, shape, ValueKind.Node), Inputs = inputs.ToList(), Sources = { label } });

    // ---------------- calls ----------------

    object? Call(ExCallN c, Instance inst, Dictionary<string, object> env)
    {
        // A block: field.Forward(...)
        if (c.Target is not null && c.Target != "Ops" && c.Target != "Activations" && c.Target != _m.ClassName)
        {
            var t = Lookup(c.Target, inst, env);
            if (t == Reported) return null;
            if (t is ValueTuple<SubSpec, List<Instance>> sub && c.Method == "Forward") return CallBlock(sub.Item1, sub.Item2, c, inst, env);
            if (t is null) { Report("BERT0015", c.Loc, c.Target, inst.Spec.Name); return null; }
            Report("BERT0102", c.Loc, c.Target + "." + c.Method, string.Join(", ", Vocabulary));
            return null;
        }
        if (c.Method == "Cat") return Cat(c, inst, env);
        if (OpParams.TryGetValue(c.Method, out var names))
        {
            var args = Arrange(c, names);
            if (args is null) return null;
            var vals = new object?[args.Length];
            for (int i = 0; i < args.Length; i++)
            {
                if (args[i] is null) continue;
                vals[i] = Lower(args[i]!, inst, env);
                if (vals[i] is null) return null;
            }
            return StructuredOp(c, args, vals);
        }
        if (_pwLocal.TryGetValue(c.Method, out var pw)) return CallPointwise(pw, c, inst, env);
        Report("BERT0102", c.Loc, c.Method, string.Join(", ", Vocabulary));
        return null;
    }

    /// <summary>Orders arguments by the op's parameter names; null entries are optional ones left out.</summary>
    Ex?[]? Arrange(ExCallN c, string[] names)
    {
        var res = new Ex?[names.Length];
        for (int i = 0; i < c.Args.Count; i++)
        {
            int pos = c.ArgNames[i].Length == 0 ? i : Array.IndexOf(names, c.ArgNames[i]);
            if (pos < 0 || pos >= names.Length) { Report("BERT0107", c.Args[i].Loc, $"{c.Method} has no parameter '{(c.ArgNames[i].Length == 0 ? "#" + (i + 1) : c.ArgNames[i])}'; it takes ({string.Join(", ", names)})"); return null; }
            res[pos] = c.Args[i];
        }
        int required = c.Method == "Linear" ? 2 : names.Length;
        for (int i = 0; i < required; i++)
            if (res[i] is null) { Report("BERT0107", c.Loc, $"{c.Method} needs its argument '{names[i]}'; it takes ({string.Join(", ", names)})"); return null; }
        return res;
    }

    Value? Tensor(object? v, Ex at, string what)
    {
        if (v is Value t) return t;
        Report("BERT0106", at.Loc, what, "a tensor", v is null ? "nothing" : Kind(v));
        return null;
    }

    bool ParamShape(Value p, int[] want, string op, Ex at)
    {
        if (p.Shape.SequenceEqual(want)) return true;
        if (p.Kind == ValueKind.Param) Report("BERT0008", at.Loc, p.Name, Sym.Shape(p.Shape), op, Sym.Shape(want));
        else Report("BERT0106", at.Loc, op, Sym.Shape(want), Sym.Shape(p.Shape));
        return false;
    }

    object? StructuredOp(ExCallN c, Ex?[] a, object?[] v)
    {
        switch (c.Method)
        {
            case "MatMul":
            {
                var x = Tensor(v[0], a[0]!, "MatMul's left operand"); var w = Tensor(v[1], a[1]!, "MatMul's right operand");
                if (x is null || w is null) return null;
                if (w.Shape.Length != 2) { Report("BERT0106", a[1]!.Loc, "MatMul's right operand", "a matrix [K, N]", Sym.Shape(w.Shape)); return null; }
                if (x.Shape.Length < 1 || x.Shape[x.Shape.Length - 1] != w.Shape[0])
                { Report("BERT0100", a[0]!.Loc, "MatMul", Sym.Shape(x.Shape), Sym.Shape(w.Shape), Sym.Name(w.Shape[0])); return null; }
                return Op(OpKind.MatMul, "MatMul", c.Loc, x.Shape.Take(x.Shape.Length - 1).Concat(new[] { w.Shape[1] }).ToArray(), x, w);
            }
            case "Linear":
            {
                var x = Tensor(v[0], a[0]!, "Linear's input"); var w = Tensor(v[1], a[1]!, "Linear's weight");
                if (x is null || w is null) return null;
                if (w.Shape.Length != 2) { Report("BERT0106", a[1]!.Loc, "Linear's weight", "a matrix [Out, In]", Sym.Shape(w.Shape)); return null; }
                if (x.Shape.Length < 1 || x.Shape[x.Shape.Length - 1] != w.Shape[1])
                { Report("BERT0100", a[0]!.Loc, "Linear", Sym.Shape(x.Shape), Sym.Shape(w.Shape) + "ᵀ", Sym.Name(w.Shape[1])); return null; }
                var shape = x.Shape.Take(x.Shape.Length - 1).Concat(new[] { w.Shape[0] }).ToArray();
                var y = Op(OpKind.Linear, "Linear", c.Loc, shape, x, w);
                if (a[2] is null) return y;
                var b = Tensor(v[2], a[2]!, "Linear's bias");
                if (b is null || !ParamShape(b, new[] { w.Shape[0] }, "Linear", a[2]!)) return null;
                return Pw("bias", new List<Value> { y, b }, new FOp("add", new FIn(0), new FIn(1)), c.Loc, shape);
            }
            case "Embed":
            {
                var t = Tensor(v[0], a[0]!, "Embed's table");
                if (t is null) return null;
                if (v[1] is not IntInput ids || ids.Kind != ArgKind.Tokens) { Report("BERT0106", a[1]!.Loc, "Embed", "token ids (a Tokens input)", Kind(v[1]!)); return null; }
                if (t.Shape.Length != 2) { Report("BERT0106", a[0]!.Loc, "Embed", "a table [V, C]", Sym.Shape(t.Shape)); return null; }
                var n = new Node { Kind = OpKind.Embed, Label = "Embed", Loc = c.Loc, Inputs = { t }, IntInput = ids.Index, Sources = { "Embed" },
                    Out = _g.NewValue("Embed", ids.Shape.Concat(new[] { t.Shape[1] }).ToArray(), ValueKind.Node) };
                return Add(n);
            }
            case "Positions":
            {
                var t = Tensor(v[0], a[0]!, "Positions' table");
                if (t is null) return null;
                if (t.Kind != ValueKind.Param || t.ParamIndex < 0 || t.Shape.Length != 2)
                { Report("BERT0106", a[0]!.Loc, "Positions", "a parameter table [P, C]", Kind(t)); return null; }
                if (_maxLen > 0 && t.Shape[0] < _maxLen) { Report("BERT0011", a[0]!.Loc, t.Name, t.Shape[0], _maxLen); return null; }
                _viewed.Add(_g.Params[t.ParamIndex]);
                var view = _g.NewValue(t.Name + "[:T]", new[] { Sym.T, t.Shape[1] }, ValueKind.Param);
                view.ParamOffset = t.ParamOffset; view.ParamIndex = t.ParamIndex; view.NeedsGrad = true;
                return view;
            }
            case "LayerNorm":
            {
                var x = Tensor(v[0], a[0]!, "LayerNorm's input"); var g = Tensor(v[1], a[1]!, "LayerNorm's gamma"); var b = Tensor(v[2], a[2]!, "LayerNorm's beta");
                if (x is null || g is null || b is null) return null;
                if (x.Shape.Length < 1) { Report("BERT0106", a[0]!.Loc, "LayerNorm", "a tensor [..., C]", "a scalar"); return null; }
                var want = new[] { x.Shape[x.Shape.Length - 1] };
                if (!ParamShape(g, want, "LayerNorm over " + Sym.Shape(x.Shape), a[1]!) | !ParamShape(b, want, "LayerNorm over " + Sym.Shape(x.Shape), a[2]!)) return null;
                return Op(OpKind.LayerNorm, "LayerNorm", c.Loc, x.Shape, x, g, b);
            }
            case "Attention":
            {
                var qkv = Tensor(v[0], a[0]!, "Attention's qkv");
                if (qkv is null) return null;
                if (v[1] is not IntInput mask || mask.Kind != ArgKind.Mask) { Report("BERT0106", a[1]!.Loc, "Attention", "a Mask input", Kind(v[1]!)); return null; }
                if (qkv.Shape.Length != 3 || qkv.Shape[0] != Sym.B || qkv.Shape[1] != Sym.T || qkv.Shape[2] <= 0 || qkv.Shape[2] % 3 != 0)
                { Report("BERT0106", a[0]!.Loc, "Attention", "qkv [B,T,3C]", Sym.Shape(qkv.Shape)); return null; }
                if (v[2] is not double heads) { Report("BERT0004", a[2]!.Loc, "number of attention heads"); return null; }
                if (v[3] is not double p) { Report("BERT0104", a[3]!.Loc, "attention dropout probability"); return null; }
                int C = qkv.Shape[2] / 3, H = (int)heads;
                if (H < 1 || H != heads || C % H != 0) { Report("BERT0005", a[2]!.Loc, C, heads); return null; }
                if (p < 0 || p >= 1) { Report("BERT0105", a[3]!.Loc, p); return null; }
                var n = new Node { Kind = OpKind.Attention, Label = "Attention", Loc = c.Loc, Inputs = { qkv }, IntInput = mask.Index, Heads = H, P = p,
                    Site = p > 0 ? ++_g.Sites : 0, Sources = { "Attention" }, Out = _g.NewValue("Attention", new[] { Sym.B, Sym.T, C }, ValueKind.Node) };
                return Add(n);
            }
            case "Dropout":
            {
                var x = Tensor(v[0], a[0]!, "Dropout's input");
                if (x is null) return null;
                if (v[1] is not double p) { Report("BERT0104", a[1]!.Loc, "dropout probability"); return null; }
                if (p < 0 || p >= 1) { Report("BERT0105", a[1]!.Loc, p); return null; }
                if (p == 0) return x;
                return Pw("Dropout", new List<Value> { x }, new FOp("mul", new FIn(0), new FOp("drop") { Site = ++_g.Sites, P = p }), c.Loc, x.Shape);
            }
            case "Gather":
            {
                var x = Tensor(v[0], a[0]!, "Gather's input");
                if (x is null) return null;
                if (v[1] is not IntInput rows || rows.Kind != ArgKind.Rows) { Report("BERT0106", a[1]!.Loc, "Gather", "a Rows input", Kind(v[1]!)); return null; }
                if (x.Shape.Length != 3 || x.Shape[0] != Sym.B || x.Shape[1] != Sym.T) { Report("BERT0106", a[0]!.Loc, "Gather", "[B,T,C]", Sym.Shape(x.Shape)); return null; }
                var n = new Node { Kind = OpKind.Gather, Label = "Gather", Loc = c.Loc, Inputs = { x }, IntInput = rows.Index, Sources = { "Gather" },
                    Out = _g.NewValue("Gather", new[] { rows.Shape[0], x.Shape[2] }, ValueKind.Node) };
                return Add(n);
            }
            case "First":
            {
                var x = Tensor(v[0], a[0]!, "First's input");
                if (x is null) return null;
                if (x.Shape.Length != 3 || x.Shape[1] != Sym.T) { Report("BERT0106", a[0]!.Loc, "First", "[B,T,C]", Sym.Shape(x.Shape)); return null; }
                return Op(OpKind.First, "First", c.Loc, new[] { x.Shape[0], x.Shape[2] }, x);
            }
            case "Transpose":
            {
                // [B,T,K] → [B,K,T], K a constant: B·K rows of T, a run-time length (the classes of a cross-entropy over positions).
                var x = Tensor(v[0], a[0]!, "Transpose's input");
                if (x is null) return null;
                if (x.Shape.Length != 3 || x.Shape[0] != Sym.B || x.Shape[1] != Sym.T || x.Shape[2] <= 0)
                { Report("BERT0106", a[0]!.Loc, "Transpose", "[B,T,K] with K a constant", Sym.Shape(x.Shape)); return null; }
                return Op(OpKind.Transpose, "Transpose", c.Loc, new[] { Sym.B, x.Shape[2], Sym.T }, x);
            }
            case "CrossEntropy":
            {
                var x = Tensor(v[0], a[0]!, "CrossEntropy's logits");
                if (x is null) return null;
                if (v[1] is not IntInput labels || labels.Kind != ArgKind.Labels) { Report("BERT0106", a[1]!.Loc, "CrossEntropy", "a Labels input", Kind(v[1]!)); return null; }
                // logits [N, K] with labels [N], per token logits [B, T, K] with labels [B, T], or over positions logits [B, K, T]
                // (Transpose) with labels [B, K]; the rows are flattened, the classes are the last axis.
                if (x.Shape.Length < 2) { Report("BERT0106", a[0]!.Loc, "CrossEntropy", "logits [N, K] or [B, T, K]", Sym.Shape(x.Shape)); return null; }
                var rowShape = x.Shape.Take(x.Shape.Length - 1).ToArray();
                if (!labels.Shape.SequenceEqual(rowShape))
                { Report("BERT0106", a[1]!.Loc, "CrossEntropy", "labels " + Sym.Shape(rowShape), "labels " + Sym.Shape(labels.Shape)); return null; }
                var n = new Node { Kind = OpKind.CrossEntropy, Label = "CrossEntropy", Loc = c.Loc, Inputs = { x }, IntInput = labels.Index, Sources = { "CrossEntropy" },
                    Out = _g.NewValue("loss", Array.Empty<int>(), ValueKind.Node) };
                return Add(n);
            }
        }
        return null;
    }

    object? Cat(ExCallN c, Instance inst, Dictionary<string, object> env)
    {
        var ps = new List<Value>();
        foreach (var a in c.Args)
        {
            var v = Lower(a, inst, env);
            if (v is null) return null;
            if (v is not Value p || p.Kind != ValueKind.Param || p.ParamIndex < 0 || _g.Params[p.ParamIndex].Value != p)
            { Report("BERT0013", a.Loc, "this argument is not a whole parameter"); return null; }
            ps.Add(p);
        }
        if (ps.Count == 0) { Report("BERT0107", c.Loc, "Cat needs at least one parameter"); return null; }
        for (int i = 1; i < ps.Count; i++)
        {
            if (ps[i].ParamIndex != ps[i - 1].ParamIndex + 1) { Report("BERT0013", c.Args[i].Loc, $"'{ps[i].Name}' is not declared right after '{ps[i - 1].Name}'"); return null; }
            if (!ps[i].Shape.Skip(1).SequenceEqual(ps[0].Shape.Skip(1))) { Report("BERT0013", c.Args[i].Loc, $"'{ps[i].Name}' is {Sym.Shape(ps[i].Shape)} but '{ps[0].Name}' is {Sym.Shape(ps[0].Shape)}"); return null; }
        }
        if (ps.Count == 1) return ps[0];
        foreach (var p in ps) _viewed.Add(_g.Params[p.ParamIndex]);
        var view = _g.NewValue("Cat(" + string.Join(",", ps.Select(p => p.Name)) + ")",
            new[] { ps.Sum(p => p.Shape[0]) }.Concat(ps[0].Shape.Skip(1)).ToArray(), ValueKind.Param);
        view.ParamOffset = ps[0].ParamOffset; view.ParamIndex = ps[0].ParamIndex; view.NeedsGrad = true;
        return view;
    }

    object? CallBlock(SubSpec sub, List<Instance> reps, ExCallN c, Instance inst, Dictionary<string, object> env)
    {
        var bs = reps[0].Spec;
        var fwd = ForwardOf(bs, bs.Name);
        if (fwd is null) return null;
        if (c.Args.Count != fwd.Args.Count) { Report("BERT0107", c.Loc, $"{sub.Name}.Forward takes {fwd.Args.Count} argument(s), not {c.Args.Count}"); return null; }
        var args = new List<object>();
        foreach (var a in c.Args)
        {
            var v = Lower(a, inst, env);
            if (v is null) return null;
            args.Add(v);
        }
        object? x = null;
        for (int r = 0; r < reps.Count; r++)
        {
            var local = new Dictionary<string, object>();
            for (int i = 0; i < fwd.Args.Count; i++)
            {
                var fa = fwd.Args[i];
                var given = i == 0 && x is not null ? x : args[i];
                bool ok = fa.Kind switch
                {
                    ArgKind.Tensor => given is Value gv && (!fa.HasShape || gv.Shape.SequenceEqual(fa.Shape)),
                    ArgKind.Other => false,
                    _ => given is IntInput ii && ii.Kind == fa.Kind,
                };
                if (!ok) { Report("BERT0106", c.Args[i].Loc, $"{sub.Name}.Forward's '{fa.Name}'", fa.Kind + (fa.HasShape ? " " + Sym.Shape(fa.Shape.ToArray()) : ""), Kind(given)); return null; }
                local[fa.Name] = given;
            }
            var y = LowerBody(fwd, reps[r], local);
            if (y is null) return null;
            if (reps.Count > 1 && (y is not Value yv || args[0] is not Value x0 || !yv.Shape.SequenceEqual(x0.Shape)))
            { Report("BERT0014", c.Loc, bs.Name, Kind(y), Kind(args[0])); return null; }
            x = y;
        }
        return x;
    }

    // ---------------- [Pointwise] ----------------

    object? CallPointwise(PointwiseSpec pw, ExCallN c, Instance inst, Dictionary<string, object> env)
    {
        // A function that cannot be translated is reported once, at its declaration, by the [Pointwise] pipeline.
        if (pw.Body is null) { _failed = true; return null; }
        if (c.Args.Count != pw.Parameters.Count) { Report("BERT0107", c.Loc, $"{pw.Name} takes {pw.Parameters.Count} argument(s), not {c.Args.Count}"); return null; }
        var inputs = new List<Value>();
        var argFe = new FE[c.Args.Count];
        int[]? shape = null;
        for (int i = 0; i < c.Args.Count; i++)
        {
            var v = Lower(c.Args[i], inst, env);
            if (v is null) return null;
            if (v is double d) { argFe[i] = new FConst(d); continue; }
            if (v is not Value t) { Report("BERT0106", c.Args[i].Loc, pw.Name, "a tensor or a number", Kind(v)); return null; }
            int k = inputs.IndexOf(t);
            if (k < 0) { k = inputs.Count; inputs.Add(t); }
            argFe[i] = new FIn(k);
            if (shape is null) shape = t.Shape;
            else
            {
                var s = BroadcastShape(shape, t.Shape);
                if (s is null) { Report("BERT0101", c.Args[i].Loc, pw.Name, Sym.Shape(shape), Sym.Shape(t.Shape)); return null; }
                shape = s;
            }
        }
        if (shape is null) { Report("BERT0106", c.Loc, pw.Name, "at least one tensor argument", "only numbers"); return null; }
        var stack = new Stack<string>();
        var fe = Inline(pw, argFe, stack, c.Loc);
        if (fe is null) return null;
        return Pw(pw.Name, inputs, fe, c.Loc, shape);
    }

    FE? Inline(PointwiseSpec pw, FE[] args, Stack<string> stack, Loc at)
    {
        var key = pw.ContainingType + "." + pw.Name;
        if (stack.Contains(key)) { if (_reportedPw.Add("rec:" + key)) Report("BERT0202", pw.Loc, pw.Name); return null; }
        if (pw.Body is null) { _failed = true; return null; }
        stack.Push(key);
        var r = Fe(pw.Body, args, stack, at);
        stack.Pop();
        return r;
    }

    FE? Fe(PwExpr e, FE[] args, Stack<string> stack, Loc at)
    {
        switch (e)
        {
            case PwVar v: return args[v.Index];
            case PwLit l: return new FConst(l.Value);
            case PwUnary u: { var x = Fe(u.X, args, stack, at); return x is null ? null : new FOp("neg", x); }
            case PwBinary b:
            {
                var l = Fe(b.L, args, stack, at); var r = Fe(b.R, args, stack, at);
                if (l is null || r is null) return null;
                return new FOp(b.Op switch { "+" => "add", "-" => "sub", "*" => "mul", _ => "div" }, l, r);
            }
            case PwCond c:
            {
                var l = Fe(c.L, args, stack, at); var r = Fe(c.R, args, stack, at); var t = Fe(c.Then, args, stack, at); var f = Fe(c.Else, args, stack, at);
                if (l is null || r is null || t is null || f is null) return null;
                return new FOp("sel" + c.Cmp, l, r, t, f);
            }
            case PwCall call:
            {
                var xs = new FE[call.Args.Count];
                for (int i = 0; i < xs.Length; i++) { var x = Fe(call.Args[i], args, stack, at); if (x is null) return null; xs[i] = x; }
                if (call.IsPrimitive) return new FOp(call.Name.ToLowerInvariant(), xs);
                if (!_pwByKey.TryGetValue(call.Name, out var callee)) { Report("BERT0200", call.Loc, call.Name, "the function it calls was not found"); return null; }
                return Inline(callee, xs, stack, at);
            }
        }
        return null;
    }
}
