using System.Text;
using Bert.Text;

namespace Bert.Data;

/// <summary>Knobs of BERT's <c>create_pretraining_data.py</c>, with its defaults.</summary>
public sealed record PretrainingOptions
{
    /// <summary>T of a pair, [CLS] and both [SEP]s included.</summary>
    public int MaxSeqLength { get; init; } = 128;

    /// <summary>The shortest <see cref="MaxSeqLength"/>: [CLS], [SEP], [SEP] and one piece per segment.</summary>
    public const int MinSeqLength = 5;

    /// <summary>Probability that a document chunk aims at a random shorter length (2 .. T-3) instead of T-3, so
    /// the model also sees short inputs (BERT's short_seq_prob).</summary>
    public double ShortSeqProb { get; init; } = 0.1;

    /// <summary>Probability that segment B comes from another document (BERT's 0.5); chunks of a single sentence
    /// always take a random B, so the observed share is a little higher.</summary>
    public double RandomNextProb { get; init; } = 0.5;

    /// <summary>How many times each document is paired up, each time with other random draws (BERT's dupe_factor).</summary>
    public int DupeFactor { get; init; } = 1;

    /// <summary>Share of the maskable tokens chosen for prediction (BERT's masked_lm_prob).</summary>
    public double MaskedLmProb { get; init; } = 0.15;

    /// <summary>Cap on predictions per sequence (BERT's max_predictions_per_seq).</summary>
    public int MaxPredictionsPerSeq { get; init; } = 20;

    /// <summary>Mask every piece of a word together: a <c>##</c> piece is never chosen apart from its word.</summary>
    public bool WholeWordMask { get; init; }

    /// <summary>Train the next-sentence head (BERT). Off gives the masked-LM objective alone, as RoBERTa found
    /// better (Liu et al. 2019): every pair is then a real continuation and its next-sentence label is ignored
    /// (-100), so the loss is the masked LM's only.</summary>
    public bool NextSentence { get; init; } = true;
}

/// <summary>A segment pair before masking: <c>[CLS] A [SEP] B [SEP]</c> as ids, with type ids 0 for
/// <c>[CLS] A [SEP]</c> and 1 for <c>B [SEP]</c>. Masks are drawn per epoch by <see cref="Masker.Mask"/>.</summary>
public sealed record PretrainingInstance(int[] Tokens, int[] TypeIds, bool IsRandomNext);

/// <summary>A masked pair ready for the model: InputIds (T) with the chosen positions replaced, the positions in
/// ascending order, the original ids there (the MLM labels), and the next-sentence label: 1 when B is a random
/// segment, 0 when it really follows A (BERT's and Hugging Face's convention).</summary>
public sealed record MaskedInstance(int[] InputIds, int[] TypeIds, int[] MaskedPositions, int[] MaskedLabels, int NspLabel);

/// <summary>BERT's <c>create_pretraining_data.py</c>: documents → sentences → segment pairs for next-sentence
/// prediction; see <see cref="Masker"/> for the masked-LM half. Everything is a deterministic function of the seed
/// (<see cref="Random"/>(seed) draws in a fixed order).</summary>
public static class Pretraining
{
    // ---- documents and sentences -----------------------------------------------------------------------------

