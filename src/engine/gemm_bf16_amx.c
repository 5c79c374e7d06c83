/* gemm_bf16_amx.c - the AMX-BF16 panel kernel of the bf16 products.
 *
 * First run on hardware 2026-12-04 (an Intel Xeon VM with AMX-BF16): the
 * guard below passed and tests/unit/test_gemm_bf16 holds the kernel to its
 * error bound. It runs only when CPUID reports AMX-TILE and AMX-BF16, the
 * OS enabled the tile state in XCR0, Linux granted this process the tile
 * data (arch_prctl ARCH_REQ_XCOMP_PERM), and a self-test on first use
 * (under a SIGILL / SIGSEGV guard) matches the AVX512-BF16 kernel on a
 * small product, through the panel kernel and through decoding's strips
 * (below); any failure leaves the AVX512-BF16 kernel in charge.
 *
 * Tiles: C is computed in 2 x 2 tiles of 16 x 16 fp32 (32 rows x 32
 * columns, half a 64-column panel), from 2 A tiles (16 rows x 16 k pairs,
 * row stride ldp pairs: the packed A block as it is) and 2 B tiles (16 k
 * pairs x 16 columns: rows of the packed B panel, stride 64 pairs): the
 * packed layouts of gemm_bf16_x86.h are AMX's without change. Products of
 * at most BF16_FEW rows and 16-row edges use 1 x 4 tiles instead: 16 rows
 * across the panel's 64 columns (dot_panel16). Decoding's products, over
 * weights packed beforehand, compute C^T instead (bf16_amx_strips, below).
 */
#include "config.h"
#include "gemm_bf16_x86.h"
#include "simd_x86.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA  18
#define T_AMX               "amx-tile,amx-bf16,avx512f,avx512bw,avx512vl"

/* The LDTILECFG operand (64 bytes, palette 1). */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed, aligned(64))) tile_config;

/* tiles 0-3: C, 4-5: A, 6-7: B; all 16 rows of 64 bytes */
static __attribute__((target(T_AMX))) void load_config(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    _tile_loadconfig(&cfg);
}

/* C rows [0, rv) x columns [0, ncv) op= out (32 x 64, row stride 64). */
static __attribute__((target(T_AMX))) void update(const float *out, float *C, int ldc, int rv,
                                                  int ncv, int mode, float beta) {
    __m512 vb = _mm512_set1_ps(beta);
    for (int r = 0; r < rv; r++)
        for (int v = 0; v < 64 && v < ncv; v += 16) {
            int c = ncv - v;
            __mmask16 mk = c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << c) - 1);
            float *dst = C + (size_t)r * ldc + v;
            __m512 x = _mm512_loadu_ps(out + r * 64 + v);
            if (mode == BF16_ADD) x = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, dst), x);
            if (mode == BF16_BETA) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk, dst), x);
            _mm512_mask_storeu_ps(dst, mk, x);
        }
}

/* Tiles 0-3 (C rows [m, m + 32) x columns [half, half + 32)) += the 32 A
 * rows @ the panel's columns, over nq pairs. */
static inline __attribute__((always_inline, target(T_AMX))) void
dot_block(const uint32_t *Ap, int ldp, int nq, const uint32_t *Bp, int half) {
    size_t sa = (size_t)ldp * 4, sb = BF16_NR * 4;
    for (int q = 0; q < nq; q += 16) {
        const uint32_t *b = Bp + (size_t)q * BF16_NR + half;
        _tile_loadd(4, Ap + q, sa);
        _tile_loadd(6, b, sb);
        _tile_loadd(7, b + 16, sb);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, Ap + (size_t)16 * ldp + q, sa);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
}

/* A whole 32 x 64 block of C: the tiles start from C (BF16_ADD) or zero
 * and are stored straight back. Going through a buffer and a vector pass
 * instead made the kernel take 1.05-1.36x the time (scratch benchmark,
 * 256-1024 rows, 48 panels, 2026-12-04, Intel Xeon with AMX). */
