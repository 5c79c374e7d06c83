/* judge_builtin.c - the judge of the arithmetic demo task.
 *
 * It reads the rendered prompt a real LLM would get (question and candidates
 * recovered from their fences), checks the arithmetic, and answers in the
 * same text format: an analysis that quotes each response (as LLM judges
 * do, which is what makes prompt injection a real risk for the parser), then
 * "The better response is: X". flip_prob and first_bias make it err like a
 * real judge; both 0 make it the oracle evaluations compare against. */
#include "rlaif/judge/judge.h"
#include "rlaif/core/error.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What the judge recognises, word lists as a keyword judge would have: hostile
 * phrases; filler that pads an answer (rambling is also any answer longer than
 * RAMBLE_WORDS words); and subjects no arithmetic question is about. The
 * demo's flawed demonstrations (src/phases/task.c) are written with them. */
static const char *const rude[] = {"stupid",  "idiot", "shut up", "hate you",        "dumb",
                                   "go away", "moron", "loser",   "useless question"};
static const char *const filler[] = {
    "let me think",     "i hope this helps",    "to be honest", "as you can see", "basically",
    "long story short", "if i am not mistaken", "step by step", "carefully"};
static const char *const offtopic[] = {"by the way", "pizza",   "weather", "my cat", "football",
                                       "movie",      "holiday", "garden",  "my dog"};
enum { RAMBLE_WORDS = 16 };

/* First arithmetic question "A <op> B" in text: 1 and *answer when found. */
static int parse_question(const char *q, long *answer) {
    static const struct {
        const char *word;
        int op;
    } ops[] = {{"plus", '+'},  {"+", '+'}, {"minus", '-'},         {"-", '-'},
               {"times", '*'}, {"*", '*'}, {"multiplied by", '*'}, {"x", '*'}};
    const char *p = q;
    while (*p && !isdigit((unsigned char)*p)) p++;
    if (!*p) return 0;
    char *end;
    long a = strtol(p, &end, 10);
    const char *between = end;
    while (*end && !isdigit((unsigned char)*end)) end++;
    if (!*end) return 0;
    long b = strtol(end, NULL, 10);
    size_t gap = (size_t)(end - between);
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        const char *w = strstr(between, ops[i].word);
        if (!w || (size_t)(w - between) >= gap) continue;
        *answer = ops[i].op == '+' ? a + b : ops[i].op == '-' ? a - b : a * b;
        return 1;
    }
    return 0;
}

/* Last integer in text (with a sign); 1 when there is one. */
static int last_number(const char *t, long *v) {
    int found = 0;
    for (const char *p = t; *p; p++) {
        if (!isdigit((unsigned char)*p) || (p > t && isdigit((unsigned char)p[-1]))) continue;
        int neg = p > t && p[-1] == '-' && (p - 1 == t || !isalnum((unsigned char)p[-2]));
        *v = strtol(p, NULL, 10) * (neg ? -1 : 1);
        found = 1;
    }
    return found;
}

static int mentions(const char *r, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strcasestr(r, list[i])) return 1;
    return 0;
}

static size_t words(const char *r) {
    size_t n = 0;
    for (const char *p = r; *p; p++)
        n += !isspace((unsigned char)*p) && (p == r || isspace((unsigned char)p[-1]));
    return n;
}

void rlaif_builtin_flaws(const char *question, const char *r, rlaif_flaws *f) {
    memset(f, 0, sizeof *f);
    f->has_q = parse_question(question, &f->answer);
    f->has_num = last_number(r, &f->given);
    f->correct = f->has_q && f->has_num && f->given == f->answer;
    f->rude = mentions(r, rude, sizeof rude / sizeof *rude);
    f->rambling = mentions(r, filler, sizeof filler / sizeof *filler) || words(r) > RAMBLE_WORDS;
    f->off_topic = mentions(r, offtopic, sizeof offtopic / sizeof *offtopic);
    f->len = strlen(r);
}

/* Higher is better. Accuracy outweighs everything, then safety, then
 * focus (no rambling, no off-topic text), giving a number at all, and
 * conciseness last (in [0, 1]). Maximum QUALITY_MAX (an empty answer, right). */
#define QUALITY_MAX 10.0
static double quality(const rlaif_flaws *a) {
    double concise = 1.0 - (double)(a->len < 200 ? a->len : 200) / 200.0;
    return 4.0 * a->correct + 2.0 * !a->rude + 1.0 * !a->rambling + 1.0 * !a->off_topic +
           1.0 * a->has_num + concise;
}

double rlaif_builtin_quality(const char *question, const char *response, int *correct) {
    rlaif_flaws a;
    rlaif_builtin_flaws(question, response, &a);
    if (correct) *correct = a.correct;
    return quality(&a);
}

/* 1-5 per criterion (accuracy, clarity, helpfulness, safety): rambling
 * costs clarity, off-topic text helpfulness. */
static void rubric(const rlaif_flaws *a, int out[RLAIF_JUDGE_NCRIT]) {
    out[0] = a->correct ? 5 : a->has_num ? 2 : 1;
    out[1] = a->len <= 40 ? 5 : a->len <= 80 ? 4 : a->len <= 160 ? 3 : 2;
    if (a->rambling && out[1] > 2) out[1] -= 2;
    out[2] = (a->has_num ? 4 + a->correct : 1) - (a->off_topic && a->has_num ? 2 : 0);
    out[3] = a->rude ? 1 : 5;
}

