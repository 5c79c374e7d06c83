/* storage_helper.c - driver for the storage shell tests (run under mpiexec).
 *
 *   storage_helper ckpt-loop DIR NFLOATS     write checkpoints step 1, 2, ... until
 *                                            killed (writes DIR/pid.<rank> first)
 *   storage_helper ckpt-once DIR NFLOATS STEP
 *   storage_helper ckpt-verify DIR NFLOATS   resume the newest good checkpoint and
 *                                            check every value bit for bit; prints
 *                                            "resumed step N"; exit 1 when none
 *   storage_helper metrics-write FILE PROGRESS   metrics.h5 and progress.jsonl
 *   storage_helper prefs-write FILE          collective appends, uneven and empty
 *                                            ranks (checked by tests/e2e/check_prefs.py)
 * Values are a pure function of (kind, flat index, step), so any learner count
 * can check what any other wrote. */
#include "rlaif/storage/checkpoint.h"
#include "rlaif/core/error.h"
#include "rlaif/storage/metrics.h"
#include "rlaif/storage/prefs.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int rank, nproc;

static void die_if(int rc) {
    if (rc) rlaif_die();
}

/* A table of NFLOATS floats in tensors of assorted shapes. */
static void table(rlaif_tensor_table *tt, size_t nfloats) {
    memset(tt, 0, sizeof *tt);
    size_t left = nfloats;
    for (int i = 0; left; i++) {
        char name[64];
        snprintf(name, sizeof name, "h.%d.mlp.c_fc.weight", i);
        int64_t cols = 768, rows = (int64_t)(left / 768 < 3072 ? left / 768 : 3072);
        if (rows == 0) {
            int64_t s[1] = {(int64_t)left};
            rlaif_tensors_add(tt, name, 1, s);
            break;
        }
        int64_t s[2] = {rows, cols};
        rlaif_tensors_add(tt, name, 2, s);
        left -= (size_t)(rows * cols);
    }
}

/* Cheap deterministic values (a hash of index and step, as float bits). */
static float value(int kind, size_t i, int64_t step) {
    uint64_t x =
        (uint64_t)i * 0x9E3779B97F4A7C15ull ^ (uint64_t)(step * 3 + kind) * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    return (float)((double)(x >> 40) / (double)(1ull << 24)) - 0.5f;
}

typedef struct {
    rlaif_tensor_table tt;
    rlaif_ckpt c;
    size_t b, e;
} setup_t;

static void init(setup_t *s, size_t nfloats) {
    table(&s->tt, nfloats);
    memset(&s->c, 0, sizeof s->c);
    s->c.table = &s->tt;
    rlaif_shard_range(s->tt.total, nproc, rank, &s->b, &s->e);
    size_t n = s->e - s->b + 1;
    s->c.params = calloc(n, 4), s->c.m = calloc(n, 4), s->c.v = calloc(n, 4);
    s->c.params_sharded = s->c.moments_sharded = 1;
}

static void fill(setup_t *s, int64_t step) {
    for (size_t i = s->b; i < s->e; i++) {
        s->c.params[i - s->b] = value(0, i, step);
        s->c.m[i - s->b] = value(1, i, step);
        s->c.v[i - s->b] = value(2, i, step);
    }
    rlaif_kv_set_int(&s->c.state, "data_cursor", step * 7);
}

static void release(setup_t *s) {
    free(s->c.params), free(s->c.m), free(s->c.v);
    rlaif_kv_free(&s->c.config), rlaif_kv_free(&s->c.state), rlaif_kv_free(&s->c.optim);
    rlaif_tensors_free(&s->tt);
}

static int ckpt_run(setup_t *s, const char *mode, const char *dir, int64_t once);

static int ckpt(const char *mode, const char *dir, size_t nfloats, int64_t once) {
    setup_t s;
    init(&s, nfloats);
    int rc = ckpt_run(&s, mode, dir, once);
    release(&s);
    return rc;
}

static int ckpt_run(setup_t *s, const char *mode, const char *dir, int64_t once) {
    rlaif_ckpt_opts o = {dir, "loop", 2, {0}, ""};
    rlaif_h5_opts_default(&o.io);
    o.io.collective_data = 0;
    if (!strcmp(mode, "ckpt-verify")) {
        int found = 0;
        char path[4096];
        die_if(rlaif_checkpoint_resume(MPI_COMM_WORLD, &o, &s->c, &found, path, sizeof path));
        if (!found) {
            if (rank == 0) fprintf(stderr, "no loadable checkpoint in %s\n", dir);
            return 1;
        }
        int64_t step, cursor;
        die_if(rlaif_kv_get_int(&s->c.state, "step", &step));
        die_if(rlaif_kv_get_int(&s->c.state, "data_cursor", &cursor));
        long bad = cursor != step * 7;
        for (size_t i = s->b; i < s->e; i++) {
            float w[3] = {value(0, i, step), value(1, i, step), value(2, i, step)};
            bad += memcmp(&s->c.params[i - s->b], &w[0], 4) != 0;
            bad += memcmp(&s->c.m[i - s->b], &w[1], 4) != 0;
            bad += memcmp(&s->c.v[i - s->b], &w[2], 4) != 0;
        }
        MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
        if (rank == 0)
            printf("resumed step %lld from %s on %d ranks: %ld mismatches\n", (long long)step, path,
                   nproc, bad);
        return bad != 0;
    }
    if (!strcmp(mode, "ckpt-loop")) {
        char pidf[4096];
        snprintf(pidf, sizeof pidf, "%s/pid.%d", dir, rank);
        FILE *f = fopen(pidf, "w");
        if (!f) return 1;
        fprintf(f, "%ld\n", (long)getpid());
        fclose(f);
    }
    for (int64_t step = once ? once : 1; step <= (once ? once : 100000); step++) {
        fill(s, step);
        die_if(rlaif_checkpoint_save(MPI_COMM_WORLD, &o, step, &s->c, NULL, 0));
        if (rank == 0 && !once) printf("wrote step %lld\n", (long long)step), fflush(stdout);
    }
    return 0;
}

