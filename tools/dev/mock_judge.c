/* mock_judge.c - an OpenAI-compatible (and Anthropic Messages) judge server
 * on loopback, for tests, benchmarks and demos. Answers come from the builtin
 * judge (the same code the client's builtin backend runs) or a fixed rule;
 * faults are injected at a rate: 429 with Retry-After, 500/502/503, hangs past
 * the client's timeout, dropped connections, malformed and truncated JSON,
 * both error shapes, finish_reason length, content filter, quota, bad request,
 * a 503 saying x-should-retry: false and a 400 saying x-should-retry: true.
 * The Retry-After hint comes as retry-after-ms + retry-after (default), as
 * whole seconds only, or as an HTTP date. An account rate limit (--rl-limit K
 * requests per --rl-window S) answers 429 beyond it and, unless --rl-headers
 * none, announces x-ratelimit-remaining/reset-{requests|tokens} on every
 * answer; a request arriving well after the server announced that nothing is
 * left in the window counts as "ignored_limit".
 *
 * It counts what a provider would bill: a good answer counts as delivered
 * once the client has read it: the next request on the connection, or a
 * clean close after the client's kernel acknowledged every byte of it. A
 * client that dies with the answer unread resets the connection: at once
 * when the answer sat unread in its socket, or when the answer reaches a
 * socket it had already closed, which can come after its FIN (settle_closing
 * waits for one or the other, with no clock).
 * A request whose answer was already delivered is a "paid repeat": the
 * journal exists to keep that at zero. GET /stats returns the counters;
 * GET /stats?settled=1 waits (up to 10 s) until no answer's fate is open,
 * which is what a test reads after its client died or exited;
 * GET /arrivals when each request arrived (seconds since the server started)
 * and the tokens billed for it (0 unless a good answer), to measure a
 * client's request and token rates.
 *
 *   mock_judge [--port N] [--port-file F] [--latency S] [--fault-rate R]
 *              [--faults k1,k2] [--retry-after-ms N] [--seed N] [--flip-prob P]
 *              [--first-bias P] [--rule builtin|a|b|none] [--key-env VAR]
 *              [--idle-exit S] [--retry-after-form ms|seconds|date]
 *              [--rl-limit K --rl-window S [--rl-headers requests|tokens|none]]
 *              [--slots N [--keepalive S]] [--ctx TOKENS]
 * --slots emulates a server with N worker threads where extra connections
 * queue (serve_slots); --ctx one that silently cuts prompts to TOKENS and
 * reports the cut count as usage.prompt_tokens, like llama-server.
 * Single-threaded: one poll loop over non-blocking sockets. */
#include "rlaif/judge/judge.h"
#include "rlaif/core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    F_429,
    F_500,
    F_502,
    F_503,
    F_HANG,
    F_DROP,
    F_MALFORMED,
    F_TRUNCATED,
    F_ERR_OPENAI,
    F_ERR_VLLM,
    F_LENGTH,
    F_FILTER,
    F_QUOTA,
    F_BADREQ,
    F_NORETRY,
    F_RETRY400,
    NFAULT
};
static const char *fault_names[NFAULT] = {
    "429",        "500",      "502",    "503",    "hang",  "drop",   "malformed", "truncated",
    "err_openai", "err_vllm", "length", "filter", "quota", "badreq", "noretry",   "retry400"};

static struct {
    double latency, fault_rate, idle_exit, rl_window, keepalive;
    int faults[NFAULT], nfaults, retry_after_ms, rl_limit, slots;
    long ctx; /* --ctx: prompt tokens read at most (the rest silently cut) */
    rlaif_builtin_opts judge;
    const char *rule, *key, *retry_form, *rl_headers;
    uint64_t seed;
} opt = {.latency = 0.0,
         .idle_exit = 600,
         .keepalive = 5.0,
         .retry_after_ms = 20,
         .rule = "builtin",
         .retry_form = "ms",
         .rl_headers = "requests"};

static struct {
    long requests, good, delivered, repeats, early, unauthorized, resets, stats_calls;
    long late_resets; /* first seen over 5 ms after the FIN: what a 5 ms rule could miscount */
    long bad_headers, over_limit, ignored_limit, assistant_turns;
    long fault[NFAULT];
} st;

/* Arrival time and billed tokens of every request, in order. */
static struct {
    double start, *t;
    long *tokens;
    size_t n, cap;
} arr;

static void record_arrival(double now) {
    if (arr.n == arr.cap) {
        arr.cap = arr.cap ? 2 * arr.cap : 1024;
        arr.t = realloc(arr.t, arr.cap * sizeof *arr.t);
        arr.tokens = realloc(arr.tokens, arr.cap * sizeof *arr.tokens);
        if (!arr.t || !arr.tokens) abort();
    }
    arr.t[arr.n] = now - arr.start;
    arr.tokens[arr.n++] = 0;
}

