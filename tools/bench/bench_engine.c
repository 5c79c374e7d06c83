/* bench_engine.c - the rlaif side of tools/bench/bench-engine (one measurement per
 * process; the driver alternates it with PyTorch and takes medians).
 *   bench_engine train L C NH V maxT B T steps   median ms per training step
 *   bench_engine gen L C NH V maxT B P N reps     generation tokens/s (greedy), with
 *                                                 the prefill and decoding step times
 *   bench_engine sgemm M N K reps                 sgemm GFLOP/s
 *   bench_engine bgemm M N K reps                 the engine's bf16 product GFLOP/s (the
 *                                                 faster of its paths for a weight)
 *   bench_engine copy MB reps                     copy bandwidth GB/s (read + write)
 *   bench_engine read MB reps                     streaming read bandwidth GB/s
 *   bench_engine fma reps                         peak fp32 FMA GFLOP/s (every thread)
 *   bench_engine ckpt L C NH V maxT OUT.h5 TOK    a random-weight checkpoint with a
 *                                                 tokenizer (TOK: tokenizer.json, or
 *                                                 encoder.json,vocab.bpe)
 * Prints key=value lines. Weights are random (no download). RLAIF_BENCH_ARCH
 * (gpt2, opt, llama) picks the architecture (default gpt2); RLAIF_BENCH_GEMM
 * the product paths as model.gemm does (auto, the default: this model's
 * classes timed before the clock starts; fixed; or a path forced). */
#include "gemm_bf16.h"
#include "rlaif/core/error.h"
#include "rlaif/engine/generate.h"
#include "rlaif/engine/gemm_choice.h"
#include "rlaif/core/log.h"
#include "rlaif/engine/model.h"
#include "rlaif/engine/optim.h"
#include "rlaif/core/rng.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/tokenizer/tokenizer.h"

#include <cblas.h>
#include <immintrin.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}
static void check(int rc) {
    if (rc) {
        char buf[1024];
        rlaif_error_format(buf, sizeof buf, 0);
        fprintf(stderr, "%s\n", buf);
        exit(1);
    }
}

static void model_from_args(rlaif_model *m, char **a) {
    rlaif_model_config c = {.n_layer = atoi(a[0]),
                            .n_embd = atoi(a[1]),
                            .n_head = atoi(a[2]),
                            .vocab_size = atoi(a[3]),
                            .max_seq_len = atoi(a[4])};
    /* RLAIF_BENCH_ARCH=opt|llama times the other families; RLAIF_BENCH_KV_HEADS
     * and RLAIF_BENCH_INNER give a Llama its GQA and MLP width (0: the arch's default) */
    const char *arch = getenv("RLAIF_BENCH_ARCH"), *kv = getenv("RLAIF_BENCH_KV_HEADS");
    const char *inner = getenv("RLAIF_BENCH_INNER");
    if (arch && rlaif_arch_parse(arch) >= 0) c.arch = rlaif_arch_parse(arch);
    if (kv) c.n_kv_head = atoi(kv);
    if (inner) c.n_inner = atoi(inner);
    check(rlaif_model_create(m, &c));
    /* RLAIF_BENCH_PRECISION=bf16 times bf16 products (model.precision) */
    const char *prec = getenv("RLAIF_BENCH_PRECISION");
    if (prec && rlaif_precision_parse(prec, NULL) >= 0)
        rlaif_model_set_precision(m, rlaif_precision_parse(prec, NULL));
    rlaif_model_init_random(m, 1, 0.02f);
}

/* RLAIF_BENCH_GEMM (see the top): the job's start, without MPI. */
static void gemm_setup(const rlaif_model *m) {
    const char *g = getenv("RLAIF_BENCH_GEMM");
    if (g && !strcmp(g, "fixed")) return;
    if (g && rlaif_gemm_path_parse(g) >= 0) {
        rlaif_gemm_force(rlaif_gemm_path_parse(g));
        return;
    }
    double t0 = rlaif_now();
    int n = rlaif_model_gemm_calibrate(&m->cfg, m->precision, 1, m->frozen);
    printf("gemm_timed=%d\ngemm_calibrate_s=%.2f\n", n, rlaif_now() - t0);
    rlaif_gemm_choices_print(stderr);
}

/* Forward products per path: which paths the choice made the engine run. */
static void gemm_report(void) {
    printf("gemm_paths=");
    for (int p = 0; p < RLAIF_GEMM_NPATH; p++)
        if (rlaif_gemm_runs(p))
            printf("%s:%lld,", rlaif_gemm_path_name((rlaif_gemm_path)p), rlaif_gemm_runs(p));
    printf("\n");
}

