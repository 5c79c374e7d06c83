/* test_attn_decode.c - decoding's attention kernel (src/engine/attn_decode.c)
 * against a float64 reference, for every kernel this CPU can run: head sizes
 * the AVX-512 kernels take (16..128, multiples of 16) and one they leave to
 * plain C (40), key counts around the 16-key score vectors, 32-key chunks
 * and 64-key blocks, with
 * and without a mask, one query head and groups, inputs off a cache line,
 * fp32 and bf16 caches.
 *
 * Error bound. The output is sum_j w_j v_j with w_j = e_j / sum_i e_i,
 * e_j = exp(s_j - M). If every computed e_j is e_j (1 + eta_j), |eta_j| <=
 * eta, the computed weights are w_j (1 + eta_j) / (1 + a weighted mean of
 * the eta), off by at most 2 eta / (1 - eta) w_j. The kernel's eta:
 *  - the score: s_j is hs products summed in fp32 (any order) and scaled,
 *    |s - s_exact| <= delta_j = gamma_{hs+1} scale sum_d |k_jd q_d|
 *    (Higham, Accuracy and Stability of Numerical Algorithms, 3.1;
 *    gamma_n = n u / (1 - n u), u = 2^-24); the argument s_j - m, m a
 *    running max, rounds once more, u |s_j - m| <= u (R + 2 delta), R the
 *    exact scores' range. A shift common to every key cancels in w, and
 *    the rescaling factor exp(m_old - m_new) multiplies the sums and the
 *    weight sum alike, so its own error cancels too;
 *  - the exponential: fast_expf, relative error <= EXP_ERR (checked
 *    below against libm's exp in double over the range softmax uses);
 *  - the rescalings: one rounding of each sum per rescale, at most one per
 *    32-key chunk, C of them: gamma_C for the sums and for the weight sum.
 * So eta = exp(delta_max + u (R + 2 delta_max)) (1 + EXP_ERR) - 1 + gamma_C.
 * Then the sums: the weight sum (positive terms) within gamma_n, the mix of
 * n terms within gamma_n sum_j w_j |v_jd| (scaled by the same weights), the
 * final scaling by 1 / l two roundings. In all,
 *   |out_d - ref_d| <= 1.01 (2 eta + 2 gamma_n + 2u) sum_j w_j |v_jd|,
 * 1.01 the slack for the float64 reference's own error and second-order
 * terms. The bf16 kernels (a bf16 cache) are held to the same bound against
 * the reference on the bf16 values: widening is exact, the arithmetic is
 * the fp32 kernels'.
 *
 * The cache those kernels read (model.c): on 2 MB boundaries (xalloc_huge,
 * so the kernel can back it with 2 MB pages) and zeroed, in both element
 * types, even where the allocator hands back memory a freed buffer dirtied
 * (a pad's slot is never written; its key must score finitely). */
#include "attn_decode.h"
#include "fast_expf.h"
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

static const double U = 5.9604644775390625e-08; /* 2^-24 */

static double gamma_n(int n) {
    return n * U / (1.0 - n * U);
}

#define EXP_ERR 1.2e-7 /* fast_expf's relative error bound, ~2 ulp (check_exp) */

static int failures;

/* fast_expf within EXP_ERR of exp over [-87, 0] (a softmax's arguments:
 * a score minus the running max; below -87 it clamps, to ~1e-38, and a
 * weight that small is below every bound here), every 2^-12 and at the
 * ends. Fails when the polynomial or the range reduction is broken. */
static void check_exp(void) {
    double worst = 0.0;
    for (double x = -87.0; x <= 0.0; x += 1.0 / 4096) {
        float f = (float)x;
        double rel = fabs(fast_expf(f) / exp((double)f) - 1.0);
        if (rel > worst) worst = rel;
    }
    if (!(worst <= EXP_ERR) && failures++ < 10)
        fprintf(stderr, "FAIL fast_expf: relative error %.3g over [-87, 0], bound %.3g\n", worst,
                EXP_ERR);
    printf("fast_expf: worst relative error %.3g over [-87, 0] (bound %.3g)\n", worst, EXP_ERR);
}

/* out (hs) against the float64 softmax attention of q over the n keys kc
 * and values vc (the values the cache holds, fp32) with mask (NULL: none) */
