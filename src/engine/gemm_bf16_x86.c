/* gemm_bf16_x86.c - AVX-512 pieces of the bf16 products: conversions,
 * packing into the pair layouts of gemm_bf16_x86.h, and the vdpbf16ps
 * kernel. Compiled with __attribute__((target)); called only after the
 * run-time checks below.
 *
 * The kernel keeps a tile of MR x 64 fp32 accumulators (MR <= 6 rows, 4
 * vectors: 24 of the 32 zmm registers) and, for each k pair, loads 4
 * vectors of B pairs and broadcasts one A pair per row: 4 + MR loads for
 * 4 MR vdpbf16ps, each 32 multiply-adds. */
#include "config.h"
#include "gemm_bf16_x86.h"
#include "simd_x86.h"

#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define T_BW   "avx512f,avx512bw,avx512vl"
#define T_BF16 "avx512f,avx512bw,avx512vl,avx512bf16"

int bf16_x86_avx512bw(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}

int bf16_x86_avx512bf16(void) {
    return bf16_x86_avx512bw() && __builtin_cpu_supports("avx512bf16");
}

/* ------------------------------------------------------------ conversions */

/* 16 floats rounded to bf16 (nearest, ties to even; NaN quietened), the
 * bf16 bits in the upper half of each 32-bit lane, the lower half left
 * over: the same arithmetic as the scalar bf16_round. */
static inline __attribute__((always_inline, target(T_BW))) __m512i round_hi(__m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x00400000));
}

/* Up to 16 consecutive elements (count <= 0: none) as bf16 in the upper
 * halves of 32-bit lanes, zeros past count. */
static inline __attribute__((always_inline, target(T_BW))) __m512i
load_hi(const void *base, int f32, size_t at, int count) {
    __mmask16 m = count >= 16  ? (__mmask16)0xFFFF
                  : count <= 0 ? (__mmask16)0
                               : (__mmask16)((1u << count) - 1);
    if (f32) {
        __m512i r = round_hi(_mm512_maskz_loadu_ps(m, (const float *)base + at));
        return _mm512_maskz_and_epi32(m, r, _mm512_set1_epi32((int)0xFFFF0000u));
    }
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)base + at);
    return _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
}

__attribute__((target(T_BW))) void bf16_x86_from_f32(uint16_t *dst, const float *src, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i r = _mm512_srli_epi32(round_hi(_mm512_loadu_ps(src + i)), 16);
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtepi32_epi16(r));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512i r = _mm512_srli_epi32(round_hi(_mm512_maskz_loadu_ps(m, src + i)), 16);
        _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtepi32_epi16(r));
    }
}

__attribute__((target(T_BW))) void bf16_x86_to_f32(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        int c = n - i < 16 ? (int)(n - i) : 16;
        __mmask16 m = (__mmask16)((1u << c) - 1);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_castsi512_ps(load_hi(src, 0, i, c)));
    }
}

/* ---------------------------------------------------------------- packing */

/* Pairs along a stored row: elements k0 .. k0 + 31 of the row at base + at
 * (kv of them valid) as 16 pairs. */
static inline __attribute__((always_inline, target(T_BW))) __m512i
row_pairs(const void *base, int f32, size_t at, int kv) {
    __m512i lo = load_hi(base, f32, at, kv), hi = load_hi(base, f32, at + 16, kv - 16);
    /* the upper halves of lo then hi, in order: 16-bit elements 1, 3, 5, ... */
    static const short odd[32] = {1,  3,  5,  7,  9,  11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31,
                                  33, 35, 37, 39, 41, 43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63};
    return _mm512_permutex2var_epi16(lo, _mm512_loadu_si512(odd), hi);
}

/* Pairs across two stored rows: 16 consecutive elements (cv valid) of row
 * r (the even k) and of row r + 1 (the odd k; rv = rows that exist). */
static inline __attribute__((always_inline, target(T_BW))) __m512i
cross_pairs(const void *base, int f32, size_t at, size_t ld, int rv, int cv) {
    __m512i lo = rv > 0 ? load_hi(base, f32, at, cv) : _mm512_setzero_si512();
    __m512i hi = rv > 1 ? load_hi(base, f32, at + ld, cv) : _mm512_setzero_si512();
    return _mm512_or_si512(_mm512_srli_epi32(lo, 16), hi);
}

