/* gemm_setup.c - the job's product-path table: decided on world rank 0,
 * broadcast, recorded (see gemm_setup.h for why it is shared).
 *
 * Rank 0 reads the out_dir's record first (a resume must make the choices
 * of the run it continues), then the per-CPU-model cache (another job on
 * this machine timed them already: the same choices, no time spent), and
 * times only what both lack. The cache is locked (flock) from reading to
 * writing, so two jobs starting together time each class once and agree.
 * The other ranks wait sleeping: spinning ranks on the same cores would
 * slow the timing they are waiting for. */
#include "config.h"
#include "rlaif/app/gemm_setup.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/log.h"
#include "rlaif/engine/gemm_choice.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/judge/judge.h"
#include "rlaif/phases/layout.h"
#include "rlaif/phases/mailbox.h"
#include "rlaif/phases/train.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* "<cpu model name> | openblas <core> | kernels <rev>": what the timings
 * hold for (first line of record and cache, and the cache file's name). Not
 * the thread count: a class is timed on one thread (gemm_choose.c), so its
 * order holds for any team, and phases of one job with different teams
 * (sft on 1 rank, ppo's learners on 3) share one record. */
static void cpu_key(char *key, size_t n) {
    char name[256] = "unknown cpu", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && colon) {
            snprintf(name, sizeof name, "%s", colon + 2);
            name[strcspn(name, "\n")] = '\0';
            break;
        }
    }
    if (f) fclose(f);
    const char *core = "unknown";
#ifdef HAVE_OPENBLAS_GET_CORENAME
    core = openblas_get_corename();
#endif
    snprintf(key, n, "%s | openblas %s | kernels %d", name, core, RLAIF_GEMM_KERNELS_REV);
}

/* The whole file as a string (NULL: none or unreadable). */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t cap = 4096, len = 0, got;
    char *buf = xmalloc(cap);
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0)
        if ((len += got) == cap - 1) buf = xrealloc(buf, cap *= 2);
    buf[len] = '\0';
    fclose(f);
    return buf;
}

/* The table lines of a file written by save() for this key, or NULL
 * (none, another key: timings of another machine or kernel revision are not
 * ours; other_key, when given, gets that file's first line). */
static char *load(const char *path, const char *key, char *other_key, size_t other_n) {
    char *text = path && *path ? slurp(path) : NULL, head[1024];
    if (!text) return NULL;
    snprintf(head, sizeof head, "# rlaif gemm choices: %s\n", key);
    if (strncmp(text, head, strlen(head))) {
        const char *first = text, *tag = "# rlaif gemm choices: ";
        if (!strncmp(first, tag, strlen(tag))) first += strlen(tag);
        if (other_key) snprintf(other_key, other_n, "%.*s", (int)strcspn(first, "\n"), first);
        free(text);
        return NULL;
    }
    memmove(text, text + strlen(head), strlen(text + strlen(head)) + 1);
    return text;
}

static void save(const char *path, const char *key, const char *table) {
    size_t n = strlen(key) + strlen(table) + 64;
    char *text = xmalloc(n);
    snprintf(text, n, "# rlaif gemm choices: %s\n%s", key, table);
    if (rlaif_write_atomic(path, text))
        rlaif_warn("gemm: cannot write %s: %s (the choices are not recorded)", path,
                   strerror(errno));
    free(text);
}

/* The current table as text (caller frees). */
static char *table_text(void) {
    size_t need = rlaif_gemm_choices_get(NULL, 0);
    char *buf = xmalloc(need);
    rlaif_gemm_choices_get(buf, need);
    return buf;
}

/* Rank 0's part: record, then cache, then timing (mc NULL: none, the
 * model's shapes unknown); writes both back. */
