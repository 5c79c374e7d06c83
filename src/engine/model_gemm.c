/* model_gemm.c - matrix products with few rows (see model_gemm.h).
 *
 * C (M, N) = A (M, K) @ op(W) is computed as its transpose: with
 * AT = A^T (K, Mp) (Mp = M rounded up to 16, zero-padded, built once per
 * call), output column n of C is  sum_k S(n, k) AT[k, :]  where S(n, k) is
 * W[k, n] (w_trans = 0) or W[n, k] (w_trans = 1). A tile of MR output
 * columns keeps MR x Mp accumulators in registers; each step k loads one row
 * of AT (Mp floats, from L1/L2) and broadcasts MR weights, so every weight is
 * read once from memory, in its stored layout, with no packing. The tile is
 * then written transposed into C (MR x M scalars per MR x M x K FMAs).
 *
 * Kernels: AVX-512F (32 registers: up to 24 accumulators), AVX2 + FMA, and
 * plain C, chosen at run time with __builtin_cpu_supports; the SIMD ones are
 * compiled with __attribute__((target)) so the build needs no -march. */
#include "config.h"
#include "model_gemm.h"
#include "rlaif/core/error.h"
#include "simd_x86.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

#define MR_MAX 24

/* ------------------------------------------------------------- epilogue */

SIMD_CLONES float rlaif_bias_fill(float *out, const float *bias, const float *res, int N, int OC,
                                  int o0, int o1) {
    if (!bias && !res) return 0.0f;
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * OC;
        const float *r = res ? res + (size_t)n * OC : NULL;
        if (r && bias) {
#pragma omp simd
            for (int j = o0; j < o1; j++) o[j] = r[j] + bias[j];
        } else if (bias) {
#pragma omp simd
            for (int j = o0; j < o1; j++) o[j] = bias[j];
        } else if (r != o) {
            memcpy(o + o0, r + o0, sizeof(float) * (size_t)(o1 - o0));
        }
    }
    return 1.0f;
}

/* One row: c = o (+ b) (+ r), added in that order. The presence of bias and
 * residual is decided once per row, not per element: with the test inside
 * the loop it stayed scalar, 5% of a GPT-2 batch-16 decoding step. */
static void store_row(float *c, const float *o, const float *b, const float *r, int w) {
    if (b && r) {
#pragma omp simd
        for (int j = 0; j < w; j++) c[j] = o[j] + b[j] + r[j];
    } else if (b) {
#pragma omp simd
        for (int j = 0; j < w; j++) c[j] = o[j] + b[j];
    } else if (r) {
#pragma omp simd
        for (int j = 0; j < w; j++) c[j] = o[j] + r[j];
    } else {
        memcpy(c, o, sizeof(float) * (size_t)w);
    }
}

void rlaif_smallm_store(int M, int w, int n0, const float *acc, int lda_acc, const float *bias,
                        const float *res, float *C, int ldc, rlaif_smallm_post *post,
                        float *post_out) {
    for (int m = 0; m < M; m++) {
        float *c = C + (size_t)m * ldc + n0;
        store_row(c, acc + (size_t)m * lda_acc, bias ? bias + n0 : NULL,
                  res ? res + (size_t)m * ldc + n0 : NULL, w);
        if (post) post(post_out + (size_t)m * ldc + n0, c, (size_t)w);
    }
}

/* Computes out[r * RLAIF_SMALLM_MAX + m] for r < mr, m < Mp (tile of mr
 * columns starting at S). */
typedef void tile_fn(int wt, int mr, int K, const float *S, size_t ldw, const float *AT, int Mp,
                     float *out);

/* ------------------------------------------------------------------ plain C */

