/* bench_tokenizer.c - encode speed of rlaif's GPT-2 tokenizer (the C side of
 * tools/bench/bench-tokenizer). Reads the same ~1 KB pieces the node reference gets
 * (JSON strings, one per line) and encodes them REPEATS times, one encode call
 * per piece; prints per pass: mode, seconds, bytes, tokens, checksum (same
 * checksum as tests/reference/gpt3_encode.js, so the ids can be compared).
 * With "-" for VOCAB_BPE the first argument is a Hugging Face tokenizer.json,
 * encoded with special tokens recognised (as transformers.js does, the
 * reference of tests/reference/hf_encode.js); mode "hf".
 *
 *   bench_tokenizer ENCODER_JSON VOCAB_BPE PIECES.jsonl REPEATS
 *   bench_tokenizer TOKENIZER_JSON - PIECES.jsonl REPEATS */
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pass(rlaif_tokenizer *t, const char *mode, int flags, char **p, size_t *len, size_t n,
                 size_t bytes, rlaif_tokens *ids) {
    ids->n = 0;
    double t0 = rlaif_now();
    for (size_t i = 0; i < n; i++) rlaif_tokenizer_encode(t, p[i], len[i], flags, ids);
    double dt = rlaif_now() - t0;
    long long sum = 0;
    for (size_t i = 0; i < ids->n; i++) sum = (sum * 31 + ids->ids[i]) % 1000000007;
    printf("%s %.6f %zu %zu %lld\n", mode, dt, bytes, ids->n, sum);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s ENCODER_JSON VOCAB_BPE PIECES.jsonl REPEATS\n", argv[0]);
        return RLAIF_EX_USAGE;
    }
    rlaif_tokenizer *t;
    int hf = !strcmp(argv[2], "-");
    if (hf ? rlaif_tokenizer_load_hf(&t, argv[1])
           : rlaif_tokenizer_load_gpt2(&t, argv[1], argv[2])) {
        fprintf(stderr, "ERROR: %s\n", rlaif_error_message());
        return 1;
    }
    FILE *f = fopen(argv[3], "rb");
    if (!f) {
        perror(argv[3]);
        return RLAIF_EX_NOINPUT;
    }
    size_t n = 0, cap = 1024, bytes = 0;
    char **p = malloc(cap * sizeof *p), line[1 << 16];
    size_t *len = malloc(cap * sizeof *len);
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *v = json_loads(line, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!json_is_string(v)) {
            fprintf(stderr, "%s: line %zu: not a JSON string (%s)\n", argv[3], n + 1, je.text);
            return RLAIF_EX_NOINPUT;
        }
        if (n == cap) p = realloc(p, (cap *= 2) * sizeof *p), len = realloc(len, cap * sizeof *len);
        len[n] = json_string_length(v);
        p[n] = malloc(len[n] + 1);
        memcpy(p[n], json_string_value(v), len[n]);
        bytes += len[n];
        n++;
        json_decref(v);
    }
    fclose(f);
    rlaif_tokens ids = {0};
    for (int r = 0; r < atoi(argv[4]); r++) {
        if (hf) {
            pass(t, "hf", RLAIF_TOK_SPECIAL, p, len, n, bytes, &ids);
            continue;
        }
        pass(t, "gpt2", 0, p, len, n, bytes, &ids);
        pass(t, "gpt-3-encoder", RLAIF_TOK_GPT3_ENCODER, p, len, n, bytes, &ids);
    }
    rlaif_tokens_free(&ids);
    for (size_t i = 0; i < n; i++) free(p[i]);
    free(p), free(len);
    rlaif_tokenizer_free(t);
    return 0;
}
