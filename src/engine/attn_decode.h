/* attn_decode.h - one query against a head's cached keys and values
 * (private to the engine; model.c's attention_kv while decoding).
 *
 * Decoding reads each cached key and value once per step, so these loops
 * are bound by memory: a head's keys (n x hs values) are one contiguous
 * block, as are its values. */
#ifndef RLAIF_ATTN_DECODE_H
#define RLAIF_ATTN_DECODE_H

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

/* Which kernels run: "avx512" or "c". force: NULL keeps the run-time
 * choice, otherwise one of those names (tests compare the two). */
const char *rlaif_attn_decode_kernel(const char *force);

#endif
