/* model_config.c - the three architectures' configs, parameter tables and
 * random initialisation (see model.h).
 *
 * The parameter table is the single description of the flat block: the
 * checkpoint readers/writers, the optimiser shards, the weight broadcast and
 * the pointers the kernels use (rlaif_model_point) all come from one walk,
 * layout() below, so they cannot disagree. Names and layouts are Hugging
 * Face's (prefixes transformer. / model.decoder. / model. dropped) so that
 * conversion is a copy. */
#include "rlaif/engine/model.h"
#include "rlaif/core/error.h"
#include "rlaif/core/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const arch_names[] = {"gpt2", "opt", "llama"};
static const char *const rope_names[] = {"default", "linear", "llama3"};

const char *rlaif_arch_name(int arch) {
    return arch >= 0 && arch < 3 ? arch_names[arch] : "?";
}

int rlaif_arch_parse(const char *name) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, arch_names[i])) return i;
    return -1;
}

const char *rlaif_precision_name(int precision) {
    return precision == RLAIF_PREC_BF16 ? "bf16" : precision == RLAIF_PREC_FP32 ? "fp32" : "?";
}

/* auto asks the CPU, not the kernels: a CPU without a bf16 dot product
 * instruction would run the products as emulated conversions, slower than
 * fp32 (the portable kernel is for correctness, not speed). */
int rlaif_precision_parse(const char *name, const char **why) {
    const char *w = "as set";
    int p = !strcmp(name, "fp32") ? RLAIF_PREC_FP32 : !strcmp(name, "bf16") ? RLAIF_PREC_BF16 : -1;
    if (!strcmp(name, "auto")) {
        p = RLAIF_PREC_FP32, w = "auto: the CPU has neither AMX-BF16 nor AVX512-BF16";
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("amx-bf16"))
            p = RLAIF_PREC_BF16, w = "auto: the CPU has AMX-BF16";
        else if (__builtin_cpu_supports("avx512bf16"))
            p = RLAIF_PREC_BF16, w = "auto: the CPU has AVX512-BF16";
#endif
    }
    if (why) *why = w;
    return p;
}

const char *rlaif_rope_type_name(int rope_type) {
    return rope_type >= 0 && rope_type < 3 ? rope_names[rope_type] : "?";
}

int rlaif_rope_type_parse(const char *name) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, rope_names[i])) return i;
    return -1;
}

/* ------------------------------------------------------------------ config */

void rlaif_model_config_fill(rlaif_model_config *c) {
    int llama = c->arch == RLAIF_ARCH_LLAMA;
    if (!c->n_kv_head) c->n_kv_head = c->n_head;
    /* Llama's 2/3 of 4C keeps the SwiGLU MLP (three matrices) at GPT-2's cost */
    if (!c->n_inner) c->n_inner = llama ? (8 * c->n_embd / 3 + 31) / 32 * 32 : 4 * c->n_embd;
    if (!c->word_embed_dim) c->word_embed_dim = c->n_embd;
    if (c->arch != RLAIF_ARCH_OPT) c->norm_before = 1;
    if (!llama) c->tie_embeddings = 1, c->attn_bias = 1;
    if (c->norm_eps == 0.0f) c->norm_eps = llama ? 1e-6f : RLAIF_LN_EPS;
    if (!llama) return;
    if (c->rope_theta == 0.0f) c->rope_theta = 10000.0f;
    if (c->rope_factor == 0.0f) c->rope_factor = 1.0f;
    if (c->rope_low_freq_factor == 0.0f) c->rope_low_freq_factor = 1.0f;
    if (c->rope_high_freq_factor == 0.0f) c->rope_high_freq_factor = 4.0f;
    if (!c->rope_original_max_pos) c->rope_original_max_pos = 8192;
}

#define BAD(fix, ...) RLAIF_ERROR(RLAIF_EX_USAGE, fix, __VA_ARGS__)

