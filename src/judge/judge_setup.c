/* judge_setup.c - building a judge from the job's [judge] section (endpoints,
 * URL and key checks, templates, journal), tearing it down, and the per-
 * endpoint statistics. */
#include "config.h"
#include "judge_impl.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ statistics */

double rlaif_judge_consistency(const rlaif_judge_endpoint_stats *s) {
    return s->pairs_two_orders ? (double)s->pairs_consistent / (double)s->pairs_two_orders : NAN;
}

double rlaif_judge_first_win_rate(const rlaif_judge_endpoint_stats *s) {
    return s->verdicts ? (double)s->first_wins / (double)s->verdicts : NAN;
}

double rlaif_judge_length_corr(const rlaif_judge_endpoint_stats *s) {
    double n = s->len_n;
    if (n < 2) return NAN;
    double vx = s->len_sxx - s->len_sx * s->len_sx / n, vy = s->len_syy - s->len_sy * s->len_sy / n;
    double cxy = s->len_sxy - s->len_sx * s->len_sy / n;
    return vx > 0 && vy > 0 ? cxy / sqrt(vx * vy) : NAN;
}

int rlaif_judge_concurrency(const rlaif_judge *j) {
    return j->http ? rlaif_adapt_limit(&j->adapt) : 0;
}

int rlaif_judge_nendpoints(const rlaif_judge *j) {
    return j->nep;
}
const rlaif_judge_endpoint_stats *rlaif_judge_stats(const rlaif_judge *j, int e) {
    return &j->stats[e];
}
int rlaif_judge_ntemplates(const rlaif_judge *j) {
    return j->ntpl;
}
const char *rlaif_judge_template_text(const rlaif_judge *j, int t, uint64_t *hash) {
    if (hash) *hash = j->tpl[t].hash;
    return j->tpl[t].user;
}

/* A rate, or "n/a" when there was nothing to measure ("nan" reads as a bug). */
static const char *rate(char *buf, size_t n, double v) {
    if (isnan(v))
        snprintf(buf, n, "n/a");
    else
        snprintf(buf, n, "%.3f", v);
    return buf;
}

void rlaif_judge_report_stats(const rlaif_judge_endpoint_stats *stats, int nep, char *buf,
                              size_t n) {
    char r[3][16];
    size_t off = 0;
    buf[0] = 0;
    for (int e = 0; e < nep && off < n; e++) {
        const rlaif_judge_endpoint_stats *s = &stats[e];
        int k = snprintf(buf + off, n - off,
                         "judge %s: %ld calls (%ld from the journal), %ld HTTP requests, %ld "
                         "retries, %ld failed calls; consistency %s over %ld two-order "
                         "pairs, first-position wins %s, length-preference corr %s; tokens "
                         "%lld in / %lld out, cost $%.4f\n",
                         s->name, s->calls, s->replayed, s->http_requests, s->retries, s->failed,
                         rate(r[0], 16, rlaif_judge_consistency(s)), s->pairs_two_orders,
                         rate(r[1], 16, rlaif_judge_first_win_rate(s)),
                         rate(r[2], 16, rlaif_judge_length_corr(s)), s->tokens_in, s->tokens_out,
                         s->cost_usd);
        if (k < 0) break;
        off += (size_t)k;
        const rlaif_gen_timing *t = &s->model;
        if (t->prefill_s > 0 && off < n) {
            k = snprintf(buf + off, n - off,
                         "judge %s: model prefill %lld tokens in %.3f s (%.1f tokens/s, attention "
                         "%.3f s, %lld more copied from shared prefixes)",
                         s->name, t->prefill_tokens, t->prefill_s,
                         (double)t->prefill_tokens / t->prefill_s, t->prefill_attn_s,
                         t->prefill_shared);
            if (k < 0 || off + (size_t)k >= n) break;
            off += (size_t)k;
            if (t->decode_steps > 0) {
                k = snprintf(
                    buf + off, n - off,
                    "; decoding %lld steps of %.1f rows on average in %.3f s (%.2f ms/step, "
                    "attention %.2f ms)",
                    t->decode_steps, (double)t->decode_rows / (double)t->decode_steps, t->decode_s,
                    1e3 * t->decode_s / (double)t->decode_steps,
                    1e3 * t->decode_attn_s / (double)t->decode_steps);
                if (k < 0 || off + (size_t)k >= n) break;
                off += (size_t)k;
            }
            k = snprintf(buf + off, n - off, "\n");
            if (k < 0) break;
            off += (size_t)k;
        }
    }
}

