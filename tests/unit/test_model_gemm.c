/* test_model_gemm.c - the few-row matrix kernels (src/engine/model_gemm.c) against a
 * float64 reference and cblas_sgemm, for every kernel this CPU can run, both
 * weight layouts, with and without bias and residual, with a post-op, 1 and 2
 * threads, and ragged shapes (rows not a multiple of 16, columns not a
 * multiple of the tile width).
 *
 * Error bound: each output is K products summed in fp32 in order (FMA or
 * multiply + add), then + bias, then + res: K + 2 terms summed recursively
 * with each product rounded at most once, for which the standard bound is
 *   |c - c_exact| <= gamma_{K+2} (|bias| + |res| + sum_k |a_k w_k|),
 *   gamma_n = n u / (1 - n u),  u = 2^-24,
 * (Higham, Accuracy and Stability of Numerical Algorithms, 3.1). The test
 * checks every element against this bound with the exact value computed in
 * float64 (whose own error is ~2^-29 times smaller, covered by the slack
 * factor 1.01), and against cblas_sgemm (+ the same bias and res in fp32)
 * with twice the bound (both are within it of the exact value).
 *
 * The packed kernel's split of panels over the team (team_runs.h): every
 * item taken exactly once, each owner's in order, with thread 1 held until
 * thread 0 has stolen and with runs for threads the team does not have,
 * whose items the others must steal; and the packed product the same bits
 * whichever thread computes a panel (runs for 2 threads in a team of 2,
 * runs for 2 and 3 in a team of 1; never more threads than cores).
 *
 *   test_model_gemm                  run the checks (exit 1 on a failure)
 *   test_model_gemm bench M N K wt   GFLOP/s and GB/s of the kernel, the packed kernel,
 *                                    cblas_sgemm and a plain read
 *                                    (medians of cold-weight calls) */
