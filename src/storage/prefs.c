/* prefs.c - preferences.h5: collective appends, resume by pair id, merge,
 * and the in-memory reader the reward-model and DPO phases use. */
#include "rlaif/storage/prefs.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/tensors.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[RLAIF_PAIR_NSTATUS] = {
    "ok", "transport", "http", "parse", "refused", "quota", "timeout", "inconsistent", "other"};

const char *rlaif_pair_status_name(int s) {
    return s >= 0 && s < RLAIF_PAIR_NSTATUS ? status_names[s] : "unknown";
}

void rlaif_pair_init(rlaif_pair *p) {
    memset(p, 0, sizeof *p);
    p->label = p->outcome_ab = p->outcome_ba = NAN;
    p->choice = -1, p->consistent = -1;
    for (int i = 0; i < RLAIF_RUBRIC_MAX; i++) p->rubric_a[i] = p->rubric_b[i] = NAN;
    p->judge_id = p->template_id = -1;
}

hid_t rlaif_pair_memtype(void) {
    hsize_t nr = RLAIF_RUBRIC_MAX;
    hid_t rub = H5Tarray_create2(H5T_NATIVE_FLOAT, 1, &nr);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(rlaif_pair));
#define M(name, type) H5Tinsert(t, #name, HOFFSET(rlaif_pair, name), type)
    M(pair_id, H5T_NATIVE_INT64);
    M(prompt_id, H5T_NATIVE_INT64);
    M(response_a, H5T_NATIVE_INT64);
    M(response_b, H5T_NATIVE_INT64);
    M(label, H5T_NATIVE_DOUBLE);
    M(choice, H5T_NATIVE_INT8);
    M(consistent, H5T_NATIVE_INT8);
    M(source, H5T_NATIVE_INT8);
    M(outcome_ab, H5T_NATIVE_DOUBLE);
    M(outcome_ba, H5T_NATIVE_DOUBLE);
    M(rubric_a, rub);
    M(rubric_b, rub);
    M(judge_id, H5T_NATIVE_INT32);
    M(template_id, H5T_NATIVE_INT32);
    M(prompt_tokens, H5T_NATIVE_INT64);
    M(completion_tokens, H5T_NATIVE_INT64);
    M(status, H5T_NATIVE_INT32);
#undef M
    H5Tclose(rub);
    return t;
}

struct rlaif_prefs {
    hid_t file;
    MPI_Comm comm;
    rlaif_h5_opts io;
    hid_t pair_mt;
    int64_t *ids; /* sorted pair ids in the file */
    size_t nids, capids;
    int64_t count[3];
    double flush_seconds, last_flush;
};

static const char *const committed_attr[3] = {"prompts_committed", "responses_committed",
                                              "pairs_committed"};

static int rows_of(hid_t f, const char *name, int64_t *n) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) {
        rlaif_error_h5("H5Dopen2", __FILE__, __LINE__, "not a complete preferences file");
        return rlaif_error_context("%s: ", name);
    }
    hsize_t r = 0;
    int rc = rlaif_h5_rows(ds, &r);
    H5Dclose(ds);
    *n = (int64_t)r;
    return rc;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int rlaif_prefs_has_pair(const rlaif_prefs *p, int64_t id) {
    return p->nids && bsearch(&id, p->ids, p->nids, sizeof(int64_t), cmp_i64) != NULL;
}

int64_t rlaif_prefs_count(const rlaif_prefs *p, int which) {
    return p->count[which];
}

hid_t rlaif_prefs_file(const rlaif_prefs *p) {
    return p->file;
}

typedef struct {
    int64_t id, pos;
} idpos;

static int cmp_idpos(const void *a, const void *b) {
    const idpos *x = a, *y = b;
    return x->id != y->id ? (x->id < y->id ? -1 : 1) : (x->pos < y->pos ? -1 : x->pos > y->pos);
}

/* Merge n new ids (any order) into the sorted set: O(set + n log n). */
static void add_ids(rlaif_prefs *p, const int64_t *ids, size_t n) {
    if (p->nids + n > p->capids) {
        p->capids = 2 * (p->nids + n) + 16;
        p->ids = xrealloc(p->ids, sizeof(int64_t) * p->capids);
    }
    int64_t *fresh = xmalloc(sizeof(int64_t) * (n ? n : 1));
    memcpy(fresh, ids, sizeof(int64_t) * n);
    qsort(fresh, n, sizeof(int64_t), cmp_i64);
    size_t i = p->nids, j = n, k = p->nids + n;
    while (j > 0) p->ids[--k] = (i > 0 && p->ids[i - 1] > fresh[j - 1]) ? p->ids[--i] : fresh[--j];
    p->nids += n;
    free(fresh);
}

