/* dpo.c - `rlaif dpo`: preference pairs -> reference log-probs (once) ->
 * the learner loop with the DPO loss on the policy's sequence log-probs
 * (dpo.h has the definitions). */
#include "rlaif/phases/dpo.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/h5util.h"
#include "rlaif/core/log.h"
#include "rlaif/core/rng.h"
#include "rlaif/phases/task.h"
#include "rlaif/core/tensors.h"
#include "rlaif/phases/train.h"

#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the loss ---- */

double rlaif_dpo_pair_loss(const rlaif_dpo_loss *lf, double h, double p, double *dh) {
    if (lf->kind == RLAIF_DPO_IPO) {
        /* p (h - c)^2 + (1 - p) (h + c)^2: minimum at h = (2p - 1) c */
        double c = 1 / (2 * lf->beta);
        *dh = 2 * (h - (2 * p - 1) * c);
        return p * (h - c) * (h - c) + (1 - p) * (h + c) * (h + c);
    }
    /* p l(h) + (1 - p) l(-h) with cdpo's l = a soft cross-entropy with target
     * q = p (1 - e) + (1 - p) e (sigmoid: e = 0) */
    double e = lf->kind == RLAIF_DPO_CDPO ? lf->eps : 0;
    double q = p * (1 - e) + (1 - p) * e, z = lf->beta * h;
    /* d/dz = s(z) - q, written so that neither term cancels for large |z| */
    *dh = lf->beta * ((1 - q) * rlaif_sigmoid(z) - q * rlaif_sigmoid(-z));
    return -(q * rlaif_log_sigmoid(z) + (1 - q) * rlaif_log_sigmoid(-z));
}

/* ---- forward and backward of a micro-batch ---- */

void rlaif_dpo_buf_init(rlaif_dpo_buf *b, int max_pairs, int T) {
    size_t rows = 2 * (size_t)max_pairs, bt = rows * (size_t)T;
    rlaif_lp_init(&b->pass, 2 * max_pairs, T);
    b->rows = xmalloc(sizeof(int64_t) * rows);
    b->dlogp = xmalloc(sizeof(float) * bt);
    b->lp = xmalloc(sizeof(double) * rows);
    b->max_pairs = max_pairs, b->T = T;
}

void rlaif_dpo_buf_free(rlaif_dpo_buf *b) {
    rlaif_lp_free(&b->pass);
    free(b->rows), free(b->dlogp), free(b->lp);
    memset(b, 0, sizeof *b);
}

int rlaif_dpo_seq_logps(rlaif_model *m, const rlaif_pairs *d, const int64_t *idx, int B,
                        rlaif_dpo_buf *buf, double *ntok) {
    if (B > buf->max_pairs)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "dpo: micro-batch of %d pairs > buffer %d", B,
                           buf->max_pairs);
    /* rows 2b (A) and 2b+1 (B) of pair idx[b]; log-probs of the response + EOS */
    for (int r = 0; r < 2 * B; r++) buf->rows[r] = 2 * idx[r / 2] + r % 2;
    rlaif_seqs s = {d->tok, d->off, d->plen};
    RLAIF_TRY(rlaif_lp_forward(m, &buf->pass, &s, buf->rows, 2 * B, RLAIF_LP_LOGP, ntok));
    /* log pi(y | x) = sum over the response + EOS targets */
    for (int r = 0; r < 2 * B; r++) buf->lp[r] = rlaif_lp_seq_logp(&buf->pass, r);
    return 0;
}

/* Metrics of one decided pair from its chosen (c) and rejected (r) sides. */
static void pair_metrics(double beta, double lpc, double refc, double lpr, double refr,
                         rlaif_dpo_sums *s) {
    double rc = beta * (lpc - refc), rr = beta * (lpr - refr);
    s->decided += 1, s->correct += rc > rr;
    s->chosen += rc, s->rejected += rr;
    s->logp_chosen += lpc, s->logp_rejected += lpr;
}

