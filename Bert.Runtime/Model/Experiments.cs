using System.Numerics;
using Bert.Dsl;

namespace Bert.Runtime;

/// <summary>What every <c>[Experiment]</c> class is, through its generated static: the experiment as declared and checked.</summary>
public interface IDeclaredExperiment
{
    static abstract ExperimentInfo Experiment { get; }
}

/// <summary>A training step's memory, by part, in bytes: the memory plan's activations, the parameter state (weights,
/// gradients and the optimizer's two moments, plus the GPU's decay mask), for bf16 on a GPU the weights' bf16 copy, the
/// two bf16 operand slots and the bf16 shadows of the products' activation operands, and on a GPU the kernels' scratch; <paramref name="Seq"/> is the sequence length the step
/// binds (fine-tuning on a GPU pads to a multiple of 8). The generator computes it at build time for an experiment's
/// shape and the runtime recomputes it from <see cref="ModelInfo"/> with <see cref="For"/> (a test holds the two equal;
/// the GPU self-test holds it against what a step takes of the device).</summary>
public sealed record MemoryEstimate(long Activations, long ParameterState, long Bf16, long Scratch, long Capacity, int Seq)
{
    /// <summary>What the step needs in all.</summary>
    public long Total => Activations + ParameterState + Bf16 + Scratch;

    /// <summary>Bytes a GPU keeps for its context, cuBLAS's workspace, the attention pointer arrays, the inputs and the
    /// libraries' own allocations, which the estimate leaves out: the capacity checked against is the device's less this.</summary>
    public const long GpuReserve = 1L << 30;

    /// <summary>The memory of a named device in bytes as its driver reports it (nvidia-smi's total), less
    /// <see cref="GpuReserve"/>; 0 for the CPU, whose memory is not known at build time.</summary>
    public static long CapacityOf(Device device) => device switch
    {
        Device.A100_40GB => (40_536L << 20) - GpuReserve,
        Device.A100_80GB => (81_920L << 20) - GpuReserve,
        Device.H100 => (81_559L << 20) - GpuReserve,
        Device.H200 => (143_771L << 20) - GpuReserve,
        Device.L4 => (23_034L << 20) - GpuReserve,
        _ => 0,
    };

    /// <summary>The masked-LM rows (G) a pre-training micro-batch binds at most: BERT's cap of 20 predictions per 128 tokens
    /// scaled to the length and share (as <c>bert pretrain</c> sets it), padded to a multiple of 32 as a GPU's batches are,
    /// and no more than B·T.</summary>
    public static int PretrainingRows(int batch, int seq, double maskProb)
    {
        long rows = ((long)batch * MaxPredictionsPerSeq(seq, maskProb) + 31) / 32 * 32;
        return (int)Math.Min(rows, (long)batch * seq);
    }

    /// <summary>The masked positions one sequence of <paramref name="seq"/> tokens predicts at most: BERT's 20 per 128 tokens
    /// at 15 %, scaled to the length and share with 5 % to spare, and never fewer than 20.</summary>
    public static int MaxPredictionsPerSeq(int seq, double maskProb) => Math.Max(20, (int)Math.Ceiling(seq * maskProb * 1.05));

    /// <summary>The sequence length a training step of <paramref name="seq"/> tokens binds: the same, except that
    /// fine-tuning on a GPU pads each batch to a multiple of 8 tokens within MaxLen (so that CUDA graphs replay).</summary>
    public static int BoundSeq(int seq, int maxLen, Job job, Device device) =>
        job == Job.Pretrain || device == Device.Cpu ? seq : Math.Min(maxLen, (seq + 7) / 8 * 8);

    /// <summary>The estimate for one training micro-batch of <paramref name="batch"/> × <paramref name="seq"/> tokens with
    /// <paramref name="rows"/> gathered rows: what the generator computed at build time. <paramref name="flash"/>: with the
    /// flash attention (an experiment's <c>Attention = AttentionKernel.Flash</c>), whose probabilities buffers hold B·H·T row
    /// statistics (CudaModel's layout) and whose scratch is Δ per query row.</summary>
    public static MemoryEstimate For(ModelInfo info, int batch, int seq, int rows, Device device, Precision precision, Job job, double memoryGiB = 0, bool flash = false)
    {
        bool gpu = device != Device.Cpu;
        flash &= gpu;
        seq = BoundSeq(seq, info.MaxLen, job, device);
        long n = info.ParameterCount;
        long activations = info.Layout(batch, seq, rows, training: true, lengths: flash ? Cuda.CudaModel.FlashStatistics(info, batch, seq) : null).Total * 4;
        long state = n * (gpu ? 17 : 16);
        long bf16 = gpu && precision == Precision.Bf16
            ? n * 2 + Cuda.CudaModel.GemmSlotElements(info, batch, seq, rows) * 4 + Cuda.CudaModel.ShadowBytes(info, batch, seq, rows) : 0;
        long scratch = gpu ? Cuda.CudaModel.ScratchFloats(info, batch, seq, rows, flash) * 4 : 0;
        long capacity = memoryGiB > 0 ? (long)(memoryGiB * (1L << 30)) : CapacityOf(device);
        return new MemoryEstimate(activations, state, bf16, scratch, capacity, seq);
    }

