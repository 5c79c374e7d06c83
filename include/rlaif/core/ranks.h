/* ranks.h - MPI rank groups: rollout, judge-query, learner (src/core/README.md, Rank groups).
 *
 * World ranks are laid out learner first, then rollout, then judge, so world
 * rank 0 is learner 0: the rank that logs, writes metrics and owns rank-0 I/O.
 * In the colocated layout (the default below 3 ranks) every rank plays every
 * role and each group communicator spans the world. */
#ifndef RLAIF_RANKS_H
#define RLAIF_RANKS_H

#include <mpi.h>

#include "rlaif/core/config.h"

/* How many threads this rank runs (issue 15): derived from what the launcher
 * and the OS give the process, never from one launcher's variables. */
typedef struct {
    int team;      /* OpenMP team size */
    int blas;      /* OpenBLAS threads */
    int cpus;      /* CPUs in this process's affinity mask */
    int sharing;   /* ranks of this node whose masks overlap it (itself included) */
    int local;     /* ranks on this node (MPI_COMM_TYPE_SHARED) */
    char why[256]; /* the reason, for the log */
} rlaif_threads;

typedef enum { RLAIF_ROLE_LEARNER = 0, RLAIF_ROLE_ROLLOUT = 1, RLAIF_ROLE_JUDGE = 2 } rlaif_role;
#define RLAIF_NROLES 3

typedef struct {
    int world_rank, world_size;
    int colocated;                /* every rank holds every role */
    int count[RLAIF_NROLES];      /* ranks per role (world_size each when colocated) */
    int first[RLAIF_NROLES];      /* first world rank of each role (split layout) */
    rlaif_role role;              /* this rank's role (split layout) */
    MPI_Comm world;               /* dup of MPI_COMM_WORLD */
    MPI_Comm group[RLAIF_NROLES]; /* MPI_COMM_NULL where this rank is not a member */
    int group_rank[RLAIF_NROLES]; /* rank within each group, -1 if not a member */
    MPI_Comm weights;             /* learner 0 + every rollout rank, learner 0 is rank 0 */
    rlaif_threads threads;        /* this rank's thread budget (applied by the caller) */
} rlaif_ranks;

/* The requested layout: counts from [ranks] (0 = automatic) and, for MPMD
 * launches, this process's --role ("" when not given). */
typedef struct {
    int count[RLAIF_NROLES];
    int layout; /* 0 auto, 1 split, 2 colocated */
    const char *role;
} rlaif_layout_request;

/* Pure layout decision for world_size ranks (no MPI), for tests and for
 * rlaif_ranks_init: fills counts and colocated, or records a usage error.
 * roles_given[i] = how many processes asked for role i with --role (all 0
 * when --role is not used). */
int rlaif_layout_resolve(const rlaif_layout_request *req, int world_size,
                         const int roles_given[RLAIF_NROLES], int count[RLAIF_NROLES],
                         int *colocated);

/* Pure thread decision (no MPI, no environment reads), for tests and for
 * rlaif_ranks_init. cpus = CPUs in the affinity mask, sharing = ranks whose
 * masks overlap this one, local = ranks on the node; the strings are the
 * values of OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and SLURM_CPUS_PER_TASK
 * (NULL when unset). The rank's share is cpus / sharing (at least 1), capped
 * by SLURM_CPUS_PER_TASK; the OpenMP team takes it unless OMP_NUM_THREADS is
 * set (respected); OpenBLAS gets 1 thread when the team is larger, else the
 * share (or OPENBLAS_NUM_THREADS), so the two pools never spin on the same
 * cores. */
void rlaif_threads_decide(int cpus, int sharing, int local, const char *omp_env,
                          const char *blas_env, const char *slurm_cpus_per_task, rlaif_threads *t);

/* Collective over world: this rank's budget from its affinity mask and the
 * ranks of its node whose masks overlap it (logged); rlaif_ranks_init does
 * it, and so does a command without rank groups that runs the engine
 * (`rlaif judge` with a local judge). */
int rlaif_threads_plan(MPI_Comm world, rlaif_threads *t);

/* Collective over MPI_COMM_WORLD: resolve the layout and split communicators. */
int rlaif_ranks_init(rlaif_ranks *rk, const rlaif_config *cfg, const char *role_arg);
void rlaif_ranks_free(rlaif_ranks *rk);

/* Is this rank a member of group r? */
int rlaif_ranks_has(const rlaif_ranks *rk, rlaif_role r);
const char *rlaif_role_name(rlaif_role r);
int rlaif_role_parse(const char *name, rlaif_role *out);

/* A phase that needs groups must call this: an empty group is a usage error. */
int rlaif_ranks_require(const rlaif_ranks *rk, const char *phase, int need_learner,
                        int need_rollout, int need_judge);

/* Launcher sanity: under `srun`, SLURM_STEP_NUM_TASKS / SLURM_NTASKS must
 * equal the MPI world size, else N singletons were started (no PMI). */
int rlaif_check_launcher(int world_size, char *const *env);
/* The same mistake caught before MPI_Init (some MPIs abort in MPI_Init
 * without PMI): srun started several tasks but no PMI variables are set. */
int rlaif_check_pmi(char *const *env);
/* Environment the MPI library reads in MPI_Init; call before it (MPI-IO
 * settings that keep long output paths working with Open MPI). */
void rlaif_mpi_preinit(void);

#endif
