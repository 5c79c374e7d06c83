/* bench_bf16_onednn.c - rlaif's bf16 kernel against oneDNN's bf16 matmul
 * (its JIT for avx512_core_bf16 / AMX) on the engine's shapes, side by
 * side: each round runs both once (alternating), medians and the ratio are
 * printed, with oneDNN's implementation name. Both take bf16 operands and
 * write fp32; oneDNN's weights in the plain layout (it reorders inside, as
 * rlaif packs inside), and, for the few-row shapes, also pre-reordered to
 * the layout it prefers (format "any", the reorder outside the timing: what
 * decoding with fixed weights could do).
 *
 * This is how the README's comparison was measured; oneDNN is not a
 * dependency of rlaif (the measurement chose the hand-written kernel), so
 * the build does not compile this file. By hand, from the build folder:
 *   apt-get install libdnnl-dev
 *   gcc -O2 -fopenmp -I../include -I../src/engine -I. ../tools/bench/bench_bf16_onednn.c \
 *       src/librlaif.a -ldnnl -lopenblas -lm -o bench_bf16_onednn
 *   OMP_NUM_THREADS=2 ./bench_bf16_onednn [rounds] [threads] [cpu|wall] [cold]
 * "cpu": time by the process's CPU time instead of the wall clock (on a
 * machine shared with other work, the CPU each side used is steadier than
 * its elapsed time; with 1 thread it is the time it would take alone).
 * "cold": the few-row shapes cycle over copies of the weights totalling
 * more than 256 MB, so they stream from memory as in decoding (the
 * prepacked oneDNN variant stays on one copy). */
#include "gemm_bf16.h"
#include "rlaif/core/log.h"

#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int use_cpu;

static double now(void) {
    if (!use_cpu) return rlaif_now();
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        dnnl_status_t st_ = (x);                                                                   \
        if (st_ != dnnl_success) {                                                                 \
            fprintf(stderr, "%s failed: %d\n", #x, (int)st_);                                      \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct {
    const char *what;
    int ta, tb, M, N, K;
} shape;

static const shape shapes[] = {
    {"qkv fwd", 0, 0, 1024, 2304, 768},  {"fc fwd", 0, 0, 1024, 3072, 768},
    {"proj fwd", 0, 0, 1024, 768, 3072}, {"fc dinp", 0, 1, 1024, 768, 3072},
    {"fc dW", 1, 0, 768, 3072, 1024},    {"lm head", 0, 1, 1024, 50257, 768},
    {"dec qkv", 0, 0, 1, 2304, 768},     {"dec fc", 0, 0, 8, 3072, 768},
    {"dec fc", 0, 0, 32, 3072, 768},     {"dec proj", 0, 0, 32, 768, 3072},
    {"dec lm", 0, 1, 32, 50257, 768},    {"dec fc", 0, 0, 64, 3072, 768},
};

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* A oneDNN matmul C (M, N) f32 = A bf16 @ B bf16; wtag: the weights' tag
 * (plain, or any: then *reorder gets the layout it chose). */
typedef struct {
    dnnl_primitive_t p;
    dnnl_memory_t a, b, c;
    const char *impl;
} dnnl_mm;

static dnnl_mm make_mm(dnnl_engine_t eng, const shape *s, int any, void *A, void *B, float *C,
                       dnnl_stream_t st) {
    dnnl_mm r;
    dnnl_memory_desc_t a_md, b_md, c_md, b_plain;
    dnnl_dims_t ad = {s->M, s->K}, bd = {s->K, s->N}, cd = {s->M, s->N};
    CHECK(dnnl_memory_desc_init_by_tag(&a_md, 2, ad, dnnl_bf16, s->ta ? dnnl_ba : dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&b_plain, 2, bd, dnnl_bf16, s->tb ? dnnl_ba : dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&b_md, 2, bd, dnnl_bf16,
                                       any ? dnnl_format_tag_any : (s->tb ? dnnl_ba : dnnl_ab)));
    CHECK(dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t md;
    CHECK(dnnl_matmul_desc_init(&md, &a_md, &b_md, NULL, &c_md));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &r.impl));
    CHECK(dnnl_primitive_create(&r.p, pd));
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    CHECK(dnnl_memory_create(&r.a, &a_md, eng, A));
    CHECK(dnnl_memory_create(&r.c, &c_md, eng, C));
    dnnl_memory_t plain;
    CHECK(dnnl_memory_create(&plain, &b_plain, eng, B));
    if (any) { /* reorder the weights once, outside the timing */
        CHECK(dnnl_memory_create(&r.b, wmd, eng, DNNL_MEMORY_ALLOCATE));
        dnnl_primitive_desc_t rpd;
        dnnl_primitive_t rp;
        CHECK(dnnl_reorder_primitive_desc_create(&rpd, &b_plain, eng, wmd, eng, NULL));
        CHECK(dnnl_primitive_create(&rp, rpd));
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, r.b}};
        CHECK(dnnl_primitive_execute(rp, st, 2, args));
        CHECK(dnnl_stream_wait(st));
        dnnl_primitive_destroy(rp), dnnl_primitive_desc_destroy(rpd), dnnl_memory_destroy(plain);
    } else
        r.b = plain;
    return r;
}