static __attribute__((target(T_AMX))) void
whole_block(const uint32_t *Ap, int ldp, int nq, const uint32_t *Bp, float *C, int ldc, int add) {
    size_t sc = (size_t)ldc * 4;
    for (int half = 0; half < 64; half += 32) {
        float *c = C + half;
        if (add) {
            _tile_loadd(0, c, sc);
            _tile_loadd(1, c + 16, sc);
            _tile_loadd(2, c + (size_t)16 * ldc, sc);
            _tile_loadd(3, c + (size_t)16 * ldc + 16, sc);
        } else {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
        }
        dot_block(Ap, ldp, nq, Bp, half);
        _tile_stored(0, c, sc);
        _tile_stored(1, c + 16, sc);
        _tile_stored(2, c + (size_t)16 * ldc, sc);
        _tile_stored(3, c + (size_t)16 * ldc + 16, sc);
    }
}

/* Tiles 0-3 (C rows [m, m + 16) x the panel's 64 columns) += 16 A rows @
 * the panel, over nq pairs: each step reads 16 whole rows of the panel (4
 * KB in a row), where dot_block's halves read 128 of every 256 bytes and
 * then come back for the rest. Few rows (decoding) stream the weights
 * once per call, so that read is the product's time: GPT-2 124M bf16
 * decoding steps (bench_engine gen, 450-token prompts, alternating with
 * the halves, Intel Xeon with AMX) 12.6-12.9 -> 11.2-11.5 ms at batch 1,
 * 15.3-15.5 -> 14.3-14.5 at 4, 26.9-27.1 -> 25.9-26.6 at 16. A software
 * prefetch 4 or 16 KB ahead moved it within noise. B tiles rotate over
 * 5, 6 and 7 (5 is A's second tile only in dot_block). */
static inline __attribute__((always_inline, target(T_AMX))) void
dot_panel16(const uint32_t *Ap, int ldp, int nq, const uint32_t *Bp) {
    size_t sa = (size_t)ldp * 4, sb = BF16_NR * 4;
    for (int q = 0; q < nq; q += 16) {
        const uint32_t *b = Bp + (size_t)q * BF16_NR;
        _tile_loadd(4, Ap + q, sa);
        _tile_loadd(5, b, sb);
        _tile_dpbf16ps(0, 4, 5);
        _tile_loadd(6, b + 16, sb);
        _tile_dpbf16ps(1, 4, 6);
        _tile_loadd(7, b + 32, sb);
        _tile_dpbf16ps(2, 4, 7);
        _tile_loadd(5, b + 48, sb);
        _tile_dpbf16ps(3, 4, 5);
    }
}

/* out (32 x 64) = Ap rows [m, m + 32) @ the panel: the edge blocks of more
 * than 16 rows, whose C rows or columns are fewer than the tiles'. */
static __attribute__((target(T_AMX))) void block(const uint32_t *Ap, int ldp, int nq,
                                                 const uint32_t *Bp, float *out) {
    size_t so = 64 * 4;
    for (int half = 0; half < 64; half += 32) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        dot_block(Ap, ldp, nq, Bp, half);
        _tile_stored(0, out + half, so);
        _tile_stored(1, out + half + 16, so);
        _tile_stored(2, out + 16 * 64 + half, so);
        _tile_stored(3, out + 16 * 64 + half + 16, so);
    }
}

/* C rows [0, rv <= 16) x columns [0, ncv) op= 16 A rows @ the panel: the
 * tiles from zero, stored straight to C where the block is whole and
 * mode is BF16_STORE, else through out and update. So a row's sums are
 * the same whatever the rows beside it: a decoding row gets the same bits
 * in a batch of 1 as of 64 (test_gemm_bf16, check_rows_alone). */
static __attribute__((target(T_AMX))) void rows16(const uint32_t *Ap, int ldp, int nq,
                                                  const uint32_t *Bp, float *C, int ldc, int rv,
                                                  int ncv, int mode, float beta, float *out) {
    int direct = rv == 16 && ncv == 64 && mode == BF16_STORE;
    float *c = direct ? C : out;
    size_t sc = (size_t)(direct ? ldc : 64) * 4;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    dot_panel16(Ap, ldp, nq, Bp);
    _tile_stored(0, c, sc);
    _tile_stored(1, c + 16, sc);
    _tile_stored(2, c + 32, sc);
    _tile_stored(3, c + 48, sc);
    if (!direct) update(out, C, ldc, rv, ncv, mode, beta);
}