/* Growable output text. */
typedef struct {
    char *p;
    size_t n, cap;
} obuf;
__attribute__((format(printf, 2, 3))) static void out(obuf *o, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
        va_end(ap);
        if (k >= 0 && o->n + (size_t)k < o->cap) {
            o->n += (size_t)k;
            return;
        }
        o->cap = 2 * o->cap + (size_t)(k > 0 ? k : 0) + 256;
        o->p = xrealloc(o->p, o->cap);
    }
}

static void describe(obuf *o, const char *name, const char *r, const rlaif_flaws *a) {
    /* quote the response on one line, the way LLM judges restate candidates */
    out(o, "Response %s says: \"", name);
    size_t i = 0;
    for (; r[i] && i < 160; i++) out(o, "%c", r[i] == '\n' ? ' ' : r[i]);
    out(o, "%s\"\n", r[i] ? "..." : "");
    if (a->correct)
        out(o, "- Accuracy: correct (%ld).\n", a->given);
    else if (a->has_num && a->has_q)
        out(o, "- Accuracy: wrong (gives %ld, the answer is %ld).\n", a->given, a->answer);
    else
        out(o, "- Accuracy: gives no number.\n");
    out(o, "- Helpfulness: %s.\n", a->has_num ? "answers the question" : "does not answer");
    out(o, "- Conciseness: %zu characters%s.\n", a->len, a->rambling ? ", rambling" : "");
    if (a->off_topic) out(o, "- Focus: drifts off topic.\n");
    out(o, "- Safety: %s.\n", a->rude ? "contains hostile language" : "no rude or hostile phrases");
}

char *rlaif_judge_builtin_answer(const char *user, rlaif_judge_mode mode,
                                 const rlaif_builtin_opts *opt, double *p_a) {
    char *blk[3] = {0};
    int nb = rlaif_judge_unfence(user, blk, 3);
    obuf o = {xmalloc(512), 0, 512};
    o.p[0] = 0;
    *p_a = NAN;
    uint64_t h = rlaif_hash64(user, strlen(user), 0x6a756467);
    rlaif_rng rng;
    rlaif_rng_init(&rng, opt->seed, RLAIF_STREAM_JUDGE, 0x80000000u | (uint32_t)(h >> 33),
                   (uint32_t)h);
    double u_bias = rlaif_rng_uniform_double(&rng), u_flip = rlaif_rng_uniform_double(&rng);
    double u_tie = rlaif_rng_uniform_double(&rng);

    if (mode == RLAIF_JM_SCORE) {
        if (nb < 2) {
            out(&o, "I cannot find the response to rate.");
        } else {
            rlaif_flaws a;
            rlaif_builtin_flaws(blk[0], blk[1], &a);
            int s = (int)lround(1.0 + 9.0 * quality(&a) / QUALITY_MAX);
            if (u_flip < opt->flip_prob) s = 11 - s;
            describe(&o, "", blk[1], &a);
            out(&o, "Score: %d", s);
        }
    } else if (nb < 3) {
        out(&o, "I cannot find two fenced responses to compare.");
    } else {
        rlaif_flaws a, b;
        rlaif_builtin_flaws(blk[0], blk[1], &a), rlaif_builtin_flaws(blk[0], blk[2], &b);
        double qa = quality(&a), qb = quality(&b);
        int pick = qa > qb ? 0 : qb > qa ? 1 : (u_tie < 0.5 ? 0 : 1);
        const char *why = qa == qb ? "they are equally good; picking one" : "on the criteria above";
        if (u_flip < opt->flip_prob) pick = 1 - pick, why = "on balance";
        double conf = qa == qb ? 0.55 : 0.9;
        /* a position-biased pick is a less sure one (as in real judges), so
         * averaging the soft labels of two orders differs from a tie */
        if (u_bias < opt->first_bias) pick = 0, why = "it comes first and reads well", conf = 0.6;
        *p_a = pick == 0 ? conf : 1 - conf;
        if (mode == RLAIF_JM_LOGPROB) {
            out(&o, "%c", pick ? 'B' : 'A');
        } else {
            if (a.has_q) out(&o, "The question asks for %ld.\n", a.answer);
            describe(&o, "A", blk[1], &a);
            describe(&o, "B", blk[2], &b);
            if (mode == RLAIF_JM_RUBRIC) {
                int ra[RLAIF_JUDGE_NCRIT], rb[RLAIF_JUDGE_NCRIT];
                rubric(&a, ra), rubric(&b, rb);
                out(&o, "Scores A: accuracy=%d clarity=%d helpfulness=%d safety=%d\n", ra[0], ra[1],
                    ra[2], ra[3]);
                out(&o, "Scores B: accuracy=%d clarity=%d helpfulness=%d safety=%d\n", rb[0], rb[1],
                    rb[2], rb[3]);
            } else {
                out(&o, "Response %c is better: %s.\n", pick ? 'B' : 'A', why);
            }
            out(&o, RLAIF_JUDGE_DECISION " %c", pick ? 'B' : 'A');
        }
    }
    for (int i = 0; i < nb; i++) free(blk[i]);
    return o.p;
}
