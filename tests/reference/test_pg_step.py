"""One update step of ppo, a2c and reinforce end to end against PyTorch (float64).

tests/reference/pg_ref builds, from a seed, a tiny GPT-2 policy with a value
head and a second model as the frozen reference and reward model; 12
sequences, 3 per prompt, ragged prompts (1-6 tokens) and responses (1-8
tokens; one response a single EOS, one cut at 8 tokens without EOS); scores
them through rlaif_lp_forward as ppo.c does (for ppo it then moves the stored
log-probs and values by N(0, 0.3) noise, as if the policy had changed since
sampling, so that ratios and values leave their clip ranges); computes the
advantages with rlaif_pg_advantages; and runs one minibatch of 6 of the 12
sequences through rlaif_pg_chunk in 2 chunks of 3, each normalised by the
minibatch's token count. Its inputs and outputs are in one HDF5 file.

This test recomputes everything from those inputs with TRL's formulas
(PPOTrainer, RLOOTrainer; GRPO's group normalisation), in float64 with
autograd through tests/reference/gpt2_ref.py:
  - the scoring: the reference's log-probs and the reward model's value at
    the last token (normalised by mean and std, minus the missing-EOS
    penalty), the policy's log-probs and values before the noise;
  - the per-token KL (k1 = logp - ref, k3 = exp(ref - logp) - 1 - (ref - logp));
  - ppo, a2c: rewards -kl_coef * kl with the score added at the last
    response token, whitened with shift_mean=False when asked, GAE(gamma,
    lam) with the value after the last token 0 (the episode ends there; TRL
    reads one padding position further, which ppo_loss.h does not), returns
    A + V, advantages whitened (unbiased variance, shift_mean=True);
  - reinforce: R = score - kl_coef * sum(kl); loo: R - mean of the prompt's
    other samples; group: (R - prompt mean) / (unbiased std + 1e-4); moving:
    R - b, then b <- 0.9 b + 0.1 mean(R); the advantage of every token;
  - the minibatch's loss: masked means over its response tokens of
    max(-A r, -A clip(r, 1 - eps, 1 + eps)) with r = exp(logp - old_logp),
    0.5 max((v - R)^2, (clip(v, old_v - c, old_v + c) - R)^2) and the
    entropy of the full softmax; loss = policy + vf_coef value - ent_coef
    entropy (a2c and reinforce with the clip ranges at 1e30 as ppo_cmd.c
    sets them, reinforce without the value term), backward to every
    parameter.
Checks: the scoring and the advantages and returns within 1e-5 relative to
the array's scale; the seven metric sums (loss/policy, loss/value,
policy/clipfrac, policy/approxkl, val/clipfrac, val/vpred, policy/entropy)
within 1e-5; every parameter gradient tensor within 1e-4 relative (norm of
the difference over the norm; score.* exactly 0 for reinforce). For ppo,
clipfrac > 0 and val/clipfrac > 0 (both clip branches are taken), for a2c and
reinforce both are 0.

Tolerances: the C side is float32 with double accumulation of the losses,
this side float64. The scoring and the advantages are a float32 forward (or
a float32 input) followed by O(10) float32 roundings, ~1e-6 of the scale;
the gradients are sums of a few hundred float32 products through 2 layers,
~1e-6-1e-5 relative (tests/reference/test_engine.py measures the same
engine), so 1e-5 and 1e-4 leave a margin while a formula mistake (a dropped
entropy bonus, a sign flipped in the value gradient, a count normalising one
chunk instead of the minibatch) moves them by 1e-2 or more. A clip decision
taken differently in float32 and float64 would move a gradient by a whole
token's share, so the test first checks that every ratio and value is at
least 1e-4 away from where a decision flips (its printed margin).
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
from trl_ref import gae, masked_mean, masked_whiten  # noqa: E402

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
BUILD = os.environ.get("top_builddir", ".")
PG_REF = os.path.join(BUILD, "tests", "reference", "pg_ref")
SEED = 5
MARGIN = 1e-4
failures = []


def check(what, err, tol):
    ok = err <= tol
    print("  %-58s %.3e  (tol %.0e)  %s" % (what, err, tol, "ok" if ok else "FAIL"))
    if not ok:
        failures.append(what)


def close(what, got, want, tol):
    """Max error relative to the scale of want (max |want|)."""
    got = np.asarray(got, dtype=np.float64).ravel()
    want = np.asarray(want, dtype=np.float64).ravel()
    scale = max(float(np.abs(want).max()), 1e-12)
    check(what, float(np.abs(got - want).max()) / scale, tol)


def load(path):
    with h5py.File(path, "r") as f:
        d = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        d["cfg"] = {k: int(f["config"].attrs[k]) for k in ref.CONFIG_KEYS}
        for g in ("policy", "ref", "grads"):
            d[g] = {k: torch.tensor(f[g][k][()], dtype=torch.float64) for k in f[g]}
        d.update({k: float(v) for k, v in f.attrs.items()})
    return d


def forward(P, cfg, ids, plen, n):
    """One unpadded sequence: the response's log-probs, entropies, values
    (response token j is predicted at position plen - 1 + j) and the value
    at the last token."""
    tok = torch.tensor([ids])
    T = len(ids)
    h = ref.trunk(P, cfg, tok, torch.arange(T)[None], torch.ones_like(tok, dtype=bool))
    tgt = torch.tensor([ids[1:] + [-1]])
    _, logp, ent, val = ref.heads(P, cfg, h, tgt)
    sl = slice(plen - 1, plen - 1 + n)
    return logp[0, sl], ent[0, sl], val[0, sl], val[0, T - 1]


def padded(rows, W):
    out = torch.zeros(len(rows), W)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def advantages(d, logp, refl, value, score, mask):
    """TRL's advantages (see the docstring) from the experience as stored."""
    diff = logp - refl
    kl = (diff if d["kl_estimator"] == 0 else torch.expm1(-diff) + diff) * mask
    N, W, K = mask.shape[0], mask.shape[1], int(d["K"])
    moving = d["moving_before"]
    if d["algo"] == 1:  # reinforce
        R = score - d["kl_coef"] * kl.sum(1)
        g = R.view(-1, K)
        if d["baseline"] == 0:
            a = g - (g.sum(1, keepdim=True) - g) / (K - 1)
        elif d["baseline"] == 1:
            a = (g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)
        else:
            a = R - moving
            moving = (1 - d["moving_rate"]) * moving + d["moving_rate"] * R.mean().item()
        return kl, a.reshape(N, 1) * mask, torch.zeros(N, W), moving
    rewards = -d["kl_coef"] * kl
    last = mask.sum(1).long() - 1
    rewards[torch.arange(N), last] += score
    if d["whiten"]:
        rewards = masked_whiten(rewards, mask, False)
    values = value * mask
    adv = gae(rewards, values, d["gamma"], d["lam"])
    ret = (adv + values) * mask
    return kl, masked_whiten(adv, mask, True), ret, moving