/* The account rate limit: the current window, its count, and when the
 * server first told the client that nothing is left in it. */
static struct {
    double start;
    long window, count;
    double zero_announced;
} rl = {.zero_announced = -1};

/* ------------------------------------------------- request-key table */

typedef struct {
    uint64_t key;
    int delivered;
    double not_before; /* a retry hint we gave: arriving earlier is an early retry */
} kent;
static kent *tab;
static size_t ntab, used;

static kent *lookup(uint64_t key) {
    if (2 * (used + 1) > ntab) {
        kent *old = tab;
        size_t on = ntab;
        ntab = ntab ? 2 * ntab : 4096;
        tab = calloc(ntab, sizeof *tab);
        if (!tab) abort();
        used = 0;
        for (size_t i = 0; i < on; i++)
            if (old[i].key) *lookup(old[i].key) = old[i];
        free(old);
    }
    if (!key) key = 1;
    size_t i = (size_t)key & (ntab - 1);
    while (tab[i].key && tab[i].key != key) i = (i + 1) & (ntab - 1);
    if (!tab[i].key) tab[i].key = key, used++;
    return &tab[i];
}

/* ---------------------------------------------------------- connections */

typedef struct {
    int fd;
    char *in;
    size_t nin, capin;
    char *out;
    size_t nout, off;
    double due;                   /* when the prepared answer may go; INFINITY = hang */
    int bound;                    /* --slots: this connection holds a worker slot */
    double queued_at, idle_since; /* --slots: accepted at; last answer sent at */
    double eof_at;   /* the client closed: decide a pending delivery (settle_closing) */
    double stats_by; /* a GET /stats?settled=1 waiting: answer by then at the latest */
    int waiting, close_after;
    uint64_t pending_key; /* a good answer written, not yet known to be read */
} conn;

static conn *conns;
static int nconn, capconn, nbound;

static void commit_delivery(conn *c) {
    if (!c->pending_key) return;
    lookup(c->pending_key)->delivered++;
    st.delivered++;
    c->pending_key = 0;
}

static void drop_conn(int i, int reset) {
    conn *c = &conns[i];
    /* A reset means the client died with the answer unread; an answer not yet
     * (fully) sent was never delivered either. */
    if (reset)
        st.resets += c->pending_key != 0;
    else if (!c->waiting && !c->nout)
        commit_delivery(c);
    nbound -= c->bound;
    close(c->fd);
    free(c->in), free(c->out);
    conns[i] = conns[--nconn];
}

static void respond(conn *c, int status, const char *reason, const char *extra_headers,
                    const char *body, size_t len) {
    size_t cap = len + 512 + (extra_headers ? strlen(extra_headers) : 0);
    c->out = malloc(cap);
    if (!c->out) abort();
    int h = snprintf(c->out, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "%s\r\n",
                     status, reason, len, extra_headers ? extra_headers : "");
    memcpy(c->out + h, body, len);
    c->nout = (size_t)h + len;
    c->off = 0;
}

static void respond_json(conn *c, int status, const char *reason, const char *hdr, json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    respond(c, status, reason, hdr, s, strlen(s));
    free(s);
}

/* ------------------------------------------------------------- answers */

static json_t *logprobs_json(double pa) {
    json_t *top = json_array();
    if (isnan(pa)) { /* the judge answered something else: no A or B on top */
        json_array_append_new(top, json_pack("{s:s, s:f}", "token", "The", "logprob", -0.1));
        json_array_append_new(top, json_pack("{s:s, s:f}", "token", "Both", "logprob", -2.5));
        return json_pack("{s:[{s:s, s:f, s:o}]}", "content", "token", "The", "logprob", -0.1,
                         "top_logprobs", top);
    }
    struct {
        const char *tok;
        double p;
    } t[] = {{"A", 0.75 * pa},
             {" A", 0.2 * pa},
             {"B", 0.75 * (1 - pa)},
             {" b", 0.2 * (1 - pa)},
             {"The", 0.05}};
    for (int i = 0; i < 5; i++)
        json_array_append_new(top, json_pack("{s:s, s:f}", "token", t[i].tok, "logprob",
                                             t[i].p > 0 ? log(t[i].p) : -100.0));
    return json_pack("{s:[{s:s, s:f, s:o}]}", "content", "token", pa >= 0.5 ? "A" : "B", "logprob",
                     log(pa >= 0.5 ? 0.75 * pa : 0.75 * (1 - pa)), "top_logprobs", top);
}