    /// <summary>Splits text into sentences with a simple rule: a sentence ends after a run of <c>. ! ?</c> (and any
    /// closing quotes or brackets right after it) when whitespace follows and the next word starts with an
    /// upper-case letter (an opening quote or bracket before it is allowed, and a dialogue dash <c>— </c>), or at
    /// the end of the text. It does not
    /// end after a known abbreviation (Mr. Mrs. Dr. St. No. …), a single capital letter (initials such as
    /// "J. Smith") or dotted letters ("U.S. Army"). Whitespace inside a sentence is collapsed to single spaces.
    /// Good enough for pairing segments; it is not a linguistic sentence splitter ("Resolved. resolved." stays one
    /// sentence, and a sentence ending in an abbreviation runs on into the next).</summary>
    public static List<string> SplitSentences(string text)
    {
        var sentences = new List<string>();
        int start = 0;
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] is not ('.' or '!' or '?')) continue;
            int j = i;
            while (j + 1 < text.Length && (text[j + 1] is '.' or '!' or '?' || IsCloser(text[j + 1]))) j++;
            int k = j + 1;
            if (k < text.Length && !char.IsWhiteSpace(text[k])) { i = j; continue; }
            while (k < text.Length && char.IsWhiteSpace(text[k])) k++;
            int next = k;
            while (next < text.Length && IsOpener(text[next])) next++;
            if (next < text.Length && text[next] is '—' or '–')   // a dialogue dash opens the next turn: "— Não."
            {
                next++;
                while (next < text.Length && (char.IsWhiteSpace(text[next]) || IsOpener(text[next]))) next++;
            }
            bool boundary = k >= text.Length || (next < text.Length && char.IsUpper(text[next]) && !IsAbbreviation(text, i));
            if (boundary)
            {
                AddSentence(sentences, text.AsSpan(start, j + 1 - start));
                start = k;
            }
            i = j;
        }
        if (start < text.Length) AddSentence(sentences, text.AsSpan(start));
        return sentences;
    }

    /// <summary>Documents separated by blank lines (Google's input format). Within a document the lines are
    /// joined with spaces and split with <see cref="SplitSentences"/>; with <paramref name="lineIsSentence"/>
    /// every non-blank line is one sentence as it stands. A run of lines over <see cref="MaxDocumentChars"/> without a
    /// blank one is cut into documents at line breaks.</summary>
    public static List<List<string>> ParagraphDocuments(string text, bool lineIsSentence = false) =>
        ParagraphDocuments(TextSource.Lines(text).Select(l => l.Line), lineIsSentence).ToList();

    /// <summary>The longest document <see cref="ParagraphDocuments(IEnumerable{string}, bool)"/> makes, in characters
    /// (1 Mi, a few hundred pairs of T = 128): a longer run of lines without a blank one is cut into documents of about
    /// this size at line breaks, so that a file without blank lines is not one string too long to hold.</summary>
    public const int MaxDocumentChars = 1 << 20;

    /// <summary>The same over lines as they come (<see cref="TextSource.ReadLines"/>: a file of any size); a run of
    /// lines over <see cref="MaxDocumentChars"/> is cut at a line break.</summary>
    public static IEnumerable<List<string>> ParagraphDocuments(IEnumerable<string> lines, bool lineIsSentence = false)
    {
        var held = new List<string>();
        long chars = 0;
        foreach (var line in lines)
        {
            if (string.IsNullOrWhiteSpace(line))
            {
                if (Document(held, lineIsSentence) is { } doc) yield return doc;
                chars = 0;
                continue;
            }
            if (chars > 0 && chars + line.Length > MaxDocumentChars)
            {
                if (Document(held, lineIsSentence) is { } cut) yield return cut;
                chars = 0;
            }
            held.Add(line);
            chars += line.Length + 1;
        }
        if (Document(held, lineIsSentence) is { } last) yield return last;
    }

    /// <summary>Documents of records (a JSON-lines corpus's texts, <see cref="TextSource.JsonTexts"/>): each record one
    /// document, its lines joined and split into sentences as a paragraph's are (blank lines inside a record only separate
    /// its paragraphs); a record over <see cref="MaxDocumentChars"/> is cut at line breaks, and one without a sentence
    /// gives no document.</summary>
    public static IEnumerable<List<string>> RecordDocuments(IEnumerable<string> records, bool lineIsSentence = false) =>
        ParagraphDocuments(records.SelectMany(r => TextSource.Lines(r).Select(l => l.Line).Where(l => !string.IsNullOrWhiteSpace(l)).Append("")), lineIsSentence);

    /// <summary>The document of the lines held (then cleared); null when they give no sentence.</summary>
    static List<string>? Document(List<string> lines, bool lineIsSentence)
    {
        if (lines.Count == 0) return null;
        var doc = lineIsSentence ? lines.Select(l => l.Trim()).ToList() : SplitSentences(string.Join(' ', lines));
        lines.Clear();
        return doc.Count > 0 ? doc : null;
    }

    /// <summary>Tiny Shakespeare: speeches are blank-line separated, each a speaker line ("First Citizen:") and its
    /// verse. The speaker line is a sentence of its own; the verse is joined and split into sentences. Consecutive
    /// speeches are grouped into documents of at least <paramref name="linesPerDocument"/> lines (a speech is never
    /// cut; the last document may be shorter), so a document is a stretch of one scene.</summary>
    public static List<List<string>> ShakespeareDocuments(string text, int linesPerDocument = 60)
    {
        if (linesPerDocument < 1) throw new ArgumentOutOfRangeException(nameof(linesPerDocument), linesPerDocument, "A document needs at least one line.");
        var docs = new List<List<string>>();
        var doc = new List<string>();
        var speech = new List<string>();
        int docLines = 0;
        void EndSpeech()
        {
            if (speech.Count == 0) return;
            doc.Add(speech[0].Trim());
            doc.AddRange(SplitSentences(string.Join(' ', speech.Skip(1))));
            docLines += speech.Count;
            speech.Clear();
            if (docLines >= linesPerDocument) EndDocument();
        }
        void EndDocument()
        {
            if (doc.Count > 0) docs.Add(doc);
            doc = [];
            docLines = 0;
        }
        foreach (var (_, line) in TextSource.Lines(text))
        {
            if (string.IsNullOrWhiteSpace(line)) EndSpeech();
            else speech.Add(line);
        }
        EndSpeech();
        EndDocument();
        return docs;
    }

    /// <summary>WikiText (raw): a title line <c> = Title = </c> starts a document; section headings
    /// (<c> = = Section = = </c>) are dropped; every other line is a paragraph, split into sentences. The
    /// tokenization artifacts <c> @-@ </c>, <c> @,@ </c>, <c> @.@ </c> are joined back ("well @-@ known" →
    /// "well-known", "1 @.@ 5" → "1.5"). Text before the first title, if any, is a document too.</summary>
    public static List<List<string>> WikiTextDocuments(string text)
    {
        var docs = new List<List<string>>();
        var doc = new List<string>();
        foreach (var (_, raw) in TextSource.Lines(text))
        {
            string line = raw.Trim();
            if (line.Length == 0) continue;
            if (line.StartsWith("= ", StringComparison.Ordinal) && line.EndsWith(" =", StringComparison.Ordinal) && line.Length > 3)
            {
                if (!line.StartsWith("= =", StringComparison.Ordinal))
                {
                    if (doc.Count > 0) docs.Add(doc);
                    doc = [];
                }
                continue;
            }
            line = line.Replace(" @-@ ", "-").Replace(" @,@ ", ",").Replace(" @.@ ", ".");
            doc.AddRange(SplitSentences(line));
        }
        if (doc.Count > 0) docs.Add(doc);
        return docs;
    }

    /// <summary>Encodes every sentence; sentences that give no ids and documents left empty are dropped.</summary>
    public static List<List<int[]>> Tokenize(IEnumerable<IReadOnlyList<string>> documents, WordPiece tokenizer)
    {
        var docs = new List<List<int[]>>();
        foreach (var doc in documents)
        {
            var encoded = doc.Select(tokenizer.Encode).Where(ids => ids.Length > 0).ToList();
            if (encoded.Count > 0) docs.Add(encoded);
        }
        return docs;
    }

    // ---- segment pairs ---------------------------------------------------------------------------------------

    /// <summary>Tokenizes documents (on every core, as they come: see <see cref="TokenizedCorpus.Tokenize"/>) and makes
    /// segment pairs; see <see cref="CreateInstances(TokenizedCorpus, int, int, PretrainingOptions, int)"/>.</summary>
    public static PretrainingInstances CreateInstances(IEnumerable<IReadOnlyList<string>> documents, WordPiece tokenizer, PretrainingOptions options, int seed) =>
        CreateInstances(TokenizedCorpus.Tokenize(documents, tokenizer), tokenizer.ClsId, tokenizer.SepId, options, seed);

    /// <summary>Segment pairs of tokenized documents; see the corpus overload.</summary>
    /// <param name="documents">Documents as lists of tokenized sentences (no specials); empty ones are left out.</param>
    public static PretrainingInstances CreateInstances(IReadOnlyList<IReadOnlyList<int[]>> documents, int clsId, int sepId, PretrainingOptions options, int seed)
    {
        int vocab = 1 + Math.Max(Math.Max(clsId, sepId), documents.SelectMany(d => d).SelectMany(s => s).DefaultIfEmpty(0).Max());
        return CreateInstances(TokenizedCorpus.From(documents, vocab), clsId, sepId, options, seed);
    }

    /// <summary>BERT's <c>create_instances_from_document</c> over every document, <see cref="PretrainingOptions.DupeFactor"/>
    /// times: the documents are shuffled; each is cut into chunks of sentences up to a target length (T-3, or with
    /// probability ShortSeqProb a random length in 2..T-3); a chunk's first 1..n-1 sentences are A; B is the rest of
    /// the chunk, or (probability RandomNextProb, and always for a one-sentence chunk) sentences from a random start
    /// in another document, in which case the unused sentences of the chunk go back to be reused. The pair is then
    /// truncated to T-3 pieces by dropping, from the longer segment, its first or last piece at random. The
    /// instances come back shuffled. Each pair is kept as two ranges of the corpus's pieces (24 bytes), not as ids.</summary>
    public static PretrainingInstances CreateInstances(TokenizedCorpus corpus, int clsId, int sepId, PretrainingOptions options, int seed)
    {
        if (options.MaxSeqLength < PretrainingOptions.MinSeqLength)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxSeqLength, $"MaxSeqLength must be at least {PretrainingOptions.MinSeqLength}: [CLS], [SEP], [SEP] and one piece per segment.");
        if (options.MaxSeqLength - 3 > ushort.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxSeqLength, $"MaxSeqLength must be at most {ushort.MaxValue + 3}.");
        var rng = new Random(seed);
        var pairs = new List<PairSpans>();
        for (int dupe = 0; dupe < options.DupeFactor; dupe++)
        {
            var order = Enumerable.Range(0, corpus.Documents).ToArray();
            Labeled.Shuffle(order, rng);
            for (int d = 0; d < order.Length; d++)
                FromDocument(corpus, order, d, options, rng, pairs);
        }
        Labeled.Shuffle(pairs, rng);
        return new PretrainingInstances(corpus, pairs, clsId, sepId);
    }

    /// <summary>The pairs of document <c>order[d]</c>, drawing from <paramref name="rng"/> in BERT's order. A chunk's
    /// sentences are contiguous pieces, so A is one range and B another (the rest of the chunk, or a run of a random
    /// document's sentences); truncation only moves a range's ends.</summary>
    static void FromDocument(TokenizedCorpus corpus, int[] order, int d, PretrainingOptions o, Random rng, List<PairSpans> output)
    {
        int doc = order[d], sentences = corpus.SentenceCount(doc);
        int maxTokens = o.MaxSeqLength - 3;
        int target = rng.NextDouble() < o.ShortSeqProb ? rng.Next(2, maxTokens + 1) : maxTokens;
        int first = 0, count = 0;
        long chunkLength = 0;
        int i = 0;
        while (i < sentences)
        {
            if (count == 0) first = i;
            count++;
            chunkLength += corpus.SentenceLength(doc, i);
            if (i == sentences - 1 || chunkLength >= target)
            {
                int aEnd = count >= 2 ? rng.Next(1, count) : 1;
                long aStart = corpus.SentenceStart(doc, first);
                long aLength = End(corpus, doc, first + aEnd - 1) - aStart;
                long bStart, bLength;
                bool randomNext = count == 1 || (o.NextSentence && rng.NextDouble() < o.RandomNextProb);
                if (randomNext)
                {
                    long targetB = target - aLength;
                    int other = d;
                    for (int tries = 0; tries < 10 && other == d; tries++) other = rng.Next(order.Length);
                    int randomDoc = order[other], last = corpus.SentenceCount(randomDoc);
                    int j = rng.Next(last);
                    bStart = corpus.SentenceStart(randomDoc, j);
                    bLength = 0;
                    for (; j < last; j++)
                    {
                        bLength += corpus.SentenceLength(randomDoc, j);
                        if (bLength >= targetB) break;
                    }
                    i -= count - aEnd; // put the unused sentences back
                }
                else
                {
                    bStart = corpus.SentenceStart(doc, first + aEnd);
                    bLength = End(corpus, doc, first + count - 1) - bStart;
                }
                TruncatePair(ref aStart, ref aLength, ref bStart, ref bLength, maxTokens, rng);
                output.Add(new PairSpans(aStart, bStart, (ushort)aLength, (ushort)bLength, randomNext));
                count = 0;
                chunkLength = 0;
                // Like BERT, each new chunk keeps the target drawn for the document.
            }
            i++;
        }
    }

    static long End(TokenizedCorpus corpus, int doc, int j) => corpus.SentenceStart(doc, j) + corpus.SentenceLength(doc, j);

    /// <summary>BERT's pretraining <c>truncate_seq_pair</c>: while too long, drop the first or the last piece
    /// (a fair coin) of the longer segment (of B on a tie).</summary>
    static void TruncatePair(ref long aStart, ref long aLength, ref long bStart, ref long bLength, int maxTokens, Random rng)
    {
        while (aLength + bLength > maxTokens)
        {
            bool front = rng.NextDouble() < 0.5;
            if (aLength > bLength) { if (front) aStart++; aLength--; }
            else { if (front) bStart++; bLength--; }
        }
    }

    static bool IsCloser(char c) => c is '"' or '\'' or ')' or ']' or '”' or '’' or '»';

    static bool IsOpener(char c) => c is '"' or '\'' or '(' or '[' or '“' or '‘' or '«';

    static readonly HashSet<string> Abbreviations = new(StringComparer.OrdinalIgnoreCase)
    {
        "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "rev", "gen", "col", "lt", "capt", "sgt", "mt", "no", "vs",
        "etc", "e.g", "i.e", "cf", "fig", "vol", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
        "oct", "nov", "dec", "inc", "ltd", "co", "sra", "dra", "srs", "sras", "exa", "exmo", "exma",
    };

    /// <summary>True when the word right before the period at <paramref name="dot"/> is a known abbreviation, a
    /// single capital letter (an initial) or dotted letters ("U.S", "e.g").</summary>
    static bool IsAbbreviation(string text, int dot)
    {
        if (text[dot] != '.') return false;
        int s = dot;
        while (s > 0 && (char.IsLetter(text[s - 1]) || text[s - 1] == '.')) s--;
        if (s == dot) return false;
        string word = text[s..dot];
        return (word.Length == 1 && char.IsUpper(word[0])) || word.Contains('.') || Abbreviations.Contains(word);
    }

    static void AddSentence(List<string> sentences, ReadOnlySpan<char> span)
    {
        var sb = new StringBuilder(span.Length);
        bool space = false;
        foreach (char c in span.Trim())
        {
            if (char.IsWhiteSpace(c)) { space = true; continue; }
            if (space && sb.Length > 0) sb.Append(' ');
            space = false;
            sb.Append(c);
        }
        if (sb.Length > 0) sentences.Add(sb.ToString());
    }
}

