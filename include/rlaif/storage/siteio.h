/* siteio.h - what the job's [io] settings do on this machine
 * (src/storage/README.md, Site I/O): the line logged at the start of a job
 * and the `rlaif io` command that shows what MPI-IO accepted. */
#ifndef RLAIF_SITEIO_H
#define RLAIF_SITEIO_H

#include <mpi.h>

#include "rlaif/core/job.h"

/* Collective over comm, once out_dir exists: rank 0 logs the MPI-IO hints,
 * the HDF5 alignment and metadata settings and io.stage_dir; with
 * run.verbose every hint is also probed on a file in out_dir and what
 * MPI-IO reported back goes to the debug log. Returns the agreed status. */
int rlaif_io_log(MPI_Comm comm, const rlaif_config *cfg);

/* `rlaif io`: print the settings and, for a probe file created in out_dir
 * (and in io.stage_dir when set), each hint with what MPI_File_get_info
 * reported. Collective over MPI_COMM_WORLD. */
int rlaif_cmd_io(rlaif_ctx *ctx);

#endif