static void random_tokens(int *t, int n, int V, uint32_t step) {
    rlaif_rng r;
    rlaif_rng_init(&r, 5, RLAIF_STREAM_DATA, step, 0);
    for (int i = 0; i < n; i++) t[i] = (int)rlaif_rng_below(&r, (uint32_t)V);
}

static int bench_train(char **a) {
    rlaif_model m;
    model_from_args(&m, a);
    gemm_setup(&m);
    int B = atoi(a[5]), T = atoi(a[6]), steps = atoi(a[7]), V = m.cfg.vocab_size;
    rlaif_model_alloc_grads(&m);
    rlaif_adamw_config oc = rlaif_adamw_defaults();
    oc.weight_decay = 0.1f;
    rlaif_adamw opt;
    rlaif_adamw_init(&opt, &oc, &m.table, 0, m.table.total);
    int *tok = xmalloc(sizeof(int) * (B * T + 1)), *tgt = xmalloc(sizeof(int) * B * T);
    float *dlogp = xmalloc(sizeof(float) * B * T);
    double *ms = xmalloc(sizeof(double) * steps), *fw = xmalloc(sizeof(double) * steps);
    double *bw = xmalloc(sizeof(double) * steps), *op = xmalloc(sizeof(double) * steps);
    float loss = 0;
    for (int s = -1; s < steps; s++) { /* step -1 warms up (allocates activations) */
        random_tokens(tok, B * T + 1, V, (uint32_t)(s + 1));
        for (int i = 0; i < B * T; i++) tgt[i] = tok[i + 1];
        double t0 = rlaif_now();
        rlaif_model_zero_grad(&m);
        check(rlaif_model_forward(&m, tok, NULL, NULL, B, T));
        check(rlaif_model_lm_forward(&m, tgt));
        loss = rlaif_ce_loss(&m, tgt, NULL, dlogp);
        double t1 = rlaif_now();
        check(rlaif_model_backward(&m, dlogp, NULL, NULL));
        double t2 = rlaif_now();
        rlaif_step_info info;
        rlaif_adamw_step(&opt, m.params, m.grads, loss, &info);
        double t3 = rlaif_now();
        if (s >= 0)
            ms[s] = 1e3 * (t3 - t0), fw[s] = 1e3 * (t1 - t0), bw[s] = 1e3 * (t2 - t1),
            op[s] = 1e3 * (t3 - t2);
    }
    gemm_report();
    printf("step_ms=%.3f\nforward_ms=%.3f\nbackward_ms=%.3f\nadamw_ms=%.3f\n", median(ms, steps),
           median(fw, steps), median(bw, steps), median(op, steps));
    printf("loss=%.4f\nparams=%zu\npeak_rss_mb=%.1f\nact_mb=%.1f\n", loss, m.table.total,
           peak_rss_mb(), (double)rlaif_model_act_bytes(&m) / 1048576.0);
    rlaif_adamw_free(&opt);
    rlaif_model_free(&m);
    free(tok), free(tgt), free(dlogp), free(ms), free(fw), free(bw), free(op);
    return 0;
}

