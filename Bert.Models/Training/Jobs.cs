using System.Globalization;
using Bert.Data;
using Bert.Runtime;
using Bert.Runtime.Checkpoints;
using Bert.Text;

namespace Bert.Training;

/// <summary>Pre-training on unlabeled text: masked LM on ~15% of the tokens plus next-sentence prediction.
/// Masks are drawn anew each epoch, each instance's from (seed, epoch, instance) as its batch is bound, so no epoch's
/// masked copies are ever held (only its batches' indices); batches are bucketed by length. At most <see cref="MaxHeldOut"/> instances are
/// held out for evaluation.</summary>
public sealed class PretrainJob
{
    readonly IReadOnlyList<PretrainingInstance> _instances;
    readonly int[] _train, _trainLengths;
    readonly Masker _masker;
    readonly WordPiece _tok;
    readonly Model<float> _model;
    readonly int _batch, _perEpoch;
    readonly ulong _seed;
    readonly Dictionary<int, List<Batch>> _epochs = new();
    Task<(MaskedInstance[] Batch, BatchInputs Inputs)>? _next;
    long _nextIndex = -1;
    readonly List<MaskedInstance> _heldOutMasked;
    MaskedInstance[] _current = Array.Empty<MaskedInstance>();

    /// <summary>The most instances held out for evaluation (5 % of a corpus, up to this): enough for the masked LM's
    /// accuracy to ±0.5 % and an evaluation that does not outgrow training on a large corpus.</summary>
    public const int MaxHeldOut = 2048;

    public PretrainJob(Model<float> model, WordPiece tokenizer, IReadOnlyList<PretrainingInstance> instances, PretrainingOptions data, int batchSize, ulong seed, double heldOutFraction = 0.05)
    {
        _model = model; _tok = tokenizer; _batch = batchSize; _seed = seed; _instances = instances;
        CheckFits(model.Info, tokenizer, data);
        if (instances.Count < 2) throw new ArgumentException("The corpus gives too few pre-training instances; give it more text.");
        var rng = new Random((int)(seed % int.MaxValue));
        var shuffled = Enumerable.Range(0, instances.Count).OrderBy(_ => rng.Next()).ToArray();
        int held = Math.Min(MaxHeldOut, Math.Clamp((int)(shuffled.Length * heldOutFraction), 1, Math.Max(1, shuffled.Length - 1)));
        _train = shuffled[held..];   // at least one: held ≤ Count - 1
        _trainLengths = Array.ConvertAll(_train, Length);
        _masker = new Masker(tokenizer, data);
        var hr = new Random(12345);
        _heldOutMasked = shuffled.Take(held).Select(i => _masker.Mask(instances[i], hr)).ToList();
        _perEpoch = (_train.Length + batchSize - 1) / batchSize;
    }

    /// <summary>Throws when the tokenizer's vocabulary or the sequence length does not fit the model: checked before a
    /// corpus is read, and again by the constructor.</summary>
    public static void CheckFits(ModelInfo model, WordPiece tokenizer, PretrainingOptions data)
    {
        int vocab = (int)model.Constants["Vocab"];
        if (tokenizer.VocabSize > vocab)
            throw new ArgumentException($"The vocabulary has {tokenizer.VocabSize} entries but {model.Name} embeds {vocab}; use a model declared with Vocab = {tokenizer.VocabSize} or a smaller vocabulary.");
        if (data.MaxSeqLength > model.MaxLen)
            throw new ArgumentException($"Sequences of {data.MaxSeqLength} tokens are longer than {model.Name}'s MaxLen of {model.MaxLen}; lower the maximum length (--max-len, or the demo's --pretrain-max-len).");
    }

    int Length(int i) => _instances is PretrainingInstances compact ? compact.Length(i) : _instances[i].Tokens.Length;

    public int TrainInstances => _train.Length;

    /// <summary>The masked instances of the batch bound last.</summary>
    public IReadOnlyList<MaskedInstance> Current => _current;

    public int HeldOutInstances => _heldOutMasked.Count;

    /// <summary>Sets the masked LM's output bias (the parameter named <c>…predictions.bias</c>) to the log unigram
    /// frequencies of the training text, centred, with add-0.1 smoothing: the frequency prior is then known from
    /// step 0 instead of being learnt, mostly through the tied word embeddings, in the first few hundred steps.
    /// Returns false for a model without that bias. Call it after InitParameters and before training.</summary>
    public bool InitOutputBiasFromFrequencies()
    {
        var p = _model.Info.Parameters.FirstOrDefault(x => x.HfName.EndsWith("predictions.bias", StringComparison.Ordinal) && x.Shape.Length == 1);
        if (p is null) return false;
        var counts = new double[p.Shape[0]];
        double total = 0;
        void Count(ReadOnlySpan<int> tokens)
        {
            foreach (int t in tokens)
                if (t != _tok.ClsId && t != _tok.SepId && t != _tok.PadId && t < counts.Length) { counts[t]++; total++; }
        }
        if (_instances is PretrainingInstances compact)
        {
            var buffer = new int[ushort.MaxValue * 2];
            foreach (int i in _train) Count(buffer.AsSpan(0, compact.CopyPieces(i, buffer)));
        }
        else
            foreach (int i in _train) Count(_instances[i].Tokens);
        const double Smoothing = 0.1;
        double denominator = total + Smoothing * counts.Length, mean = 0;
        for (int v = 0; v < counts.Length; v++) { counts[v] = Math.Log((counts[v] + Smoothing) / denominator); mean += counts[v]; }
        mean /= counts.Length;
        var bias = _model.Parameters.Slice((int)p.Offset, (int)p.Length);
        for (int v = 0; v < counts.Length; v++) bias[v] = (float)(counts[v] - mean);
        return true;
    }
    public int StepsPerEpoch => _perEpoch;

