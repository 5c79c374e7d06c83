/* gemm_choose.c - which of the engine's product paths to run for a shape,
 * chosen by timing them on this machine (see gemm_bf16.h).
 *
 * Why measure: the fastest path differs between machines of the same kind
 * (an Intel Xeon with AMX, an AMD EPYC with AVX512-BF16 only, one with
 * OpenBLAS's Haswell kernels forced) and between shapes (few-row decoding
 * is bound by memory bandwidth, training by arithmetic), so no fixed rule
 * holds on all of them. A shape class is timed once (rlaif_gemm_calibrate:
 * the job's start times every class of its model, see gemm_choice.h; the
 * engine's products only look up), on a slice with the real K and layout:
 * M rounded up to a power of two (past 128 one class, 256 rows timed), N
 * cut to 512 columns for many rows, and for few
 * rows to a weight slice of 16 MB in fp32, flushed from the caches before
 * each run so it comes from memory as in decoding. Each candidate runs once to warm up, then three
 * times alternating with the others; the smallest time wins. The timing runs on one thread and
 * counts that thread's CPU time: on a machine shared with other programs a team's wall-clock time
 * is dominated by threads waiting at barriers for a descheduled partner (20-40 ms for
 * sub-millisecond products at a load of 10 on 2 cores, which picked sgemm where bf16 was 3x
 * faster), while one thread's CPU time stays within ~15%. Every path splits
 * its work over the team the same way (columns or rows, no reduction), so
 * the order measured on one thread is the order for the team, as long as
 * a path's split costs nothing: the few-row kernel's interleaved column
 * chunks once cost it 15-35% on two threads, which no one-thread timing
 * sees (model_gemm.c; src/engine/README.md, Choosing a path). The packed
 * paths (bf16 and fp32) are timed from weights packed before the clock
 * starts, as decoding packs them once per sequence. */
#include "config.h"
#include "gemm_bf16.h"
#include "model_gemm.h"
#include "rlaif/core/log.h"

#include <cblas.h>
#if defined(__x86_64__) || defined(__i386__)
#include <emmintrin.h>
#define HAVE_X86_CLFLUSH 1
#endif
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define MAX_CLASSES 1024 /* every model a machine's cache has seen */
#define NPATH       RLAIF_GEMM_NPATH

typedef struct {
    int allow_bf16, ta, tb, mclass, N, K, nthreads;
    rlaif_gemm_path path;
    double ms[NPATH]; /* < 0: not a candidate (or not timed) */
    double cost_ms;   /* the calibration's own time (0 for a table set) */
} choice;

static choice table[MAX_CLASSES];
static int n_table, forced = RLAIF_GEMM_FORCE_NONE;

static const char *path_names[NPATH] = {"sgemm",       "smallm",      "bf16",
                                        "bf16-smallm", "bf16-packed", "packed"};

const char *rlaif_gemm_path_name(rlaif_gemm_path p) {
    return p >= 0 && p < NPATH ? path_names[p] : "?";
}

int rlaif_gemm_path_parse(const char *name) {
    for (int p = 0; p < NPATH; p++)
        if (!strcmp(name, path_names[p])) return p;
    return -1;
}

void rlaif_gemm_force(int path) {
    forced = path;
}

/* M up to a power of two: decoding runs one M per batch size, prefill and
 * training many, and their speed changes little within a factor of two.
 * Past 128 rows one class: the timing runs on 256 rows for all of them. */
int rlaif_gemm_m_class(int M) {
    int c = 1;
    while (c < M && c < RLAIF_GEMM_MCLASS_MAX) c *= 2;
    return c;
}

/* The fp32 packed path runs where its AVX-512 kernel does (its plain C
 * fallback is for correctness only) and in precision fp32 only: bf16
 * decoding packs its weights in bf16. At any row count: past 64 rows it is
 * the prefill of a model whose weights stay packed (a local judge's, frozen),
 * in 64-row passes over each panel; where OpenBLAS does not know the CPU it
 * runs at half the packed kernel's rate (Zen 5: Haswell kernels, ~170
 * GFLOP/s on 2 threads against ~390 at 64 rows). */