#include "model_gemm.h"
#include "rlaif/core/log.h"
#include "team_runs.h"

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rng_state = 88172645463325252ULL;
static float frand(void) { /* xorshift64, uniform in [-1, 1) */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void *xalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static int failures;

static void twice(float *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = 2.0f * src[i];
}

/* mode 0: plain product; 1: + bias; 2: + bias + res, with a post-op;
 * packed: rlaif_f32_packed_gemm on W packed by rlaif_f32_pack, else
 * rlaif_smallm_gemm on W in its stored layout */
static void check_case(const char *kern, int packed, int wt, int M, int N, int K, int mode,
                       int nt) {
    int lda = K + 3, ldw = (wt ? K : N) + 5, ldc = N + 2;
    size_t wrows = wt ? (size_t)N : (size_t)K;
    float *A = xalloc(sizeof(float) * M * lda), *W = xalloc(sizeof(float) * wrows * ldw);
    float *C = xalloc(sizeof(float) * M * ldc), *Cb = xalloc(sizeof(float) * M * ldc);
    float *R = xalloc(sizeof(float) * M * ldc), *bias = xalloc(sizeof(float) * N);
    float *P = xalloc(sizeof(float) * M * ldc), *C0 = xalloc(sizeof(float) * M * ldc);
    float *scratch = xalloc(sizeof(float) * K * RLAIF_SMALLM_MAX);
    for (int i = 0; i < M * lda; i++) A[i] = frand();
    for (size_t i = 0; i < wrows * ldw; i++) W[i] = frand();
    for (int i = 0; i < M * ldc; i++) C[i] = C0[i] = P[i] = frand(), R[i] = frand();
    for (int i = 0; i < N; i++) bias[i] = frand();
    const float *b = mode >= 1 ? bias : NULL, *res = mode == 2 ? R : NULL;
    if (packed) {
        float *Wp = aligned_alloc(64, (rlaif_f32_packed_size(K, N) + 63) / 64 * 64);
        if (!Wp) exit(2);
        rlaif_f32_pack(wt, K, N, W, ldw, Wp, nt);
        rlaif_f32_packed_gemm(M, N, K, A, lda, Wp, b, res, C, ldc, mode == 2 ? twice : NULL, P, nt);
        free(Wp);
    } else {
        rlaif_smallm_gemm(wt, M, N, K, A, lda, W, ldw, b, res, C, ldc, mode == 2 ? twice : NULL, P,
                          scratch, nt);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, wt ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, lda,
                W, ldw, 0.0f, Cb, ldc);
    double u = ldexp(1.0, -24), gamma = (K + 2) * u / (1.0 - (K + 2) * u) * 1.01;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            size_t at = (size_t)m * ldc + n;
            double exact = 0.0, mag = 0.0;
            for (int k = 0; k < K; k++) {
                double w = wt ? W[(size_t)n * ldw + k] : W[(size_t)k * ldw + n];
                double p = (double)A[(size_t)m * lda + k] * w;
                exact += p, mag += fabs(p);
            }
            float blas = Cb[at];
            if (b) exact += b[n], mag += fabs(b[n]), blas += b[n];
            if (res) exact += res[at], mag += fabs(res[at]), blas += res[at];
            double got = C[at], bound = gamma * mag + 1e-30;
            double e = fabs(got - exact) / bound, eb = fabs(got - blas) / (2.0 * bound);
            int post_ok = mode != 2 || P[at] == 2.0f * C[at];
            if (!(e <= 1.0) || !(eb <= 1.0) || !post_ok) {
                if (failures++ < 10)
                    fprintf(stderr,
                            "FAIL %s%s wt=%d M=%d N=%d K=%d mode=%d nt=%d at (%d,%d): got %.9g "
                            "exact %.9g blas %.9g bound %.3g post %.9g\n",
                            kern, packed ? " packed" : "", wt, M, N, K, mode, nt, m, n, got, exact,
                            blas, bound, P[at]);
            }
        }
    /* columns past N must be untouched */
    for (int m = 0; m < M; m++)
        for (int n = N; n < ldc; n++)
            if ((C[(size_t)m * ldc + n] != C0[(size_t)m * ldc + n] ||
                 P[(size_t)m * ldc + n] != C0[(size_t)m * ldc + n]) &&
                failures++ < 10)
                fprintf(stderr, "FAIL %s: wrote outside C at (%d,%d)\n", kern, m, n);
    free(A), free(W), free(C), free(Cb), free(C0), free(R), free(P), free(bias), free(scratch);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A plain read of the n floats at W, split over the team: what a kernel
 * streaming these weights could at best reach on this machine now. */
static float read_all(const float *W, size_t n, int nt) {
    float s = 0.0f;
#pragma omp parallel for simd reduction(+ : s) schedule(static) num_threads(nt)
    for (size_t i = 0; i < n; i++) s += W[i];
    return s;
}

/* One side of the benchmark: the median time of reps calls, each on the next
 * copy of W (cold weights, as decoding streams them), after one warm-up call
 * that starts the side's threads (the OpenMP team or OpenBLAS's own). */
enum { SIDE_KERNEL, SIDE_BLAS, SIDE_PACKED, SIDE_READ }; /* what bench_side times */

static double bench_side(int side, int M, int N, int K, int wt, const float *A, const float *Wall,
                         size_t stride, int copies, float *C, float *S, int nt, int reps) {
    double t[64];
    for (int r = -1; r < reps; r++) {
        const float *W = Wall + stride * (size_t)((r + copies) % copies);
        double t0 = rlaif_now();
        if (side == SIDE_PACKED)
            rlaif_f32_packed_gemm(M, N, K, A, K, W, NULL, NULL, C, N, NULL, NULL, nt);
        else if (side == SIDE_READ)
            C[0] = read_all(W, (size_t)N * K, nt);
        else if (side == SIDE_BLAS)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, wt ? CblasTrans : CblasNoTrans, M, N, K, 1.0f,
                        A, K, W, wt ? K : N, 0.0f, C, N);
        else
            rlaif_smallm_gemm(wt, M, N, K, A, K, W, wt ? K : N, NULL, NULL, C, N, NULL, NULL, S,
                              nt);
        if (r >= 0) t[r] = rlaif_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    return t[reps / 2];
}

static int bench(int M, int N, int K, int wt) {
    /* enough copies of W to stream from memory (> 256 MB), as decoding does */
    int reps = 31, copies = (int)(256.0 * 1048576 / (4.0 * N * K)) + 1;
    float *A = xalloc(sizeof(float) * M * K), *Wall = xalloc(sizeof(float) * N * K * copies);
    float *C = xalloc(sizeof(float) * M * N), *S = xalloc(sizeof(float) * K * RLAIF_SMALLM_MAX);
    for (int i = 0; i < M * K; i++) A[i] = frand();
    for (size_t i = 0; i < (size_t)N * K * copies; i++) Wall[i] = frand();
    int nt = 1; /* the team OMP_NUM_THREADS gives; cblas_sgemm uses OpenBLAS's own threads */
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    /* the kernel's block first, then OpenBLAS's, then a plain read: their idle threads would
     * otherwise spin against each other on a machine with as many cores */
    size_t nw = (size_t)N * K, np = (rlaif_f32_packed_size(K, N) / sizeof(float) + 15) / 16 * 16;
    float *Pall = aligned_alloc(64, sizeof(float) * np * (size_t)copies);
    if (!Pall) exit(2);
    for (int c = 0; c < copies; c++)
        rlaif_f32_pack(wt, K, N, Wall + nw * (size_t)c, wt ? K : N, Pall + np * (size_t)c, nt);
    /* the stored-layout kernel takes at most RLAIF_SMALLM_MAX rows (its scratch S) */
    double ts = M <= RLAIF_SMALLM_MAX
                    ? bench_side(SIDE_KERNEL, M, N, K, wt, A, Wall, nw, copies, C, S, nt, reps)
                    : NAN;
    double tp = bench_side(SIDE_PACKED, M, N, K, wt, A, Pall, np, copies, C, S, nt, reps);
    double tb = bench_side(SIDE_BLAS, M, N, K, wt, A, Wall, nw, copies, C, S, nt, reps);
    double tr = bench_side(SIDE_READ, M, N, K, wt, A, Wall, nw, copies, C, S, nt, reps);
    double fl = 2.0 * M * N * K / 1e9, gb = 4.0 * N * K / 1e9;
    printf("%s M=%d N=%d K=%d wt=%d: smallm %.1f GFLOP/s %.1f GB/s (%.3f ms), "
           "packed %.1f GFLOP/s %.1f GB/s (%.3f ms), "
           "cblas %.1f GFLOP/s %.1f GB/s (%.3f ms), read %.1f GB/s\n",
           rlaif_smallm_kernel(NULL), M, N, K, wt, fl / ts, gb / ts, ts * 1e3, fl / tp, gb / tp,
           tp * 1e3, fl / tb, gb / tb, tb * 1e3, gb / tr);
    free(A), free(Wall), free(C), free(S), free(Pall);
    return 0;
}

/* Items [0, n) over runs for nr threads, taken by the team this call
 * gets (at most 2 threads here: the machines have 2 cores). The team's
 * thread 1 takes one item of its run, then waits until thread 0 has stolen
 * (10 s at most), so thread 0 must steal whenever run 1 has 2 items or
 * more; a run with no thread (nr > team) must be stolen in any case. */
static void check_runs(int n, int nr) {
    rlaif_run runs[nr];
    rlaif_runs_init(runs, n, nr);
    int *taken = calloc((size_t)n + 1, sizeof(int));
    int steals = 0, bad = 0, team = 1, stolen0 = 0;
    int run1 = nr > 1 ? (int)((long)n * 2 / nr - (long)n / nr) : 0; /* thread 1's items */
#pragma omp parallel num_threads(2) reduction(+ : steals, bad)
    {
        int t = 0, i, back, last = -1;
#ifdef _OPENMP
        t = omp_get_thread_num();
#pragma omp single
        team = omp_get_num_threads();
#endif
        while ((i = rlaif_runs_next(runs, nr, t, &back)) >= 0) {
            if (i >= n) { /* out of range: counted as a failure */
                bad++;
                continue;
            }
#pragma omp atomic
            taken[i]++;
            steals += back;
            /* an owner's items: its own run, in order */
            long lo = (long)n * t / nr, hi = (long)n * (t + 1) / nr;
            if (!back && (i <= last || i < lo || i >= hi)) bad++;
            if (!back) last = i;
            if (t == 0 && back) {
#pragma omp atomic write
                stolen0 = 1;
            }
            for (double t0 = rlaif_now();
                 t == 1 && !back && run1 >= 2 && rlaif_now() - t0 < 10.0;) {
                int s0;
#pragma omp atomic read
                s0 = stolen0;
                if (s0) break;
            }
        }
    }
    for (int i = 0; i < n; i++) bad += taken[i] != 1;
    int must_steal = (nr > team && n > (long)n * team / nr) || (team == 2 && run1 >= 2);
    if (bad || (must_steal && !steals)) {
        fprintf(stderr,
                "FAIL runs n=%d for %d threads, team %d: %d items not taken once or out "
                "of order, %d steals\n",
                n, nr, team, bad, steals);
        failures++;
    }
    free(taken);
}

/* The packed product with its panels split for nr threads, in a team of
 * its own (nr 2) or from inside a team of 1 (nr 2 and 3: nested regions
 * get one thread, so it takes every run; a team of 3 would oversubscribe
 * the 2 cores): the bits of the one-thread call. */
static void check_packed_split(int M, int N, int K) {
    float *A = xalloc(sizeof(float) * M * K), *W = xalloc(sizeof(float) * N * K);
    float *C1 = xalloc(sizeof(float) * M * N), *C2 = xalloc(sizeof(float) * M * N);
    float *Wp = aligned_alloc(64, (rlaif_f32_packed_size(K, N) + 63) / 64 * 64);
    if (!Wp) exit(2);
    for (int i = 0; i < M * K; i++) A[i] = frand();
    for (int i = 0; i < N * K; i++) W[i] = frand();
    rlaif_f32_pack(0, K, N, W, N, Wp, 1);
    rlaif_f32_packed_gemm(M, N, K, A, K, Wp, NULL, NULL, C1, N, NULL, NULL, 1);
    for (int nr = 2; nr <= 3; nr++)
        for (int outer = nr > 2 ? 2 : 1; outer <= 2; outer++) {
            memset(C2, 0xff, sizeof(float) * M * N); /* NaN where a panel is left out */
            if (outer == 2) {
#pragma omp parallel num_threads(1)
                rlaif_f32_packed_gemm(M, N, K, A, K, Wp, NULL, NULL, C2, N, NULL, NULL, nr);
            } else {
                rlaif_f32_packed_gemm(M, N, K, A, K, Wp, NULL, NULL, C2, N, NULL, NULL, nr);
            }
            if (memcmp(C1, C2, sizeof(float) * M * N)) {
                fprintf(stderr,
                        "FAIL packed M=%d N=%d K=%d split for %d threads (%s): not the "
                        "one-thread bits\n",
                        M, N, K, nr, outer == 2 ? "inside a team of 1" : "a team of its own");
                failures++;
            }
        }
    free(A), free(W), free(C1), free(C2), free(Wp);
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "bench"))
        return bench(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    const char *best = rlaif_smallm_kernel(NULL);
    const char *kernels[3] = {"c", "avx2", "avx512"};
    int avail = !strcmp(best, "avx512") ? 3 : !strcmp(best, "avx2") ? 2 : 1;
    /* packed: any M (70: two passes of a panel's rows); K 130 and 300: more
     * than one K block of the packed kernel past 6 rows */
    static const int Ms[] = {1, 2, 4, 5, 6, 7, 8, 9, 12, 16, 17, 31, 32, 33, 48, 64, 70};
    static const int Ns[] = {1, 3, 13, 50, 97, 1100};
    static const int Ks[] = {1, 7, 64, 130, 300};
    int cases = 0;
    for (int ki = 0; ki < avail; ki++) {
        rlaif_smallm_kernel(kernels[ki]);
        for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
            for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
                for (size_t kk = 0; kk < sizeof Ks / sizeof *Ks; kk++)
                    for (int wt = 0; wt < 2; wt++)
                        for (int nt = 1; nt <= 2; nt++)
                            for (int packed = 0; packed < 2; packed++) {
                                if (!packed && Ms[mi] > RLAIF_SMALLM_MAX) continue;
                                int mode = (int)((mi + ni + kk + (size_t)wt + packed) % 3);
                                check_case(kernels[ki], packed, wt, Ms[mi], Ns[ni], Ks[kk], mode,
                                           nt);
                                cases++;
                            }
    }
    static const int runs_n[] = {0, 1, 2, 7, 64, 1000};
    for (size_t i = 0; i < sizeof runs_n / sizeof *runs_n; i++)
        for (int nr = 1; nr <= 5; nr++) check_runs(runs_n[i], nr), cases++;
    check_packed_split(16, 3000, 130), check_packed_split(70, 640, 64), cases += 2;
    printf("%d cases on kernels up to %s: %s\n", cases, best, failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
