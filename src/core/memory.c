/* memory.c - the memory this rank may still use (include/rlaif/core/memory.h).
 * Each limit is what is left of it now: MemAvailable / ranks on the node,
 * the memory cgroup's limit less its working set (v2 memory.max, its own
 * and its ancestors'; or v1's hierarchical limit, which Slurm's task/cgroup
 * sets on clusters still on v1; the working set is the usage less the
 * inactive page cache, which the kernel reclaims before it kills),
 * RLIMIT_AS - VmSize, RLIMIT_DATA - VmData (a process already holding MPI's
 * mappings has less than its limit). */
#include "rlaif/core/memory.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* "Key:   123 kB" from a /proc file, in bytes; -1 when absent. */
static double proc_kb(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    double v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = 1024.0 * strtod(line + kl + 1, NULL);
            break;
        }
    fclose(f);
    return v;
}

/* One number from a file (cgroup files); -1 for "max" or unreadable. */
static double file_number(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char buf[64] = "";
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    char *end;
    double v = strtod(buf, &end);
    return end == buf ? -1 : v;
}

/* "key value" from a cgroup's memory.stat; -1 when absent. */
static double stat_value(const char *dir, const char *key) {
    char path[700], line[256];
    snprintf(path, sizeof path, "%s/memory.stat", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    double v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ' ') {
            v = strtod(line + kl + 1, NULL);
            break;
        }
    fclose(f);
    return v;
}

/* The folder of this process's memory cgroup: v1's (a "N:...memory...:/path"
 * line; inside a container its hierarchy's root may be mounted instead) when
 * the v2 folder ("0::/path") has no memory.max of its own, else v2's, whose
 * ancestors may still hold a limit. *v1 says which; "" when neither. */
static void cgroup_dir(const char *proc_cgroup, const char *root, char *out, size_t n, int *v1) {
    out[0] = 0, *v1 = 0;
    FILE *f = fopen(proc_cgroup, "r");
    if (!f) return;
    char line[512], v1path[512] = "", test[700];
    int v2 = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *ctl = strchr(line, ':'), *path = ctl ? strchr(ctl + 1, ':') : NULL;
        if (!path) continue;
        *path++ = 0, *ctl++ = 0; /* line: the hierarchy id, ctl: its controllers */
        if (!strcmp(line, "0") && !*ctl) {
            snprintf(out, n, "%s%s", root, strcmp(path, "/") ? path : "");
            snprintf(test, sizeof test, "%s/memory.max", out);
            v2 = access(test, R_OK) == 0;
            continue;
        }
        char *save = NULL;
        for (char *c = strtok_r(ctl, ",", &save); c; c = strtok_r(NULL, ",", &save))
            if (!strcmp(c, "memory")) snprintf(v1path, sizeof v1path, "%s", path);
    }
    fclose(f);
    if (v2 || !v1path[0]) return;
    const char *cand[2] = {v1path, ""};
    for (int i = 0; i < 2; i++) {
        snprintf(test, sizeof test, "%s/memory%s/memory.limit_in_bytes", root,
                 strcmp(cand[i], "/") ? cand[i] : "");
        if (access(test, R_OK)) continue;
        snprintf(out, n, "%s/memory%s", root, strcmp(cand[i], "/") ? cand[i] : "");
        *v1 = 1;
        return;
    }
    out[0] = 0;
}

/* A limit of v bytes left, described by text, joins the budget. */
static void take(rlaif_mem_budget *b, double v, const char *text) {
    if (v < 0) return;
    size_t l = strlen(b->why);
    if (l < sizeof b->why) snprintf(b->why + l, sizeof b->why - l, "%s%s", l ? "; " : "", text);
    if (v < b->bytes) b->bytes = v;
}

/* What is left of an rlimit: the limit minus the process's /proc/self/status
 * figure it counts against. */
static void take_rlimit(rlaif_mem_budget *b, int which, const char *name, const char *status_key) {
    struct rlimit rl;
    if (getrlimit(which, &rl) || rl.rlim_cur == RLIM_INFINITY) return;
    double used = proc_kb("/proc/self/status", status_key), lim = (double)rl.rlim_cur;
    if (used < 0) used = 0;
    char t[128];
    snprintf(t, sizeof t, "%s %.3f GB with %.3f GB in use", name, lim / 1e9, used / 1e9);
    take(b, lim - used, t);
}

/* What is left of the memory cgroup at dir: its limit (v1: the
 * hierarchical one) less its working set (usage less the inactive page
 * cache, which the kernel reclaims before it kills). */
static void take_cgroup(rlaif_mem_budget *b, const char *dir, int v1) {
    char path[700], t[160];
    snprintf(path, sizeof path, "%s/%s", dir, v1 ? "memory.limit_in_bytes" : "memory.max");
    double max = file_number(path), hier = v1 ? stat_value(dir, "hierarchical_memory_limit") : -1;
    if (hier >= 0 && (max < 0 || hier < max)) max = hier; /* an ancestor's limit */
    if (max < 0 || max >= 0x1p60) return;                 /* "max", or v1's "no limit" */
    snprintf(path, sizeof path, "%s/%s", dir, v1 ? "memory.usage_in_bytes" : "memory.current");
    double cur = file_number(path);
    double cache = stat_value(dir, v1 ? "total_inactive_file" : "inactive_file");
    if (cur < 0) cur = 0;
    if (cache > 0 && cache < cur) cur -= cache;
    snprintf(t, sizeof t, "cgroup %s %.3f GB with %.3f GB in use",
             v1 ? "memory.limit_in_bytes" : "memory.max", max / 1e9, cur / 1e9);
    take(b, max - cur, t);
}

void rlaif_mem_budget_cgroup(const char *proc_cgroup, const char *root, rlaif_mem_budget *b) {
    char dir[600];
    int v1;
    cgroup_dir(proc_cgroup, root, dir, sizeof dir, &v1);
    /* v2: this cgroup and each ancestor below the root (a limit set on the
     * job above the step's cgroup binds too); v1: its own, whose
     * hierarchical limit already counts the ancestors' */
    while (dir[0]) {
        take_cgroup(b, dir, v1);
        char *slash = strrchr(dir, '/');
        if (v1 || !slash || slash - dir <= (long)strlen(root)) break;
        *slash = 0;
    }
}

void rlaif_mem_budget_get(int node_ranks, rlaif_mem_budget *b) {
    int r = node_ranks < 1 ? 1 : node_ranks;
    b->bytes = INFINITY, b->why[0] = 0;
    char t[128];
    double avail = proc_kb("/proc/meminfo", "MemAvailable");
    if (avail >= 0) {
        snprintf(t, sizeof t, "MemAvailable %.3f GB / %d rank(s) on the node", avail / 1e9, r);
        take(b, avail / r, t);
    }
    rlaif_mem_budget_cgroup("/proc/self/cgroup", "/sys/fs/cgroup", b);
    take_rlimit(b, RLIMIT_AS, "RLIMIT_AS", "VmSize");
    take_rlimit(b, RLIMIT_DATA, "RLIMIT_DATA", "VmData");
    if (b->bytes < 0) b->bytes = 0;
}
