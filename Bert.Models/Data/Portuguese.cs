using System.Text.RegularExpressions;
using Bert.Text;

namespace Bert.Data;

/// <summary>The embedded Portuguese data (origins and quirks: <c>Resources/ATTRIBUTION.md</c> and
/// <c>shared/data/SOURCES.md</c>): the ten novels of Machado de Assis as a pre-training corpus, 2000 Amazon Brasil
/// book reviews (2 classes) and the UMSAB/TweetSentBR tweets (3 classes), and the tokenizer settings a
/// Portuguese vocabulary needs (case and accents kept: "é" and "e" are different words).</summary>
public static partial class Portuguese
{
    /// <summary>The default size of the Portuguese vocabulary (the <c>Vocab</c> of the <c>BertMiniPt*</c> models).
    /// Built from <see cref="VocabLines"/>, 8000 entries cut the novels' words into 1.17 pieces on average and the
    /// validation tweets' into 1.38 (12000: 1.11 and 1.30; 16000: 1.08 and 1.25); at BERT-Mini's width the MLM head
    /// (C·V) then stays smaller than the encoder, which keeps a two-core pre-training run cheap.</summary>
    public const int VocabSize = Models.BertMiniPtPreTraining.Vocab;

    /// <summary>Case and accents kept (<see cref="TokenizerSettings.Cased"/>).</summary>
    public static TokenizerSettings Settings => TokenizerSettings.Cased;

    /// <summary>The ten novels, in alphabetical order of their file names.</summary>
    public static IReadOnlyList<DataFile> Novels { get; } =
    [
        DataFile.MachadoCasaVelha, DataFile.MachadoDomCasmurro, DataFile.MachadoEsau, DataFile.MachadoHelena, DataFile.MachadoIaia,
        DataFile.MachadoMaoLuva, DataFile.MachadoMemorialDeAires, DataFile.MachadoMemoriasBras, DataFile.MachadoQuincas, DataFile.MachadoRessurreicao,
    ];

    // ---- the corpus ------------------------------------------------------------------------------------------

    /// <summary>Documents of sentences from all ten novels, novel by novel (see <see cref="NovelDocuments"/>).</summary>
    public static List<List<string>> MachadoDocuments() =>
        Novels.SelectMany(n => NovelDocuments(DefaultData.ReadText(n))).ToList();

    /// <summary>Every sentence of the ten novels, one a line: the text <c>bert vocab</c> learns the Portuguese
    /// vocabulary from.</summary>
    public static IEnumerable<string> MachadoSentences() => MachadoDocuments().SelectMany(d => d);

    /// <summary>One novel's text (the layout of <c>luxedo/dataset-machado-de-assis</c>) as documents of sentences.
    /// <list type="bullet">
    /// <item>Line 1 (the title) is dropped. A <c>CAPÍTULO …</c> line starts a new document and is dropped, with
    /// the chapter-title line after it when that line has no lower-case letter. In Memorial de Aires, a diary, a
    /// date line (<c>9 de janeiro</c>, <c>6 de fevereiro, à noite</c>) starts a new document instead and is
    /// dropped, as are its year lines (<c>1888</c>). Text before the first chapter (advertências, prologues) is a
    /// document of its own.</item>
    /// <item>Headings are dropped: lines of capitals, digits and spaces only (<c>ADVERTÊNCIA</c>, <c>PRÓLOGO DA 3ª
    /// EDIÇÃO</c>), and the closing <c>FIM</c>/<c>Fim</c>.</item>
    /// <item>The hard-wrapped PDF lines are joined into paragraphs (<see cref="Paragraphs"/>), and each
    /// paragraph is split with <see cref="Pretraining.SplitSentences"/>.</item>
    /// </list></summary>
    public static List<List<string>> NovelDocuments(string text)
    {
        var lines = TextSource.Lines(text).Select(l => l.Line).Skip(1).ToList();
        var docs = new List<List<string>>();
        var chunk = new List<string>();
        void Flush()
        {
            var doc = Paragraphs(chunk).SelectMany(Pretraining.SplitSentences).ToList();
            if (doc.Count > 0) docs.Add(doc);
            chunk.Clear();
        }
        for (int i = 0; i < lines.Count; i++)
        {
            string line = lines[i].Trim();
            if (line.Length == 0) continue;
            if (line.StartsWith("CAPÍTULO", StringComparison.Ordinal))
            {
                Flush();
                if (i + 1 < lines.Count && IsTitleLine(lines[i + 1])) i++;
                continue;
            }
            if (DiaryDate().IsMatch(line) || Year().IsMatch(line))
            {
                Flush();
                continue;
            }
            if (IsHeading(line) || (line is "FIM" or "Fim" && lines.Skip(i + 1).All(string.IsNullOrWhiteSpace))) continue;
            chunk.Add(line);
        }
        Flush();
        return docs;
    }

