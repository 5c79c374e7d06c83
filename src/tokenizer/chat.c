/* chat.c - the chat forms (none, chatml, llama3, llama2, zephyr), rendered
 * to text or encoded to token ids by one writer, so the text the tests
 * compare with Jinja and the ids the model reads cannot drift apart.
 * Detection of a Jinja template and the job's settings: chat_config.c. */
#include "rlaif/tokenizer/chat.h"
#include "rlaif/core/error.h"

#include <stdlib.h>
#include <string.h>

static const char *const form_names[] = {"none", "chatml", "llama3", "llama2", "zephyr"};
enum { NFORMS = sizeof form_names / sizeof *form_names };

const char *rlaif_chat_form_name(rlaif_chat_form f) {
    return (unsigned)f < NFORMS ? form_names[f] : NULL;
}

int rlaif_chat_form_parse(const char *s, rlaif_chat_form *f) {
    for (int i = 0; i < NFORMS; i++)
        if (!strcmp(s, form_names[i])) return *f = (rlaif_chat_form)i, 0;
    return RLAIF_ERROR(RLAIF_EX_USAGE,
                       "model.chat_template is none, chatml, llama3, llama2, zephyr or auto",
                       "unknown chat template form '%s'", s);
}

void rlaif_chat_free(rlaif_chat *c) {
    free(c->system);
    c->system = NULL;
}

/* ---- the writer: text pieces and special markers ---- */

typedef struct {
    rlaif_tokenizer *tok; /* NULL: render text into out */
    rlaif_bytes *out;     /* render: the text */
    rlaif_bytes pending;  /* encode: text since the last marker */
    rlaif_tokens *ids;    /* encode: the ids */
    int rc;
} writer;

static void bytes_put(rlaif_bytes *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = 2 * (b->n + n + 1);
        b->data = xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->n, s, n);
    b->n += n;
    b->data[b->n] = 0;
}

static void text(writer *w, const char *s) {
    bytes_put(w->tok ? &w->pending : w->out, s, strlen(s));
}

/* Encode the text since the last marker as one string, specials off: the
 * content the user wrote can never become a marker. */
static void flush(writer *w) {
    if (w->rc || !w->pending.n) return;
    w->rc = rlaif_tokenizer_encode(w->tok, w->pending.data, w->pending.n, 0, w->ids);
    w->pending.n = 0;
}

static void special(writer *w, const char *name) {
    if (!w->tok) return text(w, name);
    flush(w);
    if (w->rc) return;
    int32_t id = rlaif_tokenizer_special_id(w->tok, name);
    if (id < 0) {
        w->rc =
            RLAIF_ERROR(RLAIF_EX_USAGE,
                        "use the model's own tokenizer, add the token to tokenizer.specials, or "
                        "set model.chat_template to the model's form (none: plain text)",
                        "the chat template needs the special token %s, which the tokenizer "
                        "does not have",
                        name);
        return;
    }
    if (w->ids->n == w->ids->cap) {
        w->ids->cap = w->ids->cap ? 2 * w->ids->cap : 64;
        w->ids->ids = xrealloc(w->ids->ids, sizeof(int32_t) * w->ids->cap);
    }
    w->ids->ids[w->ids->n++] = id;
}

/* Python's str.strip() (Jinja's trim), on the ASCII whitespace it strips. */
static int is_space(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}
static char *strip(const char *s) {
    size_t n = strlen(s);
    while (n && is_space((unsigned char)s[n - 1])) n--;
    while (n && is_space((unsigned char)*s)) s++, n--;
    char *r = xmalloc(n + 1);
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}
static void text_stripped(writer *w, const char *s) {
    char *t = strip(s);
    text(w, t);
    free(t);
}

/* ---- the forms (each mirrors its Jinja template, quoted in the test) ---- */

static void form_none(writer *w, const rlaif_chat_msg *m, int n) {
    for (int i = 0; i < n; i++) text(w, m[i].content), text(w, "\n");
}

static void form_chatml(writer *w, const rlaif_chat_msg *m, int n, int gen) {
    for (int i = 0; i < n; i++) {
        special(w, "<|im_start|>");
        text(w, m[i].role), text(w, "\n"), text(w, m[i].content);
        special(w, "<|im_end|>");
        text(w, "\n");
    }
    if (gen) special(w, "<|im_start|>"), text(w, "assistant\n");
}

static void header(writer *w, const char *role) {
    special(w, "<|start_header_id|>");
    text(w, role);
    special(w, "<|end_header_id|>");
    text(w, "\n\n");
}

static void form_llama3(writer *w, const rlaif_chat_msg *m, int n, int gen) {
    for (int i = 0; i < n; i++) {
        if (i == 0) special(w, "<|begin_of_text|>");
        header(w, m[i].role);
        text_stripped(w, m[i].content);
        special(w, "<|eot_id|>");
    }
    if (gen) header(w, "assistant");
}

static int bad_role(const char *form, const char *role, const char *want) {
    return RLAIF_ERROR(RLAIF_EX_USAGE, "give the conversation as the template expects it",
                       "chat template %s: a message of role '%s' where %s was expected", form, role,
                       want);
}

/* Llama 2: an optional system message first, folded into the first user
 * turn; then user and assistant alternate (the template raises otherwise). */
