/* test_gemm_bf16.c - the bf16 products (src/engine/gemm_bf16.c) against a
 * float64 reference, for every kernel this CPU can run; the conversions
 * against an independent reference; the chooser's table.
 *
 * Error bound. The inputs are bf16 values (8 significant bits), so every
 * product a_k b_k (16 significant bits) is exact in fp32, and the only
 * roundings are those of the fp32 sums: K products, then + beta * c (one
 * more rounding for the product beta * c). However the kernel orders its
 * sums (in k order, in pairs as vdpbf16ps does, in K blocks added to C), a
 * sum of n terms in fp32 with each addition rounded once is within
 *   |c - c_exact| <= gamma_n (sum_k |a_k b_k| + |beta c|),
 *   gamma_n = n u / (1 - n u),  u = 2^-24,  n = K + 2
 * (Higham, Accuracy and Stability of Numerical Algorithms, 4.2). The exact
 * value is computed in float64 (exact here for K < 2^29 / 2^16, covered by
 * the slack factor 1.01). The test inputs avoid denormals, which the SIMD
 * kernels treat as zero.
 * The benchmark is tools/bench/bench_gemm_bf16. */
#include "check_main.h"
#include "gemm_bf16.h"
#include "gemm_bf16_x86.h" /* bf16_x86_amx_granted */
#include "model_gemm.h"
#include "rlaif/core/log.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rng_state = 88172645463325252ULL;
static unsigned long long next_u64(void) { /* xorshift64 */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return rng_state;
}
/* Uniform in [-1, 1), at least 2^-20 in magnitude (no denormal products). */
static float frand(void) {
    float f = (float)((double)(next_u64() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    return fabsf(f) < 0x1p-20f ? 0.5f : f;
}

static void *xalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    ck_assert_msg(p != NULL, "out of memory");
    return p;
}

/* ------------------------------------------------------------ conversion */

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Reference rounding in float64: the two bf16 neighbours of x (truncation
 * and the next one away from zero), the nearer wins, a tie goes to the one
 * with an even last bit. */
static uint16_t ref_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if (isnan(x)) return 0xFFFF; /* any NaN: compared as a class below */
    uint32_t lo = u & 0xFFFF0000u, hi = lo + 0x10000u;
    if ((u & 0xFFFFu) == 0) return (uint16_t)(lo >> 16);
    /* above bf16's largest finite value the next one is 2^128 (then Inf) */
    double xh = (hi & 0x7FFFFFFFu) == 0x7F800000u ? copysign(ldexp(1.0, 128), x) : from_bits(hi);
    double dl = fabs((double)x - from_bits(lo)), dh = fabs(xh - (double)x);
    if (dl < dh || (dl == dh && ((lo >> 16) & 1u) == 0)) return (uint16_t)(lo >> 16);
    return (uint16_t)(hi >> 16);
}

static void check_round(uint32_t u, const char *what) {
    float x = from_bits(u), back;
    rlaif_bf16 h;
    rlaif_bf16_from_f32(&h, &x, 1);
    rlaif_bf16_to_f32(&back, &h, 1);
    if (isnan(x)) {
        ck_assert_msg(isnan(back), "%s: NaN 0x%08x became 0x%04x", what, u, h);
        return;
    }
    uint16_t want = ref_round(x);
    ck_assert_msg(h == want, "%s: 0x%08x (%g) -> 0x%04x, want 0x%04x", what, u, (double)x, h, want);
    ck_assert_msg(back == from_bits((uint32_t)h << 16), "%s: to_f32 not exact", what);
}

static int n_kernels(const char **names);
static void convert_cases(void);

/* Each kernel's conversions (forcing "c" runs the scalar ones). */
START_TEST(test_convert_cases) {
    const char *kern[3];
    int nk = n_kernels(kern);
    for (int ki = 0; ki < nk; ki++) {
        rlaif_bf16_kernel(kern[ki]);
        convert_cases();
    }
    rlaif_bf16_kernel(kern[nk - 1]);
}
END_TEST