/* The judge and template tables: n_judges, judge_<i>_name, n_templates,
 * template_<i>_{name,text,hash}. */
static int write_tables(hid_t f, int ntemplates, const char *const *tnames,
                        const char *const *ttexts, int njudges, const char *const *jnames) {
    char key[64], hex[32];
    RLAIF_TRY(rlaif_h5_attr_i64(f, "n_templates", ntemplates));
    for (int i = 0; i < ntemplates; i++) {
        const char *text = ttexts[i];
        snprintf(key, sizeof key, "template_%d_name", i);
        RLAIF_TRY(rlaif_h5_attr_str(f, key, tnames ? tnames[i] : ""));
        snprintf(key, sizeof key, "template_%d_text", i);
        RLAIF_TRY(rlaif_h5_attr_str(f, key, text));
        snprintf(key, sizeof key, "template_%d_hash", i);
        snprintf(hex, sizeof hex, "%016" PRIx64, rlaif_fnv1a64(text, strlen(text)));
        RLAIF_TRY(rlaif_h5_attr_str(f, key, hex));
    }
    RLAIF_TRY(rlaif_h5_attr_i64(f, "n_judges", njudges));
    for (int i = 0; i < njudges; i++) {
        snprintf(key, sizeof key, "judge_%d_name", i);
        RLAIF_TRY(rlaif_h5_attr_str(f, key, jnames[i]));
    }
    return 0;
}

static int write_meta(hid_t f, const rlaif_prefs_meta *m) {
    static const rlaif_prefs_meta none = {0};
    if (!m) m = &none;
    char names[256] = "";
    RLAIF_TRY(rlaif_h5_attr_str(f, "judge_settings", m->judge_settings ? m->judge_settings : "{}"));
    RLAIF_TRY(rlaif_h5_attr_str(f, "sampling", m->sampling ? m->sampling : "{}"));
    RLAIF_TRY(write_tables(f, m->ntemplates, m->template_names, m->template_texts, m->njudges,
                           m->judge_names));
    for (int i = 0; i < RLAIF_PAIR_NSTATUS; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? "," : "",
                 status_names[i]);
    return rlaif_h5_attr_str(f, "status_names", names);
}

static rlaif_prefs *prefs_new(MPI_Comm comm, const rlaif_h5_opts *io) {
    rlaif_prefs *p = xcalloc(1, sizeof *p);
    p->file = -1;
    p->comm = comm;
    if (io)
        p->io = *io;
    else
        rlaif_h5_opts_default(&p->io);
    p->pair_mt = rlaif_pair_memtype();
    p->flush_seconds = 10.0;
    p->last_flush = rlaif_now();
    return p;
}

static int create_layout(rlaif_prefs *p, const rlaif_prefs_meta *meta) {
    hid_t f = p->file, ds;
    RLAIF_TRY(rlaif_h5_stamp(f, "preferences"));
    RLAIF_TRY(write_meta(f, meta));
    RLAIF_TRY(rlaif_h5_ragged_create(f, "prompts", &p->io));
    RLAIF_TRY(rlaif_h5_ragged_create(f, "responses", &p->io));
    RLAIF_TRY(rlaif_h5_ragged_create(f, "explanations", &p->io));
    RLAIF_TRY(rlaif_h5_create_1d(f, "responses/prompt_id", H5T_STD_I64LE, p->io.chunk, &ds));
    H5Dclose(ds);
    hid_t ft = H5Tcopy(p->pair_mt);
    RLAIF_CHECK_H5(ft, NULL);
    RLAIF_CHECK_H5(H5Tpack(ft), NULL);
    int rc = rlaif_h5_create_1d(f, "pairs", ft, p->io.chunk, &ds);
    H5Tclose(ft);
    RLAIF_TRY(rc);
    H5Dclose(ds);
    return 0;
}

int rlaif_prefs_close(rlaif_prefs **pp) {
    rlaif_prefs *p = *pp;
    if (!p) return 0;
    int rc = rlaif_h5_close_file(&p->file);
    H5Tclose(p->pair_mt);
    free(p->ids);
    free(p);
    *pp = NULL;
    return rc;
}

