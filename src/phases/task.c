/* task.c - the arithmetic demo task (problems, prompts, demonstrations with
 * flaws in set proportions, greedy held-out evaluation with the oracle's
 * flaw counts) and the model's text format. */
#include "rlaif/phases/task.h"
#include "rlaif/core/error.h"
#include "rlaif/engine/generate.h"
#include "rlaif/judge/judge.h"
#include "rlaif/core/log.h"
#include "rlaif/core/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_words[] = {"plus", "minus", "times"};

/* A problem's id: (op, a, b) in mixed radix, unique for max_operand <= 1e9. */
static uint64_t problem_id(const rlaif_task *t, const rlaif_arith *p) {
    uint64_t r = (uint64_t)t->max_operand + 1;
    return ((uint64_t)p->op * r + (uint64_t)p->a) * r + (uint64_t)p->b;
}

/* One draw of (op, a, b) from r. */
static void draw(rlaif_rng *r, long max_operand, rlaif_arith *p) {
    uint32_t n = (uint32_t)max_operand + 1;
    p->op = (rlaif_arith_op)rlaif_rng_below(r, 3);
    p->a = (long)rlaif_rng_below(r, n);
    p->b = (long)rlaif_rng_below(r, n);
    p->answer = p->op == RLAIF_OP_PLUS    ? p->a + p->b
                : p->op == RLAIF_OP_MINUS ? p->a - p->b
                                          : p->a * p->b;
}

/* Index i may exceed 32 bits: its high word goes into the RNG's step. */
static void rng_at(const rlaif_task *t, uint32_t stream, int64_t i, rlaif_rng *r) {
    rlaif_rng_init(r, t->seed, stream, (uint32_t)((uint64_t)i >> 32), (uint32_t)i);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int rlaif_task_init(rlaif_task *t, uint64_t seed, long max_operand, int64_t n_train) {
    memset(t, 0, sizeof *t);
    if (max_operand < 1 || max_operand > 1000000000L || n_train < 1)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "data.max_operand is in [1, 1e9], data.n_prompts >= 1",
                           "arithmetic task: max_operand %ld, n_prompts %lld", max_operand,
                           (long long)n_train);
    t->seed = seed, t->max_operand = max_operand, t->n_train = n_train;
    t->train_ids = xmalloc(sizeof(uint64_t) * (size_t)n_train);
    for (int64_t i = 0; i < n_train; i++) {
        rlaif_arith p;
        rlaif_task_train(t, i, &p);
        t->train_ids[i] = problem_id(t, &p);
    }
    qsort(t->train_ids, (size_t)n_train, sizeof(uint64_t), cmp_u64);
    return 0;
}

int rlaif_task_set_demos(rlaif_task *t, const rlaif_demo_mix *mix) {
    if (mix->rude + mix->ramble + mix->offtopic > 1.0 + 1e-12)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "a demonstration carries at most one style flaw: lower the fractions",
                           "data.flaw_rude + data.flaw_ramble + data.flaw_offtopic = %g > 1",
                           mix->rude + mix->ramble + mix->offtopic);
    t->mix = *mix;
    return 0;
}

int rlaif_task_from_cfg(rlaif_task *t, const rlaif_config *cfg) {
    RLAIF_TRY(rlaif_task_init(t, (uint64_t)rlaif_cfg_int(cfg, "run.seed"),
                              (long)rlaif_cfg_int(cfg, "data.max_operand"),
                              (int64_t)rlaif_cfg_int(cfg, "data.n_prompts")));
    rlaif_demo_mix mix = {
        rlaif_cfg_float(cfg, "data.flaw_wrong"), rlaif_cfg_float(cfg, "data.flaw_rude"),
        rlaif_cfg_float(cfg, "data.flaw_ramble"), rlaif_cfg_float(cfg, "data.flaw_offtopic"),
        !strcmp(rlaif_cfg_str(cfg, "data.demo_phrasing"), "varied")};
    int rc = rlaif_task_set_demos(t, &mix);
    if (rc) rlaif_task_free(t);
    return rc;
}

void rlaif_task_free(rlaif_task *t) {
    free(t->train_ids);
    memset(t, 0, sizeof *t);
}

void rlaif_task_train(const rlaif_task *t, int64_t i, rlaif_arith *p) {
    rlaif_rng r;
    rng_at(t, RLAIF_STREAM_DATA, i, &r);
    draw(&r, t->max_operand, p);
}

