using System;
using System.CodeDom.Compiler;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Bert.Generators;

public static partial class Parser
{
    /// <summary>The metadata name with the containing types (Ns.Outer+Inner), so that a nested class and a top-level one
    /// of the same name stay apart.</summary>
    static string FullMetadataName(INamedTypeSymbol t) =>
        t.ContainingType is { } outer ? FullMetadataName(outer) + "+" + t.MetadataName : MetadataName(t);

    /// <summary>[Experiment(typeof(M), Name = value, …)] → its spec: the model named, the From experiment, and each named
    /// argument with the location of its value (where a check reports).</summary>
    public static ExperimentSpec ParseExperiment(GeneratorAttributeSyntaxContext ctx, CancellationToken ct)
    {
        var type = (INamedTypeSymbol)ctx.TargetSymbol;
        var decl = (TypeDeclarationSyntax)ctx.TargetNode;
        var attr = ctx.Attributes[0];
        var syntax = attr.ApplicationSyntaxReference?.GetSyntax(ct) as AttributeSyntax;
        var arguments = syntax?.ArgumentList?.Arguments ?? default;
        Loc ArgLoc(string? name)
        {
            foreach (var a in arguments)
                if (name is null ? a.NameEquals is null && a.NameColon is null : a.NameEquals?.Name.Identifier.ValueText == name) return Loc.From(a.Expression);
            return Loc.From(syntax ?? (SyntaxNode)decl);
        }
        var model = attr.ConstructorArguments.Length == 1 ? attr.ConstructorArguments[0].Value as INamedTypeSymbol : null;
        var args = new List<ExpArg>();
        string? from = null; bool fromIsExperiment = false;
        foreach (var kv in attr.NamedArguments)
        {
            ct.ThrowIfCancellationRequested();
            var v = kv.Value;
            if (kv.Key == "From")
            {
                // From = null is no start; any other type (an array, a class that is no experiment) is reported by the check.
                if (v.Value is INamedTypeSymbol f) { from = FullMetadataName(f); fromIsExperiment = HasAttr(f, "ExperimentAttribute"); }
                else if (v.Value is ITypeSymbol other) from = other.ToDisplayString();
                args.Add(new ExpArg(kv.Key, (v.Value as ITypeSymbol)?.Name ?? "", 0, false, ArgLoc(kv.Key)));
                continue;
            }
            string text = v.Value as string ?? "";
            double number = v.Value is IConvertible c and not string and not bool ? Convert.ToDouble(c, CultureInfo.InvariantCulture) : 0;
            args.Add(new ExpArg(kv.Key, text, number, v.Value is true, ArgLoc(kv.Key)));
        }
        // The generator adds a static to the class and lists it by name: a plain class directly in a namespace.
        string? notPlain = type.IsRecord ? "it is a record" : type.IsStatic ? "it is static" : type.IsGenericType ? "it is generic"
            : type.ContainingType is { } outer ? $"it is nested in {outer.Name}" : null;
        return new ExperimentSpec(
            type.ContainingNamespace.IsGlobalNamespace ? "" : type.ContainingNamespace.ToDisplayString(),
            type.Name, FullMetadataName(type), AccessibilityText(type.DeclaredAccessibility), IsPartial(type), notPlain,
            model is null ? "" : MetadataName(model), model?.Name ?? "", model is not null && HasAttr(model, "ModelAttribute"),
            model is not null && model.DeclaringSyntaxReferences.Length > 0, ArgLoc(null),
            from, fromIsExperiment, args.ToEquatable(), Loc.From(decl.Identifier.GetLocation()));
    }
}

/// <summary>The compiled form of one experiment: its source, or the diagnostics that stopped it.</summary>
public sealed record CompiledExperiment(string HintName, string? Source, EquatableArray<Diag> Diags);

/// <summary>Experiments: checks each [Experiment] against the footprint of the model it names (and of the experiment it
/// starts from), computes the training step's memory at its shape, and emits its <c>Experiment</c> static plus one list of
/// every experiment of the compilation.</summary>
public static class ExperimentCompiler
{
    // The values of Bert.Dsl's enums, in declaration order.
    static readonly string[] Jobs = { "Pretrain", "FineTune" };
    static readonly string[] Optimizers = { "AdamW", "Lamb" };
    static readonly string[] Precisions = { "Fp32", "Tf32", "Bf16" };
    static readonly string[] AttentionKernels = { "Default", "Flash" };
    static readonly string[] Devices = { "Cpu", "A100_40GB", "A100_80GB", "H100", "H200", "L4" };
    /// <summary>nvidia-smi's total memory of each device, in MiB (MemoryEstimate.CapacityOf in the runtime, which a test holds equal).</summary>
    public static readonly long[] DeviceMiB = { 0, 40_536, 81_920, 81_559, 143_771, 23_034 };
    public const long GpuReserve = 1L << 30;