int rlaif_prefs_create(const char *path, MPI_Comm comm, const rlaif_h5_opts *io,
                       const rlaif_prefs_meta *meta, rlaif_prefs **out) {
    rlaif_prefs *p = prefs_new(comm, io);
    int rc = rlaif_h5_create(path, comm, &p->io, &p->file);
    if (!rc) rc = create_layout(p, meta);
    rc = rlaif_agree(comm, rc);
    if (rc) {
        rlaif_prefs_close(&p);
        return rlaif_error_context("%s: ", path);
    }
    *out = p;
    return 0;
}

/* Records counted in the root attributes <table>_committed, updated after
 * every append; rows beyond them come from a job killed mid-append. */
static int committed(hid_t f, int which, int64_t rows, int64_t *n) {
    *n = rows;
    if (H5Aexists(f, committed_attr[which]) <= 0) return 0;
    RLAIF_TRY(rlaif_h5_get_attr_i64(f, committed_attr[which], n));
    if (*n > rows) *n = rows;
    return 0;
}

static int cut(hid_t f, const char *name, int64_t rows, int *cuts) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    RLAIF_CHECK_H5(ds, "not a complete preferences file");
    hsize_t have = 0;
    int rc = rlaif_h5_rows(ds, &have);
    if (!rc && have > (hsize_t)rows) rc = rlaif_h5_truncate(ds, (hsize_t)rows), ++*cuts;
    H5Dclose(ds);
    return rc;
}

/* Bring every per-record array back to the committed counts, so appends
 * after a crash stay aligned (the flat bytes/tokens may keep unused tails). */
static int repair(rlaif_prefs *p, const char *path) {
    static const char *const groups[3] = {"prompts", "responses", "explanations"};
    static const char *const arrays[4] = {"offset", "length", "tok_offset", "tok_length"};
    int64_t rows = 0, n[3] = {0, 0, 0};
    int cuts = 0;
    for (int w = 0; w < 3; w++) {
        RLAIF_TRY(rows_of(p->file,
                          w == 2 ? "pairs"
                          : w    ? "responses/offset"
                                 : "prompts/offset",
                          &rows));
        RLAIF_TRY(committed(p->file, w, rows, &n[w]));
    }
    char name[64];
    for (int g = 0; g < 3; g++)
        for (int a = 0; a < 4; a++) {
            snprintf(name, sizeof name, "%s/%s", groups[g], arrays[a]);
            RLAIF_TRY(cut(p->file, name, n[g], &cuts));
        }
    RLAIF_TRY(cut(p->file, "responses/prompt_id", n[1], &cuts));
    RLAIF_TRY(cut(p->file, "pairs", n[2], &cuts));
    int rank;
    MPI_Comm_rank(p->comm, &rank);
    if (cuts && rank == 0)
        rlaif_warn("%s: dropped the rows of an append that did not finish (kept %lld prompts, "
                   "%lld responses, %lld pairs)",
                   path, (long long)n[0], (long long)n[1], (long long)n[2]);
    for (int w = 0; w < 3; w++) p->count[w] = n[w];
    return 0;
}

int rlaif_prefs_open(const char *path, MPI_Comm comm, const rlaif_h5_opts *io, rlaif_prefs **out) {
    rlaif_prefs *p = prefs_new(comm, io);
    int rc = rlaif_h5_open(path, comm, 1, &p->io, &p->file);
    if (!rc) rc = rlaif_h5_check_kind(p->file, path, "preferences");
    if (!rc) rc = repair(p, path);
    rlaif_pair *pairs = NULL;
    size_t n = 0;
    if (!rc)
        rc = rlaif_h5_read_all(p->file, "pairs", p->pair_mt, sizeof(rlaif_pair), (void **)&pairs,
                               &n);
    if (!rc) {
        p->count[RLAIF_PREFS_PAIRS] = (int64_t)n;
        int64_t *ids = xmalloc(sizeof(int64_t) * (n ? n : 1));
        for (size_t i = 0; i < n; i++) ids[i] = pairs[i].pair_id;
        add_ids(p, ids, n);
        free(ids);
    }
    free(pairs);
    rc = rlaif_agree(comm, rc);
    if (rc) {
        rlaif_prefs_close(&p);
        return rlaif_error_context("resuming %s: ", path);
    }
    *out = p;
    return 0;
}

