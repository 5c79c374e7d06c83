/* test_tokenizer.c - unit tests of the tokenizer: byte tokenizer, specials,
 * pre-tokenisation cuts, BPE merge order on a small hand-made vocabulary,
 * round trips of arbitrary bytes, decode errors, malformed vocabulary files
 * (errors name file and line), and /tokenizer in an HDF5 file (round trip,
 * damaged groups). The comparison with GPT-2's real vocabulary against the
 * npm reference is tests/reference/test_tokenizer_ref.py. */
#include "rlaif/core/config.h"
#include "rlaif/core/error.h"
#include "rlaif/core/h5util.h"
#include "rlaif/core/rng.h"
#include "rlaif/tokenizer/tokenizer.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static void setup_tmp(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_tokenizer.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void write_file(const char *name, const char *text, char *path, size_t n) {
    snprintf(path, n, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void encode(rlaif_tokenizer *t, const char *s, size_t n, int flags, rlaif_tokens *out) {
    out->n = 0;
    ck_assert_int_eq(rlaif_tokenizer_encode(t, s, n, flags, out), 0);
}

static void assert_ids(const rlaif_tokens *got, const int32_t *want, size_t n) {
    ck_assert_uint_eq(got->n, n);
    for (size_t i = 0; i < n; i++) ck_assert_int_eq(got->ids[i], want[i]);
}

static void assert_roundtrip(rlaif_tokenizer *t, const char *s, size_t n, int flags) {
    rlaif_tokens ids = {0};
    rlaif_bytes out = {0};
    encode(t, s, n, flags, &ids);
    for (size_t i = 0; i < ids.n; i++)
        ck_assert(ids.ids[i] >= 0 && ids.ids[i] < rlaif_tokenizer_vocab_size(t));
    ck_assert_int_eq(rlaif_tokenizer_decode(t, ids.ids, ids.n, 0, &out), 0);
    ck_assert_uint_eq(out.n, n);
    ck_assert(n == 0 || memcmp(out.data, s, n) == 0);
    rlaif_tokens_free(&ids);
    rlaif_bytes_free(&out);
}

/* ---- GPT-2's byte-level alphabet, to write vocabulary files ---- */

static void byte_level(const unsigned char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int b = s[i], printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        int cp = b;
        if (!printable) {
            int m = 0;
            for (int c = 0; c < b; c++)
                m += !((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE);
            cp = 256 + m;
        }
        if (cp < 0x80)
            out[k++] = (char)cp;
        else
            out[k++] = (char)(0xC0 | (cp >> 6)), out[k++] = (char)(0x80 | (cp & 0x3F));
    }
    out[k] = '\0';
}

/* A small GPT-2-style vocabulary: the 256 bytes (id = byte), then merges. */
static const char *mini_merges[][2] = {
    {"h", "e"}, {" ", "t"},  {" t", "he"}, {"l", "l"},  {"he", "ll"},  {"hell", "o"},
    {"a", "a"}, {"aa", "a"}, {"\"", ","},  {",", "\""}, {"\"", ",\""},
};
#define N_MINI (sizeof mini_merges / sizeof mini_merges[0])

static void write_mini_vocab(char *enc_path, char *bpe_path, size_t n) {
    static char json[64 * 1024], bpe[8 * 1024], a[64], b[64], ab[128];
    size_t k = 0, kb = 0;
    k += (size_t)sprintf(json + k, "{");
    for (int c = 0; c < 256; c++) {
        unsigned char ch = (unsigned char)c;
        byte_level(&ch, 1, a);
        if (!strcmp(a, "\"") || !strcmp(a, "\\"))
            snprintf(b, sizeof b, "\\%.8s", a);
        else
            strcpy(b, a);
        k += (size_t)sprintf(json + k, "%s\"%s\": %d", c ? ", " : "", b, c);
    }
    kb += (size_t)sprintf(bpe + kb, "#version: 0.2\n");
    for (size_t m = 0; m < N_MINI; m++) {
        char cat[64];
        snprintf(cat, sizeof cat, "%s%s", mini_merges[m][0], mini_merges[m][1]);
        byte_level((const unsigned char *)mini_merges[m][0], strlen(mini_merges[m][0]), a);
        byte_level((const unsigned char *)mini_merges[m][1], strlen(mini_merges[m][1]), b);
        byte_level((const unsigned char *)cat, strlen(cat), ab);
        kb += (size_t)sprintf(bpe + kb, "%s %s\n", a, b);
        /* JSON-escape quotes in the key */
        char key[256];
        size_t q = 0;
        for (const char *p = ab; *p; p++) {
            if (*p == '"' || *p == '\\') key[q++] = '\\';
            key[q++] = *p;
        }
        key[q] = '\0';
        k += (size_t)sprintf(json + k, ", \"%s\": %d", key, 256 + (int)m);
    }
    k += (size_t)sprintf(json + k, ", \"<|endoftext|>\": %d}\n", 256 + (int)N_MINI);
    write_file("encoder.json", json, enc_path, n);
    write_file("vocab.bpe", bpe, bpe_path, n);
}

static rlaif_tokenizer *mini(void) {
    char enc[512], bpe[512];
    write_mini_vocab(enc, bpe, sizeof enc);
    rlaif_tokenizer *t = NULL;
    int rc = rlaif_tokenizer_load_gpt2(&t, enc, bpe);
    if (rc) fprintf(stderr, "%s\n", rlaif_error_message());
    ck_assert_int_eq(rc, 0);
    return t;
}

/* ---- tests ---- */

START_TEST(byte_tokenizer) {
    rlaif_tokenizer *t;
    ck_assert_int_eq(rlaif_tokenizer_byte(&t, NULL), 0);
    ck_assert_int_eq(rlaif_tokenizer_vocab_size(t), 257);
    ck_assert_int_eq(rlaif_tokenizer_eos(t), 256);
    ck_assert_int_eq(rlaif_tokenizer_type(t), RLAIF_TOK_BYTE);
    rlaif_tokens ids = {0};
    const char *s = "h\xC3\xA9<|endoftext|>\xFF";
    encode(t, s, strlen(s), 0, &ids);
    ck_assert_uint_eq(ids.n, strlen(s));
    ck_assert_int_eq(ids.ids[1], 0xC3);
    ck_assert_int_eq(ids.ids[ids.n - 1], 0xFF);
    encode(t, s, strlen(s), RLAIF_TOK_SPECIAL, &ids);
    int32_t want[] = {'h', 0xC3, 0xA9, 256, 0xFF};
    assert_ids(&ids, want, 5);
    assert_roundtrip(t, s, strlen(s), 0);
    assert_roundtrip(t, s, strlen(s), RLAIF_TOK_SPECIAL);
    rlaif_bytes out = {0};
    ck_assert_int_eq(rlaif_tokenizer_decode(t, ids.ids, ids.n, RLAIF_TOK_SKIP_SPECIAL, &out), 0);
    ck_assert_str_eq(out.data, "h\xC3\xA9\xFF");
    rlaif_bytes_free(&out);
    rlaif_tokens_free(&ids);
    rlaif_tokenizer_free(t);
}
END_TEST

START_TEST(specials_longest_first) {
    rlaif_tokenizer *t;
    ck_assert_int_eq(rlaif_tokenizer_byte(&t, "<a>,<a>b,<|endoftext|>"), 0);
    ck_assert_int_eq(rlaif_tokenizer_vocab_size(t), 259);
    ck_assert_int_eq(rlaif_tokenizer_eos(t), 258);
    ck_assert_int_eq(rlaif_tokenizer_special_id(t, "<a>b"), 257);
    ck_assert_int_eq(rlaif_tokenizer_special_id(t, "<b>"), -1);
    rlaif_tokens ids = {0};
    const char *s = "x<a>b<a><a";
    encode(t, s, strlen(s), RLAIF_TOK_SPECIAL, &ids);
    int32_t want[] = {'x', 257, 256, '<', 'a'};
    assert_ids(&ids, want, 5);
    rlaif_tokens_free(&ids);
    rlaif_tokenizer_free(t);
    ck_assert_int_ne(rlaif_tokenizer_byte(&t, "<a>,,<b>"), 0);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(rlaif_tokenizer_byte(&t, ""), 0);
    ck_assert_int_eq(rlaif_tokenizer_vocab_size(t), 256);
    ck_assert_int_eq(rlaif_tokenizer_eos(t), -1);
    rlaif_tokenizer_free(t);
}
END_TEST

START_TEST(decode_out_of_range) {
    rlaif_tokenizer *t;
    ck_assert_int_eq(rlaif_tokenizer_byte(&t, NULL), 0);
    int32_t ids[] = {'o', 'k', 257, 'x'};
    rlaif_bytes out = {0};
    ck_assert_int_eq(rlaif_tokenizer_decode(t, ids, 4, 0, &out), RLAIF_EX_FAIL);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "token id 257 at position 2"));
    ck_assert_str_eq(out.data, "ok");
    int32_t neg[] = {-1};
    out.n = 0;
    ck_assert_int_eq(rlaif_tokenizer_decode(t, neg, 1, 0, &out), RLAIF_EX_FAIL);
    rlaif_bytes_free(&out);
    rlaif_tokenizer_free(t);
}
END_TEST

