/* model.c - GPT-2 forward and backward on the CPU (see model.h).
 *
 * Layout conventions: activations are row-major (B*T rows of C floats);
 * weights keep Hugging Face's Conv1D layout [in, out], so a linear layer is
 * out = inp @ W + b with no transposes, and its backward is two sgemms
 * (dinp = dout @ W^T, dW += inp^T @ dout).
 *
 * Products with at most RLAIF_SMALLM_MAX rows (decoding a batch) go through
 * the packing-free kernels of model_gemm.c instead of sgemm.
 *
 * Threads: one OpenMP team does everything. Elementwise kernels split rows;
 * a matrix product is split into one single-threaded sgemm per thread (along
 * the larger output dimension; a linear layer's backward does its dinp rows
 * and dW/db columns in one region); attention runs one (batch, head) per
 * thread.
 * OpenBLAS's own thread pool is set to 1 thread when the team is larger:
 * two pools that spin-wait for work (OpenMP's and OpenBLAS's) on the same
 * cores slow each other down several times (measured: tiny model 90 ms ->
 * 900 ms per step with both at 2 threads). */
#include "config.h"
#include "rlaif/engine/model.h"
#include "rlaif/core/error.h"
#include "rlaif/core/rng.h"
#include "model_gemm.h"

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
/* Hot elementwise row kernels get an AVX-512 clone next to the baseline
 * (SSE2) one, picked at load time (ifunc): the build has no -march, and the
 * baseline is 4 floats wide. -std=c11 keeps FP contraction off, so each
 * clone computes the same operations per element. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SIMD_CLONES __attribute__((target_clones("avx512f", "default")))
#else
#define SIMD_CLONES
#endif
/* Elementwise loops smaller than this run on one thread: waking the OpenMP
 * team costs more than the work (decoding one token, the tiny test model). */
#define PAR_MIN ((size_t)1 << 15)

static int team_size(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ------------------------------------------------------------------ tables */

int rlaif_gpt2_config_check(const rlaif_gpt2_config *c) {
    if (c->n_layer < 1 || c->n_embd < 1 || c->n_head < 1 || c->vocab_size < 1 || c->max_seq_len < 1)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "every model size must be positive",
                           "bad model config: n_layer %d n_embd %d n_head %d vocab %d maxT %d",
                           c->n_layer, c->n_embd, c->n_head, c->vocab_size, c->max_seq_len);
    if (c->n_embd % c->n_head)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "choose n_head dividing n_embd",
                           "n_head %d does not divide n_embd %d", c->n_head, c->n_embd);
    return 0;
}

void rlaif_gpt2_table(const rlaif_gpt2_config *cfg, rlaif_tensor_table *tt) {
    int64_t C = cfg->n_embd, V = cfg->vocab_size, T = cfg->max_seq_len;
    char name[RLAIF_TENSOR_NAME_MAX];
    memset(tt, 0, sizeof *tt);
    rlaif_tensors_add(tt, "wte.weight", 2, (int64_t[]){V, C});
    rlaif_tensors_add(tt, "wpe.weight", 2, (int64_t[]){T, C});
    for (int l = 0; l < cfg->n_layer; l++) {
#define ADD(suffix, nd, ...)                                                                       \
    snprintf(name, sizeof name, "h.%d.%s", l, suffix);                                             \
    rlaif_tensors_add(tt, name, nd, (int64_t[]){__VA_ARGS__})
        ADD("ln_1.weight", 1, C);
        ADD("ln_1.bias", 1, C);
        ADD("attn.c_attn.weight", 2, C, 3 * C);
        ADD("attn.c_attn.bias", 1, 3 * C);
        ADD("attn.c_proj.weight", 2, C, C);
        ADD("attn.c_proj.bias", 1, C);
        ADD("ln_2.weight", 1, C);
        ADD("ln_2.bias", 1, C);
        ADD("mlp.c_fc.weight", 2, C, 4 * C);
        ADD("mlp.c_fc.bias", 1, 4 * C);
        ADD("mlp.c_proj.weight", 2, 4 * C, C);
        ADD("mlp.c_proj.bias", 1, C);
#undef ADD
    }
    rlaif_tensors_add(tt, "ln_f.weight", 1, (int64_t[]){C});
    rlaif_tensors_add(tt, "ln_f.bias", 1, (int64_t[]){C});
    if (cfg->score_head) {
        rlaif_tensors_add(tt, "score.weight", 2, (int64_t[]){1, C});
        rlaif_tensors_add(tt, "score.bias", 1, (int64_t[]){1});
    }
}

void rlaif_gpt2_point(const rlaif_gpt2_config *cfg, float *base, rlaif_gpt2_weights *w) {
    /* Same order as rlaif_gpt2_table: walk the sizes. */
    size_t C = (size_t)cfg->n_embd;
    float *p = base;
    w->wte = p, p += (size_t)cfg->vocab_size * C;
    w->wpe = p, p += (size_t)cfg->max_seq_len * C;
    for (int l = 0; l < cfg->n_layer; l++) {
        rlaif_gpt2_layer *h = &w->h[l];
        h->ln_1_w = p, p += C;
        h->ln_1_b = p, p += C;
        h->c_attn_w = p, p += 3 * C * C;
        h->c_attn_b = p, p += 3 * C;
        h->attn_proj_w = p, p += C * C;
        h->attn_proj_b = p, p += C;
        h->ln_2_w = p, p += C;
        h->ln_2_b = p, p += C;
        h->c_fc_w = p, p += 4 * C * C;
        h->c_fc_b = p, p += 4 * C;
        h->mlp_proj_w = p, p += 4 * C * C;
        h->mlp_proj_b = p, p += C;
    }
    w->ln_f_w = p, p += C;
    w->ln_f_b = p, p += C;
    w->score_w = cfg->score_head ? p : NULL;
    w->score_b = cfg->score_head ? p + C : NULL;
}

/* ------------------------------------------------------------- activations */

