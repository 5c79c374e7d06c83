/* tokenizer.h - GPT-2 byte-level BPE and a byte tokenizer, stored in checkpoints.
 *
 * A tokenizer maps text (any bytes, valid UTF-8 or not) to int32 token ids and
 * back. Every token is a byte string; decoding concatenates them, so
 * decode(encode(x)) == x for every input, and any id sequence decodes (a
 * sequence may end inside a UTF-8 character: rlaif_utf8_complete tells how much
 * of a stream is safe to show).
 *
 *   byte: ids 0..255 are the bytes, specials follow (256 = "<|endoftext|>").
 *   bpe:  GPT-2's byte-level BPE. The text is cut by GPT-2's pre-tokeniser
 *         ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+,
 *         implemented by hand over full Unicode tables; bytes that are not
 *         valid UTF-8 count as "other"), each piece is merged by rank
 *         (lowest rank first, leftmost on ties, as in OpenAI's encoder.py and
 *         Hugging Face tokenizers). Loaded from encoder.json + vocab.bpe or a
 *         Hugging Face tokenizer.json (model type BPE, ByteLevel pre-tokeniser).
 *         tokenizer.json may also give Llama 3's or Qwen2's Split regex, Digits
 *         (SmolLM), an NFC normaliser (Qwen, GPT-NeoX), or SentencePiece-style
 *         BPE with byte fallback (Llama 2, Mistral: characters merge, unknown
 *         ones become <0xNN> tokens, "▁" is stored as a space), and a BOS the
 *         model's configuration adds (RLAIF_TOK_BOS); see src/tokenizer/README.md.
 *
 * Special tokens (e.g. "<|endoftext|>") are recognised in text only when the
 * caller passes RLAIF_TOK_SPECIAL; otherwise their text encodes like any other.
 *
 * In a checkpoint the tokenizer lives in the group /tokenizer (no
 * variable-length strings, so parallel HDF5 files work):
 *   attributes  format (int, 1; 2 when an option below is used), type ("byte" | "bpe"), n_vocab,
 * n_merges, eos_id (-1 if none), add_prefix_space, ignore_merges, pretokenizer ("gpt2" | "none" |
 * "llama3" | "qwen2" | "digits+gpt2"); format 2: nfc, sentencepiece, prepend_space, strip_space,
 * bos_id, add_bos token_bytes  uint8 [sum of token lengths]  every token's raw bytes, in id order
 *   token_offset int64 [n_vocab + 1]           token i = token_bytes[off[i], off[i+1])
 *   special      uint8 [n_vocab]               1 for special tokens, 2 byte fallback
 *   merges       int32 [n_merges, 2]           (left id, right id), rank = row
 *                                              (absent when n_merges == 0)
 *
 * An encoder keeps a cache of recent pieces, so encoding mutates the
 * tokenizer: use one tokenizer per thread. Every function returns 0 or an
 * error status recorded with file:line (include/rlaif/core/error.h). */
#ifndef RLAIF_TOKENIZER_H
#define RLAIF_TOKENIZER_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "rlaif/core/job.h"
#include "rlaif/core/config.h"

typedef struct rlaif_tokenizer rlaif_tokenizer;

typedef enum { RLAIF_TOK_BYTE = 0, RLAIF_TOK_BPE = 1 } rlaif_tok_type;

/* Flags of encode and decode. */
enum {
    RLAIF_TOK_SPECIAL = 1,      /* encode: special tokens' text becomes their id */
    RLAIF_TOK_GPT3_ENCODER = 2, /* encode: reproduce the npm package gpt-3-encoder
                                   exactly, including its merge-key collisions on ','
                                   (it looks pairs up by the string "a,b") */
    RLAIF_TOK_SKIP_SPECIAL = 4, /* decode: drop special tokens */
    RLAIF_TOK_BOS = 8,          /* encode: prepend the BOS token when the model's
                                   configuration adds one (rlaif_tokenizer_adds_bos) */
    RLAIF_TOK_CONTINUE = 16,    /* decode: the ids continue an earlier decode, so keep
                                   a leading space (SentencePiece decoders strip the
                                   one the encoder prepended at the start of a text) */
};

