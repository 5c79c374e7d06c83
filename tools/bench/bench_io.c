/* bench_io.c - storage benchmark (driven by tools/bench/bench-io under mpiexec).
 *
 *   bench_io ckpt DIR ROUNDS [collective [HINTS]]
 *       GPT-2 124M parameter table (Hugging Face names and shapes) with AdamW
 *       m and v, sharded over the ranks, random floats. Each round rank 0
 *       first times `dd if=/dev/zero bs=4M conv=fsync` of the same number of
 *       bytes into DIR, then all ranks time rlaif_checkpoint_save (atomic:
 *       .tmp, fsync, rename, LATEST) - alternating, so both see the same disk
 *       state. Prints per-round figures and the medians and ratio. HINTS:
 *       MPI-IO hints as io.mpi_hints takes them (key=value,...).
 *   bench_io prefs FILE ROUNDS BATCH [FLUSH_SECONDS [collective]]
 *       collective appends of BATCH pairs per call (split over the ranks),
 *       each with its prompt, two responses with tokens, and an explanation;
 *       pairs per second, median over rounds of 20 calls. */
#include "rlaif/storage/checkpoint.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/storage/prefs.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rank, nproc;

/* GPT-2 124M: 124,439,808 parameters (tied LM head). */
static void gpt2_124m(rlaif_tensor_table *tt) {
    const int64_t V = 50257, T = 1024, C = 768, L = 12;
    memset(tt, 0, sizeof *tt);
    int64_t s[2];
#define ADD1(name, a)    (s[0] = (a), rlaif_tensors_add(tt, name, 1, s))
#define ADD2(name, a, b) (s[0] = (a), s[1] = (b), rlaif_tensors_add(tt, name, 2, s))
    ADD2("wte.weight", V, C);
    ADD2("wpe.weight", T, C);
    for (int l = 0; l < L; l++) {
        char n[96];
#define N(suffix) (snprintf(n, sizeof n, "h.%d.%s", l, suffix), n)
        ADD1(N("ln_1.weight"), C);
        ADD1(N("ln_1.bias"), C);
        ADD2(N("attn.c_attn.weight"), C, 3 * C);
        ADD1(N("attn.c_attn.bias"), 3 * C);
        ADD2(N("attn.c_proj.weight"), C, C);
        ADD1(N("attn.c_proj.bias"), C);
        ADD1(N("ln_2.weight"), C);
        ADD1(N("ln_2.bias"), C);
        ADD2(N("mlp.c_fc.weight"), C, 4 * C);
        ADD1(N("mlp.c_fc.bias"), 4 * C);
        ADD2(N("mlp.c_proj.weight"), 4 * C, C);
        ADD1(N("mlp.c_proj.bias"), C);
#undef N
    }
    ADD1("ln_f.weight", C);
    ADD1("ln_f.bias", C);
#undef ADD1
#undef ADD2
}

static void fill_random(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)(int32_t)(s >> 32) * 4.6566e-10f;
    }
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void check(int rc) {
    if (rc) rlaif_die();
}