int rlaif_prefs_open_or_create(const char *path, MPI_Comm comm, const rlaif_h5_opts *io,
                               const rlaif_prefs_meta *meta, rlaif_prefs **out) {
    int rank, exists = 0;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    if (rank == 0) {
        FILE *f = fopen(path, "rb");
        if (f) exists = 1, fclose(f);
    }
    RLAIF_CHECK_MPI(MPI_Bcast(&exists, 1, MPI_INT, 0, comm));
    return exists ? rlaif_prefs_open(path, comm, io, out)
                  : rlaif_prefs_create(path, comm, io, meta, out);
}

int rlaif_prefs_add_prompts(rlaif_prefs *p, const rlaif_h5_record *recs, size_t n,
                            int64_t *first_id) {
    hsize_t first = 0;
    long long nl = (long long)n, all = 0;
    RLAIF_TRY(rlaif_h5_ragged_append(p->file, "prompts", recs, n, p->comm, &p->io, &first));
    RLAIF_CHECK_MPI(MPI_Allreduce(&nl, &all, 1, MPI_LONG_LONG, MPI_SUM, p->comm));
    p->count[RLAIF_PREFS_PROMPTS] += all;
    RLAIF_TRY(rlaif_h5_attr_i64(p->file, committed_attr[0], p->count[RLAIF_PREFS_PROMPTS]));
    if (first_id) *first_id = (int64_t)first;
    return 0;
}

int rlaif_prefs_add_responses(rlaif_prefs *p, const rlaif_h5_record *recs,
                              const int64_t *prompt_ids, size_t n, int64_t *first_id) {
    hsize_t first = 0;
    long long nl = (long long)n, all = 0;
    RLAIF_TRY(rlaif_h5_ragged_append(p->file, "responses", recs, n, p->comm, &p->io, &first));
    hid_t ds = H5Dopen2(p->file, "responses/prompt_id", H5P_DEFAULT);
    RLAIF_CHECK_H5(ds, "not a complete preferences file");
    int rc = rlaif_h5_append(ds, H5T_NATIVE_INT64, prompt_ids, n, p->comm, &p->io, NULL, NULL);
    H5Dclose(ds);
    RLAIF_TRY(rc);
    RLAIF_CHECK_MPI(MPI_Allreduce(&nl, &all, 1, MPI_LONG_LONG, MPI_SUM, p->comm));
    p->count[RLAIF_PREFS_RESPONSES] += all;
    RLAIF_TRY(rlaif_h5_attr_i64(p->file, committed_attr[1], p->count[RLAIF_PREFS_RESPONSES]));
    if (first_id) *first_id = (int64_t)first;
    return 0;
}

/* keep[i] = 1 when pairs[i] is new: not in the file, not earlier in this
 * call on this rank or on a lower rank. Every rank sees every candidate id
 * (MPI_Allgatherv) and afterwards adds the kept ones to its sorted set. */
static int dedupe(rlaif_prefs *p, const rlaif_pair *pairs, size_t n, char *keep, size_t *nkept) {
    int nproc, rank;
    RLAIF_CHECK_MPI(MPI_Comm_size(p->comm, &nproc));
    RLAIF_CHECK_MPI(MPI_Comm_rank(p->comm, &rank));
    int mine = (int)n, *counts = xmalloc(sizeof(int) * 2 * (size_t)nproc), *displs = counts + nproc;
    RLAIF_CHECK_MPI(MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, p->comm));
    size_t total = 0;
    for (int r = 0; r < nproc; r++) displs[r] = (int)total, total += (size_t)counts[r];
    int64_t *ids = xmalloc(sizeof(int64_t) * (n ? n : 1));
    int64_t *all = xmalloc(sizeof(int64_t) * (total ? total : 1));
    for (size_t i = 0; i < n; i++) ids[i] = pairs[i].pair_id;
    int e = MPI_Allgatherv(ids, mine, MPI_INT64_T, all, counts, displs, MPI_INT64_T, p->comm);
    free(ids);
    if (e != MPI_SUCCESS) {
        free(counts), free(all);
        return rlaif_error_mpi(e, "MPI_Allgatherv", __FILE__, __LINE__);
    }
    /* Sort (id, global position): within a run of equal ids the first
     * position wins, and only if the file does not hold the id already. */
    idpos *c = xmalloc(sizeof(idpos) * (total ? total : 1));
    for (size_t g = 0; g < total; g++) c[g].id = all[g], c[g].pos = (int64_t)g;
    qsort(c, total, sizeof(idpos), cmp_idpos);
    int64_t *fresh = xmalloc(sizeof(int64_t) * (total ? total : 1));
    size_t nfresh = 0, lo = (size_t)displs[rank];
    memset(keep, 0, n);
    *nkept = 0;
    for (size_t k = 0; k < total; k++) {
        if ((k > 0 && c[k - 1].id == c[k].id) || rlaif_prefs_has_pair(p, c[k].id)) continue;
        fresh[nfresh++] = c[k].id;
        size_t g = (size_t)c[k].pos;
        if (g >= lo && g < lo + n) keep[g - lo] = 1, ++*nkept;
    }
    free(c);
    add_ids(p, fresh, nfresh);
    free(fresh), free(all), free(counts);
    return 0;
}

