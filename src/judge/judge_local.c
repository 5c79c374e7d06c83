/* judge_local.c - judge.backend = local: the feedback LLM is an rlaif
 * checkpoint run by rlaif's own engine on the judge rank.
 *
 * A call's rendered messages go through the judge model's chat template to
 * token ids (logprob mode: plus the reply prefix that makes the next token
 * the label). Calls queue here; one batch of up to judge.local_batch runs at
 * a time, and each rlaif_local_slice does a bounded piece of it: one prefill
 * chunk of about judge.local_slice_tokens tokens, or one decoding step of the
 * whole batch. So the rank comes back to its poll loop (and to the stops the
 * pump agrees across ranks) within one slice. When the batch ends, its
 * answers go back to judge.c, which journals them like paid HTTP answers. */
#include "judge_impl.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/memory.h"
#include "rlaif/engine/gemm_choice.h"
#include "rlaif/engine/model_io.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rlaif_local {
    char *path;
    rlaif_model m;
    rlaif_tokenizer *tok;
    rlaif_chat chat;
    rlaif_judge_mode mode;
    int32_t stop_id;     /* end of the assistant turn (or the tokenizer's EOS) */
    int32_t stop_id2;    /* the tokenizer's EOS when the turn ends otherwise (-1: none):
                          * a model may end its reply either way */
    int batch, nvalid;   /* judge.local_batch; ids the sampler may pick */
    int context;         /* positions a call may use: judge.local_context, at most the model's */
    long slice;          /* judge.local_slice_tokens: the most tokens per prefill chunk */
    double slice_time;   /* judge.local_slice_time: a chunk's target seconds */
    int share_min;       /* judge.local_share_min: a batch's common prefix computed once */
    rlaif_gen_keep keep; /* the last batch's common prefix, for the next (generate.h) */
    int max_tokens;
    float temperature;
    uint64_t seed;
    uint64_t ident[2]; /* model identity: digest of config and weights */
    rlaif_tokens prefix;
    int32_t label[2][4]; /* logprob mode: the single-token variants of A and of B */
    int nlabel[2];
    rlaif_local_queue q;
    /* the running batch */
    rlaif_gen_run *run;
    call **rows;
    int nrows;
    double started;
    long generations;      /* calls this rank ran through the model */
    rlaif_gen_timing time; /* of the batches that ended */
};

/* ------------------------------------------------------------- queue */

void rlaif_local_queue_push(rlaif_local_queue *q, call *c) {
    c->next = NULL;
    if (q->tail)
        q->tail->next = c;
    else
        q->head = c;
    q->tail = c;
    q->n++;
}

int rlaif_local_queue_take(rlaif_local_queue *q, int max, call **out) {
    int n = 0;
    while (q->head && n < max) {
        out[n++] = q->head;
        q->head = q->head->next;
        q->n--;
    }
    if (!q->head) q->tail = NULL;
    return n;
}

/* ---------------------------------------------------------- identity */

/* 128 bits over the config and every weight, 8 bytes a step (two
 * multiply-xorshift lanes): a few hundred ms per GB, once at open. The
 * same weights anywhere (a copied checkpoint) are the same judge; weights
 * retrained in place are another. */
static void model_identity(const rlaif_model *m, uint64_t out[2]) {
    uint64_t a = rlaif_hash64(&m->cfg, sizeof m->cfg, 0x6c6f63616cULL), b = ~a;
    const unsigned char *p = (const unsigned char *)m->params;
    size_t n = (size_t)m->table.total * sizeof(float), i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        a = (a ^ w) * 0x9e3779b97f4a7c15ULL, a ^= a >> 29;
        b = (b ^ w) * 0xc2b2ae3d27d4eb4fULL, b ^= b >> 31;
    }
    out[0] = rlaif_hash64(p + i, n - i, a), out[1] = rlaif_hash64(p + i, n - i, b);
}

