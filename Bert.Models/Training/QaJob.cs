using System.Globalization;
using Bert.Data;
using Bert.Runtime;
using Bert.Models;
using Bert.Text;

namespace Bert.Training;

/// <summary>A predicted answer: the text (a span of the context, or empty for "no answer"), where it starts in the
/// context (-1 for none), and its probability under the model (start × end over [CLS] and the context's positions, in
/// the window it was read from).</summary>
public readonly record struct QaAnswer(string Text, int Start, double Probability);

/// <summary>Extractive question answering (SQuAD), as BERT's run_squad.py and transformers' run_qa.py do it. Each
/// question and its context become one or more windows <c>[CLS] question [SEP] part of the context [SEP]</c> (question
/// at most <see cref="MaxQueryPieces"/> pieces; a long context in windows of what is left of --max-len, each starting
/// <c>stride</c> pieces after the last); the model gives every position a start and an end score, and the answer is the
/// best span of at most <see cref="MaxAnswerPieces"/> pieces inside the context, each position scored from the window
/// where it has the most context on both sides. A window without the answer (and an unanswerable question) is labeled
/// [CLS] for both, as SQuAD 2.0 training does; with unanswerable questions the empty answer wins when [CLS]'s score
/// beats the best span's. Answers are cut from the context at word boundaries (BERT's pre-tokens: whitespace and
/// punctuation), so the predicted text is the context's own characters.</summary>
public sealed class QuestionAnsweringJob
{
    public const int MaxQueryPieces = 64, MaxAnswerPieces = 30, Candidates = 20, DefaultStride = 128;

    /// <summary>The answer-span head's tensors (transformers' BertForQuestionAnswering names).</summary>
    public const string HeadPrefix = "qa_outputs.";

    /// <summary>A window of one question: its input, its labels (start and end position; 0 = [CLS]), where the context's
    /// pieces begin in it (<see cref="ContextAt"/>), which context piece it begins with (<see cref="From"/>) and how many
    /// it holds, and, per piece of it, whether this window gives that piece its most context.</summary>
    public sealed record Window(int Example, int[] Ids, int[] Types, int Start, int End, int ContextAt, int From, int Count, bool[] MaxContext);

    /// <summary>A context split for answering: its pre-tokens' character spans, its word pieces and each piece's pre-token.</summary>
    public sealed record Context(int[] Pieces, int[] PieceSpan, (int Start, int Length)[] Spans)
    {
        public static Context Of(WordPiece tok, string context)
        {
            var spans = BertPreTokenizer.Split(context);
            var pieces = new List<int>(); var of = new List<int>();
            for (int s = 0; s < spans.Count; s++)
                foreach (int id in tok.Encode(context.Substring(spans[s].Offset, spans[s].Length)))
                {
                    pieces.Add(id); of.Add(s);
                }
            return new Context(pieces.ToArray(), of.ToArray(), spans.ToArray());
        }

        /// <summary>The context pieces [first, last] an answer at characters [start, start + length) covers, or null when no
        /// piece lies in it.</summary>
        public (int First, int Last)? PiecesOf(int start, int length)
        {
            int end = start + Math.Max(1, length), first = -1, last = -1;
            for (int i = 0; i < Pieces.Length; i++)
            {
                var (off, len) = Spans[PieceSpan[i]];
                if (off + len <= start || off >= end) continue;
                if (first < 0) first = i;
                last = i;
            }
            return first < 0 ? null : (first, last);
        }

        /// <summary>The context's characters from the pre-token of piece <paramref name="first"/> to that of <paramref name="last"/>.</summary>
        public (string Text, int Start) Text(string context, int first, int last)
        {
            var a = Spans[PieceSpan[first]]; var b = Spans[PieceSpan[last]];
            return (context.Substring(a.Start, b.Start + b.Length - a.Start), a.Start);
        }
    }

