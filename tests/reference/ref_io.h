/* ref_io.h - what the C sides of the PyTorch reference tests (dpo_ref, rm_ref,
 * lp_ref) share: exit on an rlaif error, read a whole HDF5 dataset or a
 * double attribute, write an array. Failures exit 1 with the name. */
#ifndef RLAIF_REF_IO_H
#define RLAIF_REF_IO_H

#include "rlaif/core/error.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>

static inline void die(void) {
    char buf[2048];
    rlaif_error_format(buf, sizeof buf, 0);
    fprintf(stderr, "%s\n", buf);
    exit(1);
}
#define OK(x)                                                                                      \
    do {                                                                                           \
        if ((x) != 0) die();                                                                       \
    } while (0)

/* The whole dataset name as type (elem bytes each); *n = its element count. */
static inline void *read_all(hid_t f, const char *name, hid_t type, size_t elem, size_t *n) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) fprintf(stderr, "missing %s\n", name), exit(1);
    hid_t s = H5Dget_space(d);
    *n = (size_t)H5Sget_simple_extent_npoints(s);
    void *buf = xmalloc(*n * elem + 1);
    if (H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        fprintf(stderr, "read %s\n", name), exit(1);
    H5Sclose(s), H5Dclose(d);
    return buf;
}

static inline double attr_f64(hid_t f, const char *name) {
    double v;
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    if (a < 0 || H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) fprintf(stderr, "attr %s\n", name), exit(1);
    H5Aclose(a);
    return v;
}

/* An nd-dimensional array buf (memory type mtype) as dataset name (file type ftype). */
static inline void write_arr(hid_t f, const char *name, hid_t mtype, hid_t ftype, int nd,
                             const hsize_t *dims, const void *buf) {
    hid_t s = H5Screate_simple(nd, dims, NULL);
    hid_t d = H5Dcreate2(f, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        fprintf(stderr, "write %s\n", name), exit(1);
    H5Dclose(d), H5Sclose(s);
}

static inline void write_f64(hid_t f, const char *name, const double *v, hsize_t n) {
    write_arr(f, name, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 1, &n, v);
}

#endif