/* Flushing syncs the file (MPI_File_sync), which costs more than a batch
 * of appends: do it at most every flush_seconds, on rank 0's clock. */
static int maybe_flush(rlaif_prefs *p) {
    int rank, now = 0;
    RLAIF_CHECK_MPI(MPI_Comm_rank(p->comm, &rank));
    double t = rlaif_now();
    if (rank == 0) now = t - p->last_flush >= p->flush_seconds;
    RLAIF_CHECK_MPI(MPI_Bcast(&now, 1, MPI_INT, 0, p->comm));
    if (!now) return 0;
    p->last_flush = t;
    return rlaif_prefs_flush(p);
}

int rlaif_prefs_flush(rlaif_prefs *p) {
    RLAIF_CHECK_H5(H5Fflush(p->file, H5F_SCOPE_GLOBAL), "the file system may be full");
    return 0;
}

void rlaif_prefs_set_flush(rlaif_prefs *p, double seconds) {
    p->flush_seconds = seconds;
}

int rlaif_prefs_add_pairs(rlaif_prefs *p, const rlaif_pair *pairs, const char *const *explanations,
                          size_t n, size_t *added) {
    char *keep = xmalloc(n ? n : 1);
    size_t nk = 0;
    int rc = dedupe(p, pairs, n, keep, &nk);
    rlaif_pair *rows = xmalloc(sizeof(rlaif_pair) * (nk ? nk : 1));
    rlaif_h5_record *ex = xcalloc(nk ? nk : 1, sizeof(rlaif_h5_record));
    for (size_t i = 0, j = 0; !rc && i < n; i++) {
        if (!keep[i]) continue;
        rows[j] = pairs[i];
        const char *s = explanations && explanations[i] ? explanations[i] : "";
        ex[j].text = s, ex[j].len = strlen(s);
        j++;
    }
    /* Explanations first, pairs last: a reader trusts /pairs rows only. */
    if (!rc) rc = rlaif_h5_ragged_append(p->file, "explanations", ex, nk, p->comm, &p->io, NULL);
    hid_t ds = rc ? -1 : H5Dopen2(p->file, "pairs", H5P_DEFAULT);
    if (!rc && ds < 0)
        rc = rlaif_error_h5("H5Dopen2", __FILE__, __LINE__, "not a preferences file");
    hsize_t total = 0;
    if (!rc) rc = rlaif_h5_append(ds, p->pair_mt, rows, nk, p->comm, &p->io, NULL, &total);
    if (ds >= 0) H5Dclose(ds);
    /* Rows past pairs_committed (a job killed mid-append) are dropped on open. */
    if (!rc) rc = rlaif_h5_attr_i64(p->file, committed_attr[2], (int64_t)total);
    if (!rc) rc = maybe_flush(p);
    if (!rc) {
        if (added) *added = (size_t)total - (size_t)p->count[RLAIF_PREFS_PAIRS];
        p->count[RLAIF_PREFS_PAIRS] = (int64_t)total;
    }
    free(keep), free(rows), free(ex);
    return rc;
}

/* ---- reader ---- */

