/* error.c - the per-process error record, checked-call helpers, exits. */
#include "rlaif/core/error.h"

#include <curl/curl.h>
#include <errno.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MSG_MAX  2048
#define HINT_MAX 512
#define FILE_MAX 256

static struct {
    int code;
    int line;
    int rank; /* rank the error arose on (after rlaif_agree, maybe not us) */
    char file[FILE_MAX];
    char msg[MSG_MAX];
    char hint[HINT_MAX];
} err;

static void (*exit_hook)(void);

void rlaif_on_exit(void (*fn)(void)) {
    exit_hook = fn;
}

static void run_exit_hook(void) {
    if (exit_hook) exit_hook();
}

static int world_rank(void) {
    int init = 0, fin = 0, r = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int rlaif_error_set(int code, const char *file, int line, const char *hint, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.msg, sizeof err.msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    snprintf(err.file, sizeof err.file, "%s", base ? base + 1 : file);
    snprintf(err.hint, sizeof err.hint, "%s", hint ? hint : "");
    err.line = line;
    err.code = code ? code : RLAIF_EX_SOFTWARE;
    err.rank = world_rank();
    return err.code;
}

int rlaif_error_context(const char *fmt, ...) {
    char prefix[512], old[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err.msg, sizeof old);
    snprintf(err.msg, sizeof err.msg, "%s%s", prefix, old);
    return err.code;
}

int rlaif_error_code(void) {
    return err.code;
}
const char *rlaif_error_message(void) {
    return err.msg;
}
const char *rlaif_error_hint(void) {
    return err.hint;
}
const char *rlaif_error_file(void) {
    return err.file;
}
int rlaif_error_line(void) {
    return err.line;
}
void rlaif_error_clear(void) {
    memset(&err, 0, sizeof err);
}

int rlaif_error_mpi(int mpi_err, const char *call, const char *file, int line) {
    char s[MPI_MAX_ERROR_STRING] = "";
    int n = 0;
    MPI_Error_string(mpi_err, s, &n);
    return rlaif_error_set(RLAIF_EX_SOFTWARE, file, line,
                           "an MPI call failed; check the launcher (srun --mpi=pmix, mpiexec) and "
                           "that every rank runs the same rlaif build",
                           "%s failed: %s", call, s);
}

/* Walk the HDF5 error stack and keep the innermost description: it names
 * the real cause ("unable to open file", "no space left"), not the wrapper. */
static herr_t h5_walk(unsigned n, const H5E_error2_t *e, void *data) {
    char *out = data;
    (void)n;
    if (e->desc && *e->desc) snprintf(out, 512, "%s (in %s)", e->desc, e->func_name);
    return 0;
}

int rlaif_error_h5(const char *call, const char *file, int line, const char *hint) {
    char detail[512] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk, detail);
    H5Eclear2(H5E_DEFAULT);
    return rlaif_error_set(RLAIF_EX_IOERR, file, line,
                           hint ? hint : "check the path, free space and file permissions",
                           "%s failed%s%s", call, *detail ? ": " : "", detail);
}

int rlaif_error_curl(int curl_err, int is_multi, const char *call, const char *file, int line) {
    const char *s = is_multi ? curl_multi_strerror((CURLMcode)curl_err)
                             : curl_easy_strerror((CURLcode)curl_err);
    return rlaif_error_set(RLAIF_EX_SOFTWARE, file, line, NULL, "%s failed: %s", call, s);
}

int rlaif_error_sys(int code, const char *call, const char *what, const char *file, int line) {
    int e = errno;
    const char *hint = NULL;
    if (e == ENOENT)
        hint = "check that the path exists (paths are relative to the job's directory)";
    else if (e == EACCES || e == EPERM)
        hint = "check the file permissions";
    else if (e == ENOSPC || e == EDQUOT)
        hint = "the file system is full or over quota";
    return rlaif_error_set(code, file, line, hint, "%s%s%s: %s", what ? what : "", what ? ": " : "",
                           call, strerror(e));
}

void *rlaif_xmalloc(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        rlaif_error_set(RLAIF_EX_FAIL, file, line, "reduce batch or model size, or use more nodes",
                        "out of memory allocating %zu bytes", n);
        rlaif_die();
    }
    return p;
}

