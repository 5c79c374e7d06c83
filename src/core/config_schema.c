/* config_schema.c - every job-file key rlaif accepts, with type, default,
 * range and help. One row per key; `rlaif config --help-keys` prints them.
 * A module that needs a new key adds a row in its own section here. */
#include "rlaif/core/config.h"

#define NOR 1, 0 /* no range */
#define I(sec, key, def, lo, hi, help)                                                             \
    { sec, key, RLAIF_CFG_INT, def, lo, hi, NULL, help }
#define F(sec, key, def, lo, hi, help)                                                             \
    { sec, key, RLAIF_CFG_FLOAT, def, lo, hi, NULL, help }
#define B(sec, key, def, help)                                                                     \
    { sec, key, RLAIF_CFG_BOOL, def, NOR, NULL, help }
#define S(sec, key, def, help)                                                                     \
    { sec, key, RLAIF_CFG_STRING, def, NOR, NULL, help }
#define E(sec, key, def, choices, help)                                                            \
    { sec, key, RLAIF_CFG_ENUM, def, NOR, choices, help }
#define D(sec, key, def, lo, hi, help)                                                             \
    { sec, key, RLAIF_CFG_DURATION, def, lo, hi, NULL, help }

/* Optimizer and schedule keys shared by every training phase. */
#define OPTIM(sec, lr, steps, batch)                                                               \
    F(sec, "lr", lr, 0, 10, "peak learning rate (AdamW)"),                                         \
        I(sec, "steps", steps, 0, 1e12, "optimizer steps"),                                        \
        I(sec, "batch_size", batch, 1, 1e9, "sequences per optimizer step, over all learners"),    \
        I(sec, "micro_batch", "0", 0, 1e9, "sequences per forward/backward (0 = batch_size)"),     \
        I(sec, "warmup_steps", "10", 0, 1e12, "linear warmup steps before cosine decay"),          \
        F(sec, "min_lr_ratio", "0.1", 0, 1, "final lr as a fraction of lr (cosine)"),              \
        F(sec, "weight_decay", "0.0", 0, 10, "decoupled weight decay on 2-D weights"),             \
        F(sec, "beta1", "0.9", 0, 0.999999, "AdamW beta1"),                                        \
        F(sec, "beta2", "0.999", 0, 0.999999999, "AdamW beta2"),                                   \
        F(sec, "eps", "1e-8", 0, 1, "AdamW epsilon"),                                              \
        F(sec, "grad_clip", "1.0", 0, 1e9, "global grad-norm clip (0 = off)")

