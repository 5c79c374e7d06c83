/* judge.h - the feedback LLM: prompts, backends, a journaled curl-multi client,
 * label aggregation and bias statistics (src/judge/README.md).
 *
 * The pipeline sees one object, rlaif_judge, with a pull interface:
 *
 *     rlaif_judge *j;  rlaif_judge_open(&j, cfg, judge_rank, n_judge_ranks, NULL);
 *     while (work) {
 *         while (rlaif_judge_credit(j) > 0 && have_pair) rlaif_judge_submit(j, &pair);
 *         rlaif_judge_poll(j, 0.05, results, cap, &n);   // completed pairs, any order
 *         ... store results (rlaif_judge_to_pair), rlaif_judge_result_free each ...
 *     }
 *     rlaif_judge_close(j);
 *
 * Builtin calls are answered inside poll; HTTP calls run concurrently (as
 * many as the endpoint sustains, judge.max_inflight at most: judge_adapt.c)
 * while poll sleeps in curl_multi_poll; a pair submitted
 * twice, or a call another pending call already makes, is paid for once.
 *
 * A pair is judged by every (template, endpoint) "unit", each in one or both
 * orders; every call goes through the journal, so a restarted job pays for no
 * answered call twice. A pair always comes back: labelled, or with a status and
 * a reason (never a silent default label).
 *
 * Labels are P(response[0] is better), in [0, 1]; NaN when there is none.
 * The API key is read from the environment variable judge.api_key_env and kept
 * only in memory: never in argv, logs, journals, results or error messages. */
#ifndef RLAIF_JUDGE_H
#define RLAIF_JUDGE_H

#include "rlaif/engine/generate.h"

#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "rlaif/core/job.h"
#include "rlaif/core/config.h"
#include "rlaif/storage/prefs.h"
#include "rlaif/core/rng.h"
#include "rlaif/tokenizer/chat.h"

/* ---------------------------------------------------------------- results */

typedef enum {
    RLAIF_JS_OK = 0,        /* labelled */
    RLAIF_JS_AMBIGUOUS = 1, /* the judge answered without a decision line */
    RLAIF_JS_LENGTH = 2,    /* finish_reason "length": cut before the decision */
    RLAIF_JS_FILTERED = 3,  /* finish_reason "content_filter" or a refusal */
    RLAIF_JS_HTTP = 4,      /* a non-retryable HTTP error (4xx validation, auth) */
    RLAIF_JS_QUOTA = 5,     /* insufficient_quota: retrying cannot help */
    RLAIF_JS_EXHAUSTED = 6, /* every attempt failed with a retryable error */
    RLAIF_JS_BAD_REPLY = 7, /* the answer could not be read (e.g. low logprob coverage) */
    RLAIF_JS_DISAGREE = 8,  /* the two orders disagreed and judge.disagreement = drop */
    RLAIF_JS_TRUNCATED = 9, /* the server read far fewer prompt tokens than were sent: it
                               cut the prompt (journaled: a rerun does not pay again) */
} rlaif_judge_status;
const char *rlaif_judge_status_name(int status);

#define RLAIF_JUDGE_NCRIT 4 /* rubric criteria: accuracy, clarity, helpfulness, safety */
/* The decision line the templates ask for, before the letter A or B: the
 * builtin judge writes it, and a local judge in logprob mode is given it
 * so its next token is the label. */
#define RLAIF_JUDGE_DECISION "The better response is:"
extern const char *const rlaif_judge_criteria[RLAIF_JUDGE_NCRIT];

/* A pair to judge. The strings are copied by submit. */
typedef struct {
    uint64_t pair_id;   /* unique in the job; keys the order and boundary RNG */
    const char *prompt; /* the user's input */
    const char *response[2];
} rlaif_judge_pair;