    /// <summary>Joins hard-wrapped lines into paragraphs. Lines are joined with a space, except after a line that
    /// ends in a hyphen after a letter (<c>casar-</c> + <c>se</c> → <c>casar-se</c>: the PDFs never hyphenate at
    /// the wrap, so such a hyphen is part of the word). A paragraph ends after a line that ends a sentence
    /// (<c>. ! ? … :</c>, possibly followed by closing quotes) when the next line opens a dialogue turn
    /// (<c>— </c>) or when the line is short (under 70 % of the median line length: the last line of a
    /// paragraph).</summary>
    public static List<string> Paragraphs(IReadOnlyList<string> lines)
    {
        var paragraphs = new List<string>();
        if (lines.Count == 0) return paragraphs;
        var lengths = lines.Select(l => l.Length).Order().ToList();
        double shortLine = 0.7 * lengths[lengths.Count / 2];
        var current = new System.Text.StringBuilder();
        for (int i = 0; i < lines.Count; i++)
        {
            string line = lines[i].Trim();
            if (line.Length == 0) continue;
            if (current.Length > 0)
            {
                bool hyphen = current.Length >= 2 && current[^1] == '-' && char.IsLetter(current[^2]);
                if (!hyphen) current.Append(' ');
            }
            current.Append(line);
            bool last = i + 1 == lines.Count;
            bool endsSentence = EndsSentence(line);
            bool nextIsDialogue = !last && lines[i + 1].TrimStart().StartsWith('—');
            if (last || (endsSentence && (nextIsDialogue || line.Length < shortLine)))
            {
                paragraphs.Add(current.ToString());
                current.Clear();
            }
        }
        return paragraphs;
    }

    static bool EndsSentence(string line)
    {
        int k = line.Length - 1;
        while (k >= 0 && line[k] is '"' or '\'' or '”' or '’' or '»' or ')') k--;
        return k >= 0 && line[k] is '.' or '!' or '?' or '…' or ':';
    }

    static bool IsTitleLine(string line)
    {
        string t = line.Trim();
        return t.Length > 0 && t.Any(char.IsLetter) && !t.Any(char.IsLower);
    }

    static bool IsHeading(string line) => line.Any(char.IsLetter) && line.All(c => char.IsUpper(c) || char.IsDigit(c) || c is ' ' or 'ª' or 'º');

    [GeneratedRegex(@"^\d{1,2} de (janeiro|fevereiro|março|abril|maio|junho|julho|agosto|setembro|outubro|novembro|dezembro)(,.{0,40})?$")]
    private static partial Regex DiaryDate();

    [GeneratedRegex(@"^1[89]\d\d$")]
    private static partial Regex Year();

    // ---- labeled sets ----------------------------------------------------------------------------------------

    /// <summary>The book reviews as one 2-class set (0 negative, 1 positive) with what was skipped: one empty
    /// review (971 of the negative file) and 32 repeats (30 negative, 2 positive reviews posted twice, once with a
    /// trailing space), which would otherwise land on both sides of a train/dev split. 1967 reviews remain.</summary>
    public static BookReviewSet BookReviews() =>
        ParseBookReviews(DefaultData.ReadText(DataFile.BooksPtNeg), DefaultData.ReadText(DataFile.BooksPtPos));

    /// <summary>Parses the two review files (one review a line, CRLF or LF; the last line needs no line break):
    /// label 0 for <paramref name="negative"/>, 1 for <paramref name="positive"/>, negatives first. A tab inside a
    /// review becomes a space and the text is trimmed; empty reviews, and reviews whose text repeats an earlier
    /// one, are skipped and counted.</summary>
    public static BookReviewSet ParseBookReviews(string negative, string positive)
    {
        var examples = new List<(string, int)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        int empty = 0, repeated = 0;
        foreach (var (text, label) in new[] { (negative, 0), (positive, 1) })
            foreach (var (_, line) in TextSource.Lines(text))
            {
                string review = line.Replace('\t', ' ').Trim();
                if (review.Length == 0) { empty++; continue; }
                if (!seen.Add(review)) { repeated++; continue; }
                examples.Add((review, label));
            }
        if (examples.Count == 0)
            throw new DataException("The book reviews hold no text; point to the books_pt_neg and books_pt_pos files.", "books_pt");
        return new BookReviewSet(new LabeledSet("pt-reviews", examples, 2), empty, repeated);
    }

