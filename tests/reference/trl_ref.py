"""TRL's PPOTrainer formulas in plain PyTorch, shared by the policy-gradient
reference tests (test_ppo_loss.py: the per-token arithmetic; test_pg_step.py:
one update step end to end). Tensors are [B, T] rows of responses padded
with mask 0; every function works in the caller's dtype (float64 there)."""
import torch


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum()


def masked_var(x, mask):  # TRL: unbiased (Bessel) masked variance
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return var * mask.sum() / (mask.sum() - 1)


def masked_whiten(x, mask, shift_mean=True):
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    w = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        w = w + mean
    return torch.where(mask > 0, w, torch.zeros_like(w))


def gae(rewards, values, gamma, lam):
    """TRL's GAE loop over the whole padded width. values must be 0 at the
    padding, so the value after a row's last token is 0. Returns the
    advantages, unmasked."""
    B, T = rewards.shape
    lastgaelam = torch.zeros(B, dtype=rewards.dtype)
    rev = []
    for s in reversed(range(T)):
        nextvalues = values[:, s + 1] if s < T - 1 else torch.zeros(B, dtype=rewards.dtype)
        delta = rewards[:, s] + gamma * nextvalues - values[:, s]
        lastgaelam = delta + gamma * lam * lastgaelam
        rev.append(lastgaelam)
    return torch.stack(rev[::-1], 1)
