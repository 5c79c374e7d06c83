/* model.h - decoder-only transformers in three families, forward and
 * backward on the CPU in fp32, every matrix product through cblas_sgemm
 * except those with at most 64 rows (batched decoding), which use
 * packing-free AVX-512 / AVX2 / C kernels (src/engine/model_gemm.h); with
 * precision bf16 the linear layers' products are bf16 with fp32 sums:
 *   GPT-2: learned positions, pre-LayerNorm, GELU tanh, tied LM head;
 *   OPT:   learned positions (offset 2), pre- or post-LayerNorm, ReLU,
 *          optional project_in/project_out, tied LM head;
 *   Llama: RoPE, RMSNorm, SwiGLU, grouped-query attention, optional q/k/v
 *          biases (Qwen2), sliding window (Mistral), tied or separate LM head;
 * each with an optional scalar head.
 *
 * Parameters and gradients are each one flat buffer carved into tensors with
 * Hugging Face names and layouts (GPT-2 Conv1D weights [in, out], OPT/Llama
 * nn.Linear weights [out, in]), listed in m->table in canonical order. GPT-2:
 *   wte.weight [V, C], wpe.weight [maxT, C],
 *   h.<i>.ln_1.{weight,bias} [C], h.<i>.attn.c_attn.weight [C, 3C], .bias [3C],
 *   h.<i>.attn.c_proj.weight [C, C], .bias [C], h.<i>.ln_2.{weight,bias} [C],
 *   h.<i>.mlp.c_fc.weight [C, 4C], .bias [4C], h.<i>.mlp.c_proj.weight [4C, C], .bias [C],
 *   ln_f.{weight,bias} [C], and with a scalar head score.weight [1, C], score.bias [1].
 * OPT and Llama: src/engine/README.md. q|k|v (and Llama's gate|up) are
 * adjacent, so each runs as one fused [out, in] product.
 *
 * One batch flows as
 *   rlaif_model_forward     tokens (B,T) -> final hidden state (B,T,C)
 *   rlaif_model_lm_forward  -> logits (B,T,V), per-token logprob of targets, entropy
 *   rlaif_model_score_forward -> scalar per token (value; reward = the value at
 *                               the last non-pad token)
 *   rlaif_model_backward    d(loss)/d(logprob), d/d(entropy), d/d(score) per token
 *                           -> gradients accumulated into m->grads
 * so every loss of the pipeline (masked cross-entropy, PPO, DPO, Bradley-Terry,
 * value regression, entropy bonus) is a per-token weighting computed by the
 * caller. Activations are allocated once for the largest (B,T) seen. */
#ifndef RLAIF_MODEL_H
#define RLAIF_MODEL_H

#include "rlaif/core/tensors.h"

#include <stdint.h>

typedef enum { RLAIF_ARCH_GPT2 = 0, RLAIF_ARCH_OPT = 1, RLAIF_ARCH_LLAMA = 2 } rlaif_arch;
typedef enum {
    RLAIF_ROPE_DEFAULT = 0,
    RLAIF_ROPE_LINEAR = 1,
    RLAIF_ROPE_LLAMA3 = 2
} rlaif_rope_type;

/* A field left 0 gets the arch's default in rlaif_model_create (see
 * rlaif_model_config_fill), so {.n_layer, .n_embd, .n_head, .vocab_size,
 * .max_seq_len} alone is a GPT-2. */
typedef struct {
    int arch; /* rlaif_arch */
    int n_layer, n_embd, n_head, vocab_size, max_seq_len;
    int score_head;     /* 1: the model carries score.weight/score.bias */
    int n_kv_head;      /* llama num_key_value_heads (divides n_head); = n_head for gpt2/opt */
    int n_inner;        /* MLP width: gpt2 4*n_embd, opt ffn_dim, llama intermediate_size */
    int word_embed_dim; /* opt word_embed_proj_dim; == n_embd means no project_in/out */
    int norm_before;    /* opt do_layer_norm_before (0 = post-LN, opt-350m); 1 otherwise */
    int tie_embeddings; /* llama tie_word_embeddings; 1 for gpt2/opt */
    int attn_bias;      /* llama: q/k/v biases (Qwen2); gpt2/opt: 1 (all linear biases) */
    float norm_eps;     /* layer_norm_epsilon / rms_norm_eps (gpt2, opt: 1e-5) */
    float rope_theta;   /* llama */
    int rope_type;      /* rlaif_rope_type */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_pos; /* llama3 scaling's original_max_position_embeddings */
    int sliding_window;        /* 0 = none; else a query at t attends keys s with t - s < window */
} rlaif_model_config;

