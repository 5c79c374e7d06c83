/* mpi_siteio.c - site I/O on 4 ranks: the [io] hints reach MPI-IO (read back
 * with MPI_File_get_info from the MPI_File HDF5 opened, and by the probe of
 * `rlaif io`), a checkpoint written with hints and alignment holds exactly
 * the data of one written without, its large datasets start on multiples of
 * the alignment (H5Dget_offset), and a staged checkpoint is copied back
 * byte-identical, refusing a stage folder that is not the same on every rank. */
#include "rlaif/core/error.h"
#include "rlaif/core/fsutil.h"
#include "rlaif/core/iohints.h"
#include "rlaif/storage/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_main.h"

/* Hints Open MPI 4.1's io components (ompio and romio321) both report back. */
#define HINTS                                                                                      \
    "cb_buffer_size=8388608,romio_cb_write=enable,cb_nodes=2,striping_factor=4,"                   \
    "striping_unit=1048576"
#define ALIGN     4096
#define THRESHOLD 1024

static void ok(int rc) {
    if (rc) {
        char buf[1024];
        rlaif_error_format(buf, sizeof buf, 1);
        fprintf(stderr, "%s\n", buf);
        ck_abort_msg("%s", buf);
    }
}

static int rank_of(void) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

static void tmpdir(char *dir, size_t n) {
    if (rank_of() == 0) {
        snprintf(dir, n, "/tmp/rlaif-siteio-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
    }
    MPI_Bcast(dir, (int)n, MPI_CHAR, 0, MPI_COMM_WORLD);
}

static void rmdir_all(const char *dir) {
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank_of() == 0) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
}

static void hinted(rlaif_h5_opts *o) {
    rlaif_h5_opts_default(o);
    snprintf(o->mpi_hints, sizeof o->mpi_hints, "%s", HINTS);
    o->alignment = ALIGN, o->align_threshold = THRESHOLD;
}

/* value of key in info, "" when absent */
static void info_get(MPI_Info info, const char *key, char *val) {
    int flag = 0;
    val[0] = 0;
    if (info != MPI_INFO_NULL) MPI_Info_get(info, key, MPI_MAX_INFO_VAL, val, &flag);
    if (!flag) val[0] = 0;
}

/* What MPI-IO reports for the MPI_File under an open HDF5 file. */
static MPI_Info file_info(hid_t f) {
    MPI_File *fh = NULL;
    ck_assert_int_ge(H5Fget_vfd_handle(f, H5P_DEFAULT, (void **)&fh), 0);
    MPI_Info info = MPI_INFO_NULL;
    ck_assert_int_eq(MPI_File_get_info(*fh, &info), MPI_SUCCESS);
    return info;
}

START_TEST(test_config_merge) {
    char *sets[] = {"io.mpi_hints= cb_buffer_size = 8388608 ,romio_ds_write=disable",
                    "io.striping_factor=4", "io.romio_cb_write=enable"};
    rlaif_config *cfg;
    ok(rlaif_config_load(&cfg, NULL, 3, sets, NULL));
    rlaif_h5_opts o;
    rlaif_h5_opts_from_cfg(&o, cfg);
    ck_assert_str_eq(o.mpi_hints, "cb_buffer_size=8388608,romio_ds_write=disable,"
                                  "striping_factor=4,romio_cb_write=enable");
    rlaif_config_free(cfg);
    /* the same hint in both places with the same value is one hint */
    char *same[] = {"io.mpi_hints=cb_nodes=2", "io.cb_nodes=2"};
    ok(rlaif_config_load(&cfg, NULL, 2, same, NULL));
    rlaif_h5_opts_from_cfg(&o, cfg);
    ck_assert_str_eq(o.mpi_hints, "cb_nodes=2");
    rlaif_config_free(cfg);
    /* contradicting it is a usage error naming both */
    char *clash[] = {"io.mpi_hints=cb_nodes=2", "io.cb_nodes=3"};
    ck_assert_int_eq(rlaif_config_load(&cfg, NULL, 2, clash, NULL), RLAIF_EX_USAGE);
    ck_assert_ptr_nonnull(strstr(rlaif_error_message(), "io.cb_nodes = 3 contradicts"));
    rlaif_error_clear();
}
END_TEST

