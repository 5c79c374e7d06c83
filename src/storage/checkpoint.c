/* checkpoint.c - sharded, atomic checkpoints (layout in checkpoint.h).
 *
 * Write order: parallel part (tensors, checksums, root stamp) -> rank 0 adds
 * /config, /state, /tokenizer and complete=1 through a serial handle -> every
 * rank fsyncs the .tmp -> rank 0 renames, fsyncs the folder, updates LATEST,
 * prunes. Each step ends with rlaif_agree so no rank runs ahead of a failure. */
#include "rlaif/storage/checkpoint.h"
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/log.h"
#include "rlaif/engine/model_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* ---- key -> value sets ---- */

static rlaif_kv *kv_slot(rlaif_kvset *s, const char *key) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->kv[i].key, key)) return &s->kv[i];
    s->kv = xrealloc(s->kv, sizeof(rlaif_kv) * (size_t)(s->n + 1));
    rlaif_kv *k = &s->kv[s->n++];
    memset(k, 0, sizeof *k);
    snprintf(k->key, sizeof k->key, "%s", key);
    return k;
}

void rlaif_kv_set_int(rlaif_kvset *s, const char *key, int64_t v) {
    rlaif_kv *k = kv_slot(s, key);
    k->is_int = 1, k->i = v, k->d = (double)v;
}

void rlaif_kv_set_double(rlaif_kvset *s, const char *key, double v) {
    rlaif_kv *k = kv_slot(s, key);
    k->is_int = 0, k->d = v, k->i = (int64_t)v;
}

const rlaif_kv *rlaif_kv_find(const rlaif_kvset *s, const char *key) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->kv[i].key, key)) return &s->kv[i];
    return NULL;
}

int rlaif_kv_get_int(const rlaif_kvset *s, const char *key, int64_t *v) {
    const rlaif_kv *k = rlaif_kv_find(s, key);
    if (!k)
        return RLAIF_ERROR(RLAIF_EX_IOERR, "the checkpoint was written by another phase or version",
                           "checkpoint has no '%s'", key);
    *v = k->is_int ? k->i : (int64_t)k->d;
    return 0;
}

int rlaif_kv_get_double(const rlaif_kvset *s, const char *key, double *v) {
    const rlaif_kv *k = rlaif_kv_find(s, key);
    if (!k)
        return RLAIF_ERROR(RLAIF_EX_IOERR, "the checkpoint was written by another phase or version",
                           "checkpoint has no '%s'", key);
    *v = k->is_int ? (double)k->i : k->d;
    return 0;
}

void rlaif_kv_free(rlaif_kvset *s) {
    free(s->kv);
    s->kv = NULL, s->n = 0;
}

static int kv_write(hid_t loc, const char *group, const rlaif_kvset *s) {
    hid_t g = H5Gopen2(loc, group, H5P_DEFAULT);
    RLAIF_CHECK_H5(g, NULL);
    int rc = 0;
    for (int i = 0; i < s->n && !rc; i++)
        rc = s->kv[i].is_int ? rlaif_h5_attr_i64(g, s->kv[i].key, s->kv[i].i)
                             : rlaif_h5_attr_f64(g, s->kv[i].key, s->kv[i].d);
    H5Gclose(g);
    return rc;
}

static herr_t kv_read_one(hid_t loc, const char *name, const H5A_info_t *info, void *ud) {
    (void)info;
    rlaif_kvset *s = ud;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    H5T_class_t cls = H5Tget_class(t);
    herr_t e = 0;
    if (cls == H5T_INTEGER) {
        int64_t v;
        e = H5Aread(a, H5T_NATIVE_INT64, &v);
        if (e >= 0) rlaif_kv_set_int(s, name, v);
    } else if (cls == H5T_FLOAT) {
        double v;
        e = H5Aread(a, H5T_NATIVE_DOUBLE, &v);
        if (e >= 0) rlaif_kv_set_double(s, name, v);
    } /* strings (job_config) are not part of the set */
    H5Tclose(t);
    H5Aclose(a);
    return e < 0 ? -1 : 0;
}

static int kv_read(hid_t loc, const char *group, rlaif_kvset *s) {
    rlaif_kv_free(s);
    hid_t g = H5Gopen2(loc, group, H5P_DEFAULT);
    RLAIF_CHECK_H5(g, "the checkpoint is incomplete");
    hsize_t idx = 0;
    herr_t e = H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, &idx, kv_read_one, s);
    H5Gclose(g);
    if (e < 0)
        return rlaif_error_h5("H5Aiterate2", __FILE__, __LINE__, "the checkpoint is damaged");
    return 0;
}

/* ---- paths and files ---- */

void rlaif_checkpoint_opts_from_cfg(rlaif_ckpt_opts *o, const rlaif_config *cfg, const char *dir,
                                    const char *name) {
    o->dir = dir, o->name = name;
    o->keep = cfg ? (int)rlaif_cfg_int(cfg, "checkpoint.keep") : 3;
    rlaif_h5_opts_from_cfg(&o->io, cfg);
    snprintf(o->stage, sizeof o->stage, "%s", cfg ? rlaif_cfg_str(cfg, "io.stage_dir") : "");
}

void rlaif_checkpoint_path(const rlaif_ckpt_opts *o, int64_t step, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s-%08lld.h5", o->dir, o->name, (long long)step);
}

static int fsync_path(const char *path, int is_dir) {
    int fd = open(path, is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    RLAIF_CHECK_SYS(fd, RLAIF_EX_IOERR, path);
    int e = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    RLAIF_CHECK_SYS(e, RLAIF_EX_IOERR, path);
    return 0;
}

/* Parse "<name>-<digits>.h5" (exactly); returns 1 and the step on a match. */
static int parse_name(const char *file, const char *name, int64_t *step) {
    size_t nl = strlen(name), fl = strlen(file);
    if (fl < nl + 5 || strncmp(file, name, nl) || file[nl] != '-') return 0;
    if (strcmp(file + fl - 3, ".h5")) return 0;
    int64_t s = 0;
    for (size_t i = nl + 1; i < fl - 3; i++) {
        if (file[i] < '0' || file[i] > '9') return 0;
        s = s * 10 + (file[i] - '0');
    }
    *step = s;
    return fl - 3 > nl + 1;
}

static int cmp_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int rlaif_checkpoint_list(const char *dir, const char *name, int64_t **steps, int *n) {
    *steps = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return rlaif_error_sys(RLAIF_EX_IOERR, "opendir", dir, __FILE__, __LINE__);
    }
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        int64_t s;
        if (!parse_name(e->d_name, name, &s)) continue;
        if (*n == cap) cap = cap ? 2 * cap : 16, *steps = xrealloc(*steps, sizeof(int64_t) * cap);
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    if (*n) qsort(*steps, (size_t)*n, sizeof(int64_t), cmp_desc);
    return 0;
}