struct rlaif_acts {
    size_t cap; /* floats allocated */
    float *mem;
    int has_grad_scratch;
    float *encoded;                      /* (BT, C) */
    float *ln1, *ln1_mean, *ln1_rstd;    /* (L, BT, C), (L, BT) */
    float *qkv;                          /* (L, BT, 3C) */
    float *atty;                         /* (L, BT, C) attention output before c_proj */
    float *att;                          /* (L, B, NH, T, T) attention probabilities */
    float *res2;                         /* (L, BT, C) residual after attention */
    float *ln2, *ln2_mean, *ln2_rstd;    /* (L, BT, C), (L, BT) */
    float *fch, *fch_gelu;               /* (L, BT, 4C) */
    float *res3;                         /* (L, BT, C) residual after the MLP */
    float *lnf, *lnf_mean, *lnf_rstd;    /* (BT, C), (BT) */
    float *logits;                       /* (BT, V) */
    float *lse, *logp, *entropy, *score; /* (BT) */
    float *dres, *dsmall, *dbig, *datt;  /* backward scratch: (BT,C) x2, (BT,4C), (B,NH,T,T) */
    float *xt;   /* (4C, RLAIF_SMALLM_MAX) for rlaif_smallm_gemm when BT <= RLAIF_SMALLM_MAX */
    size_t icap; /* ints allocated */
    int *imem, *tokens, *pos, *targets; /* (BT) each: inputs kept for backward */
    int has_pos, has_targets;
};

/* Carves the activations for (B,T) out of one block (grown when too small). */
static void acts_carve(rlaif_model *m, int B, int T, int with_grad) {
    rlaif_acts *a = m->acts;
    size_t L = (size_t)m->cfg.n_layer, C = (size_t)m->cfg.n_embd, NH = (size_t)m->cfg.n_head;
    size_t V = (size_t)m->cfg.vocab_size, BT = (size_t)B * (size_t)T;
    size_t att = (size_t)B * NH * (size_t)T * (size_t)T;
    size_t need = BT * C + L * (BT * C * 5 + BT * 4 + BT * 3 * C + att + BT * 8 * C) + BT * C +
                  2 * BT + BT * V + 4 * BT;
    size_t grad = 2 * BT * C + 4 * BT * C + att;
    if (with_grad) need += grad;
    size_t xt = BT <= RLAIF_SMALLM_MAX ? 4 * C * RLAIF_SMALLM_MAX : 0;
    need += xt;
    if (need > a->cap) {
        free(a->mem);
        a->mem = xmalloc(need * sizeof(float));
        a->cap = need;
    }
    float *p = a->mem;
#define TAKE(field, n) a->field = p, p += (n)
    TAKE(encoded, BT * C);
    TAKE(ln1, L * BT * C);
    TAKE(ln1_mean, L * BT);
    TAKE(ln1_rstd, L * BT);
    TAKE(qkv, L * BT * 3 * C);
    TAKE(atty, L * BT * C);
    TAKE(att, L * att);
    TAKE(res2, L * BT * C);
    TAKE(ln2, L * BT * C);
    TAKE(ln2_mean, L * BT);
    TAKE(ln2_rstd, L * BT);
    TAKE(fch, L * BT * 4 * C);
    TAKE(fch_gelu, L * BT * 4 * C);
    TAKE(res3, L * BT * C);
    TAKE(lnf, BT * C);
    TAKE(lnf_mean, BT);
    TAKE(lnf_rstd, BT);
    TAKE(logits, BT * V);
    TAKE(lse, BT);
    TAKE(logp, BT);
    TAKE(entropy, BT);
    TAKE(score, BT);
    TAKE(xt, xt);
    if (!xt) a->xt = NULL;
    if (with_grad) {
        TAKE(dres, BT * C);
        TAKE(dsmall, BT * C);
        TAKE(dbig, BT * 4 * C);
        TAKE(datt, att);
    } else {
        a->dres = a->dsmall = a->dbig = a->datt = NULL;
    }
#undef TAKE
    a->has_grad_scratch = with_grad;
    if (3 * BT > a->icap) {
        free(a->imem);
        a->imem = xmalloc(3 * BT * sizeof(int));
        a->icap = 3 * BT;
    }
    a->tokens = a->imem, a->pos = a->imem + BT, a->targets = a->imem + 2 * BT;
    a->has_pos = a->has_targets = 0;
    m->B = B, m->T = T;
    m->logits = a->logits, m->logp = a->logp, m->entropy = a->entropy, m->score = a->score;
}

size_t rlaif_model_act_bytes(const rlaif_model *m) {
    return m->acts ? m->acts->cap * sizeof(float) : 0;
}

/* ------------------------------------------------------------------ create */

/* The rank's thread budget is decided where ranks are set up (core/ranks.c:
 * affinity mask, ranks sharing the node, SLURM_CPUS_PER_TASK,
 * OMP_NUM_THREADS); the engine only applies it, and stays MPI-free. */
void rlaif_model_set_threads(int team, int blas) {
#ifdef _OPENMP
    if (team > 0) omp_set_num_threads(team);
#else
    (void)team;
#endif
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    if (blas > 0) openblas_set_num_threads(team_size() > 1 ? 1 : blas);
#else
    (void)blas;
#endif
}

int rlaif_model_create(rlaif_model *m, const rlaif_gpt2_config *cfg) {
    memset(m, 0, sizeof *m);
    RLAIF_TRY(rlaif_gpt2_config_check(cfg));
    m->cfg = *cfg;
    m->logit_scale = 1.0f;
    rlaif_gpt2_table(cfg, &m->table);
    m->params = xcalloc(m->table.total, sizeof(float));
    m->w.h = xcalloc((size_t)cfg->n_layer, sizeof(rlaif_gpt2_layer));
    m->g.h = xcalloc((size_t)cfg->n_layer, sizeof(rlaif_gpt2_layer));
    rlaif_gpt2_point(cfg, m->params, &m->w);
    m->acts = xcalloc(1, sizeof(rlaif_acts));
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
    if (team_size() > 1) openblas_set_num_threads(1); /* see the top of this file */
#endif
    return 0;
}

void rlaif_model_free(rlaif_model *m) {
    if (m->acts) free(m->acts->mem), free(m->acts->imem);
    free(m->acts);
    free(m->params);
    free(m->grads);
    free(m->w.h);
    free(m->g.h);
    rlaif_tensors_free(&m->table);
    memset(m, 0, sizeof *m);
}

void rlaif_model_alloc_grads(rlaif_model *m) {
    if (m->grads) return;
    m->grads = xcalloc(m->table.total, sizeof(float));
    rlaif_gpt2_point(&m->cfg, m->grads, &m->g);
}

void rlaif_model_zero_grad(rlaif_model *m) {
    if (m->grads) memset(m->grads, 0, m->table.total * sizeof(float));
}

