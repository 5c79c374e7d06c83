/* commands.c - the table of the commands that are not pipeline phases, and
 * the foundation's own commands (config, ranks). The phases are listed once,
 * in the phase registry (src/phases/registry.c); the CLI puts them after
 * `run` (cli.c). A module adds a non-phase command by declaring
 * rlaif_cmd_<name> in its header and pointing its row here at it. */
#include "rlaif/app/cli.h"
#include "rlaif/core/error.h"
#include "rlaif/judge/judge.h"
#include "rlaif/core/log.h"
#include "rlaif/tokenizer/tokenizer.h"
#include "rlaif/storage/prefs.h"
#include "rlaif/storage/siteio.h"
#include "rlaif/phases/run.h"

#include <stdlib.h>
#include <string.h>

const rlaif_command rlaif_commands[] = {
    {"run", rlaif_cmd_run, 1, "run the job file's phases in order, skipping completed ones", NULL},
    {"status", rlaif_cmd_status, 0,
     "how far a job is: its phases (job.ini) and live state (job.ini or OUT_DIR; read-only)",
     "  OUT_DIR              a job's run.out_dir instead of job.ini: the live state alone\n"
     "  --json               one JSON object (per refresh) instead of text\n"
     "  --watch [SECONDS]    refresh every SECONDS (default 10) until the job ends"},
    {"config", rlaif_cmd_config, 0,
     "print the resolved configuration and where each value came from",
     "  --keys    list every section and key with type, default and help"},
    {"ranks", rlaif_cmd_ranks, 1, "print the rank layout the job would use on this launch", NULL},
    {"io", rlaif_cmd_io, 0,
     "print the [io] settings and what MPI-IO reports back for the hints on a probe file "
     "in out_dir (and io.stage_dir)",
     NULL},
    {"tokenize", rlaif_cmd_tokenize, 0, "turn text into token ids with the job's tokenizer",
     "  [TEXT...]            text to encode (joined by spaces); stdin when absent\n"
     "  --checkpoint FILE    use the tokenizer stored in FILE's /tokenizer group\n"
     "  --tokenizer PATH     use a Hugging Face tokenizer.json (or a folder holding one;\n"
     "                       a tokenizer_config.json beside it sets BOS/EOS), no job file\n"
     "  --bos                prepend the BOS token when the model's configuration adds one\n"
     "  --special            recognise special tokens such as <|endoftext|> in the text\n"
     "  --jsonl [--field K]  stdin holds one JSON string (or object with key K) per line\n"
     "  --pieces             print one token per line: id, then its bytes (escaped)\n"
     "  --save FILE.h5       write the tokenizer to FILE.h5's /tokenizer group instead\n"
     "  --gpt-3-encoder      reproduce the npm package gpt-3-encoder's ids exactly"},
    {"detokenize", rlaif_cmd_detokenize, 0, "turn token ids back into text",
     "  [IDS...]             token ids (separated by spaces or commas); stdin when absent\n"
     "  --checkpoint FILE    use the tokenizer stored in FILE's /tokenizer group\n"
     "  --tokenizer PATH     use a Hugging Face tokenizer.json (or a folder holding one)\n"
     "  --skip-special       leave special tokens out of the text"},
    {"judge", rlaif_cmd_judge, 0, "label a JSONL file of pairs with the feedback LLM (journaled)",
     "  --input PAIRS.jsonl  lines {\"id\", \"prompt\", \"response_a\", \"response_b\"}\n"
     "  --output OUT.jsonl   one result per pair: label, status, reason, orders, usage\n"
     "  --journal DIR        journal folder (default judge.journal_dir or out_dir/journal)\n"
     "  --prefs OUT.h5       also append the pairs, texts and labels to a preferences.h5\n"
     "  --demos OUT.jsonl    instead of labelling: each pair in both orders as an SFT\n"
     "                       demonstration {\"prompt\", \"response\"} for a local judge model\n"
     "                       (the rendered call as plain text, the builtin judge's answer)\n"
     "  --crash-after N      testing: kill -9 itself after N pairs (resume test)\n"
     "  --quiet              no status lines"},
    {"prefs", rlaif_cmd_prefs, 0, "preference files: ingest, export, merge, info",
     "  ingest IN.jsonl OUT.h5 [--kind prompts|sft|prefs] [--tokenize]\n"
     "                                   JSONL to preferences.h5 (tokens: job's [tokenizer])\n"
     "  export IN.h5 OUT.jsonl [--kind prompts|sft|prefs]   preferences.h5 to JSONL\n"
     "  merge OUT.h5 IN.h5...                              merge files, dropping repeated pair "
     "ids\n"
     "  info IN.h5                                         counts"},
    {NULL, NULL, 0, NULL, NULL},
};

static const char *type_name(rlaif_cfg_type t) {
    static const char *names[] = {"int", "float", "bool", "string", "enum", "duration"};
    return names[t];
}

int rlaif_cmd_config(rlaif_ctx *ctx) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) return 0;
    int keys = 0;
    for (int i = 0; i < ctx->args.nargs; i++) {
        if (!strcmp(ctx->args.args[i], "--keys"))
            keys = 1;
        else
            return RLAIF_ERROR(RLAIF_EX_USAGE, "see rlaif config --help",
                               "config: unexpected argument '%s'", ctx->args.args[i]);
    }
    if (keys) {
        for (const rlaif_cfg_spec *s = rlaif_config_schema; s->section; s++) {
            printf("%s.%s (%s", s->section, s->key, type_name(s->type));
            if (s->type == RLAIF_CFG_ENUM)
                printf(": %s", s->choices);
            else if (s->min <= s->max)
                printf(" in [%g, %g]", s->min, s->max);
            printf(", default '%s')\n    %s\n", s->def, s->help);
        }
        return 0;
    }
    printf("; resolved configuration%s%s\n", *rlaif_config_path(ctx->cfg) ? " of " : "",
           rlaif_config_path(ctx->cfg));
    printf("; precedence: default < job file < environment RLAIF_<SECTION>_<KEY> < --set\n\n");
    rlaif_config_print(ctx->cfg, stdout, 1);
    return 0;
}

int rlaif_cmd_ranks(rlaif_ctx *ctx) {
    rlaif_ranks *rk = &ctx->ranks;
    /* Gather each rank's (role, group rank, in weights comm) to rank 0. */
    int mine[3] = {rk->colocated ? -1 : (int)rk->role,
                   rk->colocated ? rk->world_rank : rk->group_rank[rk->role],
                   rk->weights != MPI_COMM_NULL};
    int *all = rk->world_rank == 0 ? xmalloc(sizeof(int) * 3 * (size_t)rk->world_size) : NULL;
    RLAIF_CHECK_MPI(MPI_Gather(mine, 3, MPI_INT, all, 3, MPI_INT, 0, rk->world));
    if (rk->world_rank == 0) {
        printf("world: %d ranks, layout %s: learner %d, rollout %d, judge %d\n", rk->world_size,
               rk->colocated ? "colocated (every rank plays every role)" : "split",
               rk->count[RLAIF_ROLE_LEARNER], rk->count[RLAIF_ROLE_ROLLOUT],
               rk->count[RLAIF_ROLE_JUDGE]);
        for (int r = 0; r < rk->world_size; r++)
            printf("  rank %d: %s %d%s\n", r,
                   all[3 * r] < 0 ? "all roles, rank" : rlaif_role_name((rlaif_role)all[3 * r]),
                   all[3 * r + 1], all[3 * r + 2] ? " (weight broadcast)" : "");
        free(all);
    }
    return 0;
}
