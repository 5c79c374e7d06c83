#!/bin/sh
# The demo's fully offline RLAIF variant, shortened (tools/dev/demo-local-judge):
# a short SFT policy's answers are paired and labelled by the builtin judge,
# `rlaif judge --demos` turns them into demonstrations, `rlaif sft` trains a
# small judge model on them, and the trained judge (judge.backend = local)
# labels held-out pairs and the pairs of a fresh collect. It fails when
#   - on the held-out pairs (questions never taught) the trained judge
#     decides fewer than 40% of the pairs the oracle (the builtin judge
#     without noise: the truth) decides, or agrees with the oracle on fewer
#     than BOUND = 75% of the pairs both decide. A judge blind to the texts
#     fails: a constant score ties every pair (0% decided), a random one
#     agrees on about half (0.75 is 4 standard deviations above 0.5 on the
#     ~60 pairs here). Measured (2-core Intel VM, 2026-12-02, 323 s in all):
#     72 of 124 decided (58%), 97.2% of them agreeing; on the 600 collected
#     pairs 339 decided, 96.5% agreeing. Or
#   - any collected pair was labelled by anything but the local model, or a
#     collected pair has no label.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
: "${top_builddir:?set by make check}"
e2e_tmpdir local-judge
export OMP_NUM_THREADS=1
job="$top_srcdir/jobs/demo.ini"
steps=${RLAIF_LJ_TEST_STEPS:-400}
BOUND=${RLAIF_LJ_TEST_BOUND:-0.75}
start=$(date +%s)

echo "== a short SFT policy (300 steps): its answers carry every flaw the demo's data has"
(cd "$d" && timeout 900 "$mpi" -n 2 "$RLAIF" sft "$job" --set run.out_dir="$d/policy" \
    --set sft.steps=300 --set sft.eval_prompts=0 --set checkpoint.every=0) </dev/null \
    >"$d/policy.log" 2>&1 || fail "policy sft: $(tail -5 "$d/policy.log")"
policy="$d/policy/ckpt/sft-00000300.h5"
[ -f "$policy" ] || fail "no policy checkpoint"

echo "== the offline variant: judge sft $steps steps, held-out agreement, a collect on its labels"
RLAIF_BUILD_DIR="$top_builddir" RLAIF_LJ_STEPS="$steps" RLAIF_LJ_PHASES=collect RLAIF_LJ_HELDOUT=5 \
    RLAIF_LJ_SET="--set data.n_prompts=300" \
    timeout 3000 sh "$top_srcdir/tools/dev/demo-local-judge" "$policy" "$d/lj" </dev/null \
    >"$d/lj.log" 2>&1 || fail "demo-local-judge: $(tail -20 "$d/lj.log")"
grep -E '^(==|--)|agreement|decided|judges' "$d/lj.log"
echo "wall time $(($(date +%s) - start)) s"

"$py" - "$d/lj" "$BOUND" <<'EOF' || fail "see above"
import json, os, sys
out, bound = sys.argv[1], float(sys.argv[2])
ho = json.load(open(os.path.join(out, "agree-heldout.json")))
o = ho["oracle"]
share = o["both_decided"] / max(1, o["pairs"])
print(f"held-out: the judge decided {o['both_decided']} of the {o['pairs']} pairs the oracle "
      f"decided ({share:.2f}, bound 0.40) and agreed on {o['rate_decided']:.3f} of them "
      f"(bound {bound})")
ok = o["pairs"] >= 30 and share >= 0.40 and o["rate_decided"] >= bound
who = json.loads(open(os.path.join(out, "judges.json")).read())
names = who["judges"]
local = [n for n in names if n.startswith("local:")]
labelled = sum(who["by_judge"].values())
print(f"collected pairs {who['pairs']}, labelled {labelled}, by {who['by_judge']}")
if len(names) != 1 or len(local) != 1:
    print(f"the collect's judges are {names}: expected the local model alone")
    ok = False
# A pair may stay unlabelled only because the small judge's own reply held
# no readable "Score: N" (status parse), and rarely: a 400-step judge left
# 0 of 600 pairs so here and 3 of 600 on a CI machine (which pairs moves with
# the product paths the machine's calibration picks: rounding differs). Any
# other reason (transport, other) means a call was lost.
bad = {k: v for k, v in who["unlabelled"].items() if k != "parse"}
unread = who["unlabelled"].get("parse", 0)
print(f"unlabelled: {who['unlabelled']} (allowed: parse, at most 2% of the pairs)")
if set(who["by_judge"]) != set(local) or who["pairs"] < 50:
    print("a collected pair was labelled by something else")
    ok = False
if bad or unread > 0.02 * who["pairs"] or labelled + unread != who["pairs"]:
    print("a collected pair was left unlabelled for another reason, or too many")
    ok = False
sys.exit(0 if ok else 1)
EOF
echo "PASS"