static void convert_cases(void) {
    static const uint32_t cases[] = {
        0x3F800000u,              /* 1 */
        0x3F808000u,              /* 1 + 2^-8: a tie, kept half even -> 1 */
        0x3F818000u,              /* 1 + 3 2^-8: a tie, kept half odd -> 1 + 2^-6 */
        0x3F808001u,              /* just above the tie -> up */
        0x3F807FFFu,              /* just below -> down */
        0xBF818000u,              /* negative tie -> away, to even */
        0x7F800000u, 0xFF800000u, /* +-Inf */
        0x7F7FFFFFu,              /* FLT_MAX -> Inf */
        0x7F7F7FFFu,              /* largest that stays finite */
        0x7F7F8000u,              /* tie at bf16's max with odd last bit -> Inf */
        0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FFF0001u, /* NaNs, incl. one that rounds up */
        0x00000001u, 0x00008000u, 0x00018000u, 0x007FFFFFu, 0x80008001u, /* denormals */
        0x00000000u, 0x80000000u,                                        /* +-0 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_round(cases[i], "case");
    for (int i = 0; i < 1000000; i++) check_round((uint32_t)next_u64(), "random bits");
    /* a longer array, through any vectorised path and its tail */
    enum { N = 1037 };
    float x[N], back[N];
    rlaif_bf16 h[N];
    for (int i = 0; i < N; i++) x[i] = from_bits((uint32_t)next_u64());
    x[5] = from_bits(0x3F818000u), x[N - 1] = from_bits(0x7FC00001u), x[N - 2] = INFINITY;
    rlaif_bf16_from_f32(h, x, N);
    rlaif_bf16_to_f32(back, h, N);
    for (int i = 0; i < N; i++) {
        if (isnan(x[i])) {
            ck_assert_msg(isnan(back[i]), "array NaN at %d", i);
            continue;
        }
        ck_assert_msg(h[i] == ref_round(x[i]), "array at %d: 0x%04x want 0x%04x", i, h[i],
                      ref_round(x[i]));
        ck_assert(back[i] == from_bits((uint32_t)h[i] << 16));
    }
}

/* ------------------------------------------------------------- products */

static int n_kernels(const char **names) {
    static const char *all[] = {"c", "avx512bf16", "amx"};
    const char *best = rlaif_bf16_kernel(NULL);
    int n = 0;
    for (int i = 0; i < 3; i++) {
        names[n++] = all[i];
        if (!strcmp(all[i], best)) break;
    }
    return n;
}

/* Stored operand X (rows r, cols c of op(X); transposed storage when t),
 * filled with bf16-exact values; also as fp32 when f32. */
typedef struct {
    void *p;
    float *v; /* the values, in storage order */
    int ld, rows;
} operand;

static operand make_operand(int r, int c, int t, int f32, int pad) {
    operand o;
    o.rows = t ? c : r;
    o.ld = (t ? r : c) + pad;
    size_t n = (size_t)o.rows * o.ld;
    o.v = xalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) o.v[i] = frand();
    rlaif_bf16 *h = xalloc(n * sizeof(rlaif_bf16));
    rlaif_bf16_from_f32(h, o.v, n);
    rlaif_bf16_to_f32(o.v, h, n); /* the values are bf16-exact from here */
    if (f32) {
        float *f = xalloc(n * sizeof(float));
        /* a value that rounds to o.v: the kernel must do the rounding */
        for (size_t i = 0; i < n; i++) f[i] = o.v[i] * (1.0f + 0x1p-10f);
        o.p = f, free(h);
    } else
        o.p = h;
    return o;
}

static double at(const operand *o, int t, int r, int c) {
    return o->v[t ? (size_t)c * o->ld + r : (size_t)r * o->ld + c];
}

static int failures;

/* One product against the float64 reference; kind 0: rlaif_bf16_gemm_ex,
 * 1: rlaif_bf16_smallm (ta = 0, A in fp32), 2: rlaif_bf16_pack then
 * rlaif_bf16_packed_gemm (ta = 0, A in fp32). */
