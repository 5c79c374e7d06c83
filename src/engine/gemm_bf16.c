/* gemm_bf16.c - bfloat16 matrix products with fp32 accumulation (see
 * gemm_bf16.h): conversions, the plain C kernel and the dispatch. */
#include "config.h"
#include "gemm_bf16.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ conversions */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Round to nearest even on the bits: adding 0x7FFF plus the lowest kept bit
 * carries into the kept half exactly when the dropped half is above one
 * half, or equal to it with an odd kept half. A carry out of the
 * significand moves to the next exponent (or to Inf), as rounding should. */
static inline rlaif_bf16 bf16_round(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (rlaif_bf16)((u >> 16) | 0x0040u); /* NaN */
    return (rlaif_bf16)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static inline float bf16_float(rlaif_bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void rlaif_bf16_from_f32(rlaif_bf16 *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_round(src[i]);
}

void rlaif_bf16_to_f32(float *dst, const rlaif_bf16 *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_float(src[i]);
}

/* ---------------------------------------------------------------- plain C */

/* Element (r, c) of a stored operand, as the bf16 value in a float. */
static inline float elem(const void *X, int f32, int ld, int trans, int r, int c) {
    size_t at = trans ? (size_t)c * ld + r : (size_t)r * ld + c;
    return f32 ? bf16_float(bf16_round(((const float *)X)[at]))
               : bf16_float(((const rlaif_bf16 *)X)[at]);
}

/* Each output the fp32 sum over k in order, then beta * C added. Rows split
 * over the team. */
static void gemm_c(int ta, int tb, int M, int N, int K, const void *A, int a_f32, int lda,
                   const void *B, int b_f32, int ldb, float beta, float *C, int ldc, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++)
                s += elem(A, a_f32, lda, ta, m, k) * elem(B, b_f32, ldb, tb, k, n);
            float *c = C + (size_t)m * ldc + n;
            *c = beta == 0.0f ? s : s + beta * *c;
        }
}

/* --------------------------------------------------------------- dispatch */

enum { K_C, K_AVX512BF16, K_AMX };
static const char *kernel_names[] = {"c", "avx512bf16", "amx"};
static int forced = -1;

static int best_kernel(void) {
    return K_C;
}

static int kernel_id(void) {
    return forced >= 0 ? forced : best_kernel();
}

const char *rlaif_bf16_kernel(const char *force) {
    if (force)
        for (int i = 0; i <= best_kernel(); i++)
            if (!strcmp(force, kernel_names[i])) forced = i;
    return kernel_names[kernel_id()];
}

void rlaif_bf16_gemm_ex(int ta, int tb, int M, int N, int K, const void *A, int a_f32, int lda,
                        const void *B, int b_f32, int ldb, float beta, float *C, int ldc,
                        int nthreads) {
    if (M <= 0 || N <= 0) return;
    (void)kernel_id();
    gemm_c(ta, tb, M, N, K, A, a_f32, lda, B, b_f32, ldb, beta, C, ldc, nthreads);
}

void rlaif_bf16_gemm(int ta, int tb, int M, int N, int K, const rlaif_bf16 *A, int lda,
                     const rlaif_bf16 *B, int ldb, float beta, float *C, int ldc, int nthreads) {
    rlaif_bf16_gemm_ex(ta, tb, M, N, K, A, 0, lda, B, 0, ldb, beta, C, ldc, nthreads);
}

void rlaif_bf16_smallm(int w_trans, int M, int N, int K, const float *A, int lda,
                       const rlaif_bf16 *W, int ldw, float beta, float *C, int ldc, int nthreads) {
    rlaif_bf16_gemm_ex(0, w_trans, M, N, K, A, 1, lda, W, 0, ldw, beta, C, ldc, nthreads);
}
