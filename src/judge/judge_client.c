/* judge_client.c - the HTTP side of the judge: one curl multi handle driving
 * up to max_inflight transfers, plus the pure pieces of the retry policy
 * (backoff, Retry-After, x-ratelimit-* resets, the retry decision) and the
 * token bucket, kept free of curl so they are unit-tested directly.
 *
 * Transfers reuse a fixed pool of easy handles (the multi handle keeps the
 * connections alive between them), so steady state allocates only the reply
 * buffers: that is what keeps a 640 req/s judge rank under a tenth of a core.
 *
 * The CA store is built once per rank, not per connection: libcurl (7.87+,
 * OpenSSL) caches it in the multi handle, but only when it comes from a CA
 * file alone, and Debian's libcurl also sets a default CA directory. Parsing
 * the 140-certificate bundle costs about 20 ms of CPU, which every new TLS
 * connection paid (every retry after a dropped connection, every failed
 * handshake). So when libcurl has a readable default CA bundle, the judge
 * drops the directory and verifies against the bundle alone, which on Debian
 * (update-ca-certificates) holds the same certificates. */
#include "rlaif/judge/judge.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"

#include <ctype.h>
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ------------------------------------------------------ retry policy */

double rlaif_backoff_delay(double base, double cap, int n, double u) {
    double d = base * ldexp(1.0, n < 60 ? n : 60);
    if (d > cap) d = cap;
    return d * (1.0 - 0.25 * u);
}

double rlaif_parse_retry_after(const char *v, double now_epoch) {
    while (*v == ' ') v++;
    if (isdigit((unsigned char)*v)) {
        char *end;
        double s = strtod(v, &end);
        while (*end == ' ' || *end == '\r' || *end == '\n') end++;
        return *end ? -1 : s;
    }
    time_t t = curl_getdate(v, NULL); /* RFC 7231 HTTP date */
    if (t < 0) return -1;
    double d = (double)t - now_epoch;
    return d > 0 ? d : 0;
}

double rlaif_parse_reset_duration(const char *v) {
    double total = 0;
    int parts = 0;
    while (*v == ' ') v++;
    while (*v && *v != '\r' && *v != '\n') {
        char *end;
        double x = strtod(v, &end);
        /* "-5s", "nan", "1e999s" (found by tests/fuzz/fuzz_judge.c): an
         * infinite reset would block the endpoint forever */
        if (end == v || !isfinite(x) || x < 0) return -1;
        v = end;
        if (!strncmp(v, "ms", 2))
            x /= 1000, v += 2;
        else if (*v == 'h')
            x *= 3600, v++;
        else if (*v == 'm')
            x *= 60, v++;
        else if (*v == 's')
            v++;
        else if (*v && *v != '\r' && *v != '\n')
            return -1;
        total += x;
        parts++;
    }
    return parts && isfinite(total) ? total : -1;
}

int rlaif_should_retry(long http, const char *code, const char *type, int x_should_retry) {
    /* quota: paying again later cannot help, whatever the server hints */
    if ((code && strstr(code, "insufficient_quota")) ||
        (type && strstr(type, "insufficient_quota")))
        return 0;
    if (x_should_retry >= 0) return x_should_retry;
    return http == 408 || http == 409 || http == 429 || http >= 500;
}

/* ------------------------------------------------------- token bucket */

void rlaif_bucket_init(rlaif_bucket *b, double per_minute, double now) {
    b->rate = per_minute / 60.0;
    b->burst = b->rate > 1.0 ? b->rate : 1.0; /* one second's worth */
    b->level = b->burst;
    b->last = now;
    b->blocked_until = 0;
}

static void refill(rlaif_bucket *b, double now) {
    if (now > b->last) b->level += (now - b->last) * b->rate;
    if (b->level > b->burst) b->level = b->burst;
    b->last = now;
}

int rlaif_bucket_take(rlaif_bucket *b, double amount, double now, double *wait) {
    *wait = 0;
    if (b->blocked_until > now) {
        *wait = b->blocked_until - now;
        return 0;
    }
    if (b->rate <= 0) return 1; /* no limit configured */
    refill(b, now);
    if (b->level >= amount || b->level >= b->burst) {
        b->level -= amount;
        return 1;
    }
    *wait = ((amount < b->burst ? amount : b->burst) - b->level) / b->rate;
    return 0;
}

void rlaif_bucket_refund(rlaif_bucket *b, double amount) {
    if (b->rate <= 0) return;
    b->level += amount;
    if (b->level > b->burst) b->level = b->burst;
}