const rlaif_cfg_spec rlaif_config_schema[] = {
    /* [run] whole job */
    I("run", "seed", "1234", 0, 9.2e18, "seed of every random stream (counter-based RNG)"),
    S("run", "out_dir", "run", "folder for every output (relative to the working directory)"),
    S("run", "phases", "sft,collect,rm,ppo,eval", "phases `rlaif run` executes, in order"),
    D("run", "walltime", "0", 0, 1e9,
      "job time limit; checkpoint and exit 75 stop_margin before it (0 = none)"),
    D("run", "stop_margin", "5m", 0, 1e9, "how long before walltime to checkpoint and stop"),
    S("run", "log_dir", "", "per-rank log folder (also --log-dir)"),
    I("run", "log_every", "10", 1, 1e9, "status line every N steps"),
    B("run", "verbose", "false", "debug lines on stderr"),

    /* [ranks] rank groups (src/core/README.md) */
    I("ranks", "rollout", "0", 0, 1e7, "rollout ranks (0 with all counts 0 = automatic)"),
    I("ranks", "judge", "0", 0, 1e7, "judge-query ranks"),
    I("ranks", "learner", "0", 0, 1e7, "learner ranks"),
    E("ranks", "layout", "auto", "auto|split|colocated",
      "split: disjoint groups; colocated: every rank plays every role; auto: colocated "
      "below 3 ranks"),
    I("ranks", "weight_bucket_bytes", "16777216", 4, 2e9,
      "bucket of the policy broadcast learner 0 -> rollouts (one MPI_Ibcast each)"),

    /* [model] architecture of a model built from scratch */
    E("model", "arch", "gpt2", "gpt2|opt|llama",
      "gpt2; opt (learned positions, ReLU); llama (RoPE, RMSNorm, SwiGLU, GQA)"),
    I("model", "n_layer", "4", 1, 1024, "transformer blocks"),
    I("model", "n_embd", "128", 8, 65536, "hidden size"),
    I("model", "n_head", "4", 1, 1024, "attention heads (must divide n_embd)"),
    I("model", "n_kv_head", "0", 0, 1024,
      "llama: key/value heads, grouped-query attention (0 = n_head; must divide n_head)"),
    I("model", "n_inner", "0", 0, 1048576,
      "MLP width (0 = the arch's default: 4 n_embd; llama 8 n_embd / 3 rounded up to 32)"),
    F("model", "rope_theta", "10000", 1, 1e12, "llama: RoPE base"),
    B("model", "tie_embeddings", "true", "llama: LM head tied to the token embeddings"),
    B("model", "attn_bias", "false", "llama: q/k/v projection biases (as Qwen2)"),
    I("model", "sliding_window", "0", 0, 1048576,
      "llama: a token attends the last N positions only (as Mistral; 0 = all)"),
    B("model", "norm_before", "true", "opt: pre-LayerNorm (false: post-LN, as opt-350m)"),
    I("model", "max_seq_len", "128", 8, 1048576, "positions"),
    I("model", "vocab_size", "0", 0, 4194304, "vocabulary (0 = from the tokenizer)"),
    E("model", "precision", "fp32", "fp32|bf16|auto",
      "matrix products in fp32, or bf16 with fp32 accumulation (weights, optimiser, norms and "
      "checkpoints stay fp32); auto = bf16 where the CPU has AMX-BF16 or AVX512-BF16"),
    E("model", "gemm", "auto", "auto|fixed|sgemm|smallm|bf16|bf16-smallm|bf16-packed|packed",
      "which kernel each forward matrix product runs: auto = timed once per CPU model on world "
      "rank 0, shared by every rank, kept in <out_dir>/gemm_choices.txt (a resume reuses it); "
      "fixed = the built-in rule; a kernel name forces it wherever it applies"),
    F("model", "init_std", "0.02", 0, 10, "std of the random initialisation"),
    S("model", "init_from", "", "checkpoint to start from instead of random weights"),
    E("model", "chat_template", "none", "none|chatml|llama3|llama2|zephyr|auto",
      "how prompts and replies are framed: none = plain text; auto = the form of the "
      "checkpoint's Hugging Face chat_template (src/tokenizer/README.md)"),
    S("model", "system_prompt", "",
      "system message of every prompt (\"\" = the template's default)"),

    /* [tokenizer] */
    E("tokenizer", "type", "byte", "byte|bpe", "byte: 256 bytes + specials; bpe: GPT-2 BPE"),
    S("tokenizer", "vocab", "", "encoder.json or tokenizer.json (bpe)"),
    S("tokenizer", "merges", "", "vocab.bpe (bpe with encoder.json)"),
    S("tokenizer", "specials", "<|endoftext|>",
      "comma-separated special tokens: ids after the bytes (byte), marked or appended (bpe)"),

    /* [data] inputs */
    E("data", "task", "arithmetic", "arithmetic|jsonl",
      "arithmetic: the built-in demo task; jsonl: prompts from data.prompts"),
    S("data", "prompts", "", "JSONL of {\"prompt\"} records"),
    S("data", "sft", "", "JSONL of {\"prompt\",\"response\"} demonstrations"),
    S("data", "human_preferences", "", "JSONL of {\"prompt\",\"chosen\",\"rejected\"}"),
    I("data", "n_prompts", "2000", 1, 1e12, "prompts generated for the arithmetic task"),
    I("data", "max_operand", "99", 1, 1e9, "largest operand of the arithmetic task"),
    F("data", "flaw_wrong", "0", 0, 1,
      "arithmetic task: fraction of demonstrations with a wrong number (off by 1, 2 or 10)"),
    F("data", "flaw_rude", "0", 0, 1, "arithmetic task: fraction of rude demonstrations"),
    F("data", "flaw_ramble", "0", 0, 1,
      "arithmetic task: fraction of rambling demonstrations (filler around the answer)"),
    F("data", "flaw_offtopic", "0", 0, 1,
      "arithmetic task: fraction of demonstrations with an off-topic sentence (rude + "
      "ramble + offtopic <= 1)"),
    E("data", "demo_phrasing", "bare", "bare|varied",
      "arithmetic task: clean demonstrations are the bare number, or phrased in several ways"),
    I("data", "max_prompt_len", "64", 1, 1048576, "prompt tokens kept (left-truncated)"),
    I("data", "max_response_len", "32", 1, 1048576, "response tokens kept"),

    /* [sft] */
    OPTIM("sft", "1e-3", "500", "32"),
    I("sft", "eval_prompts", "200", 0, 1e9,
      "held-out arithmetic problems answered greedily before and after SFT (0 = none)"),
    /* [rm] reward model (Bradley-Terry) */
    OPTIM("rm", "3e-4", "300", "32"),
    F("rm", "margin", "0.0", -1e9, 1e9, "margin in -log sigmoid(r_w - r_l - margin)"),
    F("rm", "reward_l2", "0.001", 0, 1e9, "coefficient of mean(r^2)"),
    S("rm", "preferences", "", "preferences.h5 to train on (default out_dir/preferences.h5)"),
    F("rm", "eval_fraction", "0.1", 0, 0.9,
      "fraction of prompts (by a hash of the prompt text) held out for validation"),
    E("rm", "soft_labels", "soft", "soft|hard|drop",
      "labels strictly between 0 and 1 (ties 0.5, logprob labels): soft cross-entropy, "
      "rounded to the nearer side (ties dropped), or dropped"),
    E("rm", "head", "new", "new|keep",
      "new: a fresh score head on the initial model; keep: the initial model must have one"),
    B("rm", "from_scratch", "false",
      "without model.init_from or a finished sft checkpoint, build the RM from [model] "
      "(otherwise an error)"),

    /* [collect] responses and labels */
    I("collect", "responses_per_prompt", "4", 2, 1024, "K responses sampled per prompt"),
    I("collect", "pairs_per_prompt", "2", 1, 1e6, "pairs judged per prompt"),
    F("collect", "temperature", "0.8", 0, 100, "sampling temperature"),
    I("collect", "top_k", "0", 0, 4194304, "top-k (0 = off)"),
    F("collect", "top_p", "1.0", 0, 1, "nucleus sampling"),
    I("collect", "max_new_tokens", "16", 1, 1048576, "tokens generated per response"),
    I("collect", "credit", "64", 1, 1e7, "pairs a rollout rank may have in flight (pull credit)"),
    B("collect", "retry_failed", "true",
      "pairs the judge never answered (HTTP error, quota, retries exhausted) stay out of "
      "preferences.h5 so a rerun judges them again; false stores them as failed"),

    /* [judge] feedback LLM (src/judge/README.md) */
    E("judge", "backend", "builtin", "builtin|openai|anthropic|local",
      "feedback LLM backend (local: the checkpoint judge.model run on the judge ranks)"),
    E("judge", "mode", "verdict", "verdict|logprob|rubric|score", "how a label is asked for"),
    S("judge", "base_url", "", "endpoint base URL, e.g. https://api.openai.com/v1"),
    S("judge", "model", "",
      "model name sent to the endpoint; backend local: the judge checkpoint's path"),
    E("judge", "chat_template", "model", "model|none|chatml|llama3|llama2|zephyr|auto",
      "backend local: the judge model's chat template (model = as model.chat_template; auto "
      "reads the judge checkpoint's Hugging Face tokenizer_config.json)"),
    I("judge", "local_batch", "16", 1, 4096, "backend local: calls run through the model together"),
    I("judge", "local_context", "4096", 8, 1048576,
      "backend local: positions one call may use, prompt and reply (at most the model's; the "
      "memory check counts a KV cache of local_batch x local_context)"),
    I("judge", "local_slice_tokens", "1024", 1, 1e9,
      "backend local: the most prompt tokens prefilled per poll (the rank's work between two "
      "looks at its stop flags; larger chunks run the products faster)"),
    D("judge", "local_slice_time", "5s", 1e-6, 3600,
      "backend local: a prefill chunk is cut to about this long at the rank's measured prefill "
      "rate (the first chunk is at most 256 tokens), so a stop waits about this long at most; "
      "chunks of fewer than about 256 tokens run the products below the machine's rate"),
    I("judge", "local_share_min", "16", 0, 1e9,
      "backend local: when the prompts of a batch begin with at least this many common tokens "
      "(the system prompt and template), those are computed once and their keys and values "
      "copied to the batch's other calls (a call repeated in the batch copies its whole prompt "
      "but the last token), and kept for the next batches that begin with them (at batch 1, "
      "the last call's prompt); 0 computes every token of every call"),
    S("judge", "api_key_env", "OPENAI_API_KEY",
      "name of the environment variable holding the API key (never the key itself)"),
    E("judge", "token_param", "max_tokens", "max_tokens|max_completion_tokens",
      "which output-length parameter the endpoint accepts"),
    I("judge", "max_tokens", "512", 1, 1e7, "output tokens per judge call"),
    F("judge", "temperature", "0.0", 0, 2, "judge sampling temperature"),
    I("judge", "seed", "0", 0, 9.2e18, "seed sent to the endpoint (0 = none)"),
    I("judge", "top_logprobs", "5", 0, 20, "top_logprobs in logprob mode"),
    F("judge", "min_coverage", "0.5", 0, 1,
      "logprob mode: least P(A)+P(B) among the top tokens for a label to count"),
    I("judge", "max_inflight", "16", 1, 100000,
      "most concurrent requests per judge rank (the ceiling when judge.adaptive)"),
    B("judge", "adaptive", "true",
      "adapt requests in flight to what the endpoint sustains (false: always max_inflight)"),
    D("judge", "connect_timeout", "10s", 0.001, 3600, "TCP/TLS connect timeout"),
    D("judge", "timeout", "120s", 0.001, 86400, "whole-request timeout"),
    I("judge", "max_attempts", "6", 1, 1000, "tries per request (1 = no retry)"),
    D("judge", "backoff_base", "1s", 0, 3600, "first retry delay"),
    D("judge", "backoff_cap", "60s", 0, 86400, "longest retry delay"),
    F("judge", "requests_per_minute", "0", 0, 1e9, "rate limit over all judge ranks (0 = none)"),
    F("judge", "tokens_per_minute", "0", 0, 1e12, "token rate limit over all judge ranks"),
    F("judge", "both_orders", "1.0", 0, 1, "fraction of pairs judged in both orders"),
    E("judge", "disagreement", "tie", "drop|tie|average",
      "when the two orders disagree: drop the pair, label 0.5, or average soft labels"),
    S("judge", "templates", "", "comma-separated prompt template files (default: built in)"),
    S("judge", "few_shot", "", "few-shot examples file"),
    S("judge", "ensemble", "",
      "extra endpoints, comma-separated backend[:model][@base_url][#KEY_ENV] (rest from [judge])"),
    E("judge", "aggregate", "mean", "mean|majority", "how several templates/judges combine"),
    F("judge", "flip_prob", "0.0", 0, 1, "builtin judge: probability of a wrong verdict"),
    F("judge", "first_bias", "0.0", 0, 1, "builtin judge: probability of picking A regardless"),
    B("judge", "allow_http", "false", "allow plain http to hosts other than loopback"),
    S("judge", "journal_dir", "", "journal folder (default out_dir/journal)"),
    F("judge", "price_input_per_mtok", "0", 0, 1e9, "USD per million input tokens"),
    F("judge", "price_output_per_mtok", "0", 0, 1e9, "USD per million output tokens"),
    S("judge", "anthropic_version", "2023-06-01", "anthropic-version header"),

    /* [ppo] RL against the reward model (also reinforce, a2c) */
    /* steps = iterations (rollout batches); batch_size = prompts per
     * iteration; micro_batch = sequences per forward/backward */
    OPTIM("ppo", "1e-5", "200", "64"),
    I("ppo", "minibatches", "1", 1, 1e9, "ppo: minibatches (optimizer steps) per epoch"),
    S("ppo", "reward_model", "", "reward model checkpoint (empty = the newest finished rm)"),
    B("ppo", "learners_sample", "true",
      "split layout: the learners sample a share of each batch too (else they wait)"),
    E("ppo", "reward", "rm", "rm|judge",
      "rm: the reward model's score; judge: the judge ranks score each response (d-RLAIF)"),
    F("ppo", "kl_coef", "0.05", 0, 1e9, "beta of the per-token KL penalty"),
    E("ppo", "kl_estimator", "k1", "k1|k3", "per-token KL estimator"),
    E("ppo", "kl_penalty", "reward", "reward|loss",
      "the KL to the reference: a per-token reward penalty (PPO, RLHF) or a loss term (GRPO)"),
    B("ppo", "adaptive_kl", "false", "adaptive KL controller (Ziegler et al.)"),
    F("ppo", "target_kl", "6.0", 0, 1e9, "target KL of the adaptive controller"),
    I("ppo", "kl_horizon", "10000", 1, 1e12, "horizon of the adaptive controller"),
    F("ppo", "gamma", "1.0", 0, 1, "discount"),
    F("ppo", "lam", "0.95", 0, 1, "GAE lambda"),
    F("ppo", "cliprange", "0.2", 0, 10, "policy ratio clip"),
    F("ppo", "cliprange_value", "0.2", 0, 1e9, "value clip"),
    F("ppo", "vf_coef", "0.1", 0, 1e9, "value loss coefficient"),
    I("ppo", "epochs", "4", 1, 1000, "PPO epochs per batch"),
    B("ppo", "whiten_rewards", "true", "whiten rewards per batch"),
    F("ppo", "missing_eos_penalty", "1.0", 0, 1e9, "subtracted from the score without EOS"),
    F("ppo", "entropy_coef", "0.0", 0, 1e9, "entropy bonus"),
    E("ppo", "baseline", "loo", "loo|group|moving",
      "REINFORCE baseline (RLOO, GRPO, running mean)"),
    F("ppo", "temperature", "1.0", 0, 100, "rollout sampling temperature"),
    I("ppo", "max_new_tokens", "16", 1, 1048576, "tokens generated per rollout"),
    I("ppo", "samples_per_prompt", "2", 1, 1024, "rollouts per prompt (loo baseline needs 2+)"),

    /* [dpo] direct preference optimisation */
    OPTIM("dpo", "5e-5", "200", "32"),
    F("dpo", "beta", "0.1", 0, 1e9, "DPO beta"),
    E("dpo", "loss", "sigmoid", "sigmoid|ipo|cdpo", "DPO loss variant"),
    F("dpo", "label_smoothing", "0.0", 0, 0.5, "cDPO label smoothing"),
    I("dpo", "online_batches", "0", 0, 1e12, "online DPO: fresh judged batches (0 = offline)"),
    S("dpo", "preferences", "", "preferences.h5 to train on (default out_dir/preferences.h5)"),
    F("dpo", "eval_fraction", "0.1", 0, 0.9,
      "fraction of prompts (by a hash of the prompt text) held out for validation"),
    E("dpo", "soft_labels", "soft", "soft|hard|drop",
      "labels strictly between 0 and 1 (ties 0.5, logprob labels): soft (the expected loss "
      "over the label), rounded to the nearer side (ties dropped), or dropped"),
    I("dpo", "eval_prompts", "200", 0, 1e9,
      "held-out arithmetic problems answered greedily before and after DPO (0 = none)"),

    /* [eval] */
    I("eval", "n_prompts", "200", 1, 1e12, "held-out prompts judged"),
    S("eval", "baseline", "sft",
      "compared against: a phase name (its newest finished checkpoint) or a checkpoint path"),
    S("eval", "policy", "",
      "evaluated: a phase name or a checkpoint path (empty = newest finished ppo, dpo, sft)"),
    S("eval", "prompts", "",
      "data.task = jsonl: {\"prompt\"} file whose last n_prompts records are used (empty = "
      "data.prompts)"),
    F("eval", "temperature", "0", 0, 100, "answer sampling temperature (0 = greedy)"),
    I("eval", "max_new_tokens", "16", 1, 1048576, "tokens generated per answer"),

    /* [checkpoint] */
    S("checkpoint", "dir", "ckpt", "checkpoint folder (relative to out_dir)"),
    I("checkpoint", "every", "100", 0, 1e12, "checkpoint every N steps (0 = phase end only)"),
    I("checkpoint", "keep", "3", 1, 1e6, "checkpoints kept per phase"),

    /* [io] parallel HDF5 tuning */
    I("io", "chunk_records", "4096", 1, 1e9, "records per chunk of extendible datasets"),
    I("io", "alignment", "1048576", 1, 1e12,
      "HDF5 object alignment in bytes (H5Pset_alignment; the file-system stripe; 1 = off)"),
    I("io", "alignment_threshold", "0", 0, 1e12,
      "objects of at least this many bytes are aligned (0 = io.alignment)"),
    B("io", "collective_metadata", "true",
      "collective metadata reads and writes (H5Pset_all_coll_metadata_ops, "
      "H5Pset_coll_metadata_write)"),
    S("io", "mpi_hints", "",
      "MPI-IO hints of every parallel file, key=value,... (e.g. "
      "striping_factor=8,cb_buffer_size=16777216)"),
    I("io", "striping_factor", "0", 0, 1e6,
      "MPI-IO hint striping_factor: stripe count of new files (0 = not passed)"),
    I("io", "striping_unit", "0", 0, 1e12,
      "MPI-IO hint striping_unit: stripe size of new files in bytes (0 = not passed)"),
    I("io", "cb_nodes", "0", 0, 1e7,
      "MPI-IO hint cb_nodes: aggregators of collective buffering (0 = not passed)"),
    E("io", "romio_cb_write", "default", "default|automatic|enable|disable",
      "MPI-IO hint romio_cb_write: collective buffering of writes (default = not passed)"),
    S("io", "stage_dir", "",
      "folder checkpoints are written to first, shared by every learner rank (node-local "
      "scratch such as $TMPDIR); a phase's last checkpoint is copied back to out_dir "
      "(empty = write to out_dir)"),
    B("io", "collective_data", "false",
      "collective (two-phase) raw-data transfers instead of independent ones"),

    /* [train] guards of every training phase's loop */
    I("train", "max_bad_steps", "5", 1, 1e9,
      "steps in a row with a non-finite loss or gradient (each skipped) that stop the phase"),

    {0},
};
