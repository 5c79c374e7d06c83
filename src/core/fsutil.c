/* fsutil.c - file-system helpers (see fsutil.h). */
#include "rlaif/core/fsutil.h"

#include "rlaif/core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cannot_create(const char *dir) {
    int e = errno;
    const char *hint = e == EACCES || e == EPERM || e == EROFS
                           ? "check the folder's permissions or choose another output folder"
                       : e == ENOSPC || e == EDQUOT ? "the file system is full or over quota"
                                                    : "check the path";
    return RLAIF_ERROR(RLAIF_EX_IOERR, hint, "cannot create %s: %s", dir, strerror(e));
}

int rlaif_mkdir_p(const char *dir) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return RLAIF_ERROR(RLAIF_EX_IOERR, "use a shorter output path", "path too long: %.64s...",
                           dir);
    /* Create each prefix ending at a '/', then the whole path. */
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return cannot_create(buf);
        if (!c) break;
        *p = c;
    }
    /* mkdir says EEXIST for a file of that name too. */
    struct stat st;
    if (stat(buf, &st) != 0)
        return rlaif_error_sys(RLAIF_EX_IOERR, "stat", buf, __FILE__, __LINE__);
    if (!S_ISDIR(st.st_mode))
        return RLAIF_ERROR(RLAIF_EX_IOERR, "remove the file or choose another output folder",
                           "%s exists and is not a folder", buf);
    return 0;
}

void rlaif_path_join(char *out, size_t n, const char *a, const char *b) {
    if (b[0] == '/' || !*a)
        snprintf(out, n, "%s", b);
    else
        snprintf(out, n, "%s/%s", a, b);
}

enum { COPY_BLOCK = 4 << 20 };

static int io_error(const char *what, const char *path) {
    int e = errno;
    return RLAIF_ERROR(RLAIF_EX_IOERR,
                       e == ENOSPC || e == EDQUOT ? "the file system is full or over quota" : NULL,
                       "%s %s: %s", what, path, strerror(e));
}

/* Write all n bytes (write may return fewer). */
static int write_all(int fd, const char *buf, size_t n) {
    while (n) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        buf += w, n -= (size_t)w;
    }
    return 0;
}

/* Read up to n bytes, fewer only at the end of the file; -1 on error. */
static ssize_t read_full(int fd, char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int rlaif_copy_file(const char *src, const char *dst) {
    int in = open(src, O_RDONLY);
    if (in < 0) return io_error("cannot open", src);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (out < 0) {
        close(in);
        return io_error("cannot create", dst);
    }
    char *buf = xmalloc(COPY_BLOCK);
    int rc = 0;
    for (;;) {
        ssize_t r = read_full(in, buf, COPY_BLOCK);
        if (r < 0) rc = io_error("cannot read", src);
        if (r <= 0) break;
        if (write_all(out, buf, (size_t)r)) {
            rc = io_error("cannot write", dst);
            break;
        }
    }
    if (!rc && fsync(out) != 0) rc = io_error("cannot fsync", dst);
    if (close(out) != 0 && !rc) rc = io_error("cannot close", dst);
    close(in);
    free(buf);
    return rc;
}

int rlaif_files_equal(const char *a, const char *b) {
    int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
    int rc = fa < 0 ? io_error("cannot open", a) : fb < 0 ? io_error("cannot open", b) : 0;
    char *x = xmalloc(COPY_BLOCK), *y = xmalloc(COPY_BLOCK);
    long long off = 0;
    while (!rc) {
        ssize_t ra = read_full(fa, x, COPY_BLOCK), rb = read_full(fb, y, COPY_BLOCK);
        if (ra < 0 || rb < 0) {
            rc = io_error("cannot read", ra < 0 ? a : b);
        } else if (ra != rb || memcmp(x, y, (size_t)ra)) {
            size_t i = 0, m = (size_t)(ra < rb ? ra : rb);
            while (i < m && x[i] == y[i]) i++;
            rc = RLAIF_ERROR(RLAIF_EX_IOERR, "the copy is damaged: check the file system",
                             "%s and %s differ at byte %lld", a, b, off + (long long)i);
        } else if (ra == 0) {
            break;
        }
        off += ra > 0 ? ra : 0;
    }
    if (fa >= 0) close(fa);
    if (fb >= 0) close(fb);
    free(x), free(y);
    return rc;
}
int rlaif_write_atomic(const char *path, const char *text) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return -1;
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}
