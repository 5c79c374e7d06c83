/* iohints.h - site I/O: the MPI-IO hints of [io] (src/storage/README.md,
 * Site I/O).
 *
 * Parallel file systems (Lustre, GPFS) are tuned per file at open time by
 * MPI-IO hints. [io] passes any hint as io.mpi_hints = key=value,... and has
 * convenience keys for the common ones (io.striping_factor, io.striping_unit,
 * io.cb_nodes, io.romio_cb_write). They are merged into one canonical string
 * that travels inside rlaif_h5_opts, so every parallel HDF5 file access
 * property list (h5util.c) gets the same MPI_Info. A malformed list or a
 * convenience key contradicting it is a usage error when the job file is
 * loaded (exit 64, naming the key), never a surprise mid-run. */
#ifndef RLAIF_IOHINTS_H
#define RLAIF_IOHINTS_H

#include <mpi.h>
#include <stddef.h>
#include <stdio.h>

#include "rlaif/core/config.h"

/* Longest canonical hint string (longer lists are a usage error). */
#define RLAIF_IO_HINTS_MAX 1024

/* The hints of cfg's [io] as "key=value,key=value" (no spaces): io.mpi_hints
 * in its order, then each convenience key that is set and not already there.
 * RLAIF_EX_USAGE naming io.mpi_hints and the entry (missing '=', empty key
 * or value, a key with spaces, a duplicate key, too long), or the
 * convenience key that contradicts it. */
int rlaif_io_hints(const rlaif_config *cfg, char *out, size_t n);

/* MPI_Info holding every hint of a canonical string; MPI_INFO_NULL for "".
 * The caller frees a non-null one with MPI_Info_free. */
int rlaif_io_info(const char *hints, MPI_Info *info);

/* Collective over comm: open a new probe file in dir with the hints
 * (MPI_MODE_DELETE_ON_CLOSE: striping hints act only when a file is
 * created) and compare with what MPI_File_get_info reports. Rank 0 writes
 * one line per hint requested ("striping_factor = 4 (reported 4)" or "...
 * (not reported: ignored)") and the count of other keys reported, to out,
 * or to the debug log when out is NULL. *ignored (may be NULL) receives the
 * number of requested hints not reported back with their value. */
int rlaif_io_probe(MPI_Comm comm, const char *dir, const char *hints, FILE *out, int *ignored);

#endif
