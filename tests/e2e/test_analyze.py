#!/usr/bin/python3
"""tools/user/rlaif-analyze on files this test writes with h5py in rlaif's layout,
with a designed judge bias so every figure has a closed-form answer:
  judge j0 always prefers the response shown first (tie after both orders),
  judge j1 is position-consistent, prefers the longer response, and agrees
  with the human labels on 80 of 100 pairs (kappa = 0.6 by construction)."""
import importlib.machinery
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

top = os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), "..", ".."))
tool = os.path.join(top, "tools", "user", "rlaif-analyze")
loader = importlib.machinery.SourceFileLoader("rlaif_analyze", tool)
spec = importlib.util.spec_from_loader("rlaif_analyze", loader)
ra = importlib.util.module_from_spec(spec)
loader.exec_module(ra)

tmp = tempfile.mkdtemp(prefix="rlaif-analyze-")
path = os.path.join(tmp, "prefs.h5")
RUB = 8


def ragged(f, name, texts):
    g = f.create_group(name)
    b = [t.encode() for t in texts]
    flat = b"".join(b)
    g["bytes"] = np.frombuffer(flat, dtype=np.int8) if flat else np.zeros(0, np.int8)
    g["offset"] = np.cumsum([0] + [len(x) for x in b[:-1]]).astype(np.int64) if b else np.zeros(0, np.int64)
    g["length"] = np.array([len(x) for x in b], np.int64)
    g["tokens"] = np.zeros(0, np.int32)
    g["tok_offset"] = np.zeros(len(b), np.int64)
    g["tok_length"] = np.zeros(len(b), np.int64)


dt = np.dtype([("pair_id", "<i8"), ("prompt_id", "<i8"), ("response_a", "<i8"), ("response_b", "<i8"),
               ("label", "<f8"), ("choice", "i1"), ("consistent", "i1"), ("source", "i1"),
               ("outcome_ab", "<f8"), ("outcome_ba", "<f8"), ("rubric_a", "<f4", (RUB,)),
               ("rubric_b", "<f4", (RUB,)), ("judge_id", "<i4"), ("template_id", "<i4"),
               ("prompt_tokens", "<i8"), ("completion_tokens", "<i8"), ("status", "<i4")])
prompts, responses, rows = [], [], []
for k in range(100):
    prompts.append(f"prompt {k}")
    a_wins = k % 2 == 0
    la, lb = (20, 15) if a_wins else (15, 20)  # the winner is 5 bytes longer
    responses += ["a" * la, "b" * lb]
    for judge in (0, 1):
        r = np.zeros((), dt)
        r["pair_id"] = 1000 * judge + k
        r["prompt_id"], r["response_a"], r["response_b"] = k, 2 * k, 2 * k + 1
        if judge == 0:
            r["outcome_ab"], r["outcome_ba"], r["consistent"], r["label"] = 1.0, 0.0, 0, 0.5
        else:
            lab = 1.0 if a_wins else 0.0
            r["outcome_ab"] = r["outcome_ba"] = r["label"] = lab
            r["consistent"] = 1
        r["choice"] = 2 if r["label"] == 0.5 else (0 if r["label"] > 0.5 else 1)
        r["rubric_a"] = r["rubric_b"] = np.nan
        r["judge_id"], r["template_id"] = judge, k % 2
        r["prompt_tokens"], r["completion_tokens"] = 100, 10
        rows.append(r)
for k in range(10):  # failures: 6 transport, 4 parse
    r = np.zeros((), dt)
    r["pair_id"] = 5000 + k
    r["label"] = r["outcome_ab"] = r["outcome_ba"] = np.nan
    r["consistent"], r["choice"], r["judge_id"], r["template_id"] = -1, -1, 1, 0
    r["rubric_a"] = r["rubric_b"] = np.nan
    r["prompt_tokens"], r["completion_tokens"] = 100, 10
    r["status"] = 1 if k < 6 else 3
    rows.append(r)
