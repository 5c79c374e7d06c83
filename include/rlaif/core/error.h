/* error.h - error records, checked-call macros and exit codes.
 *
 * Library functions return an int status: 0 on success, otherwise one of the
 * exit codes below, after recording a message, the file:line where it arose
 * and a hint for the user (rlaif_error_set). Callers propagate with RLAIF_TRY.
 * At the top, main() either agrees on the error with every rank
 * (rlaif_agree + rlaif_exit_all: rank 0 prints "ERROR: ...", all exit cleanly)
 * or, when only this rank knows, calls rlaif_die ("ERROR on rank N: ...
 * (file:line)" then MPI_Abort). */
#ifndef RLAIF_ERROR_H
#define RLAIF_ERROR_H

#include <mpi.h>
#include <stddef.h>

/* Exit codes (README.md, Errors and exit codes; values from sysexits.h). */
enum {
    RLAIF_OK = 0,
    RLAIF_EX_FAIL = 1,      /* the run failed (bad data, diverged, judge down) */
    RLAIF_EX_USAGE = 64,    /* bad command line or job file */
    RLAIF_EX_NOINPUT = 66,  /* an input file is missing or unreadable */
    RLAIF_EX_SOFTWARE = 70, /* internal error: a bug in rlaif or a library */
    RLAIF_EX_IOERR = 74,    /* reading or writing output failed */
    RLAIF_EX_TEMPFAIL = 75, /* checkpointed on a signal or walltime: requeue me */
};

/* Record an error and return code (so `return RLAIF_ERROR(...)` reads well).
 * hint may be NULL. The record is per process (ranks are processes). */