int rlaif_dpo_micro(rlaif_model *m, const rlaif_pairs *d, const double *ref, const int64_t *idx,
                    int B, double N, const rlaif_dpo_loss *lf, int backward, rlaif_dpo_buf *buf,
                    rlaif_dpo_sums *s) {
    RLAIF_TRY(rlaif_dpo_seq_logps(m, d, idx, B, buf, &s->tokens));
    int T = buf->pass.T;
    for (int b = 0; b < B; b++) {
        int64_t i = idx[b];
        double la = buf->lp[2 * b], lb = buf->lp[2 * b + 1], ra = ref[2 * i], rb = ref[2 * i + 1];
        double p = d->label[i], dh, h = (la - ra) - (lb - rb);
        s->loss += rlaif_dpo_pair_loss(lf, h, p, &dh) / N;
        if (p > 0.5) pair_metrics(lf->beta, la, ra, lb, rb, s);
        if (p < 0.5) pair_metrics(lf->beta, lb, rb, la, ra, s);
        /* d loss / d logp of every response token (the pass masks the
         * prompt and the padding): dh/N for A, -dh/N for B */
        float ga = (float)(dh / N), gb = (float)(-dh / N);
        for (int t = 0; t < T; t++) {
            buf->dlogp[2 * b * T + t] = ga;
            buf->dlogp[(2 * b + 1) * T + t] = gb;
        }
    }
    return backward ? rlaif_lp_backward(m, &buf->pass, buf->dlogp, NULL, NULL) : 0;
}

/* ---- the phase ---- */

typedef struct {
    rlaif_pairs data;
    rlaif_pair_stream st; /* split and shuffled training stream */
    double *ref;          /* [2 data.n] log ref of A and B of every pair */
    rlaif_dpo_loss lf;
    rlaif_dpo_buf buf;
    rlaif_model *model;   /* the learner's policy */
    rlaif_pair_pass pass; /* dpo_micro on the run */
    rlaif_dpo_sums sums;  /* of the last batch */
    const char *from;     /* the policy and reference it starts from */
    /* results of the last validation and greedy task evaluation */
    double eval_loss, eval_acc, eval_margin, task_acc;
    int have_eval, have_task;
} dpo_run;

/* rlaif_pair_pass.micro of the run (sums: an rlaif_dpo_sums). */
static int dpo_micro(void *ud, const int64_t *ex, int B, double N, int train, double *sums) {
    dpo_run *S = ud;
    return rlaif_dpo_micro(S->model, &S->data, S->ref, ex, B, N, &S->lf, train, &S->buf,
                           (rlaif_dpo_sums *)sums);
}
_Static_assert(offsetof(rlaif_dpo_sums, loss) == 0 &&
                   offsetof(rlaif_dpo_sums, tokens) == sizeof(rlaif_dpo_sums) - sizeof(double),
               "rlaif_pair_pass: the loss is the first of the sums, the tokens the last");

/* The loop's extra columns of a forward's sums: parts of global means over
 * nd decided pairs (summed over learners by the loop). */
static void sums_to_extra(const rlaif_dpo_sums *s, double nd, double *x) {
    x[0] = s->chosen / nd, x[1] = s->rejected / nd, x[2] = s->correct / nd;
    x[3] = (s->chosen - s->rejected) / nd;
    x[4] = s->logp_chosen / nd, x[5] = s->logp_rejected / nd;
}

static int dpo_batch(rlaif_learner *L, void *ud, rlaif_batch_stats *st) {
    dpo_run *S = ud;
    double nd;
    int rc = rlaif_pair_batch(L, &S->st, S->data.label, &S->pass, (double *)&S->sums, st, &nd);
    sums_to_extra(&S->sums, nd, st->extra);
    st->extra[6] = L->rank == 0 ? (double)S->st.pos / (double)S->st.ntrain : 0;
    return rc;
}

static const char *const extra_names[] = {"rewards/chosen",
                                          "rewards/rejected",
                                          "rewards/accuracies",
                                          "rewards/margins",
                                          "logps/chosen",
                                          "logps/rejected",
                                          "epoch"};
