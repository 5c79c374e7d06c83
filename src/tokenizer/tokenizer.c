/* tokenizer.c - byte-level BPE encode/decode, GPT-2 pre-tokenisation, the
 * piece cache, and building a tokenizer from validated parts.
 *
 * Encoding is three steps: cut the text into pieces with GPT-2's regex
 * (rlaif_gpt2_piece_end, by hand over the generated Unicode tables), look each
 * piece up in a cache, and on a miss merge its bytes by rank. Most text is a
 * few thousand distinct words, so the cache answers nearly every piece and
 * speed comes from the pre-tokeniser's ASCII fast path. */
#include "tokenizer_impl.h"

#include "rlaif/core/error.h"

#include <stdlib.h>
#include <string.h>

const char *const tok_pretok_names[TOK_PRE_COUNT] = {"none", "gpt2", "llama3", "qwen2",
                                                     "digits+gpt2"};

extern const uint16_t rlaif_uc_stage1[0x1100];
extern const uint8_t rlaif_uc_stage2[][256];
extern const char rlaif_uc_version[];

/* ------------------------------------------------------------------ arrays */

void rlaif_tokens_free(rlaif_tokens *t) {
    free(t->ids);
    memset(t, 0, sizeof *t);
}
void rlaif_bytes_free(rlaif_bytes *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}
static void tokens_reserve(rlaif_tokens *t, size_t extra) {
    if (t->cap - t->n >= extra) return;
    size_t cap = t->cap ? t->cap : 64;
    while (cap - t->n < extra) cap *= 2;
    t->ids = xrealloc(t->ids, cap * sizeof *t->ids);
    t->cap = cap;
}
void rlaif_bytes_append(rlaif_bytes *b, const char *s, size_t n) {
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1) cap *= 2;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->n, s, n);
    b->n += n;
    b->data[b->n] = '\0';
}

/* ------------------------------------------------------------------ Unicode */

int rlaif_uc_class(uint32_t cp) {
    if (cp > 0x10FFFF) return RLAIF_UC_OTHER;
    return rlaif_uc_stage2[rlaif_uc_stage1[cp >> 8]][cp & 255];
}
const char *rlaif_uc_version_string(void) {
    return rlaif_uc_version;
}

int rlaif_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    *cp = UINT32_MAX;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, v = c & 0x07, min = 0x10000;
    else
        return 1;
    if ((size_t)len > n) return 1;
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 1;
        v = (v << 6) | (s[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 1;
    *cp = v;
    return len;
}

size_t rlaif_utf8_complete(const char *s, size_t n) {
    /* Look at the last (at most 3) bytes: is a lead byte waiting for more? */
    const unsigned char *u = (const unsigned char *)s;
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned c = u[n - back];
        if ((c & 0xC0) == 0x80) continue; /* continuation: keep looking for the lead */
        int need = c >= 0xF0 && c <= 0xF4   ? 4
                   : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xC2 && c <= 0xDF ? 2
                                            : 1;
        if (need > (int)back) {
            /* incomplete only if what we have so far is a valid beginning */
            uint32_t cp;
            unsigned char tmp[4] = {0x80, 0x80, 0x80, 0x80};
            memcpy(tmp, u + n - back, back);
            /* pad with the smallest continuation and check the bytes we have */
            if (rlaif_utf8_decode(tmp, (size_t)need, &cp) == need) return n - back;
            /* e.g. E0 80: padded E0 80 80 is overlong; try the largest pad too */
            memset(tmp + back, 0xBF, 4 - back);
            if (rlaif_utf8_decode(tmp, (size_t)need, &cp) == need) return n - back;
        }
        return n;
    }
    return n;
}

/* ASCII classes without the table walk: letters, digits, JS \s, other. */
static const uint8_t ascii_class[128] = {
    ['\t'] = 3, ['\n'] = 3, ['\v'] = 3, ['\f'] = 3, ['\r'] = 3, [' '] = 3, ['0'] = 2, ['1'] = 2,
    ['2'] = 2,  ['3'] = 2,  ['4'] = 2,  ['5'] = 2,  ['6'] = 2,  ['7'] = 2, ['8'] = 2, ['9'] = 2,
    ['A'] = 1,  ['B'] = 1,  ['C'] = 1,  ['D'] = 1,  ['E'] = 1,  ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1,  ['J'] = 1,  ['K'] = 1,  ['L'] = 1,  ['M'] = 1,  ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1,  ['R'] = 1,  ['S'] = 1,  ['T'] = 1,  ['U'] = 1,  ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1,  ['Z'] = 1,  ['a'] = 1,  ['b'] = 1,  ['c'] = 1,  ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1,  ['h'] = 1,  ['i'] = 1,  ['j'] = 1,  ['k'] = 1,  ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1,  ['p'] = 1,  ['q'] = 1,  ['r'] = 1,  ['s'] = 1,  ['t'] = 1, ['u'] = 1, ['v'] = 1,
    ['w'] = 1,  ['x'] = 1,  ['y'] = 1,  ['z'] = 1,
};

/* Class of the character at s[i] and its length in bytes. Invalid UTF-8 is
 * one "other" byte, so every input has a well-defined cut. */
static inline int class_at(const unsigned char *s, size_t n, size_t i, size_t *len) {
    unsigned c = s[i];
    if (c < 0x80) {
        *len = 1;
        return ascii_class[c];
    }
    uint32_t cp;
    *len = (size_t)rlaif_utf8_decode(s + i, n - i, &cp);
    return cp == UINT32_MAX ? RLAIF_UC_OTHER : rlaif_uc_class(cp);
}

/* End of the run of characters of class k that starts at j. */
static inline size_t run_end(const unsigned char *s, size_t n, size_t j, int k) {
    size_t len;
    while (j < n) {
        if (s[j] < 0x80) {
            if (ascii_class[s[j]] != k) break;
            j++;
            continue;
        }
        if (class_at(s, n, j, &len) != k) break;
        j += len;
    }
    return j;
}

