#!/bin/sh
# `rlaif run`: the job's phases in order, each skipped when complete.
#  a. run.phases = sft,collect,rm,dpo,eval on 2 colocated ranks: every phase
#     runs in order and leaves its output (the final sft/rm/dpo checkpoints,
#     preferences.h5 from collect, eval.h5);
#  b. the same command again: every phase says it is complete, no output file
#     is rewritten (mtimes and sizes unchanged);
#  c. the dpo checkpoints removed: the rerun skips sft, collect and rm, trains
#     dpo again and evaluates the new policy;
#  d. bad lists (an unbuilt phase, a tool that is not a phase, an empty list)
#     and arguments: exit 64 with one ERROR line before any phase starts (no
#     output folder is created).
# `rlaif run` asks each phase's done() (the registry) before entering it, and
# `rlaif status` prints the same answers; eval picks the newest policy:
#  e. `rlaif status` of a fresh out_dir: every phase "not started", no
#     folder made; of the finished job: every phase "done";
#  f. a phase whose inputs were removed after it completed is still skipped:
#     with preferences.h5 moved away, `run.phases = rm, dpo` says "run: rm
#     already complete, skipped" (and dpo) and exits 0 without entering
#     them (no line of the phases' own; entered, they exit 66 without it);
#  g. a partial phase is resumed: dpo stopped at step 5 (`rlaif dpo
#     --stop-after 5`) is "partial" in `rlaif status`; `rlaif run` skips
#     sft, collect and rm through done(), resumes dpo from step 5 and
#     evaluates the new policy; then every phase is "done";
#  h. eval.policy = "" takes the finished policy saved last, not the phase
#     ranked first: sft continued to 310 steps after dpo finished, and the
#     out_dir copied (cp -r renews every mtime; dpo's file is then touched
#     to be the newest by mtime): eval picks sft-00000310.h5 by its /state
#     saved_at and says why; eval.policy = dpo still picks dpo.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
e2e_tmpdir run
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

cat >"$d/job.ini" <<'EOT'
[run]
seed = 11
phases = sft, collect, rm, dpo, eval
log_every = 100000
[model]
n_layer = 1
n_embd = 32
n_head = 2
max_seq_len = 48
[data]
task = arithmetic
n_prompts = 200
max_operand = 9
[sft]
steps = 300
batch_size = 16
lr = 3e-3
warmup_steps = 2
eval_prompts = 0
[collect]
responses_per_prompt = 4
max_new_tokens = 6
[rm]
steps = 20
batch_size = 8
[dpo]
steps = 20
batch_size = 8
[eval]
n_prompts = 40
max_new_tokens = 6
[checkpoint]
every = 0
keep = 1
EOT
job="$d/job.ini"
out="$d/out"
run() { "$mpi" -n 2 "$RLAIF" run "$job" --set run.out_dir="$out" "$@"; }

# a. the whole list
run >"$d/a.log" 2>&1
rc=$?
[ "$rc" = 0 ] || { tail -30 "$d/a.log"; fail "a: rlaif run exited $rc"; }
order=$(sed -n 's/.*run: phase [0-9]*\/5: \([a-z-]*\)$/\1/p' "$d/a.log" | tr '\n' ' ')
[ "$order" = "sft collect rm dpo eval " ] || fail "a: phases ran as '$order'"
grep -q 'run: 5 phases done' "$d/a.log" || fail "a: no closing line"
for f in ckpt/sft-00000300.h5 preferences.h5 ckpt/rm-00000020.h5 ckpt/dpo-00000020.h5 eval.h5; do
  [ -s "$out/$f" ] || fail "a: $f missing after run"
done
grep -q '^.*eval: .*win rate' "$d/a.log" || grep -qi 'win rate' "$d/a.log" || fail "a: no win rate line"

# b. again: everything complete, nothing rewritten
# (metrics.h5 is left out: each phase opens it to declare its columns, which
# touches its mtime without adding rows)
snap() { (cd "$out" && find . -name '*.h5' ! -name metrics.h5 -exec stat -c '%n %s %Y' {} + | sort); }
snap >"$d/before"
sleep 1.1
run >"$d/b.log" 2>&1
rc=$?
[ "$rc" = 0 ] || { tail -30 "$d/b.log"; fail "b: rerun exited $rc"; }
n=$(grep -ci 'already complete\|skipping' "$d/b.log")
[ "$n" -ge 5 ] || { grep -i 'complete\|skip' "$d/b.log"; fail "b: $n of 5 phases said they were complete"; }
snap >"$d/after"
cmp -s "$d/before" "$d/after" || { diff "$d/before" "$d/after"; fail "b: a rerun of a complete job rewrote files"; }

# c. dpo's output gone: only dpo (and the eval of its new model) run again
rm -f "$out"/ckpt/dpo-* "$out"/ckpt/dpo_ref_logps.h5
run >"$d/c.log" 2>&1
rc=$?
[ "$rc" = 0 ] || { tail -30 "$d/c.log"; fail "c: rerun exited $rc"; }
for p in sft collect rm; do
  sed -n "/run: phase [0-9]\/5: $p\$/,/run: phase [0-9]\/5: /p" "$d/c.log" | grep -qi 'complete\|skipping' ||
    fail "c: $p was not skipped"
done
[ -s "$out/ckpt/dpo-00000020.h5" ] || fail "c: dpo did not train again"
grep -q 'run: 5 phases done' "$d/c.log" || fail "c: no closing line"

