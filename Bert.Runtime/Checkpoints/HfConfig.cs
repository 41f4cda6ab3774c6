using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Bert.Runtime.Checkpoints;

/// <summary>A Hugging Face <c>config.json</c> (the fields of transformers' BertConfig, AlbertConfig for ALBERT-style
/// models), built from a model's constants or read back and checked against a model.</summary>
public sealed class HfConfig
{
    /// <summary>Which model constant each config key holds.</summary>
    public static readonly IReadOnlyList<(string Constant, string Key)> ConstantKeys =
    [
        ("Vocab", "vocab_size"), ("Hidden", "hidden_size"), ("Layers", "num_hidden_layers"), ("Heads", "num_attention_heads"),
        ("Ffn", "intermediate_size"), ("MaxLen", "max_position_embeddings"), ("Types", "type_vocab_size"),
        ("Embedding", "embedding_size"), ("Classes", "num_labels"),
    ];

    /// <summary>The ε of every LayerNorm the generator emits (BERT's); config.json's layer_norm_eps must be it.</summary>
    public const double LayerNormEps = 1e-12;

    /// <summary>Our own key: the name of the compiled model (ModelInfo.Name) the checkpoint was saved from.</summary>
    public const string BertModelKey = "bert_model";

    public HfConfig(JsonObject json) => Json = json;

    public JsonObject Json { get; }

    public string? ModelType => Json["model_type"] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
    public string? BertModel => Json[BertModelKey] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    public IReadOnlyList<string> Architectures => Json["architectures"] is JsonArray a
        ? a.Select(x => x is JsonValue v && v.TryGetValue<string>(out var s) ? s : null).OfType<string>().ToArray()
        : [];

