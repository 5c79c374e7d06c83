/* gemm_bf16.h - bfloat16 matrix products with fp32 accumulation, and the
 * chooser that picks, per product shape, the fastest of the engine's paths
 * (private to the engine).
 *
 * bf16 keeps fp32's exponent and 8 significant bits, so a product of two
 * bf16 values is exact in fp32 and the only rounding in a product is that of
 * the fp32 sums. The kernels are chosen at run time (AMX-BF16, AVX512-BF16's
 * vdpbf16ps, plain C) and compiled with __attribute__((target)), so the
 * binary runs on any x86-64. The SIMD kernels treat bf16 denormal inputs as
 * zero (the instructions do); the plain C kernel does not. A weight or an
 * activation that small does not occur in a model; the conversions below
 * keep denormals in every kernel.
 *
 * API history: first version 2026-12-02; added since (nothing changed):
 * rlaif_gemm_run, the packed weights (rlaif_bf16_pack...), the packed path
 * and rlaif_gemm_lookup / _calibrate / _choices_clear (the engine's use). */
#ifndef RLAIF_GEMM_BF16_H
#define RLAIF_GEMM_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rlaif/engine/gemm_choice.h"

typedef uint16_t rlaif_bf16; /* bfloat16 bits: the upper half of an IEEE fp32 */

/* dst[i] = src[i] rounded to the nearest bf16, ties to even; NaN stays NaN
 * (quietened), +-Inf stays Inf, a finite value past bf16's largest becomes
 * Inf, denormals round like any other value. */
void rlaif_bf16_from_f32(rlaif_bf16 *dst, const float *src, size_t n);
/* dst[i] = src[i] (exact). */
void rlaif_bf16_to_f32(float *dst, const rlaif_bf16 *src, size_t n);

/* C (M, N) = op(A) (M, K) @ op(B) (K, N) + beta * C, row-major, op =
 * transpose when ta / tb (then A is stored (K, M), B (N, K)); products of
 * bf16 values summed in fp32. beta == 0 never reads C (NaN there is
 * overwritten). Splits the work over nthreads (OpenMP). */
void rlaif_bf16_gemm(int ta, int tb, int M, int N, int K, const rlaif_bf16 *A, int lda,
                     const rlaif_bf16 *B, int ldb, float beta, float *C, int ldc, int nthreads);

/* The same with either operand given in fp32 (a_f32 / b_f32 = 1: A / B
 * point to floats), rounded to bf16 (as rlaif_bf16_from_f32) while it is
 * packed: activations are converted once per product, with no buffer of
 * their own. The result equals rlaif_bf16_gemm on the converted operands. */
void rlaif_bf16_gemm_ex(int ta, int tb, int M, int N, int K, const void *A, int a_f32, int lda,
                        const void *B, int b_f32, int ldb, float beta, float *C, int ldc,
                        int nthreads);

/* Few-row product for decoding, the bf16 counterpart of rlaif_smallm_gemm:
 * C (M, N) = A (M, K) @ op(W) + beta * C, A in fp32 (rounded to bf16
 * here), W in bf16 in its stored layout: w_trans = 0: W is (K, N) (GPT-2
 * Conv1D), w_trans = 1: W is (N, K) (nn.Linear, the LM head). Each weight
 * is read from memory once per call (half the bytes of fp32: decoding is
 * bound by memory bandwidth). Any M works; it is meant for M <= 64. */
void rlaif_bf16_smallm(int w_trans, int M, int N, int K, const float *A, int lda,
                       const rlaif_bf16 *W, int ldw, float beta, float *C, int ldc, int nthreads);

/* Weights packed once for many products (decoding: every step multiplies
 * by the same weights; packing them on every call cost more than half the
 * time of a 32-row product). op(W) (K, N) as the kernels read it: 64-column
 * panels of k pairs, zero-padded. rlaif_bf16_packed_size: the bytes
 * packed must hold (64-byte aligned memory is best). rlaif_bf16_pack: W as
 * in rlaif_bf16_smallm (w_trans 0: (K, N), 1: (N, K)), in fp32 (w_f32 = 1,
 * rounded as rlaif_bf16_from_f32) or bf16. rlaif_bf16_packed_gemm: C (M, N)
 * = A (M, K) fp32 (rounded to bf16) @ op(W) + beta * C; equal to
 * rlaif_bf16_gemm_ex on the same operands (on AMX up to 64 rows; past them
 * within the same error bound). The layout depends on the kernel in charge
 * when packing (AMX: strips of 16 columns, gemm_bf16_x86.h; the others:
 * panels), so pack and multiply under one kernel. */
