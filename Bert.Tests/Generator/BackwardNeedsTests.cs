using Bert.Generators;
using Xunit;

namespace Bert.Tests.Generator;

/// <summary>What a fused kernel's backward recomputes (BackwardNeeds): the values its derivative rules read, and what those
/// are computed from. An input outside that set is not loaded by the backward kernels, and the memory plan lets its buffer
/// go after the forward (Plan.BackwardReads). Claiming too little would not compile (the emitted adjoint would name a value
/// never computed); these tests pin that it claims no more than the rules read.</summary>
public class BackwardNeedsTests
{
    static FIn X(int i) => new(i);
    static FOp Op(string op, params FE[] args) => new(op, args);
    static FConst C(double v) => new(v);
    static int[] Inputs(FE root) => BackwardNeeds.Of(root).Inputs.Order().ToArray();

    [Fact]
    public void BiasAndResidualKernels_ReadNoInput()
    {
        Assert.Empty(Inputs(Op("add", X(0), X(1))));                                           // bias
        Assert.Empty(Inputs(Op("add", X(0), Op("mul", Op("add", X(1), X(2)), Op("drop")))));   // bias + dropout + residual
        Assert.Empty(Inputs(Op("sub", Op("neg", X(0)), X(1))));
        Assert.Empty(Inputs(Op("mul", X(0), C(0.125))));                                       // a scale
        Assert.Empty(Inputs(X(0)));
    }

    [Fact]
    public void NonlinearRules_ReadWhatTheirDerivativeNeeds()
    {
        // GELU(x + b) = 0.5·(x + b)·(1 + erf((x + b)/√2)): both inputs
        var s = Op("add", X(0), X(1));
        Assert.Equal([0, 1], Inputs(Op("mul", Op("mul", C(0.5), s), Op("add", C(1), Op("erf", Op("mul", s, C(0.7071067811865476)))))));
        // tanh, exp, sqrt read their own value (so what it is computed from); log, abs, erf their argument
        var t = Op("tanh", X(0));
        var needs = BackwardNeeds.Of(Op("add", t, X(1)));
        Assert.True(needs.Has(t));
        Assert.Equal([0], needs.Inputs.ToArray());
        Assert.Equal([0], Inputs(Op("add", Op("log", X(0)), X(1))));
        // a product reads the other factor only: x·y with y's gradient wanted reads x, and x's reads y
        Assert.Equal([0, 1], Inputs(Op("mul", X(0), X(1))));
        Assert.Equal([1], Inputs(Op("add", Op("mul", X(0), C(3)), Op("mul", C(2), Op("exp", X(1))))));
        // x / y: the divisor for x's adjoint; the quotient and the divisor for y's
        Assert.Empty(Inputs(Op("div", X(0), C(2))));
        Assert.Equal([0, 1], Inputs(Op("div", X(0), X(1))));
        Assert.Equal([0], Inputs(Op("div", C(1), X(0))));
    }

    [Fact]
    public void ASelect_ReadsItsComparedOperands_NotItsBranches()
    {
        // relu-like: x > 0 ? x : 0.01·x reads x for the comparison; the branches' gradients read nothing of their own
        Assert.Equal([0], Inputs(Op("sel>", X(0), C(0), X(1), Op("mul", X(2), C(0.01)))));
        // the compared operands receive no gradient, so a nonlinearity inside them is never differentiated
        var needs = BackwardNeeds.Of(Op("sel<", Op("tanh", X(0)), X(1), X(2), C(0)));
        Assert.Equal([0, 1], needs.Inputs.Order().ToArray());
    }
}
