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

struct rlaif_tokenizer {
    rlaif_tok_type type;
    int32_t n_vocab;
    char *bytes;      /* every token's raw bytes, in id order */
    int64_t *off;     /* [n_vocab + 1] */
    uint8_t *special; /* [n_vocab] */
    int32_t n_special;
    int32_t *special_ids; /* ids of specials, longest text first */
    int32_t eos;
    int32_t byte_id[256]; /* id of the single-byte token of each byte */
    int32_t n_merges;
    int32_t *merges;       /* [n_merges][2] */
    tok_pair_map pairs;    /* merges by pair */
    tok_pair_map js_pairs; /* gpt-3-encoder's extra and changed ranks (see tokenizer.c) */
    int32_t *vocab_slot;   /* bytes -> id, open addressing, -1 empty */
    uint64_t vocab_mask;
    int add_prefix_space, ignore_merges;
    /* encoder state (why encode takes a non-const tokenizer) */
    tok_cache cache, js_cache;
    int32_t *w; /* BPE work arrays: 5 x w_cap int32 */
    size_t w_cap;
    int64_t *heap; /* 3 x w_cap */
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
    const char *src;
} tok_parts;
int tok_build(rlaif_tokenizer **out, const tok_parts *p);

uint64_t tok_hash_bytes(const void *p, size_t n);

/* Pieces up to this many bytes merge with the array scan, longer ones with the
 * heap (both give the same ids; the fuzz target sets it to 0 to compare them). */
extern size_t tok_small_max;
/* Forget every cached piece (tests). */
void tok_cache_clear(rlaif_tokenizer *t);

#endif
