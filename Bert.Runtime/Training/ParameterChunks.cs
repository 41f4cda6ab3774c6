namespace Bert.Runtime.Training;

/// <summary>The flat parameter buffer cut into fixed-size chunks (the unit of parallel work), each chunk cut again
/// into pieces at tensor boundaries so a piece lies inside one tensor. Chunks depend only on the element count, never
/// on the number of cores, so per-chunk partial sums added in chunk order give the same bits on every machine.</summary>
internal sealed class ParameterChunks
{
    /// <summary>Elements per chunk: 32 Ki keeps a chunk's four float32 streams (p, g, m, v) within L2 and makes
    /// BERT-base (110 M parameters) about 3 400 work items, plenty for a parallel loop to balance.</summary>
    public const int ChunkSize = 1 << 15;

    public int Count { get; }
    public int Chunks { get; }
    /// <summary>Pieces of chunk c are FirstPiece[c] .. FirstPiece[c + 1] - 1, in buffer order.</summary>
    public int[] FirstPiece { get; }
    public int[] PieceStart { get; }
    public int[] PieceEnd { get; }
    public int[] PieceTensor { get; }
    /// <summary>Per tensor (in buffer order, empty tensors left out): whether it takes weight decay, and its name.</summary>
    public bool[] Decay { get; }
    public string[] Names { get; }

    public ParameterChunks(IReadOnlyList<ParamInfo> parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var sorted = parameters.Where(p => p.Length > 0).OrderBy(p => p.Offset).ToArray();
        long end = 0;
        string? previous = null;
        foreach (var p in sorted)
        {
            if (p.Offset != end)
                throw new ArgumentException(p.Offset > end
                    ? $"Parameter '{p.Name}' starts at element {p.Offset} but the tensors before it end at {end}; an optimizer needs tensors that tile the flat buffer without gaps."
                    : $"Parameter '{p.Name}' starts at element {p.Offset}, inside '{previous}' (which ends at {end}); an optimizer needs tensors that do not overlap.", nameof(parameters));
            end += p.Length;
            previous = p.Name;
        }
        if (end > int.MaxValue)
            throw new ArgumentException($"The parameters hold {end} elements, more than a span can address ({int.MaxValue}).", nameof(parameters));

        Count = (int)end;
        Decay = sorted.Select(p => p.Decay).ToArray();
        Names = sorted.Select(p => p.Name).ToArray();
        Chunks = (Count + ChunkSize - 1) / ChunkSize;
        FirstPiece = new int[Chunks + 1];
        var starts = new List<int>(); var ends = new List<int>(); var tensors = new List<int>();
        int t = 0;
        for (int c = 0; c < Chunks; c++)
        {
            FirstPiece[c] = starts.Count;
            int pos = c * ChunkSize, chunkEnd = Math.Min(pos + ChunkSize, Count);
            while (pos < chunkEnd)
            {
                int tensorEnd = (int)(sorted[t].Offset + sorted[t].Length);
                int pieceEnd = Math.Min(chunkEnd, tensorEnd);
                starts.Add(pos); ends.Add(pieceEnd); tensors.Add(t);
                pos = pieceEnd;
                if (pos == tensorEnd) t++;
            }
        }
        FirstPiece[Chunks] = starts.Count;
        PieceStart = starts.ToArray(); PieceEnd = ends.ToArray(); PieceTensor = tensors.ToArray();
    }

    /// <summary>Chunks of a plain buffer of n elements (no tensors).</summary>
    public static int ChunksOf(int n) => (n + ChunkSize - 1) / ChunkSize;

    /// <summary>Runs body(c) for every chunk; one chunk runs on the calling thread. Allocates nothing when body is
    /// a cached delegate (the optimizers keep theirs in fields).</summary>
    public static void Run(int chunks, Action<int> body)
    {
        var b = new Body(body);
        Par.For(chunks, ref b);
    }

    readonly struct Body(Action<int> body) : IRangeBody
    {
        public void Run(int lo, int hi) { for (int c = lo; c < hi; c++) body(c); }
    }
}
