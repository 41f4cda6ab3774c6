using System.Globalization;
using System.Runtime.InteropServices;
using Bert.Runtime;
using Bert.Runtime.Checkpoints;
using Google.Protobuf;
using Onnx;

namespace Bert.Export;

/// <summary>Writes any declared model as a standard ONNX inference graph, read off the generator's metadata (each
/// op's operands, each fused kernel's expression nodes): no graph is written by hand per model.
/// Inference semantics: dropout is the identity; the masked-LM head runs on every position (a Gather over masked
/// rows becomes all rows, so G becomes B·T); the graph stops before each CrossEntropy and outputs its logits,
/// named as Hugging Face names them (logits; or prediction_logits and seq_relationship_logits). Inputs are
/// input_ids, token_type_ids and attention_mask, int64 [batch, sequence]; the weights are initializers with their
/// Hugging Face names. Attention adds -10000 to the scores of keys whose mask is 0, as our kernel does.</summary>
public static class OnnxExport
{
    /// <summary>Opset 17: the first with LayerNormalization. GELU stays the generator's erf expression.</summary>
    public const int Opset = 17;
    /// <summary>IR version 8 goes with opset 17.</summary>
    const long IrVersion = 8;
    const float LayerNormEps = 1e-12f;       // as the generated schedule calls LayerNorm.Forward
    const float MaskedScore = -10000f;       // as Kernels.Attention adds to padded keys
    const long MaxProtoBytes = int.MaxValue; // one protobuf message; larger models would need external data

    /// <summary>The ONNX model of <paramref name="info"/> with the weights in <paramref name="parameters"/> (the flat buffer).</summary>
    public static ModelProto Build(ModelInfo info, ReadOnlySpan<float> parameters)
    {
        if (parameters.Length != info.ParameterCount)
            throw new ArgumentException($"Model {info.Name} has {info.ParameterCount} parameters but {parameters.Length} values were given.");
        if (info.ParameterCount * 4L > MaxProtoBytes)
            throw new ArgumentException($"Model {info.Name} has {info.ParameterCount:N0} parameters, over the 2 GiB one ONNX file without external data can hold.");
        var g = new GraphBuilder(info, parameters);
        var graph = g.Run();
        var model = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "bert",
            ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "0",
            Graph = graph,
            DocString = $"{info.Name}, exported by `bert export --onnx`: inference (dropout off), logits before each cross-entropy.",
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        return model;
    }

    /// <summary>Builds the model and writes it to <paramref name="path"/> atomically (temporary file, then rename).</summary>
    public static ModelProto Write(ModelInfo info, ReadOnlySpan<float> parameters, string path)
    {
        var model = Build(info, parameters);
        AtomicFile.Write(path, s => model.WriteTo(s));
        return model;
    }

    public static ModelProto Write(Model<float> model, string path) => Write(model.Info, model.Parameters, path);

    /// <summary>Builds the graph op by op in the order of the forward schedule.</summary>
    sealed class GraphBuilder
    {
        readonly ModelInfo _info;
        readonly float[] _params;
        readonly GraphProto _g = new();
        readonly Dictionary<int, string> _buf = new();              // activation buffer → tensor name
        readonly HashSet<int> _dead = new();                        // buffers downstream of a CrossEntropy
        readonly Dictionary<int, string> _ints = new();             // integer input index → graph input name
        readonly Dictionary<string, string> _cache = new();         // initializers, constants and derived weights
        readonly List<(OpInfo Op, string Logits)> _logits = new();
        string _prefix = "";
        int _counter;
        string? _seqLen;

        public GraphBuilder(ModelInfo info, ReadOnlySpan<float> parameters)
        {
            _info = info;
            _params = parameters.ToArray();
            _g.Name = info.Name;
        }

        public GraphProto Run()
        {
            if (_info.Ops.Count > 0 && _info.Ops.All(o => o.Operands.Length == 0))
                throw new ArgumentException($"Model {_info.Name} was generated without operand metadata; rebuild it with this version of Bert.");
            DeclareInputs();
            foreach (var op in _info.Ops) Lower(op);
            DeclareOutputs();
            return _g;
        }

        // ---------------- inputs and outputs ----------------