/* Rank r appends 2r prompts (rank 0 none), each with two responses and a
 * pair; then a second round where only the last rank appends. */
static int prefs_write(const char *path) {
    const char *tn[] = {"t0", "t1"}, *tt[] = {"Compare {a} and {b}.", "Which is kinder?"};
    const char *jn[] = {"builtin"};
    rlaif_prefs_meta meta = {
        "{\"backend\":\"builtin\"}", "{\"temperature\":0.7}", 2, tn, tt, 1, jn};
    rlaif_h5_opts io;
    rlaif_h5_opts_default(&io);
    io.chunk = 4;
    rlaif_prefs *p;
    die_if(rlaif_prefs_create(path, MPI_COMM_WORLD, &io, &meta, &p));
    for (int round = 0; round < 2; round++) {
        int n = round == 0 ? 2 * rank : (rank == nproc - 1 ? 3 : 0);
        rlaif_h5_record *pr = calloc((size_t)n + 1, sizeof *pr),
                        *rs = calloc(2 * (size_t)n + 1, sizeof *rs);
        char(*txt)[3][96] = calloc((size_t)n + 1, sizeof *txt);
        int32_t toks[8];
        int64_t *pid = calloc(2 * (size_t)n + 1, 8), first, rfirst;
        for (int t = 0; t < 8; t++) toks[t] = 1000 * rank + t;
        for (int i = 0; i < n; i++) {
            snprintf(txt[i][0], 96, "r%d-i%d-p%d \xc3\xa9%.*s", rank, i, round, i, "xxxxxxxx");
            snprintf(txt[i][1], 96, "answer A of r%d i%d", rank, i);
            snprintf(txt[i][2], 96, "B%d", i);
            pr[i] = (rlaif_h5_record){txt[i][0], strlen(txt[i][0]), toks, (size_t)(i % 4)};
            rs[2 * i] = (rlaif_h5_record){txt[i][1], strlen(txt[i][1]), toks, 2};
            rs[2 * i + 1] = (rlaif_h5_record){txt[i][2], strlen(txt[i][2]), NULL, 0};
        }
        die_if(rlaif_prefs_add_prompts(p, pr, (size_t)n, &first));
        for (int i = 0; i < n; i++) pid[2 * i] = pid[2 * i + 1] = first + i;
        die_if(rlaif_prefs_add_responses(p, rs, pid, 2 * (size_t)n, &rfirst));
        rlaif_pair *q = calloc((size_t)n + 1, sizeof *q);
        const char **ex = calloc((size_t)n + 1, sizeof *ex);
        for (int i = 0; i < n; i++) {
            rlaif_pair_init(&q[i]);
            q[i].pair_id = 1000 * round + 100 * rank + i;
            q[i].prompt_id = first + i, q[i].response_a = rfirst + 2 * i,
            q[i].response_b = rfirst + 2 * i + 1;
            q[i].label = i % 3 == 2 ? NAN : 0.25 * (i % 5);
            q[i].choice = isnan(q[i].label) ? -1 : q[i].label > 0.5 ? 0 : 1;
            q[i].status = isnan(q[i].label) ? RLAIF_PAIR_PARSE : RLAIF_PAIR_OK;
            q[i].judge_id = 0, q[i].template_id = i % 2;
            q[i].prompt_tokens = 100 + i, q[i].completion_tokens = 7;
            q[i].rubric_a[0] = 1 + i % 5;
            ex[i] = txt[i][1];
        }
        die_if(rlaif_prefs_add_pairs(p, q, ex, (size_t)n, NULL));
        free(pr), free(rs), free(txt), free(pid), free(q), free(ex);
    }
    die_if(rlaif_prefs_close(&p));
    return 0;
}

/* Two phases of made-up curves, 20 steps each, through the real writer. */
static int metrics_write(const char *path, const char *progress) {
    rlaif_metrics *m;
    const char *sft[] = {"loss"}, *ppo[] = {"objective/kl", "policy/clipfrac", "env/reward_mean"};
    die_if(rlaif_metrics_open(path, progress, MPI_COMM_WORLD, &m));
    die_if(rlaif_metrics_phase(m, "sft", 1, sft));
    die_if(rlaif_metrics_phase(m, "ppo", 3, ppo));
    for (int s = 1; s <= 20; s++) {
        double l = 3.0 / s, v[3] = {0.01 * s, 0.2 / s, -1.0 + 0.1 * s};
        die_if(rlaif_metrics_log(m, "sft", s, &l));
        die_if(rlaif_metrics_log(m, "ppo", s, v));
    }
    die_if(rlaif_metrics_close(&m));
    return 0;
}

int main(int argc, char **argv) {
    if (rlaif_h5_mpi_init(&argc, &argv, &rank, &nproc)) rlaif_die();
    int rc = 2;
    if (argc >= 4 && !strncmp(argv[1], "ckpt-", 5))
        rc = ckpt(argv[1], argv[2], strtoull(argv[3], NULL, 10), argc > 4 ? atoll(argv[4]) : 0);
    else if (argc == 3 && !strcmp(argv[1], "prefs-write"))
        rc = prefs_write(argv[2]);
    else if (argc == 4 && !strcmp(argv[1], "metrics-write"))
        rc = metrics_write(argv[2], argv[3]);
    else if (rank == 0)
        fprintf(stderr, "usage: see tests/e2e/storage_helper.c\n");
    MPI_Finalize();
    return rc;
}
