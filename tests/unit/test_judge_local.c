/* test_judge_local.c - the local judge's batching and slicing: its call queue,
 * generation in bounded slices (rlaif_gen_begin/advance: chunked prefill and
 * one decoding step per slice give what rlaif_generate gives in one go), and
 * the judge object on a small random checkpoint with a byte tokenizer: a poll
 * does one slice, so a pair takes many polls; answers are journaled and a
 * second judge answers every call from the journal, generating nothing; the
 * journal key follows what changes an answer (weights, mode, order, sampling
 * settings) and nothing else (where the checkpoint lies, an unused seed). */
#include "judge_impl.h"
#include "rlaif/core/config.h"
#include "rlaif/engine/generate.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/tokenizer/tokenizer.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"

START_TEST(queue_is_fifo_and_capped) {
    call c[5];
    rlaif_local_queue q = {0};
    for (int i = 0; i < 5; i++) c[i].unit = i, rlaif_local_queue_push(&q, &c[i]);
    ck_assert_int_eq(q.n, 5);
    call *out[8];
    ck_assert_int_eq(rlaif_local_queue_take(&q, 2, out), 2); /* a batch takes at most its size */
    ck_assert_int_eq(out[0]->unit, 0);
    ck_assert_int_eq(out[1]->unit, 1);
    ck_assert_int_eq(q.n, 3);
    rlaif_local_queue_push(&q, &c[0]); /* behind the ones already waiting */
    ck_assert_int_eq(rlaif_local_queue_take(&q, 8, out), 4);
    ck_assert_int_eq(out[0]->unit, 2);
    ck_assert_int_eq(out[3]->unit, 0);
    ck_assert_int_eq(q.n, 0);
    ck_assert_ptr_null(q.head);
    ck_assert_ptr_null(q.tail);
    ck_assert_int_eq(rlaif_local_queue_take(&q, 8, out), 0);
}
END_TEST

static void small_model(rlaif_model *m, int max_seq) {
    rlaif_model_config mc = {.arch = RLAIF_ARCH_LLAMA,
                             .n_layer = 2,
                             .n_embd = 32,
                             .n_head = 4,
                             .n_kv_head = 2,
                             .vocab_size = 257,
                             .max_seq_len = max_seq};
    ck_assert_int_eq(rlaif_model_create(m, &mc), 0);
    rlaif_model_init_random(m, 7, 0.3f);
}

/* The three caches sharing is checked on: arch 0 GPT-2 (learned
 * positions), 1 a Llama with shared KV heads and RoPE, 2 that Llama in
 * bf16 (a bf16 cache). */
static void arch_model_len(rlaif_model *m, int arch, int max_seq) {
    if (arch == 0) {
        rlaif_model_config mc = {.arch = RLAIF_ARCH_GPT2,
                                 .n_layer = 2,
                                 .n_embd = 32,
                                 .n_head = 4,
                                 .vocab_size = 257,
                                 .max_seq_len = max_seq};
        ck_assert_int_eq(rlaif_model_create(m, &mc), 0);
        rlaif_model_init_random(m, 5, 0.3f);
    } else {
        small_model(m, max_seq);
    }
    if (arch == 2) rlaif_model_set_precision(m, RLAIF_PREC_BF16);
}

static void arch_model(rlaif_model *m, int arch) {
    arch_model_len(m, arch, 64);
}

