/* h5util.c - checked parallel HDF5 helpers: files, extendible 1-D datasets,
 * collective appends of ragged records, attributes. */
#include "rlaif/core/h5util.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rlaif_h5_opts_default(rlaif_h5_opts *o) {
    memset(o, 0, sizeof *o);
    o->chunk = 4096;
    o->alignment = 1 << 20;
    o->coll_metadata = 1;
    o->collective_data = 0;
}

void rlaif_h5_opts_from_cfg(rlaif_h5_opts *o, const rlaif_config *cfg) {
    rlaif_h5_opts_default(o);
    if (!cfg) return;
    o->chunk = (hsize_t)rlaif_cfg_int(cfg, "io.chunk_records");
    o->alignment = (hsize_t)rlaif_cfg_int(cfg, "io.alignment");
    o->align_threshold = (hsize_t)rlaif_cfg_int(cfg, "io.alignment_threshold");
    o->coll_metadata = rlaif_cfg_bool(cfg, "io.collective_metadata");
    o->collective_data = rlaif_cfg_bool(cfg, "io.collective_data");
    /* checked by rlaif_config_load: cannot fail on a loaded config */
    if (rlaif_io_hints(cfg, o->mpi_hints, sizeof o->mpi_hints)) rlaif_error_clear();
}

hid_t rlaif_h5_fapl(MPI_Comm comm, const rlaif_h5_opts *o) {
    MPI_Info info;
    if (rlaif_io_info(o->mpi_hints, &info)) return -1;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* Only objects of at least the threshold are aligned (by default the
     * alignment itself): small ones would waste a stripe each. */
    hsize_t threshold = o->align_threshold ? o->align_threshold : o->alignment;
    if (fapl >= 0 &&
        (H5Pset_fapl_mpio(fapl, comm, info) < 0 || /* HDF5 keeps its own copy of info */
         H5Pset_all_coll_metadata_ops(fapl, o->coll_metadata ? 1 : 0) < 0 ||
         H5Pset_coll_metadata_write(fapl, o->coll_metadata ? 1 : 0) < 0 ||
         (o->alignment > 1 && H5Pset_alignment(fapl, threshold, o->alignment) < 0))) {
        H5Pclose(fapl);
        fapl = -1;
    }
    if (info != MPI_INFO_NULL) MPI_Info_free(&info);
    return fapl;
}

/* mode: 0 read-only, 1 read-write, 2 create (truncate). */
static int open_parallel(const char *path, MPI_Comm comm, int mode, const rlaif_h5_opts *o,
                         hid_t *file) {
    hid_t fapl = rlaif_h5_fapl(comm, o);
    RLAIF_CHECK_H5(fapl, "HDF5 was built without MPI-IO (need libhdf5-openmpi)");
    *file = mode == 2 ? H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)
                      : H5Fopen(path, mode ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (*file < 0) {
        rlaif_error_h5(mode == 2 ? "H5Fcreate" : "H5Fopen", __FILE__, __LINE__,
                       mode == 2 ? "check that the folder exists, is writable and not full"
                                 : "check that the file exists and is a complete HDF5 file");
        return rlaif_error_context("%s %s: ", mode == 2 ? "creating" : "opening", path);
    }
    return 0;
}

int rlaif_h5_create(const char *path, MPI_Comm comm, const rlaif_h5_opts *o, hid_t *file) {
    return open_parallel(path, comm, 2, o, file);
}

int rlaif_h5_open(const char *path, MPI_Comm comm, int rw, const rlaif_h5_opts *o, hid_t *file) {
    return open_parallel(path, comm, rw ? 1 : 0, o, file);
}

int rlaif_h5_commit_tmp(const char *tmp, const char *path, int status, MPI_Comm comm) {
    int rank;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    if (rank == 0) {
        if (!status && rename(tmp, path) != 0)
            status = rlaif_error_sys(RLAIF_EX_IOERR, "rename", path, __FILE__, __LINE__);
        if (status) remove(tmp);
    }
    return rlaif_agree(comm, status);
}