static void check_gemm(const char *kern, int kind, int ta, int tb, int M, int N, int K, int a_f32,
                       int b_f32, float beta, int nt) {
    operand A = make_operand(M, K, ta, a_f32, 3), B = make_operand(K, N, tb, b_f32, 5);
    int ldc = N + 2;
    size_t nc = (size_t)M * ldc;
    float *C = xalloc(nc * sizeof(float)), *C0 = xalloc(nc * sizeof(float));
    for (size_t i = 0; i < nc; i++) C0[i] = frand();
    for (int m = 0; m < M && beta == 0.0f; m++)
        for (int n = 0; n < N; n++) C0[(size_t)m * ldc + n] = NAN; /* beta 0 must not read C */
    memcpy(C, C0, nc * sizeof(float));
    if (kind == 0)
        rlaif_bf16_gemm_ex(ta, tb, M, N, K, A.p, a_f32, A.ld, B.p, b_f32, B.ld, beta, C, ldc, nt);
    else if (kind == 2) {
        void *P = xalloc(rlaif_bf16_packed_size(K, N));
        rlaif_bf16_pack(tb, K, N, B.p, b_f32, B.ld, P, nt);
        rlaif_bf16_packed_gemm(M, N, K, A.p, A.ld, P, beta, C, ldc, nt);
        free(P);
    } else
        rlaif_bf16_smallm(tb, M, N, K, A.p, A.ld, B.p, B.ld, beta, C, ldc, nt);
    double u = ldexp(1.0, -24), gamma = (K + 2) * u / (1.0 - (K + 2) * u) * 1.01;
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            double exact = 0.0, mag = 0.0;
            for (int k = 0; k < K; k++) {
                double p = at(&A, ta, m, k) * at(&B, tb, k, n);
                exact += p, mag += fabs(p);
            }
            size_t i = (size_t)m * ldc + n;
            if (beta != 0.0f) exact += beta * (double)C0[i], mag += fabs(beta * (double)C0[i]);
            double bound = gamma * mag + 1e-30, e = fabs(C[i] - exact);
            if (!(e <= bound) && failures++ < 5)
                fprintf(stderr,
                        "FAIL %s kind=%d ta=%d tb=%d M=%d N=%d K=%d af=%d bf=%d beta=%g nt=%d "
                        "at (%d,%d): got %.9g exact %.9g bound %.3g\n",
                        kern, kind, ta, tb, M, N, K, a_f32, b_f32, beta, nt, m, n, C[i], exact,
                        bound);
        }
        for (int n = N; n < ldc; n++)
            if (C[(size_t)m * ldc + n] != C0[(size_t)m * ldc + n] && failures++ < 5)
                fprintf(stderr, "FAIL %s: wrote outside C at (%d,%d)\n", kern, m, n);
    }
    free(A.p), free(A.v), free(B.p), free(B.v), free(C), free(C0);
}

START_TEST(test_gemm_shapes) {
    const char *kern[3];
    int nk = n_kernels(kern), cases = 0;
    static const int Ms[] = {1, 2, 7, 16, 31, 33, 70, 130};
    static const int Ns[] = {1, 5, 16, 47, 100};
    static const int Ks[] = {1, 2, 3, 17, 64, 301};
    for (int ki = 0; ki < nk; ki++) {
        rlaif_bf16_kernel(kern[ki]);
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
            for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
                for (size_t kk = 0; kk < sizeof Ks / sizeof *Ks; kk++) {
                    int v = (int)(mi * 7 + ni * 3 + kk); /* vary the rest over the cases */
                    check_gemm(kern[ki], 0, v & 1, (v >> 1) & 1, Ms[mi], Ns[ni], Ks[kk],
                               (v >> 2) & 1, (v >> 3) & 1,
                               v % 3 == 0   ? 0.0f
                               : v % 3 == 1 ? 1.0f
                                            : 0.5f,
                               1 + v % 2);
                    cases++;
                }
    }
    rlaif_bf16_kernel(kern[nk - 1]);
    ck_assert_msg(failures == 0, "%d failures in %d cases", failures, cases);
}
END_TEST

/* Larger K (several K blocks) and N (several panels), all four layouts;
 * a K long enough for several row blocks. */
