using Bert.Runtime;
using Bert.Runtime.Checkpoints;
using Bert.Training;

namespace Bert.Models;

/// <summary>The declared models by name, for the command line: a size and a head.</summary>
public static class Catalog
{
    /// <summary>A declared model: its metadata, the CPU model in float (training) and double (gradient checks), and
    /// its CUDA schedule. <see cref="Info"/> is read on first use: touching a generated model's static members runs its
    /// initializer (about 40 ms each; 1.1 s for the whole catalog, which every command used to pay at start). A class,
    /// not a record: a record's equality, hash code and ToString would read (and so load) the cached Info.</summary>
    public sealed class Entry(string size, string head, int classes, string name, Func<ModelInfo> loadInfo, Func<Model<float>> create,
        Func<Model<double>> createDouble, Func<Bert.Runtime.Cuda.ICudaProgram> createCuda)
    {
        ModelInfo? _info;
        public string Size => size;
        public string Head => head;
        public int Classes => classes;
        public string Name => name;
        public ModelInfo Info => _info ??= loadInfo();   // a race loads the same static Info twice: harmless
        public Func<Model<float>> Create => create;
        public Func<Model<double>> CreateDouble => createDouble;
        public Func<Bert.Runtime.Cuda.ICudaProgram> CreateCuda => createCuda;
        public override string ToString() => $"{name} ({size} {head})";
    }

    /// <summary>The entry of a declared model: its generated statics reached through <see cref="IDeclaredModel"/>, so that
    /// naming the class once names them all (nothing here touches them: Info loads on first use).</summary>
    static Entry E<TModel>(string size, string head, int classes) where TModel : IDeclaredModel =>
        new(size, head, classes, typeof(TModel).Name, () => TModel.Info, TModel.Create<float>, TModel.Create<double>, TModel.CreateCudaProgram);

    public static IReadOnlyList<Entry> All { get; } =
    [
        E<BertNanoPreTraining>("nano", "pretraining", 2),
        E<BertPreTraining>("tiny", "pretraining", 2),
        E<BertMiniPreTraining>("mini", "pretraining", 2),
        E<BertSmallPreTraining>("small", "pretraining", 2),
        E<BertMediumPreTraining>("medium", "pretraining", 2),
        E<BertBasePreTraining>("base", "pretraining", 2),
        E<BertLargePreTraining>("large", "pretraining", 2),
        E<BertNanoClassifier>("nano", "classifier", 3),
        E<BertClassifier>("tiny", "classifier", 2),
        E<BertMiniClassifier>("mini", "classifier", 2),
        E<BertMini3Classifier>("mini", "classifier", 3),
        E<BertSmallClassifier>("small", "classifier", 2),
        E<BertMediumClassifier>("medium", "classifier", 2),
        E<BertBaseClassifier>("base", "classifier", 2),
        E<BertMini5Classifier>("mini", "classifier", 5),
        E<BertMini20Classifier>("mini", "classifier", 20),
        E<BertBase3Classifier>("base", "classifier", 3),
        E<BertBase5Classifier>("base", "classifier", 5),
        E<BertBase20Classifier>("base", "classifier", 20),
        E<BertLargeClassifier>("large", "classifier", 2),
        E<AlbertClassifier>("albert", "classifier", 2),
        // Pre-LayerNorm BERT (Models/Variants.cs).
        E<BertNanoPreLnPreTraining>("nano-preln", "pretraining", 2),
        E<BertMiniPreLnPreTraining>("mini-preln", "pretraining", 2),
        E<BertNanoPreLnClassifier>("nano-preln", "classifier", 2),
        E<BertMiniPreLnClassifier>("mini-preln", "classifier", 2),
        // Per-token tagging (Models/Variants.cs).
        E<BertNanoTokenClassifier>("nano", "token-classifier", 5),
        E<BertTokenClassifier>("tiny", "token-classifier", 9),
        E<BertMiniTokenClassifier>("mini", "token-classifier", 9),
        E<BertMini48TokenClassifier>("mini", "token-classifier", 48),
        E<BertBaseTokenClassifier>("base", "token-classifier", 9),
        E<BertBase48TokenClassifier>("base", "token-classifier", 48),
        // Extractive question answering (Models/QuestionAnswering.cs).
        E<BertNanoQuestionAnswering>("nano", "question-answering", 2),
        E<BertQuestionAnswering>("tiny", "question-answering", 2),
        E<BertMiniQuestionAnswering>("mini", "question-answering", 2),
        E<BertSmallQuestionAnswering>("small", "question-answering", 2),
        E<BertBaseQuestionAnswering>("base", "question-answering", 2),
        E<BertLargeQuestionAnswering>("large", "question-answering", 2),
        // Portuguese vocabulary (Models/Portuguese.cs).
        E<BertMiniPtPreTraining>("mini-pt", "pretraining", 2),
        E<BertMiniPtClassifier>("mini-pt", "classifier", 2),
        E<BertMiniPt3Classifier>("mini-pt", "classifier", 3),
    ];

