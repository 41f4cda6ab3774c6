using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Bert.Runtime.Kernels;

/// <summary>Multi-head scaled dot-product self-attention with a key padding mask and attention dropout.
/// B batch · T sequence · C hidden · H heads · D = C/H head size. (The element type is TFloat here because
/// T is the sequence length.)
/// qkv (B,T,3C): Q = columns [0,C), K = [C,2C), V = [2C,3C); head h uses columns h·D .. h·D+D-1 of each.
/// scores = Q·Kᵀ/sqrt(D) + (mask[b,k] == 0 ? -10000 : 0); probs = softmax over k, saved before dropout;
/// dropped = probs · keep/(1-dropout) when training with dropout > 0, keep = Philox.Keep(seed, site,
/// ((b·H+h)·T+q)·T+k, dropout), else probs; out[b,q,h·D+d] = Σ_k dropped[b,h,q,k] · V[b,k,h·D+d].
/// Each (b,h) owns its slice of out_, probs and dQkv, so heads run in parallel without races, and the
/// keep mask is recomputed in Backward rather than stored.</summary>
/// <remarks>Per (b,h) the products are GEMMs on strided views of qkv / out / dQkv (row stride 3C or C):
/// forward scores = scale·Q·Kᵀ (written straight into probs), out = dropped·V; backward dDropped = dOut·Vᵀ,
/// dV += droppedᵀ·dOut, dS = P ⊙ (dP − rowsum(P ⊙ dP)), dQ += scale·dS·K, dK += scale·dSᵀ·Q, all through the managed
/// GEMM (see <see cref="Mm{TFloat}"/> for why not OpenBLAS). Large calls run the (b,h) pairs in parallel, each GEMM on
/// one thread; every element is computed by the same arithmetic whatever thread runs its pair, so results are bitwise
/// reproducible. The dropout keep mask is Philox, four elements an evaluation, 8 counters a vector step (see KeepScales). Scratch (dropped probabilities, their gradient, one row of keep scales and one of mask
/// offsets) comes from ArrayPool, T×T per range of heads.</remarks>
public static class Attention
{
    // Below this many multiply-adds (B·H·T·T·D) the work is too small to pay for a parallel loop.
    const long ParallelMinWork = 1 << 16;
    const double MaskedScore = -10000.0; // added to the score of a padded key, as in BERT

