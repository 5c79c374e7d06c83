/* gemm_choose.c - which of the engine's product paths to run for a shape,
 * chosen by timing them on this machine (see gemm_bf16.h).
 *
 * Why measure: the fastest path differs between machines of the same kind
 * (an Intel Xeon with AMX, an AMD EPYC with AVX512-BF16 only, one with
 * OpenBLAS's Haswell kernels forced) and between shapes (few-row decoding
 * is bound by memory bandwidth, training by arithmetic), so no fixed rule
 * holds on all of them. A shape class is timed once, on first use, on a
 * slice with the real K and layout: M rounded up to a power of two (at
 * most 256 rows timed), N cut to 512 columns for many rows, and for few
 * rows to a weight slice of 16 MB in fp32 (larger than L2 and most of an
 * L3 slice) so it comes from far as in decoding. Each candidate runs once to warm up, then three
 * times alternating with the others; the smallest time wins. The timing runs on one thread and
 * counts that thread's CPU time: on a machine shared with other programs a team's wall-clock time
 * is dominated by threads waiting at barriers for a descheduled partner (20-40 ms for
 * sub-millisecond products at a load of 10 on 2 cores, which picked sgemm where bf16 was 3x
 * faster), while one thread's CPU time stays within ~15%. Every path splits
 * its work over the team the same way (columns or rows, no reduction), so
 * the order measured on one thread is the order for the team. */
#include "config.h"
#include "gemm_bf16.h"
#include "model_gemm.h"
#include "rlaif/core/log.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CLASSES 64
#define NPATH       4

typedef struct {
    int allow_bf16, ta, tb, mclass, N, K, nthreads;
    rlaif_gemm_path path;
    double ms[NPATH]; /* < 0: not a candidate */
    double cost_ms;   /* the calibration's own time (0 for a table set) */
} choice;

static choice table[MAX_CLASSES];
static int n_table, forced = RLAIF_GEMM_FORCE_NONE;

static const char *path_names[NPATH] = {"sgemm", "smallm", "bf16", "bf16-smallm"};

const char *rlaif_gemm_path_name(rlaif_gemm_path p) {
    return p >= 0 && p < NPATH ? path_names[p] : "?";
}

void rlaif_gemm_force(int path) {
    forced = path;
}

/* M up to a power of two: decoding runs one M per batch size, prefill and
 * training many, and their speed changes little within a factor of two. */
static int m_class(int M) {
    int c = 1;
    while (c < M && c < (1 << 20)) c *= 2;
    return c;
}

static int is_candidate(int p, int allow_bf16, int ta, int M) {
    int few = ta == 0 && M <= RLAIF_SMALLM_MAX;
    if (p == RLAIF_PATH_SGEMM) return 1;
    if (p == RLAIF_PATH_SMALLM) return few;
    if (p == RLAIF_PATH_BF16) return allow_bf16;
    return allow_bf16 && few;
}

/* cblas_sgemm split as the engine splits it: the larger of M and N over
 * the team, one single-threaded sgemm per thread. */
static void sgemm_split(int ta, int tb, int M, int N, int K, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc, int nt) {
    int split_m = M >= N, D = split_m ? M : N;
    int chunk = ((D + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        int d0 = t * chunk, d1 = d0 + chunk < D ? d0 + chunk : D;
        if (d0 >= d1) continue;
        const float *a = A, *b = B;
        int m = M, n = N;
        if (split_m)
            a += ta ? (size_t)d0 : (size_t)d0 * lda, m = d1 - d0;
        else
            b += tb ? (size_t)d0 * ldb : (size_t)d0, n = d1 - d0;
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    m, n, K, 1.0f, a, lda, b, ldb, beta,
                    C + (split_m ? (size_t)d0 * ldc : (size_t)d0), ldc);
    }
}

