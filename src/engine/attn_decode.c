/* attn_decode.c - decoding's attention (see attn_decode.h): one query a
 * head over its cached keys and values, in one pass.
 *
 * The keys go in chunks of 32: their scores, the online softmax's update
 * (the running max and weight sum; the sums so far rescaled when the max
 * grows), then those 32 values mixed by their weights. The keys and the
 * values are read side by side, two streams, where a pass of scores then a
 * pass of mixes read one after the other. The time the two passes lost was
 * per block, not per byte: a scratch loop over GPT-2 124M's cache shape
 * (12 layers, 12 heads, 2 threads, Intel Xeon VM with AMX, 20 GB/s read),
 * bf16, best of 5, the bytes fixed, at 470 / 920 / 1820 keys a head: two
 * passes 70.9 / 60.5 / 55.7 ms, one pass 62.3 / 58.1 / 57.5, one pass
 * prefetching each chunk 1 KB ahead 56.2 / 51.9 / 50.7 (a plain read of
 * every line: 55.7 / 53.6 / 52.9). In the engine, `bench_engine gen`,
 * batch 64, 450-token prompts, against the two passes, alternating (ms of
 * attention a step): GPT-2 124M bf16 73.7 -> 62.1, fp32 115.3 / 115.7 ->
 * 107.1 / 106.6; TinyLlama's layer shape (8 query heads a cached head)
 * bf16 7.5 / 7.7 -> 7.4 / 7.4, fp32 9.8 / 9.9 -> 9.5 / 9.6. Chunks of 16
 * keys had given GPT-2 bf16 the same (61.3 / 61.4) but fp32 nothing
 * (117-122) and the grouped heads 8-16% more: each chunk's scores -> max
 * -> exp -> mix is a chain of latency that memory no longer hides once a
 * group's block is in L1, and 32 keys a step halve the chains. Without the
 * prefetch the fp32 one pass took 143-146 ms, so both element types take
 * it (PF_AHEAD).
 *
 * Plain C: one dot product per key, each ending in a horizontal sum (the
 * compiler's reduction), and one accumulator row for the values. AVX-512,
 * when the head size is a multiple of 16 and at most 128 (every model the
 * engine loads): a chunk's 16 lane sums added as one tree (hsum16; a last
 * partial chunk too, masked), and the values in two interleaved
 * accumulator rows, so neither loop waits on its own additions; a bf16
 * cache read a line (32 values) at a time (by_line). Chosen at run time. */
#include "config.h"
#include "attn_decode.h"
#include "fast_expf.h"
#include "simd_x86.h"

#include <limits.h>
#include <math.h>
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

/* out += sum_j p[j] v_j */
static inline __attribute__((always_inline)) void mix_c(float *out, const void *vc, const float *p,
                                                        int n, int hs, int bf) {
    for (int j = 0; j < n; j++) {
        const void *v = at(vc, (size_t)j * hs, bf);
        float pj = p[j];
#pragma omp simd
        for (int d = 0; d < hs; d++) out[d] += pj * ld1(v, d, bf);
    }
}

/* ----------------------------------------------------------- online softmax */

#define CHUNK 32 /* keys a step: scores, weights, mix (above) */

/* One chunk's step of the online softmax (Milakov and Gimelshein 2018,
 * "Online normalizer calculation for softmax"): x[0..rem) holds the
 * chunk's scores and becomes their weights exp(x - m) for the running max
 * m, a masked key's weight 0 (mask: the chunk's valid bytes, NULL all
 * valid). *m and *l (the running max and weight sum) are updated. Returns
 * the factor the sums so far must be scaled by (1 when the max held), or
 * -1 for a chunk with no valid key (nothing to add). */