/* ---- flat ranges of N-D tensors ---- */

/* Select the row-major flat range [a, b) of a tensor of shape[0..nd) in space,
 * as a union of at most 2*nd-1 hyperslabs; pre[0..depth) fixes the leading
 * indices while recursing into one row. */
static int select_flat(hid_t space, const hsize_t *shape, int nd, int depth, hsize_t *pre,
                       hsize_t a, hsize_t b) {
    if (a >= b) return 0;
    hsize_t inner = 1;
    for (int i = depth + 1; i < nd; i++) inner *= shape[i];
    hsize_t r0 = a / inner, r1 = b / inner;
    hsize_t start[RLAIF_TENSOR_MAX_DIM], count[RLAIF_TENSOR_MAX_DIM];
    if (r0 == r1 || (a % inner && r0 + 1 == r1 && b % inner == 0)) {
        /* Inside one row: recurse with this index fixed. */
        pre[depth] = r0;
        return select_flat(space, shape, nd, depth + 1, pre, a - r0 * inner, b - r0 * inner);
    }
    hsize_t full0 = a % inner ? r0 + 1 : r0;
    if (a % inner) {
        pre[depth] = r0;
        RLAIF_TRY(select_flat(space, shape, nd, depth + 1, pre, a - r0 * inner, inner));
    }
    if (r1 > full0) {
        for (int i = 0; i < depth; i++) start[i] = pre[i], count[i] = 1;
        start[depth] = full0, count[depth] = r1 - full0;
        for (int i = depth + 1; i < nd; i++) start[i] = 0, count[i] = shape[i];
        RLAIF_CHECK_H5(H5Sselect_hyperslab(space, H5S_SELECT_OR, start, NULL, count, NULL), NULL);
    }
    if (b % inner) {
        pre[depth] = r1;
        RLAIF_TRY(select_flat(space, shape, nd, depth + 1, pre, 0, b - r1 * inner));
    }
    return 0;
}

typedef struct {
    uint64_t s1, s2;
} csum;

/* One block of at most 2^16 words: sum w and sum j w (j < 2^16, so each
 * product fits 48 bits and the sums cannot wrap). 32 x 32 -> 64-bit
 * products vectorise (pmuludq); the 64 x 64 ones of the definition do not. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
static void
block_sums(const uint32_t *w, uint32_t n, uint64_t *sw, uint64_t *sjw) {
    uint64_t a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
    for (uint32_t j = 0; j < n; j++) {
        a += w[j];
        b += (uint64_t)j * w[j];
    }
    *sw = a, *sjw = b;
}

/* Bit-pattern checksum of x[0..n), element 0 being tensor index first:
 * s1 = sum w[i], s2 = sum (first + i + 1) w[i], both mod 2^64. Both sums are
 * additive over pieces, so shards combine with MPI_SUM. Computed by blocks
 * of 2^16 as s2 += (first + i0 + 1) sum w + sum j w: the same values mod
 * 2^64, at memory speed (a checkpoint load verifies every tensor). */
static csum checksum(const float *x, size_t n, uint64_t first) {
    csum c = {0, 0};
    const uint32_t *w = (const uint32_t *)x;
    for (size_t i0 = 0; i0 < n; i0 += (size_t)1 << 16) {
        uint32_t len = (uint32_t)(n - i0 < ((size_t)1 << 16) ? n - i0 : (size_t)1 << 16);
        uint64_t sw, sjw;
        block_sums(w + i0, len, &sw, &sjw);
        c.s1 += sw;
        c.s2 += (first + i0 + 1) * sw + sjw;
    }
    return c;
}

static void tensor_dims(const rlaif_tensor_desc *t, hsize_t *dims, int *nd) {
    *nd = t->ndim ? t->ndim : 1;
    dims[0] = 1;
    for (int i = 0; i < t->ndim; i++) dims[i] = (hsize_t)t->shape[i];
}

/* Which part of tensor t does this rank handle: [lo, hi) in the tensor's own
 * flat index space; and where it lives in the caller's buffer. */
typedef struct {
    size_t begin, end; /* the rank's shard of the flat space */
} shard;

static int part_of(const rlaif_tensor_desc *t, shard sh, size_t *lo, size_t *hi) {
    size_t a = t->offset > sh.begin ? t->offset : sh.begin;
    size_t b = t->offset + t->numel < sh.end ? t->offset + t->numel : sh.end;
    if (a >= b) return *lo = *hi = 0, 0;
    *lo = a - t->offset, *hi = b - t->offset;
    return 1;
}

/* Independent or collective transfer of tensor t's part [lo, hi) between
 * dataset ds and mem (which points at element lo). */
static int xfer_part(hid_t ds, const rlaif_tensor_desc *t, size_t lo, size_t hi, float *mem,
                     hid_t dxpl, int write) {
    hsize_t dims[RLAIF_TENSOR_MAX_DIM], pre[RLAIF_TENSOR_MAX_DIM] = {0}, cnt = hi - lo, one = 1;
    int nd;
    tensor_dims(t, dims, &nd);
    hid_t fs = H5Dget_space(ds);
    RLAIF_CHECK_H5(fs, NULL);
    RLAIF_CHECK_H5(H5Sselect_none(fs), NULL);
    RLAIF_TRY(select_flat(fs, dims, nd, 0, pre, lo, hi));
    hid_t ms = H5Screate_simple(1, cnt ? &cnt : &one, NULL);
    RLAIF_CHECK_H5(ms, NULL);
    if (!cnt) RLAIF_CHECK_H5(H5Sselect_none(ms), NULL);
    static float dummy[1];
    herr_t e = write ? H5Dwrite(ds, H5T_NATIVE_FLOAT, ms, fs, dxpl, cnt ? mem : dummy)
                     : H5Dread(ds, H5T_NATIVE_FLOAT, ms, fs, dxpl, cnt ? mem : dummy);
    H5Sclose(ms);
    H5Sclose(fs);
    if (e < 0)
        return rlaif_error_h5(write ? "H5Dwrite" : "H5Dread", __FILE__, __LINE__,
                              write ? "the file system may be full"
                                    : "the checkpoint may be truncated");
    return 0;
}