static char *answer_text(json_t *req, int *mode_out, double *pa) {
    json_t *msgs = json_object_get(req, "messages");
    const char *user = "";
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && !strcmp(role, "user"))
            user = json_string_value(json_object_get(m, "content")) ?: "";
        if (role && !strcmp(role, "assistant")) st.assistant_turns++; /* few-shot answers */
    }
    rlaif_judge_mode mode = RLAIF_JM_VERDICT;
    char *blk[3] = {0};
    int nb = rlaif_judge_unfence(user, blk, 3);
    for (int i = 0; i < nb; i++) free(blk[i]);
    if (json_is_true(json_object_get(req, "logprobs")))
        mode = RLAIF_JM_LOGPROB;
    else if (nb == 2)
        mode = RLAIF_JM_SCORE;
    else if (strstr(user, "Scores A:"))
        mode = RLAIF_JM_RUBRIC;
    *mode_out = (int)mode;
    *pa = NAN;
    if (!strcmp(opt.rule, "builtin")) return rlaif_judge_builtin_answer(user, mode, &opt.judge, pa);
    char *s = malloc(64);
    if (!s) abort();
    if (!strcmp(opt.rule, "none")) /* logprob mode: a first token that is no label */
        snprintf(s, 64, mode == RLAIF_JM_LOGPROB ? "The" : "Both responses have merits.");
    else {
        int b = !strcmp(opt.rule, "b");
        *pa = b ? 0.1 : 0.9;
        snprintf(s, 64, mode == RLAIF_JM_LOGPROB ? "%c" : "The better response is: %c",
                 b ? 'B' : 'A');
    }
    return s;
}

/* x-ratelimit-* headers announcing the account limit (empty without one). */
static const char *rl_header(double now) {
    static char h[160];
    h[0] = 0;
    if (opt.rl_limit <= 0 || !strcmp(opt.rl_headers, "none")) return h;
    long left = opt.rl_limit - rl.count;
    if (left <= 0 && rl.zero_announced < 0) rl.zero_announced = now;
    double reset = rl.start + (double)(rl.window + 1) * opt.rl_window - now;
    snprintf(h, sizeof h, "x-ratelimit-remaining-%s: %ld\r\nx-ratelimit-reset-%s: %.3fs\r\n",
             opt.rl_headers, left > 0 ? left : 0, opt.rl_headers, reset > 0 ? reset : 0);
    return h;
}

static void good_answer(conn *c, json_t *req, int anthropic, int fault, size_t req_len,
                        uint64_t key, double now) {
    int mode;
    double pa;
    char *text = answer_text(req, &mode, &pa);
    const char *finish = "stop";
    if (fault == F_LENGTH) text[strlen(text) / 2] = 0, finish = "length";
    json_t *o;
    long tin = (long)req_len / 4, tout = (long)strlen(text) / 4 + 1;
    if (opt.ctx > 0 && tin > opt.ctx) tin = opt.ctx; /* llama-server cuts to its context */
    if (anthropic) {
        o = json_pack("{s:s, s:s, s:s, s:[{s:s, s:s}], s:s, s:{s:i, s:i}}", "id", "msg_mock",
                      "type", "message", "role", "assistant", "content", "type", "text", "text",
                      text, "stop_reason", fault == F_LENGTH ? "max_tokens" : "end_turn", "usage",
                      "input_tokens", tin, "output_tokens", tout);
    } else {
        json_t *msg = json_pack("{s:s, s:s}", "role", "assistant", "content", text);
        if (fault == F_FILTER) {
            json_object_set_new(msg, "content", json_null());
            json_object_set_new(msg, "refusal", json_string("I can't help with that."));
            finish = "content_filter";
        }
        json_t *choice =
            json_pack("{s:i, s:o, s:s}", "index", 0, "message", msg, "finish_reason", finish);
        if (mode == RLAIF_JM_LOGPROB) json_object_set_new(choice, "logprobs", logprobs_json(pa));
        char id[64];
        snprintf(id, sizeof id, "chatcmpl-%016llx", (unsigned long long)key);
        o = json_pack("{s:s, s:s, s:s, s:[o], s:{s:i, s:i, s:i}, s:s}", "id", id, "object",
                      "chat.completion", "model",
                      json_string_value(json_object_get(req, "model")) ?: "mock", "choices", choice,
                      "usage", "prompt_tokens", tin, "completion_tokens", tout, "total_tokens",
                      tin + tout, "system_fingerprint", "fp_mock");
    }
    free(text);
    if (arr.n) arr.tokens[arr.n - 1] = tin + tout; /* handle() recorded this request last */
    respond_json(c, 200, "OK",
                 opt.rl_limit > 0 ? rl_header(now) : "x-ratelimit-remaining-requests: 100000\r\n",
                 o);
}