START_TEST(test_hints_reach_mpiio) {
    char dir[256], path[300], val[MPI_MAX_INFO_VAL + 1];
    tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/h.h5", dir);
    static const char *const want[][2] = {{"cb_buffer_size", "8388608"},
                                          {"romio_cb_write", "enable"},
                                          {"cb_nodes", "2"},
                                          {"striping_factor", "4"},
                                          {"striping_unit", "1048576"}};
    for (int with = 0; with < 2; with++) {
        rlaif_h5_opts o;
        if (with)
            hinted(&o);
        else
            rlaif_h5_opts_default(&o);
        hid_t f;
        ok(rlaif_h5_create(path, MPI_COMM_WORLD, &o, &f));
        MPI_Info info = file_info(f);
        for (int i = 0; i < 5; i++) {
            info_get(info, want[i][0], val);
            /* without hints nothing was passed: the test can tell */
            if (with)
                ck_assert_str_eq(val, want[i][1]);
            else
                ck_assert_str_ne(val, want[i][1]);
        }
        if (info != MPI_INFO_NULL) MPI_Info_free(&info);
        ok(rlaif_h5_close_file(&f));
        /* reopened (read-write and read-only) files get them too */
        ok(rlaif_h5_open(path, MPI_COMM_WORLD, 0, &o, &f));
        info = file_info(f);
        info_get(info, "cb_nodes", val);
        ck_assert_str_eq(val, with ? "2" : "");
        if (info != MPI_INFO_NULL) MPI_Info_free(&info);
        ok(rlaif_h5_close_file(&f));
    }
    /* the probe of `rlaif io` agrees: every hint reported as given */
    int ignored = -1;
    ok(rlaif_io_probe(MPI_COMM_WORLD, dir, HINTS, NULL, &ignored));
    ck_assert_int_eq(ignored, 0);
    rmdir_all(dir);
}
END_TEST

/* ---- checkpoints with and without hints and alignment ---- */

static void make_table(rlaif_tensor_table *tt) {
    memset(tt, 0, sizeof *tt);
    /* 10,240, 4,200, 1,204 and 20 bytes: three above the threshold, odd
     * sizes so that, unaligned, the next one starts off a 4 KiB boundary */
    const int64_t a[] = {64, 40}, b[] = {3, 7, 50}, c[] = {301}, d[] = {5};
    rlaif_tensors_add(tt, "big", 2, a);
    rlaif_tensors_add(tt, "wide", 3, b);
    rlaif_tensors_add(tt, "mid", 1, c);
    rlaif_tensors_add(tt, "small", 1, d);
}

static void save(const char *dir, const rlaif_h5_opts *io, const rlaif_tensor_table *tt,
                 float *params, float *m, float *v, char *path, size_t n) {
    rlaif_ckpt c;
    memset(&c, 0, sizeof c);
    c.table = tt, c.params = params, c.m = m, c.v = v;
    rlaif_ckpt_opts o = {dir, "io", 1, {0}, ""};
    o.io = *io;
    ok(rlaif_checkpoint_save(MPI_COMM_WORLD, &o, 3, &c, path, n));
    rlaif_kv_free(&c.state);
}

/* Every element of dataset name, as raw bytes, its size and file offset;
 * NULL when it cannot be read. */
static char *read_ds(hid_t f, const char *name, size_t *bytes, haddr_t *off) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return NULL;
    *bytes = (size_t)H5Dget_storage_size(ds);
    *off = H5Dget_offset(ds);
    char *buf = malloc(*bytes + 1);
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) free(buf), buf = 0;
    H5Dclose(ds);
    return buf;
}

/* What rank 0 finds in the two files; broadcast, so every rank asserts
 * (a failed assertion on rank 0 alone would leave the others in a collective). */
typedef struct {
    int differ;     /* datasets whose bytes or size differ, or unreadable */
    int large;      /* datasets of at least THRESHOLD bytes */
    int aligned[2]; /* of those, at a multiple of ALIGN in each file */
    int verified;   /* files whose checksums verify */
} ckpt_cmp;