int rlaif_h5_open_serial(const char *path, int rw, hid_t *file) {
    *file = H5Fopen(path, rw ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*file < 0) {
        rlaif_error_h5("H5Fopen", __FILE__, __LINE__,
                       "check that the file exists and is a complete HDF5 file");
        return rlaif_error_context("opening %s: ", path);
    }
    return 0;
}

int rlaif_h5_close_file(hid_t *file) {
    if (*file < 0) return 0;
    herr_t e = H5Fclose(*file);
    *file = -1;
    if (e < 0)
        return rlaif_error_h5("H5Fclose", __FILE__, __LINE__,
                              "the file system may be full; the file is incomplete");
    return 0;
}

hid_t rlaif_h5_dxpl(const rlaif_h5_opts *o) {
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (dxpl < 0) return dxpl;
    if (H5Pset_dxpl_mpio(dxpl, o->collective_data ? H5FD_MPIO_COLLECTIVE : H5FD_MPIO_INDEPENDENT) <
        0) {
        H5Pclose(dxpl);
        return -1;
    }
    return dxpl;
}

int rlaif_h5_exists(hid_t loc, const char *name) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", name);
    /* H5Lexists fails on a missing intermediate group: walk the prefixes. */
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
        *p = '/';
        if (e <= 0) return 0;
    }
    return H5Lexists(loc, buf, H5P_DEFAULT) > 0;
}

int rlaif_h5_mkgroups(hid_t loc, const char *path) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    size_t n = strlen(buf);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (!rlaif_h5_exists(loc, buf)) {
            hid_t g = H5Gcreate2(loc, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            RLAIF_CHECK_H5(g, NULL);
            H5Gclose(g);
        }
        buf[i] = c;
    }
    return 0;
}