    /// <summary>The embedded labeled sets and their classes (Bert.Models' DataSets; a test holds the two equal).</summary>
    public static readonly (string Name, int Classes)[] Sets =
        { ("amazon", 2), ("imdb", 2), ("yelp", 2), ("sst2", 2), ("pt-reviews", 2), ("pt-tweets", 3) };
    /// <summary>The embedded pre-training corpora by name (Bert.Models' DataSets.NamedCorpora; a test holds the two equal).</summary>
    public static readonly string[] Corpora = { "machado", "english" };
    static readonly string[] ReinitParts = { "qk", "qkv", "attention", "ffn", "layernorm", "pooler" };

    /// <summary>What an experiment needs of a compiled model.</summary>
    public static ModelFootprint Footprint(ModelSpec m, Graph g, Plan plan)
    {
        string head = g.IntInputs.Any(i => i.Kind == ArgKind.Rows) ? "pretraining"
            : g.Nodes.Any(n => n.Kind == OpKind.Transpose && n.Out.Consumers.Any(c => c.Kind == OpKind.CrossEntropy)) ? "question-answering"
            : g.IntInputs.FirstOrDefault(i => i.Kind == ArgKind.Labels) is { } l ? (l.Shape.Length == 1 ? "classifier" : "token-classifier") : "other";
        long Const(string n) => m.Constants.FirstOrDefault(c => c.Name == n)?.Value ?? -1;
        string full = "global::" + (m.Namespace.Length > 0 ? m.Namespace + "." : "") + m.ClassName;
        // A classifier's classes: its Classes constant, else the width of the logits its cross-entropy reads.
        long classes = Const("Classes");
        if (classes < 0 && head is ("classifier" or "token-classifier") && g.Nodes.FirstOrDefault(n => n.Kind == OpKind.CrossEntropy) is { } ce && ce.Inputs[0].Shape.Length > 0)
            classes = ce.Inputs[0].Shape[ce.Inputs[0].Shape.Length - 1];
        return new ModelFootprint(m.MetadataName, full, m.ClassName, g.ParamCount, Const("MaxLen"), classes, head,
            plan.Bufs.Select(b => new FootBuf(b.SlotTrain, Foot(b.Size), FlashHeads(plan, b))).ToEquatable(), plan.SlotsTrain,
            g.Nodes.Where(n => n.Kind is OpKind.Linear or OpKind.MatMul && n.Inputs.Count >= 2)
                .Select(n => new FootGemm(n.Inputs[0].Shape.ToEquatable(), n.Inputs[1].Shape.ToEquatable())).ToEquatable(),
            g.Params.Select(p => new FootParam(p.Hf, Sym.Shape(p.Shape))).ToEquatable(),
            g.Nodes.Where(n => n.Kind is OpKind.Attention or OpKind.LayerNorm or OpKind.Embed)
                .Select(n => new FootRowOp(n.Kind, n.Out.Shape.Length > 0 ? n.Out.Shape[n.Out.Shape.Length - 1] : 1, n.Heads)).ToEquatable(),
            g.Nodes.Where(n => n.Kind == OpKind.Pointwise)
                .Select(n => new FootKernel(Foot(n.Out.Size), n.Inputs.Select(i => Foot(i.Size)).ToEquatable())).ToEquatable(),
            plan.Shadows.OrderBy(x => x.Value).Select(x => Foot(x.Key.Size)).ToEquatable());
    }

    static FootSize Foot(Size s) => new(s.C, s.PB, s.PT, s.PG);

    /// <summary>Whether the flash kernels take this head size (CudaKernels.FlashHeadSizes: multiples of 8 up to 128).</summary>
    public static bool FlashHeadSize(int d) => d > 0 && d % 8 == 0 && d <= 128;

    /// <summary>The floats of a probabilities buffer the flash kernels take (CudaExec.FlashStatisticsFloats): B·H·T row
    /// log-sum-exps and the dropout mask's bits, ⌈T/32⌉ words a row.</summary>
    public static long FlashStatisticsFloats(int batch, int heads, int seq) => (long)batch * heads * seq * (1 + (seq + 31) / 32);

    /// <summary>The heads of the attention whose probabilities buffer <paramref name="b"/> is, when the flash kernels take its
    /// head size (with them it holds B·H·T row statistics and the keep mask's bits, CudaModel's layout); else 0.</summary>
    static int FlashHeads(Plan plan, Buf b)
    {
        foreach (var ((node, k), saved) in plan.Saved)
            if (saved == b && k == 0 && node.Kind == OpKind.Attention && node.Heads > 0 && node.Out.Shape.Length > 0
                && FlashHeadSize(node.Out.Shape[node.Out.Shape.Length - 1] / node.Heads))
                return node.Heads;
        return 0;
    }

