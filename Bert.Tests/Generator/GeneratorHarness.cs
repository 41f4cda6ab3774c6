using System.Collections.Immutable;
using System.Text;
using Bert.Generators;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Text;

namespace Bert.Tests.Generator;

/// <summary>A source file for the harness; <c>[|…|]</c> in the text marks the span a diagnostic is expected at.</summary>
public sealed record SourceFile(string Path, string Text)
{
    public static implicit operator SourceFile(string text) => new("Test0.cs", text);
}

/// <summary>Source text with its <c>[|…|]</c> markers removed and the spans they enclosed.</summary>
public sealed record Markup(string Text, ImmutableArray<TextSpan> Spans)
{
    public static Markup Parse(string marked)
    {
        var sb = new StringBuilder(marked.Length);
        var spans = ImmutableArray.CreateBuilder<TextSpan>();
        var open = new Stack<int>();
        for (int i = 0; i < marked.Length; i++)
        {
            if (string.CompareOrdinal(marked, i, "[|", 0, 2) == 0) { open.Push(sb.Length); i++; continue; }
            if (string.CompareOrdinal(marked, i, "|]", 0, 2) == 0 && open.Count > 0)
            {
                int s = open.Pop();
                spans.Add(TextSpan.FromBounds(s, sb.Length));
                i++; continue;
            }
            sb.Append(marked[i]);
        }
        if (open.Count > 0) throw new ArgumentException("Unclosed [| in markup");
        spans.Sort((a, b) => a.Start.CompareTo(b.Start));
        return new Markup(sb.ToString(), spans.ToImmutable());
    }
}

/// <summary>What one generator run produced.</summary>
public sealed class GeneratorRun
{
    public required CSharpCompilation Input { get; init; }
    public required Compilation Output { get; init; }
    public required GeneratorDriver Driver { get; init; }
    /// <summary>The diagnostics the generator reported.</summary>
    public required ImmutableArray<Diagnostic> GeneratorDiagnostics { get; init; }
    /// <summary>Generated files, by hint name, in the order the driver returns them.</summary>
    public required IReadOnlyList<(string HintName, string Text)> Sources { get; init; }
    /// <summary>Errors of the input compilation with the generated sources added (computed on first use: binding
    /// the generated code of big models takes seconds).</summary>
    public ImmutableArray<Diagnostic> CompileErrors => _errors ??= Output.GetDiagnostics()
        .Where(d => d.Severity == DiagnosticSeverity.Error).ToImmutableArray();
    ImmutableArray<Diagnostic>? _errors;

    public GeneratorRunResult Result => Driver.GetRunResult().Results[0];

    public string Describe() =>
        string.Join(Environment.NewLine, GeneratorDiagnostics.Concat(CompileErrors).Select(d => d.ToString()));
}

/// <summary>Builds compilations against the .NET runtime, Bert.Dsl and Bert.Runtime and runs <see cref="ModelGenerator"/> on them.</summary>
public static class GeneratorHarness
{
    public static readonly CSharpParseOptions ParseOptions = new(LanguageVersion.Preview);

    public static readonly CSharpCompilationOptions Options = new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary)
        .WithAllowUnsafe(true)
        .WithNullableContextOptions(NullableContextOptions.Enable)
        .WithDeterministic(true);

    /// <summary>What the SDK's implicit usings give every file of the real projects.</summary>
    const string ImplicitUsings = """
        global using System;
        global using System.Collections.Generic;
        global using System.IO;
        global using System.Linq;
        global using System.Threading;
        global using System.Threading.Tasks;
        """;

    static readonly Lazy<ImmutableArray<MetadataReference>> References = new(() =>
    {
        var dsl = typeof(Bert.Dsl.ModelAttribute).Assembly.Location;
        var runtime = typeof(Bert.Runtime.ModelInfo).Assembly.Location;
        var tpa = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        // Leave out this solution's own assemblies (Bert.Models, Bert.Tests...): the tests compile their sources themselves.
        var refs = tpa.Where(p => !Path.GetFileName(p).StartsWith("Bert.", StringComparison.OrdinalIgnoreCase))
            .Concat(new[] { dsl, runtime })
            .Distinct(StringComparer.OrdinalIgnoreCase)
            .Select(p => (MetadataReference)MetadataReference.CreateFromFile(p));
        return refs.ToImmutableArray();
    });

    public static ImmutableArray<MetadataReference> DefaultReferences => References.Value;

    public static SyntaxTree Parse(SourceFile f) =>
        CSharpSyntaxTree.ParseText(SourceText.From(f.Text, Encoding.UTF8), ParseOptions, f.Path);

    /// <summary>A compilation of the given files (markup already stripped) plus the implicit global usings.</summary>
    public static CSharpCompilation Compile(IEnumerable<SourceFile> files, IEnumerable<MetadataReference>? extra = null, string assemblyName = "GeneratorTest")
    {
        var trees = files.Select(Parse).Append(CSharpSyntaxTree.ParseText(ImplicitUsings, ParseOptions, "GlobalUsings.g.cs"));
        return CSharpCompilation.Create(assemblyName, trees, DefaultReferences.Concat(extra ?? Enumerable.Empty<MetadataReference>()), Options);
    }

    public static GeneratorDriver CreateDriver() =>
        CSharpGeneratorDriver.Create(new[] { new ModelGenerator().AsSourceGenerator() },
            parseOptions: ParseOptions,
            driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

    /// <summary>Runs the generator over a compilation; pass the driver of an earlier run to run incrementally.</summary>
    public static GeneratorRun Run(CSharpCompilation input, GeneratorDriver? driver = null)
    {
        driver = (driver ?? CreateDriver()).RunGeneratorsAndUpdateCompilation(input, out var output, out var genDiags);
        var result = driver.GetRunResult().Results[0];
        if (result.Exception is not null) throw new InvalidOperationException("The generator threw", result.Exception);
        var sources = result.GeneratedSources.Select(s => (s.HintName, s.SourceText.ToString())).ToList();
        return new GeneratorRun
        {
            Input = input, Output = output, Driver = driver, GeneratorDiagnostics = genDiags,
            Sources = sources,
        };
    }

    /// <summary>Runs the generator over source texts (with <c>[|…|]</c> markers stripped).</summary>
    public static GeneratorRun Run(params SourceFile[] files) =>
        Run(Compile(files.Select(f => f with { Text = Markup.Parse(f.Text).Text })));
}