/* Cut s into GPT-2 pieces joined by '|'. */
static void pieces(const char *s, char *out) {
    size_t n = strlen(s), k = 0;
    for (size_t i = 0; i < n;) {
        size_t e = rlaif_gpt2_piece_end((const unsigned char *)s, n, i);
        ck_assert(e > i && e <= n);
        if (i) out[k++] = '|';
        memcpy(out + k, s + i, e - i);
        k += e - i;
        i = e;
    }
    out[k] = '\0';
}

START_TEST(pretokenizer_cuts) {
    static const char *cases[][2] = {
        {"Hello world, RLAIF!", "Hello| world|,| RLAIF|!"},
        {"it's they're I'LL", "it|'s| they|'re| I|'|LL"},
        {"a  b", "a| | b"},
        {"a\n\nb", "a|\n|\n|b"},
        {"x   ", "x|   "},
        {" 123abc 4", " 123|abc| 4"},
        {"!!'s ?!", "!!'|s| ?!"},
        {"\t x", "\t| x"},
        {"caf\xC3\xA9 na\xC3\xAFve", "caf\xC3\xA9| na\xC3\xAFve"},
        /* U+3000 IDEOGRAPHIC SPACE is \s; U+00A0 too; U+0085 (NEL) is not in JS's \s */
        {"a\xE3\x80\x80\xE3\x80\x80"
         "b",
         "a|\xE3\x80\x80|\xE3\x80\x80|b"},
        {"a \xE3\x80\x80 b", "a| \xE3\x80\x80| b"},
        {"a\xC2\x85"
         "b",
         "a|\xC2\x85|b"},
        /* Devanagari letter + combining mark (Mn is not \p{L}): the mark is "other" */
        {"\xE0\xA4\x95\xE0\xA4\xBF", "\xE0\xA4\x95|\xE0\xA4\xBF"},
        /* invalid bytes are "other" and stick to punctuation */
        {"ab\xFF\xFE!c", "ab|\xFF\xFE!|c"},
        {"\xE2\x82", "\xE2\x82"},
        /* CJK ideographs are letters; fullwidth digits are numbers */
        {"\xE4\xB8\xAD\xE6\x96\x87\xEF\xBC\x91", "\xE4\xB8\xAD\xE6\x96\x87|\xEF\xBC\x91"},
    };
    char got[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pieces(cases[i][0], got);
        ck_assert_msg(!strcmp(got, cases[i][1]), "case %zu: got '%s' want '%s'", i, got,
                      cases[i][1]);
    }
    ck_assert_int_eq(rlaif_uc_class(0x3000), RLAIF_UC_SPACE);
    ck_assert_int_eq(rlaif_uc_class(0xFEFF), RLAIF_UC_SPACE);
    ck_assert_int_eq(rlaif_uc_class(0x0085), RLAIF_UC_OTHER);
    ck_assert_int_eq(rlaif_uc_class(0x00B2), RLAIF_UC_NUMBER);  /* superscript two: No */
    ck_assert_int_eq(rlaif_uc_class(0x1F600), RLAIF_UC_OTHER);  /* emoji */
    ck_assert_int_eq(rlaif_uc_class(0x20000), RLAIF_UC_LETTER); /* CJK extension B */
    ck_assert_int_eq(rlaif_uc_class(0x110000), RLAIF_UC_OTHER);
}
END_TEST

