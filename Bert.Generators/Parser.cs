using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Bert.Generators;

/// <summary>Syntax and symbols → specs. The only stage that sees Roslyn's semantic model.</summary>
public static partial class Parser
{
    public const string DslNs = "Bert.Dsl";
    static readonly HashSet<string> Primitives = new() { "Exp", "Log", "Tanh", "Sqrt", "Erf", "Max", "Min", "Abs" };

    public static ModelSpec ParseModel(GeneratorAttributeSyntaxContext ctx, CancellationToken ct)
    {
        var type = (INamedTypeSymbol)ctx.TargetSymbol;
        var decl = (ClassDeclarationSyntax)ctx.TargetNode;
        var diags = new List<Diag>();
        // A variant may derive from another model and hide its constants ('new const int Hidden = 256'):
        // sizes are then re-evaluated from the declarations' syntax against the most derived constants.
        var consts = new Dictionary<string, long>();
        var inits = new Dictionary<string, ExpressionSyntax>();
        for (var t = type; t is not null && t.SpecialType != SpecialType.System_Object; t = t.BaseType)
            foreach (var f in t.GetMembers().OfType<IFieldSymbol>())
                if (f.IsConst && f.HasConstantValue && f.ConstantValue is int or long && !consts.ContainsKey(f.Name))
                {
                    consts[f.Name] = Convert.ToInt64(f.ConstantValue);
                    if (f.DeclaringSyntaxReferences.FirstOrDefault()?.GetSyntax(ct) is VariableDeclaratorSyntax { Initializer.Value: { } iv }) inits[f.Name] = iv;
                }
        // Inherited constants written in terms of others (Ffn = 4 * Hidden) follow the variant's values.
        for (int pass = 0; pass < 8; pass++)
            foreach (var kv in inits)
                if (EvalConst(kv.Value, consts) is double dv) consts[kv.Key] = (long)dv;
        var constants = consts.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => new ConstSpec(kv.Key, kv.Value)).ToEquatable();
        var blocks = new List<BlockSpec>();
        var seenBlocks = new HashSet<string>();
        void CollectBlocks(INamedTypeSymbol t)
        {
            foreach (var nested in t.GetTypeMembers())
            {
                ct.ThrowIfCancellationRequested();
                if (HasAttr(nested, "BlockAttribute") && seenBlocks.Add(nested.Name)) blocks.Add(ParseBlock(nested, ctx.SemanticModel.Compilation, consts, ct));
                CollectBlocks(nested);
            }
        }
        for (var t = type; t is not null && t.SpecialType != SpecialType.System_Object; t = t.BaseType) CollectBlocks(t);
        var root = ParseBlock(type, ctx.SemanticModel.Compilation, consts, ct);
        bool derived = type.BaseType is { } bt && HasAttr(bt, "ModelAttribute");
        for (var t = type.BaseType; t is not null && t.SpecialType != SpecialType.System_Object; t = t.BaseType)
            if (t.DeclaringSyntaxReferences.Length == 0 && (HasAttr(t, "ModelAttribute") || t.GetTypeMembers().Any(n => HasAttr(n, "BlockAttribute"))))
            {
                diags.Add(new Diag("BERT0017", Loc.From(decl.BaseList?.Types.FirstOrDefault()?.Type ?? (SyntaxNode)decl), new[] { type.Name, t.Name }.ToEquatable()));
                break;
            }
        return new ModelSpec(
            type.ContainingNamespace.IsGlobalNamespace ? "" : type.ContainingNamespace.ToDisplayString(),
            type.Name, MetadataName(type), AccessibilityText(type.DeclaredAccessibility), IsPartial(type),
            constants, root, blocks.ToEquatable(), diags.ToEquatable(), Loc.From(decl.Identifier.GetLocation()), derived);
    }

    internal static string MetadataName(INamedTypeSymbol t) =>
        (t.ContainingNamespace.IsGlobalNamespace ? "" : t.ContainingNamespace.ToDisplayString() + ".") + t.MetadataName;

    internal static string AccessibilityText(Accessibility a) => a switch
    {
        Accessibility.Public => "public",
        Accessibility.Internal => "internal",
        _ => "internal",
    };

    internal static bool IsPartial(INamedTypeSymbol t) => t.DeclaringSyntaxReferences
        .Select(r => r.GetSyntax()).OfType<TypeDeclarationSyntax>()
        .Any(d => d.Modifiers.Any(SyntaxKind.PartialKeyword));

    internal static bool HasAttr(ISymbol s, string name) =>
        s.GetAttributes().Any(a => a.AttributeClass?.Name == name && a.AttributeClass.ContainingNamespace.ToDisplayString() == DslNs);

    static AttributeData? Attr(ISymbol s, string name) =>
        s.GetAttributes().FirstOrDefault(a => a.AttributeClass?.Name == name && a.AttributeClass.ContainingNamespace.ToDisplayString() == DslNs);

    static T? Named<T>(AttributeData a, string name) =>
        a.NamedArguments.Where(kv => kv.Key == name).Select(kv => kv.Value.Value is T v ? v : default).FirstOrDefault();

    static int[] IntArray(AttributeData a) => a.ConstructorArguments.Length == 1 && a.ConstructorArguments[0].Kind == TypedConstantKind.Array
        ? a.ConstructorArguments[0].Values.Select(v => v.Value is int i ? i : 0).ToArray()
        : a.ConstructorArguments.Select(v => v.Value is int i ? i : 0).ToArray();

    static Loc AttrLoc(AttributeData a) => a.ApplicationSyntaxReference is { } r ? Loc.From(r.GetSyntax()) : Loc.None;

    /// <summary>Evaluates a size expression from its syntax against the model's constants: literals, constants,
    /// Dim.Batch/Seq/Rows, + - * / %, parentheses. Null when it is not such an expression.</summary>
    public static double? EvalConst(ExpressionSyntax e, IReadOnlyDictionary<string, long> consts)
    {
        switch (e)
        {
            case LiteralExpressionSyntax l when l.Token.Value is IConvertible c && l.Token.Value is not string and not bool and not char:
                return Convert.ToDouble(c, System.Globalization.CultureInfo.InvariantCulture);
            case IdentifierNameSyntax id: return consts.TryGetValue(id.Identifier.ValueText, out var v) ? v : null;
            case MemberAccessExpressionSyntax ma when ma.Expression.ToString() is "Dim" or "Bert.Dsl.Dim" or "global::Bert.Dsl.Dim":
                return ma.Name.Identifier.ValueText switch { "Batch" => -1, "Seq" => -2, "Rows" => -3, _ => null };
            case MemberAccessExpressionSyntax ma: return consts.TryGetValue(ma.Name.Identifier.ValueText, out var mv) ? mv : null;
            case ParenthesizedExpressionSyntax p: return EvalConst(p.Expression, consts);
            case CastExpressionSyntax c: return EvalConst(c.Expression, consts);
            case PrefixUnaryExpressionSyntax u when u.IsKind(SyntaxKind.UnaryMinusExpression): return -EvalConst(u.Operand, consts);
            case PrefixUnaryExpressionSyntax u when u.IsKind(SyntaxKind.UnaryPlusExpression): return EvalConst(u.Operand, consts);
            case BinaryExpressionSyntax b:
                var l2 = EvalConst(b.Left, consts); var r2 = EvalConst(b.Right, consts);
                if (l2 is null || r2 is null) return null;
                bool ints = l2 == Math.Floor(l2.Value) && r2 == Math.Floor(r2.Value) && !(b.Left is LiteralExpressionSyntax ll && ll.Token.Text.Contains(".")) && !(b.Right is LiteralExpressionSyntax rl && rl.Token.Text.Contains("."));
                return b.Kind() switch
                {
                    SyntaxKind.AddExpression => l2 + r2,
                    SyntaxKind.SubtractExpression => l2 - r2,
                    SyntaxKind.MultiplyExpression => l2 * r2,
                    SyntaxKind.DivideExpression => r2 == 0 ? null : ints ? Math.Truncate(l2.Value / r2.Value) : l2 / r2,
                    SyntaxKind.ModuloExpression => r2 == 0 ? null : l2 % r2,
                    _ => null,
                };
            default: return null;
        }
    }

    /// <summary>The attribute's positional int arguments, evaluated against the model's constants where the syntax
    /// allows (so a derived variant's constants apply), else as the compiler bound them.</summary>
    static int[] Dims(AttributeData a, IReadOnlyDictionary<string, long> consts)
    {
        var bound = IntArray(a);
        if (a.ApplicationSyntaxReference?.GetSyntax() is not AttributeSyntax syn || syn.ArgumentList is null) return bound;
        var positional = syn.ArgumentList.Arguments.Where(x => x.NameEquals is null && x.NameColon is null).ToList();
        if (positional.Count != bound.Length) return bound;
        return positional.Select((x, i) => EvalConst(x.Expression, consts) is double d ? (int)d : bound[i]).ToArray();
    }

    static BlockSpec ParseBlock(INamedTypeSymbol type, Compilation compilation, IReadOnlyDictionary<string, long> consts, CancellationToken ct)
    {
        var ps = new List<ParamSpec>();
        var subs = new List<SubSpec>();
        var fields = new List<IFieldSymbol>();
        for (var t = type; t is not null && t.SpecialType != SpecialType.System_Object; t = t.BaseType)
            fields.InsertRange(0, t.GetMembers().OfType<IFieldSymbol>());
        foreach (var f in fields)
        {
            var pa = Attr(f, "ParamAttribute");
            var fieldLoc = Loc.From(f.Locations.FirstOrDefault());
            if (pa is not null)
            {
                ps.Add(new ParamSpec(f.Name, Dims(pa, consts).ToEquatable(), Named<int>(pa, "Init"), Named<string>(pa, "Hf"), fieldLoc, AttrLoc(pa)));
                continue;
            }
            if (f.Type is INamedTypeSymbol ft && HasAttr(ft, "BlockAttribute"))
            {
                var sa = Attr(f, "StackAttribute");
                int count = sa is null ? 1 : Dims(sa, consts).FirstOrDefault();
                subs.Add(new SubSpec(f.Name, ft.Name, count, sa is not null && Named<bool>(sa, "Shared"), sa is null ? null : Named<string>(sa, "Hf"),
                    sa is not null ? AttrLoc(sa) : fieldLoc));
            }
        }
        var forwards = new List<MethodSpec>();
        var methods = type.GetMembers("Forward").OfType<IMethodSymbol>().ToList();
        for (var t = type.BaseType; methods.Count == 0 && t is not null && t.SpecialType != SpecialType.System_Object; t = t.BaseType)
            methods = t.GetMembers("Forward").OfType<IMethodSymbol>().ToList();
        foreach (var m in methods)
        {
            ct.ThrowIfCancellationRequested();
            if (m.DeclaringSyntaxReferences.FirstOrDefault()?.GetSyntax(ct) is not MethodDeclarationSyntax md) continue;
            var model = compilation.GetSemanticModel(md.SyntaxTree);
            forwards.Add(ParseForward(m, md, model, consts, ct));
        }
        return new BlockSpec(type.Name, IsPartial(type), ps.ToEquatable(), subs.ToEquatable(), forwards.ToEquatable(),
            Loc.From(type.Locations.FirstOrDefault()));
    }

    static MethodSpec ParseForward(IMethodSymbol m, MethodDeclarationSyntax md, SemanticModel model, IReadOnlyDictionary<string, long> consts, CancellationToken ct)
    {
        var args = new List<ArgSpec>();
        foreach (var p in m.Parameters)
        {
            var kind = p.Type.ContainingNamespace?.ToDisplayString() == DslNs ? p.Type.Name switch
            {
                "Tensor" => ArgKind.Tensor, "Tokens" => ArgKind.Tokens, "Mask" => ArgKind.Mask,
                "Labels" => ArgKind.Labels, "Rows" => ArgKind.Rows, _ => ArgKind.Other,
            } : ArgKind.Other;
            var sa = Attr(p, "ShapeAttribute");
            args.Add(new ArgSpec(p.Name, kind, (sa is null ? Array.Empty<int>() : Dims(sa, consts)).ToEquatable(), sa is not null, Loc.From(p.Locations.FirstOrDefault())));
        }
        var body = new List<Stmt>();
        if (md.ExpressionBody is { } eb) body.Add(new StReturn(ToEx(eb.Expression, model, consts, ct), Loc.From(eb.Expression)));
        else if (md.Body is { } b)
            foreach (var s in b.Statements) body.Add(ToStmt(s, model, consts, ct));
        return new MethodSpec(args.ToEquatable(), body.ToEquatable(), Loc.From(md.Identifier.GetLocation()));
    }

    static Stmt ToStmt(StatementSyntax s, SemanticModel model, IReadOnlyDictionary<string, long> consts, CancellationToken ct)
    {
        switch (s)
        {
            case LocalDeclarationStatementSyntax ld when ld.Declaration.Variables.Count == 1 && ld.Declaration.Variables[0].Initializer is { } init:
                return new StLet(ld.Declaration.Variables[0].Identifier.ValueText, ToEx(init.Value, model, consts, ct), Loc.From(ld));
            case ExpressionStatementSyntax { Expression: AssignmentExpressionSyntax a } when a.IsKind(SyntaxKind.SimpleAssignmentExpression) && a.Left is IdentifierNameSyntax id:
                return new StLet(id.Identifier.ValueText, ToEx(a.Right, model, consts, ct), Loc.From(s));
            case ReturnStatementSyntax r when r.Expression is not null:
                return new StReturn(ToEx(r.Expression, model, consts, ct), Loc.From(r.Expression));
            default:
                return new StBad(Describe(s), Loc.From(s));
        }
    }

    static bool IsNumber(ITypeSymbol t) => t.SpecialType is SpecialType.System_Int32 or SpecialType.System_Int64 or SpecialType.System_Single
        or SpecialType.System_Double or SpecialType.System_Int16 or SpecialType.System_Byte or SpecialType.System_SByte or SpecialType.System_UInt16
        or SpecialType.System_UInt32 or SpecialType.System_UInt64 or SpecialType.System_Decimal;

    static string Describe(SyntaxNode n) => n.Kind().ToString().Replace("Syntax", "")
        .Replace("Statement", " statement").Replace("Expression", " expression").ToLowerInvariant().Trim();

    static Ex ToEx(ExpressionSyntax e, SemanticModel model, IReadOnlyDictionary<string, long> consts, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        var loc = Loc.From(e);
        if (e is not IdentifierNameSyntax { Identifier.ValueText: var idn } || consts.ContainsKey(idn))
            if (EvalConst(e, consts) is double k) return new ExNum(k, loc);
        var cv = model.GetConstantValue(e, ct);
        if (cv.HasValue && cv.Value is IConvertible && cv.Value is not string and not bool and not char)
            return new ExNum(Convert.ToDouble(cv.Value, System.Globalization.CultureInfo.InvariantCulture), loc);
        // A number read from a field or property that is not 'const' (static readonly, instance, computed): the
        // ops that need a constant report it there, instead of calling it an unknown name.
        if (e is IdentifierNameSyntax or MemberAccessExpressionSyntax &&
            model.GetSymbolInfo(e, ct).Symbol switch { IFieldSymbol { IsConst: false } f => f.Type, IPropertySymbol p => p.Type, _ => null } is { } vt && IsNumber(vt))
            return new ExNotConst(e.ToString(), loc);
        switch (e)
        {
            case ParenthesizedExpressionSyntax p: return ToEx(p.Expression, model, consts, ct);
            case IdentifierNameSyntax id: return new ExIdent(id.Identifier.ValueText, loc);
            case BinaryExpressionSyntax b when b.Kind() is SyntaxKind.AddExpression or SyntaxKind.SubtractExpression or SyntaxKind.MultiplyExpression or SyntaxKind.DivideExpression:
                return new ExBinary(b.OperatorToken.Text, ToEx(b.Left, model, consts, ct), ToEx(b.Right, model, consts, ct), loc);
            case PrefixUnaryExpressionSyntax u when u.IsKind(SyntaxKind.UnaryMinusExpression):
                return new ExUnary("-", ToEx(u.Operand, model, consts, ct), loc);
            case PrefixUnaryExpressionSyntax u when u.IsKind(SyntaxKind.UnaryPlusExpression):
                return ToEx(u.Operand, model, consts, ct);
            case MemberAccessExpressionSyntax ma when ma.Expression is IdentifierNameSyntax mt:
                return new ExMember(mt.Identifier.ValueText, ma.Name.Identifier.ValueText, loc);
            case InvocationExpressionSyntax inv:
            {
                string? target; string method;
                switch (inv.Expression)
                {
                    case IdentifierNameSyntax n: target = null; method = n.Identifier.ValueText; break;
                    case MemberAccessExpressionSyntax ma when ma.Name is IdentifierNameSyntax mn:
                        target = ma.Expression switch
                        {
                            IdentifierNameSyntax t => t.Identifier.ValueText,
                            MemberAccessExpressionSyntax mt => mt.Name.Identifier.ValueText,
                            _ => "?",
                        };
                        method = mn.Identifier.ValueText; break;
                    default: return new ExBad(Describe(inv.Expression), loc);
                }
                var args = new List<Ex>();
                var names = new List<string>();
                foreach (var a in inv.ArgumentList.Arguments)
                {
                    if (!a.RefKindKeyword.IsKind(SyntaxKind.None)) return new ExBad("ref or out argument", Loc.From(a));
                    args.Add(ToEx(a.Expression, model, consts, ct));
                    names.Add(a.NameColon?.Name.Identifier.ValueText ?? "");
                }
                return new ExCallN(target, method, args.ToEquatable(), names.ToEquatable(), loc);
            }
            default:
                return new ExBad(Describe(e), loc);
        }
    }

    // ---------------- [Pointwise] functions ----------------

    public static PointwiseSpec ParsePointwise(GeneratorAttributeSyntaxContext ctx, CancellationToken ct)
    {
        var m = (IMethodSymbol)ctx.TargetSymbol;
        var md = (MethodDeclarationSyntax)ctx.TargetNode;
        return ParsePointwiseSyntax(md, m.ContainingType, ResolveWith(ctx.SemanticModel, ct), ct);
    }

    /// <summary>How a call inside a pointwise body resolves: (key, isPrimitive) or null when it is neither.</summary>
    public delegate (string Key, bool Primitive)? CallResolver(InvocationExpressionSyntax call, string simpleName);
    public delegate double? ConstResolver(ExpressionSyntax e);

    static (CallResolver, ConstResolver) ResolveWith(SemanticModel model, CancellationToken ct) => (
        (call, name) =>
        {
            var sym = model.GetSymbolInfo(call, ct).Symbol as IMethodSymbol;
            if (sym is null) return null;
            var owner = sym.ContainingType;
            var ownerName = owner.ToDisplayString();
            if ((ownerName == "Bert.Dsl.Scalar" || ownerName == "System.MathF" || ownerName == "System.Math") && Primitives.Contains(sym.Name))
                return (sym.Name, true);
            if (HasAttr(sym, "PointwiseAttribute")) return (ownerName + "." + sym.Name, false);
            return null;
        },
        e =>
        {
            var cv = model.GetConstantValue(e, ct);
            return cv.HasValue && cv.Value is IConvertible && cv.Value is not string and not bool and not char
                ? Convert.ToDouble(cv.Value, System.Globalization.CultureInfo.InvariantCulture) : null;
        });

    /// <summary>Reads the built-in activations from the Bert.Dsl source embedded in this assembly, without a compilation.</summary>
    public static IReadOnlyList<PointwiseSpec> ParseBuiltins()
    {
        using var s = typeof(Parser).Assembly.GetManifestResourceStream("Bert.Dsl.Activations.cs")!;
        using var r = new System.IO.StreamReader(s);
        var tree = CSharpSyntaxTree.ParseText(r.ReadToEnd());
        var cls = tree.GetRoot().DescendantNodes().OfType<ClassDeclarationSyntax>().First();
        var names = new HashSet<string>(cls.Members.OfType<MethodDeclarationSyntax>().Select(m => m.Identifier.ValueText));
        CallResolver calls = (call, name) =>
        {
            bool qualified = call.Expression is MemberAccessExpressionSyntax;
            if (!qualified && names.Contains(name)) return ("Bert.Dsl.Activations." + name, false);
            if (Primitives.Contains(name)) return (name, true);
            return null;
        };
        ConstResolver consts = e => e switch
        {
            LiteralExpressionSyntax l when l.Token.Value is IConvertible c && l.Token.Value is not string => Convert.ToDouble(c, System.Globalization.CultureInfo.InvariantCulture),
            _ => null,
        };
        return cls.Members.OfType<MethodDeclarationSyntax>()
            .Select(md => ParsePointwiseSyntax(md, null, (calls, consts), default) with { ContainingType = "Bert.Dsl.Activations", Namespace = "Bert.Dsl" })
            .ToList();
    }

    static PointwiseSpec ParsePointwiseSyntax(MethodDeclarationSyntax md, INamedTypeSymbol? owner, (CallResolver Calls, ConstResolver Consts) r, CancellationToken ct)
    {
        var diags = new List<Diag>();
        var name = md.Identifier.ValueText;
        var ps = md.ParameterList.Parameters.Select(p => p.Identifier.ValueText).ToList();
        var loc = Loc.From(md.Identifier.GetLocation());
        bool floats = md.ReturnType.ToString() == "float" && md.ParameterList.Parameters.All(p => p.Type?.ToString() == "float");
        if (!floats) diags.Add(new Diag("BERT0200", Loc.From(md.ReturnType), new[] { name, "its parameters and result must all be float" }.ToEquatable()));
        if (!md.Modifiers.Any(SyntaxKind.StaticKeyword)) diags.Add(new Diag("BERT0200", loc, new[] { name, "it must be static" }.ToEquatable()));
        ExpressionSyntax? bodyExpr = md.ExpressionBody?.Expression;
        if (bodyExpr is null && md.Body is { Statements.Count: 1 } b && b.Statements[0] is ReturnStatementSyntax { Expression: { } re }) bodyExpr = re;
        PwExpr? body = null;
        if (bodyExpr is null) diags.Add(new Diag("BERT0200", loc, new[] { name, "its body must be a single expression (=> ...)" }.ToEquatable()));
        else body = ToPw(bodyExpr, ps, r, diags, name);
        var chain = new List<string>();
        string ns = "";
        if (owner is not null)
        {
            for (var t = owner; t is not null; t = t.ContainingType)
                chain.Insert(0, (t.IsStatic ? "static " : "") + "partial " + (t.IsRecord ? "record " : t.TypeKind == TypeKind.Struct ? "struct " : "class ") + t.Name);
            ns = owner.ContainingNamespace.IsGlobalNamespace ? "" : owner.ContainingNamespace.ToDisplayString();
        }
        bool partial = owner is null || AllPartial(owner);
        if (!partial) diags.Add(new Diag("BERT0203", loc, new[] { name, owner!.Name }.ToEquatable()));
        return new PointwiseSpec(name, owner?.ToDisplayString() ?? "", ns, string.Join("|", chain), partial,
            ps.ToEquatable(), diags.Count == 0 ? body : null, diags.ToEquatable(), loc);
    }

    static bool AllPartial(INamedTypeSymbol t)
    {
        for (var x = t; x is not null; x = x.ContainingType) if (!IsPartial(x)) return false;
        return true;
    }

    static PwExpr ToPw(ExpressionSyntax e, List<string> ps, (CallResolver Calls, ConstResolver Consts) r, List<Diag> diags, string fn)
    {
        var loc = Loc.From(e);
        if (r.Consts(e) is double c) return new PwLit(c, loc);
        PwExpr Bad(string what, string id = "BERT0200")
        {
            diags.Add(new Diag(id, loc, new[] { fn, what }.ToEquatable()));
            return new PwLit(0, loc);
        }
        switch (e)
        {
            case ParenthesizedExpressionSyntax p: return ToPw(p.Expression, ps, r, diags, fn);
            case CastExpressionSyntax cast when cast.Type.ToString() is "float" or "double": return ToPw(cast.Expression, ps, r, diags, fn);
            case IdentifierNameSyntax id:
                int i = ps.IndexOf(id.Identifier.ValueText);
                return i >= 0 ? new PwVar(i, loc) : Bad($"'{id.Identifier.ValueText}' is neither a parameter nor a constant");
            case BinaryExpressionSyntax b when b.Kind() is SyntaxKind.AddExpression or SyntaxKind.SubtractExpression or SyntaxKind.MultiplyExpression or SyntaxKind.DivideExpression:
                return new PwBinary(b.OperatorToken.Text, ToPw(b.Left, ps, r, diags, fn), ToPw(b.Right, ps, r, diags, fn), loc);
            case BinaryExpressionSyntax b when b.IsKind(SyntaxKind.ModuloExpression):
                return Bad("'%' has no derivative", "BERT0201");
            case PrefixUnaryExpressionSyntax u when u.IsKind(SyntaxKind.UnaryMinusExpression):
                return new PwUnary("-", ToPw(u.Operand, ps, r, diags, fn), loc);
            case PrefixUnaryExpressionSyntax u when u.IsKind(SyntaxKind.UnaryPlusExpression):
                return ToPw(u.Operand, ps, r, diags, fn);
            case ConditionalExpressionSyntax ce when ce.Condition is BinaryExpressionSyntax cmp &&
                cmp.Kind() is SyntaxKind.LessThanExpression or SyntaxKind.LessThanOrEqualExpression or SyntaxKind.GreaterThanExpression or SyntaxKind.GreaterThanOrEqualExpression:
                return new PwCond(cmp.OperatorToken.Text, ToPw(cmp.Left, ps, r, diags, fn), ToPw(cmp.Right, ps, r, diags, fn),
                    ToPw(ce.WhenTrue, ps, r, diags, fn), ToPw(ce.WhenFalse, ps, r, diags, fn), loc);
            case InvocationExpressionSyntax inv:
            {
                string simple = inv.Expression switch
                {
                    IdentifierNameSyntax n => n.Identifier.ValueText,
                    MemberAccessExpressionSyntax ma => ma.Name.Identifier.ValueText,
                    _ => "",
                };
                var res = r.Calls(inv, simple);
                if (res is null)
                {
                    if (simple is "Floor" or "Ceiling" or "Round" or "Sign" or "Truncate") return Bad($"'{simple}' has no useful derivative", "BERT0201");
                    return Bad($"'{inv.Expression}' is not a Bert.Dsl.Scalar function or a [Pointwise] function");
                }
                var args = inv.ArgumentList.Arguments.Select(a => ToPw(a.Expression, ps, r, diags, fn)).ToEquatable();
                int arity = res.Value.Key is "Max" or "Min" ? 2 : 1;
                if (res.Value.Primitive && args.Count != arity) return Bad($"'{simple}' takes {arity} argument(s)");
                return new PwCall(res.Value.Key, res.Value.Primitive, args, loc);
            }
            default:
                return Bad($"a {Describe(e)} cannot be translated");
        }
    }
}

/// <summary>A call with the names of its named arguments ("" for positional ones).</summary>
public sealed record ExCallN(string? Target, string Method, EquatableArray<Ex> Args, EquatableArray<string> ArgNames, Loc Loc) : Ex(Loc);

/// <summary>A number that is not a compile-time constant (a static readonly field, a property): Text is its source.</summary>
public sealed record ExNotConst(string Text, Loc Loc) : Ex(Loc);
