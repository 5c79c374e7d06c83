#!/bin/sh
# A chat template through the real phases: the tiny model is trained by SFT
# on the arithmetic task in ChatML (byte tokenizer + <|im_start|>,
# <|im_end|> as specials), so prompts, SFT targets (reply + <|im_end|>),
# held-out generation (which must stop at <|im_end|>) and collect's sampling
# all go through the template (with a system prompt). Then
# `model.chat_template = auto` on a copy of the checkpoint given a
# tokenizer_config.json in /hf_files (as tools/user/hf-to-rlaif stores it)
# holding Qwen2's template with that system prompt as its default samples
# exactly what the explicit form did; a template of another form, auto on
# a checkpoint with no stored template, and another template on the same
# out_dir exit 64 with one ERROR.
#
# Measured on the 2-core VM (2026-12-01, load 10-14, so 3 min of wall time
# for 37 s of CPU): held-out accuracy 0% -> 95% after 1000 steps (as
# without a template: test_sft_learn says 94%); a broken stop (generation
# past <|im_end|>) or a prompt format that differs between training and
# evaluation would fail the 80% bar.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
e2e_tmpdir chat
export OMP_NUM_THREADS=1

cat >"$d/job.ini" <<'EOF2'
[run]
seed = 1234
log_every = 500
[model]
n_layer = 2
n_embd = 64
n_head = 4
max_seq_len = 64
chat_template = chatml
system_prompt = Be brief.
[tokenizer]
specials = <|endoftext|>,<|im_start|>,<|im_end|>
[data]
task = arithmetic
n_prompts = 2000
max_operand = 9
[sft]
steps = 1000
batch_size = 32
lr = 3e-3
eval_prompts = 200
[collect]
responses_per_prompt = 4
pairs_per_prompt = 2
max_new_tokens = 8
temperature = 1.5
[checkpoint]
every = 0
EOF2
job="$d/job.ini"

# (a) SFT in ChatML: held-out answers generated in the template, stopped at
# <|im_end|> (33 tokens allowed: an answer that ran on would be wrong)
(cd "$d" && timeout 600 "$RLAIF" sft "$job") </dev/null >"$d/out" 2>&1 ||
  fail "sft: $(cat "$d/out")"
grep -E "accuracy" "$d/out"
after=$(sed -n 's/.*accuracy after training: \([0-9.]*\)%.*/\1/p' "$d/out")
[ -n "$after" ] || fail "no accuracy line"
awk -v a="$after" 'BEGIN { exit !(a >= 80) }' || fail "held-out accuracy $after% < 80%"
ckpt="$d/run/ckpt/sft-00001000.h5"

# one PPO iteration (d-RLAIF: the builtin judge scores, no reward model):
# rollouts stop at <|im_end|>, so every one ends with it and is short (a
# stop at <|endoftext|>, which this model never emits, would run to the
# 8 tokens the context leaves; answers here are at most 3 bytes + the stop)
(cd "$d" && timeout 120 "$RLAIF" ppo "$job" --set run.out_dir=p --set model.init_from="$ckpt" \
  --set ppo.reward=judge --set judge.mode=score --set ppo.steps=1 --set ppo.batch_size=16 \
  --set ppo.epochs=1 --set ppo.temperature=0.7) </dev/null >"$d/out" 2>&1 || fail "ppo: $(cat "$d/out")"
"$py" - "$d/p/progress.jsonl" <<'EOF2' || fail "ppo rollouts did not stop at <|im_end|>"
import json, sys
row = [json.loads(l) for l in open(sys.argv[1]) if '"ppo"' in l][-1]
print(f"ppo: eos_rate {row['eos_rate']}, response_length {row['response_length']} tokens")
sys.exit(not (row["eos_rate"] >= 0.9 and row["response_length"] <= 5))
EOF2