static const char *const eval_names[] = {
    "loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "pairs"};

/* Collective: validation on the held-out pairs -> metrics /dpo_eval at L->step. */
static int validate(rlaif_learner *L, dpo_run *S) {
    if (S->st.neval == 0) return 0;
    rlaif_dpo_sums all;
    RLAIF_TRY(rlaif_pair_forward_all(L, S->st.eval, S->st.neval, &S->pass, (double *)&all));
    double x[6], nd = all.decided > 0 ? all.decided : 1;
    sums_to_extra(&all, nd, x);
    double row[6] = {all.loss, x[0], x[1], x[2], x[3], (double)S->st.neval};
    S->eval_loss = all.loss, S->eval_acc = x[2], S->eval_margin = x[3], S->have_eval = 1;
    rlaif_info("dpo: validation at step %ld: loss %.4f, preference accuracy %.1f%% (%.0f decided "
               "of %lld held-out pairs), reward margin %.4f",
               L->step, all.loss, 100 * x[2], all.decided, (long long)S->st.neval, x[3]);
    return rlaif_agree(L->comm, rlaif_metrics_log(L->metrics, "dpo_eval", L->step, row));
}

/* Greedy held-out accuracy of the arithmetic task (when it is the data):
 * DPO must not wreck what SFT taught. */
static int task_eval(rlaif_learner *L, dpo_run *S, const char *when) {
    const rlaif_config *cfg = L->cfg;
    int64_t n = rlaif_cfg_int(cfg, "dpo.eval_prompts");
    if (n <= 0 || strcmp(rlaif_cfg_str(cfg, "data.task"), "arithmetic")) return 0;
    rlaif_task t;
    RLAIF_TRY(rlaif_task_from_cfg(&t, cfg));
    rlaif_task_score s;
    int rc = rlaif_task_eval(&L->model, L->tok, &L->chat, &t, n,
                             rlaif_cfg_int(cfg, "data.max_prompt_len"),
                             (int)rlaif_cfg_int(cfg, "data.max_response_len") + 1, 0, L->comm, &s);
    rlaif_task_free(&t);
    RLAIF_TRY(rc);
    S->task_acc = (double)s.correct / (double)s.n, S->have_task = 1;
    rlaif_info("dpo: held-out greedy task accuracy %s: %.1f%% (%lld/%lld)", when,
               100.0 * S->task_acc, (long long)s.correct, (long long)s.n);
    return 0;
}

static int dpo_before_save(rlaif_learner *L, void *ud, int done) {
    dpo_run *S = ud;
    RLAIF_TRY(validate(L, S));
    return done ? task_eval(L, S, "after DPO") : 0;
}

static void dpo_save(const rlaif_learner *L, void *ud, rlaif_kvset *state) {
    (void)L;
    const dpo_run *S = ud;
    rlaif_pair_phase_save(&S->st, S->have_eval, S->eval_loss, S->eval_acc, state);
    if (S->have_eval) rlaif_kv_set_double(state, "eval_margin", S->eval_margin);
    if (S->have_task) rlaif_kv_set_double(state, "task_accuracy", S->task_acc);
}

static int dpo_load(rlaif_learner *L, void *ud, const rlaif_kvset *state) {
    (void)L;
    dpo_run *S = ud;
    return rlaif_pair_stream_load(&S->st, state);
}

/* ---- reference log-probs ---- */

/* FNV-1a 64 of the pairs as tokenized: the reference file belongs to them. */
static uint64_t data_hash(const rlaif_pairs *d) {
    uint64_t h = 1469598103934665603ULL;
    const struct {
        const void *p;
        size_t n;
    } parts[] = {{&d->n, sizeof d->n},
                 {d->tok, sizeof(int32_t) * (size_t)d->off[2 * d->n]},
                 {d->off, sizeof(int64_t) * (size_t)(2 * d->n + 1)},
                 {d->plen, sizeof(int32_t) * (size_t)(2 * d->n)},
                 {d->label, sizeof(float) * (size_t)d->n},
                 {d->heldout, (size_t)d->n}};
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
        for (size_t i = 0; i < parts[k].n; i++)
            h = (h ^ ((const unsigned char *)parts[k].p)[i]) * 1099511628211ULL;
    return h;
}

/* Collective: log ref of every response, each learner its share of the
 * pairs, gathered into S->ref on every learner. */
static int compute_ref(rlaif_learner *L, dpo_run *S) {
    int64_t n = S->data.n;
    int *counts = xmalloc(sizeof(int) * (size_t)L->size),
        *displs = xmalloc(sizeof(int) * (size_t)L->size);
    for (int r = 0; r < L->size; r++) {
        size_t b, e;
        rlaif_shard_range((size_t)n, L->size, r, &b, &e);
        counts[r] = (int)(2 * (e - b)), displs[r] = (int)(2 * b);
    }
    long lo, hi;
    rlaif_learner_share(L, (long)n, &lo, &hi);
    int64_t *idx = xmalloc(sizeof(int64_t) * (size_t)(hi - lo + 1));
    for (long j = lo; j < hi; j++) idx[j - lo] = j;
    double ntok = 0;
    int rc = 0;
    for (long j = lo; j < hi && !rc; j += L->micro_batch) {
        int B = (int)(hi - j < L->micro_batch ? hi - j : L->micro_batch);
        rc = rlaif_dpo_seq_logps(&L->model, &S->data, idx + (j - lo), B, &S->buf, &ntok);
        if (!rc) memcpy(S->ref + 2 * j, S->buf.lp, sizeof(double) * 2 * (size_t)B);
    }
    free(idx);
    rc = rlaif_agree(L->comm, rc);
    if (!rc) {
        int e = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, S->ref, counts, displs,
                               MPI_DOUBLE, L->comm);
        if (e != MPI_SUCCESS) rc = rlaif_error_mpi(e, "MPI_Allgatherv", __FILE__, __LINE__);
    }
    free(counts), free(displs);
    return rc;
}

