/* ranks.c - layout resolution, communicator construction and each rank's
 * thread budget (from its affinity mask and the ranks sharing its node). */
#include "rlaif/core/ranks.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/memory.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *role_names[RLAIF_NROLES] = {"learner", "rollout", "judge"};

const char *rlaif_role_name(rlaif_role r) {
    return (unsigned)r < RLAIF_NROLES ? role_names[r] : "?";
}

int rlaif_role_parse(const char *name, rlaif_role *out) {
    for (int i = 0; i < RLAIF_NROLES; i++)
        if (!strcmp(name, role_names[i])) return *out = (rlaif_role)i, 0;
    return RLAIF_ERROR(RLAIF_EX_USAGE, "--role is one of learner, rollout, judge",
                       "unknown role '%s'", name);
}

int rlaif_layout_resolve(const rlaif_layout_request *req, int world_size,
                         const int roles_given[RLAIF_NROLES], int count[RLAIF_NROLES],
                         int *colocated) {
    int given = 0, asked = 0;
    for (int i = 0; i < RLAIF_NROLES; i++) given += roles_given[i], asked += req->count[i];
    if (given) { /* MPMD: every process named its role */
        if (given != world_size)
            return RLAIF_ERROR(RLAIF_EX_USAGE,
                               "give --role to every process of an MPMD launch, or to none",
                               "%d of %d processes were given --role", given, world_size);
        for (int i = 0; i < RLAIF_NROLES; i++)
            if (asked && req->count[i] != roles_given[i])
                return RLAIF_ERROR(RLAIF_EX_USAGE,
                                   "make [ranks] match the launch, or set all its counts to 0",
                                   "[ranks] %s = %d but %d processes were started with --role %s",
                                   role_names[i], req->count[i], roles_given[i], role_names[i]);
        if (req->layout == 2)
            return RLAIF_ERROR(RLAIF_EX_USAGE, "drop --role or set ranks.layout = split",
                               "--role cannot be combined with ranks.layout = colocated");
        memcpy(count, roles_given, sizeof(int) * RLAIF_NROLES);
        *colocated = 0;
        return 0;
    }
    if (req->layout == 2 || (req->layout == 0 && asked == 0 && world_size < 3)) {
        if (asked)
            return RLAIF_ERROR(RLAIF_EX_USAGE, "set the [ranks] counts to 0 when colocated",
                               "ranks.layout = colocated does not take rank counts");
        for (int i = 0; i < RLAIF_NROLES; i++) count[i] = world_size;
        *colocated = 1;
        return 0;
    }
    *colocated = 0;
    if (asked == 0) { /* automatic split: a quarter judge, the rest halved */
        count[RLAIF_ROLE_JUDGE] = world_size / 4 > 0 ? world_size / 4 : 1;
        int rest = world_size - count[RLAIF_ROLE_JUDGE];
        count[RLAIF_ROLE_LEARNER] = (rest + 1) / 2;
        count[RLAIF_ROLE_ROLLOUT] = rest - count[RLAIF_ROLE_LEARNER];
        return 0;
    }
    if (asked != world_size)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "launch as many ranks as [ranks] asks for (srun -n, mpiexec -n), or "
                           "set the counts to 0 for an automatic layout",
                           "[ranks] rollout + judge + learner = %d + %d + %d = %d, but the MPI "
                           "world has %d ranks",
                           req->count[RLAIF_ROLE_ROLLOUT], req->count[RLAIF_ROLE_JUDGE],
                           req->count[RLAIF_ROLE_LEARNER], asked, world_size);
    memcpy(count, req->count, sizeof(int) * RLAIF_NROLES);
    return 0;
}

static const char *env_get(char *const *env, const char *name) {
    if (!env) return getenv(name);
    size_t l = strlen(name);
    for (char *const *p = env; *p; p++)
        if (!strncmp(*p, name, l) && (*p)[l] == '=') return *p + l + 1;
    return NULL;
}

