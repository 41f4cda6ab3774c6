using System.Text.Json;
using Bert.Data;
using Bert.Runtime;
using Bert.Runtime.Checkpoints;
using Bert.Training;

namespace Bert.Cli;

/// <summary><c>bert parity-batch</c>: one pre-training batch from the embedded corpus (or given files), run through a
/// checkpoint without dropout, written for <c>bench/parity/parity.py</c> to replay in another implementation
/// (transformers' <c>BertForPreTraining</c>, or the plain-PyTorch reference beside it): <c>batch.json</c> holds the
/// inputs, our loss and our MLM / NSP logits; <c>gradients.safetensors</c> holds the gradient of that loss for every
/// parameter, under its Hugging Face name.</summary>
public static class Parity
{
    public const string BatchFile = "batch.json", GradientsFile = "gradients.safetensors";

    public sealed record Result(int Batch, int Seq, int Predictions, double Loss, string Model);

    public static Result Write(string modelDir, string outDir, int batch, int maxLen, int seed, string[]? corpusFiles)
    {
        if (batch < 1) throw new ArgumentException($"--batch {batch} must be at least 1.");
        CheckOut(outDir);
        var (_, model) = Program.LoadModel(modelDir);
        var info = model.Info;
        if (!info.Inputs.Any(i => i.Name == "masked") || !info.Inputs.Any(i => i.Name == "nspLabels"))
            throw new ArgumentException($"{modelDir} holds {info.Name}, not a pre-training model (masked LM + next sentence); parity-batch needs one such as `bert pretrain` writes.");
        if (maxLen < 8 || maxLen > info.MaxLen) throw new ArgumentException($"--max-len {maxLen} must be between 8 and {info.Name}'s MaxLen of {info.MaxLen}.");
        var tok = CheckpointTokenizer.Load(modelDir);
        var (docs, _) = DataSets.Corpus(corpusFiles);
        // Both objectives, so the comparison covers the NSP head too.
        var data = new PretrainingOptions { MaxSeqLength = maxLen, NextSentence = true, MaxPredictionsPerSeq = Program.MaxPredictions(maxLen, 0.15) };
        var instances = Data.Pretraining.CreateInstances(docs, tok, data, seed);
        if (instances.Count < batch) throw new ArgumentException($"The corpus gives {instances.Count} pre-training sequences, fewer than --batch {batch}; give it more text.");
        var rng = new Random(seed);
        var masker = new Masker(tok, data);
        // Random sequences plus the shortest one, so the batch is padded and the attention mask is exercised.
        var shortest = instances.MinBy(i => i.Tokens.Length)!;
        var picked = instances.Where(i => !ReferenceEquals(i, shortest)).OrderBy(_ => rng.Next()).Take(batch - 1).Append(shortest);
        var chosen = picked.Select(i => masker.Mask(i, rng)).ToArray();

        model.ReuseMemory = false;   // the logits stay readable after the forward pass
        var x = PretrainJob.Inputs(chosen, tok.PadId);
        PretrainJob.Bind(model, x);
        model.ZeroGradients();
        double loss = model.Forward(training: false)[0];
        var mlm = model.Logits(0).ToArray();
        var nsp = model.Logits(1).ToArray();
        model.Backward();

        Directory.CreateDirectory(outDir);
        var grads = new SafeTensorsWriter();
        grads.Metadata["bert_model"] = info.Name;
        var all = model.Gradients;
        foreach (var p in info.Parameters) grads.Add(p.HfName, p.Shape, (ReadOnlySpan<float>)all.Slice((int)p.Offset, (int)p.Length));
        grads.Save(Path.Combine(outDir, GradientsFile));

        int G = x.Rows.Length;
        AtomicFile.Write(Path.Combine(outDir, BatchFile), s =>
        {
            using var w = new Utf8JsonWriter(s);
            // A flat row-major array as a list of rows of `cols` values, or as one list when cols is 0.
            void Write<TV>(string name, TV[] values, int cols, Action<TV> value)
            {
                w.WriteStartArray(name);
                for (int i = 0; i < values.Length; i++)
                {
                    if (cols > 0 && i % cols == 0) w.WriteStartArray();
                    value(values[i]);
                    if (cols > 0 && i % cols == cols - 1) w.WriteEndArray();
                }
                w.WriteEndArray();
            }
            w.WriteStartObject();
            w.WriteString("checkpoint", Path.GetFullPath(modelDir));
            w.WriteString("bert_model", info.Name);
            Write("input_ids", x.Ids, x.T, w.WriteNumberValue);
            Write("token_type_ids", x.Types, x.T, w.WriteNumberValue);
            Write("attention_mask", x.Mask, x.T, w.WriteNumberValue);
            Write("masked_positions", x.Rows, 0, w.WriteNumberValue);
            Write("mlm_labels", x.MlmLabels, 0, w.WriteNumberValue);
            Write("nsp_labels", x.NspLabels, 0, w.WriteNumberValue);
            w.WriteNumber("loss", loss);
            Write("mlm_logits", mlm, mlm.Length / Math.Max(1, G), w.WriteNumberValue);
            Write("nsp_logits", nsp, 2, w.WriteNumberValue);
            w.WriteEndObject();
        });
        return new Result(x.B, x.T, G, loss, info.Name);
    }

    /// <summary>--out must be new, empty, or hold only what an earlier parity-batch wrote (which this run replaces): its two
    /// files are written over, so a folder with anything else in it (a checkpoint, someone's own batch.json beside other
    /// files) is refused before any work.</summary>
    /// <summary>A temporary file of an interrupted write of either file (AtomicFile: .NAME.GUID.tmp).</summary>
    static bool Leftover(string name) => name.EndsWith(".tmp", StringComparison.Ordinal)
        && (name.StartsWith($".{BatchFile}.", StringComparison.Ordinal) || name.StartsWith($".{GradientsFile}.", StringComparison.Ordinal));

    static void CheckOut(string outDir)
    {
        if (File.Exists(outDir)) throw new ArgumentException($"--out {outDir} is a file; give a folder for {BatchFile} and {GradientsFile}.");
        if (!Directory.Exists(outDir)) return;
        var other = Directory.EnumerateFileSystemEntries(outDir).Select(Path.GetFileName)
            .Where(name => name is not (BatchFile or GradientsFile) && !Leftover(name!)).Order(StringComparer.Ordinal).ToList();
        if (other.Count > 0)
            throw new ArgumentException($"--out {outDir} holds other files ({string.Join(", ", other.Take(3))}{(other.Count > 3 ? ", …" : "")}), which parity-batch would write beside; give a new or empty folder, or one holding only an earlier parity-batch's {BatchFile} and {GradientsFile}.");
    }
}
