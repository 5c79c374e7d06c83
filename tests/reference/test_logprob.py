"""The per-token log-prob / entropy / value pass (src/engine/logprob.c)
against PyTorch (float64, tests/reference/gpt2_ref.py).

Seven (prompt, response) sequences of ragged prompt and response lengths
(one response of a single token) go through the pass in micro-batches of 3
rows, each padded to its own longest row, and back with random per-token
upstream gradients d/d(logp), d/d(entropy), d/d(value) given at EVERY
position of the (R, T) layout, padding and prompt included. PyTorch runs each
sequence alone, unpadded, and forms the loss
    sum_t mask_t (g_logp,t logp_t + g_ent,t entropy_t) + sum_t real_t g_val,t value_t
so the C side must ignore the gradients outside the response (logp,
entropy) and outside the real tokens (value). Three passes:
  1. logp + value heads on a model with a scalar head (every token an input;
     the reward position lp->last = len - 1);
  2. logp only on a model without one (the last token is no input);
  3. pass 1 with model.logit_scale = 1 / 0.7: PPO's scoring at a sampling
     temperature of 0.7 (logits / T, gradients scaled alike).
Checked: the response mask and last positions exactly; per-token log-probs,
entropies and values within 1e-5 relative (float32 C vs float64 PyTorch, as
tests/reference/test_engine.py); the summed sequence log-prob within 1e-5;
every parameter gradient tensor within 1e-4 relative.
Exits 1 when a check fails.
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref as ref  # noqa: E402

torch.set_num_threads(1)
BUILD = os.environ.get("top_builddir", ".")
LP_REF = os.path.join(BUILD, "tests", "reference", "lp_ref")
LOGP, VALUE = 1, 2
failures = []


def check(what, value, tol):
    ok = value <= tol
    print("%-60s %.3e  (tol %.0e)  %s" % (what, value, tol, "ok" if ok else "FAIL"))
    if not ok:
        failures.append(what)


def sequences(g, V, maxT):
    seqs, plens = [], []
    for i in range(7):
        np_ = int(torch.randint(1, 6, (1,), generator=g))
        n = 1 if i == 2 else int(torch.randint(1, maxT - np_ + 1, (1,), generator=g))
        seqs.append(torch.randint(0, V, (np_ + n,), generator=g).tolist())
        plens.append(np_)
    return seqs, plens


def row_terms(P, cfg, ids, plen, heads, scale):
    """One unpadded row: inputs, per-position logp, entropy, value, mask."""
    n = len(ids) if heads & VALUE else len(ids) - 1
    tok = torch.tensor([ids[:n]])
    h = ref.trunk(P, cfg, tok, torch.arange(n)[None], torch.ones_like(tok, dtype=bool))
    tgt = [ids[t + 1] if t + 1 < len(ids) and t + 1 >= plen else -1 for t in range(n)]
    _, logp, ent, val = ref.heads(P, cfg, h, torch.tensor([tgt]), scale)
    mask = torch.tensor([float(t >= 0) for t in tgt], dtype=torch.float64)
    return n, logp[0], ent[0], (val[0] if val is not None else None), mask


def run(name, cfg, heads, seed, scale=1.0):
    print("== %s: L=%d C=%d V=%d, heads %s" % (name, cfg["n_layer"], cfg["n_embd"],
          cfg["vocab_size"], "logp+value" if heads & VALUE else "logp"))
    g = torch.Generator().manual_seed(seed)
    seqs, plens = sequences(g, cfg["vocab_size"], cfg["max_seq_len"])
    R = len(seqs)
    Tw = max(len(s) if heads & VALUE else len(s) - 1 for s in seqs)
    gl, ge, gv = (torch.randn(R, Tw, generator=g, dtype=torch.float64) for _ in range(3))
    tmp = tempfile.mkdtemp(prefix="rlaif-lp-")
    P32 = ref.random_params(cfg, seed, std=0.2)
    ckpt, inp, out = (os.path.join(tmp, x) for x in ("model.h5", "in.h5", "out.h5"))
    ref.write_ckpt(ckpt, cfg, P32)
    with h5py.File(inp, "w") as f:
        f["tok"] = np.array([t for s in seqs for t in s], dtype=np.int32)
        f["off"] = np.cumsum([0] + [len(s) for s in seqs]).astype(np.int64)
        f["plen"] = np.array(plens, dtype=np.int32)
        for k, v in (("dlogp", gl), ("dent", ge), ("dval", gv)):
            f[k] = v.numpy().astype(np.float32).ravel()
        f.attrs["heads"], f.attrs["micro"], f.attrs["scale"] = float(heads), 3.0, scale
    subprocess.run([LP_REF, ckpt, inp, out], check=True, stdout=subprocess.DEVNULL)

    P = {k: v.double().requires_grad_(True) for k, v in P32.items()}
    # the upstream gradients as the C side read them (float32)
    gl, ge, gv = (x.float().double() for x in (gl, ge, gv))
    want = {k: torch.zeros(R, Tw, dtype=torch.float64) for k in ("logp", "entropy", "value", "mask")}
    last, seq, loss = [], [], 0
    for r, (ids, plen) in enumerate(zip(seqs, plens)):
        n, logp, ent, val, mask = row_terms(P, cfg, ids, plen, heads, scale)
        loss = loss + (mask * (gl[r, :n] * logp + ge[r, :n] * ent)).sum()
        if val is not None:
            loss = loss + (gv[r, :n] * val).sum()
            want["value"][r, :n] = val.detach()
        want["logp"][r, :n], want["entropy"][r, :n] = logp.detach(), ent.detach()
        want["mask"][r, :n] = mask
        last.append(n - 1)
        seq.append(float(logp.detach().sum()))
    loss.backward()
    with h5py.File(out, "r") as f:
        got = {k: f[k][()] for k in ("logp", "entropy", "value", "mask", "last", "seq")}
        grads = {k: f["grads"][k][()] for k in P}
    m = want["mask"].numpy() > 0
    check("response mask (exact)", float(np.abs(got["mask"] - want["mask"].numpy()).max()), 0)
    check("last input positions (exact)", float(np.abs(got["last"] - np.array(last)).max()), 0)
    check("per-token log-probs of the response", ref.rel(got["logp"][m], want["logp"].numpy()[m]),
          1e-5)
    check("log-probs outside the response are 0", float(np.abs(got["logp"][~m]).max()), 0)
    check("per-token entropy of the response",
          ref.rel(got["entropy"][m], want["entropy"].numpy()[m]), 1e-5)
    check("sequence log-probs (sum over the response)", ref.rel(got["seq"], seq), 1e-5)
    if heads & VALUE:
        real = np.zeros((R, Tw), dtype=bool)
        for r in range(R):
            real[r, :last[r] + 1] = True
        check("per-token values (every real token)",
              ref.rel(got["value"][real], want["value"].numpy()[real]), 1e-5)
    worst, wname = 0.0, ""
    for k in P:
        e = ref.rel(grads[k], P[k].grad.numpy())
        if e > worst:
            worst, wname = e, k
    check("every gradient tensor (worst: %s)" % wname, worst, 1e-4)


base = dict(n_layer=2, n_embd=16, n_head=2, vocab_size=40, max_seq_len=16)
run("1. logp + entropy + value", dict(base, score_head=1), LOGP | VALUE, 21)
run("2. logp + entropy only", dict(base, score_head=0), LOGP, 22)
# PPO at a sampling temperature T scores with logits / T (model.logit_scale)
run("3. logp + entropy + value at temperature 0.7", dict(base, score_head=1), LOGP | VALUE, 23,
    1 / 0.7)
if failures:
    print("FAILED:", ", ".join(failures))
    sys.exit(1)
print("PASS")
