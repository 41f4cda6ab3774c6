using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Diagnostics;

namespace Bert.Generators;

/// <summary>Parameter and block fields of a model are read by the generator, never assigned or read by C#;
/// this keeps the compiler from warning about that (CS0169, CS0649, CS8618).</summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class FieldSuppressor : DiagnosticSuppressor
{
    static readonly SuppressionDescriptor[] Rules =
    {
        new("BERTS0169", "CS0169", "Bert parameter and block fields are read by the Bert generator."),
        new("BERTS0649", "CS0649", "Bert parameter and block fields are read by the Bert generator."),
        new("BERTS8618", "CS8618", "Bert block fields are never instantiated: the generator inlines the block."),
    };

    public override ImmutableArray<SuppressionDescriptor> SupportedSuppressions => Rules.ToImmutableArray();

    public override void ReportSuppressions(SuppressionAnalysisContext context)
    {
        foreach (var d in context.ReportedDiagnostics)
        {
            var rule = Rules.FirstOrDefault(r => r.SuppressedDiagnosticId == d.Id);
            if (rule is null || d.Location.SourceTree is not { } tree) continue;
            var node = tree.GetRoot(context.CancellationToken).FindNode(d.Location.SourceSpan);
            var model = context.GetSemanticModel(tree);
            if (model.GetDeclaredSymbol(node, context.CancellationToken) is not IFieldSymbol f) continue;
            bool isParam = f.GetAttributes().Any(a => a.AttributeClass?.ToDisplayString() == "Bert.Dsl.ParamAttribute");
            bool isBlock = f.Type.GetAttributes().Any(a => a.AttributeClass?.ToDisplayString() == "Bert.Dsl.BlockAttribute");
            if (isParam || isBlock) context.ReportSuppression(Suppression.Create(rule, d));
        }
    }
}
