using System.Numerics;
using System.Numerics.Tensors;

namespace Bert.Runtime.Kernels;

/// <summary>Table lookup: row n of the output is row ids[n] of the table.
/// N rows looked up · C hidden · V vocabulary (table rows, = table.Length / C).</summary>
public static class Embedding
{
    public static void Forward<T>(Span<T> out_, ReadOnlySpan<T> table, ReadOnlySpan<int> ids, int N, int C)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // out_ (N,C), table (V,C), ids (N)
        int V = Check(table.Length, out_.Length, ids.Length, N, C);
        for (int n = 0; n < N; n++)
        {
            int id = CheckId(ids[n], n, V);
            table.Slice(id * C, C).CopyTo(out_.Slice(n * C, C));
        }
    }

    public static void Backward<T>(Span<T> dTable, ReadOnlySpan<T> dOut, ReadOnlySpan<int> ids, int N, int C)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // dTable (V,C) +=, dOut (N,C), ids (N)
        // Serial over n: repeated ids add into the same table row, in the fixed order n = 0..N-1.
        int V = Check(dTable.Length, dOut.Length, ids.Length, N, C);
        for (int n = 0; n < N; n++)
        {
            int id = CheckId(ids[n], n, V);
            Span<T> row = dTable.Slice(id * C, C);
            TensorPrimitives.Add(row, dOut.Slice(n * C, C), row);
        }
    }

    /// <summary>Checks the sizes and returns V, the table's row count.</summary>
    static int Check(int tableLen, int rowsLen, int idsLen, int N, int C)
    {
        if (N < 0 || C <= 0) throw new ArgumentOutOfRangeException(nameof(C), $"Embedding needs N >= 0 and C > 0; got N = {N}, C = {C}.");
        if (rowsLen < N * C || idsLen < N)
            throw new ArgumentException($"Embedding buffers are too short for N = {N}, C = {C}: need (N,C) = {N * C} and ids (N) = {N} elements.");
        return tableLen / C;
    }

    static int CheckId(int id, int n, int V) => (uint)id < (uint)V ? id
        : throw new ArgumentOutOfRangeException("ids", id, $"Embedding id {id} at position {n} is outside the table's rows [0, {V}).");
}
