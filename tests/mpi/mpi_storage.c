/* mpi_storage.c - storage module under 4 ranks: collective appends with
 * uneven and empty ranks, resume without duplicates, merge, checkpoints
 * written by 3 learners and read by 2 (and 4, and 1) bit for bit, keep-N,
 * damaged checkpoints skipped, metrics, JSONL ingest/export and its errors. */
#include "rlaif/storage/checkpoint.h"
#include "rlaif/core/error.h"
#include "rlaif/storage/metrics.h"
#include "rlaif/storage/prefs.h"
#include "rlaif/core/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"

static int rank, nproc;
static char dir[256];

static void setup(void) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nproc);
    if (rank == 0) {
        snprintf(dir, sizeof dir, "/tmp/rlaif-mpi-storage-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
    }
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
}

static void teardown(void) {
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
}

static void ok(int rc) {
    if (rc) {
        char buf[1024];
        rlaif_error_format(buf, sizeof buf, 1);
        fprintf(stderr, "rank %d: %s\n", rank, buf);
        ck_abort_msg("rank %d: %s", rank, buf);
    }
}

/* Text of record i written by rank r: lengths vary, some empty. */
static void text_of(int r, int i, char *buf, size_t n) {
    if ((r + i) % 5 == 4)
        buf[0] = 0;
    else
        snprintf(buf, n, "rank %d record %d %.*s", r, i, i % 7, "xxxxxxx");
}

/* Rank r appends 3r records (rank 0 none); then only rank 2 appends. */
START_TEST(test_uneven_append) {
    char path[300];
    snprintf(path, sizeof path, "%s/p.h5", dir);
    rlaif_h5_opts io;
    rlaif_h5_opts_default(&io);
    io.chunk = 3;           /* many chunks, so chunk boundaries are crossed */
    io.collective_data = 1; /* the other tests use independent transfers */
    rlaif_prefs *p;
    ok(rlaif_prefs_create(path, MPI_COMM_WORLD, &io, NULL, &p));
    /* Opened with the MPI-IO driver, collective metadata reads and writes. */
    hid_t fapl = H5Fget_access_plist(rlaif_prefs_file(p));
    hbool_t coll_ops = 0, coll_write = 0;
    ck_assert_int_eq(H5Pget_driver(fapl), H5FD_MPIO);
    ck_assert_int_ge(H5Pget_all_coll_metadata_ops(fapl, &coll_ops), 0);
    ck_assert_int_ge(H5Pget_coll_metadata_write(fapl, &coll_write), 0);
    ck_assert(coll_ops && coll_write);
    H5Pclose(fapl);
    for (int round = 0; round < 2; round++) {
        int n = round == 0 ? 3 * rank : (rank == 2 ? 5 : 0);
        rlaif_h5_record *recs = calloc((size_t)n + 1, sizeof *recs);
        char(*txt)[64] = calloc((size_t)n + 1, 64);
        int32_t toks[16];
        for (int i = 0; i < 16; i++) toks[i] = 1000 * rank + i;
        for (int i = 0; i < n; i++) {
            text_of(rank + 10 * round, i, txt[i], 64);
            recs[i] = (rlaif_h5_record){txt[i], strlen(txt[i]), toks, (size_t)(i % 4)};
        }
        int64_t first = -1;
        ok(rlaif_prefs_add_prompts(p, recs, (size_t)n, &first));
        int64_t expect = round == 0 ? 3 * rank * (rank - 1) / 2 : 18;
        if (n) ck_assert_int_eq(first, expect);
        free(recs), free(txt);
    }
    ck_assert_int_eq(rlaif_prefs_count(p, RLAIF_PREFS_PROMPTS), 18 + 5);
    ok(rlaif_prefs_close(&p));
    /* Every rank reads the whole file back serially and checks each record. */
    rlaif_prefs_data d;
    ok(rlaif_prefs_read(path, &d));
    ck_assert_uint_eq(d.prompts.n, 23);
    size_t row = 0;
    for (int round = 0; round < 2; round++)
        for (int r = 0; r < nproc; r++) {
            int n = round == 0 ? 3 * r : (r == 2 ? 5 : 0);
            for (int i = 0; i < n; i++, row++) {
                char want[64], *got = rlaif_ragged_text(&d.prompts, row);
                text_of(r + 10 * round, i, want, sizeof want);
                ck_assert_str_eq(got, want);
                free(got);
                ck_assert_int_eq(d.prompts.tok_length[row], i % 4);
                for (int t = 0; t < i % 4; t++)
                    ck_assert_int_eq(d.prompts.tokens[d.prompts.tok_offset[row] + t], 1000 * r + t);
            }
        }
    rlaif_prefs_data_free(&d);
}
END_TEST

static rlaif_pair make_pair(int64_t id, int64_t prompt, int64_t a, int64_t b) {
    rlaif_pair q;
    rlaif_pair_init(&q);
    q.pair_id = id, q.prompt_id = prompt, q.response_a = a, q.response_b = b;
    q.label = (double)(id % 5) / 4.0, q.choice = q.label > 0.5 ? 0 : 1;
    q.outcome_ab = q.label, q.outcome_ba = q.label, q.consistent = 1;
    q.rubric_a[0] = 3, q.rubric_b[0] = 4;
    q.judge_id = 0, q.template_id = (int32_t)(id % 2);
    q.prompt_tokens = 100 + id, q.completion_tokens = 10;
    return q;
}

