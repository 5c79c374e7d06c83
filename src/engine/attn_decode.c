/* attn_decode.c - decoding's attention reads (see attn_decode.h).
 *
 * Plain C: one dot product per key, each ending in a horizontal sum (the
 * compiler's reduction), and one accumulator row for the values. AVX-512,
 * when the head size is a multiple of 16 and at most 128 (every model the
 * engine loads): scores for 16 keys at a time, whose 16 lane sums are added
 * as one tree (hsum16; a last partial block too, masked), and the values in
 * two interleaved accumulator rows, so neither loop waits on its own
 * additions; a bf16 cache read a line (32 values) at a time (by_line).
 * Chosen at run time. No
 * software prefetch: the cache is on 2 MB pages (model.c), where the
 * hardware prefetchers follow each head's block; prefetching every line 16
 * rows ahead made the attention 30% slower there and 14% on 4 KB pages
 * (2-core EPYC, 192 blocks of 456 keys a layer, 12 layers). */
#include "config.h"
#include "attn_decode.h"
#include "simd_x86.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define HAVE_X86 1
#endif

/* A cache holds fp32 or bf16 (model.precision bf16: half the bytes to
 * read). Each kernel below is written once over `const void *` and an
 * element flag bf; always_inline with a constant bf makes two copies. */
static inline __attribute__((always_inline)) const void *at(const void *p, size_t i, int bf) {
    return bf ? (const void *)((const uint16_t *)p + i) : (const void *)((const float *)p + i);
}

/* ------------------------------------------------------------------ plain C */

static inline __attribute__((always_inline)) float ld1(const void *p, size_t i, int bf) {
    if (!bf) return ((const float *)p)[i];
    uint32_t u = (uint32_t)((const uint16_t *)p)[i] << 16; /* bf16 is fp32's upper half */
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline __attribute__((always_inline)) void
scores_c(float *sc, const void *kc, const float *q, int n, int hs, float scale, int bf) {
    for (int j = 0; j < n; j++) {
        const void *k = at(kc, (size_t)j * hs, bf);
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int d = 0; d < hs; d++) s += ld1(k, d, bf) * q[d];
        sc[j] = scale * s;
    }
}

/* add: out += the sum (a later block of keys), else out = the sum */
static inline __attribute__((always_inline)) void mix_c(float *out, const void *vc, const float *p,
                                                        int n, int hs, int bf, int add) {
    if (!add)
        for (int d = 0; d < hs; d++) out[d] = 0.0f;
    for (int j = 0; j < n; j++) {
        const void *v = at(vc, (size_t)j * hs, bf);
        float pj = p[j];
#pragma omp simd
        for (int d = 0; d < hs; d++) out[d] += pj * ld1(v, d, bf);
    }
}

#ifdef HAVE_X86
/* ------------------------------------------------------------------ AVX-512 */

#define MAX_NV 8 /* hs <= 128 */

/* 16 values from element i on, as fp32 (bf16: widened and shifted up) */
static inline __attribute__((always_inline, target("avx512f"))) __m512 ld16(const void *p, size_t i,
                                                                            int bf) {
    if (!bf) return _mm512_loadu_ps((const float *)p + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* A bf16 row whose size is a multiple of 32 (NV even) is read a line at a
 * time: 32 values in one load, the even ones widened by a shift (each
 * 32-bit lane's low half moved up), the odd ones by a mask (its high half
 * kept), where ld16 takes a load, a cross-lane widen and a shift for each
 * 16. The queries are split the same way once, so a dot product pairs
 * even with even, and the mix keeps even and odd sums that are interleaved
 * back at the end. One thread, a head's 448 keys in L1 (Intel Xeon, AMX
 * VM), old and new kernels in one run: scores 2.40 -> 1.98 ns a key, mix
 * 2.13 -> 1.77. */
static inline __attribute__((always_inline)) int by_line(const int NV, int bf) {
    return bf && NV % 2 == 0;
}

static inline __attribute__((always_inline, target("avx512f"))) __m512 bf_even(__m512i x) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
}

static inline __attribute__((always_inline, target("avx512f"))) __m512 bf_odd(__m512i x) {
    return _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32((int)0xffff0000u)));
}