/* The regex's alternatives in order:
 *   's|'t|'re|'ve|'m|'ll|'d   contractions (lower case only)
 *    ?\p{L}+  | ?\p{N}+ | ?[^\s\p{L}\p{N}]+   one optional ASCII space + a run
 *   \s+(?!\S)                 whitespace not followed by a non-space: all but
 *                             the last character of a run that precedes text
 *   \s+                       (a single whitespace character before text) */
size_t rlaif_gpt2_piece_end(const unsigned char *s, size_t n, size_t i) {
    unsigned c = s[i];
    if (c == '\'' && i + 1 < n) {
        unsigned d = s[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if (i + 2 < n) {
            unsigned e = s[i + 2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
                return i + 3;
        }
    }
    size_t len;
    int k = class_at(s, n, i, &len);
    if (c == ' ' && i + 1 < n) {
        size_t len2;
        int k2 = class_at(s, n, i + 1, &len2);
        if (k2 != RLAIF_UC_SPACE) return run_end(s, n, i + 1 + len2, k2);
    }
    if (k != RLAIF_UC_SPACE) return run_end(s, n, i + len, k);
    size_t last = i, j = i + len;
    while (j < n) {
        if (class_at(s, n, j, &len) != RLAIF_UC_SPACE) break;
        last = j;
        j += len;
    }
    if (j == n) return n;
    return last > i ? last : j;
}

/* Llama 3's regex (Qwen2's with max_digits 1), alternatives in order:
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)   contractions, ASCII letters of any case
 *   [^\r\n\p{L}\p{N}]?\p{L}+       letters, after at most one character that is not
 *                                  CR, LF, a letter or a number (a space, a quote, ...)
 *   \p{N}{1,3}                     numbers in runs of at most 3 (Qwen2: 1)
 *    ?[^\s\p{L}\p{N}]+[\r\n]*      punctuation (one optional space first), then line breaks
 *   \s*[\r\n]+                     whitespace up to and including its last line break
 *   \s+(?!\S) | \s+                as GPT-2's */
size_t rlaif_llama3_piece_end(const unsigned char *s, size_t n, size_t i, int max_digits) {
    unsigned c = s[i];
    if (c == '\'' && i + 1 < n) {
        unsigned d = s[i + 1] | 0x20; /* ASCII lower case; no other byte maps onto these */
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if (i + 2 < n) {
            unsigned e = s[i + 2] | 0x20;
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
                return i + 3;
        }
    }
    size_t len, len2;
    int k = class_at(s, n, i, &len);
    if (k == RLAIF_UC_LETTER) return run_end(s, n, i + len, RLAIF_UC_LETTER);
    if (k != RLAIF_UC_NUMBER && c != '\r' && c != '\n' && i + len < n &&
        class_at(s, n, i + len, &len2) == RLAIF_UC_LETTER)
        return run_end(s, n, i + len + len2, RLAIF_UC_LETTER);
    if (k == RLAIF_UC_NUMBER) {
        size_t j = i + len;
        for (int d = 1; d < max_digits && j < n && class_at(s, n, j, &len2) == RLAIF_UC_NUMBER; d++)
            j += len2;
        return j;
    }
    size_t p = i;
    if (c == ' ' && i + 1 < n && class_at(s, n, i + 1, &len2) == RLAIF_UC_OTHER)
        p = i + 1, k = RLAIF_UC_OTHER, len = len2;
    if (k == RLAIF_UC_OTHER) {
        size_t j = run_end(s, n, p + len, RLAIF_UC_OTHER);
        while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    size_t last_nl = SIZE_MAX, last = i, j = i;
    while (j < n && class_at(s, n, j, &len2) == RLAIF_UC_SPACE) {
        if (s[j] == '\r' || s[j] == '\n') last_nl = j;
        last = j;
        j += len2;
    }
    if (last_nl != SIZE_MAX) return last_nl + 1;
    if (j == n) return n;
    return last > i ? last : j;
}

/* SentencePiece-style text (spaces stand for "▁") when no token holds a space
 * after a non-space byte: a merge can then never join a word with the spaces
 * that follow it, so cutting before them gives the ids of the uncut text, and
 * the pieces (spaces, then a word) are short enough to cache. */
static size_t sp_piece_end(const unsigned char *s, size_t n, size_t i) {
    while (i < n && s[i] == ' ') i++;
    while (i < n && s[i] != ' ') i++;
    return i;
}

/* Start of the next number character at or after i (n if none). */
static size_t next_number(const unsigned char *s, size_t n, size_t i) {
    size_t len;
    while (i < n && class_at(s, n, i, &len) != RLAIF_UC_NUMBER) i += len;
    return i;
}

/* ------------------------------------------------------------------ hashing */

uint64_t tok_hash_bytes(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xD6E8FEB86659FD93ull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    if (n) memcpy(&v, p, n);
    h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 32);
}

static inline uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}
static inline uint64_t mix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    return k;
}

static void pairs_init(tok_pair_map *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 16) cap *= 2;
    m->slot = xmalloc(cap * sizeof *m->slot);
    for (size_t i = 0; i < cap; i++) m->slot[i].rank = -1;
    m->mask = cap - 1;
    m->n = 0;
}
static void pairs_put(tok_pair_map *m, int32_t a, int32_t b, int32_t rank, int32_t result);
/* Double the capacity (a map sized for a guess, like js_pairs, may outgrow it). */
static void pairs_grow(tok_pair_map *m) {
    tok_pair_map old = *m;
    pairs_init(m, old.mask + 1);
    for (uint64_t i = 0; i <= old.mask; i++)
        if (old.slot[i].rank >= 0)
            pairs_put(m, (int32_t)(old.slot[i].key >> 32), (int32_t)(uint32_t)old.slot[i].key,
                      old.slot[i].rank, old.slot[i].result);
    free(old.slot);
}
/* Insert or overwrite. */
static void pairs_put(tok_pair_map *m, int32_t a, int32_t b, int32_t rank, int32_t result) {
    if (2 * (m->n + 1) > m->mask + 1) pairs_grow(m);
    uint64_t key = pair_key(a, b);
    for (uint64_t i = mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        tok_pair_slot *s = &m->slot[i];
        if (s->rank < 0 || s->key == key) {
            if (s->rank < 0) m->n++;
            s->key = key, s->rank = rank, s->result = result;
            return;
        }
    }
}
/* Rank of the pair (TOK_NO_RANK when it is not a merge) and its result. */
static inline int32_t pairs_get(const tok_pair_map *m, int32_t a, int32_t b, int32_t *result) {
    uint64_t key = pair_key(a, b);
    for (uint64_t i = mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        const tok_pair_slot *s = &m->slot[i];
        if (s->rank < 0) {
            *result = -1;
            return TOK_NO_RANK;
        }
        if (s->key == key) {
            *result = s->result;
            return s->rank;
        }
    }
}

