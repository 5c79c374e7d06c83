/* chat.h - chat templates: how a conversation becomes the text and token
 * ids an instruction-tuned model was trained on.
 *
 * A Hugging Face model keeps its chat template as Jinja source in
 * tokenizer_config.json. rlaif runs no Jinja: it implements the common forms
 * natively, byte for byte what their Jinja templates render (tested against
 * jinja2 by tests/reference/test_chat_ref.py):
 *
 *   none    today's plain text: each message's content, then "\n" (no roles)
 *   chatml  Qwen2, SmolLM: <|im_start|>role\ncontent<|im_end|>\n ...,
 *           generation prompt <|im_start|>assistant\n; ends a reply with <|im_end|>
 *   llama3  Llama 3: <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\n
 *           content (trimmed)<|eot_id|> ...; ends a reply with <|eot_id|>
 *   llama2  Llama 2 chat, Mistral: <s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST]
 *           reply </s> (BOS before every user turn); ends a reply with </s>
 *   zephyr  TinyLlama chat: <|user|>\ncontent</s>\n ... <|assistant|>\n;
 *           ends a reply with </s>
 *
 * Selected by model.chat_template (none, the default, | chatml | llama3 |
 * llama2 | zephyr | auto) and model.system_prompt. auto reads the Hugging
 * Face tokenizer_config.json stored in the checkpoint (/hf_files, written by
 * tools/user/hf-to-rlaif) and recognises these forms by their markers (and
 * ChatML's default system prompt); any other Jinja template is refused.
 *
 * Encoding: the template's markers that are special tokens (<|im_start|>,
 * <|eot_id|>, <s>, ...) become their ids, looked up by name; every other
 * piece of text, the messages' content included, is encoded WITHOUT
 * RLAIF_TOK_SPECIAL, so a user who writes "<|im_end|>" gets ordinary tokens,
 * never a forged turn. Adjacent text pieces are encoded as one string, as a
 * Hugging Face tokenizer encodes the text between two special tokens. */
#ifndef RLAIF_CHAT_H
#define RLAIF_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "rlaif/core/config.h"
#include "rlaif/tokenizer/tokenizer.h"

typedef enum {
    RLAIF_CHAT_NONE = 0,
    RLAIF_CHAT_CHATML = 1,
    RLAIF_CHAT_LLAMA3 = 2,
    RLAIF_CHAT_LLAMA2 = 3,
    RLAIF_CHAT_ZEPHYR = 4,
} rlaif_chat_form;

typedef struct {
    rlaif_chat_form form;
    char *system; /* system prompt used when a conversation has none (malloc'd; NULL: none) */
} rlaif_chat;

typedef struct {
    const char *role; /* "system", "user", "assistant" (chatml and llama3: any) */
    const char *content;
} rlaif_chat_msg;

/* "none", "chatml", ...; NULL for an unknown form. */
const char *rlaif_chat_form_name(rlaif_chat_form f);
/* The form named s (not "auto"); RLAIF_EX_USAGE naming the choices otherwise. */
int rlaif_chat_form_parse(const char *s, rlaif_chat_form *f);

/* Recognise a Jinja chat_template by its markers. *system receives the
 * default system prompt the template writes when a conversation has none
 * (ChatML's "You are a helpful assistant."; malloc'd, NULL when none). A
 * template of no known form is RLAIF_EX_USAGE, naming the supported forms. */
int rlaif_chat_detect(const char *jinja, rlaif_chat_form *f, char **system);
/* From the text of a tokenizer_config.json (where names it in errors): its
 * chat_template (a string, or a list of {name, template} whose "default" is
 * taken). No chat_template: form none (a base model). */
int rlaif_chat_from_hf_config(rlaif_chat *c, const char *json, size_t n, const char *where);
/* The job's template: model.chat_template and model.system_prompt (which,
 * when set, replaces a detected default). auto reads
 * /hf_files/tokenizer_config.json of checkpoint (may be NULL), else of
 * model.init_from; neither holding one is RLAIF_EX_USAGE. */
int rlaif_chat_from_config(rlaif_chat *c, const rlaif_config *cfg, const char *checkpoint);
/* A template for another model than the policy (the local judge): form is
 * a form name or "auto", which reads only checkpoint's /hf_files. */
int rlaif_chat_for_checkpoint(rlaif_chat *c, const char *form, const char *checkpoint);
void rlaif_chat_free(rlaif_chat *c);
/* The job's chat keys that are not at their defaults (model.chat_template
 * none, model.system_prompt ""), NULL-terminated, for the signatures that
 * say which settings made an output: the default adds nothing, so outputs
 * made before chat templates existed keep their signatures. */
void rlaif_chat_keys_set(const rlaif_config *cfg, const char *keys[3]);

/* The conversation m[0, n) as text, exactly as the form's Jinja template
 * renders it (add_gen: with the generation prompt that opens the assistant's
 * reply). c NULL is form none. Appends to out. */
int rlaif_chat_render(const rlaif_chat *c, const rlaif_chat_msg *m, int n, int add_gen,
                      rlaif_bytes *out);
/* The same conversation as token ids (markers as special ids, text without
 * specials; see top). A marker the tokenizer lacks is RLAIF_EX_USAGE naming
 * it. Appends to out. */
int rlaif_chat_encode(const rlaif_chat *c, rlaif_tokenizer *tok, const rlaif_chat_msg *m, int n,
                      int add_gen, rlaif_tokens *out);
/* A reply as the template writes it before its end-of-turn token (llama3
 * trims it, llama2 pads the stripped reply with a space each side);
 * malloc'd. */
char *rlaif_chat_reply_text(const rlaif_chat *c, const char *reply);
/* Read a generated reply back: bytes b[start, b->n) stripped in place where
 * the template strips replies (llama2, llama3), so the text is the reply,
 * not its padding. */
void rlaif_chat_reply_read(const rlaif_chat *c, rlaif_bytes *b, size_t start);
/* The token that ends an assistant turn, where generation stops: <|im_end|>,
 * <|eot_id|>, </s>; form none: the tokenizer's EOS. -1 when the tokenizer
 * lacks it. */
int32_t rlaif_chat_stop_id(const rlaif_chat *c, const rlaif_tokenizer *tok);
/* rlaif_chat_stop_id, or RLAIF_EX_USAGE naming the missing token. */
int rlaif_chat_require_stop(const rlaif_chat *c, const rlaif_tokenizer *tok, int32_t *id);

#endif
