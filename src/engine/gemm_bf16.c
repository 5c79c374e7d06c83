/* gemm_bf16.c - bfloat16 matrix products with fp32 accumulation (see
 * gemm_bf16.h): conversions, the plain C kernel, the blocked driver of the
 * SIMD kernels and the dispatch.
 *
 * The driver blocks like a real GEMM: K in blocks of at most BF16_KCP pairs
 * (768 k: a 64-column B panel of a block is 96 KB, in L2); per block, op(A)
 * is packed once (converted to bf16 on the way when it is fp32) by the whole
 * team, then the threads take 64-column panels of C dynamically, each
 * packing its B panel into the pair layout and running the kernel over all
 * rows. Many rows over a small B (weight gradients) go rows first instead:
 * B packed whole, the threads take blocks of rows; a long K over a small C
 * goes K blocks first (each thread keeps its panels). Every output is a sum
 * over k in a fixed order whatever the number of threads or the order
 * (threads split rows or columns, never k). */
#include "config.h"
#include "gemm_bf16.h"
#include "gemm_bf16_x86.h"
#include "model_gemm.h" /* rlaif_bias_fill */
#include "team_runs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------ conversions */

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Round to nearest even on the bits: adding 0x7FFF plus the lowest kept bit
 * carries into the kept half exactly when the dropped half is above one
 * half, or equal to it with an odd kept half. A carry out of the
 * significand moves to the next exponent (or to Inf), as rounding should. */