int32_t rlaif_tokenizer_lookup(const rlaif_tokenizer *t, const char *s, size_t len) {
    for (uint64_t i = tok_hash_bytes(s, len) & t->vocab_mask;; i = (i + 1) & t->vocab_mask) {
        int32_t id = t->vocab_slot[i];
        if (id < 0) return -1;
        if ((size_t)(t->off[id + 1] - t->off[id]) == len && !memcmp(t->bytes + t->off[id], s, len))
            return id;
    }
}

/* ------------------------------------------------------------------ cache */

static void cache_init(tok_cache *c) {
    c->mask = (1u << 16) - 1;
    c->max_n = 1u << 15;
    c->slot = xcalloc((size_t)c->mask + 1, sizeof *c->slot);
    c->keys_cap = 1u << 20;
    c->ids_cap = 1u << 18;
    c->keys = xmalloc(c->keys_cap);
    c->ids = xmalloc((size_t)c->ids_cap * sizeof *c->ids);
    c->n = c->keys_used = c->ids_used = 0;
}
static void cache_free(tok_cache *c) {
    free(c->slot);
    free(c->keys);
    free(c->ids);
}
static const tok_cache_slot *cache_get(const tok_cache *c, uint64_t h, const unsigned char *p,
                                       size_t n) {
    for (uint32_t i = (uint32_t)h & c->mask;; i = (i + 1) & c->mask) {
        const tok_cache_slot *s = &c->slot[i];
        if (!s->key_len) return NULL;
        if (s->h == h && s->key_len == n && !memcmp(c->keys + s->key_off, p, n)) return s;
    }
}
void tok_cache_clear(rlaif_tokenizer *t) {
    tok_cache *cs[2] = {&t->cache, &t->js_cache};
    for (int i = 0; i < 2; i++) {
        if (!cs[i]->slot) continue;
        memset(cs[i]->slot, 0, ((size_t)cs[i]->mask + 1) * sizeof *cs[i]->slot);
        cs[i]->n = cs[i]->keys_used = cs[i]->ids_used = 0;
    }
}
static void cache_put(tok_cache *c, uint64_t h, const unsigned char *p, size_t n,
                      const int32_t *ids, size_t nids) {
    if (c->n >= c->max_n || c->keys_used + n > c->keys_cap || c->ids_used + nids > c->ids_cap) {
        memset(c->slot, 0, ((size_t)c->mask + 1) * sizeof *c->slot);
        c->n = c->keys_used = c->ids_used = 0;
    }
    uint32_t i = (uint32_t)h & c->mask;
    while (c->slot[i].key_len) i = (i + 1) & c->mask;
    tok_cache_slot *s = &c->slot[i];
    s->h = h;
    s->key_off = c->keys_used;
    s->ids_off = c->ids_used;
    s->key_len = (uint16_t)n;
    s->n_ids = (uint16_t)nids;
    memcpy(c->keys + c->keys_used, p, n);
    memcpy(c->ids + c->ids_used, ids, nids * sizeof *ids);
    c->keys_used += (uint32_t)n;
    c->ids_used += (uint32_t)nids;
    c->n++;
}

/* ------------------------------------------------------------------ BPE */

static void work_reserve(rlaif_tokenizer *t, size_t n) {
    if (t->w_cap >= n) return;
    size_t cap = t->w_cap ? t->w_cap : 256;
    while (cap < n) cap *= 2;
    t->w = xrealloc(t->w, 5 * cap * sizeof *t->w);
    /* heap: n - 1 initial pairs + at most 2 pushes per merge */
    t->heap = xrealloc(t->heap, 3 * cap * sizeof *t->heap);
    t->w_cap = cap;
}

size_t tok_small_max = 128;

/* Short pieces: keep the symbols in an array with the rank of each adjacent
 * pair; merge the lowest rank (leftmost on ties), update two neighbours. */
static size_t bpe_small(const rlaif_tokenizer *t, int32_t *sym, int32_t *rank, int32_t *res,
                        size_t m) {
    for (size_t i = 0; i + 1 < m; i++) rank[i] = pairs_get(&t->pairs, sym[i], sym[i + 1], &res[i]);
    while (m > 1) {
        int32_t best = TOK_NO_RANK;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] < best) best = rank[i], bi = i;
        if (best == TOK_NO_RANK) break;
        sym[bi] = res[bi];
        size_t tail = m - bi - 2; /* pairs after the merged one */
        memmove(sym + bi + 1, sym + bi + 2, tail * sizeof *sym);
        memmove(rank + bi + 1, rank + bi + 2, tail * sizeof *rank);
        memmove(res + bi + 1, res + bi + 2, tail * sizeof *res);
        m--;
        if (bi > 0) rank[bi - 1] = pairs_get(&t->pairs, sym[bi - 1], sym[bi], &res[bi - 1]);
        if (bi + 1 < m) rank[bi] = pairs_get(&t->pairs, sym[bi], sym[bi + 1], &res[bi]);
    }
    return m;
}

/* Long pieces: a doubly linked list of symbols and a binary min-heap of
 * (rank, position) entries; stale entries are skipped when popped, so the
 * whole piece costs O(n log n). Same order as bpe_small: lowest rank, then
 * leftmost (positions are original byte indices, so list order = index order). */
