/* model_io.c - serial HDF5 checkpoints (see model_io.h). */
#include "rlaif/engine/model_io.h"
#include "rlaif/core/error.h"
#include "rlaif/storage/checkpoint.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define H5_HINT "check the path, free space and permissions"

/* A scalar attribute of file type ftype written from memory type mtype. */
static int write_attr(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *value) {
    hid_t sp = H5Screate(H5S_SCALAR);
    RLAIF_CHECK_H5(sp, H5_HINT);
    hid_t at = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    RLAIF_CHECK_H5(at, H5_HINT);
    herr_t e = H5Awrite(at, mtype, value);
    H5Aclose(at);
    RLAIF_CHECK_H5(e, H5_HINT);
    return 0;
}

int rlaif_h5_write_attr_i64(hid_t loc, const char *name, long long value) {
    return write_attr(loc, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &value);
}

int rlaif_h5_read_attr_i64(hid_t loc, const char *path, const char *what, const char *name,
                           long long *value) {
    if (H5Aexists(loc, name) <= 0)
        return RLAIF_ERROR(RLAIF_EX_IOERR, "is this an rlaif checkpoint of the same version?",
                           "%s: attribute %s of %s is missing", path, name, what);
    hid_t at = H5Aopen(loc, name, H5P_DEFAULT);
    RLAIF_CHECK_H5(at, NULL);
    herr_t e = H5Aread(at, H5T_NATIVE_LLONG, value);
    H5Aclose(at);
    if (e < 0)
        return RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "%s: attribute %s of %s is not an integer", path,
                           name, what);
    return 0;
}

static int write_attr_f64(hid_t loc, const char *name, double value) {
    return write_attr(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

static int write_attr_str(hid_t loc, const char *name, const char *value) {
    hid_t ty = H5Tcopy(H5T_C_S1);
    RLAIF_CHECK_H5(ty, NULL);
    H5Tset_size(ty, strlen(value) + 1);
    H5Tset_strpad(ty, H5T_STR_NULLTERM);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t at = H5Acreate2(loc, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(sp);
    if (at < 0) H5Tclose(ty);
    RLAIF_CHECK_H5(at, H5_HINT);
    herr_t e = H5Awrite(at, ty, value);
    H5Aclose(at);
    H5Tclose(ty);
    RLAIF_CHECK_H5(e, H5_HINT);
    return 0;
}

static int read_attr_str(hid_t loc, const char *path, const char *name, char *buf, size_t n) {
    if (H5Aexists(loc, name) <= 0)
        return RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "%s: attribute /config %s is missing", path, name);
    hid_t at = H5Aopen(loc, name, H5P_DEFAULT);
    RLAIF_CHECK_H5(at, NULL);
    hid_t ft = H5Aget_type(at);
    int ok =
        ft >= 0 && H5Tget_class(ft) == H5T_STRING && !H5Tis_variable_str(ft) && H5Tget_size(ft) < n;
    herr_t e = -1;
    if (ok) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5Tget_size(ft) + 1);
        memset(buf, 0, n);
        e = H5Aread(at, mt, buf);
        H5Tclose(mt);
    }
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(at);
    if (e < 0)
        return RLAIF_ERROR(RLAIF_EX_IOERR, NULL,
                           "%s: attribute /config %s is not a fixed-length string", path, name);
    return 0;
}

/* Creates (or opens) a group path such as "/optim/m", parents included. */
static hid_t group_create(hid_t file, const char *name) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Lexists(file, name, H5P_DEFAULT) > 0
                  ? H5Gopen2(file, name, H5P_DEFAULT)
                  : H5Gcreate2(file, name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    return g;
}

/* The /config attributes, in one table for the writer and the reader:
 * name, where in the struct, and whether a gpt2 checkpoint written before
 * OPT/Llama existed may lack it (then the field stays 0: the gpt2 default
 * after rlaif_model_config_fill). */
typedef struct {
    const char *name;
    size_t off;
    int since_v2; /* added with OPT/Llama */
} int_attr;