def margins(d, new_logp, new_v, old, oldv, R, mask):
    """Distance of every masked token from a clip decision's flip point."""
    m = mask > 0
    out = [float("inf")]
    if d["cliprange"] < 1e29:
        r = torch.exp(new_logp - old)
        out.append(float(torch.minimum((r - 1 - d["cliprange"]).abs(),
                                       (r - 1 + d["cliprange"]).abs())[m].min()))
    if d["vf_coef"] > 0 and d["cliprange_value"] < 1e29:
        c = d["cliprange_value"]
        vc = torch.clamp(new_v, oldv - c, oldv + c)
        edge = torch.minimum((new_v - oldv - c).abs(), (new_v - oldv + c).abs())
        out.append(float(edge[m].min()))
        out_of_range = m & (vc != new_v)
        if out_of_range.any():
            out.append(float(((new_v - R) ** 2 - (vc - R) ** 2).abs()[out_of_range].min()))
    return min(out)


def variant(name):
    tmp = tempfile.mkdtemp(prefix="rlaif-pg-step-")
    out = os.path.join(tmp, "out.h5")
    printed = subprocess.run([PG_REF, name, str(SEED), out], check=True, capture_output=True,
                             text=True).stdout
    d = load(out)
    cfg, W = d["cfg"], int(d["W"])
    off, plen, L = d["off"], d["plen"], d["len"]
    N = len(plen)
    print("== %s: %d sequences of %d response tokens at most, minibatch %s, count %d"
          % (name, N, W, list(d["rows"]), d["count"]))
    print("   C: " + printed.strip())
    ids = [d["tok"][off[i]:off[i + 1]].tolist() for i in range(N)]
    mask = torch.tensor(d["mask"]).view(N, W)
    t = {k: torch.tensor(d[k], dtype=torch.float64).view(N, W)
         for k in ("logp", "ref_logp", "value", "fwd_logp", "fwd_value")}

    # the scoring: reference log-probs, reward, the policy before the noise
    Pp = {k: v.clone().requires_grad_(True) for k, v in d["policy"].items()}
    with torch.no_grad():
        rf = [forward(d["ref"], cfg, ids[i], plen[i], L[i]) for i in range(N)]
        pf = [forward(Pp, cfg, ids[i], plen[i], L[i]) for i in range(N)]
    raw = torch.stack([r[3] for r in rf])
    score = (raw - d["rm_mean"]) / d["rm_std"] - d["eos_penalty"] * (1 - torch.tensor(d["eos"]))
    close("reference log-probs", d["ref_logp"], padded([r[0] for r in rf], W), 1e-5)
    close("raw reward (value at the last token)", d["raw"], raw, 1e-5)
    close("score (normalised, missing-EOS penalty)", d["score"], score, 1e-5)
    close("policy log-probs", d["fwd_logp"], padded([p[0] for p in pf], W), 1e-5)
    close("policy entropies", d["ent"], padded([p[1] for p in pf], W), 1e-5)
    close("policy values", d["fwd_value"], padded([p[2] for p in pf], W), 1e-5)
    check("%d responses without EOS, %d of a single token" % (int((d["eos"] == 0).sum()),
                                                              int((L == 1).sum())),
          0 if (d["eos"] == 0).any() and (L == 1).any() else 1, 0)

    # the advantages, from the experience as stored (C's float32 inputs)
    sc = torch.tensor(d["score"], dtype=torch.float64)
    kl, adv, ret, moving = advantages(d, t["logp"], t["ref_logp"], t["value"], sc, mask)
    close("per-token kl", d["kl"], kl, 1e-5)
    close("mean sequence kl", d["mean_kl"], kl.sum() / N, 1e-5)
    close("advantages", d["adv"], adv, 1e-5)
    if d["algo"] != 1:
        close("returns", d["ret"], ret, 1e-5)
    else:
        check("returns are 0 (no value loss)", float(np.abs(d["ret"]).max()), 0)
        close("moving baseline after the iteration", d["moving"], moving, 1e-6)
        if d["baseline"] == 2:
            check("the moving baseline moved", 0 if d["moving"] != d["moving_before"] else 1, 0)

    # the minibatch step, with autograd
    rows = [int(r) for r in d["rows"]]
    mb = [forward(Pp, cfg, ids[i], plen[i], L[i]) for i in rows]
    new_logp, ent, new_v = (padded([m[k] for m in mb], W) for k in range(3))
    mm, old, oldv = mask[rows], t["logp"][rows], t["value"][rows]
    A, R = adv[rows], ret[rows]
    count = mm.sum()
    check("count = the minibatch's response tokens", abs(count.item() - d["count"]), 0)
    with torch.no_grad():
        mg = margins(d, new_logp, new_v, old, oldv, R, mm)
    check("clip decisions at least %g from their flip (margin %.2e)" % (MARGIN, mg),
          0 if mg >= MARGIN else 1, 0)
    eps, c = d["cliprange"], d["cliprange_value"]
    ratio = torch.exp(new_logp - old)
    pg1, pg2 = -A * ratio, -A * torch.clamp(ratio, 1 - eps, 1 + eps)
    pg_loss = masked_mean(torch.max(pg1, pg2), mm)
    vc = torch.clamp(new_v, oldv - c, oldv + c)
    vf1, vf2 = (new_v - R) ** 2, (vc - R) ** 2
    vf_loss = 0.5 * masked_mean(torch.max(vf1, vf2), mm)
    entropy = masked_mean(ent, mm)
    if d["kl_loss_coef"] > 0:  # ppo.kl_penalty = loss (GRPO): the KL a loss term
        dk = new_logp - t["ref_logp"][rows]
        kl_t = dk if d["kl_estimator"] == 0 else torch.expm1(-dk) + dk
        pg_loss = pg_loss + d["kl_loss_coef"] * masked_mean(kl_t, mm)
    loss = pg_loss - d["ent_coef"] * entropy
    if d["vf_coef"] > 0:
        loss = loss + d["vf_coef"] * vf_loss
    loss.backward()
    with torch.no_grad():
        terms = [pg_loss, vf_loss, masked_mean((pg2 > pg1).double(), mm),
                 masked_mean(0.5 * (new_logp - old) ** 2, mm),
                 masked_mean((vf2 > vf1).double(), mm), masked_mean(new_v, mm), entropy]
    if d["vf_coef"] == 0:
        terms[1] = terms[4] = terms[5] = torch.tensor(0.0)
    names = ["loss/policy", "loss/value", "policy/clipfrac", "policy/approxkl", "val/clipfrac",
             "val/vpred", "policy/entropy"]
    for k, nm in enumerate(names):
        want = terms[k].item()
        err = abs(d["terms"][k] - want) / max(abs(want), 1e-3)
        check("%s = %.6g" % (nm, want), err, 1e-5)
    cf, vcf = d["terms"][2], d["terms"][4]
    if d["algo"] == 0:
        check("ppo: clipfrac %.3f > 0 and val/clipfrac %.3f > 0" % (cf, vcf),
              0 if cf > 0 and vcf > 0 else 1, 0)
    else:
        check("%s: no clipping (clipfrac %.3f, val/clipfrac %.3f)" % (name, cf, vcf),
              abs(cf) + abs(vcf), 0)
    worst, wname = 0.0, ""
    for k, p in Pp.items():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        e = ref.rel(d["grads"][k].numpy(), g.numpy())
        if e > worst:
            worst, wname = e, k
    check("every gradient tensor (%d; worst: %s)" % (len(Pp), wname), worst, 1e-4)


for v in ("ppo-k1", "ppo-k3", "a2c", "reinforce-loo", "reinforce-group", "reinforce-moving",
          "reinforce-group-klloss"):
    variant(v)
if failures:
    print("FAILED:", ", ".join(failures))
    sys.exit(1)
print("PASS")
