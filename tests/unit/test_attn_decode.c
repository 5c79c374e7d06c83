/* test_attn_decode.c - decoding's attention kernels (src/engine/attn_decode.c)
 * against float64 references, for every kernel this CPU can run: head sizes
 * the AVX-512 kernels take (16..128, multiples of 16) and one they leave to
 * plain C (40), key counts around the 16-key blocks, inputs off a cache line.
 *
 * Error bound: a score is hs products summed in fp32 (in any order: the
 * AVX-512 kernel adds 16 lane sums as a tree), then scaled once; an output
 * of the mix is n products summed. For n terms, each product rounded at most
 * once, |s - s_exact| <= gamma_n sum |terms|, gamma_n = n u / (1 - n u),
 * u = 2^-24 (Higham, Accuracy and Stability of Numerical Algorithms, 3.1);
 * the scale adds one rounding (gamma_{hs+1}). The float64 reference's own
 * error is covered by the slack factor 1.01. The bf16 kernels (a bf16
 * cache) are held to the same bound against the reference on the bf16
 * values: widening is exact, the arithmetic is the fp32 kernels'.
 *
 * The cache those kernels read (model.c): on 2 MB boundaries (xalloc_huge,
 * so the kernel can back it with 2 MB pages) and zeroed, in both element
 * types, even where the allocator hands back memory a freed buffer dirtied
 * (a pad's slot is never written; its key must score finitely). */
#include "attn_decode.h"
#include "gemm_bf16.h"
#include "rlaif/core/error.h"
#include "rlaif/engine/model.h"