/* Three ragged prompts through a run advanced with a given budget. */
static int run_sliced(rlaif_model *m, const rlaif_gen_config *gc, long budget,
                      rlaif_gen_output *out, float *logits) {
    static const int tok[] = {5, 9, 13, 2, 200, 31, 7, 7, 7, 40, 41, 42, 43, 44, 45, 46, 47};
    int64_t off[3] = {0, 4, 7};
    int len[3] = {4, 3, 10};
    rlaif_gen_run *g;
    ck_assert_int_eq(rlaif_gen_begin(&g, m, gc, 3, tok, off, len, NULL), 0);
    int finished = 0, n = 0;
    while (!finished) {
        ck_assert_int_eq(rlaif_gen_advance(g, budget, &finished), 0);
        n++;
    }
    /* the engine's clock counts the real prompt tokens (17, not 3 x 10
     * padded) and one forward per decoding step after the first sample */
    rlaif_gen_timing tm = {0};
    rlaif_gen_add_timing(g, &tm);
    ck_assert_int_eq(tm.prefill_tokens, 4 + 3 + 10);
    ck_assert_int_eq(tm.decode_steps, gc->max_new_tokens ? gc->max_new_tokens - 1 : 0);
    ck_assert_int_le(tm.decode_rows, 3 * tm.decode_steps);
    ck_assert(tm.prefill_s > 0 && (tm.decode_steps == 0 || tm.decode_s > 0));
    /* attention's share is part of each phase's time, and counted in both */
    ck_assert(tm.prefill_attn_s > 0 && tm.prefill_attn_s < tm.prefill_s);
    ck_assert(tm.decode_steps == 0 || (tm.decode_attn_s > 0 && tm.decode_attn_s < tm.decode_s));
    const rlaif_gen_output *o = rlaif_gen_result(g);
    if (out && gc->max_new_tokens) {
        out->B = o->B, out->max_new = o->max_new;
        size_t k = (size_t)o->B * o->max_new;
        out->tokens = malloc(k * sizeof(int)), out->logp = malloc(k * sizeof(float));
        memcpy(out->tokens, o->tokens, k * sizeof(int)), memcpy(out->logp, o->logp, k * 4);
    }
    if (logits) memcpy(logits, rlaif_gen_logits(g), sizeof(float) * 3 * 257);
    rlaif_gen_run_free(g);
    return n;
}

START_TEST(sliced_generation_equals_one_go) {
    rlaif_model m;
    small_model(&m, 64);
    rlaif_gen_config gc = rlaif_gen_defaults();
    gc.max_new_tokens = 6, gc.temperature = 0.8f, gc.seed = 11;
    rlaif_gen_output whole, part;
    ck_assert_int_eq(run_sliced(&m, &gc, LONG_MAX, &whole, NULL), 1 + 6);
    /* budget 3 tokens over 3 rows = 1 prompt column per slice: 10 columns, 6 steps */
    ck_assert_int_eq(run_sliced(&m, &gc, 3, &part, NULL), 10 + 6);
    for (int i = 0; i < 3 * 6; i++) {
        ck_assert_int_eq(part.tokens[i], whole.tokens[i]);
        ck_assert_float_eq_tol(part.logp[i], whole.logp[i], 1e-4);
    }
    /* 12 tokens = 4 columns a slice: 3 chunks (4, 4, 2) */
    ck_assert_int_eq(run_sliced(&m, &gc, 12, NULL, NULL), 3 + 6);
    free(whole.tokens), free(whole.logp), free(part.tokens), free(part.logp);
    rlaif_model_free(&m);
}
END_TEST

/* Prefill only (max_new 0, logprob mode): the logits of each prompt's last
 * token, whatever the chunking, equal a full forward of that prompt alone. */
START_TEST(prefill_only_logits) {
    rlaif_model m;
    small_model(&m, 64);
    rlaif_gen_config gc = rlaif_gen_defaults();
    gc.max_new_tokens = 0;
    static float a[3 * 257], b[3 * 257];
    ck_assert_int_eq(run_sliced(&m, &gc, LONG_MAX, NULL, a), 1);
    ck_assert_int_eq(run_sliced(&m, &gc, 7, NULL, b), 5); /* 2 columns a slice */
    int t2r[10] = {7, 7, 40, 41, 42, 43, 44, 45, 46, 47}; /* prompt 2 is tok[7..17) */
    ck_assert_int_eq(rlaif_model_forward(&m, t2r, NULL, NULL, 1, 10), 0);
    ck_assert_int_eq(rlaif_model_lm_forward(&m, NULL), 0);
    for (int v = 0; v < 257; v++) {
        ck_assert_float_eq_tol(b[2 * 257 + v], a[2 * 257 + v], 1e-4);
        ck_assert_float_eq_tol(a[2 * 257 + v], m.logits[9 * 257 + v], 1e-4);
    }
    rlaif_model_free(&m);
}
END_TEST

/* One run of prompts (flat tok, off, len) in slices of `budget` tokens:
 * the sampled tokens and log p (out, [B * new]), the last prefill's logits
 * (lg, [B * 257]) and the engine's clock. */
