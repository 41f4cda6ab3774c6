using System.Reflection;
using Bert.Cli;
using Bert.Models;
using Bert.Generators;
using Bert.Runtime;
using Bert.Tests.Cli;
using Bert.Tests.Data;
using Bert.Training;
using Microsoft.CodeAnalysis;
using Xunit;
using Dsl = Bert.Dsl;

namespace Bert.Tests.Generator;

/// <summary>[Experiment] classes: every check reports at the offending argument, a valid experiment compiles to its
/// static with the build-time memory estimate the runtime computes too, the generator's tables agree with the runtime's
/// and the data sets', and `bert run` runs a declared chain.</summary>
public class ExperimentTests
{
    /// <summary>Two small models every case can name: a classifier (a label per text, 2 classes, MaxLen 16) and a masked-LM
    /// model (gathered rows), both with a weight named W of different shapes; and a class that is no model.</summary>
    const string Models = """
        [Model]
        public partial class Clf
        {
            public const int C = 4, Classes = 2, MaxLen = 16;
            [Param(Classes, C)] Tensor W;
            public Tensor Forward([Shape(Dim.Batch, C)] Tensor x, Labels labels) => CrossEntropy(Linear(x, W), labels);
        }

        [Model]
        public partial class Lm
        {
            public const int C = 4, Vocab = 10, MaxLen = 32;
            [Param(Vocab, C)] Tensor W;
            public Tensor Forward([Shape(Dim.Batch, Dim.Seq, C)] Tensor x, Rows rows, [Shape(Dim.Rows)] Labels labels) =>
                CrossEntropy(Linear(Gather(x, rows), W), labels);
        }

        public class Helper { }

        """;

    public static TheoryData<string, string> BadExperiments() => new()
    {
        { "BERT0210", """
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16)]
            public class [|X|] { }
            """ },
        { "BERT0211", """
            [Experiment([|typeof(Helper)|], Data = "amazon", Seq = 16)]
            public partial class X;
            """ },
        { "BERT0212", """
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, Batch = [|0|])]
            public partial class X;
            """ },
        { "BERT0213", """
            [Experiment(typeof(Clf), Data = "amazon", Seq = [|64|])]
            public partial class X;
            """ },
        { "BERT0214", """
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, Steps = [|100|])]
            public partial class X;
            """ },
        { "BERT0215", """
            [Experiment(typeof(Clf), Job = [|Job.Pretrain|], Seq = 16)]
            public partial class X;
            """ },
        { "BERT0216", """
            [Experiment(typeof(Clf), Data = [|"pt-tweets"|], Seq = 16)]
            public partial class X;
            """ },
        { "BERT0217", """
            [Experiment(typeof(Clf), Data = [|"amazom"|], Seq = 16)]
            public partial class X;
            """ },
        { "BERT0218", """
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, Precision = [|Precision.Bf16|])]
            public partial class X;
            """ },
        { "BERT0223", """
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, Device = Device.H100, Precision = Precision.Bf16, Attention = [|AttentionKernel.Flash|])]
            public partial class X;
            """ },
        { "BERT0219", """
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, MemoryGiB = 0.01, Batch = [|10_000_000|])]
            public partial class X;
            """ },
        { "BERT0220", """
            [Experiment(typeof(Lm), Job = Job.Pretrain, Seq = 16, Batch = 4)]
            public partial class Pre;

            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, From = [|typeof(Pre)|])]
            public partial class X;
            """ },
        { "BERT0221", """
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, Reinit = [|"qk"|])]
            public partial class X;
            """ },
        { "BERT0222", """
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16)]
            public partial class RUN1;

            [Experiment(typeof(Clf), Data = "imdb", Seq = 16)]
            public partial class [|Run1|];
            """ },
        { "BERT0212", """
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, Device = [|(Device)99|])]
            public partial class X;
            """ },
        { "BERT0214", """
            [Experiment(typeof(Lm), Job = Job.Pretrain, Seq = 16, Reinit = [|"qk"|])]
            public partial class X;
            """ },
        { "BERT0210", """
            public partial class Outer
            {
                [Experiment(typeof(Clf), Data = "amazon", Seq = 16)]
                public partial class [|X|];
            }
            """ },
        { "BERT0210", """
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16)]
            public partial record [|X|];
            """ },
    };