int rlaif_h5_create_1d(hid_t loc, const char *name, hid_t type, hsize_t chunk, hid_t *ds) {
    hsize_t zero = 0, unlim = H5S_UNLIMITED;
    if (chunk < 1) chunk = 1;
    hid_t space = H5Screate_simple(1, &zero, &unlim);
    RLAIF_CHECK_H5(space, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    RLAIF_CHECK_H5(dcpl, NULL);
    RLAIF_CHECK_H5(H5Pset_chunk(dcpl, 1, &chunk), NULL);
    /* Rows are always written right after the extent grows: skip fill values. */
    RLAIF_CHECK_H5(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), NULL);
    *ds = H5Dcreate2(loc, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (*ds < 0) {
        rlaif_error_h5("H5Dcreate2", __FILE__, __LINE__, NULL);
        return rlaif_error_context("creating dataset %s: ", name);
    }
    return 0;
}

int rlaif_h5_rows(hid_t ds, hsize_t *rows) {
    hid_t space = H5Dget_space(ds);
    RLAIF_CHECK_H5(space, NULL);
    int nd = H5Sget_simple_extent_ndims(space);
    if (nd != 1) {
        H5Sclose(space);
        return RLAIF_ERROR(RLAIF_EX_IOERR, "the file was not written by this rlaif version",
                           "expected a 1-D dataset, found %d dimensions", nd);
    }
    herr_t e = H5Sget_simple_extent_dims(space, rows, NULL);
    H5Sclose(space);
    if (e < 0) return rlaif_error_h5("H5Sget_simple_extent_dims", __FILE__, __LINE__, NULL);
    return 0;
}

/* File and memory spaces for rows [start, start + n) of a 1-D dataset; with
 * n == 0 both select nothing (the rank still joins collective calls). */
static int select_rows(hid_t ds, hsize_t start, size_t n, hid_t *fs, hid_t *ms) {
    hsize_t count = n, one = 1;
    *fs = H5Dget_space(ds);
    RLAIF_CHECK_H5(*fs, NULL);
    *ms = H5Screate_simple(1, n ? &count : &one, NULL);
    RLAIF_CHECK_H5(*ms, NULL);
    if (n) {
        RLAIF_CHECK_H5(H5Sselect_hyperslab(*fs, H5S_SELECT_SET, &start, NULL, &count, NULL), NULL);
    } else {
        RLAIF_CHECK_H5(H5Sselect_none(*fs), NULL);
        RLAIF_CHECK_H5(H5Sselect_none(*ms), NULL);
    }
    return 0;
}

/* Write n rows at start of ds (extent already large enough); n == 0 selects
 * nothing but still takes part in the collective call. */
static int write_rows(hid_t ds, hid_t memtype, const void *buf, hsize_t start, size_t n,
                      const rlaif_h5_opts *o) {
    static const char dummy[8];
    hid_t fs, ms;
    RLAIF_TRY(select_rows(ds, start, n, &fs, &ms));
    /* Independent transfers use the default list, valid for serial files too. */
    hid_t dxpl = o->collective_data ? rlaif_h5_dxpl(o) : H5P_DEFAULT;
    RLAIF_CHECK_H5(dxpl, NULL);
    herr_t e = H5Dwrite(ds, memtype, ms, fs, dxpl, n ? buf : dummy);
    if (dxpl != H5P_DEFAULT) H5Pclose(dxpl);
    H5Sclose(ms);
    H5Sclose(fs);
    if (e < 0) return rlaif_error_h5("H5Dwrite", __FILE__, __LINE__, "the file system may be full");
    return 0;
}

/* For k counts at once: the sum over lower ranks (MPI_Exscan) and the total. */
static int scan_counts(MPI_Comm comm, const long long *mine, long long *before, long long *all,
                       int k) {
    int rank;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    RLAIF_CHECK_MPI(MPI_Exscan(mine, before, k, MPI_LONG_LONG, MPI_SUM, comm));
    if (rank == 0) /* MPI_Exscan leaves rank 0's result undefined */
        for (int i = 0; i < k; i++) before[i] = 0;
    RLAIF_CHECK_MPI(MPI_Allreduce(mine, all, k, MPI_LONG_LONG, MPI_SUM, comm));
    return 0;
}

/* The collective part of an append once the counts are known: one extent
 * change (same value on every rank), then each rank its hyperslab. */
static int grow_and_write(hid_t ds, hid_t memtype, const void *buf, size_t n, long long before,
                          long long all, const rlaif_h5_opts *o, hsize_t *first, hsize_t *total) {
    hsize_t rows;
    RLAIF_TRY(rlaif_h5_rows(ds, &rows));
    hsize_t grown = rows + (hsize_t)all;
    if (all > 0) RLAIF_CHECK_H5(H5Dset_extent(ds, &grown), "the file system may be full");
    if (first) *first = rows + (hsize_t)before;
    if (total) *total = grown;
    if (all == 0) return 0;
    return write_rows(ds, memtype, buf, rows + (hsize_t)before, n, o);
}

int rlaif_h5_append(hid_t ds, hid_t memtype, const void *buf, size_t n, MPI_Comm comm,
                    const rlaif_h5_opts *o, hsize_t *first, hsize_t *total) {
    long long mine = (long long)n, before = 0, all = 0;
    RLAIF_TRY(scan_counts(comm, &mine, &before, &all, 1));
    return grow_and_write(ds, memtype, buf, n, before, all, o, first, total);
}

int rlaif_h5_write_at(hid_t ds, hid_t memtype, const void *buf, hsize_t start, size_t n,
                      const rlaif_h5_opts *o) {
    return write_rows(ds, memtype, buf, start, n, o);
}

int rlaif_h5_read_rows(hid_t ds, hid_t memtype, void *buf, hsize_t start, size_t n) {
    static char dummy[8];
    hid_t fs, ms;
    RLAIF_TRY(select_rows(ds, start, n, &fs, &ms));
    herr_t e = H5Dread(ds, memtype, ms, fs, H5P_DEFAULT, n ? buf : dummy);
    H5Sclose(ms);
    H5Sclose(fs);
    if (e < 0)
        return rlaif_error_h5("H5Dread", __FILE__, __LINE__,
                              "the file may be truncated or damaged");
    return 0;
}

int rlaif_h5_read_all(hid_t loc, const char *name, hid_t memtype, size_t elem, void **buf,
                      size_t *n) {
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) {
        rlaif_error_h5("H5Dopen2", __FILE__, __LINE__, "the file was not written by rlaif");
        return rlaif_error_context("dataset %s: ", name);
    }
    hsize_t rows = 0;
    int rc = rlaif_h5_rows(ds, &rows);
    if (!rc) {
        *buf = xmalloc(elem * (rows ? rows : 1));
        *n = rows;
        rc = rlaif_h5_read_rows(ds, memtype, *buf, 0, rows);
        if (rc) free(*buf), *buf = NULL;
    }
    H5Dclose(ds);
    return rc;
}

