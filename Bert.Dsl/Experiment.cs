namespace Bert.Dsl;

/// <summary>Marks a partial class as an experiment: a declared <c>[Model]</c> trained for one <see cref="Job"/> on one data
/// set, with its batch, sequence length, precision, device and schedule written as constants. The generator checks it at
/// build time as it checks a model (BERT0210–BERT0219, at the offending argument): the sequence length against the model's
/// MaxLen, the job against the model's head, a named set's classes against the model's, the precision against the device,
/// a <see cref="From"/> experiment's tensors against this model's, and the training step's memory (activations by the
/// model's memory plan, weights, gradients and AdamW moments) against the named device's. <c>bert run NAME</c> runs it
/// (and first the experiment it starts <see cref="From"/>).</summary>
/// <example><code>
/// [Experiment(typeof(BertMiniClassifier), Data = "amazon", From = typeof(MiniPretraining), Reinit = "attention",
///     Epochs = 5, LearningRate = 2e-4, Seq = 128)]
/// public partial class MiniAmazon;
/// </code></example>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class ExperimentAttribute : Attribute
{
    /// <param name="model">The <c>[Model]</c> class trained, declared in the same project.</param>
    public ExperimentAttribute(Type model) => Model = model;

    /// <summary>The <c>[Model]</c> class trained.</summary>
    public Type Model { get; }

    /// <summary>Pre-training (masked LM, with or without next-sentence prediction) or fine-tuning (a classifier or tagger).
    /// Default: fine-tuning.</summary>
    public Job Job { get; set; } = Job.FineTune;

    /// <summary>Fine-tuning: a labeled set by name (amazon, imdb, yelp, sst2, pt-reviews, pt-tweets) or a file (text&lt;TAB&gt;label;
    /// CoNLL for a tagger). Pre-training: comma-separated corpora (files, <c>machado</c>, a labeled set's name for its
    /// training texts); empty for the embedded English corpus.</summary>
    public string Data { get; set; } = "";

    /// <summary>Sequences per micro-batch (B). Default 32.</summary>
    public int Batch { get; set; } = 32;

    /// <summary>Tokens per sequence (T), at most the model's MaxLen. Default 128.</summary>
    public int Seq { get; set; } = 128;

    /// <summary>Micro-batches per optimizer step. Default 1.</summary>
    public int Accumulate { get; set; } = 1;

    /// <summary>Pre-training: optimizer steps (default 1000). Not for fine-tuning, which counts <see cref="Epochs"/>.</summary>
    public int Steps { get; set; }

    /// <summary>Fine-tuning: passes over the training set (default 3). Not for pre-training, which counts <see cref="Steps"/>.</summary>
    public int Epochs { get; set; }

    /// <summary>Peak learning rate (default 5e-4 for pre-training, 1e-4 for fine-tuning, as the <c>bert</c> command's).</summary>
    public double LearningRate { get; set; }

    /// <summary>Fraction of the steps spent warming the learning rate up, in [0, 1). Default 0.1.</summary>
    public double Warmup { get; set; } = 0.1;

    /// <summary>AdamW, or LAMB for large batches. Default AdamW.</summary>
    public Optimizer Optimizer { get; set; } = Optimizer.AdamW;

    /// <summary>Products in fp32, TF32 or with bf16 operands; TF32 and bf16 need a GPU <see cref="Device"/>. Default fp32.</summary>
    public Precision Precision { get; set; } = Precision.Fp32;

    /// <summary>Where it runs, and whose memory the step must fit. Default the CPU.</summary>
    public Device Device { get; set; } = Device.Cpu;

    /// <summary>How attention runs on a GPU: the backend's default (cuBLAS products around a softmax kernel), or the
    /// tensor-core flash kernels (bf16 only; head sizes that are multiples of 8 up to 128). Default the default.</summary>
    public AttentionKernel Attention { get; set; } = AttentionKernel.Default;

    /// <summary>The memory to fit, in GiB, instead of the device's own (a CPU's RAM is not known at build time, so a CPU
    /// experiment is checked only when this is given). Default 0: the device's.</summary>
    public double MemoryGiB { get; set; }

    /// <summary>Another experiment whose checkpoint this one starts from (its encoder copied in); it runs first when its
    /// folder holds no finished run.</summary>
    public Type? From { get; set; }

    /// <summary>With <see cref="From"/>: parts that start afresh instead of copied, comma-separated (qk, qkv, attention, ffn,
    /// layernorm, pooler, top-N). Default none.</summary>
    public string Reinit { get; set; } = "";

    /// <summary>Pre-training: share of tokens chosen for prediction, in (0, 1). Default 0.15.</summary>
    public double MaskProb { get; set; } = 0.15;

    /// <summary>Pre-training: BERT's next-sentence objective besides the masked LM. Default true.</summary>
    public bool NextSentence { get; set; } = true;

    /// <summary>Pre-training: start the masked-LM output bias at the corpus's log unigram frequencies instead of zeros.</summary>
    public bool FrequencyBias { get; set; }

    /// <summary>Random seed: the same seed gives the same run. Default 1.</summary>
    public int Seed { get; set; } = 1;

    /// <summary>Fine-tuning: how many runs, with seeds Seed, Seed + 1, …, each in a folder of its own (run-1, run-2, …);
    /// <c>bert run</c> prints each run's best dev score and their mean ± sd. Default 1.</summary>
    public int Runs { get; set; } = 1;
}

/// <summary>What an experiment trains its model for.</summary>
public enum Job
{
    /// <summary>Masked LM (and next-sentence prediction) on unlabeled text; the model needs gathered rows (<c>Rows</c>).</summary>
    Pretrain,
    /// <summary>A classifier (labels per text) or a tagger (labels per token) on a labeled set.</summary>
    FineTune,
}

/// <summary>The optimizer of an experiment.</summary>
public enum Optimizer { AdamW, Lamb }

/// <summary>How the matrix products compute.</summary>
public enum Precision
{
    /// <summary>Exact fp32 products.</summary>
    Fp32,
    /// <summary>TF32 tensor cores (a GPU).</summary>
    Tf32,
    /// <summary>bf16 operands, fp32 accumulation, fp32 master weights (a GPU).</summary>
    Bf16,
}

/// <summary>How attention runs on a GPU.</summary>
public enum AttentionKernel
{
    /// <summary>The backend's default: cuBLAS products over the heads where they lie, a softmax kernel between them.</summary>
    Default,
    /// <summary>The tensor-core flash kernels: bf16 operands, no T×T matrix in memory (needs <see cref="Precision.Bf16"/>).</summary>
    Flash,
}

/// <summary>Where an experiment runs; a GPU's memory is what the build-time estimate is checked against.</summary>
public enum Device
{
    /// <summary>The CPU (memory checked only with <see cref="ExperimentAttribute.MemoryGiB"/>).</summary>
    Cpu,
    /// <summary>NVIDIA A100 40GB.</summary>
    A100_40GB,
    /// <summary>NVIDIA A100 80GB.</summary>
    A100_80GB,
    /// <summary>NVIDIA H100 80GB (SXM or PCIe).</summary>
    H100,
    /// <summary>NVIDIA H200 141GB.</summary>
    H200,
    /// <summary>NVIDIA L4 24GB.</summary>
    L4,
}