static const char *const kind_group[3] = {"params", "optim/m", "optim/v"};

static float *kind_buf(const rlaif_ckpt *c, int k) {
    return k == 0 ? c->params : k == 1 ? c->m : c->v;
}

static int kind_sharded(const rlaif_ckpt *c, int k) {
    return k == 0 ? c->params_sharded : c->moments_sharded;
}

/* Pointer to tensor element lo in the caller's buffer of kind k. */
static float *elem_ptr(const rlaif_ckpt *c, int k, const rlaif_tensor_desc *t, size_t lo,
                       shard sh) {
    float *b = kind_buf(c, k);
    return kind_sharded(c, k) ? b + (t->offset + lo - sh.begin) : b + t->offset + lo;
}

/* ---- save ---- */

static int create_tensor(hid_t file, const char *group, const rlaif_tensor_desc *t, hid_t *ds) {
    hsize_t dims[RLAIF_TENSOR_MAX_DIM];
    int nd;
    tensor_dims(t, dims, &nd);
    char name[256];
    snprintf(name, sizeof name, "%s/%s", group, t->name);
    hid_t sp = H5Screate_simple(nd, dims, NULL);
    RLAIF_CHECK_H5(sp, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    RLAIF_CHECK_H5(dcpl, NULL);
    RLAIF_CHECK_H5(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), NULL);
    RLAIF_CHECK_H5(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), NULL);
    *ds = H5Dcreate2(file, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    if (*ds < 0) {
        rlaif_error_h5("H5Dcreate2", __FILE__, __LINE__, "tensor names must be unique");
        return rlaif_error_context("creating %s: ", name);
    }
    return 0;
}

static int write_checksum(hid_t ds, csum c) {
    hsize_t two = 2;
    uint64_t v[2] = {c.s1, c.s2};
    hid_t sp = H5Screate_simple(1, &two, NULL);
    RLAIF_CHECK_H5(sp, NULL);
    hid_t a = H5Acreate2(ds, "checksum", H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    RLAIF_CHECK_H5(a, NULL);
    herr_t e = H5Awrite(a, H5T_NATIVE_UINT64, v);
    H5Aclose(a);
    if (e < 0) return rlaif_error_h5("H5Awrite", __FILE__, __LINE__, NULL);
    return 0;
}

static int nkinds(const rlaif_ckpt *c) {
    return c->m && c->v ? 3 : 1;
}

/* "; 3.2 MiB free of 700.0 KiB..." style note on the file system of path's
 * folder, for messages about a failed write. */
static void space_note(const char *path, char *buf, size_t n) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    struct statvfs sv;
    if (statvfs(slash ? dir : ".", &sv) != 0) {
        snprintf(buf, n, "free space unknown");
        return;
    }
    double avail = (double)sv.f_bavail * (double)sv.f_frsize,
           size = (double)sv.f_blocks * (double)sv.f_frsize;
    snprintf(buf, n, "%.1f MiB free of %.1f MiB on the file system of %s", avail / 1048576.0,
             size / 1048576.0, slash ? dir : ".");
}

/* Rank 0: reserve bytes of tmp before any tensor is written. A full disk then
 * fails here, as one agreed error, instead of in the middle of the parallel
 * writes (where Open MPI's I/O layer reports a short write that HDF5 1.10
 * ignores) or inside the collective close (where it deadlocked the ranks).
 * File systems without fallocate (EOPNOTSUPP) are written without it: a
 * full disk then shows as a failed H5Dwrite, agreed before the close. */
static int reserve_space(const char *tmp, hsize_t bytes) {
    if (getenv("RLAIF_TEST_NO_FALLOCATE")) return 0; /* tests: a file system without it */
    int fd = open(tmp, O_WRONLY);
    RLAIF_CHECK_SYS(fd, RLAIF_EX_IOERR, tmp);
    int e = fallocate(fd, 0, 0, (off_t)bytes) == 0 ? 0 : errno;
    close(fd);
    if (!e || e == EOPNOTSUPP || e == ENOSYS) return 0;
    char note[512];
    space_note(tmp, note, sizeof note);
    return RLAIF_ERROR(
        RLAIF_EX_IOERR,
        e == ENOSPC || e == EDQUOT
            ? "free space (or quota) for the checkpoint, or lower checkpoint.keep; any "
              "earlier checkpoint is intact"
            : "check the checkpoint folder",
        "cannot reserve %.1f MiB: %s (%s)", (double)bytes / 1048576.0, strerror(e), note);
}

/* After an agreed failure: rank 0 empties tmp first, so the collective close
 * (which flushes metadata) finds room on a full disk and cannot leave one
 * rank failing inside it while the others wait; then the caller removes it. */
static void release_space(MPI_Comm comm, const char *tmp) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    if (rank == 0 && truncate(tmp, 0) != 0) rlaif_warn("cannot empty %s: %s", tmp, strerror(errno));
    MPI_Barrier(comm);
}

/* Bytes of source's /hf_files datasets (0 when there is none or it cannot
 * be read), so the reservation covers their copy. */
static herr_t add_ds_bytes(hid_t g, const char *name, const H5L_info_t *info, void *ud) {
    (void)info;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d >= 0) *(hsize_t *)ud += H5Dget_storage_size(d), H5Dclose(d);
    return 0;
}

static hsize_t hf_files_bytes(const char *source) {
    hsize_t n = 0;
    hid_t f = source ? H5Fopen(source, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (f < 0) return 0;
    hid_t g = H5Lexists(f, "hf_files", H5P_DEFAULT) > 0 ? H5Gopen2(f, "hf_files", H5P_DEFAULT) : -1;
    if (g >= 0) H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, add_ds_bytes, &n), H5Gclose(g);
    H5Fclose(f);
    return n;
}

/* source's /hf_files into file (nothing when source has none). A source
 * gone since the model was loaded from it (removed by hand, or rotated out by
 * checkpoint.keep) costs the files, not the checkpoint: a warning. */
