/* outdir.c - the out_dir lock and the config fingerprint (see outdir.h).
 *
 * Both run on world rank 0 only: the lock belongs to one process (fcntl locks
 * are per process), and the fingerprint file is small. The outcome is agreed
 * by every rank, so a refused job exits on every rank with the same code. */
#include "rlaif/storage/outdir.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *const rlaif_fingerprint_keys[] = {"model.arch",
                                              "model.n_layer",
                                              "model.n_embd",
                                              "model.n_head",
                                              "model.max_seq_len",
                                              "model.vocab_size",
                                              "tokenizer.type",
                                              "tokenizer.vocab",
                                              "tokenizer.merges",
                                              "tokenizer.specials",
                                              "model.chat_template",
                                              "model.system_prompt",
                                              NULL};

/* The lock's descriptor: never closed, since closing any descriptor of the
 * file releases the process's fcntl locks on it. The kernel drops the lock
 * when the process ends, however it ends. */
static int lock_fd = -1;

static void holder_line(char *buf, size_t n) {
    char host[256] = "?";
    gethostname(host, sizeof host - 1);
    const char *job = getenv("SLURM_JOB_ID") ? getenv("SLURM_JOB_ID") : getenv("PBS_JOBID");
    time_t now = time(NULL);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    snprintf(buf, n, "host %s, pid %ld, job %s, since %s", host, (long)getpid(), job ? job : "none",
             when);
}

static int refuse_held(int fd, const char *path) {
    char who[512] = "";
    ssize_t r = pread(fd, who, sizeof who - 1, 0);
    close(fd);
    who[r > 0 ? r : 0] = 0;
    who[strcspn(who, "\n")] = 0;
    return RLAIF_ERROR(RLAIF_EX_IOERR,
                       "two jobs on one out_dir would overwrite each other's checkpoints: wait "
                       "for that job to end, or give this one another run.out_dir",
                       "%s is locked by another rlaif job (%s)", path,
                       *who ? who : "holder not recorded yet");
}

static int take_lock(const char *out) {
    char path[4096];
    rlaif_path_join(path, sizeof path, out, ".rlaif.lock");
    if (lock_fd >= 0) return 0; /* this process holds it already */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    RLAIF_CHECK_SYS(fd, RLAIF_EX_IOERR, path);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        if (errno == EACCES || errno == EAGAIN) return refuse_held(fd, path);
        rlaif_warn("cannot lock %s (%s): the file system has no fcntl locks (Lustre without "
                   "-o flock?), so nothing stops a second job on this out_dir",
                   path, strerror(errno));
        close(fd);
        return 0;
    }
    char who[512];
    holder_line(who, sizeof who);
    size_t len = strlen(who);
    who[len++] = '\n';
    if (ftruncate(fd, 0) != 0 || pwrite(fd, who, len, 0) != (ssize_t)len) {
        int rc = rlaif_error_sys(RLAIF_EX_IOERR, "write", path, __FILE__, __LINE__);
        close(fd);
        return rc;
    }
    lock_fd = fd;
    return 0;
}

/* ---- fingerprint ---- */

/* Value of key in the "key = value" lines of text, into val; 0 when absent. */
static int stored_value(const char *text, const char *key, char *val, size_t n) {
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, key, kl) || strncmp(p + kl, " = ", 3)) continue;
        const char *v = p + kl + 3;
        size_t vl = strcspn(v, "\n");
        snprintf(val, n, "%.*s", (int)vl, v);
        return 1;
    }
    return 0;
}

static char *read_small(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = xcalloc(65536, 1);
    size_t r = fread(buf, 1, 65535, f);
    buf[r] = 0;
    fclose(f);
    return buf;
}

/* The fingerprint file's text for cfg (malloc'd). */
static char *fingerprint_text(const rlaif_config *cfg) {
    size_t cap = 4096, used = 0;
    char *t = xmalloc(cap);
    used = (size_t)snprintf(t, cap,
                            "# what the outputs in this folder were made with: a job "
                            "whose values differ is refused\n");
    for (int i = 0; rlaif_fingerprint_keys[i]; i++) {
        const char *k = rlaif_fingerprint_keys[i], *v = rlaif_cfg_str(cfg, k);
        size_t need = strlen(k) + strlen(v) + 5;
        if (used + need >= cap) cap = 2 * (used + need), t = xrealloc(t, cap);
        used += (size_t)snprintf(t + used, cap - used, "%s = %s\n", k, v);
    }
    return t;
}

