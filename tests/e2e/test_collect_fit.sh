#!/bin/sh
# collect and the policy's context (issue 15.7): rm and dpo need a prompt,
# its response and an end-of-text token within model.max_seq_len, so
#  a. a context that leaves fewer tokens than collect.max_new_tokens: the
#     responses are capped (collect logs the cap and why) and rm accepts
#     every pair collect stored (without the cap: exit 64, "prompt +
#     response + EOS is N tokens, more than model.max_seq_len");
#  b. prompts too long for any response in the policy's context: collect
#     refuses before generating anything (exit 64, the reason, nothing
#     stored).
# Tiny job: arithmetic prompts "What is 9 minus 9?\n" are 19 bytes, answers
# at most 2 + EOS: sft fits max_seq_len = 24, which leaves collect 4 tokens.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
e2e_tmpdir fit
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cat >"$d/job.ini" <<'EOT'
[run]
seed = 7
out_dir = a
phases = sft, collect, rm
log_every = 100000
[model]
n_layer = 1
n_embd = 32
n_head = 2
max_seq_len = 24
[data]
task = arithmetic
n_prompts = 40
max_operand = 9
[sft]
steps = 30
batch_size = 8
eval_prompts = 0
[collect]
responses_per_prompt = 4
pairs_per_prompt = 2
max_new_tokens = 8
temperature = 1.5
[rm]
steps = 5
batch_size = 8
[checkpoint]
every = 0
keep = 1
EOT
cd "$d" || exit 1

echo "== a. responses capped to the context; rm takes every pair"
timeout 300 mpiexec -n 2 "$RLAIF" run job.ini >a.log 2>&1
rc=$?
[ $rc = 0 ] || fail "a: rlaif run exit $rc: $(grep -E 'ERROR|hint' a.log)"
grep -q "collect: responses capped at 4 tokens (collect.max_new_tokens = 8): the longest prompt (19 tokens)" a.log ||
  fail "a: no cap line: $(grep collect a.log | head -5)"
grep -q "run: 3 phases done" a.log || fail "a: $(tail -5 a.log)"
echo "a: $(grep -o 'collect: responses capped at [^:]*' a.log)"

echo "== b. prompts that leave no room: refused before generation"
printf '{"prompt": "%s"}\n' "A prompt far longer than the twenty-four tokens of this tiny model" >long.jsonl
ck=$(ls a/ckpt/sft-*.h5 | head -n 1)
timeout 300 mpiexec -n 2 "$RLAIF" collect job.ini --set run.out_dir=b --set data.task=jsonl \
  --set data.prompts=long.jsonl --set model.init_from="$ck" >b.log 2>&1
rc=$?
[ $rc = 64 ] || fail "b: exit $rc, not 64: $(tail -5 b.log)"
grep -q "ERROR: collect: the longest prompt is 64 tokens: with an end-of-text token it leaves no room" b.log ||
  fail "b: $(grep -A1 ERROR b.log)"
[ "$(grep -c ^ERROR b.log)" = 1 ] || fail "b: not one ERROR line: $(grep ERROR b.log)"
[ ! -e b/preferences.h5 ] || fail "b: something was stored"
echo "b: $(grep ^ERROR b.log)"
echo "test_collect_fit: ok"
