/* rng.h - counter-based random numbers (Philox-4x32-10, Salmon et al. 2011).
 *
 * A number is a pure function of (seed, stream, step, index, draw), never of
 * which rank computes it, so results do not depend on the rank count: sample
 * 17 of step 3 gets the same tokens whether 1 or 64 ranks generate the batch.
 *   key     = seed (64 bits)
 *   counter = (draw, index, step, stream) (32 bits each)
 * `draw` advances inside one rlaif_rng as numbers are taken. */
#ifndef RLAIF_RNG_H
#define RLAIF_RNG_H

#include <stdint.h>

/* Stream ids: one per purpose, so adding draws to one never shifts another. */
enum {
    RLAIF_STREAM_INIT = 1,     /* weight initialisation (index = parameter tensor) */
    RLAIF_STREAM_SHUFFLE = 2,  /* data order (step = epoch) */
    RLAIF_STREAM_SAMPLE = 3,   /* token sampling (index = sequence) */
    RLAIF_STREAM_PAIRS = 4,    /* which responses form a pair */
    RLAIF_STREAM_ORDER = 5,    /* which pairs are judged in both orders / A-B order */
    RLAIF_STREAM_JUDGE = 6,    /* builtin judge noise, boundary strings */
    RLAIF_STREAM_BACKOFF = 7,  /* retry jitter */
    RLAIF_STREAM_DATA = 8,     /* synthetic task data */
    RLAIF_STREAM_EVAL = 9,     /* evaluation sampling */
    RLAIF_STREAM_HELDOUT = 10, /* held-out problems of the synthetic task */
};

/* One Philox-4x32-10 block: 4 x 32 random bits from a counter and a key. */
void rlaif_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

typedef struct {
    uint32_t key[2];
    uint32_t ctr[4];
    uint32_t buf[4];
    int avail; /* unread words left in buf */
} rlaif_rng;

void rlaif_rng_init(rlaif_rng *r, uint64_t seed, uint32_t stream, uint32_t step, uint32_t index);
uint32_t rlaif_rng_u32(rlaif_rng *r);
uint64_t rlaif_rng_u64(rlaif_rng *r);
/* Uniform in [0, 1) with 24 (float) or 53 (double) random bits. */
float rlaif_rng_uniform(rlaif_rng *r);
double rlaif_rng_uniform_double(rlaif_rng *r);
/* Standard normal (Box-Muller, both values used). */
float rlaif_rng_normal(rlaif_rng *r);
/* Uniform integer in [0, n), without modulo bias. n > 0. */
uint32_t rlaif_rng_below(rlaif_rng *r, uint32_t n);
/* perm[0..n) = a permutation of 0..n-1 fixed by (seed, stream, step). */
void rlaif_rng_permutation(uint64_t seed, uint32_t stream, uint32_t step, uint32_t *perm,
                           uint32_t n);

#endif