static int form_llama2(writer *w, const rlaif_chat_msg *m, int n) {
    const char *sys = n && !strcmp(m[0].role, "system") ? m[0].content : NULL;
    for (int i = sys != NULL, j = 0; i < n && !w->rc; i++, j++) {
        const char *want = j % 2 ? "assistant" : "user";
        if (strcmp(m[i].role, want)) return bad_role("llama2", m[i].role, want);
        if (j % 2) {
            text(w, " "), text_stripped(w, m[i].content), text(w, " ");
            special(w, "</s>");
            continue;
        }
        rlaif_bytes c = {0};
        if (j == 0 && sys) {
            bytes_put(&c, "<<SYS>>\n", 8), bytes_put(&c, sys, strlen(sys));
            bytes_put(&c, "\n<</SYS>>\n\n", 11);
        }
        bytes_put(&c, m[i].content, strlen(m[i].content));
        special(w, "<s>");
        text(w, "[INST] "), text_stripped(w, c.data), text(w, " [/INST]");
        rlaif_bytes_free(&c);
    }
    return 0;
}

static int form_zephyr(writer *w, const rlaif_chat_msg *m, int n, int gen) {
    static const char *const roles[3] = {"system", "user", "assistant"};
    for (int i = 0; i < n; i++) {
        int r = 0;
        while (r < 3 && strcmp(m[i].role, roles[r])) r++;
        if (r == 3) return bad_role("zephyr", m[i].role, "system, user or assistant");
        text(w, "<|"), text(w, roles[r]), text(w, "|>\n"), text(w, m[i].content);
        special(w, "</s>");
        text(w, "\n");
        if (i == n - 1 && gen) text(w, "<|assistant|>\n");
    }
    return 0;
}

/* The conversation through c's form; a default system prompt goes first
 * when the conversation opens without one (as ChatML's templates do). */
static int write_chat(const rlaif_chat *c, writer *w, const rlaif_chat_msg *m, int n, int gen) {
    rlaif_chat_form f = c ? c->form : RLAIF_CHAT_NONE;
    rlaif_chat_msg *all = NULL;
    if (c && c->system && n > 0 && strcmp(m[0].role, "system")) {
        all = xmalloc(sizeof *all * (size_t)(n + 1));
        all[0] = (rlaif_chat_msg){"system", c->system};
        memcpy(all + 1, m, sizeof *m * (size_t)n);
        m = all, n++;
    }
    int rc = 0;
    switch (f) {
    case RLAIF_CHAT_NONE:
        form_none(w, m, n);
        break;
    case RLAIF_CHAT_CHATML:
        form_chatml(w, m, n, gen);
        break;
    case RLAIF_CHAT_LLAMA3:
        form_llama3(w, m, n, gen);
        break;
    case RLAIF_CHAT_LLAMA2:
        rc = form_llama2(w, m, n);
        break;
    case RLAIF_CHAT_ZEPHYR:
        rc = form_zephyr(w, m, n, gen);
        break;
    default:
        rc = RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "chat form %d", (int)f);
    }
    free(all);
    return rc ? rc : w->rc;
}

int rlaif_chat_render(const rlaif_chat *c, const rlaif_chat_msg *m, int n, int add_gen,
                      rlaif_bytes *out) {
    writer w = {.out = out};
    return write_chat(c, &w, m, n, add_gen);
}

int rlaif_chat_encode(const rlaif_chat *c, rlaif_tokenizer *tok, const rlaif_chat_msg *m, int n,
                      int add_gen, rlaif_tokens *out) {
    writer w = {.tok = tok, .ids = out};
    int rc = write_chat(c, &w, m, n, add_gen);
    if (!rc) flush(&w), rc = w.rc;
    rlaif_bytes_free(&w.pending);
    return rc;
}

char *rlaif_chat_reply_text(const rlaif_chat *c, const char *reply) {
    rlaif_chat_form f = c ? c->form : RLAIF_CHAT_NONE;
    if (f == RLAIF_CHAT_LLAMA3) return strip(reply);
    if (f != RLAIF_CHAT_LLAMA2) return xstrdup(reply);
    char *s = strip(reply);
    size_t n = strlen(s);
    char *r = xmalloc(n + 3);
    r[0] = ' ', memcpy(r + 1, s, n), r[n + 1] = ' ', r[n + 2] = 0;
    free(s);
    return r;
}

void rlaif_chat_reply_read(const rlaif_chat *c, rlaif_bytes *b, size_t start) {
    if (!c || (c->form != RLAIF_CHAT_LLAMA2 && c->form != RLAIF_CHAT_LLAMA3) || b->n <= start)
        return;
    size_t lo = start, hi = b->n;
    while (hi > lo && is_space((unsigned char)b->data[hi - 1])) hi--;
    while (lo < hi && is_space((unsigned char)b->data[lo])) lo++;
    memmove(b->data + start, b->data + lo, hi - lo);
    b->n = start + (hi - lo);
    b->data[b->n] = 0;
}

static const char *stop_name(const rlaif_chat *c) {
    static const char *const names[NFORMS] = {NULL, "<|im_end|>", "<|eot_id|>", "</s>", "</s>"};
    return c && (unsigned)c->form < NFORMS ? names[c->form] : NULL;
}

int32_t rlaif_chat_stop_id(const rlaif_chat *c, const rlaif_tokenizer *tok) {
    const char *name = stop_name(c);
    return name ? rlaif_tokenizer_special_id(tok, name) : rlaif_tokenizer_eos(tok);
}

int rlaif_chat_require_stop(const rlaif_chat *c, const rlaif_tokenizer *tok, int32_t *id) {
    *id = rlaif_chat_stop_id(c, tok);
    if (*id >= 0) return 0;
    const char *name = stop_name(c);
    if (!name)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "add <|endoftext|> to tokenizer.specials",
                           "the tokenizer has no end-of-text token to end responses with");
    return RLAIF_ERROR(RLAIF_EX_USAGE, "add the token to tokenizer.specials",
                       "the tokenizer has no %s token to end chat replies with", name);
}
