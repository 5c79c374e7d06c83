/* config.c - job-file parsing (libinih), precedence, validation, broadcast. */
#include "rlaif/core/config.h"
#include "rlaif/core/iohints.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

typedef struct {
    char *text;       /* value as given (validated) */
    char origin[160]; /* "default", "job.ini:12", "env RLAIF_X_Y", "--set" */
    int file_line;    /* line in the job file, 0 when not set there */
} cfg_entry;

struct rlaif_config {
    int n;
    char path[4096];
    cfg_entry *e; /* parallel to rlaif_config_schema */
};

static int schema_len(void) {
    int n = 0;
    while (rlaif_config_schema[n].section) n++;
    return n;
}

static int find_key(const char *section, const char *key) {
    for (int i = 0; rlaif_config_schema[i].section; i++)
        if (!strcmp(rlaif_config_schema[i].section, section) &&
            !strcmp(rlaif_config_schema[i].key, key))
            return i;
    return -1;
}

static int section_known(const char *section) {
    for (int i = 0; rlaif_config_schema[i].section; i++)
        if (!strcmp(rlaif_config_schema[i].section, section)) return 1;
    return 0;
}

static int find_name(const char *name) {
    char sec[128];
    const char *dot = strchr(name, '.');
    if (!dot || (size_t)(dot - name) >= sizeof sec) return -1;
    memcpy(sec, name, (size_t)(dot - name));
    sec[dot - name] = 0;
    return find_key(sec, dot + 1);
}

int rlaif_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] +
                      (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

/* " (did you mean 'ppo.kl_coef'?)" for the nearest key of the section
 * (or of all sections when the section is unknown). */
static void suggest_key(char *out, size_t n, const char *section, const char *key) {
    int best = -1, best_d = 1 << 30, sec_known = section_known(section);
    char full[256];
    snprintf(full, sizeof full, "%s.%s", section, key);
    for (int i = 0; rlaif_config_schema[i].section; i++) {
        const rlaif_cfg_spec *s = &rlaif_config_schema[i];
        int d;
        if (sec_known) {
            if (strcmp(s->section, section)) continue;
            d = rlaif_edit_distance(key, s->key);
        } else {
            char cand[256];
            snprintf(cand, sizeof cand, "%s.%s", s->section, s->key);
            d = rlaif_edit_distance(full, cand);
            int dk = rlaif_edit_distance(key, s->key);
            if (dk < d) d = dk;
        }
        if (d < best_d) best_d = d, best = i;
    }
    if (best >= 0 && best_d <= 3 + (int)strlen(key) / 3)
        snprintf(out, n, " (did you mean '%s.%s'?)", rlaif_config_schema[best].section,
                 rlaif_config_schema[best].key);
    else
        out[0] = 0;
}

static void suggest_section(char *out, size_t n, const char *section) {
    const char *best = NULL;
    int best_d = 1 << 30;
    for (int i = 0; rlaif_config_schema[i].section; i++) {
        int d = rlaif_edit_distance(section, rlaif_config_schema[i].section);
        if (d < best_d) best_d = d, best = rlaif_config_schema[i].section;
    }
    if (best && best_d <= 2 + (int)strlen(section) / 3)
        snprintf(out, n, " (did you mean [%s]?)", best);
    else
        out[0] = 0;
}

int rlaif_parse_duration(const char *text, double *seconds) {
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (!*p) return -1;
    int colons = 0;
    for (const char *q = p; *q; q++) colons += *q == ':';
    if (colons) { /* [[HH:]MM:]SS */
        double total = 0;
        char *end;
        const char *q = p;
        for (int i = 0; i <= colons; i++) {
            double v = strtod(q, &end);
            if (end == q || v < 0 || colons > 2) return -1;
            total = total * 60 + v;
            q = end;
            if (i < colons) {
                if (*q != ':') return -1;
                q++;
            }
        }
        while (isspace((unsigned char)*q)) q++;
        if (*q) return -1;
        *seconds = total;
        return 0;
    }
    char *end;
    double v = strtod(p, &end);
    if (end == p || !isfinite(v) || v < 0) return -1;
    while (isspace((unsigned char)*end)) end++;
    double mult = 1;
    if (!strcmp(end, "") || !strcmp(end, "s"))
        mult = 1;
    else if (!strcmp(end, "ms"))
        mult = 1e-3;
    else if (!strcmp(end, "m") || !strcmp(end, "min"))
        mult = 60;
    else if (!strcmp(end, "h"))
        mult = 3600;
    else if (!strcmp(end, "d"))
        mult = 86400;
    else
        return -1;
    *seconds = v * mult;
    return 0;
}

static int parse_bool(const char *v, int *out) {
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return *out = 1, 0;
        if (!strcasecmp(v, no[i])) return *out = 0, 0;
    }
    return -1;
}