typedef struct {
    uint64_t pair_id;
    float label;       /* P(response[0] better), NaN when unlabelled */
    int8_t choice;     /* 0 or 1 = the preferred response, -1 none (tie/NaN) */
    int8_t outcome[2]; /* primary unit, order 0 = (r0 as A), 1 = (r1 as A): preferred
                          response index, -1 no verdict, -2 not asked */
    float soft[2];     /* primary unit: P(r0 better) per order, NaN if none */
    int8_t consistent; /* 1 all two-order units agreed, 0 some disagreed, -1 one order */
    float rubric[2][RLAIF_JUDGE_NCRIT]; /* rubric mode: mean 1-5 per response; NaN */
    float score[2];                     /* score mode: pointwise 1-10 per response; NaN */
    int16_t judge_id;                   /* endpoint index of the primary unit (0 = [judge]) */
    int16_t template_id;                /* template index of the primary unit */
    int32_t ncalls;                     /* calls this pair needed (journal hits included) */
    int32_t nreplayed;                  /* of which answered from the journal */
    int64_t tokens_in, tokens_out;
    int32_t status;      /* rlaif_judge_status */
    int32_t http_status; /* last HTTP status seen (0 = none / builtin) */
    char reason[160];    /* why there is no label ("" when labelled) */
    char *explanation;   /* judge text of the primary unit, first order; malloc'd */
} rlaif_judge_result;

void rlaif_judge_result_free(rlaif_judge_result *r); /* frees explanation */

/* Per-endpoint counters (bias statistics are over two-order units). */
typedef struct {
    char name[96]; /* "openai:gpt-4o@https://..." (never a key) */
    long calls, http_requests, retries, replayed, failed;
    long pairs_two_orders, pairs_consistent;
    long verdicts, first_wins; /* verdicts that chose the first position */
    double len_n, len_sx, len_sy, len_sxx, len_syy, len_sxy; /* x = len0-len1, y = label */
    long long tokens_in, tokens_out;
    double cost_usd;
    rlaif_gen_timing model; /* a local judge model's engine time (zeros otherwise) */
} rlaif_judge_endpoint_stats;

double rlaif_judge_consistency(const rlaif_judge_endpoint_stats *s); /* NaN if none */
double rlaif_judge_first_win_rate(const rlaif_judge_endpoint_stats *s);
double rlaif_judge_length_corr(const rlaif_judge_endpoint_stats *s); /* Pearson */

/* ---------------------------------------------------------------- the judge */

typedef struct rlaif_judge rlaif_judge;

/* Build a judge from [judge] (and judge.ensemble endpoints, judge.templates).
 * judge_rank/n_judge are this rank's index among the judge ranks (journal
 * name, share of the rate limits). journal_dir NULL = judge.journal_dir or
 * run.out_dir/journal. Returns 0 or an error status. */
int rlaif_judge_open(rlaif_judge **out, const rlaif_config *cfg, int judge_rank, int n_judge,
                     const char *journal_dir);
void rlaif_judge_close(rlaif_judge *j);

/* The checkpoints of the job's local judges (judge.backend = local and
 * local:PATH entries of judge.ensemble), at most max, in endpoint order:
 * what the product-path chooser times besides the job's own model. */
int rlaif_judge_local_models(const rlaif_config *cfg, char (*paths)[4096], int max);

/* How many more pairs submit accepts now (pull credit: 4 x max_inflight minus
 * pairs in progress). */
int rlaif_judge_credit(const rlaif_judge *j);
/* Queue a pair (copies it). Returns 0, or RLAIF_EX_SOFTWARE when out of credit. */
int rlaif_judge_submit(rlaif_judge *j, const rlaif_judge_pair *p);
/* Drive requests for at most `wait` seconds (returns early when pairs are
 * done) and hand back up to cap finished pairs. Results count only after
 * their journal records are on disk. *n = how many were written. */
int rlaif_judge_poll(rlaif_judge *j, double wait, rlaif_judge_result *out, int cap, int *n);
/* Pairs submitted and not yet returned. */
int rlaif_judge_pending(const rlaif_judge *j);
/* Requests this rank now keeps in flight (adapted; at most judge.max_inflight). */
int rlaif_judge_concurrency(const rlaif_judge *j);

int rlaif_judge_nendpoints(const rlaif_judge *j);
const rlaif_judge_endpoint_stats *rlaif_judge_stats(const rlaif_judge *j, int endpoint);
/* One line per endpoint: consistency, first-position wins, length correlation,
 * usage and cost, retries. */
void rlaif_judge_report(const rlaif_judge *j, char *buf, size_t n);
/* The same lines for a stats array (e.g. summed over judge ranks). */
void rlaif_judge_report_stats(const rlaif_judge_endpoint_stats *stats, int nep, char *buf,
                              size_t n);
