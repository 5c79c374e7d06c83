/* iohints.c - the MPI-IO hints of [io]: parsing and checking io.mpi_hints,
 * merging the convenience keys, building the MPI_Info, and the probe that
 * shows what MPI-IO reports back (iohints.h). */
#include "rlaif/core/iohints.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HINTS 64

typedef struct {
    char key[MPI_MAX_INFO_KEY + 1];
    char val[MPI_MAX_INFO_VAL + 1];
} hint;

typedef struct {
    int n;
    hint h[MAX_HINTS];
} hint_list;

static const char *const HELP = "io.mpi_hints is a comma-separated list key=value,... e.g. "
                                "striping_factor=8,romio_cb_write=enable";

/* Copy [a, b) without surrounding blanks into out (n bytes); -1 when too long. */
static int trimmed(const char *a, const char *b, char *out, size_t n) {
    while (a < b && isspace((unsigned char)*a)) a++;
    while (b > a && isspace((unsigned char)b[-1])) b--;
    if ((size_t)(b - a) >= n) return -1;
    memcpy(out, a, (size_t)(b - a));
    out[b - a] = 0;
    return 0;
}

static const char *find(const hint_list *l, const char *key) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->h[i].key, key)) return l->h[i].val;
    return NULL;
}

/* One entry "key=value" of io.mpi_hints, [a, b) of the text. */
static int parse_entry(const char *a, const char *b, hint_list *l, const char *where) {
    char entry[MPI_MAX_INFO_KEY + MPI_MAX_INFO_VAL + 2] = "";
    trimmed(a, b, entry, sizeof entry); /* only for messages: may be cut */
    const char *eq = memchr(a, '=', (size_t)(b - a));
    if (!eq)
        return RLAIF_ERROR(RLAIF_EX_USAGE, HELP, "%sio.mpi_hints: entry '%s' has no '='", where,
                           entry);
    if (l->n == MAX_HINTS)
        return RLAIF_ERROR(RLAIF_EX_USAGE, HELP, "%sio.mpi_hints: more than %d hints", where,
                           MAX_HINTS);
    hint *h = &l->h[l->n];
    if (trimmed(a, eq, h->key, sizeof h->key))
        return RLAIF_ERROR(RLAIF_EX_USAGE, HELP, "%sio.mpi_hints: key of '%s' is longer than %d",
                           where, entry, MPI_MAX_INFO_KEY - 1);
    if (trimmed(eq + 1, b, h->val, sizeof h->val))
        return RLAIF_ERROR(RLAIF_EX_USAGE, HELP, "%sio.mpi_hints: value of %s is longer than %d",
                           where, h->key, MPI_MAX_INFO_VAL - 1);
    if (!*h->key || !*h->val)
        return RLAIF_ERROR(RLAIF_EX_USAGE, HELP, "%sio.mpi_hints: entry '%s' has an empty %s",
                           where, entry, *h->key ? "value" : "key");
    for (const char *p = h->key; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_-.:", *p))
            return RLAIF_ERROR(RLAIF_EX_USAGE, HELP,
                               "%sio.mpi_hints: key '%s' has a character other than letters, "
                               "digits, '_', '-', '.', ':'",
                               where, h->key);
    if (find(l, h->key))
        return RLAIF_ERROR(RLAIF_EX_USAGE, HELP, "%sio.mpi_hints: hint %s is given twice", where,
                           h->key);
    l->n++;
    return 0;
}

static int parse_list(const char *text, hint_list *l, const char *where) {
    l->n = 0;
    const char *a = text;
    while (*a) {
        const char *b = strchr(a, ',');
        if (!b) b = a + strlen(a);
        char probe[2];
        /* an empty entry (",," or a trailing comma) is a typo, not a hint */
        if (trimmed(a, b, probe, sizeof probe) == 0 && !*probe)
            return RLAIF_ERROR(RLAIF_EX_USAGE, HELP, "%sio.mpi_hints: empty entry in '%s'", where,
                               text);
        RLAIF_TRY(parse_entry(a, b, l, where));
        a = *b ? b + 1 : b;
    }
    return 0;
}

/* Add a convenience key's hint; contradicting io.mpi_hints is an error. */
static int add_key(hint_list *l, const char *cfgkey, const char *key, const char *val,
                   const char *where) {
    const char *old = find(l, key);
    if (old && strcmp(old, val))
        return RLAIF_ERROR(RLAIF_EX_USAGE, "set each hint in one place",
                           "%s%s = %s contradicts io.mpi_hints %s=%s", where, cfgkey, val, key,
                           old);
    if (old) return 0;
    if (l->n == MAX_HINTS)
        return RLAIF_ERROR(RLAIF_EX_USAGE, HELP, "%sio.mpi_hints: more than %d hints", where,
                           MAX_HINTS);
    snprintf(l->h[l->n].key, sizeof l->h[l->n].key, "%s", key);
    snprintf(l->h[l->n].val, sizeof l->h[l->n].val, "%s", val);
    l->n++;
    return 0;
}

static int add_convenience(const rlaif_config *cfg, hint_list *l, const char *where) {
    static const char *const ints[] = {"striping_factor", "striping_unit", "cb_nodes"};
    char name[64], val[32];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "io.%s", ints[i]);
        long long v = rlaif_cfg_int(cfg, name);
        snprintf(val, sizeof val, "%lld", v);
        if (v > 0) RLAIF_TRY(add_key(l, name, ints[i], val, where));
    }
    const char *cbw = rlaif_cfg_str(cfg, "io.romio_cb_write");
    if (strcmp(cbw, "default"))
        RLAIF_TRY(add_key(l, "io.romio_cb_write", "romio_cb_write", cbw, where));
    return 0;
}