/* One prompt and two responses per rank, and pairs with given ids. */
static void add_pairs(rlaif_prefs *p, const int64_t *ids, int n, size_t *added) {
    rlaif_h5_record pr = {"prompt", 6, NULL, 0};
    rlaif_h5_record rs[2] = {{"resp a", 6, NULL, 0}, {"response b", 10, NULL, 0}};
    int64_t pid, rid, pids[2];
    ok(rlaif_prefs_add_prompts(p, &pr, 1, &pid));
    pids[0] = pids[1] = pid;
    ok(rlaif_prefs_add_responses(p, rs, pids, 2, &rid));
    rlaif_pair q[16];
    const char *ex[16];
    char exb[16][32];
    for (int i = 0; i < n; i++) {
        q[i] = make_pair(ids[i], pid, rid, rid + 1);
        snprintf(exb[i], sizeof exb[i], "because %lld", (long long)ids[i]);
        ex[i] = exb[i];
    }
    ok(rlaif_prefs_add_pairs(p, q, ex, (size_t)n, added));
}

START_TEST(test_resume_no_duplicates) {
    char path[300];
    snprintf(path, sizeof path, "%s/r.h5", dir);
    rlaif_prefs *p;
    const char *names[] = {"verdict"}, *texts[] = {"Which is better? {a} {b}"};
    const char *judges[] = {"builtin"};
    rlaif_prefs_meta meta = {
        "{\"backend\":\"builtin\"}", "{\"temperature\":1}", 1, names, texts, 1, judges};
    ok(rlaif_prefs_open_or_create(path, MPI_COMM_WORLD, NULL, &meta, &p));
    /* Rank r: ids 10r..10r+2; rank 3 also repeats rank 0's id 0 (cross-rank
     * duplicate in one call) and its own 30 twice. */
    int64_t ids[5] = {10 * rank, 10 * rank + 1, 10 * rank + 2, 0, 10 * rank};
    size_t added = 0;
    add_pairs(p, ids, rank == 3 ? 5 : 3, &added);
    ck_assert_uint_eq(added, 12);
    ok(rlaif_prefs_close(&p));
    /* Resume: the same pairs again plus one new per rank. */
    ok(rlaif_prefs_open_or_create(path, MPI_COMM_WORLD, NULL, &meta, &p));
    ck_assert_int_eq(rlaif_prefs_count(p, RLAIF_PREFS_PAIRS), 12);
    ck_assert(rlaif_prefs_has_pair(p, 21));
    ck_assert(!rlaif_prefs_has_pair(p, 5));
    int64_t again[4] = {10 * rank, 10 * rank + 1, 10 * rank + 2, 100 + rank};
    add_pairs(p, again, 4, &added);
    ck_assert_uint_eq(added, 4);
    ok(rlaif_prefs_close(&p));
    rlaif_prefs_data d;
    ok(rlaif_prefs_read(path, &d));
    ck_assert_uint_eq(d.npairs, 16);
    ck_assert_uint_eq(d.explanations.n, 16);
    for (size_t i = 0; i < d.npairs; i++) {
        for (size_t j = 0; j < i; j++) ck_assert_int_ne(d.pairs[i].pair_id, d.pairs[j].pair_id);
        char want[32], *got = rlaif_ragged_text(&d.explanations, i);
        snprintf(want, sizeof want, "because %lld", (long long)d.pairs[i].pair_id);
        ck_assert_str_eq(got, want);
        free(got);
        got = rlaif_ragged_text(&d.responses, (size_t)d.pairs[i].response_b);
        ck_assert_str_eq(got, "response b");
        free(got);
        ck_assert_int_eq(d.response_prompt[d.pairs[i].response_a], d.pairs[i].prompt_id);
        ck_assert_double_eq(d.pairs[i].label, (double)(d.pairs[i].pair_id % 5) / 4.0);
    }
    rlaif_prefs_data_free(&d);
    /* Merge the file with itself and a second one sharing ids 0..2 and adding 500. */
    char other[300], merged[300];
    snprintf(other, sizeof other, "%s/o.h5", dir);
    snprintf(merged, sizeof merged, "%s/m.h5", dir);
    ok(rlaif_prefs_create(other, MPI_COMM_WORLD, NULL, &meta, &p));
    int64_t oids[3] = {0, 2, 500};
    add_pairs(p, oids, rank == 1 ? 3 : 0, &added);
    ok(rlaif_prefs_close(&p));
    const char *in[3] = {path, other, path};
    size_t np = 0;
    ok(rlaif_prefs_merge(merged, in, 3, MPI_COMM_WORLD, NULL, &np));
    ck_assert_uint_eq(np, 17);
    ok(rlaif_prefs_read(merged, &d));
    ck_assert_uint_eq(d.npairs, 17);
    ck_assert_uint_eq(d.prompts.n, 8 + 4 + 8); /* every record kept, ids renumbered */
    ck_assert_int_eq(d.pairs[16].pair_id, 500);
    char *t = rlaif_ragged_text(&d.explanations, 16);
    ck_assert_str_eq(t, "because 500");
    free(t);
    t = rlaif_ragged_text(&d.responses, (size_t)d.pairs[16].response_a);
    ck_assert_str_eq(t, "resp a");
    free(t);
    ck_assert_int_ge(d.pairs[16].prompt_id, 8);
    rlaif_prefs_data_free(&d);
    /* The merged file keeps the templates. */
    hid_t f;
    ok(rlaif_h5_open_serial(merged, 0, &f));
    char *s;
    ok(rlaif_h5_get_attr_str(f, "template_0_text", &s));
    ck_assert_str_eq(s, texts[0]);
    free(s);
    H5Fclose(f);
}
END_TEST

