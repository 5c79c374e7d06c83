/* judge.c - pairs in, labels out: the rlaif_judge object.
 *
 * A submitted pair becomes calls: one per (template, endpoint) "unit" and per
 * order asked (order 0 shows response[0] as A, order 1 shows it as B; score
 * mode asks once per response). A call is answered from the journal when its
 * key (hash of endpoint, model, rendered messages, sampling settings, order)
 * is there, else sent; answers are journaled before they count. When every
 * call of a pair is settled the pair is aggregated (orders, then units) and
 * handed back by rlaif_judge_poll after the journal is fsynced.
 *
 * Nothing blocks: a call waiting for a retry or for the rate limit sits in a
 * list with its due time, and poll sleeps in curl_multi_poll until the next
 * event. */
#include "judge_impl.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --------------------------------------------------------------- helpers */

void rlaif_judge_free_call(call *c) {
    for (call *f = c->followers, *n; f; f = n) { /* followers have none of their own */
        n = f->next_follower;
        free(f->body), free(f->user), free(f->ids), free(f);
    }
    free(c->body), free(c->user), free(c->ids), free(c);
}

/* The table of unsettled HTTP calls by key: two calls with the same key (a
 * pair submitted twice) must not both be paid for. */
static call **pending_bucket(rlaif_judge *j, const char *key) {
    return &j->pending[rlaif_hash64(key, 32, 3) & (uint64_t)(j->npending_buckets - 1)];
}

static call *pending_find(rlaif_judge *j, const char *key) {
    for (call *c = *pending_bucket(j, key); c; c = c->next_pending)
        if (!memcmp(c->key, key, 32)) return c;
    return NULL;
}

static void pending_remove(rlaif_judge *j, call *c) {
    for (call **pp = pending_bucket(j, c->key); *pp; pp = &(*pp)->next_pending)
        if (*pp == c) {
            *pp = c->next_pending;
            return;
        }
}

/* Replace every run of 8+ characters of the key in s (in place). */
static void scrub(char *s, const char *key) {
    size_t kl = key ? strlen(key) : 0;
    if (kl < 8) return;
    for (char *p = s; *p; p++)
        for (size_t off = 0; off + 8 <= kl; off++)
            if (!strncmp(p, key + off, 8)) {
                size_t n = 8;
                while (p[n] && off + n < kl && p[n] == key[off + n]) n++;
                memset(p, '*', n);
                break;
            }
}

static void push_ready(rlaif_judge *j, call *c) {
    c->next = NULL;
    if (j->ready_tail)
        j->ready_tail->next = c;
    else
        j->ready_head = c;
    j->ready_tail = c;
}

/* ------------------------------------------------------------ aggregation */

static int agree(double p0, double p1) {
    return (p0 - 0.5) * (p1 - 0.5) > 0 || (p0 == 0.5 && p1 == 0.5);
}

/* Label of one unit from its orders; NaN when it has none. */
static double unit_label(rlaif_judge *j, pstate *ps, int u, int *two, int *agreed) {
    outcome *o = &ps->oc[2 * u];
    int ok0 = o[0].asked && o[0].status == RLAIF_JS_OK,
        ok1 = o[1].asked && o[1].status == RLAIF_JS_OK;
    *two = 0, *agreed = 1;
    if (j->mode == RLAIF_JM_SCORE) {
        if (!ok0 || !ok1) return NAN;
        return o[0].score > o[1].score ? 1.0 : o[0].score < o[1].score ? 0.0 : 0.5;
    }
    if (ok0 && ok1) {
        *two = 1;
        *agreed = agree(o[0].p, o[1].p);
        if (*agreed || j->disagreement == 2) return 0.5 * (o[0].p + o[1].p);
        return j->disagreement == 1 ? 0.5 : NAN;
    }
    return ok0 ? o[0].p : ok1 ? o[1].p : NAN;
}

