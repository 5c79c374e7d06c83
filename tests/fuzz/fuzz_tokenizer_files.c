/* fuzz_tokenizer_files.c - libFuzzer target for tokenizer files a user hands
 * over: GPT-2's encoder.json + vocab.bpe and Hugging Face tokenizer.json.
 * The first byte picks the loader; for GPT-2 the rest is encoder.json, then
 * "\n====\n", then vocab.bpe. A load either fails with a message naming the
 * file, or gives a tokenizer whose encoding of any text (the input itself)
 * yields ids inside the vocabulary that decode again; never a crash.
 * The seeds (tests/fuzz/corpus/tokenizer_files) cover every loader path:
 * GPT-2, Llama 3's and Qwen2's Split regexes, Digits, NFC, SentencePiece BPE
 * with byte fallback (normalizer or Metaspace form), BOS from a post_processor.
 * (fuzz_tokenizer.c fuzzes the text side with the real GPT-2 files.)
 *   make fuzz FUZZ_TARGETS=tokenizer_files FUZZ_SECONDS=60 */
#include "fuzz.h"
#include "rlaif/tokenizer/tokenizer.h"

static void use(rlaif_tokenizer *t, const unsigned char *text, size_t n) {
    static const char fixed[] = "Hello world, RLAIF! <|endoftext|> 47 plus 38\n\t\xc3\xa9";
    const char *texts[2] = {fixed, (const char *)text};
    size_t lens[2] = {sizeof fixed - 1, n};
    for (int i = 0; i < 2; i++)
        for (int flags = 0; flags < 8; flags++) {
            rlaif_tokens ids = {0};
            int f = (flags & 1 ? RLAIF_TOK_SPECIAL : 0) | (flags & 2 ? RLAIF_TOK_GPT3_ENCODER : 0) |
                    (flags & 4 ? RLAIF_TOK_BOS : 0);
            if (rlaif_tokenizer_encode(t, texts[i], lens[i], f, &ids) == 0) {
                for (size_t k = 0; k < ids.n; k++)
                    if (ids.ids[k] < 0 || ids.ids[k] >= rlaif_tokenizer_vocab_size(t)) abort();
                rlaif_bytes out = {0};
                int df = flags & 4 ? RLAIF_TOK_SKIP_SPECIAL | RLAIF_TOK_CONTINUE : 0;
                if (rlaif_tokenizer_decode(t, ids.ids, ids.n, df, &out)) abort();
                rlaif_bytes_free(&out);
            }
            rlaif_tokens_free(&ids);
            rlaif_error_clear();
        }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (size == 0) return 0;
    int hf = data[0] & 1;
    data++, size--;
    rlaif_tokenizer *t = NULL;
    int rc;
    char p1[4200], p2[4200];
    if (hf) {
        rc = rlaif_tokenizer_load_hf(&t, fuzz_file("tokenizer.json", data, size, p1, sizeof p1));
    } else {
        size_t na, nb;
        const unsigned char *b;
        fuzz_split(data, size, &na, &b, &nb);
        fuzz_file("encoder.json", data, na, p1, sizeof p1);
        fuzz_file("vocab.bpe", b, nb, p2, sizeof p2);
        rc = rlaif_tokenizer_load_gpt2(&t, p1, p2);
    }
    if (rc == 0) {
        if (!t) abort();
        use(t, data, size);
        rlaif_tokenizer_free(t);
    } else if (!rlaif_error_message()[0]) {
        abort();
    }
    rlaif_error_clear();
    return 0;
}
