/* team_runs.h - n items split into one contiguous run per thread, with
 * stealing from the back (private to the engine; the packed few-row
 * products, gemm_packed.c).
 *
 * Why not OpenMP's schedules: a static split gives each thread one read
 * stream (the machine reads fastest so), but the whole product then waits
 * for the slowest thread; items handed out one at a time balance the team
 * but break the streams (gemm_packed.c has the measurements). Here each
 * thread takes its own run's items from the front, in order, and a thread
 * whose run is done takes the last item of the run with the most left, so
 * on a quiet machine every thread reads its run as one stream and on a
 * busy one (a core shared with another job, interrupts) the faster thread
 * finishes the slower one's tail.
 *
 * Each run is one 64-bit word, next | end << 32, changed only by compare
 * and swap: the owner moves next up, a thief moves end down, both only
 * while next < end, so every item is taken exactly once. The runs are set
 * for the team size asked for; a thread the team does not get has its run
 * taken by the others (tests/unit/test_model_gemm runs both). */
#ifndef RLAIF_TEAM_RUNS_H
#define RLAIF_TEAM_RUNS_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct {
    _Alignas(64) _Atomic uint64_t span; /* a line each: the threads' CAS do not collide */
} rlaif_run;

/* runs[t] = items [n t / nt, n (t + 1) / nt) */
static inline void rlaif_runs_init(rlaif_run *runs, int n, int nt) {
    for (int t = 0; t < nt; t++) {
        uint64_t lo = (uint64_t)n * (uint64_t)t / (uint64_t)nt;
        uint64_t hi = (uint64_t)n * (uint64_t)(t + 1) / (uint64_t)nt;
        atomic_init(&runs[t].span, lo | hi << 32);
    }
}

/* The next item for thread t (< nt): its own run's front (*stolen = 0),
 * else the back of the run with the most left (*stolen = 1); -1 when every
 * item is taken. */
static inline int rlaif_runs_next(rlaif_run *runs, int nt, int t, int *stolen) {
    uint64_t s = t < nt ? atomic_load(&runs[t].span) : 0;
    while (t < nt && (uint32_t)s < (uint32_t)(s >> 32))
        if (atomic_compare_exchange_weak(&runs[t].span, &s, s + 1)) {
            *stolen = 0;
            return (int)(uint32_t)s;
        }
    for (;;) {
        int v = -1;
        uint32_t most = 0;
        for (int u = 0; u < nt; u++) {
            uint64_t x = atomic_load(&runs[u].span);
            uint32_t left = (uint32_t)(x >> 32) - (uint32_t)x;
            if (left > most) most = left, v = u;
        }
        if (v < 0) return -1;
        uint64_t x = atomic_load(&runs[v].span);
        while ((uint32_t)x < (uint32_t)(x >> 32))
            if (atomic_compare_exchange_weak(&runs[v].span, &x, x - ((uint64_t)1 << 32))) {
                *stolen = 1;
                return (int)(uint32_t)(x >> 32) - 1;
            }
    }
}

#endif