/* Sums over a pair's calls: usage, verdict statistics, rubric and score means. */
static void add_calls(rlaif_judge *j, pstate *ps, rlaif_judge_result *r, const outcome **fail) {
    int nrub[2] = {0, 0}, nsc[2] = {0, 0};
    float rub[2][RLAIF_JUDGE_NCRIT] = {{0}}, sc[2] = {0, 0};
    for (int i = 0; i < 2 * j->nunits; i++) {
        const outcome *oc = &ps->oc[i];
        if (!oc->asked) continue;
        rlaif_judge_endpoint_stats *st = &j->stats[(i / 2) % j->nep];
        r->tokens_in += oc->tin, r->tokens_out += oc->tout;
        if (oc->status != RLAIF_JS_OK && !*fail) *fail = oc;
        if (oc->first >= 0) st->verdicts++, st->first_wins += oc->first;
        if (j->mode == RLAIF_JM_SCORE && !isnan(oc->score)) sc[i % 2] += oc->score, nsc[i % 2]++;
        for (int s = 0; s < 2; s++)
            if (!isnan(oc->rubric[s][0])) {
                for (int c = 0; c < RLAIF_JUDGE_NCRIT; c++) rub[s][c] += oc->rubric[s][c];
                nrub[s]++;
            }
    }
    for (int s = 0; s < 2; s++) {
        r->score[s] = nsc[s] ? sc[s] / (float)nsc[s] : NAN;
        for (int c = 0; c < RLAIF_JUDGE_NCRIT; c++)
            r->rubric[s][c] = nrub[s] ? rub[s][c] / (float)nrub[s] : NAN;
    }
}

/* Orders within each unit, then units by mean or majority. Returns the
 * number of units that disagreed between orders. */
static int combine_units(rlaif_judge *j, pstate *ps, rlaif_judge_result *r) {
    double sum = 0, x = (double)strlen(ps->resp[0]) - (double)strlen(ps->resp[1]);
    int nl = 0, votes[2] = {0, 0}, any_two = 0, disagree = 0;
    for (int u = 0; u < j->nunits; u++) {
        rlaif_judge_endpoint_stats *st = &j->stats[u % j->nep];
        int two, agreed;
        double l = unit_label(j, ps, u, &two, &agreed);
        any_two |= two;
        st->pairs_two_orders += two;
        st->pairs_consistent += two && agreed;
        disagree += two && !agreed;
        if (isnan(l)) continue;
        sum += l, nl++;
        votes[0] += l > 0.5, votes[1] += l < 0.5;
        st->len_n++, st->len_sx += x, st->len_sy += l, st->len_sxx += x * x, st->len_syy += l * l,
            st->len_sxy += x * l;
    }
    if (!nl)
        r->label = NAN;
    else if (j->majority)
        r->label = votes[0] > votes[1] ? 1.0f : votes[1] > votes[0] ? 0.0f : 0.5f;
    else
        r->label = (float)(sum / nl);
    r->choice = isnan(r->label) || r->label == 0.5f ? -1 : r->label > 0.5f ? 0 : 1;
    r->consistent = !any_two ? -1 : disagree ? 0 : 1;
    return disagree;
}

static void finish_pair(rlaif_judge *j, pstate *ps) {
    rlaif_judge_result *r = &ps->res;
    memset(r, 0, sizeof *r);
    r->pair_id = ps->pair_id;
    r->ncalls = ps->ncalls, r->nreplayed = ps->nreplayed;
    const outcome *fail = NULL;
    add_calls(j, ps, r, &fail);
    int disagree = combine_units(j, ps, r);
    const outcome *pri = ps->oc; /* unit 0: first template, first endpoint */
    for (int o = 0; o < 2; o++) {
        r->soft[o] = pri[o].asked && pri[o].status == RLAIF_JS_OK ? (float)pri[o].p : NAN;
        r->outcome[o] = !pri[o].asked                             ? -2
                        : isnan(r->soft[o]) || r->soft[o] == 0.5f ? -1
                        : r->soft[o] > 0.5f                       ? 0
                                                                  : 1;
        if (!r->explanation && pri[o].asked && pri[o].text) r->explanation = xstrdup(pri[o].text);
    }
    r->http_status = pri[0].asked ? pri[0].http : pri[1].http;
    if (isnan(r->label)) { /* say why: never a silent default */
        r->status = disagree && j->disagreement == 0 ? RLAIF_JS_DISAGREE
                    : fail                           ? fail->status
                                                     : RLAIF_JS_AMBIGUOUS;
        if (r->status == RLAIF_JS_DISAGREE)
            snprintf(r->reason, sizeof r->reason,
                     "the two orders disagreed (judge.disagreement = drop)");
        else if (fail) {
            snprintf(r->reason, sizeof r->reason, "%s", fail->reason);
            r->http_status = fail->http;
        }
    }
    ps->next = NULL;
    if (j->done_tail)
        j->done_tail->next = ps;
    else
        j->done_head = ps;
    j->done_tail = ps;
    j->ndone++;
}

/* ----------------------------------------------------------- call results */

static int rubric_complete(const rlaif_judge_parsed *pr) {
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < RLAIF_JUDGE_NCRIT; c++)
            if (isnan(pr->rubric[k][c])) return 0;
    return 1;
}

/* Read an answer into the call's outcome. replayed: 0 fresh (or builtin),
 * 1 from the journal (paid in an earlier run), 2 a twin's answer. */