static void heap_push(int64_t *h, size_t *n, int64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}
static int64_t heap_pop(int64_t *h, size_t *n) {
    int64_t top = h[0], v = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = v;
    return top;
}
static size_t bpe_large(rlaif_tokenizer *t, int32_t *sym, size_t m) {
    int32_t *nxt = t->w + 2 * t->w_cap, *prv = t->w + 3 * t->w_cap;
    int64_t *h = t->heap;
    size_t hn = 0;
    int32_t res;
    for (size_t i = 0; i < m; i++) {
        nxt[i] = i + 1 < m ? (int32_t)i + 1 : -1;
        prv[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < m; i++) {
        int32_t r = pairs_get(&t->pairs, sym[i], sym[i + 1], &res);
        if (r != TOK_NO_RANK) heap_push(h, &hn, ((int64_t)r << 32) | (int64_t)i);
    }
    while (hn) {
        int64_t e = heap_pop(h, &hn);
        int32_t rank = (int32_t)(e >> 32), i = (int32_t)(e & 0xFFFFFFFF);
        int32_t j = nxt[i];
        if (sym[i] < 0 || j < 0) continue;
        if (pairs_get(&t->pairs, sym[i], sym[j], &res) != rank) continue; /* stale */
        sym[i] = res;
        sym[j] = -1;
        nxt[i] = nxt[j];
        if (nxt[j] >= 0) prv[nxt[j]] = i;
        int32_t r;
        if (prv[i] >= 0 && (r = pairs_get(&t->pairs, sym[prv[i]], sym[i], &res)) != TOK_NO_RANK)
            heap_push(h, &hn, ((int64_t)r << 32) | prv[i]);
        if (nxt[i] >= 0 && (r = pairs_get(&t->pairs, sym[i], sym[nxt[i]], &res)) != TOK_NO_RANK)
            heap_push(h, &hn, ((int64_t)r << 32) | i);
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = nxt[i]) sym[k++] = sym[i];
    return k;
}

/* gpt-3-encoder's loop, verbatim in spirit: find the lowest rank among the
 * adjacent pairs (on ties the LAST such pair, because it fills an object keyed
 * by rank), then merge every occurrence of that exact pair left to right.
 * Ranks come from js_pairs first (pairs whose "a,b" key collides with a
 * merge's key), then the real merges. Used only for pieces holding ','. */
static inline int32_t js_rank(const rlaif_tokenizer *t, int32_t a, int32_t b, int32_t *res) {
    int32_t r = pairs_get(&t->js_pairs, a, b, res);
    return r != TOK_NO_RANK ? r : pairs_get(&t->pairs, a, b, res);
}
static size_t bpe_js(const rlaif_tokenizer *t, int32_t *sym, size_t m) {
    int32_t res = -1;
    while (m > 1) {
        int32_t best = TOK_NO_RANK;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++) {
            int32_t r = js_rank(t, sym[i], sym[i + 1], &res);
            if (r != TOK_NO_RANK && r <= best) best = r, bi = i;
        }
        if (best == TOK_NO_RANK) break;
        int32_t a = sym[bi], b = sym[bi + 1];
        js_rank(t, a, b, &res);
        size_t k = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && sym[i] == a && sym[i + 1] == b)
                sym[k++] = res, i += 2;
            else
                sym[k++] = sym[i++];
        }
        m = k;
    }
    return m;
}

/* SentencePiece's first symbols: one per character, a character the vocabulary
 * lacks as its byte-fallback tokens (<0xNN>), as Hugging Face's BPE with
 * byte_fallback. byte_id holds each single byte's token or fallback. */
static size_t sp_symbols(const rlaif_tokenizer *t, const unsigned char *p, size_t n, int32_t *sym) {
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = p[i] < 0x80 ? 1 : rlaif_utf8_decode(p + i, n - i, &cp);
        int32_t id = l == 1 ? t->byte_id[p[i]] : rlaif_tokenizer_lookup(t, (const char *)p + i, l);
        if (id >= 0 && !t->special[id])
            sym[m++] = id;
        else
            for (int k = 0; k < l; k++) sym[m++] = t->byte_fb[p[i + k]];
        i += (size_t)l;
    }
    return m;
}

/* Encode one piece (n >= 1 bytes) and append its ids. */
static void encode_piece(rlaif_tokenizer *t, const unsigned char *p, size_t n, int js,
                         rlaif_tokens *out) {
    tokens_reserve(out, n);
    if (n == 1 && !t->o.sp) {
        out->ids[out->n++] = t->byte_id[p[0]];
        return;
    }
    js = js && memchr(p, ',', n) != NULL;
    tok_cache *c = js ? &t->js_cache : &t->cache;
    if (!c->slot) cache_init(c); /* the gpt-3-encoder cache only when that mode is used */
    uint64_t h = 0;
    if (n <= TOK_CACHE_KEY_MAX) {
        h = tok_hash_bytes(p, n);
        const tok_cache_slot *s = cache_get(c, h, p, n);
        if (s) {
            memcpy(out->ids + out->n, c->ids + s->ids_off, s->n_ids * sizeof *out->ids);
            out->n += s->n_ids;
            return;
        }
    }
    int32_t *sym = out->ids + out->n;
    size_t m;
    int32_t whole;
    if (t->ignore_merges && (whole = rlaif_tokenizer_lookup(t, (const char *)p, n)) >= 0) {
        sym[0] = whole;
        m = 1;
    } else {
        work_reserve(t, n);
        size_t m0 = n;
        if (t->o.sp)
            m0 = sp_symbols(t, p, n, sym);
        else
            for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[p[i]];
        if (js)
            m = bpe_js(t, sym, m0);
        else if (m0 <= 128)
            m = bpe_small(t, sym, t->w, t->w + t->w_cap, m0);
        else
            m = bpe_large(t, sym, m0);
    }
    if (n <= TOK_CACHE_KEY_MAX) cache_put(c, h, p, n, sym, m);
    out->n += m;
}