/* qv[v] for v < NV: q's 16-value vectors, or (by_line) per line w its even
 * values in qv[2w] and its odd ones in qv[2w + 1] */
static inline __attribute__((always_inline, target("avx512f"))) void
load_q(const int NV, __m512 *qv, const float *q, int bf) {
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) qv[v] = _mm512_loadu_ps(q + 16 * v);
    if (!by_line(NV, bf)) return;
#pragma GCC unroll 4
    for (int w = 0; w < NV / 2; w++) {
        __m512 a = qv[2 * w], b = qv[2 * w + 1];
        qv[2 * w] = _mm512_permutex2var_ps(a, ie, b);
        qv[2 * w + 1] = _mm512_permutex2var_ps(a, _mm512_add_epi32(ie, _mm512_set1_epi32(1)), b);
    }
}

/* acc += p * the key or value from element i, in qv's order (load_q):
 * for a score p is q's vectors (pv, NV of them), for a mix one weight
 * broadcast (pv NULL, w) */
static inline __attribute__((always_inline, target("avx512f"))) void
fma_row(const int NV, __m512 *acc, const void *p, size_t i, const __m512 *pv, __m512 w, int bf) {
    if (by_line(NV, bf)) {
#pragma GCC unroll 4
        for (int l = 0; l < NV / 2; l++) {
            __m512i x = _mm512_loadu_si512((const uint16_t *)p + i + 32 * l);
            acc[pv ? 0 : 2 * l] =
                _mm512_fmadd_ps(bf_even(x), pv ? pv[2 * l] : w, acc[pv ? 0 : 2 * l]);
            acc[pv ? 0 : 2 * l + 1] =
                _mm512_fmadd_ps(bf_odd(x), pv ? pv[2 * l + 1] : w, acc[pv ? 0 : 2 * l + 1]);
        }
        return;
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++)
        acc[pv ? 0 : v] = _mm512_fmadd_ps(ld16(p, i + 16 * v, bf), pv ? pv[v] : w, acc[pv ? 0 : v]);
}

/* sc[0..rem) = scale * the scores of the rem <= 16 keys from element k:
 * one accumulator a key, the 16 lane sums added as one tree (hsum16); a
 * missing key's sum is 0. A last partial block runs here too, where a
 * plain C tail took ~30 ns a key (a horizontal sum each): a GPT-2 head of
 * 460 keys (12 in the tail), one thread in L1, scores 2.83 -> 1.95 ns a
 * key. */
static inline __attribute__((always_inline, target("avx512f"))) void
score16(const int NV, float *sc, const void *kc, size_t k, const __m512 *qv, int rem, __m512 s,
        int bf) {
    int hs = 16 * NV;
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        acc[i] = _mm512_setzero_ps();
        if (i < rem) fma_row(NV, &acc[i], kc, k + (size_t)i * hs, qv, s, bf);
    }
    __m512 r = _mm512_mul_ps(hsum16(acc), s);
    if (rem == 16)
        _mm512_storeu_ps(sc, r);
    else
        _mm512_mask_storeu_ps(sc, (__mmask16)((1u << rem) - 1), r);
}

/* NV = hs / 16 is a constant in each copy (one per head size, below), so
 * the loops over a head's vectors unroll and the accumulators stay in
 * registers: with hs a run-time value GCC kept mix's accumulators on the
 * stack (a load and a store around every FMA). One thread, one head of 458
 * keys hot in L2, 2-core EPYC Zen 5: the mix 2.5 -> 1.8 ns a key, the
 * scores 1.9 / 2.5 ns (no better); with 8 query heads over blocks in L1
 * (group_blocks) both together 4.6 -> 2.0 ns per query head and key. */
static inline __attribute__((always_inline, target("avx512f"))) void
scores512(const int NV, float *sc, const void *kc, const float *q, int n, float scale, int bf) {
    int hs = 16 * NV, j = 0;
    __m512 qv[MAX_NV], s = _mm512_set1_ps(scale);
    load_q(NV, qv, q, bf);
    for (; j + 16 <= n; j += 16) score16(NV, sc + j, kc, (size_t)j * hs, qv, 16, s, bf);
    if (j < n) score16(NV, sc + j, kc, (size_t)j * hs, qv, n - j, s, bf);
}