START_TEST(test_gemm_large) {
    const char *kern[3];
    int nk = n_kernels(kern);
    for (int ki = 0; ki < nk; ki++) {
        rlaif_bf16_kernel(kern[ki]);
        for (int t = 0; t < 4; t++)
            check_gemm(kern[ki], 0, t & 1, t >> 1, 97, 211, 1100, t == 1, t == 2,
                       t == 3   ? 1.0f
                       : t == 2 ? -0.5f
                                : 0.0f,
                       2);
        /* a long K over a small C goes K blocks first (4 blocks, edge rows
         * and columns), every layout */
        for (int t = 0; t < 4; t++)
            check_gemm(kern[ki], 0, t & 1, t >> 1, 97, 130, 2400, t == 2, t == 1,
                       t == 1   ? 1.0f
                       : t == 3 ? 0.5f
                                : 0.0f,
                       1 + (t & 1));
        /* K so long that op(A) is packed in blocks: of K (K blocks first), or
         * of rows (80 + 20, pre-packed B) */
        check_gemm(kern[ki], 0, 1, 1, 100, 9, 90001, 1, 0, 0.5f, 2);
        check_gemm(kern[ki], 2, 0, 0, 100, 9, 90001, 1, 0, 0.0f, 1);
    }
    rlaif_bf16_kernel(kern[nk - 1]);
    ck_assert_msg(failures == 0, "%d failures", failures);
}
END_TEST

/* Many rows over a small B go rows first (gemm_bf16.c: B packed whole,
 * threads take blocks of rows): every layout against the reference, edge
 * rows and columns, several K blocks; and the same sums as the panel order
 * of fewer rows (rows are independent: the first 480 rows of a 700-row
 * product equal a 480-row product, which runs panel by panel, bit for bit;
 * 480 rows are whole 32-row blocks either way, as AMX's edge blocks add C
 * in another order). */
START_TEST(test_gemm_rows_first) {
    const char *kern[3];
    int nk = n_kernels(kern);
    for (int ki = 0; ki < nk; ki++) {
        rlaif_bf16_kernel(kern[ki]);
        for (int t = 0; t < 4; t++)
            check_gemm(kern[ki], 0, t & 1, t >> 1, 700, 150, t == 3 ? 1100 : 300, t != 1, t == 2,
                       t == 0   ? 0.0f
                       : t == 1 ? 1.0f
                                : 0.5f,
                       1 + (t & 1));
    }
    rlaif_bf16_kernel(kern[nk - 1]);
    for (int t = 0; t < 4; t++) {
        int M = 700, N = 150, K = 1100, ta = t & 1, tb = t >> 1;
        operand A = make_operand(M, K, ta, t == 0, 0), B = make_operand(K, N, tb, t == 1, 0);
        float *C1 = xalloc(sizeof(float) * M * N), *C2 = xalloc(sizeof(float) * M * N);
        rlaif_bf16_gemm_ex(ta, tb, M, N, K, A.p, t == 0, A.ld, B.p, t == 1, B.ld, 0.0f, C1, N, 2);
        /* op(A)'s first 480 rows: the same storage, fewer rows */
        rlaif_bf16_gemm_ex(ta, tb, 480, N, K, A.p, t == 0, A.ld, B.p, t == 1, B.ld, 0.0f, C2, N, 2);
        if (memcmp(C1, C2, sizeof(float) * 480 * N) && failures++ < 5)
            fprintf(stderr, "FAIL rows first ta=%d tb=%d: not the panel order's sums\n", ta, tb);
        free(A.p), free(A.v), free(B.p), free(B.v), free(C1), free(C2);
    }
    ck_assert_msg(failures == 0, "%d failures", failures);
}
END_TEST

/* The few-row kernel: M = 1..64 (every value), both weight layouts. */
START_TEST(test_smallm_rows) {
    const char *kern[3];
    int nk = n_kernels(kern);
    for (int ki = 0; ki < nk; ki++) {
        rlaif_bf16_kernel(kern[ki]);
        for (int M = 1; M <= 64; M++)
            check_gemm(kern[ki], 1, 0, M & 1, M, M % 5 == 0 ? 300 : 37 + M, M % 3 ? 96 : 131, 1, 0,
                       M % 4 == 0 ? 1.0f : 0.0f, 1 + M % 2);
    }
    rlaif_bf16_kernel(kern[nk - 1]);
    ck_assert_msg(failures == 0, "%d failures", failures);
}
END_TEST

/* Pre-packed weights: bit for bit rlaif_bf16_gemm_ex (same kernel, same
 * order of sums), so within its bound; every kernel packs and multiplies
 * (forcing "c" packs with the scalar code). AMX past the few rows: the
 * packed path (the strip layout) keeps the few-row order of sums, each K
 * block's sums added to C, where the general path's 32-row blocks start
 * their tiles from C; so there it is held to the reference's bound. */