with h5py.File(path, "w") as f:
    f.attrs["rlaif_schema"] = np.int64(1)
    f.attrs["rlaif_kind"] = np.bytes_("preferences")
    f.attrs["n_judges"], f.attrs["n_templates"] = np.int64(2), np.int64(2)
    f.attrs["judge_0_name"], f.attrs["judge_1_name"] = np.bytes_("j0"), np.bytes_("j1")
    f.attrs["template_0_name"], f.attrs["template_1_name"] = np.bytes_("t0"), np.bytes_("t1")
    f.attrs["status_names"] = np.bytes_("ok,transport,http,parse,refused,quota,timeout,inconsistent,other")
    f.attrs["judge_settings"] = np.bytes_("{}")
    ragged(f, "prompts", prompts)
    ragged(f, "responses", responses)
    ragged(f, "explanations", [""] * len(rows))
    f["responses/prompt_id"] = np.repeat(np.arange(100), 2).astype(np.int64)
    # A killed append: one all-zero row past pairs_committed, which the
    # tool must not count (it would read as a labelled "B wins" pair).
    f.create_dataset("pairs", data=np.array(rows + [np.zeros((), dt)], dt), maxshape=(None,), chunks=True)
    f.attrs["pairs_committed"] = np.int64(len(rows))
    f.attrs["prompts_committed"], f.attrs["responses_committed"] = np.int64(100), np.int64(200)

p = ra.Prefs(path)
r = ra.audit(p, price_in=2.0, price_out=10.0)
close = lambda a, b, tol=1e-12: abs(a - b) <= tol
assert r["pairs"] == 210 and r["labelled"] == 200 and r["failed"] == 10, r
assert len(p.explanations) == 210 and len(p.prompts) == 100
assert close(r["consistency"], 0.5), r["consistency"]
# j0: first shown always wins (rate 1 on 200 verdicts); j1: 0.5 on 200.
assert close(r["first_position_win_rate"], 0.75), r["first_position_win_rate"]
assert close(r["per_judge"]["j0"]["first_position_win_rate"], 1.0)
assert close(r["per_judge"]["j1"]["first_position_win_rate"], 0.5)
assert close(r["per_judge"]["j1"]["consistency"], 1.0) and close(r["per_judge"]["j0"]["consistency"], 0.0)
assert close(r["longer_wins"], 1.0)
y = np.concatenate([[0.5 if j == 0 else (1.0 if k % 2 == 0 else 0.0) for j in (0, 1)] for k in range(100)])
d = np.repeat([5.0 if k % 2 == 0 else -5.0 for k in range(100)], 2)
# Pearson by hand: cov / (sd sd)
ref = ((d - d.mean()) * (y - y.mean())).mean() / (d.std() * y.std())
assert close(r["length_label_corr"], ref, 1e-9), (r["length_label_corr"], ref)
assert r["ties"] == 100 and r["a_wins"] == 50 and r["b_wins"] == 50
assert r["label_hist"][5] == 100 and r["label_hist"][0] == 50 and r["label_hist"][9] == 50
assert r["failures"] == {"transport": 6, "parse": 4}, r["failures"]
assert r["prompt_tokens"] == 21000 and r["completion_tokens"] == 2100
assert close(r["cost_usd"], 0.042 + 0.021, 1e-12), r["cost_usd"]
assert r["judge_agreement"] == {"j0 vs j1": {"n": 100, "agreement": 0.0}}, r["judge_agreement"]
assert r["per_template"]["t0"]["pairs"] == 110

# Stratified sample: strata (j0, tie) 100, (j1, A) 50, (j1, B) 50 -> 10 / 5 / 5 of 20.
sample = os.path.join(tmp, "sample.csv")
rows_picked = ra.sample(p, 20, seed=1)
assert len(rows_picked) == 20 and len(set(rows_picked)) == 20
strata = {}
for i in rows_picked:
    key = (int(p.pairs["judge_id"][i]), ra.hard(float(p.pairs["label"][i])))
    strata[key] = strata.get(key, 0) + 1