int rlaif_h5_truncate(hid_t ds, hsize_t rows) {
    RLAIF_CHECK_H5(H5Dset_extent(ds, &rows), NULL);
    return 0;
}

/* ---- ragged records ---- */

static const char *const ragged_names[6] = {"bytes",  "offset",     "length",
                                            "tokens", "tok_offset", "tok_length"};

int rlaif_h5_ragged_create(hid_t loc, const char *group, const rlaif_h5_opts *o) {
    RLAIF_TRY(rlaif_h5_mkgroups(loc, group));
    hid_t g = H5Gopen2(loc, group, H5P_DEFAULT);
    RLAIF_CHECK_H5(g, NULL);
    /* Text and tokens get bigger chunks than per-record arrays. */
    hid_t types[6] = {H5T_NATIVE_CHAR,  H5T_NATIVE_INT64, H5T_NATIVE_INT64,
                      H5T_NATIVE_INT32, H5T_NATIVE_INT64, H5T_NATIVE_INT64};
    hsize_t chunks[6] = {o->chunk * 256, o->chunk, o->chunk, o->chunk * 64, o->chunk, o->chunk};
    int rc = 0;
    for (int i = 0; i < 6 && !rc; i++) {
        hid_t ds;
        rc = rlaif_h5_create_1d(g, ragged_names[i], types[i], chunks[i], &ds);
        if (!rc) H5Dclose(ds);
    }
    H5Gclose(g);
    return rc;
}

static int append_named(hid_t g, const char *name, hid_t memtype, const void *buf, size_t n,
                        long long before, long long all, const rlaif_h5_opts *o, hsize_t *first) {
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0) {
        rlaif_error_h5("H5Dopen2", __FILE__, __LINE__, "the file was not written by rlaif");
        return rlaif_error_context("dataset %s: ", name);
    }
    int rc = grow_and_write(ds, memtype, buf, n, before, all, o, first, NULL);
    H5Dclose(ds);
    return rc;
}

int rlaif_h5_ragged_append(hid_t loc, const char *group, const rlaif_h5_record *recs, size_t n,
                           MPI_Comm comm, const rlaif_h5_opts *o, hsize_t *first) {
    size_t nb = 0, nt = 0;
    for (size_t i = 0; i < n; i++) nb += recs[i].len, nt += recs[i].ntok;
    char *bytes = xmalloc(nb ? nb : 1);
    int32_t *toks = xmalloc(sizeof(int32_t) * (nt ? nt : 1));
    int64_t *meta = xmalloc(sizeof(int64_t) * 4 * (n ? n : 1));
    int64_t *off = meta, *len = meta + n, *toff = meta + 2 * n, *tlen = meta + 3 * n;
    size_t b = 0, t = 0;
    for (size_t i = 0; i < n; i++) {
        if (recs[i].len) memcpy(bytes + b, recs[i].text, recs[i].len);
        if (recs[i].ntok) memcpy(toks + t, recs[i].tokens, sizeof(int32_t) * recs[i].ntok);
        off[i] = (int64_t)b, len[i] = (int64_t)recs[i].len;
        toff[i] = (int64_t)t, tlen[i] = (int64_t)recs[i].ntok;
        b += recs[i].len, t += recs[i].ntok;
    }
    hid_t g = H5Gopen2(loc, group, H5P_DEFAULT);
    int rc = g < 0 ? rlaif_error_h5("H5Gopen2", __FILE__, __LINE__, "not an rlaif file") : 0;
    /* One scan for the three counts (bytes, tokens, records). */
    long long mine[3] = {(long long)nb, (long long)nt, (long long)n}, bef[3], all[3];
    if (!rc) rc = scan_counts(comm, mine, bef, all, 3);
    hsize_t bfirst = 0, tfirst = 0;
    if (!rc) rc = append_named(g, "bytes", H5T_NATIVE_CHAR, bytes, nb, bef[0], all[0], o, &bfirst);
    if (!rc) rc = append_named(g, "tokens", H5T_NATIVE_INT32, toks, nt, bef[1], all[1], o, &tfirst);
    /* Local offsets become global ones: this rank's bytes start at bfirst. */
    for (size_t i = 0; i < n; i++) off[i] += (int64_t)bfirst, toff[i] += (int64_t)tfirst;
    if (!rc) rc = append_named(g, "offset", H5T_NATIVE_INT64, off, n, bef[2], all[2], o, first);
    if (!rc) rc = append_named(g, "length", H5T_NATIVE_INT64, len, n, bef[2], all[2], o, NULL);
    if (!rc) rc = append_named(g, "tok_offset", H5T_NATIVE_INT64, toff, n, bef[2], all[2], o, NULL);
    if (!rc) rc = append_named(g, "tok_length", H5T_NATIVE_INT64, tlen, n, bef[2], all[2], o, NULL);
    if (g >= 0) H5Gclose(g);
    free(bytes), free(toks), free(meta);
    if (rc) rlaif_error_context("appending to %s: ", group);
    return rc;
}