START_TEST(utf8_helpers) {
    uint32_t cp;
    ck_assert_int_eq(rlaif_utf8_decode((const unsigned char *)"\xF0\x9F\x98\x80", 4, &cp), 4);
    ck_assert_uint_eq(cp, 0x1F600);
    ck_assert_int_eq(rlaif_utf8_decode((const unsigned char *)"\xC0\x80", 2, &cp),
                     1); /* overlong */
    ck_assert_uint_eq(cp, UINT32_MAX);
    ck_assert_int_eq(rlaif_utf8_decode((const unsigned char *)"\xED\xA0\x80", 3, &cp),
                     1); /* surrogate */
    ck_assert_int_eq(rlaif_utf8_decode((const unsigned char *)"\xF4\x90\x80\x80", 4, &cp), 1);
    ck_assert_int_eq(rlaif_utf8_decode((const unsigned char *)"\xE2\x82", 2, &cp), 1);
    ck_assert_uint_eq(rlaif_utf8_complete("ab\xE2\x82", 4), 2);
    ck_assert_uint_eq(rlaif_utf8_complete("ab\xE2\x82\xAC", 5), 5);
    ck_assert_uint_eq(rlaif_utf8_complete("ab\xF0\x9F\x98", 5), 2);
    ck_assert_uint_eq(rlaif_utf8_complete("ab\xC3", 3), 2);
    ck_assert_uint_eq(rlaif_utf8_complete("ab\xFF", 3), 3);     /* invalid: nothing to wait for */
    ck_assert_uint_eq(rlaif_utf8_complete("ab\xED\xA0", 4), 4); /* would be a surrogate */
    ck_assert_uint_eq(rlaif_utf8_complete("", 0), 0);
}
END_TEST

START_TEST(bpe_merge_order) {
    setup_tmp();
    rlaif_tokenizer *t = mini();
    ck_assert_int_eq(rlaif_tokenizer_vocab_size(t), 256 + (int)N_MINI + 1);
    ck_assert_int_eq(rlaif_tokenizer_n_merges(t), (int)N_MINI);
    ck_assert_int_eq(rlaif_tokenizer_eos(t), 256 + (int)N_MINI);
    rlaif_tokens ids = {0};
    encode(t, "hello the", 9, 0, &ids);
    int32_t w1[] = {256 + 5, 256 + 2};
    assert_ids(&ids, w1, 2);
    /* "aaaa": (a a) rank 6 before (aa a) rank 7, leftmost first -> aa aa */
    encode(t, "aaaa", 4, 0, &ids);
    int32_t w2[] = {256 + 6, 256 + 6};
    assert_ids(&ids, w2, 2);
    encode(t, "aaa", 3, 0, &ids);
    int32_t w3[] = {256 + 7};
    assert_ids(&ids, w3, 1);
    /* the same text again comes from the cache */
    encode(t, "aaaa", 4, 0, &ids);
    assert_ids(&ids, w2, 2);
    /* a long run takes the heap path: 301 a's = 150 x "aa" + "a", then (aa a) -> 149 aa + aaa */
    char run[302];
    memset(run, 'a', 301);
    encode(t, run, 301, 0, &ids);
    ck_assert_uint_eq(ids.n, 150);
    for (size_t i = 0; i < 149; i++) ck_assert_int_eq(ids.ids[i], 256 + 6);
    ck_assert_int_eq(ids.ids[149], 256 + 7);
    assert_roundtrip(t, run, 301, 0);
    /* gpt-3-encoder's key collision: pieces '",' and '"' look up "\",,\"" which is the key
     * of merge ('"', ',"') (rank 10): JS merges them, a correct BPE does not. */
    encode(t, "\",\"", 3, 0, &ids);
    int32_t w4[] = {256 + 8, '"'}; /* ('"', ',') rank 8 first, then nothing */
    assert_ids(&ids, w4, 2);
    encode(t, "\",\"", 3, RLAIF_TOK_GPT3_ENCODER, &ids);
    int32_t w5[] = {256 + 10};
    assert_ids(&ids, w5, 1);
    /* specials only when asked */
    encode(t, "he<|endoftext|>", 15, 0, &ids);
    ck_assert_uint_gt(ids.n, 2);
    encode(t, "he<|endoftext|>", 15, RLAIF_TOK_SPECIAL, &ids);
    int32_t w6[] = {256, 256 + (int)N_MINI};
    assert_ids(&ids, w6, 2);
    rlaif_tokens_free(&ids);
    rlaif_tokenizer_free(t);
}
END_TEST