static inline __attribute__((always_inline)) float
chunk_weights(float *x, int rem, const uint8_t *mask, float *m, float *l) {
    /* all CHUNK lanes, so the loops below have a constant trip count (one
     * vector in AVX-512): a missing or masked key's score is -inf, its
     * weight 0 */
    float cm = -INFINITY, s = 0.0f, corr = 1.0f;
    for (int i = rem; i < CHUNK; i++) x[i] = -INFINITY;
    if (mask)
        for (int i = 0; i < rem; i++)
            if (!mask[i]) x[i] = -INFINITY;
#pragma omp simd reduction(max : cm)
    for (int i = 0; i < CHUNK; i++) cm = x[i] > cm ? x[i] : cm;
    if (!(cm > -INFINITY)) return -1.0f;
    if (cm > *m) { /* the first valid key: the sums are 0 and stay 0 */
        corr = *m > -INFINITY ? fast_expf(*m - cm) : 0.0f;
        *l *= corr, *m = cm;
    }
    float mx = *m;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < CHUNK; i++) { /* -inf's exp is finite (fast_expf clamps), times 0 */
        float e = fast_expf(x[i] - mx) * (float)(x[i] > -INFINITY);
        x[i] = e;
        s += e;
    }
    *l += s;
    return corr;
}

/* One query head over keys j0..j1 (chunks of CHUNK): acc (hs) and ml (the
 * running max and weight sum) carry the state from the keys before j0. */
static inline __attribute__((always_inline)) void attend_c(float *acc, float *ml, const void *kc,
                                                           const void *vc, const float *q,
                                                           const uint8_t *mask, int j0, int j1,
                                                           int hs, float scale, int bf) {
    for (int j = j0; j < j1; j += CHUNK) {
        int rem = j1 - j < CHUNK ? j1 - j : CHUNK;
        float x[CHUNK];
        scores_c(x, at(kc, (size_t)j * hs, bf), q, rem, hs, scale, bf);
        float corr = chunk_weights(x, rem, mask ? mask + j : NULL, &ml[0], &ml[1]);
        if (corr < 0.0f) continue;
        if (corr != 1.0f)
            for (int d = 0; d < hs; d++) acc[d] *= corr;
        mix_c(acc, at(vc, (size_t)j * hs, bf), x, rem, hs, bf);
    }
}

/* Bytes ahead of a chunk that the AVX-512 kernel prefetches: a chunk's
 * worth of lines that many bytes on, in each stream. fp32 at batch 64 in the
 * engine: 0.5 and 1 KB alike, 2, 4 and 8 KB 2-5% slower. */
#define PF_AHEAD 1024

/* Prefetches the len bytes PF_AHEAD past p, those before p + left. */
static inline __attribute__((always_inline)) void prefetch_ahead(const void *p, size_t len,
                                                                 size_t left) {
    for (size_t o = PF_AHEAD; o < PF_AHEAD + len && o < left; o += 64)
        __builtin_prefetch((const char *)p + o);
}

/* What one head's pass over a block of keys prefetches: its chunks' own
 * lines PF_AHEAD on (ahead), and its share of the next block's lines (nl
 * lines from nk in the keys and from nv in the values), spread over its
 * chunks (rlaif_attn_decode). */
typedef struct {
    int ahead;
    const char *nk, *nv;
    int nl;
} pf_plan;

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

/* v in by_line order (load_q: per line its even values, then its odd ones)
 * back into element order */
static inline __attribute__((always_inline, target("avx512f"))) void unline(const int NV,
                                                                            __m512 *v) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
#pragma GCC unroll 4
    for (int w = 0; w < NV / 2; w++) {
        __m512 e = v[2 * w], o = v[2 * w + 1];
        v[2 * w] = _mm512_permutex2var_ps(e, lo, o);
        v[2 * w + 1] = _mm512_permutex2var_ps(e, _mm512_add_epi32(lo, _mm512_set1_epi32(8)), o);
    }
}

/* attend_c's step in AVX-512: acc holds the sums in qv's order (load_q).
 * NV = hs / 16 is a constant in each copy (one per head size, below), so
 * the loops over a head's vectors unroll and the accumulators stay in
 * registers: with hs a run-time value GCC kept the accumulators on the
 * stack (a load and a store around every FMA). pf: what to prefetch
 * (pf_plan; its own chunks up to key n). */