/* Template texts and their hashes, for HDF5 attributes. */
int rlaif_judge_ntemplates(const rlaif_judge *j);
const char *rlaif_judge_template_text(const rlaif_judge *j, int t, uint64_t *hash);

/* The result as a preferences.h5 /pairs row (judge_prefs.c; prefs.h). The
 * caller sets prompt_id, response_a and response_b. */
void rlaif_judge_to_pair(const rlaif_judge_result *r, rlaif_pair *p);

/* The preferences.h5 metadata of a judge: endpoint names (never a key),
 * template names and texts, the [judge] settings as JSON (key values are
 * never in the config: only the names of the variables that hold them). */
typedef struct {
    rlaif_prefs_meta meta;
    char *settings;
    char **judge_names, **template_names;
    const char **template_texts;
} rlaif_judge_meta;
int rlaif_judge_meta_build(const rlaif_judge *j, const rlaif_config *cfg, rlaif_judge_meta *m);
void rlaif_judge_meta_free(rlaif_judge_meta *m);

/* A judged pair on its way to preferences.h5: its texts and its /pairs row
 * (from rlaif_judge_to_pair; the store fills the prompt and response ids). */
typedef struct {
    const char *prompt, *response[2], *explanation;
    rlaif_pair row;
} rlaif_judged_pair;
/* Collective over the file's communicator (every rank calls, possibly with
 * n = 0): append each rank's pairs with their prompt, two responses and
 * explanation. A pair whose id the file already holds is skipped whole (a
 * rerun adds nothing twice). *added (may be NULL) = pairs added by all ranks. */
int rlaif_judge_store(rlaif_prefs *p, rlaif_judged_pair *pairs, size_t n, size_t *added);

/* `rlaif judge`: label a JSONL file of pairs (src/app/judge_cmd.c). */
int rlaif_cmd_judge(rlaif_ctx *ctx);

/* ================================================================ internals
 * Shared by the judge's files, tools/dev/mock_judge.c and the unit tests. */

typedef enum {
    RLAIF_JM_VERDICT,
    RLAIF_JM_LOGPROB,
    RLAIF_JM_RUBRIC,
    RLAIF_JM_SCORE
} rlaif_judge_mode;
int rlaif_judge_mode_parse(const char *s, rlaif_judge_mode *m);

/* 64-bit FNV-1a with a seed; the 128-bit journal key is two of them. */
uint64_t rlaif_hash64(const void *data, size_t n, uint64_t seed);

/* A template: system message and user message with {input}, {response_a},
 * {response_b} (score mode: {input}, {response}). File format: an optional
 * "[system]" line then the system text, then a "[user]" line and the user
 * text; a file without markers is the user text. */
typedef struct {
    char *system, *user;
    uint64_t hash;
    char *source; /* file name or "builtin:<mode>" */
} rlaif_judge_template;

/* A whole file as a NUL-terminated malloc'd string; NULL (errno set) on failure. */
char *rlaif_judge_read_file(const char *path, size_t *len);

int rlaif_judge_template_default(rlaif_judge_template *t, rlaif_judge_mode mode);
int rlaif_judge_template_load(rlaif_judge_template *t, const char *path);
void rlaif_judge_template_free(rlaif_judge_template *t);

/* Rendered chat messages (system, few-shot user/assistant turns, user). */
typedef struct {
    int n;
    const char *role[16];
    char *content[16];
} rlaif_judge_messages;
void rlaif_judge_messages_free(rlaif_judge_messages *m);
/* The rendered call as token ids through a chat template, opening the
 * judge's reply: what a local judge model (one on the judge ranks) reads.
 * API judges get the messages and apply their own template. */
int rlaif_judge_messages_encode(const rlaif_judge_messages *m, const rlaif_chat *chat,
                                rlaif_tokenizer *tok, rlaif_tokens *out);

/* The fence boundary: 16 [0-9a-z] characters drawn from rng. Fenced text is
 *     <<<BOUNDARY
 *     text
 *     BOUNDARY>>>
 * and any occurrence of BOUNDARY inside text is escaped by a backslash after
 * its first character, so a candidate can never close or forge a fence. */
void rlaif_judge_boundary(rlaif_rng *rng, char out[17]);
char *rlaif_judge_fence(const char *text, const char *boundary);

