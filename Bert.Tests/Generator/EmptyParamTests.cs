using Microsoft.CodeAnalysis;
using Xunit;

namespace Bert.Tests.Generator;

public class EmptyParamTests
{
    /// <summary>A [Param] with no dimensions is BERT0009 at the attribute, not a silent drop or a later BERT0015.</summary>
    [Fact]
    public void ParamWithoutDimensions_IsBert0009AtTheAttribute()
    {
        var m = Markup.Parse("""
            using Bert.Dsl;
            using static Bert.Dsl.Ops;
            [Model]
            public partial class M
            {
                public const int C = 4, MaxLen = 8;
                [[|Param|]] Tensor W;
                public Tensor Forward([Shape(Dim.Batch, C)] Tensor x) => x * W;
            }
            """);
        var run = GeneratorHarness.Run(new SourceFile("M.cs", m.Text));
        var d = Assert.Single(run.GeneratorDiagnostics);
        Assert.Equal("BERT0009", d.Id);
        Assert.Equal(m.Spans[0], d.Location.SourceSpan);
    }
}
