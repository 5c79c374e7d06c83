/* gemm_setup.h - one choice of product paths per job (model.gemm): made on
 * world rank 0, shared by every rank, recorded in run.out_dir.
 *
 * The engine's forward products look their path up in a table
 * (rlaif/engine/gemm_choice.h); paths round differently, so data-parallel
 * ranks that must agree bit for bit, and a resume that must repeat the run
 * it continues, need the same table. Rank 0 decides it and broadcasts it;
 * the record in the out_dir makes a resume reuse it, and a cache per CPU
 * model (RLAIF_CACHE, else ~/.cache/rlaif) makes every job on a machine of
 * that model reuse the same timings instead of timing again. */
#ifndef RLAIF_GEMM_SETUP_H
#define RLAIF_GEMM_SETUP_H

#include <mpi.h>

#include "rlaif/core/config.h"
#include "rlaif/engine/model.h"
#include "rlaif/storage/outdir.h"

/* The record in run.out_dir: RLAIF_OUT_GEMM (rlaif/storage/outdir.h). */

/* model.precision for every model this rank creates from here on (auto:
 * resolved from this rank's own CPU), logged: the phases' ranks and
 * `rlaif judge`'s local judges, before the product paths are set up for
 * that precision. */
void rlaif_precision_setup(const rlaif_config *cfg);

/* Collective over world, after the out_dir is claimed. model.gemm = fixed:
 * the table emptied (the engine's fixed rule everywhere); a path name: that
 * path forced; auto: rlaif_gemm_agree for the job's model (its
 * architecture unreadable here: record and cache only, nothing timed; the
 * phase that builds the model reports why).
 * threads: this rank's team. Logs the table. */
int rlaif_gemm_setup(MPI_Comm world, const rlaif_config *cfg, int threads);

/* The same for `rlaif judge`, which has no out_dir of its own and no model
 * but its local judges': their classes from the cache or timed, no record.
 * The phases' rlaif_gemm_setup adds the local judges' classes too. */
int rlaif_gemm_setup_judges(MPI_Comm world, const rlaif_config *cfg, int threads);

/* Collective over world. Rank 0 takes the table from record (when it was
 * written on a CPU of the same key: CPU model name, OpenBLAS core, kernels
 * revision), then from the cache file of that key in cache_dir (NULL or "":
 * none) for classes the record lacks, times the classes of a model of
 * config mc (NULL: none) in precision that both lack (frozen: the model is a
 * local judge's, whose prefill has classes of its own; see
 * rlaif_model_gemm_calibrate), and writes record and cache back; every rank
 * then sets rank 0's table (its own choices, if any, are replaced).
 * *timed (rank 0; may be NULL): the classes timed. */
int rlaif_gemm_agree(MPI_Comm world, const rlaif_model_config *mc, int precision, int frozen,
                     int threads, const char *record, const char *cache_dir, int *timed);

#endif