static int copy_hf_files(hid_t file, const char *source) {
    hid_t src = access(source, R_OK) == 0 ? H5Fopen(source, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    static int warned; /* once per process, not at every save */
    if (src < 0) {
        if (!warned++)
            rlaif_warn("checkpoint: %s is gone: this checkpoint keeps no Hugging Face files "
                       "(/hf_files)",
                       source);
        return 0;
    }
    int has = rlaif_h5_exists(src, "hf_files"), rc = 0;
    if (has < 0)
        rc = rlaif_error_h5("H5Lexists", __FILE__, __LINE__, NULL);
    else if (has && H5Ocopy(src, "hf_files", file, "hf_files", H5P_DEFAULT, H5P_DEFAULT) < 0)
        rc = rlaif_error_h5("H5Ocopy", __FILE__, __LINE__, NULL);
    H5Fclose(src);
    if (rc) rlaif_error_context("%s /hf_files: ", source);
    return rc;
}

/* Collective part: every tensor of every kind, checksums, root stamp. */
static int save_parallel(MPI_Comm comm, const char *tmp, const rlaif_ckpt_opts *o, rlaif_ckpt *c,
                         int64_t step, shard sh) {
    const rlaif_tensor_table *tt = c->table;
    int nk = nkinds(c), nt = tt->n, nproc;
    MPI_Comm_size(comm, &nproc);
    hid_t file;
    RLAIF_TRY(rlaif_h5_create(tmp, comm, &o->io, &file));
    int rc = rlaif_h5_stamp(file, "checkpoint");
    if (!rc) rc = rlaif_h5_attr_i64(file, "step", step);
    if (!rc) rc = rlaif_h5_attr_i64(file, "nlearners", nproc);
    if (!rc) rc = rlaif_h5_attr_i64(file, "total_params", (int64_t)tt->total);
    for (int k = 0; k < nk && !rc; k++) rc = rlaif_h5_mkgroups(file, kind_group[k]);
    if (!rc) rc = rlaif_h5_mkgroups(file, "config");
    if (!rc) rc = rlaif_h5_mkgroups(file, "state");
    if (!rc) rc = rlaif_h5_mkgroups(file, "tokenizer");
    hid_t *ds = xmalloc(sizeof(hid_t) * (size_t)(nk * nt));
    uint64_t *sums = xcalloc((size_t)(2 * nk * nt), sizeof(uint64_t));
    int made = 0;
    for (int i = 0; i < nk * nt && !rc; i++) {
        rc = create_tensor(file, kind_group[i / nt], &tt->t[i % nt], &ds[i]);
        if (!rc) made++;
    }
    /* Everything is allocated now (H5D_ALLOC_TIME_EARLY): reserve it, plus
     * 64 KiB for the checksums and rank 0's serial groups and the Hugging
     * Face files copied in, before writing. */
    hsize_t size = 0; /* the end of allocated space (larger of EOA and EOF) */
    if (!rc && H5Fget_filesize(file, &size) < 0)
        rc = rlaif_error_h5("H5Fget_filesize", __FILE__, __LINE__, NULL);
    int rank;
    MPI_Comm_rank(comm, &rank);
    rc = rlaif_agree(comm,
                     !rc && rank == 0
                         ? reserve_space(tmp, size + (64 << 10) + hf_files_bytes(c->hf_files_from))
                         : rc);
    hid_t dxpl = rc ? -1 : rlaif_h5_dxpl(&o->io);
    if (!rc && dxpl < 0) rc = rlaif_error_h5("H5Pcreate", __FILE__, __LINE__, NULL);
    /* Raw data: each rank its own part of every tensor. A failure here is
     * local; the collective mode still needs every rank in every call, so
     * after one the rank keeps calling with nothing selected. */
    int all_made = !rc;
    for (int i = 0; i < nk * nt && all_made; i++) {
        const rlaif_tensor_desc *t = &tt->t[i % nt];
        size_t lo, hi;
        part_of(t, sh, &lo, &hi);
        if (rc) lo = hi = 0;
        float *mem = hi > lo ? elem_ptr(c, i / nt, t, lo, sh) : NULL;
        int r = xfer_part(ds[i], t, lo, hi, mem, dxpl, 1);
        if (!rc) rc = r;
        csum cs = checksum(mem, hi - lo, lo);
        sums[2 * i] = cs.s1, sums[2 * i + 1] = cs.s2;
    }
    if (dxpl >= 0) H5Pclose(dxpl);
    rc = rlaif_agree(comm, rc);
    if (!rc) {
        int e = MPI_Allreduce(MPI_IN_PLACE, sums, 2 * nk * nt, MPI_UINT64_T, MPI_SUM, comm);
        if (e != MPI_SUCCESS) rc = rlaif_error_mpi(e, "MPI_Allreduce", __FILE__, __LINE__);
    }
    for (int i = 0; i < nk * nt && !rc; i++)
        rc = write_checksum(ds[i], (csum){sums[2 * i], sums[2 * i + 1]});
    rc = rlaif_agree(comm, rc);
    if (rc) release_space(comm, tmp);
    for (int i = 0; i < made; i++) H5Dclose(ds[i]);
    free(ds), free(sums);
    int rc2 = rlaif_h5_close_file(&file);
    return rlaif_agree(comm, rc ? rc : rc2);
}

/* Rank 0, serial handle: the small groups, then complete=1 last. */
static int save_serial(const char *tmp, rlaif_ckpt *c, int64_t step) {
    hid_t file;
    RLAIF_TRY(rlaif_h5_open_serial(tmp, 1, &file));
    rlaif_kv_set_int(&c->state, "step", step);
    /* when it was written, in the file: eval's "newest policy" must survive a
     * copy (cp, rsync without -t) that gives every file a new mtime */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    rlaif_kv_set_double(&c->state, "saved_at", (double)now.tv_sec + 1e-9 * (double)now.tv_nsec);
    int rc = kv_write(file, "config", &c->config);
    if (!rc) rc = kv_write(file, "state", &c->state);
    if (!rc && (c->m && c->v)) rc = kv_write(file, "optim", &c->optim);
    if (!rc && c->arch) {
        hid_t g = H5Gopen2(file, "config", H5P_DEFAULT);
        rc = g < 0 ? rlaif_error_h5("H5Gopen2", __FILE__, __LINE__, NULL)
                   : rlaif_h5_attr_str(g, "arch", c->arch);
        if (g >= 0) H5Gclose(g);
    }
    if (!rc && c->config_write) {
        hid_t g = H5Gopen2(file, "config", H5P_DEFAULT);
        rc = g < 0 ? rlaif_error_h5("H5Gopen2", __FILE__, __LINE__, NULL)
                   : c->config_write(g, c->config_ud);
        if (g >= 0) H5Gclose(g);
    }
    if (!rc && c->job_config) {
        hid_t g = H5Gopen2(file, "config", H5P_DEFAULT);
        rc = g < 0 ? rlaif_error_h5("H5Gopen2", __FILE__, __LINE__, NULL)
                   : rlaif_h5_attr_str(g, "job_config", c->job_config);
        if (g >= 0) H5Gclose(g);
    }
    if (!rc && c->tokenizer_write) {
        hid_t g = H5Gopen2(file, "tokenizer", H5P_DEFAULT);
        rc = g < 0 ? rlaif_error_h5("H5Gopen2", __FILE__, __LINE__, NULL)
                   : c->tokenizer_write(g, c->tokenizer_ud);
        if (g >= 0) H5Gclose(g);
    }
    if (!rc && c->hf_files_from) rc = copy_hf_files(file, c->hf_files_from);
    if (!rc) rc = rlaif_h5_attr_i64(file, "complete", 1);
    int rc2 = rlaif_h5_close_file(&file);
    return rc ? rc : rc2;
}

static int write_latest(const rlaif_ckpt_opts *o, const char *path) {
    char tmp[4096], dst[4096];
    snprintf(tmp, sizeof tmp, "%s/LATEST.tmp", o->dir);
    snprintf(dst, sizeof dst, "%s/LATEST", o->dir);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    FILE *f = fopen(tmp, "w");
    RLAIF_CHECK_PTR(f, RLAIF_EX_IOERR, tmp);
    int bad = fprintf(f, "%s\n", base) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad) return rlaif_error_sys(RLAIF_EX_IOERR, "write", tmp, __FILE__, __LINE__);
    RLAIF_CHECK_SYS(rename(tmp, dst), RLAIF_EX_IOERR, dst);
    return 0;
}