/* What every arch needs: positive sizes that divide. */
static int check_sizes(const rlaif_model_config *c) {
    if (c->arch < 0 || c->arch > 2)
        return BAD("gpt2, opt or llama", "arch %d is not a known architecture", c->arch);
    if (c->n_layer < 1 || c->n_embd < 1 || c->n_head < 1 || c->vocab_size < 1 ||
        c->max_seq_len < 1 || c->n_inner < 1 || c->word_embed_dim < 1)
        return BAD("every model size must be positive",
                   "bad model config: n_layer %d n_embd %d n_head %d vocab_size %d max_seq_len %d "
                   "n_inner %d word_embed_dim %d",
                   c->n_layer, c->n_embd, c->n_head, c->vocab_size, c->max_seq_len, c->n_inner,
                   c->word_embed_dim);
    if (c->n_embd % c->n_head)
        return BAD("choose n_head dividing n_embd", "n_head %d does not divide n_embd %d",
                   c->n_head, c->n_embd);
    if (c->n_kv_head < 1 || c->n_head % c->n_kv_head)
        return BAD("choose n_kv_head dividing n_head", "n_kv_head %d does not divide n_head %d",
                   c->n_kv_head, c->n_head);
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return BAD(NULL, "norm_eps (layer_norm_epsilon) %g is not in (0, 1)", (double)c->norm_eps);
    if (c->score_head != 0 && c->score_head != 1)
        return BAD(NULL, "score_head %d is not 0 or 1", c->score_head);
    if (c->sliding_window < 0) return BAD(NULL, "sliding_window %d is negative", c->sliding_window);
    return 0;
}

/* What GPT-2 and OPT fix: no GQA, RoPE or window; tied, biased. */
static int check_fixed(const rlaif_model_config *c) {
    const char *a = rlaif_arch_name(c->arch);
    if (c->n_kv_head != c->n_head)
        return BAD(NULL, "%s has no grouped-query attention: n_kv_head %d != n_head %d", a,
                   c->n_kv_head, c->n_head);
    if (c->sliding_window) return BAD(NULL, "%s has no sliding_window (%d)", a, c->sliding_window);
    if (c->tie_embeddings != 1 || c->attn_bias != 1)
        return BAD(NULL, "%s needs tie_embeddings 1 and attn_bias 1 (%d, %d)", a, c->tie_embeddings,
                   c->attn_bias);
    if (c->arch == RLAIF_ARCH_GPT2 && (c->word_embed_dim != c->n_embd || c->norm_before != 1))
        return BAD(NULL, "gpt2 needs word_embed_dim = n_embd and norm_before 1 (%d, %d)",
                   c->word_embed_dim, c->norm_before);
    if (c->norm_before != 0 && c->norm_before != 1)
        return BAD(NULL, "norm_before %d is not 0 or 1", c->norm_before);
    return 0;
}

