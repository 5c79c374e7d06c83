"""The reward model's loss and gradients against PyTorch (float64).

1. The pair loss bt(d, p) = -[p log s(d - m) + (1 - p) log s(-d - m)] and
   d bt / d d from rlaif_rm_pair_loss, on a grid of reward differences
   (|d| up to 60, where a naive log(sigmoid) underflows), labels (hard, soft,
   ties) and margins, against torch.nn.functional.logsigmoid and autograd:
   both within 1e-12 relative (+1e-300 absolute): the C code is double
   precision too, so only rounding of a few operations separates them.
   Also: the hard-label cases equal -log s(r_w - r_l - m) with w the label's
   winner.
2. One step of the rm phase end to end on a tiny GPT-2 with a scalar head
   (random weights, tests/reference/gpt2_ref.py): six pairs of ragged lengths, labels
   1, 0, 0.5, 0.8, 1, 0.3, margin 0.5, reward_l2 0.05, micro-batches of 2
   pairs (so the global normalisation across micro-batches is exercised):
   the rewards (score at the last real token of right-padded rows) and the
   loss within 1e-5 relative, and every parameter gradient tensor within
   1e-4 relative (tests/reference/test_engine.py's float32-vs-float64 tolerances:
   the C side runs in float32, whose rounding over a 2-layer forward and
   backward is ~1e-6; a wrong sign, a missing 1/N or l2 term, or a reward
   read at the wrong position is off by far more). The metrics' sums
   (decided pairs, ranked right, chosen/rejected rewards) are checked exactly
   against the rewards.
Exits 1 when a check fails.
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref as ref  # noqa: E402

torch.set_num_threads(1)
BUILD = os.environ.get("top_builddir", ".")
RM_REF = os.path.join(BUILD, "tests", "reference", "rm_ref")
failures = []


def check(what, value, tol):
    ok = value <= tol
    print("%-52s %.3e  (tol %.0e)  %s" % (what, value, tol, "ok" if ok else "FAIL"))
    if not ok:
        failures.append(what)


def bt(d, p, m):
    return -(p * F.logsigmoid(d - m) + (1 - p) * F.logsigmoid(-d - m))


def pair_loss_grid():
    print("== 1. pair loss and d(loss)/d(r_A - r_B)")
    rows = []
    for d in [-60.0, -7.5, -1.0, -0.1, 0.0, 0.3, 2.0, 9.0, 60.0]:
        for p in [0.0, 1.0, 0.5, 0.8, 0.25]:
            for m in [0.0, 0.5, -1.0]:
                rows.append((d, p, m))
    text = "".join("%.17g %.17g %.17g\n" % r for r in rows)
    out = subprocess.run([RM_REF, "pairs"], input=text, capture_output=True, text=True, check=True)
    got = np.array([[float(x) for x in line.split()] for line in out.stdout.splitlines()])
    worst_l = worst_g = worst_hard = 0.0
    for (d, p, m), (loss, dd) in zip(rows, got):
        x = torch.tensor(d, dtype=torch.float64, requires_grad=True)
        ref_loss = bt(x, p, m)
        ref_loss.backward()
        worst_l = max(worst_l, abs(loss - ref_loss.item()) / (abs(ref_loss.item()) + 1e-300))
        worst_g = max(worst_g, abs(dd - x.grad.item()) / (abs(x.grad.item()) + 1e-300))
        if p in (0.0, 1.0):
            rw_minus_rl = d if p == 1.0 else -d
            hard = -F.logsigmoid(torch.tensor(rw_minus_rl - m, dtype=torch.float64)).item()
            worst_hard = max(worst_hard, abs(loss - hard) / (abs(hard) + 1e-300))
    check("loss vs torch, %d cases (relative)" % len(rows), worst_l, 1e-12)
    check("d loss / d d vs autograd (relative)", worst_g, 1e-12)
    check("hard labels = -log s(r_w - r_l - margin)", worst_hard, 1e-12)


def end_to_end():
    cfg = dict(n_layer=2, n_embd=16, n_head=2, vocab_size=40, max_seq_len=16, score_head=1)
    labels = [1.0, 0.0, 0.5, 0.8, 1.0, 0.3]
    margin, l2, micro = 0.5, 0.05, 2
    print("== 2. one rm step end to end: L=%d C=%d, %d pairs, margin %g, reward_l2 %g, "
          "micro-batch %d pairs" % (cfg["n_layer"], cfg["n_embd"], len(labels), margin, l2, micro))
    g = torch.Generator().manual_seed(11)
    seqs = []
    for i in range(2 * len(labels)):
        n = int(torch.randint(3, cfg["max_seq_len"] + 1, (1,), generator=g))
        seqs.append(torch.randint(0, cfg["vocab_size"], (n,), generator=g).tolist())
    tmp = tempfile.mkdtemp(prefix="rlaif-rm-grad-")
    P32 = ref.random_params(cfg, 3, std=0.2)
    ckpt, inp, out = (os.path.join(tmp, x) for x in ("model.h5", "in.h5", "out.h5"))
    ref.write_ckpt(ckpt, cfg, P32)
    with h5py.File(inp, "w") as f:
        f["tok"] = np.array([t for s in seqs for t in s], dtype=np.int32)
        f["off"] = np.cumsum([0] + [len(s) for s in seqs]).astype(np.int64)
        f["label"] = np.array(labels, dtype=np.float32)
        f.attrs["margin"], f.attrs["l2"], f.attrs["micro"] = margin, l2, float(micro)
    subprocess.run([RM_REF, "grad", ckpt, inp, out], check=True)

    P = {k: v.double().requires_grad_(True) for k, v in P32.items()}
    rewards = []
    for s in seqs:  # one unpadded row each: padding must not change a reward
        tok = torch.tensor([s])
        pos = torch.arange(len(s))[None]
        h = ref.trunk(P, cfg, tok, pos, torch.ones_like(tok, dtype=torch.bool))
        _, _, _, score = ref.heads(P, cfg, h, torch.full_like(tok, -1))
        rewards.append(score[0, -1])
    r = torch.stack(rewards)
    ra, rb = r[0::2], r[1::2]
    p = torch.tensor(labels, dtype=torch.float64)
    loss = bt(ra - rb, p, margin).mean() + l2 * (r ** 2).mean()
    loss.backward()
    with h5py.File(out, "r") as f:
        c_loss = float(f["loss"][0])
        c_r = f["rewards"][:]
        sums = f["sums"][:]
        grads = {k: f["grads"][k][()] for k in P}
    check("rewards (12 sequences)", ref.rel(c_r, r.detach().numpy()), 1e-5)
    check("loss", abs(c_loss - loss.item()) / abs(loss.item()), 1e-5)
    check("loss of a forward-only pass equals it", abs(sums[5] - c_loss) / abs(c_loss), 1e-6)
    worst, name = 0.0, ""
    for k in P:
        e = ref.rel(grads[k], P[k].grad.numpy())
        if e > worst:
            worst, name = e, k
    check("every gradient tensor (worst: %s)" % name, worst, 1e-4)
    # metrics: decided pairs (label != 0.5), ranked right, chosen/rejected sums
    rr = r.detach().numpy()
    dec = [i for i, q in enumerate(labels) if q != 0.5]
    right = sum((rr[2 * i] > rr[2 * i + 1]) == (labels[i] > 0.5) for i in dec)
    chosen = sum(rr[2 * i] if labels[i] > 0.5 else rr[2 * i + 1] for i in dec)
    rejected = sum(rr[2 * i + 1] if labels[i] > 0.5 else rr[2 * i] for i in dec)
    check("decided pairs and ranked right (exact)",
          abs(sums[0] - len(dec)) + abs(sums[1] - right), 0)
    check("sums of chosen and rejected rewards (relative)",
          max(abs(sums[2] - chosen) / abs(chosen), abs(sums[3] - rejected) / abs(rejected)), 1e-5)


pair_loss_grid()
end_to_end()
if failures:
    print("FAILED:", ", ".join(failures))
    sys.exit(1)
print("PASS")
