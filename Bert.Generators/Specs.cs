using System;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace Bert.Generators;

// The pipeline models: value-equatable records of strings, numbers and EquatableArrays. No ISymbol, no
// SyntaxNode, no Location past the parser (a test walks them by reflection to keep it so).

/// <summary>A source location that compares by value; turned back into a Location only to report.</summary>
public sealed record Loc(string Path, int Start, int Length, int StartLine, int StartChar, int EndLine, int EndChar)
{
    public static readonly Loc None = new("", 0, 0, 0, 0, 0, 0);
    public static Loc From(Location? l)
    {
        if (l is null || l.SourceTree is null) return None;
        var s = l.GetLineSpan();
        return new(s.Path, l.SourceSpan.Start, l.SourceSpan.Length, s.StartLinePosition.Line, s.StartLinePosition.Character, s.EndLinePosition.Line, s.EndLinePosition.Character);
    }
    public static Loc From(SyntaxNode n) => From(n.GetLocation());
    public Location ToLocation() => Path.Length == 0 ? Location.None :
        Location.Create(Path, new TextSpan(Start, Length), new LinePositionSpan(new LinePosition(StartLine, StartChar), new LinePosition(EndLine, EndChar)));
    public override string ToString() => Path.Length == 0 ? "<builtin>" : $"{System.IO.Path.GetFileName(Path)}({StartLine + 1},{StartChar + 1})";
}

public sealed record Diag(string Id, Loc Loc, EquatableArray<string> Args);

// ---- scalar expressions of [Pointwise] functions ----
public abstract record PwExpr(Loc Loc);
public sealed record PwVar(int Index, Loc Loc) : PwExpr(Loc);
public sealed record PwLit(double Value, Loc Loc) : PwExpr(Loc);
public sealed record PwUnary(string Op, PwExpr X, Loc Loc) : PwExpr(Loc);
public sealed record PwBinary(string Op, PwExpr L, PwExpr R, Loc Loc) : PwExpr(Loc);
/// <summary>A math primitive (Exp, Log, Tanh, Sqrt, Erf, Max, Min, Abs) or another [Pointwise] function by name.</summary>
public sealed record PwCall(string Name, bool IsPrimitive, EquatableArray<PwExpr> Args, Loc Loc) : PwExpr(Loc);
/// <summary>cond ? a : b with cond = (L op R), op one of &lt; &lt;= &gt; &gt;=.</summary>
public sealed record PwCond(string Cmp, PwExpr L, PwExpr R, PwExpr Then, PwExpr Else, Loc Loc) : PwExpr(Loc);

public sealed record PointwiseSpec(string Name, string ContainingType, string Namespace, string TypeKeyword, bool ContainingIsPartial,
    EquatableArray<string> Parameters, PwExpr? Body, EquatableArray<Diag> Diags, Loc Loc);

// ---- forward-method syntax ----
public abstract record Ex(Loc Loc);
public sealed record ExIdent(string Name, Loc Loc) : Ex(Loc);
public sealed record ExNum(double Value, Loc Loc) : Ex(Loc);
/// <summary>A parameter of a block field, e.g. embeddings.Word (tied weights).</summary>
public sealed record ExMember(string Target, string Name, Loc Loc) : Ex(Loc);
public sealed record ExBinary(string Op, Ex L, Ex R, Loc Loc) : Ex(Loc);
public sealed record ExUnary(string Op, Ex X, Loc Loc) : Ex(Loc);
/// <summary>Something the forward method may not contain; Description says what.</summary>
public sealed record ExBad(string Description, Loc Loc) : Ex(Loc);

public abstract record Stmt(Loc Loc);
public sealed record StLet(string Name, Ex Value, Loc Loc) : Stmt(Loc);
public sealed record StReturn(Ex Value, Loc Loc) : Stmt(Loc);
public sealed record StBad(string Description, Loc Loc) : Stmt(Loc);

public enum ArgKind { Tensor, Tokens, Mask, Labels, Rows, Other }
public sealed record ArgSpec(string Name, ArgKind Kind, EquatableArray<int> Shape, bool HasShape, Loc Loc);
public sealed record MethodSpec(EquatableArray<ArgSpec> Args, EquatableArray<Stmt> Body, Loc Loc);

public sealed record ParamSpec(string Name, EquatableArray<int> Shape, int Init, string? Hf, Loc Loc, Loc ShapeLoc);
public sealed record SubSpec(string Name, string BlockType, int Count, bool Shared, string? Hf, Loc Loc);
public sealed record BlockSpec(string Name, bool IsPartial, EquatableArray<ParamSpec> Params, EquatableArray<SubSpec> Subs,
    EquatableArray<MethodSpec> Forwards, Loc Loc);
public sealed record ConstSpec(string Name, long Value);

public sealed record ModelSpec(string Namespace, string ClassName, string MetadataName, string Accessibility, bool IsPartial,
    EquatableArray<ConstSpec> Constants, BlockSpec Root, EquatableArray<BlockSpec> Blocks, EquatableArray<Diag> Diags, Loc Loc, bool DerivedFromModel);

// ---- experiments ----

/// <summary>One named argument of an [Experiment] attribute as written: its text (strings, type names), number (ints,
/// doubles, enums as their value) or flag, and where it stands.</summary>
public sealed record ExpArg(string Name, string Text, double Number, bool Flag, Loc Loc);

/// <summary>An [Experiment] class: the model it names (its metadata name, and whether it is a [Model] of this
/// compilation), the experiment it starts From, and the named arguments given.</summary>
public sealed record ExperimentSpec(string Namespace, string ClassName, string MetadataName, string Accessibility, bool IsPartial, string? NotPlain,
    string Model, string ModelDisplay, bool ModelIsModel, bool ModelInCompilation, Loc ModelLoc,
    string? From, bool FromIsExperiment, EquatableArray<ExpArg> Args, Loc Loc);

/// <summary>What an experiment's checks need of a compiled model: its sizes, head, parameter table (Hugging Face names
/// and shapes) and memory plan (each buffer's training slot and symbolic size), and the shapes of its products.</summary>
public sealed record ModelFootprint(string MetadataName, string FullName, string ClassName, long ParamCount, long MaxLen, long Classes, string Head,
    EquatableArray<FootBuf> Bufs, int SlotsTrain, EquatableArray<FootGemm> Gemms, EquatableArray<FootParam> Params,
    EquatableArray<FootRowOp> RowOps, EquatableArray<FootKernel> Kernels, EquatableArray<FootSize> Shadows);
/// <summary>A buffer of the training plan; <paramref name="FlashHeads"/>: the heads of the attention whose probabilities it
/// holds when the flash kernels take its head size (it then holds B·H·T row statistics), else 0.</summary>
public sealed record FootBuf(int SlotTrain, FootSize Size, int FlashHeads = 0);
public sealed record FootGemm(EquatableArray<int> X, EquatableArray<int> W);
public sealed record FootParam(string Hf, string Shape);
/// <summary>An attention, LayerNorm or embedding op: what its CUDA kernels' scratch depends on (its last dimension, heads).</summary>
public sealed record FootRowOp(OpKind Kind, int Last, int Heads);
/// <summary>A fused element-wise kernel's output and input sizes (its backward's partial sums take scratch).</summary>
public sealed record FootKernel(FootSize Output, EquatableArray<FootSize> Inputs);
public sealed record FootSize(long C, int PB, int PT, int PG);
