using Microsoft.CodeAnalysis;

namespace Bert.Generators;

/// <summary>Every diagnostic the generator reports. IDs: 0001–0099 declarations and shapes, 0100–0199 ops,
/// 0200+ kernels and experiments. Each is documented, with a bad and a good example, in docs/diagnostics.md.</summary>
public static class Diagnostics
{
    const string Cat = "Bert";
    static DiagnosticDescriptor E(string id, string title, string message) =>
        new(id, title, message, Cat, DiagnosticSeverity.Error, isEnabledByDefault: true, helpLinkUri: "docs/diagnostics.md#" + id.ToLowerInvariant());

    public static readonly DiagnosticDescriptor NotPartial = E("BERT0001", "Model or block class is not partial",
        "'{0}' must be declared partial so that the generator can add the compiled model to it");
    public static readonly DiagnosticDescriptor NoForward = E("BERT0002", "Missing Forward method",
        "'{0}' has no Forward method; declare one, e.g. 'Tensor Forward(Tokens ids, Mask mask)'");
    public static readonly DiagnosticDescriptor TwoForwards = E("BERT0003", "Duplicate Forward method",
        "'{0}' declares more than one Forward method; keep exactly one");
    public static readonly DiagnosticDescriptor NotConstant = E("BERT0004", "Dimension is not a compile-time constant",
        "The {0} must be a compile-time constant; declare it as a 'const int' of the model and use that");
    public static readonly DiagnosticDescriptor HeadsDivide = E("BERT0005", "Hidden size not divisible by heads",
        "Attention over hidden size {0} with {1} heads: {0} % {1} != 0; choose a head count that divides the hidden size");
    public static readonly DiagnosticDescriptor StackCount = E("BERT0006", "Repeat count below 1",
        "'{0}' is stacked {1} times; the count must be at least 1");
    public static readonly DiagnosticDescriptor UnusedParam = E("BERT0007", "Parameter never used",
        "Parameter '{0}' is declared but never used by Forward; use it or remove it");
    public static readonly DiagnosticDescriptor ParamShape = E("BERT0008", "Parameter used with another shape",
        "Parameter '{0}' is declared {1} but {2} uses it as {3}; declare it with that shape");
    public static readonly DiagnosticDescriptor BadDimension = E("BERT0009", "Bad parameter or input dimension",
        "'{0}' has dimension {1}; every declared dimension must be a positive constant (inputs may also use Dim.Batch, Dim.Seq, Dim.Rows)");
    public static readonly DiagnosticDescriptor NoMaxLen = E("BERT0010", "No MaxLen constant",
        "Model '{0}' declares no 'const int MaxLen'; declare the longest sequence it accepts");
    public static readonly DiagnosticDescriptor SeqBound = E("BERT0011", "Sequence bound over MaxLen",
        "Position table '{0}' has {1} rows but MaxLen is {2}; sequences up to MaxLen need at least MaxLen rows");
    public static readonly DiagnosticDescriptor BadInput = E("BERT0012", "Unsupported Forward parameter",
        "Parameter '{0}' of Forward has a type Bert cannot feed; use Tensor, Tokens, Mask, Labels or Rows");
    public static readonly DiagnosticDescriptor BadCat = E("BERT0013", "Cat of parameters that are not adjacent",
        "Cat needs parameters declared one after another with the same trailing shape; {0}");
    public static readonly DiagnosticDescriptor StackShape = E("BERT0014", "Stacked block changes the shape",
        "Block '{0}' returns {1} from a first argument of {2}; a stacked block must return the shape it is given");
    public static readonly DiagnosticDescriptor UnknownName = E("BERT0015", "Unknown name in Forward",
        "'{0}' is not a parameter, block, input or local variable of '{1}'");

    public static readonly DiagnosticDescriptor InputShape = E("BERT0016", "Tensor input without a shape",
        "Tensor input '{0}' needs a [Shape(...)] attribute, e.g. [Shape(Dim.Batch, Dim.Seq, Hidden)]");

    public static readonly DiagnosticDescriptor ForeignBase = E("BERT0017", "Base architecture from another assembly",
        "'{0}' derives from '{1}', whose declaration is in another assembly and cannot be recompiled with new sizes; declare the variant in the project that declares '{1}'");

    public static readonly DiagnosticDescriptor InnerDim = E("BERT0100", "Matrix product dimensions disagree",
        "{0}: the inner dimensions disagree, {1} · {2}; the last dimension of the left operand must equal {3}");
    public static readonly DiagnosticDescriptor Broadcast = E("BERT0101", "Element-wise shapes incompatible",
        "'{0}' of {1} and {2}: the smaller shape must equal the trailing dimensions of the larger");
    public static readonly DiagnosticDescriptor UnknownOp = E("BERT0102", "Op outside the vocabulary",
        "'{0}' is not an op of Bert.Dsl.Ops, a [Pointwise] function or a block; use one of: {1}");
    public static readonly DiagnosticDescriptor Construct = E("BERT0103", "Unsupported construct in Forward",
        "A {0} cannot appear in a Forward method; write straight-line code of 'var' declarations, assignments, op calls and one final 'return'");
    public static readonly DiagnosticDescriptor ScalarConst = E("BERT0104", "Scalar argument is not a compile-time constant",
        "The {0} must be a compile-time constant number");
    public static readonly DiagnosticDescriptor DropoutRange = E("BERT0105", "Dropout probability out of range",
        "Dropout probability {0} is outside [0, 1); use a value such as 0.1");
    public static readonly DiagnosticDescriptor Rank = E("BERT0106", "Op operand of the wrong shape",
        "{0} expects {1} but gets {2}");
    public static readonly DiagnosticDescriptor Arity = E("BERT0107", "Wrong arguments to an op",
        "{0}");