    /// <summary>Epoch <paramref name="e"/>'s batches (bucketed by length, shuffled from the seed and the epoch), kept for
    /// the epoch in progress and the one a prefetch may have begun.</summary>
    List<Batch> EpochBatches(int e)
    {
        lock (_epochs)
        {
            if (_epochs.TryGetValue(e, out var batches)) return batches;
            if (_epochs.Count >= 2) _epochs.Remove(_epochs.Keys.Min());
            return _epochs[e] = Batching.ByLength(_trainLengths, _batch, unchecked((int)_seed + e));
        }
    }

    /// <summary>Training instance <paramref name="t"/> (a place in the training list) with epoch <paramref name="e"/>'s
    /// masks: its own generator, seeded from (seed, epoch, t), so that any batch of any epoch is drawn alone.</summary>
    MaskedInstance Masked(int e, int t)
    {
        ulong h = _seed * 0x9E3779B97F4A7C15UL ^ (ulong)e * 0xBF58476D1CE4E5B9UL ^ (ulong)t * 0x94D049BB133111EBUL;
        h ^= h >> 31; h *= 0xD6E8FEB86659FD93UL; h ^= h >> 32;
        return _masker.Mask(_instances[_train[t]], new Random((int)(h & int.MaxValue)));
    }

    /// <summary>Binds micro-batch number <paramref name="index"/> of the whole run; returns its tokens. With
    /// <see cref="Prefetch"/>, the next one's inputs are then prepared on another thread.</summary>
    public int Bind(long index)
    {
        bool ready = _next is not null && _nextIndex == index;
        var (batch, inputs) = ready ? _next!.GetAwaiter().GetResult() : Prepare(index);
        if (ready) PrefetchedBinds++;
        _next = null;
        if (Prefetch)
        {
            long following = _nextIndex = index + 1;
            _next = Task.Run(() => Prepare(following));
        }
        _current = batch;
        return Bind(_model, inputs);
    }

    /// <summary>Micro-batch <paramref name="index"/>'s masked instances and inputs: its own draws (from the seed, the epoch
    /// and the instance), the same on whichever thread and in whatever order batches are prepared.</summary>
    (MaskedInstance[] Batch, BatchInputs Inputs) Prepare(long index)
    {
        int e = (int)(index / _perEpoch);
        var b = EpochBatches(e)[(int)(index % _perEpoch)];
        var batch = b.Indices.Select(t => Masked(e, t)).ToArray();
        return (batch, Inputs(batch, _tok.PadId, RowMultiple));
    }

    /// <summary>Whether <see cref="Bind"/> prepares the next micro-batch (its masks and inputs, about 1 ms for 32
    /// sequences and 4 ms for 256 on this project's 2-core machine) on another thread while the caller runs the one it
    /// bound: for a GPU, whose step leaves the CPU waiting, so that the device is not kept waiting for the CPU in turn.
    /// The batches are the same either way. Off on the CPU, whose step has every core already.</summary>
    public bool Prefetch { get; set; }

    /// <summary>How many binds took a batch prepared ahead (<see cref="Prefetch"/>).</summary>
    public long PrefetchedBinds { get; private set; }

    /// <summary>Pads each training batch's masked-LM rows up to a multiple of this (0: no padding) with ignored rows, so
    /// that batches of one length share a shape: a CUDA graph captured for one replays for the others (the count of masked
    /// tokens varies from batch to batch). The loss and the gradients are those of the unpadded batch.</summary>
    public int RowMultiple { get; set; }

    /// <summary>The row multiple the CUDA trainer's graphs use (see <see cref="RowMultiple"/>).</summary>
    public const int GraphRowMultiple = 32;

    /// <summary>A pre-training batch as the model's inputs: ids, token types and attention mask (B, T) padded to the
    /// longest sequence, the masked positions as rows of the flattened (B·T) sequence with their labels (G), and the
    /// next-sentence labels (B).</summary>
    public sealed record BatchInputs(int B, int T, int[] Ids, int[] Types, int[] Mask, int[] Rows, int[] MlmLabels, int[] NspLabels);

