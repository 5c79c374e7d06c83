/* judge_demos.c - `rlaif judge --demos OUT.jsonl`: demonstrations that teach
 * a small model to be the job's judge (judge.backend = local), made from the
 * builtin judge's answers.
 *
 * Each pair is rendered in both orders by the same code that renders a
 * judge call (the job's template, fences with fresh boundaries), the builtin
 * judge answers the rendered user message as it would in a real run (with
 * the job's flip_prob and first_bias), and the call becomes one
 * {"prompt", "response"} record for `rlaif sft`. The prompt is the whole
 * conversation as plain text, so `rlaif sft` on a job with
 * model.chat_template = none (and no system prompt) reads exactly the token
 * ids the local judge reads at labelling time; tests/unit/test_judge_demos.c
 * checks that id for id. */
#include "rlaif/app/judge_demos.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rlaif_judge_demo(const rlaif_judge_template *t, const char *fewshot, rlaif_judge_mode mode,
                     const rlaif_builtin_opts *judge, const char *prefix, const char *input,
                     const char *a, const char *b, rlaif_rng *rng, char **prompt, char **response) {
    rlaif_judge_messages m;
    RLAIF_TRY(rlaif_judge_render(t, fewshot, input, a, b, rng, &m));
    rlaif_chat_msg msg[16];
    for (int i = 0; i < m.n; i++) msg[i] = (rlaif_chat_msg){m.role[i], m.content[i]};
    rlaif_bytes text = {0};
    int rc = rlaif_chat_render(NULL, msg, m.n, 1, &text);
    double pa;
    char *answer = rc ? NULL : rlaif_judge_builtin_answer(m.content[m.n - 1], mode, judge, &pa);
    rlaif_judge_messages_free(&m);
    if (rc) return rlaif_bytes_free(&text), rc;
    /* form none ends every message with a newline; the SFT prompt gets its
     * own from the same form, so it is left off here */
    if (text.n && text.data[text.n - 1] == '\n') text.data[--text.n] = 0;
    *prompt = text.data;
    /* logprob mode: the letter after the reply prefix the local judge
     * writes before it reads P(A); score mode: the score line alone (what
     * is read back; the analysis before it would be most of the tokens);
     * other modes: the judge's whole text */
    const char *score = mode == RLAIF_JM_SCORE ? strstr(answer, "Score: ") : NULL;
    const char *body = score ? score : answer;
    size_t pl = mode == RLAIF_JM_LOGPROB ? strlen(prefix) : 0, al = strlen(body);
    *response = xmalloc(pl + al + 1);
    memcpy(*response, prefix, pl);
    memcpy(*response + pl, body, al + 1);
    free(answer);
    return 0;
}

/* The job's chat must be plain text: the prompt is written as text. */
static int plain_chat(const rlaif_config *cfg) {
    rlaif_chat c;
    RLAIF_TRY(rlaif_chat_from_config(&c, cfg, NULL));
    int plain = c.form == RLAIF_CHAT_NONE && !c.system;
    rlaif_chat_free(&c);
    return plain ? 0
                 : RLAIF_ERROR(RLAIF_EX_USAGE,
                               "write judge demonstrations with model.chat_template = none and "
                               "no model.system_prompt (the judge template has its own)",
                               "judge --demos: the prompt is written as plain text, but the job "
                               "frames prompts with a chat template or a system prompt");
}

static int write_demo(FILE *out, const char *prompt, const char *response, uint64_t id, int order) {
    json_t *o = json_pack("{s:s,s:s,s:I,s:i}", "prompt", prompt, "response", response, "id",
                          (json_int_t)id, "order", order);
    int rc = !o || json_dumpf(o, out, JSON_COMPACT) || fputc('\n', out) == EOF;
    json_decref(o);
    return rc;
}

