/* nfc.c - Unicode Normalization Form C, the normalizer of Qwen2/3 and GPT-NeoX
 * tokenizers, over the tables of unicode_nfc.c (generated).
 *
 * Most text is already NFC: a quick check (NFC_QC and the order of combining
 * classes) passes it through untouched. Otherwise the text is decomposed
 * canonically, combining marks are put in canonical order, and the result is
 * recomposed (UAX #15's algorithm; Hangul syllables arithmetically). Bytes
 * that are not valid UTF-8 stay as they are and block composition, so any
 * input has a defined result. */
#include "tokenizer_impl.h"

#include "rlaif/core/error.h"

#include <string.h>

extern const uint16_t rlaif_nfc_ccc_stage1[0x1100];
extern const uint8_t rlaif_nfc_ccc_stage2[][256];
extern const uint16_t rlaif_nfc_qc_stage1[0x1100];
extern const uint8_t rlaif_nfc_qc_stage2[][256];
extern const uint32_t rlaif_nfc_n_decomp, rlaif_nfc_decomp[][3], rlaif_nfc_pool[];
extern const uint32_t rlaif_nfc_n_comp;
extern const uint64_t rlaif_nfc_comp[][2];

/* Invalid bytes are kept as code "points" above U+10FFFF: class 0, no mappings. */
#define RAW_BYTE 0x110000u
enum { SB = 0xAC00, LB = 0x1100, VB = 0x1161, TB = 0x11A7, LC = 19, VC = 21, TC = 28 };

static inline int ccc(uint32_t cp) {
    return cp >= RAW_BYTE ? 0 : rlaif_nfc_ccc_stage2[rlaif_nfc_ccc_stage1[cp >> 8]][cp & 255];
}
static inline int quick(uint32_t cp) {
    return rlaif_nfc_qc_stage2[rlaif_nfc_qc_stage1[cp >> 8]][cp & 255];
}

/* Is s[0, n) NFC already? (Yes for NFC_QC yes everywhere and classes in order.) */
static int is_nfc(const unsigned char *s, size_t n) {
    int last = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) {
            last = 0, i++;
            continue;
        }
        uint32_t cp;
        i += (size_t)rlaif_utf8_decode(s + i, n - i, &cp);
        if (cp == UINT32_MAX) {
            last = 0;
            continue;
        }
        int c = ccc(cp);
        if (quick(cp) || (c && c < last)) return 0;
        last = c;
    }
    return 1;
}

static void cp_push(tok_scratch *w, size_t *m, uint32_t cp) {
    if (*m == w->cp_cap) {
        w->cp_cap = w->cp_cap ? 2 * w->cp_cap : 256;
        w->cp = xrealloc(w->cp, w->cp_cap * sizeof *w->cp);
    }
    w->cp[(*m)++] = cp;
}

/* Append the full canonical decomposition of cp. */
static void decompose(tok_scratch *w, size_t *m, uint32_t cp) {
    if (cp >= SB && cp < SB + LC * VC * TC) {
        uint32_t k = cp - SB;
        cp_push(w, m, LB + k / (VC * TC));
        cp_push(w, m, VB + (k % (VC * TC)) / TC);
        if (k % TC) cp_push(w, m, TB + k % TC);
        return;
    }
    size_t lo = 0, hi = rlaif_nfc_n_decomp;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (rlaif_nfc_decomp[mid][0] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < rlaif_nfc_n_decomp && rlaif_nfc_decomp[lo][0] == cp) {
        for (uint32_t k = 0; k < rlaif_nfc_decomp[lo][2]; k++)
            cp_push(w, m, rlaif_nfc_pool[rlaif_nfc_decomp[lo][1] + k]);
        return;
    }
    cp_push(w, m, cp);
}

/* The primary composite of a + b, or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LB && a < LB + LC && b >= VB && b < VB + VC)
        return SB + ((a - LB) * VC + (b - VB)) * TC;
    if (a >= SB && a < SB + LC * VC * TC && (a - SB) % TC == 0 && b > TB && b < TB + TC)
        return a + (b - TB);
    if (a >= RAW_BYTE || b >= RAW_BYTE) return 0;
    uint64_t key = ((uint64_t)a << 21) | b;
    size_t lo = 0, hi = rlaif_nfc_n_comp;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (rlaif_nfc_comp[mid][0] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < rlaif_nfc_n_comp && rlaif_nfc_comp[lo][0] == key ? (uint32_t)rlaif_nfc_comp[lo][1]
                                                                 : 0;
}

/* Stable sort of each run of non-zero classes (runs are short: insertion sort). */
static void reorder(uint32_t *d, size_t m) {
    for (size_t i = 1; i < m; i++) {
        int c = ccc(d[i]);
        if (!c) continue;
        uint32_t x = d[i];
        size_t j = i;
        while (j > 0 && ccc(d[j - 1]) > c) d[j] = d[j - 1], j--;
        d[j] = x;
    }
}

static size_t recompose(uint32_t *d, size_t m) {
    if (!m) return 0;
    size_t starter = 0, out = 1;
    int last = ccc(d[0]) ? 256 : 0; /* a leading mark blocks: nothing before it */
    for (size_t i = 1; i < m; i++) {
        uint32_t ch = d[i];
        int c = ccc(ch);
        uint32_t comp = last != 256 ? compose(d[starter], ch) : 0;
        if (comp && (last < c || last == 0)) {
            d[starter] = comp;
            continue;
        }
        if (!c) starter = out;
        last = c;
        d[out++] = ch;
    }
    return out;
}

static void put_utf8(tok_scratch *w, size_t *k, uint32_t cp) {
    unsigned char *o = w->b + *k;
    if (cp >= RAW_BYTE)
        o[0] = (unsigned char)(cp - RAW_BYTE), *k += 1;
    else if (cp < 0x80)
        o[0] = (unsigned char)cp, *k += 1;
    else if (cp < 0x800)
        o[0] = 0xC0 | (cp >> 6), o[1] = 0x80 | (cp & 63), *k += 2;
    else if (cp < 0x10000)
        o[0] = 0xE0 | (cp >> 12), o[1] = 0x80 | ((cp >> 6) & 63), o[2] = 0x80 | (cp & 63), *k += 3;
    else
        o[0] = 0xF0 | (cp >> 18), o[1] = 0x80 | ((cp >> 12) & 63), o[2] = 0x80 | ((cp >> 6) & 63),
        o[3] = 0x80 | (cp & 63), *k += 4;
}

size_t tok_nfc(const unsigned char *s, size_t n, tok_scratch *w) {
    if (is_nfc(s, n)) return SIZE_MAX;
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = rlaif_utf8_decode(s + i, n - i, &cp);
        decompose(w, &m, cp == UINT32_MAX ? RAW_BYTE + s[i] : cp);
        i += (size_t)l;
    }
    reorder(w->cp, m);
    m = recompose(w->cp, m);
    if (w->b_cap < 4 * m + 1) {
        w->b_cap = 4 * m + 1;
        w->b = xrealloc(w->b, w->b_cap);
    }
    size_t k = 0;
    for (size_t i = 0; i < m; i++) put_utf8(w, &k, w->cp[i]);
    return k;
}
