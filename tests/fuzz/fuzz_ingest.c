/* fuzz_ingest.c - libFuzzer target for JSONL ingest (rlaif prefs ingest and
 * the SFT/prompt readers). The first byte picks the path: rlaif_jsonl_read
 * with kind prompts, sft or prefs, or (bit 2) the whole rlaif_prefs_ingest on
 * one MPI process, kind detected from the first line, the written HDF5 file
 * read back. Either every record arrives intact (as many as were counted,
 * no text longer than the input), or the error says why; never a crash.
 *   make fuzz FUZZ_TARGETS=ingest FUZZ_SECONDS=60 */
#include "fuzz.h"
#include "rlaif/storage/prefs.h"

#include <mpi.h>

static void finalize(void) {
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    MPI_Init(argc, argv); /* a singleton: the readers run on MPI_COMM_SELF */
    atexit(finalize);
    return 0;
}

static void read_only(const char *path, const char *kind, size_t size) {
    size_t n = 0;
    char **texts = NULL;
    if (rlaif_jsonl_read(path, kind, &n, &texts) == 0) {
        size_t total = 0;
        for (size_t i = 0; i < 3 * n; i++) total += texts[i] ? strlen(texts[i]) : 0;
        if (n == 0 || total > size) abort(); /* no record invented */
        rlaif_jsonl_free(texts, n);
    } else if (!rlaif_error_message()[0]) {
        abort();
    }
}

static void ingest(const char *path) {
    char out[4200];
    snprintf(out, sizeof out, "%s/out.h5", fuzz_dir());
    rlaif_h5_opts io;
    rlaif_h5_opts_default(&io);
    io.alignment = 1, io.chunk = 4; /* small files: many inputs a second */
    size_t n = 0;
    if (rlaif_prefs_ingest(path, out, NULL, MPI_COMM_SELF, &io, NULL, NULL, &n) == 0) {
        rlaif_prefs_data d;
        if (rlaif_prefs_read(out, &d)) abort(); /* what ingest wrote must read back */
        if (d.prompts.n == 0 || d.prompts.n > n) abort();
        rlaif_prefs_data_free(&d);
        unlink(out);
    } else if (!rlaif_error_message()[0]) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static const char *const kinds[] = {"prompts", "sft", "prefs", "prompts"};
    if (size == 0) return 0;
    char path[4200];
    fuzz_file("in.jsonl", data + 1, size - 1, path, sizeof path);
    if (data[0] & 4)
        ingest(path);
    else
        read_only(path, kinds[data[0] & 3], size);
    rlaif_error_clear();
    return 0;
}