#define IA(field, v2)                                                                              \
    { #field, offsetof(rlaif_model_config, field), v2 }
static const int_attr int_attrs[] = {IA(n_layer, 0),
                                     IA(n_embd, 0),
                                     IA(n_head, 0),
                                     IA(vocab_size, 0),
                                     IA(max_seq_len, 0),
                                     IA(score_head, 0),
                                     IA(n_kv_head, 1),
                                     IA(n_inner, 1),
                                     IA(word_embed_dim, 1),
                                     IA(norm_before, 1),
                                     IA(tie_embeddings, 1),
                                     IA(attn_bias, 1),
                                     IA(rope_original_max_pos, 1),
                                     IA(sliding_window, 1)};
#undef IA
#define N_INT_ATTRS (sizeof int_attrs / sizeof int_attrs[0])

typedef struct {
    const char *name;
    size_t off;
} f_attr;
static const f_attr f_attrs[] = {
    {"layer_norm_epsilon", offsetof(rlaif_model_config, norm_eps)},
    {"rope_theta", offsetof(rlaif_model_config, rope_theta)},
    {"rope_factor", offsetof(rlaif_model_config, rope_factor)},
    {"rope_low_freq_factor", offsetof(rlaif_model_config, rope_low_freq_factor)},
    {"rope_high_freq_factor", offsetof(rlaif_model_config, rope_high_freq_factor)}};
#define N_F_ATTRS (sizeof f_attrs / sizeof f_attrs[0])

int rlaif_h5_write_config_attrs(hid_t g, const rlaif_model_config *cfg) {
    rlaif_model_config c = *cfg;
    rlaif_model_config_fill(&c);
    int rc = write_attr_str(g, "arch", rlaif_arch_name(c.arch));
    if (!rc) rc = write_attr_str(g, "rope_type", rlaif_rope_type_name(c.rope_type));
    for (size_t i = 0; i < N_INT_ATTRS && !rc; i++)
        rc = rlaif_h5_write_attr_i64(g, int_attrs[i].name,
                                     *(const int *)((const char *)&c + int_attrs[i].off));
    for (size_t i = 0; i < N_F_ATTRS && !rc; i++)
        rc = write_attr_f64(g, f_attrs[i].name,
                            (double)*(const float *)((const char *)&c + f_attrs[i].off));
    return rc;
}

int rlaif_h5_write_config(hid_t file, const rlaif_model_config *c) {
    RLAIF_TRY(rlaif_h5_write_attr_i64(file, "rlaif_schema", RLAIF_SCHEMA_VERSION));
    hid_t g = group_create(file, "/config");
    RLAIF_CHECK_H5(g, H5_HINT);
    int rc = rlaif_h5_write_config_attrs(g, c);
    H5Gclose(g);
    return rc;
}

static int read_attr_f64(hid_t loc, const char *path, const char *name, double *value) {
    hid_t at = H5Aopen(loc, name, H5P_DEFAULT);
    RLAIF_CHECK_H5(at, NULL);
    herr_t e = H5Aread(at, H5T_NATIVE_DOUBLE, value);
    H5Aclose(at);
    if (e < 0 || !isfinite(*value))
        return RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "%s: attribute /config %s is not a finite number",
                           path, name);
    return 0;
}

/* arch and rope_type strings; an old gpt2 checkpoint has no rope_type. */
static int read_names(hid_t g, const char *path, rlaif_model_config *c) {
    char s[32];
    RLAIF_TRY(read_attr_str(g, path, "arch", s, sizeof s));
    if ((c->arch = rlaif_arch_parse(s)) < 0)
        return RLAIF_ERROR(RLAIF_EX_IOERR, NULL,
                           "%s: /config arch '%s' is not supported (gpt2, opt, llama)", path, s);
    if (c->arch == RLAIF_ARCH_GPT2 && H5Aexists(g, "rope_type") <= 0) return 0;
    RLAIF_TRY(read_attr_str(g, path, "rope_type", s, sizeof s));
    if ((c->rope_type = rlaif_rope_type_parse(s)) < 0)
        return RLAIF_ERROR(RLAIF_EX_IOERR, NULL,
                           "%s: /config rope_type '%s' is not supported (default, linear, llama3)",
                           path, s);
    return 0;
}

