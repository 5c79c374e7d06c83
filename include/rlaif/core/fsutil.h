/* fsutil.h - file-system helpers every writer of outputs needs.
 *
 * Outputs (checkpoints, journals, logs, metrics) live in folders the user
 * names in the job file and that usually do not exist yet on a fresh run. */
#ifndef RLAIF_FSUTIL_H
#define RLAIF_FSUTIL_H

/* mkdir -p: create dir and every missing parent (mode 0777 & ~umask). An
 * existing folder is fine. On failure the error names the component that
 * could not be created and the reason (EACCES, ENOSPC, a file in the way...);
 * returns RLAIF_EX_IOERR. */
int rlaif_mkdir_p(const char *dir);

#include <stddef.h>

/* "<a>/<b>", or b alone when it is absolute or a is empty (paths of the job
 * file are relative to run.out_dir unless absolute). */
void rlaif_path_join(char *out, size_t n, const char *a, const char *b);

/* Copy src to dst (created or truncated) and fsync dst. RLAIF_EX_IOERR
 * naming the file and the reason (ENOSPC...); dst may then be partial. */
int rlaif_copy_file(const char *src, const char *dst);
/* Re-read both files: 0 when byte-identical, else RLAIF_EX_IOERR naming
 * both and the first differing offset (or the sizes). */
int rlaif_files_equal(const char *a, const char *b);
/* Write text to path via path.tmp, fsync and rename: a reader (or a crash)
 * sees the old file or the whole new one, never a torn one. -1 and errno
 * on failure (the temporary file removed). */
int rlaif_write_atomic(const char *path, const char *text);

#endif
