/* bench_gemm_bf16.c - GFLOP/s of the bf16 products against fp32 on the
 * engine's shapes (GPT-2 124M: training / prefill rows B*T, few-row
 * decoding), side by side: every round runs each path once in turn
 * (alternating, so a load change hits all alike), then the median over
 * rounds and the ratio to fp32 sgemm are printed, with the chooser's pick.
 *
 *   bench_gemm_bf16 [rounds] [threads] [train|decode|all] [cpu]
 *
 * "cpu" times by the process's CPU time instead of the wall clock: on a
 * machine shared with other work the CPU each path used is steadier than
 * its elapsed time (with 1 thread it is the time it would take alone).
 *
 * Few-row shapes stream their weights from memory as decoding does: the
 * weights are cycled over copies totalling more than 256 MB. OpenBLAS runs
 * single-threaded inside the team, as in the engine. */
#include "gemm_bf16.h"
#include "model_gemm.h"
#include "rlaif/core/log.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);

typedef struct {
    const char *what;
    int ta, tb, M, N, K;
} shape;

static const shape shapes[] = {
    /* training / prefill, B*T = 1024 rows (GPT-2 Conv1D weights [in, out]) */
    {"qkv fwd", 0, 0, 1024, 2304, 768},
    {"fc fwd", 0, 0, 1024, 3072, 768},
    {"proj fwd", 0, 0, 1024, 768, 3072},
    {"fc dinp", 0, 1, 1024, 768, 3072},
    {"fc dW", 1, 0, 768, 3072, 1024},
    {"lm head", 0, 1, 1024, 50257, 768},
    {"fc fwd 4k", 0, 0, 4096, 3072, 768},
    /* the train step of bench_engine (B*T = 256): a layer's widest products
     * and the tied LM head's three (logits, d(lnf) over K = V, d(wte)) */
    {"fc fwd", 0, 0, 256, 3072, 768},
    {"fc dinp", 0, 1, 256, 768, 3072},
    {"fc dW", 1, 0, 768, 3072, 256},
    {"lm fwd", 0, 1, 256, 50257, 768},
    {"lm dinp", 0, 0, 256, 768, 50257},
    {"lm dW", 1, 0, 50257, 768, 256},
    /* decoding: rows = batch */
    {"dec qkv", 0, 0, 1, 2304, 768},
    {"dec fc", 0, 0, 1, 3072, 768},
    {"dec qkv", 0, 0, 8, 2304, 768},
    {"dec fc", 0, 0, 32, 3072, 768},
    {"dec proj", 0, 0, 32, 768, 3072},
    {"dec lm", 0, 1, 32, 50257, 768},
    {"dec fc", 0, 0, 64, 3072, 768},
};

#define PACKED 100 /* not a chooser path: rlaif_bf16_packed_gemm */

static int use_cpu;