int rlaif_io_hints(const rlaif_config *cfg, char *out, size_t n) {
    hint_list *l = calloc(1, sizeof *l);
    if (!l) return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "out of memory");
    char where[300];
    snprintf(where, sizeof where, "%s: ", rlaif_cfg_origin(cfg, "io.mpi_hints"));
    int rc = parse_list(rlaif_cfg_str(cfg, "io.mpi_hints"), l, where);
    if (!rc) rc = add_convenience(cfg, l, "");
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < l->n && !rc; i++) {
        int w = snprintf(out + len, n - len, "%s%s=%s", i ? "," : "", l->h[i].key, l->h[i].val);
        if (w < 0 || (size_t)w >= n - len || len + (size_t)w >= RLAIF_IO_HINTS_MAX)
            rc = RLAIF_ERROR(RLAIF_EX_USAGE, "pass fewer or shorter hints",
                             "%sio.mpi_hints: the hints are longer than %d characters", where,
                             RLAIF_IO_HINTS_MAX - 1);
        else
            len += (size_t)w;
    }
    if (rc) out[0] = 0;
    free(l);
    return rc;
}

int rlaif_io_info(const char *hints, MPI_Info *info) {
    *info = MPI_INFO_NULL;
    if (!hints || !*hints) return 0;
    hint_list *l = calloc(1, sizeof *l);
    if (!l) return RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "out of memory");
    int rc = parse_list(hints, l, "");
    int e = rc ? MPI_SUCCESS : MPI_Info_create(info);
    for (int i = 0; i < l->n && !rc && e == MPI_SUCCESS; i++)
        e = MPI_Info_set(*info, l->h[i].key, l->h[i].val);
    if (!rc && e != MPI_SUCCESS) rc = rlaif_error_mpi(e, "MPI_Info_set", __FILE__, __LINE__);
    if (rc && *info != MPI_INFO_NULL) MPI_Info_free(info);
    free(l);
    return rc;
}

/* Rank 0: requested hints against the reported info, one line each. */
static int report(MPI_Info got, const hint_list *want, FILE *out) {
    int nkeys = 0, ignored = 0, extra = 0;
    if (got != MPI_INFO_NULL) MPI_Info_get_nkeys(got, &nkeys);
    char val[MPI_MAX_INFO_VAL + 1], key[MPI_MAX_INFO_KEY + 1], line[700];
    for (int i = 0; i < want->n; i++) {
        int flag = 0;
        if (got != MPI_INFO_NULL) MPI_Info_get(got, want->h[i].key, MPI_MAX_INFO_VAL, val, &flag);
        if (flag)
            snprintf(line, sizeof line, "%s = %s (reported %s%s)", want->h[i].key, want->h[i].val,
                     val, strcmp(val, want->h[i].val) ? ": changed" : "");
        else
            snprintf(line, sizeof line, "%s = %s (not reported: ignored)", want->h[i].key,
                     want->h[i].val);
        ignored += !flag || strcmp(val, want->h[i].val);
        if (out)
            fprintf(out, "  %s\n", line);
        else
            rlaif_debug("io: MPI-IO hint %s", line);
    }
    for (int i = 0; i < nkeys; i++)
        if (MPI_Info_get_nthkey(got, i, key) == MPI_SUCCESS && !find(want, key)) extra++;
    if (out)
        fprintf(out, "  (%d other keys reported by MPI-IO)\n", extra);
    else
        rlaif_debug("io: %d other keys reported by MPI-IO", extra);
    return ignored;
}

int rlaif_io_probe(MPI_Comm comm, const char *dir, const char *hints, FILE *out, int *ignored) {
    int rank;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    /* one name for every rank: rank 0's pid */
    int pid = (int)getpid();
    RLAIF_CHECK_MPI(MPI_Bcast(&pid, 1, MPI_INT, 0, comm));
    char path[4200];
    snprintf(path, sizeof path, "%s/.rlaif-io-probe-%d", *dir ? dir : ".", pid);
    MPI_Info info, got = MPI_INFO_NULL;
    RLAIF_TRY(rlaif_io_info(hints, &info));
    MPI_File fh;
    int e = MPI_File_open(comm, path, MPI_MODE_CREATE | MPI_MODE_WRONLY | MPI_MODE_DELETE_ON_CLOSE,
                          info, &fh);
    if (info != MPI_INFO_NULL) MPI_Info_free(&info);
    if (e != MPI_SUCCESS) {
        rlaif_error_mpi(e, "MPI_File_open", __FILE__, __LINE__);
        return rlaif_error_context("probing MPI-IO hints with %s: ", path);
    }
    e = MPI_File_get_info(fh, &got);
    int bad = 0;
    if (e == MPI_SUCCESS && rank == 0) {
        hint_list *want = calloc(1, sizeof *want);
        if (want && !parse_list(hints ? hints : "", want, "")) bad = report(got, want, out);
        free(want);
    }
    if (got != MPI_INFO_NULL) MPI_Info_free(&got);
    int e2 = MPI_File_close(&fh);
    if (e == MPI_SUCCESS) e = e2;
    /* every rank takes part in the broadcast, even after a local failure */
    RLAIF_CHECK_MPI(MPI_Bcast(&bad, 1, MPI_INT, 0, comm));
    if (e != MPI_SUCCESS) return rlaif_error_mpi(e, "MPI_File_get_info", __FILE__, __LINE__);
    if (ignored) *ignored = bad;
    return 0;
}