static int is_candidate(int p, int allow_bf16, int ta, int M) {
    int few = ta == 0 && M <= RLAIF_SMALLM_MAX;
    if (p == RLAIF_PATH_SGEMM) return 1;
    if (p == RLAIF_PATH_SMALLM) return few;
    if (p == RLAIF_PATH_BF16) return allow_bf16;
    if (p == RLAIF_PATH_PACKED)
        return ta == 0 && !allow_bf16 && !strcmp(rlaif_smallm_kernel(NULL), "avx512");
    return p < NPATH && allow_bf16 && few;
}

/* cblas_sgemm split as the engine splits it: the larger of M and N over
 * the team, one single-threaded sgemm per thread. */
static void sgemm_split(int ta, int tb, int M, int N, int K, const float *A, int lda,
                        const float *B, int ldb, float beta, float *C, int ldc, int nt) {
    int split_m = M >= N, D = split_m ? M : N;
    int chunk = ((D + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        int d0 = t * chunk, d1 = d0 + chunk < D ? d0 + chunk : D;
        if (d0 >= d1) continue;
        const float *a = A, *b = B;
        int m = M, n = N;
        if (split_m)
            a += ta ? (size_t)d0 : (size_t)d0 * lda, m = d1 - d0;
        else
            b += tb ? (size_t)d0 * ldb : (size_t)d0, n = d1 - d0;
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    m, n, K, 1.0f, a, lda, b, ldb, beta,
                    C + (split_m ? (size_t)d0 * ldc : (size_t)d0), ldc);
    }
}

void rlaif_gemm_run(rlaif_gemm_path p, int ta, int tb, int M, int N, int K, const float *A, int lda,
                    const float *W, const rlaif_bf16 *Wh, int ldw, float beta, float *C, int ldc,
                    float *scratch, int nthreads) {
    if (p == RLAIF_PATH_SMALLM)
        rlaif_smallm_gemm(tb, M, N, K, A, lda, W, ldw, NULL, beta != 0.0f ? C : NULL, C, ldc, NULL,
                          NULL, scratch, nthreads);
    else if (p == RLAIF_PATH_BF16)
        rlaif_bf16_gemm_ex(ta, tb, M, N, K, A, 1, lda, Wh, 0, ldw, beta, C, ldc, nthreads);
    else if (p == RLAIF_PATH_BF16_SMALLM)
        rlaif_bf16_smallm(tb, M, N, K, A, lda, Wh, ldw, beta, C, ldc, nthreads);
    else if (p == RLAIF_PATH_BF16_PACKED)
        rlaif_bf16_packed_gemm(M, N, K, A, lda, Wh, beta, C, ldc, nthreads);
    else if (p == RLAIF_PATH_PACKED)
        rlaif_f32_packed_gemm(M, N, K, A, lda, W, NULL, beta != 0.0f ? C : NULL, C, ldc, NULL, NULL,
                              nthreads);
    else if (M == 1 && !ta) /* one row: the engine's sgemm path is a gemv */
        rlaif_gemv(!tb, tb ? N : K, tb ? K : N, W, ldw, A, beta, C, nthreads);
    else
        sgemm_split(ta, tb, M, N, K, A, lda, W, ldw, beta, C, ldc, nthreads);
}

/* The operands of one timing: fp32 A and B, a bf16 copy of B, and B
 * packed as decoding keeps its weights, in bf16 (Bp) and fp32 (Bf) (packed
 * once, outside the timing). */
typedef struct {
    int ta, tb, M, N, K, nt;
    float *A, *B, *C, *scratch, *Bf;
    rlaif_bf16 *Bh;
    void *Bp;
} bench_case;

/* The weights path p reads, and their bytes. */
static const void *path_weights(int p, const bench_case *b, size_t *bytes) {
    size_t nb = (size_t)b->N * b->K;
    if (p == RLAIF_PATH_PACKED) return *bytes = rlaif_f32_packed_size(b->K, b->N), b->Bf;
    if (p == RLAIF_PATH_BF16_PACKED) return *bytes = rlaif_bf16_packed_size(b->K, b->N), b->Bp;
    if (p == RLAIF_PATH_BF16 || p == RLAIF_PATH_BF16_SMALLM)
        return *bytes = nb * sizeof(rlaif_bf16), b->Bh;
    return *bytes = nb * sizeof(float), b->B;
}