static void decide(const rlaif_model_config *mc, int precision, int frozen, int threads,
                   const char *record, const char *cache_dir, int *timed) {
    char key[512], cache[4096] = "", lock[4200];
    cpu_key(key, sizeof key);
    char other[1024] = "";
    int fd = -1;
    if (cache_dir && *cache_dir && !rlaif_mkdir_p(cache_dir)) {
        char name[600];
        size_t j = 0;
        for (const char *p = key; *p && j < sizeof name - 1; p++)
            name[j++] = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                                (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'
                            ? *p
                            : '_';
        name[j] = '\0';
        snprintf(cache, sizeof cache, "%s/gemm-%s.txt", cache_dir, name);
        snprintf(lock, sizeof lock, "%s.lock", cache);
        fd = open(lock, O_CREAT | O_RDWR, 0666);
        if (fd >= 0) flock(fd, LOCK_EX);
    }
    rlaif_error_clear();
    char *rec = load(record, key, other, sizeof other), *cac = load(cache, key, NULL, 0);
    if (*other)
        rlaif_warn("gemm: %s was written for another machine or kernel revision (\"%s\"; this "
                   "run: \"%s\"); timing afresh (results will not be bit-identical with the "
                   "run before)",
                   record, other, key);
    size_t n = (rec ? strlen(rec) : 0) + (cac ? strlen(cac) : 0) + 1;
    char *both = xmalloc(n);
    snprintf(both, n, "%s%s", rec ? rec : "", cac ? cac : ""); /* a class's first line wins */
    if (rlaif_gemm_choices_set(both)) {
        rlaif_warn("gemm: %s or %s is malformed; timing afresh", record, cache);
        rlaif_gemm_choices_clear();
    }
    free(both);
    double t0 = rlaif_now();
    *timed = mc ? rlaif_model_gemm_calibrate(mc, precision, threads, frozen) : 0;
    char *table = table_text();
    rlaif_info("gemm: choices from %s, %s, %d class(es) timed in %.1f s on world rank 0 (%s)",
               rec ? record : "no record", cac ? cache : "no cache", *timed, rlaif_now() - t0, key);
    if (*record && (!rec || strcmp(rec, table)))
        save(record, key, table); /* a rerun writes nothing */
    if (*cache && (*timed || !cac)) save(cache, key, table);
    if (fd >= 0) flock(fd, LOCK_UN), close(fd);
    free(rec), free(cac), free(table);
}

int rlaif_gemm_agree(MPI_Comm world, const rlaif_model_config *mc, int precision, int frozen,
                     int threads, const char *record, const char *cache_dir, int *timed) {
    int rank, t = 0;
    long long len = 0;
    char *text = NULL;
    RLAIF_CHECK_MPI(MPI_Comm_rank(world, &rank));
    if (rank == 0) {
        decide(mc, precision, frozen, threads, record ? record : "", cache_dir, &t);
        text = table_text();
        len = (long long)strlen(text) + 1;
    }
    MPI_Request req;
    RLAIF_CHECK_MPI(MPI_Ibcast(&len, 1, MPI_LONG_LONG, 0, world, &req));
    RLAIF_TRY(rlaif_wait_sleeping(&req));
    if (rank != 0) text = xmalloc((size_t)len);
    RLAIF_CHECK_MPI(MPI_Ibcast(text, (int)len, MPI_CHAR, 0, world, &req));
    RLAIF_TRY(rlaif_wait_sleeping(&req));
    int rc = rlaif_gemm_choices_set(text);
    free(text);
    if (timed) *timed = t;
    return rlaif_agree(
        world,
        rc ? RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "gemm: rank 0's table does not parse") : 0);
}

/* The table: one line per class in the per-rank log (and on stderr with
 * run.verbose), the count of classes per path on stdout. Not a hundred
 * lines on stdout: mpiexec forwards a rank's stdout and stderr in chunks,
 * and a long burst just before an error splits the ERROR line. */
static void log_table(const char *record) {
    char *buf = NULL, *text = table_text(), counts[256] = "";
    size_t len = 0, used = 0;
    int n[RLAIF_GEMM_NPATH] = {0}, total = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), total++) {
        char name[32];
        if (sscanf(line, "%*d %*d %*d %*d %*d %*d %*d %31s", name) == 1 &&
            rlaif_gemm_path_parse(name) >= 0)
            n[rlaif_gemm_path_parse(name)]++;
    }
    for (int p = 0; p < RLAIF_GEMM_NPATH; p++)
        if (n[p] && used < sizeof counts)
            used +=
                (size_t)snprintf(counts + used, sizeof counts - used, "%s%s %d", used ? ", " : "",
                                 rlaif_gemm_path_name((rlaif_gemm_path)p), n[p]);
    rlaif_info("gemm: %d class(es) chosen (%s); the table: %s, and one line per class in the "
               "per-rank log",
               total, total ? counts : "none: the fixed rule", record);
    free(text);
    FILE *f = open_memstream(&buf, &len);
    if (!f) return;
    rlaif_gemm_choices_print(f);
    fclose(f);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) rlaif_debug("%s", line);
    free(buf);
}

