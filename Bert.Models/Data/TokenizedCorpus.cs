using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using System.IO.Hashing;
using System.Numerics;
using System.Runtime.InteropServices;
using Bert.Text;

namespace Bert.Data;

/// <summary>Tokenized documents stored flat, for corpora of any size: every piece in order in arrays of 16 Mi pieces
/// (two bytes a piece when the vocabulary has at most 65 536 entries, four otherwise), each sentence a run of them, each
/// document a run of sentences. Empty sentences and documents are never stored. A document's sentences are contiguous,
/// so any run of its sentences, cut at either end, is one range of pieces: what a pre-training pair's segment is.</summary>
public sealed class TokenizedCorpus
{
    const int ChunkBits = 24, ChunkSize = 1 << ChunkBits, ChunkMask = ChunkSize - 1;

    readonly List<ushort[]>? _narrow;
    readonly List<int[]>? _wide;
    readonly List<long> _sentenceStarts = [0];   // sentence s is [starts[s], starts[s + 1])
    readonly List<int> _documentStarts = [0];    // document d holds sentences [docs[d], docs[d + 1])

    /// <param name="vocabSize">The vocabulary's size: every id stored must be below it.</param>
    public TokenizedCorpus(int vocabSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(vocabSize);
        VocabSize = vocabSize;
        if (vocabSize <= ushort.MaxValue + 1) _narrow = [];
        else _wide = [];
    }

    public int VocabSize { get; }

    /// <summary>Pieces stored, over all documents.</summary>
    public long Pieces { get; private set; }

    public int Documents => _documentStarts.Count - 1;

    public int Sentences => _sentenceStarts.Count - 1;

    /// <summary>Bytes held by the pieces and the two indexes.</summary>
    public long Bytes => ((_narrow?.Count ?? 0) * 2L + (_wide?.Count ?? 0) * 4L) * ChunkSize + _sentenceStarts.Capacity * 8L + _documentStarts.Capacity * 4L;

    /// <summary>How many sentences document <paramref name="d"/> has (at least one).</summary>
    public int SentenceCount(int d) => _documentStarts[d + 1] - _documentStarts[d];

    /// <summary>Where sentence <paramref name="j"/> of document <paramref name="d"/> starts, as a position among all pieces.</summary>
    public long SentenceStart(int d, int j) => _sentenceStarts[_documentStarts[d] + j];

    /// <summary>Pieces in sentence <paramref name="j"/> of document <paramref name="d"/> (at least one).</summary>
    public int SentenceLength(int d, int j)
    {
        int s = _documentStarts[d] + j;
        return (int)(_sentenceStarts[s + 1] - _sentenceStarts[s]);
    }

    /// <summary>Appends a document; its empty sentences are left out, and a document left with none is not added.
    /// Returns whether it was added. An id outside the vocabulary throws before anything is stored.</summary>
    public bool Add(IEnumerable<int[]> sentences)
    {
        var list = sentences as IReadOnlyList<int[]> ?? sentences.ToList();
        foreach (var sentence in list)
            foreach (int id in sentence)
                if ((uint)id >= (uint)VocabSize)
                    throw new ArgumentOutOfRangeException(nameof(sentences), id, $"Id {id} is outside the vocabulary of {VocabSize}.");
        int before = _sentenceStarts.Count;
        foreach (var sentence in list)
        {
            if (sentence.Length == 0) continue;
            Append(sentence);
            _sentenceStarts.Add(Pieces);
        }
        if (_sentenceStarts.Count == before) return false;
        _documentStarts.Add(_sentenceStarts.Count - 1);
        return true;
    }

    void Append(ReadOnlySpan<int> ids)
    {
        while (ids.Length > 0)
        {
            int at = (int)(Pieces & ChunkMask);
            if (at == 0)
            {
                if (_narrow is not null) _narrow.Add(new ushort[ChunkSize]);
                else _wide!.Add(new int[ChunkSize]);
            }
            int n = Math.Min(ids.Length, ChunkSize - at);
            int chunk = (int)(Pieces >> ChunkBits);
            if (_narrow is not null)
            {
                var dst = _narrow[chunk].AsSpan(at, n);
                for (int i = 0; i < n; i++) dst[i] = (ushort)ids[i];
            }
            else ids[..n].CopyTo(_wide![chunk].AsSpan(at, n));
            ids = ids[n..];
            Pieces += n;
        }
    }