static void tile_c(int wt, int mr, int K, const float *S, size_t ldw, const float *AT, int Mp,
                   float *out) {
    for (int r = 0; r < mr; r++) {
        float *o = out + (size_t)r * RLAIF_SMALLM_MAX;
        for (int m = 0; m < Mp; m++) o[m] = 0.0f;
        for (int k = 0; k < K; k++) {
            float s = wt ? S[(size_t)r * ldw + k] : S[(size_t)k * ldw + r];
            const float *at = AT + (size_t)k * Mp;
            for (int m = 0; m < Mp; m++) o[m] += s * at[m];
        }
    }
}

#ifdef HAVE_X86
/* ------------------------------------------------------------------ AVX-512 */

/* MR columns x NV vectors of 16 rows; constant MR/NV/WT after inlining, so the
 * accumulators live in registers (MR * NV <= 24, + NV + 1 of 32 zmm). */
static inline __attribute__((always_inline, target("avx512f"))) void
tile512_body(const int WT, const int MR, const int NV, int K, const float *S, size_t ldw,
             const float *AT, int Mp, float *out) {
    __m512 acc[MR_MAX][4];
#pragma GCC unroll 24
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *at = AT + (size_t)k * Mp;
        __m512 a[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) a[v] = _mm512_loadu_ps(at + 16 * v);
        const float *s = WT ? S + k : S + (size_t)k * ldw;
        /* Row k of a Conv1D weight: the line two lines to the right is what
         * a later tile needs; each row is on its own page, where hardware
         * prefetchers stop, so fetch it into L2 now. */
        if (!WT) _mm_prefetch((const char *)(s + 32), _MM_HINT_T1);
#pragma GCC unroll 24
        for (int r = 0; r < MR; r++) {
            __m512 b = _mm512_set1_ps(WT ? s[(size_t)r * ldw] : s[r]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(b, a[v], acc[r][v]);
        }
    }
#pragma GCC unroll 24
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            _mm512_storeu_ps(out + (size_t)r * RLAIF_SMALLM_MAX + 16 * v, acc[r][v]);
}

#define TILE512(wt, mr, nv)                                                                        \
    static __attribute__((noinline, target("avx512f"))) void tile512_##wt##_##mr##_##nv(           \
        int K, const float *S, size_t ldw, const float *AT, int Mp, float *out) {                  \
        tile512_body(wt, mr, nv, K, S, ldw, AT, Mp, out);                                          \
    }
TILE512(0, 24, 1)
TILE512(0, 12, 2)
TILE512(0, 8, 3)
TILE512(0, 6, 4)
TILE512(0, 1, 1)
TILE512(0, 1, 2)
TILE512(0, 1, 3)
TILE512(0, 1, 4)
TILE512(1, 24, 1)
TILE512(1, 12, 2)
TILE512(1, 8, 3)
TILE512(1, 6, 4)
TILE512(1, 1, 1)
TILE512(1, 1, 2)
TILE512(1, 1, 3)
TILE512(1, 1, 4)
#undef TILE512

/* mr is the full tile width of Mp (mr512) or 1 (tail columns). */
static int mr512(int Mp) {
    static const int mr[5] = {0, 24, 12, 8, 6};
    return mr[Mp / 16];
}

static void tile_avx512(int wt, int mr, int K, const float *S, size_t ldw, const float *AT, int Mp,
                        float *out) {
    int nv = Mp / 16, full = mr > 1;
    switch (wt * 8 + full * 4 + nv - 1) {
#define CASE(i, wt_, mr_, nv_)                                                                     \
    case i:                                                                                        \
        tile512_##wt_##_##mr_##_##nv_(K, S, ldw, AT, Mp, out);                                     \
        break;
        CASE(0, 0, 1, 1)
        CASE(1, 0, 1, 2)
        CASE(2, 0, 1, 3)
        CASE(3, 0, 1, 4)
        CASE(4, 0, 24, 1)
        CASE(5, 0, 12, 2)
        CASE(6, 0, 8, 3)
        CASE(7, 0, 6, 4)
        CASE(8, 1, 1, 1)
        CASE(9, 1, 1, 2)
        CASE(10, 1, 1, 3)
        CASE(11, 1, 1, 4)
        CASE(12, 1, 24, 1)
        CASE(13, 1, 12, 2)
        CASE(14, 1, 8, 3)
        CASE(15, 1, 6, 4)
#undef CASE
    }
}