static inline rlaif_bf16 bf16_round(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (rlaif_bf16)((u >> 16) | 0x0040u); /* NaN */
    return (rlaif_bf16)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static inline float bf16_float(rlaif_bf16 h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

enum { K_C, K_AVX512BF16, K_AMX };
static int forced = -1; /* the kernel a test asked for, or -1 */

/* Whether the AVX-512 conversions run: on a CPU that has them, unless a
 * test forced the plain C kernel (which then covers the scalar code). */
static int simd_convert(void) {
    static int have = -1;
    if (have < 0) have = bf16_x86_avx512bw();
    return have && forced != K_C;
}

void rlaif_bf16_from_f32(rlaif_bf16 *dst, const float *src, size_t n) {
    if (simd_convert()) {
        bf16_x86_from_f32(dst, src, n);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = bf16_round(src[i]);
}

void rlaif_bf16_to_f32(float *dst, const rlaif_bf16 *src, size_t n) {
    if (simd_convert()) {
        bf16_x86_to_f32(dst, src, n);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = bf16_float(src[i]);
}

/* ---------------------------------------------------------------- plain C */

/* Element (r, c) of a stored operand, as the bf16 value in a float. */
static inline float elem(const void *X, int f32, int ld, int trans, int r, int c) {
    size_t at = trans ? (size_t)c * ld + r : (size_t)r * ld + c;
    return f32 ? bf16_float(bf16_round(((const float *)X)[at]))
               : bf16_float(((const rlaif_bf16 *)X)[at]);
}

static int kernel_id(void);

/* Weights packed beforehand (rlaif_bf16_pack) are in the strip layout
 * while the AMX kernel is in charge (gemm_bf16_x86.h), else in panels. */
static int strips(void) {
    return kernel_id() == K_AMX;
}

/* The packed layout (rlaif_bf16_pack): 64-column panels, each kpad pair
 * rows of 64 uint32 pairs (lower half: the even k); or each panel as four
 * strips of 16 x 16 tiles. */
static size_t packed_at(int kpad, int k, int n) {
    size_t q = (size_t)(k / 2), panel = (size_t)(n / BF16_NR) * (size_t)kpad * BF16_NR;
    if (strips())
        return panel + (size_t)(n % BF16_NR / 16) * (size_t)kpad * 16 + q / 16 * 256 +
               (size_t)(n % 16) * 16 + q % 16;
    return panel + q * BF16_NR + (size_t)(n % BF16_NR);
}

static inline float packed_elem(const uint32_t *P, int kpad, int k, int n) {
    return bf16_float((rlaif_bf16)(P[packed_at(kpad, k, n)] >> (16 * (k & 1))));
}

/* Each output the fp32 sum over k in order, then beta * C added. Rows split
 * over the team. B == NULL: op(B) is packed (P, kpad). */
static void gemm_c(int ta, int tb, int M, int N, int K, const void *A, int a_f32, int lda,
                   const void *B, int b_f32, int ldb, const uint32_t *P, int kpad, float beta,
                   float *C, int ldc, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++)
                s += elem(A, a_f32, lda, ta, m, k) *
                     (B ? elem(B, b_f32, ldb, tb, k, n) : packed_elem(P, kpad, k, n));
            float *c = C + (size_t)m * ldc + n;
            *c = beta == 0.0f ? s : s + beta * *c;
        }
}

/* ------------------------------------------------------- blocked driver */

static int round_up(int x, int q) {
    return (x + q - 1) / q * q;
}

/* Packing buffers of the calling thread, kept between calls: fresh pages
 * for every product cost page faults (a 3 MB A block: 13% of a product's
 * time in a profile). Grown when too small; held until the thread ends. */
typedef struct {
    void *p;
    size_t bytes;
} buffer;

static void *buffer_get(buffer *b, size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (b->bytes >= bytes) return b->p;
    free(b->p);
    b->p = aligned_alloc(64, bytes);
    b->bytes = b->p ? bytes : 0;
    return b->p;
}

static _Thread_local buffer a_buf, b_buf, w_buf;

static int thread_num(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Rows [m0, m1) of C: the team packs op(A)'s rows (all of K) into Ap, then
 * takes 64-column panels dynamically (few rows over packed weights: in
 * runs, see gemm_packed), each through every K block in order
 * (its C block stays in cache between K blocks). B panels come packed
 * (Bfull, the layout of rlaif_bf16_pack) or are packed per block into bp. */
typedef struct {
    bf16_panel_fn *panel;
    const bf16_src *A, *B;
    const uint32_t *Bfull;
    int M, N, kcp, kpad, panels;
    float beta;
    float *C;
    int ldc;
    rlaif_run *runs; /* few rows over packed weights: the panels in runs */
    int nruns;
} driver;

/* Where the block after K block (p, q0 + nq pairs) starts in d->Bfull, for
 * the kernel to prefetch nq pairs of it (bf16_panel_fn): the next K block
 * of the panel, or the next panel's first; NULL where those nq pairs would
 * run past the end. */
static const uint32_t *next_block(const driver *d, int p, int q0, int nq) {
    size_t at = (size_t)p * d->kpad + (size_t)(q0 + nq);
    if (at + (size_t)nq > (size_t)d->panels * d->kpad) return NULL;
    return d->Bfull + at * BF16_NR;
}

/* Panel p of C rows [m0, m1) through every K block in order. */
static void one_panel(const driver *d, int p, int m0, int m1, const uint32_t *Ap, uint32_t *bp) {
    int nkb = (d->kpad + d->kcp - 1) / d->kcp;
    int n0 = p * BF16_NR, ncv = d->N - n0 < BF16_NR ? d->N - n0 : BF16_NR;
    for (int kb = 0; kb < nkb; kb++) {
        int q0 = kb * d->kcp, nq = d->kpad - q0 < d->kcp ? d->kpad - q0 : d->kcp;
        int mode = kb > 0 ? BF16_ADD : d->beta == 0.0f ? BF16_STORE : BF16_BETA;
        const uint32_t *b = bp, *next = NULL;
        if (d->Bfull)
            b = d->Bfull + ((size_t)p * d->kpad + (size_t)q0) * BF16_NR,
            next = next_block(d, p, q0, nq);
        else
            bf16_x86_pack_b(d->B, n0, q0, nq, bp);
        d->panel(Ap + q0, d->kpad, m1 - m0, nq, b, d->C + (size_t)m0 * d->ldc + n0, d->ldc, ncv,
                 mode, d->beta, next);
    }
}

static void row_block(const driver *d, int m0, int m1, uint32_t *Ap, uint32_t *bp) {
    int mp = round_up(m1 - m0, BF16_QUANTUM);
#pragma omp for schedule(static)
    for (int m = 0; m < mp; m += BF16_QUANTUM)
        bf16_x86_pack_a(d->A, m0 + m, m0 + m + BF16_QUANTUM, 0, d->kpad, Ap + (size_t)m * d->kpad,
                        d->kpad);
    if (d->runs) {
        int p, back;
        while ((p = rlaif_runs_next(d->runs, d->nruns, thread_num(), &back)) >= 0)
            one_panel(d, p, m0, m1, Ap, bp);
#pragma omp barrier
        return;
    }
#pragma omp for schedule(dynamic)
    for (int p = 0; p < d->panels; p++) one_panel(d, p, m0, m1, Ap, bp);
}

/* Rows first: op(B) packed whole (d->Bfull) beforehand; each thread takes
 * blocks of rb rows, packs them into its own Ap and runs every panel over
 * them. The same sums in the same order as row_block's (rb is a multiple
 * of the AMX kernel's 32 rows, so its blocks, whose edge ones add C in
 * their own order, fall where row_block's do). */
static void row_chunks(const driver *d, int rb, uint32_t *Ap) {
    int nkb = (d->kpad + d->kcp - 1) / d->kcp, chunks = (d->M + rb - 1) / rb;
#pragma omp for schedule(dynamic)
    for (int c = 0; c < chunks; c++) {
        int m0 = c * rb, m1 = m0 + rb < d->M ? m0 + rb : d->M;
        bf16_x86_pack_a(d->A, m0, m0 + round_up(m1 - m0, BF16_QUANTUM), 0, d->kpad, Ap, d->kpad);
        for (int p = 0; p < d->panels; p++) {
            int n0 = p * BF16_NR, ncv = d->N - n0 < BF16_NR ? d->N - n0 : BF16_NR;
            for (int kb = 0; kb < nkb; kb++) {
                int q0 = kb * d->kcp, nq = d->kpad - q0 < d->kcp ? d->kpad - q0 : d->kcp;
                int mode = kb > 0 ? BF16_ADD : d->beta == 0.0f ? BF16_STORE : BF16_BETA;
                d->panel(Ap + q0, d->kpad, m1 - m0, nq,
                         d->Bfull + ((size_t)p * d->kpad + (size_t)q0) * BF16_NR,
                         d->C + (size_t)m0 * d->ldc + n0, d->ldc, ncv, mode, d->beta,
                         next_block(d, p, q0, nq));
            }
        }
    }
}

/* K blocks first (a long K over a small C, as an LM head's d(lnf): K =
 * 50257): per K block the team packs op(A)'s slice (double-buffered, one
 * barrier a block), then each thread runs the same panels at every block,
 * so its columns of C stay in its cache from one block to the next. Panel
 * by panel instead, every panel reread the whole packed A (16 MB blocks of
 * rows for the LM head). The same sums in the same order as row_block's. */
static void k_blocks(const driver *d, uint32_t *A2, uint32_t *bp) {
    int nkb = (d->kpad + d->kcp - 1) / d->kcp, mp = round_up(d->M, BF16_QUANTUM);
    uint32_t *Ab[2] = {A2, A2 + (size_t)mp * d->kcp}; /* A2 holds two slices */
    int me = thread_num(), nt = 1;
#ifdef _OPENMP
    nt = omp_get_num_threads(); /* the team as granted, not as asked */
#endif
    for (int kb = 0; kb < nkb; kb++) {
        int q0 = kb * d->kcp, nq = d->kpad - q0 < d->kcp ? d->kpad - q0 : d->kcp;
        uint32_t *Ap = Ab[kb & 1];
#pragma omp for schedule(static)
        for (int m = 0; m < mp; m += BF16_QUANTUM)
            bf16_x86_pack_a(d->A, m, m + BF16_QUANTUM, q0, nq, Ap + (size_t)m * d->kcp, d->kcp);
        int mode = kb > 0 ? BF16_ADD : d->beta == 0.0f ? BF16_STORE : BF16_BETA;
        for (int p = me; p < d->panels; p += nt) {
            int n0 = p * BF16_NR, ncv = d->N - n0 < BF16_NR ? d->N - n0 : BF16_NR;
            bf16_x86_pack_b(d->B, n0, q0, nq, bp);
            d->panel(Ap, d->kcp, d->M, nq, bp, d->C + n0, d->ldc, ncv, mode, d->beta, NULL);
        }
    }
}

/* Rows a thread packs at a time in the rows-first order: its packed A at
 * most 256 KB (in L2 beside B's panels), a multiple of the kernel's 32,
 * and at least four chunks a thread so the dynamic schedule can balance. */
static int rows_per_chunk(int M, int kpad, int nt) {
    int rb = (int)(((size_t)256 << 10) / ((size_t)kpad * sizeof(uint32_t))) / 32 * 32;
    int fair = round_up((M + 4 * nt - 1) / (4 * nt), 32);
    if (rb > 256) rb = 256;
    if (rb > fair) rb = fair;
    return rb < 32 ? 32 : rb;
}

/* K's pairs in nkb blocks of at most BF16_KCP, each kcp pairs (the last
 * the rest), padded to kpad: the blocking every packed path shares, so
 * the strips sum in the panels' order. */
static void k_blocks_of(int K, int *nkb, int *kcp, int *kpad) {
    int KP = (K + 1) / 2;
    *nkb = (KP + BF16_KCP - 1) / BF16_KCP;
    *kcp = round_up((KP + *nkb - 1) / *nkb, BF16_QUANTUM);
    *kpad = round_up(KP, BF16_QUANTUM);
}

/* C = op(A) @ op(B) + beta C through packing and a panel kernel; B == NULL:
 * op(B) is Bpre, packed by rlaif_bf16_pack. Rows go in blocks whose packed
 * A is at most 16 MB (one block for training shapes up to K = 768 x 10k
 * rows); two barriers a block. Returns -1 (nothing done) when the buffers
 * cannot be had. */
static int gemm_packed(bf16_panel_fn *panel, const bf16_src *A, const bf16_src *B,
                       const uint32_t *Bpre, int M, int N, int K, float beta, float *C, int ldc,
                       int nt) {
    int nkb, kcp, kpad;
    k_blocks_of(K, &nkb, &kcp, &kpad);
    int panels = (N + BF16_NR - 1) / BF16_NR;
    int mc = (int)(((size_t)4 << 20) / (size_t)kpad) / BF16_QUANTUM * BF16_QUANTUM;
    if (mc < BF16_QUANTUM) mc = BF16_QUANTUM;
    if (mc > round_up(M, BF16_QUANTUM)) mc = round_up(M, BF16_QUANTUM);
    size_t bsize = (size_t)kcp * BF16_NR, fsize = (size_t)kpad * BF16_NR * (size_t)panels;
    /* Few rows of a Conv1D weight (B stored (K, N)): the product is bound by
     * reading B, so pack all of it first in one sweep along the stored rows
     * (measured: panel by panel, a page apart, took over half of a 32-row
     * product); up to 32 MB packed, as a GPT-2 c_fc (4.7 MB). */
    int wide = B && !B->trans && M <= 64 && fsize <= ((size_t)8 << 20);
    /* Many rows over a small B (a weight gradient, K = the batch's rows;
     * an LM head's d(wte): 50257 rows): panel by panel, each panel reread
     * the whole A block and wrote C 64 columns a row, a row apart; rows
     * first packs B whole (at most 2 MB) and has each thread write whole
     * rows of C from its own L2-sized A. Measured 2026-12-04 (Intel Xeon
     * with AMX, 2 threads, C cold): d(wte) 62 -> 25 ms, 3072 x 768 x 256
     * 2.7 -> 1.4 ms, 4096 x 768 x 768 6.8 -> 3.6 ms; at 256 rows it was
     * up to 1.3x slower, hence the 512. */
    int rows = B && M >= 512 && fsize * sizeof(uint32_t) <= ((size_t)2 << 20);
    int rb = rows_per_chunk(M, kpad, nt);
    if (rows) wide = 1, mc = rb * nt;
    /* Measured 2026-12-04 (Intel Xeon with AMX, 2 threads): the LM head's
     * d(lnf), 256 x 768 x 50257, 38 -> 28 ms; 256 x 768 x 3072 within
     * noise either way. Few rows (decoding) keep the panel order, which is
     * what the product chooser has timed there. */
    int kfirst = B && !wide && M > 64 && nkb >= 4 && (size_t)M * N <= ((size_t)1 << 18);
    if (kfirst) mc = 2 * round_up(M, BF16_QUANTUM) * kcp / kpad + 1; /* two slices */
    uint32_t *Ap = buffer_get(&a_buf, sizeof(uint32_t) * (size_t)mc * kpad);
    uint32_t *Bp = B && !wide ? buffer_get(&b_buf, sizeof(uint32_t) * bsize * (size_t)nt) : NULL;
    uint32_t *Bw = wide ? buffer_get(&w_buf, sizeof(uint32_t) * fsize) : NULL;
    if (!Ap || (B && !wide && !Bp) || (wide && !Bw)) return -1;
    /* Few rows over packed weights (decoding) read the weights once: each
     * thread a contiguous run of panels, one read stream, the faster thread
     * taking the other's last panels (team_runs.h, as gemm_packed.c's fp32
     * kernel), where panels handed out one at a time interleaved the two
     * threads' reads. tools/bench/bench_gemm_bf16 5 2 decode, 2 rounds each
     * (Intel Xeon with AMX, 2026-12-05, the 32-row blocks of the AMX kernel
     * on both sides): 32 x 3072 x 768 0.40 -> 0.35-0.36 ms, 32 x 768 x 3072
     * 0.43-0.45 -> 0.36-0.39, the 32-row LM head 6.4-6.5 -> 5.5-5.6, 64 x
     * 3072 x 768 0.49-0.51 -> 0.45. The runs are for the team asked for; a
     * thread the team does not get has its run taken by the others. */
    int nr = nt > 1 ? nt : 1, use_runs = Bpre && M <= BF16_FEW && mc >= M;
    rlaif_run runs[nr];
    if (use_runs) rlaif_runs_init(runs, panels, nr);
    driver d = {panel, A, B, wide ? Bw : Bpre, M, N, kcp, kpad, panels, beta, C, ldc, NULL, nr};
    if (use_runs) d.runs = runs;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        uint32_t *bp = Bp ? Bp + bsize * (size_t)thread_num() : NULL;
        if (wide && !B->trans) { /* along the stored rows */
#pragma omp for schedule(static)
            for (int q = 0; q < kpad; q += BF16_QUANTUM)
                bf16_x86_pack_b_rows(B, 0, q, q + BF16_QUANTUM, kpad, Bw);
        } else if (wide) { /* a panel's columns are stored rows */
#pragma omp for schedule(static)
            for (int p = 0; p < panels; p++)
                bf16_x86_pack_b(B, p * BF16_NR, 0, kpad, Bw + (size_t)p * kpad * BF16_NR);
        }
        if (kfirst)
            k_blocks(&d, Ap, bp);
        else if (rows)
            row_chunks(&d, rb, Ap + (size_t)thread_num() * rb * kpad);
        else
            for (int m0 = 0; m0 < M; m0 += mc) row_block(&d, m0, m0 + mc < M ? m0 + mc : M, Ap, bp);
    }
    return 0;
}

/* --------------------------------------------------------------- dispatch */

static const char *kernel_names[] = {"c", "avx512bf16", "amx"};

static int best_kernel(void) {
    static int best = -1;
    if (best < 0) best = bf16_x86_amx() ? K_AMX : bf16_x86_avx512bf16() ? K_AVX512BF16 : K_C;
    return best;
}

static int kernel_id(void) {
    return forced >= 0 ? forced : best_kernel();
}

const char *rlaif_bf16_kernel(const char *force) {
    if (force)
        for (int i = 0; i <= best_kernel(); i++)
            if (!strcmp(force, kernel_names[i])) forced = i;
    return kernel_names[kernel_id()];
}

void rlaif_bf16_gemm_ex(int ta, int tb, int M, int N, int K, const void *A, int a_f32, int lda,
                        const void *B, int b_f32, int ldb, float beta, float *C, int ldc,
                        int nthreads) {
    if (M <= 0 || N <= 0) return;
    int id = kernel_id();
    if (id != K_C && K > 0) {
        bf16_src a = {A, a_f32, lda, ta, M, K}, b = {B, b_f32, ldb, tb, K, N};
        bf16_panel_fn *panel = id == K_AMX ? bf16_panel_amx : bf16_panel_avx512;
        if (gemm_packed(panel, &a, &b, NULL, M, N, K, beta, C, ldc, nthreads) == 0) return;
    }
    gemm_c(ta, tb, M, N, K, A, a_f32, lda, B, b_f32, ldb, NULL, 0, beta, C, ldc, nthreads);
}

void rlaif_bf16_gemm(int ta, int tb, int M, int N, int K, const rlaif_bf16 *A, int lda,
                     const rlaif_bf16 *B, int ldb, float beta, float *C, int ldc, int nthreads) {
    rlaif_bf16_gemm_ex(ta, tb, M, N, K, A, 0, lda, B, 0, ldb, beta, C, ldc, nthreads);
}

void rlaif_bf16_smallm(int w_trans, int M, int N, int K, const float *A, int lda,
                       const rlaif_bf16 *W, int ldw, float beta, float *C, int ldc, int nthreads) {
    rlaif_bf16_gemm_ex(0, w_trans, M, N, K, A, 1, lda, W, 0, ldw, beta, C, ldc, nthreads);
}

/* ------------------------------------------------------- packed weights */

size_t rlaif_bf16_packed_size(int K, int N) {
    size_t kpad = (size_t)round_up((K + 1) / 2, BF16_QUANTUM);
    return sizeof(uint32_t) * kpad * BF16_NR * (size_t)((N + BF16_NR - 1) / BF16_NR);
}

void rlaif_bf16_pack(int w_trans, int K, int N, const void *W, int w_f32, int ldw, void *packed,
                     int nthreads) {
    int kpad = round_up((K + 1) / 2, BF16_QUANTUM), panels = (N + BF16_NR - 1) / BF16_NR;
    uint32_t *P = packed;
    bf16_src b = {W, w_f32, ldw, w_trans, K, N};
    int simd = simd_convert(), st = strips();
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
    for (int p = 0; p < panels; p++) {
        uint32_t *dst = P + (size_t)p * kpad * BF16_NR;
        uint32_t *pn = st ? buffer_get(&w_buf, sizeof(uint32_t) * (size_t)kpad * BF16_NR) : NULL;
        if (st && pn) { /* the panel, then its strips */
            bf16_x86_pack_b(&b, p * BF16_NR, 0, kpad, pn);
            bf16_amx_strips_from_panel(dst, pn, kpad);
            continue;
        }
        if (simd && !st) {
            bf16_x86_pack_b(&b, p * BF16_NR, 0, kpad, dst);
            continue;
        }
        for (int q = 0; q < kpad; q++)
            for (int j = 0; j < BF16_NR; j++) {
                int n = p * BF16_NR + j, k = 2 * q;
                uint32_t lo = n < N && k < K ? bf16_round(elem(W, w_f32, ldw, w_trans, k, n)) : 0;
                uint32_t hi =
                    n < N && k + 1 < K ? bf16_round(elem(W, w_f32, ldw, w_trans, k + 1, n)) : 0;
                P[packed_at(kpad, 2 * q, n)] = lo | hi << 16;
            }
    }
}

/* C = A @ the packed weights + beta C in the strip layout (AMX): the rows
 * packed, turned to columns, and each thread a run of panels, every K
 * block of a panel in turn as gemm_packed's (the same sums, bit for bit,
 * at up to BF16_FEW rows: each K block's tiles start from zero and are
 * added to C in the same modes). Returns -1 when the buffers cannot be
 * had. */
static int strips_gemm(int M, int N, int K, const float *A, int lda, const uint32_t *W, float beta,
                       const float *bias, const float *res, float *C, int ldc, int nt) {
    int nkb, kcp, kpad;
    k_blocks_of(K, &nkb, &kcp, &kpad);
    int panels = (N + BF16_NR - 1) / BF16_NR, G = (M + 15) / 16, Gp = G > 1 ? round_up(G, 2) : 1;
    size_t bytes = sizeof(uint32_t) * (size_t)16 * Gp * kpad;
    uint32_t *Ap = buffer_get(&a_buf, bytes), *Xt = buffer_get(&b_buf, bytes);
    if (!Ap || !Xt) return -1;
    bf16_src a = {A, 1, lda, 0, M, K};
    int nr = nt > 1 ? nt : 1;
    rlaif_run runs[nr];
    rlaif_runs_init(runs, panels, nr);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        /* the rows packed (rows past M: zeros) and turned to columns by the
         * team, a share of the 16-row groups each: one thread alone kept
         * the other waiting (6% of a GPT-2 124M judge's prefill samples,
         * a fifth of its products') */
        int p, back, me = thread_num(), tn = 1;
#ifdef _OPENMP
        tn = omp_get_num_threads(); /* the team as granted, not as asked */
#endif
        int g0 = Gp * me / tn, g1 = Gp * (me + 1) / tn;
        if (g0 < g1) {
            uint32_t *ap = Ap + (size_t)16 * g0 * kpad;
            bf16_x86_pack_a(&a, 16 * g0, 16 * g1, 0, kpad, ap, kpad);
            bf16_amx_rows_to_columns(ap, g1 - g0, kpad, Xt + (size_t)g0 * kpad * 16);
        }
#pragma omp barrier
        while ((p = rlaif_runs_next(runs, nr, thread_num(), &back)) >= 0) {
            int n0 = p * BF16_NR, ncv = N - n0 < BF16_NR ? N - n0 : BF16_NR;
            for (int kb = 0; kb < nkb; kb++) {
                int q0 = kb * kcp, nq = kpad - q0 < kcp ? kpad - q0 : kcp;
                int mode = kb > 0 ? BF16_ADD : beta == 0.0f ? BF16_STORE : BF16_BETA;
                bf16_amx_strips(W + (size_t)p * kpad * BF16_NR, kpad, q0, nq, Xt, M, C + n0, ldc,
                                ncv, mode, beta, bias && !kb ? bias + n0 : NULL,
                                res && !kb ? res + n0 : NULL);
            }
        }
    }
    return 0;
}

static void packed_gemm(int M, int N, int K, const float *A, int lda, const void *packed,
                        float beta, const float *bias, const float *res, float *C, int ldc,
                        int nt) {
    if (M <= 0 || N <= 0) return;
    int id = kernel_id(), kpad = round_up((K + 1) / 2, BF16_QUANTUM);
    if (id == K_AMX && K > 0 &&
        strips_gemm(M, N, K, A, lda, packed, beta, bias, res, C, ldc, nt) == 0)
        return;
    if (bias || res) { /* no kernel here adds them on the way out: C starts as them */
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1 && (size_t)M * N >= 65536)
        for (int t = 0; t < nt; t++) {
            int m0 = M * t / nt, m1 = M * (t + 1) / nt;
            rlaif_bias_fill(C + (size_t)m0 * ldc, bias, res ? res + (size_t)m0 * ldc : NULL,
                            m1 - m0, ldc, 0, N);
        }
        beta = 1.0f;
    }
    bf16_src a = {A, 1, lda, 0, M, K};
    if (id == K_AMX || id == K_C || K == 0 ||
        gemm_packed(bf16_panel_avx512, &a, NULL, packed, M, N, K, beta, C, ldc, nt) != 0)
        gemm_c(0, 0, M, N, K, A, 1, lda, NULL, 0, 0, packed, kpad, beta, C, ldc, nt);
}

void rlaif_bf16_packed_gemm(int M, int N, int K, const float *A, int lda, const void *packed,
                            float beta, float *C, int ldc, int nthreads) {
    packed_gemm(M, N, K, A, lda, packed, beta, NULL, NULL, C, ldc, nthreads);
}

void rlaif_bf16_packed_gemm_bias(int M, int N, int K, const float *A, int lda, const void *packed,
                                 const float *bias, const float *res, float *C, int ldc,
                                 int nthreads) {
    packed_gemm(M, N, K, A, lda, packed, 0.0f, bias, res, C, ldc, nthreads);
}
