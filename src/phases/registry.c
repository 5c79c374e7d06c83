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

/* needs: {learner, rollout, judge}; policy_rank: eval's preference */
#define PHASE(n, l, r, j, fn, in, out, pol, chk)                                                   \
    {                                                                                              \
        .name = n, .needs = {l, r, j}, .run = fn, .inputs = in, .outputs = out,                    \
        .policy_rank = pol, .check = chk                                                           \
    }
const rlaif_phase_def rlaif_phases[] = {
    PHASE("sft", 1, 0, 0, rlaif_cmd_sft, "data.sft or data.task", "ckpt/sft-*.h5", 1, NULL),
    PHASE("collect", 0, 1, 1, rlaif_cmd_collect, "the sft policy, data.prompts, the judge",
          "preferences.h5, journal/", 0, NULL),
    PHASE("rm", 1, 0, 0, rlaif_cmd_rm, "preferences.h5, the sft model", "ckpt/rm-*.h5", 0, NULL),
    PHASE("ppo", 1, 1, 0, NULL, "the sft policy, the rm", "ckpt/ppo-*.h5", 3, NULL),
    PHASE("reinforce", 1, 1, 0, NULL, "the sft policy, the rm", "ckpt/reinforce-*.h5", 3, NULL),
    PHASE("a2c", 1, 1, 0, NULL, "the sft policy, the rm", "ckpt/a2c-*.h5", 3, NULL),
    PHASE("dpo", 1, 0, 0, rlaif_cmd_dpo, "preferences.h5, the sft policy", "ckpt/dpo-*.h5", 2,
          NULL),
    PHASE("online-dpo", 1, 1, 1, NULL, "the sft policy, the judge", "ckpt/online-dpo-*.h5", 2,
          NULL),
    PHASE("eval", 0, 1, 1, rlaif_cmd_eval, "the newest policy, the sft model, the judge", "eval.h5",
          0, rlaif_eval_check),
    {.name = NULL},
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

int rlaif_phase_check(const rlaif_phase_def *p, const rlaif_ctx *ctx) {
    RLAIF_TRY(rlaif_ranks_require(&ctx->ranks, p->name, p->needs[RLAIF_ROLE_LEARNER],
                                  p->needs[RLAIF_ROLE_ROLLOUT], p->needs[RLAIF_ROLE_JUDGE]));
    return p->check ? p->check(ctx->cfg) : 0;
}

int rlaif_phase_exec(rlaif_ctx *ctx, const rlaif_phase_def *p) {
    int rc = p->run ? p->run(ctx)
                    : RLAIF_ERROR(RLAIF_EX_SOFTWARE,
                                  "this build has the phases `rlaif --help` lists as built",
                                  "phase '%s' is not built yet", p->name);
    return rlaif_stop_agree_end(rc);
}