static void compare(const char *what, const float *out, const float *q, const float *kc,
                    const float *vc, const uint8_t *mask, int n, int hs, float scale) {
    double *s = malloc(sizeof(double) * (n ? n : 1)), smax = -INFINITY, smin = INFINITY;
    double dmax = 0.0, l = 0.0;
    for (int j = 0; j < n; j++) {
        double a = 0.0, sum = 0.0;
        for (int d = 0; d < hs; d++)
            sum += (double)kc[(size_t)j * hs + d] * q[d],
                a += fabs((double)kc[(size_t)j * hs + d] * q[d]);
        s[j] = scale * sum;
        if (mask && !mask[j]) continue;
        double delta = gamma_n(hs + 1) * scale * a;
        dmax = delta > dmax ? delta : dmax;
        smax = s[j] > smax ? s[j] : smax, smin = s[j] < smin ? s[j] : smin;
    }
    for (int j = 0; j < n; j++) s[j] = mask && !mask[j] ? 0.0 : exp(s[j] - smax), l += s[j];
    int chunks = (n + 31) / 32;
    double eta = exp(dmax + U * (smax - smin + 2 * dmax)) * (1.0 + EXP_ERR) - 1.0 + gamma_n(chunks);
    for (int d = 0; d < hs; d++) {
        double ref = 0.0, a = 0.0;
        for (int j = 0; j < n; j++)
            if (l > 0.0)
                ref += s[j] / l * vc[(size_t)j * hs + d],
                    a += s[j] / l * fabs((double)vc[(size_t)j * hs + d]);
        double bound = 1.01 * (2.0 * eta + 2.0 * gamma_n(n) + 2.0 * U) * a;
        if (!(fabs(out[d] - ref) <= bound) && failures++ < 10)
            fprintf(stderr, "FAIL %s: n=%d hs=%d dim %d: %.9g vs %.9g (bound %.3g)\n", what, n, hs,
                    d, out[d], ref, bound);
    }
    free(s);
}

/* The kernel over n keys of hs, grp query heads: fp32 (bf = 0) or bf16
 * (bf = 1: the cache holds kc and vc rounded to bf16; the reference takes
 * those values, widened exactly, so the bound is the same). masked: every
 * third key a pad, and the first 40, so a whole chunk has none. Each head
 * against the reference, and each head's output equal, bit for bit, to
 * the head alone (grp 1): a group shares the blocks of keys, not the
 * arithmetic. Rows of q and of the outputs strided, as in the engine's
 * activations; the cache off a cache line by off elements, as a head's
 * block inside a batch can be. */
static void check(const char *kern, int n, int hs, int grp, int off, int bf, int masked) {
    size_t ne = (size_t)n * hs, ld = (size_t)hs + 3;
    size_t bytes = (sizeof(float) * (ne + 16 + 64) + 63) / 64 * 64; /* aligned_alloc: a multiple */
    float *kbuf = aligned_alloc(64, bytes), *vbuf = aligned_alloc(64, bytes);
    uint16_t *kb16 = aligned_alloc(64, bytes), *vb16 = aligned_alloc(64, bytes);
    float *kc = kbuf + off, *vc = vbuf + off;
    uint16_t *kh = kb16 + off, *vh = vb16 + off;
    float *q = malloc(sizeof(float) * grp * ld), *out = malloc(sizeof(float) * grp * ld);
    float one[128];
    uint8_t *mask = malloc(n ? n : 1);
    for (size_t i = 0; i < ne; i++) kc[i] = 2.0f * frand(), vc[i] = frand();
    for (int j = 0; j < n; j++) mask[j] = (uint8_t)(!masked || (j % 3 != 1 && j >= 40));
    if (bf) { /* the values the cache holds, and the reference reads */
        rlaif_bf16_from_f32(kh, kc, ne), rlaif_bf16_to_f32(kc, kh, ne);
        rlaif_bf16_from_f32(vh, vc, ne), rlaif_bf16_to_f32(vc, vh, ne);
    }
    for (size_t i = 0; i < grp * ld; i++) q[i] = frand();
    float scale = 1.0f / sqrtf((float)hs);
    const uint8_t *mk = masked ? mask : NULL;
    rlaif_attn_decode(out, ld, q, ld, grp, bf ? NULL : kc, bf ? NULL : vc, bf ? kh : NULL,
                      bf ? vh : NULL, mk, n, hs, scale, NULL);
    char what[96];
    for (int h = 0; h < grp; h++) {
        snprintf(what, sizeof what, "%s %s grp=%d head %d off=%d%s", kern, bf ? "bf16" : "fp32",
                 grp, h, off, masked ? " masked" : "");
        compare(what, out + h * ld, q + h * ld, kc, vc, mk, n, hs, scale);
        if (grp == 1) continue;
        rlaif_attn_decode(one, hs, q + h * ld, hs, 1, bf ? NULL : kc, bf ? NULL : vc,
                          bf ? kh : NULL, bf ? vh : NULL, mk, n, hs, scale, NULL);
        if (memcmp(one, out + h * ld, sizeof(float) * hs) && failures++ < 10)
            fprintf(stderr, "FAIL %s: n=%d hs=%d: not the head alone's bits\n", what, n, hs);
    }
    free(kbuf), free(vbuf), free(kb16), free(vb16), free(q), free(out), free(mask);
}

/* rlaif_attn_queries, prefill's case: nq queries of a row over one cache
 * of n keys, query i seeing keys [lo_i, hi_i] (causal: hi_i = n - nq + i;
 * window > 0: lo_i = hi_i - window + 1, as a sliding window makes it),
 * grp heads each, the rows of q and out strided as in the activations.
 * Each head of each query against the reference over its keys, and equal,
 * bit for bit, to the query in a call of its own (two copies of it: a
 * one-query call is decoding's, whose kernel sums otherwise): a prefill
 * sliced another way gets the same bits. nq * grp past 64: the kernel's turns. */
