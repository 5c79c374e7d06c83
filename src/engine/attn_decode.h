/* attn_decode.h - one query against a head's cached keys and values
 * (private to the engine; model.c's attention_kv while decoding).
 *
 * Decoding reads each cached key and value once per step, so these loops
 * are bound by memory: a head's keys (n x hs floats) are one contiguous
 * block, as are its values. */
#ifndef RLAIF_ATTN_DECODE_H
#define RLAIF_ATTN_DECODE_H

/* sc[j] = scale * (k_j . q) for the n keys kc[j * hs .. j * hs + hs). */
void rlaif_attn_scores(float *sc, const float *kc, const float *q, int n, int hs, float scale);

/* out[0..hs) = sum_j p[j] v_j over the n values vc[j * hs ..]. */
void rlaif_attn_mix(float *out, const float *vc, const float *p, int n, int hs);

/* Which kernels run: "avx512" or "c". force: NULL keeps the run-time
 * choice, otherwise one of those names (tests compare the two). */
const char *rlaif_attn_decode_kernel(const char *force);

#endif