    /// <param name="rowMultiple">Pads the masked rows up to a multiple of this (at most B·T rows; 0: no padding): the extra
    /// rows gather distinct positions that are not masked, with the ignored label -100, after the real ones.</param>
    public static BatchInputs Inputs(IReadOnlyList<MaskedInstance> batch, int pad, int rowMultiple = 0)
    {
        int B = batch.Count, T = batch.Max(x => x.InputIds.Length), real = batch.Sum(x => x.MaskedPositions.Length);
        int G = rowMultiple > 0 ? Math.Min(B * T, (real + rowMultiple - 1) / rowMultiple * rowMultiple) : real;
        var ids = new int[B * T]; var types = new int[B * T]; var mask = new int[B * T];
        var rows = new int[G]; var labels = new int[G]; var nsp = new int[B];
        if (pad != 0) Array.Fill(ids, pad);
        int g = 0;
        for (int b = 0; b < B; b++)
        {
            var x = batch[b];
            x.InputIds.CopyTo(ids, b * T); x.TypeIds.CopyTo(types, b * T);
            mask.AsSpan(b * T, x.InputIds.Length).Fill(1);
            for (int k = 0; k < x.MaskedPositions.Length; k++) { rows[g] = b * T + x.MaskedPositions[k]; labels[g] = x.MaskedLabels[k]; g++; }
            nsp[b] = x.NspLabel;
        }
        if (g < G)
        {
            // Padding rows: positions no real row gathers, from the end (padding tokens first), each once.
            var taken = new HashSet<int>(rows.AsSpan(0, g).ToArray());
            for (int q = B * T - 1; g < G; q--)
                if (!taken.Contains(q)) { rows[g] = q; labels[g] = Bert.Runtime.Kernels.CrossEntropy.DefaultIgnoreIndex; g++; }
        }
        return new BatchInputs(B, T, ids, types, mask, rows, labels, nsp);
    }

    public static int BindBatch(Model<float> m, IReadOnlyList<MaskedInstance> batch, int pad) => Bind(m, Inputs(batch, pad));

    public static int Bind(Model<float> m, BatchInputs x)
    {
        m.Bind(x.B, x.T, x.Rows.Length, training: true);
        m.SetInput("ids", x.Ids); m.SetInput("types", x.Types); m.SetInput("mask", x.Mask);
        m.SetInput("masked", x.Rows); m.SetInput("mlmLabels", x.MlmLabels); m.SetInput("nspLabels", x.NspLabels);
        return x.B * x.T;
    }

    /// <summary>MLM and NSP accuracy of the batch just run forward, from the saved softmax probabilities.</summary>
    public IReadOnlyDictionary<string, double> Metrics() => Accuracies(_model, _current);

    /// <summary>The same from the device's counts (masked LM, then next sentence; no NSP accuracy when no row has a label).</summary>
    public static IReadOnlyDictionary<string, double> DeviceMetrics(IReadOnlyList<(int Right, int Total)> ce)
    {
        var metrics = new Dictionary<string, double> { ["mlm_acc"] = ce.Count == 0 || ce[0].Total == 0 ? 0 : (double)ce[0].Right / ce[0].Total };
        if (ce.Count > 1 && ce[1].Total > 0) metrics["nsp_acc"] = (double)ce[1].Right / ce[1].Total;
        return metrics;
    }

    static Dictionary<string, double> Accuracies(Model<float> m, IReadOnlyList<MaskedInstance> batch)
    {
        var mlm = m.Probabilities(0); var nsp = m.Probabilities(1);
        int V = mlm.Length / Math.Max(1, m.Rows);   // the bound rows, padding rows (after the real ones) included
        int g = 0, right = 0, total = 0, nspRight = 0, nspTotal = 0;
        for (int b = 0; b < batch.Count; b++)
        {
            foreach (var label in batch[b].MaskedLabels)
            {
                if (label >= 0) { total++; if (ArgMax(mlm.Slice(g * V, V)) == label) right++; }
                g++;
            }
            if (batch[b].NspLabel < 0) continue;   // masked LM only: no next-sentence label
            nspTotal++;
            if (ArgMax(nsp.Slice(b * 2, 2)) == batch[b].NspLabel) nspRight++;
        }
        var metrics = new Dictionary<string, double> { ["mlm_acc"] = total == 0 ? 0 : (double)right / total };
        if (nspTotal > 0) metrics["nsp_acc"] = (double)nspRight / nspTotal;
        return metrics;
    }

    public static int ArgMax(ReadOnlySpan<float> xs)
    {
        int best = 0;
        for (int i = 1; i < xs.Length; i++) if (xs[i] > xs[best]) best = i;
        return best;
    }

    /// <summary>Masked-LM loss and accuracy on the held-out instances (fixed masks), dropout off.</summary>
    public EvalReport Evaluate()
    {
        double loss = 0; double mlm = 0, nsp = 0; int n = 0, nspN = 0;
        foreach (var chunk in _heldOutMasked.Chunk(_batch))
        {
            BindBatch(_model, chunk, _tok.PadId);
            loss += _model.Forward(training: false)[0] * chunk.Length;
            var acc = Accuracies(_model, chunk);
            mlm += acc["mlm_acc"] * chunk.Length; n += chunk.Length;
            if (acc.TryGetValue("nsp_acc", out double a)) { nsp += a * chunk.Length; nspN += chunk.Length; }
        }
        var metrics = new Dictionary<string, double> { ["mlm_acc"] = mlm / n };
        if (nspN > 0) metrics["nsp_acc"] = nsp / nspN;
        return new EvalReport(loss / n, metrics, -loss / n);
    }
}

/// <summary>Fine-tuning a sequence classifier on a labeled set; evaluation is accuracy on a dev set.</summary>
public sealed class FinetuneJob
{
    readonly Model<float> _model;
    readonly WordPiece _tok;
    readonly List<Example> _train, _dev;
    readonly int _batch, _perEpoch;
    readonly int _seed;
    int _epochCached = -1;
    List<Batch> _batches = new();
    Example[] _current = [];