int rlaif_check_launcher(int world_size, char *const *env) {
    /* srun sets SLURM_STEP_NUM_TASKS for the step it launches; a batch
     * script's own SLURM_NTASKS says nothing about this process's world. */
    const char *v = env_get(env, "SLURM_STEP_NUM_TASKS");
    int tasks = v ? atoi(v) : 0;
    if (tasks > 0 && tasks != world_size)
        return RLAIF_ERROR(RLAIF_EX_USAGE,
                           "srun started processes that do not see each other: use srun "
                           "--mpi=pmix (Open MPI here has no PMI-2), or mpiexec",
                           "Slurm started %d tasks but the MPI world has %d rank%s", tasks,
                           world_size, world_size == 1 ? "" : "s");
    return 0;
}

int rlaif_check_pmi(char *const *env) {
    const char *v = env_get(env, "SLURM_STEP_NUM_TASKS");
    if (!v || atoi(v) <= 1) return 0;
    /* Variables a process manager sets for MPI_Init to find its peers:
     * PMIx (srun --mpi=pmix, Open MPI's mpiexec), PMI-1/2, Open MPI's own. */
    const char *pmi[] = {"PMIX_RANK", "PMI_RANK", "PMI_FD", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"};
    for (size_t i = 0; i < sizeof pmi / sizeof pmi[0]; i++)
        if (env_get(env, pmi[i])) return 0;
    return RLAIF_ERROR(RLAIF_EX_USAGE,
                       "srun started the tasks without a process-management interface: use "
                       "srun --mpi=pmix (Open MPI here has no PMI-2), or mpiexec",
                       "Slurm started %s tasks but none can find the others (no PMI), so each "
                       "would run as a separate 1-rank MPI world",
                       v);
}

/* ------------------------------------------------------------------ threads */

/* A positive count from an environment value ("4", or "4,2" for nested
 * OpenMP: the outer level), else 0. */
static int env_count(const char *v) {
    if (!v || !*v) return 0;
    char *end;
    long n = strtol(v, &end, 10);
    return n > 0 && n < 65536 && (*end == '\0' || *end == ',') ? (int)n : 0;
}

void rlaif_threads_decide(int cpus, int sharing, int local, const char *omp_env,
                          const char *blas_env, const char *slurm_cpus_per_task, rlaif_threads *t) {
    memset(t, 0, sizeof *t);
    t->cpus = cpus < 1 ? 1 : cpus;
    t->sharing = sharing < 1 ? 1 : sharing;
    t->local = local < t->sharing ? t->sharing : local;
    int share = t->cpus / t->sharing > 0 ? t->cpus / t->sharing : 1;
    int n =
        snprintf(t->why, sizeof t->why,
                 "%d CPU%s in the affinity mask, shared by %d of %d "
                 "rank%s on this node",
                 t->cpus, t->cpus == 1 ? "" : "s", t->sharing, t->local, t->local == 1 ? "" : "s");
    int cpt = env_count(slurm_cpus_per_task);
    if (cpt && cpt < share) {
        share = cpt;
        n += snprintf(t->why + n, sizeof t->why - (size_t)n, ", SLURM_CPUS_PER_TASK=%d", cpt);
    }
    int omp = env_count(omp_env);
    t->team = omp ? omp : share;
    if (omp)
        n += snprintf(t->why + n, sizeof t->why - (size_t)n, "; OMP_NUM_THREADS=%d respected%s",
                      omp, (long)omp * t->sharing > t->cpus ? " (more threads than CPUs)" : "");
    else if (omp_env && *omp_env)
        n += snprintf(t->why + n, sizeof t->why - (size_t)n,
                      "; OMP_NUM_THREADS='%.20s' is not a count, ignored", omp_env);
    /* Two pools that spin-wait on the same cores slow each other several
     * times: OpenBLAS threads only when the OpenMP team is a single thread. */
    int blas = env_count(blas_env);
    t->blas = t->team > 1 ? 1 : blas ? blas : share;
    if (n > 0 && (size_t)n < sizeof t->why)
        snprintf(t->why + n, sizeof t->why - (size_t)n, "; OpenBLAS %d%s", t->blas,
                 t->team > 1 ? " (the team splits the products)"
                 : blas      ? " (OPENBLAS_NUM_THREADS)"
                             : "");
}

/* Ranks of this node whose affinity masks overlap this one's: they compete
 * for the same CPUs, whatever the launcher told (or did not tell) them. */
static int node_ranks = 1; /* rlaif_ranks_on_node (memory.h) */
int rlaif_ranks_on_node(void) {
    return node_ranks;
}

static int threads_plan(MPI_Comm world, rlaif_threads *t) {
    cpu_set_t mine;
    CPU_ZERO(&mine);
    if (sched_getaffinity(0, sizeof mine, &mine) != 0) { /* > CPU_SETSIZE CPUs */
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        for (long c = 0; c < online && c < CPU_SETSIZE; c++) CPU_SET((int)c, &mine);
    }
    MPI_Comm node;
    RLAIF_CHECK_MPI(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
    int local;
    MPI_Comm_size(node, &local);
    node_ranks = local;
    cpu_set_t *all = xmalloc(sizeof(cpu_set_t) * (size_t)local);
    int rc =
        MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, node);
    MPI_Comm_free(&node);
    if (rc != MPI_SUCCESS) free(all);
    RLAIF_CHECK_MPI(rc);
    int sharing = 0;
    for (int i = 0; i < local; i++) {
        cpu_set_t both;
        CPU_AND(&both, &mine, &all[i]);
        sharing += CPU_COUNT(&both) > 0;
    }
    free(all);
    rlaif_threads_decide(CPU_COUNT(&mine), sharing, local, getenv("OMP_NUM_THREADS"),
                         getenv("OPENBLAS_NUM_THREADS"), getenv("SLURM_CPUS_PER_TASK"), t);
    int rank;
    MPI_Comm_rank(world, &rank);
    rlaif_info("threads: %d on rank %d (%s)", t->team, rank, t->why);
    return 0;
}

void rlaif_mpi_preinit(void) {
    /* Open MPI 4.1's "lockedfile" shared-file-pointer component, queried
     * whenever MPI-IO opens a file, builds "<path>.lock" in a fixed buffer
     * and aborts ("buffer overflow detected") for an out_dir over ~200
     * characters (issue 12.10). rlaif never uses shared file pointers: leave
     * the component out, unless the user chose the components. */
    setenv("OMPI_MCA_sharedfp", "^lockedfile", 0);
}

int rlaif_ranks_has(const rlaif_ranks *rk, rlaif_role r) {
    return rk->group[r] != MPI_COMM_NULL;
}

int rlaif_ranks_init(rlaif_ranks *rk, const rlaif_config *cfg, const char *role_arg) {
    memset(rk, 0, sizeof *rk);
    for (int i = 0; i < RLAIF_NROLES; i++) rk->group[i] = MPI_COMM_NULL, rk->group_rank[i] = -1;
    rk->weights = MPI_COMM_NULL;
    RLAIF_CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &rk->world));
    MPI_Comm_rank(rk->world, &rk->world_rank);
    MPI_Comm_size(rk->world, &rk->world_size);
    RLAIF_TRY(threads_plan(rk->world, &rk->threads));

    rlaif_layout_request req = {{0}, 0, role_arg ? role_arg : ""};
    req.count[RLAIF_ROLE_ROLLOUT] = (int)rlaif_cfg_int(cfg, "ranks.rollout");
    req.count[RLAIF_ROLE_JUDGE] = (int)rlaif_cfg_int(cfg, "ranks.judge");
    req.count[RLAIF_ROLE_LEARNER] = (int)rlaif_cfg_int(cfg, "ranks.learner");
    const char *layout = rlaif_cfg_str(cfg, "ranks.layout");
    req.layout = !strcmp(layout, "split") ? 1 : !strcmp(layout, "colocated") ? 2 : 0;

    /* Each process's --role, gathered so every rank resolves the same layout. */
    int my_role = -1, status = 0;
    if (role_arg && *role_arg) {
        rlaif_role r;
        status = rlaif_role_parse(role_arg, &r);
        if (!status) my_role = (int)r;
    }
    RLAIF_TRY(rlaif_agree(rk->world, status));
    int *roles = xmalloc(sizeof(int) * (size_t)rk->world_size);
    RLAIF_CHECK_MPI(MPI_Allgather(&my_role, 1, MPI_INT, roles, 1, MPI_INT, rk->world));
    int roles_given[RLAIF_NROLES] = {0};
    for (int i = 0; i < rk->world_size; i++)
        if (roles[i] >= 0) roles_given[roles[i]]++;
    status = rlaif_layout_resolve(&req, rk->world_size, roles_given, rk->count, &rk->colocated);
    if (status) {
        free(roles);
        return rlaif_agree(rk->world, status);
    }

    if (rk->colocated) {
        for (int i = 0; i < RLAIF_NROLES; i++) {
            RLAIF_CHECK_MPI(MPI_Comm_dup(rk->world, &rk->group[i]));
            rk->group_rank[i] = rk->world_rank;
            rk->first[i] = 0;
        }
        rk->role = RLAIF_ROLE_LEARNER;
        RLAIF_CHECK_MPI(MPI_Comm_dup(rk->world, &rk->weights));
        free(roles);
        return 0;
    }

    /* Split layout. With --role the role is given; otherwise contiguous
     * blocks: learners, then rollouts, then judges. Key = world rank keeps
     * group order equal to world order. */
    if (roles_given[0] + roles_given[1] + roles_given[2] > 0) {
        rk->role = (rlaif_role)roles[rk->world_rank];
        for (int r = 0; r < RLAIF_NROLES; r++) {
            rk->first[r] = -1;
            for (int i = 0; i < rk->world_size; i++)
                if (roles[i] == r && rk->first[r] < 0) rk->first[r] = i;
        }
    } else {
        rk->first[RLAIF_ROLE_LEARNER] = 0;
        rk->first[RLAIF_ROLE_ROLLOUT] = rk->count[RLAIF_ROLE_LEARNER];
        rk->first[RLAIF_ROLE_JUDGE] = rk->first[RLAIF_ROLE_ROLLOUT] + rk->count[RLAIF_ROLE_ROLLOUT];
        rk->role = rk->world_rank < rk->first[RLAIF_ROLE_ROLLOUT] ? RLAIF_ROLE_LEARNER
                   : rk->world_rank < rk->first[RLAIF_ROLE_JUDGE] ? RLAIF_ROLE_ROLLOUT
                                                                  : RLAIF_ROLE_JUDGE;
    }
    free(roles);
    MPI_Comm mine;
    RLAIF_CHECK_MPI(MPI_Comm_split(rk->world, (int)rk->role, rk->world_rank, &mine));
    rk->group[rk->role] = mine;
    MPI_Comm_rank(mine, &rk->group_rank[rk->role]);

    /* Weight broadcast: learner 0 (key 0 puts it at rank 0) + all rollouts. */
    int is_l0 = rk->role == RLAIF_ROLE_LEARNER && rk->group_rank[RLAIF_ROLE_LEARNER] == 0;
    int in_weights = is_l0 || rk->role == RLAIF_ROLE_ROLLOUT;
    RLAIF_CHECK_MPI(MPI_Comm_split(rk->world, in_weights ? 0 : MPI_UNDEFINED,
                                   is_l0 ? 0 : rk->world_rank + 1, &rk->weights));
    return 0;
}

void rlaif_ranks_free(rlaif_ranks *rk) {
    for (int i = 0; i < RLAIF_NROLES; i++)
        if (rk->group[i] != MPI_COMM_NULL) MPI_Comm_free(&rk->group[i]);
    if (rk->weights != MPI_COMM_NULL) MPI_Comm_free(&rk->weights);
    if (rk->world != MPI_COMM_NULL && rk->world != 0) MPI_Comm_free(&rk->world);
}

int rlaif_ranks_require(const rlaif_ranks *rk, const char *phase, int need_learner,
                        int need_rollout, int need_judge) {
    int need[RLAIF_NROLES] = {need_learner, need_rollout, need_judge};
    for (int i = 0; i < RLAIF_NROLES; i++)
        if (need[i] && rk->count[i] == 0)
            return RLAIF_ERROR(RLAIF_EX_USAGE, "give the group at least one rank in [ranks]",
                               "phase '%s' needs %s ranks but the layout has none", phase,
                               role_names[i]);
    return 0;
}
