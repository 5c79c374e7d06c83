#!/bin/sh
# The phases on the other two model families (about 1 minute):
#  a. model.arch = llama from [model] (grouped-query attention 4 -> 2 heads,
#     q/k/v biases, untied LM head, sliding window) through sft, collect, rm,
#     dpo on 2 colocated ranks, then ppo from those checkpoints on a split
#     layout (1 learner + 1 rollout + 1 judge rank: the policy broadcast to
#     the rollout rank is the trunk prefix of the flat block, value head
#     excluded); every phase exits 0 and its checkpoint keeps the arch,
#     n_kv_head, the untied lm_head and the scalar head where it belongs;
#  b. model.arch = opt, post-LayerNorm (norm_before = false, no final norm)
#     through the same phases.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
e2e_tmpdir archs
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

cat >"$d/job.ini" <<'EOF'
[run]
seed = 3
phases = sft, collect, rm, dpo
log_every = 100000
[model]
n_layer = 1
n_embd = 32
n_head = 4
max_seq_len = 48
[data]
task = arithmetic
n_prompts = 60
max_operand = 9
[sft]
steps = 20
batch_size = 8
eval_prompts = 0
[collect]
responses_per_prompt = 2
max_new_tokens = 6
[rm]
steps = 5
batch_size = 8
[dpo]
steps = 5
batch_size = 8
[ppo]
steps = 3
batch_size = 8
[checkpoint]
every = 0
keep = 1
EOF

# run NP OUT_DIR CMD [--set ...]
run() {
  np=$1 out=$2 cmd=$3
  shift 3
  (cd "$d" && timeout 300 "$mpi" -n "$np" --oversubscribe "$RLAIF" "$cmd" job.ini \
    --set run.out_dir="$out" "$@") </dev/null >"$d/log" 2>&1
}

# h5 FILE EXPR: EXPR (python, f = the open file) must hold
h5() {
  "$py" -c "import h5py, sys
f = h5py.File(sys.argv[1], 'r')
a = f['config'].attrs
sys.exit(0 if ($2) else 1)" "$1" || fail "$1: expected $2"
}

arch() { # NAME OUT [--set ...]: the four phases, then ppo split
  name=$1 out=$2
  shift 2
  run 2 "$out" run "$@" || fail "$name: run: $(tail -5 "$d/log")"
  run 3 "$out" ppo --set ranks.learner=1 --set ranks.rollout=1 --set ranks.judge=1 "$@" ||
    fail "$name: ppo split: $(tail -5 "$d/log")"
  grep -q "ppo: done" "$d/log" || fail "$name: ppo did not finish: $(tail -5 "$d/log")"
  for p in sft rm dpo ppo; do
    ls "$d/$out/ckpt/$p-"*.h5 >/dev/null 2>&1 || fail "$name: no $p checkpoint"
  done
}

echo "== a. llama"
arch llama L --set model.arch=llama --set model.n_kv_head=2 --set model.attn_bias=true \
  --set model.tie_embeddings=false --set model.sliding_window=8
for f in "$d"/L/ckpt/sft-*.h5 "$d"/L/ckpt/ppo-*.h5; do
  h5 "$f" "a['arch'] == b'llama' and a['n_kv_head'] == 2 and a['sliding_window'] == 8 and \
'lm_head.weight' in f['params'] and f['params/layers.0.self_attn.k_proj.weight'].shape == (16, 32)"
done
h5 "$(ls "$d"/L/ckpt/rm-*.h5)" "'score.weight' in f['params'] and a['tie_embeddings'] == 0"

echo "== b. opt, post-LayerNorm"
arch opt O --set model.arch=opt --set model.norm_before=false
for f in "$d"/O/ckpt/dpo-*.h5 "$d"/O/ckpt/ppo-*.h5; do
  h5 "$f" "a['arch'] == b'opt' and a['norm_before'] == 0 and \
'final_layer_norm.weight' not in f['params'] and f['params/embed_positions.weight'].shape == (50, 32)"
done
echo "PASS"