    /// <summary>The tweets' train (1839) and validation (324) sets, 3 classes: 0 negative, 1 neutral, 2 positive.
    /// The files list the labels in strict round-robin order; the sets keep the file order, so shuffle before
    /// batching (the fine-tuning job does).</summary>
    public static (LabeledSet Train, LabeledSet Val) Tweets() =>
        (ParseTweets(DefaultData.ReadText(DataFile.TweetsPtTrainText), DefaultData.ReadText(DataFile.TweetsPtTrainLabels), "pt-tweets-train"),
         ParseTweets(DefaultData.ReadText(DataFile.TweetsPtValText), DefaultData.ReadText(DataFile.TweetsPtValLabels), "pt-tweets-val"));

    /// <summary>Pairs a text file (one tweet a line) with its label file (one label a line, 0–2); the files need
    /// not end with a line break, but must have as many lines as each other.</summary>
    public static LabeledSet ParseTweets(string texts, string labels, string name)
    {
        var t = TextSource.Lines(texts).Select(l => l.Line).ToList();
        var l = TextSource.Lines(labels).ToList();
        if (t.Count != l.Count)
            throw new DataException($"{name} has {t.Count} tweets but {l.Count} labels; give the text and label files of the same split.", name);
        var examples = new List<(string, int)>(t.Count);
        for (int i = 0; i < t.Count; i++)
        {
            if (!int.TryParse(l[i].Line.Trim(), out int label) || label is < 0 or > 2)
                throw new DataException($"{name} label line {l[i].Number} is '{l[i].Line}', not 0 (negative), 1 (neutral) or 2 (positive).", name, l[i].Number);
            string text = t[i].Trim();
            if (text.Length == 0)
                throw new DataException($"{name} tweet {i + 1} is empty; every tweet needs text.", name, i + 1);
            examples.Add((text, label));
        }
        return new LabeledSet(name, examples, 3);
    }

    // ---- vocabulary --------------------------------------------------------------------------------------------

    /// <summary>The lines a Portuguese vocabulary is learnt from: the novels' sentences and, with
    /// <paramref name="taskText"/>, the training texts of the reviews (the fixed split's train half) and of the
    /// tweets, without labels (their emoji, <c>@user</c> and hashtags then get pieces of their own). Dev and
    /// validation texts are never included.</summary>
    public static IEnumerable<string> VocabLines(bool taskText)
    {
        foreach (var s in MachadoSentences()) yield return s;
        if (!taskText) yield break;
        var (reviewsTrain, _) = Labeled.Split(BookReviews().Set, ReviewsDevFraction, ReviewsSplitSeed);
        foreach (var (text, _) in reviewsTrain.Examples) yield return text;
        foreach (var (text, _) in Tweets().Train.Examples) yield return text;
    }

    /// <summary>The fixed stratified split of the reviews that <c>pt-reviews</c> uses (the same as the English sets').</summary>
    public const double ReviewsDevFraction = 0.2;
    public const int ReviewsSplitSeed = 13;

    /// <summary>Builds the Portuguese vocabulary (cased, accents kept, specials at 0–4) from
    /// <see cref="VocabLines"/>.</summary>
    public static BuiltVocab BuildVocab(int size = VocabSize, bool taskText = true, int minFrequency = 2) =>
        VocabBuilder.Build(VocabLines(taskText), size, Settings, minFrequency);
}

/// <summary>The book reviews and what <see cref="Portuguese.ParseBookReviews"/> skipped.</summary>
/// <param name="Set">The reviews, 2 classes.</param>
/// <param name="Empty">Empty (or all-whitespace) reviews skipped.</param>
/// <param name="Repeated">Reviews skipped because their trimmed text repeats an earlier review.</param>
public sealed record BookReviewSet(LabeledSet Set, int Empty, int Repeated);