    /// <summary>Copies the pieces from <paramref name="start"/> on into <paramref name="destination"/> (its length many).</summary>
    public void CopyTo(long start, Span<int> destination)
    {
        if (start < 0 || start + destination.Length > Pieces)
            throw new ArgumentOutOfRangeException(nameof(start), start, $"Pieces {start}..{start + destination.Length} are outside the corpus's {Pieces}.");
        while (destination.Length > 0)
        {
            int at = (int)(start & ChunkMask), chunk = (int)(start >> ChunkBits);
            int n = Math.Min(destination.Length, ChunkSize - at);
            if (_narrow is not null)
            {
                var src = _narrow[chunk].AsSpan(at, n);
                for (int i = 0; i < n; i++) destination[i] = src[i];
            }
            else _wide![chunk].AsSpan(at, n).CopyTo(destination);
            destination = destination[n..];
            start += n;
        }
    }

    /// <summary>The pieces of sentence <paramref name="j"/> of document <paramref name="d"/>.</summary>
    public int[] Sentence(int d, int j)
    {
        var ids = new int[SentenceLength(d, j)];
        CopyTo(SentenceStart(d, j), ids);
        return ids;
    }

    /// <summary>Stores already tokenized documents (the tests' and the tools' way in).</summary>
    public static TokenizedCorpus From(IEnumerable<IReadOnlyList<int[]>> documents, int vocabSize)
    {
        var corpus = new TokenizedCorpus(vocabSize);
        foreach (var d in documents) corpus.Add(d);
        corpus.Trim();
        return corpus;
    }