/* ------------------------------------------------------------ open */

/* Bytes of a model's weights in precision prec: the fp32 block, and in
 * bf16 its bf16 copy beside it (rlaif_model_set_precision). */
static double weight_bytes(double params, int prec) {
    return params * (prec == RLAIF_PREC_BF16 ? 6 : 4);
}

/* Bytes the judge needs in precision prec: weights (and their bf16 copy in
 * bf16), a KV cache for a full batch at the model's context (and two rows
 * more: a shared prefix is prefilled in its own cache while the last
 * batch's is kept, generate.c), the activations of one prefill chunk (a
 * generous per-token bound: the residual stream, q|k|v, attention and MLP
 * buffers), the prefill's attention score blocks (one per busy thread: a
 * row's new queries x the context) and the sampler's scratch. */
static double need_bytes(const rlaif_model_config *c, int batch, int context, long slice,
                         double params, int prec) {
    double kv = (double)rlaif_kv_cache_bytes(c, batch + 2, context, prec);
    double acts = (double)slice * (16.0 * c->n_embd + 4.0 * c->n_inner) * 4;
    double threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (threads > (double)batch * c->n_kv_head) threads = (double)batch * c->n_kv_head;
    double scores = threads * (double)(slice < context ? slice : context) * context * 4;
    double samp = 3.0 * batch * c->vocab_size * 4;
    return weight_bytes(params, prec) + kv + acts + scores + samp;
}

static int check_memory(const rlaif_model_config *c, int batch, int context, long slice) {
    rlaif_model_config f = *c;
    rlaif_model_config_fill(&f);
    rlaif_tensor_table tt;
    rlaif_model_table(&f, &tt);
    /* the judge's model runs in the job's model.precision (the default
     * every model is created with); the packed copy of its weights, when
     * the product table chose the packed path for its decoding or its
     * prefill (rlaif_model_decode_prepare) */
    int prec = rlaif_model_default_precision();
    double pack = (double)rlaif_model_decode_pack_bytes(&f, prec, batch);
    double need = need_bytes(&f, batch, context, slice, (double)tt.total, prec) + pack;
    rlaif_tensors_free(&tt);
    rlaif_mem_budget mb;
    rlaif_mem_budget_get(rlaif_ranks_on_node(), &mb);
    if (need <= mb.bytes) return 0;
    char hint[256];
    snprintf(hint, sizeof hint,
             "use a smaller judge model, a smaller judge.local_batch, fewer ranks per node%s, or "
             "a node with more memory (it would swap, not run)",
             pack > 0 ? ", model.gemm = smallm (decoding without the packed copy)" : "");
    return RLAIF_ERROR(RLAIF_EX_USAGE, hint,
                       "the model needs %.3f GB (weights %.3f GB + their copy packed for decoding "
                       "%.3f GB + KV cache of %d x %d positions + activations) but this rank may "
                       "use %.3f GB (%s)",
                       need / 1e9, weight_bytes((double)tt.total, prec) / 1e9, pack / 1e9, batch,
                       context, mb.bytes / 1e9, mb.why);
}

/* Single-token variants of each label: with the prefix ending in ':', " A"
 * is one token in byte-level BPE and SentencePiece vocabularies; where it is
 * not (a byte tokenizer), the prefix ends with the space and "A" follows. */
