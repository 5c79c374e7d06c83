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
 * BF16_QUANTUM, Ap with M rounded up to BF16_QUANTUM rows. */
typedef void bf16_panel_fn(const uint32_t *Ap, int ldp, int M, int nq, const uint32_t *Bp, float *C,
                           int ldc, int ncv, int mode, float beta);
bf16_panel_fn bf16_panel_avx512, bf16_panel_amx;

#endif