/* Two keys at a time into two sets of accumulators, so no FMA waits on the
 * one before; in by_line order (load_q) for a bf16 row of lines. */
static inline __attribute__((always_inline, target("avx512f"))) void
mix512(const int NV, float *out, const void *vc, const float *p, int n, int add, int bf) {
    int hs = 16 * NV, j = 0;
    __m512 a0[MAX_NV], a1[MAX_NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) a0[v] = a1[v] = _mm512_setzero_ps();
    for (; j + 2 <= n; j += 2) {
        fma_row(NV, a0, vc, (size_t)j * hs, NULL, _mm512_set1_ps(p[j]), bf);
        fma_row(NV, a1, vc, (size_t)(j + 1) * hs, NULL, _mm512_set1_ps(p[j + 1]), bf);
    }
    if (j < n) fma_row(NV, a0, vc, (size_t)j * hs, NULL, _mm512_set1_ps(p[j]), bf);
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) a0[v] = _mm512_add_ps(a0[v], a1[v]);
    if (by_line(NV, bf)) /* even and odd sums back into element order */
#pragma GCC unroll 4
        for (int w = 0; w < NV / 2; w++) {
            __m512 e = a0[2 * w], o = a0[2 * w + 1];
            a0[2 * w] = _mm512_permutex2var_ps(e, lo, o);
            a0[2 * w + 1] =
                _mm512_permutex2var_ps(e, _mm512_add_epi32(lo, _mm512_set1_epi32(8)), o);
        }
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++)
        _mm512_storeu_ps(out + 16 * v,
                         add ? _mm512_add_ps(_mm512_loadu_ps(out + 16 * v), a0[v]) : a0[v]);
}
#endif

/* ---------------------------------------------------------------- dispatch */

static int forced = -1; /* 0: c, 1: avx512 */

static int use512(int hs) {
    if (hs % 16 || hs > 16 * 8) return 0;
    if (forced >= 0) return forced;
#ifdef HAVE_X86
    static int has = -1;
    if (has < 0) {
        __builtin_cpu_init();
        has = __builtin_cpu_supports("avx512f") != 0;
    }
    return has;
#else
    return 0;
#endif
}

const char *rlaif_attn_decode_kernel(const char *force) {
    if (force) forced = !strcmp(force, "avx512");
    return use512(64) ? "avx512" : "c";
}

/* Each kernel once per element type and head size: bf and NV are
 * constants in every call below, so the always_inline bodies are
 * specialised (the AVX-512 ones inside a function compiled for that
 * target); use512 admits hs = 16 .. 128 in steps of 16. */
#ifdef HAVE_X86
/* case nv: kernel K with NV = nv, the arguments, then bf as a constant */
#define CASE_NV(nv, K, ...)                                                                        \
    case nv:                                                                                       \
        if (bf)                                                                                    \
            K(nv, __VA_ARGS__, 1);                                                                 \
        else                                                                                       \
            K(nv, __VA_ARGS__, 0);                                                                 \
        return;
#define EACH_NV(K, ...)                                                                            \
    CASE_NV(1, K, __VA_ARGS__)                                                                     \
    CASE_NV(2, K, __VA_ARGS__)                                                                     \
    CASE_NV(3, K, __VA_ARGS__)                                                                     \
    CASE_NV(4, K, __VA_ARGS__)                                                                     \
    CASE_NV(5, K, __VA_ARGS__)                                                                     \
    CASE_NV(6, K, __VA_ARGS__)                                                                     \
    CASE_NV(7, K, __VA_ARGS__)                                                                     \
    CASE_NV(8, K, __VA_ARGS__)

static __attribute__((target("avx512f"))) void
scores512_any(float *sc, const void *kc, const float *q, int n, int hs, float scale, int bf) {
    switch (hs / 16) { EACH_NV(scores512, sc, kc, q, n, scale) }
}