static unsigned char *scratch2(tok_scratch *w, size_t n) {
    if (w->b2_cap < n) w->b2 = xrealloc(w->b2, w->b2_cap = n);
    return w->b2;
}

/* The normalizer: NFC, then the leading space a model asks for, then
 * SentencePiece's U+2581 read as a space. Returns s or a scratch buffer. */
static const unsigned char *normalize(rlaif_tokenizer *t, const unsigned char *s, size_t *n,
                                      int at_start) {
    if (t->o.nfc) {
        size_t m = tok_nfc(s, *n, &t->scratch);
        if (m != SIZE_MAX) s = t->scratch.b, *n = m;
    }
    int pre = (t->add_prefix_space && s[0] != ' ') || t->o.prepend == TOK_PREPEND_ALWAYS ||
              (t->o.prepend == TOK_PREPEND_FIRST && at_start);
    int lower = t->o.sp && memmem(s, *n, "\xE2\x96\x81", 3);
    if (!pre && !lower) return s;
    unsigned char *d = scratch2(&t->scratch, *n + 1);
    size_t k = 0;
    if (pre) d[k++] = ' ';
    for (size_t i = 0; i < *n; i++) {
        if (lower && s[i] == 0xE2 && i + 2 < *n && s[i + 1] == 0x96 && s[i + 2] == 0x81)
            d[k++] = ' ', i += 2;
        else
            d[k++] = s[i];
    }
    *n = k;
    return d;
}

/* Text without specials; at_start: it begins the encoded text. */
static void encode_plain(rlaif_tokenizer *t, const unsigned char *s, size_t n, int flags,
                         int at_start, rlaif_tokens *out) {
    if (!n) return;
    if (t->type == RLAIF_TOK_BYTE) {
        tokens_reserve(out, n);
        for (size_t i = 0; i < n; i++) out->ids[out->n++] = t->byte_id[s[i]];
        return;
    }
    s = normalize(t, s, &n, at_start);
    int js = (flags & RLAIF_TOK_GPT3_ENCODER) != 0;
    size_t len;
    for (size_t i = 0, e = 0; i < n; i = e) {
        switch (t->o.pretok) {
        case TOK_PRE_GPT2:
            e = rlaif_gpt2_piece_end(s, n, i);
            break;
        case TOK_PRE_LLAMA3:
            e = rlaif_llama3_piece_end(s, n, i, 3);
            break;
        case TOK_PRE_QWEN2:
            e = rlaif_llama3_piece_end(s, n, i, 1);
            break;
        case TOK_PRE_DIGITS:
            if (class_at(s, n, i, &len) == RLAIF_UC_NUMBER) {
                e = i + len;
                break;
            }
            /* GPT-2's regex on the stretch up to the next number */
            for (size_t seg = next_number(s, n, i); i < seg; i = e) {
                e = rlaif_gpt2_piece_end(s, seg, i);
                encode_piece(t, s + i, e - i, js, out);
            }
            e = i; /* the loop left i at the next number */
            continue;
        default:
            e = t->sp_cut ? sp_piece_end(s, n, i) : n;
            break;
        }
        encode_piece(t, s + i, e - i, js, out);
    }
}

/* The first special at or after pos: its start (len if none), id and length.
 * Only bytes that begin some special are tried (Llama 3 has 256 specials, all
 * starting with '<'), longest special first. */
static size_t find_special(const rlaif_tokenizer *t, const unsigned char *s, size_t len, size_t pos,
                           int32_t *id, size_t *id_len) {
    for (size_t p = pos; p < len; p++) {
        if (!t->special_first[s[p]]) continue;
        for (int32_t k = 0; k < t->n_special; k++) {
            int32_t sid = t->special_ids[k];
            size_t sl = (size_t)(t->off[sid + 1] - t->off[sid]);
            const unsigned char *sb = (const unsigned char *)t->bytes + t->off[sid];
            if (sb[0] == s[p] && sl <= len - p && !memcmp(sb, s + p, sl)) {
                *id = sid, *id_len = sl;
                return p;
            }
        }
    }
    *id = -1;
    return len;
}

int rlaif_tokenizer_encode(rlaif_tokenizer *t, const char *text, size_t len, int flags,
                           rlaif_tokens *out) {
    if (!t || !out || (!text && len))
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "rlaif_tokenizer_encode: NULL argument");
    if (len > (size_t)INT32_MAX) /* positions in the merge heap are int32 */
        return RLAIF_ERROR(RLAIF_EX_USAGE, "encode the text in pieces (cut at line breaks)",
                           "rlaif_tokenizer_encode: %zu bytes in one call (at most 2 GiB)", len);
    const unsigned char *s = (const unsigned char *)text;
    if ((flags & RLAIF_TOK_BOS) && t->o.add_bos && t->o.bos >= 0) {
        tokens_reserve(out, 1);
        out->ids[out->n++] = t->o.bos;
    }
    if (!(flags & RLAIF_TOK_SPECIAL) || !t->n_special) {
        encode_plain(t, s, len, flags, 1, out);
        return 0;
    }
    /* Cut at the earliest special (the longest one when several start there). */
    size_t pos = 0;
    while (pos < len) {
        size_t best_len = 0;
        int32_t best_id = -1;
        size_t best = find_special(t, s, len, pos, &best_id, &best_len);
        encode_plain(t, s + pos, best - pos, flags, pos == 0, out);
        if (best_id < 0) break;
        tokens_reserve(out, 1);
        out->ids[out->n++] = best_id;
        pos = best + best_len;
    }
    return 0;
}

