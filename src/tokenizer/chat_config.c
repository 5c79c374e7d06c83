/* chat_config.c - which chat form a job uses: model.chat_template and
 * model.system_prompt, and for `auto` the Jinja chat_template a checkpoint
 * converted from Hugging Face keeps in /hf_files, recognised by its markers.
 * rlaif runs no Jinja, so a template of any other form is refused rather
 * than guessed: a wrong form trains and samples a model on text it never
 * saw. */
#include "rlaif/tokenizer/chat.h"
#include "rlaif/core/error.h"
#include "rlaif/core/h5util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SUPPORTED                                                                                  \
    "rlaif renders chatml (Qwen2, SmolLM), llama3, llama2 and zephyr (TinyLlama) natively; set "   \
    "model.chat_template to one of them, or none for plain text"

/* The string literal's text from s up to the marker end: NULL when the
 * literal stops first (the template concatenates a variable there). */
static char *literal_until(const char *s, const char *end) {
    const char *e = strstr(s, end);
    if (!e) return NULL;
    char *r = xmalloc((size_t)(e - s) + 1), *o = r;
    for (; s < e; s++) {
        if (*s == '\'' || *s == '"' || *s == '{' || *s == '}') return free(r), NULL;
        if (*s != '\\') {
            *o++ = *s;
            continue;
        }
        s++;
        *o++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
    }
    *o = 0;
    return r;
}

/* ChatML's default system prompt: the first literal
 * '<|im_start|>system\n...<|im_end|>' of the template (Qwen2's "You are a
 * helpful assistant."), NULL when it writes none. */
static char *chatml_default_system(const char *jinja) {
    static const char *const opens[] = {"<|im_start|>system\\n", "<|im_start|>system\n"};
    for (const char *p = jinja; (p = strstr(p, "<|im_start|>system")); p++)
        for (int k = 0; k < 2; k++)
            if (!strncmp(p, opens[k], strlen(opens[k]))) {
                char *s = literal_until(p + strlen(opens[k]), "<|im_end|>");
                if (s) return s;
            }
    return NULL;
}

static int has(const char *s, const char *a, const char *b) {
    return strstr(s, a) && (!b || strstr(s, b));
}

int rlaif_chat_detect(const char *jinja, rlaif_chat_form *f, char **system) {
    *system = NULL;
    if (strstr(jinja, "Cutting Knowledge Date"))
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "set model.chat_template = llama3 (Llama 3.0's form; put the date "
                           "preamble in model.system_prompt if the model needs it)",
                           "a Llama 3.1+ chat template (a dated system preamble, tools) is not "
                           "rendered natively; " SUPPORTED);
    if (has(jinja, "<|im_start|>", "<|im_end|>")) {
        *f = RLAIF_CHAT_CHATML;
        *system = chatml_default_system(jinja);
    } else if (has(jinja, "<|start_header_id|>", "<|eot_id|>")) {
        *f = RLAIF_CHAT_LLAMA3;
    } else if (has(jinja, "[INST]", "[/INST]") && strstr(jinja, "<<SYS>>")) {
        *f = RLAIF_CHAT_LLAMA2;
    } else if (has(jinja, "<|user|>", "<|assistant|>") && strstr(jinja, "eos_token") &&
               !strstr(jinja, "<|end|>")) {
        *f = RLAIF_CHAT_ZEPHYR;
    } else {
        return RLAIF_ERROR(RLAIF_EX_USAGE, SUPPORTED,
                           "the model's chat template is of no form rlaif knows (%.60s%s)", jinja,
                           strlen(jinja) > 60 ? "..." : "");
    }
    return 0;
}

/* tokenizer_config.json's chat_template: a string, or named templates. */
static const char *template_of(json_t *root) {
    json_t *t = json_object_get(root, "chat_template");
    if (!json_is_array(t)) return json_string_value(t);
    size_t i;
    json_t *e;
    json_array_foreach(t, i, e) {
        const char *name = json_string_value(json_object_get(e, "name"));
        if (name && !strcmp(name, "default"))
            return json_string_value(json_object_get(e, "template"));
    }
    return NULL;
}

int rlaif_chat_from_hf_config(rlaif_chat *c, const char *json, size_t n, const char *where) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *root = json_loadb(json, n, 0, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return RLAIF_ERROR(RLAIF_EX_USAGE, "convert the model again with tools/user/hf-to-rlaif",
                           "%s: not a JSON object (line %d: %s)", where, je.line, je.text);
    }
    json_t *t = json_object_get(root, "chat_template");
    const char *jinja = template_of(root);
    int rc = 0;
    if (t && !jinja)
        rc = RLAIF_ERROR(RLAIF_EX_USAGE, SUPPORTED,
                         "%s: chat_template is neither a string nor a list holding a \"default\"",
                         where);
    else if (jinja)
        rc = rlaif_chat_detect(jinja, &c->form, &c->system);
    json_decref(root);
    if (rc) rlaif_error_context("%s: ", where);
    return rc;
}