static void settle(rlaif_judge *j, call *c, const rlaif_journal_entry *e, int replayed) {
    pstate *ps = c->pair;
    outcome *o = &ps->oc[2 * c->unit + c->order];
    rlaif_judge_endpoint_stats *st = &j->stats[c->unit % j->nep];
    o->done = 1, o->replayed = (int8_t)replayed;
    o->http = e->http_status, o->status = e->status;
    /* a twin (replayed == 2) rode on another call: it paid nothing */
    o->tin = replayed == 2 ? 0 : e->tokens_in, o->tout = replayed == 2 ? 0 : e->tokens_out;
    o->p = NAN, o->first = -1, o->score = NAN;
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < RLAIF_JUDGE_NCRIT; c++) o->rubric[k][c] = NAN;
    if (c->unit == 0 && e->text) o->text = xstrdup(e->text);
    st->calls++, st->replayed += replayed != 0;
    st->tokens_in += o->tin, st->tokens_out += o->tout;
    st->cost_usd += ((double)o->tin * j->price_in + (double)o->tout * j->price_out) / 1e6;
    ps->ncalls++, ps->nreplayed += replayed != 0;
    if (o->status == RLAIF_JS_OK) {
        rlaif_judge_parsed pr;
        rlaif_judge_parse(e->text, j->mode, &pr);
        double pa = NAN; /* P(position A better) */
        if (j->mode == RLAIF_JM_SCORE) {
            o->score = pr.score;
            if (isnan(pr.score)) o->status = RLAIF_JS_AMBIGUOUS;
        } else if (j->mode == RLAIF_JM_LOGPROB && !isnan(e->coverage)) {
            /* logprobs came back: they decide, and A/B must cover enough of
             * them (coverage 0: neither label among the top tokens) */
            if (e->coverage < j->min_coverage) {
                o->status = RLAIF_JS_BAD_REPLY;
                snprintf(o->reason, sizeof o->reason,
                         "logprob coverage %.3f of A/B is below judge.min_coverage %.3f",
                         e->coverage, j->min_coverage);
            } else
                pa = e->p_a;
        } else if (pr.verdict >= 0) {
            pa = pr.verdict == 0 ? 1.0 : 0.0;
        } else {
            o->status = RLAIF_JS_AMBIGUOUS;
        }
        if (o->status == RLAIF_JS_AMBIGUOUS)
            snprintf(o->reason, sizeof o->reason, "the judge gave no %s line",
                     j->mode == RLAIF_JM_SCORE ? "\"Score: N\""
                                               : "\"The better response is: A|B\"");
        if (!isnan(pa)) {
            o->p = c->order == 0 ? pa : 1.0 - pa;
            o->first = pa > 0.5 ? 1 : pa < 0.5 ? 0 : -1;
        }
        for (int k = 0; k < 2; k++) /* position k shows response k ^ order */
            memcpy(o->rubric[k ^ c->order], pr.rubric[k], sizeof pr.rubric[k]);
        if (j->mode == RLAIF_JM_RUBRIC && o->status == RLAIF_JS_OK && !rubric_complete(&pr)) {
            /* the scores are what rubric mode asks for: a bare verdict is off-format */
            o->status = RLAIF_JS_BAD_REPLY, o->p = NAN, o->first = -1;
            snprintf(o->reason, sizeof o->reason,
                     "rubric mode: the reply lacks a \"Scores A:\" and a \"Scores B:\" line "
                     "with all %d criteria rated 1-5",
                     RLAIF_JUDGE_NCRIT);
        }
    } else if (o->status == RLAIF_JS_TRUNCATED && c->body) {
        snprintf(o->reason, sizeof o->reason,
                 "the endpoint read %ld prompt tokens of %zu bytes of text: it cut the prompt "
                 "(raise its context size, e.g. llama-server -c)",
                 e->tokens_in, c->content_bytes);
    } else if (!o->reason[0]) {
        snprintf(o->reason, sizeof o->reason, "%s", e->text ? e->text : "failed");
    }
    if (o->status == RLAIF_JS_LENGTH)
        snprintf(o->reason, sizeof o->reason,
                 "finish_reason length: cut before the decision "
                 "(raise judge.max_tokens)");
    if (o->status == RLAIF_JS_FILTERED)
        snprintf(o->reason, sizeof o->reason, "the endpoint filtered or refused the answer");
    if (o->status != RLAIF_JS_OK) st->failed++;
    if (--ps->nleft == 0) finish_pair(j, ps);
}

/* The call is answered, or failed for good: it and every call that waited
 * on the same key settle with the same answer (paid once). */
