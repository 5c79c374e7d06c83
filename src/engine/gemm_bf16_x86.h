/* gemm_bf16_x86.h - the x86 pieces of the bf16 products (gemm_bf16_x86.c,
 * gemm_bf16_amx.c), driven by gemm_bf16.c; private to the engine.
 *
 * Packed layouts (both hold pairs of bf16 along k in one uint32, the lower
 * half the even k, as vdpbf16ps and AMX's tdpbf16ps read them):
 *   A block: Ap[m * ldp + q] = pair q of row m of op(A) (row-major pairs),
 *   B panel: Bp[q * BF16_NR + j] = pair q of column j of op(B) (a pair row
 *            per k pair, BF16_NR columns: the "VNNI" layout).
 * Pairs past K, rows past M and columns past N are packed as zeros. */
#ifndef RLAIF_GEMM_BF16_X86_H
#define RLAIF_GEMM_BF16_X86_H

#include <stddef.h>
#include <stdint.h>

#define BF16_NR      64  /* columns of a B panel */
#define BF16_KCP     384 /* most k pairs in a K block */
#define BF16_QUANTUM 16  /* K blocks and packed rows are multiples of this */
#define BF16_FEW     64  /* at most this many rows: a few-row (decoding) product */

/* A stored operand: op(X) element (r, c) is X[r * ld + c], or X[c * ld + r]
 * when trans; bf16 bits, or floats rounded while packed when f32. */
typedef struct {
    const void *p;
    int f32, ld, trans, rows, cols; /* rows, cols: of op(X) */
} bf16_src;

/* C block update of a kernel: store, add, or beta * C + the product. */
enum { BF16_STORE, BF16_ADD, BF16_BETA };

/* 1: AVX-512F + BW (the conversions and the packing), else 0. */
int bf16_x86_avx512bw(void);
/* 1 when the CPU has AVX512-BF16 (and F, BW). */
int bf16_x86_avx512bf16(void);
/* 1 when AMX-BF16 is present and Linux granted its use (asked once). */
int bf16_x86_amx_granted(void);
/* 1 when granted and the AMX kernel passed its self-test (a 40-row product
 * against the AVX512-BF16 kernel): the kernel the products then run. */
int bf16_x86_amx(void);

void bf16_x86_from_f32(uint16_t *dst, const float *src, size_t n);
void bf16_x86_to_f32(float *dst, const uint16_t *src, size_t n);

/* Rows [m0, m1) of op(A), pairs [q0, q0 + nq) into Ap (ldp pairs a row;
 * row m at Ap + (m - m0) * ldp). */
void bf16_x86_pack_a(const bf16_src *A, int m0, int m1, int q0, int nq, uint32_t *Ap, int ldp);
/* Columns [n0, n0 + BF16_NR) of op(B), pairs [q0, q0 + nq) into Bp. */
void bf16_x86_pack_b(const bf16_src *B, int n0, int q0, int nq, uint32_t *Bp);

/* Pairs [qa, qb) of the K block (q0, nq pairs) of op(B) = B stored (K, N)
 * (not transposed), every panel: P[(p * nq + q) * BF16_NR + j]. */
void bf16_x86_pack_b_rows(const bf16_src *B, int q0, int qa, int qb, int nq, uint32_t *P);

/* C (M, ncv <= BF16_NR columns) op= Ap (M, nq pairs) @ Bp; nq a multiple of
 * BF16_QUANTUM, Ap with M rounded up to BF16_QUANTUM rows. next: where the
 * B block after this one starts, when B is one stream in memory (weights
 * packed beforehand), for the kernel to prefetch; NULL: no such stream. */
typedef void bf16_panel_fn(const uint32_t *Ap, int ldp, int M, int nq, const uint32_t *Bp, float *C,
                           int ldc, int ncv, int mode, float beta, const uint32_t *next);
bf16_panel_fn bf16_panel_avx512, bf16_panel_amx;

/* The strip layout of packed weights, AMX's few-row products (gemm_bf16.c,
 * rlaif_bf16_pack while the AMX kernel is in charge): each 64-column panel
 * as 4 strips of 16 columns, strip t at t * kpad * 16, each strip kpad / 16
 * tiles of 1 KB, tile b[f * 16 + c] = pair 16 b + c of column 16 t + f.
 * bf16_amx_strips_from_panel: a packed panel (B panel layout) as strips.
 * bf16_amx_rows_to_columns: G 16-row groups of an A block (ldp = kpad) as
 * Xt[(g * kpad + q) * 16 + i] = pair q of row 16 g + i. bf16_amx_strips: C
 * (M rows, ncv <= 64 columns) op= the rows @ the panel at W over pairs
 * [q0, q0 + nq), the rows from Xt (groups rounded up to even past one);
 * in BF16_STORE mode plus res + bias when either is not NULL (bias: the
 * panel's columns; res: its rows, ldc apart, may be C). */
void bf16_amx_strips_from_panel(uint32_t *dst, const uint32_t *panel, int kpad);
void bf16_amx_rows_to_columns(const uint32_t *Ap, int G, int kpad, uint32_t *Xt);
void bf16_amx_strips(const uint32_t *W, int kpad, int q0, int nq, const uint32_t *Xt, int M,
                     float *C, int ldc, int ncv, int mode, float beta, const float *bias,
                     const float *res);

#endif
