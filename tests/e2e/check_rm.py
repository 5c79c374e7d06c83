#!/usr/bin/env python3
"""Checks for tests/e2e/test_rm.sh and tests/e2e/test_rm_learn.sh, on the files
`rlaif rm` writes (h5py, numpy). Parameter comparisons use check_sft.py.

  losses RUN_A RUN_B RTOL   per-step /rm losses and the /rm_eval losses and
                            accuracies of both metrics.h5 agree within RTOL
  rows RUN N                /rm holds exactly steps 1..N, /rm_eval each of
                            its steps once, in order
  final CKPT                a finished reward model: /params/score.*, /state
                            done = 1, eval_accuracy, reward_mean, reward_std
  learned RUN MIN_ACC       the last /rm_eval accuracy >= MIN_ACC and above
                            the step-0 one; prints the curve
  truth CKPT PAIRS LABELS FRAC MIN_EASY
                            recomputes the held-out split (rm.eval_fraction
                            FRAC) and the rewards of CKPT in PyTorch
                            (tests/reference/gpt2_ref.py, byte tokenizer: prompt "\n"
                            response EOS, score at EOS), checks that their
                            accuracy against the judge's labels equals the
                            checkpoint's own eval_accuracy, and prints the
                            accuracy against the truth per kind of wrong
                            answer; the kinds without arithmetic (refusal,
                            rudeness) must reach MIN_EASY
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


def losses(a, b, rtol):
    for name, cols in (("rm", ["loss", "accuracy", "margin"]), ("rm_eval", ["loss", "accuracy"])):
        ra, rb = table(a, name), table(b, name)
        if not np.array_equal(ra["step"], rb["step"]):
            fail(f"/{name} steps differ: {ra['step']} vs {rb['step']}")
        for c in cols:
            x, y = ra[c], rb[c]
            rel = np.abs(x - y) / np.maximum(np.abs(x), 1e-3)
            print(f"/{name} {c}: {len(x)} rows, {x[0]:.6f} -> {x[-1]:.6f}; max relative "
                  f"difference {rel.max():.3g} (tolerance {rtol:g})")
            if not rel.max() <= rtol:
                fail(f"/{name} {c} differs by {rel.max():.3g} at step {ra['step'][rel.argmax()]}")


def rows(run, n):
    steps = table(run, "rm")["step"]
    if not np.array_equal(steps, np.arange(1, n + 1)):
        fail(f"metrics.h5 /rm steps {steps}, expected 1..{n}")
    ev = table(run, "rm_eval")["step"]
    if len(ev) == 0 or not np.all(np.diff(ev) > 0):
        fail(f"/rm_eval steps {ev}: expected each once, increasing")
    print(f"metrics.h5 /rm: steps 1..{n} once each; /rm_eval at steps {list(ev)}")


def final(ckpt):
    with h5py.File(ckpt, "r") as f:
        st = dict(f["state"].attrs)
        for t in ("score.weight", "score.bias"):
            if f"params/{t}" not in f:
                fail(f"{ckpt}: no /params/{t}")
        if f["config"].attrs["score_head"] != 1:
            fail("config score_head is not 1")
    for k in ("done", "eval_accuracy", "eval_loss", "reward_mean", "reward_std"):
        if k not in st:
            fail(f"{ckpt}: /state has no {k}")
    if st["done"] != 1 or not st["reward_std"] > 0:
        fail(f"{ckpt}: done {st['done']}, reward_std {st['reward_std']}")
    print(f"{ckpt}: score head, done, eval_accuracy {st['eval_accuracy']:.3f}, "
          f"reward mean {st['reward_mean']:.3f} std {st['reward_std']:.3f}")


def learned(run, min_acc):
    ev = table(run, "rm_eval")
    for r in ev:
        print(f"  step {r['step']:4d}  held-out accuracy {r['accuracy']:.3f}  loss {r['loss']:.4f}"
              f"  margin {r['margin']:.3f}  ({r['pairs']:.0f} pairs)")
    first, last = ev["accuracy"][0], ev["accuracy"][-1]
    if not (last >= min_acc and last > first):
        fail(f"held-out accuracy {first:.3f} -> {last:.3f}, expected >= {min_acc}")
    print(f"held-out accuracy {first:.3f} -> {last:.3f} (must be >= {min_acc})")


def held_out(prompt, frac):
    """rm.c's split: FNV-1a 64 of the prompt, splitmix64 finaliser, top 53 bits."""
    m = (1 << 64) - 1
    h = 1469598103934665603
    for c in prompt.encode():
        h = ((h ^ c) * 1099511628211) & m
    h ^= h >> 30
    h = (h * 0xbf58476d1ce4e5b9) & m
    h ^= h >> 27
    h = (h * 0x94d049bb133111eb) & m
    h ^= h >> 31
    return (h >> 11) * 2.0 ** -53 < frac


def truth(ckpt, pairs, labels, frac, min_easy):
    import json
    import os

    import torch
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
    import gpt2_ref as ref
    with h5py.File(ckpt, "r") as f:
        cfg = {k: int(f["config"].attrs[k]) for k in ref.CONFIG_KEYS}
        P = {k: torch.tensor(f["params"][k][()], dtype=torch.float64)
             for k, _ in ref.param_shapes(cfg)}
        eval_acc = float(f["state"].attrs["eval_accuracy"])
    lab = {o["id"]: o["label"] for o in map(json.loads, open(labels))}

    def reward(prompt, response):
        ids = list((prompt + "\n" + response).encode()) + [256]  # byte tokenizer, EOS 256
        tok = torch.tensor([ids])
        h = ref.trunk(P, cfg, tok, torch.arange(len(ids))[None], torch.ones_like(tok, dtype=bool))
        return float((h[0, -1] @ P["score.weight"][0]) + P["score.bias"][0])

    n_lab = right_lab = 0
    kinds = {}
    with torch.no_grad():
        for o in map(json.loads, open(pairs)):
            if not held_out(o["prompt"], frac):
                continue
            ra, rb = reward(o["prompt"], o["response_a"]), reward(o["prompt"], o["response_b"])
            p = lab[o["id"]]
            if p is not None and p != 0.5:
                n_lab += 1
                right_lab += (ra > rb) == (p > 0.5)
            wrong = o["response_b"] if o["a_is_right"] else o["response_a"]
            kind = ("rude" if "Go away" in wrong else "no number" if not any(
                c.isdigit() for c in wrong) else "wrong number")
            k = kinds.setdefault(kind, [0, 0])
            k[0] += 1
            k[1] += (ra > rb) == o["a_is_right"]
    acc = right_lab / n_lab
    print(f"PyTorch rewards of {ckpt}: accuracy against the judge's labels {acc:.4f} on "
          f"{n_lab} decided held-out pairs; the checkpoint's eval_accuracy {eval_acc:.4f}")
    if abs(acc - eval_acc) > 1e-9:
        fail("the checkpoint's validation accuracy does not match its own rewards")
    for kind, (n, r) in sorted(kinds.items()):
        print(f"  against the truth, right answer vs {kind:12s}: {r / n:.3f} of {n}")
        if kind != "wrong number" and not r / n >= min_easy:
            fail(f"{kind}: {r / n:.3f} < {min_easy}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "losses":
        losses(args[0], args[1], float(args[2]))
    elif cmd == "rows":
        rows(args[0], int(args[1]))
    elif cmd == "final":
        final(args[0])
    elif cmd == "learned":
        learned(args[0], float(args[1]))
    elif cmd == "truth":
        truth(args[0], args[1], args[2], float(args[3]), float(args[4]))
    else:
        fail(f"unknown check {cmd}")