static void finish_call(rlaif_judge *j, call *c, const rlaif_journal_entry *e) {
    if (c->body || c->ids) pending_remove(j, c);
    settle(j, c, e, 0);
    for (call *f = c->followers; f; f = f->next_follower) settle(j, f, e, 2);
    rlaif_judge_free_call(c);
}

/* A call ends without an answer: record why. */
static void fail_call(rlaif_judge *j, call *c, int status, long http, const char *reason) {
    rlaif_journal_entry e = {.status = status,
                             .http_status = (int)http,
                             .text = (char *)reason,
                             .label = NAN,
                             .p_a = NAN,
                             .coverage = NAN};
    rlaif_debug("judge: pair %llu call %.8s failed (%s): %s", (unsigned long long)c->pair->pair_id,
                c->key, rlaif_judge_status_name(status), reason);
    finish_call(j, c, &e);
}

static void retry_or_fail(rlaif_judge *j, call *c, long http, double retry_after,
                          const char *reason) {
    char why[200];
    if (c->attempts >= j->max_attempts) {
        snprintf(why, sizeof why, "gave up after %d attempts: %s", c->attempts, reason);
        fail_call(j, c, RLAIF_JS_EXHAUSTED, http, why);
        return;
    }
    rlaif_rng rng;
    uint64_t h = rlaif_hash64(c->key, 32, (uint64_t)c->attempts);
    rlaif_rng_init(&rng, j->seed, RLAIF_STREAM_BACKOFF, (uint32_t)c->attempts, (uint32_t)h);
    double limit = j->backoff_cap > 60 ? j->backoff_cap : 60;
    double d = retry_after >= 0 && retry_after <= limit
                   ? retry_after
                   : rlaif_backoff_delay(j->backoff_base, j->backoff_cap, c->attempts - 1,
                                         rlaif_rng_uniform_double(&rng));
    rlaif_debug("judge: pair %llu call %.8s retry %d in %.3f s: %s",
                (unsigned long long)c->pair->pair_id, c->key, c->attempts, d, reason);
    c->not_before = rlaif_now() + d;
    c->next = j->delayed;
    j->delayed = c;
    j->stats[c->unit % j->nep].retries++;
}

/* A server that cuts a long prompt to its context size (llama-server does,
 * silently) still answers, from part of the prompt, and reports how many
 * prompt tokens it read. Real tokenizers read natural text at 3-5 bytes per
 * token (GPT-2 and cl100k BPE: ~4 for English, fewer for digits and code;
 * the chat template only adds tokens); even long whitespace or symbol runs
 * rarely average 8. Fewer than one token per TRUNC_BYTES_PER_TOKEN bytes of
 * message text is therefore a cut prompt, with a margin of 2.5-3x over
 * tokenizer differences. Short prompts (< TRUNC_MIN_BYTES) are not judged:
 * small counts are noisy and no server cuts a prompt that short. */
#define TRUNC_BYTES_PER_TOKEN 12
#define TRUNC_MIN_BYTES       1024
static int prompt_cut(const call *c, long tokens_in) {
    return tokens_in > 0 && c->content_bytes >= TRUNC_MIN_BYTES &&
           (double)tokens_in * TRUNC_BYTES_PER_TOKEN < (double)c->content_bytes;
}

/* An endpoint that stops answering (transport errors, 5xx) gets a console
 * line once it has failed for OUTAGE_AFTER seconds with no answer between,
 * then at most every OUTAGE_EVERY seconds while it lasts, and a line when it
 * answers again; each retry alone only reaches the debug log. */
#define OUTAGE_AFTER 2.0
#define OUTAGE_EVERY 30.0
static void endpoint_failed(rlaif_judge *j, endpoint *ep, const char *reason) {
    double now = rlaif_now();
    if (!ep->down_fails++) ep->down_since = now, ep->down_since_wall = rlaif_wall_time();
    if (now - ep->down_since < OUTAGE_AFTER || ep->down_fails < 2) return;
    if (ep->down_line > 0 && now - ep->down_line < OUTAGE_EVERY) return;
    ep->down_line = now;
    char since[32];
    time_t t = (time_t)ep->down_since_wall;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(since, sizeof since, "%Y-%m-%d %H:%M:%S UTC", &tm);
    rlaif_info("judge endpoint %s unreachable since %s (%.0f s, %ld failed requests): %s; "
               "retrying",
               j->stats[ep - j->ep].name, since, now - ep->down_since, ep->down_fails, reason);
}

