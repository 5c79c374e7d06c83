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

/* Applied to finished blocks of C: dst[i] = f(src[i]) for i < n. */
typedef void rlaif_smallm_post(float *dst, const float *src, size_t n);

/* C (M, N) = A (M, K) @ op(W) [+ bias (N)] [+ res (M, N)], row-major,
 * 1 <= M <= RLAIF_SMALLM_MAX; bias and res may be NULL, res has leading
 * dimension ldc (it may be C itself). w_trans = 0: W is (K, N) with leading
 * dimension ldw (GPT-2 Conv1D weights); w_trans = 1: W is (N, K) (nn.Linear
 * weights of OPT/Llama, the LM head).
 * post (may be NULL): post_out (M, N, leading dimension ldc) = post(C), done
 * block by block while the block is in cache. scratch holds
 * K * RLAIF_SMALLM_MAX floats. Splits N over the OpenMP team (nthreads, one
 * parallel region). Each output is the fp32 sum over k, then + bias, then
 * + res: in order (one FMA chain) in the tiles and, for at most 8 rows, the
 * w_trans = 0 stream kernel; as 16 partial sums added at the end in the
 * w_trans = 1 stream kernel (AVX-512, at most 16 rows: dot products along
 * each weight row, which is how that layout streams from memory). */
void rlaif_smallm_gemm(int w_trans, int M, int N, int K, const float *A, int lda, const float *W,
                       int ldw, const float *bias, const float *res, float *C, int ldc,
                       rlaif_smallm_post *post, float *post_out, float *scratch, int nthreads);

/* Writes bias (+ res) into rows [0, N) x columns [o0, o1) of out (N rows,
 * OC apart; res likewise); bias NULL: res alone (res may be out itself).
 * Returns the beta for the product that adds into it: 0 when there is
 * neither (nothing written). A layer's product that does not add them on
 * the way out starts from this. */
float rlaif_bias_fill(float *out, const float *bias, const float *res, int N, int OC, int o0,
                      int o1);

/* Row-major y = op(A) x + beta y, A (M, N), through cblas_sgemv: one
 * activation row (decoding a single sequence) on the sgemm path. Output
 * entries split over nthreads threads, each streaming one contiguous block of
 * rows of A (a matrix-vector product reads every weight once: bandwidth
 * bound). */
void rlaif_gemv(int ta, int M, int N, const float *A, int lda, const float *x, float beta, float *y,
                int nthreads);

/* C[m][n0 + j] = acc[m * lda_acc + j] (+ bias[n0 + j]) (+ res[m][n0 + j])
 * for m < M, j < w, then post_out = post(C) on that block (the kernels'
 * shared epilogue). */
void rlaif_smallm_store(int M, int w, int n0, const float *acc, int lda_acc, const float *bias,
                        const float *res, float *C, int ldc, rlaif_smallm_post *post,
                        float *post_out);

/* Weights packed once for many few-row products (decoding multiplies by the
 * same weights every step; gemm_packed.c says why and what it gains).
 * op(W) (K, N) as 64-column panels, each K rows of 64 floats, zero-padded:
 * rlaif_f32_packed_size bytes (64-byte aligned memory: the kernel's loads
 * are aligned). rlaif_f32_pack: W as in rlaif_smallm_gemm (w_trans 0:
 * (K, N), 1: (N, K), leading dimension ldw). rlaif_f32_packed_gemm: C (M,
 * N) = A (M, K) @ op(W) [+ bias] [+ res], then post, with the arguments and
 * the rounding of rlaif_smallm_gemm's in-order kernels (one FMA chain over k
 * per output, then + bias, then + res), any M; panels split over the team.
 * The AVX-512 kernel where rlaif_smallm_kernel says "avx512", plain C
 * otherwise (correct, slow: the chooser never picks it). */
size_t rlaif_f32_packed_size(int K, int N);
void rlaif_f32_pack(int w_trans, int K, int N, const float *W, int ldw, float *packed,
                    int nthreads);
void rlaif_f32_packed_gemm(int M, int N, int K, const float *A, int lda, const float *packed,
                           const float *bias, const float *res, float *C, int ldc,
                           rlaif_smallm_post *post, float *post_out, int nthreads);

/* Which kernel rlaif_smallm_gemm runs: "avx512", "avx2" or "c". force: NULL
 * keeps the run-time choice, otherwise one of those names (tests). */
const char *rlaif_smallm_kernel(const char *force);

#endif
