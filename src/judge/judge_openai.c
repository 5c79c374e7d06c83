/* judge_openai.c - OpenAI-compatible chat completions (OpenAI, vLLM,
 * llama.cpp server, TGI): the request body and every reply shape, including
 * both error shapes ({"error":{...}} and vLLM's flat {"object":"error",...})
 * and logprob soft labels. */
#include "rlaif/judge/judge.h"
#include "rlaif/core/error.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rlaif_judge_reply_free(rlaif_judge_reply *r) {
    free(r->text);
    r->text = NULL;
}

/* Error fields of either shape; code may be a string or an integer. */
static void read_error(json_t *e, rlaif_judge_reply *r) {
    const char *msg = json_string_value(json_object_get(e, "message"));
    const char *type = json_string_value(json_object_get(e, "type"));
    json_t *code = json_object_get(e, "code");
    snprintf(r->err_msg, sizeof r->err_msg, "%s", msg ? msg : "");
    snprintf(r->err_type, sizeof r->err_type, "%s", type ? type : "");
    if (json_is_string(code))
        snprintf(r->err_code, sizeof r->err_code, "%s", json_string_value(code));
    else if (json_is_integer(code))
        snprintf(r->err_code, sizeof r->err_code, "%lld", (long long)json_integer_value(code));
}

static void reply_init(rlaif_judge_reply *r) {
    memset(r, 0, sizeof *r);
    r->p_a = r->coverage = NAN;
}

/* top_logprobs of the first generated token -> P(A). */
static void read_logprobs(json_t *choice, rlaif_judge_reply *r) {
    json_t *content = json_object_get(json_object_get(choice, "logprobs"), "content");
    json_t *top = json_object_get(json_array_get(content, 0), "top_logprobs");
    size_t n = json_array_size(top);
    if (!n) return;
    const char **tok = xcalloc(n, sizeof *tok);
    double *lp = xcalloc(n, sizeof *lp);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(top, i);
        const char *s = json_string_value(json_object_get(t, "token"));
        tok[i] = s ? s : "";
        lp[i] = json_number_value(json_object_get(t, "logprob"));
        if (!json_is_number(json_object_get(t, "logprob"))) lp[i] = -INFINITY;
    }
    r->p_a = rlaif_judge_logprob_label((int)n, tok, lp, &r->coverage);
    free(tok), free(lp);
}

static int parse_openai(json_t *root, rlaif_judge_reply *r) {
    json_t *err = json_object_get(root, "error");
    const char *object = json_string_value(json_object_get(root, "object"));
    if (json_is_object(err)) return read_error(err, r), 0;
    if (object && !strcmp(object, "error")) return read_error(root, r), 0;
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    if (!json_is_object(msg)) return -1;
    json_t *content = json_object_get(msg, "content");
    if (!json_is_string(content) && !json_is_null(content)) return -1;
    const char *fr = json_string_value(json_object_get(choice, "finish_reason"));
    snprintf(r->finish, sizeof r->finish, "%s", fr ? fr : "");
    const char *refusal = json_string_value(json_object_get(msg, "refusal"));
    if (refusal && !json_is_string(content))
        snprintf(r->finish, sizeof r->finish, "content_filter");
    r->text = xstrdup(json_is_string(content) ? json_string_value(content) : "");
    json_t *usage = json_object_get(root, "usage");
    r->tokens_in = (long)json_integer_value(json_object_get(usage, "prompt_tokens"));
    r->tokens_out = (long)json_integer_value(json_object_get(usage, "completion_tokens"));
    const char *fp = json_string_value(json_object_get(root, "system_fingerprint"));
    snprintf(r->fingerprint, sizeof r->fingerprint, "%s", fp ? fp : "");
    read_logprobs(choice, r);
    r->ok = 1;
    return 0;
}

/* Anthropic Messages API reply (judge_anthropic.c). */
int rlaif_judge_parse_anthropic(json_t *root, rlaif_judge_reply *r);

int rlaif_judge_parse_reply(rlaif_judge_backend b, rlaif_judge_mode mode, const char *body,
                            size_t len, rlaif_judge_reply *r) {
    (void)mode;
    reply_init(r);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return -1;
    }
    int rc = b == RLAIF_JB_ANTHROPIC ? rlaif_judge_parse_anthropic(root, r) : parse_openai(root, r);
    json_decref(root);
    return rc;
}

static json_t *messages_json(const rlaif_judge_messages *m, int skip_system) {
    json_t *arr = json_array();
    for (int i = 0; i < m->n; i++) {
        if (skip_system && !strcmp(m->role[i], "system")) continue;
        json_array_append_new(
            arr, json_pack("{s:s, s:s}", "role", m->role[i], "content", m->content[i]));
    }
    return arr;
}

char *rlaif_judge_request_body(const rlaif_judge_endpoint *e, rlaif_judge_mode mode,
                               const rlaif_judge_messages *m) {
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(e->model ? e->model : ""));
    json_object_set_new(o, "temperature", json_real(e->temperature));
    int maxtok = mode == RLAIF_JM_LOGPROB ? 1 : e->max_tokens;
    if (e->backend == RLAIF_JB_ANTHROPIC) {
        json_object_set_new(o, "max_tokens", json_integer(maxtok));
        if (m->n && !strcmp(m->role[0], "system"))
            json_object_set_new(o, "system", json_string(m->content[0]));
        json_object_set_new(o, "messages", messages_json(m, 1));
    } else {
        json_object_set_new(o, e->max_completion_tokens ? "max_completion_tokens" : "max_tokens",
                            json_integer(maxtok));
        if (e->seed) json_object_set_new(o, "seed", json_integer(e->seed));
        if (mode == RLAIF_JM_LOGPROB) {
            json_object_set_new(o, "logprobs", json_true());
            json_object_set_new(o, "top_logprobs", json_integer(e->top_logprobs));
        }
        json_object_set_new(o, "messages", messages_json(m, 0));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!s) RLAIF_DIE(RLAIF_EX_SOFTWARE, NULL, "json_dumps failed (out of memory?)");
    return s;
}