/* C[m][r] = out[r * RLAIF_SMALLM_MAX + m] (+ bias[r]) (+ res[m][r]) for
 * r < w <= MR_MAX, m < M: 16 x 16 register transposes, masked row stores. */
static __attribute__((target("avx512f"))) void
scatter512(const float *out, int w, int M, const float *bias, const float *res, float *C, int ldc) {
    for (int r0 = 0; r0 < w; r0 += 16) {
        int wr = w - r0 < 16 ? w - r0 : 16;
        __mmask16 mask = (__mmask16)((1u << wr) - 1);
        __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + r0) : _mm512_setzero_ps();
        for (int m0 = 0; m0 < M; m0 += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < wr ? _mm512_loadu_ps(out + (size_t)(r0 + i) * RLAIF_SMALLM_MAX + m0)
                              : _mm512_setzero_ps();
            transpose16(r);
            int m1 = M - m0 < 16 ? M - m0 : 16;
            for (int i = 0; i < m1; i++) {
                size_t at = (size_t)(m0 + i) * ldc + r0;
                __m512 v = r[i];
                if (bias) v = _mm512_add_ps(v, b);
                if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, res + at));
                _mm512_mask_storeu_ps(C + at, mask, v);
            }
        }
    }
}

/* AT[k][m] = A[m][k] for m < M, 0 for M <= m < Mp; k in [k0, k1). */
static __attribute__((target("avx512f"))) void transpose_in512(const float *A, int lda, int M,
                                                               int Mp, int k0, int k1, float *AT) {
    int k = k0;
    for (; k + 16 <= k1; k += 16)
        for (int m0 = 0; m0 < Mp; m0 += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = m0 + i < M ? _mm512_loadu_ps(A + (size_t)(m0 + i) * lda + k)
                                  : _mm512_setzero_ps();
            transpose16(r);
            for (int j = 0; j < 16; j++) _mm512_storeu_ps(AT + (size_t)(k + j) * Mp + m0, r[j]);
        }
    for (; k < k1; k++) {
        float *at = AT + (size_t)k * Mp;
        for (int m = 0; m < M; m++) at[m] = A[(size_t)m * lda + k];
        for (int m = M; m < Mp; m++) at[m] = 0.0f;
    }
}

/* --------------------------------------------------------------- AVX2 + FMA */

/* MR columns x NV vectors of 8 rows starting at row m0 (16 ymm: MR * NV
 * accumulators + NV + 1 <= 13). */
