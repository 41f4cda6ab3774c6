namespace Bert.Runtime.Kernels;

/// <summary>Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011):
/// a counter-based generator, so the random number for any element is a pure function of (seed, site, index).
/// Dropout uses it to make the keep mask identical in forward, backward and on every repeated call, on any
/// thread and on any device, without storing the mask: element <c>index</c> takes word <c>index mod 4</c> of the
/// generator's four output words for counter (index / 4, site), so one evaluation (ten rounds) serves four
/// consecutive elements (<see cref="KeepUniform"/>). Parameter initialization draws from <see cref="Uniform"/>.</summary>
public static class Philox
{
    const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57; // round multipliers
    const uint W0 = 0x9E3779B9, W1 = 0xBB67AE85; // Weyl key increments (golden ratio, sqrt(3)-1)

    /// <summary>Ten Philox rounds of counter (c0..c3) under key (k0, k1); the key is bumped between rounds.</summary>
    public static (uint, uint, uint, uint) Round10(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int r = 0; r < 10; r++)
        {
            if (r > 0) { k0 += W0; k1 += W1; }
            ulong p0 = (ulong)M0 * c0;
            ulong p1 = (ulong)M1 * c2;
            uint hi0 = (uint)(p0 >> 32), lo0 = (uint)p0;
            uint hi1 = (uint)(p1 >> 32), lo1 = (uint)p1;
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        }
        return (c0, c1, c2, c3);
    }

    /// <summary>Uniform in [0,1) for draw <paramref name="index"/> of stream <paramref name="site"/> (parameter initialization)
    /// under <paramref name="seed"/>: key = seed, counter = (index, site); the top 24 bits of the first output
    /// word become the float exactly.</summary>
    public static float Uniform(ulong seed, ulong site, ulong index)
    {
        var (x, _, _, _) = Round10((uint)index, (uint)(index >> 32), (uint)site, (uint)(site >> 32),
                                   (uint)seed, (uint)(seed >> 32));
        return (x >> 8) * (1.0f / (1 << 24));
    }

    /// <summary>Dropout's uniform in [0,1) for element <paramref name="index"/> of site <paramref name="site"/>: word
    /// index mod 4 of Philox with key = seed, counter = (index / 4, site), its top 24 bits as the float, exactly. The
    /// CUDA kernels' <c>rt_uniform</c> and <c>bert_uniform</c> compute the same.</summary>
    public static float KeepUniform(ulong seed, ulong site, ulong index)
        => (Word(Block(seed, site, index >> 2), index) >> 8) * (1.0f / (1 << 24));

    /// <summary>The four output words of <paramref name="counter"/> of a dropout site: elements 4·counter … 4·counter + 3.</summary>
    internal static (uint, uint, uint, uint) Block(ulong seed, ulong site, ulong counter)
        => Round10((uint)counter, (uint)(counter >> 32), (uint)site, (uint)(site >> 32), (uint)seed, (uint)(seed >> 32));

    /// <summary>Element <paramref name="index"/>'s word of its counter's <paramref name="block"/>: word index mod 4.</summary>
    internal static uint Word((uint X0, uint X1, uint X2, uint X3) block, ulong index)
        => (index & 3) switch { 0 => block.X0, 1 => block.X1, 2 => block.X2, _ => block.X3 };

    /// <summary>Dropout keep decision for one element, identical on every call: KeepUniform(seed, site, index) >= p.</summary>
    public static bool Keep(ulong seed, ulong site, ulong index, float p) => KeepUniform(seed, site, index) >= p;

    /// <summary>dst[k] = Keep(seed, site, index0 + k, p) ? scale : 0, 32 elements a step with AVX2 (8 counters of four
    /// words), bit for bit what Keep decides element by element.</summary>
    public static void FillKeepScales<T>(Span<T> dst, ulong seed, ulong site, ulong index0, float p, T scale)
        where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T> =>
        Attention.KeepScales(dst, seed, site, index0, p, scale);
}