static int setup_labels(rlaif_local *L) {
    static const char *const var[2][4] = {{" A", " a", "A", "a"}, {" B", " b", "B", "b"}};
    int spaced = rlaif_tokenizer_lookup(L->tok, " A", 2) >= 0 &&
                 rlaif_tokenizer_lookup(L->tok, " B", 2) >= 0;
    const char *prefix = spaced ? RLAIF_JUDGE_DECISION : RLAIF_JUDGE_DECISION " ";
    RLAIF_TRY(rlaif_tokenizer_encode(L->tok, prefix, strlen(prefix), 0, &L->prefix));
    for (int k = 0; k < 2; k++)
        for (int v = spaced ? 0 : 2; v < 4; v++) {
            int32_t id = rlaif_tokenizer_lookup(L->tok, var[k][v], strlen(var[k][v]));
            if (id >= 0 && id < L->nvalid) L->label[k][L->nlabel[k]++] = id;
        }
    if (!L->nlabel[0] || !L->nlabel[1])
        return RLAIF_ERROR(RLAIF_EX_USAGE, "use judge.mode = verdict with this model",
                           "its tokenizer has no single token for A or B (logprob mode "
                           "reads their probabilities)");
    return 0;
}

static int local_setup(rlaif_local *L, const rlaif_config *cfg) {
    rlaif_model_config mc;
    RLAIF_TRY(rlaif_ckpt_read_config(L->path, &mc));
    if (L->context > mc.max_seq_len) L->context = mc.max_seq_len;
    RLAIF_TRY(check_memory(&mc, L->batch, L->context, L->slice));
    hid_t f = H5Fopen(L->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int has_tok = f >= 0 && H5Lexists(f, "tokenizer", H5P_DEFAULT) > 0;
    if (f >= 0) H5Fclose(f);
    if (!has_tok)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                           "import the model with tools/user/hf-to-rlaif (it stores the "
                           "tokenizer), or save the judge from an rlaif job",
                           "no /tokenizer group: the judge cannot read its own prompts");
    RLAIF_TRY(rlaif_tokenizer_load_file(&L->tok, L->path));
    const char *form = rlaif_cfg_str(cfg, "judge.chat_template");
    if (!strcmp(form, "model")) form = rlaif_cfg_str(cfg, "model.chat_template");
    RLAIF_TRY(rlaif_chat_for_checkpoint(&L->chat, form, L->path));
    RLAIF_TRY(rlaif_chat_require_stop(&L->chat, L->tok, &L->stop_id));
    L->stop_id2 = rlaif_tokenizer_eos(L->tok);
    if (L->stop_id2 == L->stop_id) L->stop_id2 = -1;
    RLAIF_TRY(rlaif_model_load(L->path, &L->m));
    L->m.frozen = 1; /* read-only: packs its weights once (model.h), at load */
    rlaif_model_decode_prepare(&L->m, L->batch);
    L->nvalid = rlaif_tokenizer_vocab_size(L->tok);
    if (L->nvalid > L->m.cfg.vocab_size) L->nvalid = L->m.cfg.vocab_size;
    model_identity(&L->m, L->ident);
    if (L->mode == RLAIF_JM_LOGPROB) RLAIF_TRY(setup_labels(L));
    rlaif_debug("judge: local model %s (%s, %d layers, %d x %d, context %d) identity "
                "%016llx%016llx, chat template %s",
                L->path, rlaif_arch_name(L->m.cfg.arch), L->m.cfg.n_layer, L->m.cfg.n_embd,
                L->m.cfg.vocab_size, L->m.cfg.max_seq_len, (unsigned long long)L->ident[0],
                (unsigned long long)L->ident[1], rlaif_chat_form_name(L->chat.form));
    return 0;
}