static void check_packed(const char *kern, int wt, int M, int N, int K, int w_f32, float beta,
                         int nt) {
    if (!strcmp(kern, "amx") && M > 64) {
        check_gemm(kern, 2, 0, wt, M, N, K, 1, w_f32, beta, nt);
        return;
    }
    operand A = make_operand(M, K, 0, 1, 3), W = make_operand(K, N, wt, w_f32, 5);
    int ldc = N + 1;
    size_t nc = (size_t)M * ldc;
    float *C1 = xalloc(nc * sizeof(float)), *C2 = xalloc(nc * sizeof(float));
    for (size_t i = 0; i < nc; i++) C1[i] = C2[i] = frand();
    void *P = xalloc(rlaif_bf16_packed_size(K, N));
    rlaif_bf16_pack(wt, K, N, W.p, w_f32, W.ld, P, nt);
    rlaif_bf16_packed_gemm(M, N, K, A.p, A.ld, P, beta, C1, ldc, nt);
    rlaif_bf16_gemm_ex(0, wt, M, N, K, A.p, 1, A.ld, W.p, w_f32, W.ld, beta, C2, ldc, 3 - nt);
    if (memcmp(C1, C2, nc * sizeof(float)) && failures++ < 5)
        fprintf(stderr, "FAIL %s packed wt=%d M=%d N=%d K=%d wf=%d beta=%g: differs\n", kern, wt, M,
                N, K, w_f32, beta);
    free(A.p), free(A.v), free(W.p), free(W.v), free(C1), free(C2), free(P);
}

/* Few rows over packed weights split the panels in runs for the team
 * asked for (gemm_bf16.c, team_runs.h): asked for 2 or 3 threads from
 * inside a team of 1 (nested regions get one thread), the one thread must
 * take every run. The bits of the one-thread call; C starts as NaN so a
 * panel left out shows. */
static void check_packed_team(const char *kern, int M, int N, int K) {
    operand A = make_operand(M, K, 0, 1, 0), W = make_operand(K, N, 0, 1, 0);
    size_t nc = (size_t)M * N;
    float *C1 = xalloc(nc * sizeof(float)), *C2 = xalloc(nc * sizeof(float));
    void *P = xalloc(rlaif_bf16_packed_size(K, N));
    rlaif_bf16_pack(0, K, N, W.p, 1, W.ld, P, 1);
    rlaif_bf16_packed_gemm(M, N, K, A.p, A.ld, P, 0.0f, C1, N, 1);
    for (int nr = 2; nr <= 3; nr++) {
        memset(C2, 0xff, nc * sizeof(float));
#pragma omp parallel num_threads(1)
        rlaif_bf16_packed_gemm(M, N, K, A.p, A.ld, P, 0.0f, C2, N, nr);
        if (memcmp(C1, C2, nc * sizeof(float)) && failures++ < 5)
            fprintf(stderr, "FAIL %s packed M=%d N=%d K=%d asked for %d threads in a team of 1\n",
                    kern, M, N, K, nr);
    }
    free(A.p), free(A.v), free(W.p), free(W.v), free(C1), free(C2), free(P);
}

/* A row of a few-row product over packed weights (decoding) has the same
 * bits whatever the rows beside it: each of 40 and 64 rows against the
 * same row alone, K = 800 (two K blocks: the second adds to C). */
static void check_rows_alone(const char *kern, int M) {
    int N = 130, K = 800;
    operand A = make_operand(M, K, 0, 1, 0), W = make_operand(K, N, 0, 1, 0);
    float *C = xalloc(sizeof(float) * M * N), *c1 = xalloc(sizeof(float) * N);
    void *P = xalloc(rlaif_bf16_packed_size(K, N));
    rlaif_bf16_pack(0, K, N, W.p, 1, W.ld, P, 1);
    rlaif_bf16_packed_gemm(M, N, K, A.p, A.ld, P, 0.0f, C, N, 2);
    for (int m = 0; m < M; m++) {
        rlaif_bf16_packed_gemm(1, N, K, (const float *)A.p + (size_t)m * A.ld, A.ld, P, 0.0f, c1, N,
                               1);
        if (memcmp(c1, C + (size_t)m * N, sizeof(float) * N) && failures++ < 5)
            fprintf(stderr, "FAIL %s packed: row %d of %d differs from the row alone\n", kern, m,
                    M);
    }
    free(A.p), free(A.v), free(W.p), free(W.v), free(C), free(c1), free(P);
}