#define RLAIF_LN_EPS 1e-5f /* GPT-2's and OPT's layer_norm_epsilon */

/* Pointers into a flat buffer (parameters or gradients), one set per layer.
 * A bias is NULL where the arch has none; norm*_b NULL means RMSNorm. */
typedef struct {
    float *norm1_w, *norm1_b; /* ln_1 / self_attn_layer_norm / input_layernorm */
    float *qkv_w, *qkv_b;     /* c_attn [C, 3C] or q|k|v [(NH + 2 NKV) hd, C] */
    float *o_w, *o_b;         /* attn.c_proj / out_proj / o_proj */
    float *norm2_w, *norm2_b; /* ln_2 / final_layer_norm / post_attention_layernorm */
    float *fc_w, *fc_b;       /* c_fc [C, 4C] / fc1 [F, C] / gate|up [2F, C] */
    float *proj_w, *proj_b;   /* mlp.c_proj [4C, C] / fc2 [C, F] / down_proj [C, F] */
} rlaif_layer_weights;

typedef struct {
    float *wte;                /* [V, Cw] */
    float *wpe;                /* position 0's row (OPT: past HF's 2 offset rows); NULL for llama */
    float *proj_in, *proj_out; /* OPT [C, Cw] and [Cw, C] when Cw != C, else NULL */
    rlaif_layer_weights *h;    /* n_layer */
    float *norm_f_w, *norm_f_b; /* ln_f / final_layer_norm / norm; NULL for OPT post-LN */
    float *lm_head;             /* [V, Cw]: wte when tied */
    float *score_w, *score_b;   /* NULL without a scalar head */
} rlaif_model_weights;

typedef struct rlaif_acts rlaif_acts; /* private to model.c */

/* Arithmetic of the matrix products (model.precision). bf16: weights and
 * activations rounded to bfloat16 (round to nearest even) at the inputs of
 * every linear layer's product, forward and backward, accumulated in fp32
 * into fp32 outputs and gradients; parameters, optimiser state, norms,
 * softmax, activation functions, attention and losses stay fp32, and so do
 * checkpoints. */
typedef enum { RLAIF_PREC_FP32 = 0, RLAIF_PREC_BF16 = 1 } rlaif_precision;

typedef struct {
    rlaif_model_config cfg;
    rlaif_tensor_table table; /* names, shapes and offsets of params (and grads) */
    float *params;            /* table.total floats */
    float *grads;             /* table.total floats, NULL until rlaif_model_alloc_grads */
    rlaif_model_weights w, g;
    rlaif_acts *acts;
    int precision; /* rlaif_precision */
    /* bf16 mode: a bfloat16 copy of params (same offsets), rewritten from
     * params at every rlaif_model_forward and at the first step of every KV
     * cache, so it can never be older than the weights it is used with
     * (optimiser steps, loads, broadcasts all write params directly). */
    uint16_t *params16;
    /* 1: the weights will not change while it is set (a judge's model,
     * loaded read-only): fp32 decoding packs them once, not again at every
     * sequence (gemm_packed.c), and rlaif_model_decode_prepare can do it
     * ahead. 0 after create. */
    int frozen;
    /* times the weights were packed for decoding (fp32 or bf16 panels): a
     * frozen model's stays at 1 from one sequence to the next */
    long packs;
    /* 1 from rlaif_model_zero_grad until the next backward or
     * rlaif_model_grads_ready: the layers' product weights' gradients are
     * zero in value but not in memory. */
    int grads_lazy;
    int B, T; /* shape of the last forward */
    /* lm_forward's logits are (lnf @ lm_head^T) * logit_scale (1 after create):
     * 1 / temperature makes log-probs and entropies those of the tempered
     * distribution a sampler drew from (PPO's ratios and KL at T != 1, as
     * TRL computes them); backward scales the gradients alike. */
    float logit_scale;
    /* Outputs of the last forward, [B*T] each (pointers into the activations). */
    float *logits;  /* [B*T, V] after lm_forward; overwritten by backward */
    float *logp;    /* log p(target) per token (0 where target < 0) */
    float *entropy; /* entropy of the next-token distribution per token */
    float *score;   /* scalar head per token */
} rlaif_model;

