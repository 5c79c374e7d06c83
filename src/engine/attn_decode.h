/* attn_decode.h - one query against a head's cached keys and values
 * (private to the engine; model.c's attention_kv while decoding).
 *
 * Decoding reads each cached key and value once per step, so these loops
 * are bound by memory: a head's keys (n x hs values) are one contiguous
 * block, as are its values. */
#ifndef RLAIF_ATTN_DECODE_H
#define RLAIF_ATTN_DECODE_H

#include <stddef.h>
#include <stdint.h>

/* sc[j] = scale * (k_j . q) for the n keys kc[j * hs .. j * hs + hs). */
void rlaif_attn_scores(float *sc, const float *kc, const float *q, int n, int hs, float scale);

/* out[0..hs) = sum_j p[j] v_j over the n values vc[j * hs ..]. */
void rlaif_attn_mix(float *out, const float *vc, const float *p, int n, int hs);

/* The same over a bf16 cache (model.precision bf16): each key or value
 * widened to fp32 exactly, the products and sums in fp32 as above. */
void rlaif_attn_scores_bf16(float *sc, const uint16_t *kc, const float *q, int n, int hs,
                            float scale);
void rlaif_attn_mix_bf16(float *out, const uint16_t *vc, const float *p, int n, int hs);

/* Grouped-query attention, the grp query heads that read one cached head
 * (fp32 kc/vc, or bf16 kb/vb when not NULL), keys in blocks that serve
 * every query head from L1: sc[h * ldsc + j] = scale * (k_j . q[h * ldq ..])
 * and out[h * ldo + d] = sum_j p[h * ldp + j] v_j[d], for h < grp. Each
 * score is the one rlaif_attn_scores gives; each sum is summed block by
 * block (the same error bound). */
void rlaif_attn_scores_group(float *sc, size_t ldsc, const float *q, size_t ldq, int grp,
                             const float *kc, const uint16_t *kb, int n, int hs, float scale);
void rlaif_attn_mix_group(float *out, size_t ldo, const float *p, size_t ldp, int grp,
                          const float *vc, const uint16_t *vb, int n, int hs);

/* Which kernels run: "avx512" or "c". force: NULL keeps the run-time
 * choice, otherwise one of those names (tests compare the two). */
const char *rlaif_attn_decode_kernel(const char *force);

#endif