/* Keep the newest o->keep (at least 1: never the one just written) of this
 * name; remove stale .tmp files of the name. */
static void prune(const rlaif_ckpt_opts *o) {
    int64_t *steps;
    int n, keep = o->keep < 1 ? 1 : o->keep;
    if (rlaif_checkpoint_list(o->dir, o->name, &steps, &n)) {
        rlaif_error_clear();
        return;
    }
    char path[4096];
    for (int i = keep; i < n; i++) {
        rlaif_checkpoint_path(o, steps[i], path, sizeof path);
        if (unlink(path) != 0) rlaif_warn("could not remove old checkpoint %s", path);
    }
    free(steps);
    DIR *d = opendir(o->dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        int64_t s;
        char base[1024];
        if (l < 5 || strcmp(e->d_name + l - 4, ".tmp") || l - 4 >= sizeof base) continue;
        memcpy(base, e->d_name, l - 4), base[l - 4] = 0;
        if (!parse_name(base, o->name, &s)) continue;
        snprintf(path, sizeof path, "%s/%s", o->dir, e->d_name);
        unlink(path); /* a killed writer's leftover */
    }
    if (d) closedir(d);
}

/* Collective, after an agreed failure: nothing half-written survives, and
 * the message names the file and the free space. */
static int save_failed(MPI_Comm comm, const char *tmp) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    char note[512] = "";
    if (rank == 0) {
        if (!strstr(rlaif_error_message(), "free of")) space_note(tmp, note, sizeof note);
        if (unlink(tmp) != 0 && errno != ENOENT) rlaif_warn("cannot remove %s", tmp);
    }
    MPI_Barrier(comm);
    if (*note) rlaif_error_context("(%s) ", note);
    return rlaif_error_context("writing checkpoint %s: ", tmp);
}

/* The job-script tests (tests/e2e/test_slurm_jobs.sh) need a checkpoint
 * that takes as long as a large model's, to see that a cancelled job's ranks
 * get the time to finish it: RLAIF_TEST_CKPT_DELAY (seconds) sleeps between
 * the written .tmp and its rename, where a killed rank leaves no new
 * checkpoint. It changes no byte written. */
static void test_slow_write(void) {
    rlaif_test_delay("RLAIF_TEST_CKPT_DELAY");
}

/* Collective: does every rank see the folder rank 0 sees? A checkpoint is
 * one parallel file all learners write, so a node-local stage folder works
 * only when every learner runs on the node of rank 0; on other nodes the
 * same path is another folder, and the file would be torn between them. */
static int stage_shared(MPI_Comm comm, const char *dir) {
    int rank, token[2] = {(int)getpid(), (int)time(NULL)};
    MPI_Comm_rank(comm, &rank);
    RLAIF_CHECK_MPI(MPI_Bcast(token, 2, MPI_INT, 0, comm));
    char probe[4200], want[64], got[64] = "";
    snprintf(probe, sizeof probe, "%s/.rlaif-stage-%d", dir, token[0]);
    snprintf(want, sizeof want, "%d %d\n", token[0], token[1]);
    int rc = 0;
    if (rank == 0) {
        FILE *f = fopen(probe, "w");
        rc = f && fputs(want, f) >= 0 && fclose(f) == 0
                 ? 0
                 : rlaif_error_sys(RLAIF_EX_IOERR, "write", probe, __FILE__, __LINE__);
    }
    RLAIF_TRY(rlaif_agree(comm, rc));
    FILE *f = fopen(probe, "r");
    if (!f || !fgets(got, sizeof got, f) || strcmp(got, want))
        rc = RLAIF_ERROR(RLAIF_EX_USAGE,
                         "a checkpoint is one file every learner writes: leave io.stage_dir empty, "
                         "or run every learner on one node",
                         "io.stage_dir %s is not the folder of learner 0 on learner %d", dir, rank);
    if (f) fclose(f);
    rc = rlaif_agree(comm, rc);
    if (rank == 0) unlink(probe);
    return rc;
}