static void endpoint_answered(rlaif_judge *j, endpoint *ep) {
    if (ep->down_line > 0)
        rlaif_info("judge endpoint %s answers again after %.0f s (%ld failed requests)",
                   j->stats[ep - j->ep].name, rlaif_now() - ep->down_since, ep->down_fails);
    ep->down_fails = 0, ep->down_line = 0;
}

/* Tell curl the connection cap when the adapted limit moved. */
static void follow_limit(rlaif_judge *j) {
    int n = rlaif_adapt_limit(&j->adapt);
    if (n == j->connections) return;
    rlaif_debug("judge: %d requests in flight (was %d; base latency %.3f s, ceiling %d)", n,
                j->connections, j->adapt.base, j->adapt.max);
    j->connections = n;
    rlaif_http_set_connections(j->http, n);
}

/* 1 when body (HTTP http) is a good answer: *e is its journal record (its
 * text in *r, freed by the caller with rlaif_judge_reply_free either way);
 * *parsed is rlaif_judge_parse_reply's result. */
static int good_answer(rlaif_judge *j, const call *c, const char *body, size_t len, long http,
                       rlaif_judge_reply *r, int *parsed, rlaif_journal_entry *e) {
    *parsed = rlaif_judge_parse_reply(j->ep[c->unit % j->nep].e.backend, j->mode, body, len, r);
    if (!(http >= 200 && http < 300 && *parsed == 0 && r->ok)) return 0;
    *e = (rlaif_journal_entry){.status = RLAIF_JS_OK,
                               .http_status = (int)http,
                               .text = r->text,
                               .p_a = r->p_a,
                               .coverage = r->coverage,
                               .tokens_in = r->tokens_in,
                               .tokens_out = r->tokens_out};
    if (!strcmp(r->finish, "length") && j->mode != RLAIF_JM_LOGPROB) e->status = RLAIF_JS_LENGTH;
    if (!strcmp(r->finish, "content_filter")) e->status = RLAIF_JS_FILTERED;
    if (prompt_cut(c, r->tokens_in)) e->status = RLAIF_JS_TRUNCATED;
    rlaif_judge_parsed pr;
    rlaif_judge_parse(r->text, j->mode, &pr);
    e->label = j->mode == RLAIF_JM_SCORE ? pr.score
               : !isnan(r->p_a)          ? r->p_a
               : pr.verdict >= 0         ? 1.0 - pr.verdict
                                         : NAN;
    return 1;
}

/* An answer's last byte has been read (rlaif_http_on_complete): journaled at
 * once, before libcurl reads another socket. A failed write is left for
 * on_done to make again and report. */
void rlaif_judge_on_complete(void *ctx, void *user, const char *body, size_t len, long http) {
    rlaif_judge *j = ctx;
    call *c = user;
    rlaif_judge_reply r;
    rlaif_journal_entry e;
    int parsed;
    if (c->journaled) return;
    if (good_answer(j, c, body, len, http, &r, &parsed, &e))
        c->journaled = rlaif_journal_append(j->journal, c->key, &e, body, len) == 0;
    rlaif_judge_reply_free(&r);
}