void *rlaif_xcalloc(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        rlaif_error_set(RLAIF_EX_FAIL, file, line, "reduce batch or model size, or use more nodes",
                        "out of memory allocating %zu x %zu bytes", n, size);
        rlaif_die();
    }
    return p;
}

void *rlaif_xalloc64(size_t n, int zero, const char *file, int line) {
    size_t bytes = (n ? n + 63 : 64) / 64 * 64; /* aligned_alloc: a multiple of the alignment */
    void *p = aligned_alloc(64, bytes);
    if (!p) {
        rlaif_error_set(RLAIF_EX_FAIL, file, line, "reduce batch or model size, or use more nodes",
                        "out of memory allocating %zu bytes", n);
        rlaif_die();
    }
    if (zero) memset(p, 0, bytes);
    return p;
}

void *rlaif_xalloc_huge(size_t n, int zero, const char *file, int line) {
    size_t huge = (size_t)2 << 20, bytes = (n ? n + huge - 1 : huge) / huge * huge;
    char *p = aligned_alloc(huge, bytes);
    if (!p) {
        rlaif_error_set(RLAIF_EX_FAIL, file, line, "reduce batch or model size, or use more nodes",
                        "out of memory allocating %zu bytes", n);
        rlaif_die();
    }
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE); /* advice: 4 KB pages if refused */
#endif
    if (zero) {
        long units = (long)(bytes / huge);
#pragma omp parallel for schedule(static) if (units > 1)
        for (long u = 0; u < units; u++) memset(p + (size_t)u * huge, 0, huge);
    }
    return p;
}

void *rlaif_xrealloc(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        rlaif_error_set(RLAIF_EX_FAIL, file, line, "reduce batch or model size, or use more nodes",
                        "out of memory reallocating %zu bytes", n);
        rlaif_die();
    }
    return q;
}

char *rlaif_xstrdup(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = rlaif_xmalloc(n, file, line);
    memcpy(p, s, n);
    return p;
}

/* The record travels as one fixed-size struct: every field is plain chars/ints. */
int rlaif_agree(MPI_Comm comm, int status) {
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    int worst = 0;
    MPI_Allreduce(&status, &worst, 1, MPI_INT, MPI_MAX, comm);
    if (worst == 0) return 0;
    struct {
        int failed;
        int rank;
    } mine = {status != 0 ? 0 : 1, rank}, first;
    /* MINLOC on (0 for failed, 1 for fine) picks the lowest failing rank. */
    MPI_Allreduce(&mine, &first, 1, MPI_2INT, MPI_MINLOC, comm);
    MPI_Bcast(&err, (int)sizeof err, MPI_BYTE, first.rank, comm);
    return worst;
}

void rlaif_error_format(char *buf, size_t n, int with_rank) {
    int len;
    if (with_rank)
        len =
            snprintf(buf, n, "ERROR on rank %d: %s (%s:%d)", err.rank, err.msg, err.file, err.line);
    else if (err.rank != 0)
        len = snprintf(buf, n, "ERROR: %s (rank %d, %s:%d)", err.msg, err.rank, err.file, err.line);
    else
        len = snprintf(buf, n, "ERROR: %s (%s:%d)", err.msg, err.file, err.line);
    if (err.hint[0] && len >= 0 && (size_t)len < n)
        snprintf(buf + len, n - (size_t)len, "\n  hint: %s", err.hint);
}

_Noreturn void rlaif_die(void) {
    char buf[MSG_MAX + HINT_MAX + 128];
    err.rank = world_rank();
    rlaif_error_format(buf, sizeof buf, 1);
    fprintf(stderr, "%s\n", buf);
    fflush(stderr);
    fflush(stdout);
    run_exit_hook();
    int init = 0, fin = 0, size = 1;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (init && !fin && size > 1) MPI_Abort(MPI_COMM_WORLD, err.code ? err.code : 1);
    exit(err.code ? err.code : 1);
}

_Noreturn void rlaif_exit_all(int code) {
    if (code != 0 && world_rank() == 0) {
        char buf[MSG_MAX + HINT_MAX + 128];
        rlaif_error_format(buf, sizeof buf, 0);
        fprintf(stderr, "%s\n", buf);
    }
    fflush(stderr);
    fflush(stdout);
    run_exit_hook();
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Finalize();
    exit(code);
}