    /// <summary>A size c·B^b·T^t·G^g in elements at this shape (SizeExpr.Eval in the runtime).</summary>
    static long Eval(FootSize z, int batch, int seq, int rows)
    {
        long v = z.C;
        for (int i = 0; i < z.PB; i++) v *= batch;
        for (int i = 0; i < z.PT; i++) v *= seq;
        for (int i = 0; i < z.PG; i++) v *= rows;
        return v;
    }

    // CudaModel's constants (CudaExec.PointwiseRowChunk, CudaKernels.RowChunk and EmbedSegmentRows; a test holds them equal).
    public const int PointwiseRowChunk = 32, RowChunk = 16, EmbedSegmentRows = 32;

    /// <summary>The floats of CudaModel's kernel scratch at this shape (CudaModel.ScratchFloats): attention's head-major
    /// copies and probabilities' gradient (with <paramref name="flash"/>, Δ per query row instead where the flash kernels
    /// take the head size), LayerNorm's and the embedding's partial sums, the fused kernels' partial sums of broadcast
    /// gradients.</summary>
    public static long ScratchFloats(ModelFootprint f, int batch, int seq, int rows, bool flash = false)
    {
        long n = Math.Max(Math.Max((long)batch * seq, rows), batch);
        long s = n + 16;
        foreach (var op in f.RowOps)
        {
            if (op.Kind == OpKind.Attention)
                s = Math.Max(s, flash && op.Heads > 0 && FlashHeadSize(op.Last / op.Heads) ? (long)batch * op.Heads * seq
                    : 7L * batch * seq * op.Last + 2L * batch * op.Heads * seq * seq);
            if (op.Kind == OpKind.LayerNorm && op.Last > 0) s = Math.Max(s, 2L * ((n + RowChunk - 1) / RowChunk) * op.Last);
            if (op.Kind == OpKind.Embed) s = Math.Max(s, (2 * n / EmbedSegmentRows + 1) * op.Last);
        }
        foreach (var k in f.Kernels)
        {
            long out_ = Eval(k.Output, batch, seq, rows);
            var bs = k.Inputs.Select(i => Eval(i, batch, seq, rows)).Where(x => x != out_).ToList();
            if (bs.Count == 0 || bs.Min() == 0) continue;
            long nb = bs.Min(), chunks = (out_ / nb + PointwiseRowChunk - 1) / PointwiseRowChunk;
            s = Math.Max(s, bs.Count * chunks * nb);
        }
        return s;
    }

    /// <summary>An experiment's values with the defaults filled in.</summary>
    sealed class Values
    {
        public int Job = 1, Batch = 32, Seq = 128, Accumulate = 1, Steps, Epochs, Optimizer, Precision, Device, Attention, Seed = 1, Runs = 1;
        public double Lr, Warmup = 0.1, MaskProb = 0.15, MemoryGiB;
        public string Data = "", Reinit = "";
        public bool NextSentence = true, FrequencyBias;
    }

    static Values Read(ExperimentSpec e)
    {
        var v = new Values();
        foreach (var a in e.Args)
            switch (a.Name)
            {
                case "Job": v.Job = (int)a.Number; break;
                case "Data": v.Data = a.Text; break;
                case "Batch": v.Batch = (int)a.Number; break;
                case "Seq": v.Seq = (int)a.Number; break;
                case "Accumulate": v.Accumulate = (int)a.Number; break;
                case "Steps": v.Steps = (int)a.Number; break;
                case "Epochs": v.Epochs = (int)a.Number; break;
                case "LearningRate": v.Lr = a.Number; break;
                case "Warmup": v.Warmup = a.Number; break;
                case "Optimizer": v.Optimizer = (int)a.Number; break;
                case "Precision": v.Precision = (int)a.Number; break;
                case "Device": v.Device = (int)a.Number; break;
                case "Attention": v.Attention = (int)a.Number; break;
                case "MemoryGiB": v.MemoryGiB = a.Number; break;
                case "Reinit": v.Reinit = a.Text; break;
                case "MaskProb": v.MaskProb = a.Number; break;
                case "NextSentence": v.NextSentence = a.Flag; break;
                case "FrequencyBias": v.FrequencyBias = a.Flag; break;
                case "Seed": v.Seed = (int)a.Number; break;
                case "Runs": v.Runs = (int)a.Number; break;
            }
        bool pre = v.Job == 0;
        if (!e.Args.Any(a => a.Name == "Steps") && pre) v.Steps = 1000;
        if (!e.Args.Any(a => a.Name == "Epochs") && !pre) v.Epochs = 3;
        if (!e.Args.Any(a => a.Name == "LearningRate")) v.Lr = pre ? 5e-4 : 1e-4;
        return v;
    }