static int enum_has(const char *choices, const char *v) {
    size_t lv = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == lv && !strncmp(p, v, l)) return 1;
        p += l + (bar ? 1 : 0);
    }
    return 0;
}

/* Check value against spec; on failure record a usage error prefixed by where. */
static int validate(const rlaif_cfg_spec *s, const char *v, const char *where) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", s->section, s->key);
    int has_range = s->min <= s->max;
    switch (s->type) {
    case RLAIF_CFG_INT: {
        char *end;
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno)
            return RLAIF_ERROR(RLAIF_EX_USAGE, s->help, "%s: %s = '%s' is not an integer", where,
                               name, v);
        if (has_range && ((double)x < s->min || (double)x > s->max))
            return RLAIF_ERROR(RLAIF_EX_USAGE, s->help,
                               "%s: %s = %lld is out of range [%.15g, %.15g]", where, name, x,
                               s->min, s->max);
        return 0;
    }
    case RLAIF_CFG_FLOAT: {
        char *end;
        double x = strtod(v, &end);
        if (end == v || *end || !isfinite(x))
            return RLAIF_ERROR(RLAIF_EX_USAGE, s->help, "%s: %s = '%s' is not a finite number",
                               where, name, v);
        if (has_range && (x < s->min || x > s->max))
            return RLAIF_ERROR(RLAIF_EX_USAGE, s->help, "%s: %s = %g is out of range [%g, %g]",
                               where, name, x, s->min, s->max);
        return 0;
    }
    case RLAIF_CFG_DURATION: {
        double x;
        if (rlaif_parse_duration(v, &x))
            return RLAIF_ERROR(RLAIF_EX_USAGE, "durations look like 90, 90s, 15m, 2h or 01:30:00",
                               "%s: %s = '%s' is not a duration", where, name, v);
        if (has_range && (x < s->min || x > s->max))
            return RLAIF_ERROR(RLAIF_EX_USAGE, s->help, "%s: %s = %gs is out of range [%gs, %gs]",
                               where, name, x, s->min, s->max);
        return 0;
    }
    case RLAIF_CFG_BOOL: {
        int b;
        if (parse_bool(v, &b))
            return RLAIF_ERROR(RLAIF_EX_USAGE, "use true or false",
                               "%s: %s = '%s' is not a boolean", where, name, v);
        return 0;
    }
    case RLAIF_CFG_ENUM:
        if (!enum_has(s->choices, v))
            return RLAIF_ERROR(RLAIF_EX_USAGE, s->help, "%s: %s = '%s' is not one of %s", where,
                               name, v, s->choices);
        return 0;
    case RLAIF_CFG_STRING:
        return 0;
    }
    return 0;
}

static void set_entry(cfg_entry *e, const char *v, const char *origin, int line) {
    free(e->text);
    e->text = xstrdup(v);
    snprintf(e->origin, sizeof e->origin, "%s", origin);
    e->file_line = line;
}

/* Values may be quoted to keep spaces or ';' : key = "a; b". */
static void unquote(char *v) {
    size_t l = strlen(v);
    if (l >= 2 && ((v[0] == '"' && v[l - 1] == '"') || (v[0] == '\'' && v[l - 1] == '\''))) {
        memmove(v, v + 1, l - 2);
        v[l - 2] = 0;
    }
}