    public static IEnumerable<string> Sizes => All.Select(e => e.Size).Distinct();

    /// <summary>The model of a size and head; for classifiers the one with that many classes.</summary>
    public static Entry Get(string size, string head, int classes = 2)
    {
        var bySize = All.Where(e => e.Size.Equals(size, StringComparison.OrdinalIgnoreCase)).ToList();
        if (bySize.Count == 0)
            throw new ArgumentException($"There is no model size '{size}'; choose one of {string.Join(", ", Sizes)}.");
        // A classifier with exactly that many classes, else the smallest head with more (unused classes never win).
        bool classified = head is "classifier" or "token-classifier";
        var entry = bySize.FirstOrDefault(e => e.Head == head && (!classified || e.Classes == classes))
            ?? bySize.Where(e => e.Head == head && e.Classes > classes).OrderBy(e => e.Classes).FirstOrDefault();
        return entry ?? throw new ArgumentException(
            $"There is no {size} {head} with {classes} classes; declare one in Bert.Models/Models (a one-line variant) or choose one of: " +
            string.Join(", ", All.Where(e => e.Head == head).Select(e => $"{e.Size} ({e.Classes} classes)")) + ".");
    }

    /// <summary>The declared model a Hugging Face <c>config.json</c> without our <c>bert_model</c> field describes (a
    /// folder from the Hub or transformers' <c>save_pretrained</c>): the head from <c>architectures</c>
    /// (…ForSequenceClassification: a classifier with num_labels classes, …ForTokenClassification: a token classifier,
    /// …ForQuestionAnswering: an answer-span reader, anything else: the pre-training model, whose encoder every head shares), the type from <c>model_type</c>, and
    /// every size the config gives equal to the model's constant.</summary>
    public static Entry FromHfConfig(HfConfig config, string source)
    {
        string arch = config.Architectures.FirstOrDefault() ?? "";
        string head = arch.EndsWith("ForSequenceClassification", StringComparison.Ordinal) ? "classifier"
            : arch.EndsWith("ForTokenClassification", StringComparison.Ordinal) ? "token-classifier"
            : arch.EndsWith("ForQuestionAnswering", StringComparison.Ordinal) ? "question-answering" : "pretraining";
        string type = config.ModelType ?? "bert";
        long? labels = head is "pretraining" or "question-answering" ? null : config.NumLabels(source) ?? 2;
        bool Fits(Entry e)
        {
            if (e.Head != head || (labels is { } n && e.Classes != n) || HfConfig.ModelTypeOf(e.Info) != type) return false;
            foreach (var (constant, key) in HfConfig.ConstantKeys)
                if (constant != "Classes" && config.Get(key, source) is { } have && e.Info.Constants.TryGetValue(constant, out var want) && have != want) return false;
            return true;
        }
        var match = All.Where(e => e.Head == head).FirstOrDefault(Fits);
        if (match is not null) return match;
        string sizes = string.Join(", ", HfConfig.ConstantKeys.Where(k => k.Constant != "Classes" && config.Json[k.Key] is not null).Select(k => $"{k.Key} {config.Json[k.Key]}"));
        string what = labels is { } l ? $"{type} {head} with {l} labels" : $"{type} model";
        // The declared model of this head that differs in the fewest fields, and those fields, so the message says what to change.
        List<string> Differences(Entry e)
        {
            var d = new List<string>();
            if (HfConfig.ModelTypeOf(e.Info) != type) d.Add($"model_type {HfConfig.ModelTypeOf(e.Info)}");
            foreach (var (constant, key) in HfConfig.ConstantKeys)
            {
                long? have = constant == "Classes" ? labels : config.Get(key, source);
                if (have is { } h && e.Info.Constants.TryGetValue(constant, out var want) && h != want) d.Add($"{key} {want}");
            }
            return d;
        }
        var nearest = All.Where(e => e.Head == head).Select(e => (Entry: e, Diff: Differences(e))).OrderBy(x => x.Diff.Count).FirstOrDefault();
        string near = nearest.Entry is null ? "" : $" (the nearest, {nearest.Entry.Name}, has {string.Join(", ", nearest.Diff)})";
        throw new Bert.Runtime.Checkpoints.CheckpointException(
            $"{source} describes a {what} ({sizes}) that no declared model matches{near}; declare a variant with those sizes in Bert.Models/Models (one line, as BertMiniClassifier) and add it to the catalog, or use a checkpoint of a declared size ({string.Join(", ", Sizes)}).", source);
    }