void rlaif_model_init_random(rlaif_model *m, uint64_t seed, float std) {
    const size_t chunk = 1 << 16;
    float proj_std = std / sqrtf(2.0f * (float)m->cfg.n_layer);
    for (int i = 0; i < m->table.n; i++) {
        const rlaif_tensor_desc *d = &m->table.t[i];
        float *p = m->params + d->offset;
        const char *suffix = strrchr(d->name, '.');
        int is_bias = !strcmp(suffix, ".bias"), is_ln = strstr(d->name, "ln_") != NULL;
        if (is_bias) {
            memset(p, 0, d->numel * sizeof(float));
        } else if (is_ln) {
            for (size_t j = 0; j < d->numel; j++) p[j] = 1.0f;
        } else {
            float s = strstr(d->name, "c_proj.weight") ? proj_std : std;
            long nchunks = (long)((d->numel + chunk - 1) / chunk);
#pragma omp parallel for schedule(static)
            for (long c = 0; c < nchunks; c++) {
                rlaif_rng r;
                rlaif_rng_init(&r, seed, RLAIF_STREAM_INIT, (uint32_t)c, (uint32_t)i);
                size_t end =
                    (size_t)(c + 1) * chunk < d->numel ? (size_t)(c + 1) * chunk : d->numel;
                /* Box-Muller in float, both values used (init of GPT-2 124M: ~1 s) */
                for (size_t j = (size_t)c * chunk; j < end; j += 2) {
                    float u1 = 1.0f - rlaif_rng_uniform(&r), u2 = rlaif_rng_uniform(&r);
                    float rad = sqrtf(-2.0f * logf(u1)), sn, cs;
                    sincosf(6.28318530717958648f * u2, &sn, &cs);
                    p[j] = s * rad * cs;
                    if (j + 1 < end) p[j + 1] = s * rad * sn;
                }
            }
        }
    }
}

/* ------------------------------------------------------ threaded products */

/* Row-major C (M,N) = alpha op(A) op(B) + beta C, the larger of M and N split
 * over the OpenMP team, one single-threaded sgemm per thread. */
static void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    int nt = team_size();
    if (nt == 1 || 2.0 * M * N * K < 2e6) {
        cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int split_m = M >= N, D = split_m ? M : N;
    int chunk = ((D + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; t++) {
        int d0 = t * chunk, d1 = d0 + chunk < D ? d0 + chunk : D;
        if (d0 >= d1) continue;
        if (split_m)
            cblas_sgemm(CblasRowMajor, TA, TB, d1 - d0, N, K, alpha,
                        ta ? A + d0 : A + (size_t)d0 * lda, lda, B, ldb, beta, C + (size_t)d0 * ldc,
                        ldc);
        else
            cblas_sgemm(CblasRowMajor, TA, TB, M, d1 - d0, K, alpha, A, lda,
                        tb ? B + (size_t)d0 * ldb : B + d0, ldb, beta, C + d0, ldc);
    }
}

/* Row-major y = alpha op(A) x + beta y, A (M, N); output entries split over the
 * team. A matrix-vector product reads every weight once: bandwidth bound. */
static void gemv(int ta, int M, int N, const float *A, int lda, const float *x, float beta,
                 float *y) {
    int nt = team_size();
    if (nt == 1 || (size_t)M * N < ((size_t)1 << 16)) {
        cblas_sgemv(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, M, N, 1.0f, A, lda, x, 1, beta,
                    y, 1);
        return;
    }
    /* Each thread streams one contiguous block of rows of A: for y = A^T x
     * that gives partial sums (added up below), for y = A x whole outputs. */
    int chunk = ((M + nt - 1) / nt + 15) / 16 * 16;
    float *part = ta ? xmalloc(sizeof(float) * (size_t)nt * N) : NULL;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; t++) {
        int m0 = t * chunk, m1 = m0 + chunk < M ? m0 + chunk : M;
        if (ta && m0 >= m1) memset(part + (size_t)t * N, 0, sizeof(float) * (size_t)N);
        if (m0 >= m1) continue;
        if (ta)
            cblas_sgemv(CblasRowMajor, CblasTrans, m1 - m0, N, 1.0f, A + (size_t)m0 * lda, lda,
                        x + m0, 1, 0.0f, part + (size_t)t * N, 1);
        else
            cblas_sgemv(CblasRowMajor, CblasNoTrans, m1 - m0, N, 1.0f, A + (size_t)m0 * lda, lda, x,
                        1, beta, y + m0, 1);
    }
    if (ta) {
        for (int j = 0; j < N; j++) {
            float s = beta != 0.0f ? beta * y[j] : 0.0f;
            for (int t = 0; t < nt; t++) s += part[(size_t)t * N + j];
            y[j] = s;
        }
        free(part);
    }
}

/* ----------------------------------------------------------------- kernels */

/* out (N, C) = wte[tokens] + wpe[pos] */
static void encoder_forward(float *out, const int *tokens, const int *pos, const float *wte,
                            const float *wpe, int B, int T, int C) {
#pragma omp parallel for schedule(static) if ((size_t)B * T * C >= PAR_MIN)
    for (int bt = 0; bt < B * T; bt++) {
        const float *we = wte + (size_t)tokens[bt] * C;
        const float *pe = wpe + (size_t)(pos ? pos[bt] : bt % T) * C;
        float *o = out + (size_t)bt * C;
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
    }
}

/* dwte[tokens] += dout, dwpe[pos] += dout (serial: tokens repeat). */
static void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tokens,
                             const int *pos, int B, int T, int C) {
    for (int bt = 0; bt < B * T; bt++) {
        float *dwe = dwte + (size_t)tokens[bt] * C;
        float *dpe = dwpe + (size_t)(pos ? pos[bt] : bt % T) * C;
        const float *d = dout + (size_t)bt * C;
#pragma omp simd
        for (int c = 0; c < C; c++) dwe[c] += d[c], dpe[c] += d[c];
    }
}

/* One row of LayerNorm: o = (x - mean) * rstd * w + b; returns mean, rstd. */
SIMD_CLONES static void layernorm_row(float *o, const float *x, const float *w, const float *b,
                                      int C, float *mean, float *rstd) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < C; c++) s += x[c];
    float mu = s / (float)C, v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (int c = 0; c < C; c++) v += (x[c] - mu) * (x[c] - mu);
    float rs = 1.0f / sqrtf(v / (float)C + RLAIF_LN_EPS);
#pragma omp simd
    for (int c = 0; c < C; c++) o[c] = (x[c] - mu) * rs * w[c] + b[c];
    *mean = mu, *rstd = rs;
}