void rlaif_gemm_run(rlaif_gemm_path p, int ta, int tb, int M, int N, int K, const float *A, int lda,
                    const float *W, const rlaif_bf16 *Wh, int ldw, float beta, float *C, int ldc,
                    float *scratch, int nthreads) {
    if (p == RLAIF_PATH_SMALLM)
        rlaif_smallm_gemm(tb, M, N, K, A, lda, W, ldw, NULL, beta != 0.0f ? C : NULL, C, ldc, NULL,
                          NULL, scratch, nthreads);
    else if (p == RLAIF_PATH_BF16)
        rlaif_bf16_gemm_ex(ta, tb, M, N, K, A, 1, lda, Wh, 0, ldw, beta, C, ldc, nthreads);
    else if (p == RLAIF_PATH_BF16_SMALLM)
        rlaif_bf16_smallm(tb, M, N, K, A, lda, Wh, ldw, beta, C, ldc, nthreads);
    else
        sgemm_split(ta, tb, M, N, K, A, lda, W, ldw, beta, C, ldc, nthreads);
}

/* The operands of one timing: fp32 A and B, a bf16 copy of B. */
typedef struct {
    int ta, tb, M, N, K, nt;
    float *A, *B, *C, *scratch;
    rlaif_bf16 *Bh;
} bench_case;

static void run_path(int p, const bench_case *b) {
    rlaif_gemm_run((rlaif_gemm_path)p, b->ta, b->tb, b->M, b->N, b->K, b->A, b->ta ? b->M : b->K,
                   b->B, b->Bh, b->tb ? b->K : b->N, 0.0f, b->C, b->N, b->scratch, b->nt);
}

/* CPU time of the calling thread, in seconds. */
static double thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Times the candidates of c on a slice of its shape into c->ms, on one
 * thread by its CPU time (see the top of this file). */
static void calibrate(choice *c) {
    bench_case b = {.ta = c->ta, .tb = c->tb, .K = c->K, .nt = 1};
    b.M = c->mclass < 256 ? c->mclass : 256;
    size_t wmax = (size_t)4 << 20; /* few rows: 16 MB of fp32 weights */
    b.N = c->mclass <= RLAIF_SMALLM_MAX ? (int)(wmax / (size_t)c->K) : 512;
    if (b.N > c->N) b.N = c->N;
    if (b.N < 1) b.N = 1;
    size_t na = (size_t)b.M * b.K, nb = (size_t)b.N * b.K;
    b.A = malloc(na * sizeof(float)), b.B = malloc(nb * sizeof(float));
    b.C = malloc((size_t)b.M * b.N * sizeof(float));
    b.scratch = malloc((size_t)b.K * RLAIF_SMALLM_MAX * sizeof(float));
    b.Bh = malloc(nb * sizeof(rlaif_bf16));
    c->path = RLAIF_PATH_SGEMM;
    for (int p = 0; p < NPATH; p++) c->ms[p] = -1;
    if (!b.A || !b.B || !b.C || !b.scratch || !b.Bh) goto done; /* no memory: plain sgemm */
    for (size_t i = 0; i < na; i++) b.A[i] = (float)(int)(i & 255) * (1.0f / 256) - 0.5f;
    for (size_t i = 0; i < nb; i++) b.B[i] = (float)(int)((i * 7) & 255) * (1.0f / 256) - 0.5f;
    rlaif_bf16_from_f32(b.Bh, b.B, nb);
    for (int p = 0; p < NPATH; p++)
        c->ms[p] = is_candidate(p, c->allow_bf16, c->ta, b.M) ? 1e30 : -1;
    for (int rep = 0; rep < 4; rep++)
        for (int p = 0; p < NPATH; p++) {
            if (c->ms[p] < 0) continue;
            double t0 = thread_cpu();
            run_path(p, &b);
            double t = (thread_cpu() - t0) * 1e3;
            if (rep > 0 && t < c->ms[p]) c->ms[p] = t; /* rep 0 warms up */
        }
    for (int p = 0; p < NPATH; p++)
        if (c->ms[p] >= 0 && c->ms[p] < c->ms[c->path]) c->path = (rlaif_gemm_path)p;
done:
    free(b.A), free(b.B), free(b.C), free(b.scratch), free(b.Bh);
}