void rlaif_judge_report(const rlaif_judge *j, char *buf, size_t n) {
    rlaif_judge_report_stats(j->stats, j->nep, buf, n);
}

/* ------------------------------------------------------------ open, close */

/* localhost, 127.0.0.0/8 or ::1; a name that merely starts with "127."
 * (127.attacker.example) is not loopback. */
static int is_loopback(const char *host) {
    struct in_addr a;
    if (!strcasecmp(host, "localhost") || !strcmp(host, "::1") || !strcmp(host, "[::1]")) return 1;
    return inet_pton(AF_INET, host, &a) == 1 && ntohl(a.s_addr) >> 24 == 127;
}

/* Check the scheme and host of url; *loopback says where it points. */
static int check_url(const char *url, int allow_http, int *loopback) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = 0;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) || curl_url_get(u, CURLUPART_HOST, &host, 0))
        rc = RLAIF_ERROR(RLAIF_EX_USAGE, "e.g. judge.base_url = https://api.openai.com/v1",
                         "judge: cannot read the endpoint URL '%s'", url);
    else {
        *loopback = is_loopback(host);
        if (strcmp(scheme, "https") && strcmp(scheme, "http"))
            rc = RLAIF_ERROR(RLAIF_EX_USAGE, "use http:// or https://",
                             "judge: unsupported scheme '%s' in '%s'", scheme, url);
        else if (!strcmp(scheme, "http") && !*loopback && !allow_http)
            rc = RLAIF_ERROR(RLAIF_EX_USAGE,
                             "use https, or set judge.allow_http = true for a trusted network",
                             "judge: plain http to %s would send the API key unencrypted", host);
    }
    curl_free(scheme), curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* Splits an endpoint spec "backend[:model][@base_url][#KEY_ENV]" in buf
 * (a copy of spec): buf keeps the backend, the parts are NULL when absent. */
static void split_spec(char *buf, size_t n, const char *spec, char **model, char **url,
                       char **env) {
    snprintf(buf, n, "%s", spec);
    *model = *url = *env = NULL;
    if ((*env = strchr(buf, '#'))) *(*env)++ = 0;
    if ((*url = strchr(buf, '@'))) *(*url)++ = 0;
    if ((*model = strchr(buf, ':'))) *(*model)++ = 0;
}

/* Each endpoint spec of the job: [judge]'s backend, then judge.ensemble's
 * comma-separated ones; fn returns nonzero to stop. */
static int each_spec(const rlaif_config *cfg, int (*fn)(const char *spec, void *arg), void *arg) {
    const char *ens = rlaif_cfg_str(cfg, "judge.ensemble");
    char *specs = xmalloc(strlen(ens) + 64), *save = NULL;
    snprintf(specs, strlen(ens) + 64, "%s,%s", rlaif_cfg_str(cfg, "judge.backend"), ens);
    int rc = 0;
    for (char *s = strtok_r(specs, ",", &save); s && !rc; s = strtok_r(NULL, ",", &save)) {
        while (*s == ' ') s++;
        if (*s) rc = fn(s, arg);
    }
    free(specs);
    return rc;
}

typedef struct {
    const rlaif_config *cfg;
    char (*paths)[4096];
    int n, max;
} local_list;

static int add_local(const char *spec, void *arg) {
    local_list *l = arg;
    char buf[1024], *model, *url, *env;
    split_spec(buf, sizeof buf, spec, &model, &url, &env);
    if (strcmp(buf, "local") || l->n >= l->max) return 0;
    snprintf(l->paths[l->n++], 4096, "%s",
             model && *model ? model : rlaif_cfg_str(l->cfg, "judge.model"));
    return 0;
}

int rlaif_judge_local_models(const rlaif_config *cfg, char (*paths)[4096], int max) {
    local_list l = {cfg, paths, 0, max};
    each_spec(cfg, add_local, &l);
    return l.n;
}

/* One endpoint from a spec "backend[:model][@base_url][#KEY_ENV]"; missing
 * parts come from [judge]. */