/* out (N, C) = (inp - mean) * rstd * w + b per row; keeps mean and rstd (N). */
static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        float mu, rs;
        layernorm_row(out + (size_t)n * C, inp + (size_t)n * C, w, b, C, &mu, &rs);
        if (mean) mean[n] = mu, rstd[n] = rs;
    }
}

/* One row of LayerNorm backward: di += (w d - mean(w d) - norm mean(w d norm)) rstd. */
SIMD_CLONES static void layernorm_row_backward(float *di, const float *d, const float *x,
                                               const float *w, float mu, float rs, int C) {
    float dmean = 0.0f, dnorm_mean = 0.0f;
#pragma omp simd reduction(+ : dmean, dnorm_mean)
    for (int c = 0; c < C; c++) {
        float norm = (x[c] - mu) * rs, dn = w[c] * d[c];
        dmean += dn;
        dnorm_mean += dn * norm;
    }
    dmean /= (float)C, dnorm_mean /= (float)C;
#pragma omp simd
    for (int c = 0; c < C; c++) {
        float norm = (x[c] - mu) * rs;
        di[c] += (w[c] * d[c] - dmean - norm * dnorm_mean) * rs;
    }
}

/* dinp += LayerNorm backward of dout; dw += sum dout*norm, db += sum dout. */
static void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, const float *mean,
                               const float *rstd, int N, int C) {
#pragma omp parallel if ((size_t)N * C >= PAR_MIN)
    {
#pragma omp for schedule(static) nowait
        for (int n = 0; n < N; n++) {
            layernorm_row_backward(dinp + (size_t)n * C, dout + (size_t)n * C, inp + (size_t)n * C,
                                   w, mean[n], rstd[n], C);
        }
        /* Parameter gradients sum over rows: split the columns between threads
         * (independent of dinp: no barrier in between). */
#pragma omp for schedule(static)
        for (int c0 = 0; c0 < C; c0 += 32) {
            int c1 = c0 + 32 < C ? c0 + 32 : C;
            for (int n = 0; n < N; n++) {
                const float *d = dout + (size_t)n * C, *x = inp + (size_t)n * C;
                float mu = mean[n], rs = rstd[n];
#pragma omp simd
                for (int c = c0; c < c1; c++) dw[c] += d[c] * (x[c] - mu) * rs, db[c] += d[c];
            }
        }
    }
}

/* exp(x) for float, vectorisable (no libm call): Cephes' expf, 2^n * p(r)
 * with r = x - n ln2 in [-ln2/2, ln2/2]; relative error about 1e-7. The
 * bit pattern of 2^n is built by hand so the loop stays in SIMD registers. */
static inline float fast_expf(float x) {
    /* clamp to [-87, 88] with integer masks: a float ?: is a branch for GCC
     * (comparisons may trap), which stops vectorisation */
    union {
        float f;
        int32_t i;
    } u = {x}, lo = {-87.0f}, hi = {88.0f};
    int32_t mlo = -(int32_t)(x < -87.0f), mhi = -(int32_t)(x > 88.0f);
    u.i = (u.i & ~(mlo | mhi)) | (lo.i & mlo) | (hi.i & mhi);
    x = u.f;
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (round to nearest even) */
    float fn = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    int n = (int)fn;
    float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = (n + 127) << 23};
    return p * scale.f;
}

/* GELU, tanh approximation (GPT-2's "gelu_new"), written with
 * 0.5 (1 + tanh(u)) = sigmoid(2u) so one exp does it:
 *   gelu(x) = x s,  s = 1 / (1 + exp(-2u)),  u = sqrt(2/pi) (x + 0.044715 x^3). */
SIMD_CLONES static void gelu_span(float *out, const float *inp, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        out[i] = x / (1.0f + fast_expf(-2.0f * u));
    }
}

/* dinp = dout * gelu'(inp) (dinp may alias dout):
 *   gelu' = s + x s (1 - s) 2 du/dx. */
SIMD_CLONES static void gelu_backward_span(float *dinp, const float *inp, const float *dout,
                                           size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_SCALE * (x + 0.044715f * x * x * x);
        float s = 1.0f / (1.0f + fast_expf(-2.0f * u));
        float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] = (s + 2.0f * x * s * (1.0f - s) * du) * dout[i];
    }
}

static void gelu_post(float *out, const float *inp, size_t n) {
    gelu_span(out, inp, n);
}

/* gelu of rows [0, N) x columns [o0, o1) of inp (N, OC) into out. */
static void gelu_block(float *out, const float *inp, int N, int OC, int o0, int o1) {
    for (int n = 0; n < N; n++)
        gelu_span(out + (size_t)n * OC + o0, inp + (size_t)n * OC + o0, (size_t)(o1 - o0));
}

/* Writes bias (+ res) into rows [0, N) x columns [o0, o1) of out (N, OC). */
SIMD_CLONES static void bias_fill(float *out, const float *bias, const float *res, int N, int OC,
                                  int o0, int o1) {
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * OC;
        const float *r = res ? res + (size_t)n * OC : NULL;
        if (r) {
#pragma omp simd
            for (int j = o0; j < o1; j++) o[j] = r[j] + bias[j];
        } else {
#pragma omp simd
            for (int j = o0; j < o1; j++) o[j] = bias[j];
        }
    }
}

/* out (N, OC) = inp (N, IC) @ w (IC, OC) + bias [+ res (N, OC) when res != NULL],
 * and gelu_out = gelu(out) when gelu_out != NULL. Each thread writes the bias
 * (and residual) into its block of columns, adds its product with beta = 1
 * and applies GELU to the block while it is in cache: one parallel region. */
static void matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                           const float *res, int N, int IC, int OC, float *xt, float *gelu_out) {
    int nt = team_size();
    if (N == 1) { /* a matrix-vector product: stream the weights once */
        bias_fill(out, bias, res, 1, OC, 0, OC);
        gemv(1, IC, OC, w, OC, inp, 1.0f, out);
    } else if (xt && N <= RLAIF_SMALLM_MAX) { /* few rows: no packing (model_gemm.h) */
        rlaif_smallm_gemm(0, N, OC, IC, inp, IC, w, OC, bias, res, out, OC,
                          gelu_out ? gelu_post : NULL, gelu_out, xt, nt);
        return;
    } else if (nt == 1 || 2.0 * N * OC * IC < 2e6) {
        bias_fill(out, bias, res, N, OC, 0, OC);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, OC, IC, 1.0f, inp, IC, w, OC,
                    1.0f, out, OC);
    } else {
        int chunk = ((OC + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int t = 0; t < nt; t++) {
            int o0 = t * chunk, o1 = o0 + chunk < OC ? o0 + chunk : OC;
            if (o0 >= o1) continue;
            bias_fill(out, bias, res, N, OC, o0, o1);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, o1 - o0, IC, 1.0f, inp, IC,
                        w + o0, OC, 1.0f, out + o0, OC);
            if (gelu_out) gelu_block(gelu_out, out, N, OC, o0, o1);
        }
        return;
    }
    if (!gelu_out) return;
    size_t n = (size_t)N * OC;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (int t = 0; t < nt; t++) {
        size_t i0 = n * t / nt, i1 = n * (t + 1) / nt;
        gelu_span(gelu_out + i0, out + i0, i1 - i0);
    }
}