static int bench_gen(char **a) {
    rlaif_model m;
    model_from_args(&m, a);
    gemm_setup(&m);
    int B = atoi(a[5]), P = atoi(a[6]), N = atoi(a[7]), reps = atoi(a[8]);
    int *tok = xmalloc(sizeof(int) * B * P), *len = xmalloc(sizeof(int) * B);
    int64_t *off = xmalloc(sizeof(int64_t) * B);
    random_tokens(tok, B * P, m.cfg.vocab_size, 0);
    /* RLAIF_BENCH_SAMPLES=K: rows in groups of K with one prompt (K samples
     * of a prompt, as collect and PPO roll out); RLAIF_BENCH_SHARE: the
     * generator's share_min (0: every token of every row computed) */
    const char *ks = getenv("RLAIF_BENCH_SAMPLES"), *sh = getenv("RLAIF_BENCH_SHARE");
    /* RLAIF_BENCH_CHUNK=N: prefill in chunks of about N tokens, as the local
     * judge and the rollouts do (default: the whole batch in one go) */
    const char *ch = getenv("RLAIF_BENCH_CHUNK");
    long chunk = ch && atol(ch) > 0 ? atol(ch) : LONG_MAX;
    int K = ks && atoi(ks) > 0 ? atoi(ks) : 1;
    for (int b = 0; b < B; b++) off[b] = (int64_t)(b / K) * P, len[b] = P;
    rlaif_gen_config gc = rlaif_gen_defaults();
    if (sh) gc.share_min = atoi(sh);
    gc.max_new_tokens = N;
    double *tps = xmalloc(sizeof(double) * reps), *pf = xmalloc(sizeof(double) * reps);
    double *dec = xmalloc(sizeof(double) * reps), *att = xmalloc(sizeof(double) * reps);
    for (int r = -1; r < reps; r++) {
        /* the run rlaif_generate makes, in one go, with the engine's own split of
         * its time into prefill and decoding steps */
        rlaif_gen_run *g;
        rlaif_gen_timing tm = {0};
        int done = 0;
        double t0 = rlaif_now();
        check(rlaif_gen_begin(&g, &m, &gc, B, tok, off, len, NULL));
        while (!done) check(rlaif_gen_advance(g, chunk, &done));
        double dt = rlaif_now() - t0;
        rlaif_gen_add_timing(g, &tm);
        rlaif_gen_run_free(g);
        if (r >= 0)
            tps[r] = (double)B * N / dt, pf[r] = 1e3 * tm.prefill_s,
            dec[r] = 1e3 * tm.decode_s / (double)(tm.decode_steps ? tm.decode_steps : 1),
            att[r] = 1e3 * tm.decode_attn_s / (double)(tm.decode_steps ? tm.decode_steps : 1);
    }
    gemm_report();
    printf(
        "tok_s=%.2f\nprefill_ms=%.2f\ndecode_step_ms=%.3f\ndecode_attn_ms=%.3f\nparam_bytes=%zu\n"
        "peak_rss_mb=%.1f\n",
        median(tps, reps), median(pf, reps), median(dec, reps), median(att, reps),
        m.table.total * sizeof(float), peak_rss_mb());
    free(pf), free(dec), free(att);
    rlaif_model_free(&m);
    free(tok), free(len), free(off), free(tps);
    return 0;
}

static int bench_sgemm(char **a) {
    int M = atoi(a[0]), N = atoi(a[1]), K = atoi(a[2]), reps = atoi(a[3]);
    float *A = xmalloc(sizeof(float) * M * K), *Bm = xmalloc(sizeof(float) * K * N);
    float *Cm = xmalloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (int i = 0; i < K * N; i++) Bm[i] = (float)(i % 5) * 0.1f;
    double *g = xmalloc(sizeof(double) * reps);
    for (int r = -1; r < reps; r++) {
        double t0 = rlaif_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, Bm, N, 0.0f, Cm,
                    N);
        double dt = rlaif_now() - t0;
        if (r >= 0) g[r] = 2.0 * M * N * K / dt / 1e9;
    }
    printf("gflops=%.1f\n", median(g, reps));
    free(A), free(Bm), free(Cm), free(g);
    return 0;
}

/* C (M, N) = A (M, K) fp32 @ W (K, N) bf16, as the engine's bf16 forward
 * runs a product: packed weights (rlaif_bf16_packed_gemm, decoding's path)
 * and the general product with A rounded while packed (rlaif_bf16_gemm_ex);
 * the faster median is the machine's bf16 rate at the shape, as sgemm's is
 * its fp32 rate. Threads: OMP_NUM_THREADS. */
static int bench_bgemm(char **a) {
    int M = atoi(a[0]), N = atoi(a[1]), K = atoi(a[2]), reps = atoi(a[3]);
    int nt = omp_get_max_threads();
    float *A = xmalloc(sizeof(float) * M * K), *Cm = xmalloc(sizeof(float) * M * N);
    float *W = xmalloc(sizeof(float) * K * N);
    rlaif_bf16 *Wb = xmalloc(sizeof(rlaif_bf16) * K * N);
    for (int i = 0; i < M * K; i++) A[i] = (float)(i % 7) * 0.1f;
    for (int i = 0; i < K * N; i++) W[i] = (float)(i % 5) * 0.1f;
    rlaif_bf16_from_f32(Wb, W, (size_t)K * N);
    void *pk = xmalloc64(rlaif_bf16_packed_size(K, N));
    rlaif_bf16_pack(0, K, N, Wb, 0, N, pk, nt);
    double *g = xmalloc(sizeof(double) * reps), best = 0;
    for (int path = 0; path < 2; path++) {
        for (int r = -1; r < reps; r++) {
            double t0 = rlaif_now();
            if (path)
                rlaif_bf16_gemm_ex(0, 0, M, N, K, A, 1, K, Wb, 0, N, 0.0f, Cm, N, nt);
            else
                rlaif_bf16_packed_gemm(M, N, K, A, K, pk, 0.0f, Cm, N, nt);
            double dt = rlaif_now() - t0;
            if (r >= 0) g[r] = 2.0 * M * N * K / dt / 1e9;
        }
        double m = median(g, reps);
        printf("%s_gflops=%.1f\n", path ? "general" : "packed", m);
        if (m > best) best = m;
    }
    printf("gflops=%.1f\nkernel=%s\n", best, rlaif_bf16_kernel(NULL));
    free(A), free(Cm), free(W), free(Wb), free(pk), free(g);
    return 0;
}