static int setup_endpoint(rlaif_judge *j, endpoint *ep, rlaif_judge_endpoint_stats *st,
                          const rlaif_config *cfg, const char *spec) {
    char buf[1024], *model, *url, *env;
    split_spec(buf, sizeof buf, spec, &model, &url, &env);
    const char *backend = buf;
    if (!strcmp(backend, "builtin"))
        ep->e.backend = RLAIF_JB_BUILTIN;
    else if (!strcmp(backend, "openai"))
        ep->e.backend = RLAIF_JB_OPENAI;
    else if (!strcmp(backend, "anthropic"))
        ep->e.backend = RLAIF_JB_ANTHROPIC;
    else if (!strcmp(backend, "local"))
        ep->e.backend = RLAIF_JB_LOCAL;
    else
        return RLAIF_ERROR(RLAIF_EX_USAGE, "endpoints are backend[:model][@base_url][#KEY_ENV]",
                           "judge: unknown backend '%s' in '%s'", backend, spec);
    int anth = ep->e.backend == RLAIF_JB_ANTHROPIC;
    const char *base = url && *url ? url : rlaif_cfg_str(cfg, "judge.base_url");
    if (!*base) base = anth ? "https://api.anthropic.com/v1" : "https://api.openai.com/v1";
    ep->e.base_url = xstrdup(base);
    ep->e.model = xstrdup(model && *model ? model : rlaif_cfg_str(cfg, "judge.model"));
    ep->e.max_completion_tokens =
        !strcmp(rlaif_cfg_str(cfg, "judge.token_param"), "max_completion_tokens");
    ep->e.max_tokens = (int)rlaif_cfg_int(cfg, "judge.max_tokens");
    ep->e.top_logprobs = (int)rlaif_cfg_int(cfg, "judge.top_logprobs");
    ep->e.temperature = rlaif_cfg_float(cfg, "judge.temperature");
    ep->e.seed = rlaif_cfg_int(cfg, "judge.seed");
    ep->e.anthropic_version = xstrdup(rlaif_cfg_str(cfg, "judge.anthropic_version"));
    ep->builtin.flip_prob = rlaif_cfg_float(cfg, "judge.flip_prob");
    ep->builtin.first_bias = rlaif_cfg_float(cfg, "judge.first_bias");
    ep->builtin.seed = j->seed;
    double now = rlaif_now();
    rlaif_bucket_init(&ep->requests, rlaif_cfg_float(cfg, "judge.requests_per_minute") / j->n_judge,
                      now);
    rlaif_bucket_init(&ep->tokens, rlaif_cfg_float(cfg, "judge.tokens_per_minute") / j->n_judge,
                      now);
    /* the name in reports: never a query string (some providers put keys there) */
    char shown[80];
    snprintf(shown, sizeof shown, "%s", ep->e.base_url);
    shown[strcspn(shown, "?#")] = 0;
    if (ep->e.backend == RLAIF_JB_BUILTIN)
        snprintf(st->name, sizeof st->name, "builtin");
    else if (ep->e.backend == RLAIF_JB_LOCAL)
        snprintf(st->name, sizeof st->name, "local:%s", ep->e.model);
    else
        snprintf(st->name, sizeof st->name, "%s:%s@%s", backend, ep->e.model, shown);
    if (ep->e.backend == RLAIF_JB_BUILTIN) return 0;
    if (ep->e.backend == RLAIF_JB_LOCAL) {
        j->nlocal++;
        return rlaif_local_open(&ep->local, cfg, ep->e.model, j->mode);
    }

    if (anth && j->mode == RLAIF_JM_LOGPROB)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "use judge.mode = verdict or rubric with anthropic",
                           "judge: the Anthropic API returns no logprobs");
    if (!*ep->e.model)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set judge.model", "judge: no model named for %s", base);
    int loopback = 0;
    RLAIF_TRY(check_url(ep->e.base_url, rlaif_cfg_bool(cfg, "judge.allow_http"), &loopback));
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') bl--;
    const char *path = anth ? "/messages" : "/chat/completions";
    ep->url = xmalloc(bl + strlen(path) + 1);
    memcpy(ep->url, base, bl);
    strcpy(ep->url + bl, path);
    const char *env_name = env && *env ? env : rlaif_cfg_str(cfg, "judge.api_key_env");
    const char *key = *env_name ? getenv(env_name) : NULL;
    if ((!key || !*key) && !loopback)
        return RLAIF_ERROR(
            RLAIF_EX_USAGE, "export the key in the job script; it is never read from the job file",
            "judge: environment variable %s (judge.api_key_env) is not set", env_name);
    ep->headers = curl_slist_append(ep->headers, "Content-Type: application/json");
    ep->headers = curl_slist_append(ep->headers, "Expect:");
    ep->headers = curl_slist_append(ep->headers, "User-Agent: rlaif/" PACKAGE_VERSION);
    if (key && *key) {
        ep->key = xstrdup(key);
        size_t n = strlen(key) + 32;
        char *h = xmalloc(n);
        snprintf(h, n, anth ? "x-api-key: %s" : "Authorization: Bearer %s", key);
        ep->headers = curl_slist_append(ep->headers, h);
        memset(h, 0, n);
        free(h);
    }
    if (anth) {
        char h[128];
        snprintf(h, sizeof h, "anthropic-version: %s", ep->e.anthropic_version);
        ep->headers = curl_slist_append(ep->headers, h);
    }
    return 0;
}