static void error_answer(conn *c, int fault, int anthropic, kent *k, double now) {
    char hdr[160];
    double wait = opt.retry_after_ms / 1000.0;
    switch (fault) {
    case F_429:
        if (!strcmp(opt.retry_form, "seconds")) { /* whole seconds only */
            snprintf(hdr, sizeof hdr, "retry-after: %d\r\n", (int)ceil(wait));
            k->not_before = now + ceil(wait) - 0.02;
        } else if (!strcmp(opt.retry_form, "date")) { /* an HTTP date, 1 s resolution */
            double wall = rlaif_wall_time();
            time_t at = (time_t)floor(wall) + 1 + (time_t)ceil(wait);
            struct tm tm;
            gmtime_r(&at, &tm);
            int w =
                (int)strftime(hdr, sizeof hdr, "retry-after: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
            if (w <= 0) abort();
            k->not_before = now + ((double)at - wall) - 0.02;
        } else {
            snprintf(hdr, sizeof hdr, "retry-after-ms: %d\r\nretry-after: %d\r\n",
                     opt.retry_after_ms, (int)ceil(wait));
            k->not_before = now + wait * 0.9;
        }
        respond_json(c, 429, "Too Many Requests", hdr,
                     anthropic ? json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
                                           "rate_limit_error", "message", "rate limited")
                               : json_pack("{s:{s:s, s:s, s:s}}", "error", "message",
                                           "Rate limit reached", "type", "requests", "code",
                                           "rate_limit_exceeded"));
        break;
    case F_500:
        respond(c, 500, "Internal Server Error", NULL, "", 0);
        break;
    case F_502:
        respond(c, 502, "Bad Gateway", NULL, "<html>bad gateway</html>", 24);
        break;
    case F_503:
        respond(c, 503, "Service Unavailable", NULL, "", 0);
        break;
    case F_ERR_OPENAI:
        respond_json(c, 500, "Internal Server Error", NULL,
                     json_pack("{s:{s:s, s:s, s:n}}", "error", "message",
                               "The server had an error while processing your request.", "type",
                               "server_error", "code"));
        break;
    case F_ERR_VLLM: /* vLLM's flat shape, integer code */
        respond_json(c, 503, "Service Unavailable", NULL,
                     json_pack("{s:s, s:s, s:s, s:n, s:i}", "object", "error", "message",
                               "The engine is overloaded", "type", "ServiceUnavailableError",
                               "param", "code", 503));
        break;
    case F_QUOTA:
        respond_json(c, 429, "Too Many Requests", "x-should-retry: true\r\n",
                     json_pack("{s:{s:s, s:s, s:s}}", "error", "message",
                               "You exceeded your current quota.", "type", "insufficient_quota",
                               "code", "insufficient_quota"));
        break;
    case F_BADREQ:
        respond_json(c, 400, "Bad Request", NULL,
                     json_pack("{s:{s:s, s:s, s:s}}", "error", "message",
                               "Invalid value for 'messages'.", "type", "invalid_request_error",
                               "code", "invalid_value"));
        break;
    case F_MALFORMED:
        respond(c, 200, "OK", NULL, "{\"choices\": [oops", 17);
        break;
    case F_NORETRY: /* the server says a retry cannot help, whatever the status */
        respond_json(c, 503, "Service Unavailable", "x-should-retry: false\r\n",
                     json_pack("{s:{s:s, s:s}}", "error", "message", "Request rejected for good.",
                               "type", "server_error"));
        break;
    case F_RETRY400: /* a 4xx the server says is worth retrying */
        respond_json(c, 400, "Bad Request", "x-should-retry: true\r\n",
                     json_pack("{s:{s:s, s:s}}", "error", "message", "Transient routing error.",
                               "type", "invalid_request_error"));
        break;
    }
}

/* Good answers sent whose fate (read or not) is not known yet: on an open
 * connection until its next request or close, on a closing one until
 * settle_closing decides. */
static long open_fates(void) {
    long n = 0;
    for (int i = 0; i < nconn; i++) n += conns[i].pending_key != 0;
    return n;
}

static void stats_answer(conn *c) {
    json_t *f = json_object();
    for (int i = 0; i < NFAULT; i++)
        if (st.fault[i]) json_object_set_new(f, fault_names[i], json_integer(st.fault[i]));
    long pending = open_fates();
    respond_json(
        c, 200, "OK", NULL,
        json_pack("{s:i, s:i, s:i, s:i, s:b, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o}",
                  "requests", st.requests, "good", st.good, "delivered", st.delivered, "pending",
                  pending, "settled", pending == 0, "paid_repeats", st.repeats, "early_retries",
                  st.early, "unauthorized", st.unauthorized, "resets", st.resets, "late_resets",
                  st.late_resets, "bad_headers", st.bad_headers, "over_limit", st.over_limit,
                  "ignored_limit", st.ignored_limit, "assistant_turns", st.assistant_turns,
                  "faults", f));
}