/* Few rows: the path's weights leave every cache level before it runs, as
 * decoding finds them (the last step read every other weight since). With
 * 16 MB slices in a 32 MB L3 the paths that share the fp32 copy found it
 * there after each other's runs, and the packed copy (a buffer of its own)
 * lost classes it wins in decoding: 0.71 against 0.50 ms for GPT-2's LM
 * head at 4 rows, where a cold read gives 5.3 against 7.6 ms. */
static void evict(const void *p, size_t n) {
#ifdef HAVE_X86_CLFLUSH
    for (size_t i = 0; i < n; i += 64) _mm_clflush((const char *)p + i);
    _mm_mfence();
#else
    (void)p, (void)n;
#endif
}

static void run_path(int p, const bench_case *b) {
    const rlaif_bf16 *w = p == RLAIF_PATH_BF16_PACKED ? b->Bp : b->Bh;
    const float *wf = p == RLAIF_PATH_PACKED ? b->Bf : b->B;
    rlaif_gemm_run((rlaif_gemm_path)p, b->ta, b->tb, b->M, b->N, b->K, b->A, b->ta ? b->M : b->K,
                   wf, w, b->tb ? b->K : b->N, 0.0f, b->C, b->N, b->scratch, b->nt);
}

/* The timing's operands come straight from mmap, not malloc: glibc raises
 * its mmap threshold to the size of a freed mmapped block, so 16 MB freed
 * here would put the job's later buffers of up to that size on the heap;
 * measured on GPT-2 124M bf16 decoding after a calibration: 10-30% fewer
 * tokens/s, none with the threshold pinned (MALLOC_MMAP_THRESHOLD_). */
