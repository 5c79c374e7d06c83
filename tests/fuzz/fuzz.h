/* fuzz.h - what the libFuzzer targets share: the fuzz input as a file (the
 * parsers under test read files, as the real program does) in a private
 * scratch folder, and a cleared error record after each input. */
#ifndef RLAIF_FUZZ_H
#define RLAIF_FUZZ_H

#include "rlaif/core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* One scratch folder per process (under $TMPDIR, tmpfs when it is one),
 * removed at exit so a long fuzz run leaves nothing behind. */
static char fuzz_dir_buf[4096];
static inline void fuzz_dir_remove(void) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_buf);
    if (system(cmd)) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_buf);
}
static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_buf[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_dir_buf, sizeof fuzz_dir_buf, "%s/rlaif-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fuzz_dir_buf)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_dir_remove);
    }
    return fuzz_dir_buf;
}

/* Write data to <scratch>/name; path (n bytes) receives the file name, returned. */
static inline const char *fuzz_file(const char *name, const void *data, size_t size, char *path,
                                    size_t n) {
    snprintf(path, n, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(path);
        abort();
    }
    return path;
}

/* The input as a NUL-terminated copy (parsers of text take C strings). */
static inline char *fuzz_cstr(const unsigned char *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* Split data at the first "\n====\n" into two parts (b empty when absent). */
static inline void fuzz_split(const unsigned char *data, size_t size, size_t *na,
                              const unsigned char **b, size_t *nb) {
    static const char sep[] = "\n====\n";
    const unsigned char *p = size >= 6 ? memmem(data, size, sep, 6) : NULL;
    *na = p ? (size_t)(p - data) : size;
    *b = p ? p + 6 : data + size;
    *nb = p ? size - *na - 6 : 0;
}

#endif