# the collected responses: short answers, no marker text, no second turn
texts() { # texts PREFS: every stored response, one per line (repr)
  "$py" - "$1" <<'EOF2'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    r = f["responses"]
    b, o, n = r["bytes"][:].tobytes(), r["offset"][:], r["length"][:]
    for i in range(len(o)):
        print(repr(b[o[i]:o[i] + n[i]].decode()))
EOF2
}
collect() { # collect OUT_DIR [--set ...]: 40 prompts on 1 rank
  o=$1
  shift
  (cd "$d" && timeout 120 "$RLAIF" collect "$job" --set run.out_dir="$o" \
    --set data.n_prompts=40 --set model.init_from="$ckpt" "$@") </dev/null >"$d/out" 2>&1
}
collect c1 ||
  fail "collect: $(cat "$d/out")"
texts "$d/c1/preferences.h5" >"$d/c1.txt" || fail "reading c1"
n=$(wc -l <"$d/c1.txt")
[ "$n" -ge 20 ] || fail "only $n responses"
if grep -E 'im_|user|assistant|system' "$d/c1.txt"; then fail "a response ran past <|im_end|>"; fi
echo "collect: $n responses, e.g. $(head -3 "$d/c1.txt" | tr '\n' ' ')"

# (b) auto: the checkpoint's stored template (Qwen2's, with this job's
# system prompt as its default) gives the same samples
hf() { # hf SRC DST TEMPLATE: DST = SRC + /hf_files/tokenizer_config.json
  "$py" - "$1" "$2" "$3" <<'EOF2'
import json, shutil, sys, h5py, numpy as np
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "a") as f:
    cfg = json.dumps({"chat_template": sys.argv[3], "eos_token": "<|im_end|>"}).encode()
    f.create_group("hf_files").create_dataset("tokenizer_config.json",
                                              data=np.frombuffer(cfg, dtype=np.uint8))
EOF2
}
qwen2="{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nBe brief.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
hf "$ckpt" "$d/qwen.h5" "$qwen2" || fail "writing qwen.h5"
ckpt="$d/qwen.h5"
collect c2 --set model.chat_template=auto --set model.system_prompt= || fail "collect auto: $(cat "$d/out")"
texts "$d/c2/preferences.h5" >"$d/c2.txt" || fail "reading c2"
cmp -s "$d/c1.txt" "$d/c2.txt" || fail "auto sampled other responses than chatml + the default system prompt"
echo "auto: detected chatml and the template's system prompt: the same $n responses"

# (c) refused: another form's template; auto with no stored template
one_error() { # one_error WHAT NEEDLE: exit 64, exactly one ERROR line containing NEEDLE
  rc=$1
  [ "$rc" -eq 64 ] || fail "$2: exit $rc, not 64: $(cat "$d/out")"
  [ "$(grep -c ERROR "$d/out")" -eq 1 ] || fail "$2: not one ERROR line: $(cat "$d/out")"
  grep ERROR "$d/out" | grep -q "$3" || fail "$2: no '$3': $(cat "$d/out")"
  grep ERROR "$d/out"
}
hf "$d/run/ckpt/sft-00001000.h5" "$d/mistral.h5" \
  "{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}" ||
  fail "writing mistral.h5"
ckpt="$d/mistral.h5"
collect c3 --set model.chat_template=auto
one_error $? "an unknown template" "no form rlaif knows"
ckpt="$d/run/ckpt/sft-00001000.h5"
collect c4 --set model.chat_template=auto
one_error $? "no stored template" "tokenizer_config.json"
[ ! -e "$d/c3/preferences.h5" ] && [ ! -e "$d/c4/preferences.h5" ] || fail "a refused run wrote pairs"
# the out_dir's fingerprint: its checkpoints were trained in ChatML
(cd "$d" && timeout 60 "$RLAIF" sft "$job" --set model.chat_template=none) </dev/null >"$d/out" 2>&1
one_error $? "another template on the same out_dir" "model.chat_template = none (was chatml)"
echo "PASS"
