using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Text;

namespace Bert.Generators;

/// <summary>The compiled form of one model: its source, or the diagnostics that stopped it, and what an experiment's
/// checks need of it (null when it did not compile).</summary>
public sealed record CompiledModel(string HintName, string? Source, EquatableArray<Diag> Diags, ModelFootprint? Footprint = null);

/// <summary>The Bert model compiler: [Model] classes → checked, differentiated, fused, planned C#;
/// [Pointwise] functions → tensor overloads.</summary>
[Generator(LanguageNames.CSharp)]
public sealed class ModelGenerator : IIncrementalGenerator
{
    static readonly Lazy<IReadOnlyList<PointwiseSpec>> Builtins = new(Parser.ParseBuiltins);

    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        var pointwise = context.SyntaxProvider.ForAttributeWithMetadataName("Bert.Dsl.PointwiseAttribute",
            static (n, _) => n is MethodDeclarationSyntax, static (c, ct) => Parser.ParsePointwise(c, ct)).WithTrackingName("Pointwise");
        var allPointwise = pointwise.Collect().Select(static (a, _) => a.ToEquatable()).WithTrackingName("AllPointwise");
        var models = context.SyntaxProvider.ForAttributeWithMetadataName("Bert.Dsl.ModelAttribute",
            static (n, _) => n is ClassDeclarationSyntax, static (c, ct) => Parser.ParseModel(c, ct)).WithTrackingName("ModelSpec");
        var compiled = models.Combine(allPointwise).Select(static (p, ct) => Compile(p.Left, p.Right)).WithTrackingName("Compiled");

        context.RegisterSourceOutput(compiled.Select(static (c, _) => c.Diags), static (spc, diags) =>
        {
            foreach (var d in diags) spc.ReportDiagnostic(Diagnostics.ToDiagnostic(d));
        });
        context.RegisterSourceOutput(compiled.Select(static (c, _) => (c.HintName, c.Source)), static (spc, s) =>
        {
            if (s.Source is not null) spc.AddSource(s.HintName, SourceText.From(s.Source, Encoding.UTF8));
        });
        context.RegisterSourceOutput(pointwise.Select(static (p, _) => p.Diags), static (spc, diags) =>
        {
            foreach (var d in diags) spc.ReportDiagnostic(Diagnostics.ToDiagnostic(d));
        });
        context.RegisterSourceOutput(pointwise, static (spc, p) =>
        {
            if (!p.ContainingIsPartial || p.ContainingType.Length == 0 || p.ContainingType == "Bert.Dsl.Activations") return;
            spc.AddSource($"{p.ContainingType}.{p.Name}.Pointwise.g.cs", SourceText.From(EmitOverload(p), Encoding.UTF8));
        });

        // Experiments: checked against the footprints of the models they name; one file each, and one list of them all.
        var experiments = context.SyntaxProvider.ForAttributeWithMetadataName("Bert.Dsl.ExperimentAttribute",
            static (n, _) => n is ClassDeclarationSyntax or RecordDeclarationSyntax, static (c, ct) => Parser.ParseExperiment(c, ct)).WithTrackingName("ExperimentSpec");
        // One spec a class (an attribute repeated on another part of it is the compiler's error, not a second experiment).
        var allExperiments = experiments.Collect().Select(static (a, _) => a.GroupBy(x => x.MetadataName).Select(g => g.First()).ToEquatable());
        var footprints = compiled.Select(static (c, _) => c.Footprint).Collect()
            .Select(static (a, _) => a.Where(f => f is not null).Select(f => f!).ToEquatable()).WithTrackingName("Footprints");
        var compiledExperiments = allExperiments.Combine(footprints)
            .Select(static (p, _) => (Specs: p.Left, Compiled: ExperimentCompiler.Compile(p.Left, p.Right))).WithTrackingName("CompiledExperiments");
        context.RegisterSourceOutput(compiledExperiments, static (spc, x) =>
        {
            foreach (var c in x.Compiled)
            {
                foreach (var d in c.Diags) spc.ReportDiagnostic(Diagnostics.ToDiagnostic(d));
                if (c.Source is not null) spc.AddSource(c.HintName, SourceText.From(c.Source, Encoding.UTF8));
            }
            if (ExperimentCompiler.EmitList(x.Specs, x.Compiled) is { } list) spc.AddSource("Bert.Generated.DeclaredExperiments.g.cs", SourceText.From(list, Encoding.UTF8));
        });
    }

    public static CompiledModel Compile(ModelSpec m, EquatableArray<PointwiseSpec> user)
    {
        var hint = m.MetadataName.Replace('`', '_') + ".g.cs";
        try
        {
            var (graph, diags, failed) = Lowering.Run(m, Builtins.Value.Concat(user));
            if (failed) return new CompiledModel(hint, null, diags.ToEquatable());
            Fuse.Run(graph);
            var plan = Plan.Build(graph);
            return new CompiledModel(hint, Emitter.Emit(m, graph, plan), EquatableArray<Diag>.Empty, ExperimentCompiler.Footprint(m, graph, plan));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return new CompiledModel(hint, null, new[] { new Diag("BERT0299", m.Loc, new[] { m.ClassName, e.GetType().Name + ": " + e.Message }.ToEquatable()) }.ToEquatable());
        }
    }

    static string EmitOverload(PointwiseSpec p)
    {
        var sb = new StringBuilder();
        sb.AppendLine("// <auto-generated/>");
        sb.AppendLine("#nullable enable");
        if (p.Namespace.Length > 0) sb.AppendLine($"namespace {p.Namespace}").AppendLine("{");
        var chain = p.TypeKeyword.Split('|');
        foreach (var c in chain) sb.AppendLine(c).AppendLine("{");
        var ps = string.Join(", ", p.Parameters.Select(x => "global::Bert.Dsl.Tensor " + x));
        sb.AppendLine($"    /// <summary>The tensor form of [Pointwise] {p.Name}, applied element by element; compiled by the Bert generator.</summary>");
        sb.AppendLine($"    internal static global::Bert.Dsl.Tensor {p.Name}({ps}) => throw new global::System.NotSupportedException(\"Bert forward methods are compiled by the Bert source generator and never run as C#.\");");
        foreach (var _ in chain) sb.AppendLine("}");
        if (p.Namespace.Length > 0) sb.AppendLine("}");
        return sb.ToString();
    }
}
