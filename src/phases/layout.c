/* layout.c - paths under run.out_dir and the exit_status marker (layout.h). */
#include "rlaif/phases/layout.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void rlaif_out_path(const rlaif_config *cfg, const char *name, char *buf, size_t n) {
    rlaif_path_join(buf, n, rlaif_cfg_str(cfg, "run.out_dir"), name);
}

void rlaif_out_ckpt_dir(const rlaif_config *cfg, char *buf, size_t n) {
    rlaif_out_path(cfg, rlaif_cfg_str(cfg, "checkpoint.dir"), buf, n);
}

int rlaif_out_status_clear(const rlaif_config *cfg) {
    char path[4096];
    rlaif_out_path(cfg, RLAIF_OUT_STATUS, path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT && errno != ENOTDIR)
        return RLAIF_ERROR(RLAIF_EX_IOERR, "check the permissions of run.out_dir",
                           "cannot remove the old %s: %s", path, strerror(errno));
    return 0;
}

int rlaif_out_status_write(const rlaif_config *cfg, int code) {
    char path[4096], dir[4096], text[32];
    rlaif_out_path(cfg, RLAIF_OUT_STATUS, path, sizeof path);
    rlaif_out_path(cfg, ".", dir, sizeof dir);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return 0; /* nothing ran there */
    snprintf(text, sizeof text, "%d\n", code);
    return rlaif_write_atomic(path, text);
}