/* An HTTP answer arrived (or the transfer failed). */
static int on_done(rlaif_judge *j, rlaif_http_done *d) {
    call *c = d->user;
    endpoint *ep = &j->ep[c->unit % j->nep];
    double now = rlaif_now();
    int congested = d->curl_code == CURLE_OPERATION_TIMEDOUT ? RLAIF_ADAPT_TIMEOUT
                    : d->curl_code || d->http_status == 429 || d->http_status >= 500
                        ? RLAIF_ADAPT_ERROR
                        : RLAIF_ADAPT_OK;
    rlaif_adapt_done(&j->adapt, now - d->started, congested, rlaif_http_inflight(j->http) + 1,
                     rlaif_http_oldest(j->http, now), now);
    follow_limit(j);
    rlaif_bucket_feed(&ep->requests, d->ratelimit[0], d->ratelimit[1], j->n_judge, now);
    rlaif_bucket_feed(&ep->tokens, d->ratelimit[2], d->ratelimit[3], j->n_judge, now);
    char why[200];
    int rc = 0;
    if (d->curl_code && !c->journaled) { /* (a journaled answer was whole) */
        snprintf(why, sizeof why, "transport: %s", d->error);
        scrub(why, ep->key);
        endpoint_failed(j, ep, why);
        retry_or_fail(j, c, 0, -1, why);
        free(d->body);
        return 0;
    }
    rlaif_judge_reply r;
    rlaif_journal_entry e;
    int parsed;
    long http = d->http_status;
    if (http < 500) endpoint_answered(j, ep);
    if (good_answer(j, c, d->body, d->len, http, &r, &parsed, &e)) {
        /* the journal first: an answer counts only once it is recorded (most
         * were, as their last byte arrived: rlaif_judge_on_complete) */
        if (!c->journaled) rc = rlaif_journal_append(j->journal, c->key, &e, d->body, d->len);
        rlaif_bucket_refund(&ep->tokens, c->est_tokens - (double)(r.tokens_in + r.tokens_out));
        if (!rc) finish_call(j, c, &e);
    } else if (http >= 200 && http < 300) {
        snprintf(why, sizeof why, "HTTP %ld with %s (%zu bytes)", http,
                 parsed ? "malformed or truncated JSON" : "an error body", d->len);
        retry_or_fail(j, c, http, d->retry_after, why);
    } else if (http >= 300 && http < 400) {
        /* never followed: the key must not go to another host, and a POST
         * must not silently land elsewhere (status http, no retry) */
        snprintf(why, sizeof why,
                 "HTTP %ld: redirect to %.80s not followed (set judge.base_url to it if trusted)",
                 http, d->location[0] ? d->location : "(no Location)");
        scrub(why, ep->key);
        fail_call(j, c, RLAIF_JS_HTTP, http, why);
    } else {
        snprintf(why, sizeof why, "HTTP %ld%s%s%s%s: %s", http, r.err_type[0] ? " " : "",
                 r.err_type, r.err_code[0] ? " " : "", r.err_code,
                 r.err_msg[0] ? r.err_msg : "(no message)");
        scrub(why, ep->key);
        if (http >= 500) endpoint_failed(j, ep, why);
        int quota =
            strstr(r.err_code, "insufficient_quota") || strstr(r.err_type, "insufficient_quota");
        if (rlaif_should_retry(http, r.err_code, r.err_type, d->should_retry))
            retry_or_fail(j, c, http, d->retry_after, why);
        else
            fail_call(j, c, quota ? RLAIF_JS_QUOTA : RLAIF_JS_HTTP, http, why);
    }
    rlaif_judge_reply_free(&r);
    free(d->body);
    return rc;
}

/* ------------------------------------------------------------- dispatch */

static void run_builtin(rlaif_judge *j, call *c) {
    endpoint *ep = &j->ep[c->unit % j->nep];
    double pa;
    char *text = rlaif_judge_builtin_answer(c->user, j->mode, &ep->builtin, &pa);
    rlaif_journal_entry e = {
        .status = RLAIF_JS_OK, .text = text, .label = NAN, .p_a = pa, .coverage = 1.0};
    if (j->mode != RLAIF_JM_LOGPROB) e.p_a = NAN;
    settle(j, c, &e, 0);
    free(text);
    rlaif_judge_free_call(c);
}

/* Start what may start now; j->wake = when the next waiting call is due. */
static int dispatch(rlaif_judge *j) {
    double now = rlaif_now();
    j->wake = INFINITY;
    for (call **pp = &j->delayed; *pp;) { /* due retries go to the back of the queue */
        call *c = *pp;
        if (c->not_before <= now) {
            *pp = c->next;
            push_ready(j, c);
        } else {
            if (c->not_before < j->wake) j->wake = c->not_before;
            pp = &c->next;
        }
    }
    while (j->ready_head) {
        call *c = j->ready_head;
        endpoint *ep = &j->ep[c->unit % j->nep];
        if (ep->e.backend != RLAIF_JB_BUILTIN) {
            double w1, w2;
            if (!rlaif_http_free_slots(j->http) ||
                rlaif_http_inflight(j->http) >= rlaif_adapt_limit(&j->adapt))
                break;
            if (!rlaif_bucket_take(&ep->requests, 1, now, &w1)) {
                if (now + w1 < j->wake) j->wake = now + w1;
                break;
            }
            if (!rlaif_bucket_take(&ep->tokens, c->est_tokens, now, &w2)) {
                rlaif_bucket_refund(&ep->requests, 1);
                if (now + w2 < j->wake) j->wake = now + w2;
                break;
            }
        }
        j->ready_head = c->next;
        if (!j->ready_head) j->ready_tail = NULL;
        if (ep->e.backend == RLAIF_JB_BUILTIN) {
            run_builtin(j, c);
            continue;
        }
        c->attempts++;
        j->stats[c->unit % j->nep].http_requests++;
        RLAIF_TRY(rlaif_http_start(j->http, ep->url, ep->headers, c->body, c->len, c));
    }
    return 0;
}

/* --------------------------------------------------------------- submit */

/* An HTTP call's body and key: endpoint URL + body (model, messages,
 * sampling) + order. */