/* fsync path, so the renamed file is on disk before training relies on it. */
static int sync_file(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rlaif_error_sys(RLAIF_EX_IOERR, "open", path, __FILE__, __LINE__);
    int bad = fsync(fd) != 0;
    int rc = bad ? rlaif_error_sys(RLAIF_EX_IOERR, "fsync", path, __FILE__, __LINE__) : 0;
    close(fd);
    return rc;
}

/* Rank 0: the reference log-probs to path (tmp, fsynced, then renamed into place). */
static int ref_write(const char *path, const dpo_run *S, uint64_t hash, const char *from) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return rlaif_error_h5("H5Fcreate", __FILE__, __LINE__, "check the checkpoint folder"),
               rlaif_error_context("dpo: writing %s: ", tmp);
    hsize_t dims[2] = {(hsize_t)S->data.n, 2};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(f, "logps", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = ds < 0 || H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, S->ref) < 0
                 ? rlaif_error_h5("H5Dwrite", __FILE__, __LINE__, "check the disk space")
                 : 0;
    if (!rc) rc = rlaif_h5_attr_i64(f, "n_pairs", S->data.n);
    if (!rc) rc = rlaif_h5_attr_i64(f, "data_hash", (int64_t)hash);
    if (!rc) rc = rlaif_h5_attr_str(f, "start_model", from);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    if (H5Fclose(f) < 0 && !rc) rc = rlaif_error_h5("H5Fclose", __FILE__, __LINE__, NULL);
    if (!rc) rc = sync_file(tmp);
    if (rc) rlaif_error_context("dpo: writing %s: ", tmp);
    return rlaif_h5_commit_tmp(tmp, path, rc, MPI_COMM_SELF);
}