/* /hf_files/<name> of a checkpoint: 0 with *text NULL when it has none. */
static int stored_file(const char *path, const char *name, char **text, size_t *n) {
    *text = NULL, *n = 0;
    hid_t f;
    RLAIF_TRY(rlaif_h5_open_serial(path, 0, &f));
    char ds[128];
    snprintf(ds, sizeof ds, "hf_files/%s", name);
    int rc = 0;
    if (rlaif_h5_exists(f, ds) > 0)
        rc = rlaif_h5_read_all(f, ds, H5T_NATIVE_UINT8, 1, (void **)text, n);
    rlaif_h5_close_file(&f);
    return rc;
}

/* The form the checkpoint's Hugging Face files name; *found 0 when the
 * checkpoint keeps no tokenizer_config.json (nor chat_template.jinja, which
 * newer models use and which wins, as in transformers). */
static int from_checkpoint(rlaif_chat *c, const char *path, int *found) {
    char *text, where[4200];
    size_t n;
    *found = 0;
    RLAIF_TRY(stored_file(path, "chat_template.jinja", &text, &n));
    if (text) {
        char *z = xmalloc(n + 1);
        memcpy(z, text, n), z[n] = 0, free(text);
        *found = 1;
        memset(c, 0, sizeof *c);
        int rc = rlaif_chat_detect(z, &c->form, &c->system);
        free(z);
        if (rc) rlaif_error_context("%s /hf_files/chat_template.jinja: ", path);
        return rc;
    }
    RLAIF_TRY(stored_file(path, "tokenizer_config.json", &text, &n));
    if (!text) return 0;
    *found = 1;
    snprintf(where, sizeof where, "%s /hf_files/tokenizer_config.json", path);
    int rc = rlaif_chat_from_hf_config(c, text, n, where);
    free(text);
    return rc;
}

static int from_auto(rlaif_chat *c, const rlaif_config *cfg, const char *checkpoint) {
    const char *paths[2] = {checkpoint, rlaif_cfg_str(cfg, "model.init_from")};
    for (int i = 0; i < 2; i++) {
        int found = 0;
        if (paths[i] && *paths[i]) RLAIF_TRY(from_checkpoint(c, paths[i], &found));
        if (found) return 0;
    }
    const char *hint = "convert the model with tools/user/hf-to-rlaif (it keeps "
                       "tokenizer_config.json), or set model.chat_template to the form";
    if (!paths[0] || !*paths[0] || !strcmp(paths[0], paths[1]))
        paths[0] = *paths[1] ? paths[1] : NULL;
    else if (*paths[1])
        return RLAIF_ERROR(RLAIF_EX_USAGE, hint,
                           "model.chat_template = auto: neither %s nor model.init_from %s keeps "
                           "a Hugging Face tokenizer_config.json (/hf_files) to read it from",
                           paths[0], paths[1]);
    return RLAIF_ERROR(RLAIF_EX_USAGE, hint,
                       "model.chat_template = auto: %s keeps no Hugging Face "
                       "tokenizer_config.json (/hf_files) to read the template from",
                       paths[0] ? paths[0] : "the job (no checkpoint)");
}

int rlaif_chat_for_checkpoint(rlaif_chat *c, const char *form, const char *checkpoint) {
    memset(c, 0, sizeof *c);
    if (strcmp(form, "auto")) return rlaif_chat_form_parse(form, &c->form);
    int found = 0;
    RLAIF_TRY(from_checkpoint(c, checkpoint, &found));
    if (found) return 0;
    return RLAIF_ERROR(RLAIF_EX_USAGE, "name the form (chatml, llama3, ...) instead of auto",
                       "chat template auto: %s keeps no Hugging Face tokenizer_config.json "
                       "(/hf_files) to read the template from",
                       checkpoint);
}

void rlaif_chat_keys_set(const rlaif_config *cfg, const char *keys[3]) {
    int n = 0;
    if (strcmp(rlaif_cfg_str(cfg, "model.chat_template"), "none"))
        keys[n++] = "model.chat_template";
    if (*rlaif_cfg_str(cfg, "model.system_prompt")) keys[n++] = "model.system_prompt";
    keys[n] = NULL;
}

int rlaif_chat_from_config(rlaif_chat *c, const rlaif_config *cfg, const char *checkpoint) {
    memset(c, 0, sizeof *c);
    const char *form = rlaif_cfg_str(cfg, "model.chat_template");
    const char *system = rlaif_cfg_str(cfg, "model.system_prompt");
    if (!strcmp(form, "auto"))
        RLAIF_TRY(from_auto(c, cfg, checkpoint));
    else
        RLAIF_TRY(rlaif_chat_form_parse(form, &c->form));
    if (*system) {
        free(c->system);
        c->system = xstrdup(system);
    }
    return 0;
}
