/* judge_journal.c - the append-only record of every answered judge call.
 *
 * One file per judge rank, dir/judge-rank-NNNNN.jnl, one JSON object per line:
 *   {"k": key, "s": status, "h": http, "t": text, "lab": parsed label, "pa": P(A)
 *    from logprobs, "cv": coverage,
 *    "ti": tokens in, "to": tokens out, "raw": the raw HTTP body, "x": check}
 * "x" is the FNV-1a hash (16 hex digits) of every byte of the line before
 * ',"x":'. Each record is checked on its own, so a damaged byte costs that one
 * record (asked and paid again), never the records after it: replay skips a
 * record whose check fails and resynchronises at the next record start. A
 * record start '{"k":"' cannot occur inside a record (JSON escapes every '"'
 * in a string), so even a damaged newline that glues two records together
 * loses only the damaged one. FNV-1a detects any single damaged byte for
 * certain (each step, xor then multiply by an odd prime, is a bijection of
 * the state), and a burst with probability 1 - 2^-64. Damage is reported
 * (how many records, where); damaged lines stay in the file, untouched.
 *
 * A record is written with one write() as soon as the answer arrives, so a
 * killed process loses nothing the kernel has; fsync (for machine crashes)
 * happens in batches before results are handed out. On open, every judge-*.jnl
 * in the folder is replayed, so a job restarted on another rank count still
 * finds every answer; a torn last line (kill during write) is skipped and our
 * own file is cut back to the end of its last line. */
#include "rlaif/judge/judge.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* In memory only where each record lies: millions of answers stay cheap,
 * and a lookup reads its record back with one pread. */
typedef struct {
    char key[32];
    int file;
    int32_t len;
    int64_t off;
} record;

struct rlaif_journal {
    int fd; /* our own file, appending */
    char path[4096];
    int *fds; /* every replayed file, read-only; fds[nfile - 1] is ours */
    int nfile;
    int64_t own_size;
    record *rec;
    long nrec, caprec;
    long *slot; /* open addressing: index into rec, -1 empty */
    long nslot;
    int dirty;
    rlaif_journal_entry scratch; /* the last lookup's answer */
    json_t *scratch_json;
};

static uint64_t key_hash(const char *key) {
    return rlaif_hash64(key, 32, 7);
}

static long find_slot(const rlaif_journal *jl, const char *key) {
    long i = (long)(key_hash(key) & (uint64_t)(jl->nslot - 1));
    while (jl->slot[i] >= 0 && memcmp(jl->rec[jl->slot[i]].key, key, 32))
        i = (i + 1) & (jl->nslot - 1);
    return i;
}

static void grow(rlaif_journal *jl) {
    long n = jl->nslot ? jl->nslot * 2 : 1024;
    free(jl->slot);
    jl->slot = xmalloc(sizeof(long) * (size_t)n);
    for (long i = 0; i < n; i++) jl->slot[i] = -1;
    jl->nslot = n;
    for (long r = 0; r < jl->nrec; r++) jl->slot[find_slot(jl, jl->rec[r].key)] = r;
}

/* Remember where a record lies (a later record for the same key wins). */
static void remember(rlaif_journal *jl, const char *key, int file, int64_t off, size_t len) {
    if (2 * (jl->nrec + 1) > jl->nslot) grow(jl);
    long s = find_slot(jl, key);
    if (jl->slot[s] < 0) {
        if (jl->nrec == jl->caprec) {
            jl->caprec = jl->caprec ? 2 * jl->caprec : 1024;
            jl->rec = xrealloc(jl->rec, sizeof(record) * (size_t)jl->caprec);
        }
        jl->slot[s] = jl->nrec++;
    }
    record *r = &jl->rec[jl->slot[s]];
    memcpy(r->key, key, 32);
    r->file = file, r->off = off, r->len = (int32_t)len;
}

