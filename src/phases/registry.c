/* registry.c - the table of pipeline phases and the one way to run one. */
#include "rlaif/phases/registry.h"
#include "rlaif/core/error.h"
#include "rlaif/core/log.h"
#include "rlaif/core/stop.h"
#include "rlaif/core/telemetry.h"
#include "rlaif/phases/collect.h"
#include "rlaif/phases/dpo.h"
#include "rlaif/phases/eval.h"
#include "rlaif/phases/ppo.h"
#include "rlaif/phases/rm.h"
#include "rlaif/phases/sft.h"
#include "rlaif/phases/train.h"

#include <string.h>

/* needs: {learner, rollout, judge}; policy_rank: eval's preference */
#define PHASE(n, l, r, j, fn, dn, in, out, pol, chk, sum, use)                                     \
    {                                                                                              \
        .name = n, .needs = {l, r, j}, .run = fn, .done = dn, .inputs = in, .outputs = out,        \
        .policy_rank = pol, .check = chk, .summary = sum, .usage = use                             \
    }
#define LEARNER rlaif_learner_done /* a learner phase: its newest checkpoint says */
#define STOP_AFTER                                                                                 \
    "  --stop-after N       testing: stop as on SIGTERM after N steps (checkpoint, exit 75)"
const rlaif_phase_def rlaif_phases[] = {
    PHASE("sft", 1, 0, 0, rlaif_cmd_sft, LEARNER, "data.sft or data.task", "ckpt/sft-*.h5", 1, NULL,
          "supervised fine-tuning on demonstrations", STOP_AFTER),
    PHASE("collect", 0, 1, 1, rlaif_cmd_collect, rlaif_collect_done,
          "the sft policy, data.prompts, the judge", "preferences.h5, journal/", 0, NULL,
          "generate response pairs and label them with the feedback LLM",
          "  --store-every N      store labelled pairs every N pairs per judge rank (default 256)\n"
          "  --stop-after N       testing: stop as on SIGTERM after N pairs on a judge rank (exit "
          "75)\n"
          "  --crash-after N      testing: kill -9 itself after N pairs on a judge rank,\n"
          "                       once it has stored some\n"
          "  --quiet              no status lines"),
    PHASE("rm", 1, 0, 0, rlaif_cmd_rm, LEARNER, "preferences.h5, the sft model", "ckpt/rm-*.h5", 0,
          NULL, "train the reward model on preference labels (Bradley-Terry)", STOP_AFTER),
    PHASE("ppo", 1, 1, 0, rlaif_cmd_ppo, LEARNER, "the sft policy, the rm", "ckpt/ppo-*.h5", 3,
          rlaif_ppo_check, "optimise the policy against the reward model with PPO", STOP_AFTER),
    PHASE("reinforce", 1, 1, 0, rlaif_cmd_reinforce, LEARNER, "the sft policy, the rm",
          "ckpt/reinforce-*.h5", 3, rlaif_reinforce_check,
          "REINFORCE with a baseline against the reward model", STOP_AFTER),
    PHASE("a2c", 1, 1, 0, rlaif_cmd_a2c, LEARNER, "the sft policy, the rm", "ckpt/a2c-*.h5", 3,
          rlaif_a2c_check, "advantage actor-critic against the reward model", STOP_AFTER),
    PHASE("dpo", 1, 0, 0, rlaif_cmd_dpo, LEARNER, "preferences.h5, the sft policy", "ckpt/dpo-*.h5",
          2, NULL, "direct preference optimisation on the labels", STOP_AFTER),
    PHASE("online-dpo", 1, 1, 1, rlaif_cmd_online_dpo, LEARNER, "the sft policy, the judge",
          "ckpt/online-dpo-*.h5", 2, rlaif_online_dpo_check,
          "DPO with the judge in the loop on fresh samples", STOP_AFTER),
    PHASE("eval", 0, 1, 1, rlaif_cmd_eval, rlaif_eval_done,
          "the newest policy, the sft model, the judge", "eval.h5", 0, rlaif_eval_check,
          "win rate of the policy against the SFT model, judged both orders",
          "  (eval.policy, eval.baseline: a phase name or a checkpoint path; results in "
          "<out_dir>/eval.h5)"),
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

int rlaif_phase_status_get(const rlaif_ctx *ctx, const rlaif_phase_def *p, rlaif_phase_status *st) {
    memset(st, 0, sizeof *st);
    int rc = ctx->ranks.world_rank == 0 && p->done ? p->done(ctx->cfg, p->name, st) : 0;
    RLAIF_TRY(rlaif_agree(ctx->ranks.world, rc));
    RLAIF_CHECK_MPI(MPI_Bcast(st, (int)sizeof *st, MPI_BYTE, 0, ctx->ranks.world));
    return 0;
}

int rlaif_phase_exec(rlaif_ctx *ctx, const rlaif_phase_def *p) {
    rlaif_tm_reset();
    rlaif_live_phase(p->name, "running", 0);
    double t0 = rlaif_now();
    int rc = p->run ? p->run(ctx)
                    : RLAIF_ERROR(RLAIF_EX_SOFTWARE,
                                  "this build has the phases `rlaif --help` lists as built",
                                  "phase '%s' is not built yet", p->name);
    rc = rlaif_stop_agree_end(rc);
    double wall = rlaif_now() - t0;
    /* the same rc on every rank, so all or none take part in the summary */
    if (rc == 0 || rc == RLAIF_EX_TEMPFAIL) RLAIF_TRY(rlaif_phase_summary(ctx, p->name, wall));
    rlaif_live_phase(p->name,
                     rc == 0                   ? "done"
                     : rc == RLAIF_EX_TEMPFAIL ? "stopped"
                                               : "failed",
                     wall);
    return rc;
}
