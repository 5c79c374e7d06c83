#!/bin/sh
# The real `rlaif collect` in a memory cgroup (as Slurm's task/cgroup puts a
# job step; v1 or v2, whichever this machine lets root create), limit 400 MB:
#  a. max_new_tokens = 8: the collect finishes (the limit alone is no error);
#  b. max_new_tokens = 2000: its generation batch's KV cache (64 rows x ~2019
#     slots x 4 layers x 256 wide, 1.06 GB, allocated and zeroed whole) does
#     not fit: one ERROR line naming the cache's size and the cgroup's limit,
#     exit 64, where without the check (rlaif_kv_cache_create) the kernel's
#     OOM killer ends the process (exit 137, no message).
# Skipped when no memory cgroup can be created here (not root, or a cgroup v2
# without the memory controller delegated).
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
e2e_tmpdir memlimit
cg=""
cleanup() {
  if [ -n "$cg" ]; then
    # the cgroup empties once its processes have exited
    for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$cg" 2>/dev/null && break; sleep 0.5; done
  fi
  rm -rf "$d"
}
trap cleanup EXIT
export OMP_NUM_THREADS=1
limit=$((400 * 1024 * 1024))

# this process's memory cgroup: a child folder with a limit, or skip
v2=$(sed -n 's/^0:://p' /proc/self/cgroup)
v1=$(sed -n 's/^[0-9]*:\([^:]*,\)*memory\(,[^:]*\)*:\(.*\)$/\3/p' /proc/self/cgroup)
name="rlaif-memlimit-$$"
if [ -n "$v1" ] && [ -d "/sys/fs/cgroup/memory$v1" ] && mkdir "/sys/fs/cgroup/memory${v1%/}/$name" 2>/dev/null; then
  cg="/sys/fs/cgroup/memory${v1%/}/$name"
  echo "$limit" >"$cg/memory.limit_in_bytes" 2>/dev/null || { echo "SKIP: cannot set $cg's limit"; exit 77; }
elif [ -n "$v2" ] && mkdir "/sys/fs/cgroup${v2%/}/$name" 2>/dev/null; then
  cg="/sys/fs/cgroup${v2%/}/$name"
  echo "$limit" >"$cg/memory.max" 2>/dev/null || { echo "SKIP: no memory controller in $cg"; exit 77; }
else
  echo "SKIP: cannot create a memory cgroup here"
  exit 77
fi
echo "memory cgroup $cg, limit $limit bytes"

cat >"$d/job.ini" <<EOF
[run]
seed = 5
log_every = 1000
out_dir = $d/out
[model]
n_layer = 4
n_embd = 256
n_head = 4
max_seq_len = 2048
[data]
task = arithmetic
n_prompts = 16
max_operand = 9
[sft]
steps = 2
batch_size = 4
lr = 3e-3
warmup_steps = 0
eval_prompts = 0
[collect]
responses_per_prompt = 4
pairs_per_prompt = 2
max_new_tokens = 8
[checkpoint]
every = 0
EOF
"$RLAIF" sft "$d/job.ini" >"$d/sft.out" 2>&1 || { cat "$d/sft.out"; fail "sft exited $?"; }
cp -r "$d/out" "$d/out2" # b's job: the same SFT policy, no collect yet

# run_limited ARGS...: $RLAIF in the cgroup; its exit status
run_limited() {
  sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$RLAIF" "$@"
}

# a. a cache that fits
run_limited collect "$d/job.ini" >"$d/a.out" 2>&1
rc=$?
[ $rc = 0 ] || { tail -20 "$d/a.out"; fail "a: collect with 8 new tokens under the limit exited $rc"; }

# b. a cache that cannot fit
run_limited collect "$d/job.ini" --set collect.max_new_tokens=2000 --set run.out_dir="$d/out2" \
  >"$d/b.out" 2>&1
rc=$?
tail -3 "$d/b.out"
[ $rc = 64 ] || fail "b: exited $rc, not 64 (137: killed by the OOM killer)"
grep -q '^ERROR.*KV cache of 1\.0[0-9]* GB (64 rows x [0-9]* slots x 4 layers) does not fit' "$d/b.out" ||
  fail "b: no ERROR line naming the KV cache's size"
grep -q 'cgroup memory\.\(limit_in_bytes\|max\) 0\.4[0-9]* GB' "$d/b.out" ||
  fail "b: the message does not name the cgroup's limit"
echo "PASS"