int rlaif_tokenizer_decode(const rlaif_tokenizer *t, const int32_t *ids, size_t n, int flags,
                           rlaif_bytes *out) {
    if (!t || !out || (!ids && n))
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "rlaif_tokenizer_decode: NULL argument");
    rlaif_bytes_append(out, "", 0);
    size_t start = out->n;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab)
            return RLAIF_ERROR(RLAIF_EX_FAIL,
                               "the ids come from a different tokenizer or are corrupt",
                               "token id %ld at position %zu is outside the vocabulary [0, %ld)",
                               (long)id, i, (long)t->n_vocab);
        if ((flags & RLAIF_TOK_SKIP_SPECIAL) && t->special[id]) continue;
        rlaif_bytes_append(out, t->bytes + t->off[id], (size_t)(t->off[id + 1] - t->off[id]));
    }
    if (t->o.strip_space && !(flags & RLAIF_TOK_CONTINUE) && out->n > start &&
        out->data[start] == ' ') {
        /* the decoder's Strip: the space ("▁") the encoder prepended */
        memmove(out->data + start, out->data + start + 1, out->n - start);
        out->n--;
    }
    return 0;
}

/* ------------------------------------------------------------------ facts */

rlaif_tok_type rlaif_tokenizer_type(const rlaif_tokenizer *t) {
    return t->type;
}
int32_t rlaif_tokenizer_vocab_size(const rlaif_tokenizer *t) {
    return t->n_vocab;
}
int32_t rlaif_tokenizer_n_merges(const rlaif_tokenizer *t) {
    return t->n_merges;
}
int32_t rlaif_tokenizer_eos(const rlaif_tokenizer *t) {
    return t->eos;
}
int32_t rlaif_tokenizer_special_id(const rlaif_tokenizer *t, const char *s) {
    int32_t id = rlaif_tokenizer_lookup(t, s, strlen(s));
    if (id >= 0 && t->special[id]) return id;
    for (int32_t k = 0; k < t->n_special; k++) { /* a special may share bytes with a token */
        int32_t sid = t->special_ids[k];
        size_t sl = (size_t)(t->off[sid + 1] - t->off[sid]);
        if (sl == strlen(s) && !memcmp(t->bytes + t->off[sid], s, sl)) return sid;
    }
    return -1;
}
void tok_kinds(const rlaif_tokenizer *t, uint8_t *kind) {
    for (int32_t id = 0; id < t->n_vocab; id++)
        kind[id] = t->special[id] ? TOK_KIND_SPECIAL : TOK_KIND_NORMAL;
    for (int b = 0; b < 256; b++)
        if (t->byte_fb[b] >= 0) kind[t->byte_fb[b]] = TOK_KIND_BYTE_FALLBACK;
}

int32_t rlaif_tokenizer_bos(const rlaif_tokenizer *t) {
    return t->o.bos;
}
int rlaif_tokenizer_adds_bos(const rlaif_tokenizer *t) {
    return t->o.add_bos && t->o.bos >= 0;
}
int rlaif_tokenizer_is_special(const rlaif_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->special[id];
}
const char *rlaif_tokenizer_token(const rlaif_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = (size_t)(t->off[id + 1] - t->off[id]);
    return t->bytes + t->off[id];
}

/* ------------------------------------------------------------------ building */

void rlaif_tokenizer_free(rlaif_tokenizer *t) {
    if (!t) return;
    free(t->bytes);
    free(t->off);
    free(t->special);
    free(t->special_ids);
    free(t->merges);
    free(t->pairs.slot);
    free(t->js_pairs.slot);
    free(t->vocab_slot);
    cache_free(&t->cache);
    cache_free(&t->js_cache);
    free(t->w);
    free(t->heap);
    free(t->scratch.cp);
    free(t->scratch.b);
    free(t->scratch.b2);
    free(t);
}

static int cmp_special_len(const void *a, const void *b, void *ctx) {
    const rlaif_tokenizer *t = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    int64_t lx = t->off[x + 1] - t->off[x], ly = t->off[y + 1] - t->off[y];
    return lx != ly ? (lx > ly ? -1 : 1) : (x > y) - (x < y);
}

/* gpt-3-encoder looks a pair up by the JS string "a,b" (byte-level text, where
 * ',' stands for the byte ','). When a or b holds a comma, other pairs (x, y)
 * have the same key: x+','+y == a+','+b. Such a pair gets that merge's rank
 * (and a merge sharing its key with a later merge gets the later rank, as the
 * later assignment wins). Record those pairs; 11 exist in GPT-2's vocab.bpe. */
static void build_js_pairs(rlaif_tokenizer *t) {
    pairs_init(&t->js_pairs, 64);
    char *key = NULL;
    size_t key_cap = 0;
    for (int32_t r = 0; r < t->n_merges; r++) {
        int32_t a = t->merges[2 * r], b = t->merges[2 * r + 1];
        size_t la = (size_t)(t->off[a + 1] - t->off[a]), lb = (size_t)(t->off[b + 1] - t->off[b]);
        const char *pa = t->bytes + t->off[a], *pb = t->bytes + t->off[b];
        if (!memchr(pa, ',', la) && !memchr(pb, ',', lb)) continue;
        size_t kl = la + 1 + lb;
        if (kl > key_cap) key = xrealloc(key, key_cap = 2 * kl);
        memcpy(key, pa, la);
        key[la] = ',';
        memcpy(key + la + 1, pb, lb);
        for (size_t c = 0; c < kl; c++) {
            if (key[c] != ',' || c == la) continue;
            int32_t x = rlaif_tokenizer_lookup(t, key, c);
            int32_t y = rlaif_tokenizer_lookup(t, key + c + 1, kl - c - 1);
            if (x < 0 || y < 0) continue;
            int32_t res, rx = pairs_get(&t->pairs, x, y, &res);
            if (rx == TOK_NO_RANK) {
                /* JS merges x and y into the string x+y: it needs an id */
                memmove(key + c, key + c + 1, kl - c - 1);
                res = rlaif_tokenizer_lookup(t, key, kl - 1);
                memmove(key + c + 1, key + c, kl - c - 1);
                key[c] = ',';
                if (res >= 0) pairs_put(&t->js_pairs, x, y, r, res);
            } else if (rx != r) {
                /* two merges share the key: both get the later rank */
                int32_t res_ab = -1, later = rx > r ? rx : r;
                pairs_get(&t->pairs, a, b, &res_ab);
                pairs_put(&t->js_pairs, x, y, later, res);
                pairs_put(&t->js_pairs, a, b, later, res_ab);
            }
        }
    }
    free(key);
}

