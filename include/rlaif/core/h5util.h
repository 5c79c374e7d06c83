/* h5util.h - checked parallel HDF5 helpers shared by every rlaif file.
 *
 * Files are opened with the MPI-IO driver on a communicator, collective
 * metadata and object alignment from [io]. Text cannot be written as
 * variable-length strings in parallel, so ragged data is always a flat
 * extendible 1-D dataset plus per-record offsets and lengths. Appends are
 * collective: every rank of the communicator calls them, possibly with zero
 * records (it then selects nothing), the total comes from MPI_Allreduce, the
 * rank's first row from MPI_Exscan, the extent grows once with the same value
 * everywhere, and each rank writes its own hyperslab.
 *
 * Every function returns 0 or an error status recorded with file:line. */
#ifndef RLAIF_H5UTIL_H
#define RLAIF_H5UTIL_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "rlaif/core/config.h"
#include "rlaif/core/iohints.h"

/* Version of the on-disk layout, stored as root attribute "rlaif_schema". */
#define RLAIF_SCHEMA_VERSION 1

typedef struct {
    hsize_t chunk;                      /* records per chunk of extendible datasets */
    hsize_t alignment;                  /* objects >= align_threshold start on a multiple of it */
    hsize_t align_threshold;            /* 0 = alignment */
    int coll_metadata;                  /* collective metadata reads and writes */
    int collective_data;                /* collective (1) or independent (0) raw-data transfers */
    char mpi_hints[RLAIF_IO_HINTS_MAX]; /* canonical "key=value,..." (iohints.h), "" = none */
} rlaif_h5_opts;

/* Defaults: chunk 4096, alignment 1 MiB, collective metadata, independent
 * raw data (each rank's hyperslab is contiguous; tools/bench/bench-io measured
 * independent faster for both checkpoints and appends on a local disk), no
 * MPI-IO hints. */
void rlaif_h5_opts_default(rlaif_h5_opts *o);
/* From [io] of a resolved config (its hints were checked when it loaded). */
void rlaif_h5_opts_from_cfg(rlaif_h5_opts *o, const rlaif_config *cfg);
/* The one place a parallel file access property list is made: MPI-IO driver
 * on comm with o's hints as MPI_Info, collective metadata, alignment. Every
 * parallel open (rlaif_h5_create, rlaif_h5_open) uses it. -1 on failure. */
hid_t rlaif_h5_fapl(MPI_Comm comm, const rlaif_h5_opts *o);

/* Collective over comm. create truncates; open_rw opens read-write. Pass
 * comm = MPI_COMM_SELF for a single process. */
int rlaif_h5_create(const char *path, MPI_Comm comm, const rlaif_h5_opts *o, hid_t *file);
int rlaif_h5_open(const char *path, MPI_Comm comm, int rw, const rlaif_h5_opts *o, hid_t *file);
/* Collective end of "write to tmp, then rename": with status 0 (agreed by
 * the caller's ranks) rank 0 renames tmp to path, otherwise removes tmp, so
 * nothing half-written survives. Returns the agreed status. */
int rlaif_h5_commit_tmp(const char *tmp, const char *path, int status, MPI_Comm comm);
/* Serial (sec2) open of a closed file, for one process: readers and rank-0 extras. */
int rlaif_h5_open_serial(const char *path, int rw, hid_t *file);
/* Close and set *id to -1; a no-op for negative ids. */
int rlaif_h5_close_file(hid_t *file);
/* Dataset transfer property list for opts (collective or independent). */
hid_t rlaif_h5_dxpl(const rlaif_h5_opts *o);

/* Does loc/name exist (links along the path are checked one by one)? */
int rlaif_h5_exists(hid_t loc, const char *name);
/* Create groups along a path if missing ("a/b/c"). */
int rlaif_h5_mkgroups(hid_t loc, const char *path);

/* Create an empty extendible chunked 1-D dataset of type (collective). */
int rlaif_h5_create_1d(hid_t loc, const char *name, hid_t type, hsize_t chunk, hid_t *ds);
/* Current number of rows of a 1-D dataset. */
int rlaif_h5_rows(hid_t ds, hsize_t *rows);