/* The per-CPU-model cache: RLAIF_GEMM_CACHE alone (the tests keep theirs in
 * the build tree while the reference packages stay in RLAIF_CACHE), else
 * RLAIF_CACHE, else ~/.cache/rlaif ("" when none is known). */
static void cache_dir(char *dir, size_t n) {
    const char *own = getenv("RLAIF_GEMM_CACHE"), *env = getenv("RLAIF_CACHE");
    const char *home = getenv("HOME");
    dir[0] = '\0';
    if (own && *own)
        snprintf(dir, n, "%s", own);
    else if (env && *env)
        snprintf(dir, n, "%s", env);
    else if (home && *home)
        snprintf(dir, n, "%s/.cache/rlaif", home);
}

/* model.gemm fixed or a forced path: set here, 1 returned (nothing to time). */
static int gemm_mode(const rlaif_config *cfg) {
    const char *mode = rlaif_cfg_str(cfg, "model.gemm");
    rlaif_gemm_force(RLAIF_GEMM_FORCE_NONE);
    rlaif_gemm_choices_clear();
    if (!strcmp(mode, "fixed")) {
        rlaif_info("gemm: the fixed rule (model.gemm fixed)");
        return 1;
    }
    if (strcmp(mode, "auto")) {
        rlaif_gemm_force(rlaif_gemm_path_parse(mode));
        rlaif_info("gemm: %s wherever it applies, the fixed rule elsewhere (model.gemm %s)", mode,
                   mode);
        return 1;
    }
    return 0;
}

/* rlaif_gemm_agree for each local judge's model (read on rank 0 from its
 * checkpoint: its shapes are not the job's; its judge ranks run the same
 * engine), each adding its classes to what the record and cache hold; a
 * judge's model is frozen, so its prefill's classes are timed too. */
static int agree_judges(MPI_Comm world, const rlaif_config *cfg, int precision, int threads,
                        const char *record, const char *cache) {
    char paths[8][4096];
    int rank, nj = rlaif_judge_local_models(cfg, paths, 8);
    RLAIF_CHECK_MPI(MPI_Comm_rank(world, &rank));
    for (int i = 0; i < nj; i++) {
        rlaif_model_config mc;
        int have = 0;
        if (rank == 0) {
            have = rlaif_ckpt_read_config(paths[i], &mc) == 0;
            if (!have) rlaif_error_clear(); /* the judge's open says why */
        }
        RLAIF_TRY(
            rlaif_gemm_agree(world, have ? &mc : NULL, precision, 1, threads, record, cache, NULL));
    }
    return 0;
}

int rlaif_gemm_setup(MPI_Comm world, const rlaif_config *cfg, int threads) {
    if (gemm_mode(cfg)) return 0;
    int rank;
    RLAIF_CHECK_MPI(MPI_Comm_rank(world, &rank));
    rlaif_model_config mc;
    int have = 0;
    if (rank == 0) {
        have = rlaif_job_model_config(cfg, &mc) == 0;
        if (!have) rlaif_error_clear(); /* the phase that builds the model says why */
    }
    char record[4096], cache[4096];
    rlaif_out_path(cfg, RLAIF_OUT_GEMM, record, sizeof record);
    cache_dir(cache, sizeof cache);
    int precision = rlaif_precision_parse(rlaif_cfg_str(cfg, "model.precision"), NULL);
    RLAIF_TRY(
        rlaif_gemm_agree(world, have ? &mc : NULL, precision, 0, threads, record, cache, NULL));
    RLAIF_TRY(agree_judges(world, cfg, precision, threads, record, cache));
    if (rank == 0) log_table(record);
    return 0;
}

void rlaif_precision_setup(const rlaif_config *cfg) {
    const char *why = NULL;
    int p = rlaif_precision_parse(rlaif_cfg_str(cfg, "model.precision"), &why);
    rlaif_model_set_default_precision(p);
    rlaif_info("precision: %s (model.precision %s)", rlaif_precision_name(p), why);
}

int rlaif_gemm_setup_judges(MPI_Comm world, const rlaif_config *cfg, int threads) {
    if (gemm_mode(cfg)) return 0;
    int rank;
    RLAIF_CHECK_MPI(MPI_Comm_rank(world, &rank));
    char cache[4096];
    cache_dir(cache, sizeof cache);
    int precision = rlaif_precision_parse(rlaif_cfg_str(cfg, "model.precision"), NULL);
    RLAIF_TRY(agree_judges(world, cfg, precision, threads, "", cache));
    if (rank == 0) log_table("no record (rlaif judge has no out_dir of its own)");
    return 0;
}