/// <summary>BERT's <c>create_masked_lm_predictions</c>, drawn anew for each epoch. Candidates are all tokens
/// except the special ones ([CLS], [SEP], [PAD], [MASK]); with whole-word masking a <c>##</c> piece joins the
/// candidate of the piece right before it. Candidates are shuffled and taken until
/// <c>min(MaxPredictionsPerSeq, max(1, round(MaskedLmProb × maskable)))</c> positions are chosen (a word that
/// would overshoot is skipped). Each chosen position becomes [MASK] with probability 0.8, a random token with 0.1,
/// and stays itself with 0.1.
/// <para>Two small departures from Google's script, both documented here: the count is taken over the maskable
/// tokens (Google multiplies the whole length, specials included, so it picks slightly more than 15%), and the
/// random replacement is drawn uniformly from the vocabulary minus the five special tokens (Google can insert
/// [PAD], [CLS] or [SEP] there). A <c>##</c> piece at the very start of a segment (cut by truncation) is a word of
/// its own, never glued to the word before the [SEP].</para></summary>
public sealed class Masker
{
    /// <summary>Share of the chosen positions replaced by [MASK]; half the rest get a random token.</summary>
    public const double MaskShare = 0.8;

    readonly int _vocabSize;
    readonly SpecialTokenIds _ids;
    readonly int[] _excluded;
    readonly bool[] _continuation;
    readonly PretrainingOptions _options;