/* Two runs with different judges and templates: the merged file lists the
 * union of both tables and every pair points at its own judge and template. */
START_TEST(test_merge_tables) {
    char a[300], b[300], merged[300];
    snprintf(a, sizeof a, "%s/ja.h5", dir);
    snprintf(b, sizeof b, "%s/jb.h5", dir);
    snprintf(merged, sizeof merged, "%s/jm.h5", dir);
    const char *an[] = {"verdict", "rubric"}, *at[] = {"Which? {a} {b}", "Score {a} {b}"};
    const char *bn[] = {"rubric", "short"}, *bt[] = {"Score {a} {b}", "Pick one."};
    const char *aj[] = {"builtin"}, *bj[] = {"gpt-4o-mini", "builtin"};
    rlaif_prefs_meta ma = {"{\"n\":1}", "{}", 2, an, at, 1, aj};
    rlaif_prefs_meta mb = {"{\"n\":2}", "{}", 2, bn, bt, 2, bj};
    rlaif_prefs *p;
    /* a: ids 10r, 10r+1 (template id % 2, judge 0); b: ids 100+r (judge 0 = gpt-4o-mini). */
    ok(rlaif_prefs_create(a, MPI_COMM_WORLD, NULL, &ma, &p));
    int64_t ia[2] = {10 * rank, 10 * rank + 1};
    add_pairs(p, ia, 2, NULL);
    ok(rlaif_prefs_close(&p));
    ok(rlaif_prefs_create(b, MPI_COMM_WORLD, NULL, &mb, &p));
    int64_t ib[1] = {101 + rank}; /* odd: template 1 of b ("short") */
    add_pairs(p, ib, 1, NULL);
    ok(rlaif_prefs_close(&p));
    const char *in[2] = {a, b};
    ok(rlaif_prefs_merge(merged, in, 2, MPI_COMM_WORLD, NULL, NULL));
    hid_t f;
    ok(rlaif_h5_open_serial(merged, 0, &f));
    int64_t nj = 0, nt = 0;
    ok(rlaif_h5_get_attr_i64(f, "n_judges", &nj));
    ok(rlaif_h5_get_attr_i64(f, "n_templates", &nt));
    ck_assert_int_eq(nj, 2);
    ck_assert_int_eq(nt, 3); /* verdict, rubric (shared), short */
    char *jname[2], *tname[3];
    for (int i = 0; i < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "judge_%d_name", i);
        ok(rlaif_h5_get_attr_str(f, key, &jname[i]));
    }
    for (int i = 0; i < 3; i++) {
        char key[32], *text, *hash, want[32];
        snprintf(key, sizeof key, "template_%d_name", i);
        ok(rlaif_h5_get_attr_str(f, key, &tname[i]));
        snprintf(key, sizeof key, "template_%d_text", i);
        ok(rlaif_h5_get_attr_str(f, key, &text));
        snprintf(key, sizeof key, "template_%d_hash", i);
        ok(rlaif_h5_get_attr_str(f, key, &hash));
        snprintf(want, sizeof want, "%016llx",
                 (unsigned long long)rlaif_fnv1a64(text, strlen(text)));
        ck_assert_str_eq(hash, want);
        free(text), free(hash);
    }
    char *js;
    ok(rlaif_h5_get_attr_str(f, "judge_settings", &js)); /* the first input's */
    ck_assert_str_eq(js, "{\"n\":1}");
    free(js);
    H5Fclose(f);
    rlaif_prefs_data d;
    ok(rlaif_prefs_read(merged, &d));
    ck_assert_uint_eq(d.npairs, 12);
    for (size_t i = 0; i < d.npairs; i++) {
        const rlaif_pair *q = &d.pairs[i];
        int from_b = q->pair_id >= 100;
        ck_assert_str_eq(jname[q->judge_id], from_b ? "gpt-4o-mini" : "builtin");
        const char *want_t = from_b ? bn[q->pair_id % 2] : an[q->pair_id % 2];
        ck_assert_str_eq(tname[q->template_id], want_t);
    }
    rlaif_prefs_data_free(&d);
    for (int i = 0; i < 2; i++) free(jname[i]);
    for (int i = 0; i < 3; i++) free(tname[i]);
}
END_TEST