/* ---------------------------------------------------------------- job file */

typedef struct {
    rlaif_config *cfg;
    FILE *fp;
    const char *display; /* path as the user gave it */
    int line;            /* current line (counted by the reader) */
    int at_line_start;
    int section_line; /* line of the current [section] header */
    char section[128];
    int too_long_line;
    int status; /* first error */
    int status_line;
} parse_ctx;

/* fgets-like reader for ini_parse_stream that counts lines, so every error
 * names the exact line, and notices section headers and over-long lines. */
static char *reader(char *buf, int num, void *stream) {
    parse_ctx *c = stream;
    char *r = fgets(buf, num, c->fp);
    if (!r) return NULL;
    if (c->at_line_start) c->line++;
    size_t l = strlen(buf);
    c->at_line_start = l > 0 && buf[l - 1] == '\n';
    if (!c->at_line_start && !feof(c->fp) && !c->too_long_line) c->too_long_line = c->line;
    const char *p = buf;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '[' && c->at_line_start) c->section_line = c->line;
    return r;
}

static int handler(void *user, const char *section, const char *name, const char *value) {
    parse_ctx *c = user;
    if (c->status) return 1; /* keep only the first error */
    c->status_line = c->line;
    char where[4200], sugg[160];
    snprintf(where, sizeof where, "%s:%d", c->display, c->line);
    if (!*section) {
        c->status = RLAIF_ERROR(RLAIF_EX_USAGE, "put keys under a [section] header",
                                "%s: key '%s' is outside any [section]", where, name);
        return 1;
    }
    if (!section_known(section)) {
        suggest_section(sugg, sizeof sugg, section);
        snprintf(where, sizeof where, "%s:%d", c->display, c->section_line);
        c->status = RLAIF_ERROR(RLAIF_EX_USAGE, "`rlaif config --keys` lists every section and key",
                                "%s: unknown section [%s]%s", where, section, sugg);
        return 1;
    }
    int i = find_key(section, name);
    if (i < 0) {
        suggest_key(sugg, sizeof sugg, section, name);
        c->status =
            RLAIF_ERROR(RLAIF_EX_USAGE, "`rlaif config --keys` lists every section and key",
                        "%s: unknown key '%s' in section [%s]%s", where, name, section, sugg);
        return 1;
    }
    cfg_entry *e = &c->cfg->e[i];
    if (e->file_line) {
        c->status = RLAIF_ERROR(RLAIF_EX_USAGE, "remove one of the two lines",
                                "%s: duplicate key %s.%s (first set on line %d)", where, section,
                                name, e->file_line);
        return 1;
    }
    char v[4096];
    snprintf(v, sizeof v, "%s", value);
    unquote(v);
    if (validate(&rlaif_config_schema[i], v, where)) {
        c->status = rlaif_error_code();
        return 1;
    }
    set_entry(e, v, where, c->line);
    return 1;
}

static int load_file(rlaif_config *cfg, const char *path) {
    parse_ctx c = {.cfg = cfg, .display = path, .at_line_start = 1};
    c.fp = fopen(path, "r");
    if (!c.fp)
        return RLAIF_ERROR(RLAIF_EX_NOINPUT, "check the job file path",
                           "cannot open job file '%s': %s", path, strerror(errno));
    int r = ini_parse_stream(reader, &c, handler, &c);
    fclose(c.fp);
    /* inih reports the first syntax error's line and carries on; a handler
     * error on a later line comes from the damage, so the earlier one wins. */
    if (c.status && !(r > 0 && r < c.status_line)) return c.status;
    if (c.too_long_line)
        return RLAIF_ERROR(RLAIF_EX_USAGE, "split the value or shorten the path",
                           "%s:%d: line longer than %d characters", path, c.too_long_line,
                           INI_MAX_LINE - 1);
    if (r > 0)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "lines are '[section]', 'key = value', or comments starting with ; or #",
                           "%s:%d: syntax error", path, r);
    if (r < 0) return RLAIF_ERROR(RLAIF_EX_NOINPUT, NULL, "cannot read job file '%s'", path);
    return 0;
}

