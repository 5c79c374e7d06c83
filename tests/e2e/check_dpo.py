#!/usr/bin/env python3
"""Checks for tests/e2e/test_dpo.sh and tests/e2e/test_dpo_learn.sh, on the files
`rlaif dpo` writes (h5py, numpy). Parameter comparisons use check_sft.py.

  losses RUN_A RUN_B RTOL   per-step /dpo losses, margins and accuracies and
                            the /dpo_eval losses and margins of both
                            metrics.h5 agree within RTOL (relative, with a
                            floor of 1e-3 on the scale); /dpo_eval accuracies
                            from step 1 on (at step 0 the policy is the
                            reference and every margin is float rounding)
  rows RUN N                /dpo holds exactly steps 1..N, /dpo_eval each of
                            its steps once, in order
  final CKPT REF N          a finished policy: no score head, /state done = 1,
                            eval_accuracy; REF (dpo_ref_logps.h5) holds N
                            pairs of finite, negative log-probs
  refcheck REF PREFS START N
                            the stored reference log-probs of the first N
                            usable pairs of PREFS (status ok, label in
                            [0, 1], file order = dpo's pair order) equal
                            PyTorch's (tests/reference/gpt2_ref.py, byte tokenizer:
                            log p of response EOS after prompt "\n") under
                            the start model START within 1e-4 relative
  learned RUN MIN_ACC MIN_TASK
                            the last /dpo_eval preference accuracy >= MIN_ACC;
                            the final greedy task accuracy (/state
                            task_accuracy) >= MIN_TASK; prints the curves
"""
import sys

import h5py
import numpy as np


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def table(run, name):
    with h5py.File(f"{run}/metrics.h5", "r") as f:
        return f[name][:]


def compare(name, ra, rb, cols, rtol, skip_first=False):
    if not np.array_equal(ra["step"], rb["step"]):
        fail(f"/{name} steps differ: {ra['step']} vs {rb['step']}")
    for c in cols:
        x, y = ra[c], rb[c]
        if skip_first:
            x, y = x[1:], y[1:]
        rel = np.abs(x - y) / np.maximum(np.abs(x), 1e-3)
        print(f"/{name} {c}: {len(x)} rows, {x[0]:.6f} -> {x[-1]:.6f}; max relative "
              f"difference {rel.max():.3g} (tolerance {rtol:g})")
        if not rel.max() <= rtol:
            fail(f"/{name} {c} differs by {rel.max():.3g} at row {rel.argmax()}")