/* The numeric attributes (old gpt2 files: the newer ones may be missing). */
static int read_numbers(hid_t g, const char *path, rlaif_model_config *c) {
    int old_gpt2 = c->arch == RLAIF_ARCH_GPT2;
    for (size_t i = 0; i < N_INT_ATTRS; i++) {
        const char *name = int_attrs[i].name;
        long long v = 0;
        if (old_gpt2 && int_attrs[i].since_v2 && H5Aexists(g, name) <= 0) continue;
        RLAIF_TRY(rlaif_h5_read_attr_i64(g, path, "/config", name, &v));
        if (v < 0 || v > (1 << 30))
            return RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "%s: /config %s = %lld is out of range", path,
                               name, v);
        *(int *)((char *)c + int_attrs[i].off) = (int)v;
    }
    for (size_t i = 0; i < N_F_ATTRS; i++) {
        double v = 0.0;
        if (old_gpt2 && H5Aexists(g, f_attrs[i].name) <= 0) continue;
        if (H5Aexists(g, f_attrs[i].name) <= 0)
            return RLAIF_ERROR(RLAIF_EX_IOERR, "is this an rlaif checkpoint of the same version?",
                               "%s: attribute %s of /config is missing", path, f_attrs[i].name);
        RLAIF_TRY(read_attr_f64(g, path, f_attrs[i].name, &v));
        *(float *)((char *)c + f_attrs[i].off) = (float)v;
    }
    return 0;
}

int rlaif_h5_read_config(hid_t file, const char *path, rlaif_model_config *c) {
    long long v = 0;
    memset(c, 0, sizeof *c);
    if (H5Aexists(file, "rlaif_schema") <= 0)
        return RLAIF_ERROR(RLAIF_EX_IOERR,
                           "convert Hugging Face models with tools/user/hf-to-rlaif",
                           "%s is not an rlaif checkpoint (no root attribute rlaif_schema)", path);
    RLAIF_TRY(rlaif_h5_read_attr_i64(file, path, "/", "rlaif_schema", &v));
    if (v != RLAIF_SCHEMA_VERSION)
        return RLAIF_ERROR(RLAIF_EX_IOERR, "use the rlaif version that wrote it",
                           "%s: rlaif_schema is %lld, this build reads version %d", path, v,
                           RLAIF_SCHEMA_VERSION);
    if (H5Lexists(file, "/config", H5P_DEFAULT) <= 0)
        return RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "%s: group /config is missing", path);
    hid_t g = H5Gopen2(file, "/config", H5P_DEFAULT);
    RLAIF_CHECK_H5(g, NULL);
    int rc = read_names(g, path, c);
    if (!rc) rc = read_numbers(g, path, c);
    H5Gclose(g);
    RLAIF_TRY(rc);
    rlaif_model_config_fill(c);
    if (rlaif_model_config_check(c)) return rlaif_error_context("%s: /config: ", path);
    return 0;
}

int rlaif_h5_write_tensors(hid_t file, const char *group, const rlaif_tensor_table *table,
                           const float *buf) {
    hid_t g = group_create(file, group);
    RLAIF_CHECK_H5(g, H5_HINT);
    for (int i = 0; i < table->n; i++) {
        const rlaif_tensor_desc *d = &table->t[i];
        hsize_t dims[RLAIF_TENSOR_MAX_DIM];
        for (int k = 0; k < d->ndim; k++) dims[k] = (hsize_t)d->shape[k];
        hid_t sp = H5Screate_simple(d->ndim, dims, NULL);
        hid_t ds = sp < 0 ? -1
                          : H5Dcreate2(g, d->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                       H5P_DEFAULT);
        herr_t e =
            ds < 0 ? -1
                   : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf + d->offset);
        if (ds >= 0) H5Dclose(ds);
        if (sp >= 0) H5Sclose(sp);
        if (e < 0) {
            H5Gclose(g);
            rlaif_error_h5("H5Dwrite", __FILE__, __LINE__, H5_HINT);
            return rlaif_error_context("writing %s/%s: ", group, d->name);
        }
    }
    H5Gclose(g);
    return 0;
}

static void shape_str(char *s, size_t n, int nd, const hsize_t *dims64, const int64_t *dims) {
    size_t k = (size_t)snprintf(s, n, "[");
    for (int i = 0; i < nd && k < n; i++)
        k += (size_t)snprintf(s + k, n - k, "%s%lld", i ? ", " : "",
                              dims64 ? (long long)dims64[i] : (long long)dims[i]);
    if (k < n) snprintf(s + k, n - k, "]");
}

