#!/bin/sh
# Files written by the C library under MPI, read by h5py and the tools:
#  - preferences.h5 from 4 ranks with uneven and empty ranks (tests/e2e/check_prefs.py)
#  - `rlaif prefs` ingest / export / merge / info, its errors and exit codes
#  - tools/user/rlaif-analyze on those files and on metrics.h5 from the C writer
#  - a checkpoint from 3 ranks checked by h5py (tests/e2e/check_ckpt.py)
set -u
helper="${top_builddir:-.}/tests/e2e/storage_helper"
src="${top_srcdir:-.}"
py="${PYTHON_REF:-/usr/bin/python3}"
mpi="${MPIEXEC:-mpiexec}"
rlaif="${RLAIF:-${top_builddir:-.}/src/rlaif}"
d=$(mktemp -d /tmp/rlaif-storage-tools-XXXXXX)
trap 'rm -rf "$d"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$mpi" -n 4 --oversubscribe "$helper" prefs-write "$d/p.h5" || fail "prefs-write on 4 ranks"
"$py" "$src/tests/e2e/check_prefs.py" "$d/p.h5" 4 || fail "h5py check (4 ranks)"
"$mpi" -n 3 --oversubscribe "$helper" prefs-write "$d/p3.h5" || fail "prefs-write on 3 ranks"
"$py" "$src/tests/e2e/check_prefs.py" "$d/p3.h5" 3 || fail "h5py check (3 ranks)"

# The storage README's h5py example, as written there, on a file from 4 ranks.
mkdir -p "$d/readme/out" && cp "$d/p.h5" "$d/readme/out/preferences.h5"
sed -n '/^Reading it with h5py:/,/^```$/p' "$src/src/storage/README.md" | sed '1,3d;$d' >"$d/readme/example.py"
[ -s "$d/readme/example.py" ] || fail "no h5py example in src/storage/README.md"
ex=$(cd "$d/readme" && "$py" example.py) || fail "README h5py example: $ex"
echo "$ex"
echo "$ex" | grep -q "labelled, template 0 = 'Compare {a} and {b}.'" || fail "README example output: $ex"

# JSONL -> HDF5 -> JSONL, on 2 ranks and on 1.
cat >"$d/h.jsonl" <<'J'
{"prompt":"Explain rain.","chosen":"Water condenses and falls.","rejected":"Clouds cry.","id":11}

{"prompt":"Say hi in French","chosen":"Bonjour \u00e0 tous","rejected":"Hello","id":12}
J
"$mpi" -n 2 --oversubscribe "$rlaif" prefs ingest "$d/h.jsonl" "$d/h.h5" || fail "ingest"
"$rlaif" prefs export "$d/h.h5" "$d/h.out.jsonl" || fail "export"
grep -q '"prompt":"Say hi in French","chosen":"Bonjour à tous","rejected":"Hello","id":12' "$d/h.out.jsonl" || fail "export content: $(cat "$d/h.out.jsonl")"
[ "$(wc -l <"$d/h.out.jsonl")" -eq 2 ] || fail "export lines"
# --tokenize with the job's tokenizer (default: byte-level, ids = bytes).
"$mpi" -n 2 --oversubscribe "$rlaif" prefs ingest "$d/h.jsonl" "$d/ht.h5" --tokenize || fail "ingest --tokenize"
"$py" - "$d/ht.h5" <<'P' || fail "tokens written at ingest"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
for g in ("prompts", "responses"):
    b, t = f[g]["bytes"][:].tobytes(), f[g]["tokens"][:]
    for i in range(len(f[g]["offset"])):
        o, n = f[g]["offset"][i], f[g]["length"][i]
        to, tn = f[g]["tok_offset"][i], f[g]["tok_length"][i]
        assert list(t[to:to + tn]) == list(b[o:o + n]), (g, i)
assert f["responses"]["tok_length"][2] == len("Bonjour \u00e0 tous".encode())
P
"$mpi" -n 3 --oversubscribe "$rlaif" prefs merge "$d/m.h5" "$d/h.h5" "$d/p.h5" "$d/h.h5" || fail "merge"
info=$("$rlaif" prefs info "$d/m.h5") || fail "info"
echo "$info"
echo "$info" | grep -q "19 prompts, 38 responses, 17 pairs" || fail "merge counts: $info"
"$py" - "$d/m.h5" <<'P' || fail "h5py merged file"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
ids = list(f["pairs"]["pair_id"])
assert len(ids) == len(set(ids)) == 17, ids
assert f.attrs["merged_from"].decode().count(",") == 2
P