/* Rank 0: the reference log-probs of path, which must belong to these pairs. */
static int ref_read(const char *path, dpo_run *S, uint64_t hash) {
    const char *hint = "the file is written when dpo starts: remove the dpo-*.h5 checkpoints "
                       "to start the phase over";
    if (access(path, R_OK) != 0)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, hint,
                           "dpo: resuming needs the reference log-probs '%s', which is missing",
                           path);
    hid_t f;
    RLAIF_TRY(rlaif_h5_open_serial(path, 0, &f));
    int64_t n = -1, h = 0;
    int rc = rlaif_h5_get_attr_i64(f, "n_pairs", &n);
    if (!rc) rc = rlaif_h5_get_attr_i64(f, "data_hash", &h);
    if (!rc && (n != S->data.n || (uint64_t)h != hash))
        rc = RLAIF_ERROR(RLAIF_EX_USAGE, hint,
                         "dpo: the reference log-probs '%s' belong to other pairs (%lld pairs, "
                         "data hash %016llx; now %lld pairs, %016llx): the preferences or "
                         "[data] changed since the phase started",
                         path, (long long)n, (unsigned long long)h, (long long)S->data.n,
                         (unsigned long long)hash);
    if (!rc) {
        hid_t ds = H5Dopen2(f, "logps", H5P_DEFAULT);
        if (ds < 0 || H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, S->ref) < 0)
            rc = rlaif_error_h5("H5Dread", __FILE__, __LINE__, hint),
            rlaif_error_context("dpo: %s: ", path);
        if (ds >= 0) H5Dclose(ds);
    }
    rlaif_h5_close_file(&f);
    return rc;
}

/* Collective: S->ref computed (fresh start, written to the file) or read
 * (resume), on every learner. */
static int reference_logps(rlaif_learner *L, dpo_run *S, int resumed, const char *from) {
    char path[4200];
    snprintf(path, sizeof path, "%s/dpo_ref_logps.h5", L->ckpt_dir);
    uint64_t hash = data_hash(&S->data);
    if (resumed) {
        RLAIF_TRY(rlaif_agree(L->comm, L->rank == 0 ? ref_read(path, S, hash) : 0));
        RLAIF_CHECK_MPI(MPI_Bcast(S->ref, (int)(2 * S->data.n), MPI_DOUBLE, 0, L->comm));
        rlaif_info("dpo: reference log-probs of %lld pairs read from %s", (long long)S->data.n,
                   path);
        return 0;
    }
    double t0 = rlaif_now();
    RLAIF_TRY(compute_ref(L, S));
    /* the checkpoint folder is otherwise made by the first checkpoint */
    int rc = L->rank == 0 ? rlaif_mkdir_p(L->ckpt_dir) : 0;
    if (!rc && L->rank == 0) rc = ref_write(path, S, hash, from);
    RLAIF_TRY(rlaif_agree(L->comm, rc));
    rlaif_info("dpo: reference log-probs of %lld pairs (%lld responses) computed in %.1f s on %d "
               "learner(s), stored in %s",
               (long long)S->data.n, (long long)(2 * S->data.n), rlaif_now() - t0, L->size, path);
    return 0;
}

/* ---- command ---- */

/* dpo.loss, dpo.beta and dpo.label_smoothing, checked together. */
static int loss_from_cfg(const rlaif_config *cfg, rlaif_dpo_loss *lf) {
    const char *kind = rlaif_cfg_str(cfg, "dpo.loss");
    lf->kind = !strcmp(kind, "ipo")    ? RLAIF_DPO_IPO
               : !strcmp(kind, "cdpo") ? RLAIF_DPO_CDPO
                                       : RLAIF_DPO_SIGMOID;
    lf->beta = rlaif_cfg_float(cfg, "dpo.beta");
    double e = rlaif_cfg_float(cfg, "dpo.label_smoothing");
    lf->eps = lf->kind == RLAIF_DPO_CDPO ? e : 0;
    if (!(lf->beta > 0))
        return RLAIF_ERROR(RLAIF_EX_USAGE, "the DPO default is dpo.beta = 0.1",
                           "dpo: dpo.beta must be > 0 (got %g)", lf->beta);
    if (e != 0 && lf->kind != RLAIF_DPO_CDPO)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set dpo.loss = cdpo for label smoothing",
                           "dpo: dpo.label_smoothing = %g has no effect with dpo.loss = %s", e,
                           kind);
    if (rlaif_cfg_int(cfg, "dpo.online_batches") != 0)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set dpo.online_batches = 0 for offline DPO",
                           "dpo: dpo.online_batches > 0 asks for online DPO, which rlaif dpo "
                           "does not do (rlaif online-dpo is not implemented yet)");
    return 0;
}

/* The policy's (and reference's) start: model.init_from, else the newest
 * finished sft checkpoint. */