static void check_queries(const char *kern, int n, int nq, int grp, int bf, int masked,
                          int window) {
    int hs = 64;
    size_t ne = (size_t)n * hs, ldh = (size_t)hs + 5, ldi = grp * ldh + 7;
    float *kc = malloc(sizeof(float) * ne), *vc = malloc(sizeof(float) * ne);
    uint16_t *kh = malloc(2 * ne), *vh = malloc(2 * ne);
    float *q = malloc(sizeof(float) * nq * ldi), *out = malloc(sizeof(float) * nq * ldi);
    float one[2 * 64 * 3];
    int *lo = malloc(sizeof(int) * nq), *hi = malloc(sizeof(int) * nq);
    uint8_t *mask = malloc(n);
    for (size_t i = 0; i < ne; i++) kc[i] = 2.0f * frand(), vc[i] = frand();
    for (int j = 0; j < n; j++) mask[j] = (uint8_t)(!masked || (j % 5 != 2 && j >= 7));
    if (bf) {
        rlaif_bf16_from_f32(kh, kc, ne), rlaif_bf16_to_f32(kc, kh, ne);
        rlaif_bf16_from_f32(vh, vc, ne), rlaif_bf16_to_f32(vc, vh, ne);
    }
    for (size_t i = 0; i < nq * ldi; i++) q[i] = frand();
    for (int i = 0; i < nq; i++) {
        hi[i] = n - nq + i;
        lo[i] = window > 0 && hi[i] - window + 1 > 0 ? hi[i] - window + 1 : 0;
    }
    float scale = 1.0f / sqrtf((float)hs);
    const uint8_t *mk = masked ? mask : NULL;
    const float *k32 = bf ? NULL : kc, *v32 = bf ? NULL : vc;
    const uint16_t *k16 = bf ? kh : NULL, *v16 = bf ? vh : NULL;
    rlaif_attn_queries(out, ldi, ldh, q, ldi, ldh, nq, grp, lo, hi, k32, v32, k16, v16, mk, hs,
                       scale);
    char what[96];
    for (int i = 0; i < nq; i++) {
        /* the query beside a copy of itself: a call of two, as a one-query
         * call goes through decoding's kernel (other sums, other bits) */
        int lo2[2] = {lo[i], lo[i]}, hi2[2] = {hi[i], hi[i]};
        rlaif_attn_queries(one, (size_t)grp * hs, hs, q + i * ldi, 0, ldh, 2, grp, lo2, hi2, k32,
                           v32, k16, v16, mk, hs, scale);
        for (int h = 0; h < grp; h++) {
            snprintf(what, sizeof what, "%s %s queries nq=%d grp=%d window=%d query %d head %d%s",
                     kern, bf ? "bf16" : "fp32", nq, grp, window, i, h, masked ? " masked" : "");
            const float *o = out + i * ldi + h * ldh;
            compare(what, o, q + i * ldi + h * ldh, kc + (size_t)lo[i] * hs,
                    vc + (size_t)lo[i] * hs, mk ? mk + lo[i] : NULL, hi[i] - lo[i] + 1, hs, scale);
            if (memcmp(one + h * hs, o, sizeof(float) * hs) && failures++ < 10)
                fprintf(stderr, "FAIL %s: not the bits of the query in its own call\n", what);
        }
    }
    free(kc), free(vc), free(kh), free(vh), free(q), free(out), free(lo), free(hi), free(mask);
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
    check_exp();
    const char *kerns[2] = {"c", "avx512"};
    static const int hss[] = {16, 32, 40, 48, 64, 80, 96, 112, 128};
    static const int ns[] = {0, 1, 2, 15, 16, 17, 31, 32, 33, 64, 65, 130, 513};
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
                for (int bf = 0; bf < 2; bf++)
                    for (int v = 0; v < 3; v++) /* (grp, off, masked) */
                        check(kerns[k], ns[i], hss[h], v == 2 ? 8 : 1, v == 1 ? 4 : 0, bf, v > 0),
                            ran++;
        /* many query heads a kv head: more than the kernel keeps at once */
        check(kerns[k], 100, 64, 70, 0, 1, 1), ran++;
        /* prefill: several queries a call (nq * grp past 64: turns) */
        for (int bf = 0; bf < 2; bf++) {
            check_queries(kerns[k], 200, 33, 1, bf, 0, 0), ran++;
            check_queries(kerns[k], 150, 30, 3, bf, 1, 0), ran++;
            check_queries(kerns[k], 300, 40, 1, bf, 1, 70), ran++;
            check_queries(kerns[k], 20, 20, 1, bf, 0, 0), ran++;
        }
    }
    printf("%d cases, %d failures\n", ran, failures);
    return failures ? 1 : 0;
}