static inline __attribute__((always_inline, target("avx2,fma"))) void
tile256_body(const int WT, const int MR, const int NV, int K, const float *S, size_t ldw,
             const float *AT, int Mp, int m0, float *out) {
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *at = AT + (size_t)k * Mp + m0;
        __m256 a[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) a[v] = _mm256_loadu_ps(at + 8 * v);
        const float *s = WT ? S + k : S + (size_t)k * ldw;
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            __m256 b = _mm256_set1_ps(WT ? s[(size_t)r * ldw] : s[r]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(b, a[v], acc[r][v]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            _mm256_storeu_ps(out + (size_t)r * RLAIF_SMALLM_MAX + m0 + 8 * v, acc[r][v]);
}

#define TILE256(wt, mr, nv)                                                                        \
    static __attribute__((noinline, target("avx2,fma"))) void tile256_##wt##_##mr##_##nv(          \
        int K, const float *S, size_t ldw, const float *AT, int Mp, int m0, float *out) {          \
        tile256_body(wt, mr, nv, K, S, ldw, AT, Mp, m0, out);                                      \
    }
TILE256(0, 2, 4)
TILE256(0, 4, 2)
TILE256(0, 1, 4)
TILE256(0, 1, 2)
TILE256(1, 2, 4)
TILE256(1, 4, 2)
TILE256(1, 1, 4)
TILE256(1, 1, 2)
#undef TILE256

/* Full tiles are 4 columns: rows in chunks of 32 (2 x 4 ymm) and 16 (4 x 2). */
static void tile_avx2(int wt, int mr, int K, const float *S, size_t ldw, const float *AT, int Mp,
                      float *out) {
    for (int m0 = 0; m0 < Mp; m0 += 32) {
        int wide = Mp - m0 >= 32;
        if (mr == 1 && wide)
            (wt ? tile256_1_1_4 : tile256_0_1_4)(K, S, ldw, AT, Mp, m0, out);
        else if (mr == 1)
            (wt ? tile256_1_1_2 : tile256_0_1_2)(K, S, ldw, AT, Mp, m0, out);
        else if (!wide)
            (wt ? tile256_1_4_2 : tile256_0_4_2)(K, S, ldw, AT, Mp, m0, out);
        else
            for (int r = 0; r < 4; r += 2) /* mr == 4 */
                (wt ? tile256_1_2_4 : tile256_0_2_4)(K, wt ? S + (size_t)r * ldw : S + r, ldw, AT,
                                                     Mp, m0, out + (size_t)r * RLAIF_SMALLM_MAX);
    }
}
/* ------------------------------------------------- AVX-512, at most 8 rows
 *
 * With so few rows the tiles above are bound by their arithmetic (rows are
 * padded to 16) and by reading a weight strip that crosses a page per k
 * (w_trans 0) or 24 rows at once (w_trans 1), which hardware prefetchers
 * follow badly: measured 5-8 GB/s of weights on one AMD EPYC core against
 * 13 GB/s for cblas_sgemm and 24 GB/s for a plain read. These kernels read
 * the weights as a few sequential streams instead. */

#define STREAM_MAX_M 8
/* one kernel per row count 1..STREAM_MAX_M: X(1) .. X(8) */
#define EACH_M(X)   X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8)
#define STREAM_COLS 2048 /* w_trans 0: most columns per chunk (an 8 KB run of each row) */

/* w_trans 0, columns [n0, n0 + w) (w <= STREAM_COLS): acc (M, w) in L1,
 * rows k..k+3 of W streamed together; each output is one FMA chain over k
 * in order (as the tiles). M is a constant after inlining (one kernel per
 * row count), so the M x 4 broadcast activations stay in registers: with M
 * a run-time value they went through the stack, 20% slower (one EPYC core,
 * 4 rows). */
static inline __attribute__((always_inline, target("avx512f"))) void
stream_rows512_body(const int M, int w, int K, const float *A, int lda, const float *W, size_t ldw,
                    float *acc) {
    memset(acc, 0, sizeof(float) * (size_t)M * STREAM_COLS);
    int k = 0;
    for (; k + 4 <= K; k += 4) {
        const float *w0 = W + (size_t)k * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
        /* rows k+8..k+11, two groups ahead: each row's run is only w floats,
         * too short for the hardware prefetchers to get going */
        int pf = k + 12 <= K ? 8 : 0;
        __m512 a[STREAM_MAX_M][4];
#pragma GCC unroll 8
        for (int m = 0; m < M; m++)
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) a[m][j] = _mm512_set1_ps(A[(size_t)m * lda + k + j]);
        for (int c = 0; c < w; c += 16) {
            __mmask16 mk = (__mmask16)(w - c >= 16 ? 0xFFFF : (1u << (w - c)) - 1);
            __m512 x0 = _mm512_maskz_loadu_ps(mk, w0 + c), x1 = _mm512_maskz_loadu_ps(mk, w1 + c);
            __m512 x2 = _mm512_maskz_loadu_ps(mk, w2 + c), x3 = _mm512_maskz_loadu_ps(mk, w3 + c);
#pragma GCC unroll 4
            for (int j = 0; pf && j < 4; j++)
                _mm_prefetch((const char *)(w0 + (size_t)(pf + j) * ldw + c), _MM_HINT_T0);
#pragma GCC unroll 8
            for (int m = 0; m < M; m++) {
                float *o = acc + (size_t)m * STREAM_COLS + c;
                __m512 v = _mm512_load_ps(o);
                v = _mm512_fmadd_ps(a[m][0], x0, v);
                v = _mm512_fmadd_ps(a[m][1], x1, v);
                v = _mm512_fmadd_ps(a[m][2], x2, v);
                v = _mm512_fmadd_ps(a[m][3], x3, v);
                _mm512_store_ps(o, v);
            }
        }
    }
    for (; k < K; k++) {
        const float *w0 = W + (size_t)k * ldw;
        for (int c = 0; c < w; c += 16) {
            __mmask16 mk = (__mmask16)(w - c >= 16 ? 0xFFFF : (1u << (w - c)) - 1);
            __m512 x0 = _mm512_maskz_loadu_ps(mk, w0 + c);
#pragma GCC unroll 8
            for (int m = 0; m < M; m++) {
                float *o = acc + (size_t)m * STREAM_COLS + c;
                __m512 am = _mm512_set1_ps(A[(size_t)m * lda + k]);
                _mm512_store_ps(o, _mm512_fmadd_ps(am, x0, _mm512_load_ps(o)));
            }
        }
    }
}