/* dinp (N, IC) = dout @ w^T, then dinp *= gelu'(gelu_inp) when gelu_inp != NULL;
 * dw += inp^T @ dout, db += sum dout. One parallel region: each thread takes
 * a block of rows of dinp and a block of columns of dw and db (independent
 * outputs, no barrier in between). */
static void matmul_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, int N, int IC, int OC, const float *gelu_inp) {
    int nt = team_size();
    if (2.0 * N * OC * IC < 2e6) nt = 1;
    int rchunk = (N + nt - 1) / nt, cchunk = ((OC + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        int n0 = t * rchunk, n1 = n0 + rchunk < N ? n0 + rchunk : N;
        if (n0 < n1) {
            float *di = dinp + (size_t)n0 * IC;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n1 - n0, IC, OC, 1.0f,
                        dout + (size_t)n0 * OC, OC, w, OC, 0.0f, di, IC);
            if (gelu_inp)
                gelu_backward_span(di, gelu_inp + (size_t)n0 * IC, di, (size_t)(n1 - n0) * IC);
        }
        int o0 = t * cchunk, o1 = o0 + cchunk < OC ? o0 + cchunk : OC;
        if (o0 < o1) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, IC, o1 - o0, N, 1.0f, inp, IC,
                        dout + o0, OC, 1.0f, dw + o0, OC);
            for (int n = 0; n < N; n++) {
                const float *d = dout + (size_t)n * OC;
#pragma omp simd
                for (int o = o0; o < o1; o++) db[o] += d[o];
            }
        }
    }
}

SIMD_CLONES float rlaif_logsumexp(const float *x, int n, float scale, float *max_out) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int v = 0; v < n; v++) mx = x[v] > mx ? x[v] : mx;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int v = 0; v < n; v++) s += fast_expf((x[v] - mx) * scale);
    if (max_out) *max_out = mx;
    return logf(s);
}

/* Masked causal softmax of one row of scores in place: keys j <= lim that are
 * valid; every other entry becomes 0. A row with no key is all zeros. */
SIMD_CLONES static void softmax_row(float *a, int n, int lim, const uint8_t *valid) {
    float mx = -INFINITY;
    if (valid) {
        for (int j = 0; j <= lim; j++)
            if (valid[j] && a[j] > mx) mx = a[j];
    } else {
#pragma omp simd reduction(max : mx)
        for (int j = 0; j <= lim; j++) mx = a[j] > mx ? a[j] : mx;
    }
    float s = 0.0f;
    if (mx > -INFINITY) {
        if (valid) { /* a pad's exp (finite: fast_expf clamps) times 0 */
#pragma omp simd reduction(+ : s)
            for (int j = 0; j <= lim; j++) {
                float e = fast_expf(a[j] - mx) * (float)(valid[j] != 0);
                a[j] = e;
                s += e;
            }
        } else {
#pragma omp simd reduction(+ : s)
            for (int j = 0; j <= lim; j++) {
                float e = fast_expf(a[j] - mx);
                a[j] = e;
                s += e;
            }
        }
    }
    float inv = s > 0.0f ? 1.0f / s : 0.0f;
#pragma omp simd
    for (int j = 0; j <= lim; j++) a[j] *= inv;
    for (int j = lim + 1; j < n; j++) a[j] = 0.0f;
}

/* Causal self-attention over the whole sequence.
 * qkv (B,T,3C) -> y (B,T,C); att (B,NH,T,T) keeps the probabilities.
 * One (batch, head) per thread: two single-threaded sgemms read q, k, v in
 * place (leading dimension 3C), the masked softmax runs in between. */
static void attention_forward(float *y, float *att, const float *qkv, const uint8_t *valid, int B,
                              int T, int C, int NH) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static) if ((size_t)B * NH * T * T >= PAR_MIN)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        const float *q = qkv + (size_t)b * T * C3 + h * hs;
        float *a = att + (size_t)bh * T * T;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, q + C, C3,
                    0.0f, a, T);
        for (int i = 0; i < T; i++)
            softmax_row(a + (size_t)i * T, T, i, valid ? valid + (size_t)b * T : NULL);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, a, T, q + 2 * C, C3,
                    0.0f, y + (size_t)b * T * C + h * hs, C);
    }
}

/* dqkv (B,T,3C) from dy (B,T,C); datt (B,NH,T,T) is scratch. */
static void attention_backward(float *dqkv, float *datt, const float *dy, const float *qkv,
                               const float *att, int B, int T, int C, int NH) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static) if ((size_t)B * NH * T * T >= PAR_MIN)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        size_t off = (size_t)b * T * C3 + h * hs;
        const float *d = dy + (size_t)b * T * C + h * hs, *p = att + (size_t)bh * T * T;
        float *dp = datt + (size_t)bh * T * T;
        /* dP = dy v^T, dv = P^T dy */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, d, C,
                    qkv + off + 2 * C, C3, 0.0f, dp, T);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, d, C, 0.0f,
                    dqkv + off + 2 * C, C3);
        /* softmax backward: dS = P * (dP - sum_j P dP), times the score scale */
        for (int i = 0; i < T; i++) {
            const float *pi = p + (size_t)i * T;
            float *di = dp + (size_t)i * T, s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int j = 0; j <= i; j++) s += pi[j] * di[j];
#pragma omp simd
            for (int j = 0; j <= i; j++) di[j] = pi[j] * (di[j] - s) * scale;
            for (int j = i + 1; j < T; j++) di[j] = 0.0f;
        }
        /* dq = dS k, dk = dS^T q */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, dp, T, qkv + off + C,
                    C3, 0.0f, dqkv + off, C3);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, dp, T, qkv + off, C3,
                    0.0f, dqkv + off + C, C3);
    }
}

/* ----------------------------------------------------------------- forward */