/* Up to BF16_FEW rows (decoding) go 16 at a time through dot_panel16:
 * the first block reads the panel from memory as whole rows and the others
 * from L2, where 32-row blocks read it in 32-column halves (128 of every
 * 256 bytes, then back for the rest). tools/bench/bench_gemm_bf16 5 2
 * decode (2 threads, weights cold), 2 rounds each, with the team's
 * contiguous runs of panels (gemm_bf16.c) on both sides, Intel Xeon with
 * AMX, 2026-12-05: 32 x 3072 x 768 0.35-0.36 -> 0.31 ms, 32 x 768 x 3072
 * 0.36-0.39 -> 0.33-0.34, the 32-row LM head 5.5-5.6 -> 5.0-5.1, 64 x 3072
 * x 768 0.45 -> 0.43-0.44. */
__attribute__((target(T_AMX))) void bf16_panel_amx(const uint32_t *Ap, int ldp, int M, int nq,
                                                   const uint32_t *Bp, float *C, int ldc, int ncv,
                                                   int mode, float beta, const uint32_t *next) {
    (void)next; /* the tile loads' pace: nothing measured to gain yet */
    float out[32 * 64] __attribute__((aligned(64)));
    load_config(); /* tile state is per thread: set it on every team thread */
    /* beta 1 (a gradient accumulated): the tiles start from C, which sums
     * in another order than c + x but within the same bound */
    if (mode == BF16_BETA && beta == 1.0f) mode = BF16_ADD;
    if (M <= BF16_FEW) {
        for (int m = 0; m < M; m += 16)
            rows16(Ap + (size_t)m * ldp, ldp, nq, Bp, C + (size_t)m * ldc, ldc,
                   M - m < 16 ? M - m : 16, ncv, mode, beta, out);
        _tile_release();
        return;
    }
    for (int m = 0; m < M; m += 32) {
        int rv = M - m < 32 ? M - m : 32;
        if (rv == 32 && ncv == 64 && mode != BF16_BETA) {
            whole_block(Ap + (size_t)m * ldp, ldp, nq, Bp, C + (size_t)m * ldc, ldc,
                        mode == BF16_ADD);
            continue;
        }
        if (rv <= 16) {
            rows16(Ap + (size_t)m * ldp, ldp, nq, Bp, C + (size_t)m * ldc, ldc, rv, ncv, mode, beta,
                   out);
            continue;
        }
        block(Ap + (size_t)m * ldp, ldp, nq, Bp, out);
        update(out, C + (size_t)m * ldc, ldc, rv, ncv, mode, beta);
    }
    _tile_release();
}

/* ------------------------------------------------ few rows over strips */

/* Decoding multiplies a few rows by weights packed once (rlaif_bf16_pack),
 * so each weight tile is read once and the product's time is that read.
 * With the rows as the A operand (rows16), each 16-row block reads the
 * whole panel: the first from memory, the others from L2, one after the
 * other. Here the weights are the A operand, in the strip layout (each 1
 * KB tile their 16 columns x 16 pairs, transposed once when packed), and
 * the rows are B, turned to columns once a call: C^T = W^T X^T, each
 * weight tile loaded once and multiplied by every 16-row group while the
 * next streams in; a 16 x 16 transpose a tile on the way out (update_t).
 * Up to 16 rows, four strips side by side (four read streams, the rows'
 * tile kept); more, two strips x two row groups (tiles: 4 C, 2 weights, 2
 * rows), the strips read again from L2 for the next pair of groups. One
 * strip x four groups (one weight tile, four row tiles rotating through
 * three) was 1.1-1.3x slower than rows16 in a scratch program: the reused
 * row tile waits for the product before it that reads it. The K blocks
 * and the modes are gemm_packed's, so a row's sums are those of the
 * general path bit for bit (test_gemm_bf16).
 *
 * Measured 2026-12-05, the Intel Xeon VM with AMX, 2 threads, both
 * layouts in one build alternating (an environment switch since removed):
 * `tools/bench/bench_gemm_bf16 3 2 decode` (weights cold), 2 rounds each,
 * rows16 -> strips: 1 x 3072 x 768 0.275 -> 0.236-0.238 ms, 8 x 2304 x 768
 * 0.208-0.216 -> 0.177-0.182, 32 x 3072 x 768 0.349-0.357 -> 0.325-0.343,
 * 32 x 768 x 3072 0.345 -> 0.336-0.371, the 32-row LM head 5.29-5.30 ->
 * 4.72-4.94, 64 x 3072 x 768 0.480-0.489 -> 0.433-0.464. Decoding
 * (`bench_engine gen`, bf16, 450-token prompts, 2 runs each), the step:
 * GPT-2 124M batch 1 16.1-16.2 -> 14.5-14.8 ms, 16 33.3-34.5 -> 31.4-31.7,
 * 64 93.6-94.1 -> 93.4-94.4; TinyLlama's layer shape (2 layers and the
 * head) batch 1 18.1-18.5 -> 16.2-16.3, 64 36.2-36.4 -> 34.1-35.3. At 64
 * rows the transposes out (15% of the kernel's samples) and the strips'
 * second read from L2 take back what the single read of the weights
 * gains. One pass over K (tiles kept across the K blocks: fewer
 * transposes, other bits) gained only the 3072-deep product, 5%. */