static void run_prompts(rlaif_model *m, const rlaif_gen_config *gc, int B, const int *tok,
                        const int64_t *off, const int *len, long budget, int *out, float *logp,
                        float *lg, rlaif_gen_timing *tm) {
    rlaif_gen_run *g;
    uint32_t seq[8] = {3, 1, 4, 5, 9, 2, 6, 8};
    ck_assert_int_eq(rlaif_gen_begin(&g, m, gc, B, tok, off, len, seq), 0);
    int finished = 0, N = gc->max_new_tokens;
    while (!finished) {
        ck_assert_int_eq(rlaif_gen_advance(g, budget, &finished), 0);
        if (N == 0 && finished) memcpy(lg, rlaif_gen_logits(g), sizeof(float) * B * 257);
    }
    if (N) {
        const rlaif_gen_output *o = rlaif_gen_result(g);
        memcpy(out, o->tokens, sizeof(int) * B * N), memcpy(logp, o->logp, sizeof(float) * B * N);
    }
    *tm = (rlaif_gen_timing){0};
    rlaif_gen_add_timing(g, tm);
    rlaif_gen_run_free(g);
}

/* Prompts (flat tok, off, len; B = 4) run with share_min 0 (every token of
 * every row computed) and 16: the same logits (prefill only) and samples
 * (5 new tokens), whatever the budget; `copied` tokens copied, not computed. */
static void same_with_sharing(rlaif_model *m, const int *tok, const int64_t *off, const int *len,
                              long long copied) {
    enum { B = 4, N = 5 };
    long long n = 0;
    for (int b = 0; b < B; b++) n += len[b];
    for (int new = 0; new <= N; new += N) {
        rlaif_gen_config gc = rlaif_gen_defaults();
        gc.max_new_tokens = new, gc.temperature = 0.9f, gc.seed = 4;
        for (long budget = LONG_MAX; budget >= B; budget = budget == B ? 0 : B) {
            int t0[B * N], t1[B * N];
            float p0[B * N], p1[B * N];
            static float l0[B * 257], l1[B * 257];
            rlaif_gen_timing m0, m1;
            gc.share_min = 0;
            run_prompts(m, &gc, B, tok, off, len, budget, t0, p0, l0, &m0);
            gc.share_min = 16;
            run_prompts(m, &gc, B, tok, off, len, budget, t1, p1, l1, &m1);
            ck_assert_int_eq(m0.prefill_shared, 0);
            ck_assert_int_eq(m0.prefill_tokens, n);
            ck_assert_int_eq(m1.prefill_shared, copied);
            ck_assert_int_eq(m1.prefill_tokens, n - copied);
            if (new) {
                for (int i = 0; i < B * N; i++) {
                    ck_assert_int_eq(t1[i], t0[i]);
                    ck_assert_float_eq_tol(p1[i], p0[i], 1e-5);
                }
            } else {
                for (int i = 0; i < B * 257; i++) ck_assert_float_eq_tol(l1[i], l0[i], 1e-5);
            }
        }
    }
}

/* Prompts that begin with the same tokens (a judge's system prompt) and
 * prompts repeated in a batch (K samples of one prompt): computed once and
 * copied into the other rows' caches, the logits and the samples equal
 * those of computing every token, for learned positions (GPT-2) and rotary
 * ones with shared KV heads (Llama), over an fp32 and a bf16 cache, in one
 * go and one column a slice. */