static inline __attribute__((always_inline, target(T_BW))) void transpose16i(__m512i r[16]) {
    __m512 f[16];
    for (int i = 0; i < 16; i++) f[i] = _mm512_castsi512_ps(r[i]);
    transpose16(f);
    for (int i = 0; i < 16; i++) r[i] = _mm512_castps_si512(f[i]);
}

/* 16 x 16 pairs of op(X) at (r0, pair q0) (rows past X->rows and pairs past
 * its cols are zero), row i of the result = row r0 + i. */
static __attribute__((target(T_BW))) void pairs16(const bf16_src *X, int r0, int q0,
                                                  __m512i out[16]) {
    int k0 = 2 * q0;
    if (!X->trans) { /* pairs lie along stored rows */
        for (int i = 0; i < 16; i++)
            out[i] = r0 + i < X->rows
                         ? row_pairs(X->p, X->f32, (size_t)(r0 + i) * X->ld + k0, X->cols - k0)
                         : _mm512_setzero_si512();
        return;
    }
    /* stored transposed: pair j spans stored rows k0 + 2j, k0 + 2j + 1 */
    for (int j = 0; j < 16; j++) {
        int k = k0 + 2 * j;
        out[j] = cross_pairs(X->p, X->f32, (size_t)k * X->ld + r0, (size_t)X->ld, X->cols - k,
                             X->rows - r0);
    }
    transpose16i(out);
}

/* 16 rows from m of op(A), pairs [q, q + 16) of the block, into Ap. */
static inline __attribute__((always_inline, target(T_BW))) void
pack_a16(const bf16_src *A, int m, int m0, int m1, int q0, int q, int nq, uint32_t *Ap, int ldp) {
    __m512i t[16];
    pairs16(A, m, q0 + q, t);
    __mmask16 mk = nq - q >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nq - q)) - 1);
    for (int i = 0; i < 16 && m + i < m1; i++)
        _mm512_mask_storeu_epi32(Ap + (size_t)(m - m0 + i) * ldp + q, mk, t[i]);
}

__attribute__((target(T_BW))) void bf16_x86_pack_a(const bf16_src *A, int m0, int m1, int q0,
                                                   int nq, uint32_t *Ap, int ldp) {
    /* stored transposed (a weight gradient's input): a K block at a time
     * across the rows, so each stored row is read in one run of lines
     * (measured in a GPT-2 124M bf16 step, two alternating runs: a layer's
     * four dW products 4-8% faster together, -1.5% to 13% each) */
    if (A->trans) {
        for (int q = 0; q < nq; q += 16)
            for (int m = m0; m < m1; m += 16) pack_a16(A, m, m0, m1, q0, q, nq, Ap, ldp);
        return;
    }
    for (int m = m0; m < m1; m += 16)
        for (int q = 0; q < nq; q += 16) pack_a16(A, m, m0, m1, q0, q, nq, Ap, ldp);
}

/* op(B) is (K, N): its columns are the rows of B^T, whose pairs pairs16
 * gives for 16 columns at a time; transposed, a row per pair. */
__attribute__((target(T_BW))) void bf16_x86_pack_b(const bf16_src *B, int n0, int q0, int nq,
                                                   uint32_t *Bp) {
    /* op(B) (K, N) stored B: op(B)^T (N, K) is stored with the other trans */
    bf16_src Bt = {B->p, B->f32, B->ld, !B->trans, B->cols, B->rows};
    if (B->trans) { /* B^T's pairs lie along stored rows: a 16 x 16 transpose */
        for (int v = 0; v < BF16_NR; v += 16)
            for (int q = 0; q < nq; q += 16) {
                __m512i t[16];
                pairs16(&Bt, n0 + v, q0 + q, t);
                transpose16i(t);
                for (int j = 0; j < 16 && q + j < nq; j++)
                    _mm512_storeu_si512(Bp + (size_t)(q + j) * BF16_NR + v, t[j]);
            }
        return;
    }
    /* B stored (K, N): each pair row comes from two stored rows directly.
     * Each row of a wide weight is on its own page, where hardware
     * prefetchers stop: fetch the rows 8 pairs ahead (the panel's 64
     * elements, 1 to 4 cache lines a row) by hand. */
    size_t esz = B->f32 ? 4 : 2, line = 64 / esz;
    for (int q = 0; q < nq; q++) {
        int k = 2 * (q0 + q);
        if (k + 17 < B->rows)
            for (int r = 16; r < 18; r++)
                for (size_t e = 0; e < BF16_NR && (int)e + n0 < B->cols; e += line)
                    _mm_prefetch((const char *)B->p + ((size_t)(k + r) * B->ld + n0 + e) * esz,
                                 _MM_HINT_T0);
        for (int v = 0; v < BF16_NR; v += 16)
            _mm512_storeu_si512(Bp + (size_t)q * BF16_NR + v,
                                cross_pairs(B->p, B->f32, (size_t)k * B->ld + n0 + v, (size_t)B->ld,
                                            B->rows - k, B->cols - n0 - v));
    }
}