static int setup_templates(rlaif_judge *j, const rlaif_config *cfg) {
    const char *list = rlaif_cfg_str(cfg, "judge.templates");
    if (!*list) {
        j->tpl = xcalloc(1, sizeof *j->tpl);
        j->ntpl = 1;
        return rlaif_judge_template_default(&j->tpl[0], j->mode);
    }
    char *copy = xstrdup(list), *save = NULL;
    j->tpl = xcalloc(strlen(list) / 2 + 2, sizeof *j->tpl);
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        if (!*t) continue;
        rc = !strcmp(t, "default") ? rlaif_judge_template_default(&j->tpl[j->ntpl], j->mode)
                                   : rlaif_judge_template_load(&j->tpl[j->ntpl], t);
        if (!rc) j->ntpl++;
    }
    free(copy);
    return rc;
}

/* each_spec's step while opening a judge: the next endpoint. */
typedef struct {
    rlaif_judge *j;
    const rlaif_config *cfg;
    int need_http;
} open_ctx;

static int open_spec(const char *spec, void *arg) {
    open_ctx *o = arg;
    rlaif_judge *j = o->j;
    int rc = setup_endpoint(j, &j->ep[j->nep], &j->stats[j->nep], o->cfg, spec);
    o->need_http |=
        j->ep[j->nep].e.backend == RLAIF_JB_OPENAI || j->ep[j->nep].e.backend == RLAIF_JB_ANTHROPIC;
    j->nep++;
    return rc;
}

static int judge_setup(rlaif_judge *j, const rlaif_config *cfg, int judge_rank,
                       const char *journal_dir) {
    RLAIF_TRY(rlaif_judge_mode_parse(rlaif_cfg_str(cfg, "judge.mode"), &j->mode));
    j->seed = (uint64_t)rlaif_cfg_int(cfg, "run.seed");
    j->both_orders = rlaif_cfg_float(cfg, "judge.both_orders");
    j->min_coverage = rlaif_cfg_float(cfg, "judge.min_coverage");
    j->backoff_base = rlaif_cfg_float(cfg, "judge.backoff_base");
    j->backoff_cap = rlaif_cfg_float(cfg, "judge.backoff_cap");
    j->price_in = rlaif_cfg_float(cfg, "judge.price_input_per_mtok");
    j->price_out = rlaif_cfg_float(cfg, "judge.price_output_per_mtok");
    const char *dis = rlaif_cfg_str(cfg, "judge.disagreement");
    j->disagreement = !strcmp(dis, "drop") ? 0 : !strcmp(dis, "tie") ? 1 : 2;
    j->majority = !strcmp(rlaif_cfg_str(cfg, "judge.aggregate"), "majority");
    j->max_attempts = (int)rlaif_cfg_int(cfg, "judge.max_attempts");
    RLAIF_TRY(setup_templates(j, cfg));
    const char *fs = rlaif_cfg_str(cfg, "judge.few_shot");
    if (*fs && !(j->fewshot = rlaif_judge_read_file(fs, NULL)))
        return rlaif_error_sys(RLAIF_EX_NOINPUT, "fopen", fs, __FILE__, __LINE__);

    /* endpoints: [judge] itself, then judge.ensemble */
    size_t most = (strlen(rlaif_cfg_str(cfg, "judge.ensemble")) + 1) / 2 + 2;
    j->ep = xcalloc(most, sizeof *j->ep);
    j->stats = xcalloc(most, sizeof *j->stats);
    open_ctx oc = {j, cfg, 0};
    RLAIF_TRY(each_spec(cfg, open_spec, &oc));
    int need_http = oc.need_http;
    j->nunits = j->ntpl * j->nep;
    if (j->nunits > 64)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "use fewer templates or endpoints",
                           "judge: %d templates x %d endpoints is too many", j->ntpl, j->nep);
    int inflight = (int)rlaif_cfg_int(cfg, "judge.max_inflight");
    j->credit_max = 4 * inflight;
    j->slots = xcalloc((size_t)j->credit_max, sizeof *j->slots);
    for (int i = j->credit_max - 1; i >= 0; i--) {
        j->slots[i].next = j->free_slots;
        j->free_slots = &j->slots[i];
    }
    if (!need_http && !j->nlocal) return 0; /* the builtin judge costs nothing: no journal */
    /* unsettled calls: at most credit x units x 2 orders */
    j->npending_buckets = 64;
    while (j->npending_buckets < 4L * j->credit_max * j->nunits) j->npending_buckets *= 2;
    j->pending = xcalloc((size_t)j->npending_buckets, sizeof *j->pending);
    if (need_http) {
        RLAIF_TRY(rlaif_http_open(&j->http, inflight, rlaif_cfg_float(cfg, "judge.connect_timeout"),
                                  rlaif_cfg_float(cfg, "judge.timeout")));
        rlaif_http_on_complete(j->http, rlaif_judge_on_complete, j);
        rlaif_adapt_init(&j->adapt, inflight, rlaif_cfg_bool(cfg, "judge.adaptive"), rlaif_now());
        j->connections = inflight;
    }
    char dir[4096];
    if (journal_dir && *journal_dir)
        snprintf(dir, sizeof dir, "%s", journal_dir);
    else if (*rlaif_cfg_str(cfg, "judge.journal_dir"))
        snprintf(dir, sizeof dir, "%s", rlaif_cfg_str(cfg, "judge.journal_dir"));
    else
        snprintf(dir, sizeof dir, "%s/journal", rlaif_cfg_str(cfg, "run.out_dir"));
    RLAIF_TRY(rlaif_journal_open(&j->journal, dir, judge_rank));
    return 0;
}