    public static Entry ByName(string modelName) => All.FirstOrDefault(e => e.Name == modelName)
        ?? Bert.Generated.DeclaredExperiments.All.Where(x => x.Model == modelName).Select(Of).FirstOrDefault()
        ?? throw new ArgumentException($"This build has no model named '{modelName}'.");

    /// <summary>The entry of an experiment's model: the catalog's when it has one, else one made from the experiment's
    /// generated statics (its head from the model's inputs: gathered rows pre-train, a transpose before the cross-entropy
    /// answers questions, labels per text classify, labels per token tag).</summary>
    public static Entry Of(ExperimentInfo experiment)
    {
        if (All.FirstOrDefault(e => e.Name == experiment.Model) is { } listed) return listed;
        var info = experiment.Info();
        string head = info.Inputs.Any(i => i.Kind == InputKind.Rows) ? "pretraining"
            : info.Ops.Any(o => o.Kind == OpKind.Transpose) && info.Inputs.Any(i => i.Kind == InputKind.Labels && i.Shape is [_, > 0])
                ? "question-answering"   // start and end logits turned to rows over the positions, a label per row
            : info.Inputs.FirstOrDefault(i => i.Kind == InputKind.Labels) is { } l ? (l.Shape.Length == 1 ? "classifier" : "token-classifier") : "other";
        // Its Classes constant, else the width of the logits its cross-entropy reads (as the build-time check counts them).
        int classes = info.Constants.TryGetValue("Classes", out var c) ? (int)c
            : info.Ops.FirstOrDefault(o => o.Kind == OpKind.CrossEntropy && o.Operands.Length > 0) is { } ce && ce.Operands[0].Shape.Length > 0 ? ce.Operands[0].Shape[^1] : 2;
        return new Entry(experiment.Model, head, classes, experiment.Model, experiment.Info, experiment.Create, experiment.CreateDouble, experiment.CreateCuda);
    }

    /// <summary>Training FLOPs per token, forward and backward: 6·N + 12·L·T·C + 6·(C² + C·V)·f, where N counts
    /// the encoder's weights and f is the fraction of tokens that go through the MLM head.</summary>
    public static double FlopsPerToken(ModelInfo info, int seq, double maskedFraction)
    {
        long L = info.Constants.GetValueOrDefault("Layers", 0), C = info.Constants.GetValueOrDefault("Hidden", 0), V = info.Constants.GetValueOrDefault("Vocab", 0);
        long n = info.Parameters.Where(p => p.HfName.Contains(".encoder.")).Sum(p => p.Length);
        if (info.Parameters.Any(p => p.Block == "Layer" && !p.HfName.Contains(".layer.")) && L > 1) n *= L; // shared layers run L times
        bool mlm = info.Parameters.Any(p => p.HfName.StartsWith("cls.predictions", StringComparison.Ordinal));
        return 6.0 * n + 12.0 * L * seq * C + (mlm ? 6.0 * (C * C + C * V) * maskedFraction : 0);
    }
}