int rlaif_prefs_read(const char *path, rlaif_prefs_data *d) {
    memset(d, 0, sizeof *d);
    hid_t f;
    RLAIF_TRY(rlaif_h5_open_serial(path, 0, &f));
    hid_t mt = rlaif_pair_memtype();
    size_t nrp = 0;
    int rc = rlaif_h5_check_kind(f, path, "preferences");
    if (!rc) rc = rlaif_h5_ragged_read(f, "prompts", &d->prompts);
    if (!rc) rc = rlaif_h5_ragged_read(f, "responses", &d->responses);
    if (!rc) rc = rlaif_h5_ragged_read(f, "explanations", &d->explanations);
    if (!rc)
        rc = rlaif_h5_read_all(f, "responses/prompt_id", H5T_NATIVE_INT64, sizeof(int64_t),
                               (void **)&d->response_prompt, &nrp);
    if (!rc)
        rc = rlaif_h5_read_all(f, "pairs", mt, sizeof(rlaif_pair), (void **)&d->pairs, &d->npairs);
    if (!rc && nrp < d->responses.n) d->responses.n = nrp;
    /* Only what the writer committed (see repair). */
    size_t *counts[3] = {&d->prompts.n, &d->responses.n, &d->npairs};
    for (int w = 0; w < 3 && !rc; w++) {
        int64_t c;
        rc = committed(f, w, (int64_t)*counts[w], &c);
        if (!rc) *counts[w] = (size_t)c;
    }
    H5Tclose(mt);
    H5Fclose(f);
    /* Pairs must point at records that exist. */
    for (size_t i = 0; !rc && i < d->npairs; i++) {
        const rlaif_pair *q = &d->pairs[i];
        if (q->prompt_id < 0 || (size_t)q->prompt_id >= d->prompts.n || q->response_a < 0 ||
            (size_t)q->response_a >= d->responses.n || q->response_b < 0 ||
            (size_t)q->response_b >= d->responses.n)
            rc = RLAIF_ERROR(RLAIF_EX_IOERR, "the file is damaged or was written incompletely",
                             "%s: pair %zu (id %lld) refers to a missing prompt or response", path,
                             i, (long long)q->pair_id);
    }
    if (rc) {
        rlaif_prefs_data_free(d);
        return rlaif_error_context("reading %s: ", path);
    }
    return 0;
}

void rlaif_prefs_data_free(rlaif_prefs_data *d) {
    rlaif_h5_ragged_free(&d->prompts);
    rlaif_h5_ragged_free(&d->responses);
    rlaif_h5_ragged_free(&d->explanations);
    free(d->response_prompt);
    free(d->pairs);
    memset(d, 0, sizeof *d);
}

char *rlaif_ragged_text(const rlaif_h5_ragged *r, size_t i) {
    size_t len = (size_t)r->length[i];
    char *s = xmalloc(len + 1);
    memcpy(s, r->bytes + r->offset[i], len);
    s[len] = 0;
    return s;
}

/* ---- merge ---- */

/* Copy the root's descriptive attributes (not the stamp) from src to dst. */
static herr_t copy_attr(hid_t src, const char *name, const H5A_info_t *info, void *ud) {
    (void)info;
    hid_t dst = *(hid_t *)ud;
    static const char *skip[] = {"rlaif_schema", "rlaif_kind", "software_version", "creation_time",
                                 "merged_from",  "n_judges",   "n_templates"};
    for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
        if (!strcmp(name, skip[i])) return 0;
    /* The judge and template tables are the union of all inputs (merge_tables). */
    if (!strncmp(name, "template_", 9) ||
        (!strncmp(name, "judge_", 6) && isdigit((unsigned char)name[6])))
        return 0;
    hid_t a = H5Aopen(src, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a), s = H5Aget_space(a);
    size_t sz = H5Tget_size(t) * (size_t)H5Sget_simple_extent_npoints(s);
    void *buf = xcalloc(sz ? sz : 1, 1);
    herr_t e = H5Aread(a, t, buf);
    if (e >= 0 && H5Aexists(dst, name) > 0) e = H5Adelete(dst, name);
    hid_t b = e < 0 ? -1 : H5Acreate2(dst, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    if (b >= 0)
        e = H5Awrite(b, t, buf), H5Aclose(b);
    else
        e = -1;
    free(buf);
    H5Tclose(t), H5Sclose(s), H5Aclose(a);
    return e < 0 ? -1 : 0;
}

static int copy_root_attrs(const char *src_path, hid_t dst) {
    hid_t src;
    RLAIF_TRY(rlaif_h5_open_serial(src_path, 0, &src));
    hsize_t idx = 0;
    herr_t e = H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_attr, &dst);
    H5Fclose(src);
    if (e < 0)
        return rlaif_error_h5("H5Aiterate2", __FILE__, __LINE__,
                              "could not copy the attributes of the first input");
    return 0;
}

/* Judge and template tables of several inputs as one: judges are the same
 * when their names are, templates when both name and text are. */