static int check_inputs(const rlaif_model *m, const int *tokens, const int *pos, int B, int T) {
    if (B < 1 || T < 1)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "forward: bad batch shape %dx%d", B, T);
    for (int i = 0; i < B * T; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
            return RLAIF_ERROR(RLAIF_EX_USAGE, "the tokenizer and model vocabularies must agree",
                               "token %d at index %d is outside the vocabulary [0, %d)", tokens[i],
                               i, m->cfg.vocab_size);
        int p = pos ? pos[i] : i % T;
        if (p < 0 || p >= m->cfg.max_seq_len)
            return RLAIF_ERROR(RLAIF_EX_USAGE, "shorten prompts or max_new_tokens",
                               "position %d at index %d is outside [0, %d) (model max_seq_len)", p,
                               i, m->cfg.max_seq_len);
    }
    return 0;
}

int rlaif_model_forward(rlaif_model *m, const int *tokens, const int *pos, const uint8_t *valid,
                        int B, int T) {
    RLAIF_TRY(check_inputs(m, tokens, pos, B, T));
    acts_carve(m, B, T, m->grads != NULL);
    rlaif_acts *a = m->acts;
    int C = m->cfg.n_embd, NH = m->cfg.n_head, N = B * T;
    memcpy(a->tokens, tokens, sizeof(int) * (size_t)N);
    if (pos) memcpy(a->pos, pos, sizeof(int) * (size_t)N), a->has_pos = 1;
    size_t NC = (size_t)N * C, att = (size_t)B * NH * T * T;
    encoder_forward(a->encoded, tokens, pos, m->w.wte, m->w.wpe, B, T, C);
    const float *res = a->encoded;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const rlaif_gpt2_layer *w = &m->w.h[l];
        float *ln1 = a->ln1 + l * NC, *qkv = a->qkv + 3 * l * NC, *atty = a->atty + l * NC;
        float *res2 = a->res2 + l * NC, *ln2 = a->ln2 + l * NC, *fch = a->fch + 4 * l * NC;
        float *fchg = a->fch_gelu + 4 * l * NC, *res3 = a->res3 + l * NC;
        layernorm_forward(ln1, a->ln1_mean + l * N, a->ln1_rstd + l * N, res, w->ln_1_w, w->ln_1_b,
                          N, C);
        matmul_forward(qkv, ln1, w->c_attn_w, w->c_attn_b, NULL, N, C, 3 * C, a->xt, NULL);
        attention_forward(atty, a->att + l * att, qkv, valid, B, T, C, NH);
        matmul_forward(res2, atty, w->attn_proj_w, w->attn_proj_b, res, N, C, C, a->xt, NULL);
        layernorm_forward(ln2, a->ln2_mean + l * N, a->ln2_rstd + l * N, res2, w->ln_2_w, w->ln_2_b,
                          N, C);
        matmul_forward(fch, ln2, w->c_fc_w, w->c_fc_b, NULL, N, C, 4 * C, a->xt, fchg);
        matmul_forward(res3, fchg, w->mlp_proj_w, w->mlp_proj_b, res2, N, 4 * C, C, a->xt, NULL);
        res = res3;
    }
    layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, res, m->w.ln_f_w, m->w.ln_f_b, N, C);
    return 0;
}

/* Per row of logits: log-sum-exp, entropy and log p(target). */
SIMD_CLONES static void lm_row_stats(const float *l, int V, int target, float *lse, float *ent,
                                     float *logp) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
    float s = 0.0f, sl = 0.0f;
#pragma omp simd reduction(+ : s, sl)
    for (int v = 0; v < V; v++) {
        float e = fast_expf(l[v] - mx);
        s += e;
        sl += e * (l[v] - mx);
    }
    float ls = logf(s);
    *lse = mx + ls;
    *ent = ls - sl / s; /* -sum p log p with log p = l - mx - log s */
    if (logp) *logp = target >= 0 ? l[target] - *lse : 0.0f;
}

int rlaif_model_lm_forward(rlaif_model *m, const int *targets) {
    rlaif_acts *a = m->acts;
    int N = m->B * m->T, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    if (targets)
        for (int i = 0; i < N; i++)
            if (targets[i] >= V)
                return RLAIF_ERROR(RLAIF_EX_USAGE, NULL, "target %d at %d outside vocabulary %d",
                                   targets[i], i, V);
    /* logits (N, V) = lnf (N, C) @ wte^T * logit_scale */
    gemm(0, 1, N, V, C, m->logit_scale, a->lnf, C, m->w.wte, C, 0.0f, a->logits, V);
#pragma omp parallel for schedule(static) if ((size_t)N * V >= PAR_MIN)
    for (int i = 0; i < N; i++)
        lm_row_stats(a->logits + (size_t)i * V, V, targets ? targets[i] : -1, &a->lse[i],
                     &a->entropy[i], targets ? &a->logp[i] : NULL);
    if (targets)
        memcpy(a->targets, targets, sizeof(int) * (size_t)N);
    else
        memset(a->logp, 0, sizeof(float) * (size_t)N);
    a->has_targets = targets != NULL;
    return 0;
}

int rlaif_model_score_forward(rlaif_model *m) {
    if (!m->cfg.score_head)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, "build the model with score_head = 1",
                           "score_forward on a model without a scalar head");
    rlaif_acts *a = m->acts;
    int N = m->B * m->T, C = m->cfg.n_embd;
    for (int i = 0; i < N; i++) {
        const float *x = a->lnf + (size_t)i * C;
        float s = 0.0f;
        for (int c = 0; c < C; c++) s += x[c] * m->w.score_w[c];
        a->score[i] = s + m->w.score_b[0];
    }
    return 0;
}

float rlaif_ce_loss(const rlaif_model *m, const int *targets, const float *mask, float *dlogp) {
    int N = m->B * m->T;
    double num = 0.0, den = 0.0;
    for (int i = 0; i < N; i++) {
        float w = targets[i] < 0 ? 0.0f : (mask ? mask[i] : 1.0f);
        num += (double)w * m->logp[i];
        den += w;
    }
    if (dlogp)
        for (int i = 0; i < N; i++) {
            float w = targets[i] < 0 ? 0.0f : (mask ? mask[i] : 1.0f);
            dlogp[i] = den > 0 ? (float)(-w / den) : 0.0f;
        }
    return den > 0 ? (float)(-num / den) : 0.0f;
}

