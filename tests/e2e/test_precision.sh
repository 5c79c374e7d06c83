#!/bin/sh
# model.precision on a tiny model (`rlaif sft`, about 30 s):
#  a. bf16 trains: per-step losses track an fp32 run of the same job within
#     the bound of tests/reference/test_bf16.py (2u (4L + 3) = 0.086 for L = 2,
#     u = 2^-8), and the log names the choice; auto logs what it chose;
#  b. checkpoints stay fp32 and interchangeable: a bf16 run stopped at step 7
#     resumes in fp32 to the end, an fp32 run stopped at 7 resumes in bf16;
#     every checkpoint's /params are float32 and the resumed runs end within
#     the same tolerance of the uninterrupted fp32 run.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
check="$top_srcdir/tests/e2e/check_sft.py"
e2e_tmpdir prec
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
sft() { (cd "$d" && timeout 120 "$RLAIF" sft job.ini "$@") </dev/null >"$d/out" 2>&1; }
tol=0.086

echo "== a. bf16 tracks fp32"
sft --set run.out_dir=fp32 || fail "fp32: $(cat "$d/out")"
grep -q "precision: fp32" "$d/out" || fail "no precision line: $(cat "$d/out")"
sft --set run.out_dir=bf16 --set model.precision=bf16 || fail "bf16: $(cat "$d/out")"
grep -q "precision: bf16" "$d/out" || fail "bf16 not logged: $(cat "$d/out")"
"$py" "$check" losses "$d/fp32" "$d/bf16" $tol || fail "bf16 losses do not track fp32"
"$py" "$check" learned "$d/bf16" 0.9 || fail "bf16 did not learn"
sft --set run.out_dir=auto --set model.precision=auto || fail "auto: $(cat "$d/out")"
grep -q "precision: \(fp32\|bf16\) (model.precision auto: the CPU has" "$d/out" ||
  fail "auto's choice not logged: $(cat "$d/out")"

echo "== b. checkpoints interchangeable"
for pair in "bf16 fp32" "fp32 bf16"; do
  set -- $pair
  out="from_$1"
  sft --set run.out_dir=$out --set model.precision=$1 --stop-after 7
  [ $? -eq 75 ] || fail "$1 run did not stop with 75: $(cat "$d/out")"
  sft --set run.out_dir=$out --set model.precision=$2 || fail "$1 -> $2 resume: $(cat "$d/out")"
  grep -q "resum" "$d/out" || fail "$1 -> $2 did not resume: $(cat "$d/out")"
  "$py" - "$d/$out" <<'PYEOF' || fail "$1 -> $2: checkpoints not float32"
import glob, sys
import h5py
files = sorted(glob.glob(sys.argv[1] + "/ckpt/sft-*.h5"))
assert len(files) >= 2, files
for p in files:
    with h5py.File(p, "r") as f:
        kinds = set()
        f["params"].visititems(lambda n, o: kinds.add(str(o.dtype)) if isinstance(o, h5py.Dataset) else None)
        assert kinds == {"float32"}, (p, kinds)
print("%d checkpoints, /params float32" % len(files))
PYEOF
  "$py" "$check" losses "$d/fp32" "$d/$out" $tol || fail "$1 -> $2 losses"
  [ -f "$d/$out/$final" ] || fail "$1 -> $2: no $final"
done
echo "PASS"