static int write_fingerprint(const char *text, const char *path) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    RLAIF_CHECK_PTR(f, RLAIF_EX_IOERR, tmp);
    int bad = fputs(text, f) < 0;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad) return rlaif_error_sys(RLAIF_EX_IOERR, "write", tmp, __FILE__, __LINE__);
    RLAIF_CHECK_SYS(rename(tmp, path), RLAIF_EX_IOERR, path);
    return 0;
}

/* Keys recorded in the file and differing now; keys the file lacks (written
 * by an older rlaif) are not compared. */
static int compare_fingerprint(const rlaif_config *cfg, const char *path, const char *text) {
    char diff[2048] = "";
    size_t used = 0;
    for (int i = 0; rlaif_fingerprint_keys[i]; i++) {
        const char *k = rlaif_fingerprint_keys[i], *now = rlaif_cfg_str(cfg, k);
        char was[1024];
        if (!stored_value(text, k, was, sizeof was) || !strcmp(was, now)) continue;
        int w = snprintf(diff + used, sizeof diff - used, "%s%s = %s (was %s)", used ? ", " : "", k,
                         now, was);
        if (w > 0) used += (size_t)w < sizeof diff - used ? (size_t)w : sizeof diff - used - 1;
    }
    if (!*diff) return 0;
    return RLAIF_ERROR(RLAIF_EX_USAGE,
                       "its checkpoints were made under other values: use another run.out_dir, "
                       "or set these keys back",
                       "the job does not match the outputs in its out_dir (%s): %s", path, diff);
}

/* Does out_dir hold anything the fingerprint protects: a checkpoint or a
 * preference file? (A job that failed before writing any may be corrected.) */
static int has_outputs(const rlaif_config *cfg, const char *out) {
    char dir[4096];
    rlaif_path_join(dir, sizeof dir, out, rlaif_cfg_str(cfg, "checkpoint.dir"));
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    while (d && !found && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        found = l > 3 && !strcmp(e->d_name + l - 3, ".h5");
    }
    if (d) closedir(d);
    rlaif_path_join(dir, sizeof dir, out, "preferences.h5");
    return found || access(dir, F_OK) == 0;
}

/* Compared when out_dir holds outputs; (re)written when it changed, so a
 * rerun of a finished job writes nothing. */
static int check_fingerprint(const rlaif_config *cfg, const char *out) {
    char path[4096];
    rlaif_path_join(path, sizeof path, out, ".rlaif-fingerprint");
    char *old = read_small(path), *now = fingerprint_text(cfg);
    int rc = old && has_outputs(cfg, out) ? compare_fingerprint(cfg, path, old) : 0;
    if (!rc && (!old || strcmp(old, now))) rc = write_fingerprint(now, path);
    free(old), free(now);
    return rc;
}

/* An out_dir this job created and left holding nothing but the lock, the
 * fingerprint, the product-path record and the exit_status marker (a job refused before its first
 * phase) is removed at exit, so a refused job leaves no trace. Only its own
 * files, only that folder. */
static char created[4096];

static void remove_if_unused(void) {
    DIR *d = opendir(created);
    struct dirent *e;
    int other = 0;
    while (d && !other && (e = readdir(d)))
        other = strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
                strcmp(e->d_name, ".rlaif.lock") && strcmp(e->d_name, ".rlaif-fingerprint") &&
                strcmp(e->d_name, "exit_status") && strcmp(e->d_name, RLAIF_OUT_GEMM);
    if (d) closedir(d);
    if (!d || other) return;
    char p[4200];
    snprintf(p, sizeof p, "%s/.rlaif-fingerprint", created);
    unlink(p);
    snprintf(p, sizeof p, "%s/exit_status", created);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s", created, RLAIF_OUT_GEMM);
    unlink(p);
    snprintf(p, sizeof p, "%s/.rlaif.lock", created);
    unlink(p);
    rmdir(created);
}

static int claim_local(const rlaif_config *cfg) {
    const char *out = rlaif_cfg_str(cfg, "run.out_dir");
    if (!*out) out = ".";
    struct stat st;
    if (stat(out, &st) != 0 && snprintf(created, sizeof created, "%s", out) < (int)sizeof created)
        atexit(remove_if_unused);
    RLAIF_TRY(rlaif_mkdir_p(out));
    RLAIF_TRY(take_lock(out));
    return check_fingerprint(cfg, out);
}

int rlaif_outdir_claim(MPI_Comm world, const rlaif_config *cfg) {
    int rank;
    RLAIF_CHECK_MPI(MPI_Comm_rank(world, &rank));
    return rlaif_agree(world, rank == 0 ? claim_local(cfg) : 0);
}