    public static unsafe void Forward<TFloat>(Span<TFloat> out_, Span<TFloat> probs, ReadOnlySpan<TFloat> qkv, ReadOnlySpan<int> mask,
        int B, int T, int C, int H, float dropout, ulong seed, ulong site, bool training)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        // out_ (B,T,C), probs (B,H,T,T), qkv (B,T,3C), mask (B,T)
        Check(out_.Length, probs.Length, qkv.Length, mask.Length, B, T, C, H, dropout);
        int scratchLen = ForwardScratch(T, training && dropout > 0);
        if (!RunsInParallel(B, T, C, H))
        {
            TFloat[] scratch = ArrayPool<TFloat>.Shared.Rent(scratchLen);
            try
            {
                for (int bh = 0; bh < B * H; bh++)
                    ForwardHead(out_, probs, qkv, mask, scratch, bh / H, bh % H, T, C, H, dropout, seed, site, training, single: false);
            }
            finally { ArrayPool<TFloat>.Shared.Return(scratch); }
            return;
        }
        fixed (TFloat* pOut = out_, pProbs = probs, pQkv = qkv)
        fixed (int* pMask = mask)
        {
            var body = new ForwardHeads<TFloat> { Out = pOut, Probs = pProbs, Qkv = pQkv, Mask = pMask, B = B, T = T, C = C, H = H,
                Dropout = dropout, Seed = seed, Site = site, Training = training, ScratchLength = scratchLen };
            Par.For(B * H, ref body);
        }
    }

    /// <summary>row = softmax(row + maskAdd) over the keys (maskAdd added only when <paramref name="anyMasked"/>): the
    /// maximum; the exponential of the row less it, and the sum, in one pass; the division. Vector&lt;T&gt; loops of its own rather than
    /// TensorPrimitives: compiled optimized at the first call (the library's generic methods start at tier 0 and take
    /// dozens of forwards to be rejitted, which a short predict or eval run pays on every forward).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    static void SoftmaxRow<TFloat>(Span<TFloat> row, ReadOnlySpan<TFloat> maskAdd, bool anyMasked)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        int T = row.Length, W = Vector.IsHardwareAccelerated ? Vector<TFloat>.Count : int.MaxValue, i;
        if (anyMasked)
        {
            for (i = 0; i + W <= T; i += W) (new Vector<TFloat>(row.Slice(i)) + new Vector<TFloat>(maskAdd.Slice(i))).CopyTo(row.Slice(i));
            for (; i < T; i++) row[i] += maskAdd[i];
        }
        var vmax = new Vector<TFloat>(TFloat.NegativeInfinity);
        for (i = 0; i + W <= T; i += W) vmax = Vector.Max(vmax, new Vector<TFloat>(row.Slice(i)));
        TFloat max = TFloat.NegativeInfinity;
        for (int k = 0; k < Vector<TFloat>.Count; k++) max = TFloat.Max(max, vmax[k]);
        for (; i < T; i++) max = TFloat.Max(max, row[i]);
        TFloat sum = VMath.ExpShiftedSum<TFloat>(row, max, row);   // e^(row − max) in place, and the sum, in one pass
        var vs = new Vector<TFloat>(sum);
        for (i = 0; i + W <= T; i += W) (new Vector<TFloat>(row.Slice(i)) / vs).CopyTo(row.Slice(i));
        for (; i < T; i++) row[i] /= sum;
    }

    /// <summary>Heads lo .. hi - 1 (index b·H + h) of the forward, with scratch from ArrayPool per range.</summary>
    unsafe struct ForwardHeads<TFloat> : IRangeBody where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        public TFloat* Out, Probs, Qkv; public int* Mask;
        public int B, T, C, H, ScratchLength; public float Dropout; public ulong Seed, Site; public bool Training;

        public readonly void Run(int lo, int hi)
        {
            TFloat[] scratch = ArrayPool<TFloat>.Shared.Rent(ScratchLength);
            try
            {
                for (int bh = lo; bh < hi; bh++)
                    ForwardHead(new Span<TFloat>(Out, B * T * C), new Span<TFloat>(Probs, B * H * T * T),
                        new ReadOnlySpan<TFloat>(Qkv, B * T * 3 * C), new ReadOnlySpan<int>(Mask, B * T),
                        scratch, bh / H, bh % H, T, C, H, Dropout, Seed, Site, Training, single: true);
            }
            finally { ArrayPool<TFloat>.Shared.Return(scratch); }
        }
    }

    /// <summary>Scratch of one forward worker: mask offsets (T), and when dropping, keep scales (T) and dropped probabilities (T×T).</summary>
    static int ForwardScratch(int T, bool drop) => drop ? T * T + 2 * T : T;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // no tier-0 phase: a short run (predict, eval) pays it on every forward
    static void ForwardHead<TFloat>(Span<TFloat> out_, Span<TFloat> probs, ReadOnlySpan<TFloat> qkv, ReadOnlySpan<int> mask, Span<TFloat> scratch,
        int b, int h, int T, int C, int H, float dropout, ulong seed, ulong site, bool training, bool single)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        int D = C / H, C3 = 3 * C;
        TFloat scale = TFloat.One / TFloat.Sqrt(TFloat.CreateTruncating(D));
        bool drop = training && dropout > 0;
        int qkvBase = b * T * C3 + h * D, headBase = (b * H + h) * T * T;
        Span<TFloat> P = probs.Slice(headBase, T * T);                              // (T,T) of this head

        // scores = scale · Q·Kᵀ, straight into probs
        Mm(false, true, T, T, D, scale, qkv.Slice(qkvBase), C3, qkv.Slice(qkvBase + C), C3, TFloat.Zero, P, T, single);

        // mask offsets of batch b: -10000 on padded keys, 0 elsewhere (adding 0 leaves a score unchanged)
        Span<TFloat> maskAdd = scratch.Slice(0, T);
        bool anyMasked = false;
        TFloat masked = TFloat.CreateTruncating(MaskedScore);
        for (int k = 0; k < T; k++)
        {
            bool isMasked = mask[b * T + k] == 0;
            maskAdd[k] = isMasked ? masked : TFloat.Zero;
            anyMasked |= isMasked;
        }
        for (int q = 0; q < T; q++) SoftmaxRow(P.Slice(q * T, T), maskAdd, anyMasked);   // (T) over keys

        // dropped = probs ⊙ keep scale (probs themselves are saved before dropout)
        ReadOnlySpan<TFloat> dropped = P;
        if (drop)
        {
            Span<TFloat> ks = scratch.Slice(T, T), Pd = scratch.Slice(2 * T, T * T);
            TFloat keepScale = KeepScale<TFloat>(dropout);
            for (int q = 0; q < T; q++)
            {
                KeepScales(ks, seed, site, (ulong)(headBase + q * T), dropout, keepScale);
                TensorPrimitives.Multiply<TFloat>(P.Slice(q * T, T), ks, Pd.Slice(q * T, T));
            }
            dropped = Pd;
        }

        // out = dropped · V
        Mm(false, false, T, D, T, TFloat.One, dropped, T, qkv.Slice(qkvBase + 2 * C), C3, TFloat.Zero,
            out_.Slice(b * T * C + h * D), C, single);
    }

    /// <summary>dQkv (B,T,3C) += (or, <paramref name="accumulate"/> false, =); dOut (B,T,C), qkv (B,T,3C), probs (B,H,T,T),
    /// mask (B,T).</summary>
    public static unsafe void Backward<TFloat>(Span<TFloat> dQkv, ReadOnlySpan<TFloat> dOut, ReadOnlySpan<TFloat> qkv, ReadOnlySpan<TFloat> probs,
        ReadOnlySpan<int> mask, int B, int T, int C, int H, float dropout, ulong seed, ulong site, bool training, bool accumulate = true)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        Check(dOut.Length, probs.Length, qkv.Length, mask.Length, B, T, C, H, dropout);
        if (dQkv.Length < B * T * 3 * C) throw new ArgumentException($"Attention dQkv needs (B,T,3C) = {B * T * 3 * C} elements; it has {dQkv.Length}.");
        int scratchLen = BackwardScratch(T, training && dropout > 0);
        if (!RunsInParallel(B, T, C, H))
        {
            TFloat[] scratch = ArrayPool<TFloat>.Shared.Rent(scratchLen);
            try
            {
                for (int bh = 0; bh < B * H; bh++)
                    BackwardHead(dQkv, dOut, qkv, probs, scratch, bh / H, bh % H, T, C, H, dropout, seed, site, training, single: false, accumulate);
            }
            finally { ArrayPool<TFloat>.Shared.Return(scratch); }
            return;
        }
        fixed (TFloat* pdQkv = dQkv, pdOut = dOut, pQkv = qkv, pProbs = probs)
        {
            var body = new BackwardHeads<TFloat> { DQkv = pdQkv, DOut = pdOut, Qkv = pQkv, Probs = pProbs, B = B, T = T, C = C, H = H,
                Dropout = dropout, Seed = seed, Site = site, Training = training, ScratchLength = scratchLen, Accumulate = accumulate };
            Par.For(B * H, ref body);
        }
    }

    /// <summary>Heads lo .. hi - 1 (index b·H + h) of the backward, with scratch from ArrayPool per range.</summary>
    unsafe struct BackwardHeads<TFloat> : IRangeBody where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        public TFloat* DQkv, DOut, Qkv, Probs;
        public int B, T, C, H, ScratchLength; public float Dropout; public ulong Seed, Site; public bool Training, Accumulate;

        public readonly void Run(int lo, int hi)
        {
            TFloat[] scratch = ArrayPool<TFloat>.Shared.Rent(ScratchLength);
            try
            {
                for (int bh = lo; bh < hi; bh++)
                    BackwardHead(new Span<TFloat>(DQkv, B * T * 3 * C), new ReadOnlySpan<TFloat>(DOut, B * T * C),
                        new ReadOnlySpan<TFloat>(Qkv, B * T * 3 * C), new ReadOnlySpan<TFloat>(Probs, B * H * T * T),
                        scratch, bh / H, bh % H, T, C, H, Dropout, Seed, Site, Training, single: true, Accumulate);
            }
            finally { ArrayPool<TFloat>.Shared.Return(scratch); }
        }
    }

    /// <summary>Scratch of one backward worker: dP (T×T), and when dropping, dropped probabilities (T×T) and keep scales (T).</summary>
    static int BackwardScratch(int T, bool drop) => drop ? 2 * T * T + T : T * T;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // no tier-0 phase: a short run (predict, eval) pays it on every forward
    static void BackwardHead<TFloat>(Span<TFloat> dQkv, ReadOnlySpan<TFloat> dOut, ReadOnlySpan<TFloat> qkv, ReadOnlySpan<TFloat> probs,
        Span<TFloat> scratch, int b, int h, int T, int C, int H, float dropout, ulong seed, ulong site, bool training, bool single, bool accumulate)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        TFloat beta = accumulate ? TFloat.One : TFloat.Zero;
        int D = C / H, C3 = 3 * C;
        TFloat scale = TFloat.One / TFloat.Sqrt(TFloat.CreateTruncating(D));
        bool drop = training && dropout > 0;
        int qkvBase = b * T * C3 + h * D, outBase = b * T * C + h * D, headBase = (b * H + h) * T * T;
        ReadOnlySpan<TFloat> P = probs.Slice(headBase, T * T);                      // (T,T) saved probs of this head
        Span<TFloat> dP = scratch.Slice(0, T * T);                                   // (T,T) d dropped, then d probs, then dS

        // d dropped = dOut · Vᵀ
        Mm(false, true, T, T, D, TFloat.One, dOut.Slice(outBase), C, qkv.Slice(qkvBase + 2 * C), C3, TFloat.Zero, dP, T, single);

        // through dropout: dropped = P ⊙ ks, so d probs = d dropped ⊙ ks
        ReadOnlySpan<TFloat> dropped = P;
        if (drop)
        {
            Span<TFloat> Pd = scratch.Slice(T * T, T * T), ks = scratch.Slice(2 * T * T, T);
            TFloat keepScale = KeepScale<TFloat>(dropout);
            for (int q = 0; q < T; q++)
            {
                KeepScales(ks, seed, site, (ulong)(headBase + q * T), dropout, keepScale);
                TensorPrimitives.Multiply<TFloat>(P.Slice(q * T, T), ks, Pd.Slice(q * T, T));
                Span<TFloat> dpRow = dP.Slice(q * T, T);
                TensorPrimitives.Multiply<TFloat>(dpRow, ks, dpRow);
            }
            dropped = Pd;
        }

        // dV += droppedᵀ · dOut
        Mm(true, false, T, D, T, TFloat.One, dropped, T, dOut.Slice(outBase), C, beta, dQkv.Slice(qkvBase + 2 * C), C3, single);

        // softmax backward: dS[q,k] = P[q,k] · (dP[q,k] - Σ_j P[q,j] dP[q,j])
        for (int q = 0; q < T; q++)
        {
            ReadOnlySpan<TFloat> pRow = P.Slice(q * T, T);
            Span<TFloat> dsRow = dP.Slice(q * T, T);
            TFloat pdp = TensorPrimitives.Dot(pRow, dsRow);
            TensorPrimitives.Subtract(dsRow, pdp, dsRow);
            TensorPrimitives.Multiply<TFloat>(pRow, dsRow, dsRow);
        }

        // through scores = scale · Q·Kᵀ: dQ += scale · dS·K, dK += scale · dSᵀ·Q
        Mm(false, false, T, D, T, scale, dP, T, qkv.Slice(qkvBase + C), C3, beta, dQkv.Slice(qkvBase), C3, single);
        Mm(true, false, T, D, T, scale, dP, T, qkv.Slice(qkvBase), C3, beta, dQkv.Slice(qkvBase + C), C3, single);
    }

    static bool RunsInParallel(int B, int T, int C, int H)
        => (long)B * H * T * T * (C / H) >= ParallelMinWork && Environment.ProcessorCount > 1 && B * H > 1;

    /// <summary>One GEMM, always the managed one (<see cref="ManagedGemm"/>), whatever <see cref="Gemm.Backend"/> is: on the
    /// parallel path (<paramref name="single"/>) the (b,h) pairs already occupy the cores, so it must run on the calling
    /// thread, and OpenBLAS cannot be limited to one thread per call (its threaded calls made from several threads at once
    /// contend for its thread pool: 30-500 ms per forward+backward, erratic, at B=32, T=128, C=256, H=4 on 2 cores, against
    /// 10-13 ms with one-thread managed GEMMs, and about 33 ms running the pairs one after another with two-thread OpenBLAS
    /// GEMMs). The managed GEMM gives the same bits for any thread count, so results do not depend on the path taken,
    /// the number of cores or BERT_BLAS.</summary>
    static void Mm<TFloat>(bool transA, bool transB, int M, int N, int K, TFloat alpha, ReadOnlySpan<TFloat> A, int lda,
        ReadOnlySpan<TFloat> B, int ldb, TFloat beta, Span<TFloat> C, int ldc, bool single)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
        => ManagedGemm.Run(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
            single ? 1 : ManagedGemm.DefaultThreads);

    /// <summary>1/(1-dropout), the scale of kept probabilities; 0 when dropout is 1 and nothing is kept.</summary>
    static TFloat KeepScale<TFloat>(float dropout) where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
        => dropout >= 1f ? TFloat.Zero : TFloat.CreateTruncating(1.0 / (1.0 - dropout));

    // ---------------------------------------------------------------- keep mask (Philox4x32-10, vectorized)

    // The constants of Philox.Round10; the vector code below computes exactly Philox.Keep, lane by lane.
    const uint PhiloxM0 = 0xD2511F53, PhiloxM1 = 0xCD9E8D57;
    const uint PhiloxW0 = 0x9E3779B9, PhiloxW1 = 0xBB67AE85;

    /// <summary>ks[k] = Philox.Keep(seed, site, index0 + k, p) ? keepScale : 0 for k in [0, ks.Length).</summary>
    /// <remarks>Keep is KeepUniform >= p, KeepUniform = (x >> 8)·2⁻²⁴ exactly with x word (index mod 4) of Philox's output
    /// for counter index / 4, which is (x >> 8) >= ceil(p·2²⁴) in integers. With AVX2 (AVX-512 machines included) four
    /// counters go through the rounds in a vector, each 32-bit word in a 64-bit lane so that vpmuludq gives the 32×32→64
    /// products, two vectors' rounds interleaved: 8 counters, 32 elements a step, then 16; the elements before the first
    /// counter boundary and after the last whole counter group one counter at a time.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // intrinsics at tier 0 are ~20× slower
    internal static void KeepScales<TFloat>(Span<TFloat> ks, ulong seed, ulong site, ulong index0, float p, TFloat keepScale)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        int n = ks.Length, k = 0;
        uint threshold = (uint)Math.Ceiling(p * 16777216.0); // 0 (keep all) … 2²⁴ (keep none)
        while (k < n && ((index0 + (ulong)k) & 3) != 0) k++;
        KeepScalesScalar(ks, 0, k, seed, site, index0, threshold, keepScale);
        if (Avx2.IsSupported && (typeof(TFloat) == typeof(float) || typeof(TFloat) == typeof(double)))
        {
            var c = new PhiloxLanes256(seed, site, threshold);
            ref TFloat dst = ref MemoryMarshal.GetReference(ks);
            for (; k + 32 <= n; k += 32)
            {
                c.Keep2((index0 + (ulong)k) >> 2, out var m0, out var m1, out var m2, out var m3);
                Put(ref dst, k, m0, keepScale); Put(ref dst, k + 8, m1, keepScale); Put(ref dst, k + 16, m2, keepScale); Put(ref dst, k + 24, m3, keepScale);
            }
            for (; k + 16 <= n; k += 16)
            {
                c.Keep((index0 + (ulong)k) >> 2, out var m0, out var m1);
                Put(ref dst, k, m0, keepScale); Put(ref dst, k + 8, m1, keepScale);
            }
        }
        KeepScalesScalar(ks, k, n, seed, site, index0, threshold, keepScale);
    }

    /// <summary>ks[k] for k in [from, to) by <see cref="Philox.Block"/>, one evaluation per counter (four elements).</summary>
    static void KeepScalesScalar<TFloat>(Span<TFloat> ks, int from, int to, ulong seed, ulong site, ulong index0, uint threshold, TFloat keepScale)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        (uint, uint, uint, uint) block = default;
        for (int k = from; k < to; k++)
        {
            ulong index = index0 + (ulong)k;
            if (k == from || (index & 3) == 0) block = Philox.Block(seed, site, index >> 2);
            ks[k] = (Philox.Word(block, index) >> 8) >= threshold ? keepScale : TFloat.Zero;
        }
    }

    /// <summary>Eight elements from k on: keepScale where the mask lane is all ones, 0 where it is zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put<TFloat>(ref TFloat dst, int k, Vector256<int> mask, TFloat keepScale) where TFloat : unmanaged
    {
        if (typeof(TFloat) == typeof(float))
        {
            Vector256<float> s = Vector256.Create(Unsafe.BitCast<TFloat, float>(keepScale));
            Vector256.ConditionalSelect(mask.AsSingle(), s, Vector256<float>.Zero).StoreUnsafe(ref Unsafe.As<TFloat, float>(ref dst), (nuint)k);
        }
        else
        {
            Vector256<double> s = Vector256.Create(Unsafe.BitCast<TFloat, double>(keepScale));
            ref double d = ref Unsafe.As<TFloat, double>(ref dst);
            Vector256.ConditionalSelect(Vector256.WidenLower(mask).AsDouble(), s, Vector256<double>.Zero).StoreUnsafe(ref d, (nuint)k);
            Vector256.ConditionalSelect(Vector256.WidenUpper(mask).AsDouble(), s, Vector256<double>.Zero).StoreUnsafe(ref d, (nuint)k + 4);
        }
    }

    /// <summary>Philox4x32-10 for 4 consecutive counters a vector (each 32-bit word in a 64-bit lane), turned into the keep
    /// masks of their 16 elements in element order.</summary>
    readonly struct PhiloxLanes256(ulong seed, ulong site, uint threshold)
    {
        readonly Vector256<ulong> _c2 = Vector256.Create(site & 0xFFFFFFFF), _c3 = Vector256.Create(site >> 32);
        readonly uint _k0 = (uint)seed, _k1 = (uint)(seed >> 32);
        readonly Vector256<int> _threshold = Vector256.Create((int)threshold);

        /// <summary>The masks (all ones: kept) of elements 4·counter0 … 4·counter0 + 7 (<paramref name="lo"/>) and the 8
        /// after (<paramref name="hi"/>).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Keep(ulong counter0, out Vector256<int> lo, out Vector256<int> hi)
        {
            Vector256<ulong> lo32 = Vector256.Create(0xFFFFFFFFUL);
            Vector256<uint> m0 = Vector256.Create((ulong)PhiloxM0).AsUInt32(), m1 = Vector256.Create((ulong)PhiloxM1).AsUInt32();
            Vector256<ulong> idx = Vector256.Create(counter0) + Vector256.Create(0UL, 1, 2, 3);
            Vector256<ulong> c0 = idx & lo32, c1 = idx >> 32, c2 = _c2, c3 = _c3;
            uint k0 = _k0, k1 = _k1;
            for (int r = 0; r < 10; r++)
            {
                if (r > 0) { k0 += PhiloxW0; k1 += PhiloxW1; }
                Vector256<ulong> p0 = Avx2.Multiply(c0.AsUInt32(), m0), p1 = Avx2.Multiply(c2.AsUInt32(), m1);
                c0 = (p1 >> 32) ^ c1 ^ Vector256.Create((ulong)k0);
                c1 = p1 & lo32;
                c2 = (p0 >> 32) ^ c3 ^ Vector256.Create((ulong)k1);
                c3 = p0 & lo32;
            }
            Masks(c0, c1, c2, c3, out lo, out hi);
        }

        /// <summary>As <see cref="Keep"/> for counters counter0 … counter0 + 3 (<paramref name="a0"/>, <paramref name="a1"/>)
        /// and the 4 after (<paramref name="b0"/>, <paramref name="b1"/>), their rounds interleaved: one chain of multiplies
        /// alone waits on each product's latency.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Keep2(ulong counter0, out Vector256<int> a0, out Vector256<int> a1, out Vector256<int> b0, out Vector256<int> b1)
        {
            Vector256<ulong> lo32 = Vector256.Create(0xFFFFFFFFUL);
            Vector256<uint> m0 = Vector256.Create((ulong)PhiloxM0).AsUInt32(), m1 = Vector256.Create((ulong)PhiloxM1).AsUInt32();
            Vector256<ulong> idx = Vector256.Create(counter0) + Vector256.Create(0UL, 1, 2, 3), idy = idx + Vector256.Create(4UL);
            Vector256<ulong> x0 = idx & lo32, x1 = idx >> 32, x2 = _c2, x3 = _c3;
            Vector256<ulong> y0 = idy & lo32, y1 = idy >> 32, y2 = _c2, y3 = _c3;
            uint k0 = _k0, k1 = _k1;
            for (int r = 0; r < 10; r++)
            {
                if (r > 0) { k0 += PhiloxW0; k1 += PhiloxW1; }
                Vector256<ulong> key0 = Vector256.Create((ulong)k0), key1 = Vector256.Create((ulong)k1);
                Vector256<ulong> px0 = Avx2.Multiply(x0.AsUInt32(), m0), px1 = Avx2.Multiply(x2.AsUInt32(), m1);
                Vector256<ulong> py0 = Avx2.Multiply(y0.AsUInt32(), m0), py1 = Avx2.Multiply(y2.AsUInt32(), m1);
                x0 = (px1 >> 32) ^ x1 ^ key0; x1 = px1 & lo32; x2 = (px0 >> 32) ^ x3 ^ key1; x3 = px0 & lo32;
                y0 = (py1 >> 32) ^ y1 ^ key0; y1 = py1 & lo32; y2 = (py0 >> 32) ^ y3 ^ key1; y3 = py0 & lo32;
            }
            Masks(x0, x1, x2, x3, out a0, out a1);
            Masks(y0, y1, y2, y3, out b0, out b1);
        }

        /// <summary>Words w0 … w3 of counters j = 0 … 3 (lane j of each, in its low half) compared with the threshold and
        /// put in element order 4j + w: elements 0 … 7 in <paramref name="lo"/>, 8 … 15 in <paramref name="hi"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        void Masks(Vector256<ulong> w0, Vector256<ulong> w1, Vector256<ulong> w2, Vector256<ulong> w3, out Vector256<int> lo, out Vector256<int> hi)
        {
            // 64-bit lane j: (w0, w1) and (w2, w3) of counter j as two 32-bit halves; the words' upper halves are zero
            Vector256<int> x = Vector256.GreaterThanOrEqual(((w0 | (w1 << 32)).AsUInt32() >> 8).AsInt32(), _threshold);
            Vector256<int> y = Vector256.GreaterThanOrEqual(((w2 | (w3 << 32)).AsUInt32() >> 8).AsInt32(), _threshold);
            // [x0 y0 | x2 y2] and [x1 y1 | x3 y3] in 64-bit lanes, then their low and high 128-bit halves paired
            Vector256<ulong> l = Avx2.UnpackLow(x.AsUInt64(), y.AsUInt64()), h = Avx2.UnpackHigh(x.AsUInt64(), y.AsUInt64());
            lo = Avx2.Permute2x128(l, h, 0x20).AsInt32();
            hi = Avx2.Permute2x128(l, h, 0x31).AsInt32();
        }
    }

    static void Check(int outLen, int probsLen, int qkvLen, int maskLen, int B, int T, int C, int H, float dropout)
    {
        if (B < 0 || T < 0 || C <= 0 || H <= 0 || C % H != 0)
            throw new ArgumentOutOfRangeException(nameof(H), $"Attention needs B, T >= 0 and C > 0 divisible by H > 0; got B = {B}, T = {T}, C = {C}, H = {H}.");
        if (!(dropout >= 0f && dropout <= 1f))
            throw new ArgumentOutOfRangeException(nameof(dropout), dropout, $"Attention dropout {dropout} is outside [0, 1].");
        if (outLen < B * T * C || probsLen < B * H * T * T || qkvLen < B * T * 3 * C || maskLen < B * T)
            throw new ArgumentException($"Attention buffers are too short for B = {B}, T = {T}, C = {C}, H = {H}: need (B,T,C) = {B * T * C}, (B,H,T,T) = {B * H * T * T}, (B,T,3C) = {B * T * 3 * C} and mask (B,T) = {B * T} elements.");
    }
}