/* Collective append of n local rows (n may be 0) of memtype to a 1-D
 * extendible dataset. *first = this rank's first global row (may be NULL),
 * *total = rows after the append (may be NULL). */
int rlaif_h5_append(hid_t ds, hid_t memtype, const void *buf, size_t n, MPI_Comm comm,
                    const rlaif_h5_opts *o, hsize_t *first, hsize_t *total);
/* Collective: grow (never shrink) ds to rows and write n rows at start on each rank. */
int rlaif_h5_write_at(hid_t ds, hid_t memtype, const void *buf, hsize_t start, size_t n,
                      const rlaif_h5_opts *o);
/* Independent read of n rows starting at start (n may be 0). */
int rlaif_h5_read_rows(hid_t ds, hid_t memtype, void *buf, hsize_t start, size_t n);
/* Read a whole 1-D dataset by name into a malloc'd buffer (*n rows). */
int rlaif_h5_read_all(hid_t loc, const char *name, hid_t memtype, size_t elem, void **buf,
                      size_t *n);
/* Shrink a 1-D dataset to rows (collective in a parallel file). */
int rlaif_h5_truncate(hid_t ds, hsize_t rows);

/* Ragged records: a group holding bytes/offset/length (text) and
 * tokens/tok_offset/tok_length (int32 token ids). */
typedef struct {
    const char *text;
    size_t len;
    const int32_t *tokens; /* may be NULL when ntok == 0 */
    size_t ntok;
} rlaif_h5_record;
int rlaif_h5_ragged_create(hid_t loc, const char *group, const rlaif_h5_opts *o);
/* Collective append; *first = global id of this rank's first record. */
int rlaif_h5_ragged_append(hid_t loc, const char *group, const rlaif_h5_record *recs, size_t n,
                           MPI_Comm comm, const rlaif_h5_opts *o, hsize_t *first);

/* In-memory copy of a ragged group (readers). */
typedef struct {
    size_t n;
    int64_t *offset, *length, *tok_offset, *tok_length;
    char *bytes; /* all text, not NUL-terminated per record */
    int32_t *tokens;
    size_t nbytes, ntokens;
} rlaif_h5_ragged;
int rlaif_h5_ragged_read(hid_t loc, const char *group, rlaif_h5_ragged *r);
void rlaif_h5_ragged_free(rlaif_h5_ragged *r);

/* Attributes (scalar; strings fixed-length, NUL-padded). In a parallel file
 * every rank writes the same value. */
int rlaif_h5_attr_str(hid_t loc, const char *name, const char *value);
int rlaif_h5_attr_i64(hid_t loc, const char *name, int64_t value);
int rlaif_h5_attr_f64(hid_t loc, const char *name, double value);
int rlaif_h5_attr_i64_array(hid_t loc, const char *name, const int64_t *v, size_t n);
/* Readers; *out malloc'd for strings. A missing attribute is an error. */
int rlaif_h5_get_attr_str(hid_t loc, const char *name, char **out);
int rlaif_h5_get_attr_i64(hid_t loc, const char *name, int64_t *out);
int rlaif_h5_get_attr_f64(hid_t loc, const char *name, double *out);

/* Root attributes every rlaif file carries: rlaif_schema, kind ("preferences",
 * "checkpoint", "metrics"), software version and creation time. */
int rlaif_h5_stamp(hid_t file, const char *kind);
/* Check the schema version and kind of an open file (error names the path). */
int rlaif_h5_check_kind(hid_t file, const char *path, const char *kind);

/* Start of a small MPI program (test drivers, benchmarks): MPI_Init, MPI
 * errors returned as codes on MPI_COMM_WORLD, HDF5's own error printing off
 * (errors are reported through rlaif_error), and *rank, *nproc of the world. */
int rlaif_h5_mpi_init(int *argc, char ***argv, int *rank, int *nproc);

/* 64-bit FNV-1a, used for template hashes. */
uint64_t rlaif_fnv1a64(const void *data, size_t n);

#endif
