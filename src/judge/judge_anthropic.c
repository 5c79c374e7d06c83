/* judge_anthropic.c - the Anthropic Messages API reply: text blocks,
 * stop_reason, usage and {"type":"error","error":{...}}. Hard labels only
 * (the API returns no logprobs). The request body is built in
 * judge_openai.c (system message as a top-level field). */
#include "rlaif/judge/judge.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rlaif_judge_parse_anthropic(json_t *root, rlaif_judge_reply *r);

int rlaif_judge_parse_anthropic(json_t *root, rlaif_judge_reply *r) {
    json_t *err = json_object_get(root, "error");
    if (json_is_object(err)) {
        const char *msg = json_string_value(json_object_get(err, "message"));
        const char *type = json_string_value(json_object_get(err, "type"));
        snprintf(r->err_msg, sizeof r->err_msg, "%s", msg ? msg : "");
        snprintf(r->err_type, sizeof r->err_type, "%s", type ? type : "");
        snprintf(r->err_code, sizeof r->err_code, "%s", type ? type : "");
        return 0;
    }
    json_t *content = json_object_get(root, "content");
    if (!json_is_array(content)) return -1;
    size_t total = 0;
    for (size_t i = 0; i < json_array_size(content); i++)
        total += json_string_length(json_object_get(json_array_get(content, i), "text"));
    r->text = calloc(total + 1, 1);
    if (!r->text) return -1;
    for (size_t i = 0; i < json_array_size(content); i++) {
        const char *t = json_string_value(json_object_get(json_array_get(content, i), "text"));
        if (t) strcat(r->text, t);
    }
    const char *stop = json_string_value(json_object_get(root, "stop_reason"));
    stop = !stop                         ? ""
           : !strcmp(stop, "max_tokens") ? "length"
           : !strcmp(stop, "refusal")    ? "content_filter"
                                         : stop;
    snprintf(r->finish, sizeof r->finish, "%s", stop);
    json_t *usage = json_object_get(root, "usage");
    r->tokens_in = (long)json_integer_value(json_object_get(usage, "input_tokens"));
    r->tokens_out = (long)json_integer_value(json_object_get(usage, "output_tokens"));
    r->ok = 1;
    return 0;
}