int rlaif_error_set(int code, const char *file, int line, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#define RLAIF_ERROR(code, hint, ...)                                                               \
    rlaif_error_set((code), __FILE__, __LINE__, (hint), __VA_ARGS__)

/* Prefix the current message with context, e.g. "loading ckpt/a.h5: ". */
int rlaif_error_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

int rlaif_error_code(void);
const char *rlaif_error_message(void);
const char *rlaif_error_hint(void); /* "" when none */
const char *rlaif_error_file(void);
int rlaif_error_line(void);
void rlaif_error_clear(void);

/* Propagate a non-zero status. */
#define RLAIF_TRY(expr)                                                                            \
    do {                                                                                           \
        int rlaif_rc_ = (expr);                                                                    \
        if (rlaif_rc_ != 0) return rlaif_rc_;                                                      \
    } while (0)

/* Checked calls: on failure record an error naming the call and return its code
 * from the enclosing function (which must return int). */
#define RLAIF_CHECK_MPI(call)                                                                      \
    do {                                                                                           \
        int rlaif_e_ = (call);                                                                     \
        if (rlaif_e_ != MPI_SUCCESS) return rlaif_error_mpi(rlaif_e_, #call, __FILE__, __LINE__);  \
    } while (0)
/* HDF5 calls return a negative herr_t/hid_t on failure. */
#define RLAIF_CHECK_H5(call, hint)                                                                 \
    do {                                                                                           \
        if ((long long)(call) < 0) return rlaif_error_h5(#call, __FILE__, __LINE__, (hint));       \
    } while (0)
/* libcurl easy (CURLcode) and multi (CURLMcode) calls: 0 is success. */
#define RLAIF_CHECK_CURL(call)                                                                     \
    do {                                                                                           \
        int rlaif_e_ = (int)(call);                                                                \
        if (rlaif_e_ != 0) return rlaif_error_curl(rlaif_e_, 0, #call, __FILE__, __LINE__);        \
    } while (0)
#define RLAIF_CHECK_CURLM(call)                                                                    \
    do {                                                                                           \
        int rlaif_e_ = (int)(call);                                                                \
        if (rlaif_e_ != 0) return rlaif_error_curl(rlaif_e_, 1, #call, __FILE__, __LINE__);        \
    } while (0)
/* libc calls that return -1 (or NULL via RLAIF_CHECK_PTR) and set errno.
 * what names the object, e.g. a path, for the message. */
#define RLAIF_CHECK_SYS(call, code, what)                                                          \
    do {                                                                                           \
        if ((call) == -1) return rlaif_error_sys((code), #call, (what), __FILE__, __LINE__);       \
    } while (0)
#define RLAIF_CHECK_PTR(ptr, code, what)                                                           \
    do {                                                                                           \
        if ((ptr) == NULL) return rlaif_error_sys((code), #ptr, (what), __FILE__, __LINE__);       \
    } while (0)

int rlaif_error_mpi(int mpi_err, const char *call, const char *file, int line);
int rlaif_error_h5(const char *call, const char *file, int line, const char *hint);
int rlaif_error_curl(int curl_err, int is_multi, const char *call, const char *file, int line);
int rlaif_error_sys(int code, const char *call, const char *what, const char *file, int line);

/* Allocation that never returns NULL: on failure it dies on this rank. */
void *rlaif_xmalloc(size_t n, const char *file, int line);
void *rlaif_xcalloc(size_t n, size_t size, const char *file, int line);
void *rlaif_xrealloc(void *p, size_t n, const char *file, int line);
char *rlaif_xstrdup(const char *s, const char *file, int line);
/* The same on 64-byte (cache-line) boundaries, zeroed or not; free() frees
 * it. Vector loads of a tensor that starts 16 bytes into a line (malloc's
 * alignment) split across two lines: decoding's products ran 30% slower. */
void *rlaif_xalloc64(size_t n, int zero, const char *file, int line);
/* Large buffers streamed by every step (weights, decoding's packed copy,
 * the KV cache, gradients, AdamW's moments, activations): on 2 MB pages
 * where the kernel gives them (MADV_HUGEPAGE; transparent huge pages in
 * "madvise" mode, Debian's default), 2 MB aligned; free() frees it. zero:
 * zeroed now by the team, so every page is faulted in here and not at its
 * first use. On 4 KB pages a stream restarts the hardware prefetcher at
 * every page: decoding's attention read its cache at 19-21 GB/s where 2 MB
 * pages give 26-27 (2 threads, 2-core EPYC). */
void *rlaif_xalloc_huge(size_t n, int zero, const char *file, int line);
#define xmalloc(n)           rlaif_xmalloc((n), __FILE__, __LINE__)
#define xalloc_huge(n, zero) rlaif_xalloc_huge((n), (zero), __FILE__, __LINE__)
#define xmalloc64(n)         rlaif_xalloc64((n), 0, __FILE__, __LINE__)
#define xcalloc64(n)         rlaif_xalloc64((n), 1, __FILE__, __LINE__)
#define xcalloc(n, s)        rlaif_xcalloc((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n)       rlaif_xrealloc((p), (n), __FILE__, __LINE__)
#define xstrdup(s)           rlaif_xstrdup((s), __FILE__, __LINE__)

/* Collective over comm: every rank passes its own status; all return the
 * largest one, and the error record of the lowest failing rank is copied to
 * every rank (so rank 0 can print it). Returns 0 when all succeeded. */
int rlaif_agree(MPI_Comm comm, int status);

/* Print the recorded error and exit.
 * rlaif_die: this rank alone: "ERROR on rank N: msg (file:line)", hint, MPI_Abort.
 * rlaif_exit_all: collective: rank 0 prints "ERROR: msg", all finalize and exit. */
_Noreturn void rlaif_die(void);
_Noreturn void rlaif_exit_all(int code);
/* A function both of them call before the process ends (the log module
 * registers its close here). Error reporting sits below everything else in
 * core, so it calls upward only through this hook; one hook is enough. */
void rlaif_on_exit(void (*fn)(void));
/* Record then die, for conditions that are bugs or unrecoverable locally. */
#define RLAIF_DIE(code, hint, ...)                                                                 \
    do {                                                                                           \
        RLAIF_ERROR((code), (hint), __VA_ARGS__);                                                  \
        rlaif_die();                                                                               \
    } while (0)

/* Format the error as the user sees it (tests compare against this). */
void rlaif_error_format(char *buf, size_t n, int with_rank);

#endif
