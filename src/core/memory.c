/* memory.c - the memory this rank may still use (include/rlaif/core/memory.h).
 * Each limit is what is left of it now: MemAvailable / ranks on the node,
 * cgroup v2 memory.max - memory.current, RLIMIT_AS - VmSize, RLIMIT_DATA -
 * VmData (a process already holding MPI's mappings has less than its limit). */
#include "rlaif/core/memory.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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

/* The cgroup v2 folder of this process ("0::/path"), or "" */
static void cgroup_dir(char *out, size_t n) {
    out[0] = 0;
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) {
            line[strcspn(line, "\n")] = 0;
            snprintf(out, n, "/sys/fs/cgroup%s", strcmp(line + 3, "/") ? line + 3 : "");
        }
    fclose(f);
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

void rlaif_mem_budget_get(int node_ranks, rlaif_mem_budget *b) {
    int r = node_ranks < 1 ? 1 : node_ranks;
    b->bytes = INFINITY, b->why[0] = 0;
    char t[128], dir[600], path[700];
    double avail = proc_kb("/proc/meminfo", "MemAvailable");
    if (avail >= 0) {
        snprintf(t, sizeof t, "MemAvailable %.3f GB / %d rank(s) on the node", avail / 1e9, r);
        take(b, avail / r, t);
    }
    cgroup_dir(dir, sizeof dir);
    if (dir[0]) {
        snprintf(path, sizeof path, "%s/memory.max", dir);
        double max = file_number(path);
        snprintf(path, sizeof path, "%s/memory.current", dir);
        double cur = file_number(path);
        if (cur < 0) cur = 0;
        snprintf(t, sizeof t, "cgroup memory.max %.3f GB with %.3f GB in use", max / 1e9,
                 cur / 1e9);
        if (max >= 0) take(b, max - cur, t);
    }
    take_rlimit(b, RLIMIT_AS, "RLIMIT_AS", "VmSize");
    take_rlimit(b, RLIMIT_DATA, "RLIMIT_DATA", "VmData");
    if (b->bytes < 0) b->bytes = 0;
}