START_TEST(shared_prefix_is_computed_once) {
    enum { PRE = 20, B = 4 };
    /* a: a common prefix of PRE tokens, rows 1 and 3 the same prompt (their
     * 6 tokens past it too few to copy); r: no common prefix, rows 0 and 2
     * the same prompt of 24 tokens, rows 1 and 3 of 30 */
    int a[4 * PRE + 32], alen[B] = {PRE + 3, PRE + 7, PRE + 1, PRE + 7}, na = 0;
    int r[4 * 30], rlen[B] = {24, 30, 24, 30}, nr = 0;
    int64_t aoff[B], roff[B];
    for (int b = 0; b < B; b++) {
        aoff[b] = na, roff[b] = nr;
        for (int i = 0; i < alen[b]; i++)
            a[na++] = i < PRE ? 30 + (i * 7) % 200 : 1 + ((b == 3 ? 1 : b) * 37 + i * 11) % 250;
        for (int i = 0; i < rlen[b]; i++) r[nr++] = 1 + ((b % 2) * 53 + i * 13) % 250;
    }
    /* the same past a block of 64 keys, which decoding then reads from
     * one row's copy (rlaif_kv_cache_same): la, a common prefix of LPRE;
     * lr, rows 0 and 2 one prompt of 90 tokens, rows 1 and 3 one of 100 */
    enum { LPRE = 80 };
    int la[4 * LPRE + 32], lalen[B] = {LPRE + 3, LPRE + 7, LPRE + 1, LPRE + 7}, nla = 0;
    int lr[2 * 90 + 2 * 100], lrlen[B] = {90, 100, 90, 100}, nlr = 0;
    int64_t laoff[B], lroff[B];
    for (int b = 0; b < B; b++) {
        laoff[b] = nla, lroff[b] = nlr;
        for (int i = 0; i < lalen[b]; i++)
            la[nla++] = i < LPRE ? 30 + (i * 7) % 200 : 1 + (b * 37 + i * 11) % 250;
        for (int i = 0; i < lrlen[b]; i++) lr[nlr++] = 1 + ((b % 2) * 53 + i * 13) % 250;
    }
    for (int arch = 0; arch < 3; arch++) {
        rlaif_model m;
        arch_model(&m, arch);
        same_with_sharing(&m, a, aoff, alen, (B - 1) * PRE);
        same_with_sharing(&m, r, roff, rlen, 23 + 29);
        rlaif_model_free(&m);
        arch_model_len(&m, arch, 112);
        same_with_sharing(&m, la, laoff, lalen, (B - 1) * LPRE);
        same_with_sharing(&m, lr, lroff, lrlen, 89 + 99);
        rlaif_model_free(&m);
    }
    /* fewer common tokens than share_min: only rows 1 and 3, one prompt,
     * share theirs (all but its last token); one row: nothing is shared */
    rlaif_model m;
    small_model(&m, 64);
    rlaif_gen_config gc = rlaif_gen_defaults();
    gc.max_new_tokens = 0, gc.share_min = PRE + 1;
    static float lg[B * 257];
    rlaif_gen_timing tm;
    run_prompts(&m, &gc, B, a, aoff, alen, LONG_MAX, NULL, NULL, lg, &tm);
    ck_assert_int_eq(tm.prefill_shared, PRE + 6);
    gc.share_min = 1;
    run_prompts(&m, &gc, 1, a, aoff, alen, LONG_MAX, NULL, NULL, lg, &tm);
    ck_assert_int_eq(tm.prefill_shared, 0);
    /* K samples of one prompt share the whole prompt but not their streams */
    gc.share_min = 16, gc.max_new_tokens = 5, gc.temperature = 0.9f;
    int64_t same[B] = {0, 0, 0, 0};
    int slen[B] = {24, 24, 24, 24}, out[B * 5];
    float lp[B * 5];
    run_prompts(&m, &gc, B, r, same, slen, LONG_MAX, out, lp, lg, &tm);
    ck_assert_int_eq(tm.prefill_shared, 3 * 23);
    ck_assert(memcmp(out, out + 5, sizeof(int) * 5) || memcmp(out, out + 10, sizeof(int) * 5));
    rlaif_model_free(&m);
}
END_TEST

/* One run through the keep k (share_min 16, 5 new tokens, in slices of
 * budget) against the same prompts with no keep: the same samples and log
 * p; `kept` tokens copied in all (from the keep and the batch's own prefix). */
static void same_with_keep(rlaif_model *m, rlaif_gen_keep *k, int B, const int *tok,
                           const int64_t *off, const int *len, long budget, long long kept) {
    enum { N = 5 };
    rlaif_gen_config gc = rlaif_gen_defaults();
    gc.max_new_tokens = N, gc.temperature = 0.9f, gc.seed = 4, gc.share_min = 16;
    int t0[8 * N], t1[8 * N];
    float p0[8 * N], p1[8 * N];
    static float lg[8 * 257];
    rlaif_gen_timing m0, m1;
    run_prompts(m, &gc, B, tok, off, len, budget, t0, p0, lg, &m0);
    gc.keep = k;
    run_prompts(m, &gc, B, tok, off, len, budget, t1, p1, lg, &m1);
    ck_assert_int_eq(m1.prefill_shared, kept);
    ck_assert_int_eq(m1.prefill_tokens + m1.prefill_shared, m0.prefill_tokens + m0.prefill_shared);
    for (int i = 0; i < B * N; i++) {
        ck_assert_int_eq(t1[i], t0[i]);
        ck_assert_float_eq_tol(p1[i], p0[i], 1e-5);
    }
}