int rlaif_h5_read_tensors(hid_t file, const char *path, const char *group,
                          const rlaif_tensor_table *table, float *buf) {
    if (H5Lexists(file, group, H5P_DEFAULT) <= 0)
        return RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "%s: group %s is missing", path, group);
    hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
    RLAIF_CHECK_H5(g, NULL);
    int rc = 0;
    for (int i = 0; i < table->n && !rc; i++) {
        const rlaif_tensor_desc *d = &table->t[i];
        if (H5Lexists(g, d->name, H5P_DEFAULT) <= 0) {
            rc = RLAIF_ERROR(RLAIF_EX_IOERR,
                             "the checkpoint and the model config disagree; was it converted "
                             "from a different architecture?",
                             "%s: dataset %s/%s is missing", path, group, d->name);
            break;
        }
        hid_t ds = H5Dopen2(g, d->name, H5P_DEFAULT);
        hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
        hid_t ty = ds < 0 ? -1 : H5Dget_type(ds);
        hsize_t dims[8] = {0};
        int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
        if (nd >= 0 && nd <= 8) H5Sget_simple_extent_dims(sp, dims, NULL);
        int same = nd == d->ndim;
        for (int k = 0; same && k < nd; k++) same = dims[k] == (hsize_t)d->shape[k];
        if (ds < 0 || sp < 0 || ty < 0) {
            rc = RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "%s: cannot open dataset %s/%s", path, group,
                             d->name);
        } else if (!same) {
            char got[128], want[128];
            shape_str(got, sizeof got, nd < 8 ? nd : 8, dims, NULL);
            shape_str(want, sizeof want, d->ndim, NULL, d->shape);
            rc = RLAIF_ERROR(RLAIF_EX_IOERR, "the checkpoint and the model config disagree",
                             "%s: dataset %s/%s has shape %s, the model expects %s", path, group,
                             d->name, got, want);
        } else if (H5Tget_class(ty) != H5T_FLOAT) {
            rc = RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "%s: dataset %s/%s is not floating point", path,
                             group, d->name);
        } else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf + d->offset) <
                   0) {
            rlaif_error_h5("H5Dread", __FILE__, __LINE__, NULL);
            rc = rlaif_error_context("%s: reading %s/%s: ", path, group, d->name);
        } else { /* verified before any caller sees the values */
            char name[512];
            snprintf(name, sizeof name, "%s/%s", group, d->name);
            rc = rlaif_checkpoint_verify_tensor(ds, buf + d->offset, d->numel, path, name);
        }
        if (ty >= 0) H5Tclose(ty);
        if (sp >= 0) H5Sclose(sp);
        if (ds >= 0) H5Dclose(ds);
    }
    H5Gclose(g);
    return rc;
}

int rlaif_ckpt_save(const char *path, const rlaif_model *m, const rlaif_adamw *opt, long step) {
    if (opt && (opt->begin != 0 || opt->end != m->table.total))
        return RLAIF_ERROR(RLAIF_EX_SOFTWARE, "use the sharded writer of the storage module",
                           "serial checkpoint of a sharded optimizer");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        rlaif_error_h5("H5Fcreate", __FILE__, __LINE__, H5_HINT);
        return rlaif_error_context("creating checkpoint %s: ", path);
    }
    int rc = rlaif_h5_write_config(f, &m->cfg);
    if (!rc) rc = rlaif_h5_write_tensors(f, "/params", &m->table, m->params);
    if (!rc && opt) {
        /* m and v are indexed from begin = 0, so the table offsets apply. */
        rc = rlaif_h5_write_tensors(f, "/optim/m", &m->table, opt->m);
        if (!rc) rc = rlaif_h5_write_tensors(f, "/optim/v", &m->table, opt->v);
        hid_t g = rc ? -1 : H5Gopen2(f, "/optim", H5P_DEFAULT);
        if (!rc && g < 0) rc = rlaif_error_h5("H5Gopen2(/optim)", __FILE__, __LINE__, H5_HINT);
        if (!rc) rc = rlaif_h5_write_attr_i64(g, "step", opt->step);
        if (!rc) rc = rlaif_h5_write_attr_i64(g, "skipped", opt->skipped);
        if (g >= 0) H5Gclose(g);
    }
    if (!rc) {
        hid_t g = group_create(f, "/state");
        if (g < 0)
            rc = rlaif_error_h5("H5Gcreate2(/state)", __FILE__, __LINE__, H5_HINT);
        else
            rc = rlaif_h5_write_attr_i64(g, "step", step), H5Gclose(g);
    }
    if (H5Fclose(f) < 0 && !rc) rc = rlaif_error_h5("H5Fclose", __FILE__, __LINE__, H5_HINT);
    if (rc) rlaif_error_context("writing checkpoint %s: ", path);
    return rc;
}