int rlaif_local_open(rlaif_local **out, const rlaif_config *cfg, const char *path,
                     rlaif_judge_mode mode) {
    *out = NULL;
    if (!path || !*path)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "set judge.model = /path/to/checkpoint.h5 (or local:/path in "
                           "judge.ensemble)",
                           "judge: the local backend needs a checkpoint");
    rlaif_local *L = xcalloc(1, sizeof *L);
    L->path = xstrdup(path), L->mode = mode;
    L->batch = (int)rlaif_cfg_int(cfg, "judge.local_batch");
    L->context = (int)rlaif_cfg_int(cfg, "judge.local_context");
    L->slice = rlaif_cfg_int(cfg, "judge.local_slice_tokens");
    L->slice_time = rlaif_cfg_float(cfg, "judge.local_slice_time");
    L->share_min = (int)rlaif_cfg_int(cfg, "judge.local_share_min");
    L->max_tokens = (int)rlaif_cfg_int(cfg, "judge.max_tokens");
    L->temperature = (float)rlaif_cfg_float(cfg, "judge.temperature");
    L->seed = (uint64_t)rlaif_cfg_int(cfg, "judge.seed");
    L->rows = xcalloc((size_t)L->batch, sizeof *L->rows);
    int rc = local_setup(L, cfg);
    if (rc) {
        rlaif_local_close(L, NULL);
        return rlaif_error_context("judge.model %s: ", path);
    }
    *out = L;
    return 0;
}

void rlaif_local_close(rlaif_local *L, void (*drop)(call *c)) {
    if (!L) return;
    for (int r = 0; r < L->nrows && drop; r++)
        if (L->rows[r]) drop(L->rows[r]);
    for (call *c = L->q.head, *n; c && drop; c = n) n = c->next, drop(c);
    rlaif_gen_run_free(L->run);
    rlaif_gen_keep_free(&L->keep);
    if (L->m.params) rlaif_model_free(&L->m);
    rlaif_tokenizer_free(L->tok);
    rlaif_chat_free(&L->chat);
    rlaif_tokens_free(&L->prefix);
    free(L->rows), free(L->path), free(L);
}

long rlaif_local_generations(const rlaif_local *L) {
    return L->generations;
}

const rlaif_gen_timing *rlaif_local_timing(const rlaif_local *L) {
    return &L->time;
}

/* ------------------------------------------------------------- calls */

int rlaif_local_encode(rlaif_local *L, const rlaif_judge_messages *m, call *c, char *why,
                       size_t n) {
    rlaif_tokens t = {0};
    int rc = rlaif_judge_messages_encode(m, &L->chat, L->tok, &t);
    if (rc) return rlaif_tokens_free(&t), rc;
    if (L->mode == RLAIF_JM_LOGPROB) { /* the reply's prefix, then the label is next */
        size_t need = t.n + L->prefix.n;
        if (need > t.cap) t.ids = xrealloc(t.ids, need * sizeof *t.ids), t.cap = need;
        memcpy(t.ids + t.n, L->prefix.ids, L->prefix.n * sizeof *t.ids);
        t.n = need;
    }
    c->ids = t.ids, c->nids = (int)t.n;
    int reply = L->mode == RLAIF_JM_LOGPROB ? 0 : L->max_tokens;
    if ((long)t.n + reply > L->context) {
        snprintf(why, n,
                 "the rendered prompt is %zu tokens + %d for the reply; the local judge runs "
                 "%d positions (judge.local_context, at most the model's %d): shorten the "
                 "texts or the template, or raise judge.local_context",
                 t.n, reply, L->context, L->m.cfg.max_seq_len);
        return -1;
    }
    return 0;
}

void rlaif_local_key(const rlaif_local *L, const call *c, int order, char key[33]) {
    /* identity, then what changes the answer: mode, sampling, order */
    char tag[160];
    int sampled = L->temperature > 0;
    snprintf(tag, sizeof tag, "local-v1|%016llx%016llx|m%d|t%.9g|n%d|s%llu|o%d",
             (unsigned long long)L->ident[0], (unsigned long long)L->ident[1], (int)L->mode,
             (double)L->temperature, L->mode == RLAIF_JM_LOGPROB ? 0 : L->max_tokens,
             sampled ? (unsigned long long)L->seed : 0ULL, order);
    uint64_t h0 = rlaif_hash64(tag, strlen(tag), 17);
    size_t nb = (size_t)c->nids * sizeof *c->ids;
    uint64_t k1 = rlaif_hash64(c->ids, nb, h0), k2 = rlaif_hash64(c->ids, nb, ~h0);
    snprintf(key, 33, "%016llx%016llx", (unsigned long long)k1, (unsigned long long)k2);
}