static int bench_copy(char **a) {
    size_t n = (size_t)atoi(a[0]) * 1048576 / sizeof(float);
    int reps = atoi(a[1]);
    float *x = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float));
    memset(x, 1, n * sizeof(float));
    memset(y, 0, n * sizeof(float));
    double *bw = xmalloc(sizeof(double) * reps);
    for (int r = -1; r < reps; r++) {
        double t0 = rlaif_now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) y[i] = x[i];
        double dt = rlaif_now() - t0;
        if (r >= 0) bw[r] = 2.0 * n * sizeof(float) / dt / 1e9;
    }
    printf("copy_gbs=%.2f\ncheck=%g\n", median(bw, reps), (double)y[n / 2]);
    free(x), free(y), free(bw);
    return 0;
}

/* What a decoding step at small batch is bound by: every weight read once.
 * Each thread streams its share into 8 independent vector sums held in
 * registers, so no add waits on the one before it and the loop runs at the
 * memory's pace. Two earlier probes read slower than the machine, so every
 * bandwidth roofline built on them was too long (the engine "beat" it):
 * OpenBLAS's sasum (its Cooperlake kernels read 10 GB/s a thread on the AMD
 * EPYC VM, 2026-12-03, against 22 for a loop of independent sums), and then
 * that loop, `float acc[64]` under `omp simd`, which GCC 12 kept on the
 * stack, a load and a store around every add: 43-46 GB/s on 2 threads of
 * the Zen 5 VM, 2026-12-04, where register sums read 53-65 side by side
 * (medians of 9, 1 and 4 GB). */
typedef float v16f __attribute__((vector_size(64), aligned(4), may_alias));

__attribute__((target_clones("avx512f", "avx2", "default"))) static float read_block(const float *x,
                                                                                     size_t n) {
    v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        const v16f *v = (const v16f *)(x + i);
        a0 += v[0], a1 += v[1], a2 += v[2], a3 += v[3];
        a4 += v[4], a5 += v[5], a6 += v[6], a7 += v[7];
    }
    v16f t = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    float s = 0;
    for (int j = 0; j < 16; j++) s += t[j];
    for (; i < n; i++) s += x[i];
    return s;
}

static float read_sum(const float *x, size_t n) {
    enum { CHUNK = 1 << 20 };
    float total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (size_t i = 0; i < n; i += CHUNK) total += read_block(x + i, n - i < CHUNK ? n - i : CHUNK);
    return total;
}

static int bench_read(char **a) {
    size_t n = (size_t)atoi(a[0]) * 1048576 / sizeof(float);
    int reps = atoi(a[1]);
    /* on 2 MB pages where the kernel gives them, as the engine's weights
     * and KV cache are (xalloc_huge): the machine's best read */
    float *x = xalloc_huge(n * sizeof(float), 0);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) x[i] = (float)(i & 7);
    double *bw = xmalloc(sizeof(double) * reps), total = 0;
    for (int r = -1; r < reps; r++) {
        double t0 = rlaif_now();
        total += read_sum(x, n);
        double dt = rlaif_now() - t0;
        if (r >= 0) bw[r] = (double)n * sizeof(float) / dt / 1e9;
    }
    printf("read_gbs=%.2f\ncheck=%g\n", median(bw, reps), total);
    free(x), free(bw);
    return 0;
}

/* A judge model for tools/bench/bench-judge: random weights (nothing to
 * download) in the checkpoint layout, with the tokenizer a real one of its
 * family uses, so prompts have realistic token counts. */
static int bench_ckpt(char **a) {
    rlaif_model m;
    model_from_args(&m, a);
    rlaif_tokenizer *tok = NULL;
    char *comma = strchr(a[6], ',');
    if (comma) {
        *comma = 0;
        check(rlaif_tokenizer_load_gpt2(&tok, a[6], comma + 1));
    } else {
        check(rlaif_tokenizer_load_hf(&tok, a[6]));
    }
    check(rlaif_ckpt_save(a[5], &m, NULL, 0));
    hid_t f = H5Fopen(a[5], H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = f < 0 ? -1 : H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) {
        fprintf(stderr, "cannot add /tokenizer to %s\n", a[5]);
        return 1;
    }
    check(rlaif_tokenizer_save(tok, g));
    H5Gclose(g), H5Fclose(f);
    printf("params=%zu\nparam_bytes=%zu\n", m.table.total, m.table.total * sizeof(float));
    rlaif_tokenizer_free(tok);
    rlaif_model_free(&m);
    return 0;
}