/* The strip layout (gemm_bf16_x86.h) from a packed panel: strip t's tile b
 * is the transpose of the panel's 16 x 16 pairs at pair row 16 b, column
 * 16 t. */
__attribute__((target(T_AMX))) void bf16_amx_strips_from_panel(uint32_t *dst, const uint32_t *panel,
                                                               int kpad) {
    for (int t = 0; t < 4; t++)
        for (int q = 0; q < kpad; q += 16) {
            __m512 r[16];
            for (int c = 0; c < 16; c++)
                r[c] = _mm512_castsi512_ps(
                    _mm512_loadu_si512(panel + (size_t)(q + c) * BF16_NR + 16 * t));
            transpose16(r);
            for (int f = 0; f < 16; f++)
                _mm512_storeu_si512(dst + ((size_t)t * kpad + q + f) * 16,
                                    _mm512_castps_si512(r[f]));
        }
}

/* Xt = the 16-row groups of Ap (G groups, kpad pairs a row) turned to
 * columns: Xt[(g * kpad + q) * 16 + i] = Ap[(16 g + i) * kpad + q]. */
__attribute__((target(T_AMX))) void bf16_amx_rows_to_columns(const uint32_t *Ap, int G, int kpad,
                                                             uint32_t *Xt) {
    for (int g = 0; g < G; g++)
        for (int q = 0; q < kpad; q += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] =
                    _mm512_castsi512_ps(_mm512_loadu_si512(Ap + (size_t)(16 * g + i) * kpad + q));
            transpose16(r);
            for (int j = 0; j < 16; j++)
                _mm512_storeu_si512(Xt + ((size_t)g * kpad + q + j) * 16,
                                    _mm512_castps_si512(r[j]));
        }
}

/* Tiles 0-3 += four strips' tiles (A operands, from W, strips ss apart) @
 * one group's columns of X (the B operand, tile 4): one row group, the
 * four strips read side by side. */
static inline __attribute__((always_inline, target(T_AMX))) void
dot_strips4(const uint32_t *W, size_t ss, const uint32_t *X, int nq) {
    for (int q = 0; q < nq; q += 16) {
        const uint32_t *w = W + (size_t)q * 16;
        _tile_loadd(4, X + (size_t)q * 16, 64);
        _tile_loadd(5, w, 64);
        _tile_dpbf16ps(0, 5, 4);
        _tile_loadd(6, w + ss, 64);
        _tile_dpbf16ps(1, 6, 4);
        _tile_loadd(7, w + 2 * ss, 64);
        _tile_dpbf16ps(2, 7, 4);
        _tile_loadd(5, w + 3 * ss, 64);
        _tile_dpbf16ps(3, 5, 4);
    }
}

/* Tiles 0-3 += two strips (W, W + ss) @ two groups' columns (X, X + gs):
 * tile 2 s + g for strip s, group g. */
