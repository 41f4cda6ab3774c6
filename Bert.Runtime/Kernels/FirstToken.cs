using System.Numerics;
using System.Numerics.Tensors;

namespace Bert.Runtime.Kernels;

/// <summary>Takes the first position of every sequence (BERT's [CLS] token, fed to the pooler).
/// B batch · T sequence · C hidden. (The element type is TFloat here because T is the sequence length.)</summary>
public static class FirstToken
{
    public static void Forward<TFloat>(Span<TFloat> out_, ReadOnlySpan<TFloat> inp, int B, int T, int C)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        // out_ (B,C), inp (B,T,C)
        Check(out_.Length, inp.Length, B, T, C);
        for (int b = 0; b < B; b++)
            inp.Slice(b * T * C, C).CopyTo(out_.Slice(b * C, C));
    }

    public static void Backward<TFloat>(Span<TFloat> dInp, ReadOnlySpan<TFloat> dOut, int B, int T, int C)
        where TFloat : unmanaged, IBinaryFloatingPointIeee754<TFloat>
    {
        // dInp (B,T,C) +=, dOut (B,C)
        Check(dOut.Length, dInp.Length, B, T, C);
        for (int b = 0; b < B; b++)
        {
            Span<TFloat> dst = dInp.Slice(b * T * C, C);
            TensorPrimitives.Add(dst, dOut.Slice(b * C, C), dst);
        }
    }

    static void Check(int firstLen, int allLen, int B, int T, int C)
    {
        if (B < 0 || T <= 0 || C <= 0) throw new ArgumentOutOfRangeException(nameof(T), $"FirstToken needs B >= 0 and T, C > 0; got B = {B}, T = {T}, C = {C}.");
        if (firstLen < B * C || allLen < B * T * C)
            throw new ArgumentException($"FirstToken buffers are too short for B = {B}, T = {T}, C = {C}: need (B,C) = {B * C} and (B,T,C) = {B * T * C} elements.");
    }
}