void rlaif_bucket_feed(rlaif_bucket *b, double remaining, double reset, int n_ranks, double now) {
    if (remaining < 0) return;
    if (remaining < 1 && reset > 0) {
        if (now + reset > b->blocked_until) b->blocked_until = now + reset;
        return;
    }
    /* the server's count is for the whole account: our share of it */
    double share = remaining / (n_ranks > 0 ? n_ranks : 1);
    if (b->rate > 0) {
        refill(b, now);
        if (b->level > share) b->level = share;
    }
}

/* ------------------------------------------------------------ transfers */

typedef struct xfer {
    CURL *easy;
    void *user;
    char *body;
    size_t len, cap;
    double retry_after;
    int should_retry;
    double rl[4];
    int sheader; /* headers of the final response only (after 1xx) */
    struct rlaif_http *h;
    double started;
    char err[CURL_ERROR_SIZE]; /* curl's own words on a failed transfer */
    struct xfer *next_free;
} xfer;

struct rlaif_http {
    CURLM *multi;
    xfer *pool, *free_list;
    int n, inflight;
    long connect_ms, timeout_ms;
    rlaif_http_complete_fn on_complete;
    void *complete_ctx;
};

/* 1 if libcurl has a readable default CA bundle: then the CA directory is
 * dropped so that the CA store is cached (see the top of the file). */
static int ca_bundle_only(CURL *e) {
#if LIBCURL_VERSION_NUM >= 0x075400 /* CURLINFO_CAINFO: 7.84.0 */
    char *ca = NULL;
    return curl_easy_getinfo(e, CURLINFO_CAINFO, &ca) == CURLE_OK && ca && *ca &&
           access(ca, R_OK) == 0;
#else
    (void)e;
    return 0;
#endif
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    size_t n = size * nmemb;
    if (x->len + n + 1 > x->cap) {
        x->cap = 2 * (x->len + n + 1);
        x->body = xrealloc(x->body, x->cap);
    }
    memcpy(x->body + x->len, p, n);
    x->len += n;
    x->body[x->len] = 0;
    rlaif_http *h = x->h;
    long status = 0;
    curl_off_t clen = -1; /* -1: no Content-Length (chunked, or HTTP/2 without one) */
    if (h->on_complete && curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
        status >= 200 && status < 300 &&
        curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen) == CURLE_OK &&
        clen >= 0 && (curl_off_t)x->len == clen)
        h->on_complete(h->complete_ctx, x->user, x->body, x->len, status);
    return n;
}

/* value of header line h if it is "name: value", else NULL */
static const char *header_value(const char *h, size_t n, const char *name) {
    size_t k = strlen(name);
    if (n <= k + 1 || strncasecmp(h, name, k) || h[k] != ':') return NULL;
    h += k + 1;
    while (*h == ' ') h++;
    return h;
}

static size_t on_header(char *h, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    size_t n = size * nmemb;
    char line[256];
    if (n >= sizeof line) return n;
    memcpy(line, h, n);
    line[n] = 0;
    if (!strncmp(line, "HTTP/", 5)) { /* a new response (after 100 Continue) */
        x->retry_after = -1, x->should_retry = -1;
        for (int i = 0; i < 4; i++) x->rl[i] = -1;
        return n;
    }
    static const char *rl_names[4] = {"x-ratelimit-remaining-requests",
                                      "x-ratelimit-reset-requests", "x-ratelimit-remaining-tokens",
                                      "x-ratelimit-reset-tokens"};
    const char *v;
    if ((v = header_value(line, n, "retry-after-ms"))) {
        double ms = strtod(v, NULL);
        if (ms >= 0) x->retry_after = ms / 1000.0;
    } else if ((v = header_value(line, n, "retry-after")) && x->retry_after < 0) {
        x->retry_after = rlaif_parse_retry_after(v, rlaif_wall_time());
    } else if ((v = header_value(line, n, "x-should-retry"))) {
        x->should_retry = !strncasecmp(v, "true", 4) ? 1 : !strncasecmp(v, "false", 5) ? 0 : -1;
    } else {
        for (int i = 0; i < 4; i++)
            if ((v = header_value(line, n, rl_names[i])))
                x->rl[i] = i % 2 ? rlaif_parse_reset_duration(v) : strtod(v, NULL);
    }
    return n;
}