    public static readonly DiagnosticDescriptor PwTranslate = E("BERT0200", "[Pointwise] function cannot be translated",
        "[Pointwise] '{0}' cannot be translated: {1}");
    public static readonly DiagnosticDescriptor PwDiff = E("BERT0201", "[Pointwise] function cannot be differentiated",
        "[Pointwise] '{0}' cannot be differentiated: {1}");
    public static readonly DiagnosticDescriptor PwRecursive = E("BERT0202", "[Pointwise] function is recursive",
        "[Pointwise] '{0}' calls itself, directly or through others; pointwise functions are inlined and cannot recurse");
    public static readonly DiagnosticDescriptor PwNotPartial = E("BERT0203", "[Pointwise] function in a type that is not partial",
        "[Pointwise] '{0}' is declared in '{1}', which must be partial (with every containing type) for its tensor overload");

    public static readonly DiagnosticDescriptor ExpNotPartial = E("BERT0210", "Experiment class is not a plain partial class",
        "'{0}' must be a partial, non-static, non-generic class declared directly in a namespace, so that the generator can add the checked experiment to it and list it by name: {1}");
    public static readonly DiagnosticDescriptor ExpModel = E("BERT0211", "Experiment's model is not a model of this project",
        "Experiment '{0}' trains {1}, which is {2}; name a [Model] class declared in this project, e.g. typeof(BertMiniClassifier)");
    public static readonly DiagnosticDescriptor ExpRange = E("BERT0212", "Experiment value out of range",
        "{0} = {1} is out of range: it must be {2}");
    public static readonly DiagnosticDescriptor ExpSeq = E("BERT0213", "Sequence length over the model's MaxLen",
        "Seq = {0} is longer than {1} accepts (MaxLen = {2}); use Seq <= {2} or a model with a longer MaxLen");
    public static readonly DiagnosticDescriptor ExpOtherJob = E("BERT0214", "Argument of the other job",
        "{0} has no meaning for {1}: {2}; remove it");
    public static readonly DiagnosticDescriptor ExpHead = E("BERT0215", "Job does not fit the model's head",
        "Experiment '{0}' is {1}, but {2} is {3}; {4}");
    public static readonly DiagnosticDescriptor ExpClasses = E("BERT0216", "Data set has more classes than the model",
        "{0} has {1} classes but {2} predicts {3}; name a classifier with at least {1} classes");
    public static readonly DiagnosticDescriptor ExpData = E("BERT0217", "Unknown data set",
        "'{0}' is not {1}; use one of {2}");
    public static readonly DiagnosticDescriptor ExpPrecision = E("BERT0218", "Precision the device does not have",
        "Precision.{0} is not available: {1}");
    public static readonly DiagnosticDescriptor ExpMemory = E("BERT0219", "Training step does not fit the device's memory",
        "Experiment '{0}' needs about {1} per training step, more than {2} ({3}); {4}");
    public static readonly DiagnosticDescriptor ExpFrom = E("BERT0220", "From experiment does not fit",
        "Experiment '{0}' cannot start from the From experiment: {1}");
    public static readonly DiagnosticDescriptor ExpReinit = E("BERT0221", "Bad Reinit",
        "Reinit = \"{0}\" is not usable: {1}");

    public static readonly DiagnosticDescriptor ExpFlash = E("BERT0223", "Flash attention the experiment cannot run",
        "AttentionKernel.Flash needs {0}: {1}");

    public static readonly DiagnosticDescriptor ExpName = E("BERT0222", "Two experiments share a name",
        "Another experiment is also named '{0}' ({1}); `bert run` and the runs folder know an experiment by its class name alone (in any case): rename one");

    public static readonly DiagnosticDescriptor Internal = E("BERT0299", "Internal generator error",
        "The Bert generator failed on '{0}': {1}; please report this with the model's declaration");

    public static DiagnosticDescriptor ById(string id) => id switch
    {
        "BERT0001" => NotPartial, "BERT0002" => NoForward, "BERT0003" => TwoForwards, "BERT0004" => NotConstant,
        "BERT0005" => HeadsDivide, "BERT0006" => StackCount, "BERT0007" => UnusedParam, "BERT0008" => ParamShape,
        "BERT0009" => BadDimension, "BERT0010" => NoMaxLen, "BERT0011" => SeqBound, "BERT0012" => BadInput,
        "BERT0013" => BadCat, "BERT0014" => StackShape, "BERT0015" => UnknownName, "BERT0016" => InputShape, "BERT0017" => ForeignBase,
        "BERT0100" => InnerDim, "BERT0101" => Broadcast, "BERT0102" => UnknownOp, "BERT0103" => Construct,
        "BERT0104" => ScalarConst, "BERT0105" => DropoutRange, "BERT0106" => Rank, "BERT0107" => Arity,
        "BERT0200" => PwTranslate, "BERT0201" => PwDiff, "BERT0202" => PwRecursive, "BERT0203" => PwNotPartial,
        "BERT0210" => ExpNotPartial, "BERT0211" => ExpModel, "BERT0212" => ExpRange, "BERT0213" => ExpSeq, "BERT0214" => ExpOtherJob,
        "BERT0215" => ExpHead, "BERT0216" => ExpClasses, "BERT0217" => ExpData, "BERT0218" => ExpPrecision, "BERT0219" => ExpMemory,
        "BERT0220" => ExpFrom, "BERT0221" => ExpReinit, "BERT0222" => ExpName, "BERT0223" => ExpFlash, "BERT0299" => Internal,
        _ => throw new System.ArgumentException(id),
    };

    public static Diagnostic ToDiagnostic(Diag d) =>
        Diagnostic.Create(ById(d.Id), d.Loc.ToLocation(), System.Linq.Enumerable.ToArray<object>(d.Args));
}