START_TEST(roundtrip_random_bytes) {
    setup_tmp();
    rlaif_tokenizer *t = mini(), *b;
    ck_assert_int_eq(rlaif_tokenizer_byte(&b, NULL), 0);
    static const char alphabet[] =
        "hello the aa,\"'s \n\t\xC3\xA9\xE3\x80\x80\xF0\x9F\x98\x80\xFF\x80";
    char buf[512];
    rlaif_rng rng;
    rlaif_rng_init(&rng, 7, 1, 0, 0);
    for (uint64_t k = 0; k < 2000; k++) {
        size_t n = rlaif_rng_u64(&rng) % sizeof buf;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = rlaif_rng_u64(&rng);
            buf[i] = (r & 1) ? (char)(r >> 8) : alphabet[(r >> 8) % (sizeof alphabet - 1)];
        }
        assert_roundtrip(t, buf, n, 0);
        assert_roundtrip(t, buf, n, RLAIF_TOK_GPT3_ENCODER);
        assert_roundtrip(t, buf, n, RLAIF_TOK_SPECIAL);
        assert_roundtrip(b, buf, n, RLAIF_TOK_SPECIAL);
    }
    assert_roundtrip(t, "", 0, 0);
    rlaif_tokenizer_free(t);
    rlaif_tokenizer_free(b);
}
END_TEST

/* Load must fail with code and a message holding every needle. */
static void expect_load_error(const char *enc_text, const char *bpe_text, int code,
                              const char *needle1, const char *needle2) {
    char enc[512], bpe[512];
    if (enc_text)
        write_file("bad_encoder.json", enc_text, enc, sizeof enc);
    else
        snprintf(enc, sizeof enc, "%s/missing.json", tmpdir);
    write_file("bad_vocab.bpe", bpe_text, bpe, sizeof bpe);
    rlaif_tokenizer *t = (rlaif_tokenizer *)1;
    ck_assert_int_eq(rlaif_tokenizer_load_gpt2(&t, enc, bpe), code);
    ck_assert_ptr_null(t);
    const char *msg = rlaif_error_message();
    ck_assert_msg(strstr(msg, needle1) != NULL, "'%s' lacks '%s'", msg, needle1);
    if (needle2) ck_assert_msg(strstr(msg, needle2) != NULL, "'%s' lacks '%s'", msg, needle2);
}

START_TEST(malformed_files) {
    setup_tmp();
    char enc[512], bpe[512];
    write_mini_vocab(enc, bpe, sizeof enc);
    /* a valid encoder.json for the bad merges files */
    FILE *f = fopen(enc, "rb");
    static char good[64 * 1024];
    size_t n = fread(good, 1, sizeof good - 1, f);
    good[n] = '\0';
    fclose(f);
    expect_load_error(NULL, "#version: 0.2\n", RLAIF_EX_NOINPUT, "missing.json", NULL);
    expect_load_error("{\"a\": 0,\n \"b\": }\n", "", RLAIF_EX_NOINPUT, "bad_encoder.json:2:", NULL);
    expect_load_error("{\"a\": 0, \"b\": 5}", "", RLAIF_EX_NOINPUT, "bad_encoder.json", "\"b\"");
    expect_load_error("{\"a\": 0, \"b\": 0}", "", RLAIF_EX_NOINPUT, "used twice", NULL);
    expect_load_error("[1, 2]", "", RLAIF_EX_NOINPUT, "not a JSON object", NULL);
    expect_load_error(good, "#version: 0.2\nh e\nl l x\n", RLAIF_EX_NOINPUT,
                      "bad_vocab.bpe:3:", "two tokens");
    expect_load_error(good, "#version: 0.2\nh e\n\nq z\n", RLAIF_EX_NOINPUT,
                      "bad_vocab.bpe:4:", "\"qz\"");
    expect_load_error(good, "#version: 0.2\nh e\nhe xyz\n", RLAIF_EX_NOINPUT,
                      "bad_vocab.bpe:3:", "\"xyz\"");
    /* a vocabulary lacking a byte cannot encode every input */
    expect_load_error("{\"a\": 0}", "#version: 0.2\n", RLAIF_EX_FAIL, "no token for the byte",
                      NULL);
    char missing_bpe[512];
    snprintf(missing_bpe, sizeof missing_bpe, "%s/nope.bpe", tmpdir);
    rlaif_tokenizer *t;
    ck_assert_int_eq(rlaif_tokenizer_load_gpt2(&t, enc, missing_bpe), RLAIF_EX_NOINPUT);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "nope.bpe"));
    /* Hugging Face: unsupported pre-tokeniser is named */
    char hf[512];
    write_file("tokenizer.json",
               "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}, \"pre_tokenizer\": null}", hf,
               sizeof hf);
    ck_assert_int_eq(rlaif_tokenizer_load_hf(&t, hf), RLAIF_EX_NOINPUT);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "tokenizer.json: model.type: WordPiece"));
}
END_TEST