def losses(a, b, rtol):
    compare("dpo", table(a, "dpo"), table(b, "dpo"),
            ["loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "logps/chosen"],
            rtol)
    ea, eb = table(a, "dpo_eval"), table(b, "dpo_eval")
    compare("dpo_eval", ea, eb, ["loss"], rtol)
    # At step 0 the policy is the reference: every margin is float rounding
    # (about 1e-8, and it differs between BLAS kernels, e.g. AVX-512 vs AVX2),
    # so step 0 is checked against 0 in absolute terms, later steps relatively.
    for e in (ea, eb):
        if not abs(e["rewards/margins"][0]) <= 1e-6:
            fail(f"/dpo_eval rewards/margins at step 0 is {e['rewards/margins'][0]:.3g}, not ~0")
    compare("dpo_eval", ea, eb, ["rewards/margins", "rewards/accuracies"], rtol, skip_first=True)


def rows(run, n):
    steps = table(run, "dpo")["step"]
    if not np.array_equal(steps, np.arange(1, n + 1)):
        fail(f"metrics.h5 /dpo steps {steps}, expected 1..{n}")
    ev = table(run, "dpo_eval")["step"]
    if len(ev) == 0 or not np.all(np.diff(ev) > 0):
        fail(f"/dpo_eval steps {ev}: expected each once, increasing")
    print(f"metrics.h5 /dpo: steps 1..{n} once each; /dpo_eval at steps {list(ev)}")


def final(ckpt, ref, n):
    with h5py.File(ckpt, "r") as f:
        st = dict(f["state"].attrs)
        if "params/score.weight" in f or f["config"].attrs["score_head"] != 0:
            fail(f"{ckpt}: a DPO policy has no score head")
    for k in ("done", "eval_accuracy", "eval_loss", "eval_margin", "data_pos"):
        if k not in st:
            fail(f"{ckpt}: /state has no {k}")
    if st["done"] != 1:
        fail(f"{ckpt}: done {st['done']}")
    with h5py.File(ref, "r") as f:
        lp = f["logps"][:]
        if f.attrs["n_pairs"] != int(n) or lp.shape != (int(n), 2):
            fail(f"{ref}: {f.attrs['n_pairs']} pairs, shape {lp.shape}, expected {n}")
    if not (np.all(np.isfinite(lp)) and np.all(lp < 0)):
        fail(f"{ref}: log-probs not finite and negative")
    print(f"{ckpt}: done, eval_accuracy {st['eval_accuracy']:.3f}, margin "
          f"{st['eval_margin']:.4f}; {ref}: {n} pairs, log ref in [{lp.min():.2f}, {lp.max():.2f}]")


def learned(run, min_acc, min_task):
    ev = table(run, "dpo_eval")
    for r in ev:
        print(f"  step {r['step']:4d}  held-out preference accuracy {r['rewards/accuracies']:.3f}"
              f"  loss {r['loss']:.4f}  margin {r['rewards/margins']:.4f}  chosen "
              f"{r['rewards/chosen']:.4f}  rejected {r['rewards/rejected']:.4f}  ({r['pairs']:.0f} pairs)")
    tr = table(run, "dpo")
    for r in tr[::max(1, len(tr) // 5)]:
        print(f"  train step {r['step']:4d}  loss {r['loss']:.4f}  accuracy "
              f"{r['rewards/accuracies']:.3f}  margin {r['rewards/margins']:.4f}  logps/chosen "
              f"{r['logps/chosen']:.3f}  logps/rejected {r['logps/rejected']:.3f}")
    last = ev["rewards/accuracies"][-1]
    if not last >= min_acc:
        fail(f"held-out preference accuracy {last:.3f}, expected >= {min_acc}")
    import glob
    ck = sorted(glob.glob(f"{run}/ckpt/dpo-*.h5"))[-1]
    with h5py.File(ck, "r") as f:
        task = float(f["state"].attrs["task_accuracy"])
    print(f"held-out preference accuracy {ev['rewards/accuracies'][0]:.3f} (step 0) -> {last:.3f}"
          f" (must be >= {min_acc}); greedy task accuracy after DPO {task:.3f} "
          f"(must be >= {min_task})")
    if not task >= min_task:
        fail(f"greedy task accuracy collapsed to {task:.3f}")


def refcheck(ref_path, prefs, start, n):
    import os

    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
    import gpt2_ref as ref
    with h5py.File(start, "r") as f:
        cfg = {k: int(f["config"].attrs[k]) for k in ref.CONFIG_KEYS}
        P = {k: torch.tensor(f["params"][k][()], dtype=torch.float64)
             for k, _ in ref.param_shapes(cfg)}
    with h5py.File(ref_path, "r") as f:
        stored = f["logps"][:]
    with h5py.File(prefs, "r") as f:
        pairs = f["pairs"][:]
        texts = {}
        for g in ("prompts", "responses"):
            b = f[g]["bytes"][:].tobytes()
            texts[g] = (b, f[g]["offset"][:], f[g]["length"][:])

    def text(g, i):
        b, off, ln = texts[g]
        return b[off[i]:off[i] + ln[i]]

    def logp(prompt, response):
        head = list(prompt + b"\n")
        ids = head + list(response) + [256]  # byte tokenizer, EOS 256
        tok = torch.tensor([ids[:-1]])
        h = ref.trunk(P, cfg, tok, torch.arange(len(ids) - 1)[None],
                      torch.ones_like(tok, dtype=bool))
        tgt = torch.tensor([[t if i + 1 >= len(head) else -1 for i, t in enumerate(ids[1:])]])
        return float(ref.heads(P, cfg, h, tgt)[1].sum())

    usable = [q for q in pairs if q["status"] == 0 and 0 <= q["label"] <= 1]
    worst = 0.0
    with torch.no_grad():
        for i, q in enumerate(usable[:n]):
            for side, rid in ((0, q["response_a"]), (1, q["response_b"])):
                want = logp(text("prompts", q["prompt_id"]), text("responses", rid))
                worst = max(worst, abs(stored[i, side] - want) / abs(want))
    print(f"{ref_path}: reference log-probs of the first {n} pairs = PyTorch under {start} "
          f"within {worst:.3g} (tolerance 1e-4)")
    if not worst <= 1e-4:
        fail("the stored reference log-probs are not the start model's")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "losses":
        losses(args[0], args[1], float(args[2]))
    elif cmd == "rows":
        rows(args[0], int(args[1]))
    elif cmd == "final":
        final(args[0], args[1], args[2])
    elif cmd == "refcheck":
        refcheck(args[0], args[1], args[2], int(args[3]))
    elif cmd == "learned":
        learned(args[0], float(args[1]), float(args[2]))
    else:
        fail(f"unknown check {cmd}")
