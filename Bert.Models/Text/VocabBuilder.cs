using System.Text;

namespace Bert.Text;

/// <summary>A vocabulary built by <see cref="VocabBuilder"/>.</summary>
/// <param name="Tokens">The tokens in id order: specials 0–4, characters, continuation characters, merges.</param>
/// <param name="Settings">The normalization it was built under, with <see cref="SpecialTokenIds.Compact"/> recorded.</param>
/// <param name="Characters">How many distinct characters (code points) passed the frequency threshold.</param>
/// <param name="Exhausted">True when the corpus ran out of pairs seen at least minFrequency times before the
/// requested size was reached; <see cref="Tokens"/> is then shorter than asked.</param>
public sealed record BuiltVocab(IReadOnlyList<string> Tokens, TokenizerSettings Settings, int Characters, bool Exhausted)
{
    /// <summary>A tokenizer over this vocabulary with its settings.</summary>
    public WordPiece ToTokenizer() => new(Tokens, Settings, "built vocabulary");
}

/// <summary>Builds a WordPiece vocabulary of a chosen size from a corpus.
/// <para>Layout (one scheme, whatever the size): [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4
/// (<see cref="SpecialTokenIds.Compact"/>, recorded in the settings; the tokenizer reads the ids from the file
/// anyway); then every character (Unicode code point) seen at least <c>minFrequency</c> times in words, most
/// frequent first; then the same characters with the <c>##</c> continuation prefix; then merged pieces in the
/// order they were learnt.</para>
/// <para>Merges are BPE over word pieces, as Hugging Face's WordPiece trainer does: every word starts as its
/// characters (<c>c ##a ##f ##e</c>), and the adjacent pair with the highest corpus count (ties: the merged string
/// in ordinal order, then the pair) is merged, until the vocabulary has the size asked or no pair is seen
/// <c>minFrequency</c> times. A merge whose string already exists is applied but adds no entry. Words containing a
/// character below the threshold, or longer than <see cref="TokenizerSettings.MaxWordChars"/>, take no part:
/// the tokenizer maps them to [UNK] whole.</para>
/// <para>Words come from the same pipeline the tokenizer uses (<see cref="WordPiece.Words"/>), so case and
/// accents are kept or folded per <see cref="TokenizerSettings"/>. Because every kept character is in the
/// vocabulary in both forms, greedy longest-match can always finish a word: joining a word's pieces gives the
/// word back.</para>
/// <para>Cost: counting is one pass over the corpus; each merge touches only the words that contain the merged pair
/// (an index from pair to words plus a lazily updated priority queue), so a 1 MB corpus builds in seconds.</para></summary>
public static class VocabBuilder
{
    /// <summary>Builds a vocabulary of <paramref name="vocabSize"/> entries (fewer when the corpus is
    /// <see cref="BuiltVocab.Exhausted"/>) from corpus lines.</summary>
    public static BuiltVocab Build(IEnumerable<string> lines, int vocabSize, TokenizerSettings settings, int minFrequency = 2)
    {
        if (minFrequency < 1) throw new ArgumentOutOfRangeException(nameof(minFrequency), minFrequency, "minFrequency must be at least 1.");
        var text = WordPiece.TextFor(settings);

        // 1. Word counts.
        var wordCounts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string line in lines)
            foreach (string word in text.Words(line))
                wordCounts[word] = wordCounts.GetValueOrDefault(word) + 1;