    [Theory]
    [MemberData(nameof(BadExperiments))]
    public void Diagnostic_FiresAtItsArgument(string id, string body)
    {
        var marked = GeneratorTests.Usings + Models + body;
        var markup = Markup.Parse(marked);
        var run = GeneratorHarness.Run(new SourceFile("Test0.cs", marked));
        GeneratorTests.AssertOnly(run, id, markup.Spans.Single(), "Test0.cs");
    }

    static GeneratorRun RunWith(string body) => GeneratorHarness.Run(new SourceFile("Test0.cs", GeneratorTests.Usings + Models + body));

    static string Message(GeneratorRun run, string id) => Assert.Single(run.GeneratorDiagnostics, d => d.Id == id).GetMessage();

    [Fact]
    public void Messages_SayWhatToChange()
    {
        // Out of memory: the largest batch that fits, and the accumulation that keeps the sequences per step.
        var memory = Message(RunWith("""
            [Experiment(typeof(Lm), Job = Job.Pretrain, Seq = 16, MemoryGiB = 0.01, Batch = 10_000_000, Accumulate = 2)]
            public partial class X;
            """), "BERT0219");
        var fit = System.Text.RegularExpressions.Regex.Match(memory, @"at most Batch = (\d+) fits; Batch = \1 with Accumulate = (\d+) keeps about 20000000 sequences");
        Assert.True(fit.Success, memory);
        int largest = int.Parse(fit.Groups[1].Value), accumulate = int.Parse(fit.Groups[2].Value);
        Assert.InRange(largest, 1, 9_999_999);
        Assert.True((long)largest * accumulate >= 20_000_000 && (long)largest * (accumulate - 1) < 20_000_000, memory);

        // From a model of another size: the tensor and both shapes.
        var from = Message(RunWith("""
            [Experiment(typeof(Lm), Job = Job.Pretrain, Seq = 16, Batch = 4)]
            public partial class Pre;
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, From = typeof(Pre))]
            public partial class X;
            """), "BERT0220");
        Assert.Contains("Pre trains Lm, whose W is [10,4] where Clf has [2,4]", from);

        // A chain that leads back to itself: both ends are told.
        var cycle = RunWith("""
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, From = typeof(B))]
            public partial class A;
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, From = typeof(A))]
            public partial class B;
            """);
        Assert.Equal(2, cycle.GeneratorDiagnostics.Count(d => d.Id == "BERT0220" && d.GetMessage().Contains("leads back to itself")));

        // Runs: at least one, fine-tuning only, and no start for another experiment.
        Assert.Contains("Runs = 0 is out of range", Message(RunWith("""
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, Runs = 0)]
            public partial class X;
            """), "BERT0212"));
        Assert.Contains("Runs has no meaning for pre-training", Message(RunWith("""
            [Experiment(typeof(Lm), Job = Job.Pretrain, Seq = 16, Runs = 3)]
            public partial class X;
            """), "BERT0214"));
        Assert.Contains("Many has Runs = 3, one checkpoint each", Message(RunWith("""
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, Runs = 3)]
            public partial class Many;
            [Experiment(typeof(Clf), Data = "imdb", Seq = 16, From = typeof(Many))]
            public partial class X;
            """), "BERT0220"));

        // A classifier over one attention of two heads (head size C / 2).
        static string AttentionModel(string name, int c, int maxLen) => $$"""
            [Model]
            public partial class {{name}}
            {
                public const int C = {{c}}, Heads = 2, Classes = 2, MaxLen = {{maxLen}};
                [Param(3 * C, C)] Tensor Wqkv;
                [Param(Classes, C)] Tensor Wo;
                public Tensor Forward([Shape(Dim.Batch, Dim.Seq, C)] Tensor x, Mask mask, Labels labels) =>
                    CrossEntropy(Linear(First(Attention(Linear(x, Wqkv), mask, Heads, 0.1f)), Wo), labels);
            }
            """;

        // The flash attention: each thing it needs, named.
        string Att = AttentionModel("Att", 12, 16);
        Assert.Contains("AttentionKernel.Flash needs a GPU Device", Message(RunWith(Att + """
            [Experiment(typeof(Att), Data = "amazon", Seq = 16, Attention = AttentionKernel.Flash)]
            public partial class X;
            """), "BERT0223"));
        Assert.Contains("AttentionKernel.Flash needs Precision.Bf16: its products take bf16 operands", Message(RunWith(Att + """
            [Experiment(typeof(Att), Data = "amazon", Seq = 16, Device = Device.H100, Attention = AttentionKernel.Flash)]
            public partial class X;
            """), "BERT0223"));
        Assert.Contains("Att's is 6; drop Attention", Message(RunWith(Att + """
            [Experiment(typeof(Att), Data = "amazon", Seq = 16, Device = Device.H100, Precision = Precision.Bf16, Attention = AttentionKernel.Flash)]
            public partial class X;
            """), "BERT0223"));
        Assert.Contains("Clf has none", Message(RunWith("""
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, Device = Device.H100, Precision = Precision.Bf16, Attention = AttentionKernel.Flash)]
            public partial class X;
            """), "BERT0223"));

        // The memory estimate follows the attention kernel: at T = 4096 four sequences' T×T probabilities (and their
        // gradient in the scratch) exceed 1 GiB, the flash attention's row statistics do not.
        string Long = AttentionModel("Long", 16, 4096);
        Assert.Matches(@"needs about 1\.\d\d GiB .*; at most Batch = [123] fits", Message(RunWith(Long + """
            [Experiment(typeof(Long), Data = "amazon", Seq = 4096, Batch = 4, Device = Device.H100, Precision = Precision.Bf16, MemoryGiB = 1)]
            public partial class X;
            """), "BERT0219"));
        Assert.Empty(RunWith(Long + """
            [Experiment(typeof(Long), Data = "amazon", Seq = 4096, Batch = 4, Device = Device.H100, Precision = Precision.Bf16, MemoryGiB = 1, Attention = AttentionKernel.Flash)]
            public partial class X;
            """).GeneratorDiagnostics);
        Assert.Contains("with the flash attention's row statistics", Message(RunWith(Long + """
            [Experiment(typeof(Long), Data = "amazon", Seq = 4096, Batch = 100_000, Device = Device.H100, Precision = Precision.Bf16, MemoryGiB = 1, Attention = AttentionKernel.Flash)]
            public partial class X;
            """), "BERT0219"));

        // A From that is no experiment class at all.
        Assert.Contains("its From type is not an [Experiment] of this project", Message(RunWith("""
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, From = typeof(int[]))]
            public partial class X;
            """), "BERT0220"));

        // A part --reinit does not know, with a valid start.
        var reinit = Message(RunWith("""
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16)]
            public partial class Pre;
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, From = typeof(Pre), Reinit = "qk,attn")]
            public partial class X;
            """), "BERT0221");
        Assert.Contains("'attn' is not a part", reinit);

        // The CPU has no bf16; a GPU does.
        Assert.Empty(RunWith("""
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, Device = Device.H100, Precision = Precision.Bf16)]
            public partial class X;
            """).GeneratorDiagnostics);

        // Fine-tuning accumulates too.
        var tune = Message(RunWith("""
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, MemoryGiB = 0.01, Batch = 10_000_000)]
            public partial class X;
            """), "BERT0219");
        Assert.Matches(@"; at most Batch = (\d+) fits; Batch = \1 with Accumulate = \d+ keeps about 10000000 sequences per step$", tune);

        // Static, generic: why the class is not plain.
        Assert.Contains("it is static", Message(RunWith("""
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16)]
            public static partial class X;
            """), "BERT0210"));
        Assert.Contains("it is generic", Message(RunWith("""
            [Experiment(typeof(Clf), Data = "amazon", Seq = 16)]
            public partial class X<TSome>;
            """), "BERT0210"));
    }

