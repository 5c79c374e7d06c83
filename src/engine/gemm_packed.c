/* gemm_packed.c - fp32 few-row products from weights packed once for
 * decoding (see model_gemm.h, rlaif_f32_pack).
 *
 * Why a packed copy: decoding multiplies a handful of rows by the same
 * weights on every step. In their stored layout the weights stream badly
 * for some row counts: GPT-2's Conv1D (K, N) keeps its accumulators in L1
 * (the output runs along the contiguous dimension), which costs a load and
 * a store per FMA group, and nn.Linear's (N, K) needs a horizontal sum per
 * output. Packed as 64-column panels, each panel K rows of 64 floats, one
 * read stream per thread feeds a register tile of up to 6 rows x 64 columns
 * (24 accumulators), each output one FMA chain over k in order.
 * Measured (test_model_gemm bench, 2 threads, cold weights, medians of 31
 * calls, the 2-core AMD EPYC VM, Zen 5), a GPT-2 c_fc (768 x 3072), stored-
 * layout kernel against this one: 4 rows 29 against 40 GB/s (a plain read
 * of the same bytes 37), 16 rows 92 against 185 GFLOP/s, 64 rows 155
 * against 254 GFLOP/s (cblas_sgemm 129). The copy is made at a sequence's
 * first decoding step, or once for a frozen model (model.c, decode_pack), a
 * pass over the weights. */
#include "config.h"
#include "model_gemm.h"
#include "simd_x86.h"
#include "team_runs.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_X86 1
#endif

#define PNR    64  /* columns per panel */
#define PMR    6   /* rows of the register tile: 6 x 4 accumulators */
#define PKB    128 /* k rows per block past PMR rows: 32 KB of panel, re-read from L1 */
#define PROWS  64  /* rows per pass through a panel (the tile buffer's rows) */
#define PAHEAD 32  /* panel rows prefetched ahead (8 KB) */

size_t rlaif_f32_packed_size(int K, int N) {
    return sizeof(float) * (size_t)((N + PNR - 1) / PNR) * PNR * (size_t)K;
}

#ifdef HAVE_X86
/* P[k][j] = W[j][k] for k in [k0, k0 + 16), j < 16: one 16 x 16 block of an
 * (N, K) weight across, in registers (the scalar loop ran at 5 GB/s). */
static __attribute__((target("avx512f"))) void across16(const float *W, size_t ldw, int k0,
                                                        float *P) {
    __m512 r[16];
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) r[j] = _mm512_loadu_ps(W + (size_t)j * ldw + k0);
    transpose16(r);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) _mm512_store_ps(P + (size_t)(k0 + i) * PNR, r[i]);
}
#endif

/* Panel p, row k holds op(W)[k][64p .. 64p + 63] (zero past N). */
void rlaif_f32_pack(int w_trans, int K, int N, const float *W, int ldw, float *packed,
                    int nthreads) {
    int avx512 = !strcmp(rlaif_smallm_kernel(NULL), "avx512");
    int np = (N + PNR - 1) / PNR;
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
    for (int p = 0; p < np; p++) {
        float *P = packed + (size_t)p * K * PNR;
        int n0 = p * PNR, w = N - n0 < PNR ? N - n0 : PNR;
        if (!w_trans) {
            for (int k = 0; k < K; k++) {
                memcpy(P + (size_t)k * PNR, W + (size_t)k * ldw + n0, sizeof(float) * (size_t)w);
                memset(P + (size_t)k * PNR + w, 0, sizeof(float) * (size_t)(PNR - w));
            }
            continue;
        }
        /* (N, K): 64 rows of W read side by side, written across */
        if (w < PNR) memset(P, 0, sizeof(float) * (size_t)K * PNR);
        for (int k0 = 0; k0 < K; k0 += 16) {
            int k1 = k0 + 16 < K ? k0 + 16 : K, j = 0;
#ifdef HAVE_X86
            for (; avx512 && k1 - k0 == 16 && j + 16 <= w; j += 16)
                across16(W + (size_t)(n0 + j) * ldw, (size_t)ldw, k0, P + j);
#endif
            for (; j < w; j++) {
                const float *r = W + (size_t)(n0 + j) * ldw;
                for (int k = k0; k < k1; k++) P[(size_t)k * PNR + j] = r[k];
            }
        }
    }
}