    static string Text(double d) => d.ToString("R", CultureInfo.InvariantCulture);
    static string GiB(long bytes) => (bytes / (double)(1L << 30)).ToString("0.00", CultureInfo.InvariantCulture) + " GiB";

    /// <summary>The training step's memory at one batch size: activations (the plan's slots at B, T, G, 16-element
    /// aligned, 4 bytes each), parameter state and bf16 buffers, as MemoryEstimate.For computes it at run time. With
    /// <paramref name="flash"/> (an experiment's flash attention) a probabilities buffer the flash kernels replace holds B·H·T
    /// row statistics and the keep mask's bits, and attention's scratch is theirs.</summary>
    public static (long Activations, long State, long Bf16, long Scratch) Memory(ModelFootprint f, int batch, int seq, int rows, bool gpu, bool bf16, bool flash = false)
    {
        var slot = new long[f.SlotsTrain];
        foreach (var b in f.Bufs)
            if (b.SlotTrain >= 0)
                slot[b.SlotTrain] = Math.Max(slot[b.SlotTrain], flash && b.FlashHeads > 0 ? FlashStatisticsFloats(batch, b.FlashHeads, seq) : Eval(b.Size, batch, seq, rows));
        long activations = slot.Sum(s => (s + 15) & ~15L) * 4;
        long state = f.ParamCount * (gpu ? 17 : 16);
        long extra = 0;
        if (gpu && bf16)
        {
            long Size(EquatableArray<int> shape, int from, int to)
            {
                long n = 1;
                var s = shape.ToArray();
                for (int k = from; k < to; k++) n *= s[k] switch { Sym.B => batch, Sym.T => seq, Sym.G => rows, var d => d };
                return n;
            }
            long most = 16;
            foreach (var gm in f.Gemms)
            {
                var x = gm.X.ToArray();
                long r = Size(gm.X, 0, x.Length - 1), k = x[x.Length - 1], wn = Size(gm.W, 0, gm.W.Count);
                most = Math.Max(most, Math.Max(Math.Max(r * k, r * (wn / Math.Max(1, k))), wn));
            }
            // the weights' bf16 copy, the two operand slots, the shadows of the products' activation operands (CudaModel.ShadowBytes)
            extra = f.ParamCount * 2 + ((most + 63) & ~63L) * 4 + f.Shadows.Sum(z => (Eval(z, batch, seq, rows) * 2 + 127) & ~127L);
        }
        return (activations, state, extra, gpu ? ScratchFloats(f, batch, seq, rows, flash) * 4 : 0);
    }

    /// <summary>The masked-LM rows a pre-training micro-batch binds at most (MemoryEstimate.PretrainingRows).</summary>
    public static int PretrainingRows(int batch, int seq, double maskProb)
    {
        long perSeq = Math.Max(20, (long)Math.Ceiling(seq * maskProb * 1.05));
        long rows = (batch * perSeq + 31) / 32 * 32;
        return (int)Math.Min(rows, (long)batch * seq);
    }

    public static EquatableArray<CompiledExperiment> Compile(EquatableArray<ExperimentSpec> all, EquatableArray<ModelFootprint> models)
    {
        var result = new List<CompiledExperiment>();
        var byName = new Dictionary<string, ExperimentSpec>();
        foreach (var e in all) byName[e.MetadataName] = e;
        foreach (var e in all)
        {
            var hint = e.MetadataName.Replace('`', '_') + ".Experiment.g.cs";
            try
            {
                var diags = new List<Diag>();
                var memory = Check(e, byName, models, diags);
                result.Add(diags.Count > 0 || memory is null
                    ? new CompiledExperiment(hint, null, diags.ToEquatable())
                    : new CompiledExperiment(hint, Emit(e, byName, memory.Value), EquatableArray<Diag>.Empty));
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                result.Add(new CompiledExperiment(hint, null, new[] { new Diag("BERT0299", e.Loc, new[] { e.ClassName, ex.GetType().Name + ": " + ex.Message }.ToEquatable()) }.ToEquatable()));
            }
        }
        return result.ToEquatable();
    }

