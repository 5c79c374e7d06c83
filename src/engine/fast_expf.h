/* fast_expf.h - exp for float written so loops over it vectorise (private to
 * the engine: model.c's softmax, GELU and SiLU, attn_decode.c's online
 * softmax). */
#ifndef RLAIF_FAST_EXPF_H
#define RLAIF_FAST_EXPF_H

#include <stdint.h>

/* exp(x) for float, vectorisable (no libm call): Cephes' expf, 2^n * p(r)
 * with r = x - n ln2 in [-ln2/2, ln2/2]; relative error about 1e-7. The
 * bit pattern of 2^n is built by hand so the loop stays in SIMD registers. */
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
    float fn = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    int n = (int)fn;
    float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = (n + 127) << 23};
    return p * scale.f;
}

#endif