/* A prefix kept from one run to the next (the local judge's system prompt
 * and, for the two orders of a pair, its question): copied instead of
 * computed, with the samples of computing it, for GPT-2, a Llama with
 * shared KV heads and a bf16 cache; never used with a model that may
 * change or with another model. */
START_TEST(kept_prefix_serves_the_next_run) {
    enum { PRE = 20, Q = 4 };
    /* p: one prompt of PRE + Q + 6 tokens; o: its other order (the same
     * PRE + Q, then other tokens); b4: 4 prompts sharing only PRE; c4: 4
     * prompts sharing PRE + 5, the 5 not p's */
    int p[40], o[40], b4[4 * 40], c4[4 * 40], np = PRE + Q + 6, no = PRE + Q + 9;
    int blen[4] = {PRE + 3, PRE + 8, PRE + 5, PRE + 2},
        clen[4] = {PRE + 9, PRE + 7, PRE + 12, PRE + 6};
    int64_t zero = 0, boff[4], coff[4];
    for (int i = 0; i < 40; i++) {
        int sys = 30 + (i * 7) % 200;
        p[i] = i < PRE + Q ? sys : 3 + (i * 17) % 240;
        o[i] = i < PRE + Q ? sys : 5 + (i * 29) % 240;
    }
    for (int b = 0, nb = 0, nc = 0; b < 4; b++) {
        boff[b] = nb, coff[b] = nc;
        for (int i = 0; i < blen[b]; i++) b4[nb++] = i < PRE ? p[i] : 1 + (b * 37 + i * 11) % 250;
        for (int i = 0; i < clen[b]; i++)
            c4[nc++] = i < PRE ? p[i] : i < PRE + 5 ? 251 + i - PRE : 1 + (b * 41 + i * 3) % 250;
    }
    for (int arch = 0; arch < 3; arch++) {
        rlaif_model m, other;
        arch_model(&m, arch);
        m.frozen = 1;
        rlaif_gen_keep k = {0};
        long budget = arch == 1 ? 4 : LONG_MAX;              /* one column a slice, or one go */
        same_with_keep(&m, &k, 1, p, &zero, &np, budget, 0); /* nothing kept yet */
        ck_assert_int_eq(k.n, np - 1);
        /* the keep's cache has room for a longer prompt (a quarter more) */
        const void *mem = k.kv.mem;
        ck_assert_int_ge(k.kv.maxT, np - 1 + (np - 1) / 4);
        same_with_keep(&m, &k, 1, o, &zero, &no, budget, PRE + Q); /* the other order */
        ck_assert_int_eq(k.n, no - 1);
        ck_assert_ptr_eq(k.kv.mem, mem); /* longer, in the same cache */
        /* the first order again, shorter: written into the keep's own cache */
        same_with_keep(&m, &k, 1, p, &zero, &np, budget, PRE + Q);
        ck_assert_int_eq(k.n, np - 1);
        ck_assert_ptr_eq(k.kv.mem, mem);
        /* a batch whose own prefix is all kept: copied into every row */
        same_with_keep(&m, &k, 4, b4, boff, blen, budget, 4 * PRE);
        ck_assert_int_eq(k.n, np - 1);
        /* a batch's prefix longer than what is kept: the rest computed once */
        same_with_keep(&m, &k, 4, c4, coff, clen, budget, PRE + 3 * (PRE + 5));
        ck_assert_int_eq(k.n, PRE + 5);
        /* another model (same shapes) or weights that may change: not used */
        small_model(&other, 64);
        other.frozen = 1;
        if (arch == 2) rlaif_model_set_precision(&other, RLAIF_PREC_BF16);
        same_with_keep(&other, &k, 4, b4, boff, blen, budget, 3 * PRE);
        ck_assert_ptr_eq(k.m, &other); /* its own batch prefix, kept now */
        other.frozen = 0;
        same_with_keep(&other, &k, 1, p, &zero, &np, budget, 0);
        ck_assert_int_eq(k.n, PRE);
        rlaif_model_free(&other);
        rlaif_gen_keep_free(&k);
        rlaif_model_free(&m);
    }
}
END_TEST