int rlaif_task_seen(const rlaif_task *t, const rlaif_arith *p) {
    uint64_t id = problem_id(t, p);
    return t->train_ids &&
           bsearch(&id, t->train_ids, (size_t)t->n_train, sizeof(uint64_t), cmp_u64) != NULL;
}

void rlaif_task_heldout(const rlaif_task *t, int64_t i, rlaif_arith *p) {
    rlaif_rng r;
    rng_at(t, RLAIF_STREAM_HELDOUT, i, &r);
    /* Redraw from the same counter while the problem is a training one; a
     * training set covering almost every problem leaves a seen one after 64. */
    for (int tries = 0; tries < 64; tries++) {
        draw(&r, t->max_operand, p);
        if (!rlaif_task_seen(t, p)) return;
    }
}

void rlaif_task_prompt(const rlaif_arith *p, char *buf, size_t n) {
    snprintf(buf, n, "What is %ld %s %ld?", p->a, op_words[p->op], p->b);
}

/* The phrasings of a demonstration, each with one %ld (the number given).
 * Flawed ones use the builtin judge's own word lists (judge_builtin.c), so
 * the judge sees every flaw the data carries. */
static const char *const clean_forms[] = {"%ld", "The answer is %ld.", "%ld.", "It is %ld."};
static const char *const rude_forms[] = {"%ld, you idiot.", "%ld. What a dumb question.",
                                         "Obviously %ld, moron."};
static const char *const ramble_forms[] = {"Let me think about it. The answer is %ld.",
                                           "%ld. I hope this helps you today.",
                                           "To be honest, it is %ld."};
static const char *const offtopic_forms[] = {
    "%ld. By the way, I like pizza.", "My cat is asleep. It is %ld.", "%ld. Nice weather today."};
static const long wrong_by[] = {-10, -2, -1, 1, 2, 10};
#define PICK(r, a) (a)[rlaif_rng_below((r), sizeof(a) / sizeof *(a))]

int rlaif_task_demo(const rlaif_task *t, int64_t i, char *buf, size_t n) {
    rlaif_rng r;
    rlaif_arith p;
    rng_at(t, RLAIF_STREAM_DATA, i, &r);
    draw(&r, t->max_operand, &p); /* the problem's draws first: it stays problem i */
    const rlaif_demo_mix *m = &t->mix;
    double u_wrong = rlaif_rng_uniform_double(&r), u_style = rlaif_rng_uniform_double(&r);
    long given = p.answer + (u_wrong < m->wrong ? PICK(&r, wrong_by) : 0);
    int flaws = given != p.answer ? RLAIF_FLAW_WRONG : 0;
    const char *form = m->varied ? PICK(&r, clean_forms) : "%ld";
    if (u_style < m->rude)
        form = PICK(&r, rude_forms), flaws |= RLAIF_FLAW_RUDE;
    else if (u_style < m->rude + m->ramble)
        form = PICK(&r, ramble_forms), flaws |= RLAIF_FLAW_RAMBLE;
    else if (u_style < m->rude + m->ramble + m->offtopic)
        form = PICK(&r, offtopic_forms), flaws |= RLAIF_FLAW_OFFTOPIC;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(buf, n, form, given); /* every form holds exactly one %ld */
#pragma GCC diagnostic pop
    return flaws;
}

int rlaif_task_flaws(const rlaif_arith *p, const char *response) {
    char q[96];
    rlaif_flaws f;
    rlaif_task_prompt(p, q, sizeof q);
    rlaif_builtin_flaws(q, response, &f);
    return (f.correct ? 0 : RLAIF_FLAW_WRONG) | (f.rude ? RLAIF_FLAW_RUDE : 0) |
           (f.rambling ? RLAIF_FLAW_RAMBLE : 0) | (f.off_topic ? RLAIF_FLAW_OFFTOPIC : 0);
}

int rlaif_task_correct(const rlaif_arith *p, const char *response) {
    return !(rlaif_task_flaws(p, response) & RLAIF_FLAW_WRONG);
}

/* ---- text format ---- */

static void push_id(rlaif_tokens *out, int32_t id) {
    if (out->n == out->cap) {
        out->cap = out->cap ? 2 * out->cap : 64;
        out->ids = xrealloc(out->ids, sizeof(int32_t) * out->cap);
    }
    out->ids[out->n++] = id;
}

/* The prompt as one user turn (after the job's system prompt, if any),
 * opening the assistant's reply. */
static int encode_turn(rlaif_tokenizer *tok, const rlaif_chat *chat, const char *prompt,
                       rlaif_tokens *out) {
    rlaif_chat_msg m = {"user", prompt};
    return rlaif_chat_encode(chat, tok, &m, 1, 1, out);
}

