#!/usr/bin/env python3
"""check_eval.py EVAL_H5 [--kl-zero] - the /eval group of an eval.h5, read with h5py
and checked against the stored pairs and an independent fit:

  * one row per pair: policy_len / baseline_len are the byte lengths of the
    stored answers, log_len_ratio = log((1 + policy) / (1 + baseline)),
    outcome = 1 / 0.5 / 0 by the label (NaN unlabelled), the flaw bits in 0..15;
  * the length-controlled win rate refitted with scipy (BFGS on the negative
    log-likelihood of the fractional outcomes plus the slope's ridge, not
    Newton) and its standard error from the penalised Fisher information in numpy: intercept within 1e-4,
    standard error within 1e-3 relative, win rate = sigmoid(intercept) and
    the 95% interval sigmoid(b0 -+ 1.959964 se) within 1e-6 of what eval stored;
  * mean lengths, mean KL and the oracle rates are the means of the columns;
  * --kl-zero: policy = baseline, so every per-answer KL is exactly 0.
"""
import sys

import h5py
import numpy as np
from scipy.optimize import minimize
from scipy.special import expit


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def texts(g, ids):
    b = g["bytes"][:].tobytes()
    return [b[g["offset"][i]:g["offset"][i] + g["length"][i]] for i in ids]


RIDGE = 0.1  # RLAIF_LC_RIDGE: a penalty ridge * slope^2 / 2


def fit(x, y):
    def nll(b):
        z = b[0] + b[1] * x
        return float(np.sum(np.logaddexp(0, z) - y * z)) + 0.5 * RIDGE * b[1] ** 2

    def grad(b):
        r = expit(b[0] + b[1] * x) - y
        return np.array([r.sum(), (r * x).sum() + RIDGE * b[1]])

    slope = np.var(x) > 1e-12
    if not slope:
        res = minimize(lambda c: nll([c[0], 0.0]), [0.0], jac=lambda c: grad([c[0], 0.0])[:1],
                       method="BFGS", options={"gtol": 1e-12})
        b = np.array([res.x[0], 0.0])
    else:
        res = minimize(nll, [0.0, 0.0], jac=grad, method="BFGS", options={"gtol": 1e-12})
        b = res.x
    p = expit(b[0] + b[1] * x)
    w = p * (1 - p)
    info = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum() + RIDGE]])
    se0 = np.sqrt(np.linalg.inv(info)[0, 0]) if slope else 1 / np.sqrt(w.sum())
    return b, se0