    /// <summary>One encoded example: word-piece ids with [CLS]/[SEP], their segment (token type: 0 for the first text,
    /// 1 for a pair's second), and the label.</summary>
    public readonly record struct Example(int[] Ids, int[] Types, int Label)
    {
        /// <summary>A single text (every token in segment 0).</summary>
        public Example(int[] ids, int label) : this(ids, new int[ids.Length], label) { }
    }

    /// <summary>A set's examples encoded (a pair as [CLS] a [SEP] b [SEP], cut to maxLen from the longer text first), and
    /// how many were cut.</summary>
    public static (List<Example> Examples, int Truncated) Encode(WordPiece tokenizer, LabeledSet set, int maxLen)
    {
        int truncated = 0;
        var list = new List<Example>(set.Examples.Count);
        for (int i = 0; i < set.Examples.Count; i++)
        {
            var p = tokenizer.EncodePair(set.Examples[i].Text, set.Pair(i), maxLen);
            if (p.Truncated > 0) truncated++;
            list.Add(new Example(p.Ids, p.TypeIds, set.Examples[i].Label));
        }
        return (list, truncated);
    }

    public FinetuneJob(Model<float> model, WordPiece tokenizer, LabeledSet train, LabeledSet dev, int maxLen, int batchSize, int seed)
    {
        _model = model; _tok = tokenizer; _batch = batchSize; _seed = seed;
        int classes = (int)model.Info.Constants.GetValueOrDefault("Classes", 2);
        if (train.Classes > classes)
            throw new ArgumentException($"{train.Name} has {train.Classes} classes but {model.Info.Name} predicts {classes}; use a classifier declared with Classes = {train.Classes}.");
        CheckFits(model.Info, tokenizer, maxLen);
        if (dev.Examples.Count == 0) throw new ArgumentException($"The dev set of {train.Name} has no examples (too few per class to set one aside); give more examples or a --dev file.");
        (_train, int cutTrain) = Encode(tokenizer, train, maxLen);
        (_dev, int cutDev) = Encode(tokenizer, dev, maxLen);
        Truncated = cutTrain + cutDev;
        _perEpoch = (_train.Count + batchSize - 1) / batchSize;
    }

    /// <summary>Throws when --max-len is over the model's MaxLen (fine-tuning, tagging, eval, predict).</summary>
    internal static void CheckMaxLen(ModelInfo model, int maxLen)
    {
        if (maxLen > model.MaxLen) throw new ArgumentException($"--max-len {maxLen} is over {model.Name}'s MaxLen of {model.MaxLen}; give --max-len {model.MaxLen} or less.");
    }

    /// <summary>Throws when texts of maxLen tokens or the tokenizer's vocabulary do not fit the model (fine-tuning and
    /// tagging alike).</summary>
    internal static void CheckFits(ModelInfo model, WordPiece tokenizer, int maxLen)
    {
        CheckMaxLen(model, maxLen);
        int vocab = (int)model.Constants["Vocab"];
        if (tokenizer.VocabSize > vocab)
            throw new ArgumentException($"The vocabulary has {tokenizer.VocabSize} entries but {model.Name} embeds {vocab}; use the vocabulary the model was pre-trained with, or a model declared with Vocab = {tokenizer.VocabSize}.");
    }

    /// <summary>How many texts were cut to the maximum length.</summary>
    public int Truncated { get; }
    public int StepsPerEpoch => _perEpoch;

    public int Bind(long index)
    {
        int e = (int)(index / _perEpoch);
        if (e != _epochCached) { _batches = Batching.ByLength(_train.Select(x => x.Ids).ToList(), _batch, _seed * 7919 + e); _epochCached = e; }
        var b = _batches[(int)(index % _perEpoch)];
        _current = b.Indices.Select(i => _train[i]).ToArray();
        return BindBatch(_model, _current, _tok.PadId, training: true, SeqMultiple);
    }

    /// <summary>Pads each training batch to a length that is a multiple of this (0: to its longest text), within the
    /// model's MaxLen: fewer shapes, so CUDA graphs captured for one batch replay for others, and lengths that attention's
    /// tensor-core products take without copies. Padding is masked out of attention (the classification is the same), but
    /// dropout draws over the padded length, so a padded run is another draw than an unpadded one.</summary>
    public int SeqMultiple { get; set; }

    /// <summary>The sequence multiple the CUDA trainer's graphs use (see <see cref="SeqMultiple"/>).</summary>
    public const int GraphSeqMultiple = 8;

    public static int BindBatch(Model<float> m, IReadOnlyList<Example> batch, int pad, bool training, int seqMultiple = 0)
    {
        int B = batch.Count, T = batch.Max(x => x.Ids.Length);
        if (seqMultiple > 0) T = Math.Min(m.Info.MaxLen, (T + seqMultiple - 1) / seqMultiple * seqMultiple);
        var ids = new int[B * T]; var types = new int[B * T]; var mask = new int[B * T];
        if (pad != 0) Array.Fill(ids, pad);
        for (int b = 0; b < B; b++)
        {
            batch[b].Ids.CopyTo(ids, b * T); batch[b].Types.CopyTo(types, b * T);
            mask.AsSpan(b * T, batch[b].Ids.Length).Fill(1);
        }
        m.Bind(B, T, 0, training);
        m.SetInput("ids", ids); m.SetInput("types", types); m.SetInput("mask", mask);
        m.SetInput("labels", batch.Select(x => x.Label).ToArray());
        return B * T;
    }