static inline __attribute__((always_inline, target("avx512f"))) void
attend512(const int NV, float *acc, float *ml, const void *kc, const void *vc, const float *q,
          const uint8_t *mask, int j0, int j1, int n, float scale, pf_plan pf, int bf) {
    int hs = 16 * NV, chunks = (j1 - j0 + CHUNK - 1) / CHUNK;
    size_t cb = (size_t)CHUNK * hs * (bf ? 2 : 4), end = (size_t)n * hs * (bf ? 2 : 4);
    __m512 qv[MAX_NV], s = _mm512_set1_ps(scale), a0[MAX_NV], a1[MAX_NV];
    load_q(NV, qv, q, bf);
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) a0[v] = _mm512_loadu_ps(acc + 16 * v), a1[v] = _mm512_setzero_ps();
    for (int j = j0; j < j1; j += CHUNK) {
        int rem = j1 - j < CHUNK ? j1 - j : CHUNK;
        size_t at_j = (size_t)j * hs;
        if (pf.ahead) {
            size_t done = at_j * (bf ? 2 : 4);
            prefetch_ahead(at(kc, at_j, bf), cb, end - done);
            prefetch_ahead(at(vc, at_j, bf), cb, end - done);
        }
        if (pf.nl) {
            int per = (pf.nl + chunks - 1) / chunks, l0 = (j - j0) / CHUNK * per;
            for (int l = l0; l < l0 + per && l < pf.nl; l++)
                __builtin_prefetch(pf.nk + 64 * l), __builtin_prefetch(pf.nv + 64 * l);
        }
        float x[CHUNK];
        for (int c = 0; c < rem; c += 16)
            score16(NV, x + c, kc, at_j + (size_t)c * hs, qv, rem - c < 16 ? rem - c : 16, s, bf);
        float corr = chunk_weights(x, rem, mask ? mask + j : NULL, &ml[0], &ml[1]);
        if (corr < 0.0f) continue;
        if (corr != 1.0f) {
            __m512 c = _mm512_set1_ps(corr);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++)
                a0[v] = _mm512_mul_ps(a0[v], c), a1[v] = _mm512_mul_ps(a1[v], c);
        }
        int i = 0;
        for (; i + 2 <= rem; i += 2) {
            fma_row(NV, a0, vc, at_j + (size_t)i * hs, NULL, _mm512_set1_ps(x[i]), bf);
            fma_row(NV, a1, vc, at_j + (size_t)(i + 1) * hs, NULL, _mm512_set1_ps(x[i + 1]), bf);
        }
        if (i < rem) fma_row(NV, a0, vc, at_j + (size_t)i * hs, NULL, _mm512_set1_ps(x[i]), bf);
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) _mm512_storeu_ps(acc + 16 * v, _mm512_add_ps(a0[v], a1[v]));
}

/* out = acc / l in element order (acc in qv's order); 0 when no key */
static inline __attribute__((always_inline, target("avx512f"))) void
finish512(const int NV, float *out, float l, int bf) {
    __m512 a[MAX_NV], r = _mm512_set1_ps(l > 0.0f ? 1.0f / l : 0.0f);
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) a[v] = _mm512_loadu_ps(out + 16 * v);
    if (by_line(NV, bf)) unline(NV, a);
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++) _mm512_storeu_ps(out + 16 * v, _mm512_mul_ps(a[v], r));
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
attend512_any(float *acc, float *ml, const void *kc, const void *vc, const float *q,
              const uint8_t *mask, int j0, int j1, int n, int hs, float scale, pf_plan pf, int bf) {
    switch (hs / 16) { EACH_NV(attend512, acc, ml, kc, vc, q, mask, j0, j1, n, scale, pf) }
}

static __attribute__((target("avx512f"))) void finish512_any(float *out, float l, int hs, int bf) {
    switch (hs / 16) { EACH_NV(finish512, out, l) }
}
#endif

static void attend_any(float *acc, float *ml, const void *kc, const void *vc, const float *q,
                       const uint8_t *mask, int j0, int j1, int n, int hs, float scale, pf_plan pf,
                       int bf) {
#ifdef HAVE_X86
    if (use512(hs)) {
        attend512_any(acc, ml, kc, vc, q, mask, j0, j1, n, hs, scale, pf, bf);
        return;
    }
#endif
    (void)n, (void)pf;
    if (bf)
        attend_c(acc, ml, kc, vc, q, mask, j0, j1, hs, scale, 1);
    else
        attend_c(acc, ml, kc, vc, q, mask, j0, j1, hs, scale, 0);
}

static void finish_any(float *out, float l, int hs, int bf) {
#ifdef HAVE_X86
    if (use512(hs)) {
        finish512_any(out, l, hs, bf);
        return;
    }
#endif
    float r = l > 0.0f ? 1.0f / l : 0.0f;
    for (int d = 0; d < hs; d++) out[d] *= r;
}