static void arrivals_answer(conn *c) {
    json_t *t = json_array(), *k = json_array();
    for (size_t i = 0; i < arr.n; i++) {
        json_array_append_new(t, json_real(arr.t[i]));
        json_array_append_new(k, json_integer(arr.tokens[i]));
    }
    respond_json(c, 200, "OK", NULL, json_pack("{s:o, s:o}", "t", t, "tokens", k));
}

/* A whole request is in c->in: decide and prepare the answer. */
static void handle(conn *c, const char *head, const char *body, size_t blen, double now) {
    commit_delivery(c); /* a new request: the previous answer was read */
    char method[8] = "", path[256] = "";
    sscanf(head, "%7s %255s", method, path);
    if (!strcmp(method, "GET") && !strcmp(path, "/stats?settled=1")) {
        st.stats_calls++; /* answered by settle_stats */
        c->waiting = 1, c->due = INFINITY, c->stats_by = now + 10;
        return;
    }
    if (!strcmp(method, "GET") && (!strcmp(path, "/stats") || !strcmp(path, "/arrivals"))) {
        st.stats_calls++;
        if (path[1] == 's')
            stats_answer(c);
        else
            arrivals_answer(c);
        c->due = now;
        c->waiting = 1;
        return;
    }
    st.requests++;
    record_arrival(now);
    int anthropic = strlen(path) >= 9 && !strcmp(path + strlen(path) - 9, "/messages");
    c->due = now + opt.latency;
    c->waiting = 1;
    if (opt.key) { /* the client must send the key, in the right header */
        char want[512];
        snprintf(want, sizeof want,
                 anthropic ? "x-api-key: %s\r\n" : "Authorization: Bearer %s\r\n", opt.key);
        if (!strcasestr(head, want)) {
            /* like real providers, echo (part of) the key that was sent: the
             * client must scrub it from every message it records */
            char msg[600] = "Incorrect API key provided: (none)";
            const char *got = strcasestr(head, anthropic ? "x-api-key: " : "Bearer ");
            if (got) {
                got += anthropic ? 11 : 7;
                snprintf(msg, sizeof msg, "Incorrect API key provided: %.*s.",
                         (int)strcspn(got, "\r\n"), got);
            }
            st.unauthorized++;
            respond_json(c, 401, "Unauthorized", NULL,
                         json_pack("{s:{s:s, s:s, s:s}}", "error", "message", msg, "type",
                                   "invalid_request_error", "code", "invalid_api_key"));
            return;
        }
    }
    if (anthropic && !strcasestr(head, "\r\nanthropic-version: ")) {
        st.bad_headers++; /* the Messages API refuses a request without it */
        respond_json(c, 400, "Bad Request", NULL,
                     json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
                               "invalid_request_error", "message",
                               "anthropic-version: header is required"));
        return;
    }
    if (opt.rl_limit > 0) { /* the account limit, in fixed windows */
        long w = (long)floor((now - rl.start) / opt.rl_window);
        if (w != rl.window) rl.window = w, rl.count = 0, rl.zero_announced = -1;
        /* the client was told nothing is left here, had time to read it, and
         * asks anyway */
        if (rl.zero_announced >= 0 && now > rl.zero_announced + opt.latency + 0.1)
            st.ignored_limit++;
        if (rl.count >= opt.rl_limit) {
            st.over_limit++;
            respond_json(c, 429, "Too Many Requests", rl_header(now),
                         json_pack("{s:{s:s, s:s, s:s}}", "error", "message",
                                   "Rate limit reached for requests", "type", "requests", "code",
                                   "rate_limit_exceeded"));
            return;
        }
        rl.count++;
    }
    uint64_t key = rlaif_hash64(body, blen, 99);
    kent *k = lookup(key);
    if (k->delivered) st.repeats++;
    if (now < k->not_before) st.early++;
    rlaif_rng rng;
    rlaif_rng_init(&rng, opt.seed, 99, (uint32_t)(st.requests >> 32), (uint32_t)st.requests);
    int fault = -1;
    if (opt.nfaults && rlaif_rng_uniform_double(&rng) < opt.fault_rate)
        fault = opt.faults[rlaif_rng_below(&rng, (uint32_t)opt.nfaults)];
    if (fault >= 0) st.fault[fault]++;
    if (fault == F_HANG) {
        c->due = INFINITY;
        return;
    }
    if (fault == F_DROP) {
        c->close_after = 1;
        c->nout = c->off = 0;
        return;
    }
    json_error_t err;
    json_t *req = json_loadb(body, blen, 0, &err);
    if (!req) {
        respond_json(c, 400, "Bad Request", NULL,
                     json_pack("{s:{s:s, s:s}}", "error", "message", "request is not JSON", "type",
                               "invalid_request_error"));
        return;
    }
    if (fault < 0 || fault == F_LENGTH || fault == F_FILTER || fault == F_TRUNCATED) {
        good_answer(c, req, anthropic, fault, blen, key, now);
        if (fault == F_TRUNCATED) { /* cut the JSON, with a matching Content-Length */
            char *b = strstr(c->out, "\r\n\r\n") + 4;
            size_t blen2 = c->nout - (size_t)(b - c->out);
            char *cl = strstr(c->out, "Content-Length: ") + 16;
            char num[32];
            int w = snprintf(num, sizeof num, "%zu", blen2 / 2);
            memset(cl, ' ', (size_t)(strchr(cl, '\r') - cl)); /* pad: header length unchanged */
            memcpy(cl, num, (size_t)w);
            c->nout -= blen2 - blen2 / 2;
        } else {
            st.good++;
            c->pending_key = key; /* delivered once the client reads it (commit_delivery) */
        }
    } else {
        error_answer(c, fault, anthropic, k, now);
    }
    json_decref(req);
}