    /// <summary>The windows of one question; <paramref name="unfound"/> is set when it has an answer that covers no piece
    /// of the context (an answer of spaces or of characters the tokenizer drops), which training then leaves out.</summary>
    public static List<Window> Windows(WordPiece tok, QaExample e, int example, Context c, int maxLen, int stride, out bool unfound)
    {
        var query = tok.Encode(e.Question);
        int queryRoom = Math.Min(MaxQueryPieces, (maxLen - 3) / 2);
        if (query.Length > queryRoom) query = query[..queryRoom];
        int room = maxLen - 3 - query.Length;
        (int First, int Last)? answer = null;
        unfound = false;
        if (!e.Impossible && e.Answers.Count > 0)
        {
            var (text, start) = e.Answers[0];
            answer = c.PiecesOf(start, text.Length);
            // As run_squad.py: an answer whose text is not the context's at its answer_start (spaces aside) is not trained on.
            unfound = answer is null || !SameWords(e.Context.Substring(start, text.Length), text);
        }
        var windows = new List<Window>();
        int n = c.Pieces.Length;
        // Each window starts at most `stride` pieces after the last (run_squad.py's doc_stride) and at most half a window, so
        // that consecutive windows overlap and an answer across one's edge lies whole in the next.
        int step = Math.Max(1, Math.Min(stride, room / 2));
        for (int from = 0; ; from += step)
        {
            int count = Math.Min(room, n - from), at = query.Length + 2;
            var ids = new int[at + count + 1]; var types = new int[ids.Length];
            ids[0] = tok.ClsId;
            query.CopyTo(ids, 1);
            ids[at - 1] = tok.SepId;
            Array.Copy(c.Pieces, from, ids, at, count);
            ids[^1] = tok.SepId;
            types.AsSpan(at).Fill(1);
            int start = 0, end = 0;
            if (answer is { } a && a.First >= from && a.Last < from + count) (start, end) = (at + a.First - from, at + a.Last - from);
            windows.Add(new Window(example, ids, types, start, end, at, from, count, new bool[count]));
            if (from + count >= n) break;
        }
        // A piece in several windows is read from the one where it has the most context on its shorter side.
        for (int i = 0; i < n; i++)
        {
            int best = -1; double bestScore = double.NegativeInfinity;
            for (int w = 0; w < windows.Count; w++)
            {
                var win = windows[w];
                if (i < win.From || i >= win.From + win.Count) continue;
                double score = Math.Min(i - win.From, win.From + win.Count - 1 - i) + 0.01 * win.Count;
                if (score > bestScore) { bestScore = score; best = w; }
            }
            if (best >= 0) windows[best].MaxContext[i - windows[best].From] = true;
        }
        return windows;
    }

