#!/bin/sh
# OPT and Llama through the pipeline (~3 min): tests/reference/hf_fixture.py
# writes a tiny random OPT (post-LN, project_in/out: the LM and score heads are
# narrower than the model) and a tiny random Llama with grouped-query
# attention (6 query heads on 2 kv heads, llama3 RoPE) as Hugging Face
# folders with a byte-level BPE tokenizer.json; tools/user/hf-to-rlaif imports
# each (with /tokenizer); then on 4 ranks: sft (6 steps) from the import,
# collect (the SFT policy's answers judged by tools/dev/mock-judge on
# loopback), rm (6 steps) and ppo (2 iterations) from the SFT model. Every
# phase leaves its checkpoint, its metrics are finite, the checkpoints keep the
# architecture and the import's Hugging Face files (/hf_files);
# tools/user/rlaif-to-hf exports the final policy from those files alone and
# hf-to-rlaif reads the export back bit-exactly.
# Skipped (77) while the engine loads neither architecture.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
: "${top_builddir:?set by make check}"
tools="$top_srcdir/tools/user"
d=$(mktemp -d /tmp/rlaif-arch-XXXXXX)
mock="$top_builddir/tools/dev/mock_judge"
mpid=""
trap 'kill $mpid 2>/dev/null; rm -rf "$d"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 RLAIF_TEST_JUDGE_KEY=test-key

