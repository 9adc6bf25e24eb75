/* linear — the Linear layer of training, forward and backward side by side,
 * over the multithreaded f32 GEMM of the ops stage. Weights are the PyTorch
 * layout W[out][in]; activations are row-major [M][in]. */
#include "train/train_internal.h"

void t_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
            float beta, float *C, int ldc)
{
    if (M == 0 || N == 0)
        return;
    dm_sgemm_mt(M, N, K, alpha, A, lda, ta, B, ldb, tb, beta, C, ldc);
}

/* Y[M][out] = X[M][in] · Wᵀ */
void t_linear_forward(float *Y, const float *X, const float *W, int M, int in, int out)
{
    t_gemm(false, true, M, out, in, 1.0f, X, in, W, in, 0.0f, Y, out);
}

/* dX[M][in] += dY[M][out] · W (skipped when dX is NULL: detached input);
 * dW[out][in] += dYᵀ · X (skipped when dW is NULL: frozen weight). */
void t_linear_backward(float *dX, float *dW, const float *dY, const float *X, const float *W, int M, int in, int out)
{
    if (M == 0)
        return;
    if (dX)
        t_gemm(false, false, M, in, out, 1.0f, dY, out, W, in, 1.0f, dX, in);
    if (dW)
        t_gemm(true, false, out, in, M, 1.0f, dY, out, X, in, 1.0f, dW, in);
}