/* m as a judge checkpoint at path, with a byte tokenizer. */
static void save_judge(const char *path, const rlaif_model *m) {
    ck_assert_int_eq(rlaif_ckpt_save(path, m, NULL, 0), 0);
    rlaif_tokenizer *t;
    ck_assert_int_eq(rlaif_tokenizer_byte(&t, NULL), 0);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_eq(rlaif_tokenizer_save(t, g), 0);
    H5Gclose(g), H5Fclose(f);
    rlaif_tokenizer_free(t);
}

static void write_ckpt(const char *path) {
    rlaif_model m;
    small_model(&m, 2048);
    save_judge(path, &m);
    rlaif_model_free(&m);
}

/* Judge 3 pairs; returns the polls it took. slice_time: judge.local_slice_time. */
static int judge_pairs(const char *ckpt, const char *dir, const char *mode, const char *slice_time,
                       long *gens, rlaif_judge_result *res) {
    char s[5][300];
    snprintf(s[0], sizeof s[0], "judge.model=%s", ckpt);
    snprintf(s[1], sizeof s[1], "judge.journal_dir=%s", dir);
    snprintf(s[2], sizeof s[2], "judge.mode=%s", mode);
    snprintf(s[3], sizeof s[3], "judge.local_slice_tokens=64");
    snprintf(s[4], sizeof s[4], "judge.local_slice_time=%s", slice_time);
    char *sets[] = {"judge.backend=local",
                    s[0],
                    s[1],
                    s[2],
                    s[3],
                    s[4],
                    "judge.max_tokens=4",
                    "judge.local_batch=4",
                    "judge.min_coverage=0"};
    rlaif_config *cfg;
    static char *no_env[] = {NULL};
    ck_assert_int_eq(rlaif_config_load(&cfg, NULL, 9, sets, no_env), 0);
    rlaif_judge *j;
    ck_assert_int_eq(rlaif_judge_open(&j, cfg, 0, 1, NULL), 0);
    for (int i = 0; i < 3; i++) {
        rlaif_judge_pair p = {(uint64_t)i, "What is 2+2?", {"4", "five"}};
        ck_assert_int_eq(rlaif_judge_submit(j, &p), 0);
    }
    int got = 0, polls = 0, k;
    while (got < 3 && polls < 100000) {
        ck_assert_int_eq(rlaif_judge_poll(j, 0, res + got, 3 - got, &k), 0);
        got += k, polls++;
    }
    ck_assert_int_eq(got, 3);
    *gens = rlaif_local_generations(j->ep[0].local);
    rlaif_judge_close(j);
    rlaif_config_free(cfg);
    return polls;
}

