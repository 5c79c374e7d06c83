/* fuzz_config.c - libFuzzer target for job files: the INI parser and the
 * schema checks (types, ranges, unknown keys with suggestions, durations)
 * of rlaif_config_load. Input: the job file, optionally followed by
 * "\n====\n" and one --set override per line. A load either succeeds (and the
 * resolved config dumps) or fails with a recorded message; never a crash.
 *   make fuzz FUZZ_TARGETS=config FUZZ_SECONDS=60 */
#include "fuzz.h"
#include "rlaif/core/config.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    size_t na, nb;
    const unsigned char *b;
    fuzz_split(data, size, &na, &b, &nb);
    char path[4200];
    fuzz_file("job.ini", data, na, path, sizeof path);
    char *sets_text = fuzz_cstr(b, nb);
    char *sets[64];
    int nset = 0;
    for (char *save = NULL, *line = strtok_r(sets_text, "\n", &save); line && nset < 64;
         line = strtok_r(NULL, "\n", &save))
        sets[nset++] = line;
    char *env[] = {NULL}; /* the process environment must not steer the fuzzer */
    rlaif_config *cfg = NULL;
    int rc = rlaif_config_load(&cfg, path, nset, sets, env);
    if (rc == 0) {
        if (!cfg) abort();
        char *dump = rlaif_config_dump(cfg);
        if (!dump) abort();
        free(dump);
        rlaif_config_free(cfg);
    } else {
        if (cfg || !rlaif_error_message()[0]) abort(); /* a failure says why */
    }
    rlaif_error_clear();
    free(sets_text);
    return 0;
}