/* Keys a block: each block serves every query head of a group before the
 * next one (16 KB of bf16 keys and values at hs 64: in L1). Head by head,
 * each pass over the keys came from L2 once per query head: 8 passes of
 * 117 KB for a TinyLlama head at ~460 positions, so its batch-64 attention
 * took 3.7 ms a layer where the cache's 60 MB read at the machine's
 * bandwidth is ~1.3 ms. One query head (grp 1) goes block by block too,
 * so its sums are the ones it gets in a group, bit for bit.
 *
 * A group's heads each prefetch their share of the next block while they
 * work on this one, so the memory reads overlap every head's arithmetic;
 * with the first head alone reading the block (1 KB ahead) and the other
 * heads' passes finding it in L1, the reads and the arithmetic took turns,
 * and a profile (of the two-heads build below) put 44% of the kernel's
 * samples on the first head's prefetches (waiting for line fill buffers).
 * TinyLlama's layer shape (8 query heads a cached head, batch 64, both
 * ways alternating in one binary, 3 runs, attention a step; the command is
 * in src/engine/README.md): bf16 8.8-9.1 -> 6.8-7.1 ms, fp32 11.5-12.5 ->
 * 9.9-11.0. The first block of a row, which no head before it prefetched,
 * keeps the 1 KB-ahead prefetch, as does a lone head (its next block is
 * its own stream). Tried with it: two query heads at once (the values'
 * loads shared, two chains of latency interleaved): with the spread
 * prefetch no faster (bf16 7.1-7.6 against 6.8-7.1 ms, fp32 slower),
 * without it about 7%. */
#define GRP_KEYS 64
#define MAX_GRP  64 /* query heads whose state is kept at once; more go in turns */

/* ------------------------------------------------- prefill: queries in lanes */

/* A row's queries of a prefill over the cache (rlaif_attn_queries, nq >
 * 1, AVX-512): up to 16 query heads, the row's queries times a cached
 * head's group, side by side in the 16 lanes of a vector, so none of the
 * per-key work above is a horizontal sum or a chain of one query's
 * latency. A 64-key block is copied into fp32 scratch once (bf16 widened
 * exactly, as the other kernels do), then, for the 16 heads at once:
 *   scores  s[j] = scale * sum_d qt[d] k_j[d]      16 keys x 16 heads a tile,
 *                                                   the keys' values broadcast
 *   softmax the running max and weight sum per lane (the online softmax of
 *           the chunks above, a block a step)
 *   mix     ot[d] = ot[d] corr + sum_j p[j] v_j[d] 16 dimensions a tile
 * Each lane's arithmetic is its own, in an order fixed by the slots (blocks
 * at multiples of 64), so a query's bits do not depend on the other
 * queries in the call; they are not the one-query kernel's bits (its dot
 * products end in tree sums), which decoding keeps. */
#define LANES  16
#define MAX_HS 128 /* use512's bound */

#ifdef HAVE_X86
/* n values (bf16 widened exactly, or fp32) into dst, then zeros up to n_to */
static inline __attribute__((always_inline, target("avx512f"))) void
widen_block(float *dst, const void *src, size_t n, size_t n_to, int bf) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_store_ps(dst + i, ld16(src, i, bf));
    for (; i < n; i++) dst[i] = ld1(src, i, bf);
    for (; i < n_to; i++) dst[i] = 0.0f;
}

/* The scores of one block's keys (nb of them, zero-padded to a multiple
 * of 16 in kw) for the 16 lanes into s (a vector a key), masked to -inf
 * where a lane may not see the key; returns their max per lane. */