/* ---------------------------------------------------------------- env, --set */

static const char *env_lookup(char *const *env, const char *name) {
    if (!env) return getenv(name);
    size_t l = strlen(name);
    for (char *const *p = env; *p; p++)
        if (!strncmp(*p, name, l) && (*p)[l] == '=') return *p + l + 1;
    return NULL;
}

static void env_name(char *out, size_t n, const rlaif_cfg_spec *s) {
    size_t k = (size_t)snprintf(out, n, "RLAIF_%s_%s", s->section, s->key);
    for (size_t i = 0; i < k && i < n; i++) out[i] = (char)toupper((unsigned char)out[i]);
}

static int load_env(rlaif_config *cfg, char *const *env) {
    for (int i = 0; i < cfg->n; i++) {
        char name[256], where[300];
        env_name(name, sizeof name, &rlaif_config_schema[i]);
        const char *v = env_lookup(env, name);
        if (!v) continue;
        snprintf(where, sizeof where, "environment %s", name);
        RLAIF_TRY(validate(&rlaif_config_schema[i], v, where));
        set_entry(&cfg->e[i], v, where, cfg->e[i].file_line);
    }
    /* An RLAIF_<KNOWN SECTION>_<unknown key> is almost surely a typo. */
    char *const *all = env ? env : environ;
    for (char *const *p = all; p && *p; p++) {
        if (strncmp(*p, "RLAIF_", 6)) continue;
        const char *eq = strchr(*p, '=');
        if (!eq) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - *p), *p);
        int known = 0, sec_match = 0;
        for (int i = 0; i < cfg->n && !known; i++) {
            char en[256], prefix[160];
            env_name(en, sizeof en, &rlaif_config_schema[i]);
            known = !strcmp(en, name);
            size_t k = (size_t)snprintf(prefix, sizeof prefix, "RLAIF_%s_",
                                        rlaif_config_schema[i].section);
            for (size_t j = 0; j < k; j++) prefix[j] = (char)toupper((unsigned char)prefix[j]);
            if (!strncmp(name, prefix, k)) sec_match = 1;
        }
        if (!known && sec_match)
            return RLAIF_ERROR(RLAIF_EX_USAGE,
                               "environment overrides are RLAIF_<SECTION>_<KEY>, e.g. "
                               "RLAIF_PPO_KL_COEF; `rlaif config --keys` lists them",
                               "environment variable %s names no configuration key", name);
    }
    return 0;
}

int rlaif_config_set(rlaif_config *cfg, const char *name, const char *value, const char *origin) {
    int i = find_name(name);
    if (i < 0) {
        char sec[128] = "", sugg[160] = "";
        const char *dot = strchr(name, '.');
        if (dot) {
            snprintf(sec, sizeof sec, "%.*s", (int)(dot - name), name);
            suggest_key(sugg, sizeof sugg, sec, dot + 1);
        }
        return RLAIF_ERROR(RLAIF_EX_USAGE, "`rlaif config --keys` lists every section and key",
                           "%s: unknown key '%s'%s", origin, name, sugg);
    }
    RLAIF_TRY(validate(&rlaif_config_schema[i], value, origin));
    set_entry(&cfg->e[i], value, origin, cfg->e[i].file_line);
    return 0;
}

static int apply_set(rlaif_config *cfg, const char *arg) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "write --set section.key=value, e.g. --set ppo.kl_coef=0.1",
                           "--set '%s': expected section.key=value", arg);
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
    return rlaif_config_set(cfg, name, eq + 1, "--set");
}

static rlaif_config *config_new(void) {
    rlaif_config *cfg = xcalloc(1, sizeof *cfg);
    cfg->n = schema_len();
    cfg->e = xcalloc((size_t)cfg->n, sizeof *cfg->e);
    return cfg;
}