static double num_or_nan(json_t *v) {
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The key of a whole record line, or NULL. */
static const char *record_key(json_t *o) {
    const char *key = json_string_value(json_object_get(o, "k"));
    return key && strlen(key) == 32 ? key : NULL;
}

#define CHECK_TAIL 24 /* ,"x":"0123456789abcdef"} */

/* 1 when rec[0..n) (no newline) is a whole record whose check holds (a
 * record without "x", from before the check existed, only has to parse). */
static int record_ok(const char *rec, size_t n) {
    if (n > CHECK_TAIL && !memcmp(rec + n - CHECK_TAIL, ",\"x\":\"", 6)) {
        char want[17];
        snprintf(want, sizeof want, "%016llx",
                 (unsigned long long)rlaif_hash64(rec, n - CHECK_TAIL, 0x6a6e6cULL));
        if (memcmp(rec + n - CHECK_TAIL + 6, want, 16) || memcmp(rec + n - 2, "\"}", 2)) return 0;
    }
    json_error_t err;
    json_t *o = json_loadb(rec, n, 0, &err);
    int ok = record_key(o) != NULL;
    json_decref(o);
    return ok;
}

/* Where the next record starts in s[from..n), or n. */
static size_t next_start(const char *s, size_t from, size_t n) {
    static const char mark[] = "{\"k\":\"";
    for (size_t i = from; i + sizeof mark - 1 <= n; i++)
        if (s[i] == '{' && !memcmp(s + i, mark, sizeof mark - 1)) return i;
    return n;
}

typedef struct {
    long damaged, first_line;
    int64_t first_off;
} damage;

/* Check one line (without its newline) at file offset off: remember each good
 * record in it; a damaged piece is counted and skipped up to the next record
 * start. */
static void replay_line(rlaif_journal *jl, int file, const char *s, size_t n, int64_t off,
                        long lineno, damage *dm) {
    if (record_ok(s, n)) {
        json_error_t err;
        json_t *o = json_loadb(s, n, 0, &err);
        remember(jl, record_key(o), file, off, n + 1);
        json_decref(o);
        return;
    }
    for (size_t a = 0, b; a < n; a = b) { /* damaged: salvage records glued on */
        b = next_start(s, a + 1, n);
        if (a > 0 && record_ok(s + a, b - a)) {
            json_error_t err;
            json_t *o = json_loadb(s + a, b - a, 0, &err);
            remember(jl, record_key(o), file, off + (int64_t)a, b - a);
            json_decref(o);
        } else if (!dm->damaged++)
            dm->first_line = lineno, dm->first_off = off + (int64_t)a;
    }
}

/* Replay a file; returns the length up to the end of its last whole line
 * (what follows is a write torn by a kill) or -1. */
static int64_t replay_file(rlaif_journal *jl, int file, FILE *f, const char *path) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int64_t good = 0;
    long lineno = 0;
    damage dm = {0};
    while ((n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] != '\n') break; /* torn by a kill mid-write */
        replay_line(jl, file, line, (size_t)n - 1, good, ++lineno, &dm);
        good += n;
    }
    free(line);
    if (dm.damaged)
        rlaif_warn("judge journal %s: %ld damaged record(s) skipped, the first on line %ld "
                   "(byte %lld); every other record is kept, the damaged calls will be asked "
                   "(and paid) again",
                   path, dm.damaged, dm.first_line, (long long)dm.first_off);
    return good;
}

/* Open and replay path (read-only); the fd joins jl->fds. */
static int64_t replay_path(rlaif_journal *jl, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    FILE *f = fdopen(dup(fd), "r");
    if (!f) {
        close(fd);
        return -1;
    }
    jl->fds = xrealloc(jl->fds, sizeof(int) * (size_t)(jl->nfile + 1));
    jl->fds[jl->nfile] = fd;
    int64_t good = replay_file(jl, jl->nfile++, f, path);
    fclose(f);
    return good;
}

int rlaif_journal_open(rlaif_journal **out, const char *dir, int rank) {
    *out = NULL;
    RLAIF_TRY(rlaif_mkdir_p(dir));
    rlaif_journal *jl = xcalloc(1, sizeof *jl);
    jl->fd = -1;
    grow(jl);
    snprintf(jl->path, sizeof jl->path, "%s/judge-rank-%05d.jnl", dir, rank);
    DIR *d = opendir(dir);
    if (!d) {
        rlaif_journal_close(jl);
        return rlaif_error_sys(RLAIF_EX_IOERR, "opendir", dir, __FILE__, __LINE__);
    }
    struct dirent *de;
    char own[300];
    snprintf(own, sizeof own, "judge-rank-%05d.jnl", rank);
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (strncmp(de->d_name, "judge-", 6) || n < 10 || strcmp(de->d_name + n - 4, ".jnl") ||
            !strcmp(de->d_name, own))
            continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        replay_path(jl, p);
    }
    closedir(d);
    jl->fd = open(jl->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (jl->fd < 0) {
        int rc = rlaif_error_sys(RLAIF_EX_IOERR, "open", jl->path, __FILE__, __LINE__);
        rlaif_journal_close(jl);
        return rc;
    }
    if (flock(jl->fd, LOCK_EX | LOCK_NB)) {
        rlaif_journal_close(jl);
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "two jobs (or two ranks with the same judge rank) "
                           "cannot share a journal file",
                           "journal %s is in use by another process", own);
    }
    /* our own file last (after the lock: nobody else appends to it now) */
    int64_t good = replay_path(jl, jl->path);
    if (good < 0 || ftruncate(jl->fd, good)) {
        int rc = rlaif_error_sys(RLAIF_EX_IOERR, "ftruncate", jl->path, __FILE__, __LINE__);
        rlaif_journal_close(jl);
        return rc;
    }
    jl->own_size = good;
    *out = jl;
    return 0;
}