/* One input line: both orders written, or an error naming the line. */
static int demo_line(const rlaif_judge_template *t, const char *fewshot, rlaif_judge_mode mode,
                     const rlaif_builtin_opts *opts, const char *buf, size_t n, long line,
                     const char *path, FILE *out) {
    json_error_t err;
    json_t *o = json_loadb(buf, n, 0, &err);
    const char *in = json_string_value(json_object_get(o, "prompt"));
    const char *r[2] = {json_string_value(json_object_get(o, "response_a")),
                        json_string_value(json_object_get(o, "response_b"))};
    json_t *jid = json_object_get(o, "id");
    uint64_t id = json_is_integer(jid) ? (uint64_t)json_integer_value(jid) : (uint64_t)line;
    int rc = !in || !r[0] || !r[1]
                 ? RLAIF_ERROR(RLAIF_EX_NOINPUT,
                               "each line: {\"id\": N, \"prompt\": ..., \"response_a\": ..., "
                               "\"response_b\": ...}",
                               "%s:%ld: not a pair", path, line + 1)
                 : 0;
    for (int order = 0; order < 2 && !rc; order++) {
        rlaif_rng rng; /* boundaries: a pure function of (seed, pair, order) */
        rlaif_rng_init(&rng, opts->seed, RLAIF_STREAM_JUDGE, (uint32_t)(id >> 32) ^ 0x6a646d6fu,
                       (uint32_t)id * 2u + (uint32_t)order);
        char *prompt = NULL, *response = NULL;
        /* score mode rates one response a call: order k is response k */
        rc = rlaif_judge_demo(t, fewshot, mode, opts, RLAIF_JUDGE_REPLY_PREFIX, in, r[order],
                              mode == RLAIF_JM_SCORE ? NULL : r[1 - order], &rng, &prompt,
                              &response);
        if (!rc && write_demo(out, prompt, response, id, order))
            rc = RLAIF_ERROR(RLAIF_EX_IOERR, "check the disk", "judge --demos: write failed");
        free(prompt), free(response);
    }
    json_decref(o);
    return rc;
}

/* The job's first template and few-shot file, its mode and builtin noise. */
static int demo_setup(const rlaif_config *cfg, rlaif_judge_template *t, char **fewshot,
                      rlaif_judge_mode *mode, rlaif_builtin_opts *opts) {
    RLAIF_TRY(rlaif_judge_mode_parse(rlaif_cfg_str(cfg, "judge.mode"), mode));
    char first[4096];
    snprintf(first, sizeof first, "%s", rlaif_cfg_str(cfg, "judge.templates"));
    first[strcspn(first, ",")] = 0;
    RLAIF_TRY(!*first || !strcmp(first, "default") ? rlaif_judge_template_default(t, *mode)
                                                   : rlaif_judge_template_load(t, first));
    const char *fs = rlaif_cfg_str(cfg, "judge.few_shot");
    *fewshot = *fs ? rlaif_judge_read_file(fs, NULL) : NULL;
    if (*fs && !*fewshot) {
        rlaif_judge_template_free(t);
        return rlaif_error_sys(RLAIF_EX_NOINPUT, "fopen", fs, __FILE__, __LINE__);
    }
    *opts = (rlaif_builtin_opts){rlaif_cfg_float(cfg, "judge.flip_prob"),
                                 rlaif_cfg_float(cfg, "judge.first_bias"),
                                 (uint64_t)rlaif_cfg_int(cfg, "run.seed")};
    return 0;
}

int rlaif_judge_demos_write(const rlaif_config *cfg, const char *input, const char *output,
                            long *written) {
    RLAIF_TRY(plain_chat(cfg));
    rlaif_judge_template t;
    char *fewshot;
    rlaif_judge_mode mode;
    rlaif_builtin_opts opts;
    RLAIF_TRY(demo_setup(cfg, &t, &fewshot, &mode, &opts));
    FILE *in = fopen(input, "r"), *out = in ? fopen(output, "w") : NULL;
    int rc = !in    ? rlaif_error_sys(RLAIF_EX_NOINPUT, "fopen", input, __FILE__, __LINE__)
             : !out ? rlaif_error_sys(RLAIF_EX_IOERR, "fopen", output, __FILE__, __LINE__)
                    : 0;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    *written = 0;
    for (long line = 0; !rc && (n = getline(&buf, &cap, in)) > 0; line++)
        if (n > 1 && !(rc = demo_line(&t, fewshot, mode, &opts, buf, (size_t)n, line, input, out)))
            *written += 2;
    free(buf);
    if (in) fclose(in);
    if (out && fclose(out) && !rc)
        rc = rlaif_error_sys(RLAIF_EX_IOERR, "fclose", output, __FILE__, __LINE__);
    rlaif_judge_template_free(&t);
    free(fewshot);
    return rc;
}
