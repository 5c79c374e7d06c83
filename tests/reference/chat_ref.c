/* chat_ref.c - the C side of test_chat_ref.py: reads a tokenizer_config.json
 * (argv[1]) the way `model.chat_template = auto` does, then renders every
 * conversation of the JSON list on stdin ([{"messages": [{"role",
 * "content"}], "add_generation_prompt": bool}]) and prints
 * {"form", "system", "texts": [text, or null when refused]} as JSON. A
 * template rlaif refuses prints {"error": message}. */
#include "rlaif/core/error.h"
#include "rlaif/tokenizer/chat.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n + 4096 > cap) buf = realloc(buf, cap = 2 * cap + 4096);
        size_t got = fread(buf + *n, 1, 4096, f);
        *n += got;
        if (got < 4096) break;
    }
    fclose(f);
    return buf;
}

/* One conversation's text, or JSON null when the form refuses it. */
static json_t *render(const rlaif_chat *c, json_t *conv) {
    json_t *msgs = json_object_get(conv, "messages");
    size_t n = json_array_size(msgs), i;
    rlaif_chat_msg *m = calloc(n + 1, sizeof *m);
    json_t *e;
    json_array_foreach(msgs, i, e) {
        m[i].role = json_string_value(json_object_get(e, "role"));
        m[i].content = json_string_value(json_object_get(e, "content"));
    }
    rlaif_bytes out = {0};
    int gen = json_is_true(json_object_get(conv, "add_generation_prompt"));
    int rc = rlaif_chat_render(c, m, (int)n, gen, &out);
    json_t *r = rc ? json_null() : json_stringn(out.data ? out.data : "", out.n);
    rlaif_error_clear();
    rlaif_bytes_free(&out);
    free(m);
    return r;
}

int main(int argc, char **argv) {
    if (argc != 2) return fprintf(stderr, "usage: chat_ref tokenizer_config.json < cases\n"), 2;
    size_t n;
    char *cfg = slurp(argv[1], &n);
    json_error_t je;
    json_t *cases = json_loadf(stdin, 0, &je);
    if (!cfg || !json_is_array(cases)) return fprintf(stderr, "chat_ref: bad input\n"), 2;
    rlaif_chat c;
    json_t *res;
    if (rlaif_chat_from_hf_config(&c, cfg, n, argv[1])) {
        res = json_pack("{s:s, s:s}", "error", rlaif_error_message(), "hint", rlaif_error_hint());
    } else {
        json_t *texts = json_array(), *conv;
        size_t i;
        json_array_foreach(cases, i, conv) json_array_append_new(texts, render(&c, conv));
        res = json_pack("{s:s, s:s?, s:o}", "form", rlaif_chat_form_name(c.form), "system",
                        c.system, "texts", texts);
        rlaif_chat_free(&c);
    }
    json_dumpf(res, stdout, JSON_ENSURE_ASCII);
    putchar('\n');
    json_decref(res), json_decref(cases), free(cfg);
    return 0;
}