    /// <summary>Tokenizes documents as they come, a block of them at a time on every core, and stores them in order: the
    /// text is never held whole, so a streamed corpus costs its pieces (two bytes each) and not its text. The documents
    /// are read (the file, its decompression, JSON, sentence splitting: whatever enumerating them does) on a thread of
    /// their own, at most two blocks ahead, while the block before is tokenized, so that on many cores reading is not left
    /// to wait for. The same documents give the same corpus whatever the number of cores. An exception from reading comes
    /// out of this method as it was thrown. <paramref name="progress"/>, when given, hears the count of documents and
    /// pieces stored after each block (on the calling thread).</summary>
    /// <param name="blockChars">How many characters of text a block gathers before it is tokenized (4 Mi: about 1 Mi
    /// pieces of English).</param>
    public static TokenizedCorpus Tokenize(IEnumerable<IReadOnlyList<string>> documents, WordPiece tokenizer, Action<int, long>? progress = null, int blockChars = 4 << 20)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockChars);
        var corpus = new TokenizedCorpus(tokenizer.VocabSize);
        using var blocks = new BlockingCollection<List<IReadOnlyList<string>>>(boundedCapacity: 2);
        using var stop = new CancellationTokenSource();
        ExceptionDispatchInfo? failure = null;
        var reader = new Thread(() =>
        {
            try
            {
                var block = new List<IReadOnlyList<string>>();
                long chars = 0;
                foreach (var doc in documents)
                {
                    block.Add(doc);
                    foreach (var s in doc) chars += s.Length;
                    if (chars < blockChars) continue;
                    blocks.Add(block, stop.Token);
                    block = [];
                    chars = 0;
                }
                if (block.Count > 0) blocks.Add(block, stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested) { }
            catch (Exception e) { failure = ExceptionDispatchInfo.Capture(e); }
            finally { blocks.CompleteAdding(); }
        }) { IsBackground = true, Name = "corpus reader" };
        reader.Start();
        try
        {
            foreach (var block in blocks.GetConsumingEnumerable())
            {
                if (failure is not null) break;
                // One task per sentence; sentences are independent, and each keeps its place.
                var sentences = new List<string>();
                var firsts = new int[block.Count + 1];
                for (int i = 0; i < block.Count; i++) { firsts[i] = sentences.Count; sentences.AddRange(block[i]); }
                firsts[block.Count] = sentences.Count;
                var ids = new int[sentences.Count][];
                Parallel.For(0, sentences.Count, s => ids[s] = tokenizer.Encode(sentences[s]));
                for (int i = 0; i < block.Count; i++) corpus.Add(new ArraySegment<int[]>(ids, firsts[i], firsts[i + 1] - firsts[i]));
                progress?.Invoke(corpus.Documents, corpus.Pieces);
            }
        }
        finally
        {
            stop.Cancel();   // a failure here: the reader stops at its next block
            reader.Join();
        }
        failure?.Throw();
        corpus.Trim();
        return corpus;
    }

    // The file form (CorpusCache): a header, each document's sentence count, each sentence's length, the pieces as stored
    // (two or four bytes each), then the XxHash3 of all before it, all little-endian. Nothing in it is trusted on reading:
    // the length must be exactly what the header's counts make, the counts must add up, every id must be in the vocabulary
    // and the checksum must match (a file cut short or zeroed by a crash, or bits flipped on the disk).
    static ReadOnlySpan<byte> Magic => "BERTCRP1"u8;
    const int HeaderBytes = 8 + 32 + 4 + 4 + 4 + 8;

    /// <summary>Writes the corpus to <paramref name="stream"/>, stamped with <paramref name="key"/> (32 bytes: what it was
    /// made from), for <see cref="Read"/>.</summary>
    public void Write(Stream stream, ReadOnlySpan<byte> key)
    {
        if (key.Length != 32) throw new ArgumentException("The key is 32 bytes (a SHA-256).", nameof(key));
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("The corpus file is written on little-endian machines only.");
        Span<byte> header = stackalloc byte[HeaderBytes];
        Magic.CopyTo(header);
        key.CopyTo(header[8..]);
        BinaryPrimitives.WriteInt32LittleEndian(header[40..], VocabSize);
        BinaryPrimitives.WriteInt32LittleEndian(header[44..], Documents);
        BinaryPrimitives.WriteInt32LittleEndian(header[48..], Sentences);
        BinaryPrimitives.WriteInt64LittleEndian(header[52..], Pieces);
        var hash = new XxHash3();
        void Put(ReadOnlySpan<byte> bytes) { stream.Write(bytes); hash.Append(bytes); }
        Put(header);
        var counts = new int[Math.Min(Math.Max(Documents, Sentences), 1 << 20)];
        void Runs(int n, Func<int, int> value)
        {
            for (long at = 0; at < n; at += counts.Length)
            {
                int m = (int)Math.Min(counts.Length, n - at);
                for (int i = 0; i < m; i++) counts[i] = value((int)(at + i));
                Put(MemoryMarshal.AsBytes(counts.AsSpan(0, m)));
            }
        }
        Runs(Documents, d => _documentStarts[d + 1] - _documentStarts[d]);
        Runs(Sentences, s => (int)(_sentenceStarts[s + 1] - _sentenceStarts[s]));
        for (long at = 0; at < Pieces; at += ChunkSize)
        {
            int n = (int)Math.Min(ChunkSize, Pieces - at), chunk = (int)(at >> ChunkBits);
            if (_narrow is not null) Put(MemoryMarshal.AsBytes(_narrow[chunk].AsSpan(0, n)));
            else Put(MemoryMarshal.AsBytes(_wide![chunk].AsSpan(0, n)));
        }
        Span<byte> sum = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(sum, hash.GetCurrentHashAsUInt64());
        stream.Write(sum);
    }

    /// <summary>Reads a corpus <see cref="Write"/> wrote with this <paramref name="key"/> for a vocabulary of
    /// <paramref name="vocabSize"/>; null, with the reason in <paramref name="problem"/>, when the stream holds anything
    /// else: another key, another vocabulary's size, a cut or padded file, counts that do not add up, an id outside the
    /// vocabulary, a checksum that does not match.</summary>
    public static TokenizedCorpus? Read(Stream stream, ReadOnlySpan<byte> key, int vocabSize, out string? problem)
    {
        if (!BitConverter.IsLittleEndian) { problem = "this machine is not little-endian"; return null; }
        Span<byte> header = stackalloc byte[HeaderBytes];
        if (stream.Length < HeaderBytes || stream.ReadAtLeast(header, HeaderBytes, throwOnEndOfStream: false) < HeaderBytes || !header[..8].SequenceEqual(Magic))
        { problem = "it is not a tokenized corpus"; return null; }
        if (!header.Slice(8, 32).SequenceEqual(key)) { problem = "it was made from these files as they were before, or by another build"; return null; }
        int vocab = BinaryPrimitives.ReadInt32LittleEndian(header[40..]), documents = BinaryPrimitives.ReadInt32LittleEndian(header[44..]),
            sentences = BinaryPrimitives.ReadInt32LittleEndian(header[48..]);
        long pieces = BinaryPrimitives.ReadInt64LittleEndian(header[52..]);
        if (vocab != vocabSize) { problem = $"it holds ids of a vocabulary of {vocab}, not {vocabSize}"; return null; }
        var corpus = new TokenizedCorpus(vocabSize);
        int width = corpus._narrow is not null ? 2 : 4;
        if (documents < 0 || sentences < documents || pieces < sentences || stream.Length != HeaderBytes + 4L * documents + 4L * sentences + width * pieces + 8)
        { problem = "its length is not what its counts make (a cut or damaged file)"; return null; }

        var hash = new XxHash3();
        hash.Append(header);
        void Take(Span<byte> bytes) { stream.ReadExactly(bytes); hash.Append(bytes); }
        var counts = new int[Math.Min(Math.Max(documents, sentences), 1 << 20)];
        problem = null;
        bool Runs(int n, Func<int, bool> take)
        {
            for (long at = 0; at < n; at += counts.Length)
            {
                int m = (int)Math.Min(counts.Length, n - at);
                Take(MemoryMarshal.AsBytes(counts.AsSpan(0, m)));
                for (int i = 0; i < m; i++)
                    if (counts[i] <= 0 || !take(counts[i])) return false;
            }
            return true;
        }
        corpus._documentStarts.Capacity = documents + 1;
        corpus._sentenceStarts.Capacity = sentences + 1;
        int sentenceTotal = 0;
        long pieceTotal = 0;
        if (!Runs(documents, c => { sentenceTotal += c; if (sentenceTotal > sentences || sentenceTotal < 0) return false; corpus._documentStarts.Add(sentenceTotal); return true; })
            || sentenceTotal != sentences
            || !Runs(sentences, c => { pieceTotal += c; if (pieceTotal > pieces) return false; corpus._sentenceStarts.Add(pieceTotal); return true; })
            || pieceTotal != pieces)
        { problem = "its document and sentence counts do not add up (a damaged file)"; return null; }

        for (long at = 0; at < pieces; at += ChunkSize)
        {
            int n = (int)Math.Min(ChunkSize, pieces - at);
            bool inVocabulary;
            if (corpus._narrow is not null)
            {
                var chunk = new ushort[ChunkSize];
                Take(MemoryMarshal.AsBytes(chunk.AsSpan(0, n)));
                inVocabulary = vocabSize > ushort.MaxValue || Below(chunk.AsSpan(0, n), (ushort)vocabSize);
                corpus._narrow.Add(chunk);
            }
            else
            {
                var chunk = new int[ChunkSize];
                Take(MemoryMarshal.AsBytes(chunk.AsSpan(0, n)));
                inVocabulary = Below(MemoryMarshal.Cast<int, uint>(chunk.AsSpan(0, n)), (uint)vocabSize);
                corpus._wide!.Add(chunk);
            }
            if (!inVocabulary) { problem = $"it holds an id outside the vocabulary of {vocabSize} (a damaged file)"; return null; }
        }
        Span<byte> sum = stackalloc byte[8];
        stream.ReadExactly(sum);
        if (BinaryPrimitives.ReadUInt64LittleEndian(sum) != hash.GetCurrentHashAsUInt64())
        { problem = "its checksum does not match (a damaged file)"; return null; }
        corpus.Pieces = pieces;
        return corpus;
    }

    static bool Below<T>(ReadOnlySpan<T> values, T limit) where T : unmanaged, IBinaryInteger<T>
    {
        var max = Vector<T>.Zero;
        int i = 0;
        for (; i + Vector<T>.Count <= values.Length; i += Vector<T>.Count) max = Vector.Max(max, new Vector<T>(values[i..]));
        T m = T.Zero;
        for (int l = 0; l < Vector<T>.Count; l++) m = T.Max(m, max[l]);
        for (; i < values.Length; i++) m = T.Max(m, values[i]);
        return m < limit;
    }

    /// <summary>Drops the indexes' spare capacity once the corpus is complete.</summary>
    public void Trim()
    {
        _sentenceStarts.Capacity = _sentenceStarts.Count;
        _documentStarts.Capacity = _documentStarts.Count;
    }
}