/* Render one call. a/b are the texts in the positions A and B (already put
 * in the order of the call); b is NULL in score mode. fewshot is the few-shot
 * file text or NULL. rng draws boundaries. */
int rlaif_judge_render(const rlaif_judge_template *t, const char *fewshot, const char *input,
                       const char *a, const char *b, rlaif_rng *rng, rlaif_judge_messages *out);

/* Recover the fenced blocks from a rendered user message: the first fence
 * line fixes the boundary; blocks are returned unescaped, malloc'd. Returns
 * the number of blocks found (up to max). */
int rlaif_judge_unfence(const char *user, char **blocks, int max);

/* Parsed judge text. */
typedef struct {
    int verdict;                        /* 0 = A, 1 = B, -1 none/ambiguous */
    float rubric[2][RLAIF_JUDGE_NCRIT]; /* NaN when missing */
    float score;                        /* NaN when missing */
} rlaif_judge_parsed;
/* The LAST line holding "the better response is" with exactly one of A/B
 * after it decides (case-insensitive); earlier lines (quoted candidates)
 * never count. */
int rlaif_judge_parse_verdict(const char *text);
void rlaif_judge_parse(const char *text, rlaif_judge_mode mode, rlaif_judge_parsed *p);

/* Logprob soft label: top (token, logprob) pairs of the first output token;
 * variants (" A", "a", "A.", "(A") merge. *coverage = P(A) + P(B). Returns
 * P(A | A or B), NaN when neither appears. */
double rlaif_judge_logprob_label(int n, const char *const *tokens, const double *logprobs,
                                 double *coverage);

/* The builtin judge of the arithmetic demo task: reads the rendered user
 * message like an LLM would and answers in the same text format. Noise is a
 * pure function of (seed, the message): flip_prob flips the verdict,
 * first_bias picks A regardless. *p_a = its confidence that A is better
 * (for logprob answers). Returns malloc'd text. */
typedef struct {
    double flip_prob, first_bias;
    uint64_t seed;
} rlaif_builtin_opts;
char *rlaif_judge_builtin_answer(const char *user, rlaif_judge_mode mode,
                                 const rlaif_builtin_opts *o, double *p_a);
/* What the builtin judge sees in one response to an arithmetic question: the
 * judge's preferences (quality) and the oracle of evaluations (the demo
 * task's accuracy and flaw rates) both come from here. correct = its last
 * integer is the answer; rude = a hostile phrase; rambling = filler phrases
 * ("let me think", "i hope this helps", ...) or more than 16 words;
 * off_topic = an unrelated subject ("by the way", "pizza", ...). The word
 * lists are in judge_builtin.c. */
typedef struct {
    int has_q;   /* the question parsed: answer is known */
    int has_num; /* the response holds an integer: given */
    int correct, rude, rambling, off_topic;
    long answer, given;
    size_t len; /* bytes */
} rlaif_flaws;
void rlaif_builtin_flaws(const char *question, const char *response, rlaif_flaws *f);
/* Quality of one response (higher is better): 4 correct + 2 not rude + 1 not
 * rambling + 1 not off-topic + 1 has a number + conciseness (1 - len/200,
 * at least 0); and whether it is correct. */
double rlaif_builtin_quality(const char *question, const char *response, int *correct);

/* ------------------------------------------------------------- HTTP APIs */

typedef enum {
    RLAIF_JB_BUILTIN,
    RLAIF_JB_OPENAI,
    RLAIF_JB_ANTHROPIC,
    RLAIF_JB_LOCAL /* a checkpoint run by the engine on the judge rank (judge_local.c) */
} rlaif_judge_backend;

typedef struct {
    rlaif_judge_backend backend;
    char *base_url, *model;
    int max_completion_tokens; /* token_param = max_completion_tokens */
    int max_tokens, top_logprobs;
    double temperature;
    long long seed;
    char *anthropic_version;
} rlaif_judge_endpoint;

/* The JSON request body (malloc'd, compact, keys sorted so the journal key is
 * stable). */
char *rlaif_judge_request_body(const rlaif_judge_endpoint *e, rlaif_judge_mode mode,
                               const rlaif_judge_messages *m);

