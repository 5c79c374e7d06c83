/* judge_prefs.c - a judge result as a preferences.h5 /pairs row (prefs.h),
 * so the collect phase stores what the judge returns without knowing either
 * side's details. The pipeline fills prompt_id and the response rows. */
#include "rlaif/judge.h"
#include "rlaif/prefs.h"

#include <math.h>

static int pair_status(int s) {
    switch (s) {
    case RLAIF_JS_OK:
        return RLAIF_PAIR_OK;
    case RLAIF_JS_AMBIGUOUS:
    case RLAIF_JS_LENGTH:
    case RLAIF_JS_BAD_REPLY:
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