void rlaif_local_submit(rlaif_local *L, call *c) {
    rlaif_local_queue_push(&L->q, c);
}

int rlaif_local_busy(const rlaif_local *L) {
    return L->run != NULL || L->q.n > 0;
}

/* ------------------------------------------------------------ slices */

static int start_batch(rlaif_local *L) {
    L->nrows = rlaif_local_queue_take(&L->q, L->batch, L->rows);
    int B = L->nrows;
    int64_t *off = xmalloc(sizeof(int64_t) * (size_t)B);
    int *len = xmalloc(sizeof(int) * (size_t)B), total = 0;
    uint32_t *seq = xmalloc(sizeof(uint32_t) * (size_t)B);
    for (int b = 0; b < B; b++) off[b] = total, len[b] = L->rows[b]->nids, total += len[b];
    int *ids = xmalloc(sizeof(int) * (size_t)(total + 1));
    for (int b = 0; b < B; b++) {
        memcpy(ids + off[b], L->rows[b]->ids, sizeof(int) * (size_t)len[b]);
        /* the sampling stream of a call: a function of its key alone */
        seq[b] = (uint32_t)strtoull(L->rows[b]->key + 24, NULL, 16);
    }
    rlaif_gen_config gc = rlaif_gen_defaults();
    gc.max_new_tokens = L->mode == RLAIF_JM_LOGPROB ? 0 : L->max_tokens;
    gc.temperature = L->temperature, gc.eos_id = L->stop_id, gc.eos_id2 = L->stop_id2;
    gc.pad_id = 0;
    gc.seed = L->seed, gc.n_valid = L->nvalid, gc.share_min = L->share_min;
    gc.keep = &L->keep;
    int rc = rlaif_gen_begin(&L->run, &L->m, &gc, B, ids, off, len, seq);
    free(off), free(len), free(seq), free(ids);
    L->started = rlaif_now();
    return rc;
}

/* log p of the label variants from one row of logits, in double: the same
 * fields the HTTP logprob path fills (P(A) among A/B, their coverage). */
static void label_probs(const rlaif_local *L, const float *lg, double *p_a, double *coverage) {
    double mx = -INFINITY, z = 0, mass[2] = {0, 0};
    for (int v = 0; v < L->nvalid; v++) mx = lg[v] > mx ? lg[v] : mx;
    for (int v = 0; v < L->nvalid; v++) z += exp((double)lg[v] - mx);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < L->nlabel[k]; i++) mass[k] += exp((double)lg[L->label[k][i]] - mx) / z;
    *coverage = mass[0] + mass[1];
    *p_a = *coverage > 0 ? mass[0] / *coverage : NAN;
}

/* The raw record of a local answer: the ids the model read and wrote. */
static char *raw_ids(const call *c, const int *out, int nout) {
    size_t cap = 64 + 12 * ((size_t)c->nids + (size_t)nout), n = 0;
    char *s = xmalloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{\"prompt_ids\":[");
    for (int i = 0; i < c->nids; i++)
        n += (size_t)snprintf(s + n, cap - n, "%s%d", i ? "," : "", c->ids[i]);
    n += (size_t)snprintf(s + n, cap - n, "],\"output_ids\":[");
    for (int i = 0; i < nout; i++)
        n += (size_t)snprintf(s + n, cap - n, "%s%d", i ? "," : "", out[i]);
    snprintf(s + n, cap - n, "]}");
    return s;
}

