/* model_gemm.h - matrix products with few rows (private to the engine).
 *
 * Decoding a batch multiplies a handful of activation rows (M <= 64) by every
 * weight matrix. A general sgemm packs the weight panel on every call, which
 * for so few rows costs about as much as the arithmetic (perf: OpenBLAS's
 * copy routines took 29% of the cycles of batch-32 generation). These kernels
 * instead transpose the small operand once (K x M, stays in L1/L2) and stream
 * each weight exactly once in its stored layout, broadcasting weights against
 * register-held columns of the transposed activations. */
#ifndef RLAIF_MODEL_GEMM_H
#define RLAIF_MODEL_GEMM_H

#include <stddef.h>

#define RLAIF_SMALLM_MAX 64 /* most rows the kernels take */

/* C (M, N) = beta C + A (M, K) @ op(W), row-major, 1 <= M <= RLAIF_SMALLM_MAX.
 * w_trans = 0: W is (K, N) with leading dimension ldw (Conv1D weights);
 * w_trans = 1: W is (N, K) with leading dimension ldw (the tied LM head).
 * beta is 0 (C is not read) or 1. scratch holds K * RLAIF_SMALLM_MAX floats.
 * Splits N over the OpenMP team (nthreads, one parallel region). Each output
 * is one fp32 fused multiply-add chain over k in order. */
void rlaif_smallm_gemm(int w_trans, int M, int N, int K, const float *A, int lda, const float *W,
                       int ldw, float beta, float *C, int ldc, float *scratch, int nthreads);

/* Which kernel rlaif_smallm_gemm runs: "avx512", "avx2" or "c". force: NULL
 * keeps the run-time choice, otherwise one of those names (tests). */
const char *rlaif_smallm_kernel(const char *force);

#endif