/* A chat prompt over max ids loses the start of the user's text, never the
 * template's frame: the shortest cut (at a UTF-8 character) that fits,
 * by bisection over the character starts. */
static int fit_turn(rlaif_tokenizer *tok, const rlaif_chat *chat, const char *prompt, size_t max,
                    rlaif_tokens *p) {
    size_t len = strlen(prompt), nc = 0, *at = xmalloc(sizeof(size_t) * (len + 1));
    for (size_t i = 0; i <= len; i++)
        if (i == len || ((unsigned char)prompt[i] & 0xC0) != 0x80) at[nc++] = i;
    size_t lo = 0, hi = nc - 1; /* cut at at[lo] does not fit; at[hi] (all cut) is tried last */
    int rc = 0;
    while (!rc && hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        p->n = 0;
        rc = encode_turn(tok, chat, prompt + at[mid], p);
        if (!rc) *(p->n <= max ? &hi : &lo) = mid;
    }
    p->n = 0;
    if (!rc) rc = encode_turn(tok, chat, prompt + at[hi], p);
    free(at);
    if (!rc && p->n > max)
        rc = RLAIF_ERROR(RLAIF_EX_USAGE, "raise data.max_prompt_len or shorten model.system_prompt",
                         "the chat template's frame alone is %zu tokens, more than "
                         "data.max_prompt_len = %zu",
                         p->n, max);
    return rc;
}

int rlaif_format_prompt(rlaif_tokenizer *tok, const rlaif_chat *chat, const char *prompt,
                        long max_prompt_len, rlaif_tokens *out) {
    rlaif_tokens p = {0};
    size_t max = (size_t)max_prompt_len;
    int rc = encode_turn(tok, chat, prompt, &p);
    /* plain text (no template, no system prompt): keep the end of a long
     * prompt, which is what the response follows */
    int plain = !chat || (chat->form == RLAIF_CHAT_NONE && !chat->system);
    if (!rc && p.n > max && !plain) rc = fit_turn(tok, chat, prompt, max, &p);
    for (size_t i = p.n > max ? p.n - max : 0; !rc && i < p.n; i++) push_id(out, p.ids[i]);
    rlaif_tokens_free(&p);
    return rc;
}

int rlaif_format_example(rlaif_tokenizer *tok, const rlaif_chat *chat, const char *prompt,
                         const char *response, long max_prompt_len, long max_response_len,
                         rlaif_tokens *out, size_t *n_prompt) {
    size_t start = out->n;
    RLAIF_TRY(rlaif_format_prompt(tok, chat, prompt, max_prompt_len, out));
    *n_prompt = out->n - start;
    size_t before = out->n;
    char *reply = rlaif_chat_reply_text(chat, response);
    int rc = rlaif_tokenizer_encode(tok, reply, strlen(reply), 0, out);
    free(reply);
    RLAIF_TRY(rc);
    int truncated = out->n - before > (size_t)max_response_len;
    if (truncated) out->n = before + (size_t)max_response_len;
    int32_t stop;
    RLAIF_TRY(rlaif_chat_require_stop(chat, tok, &stop));
    /* a cut response has no end: teaching the stop there would teach stopping mid-answer */
    if (!truncated) push_id(out, stop);
    return 0;
}

int rlaif_format_response(const rlaif_tokenizer *tok, const rlaif_chat *chat, const int32_t *ids,
                          size_t n, rlaif_bytes *out) {
    int32_t stop = rlaif_chat_stop_id(chat, tok);
    size_t end = 0, start = out->n;
    while (end < n && ids[end] != stop) end++;
    RLAIF_TRY(rlaif_tokenizer_decode(tok, ids, end, RLAIF_TOK_SKIP_SPECIAL, out));
    rlaif_chat_reply_read(chat, out, start);
    return 0;
}

/* ---- greedy held-out evaluation ---- */

enum { EVAL_BATCH = 64 };