    /// <summary>An integer field; null when absent or null. A non-integer value is an error.</summary>
    public long? Get(string key, string source = "config.json")
    {
        var node = Json[key];
        if (node is null) return null;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number)
        {
            if (v.TryGetValue<long>(out var l)) return l;
            if (v.TryGetValue<double>(out var d) && d == Math.Floor(d) && Math.Abs(d) < 1e15) return (long)d;
        }
        throw new CheckpointException($"{source} has {key} = {node.ToJsonString()}, which is not an integer; fix that field or re-save the checkpoint.", source);
    }

    /// <summary>num_labels, or the size of id2label when only that is given (as transformers derives it).</summary>
    public long? NumLabels(string source = "config.json") =>
        Get("num_labels", source) ?? (Json["id2label"] is JsonObject o ? o.Count : null);

    /// <summary>The label names from id2label, in id order; null when absent.</summary>
    public IReadOnlyList<string>? Labels => Json["id2label"] is JsonObject o
        ? o.Select(kv => (Id: int.TryParse(kv.Key, out var i) ? i : int.MaxValue, Name: kv.Value?.ToString() ?? ""))
            .OrderBy(x => x.Id).Select(x => x.Name).ToArray()
        : null;

    /// <summary>The base-model prefix of the tensor names ("bert.", "albert."), or "" when the model has none.</summary>
    public static string BaseModelPrefix(ModelInfo info)
    {
        foreach (var p in info.Parameters)
        {
            int i = p.HfName.IndexOf("embeddings.word_embeddings.", StringComparison.Ordinal);
            if (i > 0 && p.HfName[i - 1] == '.' && p.HfName.LastIndexOf('.', i - 2) < 0) return p.HfName[..i];
        }
        return "";
    }

    /// <summary>"albert" for ALBERT-style models (an "albert." prefix or a factorized Embedding constant),
    /// "megatron-bert" for pre-LayerNorm BERT (a LayerNorm after the encoder, encoder.ln, as transformers'
    /// Megatron-BERT names it), else "bert".</summary>
    public static string ModelTypeOf(ModelInfo info)
    {
        string prefix = BaseModelPrefix(info);
        if (prefix == "albert." || (prefix == "" && info.Constants.ContainsKey("Embedding"))) return "albert";
        return Has(info, prefix + "encoder.ln.weight") ? "megatron-bert" : "bert";
    }

    /// <summary>The feed-forward activation as transformers' <c>hidden_act</c> names it, from the model's element-wise
    /// ops (their labels name the DSL functions: bias+Gelu, …): Gelu (erf) "gelu", GeluTanh "gelu_new", Swish "silu",
    /// Relu "relu"; "gelu" when none is used. The pooler's Tanh is not hidden_act in transformers and is not counted.</summary>
    public static string HiddenAct(ModelInfo info)
    {
        foreach (var op in info.Ops)
        {
            if (op.Kind != OpKind.Pointwise) continue;
            foreach (var part in op.Label.Split('+', '(', ')', ' ', ','))
                switch (part)
                {
                    case "GeluTanh": return "gelu_new";
                    case "Gelu": return "gelu";
                    case "Swish": return "silu";
                    case "Relu": return "relu";
                }
        }
        return "gelu";
    }

    /// <summary>transformers' activation names grouped by the function they compute (null: one we do not declare). GELU
    /// and its tanh approximation (gelu_new, as ALBERT's published checkpoints use) count as one function: they differ by
    /// less than 1e-3, and a checkpoint of one loads into a model of the other.</summary>
    static string? ActivationFunction(string hiddenAct) => hiddenAct switch
    {
        "gelu" or "gelu_python" or "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => "gelu",
        "silu" or "swish" => "silu",
        "relu" => "relu",
        _ => null,
    };

    static bool Has(ModelInfo info, string hfName) => info.Parameters.Any(p => p.HfName == hfName);

    /// <summary>Whether the model ends in a <c>classifier.*</c> head (sequence classification).</summary>
    public static bool IsClassifier(ModelInfo info) => Has(info, "classifier.weight");

    /// <summary>The transformers class that holds the same tensors: BertForPreTraining, BertForMaskedLM,
    /// BertForSequenceClassification, BertForTokenClassification (a classifier without a pooler), BertForQuestionAnswering, ...
    /// (Albert... and MegatronBert... for those model types).</summary>
    public static string ArchitectureOf(ModelInfo info)
    {
        string t = ModelTypeOf(info) switch { "albert" => "Albert", "megatron-bert" => "MegatronBert", _ => "Bert" };
        bool mlm = Has(info, "cls.predictions.bias"), nsp = Has(info, "cls.seq_relationship.weight");
        if (mlm && nsp) return t + "ForPreTraining";
        if (mlm) return t + "ForMaskedLM";
        if (nsp) return t + "ForNextSentencePrediction";
        if (Has(info, "qa_outputs.weight")) return t + "ForQuestionAnswering";
        if (IsClassifier(info))
        {
            string prefix = BaseModelPrefix(info);
            bool pooled = info.Parameters.Any(p => p.HfName.StartsWith(prefix + "pooler.", StringComparison.Ordinal));
            return t + (pooled ? "ForSequenceClassification" : "ForTokenClassification");
        }
        return t + "Model";
    }

    /// <summary>The config for a model: its constants under BertConfig's names, BERT's fixed hyper-parameters
    /// (GELU, dropout 0.1, LayerNorm ε 1e-12, initializer range 0.02) and, for classifiers, id2label/label2id
    /// (LABEL_0, LABEL_1, ... unless <paramref name="labels"/> names them).</summary>
    public static HfConfig FromModel(ModelInfo info, IReadOnlyList<string>? labels = null, string torchDtype = "float32")
    {
        var c = new SortedDictionary<string, JsonNode?>(StringComparer.Ordinal);
        string type = ModelTypeOf(info);
        c["architectures"] = new JsonArray(ArchitectureOf(info));
        c["model_type"] = type;
        c[BertModelKey] = info.Name;
        foreach (var (constant, key) in ConstantKeys)
            if (info.Constants.TryGetValue(constant, out var v)) c[key] = v;
        c["hidden_act"] = HiddenAct(info);
        c["hidden_dropout_prob"] = 0.1;
        c["attention_probs_dropout_prob"] = 0.1;
        c["initializer_range"] = 0.02;
        c["layer_norm_eps"] = LayerNormEps;
        c["pad_token_id"] = 0;
        c["position_embedding_type"] = "absolute";
        c["torch_dtype"] = torchDtype;
        if (type == "albert")
        {
            c["num_hidden_groups"] = 1;
            c["inner_group_num"] = 1;
            c["classifier_dropout_prob"] = 0.1;
        }
        if (IsClassifier(info) && info.Constants.TryGetValue("Classes", out var classes))
        {
            if (labels is not null && labels.Count != classes)
                throw new ArgumentException($"{info.Name} has {classes} classes but {labels.Count} label names were given.", nameof(labels));
            var id2label = new JsonObject();
            var label2id = new JsonObject();
            for (int i = 0; i < classes; i++)
            {
                string name = labels?[i] ?? $"LABEL_{i}";
                id2label[i.ToString()] = name;
                if (label2id.ContainsKey(name)) throw new ArgumentException($"Label '{name}' is given twice.", nameof(labels));
                label2id[name] = i;
            }
            c["id2label"] = id2label;
            c["label2id"] = label2id;
        }
        var json = new JsonObject();
        foreach (var (k, v) in c) json[k] = v;
        return new HfConfig(json);
    }

    /// <summary>Reads a config.json; a file that is not a JSON object gives a <see cref="CheckpointException"/>.</summary>
    public static HfConfig Read(string path)
    {
        string text;
        try { text = File.ReadAllText(path, Encoding.UTF8); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"Cannot read {path} ({e.Message.TrimEnd('.')}); check that the file is readable.", path, e);
        }
        return Parse(text, path);
    }

    public static HfConfig Parse(string json, string source = "config.json")
    {
        JsonNode? node;
        try { node = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = false }); }
        catch (JsonException e)
        {
            throw new CheckpointException($"{source} is not valid JSON ({e.Message.TrimEnd('.')}); restore config.json from where the checkpoint came from, or save the checkpoint again.", source, e);
        }
        if (node is not JsonObject o)
            throw new CheckpointException($"{source} is JSON but not an object; restore config.json from where the checkpoint came from, or save the checkpoint again.", source);
        return new HfConfig(o);
    }

    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public string ToJson() => Json.ToJsonString(Indented) + "\n";

    /// <summary>Writes the config atomically (temporary file, flush, move).</summary>
    public void Save(string path) => AtomicFile.Write(path, s => s.Write(Encoding.UTF8.GetBytes(ToJson())));

    /// <summary>Throws a <see cref="CheckpointException"/> when this config describes a model of another type or
    /// size than <paramref name="info"/>. num_labels is compared only when both are the same classifier
    /// architecture (a pre-training config's num_labels says nothing about a classifier's head). Loaded into a
    /// classifier, an id2label must name as many classes as num_labels says and be numbered 0 .. n-1 (it names the
    /// classes predict prints, whatever the saved architecture).</summary>
    public void Check(ModelInfo info, string source)
    {
        string ours = ModelTypeOf(info);
        string fix = BertModel is { } saved && saved != info.Name
            ? $"load it into the matching model ({saved}) or save a new checkpoint from {info.Name}"
            : "load it into the matching model or save a new checkpoint from this one";
        if (ModelType is { } mt && mt != ours)
            throw new CheckpointException($"{source} was saved from a {mt} model but this model ({info.Name}) is a {ours} model; {fix}.", source);
        if (Json["hidden_act"] is JsonValue act && act.TryGetValue<string>(out var hiddenAct) && ActivationFunction(hiddenAct) != ActivationFunction(HiddenAct(info)))
            throw new CheckpointException($"{source} was saved from a model with hidden_act \"{hiddenAct}\" but this model ({info.Name}) computes \"{HiddenAct(info)}\"; the weights would run through another function: {fix}.", source);
        // What transformers' BERT reads from the config beyond the sizes and that changes what the weights compute.
        if (Json["position_embedding_type"] is JsonValue pos && pos.TryGetValue<string>(out var positions) && positions != "absolute")
            throw new CheckpointException($"{source} was saved from a model with position_embedding_type \"{positions}\" (attention with relative-position terms) but this model ({info.Name}) has absolute position embeddings only; the weights would compute something else: {fix}.", source);
        if (Json["layer_norm_eps"] is JsonValue epsNode && epsNode.TryGetValue<double>(out double eps) && Math.Abs(eps - LayerNormEps) > 1e-3 * LayerNormEps)
            throw new CheckpointException($"{source} was saved from a model with layer_norm_eps {eps.ToString("R", System.Globalization.CultureInfo.InvariantCulture)} but this model's ({info.Name}) LayerNorms use {LayerNormEps.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}, BERT's; the normalization would differ: {fix}.", source);
        if (IsClassifier(info) && Json["problem_type"] is JsonValue problem && problem.TryGetValue<string>(out var problemType) && problemType != "single_label_classification")
            throw new CheckpointException($"{source} was saved from a {problemType.Replace('_', ' ')} model but this model ({info.Name}) picks one class of several (a softmax over the labels); its scores would be read wrongly: {fix}.", source);
        foreach (var (constant, key) in ConstantKeys)
        {
            if (!info.Constants.TryGetValue(constant, out var want)) continue;
            if (constant == "Classes" && !(IsClassifier(info) && Architectures.Contains(ArchitectureOf(info)))) continue;
            var have = constant == "Classes" ? NumLabels(source) : Get(key, source);
            if (have is { } h && h != want)
                throw new CheckpointException($"{source} was saved from a model with {key} {h} but this model ({info.Name}) has {want}; {fix}.", source);
        }
        if (IsClassifier(info) && Json["id2label"] is JsonObject map)
        {
            // transformers takes the class count from id2label (warning when num_labels disagrees); the names must cover 0 .. n-1.
            if (Get("num_labels", source) is { } count && count != map.Count)
                throw new CheckpointException($"{source} has num_labels {count} but its id2label names {map.Count} classes; make the two agree (or remove num_labels).", source);
            var ids = map.Select(kv => int.TryParse(kv.Key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id) ? id : -1).Order();
            if (!ids.SequenceEqual(Enumerable.Range(0, map.Count)))
                throw new CheckpointException($"{source}'s id2label keys ({string.Join(", ", map.Select(kv => kv.Key).Take(6))}{(map.Count > 6 ? ", …" : "")}) are not the class numbers 0 to {map.Count - 1}; number the classes from 0.", source);
        }
    }
}