static hid_t new_file(const char *name, char *path, size_t n) {
    snprintf(path, n, "%s/%s", tmpdir, name);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    return f;
}

START_TEST(hdf5_roundtrip) {
    setup_tmp();
    rlaif_tokenizer *t = mini(), *b, *t2 = NULL, *b2 = NULL;
    ck_assert_int_eq(rlaif_tokenizer_byte(&b, "<|endoftext|>,<|pad|>"), 0);
    char path[512];
    hid_t f = new_file("tok.h5", path, sizeof path);
    hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g2 = H5Gcreate2(f, "byte", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_eq(rlaif_tokenizer_ckpt_write(g, t), 0);
    ck_assert_int_eq(rlaif_tokenizer_save(b, g2), 0);
    ck_assert_int_ne(rlaif_tokenizer_save(b, g2), 0); /* the group is taken */
    H5Gclose(g);
    H5Gclose(g2);
    H5Fclose(f);
    ck_assert_int_eq(rlaif_tokenizer_load_file(&t2, path), 0);
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    g2 = H5Gopen2(f, "byte", H5P_DEFAULT);
    ck_assert_int_eq(rlaif_tokenizer_ckpt_read(g2, &b2), 0);
    H5Gclose(g2);
    H5Fclose(f);
    ck_assert_int_eq(rlaif_tokenizer_vocab_size(t2), rlaif_tokenizer_vocab_size(t));
    ck_assert_int_eq(rlaif_tokenizer_n_merges(t2), rlaif_tokenizer_n_merges(t));
    ck_assert_int_eq(rlaif_tokenizer_eos(t2), rlaif_tokenizer_eos(t));
    ck_assert_int_eq(rlaif_tokenizer_type(b2), RLAIF_TOK_BYTE);
    ck_assert_int_eq(rlaif_tokenizer_vocab_size(b2), 258);
    ck_assert_int_eq(rlaif_tokenizer_special_id(b2, "<|pad|>"), 257);
    const char *s = "hello the aaaa \",\" <|endoftext|> caf\xC3\xA9 \xFF";
    for (int fl = 0; fl < 4; fl++) {
        rlaif_tokens x = {0}, y = {0};
        encode(t, s, strlen(s), fl, &x);
        encode(t2, s, strlen(s), fl, &y);
        ck_assert_uint_eq(x.n, y.n);
        ck_assert(!memcmp(x.ids, y.ids, x.n * sizeof *x.ids));
        rlaif_tokens_free(&x);
        rlaif_tokens_free(&y);
    }
    rlaif_tokenizer_free(t);
    rlaif_tokenizer_free(t2);
    rlaif_tokenizer_free(b);
    rlaif_tokenizer_free(b2);
}
END_TEST

/* A damaged group is an error naming what is wrong, never a crash. */
START_TEST(hdf5_damaged) {
    setup_tmp();
    rlaif_tokenizer *t = mini(), *t2 = NULL;
    char path[512];
    for (int damage = 0; damage < 4; damage++) {
        hid_t f = new_file("bad.h5", path, sizeof path);
        hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ck_assert_int_eq(rlaif_tokenizer_save(t, g), 0);
        if (damage == 0) { /* offsets out of order */
            hid_t ds = H5Dopen2(g, "token_offset", H5P_DEFAULT);
            int64_t off[3] = {0, 5, 2};
            hsize_t start = 0, count = 3;
            hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(1, &count, NULL);
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
            H5Dwrite(ds, H5T_NATIVE_INT64, ms, fs, H5P_DEFAULT, off);
            H5Sclose(fs), H5Sclose(ms), H5Dclose(ds);
        } else if (damage == 1) { /* a merge naming an id outside the vocabulary */
            hid_t ds = H5Dopen2(g, "merges", H5P_DEFAULT);
            int32_t m[2] = {99999, 1};
            hsize_t start[2] = {0, 0}, count[2] = {1, 2};
            hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(2, count, NULL);
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
            H5Dwrite(ds, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, m);
            H5Sclose(fs), H5Sclose(ms), H5Dclose(ds);
        } else if (damage == 2) {
            H5Ldelete(g, "token_bytes", H5P_DEFAULT);
        } else {
            H5Adelete(g, "n_vocab");
        }
        H5Gclose(g);
        H5Fclose(f);
        ck_assert_int_ne(rlaif_tokenizer_load_file(&t2, path), 0);
        ck_assert_ptr_null(t2);
        ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "bad.h5"));
    }
    /* no group at all */
    hid_t f = new_file("empty.h5", path, sizeof path);
    H5Fclose(f);
    ck_assert_int_eq(rlaif_tokenizer_load_file(&t2, path), RLAIF_EX_NOINPUT);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "no /tokenizer group"));
    rlaif_tokenizer_free(t);
}
END_TEST