rlaif_gemm_path rlaif_gemm_choose(int allow_bf16, int ta, int tb, int M, int N, int K,
                                  int nthreads) {
    if (forced >= 0 && is_candidate(forced, allow_bf16, ta, M)) return (rlaif_gemm_path)forced;
    choice key = {allow_bf16 != 0, ta != 0,          tb != 0, m_class(M), N, K,
                  nthreads,        RLAIF_PATH_SGEMM, {0},     0.0};
    for (int i = 0; i < n_table; i++) {
        choice *c = &table[i];
        if (c->allow_bf16 == key.allow_bf16 && c->ta == key.ta && c->tb == key.tb &&
            c->mclass == key.mclass && c->N == N && c->K == K && c->nthreads == nthreads)
            return c->path;
    }
    if (N <= 0 || K <= 0 || M <= 0) return RLAIF_PATH_SGEMM;
    double t0 = rlaif_now();
    calibrate(&key);
    key.cost_ms = (rlaif_now() - t0) * 1e3;
    if (n_table < MAX_CLASSES) table[n_table++] = key;
    return key.path;
}

/* One line per class: "bf16 ta tb mclass N K nthreads path ms0 ms1 ms2 ms3". */
static int format_choice(const choice *c, char *buf, size_t len) {
    return snprintf(buf, len, "%d %d %d %d %d %d %d %s %.3f %.3f %.3f %.3f\n", c->allow_bf16, c->ta,
                    c->tb, c->mclass, c->N, c->K, c->nthreads, path_names[c->path], c->ms[0],
                    c->ms[1], c->ms[2], c->ms[3]);
}

void rlaif_gemm_choices_print(FILE *out) {
    for (int i = 0; i < n_table; i++) {
        const choice *c = &table[i];
        fprintf(out, "gemm %s: M<=%d N=%d K=%d ta=%d tb=%d threads=%d ->",
                c->allow_bf16 ? "bf16" : "fp32", c->mclass, c->N, c->K, c->ta, c->tb, c->nthreads);
        for (int p = 0; p < NPATH; p++)
            if (c->ms[p] >= 0) fprintf(out, " %s %.3f ms", path_names[p], c->ms[p]);
        fprintf(out, ": %s (measured in %.0f ms)\n", path_names[c->path], c->cost_ms);
    }
}

size_t rlaif_gemm_choices_get(char *buf, size_t len) {
    size_t used = 0;
    for (int i = 0; i < n_table; i++) {
        int w =
            format_choice(&table[i], used < len ? buf + used : NULL, used < len ? len - used : 0);
        used += (size_t)w;
    }
    if (len) buf[used < len ? used : len - 1] = '\0';
    return used + 1;
}

/* Replaces the table with the lines of buf (as rlaif_gemm_choices_get
 * wrote them); returns 0, or -1 on a malformed line (table unchanged). */
int rlaif_gemm_choices_set(const char *buf) {
    choice t[MAX_CLASSES];
    int n = 0;
    for (const char *p = buf; p && *p && n < MAX_CLASSES; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        choice *c = &t[n];
        char name[16];
        if (sscanf(p, "%d %d %d %d %d %d %d %15s %lf %lf %lf %lf", &c->allow_bf16, &c->ta, &c->tb,
                   &c->mclass, &c->N, &c->K, &c->nthreads, name, &c->ms[0], &c->ms[1], &c->ms[2],
                   &c->ms[3]) != 12)
            return -1;
        int found = -1;
        for (int q = 0; q < NPATH; q++)
            if (!strcmp(name, path_names[q])) found = q;
        if (found < 0) return -1;
        c->path = (rlaif_gemm_path)found;
        n++;
    }
    memcpy(table, t, sizeof(choice) * (size_t)n);
    n_table = n;
    return 0;
}