/* Grow a dataset by extra rows without committing them (a killed append). */
static void grow(hid_t f, const char *name, hsize_t extra) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    hsize_t rows;
    ok(rlaif_h5_rows(ds, &rows));
    rows += extra;
    ck_assert_int_ge(H5Dset_extent(ds, &rows), 0);
    H5Dclose(ds);
}

START_TEST(test_repair_killed_append) {
    char path[300];
    snprintf(path, sizeof path, "%s/k.h5", dir);
    rlaif_prefs *p;
    ok(rlaif_prefs_create(path, MPI_COMM_WORLD, NULL, NULL, &p));
    int64_t ids[2] = {10 * rank, 10 * rank + 1};
    add_pairs(p, ids, 2, NULL);
    ok(rlaif_prefs_close(&p));
    if (rank == 0) {
        /* Half an append: extents grown, counters not (rows read as zeros). */
        hid_t f;
        ok(rlaif_h5_open_serial(path, 1, &f));
        grow(f, "pairs", 3);
        grow(f, "prompts/offset", 2);
        grow(f, "prompts/length", 1);
        grow(f, "explanations/offset", 3);
        H5Fclose(f);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    rlaif_prefs_data d;
    ok(rlaif_prefs_read(path, &d)); /* readers see only committed rows */
    ck_assert_uint_eq(d.npairs, 8);
    ck_assert_uint_eq(d.prompts.n, 4);
    rlaif_prefs_data_free(&d);
    ok(rlaif_prefs_open(path, MPI_COMM_WORLD, NULL, &p));
    ck_assert_int_eq(rlaif_prefs_count(p, RLAIF_PREFS_PAIRS), 8);
    ck_assert_int_eq(rlaif_prefs_count(p, RLAIF_PREFS_PROMPTS), 4);
    ck_assert(!rlaif_prefs_has_pair(p, 100)); /* not confused by the zero rows */
    int64_t more[2] = {100 + rank, 10 * rank};
    size_t added;
    add_pairs(p, more, 2, &added);
    ck_assert_uint_eq(added, 4);
    ok(rlaif_prefs_close(&p));
    ok(rlaif_prefs_read(path, &d));
    ck_assert_uint_eq(d.npairs, 12);
    ck_assert_uint_eq(d.prompts.n, 8);
    for (size_t i = 0; i < d.npairs; i++) {
        char want[32], *got = rlaif_ragged_text(&d.explanations, i);
        snprintf(want, sizeof want, "because %lld", (long long)d.pairs[i].pair_id);
        ck_assert_str_eq(got, want);
        free(got);
        got = rlaif_ragged_text(&d.prompts, (size_t)d.pairs[i].prompt_id);
        ck_assert_str_eq(got, "prompt");
        free(got);
    }
    rlaif_prefs_data_free(&d);
}
END_TEST

/* ---- checkpoints ---- */

static void small_table(rlaif_tensor_table *tt) {
    memset(tt, 0, sizeof *tt);
    int64_t s1[2] = {37, 16}, s2[1] = {16}, s3[2] = {16, 48}, s4[3] = {3, 5, 7}, s5[1] = {1};
    rlaif_tensors_add(tt, "wte.weight", 2, s1);
    rlaif_tensors_add(tt, "h.0.ln_1.weight", 1, s2);
    rlaif_tensors_add(tt, "h.0.attn.c_attn.weight", 2, s3);
    rlaif_tensors_add(tt, "odd.cube", 3, s4);
    rlaif_tensors_add(tt, "scalar", 1, s5);
}

static float value(int kind, size_t i, int64_t step) {
    rlaif_rng r;
    rlaif_rng_init(&r, 42, 99, (uint32_t)(step * 3 + kind), (uint32_t)i);
    return rlaif_rng_normal(&r);
}

/* Fill a ckpt's buffers for step; full params, sharded moments over comm. */
static void fill(rlaif_ckpt *c, int64_t step, size_t b, size_t e) {
    for (size_t i = 0; i < c->table->total; i++) c->params[i] = value(0, i, step);
    for (size_t i = b; i < e; i++) c->m[i - b] = value(1, i, step), c->v[i - b] = value(2, i, step);
}

static int tok_write(hid_t g, void *ud) {
    (void)ud;
    return rlaif_h5_attr_str(g, "vocab", "a b c");
}

static int tok_read(hid_t g, void *ud) {
    return rlaif_h5_get_attr_str(g, "vocab", (char **)ud);
}

static void ckpt_init(rlaif_ckpt *c, rlaif_tensor_table *tt, MPI_Comm comm, size_t *b, size_t *e) {
    int r, n;
    MPI_Comm_rank(comm, &r), MPI_Comm_size(comm, &n);
    memset(c, 0, sizeof *c);
    c->table = tt;
    rlaif_shard_range(tt->total, n, r, b, e);
    c->params = calloc(tt->total, sizeof(float));
    c->m = calloc(*e - *b + 1, sizeof(float));
    c->v = calloc(*e - *b + 1, sizeof(float));
    c->moments_sharded = 1;
}

static void ckpt_free(rlaif_ckpt *c) {
    free(c->params), free(c->m), free(c->v);
    rlaif_kv_free(&c->config), rlaif_kv_free(&c->state), rlaif_kv_free(&c->optim);
}

/* Compare c against step's values bit for bit. */
static void check_values(const rlaif_ckpt *c, int64_t step, size_t b, size_t e) {
    for (size_t i = 0; i < c->table->total; i++) {
        float w = value(0, i, step);
        ck_assert_msg(!memcmp(&c->params[i], &w, 4), "param %zu differs", i);
    }
    for (size_t i = b; i < e; i++) {
        float m = value(1, i, step), v = value(2, i, step);
        ck_assert_msg(!memcmp(&c->m[i - b], &m, 4) && !memcmp(&c->v[i - b], &v, 4),
                      "moment %zu differs", i);
    }
}

START_TEST(test_ckpt_3_to_2) {
    rlaif_tensor_table tt;
    small_table(&tt);
    rlaif_ckpt_opts o = {dir, "ppo", 2, {0}, ""};
    rlaif_h5_opts_default(&o.io);
    o.io.alignment = 512; /* small, so the test tensors cross it */
    MPI_Comm c3, c2;
    MPI_Comm_split(MPI_COMM_WORLD, rank < 3 ? 0 : MPI_UNDEFINED, rank, &c3);
    MPI_Comm_split(MPI_COMM_WORLD, rank < 2 ? 0 : MPI_UNDEFINED, rank, &c2);
    char *vocab = NULL;
    if (c3 != MPI_COMM_NULL) {
        /* Written by 3 learners, steps 1..4 with keep 2; one write independent. */
        rlaif_ckpt c;
        size_t b, e;
        ckpt_init(&c, &tt, c3, &b, &e);
        rlaif_kv_set_int(&c.config, "n_layer", 1);
        rlaif_kv_set_double(&c.state, "kl_coef", 0.05);
        rlaif_kv_set_int(&c.state, "data_cursor", 1234567890123LL);
        c.tokenizer_write = tok_write;
        c.job_config = "[model]\nn_layer = 1\n";
        for (int64_t step = 1; step <= 4; step++) {
            fill(&c, step, b, e);
            o.io.collective_data = step % 2;
            char path[512];
            ok(rlaif_checkpoint_save(c3, &o, step, &c, path, sizeof path));
        }
        ckpt_free(&c);
        MPI_Comm_free(&c3);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    int64_t *steps;
    int n;
    ok(rlaif_checkpoint_list(dir, "ppo", &steps, &n));
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(steps[0], 4);
    ck_assert_int_eq(steps[1], 3);
    free(steps);
    if (rank == 0) {
        char latest[600], line[256] = "";
        snprintf(latest, sizeof latest, "%s/LATEST", dir);
        FILE *f = fopen(latest, "r");
        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
        fclose(f);
        ck_assert_str_eq(line, "ppo-00000004.h5\n");
    }
    {
        /* Every rank: tensors of at least [io] alignment bytes start on a multiple of it. */
        char p4[600];
        rlaif_checkpoint_path(&o, 4, p4, sizeof p4);
        hid_t h;
        ok(rlaif_h5_open_serial(p4, 0, &h));
        int aligned = 0;
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < tt.n; i++) {
                char name[300];
                snprintf(name, sizeof name, "%s/%s",
                         k == 0   ? "params"
                         : k == 1 ? "optim/m"
                                  : "optim/v",
                         tt.t[i].name);
                hid_t ds = H5Dopen2(h, name, H5P_DEFAULT);
                ck_assert_int_ge(ds, 0);
                haddr_t off = H5Dget_offset(ds);
                ck_assert(off != HADDR_UNDEF);
                if (tt.t[i].numel * 4 >= 512) {
                    ck_assert_uint_eq(off % 512, 0);
                    aligned++;
                }
                H5Dclose(ds);
            }
        ck_assert_int_eq(aligned, 6);
        H5Fclose(h);
    }
    if (c2 != MPI_COMM_NULL) {
        rlaif_ckpt c;
        size_t b, e;
        ckpt_init(&c, &tt, c2, &b, &e);
        c.tokenizer_read = tok_read, c.tokenizer_read_ud = &vocab;
        int found = 0;
        char path[512];
        ok(rlaif_checkpoint_resume(c2, &o, &c, &found, path, sizeof path));
        ck_assert(found);
        check_values(&c, 4, b, e);
        int64_t cur, nl;
        double kl;
        ok(rlaif_kv_get_int(&c.state, "data_cursor", &cur));
        ok(rlaif_kv_get_int(&c.state, "step", &nl));
        ok(rlaif_kv_get_double(&c.state, "kl_coef", &kl));
        ck_assert_int_eq(cur, 1234567890123LL);
        ck_assert_int_eq(nl, 4);
        ck_assert_double_eq(kl, 0.05);
        ok(rlaif_kv_get_int(&c.config, "n_layer", &nl));
        ck_assert_int_eq(nl, 1);
        ck_assert(rlaif_kv_get_int(&c.state, "nope", &nl) != 0);
        rlaif_error_clear();
        ck_assert_str_eq(vocab, "a b c");
        free(vocab);
        ckpt_free(&c);
        MPI_Comm_free(&c2);
    }
    /* All 4 ranks, everything sharded; then one rank alone with full buffers. */
    {
        rlaif_ckpt c;
        size_t b, e, pb, pe;
        ckpt_init(&c, &tt, MPI_COMM_WORLD, &b, &e);
        char path[512];
        rlaif_checkpoint_path(&o, 3, path, sizeof path);
        free(c.params);
        rlaif_shard_range(tt.total, nproc, rank, &pb, &pe);
        c.params = calloc(pe - pb + 1, sizeof(float));
        c.params_sharded = 1;
        ok(rlaif_checkpoint_load(MPI_COMM_WORLD, path, &o.io, &c));
        for (size_t i = pb; i < pe; i++) {
            float w = value(0, i, 3);
            ck_assert(!memcmp(&c.params[i - pb], &w, 4));
        }
        ckpt_free(&c);
    }
    if (rank == 3) {
        rlaif_ckpt c;
        size_t b, e;
        ckpt_init(&c, &tt, MPI_COMM_SELF, &b, &e);
        char path[512];
        rlaif_checkpoint_path(&o, 4, path, sizeof path);
        ok(rlaif_checkpoint_load(MPI_COMM_SELF, path, &o.io, &c));
        check_values(&c, 4, 0, tt.total);
        ckpt_free(&c);
    }
    rlaif_tensors_free(&tt);
}
END_TEST

/* Damage the newest checkpoints: resume falls back, with a warning. */
START_TEST(test_ckpt_damaged) {
    rlaif_tensor_table tt;
    small_table(&tt);
    rlaif_ckpt_opts o = {dir, "rm", 5, {0}, ""};
    rlaif_h5_opts_default(&o.io);
    rlaif_ckpt c;
    size_t b, e;
    ckpt_init(&c, &tt, MPI_COMM_WORLD, &b, &e);
    for (int64_t step = 10; step <= 30; step += 10) {
        fill(&c, step, b, e);
        ok(rlaif_checkpoint_save(MPI_COMM_WORLD, &o, step, &c, NULL, 0));
    }
    char p20[512], p30[512];
    rlaif_checkpoint_path(&o, 20, p20, sizeof p20);
    rlaif_checkpoint_path(&o, 30, p30, sizeof p30);
    if (rank == 0) {
        /* 30: flip a byte inside a tensor (found by its value); 20: truncate. */
        FILE *f = fopen(p30, "r+b");
        ck_assert_ptr_nonnull(f);
        float first = value(0, 0, 30), x;
        long pos = 0;
        while (fread(&x, 4, 1, f) == 1 && memcmp(&x, &first, 4)) pos += 4;
        ck_assert(!feof(f));
        fseek(f, pos + 1, SEEK_SET);
        fputc(0x5a, f);
        fclose(f);
        struct stat st;
        ck_assert_int_eq(stat(p20, &st), 0);
        ck_assert_int_eq(truncate(p20, st.st_size / 2), 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    memset(c.params, 0, sizeof(float) * tt.total);
    int found = 0;
    char path[512];
    ok(rlaif_checkpoint_resume(MPI_COMM_WORLD, &o, &c, &found, path, sizeof path));
    ck_assert(found);
    ck_assert(strstr(path, "rm-00000010.h5"));
    check_values(&c, 10, b, e);
    /* A direct load of the damaged file names the tensor. */
    ck_assert_int_ne(rlaif_checkpoint_load(MPI_COMM_WORLD, p30, &o.io, &c), 0);
    ck_assert(strstr(rlaif_error_message(), "checksum mismatch in params/wte.weight"));
    rlaif_error_clear();
    /* No checkpoint at all: found = 0, not an error. */
    rlaif_ckpt_opts none = o;
    none.name = "nothing";
    ok(rlaif_checkpoint_resume(MPI_COMM_WORLD, &none, &c, &found, NULL, 0));
    ck_assert(!found);
    /* keep < 1 (options filled by hand) still keeps the checkpoint just written. */
    rlaif_ckpt_opts zero = o;
    zero.name = "zero", zero.keep = 0;
    ok(rlaif_checkpoint_save(MPI_COMM_WORLD, &zero, 1, &c, NULL, 0));
    ok(rlaif_checkpoint_save(MPI_COMM_WORLD, &zero, 2, &c, NULL, 0));
    int64_t *steps;
    int n;
    ok(rlaif_checkpoint_list(dir, "zero", &steps, &n));
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(steps[0], 2);
    free(steps);
    ckpt_free(&c);
    rlaif_tensors_free(&tt);
}
END_TEST

START_TEST(test_metrics) {
    char h5[300], js[300];
    snprintf(h5, sizeof h5, "%s/metrics.h5", dir);
    snprintf(js, sizeof js, "%s/progress.jsonl", dir);
    const char *cols[] = {"objective/kl", "policy/clipfrac", "loss"};
    for (int run = 0; run < 2; run++) {
        rlaif_metrics *m;
        ok(rlaif_metrics_open(h5, js, MPI_COMM_WORLD, &m));
        ok(rlaif_metrics_phase(m, "ppo", 3, cols));
        if (run == 1) ok(rlaif_metrics_rewind(m, "ppo", 2)); /* resumed from step 2 */
        for (int s = run ? 3 : 1; s <= (run ? 4 : 3); s++) {
            double v[3] = {0.1 * s, s == 2 ? NAN : 0.5, 10.0 - s};
            ok(rlaif_metrics_log(m, "ppo", s, v));
        }
        if (run == 1) {
            const char *other[] = {"loss"};
            ok(rlaif_metrics_phase(m, "ppo2", 1, other));
            if (rank == 0) {
                /* A phase re-declared with other columns is refused. */
                rlaif_metrics *m2 = NULL;
                ok(rlaif_metrics_close(&m));
                ok(rlaif_metrics_open(h5, NULL, MPI_COMM_SELF, &m2));
                ck_assert_int_eq(rlaif_metrics_phase(m2, "ppo", 1, other), RLAIF_EX_USAGE);
                rlaif_error_clear();
                /* Names that would need escaping in progress.jsonl are refused. */
                const char *quoted[] = {"a\"b"}, *empty[] = {""};
                ck_assert_int_eq(rlaif_metrics_phase(m2, "q", 1, quoted), RLAIF_EX_SOFTWARE);
                rlaif_error_clear();
                ck_assert_int_eq(rlaif_metrics_phase(m2, "e", 1, empty), RLAIF_EX_SOFTWARE);
                rlaif_error_clear();
                ck_assert_int_eq(rlaif_metrics_phase(m2, "a/b", 1, other), RLAIF_EX_SOFTWARE);
                rlaif_error_clear();
                ok(rlaif_metrics_close(&m2));
            }
        }
        ok(rlaif_metrics_close(&m));
    }
    if (rank == 0) {
        hid_t f;
        ok(rlaif_h5_open_serial(h5, 0, &f));
        hid_t t = H5Tcreate(H5T_COMPOUND, 16);
        H5Tinsert(t, "step", 0, H5T_NATIVE_INT64);
        H5Tinsert(t, "objective/kl", 8, H5T_NATIVE_DOUBLE);
        struct {
            int64_t step;
            double kl;
        } * rows;
        size_t n;
        ok(rlaif_h5_read_all(f, "ppo", t, 16, (void **)&rows, &n));
        ck_assert_uint_eq(n, 4);
        for (size_t i = 0; i < n; i++) ck_assert_int_eq(rows[i].step, (int64_t)i + 1);
        ck_assert_double_eq_tol(rows[3].kl, 0.4, 1e-12);
        free(rows);
        H5Tclose(t);
        H5Fclose(f);
        /* A damaged metrics.h5 is set aside and a new one started. */
        FILE *bad = fopen(h5, "w");
        fputs("not HDF5", bad);
        fclose(bad);
        rlaif_metrics *m3;
        ok(rlaif_metrics_open(h5, NULL, MPI_COMM_SELF, &m3));
        ok(rlaif_metrics_phase(m3, "ppo", 3, cols));
        ok(rlaif_metrics_close(&m3));
        char aside[400];
        snprintf(aside, sizeof aside, "ls %s/metrics.h5.damaged-* >/dev/null", dir);
        ck_assert_int_eq(system(aside), 0);
        FILE *pf = fopen(js, "r");
        char line[512];
        int lines = 0, nulls = 0;
        while (fgets(line, sizeof line, pf)) lines++, nulls += strstr(line, "null") != NULL;
        fclose(pf);
        /* steps 1, 2, 3 then the resume from 2: 3 replaced, 4 added (issue
         * 12.11: the replayed step 3 is no longer a second row) */
        ck_assert_int_eq(lines, 4);
        ck_assert_int_eq(nulls, 1);
    }
}
END_TEST

/* ---- JSONL ---- */

static void write_file(const char *path, const char *text) {
    if (rank == 0) {
        FILE *f = fopen(path, "w");
        fputs(text, f);
        fclose(f);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

START_TEST(test_jsonl_round_trip) {
    char in[300], h5[300], out[300];
    snprintf(in, sizeof in, "%s/in.jsonl", dir);
    snprintf(h5, sizeof h5, "%s/in.h5", dir);
    snprintf(out, sizeof out, "%s/out.jsonl", dir);
    const char *kinds[3] = {"prompts", "sft", "prefs"};
    const char *texts[3] = {
        "{\"prompt\":\"Hello \\\"world\\\"\\n\\u00e9\\u4e2d\"}\n\n{\"prompt\":\"\"}\n",
        "{\"prompt\":\"p1\",\"response\":\"r1\"}\n{\"prompt\":\"p2\",\"response\":\"r\\t2\"}\n",
        "{\"prompt\":\"p\",\"chosen\":\"good\",\"rejected\":\"bad\",\"id\":5}\n"};
    const char *want[3] = {
        "{\"prompt\":\"Hello \\\"world\\\"\\n\\u00e9\\u4e2d\"}\n{\"prompt\":\"\"}\n",
        "{\"prompt\":\"p1\",\"response\":\"r1\"}\n{\"prompt\":\"p2\",\"response\":\"r\\t2\"}\n",
        "{\"prompt\":\"p\",\"chosen\":\"good\",\"rejected\":\"bad\",\"id\":5,\"label\":1.0,"
        "\"source\":\"human\"}\n"};
    for (int k = 0; k < 3; k++) {
        write_file(in, texts[k]);
        size_t n;
        ok(rlaif_prefs_ingest(in, h5, NULL, MPI_COMM_WORLD, NULL, NULL, NULL, &n));
        if (rank == 0) {
            ok(rlaif_prefs_export(h5, out, kinds[k], &n));
            /* jansson writes non-ASCII as \u escapes only with JSON_ENSURE_ASCII */
            char *got = slurp(out);
            if (k == 0)
                ck_assert_str_eq(got,
                                 "{\"prompt\":\"Hello \\\"world\\\"\\n\xc3\xa9\xe4\xb8\xad\"}\n"
                                 "{\"prompt\":\"\"}\n");
            else
                ck_assert_str_eq(got, want[k]);
        }
        MPI_Barrier(MPI_COMM_WORLD);
    }
}
END_TEST

START_TEST(test_jsonl_errors) {
    char in[300], h5[300];
    snprintf(in, sizeof in, "%s/bad.jsonl", dir);
    snprintf(h5, sizeof h5, "%s/bad.h5", dir);
    struct {
        const char *text, *kind, *msg;
        int code;
    } cases[] = {
        {"{\"prompt\":\"a\"}\n{\"prompt\":\"b\"\n", NULL, "bad.jsonl:2: invalid JSON", 64},
        {"[1,2]\n", NULL, "bad.jsonl:1: expected a JSON object", 64},
        {"{\"prompt\":\"a\"}\n\n{\"prompt\":7}\n", NULL,
         "bad.jsonl:3: field \"prompt\" is not a string", 64},
        {"{\"prompt\":\"a\",\"response\":\"b\"}\n{\"prompt\":\"c\"}\n", NULL,
         "bad.jsonl:2: missing field \"response\"", 64},
        {"{\"prompt\":\"a\",\"chosen\":\"b\"}\n", NULL, "bad.jsonl:1: missing field \"rejected\"",
         64},
        {"{\"prompt\":\"a\"}\n{\"prompt\":\"c\",\"chosen\":\"x\",\"rejected\":\"y\"}\n", NULL,
         "bad.jsonl:2: field \"chosen\" does not belong in a prompts file", 64},
        {"{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\",\"id\":\"x\"}\n", NULL,
         "bad.jsonl:1: field \"id\" is not an integer", 64},
        {"{\"prompt\":\"\xff\"}\n", NULL, "bad.jsonl:1: invalid JSON", 64},
        {"{\"prompt\":\"a\"}\n", "sft", "bad.jsonl:1: missing field \"response\"", 64},
        {"{\"prompt\":\"a\"}\n", "pairs", "unknown kind 'pairs'", 64},
        {"\n\n", NULL, "bad.jsonl: no records", 64},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_file(in, cases[i].text);
        int rc = rlaif_prefs_ingest(in, h5, cases[i].kind, MPI_COMM_WORLD, NULL, NULL, NULL, NULL);
        ck_assert_int_eq(rc, cases[i].code);
        ck_assert_msg(strstr(rlaif_error_message(), cases[i].msg), "case %zu: '%s' lacks '%s'", i,
                      rlaif_error_message(), cases[i].msg);
        rlaif_error_clear();
        ck_assert_int_ne(access(h5, F_OK), 0);
        char tmp[320];
        snprintf(tmp, sizeof tmp, "%s.tmp", h5);
        ck_assert_int_ne(access(tmp, F_OK), 0);
    }
    /* Missing input: EX_NOINPUT naming the file. */
    ck_assert_int_eq(rlaif_prefs_ingest("/nonexistent/x.jsonl", h5, NULL, MPI_COMM_WORLD, NULL,
                                        NULL, NULL, NULL),
                     RLAIF_EX_NOINPUT);
    ck_assert(strstr(rlaif_error_message(), "/nonexistent/x.jsonl"));
    rlaif_error_clear();
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("storage");
    /* One case per test, so CK_RUN_CASE=ckpt_3_to_2 runs one alone. */
#define CASE(name)                                                                                 \
    do {                                                                                           \
        TCase *tc = tcase_create(#name);                                                           \
        tcase_add_checked_fixture(tc, setup, teardown);                                            \
        tcase_set_timeout(tc, 120);                                                                \
        tcase_add_test(tc, test_##name);                                                           \
        suite_add_tcase(s, tc);                                                                    \
    } while (0)
    CASE(uneven_append);
    CASE(resume_no_duplicates);
    CASE(merge_tables);
    CASE(repair_killed_append);
    CASE(ckpt_3_to_2);
    CASE(ckpt_damaged);
    CASE(metrics);
    CASE(jsonl_round_trip);
    CASE(jsonl_errors);
    return s;
}