    public Masker(WordPiece tokenizer, PretrainingOptions options)
        : this(tokenizer.VocabSize, tokenizer.Ids, tokenizer.IsContinuation, options) { }

    /// <param name="isContinuation">Whether an id is a <c>##</c> piece (used by whole-word masking).</param>
    public Masker(int vocabSize, SpecialTokenIds ids, Func<int, bool> isContinuation, PretrainingOptions options)
    {
        if (!(options.MaskedLmProb > 0 && options.MaskedLmProb <= 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.MaskedLmProb, "MaskedLmProb must be in (0, 1].");
        if (options.MaxPredictionsPerSeq < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxPredictionsPerSeq, "MaxPredictionsPerSeq must be at least 1.");
        _vocabSize = vocabSize;
        _ids = ids;
        _excluded = new[] { ids.Pad, ids.Unk, ids.Cls, ids.Sep, ids.Mask }.Distinct().Order().ToArray();
        if (vocabSize <= _excluded.Length)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize, "The vocabulary needs tokens besides the special ones.");
        _continuation = new bool[vocabSize];
        for (int id = 0; id < vocabSize; id++) _continuation[id] = isContinuation(id);
        _options = options;
    }

    /// <summary>True for the ids that are never chosen for prediction.</summary>
    public bool IsSpecial(int id) => id == _ids.Cls || id == _ids.Sep || id == _ids.Pad || id == _ids.Mask;