static inline __attribute__((always_inline, target("avx512f"))) __m512
lane_scores(float *s, const float *kw, const float *qt, int nb, int b0, __m512i lo, __m512i hi,
            const uint8_t *mask, int hs, float scale, const char *pf, int pf_lines) {
    __m512 bm = _mm512_set1_ps(-INFINITY), ninf = bm, sc = _mm512_set1_ps(scale);
    int tiles = (nb + 15) / 16, per = (pf_lines + tiles - 1) / tiles;
    for (int j = 0; j < nb; j += 16) {
        for (int x = j / 16 * per; x < (j / 16 + 1) * per && x < pf_lines; x++)
            __builtin_prefetch(pf + 64 * (size_t)x);
        __m512 acc[16];
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) acc[t] = _mm512_setzero_ps();
        for (int d = 0; d < hs; d++) {
            __m512 qd = _mm512_load_ps(qt + (size_t)d * LANES);
            const float *kd = kw + (size_t)j * hs + d;
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++)
                acc[t] = _mm512_fmadd_ps(qd, _mm512_set1_ps(kd[(size_t)t * hs]), acc[t]);
        }
        for (int t = 0; t < 16 && j + t < nb; t++) {
            int key = b0 + j + t;
            __m512i kv = _mm512_set1_epi32(key);
            __mmask16 ok = _mm512_cmpge_epi32_mask(kv, lo) & _mm512_cmplt_epi32_mask(kv, hi);
            if (mask && !mask[key]) ok = 0;
            __m512 x = _mm512_mask_mul_ps(ninf, ok, acc[t], sc);
            _mm512_store_ps(s + (size_t)(j + t) * LANES, x);
            bm = _mm512_max_ps(bm, x);
        }
    }
    return bm;
}

/* ot[d] = ot[d] corr + sum_{j < nb} p[j] v_j[d], 16 dimensions a tile */
static inline __attribute__((always_inline, target("avx512f"))) void
lane_mix(float *ot, const float *vw, const float *p, __m512 corr, int nb, int hs, const char *pf,
         int pf_lines) {
    int per = (pf_lines + hs / 16 - 1) / (hs / 16);
    for (int d0 = 0; d0 < hs; d0 += 16) {
        for (int x = d0 / 16 * per; x < (d0 / 16 + 1) * per && x < pf_lines; x++)
            __builtin_prefetch(pf + 64 * (size_t)x);
        __m512 acc[16];
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++)
            acc[t] = _mm512_mul_ps(_mm512_load_ps(ot + (size_t)(d0 + t) * LANES), corr);
        for (int j = 0; j < nb; j++) {
            __m512 pj = _mm512_load_ps(p + (size_t)j * LANES);
            const float *v = vw + (size_t)j * hs + d0;
#pragma GCC unroll 16
            for (int t = 0; t < 16; t++) acc[t] = _mm512_fmadd_ps(pj, _mm512_set1_ps(v[t]), acc[t]);
        }
#pragma GCC unroll 16
        for (int t = 0; t < 16; t++) _mm512_store_ps(ot + (size_t)(d0 + t) * LANES, acc[t]);
    }
}

/* hn <= LANES query heads o[h] = attention of qh[h] over keys [vlo[h],
 * vhi[h]) of the cache k, v (bf16, or fp32 when bf is 0; see the top of
 * this part) */
