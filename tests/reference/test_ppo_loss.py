"""The arithmetic of PPO / A2C / REINFORCE (src/phases/ppo_loss.c) against
TRL's PPOTrainer formulas written here in float64 PyTorch, with autograd for
the gradients.

tests/reference/ppo_ref prints random inputs (ragged rows, one empty row,
policy ratios and values on both sides of their clip ranges) and its
outputs; this test recomputes every output:

  per-token KL (k1, k3), rewards (-kl_coef * kl, score at the last token),
  masked whitening (shift_mean on and off, unbiased variance), GAE and
  returns, RLOO advantages, the clipped policy loss with clipfrac, approxkl
  and d loss / d logp, the clipped value loss with clipfrac and
  vf_coef * d loss / d v, the adaptive KL controller; and that the losses
  and gradients of two halves of the batch, each divided by the global
  token count, add up to the whole batch's (what the learners' all-reduce
  relies on).

Tolerance: the C side reads float32 inputs, accumulates in double and
stores float32 outputs, so each output is the float64 value rounded once
(relative 6e-8) after at most T sequential float32 roundings of an
intermediate (GAE's stored values); 1e-6 relative to the array's scale
covers that with a margin and is 10^4 below any formula mistake (a wrong
sign, a missing clip, a biased variance: all >= 1e-2 here)."""
import json
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from trl_ref import gae, masked_mean, masked_whiten  # noqa: E402

BUILD = os.environ.get("top_builddir", ".")
REF = os.path.join(BUILD, "tests", "reference", "ppo_ref")
torch.set_default_dtype(torch.float64)
failures = []


def check(name, got, want, rtol=1e-6):
    got = torch.as_tensor(got, dtype=torch.float64).flatten()
    want = torch.as_tensor(want, dtype=torch.float64).flatten()
    scale = max(want.abs().max().item(), 1e-12)
    err = (got - want).abs().max().item() / scale if len(want) else 0.0
    status = "ok" if err <= rtol else "FAIL"
    print(f"{status:4} {name:18} max error {err:.2e} of scale {scale:.3g} (tolerance {rtol:g})")
    if err > rtol:
        failures.append(name)


def run(B, T, seed):
    out = subprocess.run([REF, str(B), str(T), str(seed)], check=True, capture_output=True,
                         text=True).stdout
    d = json.loads(out)
    t = {k: torch.tensor(v) for k, v in d.items() if isinstance(v, list)}
    mask = t["mask"].view(B, T)
    logp, old, ref = (t[k].view(B, T) for k in ("logp", "old_logp", "ref_logp"))
    print(f"-- B={B} T={T} seed={seed}: {int(mask.sum())} response tokens")

    # KL estimators (TRL: kl = logprobs - ref_logprobs; k3 = (exp(logr) - 1) - logr)
    k1 = (logp - ref) * mask
    logr = ref - logp
    k3 = (torch.exp(logr) - 1 - logr) * mask
    check("kl k1", t["kl1"], k1)
    check("kl k3", t["kl3"], k3)

    # rewards: non-score reward plus the score at the last real token
    rewards = -d["kl_coef"] * k1
    lengths = mask.sum(1).long()
    for b in range(B):
        if lengths[b] > 0:
            rewards[b, lengths[b] - 1] += t["score"][b]
    check("rewards", t["rewards"], rewards)
    check("whiten shift", t["whiten_shift"], masked_whiten(rewards, mask, True))
    check("whiten keep", t["whiten_keep"], masked_whiten(rewards, mask, False))

    # GAE (TRL's loop over the whole padded width; values are 0 at padding)
    values = t["v"].view(B, T) * mask
    adv = gae(rewards, values, d["gamma"], d["lam"])
    returns = adv + values
    check("gae advantages", t["adv"], adv * mask)
    check("gae returns", t["ret"], returns * mask)

    # RLOO: score minus the mean of the prompt's other samples
    k = d["k"]
    s = t["score"][: (B // k) * k].view(-1, k)
    rloo = s - (s.sum(1, keepdim=True) - s) / (k - 1)
    check("rloo", t["rloo"], rloo)

    # policy loss (TRL: max of -A r and -A clip(r)), masked mean over the batch
    lp = logp.clone().requires_grad_(True)
    A = t["adv_in"].view(B, T)
    diff = lp - old
    ratio = torch.exp(diff)
    pg1 = -A * ratio
    pg2 = -A * torch.clamp(ratio, 1 - d["eps"], 1 + d["eps"])
    pg_loss = masked_mean(torch.max(pg1, pg2), mask)
    pg_loss.backward()
    clipfrac = masked_mean((pg2 > pg1).double(), mask)
    approxkl = masked_mean(0.5 * diff.detach() ** 2, mask)
    check("policy loss", d["policy"][0], pg_loss.item())
    check("policy clipfrac", d["policy"][1], clipfrac)
    check("policy approxkl", d["policy"][2], approxkl)
    check("policy ratio", d["policy"][3], masked_mean(ratio.detach(), mask))
    check("d loss/d logp", t["dlogp"], lp.grad)
    print(f"     (clipfrac {clipfrac.item():.3f}: both branches exercised)")

    # value loss (TRL: 0.5 * max of squared errors, clipped around old values)
    v = t["v"].view(B, T).clone().requires_grad_(True)
    old_v, R = t["old_v"].view(B, T), t["ret_in"].view(B, T)
    vc = torch.clamp(v, old_v - d["eps_v"], old_v + d["eps_v"])
    l1, l2 = (v - R) ** 2, (vc - R) ** 2
    vf_loss = 0.5 * masked_mean(torch.max(l1, l2), mask)
    (d["vf_coef"] * vf_loss).backward()
    check("value loss", d["value"][0], vf_loss.item())
    check("value clipfrac", d["value"][1], masked_mean((l2 > l1).double(), mask))
    check("vf_coef d loss/d v", t["dv"], v.grad)

    # two halves with the global count add up to the whole
    check("halves policy", d["policy_halves"], d["policy"], 1e-12)
    check("halves value", d["value_halves"][:2], d["value"][:2], 1e-12)
    check("halves dlogp", t["dlogp_halves"], t["dlogp"], 0)
    check("halves dv", t["dv_halves"], t["dv"], 0)

    # adaptive KL controller (Ziegler et al.; TRL AdaptiveKLController)
    value, want = 0.05, []
    for kl in (0.5, 6.0, 12.0, 100.0):
        err = min(max(kl / 6.0 - 1, -0.2), 0.2)
        value *= 1 + err * 256 / 10000.0
        want.append(value)
    check("kl controller", d["kl_ctl"], want, 1e-14)


run(8, 12, 1)
run(16, 33, 7)
if failures:
    print("FAIL:", ", ".join(failures))
    sys.exit(1)
print("ppo_loss: every output equals the PyTorch reference")
