"""The DPO losses and gradients against PyTorch (float64).

1. The pair loss of every variant and its derivative d loss / d h from
   rlaif_dpo_pair_loss (h = (log pi_A - log ref_A) - (log pi_B - log ref_B),
   p = P(A better)), on a grid of h (|beta h| up to 60, where a naive
   log(sigmoid) underflows), labels (hard, soft, ties), betas and label
   smoothings, against closed forms written here with
   torch.nn.functional.logsigmoid and autograd:
     sigmoid  -log s(beta h)                              (TRL loss_type sigmoid)
     cdpo     -(1 - e) log s(beta h) - e log s(-beta h)   (TRL sigmoid + label_smoothing)
     ipo      (h - 1/(2 beta))^2                          (TRL loss_type ipo, IPO eq. 17)
   for A preferred, and p l(h) + (1 - p) l(-h) for a label p: within 1e-12
   relative (the C code is double precision too), 1e-16 absolute where the
   exact value is 0.
2. One step of the dpo phase end to end on a tiny GPT-2 (random weights,
   tests/reference/gpt2_ref.py) for each variant: six pairs with prompts and ragged
   responses, labels 1, 0, 0.5, 0.8, 1, 0.3, given reference log-probs,
   micro-batches of 2 pairs (so the global normalisation across
   micro-batches is exercised): the policy's sequence log-probs (sum over
   the response tokens and EOS, prompt excluded) and the loss within 1e-5
   relative, every parameter gradient tensor within 1e-4 relative (float32
   C vs float64 PyTorch, as tests/reference/test_engine.py), the metric sums (decided
   pairs, implicit rewards ranked right, chosen/rejected rewards and
   log-probs) against the same numbers in PyTorch.
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
DPO_REF = os.path.join(BUILD, "tests", "reference", "dpo_ref")
KINDS = {"sigmoid": 0, "ipo": 1, "cdpo": 2}
failures = []


def check(what, value, tol):
    ok = value <= tol
    print("%-60s %.3e  (tol %.0e)  %s" % (what, value, tol, "ok" if ok else "FAIL"))
    if not ok:
        failures.append(what)


def hard(kind, h, beta, eps):
    """The loss with A preferred, as TRL writes it."""
    if kind == "sigmoid":
        return -F.logsigmoid(beta * h)
    if kind == "cdpo":
        return -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    return (h - 1 / (2 * beta)) ** 2


def pair_loss(kind, h, p, beta, eps):
    return p * hard(kind, h, beta, eps) + (1 - p) * hard(kind, -h, beta, eps)


def loss_grid():
    print("== 1. pair loss and d(loss)/dh, every variant")
    rows = []
    for kind in KINDS:
        for beta in [0.1, 0.5, 1.0]:
            for eps in ([0.1, 0.25] if kind == "cdpo" else [0.0]):
                for h in [-600.0, -60.0, -7.5, -1.0, -0.1, 0.0, 0.3, 2.0, 5.0, 9.0, 60.0, 600.0]:
                    for p in [0.0, 1.0, 0.5, 0.8, 0.25]:
                        rows.append((kind, beta, eps, h, p))
    text = "".join("%d %.17g %.17g %.17g %.17g\n" % ((KINDS[r[0]],) + r[1:]) for r in rows)
    out = subprocess.run([DPO_REF, "loss"], input=text, capture_output=True, text=True, check=True)
    got = np.array([[float(x) for x in line.split()] for line in out.stdout.splitlines()])
    if len(got) != len(rows):
        failures.append("dpo_ref loss printed %d lines for %d cases" % (len(got), len(rows)))
        return
    worst = {}
    for (kind, beta, eps, h, p), (loss, dh) in zip(rows, got):
        x = torch.tensor(h, dtype=torch.float64, requires_grad=True)
        r = pair_loss(kind, x, p, beta, eps)
        r.backward()
        # relative, except where the exact value is 0 (a tie at h = 0, where
        # PyTorch's own rounding leaves 3.5e-18): absolute there
        w = worst.setdefault(kind, [0.0, 0.0, 0.0, 0])
        for c, a, b in ((0, loss, r.item()), (1, dh, x.grad.item())):
            if abs(b) > 1e-15:
                w[c] = max(w[c], abs(a - b) / abs(b))
            else:
                w[2] = max(w[2], abs(a - b))
        w[3] += 1
    for kind, (el, eg, ez, n) in worst.items():
        check("%s: loss vs torch, %d cases (relative)" % (kind, n), el, 1e-12)
        check("%s: d loss / dh vs autograd (relative)" % kind, eg, 1e-12)
        check("%s: where the exact value is 0 (absolute)" % kind, ez, 1e-16)


def seq_logp(P, cfg, ids, plen):
    """Sum of log p(ids[t] | ids[:t]) over t >= plen (response + EOS), one unpadded row."""
    tok = torch.tensor([ids[:-1]])
    h = ref.trunk(P, cfg, tok, torch.arange(len(ids) - 1)[None], torch.ones_like(tok, dtype=bool))
    tgt = torch.tensor([[t if i + 1 >= plen else -1 for i, t in enumerate(ids[1:])]])
    _, logp, _, _ = ref.heads(P, cfg, h, tgt)
    return logp.sum()


def end_to_end(kind, beta, eps):
    cfg = dict(n_layer=2, n_embd=16, n_head=2, vocab_size=40, max_seq_len=16, score_head=0)
    labels = [1.0, 0.0, 0.5, 0.8, 1.0, 0.3]
    micro = 2
    print("== 2. one dpo step end to end (%s, beta %g%s): L=%d C=%d, %d pairs, micro-batch %d"
          % (kind, beta, ", eps %g" % eps if kind == "cdpo" else "", cfg["n_layer"],
             cfg["n_embd"], len(labels), micro))
    g = torch.Generator().manual_seed(13)
    seqs, plens = [], []
    for i in range(len(labels)):
        np_ = int(torch.randint(2, 7, (1,), generator=g))
        prompt = torch.randint(0, cfg["vocab_size"], (np_,), generator=g).tolist()
        for _ in range(2):  # A and B share the prompt, responses differ in length
            n = int(torch.randint(1, cfg["max_seq_len"] - np_ + 1, (1,), generator=g))
            seqs.append(prompt + torch.randint(0, cfg["vocab_size"], (n,), generator=g).tolist())
            plens.append(np_)
    tmp = tempfile.mkdtemp(prefix="rlaif-dpo-grad-")
    P32 = ref.random_params(cfg, 5, std=0.2)
    ckpt, inp, out = (os.path.join(tmp, x) for x in ("model.h5", "in.h5", "out.h5"))
    ref.write_ckpt(ckpt, cfg, P32)
    P = {k: v.double().requires_grad_(True) for k, v in P32.items()}
    lp = torch.stack([seq_logp(P, cfg, s, n) for s, n in zip(seqs, plens)])
    # reference log-probs: the policy's, moved by up to +-3 nats, so h is away from 0
    refs = lp.detach() + 3 * (2 * torch.rand(len(seqs), generator=g, dtype=torch.float64) - 1)
    with h5py.File(inp, "w") as f:
        f["tok"] = np.array([t for s in seqs for t in s], dtype=np.int32)
        f["off"] = np.cumsum([0] + [len(s) for s in seqs]).astype(np.int64)
        f["plen"] = np.array(plens, dtype=np.int32)
        f["label"] = np.array(labels, dtype=np.float32)
        f["ref"] = refs.numpy()
        f.attrs["kind"], f.attrs["beta"] = float(KINDS[kind]), beta
        f.attrs["eps"], f.attrs["micro"] = eps, float(micro)
    subprocess.run([DPO_REF, "grad", ckpt, inp, out], check=True, stdout=subprocess.DEVNULL)

    p = torch.tensor(labels, dtype=torch.float64)
    h = (lp[0::2] - refs[0::2]) - (lp[1::2] - refs[1::2])
    loss = pair_loss(kind, h, p, beta, eps).mean()
    loss.backward()
    with h5py.File(out, "r") as f:
        c_loss, c_lp, sums = float(f["loss"][0]), f["logps"][:], f["sums"][:]
        grads = {k: f["grads"][k][()] for k in P}
    check("sequence log-probs (12 responses, prompt excluded)", ref.rel(c_lp, lp.detach().numpy()),
          1e-5)
    check("loss", abs(c_loss - loss.item()) / abs(loss.item()), 1e-5)
    worst, name = 0.0, ""
    for k in P:
        e = ref.rel(grads[k], P[k].grad.numpy())
        if e > worst:
            worst, name = e, k
    check("every gradient tensor (worst: %s)" % name, worst, 1e-4)
    # metrics: TRL's implicit rewards beta (log pi - log ref) of the label's side
    rw = (beta * (lp - refs)).detach().numpy()
    lpn = lp.detach().numpy()
    dec = [i for i, q in enumerate(labels) if q != 0.5]
    side = {i: (2 * i, 2 * i + 1) if labels[i] > 0.5 else (2 * i + 1, 2 * i) for i in dec}
    right = sum(rw[c] > rw[r] for c, r in (side[i] for i in dec))
    expect = np.array([len(dec), right, sum(rw[side[i][0]] for i in dec),
                       sum(rw[side[i][1]] for i in dec), sum(lpn[side[i][0]] for i in dec),
                       sum(lpn[side[i][1]] for i in dec)])
    check("decided pairs and rewards ranked right (exact)",
          abs(sums[0] - expect[0]) + abs(sums[1] - expect[1]), 0)
    check("sums of rewards and log-probs, chosen and rejected",
          float(np.max(np.abs(sums[2:6] - expect[2:]) / np.abs(expect[2:]))), 1e-5)


loss_grid()
end_to_end("sigmoid", 0.1, 0.0)
end_to_end("cdpo", 0.5, 0.2)
end_to_end("ipo", 0.5, 0.0)
if failures:
    print("FAILED:", ", ".join(failures))
    sys.exit(1)
print("PASS")