        void DeclareInputs()
        {
            var tokens = _info.Inputs.Where(i => i.Kind == InputKind.Tokens).OrderBy(i => i.Index).ToList();
            string[] hfTokens = ["input_ids", "token_type_ids"];
            var used = new HashSet<string>();
            foreach (var i in _info.Inputs.Where(i => i.Kind is InputKind.Tokens or InputKind.Mask).OrderBy(i => i.Index))
            {
                if (!(i.Shape is [-1, -2])) throw new ArgumentException($"Input '{i.Name}' of {_info.Name} is {Shape(i.Shape)}, not [B,T]; the ONNX export takes token and mask inputs of shape [batch, sequence].");
                string name = i.Kind == InputKind.Mask ? "attention_mask"
                    : i.Name == "ids" ? "input_ids" : i.Name == "types" ? "token_type_ids"
                    : tokens.IndexOf(i) < hfTokens.Length ? hfTokens[tokens.IndexOf(i)] : i.Name;
                if (!used.Add(name)) name = i.Name;
                _ints[i.Index] = name;
                _g.Input.Add(ValueInfo(name, TensorProto.Types.DataType.Int64, ["batch", "sequence"]));
            }
            foreach (var i in _info.Inputs.Where(i => i.Kind == InputKind.Tensor))
                _g.Input.Add(ValueInfo(i.Name, TensorProto.Types.DataType.Float, i.Shape.Select(DimName).ToArray()));
        }

        void DeclareOutputs()
        {
            var live = _logits;
            if (live.Count == 0)
            {
                if (!_buf.TryGetValue(_info.OutputBuffer, out var outName)) throw new ArgumentException($"Model {_info.Name} has no output to export.");
                var shape = _info.Ops.First(o => o.Buffer == _info.OutputBuffer).Shape;
                AddOutput(outName, "output", shape);
                return;
            }
            bool anyRows = live.Any(l => HasRows(l.Op.Operands[0].Shape));
            var names = live.Select(l => HasRows(l.Op.Operands[0].Shape) ? "prediction_logits" : anyRows ? "seq_relationship_logits" : "logits").ToList();
            for (int k = 0; k < live.Count; k++)
            {
                var name = names.Count(n => n == names[k]) > 1 ? $"{names[k]}_{names.Take(k).Count(n => n == names[k])}" : names[k];
                AddOutput(live[k].Logits, name, live[k].Op.Operands[0].Shape);
            }
        }

        static bool HasRows(int[] shape) => shape.Contains(-3);

        void AddOutput(string tensor, string name, int[] shape)
        {
            // Gathered rows (G) are every position: [G, V] becomes [batch, sequence, V].
            var dims = shape.SelectMany(d => d == -3 ? new[] { "batch", "sequence" } : [DimName(d)]).ToArray();
            if (tensor != name) Node("Identity", [tensor], name);
            _g.Output.Add(ValueInfo(name, TensorProto.Types.DataType.Float, dims));
        }

        static string DimName(int d) => d switch { -1 => "batch", -2 => "sequence", -3 => "rows", _ => d.ToString(CultureInfo.InvariantCulture) };
        static string Shape(int[] s) => "[" + string.Join(",", s.Select(d => d switch { -1 => "B", -2 => "T", -3 => "G", _ => d.ToString(CultureInfo.InvariantCulture) })) + "]";

        static ValueInfoProto ValueInfo(string name, TensorProto.Types.DataType type, string[] dims)
        {
            var shape = new TensorShapeProto();
            foreach (var d in dims)
                shape.Dim.Add(long.TryParse(d, NumberStyles.None, CultureInfo.InvariantCulture, out var v)
                    ? new TensorShapeProto.Types.Dimension { DimValue = v } : new TensorShapeProto.Types.Dimension { DimParam = d });
            return new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
            };
        }

        // ---------------- ops ----------------