/* Pairs [qa, qb) of a K block (q0, nq pairs) of B stored (K, N), for all
 * panels at once: P[(p * nq + q) * 64 + j]. The two stored rows of a pair
 * are read end to end, which streams from memory at full speed; panel by
 * panel the same rows are read 128 bytes at a time, a page apart. */
__attribute__((target(T_BW))) void bf16_x86_pack_b_rows(const bf16_src *B, int q0, int qa, int qb,
                                                        int nq, uint32_t *P) {
    int panels = (B->cols + BF16_NR - 1) / BF16_NR;
    for (int q = qa; q < qb; q++) {
        int k = 2 * (q0 + q);
        for (int p = 0; p < panels; p++)
            for (int v = 0; v < BF16_NR; v += 16) {
                int n = p * BF16_NR + v;
                _mm512_storeu_si512(P + ((size_t)p * nq + q) * BF16_NR + v,
                                    cross_pairs(B->p, B->f32, (size_t)k * B->ld + n, (size_t)B->ld,
                                                B->rows - k, B->cols - n));
            }
    }
}

/* ----------------------------------------------------------------- kernel */

/* MR rows x 64 columns, nq pairs; constant MR after inlining, so the 4 MR
 * accumulators stay in registers. */
static inline __attribute__((always_inline, target(T_BF16))) void
kernel_body(const int MR, const uint32_t *Ap, int ldp, int nq, const uint32_t *Bp, float *C,
            int ldc, int ncv, int mode, float beta, const char *pf, int pf_lines) {
    __m512 acc[6][4];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) acc[r][v] = _mm512_setzero_ps();
    int per = (pf_lines + nq - 1) / nq; /* lines a pair */
    for (int q = 0; q < nq; q++) {
        const uint32_t *bq = Bp + (size_t)q * BF16_NR;
        for (int x = q * per; x < (q + 1) * per && x < pf_lines; x++)
            _mm_prefetch(pf + 64 * (size_t)x, _MM_HINT_T0);
        __m512bh b[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) b[v] = (__m512bh)_mm512_loadu_si512(bq + 16 * v);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m512bh a = (__m512bh)_mm512_set1_epi32((int)Ap[(size_t)r * ldp + q]);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
        }
    }
    __m512 vb = _mm512_set1_ps(beta);
    for (int v = 0; v < 4; v++) {
        int c = ncv - 16 * v;
        if (c <= 0) break;
        __mmask16 mk = c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << c) - 1);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            float *out = C + (size_t)r * ldc + 16 * v;
            __m512 x = acc[r][v];
            if (mode == BF16_ADD) x = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, out), x);
            if (mode == BF16_BETA) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk, out), x);
            _mm512_mask_storeu_ps(out, mk, x);
        }
    }
}

#define KERNEL(mr)                                                                                 \
    static __attribute__((noinline, target(T_BF16))) void kernel_##mr(                             \
        const uint32_t *Ap, int ldp, int nq, const uint32_t *Bp, float *C, int ldc, int ncv,       \
        int mode, float beta, const char *pf, int pf_lines) {                                      \
        kernel_body(mr, Ap, ldp, nq, Bp, C, ldc, ncv, mode, beta, pf, pf_lines);                   \
    }
KERNEL(1)
KERNEL(2)
KERNEL(3)
KERNEL(4)
KERNEL(5)
KERNEL(6)
#undef KERNEL