static int model_source(const rlaif_config *cfg, char *path, size_t n, rlaif_model_source *src) {
    memset(src, 0, sizeof *src);
    if (*rlaif_cfg_str(cfg, "model.init_from")) {
        snprintf(path, n, "%s", rlaif_cfg_str(cfg, "model.init_from"));
        return 0;
    }
    char dir[4096];
    int found, ns;
    RLAIF_TRY(rlaif_find_sft_model(cfg, "dpo", path, n, dir, sizeof dir, &found, &ns));
    if (found) {
        src->init_from = path;
        return 0;
    }
    return rlaif_no_sft_model(
        "dpo",
        "run rlaif sft first, or set model.init_from = a checkpoint (DPO needs a "
        "trained policy: it is also the reference)",
        dir, ns);
}

/* Split the pairs; the run's buffers. */
static int setup_run(rlaif_learner *L, dpo_run *S) {
    const rlaif_pairs *d = &S->data;
    RLAIF_TRY(
        rlaif_pair_stream_init(&S->st, d, (uint64_t)rlaif_cfg_int(L->cfg, "run.seed"), "dpo"));
    S->ref = xmalloc(sizeof(double) * (size_t)(2 * d->n));
    S->pass = (rlaif_pair_pass){dpo_micro, S, (int)(sizeof S->sums / sizeof(double))};
    rlaif_dpo_buf_init(&S->buf, (int)L->micro_batch, L->model.cfg.max_seq_len);
    return 0;
}

static int dpo_prepare(rlaif_learner *L, void *ud, int found) {
    dpo_run *S = ud;
    if (!found) rlaif_info("dpo: starting from %s (policy and reference)", S->from);
    rlaif_info("dpo: %lld training pairs, %lld held out; loss %s, beta %g%s; %ld steps of %ld "
               "pairs on %d learner(s), micro-batch %ld pairs, %zu parameters",
               (long long)S->st.ntrain, (long long)S->st.neval, rlaif_cfg_str(L->cfg, "dpo.loss"),
               S->lf.beta, S->lf.kind == RLAIF_DPO_CDPO ? ", label smoothing" : "", L->steps,
               L->batch_size, L->size, L->micro_batch, L->model.table.total);
    RLAIF_TRY(reference_logps(L, S, found, S->from));
    if (found) return 0;
    RLAIF_TRY(task_eval(L, S, "before DPO"));
    return validate(L, S);
}

static int run_phase(rlaif_learner *L, dpo_run *S, long stop_after) {
    const rlaif_phase ph = {"dpo", 7, extra_names, dpo_batch, dpo_save, dpo_load, S};
    return rlaif_pair_phase_run(L, &ph, 6, eval_names, "the final policy", dpo_prepare,
                                dpo_before_save, stop_after);
}

static void run_free(dpo_run *S) {
    rlaif_pair_stream_free(&S->st);
    free(S->ref);
    rlaif_dpo_buf_free(&S->buf);
    rlaif_pairs_free(&S->data);
}

int rlaif_cmd_dpo(rlaif_ctx *ctx) {
    long stop_after;
    MPI_Comm comm;
    RLAIF_TRY(rlaif_learner_phase_enter(ctx, "dpo", &stop_after, &comm));
    if (comm == MPI_COMM_NULL) return 0; /* no part in offline DPO */
    dpo_run S;
    memset(&S, 0, sizeof S);
    char from[4096];
    rlaif_model_source src;
    int rc = rlaif_agree(comm, loss_from_cfg(ctx->cfg, &S.lf));
    if (!rc) rc = rlaif_agree(comm, model_source(ctx->cfg, from, sizeof from, &src));
    rlaif_learner L;
    memset(&L, 0, sizeof L);
    if (!rc) rc = rlaif_learner_init_model(&L, ctx->cfg, comm, "dpo", &src);
    if (!rc) rc = rlaif_pairs_load_all(&S.data, &L, "dpo");
    if (!rc) rc = rlaif_agree(L.comm, setup_run(&L, &S));
    S.from = from, S.model = &L.model;
    if (!rc) rc = run_phase(&L, &S, stop_after);
    run_free(&S);
    rlaif_learner_free(&L);
    return rc;
}