START_TEST(judge_polls_in_slices_and_replays) {
    char dir[] = "/tmp/rlaif-test-jlocal-XXXXXX", ckpt[300];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(ckpt, sizeof ckpt, "%s/judge.h5", dir);
    write_ckpt(ckpt);
    static const char *modes[] = {"logprob", "verdict"};
    for (int mi = 0; mi < 2; mi++) {
        rlaif_judge_result res[3];
        long gens;
        /* 6 calls (3 pairs x 2 orders) of several hundred byte tokens each:
         * batches of 4, 16 columns per poll, so dozens of polls */
        int polls = judge_pairs(ckpt, dir, modes[mi], "3600s", &gens, res);
        ck_assert_int_eq(gens, 6);
        ck_assert_int_gt(polls, 20);
        for (int i = 0; i < 3; i++) {
            ck_assert_int_eq(res[i].ncalls, 2);
            ck_assert_int_eq(res[i].nreplayed, 0);
            if (mi == 0) ck_assert_int_eq(res[i].status, RLAIF_JS_OK);
            rlaif_judge_result_free(&res[i]);
        }
        /* the same calls again: all from the journal, nothing generated */
        int replay = judge_pairs(ckpt, dir, modes[mi], "3600s", &gens, res);
        ck_assert_int_eq(gens, 0);
        ck_assert_int_eq(replay, 1);
        for (int i = 0; i < 3; i++) {
            ck_assert_int_eq(res[i].nreplayed, 2);
            rlaif_judge_result_free(&res[i]);
        }
        /* chunks cut to the time target: a microsecond at the measured rate
         * is one prompt column per poll after the first chunk, so many more
         * polls than 16 columns a poll (fresh journal: every call runs) */
        char fresh[400];
        snprintf(fresh, sizeof fresh, "%s/fresh%d", dir, mi);
        ck_assert_int_eq(mkdir(fresh, 0700), 0);
        int fine = judge_pairs(ckpt, fresh, modes[mi], "1e-6s", &gens, res);
        ck_assert_int_eq(gens, 6);
        ck_assert_msg(fine > polls + 100, "time-cut chunks: %d polls, 16-column chunks: %d", fine,
                      polls);
        for (int i = 0; i < 3; i++) rlaif_judge_result_free(&res[i]);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* The key of one call (prompt ids 1..5, order) under a judge set by sets. */
static void key_of(const char *ckpt, const char *mode, const char *temp, const char *seed,
                   int order, char key[33]) {
    char s[4][300];
    snprintf(s[0], sizeof s[0], "judge.mode=%s", mode);
    snprintf(s[1], sizeof s[1], "judge.temperature=%s", temp);
    snprintf(s[2], sizeof s[2], "judge.seed=%s", seed);
    snprintf(s[3], sizeof s[3], "judge.model=%s", ckpt);
    char *sets[] = {"judge.backend=local", s[0], s[1], s[2], s[3]};
    rlaif_config *cfg;
    static char *no_env[] = {NULL};
    ck_assert_int_eq(rlaif_config_load(&cfg, NULL, 5, sets, no_env), 0);
    rlaif_local *L;
    ck_assert_int_eq(
        rlaif_local_open(&L, cfg, ckpt,
                         !strcmp(mode, "logprob") ? RLAIF_JM_LOGPROB : RLAIF_JM_VERDICT),
        0);
    int32_t ids[5] = {1, 2, 3, 4, 5};
    call c = {.ids = ids, .nids = 5};
    rlaif_local_key(L, &c, order, key);
    rlaif_local_close(L, NULL);
    rlaif_config_free(cfg);
}

/* What changes an answer changes the key; what does not, does not. */
START_TEST(key_covers_what_changes_the_answer) {
    char dir[] = "/tmp/rlaif-test-jlkey-XXXXXX", a[300], b[300];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(a, sizeof a, "%s/a.h5", dir), snprintf(b, sizeof b, "%s/b.h5", dir);
    write_ckpt(a);
    char cmd[700], k0[33], k[33];
    snprintf(cmd, sizeof cmd, "cp %s %s", a, b);
    ck_assert_int_eq(system(cmd), 0);
    key_of(a, "verdict", "0", "1", 0, k0);
    key_of(b, "verdict", "0", "1", 0, k); /* a copy is the same judge */
    ck_assert_str_eq(k, k0);
    key_of(a, "verdict", "0", "2", 0, k); /* greedy: the seed plays no part */
    ck_assert_str_eq(k, k0);
    key_of(a, "verdict", "0", "1", 1, k);
    ck_assert_str_ne(k, k0);
    key_of(a, "verdict", "0.7", "1", 0, k0);
    ck_assert_str_ne(k, k0);
    key_of(a, "verdict", "0.7", "2", 0, k); /* sampled: it does */
    ck_assert_str_ne(k, k0);
    key_of(a, "logprob", "0", "1", 0, k);
    ck_assert_str_ne(k, k0);
    /* other weights (one parameter changed in place) are another judge */
    key_of(a, "verdict", "0", "1", 0, k0);
    rlaif_model m;
    ck_assert_int_eq(rlaif_model_load(b, &m), 0);
    m.params[m.table.total - 1] += 1e-3f;
    save_judge(a, &m);
    rlaif_model_free(&m);
    key_of(a, "verdict", "0", "1", 0, k);
    ck_assert_str_ne(k, k0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("judge_local");
    TCase *t = tcase_create("core");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, queue_is_fifo_and_capped);
    tcase_add_test(t, sliced_generation_equals_one_go);
    tcase_add_test(t, prefill_only_logits);
    tcase_add_test(t, shared_prefix_is_computed_once);
    tcase_add_test(t, kept_prefix_serves_the_next_run);
    tcase_add_test(t, judge_polls_in_slices_and_replays);
    tcase_add_test(t, key_covers_what_changes_the_answer);
    suite_add_tcase(s, t);
    return s;
}
