/* fuzz_h5.c - libFuzzer target for the schema checks of HDF5 files a run
 * opens: checkpoints (the engine's serial rlaif_model_load, the storage
 * module's parallel rlaif_checkpoint_load with checksums and /tokenizer,
 * rlaif_checkpoint_newest_done) and preference files (rlaif_prefs_read).
 * Seeds are small valid files (tests/fuzz/corpus/h5/); the fuzzer mutates
 * their bytes. Each reader either accepts the file or fails with a message;
 * never a crash, never an out-of-bounds read from a damaged length or
 * offset. Model sizes a file claims are capped here only so one input
 * cannot take more than a fuzz worker's memory.
 *   make fuzz FUZZ_TARGETS=h5 FUZZ_SECONDS=60 */
#include "fuzz.h"
#include "rlaif/engine/model.h"
#include "rlaif/engine/model_io.h"
#include "rlaif/storage/checkpoint.h"
#include "rlaif/core/h5util.h"
#include "rlaif/storage/prefs.h"
#include "rlaif/tokenizer/tokenizer.h"

#include <hdf5.h>
#include <mpi.h>
#include <sys/stat.h>

static void finalize(void) {
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    MPI_Init(argc, argv); /* a singleton: the readers run on MPI_COMM_SELF */
    atexit(finalize);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return 0;
}

static void must_say_why(int rc) {
    if (rc && !rlaif_error_message()[0]) abort();
    rlaif_error_clear();
}

static void prefs(const char *path) {
    rlaif_prefs_data d;
    int rc = rlaif_prefs_read(path, &d);
    if (rc == 0) {
        for (size_t i = 0; i < d.prompts.n; i++) free(rlaif_ragged_text(&d.prompts, i));
        for (size_t i = 0; i < d.responses.n; i++) free(rlaif_ragged_text(&d.responses, i));
        rlaif_prefs_data_free(&d);
    }
    must_say_why(rc);
}

static void checkpoint(const char *path) {
    rlaif_model_config cfg;
    int rc = rlaif_ckpt_read_config(path, &cfg);
    must_say_why(rc);
    if (rc || rlaif_model_config_check(&cfg)) return rlaif_error_clear();
    rlaif_tensor_table tt = {0};
    rlaif_model_table(&cfg, &tt);
    if (tt.total <= (1u << 20)) {
        rlaif_model m = {0};
        rc = rlaif_model_load(path, &m);
        if (rc == 0) rlaif_model_free(&m);
        must_say_why(rc);
        float *buf = calloc(3 * tt.total, sizeof(float));
        rlaif_tokenizer *tok = NULL;
        rlaif_ckpt c = {.table = &tt,
                        .params = buf,
                        .m = buf + tt.total,
                        .v = buf + 2 * tt.total,
                        .tokenizer_read = rlaif_tokenizer_ckpt_read,
                        .tokenizer_read_ud = &tok};
        rlaif_h5_opts io;
        rlaif_h5_opts_default(&io);
        rc = rlaif_checkpoint_load(MPI_COMM_SELF, path, &io, &c);
        must_say_why(rc);
        rlaif_kv_free(&c.config), rlaif_kv_free(&c.state), rlaif_kv_free(&c.optim);
        rlaif_tokenizer_free(tok);
        free(buf);
    }
    rlaif_tensors_free(&tt);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    char dir[4200], path[4200];
    snprintf(dir, sizeof dir, "%s/ckpt", fuzz_dir());
    mkdir(dir, 0755);
    fuzz_file("ckpt/sft-00000001.h5", data, size, path, sizeof path);
    prefs(path);
    checkpoint(path);
    rlaif_tokenizer *t = NULL;
    int rc = rlaif_tokenizer_load_file(&t, path);
    if (rc == 0) rlaif_tokenizer_free(t);
    must_say_why(rc);
    char found_path[4200];
    int found = 0, count = 0;
    must_say_why(rlaif_checkpoint_newest_done(dir, "sft", "fuzz", found_path, sizeof found_path,
                                              &found, &count));
    unlink(path);
    return 0;
}