def main():
    path = sys.argv[1]
    f = h5py.File(path, "r")
    if "eval" not in f:
        fail(f"{path}: no /eval group")
    g = f["eval"]
    n = int(f.attrs["pairs_committed"])
    cols = ["policy_len", "baseline_len", "log_len_ratio", "outcome", "kl", "policy_flaws",
            "baseline_flaws"]
    v = {c: g[c][:] for c in cols if c in g}
    if len(v) != len(cols) or any(len(v[c]) != n for c in cols):
        fail(f"/eval columns {sorted(g)} of {[len(g[c]) for c in g]} rows, {n} pairs")
    pairs = f["pairs"][:n]
    order = np.argsort(pairs["pair_id"])
    if not (pairs["pair_id"][order] == np.arange(n)).all():
        fail("pair ids are not 0..n-1")
    pairs = pairs[order]
    pol = texts(f["responses"], pairs["response_a"])
    base = texts(f["responses"], pairs["response_b"])
    if not (v["policy_len"] == [len(t) for t in pol]).all() or \
            not (v["baseline_len"] == [len(t) for t in base]).all():
        fail("answer lengths differ from the stored answers")
    x = np.log((1 + v["policy_len"]) / (1 + v["baseline_len"]))
    if np.abs(x - v["log_len_ratio"]).max() > 1e-12:
        fail("log_len_ratio")
    lab = pairs["label"].astype(np.float64)
    want = np.where(np.isnan(lab), np.nan, np.where(lab > 0.5, 1.0, np.where(lab < 0.5, 0.0, 0.5)))
    if not np.array_equal(np.isnan(want), np.isnan(v["outcome"])) or \
            not np.allclose(want[~np.isnan(want)], v["outcome"][~np.isnan(want)], atol=0):
        fail("outcome column differs from the labels")
    a = dict(g.attrs)
    means_kl_oracle(v, a)
    m = ~np.isnan(v["outcome"])
    if np.isnan(a["lc_intercept"]):
        # no finite estimate: only right when the outcomes are separated
        y = v["outcome"][m]
        if not ((y == 1).all() or (y == 0).all()):
            fail("no length-controlled fit although the outcomes are not all one way")
        if not all(np.isnan(a[k]) for k in ("lc_win_rate", "lc_win_rate_lo", "lc_win_rate_hi")):
            fail("a length-controlled win rate without a fit")
        print(f"/eval: {n} pairs, all won or all lost: no length-controlled fit (n/a)")
        return
    b, se0 = fit(x[m], v["outcome"][m])
    lc = (expit(b[0]), expit(b[0] - 1.959964 * se0), expit(b[0] + 1.959964 * se0))
    print(f"/eval: {n} pairs; refit intercept {b[0]:.6f} (eval {a['lc_intercept']:.6f}) slope "
          f"{b[1]:.6f} (eval {a['lc_slope']:.6f}) se {se0:.6f} (eval {a['lc_intercept_se']:.6f}); "
          f"lc win rate {a['lc_win_rate']:.4f} [{a['lc_win_rate_lo']:.4f}, {a['lc_win_rate_hi']:.4f}]")
    if abs(b[0] - a["lc_intercept"]) > 1e-4 or abs(b[1] - a["lc_slope"]) > 1e-4:
        fail(f"fit differs: scipy {b}, eval {a['lc_intercept']}, {a['lc_slope']}")
    if abs(se0 - a["lc_intercept_se"]) > 1e-3 * se0:
        fail(f"standard error differs: numpy {se0}, eval {a['lc_intercept_se']}")
    for got, key in zip(lc, ["lc_win_rate", "lc_win_rate_lo", "lc_win_rate_hi"]):
        if abs(got - a[key]) > 1e-6 + 1e-4 * se0:
            fail(f"{key}: {a[key]} vs {got}")


def means_kl_oracle(v, a):
    """The figures are the means of their columns; KL finite; flaw bits sane."""
    for key, col in [("policy_len", "policy_len"), ("baseline_len", "baseline_len"), ("kl", "kl")]:
        if abs(np.mean(v[col]) - a[key]) > 1e-9 * (1 + abs(a[key])):
            fail(f"{key}: {a[key]} is not the mean of its column {np.mean(v[col])}")
    if not np.isfinite(v["kl"]).all():
        fail("KL not finite (the same vocabulary on both sides)")
    if "--kl-zero" in sys.argv and np.abs(v["kl"]).max() != 0:
        fail(f"policy = baseline but KL {np.abs(v['kl']).max()}")
    for who in ("policy", "baseline"):
        bits = v[f"{who}_flaws"].astype(int)
        if bits.min() < 0 or bits.max() > 15:
            fail(f"{who}_flaws out of range")
        for bit, name in ((1, "accuracy"), (2, "rude"), (4, "rambling"), (8, "offtopic")):
            rate = np.mean((bits & bit) != 0)
            rate = 1 - rate if bit == 1 else rate
            if abs(rate - a[f"{who}_{name}"]) > 1e-12:
                fail(f"{who}_{name}: {a[f'{who}_{name}']} vs {rate}")
    print(f"/eval: policy length {a['policy_len']:.1f}, baseline {a['baseline_len']:.1f}, KL "
          f"{a['kl']:.4f}; oracle policy acc {a['policy_accuracy']:.3f} rude {a['policy_rude']:.3f} "
          f"rambling {a['policy_rambling']:.3f} off-topic {a['policy_offtopic']:.3f}")


main()
