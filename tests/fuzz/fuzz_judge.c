/* fuzz_judge.c - libFuzzer target for what a judge endpoint sends back: the
 * HTTP body (OpenAI chat completions, vLLM and Anthropic message shapes,
 * error bodies), the verdict / rubric / score text inside it, and the
 * Retry-After and x-ratelimit-reset header values. The first byte picks
 * backend and mode. Invariants: a parse never crashes, a verdict is -1, 0
 * or 1, probabilities lie in [0, 1], rubric scores in [1, 5], scores in
 * [1, 10], header delays are -1 (unreadable) or >= 0. Bit 4 instead splits
 * the input into (input, response A, response B) and checks that rendering
 * them into a judge prompt and unfencing gives them back exactly (a
 * candidate can never forge or close a fence).
 *   make fuzz FUZZ_TARGETS=judge FUZZ_SECONDS=60 */
#include "fuzz.h"
#include "rlaif/core/rng.h"
#include "rlaif/judge/judge.h"

#include <math.h>

static void check_parsed(const rlaif_judge_parsed *p) {
    if (p->verdict < -1 || p->verdict > 1) abort();
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < RLAIF_JUDGE_NCRIT; c++)
            if (!isnan(p->rubric[r][c]) && (p->rubric[r][c] < 1 || p->rubric[r][c] > 5)) abort();
    if (!isnan(p->score) && (p->score < 1 || p->score > 10)) abort();
}

static void reply(rlaif_judge_backend b, rlaif_judge_mode mode, const char *body, size_t n) {
    rlaif_judge_reply r;
    int rc = rlaif_judge_parse_reply(b, mode, body, n, &r);
    if (rc == 0 && r.ok) {
        if (!r.text) abort();
        rlaif_judge_parsed p;
        rlaif_judge_parse(r.text, mode, &p);
        check_parsed(&p);
    }
    if (!isnan(r.p_a) && (r.p_a < 0 || r.p_a > 1)) abort();
    if (!isnan(r.coverage) && !(r.coverage >= 0)) abort();
    /* the fixed-size fields are terminated */
    if (!memchr(r.finish, 0, sizeof r.finish) || !memchr(r.err_type, 0, sizeof r.err_type) ||
        !memchr(r.err_code, 0, sizeof r.err_code) || !memchr(r.err_msg, 0, sizeof r.err_msg) ||
        !memchr(r.fingerprint, 0, sizeof r.fingerprint))
        abort();
    rlaif_judge_reply_free(&r);
}

static void text(rlaif_judge_mode mode, const char *s) {
    rlaif_judge_parsed p;
    rlaif_judge_parse(s, mode, &p);
    check_parsed(&p);
    double ra = rlaif_parse_retry_after(s, 1.7e9);
    double rd = rlaif_parse_reset_duration(s);
    /* a Retry-After beyond the job's limit is capped by the caller; a reset
     * duration is added to the clock, so it must be finite */
    if (!(ra == -1 || ra >= 0) || !(rd == -1 || (rd >= 0 && isfinite(rd)))) abort();
}

/* input \n====\n a \n====\n b: render with the pair template and unfence. */
static void fences(const unsigned char *data, size_t size, uint64_t seed) {
    size_t n0, n1, n2;
    const unsigned char *p1, *p2;
    fuzz_split(data, size, &n0, &p1, &n1);
    fuzz_split(p1, n1, &n1, &p2, &n2);
    char *in = fuzz_cstr(data, n0), *a = fuzz_cstr(p1, n1), *b = fuzz_cstr(p2, n2);
    rlaif_judge_template t;
    if (rlaif_judge_template_default(&t, RLAIF_JM_VERDICT)) abort();
    rlaif_rng rng;
    rlaif_rng_init(&rng, seed, 0, 0, 0);
    rlaif_judge_messages m;
    if (rlaif_judge_render(&t, NULL, in, a, b, &rng, &m)) abort();
    char *blocks[4] = {0};
    int nb = rlaif_judge_unfence(m.content[m.n - 1], blocks, 4);
    const char *want[3] = {in, a, b};
    if (nb != 3) {
        fprintf(stderr, "unfence found %d blocks, not 3, in:\n%s\n", nb, m.content[m.n - 1]);
        abort();
    }
    for (int i = 0; i < 3; i++)
        if (strcmp(blocks[i], want[i])) {
            fprintf(stderr, "block %d came back as\n[%s]\nnot\n[%s]\n", i, blocks[i], want[i]);
            abort();
        }
    for (int i = 0; i < nb; i++) free(blocks[i]);
    rlaif_judge_messages_free(&m);
    rlaif_judge_template_free(&t);
    free(in), free(a), free(b);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static const rlaif_judge_mode modes[4] = {RLAIF_JM_VERDICT, RLAIF_JM_LOGPROB, RLAIF_JM_RUBRIC,
                                              RLAIF_JM_SCORE};
    if (size == 0) return 0;
    int sel = data[0];
    data++, size--;
    if (sel & 16) {
        /* only text without NULs can be a candidate (C strings end there) */
        if (memchr(data, 0, size)) return 0;
        fences(data, size, (uint64_t)sel);
        return 0;
    }
    rlaif_judge_mode mode = modes[sel & 3];
    rlaif_judge_backend b = sel & 4 ? RLAIF_JB_ANTHROPIC : RLAIF_JB_OPENAI;
    char *s = fuzz_cstr(data, size);
    if (sel & 8)
        text(mode, s);
    else
        reply(b, mode, s, size);
    free(s);
    rlaif_error_clear();
    return 0;
}
