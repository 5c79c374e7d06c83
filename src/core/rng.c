/* rng.c - Philox-4x32-10 and the draws built on it. */
#include "rlaif/core/rng.h"

#include <math.h>

/* Constants from Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"
 * (SC11), as in Random123's philox.h. */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

void rlaif_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(PHILOX_M0, c0, &hi0, &lo0);
        mulhilo(PHILOX_M1, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

void rlaif_rng_init(rlaif_rng *r, uint64_t seed, uint32_t stream, uint32_t step, uint32_t index) {
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32);
    r->ctr[0] = 0;
    r->ctr[1] = index;
    r->ctr[2] = step;
    r->ctr[3] = stream;
    r->avail = 0;
}

uint32_t rlaif_rng_u32(rlaif_rng *r) {
    if (r->avail == 0) {
        rlaif_philox4x32(r->ctr, r->key, r->buf);
        r->ctr[0]++;
        r->avail = 4;
    }
    return r->buf[4 - r->avail--];
}

uint64_t rlaif_rng_u64(rlaif_rng *r) {
    uint64_t hi = rlaif_rng_u32(r);
    return (hi << 32) | rlaif_rng_u32(r);
}

float rlaif_rng_uniform(rlaif_rng *r) {
    return (float)(rlaif_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

double rlaif_rng_uniform_double(rlaif_rng *r) {
    return (double)(rlaif_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

float rlaif_rng_normal(rlaif_rng *r) {
    /* 1 - u keeps the log argument in (0, 1]. */
    double u1 = 1.0 - rlaif_rng_uniform_double(r), u2 = rlaif_rng_uniform_double(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * 3.14159265358979323846 * u2));
}

uint32_t rlaif_rng_below(rlaif_rng *r, uint32_t n) {
    /* Lemire's multiply-shift with rejection of the biased low region. */
    uint64_t m = (uint64_t)rlaif_rng_u32(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)rlaif_rng_u32(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

void rlaif_rng_permutation(uint64_t seed, uint32_t stream, uint32_t step, uint32_t *perm,
                           uint32_t n) {
    rlaif_rng r;
    rlaif_rng_init(&r, seed, stream, step, 0);
    for (uint32_t i = 0; i < n; i++) perm[i] = i;
    for (uint32_t i = n; i > 1; i--) { /* Fisher-Yates */
        uint32_t j = rlaif_rng_below(&r, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}