/* Validate the options of p and set up byte fallback (before the vocabulary
 * is hashed: byte-fallback tokens are left out of it). */
static int build_options(rlaif_tokenizer *t, const tok_parts *p, const char *src) {
    const tok_opts *o = &p->o;
    if (o->pretok < 0 || o->pretok >= TOK_PRE_COUNT || (o->sp && o->pretok) || o->prepend < 0 ||
        o->prepend > TOK_PREPEND_FIRST || (o->prepend && !o->sp) ||
        (t->type == RLAIF_TOK_BYTE && (o->sp || o->nfc || o->pretok)))
        return RLAIF_ERROR(RLAIF_EX_FAIL, NULL,
                           "%s: inconsistent options (pre-tokeniser %d, SentencePiece %d, "
                           "prepend %d)",
                           src, o->pretok, o->sp, o->prepend);
    if (o->bos < -1 || o->bos >= p->n_vocab || o->eos < -1 || o->eos >= p->n_vocab ||
        (o->add_bos && o->bos < 0))
        return RLAIF_ERROR(RLAIF_EX_FAIL, NULL,
                           "%s: bos id %ld (added: %d) or eos id %ld outside the vocabulary", src,
                           (long)o->bos, o->add_bos, (long)o->eos);
    for (int b = 0; b < 256; b++) t->byte_fb[b] = -1;
    for (int32_t id = 0; p->special && id < p->n_vocab; id++) {
        if (p->special[id] > TOK_KIND_BYTE_FALLBACK)
            return RLAIF_ERROR(RLAIF_EX_FAIL, NULL, "%s: token %ld has kind %d", src, (long)id,
                               p->special[id]);
        if (p->special[id] != TOK_KIND_BYTE_FALLBACK) continue;
        unsigned char b = (unsigned char)p->bytes[p->off[id]];
        if (!o->sp || p->off[id + 1] - p->off[id] != 1 || t->byte_fb[b] >= 0)
            return RLAIF_ERROR(RLAIF_EX_FAIL,
                               "byte-fallback tokens are <0x00> .. <0xFF>, once each",
                               "%s: token %ld is not a valid byte-fallback token", src, (long)id);
        t->byte_fb[b] = id;
    }
    return 0;
}

/* sp: may the text be cut before the spaces that follow a word (sp_piece_end)? */
static int sp_cut_safe(const rlaif_tokenizer *t) {
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *b = t->bytes + t->off[id];
        size_t len = (size_t)(t->off[id + 1] - t->off[id]);
        if (t->special[id] || (len == 1 && t->byte_fb[(unsigned char)b[0]] == id)) continue;
        for (size_t k = 1; k < len; k++)
            if (b[k] == ' ' && b[k - 1] != ' ') return 0;
    }
    return 1;
}

