using Bert.Dsl;

namespace Bert.Models;

// Experiments declared in code: a model, its job and data, shape, precision, device and schedule, all constants, checked by
// the generator at build time (docs/diagnostics.md, BERT0210–BERT0221) and run by `bert run NAME` (`bert run --list`).

/// <summary>The demo's pre-training arm: BERT-Mini, 700 steps of 32 sequences of up to 64 tokens on the embedded English
/// corpus plus the four sets' unlabeled training texts, masked LM only, the output bias at the corpus's log unigram
/// frequencies, peak learning rate 1e-3.</summary>
[Experiment(typeof(BertMiniPreTraining), Job = Job.Pretrain, Data = "english,amazon,imdb,yelp,sst2",
    Batch = 32, Seq = 64, Steps = 700, LearningRate = 1e-3, NextSentence = false, FrequencyBias = true)]
public partial class MiniPretraining;

/// <summary>The demo's pre-trained arm on Amazon: BERT-Mini from <see cref="MiniPretraining"/> with its attention started
/// afresh, 5 epochs at 2e-4, texts up to 128 tokens, three runs (seeds 1, 2, 3; the demo's own seeds differ).</summary>
[Experiment(typeof(BertMiniClassifier), Data = "amazon", From = typeof(MiniPretraining), Reinit = "attention",
    Batch = 32, Seq = 128, Epochs = 5, LearningRate = 2e-4, Runs = 3)]
public partial class MiniAmazon;

/// <summary>The same fine-tuning from scratch (the demo's other arm).</summary>
[Experiment(typeof(BertMiniClassifier), Data = "amazon", Batch = 32, Seq = 128, Epochs = 5, LearningRate = 2e-4, Runs = 3)]
public partial class MiniAmazonScratch;

/// <summary>BERT-Base pre-training as issue 4 measures it, sized for one H100: bf16 products, 128 sequences of 128 tokens
/// per micro-batch, two micro-batches per LAMB step.</summary>
[Experiment(typeof(BertBasePreTraining), Job = Job.Pretrain, Device = Device.H100, Precision = Precision.Bf16,
    Batch = 128, Seq = 128, Accumulate = 2, Steps = 10_000, Optimizer = Optimizer.Lamb, LearningRate = 2e-3, NextSentence = false)]
public partial class BasePretrainingH100;

/// <summary>A one-minute check of the whole path: BERT-Nano pre-trained for 30 steps, then fine-tuned on Amazon from it.</summary>
[Experiment(typeof(BertNanoPreTraining), Job = Job.Pretrain, Batch = 8, Seq = 32, Steps = 30, LearningRate = 1e-3, NextSentence = false)]
public partial class NanoPretrainingCheck;

/// <summary>The fine-tuning half of the check.</summary>
[Experiment(typeof(BertNanoClassifier), Data = "amazon", From = typeof(NanoPretrainingCheck), Batch = 32, Seq = 48, Epochs = 1, LearningRate = 1e-3, Runs = 2)]
public partial class NanoAmazonCheck;

/// <summary>A check of the flash attention through <c>bert run</c>: BERT-Nano pre-trained for 3 steps on a GPU with bf16
/// products and attention on the tensor-core flash kernels (seconds on an H100; the suite runs it on the host emulation).</summary>
[Experiment(typeof(BertNanoPreTraining), Job = Job.Pretrain, Device = Device.H100, Precision = Precision.Bf16, Attention = AttentionKernel.Flash,
    Batch = 8, Seq = 32, Steps = 3, LearningRate = 1e-3, NextSentence = false)]
public partial class NanoFlashCheck;