int rlaif_h5_ragged_read(hid_t loc, const char *group, rlaif_h5_ragged *r) {
    memset(r, 0, sizeof *r);
    hid_t g = H5Gopen2(loc, group, H5P_DEFAULT);
    if (g < 0) {
        rlaif_error_h5("H5Gopen2", __FILE__, __LINE__, "the file was not written by rlaif");
        return rlaif_error_context("group %s: ", group);
    }
    size_t n[4] = {0};
    int rc = rlaif_h5_read_all(g, "bytes", H5T_NATIVE_CHAR, 1, (void **)&r->bytes, &r->nbytes);
    if (!rc)
        rc = rlaif_h5_read_all(g, "tokens", H5T_NATIVE_INT32, 4, (void **)&r->tokens, &r->ntokens);
    if (!rc) rc = rlaif_h5_read_all(g, "offset", H5T_NATIVE_INT64, 8, (void **)&r->offset, &n[0]);
    if (!rc) rc = rlaif_h5_read_all(g, "length", H5T_NATIVE_INT64, 8, (void **)&r->length, &n[1]);
    if (!rc)
        rc =
            rlaif_h5_read_all(g, "tok_offset", H5T_NATIVE_INT64, 8, (void **)&r->tok_offset, &n[2]);
    if (!rc)
        rc =
            rlaif_h5_read_all(g, "tok_length", H5T_NATIVE_INT64, 8, (void **)&r->tok_length, &n[3]);
    H5Gclose(g);
    r->n = n[0];
    /* A killed append can leave the arrays of one group out of step: trust
     * only records whose every field is present and inside the flat data. */
    for (int i = 1; i < 4; i++)
        if (n[i] < r->n) r->n = n[i];
    for (size_t i = 0; !rc && i < r->n; i++) {
        if (r->offset[i] < 0 || r->length[i] < 0 ||
            (size_t)(r->offset[i] + r->length[i]) > r->nbytes || r->tok_offset[i] < 0 ||
            r->tok_length[i] < 0 || (size_t)(r->tok_offset[i] + r->tok_length[i]) > r->ntokens)
            rc = RLAIF_ERROR(RLAIF_EX_IOERR, "the file is damaged; re-create it",
                             "%s record %zu points outside the flat data", group, i);
    }
    if (rc) rlaif_h5_ragged_free(r);
    return rc;
}

void rlaif_h5_ragged_free(rlaif_h5_ragged *r) {
    free(r->offset), free(r->length), free(r->tok_offset), free(r->tok_length);
    free(r->bytes), free(r->tokens);
    memset(r, 0, sizeof *r);
}

/* ---- attributes ---- */

/* Rewrite in place when the type and size match (counters updated every
 * batch), else replace the attribute. */