/* Parse what arrived; returns -1 to drop the connection. */
static int try_request(conn *c, double now) {
    if (c->waiting || c->nout || (opt.slots > 0 && !c->bound)) return 0;
    c->in[c->nin] = 0;
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end) return c->nin > 65536 ? -1 : 0;
    size_t hlen = (size_t)(end - c->in) + 4, blen = 0;
    char *cl = strcasestr(c->in, "\r\ncontent-length:");
    if (cl && cl < end) blen = strtoul(cl + 17, NULL, 10);
    if (c->nin < hlen + blen) return 0;
    char *head = strndup(c->in, hlen);
    char *body = strndup(c->in + hlen, blen);
    handle(c, head, body, blen, now);
    free(head), free(body);
    memmove(c->in, c->in + hlen + blen, c->nin - hlen - blen);
    c->nin -= hlen + blen;
    return 0;
}

static volatile sig_atomic_t stop_flag;
static void on_signal(int s) {
    (void)s;
    stop_flag = 1;
}

static int parse_faults(const char *list) {
    char *copy = strdup(list), *save = NULL;
    opt.nfaults = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = -1;
        for (int i = 0; i < NFAULT; i++)
            if (!strcmp(t, fault_names[i])) k = i;
        if (!strcmp(t, "all")) {
            for (int i = 0; i < NFAULT; i++) opt.faults[opt.nfaults++] = i;
            continue;
        }
        if (k < 0) {
            fprintf(stderr, "mock_judge: unknown fault '%s'\n", t);
            free(copy);
            return -1;
        }
        opt.faults[opt.nfaults++] = k;
    }
    free(copy);
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: mock_judge [--port N] [--port-file F] [--latency S] [--fault-rate R]\n"
                    "  [--faults all|429,500,502,503,hang,drop,malformed,truncated,err_openai,\n"
                    "  err_vllm,length,filter,quota,badreq,noretry,retry400] [--retry-after-ms N]\n"
                    "  [--retry-after-form ms|seconds|date] [--seed N] [--flip-prob P]\n"
                    "  [--first-bias P] [--rule builtin|a|b|none] [--key-env VAR] [--idle-exit S]\n"
                    "  [--rl-limit K --rl-window S [--rl-headers requests|tokens|none]]\n"
                    "  [--slots N [--keepalive S]] [--ctx TOKENS]\n");
}

static int parse_args(int argc, char **argv, int *port, const char **port_file) {
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return -1;
        if (!strcmp(a, "--port"))
            *port = atoi(v);
        else if (!strcmp(a, "--port-file"))
            *port_file = v;
        else if (!strcmp(a, "--latency"))
            opt.latency = atof(v);
        else if (!strcmp(a, "--fault-rate"))
            opt.fault_rate = atof(v);
        else if (!strcmp(a, "--faults")) {
            if (parse_faults(v)) return -1;
        } else if (!strcmp(a, "--retry-after-ms"))
            opt.retry_after_ms = atoi(v);
        else if (!strcmp(a, "--seed"))
            opt.seed = strtoull(v, NULL, 10), opt.judge.seed = opt.seed;
        else if (!strcmp(a, "--flip-prob"))
            opt.judge.flip_prob = atof(v);
        else if (!strcmp(a, "--first-bias"))
            opt.judge.first_bias = atof(v);
        else if (!strcmp(a, "--rule"))
            opt.rule = v;
        else if (!strcmp(a, "--key-env"))
            opt.key = getenv(v);
        else if (!strcmp(a, "--idle-exit"))
            opt.idle_exit = atof(v);
        else if (!strcmp(a, "--retry-after-form") &&
                 (!strcmp(v, "ms") || !strcmp(v, "seconds") || !strcmp(v, "date")))
            opt.retry_form = v;
        else if (!strcmp(a, "--ctx"))
            opt.ctx = atol(v);
        else if (!strcmp(a, "--slots"))
            opt.slots = atoi(v);
        else if (!strcmp(a, "--keepalive"))
            opt.keepalive = atof(v);
        else if (!strcmp(a, "--rl-limit"))
            opt.rl_limit = atoi(v);
        else if (!strcmp(a, "--rl-window"))
            opt.rl_window = atof(v);
        else if (!strcmp(a, "--rl-headers") &&
                 (!strcmp(v, "requests") || !strcmp(v, "tokens") || !strcmp(v, "none")))
            opt.rl_headers = v;
        else
            return -1;
    }
    return 0;
}