/* Row b's answer as a journal entry (text and raw malloc'd). */
static int row_answer(rlaif_local *L, int b, rlaif_journal_entry *e, char **raw) {
    call *c = L->rows[b];
    *e = (rlaif_journal_entry){.status = RLAIF_JS_OK, .label = NAN, .p_a = NAN, .coverage = NAN};
    e->tokens_in = c->nids;
    if (L->mode == RLAIF_JM_LOGPROB) {
        const float *lg = rlaif_gen_logits(L->run) + (size_t)b * L->m.cfg.vocab_size;
        label_probs(L, lg, &e->p_a, &e->coverage);
        e->label = e->p_a;
        e->tokens_out = 1;
        char t[64];
        snprintf(t, sizeof t, "%s %s", RLAIF_JUDGE_DECISION, e->p_a >= 0.5 ? "A" : "B");
        e->text = xstrdup(t);
        *raw = raw_ids(c, NULL, 0);
        return 0;
    }
    const rlaif_gen_output *o = rlaif_gen_result(L->run);
    const int *gen = o->tokens + (size_t)b * o->max_new;
    int n = o->length[b];
    int ended =
        n > 0 && (gen[n - 1] == L->stop_id || (L->stop_id2 >= 0 && gen[n - 1] == L->stop_id2));
    rlaif_bytes text = {0};
    rlaif_bytes_append(&text, "", 0);
    int rc = rlaif_tokenizer_decode(L->tok, gen, (size_t)(ended ? n - 1 : n),
                                    RLAIF_TOK_SKIP_SPECIAL, &text);
    if (rc) return rlaif_bytes_free(&text), rc;
    rlaif_chat_reply_read(&L->chat, &text, 0);
    e->text = text.data, e->tokens_out = n;
    if (!ended && n >= L->max_tokens) e->status = RLAIF_JS_LENGTH;
    rlaif_judge_parsed pr;
    rlaif_judge_parse(e->text, L->mode, &pr);
    e->label = L->mode == RLAIF_JM_SCORE ? pr.score : pr.verdict >= 0 ? 1.0 - pr.verdict : NAN;
    *raw = raw_ids(c, gen, n);
    return 0;
}

/* Prompt tokens for the next prefill chunk: as many as take about
 * judge.local_slice_time at the prefill rate measured so far (the finished
 * batches and the running one), at most judge.local_slice_tokens; 256 until
 * a rate is known. Large chunks amortise the products' packing of the
 * weights (GPT-2 124M on one core: 1024-token chunks prefilled 30-40%
 * faster than 256), small ones answer a stop sooner on a slow machine. */
static long chunk_tokens(const rlaif_local *L) {
    rlaif_gen_timing t = L->time;
    rlaif_gen_add_timing(L->run, &t);
    long n = L->slice < 256 ? L->slice : 256;
    if (t.prefill_s > 0 && t.prefill_tokens > 0) { /* after the first chunk */
        double rate = (double)t.prefill_tokens / t.prefill_s;
        n = (long)(rate * L->slice_time);
        if (n > L->slice) n = L->slice;
        if (n < 1) n = 1;
    }
    return n;
}

int rlaif_local_slice(rlaif_local *L, rlaif_local_answer_fn fn, void *ctx) {
    if (!L->run && !L->q.n) return 0;
    if (!L->run) RLAIF_TRY(start_batch(L));
    int finished = 0;
    RLAIF_TRY(rlaif_gen_advance(L->run, chunk_tokens(L), &finished));
    if (!finished) return 0;
    rlaif_debug("judge: local batch of %d calls in %.3f s", L->nrows, rlaif_now() - L->started);
    for (int b = 0; b < L->nrows; b++) {
        rlaif_journal_entry e;
        char *raw = NULL;
        RLAIF_TRY(row_answer(L, b, &e, &raw));
        L->generations++;
        int rc = fn(ctx, L->rows[b], &e, raw); /* fn owns the call once it returns 0 */
        free(e.text), free(raw);
        RLAIF_TRY(rc);
        L->rows[b] = NULL;
    }
    rlaif_gen_add_timing(L->run, &L->time);
    rlaif_gen_run_free(L->run);
    L->run = NULL, L->nrows = 0;
    return 0;
}