static void make_http_key(endpoint *ep, call *c, rlaif_judge_messages *m, int mode, int order) {
    c->body = rlaif_judge_request_body(&ep->e, mode, m);
    for (int i = 0; i < m->n; i++) c->content_bytes += strlen(m->content[i]);
    rlaif_judge_messages_free(m);
    c->len = strlen(c->body);
    c->est_tokens = (double)c->len / 4.0 + (mode == RLAIF_JM_LOGPROB ? 1 : ep->e.max_tokens);
    uint64_t h0 = rlaif_hash64(ep->url, strlen(ep->url), (uint64_t)order + 11);
    uint64_t k1 = rlaif_hash64(c->body, c->len, h0), k2 = rlaif_hash64(c->body, c->len, ~h0);
    snprintf(c->key, sizeof c->key, "%016llx%016llx", (unsigned long long)k1,
             (unsigned long long)k2);
}

/* A local call's prompt ids and key (judge_local.c). 1 when the call is
 * settled already: its prompt does not fit the model (no answer to journal:
 * the same prompt never fits that model), or an error (*rc). */
static int make_local_key(rlaif_judge *j, endpoint *ep, call *c, rlaif_judge_messages *m, int order,
                          int *rc) {
    char why[200];
    int r = rlaif_local_encode(ep->local, m, c, why, sizeof why);
    rlaif_judge_messages_free(m);
    if (r > 0) {
        *rc = r;
        rlaif_judge_free_call(c);
        return 1;
    }
    rlaif_local_key(ep->local, c, order, c->key);
    if (r < 0) {
        fail_call(j, c, RLAIF_JS_TRUNCATED, 0, why);
        return 1;
    }
    return 0;
}

static void make_call(rlaif_judge *j, pstate *ps, int unit, int order, int *rc) {
    const rlaif_judge_template *t = &j->tpl[unit / j->nep];
    endpoint *ep = &j->ep[unit % j->nep];
    const char *a = ps->resp[order], *b = j->mode == RLAIF_JM_SCORE ? NULL : ps->resp[1 - order];
    rlaif_rng rng; /* boundaries: a pure function of (seed, pair, unit, order) */
    rlaif_rng_init(&rng, j->seed, RLAIF_STREAM_JUDGE,
                   (uint32_t)(ps->pair_id >> 32) ^ ((uint32_t)(2 * unit + order + 1) * 0x9e3779b1u),
                   (uint32_t)ps->pair_id);
    rlaif_judge_messages m;
    *rc = rlaif_judge_render(t, j->fewshot, ps->prompt, a, b, &rng, &m);
    if (*rc) return;
    call *c = xcalloc(1, sizeof *c);
    c->pair = ps, c->unit = unit, c->order = order;
    ps->oc[2 * unit + order].asked = 1;
    ps->nleft++;
    if (ep->e.backend == RLAIF_JB_BUILTIN) {
        c->user = xstrdup(m.content[m.n - 1]);
        rlaif_judge_messages_free(&m);
        push_ready(j, c);
        return;
    }
    if (ep->e.backend == RLAIF_JB_LOCAL) {
        if (make_local_key(j, ep, c, &m, order, rc)) return;
    } else
        make_http_key(ep, c, &m, j->mode, order);
    rlaif_journal_entry e;
    if (rlaif_journal_lookup(j->journal, c->key, &e)) {
        settle(j, c, &e, 1);
        rlaif_judge_free_call(c);
        return;
    }
    call *lead = pending_find(j, c->key);
    if (lead) { /* the same request is on its way: wait for its answer */
        c->next_follower = lead->followers;
        lead->followers = c;
        return;
    }
    call **bucket = pending_bucket(j, c->key);
    c->next_pending = *bucket;
    *bucket = c;
    if (ep->e.backend == RLAIF_JB_LOCAL)
        rlaif_local_submit(ep->local, c);
    else
        push_ready(j, c);
}

int rlaif_judge_credit(const rlaif_judge *j) {
    return j->credit_max - j->npending;
}
int rlaif_judge_pending(const rlaif_judge *j) {
    return j->npending;
}