/* Listen on 127.0.0.1:port (0 = any free port) and publish the port. */
static int open_listener(int port, const char *port_file) {
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* loopback only, always */
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) || listen(ls, 512)) {
        perror("mock_judge: bind/listen");
        return -1;
    }
    socklen_t sl = sizeof sa;
    getsockname(ls, (struct sockaddr *)&sa, &sl);
    fcntl(ls, F_SETFL, O_NONBLOCK);
    if (!port_file) return ls;
    char tmp[4096]; /* written then renamed: a reader never sees half a number */
    snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", ntohs(sa.sin_port)) < 0 || fclose(f) || rename(tmp, port_file)) {
        perror("mock_judge: port file");
        return -1;
    }
    return ls;
}

static struct pollfd *pfd;

/* --slots N emulates a server with N worker threads, like llama.cpp's
 * llama-server (cpp-httplib: a pool of n HTTP threads, each serving one
 * connection at a time for as long as it is kept alive). A connection holds
 * a slot from the time a slot takes it until it has been idle --keepalive
 * seconds (the server then closes it) or the client closes it; connections
 * beyond N wait, first come first served, with their requests unread. */
static void serve_slots(double now) {
    for (int i = nconn - 1; i >= 0; i--) { /* idle past the keep-alive: closed */
        conn *c = &conns[i];
        if (c->bound && !c->waiting && !c->nout && !c->nin && c->eof_at <= 0 &&
            now - c->idle_since >= opt.keepalive)
            drop_conn(i, 0);
    }
    while (nbound < opt.slots) {
        int k = -1;
        for (int i = 0; i < nconn; i++)
            if (!conns[i].bound && conns[i].eof_at <= 0 &&
                (k < 0 || conns[i].queued_at < conns[k].queued_at))
                k = i;
        if (k < 0) return;
        conns[k].bound = 1, conns[k].idle_since = now;
        nbound++;
        if (conns[k].nin) try_request(&conns[k], now);
    }
}

static void grow_conns(void) {
    if (nconn + 1 <= capconn) return;
    capconn = 2 * capconn + 64;
    conns = realloc(conns, sizeof *conns * (size_t)capconn);
    pfd = realloc(pfd, sizeof *pfd * (size_t)(capconn + 1));
    if (!conns || !pfd) abort();
}

/* The client closed (FIN) after our good answer was sent: 1 when it read
 * the answer, -1 when it died with it unread, 0 not known yet. A process
 * that closes a socket with unread data resets it instead of sending a FIN,
 * so a FIN says every byte that had arrived was read; the answer had
 * arrived if the client's kernel acknowledged all of it (SIOCOUTQ 0). An
 * answer that reaches a socket already closed draws a reset, not an
 * acknowledgement, and that reset can come after the FIN: a loaded machine
 * may defer loopback's packet processing for milliseconds, so no time
 * window decides this (a 5 ms one once counted such an answer as read). */
static int settle_closing(conn *c, double now) {
    int err = 0, unacked = 0;
    socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        st.late_resets += now - c->eof_at > 0.005; /* a 5 ms window counted these as read */
        return -1;
    }
    if (ioctl(c->fd, SIOCOUTQ, &unacked) == 0 && unacked == 0) return 1;
    if (now - c->eof_at < 10) return 0;
    fprintf(stderr,
            "mock_judge: %d bytes of an answer neither acknowledged nor reset 10 s "
            "after the client's FIN: counted unread\n",
            unacked);
    return -1;
}

/* GET /stats?settled=1 answers once no good answer's fate is open (the
 * client died or exited, and every close is settled), or after 10 s. */
static void settle_stats(conn *c, double now, double *next) {
    if (open_fates() && now < c->stats_by) {
        if (now + 0.001 < *next) *next = now + 0.001;
        return;
    }
    c->stats_by = 0;
    stats_answer(c);
    c->due = now;
}

/* Fill pfd[1..] for every connection; release due answers, settle closing
 * connections. Returns when the next timed event is due. */