    public IReadOnlyDictionary<string, double> Metrics()
    {
        var p = _model.Probabilities(0);
        int K = p.Length / _current.Length, right = 0;
        for (int b = 0; b < _current.Length; b++) if (PretrainJob.ArgMax(p.Slice(b * K, K)) == _current[b].Label) right++;
        return new Dictionary<string, double> { ["acc"] = (double)right / _current.Length };
    }

    /// <summary>The same from the device's counts.</summary>
    public static IReadOnlyDictionary<string, double> DeviceMetrics(IReadOnlyList<(int Right, int Total)> ce) =>
        new Dictionary<string, double> { ["acc"] = ce.Count == 0 || ce[0].Total == 0 ? 0 : (double)ce[0].Right / ce[0].Total };

    public EvalReport Evaluate() => Evaluate(_model, _dev, _tok.PadId, _batch);

    /// <summary>Accuracy (the score) and mean loss over a set, dropout off.</summary>
    public static EvalReport Evaluate(Model<float> m, IReadOnlyList<Example> set, int pad, int batch)
    {
        double loss = 0; int right = 0;
        var order = Enumerable.Range(0, set.Count).OrderBy(i => set[i].Ids.Length).ToArray();
        foreach (var chunk in order.Chunk(batch))
        {
            var items = chunk.Select(i => set[i]).ToArray();
            BindBatch(m, items, pad, training: false);
            loss += m.Forward(training: false)[0] * items.Length;
            var p = m.Probabilities(0);
            int K = p.Length / items.Length;
            for (int b = 0; b < items.Length; b++) if (PretrainJob.ArgMax(p.Slice(b * K, K)) == items[b].Label) right++;
        }
        double acc = (double)right / set.Count;
        return new EvalReport(loss / set.Count, new Dictionary<string, double> { ["acc"] = acc }, acc);
    }

    /// <summary>Throws when the pre-trained model's encoder does not fit the classifier: a tensor both name with
    /// different shapes (another size), no tensor in common, or another model type (pre-LN into post-LN BERT).</summary>
    public static void CheckTransferable(ModelInfo from, ModelInfo to, string source)
    {
        static string Sizes(ModelInfo i) => string.Join(", ", new[] { "Hidden", "Layers", "Heads", "Vocab", "MaxLen" }
            .Where(i.Constants.ContainsKey).Select(k => $"{k} {i.Constants[k]}"));
        var shared = to.Parameters.Select(p => (p, q: from.Parameters.FirstOrDefault(x => x.HfName == p.HfName))).Where(x => x.q is not null).ToList();
        if (shared.Count == 0 || shared.Any(x => !x.p.Shape.SequenceEqual(x.q!.Shape)) || HfConfig.ModelTypeOf(from) != HfConfig.ModelTypeOf(to))
            throw new ArgumentException($"The checkpoint in {source} holds {from.Name} ({Sizes(from)}), which does not fit {to.Name} ({Sizes(to)}); " +
                "pass the --size the checkpoint was pre-trained with.");
    }

    /// <summary>The tensors of a classifier's or tagger's task head (transformers' names): never copied by <see cref="Transfer"/>.</summary>
    public const string HeadPrefix = "classifier.";

    /// <summary>Copies the weights two models share by Hugging Face name and shape (the encoder from a
    /// pre-trained model into a classifier), except those <paramref name="reinit"/> names, which keep the target's
    /// fresh initialization, those the source's checkpoint did not hold (<paramref name="notLoaded"/>), and the task head
    /// (<see cref="HeadPrefix"/>: a classifier's or tagger's, whose classes are the new data's even when the source was
    /// fine-tuned on others); returns how many tensors were copied.</summary>
    public static int Transfer(Model<float> from, Model<float> to, Reinit? reinit = null, IReadOnlyCollection<string>? notLoaded = null, ICollection<string>? copied = null)
    {
        reinit?.CheckMatches(to.Info);
        int n = 0;
        foreach (var p in to.Info.Parameters)
        {
            var q = from.Info.Parameters.FirstOrDefault(x => x.HfName == p.HfName && x.Shape.SequenceEqual(p.Shape));
            if (q is null || p.HfName.StartsWith(HeadPrefix, StringComparison.Ordinal) || reinit is not null && reinit.Matches(p.HfName, to.Info) || notLoaded?.Contains(q.HfName) == true) continue;
            from.Parameters.Slice((int)q.Offset, (int)q.Length).CopyTo(to.Parameters.Slice((int)p.Offset, (int)p.Length));
            copied?.Add(p.HfName);
            n++;
        }
        return n;
    }
}