/* Llama: RoPE needs pairs; its scaling its own parameters. */
static int check_llama(const rlaif_model_config *c) {
    int hd = c->n_embd / c->n_head;
    if (hd % 2)
        return BAD("choose n_head so that n_embd / n_head is even",
                   "head_dim %d is odd: RoPE rotates pairs", hd);
    if (c->word_embed_dim != c->n_embd || c->norm_before != 1)
        return BAD(NULL, "llama needs word_embed_dim = n_embd and norm_before 1 (%d, %d)",
                   c->word_embed_dim, c->norm_before);
    if ((c->tie_embeddings != 0 && c->tie_embeddings != 1) ||
        (c->attn_bias != 0 && c->attn_bias != 1))
        return BAD(NULL, "tie_embeddings %d / attn_bias %d is not 0 or 1", c->tie_embeddings,
                   c->attn_bias);
    if (!(c->rope_theta > 1.0f) || !isfinite(c->rope_theta))
        return BAD(NULL, "rope_theta %g must be > 1", (double)c->rope_theta);
    if (c->rope_type < 0 || c->rope_type > 2)
        return BAD("default, linear or llama3", "rope_type %d is not known", c->rope_type);
    if (!(c->rope_factor > 0.0f))
        return BAD(NULL, "rope_factor %g must be > 0", (double)c->rope_factor);
    if (c->rope_type == RLAIF_ROPE_LLAMA3 &&
        (!(c->rope_low_freq_factor > 0.0f) ||
         !(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_original_max_pos < 1))
        return BAD(NULL,
                   "llama3 rope scaling needs 0 < rope_low_freq_factor (%g) < "
                   "rope_high_freq_factor (%g) and rope_original_max_pos (%d) >= 1",
                   (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor,
                   c->rope_original_max_pos);
    return 0;
}

int rlaif_model_config_check(const rlaif_model_config *c) {
    RLAIF_TRY(check_sizes(c));
    return c->arch == RLAIF_ARCH_LLAMA ? check_llama(c) : check_fixed(c);
}

/* ------------------------------------------------------------------ tables */

/* Adds one tensor; returns its address in base (NULL when base is NULL). */
static float *add(rlaif_tensor_table *tt, float *base, const char *name, int nd, int64_t d0,
                  int64_t d1) {
    int64_t shape[2] = {d0, d1};
    size_t off = rlaif_tensors_add(tt, name, nd, shape);
    return base ? base + off : NULL;
}

#define ADD1(name, n)    add(tt, base, name, 1, n, 0)
#define ADD2(name, r, c) add(tt, base, name, 2, r, c)
#define LNAME(fmt)       (snprintf(name, sizeof name, fmt, l), name)

/* GPT-2 layer l: Conv1D [in, out]. */
static void layout_gpt2_layer(const rlaif_model_config *c, rlaif_tensor_table *tt, float *base,
                              int l, rlaif_layer_weights *h) {
    int64_t C = c->n_embd, F = c->n_inner;
    char name[RLAIF_TENSOR_NAME_MAX];
    h->norm1_w = ADD1(LNAME("h.%d.ln_1.weight"), C);
    h->norm1_b = ADD1(LNAME("h.%d.ln_1.bias"), C);
    h->qkv_w = ADD2(LNAME("h.%d.attn.c_attn.weight"), C, 3 * C);
    h->qkv_b = ADD1(LNAME("h.%d.attn.c_attn.bias"), 3 * C);
    h->o_w = ADD2(LNAME("h.%d.attn.c_proj.weight"), C, C);
    h->o_b = ADD1(LNAME("h.%d.attn.c_proj.bias"), C);
    h->norm2_w = ADD1(LNAME("h.%d.ln_2.weight"), C);
    h->norm2_b = ADD1(LNAME("h.%d.ln_2.bias"), C);
    h->fc_w = ADD2(LNAME("h.%d.mlp.c_fc.weight"), C, F);
    h->fc_b = ADD1(LNAME("h.%d.mlp.c_fc.bias"), F);
    h->proj_w = ADD2(LNAME("h.%d.mlp.c_proj.weight"), F, C);
    h->proj_b = ADD1(LNAME("h.%d.mlp.c_proj.bias"), C);
}

/* OPT layer l: nn.Linear [out, in]; q|k|v weights, then their biases, adjacent. */
static void layout_opt_layer(const rlaif_model_config *c, rlaif_tensor_table *tt, float *base,
                             int l, rlaif_layer_weights *h) {
    int64_t C = c->n_embd, F = c->n_inner;
    char name[RLAIF_TENSOR_NAME_MAX];
    h->norm1_w = ADD1(LNAME("layers.%d.self_attn_layer_norm.weight"), C);
    h->norm1_b = ADD1(LNAME("layers.%d.self_attn_layer_norm.bias"), C);
    h->qkv_w = ADD2(LNAME("layers.%d.self_attn.q_proj.weight"), C, C);
    ADD2(LNAME("layers.%d.self_attn.k_proj.weight"), C, C);
    ADD2(LNAME("layers.%d.self_attn.v_proj.weight"), C, C);
    h->qkv_b = ADD1(LNAME("layers.%d.self_attn.q_proj.bias"), C);
    ADD1(LNAME("layers.%d.self_attn.k_proj.bias"), C);
    ADD1(LNAME("layers.%d.self_attn.v_proj.bias"), C);
    h->o_w = ADD2(LNAME("layers.%d.self_attn.out_proj.weight"), C, C);
    h->o_b = ADD1(LNAME("layers.%d.self_attn.out_proj.bias"), C);
    h->norm2_w = ADD1(LNAME("layers.%d.final_layer_norm.weight"), C);
    h->norm2_b = ADD1(LNAME("layers.%d.final_layer_norm.bias"), C);
    h->fc_w = ADD2(LNAME("layers.%d.fc1.weight"), F, C);
    h->fc_b = ADD1(LNAME("layers.%d.fc1.bias"), F);
    h->proj_w = ADD2(LNAME("layers.%d.fc2.weight"), C, F);
    h->proj_b = ADD1(LNAME("layers.%d.fc2.bias"), C);
}

/* Llama layer l: nn.Linear [out, in]; q|k|v and gate|up adjacent. */
static void layout_llama_layer(const rlaif_model_config *c, rlaif_tensor_table *tt, float *base,
                               int l, rlaif_layer_weights *h) {
    int64_t C = c->n_embd, F = c->n_inner, KV = (int64_t)c->n_kv_head * (C / c->n_head);
    char name[RLAIF_TENSOR_NAME_MAX];
    memset(h, 0, sizeof *h);
    h->norm1_w = ADD1(LNAME("layers.%d.input_layernorm.weight"), C);
    h->qkv_w = ADD2(LNAME("layers.%d.self_attn.q_proj.weight"), C, C);
    ADD2(LNAME("layers.%d.self_attn.k_proj.weight"), KV, C);
    ADD2(LNAME("layers.%d.self_attn.v_proj.weight"), KV, C);
    if (c->attn_bias) {
        h->qkv_b = ADD1(LNAME("layers.%d.self_attn.q_proj.bias"), C);
        ADD1(LNAME("layers.%d.self_attn.k_proj.bias"), KV);
        ADD1(LNAME("layers.%d.self_attn.v_proj.bias"), KV);
    }
    h->o_w = ADD2(LNAME("layers.%d.self_attn.o_proj.weight"), C, C);
    h->norm2_w = ADD1(LNAME("layers.%d.post_attention_layernorm.weight"), C);
    h->fc_w = ADD2(LNAME("layers.%d.mlp.gate_proj.weight"), F, C);
    ADD2(LNAME("layers.%d.mlp.up_proj.weight"), F, C);
    h->proj_w = ADD2(LNAME("layers.%d.mlp.down_proj.weight"), C, F);
}

/* Embeddings: token, learned positions (OPT keeps HF's two offset rows). */
static void layout_embed(const rlaif_model_config *c, rlaif_tensor_table *tt, float *base,
                         rlaif_model_weights *w) {
    int64_t C = c->n_embd, Cw = c->word_embed_dim, P = c->max_seq_len;
    int opt = c->arch == RLAIF_ARCH_OPT;
    w->wte = ADD2(opt || c->arch == RLAIF_ARCH_LLAMA ? "embed_tokens.weight" : "wte.weight",
                  c->vocab_size, Cw);
    w->wpe = w->proj_in = w->proj_out = NULL;
    if (c->arch == RLAIF_ARCH_GPT2) w->wpe = ADD2("wpe.weight", P, C);
    if (opt) {
        float *p = ADD2("embed_positions.weight", P + 2, C);
        w->wpe = p ? p + 2 * C : NULL;
        if (Cw != C) w->proj_in = ADD2("project_in.weight", C, Cw);
    }
}

/* Final norm, OPT's project_out, the LM head and the scalar head. */
static void layout_final(const rlaif_model_config *c, rlaif_tensor_table *tt, float *base,
                         rlaif_model_weights *w) {
    int64_t C = c->n_embd, Cw = c->word_embed_dim;
    w->norm_f_w = w->norm_f_b = NULL;
    if (c->arch == RLAIF_ARCH_GPT2) {
        w->norm_f_w = ADD1("ln_f.weight", C);
        w->norm_f_b = ADD1("ln_f.bias", C);
    } else if (c->arch == RLAIF_ARCH_OPT) {
        if (c->norm_before) w->norm_f_w = ADD1("final_layer_norm.weight", C);
        if (c->norm_before) w->norm_f_b = ADD1("final_layer_norm.bias", C);
        if (Cw != C) w->proj_out = ADD2("project_out.weight", Cw, C);
    } else {
        w->norm_f_w = ADD1("norm.weight", C);
    }
    w->lm_head = c->tie_embeddings ? w->wte : ADD2("lm_head.weight", c->vocab_size, C);
    w->score_w = w->score_b = NULL;
    if (c->score_head) {
        w->score_w = ADD2("score.weight", 1, Cw);
        w->score_b = ADD1("score.bias", 1);
    }
}

/* The one walk over the canonical order: fills tt, and w's pointers into base
 * (base NULL: table only; w->h must hold n_layer entries). */
static void layout(const rlaif_model_config *c, rlaif_tensor_table *tt, float *base,
                   rlaif_model_weights *w) {
    rlaif_layer_weights scratch;
    memset(tt, 0, sizeof *tt);
    layout_embed(c, tt, base, w);
    for (int l = 0; l < c->n_layer; l++) {
        rlaif_layer_weights *h = w->h ? &w->h[l] : &scratch;
        if (c->arch == RLAIF_ARCH_GPT2) layout_gpt2_layer(c, tt, base, l, h);
        if (c->arch == RLAIF_ARCH_OPT) layout_opt_layer(c, tt, base, l, h);
        if (c->arch == RLAIF_ARCH_LLAMA) layout_llama_layer(c, tt, base, l, h);
    }
    layout_final(c, tt, base, w);
}

void rlaif_model_table(const rlaif_model_config *cfg, rlaif_tensor_table *tt) {
    rlaif_model_weights w;
    memset(&w, 0, sizeof w);
    layout(cfg, tt, NULL, &w);
}

void rlaif_model_point(const rlaif_model_config *cfg, float *base, rlaif_model_weights *w) {
    rlaif_tensor_table tt;
    layout(cfg, &tt, base, w);
    rlaif_tensors_free(&tt);
}

/* ---------------------------------------------------------- initialisation */

/* A norm's weight (LayerNorm / RMSNorm scale): starts at 1. */
static int is_norm(const char *name) {
    return strstr(name, "ln_") || strstr(name, "norm.") || strstr(name, "layernorm.") ||
           strstr(name, "layer_norm.");
}

/* A projection back into the residual stream: GPT-2's std / sqrt(2L) keeps
 * the residual's variance independent of depth. */
static int is_residual_proj(const char *name) {
    return strstr(name, "c_proj.weight") || strstr(name, "out_proj.weight") ||
           strstr(name, "o_proj.weight") || strstr(name, "fc2.weight") ||
           strstr(name, "down_proj.weight");
}

/* N(0, s) into p[0, n), chunked so every thread count draws the same numbers. */
static void fill_normal(float *p, size_t n, float s, uint64_t seed, uint32_t tensor) {
    const size_t chunk = 1 << 16;
    long nchunks = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static)
    for (long c = 0; c < nchunks; c++) {
        rlaif_rng r;
        rlaif_rng_init(&r, seed, RLAIF_STREAM_INIT, (uint32_t)c, tensor);
        size_t end = (size_t)(c + 1) * chunk < n ? (size_t)(c + 1) * chunk : n;
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

void rlaif_model_init_random(rlaif_model *m, uint64_t seed, float std) {
    float proj_std = std / sqrtf(2.0f * (float)m->cfg.n_layer);
    for (int i = 0; i < m->table.n; i++) {
        const rlaif_tensor_desc *d = &m->table.t[i];
        float *p = m->params + d->offset;
        if (!strcmp(strrchr(d->name, '.'), ".bias"))
            memset(p, 0, d->numel * sizeof(float));
        else if (is_norm(d->name))
            for (size_t j = 0; j < d->numel; j++) p[j] = 1.0f;
        else
            fill_normal(p, d->numel, is_residual_proj(d->name) ? proj_std : std, seed, (uint32_t)i);
    }
}