#define ROWS512(mm)                                                                                \
    static __attribute__((noinline, target("avx512f"))) void rows512_##mm(                         \
        int w, int K, const float *A, int lda, const float *W, size_t ldw, float *acc) {           \
        stream_rows512_body(mm, w, K, A, lda, W, ldw, acc);                                        \
    }
EACH_M(ROWS512)
#undef ROWS512

typedef void rows_fn(int w, int K, const float *A, int lda, const float *W, size_t ldw, float *acc);
#define ENTRY(mm) rows512_##mm,
static rows_fn *const rows512[STREAM_MAX_M + 1] = {NULL, EACH_M(ENTRY)};
#undef ENTRY

/* w_trans 1, output columns n0 .. n0 + 3 (rows of W, each read once in
 * order; rows past nr repeat row nr - 1, their sums unused) against M <= 4
 * rows of activations: M dot products over k each, 16 partial sums per dot
 * product. M is a constant after inlining, so the 4 M sums stay in
 * registers. smallm_stream runs more rows (up to DOTS_MAX_M) as blocks of 4
 * over the same four weight rows, which the first block brought into L1.
 * Measured on a replica of a TinyLlama-shape 1.1B decoding step's products
 * (4.4 GB, 2 threads, AMD EPYC, medians of 5-11 alternating with a plain
 * read of the same bytes at 53-63 GB/s):
 *  - four weight rows at once, the next four prefetched: 1 activation row
 *    75-78 ms against 86-121 ms with two rows and 86-87 ms for split
 *    cblas_sgemv; 4 rows 95-100 ms against 107-115;
 *  - 8 rows as two blocks of 4: 143 ms against 173 for one 8-row kernel (two
 *    weight rows at once, the most its registers hold); 16 rows as four
 *    blocks: 205 ms against 302 for the 16-row tiles and 354 for split
 *    sgemm; at 32 rows the tiles win (260 against 397 ms). */