int rlaif_http_open(rlaif_http **out, int max_inflight, double connect_timeout, double timeout) {
    *out = NULL;
    RLAIF_CHECK_CURL(curl_global_init(CURL_GLOBAL_DEFAULT));
    rlaif_http *h = xcalloc(1, sizeof *h);
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h);
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "curl_multi_init failed");
    }
    h->n = max_inflight;
    h->connect_ms = (long)ceil(connect_timeout * 1000);
    h->timeout_ms = (long)ceil(timeout * 1000);
    h->pool = xcalloc((size_t)h->n, sizeof *h->pool);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)h->n);
    int bundle_only = -1;
    for (int i = h->n - 1; i >= 0; i--) {
        xfer *x = &h->pool[i];
        x->easy = curl_easy_init();
        if (!x->easy) {
            rlaif_http_close(h, NULL);
            return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "curl_easy_init failed");
        }
        if (bundle_only < 0) bundle_only = ca_bundle_only(x->easy);
        if (bundle_only) curl_easy_setopt(x->easy, CURLOPT_CAPATH, NULL);
        x->h = h;
        x->next_free = h->free_list;
        h->free_list = x;
    }
    *out = h;
    return 0;
}

void rlaif_http_close(rlaif_http *h, void (*drop)(void *user)) {
    if (!h) return;
    for (int i = 0; i < h->n; i++) {
        if (!h->pool[i].easy) continue;
        if (h->pool[i].user) {
            curl_multi_remove_handle(h->multi, h->pool[i].easy);
            if (drop) drop(h->pool[i].user);
        }
        curl_easy_cleanup(h->pool[i].easy);
        free(h->pool[i].body);
    }
    curl_multi_cleanup(h->multi);
    free(h->pool);
    free(h);
}

int rlaif_http_free_slots(const rlaif_http *h) {
    return h->n - h->inflight;
}
int rlaif_http_inflight(const rlaif_http *h) {
    return h->inflight;
}

double rlaif_http_oldest(const rlaif_http *h, double now) {
    double t = now;
    for (int i = 0; i < h->n; i++)
        if (h->pool[i].user && h->pool[i].started < t) t = h->pool[i].started;
    return t;
}

void rlaif_http_on_complete(rlaif_http *h, rlaif_http_complete_fn fn, void *ctx) {
    h->on_complete = fn;
    h->complete_ctx = ctx;
}

void rlaif_http_set_connections(rlaif_http *h, int n) {
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)n);
}

int rlaif_http_start(rlaif_http *h, const char *url, const struct curl_slist *headers,
                     const char *body, size_t len, void *user) {
    xfer *x = h->free_list;
    if (!x) return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "no free transfer slot (a bug)");
    CURL *e = x->easy;
    x->len = 0;
    x->err[0] = 0;
    x->retry_after = -1, x->should_retry = -1;
    for (int i = 0; i < 4; i++) x->rl[i] = -1;
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_URL, url));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_POSTFIELDS, body));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_WRITEDATA, x));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_HEADERDATA, x));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->err));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_ms));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->timeout_ms));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L));
    /* TLS verification stays on; no redirects (a key must not follow one) */
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https"));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L));
    RLAIF_CHECK_CURL(curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x));
    x->user = user;
    x->started = rlaif_now();
    RLAIF_CHECK_CURLM(curl_multi_add_handle(h->multi, e));
    h->free_list = x->next_free;
    h->inflight++;
    return 0;
}

int rlaif_http_wait(rlaif_http *h, double timeout) {
    int running, nfds;
    RLAIF_CHECK_CURLM(curl_multi_perform(h->multi, &running));
    if (timeout > 0) {
        int ms = (int)ceil(timeout * 1000);
        RLAIF_CHECK_CURLM(curl_multi_poll(h->multi, NULL, 0, ms, &nfds));
        RLAIF_CHECK_CURLM(curl_multi_perform(h->multi, &running));
    }
    return 0;
}

int rlaif_http_next(rlaif_http *h, rlaif_http_done *d) {
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *e = m->easy_handle;
        xfer *x = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
        int code = (int)m->data.result;
        curl_multi_remove_handle(h->multi, e);
        memset(d, 0, sizeof *d);
        d->user = x->user;
        d->curl_code = code;
        /* "Connection timed out after 300 milliseconds" says more than
         * curl_easy_strerror's "Timeout was reached" (which timeout?) */
        snprintf(d->error, sizeof d->error, "%s",
                 code && x->err[0] ? x->err
                 : code            ? curl_easy_strerror((CURLcode)code)
                                   : "");
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &d->http_status);
        if (d->http_status >= 300 && d->http_status < 400) {
            char *loc = NULL; /* where curl would have gone (FOLLOWLOCATION is off) */
            if (curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc)
                snprintf(d->location, sizeof d->location, "%s", loc);
        }
        d->body = x->body ? x->body : xstrdup("");
        d->len = x->len;
        x->body = NULL, x->len = x->cap = 0;
        d->retry_after = x->retry_after;
        d->should_retry = x->should_retry;
        memcpy(d->ratelimit, x->rl, sizeof d->ratelimit);
        d->started = x->started;
        x->user = NULL;
        x->next_free = h->free_list;
        h->free_list = x;
        h->inflight--;
        return 1;
    }
    return 0;
}