int tok_build(rlaif_tokenizer **out, const tok_parts *p) {
    *out = NULL;
    const char *src = p->src ? p->src : "tokenizer";
    if (p->n_vocab < 1) return RLAIF_ERROR(RLAIF_EX_FAIL, NULL, "%s: empty vocabulary", src);
    if (p->off[0] != 0)
        return RLAIF_ERROR(RLAIF_EX_FAIL, NULL, "%s: token offsets do not start at 0", src);
    for (int32_t i = 0; i < p->n_vocab; i++)
        if (p->off[i + 1] <= p->off[i])
            return RLAIF_ERROR(RLAIF_EX_FAIL, NULL,
                               "%s: token %ld is empty or its offsets decrease", src, (long)i);
    rlaif_tokenizer *t = xcalloc(1, sizeof *t);
    t->type = p->type;
    t->n_vocab = p->n_vocab;
    size_t nb = (size_t)p->off[p->n_vocab];
    t->bytes = xmalloc(nb + 1);
    memcpy(t->bytes, p->bytes, nb);
    t->off = xmalloc(((size_t)p->n_vocab + 1) * sizeof *t->off);
    memcpy(t->off, p->off, ((size_t)p->n_vocab + 1) * sizeof *t->off);
    t->special = xcalloc((size_t)p->n_vocab, 1);
    if (p->special)
        for (int32_t i = 0; i < p->n_vocab; i++) t->special[i] = p->special[i] == TOK_KIND_SPECIAL;
    t->add_prefix_space = p->add_prefix_space;
    t->ignore_merges = p->ignore_merges;
    t->o = p->o;
    if (t->type == RLAIF_TOK_BYTE)
        t->o.pretok = TOK_PRE_NONE;
    else if (!t->o.pretok && !t->o.sp)
        t->o.pretok = TOK_PRE_GPT2;
    cache_init(&t->cache);
    int rc = build_options(t, p, src);
    if (rc) {
        rlaif_tokenizer_free(t);
        return rc;
    }

    /* bytes -> id (specials are not looked up by text: a special may share its
     * bytes with an ordinary token, and lookup must find the ordinary one) */
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)p->n_vocab + 16) cap *= 2;
    t->vocab_slot = xmalloc(cap * sizeof *t->vocab_slot);
    memset(t->vocab_slot, 0xFF, cap * sizeof *t->vocab_slot);
    t->vocab_mask = cap - 1;
    for (int32_t pass = 0; pass < 2; pass++)
        for (int32_t id = 0; id < p->n_vocab; id++) {
            if ((pass == 0) == (t->special[id] != 0)) continue; /* ordinary tokens first */
            if (p->special && p->special[id] == TOK_KIND_BYTE_FALLBACK) continue; /* byte_fb */
            size_t len = (size_t)(t->off[id + 1] - t->off[id]);
            if (rlaif_tokenizer_lookup(t, t->bytes + t->off[id], len) >= 0) {
                if (t->special[id]) continue;
                rlaif_tokenizer_free(t);
                return RLAIF_ERROR(RLAIF_EX_FAIL, "every token's bytes must be distinct",
                                   "%s: token %ld duplicates an earlier token's bytes", src,
                                   (long)id);
            }
            uint64_t i = tok_hash_bytes(t->bytes + t->off[id], len) & t->vocab_mask;
            while (t->vocab_slot[i] >= 0) i = (i + 1) & t->vocab_mask;
            t->vocab_slot[i] = id;
        }

    /* single-byte tokens */
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_id[b] = rlaif_tokenizer_lookup(t, &c, 1);
        if (t->o.sp && (t->byte_id[b] < 0 || t->special[t->byte_id[b]]))
            t->byte_id[b] = t->byte_fb[b]; /* a character made of one byte, or a stray byte */
        if (t->type == RLAIF_TOK_BYTE && t->byte_id[b] != b) {
            rlaif_tokenizer_free(t);
            return RLAIF_ERROR(RLAIF_EX_FAIL, NULL,
                               "%s: a byte tokenizer needs token %d to be the byte %d", src, b, b);
        }
        if (t->byte_id[b] < 0) {
            rlaif_tokenizer_free(t);
            return RLAIF_ERROR(RLAIF_EX_FAIL,
                               "a byte-level BPE vocabulary has one token for each of the 256 "
                               "bytes; a SentencePiece one the byte-fallback tokens <0x00> .. "
                               "<0xFF>",
                               "%s: no token for the byte 0x%02X", src, b);
        }
    }

    /* merges: parts in range, result (bytes of a + bytes of b) in the vocabulary */
    t->n_merges = p->n_merges;
    t->merges = xmalloc(((size_t)p->n_merges + 1) * 2 * sizeof *t->merges);
    if (p->n_merges) memcpy(t->merges, p->merges, (size_t)p->n_merges * 2 * sizeof *t->merges);
    pairs_init(&t->pairs, (size_t)p->n_merges);
    char *cat = NULL;
    size_t cat_cap = 0;
    for (int32_t r = 0; r < p->n_merges; r++) {
        int32_t a = t->merges[2 * r], b = t->merges[2 * r + 1];
        if (a < 0 || a >= t->n_vocab || b < 0 || b >= t->n_vocab || t->special[a] ||
            t->special[b]) {
            free(cat);
            rlaif_tokenizer_free(t);
            return RLAIF_ERROR(RLAIF_EX_FAIL, NULL,
                               "%s: merge %ld joins ids %ld and %ld: not ordinary tokens", src,
                               (long)r, (long)a, (long)b);
        }
        size_t la = (size_t)(t->off[a + 1] - t->off[a]), lb = (size_t)(t->off[b + 1] - t->off[b]);
        if (la + lb > cat_cap) cat = xrealloc(cat, cat_cap = 2 * (la + lb));
        memcpy(cat, t->bytes + t->off[a], la);
        memcpy(cat + la, t->bytes + t->off[b], lb);
        int32_t res = rlaif_tokenizer_lookup(t, cat, la + lb);
        if (res < 0) {
            free(cat);
            rlaif_tokenizer_free(t);
            return RLAIF_ERROR(RLAIF_EX_FAIL, "every merge's result must be a token",
                               "%s: merge %ld (ids %ld + %ld) makes a string that is not in "
                               "the vocabulary",
                               src, (long)r, (long)a, (long)b);
        }
        /* a repeated merge takes its last rank, like the dict OpenAI's encoder.py builds */
        pairs_put(&t->pairs, a, b, r, res);
    }
    free(cat);
    build_js_pairs(t);

    /* specials, longest first for matching; eos */
    t->special_ids = xmalloc(((size_t)t->n_vocab) * sizeof *t->special_ids);
    t->eos = -1;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->special[id]) t->special_ids[t->n_special++] = id;
    for (int32_t k = 0; k < t->n_special; k++) {
        int32_t id = t->special_ids[k];
        if (t->eos < 0) t->eos = id;
        if (t->off[id + 1] - t->off[id] == 13 &&
            !memcmp(t->bytes + t->off[id], "<|endoftext|>", 13))
            t->eos = id;
    }
    if (t->o.eos >= 0) t->eos = t->o.eos;
    qsort_r(t->special_ids, (size_t)t->n_special, sizeof *t->special_ids, cmp_special_len, t);
    for (int32_t k = 0; k < t->n_special; k++)
        t->special_first[(unsigned char)t->bytes[t->off[t->special_ids[k]]]] = 1;
    t->sp_cut = t->o.sp && sp_cut_safe(t);
    *out = t;
    return 0;
}

int rlaif_tokenizer_byte(rlaif_tokenizer **out, const char *specials) {
    *out = NULL;
    if (!specials) specials = "<|endoftext|>";
    size_t sl = strlen(specials);
    int32_t n_spec = 0;
    if (sl) {
        n_spec = 1;
        for (size_t i = 0; i < sl; i++) n_spec += specials[i] == ',';
    }
    int32_t n = 256 + n_spec;
    char *bytes = xmalloc(256 + sl + 1);
    int64_t *off = xmalloc(((size_t)n + 1) * sizeof *off);
    uint8_t *special = xcalloc((size_t)n, 1);
    for (int b = 0; b < 256; b++) bytes[b] = (char)b, off[b] = b;
    int64_t o = 256;
    int32_t id = 256;
    for (const char *s = specials; sl && id < n; id++) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (!len) {
            free(bytes), free(off), free(special);
            return RLAIF_ERROR(RLAIF_EX_USAGE, "write specials as \"<|endoftext|>,<|pad|>\"",
                               "byte tokenizer: empty special token in '%s'", specials);
        }
        off[id] = o;
        memcpy(bytes + o, s, len);
        o += (int64_t)len;
        special[id] = 1;
        s = e ? e + 1 : s + len;
    }
    off[n] = o;
    tok_parts p = {.type = RLAIF_TOK_BYTE,
                   .o = TOK_OPTS_DEFAULT,
                   .n_vocab = n,
                   .bytes = bytes,
                   .off = off,
                   .special = special,
                   .src = "byte tokenizer"};
    int rc = tok_build(out, &p);
    free(bytes), free(off), free(special);
    return rc;
}
