/* registry.c - the table of pipeline phases and the one way to run one. */
#include "rlaif/phases/registry.h"
#include "rlaif/core/error.h"
#include "rlaif/core/stop.h"
#include "rlaif/phases/collect.h"
#include "rlaif/phases/dpo.h"
#include "rlaif/phases/eval.h"
#include "rlaif/phases/rm.h"
#include "rlaif/phases/sft.h"

#include <string.h>

/* needs: {learner, rollout, judge} */
const rlaif_phase_def rlaif_phases[] = {
    {"sft", {1, 0, 0}, rlaif_cmd_sft, "data.sft or data.task", "ckpt/sft-*.h5", 1},
    {"collect",
     {0, 1, 1},
     rlaif_cmd_collect,
     "the sft policy, data.prompts, the judge",
     "preferences.h5, journal/",
     0},
    {"rm", {1, 0, 0}, rlaif_cmd_rm, "preferences.h5, the sft model", "ckpt/rm-*.h5", 0},
    {"ppo", {1, 1, 0}, NULL, "the sft policy, the rm", "ckpt/ppo-*.h5", 3},
    {"reinforce", {1, 1, 0}, NULL, "the sft policy, the rm", "ckpt/reinforce-*.h5", 3},
    {"a2c", {1, 1, 0}, NULL, "the sft policy, the rm", "ckpt/a2c-*.h5", 3},
    {"dpo", {1, 0, 0}, rlaif_cmd_dpo, "preferences.h5, the sft policy", "ckpt/dpo-*.h5", 2},
    {"online-dpo", {1, 1, 1}, NULL, "the sft policy, the judge", "ckpt/online-dpo-*.h5", 2},
    {"eval",
     {0, 1, 1},
     rlaif_cmd_eval,
     "the newest policy, the sft model, the judge",
     "eval.h5",
     0},
    {NULL, {0, 0, 0}, NULL, NULL, NULL, 0},
};

const rlaif_phase_def *rlaif_phase_find(const char *name) {
    for (const rlaif_phase_def *p = rlaif_phases; p->name; p++)
        if (!strcmp(p->name, name)) return p;
    return NULL;
}

int rlaif_phase_policies(const char **out, int max) {
    int n = 0;
    for (int rank = 16; rank > 0; rank--) /* highest policy_rank first, table order within */
        for (const rlaif_phase_def *p = rlaif_phases; p->name; p++)
            if (p->policy_rank == rank && n < max) out[n++] = p->name;
    return n;
}

int rlaif_phase_check_layout(const rlaif_phase_def *p, const rlaif_ranks *rk) {
    return rlaif_ranks_require(rk, p->name, p->needs[RLAIF_ROLE_LEARNER],
                               p->needs[RLAIF_ROLE_ROLLOUT], p->needs[RLAIF_ROLE_JUDGE]);
}

int rlaif_phase_exec(rlaif_ctx *ctx, const rlaif_phase_def *p) {
    int rc = p->run ? p->run(ctx)
                    : RLAIF_ERROR(RLAIF_EX_SOFTWARE,
                                  "this build has the phases `rlaif --help` lists as built",
                                  "phase '%s' is not built yet", p->name);
    return rlaif_stop_agree_end(rc);
}