/* Growable arrays the encoder and decoder append to (zero-initialise). */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} rlaif_tokens;
typedef struct {
    char *data; /* NUL-terminated for convenience (not counted in n) */
    size_t n, cap;
} rlaif_bytes;
void rlaif_tokens_free(rlaif_tokens *t);
void rlaif_bytes_free(rlaif_bytes *b);
/* Append s[0, n) (keeps data NUL-terminated). */
void rlaif_bytes_append(rlaif_bytes *b, const char *s, size_t n);

/* ---- construction ---- */

/* 256 bytes + specials: a comma-separated list ("" for none; NULL means
 * "<|endoftext|>"), given ids 256, 257, ... */
int rlaif_tokenizer_byte(rlaif_tokenizer **out, const char *specials);
/* GPT-2's encoder.json (token -> id, byte-level unicode alphabet) and vocab.bpe
 * ("#version" line, then one merge "a b" per line, rank = order). A missing or
 * malformed file is an error naming the file and line. "<|endoftext|>" is
 * marked special when present. */
int rlaif_tokenizer_load_gpt2(rlaif_tokenizer **out, const char *encoder_json,
                              const char *vocab_bpe);
/* Hugging Face tokenizer.json with model.type "BPE": byte-level (ByteLevel with
 * GPT-2's regex, Llama 3's or Qwen2's Split, Digits) or SentencePiece-style with
 * byte fallback; normaliser none, NFC or SentencePiece's. added_tokens become
 * specials; a tokenizer_config.json in the same folder sets bos/eos/add_bos.
 * Anything else is refused naming the file and the JSON key. */
int rlaif_tokenizer_load_hf(rlaif_tokenizer **out, const char *tokenizer_json);
/* From the job's [tokenizer] section: type byte|bpe, vocab, merges, specials.
 * With merges empty, a vocab path ending in ".json" loads as Hugging Face
 * tokenizer.json. For bpe, specials listed in the job file are marked (or
 * appended when the vocabulary lacks them); the default list only marks. */
int rlaif_tokenizer_from_config(rlaif_tokenizer **out, const rlaif_config *cfg);
void rlaif_tokenizer_free(rlaif_tokenizer *t);

/* ---- checkpoints (HDF5 group, layout above) ---- */

/* Write into an existing (empty) group. In a file opened with the MPI-IO
 * driver every rank of the file's communicator must call it with the same
 * tokenizer (collective metadata); rank 0 writes the data. */
int rlaif_tokenizer_save(const rlaif_tokenizer *t, hid_t group);
/* Read from a group written by rlaif_tokenizer_save; the contents are validated
 * (offsets, ids, merge results), so a damaged group is an error, not a crash. */
int rlaif_tokenizer_load(rlaif_tokenizer **out, hid_t group);
/* Open an HDF5 file (serially, read-only) and load its /tokenizer group. */
int rlaif_tokenizer_load_file(rlaif_tokenizer **out, const char *h5_path);
/* The tokenizer of a model checkpoint: its /tokenizer group when it has one
 * (rlaif checkpoints do), else the job's [tokenizer] (e.g. a model converted
 * by tools/user/hf-to-rlaif without one). */
int rlaif_tokenizer_for_checkpoint(rlaif_tokenizer **out, const char *h5_path,
                                   const rlaif_config *cfg);
/* Callback adapters for checkpoint.h's rlaif_ckpt_group_fn:
 * write: ud is a const rlaif_tokenizer *; read: ud is a rlaif_tokenizer ** that
 * receives a new tokenizer (the previous one, if any, is freed). */
int rlaif_tokenizer_ckpt_write(hid_t group, void *ud);
int rlaif_tokenizer_ckpt_read(hid_t group, void *ud);