int rlaif_config_load(rlaif_config **out, const char *path, int nset, char *const *sets,
                      char *const *env) {
    *out = NULL;
    rlaif_config *cfg = config_new();
    int rc = 0;
    for (int i = 0; i < cfg->n; i++) {
        const rlaif_cfg_spec *s = &rlaif_config_schema[i];
        /* A default that fails its own schema is a bug; catch it here. */
        if (validate(s, s->def, "built-in default")) {
            rc = RLAIF_EX_SOFTWARE;
            goto fail;
        }
        set_entry(&cfg->e[i], s->def, "default", 0);
    }
    if (path && *path) {
        snprintf(cfg->path, sizeof cfg->path, "%s", path);
        if ((rc = load_file(cfg, path))) goto fail;
    }
    if ((rc = load_env(cfg, env))) goto fail;
    for (int i = 0; i < nset; i++)
        if ((rc = apply_set(cfg, sets[i]))) goto fail;
    /* io.mpi_hints is a list: checked here, so a typo fails at load (exit 64) */
    char hints[RLAIF_IO_HINTS_MAX];
    if ((rc = rlaif_io_hints(cfg, hints, sizeof hints))) goto fail;
    *out = cfg;
    return 0;
fail:
    rlaif_config_free(cfg);
    return rc;
}

void rlaif_config_free(rlaif_config *cfg) {
    if (!cfg) return;
    for (int i = 0; i < cfg->n; i++) free(cfg->e[i].text);
    free(cfg->e);
    free(cfg);
}

/* ---------------------------------------------------------------- broadcast */

int rlaif_config_bcast(rlaif_config **cfg, int status, int root, MPI_Comm comm) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    RLAIF_TRY(rlaif_agree(comm, status));
    /* Serialise as path\0 then text\0origin\0line\0 per key, schema order. */
    char *buf = NULL;
    long long len = 0;
    if (rank == root) {
        rlaif_config *c = *cfg;
        size_t cap = strlen(c->path) + 1;
        for (int i = 0; i < c->n; i++) cap += strlen(c->e[i].text) + strlen(c->e[i].origin) + 24;
        buf = xmalloc(cap);
        char *p = buf;
        p += sprintf(p, "%s", c->path) + 1;
        for (int i = 0; i < c->n; i++) {
            p += sprintf(p, "%s", c->e[i].text) + 1;
            p += sprintf(p, "%s", c->e[i].origin) + 1;
            p += sprintf(p, "%d", c->e[i].file_line) + 1;
        }
        len = p - buf;
    }
    RLAIF_CHECK_MPI(MPI_Bcast(&len, 1, MPI_LONG_LONG, root, comm));
    if (rank != root) buf = xmalloc((size_t)len);
    RLAIF_CHECK_MPI(MPI_Bcast(buf, (int)len, MPI_CHAR, root, comm));
    if (rank != root) {
        rlaif_config *c = config_new();
        const char *p = buf;
        snprintf(c->path, sizeof c->path, "%s", p);
        p += strlen(p) + 1;
        for (int i = 0; i < c->n; i++) {
            const char *text = p;
            p += strlen(p) + 1;
            const char *origin = p;
            p += strlen(p) + 1;
            int line = atoi(p);
            p += strlen(p) + 1;
            set_entry(&c->e[i], text, origin, line);
        }
        *cfg = c;
    }
    free(buf);
    return 0;
}

/* ---------------------------------------------------------------- getters */

static int lookup(const rlaif_config *cfg, const char *name, int want_type) {
    int i = find_name(name);
    if (i < 0)
        RLAIF_DIE(RLAIF_EX_SOFTWARE, NULL, "internal: configuration key '%s' is not in the schema",
                  name);
    rlaif_cfg_type t = rlaif_config_schema[i].type;
    if (want_type >= 0 && (int)t != want_type &&
        !(want_type == RLAIF_CFG_FLOAT && t == RLAIF_CFG_DURATION))
        RLAIF_DIE(RLAIF_EX_SOFTWARE, NULL,
                  "internal: configuration key '%s' read with the wrong type", name);
    (void)cfg;
    return i;
}