    /// <summary>"1.23 GiB".</summary>
    public static string Format(long bytes) => (bytes / (double)(1L << 30)).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture) + " GiB";
}

/// <summary>A declared experiment: the model, the job and data, the shape, precision, device and schedule, as written in
/// its <c>[Experiment]</c> attribute (defaults filled in) and checked at build time, with the build-time memory estimate
/// and the model's generated statics.</summary>
public sealed record ExperimentInfo(
    string Name, string Model, Job Job, string Data, int Batch, int Seq, int Accumulate, int Steps, int Epochs,
    double LearningRate, double Warmup, Optimizer Optimizer, Precision Precision, Device Device, AttentionKernel Attention, string? From, string Reinit,
    double MaskProb, bool NextSentence, bool FrequencyBias, int Seed, int Runs, int Rows, MemoryEstimate Memory,
    Func<ModelInfo> Info, Func<Model<float>> Create, Func<Model<double>> CreateDouble, Func<Cuda.ICudaProgram> CreateCuda)
{
    /// <summary>The experiment for model <typeparamref name="TModel"/>; what the generated code calls.</summary>
    public static ExperimentInfo Of<TModel>(string name, Job job, string data, int batch, int seq, int accumulate, int steps, int epochs,
        double learningRate, double warmup, Optimizer optimizer, Precision precision, Device device, AttentionKernel attention, string? from, string reinit,
        double maskProb, bool nextSentence, bool frequencyBias, int seed, int runs, int rows, MemoryEstimate memory) where TModel : IDeclaredModel =>
        new(name, typeof(TModel).Name, job, data, batch, seq, accumulate, steps, epochs, learningRate, warmup, optimizer, precision, device,
            attention, from, reinit, maskProb, nextSentence, frequencyBias, seed, runs, rows, memory,
            () => TModel.Info, TModel.Create<float>, TModel.Create<double>, TModel.CreateCudaProgram);

    /// <summary>What the experiment trains and how, as declared (where it runs left out): a run folder records it, and
    /// <c>bert run</c> neither resumes nor reuses a folder whose run was declared otherwise.</summary>
    public string Declaration => DeclarationOf(0);

    /// <summary>The declaration of run <paramref name="run"/> (from 0) of <see cref="Runs"/>: its seed is Seed + run.</summary>
    public string DeclarationOf(int run) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{Name}: {Job} {Model} on '{Data}', B={Batch} T={Seq} accumulate={Accumulate} steps={Steps} epochs={Epochs} lr={LearningRate:R} warmup={Warmup:R} {Optimizer} from={From ?? "none"} reinit='{Reinit}' mask={MaskProb:R} nsp={NextSentence} frequency-bias={FrequencyBias} seed={Seed + run}{(Attention == AttentionKernel.Flash ? " attention=Flash" : "")}");

    /// <summary>One line for a listing: job, model, data, shape, device and the memory estimate.</summary>
    public override string ToString()
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        string length = Job == Job.Pretrain ? $"{Steps} step{(Steps == 1 ? "" : "s")}" : $"{Epochs} epoch{(Epochs == 1 ? "" : "s")}{(Runs > 1 ? $" × {Runs} runs" : "")}";
        string data = Data.Length == 0 ? "the embedded corpus" : Data;
        string fits = Memory.Capacity > 0 ? $" of {MemoryEstimate.Format(Memory.Capacity)}" : "";
        return string.Create(inv, $"{Name}: {(Job == Job.Pretrain ? "pre-train" : "fine-tune")} {Model} on {data}{(From is null ? "" : $" from {From}")}, B={Batch} T={Seq}, {length}, lr {LearningRate:G3}, {Precision} on {Device}{(Attention == AttentionKernel.Flash ? " with flash attention" : "")}; ≈ {MemoryEstimate.Format(Memory.Total)}{fits} per step");
    }
}