/* ---- encode / decode ---- */

/* Append the ids of text[0, len) to out. Never fails on any input bytes;
 * returns non-zero only for bad arguments (NULL, or more than 2 GiB in one call). */
int rlaif_tokenizer_encode(rlaif_tokenizer *t, const char *text, size_t len, int flags,
                           rlaif_tokens *out);
/* Append the bytes of ids to out. An id outside [0, n_vocab) is an error
 * (RLAIF_EX_FAIL) naming its position; out then holds the bytes before it. */
int rlaif_tokenizer_decode(const rlaif_tokenizer *t, const int32_t *ids, size_t n, int flags,
                           rlaif_bytes *out);

/* ---- facts ---- */

rlaif_tok_type rlaif_tokenizer_type(const rlaif_tokenizer *t);
int32_t rlaif_tokenizer_vocab_size(const rlaif_tokenizer *t);
int32_t rlaif_tokenizer_n_merges(const rlaif_tokenizer *t);
/* "<|endoftext|>" if it is a special token, else the first special, else -1. */
int32_t rlaif_tokenizer_eos(const rlaif_tokenizer *t);
/* The beginning-of-sequence token (tokenizer_config.json's bos_token or the
 * post_processor's), -1 if none; whether encoding with RLAIF_TOK_BOS prepends it
 * (add_bos_token, or a TemplateProcessing post_processor that starts with it). */
int32_t rlaif_tokenizer_bos(const rlaif_tokenizer *t);
int rlaif_tokenizer_adds_bos(const rlaif_tokenizer *t);
/* Id of the special token whose text is s, or -1. */
int32_t rlaif_tokenizer_special_id(const rlaif_tokenizer *t, const char *s);
int rlaif_tokenizer_is_special(const rlaif_tokenizer *t, int32_t id);
/* Raw bytes of token id (NULL when out of range); *len receives the length. */
const char *rlaif_tokenizer_token(const rlaif_tokenizer *t, int32_t id, size_t *len);
/* Id of the token whose bytes are s[0, len), or -1. */
int32_t rlaif_tokenizer_lookup(const rlaif_tokenizer *t, const char *s, size_t len);

/* ---- Unicode helpers (tables generated by tools/dev/gen-unicode-tables.py) ---- */

enum { RLAIF_UC_OTHER = 0, RLAIF_UC_LETTER = 1, RLAIF_UC_NUMBER = 2, RLAIF_UC_SPACE = 3 };
/* Class of a code point for GPT-2 pre-tokenisation (0 for cp > U+10FFFF). */
int rlaif_uc_class(uint32_t cp);
/* Unicode version the tables come from, e.g. "15.0.0". */
const char *rlaif_uc_version_string(void);
/* Decode one UTF-8 character at s[0, n) (n >= 1). Returns its length (1-4) and
 * the code point in *cp; an invalid or truncated sequence (overlong, surrogate,
 * > U+10FFFF) returns 1 with *cp = UINT32_MAX. */
int rlaif_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* Length of the longest prefix of s[0, n) that does not end inside an
 * incomplete (but so far valid) UTF-8 character: stream decoders print that
 * much and keep the rest for the next token. */
size_t rlaif_utf8_complete(const char *s, size_t n);
/* GPT-2 pre-tokenisation: end of the piece that starts at s[i] (i < n). */
size_t rlaif_gpt2_piece_end(const unsigned char *s, size_t n, size_t i);
/* Llama 3's pre-tokenisation (max_digits 3; Qwen2's with 1): end of the piece at s[i]. */
size_t rlaif_llama3_piece_end(const unsigned char *s, size_t n, size_t i, int max_digits);

/* ---- commands (src/app/tokenizer_cmd.c) ---- */
int rlaif_cmd_tokenize(rlaif_ctx *ctx);
int rlaif_cmd_detokenize(rlaif_ctx *ctx);

#endif
