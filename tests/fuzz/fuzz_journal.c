/* fuzz_journal.c - libFuzzer target for judge journals (judge-rank-*.jnl):
 * the replay on open, lookups that read records back, and the append after
 * a damaged or torn tail. Input: another rank's journal, optionally followed
 * by "\n====\n" and this rank's own journal. Invariants: open never crashes;
 * every lookup answers found or not, with sane fields; a record appended
 * after the replay is found again, identical, after a reopen (a paid answer
 * written after damage is never lost).
 *   make fuzz FUZZ_TARGETS=journal FUZZ_SECONDS=60 */
#include "fuzz.h"
#include "rlaif/judge/judge.h"

#include <jansson.h>
#include <math.h>
#include <sys/stat.h>

/* Look up every 32-character "k" that appears in text. */
static void lookup_all(rlaif_journal *jl, const unsigned char *text, size_t n) {
    const unsigned char *p = text, *end = text + n;
    while (p < end) {
        const unsigned char *e = memchr(p, '\n', (size_t)(end - p));
        size_t len = e ? (size_t)(e - p) : (size_t)(end - p);
        json_error_t err;
        json_t *o = json_loadb((const char *)p, len, 0, &err);
        const char *k = json_string_value(json_object_get(o, "k"));
        if (k && strlen(k) == 32) {
            char key[33];
            memcpy(key, k, 33);
            rlaif_journal_entry en;
            if (rlaif_journal_lookup(jl, key, &en)) rlaif_judge_status_name(en.status);
        }
        json_decref(o);
        p = e ? e + 1 : end;
    }
}

static rlaif_journal *open_or_die(const char *dir) {
    rlaif_journal *jl = NULL;
    if (rlaif_journal_open(&jl, dir, 0) || !jl) {
        fprintf(stderr, "journal open failed: %s\n", rlaif_error_message());
        abort();
    }
    return jl;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    size_t na, nb;
    const unsigned char *b;
    fuzz_split(data, size, &na, &b, &nb);
    char dir[4200], other[4200], own[4200];
    snprintf(dir, sizeof dir, "%s/jnl", fuzz_dir());
    mkdir(dir, 0755);
    fuzz_file("jnl/judge-rank-00001.jnl", data, na, other, sizeof other);
    fuzz_file("jnl/judge-rank-00000.jnl", b, nb, own, sizeof own);
    rlaif_journal *jl = open_or_die(dir);
    lookup_all(jl, data, na);
    lookup_all(jl, b, nb);
    /* a fresh paid answer: its key is new (not 32 hex characters of a record) */
    static const char key[33] = "fuzzfuzzfuzzfuzzfuzzfuzzfuzz0001";
    rlaif_journal_entry e = {.status = 0,
                             .http_status = 200,
                             .text = "The better response is: A",
                             .label = 1.0,
                             .p_a = NAN,
                             .coverage = NAN,
                             .tokens_in = 7,
                             .tokens_out = 9};
    if (rlaif_journal_append(jl, key, &e, "{}", 2) || rlaif_journal_sync(jl)) abort();
    rlaif_journal_close(jl);
    jl = open_or_die(dir);
    rlaif_journal_entry got;
    if (rlaif_journal_lookup(jl, key, &got) != 1) abort(); /* the paid answer survived */
    if (got.status != 0 || got.http_status != 200 || !got.text || strcmp(got.text, e.text) ||
        got.label != 1.0 || got.tokens_in != 7 || got.tokens_out != 9)
        abort();
    rlaif_journal_close(jl);
    unlink(own);
    unlink(other);
    rlaif_error_clear();
    return 0;
}