/* tile (rows m0.., 64 columns) += A[m0.., k0..k1) @ panel rows k0..k1;
 * meanwhile the npf lines from pf on are prefetched into L2 (pf NULL: the
 * panel's own rows PAHEAD ahead into L1, for a single row group) */
typedef void panel_fn(int k0, int k1, const float *A, int lda, const float *P, float *tile,
                      int first, const float *pf, int npf);

static void panel_c(int mr, int k0, int k1, const float *A, int lda, const float *P, float *tile,
                    int first) {
    for (int m = 0; m < mr; m++) {
        float *o = tile + (size_t)m * PNR;
        if (first) memset(o, 0, sizeof(float) * PNR);
        for (int k = k0; k < k1; k++) {
            float a = A[(size_t)m * lda + k];
            for (int j = 0; j < PNR; j++) o[j] = fmaf(a, P[(size_t)k * PNR + j], o[j]);
        }
    }
}

#ifdef HAVE_X86
/* MR is a constant after inlining (one kernel per row count), so the MR x 4
 * accumulators stay in registers: with MR a run-time value they went to the
 * stack and the kernel ran at a third of the speed. */
static inline __attribute__((always_inline, target("avx512f"))) void
panel512_body(const int MR, int k0, int k1, const float *A, int lda, const float *P, float *tile,
              int first, const float *pf, int npf) {
    int per = npf ? (npf + (k1 - k0) - 1) / (k1 - k0) : 0, q = 0;
    __m512 s[PMR][4];
#pragma GCC unroll 6
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            s[m][j] = first ? _mm512_setzero_ps() : _mm512_load_ps(tile + m * PNR + 16 * j);
    for (int k = k0; k < k1; k++) {
        const float *p = P + (size_t)k * PNR;
        /* the stream's next 8 KB: the tile's FMAs keep fewer loads in flight
         * than a plain read, and the prefetcher alone fell behind */
        if (!pf) { /* one row group: this pass is the panel's only read */
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++)
                _mm_prefetch((const char *)(p + PAHEAD * PNR + 16 * j), _MM_HINT_T0);
        }
        for (int e = q + per < npf ? q + per : npf; q < e; q++)
            _mm_prefetch((const char *)(pf + 16 * q), _MM_HINT_T1);
        __m512 w0 = _mm512_load_ps(p), w1 = _mm512_load_ps(p + 16);
        __m512 w2 = _mm512_load_ps(p + 32), w3 = _mm512_load_ps(p + 48);
#pragma GCC unroll 6
        for (int m = 0; m < MR; m++) {
            __m512 a = _mm512_set1_ps(A[(size_t)m * lda + k]);
            s[m][0] = _mm512_fmadd_ps(a, w0, s[m][0]);
            s[m][1] = _mm512_fmadd_ps(a, w1, s[m][1]);
            s[m][2] = _mm512_fmadd_ps(a, w2, s[m][2]);
            s[m][3] = _mm512_fmadd_ps(a, w3, s[m][3]);
        }
    }
#pragma GCC unroll 6
    for (int m = 0; m < MR; m++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) _mm512_store_ps(tile + m * PNR + 16 * j, s[m][j]);
}

/* one kernel per row count 1..PMR */
#define EACH_PMR(X) X(1) X(2) X(3) X(4) X(5) X(6)
#define PANEL512(mr)                                                                               \
    static __attribute__((noinline, target("avx512f"))) void panel512_##mr(                        \
        int k0, int k1, const float *A, int lda, const float *P, float *tile, int first,           \
        const float *pf, int npf) {                                                                \
        panel512_body(mr, k0, k1, A, lda, P, tile, first, pf, npf);                                \
    }
EACH_PMR(PANEL512)
#undef PANEL512
#define ENTRY(mr) panel512_##mr,
static panel_fn *const panel512[PMR + 1] = {NULL, EACH_PMR(ENTRY)};
#undef ENTRY
#endif

/* Rows [r0, r1) (r1 - r0 <= PROWS) of panel P into tile (row stride PNR):
 * up to PMR rows one pass over all of K; more rows go in K blocks of PKB,
 * each block's rows of the panel read by the first row group and from L1
 * by the others. Each row group of a block prefetches its share of the
 * next block (or of panel next's first block) into L2: the memory reads
 * spread over the whole block's FMAs, where the first group's pass alone
 * asked for 2-3x the machine's bandwidth and the others none. 2 threads,
 * cold weights, test_model_gemm bench, 7 alternating runs, medians (2-core
 * EPYC, Zen 4): 16 rows of c_fc 122 -> 148 GFLOP/s, of c_proj 129 -> 150,
 * of the LM head 126 -> 141, 64 rows within noise (~180); the same 16 rows
 * from L2 (weights hot) 183, the best of 200 calls. */