static void run_mm(const dnnl_mm *m, dnnl_stream_t st) {
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, m->a}, {DNNL_ARG_WEIGHTS, m->b}, {DNNL_ARG_DST, m->c}};
    CHECK(dnnl_primitive_execute(m->p, st, 3, args));
    CHECK(dnnl_stream_wait(st));
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 5, nt = argc > 2 ? atoi(argv[2]) : 2;
    use_cpu = argc > 3 && !strcmp(argv[3], "cpu");
    int cold = argc > 4 && !strcmp(argv[4], "cold");
    if (rounds < 1) rounds = 1;
    if (nt < 1) nt = 1;
    dnnl_engine_t eng;
    dnnl_stream_t st;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    printf("rlaif kernel %s vs oneDNN %d.%d, %d threads, %d rounds (median of %s time)%s\n",
           rlaif_bf16_kernel(NULL), dnnl_version()->major, dnnl_version()->minor, nt, rounds,
           use_cpu ? "CPU" : "wall", cold ? ", few-row weights cold" : "");
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *s = &shapes[i];
        size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N;
        float *f = malloc(sizeof(float) * (na > nb ? na : nb));
        int few = s->M <= 64, nv = few ? 3 : 2;
        size_t copies = few && cold ? (size_t)(256.0 * 1048576 / (2.0 * (double)nb)) + 1 : 1;
        rlaif_bf16 *A = malloc(2 * na), *B = malloc(2 * nb * copies);
        float *C = malloc(sizeof(float) * s->M * s->N);
        for (size_t j = 0; j < na; j++) f[j] = (float)((j * 2654435761u) % 2001) * 1e-3f - 1.0f;
        rlaif_bf16_from_f32(A, f, na);
        for (size_t j = 0; j < nb; j++) f[j] = (float)((j * 40503u) % 2001) * 1e-3f - 1.0f;
        for (size_t c = 0; c < copies; c++) rlaif_bf16_from_f32(B + c * nb, f, nb);
        dnnl_mm plain = make_mm(eng, s, 0, A, B, C, st), any = plain;
        if (few) any = make_mm(eng, s, 1, A, B, C, st);
        double *t = malloc(sizeof(double) * 3 * rounds);
        for (int r = -1; r < rounds; r++) /* -1 warms up */
            for (int v = 0; v < nv; v++) {
                rlaif_bf16 *b = B + nb * ((size_t)((r + 1) * nv + v) % copies);
                if (v == 1) CHECK(dnnl_memory_set_data_handle(plain.b, b));
                double t0 = now();
                if (v == 0)
                    rlaif_bf16_gemm(s->ta, s->tb, s->M, s->N, s->K, A, s->ta ? s->M : s->K, b,
                                    s->tb ? s->K : s->N, 0.0f, C, s->N, nt);
                else
                    run_mm(v == 1 ? &plain : &any, st);
                if (r >= 0) t[v * rounds + r] = now() - t0;
            }
        double gf = 2.0 * s->M * s->N * s->K / 1e9, m0 = median(t, rounds);
        double m1 = median(t + rounds, rounds);
        printf("%-9s M=%-5d N=%-6d K=%-5d ta=%d tb=%d | rlaif %.1f GF/s | oneDNN %.1f GF/s (%s)",
               s->what, s->M, s->N, s->K, s->ta, s->tb, gf / m0, gf / m1, plain.impl);
        if (few) printf(" | oneDNN prepacked %.1f GF/s", gf / median(t + 2 * rounds, rounds));
        printf(" | rlaif/oneDNN x%.2f\n", m1 / m0);
        fflush(stdout);
        free(f), free(A), free(B), free(C), free(t);
    }
    return 0;
}