/* Replaces the fields left 0 by the arch's defaults (n_kv_head = n_head,
 * n_inner 4C (llama: 8C/3 rounded up to 32), word_embed_dim = C, eps 1e-5
 * (llama 1e-6), rope_theta 1e4, rope factors 1/1/4, original positions 8192)
 * and forces what the arch fixes (gpt2: pre-LN, tied, biases; opt: tied,
 * biases; llama: pre-LN). OPT's norm_before is taken as given (0 = post-LN). */
void rlaif_model_config_fill(rlaif_model_config *cfg);
/* Checks the sizes (all positive, n_head divides n_embd, n_kv_head divides
 * n_head, even head_dim for RoPE, ...); RLAIF_EX_USAGE naming the field. */
int rlaif_model_config_check(const rlaif_model_config *cfg);
/* Fills tt with the parameter table of cfg (canonical Hugging Face order). */
void rlaif_model_table(const rlaif_model_config *cfg, rlaif_tensor_table *tt);
/* Points w at the tensors of a buffer laid out as rlaif_model_table. */
void rlaif_model_point(const rlaif_model_config *cfg, float *base, rlaif_model_weights *w);
/* "gpt2", "opt", "llama" and back (-1 for an unknown name). */
const char *rlaif_arch_name(int arch);
int rlaif_arch_parse(const char *name);
const char *rlaif_rope_type_name(int rope_type);
int rlaif_rope_type_parse(const char *name);

/* Threads for every later call: an OpenMP team of `team` and OpenBLAS
 * pool of `blas` (forced to 1 when the team is larger: two spinning pools on
 * the same cores slow each other down). 0 leaves a setting alone. Without a
 * call, OpenMP's own default (OMP_NUM_THREADS, else every CPU) holds. */
void rlaif_model_set_threads(int team, int blas);

/* "fp32", "bf16", "auto" -> rlaif_precision (-1 for another name); auto is
 * bf16 where the CPU has AMX-BF16 or AVX512-BF16, fp32 elsewhere, and *why
 * (may be NULL) says which. rlaif_precision_name is the way back. */
int rlaif_precision_parse(const char *name, const char **why);
const char *rlaif_precision_name(int precision);
/* Precision of every model created afterwards (fp32 until called). */
void rlaif_model_set_default_precision(int precision);
int rlaif_model_default_precision(void);
/* Switches one model's precision (allocates or frees the bf16 copy). */
void rlaif_model_set_precision(rlaif_model *m, int precision);

/* Allocates parameters (zeroed). Returns 0 or RLAIF_EX_USAGE for a bad config. */
int rlaif_model_create(rlaif_model *m, const rlaif_model_config *cfg);
void rlaif_model_free(rlaif_model *m);
/* GPT-2 style initialisation for every arch: weights N(0, std) (the
 * projections into the residual stream std/sqrt(2L)), biases 0, norm weights 1. Random numbers
 * keyed by (seed, RLAIF_STREAM_INIT, chunk, tensor index): identical on every rank and for every
 * thread count. */