    /// <summary>Masks one instance. Call it once per epoch with the epoch's generator.</summary>
    public MaskedInstance Mask(PretrainingInstance instance, Random rng)
    {
        int[] tokens = instance.Tokens;
        var candidates = new List<List<int>>();
        int maskable = 0;
        for (int i = 0; i < tokens.Length; i++)
        {
            if (IsSpecial(tokens[i])) continue;
            maskable++;
            bool joins = _options.WholeWordMask && _continuation[tokens[i]] && candidates.Count > 0 && candidates[^1][^1] == i - 1;
            if (joins) candidates[^1].Add(i);
            else candidates.Add([i]);
        }
        Labeled.Shuffle(candidates, rng);
        // Python's round() (BERT's script) rounds halves to even.
        int toPredict = maskable == 0 ? 0
            : Math.Min(_options.MaxPredictionsPerSeq, Math.Max(1, (int)Math.Round(maskable * _options.MaskedLmProb, MidpointRounding.ToEven)));

        int[] input = (int[])tokens.Clone();
        var chosen = new List<int>(toPredict);
        foreach (var word in candidates)
        {
            if (chosen.Count >= toPredict) break;
            if (chosen.Count + word.Count > toPredict) continue;
            foreach (int p in word)
            {
                chosen.Add(p);
                if (rng.NextDouble() < MaskShare) input[p] = _ids.Mask;
                else if (rng.NextDouble() < 0.5) input[p] = RandomToken(rng);
                // else: unchanged
            }
        }
        chosen.Sort();
        var labels = chosen.Select(p => tokens[p]).ToArray();
        return new MaskedInstance(input, (int[])instance.TypeIds.Clone(), chosen.ToArray(), labels, !_options.NextSentence ? Bert.Runtime.Kernels.CrossEntropy.DefaultIgnoreIndex : instance.IsRandomNext ? 1 : 0);
    }

    /// <summary>A uniform draw over the vocabulary minus the special ids.</summary>
    int RandomToken(Random rng)
    {
        int r = rng.Next(_vocabSize - _excluded.Length);
        foreach (int s in _excluded)
            if (r >= s) r++;
        return r;
    }
}