        void Lower(OpInfo op)
        {
            _prefix = $"op{op.Id}.{op.Label}";
            if (op.Operands.Any(o => o.Kind == OperandKind.Buffer && _dead.Contains(o.Index))) { _dead.Add(op.Buffer); return; }
            string y;
            switch (op.Kind)
            {
                case OpKind.MatMul:
                    y = Node("MatMul", [Operand(op.Operands[0]), Operand(op.Operands[1])]);
                    break;
                case OpKind.Linear:
                    y = Node("MatMul", [Operand(op.Operands[0]), Transposed(op.Operands[1])]);
                    break;
                case OpKind.Embed:
                    y = Node("Gather", [Operand(op.Operands[0]), IntInput(op)], attrs: [Int("axis", 0)]);
                    break;
                case OpKind.LayerNorm:
                    y = Node("LayerNormalization", op.Operands.Select(Operand).ToArray(), attrs: [Int("axis", -1), Float("epsilon", LayerNormEps)]);
                    break;
                case OpKind.Attention:
                    y = Attention(op);
                    break;
                case OpKind.Gather:
                    // Every position goes through what follows (the Hugging Face heads' outputs are per position).
                    y = Operand(op.Operands[0]);
                    break;
                case OpKind.First:
                    y = Node("Gather", [Operand(op.Operands[0]), Int64Const("zero", [0], scalar: true)], attrs: [Int("axis", 1)]);
                    break;
                case OpKind.Transpose:
                    y = Node("Transpose", [Operand(op.Operands[0])], attrs: [Ints("perm", [0, 2, 1])]);
                    break;
                case OpKind.CrossEntropy:
                    _logits.Add((op, Operand(op.Operands[0])));
                    _dead.Add(op.Buffer);
                    return;
                case OpKind.Pointwise:
                    y = Pointwise(op);
                    break;
                default:
                    throw new ArgumentException($"The ONNX export has no translation for op {op.Id} ({op.Kind}) of {_info.Name}.");
            }
            _buf[op.Buffer] = y;
        }

        string IntInput(OpInfo op) => _ints.TryGetValue(op.IntInput, out var n) ? n
            : throw new ArgumentException($"Op {op.Id} ({op.Label}) of {_info.Name} reads an integer input that is not a [batch, sequence] input of the ONNX graph.");

        /// <summary>Multi-head self-attention over qkv [B,T,3C] as Kernels.Attention computes it (inference: no dropout).</summary>
        string Attention(OpInfo op)
        {
            int C = op.Shape[^1], H = op.Heads, D = C / H;
            var qkv = Operand(op.Operands[0]);
            // [B,T,3C] → [B,T,3,H,D] → [3,B,H,T,D]
            var split = Node("Reshape", [qkv, Int64Const("qkv_shape", [0, 0, 3, H, D])]);
            var heads = Node("Transpose", [split], attrs: [Ints("perm", [2, 0, 3, 1, 4])]);
            string Part(long i, string what) => Node("Gather", [heads, Int64Const(what, [i], scalar: true)], attrs: [Int("axis", 0)]);
            string q = Part(0, "q_index"), k = Part(1, "k_index"), v = Part(2, "v_index");
            var kt = Node("Transpose", [k], attrs: [Ints("perm", [0, 1, 3, 2])]);
            var scores = Node("Mul", [Node("MatMul", [q, kt]), FloatConst(1f / MathF.Sqrt(D))]);
            var masked = Node("Add", [scores, MaskBias(op)]);
            var probs = Node("Softmax", [masked], attrs: [Int("axis", -1)]);
            var ctx = Node("MatMul", [probs, v]);                                     // [B,H,T,D]
            var back = Node("Transpose", [ctx], attrs: [Ints("perm", [0, 2, 1, 3])]); // [B,T,H,D]
            return Node("Reshape", [back, Int64Const("ctx_shape", [0, 0, C])]);
        }

        /// <summary>[B,1,1,T]: -10000 where the mask is 0, else 0 (one per mask input, shared by every layer).</summary>
        string MaskBias(OpInfo op)
        {
            var mask = IntInput(op);
            return Cached("maskbias:" + mask, () =>
            {
                var save = _prefix; _prefix = mask;
                var isPad = Node("Equal", [mask, Int64Const("zero", [0], scalar: true)]);
                var bias = Node("Where", [isPad, FloatConst(MaskedScore), FloatConst(0f)]);
                var r = Node("Unsqueeze", [bias, Int64Const("axes_1_2", [1, 2])]);
                _prefix = save;
                return r;
            });
        }

