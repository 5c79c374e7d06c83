/* fsutil.c - file-system helpers (see fsutil.h). */
#include "rlaif/core/fsutil.h"

#include "rlaif/core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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