static int bench_ckpt(const char *dir, int rounds, int collective, const char *hints) {
    rlaif_tensor_table tt;
    gpt2_124m(&tt);
    size_t b, e;
    rlaif_shard_range(tt.total, nproc, rank, &b, &e);
    rlaif_ckpt c;
    memset(&c, 0, sizeof c);
    c.table = &tt;
    c.params = malloc(4 * (e - b)), c.m = malloc(4 * (e - b)), c.v = malloc(4 * (e - b));
    c.params_sharded = c.moments_sharded = 1;
    fill_random(c.params, e - b, 1 + (uint64_t)rank);
    fill_random(c.m, e - b, 100 + (uint64_t)rank);
    fill_random(c.v, e - b, 200 + (uint64_t)rank);
    rlaif_kv_set_int(&c.config, "n_layer", 12);
    double bytes = 3.0 * 4.0 * (double)tt.total;
    long count = (long)(bytes / (4 << 20)) + 1;
    rlaif_ckpt_opts o = {dir, "bench", 1, {0}, ""};
    rlaif_h5_opts_default(&o.io);
    o.io.collective_data = collective;
    snprintf(o.io.mpi_hints, sizeof o.io.mpi_hints, "%s", hints);
    double *dd = calloc((size_t)rounds, sizeof(double)),
           *ck = calloc((size_t)rounds, sizeof(double));
    if (rank == 0)
        printf("checkpoint: GPT-2 124M, %d tensors, %zu params, params+m+v = %.3f GB, %d ranks, "
               "%s transfers, MPI-IO hints %s\n",
               tt.n, tt.total, bytes / 1e9, nproc, collective ? "collective" : "independent",
               *hints ? hints : "none");
    for (int r = 0; r < rounds; r++) {
        if (rank == 0) {
            char cmd[4096];
            snprintf(cmd, sizeof cmd,
                     "dd if=/dev/zero of=%s/dd.bin bs=4M count=%ld conv=fsync 2>/dev/null", dir,
                     count);
            double t0 = rlaif_now();
            if (system(cmd) != 0) RLAIF_DIE(RLAIF_EX_IOERR, NULL, "dd failed: %s", cmd);
            dd[r] = (double)count * (4 << 20) / (rlaif_now() - t0) / 1e6;
            snprintf(cmd, sizeof cmd, "%s/dd.bin", dir);
            unlink(cmd);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = rlaif_now();
        check(rlaif_checkpoint_save(MPI_COMM_WORLD, &o, r + 1, &c, NULL, 0));
        MPI_Barrier(MPI_COMM_WORLD);
        ck[r] = bytes / (rlaif_now() - t0) / 1e6;
        if (rank == 0)
            printf(
                "  round %d: dd conv=fsync %.0f MB/s, checkpoint %.0f MB/s (%.2f s), ratio %.2f\n",
                r + 1, dd[r], ck[r], bytes / 1e6 / ck[r], ck[r] / dd[r]);
        fflush(stdout);
    }
    if (rank == 0) {
        double mdd = median(dd, rounds), mck = median(ck, rounds);
        printf("median: dd %.0f MB/s, checkpoint %.0f MB/s, ratio %.2f (goal >= 0.50)\n", mdd, mck,
               mck / mdd);
    }
    char path[4096];
    rlaif_checkpoint_path(&o, rounds, path, sizeof path);
    if (rank == 0) unlink(path);
    free(dd), free(ck), free(c.params), free(c.m), free(c.v);
    rlaif_kv_free(&c.config);
    rlaif_tensors_free(&tt);
    return 0;
}

static int bench_prefs(const char *path, int rounds, int batch, double flush, int collective) {
    int n = batch / nproc + (rank < batch % nproc);
    rlaif_h5_record *pr = calloc((size_t)n, sizeof *pr), *rs = calloc(2 * (size_t)n, sizeof *rs);
    int64_t *pid = calloc(2 * (size_t)n, 8);
    rlaif_pair *q = calloc((size_t)n, sizeof *q);
    const char **ex = calloc((size_t)n, sizeof *ex);
    static char ptext[] = "Write a short poem about the sea, in the style of a limerick, "
                          "and explain its rhyme scheme.";
    static char rtext[] = "There once was a wave from the bay / that wanted to go out and "
                          "play; it rolled up the sand, shook a fisherman's hand, and was "
                          "back with the tide the next day.";
    static char etext[] = "Response A follows the AABBA scheme and keeps the meter; response B "
                          "breaks the meter in line three. The better response is: A";
    int32_t toks[64];
    for (int i = 0; i < 64; i++) toks[i] = 1000 + i;
    double *rate = calloc((size_t)rounds, sizeof(double));
    const int calls = 20;
    int64_t id = 0;
    for (int r = 0; r < rounds; r++) {
        rlaif_prefs *p;
        rlaif_h5_opts io;
        rlaif_h5_opts_default(&io);
        io.collective_data = collective;
        check(rlaif_prefs_create(path, MPI_COMM_WORLD, &io, NULL, &p));
        if (flush >= 0) rlaif_prefs_set_flush(p, flush);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = rlaif_now();
        for (int k = 0; k < calls; k++) {
            int64_t first, rfirst;
            for (int i = 0; i < n; i++) {
                pr[i] = (rlaif_h5_record){ptext, sizeof ptext - 1, toks, 24};
                rs[2 * i] = (rlaif_h5_record){rtext, sizeof rtext - 1, toks, 48};
                rs[2 * i + 1] = (rlaif_h5_record){rtext, sizeof rtext - 21, toks, 40};
            }
            check(rlaif_prefs_add_prompts(p, pr, (size_t)n, &first));
            for (int i = 0; i < n; i++) pid[2 * i] = pid[2 * i + 1] = first + i;
            check(rlaif_prefs_add_responses(p, rs, pid, 2 * (size_t)n, &rfirst));
            for (int i = 0; i < n; i++) {
                rlaif_pair_init(&q[i]);
                q[i].pair_id = id++ * nproc + rank;
                q[i].prompt_id = first + i;
                q[i].response_a = rfirst + 2 * i, q[i].response_b = rfirst + 2 * i + 1;
                q[i].label = 0.75, q[i].choice = 0, q[i].status = 0;
                ex[i] = etext;
            }
            check(rlaif_prefs_add_pairs(p, q, ex, (size_t)n, NULL));
        }
        check(rlaif_prefs_close(&p));
        MPI_Barrier(MPI_COMM_WORLD);
        rate[r] = (double)calls * batch / (rlaif_now() - t0);
        if (rank == 0) printf("  round %d: %.0f pairs/s\n", r + 1, rate[r]);
    }
    if (rank == 0) {
        struct stat st;
        stat(path, &st);
        printf("median: %.0f pairs/s (goal >= 20000), batches of %d pairs over %d ranks, each "
               "with prompt, 2 responses, tokens, explanation; file %.1f MB; %s; %s transfers\n",
               median(rate, rounds), batch, nproc, (double)st.st_size / 1e6,
               flush == 0 ? "synced after every batch" : "default flush interval (10 s)",
               collective ? "collective" : "independent");
        unlink(path);
    }
    free(pr), free(rs), free(pid), free(q), free(ex), free(rate);
    return 0;
}

int main(int argc, char **argv) {
    if (rlaif_h5_mpi_init(&argc, &argv, &rank, &nproc)) rlaif_die();
    int rc = 2;
    if (argc >= 4 && !strcmp(argv[1], "ckpt"))
        rc = bench_ckpt(argv[2], atoi(argv[3]), argc > 4 ? atoi(argv[4]) : 0,
                        argc > 5 ? argv[5] : "");
    else if (argc >= 5 && !strcmp(argv[1], "prefs"))
        rc = bench_prefs(argv[2], atoi(argv[3]), atoi(argv[4]), argc > 5 ? atof(argv[5]) : -1,
                         argc > 6 ? atoi(argv[6]) : 0);
    else if (rank == 0)
        fprintf(stderr, "usage: bench_io ckpt DIR ROUNDS [collective] | prefs FILE ROUNDS BATCH\n");
    MPI_Finalize();
    return rc;
}