int rlaif_checkpoint_save(MPI_Comm comm, const rlaif_ckpt_opts *oo, int64_t step, rlaif_ckpt *c,
                          char *pathout, size_t pathn) {
    int rank, nproc;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    RLAIF_CHECK_MPI(MPI_Comm_size(comm, &nproc));
    /* staged: the whole protocol runs in the stage folder */
    rlaif_ckpt_opts staged;
    const rlaif_ckpt_opts *o = oo;
    if (*oo->stage) staged = *oo, staged.dir = oo->stage, o = &staged;
    char path[4096], tmp[4200];
    rlaif_checkpoint_path(o, step, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    RLAIF_TRY(rlaif_agree(comm, rank == 0 ? rlaif_mkdir_p(o->dir) : 0));
    if (*oo->stage) RLAIF_TRY(stage_shared(comm, o->dir));
    shard sh;
    rlaif_shard_range(c->table->total, nproc, rank, &sh.begin, &sh.end);
    int rc = save_parallel(comm, tmp, o, c, step, sh);
    if (!rc) rc = rlaif_agree(comm, rank == 0 ? save_serial(tmp, c, step) : 0);
    /* On a parallel file system each client flushes its own dirty pages. */
    if (!rc) rc = rlaif_agree(comm, fsync_path(tmp, 0));
    if (rc) return save_failed(comm, tmp);
    test_slow_write();
    if (rank == 0) {
        rc = rename(tmp, path) == 0
                 ? 0
                 : rlaif_error_sys(RLAIF_EX_IOERR, "rename", path, __FILE__, __LINE__);
        if (!rc) rc = fsync_path(o->dir, 1);
        if (!rc) rc = write_latest(o, path);
        if (!rc) rc = fsync_path(o->dir, 1);
        if (!rc) prune(o);
    }
    RLAIF_TRY(rlaif_agree(comm, rc));
    if (pathout) snprintf(pathout, pathn, "%s", path);
    return 0;
}

/* Rank 0: copy, verify, rename into o->dir, LATEST, keep. */
static int copy_back(const rlaif_ckpt_opts *o, const char *path, char *dst, size_t n) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char tmp[4200];
    snprintf(dst, n, "%s/%s", o->dir, base);
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    RLAIF_TRY(rlaif_mkdir_p(o->dir));
    int rc = rlaif_copy_file(path, tmp);
    if (!rc) rc = rlaif_files_equal(path, tmp);
    if (!rc) rc = rlaif_checkpoint_verify(tmp);
    if (!rc && rename(tmp, dst) != 0)
        rc = rlaif_error_sys(RLAIF_EX_IOERR, "rename", dst, __FILE__, __LINE__);
    if (rc) {
        unlink(tmp);
        return rlaif_error_context("copying the staged checkpoint %s to %s: ", path, o->dir);
    }
    RLAIF_TRY(fsync_path(o->dir, 1));
    RLAIF_TRY(write_latest(o, dst));
    RLAIF_TRY(fsync_path(o->dir, 1));
    prune(o);
    return 0;
}

int rlaif_checkpoint_copy_back(MPI_Comm comm, const rlaif_ckpt_opts *o, const char *path,
                               char *pathout, size_t pathn) {
    if (!*o->stage) {
        if (pathout && pathout != path) snprintf(pathout, pathn, "%s", path);
        return 0;
    }
    int rank;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    char dst[4096] = "";
    double t0 = rlaif_now();
    RLAIF_TRY(rlaif_agree(comm, rank == 0 ? copy_back(o, path, dst, sizeof dst) : 0));
    rlaif_info("checkpoint %s copied back to %s (%.1f s, verified)", path, o->dir,
               rlaif_now() - t0);
    /* the name is the same on every rank; only rank 0 built it (path and
     * pathout may be one buffer) */
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(dst, sizeof dst, "%s/%s", o->dir, base);
    if (pathout) snprintf(pathout, pathn, "%s", dst);
    return 0;
}

/* ---- load ---- */

/* Is the open file a complete checkpoint of this schema? */
static int check_header(hid_t file, const char *path) {
    /* Files of the engine's serial writer (src/engine/model_io.c) carry only
     * rlaif_schema: no kind, no complete mark, no checksums. Accept them. */
    int64_t complete = 1, schema = 0;
    int rc = 0;
    if (H5Aexists(file, "rlaif_kind") > 0) {
        rc = rlaif_h5_check_kind(file, path, "checkpoint");
    } else {
        rc = rlaif_h5_get_attr_i64(file, "rlaif_schema", &schema);
        if (!rc && schema != RLAIF_SCHEMA_VERSION)
            rc = RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "%s has rlaif_schema %lld, expected %d", path,
                             (long long)schema, RLAIF_SCHEMA_VERSION);
        if (rc) rlaif_error_context("%s: ", path);
    }
    if (!rc && H5Aexists(file, "complete") > 0)
        rc = rlaif_h5_get_attr_i64(file, "complete", &complete);
    if (!rc && complete != 1)
        rc = RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "%s is not marked complete", path);
    return rc;
}

/* Rank 0, serial: is the file complete, of this schema, with every tensor at
 * its shape? Cheap, and it keeps damaged metadata away from collective calls. */
static int validate(const char *path, const rlaif_ckpt *c) {
    hid_t file;
    RLAIF_TRY(rlaif_h5_open_serial(path, 0, &file));
    int rc = check_header(file, path);
    for (int k = 0; k < nkinds(c) && !rc; k++) {
        for (int i = 0; i < c->table->n && !rc; i++) {
            const rlaif_tensor_desc *t = &c->table->t[i];
            char name[256];
            snprintf(name, sizeof name, "%s/%s", kind_group[k], t->name);
            if (!rlaif_h5_exists(file, name)) {
                rc = RLAIF_ERROR(RLAIF_EX_IOERR,
                                 "the checkpoint is of another model or has no optimizer state",
                                 "%s has no %s", path, name);
                break;
            }
            hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
            hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
            hsize_t dims[8], want[RLAIF_TENSOR_MAX_DIM];
            int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp), wnd;
            tensor_dims(t, want, &wnd);
            if (nd == wnd && nd <= 8) H5Sget_simple_extent_dims(sp, dims, NULL);
            int same = nd == wnd;
            for (int d = 0; same && d < nd; d++) same = dims[d] == want[d];
            if (!same)
                rc = RLAIF_ERROR(RLAIF_EX_IOERR,
                                 "the checkpoint is of another model size (check [model])",
                                 "%s: %s has another shape than the model's", path, name);
            if (sp >= 0) H5Sclose(sp);
            if (ds >= 0) H5Dclose(ds);
        }
    }
    H5Fclose(file);
    return rc;
}