# Errors: exit 64 naming file:line:field, 66 for a missing input, nothing left behind.
printf '{"prompt":"a","chosen":"b","rejected":"c"}\n{"prompt":"a","chosen":5,"rejected":"c"}\n' >"$d/bad.jsonl"
err=$("$rlaif" prefs ingest "$d/bad.jsonl" "$d/bad.h5" 2>&1); rc=$?
[ $rc -eq 64 ] || fail "malformed JSONL exit $rc"
echo "$err" | grep -q 'bad.jsonl:2: field "chosen" is not a string' || fail "message: $err"
[ ! -e "$d/bad.h5" ] && [ ! -e "$d/bad.h5.tmp" ] || fail "a half-written file survived"
"$rlaif" prefs ingest "$d/none.jsonl" "$d/x.h5" >/dev/null 2>&1; rc=$?
[ $rc -eq 66 ] || fail "missing input exit $rc"
"$rlaif" prefs frobnicate >/dev/null 2>&1; rc=$?
[ $rc -eq 64 ] || fail "unknown subcommand exit $rc"

# The analysis tool on the C-written files.
"$py" "$src/tools/user/rlaif-analyze" prefs "$d/p.h5" --out "$d/plots" >"$d/audit.txt" || fail "analyze prefs"
grep -q "failures by reason: parse 4" "$d/audit.txt" || fail "audit: $(cat "$d/audit.txt")"
[ -s "$d/plots/prefs_audit.png" ] || fail "no audit plot"
"$mpi" -n 2 --oversubscribe "$helper" metrics-write "$d/metrics.h5" "$d/progress.jsonl" || fail "metrics-write"
[ "$(wc -l <"$d/progress.jsonl")" -eq 40 ] || fail "progress.jsonl lines"
"$py" "$src/tools/user/rlaif-analyze" metrics "$d/metrics.h5" --out "$d/plots" || fail "analyze metrics"
# A merge that fails midway (the second input is not a preferences file)
# leaves neither the output nor its .tmp.
"$mpi" -n 2 --oversubscribe "$rlaif" prefs merge "$d/bad-m.h5" "$d/h.h5" "$d/metrics.h5" >"$d/merge.err" 2>&1 && fail "merge of a metrics file succeeded"
grep -q "metrics.h5 is a metrics file, not preferences" "$d/merge.err" || fail "merge error: $(cat "$d/merge.err")"
[ ! -e "$d/bad-m.h5" ] && [ ! -e "$d/bad-m.h5.tmp" ] || fail "a half-written merge survived"
[ -s "$d/plots/ppo.png" ] && [ -s "$d/plots/sft.png" ] || fail "no metrics plots"

# A checkpoint from 3 ranks, checked by h5py with independently computed checksums.
"$mpi" -n 3 --oversubscribe "$helper" ckpt-once "$d/ckpt" 100003 7 || fail "ckpt-once"
"$py" "$src/tests/e2e/check_ckpt.py" "$d/ckpt/loop-00000007.h5" 7 || fail "h5py checkpoint check"
[ "$(cat "$d/ckpt/LATEST")" = "loop-00000007.h5" ] || fail "LATEST"
"$py" "$src/tools/user/rlaif-analyze" ckpt "$d/ckpt/loop-00000007.h5" >"$d/ck.txt" || fail "analyze ckpt: $(cat "$d/ck.txt")"
grep -q "checksums ok" "$d/ck.txt" && grep -q "data_cursor=49" "$d/ck.txt" || fail "analyze ckpt: $(cat "$d/ck.txt")"
# a damaged tensor is reported (exit 1)
"$py" - "$d/ckpt/loop-00000007.h5" <<'P'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    d = f["optim/v"][list(f["optim/v"])[0]]
    d[0] = d[0] + 1.0
P
"$py" "$src/tools/user/rlaif-analyze" ckpt "$d/ckpt/loop-00000007.h5" >"$d/ck.txt" && fail "damage not reported"
grep -q "CHECKSUM MISMATCH: /optim/v/" "$d/ck.txt" || fail "analyze ckpt damage: $(cat "$d/ck.txt")"

echo PASS