void rlaif_model_init_random(rlaif_model *m, uint64_t seed, float std);
void rlaif_model_alloc_grads(rlaif_model *m);
/* Zeroes m->grads for the next backward. The gradients of the layers'
 * product weights (c_attn / q|k|v, the out projection, the MLP's up and
 * down) and of the LM head (124M of GPT-2 124M's 124M) are zeroed lazily: the next
 * rlaif_model_backward writes them rather than adding to them
 * (m->grads_lazy). Code that reads or writes m->grads other than through
 * backward calls rlaif_model_grads_ready first, which zeroes them if no
 * backward has run since. */
void rlaif_model_zero_grad(rlaif_model *m);
void rlaif_model_grads_ready(rlaif_model *m);
/* Bytes held by the activations (for memory reports). */
size_t rlaif_model_act_bytes(const rlaif_model *m);

/* Trunk: tokens [B*T] in [0,V) -> final hidden state (after the final norm
 * and OPT's project_out, [B*T, word_embed_dim]), kept for the heads.
 * pos: position ids [B*T] (NULL = 0..T-1 in every row; left-padded rows pass
 *      t - pads so the first real token sits at position 0).
 * valid: [B*T], 1 for a real token, 0 for padding; keys that are padding are
 *      never attended to (NULL = all real). A query with no key to attend to
 *      (a pad before the first real token) gets a zero attention output.
 * Returns 0, or RLAIF_EX_USAGE for a token or position out of range. */
int rlaif_model_forward(rlaif_model *m, const int *tokens, const int *pos, const uint8_t *valid,
                        int B, int T);
/* LM head on the last forward: logits, m->entropy, and m->logp for targets
 * [B*T] (target < 0: ignored, logp 0; targets NULL: logp not computed). */
int rlaif_model_lm_forward(rlaif_model *m, const int *targets);
/* Scalar head on the last forward: m->score[B*T]. */
int rlaif_model_score_forward(rlaif_model *m);

/* Gradients of a loss given per token as d(loss)/d(logp), d(loss)/d(entropy)
 * and d(loss)/d(score) ([B*T] each, any may be NULL), accumulated into m->grads
 * (call rlaif_model_zero_grad first for a fresh step). dlogp/dentropy need
 * lm_forward, dscore needs score_forward. Clobbers m->logits. */
int rlaif_model_backward(rlaif_model *m, const float *dlogp, const float *dentropy,
                         const float *dscore);

/* Masked mean cross-entropy of the last lm_forward:
 *   loss = -sum(mask * logp) / sum(mask)  (mask NULL: every target >= 0 counts)
 * and, when dlogp is not NULL, its gradient d(loss)/d(logp) [B*T] for backward. */
float rlaif_ce_loss(const rlaif_model *m, const int *targets, const float *mask, float *dlogp);

/* Index of the last real token of each row (valid NULL: T-1), for reading a
 * reward from m->score. -1 for a row with no real token. */
void rlaif_last_index(const uint8_t *valid, int B, int T, int *last);

/* log sum_v exp((x[v] - max) * scale) over n values, vectorised; *max_out = max x. */
float rlaif_logsumexp(const float *x, int n, float scale, float *max_out);

/* ---- incremental decoding (used by generate.h) ---- */

/* Keys and values of every layer for B sequences of up to maxT slots. */
typedef struct {
    int B, maxT, len; /* len: slots filled so far (the same for every row) */
    int n_layer, C, n_head, n_kv_head, window; /* window: sliding_window (0 none) */
    float *k, *v;      /* [L][B][n_kv_head][maxT][C / n_head]: one head's keys are contiguous;
                        * keys are stored rotated (RoPE at their positions). NULL when bf16 */
    uint16_t *kb, *vb; /* the same in bf16 (precision bf16: half the bytes decoding reads;
                        * rounded to nearest even once, as they are stored), or NULL */
    void *mem;         /* the one allocation the cache is carved from */
    uint8_t *valid;    /* [B][maxT]: slot holds a real token */
    /* The real tokens of the current call, packed (pads and finished rows
     * are not computed): row b's are packed rows q_off[b]..q_off[b+1]-1,
     * packed row r goes to slot q_slot[r]. [B+1] and [B*maxT]. */
    int *q_off, *q_slot;
    int *q_from; /* [B]: row b's real slots are exactly [q_from[b], len) (left padding
                  * only: softmax needs no mask), or -1 */
    struct rlaif_kv_same {
        int row, from, at, n;
    } * same;        /* [B]: row b's slots [at, at + n) hold row `row`'s [from, from + n),
                      * bit for bit (rlaif_kv_cache_same; n 0: not known) */
    float *pscratch; /* prefill's score blocks, one per thread (grown on demand); with a
                      * bf16 cache each also holds its head's keys and values in fp32 */
    size_t pscratch_n, pstride; /* floats in all, and per thread */
    double attn_s;              /* seconds spent in attention over the cache so far (the
                                 * engine's clock): how a step's time splits (generate.h) */
} rlaif_kv_cache;

