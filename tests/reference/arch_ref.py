"""Pieces the plain-PyTorch references (gpt2_ref, opt_ref, llama_ref) share:
rlaif's attention masking, grouped-query attention, the LM / scalar heads,
cache-free greedy decoding, loading a Hugging Face folder, and the relative error.

Padding semantics match rlaif: keys with valid == 0 are never attended to, a
query with no key gets a zero attention output, positions come from `pos`.
"""
import math
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                                "user"))
import rlaif_hf  # noqa: E402  (only its safetensors reader)

# Hugging Face's base_model_prefix of each model_type's ...ForCausalLM: what is left is the
# inner model's state dict (GPT2Model, OPTDecoder, LlamaModel), the references' names.
HF_PREFIX = {"gpt2": "transformer.", "opt": "model.decoder.", "llama": "model.",
             "mistral": "model.", "qwen2": "model."}


OUT_PROJ = re.compile(r"(c_proj|out_proj|o_proj|down_proj|fc2)\.weight$")


def random_params(shapes, n_layer, seed, std=0.1):
    """Random float32 weights for [(name, shape)]: norm gains near 1, small biases, output
    projections scaled down by sqrt(2 L) as GPT-2 initialises them."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes:
        if len(shape) == 1 and name.endswith(".weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith(".bias"):
            t = 0.02 * torch.randn(shape, generator=g)
        else:
            s = std / math.sqrt(2 * n_layer) if OUT_PROJ.search(name) else std
            t = s * torch.randn(shape, generator=g)
        out[name] = t.float()
    return out


def attn_mask(valid, window=0):
    """(B,1,T,T) bool: causal, real keys only, and t - s < window when window > 0."""
    T = valid.shape[1]
    t = torch.arange(T)
    m = t[None, :] <= t[:, None]
    if window:
        m &= (t[:, None] - t[None, :]) < window
    return m[None, None] & valid[:, None, None, :]


def attend(q, k, v, mask, scale):
    """q (B,NH,T,hd); k, v (B,NKV,T,hd), query head h reads kv head h // (NH / NKV)."""
    B, NH, T, hd = q.shape
    rep = NH // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    att = (q @ k.transpose(-2, -1)) * scale
    att = att.masked_fill(~mask, float("-inf"))
    any_key = mask.any(-1, keepdim=True)
    att = torch.where(any_key, att, torch.zeros_like(att))
    att = torch.softmax(att, dim=-1) * any_key
    return (att @ v).transpose(1, 2).reshape(B, T, NH * hd)


def heads(P, h, targets, lm_name, scale=1.0):
    """logits, logprob of targets (0 where target < 0), entropy, scalar head (or None)."""
    logits = (h @ P[lm_name].T) * scale
    logsm = torch.log_softmax(logits, dim=-1)
    entropy = -(logsm.exp() * logsm).sum(-1)
    t = targets.clamp(min=0)
    logp = logsm.gather(-1, t[..., None])[..., 0] * (targets >= 0)
    score = None
    if "score.weight" in P:
        score = (h @ P["score.weight"].T)[..., 0] + P["score.bias"][0]
    return logits, logp, entropy, score


def greedy(last_logits, prompts, max_new, pad=0):
    """Greedy decoding without a cache, left padding: last_logits(tokens, pos, valid) -> (B,V)
    for the last column. Returns the tokens and the smallest top-2 logit gap seen."""
    G, Pn = len(prompts), max(len(p) for p in prompts)
    rows = [[pad] * (Pn - len(p)) + list(p) for p in prompts]
    out = [[] for _ in range(G)]
    margins = []
    with torch.no_grad():
        for _ in range(max_new):
            tok = torch.tensor(rows)
            S = tok.shape[1]
            valid = torch.tensor([[t >= Pn - len(p) for t in range(S)] for p in prompts])
            pos = (valid.long().cumsum(1) - 1).clamp(min=0)
            logits = last_logits(tok, pos, valid)
            top2 = logits.topk(2, dim=-1).values
            margins.append(float((top2[:, 0] - top2[:, 1]).min()))
            nxt = logits.argmax(-1)
            for b in range(G):
                out[b].append(int(nxt[b]))
                rows[b].append(int(nxt[b]))
    return out, min(margins)


def load_hf(folder):
    """A Hugging Face folder -> (config.json dict, {inner-model name: float64 tensor}); the
    ...ForCausalLM prefix is dropped, lm_head.weight and score.* keep their names."""
    import json
    with open(os.path.join(folder, "config.json")) as f:
        conf = json.load(f)
    prefix = HF_PREFIX[conf["model_type"]]
    t = rlaif_hf.Tensors(folder)
    P = {}
    for name in t.names():
        short = name[len(prefix):] if name.startswith(prefix) else name
        P[short] = torch.from_numpy(np.array(t.load(name))).double()
    return conf, P


def rel(a, ref):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    d = np.linalg.norm((a - ref).ravel())
    n = np.linalg.norm(ref.ravel())
    return d / n if n > 0 else d