static __attribute__((target("avx512f"))) void
lanes512(float *const *o, const float *const *qh, const int *vlo, const int *vhi, int hn,
         const void *k, const void *v, const uint8_t *mask, int hs, float scale, int bf) {
    _Alignas(64) float kw[GRP_KEYS * MAX_HS], vw[GRP_KEYS * MAX_HS];
    _Alignas(64) float qt[MAX_HS * LANES], s[GRP_KEYS * LANES], ot[MAX_HS * LANES];
    _Alignas(64) int lo_a[LANES], hi_a[LANES];
    _Alignas(64) float l_a[LANES];
    int first = INT_MAX, end = 0;
    for (int h = 0; h < LANES; h++) {
        lo_a[h] = h < hn ? vlo[h] : INT_MAX, hi_a[h] = h < hn ? vhi[h] : 0;
        for (int d = 0; d < hs; d++) qt[(size_t)d * LANES + h] = h < hn ? qh[h][d] : 0.0f;
        if (h < hn && vlo[h] < vhi[h]) {
            first = vlo[h] < first ? vlo[h] : first, end = vhi[h] > end ? vhi[h] : end;
        }
    }
    memset(ot, 0, sizeof(float) * (size_t)hs * LANES);
    __m512i lo = _mm512_load_si512(lo_a), hi = _mm512_load_si512(hi_a);
    __m512 m = _mm512_set1_ps(-INFINITY), l = _mm512_setzero_ps(), ninf = m;
    for (int b0 = first / GRP_KEYS * GRP_KEYS; b0 < end; b0 += GRP_KEYS) {
        int nb = end - b0 < GRP_KEYS ? end - b0 : GRP_KEYS, nr = (nb + 15) / 16 * 16;
        widen_block(kw, at(k, (size_t)b0 * hs, bf), (size_t)nb * hs, (size_t)nr * hs, bf);
        widen_block(vw, at(v, (size_t)b0 * hs, bf), (size_t)nb * hs, (size_t)nb * hs, bf);
        /* the next block's keys and values fetched while this one is worked on */
        int nn = end - b0 - nb < GRP_KEYS ? end - b0 - nb : GRP_KEYS;
        int lines = nn > 0 ? (int)(((size_t)nn * hs * (bf ? 2 : 4) + 63) / 64 + 1) : 0;
        const char *nk = at(k, (size_t)(b0 + nb) * hs, bf);
        const char *nvp = at(v, (size_t)(b0 + nb) * hs, bf);
        __m512 mn =
            _mm512_max_ps(m, lane_scores(s, kw, qt, nb, b0, lo, hi, mask, hs, scale, nk, lines));
        /* the sums so far scaled to the new max: by 0 while a lane had no
         * key (its sums are 0), by exactly 1 where its max held */
        __m512 corr = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m, ninf, _CMP_NEQ_OQ),
                                          fast_expf16(_mm512_sub_ps(m, mn)));
        m = mn;
        __m512 sum = _mm512_setzero_ps();
        for (int j = 0; j < nb; j++) {
            __m512 x = _mm512_load_ps(s + (size_t)j * LANES);
            __m512 p = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, ninf, _CMP_NEQ_OQ),
                                           fast_expf16(_mm512_sub_ps(x, m)));
            _mm512_store_ps(s + (size_t)j * LANES, p);
            sum = _mm512_add_ps(sum, p);
        }
        l = _mm512_fmadd_ps(l, corr, sum);
        lane_mix(ot, vw, s, corr, nb, hs, nvp, lines);
    }
    _mm512_store_ps(l_a, l);
    for (int h = 0; h < hn; h++) {
        float r = l_a[h] > 0.0f ? 1.0f / l_a[h] : 0.0f;
        for (int d = 0; d < hs; d++) o[h][d] = ot[(size_t)d * LANES + h] * r;
    }
}
#endif

/* Query heads h0 .. h0 + hn - 1 of a call (head v is query v / grp's head
 * v % grp): their outputs, queries and key ranges [vlo, vhi). */
static void turn_heads(float **o, const float **qh, int *vlo, int *vhi, int h0, int hn, int grp,
                       float *out, size_t ldo_i, size_t ldo_h, const float *q, size_t ldq_i,
                       size_t ldq_h, const int *lo, const int *hi) {
    for (int h = 0; h < hn; h++) {
        int i = (h0 + h) / grp, g = (h0 + h) % grp;
        o[h] = out + i * ldo_i + g * ldo_h, qh[h] = q + i * ldq_i + g * ldq_h;
        vlo[h] = lo[i], vhi[h] = hi[i] + 1;
    }
}

