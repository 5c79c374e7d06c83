#!/usr/bin/env python3
"""Checks for tests/e2e/test_collect.sh on the preferences.h5 `rlaif collect` writes.

  same A.h5 B.h5          the same pair ids, and per id the same prompt,
                          responses, label, choice, consistency and outcomes
  count A.h5 N            exactly N pairs, no pair id twice, every id in
                          [0, N/P*P) with P = pairs_per_prompt from the file's
                          sampling attribute, each pair's two texts differ
  oracle A.h5             every labelled, untied pair prefers the response the
                          builtin quality rates higher (needs a noiseless judge):
                          right answers over wrong ones, at least
"""
import json
import re
import sys

import h5py
import numpy as np


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def load(path):
    """pair id -> (prompt, a, b, label, choice, consistent, outcome_ab, outcome_ba)."""
    with h5py.File(path, "r") as f:
        n = int(f.attrs["pairs_committed"])
        pairs = f["pairs"][:n]
        P, R = f["prompts"], f["responses"]
        pb, rb = P["bytes"][:].tobytes(), R["bytes"][:].tobytes()
        po, pl = P["offset"][:], P["length"][:]
        ro, rl = R["offset"][:], R["length"][:]
        sampling = json.loads(f.attrs["sampling"].decode())
    text = lambda b, o, l, i: b[o[i]:o[i] + l[i]].decode()
    out = {}
    for q in pairs:
        key = int(q["pair_id"])
        if key in out:
            fail(f"{path}: pair id {key} stored twice")
        out[key] = (text(pb, po, pl, q["prompt_id"]), text(rb, ro, rl, q["response_a"]),
                    text(rb, ro, rl, q["response_b"]), float(q["label"]), int(q["choice"]),
                    int(q["consistent"]), float(q["outcome_ab"]), float(q["outcome_ba"]))
    return out, sampling


def same_value(x, y):
    if isinstance(x, float):
        return (np.isnan(x) and np.isnan(y)) or x == y
    return x == y


def same(a, b):
    A, _ = load(a)
    B, _ = load(b)
    if set(A) != set(B):
        fail(f"pair ids differ: {len(A)} vs {len(B)}; only in {a}: {sorted(set(A) - set(B))[:10]}, "
             f"only in {b}: {sorted(set(B) - set(A))[:10]}")
    names = ["prompt", "response a", "response b", "label", "choice", "consistent", "outcome_ab",
             "outcome_ba"]
    for k in sorted(A):
        for i, (x, y) in enumerate(zip(A[k], B[k])):
            if not same_value(x, y):
                fail(f"pair {k}: {names[i]} differs: {x!r} vs {y!r}")
    print(f"same: {len(A)} pairs, identical ids, texts and labels")


def count(a, n):
    A, s = load(a)
    P = int(s["collect.pairs_per_prompt"])
    if len(A) != n:
        fail(f"{a}: {len(A)} pairs, expected {n}")
    for k, v in A.items():
        if v[1] == v[2]:
            fail(f"pair {k}: the two responses are the same text {v[1]!r}")
        if k < 0 or k // P >= int(s["n_prompts"]):
            fail(f"pair {k}: id out of range")
    print(f"count: {len(A)} pairs, no id twice, texts differ")


def answer(q):
    m = re.match(r"What is (\d+) (plus|minus|times) (\d+)\?", q)
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    return a + b if op == "plus" else a - b if op == "minus" else a * b


def right(resp, ans):
    nums = re.findall(r"-?\d+", resp)
    return bool(nums) and int(nums[-1]) == ans


def oracle(a):
    A, _ = load(a)
    checked = 0
    for k, (q, ra, rb, label, choice, *_rest) in A.items():
        if np.isnan(label) or label == 0.5:
            continue
        ans = answer(q)
        ga, gb = right(ra, ans), right(rb, ans)
        if ga != gb:
            checked += 1
            if (label > 0.5) != ga:
                fail(f"pair {k}: {q!r} A={ra!r} B={rb!r} label {label}: the wrong answer won")
    print(f"oracle: {checked} right-vs-wrong pairs, every one won by the right answer")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "same":
        same(sys.argv[2], sys.argv[3])
    elif cmd == "count":
        count(sys.argv[2], int(sys.argv[3]))
    elif cmd == "oracle":
        oracle(sys.argv[2])
    else:
        fail("unknown check " + cmd)
