/* tokenizer_impl.h - the tokenizer's internals, shared by src/tokenizer/tokenizer*.c only. */
#ifndef RLAIF_TOKENIZER_IMPL_H
#define RLAIF_TOKENIZER_IMPL_H

#include "rlaif/tokenizer/tokenizer.h"

#include <stdint.h>

#define TOK_NO_RANK INT32_MAX
/* Pieces up to this many bytes are cached (longer ones are rare and slow anyway). */
#define TOK_CACHE_KEY_MAX 64

/* (left id, right id) -> (rank, merged id): open addressing, rank < 0 = empty. */
typedef struct {
    uint64_t key;
    int32_t rank, result;
} tok_pair_slot;
typedef struct {
    tok_pair_slot *slot;
    uint64_t mask; /* capacity - 1 (capacity a power of two) */
    size_t n;
} tok_pair_map;

/* Recently encoded pieces: bytes -> ids. Cleared wholesale when full. */
typedef struct {
    uint64_t h;
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids; /* key_len 0 = empty slot */
} tok_cache_slot;
typedef struct {
    tok_cache_slot *slot;
    uint32_t mask, n, max_n;
    unsigned char *keys;
    int32_t *ids;
    uint32_t keys_used, keys_cap, ids_used, ids_cap;
} tok_cache;

/* How text is cut into pieces before merging (the pre_tokenizer of tokenizer.json). */
typedef enum {
    TOK_PRE_NONE = 0,   /* byte tokenizer; SentencePiece-style BPE (see tok_sp_cut) */
    TOK_PRE_GPT2 = 1,   /* GPT-2's regex (ByteLevel with use_regex) */
    TOK_PRE_LLAMA3 = 2, /* Llama 3's Split regex (numbers in runs of up to 3) */
    TOK_PRE_QWEN2 = 3,  /* Qwen2's: Llama 3's with single numbers */
    TOK_PRE_DIGITS = 4, /* SmolLM/StarCoder: every number alone, then GPT-2's regex */
} tok_pretok;
#define TOK_PRE_COUNT 5
extern const char *const tok_pretok_names[TOK_PRE_COUNT];

/* Prepend a space (SentencePiece's "▁") to: */
enum { TOK_PREPEND_NONE = 0, TOK_PREPEND_ALWAYS = 1, TOK_PREPEND_FIRST = 2 };

/* Token kinds in tok_parts.special and the HDF5 "special" dataset (format 2). */
enum { TOK_KIND_NORMAL = 0, TOK_KIND_SPECIAL = 1, TOK_KIND_BYTE_FALLBACK = 2 };

/* Scratch buffers of the normalizer: code points and output bytes. */
typedef struct {
    uint32_t *cp;
    size_t cp_cap;
    unsigned char *b, *b2; /* NFC's output; the text with its prefix and spaces */
    size_t b_cap, b2_cap;
} tok_scratch;

/* The options a tokenizer.json can set beyond GPT-2's (all 0 for GPT-2). */
typedef struct {
    int pretok;      /* tok_pretok (TOK_PRE_GPT2 for GPT-2 and every byte-level BPE default) */
    int nfc;         /* NFC-normalise each stretch of text between specials */
    int sp;          /* SentencePiece symbols: characters (not bytes) merge, unknown
                        characters fall back to byte tokens, "▁" is stored as ' ' and
                        U+2581 in the text reads as ' ' */
    int prepend;     /* TOK_PREPEND_*: add ' ' (= "▁") before the text */
    int strip_space; /* decoder Strip: drop one leading space of a decode */
    int32_t bos;     /* beginning-of-sequence token, -1 if none */
    int add_bos;     /* the model's configuration prepends bos (RLAIF_TOK_BOS) */
    int32_t eos;     /* end-of-sequence token from the configuration, -1: the default rule */
} tok_opts;
#define TOK_OPTS_DEFAULT                                                                           \
    { .bos = -1, .eos = -1 }

struct rlaif_tokenizer {
    rlaif_tok_type type;
    int32_t n_vocab;
    char *bytes;      /* every token's raw bytes, in id order */
    int64_t *off;     /* [n_vocab + 1] */
    uint8_t *special; /* [n_vocab] */
    int32_t n_special;
    int32_t *special_ids;       /* ids of specials, longest text first */
    uint8_t special_first[256]; /* 1 for the first byte of some special */
    int32_t eos;
    int32_t byte_id[256]; /* id of the single-byte token of each byte */
    int32_t n_merges;
    int32_t *merges;       /* [n_merges][2] */
    tok_pair_map pairs;    /* merges by pair */
    tok_pair_map js_pairs; /* gpt-3-encoder's extra and changed ranks (see tokenizer.c) */
    int32_t *vocab_slot;   /* bytes -> id, open addressing, -1 empty */
    uint64_t vocab_mask;
    int add_prefix_space, ignore_merges;
    tok_opts o;
    int32_t byte_fb[256]; /* byte-fallback token of each byte, -1 none (sp) */
    int sp_cut;           /* sp: no token has a space after a non-space byte, so text may
                             be cut before each word's spaces (see tok_sp_cut) */
    /* encoder state (why encode takes a non-const tokenizer) */
    tok_cache cache, js_cache;
    int32_t *w; /* BPE work arrays: 5 x w_cap int32 */
    size_t w_cap;
    int64_t *heap; /* 3 x w_cap */
    tok_scratch scratch;
};

/* Build a tokenizer from raw parts (copied). Validates everything: token
 * offsets, single-byte tokens (bpe needs all 256), merge parts and results.
 * src names the origin for error messages. */
typedef struct {
    rlaif_tok_type type;
    int32_t n_vocab;
    const char *bytes;
    const int64_t *off;
    const uint8_t *special; /* may be NULL: none */
    int32_t n_merges;
    const int32_t *merges; /* [n_merges][2]; merge results are looked up by bytes */
    int add_prefix_space, ignore_merges;
    tok_opts o; /* zero-initialised = GPT-2 (o.pretok 0 means: GPT-2 for bpe) */
    const char *src;
} tok_parts;
int tok_build(rlaif_tokenizer **out, const tok_parts *p);

/* NFC of s[0, n): SIZE_MAX when s is NFC already, else the length of the
 * normalised text in w->b. */
size_t tok_nfc(const unsigned char *s, size_t n, tok_scratch *w);

/* Every token's kind (TOK_KIND_*), as tok_parts.special takes it. */
void tok_kinds(const rlaif_tokenizer *t, uint8_t *kind);

uint64_t tok_hash_bytes(const void *p, size_t n);

/* NFC of s[0, n): SIZE_MAX when s is NFC already, else the length of the
 * normalised text in w->b. */
size_t tok_nfc(const unsigned char *s, size_t n, tok_scratch *w);

/* Pieces up to this many bytes merge with the array scan, longer ones with the
 * heap (both give the same ids; the fuzz target sets it to 0 to compare them). */
extern size_t tok_small_max;
/* Forget every cached piece (tests). */
void tok_cache_clear(rlaif_tokenizer *t);

#endif
