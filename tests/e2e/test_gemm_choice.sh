#!/bin/sh
# model.gemm (the product paths of the forward products) on a tiny bf16 model
# (`rlaif sft`, about 40 s):
#  a. auto times the classes once, logs a summary (the table, one line per
#     class, in the per-rank log) and records it in
#     <out_dir>/gemm_choices.txt (and in the machine's cache, RLAIF_GEMM_CACHE);
#  b. a run stopped at step 7 and resumed with a cache whose every choice is
#     flipped ends bit for bit equal to the uninterrupted run: the resume
#     takes the out_dir's record, times nothing, and says so; a fresh run
#     with the flipped cache does differ (so the check can fail);
#  c. another out_dir on this machine, with another thread count, takes the
#     cache and times nothing; a record of another machine is timed afresh
#     with a warning naming both keys;
#  d. fixed and a forced path are logged.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
check="$top_srcdir/tests/e2e/check_sft.py"
e2e_tmpdir gemm
export OMP_NUM_THREADS=1

cat >"$d/job.ini" <<'EOF2'
[run]
seed = 5
log_every = 4
[model]
n_layer = 2
n_embd = 32
n_head = 2
max_seq_len = 32
precision = bf16
[data]
task = arithmetic
n_prompts = 40
max_operand = 20
[sft]
steps = 12
batch_size = 8
micro_batch = 4
lr = 3e-3
warmup_steps = 2
eval_prompts = 0
[checkpoint]
every = 5
keep = 10
EOF2
final=ckpt/sft-00000012.h5
# sft CACHE [args]: the job with RLAIF_GEMM_CACHE=$d/CACHE, output in $d/out
sft() {
  cache=$1
  shift
  (cd "$d" && RLAIF_GEMM_CACHE="$d/$cache" timeout 120 "$RLAIF" sft job.ini --log-dir log "$@") \
    </dev/null >"$d/out" 2>&1
}

echo "== a. timed once, logged, recorded"
sft cache --set run.out_dir=full || fail "full run: $(cat "$d/out")"
grep -q "gemm: choices from no record, no cache, [1-9][0-9]* class(es) timed" "$d/out" ||
  fail "no timing line: $(cat "$d/out")"
grep -q "gemm: [1-9][0-9]* class(es) chosen (.*); the table: full/gemm_choices.txt" "$d/out" ||
  fail "no summary line: $(cat "$d/out")"
grep -q "gemm bf16: M<=128 .*-> .*: " "$d/log/rank-00000.log" || fail "no table in the rank log"
head -1 "$d/full/gemm_choices.txt" | grep -q "^# rlaif gemm choices: .* | openblas .* | kernels [0-9]*$" ||
  fail "no record: $(cat "$d/full/gemm_choices.txt")"
ls "$d"/cache/gemm-*.txt >/dev/null || fail "no cache file"

echo "== b. a resume takes its record, not a cache that says otherwise"
# every choice flipped: bf16 <-> sgemm, bf16-smallm / bf16-packed <-> smallm
mkdir "$d/flip"
for f in "$d"/cache/gemm-*.txt; do
  awk 'NR > 1 { if ($8 == "bf16") $8 = "sgemm"; else if ($8 == "sgemm") $8 = "bf16";
                else if ($8 == "smallm") $8 = "bf16-smallm"; else $8 = "smallm" } { print }' \
    "$f" >"$d/flip/$(basename "$f")"
done
cmp -s "$d"/cache/gemm-*.txt "$d"/flip/gemm-*.txt && fail "the flipped cache is the same"
sft cache --set run.out_dir=stop --stop-after 7
[ $? = 75 ] || fail "expected exit 75 after --stop-after: $(cat "$d/out")"
sft flip --set run.out_dir=stop || fail "resume: $(cat "$d/out")"
grep -q "resuming from stop/ckpt/sft-00000007.h5" "$d/out" || fail "no resume: $(cat "$d/out")"
"$py" "$check" params "$d/full/$final" "$d/stop/$final" exact || fail "resumed run differs"
grep -q "gemm: choices from stop/gemm_choices.txt, .*, 0 class(es) timed" "$d/out" ||
  fail "the resume did not take its record: $(cat "$d/out")"
sft flip --set run.out_dir=flipped || fail "flipped run: $(cat "$d/out")"
"$py" "$check" params "$d/full/$final" "$d/flipped/$final" exact >/dev/null 2>&1 &&
  fail "the flipped table gives the same bits: the check above proves nothing"

echo "== c. another out_dir, with another team, takes the cache"
# the classes are timed on one thread: a phase with 2 threads per rank (or
# another rank count) shares the record and the cache of a 1-thread phase
OMP_NUM_THREADS=2 sft cache --set run.out_dir=other --set sft.steps=1 ||
  fail "other: $(cat "$d/out")"
grep -q "gemm: choices from no record, $d/cache/gemm-.*, 0 class(es) timed" "$d/out" ||
  fail "the cache was not taken: $(cat "$d/out")"
grep -q "another machine" "$d/out" && fail "a warning for a team change: $(cat "$d/out")"

echo "== c2. a record of another machine is timed afresh, and the warning names both"
mkdir "$d/moved"
sed '1s/^# rlaif gemm choices: .*|\( openblas .*\)$/# rlaif gemm choices: Other CPU 9000 |\1/' \
  "$d/full/gemm_choices.txt" >"$d/moved/gemm_choices.txt"
sft cache-moved --set run.out_dir=moved --set sft.steps=1 || fail "moved: $(cat "$d/out")"
grep -q 'gemm: moved/gemm_choices.txt was written for another machine or kernel revision ("Other CPU 9000 | openblas .*"; this run: ".* | openblas .*"); timing afresh' "$d/out" ||
  fail "no warning naming both keys: $(cat "$d/out")"
grep -q "gemm: choices from no record, no cache, [1-9][0-9]* class(es) timed" "$d/out" ||
  fail "the other machine's record was not timed afresh: $(cat "$d/out")"

echo "== d. fixed and forced"
sft cache --set run.out_dir=fixed --set sft.steps=1 --set model.gemm=fixed || fail "$(cat "$d/out")"
grep -q "gemm: the fixed rule (model.gemm fixed)" "$d/out" || fail "fixed: $(cat "$d/out")"
[ -f "$d/fixed/gemm_choices.txt" ] && fail "fixed wrote a record"
sft cache --set run.out_dir=forced --set sft.steps=1 --set model.gemm=sgemm || fail "$(cat "$d/out")"
grep -q "gemm: sgemm wherever it applies" "$d/out" || fail "forced: $(cat "$d/out")"
echo "ok"