#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static unsigned long long rng_state = 88172645463325252ULL;
static float frand(void) { /* xorshift64, uniform in [-1, 1) */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static double gamma_n(int n) {
    double u = ldexp(1.0, -24);
    return 1.01 * n * u / (1.0 - n * u);
}

static int failures;

/* The kernels over n keys of hs: fp32 (bf = 0) or bf16 (bf = 1: the cache
 * holds kc and vc rounded to bf16; the reference takes those values, widened
 * exactly, so the bound is the same). */
static void check(const char *kern, int n, int hs, int off, int bf) {
    /* off elements past a 64-byte boundary, as a head's block inside a batch can be */
    size_t bytes = sizeof(float) * ((size_t)n * hs + 16 - (size_t)n * hs % 16 + 64);
    float *kbuf = aligned_alloc(64, bytes), *vbuf = aligned_alloc(64, bytes);
    uint16_t *kb16 = aligned_alloc(64, bytes), *vb16 = aligned_alloc(64, bytes);
    float *kc = kbuf + off, *vc = vbuf + off, q[128], sc[600], p[600], out[128];
    uint16_t *kh = kb16 + off, *vh = vb16 + off;
    for (size_t i = 0; i < (size_t)n * hs; i++) kc[i] = frand(), vc[i] = frand();
    if (bf) { /* the values the cache holds, and the reference reads */
        rlaif_bf16_from_f32(kh, kc, (size_t)n * hs), rlaif_bf16_to_f32(kc, kh, (size_t)n * hs);
        rlaif_bf16_from_f32(vh, vc, (size_t)n * hs), rlaif_bf16_to_f32(vc, vh, (size_t)n * hs);
    }
    for (int d = 0; d < hs; d++) q[d] = frand();
    for (int j = 0; j < n; j++) p[j] = 0.5f * (frand() + 1.0f);
    float scale = 1.0f / sqrtf((float)hs);
    const char *ty = bf ? "bf16" : "fp32";
    if (bf)
        rlaif_attn_scores_bf16(sc, kh, q, n, hs, scale);
    else
        rlaif_attn_scores(sc, kc, q, n, hs, scale);
    for (int j = 0; j < n; j++) {
        double s = 0.0, a = 0.0;
        for (int d = 0; d < hs; d++)
            s += (double)kc[(size_t)j * hs + d] * q[d],
                a += fabs((double)kc[(size_t)j * hs + d] * q[d]);
        double err = fabs(sc[j] - scale * s), bound = gamma_n(hs + 1) * scale * a;
        if (!(err <= bound) && failures++ < 10)
            fprintf(stderr,
                    "FAIL %s %s scores n=%d hs=%d off=%d: key %d: %.9g vs %.9g (bound %.3g)\n",
                    kern, ty, n, hs, off, j, sc[j], scale * s, bound);
    }
    if (bf)
        rlaif_attn_mix_bf16(out, vh, p, n, hs);
    else
        rlaif_attn_mix(out, vc, p, n, hs);
    for (int d = 0; d < hs; d++) {
        double s = 0.0, a = 0.0;
        for (int j = 0; j < n; j++)
            s += (double)p[j] * vc[(size_t)j * hs + d],
                a += fabs((double)p[j] * vc[(size_t)j * hs + d]);
        double err = fabs(out[d] - s), bound = gamma_n(n) * a;
        if (!(err <= bound) && failures++ < 10)
            fprintf(stderr, "FAIL %s %s mix n=%d hs=%d off=%d: dim %d: %.9g vs %.9g (bound %.3g)\n",
                    kern, ty, n, hs, off, d, out[d], s, bound);
    }
    free(kbuf), free(vbuf), free(kb16), free(vb16);
}

/* The grouped kernels (grp query heads over one cached head, keys in
 * blocks): every score equal to the one-head kernel's, bit for bit (each is
 * one key's dot product either way); every mix within the same bound as
 * the one-head kernel's, against the float64 sum (its blocks add partial
 * sums in another order). Rows of q, scores and outputs strided, as in the
 * engine's scratch (maxT apart) and activations (hs apart). */
static void check_group(const char *kern, int n, int hs, int grp, int bf) {
    size_t ne = (size_t)n * hs, ld = (size_t)n + 3;
    float *kc = malloc(sizeof(float) * ne), *vc = malloc(sizeof(float) * ne);
    uint16_t *kb = malloc(2 * ne), *vb = malloc(2 * ne);
    float *q = malloc(sizeof(float) * grp * hs), *p = malloc(sizeof(float) * grp * ld);
    float *sc = malloc(sizeof(float) * grp * ld), *one = malloc(sizeof(float) * n);
    float *out = malloc(sizeof(float) * grp * hs);
    for (size_t i = 0; i < ne; i++) kc[i] = frand(), vc[i] = frand();
    rlaif_bf16_from_f32(kb, kc, ne), rlaif_bf16_to_f32(kc, kb, ne);
    rlaif_bf16_from_f32(vb, vc, ne), rlaif_bf16_to_f32(vc, vb, ne);
    for (int i = 0; i < grp * hs; i++) q[i] = frand();
    for (size_t i = 0; i < grp * ld; i++) p[i] = 0.5f * (frand() + 1.0f);
    float scale = 1.0f / sqrtf((float)hs);
    rlaif_attn_scores_group(sc, ld, q, hs, grp, bf ? NULL : kc, bf ? kb : NULL, n, hs, scale);
    rlaif_attn_mix_group(out, hs, p, ld, grp, bf ? NULL : vc, bf ? vb : NULL, n, hs);
    for (int h = 0; h < grp; h++) {
        if (bf)
            rlaif_attn_scores_bf16(one, kb, q + h * hs, n, hs, scale);
        else
            rlaif_attn_scores(one, kc, q + h * hs, n, hs, scale);
        for (int j = 0; j < n; j++)
            if (sc[h * ld + j] != one[j] && failures++ < 10)
                fprintf(stderr,
                        "FAIL %s grouped scores n=%d hs=%d grp=%d bf=%d: head %d key %d: "
                        "%.9g vs one head's %.9g\n",
                        kern, n, hs, grp, bf, h, j, sc[h * ld + j], one[j]);
        for (int d = 0; d < hs; d++) {
            double s = 0.0, a = 0.0;
            for (int j = 0; j < n; j++)
                s += (double)p[h * ld + j] * vc[(size_t)j * hs + d],
                    a += fabs((double)p[h * ld + j] * vc[(size_t)j * hs + d]);
            double err = fabs(out[h * hs + d] - s), bound = gamma_n(n) * a;
            if (!(err <= bound) && failures++ < 10)
                fprintf(stderr,
                        "FAIL %s grouped mix n=%d hs=%d grp=%d bf=%d: head %d dim %d: %.9g vs "
                        "%.9g (bound %.3g)\n",
                        kern, n, hs, grp, bf, h, d, out[h * hs + d], s, bound);
        }
    }
    free(kc), free(vc), free(kb), free(vb), free(q), free(p), free(sc), free(one), free(out);
}

/* 0 when every byte of p[0..n) is zero and p is on a 2 MB boundary */
static int zeroed_huge(const char *what, const void *p, size_t n) {
    if ((uintptr_t)p % ((size_t)2 << 20)) {
        fprintf(stderr, "FAIL: %s at %p, not on a 2 MB boundary\n", what, p);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i]) {
            fprintf(stderr, "FAIL: %s byte %zu of %zu is %d, not 0\n", what, i, n,
                    ((const unsigned char *)p)[i]);
            return 1;
        }
    return 0;
}

