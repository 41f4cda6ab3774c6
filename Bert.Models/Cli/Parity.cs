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
        PretrainJob.BindBatch(model, chosen, tok.PadId);
        int B = model.Batch, T = model.Seq;
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

        int G = chosen.Sum(x => x.MaskedPositions.Length), V = mlm.Length / Math.Max(1, G);
        AtomicFile.Write(Path.Combine(outDir, BatchFile), s =>
        {
            using var w = new Utf8JsonWriter(s);
            w.WriteStartObject();
            w.WriteString("checkpoint", Path.GetFullPath(modelDir));
            w.WriteString("bert_model", info.Name);
            void Rows(string name, Func<MaskedInstance, int, int> value)
            {
                w.WriteStartArray(name);
                foreach (var x in chosen)
                {
                    w.WriteStartArray();
                    for (int t = 0; t < T; t++) w.WriteNumberValue(value(x, t));
                    w.WriteEndArray();
                }
                w.WriteEndArray();
            }
            Rows("input_ids", (x, t) => t < x.InputIds.Length ? x.InputIds[t] : tok.PadId);
            Rows("token_type_ids", (x, t) => t < x.TypeIds.Length ? x.TypeIds[t] : 0);
            Rows("attention_mask", (x, t) => t < x.InputIds.Length ? 1 : 0);
            w.WriteStartArray("masked_positions");
            for (int b = 0; b < B; b++) foreach (int p in chosen[b].MaskedPositions) w.WriteNumberValue(b * T + p);
            w.WriteEndArray();
            w.WriteStartArray("mlm_labels");
            foreach (var x in chosen) foreach (int l in x.MaskedLabels) w.WriteNumberValue(l);
            w.WriteEndArray();
            w.WriteStartArray("nsp_labels");
            foreach (var x in chosen) w.WriteNumberValue(x.NspLabel);
            w.WriteEndArray();
            w.WriteNumber("loss", loss);
            void Matrix(string name, float[] values, int cols)
            {
                w.WriteStartArray(name);
                for (int r = 0; r < values.Length / cols; r++)
                {
                    w.WriteStartArray();
                    for (int c = 0; c < cols; c++) w.WriteNumberValue(values[r * cols + c]);
                    w.WriteEndArray();
                }
                w.WriteEndArray();
            }
            Matrix("mlm_logits", mlm, V);
            Matrix("nsp_logits", nsp, 2);
            w.WriteEndObject();
        });
        return new Result(B, T, G, loss, info.Name);
    }
}