        // 2. Character counts (code points), over words short enough to be tokenized at all.
        var charCounts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (word, count) in wordCounts)
        {
            if (WordPiece.CharCount(word) > settings.MaxWordChars) continue;
            foreach (Rune r in word.EnumerateRunes())
            {
                string c = r.ToString();
                charCounts[c] = charCounts.GetValueOrDefault(c) + count;
            }
        }
        var chars = charCounts.Where(kv => kv.Value >= minFrequency)
            .OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => kv.Key).ToList();

        var vocab = new List<string>(WordPiece.SpecialTokens);
        var seen = new HashSet<string>(vocab, StringComparer.Ordinal);
        int needed = vocab.Count + 2 * chars.Count;
        if (vocabSize < needed)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), vocabSize,
                $"A vocabulary of {vocabSize} cannot hold the 5 special tokens and the {chars.Count} characters seen at least {minFrequency} times, with and without '##' ({needed} entries); ask for at least {needed} entries (--size), or raise the minimum frequency (--min-frequency).");
        foreach (string c in chars) if (seen.Add(c)) vocab.Add(c);
        foreach (string c in chars) if (seen.Add("##" + c)) vocab.Add("##" + c);

        // 3. Words as symbol sequences (kept characters only).
        var kept = new HashSet<string>(chars, StringComparer.Ordinal);
        var merger = new Merger();
        foreach (var (word, count) in wordCounts.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (WordPiece.CharCount(word) > settings.MaxWordChars) continue;
            var symbols = new List<int>();
            bool ok = true;
            foreach (Rune r in word.EnumerateRunes())
            {
                string c = r.ToString();
                if (!kept.Contains(c)) { ok = false; break; }
                symbols.Add(merger.Intern(symbols.Count == 0 ? c : "##" + c));
            }
            if (ok) merger.AddWord(symbols.ToArray(), count);
        }

        // 4. Merges.
        bool exhausted = false;
        while (vocab.Count < vocabSize)
        {
            string? merged = merger.MergeBest(minFrequency);
            if (merged is null) { exhausted = true; break; }
            if (seen.Add(merged)) vocab.Add(merged);
        }
        return new BuiltVocab(vocab, settings with { SpecialIds = SpecialTokenIds.Compact }, chars.Count, exhausted);
    }

    /// <summary>BPE merge state: unique words as symbol-id arrays with counts, pair counts, pair → words index,
    /// and a priority queue whose stale entries are skipped when popped.</summary>
    sealed class Merger
    {
        readonly List<string> _symbols = [];
        readonly Dictionary<string, int> _symbolIds = new(StringComparer.Ordinal);
        readonly List<int[]> _words = [];
        readonly List<long> _counts = [];
        readonly Dictionary<long, long> _pairCounts = [];
        readonly Dictionary<long, HashSet<int>> _pairWords = [];
        readonly PriorityQueue<long, (long Count, string Merged, long Pair)> _queue = new(new Order());

        public int Intern(string symbol)
        {
            if (!_symbolIds.TryGetValue(symbol, out int id))
            {
                id = _symbols.Count;
                _symbols.Add(symbol);
                _symbolIds.Add(symbol, id);
            }
            return id;
        }

        public void AddWord(int[] symbols, long count)
        {
            int w = _words.Count;
            _words.Add(symbols);
            _counts.Add(count);
            for (int i = 0; i + 1 < symbols.Length; i++)
            {
                long pair = Pair(symbols[i], symbols[i + 1]);
                _pairCounts[pair] = _pairCounts.GetValueOrDefault(pair) + count;
                Where(pair).Add(w);
            }
            _primed = false;
        }

        bool _primed;

        /// <summary>Merges the best pair and returns the merged string, or null when no pair reaches
        /// <paramref name="minFrequency"/>.</summary>
        public string? MergeBest(int minFrequency)
        {
            if (!_primed)
            {
                foreach (var (pair, count) in _pairCounts) Push(pair, count);
                _primed = true;
            }
            while (_queue.TryDequeue(out long pair, out var priority))
            {
                if (_pairCounts.GetValueOrDefault(pair) != priority.Count) continue; // stale
                if (priority.Count < minFrequency) return null;
                Apply(pair, priority.Merged);
                return priority.Merged;
            }
            return null;
        }

        void Apply(long pair, string merged)
        {
            int a = (int)(pair >> 32), b = (int)(pair & 0xFFFFFFFF);
            int c = Intern(merged);
            var delta = new Dictionary<long, long>();
            foreach (int w in _pairWords[pair])
            {
                int[] old = _words[w];
                long n = _counts[w];
                var next = new List<int>(old.Length);
                bool changed = false;
                for (int i = 0; i < old.Length; i++)
                {
                    if (i + 1 < old.Length && old[i] == a && old[i + 1] == b)
                    {
                        next.Add(c);
                        i++;
                        changed = true;
                    }
                    else next.Add(old[i]);
                }
                if (!changed) continue;
                for (int i = 0; i + 1 < old.Length; i++) Add(delta, Pair(old[i], old[i + 1]), -n);
                for (int i = 0; i + 1 < next.Count; i++)
                {
                    long p = Pair(next[i], next[i + 1]);
                    Add(delta, p, n);
                    if (next[i] == c || next[i + 1] == c) Where(p).Add(w);
                }
                _words[w] = next.ToArray();
            }
            _pairWords.Remove(pair);
            foreach (var (p, d) in delta)
            {
                if (d == 0) continue;
                long count = _pairCounts.GetValueOrDefault(p) + d;
                if (count <= 0)
                {
                    _pairCounts.Remove(p);
                    _pairWords.Remove(p);
                }
                else
                {
                    _pairCounts[p] = count;
                    Push(p, count);
                }
            }
        }

        void Push(long pair, long count)
        {
            int a = (int)(pair >> 32), b = (int)(pair & 0xFFFFFFFF);
            string right = _symbols[b];
            string merged = _symbols[a] + (right.StartsWith("##", StringComparison.Ordinal) ? right[2..] : right);
            _queue.Enqueue(pair, (count, merged, pair));
        }

        HashSet<int> Where(long pair)
        {
            if (!_pairWords.TryGetValue(pair, out var set)) _pairWords[pair] = set = [];
            return set;
        }

        static void Add(Dictionary<long, long> d, long key, long v) => d[key] = d.GetValueOrDefault(key) + v;

        static long Pair(int a, int b) => ((long)a << 32) | (uint)b;

        /// <summary>Highest count first; ties by merged string (ordinal), then by pair, so the result never
        /// depends on hashing or insertion order.</summary>
        sealed class Order : IComparer<(long Count, string Merged, long Pair)>
        {
            public int Compare((long Count, string Merged, long Pair) x, (long Count, string Merged, long Pair) y)
            {
                int c = y.Count.CompareTo(x.Count);
                if (c != 0) return c;
                c = string.CompareOrdinal(x.Merged, y.Merged);
                return c != 0 ? c : x.Pair.CompareTo(y.Pair);
            }
        }
    }
}