    static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Bert.sln"))) return d.FullName;
        throw new DirectoryNotFoundException("No Bert.sln above " + AppContext.BaseDirectory);
    }

    /// <summary>docs/diagnostics.md's experiment examples, compiled with this repository's models and declared
    /// experiments: each bad one reports its own ID (once, in its own file), the good ones nothing.</summary>
    [Fact]
    public void DocumentedExamples_BadReportTheirId_GoodCompile()
    {
        string root = RepoRoot();
        var doc = File.ReadAllText(Path.Combine(root, "docs", "diagnostics.md"));
        var files = Directory.GetFiles(Path.Combine(root, "Bert.Models", "Models"), "*.cs")
            .Append(Path.Combine(root, "Bert.Models", "Experiments", "Declared.cs"))
            .Select(p => new SourceFile(p, File.ReadAllText(p))).ToList();
        var ids = new List<string>();
        foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(doc,
            @"### (BERT02(?:1\d|2\d))\n.*?```csharp\n(.*?)```", System.Text.RegularExpressions.RegexOptions.Singleline))
        {
            string id = m.Groups[1].Value, code = m.Groups[2].Value;
            int good = code.IndexOf("// Good", StringComparison.Ordinal);
            Assert.True(code.StartsWith("// Bad", StringComparison.Ordinal) && good > 0, id + " has no Bad and Good example");
            foreach (var (kind, text) in new[] { ("bad", code[..good]), ("good", code[good..]) })
            {
                // Unique class names, so that the examples and the declared experiments live side by side.
                string renamed = System.Text.RegularExpressions.Regex.Replace(text, @"class (\w+)", $"class $1_{id}_{kind}");
                files.Add(new SourceFile($"{id}.{kind}.cs", "using Bert.Dsl;\nnamespace Bert.Models;\n" + renamed));
            }
            ids.Add(id);
        }
        Assert.Equal(Enumerable.Range(210, 14).Select(i => "BERT0" + i), ids);
        var run = GeneratorHarness.Run(files.ToArray());
        foreach (var id in ids)
        {
            var reported = run.GeneratorDiagnostics.Where(x => x.Location.GetLineSpan().Path == id + ".bad.cs").ToList();
            Assert.True(reported.Count == 1 && reported[0].Id == id, $"{id}'s bad example reported {reported.Count}:\n{run.Describe()}");
        }
        Assert.Equal(ids.Count, run.GeneratorDiagnostics.Length);
    }

    [Fact]
    public void ValidExperiments_CompileToTheirStatics_WithTheRuntimesEstimate()
    {
        var run = RunWith("""
            [Experiment(typeof(Lm), Job = Job.Pretrain, Batch = 4, Seq = 16, Steps = 10, Device = Device.A100_40GB, Precision = Precision.Bf16)]
            public partial class Pre;

            [Experiment(typeof(Clf), Data = "amazon", Seq = 16, Reinit = "qk", From = typeof(Pre2), Runs = 4, Seed = 7)]
            public partial class Tune;

            [Experiment(typeof(Clf), Data = "imdb", Seq = 12)]
            public partial class Pre2;
            """);
        Assert.True(run.GeneratorDiagnostics.IsEmpty && run.CompileErrors.IsEmpty, run.Describe());
        using var image = new MemoryStream();
        var emitted = run.Output.Emit(image);
        Assert.True(emitted.Success, string.Join("\n", emitted.Diagnostics));
        var assembly = Assembly.Load(image.ToArray());
        ExperimentInfo Of(string name) => (ExperimentInfo)assembly.GetType("T." + name)!.GetProperty("Experiment")!.GetValue(null)!;

        var all = (IReadOnlyList<ExperimentInfo>)assembly.GetType("Bert.Generated.DeclaredExperiments")!.GetProperty("All")!.GetValue(null)!;
        Assert.Equal(["Pre", "Pre2", "Tune"], all.Select(e => e.Name));

        var pre = Of("Pre");
        Assert.Equal((Dsl.Job.Pretrain, "Lm", 4, 16, 10, 5e-4, Dsl.Device.A100_40GB, Dsl.Precision.Bf16),
            (pre.Job, pre.Model, pre.Batch, pre.Seq, pre.Steps, pre.LearningRate, pre.Device, pre.Precision));
        Assert.Equal(MemoryEstimate.PretrainingRows(4, 16, 0.15), pre.Rows);
        // The build-time estimate is the runtime's for the same shape, part by part, bf16 copies included.
        Assert.Equal(MemoryEstimate.For(pre.Info(), 4, 16, pre.Rows, Dsl.Device.A100_40GB, Dsl.Precision.Bf16, Dsl.Job.Pretrain), pre.Memory);
        Assert.True(pre.Memory.Bf16 > 0 && pre.Memory.Scratch > 0);
        Assert.Equal(MemoryEstimate.CapacityOf(Dsl.Device.A100_40GB), pre.Memory.Capacity);

        // Defaults: 32 sequences, 3 epochs at 1e-4, warm-up 0.1, AdamW, fp32 on the CPU (no capacity known).
        var tune = Of("Tune");
        Assert.Equal((Dsl.Job.FineTune, "Clf", "amazon", 32, 16, 3, 1e-4, 0.1, Dsl.Optimizer.AdamW, "Pre2", "qk", 0L),
            (tune.Job, tune.Model, tune.Data, tune.Batch, tune.Seq, tune.Epochs, tune.LearningRate, tune.Warmup, tune.Optimizer, tune.From, tune.Reinit, tune.Memory.Capacity));
        Assert.Equal(MemoryEstimate.For(tune.Info(), 32, 16, 0, Dsl.Device.Cpu, Dsl.Precision.Fp32, Dsl.Job.FineTune), tune.Memory);
        Assert.Equal(tune.Info().ParameterCount * 16, tune.Memory.ParameterState);
        Assert.Equal(0, tune.Memory.Scratch);
        // On a GPU, fine-tuning binds sequences padded to a multiple of 8 (within MaxLen): Seq = 12 counts 16.
        var pre2 = Of("Pre2");
        Assert.Equal(12, pre2.Memory.Seq);
        Assert.Equal((4, 7, 1), (tune.Runs, tune.Seed, pre2.Runs));
        Assert.EndsWith("seed=9", tune.DeclarationOf(2));
        Assert.Equal(16, MemoryEstimate.For(pre2.Info(), 32, 12, 0, Dsl.Device.H100, Dsl.Precision.Fp32, Dsl.Job.FineTune).Seq);
        Assert.Equal(MemoryEstimate.BoundSeq(12, 16, Dsl.Job.FineTune, Dsl.Device.L4), ExperimentCompiler.BoundSeq(12, 16, pretraining: false, gpu: true));
    }

    [Fact]
    public void DeclaredExperiments_EstimateWhatTheRuntimeComputes_AndWhatTheCpuModelAllocates()
    {
        Assert.NotEmpty(Program.Experiments);
        foreach (var e in Program.Experiments)
        {
            var info = e.Info();
            Assert.Equal(info.Name, e.Model);
            int rows = e.Job == Dsl.Job.Pretrain ? MemoryEstimate.PretrainingRows(e.Batch, e.Seq, e.MaskProb) : 0;
            Assert.Equal(rows, e.Rows);
            var runtime = MemoryEstimate.For(info, e.Batch, e.Seq, rows, e.Device, e.Precision, e.Job, flash: e.Attention == Dsl.AttentionKernel.Flash);
            Assert.Equal(runtime with { Capacity = e.Memory.Capacity }, e.Memory);
            Assert.True(e.Memory.Capacity == 0 || e.Memory.Total <= e.Memory.Capacity, e.ToString());
        }
        // What a CPU model binds for the step is the estimate's activations (plus its 16-float guard).
        foreach (var e in Program.Experiments.Where(e => e.Device == Dsl.Device.Cpu && e.Info().ParameterCount < 2_000_000))
        {
            var m = e.Create();
            m.Bind(e.Batch, e.Seq, e.Rows, training: true);
            Assert.Equal(e.Memory.Activations + 16 * 4, m.ArenaBytes);
        }
    }

    [Fact]
    public void GeneratorTables_MatchTheRuntimeAndTheData()
    {
        foreach (var d in Enum.GetValues<Dsl.Device>())
            Assert.Equal(d == Dsl.Device.Cpu ? 0 : (ExperimentCompiler.DeviceMiB[(int)d] << 20) - ExperimentCompiler.GpuReserve, MemoryEstimate.CapacityOf(d));
        Assert.Equal(MemoryEstimate.GpuReserve, ExperimentCompiler.GpuReserve);
        // The head sizes the flash kernels take, by the generator's rule (BERT0223, the flash estimate) and the runtime's table.
        Assert.All(Enumerable.Range(-1, 300), d => Assert.Equal(Bert.Runtime.Cuda.CudaExec.FlashHeadSize(d), ExperimentCompiler.FlashHeadSize(d)));
        Assert.Equal((Bert.Runtime.Cuda.CudaExec.PointwiseRowChunk, Bert.Runtime.Cuda.CudaKernels.RowChunk, Bert.Runtime.Cuda.CudaKernels.EmbedSegmentRows),
            (ExperimentCompiler.PointwiseRowChunk, ExperimentCompiler.RowChunk, ExperimentCompiler.EmbedSegmentRows));
        Assert.Equal(DataSets.NamedCorpora.Order(), ExperimentCompiler.Corpora.Order());
        Assert.Equal(DataSets.Named.Concat(DataSets.NamedPortuguese).Order(), ExperimentCompiler.Sets.Select(s => s.Name).Order());
        foreach (var (name, classes) in ExperimentCompiler.Sets)
            Assert.Equal(classes, DataSets.Load(name).Train.Classes);
        Assert.Equal(Reinit.Parts.Where(p => p != "top-N").Order(), new[] { "qk", "qkv", "attention", "ffn", "layernorm", "pooler" }.Order());
    }

    /// <summary>A question-answering model (a transpose before its cross-entropy) fine-tunes on a file of questions; a named
    /// set of labeled texts is refused at Data, saying what to give instead.</summary>
    [Fact]
    public void QuestionAnsweringModel_FineTunesOnAFile_NotOnLabeledTexts()
    {
        const string qa = """
            [Model]
            public partial class Qa
            {
                public const int C = 4, MaxLen = 16;
                [Param(2, C)] Tensor W;
                public Tensor Forward([Shape(Dim.Batch, Dim.Seq, C)] Tensor x, [Shape(Dim.Batch, 2)] Labels labels) => CrossEntropy(Transpose(Linear(x, W)), labels);
            }

            """;
        var named = Message(RunWith(qa + """
            [Experiment(typeof(Qa), Data = "amazon", Seq = 16)]
            public partial class X;
            """), "BERT0215");
        Assert.Contains("a question-answering model (an answer's start and end per text)", named);
        Assert.Contains("amazon labels whole texts: name a classifier, or give a SQuAD file for the question-answering model", named);
        var file = RunWith(qa + """
            [Experiment(typeof(Qa), Data = "train-v1.1.json", Seq = 16)]
            public partial class X;
            """);
        Assert.True(file.GeneratorDiagnostics.IsEmpty && file.CompileErrors.IsEmpty, file.Describe());
        // `bert run` takes it as a question-answering model: its fine-tuning reads the file as questions (--format squad).
        using var image = new MemoryStream();
        Assert.True(file.Output.Emit(image).Success);
        var experiment = (ExperimentInfo)Assembly.Load(image.ToArray()).GetType("T.X")!.GetProperty("Experiment")!.GetValue(null)!;
        Assert.Equal("question-answering", Catalog.Of(experiment).Head);
    }

    [Fact]
    public void Catalog_FindsAnExperimentsModel()
    {
        foreach (var e in Program.Experiments)
        {
            var entry = Catalog.Of(e);
            Assert.Equal(e.Model, entry.Name);
            Assert.Equal(e.Job == Dsl.Job.Pretrain ? "pretraining" : "classifier", entry.Head);
        }
    }
}