typedef struct {
    int nj, nt;
    char **judge, **tname, **ttext;
} tables;

/* Each input's ids in the union: map[k] = union id of the input's entry k. */
typedef struct {
    int32_t *judge, *tmpl;
    int nj, nt;
} idmap;

static void tables_free(tables *u) {
    for (int i = 0; i < u->nj; i++) free(u->judge[i]);
    for (int i = 0; i < u->nt; i++) free(u->tname[i]), free(u->ttext[i]);
    free(u->judge), free(u->tname), free(u->ttext);
    memset(u, 0, sizeof *u);
}

/* Index of (name, text) in the union, added when new; takes the strings. */
static int32_t union_add(tables *u, int is_judge, char *name, char *text) {
    int n = is_judge ? u->nj : u->nt;
    for (int i = 0; i < n; i++)
        if (is_judge ? !strcmp(u->judge[i], name)
                     : !strcmp(u->tname[i], name) && !strcmp(u->ttext[i], text)) {
            free(name), free(text);
            return i;
        }
    if (is_judge) {
        u->judge = xrealloc(u->judge, sizeof(char *) * (size_t)(n + 1));
        u->judge[u->nj++] = name;
        free(text);
    } else {
        u->tname = xrealloc(u->tname, sizeof(char *) * (size_t)(n + 1));
        u->ttext = xrealloc(u->ttext, sizeof(char *) * (size_t)(n + 1));
        u->tname[u->nt] = name, u->ttext[u->nt++] = text;
    }
    return n;
}

/* n_<what> of a file; 0 when absent (files not written by rlaif). */
static int table_size(hid_t f, const char *path, const char *what, int *n) {
    int64_t v = 0;
    *n = 0;
    if (H5Aexists(f, what) > 0) RLAIF_TRY(rlaif_h5_get_attr_i64(f, what, &v));
    if (v < 0 || v > 1000000)
        return RLAIF_ERROR(RLAIF_EX_IOERR, "the file is damaged", "%s: %s = %lld", path, what,
                           (long long)v);
    *n = (int)v;
    return 0;
}

/* Add the tables of input path to u; m maps its ids. */
static int merge_tables(const char *path, tables *u, idmap *m) {
    hid_t f;
    memset(m, 0, sizeof *m);
    RLAIF_TRY(rlaif_h5_open_serial(path, 0, &f));
    int rc = table_size(f, path, "n_judges", &m->nj);
    if (!rc) rc = table_size(f, path, "n_templates", &m->nt);
    m->judge = xmalloc(sizeof(int32_t) * (size_t)(m->nj + 1));
    m->tmpl = xmalloc(sizeof(int32_t) * (size_t)(m->nt + 1));
    char key[64];
    for (int i = 0; i < m->nj && !rc; i++) {
        char *name = NULL;
        snprintf(key, sizeof key, "judge_%d_name", i);
        rc = rlaif_h5_get_attr_str(f, key, &name);
        if (!rc) m->judge[i] = union_add(u, 1, name, NULL);
    }
    for (int i = 0; i < m->nt && !rc; i++) {
        char *name = NULL, *text = NULL;
        snprintf(key, sizeof key, "template_%d_name", i);
        rc = rlaif_h5_get_attr_str(f, key, &name);
        snprintf(key, sizeof key, "template_%d_text", i);
        if (!rc) rc = rlaif_h5_get_attr_str(f, key, &text);
        if (!rc)
            m->tmpl[i] = union_add(u, 0, name, text);
        else
            free(name);
    }
    H5Fclose(f);
    if (rc) rlaif_error_context("%s: ", path);
    return rc;
}

/* An id without an entry in its file's table becomes -1 (none). */
static int32_t remap(int32_t id, const int32_t *map, int n) {
    return id >= 0 && id < n ? map[id] : -1;
}

static void ragged_records(const rlaif_h5_ragged *r, size_t lo, size_t hi, rlaif_h5_record *out) {
    for (size_t i = lo; i < hi; i++) {
        rlaif_h5_record *x = &out[i - lo];
        x->text = r->bytes + r->offset[i], x->len = (size_t)r->length[i];
        x->tokens = r->tokens + r->tok_offset[i], x->ntok = (size_t)r->tok_length[i];
    }
}