static void compare(const char *pa, const char *pb, const rlaif_tensor_table *tt, ckpt_cmp *r) {
    static const char *const groups[] = {"params", "optim/m", "optim/v"};
    memset(r, 0, sizeof *r);
    hid_t fa = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT),
          fb = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    for (int g = 0; g < 3; g++)
        for (int i = 0; i < tt->n; i++) {
            char name[200];
            snprintf(name, sizeof name, "%s/%s", groups[g], tt->t[i].name);
            size_t na = 0, nb = 0;
            haddr_t oa = HADDR_UNDEF, ob = HADDR_UNDEF;
            char *a = read_ds(fa, name, &na, &oa), *b = read_ds(fb, name, &nb, &ob);
            r->differ += !a || !b || na != 4 * tt->t[i].numel || na != nb || memcmp(a, b, na) ||
                         oa == HADDR_UNDEF || ob == HADDR_UNDEF; /* contiguous, allocated */
            if (na >= THRESHOLD) {
                r->large++;
                r->aligned[0] += oa % ALIGN == 0;
                r->aligned[1] += ob % ALIGN == 0;
            }
            free(a), free(b);
        }
    H5Fclose(fa), H5Fclose(fb);
    r->verified = !rlaif_checkpoint_verify(pa) + !rlaif_checkpoint_verify(pb);
}

START_TEST(test_ckpt_identical_and_aligned) {
    char dir[256], da[300], db[300], pa[512], pb[512];
    tmpdir(dir, sizeof dir);
    snprintf(da, sizeof da, "%s/plain", dir);
    snprintf(db, sizeof db, "%s/hinted", dir);
    rlaif_tensor_table tt;
    make_table(&tt);
    float *p = malloc(4 * tt.total), *m = malloc(4 * tt.total), *v = malloc(4 * tt.total);
    for (size_t i = 0; i < tt.total; i++)
        p[i] = 0.001f * (float)i - 1.0f, m[i] = (float)(i % 97), v[i] = 1.0f / (float)(i + 1);
    rlaif_h5_opts plain, hint;
    rlaif_h5_opts_default(&plain);
    plain.alignment = 1; /* no alignment at all */
    hinted(&hint);
    save(da, &plain, &tt, p, m, v, pa, sizeof pa);
    save(db, &hint, &tt, p, m, v, pb, sizeof pb);
    ckpt_cmp r;
    if (rank_of() == 0) compare(pa, pb, &tt, &r);
    MPI_Bcast(&r, sizeof r, MPI_BYTE, 0, MPI_COMM_WORLD);
    free(p), free(m), free(v);
    rlaif_tensors_free(&tt);
    rmdir_all(dir);
    ck_assert_int_eq(r.differ, 0);
    ck_assert_int_eq(r.verified, 2);
    ck_assert_int_eq(r.large, 9);            /* big, wide, mid in three groups */
    ck_assert_int_eq(r.aligned[1], r.large); /* hinted: every large one aligned */
    ck_assert_int_lt(r.aligned[0], r.large); /* the check has teeth without */
}
END_TEST

/* ---- staging ---- */

static void stage_opts(rlaif_ckpt_opts *o, const char *out, const char *stage) {
    memset(o, 0, sizeof *o);
    o->dir = out, o->name = "st", o->keep = 2;
    rlaif_h5_opts_default(&o->io);
    snprintf(o->stage, sizeof o->stage, "%s", stage);
}