/* rlaif_bf16_packed_gemm_bias against its definition, C filled with res +
 * bias and then rlaif_bf16_packed_gemm with beta 1, bit for bit, whatever
 * the kernel and the rows (the strips add them on the way out, at any row
 * count). with: 1 bias, 2 res, 3 both; alias: res is C itself (the
 * residual stream updated in place). K = 800 has two K blocks: only the
 * first may add them. */
static void check_packed_bias(const char *kern, int M, int N, int K, int with, int alias) {
    operand A = make_operand(M, K, 0, 1, 1), W = make_operand(K, N, 0, 1, 0);
    int ldc = N + 3;
    size_t nc = (size_t)M * ldc;
    float *C1 = xalloc(nc * sizeof(float)), *C2 = xalloc(nc * sizeof(float));
    float *R = xalloc(nc * sizeof(float)), *bias = xalloc(N * sizeof(float));
    for (size_t i = 0; i < nc; i++) R[i] = frand(), C1[i] = frand();
    for (int j = 0; j < N; j++) bias[j] = frand();
    const float *b = with & 1 ? bias : NULL, *r = with & 2 ? (alias ? C1 : R) : NULL;
    if (alias) memcpy(C1, R, nc * sizeof(float));
    memcpy(C2, C1, nc * sizeof(float)); /* the columns past N too */
    for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++) {
            size_t i = (size_t)m * ldc + j;
            C2[i] = r && b ? R[i] + b[j] : r ? R[i] : b ? b[j] : 0.0f;
        }
    void *P = xalloc(rlaif_bf16_packed_size(K, N));
    rlaif_bf16_pack(0, K, N, W.p, 1, W.ld, P, 2);
    rlaif_bf16_packed_gemm_bias(M, N, K, A.p, A.ld, P, b, r, C1, ldc, 2);
    rlaif_bf16_packed_gemm(M, N, K, A.p, A.ld, P, 1.0f, C2, ldc, 1);
    if (memcmp(C1, C2, nc * sizeof(float)) && failures++ < 5)
        fprintf(stderr, "FAIL %s packed_bias M=%d N=%d K=%d with=%d alias=%d: differs\n", kern, M,
                N, K, with, alias);
    free(A.p), free(A.v), free(W.p), free(W.v), free(C1), free(C2), free(R), free(bias), free(P);
}

START_TEST(test_packed) {
    const char *kern[3];
    int nk = n_kernels(kern);
    for (int ki = 0; ki < nk; ki++) {
        rlaif_bf16_kernel(kern[ki]);
        for (int M = 1; M <= 70; M += 3)
            check_packed(kern[ki], M & 1, M, M % 4 ? 77 : 130, M % 5 ? 33 : 800, M % 3 == 0,
                         M % 2 ? 0.0f : 1.0f, 1 + M % 2);
        check_packed_team(kern[ki], 40, 64 * 7 + 5, 100);
        check_rows_alone(kern[ki], 40);
        check_rows_alone(kern[ki], 64);
        for (int with = 0; with < 4; with++)
            for (int M = 1; M <= 100; M += 33) {
                check_packed_bias(kern[ki], M, 130, M & 1 ? 800 : 33, with, 0);
                if (with & 2) check_packed_bias(kern[ki], M, 77, 800, with, 1);
            }
    }
    rlaif_bf16_kernel(kern[nk - 1]);
    check_gemm(kern[nk - 1], 2, 0, 1, 37, 150, 801, 1, 1, 0.5f, 2); /* against the reference */
    check_gemm(kern[nk - 1], 2, 0, 0, 3, 64, 2, 1, 0, 0.0f, 1);
    ck_assert_msg(failures == 0, "%d failures", failures);
}
END_TEST

/* Where the CPU has AMX-BF16 and Linux grants it, the AMX kernel is in
 * charge: it passed its self-test. A kernel that fails the self-test is
 * replaced at run time by the AVX512-BF16 one, so without this check every
 * test above would pass on the fallback alone (seen: a tile stored to the
 * wrong columns in the few-row path). Elsewhere there is nothing to check. */
START_TEST(test_amx_in_charge) {
    if (!bf16_x86_amx_granted()) return;
    ck_assert_msg(bf16_x86_amx(), "AMX granted but its kernel failed the self-test");
}
END_TEST