void rlaif_last_index(const uint8_t *valid, int B, int T, int *last) {
    for (int b = 0; b < B; b++) {
        last[b] = valid ? -1 : T - 1;
        if (valid)
            for (int t = T - 1; t >= 0; t--)
                if (valid[(size_t)b * T + t]) {
                    last[b] = t;
                    break;
                }
    }
}

/* ---------------------------------------------------------------- backward */

/* ---------------------------------------------------------------- backward */

/* logits (N, V) become d(loss)/d(logits) in place:
 *   d/dl_v = dlogp * (1[v = target] - p_v) - dent * p_v * (log p_v + H). */
static void lm_backward_rows(float *logits, const float *lse, const float *ent, const int *targets,
                             const float *dlogp, const float *dent, int N, int V) {
#pragma omp parallel for schedule(static) if ((size_t)N * V >= PAR_MIN)
    for (int i = 0; i < N; i++) {
        float *l = logits + (size_t)i * V;
        /* an ignored target (< 0) has logp = 0, so no gradient through it */
        float dl = dlogp && targets[i] >= 0 ? dlogp[i] : 0.0f, de = dent ? dent[i] : 0.0f;
        if (dl == 0.0f && de == 0.0f) {
            memset(l, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float ls = lse[i], H = ent[i];
#pragma omp simd
        for (int v = 0; v < V; v++) {
            float lp = l[v] - ls, p = fast_expf(lp);
            l[v] = -dl * p - de * p * (lp + H);
        }
        if (targets[i] >= 0) l[targets[i]] += dl;
    }
}

int rlaif_model_backward(rlaif_model *m, const float *dlogp, const float *dentropy,
                         const float *dscore) {
    rlaif_acts *a = m->acts;
    if (!m->grads || !a->has_grad_scratch)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, "call rlaif_model_alloc_grads before forward",
                           "backward without gradient buffers");
    if (dlogp && !a->has_targets)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "backward through logp without targets");
    if (dscore && !m->cfg.score_head)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "dscore on a model without a scalar head");
    int B = m->B, T = m->T, N = B * T, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    int NH = m->cfg.n_head, L = m->cfg.n_layer;
    size_t NC = (size_t)N * C, att = (size_t)B * NH * T * T;
    float *dlnf = a->dsmall, *dres = a->dres;

    /* heads -> dlnf (N, C) */
    if (dlogp || dentropy) {
        lm_backward_rows(a->logits, a->lse, a->entropy, a->targets, dlogp, dentropy, N, V);
        gemm(0, 0, N, C, V, m->logit_scale, a->logits, V, m->w.wte, C, 0.0f, dlnf, C);
        gemm(1, 0, V, C, N, m->logit_scale, a->logits, V, a->lnf, C, 1.0f, m->g.wte, C);
    } else {
        memset(dlnf, 0, sizeof(float) * NC);
    }
    if (dscore)
        for (int i = 0; i < N; i++) {
            float ds = dscore[i], *d = dlnf + (size_t)i * C;
            const float *x = a->lnf + (size_t)i * C;
            for (int c = 0; c < C; c++) d[c] += ds * m->w.score_w[c], m->g.score_w[c] += ds * x[c];
            m->g.score_b[0] += ds;
        }

    memset(dres, 0, sizeof(float) * NC);
    const float *top = a->res3 + (size_t)(L - 1) * NC;
    layernorm_backward(dres, m->g.ln_f_w, m->g.ln_f_b, dlnf, top, m->w.ln_f_w, a->lnf_mean,
                       a->lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        const rlaif_gpt2_layer *w = &m->w.h[l];
        rlaif_gpt2_layer *g = &m->g.h[l];
        const float *res = l == 0 ? a->encoded : a->res3 + (size_t)(l - 1) * NC;
        const float *ln1 = a->ln1 + l * NC, *qkv = a->qkv + 3 * l * NC, *atty = a->atty + l * NC;
        const float *res2 = a->res2 + l * NC, *ln2 = a->ln2 + l * NC;
        const float *fch = a->fch + 4 * l * NC, *fchg = a->fch_gelu + 4 * l * NC;
        /* MLP: res3 = res2 + c_proj(gelu(c_fc(ln_2(res2)))) */
        matmul_backward(a->dbig, g->mlp_proj_w, g->mlp_proj_b, dres, fchg, w->mlp_proj_w, N, 4 * C,
                        C, fch);
        matmul_backward(a->dsmall, g->c_fc_w, g->c_fc_b, a->dbig, ln2, w->c_fc_w, N, C, 4 * C,
                        NULL);
        layernorm_backward(dres, g->ln_2_w, g->ln_2_b, a->dsmall, res2, w->ln_2_w,
                           a->ln2_mean + l * N, a->ln2_rstd + l * N, N, C);
        /* attention: res2 = res + c_proj(attn(c_attn(ln_1(res)))) */
        matmul_backward(a->dsmall, g->attn_proj_w, g->attn_proj_b, dres, atty, w->attn_proj_w, N, C,
                        C, NULL);
        attention_backward(a->dbig, a->datt, a->dsmall, qkv, a->att + l * att, B, T, C, NH);
        matmul_backward(a->dsmall, g->c_attn_w, g->c_attn_b, a->dbig, ln1, w->c_attn_w, N, C, 3 * C,
                        NULL);
        layernorm_backward(dres, g->ln_1_w, g->ln_1_b, a->dsmall, res, w->ln_1_w,
                           a->ln1_mean + l * N, a->ln1_rstd + l * N, N, C);
    }
    encoder_backward(m->g.wte, m->g.wpe, dres, a->tokens, a->has_pos ? a->pos : NULL, B, T, C);
    return 0;
}

/* ------------------------------------------------------ incremental decode */

int rlaif_kv_cache_create(rlaif_kv_cache *kv, const rlaif_gpt2_config *cfg, int B, int maxT) {
    memset(kv, 0, sizeof *kv);
    if (B < 1 || maxT < 1 || maxT > cfg->max_seq_len)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "prompt length + max_new_tokens must fit max_seq_len",
                           "KV cache of %d slots for a model of %d positions", maxT,
                           cfg->max_seq_len);
    kv->B = B, kv->maxT = maxT, kv->n_layer = cfg->n_layer, kv->C = cfg->n_embd;
    kv->n_head = cfg->n_head;
    size_t n = (size_t)cfg->n_layer * B * maxT * cfg->n_embd;
    kv->k = xmalloc(n * sizeof(float));
    kv->v = xmalloc(n * sizeof(float));
    kv->valid = xcalloc((size_t)B * maxT, 1);
    kv->scratch = xmalloc((size_t)B * cfg->n_head * maxT * sizeof(float));
    return 0;
}