int rlaif_judge_open(rlaif_judge **out, const rlaif_config *cfg, int judge_rank, int n_judge,
                     const char *journal_dir) {
    rlaif_judge *j = xcalloc(1, sizeof *j);
    j->n_judge = n_judge > 0 ? n_judge : 1;
    int rc = judge_setup(j, cfg, judge_rank, journal_dir);
    if (rc) {
        rlaif_judge_close(j);
        *out = NULL;
        return rlaif_error_context("opening the judge: ");
    }
    *out = j;
    return 0;
}

static void free_list(call *c) {
    while (c) {
        call *n = c->next;
        rlaif_judge_free_call(c);
        c = n;
    }
}

static void drop_call(void *c) {
    rlaif_judge_free_call(c);
}
static void drop_local(call *c) {
    rlaif_judge_free_call(c);
}

void rlaif_judge_close(rlaif_judge *j) {
    if (!j) return;
    if (j->http)
        rlaif_debug("judge: %d requests in flight at the end (ceiling %d), cut %ld times, base "
                    "latency %.3f s",
                    rlaif_adapt_limit(&j->adapt), j->adapt.max, j->adapt.cuts, j->adapt.base);
    rlaif_http_close(j->http, drop_call); /* in-flight calls are dropped */
    free_list(j->ready_head);
    free_list(j->delayed);
    if (j->slots)
        for (int i = 0; i < j->credit_max; i++) {
            pstate *ps = &j->slots[i];
            if (!ps->oc) continue;
            free(ps->prompt), free(ps->resp[0]), free(ps->resp[1]);
            for (int k = 0; k < 2 * j->nunits; k++) free(ps->oc[k].text);
            free(ps->oc);
            free(ps->res.explanation);
        }
    rlaif_journal_close(j->journal);
    for (int e = 0; e < j->nep; e++) {
        endpoint *ep = &j->ep[e];
        rlaif_local_close(ep->local, drop_local);
        free(ep->e.base_url), free(ep->e.model), free(ep->e.anthropic_version), free(ep->url);
        if (ep->key) memset(ep->key, 0, strlen(ep->key));
        free(ep->key);
        curl_slist_free_all(ep->headers);
    }
    for (int t = 0; t < j->ntpl; t++) rlaif_judge_template_free(&j->tpl[t]);
    free(j->pending);
    free(j->ep), free(j->stats), free(j->tpl), free(j->fewshot), free(j->slots), free(j);
}