/* What an HTTP answer says. */
typedef struct {
    int ok;               /* a completion was read */
    char *text;           /* content (malloc'd) */
    char finish[24];      /* finish_reason / stop_reason */
    double p_a, coverage; /* logprob mode: P(A), coverage; NaN when absent */
    long tokens_in, tokens_out;
    char fingerprint[64];
    char err_type[48], err_code[48]; /* error shapes; code may come as an integer */
    char err_msg[160];
} rlaif_judge_reply;
void rlaif_judge_reply_free(rlaif_judge_reply *r);
/* Parse a 2xx body or an error body of either shape ({"error":{...}} or
 * vLLM's flat {"object":"error",...}). Returns 0 when the body is JSON of a
 * known shape, -1 when it is not (malformed or truncated). */
int rlaif_judge_parse_reply(rlaif_judge_backend b, rlaif_judge_mode mode, const char *body,
                            size_t len, rlaif_judge_reply *r);

/* ------------------------------------------------------- retries, limits */

/* min(base * 2^n, cap) * (1 - 0.25 u), u in [0, 1). n = retries so far. */
double rlaif_backoff_delay(double base, double cap, int n, double u);
/* Retry-After header value: delta seconds or an HTTP date. Returns seconds
 * from `now_epoch` (>= 0), or -1 when unreadable. */
double rlaif_parse_retry_after(const char *value, double now_epoch);
/* x-ratelimit-reset-* durations like "1s", "6m0s", "250ms", "1h2m3.5s". -1 if bad. */
double rlaif_parse_reset_duration(const char *value);
/* Retry decision for an HTTP status and parsed error code, with x-should-retry
 * (-1 absent, 0 false, 1 true). */
int rlaif_should_retry(long http_status, const char *err_code, const char *err_type,
                       int x_should_retry);

/* Token bucket: `rate` units per second, holding at most `burst`. A take that
 * finds the bucket full always succeeds (so one call bigger than burst still
 * passes), possibly leaving it negative. */
typedef struct {
    double rate, burst, level, last;
    double blocked_until; /* from x-ratelimit-remaining = 0 */
} rlaif_bucket;
void rlaif_bucket_init(rlaif_bucket *b, double per_minute, double now);
/* 1 and takes `amount` when allowed now; else 0 and *wait = seconds to wait. */
int rlaif_bucket_take(rlaif_bucket *b, double amount, double now, double *wait);
void rlaif_bucket_refund(rlaif_bucket *b, double amount);
/* Headers said `remaining` units are left until `reset` seconds from now. */
void rlaif_bucket_feed(rlaif_bucket *b, double remaining, double reset, int n_ranks, double now);

/* Requests in flight, adapted to what the endpoint sustains (judge_adapt.c):
 * from 4, doubling then +1 per round trip while latency holds, cut on queueing
 * (latency far above the typical, or a request unanswered that long), and
 * on 429, 5xx and transport errors when they are half of the last answers; max is the ceiling
 * (judge.max_inflight). adaptive 0 = always max. Times in seconds (rlaif_now). */
#define RLAIF_ADAPT_HIST 16
typedef struct {
    unsigned hist; /* the last answers: bit set = an error */
    int nhist;
    double limit, base, typical, ceiling, last_cut, last_grow, probe_at, probe_every, stuck_seen;
    double hang_until; /* a request timed out: until then one in flight may hang too */
    int max, fixed, slow_start;
    long cuts;
} rlaif_adapt;
void rlaif_adapt_init(rlaif_adapt *a, int max_inflight, int adaptive, double now);
int rlaif_adapt_limit(const rlaif_adapt *a);
enum { RLAIF_ADAPT_OK, RLAIF_ADAPT_ERROR, RLAIF_ADAPT_TIMEOUT };
/* A request ended after latency s (failed: RLAIF_ADAPT_ERROR for 429, 5xx or
 * a transport error, RLAIF_ADAPT_TIMEOUT when it timed out: no load signal);
 * inflight = requests in flight when it ended (itself included), oldest_start
 * = when the oldest other one still in flight started (now if none). */
void rlaif_adapt_done(rlaif_adapt *a, double latency, int failed, int inflight, double oldest_start,
                      double now);
/* The oldest request in flight started at oldest_start and is unanswered. */
void rlaif_adapt_waiting(rlaif_adapt *a, double oldest_start, double now);
/* A request unanswered for this long waits in a queue (INFINITY when fixed
 * or before the first answer). */