int rlaif_judge_submit(rlaif_judge *j, const rlaif_judge_pair *p) {
    if (!j->free_slots)
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, "check rlaif_judge_credit before submitting",
                           "judge: submit without credit");
    pstate *ps = j->free_slots;
    j->free_slots = ps->next;
    j->npending++;
    memset(ps, 0, sizeof *ps);
    ps->pair_id = p->pair_id;
    ps->prompt = xstrdup(p->prompt);
    ps->resp[0] = xstrdup(p->response[0]);
    ps->resp[1] = xstrdup(p->response[1]);
    ps->oc = xcalloc((size_t)(2 * j->nunits), sizeof *ps->oc);
    /* orders: a pure function of (seed, pair id), never of the rank */
    rlaif_rng rng;
    rlaif_rng_init(&rng, j->seed, RLAIF_STREAM_ORDER, (uint32_t)(p->pair_id >> 32),
                   (uint32_t)p->pair_id);
    int both = rlaif_rng_uniform_double(&rng) < j->both_orders || j->mode == RLAIF_JM_SCORE;
    int single = rlaif_rng_uniform_double(&rng) < 0.5 ? 0 : 1;
    ps->nleft = 1; /* held open until every call is made */
    int rc = 0;
    for (int u = 0; u < j->nunits && !rc; u++)
        for (int o = 0; o < 2 && !rc; o++)
            if (both || o == single) make_call(j, ps, u, o, &rc);
    if (rc) return rc;
    if (--ps->nleft == 0) finish_pair(j, ps);
    return 0;
}

/* ----------------------------------------------------------------- poll */

/* A local call answered: journaled first, like a paid answer. */
static int on_local_answer(void *ctx, call *c, const rlaif_journal_entry *e, const char *raw) {
    rlaif_judge *j = ctx;
    RLAIF_TRY(rlaif_journal_append(j->journal, c->key, e, raw, strlen(raw)));
    /* tests count these lines per key: a journaled call is never generated again */
    rlaif_debug("judge: local answer %s (%ld prompt tokens, %ld out, %s)", c->key, e->tokens_in,
                e->tokens_out, rlaif_judge_status_name(e->status));
    finish_call(j, c, e);
    return 0;
}

/* One slice of every local judge model with work; 1 when any had some. */
static int local_work(rlaif_judge *j, int *rc) {
    int any = 0;
    for (int e = 0; e < j->nep && !*rc; e++)
        if (j->ep[e].local && rlaif_local_busy(j->ep[e].local)) {
            any = 1;
            *rc = rlaif_local_slice(j->ep[e].local, on_local_answer, j);
            j->stats[e].model = *rlaif_local_timing(j->ep[e].local);
        }
    return any;
}

static void release(rlaif_judge *j, pstate *ps) {
    free(ps->prompt), free(ps->resp[0]), free(ps->resp[1]);
    for (int i = 0; i < 2 * j->nunits; i++) free(ps->oc[i].text);
    free(ps->oc);
    ps->oc = NULL;
    ps->next = j->free_slots;
    j->free_slots = ps;
    j->npending--;
}

int rlaif_judge_poll(rlaif_judge *j, double wait, rlaif_judge_result *out, int cap, int *n) {
    *n = 0;
    double end = rlaif_now() + wait;
    for (;;) {
        RLAIF_TRY(dispatch(j));
        if (j->http) {
            rlaif_http_done d;
            while (rlaif_http_next(j->http, &d)) RLAIF_TRY(on_done(j, &d));
            if (rlaif_http_inflight(j->http)) { /* a request waiting for a worker */
                rlaif_adapt_waiting(&j->adapt, rlaif_http_oldest(j->http, rlaif_now()),
                                    rlaif_now());
                follow_limit(j);
            }
            if (j->ready_head) RLAIF_TRY(dispatch(j)); /* refill freed slots at once */
        }
        int rc = 0, local = j->nlocal && j->ndone < cap && local_work(j, &rc);
        RLAIF_TRY(rc);
        double now = rlaif_now();
        int busy = j->ready_head || j->delayed || (j->http && rlaif_http_inflight(j->http));
        if (j->ndone >= cap || now >= end || !(busy || local)) break;
        if (local) { /* the model works while HTTP transfers move on */
            if (j->http && rlaif_http_inflight(j->http)) RLAIF_TRY(rlaif_http_wait(j->http, 0));
            continue;
        }
        double t = end - now;
        if (j->wake - now < t) t = j->wake - now;
        if (t < 0.0005) t = 0.0005;
        if (t > 0.05 && !j->adapt.fixed && j->http && rlaif_http_inflight(j->http))
            t = 0.05; /* look for requests waiting in a queue (rlaif_adapt_waiting) */
        if (j->http) RLAIF_TRY(rlaif_http_wait(j->http, t));
    }
    if (j->ndone && j->journal) RLAIF_TRY(rlaif_journal_sync(j->journal));
    while (j->done_head && *n < cap) {
        pstate *ps = j->done_head;
        j->done_head = ps->next;
        if (!j->done_head) j->done_tail = NULL;
        j->ndone--;
        out[(*n)++] = ps->res;
        release(j, ps);
    }
    return 0;
}

void rlaif_judge_result_free(rlaif_judge_result *r) {
    free(r->explanation);
    r->explanation = NULL;
}