void rlaif_journal_close(rlaif_journal *jl) {
    if (!jl) return;
    if (jl->fd >= 0) {
        if (jl->dirty) fsync(jl->fd);
        close(jl->fd);
    }
    for (int i = 0; i < jl->nfile; i++) close(jl->fds[i]);
    json_decref(jl->scratch_json);
    free(jl->fds), free(jl->rec), free(jl->slot), free(jl);
}

int rlaif_journal_lookup(rlaif_journal *jl, const char key[33], rlaif_journal_entry *e) {
    long s = find_slot(jl, key);
    if (jl->slot[s] < 0) return 0;
    const record *r = &jl->rec[jl->slot[s]];
    char *buf = xmalloc((size_t)r->len + 1);
    ssize_t n = pread(jl->fds[r->file], buf, (size_t)r->len, r->off);
    json_error_t err;
    size_t body =
        n == r->len && r->len > 0 && buf[r->len - 1] == '\n' ? (size_t)r->len - 1 : (size_t)r->len;
    json_t *o = n == r->len && record_ok(buf, body) ? json_loadb(buf, body, 0, &err) : NULL;
    free(buf);
    if (!o || !record_key(o) || memcmp(record_key(o), key, 32)) {
        json_decref(o);
        return 0; /* unreadable now: ask again rather than guess */
    }
    json_decref(jl->scratch_json);
    jl->scratch_json = o;
    jl->scratch = (rlaif_journal_entry){
        .status = (int)json_integer_value(json_object_get(o, "s")),
        .http_status = (int)json_integer_value(json_object_get(o, "h")),
        .text = (char *)json_string_value(json_object_get(o, "t")),
        .label = num_or_nan(json_object_get(o, "lab")),
        .p_a = num_or_nan(json_object_get(o, "pa")),
        .coverage = num_or_nan(json_object_get(o, "cv")),
        .tokens_in = (long)json_integer_value(json_object_get(o, "ti")),
        .tokens_out = (long)json_integer_value(json_object_get(o, "to")),
    };
    *e = jl->scratch;
    return 1;
}

static json_t *num_or_null(double v) {
    return isnan(v) ? json_null() : json_real(v);
}

/* Testing: RLAIF_TEST_KILL_AFTER_JOURNAL=N makes the process kill -9 itself
 * right after its Nth record, with whatever else it holds (answers read and
 * not journaled) lost as in a real kill; the fault tests count them. */
static void test_kill_point(void) {
    static long after = -2, written;
    if (after == -2) {
        const char *v = getenv("RLAIF_TEST_KILL_AFTER_JOURNAL");
        after = v && *v ? atol(v) : -1;
    }
    if (after >= 0 && ++written >= after) raise(SIGKILL);
}

int rlaif_journal_append(rlaif_journal *jl, const char key[33], const rlaif_journal_entry *e,
                         const char *raw, size_t raw_len) {
    json_t *o = json_object();
    json_object_set_new(o, "k", json_string(key));
    json_object_set_new(o, "s", json_integer(e->status));
    json_object_set_new(o, "h", json_integer(e->http_status));
    json_object_set_new(o, "t", json_string(e->text ? e->text : ""));
    json_object_set_new(o, "lab", num_or_null(e->label));
    json_object_set_new(o, "pa", num_or_null(e->p_a));
    json_object_set_new(o, "cv", num_or_null(e->coverage));
    json_object_set_new(o, "ti", json_integer(e->tokens_in));
    json_object_set_new(o, "to", json_integer(e->tokens_out));
    json_t *r = raw ? json_stringn(raw, raw_len) : NULL;
    json_object_set_new(o, "raw", r ? r : json_null()); /* NULL: not valid UTF-8 */
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!line) return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "json_dumps of a journal record failed");
    size_t n = strlen(line) - 1; /* the closing brace gives way to the check */
    line = xrealloc(line, n + CHECK_TAIL + 2);
    snprintf(line + n, CHECK_TAIL + 2, ",\"x\":\"%016llx\"}\n",
             (unsigned long long)rlaif_hash64(line, n, 0x6a6e6cULL));
    n += CHECK_TAIL + 1;
    /* one write: O_APPEND keeps records whole; retry the tail on a short write */
    for (size_t off = 0; off < n;) {
        ssize_t w = write(jl->fd, line + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            free(line);
            return rlaif_error_sys(RLAIF_EX_IOERR, "write", jl->path, __FILE__, __LINE__);
        }
        off += (size_t)w;
    }
    free(line);
    jl->dirty = 1;
    remember(jl, key, jl->nfile - 1, jl->own_size, n);
    jl->own_size += (int64_t)n;
    test_kill_point();
    return 0;
}

int rlaif_journal_sync(rlaif_journal *jl) {
    if (!jl->dirty) return 0;
    RLAIF_CHECK_SYS(fsync(jl->fd), RLAIF_EX_IOERR, jl->path);
    jl->dirty = 0;
    return 0;
}

long rlaif_journal_count(const rlaif_journal *jl) {
    return jl->nrec;
}
