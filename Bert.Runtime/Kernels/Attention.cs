using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;

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
public static class Attention
{
    // Below this many multiply-adds (B·H·T·T·D) the work is too small to pay for Parallel.For.
    const long ParallelMinWork = 1 << 16;
    const double MaskedScore = -10000.0; // added to the score of a padded key, as in BERT

    public static unsafe void Forward<TFloat>(Span<TFloat> out_, Span<TFloat> probs, ReadOnlySpan<TFloat> qkv, ReadOnlySpan<int> mask,
        int B, int T, int C, int H, float dropout, ulong seed, ulong site, bool training)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        // out_ (B,T,C), probs (B,H,T,T), qkv (B,T,3C), mask (B,T)
        Check(out_.Length, probs.Length, qkv.Length, mask.Length, B, T, C, H, dropout);
        if ((long)B * H * T * T * (C / H) < ParallelMinWork || Environment.ProcessorCount == 1)
        {
            for (int bh = 0; bh < B * H; bh++)
                ForwardHead(out_, probs, qkv, mask, bh / H, bh % H, T, C, H, dropout, seed, site, training);
            return;
        }
        fixed (TFloat* pOut = out_, pProbs = probs, pQkv = qkv)
        fixed (int* pMask = mask)
        {
            nint o = (nint)pOut, p = (nint)pProbs, x = (nint)pQkv, m = (nint)pMask;
            Parallel.For(0, B * H, bh => ForwardHead(
                new Span<TFloat>((void*)o, B * T * C), new Span<TFloat>((void*)p, B * H * T * T),
                new ReadOnlySpan<TFloat>((void*)x, B * T * 3 * C), new ReadOnlySpan<int>((void*)m, B * T),
                bh / H, bh % H, T, C, H, dropout, seed, site, training));
        }
    }

    static void ForwardHead<TFloat>(Span<TFloat> out_, Span<TFloat> probs, ReadOnlySpan<TFloat> qkv, ReadOnlySpan<int> mask,
        int b, int h, int T, int C, int H, float dropout, ulong seed, ulong site, bool training)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        int D = C / H, C3 = 3 * C;
        TFloat scale = TFloat.One / TFloat.Sqrt(TFloat.CreateTruncating(D));
        TFloat masked = TFloat.CreateTruncating(MaskedScore);
        bool drop = training && dropout > 0;
        TFloat keepScale = KeepScale<TFloat>(dropout);
        for (int q = 0; q < T; q++)
        {
            ReadOnlySpan<TFloat> qRow = qkv.Slice((b * T + q) * C3 + h * D, D); // (D)
            int rowBase = ((b * H + h) * T + q) * T;
            Span<TFloat> pRow = probs.Slice(rowBase, T);                         // (T) over keys
            for (int k = 0; k < T; k++)
            {
                ReadOnlySpan<TFloat> kRow = qkv.Slice((b * T + k) * C3 + C + h * D, D);
                TFloat s = TensorPrimitives.Dot(qRow, kRow) * scale;
                pRow[k] = mask[b * T + k] == 0 ? s + masked : s;
            }
            TFloat max = TensorPrimitives.Max<TFloat>(pRow);
            TensorPrimitives.Subtract(pRow, max, pRow);
            TensorPrimitives.Exp<TFloat>(pRow, pRow);
            TensorPrimitives.Divide(pRow, TensorPrimitives.Sum<TFloat>(pRow), pRow);

            Span<TFloat> oRow = out_.Slice((b * T + q) * C + h * D, D);          // (D)
            oRow.Clear();
            for (int k = 0; k < T; k++)
            {
                TFloat pk = pRow[k];
                if (drop) pk *= Philox.Keep(seed, site, (ulong)(rowBase + k), dropout) ? keepScale : TFloat.Zero;
                TensorPrimitives.MultiplyAdd(qkv.Slice((b * T + k) * C3 + 2 * C + h * D, D), pk, oRow, oRow);
            }
        }
    }

    public static unsafe void Backward<TFloat>(Span<TFloat> dQkv, ReadOnlySpan<TFloat> dOut, ReadOnlySpan<TFloat> qkv, ReadOnlySpan<TFloat> probs,
        ReadOnlySpan<int> mask, int B, int T, int C, int H, float dropout, ulong seed, ulong site, bool training)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        // dQkv (B,T,3C) +=, dOut (B,T,C), qkv (B,T,3C), probs (B,H,T,T), mask (B,T)
        Check(dOut.Length, probs.Length, qkv.Length, mask.Length, B, T, C, H, dropout);
        if (dQkv.Length < B * T * 3 * C) throw new ArgumentException($"Attention dQkv needs (B,T,3C) = {B * T * 3 * C} elements; it has {dQkv.Length}.");
        if ((long)B * H * T * T * (C / H) < ParallelMinWork || Environment.ProcessorCount == 1)
        {
            TFloat[] dP = ArrayPool<TFloat>.Shared.Rent(T); // (T) scratch: d probs of one query row
            try
            {
                for (int bh = 0; bh < B * H; bh++)
                    BackwardHead(dQkv, dOut, qkv, probs, dP, bh / H, bh % H, T, C, H, dropout, seed, site, training);
            }
            finally { ArrayPool<TFloat>.Shared.Return(dP); }
            return;
        }
        fixed (TFloat* pdQkv = dQkv, pdOut = dOut, pQkv = qkv, pProbs = probs)
        {
            nint dx = (nint)pdQkv, dO = (nint)pdOut, x = (nint)pQkv, p = (nint)pProbs;
            Parallel.For(0, B * H,
                () => ArrayPool<TFloat>.Shared.Rent(T), // (T) scratch per worker
                (bh, _, dP) =>
                {
                    BackwardHead(new Span<TFloat>((void*)dx, B * T * 3 * C), new ReadOnlySpan<TFloat>((void*)dO, B * T * C),
                        new ReadOnlySpan<TFloat>((void*)x, B * T * 3 * C), new ReadOnlySpan<TFloat>((void*)p, B * H * T * T),
                        dP, bh / H, bh % H, T, C, H, dropout, seed, site, training);
                    return dP;
                },
                dP => ArrayPool<TFloat>.Shared.Return(dP));
        }
    }

    static void BackwardHead<TFloat>(Span<TFloat> dQkv, ReadOnlySpan<TFloat> dOut, ReadOnlySpan<TFloat> qkv, ReadOnlySpan<TFloat> probs,
        Span<TFloat> dP, int b, int h, int T, int C, int H, float dropout, ulong seed, ulong site, bool training)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        int D = C / H, C3 = 3 * C;
        TFloat scale = TFloat.One / TFloat.Sqrt(TFloat.CreateTruncating(D));
        bool drop = training && dropout > 0;
        TFloat keepScale = KeepScale<TFloat>(dropout);
        dP = dP.Slice(0, T);
        for (int q = 0; q < T; q++)
        {
            int rowBase = ((b * H + h) * T + q) * T;
            ReadOnlySpan<TFloat> pRow = probs.Slice(rowBase, T);                 // (T)
            ReadOnlySpan<TFloat> dORow = dOut.Slice((b * T + q) * C + h * D, D); // (D)
            int qOff = (b * T + q) * C3 + h * D;
            // dV[k] += dropped[q,k] · dOut[q];  dP[k] = (dOut[q] · V[k]) · keep/(1-dropout)
            for (int k = 0; k < T; k++)
            {
                TFloat ks = drop ? (Philox.Keep(seed, site, (ulong)(rowBase + k), dropout) ? keepScale : TFloat.Zero) : TFloat.One;
                int vOff = (b * T + k) * C3 + 2 * C + h * D;
                Span<TFloat> dVRow = dQkv.Slice(vOff, D);
                TensorPrimitives.MultiplyAdd(dORow, pRow[k] * ks, dVRow, dVRow);
                dP[k] = TensorPrimitives.Dot(dORow, qkv.Slice(vOff, D)) * ks;
            }
            // softmax backward: dS[k] = P[k] · (dP[k] - Σ_j P[j] dP[j]); then through scores = Q·Kᵀ·scale
            TFloat pdp = TensorPrimitives.Dot(pRow, dP);
            ReadOnlySpan<TFloat> qRow = qkv.Slice(qOff, D);
            Span<TFloat> dQRow = dQkv.Slice(qOff, D);
            for (int k = 0; k < T; k++)
            {
                TFloat dS = pRow[k] * (dP[k] - pdp) * scale;
                int kOff = (b * T + k) * C3 + C + h * D;
                TensorPrimitives.MultiplyAdd(qkv.Slice(kOff, D), dS, dQRow, dQRow);
                Span<TFloat> dKRow = dQkv.Slice(kOff, D);
                TensorPrimitives.MultiplyAdd(qRow, dS, dKRow, dKRow);
            }
        }
    }

    /// <summary>1/(1-dropout), the scale of kept probabilities; 0 when dropout is 1 and nothing is kept.</summary>
    static TFloat KeepScale<TFloat>(float dropout) where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
        => dropout >= 1f ? TFloat.Zero : TFloat.CreateTruncating(1.0 / (1.0 - dropout));

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