#define DOTS_R     4                   /* weight rows (output columns) at once */
#define DOTS_M     4                   /* activation rows per kernel call */
#define DOTS_MAX_M 16                  /* activation rows smallm_stream takes, DOTS_M at a time */
#define EACH_M4(X) X(1) X(2) X(3) X(4) /* the kernels' row counts, 1..DOTS_M */
static inline __attribute__((always_inline, target("avx512f"))) void
dots512_body(const int M, int nr, int K, const float *A, int lda, const float *W, size_t ldw,
             float *out) {
    __m512 s[DOTS_R][DOTS_M];
    const float *r[DOTS_R];
#pragma GCC unroll 4
    for (int j = 0; j < DOTS_R; j++) {
        r[j] = W + (size_t)(j < nr ? j : nr - 1) * ldw;
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) s[j][m] = _mm512_setzero_ps();
    }
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 x[DOTS_R];
#pragma GCC unroll 4
        for (int j = 0; j < DOTS_R; j++) {
            /* the next four rows: one read stream, kept four rows ahead */
            _mm_prefetch((const char *)(W + (size_t)(DOTS_R + j) * ldw + k), _MM_HINT_T0);
            x[j] = _mm512_loadu_ps(r[j] + k);
        }
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            __m512 a = _mm512_loadu_ps(A + (size_t)m * lda + k);
#pragma GCC unroll 4
            for (int j = 0; j < DOTS_R; j++) s[j][m] = _mm512_fmadd_ps(a, x[j], s[j][m]);
        }
    }
    if (k < K) {
        __mmask16 mk = (__mmask16)((1u << (K - k)) - 1);
        __m512 x[DOTS_R];
#pragma GCC unroll 4
        for (int j = 0; j < DOTS_R; j++) x[j] = _mm512_maskz_loadu_ps(mk, r[j] + k);
#pragma GCC unroll 4
        for (int m = 0; m < M; m++) {
            __m512 a = _mm512_maskz_loadu_ps(mk, A + (size_t)m * lda + k);
#pragma GCC unroll 4
            for (int j = 0; j < DOTS_R; j++) s[j][m] = _mm512_fmadd_ps(a, x[j], s[j][m]);
        }
    }
#pragma GCC unroll 4
    for (int m = 0; m < M; m++)
#pragma GCC unroll 4
        for (int j = 0; j < DOTS_R; j++) out[DOTS_R * m + j] = _mm512_reduce_add_ps(s[j][m]);
}

#define DOTS512(mm)                                                                                \
    static __attribute__((noinline, target("avx512f"))) void dots512_##mm(                         \
        int nr, int K, const float *A, int lda, const float *W, size_t ldw, float *out) {          \
        dots512_body(mm, nr, K, A, lda, W, ldw, out);                                              \
    }
EACH_M4(DOTS512)
#undef DOTS512

typedef void dots_fn(int nr, int K, const float *A, int lda, const float *W, size_t ldw,
                     float *out);
#define ENTRY(mm) dots512_##mm,
static dots_fn *const dots512[DOTS_M + 1] = {NULL, EACH_M4(ENTRY)};
#undef ENTRY

static void smallm_stream(int wt, int M, int N, int K, const float *A, int lda, const float *W,
                          int ldw, const float *bias, const float *res, float *C, int ldc,
                          rlaif_smallm_post *post, float *post_out, int nthreads) {
    /* w_trans 1: blocks of 64 output columns (64 rows of W, sequential) */
    int share = ((N + nthreads - 1) / nthreads + 15) / 16 * 16;
    int span = wt ? 64 : share < STREAM_COLS ? share : STREAM_COLS, chunks = (N + span - 1) / span;
#pragma omp parallel for schedule(dynamic) num_threads(nthreads) if (nthreads > 1)
    for (int c = 0; c < chunks; c++) {
        static _Thread_local float acc[STREAM_MAX_M * STREAM_COLS] __attribute__((aligned(64)));
        int n0 = c * span, w = N - n0 < span ? N - n0 : span;
        if (!wt) {
            rows512[M](w, K, A, lda, W + n0, (size_t)ldw, acc);
            rlaif_smallm_store(M, w, n0, acc, STREAM_COLS, bias, res, C, ldc, post, post_out);
            continue;
        }
        float part[DOTS_R * DOTS_M];
        for (int j = 0; j < w; j += DOTS_R) {
            int nr = w - j < DOTS_R ? w - j : DOTS_R;
            for (int m0 = 0; m0 < M; m0 += DOTS_M) {
                int mm = M - m0 < DOTS_M ? M - m0 : DOTS_M;
                dots512[mm](nr, K, A + (size_t)m0 * lda, lda, W + (size_t)(n0 + j) * ldw,
                            (size_t)ldw, part);
                for (int m = 0; m < mm; m++)
                    for (int i = 0; i < nr; i++) acc[(m0 + m) * 64 + j + i] = part[DOTS_R * m + i];
            }
        }
        rlaif_smallm_store(M, w, n0, acc, 64, bias, res, C, ldc, post, post_out);
    }
}
#endif /* HAVE_X86 */