/// <summary>Parts of a pre-trained encoder that fine-tuning starts afresh instead of copying (<c>--reinit</c>): the
/// tensors keep the classifier's random initialization, as in the from-scratch arm. Re-initializing the top layers is
/// Zhang et al.'s (2021) remedy for few-sample fine-tuning; re-initializing only the attention's query and key makes
/// every layer start by averaging over the text (near-uniform attention), as a random encoder does, while the
/// embeddings, values and feed-forward layers keep what pre-training learnt.</summary>
public sealed class Reinit
{
    /// <summary>The parts <see cref="Parse"/> accepts; <c>top-N</c> is the last N encoder layers.</summary>
    public static readonly string[] Parts = ["qk", "qkv", "attention", "ffn", "layernorm", "pooler", "top-N"];

    /// <summary>One part as parsed: its name, and for <c>top-N</c> the N (0 for the named parts).</summary>
    readonly record struct Part(string Name, int Top);

    readonly Part[] _parts;
    Reinit(Part[] parts) => _parts = parts;

    /// <summary>The parts as given, comma-separated.</summary>
    public override string ToString() => string.Join(",", _parts.Select(p => p.Name));

    /// <summary>Null for none (null, empty or "none"); throws naming the accepted parts for anything else unknown.</summary>
    public static Reinit? Parse(string? spec)
    {
        if (string.IsNullOrWhiteSpace(spec) || spec.Trim() == "none") return null;
        return new Reinit(spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(part =>
            part.StartsWith("top-", StringComparison.Ordinal) && int.TryParse(part.AsSpan(4), NumberStyles.None, CultureInfo.InvariantCulture, out int top) && top > 0 ? new Part(part, top)
            : Parts.Contains(part) && part != "top-N" ? new Part(part, 0)
            : throw new ArgumentException($"Unknown part '{part}' in --reinit; use a comma-separated list of {string.Join(", ", Parts)} (N a positive number of layers), or none.")).ToArray());
    }

    static readonly System.Text.RegularExpressions.Regex LayerIndex = new(@"\.layer\.(\d+)\.", System.Text.RegularExpressions.RegexOptions.Compiled);

    static int Layers(ModelInfo model) => model.Constants.TryGetValue("Layers", out var l) ? (int)l : 0;

    /// <summary>Whether the tensor of this Hugging Face name starts afresh.</summary>
    public bool Matches(string hf, ModelInfo model) => _parts.Any(part => Names(part, hf, Layers(model)));

    static bool Names(Part part, string hf, int layers)
    {
        bool query = hf.Contains(".query.") || hf.Contains(".key."), value = hf.Contains(".value.");
        bool attentionOut = hf.Contains(".attention.output.dense.") || hf.Contains(".attention.dense.");
        switch (part.Name)
        {
            case "qk": return query;
            case "qkv": return query || value;
            case "attention": return query || value || attentionOut;
            case "ffn": return hf.Contains(".intermediate.dense.") || (hf.Contains(".output.dense.") && !attentionOut) || hf.Contains(".ffn.") || hf.Contains(".ffn_output.");
            case "layernorm": return (hf.Contains("LayerNorm") || hf.Contains("layer_norm")) && hf.Contains("encoder.");
            case "pooler": return hf.Contains("pooler.");
            default:   // top-N
                var m = LayerIndex.Match(hf);
                return m.Success && int.Parse(m.Groups[1].ValueSpan, CultureInfo.InvariantCulture) >= layers - part.Top;
        }
    }

    /// <summary>Throws when a part names no tensor of the model (top-N of a model without numbered layers, N over its
    /// layer count), so a typo in an experiment never silently copies everything.</summary>
    public void CheckMatches(ModelInfo model)
    {
        int layers = Layers(model);
        foreach (var part in _parts)
        {
            if (part.Top > layers)
                throw new ArgumentException($"--reinit {part.Name} asks for more layers than {model.Name} has ({layers}).");
            if (!model.Parameters.Any(p => Names(part, p.HfName, layers)))
                throw new ArgumentException($"--reinit {part.Name} names no tensor of {model.Name}; use one of {string.Join(", ", Parts)}.");
        }
    }
}

/// <summary>Token classification (tagging) on sentences given as words with one tag each. The first word piece of
/// a word carries its tag; [CLS], [SEP], the continuation pieces and padding carry -100 and do not count in the
/// loss or the accuracy. Sentences longer than the maximum length are cut and counted.</summary>
public sealed class TokenTaggingJob
{
    public const int Ignore = Bert.Runtime.Kernels.CrossEntropy.DefaultIgnoreIndex;

    readonly Model<float> _model;
    readonly WordPiece _tok;
    readonly List<(int[] Ids, int[] Labels)> _train, _dev;
    readonly int _batch, _perEpoch, _seed;
    int _epochCached = -1;
    List<Batch> _batches = new();
    (int[] Ids, int[] Labels)[] _current = Array.Empty<(int[], int[])>();