/* *has = 0 (and no error) for a dataset without a checksum (serial writer). */
static int read_checksum(hid_t ds, uint64_t v[2], char *has) {
    *has = H5Aexists(ds, "checksum") > 0;
    if (!*has) return 0;
    hid_t a = H5Aopen(ds, "checksum", H5P_DEFAULT);
    RLAIF_CHECK_H5(a, "the checkpoint is damaged");
    herr_t e = H5Aread(a, H5T_NATIVE_UINT64, v);
    H5Aclose(a);
    if (e < 0) return rlaif_error_h5("H5Aread", __FILE__, __LINE__, "the checkpoint is damaged");
    return 0;
}

int rlaif_checkpoint_verify_tensor(hid_t ds, const float *x, size_t n, const char *path,
                                   const char *name) {
    uint64_t want[2];
    char has;
    RLAIF_TRY(read_checksum(ds, want, &has));
    csum c = checksum(x, n, 0);
    if (has && (c.s1 != want[0] || c.s2 != want[1]))
        return RLAIF_ERROR(RLAIF_EX_IOERR, "the file was damaged after it was written",
                           "%s: checksum mismatch in %s", path, name);
    return 0;
}

static int load_parallel(MPI_Comm comm, const char *path, const rlaif_h5_opts *io, rlaif_ckpt *c,
                         shard sh) {
    const rlaif_tensor_table *tt = c->table;
    int nk = nkinds(c), nt = tt->n;
    hid_t file;
    RLAIF_TRY(rlaif_agree(comm, rlaif_h5_open(path, comm, 0, io, &file)));
    uint64_t *sums = xcalloc((size_t)(4 * nk * nt), sizeof(uint64_t)), *want = sums + 2 * nk * nt;
    char *has = xcalloc((size_t)(nk * nt), 1);
    /* Reads are independent: each rank reads what it needs, and HDF5 1.10.8
     * can hang a collective read in which some ranks select nothing. */
    rlaif_h5_opts indep = *io;
    indep.collective_data = 0;
    hid_t dxpl = rlaif_h5_dxpl(&indep);
    int rc = dxpl < 0 ? rlaif_error_h5("H5Pcreate", __FILE__, __LINE__, NULL) : 0;
    for (int i = 0; i < nk * nt && !rc; i++) {
        int k = i / nt;
        const rlaif_tensor_desc *t = &tt->t[i % nt];
        char name[256];
        snprintf(name, sizeof name, "%s/%s", kind_group[k], t->name);
        hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
        if (ds < 0) {
            rc = rlaif_error_h5("H5Dopen2", __FILE__, __LINE__, "the checkpoint is damaged");
            break;
        }
        rc = read_checksum(ds, &want[2 * i], &has[i]);
        /* Checksum only over this rank's shard, so every element counts once. */
        size_t lo, hi;
        part_of(t, sh, &lo, &hi);
        if (!rc && kind_sharded(c, k)) {
            rc = xfer_part(ds, t, lo, hi, hi > lo ? elem_ptr(c, k, t, lo, sh) : NULL, dxpl, 0);
        } else if (!rc) {
            rc = xfer_part(ds, t, 0, t->numel, kind_buf(c, k) + t->offset, dxpl, 0);
        }
        if (!rc && hi > lo) {
            csum cs = checksum(elem_ptr(c, k, t, lo, sh), hi - lo, lo);
            sums[2 * i] = cs.s1, sums[2 * i + 1] = cs.s2;
        }
        H5Dclose(ds);
    }
    if (dxpl >= 0) H5Pclose(dxpl);
    if (!rc) rc = kv_read(file, "config", &c->config);
    if (!rc) rc = kv_read(file, "state", &c->state);
    if (!rc && nk == 3) rc = kv_read(file, "optim", &c->optim);
    int rc2 = rlaif_h5_close_file(&file);
    rc = rlaif_agree(comm, rc ? rc : rc2);
    if (!rc) {
        int e = MPI_Allreduce(MPI_IN_PLACE, sums, 2 * nk * nt, MPI_UINT64_T, MPI_SUM, comm);
        if (e != MPI_SUCCESS) rc = rlaif_error_mpi(e, "MPI_Allreduce", __FILE__, __LINE__);
    }
    for (int i = 0; i < nk * nt && !rc; i++)
        if (has[i] && (sums[2 * i] != want[2 * i] || sums[2 * i + 1] != want[2 * i + 1]))
            rc = RLAIF_ERROR(RLAIF_EX_IOERR, "the file was damaged after it was written",
                             "%s: checksum mismatch in %s/%s", path, kind_group[i / nt],
                             tt->t[i % nt].name);
    free(sums), free(has);
    return rlaif_agree(comm, rc);
}

int rlaif_checkpoint_load(MPI_Comm comm, const char *path, const rlaif_h5_opts *io, rlaif_ckpt *c) {
    int rank, nproc;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    RLAIF_CHECK_MPI(MPI_Comm_size(comm, &nproc));
    RLAIF_TRY(rlaif_agree(comm, rank == 0 ? validate(path, c) : 0));
    shard sh;
    rlaif_shard_range(c->table->total, nproc, rank, &sh.begin, &sh.end);
    RLAIF_TRY(load_parallel(comm, path, io, c, sh));
    int rc = 0;
    if (c->tokenizer_read) {
        hid_t file;
        rc = rlaif_h5_open_serial(path, 0, &file);
        if (!rc) {
            hid_t g = H5Gopen2(file, "tokenizer", H5P_DEFAULT);
            rc = g < 0 ? rlaif_error_h5("H5Gopen2", __FILE__, __LINE__, "no /tokenizer group")
                       : c->tokenizer_read(g, c->tokenizer_read_ud);
            if (g >= 0) H5Gclose(g);
            H5Fclose(file);
        }
    }
    return rlaif_agree(comm, rc);
}

/* Never a silent fallback: a damaged newest checkpoint is named with the one
 * resumed instead, and with none good the phase refuses to start (starting
 * afresh would train from the damaged values already in c's buffers and
 * then prune the checkpoints it could not read). */