/* An untrained model says anything: show it on one line, escaped, cut. */
static void printable(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            o += (size_t)snprintf(out + o, cap - o, "\\n");
        else if (c < 32 || c >= 127 || c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = 0;
    if (o + 8 >= cap) snprintf(out + cap - 4, 4, "...");
}

/* Problems [lo, hi) greedily; adds to s. */
static int eval_batch(rlaif_model *m, rlaif_tokenizer *tok, const rlaif_chat *chat,
                      const rlaif_task *t, int64_t lo, int64_t hi, long max_prompt_len, int max_new,
                      int nshow, rlaif_task_score *s) {
    int B = (int)(hi - lo);
    rlaif_arith p[EVAL_BATCH];
    rlaif_tokens ids = {0};
    int64_t off[EVAL_BATCH];
    int len[EVAL_BATCH], longest = 0;
    uint32_t seq[EVAL_BATCH];
    for (int b = 0; b < B; b++) {
        char q[96];
        rlaif_task_heldout(t, lo + b, &p[b]);
        rlaif_task_prompt(&p[b], q, sizeof q);
        off[b] = (int64_t)ids.n;
        int rc = rlaif_format_prompt(tok, chat, q, max_prompt_len, &ids);
        if (rc) return rlaif_tokens_free(&ids), rc;
        len[b] = (int)(ids.n - (size_t)off[b]);
        if (len[b] > longest) longest = len[b];
        seq[b] = (uint32_t)(lo + b);
    }
    rlaif_gen_config gc = rlaif_gen_defaults();
    int room = m->cfg.max_seq_len - longest;
    gc.max_new_tokens = max_new < room ? max_new : room;
    gc.eos_id = rlaif_chat_stop_id(chat, tok);
    gc.pad_id = gc.eos_id >= 0 ? gc.eos_id : 0;
    gc.n_valid = (int)rlaif_tokenizer_vocab_size(tok); /* ids the tokenizer can decode */
    rlaif_gen_output go;
    int rc = gc.max_new_tokens < 1
                 ? RLAIF_ERROR(RLAIF_EX_USAGE, "raise model.max_seq_len",
                               "held-out prompts of %d tokens leave no room to answer", longest)
                 : rlaif_generate(m, &gc, B, ids.ids, off, len, seq, &go);
    rlaif_tokens_free(&ids);
    RLAIF_TRY(rc);
    for (int b = 0; b < B && !rc; b++) {
        rlaif_bytes text = {0};
        rc = rlaif_format_response(tok, chat, go.tokens + (size_t)b * go.max_new,
                                   (size_t)go.length[b], &text);
        int fl = rc ? RLAIF_FLAW_WRONG : rlaif_task_flaws(&p[b], text.data ? text.data : "");
        int right = !(fl & RLAIF_FLAW_WRONG), unseen = !rlaif_task_seen(t, &p[b]);
        s->n++, s->correct += right, s->unseen += unseen, s->unseen_right += unseen && right;
        s->rude += !!(fl & RLAIF_FLAW_RUDE), s->ramble += !!(fl & RLAIF_FLAW_RAMBLE);
        s->offtopic += !!(fl & RLAIF_FLAW_OFFTOPIC);
        if (lo + b < nshow) {
            char q[96], shown[48];
            rlaif_task_prompt(&p[b], q, sizeof q);
            printable(text.data ? text.data : "", text.n, shown, sizeof shown);
            rlaif_info("  %s -> \"%s\" (%s, answer %ld%s)", q, shown, right ? "right" : "wrong",
                       p[b].answer, unseen ? "" : ", seen in training");
        }
        rlaif_bytes_free(&text);
    }
    rlaif_gen_output_free(&go);
    return rc;
}

int rlaif_task_eval(rlaif_model *m, rlaif_tokenizer *tok, const rlaif_chat *chat,
                    const rlaif_task *t, int64_t n, long max_prompt_len, int max_new, int nshow,
                    MPI_Comm comm, rlaif_task_score *out) {
    int rank, size;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    RLAIF_CHECK_MPI(MPI_Comm_size(comm, &size));
    size_t lo, hi;
    rlaif_shard_range((size_t)n, size, rank, &lo, &hi);
    rlaif_task_score s = {0};
    int rc = 0;
    for (size_t i = lo; i < hi && !rc; i += EVAL_BATCH) {
        size_t e = i + EVAL_BATCH < hi ? i + EVAL_BATCH : hi;
        rc = eval_batch(m, tok, chat, t, (int64_t)i, (int64_t)e, max_prompt_len, max_new,
                        rank == 0 ? nshow : 0, &s);
    }
    RLAIF_TRY(rlaif_agree(comm, rc));
    int64_t mine[7] = {s.n, s.correct, s.unseen, s.unseen_right, s.rude, s.ramble, s.offtopic};
    int64_t all[7];
    RLAIF_CHECK_MPI(MPI_Allreduce(mine, all, 7, MPI_INT64_T, MPI_SUM, comm));
    *out = (rlaif_task_score){all[0], all[1], all[2], all[3], all[4], all[5], all[6]};
    return 0;
}
