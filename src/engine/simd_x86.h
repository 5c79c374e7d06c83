/* simd_x86.h - small AVX-512 building blocks shared by the engine's matrix
 * kernels (model_gemm.c, gemm_bf16_x86.c); private to the engine. Each is
 * compiled for its target with __attribute__((target)) so including files
 * need no -march. */
#ifndef RLAIF_SIMD_X86_H
#define RLAIF_SIMD_X86_H

/* Hot elementwise row kernels get an AVX-512 clone next to the baseline
 * (SSE2) one, picked at load time (ifunc): the build has no -march, and the
 * baseline is 4 floats wide. -std=c11 keeps FP contraction off, so each
 * clone computes the same operations per element. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SIMD_CLONES __attribute__((target_clones("avx512f", "default")))
#else
#define SIMD_CLONES
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* In-register transpose of 16 x 16 floats: r[i][j] -> r[j][i]. */
static inline __attribute__((always_inline, target("avx512f"))) void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4i + j], 128-bit lane L: column 4L + j of rows 4i .. 4i + 3 */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512 a = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        __m512 b = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        __m512 c = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        __m512 d = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_f32x4(a, b, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(a, b, 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(c, d, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(c, d, 0xDD);
    }
}

/* The lane sums of 16 vectors as one vector: lane j = sum of v[j]'s 16
 * lanes (added in pairs, a tree of 4 levels; 15 shuffles for 16 sums where
 * one reduction each would take 4 dependent steps each). */
static inline __attribute__((always_inline, target("avx512f"))) __m512 hsum16(const __m512 v[16]) {
    __m512 w[8], u[4], z[2];
    /* 128-bit lane of w[i]: (a0+a2, b0+b2, a1+a3, b1+b3) of a = v[2i], b = v[2i+1] */
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        w[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
        /* 128-bit lane of u[i]: partial sums of v[4i .. 4i+3], in order */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m512d x = _mm512_castps_pd(w[2 * i]), y = _mm512_castps_pd(w[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    /* then the four 128-bit lanes of each group of 4 added, twice */
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        z[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(z[0], z[1], 0x88),
                         _mm512_shuffle_f32x4(z[0], z[1], 0xDD));
}

#endif
#endif