size_t rlaif_bf16_packed_size(int K, int N);
void rlaif_bf16_pack(int w_trans, int K, int N, const void *W, int w_f32, int ldw, void *packed,
                     int nthreads);
void rlaif_bf16_packed_gemm(int M, int N, int K, const float *A, int lda, const void *packed,
                            float beta, float *C, int ldc, int nthreads);
/* The same product with a linear layer's bias and residual in place of
 * beta: C = (res + bias) + A @ op(W), bias (N) and res (M, N, leading
 * dimension ldc; may be C) each possibly NULL, with the bits of C filled
 * with res + bias and then rlaif_bf16_packed_gemm with beta 1. On AMX the
 * strips add them to each tile on its way out: the fill was a pass over C
 * of its own (6% of a GPT-2 124M judge's prefill samples). */
void rlaif_bf16_packed_gemm_bias(int M, int N, int K, const float *A, int lda, const void *packed,
                                 const float *bias, const float *res, float *C, int ldc,
                                 int nthreads);

/* Which kernel the bf16 products run: "amx", "avx512bf16" or "c". force:
 * NULL keeps the run-time choice, otherwise one of those names (tests,
 * benchmarks); a kernel this CPU cannot run is refused (the choice stays). */
const char *rlaif_bf16_kernel(const char *force);

/* ----------------------------------------------------------- the chooser
 *
 * The engine has several ways to do one product; which is fastest depends on
 * the CPU and the shape. rlaif_gemm_calibrate times the candidates of a
 * shape class (a few ms, on a slice of the shape with the same K and
 * layout) and remembers the winner; rlaif_gemm_lookup returns it.
 * Results are deterministic for a given choice; different choices round
 * differently (fp32 vs bf16, one kernel's order of sums vs another's), so
 * ranks that must agree bit for bit share one table (rlaif_gemm_choices_get
 * / _set), and the engine's products only look choices up: they never time
 * (a class timed afresh on a resume could pick another path). */
/* rlaif_gemm_path: rlaif/engine/gemm_choice.h */

/* Candidates: allow_bf16 = 0 chooses among the fp32 paths only (precision
 * fp32), 1 among all (precision bf16: the fp32 paths stay candidates, they
 * win where bf16 is slower). The product is C (M, N) = op(A) (M, K) @ op(B)
 * (K, N) with A an fp32 activation and B a weight (bf16 on the bf16 paths),
 * ta / tb as rlaif_bf16_gemm; the few-row paths are candidates when ta = 0
 * and M <= 64, the fp32 packed path (allow_bf16 = 0, AVX-512) whenever
 * ta = 0. rlaif_gemm_force (tests, benchmarks, a config key):
 * RLAIF_GEMM_FORCE_NONE or a path, returned from then on whenever it is a
 * candidate. Classes: (allow_bf16, ta, tb, N, K, M rounded up to a power of
 * two, rows past 128 one class: rlaif_gemm_m_class). */
#define RLAIF_GEMM_MCLASS_MAX 256
int rlaif_gemm_m_class(int M);
/* Times the class of the shape unless the table has it; returns 1 if it
 * timed (a class past the table's room is timed and not kept: 0). */
int rlaif_gemm_calibrate(int allow_bf16, int ta, int tb, int M, int N, int K, int nthreads);
/* The path the table (or a force) says for the shape, -1 if none: the
 * caller then runs its fixed rule. Never times. */
int rlaif_gemm_lookup(int allow_bf16, int ta, int tb, int M, int N, int K);
/* Calibrate, then look up (sgemm when the table has no room). */
rlaif_gemm_path rlaif_gemm_choose(int allow_bf16, int ta, int tb, int M, int N, int K,
                                  int nthreads);
/* The engine counts each forward product under the path it ran. */
void rlaif_gemm_count(int path);
/* Runs path p on C (M, N) = op(A) @ op(W) + beta C (beta 0 or 1 on the
 * few-row paths): W in fp32 for the fp32 paths, Wh (bf16) for the bf16
 * ones (the other may be NULL; RLAIF_PATH_BF16_PACKED: Wh is the packed
 * copy, rlaif_bf16_pack, ta = 0); scratch: K * RLAIF_SMALLM_MAX floats for
 * RLAIF_PATH_SMALLM. The fp32 paths split as the engine does (sgemm: the
 * larger of M and N over the team, one single-threaded sgemm each; OpenBLAS
 * must be single-threaded when nthreads > 1). */
void rlaif_gemm_run(rlaif_gemm_path p, int ta, int tb, int M, int N, int K, const float *A, int lda,
                    const float *W, const rlaif_bf16 *Wh, int ldw, float beta, float *C, int ldc,
                    float *scratch, int nthreads);

#endif