/* What the cores can compute at most: each thread runs fused multiply-adds
 * on 12 independent registers (more than latency x units on any x86 core:
 * none waits on the one before it), from the widest unit the CPU has. A
 * decoding roofline whose arithmetic bound is OpenBLAS's sgemm rate is
 * lenient where the engine's own products outrun OpenBLAS (the Zen 5 VM,
 * 2026-12-03: Debian's OpenBLAS 0.3.21 192 GFLOP/s; the engine's 64-row
 * products, derived from a decoding step, ~335). acc = acc * x + y with
 * x < 1 converges, so no value overflows or goes subnormal. */
enum { FMA_REGS = 12 };

/* Twelve named registers, not an array: at -O2 an array's inner loop is not
 * unrolled and each add goes through memory (64 GFLOP/s instead of peak). */
#define FMA_LOOP(T, set1, fmadd)                                                                   \
    T x = set1(0.999999f), y = set1(1e-6f), a0 = set1(0), a1 = set1(1), a2 = set1(2),              \
      a3 = set1(3), a4 = set1(4), a5 = set1(5), a6 = set1(6), a7 = set1(7), a8 = set1(8),          \
      a9 = set1(9), a10 = set1(10), a11 = set1(11);                                                \
    for (long i = 0; i < iters; i++) {                                                             \
        a0 = fmadd(a0, x, y), a1 = fmadd(a1, x, y), a2 = fmadd(a2, x, y);                          \
        a3 = fmadd(a3, x, y), a4 = fmadd(a4, x, y), a5 = fmadd(a5, x, y);                          \
        a6 = fmadd(a6, x, y), a7 = fmadd(a7, x, y), a8 = fmadd(a8, x, y);                          \
        a9 = fmadd(a9, x, y), a10 = fmadd(a10, x, y), a11 = fmadd(a11, x, y);                      \
    }                                                                                              \
    T sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11

__attribute__((target("avx512f"))) static float fma_avx512(long iters) {
    FMA_LOOP(__m512, _mm512_set1_ps, _mm512_fmadd_ps);
    return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) static float fma_avx2(long iters) {
    FMA_LOOP(__m256, _mm256_set1_ps, _mm256_fmadd_ps);
    float lane[8], s = 0;
    _mm256_storeu_ps(lane, sum);
    for (int j = 0; j < 8; j++) s += lane[j];
    return s;
}

static int bench_fma(char **a) {
    int reps = atoi(a[0]), wide = __builtin_cpu_supports("avx512f");
    if (!wide && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
        printf("fma_gflops=0\n");
        return 0;
    }
    const long iters = 4000000; /* ~20-100 ms a thread */
    double *rate = xmalloc(sizeof(double) * reps), check = 0;
    for (int r = -1; r < reps; r++) {
        double t0 = rlaif_now(), flops = 0;
#pragma omp parallel reduction(+ : check, flops)
        {
            check += wide ? fma_avx512(iters) : fma_avx2(iters);
            flops += 2.0 * iters * FMA_REGS * (wide ? 16 : 8);
        }
        double dt = rlaif_now() - t0;
        if (r >= 0) rate[r] = flops / dt / 1e9;
    }
    printf("fma_gflops=%.1f\ncheck=%g\n", median(rate, reps), check);
    free(rate);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 10 && !strcmp(argv[1], "train")) return bench_train(argv + 2);
    if (argc == 11 && !strcmp(argv[1], "gen")) return bench_gen(argv + 2);
    if (argc == 6 && !strcmp(argv[1], "sgemm")) return bench_sgemm(argv + 2);
    if (argc == 6 && !strcmp(argv[1], "bgemm")) return bench_bgemm(argv + 2);
    if (argc == 4 && !strcmp(argv[1], "copy")) return bench_copy(argv + 2);
    if (argc == 4 && !strcmp(argv[1], "read")) return bench_read(argv + 2);
    if (argc == 3 && !strcmp(argv[1], "fma")) return bench_fma(argv + 2);
    if (argc == 9 && !strcmp(argv[1], "ckpt")) return bench_ckpt(argv + 2);
    fprintf(stderr, "usage: bench_engine train L C NH V maxT B T steps | gen L C NH V maxT B P N "
                    "reps | sgemm M N K reps | bgemm M N K reps | copy MB reps | read MB reps | "
                    "fma reps | ckpt L C NH V maxT OUT.h5 TOK\n");
    return 64;
}