double rlaif_adapt_stuck_after(const rlaif_adapt *a);

/* HTTP transfers over one curl multi handle (judge_client.c). */
typedef struct rlaif_http rlaif_http;
typedef struct {
    void *user;
    int curl_code;   /* CURLcode: 0 when an HTTP answer arrived */
    char error[128]; /* curl's message when curl_code != 0 */
    long http_status;
    char location[128]; /* a 3xx's Location, resolved (never followed); "" if none */
    char *body;         /* the reply body, malloc'd: the caller frees it */
    size_t len;
    double retry_after;  /* seconds from retry-after-ms / retry-after, -1 absent */
    int should_retry;    /* x-should-retry: -1 absent, 0, 1 */
    double ratelimit[4]; /* remaining/reset requests, remaining/reset tokens; -1 absent */
    double started;      /* rlaif_now() when the transfer started */
} rlaif_http_done;
int rlaif_http_open(rlaif_http **h, int max_inflight, double connect_timeout, double timeout);
/* drop (may be NULL) is called with the user pointer of each unfinished transfer. */
void rlaif_http_close(rlaif_http *h, void (*drop)(void *user));
int rlaif_http_free_slots(const rlaif_http *h);
int rlaif_http_inflight(const rlaif_http *h);
/* When the oldest transfer in flight started (rlaif_now), or now if none. */
double rlaif_http_oldest(const rlaif_http *h, double now);
/* Keep at most n connections open (surplus idle ones are closed): a server
 * with few workers serves only the connections it has taken. */
void rlaif_http_set_connections(rlaif_http *h, int n);
/* headers is a struct curl_slist * kept alive by the caller, as are url and body. */
int rlaif_http_start(rlaif_http *h, const char *url, const struct curl_slist *headers,
                     const char *body, size_t len, void *user);
/* A 2xx body whose last byte (by its Content-Length) has just been read:
 * called from inside libcurl, before it reads any other socket, so that the
 * answer can be journaled at once. A kill then loses at most this answer,
 * where curl_multi_perform goes on to read every other ready transfer (all of
 * them lost, and paid again, if the kill comes before rlaif_http_next hands
 * them out). The transfer still finishes through rlaif_http_next. It must not
 * call curl. */
typedef void (*rlaif_http_complete_fn)(void *ctx, void *user, const char *body, size_t len,
                                       long http_status);
void rlaif_http_on_complete(rlaif_http *h, rlaif_http_complete_fn fn, void *ctx);
/* Run transfers, sleeping in curl_multi_poll for at most timeout seconds. */
int rlaif_http_wait(rlaif_http *h, double timeout);
/* 1 and *d when a transfer finished; 0 when none is pending. */
int rlaif_http_next(rlaif_http *h, rlaif_http_done *d);

/* --------------------------------------------------------------- journal */

typedef struct rlaif_journal rlaif_journal;
typedef struct {
    int status; /* rlaif_judge_status of the call */
    int http_status;
    char *text;   /* judge text (or the reason of a failure) */
    double label; /* parsed: P(position A better) (score mode: the score); NaN */
    double p_a, coverage;
    long tokens_in, tokens_out;
} rlaif_journal_entry;

/* Open dir/judge-rank-NNNNN.jnl for appending and replay every judge-*.jnl in
 * dir. Each record carries its own check: a damaged record is skipped (and
 * asked again), the records after it are kept, and a warning says how many
 * were damaged and where. Torn last lines from a kill are ignored; our own
 * file is cut back to the end of its last whole line. */
int rlaif_journal_open(rlaif_journal **out, const char *dir, int rank);
void rlaif_journal_close(rlaif_journal *jl);
/* 1 and fills *e when key was answered (read back from disk; e->text stays
 * valid until the next lookup). */
int rlaif_journal_lookup(rlaif_journal *jl, const char key[33], rlaif_journal_entry *e);
/* Append one record (raw body kept too) and remember it. Written at once
 * (a killed process loses nothing); fsync happens in rlaif_journal_sync. */
int rlaif_journal_append(rlaif_journal *jl, const char key[33], const rlaif_journal_entry *e,
                         const char *raw, size_t raw_len);
int rlaif_journal_sync(rlaif_journal *jl);
long rlaif_journal_count(const rlaif_journal *jl);

#endif
