#!/usr/bin/env python3
"""Checks for tests/e2e/test_ppo.sh, on the metrics.h5 the policy-gradient
phases write (h5py, numpy). TABLE is the phase: ppo, reinforce or a2c.

  same RUN_A RUN_B TABLE RTOL    per-step loss, loss/policy and loss/value
                                 agree within RTOL relative to the step's
                                 largest |loss| term (a loss near zero is a
                                 difference of larger terms; see below)
  exact RUN_A RUN_B TABLE COLS   the columns COLS (comma-separated) equal bit
                                 for bit at every step
  rows RUN TABLE N               the table holds exactly steps 1..N
  finite RUN TABLE               every value of every row is finite
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


def same(a, b, name, rtol):
    ra, rb = table(a, name), table(b, name)
    if not np.array_equal(ra["step"], rb["step"]):
        fail(f"steps differ: {ra['step']} vs {rb['step']}")
    # The policy loss of a whitened batch is a mean of terms of both signs
    # (it starts at 0): its rounding scales with the terms, not with the sum,
    # so the scale is the largest of |loss|, |loss/value| at that step.
    scale = np.maximum(np.abs(ra["loss"]), np.abs(ra["loss/value"]))
    worst = 0.0
    for col in ("loss", "loss/policy", "loss/value"):
        rel = np.abs(ra[col] - rb[col]) / scale
        worst = max(worst, float(rel.max()))
        if not rel.max() <= rtol:
            fail(f"{col} differs by {rel.max():.3g} at step {ra['step'][rel.argmax()]}")
    print(f"{len(ra)} steps of /{name}: loss {ra['loss'][0]:.6f} -> {ra['loss'][-1]:.6f}; "
          f"max relative difference {worst:.3g} (tolerance {rtol:g})")


def exact(a, b, name, cols):
    ra, rb = table(a, name), table(b, name)
    if len(ra) != len(rb):
        fail(f"{len(ra)} vs {len(rb)} rows")
    for col in cols.split(","):
        if not np.array_equal(ra[col], rb[col]):
            i = int(np.argmax(ra[col] != rb[col]))
            fail(f"{col} differs at step {ra['step'][i]}: {ra[col][i]!r} vs {rb[col][i]!r}")
    print(f"/{name} {cols}: equal bit for bit over {len(ra)} steps")


def rows(run, name, n):
    steps = table(run, name)["step"]
    if not np.array_equal(steps, np.arange(1, n + 1)):
        fail(f"metrics.h5 /{name} steps {steps}, expected 1..{n}")
    print(f"metrics.h5 /{name}: steps 1..{n}, once each")


def finite(run, name):
    r = table(run, name)
    for col in r.dtype.names:
        if not np.all(np.isfinite(r[col])):
            fail(f"/{name} {col} is not finite: {r[col]}")
    print(f"/{name}: {len(r)} rows, every value finite; objective/scores "
          f"{r['objective/scores'][0]:.4f} -> {r['objective/scores'][-1]:.4f}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "same":
        same(args[0], args[1], args[2], float(args[3]))
    elif cmd == "exact":
        exact(args[0], args[1], args[2], args[3])
    elif cmd == "rows":
        rows(args[0], args[1], int(args[2]))
    elif cmd == "finite":
        finite(args[0], args[1])
    else:
        fail(f"unknown check {cmd}")