/* Results do not depend on the number of threads (the split never cuts a
 * sum). */
START_TEST(test_threads_same) {
    int M = 45, N = 133, K = 517;
    operand A = make_operand(M, K, 0, 1, 0), B = make_operand(K, N, 1, 0, 0);
    float *C1 = xalloc(sizeof(float) * M * N), *C2 = xalloc(sizeof(float) * M * N);
    rlaif_bf16_gemm_ex(0, 1, M, N, K, A.p, 1, A.ld, B.p, 0, B.ld, 0.0f, C1, N, 1);
    rlaif_bf16_gemm_ex(0, 1, M, N, K, A.p, 1, A.ld, B.p, 0, B.ld, 0.0f, C2, N, 2);
    ck_assert(memcmp(C1, C2, sizeof(float) * M * N) == 0);
    rlaif_bf16_smallm(1, M, N, K, A.p, A.ld, B.p, B.ld, 0.0f, C1, N, 1);
    rlaif_bf16_smallm(1, M, N, K, A.p, A.ld, B.p, B.ld, 0.0f, C2, N, 2);
    ck_assert(memcmp(C1, C2, sizeof(float) * M * N) == 0);
    free(A.p), free(A.v), free(B.p), free(B.v), free(C1), free(C2);
}
END_TEST

/* ---------------------------------------------------------------- chooser */

START_TEST(test_chooser) {
    rlaif_gemm_path p = rlaif_gemm_choose(0, 0, 0, 8, 256, 128, 1);
    ck_assert(p == RLAIF_PATH_SGEMM || p == RLAIF_PATH_SMALLM || p == RLAIF_PATH_PACKED); /* fp32 */
    ck_assert(rlaif_gemm_choose(0, 0, 0, 8, 256, 128, 1) == p); /* remembered */
    rlaif_gemm_path q = rlaif_gemm_choose(1, 0, 1, 200, 256, 128, 1);
    ck_assert(q == RLAIF_PATH_SGEMM || q == RLAIF_PATH_BF16); /* no few-row path for 200 rows */
    rlaif_gemm_choose(1, 1, 0, 5, 64, 64, 2);                 /* ta: no few-row path */
    char buf[4096];
    size_t need = rlaif_gemm_choices_get(buf, sizeof buf);
    ck_assert(need <= sizeof buf);
    ck_assert_int_eq(rlaif_gemm_choices_set(buf), 0);
    char again[4096];
    rlaif_gemm_choices_get(again, sizeof again);
    ck_assert_str_eq(buf, again);
    ck_assert_int_eq(rlaif_gemm_choices_set("1 0 0 8 256 128 1 nonsense 1 2 3 4\n"), -1);
    ck_assert_str_eq(buf, again); /* unchanged by a bad table */
    /* a table set from elsewhere wins over measuring */
    ck_assert_int_eq(rlaif_gemm_choices_set("1 0 0 16 300 40 1 bf16-smallm 1 1 1 1\n"), 0);
    ck_assert(rlaif_gemm_choose(1, 0, 0, 9, 300, 40, 1) == RLAIF_PATH_BF16_SMALLM);
    rlaif_gemm_force(RLAIF_PATH_SMALLM);
    ck_assert(rlaif_gemm_choose(1, 0, 0, 9, 300, 40, 1) == RLAIF_PATH_SMALLM);
    ck_assert(rlaif_gemm_choose(1, 0, 0, 100, 300, 40, 1) != RLAIF_PATH_SMALLM); /* not one */
    rlaif_gemm_force(RLAIF_GEMM_FORCE_NONE);
    rlaif_gemm_choices_print(stdout);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("gemm_bf16");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_convert_cases);
    tcase_add_test(tc, test_gemm_shapes);
    tcase_add_test(tc, test_gemm_large);
    tcase_add_test(tc, test_gemm_rows_first);
    tcase_add_test(tc, test_smallm_rows);
    tcase_add_test(tc, test_threads_same);
    tcase_add_test(tc, test_packed);
    tcase_add_test(tc, test_amx_in_charge);
    tcase_add_test(tc, test_chooser);
    suite_add_tcase(s, tc);
    printf("bf16 kernel: %s\n", rlaif_bf16_kernel(NULL));
    return s;
}