void rlaif_kv_cache_free(rlaif_kv_cache *kv) {
    free(kv->k), free(kv->v), free(kv->valid), free(kv->scratch);
    memset(kv, 0, sizeof *kv);
}

/* sc[j] = scale * (k_j . q) for the n keys of one head (rows of hs floats). */
SIMD_CLONES static void attn_scores(float *sc, const float *kc, const float *q, int n, int hs,
                                    float scale) {
    for (int j = 0; j < n; j++) {
        const float *k = kc + (size_t)j * hs;
        /* 2 KB ahead: hardware prefetchers stop at every 4 KB page */
        __builtin_prefetch(k + 512);
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int d = 0; d < hs; d++) s += k[d] * q[d];
        sc[j] = scale * s;
    }
}

/* out = sum_j p[j] v_j over the n values of one head. */
SIMD_CLONES static void attn_mix(float *out, const float *vc, const float *p, int n, int hs) {
#pragma omp simd
    for (int d = 0; d < hs; d++) out[d] = 0.0f;
    for (int j = 0; j < n; j++) {
        const float *v = vc + (size_t)j * hs;
        __builtin_prefetch(v + 512);
        float pj = p[j];
#pragma omp simd
        for (int d = 0; d < hs; d++) out[d] += pj * v[d];
    }
}

/* Attention of Tn new queries per row (slots s0..s0+Tn-1) over the cached keys
 * of layer l. qkv (B,Tn,3C) -> y (B,Tn,C). The thread of a (row, head) first
 * stores the new keys and values of that head into the cache (the lines are
 * then in its cache for the reads). Bound by reading the cache: a head's keys
 * and values are contiguous blocks. Blocks handed out dynamically. */
static void attention_kv(float *y, const float *qkv, const rlaif_kv_cache *kv, int l, int s0,
                         int Tn) {
    int B = kv->B, C = kv->C, NH = kv->n_head, hs = C / NH, maxT = kv->maxT;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(dynamic, 4) if ((size_t)B * C * (s0 + Tn) * Tn >= PAR_MIN)
    for (int r = 0; r < B * NH; r++) {
        int b = r / NH, h = r % NH;
        float *sc = kv->scratch + (size_t)r * maxT;
        size_t base = ((size_t)l * B * NH + r) * maxT * hs;
        float *kc = kv->k + base, *vc = kv->v + base;
        const uint8_t *val = kv->valid + (size_t)b * maxT;
        for (int i = 0; i < Tn; i++) {
            const float *src = qkv + ((size_t)b * Tn + i) * 3 * C + (size_t)h * hs;
            memcpy(kc + (size_t)(s0 + i) * hs, src + C, sizeof(float) * hs);
            memcpy(vc + (size_t)(s0 + i) * hs, src + 2 * C, sizeof(float) * hs);
        }
        for (int i = 0; i < Tn; i++) {
            const float *q = qkv + ((size_t)b * Tn + i) * 3 * C + h * hs;
            float *out = y + ((size_t)b * Tn + i) * C + h * hs;
            int lim = s0 + i;
            attn_scores(sc, kc, q, lim + 1, hs, scale);
            softmax_row(sc, lim + 1, lim, val);
            attn_mix(out, vc, sc, lim + 1, hs);
        }
    }
}

int rlaif_model_forward_kv(rlaif_model *m, rlaif_kv_cache *kv, const int *tokens, const int *pos,
                           const uint8_t *valid, int Tn, float *logits) {
    int B = kv->B, s0 = kv->len, C = m->cfg.n_embd, V = m->cfg.vocab_size, N = B * Tn;
    if (Tn < 1 || s0 + Tn > kv->maxT)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "KV cache full: %d + %d > %d slots", s0, Tn,
                           kv->maxT);
    RLAIF_TRY(check_inputs(m, tokens, pos, B, Tn));
    acts_carve(m, B, Tn, 0);
    rlaif_acts *a = m->acts;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Tn; i++) {
            a->pos[b * Tn + i] = pos ? pos[b * Tn + i] : s0 + i;
            kv->valid[(size_t)b * kv->maxT + s0 + i] = valid ? valid[b * Tn + i] : 1;
        }
    encoder_forward(a->encoded, tokens, a->pos, m->w.wte, m->w.wpe, B, Tn, C);
    const float *res = a->encoded;
    /* One layer's buffers are enough: nothing is kept for backward. */
    float *ln = a->ln1, *qkv = a->qkv, *atty = a->atty, *res2 = a->res2, *res3 = a->res3;
    float *fch = a->fch, *fchg = a->fch_gelu;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const rlaif_gpt2_layer *w = &m->w.h[l];
        layernorm_forward(ln, NULL, NULL, res, w->ln_1_w, w->ln_1_b, N, C);
        matmul_forward(qkv, ln, w->c_attn_w, w->c_attn_b, NULL, N, C, 3 * C, a->xt, NULL);
        attention_kv(atty, qkv, kv, l, s0, Tn);
        matmul_forward(res2, atty, w->attn_proj_w, w->attn_proj_b, res, N, C, C, a->xt, NULL);
        layernorm_forward(ln, NULL, NULL, res2, w->ln_2_w, w->ln_2_b, N, C);
        matmul_forward(fch, ln, w->c_fc_w, w->c_fc_b, NULL, N, C, 4 * C, a->xt, fchg);
        matmul_forward(res3, fchg, w->mlp_proj_w, w->mlp_proj_b, res2, N, 4 * C, C, a->xt, NULL);
        res = res3;
    }
    /* Final LayerNorm and LM head only at the last new position of each row. */
    for (int b = 0; b < B; b++)
        memcpy(ln + (size_t)b * C, res + ((size_t)b * Tn + Tn - 1) * C, sizeof(float) * C);
    layernorm_forward(a->lnf, NULL, NULL, ln, m->w.ln_f_w, m->w.ln_f_b, B, C);
    if (B == 1)
        gemv(0, V, C, m->w.wte, C, a->lnf, 0.0f, logits);
    else if (a->xt)
        rlaif_smallm_gemm(1, B, V, C, a->lnf, C, m->w.wte, C, NULL, NULL, logits, V, NULL, NULL,
                          a->xt, team_size());
    else
        gemm(0, 1, B, V, C, 1.0f, a->lnf, C, m->w.wte, C, 0.0f, logits, V);
    kv->len += Tn;
    return 0;
}