assert strata == {(0, "tie"): 10, (1, "A"): 5, (1, "B"): 5}, strata
assert rows_picked == ra.sample(p, 20, seed=1)  # reproducible
# Rounding never drops a small stratum nor overshoots n: strata of 1, 1 and
# 98 pairs, n = 10 -> 1 + 1 + 8 for every seed.
class Tiny:
    pass
tiny = Tiny()
tiny.pairs = np.zeros(100, np.dtype([("status", "<i4"), ("label", "<f8"), ("judge_id", "<i4")]))
tiny.pairs["label"], tiny.pairs["judge_id"][:2] = 1.0, [1, 2]
for seed in range(40):
    picked = ra.sample(tiny, 10, seed)
    assert len(picked) == len(set(picked)) == 10, (seed, picked)
    assert {int(tiny.pairs["judge_id"][i]) for i in picked} == {0, 1, 2}, (seed, picked)

# Human labels: agree with j1 on k < 80, the opposite on k >= 80.
labels = os.path.join(tmp, "labels.jsonl")
with open(labels, "w") as f:
    for k in range(100):
        j1 = "A" if k % 2 == 0 else "B"
        h = j1 if k < 80 else ("B" if j1 == "A" else "A")
        f.write(json.dumps({"pair_id": 1000 + k, "human_choice": h}) + "\n")
        f.write(json.dumps({"pair_id": k, "human_choice": h}) + "\n")
res = ra.agreement(p, ra.read_labels(labels), seed=3, boot=500)
j1 = res["j1"]
assert j1["n"] == 100 and close(j1["accuracy"], 0.8)
# kappa: po = 0.8, pe = 0.5*0.5 + 0.5*0.5 = 0.5 -> 0.6
assert close(j1["kappa"], 0.6), j1["kappa"]
lo, hi = j1["accuracy_ci"]  # Wilson 95% for 80/100
assert close(lo, 0.71115, 1e-4) and close(hi, 0.86658, 1e-4), (lo, hi)
assert 0.4 < j1["kappa_ci"][0] < 0.6 < j1["kappa_ci"][1] < 0.8, j1["kappa_ci"]
assert close(res["j0"]["accuracy"], 0.0) and close(res["j0"]["kappa"], 0.0)

# The command line: text, PNG, CSV sample, agreement, metrics plots.
run = lambda *a: subprocess.run([sys.executable, tool] + list(a), check=True, capture_output=True, text=True).stdout
out = run("prefs", path, "--out", tmp)
assert "first-position win rate     0.750" in out and "transport 6" in out, out
assert open(os.path.join(tmp, "prefs_audit.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
run("sample", path, "--n", "12", "--out", sample)
assert len(open(sample).read().strip().split("\n")) == 13
out = run("agreement", path, labels)
assert "j1: n 100, accuracy 0.800" in out and "Cohen's kappa 0.600" in out, out
bad = os.path.join(tmp, "bad.csv")
with open(bad, "w") as f:
    f.write("pair_id,human_choice\n1000,maybe\n")
e = subprocess.run([sys.executable, tool, "agreement", path, bad], capture_output=True, text=True)
assert e.returncode != 0 and "bad.csv:2" in e.stderr, e.stderr

mpath = os.path.join(tmp, "metrics.h5")
with h5py.File(mpath, "w") as f:
    f.attrs["rlaif_kind"] = np.bytes_("metrics")
    for phase, cols in (("sft", ["loss"]), ("ppo", ["objective/kl", "policy/clipfrac", "env/reward_mean"])):
        t = np.dtype([("step", "<i8"), ("time", "<f8")] + [(c, "<f8") for c in cols])
        a = np.zeros(50, t)
        a["step"] = np.arange(1, 51)
        for c in cols:
            a[c] = np.linspace(1, 0, 50)
        f.create_dataset(phase, data=a, maxshape=(None,), chunks=True)
out = run("metrics", mpath, "--out", tmp)
for phase in ("sft", "ppo"):
    assert open(os.path.join(tmp, phase + ".png"), "rb").read(4) == b"\x89PNG", phase
assert "ppo: 50 rows, last step 50" in out, out
shutil.rmtree(tmp)
print("rlaif-analyze: audit, sample, agreement and metrics checks passed")
