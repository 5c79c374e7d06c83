/* memory.h - how much more memory this rank may use, from every limit that
 * would otherwise kill or swap it: the node's MemAvailable shared by the
 * ranks on the node, the cgroup's memory.max, RLIMIT_AS and RLIMIT_DATA.
 * A model that does not fit is refused up front with these numbers instead
 * of being swapped or OOM-killed mid-run. */
#ifndef RLAIF_MEMORY_H
#define RLAIF_MEMORY_H

#include <stddef.h>

typedef struct {
    double bytes;  /* the smallest of the limits below (INFINITY: none known) */
    char why[256]; /* each limit that was read, e.g. "MemAvailable 7.8 GB / 2 ranks" */
} rlaif_mem_budget;

/* node_ranks: ranks sharing the node's memory (< 1 = 1). */
void rlaif_mem_budget_get(int node_ranks, rlaif_mem_budget *b);
/* The memory cgroup's part of it, joined to b: proc_cgroup is the
 * process's cgroup list (/proc/self/cgroup), root where the hierarchies
 * are mounted (/sys/fs/cgroup); tests pass a tree of their own. */
void rlaif_mem_budget_cgroup(const char *proc_cgroup, const char *root, rlaif_mem_budget *b);
/* Ranks on this node as counted by rlaif_ranks_init (1 before it runs). */
int rlaif_ranks_on_node(void);

#endif
