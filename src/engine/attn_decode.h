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

/* Keys j < n of a call (counted from its first) that another copy holds
 * bit for bit: a prompt's prefix the rows of a batch copied from one row
 * (rlaif_kv_cache_same). k, v: that copy's first key and value, in the
 * cache's element type. Its whole blocks of keys are read from there, so a
 * batch's rows read one copy, which stays in cache from row to row, where
 * each row's own copy came from memory; the sums are the same bits. */
typedef struct {
    const void *k, *v;
    int n;
} rlaif_attn_same;

/* Attention of one query per query head over n cached keys and values:
 * for each of the grp query heads that read one cached head (grouped-query
 * attention; grp 1 without), h < grp,
 *   out[h * ldo + d] = sum_j w_j v_j[d],  w = softmax_j(scale * k_j . q_h)
 * over the keys j < n with mask[j] != 0 (mask NULL: all of them); the keys
 * kc[j * hs ..] and values vc[j * hs ..] are fp32, or bf16 kb and vb when
 * kb is not NULL (kc, vc then unused; each value widened to fp32 exactly,
 * the arithmetic in fp32). A head with no valid key gets 0. One pass with
 * the online softmax: the keys and values are read once, side by side.
 * same: NULL, or keys of the call held elsewhere too (above). */
void rlaif_attn_decode(float *out, size_t ldo, const float *q, size_t ldq, int grp, const float *kc,
                       const float *vc, const uint16_t *kb, const uint16_t *vb, const uint8_t *mask,
                       int n, int hs, float scale, const rlaif_attn_same *same);

/* The same for nq queries of one row at once (prefill over the cache):
 * query i's head h reads q[i * ldq_i + h * ldq_h ..] and writes out[i *
 * ldo_i + h * ldo_h ..], over the keys j in [lo[i], hi[i]] (kc ... from
 * the row's first slot; mask, if any, indexed by slot too). The keys go in
 * blocks at fixed slots (multiples of 64 from 0), each block in L1 for
 * every query that reads it, so a query's sums do not depend on the other
 * queries of the call (a prefill sliced differently gets the same bits).
 * rlaif_attn_decode is the case nq = 1, lo = 0, hi = n - 1. */
void rlaif_attn_queries(float *out, size_t ldo_i, size_t ldo_h, const float *q, size_t ldq_i,
                        size_t ldq_h, int nq, int grp, const int *lo, const int *hi,
                        const float *kc, const float *vc, const uint16_t *kb, const uint16_t *vb,
                        const uint8_t *mask, int hs, float scale);

/* 1 when rlaif_attn_queries takes a call's queries (nq > 1) in the lanes
 * of AVX-512 vectors (attn_decode.c): then the fastest way for a prefill
 * over the cache, fp32 or bf16, at any number of queries a row. */
int rlaif_attn_lanes(int hs);

/* Which kernels run: "avx512" or "c". force: NULL keeps the run-time
 * choice, otherwise one of those names (tests compare the two). */
const char *rlaif_attn_decode_kernel(const char *force);

#endif
