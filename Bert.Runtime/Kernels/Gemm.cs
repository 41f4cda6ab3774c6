using System.Numerics;

namespace Bert.Runtime.Kernels;

/// <summary>Row-major general matrix product: C(M,N) = alpha · op(A)(M,K) · op(B)(K,N) + beta · C.
/// op(X) is X or Xᵀ; lda/ldb/ldc are row strides of the matrices as stored.</summary>
public static class Gemm
{
    public static void Run<T>(bool transA, bool transB, int M, int N, int K,
        T alpha, ReadOnlySpan<T> A, int lda, ReadOnlySpan<T> B, int ldb,
        T beta, Span<T> C, int ldc) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // Placeholder reference implementation; replaced by the OpenBLAS / managed SIMD dispatcher.
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                T acc = T.Zero;
                for (int k = 0; k < K; k++)
                {
                    T a = transA ? A[k * lda + i] : A[i * lda + k];
                    T b = transB ? B[j * ldb + k] : B[k * ldb + j];
                    acc += a * b;
                }
                C[i * ldc + j] = alpha * acc + (beta == T.Zero ? T.Zero : beta * C[i * ldc + j]);
            }
    }
}