# d. bad lists and arguments: one ERROR line, exit 64, nothing started
bad() {
  want=$1 text=$2; shift 2
  rm -rf "$d/none"
  "$mpi" -n 1 "$RLAIF" run "$job" --set run.out_dir="$d/none" "$@" >"$d/d.log" 2>&1
  rc=$?
  [ "$rc" = "$want" ] || { cat "$d/d.log"; fail "d ($*): exit $rc, want $want"; }
  grep -q "$text" "$d/d.log" || { cat "$d/d.log"; fail "d ($*): no '$text'"; }
  [ "$(grep -c '^ERROR' "$d/d.log")" = 1 ] || { cat "$d/d.log"; fail "d ($*): not one ERROR line"; }
  [ ! -e "$d/none" ] || fail "d ($*): a phase started before the list was checked"
}
bad 64 "reinforce: the loo baseline compares the samples of a prompt" --set run.phases=sft,reinforce \
  --set ppo.samples_per_prompt=1
bad 64 "'judge' is not a phase" --set run.phases=sft,judge
bad 64 "run.phases is empty" --set "run.phases=,"
bad 64 "unexpected argument '--stop-after'" --stop-after 3

# rl COMMAND OUT [ARGS]: a command of the job on 2 ranks
rl() { cmd=$1 o=$2; shift 2; "$mpi" -n 2 "$RLAIF" "$cmd" "$job" --set run.out_dir="$o" "$@"; }
# status OUT PHASE STATE: the phase's line of `rlaif status` says STATE
state() {
  "$RLAIF" status "$job" --set run.out_dir="$1" >"$d/status" 2>&1 || fail "status: $(cat "$d/status")"
  grep -q "^  $2 *$3  " "$d/status" || fail "status: $2 is not '$3': $(cat "$d/status")"
}
skipped_by_run() { # LOG PHASE: run skipped it through done(), without entering it
  grep -q "run: $2 already complete, skipped (" "$1" || fail "$2 not skipped by run: $(cat "$1")"
  ! grep -q "] $2: " "$1" || fail "run entered $2: $(grep "] $2: " "$1")"
}

# e. status of a fresh folder and of the finished job
for p in sft collect rm dpo eval; do state "$d/fresh" $p "not started"; done
[ ! -e "$d/fresh" ] || fail "e: status made $d/fresh"
for p in sft collect rm dpo eval; do state "$out" $p done; done
cat "$d/status"

# f. inputs removed after the phase completed: skipped, not entered
mv "$out/preferences.h5" "$d/prefs.h5"
rl run "$out" --set run.phases=rm,dpo >"$d/f.log" 2>&1
rc=$?
[ $rc = 0 ] || { tail -30 "$d/f.log"; fail "f: rm, dpo without preferences.h5 exited $rc"; }
skipped_by_run "$d/f.log" rm
skipped_by_run "$d/f.log" dpo
grep "run: .* skipped" "$d/f.log"
mv "$d/prefs.h5" "$out/preferences.h5"

# g. a partial phase is resumed
rm -f "$out"/ckpt/dpo-* "$out"/ckpt/dpo_ref_logps.h5
rl dpo "$out" --stop-after 5 >"$d/g0.log" 2>&1
rc=$?
[ $rc = 75 ] || { tail -20 "$d/g0.log"; fail "g: dpo --stop-after 5 exited $rc"; }
state "$out" dpo partial
grep "  dpo " "$d/status"
grep -q "dpo-00000005.h5, step 5 of 20" "$d/status" || fail "g: $(cat "$d/status")"
rl run "$out" >"$d/g.log" 2>&1 || { tail -30 "$d/g.log"; fail "g: rerun failed"; }
for p in sft collect rm; do skipped_by_run "$d/g.log" $p; done
grep -q "dpo: resuming from .*dpo-00000005.h5 at step 5/20" "$d/g.log" ||
  fail "g: dpo not resumed from step 5: $(grep 'dpo:' "$d/g.log")"
grep -q "eval: eval.policy = '': .*/dpo-00000020.h5 (" "$d/g.log" ||
  fail "g: eval did not take the new dpo: $(grep 'eval' "$d/g.log")"
for p in sft collect rm dpo eval; do state "$out" $p done; done

# h. eval picks the policy saved last, also in a copy with other mtimes
rl sft "$out" --set sft.steps=310 >"$d/h0.log" 2>&1 || { tail -20 "$d/h0.log"; fail "h: sft to 310"; }
cp -r "$out" "$d/copy"
sleep 1.1
touch "$d/copy/ckpt/dpo-00000020.h5" # the newest by mtime
rl eval "$d/copy" >"$d/h.log" 2>&1 || { tail -20 "$d/h.log"; fail "h: eval"; }
grep "eval: eval.policy" "$d/h.log"
grep -q "eval: eval.policy = '': $d/copy/ckpt/sft-00000310.h5 (the finished policy saved last, of: dpo saved .*, sft saved " \
  "$d/h.log" || fail "h: eval did not pick sft-00000310: $(grep 'eval' "$d/h.log")"
rl eval "$d/copy" --set eval.policy=dpo >"$d/h2.log" 2>&1 || { tail -20 "$d/h2.log"; fail "h: eval dpo"; }
grep -q "eval: eval.policy = 'dpo': $d/copy/ckpt/dpo-00000020.h5 (the newest finished dpo checkpoint)" \
  "$d/h2.log" || fail "h: eval.policy = dpo: $(grep 'eval' "$d/h2.log")"
echo "test_run: ok"