static int open_ro(const char *path, hid_t *f) {
    FILE *probe = fopen(path, "rb");
    RLAIF_CHECK_PTR(probe, RLAIF_EX_NOINPUT, path);
    fclose(probe);
    *f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*f < 0) {
        rlaif_error_h5("H5Fopen", __FILE__, __LINE__, "is it an HDF5 file?");
        return rlaif_error_context("opening checkpoint %s: ", path);
    }
    return 0;
}

int rlaif_ckpt_read_config(const char *path, rlaif_model_config *cfg) {
    hid_t f;
    RLAIF_TRY(open_ro(path, &f));
    int rc = rlaif_h5_read_config(f, path, cfg);
    H5Fclose(f);
    return rc;
}

int rlaif_model_load(const char *path, rlaif_model *m) {
    rlaif_model_config cfg;
    memset(m, 0, sizeof *m);
    RLAIF_TRY(rlaif_ckpt_read_config(path, &cfg));
    RLAIF_TRY(rlaif_model_create(m, &cfg));
    int rc = rlaif_ckpt_load(path, m, NULL, NULL);
    if (rc) rlaif_model_free(m);
    return rc;
}

/* A config in one line, for error messages. */
static void describe(const rlaif_model_config *c, char *buf, size_t n) {
    snprintf(buf, n,
             "%s L=%d C=%d NH=%d NKV=%d F=%d Cw=%d V=%d T=%d score=%d pre=%d tie=%d bias=%d "
             "eps=%g rope=%s/%g/%g window=%d",
             rlaif_arch_name(c->arch), c->n_layer, c->n_embd, c->n_head, c->n_kv_head, c->n_inner,
             c->word_embed_dim, c->vocab_size, c->max_seq_len, c->score_head, c->norm_before,
             c->tie_embeddings, c->attn_bias, (double)c->norm_eps,
             rlaif_rope_type_name(c->rope_type), (double)c->rope_theta, (double)c->rope_factor,
             c->sliding_window);
}

int rlaif_ckpt_load(const char *path, rlaif_model *m, rlaif_adamw *opt, long *step) {
    hid_t f;
    RLAIF_TRY(open_ro(path, &f));
    rlaif_model_config cfg;
    int rc = rlaif_h5_read_config(f, path, &cfg);
    if (!rc && memcmp(&cfg, &m->cfg, sizeof cfg)) {
        char a[256], b[256];
        describe(&cfg, a, sizeof a), describe(&m->cfg, b, sizeof b);
        rc = RLAIF_ERROR(RLAIF_EX_IOERR, "build the model from the checkpoint's /config",
                         "%s: /config (%s) differs from the model (%s)", path, a, b);
    }
    if (!rc) rc = rlaif_h5_read_tensors(f, path, "/params", &m->table, m->params);
    if (!rc && opt) {
        if (opt->begin != 0 || opt->end != m->table.total)
            rc = RLAIF_ERROR(RLAIF_EX_SOFTWARE, NULL, "serial load of a sharded optimizer");
        if (!rc) rc = rlaif_h5_read_tensors(f, path, "/optim/m", &m->table, opt->m);
        if (!rc) rc = rlaif_h5_read_tensors(f, path, "/optim/v", &m->table, opt->v);
        long long s = 0, k = 0;
        hid_t g = rc ? -1 : H5Gopen2(f, "/optim", H5P_DEFAULT);
        if (!rc) rc = rlaif_h5_read_attr_i64(g, path, "/optim", "step", &s);
        if (!rc) rc = rlaif_h5_read_attr_i64(g, path, "/optim", "skipped", &k);
        if (g >= 0) H5Gclose(g);
        opt->step = (long)s, opt->skipped = (long)k;
    }
    if (!rc && step) {
        long long s = 0;
        if (H5Lexists(f, "/state", H5P_DEFAULT) <= 0)
            rc = RLAIF_ERROR(RLAIF_EX_IOERR, NULL, "%s: group /state is missing", path);
        hid_t g = rc ? -1 : H5Gopen2(f, "/state", H5P_DEFAULT);
        if (!rc) rc = rlaif_h5_read_attr_i64(g, path, "/state", "step", &s);
        if (g >= 0) H5Gclose(g);
        *step = (long)s;
    }
    H5Fclose(f);
    return rc;
}
