/* judge_prefs.c - judge results into preferences.h5 (prefs.h): a result as
 * a /pairs row, the judge's file metadata, and the collective store of
 * judged pairs with their texts, so `rlaif judge --prefs` and the collect
 * phase write labels the same way without knowing either side's details. */
#include "rlaif/judge/judge.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/telemetry.h"
#include "rlaif/storage/prefs.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int pair_status(int s) {
    switch (s) {
    case RLAIF_JS_OK:
        return RLAIF_PAIR_OK;
    case RLAIF_JS_AMBIGUOUS:
    case RLAIF_JS_LENGTH:
    case RLAIF_JS_BAD_REPLY:
    case RLAIF_JS_TRUNCATED: /* the answer rests on part of the prompt: unreadable */
        return RLAIF_PAIR_PARSE;
    case RLAIF_JS_FILTERED:
        return RLAIF_PAIR_REFUSED;
    case RLAIF_JS_HTTP:
        return RLAIF_PAIR_HTTP;
    case RLAIF_JS_QUOTA:
        return RLAIF_PAIR_QUOTA;
    case RLAIF_JS_EXHAUSTED:
        return RLAIF_PAIR_TRANSPORT;
    case RLAIF_JS_DISAGREE:
        return RLAIF_PAIR_INCONSISTENT;
    default:
        return RLAIF_PAIR_OTHER;
    }
}

void rlaif_judge_to_pair(const rlaif_judge_result *r, rlaif_pair *p) {
    rlaif_pair_init(p);
    p->pair_id = (int64_t)r->pair_id;
    p->label = r->label;
    p->choice = isnan(r->label) ? -1 : r->label == 0.5f ? 2 : r->choice;
    p->consistent = r->consistent;
    p->source = RLAIF_SOURCE_AI;
    p->outcome_ab = r->soft[0]; /* order 0 shows response[0] (= a) first */
    p->outcome_ba = r->soft[1];
    for (int c = 0; c < RLAIF_JUDGE_NCRIT && c < RLAIF_RUBRIC_MAX; c++) {
        p->rubric_a[c] = r->rubric[0][c];
        p->rubric_b[c] = r->rubric[1][c];
    }
    p->judge_id = r->judge_id;
    p->template_id = r->template_id;
    p->prompt_tokens = r->tokens_in;
    p->completion_tokens = r->tokens_out;
    p->status = pair_status(r->status);
}

/* [judge] keys recorded in the file: what produced the labels. */
static const char *const settings_keys[] = {
    "backend",     "mode",     "base_url",     "model",        "token_param", "max_tokens",
    "temperature", "seed",     "top_logprobs", "min_coverage", "both_orders", "disagreement",
    "templates",   "few_shot", "ensemble",     "aggregate",    "flip_prob",   "first_bias"};

/* Name of template t: the file's base name from judge.templates, or "default". */
static char *template_name(const rlaif_config *cfg, int t) {
    const char *list = rlaif_cfg_str(cfg, "judge.templates");
    for (int i = 0; list && *list; i++) {
        size_t len = strcspn(list, ",");
        if (i == t) {
            char *s = xmalloc(len + 1);
            memcpy(s, list, len), s[len] = 0;
            const char *base = strrchr(s, '/');
            char *name = xstrdup(base ? base + 1 : s);
            free(s);
            return name;
        }
        list += len + (list[len] == ',');
    }
    return xstrdup("default");
}

int rlaif_judge_meta_build(const rlaif_judge *j, const rlaif_config *cfg, rlaif_judge_meta *m) {
    memset(m, 0, sizeof *m);
    json_t *o = json_object();
    char key[64];
    for (size_t i = 0; i < sizeof settings_keys / sizeof *settings_keys; i++) {
        snprintf(key, sizeof key, "judge.%s", settings_keys[i]);
        json_object_set_new(o, settings_keys[i], json_string(rlaif_cfg_str(cfg, key)));
    }
    m->settings = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    if (!m->settings) return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "judge settings as JSON failed");
    int nep = rlaif_judge_nendpoints(j), nt = rlaif_judge_ntemplates(j);
    m->judge_names = xcalloc((size_t)nep + 1, sizeof *m->judge_names);
    for (int e = 0; e < nep; e++) m->judge_names[e] = xstrdup(rlaif_judge_stats(j, e)->name);
    m->template_names = xcalloc((size_t)nt + 1, sizeof *m->template_names);
    m->template_texts = xcalloc((size_t)nt + 1, sizeof *m->template_texts);
    for (int t = 0; t < nt; t++) {
        m->template_names[t] = template_name(cfg, t);
        m->template_texts[t] = rlaif_judge_template_text(j, t, NULL);
    }
    m->meta.judge_settings = m->settings;
    m->meta.sampling = "{}"; /* the responses were sampled elsewhere */
    m->meta.ntemplates = nt;
    m->meta.template_names = (const char *const *)m->template_names;
    m->meta.template_texts = m->template_texts;
    m->meta.njudges = nep;
    m->meta.judge_names = (const char *const *)m->judge_names;
    return 0;
}

void rlaif_judge_meta_free(rlaif_judge_meta *m) {
    for (int e = 0; m->judge_names && e < m->meta.njudges; e++) free(m->judge_names[e]);
    for (int t = 0; m->template_names && t < m->meta.ntemplates; t++) free(m->template_names[t]);
    free(m->judge_names), free(m->template_names), free(m->template_texts);
    free(m->settings);
    memset(m, 0, sizeof *m);
}

static rlaif_h5_record text_record(const char *s) {
    rlaif_h5_record r = {s ? s : "", s ? strlen(s) : 0, NULL, 0};
    return r;
}

int rlaif_judge_store(rlaif_prefs *p, rlaif_judged_pair *pairs, size_t n, size_t *added) {
    /* Pairs the file already has are dropped before their texts are written,
     * so a rerun leaves no orphan prompts or responses. */
    double t0 = rlaif_now();
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!rlaif_prefs_has_pair(p, pairs[i].row.pair_id)) pairs[m++] = pairs[i];
    rlaif_h5_record *recs = xmalloc((2 * m + 1) * sizeof *recs);
    int64_t *owner = xmalloc((2 * m + 1) * sizeof *owner);
    rlaif_pair *rows = xmalloc((m + 1) * sizeof *rows);
    const char **expl = xmalloc((m + 1) * sizeof *expl);
    int64_t first_prompt = 0, first_response = 0;
    for (size_t i = 0; i < m; i++) recs[i] = text_record(pairs[i].prompt);
    int rc = rlaif_prefs_add_prompts(p, recs, m, &first_prompt);
    for (size_t i = 0; !rc && i < m; i++)
        for (int s = 0; s < 2; s++) {
            recs[2 * i + (size_t)s] = text_record(pairs[i].response[s]);
            owner[2 * i + (size_t)s] = first_prompt + (int64_t)i;
        }
    if (!rc) rc = rlaif_prefs_add_responses(p, recs, owner, 2 * m, &first_response);
    for (size_t i = 0; !rc && i < m; i++) {
        rows[i] = pairs[i].row;
        rows[i].prompt_id = first_prompt + (int64_t)i;
        rows[i].response_a = first_response + 2 * (int64_t)i;
        rows[i].response_b = rows[i].response_a + 1;
        expl[i] = pairs[i].explanation ? pairs[i].explanation : "";
    }
    if (!rc) rc = rlaif_prefs_add_pairs(p, rows, expl, m, added);
    free(recs), free(owner), free(rows), free(expl);
    rlaif_tm_since(RLAIF_TM_IO, t0); /* the phase summary's I/O time */
    return rc;
}