static inline __attribute__((always_inline, target(T_AMX))) void
dot_strips2(const uint32_t *W, size_t ss, const uint32_t *X, size_t gs, int nq) {
    for (int q = 0; q < nq; q += 16) {
        const uint32_t *w = W + (size_t)q * 16, *x = X + (size_t)q * 16;
        _tile_loadd(4, w, 64);
        _tile_loadd(6, x, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, x + gs, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, w + ss, 64);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
}

/* tiles 0-3 into t, 256 floats each */
static inline __attribute__((always_inline, target(T_AMX))) void store_tiles(float *t) {
    _tile_stored(0, t, 64);
    _tile_stored(1, t + 256, 64);
    _tile_stored(2, t + 512, 64);
    _tile_stored(3, t + 768, 64);
}

/* C rows [0, rv) x columns [0, nc) op= the transpose of a 16 x 16 tile of
 * C^T (t: 16 columns of C, each the 16 rows' sums), as update's modes.
 * BF16_STORE with bias (the tile's columns) or res (its rows, ldc apart;
 * may be C): C = sums + (res + bias), the bits of C filled with res + bias
 * and the sums added (addition commutes). */
static __attribute__((target(T_AMX))) void update_t(const float *t, float *C, int ldc, int rv,
                                                    int nc, int mode, float beta, const float *bias,
                                                    const float *res) {
    if (nc <= 0 || rv <= 0) return;
    __m512 r[16], vb = _mm512_set1_ps(beta);
    for (int i = 0; i < 16; i++) r[i] = _mm512_load_ps(t + 16 * i);
    transpose16(r);
    __mmask16 mk = nc >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1);
    __m512 vbias = bias ? _mm512_maskz_loadu_ps(mk, bias) : _mm512_setzero_ps();
    int pre = mode == BF16_STORE && (bias || res);
    for (int m = 0; m < rv; m++) {
        float *dst = C + (size_t)m * ldc;
        __m512 x = r[m];
        if (pre) {
            __m512 p = vbias;
            if (res) {
                __m512 rr = _mm512_maskz_loadu_ps(mk, res + (size_t)m * ldc);
                p = bias ? _mm512_add_ps(rr, vbias) : rr;
            }
            x = _mm512_add_ps(x, p);
        }
        if (mode == BF16_ADD) x = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, dst), x);
        if (mode == BF16_BETA) x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk, dst), x);
        _mm512_mask_storeu_ps(dst, mk, x);
    }
}

/* C (M rows, ncv <= 64 columns) op= the rows' pairs [q0, q0 + nq) @ one
 * packed panel's pairs there, the panel in the strip layout (W: its first
 * strip, kpad pairs a strip) and the rows as columns (Xt, kpad pairs a
 * group, groups rounded up to even past one). C^T is computed: the
 * weights are the A operand, so each 1 KB tile of them is read once
 * whatever the rows, and each tile product adds 16 rows' sums. */
__attribute__((target(T_AMX))) void bf16_amx_strips(const uint32_t *W, int kpad, int q0, int nq,
                                                    const uint32_t *Xt, int M, float *C, int ldc,
                                                    int ncv, int mode, float beta,
                                                    const float *bias, const float *res) {
    float t[4 * 256] __attribute__((aligned(64)));
    size_t ss = (size_t)kpad * 16;
    if (mode == BF16_BETA && beta == 1.0f) mode = BF16_ADD;
    load_config();
    if (M <= 16) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        dot_strips4(W + (size_t)q0 * 16, ss, Xt + (size_t)q0 * 16, nq);
        store_tiles(t);
        for (int u = 0; u < 4; u++)
            update_t(t + 256 * u, C + 16 * u, ldc, M, ncv - 16 * u, mode, beta,
                     bias ? bias + 16 * u : NULL, res ? res + 16 * u : NULL);
    } else
        for (int s = 0; s < 4; s += 2)
            for (int g = 0; g < (M + 15) / 16; g += 2) {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
                dot_strips2(W + s * ss + (size_t)q0 * 16, ss, Xt + (g * ss) + (size_t)q0 * 16, ss,
                            nq);
                store_tiles(t);
                for (int u = 0; u < 4; u++) {
                    int sg = s + u / 2, gg = g + u % 2;
                    size_t at = (size_t)16 * gg * ldc + 16 * sg;
                    update_t(t + 256 * u, C + at, ldc, M - 16 * gg < 16 ? M - 16 * gg : 16,
                             ncv - 16 * sg, mode, beta, bias ? bias + 16 * sg : NULL,
                             res ? res + at : NULL);
                }
            }
    _tile_release();
}

/* ------------------------------------------------------------ the guard */

static sigjmp_buf trap;
static void on_trap(int sig) {
    siglongjmp(trap, sig);
}

/* A 40 x 61 x 70 product through both kernels (with bf16 values the
 * products are exact; only the order of the fp32 sums differs); 61
 * columns, so every strip of the panel is used, the last partly. */