long long rlaif_cfg_int(const rlaif_config *cfg, const char *name) {
    return strtoll(cfg->e[lookup(cfg, name, RLAIF_CFG_INT)].text, NULL, 10);
}

double rlaif_cfg_float(const rlaif_config *cfg, const char *name) {
    int i = lookup(cfg, name, RLAIF_CFG_FLOAT);
    if (rlaif_config_schema[i].type == RLAIF_CFG_DURATION) {
        double s = 0;
        rlaif_parse_duration(cfg->e[i].text, &s);
        return s;
    }
    return strtod(cfg->e[i].text, NULL);
}

int rlaif_cfg_bool(const rlaif_config *cfg, const char *name) {
    int b = 0;
    parse_bool(cfg->e[lookup(cfg, name, RLAIF_CFG_BOOL)].text, &b);
    return b;
}

const char *rlaif_cfg_str(const rlaif_config *cfg, const char *name) {
    return cfg->e[lookup(cfg, name, -1)].text;
}

int rlaif_cfg_has(const char *name) {
    return find_name(name) >= 0;
}

const char *rlaif_cfg_origin(const rlaif_config *cfg, const char *name) {
    return cfg->e[lookup(cfg, name, -1)].origin;
}

const char *rlaif_config_path(const rlaif_config *cfg) {
    return cfg->path;
}

/* ---------------------------------------------------------------- printing */

static size_t print_to(const rlaif_config *cfg, char *buf, size_t n, int with_origin) {
    size_t len = 0;
#define OUT(...)                                                                                   \
    do {                                                                                           \
        int k_ = snprintf(buf ? buf + len : NULL, buf ? n - len : 0, __VA_ARGS__);                 \
        len += (size_t)(k_ > 0 ? k_ : 0);                                                          \
    } while (0)
    const char *sec = NULL;
    for (int i = 0; i < cfg->n; i++) {
        const rlaif_cfg_spec *s = &rlaif_config_schema[i];
        if (!sec || strcmp(sec, s->section)) {
            OUT("%s[%s]\n", sec ? "\n" : "", s->section);
            sec = s->section;
        }
        int quote = strchr(cfg->e[i].text, ';') || strchr(cfg->e[i].text, '#') ||
                    (cfg->e[i].text[0] == ' ');
        char kv[4300];
        snprintf(kv, sizeof kv, quote ? "%s = \"%s\"" : "%s = %s", s->key, cfg->e[i].text);
        if (with_origin)
            OUT("%-44s ; %s\n", kv, cfg->e[i].origin);
        else
            OUT("%s\n", kv);
    }
#undef OUT
    return len;
}

char *rlaif_config_dump(const rlaif_config *cfg) {
    size_t n = print_to(cfg, NULL, 0, 1) + 1;
    char *buf = xmalloc(n);
    print_to(cfg, buf, n, 1);
    return buf;
}

void rlaif_config_print(const rlaif_config *cfg, FILE *out, int with_origin) {
    size_t n = print_to(cfg, NULL, 0, with_origin) + 1;
    char *buf = xmalloc(n);
    print_to(cfg, buf, n, with_origin);
    fputs(buf, out);
    free(buf);
}

void rlaif_config_log(const rlaif_config *cfg) {
    int changed = 0;
    for (int i = 0; i < cfg->n; i++) changed += strcmp(cfg->e[i].origin, "default") != 0;
    rlaif_info("config: %s, %d value%s not default (`rlaif config` prints all):",
               *cfg->path ? cfg->path : "no job file", changed, changed == 1 ? "" : "s");
    for (int i = 0; i < cfg->n; i++)
        if (strcmp(cfg->e[i].origin, "default"))
            rlaif_info("  %s.%s = %s  (%s)", rlaif_config_schema[i].section,
                       rlaif_config_schema[i].key, cfg->e[i].text, cfg->e[i].origin);
    char *dump = rlaif_config_dump(cfg);
    rlaif_debug("resolved configuration:\n%s", dump);
    free(dump);
}
