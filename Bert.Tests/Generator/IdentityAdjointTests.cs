using Bert.Generators;
using Xunit;

namespace Bert.Tests.Generator;

/// <summary>The memory plan gives an input of a fused kernel its output's gradient buffer only when the kernel's adjoint for
/// it is dy itself (Plan.IdentityAdjoint): the input read once, reached from the root through additions (either side) and
/// subtractions' left sides, each node on the way read once.</summary>
public class IdentityAdjointTests
{
    static FIn X(int i) => new(i);
    static FOp Op(string op, params FE[] args) => new(op, args);

    [Fact]
    public void AdditionsAndALeftSubtraction_PassDyUnchanged()
    {
        Assert.True(Plan.IdentityAdjoint(Op("add", X(0), X(1)), 0));
        Assert.True(Plan.IdentityAdjoint(Op("add", X(0), X(1)), 1));
        Assert.True(Plan.IdentityAdjoint(Op("sub", X(0), X(1)), 0));
        Assert.True(Plan.IdentityAdjoint(X(0), 0));
        // BERT's residual connection: x0 + (x1 + x2)·dropmask, and the embeddings' ((x1 + x2) + x0)
        var residual = Op("add", X(0), Op("mul", Op("add", X(1), X(2)), Op("drop")));
        Assert.True(Plan.IdentityAdjoint(residual, 0));
        Assert.False(Plan.IdentityAdjoint(residual, 1));
        var embeddings = Op("add", Op("add", X(1), X(2)), X(0));
        Assert.True(Plan.IdentityAdjoint(embeddings, 1) && Plan.IdentityAdjoint(embeddings, 2) && Plan.IdentityAdjoint(embeddings, 0));
    }

    [Fact]
    public void AnythingElse_DoesNot()
    {
        Assert.False(Plan.IdentityAdjoint(Op("sub", X(0), X(1)), 1));                        // −dy
        Assert.False(Plan.IdentityAdjoint(Op("add", X(0), X(0)), 0));                        // 2·dy
        Assert.False(Plan.IdentityAdjoint(Op("mul", Op("add", X(0), X(1)), Op("drop")), 0)); // dropped
        Assert.False(Plan.IdentityAdjoint(Op("add", Op("mul", new FConst(0.5), X(0)), X(1)), 0));
        Assert.False(Plan.IdentityAdjoint(Op("neg", X(0)), 0));
        Assert.False(Plan.IdentityAdjoint(X(1), 0));
        // a shared sum: s = x0 + x1 read twice, y = s + s·x2, so dy reaches x0 along two paths
        var s = Op("add", X(0), X(1));
        Assert.False(Plan.IdentityAdjoint(Op("add", s, Op("mul", s, X(2))), 0));
        // x0 read twice through different loads of the same input
        Assert.False(Plan.IdentityAdjoint(Op("add", X(0), Op("mul", X(0), X(1))), 0));
    }
}