/* [tokenizer] of a job: listed specials are marked or appended; the default only marks. */
START_TEST(from_config) {
    setup_tmp();
    char enc[512], bpe[512], s1[600], s2[600], s3[100];
    write_mini_vocab(enc, bpe, sizeof enc);
    snprintf(s1, sizeof s1, "tokenizer.vocab=%s", enc);
    snprintf(s2, sizeof s2, "tokenizer.merges=%s", bpe);
    snprintf(s3, sizeof s3, "tokenizer.specials=<|endoftext|>,<|pad|>");
    char *sets[] = {"tokenizer.type=bpe", s1, s2, s3};
    for (int with_specials = 0; with_specials < 2; with_specials++) {
        rlaif_config *cfg;
        ck_assert_int_eq(rlaif_config_load(&cfg, NULL, 3 + with_specials, sets, NULL), 0);
        rlaif_tokenizer *t;
        ck_assert_int_eq(rlaif_tokenizer_from_config(&t, cfg), 0);
        int32_t n = 256 + (int)N_MINI + 1;
        ck_assert_int_eq(rlaif_tokenizer_vocab_size(t), n + with_specials);
        ck_assert_int_eq(rlaif_tokenizer_eos(t), n - 1);
        ck_assert_int_eq(rlaif_tokenizer_special_id(t, "<|pad|>"), with_specials ? n : -1);
        rlaif_tokens ids = {0};
        encode(t, "he<|pad|>", 9, RLAIF_TOK_SPECIAL, &ids);
        ck_assert_uint_eq(ids.n, with_specials ? 2 : 8); /* he < | p a d | > */
        rlaif_tokens_free(&ids);
        rlaif_tokenizer_free(t);
        rlaif_config_free(cfg);
    }
    /* bpe without vocab is a usage error */
    rlaif_config *cfg;
    ck_assert_int_eq(rlaif_config_load(&cfg, NULL, 1, sets, NULL), 0);
    rlaif_tokenizer *t;
    ck_assert_int_eq(rlaif_tokenizer_from_config(&t, cfg), RLAIF_EX_USAGE);
    ck_assert_ptr_null(t);
    rlaif_config_free(cfg);
}
END_TEST

/* ---- Hugging Face tokenizer.json beyond GPT-2 ---- */

/* Cut s with Llama 3's regex (max_digits 3) or Qwen2's (1), pieces joined by '|'. */
static void llama3_pieces(const char *s, int max_digits, char *out) {
    size_t n = strlen(s), k = 0;
    for (size_t i = 0; i < n;) {
        size_t e = rlaif_llama3_piece_end((const unsigned char *)s, n, i, max_digits);
        ck_assert(e > i && e <= n);
        if (i) out[k++] = '|';
        memcpy(out + k, s + i, e - i);
        k += e - i;
        i = e;
    }
    out[k] = '\0';
}

/* Expected cuts are node's for the same regex (as transformers.js rewrites it). */
START_TEST(llama3_cuts) {
    static const char *cases[][2] = {
        {"I'LL it's", "I|'LL| it|'s"},
        {"abc 12345", "abc| |123|45"},
        {"hello!!\n\nworld", "hello|!!\n\n|world"},
        {"a \n  b", "a| \n| | b"},
        {"\tword", "\tword"},
        {"x  \n\n \ty", "x|  \n\n| |\ty"},
        {"'hello ?!x", "'hello| ?!|x"},
        {"caf\xC3\xA9 \xC2\xB2\xC2\xB3\xC2\xB9", "caf\xC3\xA9| |\xC2\xB2\xC2\xB3\xC2\xB9"},
        {"a   ", "a|   "},
    };
    char got[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        llama3_pieces(cases[i][0], 3, got);
        ck_assert_msg(!strcmp(got, cases[i][1]), "case %zu: got '%s' want '%s'", i, got,
                      cases[i][1]);
    }
    llama3_pieces("x 2024", 1, got);
    ck_assert_str_eq(got, "x| |2|0|2|4");
}
END_TEST

/* A SentencePiece-style tokenizer.json (Llama 2 / Mistral layout): <unk> <s> </s>,
 * the 256 byte-fallback tokens, then "▁" "a" "b" "▁a" "ab" "▁ab". */
#define SP_NORMALIZER                                                                              \
    "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "             \
    "\"\\u2581\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": "        \
    "\"\\u2581\"}]}"