/* ---------------------------------------------------------------- dispatch */

enum { K_C, K_AVX2, K_AVX512 };
static int forced = -1;

static int kernel_id(void) {
    if (forced >= 0) return forced;
#ifdef HAVE_X86
    static int chosen = -1;
    if (chosen < 0) {
        __builtin_cpu_init();
        chosen = __builtin_cpu_supports("avx512f")                                 ? K_AVX512
                 : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? K_AVX2
                                                                                   : K_C;
    }
    return chosen;
#else
    return K_C;
#endif
}

const char *rlaif_smallm_kernel(const char *force) {
    static const char *names[3] = {"c", "avx2", "avx512"};
    if (force)
        for (int i = 0; i < 3; i++)
            if (!strcmp(force, names[i])) forced = i;
    return names[kernel_id()];
}

/* Columns [n0, n0 + w) of C. */
static void one_tile(tile_fn *tile, int wt, int w, int n0, int M, int K, const float *W, int ldw,
                     const float *AT, int Mp, const float *bias, const float *res, float *C,
                     int ldc, float *out) {
    tile(wt, w, K, wt ? W + (size_t)n0 * ldw : W + n0, (size_t)ldw, AT, Mp, out);
    const float *b = bias ? bias + n0 : NULL, *rs = res ? res + n0 : NULL;
#ifdef HAVE_X86
    if (tile == tile_avx512) {
        scatter512(out, w, M, b, rs, C + n0, ldc);
        return;
    }
#endif
    for (int m = 0; m < M; m++) {
        float *c = C + (size_t)m * ldc + n0;
        const float *o = out + m, *rr = rs ? rs + (size_t)m * ldc : NULL;
        for (int r = 0; r < w; r++) {
            float v = o[r * RLAIF_SMALLM_MAX];
            if (b) v += b[r];
            if (rr) v += rr[r];
            c[r] = v;
        }
    }
}

