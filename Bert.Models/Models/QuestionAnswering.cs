using Bert.Dsl;
using static Bert.Dsl.Ops;

namespace Bert.Models;

/// <summary>Extractive question answering (SQuAD), as transformers' BertForQuestionAnswering: the encoder, then a start and
/// an end score at every position (<c>qa_outputs</c>, no dropout before it), and the loss is the cross-entropy of the start
/// over the positions plus that of the end, halved: Transpose turns the [B, T, 2] scores into B·2 rows of T positions,
/// which CrossEntropy averages. <c>labels</c> holds each sequence's start and end position (0, [CLS], for no answer).</summary>
[Model]
public partial class BertQuestionAnswering : BertArchitecture
{
    [Stack(1, Hf = "bert.embeddings.")] Embeddings embeddings;
    [Stack(Layers, Hf = "bert.encoder.layer.{i}.")] Layer layers;
    [Stack(1, Hf = "qa_outputs.")] Output qa;

    public Tensor Forward(Tokens ids, Tokens types, Mask mask, [Shape(Dim.Batch, 2)] Labels labels)
    {
        var x = layers.Forward(embeddings.Forward(ids, types), mask);
        return CrossEntropy(Transpose(qa.Forward(x)), labels);
    }
}

// Classes = 2 (start, end) comes from BertArchitecture; the sizes are the pre-training models'.
[Model] public partial class BertNanoQuestionAnswering : BertQuestionAnswering { public new const int Hidden = 32, Layers = 2, Heads = 4, MaxLen = 64; }
[Model] public partial class BertMiniQuestionAnswering : BertQuestionAnswering { public new const int Hidden = 256, Layers = 4, Heads = 4; }
[Model] public partial class BertSmallQuestionAnswering : BertQuestionAnswering { public new const int Hidden = 512, Layers = 4, Heads = 8; }
[Model] public partial class BertBaseQuestionAnswering : BertQuestionAnswering { public new const int Hidden = 768, Layers = 12, Heads = 12; }
[Model] public partial class BertLargeQuestionAnswering : BertQuestionAnswering { public new const int Hidden = 1024, Layers = 24, Heads = 16; }
