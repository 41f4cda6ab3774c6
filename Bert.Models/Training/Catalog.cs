using Bert.Runtime;
using Bert.Runtime.Checkpoints;

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

    static Entry E(string size, string head, int classes, string name, Func<ModelInfo> info, Func<Model<float>> create, Func<Model<double>> createDouble,
        Func<Bert.Runtime.Cuda.ICudaProgram> cuda) => new(size, head, classes, name, info, create, createDouble, cuda);

    public static IReadOnlyList<Entry> All { get; } =
    [
        E("nano", "pretraining", 2, nameof(BertNanoPreTraining), () => BertNanoPreTraining.Info, BertNanoPreTraining.Create<float>, BertNanoPreTraining.Create<double>, BertNanoPreTraining.CreateCudaProgram),
        E("tiny", "pretraining", 2, nameof(BertPreTraining), () => BertPreTraining.Info, BertPreTraining.Create<float>, BertPreTraining.Create<double>, BertPreTraining.CreateCudaProgram),
        E("mini", "pretraining", 2, nameof(BertMiniPreTraining), () => BertMiniPreTraining.Info, BertMiniPreTraining.Create<float>, BertMiniPreTraining.Create<double>, BertMiniPreTraining.CreateCudaProgram),
        E("small", "pretraining", 2, nameof(BertSmallPreTraining), () => BertSmallPreTraining.Info, BertSmallPreTraining.Create<float>, BertSmallPreTraining.Create<double>, BertSmallPreTraining.CreateCudaProgram),
        E("medium", "pretraining", 2, nameof(BertMediumPreTraining), () => BertMediumPreTraining.Info, BertMediumPreTraining.Create<float>, BertMediumPreTraining.Create<double>, BertMediumPreTraining.CreateCudaProgram),
        E("base", "pretraining", 2, nameof(BertBasePreTraining), () => BertBasePreTraining.Info, BertBasePreTraining.Create<float>, BertBasePreTraining.Create<double>, BertBasePreTraining.CreateCudaProgram),
        E("large", "pretraining", 2, nameof(BertLargePreTraining), () => BertLargePreTraining.Info, BertLargePreTraining.Create<float>, BertLargePreTraining.Create<double>, BertLargePreTraining.CreateCudaProgram),
        E("nano", "classifier", 3, nameof(BertNanoClassifier), () => BertNanoClassifier.Info, BertNanoClassifier.Create<float>, BertNanoClassifier.Create<double>, BertNanoClassifier.CreateCudaProgram),
        E("tiny", "classifier", 2, nameof(BertClassifier), () => BertClassifier.Info, BertClassifier.Create<float>, BertClassifier.Create<double>, BertClassifier.CreateCudaProgram),
        E("mini", "classifier", 2, nameof(BertMiniClassifier), () => BertMiniClassifier.Info, BertMiniClassifier.Create<float>, BertMiniClassifier.Create<double>, BertMiniClassifier.CreateCudaProgram),
        E("mini", "classifier", 3, nameof(BertMini3Classifier), () => BertMini3Classifier.Info, BertMini3Classifier.Create<float>, BertMini3Classifier.Create<double>, BertMini3Classifier.CreateCudaProgram),
        E("small", "classifier", 2, nameof(BertSmallClassifier), () => BertSmallClassifier.Info, BertSmallClassifier.Create<float>, BertSmallClassifier.Create<double>, BertSmallClassifier.CreateCudaProgram),
        E("medium", "classifier", 2, nameof(BertMediumClassifier), () => BertMediumClassifier.Info, BertMediumClassifier.Create<float>, BertMediumClassifier.Create<double>, BertMediumClassifier.CreateCudaProgram),
        E("base", "classifier", 2, nameof(BertBaseClassifier), () => BertBaseClassifier.Info, BertBaseClassifier.Create<float>, BertBaseClassifier.Create<double>, BertBaseClassifier.CreateCudaProgram),
        E("mini", "classifier", 5, nameof(BertMini5Classifier), () => BertMini5Classifier.Info, BertMini5Classifier.Create<float>, BertMini5Classifier.Create<double>, BertMini5Classifier.CreateCudaProgram),
        E("mini", "classifier", 20, nameof(BertMini20Classifier), () => BertMini20Classifier.Info, BertMini20Classifier.Create<float>, BertMini20Classifier.Create<double>, BertMini20Classifier.CreateCudaProgram),
        E("base", "classifier", 3, nameof(BertBase3Classifier), () => BertBase3Classifier.Info, BertBase3Classifier.Create<float>, BertBase3Classifier.Create<double>, BertBase3Classifier.CreateCudaProgram),
        E("base", "classifier", 5, nameof(BertBase5Classifier), () => BertBase5Classifier.Info, BertBase5Classifier.Create<float>, BertBase5Classifier.Create<double>, BertBase5Classifier.CreateCudaProgram),
        E("base", "classifier", 20, nameof(BertBase20Classifier), () => BertBase20Classifier.Info, BertBase20Classifier.Create<float>, BertBase20Classifier.Create<double>, BertBase20Classifier.CreateCudaProgram),
        E("large", "classifier", 2, nameof(BertLargeClassifier), () => BertLargeClassifier.Info, BertLargeClassifier.Create<float>, BertLargeClassifier.Create<double>, BertLargeClassifier.CreateCudaProgram),
        E("albert", "classifier", 2, nameof(AlbertClassifier), () => AlbertClassifier.Info, AlbertClassifier.Create<float>, AlbertClassifier.Create<double>, AlbertClassifier.CreateCudaProgram),
        // Pre-LayerNorm BERT (Models/Variants.cs).
        E("nano-preln", "pretraining", 2, nameof(BertNanoPreLnPreTraining), () => BertNanoPreLnPreTraining.Info, BertNanoPreLnPreTraining.Create<float>, BertNanoPreLnPreTraining.Create<double>, BertNanoPreLnPreTraining.CreateCudaProgram),
        E("mini-preln", "pretraining", 2, nameof(BertMiniPreLnPreTraining), () => BertMiniPreLnPreTraining.Info, BertMiniPreLnPreTraining.Create<float>, BertMiniPreLnPreTraining.Create<double>, BertMiniPreLnPreTraining.CreateCudaProgram),
        E("nano-preln", "classifier", 2, nameof(BertNanoPreLnClassifier), () => BertNanoPreLnClassifier.Info, BertNanoPreLnClassifier.Create<float>, BertNanoPreLnClassifier.Create<double>, BertNanoPreLnClassifier.CreateCudaProgram),
        E("mini-preln", "classifier", 2, nameof(BertMiniPreLnClassifier), () => BertMiniPreLnClassifier.Info, BertMiniPreLnClassifier.Create<float>, BertMiniPreLnClassifier.Create<double>, BertMiniPreLnClassifier.CreateCudaProgram),
        // Per-token tagging (Models/Variants.cs).
        E("nano", "token-classifier", 5, nameof(BertNanoTokenClassifier), () => BertNanoTokenClassifier.Info, BertNanoTokenClassifier.Create<float>, BertNanoTokenClassifier.Create<double>, BertNanoTokenClassifier.CreateCudaProgram),
        E("tiny", "token-classifier", 9, nameof(BertTokenClassifier), () => BertTokenClassifier.Info, BertTokenClassifier.Create<float>, BertTokenClassifier.Create<double>, BertTokenClassifier.CreateCudaProgram),
        E("mini", "token-classifier", 9, nameof(BertMiniTokenClassifier), () => BertMiniTokenClassifier.Info, BertMiniTokenClassifier.Create<float>, BertMiniTokenClassifier.Create<double>, BertMiniTokenClassifier.CreateCudaProgram),
        E("mini", "token-classifier", 48, nameof(BertMini48TokenClassifier), () => BertMini48TokenClassifier.Info, BertMini48TokenClassifier.Create<float>, BertMini48TokenClassifier.Create<double>, BertMini48TokenClassifier.CreateCudaProgram),
        E("base", "token-classifier", 9, nameof(BertBaseTokenClassifier), () => BertBaseTokenClassifier.Info, BertBaseTokenClassifier.Create<float>, BertBaseTokenClassifier.Create<double>, BertBaseTokenClassifier.CreateCudaProgram),
        E("base", "token-classifier", 48, nameof(BertBase48TokenClassifier), () => BertBase48TokenClassifier.Info, BertBase48TokenClassifier.Create<float>, BertBase48TokenClassifier.Create<double>, BertBase48TokenClassifier.CreateCudaProgram),
        // Portuguese vocabulary (Models/Portuguese.cs).
        E("mini-pt", "pretraining", 2, nameof(BertMiniPtPreTraining), () => BertMiniPtPreTraining.Info, BertMiniPtPreTraining.Create<float>, BertMiniPtPreTraining.Create<double>, BertMiniPtPreTraining.CreateCudaProgram),
        E("mini-pt", "classifier", 2, nameof(BertMiniPtClassifier), () => BertMiniPtClassifier.Info, BertMiniPtClassifier.Create<float>, BertMiniPtClassifier.Create<double>, BertMiniPtClassifier.CreateCudaProgram),
        E("mini-pt", "classifier", 3, nameof(BertMiniPt3Classifier), () => BertMiniPt3Classifier.Info, BertMiniPt3Classifier.Create<float>, BertMiniPt3Classifier.Create<double>, BertMiniPt3Classifier.CreateCudaProgram),
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
    /// anything else: the pre-training model, whose encoder every head shares), the type from <c>model_type</c>, and
    /// every size the config gives equal to the model's constant.</summary>
    public static Entry FromHfConfig(HfConfig config, string source)
    {
        string arch = config.Architectures.FirstOrDefault() ?? "";
        string head = arch.EndsWith("ForSequenceClassification", StringComparison.Ordinal) ? "classifier"
            : arch.EndsWith("ForTokenClassification", StringComparison.Ordinal) ? "token-classifier" : "pretraining";
        string type = config.ModelType ?? "bert";
        long? labels = head == "pretraining" ? null : config.NumLabels(source) ?? 2;
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
        throw new Bert.Runtime.Checkpoints.CheckpointException(
            $"{source} describes a {what} ({sizes}) that no declared model matches; declare a variant with those sizes in Bert.Models/Models (one line, as BertMiniClassifier) and add it to the catalog, or use a checkpoint of a declared size ({string.Join(", ", Sizes)}).", source);
    }

    public static Entry ByName(string modelName) => All.FirstOrDefault(e => e.Name == modelName)
        ?? throw new ArgumentException($"This build has no model named '{modelName}'.");

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