int rlaif_checkpoint_resume(MPI_Comm comm, const rlaif_ckpt_opts *o, rlaif_ckpt *c, int *found,
                            char *pathout, size_t pathn) {
    int rank;
    RLAIF_CHECK_MPI(MPI_Comm_rank(comm, &rank));
    int64_t *steps = NULL;
    int n = 0;
    RLAIF_TRY(
        rlaif_agree(comm, rank == 0 ? rlaif_checkpoint_list(o->dir, o->name, &steps, &n) : 0));
    RLAIF_CHECK_MPI(MPI_Bcast(&n, 1, MPI_INT, 0, comm));
    if (rank != 0) steps = xmalloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    RLAIF_CHECK_MPI(MPI_Bcast(steps, n, MPI_INT64_T, 0, comm));
    *found = 0;
    char newest[4096] = "", why[1024] = "", path[4096] = "";
    for (int i = 0; i < n && !*found; i++) {
        rlaif_checkpoint_path(o, steps[i], path, sizeof path);
        if (rlaif_checkpoint_load(comm, path, &o->io, c) == 0) {
            *found = 1;
        } else {
            if (rank == 0) rlaif_warn("checkpoint %s is damaged: %s", path, rlaif_error_message());
            if (!*newest) {
                snprintf(newest, sizeof newest, "%s", path);
                snprintf(why, sizeof why, "%s", rlaif_error_message());
            }
            rlaif_error_clear();
        }
    }
    free(steps);
    if (*found && *newest && rank == 0)
        rlaif_warn("resuming from the older checkpoint %s instead of the damaged newest %s", path,
                   newest);
    if (n > 0 && !*found)
        return RLAIF_ERROR(RLAIF_EX_IOERR,
                           "restore the file, or move the damaged checkpoints away to start the "
                           "phase afresh",
                           "no checkpoint of %s in %s loads: the newest, %s, is damaged (%s)",
                           o->name, o->dir, newest, why);
    if (*found && pathout) snprintf(pathout, pathn, "%s", path);
    return 0;
}

/* ---- what a file says of itself ---- */

/* rlaif_h5_stamp's "2026-12-01T17:39:08Z" as seconds since the epoch (0: unreadable). */
static double stamp_seconds(hid_t file) {
    char *s = NULL;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ok = H5Aexists(file, "creation_time") > 0 &&
             !rlaif_h5_get_attr_str(file, "creation_time", &s) &&
             sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                    &tm.tm_min, &tm.tm_sec) == 6;
    free(s);
    tm.tm_year -= 1900, tm.tm_mon -= 1;
    return ok ? (double)timegm(&tm) : 0;
}

int rlaif_checkpoint_info(const char *path, rlaif_ckpt_info *info) {
    memset(info, 0, sizeof *info);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    rlaif_kvset st = {0, NULL};
    int rc = f < 0 || H5Lexists(f, "state", H5P_DEFAULT) <= 0 || kv_read(f, "state", &st) ? -1 : 0;
    const rlaif_kv *step = rlaif_kv_find(&st, "step"), *done = rlaif_kv_find(&st, "done"),
                   *at = rlaif_kv_find(&st, "saved_at");
    if (!rc) {
        info->step = step && step->is_int ? step->i : 0;
        info->done = done && done->is_int && done->i != 0;
        info->saved_at = at && !at->is_int ? at->d : stamp_seconds(f);
    }
    rlaif_kv_free(&st);
    if (f >= 0) H5Fclose(f);
    rlaif_error_clear(); /* a damaged file is passed over, not an error */
    return rc;
}

typedef struct {
    const char *path, *group;
    int rc;
} verify_walk;

/* H5Literate callback: one dataset of a group against its checksum. */
static herr_t verify_one(hid_t g, const char *name, const H5L_info_t *li, void *ud) {
    (void)li;
    verify_walk *w = ud;
    char where[512];
    snprintf(where, sizeof where, "%s/%s", w->group, name);
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    float *x = n < 0 ? NULL : xmalloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!x || H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        w->rc = RLAIF_ERROR(RLAIF_EX_IOERR, "the file was damaged after it was written",
                            "%s: cannot read %s", w->path, where);
    else
        w->rc = rlaif_checkpoint_verify_tensor(ds, x, (size_t)n, w->path, where);
    free(x);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    return w->rc ? -1 : 0;
}

int rlaif_checkpoint_verify(const char *path) {
    hid_t file;
    RLAIF_TRY(rlaif_h5_open_serial(path, 0, &file));
    int rc = check_header(file, path);
    for (int k = 0; k < 3 && !rc; k++) {
        if (!rlaif_h5_exists(file, kind_group[k])) continue; /* an export without moments */
        verify_walk w = {path, kind_group[k], 0};
        hid_t g = H5Gopen2(file, kind_group[k], H5P_DEFAULT);
        hsize_t idx = 0;
        herr_t e = g < 0 ? -1 : H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, verify_one, &w);
        rc = w.rc    ? w.rc
             : e < 0 ? rlaif_error_h5("H5Literate", __FILE__, __LINE__, "the checkpoint is damaged")
                     : 0;
        if (g >= 0) H5Gclose(g);
    }
    H5Fclose(file);
    return rc;
}

/* /state done of a checkpoint: 1 done, 0 not done, -1 unreadable. */
static int checkpoint_done(const char *path) {
    rlaif_ckpt_info info;
    return rlaif_checkpoint_info(path, &info) ? -1 : info.done;
}

int rlaif_checkpoint_newest_done(const char *dir, const char *name, const char *who, char *path,
                                 size_t n, int *found, int *count) {
    int64_t *steps = NULL;
    *found = 0;
    RLAIF_TRY(rlaif_checkpoint_list(dir, name, &steps, count));
    for (int i = 0; i < *count && !*found; i++) {
        snprintf(path, n, "%s/%s-%08lld.h5", dir, name, (long long)steps[i]);
        int done = checkpoint_done(path);
        *found = done == 1;
        if (done < 0)
            rlaif_warn("%s: %s is unreadable; looking at older ones", who, path);
        else if (!done)
            rlaif_warn("%s: %s is not a finished %s run; looking at older ones", who, path, name);
    }
    free(steps);
    return 0;
}
