/* test_memory.c - the memory cgroup's part of the budget
 * (rlaif_mem_budget_cgroup, src/core/memory.c) on cgroup trees written
 * here, each as the kernel lays it out:
 *   v2, a limit on the job above the step's cgroup (Slurm's layout on v2):
 *     the job's memory.max less the job's working set (memory.current less
 *     inactive_file), not the step's "max";
 *   v2, limits on both: the tighter of the two;
 *   v1, the step's own limit "none" (2^63 rounded to pages) under a job
 *     limit: memory.stat's hierarchical_memory_limit less the usage and
 *     total_inactive_file;
 *   v1 inside a container: the path /proc/self/cgroup names is not mounted,
 *     the container's hierarchy root is;
 *   no limit anywhere: nothing joins the budget.
 * The real kernel's files: tests/e2e/test_memory_limit.sh. */
#include "rlaif/core/memory.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char base[64];
static int failures;

/* base/rel := text, making folders on the way */
static void put(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", base, rel);
    for (char *p = path + strlen(base) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

/* the budget from base's tree must be want bytes (INFINITY: none) and its
 * text must contain has */
static void expect(const char *name, double want, const char *has) {
    char proc[600];
    snprintf(proc, sizeof proc, "%s/proc_cgroup", base);
    rlaif_mem_budget b = {.bytes = INFINITY};
    rlaif_mem_budget_cgroup(proc, base, &b);
    int ok = isinf(want) ? isinf(b.bytes) : fabs(b.bytes - want) < 1;
    if (ok && has && !strstr(b.why, has)) ok = 0;
    printf("%s %s: %.0f bytes (want %.0f), \"%s\"\n", ok ? "ok  " : "FAIL", name, b.bytes, want,
           b.why);
    failures += !ok;
}

/* a fresh tree for each case */
static void fresh(void) {
    char cmd[128];
    if (base[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", base);
        if (system(cmd)) exit(2);
    }
    snprintf(base, sizeof base, "/tmp/rlaif-memory-XXXXXX");
    if (!mkdtemp(base)) exit(2);
}

int main(void) {
    fresh();
    put("proc_cgroup", "0::/job/step\n");
    put("job/memory.max", "1000000000\n");
    put("job/memory.current", "300000000\n");
    put("job/memory.stat", "anon 200000000\nfile 100000000\ninactive_file 100000000\n");
    put("job/step/memory.max", "max\n");
    put("job/step/memory.current", "150000000\n");
    put("job/step/memory.stat", "inactive_file 0\n");
    expect("v2 job limit above the step", 800e6, "memory.max 1.000 GB with 0.200 GB in use");

    put("job/step/memory.max", "500000000\n");
    expect("v2 limits on step and job", 350e6, "memory.max 0.500 GB with 0.150 GB in use");

    fresh();
    put("proc_cgroup", "12:pids:/x\n4:cpu,memory:/slurm/job/step\n0::/\n");
    put("memory/slurm/job/step/memory.limit_in_bytes", "9223372036854771712\n");
    put("memory/slurm/job/step/memory.usage_in_bytes", "150000000\n");
    put("memory/slurm/job/step/memory.stat",
        "cache 60000000\nhierarchical_memory_limit 500000000\ntotal_inactive_file 50000000\n");
    expect("v1 hierarchical limit", 400e6, "memory.limit_in_bytes 0.500 GB with 0.100 GB in use");

    fresh();
    put("proc_cgroup", "4:memory:/docker/abc\n");
    put("memory/memory.limit_in_bytes", "600000000\n");
    put("memory/memory.usage_in_bytes", "100000000\n");
    put("memory/memory.stat", "total_inactive_file 0\n");
    expect("v1 in a container", 500e6, "memory.limit_in_bytes 0.600 GB");

    fresh();
    put("proc_cgroup", "0::/user/session\n");
    put("user/memory.max", "max\n");
    put("user/session/memory.max", "max\n");
    put("user/session/memory.current", "100000000\n");
    expect("v2 without limits", INFINITY, NULL);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", base);
    if (system(cmd)) return 2;
    return failures ? 1 : 0;
}
