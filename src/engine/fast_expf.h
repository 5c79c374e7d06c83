/* fast_expf.h - exp for float written so loops over it vectorise, and its
 * AVX-512 form (private to the engine: model.c's softmax, GELU and SiLU,
 * attn_decode.c's online softmax and its queries in lanes). */
#ifndef RLAIF_FAST_EXPF_H
#define RLAIF_FAST_EXPF_H

#include <stdint.h>

/* Cephes' expf: 2^n * p(r) with r = x - n ln2 in [-ln2/2, ln2/2], ln2 in
 * two parts (C1 + C2, C1 exact in few bits) and p of degree 7; relative
 * error about 1e-7. One set of constants for both forms below. */
#define FEXP_LOG2E 1.44269504088896341f
#define FEXP_ROUND 12582912.0f /* 1.5 * 2^23: x + it - it rounds to an integer */
#define FEXP_C1    0.693359375f
#define FEXP_C2    (-2.12194440e-4f)
#define FEXP_P0    1.9875691500e-4f
#define FEXP_P1    1.3981999507e-3f
#define FEXP_P2    8.3334519073e-3f
#define FEXP_P3    4.1665795894e-2f
#define FEXP_P4    1.6666665459e-1f
#define FEXP_P5    5.0000001201e-1f

/* exp(x) for float, vectorisable (no libm call). The bit pattern of 2^n is
 * built by hand so the loop stays in SIMD registers. */
static inline float fast_expf(float x) {
    /* clamp to [-87, 88] with integer masks: a float ?: is a branch for GCC
     * (comparisons may trap), which stops vectorisation */
    union {
        float f;
        int32_t i;
    } u = {x}, lo = {-87.0f}, hi = {88.0f};
    int32_t mlo = -(int32_t)(x < -87.0f), mhi = -(int32_t)(x > 88.0f);
    u.i = (u.i & ~(mlo | mhi)) | (lo.i & mlo) | (hi.i & mhi);
    x = u.f;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (round to nearest even) */
    float fn = (x * FEXP_LOG2E + FEXP_ROUND) - FEXP_ROUND;
    int n = (int)fn;
    float r = x - fn * FEXP_C1 - fn * FEXP_C2;
    float p = FEXP_P0;
    p = p * r + FEXP_P1;
    p = p * r + FEXP_P2;
    p = p * r + FEXP_P3;
    p = p * r + FEXP_P4;
    p = p * r + FEXP_P5;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = (n + 127) << 23};
    return p * scale.f;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* The same for 16 lanes in AVX-512, with FMAs (so not fast_expf's bits):
 * attn_decode.c's queries in lanes. */
static inline __attribute__((always_inline, target("avx512f"))) __m512 fast_expf16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 big = _mm512_set1_ps(FEXP_ROUND);
    __m512 fn = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(FEXP_LOG2E), big), big);
    __m512 r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(FEXP_C2),
                                _mm512_fnmadd_ps(fn, _mm512_set1_ps(FEXP_C1), x));
    __m512 p = _mm512_set1_ps(FEXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FEXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FEXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FEXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FEXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(FEXP_P5));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i n = _mm512_add_epi32(_mm512_cvtps_epi32(fn), _mm512_set1_epi32(127));
    return _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(n, 23)));
}
#endif

#endif
