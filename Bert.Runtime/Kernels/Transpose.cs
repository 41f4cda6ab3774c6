using System.Numerics;

namespace Bert.Runtime.Kernels;

/// <summary>Swaps the last two axes: x (B,T,K) → y (B,K,T), y[b,k,t] = x[b,t,k] — question answering's start and end logits
/// turned into rows over the positions for the cross-entropy. B batch · T sequence · K a few columns (2 for start and end).
/// (The element type is TFloat here because T is the sequence length.)</summary>
public static class Transpose
{
    public static void Forward<TFloat>(Span<TFloat> out_, ReadOnlySpan<TFloat> inp, int B, int T, int K)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        // out_ (B,K,T), inp (B,T,K); one output row at a time, reading the input with stride K (K is tiny, a row of
        // inp fits in cache whatever T is).
        Check(out_.Length, inp.Length, B, T, K);
        for (int b = 0; b < B; b++)
        {
            var x = inp.Slice(b * T * K, T * K);
            var y = out_.Slice(b * K * T, K * T);
            for (int k = 0; k < K; k++)
                for (int t = 0; t < T; t++)
                    y[k * T + t] = x[t * K + k];
        }
    }

    /// <param name="accumulate">True: dInp += dOutᵀ; false: dInp = dOutᵀ, every element written (the first gradient into a
    /// buffer the schedule did not clear).</param>
    public static void Backward<TFloat>(Span<TFloat> dInp, ReadOnlySpan<TFloat> dOut, int B, int T, int K, bool accumulate = true)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        // dInp (B,T,K) += or =, dOut (B,K,T)
        Check(dOut.Length, dInp.Length, B, T, K);
        for (int b = 0; b < B; b++)
        {
            var dy = dOut.Slice(b * K * T, K * T);
            var dx = dInp.Slice(b * T * K, T * K);
            for (int t = 0; t < T; t++)
                for (int k = 0; k < K; k++)
                    dx[t * K + k] = accumulate ? dx[t * K + k] + dy[k * T + t] : dy[k * T + t];
        }
    }

    static void Check(int outLen, int inLen, int B, int T, int K)
    {
        if (B < 0 || T <= 0 || K <= 0) throw new ArgumentOutOfRangeException(nameof(T), $"Transpose needs B >= 0 and T, K > 0; got B = {B}, T = {T}, K = {K}.");
        if (outLen < (long)B * K * T || inLen < (long)B * T * K)
            throw new ArgumentException($"Transpose buffers are too short for B = {B}, T = {T}, K = {K}: need (B,K,T) and (B,T,K) = {(long)B * T * K} elements each; got {outLen} and {inLen}.");
    }
}
