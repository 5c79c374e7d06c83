/* outdir.h - one job at a time per out_dir, and only a compatible one.
 *
 * rlaif_outdir_claim runs once per job, before any phase touches run.out_dir:
 *
 *   lock         rank 0 takes an exclusive POSIX record lock (fcntl F_SETLK)
 *                on <out_dir>/.rlaif.lock and holds it until the process ends;
 *                the file names the holder (host, pid, Slurm job id, start).
 *                A second job is refused with exit 74 and a message naming the
 *                holder. Not 75: job scripts requeue on 75, and a requeued
 *                duplicate would come back again and again while the holder runs.
 *   fingerprint  <out_dir>/.rlaif-fingerprint holds the config keys that define
 *                what a checkpoint's tensors mean (model shape, tokenizer); a
 *                job whose keys differ is refused with exit 64 naming each
 *                differing key, before anything in out_dir is read or removed.
 *
 * What the lock relies on: fcntl record locks are released by the kernel
 * when the holder dies (kill -9, node crash on NFS after the lease expires),
 * so there is no stale lock to clean up by hand. They work across nodes on
 * NFSv4 (built into the protocol), NFSv3 with lockd, and Lustre mounted with
 * -o flock (see `mount -t lustre`). Lustre with -o localflock locks per node
 * only; with -o noflock fcntl fails with ENOSYS: rlaif then warns
 * that out_dir is unprotected and goes on (refusing would stop every job on
 * such a mount). */
#ifndef RLAIF_OUTDIR_H
#define RLAIF_OUTDIR_H

#include <mpi.h>

#include "rlaif/core/config.h"

/* The job's product-path record (src/app/gemm_setup.c), written at start:
 * part of the bookkeeping a job refused before its first phase removes. */
#define RLAIF_OUT_GEMM "gemm_choices.txt"

/* The keys compared between jobs on one out_dir (NULL-terminated). */
extern const char *const rlaif_fingerprint_keys[];

/* Collective over world: create out_dir, lock it, compare or record the
 * fingerprint. Returns the agreed status (0, 64 or 74). */
int rlaif_outdir_claim(MPI_Comm world, const rlaif_config *cfg);

#endif