static int write_attr(hid_t loc, const char *name, hid_t type, hid_t space, const void *v) {
    hid_t a = -1;
    if (H5Aexists(loc, name) > 0) {
        a = H5Aopen(loc, name, H5P_DEFAULT);
        RLAIF_CHECK_H5(a, NULL);
        hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
        int same = t >= 0 && sp >= 0 && H5Tequal(t, type) > 0 &&
                   H5Sget_simple_extent_npoints(sp) == H5Sget_simple_extent_npoints(space);
        if (t >= 0) H5Tclose(t);
        if (sp >= 0) H5Sclose(sp);
        if (!same) {
            H5Aclose(a), a = -1;
            RLAIF_CHECK_H5(H5Adelete(loc, name), NULL);
        }
    }
    if (a < 0) a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    RLAIF_CHECK_H5(a, NULL);
    herr_t e = H5Awrite(a, type, v);
    H5Aclose(a);
    if (e < 0) return rlaif_error_h5("H5Awrite", __FILE__, __LINE__, NULL);
    return 0;
}

int rlaif_h5_attr_str(hid_t loc, const char *name, const char *value) {
    size_t len = strlen(value);
    hid_t t = H5Tcopy(H5T_C_S1);
    RLAIF_CHECK_H5(t, NULL);
    RLAIF_CHECK_H5(H5Tset_size(t, len ? len : 1), NULL);
    RLAIF_CHECK_H5(H5Tset_strpad(t, H5T_STR_NULLPAD), NULL);
    /* ASCII unless it needs UTF-8: HDF5 refuses to convert between character
     * sets, and readers (model_io.c, h5dump) ask for ASCII. */
    int utf8 = 0;
    for (size_t i = 0; i < len; i++) utf8 |= (unsigned char)value[i] >= 0x80;
    RLAIF_CHECK_H5(H5Tset_cset(t, utf8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII), NULL);
    hid_t s = H5Screate(H5S_SCALAR);
    RLAIF_CHECK_H5(s, NULL);
    int rc = write_attr(loc, name, t, s, len ? value : "");
    H5Sclose(s);
    H5Tclose(t);
    if (rc) rlaif_error_context("attribute %s: ", name);
    return rc;
}

static int attr_scalar(hid_t loc, const char *name, hid_t type, const void *v) {
    hid_t s = H5Screate(H5S_SCALAR);
    RLAIF_CHECK_H5(s, NULL);
    int rc = write_attr(loc, name, type, s, v);
    H5Sclose(s);
    if (rc) rlaif_error_context("attribute %s: ", name);
    return rc;
}

int rlaif_h5_attr_i64(hid_t loc, const char *name, int64_t value) {
    return attr_scalar(loc, name, H5T_NATIVE_INT64, &value);
}

int rlaif_h5_attr_f64(hid_t loc, const char *name, double value) {
    return attr_scalar(loc, name, H5T_NATIVE_DOUBLE, &value);
}

int rlaif_h5_attr_i64_array(hid_t loc, const char *name, const int64_t *v, size_t n) {
    hsize_t dim = n;
    hid_t s = H5Screate_simple(1, &dim, NULL);
    RLAIF_CHECK_H5(s, NULL);
    int rc = write_attr(loc, name, H5T_NATIVE_INT64, s, v);
    H5Sclose(s);
    return rc;
}

static int open_attr(hid_t loc, const char *name, hid_t *a) {
    if (H5Aexists(loc, name) <= 0)
        return RLAIF_ERROR(RLAIF_EX_IOERR, "the file is incomplete or not written by rlaif",
                           "attribute '%s' is missing", name);
    *a = H5Aopen(loc, name, H5P_DEFAULT);
    RLAIF_CHECK_H5(*a, NULL);
    return 0;
}