    static bool SameWords(string a, string b) =>
        a.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).SequenceEqual(b.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries), StringComparer.Ordinal);

    readonly Model<float> _model;
    readonly WordPiece _tok;
    readonly List<Window> _train;
    readonly QaSet _dev;
    readonly int _batch, _perEpoch, _seed, _maxLen, _stride;
    int _epochCached = -1;
    List<Batch> _batches = [];
    Window[] _current = [];

    public QuestionAnsweringJob(Model<float> model, WordPiece tokenizer, QaSet train, QaSet dev, int maxLen, int stride, int batchSize, int seed)
    {
        _model = model; _tok = tokenizer; _batch = batchSize; _seed = seed; _maxLen = maxLen; _stride = stride; _dev = dev;
        FinetuneJob.CheckFits(model.Info, tokenizer, maxLen);
        CheckLengths(maxLen, stride);
        if (dev.Examples.Count == 0) throw new ArgumentException($"The dev set of {train.Name} has no questions; give more questions or a --dev file.");
        _train = [];
        var contexts = new Dictionary<string, Context>(StringComparer.Ordinal);
        for (int i = 0; i < train.Examples.Count; i++)
        {
            var e = train.Examples[i];
            var ws = Windows(tokenizer, e, i, ContextOf(tokenizer, e.Context, contexts), maxLen, stride, out bool unfound);
            if (unfound) { Unfound++; continue; }
            if (ws.Count > 1) Split++;
            _train.AddRange(ws);
        }
        if (_train.Count == 0) throw new ArgumentException($"No question of {train.Name} has an answer found in its context; check the answers' answer_start.");
        _perEpoch = (_train.Count + batchSize - 1) / batchSize;
        AllowEmpty = train.HasImpossible;
    }

    /// <summary>The window limits, checked: room for a question and some context, and a stride the windows can take.</summary>
    internal static void CheckLengths(int maxLen, int stride)
    {
        if (maxLen < 16) throw new ArgumentException($"--max-len {maxLen} leaves no room for a question and its context; give --max-len 64 or more (384 as BERT's SQuAD runs).");
        if (stride < 1) throw new ArgumentException($"--doc-stride {stride} is not a positive number of pieces; give e.g. --doc-stride 128.");
    }

    /// <summary>Training questions left out because their answer covers no piece of the context.</summary>
    public int Unfound { get; }
    /// <summary>Training questions whose context took more than one window.</summary>
    public int Split { get; }
    /// <summary>Training windows (the steps' unit).</summary>
    public int TrainWindows => _train.Count;
    public int StepsPerEpoch => _perEpoch;
    /// <summary>Whether the empty answer may be predicted: the training set has unanswerable questions (SQuAD 2.0).</summary>
    public bool AllowEmpty { get; }

    public int Bind(long index)
    {
        int e = (int)(index / _perEpoch);
        if (e != _epochCached) { _batches = Batching.ByLength(_train.Select(x => x.Ids.Length).ToList(), _batch, _seed * 7919 + e); _epochCached = e; }
        _current = _batches[(int)(index % _perEpoch)].Indices.Select(i => _train[i]).ToArray();
        return BindBatch(_model, _current, _tok.PadId, training: true, SeqMultiple);
    }

    /// <summary>Pads each training batch to a multiple of this many tokens (0: to its longest window), as
    /// <see cref="FinetuneJob.SeqMultiple"/>: fewer shapes, so CUDA graphs replay.</summary>
    public int SeqMultiple { get; set; }

    /// <summary>Pads to the longest window; labels [B, 2]: each window's start and end position.</summary>
    public static int BindBatch(Model<float> m, IReadOnlyList<Window> batch, int pad, bool training, int seqMultiple = 0)
    {
        int B = batch.Count, T = batch.Max(x => x.Ids.Length);
        if (seqMultiple > 0) T = Math.Min(m.Info.MaxLen, (T + seqMultiple - 1) / seqMultiple * seqMultiple);
        var ids = new int[B * T]; var types = new int[B * T]; var mask = new int[B * T]; var labels = new int[B * 2];
        if (pad != 0) Array.Fill(ids, pad);
        for (int b = 0; b < B; b++)
        {
            batch[b].Ids.CopyTo(ids, b * T); batch[b].Types.CopyTo(types, b * T);
            mask.AsSpan(b * T, batch[b].Ids.Length).Fill(1);
            labels[2 * b] = batch[b].Start; labels[2 * b + 1] = batch[b].End;
        }
        m.Bind(B, T, 0, training);
        m.SetInput("ids", ids); m.SetInput("types", types); m.SetInput("mask", mask); m.SetInput("labels", labels);
        return B * T;
    }

    /// <summary>The share of start and end positions the batch's windows get right (argmax over the positions).</summary>
    public IReadOnlyDictionary<string, double> Metrics()
    {
        var p = _model.Probabilities(0);
        int T = p.Length / (2 * _current.Length), right = 0;
        for (int b = 0; b < _current.Length; b++)
        {
            if (PretrainJob.ArgMax(p.Slice(2 * b * T, T)) == _current[b].Start) right++;
            if (PretrainJob.ArgMax(p.Slice((2 * b + 1) * T, T)) == _current[b].End) right++;
        }
        return new Dictionary<string, double> { ["acc"] = (double)right / (2 * _current.Length) };
    }

    public EvalReport Evaluate() => Evaluate(_model, _tok, _dev, _maxLen, _stride, AllowEmpty, _batch);

    /// <summary>SQuAD's exact match and F1 over a set (each question against its best gold answer; the F1 is the score),
    /// with, when it has unanswerable questions, the same for the answerable ones and the unanswerable ones apart; the
    /// loss is the mean over its windows.</summary>
    public static EvalReport Evaluate(Model<float> m, WordPiece tok, QaSet set, int maxLen, int stride, bool allowEmpty, int batch = 32)
    {
        var (answers, loss) = Answer(m, tok, set.Examples, maxLen, stride, allowEmpty, batch);
        double em = 0, f1 = 0, hasEm = 0, hasF1 = 0, noEm = 0;
        int has = 0, none = 0;
        for (int i = 0; i < set.Examples.Count; i++)
        {
            var (e, f) = Squad.Score(set.Examples[i], answers[i].Text);
            em += e; f1 += f;
            if (set.Examples[i].Impossible) { none++; noEm += e; }
            else { has++; hasEm += e; hasF1 += f; }
        }
        int n = set.Examples.Count;
        var metrics = new Dictionary<string, double> { ["exact"] = em / n, ["f1"] = f1 / n };
        if (none > 0 && has > 0)
        {
            metrics["has_ans_exact"] = hasEm / has; metrics["has_ans_f1"] = hasF1 / has; metrics["no_ans_exact"] = noEm / none;
        }
        return new EvalReport(loss, metrics, f1 / n);
    }

    /// <summary>Answers questions (dropout off, the windows in batches sorted by length).</summary>
    public static List<QaAnswer> Predict(Model<float> m, WordPiece tok, IReadOnlyList<QaExample> questions, int maxLen, int stride, bool allowEmpty, int batch = 32) =>
        Answer(m, tok, questions, maxLen, stride, allowEmpty, batch).Answers;

    static (List<QaAnswer> Answers, double Loss) Answer(Model<float> m, WordPiece tok, IReadOnlyList<QaExample> questions, int maxLen, int stride, bool allowEmpty, int batch)
    {
        var contexts = new Context[questions.Count];
        var windows = new List<Window>();
        var seen = new Dictionary<string, Context>(StringComparer.Ordinal);
        for (int i = 0; i < questions.Count; i++)
        {
            contexts[i] = ContextOf(tok, questions[i].Context, seen);
            windows.AddRange(Windows(tok, questions[i], i, contexts[i], maxLen, stride, out _));
        }
        // Per question: the best span over its windows, and the lowest [CLS] score (the window that most believes an answer is there).
        var best = new (double Score, int First, int Last)[questions.Count];
        var empty = new double[questions.Count];
        Array.Fill(best, (double.NegativeInfinity, -1, -1));
        Array.Fill(empty, double.PositiveInfinity);
        double loss = 0;
        var order = Enumerable.Range(0, windows.Count).OrderBy(i => windows[i].Ids.Length).ToArray();
        double[] logStart = [], logEnd = [];
        foreach (var chunk in order.Chunk(batch))
        {
            var items = chunk.Select(i => windows[i]).ToArray();
            BindBatch(m, items, tok.PadId, training: false);
            loss += m.Forward(training: false)[0] * items.Length;
            var p = m.Probabilities(0);
            int T = p.Length / (2 * items.Length);
            if (logStart.Length < T) (logStart, logEnd) = (new double[T], new double[T]);
            for (int b = 0; b < items.Length; b++)
            {
                var w = items[b];
                var ps = p.Slice(2 * b * T, T); var pe = p.Slice((2 * b + 1) * T, T);
                // The scores as probabilities over [CLS] and the context alone (the question, the separators and the padding
                // taken out), so that windows of one question compare whatever else shared their batch.
                double zs = ps[0], ze = pe[0];
                for (int t = w.ContextAt; t < w.ContextAt + w.Count; t++) { zs += ps[t]; ze += pe[t]; }
                for (int t = 0; t < T; t++) { logStart[t] = Math.Log(ps[t] / zs); logEnd[t] = Math.Log(pe[t] / ze); }
                empty[w.Example] = Math.Min(empty[w.Example], logStart[0] + logEnd[0]);
                var starts = Top(logStart, w.ContextAt, w.Count); var ends = Top(logEnd, w.ContextAt, w.Count);
                foreach (int s in starts)
                {
                    if (!w.MaxContext[s - w.ContextAt]) continue;
                    foreach (int e in ends)
                    {
                        if (e < s || e - s + 1 > MaxAnswerPieces) continue;
                        double score = logStart[s] + logEnd[e];
                        if (score > best[w.Example].Score) best[w.Example] = (score, w.From + s - w.ContextAt, w.From + e - w.ContextAt);
                    }
                }
            }
        }
        var answers = new List<QaAnswer>(questions.Count);
        for (int i = 0; i < questions.Count; i++)
        {
            var (score, first, last) = best[i];
            if (first < 0 || (allowEmpty && empty[i] > score))
                answers.Add(new QaAnswer("", -1, double.IsPositiveInfinity(empty[i]) ? 0 : Math.Exp(empty[i])));
            else
            {
                var (text, start) = contexts[i].Text(questions[i].Context, first, last);
                answers.Add(new QaAnswer(text, start, Math.Exp(score)));
            }
        }
        return (answers, windows.Count == 0 ? 0 : loss / windows.Count);
    }

    /// <summary>A context split once for all its questions (SQuAD asks about five of each).</summary>
    static Context ContextOf(WordPiece tok, string context, Dictionary<string, Context> seen)
    {
        if (!seen.TryGetValue(context, out var c)) seen[context] = c = Context.Of(tok, context);
        return c;
    }

    /// <summary>The positions of the <see cref="Candidates"/> highest scores among the context's <paramref name="count"/>
    /// positions from <paramref name="at"/> (best first).</summary>
    static int[] Top(double[] scores, int at, int count) =>
        Enumerable.Range(at, count).OrderByDescending(t => scores[t]).ThenBy(t => t).Take(Candidates).ToArray();

    internal static string Format(double v) => v.ToString("F3", CultureInfo.InvariantCulture);
}
