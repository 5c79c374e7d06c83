#!/usr/bin/env python3
"""Checks for tests/test_rm.sh and tests/test_rm_learn.sh, on the files
`rlaif rm` writes (h5py, numpy). Parameter comparisons use check_sft.py.

  losses RUN_A RUN_B RTOL   per-step /rm losses and the /rm_eval losses and
                            accuracies of both metrics.h5 agree within RTOL
  rows RUN N                /rm holds exactly steps 1..N, /rm_eval each of
                            its steps once, in order
  final CKPT                a finished reward model: /params/score.*, /state
                            done = 1, eval_accuracy, reward_mean, reward_std
  learned RUN MIN_ACC       the last /rm_eval accuracy >= MIN_ACC and above
                            the step-0 one; prints the curve
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
    else:
        fail(f"unknown check {cmd}")
