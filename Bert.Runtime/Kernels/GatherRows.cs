using System.Numerics;
using System.Numerics.Tensors;

namespace Bert.Runtime.Kernels;

/// <summary>Gathers G chosen rows of an (N,C) matrix, e.g. the masked positions fed to the MLM head.
/// G gathered rows · N input rows (= inp.Length / C) · C hidden. Rows may repeat.</summary>
public static class GatherRows
{
    public static void Forward<T>(Span<T> out_, ReadOnlySpan<T> inp, ReadOnlySpan<int> rows, int G, int C)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // out_ (G,C), inp (N,C), rows (G)
        int N = Check(inp.Length, out_.Length, rows.Length, G, C);
        for (int g = 0; g < G; g++)
        {
            int r = CheckRow(rows[g], g, N);
            inp.Slice(r * C, C).CopyTo(out_.Slice(g * C, C));
        }
    }

    public static void Backward<T>(Span<T> dInp, ReadOnlySpan<T> dOut, ReadOnlySpan<int> rows, int G, int C)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // dInp (N,C) +=, dOut (G,C), rows (G)
        // Serial over g: a repeated row accumulates in the fixed order g = 0..G-1.
        int N = Check(dInp.Length, dOut.Length, rows.Length, G, C);
        for (int g = 0; g < G; g++)
        {
            int r = CheckRow(rows[g], g, N);
            Span<T> dst = dInp.Slice(r * C, C);
            TensorPrimitives.Add(dst, dOut.Slice(g * C, C), dst);
        }
    }

    /// <summary>Checks the sizes and returns N, the input's row count.</summary>
    static int Check(int inpLen, int outLen, int rowsLen, int G, int C)
    {
        if (G < 0 || C <= 0) throw new ArgumentOutOfRangeException(nameof(C), $"GatherRows needs G >= 0 and C > 0; got G = {G}, C = {C}.");
        if (outLen < G * C || rowsLen < G)
            throw new ArgumentException($"GatherRows buffers are too short for G = {G}, C = {C}: need (G,C) = {G * C} and rows (G) = {G} elements.");
        return inpLen / C;
    }

    static int CheckRow(int row, int g, int N) => (uint)row < (uint)N ? row
        : throw new ArgumentOutOfRangeException("rows", row, $"GatherRows row {row} at position {g} is outside the input's rows [0, {N}).");
}