static __attribute__((target("avx512f"))) void
mix512_any(float *out, const void *vc, const float *p, int n, int hs, int bf, int add) {
    switch (hs / 16) { EACH_NV(mix512, out, vc, p, n, add) }
}
#endif

static void scores_any(float *sc, const void *kc, const float *q, int n, int hs, float scale,
                       int bf) {
#ifdef HAVE_X86
    if (use512(hs)) {
        scores512_any(sc, kc, q, n, hs, scale, bf);
        return;
    }
#endif
    if (bf)
        scores_c(sc, kc, q, n, hs, scale, 1);
    else
        scores_c(sc, kc, q, n, hs, scale, 0);
}

static void mix_any(float *out, const void *vc, const float *p, int n, int hs, int bf, int add) {
#ifdef HAVE_X86
    if (use512(hs)) {
        mix512_any(out, vc, p, n, hs, bf, add);
        return;
    }
#endif
    if (bf)
        mix_c(out, vc, p, n, hs, 1, add);
    else
        mix_c(out, vc, p, n, hs, 0, add);
}

void rlaif_attn_scores(float *sc, const float *kc, const float *q, int n, int hs, float scale) {
    scores_any(sc, kc, q, n, hs, scale, 0);
}

void rlaif_attn_mix(float *out, const float *vc, const float *p, int n, int hs) {
    mix_any(out, vc, p, n, hs, 0, 0);
}

void rlaif_attn_scores_bf16(float *sc, const uint16_t *kc, const float *q, int n, int hs,
                            float scale) {
    scores_any(sc, kc, q, n, hs, scale, 1);
}

void rlaif_attn_mix_bf16(float *out, const uint16_t *vc, const float *p, int n, int hs) {
    mix_any(out, vc, p, n, hs, 1, 0);
}

/* Grouped-query attention: grp query heads read one cached head. Head by
 * head, each pass over the keys (then the values) came from L2 once per
 * query head: 8 passes of 117 KB for a TinyLlama head at ~460 positions,
 * so its batch-64 attention took 3.7 ms a layer where the cache's 60 MB
 * read at the machine's bandwidth is ~1.3 ms. Here blocks of GRP_KEYS keys
 * (16 KB at hs 64: in L1) serve every query head before the next block. */
#define GRP_KEYS 64

/* The group's scores (mix 0: kv the keys, x the queries, out the scores)
 * or mixes (mix 1: kv the values, x the probabilities, out the outputs),
 * GRP_KEYS keys at a time for every query head. */
static void group_blocks(int mix, float *out, size_t ldo, const void *kv, int bf, const float *x,
                         size_t ldx, int grp, int n, int hs, float scale) {
    int step = grp == 1 ? n : GRP_KEYS;
    for (int j0 = 0; j0 < n; j0 += step) {
        int cn = n - j0 < step ? n - j0 : step;
        const void *blk = at(kv, (size_t)j0 * hs, bf);
        for (int h = 0; h < grp; h++) {
            if (mix)
                mix_any(out + h * ldo, blk, x + h * ldx + j0, cn, hs, bf, j0 > 0);
            else
                scores_any(out + h * ldo + j0, blk, x + h * ldx, cn, hs, scale, bf);
        }
    }
    if (mix && n == 0)
        for (int h = 0; h < grp; h++) memset(out + h * ldo, 0, sizeof(float) * (size_t)hs);
}

void rlaif_attn_scores_group(float *sc, size_t ldsc, const float *q, size_t ldq, int grp,
                             const float *kc, const uint16_t *kb, int n, int hs, float scale) {
    if (kb)
        group_blocks(0, sc, ldsc, kb, 1, q, ldq, grp, n, hs, scale);
    else
        group_blocks(0, sc, ldsc, kc, 0, q, ldq, grp, n, hs, scale);
}

void rlaif_attn_mix_group(float *out, size_t ldo, const float *p, size_t ldp, int grp,
                          const float *vc, const uint16_t *vb, int n, int hs) {
    if (vb)
        group_blocks(1, out, ldo, vb, 1, p, ldp, grp, n, hs, 0.0f);
    else
        group_blocks(1, out, ldo, vc, 0, p, ldp, grp, n, hs, 0.0f);
}