/* precision (rlaif_precision, the model's): RLAIF_PREC_BF16 stores the
 * keys and values in bf16, as the products of that precision take their
 * operands; the attention's sums and softmax stay fp32. A cache larger
 * than the memory this process has left (rlaif_mem_budget_get) is refused
 * (RLAIF_EX_USAGE, with the numbers): it is allocated and zeroed whole. */
int rlaif_kv_cache_create(rlaif_kv_cache *kv, const rlaif_model_config *cfg, int B, int maxT,
                          int precision);
/* Bytes of the cache rlaif_kv_cache_create allocates for these sizes. */
size_t rlaif_kv_cache_bytes(const rlaif_model_config *cfg, int B, int maxT, int precision);
void rlaif_kv_cache_free(rlaif_kv_cache *kv);

/* Row b's slots d0 .. d0 + n - 1 of dst become copies of row sb's slots
 * s0 .. s0 + n - 1 of src (keys and values of every layer and cached head;
 * caches of one model and precision) and are marked valid. Prompts that
 * begin with the same tokens have the same keys and values there
 * (positions count from a row's first token, never from its slot), so
 * those tokens are computed once (generate.c). */
void rlaif_kv_cache_copy(rlaif_kv_cache *dst, int b, int d0, const rlaif_kv_cache *src, int sb,
                         int s0, int n);

/* Records that row b's slots at .. at + n - 1 hold row sb's slots from ..
 * from + n - 1 of the same cache, bit for bit (copies of one prefix), so
 * that decoding, whose query at b sees keys from slot `at` on, reads those
 * from row sb: every row of a batch then reads one copy of a shared
 * prompt prefix, which stays in cache, in place of its own from memory
 * (attn_decode.h, rlaif_attn_same). Slots are only ever appended to, so
 * the record holds for the cache's life. */
void rlaif_kv_cache_same(rlaif_kv_cache *kv, int b, int at, int sb, int from, int n);

/* A frozen model (m->frozen) about to run batches of up to B rows: packs
 * its weights now where its first sequence would: in bf16 always (its
 * products read bf16 panels), in fp32 where its first decoding step would,
 * or where its prefill would read them (the product table names the packed
 * path for its products at 1..B rows, or past 64: the prefill of a frozen
 * model reads the copy it keeps), so the copy is made with the model's load
 * and not inside a timed step. Does nothing otherwise, or when they are
 * packed already. */
void rlaif_model_decode_prepare(rlaif_model *m, int B);

/* valid[] of rlaif_model_forward_kv: 0 a pad, 1 a token to compute, and
 * RLAIF_KV_CACHED a token whose keys and values are in its slot already
 * (rlaif_kv_cache_copy): attended to, not computed. */
#define RLAIF_KV_CACHED 2

/* Appends Tn tokens per row (tokens/pos/valid [B*Tn]) at slots kv->len.. and
 * writes the logits of the last real (valid) token of each row in this call to
 * logits [B*V] (zeros for a row with none). Only real tokens are computed:
 * left padding and finished rows cost nothing, and their slots stay masked.
 * Same arithmetic as rlaif_model_forward + lm_forward on the whole sequence. */
int rlaif_model_forward_kv(rlaif_model *m, rlaif_kv_cache *kv, const int *tokens, const int *pos,
                           const uint8_t *valid, int Tn, float *logits);

#endif
