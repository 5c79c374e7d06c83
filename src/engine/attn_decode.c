/* attn_decode.c - decoding's attention reads (see attn_decode.h).
 *
 * Plain C: one dot product per key, each ending in a horizontal sum (the
 * compiler's reduction), and one accumulator row for the values. AVX-512,
 * when the head size is a multiple of 16 and at most 128 (every model the
 * engine loads): scores for 16 keys at a time, whose 16 lane sums are added
 * as one tree (hsum16), and the values in two interleaved accumulator rows,
 * so neither loop waits on its own additions. Chosen at run time. */
#include "config.h"
#include "attn_decode.h"
#include "simd_x86.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define HAVE_X86 1
#endif

/* ------------------------------------------------------------------ plain C */

static void scores_c(float *sc, const float *kc, const float *q, int n, int hs, float scale) {
    for (int j = 0; j < n; j++) {
        const float *k = kc + (size_t)j * hs;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int d = 0; d < hs; d++) s += k[d] * q[d];
        sc[j] = scale * s;
    }
}

static void mix_c(float *out, const float *vc, const float *p, int n, int hs) {
    for (int d = 0; d < hs; d++) out[d] = 0.0f;
    for (int j = 0; j < n; j++) {
        const float *v = vc + (size_t)j * hs;
        float pj = p[j];
#pragma omp simd
        for (int d = 0; d < hs; d++) out[d] += pj * v[d];
    }
}

#ifdef HAVE_X86
/* ------------------------------------------------------------------ AVX-512 */

#define MAX_NV 8 /* hs <= 128 */

static __attribute__((target("avx512f"))) void scores512(float *sc, const float *kc, const float *q,
                                                         int n, int hs, float scale) {
    int nv = hs / 16, j = 0;
    __m512 qv[MAX_NV], s = _mm512_set1_ps(scale);
    for (int v = 0; v < nv; v++) qv[v] = _mm512_loadu_ps(q + 16 * v);
    for (; j + 16 <= n; j += 16) {
        const float *k = kc + (size_t)j * hs;
        __m512 acc[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            const float *ki = k + (size_t)i * hs;
            acc[i] = _mm512_setzero_ps();
            for (int v = 0; v < nv; v++) {
                /* each line 16 keys ahead: prefetchers stop at 4 KB pages */
                _mm_prefetch((const char *)(ki + (size_t)16 * hs + 16 * v), _MM_HINT_T0);
                acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(ki + 16 * v), qv[v], acc[i]);
            }
        }
        _mm512_storeu_ps(sc + j, _mm512_mul_ps(hsum16(acc), s));
    }
    scores_c(sc + j, kc + (size_t)j * hs, q, n - j, hs, scale);
}

static __attribute__((target("avx512f"))) void mix512(float *out, const float *vc, const float *p,
                                                      int n, int hs) {
    int nv = hs / 16, j = 0;
    __m512 a0[MAX_NV], a1[MAX_NV];
    for (int v = 0; v < nv; v++) a0[v] = a1[v] = _mm512_setzero_ps();
    for (; j + 2 <= n; j += 2) {
        const float *v0 = vc + (size_t)j * hs, *v1 = v0 + hs;
        __m512 p0 = _mm512_set1_ps(p[j]), p1 = _mm512_set1_ps(p[j + 1]);
        for (int v = 0; v < nv; v++) {
            _mm_prefetch((const char *)(v0 + (size_t)16 * hs + 16 * v), _MM_HINT_T0);
            _mm_prefetch((const char *)(v1 + (size_t)16 * hs + 16 * v), _MM_HINT_T0);
            a0[v] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * v), a0[v]);
            a1[v] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1 + 16 * v), a1[v]);
        }
    }
    if (j < n) {
        __m512 p0 = _mm512_set1_ps(p[j]);
        for (int v = 0; v < nv; v++)
            a0[v] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(vc + (size_t)j * hs + 16 * v), a0[v]);
    }
    for (int v = 0; v < nv; v++) _mm512_storeu_ps(out + 16 * v, _mm512_add_ps(a0[v], a1[v]));
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

void rlaif_attn_scores(float *sc, const float *kc, const float *q, int n, int hs, float scale) {
#ifdef HAVE_X86
    if (use512(hs)) {
        scores512(sc, kc, q, n, hs, scale);
        return;
    }
#endif
    scores_c(sc, kc, q, n, hs, scale);
}

void rlaif_attn_mix(float *out, const float *vc, const float *p, int n, int hs) {
#ifdef HAVE_X86
    if (use512(hs)) {
        mix512(out, vc, p, n, hs);
        return;
    }
#endif
    mix_c(out, vc, p, n, hs);
}