static int check_cache_memory(void) {
    int bad = 0;
    /* every buffer below from the heap and kept there when freed, not
     * fresh (zero) pages from mmap or a grown heap: a freed, dirtied
     * buffer's memory is then what the next one gets */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    for (int round = 0; round < 2; round++) {
        /* a buffer of the same size dirtied and freed first: the next
         * allocation may reuse its memory */
        size_t n = (size_t)5 << 20;
        char *d = xalloc_huge(n, 0);
        memset(d, 0xab, n);
        free(d);
        char *z = xalloc_huge(n, 1);
        bad |= zeroed_huge("xalloc_huge(zero)", z, n);
        free(z);
        rlaif_model_config c = {
            .n_layer = 2, .n_embd = 64, .n_head = 4, .vocab_size = 50, .max_seq_len = 1024};
        rlaif_model_config_fill(&c);
        for (int prec = 0; prec < 2; prec++) {
            int p = prec ? RLAIF_PREC_BF16 : RLAIF_PREC_FP32;
            size_t bytes = rlaif_kv_cache_bytes(&c, 8, 1000, p);
            d = xalloc_huge(bytes, 0);
            memset(d, 0xab, bytes);
            free(d);
            rlaif_kv_cache kv;
            if (rlaif_kv_cache_create(&kv, &c, 8, 1000, p)) return 1;
            const void *base = prec ? (const void *)kv.kb : (const void *)kv.k;
            bad |= zeroed_huge(prec ? "bf16 KV cache" : "fp32 KV cache", base, bytes);
            rlaif_kv_cache_free(&kv);
        }
    }
    return bad;
}

/* A cache larger than the memory left is refused with the numbers, not
 * allocated: here RLIMIT_AS set to what the process maps now + 256 MB, and a
 * 4.7 GB cache (GPT-2 124M's shape, 64 rows x 1000 slots). Without the
 * check, the allocation fails and xalloc_huge ends the process. Not under
 * AddressSanitizer: its shadow memory makes the address space limit
 * meaningless. */
static int check_cache_refused(void) {
#if defined(__SANITIZE_ADDRESS__)
    printf("KV cache refusal under RLIMIT_AS: not checked under AddressSanitizer\n");
    return 0;
#else
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double vm = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmSize:", 7)) vm = 1024.0 * strtod(line + 7, NULL);
    if (f) fclose(f);
    if (vm < 0) return fprintf(stderr, "FAIL: no VmSize in /proc/self/status\n"), 1;
    struct rlimit old, lim;
    if (getrlimit(RLIMIT_AS, &old)) return fprintf(stderr, "FAIL: getrlimit\n"), 1;
    lim = old, lim.rlim_cur = (rlim_t)vm + ((rlim_t)256 << 20);
    if (setrlimit(RLIMIT_AS, &lim)) return fprintf(stderr, "FAIL: setrlimit\n"), 1;
    rlaif_model_config c = {
        .n_layer = 12, .n_embd = 768, .n_head = 12, .vocab_size = 50257, .max_seq_len = 1024};
    rlaif_model_config_fill(&c);
    rlaif_kv_cache kv;
    int rc = rlaif_kv_cache_create(&kv, &c, 64, 1000, RLAIF_PREC_FP32);
    setrlimit(RLIMIT_AS, &old);
    const char *msg = rlaif_error_message();
    if (rc != RLAIF_EX_USAGE || !strstr(msg, "4.719 GB") || !strstr(msg, "RLIMIT_AS")) {
        if (!rc) rlaif_kv_cache_free(&kv);
        return fprintf(stderr, "FAIL: cache over RLIMIT_AS: rc %d, \"%s\"\n", rc, msg), 1;
    }
    printf("refused: %s\n", msg);
    rlaif_error_clear();
    return 0;
#endif
}

int main(void) {
    if (check_cache_memory() || check_cache_refused()) return 1;
    const char *kerns[2] = {"c", "avx512"};
    static const int hss[] = {16, 32, 40, 48, 64, 80, 96, 112, 128};
    static const int ns[] = {1, 2, 15, 16, 17, 33, 64, 513};
    int ran = 0;
    for (int k = 0; k < 2; k++) {
        const char *got = rlaif_attn_decode_kernel(kerns[k]);
        if (k == 1 && !__builtin_cpu_supports("avx512f")) continue; /* this CPU cannot run it */
        if (strcmp(got, kerns[k]) != 0) {
            fprintf(stderr, "FAIL: asked for %s, the kernels run %s\n", kerns[k], got);
            return 1;
        }
        for (size_t h = 0; h < sizeof hss / sizeof *hss; h++)
            for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
                for (int off = 0; off < 2; off++)
                    for (int bf = 0; bf < 2; bf++)
                        check(kerns[k], ns[i], hss[h], off * 4, bf), ran++;
        static const int grps[] = {2, 8}, gns[] = {1, 63, 64, 65, 130, 458};
        for (int h = 0; h < 2; h++)
            for (size_t i = 0; i < sizeof gns / sizeof *gns; i++)
                for (int gi = 0; gi < 2; gi++)
                    for (int bf = 0; bf < 2; bf++)
                        check_group(kerns[k], gns[i], 64 * (h + 1), grps[gi], bf), ran++;
    }
    printf("%d cases, %d failures\n", ran, failures);
    return failures ? 1 : 0;
}