/* rlaif_attn_queries, and with same (NULL: none) rlaif_attn_decode. */
static void queries(float *out, size_t ldo_i, size_t ldo_h, const float *q, size_t ldq_i,
                    size_t ldq_h, int nq, int grp, const int *lo, const int *hi, const float *kc,
                    const float *vc, const uint16_t *kb, const uint16_t *vb, const uint8_t *mask,
                    int hs, float scale, const rlaif_attn_same *same) {
    int bf = kb != NULL, nv = nq * grp;
    const void *k = bf ? (const void *)kb : (const void *)kc;
    const void *v = bf ? (const void *)vb : (const void *)vc;
    /* a turn's query heads: outputs, queries, key ranges, running max and
     * weight sum; worked out once a turn, not once a block (decoding calls
     * this for every cached head of every row, with a few blocks each) */
    float *o[MAX_GRP], ml[2 * MAX_GRP];
    const float *qh[MAX_GRP];
    int vlo[MAX_GRP], vhi[MAX_GRP];
    size_t row = (size_t)hs * (bf ? 2 : 4);            /* bytes a key */
    int ns = same ? same->n / GRP_KEYS * GRP_KEYS : 0; /* whole blocks, as they fall */
#ifdef HAVE_X86
    if (nq > 1 && rlaif_attn_lanes(hs)) { /* a prefill's queries, in lanes */
        for (int h0 = 0; h0 < nv; h0 += LANES) {
            int hn = nv - h0 < LANES ? nv - h0 : LANES;
            turn_heads(o, qh, vlo, vhi, h0, hn, grp, out, ldo_i, ldo_h, q, ldq_i, ldq_h, lo, hi);
            lanes512(o, qh, vlo, vhi, hn, k, v, mask, hs, scale, bf);
        }
        return;
    }
#endif
    for (int h0 = 0; h0 < nv; h0 += MAX_GRP) {
        int hn = nv - h0 < MAX_GRP ? nv - h0 : MAX_GRP, first = INT_MAX, end = 0;
        turn_heads(o, qh, vlo, vhi, h0, hn, grp, out, ldo_i, ldo_h, q, ldq_i, ldq_h, lo, hi);
        for (int h = 0; h < hn; h++) {
            memset(o[h], 0, sizeof(float) * (size_t)hs);
            ml[2 * h] = -INFINITY, ml[2 * h + 1] = 0.0f;
            first = vlo[h] < first ? vlo[h] : first, end = vhi[h] > end ? vhi[h] : end;
        }
        for (int b0 = first / GRP_KEYS * GRP_KEYS; b0 < end; b0 += GRP_KEYS) {
            int b1 = end - b0 < GRP_KEYS ? end : b0 + GRP_KEYS,
                nj = end - b1 < GRP_KEYS ? end - b1 : GRP_KEYS;
            /* the block from the shared copy when all of it is there */
            const void *bk = b1 <= ns ? same->k : k, *bv = b1 <= ns ? same->v : v;
            /* the next block's lines, one more as it may start inside a line */
            const void *xk = b1 + nj <= ns ? same->k : k, *xv = b1 + nj <= ns ? same->v : v;
            /* the row's own stream after the shared copy: its first block
             * prefetched over this one, as a group's next block is */
            int cross = nj > 0 && xk != bk;
            int lines = (hn > 1 || cross) && nj > 0 ? (int)(((size_t)nj * row + 63) / 64 + 1) : 0;
            const char *nk = at(xk, (size_t)b1 * hs, bf), *nvl = at(xv, (size_t)b1 * hs, bf);
            for (int h = 0; h < hn; h++) {
                int j0 = vlo[h] > b0 ? vlo[h] : b0, j1 = vhi[h] < b1 ? vhi[h] : b1;
                int l0 = lines ? lines * h / hn : 0, l1 = lines ? lines * (h + 1) / hn : 0;
                pf_plan pf = {h == 0 && (hn == 1 || b0 <= first), nk + 64 * l0, nvl + 64 * l0,
                              l1 - l0};
                if (j0 < j1)
                    attend_any(o[h], ml + 2 * h, bk, bv, qh[h], mask, j0, j1, end, hs, scale, pf,
                               bf);
            }
        }
        for (int h = 0; h < hn; h++) finish_any(o[h], ml[2 * h + 1], hs, bf);
    }
}

int rlaif_attn_lanes(int hs) {
#ifdef HAVE_X86
    return use512(hs);
#else
    (void)hs;
    return 0;
#endif
}

void rlaif_attn_queries(float *out, size_t ldo_i, size_t ldo_h, const float *q, size_t ldq_i,
                        size_t ldq_h, int nq, int grp, const int *lo, const int *hi,
                        const float *kc, const float *vc, const uint16_t *kb, const uint16_t *vb,
                        const uint8_t *mask, int hs, float scale) {
    queries(out, ldo_i, ldo_h, q, ldq_i, ldq_h, nq, grp, lo, hi, kc, vc, kb, vb, mask, hs, scale,
            NULL);
}

void rlaif_attn_decode(float *out, size_t ldo, const float *q, size_t ldq, int grp, const float *kc,
                       const float *vc, const uint16_t *kb, const uint16_t *vb, const uint8_t *mask,
                       int n, int hs, float scale, const rlaif_attn_same *same) {
    int lo = 0, hi = n - 1;
    queries(out, 0, ldo, q, 0, ldq, 1, grp, &lo, &hi, kc, vc, kb, vb, mask, hs, scale, same);
}