void rlaif_smallm_gemm(int w_trans, int M, int N, int K, const float *A, int lda, const float *W,
                       int ldw, const float *bias, const float *res, float *C, int ldc,
                       rlaif_smallm_post *post, float *post_out, float *scratch, int nthreads) {
    int Mp = (M + 15) / 16 * 16, id = kernel_id(), mr = 4;
#ifdef HAVE_X86
    if (id == K_AVX512 && M <= (w_trans ? DOTS_MAX_M : STREAM_MAX_M)) {
        smallm_stream(w_trans, M, N, K, A, lda, W, ldw, bias, res, C, ldc, post, post_out,
                      nthreads);
        return;
    }
#endif
    tile_fn *tile = tile_c;
#ifdef HAVE_X86
    if (id == K_AVX512) tile = tile_avx512, mr = mr512(Mp);
    if (id == K_AVX2) tile = tile_avx2;
#endif
    int tiles = N / mr;
    float *AT = scratch;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
        /* A^T in blocks of 16 k */
#pragma omp for schedule(static)
        for (int kb = 0; kb < (K + 15) / 16; kb++) {
            int k0 = 16 * kb, k1 = k0 + 16 < K ? k0 + 16 : K;
#ifdef HAVE_X86
            if (id == K_AVX512) {
                transpose_in512(A, lda, M, Mp, k0, k1, AT);
                continue;
            }
#endif
            for (int k = k0; k < k1; k++) {
                float *at = AT + (size_t)k * Mp;
                for (int m = 0; m < M; m++) at[m] = A[(size_t)m * lda + k];
                for (int m = M; m < Mp; m++) at[m] = 0.0f;
            }
        }
        /* Chunks of 8 tiles handed out guided: each hand-out is the work
         * left over the team size, so the first are large contiguous
         * blocks and the last small ones; a thread that is descheduled on
         * a shared machine does not hold the other up (a chunk is ~50 us of
         * work), and neighbouring tiles, which share weight cache lines,
         * mostly stay on one thread. Handed out one chunk at a time
         * (dynamic), the two threads' chunks interleaved in every row of a
         * (K, N) weight and the kernel ran 15-35% slower on 2 threads
         * (GPT-2 124M's shapes at 32-64 rows, test_model_gemm bench, 2-core
         * EPYC, 2 runs each: c_proj of the MLP 139-165 -> 171-179 GFLOP/s,
         * c_fc 125-145 -> 174-202). The chunk with the last tile also does
         * the tail columns. */
        float out[MR_MAX * RLAIF_SMALLM_MAX] __attribute__((aligned(64)));
        int chunks = (tiles + 7) / 8;
#pragma omp for schedule(guided)
        for (int c = 0; c < (chunks ? chunks : 1); c++) {
            int t1 = 8 * c + 8 < tiles ? 8 * c + 8 : tiles, n1 = t1 * mr;
            for (int t = 8 * c; t < t1; t++)
                one_tile(tile, w_trans, mr, t * mr, M, K, W, ldw, AT, Mp, bias, res, C, ldc, out);
            if (c == (chunks ? chunks : 1) - 1)
                for (n1 = tiles * mr; n1 < N; n1++)
                    one_tile(tile, w_trans, 1, n1, M, K, W, ldw, AT, Mp, bias, res, C, ldc, out);
            if (post)
                for (int m = 0; m < M; m++) {
                    size_t at = (size_t)m * ldc + (size_t)8 * c * mr;
                    post(post_out + at, C + at, (size_t)(n1 - 8 * c * mr));
                }
        }
    }
}

/* ------------------------------------------------------------- one row */

void rlaif_gemv(int ta, int M, int N, const float *A, int lda, const float *x, float beta, float *y,
                int nthreads) {
    if (nthreads <= 1 || (size_t)M * N < ((size_t)1 << 16)) {
        cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, M, N, 1.0f, A, lda, x, 1, beta,
                    y, 1);
        return;
    }
    /* Each thread streams one contiguous block of rows of A: for y = A^T x
     * that gives partial sums (added up below), for y = A x whole outputs. */
    int nt = nthreads, chunk = ((M + nt - 1) / nt + 15) / 16 * 16;
    float *part = ta ? xmalloc(sizeof(float) * (size_t)nt * N) : NULL;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; t++) {
        int m0 = t * chunk, m1 = m0 + chunk < M ? m0 + chunk : M;
        if (ta && m0 >= m1) memset(part + (size_t)t * N, 0, sizeof(float) * (size_t)N);
        if (m0 >= m1) continue;
        if (ta)
            cblas_sgemv(CblasRowMajor, CblasTrans, m1 - m0, N, 1.0f, A + (size_t)m0 * lda, lda,
                        x + m0, 1, 0.0f, part + (size_t)t * N, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasNoTrans, m1 - m0, N, 1.0f, A + (size_t)m0 * lda, lda, x,
                        1, beta, y + m0, 1);
    }
    if (ta) {
        for (int j = 0; j < N; j++) {
            float s = beta != 0.0f ? beta * y[j] : 0.0f;
            for (int t = 0; t < nt; t++) s += part[(size_t)t * N + j];
            y[j] = s;
        }
        free(part);
    }
}