static void write_sp_json(const char *normalizer, const char *name, char *path, size_t n) {
    static char json[32 * 1024];
    size_t k = 0;
    k += (size_t)snprintf(json + k, sizeof json - k,
                          "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": "
                          "true}, {\"id\": 1, \"content\": \"<s>\", \"special\": true}, {\"id\": "
                          "2, \"content\": \"</s>\", \"special\": true}],\n \"normalizer\": %s,\n"
                          " \"pre_tokenizer\": null,\n \"post_processor\": {\"type\": "
                          "\"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": "
                          "\"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": "
                          "0}}], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1]}}},\n"
                          " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": "
                          "\"Replace\", \"pattern\": {\"String\": \"\\u2581\"}, \"content\": \" "
                          "\"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, {\"type\": "
                          "\"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},\n"
                          " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": "
                          "\"<unk>\", \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2",
                          normalizer);
    for (int b = 0; b < 256; b++)
        k += (size_t)snprintf(json + k, sizeof json - k, ", \"<0x%02X>\": %d", b, 3 + b);
    snprintf(json + k, sizeof json - k,
             ", \"\\u2581\": 259, \"a\": 260, \"b\": 261, \"\\u2581a\": 262, \"ab\": 263, "
             "\"\\u2581ab\": 264},\n \"merges\": [\"\\u2581 a\", \"a b\", \"\\u2581a b\"]}}\n");
    write_file(name, json, path, n);
}

START_TEST(sentencepiece) {
    setup_tmp();
    char path[512];
    write_sp_json(SP_NORMALIZER, "tokenizer.json", path, sizeof path);
    rlaif_tokenizer *t, *t2;
    ck_assert_int_eq(rlaif_tokenizer_load_hf(&t, path), 0);
    ck_assert_int_eq(rlaif_tokenizer_bos(t), 1);
    ck_assert(rlaif_tokenizer_adds_bos(t));
    rlaif_tokens ids = {0};
    /* "ab c" -> "▁ab▁c": "▁ab", "▁", then 'c' falls back to <0x63> */
    encode(t, "ab c", 4, 0, &ids);
    int32_t want[] = {264, 259, 3 + 'c'};
    assert_ids(&ids, want, 3);
    encode(t, "ab c", 4, RLAIF_TOK_BOS, &ids);
    int32_t want_bos[] = {1, 264, 259, 3 + 'c'};
    assert_ids(&ids, want_bos, 4);
    /* U+2581 in the text is a space; a multi-byte unknown character falls back byte by byte */
    encode(t,
           "a\xE2\x96\x81"
           "b\xC3\xA9",
           7, 0, &ids);
    int32_t want2[] = {262, 259, 261, 3 + 0xC3, 3 + 0xA9};
    assert_ids(&ids, want2, 5);
    /* specials (when asked): the normalizer's "▁" goes before each stretch of text */
    encode(t, "<s>a</s>", 8, RLAIF_TOK_SPECIAL, &ids);
    int32_t want3[] = {1, 262, 2};
    assert_ids(&ids, want3, 3);
    /* decoding strips the prepended space, except for a continuation */
    rlaif_bytes out = {0};
    ck_assert_int_eq(rlaif_tokenizer_decode(t, want, 3, 0, &out), 0);
    ck_assert_str_eq(out.data, "ab c");
    out.n = 0;
    ck_assert_int_eq(rlaif_tokenizer_decode(t, want, 3, RLAIF_TOK_CONTINUE, &out), 0);
    ck_assert_str_eq(out.data, " ab c");
    rlaif_bytes_free(&out);
    assert_roundtrip(t, "ab  ba\nc\xFF", 9, 0); /* stray bytes fall back too */

    /* the /tokenizer group keeps all of it (format 2) */
    char h5[512];
    hid_t f = new_file("sp.h5", h5, sizeof h5);
    hid_t g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_eq(rlaif_tokenizer_save(t, g), 0);
    int64_t format;
    ck_assert_int_eq(rlaif_h5_get_attr_i64(g, "format", &format), 0);
    ck_assert_int_eq(format, 2);
    H5Gclose(g);
    H5Fclose(f);
    ck_assert_int_eq(rlaif_tokenizer_load_file(&t2, h5), 0);
    rlaif_tokens ids2 = {0};
    const char *s = "<s>ab ab\xE2\x96\x81 c\xC3\xA9</s>";
    for (int fl = 0; fl < 16; fl += 1) {
        encode(t, s, strlen(s), fl & ~RLAIF_TOK_GPT3_ENCODER, &ids);
        encode(t2, s, strlen(s), fl & ~RLAIF_TOK_GPT3_ENCODER, &ids2);
        ck_assert_uint_eq(ids.n, ids2.n);
        ck_assert(!memcmp(ids.ids, ids2.ids, ids.n * sizeof *ids.ids));
    }
    ck_assert_int_eq(rlaif_tokenizer_bos(t2), 1);
    rlaif_tokenizer_free(t2);

    /* a damaged option is an error */
    for (int damage = 0; damage < 3; damage++) {
        f = new_file("sp_bad.h5", h5, sizeof h5);
        g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ck_assert_int_eq(rlaif_tokenizer_save(t, g), 0);
        if (damage == 0) {
            H5Adelete(g, "sentencepiece");
            rlaif_h5_attr_i64(g, "sentencepiece", 7);
        } else if (damage == 1) {
            H5Adelete(g, "pretokenizer");
            rlaif_h5_attr_str(g, "pretokenizer", "gpt5");
        } else {
            H5Adelete(g, "bos_id");
            rlaif_h5_attr_i64(g, "bos_id", 99999);
        }
        H5Gclose(g);
        H5Fclose(f);
        ck_assert_int_ne(rlaif_tokenizer_load_file(&t2, h5), 0);
        ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "sp_bad.h5"));
    }
    rlaif_tokens_free(&ids);
    rlaif_tokens_free(&ids2);
    rlaif_tokenizer_free(t);
}
END_TEST