        /// <summary>A fused element-wise kernel, node by node from its expression; dropout is 1 and folds away.</summary>
        string Pointwise(OpInfo op)
        {
            var kernel = _info.Kernels.FirstOrDefault(k => k.Name == op.Kernel)
                ?? throw new ArgumentException($"Model {_info.Name} names kernel '{op.Kernel}' but does not list it.");
            if (kernel.Nodes.Length == 0) throw new ArgumentException($"Kernel {kernel.Name} of {_info.Name} was generated without expression nodes; rebuild it with this version of Bert.");
            var vals = new (string? Name, double Const)[kernel.Nodes.Length];
            for (int i = 0; i < kernel.Nodes.Length; i++)
            {
                var n = kernel.Nodes[i];
                vals[i] = n.Op switch
                {
                    "in" => (Operand(op.Operands[(int)n.Value]), 0),
                    "const" => (null, n.Value),
                    "drop" => (null, 1.0),
                    _ => Apply(n.Op, n.Args.Select(a => vals[a]).ToArray(), kernel.Name),
                };
            }
            var result = vals[^1];
            return result.Name ?? throw new ArgumentException($"Kernel {kernel.Name} of {_info.Name} is a constant at inference; the ONNX export needs a tensor.");
        }

        (string? Name, double Const) Apply(string f, (string? Name, double Const)[] a, string kernel)
        {
            // Constant folding: only what inference makes constant (dropout's keep scale of 1).
            if (a.All(x => x.Name is null))
            {
                double x = a[0].Const, y = a.Length > 1 ? a[1].Const : 0;
                double? c = f switch
                {
                    "add" => x + y, "sub" => x - y, "mul" => x * y, "div" => x / y, "neg" => -x,
                    "exp" => Math.Exp(x), "log" => Math.Log(x), "tanh" => Math.Tanh(x), "sqrt" => Math.Sqrt(x), "abs" => Math.Abs(x),
                    "max" => Math.Max(x, y), "min" => Math.Min(x, y),
                    _ => null,
                };
                if (c is { } v) return (null, v);
            }
            if (f == "mul" && a[1].Name is null && a[1].Const == 1) return a[0];
            if (f == "mul" && a[0].Name is null && a[0].Const == 1) return a[1];
            if (f == "div" && a[1].Name is null && a[1].Const == 1) return a[0];
            string T(int i) => a[i].Name ?? FloatConst((float)a[i].Const);
            string? unary = f switch
            {
                "neg" => "Neg", "exp" => "Exp", "log" => "Log", "tanh" => "Tanh", "sqrt" => "Sqrt", "erf" => "Erf", "abs" => "Abs", _ => null,
            };
            if (unary is not null) return (Node(unary, [T(0)]), 0);
            string? binary = f switch { "add" => "Add", "sub" => "Sub", "mul" => "Mul", "div" => "Div", "max" => "Max", "min" => "Min", _ => null };
            if (binary is not null) return (Node(binary, [T(0), T(1)]), 0);
            string? cmp = f switch { "sel<" => "Less", "sel<=" => "LessOrEqual", "sel>" => "Greater", "sel>=" => "GreaterOrEqual", _ => null };
            if (cmp is not null) return (Node("Where", [Node(cmp, [T(0), T(1)]), T(2), T(3)]), 0);
            throw new ArgumentException($"Kernel {kernel} of {_info.Name} uses '{f}', which the ONNX export does not translate.");
        }

        // ---------------- operands and weights ----------------

        string Operand(OperandInfo o) => o.Kind switch
        {
            OperandKind.Buffer => _buf.TryGetValue(o.Index, out var n) ? n : throw new ArgumentException($"Model {_info.Name} reads buffer {o.Index} before any op writes it."),
            OperandKind.Input => _info.Inputs.First(i => i.Kind == InputKind.Tensor && i.Index == o.Index).Name,
            _ => Param(o),
        };

        /// <summary>A whole parameter, the first T rows of one (Positions), or consecutive ones stacked (Cat).</summary>
        string Param(OperandInfo o)
        {
            var p = _info.Parameters[o.Index];
            if (o.Shape.SequenceEqual(p.Shape)) return Initializer(p);
            if (o.Shape.Length == p.Shape.Length && o.Shape[0] == -2 && o.Shape.Skip(1).SequenceEqual(p.Shape.Skip(1)))
                return Cached($"rows:{p.Name}", () =>
                {
                    var save = _prefix; _prefix = p.HfName;
                    var r = Node("Slice", [Initializer(p), Int64Const("zero_1d", [0]), SeqLen(), Int64Const("zero_1d", [0])]);
                    _prefix = save;
                    return r;
                });
            if (o.Shape.All(d => d > 0) && o.Shape.Length == p.Shape.Length && o.Shape.Skip(1).SequenceEqual(p.Shape.Skip(1)))
            {
                var parts = new List<ParamInfo>();
                long rows = 0;
                for (int i = o.Index; i < _info.Parameters.Count && rows < o.Shape[0]; i++)
                {
                    var q = _info.Parameters[i];
                    if (!q.Shape.Skip(1).SequenceEqual(p.Shape.Skip(1))) break;
                    parts.Add(q); rows += q.Shape[0];
                }
                if (rows == o.Shape[0])
                    return Cached("cat:" + string.Join(",", parts.Select(q => q.Name)), () =>
                    {
                        var save = _prefix; _prefix = "Cat(" + string.Join(",", parts.Select(q => q.HfName)) + ")";
                        var r = Node("Concat", parts.Select(Initializer).ToArray(), attrs: [Int("axis", 0)]);
                        _prefix = save;
                        return r;
                    });
            }
            throw new ArgumentException($"Model {_info.Name} reads parameter {p.Name} {Shape(p.Shape)} as {Shape(o.Shape)}, a view the ONNX export does not translate.");
        }