static double now(void) {
    if (!use_cpu) return rlaif_now();
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *xalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(2);
    }
    return p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void bench_shape(const shape *s, int rounds, int nt) {
    int few = s->M <= RLAIF_SMALLM_MAX && !s->ta;
    size_t nw = (size_t)s->N * s->K, na = (size_t)s->M * s->K;
    int copies = few ? (int)(256.0 * 1048576 / (4.0 * (double)nw)) + 1 : 1;
    float *A = xalloc(na * sizeof(float)), *W = xalloc(nw * copies * sizeof(float));
    rlaif_bf16 *Wh = xalloc(nw * copies * sizeof(rlaif_bf16));
    float *C = xalloc((size_t)s->M * s->N * sizeof(float));
    float *scratch = xalloc((size_t)s->K * RLAIF_SMALLM_MAX * sizeof(float));
    for (size_t i = 0; i < na; i++) A[i] = (float)((i * 2654435761u) % 2001) * 1e-3f - 1.0f;
    for (size_t i = 0; i < nw * copies; i++) W[i] = (float)((i * 40503u) % 2001) * 1e-3f - 1.0f;
    rlaif_bf16_from_f32(Wh, W, nw * copies);
    /* few rows also from weights packed beforehand (rlaif_bf16_pack), as
     * decoding can keep them: path PACKED below */
    size_t psize = rlaif_bf16_packed_size(s->K, s->N) / sizeof(uint32_t);
    uint32_t *Wp = few ? xalloc(psize * sizeof(uint32_t) * copies) : NULL;
    for (int c = 0; few && c < copies; c++)
        rlaif_bf16_pack(s->tb, s->K, s->N, Wh + nw * c, 0, s->tb ? s->K : s->N, Wp + psize * c, nt);
    int paths[5], np = 0;
    paths[np++] = RLAIF_PATH_SGEMM;
    if (few) paths[np++] = RLAIF_PATH_SMALLM;
    paths[np++] = RLAIF_PATH_BF16;
    if (few) paths[np++] = RLAIF_PATH_BF16_SMALLM;
    if (few) paths[np++] = PACKED;
    double *t = xalloc(sizeof(double) * 5 * (rounds + 1));
    int lda = s->ta ? s->M : s->K, ldw = s->tb ? s->K : s->N;
    for (int r = 0; r <= rounds; r++) /* round 0 warms up */
        for (int i = 0; i < np; i++) {
            size_t off = nw * (size_t)((r * np + i) % copies);
            double t0 = now();
            if (paths[i] == PACKED)
                rlaif_bf16_packed_gemm(s->M, s->N, s->K, A, lda, Wp + psize * (off / nw), 0.0f, C,
                                       s->N, nt);
            else
                rlaif_gemm_run((rlaif_gemm_path)paths[i], s->ta, s->tb, s->M, s->N, s->K, A, lda,
                               W + off, Wh + off, ldw, 0.0f, C, s->N, scratch, nt);
            if (r > 0) t[i * rounds + r - 1] = now() - t0;
        }
    double gf = 2.0 * s->M * s->N * s->K / 1e9, base = 0.0;
    printf("%-10s M=%-5d N=%-6d K=%-5d ta=%d tb=%d", s->what, s->M, s->N, s->K, s->ta, s->tb);
    for (int i = 0; i < np; i++) {
        double med = median(t + i * rounds, rounds);
        if (i == 0) base = med;
        printf(" | %s %.1f GF/s %.3f ms x%.2f",
               paths[i] == PACKED ? "bf16-packed" : rlaif_gemm_path_name((rlaif_gemm_path)paths[i]),
               gf / med, med * 1e3, base / med);
    }
    rlaif_gemm_path pick = rlaif_gemm_choose(1, s->ta, s->tb, s->M, s->N, s->K, nt);
    printf(" | chooser: %s\n", rlaif_gemm_path_name(pick));
    fflush(stdout);
    free(A), free(W), free(Wh), free(Wp), free(C), free(scratch), free(t);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 5, nt = argc > 2 ? atoi(argv[2]) : 2;
    const char *filter = argc > 3 ? argv[3] : "all";
    use_cpu = argc > 4 && !strcmp(argv[4], "cpu");
    if (rounds < 1 || nt < 1) {
        fprintf(stderr, "usage: bench_gemm_bf16 [rounds] [threads] [train|decode|all] [cpu]\n");
        return 2;
    }
    if (nt > 1) openblas_set_num_threads(1);
    printf("bf16 kernel %s, %d threads, %d rounds (median of %s time), load average:",
           rlaif_bf16_kernel(NULL), nt, rounds, use_cpu ? "CPU" : "wall");
    FILE *f = fopen("/proc/loadavg", "r");
    char load[64] = "?";
    if (f && fgets(load, sizeof load, f))
        printf(" %s", load);
    else
        printf(" ?\n");
    if (f) fclose(f);
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int dec = shapes[i].M <= RLAIF_SMALLM_MAX;
        if (!strcmp(filter, "all") || (dec && !strcmp(filter, "decode")) ||
            (!dec && !strcmp(filter, "train")))
            bench_shape(&shapes[i], rounds, nt);
    }
    rlaif_gemm_choices_print(stdout);
    return 0;
}