static int self_test(void) {
    enum { M = 40, N = 61, K = 70, KP = 48 /* pairs, a multiple of 16 */ };
    static float a[M * K], b[K * N], c1[M * N], c2[M * N], c3[M * N], c4[16 * N];
    static uint32_t Ap[64 * KP], Bp[KP * BF16_NR], S[KP * BF16_NR], Xt[64 * KP];
    for (int i = 0; i < M * K; i++) a[i] = (float)((i * 7) % 19) / 8.0f - 1.0f;
    for (int i = 0; i < K * N; i++) b[i] = (float)((i * 5) % 23) / 16.0f - 0.5f;
    bf16_src A = {a, 1, K, 0, M, K}, B = {b, 1, N, 0, K, N};
    bf16_x86_pack_a(&A, 0, 64, 0, KP, Ap, KP); /* 4 row groups for the strips */
    bf16_x86_pack_b(&B, 0, 0, KP, Bp);
    bf16_panel_avx512(Ap, KP, M, KP, Bp, c1, N, N, BF16_STORE, 0.0f, NULL);
    struct sigaction sa, old_ill, old_segv;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_trap;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGILL, &sa, &old_ill);
    sigaction(SIGSEGV, &sa, &old_segv);
    int ok = 0;
    if (sigsetjmp(trap, 1) == 0) {
        bf16_panel_amx(Ap, KP, M, KP, Bp, c2, N, N, BF16_STORE, 0.0f, NULL);
        /* decoding's path too: the strips, 40 rows (two strips x two
         * groups) and 16 (four strips x one group) */
        bf16_amx_strips_from_panel(S, Bp, KP);
        bf16_amx_rows_to_columns(Ap, 4, KP, Xt);
        bf16_amx_strips(S, KP, 0, KP, Xt, M, c3, N, N, BF16_STORE, 0.0f, NULL, NULL);
        bf16_amx_strips(S, KP, 0, KP, Xt, 16, c4, N, N, BF16_STORE, 0.0f, NULL, NULL);
        ok = 1;
    }
    sigaction(SIGILL, &old_ill, NULL);
    sigaction(SIGSEGV, &old_segv, NULL);
    for (int i = 0; i < M * N && ok; i++) /* values are multiples of 2^-7, sums < 2^10 */
        ok = fabsf(c1[i] - c2[i]) <= 1e-3f && fabsf(c1[i] - c3[i]) <= 1e-3f &&
             (i >= 16 * N || fabsf(c1[i] - c4[i]) <= 1e-3f);
    return ok;
}

static int os_grants_amx(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!(d & bit_AMX_TILE) || !(d & bit_AMX_BF16)) return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return 0; /* XTILECFG, XTILEDATA */
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

int bf16_x86_amx_granted(void) {
    static int state = -1;
    if (state < 0) state = bf16_x86_avx512bf16() && os_grants_amx();
    return state;
}

int bf16_x86_amx(void) {
    static int state = -1;
    if (state < 0) state = bf16_x86_amx_granted() && self_test();
    return state;
}

#else /* no AMX off x86-64 Linux */
int bf16_x86_amx_granted(void) {
    return 0;
}
int bf16_x86_amx(void) {
    return 0;
}
void bf16_panel_amx(const uint32_t *Ap, int ldp, int M, int nq, const uint32_t *Bp, float *C,
                    int ldc, int ncv, int mode, float beta, const uint32_t *next) {
    bf16_panel_avx512(Ap, ldp, M, nq, Bp, C, ldc, ncv, mode, beta, next);
}
void bf16_amx_strips_from_panel(uint32_t *dst, const uint32_t *panel, int kpad) {
    (void)dst, (void)panel, (void)kpad;
}
void bf16_amx_rows_to_columns(const uint32_t *Ap, int G, int kpad, uint32_t *Xt) {
    (void)Ap, (void)G, (void)kpad, (void)Xt;
}
void bf16_amx_strips(const uint32_t *W, int kpad, int q0, int nq, const uint32_t *Xt, int M,
                     float *C, int ldc, int ncv, int mode, float beta, const float *bias,
                     const float *res) {
    (void)W, (void)kpad, (void)q0, (void)nq, (void)Xt, (void)M, (void)C, (void)ldc, (void)ncv,
        (void)mode, (void)beta, (void)bias, (void)res;
}
#endif
