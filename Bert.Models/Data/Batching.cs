namespace Bert.Data;

/// <summary>One batch: which sequences (indices into the caller's list) and T, the longest of them, the length the
/// batch is padded to.</summary>
public sealed record Batch(int[] Indices, int T)
{
    /// <summary>B, the number of sequences.</summary>
    public int B => Indices.Length;
}

/// <summary>Length-bucketed batching: batches of sequences of similar length, each padded only to its own longest
/// sequence, in a deterministic order from a seed.
/// <para>Algorithm ("sortish" sampling): shuffle all indices with <see cref="Random"/>(seed); cut the shuffled list
/// into pools of <c>batchSize × poolBatches</c>; sort each pool by length (ties by index); cut each pool into
/// batches of <c>batchSize</c>; shuffle the order of all batches. Within a pool, neighbours in length share a batch,
/// so padding is small; across epochs (a new seed per epoch) batch membership still changes. Only the last pool
/// can leave a remainder: it becomes one short batch of that pool's shortest sequences, or with <c>dropLast</c>
/// that many randomly chosen sequences are left out, so every batch is full.</para></summary>
public static class Batching
{
    /// <summary>Forms batches over sequences of the given lengths.</summary>
    /// <param name="lengths">Length of each sequence; the batches refer to sequences by index into this list.</param>
    /// <param name="poolBatches">How many batches' worth of sequences are sorted together (more = less padding,
    /// less randomness); 1 gives plain random batches.</param>
    /// <param name="dropLast">Leave out the remainder (fewer than batchSize random sequences) so every batch is full.</param>
    public static List<Batch> ByLength(IReadOnlyList<int> lengths, int batchSize, int seed, int poolBatches = 50, bool dropLast = false)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "batchSize must be at least 1.");
        if (poolBatches < 1) throw new ArgumentOutOfRangeException(nameof(poolBatches), poolBatches, "poolBatches must be at least 1.");
        var rng = new Random(seed);
        var order = Enumerable.Range(0, lengths.Count).ToList();
        Labeled.Shuffle(order, rng);
        int pool = batchSize * poolBatches;
        var batches = new List<Batch>();
        for (int start = 0; start < order.Count; start += pool)
        {
            var members = order.GetRange(start, Math.Min(pool, order.Count - start));
            int rest = members.Count % batchSize;
            if (dropLast && rest > 0)
            {
                members.RemoveRange(0, rest); // a random few, as the pool is shuffled
                rest = 0;
            }
            members.Sort((x, y) => lengths[x] != lengths[y] ? lengths[x].CompareTo(lengths[y]) : x.CompareTo(y));
            // Consecutive groups of the sorted pool pad least; the short batch, if any, goes where it saves most (first
            // when lengths are even, last when one sequence is much longer than the rest).
            int shortAt = rest > 0 ? ShortBatchPosition(members.Select(i => lengths[i]).ToArray(), batchSize, rest) : -1;
            for (int b = 0, group = 0; b < members.Count; group++)
            {
                int n = group == shortAt ? rest : batchSize;
                var indices = members.GetRange(b, n).ToArray();
                batches.Add(new Batch(indices, indices.Max(i => lengths[i])));
                b += n;
            }
        }
        Labeled.Shuffle(batches, rng);
        return batches;
    }

    /// <summary>Where among the consecutive groups of ascending <paramref name="sorted"/> lengths (full groups of
    /// <paramref name="batchSize"/> and one of <paramref name="rest"/>) the short group pads least: group k's cost is its
    /// size times its last (longest) length.</summary>
    static int ShortBatchPosition(int[] sorted, int batchSize, int rest)
    {
        int full = (sorted.Length - rest) / batchSize, best = 0;
        long bestCost = long.MaxValue;
        for (int k = 0; k <= full; k++)
        {
            long cost = 0;
            int end = 0;
            for (int g = 0; g <= full; g++)
            {
                int n = g == k ? rest : batchSize;
                end += n;
                cost += (long)n * sorted[end - 1];
            }
            if (cost < bestCost) { bestCost = cost; best = k; }
        }
        return best;
    }

    /// <summary>Forms batches over sequences (their lengths are the array lengths).</summary>
    public static List<Batch> ByLength(IReadOnlyList<int[]> sequences, int batchSize, int seed, int poolBatches = 50, bool dropLast = false) =>
        ByLength(sequences.Select(s => s.Length).ToArray(), batchSize, seed, poolBatches, dropLast);

    /// <summary>The batch's rows of <paramref name="rows"/> padded with <paramref name="pad"/> to (B, T), row-major.</summary>
    public static int[] Pad(IReadOnlyList<int[]> rows, Batch batch, int pad)
    {
        var flat = new int[batch.B * batch.T];
        for (int b = 0; b < batch.B; b++)
        {
            int[] row = rows[batch.Indices[b]];
            if (row.Length > batch.T)
                throw new ArgumentException($"Row {batch.Indices[b]} has {row.Length} entries, more than the batch's T = {batch.T}.", nameof(rows));
            row.CopyTo(flat, b * batch.T);
            if (pad != 0) Array.Fill(flat, pad, b * batch.T + row.Length, batch.T - row.Length);
        }
        return flat;
    }

    /// <summary>(B, T) attention mask, row-major: 1 on real tokens, 0 on padding.</summary>
    public static int[] AttentionMask(IReadOnlyList<int> lengths, Batch batch)
    {
        var mask = new int[batch.B * batch.T];
        for (int b = 0; b < batch.B; b++)
            Array.Fill(mask, 1, b * batch.T, lengths[batch.Indices[b]]);
        return mask;
    }
}