typedef void kernel_fn(const uint32_t *, int, int, const uint32_t *, float *, int, int, int, float,
                       const char *, int);

/* The rows go in passes of 6, each over the whole B block: the first pass
 * reads the block from memory, 24 products a pair for its 4 lines, too few
 * to hide the reads, and the passes after it find the block in cache. So
 * when B is one stream (next) and there are 3 passes or more, the later
 * passes prefetch the next block between them, a few lines a pair, and its
 * first pass finds it in cache too: the reads overlap arithmetic that does
 * not wait for them. Weights packed beforehand, 2 threads, with and
 * without alternating in one process, medians of 60 (AMD EPYC Zen 5 VM,
 * 2026-12-05): 24 x 3072 x 768 0.215 -> 0.192 ms, 32 x 768 x 3072 0.269
 * -> 0.236, the 32-row LM head 4.47 -> 3.78, 64 x 2304 x 768 0.335 ->
 * 0.308, the 64-row LM head 7.47 -> 6.91; 16 rows 0-8% between runs
 * (16 x 2304 x 768 0.125 -> 0.122 in one, 0.131 -> 0.121 in another;
 * TinyLlama's 16 x 2048 x 5632 0.801 -> 0.740). Spread over the first
 * pass too it was no faster. With 2 passes (8 rows) the one pass left to prefetch
 * in made it slower (0.140 -> 0.162), so fewer rows do not. Into L2 (T1)
 * instead of L1 it was slower than into L1 at every shape tried, and at 16
 * rows slower than none (16 x 2304 x 768 0.137 against 0.121 ms). */
void bf16_panel_avx512(const uint32_t *Ap, int ldp, int M, int nq, const uint32_t *Bp, float *C,
                       int ldc, int ncv, int mode, float beta, const uint32_t *next) {
    static kernel_fn *const k[7] = {NULL,     kernel_1, kernel_2, kernel_3,
                                    kernel_4, kernel_5, kernel_6};
    int passes = (M + 5) / 6, lines = next && passes >= 3 ? nq * BF16_NR * 4 / 64 : 0;
    for (int m = 0, i = 0; m < M; m += 6, i++) {
        int mr = M - m < 6 ? M - m : 6;
        /* pass i > 0 prefetches its share of the next block's lines */
        int l0 = i ? lines * (i - 1) / (passes - 1) : 0, l1 = i ? lines * i / (passes - 1) : 0;
        k[mr](Ap + (size_t)m * ldp, ldp, nq, Bp, C + (size_t)m * ldc, ldc, ncv, mode, beta,
              lines ? (const char *)next + 64 * (size_t)l0 : NULL, l1 - l0);
    }
}

#else /* not x86: never called (the checks say no) */
int bf16_x86_avx512bw(void) {
    return 0;
}
int bf16_x86_avx512bf16(void) {
    return 0;
}
void bf16_x86_from_f32(uint16_t *dst, const float *src, size_t n) {
    (void)dst, (void)src, (void)n;
}
void bf16_x86_to_f32(float *dst, const uint16_t *src, size_t n) {
    (void)dst, (void)src, (void)n;
}
void bf16_x86_pack_a(const bf16_src *A, int m0, int m1, int q0, int nq, uint32_t *Ap, int ldp) {
    (void)A, (void)m0, (void)m1, (void)q0, (void)nq, (void)Ap, (void)ldp;
}
void bf16_x86_pack_b(const bf16_src *B, int n0, int q0, int nq, uint32_t *Bp) {
    (void)B, (void)n0, (void)q0, (void)nq, (void)Bp;
}
void bf16_x86_pack_b_rows(const bf16_src *B, int q0, int qa, int qb, int nq, uint32_t *P) {
    (void)B, (void)q0, (void)qa, (void)qb, (void)nq, (void)P;
}
void bf16_panel_avx512(const uint32_t *Ap, int ldp, int M, int nq, const uint32_t *Bp, float *C,
                       int ldc, int ncv, int mode, float beta, const uint32_t *next) {
    (void)Ap, (void)ldp, (void)M, (void)nq, (void)Bp, (void)C, (void)ldc, (void)ncv, (void)mode,
        (void)beta, (void)next;
}
#endif