    public TokenTaggingJob(Model<float> model, WordPiece tokenizer, IReadOnlyList<(string[] Words, int[] Tags)> train,
        IReadOnlyList<(string[] Words, int[] Tags)> dev, int maxLen, int batchSize, int seed)
    {
        _model = model; _tok = tokenizer; _batch = batchSize; _seed = seed;
        int classes = (int)model.Info.Constants.GetValueOrDefault("Classes", 2);
        FinetuneJob.CheckFits(model.Info, tokenizer, maxLen);
        int truncated = 0;
        List<(int[], int[])> EncodeAll(IReadOnlyList<(string[] Words, int[] Tags)> set) => set.Select((s, i) =>
        {
            if (s.Words.Length != s.Tags.Length)
                throw new ArgumentException($"Sentence {i + 1} has {s.Words.Length} words but {s.Tags.Length} tags; give one tag per word.");
            foreach (int tag in s.Tags)
                if (tag < 0 || tag >= classes)
                    throw new ArgumentException($"Sentence {i + 1} has tag {tag}, but {model.Info.Name} predicts tags 0 to {classes - 1}; fix the tag or use a model declared with more classes.");
            var e = Encode(tokenizer, s.Words, s.Tags, maxLen);
            if (e.Truncated > 0) truncated++;
            return (e.Ids, e.Labels);
        }).ToList();
        _train = EncodeAll(train);
        if (dev.Count == 0) throw new ArgumentException("The dev set has no sentences; give more sentences or a --dev file.");
        _dev = EncodeAll(dev);
        _devTags = dev.Select(s => s.Tags).ToList();
        Truncated = truncated;
        _perEpoch = (_train.Count + batchSize - 1) / batchSize;
    }

    /// <summary>How many sentences were cut to the maximum length.</summary>
    public int Truncated { get; }
    public int StepsPerEpoch => _perEpoch;

    /// <summary>[CLS] pieces [SEP] with per-piece labels: the word's tag on its first piece, -100 elsewhere.
    /// Truncated counts the pieces that did not fit.</summary>
    public static (int[] Ids, int[] Labels, int Truncated) Encode(WordPiece tok, IReadOnlyList<string> words, IReadOnlyList<int> tags, int maxLen)
    {
        var ids = new List<int> { tok.ClsId };
        var labels = new List<int> { Ignore };
        for (int w = 0; w < words.Count; w++)
        {
            var pieces = tok.Encode(words[w]);
            if (pieces.Length == 0) pieces = [tok.UnkId];
            for (int k = 0; k < pieces.Length; k++) { ids.Add(pieces[k]); labels.Add(k == 0 ? tags[w] : Ignore); }
        }
        int cut = Math.Max(0, ids.Count + 1 - maxLen);
        if (cut > 0) { ids.RemoveRange(maxLen - 1, cut); labels.RemoveRange(maxLen - 1, cut); }
        ids.Add(tok.SepId); labels.Add(Ignore);
        return (ids.ToArray(), labels.ToArray(), cut);
    }

    public int Bind(long index)
    {
        int e = (int)(index / _perEpoch);
        if (e != _epochCached) { _batches = Batching.ByLength(_train.Select(x => x.Ids).ToList(), _batch, _seed * 7919 + e); _epochCached = e; }
        var b = _batches[(int)(index % _perEpoch)];
        _current = b.Indices.Select(i => _train[i]).ToArray();
        return BindBatch(_model, _current, _tok.PadId, training: true, SeqMultiple);
    }

    /// <summary>Pads each training batch to a multiple of this many tokens (0: to its longest sentence), as
    /// <see cref="FinetuneJob.SeqMultiple"/>: fewer shapes, so CUDA graphs replay.</summary>
    public int SeqMultiple { get; set; }

    /// <summary>Pads to the longest sentence (or up to a multiple of <paramref name="seqMultiple"/>, within MaxLen); padded
    /// positions are masked out of attention and labeled -100.</summary>
    public static int BindBatch(Model<float> m, IReadOnlyList<(int[] Ids, int[] Labels)> batch, int pad, bool training, int seqMultiple = 0)
    {
        int B = batch.Count, T = batch.Max(x => x.Ids.Length);
        if (seqMultiple > 0) T = Math.Min(m.Info.MaxLen, (T + seqMultiple - 1) / seqMultiple * seqMultiple);
        var ids = new int[B * T]; var types = new int[B * T]; var mask = new int[B * T]; var labels = new int[B * T];
        if (pad != 0) Array.Fill(ids, pad);
        Array.Fill(labels, Ignore);
        for (int b = 0; b < B; b++)
        {
            batch[b].Ids.CopyTo(ids, b * T); batch[b].Labels.CopyTo(labels, b * T);
            mask.AsSpan(b * T, batch[b].Ids.Length).Fill(1);
        }
        m.Bind(B, T, 0, training);
        m.SetInput("ids", ids); m.SetInput("types", types); m.SetInput("mask", mask); m.SetInput("labels", labels);
        return B * T;
    }

    public IReadOnlyDictionary<string, double> Metrics()
    {
        var (right, total) = Count(_model.Probabilities(0), _current, _model.Seq);
        return new Dictionary<string, double> { ["acc"] = total == 0 ? 0 : (double)right / total };
    }

    /// <summary>The same from the device's counts (ignored tags are not counted there either).</summary>
    public static IReadOnlyDictionary<string, double> DeviceMetrics(IReadOnlyList<(int Right, int Total)> ce) => FinetuneJob.DeviceMetrics(ce);