/// <summary>A pre-training pair as two ranges of a <see cref="TokenizedCorpus"/>'s pieces: segment A and segment B
/// (24 bytes, whatever T is).</summary>
public readonly record struct PairSpans(long AStart, long BStart, ushort ALength, ushort BLength, bool IsRandomNext)
{
    /// <summary>T: [CLS] A [SEP] B [SEP].</summary>
    public int Length => ALength + BLength + 3;
}

/// <summary>The pre-training pairs of a corpus, held as ranges of its pieces (<see cref="PairSpans"/>): a pair is
/// written out as a <see cref="PretrainingInstance"/> only when it is read, so the pairs of a corpus cost 24 bytes each
/// beside the corpus, not 8·T.</summary>
public sealed class PretrainingInstances : IReadOnlyList<PretrainingInstance>
{
    readonly List<PairSpans> _pairs;

    /// <param name="pairs">Kept as it is (not copied: a large corpus has millions).</param>
    public PretrainingInstances(TokenizedCorpus corpus, List<PairSpans> pairs, int clsId, int sepId)
    {
        Corpus = corpus; _pairs = pairs; ClsId = clsId; SepId = sepId;
    }

    public TokenizedCorpus Corpus { get; }

    public int ClsId { get; }

    public int SepId { get; }

    public int Count => _pairs.Count;