        string Transposed(OperandInfo o)
        {
            var x = Operand(o);
            if (o.Kind != OperandKind.Param) return Node("Transpose", [x], attrs: [Ints("perm", [1, 0])]);
            return Cached("T:" + x, () => { var save = _prefix; _prefix = x; var r = Node("Transpose", [x], attrs: [Ints("perm", [1, 0])]); _prefix = save; return r; });
        }

        /// <summary>The sequence length as a 1-D int64 tensor [T], from the first [batch, sequence] input.</summary>
        string SeqLen() => _seqLen ??= Cached("seqlen", () =>
        {
            var input = _g.Input.FirstOrDefault(i => i.Type.TensorType.ElemType == (int)TensorProto.Types.DataType.Int64)?.Name
                ?? throw new ArgumentException($"Model {_info.Name} reads T rows of a table but has no [batch, sequence] input to take T from.");
            var save = _prefix; _prefix = "sequence";
            var r = Node("Shape", [input], attrs: [Int("start", 1), Int("end", 2)]);
            _prefix = save;
            return r;
        });

        string Initializer(ParamInfo p) => Cached("param:" + p.Name, () =>
        {
            var t = new TensorProto { Name = UniqueName(p.HfName), DataType = (int)TensorProto.Types.DataType.Float };
            t.Dims.AddRange(p.Shape.Select(d => (long)d));
            t.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(_params.AsSpan((int)p.Offset, (int)p.Length)));
            _g.Initializer.Add(t);
            return t.Name;
        });

        string FloatConst(float v) => Cached("f:" + BitConverter.SingleToInt32Bits(v), () =>
        {
            var t = new TensorProto { Name = UniqueName("const_" + v.ToString("R", CultureInfo.InvariantCulture)), DataType = (int)TensorProto.Types.DataType.Float };
            t.FloatData.Add(v);
            _g.Initializer.Add(t);
            return t.Name;
        });

        string Int64Const(string what, long[] values, bool scalar = false) => Cached($"i:{what}:{scalar}:{string.Join(",", values)}", () =>
        {
            var t = new TensorProto { Name = UniqueName(what), DataType = (int)TensorProto.Types.DataType.Int64 };
            if (!scalar) t.Dims.Add(values.Length);
            t.Int64Data.AddRange(values);
            _g.Initializer.Add(t);
            return t.Name;
        });

        string Cached(string key, Func<string> make)
        {
            if (_cache.TryGetValue(key, out var name)) return name;
            name = make();
            _cache[key] = name;
            return name;
        }

        readonly HashSet<string> _names = new();
        string UniqueName(string want)
        {
            var name = want;
            for (int i = 1; !_names.Add(name); i++) name = $"{want}_{i}";
            return name;
        }

        string Node(string opType, string[] inputs, string? output = null, AttributeProto[]? attrs = null)
        {
            var n = new NodeProto { OpType = opType, Name = UniqueName($"{_prefix}/{opType}_{_counter++}") };
            n.Input.AddRange(inputs);
            n.Output.Add(output ?? UniqueName(n.Name + ":0"));
            if (output is not null) _names.Add(output);
            if (attrs is not null) n.Attribute.AddRange(attrs);
            _g.Node.Add(n);
            return n.Output[0];
        }

        static AttributeProto Int(string name, long v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = v };
        static AttributeProto Float(string name, float v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = v };
        static AttributeProto Ints(string name, long[] v)
        {
            var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
            a.Ints.AddRange(v);
            return a;
        }
    }
}