/* A byte-level tokenizer.json with Llama 3's Split, NFC and a tokenizer_config.json. */
START_TEST(hf_byte_level_options) {
    setup_tmp();
    char enc[512], bpe[512];
    write_mini_vocab(enc, bpe, sizeof enc);
    FILE *f = fopen(enc, "rb");
    static char vocab[64 * 1024], json[80 * 1024];
    size_t n = fread(vocab, 1, sizeof vocab - 1, f);
    vocab[n] = '\0';
    fclose(f);
    snprintf(
        json, sizeof json,
        "{\"normalizer\": {\"type\": \"NFC\"}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
        "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
        "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "
        "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "
        "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
        "\"use_regex\": false}]}, \"added_tokens\": [{\"id\": %d, \"content\": \"<|bos|>\", "
        "\"special\": true}], \"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": []}}",
        (int)N_MINI + 257, vocab);
    char path[512], cfg[512];
    rlaif_tokenizer *t;
    write_file("tokenizer.json", json, path, sizeof path);
    write_file("tokenizer_config.json",
               "{\"bos_token\": {\"content\": \"<|bos|>\"}, "
               "\"add_bos_token\": true, \"eos_token\": \"h\", \"model_max_length\": "
               "1000000000000000019884624838656}",
               cfg, sizeof cfg);
    int rc = rlaif_tokenizer_load_hf(&t, path);
    ck_assert_msg(rc == 0, "%s", rlaif_error_message());
    int32_t bos = rlaif_tokenizer_bos(t);
    ck_assert_int_eq(bos, (int)N_MINI + 257);
    ck_assert(rlaif_tokenizer_adds_bos(t));
    ck_assert_int_eq(rlaif_tokenizer_eos(t), 'h'); /* eos_token names an ordinary token */
    /* NFC: e + combining acute encodes (and so decodes) as U+00E9 */
    rlaif_tokens ids = {0};
    rlaif_bytes out = {0};
    encode(t, "e\xCC\x81", 3, RLAIF_TOK_BOS, &ids);
    ck_assert_int_eq(ids.ids[0], bos);
    ck_assert_int_eq(rlaif_tokenizer_decode(t, ids.ids + 1, ids.n - 1, 0, &out), 0);
    ck_assert_str_eq(out.data, "\xC3\xA9");
    rlaif_bytes_free(&out);
    rlaif_tokens_free(&ids);
    rlaif_tokenizer_free(t);
}
END_TEST

/* Unsupported parts are refused naming the file and the JSON key. */
static void expect_hf_error(const char *json, const char *key) {
    char path[512];
    rlaif_tokenizer *t = NULL;
    write_file("tokenizer.json", json, path, sizeof path);
    ck_assert_int_eq(rlaif_tokenizer_load_hf(&t, path), RLAIF_EX_NOINPUT);
    ck_assert_ptr_null(t);
    char want[600];
    snprintf(want, sizeof want, "%s: %s", path, key);
    ck_assert_msg(strstr(rlaif_error_message(), want), "message '%s' lacks '%s'",
                  rlaif_error_message(), want);
}

START_TEST(hf_refusals) {
    setup_tmp();
    expect_hf_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "model.type: Unigram");
    expect_hf_error("{\"model\": {\"type\": \"BPE\"}, \"normalizer\": {\"type\": \"Sequence\", "
                    "\"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"Lowercase\"}]}}",
                    "normalizer.normalizers[1]: unsupported normalizer Lowercase");
    expect_hf_error(
        "{\"model\": {\"type\": \"BPE\"}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
        "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+\"}, "
        "\"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\", \"use_regex\": false}]}}",
        "pre_tokenizer.pretokenizers[0].pattern.Regex: unknown regex");
    expect_hf_error("{\"model\": {\"type\": \"BPE\"}, \"pre_tokenizer\": {\"type\": "
                    "\"Whitespace\"}}",
                    "pre_tokenizer: unsupported pre-tokenizer Whitespace");
    expect_hf_error(
        "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": false}, \"normalizer\": " SP_NORMALIZER
        "}",
        "model.byte_fallback");
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, byte_tokenizer);
    tcase_add_test(tc, specials_longest_first);
    tcase_add_test(tc, decode_out_of_range);
    tcase_add_test(tc, pretokenizer_cuts);
    tcase_add_test(tc, utf8_helpers);
    tcase_add_test(tc, bpe_merge_order);
    tcase_add_test(tc, roundtrip_random_bytes);
    tcase_add_test(tc, malformed_files);
    tcase_add_test(tc, hdf5_roundtrip);
    tcase_add_test(tc, hdf5_damaged);
    tcase_add_test(tc, from_config);
    tcase_add_test(tc, llama3_cuts);
    tcase_add_test(tc, sentencepiece);
    tcase_add_test(tc, hf_byte_level_options);
    tcase_add_test(tc, hf_refusals);
    suite_add_tcase(s, tc);
    return s;
}

#include "check_main.h"