    /// <summary>T of pair <paramref name="i"/>, without writing it out.</summary>
    public int Length(int i) => _pairs[i].Length;

    /// <summary>Writes pair <paramref name="i"/>'s pieces, A then B without the specials, into <paramref name="buffer"/>
    /// (at least T long) and returns how many: its pieces without writing out the pair.</summary>
    public int CopyPieces(int i, Span<int> buffer)
    {
        var p = _pairs[i];
        Corpus.CopyTo(p.AStart, buffer[..p.ALength]);
        Corpus.CopyTo(p.BStart, buffer.Slice(p.ALength, p.BLength));
        return p.ALength + p.BLength;
    }

    /// <summary>Pair <paramref name="i"/> as ids and token types: [CLS] A [SEP] B [SEP], types 0 up to the first [SEP].</summary>
    public PretrainingInstance this[int i]
    {
        get
        {
            var p = _pairs[i];
            int a = p.ALength, t = p.Length;
            var tokens = new int[t];
            var types = new int[t];
            tokens[0] = ClsId;
            Corpus.CopyTo(p.AStart, tokens.AsSpan(1, a));
            tokens[a + 1] = SepId;
            Corpus.CopyTo(p.BStart, tokens.AsSpan(a + 2, p.BLength));
            tokens[t - 1] = SepId;
            types.AsSpan(a + 2).Fill(1);
            return new PretrainingInstance(tokens, types, p.IsRandomNext);
        }
    }

    public IEnumerator<PretrainingInstance> GetEnumerator()
    {
        for (int i = 0; i < _pairs.Count; i++) yield return this[i];
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
