using System.Text.RegularExpressions;
using Bert.Tests.Packaging;
using Xunit;

namespace Bert.Tests.Generator;

/// <summary>The README's example compiles, through the generator, with no diagnostic.</summary>
public class ReadmeTests
{
    [Fact]
    public void ReadmeModelExample_CompilesWithoutDiagnostics()
    {
        var readme = File.ReadAllText(Path.Combine(ConsumerTests.RepoRoot(), "README.md"));
        var blocks = Regex.Matches(readme, "```csharp\n(.*?)```", RegexOptions.Singleline).Select(m => m.Groups[1].Value).ToList();
        var declaration = blocks.First(b => b.Contains("[Model]") && b.Contains("class TinyClassifier"));
        var run = GeneratorHarness.Run(new SourceFile("Readme.cs", declaration));
        Assert.True(run.GeneratorDiagnostics.IsEmpty && run.CompileErrors.IsEmpty, run.Describe());
        Assert.Contains(run.Sources, s => s.HintName.StartsWith("TinyClassifier", StringComparison.Ordinal));
    }
}