static void *map(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void unmap(void *p, size_t n) {
    if (p) munmap(p, n);
}

/* CPU time of the calling thread, in seconds. */
static double thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The rows a class is timed on: its M, past 128 one class timed at 256. */
static int timed_rows(int mclass) {
    return mclass < 256 ? mclass : 256;
}

/* Times the candidates of c on a slice of its shape into c->ms, on one
 * thread by its CPU time (see the top of this file). */
static void calibrate(choice *c) {
    bench_case b = {.ta = c->ta, .tb = c->tb, .K = c->K, .nt = 1};
    b.M = timed_rows(c->mclass);
    size_t wmax = (size_t)4 << 20; /* few rows: 16 MB of fp32 weights */
    b.N = c->mclass <= RLAIF_SMALLM_MAX ? (int)(wmax / (size_t)c->K) : 512;
    if (b.N > c->N) b.N = c->N;
    if (b.N < 1) b.N = 1;
    size_t na = (size_t)b.M * b.K, nb = (size_t)b.N * b.K;
    size_t sz[7] = {na * sizeof(float),
                    nb * sizeof(float),
                    (size_t)b.M * b.N * sizeof(float),
                    (size_t)b.K * RLAIF_SMALLM_MAX * sizeof(float),
                    nb * sizeof(rlaif_bf16),
                    rlaif_bf16_packed_size(b.K, b.N),
                    rlaif_f32_packed_size(b.K, b.N)};
    b.A = map(sz[0]), b.B = map(sz[1]), b.C = map(sz[2]), b.scratch = map(sz[3]);
    b.Bh = map(sz[4]), b.Bp = map(sz[5]), b.Bf = map(sz[6]);
    c->path = RLAIF_PATH_SGEMM;
    for (int p = 0; p < NPATH; p++) c->ms[p] = -1;
    if (!b.A || !b.B || !b.C || !b.scratch || !b.Bh || !b.Bp || !b.Bf) goto done; /* sgemm */
    for (size_t i = 0; i < na; i++) b.A[i] = (float)(int)(i & 255) * (1.0f / 256) - 0.5f;
    for (size_t i = 0; i < nb; i++) b.B[i] = (float)(int)((i * 7) & 255) * (1.0f / 256) - 0.5f;
    rlaif_bf16_from_f32(b.Bh, b.B, nb);
    for (int p = 0; p < NPATH; p++)
        c->ms[p] = is_candidate(p, c->allow_bf16, c->ta, b.M) ? 1e30 : -1;
    if (c->ms[RLAIF_PATH_BF16_PACKED] >= 0)
        rlaif_bf16_pack(b.tb, b.K, b.N, b.B, 1, b.tb ? b.K : b.N, b.Bp, 1);
    if (c->ms[RLAIF_PATH_PACKED] >= 0)
        rlaif_f32_pack(b.tb, b.K, b.N, b.B, b.tb ? b.K : b.N, b.Bf, 1);
    for (int rep = 0; rep < 4; rep++)
        for (int p = 0; p < NPATH; p++) {
            if (c->ms[p] < 0) continue;
            size_t wbytes;
            const void *wp = path_weights(p, &b, &wbytes);
            if (c->mclass <= RLAIF_SMALLM_MAX) evict(wp, wbytes);
            double t0 = thread_cpu();
            run_path(p, &b);
            double t = (thread_cpu() - t0) * 1e3;
            if (rep > 0 && t < c->ms[p]) c->ms[p] = t; /* rep 0 warms up */
        }
    for (int p = 0; p < NPATH; p++)
        if (c->ms[p] >= 0 && c->ms[p] < c->ms[c->path]) c->path = (rlaif_gemm_path)p;
done:
    unmap(b.A, sz[0]), unmap(b.B, sz[1]), unmap(b.C, sz[2]), unmap(b.scratch, sz[3]);
    unmap(b.Bh, sz[4]), unmap(b.Bp, sz[5]), unmap(b.Bf, sz[6]);
}

/* The remembered choice of a class, or NULL. The thread count is recorded,
 * not matched: the timing runs on one thread (above), so its order holds
 * for any team, and ranks with different teams share one table. */
static int same_class(const choice *a, const choice *b) {
    return a->allow_bf16 == b->allow_bf16 && a->ta == b->ta && a->tb == b->tb &&
           a->mclass == b->mclass && a->N == b->N && a->K == b->K;
}

static const choice *find(int allow_bf16, int ta, int tb, int M, int N, int K) {
    choice key = {.allow_bf16 = allow_bf16 != 0,
                  .ta = ta != 0,
                  .tb = tb != 0,
                  .mclass = rlaif_gemm_m_class(M),
                  .N = N,
                  .K = K};
    for (int i = 0; i < n_table; i++)
        if (same_class(&table[i], &key)) return &table[i];
    return NULL;
}

int rlaif_gemm_lookup(int allow_bf16, int ta, int tb, int M, int N, int K) {
    if (forced >= 0 && is_candidate(forced, allow_bf16, ta, M)) return forced;
    const choice *c = find(allow_bf16, ta, tb, M, N, K);
    return c ? (int)c->path : -1;
}

/* How many paths a class of M rows can run (as calibrate times it). */
static int candidates(int allow_bf16, int ta, int M) {
    int n = 0;
    for (int p = 0; p < NPATH; p++) n += is_candidate(p, allow_bf16, ta, timed_rows(M));
    return n;
}

int rlaif_gemm_calibrate(int allow_bf16, int ta, int tb, int M, int N, int K, int nthreads) {
    if (find(allow_bf16, ta, tb, M, N, K) || N <= 0 || K <= 0 || M <= 0) return 0;
    /* one candidate (fp32 past 64 rows where the packed kernel does not
     * run: sgemm) has nothing to choose: the fixed rule runs it, untimed
     * and unrecorded */
    if (candidates(allow_bf16, ta, rlaif_gemm_m_class(M)) < 2) return 0;
    choice key = {.allow_bf16 = allow_bf16 != 0,
                  .ta = ta != 0,
                  .tb = tb != 0,
                  .mclass = rlaif_gemm_m_class(M),
                  .N = N,
                  .K = K,
                  .nthreads = nthreads};
    double t0 = rlaif_now();
    calibrate(&key);
    key.cost_ms = (rlaif_now() - t0) * 1e3;
    if (n_table >= MAX_CLASSES) return 0;
    table[n_table++] = key;
    return 1;
}

rlaif_gemm_path rlaif_gemm_choose(int allow_bf16, int ta, int tb, int M, int N, int K,
                                  int nthreads) {
    rlaif_gemm_calibrate(allow_bf16, ta, tb, M, N, K, nthreads);
    int p = rlaif_gemm_lookup(allow_bf16, ta, tb, M, N, K);
    return p >= 0 ? (rlaif_gemm_path)p : RLAIF_PATH_SGEMM;
}

/* Products run per path (rlaif_gemm_count): the log's summary and the
 * tests' proof of which path the engine ran. */
static long long runs[NPATH];

void rlaif_gemm_count(int p) {
    if (p < 0 || p >= NPATH) return;
#pragma omp atomic update
    runs[p]++;
}

long long rlaif_gemm_runs(int p) {
    long long n;
    if (p < 0 || p >= NPATH) return 0;
#pragma omp atomic read
    n = runs[p];
    return n;
}

void rlaif_gemm_choices_clear(void) {
    n_table = 0;
}

/* One line per class: "bf16 ta tb mclass N K nthreads path ms0 .. ms5"
 * (the time of each path in the order of rlaif_gemm_path, -1: not timed). */
static int format_choice(const choice *c, char *buf, size_t len) {
    return snprintf(buf, len, "%d %d %d %d %d %d %d %s %.3f %.3f %.3f %.3f %.3f %.3f\n",
                    c->allow_bf16, c->ta, c->tb, c->mclass, c->N, c->K, c->nthreads,
                    path_names[c->path], c->ms[0], c->ms[1], c->ms[2], c->ms[3], c->ms[4],
                    c->ms[5]);
}

void rlaif_gemm_choices_print(FILE *out) {
    for (int i = 0; i < n_table; i++) {
        const choice *c = &table[i];
        fprintf(out, "gemm %s: M<=%d N=%d K=%d ta=%d tb=%d threads=%d ->",
                c->allow_bf16 ? "bf16" : "fp32", c->mclass, c->N, c->K, c->ta, c->tb, c->nthreads);
        for (int p = 0; p < NPATH; p++)
            if (c->ms[p] >= 0) fprintf(out, " %s %.3f ms", path_names[p], c->ms[p]);
        if (c->cost_ms > 0)
            fprintf(out, ": %s (measured in %.0f ms)\n", path_names[c->path], c->cost_ms);
        else
            fprintf(out, ": %s (recorded)\n", path_names[c->path]);
    }
}

size_t rlaif_gemm_choices_get(char *buf, size_t len) {
    size_t used = 0;
    for (int i = 0; i < n_table; i++) {
        int w =
            format_choice(&table[i], used < len ? buf + used : NULL, used < len ? len - used : 0);
        used += (size_t)w;
    }
    if (len) buf[used < len ? used : len - 1] = '\0';
    return used + 1;
}

/* One line of rlaif_gemm_choices_get into c; the times after the path
 * name may be fewer than NPATH (a table written before a path existed:
 * the rest are "not timed"). Returns the line's end, or NULL if malformed. */
static const char *parse_choice(const char *p, choice *c) {
    char name[16];
    int used = 0;
    memset(c, 0, sizeof *c);
    if (sscanf(p, "%d %d %d %d %d %d %d %15s%n", &c->allow_bf16, &c->ta, &c->tb, &c->mclass, &c->N,
               &c->K, &c->nthreads, name, &used) != 8)
        return NULL;
    int found = rlaif_gemm_path_parse(name);
    if (found < 0 || c->mclass < 1 || c->N < 1 || c->K < 1) return NULL;
    c->path = (rlaif_gemm_path)found;
    const char *end = strchr(p, '\n'), *q = p + used;
    if (!end) end = p + strlen(p);
    int n = 0;
    for (char *e; n < NPATH; n++, q = e) {
        c->ms[n] = strtod(q, &e);
        if (e == q || e > end) break;
    }
    if (n < 4) return NULL;
    for (; n < NPATH; n++) c->ms[n] = -1;
    return end;
}

/* Replaces the table with the lines of buf (as rlaif_gemm_choices_get
 * wrote them; of lines of one class the first wins, so a job's record put
 * before a cache overrides it); returns 0, or -1 on a malformed line
 * (table unchanged). */
int rlaif_gemm_choices_set(const char *buf) {
    static choice t[MAX_CLASSES];
    int n = 0;
    for (const char *p = buf; p && *p && n < MAX_CLASSES;) {
        p = parse_choice(p, &t[n]);
        if (!p) return -1;
        if (*p) p++;
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) dup = same_class(&t[i], &t[n]);
        n += !dup;
    }
    memcpy(table, t, sizeof(choice) * (size_t)n);
    n_table = n;
    return 0;
}