static void panel_rows(int avx512, int r0, int r1, int K, const float *A, int lda, const float *P,
                       const float *next, float *tile) {
    int kb = r1 - r0 <= PMR ? K : PKB, groups = (r1 - r0 + PMR - 1) / PMR;
    for (int k0 = 0; k0 < K; k0 += kb) {
        int k1 = k0 + kb < K ? k0 + kb : K, k2 = k1 + kb < K ? k1 + kb : K;
        const float *pf = groups == 1 ? NULL : k1 < K ? P + (size_t)k1 * PNR : next;
        /* the 64-byte lines of the next block */
        int lines = !pf ? 0 : k1 < K ? (k2 - k1) * (PNR / 16) : (kb < K ? kb : K) * (PNR / 16);
        for (int m0 = r0, g = 0; m0 < r1; m0 += PMR, g++) {
            int l0 = lines * g / groups, l1 = lines * (g + 1) / groups;
            int mr = r1 - m0 < PMR ? r1 - m0 : PMR;
            const float *a = A + (size_t)m0 * lda;
            float *t = tile + (size_t)(m0 - r0) * PNR;
#ifdef HAVE_X86
            if (avx512) {
                panel512[mr](k0, k1, a, lda, P, t, k0 == 0, pf ? pf + 16 * l0 : NULL, l1 - l0);
                continue;
            }
#endif
            (void)avx512;
            panel_c(mr, k0, k1, a, lda, P, t, k0 == 0);
        }
    }
}

void rlaif_f32_packed_gemm(int M, int N, int K, const float *A, int lda, const float *packed,
                           const float *bias, const float *res, float *C, int ldc,
                           rlaif_smallm_post *post, float *post_out, int nthreads) {
    int np = (N + PNR - 1) / PNR, avx512 = !strcmp(rlaif_smallm_kernel(NULL), "avx512");
    int nt = nthreads > 1 ? nthreads : 1;
    /* each thread a contiguous run of panels: one read stream, as the
     * machine reads fastest. Panels handed out one at a time (192 KB each
     * for a GPT-2 layer) cost the read stream on a quiet machine: a scratch
     * read of 192 KB chunks handed out dynamically read 52-54 GB/s where
     * static halves read 59 (2026-12-04, Zen 5 VM); this kernel, 5
     * alternating rounds of test_model_gemm bench M 3072 768 0, medians,
     * dynamic against static: M=1 26.6 / 29.1, M=4 89.8 / 104.1, M=16 280 /
     * 285, M=64 354 / 384 GFLOP/s. But with static halves a call lasts as
     * long as its slower thread, and on this VM one core is at times 20-35%
     * slower than the other (two single-thread streams of the 16-row kernel
     * at once: 183 and 119-136 GFLOP/s); so a thread whose run is done
     * takes panels from the back of the other's (team_runs.h). */
    rlaif_run runs[nt];
    rlaif_runs_init(runs, np, nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        static _Thread_local float tile[PROWS * PNR] __attribute__((aligned(64)));
        int t = 0, p, back;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        while ((p = rlaif_runs_next(runs, nt, t, &back)) >= 0) {
            const float *P = packed + (size_t)p * K * PNR;
            int n0 = p * PNR, w = N - n0 < PNR ? N - n0 : PNR;
            /* the panel this thread likely takes next: its run's next, or
             * a thief's, the one before (a wrong guess is a harmless read) */
            const float *after = back ? (p > 0 ? P - (size_t)K * PNR : NULL)
                                      : (p + 1 < np ? P + (size_t)K * PNR : NULL);
            for (int r0 = 0; r0 < M; r0 += PROWS) {
                int r1 = r0 + PROWS < M ? r0 + PROWS : M;
                const float *next = r1 < M ? P : after;
                panel_rows(avx512, r0, r1, K, A, lda, P, next, tile);
                rlaif_smallm_store(r1 - r0, w, n0, tile, PNR, bias,
                                   res ? res + (size_t)r0 * ldc : NULL, C + (size_t)r0 * ldc, ldc,
                                   post, post ? post_out + (size_t)r0 * ldc : NULL);
            }
        }
    }
}