"$mock" --port-file "$d/mock.port" --idle-exit 300 --latency 0.002 >"$d/mock.log" 2>&1 &
mpid=$!
i=0
while [ ! -s "$d/mock.port" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
port=$(cat "$d/mock.port") || fail "the mock judge did not start: $(cat "$d/mock.log")"

cat >"$d/job.ini" <<EOF
[run]
seed = 5
log_every = 1
[data]
task = arithmetic
n_prompts = 40
max_operand = 9
[sft]
steps = 6
batch_size = 8
eval_prompts = 0
[collect]
responses_per_prompt = 2
pairs_per_prompt = 1
max_new_tokens = 6
[rm]
steps = 6
batch_size = 8
lr = 1e-3
[ppo]
steps = 2
batch_size = 8
samples_per_prompt = 2
epochs = 1
minibatches = 2
micro_batch = 4
max_new_tokens = 6
lr = 1e-4
[judge]
backend = openai
model = mock-judge
base_url = http://127.0.0.1:$port/v1
api_key_env = RLAIF_TEST_JUDGE_KEY
timeout = 10
[checkpoint]
every = 0
keep = 1
EOF

# finite DIR TABLE...: every column of those metrics.h5 tables has rows, all finite
finite() {
  "$py" - "$@" <<'EOF'
import sys
import h5py
import numpy as np
with h5py.File(sys.argv[1] + "/metrics.h5", "r") as f:
    for name in sys.argv[2:]:
        t = f[name][...]
        bad = [c for c in t.dtype.names if t.dtype[c].kind == "f" and not np.all(np.isfinite(t[c]))]
        if len(t) == 0 or bad:
            sys.exit("%s/metrics.h5 /%s: %d rows, not finite: %s" % (sys.argv[1], name, len(t), bad))
        print("/%s: %d rows finite" % (name, len(t)))
EOF
}
# arch CKPT: the checkpoint's /config arch
arch() { "$py" -c 'import h5py,sys; print(h5py.File(sys.argv[1],"r")["config"].attrs["arch"].decode())' "$1"; }
newest() { ls "$d/$1"/ckpt/"$2"-*.h5 2>/dev/null | tail -1; }

ran=0
for m in opt-proj-postln llama-gqa; do
  echo "== $m"
  "$py" "$top_srcdir/tests/reference/hf_fixture.py" "$d/hf-$m" "$m" --seed 3 --tokenizer-vocab \
    --set max_position_embeddings=64 || fail "$m: fixture"
  "$py" "$tools/hf-to-rlaif" "$d/hf-$m" -o "$d/$m.h5" --max-seq-len 64 --rlaif "$RLAIF" \
    >"$d/out" 2>&1 || fail "$m: import: $(cat "$d/out")"
  grep -q "no /tokenizer" "$d/out" && fail "$m: the import has no /tokenizer: $(cat "$d/out")"
  want=$(arch "$d/$m.h5")
  if ! "$RLAIF" tokenize --checkpoint "$d/$m.h5" "1 + 2 = 3" >"$d/out" 2>&1; then
    fail "$m: rlaif reads the imported tokenizer: $(cat "$d/out")"
  fi
  if ! "$top_builddir/tests/reference/engine_ref" load "$d/$m.h5" >"$d/out" 2>&1; then
    echo "SKIP $m: the engine does not load $want yet: $(cat "$d/out")"
    continue
  fi
  ran=$((ran + 1))
  o="$d/run-$m"
  r() { (cd "$d" && timeout 300 "$mpi" -n 4 --oversubscribe "$RLAIF" "$@" --set run.out_dir="$o") \
    </dev/null >"$d/out" 2>&1; }
  r sft job.ini --set model.init_from="$d/$m.h5" || fail "$m: sft: $(cat "$d/out")"
  sft=$(newest "run-$m" sft)
  [ -n "$sft" ] || fail "$m: no sft checkpoint"
  r collect job.ini --set model.init_from="$sft" || fail "$m: collect: $(cat "$d/out")"
  [ -s "$o/preferences.h5" ] || fail "$m: no preferences.h5"
  now=$(mock_stat "$port" good)
  [ "$now" -gt "${judged:-0}" ] || fail "$m: collect asked the mock judge nothing"
  echo "collect: the mock judge answered $((now - ${judged:-0})) requests"
  judged=$now
  r rm job.ini --set model.init_from="$sft" || fail "$m: rm: $(cat "$d/out")"
  rm_ck=$(newest "run-$m" rm)
  [ -n "$rm_ck" ] || fail "$m: no rm checkpoint"
  r ppo job.ini --set model.init_from="$sft" --set ppo.reward_model="$rm_ck" ||
    fail "$m: ppo: $(cat "$d/out")"
  ppo=$(newest "run-$m" ppo)
  [ -n "$ppo" ] || fail "$m: no ppo checkpoint"
  finite "$o" sft rm ppo || fail "$m: metrics"
  for c in "$sft" "$rm_ck" "$ppo"; do
    [ "$(arch "$c")" = "$want" ] || fail "$m: $c has arch $(arch "$c"), not $want"
  done
  # every checkpoint keeps the import's Hugging Face files (/hf_files), so
  # the export needs no --tokenizer-from
  "$py" - "$d/$m.h5" "$sft" "$rm_ck" "$ppo" <<'EOF' || fail "$m: /hf_files not carried along"
import sys
import h5py
def files(p):
    g = h5py.File(p, "r").get("hf_files")
    return {k: g[k][...].tobytes() for k in g} if g is not None else {}
want = files(sys.argv[1])
assert "tokenizer.json" in want, sorted(want)
for p in sys.argv[2:]:
    assert files(p) == want, (p, sorted(files(p)), sorted(want))
print("/hf_files (%d files) carried from the import to sft, rm and ppo" % len(want))
EOF
  "$py" "$tools/rlaif-to-hf" "$ppo" -o "$d/export-$m" >"$d/out" 2>&1 ||
    fail "$m: export: $(cat "$d/out")"
  grep -q WARNING "$d/out" && fail "$m: export warned: $(cat "$d/out")"
  for f in config.json model.safetensors tokenizer.json tokenizer_config.json generation_config.json; do
    [ -s "$d/export-$m/$f" ] || fail "$m: the export has no $f"
  done
  "$py" "$tools/hf-to-rlaif" "$d/export-$m" -o "$d/back-$m.h5" --rlaif "" --max-seq-len 64 >"$d/out" 2>&1 ||
    fail "$m: re-import of the export: $(cat "$d/out")"
  "$py" - "$ppo" "$d/back-$m.h5" <<'EOF' || fail "$m: the export differs from the policy"
import sys
import h5py
import numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
names = sorted(a["params"])
assert names == sorted(b["params"]), (names, sorted(b["params"]))
for n in names:
    assert np.array_equal(a["params"][n][...], b["params"][n][...]), n
ca, cb = a["config"].attrs, b["config"].attrs
for k in cb:  # the spec's keys; the engine stores its float fields as C floats: equal as float32
    same = np.float32(ca[k]) == np.float32(cb[k]) if ca[k].dtype.kind == "f" else ca[k] == cb[k]
    assert same, (k, ca[k], cb[k])
print("exported policy: %d tensors and /config read back bit-exactly" % len(names))
EOF
  echo "ok   $m: import, sft, collect (mock judge), rm, ppo on 4 ranks, export"
done
[ $ran -gt 0 ] || { echo "SKIP: the engine loads neither OPT nor Llama yet"; exit 77; }
echo "architecture pipeline checks passed ($ran models)"