START_TEST(test_stage_copy_back) {
    int rank = rank_of();
    char dir[256], out[300], stage[300], path[512], back[512], f[600];
    tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/out/ckpt", dir);
    snprintf(stage, sizeof stage, "%s/scratch", dir);
    rlaif_tensor_table tt;
    make_table(&tt);
    float *p = calloc(tt.total, 4);
    rlaif_ckpt c;
    memset(&c, 0, sizeof c);
    c.table = &tt, c.params = p;
    rlaif_ckpt_opts o;
    stage_opts(&o, out, stage);
    for (int step = 1; step <= 3; step++) {
        p[0] = (float)step;
        ok(rlaif_checkpoint_save(MPI_COMM_WORLD, &o, step, &c, path, sizeof path));
        ck_assert_ptr_nonnull(strstr(path, "/scratch/st-0000000"));
    }
    ok(rlaif_checkpoint_copy_back(MPI_COMM_WORLD, &o, path, back, sizeof back));
    snprintf(f, sizeof f, "%s/st-00000003.h5", out);
    ck_assert_str_eq(back, f);
    /* rank 0 looks; every rank asserts */
    int r[5] = {0};
    if (rank == 0) {
        int64_t *steps;
        r[0] = rlaif_files_equal(path, back);
        r[1] = rlaif_checkpoint_list(out, "st", &steps, &r[2]) ? -1 : r[2];
        if (r[1] >= 0) free(steps);
        r[2] = rlaif_checkpoint_list(stage, "st", &steps, &r[2]) ? -1 : r[2];
        if (r[2] >= 0) free(steps);
        snprintf(f, sizeof f, "%s/LATEST", out);
        FILE *l = fopen(f, "r");
        char line[64] = "";
        r[3] = l && fgets(line, sizeof line, l) && !strcmp(line, "st-00000003.h5\n");
        if (l) fclose(l);
        snprintf(f, sizeof f, "%s/st-00000003.h5.tmp", out);
        r[4] = access(f, F_OK) != 0;
        rlaif_error_clear();
    }
    MPI_Bcast(r, 5, MPI_INT, 0, MPI_COMM_WORLD);
    ck_assert_int_eq(r[0], 0); /* byte-identical */
    ck_assert_int_eq(r[1], 1); /* only the copied one reaches out_dir */
    ck_assert_int_eq(r[2], 2); /* keep = 2 in the stage */
    ck_assert_int_eq(r[3], 1); /* LATEST names it */
    ck_assert_int_eq(r[4], 1); /* no .tmp left */
    /* resume reads out_dir, where the copy is */
    int found = 0;
    p[0] = 0;
    ok(rlaif_checkpoint_resume(MPI_COMM_WORLD, &o, &c, &found, path, sizeof path));
    ck_assert_int_eq(found, 1);
    ck_assert(p[0] == 3.0f);
    rlaif_kv_free(&c.state), rlaif_kv_free(&c.config);
    free(p);
    rlaif_tensors_free(&tt);
    rmdir_all(dir);
}
END_TEST

/* A node-local folder seen by rank 0 only: the other nodes' ranks would
 * write another file under the same name. Here the last rank's stage is
 * another folder, as it would be on another node. */
START_TEST(test_stage_not_shared) {
    int rank = rank_of(), nproc;
    MPI_Comm_size(MPI_COMM_WORLD, &nproc);
    char dir[256], out[300], stage[300], path[512];
    tmpdir(dir, sizeof dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(stage, sizeof stage, "%s/node%d", dir, rank == nproc - 1 && nproc > 1 ? 1 : 0);
    if (rank == nproc - 1) ok(rlaif_mkdir_p(stage));
    rlaif_tensor_table tt;
    make_table(&tt);
    float *p = calloc(tt.total, 4);
    rlaif_ckpt c;
    memset(&c, 0, sizeof c);
    c.table = &tt, c.params = p;
    rlaif_ckpt_opts o;
    stage_opts(&o, out, stage);
    int rc = rlaif_checkpoint_save(MPI_COMM_WORLD, &o, 1, &c, path, sizeof path);
    if (nproc > 1) {
        ck_assert_int_eq(rc, RLAIF_EX_USAGE);
        char want[64];
        snprintf(want, sizeof want, "on learner %d", nproc - 1);
        ck_assert_ptr_nonnull(strstr(rlaif_error_message(), want));
        rlaif_error_clear();
        int n = -1;
        int64_t *steps = NULL;
        if (rank == 0 && !rlaif_checkpoint_list(stage, "st", &steps, &n)) free(steps);
        MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD);
        ck_assert_int_eq(n, 0); /* nothing written */
    }
    rlaif_kv_free(&c.state);
    free(p);
    rlaif_tensors_free(&tt);
    rmdir_all(dir);
}
END_TEST

static Suite *make_suite(void) {
    Suite *s = suite_create("siteio");
    TCase *tc = tcase_create("siteio");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_config_merge);
    tcase_add_test(tc, test_hints_reach_mpiio);
    tcase_add_test(tc, test_ckpt_identical_and_aligned);
    tcase_add_test(tc, test_stage_copy_back);
    tcase_add_test(tc, test_stage_not_shared);
    suite_add_tcase(s, tc);
    return s;
}