/* Append input d to p, this rank taking its even share of each table. */
static int merge_one(rlaif_prefs *p, const rlaif_prefs_data *d, const idmap *m, int rank,
                     int nproc) {
    int64_t pbase = p->count[RLAIF_PREFS_PROMPTS], rbase = p->count[RLAIF_PREFS_RESPONSES];
    size_t lo, hi, cap = d->prompts.n > d->responses.n ? d->prompts.n : d->responses.n;
    if (d->npairs > cap) cap = d->npairs;
    rlaif_h5_record *recs = xcalloc(cap ? cap : 1, sizeof *recs);
    int64_t *pid = xmalloc(sizeof(int64_t) * (cap ? cap : 1));
    rlaif_pair *pairs = xmalloc(sizeof(rlaif_pair) * (cap ? cap : 1));
    const char **ex = xmalloc(sizeof(char *) * (cap ? cap : 1));
    rlaif_shard_range(d->prompts.n, nproc, rank, &lo, &hi);
    ragged_records(&d->prompts, lo, hi, recs);
    int rc = rlaif_prefs_add_prompts(p, recs, hi - lo, NULL);
    rlaif_shard_range(d->responses.n, nproc, rank, &lo, &hi);
    ragged_records(&d->responses, lo, hi, recs);
    for (size_t i = lo; i < hi; i++) pid[i - lo] = d->response_prompt[i] + pbase;
    if (!rc) rc = rlaif_prefs_add_responses(p, recs, pid, hi - lo, NULL);
    rlaif_shard_range(d->npairs, nproc, rank, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        pairs[i - lo] = d->pairs[i];
        pairs[i - lo].prompt_id += pbase;
        pairs[i - lo].response_a += rbase, pairs[i - lo].response_b += rbase;
        pairs[i - lo].judge_id = remap(d->pairs[i].judge_id, m->judge, m->nj);
        pairs[i - lo].template_id = remap(d->pairs[i].template_id, m->tmpl, m->nt);
        ex[i - lo] = i < d->explanations.n ? rlaif_ragged_text(&d->explanations, i) : NULL;
    }
    if (!rc) rc = rlaif_prefs_add_pairs(p, pairs, ex, hi - lo, NULL);
    for (size_t i = lo; i < hi; i++) free((char *)ex[i - lo]);
    free(recs), free(pid), free(pairs), free(ex);
    return rc;
}

int rlaif_prefs_merge(const char *out, const char *const *inputs, int n, MPI_Comm comm,
                      const rlaif_h5_opts *io, size_t *npairs) {
    int rank, nproc;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    RLAIF_CHECK_MPI(MPI_Comm_size(comm, &nproc));
    if (n < 1) return RLAIF_ERROR(RLAIF_EX_USAGE, "give at least one input", "merge: no inputs");
    char tmp[4096], from[4096] = "";
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    for (int i = 0; i < n; i++)
        snprintf(from + strlen(from), sizeof from - strlen(from), "%s%s", i ? "," : "", inputs[i]);
    tables u = {0};
    idmap *maps = xcalloc((size_t)n, sizeof *maps);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) rc = merge_tables(inputs[i], &u, &maps[i]);
    rlaif_prefs *p = NULL;
    rc = rlaif_agree(comm, rc);
    if (!rc) rc = rlaif_prefs_create(tmp, comm, io, NULL, &p);
    if (!rc) rc = copy_root_attrs(inputs[0], p->file);
    if (!rc)
        rc = write_tables(p->file, u.nt, (const char *const *)u.tname, (const char *const *)u.ttext,
                          u.nj, (const char *const *)u.judge);
    if (!rc) rc = rlaif_h5_attr_str(p->file, "merged_from", from);
    rc = rlaif_agree(comm, rc);
    for (int i = 0; i < n && !rc; i++) {
        rlaif_prefs_data d;
        rc = rlaif_agree(comm, rlaif_prefs_read(inputs[i], &d));
        if (rc) break;
        rc = rlaif_agree(comm, merge_one(p, &d, &maps[i], rank, nproc));
        rlaif_prefs_data_free(&d);
    }
    for (int i = 0; i < n; i++) free(maps[i].judge), free(maps[i].tmpl);
    free(maps);
    tables_free(&u);
    if (npairs && p) *npairs = (size_t)p->count[RLAIF_PREFS_PAIRS];
    int rc2 = rlaif_agree(comm, rlaif_prefs_close(&p));
    if (!rc) rc = rc2;
    return rlaif_h5_commit_tmp(tmp, out, rc, comm);
}