int rlaif_h5_get_attr_str(hid_t loc, const char *name, char **out) {
    hid_t a;
    RLAIF_TRY(open_attr(loc, name, &a));
    hid_t ft = H5Aget_type(a);
    int rc = 0;
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
        rc = RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "attribute '%s' is not a string", name);
    } else if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        char *s = NULL;
        if (H5Aread(a, mt, &s) < 0)
            rc = rlaif_error_h5("H5Aread", __FILE__, __LINE__, NULL);
        else
            *out = xstrdup(s ? s : ""), H5free_memory(s);
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(ft);
        hid_t mt = H5Tcopy(ft);
        *out = xcalloc(n + 1, 1);
        if (H5Aread(a, mt, *out) < 0) {
            rc = rlaif_error_h5("H5Aread", __FILE__, __LINE__, NULL);
            free(*out), *out = NULL;
        }
        H5Tclose(mt);
    }
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

static int get_scalar(hid_t loc, const char *name, hid_t mt, void *out) {
    hid_t a;
    RLAIF_TRY(open_attr(loc, name, &a));
    herr_t e = H5Aread(a, mt, out);
    H5Aclose(a);
    if (e < 0)
        return rlaif_error_h5("H5Aread", __FILE__, __LINE__, "attribute of an unexpected type");
    return 0;
}

int rlaif_h5_get_attr_i64(hid_t loc, const char *name, int64_t *out) {
    return get_scalar(loc, name, H5T_NATIVE_INT64, out);
}

int rlaif_h5_get_attr_f64(hid_t loc, const char *name, double *out) {
    return get_scalar(loc, name, H5T_NATIVE_DOUBLE, out);
}

int rlaif_h5_stamp(hid_t file, const char *kind) {
    char created[64];
    rlaif_timestamp_iso(created, sizeof created);
    /* Every rank of a parallel file must write identical attribute values. */
    hid_t fapl = H5Fget_access_plist(file);
    RLAIF_CHECK_H5(fapl, NULL);
    if (H5Pget_driver(fapl) == H5FD_MPIO) {
        MPI_Comm comm;
        MPI_Info info;
        RLAIF_CHECK_H5(H5Pget_fapl_mpio(fapl, &comm, &info), NULL);
        int rc = MPI_Bcast(created, sizeof created, MPI_CHAR, 0, comm);
        MPI_Comm_free(&comm);
        if (info != MPI_INFO_NULL) MPI_Info_free(&info);
        RLAIF_CHECK_MPI(rc);
    }
    H5Pclose(fapl);
    RLAIF_TRY(rlaif_h5_attr_i64(file, "rlaif_schema", RLAIF_SCHEMA_VERSION));
    RLAIF_TRY(rlaif_h5_attr_str(file, "rlaif_kind", kind));
    RLAIF_TRY(rlaif_h5_attr_str(file, "software_version", "rlaif " PACKAGE_VERSION));
    RLAIF_TRY(rlaif_h5_attr_str(file, "creation_time", created));
    return 0;
}

int rlaif_h5_check_kind(hid_t file, const char *path, const char *kind) {
    int64_t schema = 0;
    char *k = NULL;
    int rc = rlaif_h5_get_attr_i64(file, "rlaif_schema", &schema);
    if (!rc) rc = rlaif_h5_get_attr_str(file, "rlaif_kind", &k);
    if (rc) return rlaif_error_context("%s: ", path);
    if (schema != RLAIF_SCHEMA_VERSION)
        rc = RLAIF_ERROR(RLAIF_EX_IOERR, "convert the file with the rlaif version that wrote it",
                         "%s has rlaif_schema %lld, this rlaif reads %d", path, (long long)schema,
                         RLAIF_SCHEMA_VERSION);
    else if (strcmp(k, kind))
        rc = RLAIF_ERROR(RLAIF_EX_USAGE, "pass the right file", "%s is a %s file, not %s", path, k,
                         kind);
    free(k);
    return rc;
}

int rlaif_h5_mpi_init(int *argc, char ***argv, int *rank, int *nproc) {
    RLAIF_CHECK_MPI(MPI_Init(argc, argv));
    RLAIF_CHECK_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    RLAIF_CHECK_H5(H5Eset_auto2(H5E_DEFAULT, NULL, NULL), NULL);
    RLAIF_CHECK_MPI(MPI_Comm_rank(MPI_COMM_WORLD, rank));
    RLAIF_CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, nproc));
    return 0;
}

uint64_t rlaif_fnv1a64(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