    /// <summary>Every check of one experiment; its memory estimate and rows when it passes (null when the model itself did
    /// not compile: its own diagnostics say why).</summary>
    static (long Activations, long State, long Bf16, long Scratch, long Capacity, int Rows, int BoundSeq)? Check(ExperimentSpec e, Dictionary<string, ExperimentSpec> byName,
        EquatableArray<ModelFootprint> models, List<Diag> diags)
    {
        void Report(string id, Loc loc, params string[] args) => diags.Add(new Diag(id, loc, args.ToEquatable()));
        Loc At(string name, Loc fallback) => e.Args.FirstOrDefault(a => a.Name == name)?.Loc ?? fallback;
        bool Given(string name) => e.Args.Any(a => a.Name == name);
        if (!e.IsPartial || e.NotPlain is not null) { Report("BERT0210", e.Loc, e.ClassName, e.NotPlain ?? "it is not partial"); return null; }
        // Two experiments of one name (in any case): the later one in ordinal order of their full names is told.
        if (byName.Values.Where(x => string.Equals(x.ClassName, e.ClassName, StringComparison.OrdinalIgnoreCase) && string.CompareOrdinal(x.MetadataName, e.MetadataName) < 0)
            .OrderBy(x => x.MetadataName, StringComparer.Ordinal).FirstOrDefault() is { } first)
        {
            Report("BERT0222", e.Loc, e.ClassName, first.MetadataName);
            return null;
        }
        if (!e.ModelIsModel || !e.ModelInCompilation)
        {
            Report("BERT0211", e.ModelLoc, e.ClassName, e.ModelDisplay.Length == 0 ? "the type given" : e.ModelDisplay,
                e.ModelIsModel ? "a model of another assembly (declare the experiment in the project that declares the model)" : "not a [Model] class");
            return null;
        }
        var v = Read(e);
        bool pre = v.Job == 0;
        string job = pre ? "pre-training" : "fine-tuning";

        // Ranges, each at its argument; the enums first (a cast number outside them names nothing).
        void Range(string name, bool ok, string value, string rule) { if (!ok) Report("BERT0212", At(name, e.Loc), name, value, rule); }
        void InEnum(string name, int value, string[] names) =>
            Range(name, value >= 0 && value < names.Length, value.ToString(CultureInfo.InvariantCulture), "one of " + string.Join(", ", names.Select(x => name + "." + x)));
        InEnum("Job", v.Job, Jobs);
        InEnum("Optimizer", v.Optimizer, Optimizers);
        InEnum("Precision", v.Precision, Precisions);
        InEnum("Device", v.Device, Devices);
        InEnum("Attention", v.Attention, AttentionKernels);
        if (diags.Count > 0) return null;
        Range("Batch", v.Batch >= 1, v.Batch.ToString(CultureInfo.InvariantCulture), "at least 1");
        Range("Seq", v.Seq >= 1, v.Seq.ToString(CultureInfo.InvariantCulture), "at least 1");
        Range("Accumulate", v.Accumulate >= 1, v.Accumulate.ToString(CultureInfo.InvariantCulture), "at least 1");
        if (pre) Range("Steps", v.Steps >= 1, v.Steps.ToString(CultureInfo.InvariantCulture), "at least 1");
        else Range("Epochs", v.Epochs >= 1, v.Epochs.ToString(CultureInfo.InvariantCulture), "at least 1");
        Range("LearningRate", v.Lr > 0 && v.Lr < 1, Text(v.Lr), "between 0 and 1, e.g. 1e-4");
        Range("Warmup", v.Warmup >= 0 && v.Warmup < 1, Text(v.Warmup), "a fraction of the steps in [0, 1)");
        Range("MaskProb", v.MaskProb > 0 && v.MaskProb < 1, Text(v.MaskProb), "between 0 and 1 (BERT uses 0.15)");
        Range("MemoryGiB", v.MemoryGiB >= 0, Text(v.MemoryGiB), "0 (the device's) or more");
        Range("Seed", v.Seed >= 0, v.Seed.ToString(CultureInfo.InvariantCulture), "0 or more");
        Range("Runs", v.Runs >= 1, v.Runs.ToString(CultureInfo.InvariantCulture), "at least 1");

        // Arguments of the other job.
        foreach (var name in pre ? new[] { "Epochs", "From", "Reinit", "Runs" } : new[] { "Steps", "MaskProb", "NextSentence", "FrequencyBias" })
            if (Given(name))
                Report("BERT0214", At(name, e.Loc), name, job, pre
                    ? name == "Runs" ? "pre-training makes one checkpoint for the experiments that start from it" : "pre-training counts Steps and starts from a fresh model"
                    : "fine-tuning counts Epochs and has no masked-LM objective");

        var model = models.FirstOrDefault(m => m.MetadataName == e.Model);
        if (model is null) return null;   // the model did not compile; its diagnostics say why
        if (v.Seq > model.MaxLen && v.Seq >= 1)
            Report("BERT0213", At("Seq", e.ModelLoc), v.Seq.ToString(CultureInfo.InvariantCulture), model.ClassName, model.MaxLen.ToString(CultureInfo.InvariantCulture));

        // The job against the model's head.
        bool fits = pre ? model.Head == "pretraining" : model.Head is "classifier" or "token-classifier" or "question-answering";
        string headText(string h) => h switch
        {
            "pretraining" => "a pre-training model (masked-LM rows)",
            "classifier" => "a classifier (a label per text)",
            "token-classifier" => "a tagger (a label per token)",
            "question-answering" => "a question-answering model (an answer's start and end per text)",
            _ => "a model without a training head",
        };
        if (!fits)
            Report("BERT0215", At("Job", e.ModelLoc), e.ClassName, job, model.ClassName, headText(model.Head),
                pre ? "name a model whose Forward takes Rows and their masked-LM Labels, or set Job = Job.FineTune" : "name a classifier, tagger or question-answering model, or set Job = Job.Pretrain");

        // Data: a named set must exist and fit the model's classes; a corpus name must be embedded.
        bool LooksLikePath(string s) => s.IndexOfAny(new[] { '/', '\\', '.' }) >= 0;
        var dataLoc = At("Data", e.Loc);
        if (pre)
        {
            foreach (var part in v.Data.Split(',').Select(p => p.Trim()).Where(p => p.Length > 0))
                if (!LooksLikePath(part) && !Corpora.Contains(part, StringComparer.OrdinalIgnoreCase) && !Sets.Any(s => string.Equals(s.Name, part, StringComparison.OrdinalIgnoreCase)))
                    Report("BERT0217", dataLoc, part, "a pre-training corpus", string.Join(", ", Corpora.Concat(Sets.Select(s => s.Name))) + ", or a file path (empty: the embedded English corpus)");
        }
        else if (v.Data.Length == 0)
            Report("BERT0217", dataLoc, "(none)", "a fine-tuning set", string.Join(", ", Sets.Select(s => s.Name)) + ", or a file path");
        else if (Sets.FirstOrDefault(s => string.Equals(s.Name, v.Data, StringComparison.OrdinalIgnoreCase)) is { Name: not null } set)
        {
            if (fits && model.Head is "token-classifier" or "question-answering")
                Report("BERT0215", dataLoc, e.ClassName, "fine-tuning on " + set.Name, model.ClassName, headText(model.Head),
                    $"{set.Name} labels whole texts: name a classifier, or give {(model.Head == "token-classifier" ? "a CoNLL file for the tagger" : "a SQuAD file for the question-answering model")}");
            else if (fits && model.Classes >= 0 && model.Classes < set.Classes)
                Report("BERT0216", dataLoc, set.Name, set.Classes.ToString(CultureInfo.InvariantCulture), model.ClassName, model.Classes.ToString(CultureInfo.InvariantCulture));
        }
        else if (!LooksLikePath(v.Data))
            Report("BERT0217", dataLoc, v.Data, "a fine-tuning set", string.Join(", ", Sets.Select(s => s.Name)) + ", or a file path");

        // Precision against the device.
        if (v.Device == 0 && v.Precision != 0)
            Report("BERT0218", At("Precision", e.Loc), Precisions[v.Precision], "the CPU computes its products in fp32: use Precision.Fp32, or name a GPU Device");

        // The flash attention: a GPU, bf16, and head sizes its kernels take (CudaKernels.FlashHeadSizes).
        if (v.Attention == 1)
        {
            var at = At("Attention", e.Loc);
            int[] heads = model.RowOps.Where(o => o.Kind == OpKind.Attention && o.Heads > 0).Select(o => o.Last / o.Heads).Distinct().ToArray();
            if (v.Device == 0)
                Report("BERT0223", at, "a GPU Device", "it runs on tensor cores; name a GPU Device, or drop Attention");
            else if (v.Precision != 2)
                Report("BERT0223", at, "Precision.Bf16", "its products take bf16 operands; set Precision = Precision.Bf16, or drop Attention");
            else if (heads.Length == 0)
                Report("BERT0223", at, "an attention to run", model.ClassName + " has none; drop Attention");
            else if (heads.Any(d => !FlashHeadSize(d)))
                Report("BERT0223", at, "head sizes that are multiples of 8 up to 128",
                    $"{model.ClassName}'s is {heads.First(d => !FlashHeadSize(d)).ToString(CultureInfo.InvariantCulture)}; drop Attention");
        }

        // From: an experiment whose model's tensors fit this one's.
        if (e.From is not null && !pre)
        {
            var fromLoc = At("From", e.Loc);
            if (!e.FromIsExperiment || !byName.TryGetValue(e.From, out var src))
                Report("BERT0220", fromLoc, e.ClassName, "its From type is not an [Experiment] of this project");
            else
            {
                var seen = new HashSet<string> { e.MetadataName };
                var step = src;
                bool cycle = false;
                while (step is not null)
                {
                    if (!seen.Add(step.MetadataName)) { cycle = true; break; }
                    step = step.From is { } next && byName.TryGetValue(next, out var n2) ? n2 : null;
                }
                if (cycle) Report("BERT0220", fromLoc, e.ClassName, $"starting from {src.ClassName} leads back to itself");
                else if (Read(src).Runs is > 1 and var runs) Report("BERT0220", fromLoc, e.ClassName, $"{src.ClassName} has Runs = {runs}, one checkpoint each; start from an experiment of one run");
                else if (models.FirstOrDefault(m => m.MetadataName == src.Model) is { } fm)
                {
                    var shared = model.Params.Where(p => fm.Params.Any(q => q.Hf == p.Hf)).ToList();
                    var clash = shared.FirstOrDefault(p => fm.Params.First(q => q.Hf == p.Hf).Shape != p.Shape);
                    if (shared.Count == 0)
                        Report("BERT0220", fromLoc, e.ClassName, $"{src.ClassName} trains {fm.ClassName}, which shares no tensor with {model.ClassName}");
                    else if (clash is not null)
                        Report("BERT0220", fromLoc, e.ClassName, $"{src.ClassName} trains {fm.ClassName}, whose {clash.Hf} is {fm.Params.First(q => q.Hf == clash.Hf).Shape} where {model.ClassName} has {clash.Shape} (another size)");
                }
            }
        }
        if (!pre && v.Reinit.Trim().Length > 0 && v.Reinit.Trim() != "none")
        {
            var reinitLoc = At("Reinit", e.Loc);
            if (e.From is null) Report("BERT0221", reinitLoc, v.Reinit, "it needs From: without a pre-trained start every tensor starts afresh already");
            foreach (var part in v.Reinit.Split(',').Select(p => p.Trim()).Where(p => p.Length > 0))
            {
                bool top = part.StartsWith("top-", StringComparison.Ordinal) && int.TryParse(part.Substring(4), NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n > 0;
                if (!top && !ReinitParts.Contains(part))
                    Report("BERT0221", reinitLoc, v.Reinit, $"'{part}' is not a part; use a comma-separated list of {string.Join(", ", ReinitParts)}, top-N");
            }
        }
        if (diags.Count > 0) return null;

        // Memory: the step at this shape against the device's.
        bool gpu = v.Device != 0, bf16 = v.Precision == 2;
        int seq = BoundSeq(v.Seq, (int)model.MaxLen, pre, gpu);
        int Rows(int b) => pre ? PretrainingRows(b, v.Seq, v.MaskProb) : 0;
        long capacity = v.MemoryGiB > 0 ? (long)(v.MemoryGiB * (1L << 30)) : gpu ? (DeviceMiB[v.Device] << 20) - GpuReserve : 0;
        bool flash = v.Attention == 1;   // BERT0223 above holds it to a GPU, bf16 and head sizes the kernels take
        long Total(int b) { var (a, st, x, sc) = Memory(model, b, seq, Rows(b), gpu, bf16, flash); return a + st + x + sc; }
        var (act, state, extra, scratch) = Memory(model, v.Batch, seq, Rows(v.Batch), gpu, bf16, flash);
        if (capacity > 0 && act + state + extra + scratch > capacity)
        {
            int lo = 0, hi = v.Batch - 1;   // the largest batch that fits: the estimate grows with the batch
            while (lo < hi)
            {
                int mid = (lo + hi + 1) / 2;
                if (Total(mid) <= capacity) lo = mid; else hi = mid - 1;
            }
            string where = v.MemoryGiB > 0 ? $"the {GiB(capacity)} given by MemoryGiB" : $"an {Devices[v.Device]}'s {GiB(capacity)} (its memory less {GiB(GpuReserve)} for the CUDA context and libraries)";
            long perStep = (long)v.Batch * v.Accumulate;
            string advice = lo < 1 ? "not even Batch = 1 fits: choose a smaller model, a shorter Seq or a larger Device"
                : $"at most Batch = {lo} fits; Batch = {lo} with Accumulate = {(perStep + lo - 1) / lo} keeps about {perStep} sequences per step";
            var parts = $"activations {GiB(act)} at B={v.Batch}, T={seq}{(flash ? " with the flash attention's row statistics" : "")}; weights, gradients and optimizer state {GiB(state)}";
            if (extra > 0) parts += $"; bf16 copies {GiB(extra)}";
            if (scratch > 0) parts += $"; kernel scratch {GiB(scratch)}";
            Report("BERT0219", At("Batch", At("Device", e.Loc)), e.ClassName, GiB(act + state + extra + scratch), where, parts, advice);
            return null;
        }
        return (act, state, extra, scratch, capacity, Rows(v.Batch), seq);
    }

    /// <summary>The sequence length a training step binds: Seq, except that fine-tuning on a GPU pads each batch to a
    /// multiple of 8 tokens within MaxLen (FinetuneJob.GraphSeqMultiple), so that CUDA graphs replay.</summary>
    public static int BoundSeq(int seq, int maxLen, bool pretraining, bool gpu) =>
        pretraining || !gpu ? seq : Math.Min(maxLen, (seq + 7) / 8 * 8);

    static string Lit(string s) => "@\"" + s.Replace("\"", "\"\"") + "\"";

    static string Emit(ExperimentSpec e, Dictionary<string, ExperimentSpec> byName, (long Activations, long State, long Bf16, long Scratch, long Capacity, int Rows, int BoundSeq) memory)
    {
        var v = Read(e);
        var sw = new StringWriter();
        var w = new IndentedTextWriter(sw, "    ");
        const string RT = "global::Bert.Runtime", D = "global::Bert.Dsl";
        w.WriteLine("// <auto-generated/>");
        w.WriteLine("#nullable enable");
        if (e.Namespace.Length > 0) { w.WriteLine($"namespace {e.Namespace}"); w.WriteLine("{"); w.Indent++; }
        w.WriteLine($"partial class {e.ClassName} : {RT}.IDeclaredExperiment");
        w.WriteLine("{");
        w.Indent++;
        w.WriteLine("/// <summary>The experiment as declared and checked at build time, with its memory estimate.</summary>");
        string model = "global::" + e.Model.Replace('+', '.');
        string from = e.From is not null && byName.TryGetValue(e.From, out var src) ? Lit(src.ClassName) : "null";
        w.WriteLine($"public static {RT}.ExperimentInfo Experiment {{ get; }} = {RT}.ExperimentInfo.Of<{model}>(");
        w.Indent++;
        w.WriteLine($"name: {Lit(e.ClassName)}, job: {D}.Job.{Jobs[v.Job]}, data: {Lit(v.Data)},");
        w.WriteLine($"batch: {v.Batch}, seq: {v.Seq}, accumulate: {v.Accumulate}, steps: {v.Steps}, epochs: {v.Epochs},");
        w.WriteLine($"learningRate: {Text(v.Lr)}, warmup: {Text(v.Warmup)}, optimizer: {D}.Optimizer.{Optimizers[v.Optimizer]},");
        w.WriteLine($"precision: {D}.Precision.{Precisions[v.Precision]}, device: {D}.Device.{Devices[v.Device]}, attention: {D}.AttentionKernel.{AttentionKernels[v.Attention]}, from: {from}, reinit: {Lit(v.Reinit)},");
        w.WriteLine($"maskProb: {Text(v.MaskProb)}, nextSentence: {(v.NextSentence ? "true" : "false")}, frequencyBias: {(v.FrequencyBias ? "true" : "false")}, seed: {v.Seed}, runs: {v.Runs}, rows: {memory.Rows},");
        w.WriteLine($"memory: new {RT}.MemoryEstimate({memory.Activations}L, {memory.State}L, {memory.Bf16}L, {memory.Scratch}L, {memory.Capacity}L, {memory.BoundSeq}));");
        w.Indent--;
        w.Indent--;
        w.WriteLine("}");
        if (e.Namespace.Length > 0) { w.Indent--; w.WriteLine("}"); }
        return sw.ToString();
    }

    /// <summary>Bert.Generated.DeclaredExperiments.All: every experiment of the compilation that compiled, by name.</summary>
    public static string? EmitList(EquatableArray<ExperimentSpec> all, EquatableArray<CompiledExperiment> compiled)
    {
        if (all.Count == 0) return null;
        var ok = all.Zip(compiled, (e, c) => (e, c)).Where(x => x.c.Source is not null).Select(x => x.e).OrderBy(x => x.MetadataName, StringComparer.Ordinal).ToList();
        var sw = new StringWriter();
        var w = new IndentedTextWriter(sw, "    ");
        w.WriteLine("// <auto-generated/>");
        w.WriteLine("#nullable enable");
        w.WriteLine("namespace Bert.Generated");
        w.WriteLine("{");
        w.Indent++;
        w.WriteLine("/// <summary>The experiments declared in this project ([Experiment] classes), in name order.</summary>");
        w.WriteLine("internal static class DeclaredExperiments");
        w.WriteLine("{");
        w.Indent++;
        w.WriteLine("public static global::System.Collections.Generic.IReadOnlyList<global::Bert.Runtime.ExperimentInfo> All { get; } = new global::Bert.Runtime.ExperimentInfo[]");
        w.WriteLine("{");
        w.Indent++;
        foreach (var e in ok) w.WriteLine("global::" + e.MetadataName.Replace('+', '.') + ".Experiment,");
        w.Indent--;
        w.WriteLine("};");
        w.Indent--;
        w.WriteLine("}");
        w.Indent--;
        w.WriteLine("}");
        return sw.ToString();
    }
}