static double build_pollset(double now) {
    double next = now + 1.0;
    for (int i = 0; i < nconn; i++) {
        conn *c = &conns[i];
        short ev = POLLIN;
        if (c->stats_by > 0) settle_stats(c, now, &next);
        if (c->waiting && c->due <= now) { /* the answer is due */
            c->waiting = 0;
            if (c->close_after && !c->nout) {
                drop_conn(i--, 0);
                continue;
            }
        }
        if (c->eof_at > 0) {
            int fate = settle_closing(c, now);
            if (fate) {
                drop_conn(i--, fate < 0);
                continue;
            }
            pfd[i + 1] = (struct pollfd){.fd = c->fd, .events = 0};
            if (now + 0.001 < next) next = now + 0.001;
            continue;
        }
        if (c->waiting && c->due < next) next = c->due;
        if (c->bound && !c->waiting && !c->nout && c->idle_since + opt.keepalive < next)
            next = c->idle_since + opt.keepalive;
        if (!c->waiting && c->nout) ev |= POLLOUT;
        pfd[i + 1] = (struct pollfd){.fd = c->fd, .events = ev};
    }
    return next;
}

/* Send what is due; 0 to keep the connection, else drop it (-1 reset, 1 clean). */
static int conn_write(conn *c) {
    /* a client that died while we waited already sent its FIN: what we send
     * now is never read */
    char peek;
    if (c->off == 0 && recv(c->fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) == 0) return -1;
    ssize_t w = send(c->fd, c->out + c->off, c->nout - c->off, MSG_NOSIGNAL);
    if (w < 0 && errno != EAGAIN) return -1;
    if (w > 0) c->off += (size_t)w;
    if (c->off < c->nout) return 0;
    free(c->out);
    c->out = NULL;
    c->nout = c->off = 0;
    c->idle_since = rlaif_now();
    return c->close_after ? 1 : 0;
}

/* Read and handle a request; 0 to keep the connection, else as conn_write. */
static int conn_read(conn *c, double now) {
    if (c->nin + 4097 > c->capin) {
        c->capin = 2 * c->capin + 8192;
        c->in = realloc(c->in, c->capin);
        if (!c->in) abort();
    }
    ssize_t r = recv(c->fd, c->in + c->nin, c->capin - c->nin - 1, 0);
    if (r == 0 && c->pending_key && !c->waiting && !c->nout) {
        /* A FIN after our answer: either the client read it and closed, or
         * it had died and our answer draws a reset that may still be on its
         * way (settle_closing decides) */
        c->eof_at = now;
        return 0;
    }
    if (r == 0) return 1;
    if (r < 0) return errno == EAGAIN ? 0 : -1; /* ECONNRESET: the answer died unread */
    c->nin += (size_t)r;
    return try_request(c, now) < 0 ? 1 : 0;
}

static void accept_all(int ls, double now) {
    int fd, one = 1;
    while ((fd = accept(ls, NULL, NULL)) >= 0) {
        grow_conns();
        fcntl(fd, F_SETFL, O_NONBLOCK);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[nconn++] = (conn){.fd = fd, .queued_at = now};
    }
}

int main(int argc, char **argv) {
    int port = 0;
    const char *port_file = NULL;
    if (parse_args(argc, argv, &port, &port_file) || (opt.rl_limit > 0 && opt.rl_window <= 0))
        return usage(), 64;
    rl.start = arr.start = rlaif_now();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int ls = open_listener(port, port_file);
    if (ls < 0) return 74;
    double last_activity = rlaif_now();
    while (!stop_flag) {
        double now = rlaif_now();
        if (now - last_activity > opt.idle_exit) break;
        grow_conns();
        pfd[0] = (struct pollfd){.fd = ls, .events = POLLIN};
        if (opt.slots > 0) serve_slots(now);
        double next = build_pollset(now);
        int ms = (int)ceil((next - now) * 1000);
        if (poll(pfd, (nfds_t)nconn + 1, ms < 0 ? 0 : ms) < 0 && errno != EINTR) break;
        now = rlaif_now();
        /* backwards: drop_conn moves the last connection into slot i */
        for (int i = nconn - 1; i >= 0; i--) {
            conn *c = &conns[i];
            short re = pfd[i + 1].revents;
            if (!re || c->eof_at > 0) continue; /* closing: decided in build_pollset */
            last_activity = now;
            int rc = re & POLLOUT && c->nout ? conn_write(c) : 0;
            if (!rc && re & (POLLIN | POLLHUP | POLLERR)) rc = conn_read(c, now);
            if (rc) drop_conn(i, rc < 0);
        }
        if (pfd[0].revents & POLLIN) {
            accept_all(ls, now);
            last_activity = now;
        }
    }
    while (nconn) drop_conn(nconn - 1, 0);
    close(ls);
    free(conns), free(pfd), free(tab), free(arr.t), free(arr.tokens);
    return 0;
}