    /// <summary>Correct and counted tags of a bound batch, from the softmax probabilities [B·T, K].</summary>
    static (int Right, int Total) Count(ReadOnlySpan<float> p, IReadOnlyList<(int[] Ids, int[] Labels)> batch, int T)
    {
        var tags = Tags(p, batch, T);
        int right = 0, total = 0;
        for (int b = 0; b < batch.Count; b++)
        {
            var labels = batch[b].Labels.Where(l => l != Ignore).ToArray();
            total += labels.Length;
            for (int w = 0; w < labels.Length; w++) if (tags[b][w].Tag == labels[w]) right++;
        }
        return (right, total);
    }

    /// <summary>The tags' names (a CoNLL file's): with BIO tags the evaluation also counts entities, and its score is the
    /// entity F1 instead of the word accuracy.</summary>
    public IReadOnlyList<string>? TagNames { get; init; }

    readonly List<int[]> _devTags;

    public EvalReport Evaluate() => Evaluate(_model, _dev, _tok.PadId, _batch, TagNames, _devTags);

    /// <summary>Word accuracy over the counted positions and the mean loss per sentence batch, dropout off; with BIO tag
    /// names (<see cref="Bert.Data.Conll.IsBio"/>) also entity precision, recall and F1 (conlleval's), and F1 is the
    /// score; else the accuracy is.</summary>
    /// <param name="fullTags">Each sentence's tags, every word: then the words cut at the maximum length count as wrong
    /// (and as tagged O for the entities), as <c>bert eval</c> counts them; without it only the words read count.</param>
    public static EvalReport Evaluate(Model<float> m, IReadOnlyList<(int[] Ids, int[] Labels)> set, int pad, int batch, IReadOnlyList<string>? tagNames = null,
        IReadOnlyList<int[]>? fullTags = null)
    {
        double loss = 0;
        var predicted = new List<int[]>(set.Count);
        foreach (var chunk in set.Chunk(batch))
        {
            BindBatch(m, chunk, pad, training: false);
            loss += m.Forward(training: false)[0] * chunk.Length;
            predicted.AddRange(Tags(m.Probabilities(0), chunk, m.Seq).Select(s => s.Select(x => x.Tag).ToArray()));
        }
        // Without the full tags, only the words read count; with them, the words past the cut have no prediction (-1),
        // so they are wrong, and O for the entities.
        var gold = fullTags ?? set.Select(x => x.Labels.Where(l => l != Ignore).ToArray()).ToList();
        for (int i = 0; i < predicted.Count; i++) predicted[i] = [.. predicted[i], .. Enumerable.Repeat(-1, gold[i].Length - predicted[i].Length)];
        int total = gold.Sum(g => g.Length), right = gold.Select((g, i) => g.Where((t, w) => predicted[i][w] == t).Count()).Sum();
        double acc = total == 0 ? 0 : (double)right / total;
        var metrics = new Dictionary<string, double> { ["acc"] = acc };
        if (tagNames is null || !Bert.Data.Conll.IsBio(tagNames)) return new EvalReport(loss / set.Count, metrics, acc);
        string Name(int t) => t >= 0 && t < tagNames.Count ? tagNames[t] : "O";
        var (precision, recall, f1) = Bert.Data.Conll.EntityScores(gold.Select((g, i) =>
            ((IReadOnlyList<string>)g.Select(Name).ToList(), (IReadOnlyList<string>)predicted[i].Select(Name).ToList())));
        metrics["precision"] = precision; metrics["recall"] = recall; metrics["f1"] = f1;
        return new EvalReport(loss / set.Count, metrics, f1);
    }

    /// <summary>The predicted tag and its probability at each counted position (each word's first piece), per sentence of
    /// a batch bound at length <paramref name="T"/> (padded or not), from the softmax probabilities [B·T, K].</summary>
    static List<(int Tag, float Probability)[]> Tags(ReadOnlySpan<float> p, IReadOnlyList<(int[] Ids, int[] Labels)> batch, int T)
    {
        int K = p.Length / (batch.Count * T);
        var result = new List<(int, float)[]>(batch.Count);
        for (int b = 0; b < batch.Count; b++)
        {
            var tags = new List<(int, float)>();
            for (int t = 0; t < batch[b].Labels.Length; t++)
            {
                if (batch[b].Labels[t] == Ignore) continue;
                var row = p.Slice((b * T + t) * K, K);
                int tag = PretrainJob.ArgMax(row);
                tags.Add((tag, row[tag]));
            }
            result.Add(tags.ToArray());
        }
        return result;
    }

    /// <summary>Tags words (one sentence each, the model's forward in batches, dropout off): each word's tag id and its
    /// probability, from its first piece; words past the maximum length get none (-1).</summary>
    public static List<(int Tag, float Probability)[]> Predict(Model<float> m, WordPiece tok, IReadOnlyList<string[]> sentences, int maxLen, int batch = 32)
    {
        var result = new List<(int, float)[]>(sentences.Count);
        foreach (var chunk in sentences.Chunk(batch))
        {
            var encoded = chunk.Select(words => { var e = Encode(tok, words, new int[words.Length], maxLen); return (e.Ids, e.Labels); }).ToArray();
            BindBatch(m, encoded, tok.PadId, training: false);
            m.Forward(training: false);
            var tags = Tags(m.Probabilities(0), encoded, m.Seq);
            for (int b = 0; b < encoded.Length; b++)
                result.Add([.. tags[b], .. Enumerable.Repeat((-1, 0f), chunk[b].Length - tags[b].Length)]);
        }
        return result;
    }
}