/// <summary>`bert run`: a declared chain runs its start first, then reuses it; unknown names and a missing name are one
/// sentence each.</summary>
[Collection("Console")]
public class RunCommandTests
{
    [Fact]
    public void Run_RunsTheStartFirst_ThenReusesIt()
    {
        string dir = TempDir.Create();
        try
        {
            var (code, output, err) = CliTests.Run("run", "NanoAmazonCheck", "--out", dir);
            Assert.True(code == 0, output + err);
            Assert.Contains("NanoAmazonCheck starts from NanoPretrainingCheck, which has no finished run", output);
            Assert.True(TrainLoop.Finished(Path.Combine(dir, "NanoPretrainingCheck"), "BertNanoPreTraining"));
            // Two runs (Runs = 2), seeds 1 and 2, a folder each, then each best score and their mean ± sd.
            var check = Program.Experiment("NanoAmazonCheck");
            foreach (int run in new[] { 0, 1 })
            {
                string runDir = Path.Combine(dir, "NanoAmazonCheck", $"run-{run + 1}");
                Assert.True(TrainLoop.Finished(runDir, "BertNanoClassifier", experiment: check.DeclarationOf(run)));
                Assert.False(TrainLoop.Finished(runDir, "BertNanoPreTraining"));
                Assert.True(File.Exists(Path.Combine(runDir, "best", "model.safetensors")));
            }
            Assert.Contains("NanoAmazonCheck, run 2 of 2 (seed 2)", output);
            var summary = System.Text.RegularExpressions.Regex.Match(output, @"NanoAmazonCheck: best dev accuracy of 2 runs (\d+\.\d) %, (\d+\.\d) %; mean (\d+\.\d) % ± (\d+\.\d) \(sd\)\.");
            Assert.True(summary.Success, output);
            double a = double.Parse(summary.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), b = double.Parse(summary.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(Math.Abs((a + b) / 2 - double.Parse(summary.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture)), 0, 0.051);
            Assert.Equal(TrainLoop.BestScore(Path.Combine(dir, "NanoAmazonCheck", "run-1"))!.Value * 100, a, 1);
            Assert.Contains("Initialized 39 of 41 tensors from " + Path.Combine(dir, "NanoPretrainingCheck"), output);

            var declared = Program.Experiment("NanoPretrainingCheck").Declaration;
            Assert.True(TrainLoop.Finished(Path.Combine(dir, "NanoPretrainingCheck"), "BertNanoPreTraining", 30, declared));
            Assert.False(TrainLoop.Finished(Path.Combine(dir, "NanoPretrainingCheck"), "BertNanoPreTraining", 30, declared.Replace("seed=1", "seed=2")));
            Assert.Contains("NanoPretrainingCheck: Pretrain BertNanoPreTraining on '', B=8 T=32 accumulate=1 steps=30", declared);

            var pretrained = File.ReadAllBytes(Path.Combine(dir, "NanoPretrainingCheck", "model.safetensors"));
            (code, output, err) = CliTests.Run("run", "nanoamazoncheck", "--out", dir);
            Assert.True(code == 0, output + err);
            Assert.Contains("reusing its finished run", output);
            Assert.Equal(pretrained, File.ReadAllBytes(Path.Combine(dir, "NanoPretrainingCheck", "model.safetensors")));
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>A run folder that holds another run (here one `bert pretrain` made) is neither resumed nor reused: one
    /// sentence, and the folder as it was.</summary>
    [Fact]
    public void Run_RefusesAFolderOfAnotherRun()
    {
        string dir = TempDir.Create();
        try
        {
            string other = Path.Combine(dir, "NanoPretrainingCheck");
            var (code, output, err) = CliTests.Run("pretrain", "--size", "nano", "--steps", "2", "--batch", "4", "--max-len", "32", "--out", other);
            Assert.True(code == 0, output + err);
            var before = File.ReadAllBytes(Path.Combine(other, "model.safetensors"));
            (code, _, err) = CliTests.Run("run", "NanoPretrainingCheck", "--out", dir);
            Assert.NotEqual(0, code);
            Assert.Contains("holds a run of a command other than bert run, not of NanoPretrainingCheck: ", err);
            Assert.Contains("move or delete the folder, or give bert run another --out.", err);
            Assert.Equal(before, File.ReadAllBytes(Path.Combine(other, "model.safetensors")));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Run_ListsAndRefuses()
    {
        var (code, output, _) = CliTests.Run("run", "--list");
        Assert.Equal(0, code);
        foreach (var e in Program.Experiments) Assert.Contains(e.Name + ": ", output);
        Assert.Contains("BasePretrainingH100: pre-train BertBasePreTraining", output);
        Assert.Matches(@"GiB of 78\.65 GiB per step", output);

        (code, _, var err) = CliTests.Run("run", "NoSuchRun");
        Assert.NotEqual(0, code);
        Assert.Contains("There is no experiment named 'NoSuchRun'; declared: ", err);
        Assert.Single(err.Trim().Split('\n'));

        (code, _, err) = CliTests.Run("run");
        Assert.Equal(2, code);
        Assert.Contains("Name the experiment to run", err);

        // A GPU experiment where there is none (the suite runs without one): the missing library and the way to run it here.
        if (!Bert.Runtime.Cuda.CudaDevice.TryOpen(out var gpu, out _))
        {
            string dir = TempDir.Create();
            try
            {
                (code, _, err) = CliTests.Run("run", "BasePretrainingH100", "--out", dir);
                Assert.NotEqual(0, code);
                Assert.Contains("or run BasePretrainingH100 on this machine's CPU with --device cpu.", err);
                Assert.Single(err.Trim().Split('\n'));
                Assert.Empty(Directory.GetFileSystemEntries(dir));
            }
            finally { Directory.Delete(dir, true); }
        }
        else gpu!.Dispose();
    }
}
