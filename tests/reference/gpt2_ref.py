"""Plain-PyTorch GPT-2 reference for the engine tests (float64 by default).

Parameters use Hugging Face GPT-2 names and layouts (Conv1D weights [in, out]),
read from and written to rlaif's HDF5 checkpoint layout (/config, /params).
Padding semantics match rlaif: keys with valid == 0 are never attended to, a
query with no key gets a zero attention output, positions come from `pos`.
"""
import math

import h5py
import numpy as np
import torch
import torch.nn.functional as F

CONFIG_KEYS = ("n_layer", "n_embd", "n_head", "vocab_size", "max_seq_len", "score_head")


def param_shapes(cfg):
    C, V, T = cfg["n_embd"], cfg["vocab_size"], cfg["max_seq_len"]
    shapes = [("wte.weight", (V, C)), ("wpe.weight", (T, C))]
    for l in range(cfg["n_layer"]):
        p = "h.%d." % l
        shapes += [(p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
                   (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
                   (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
                   (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
                   (p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,)),
                   (p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,))]
    shapes += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    if cfg.get("score_head"):
        shapes += [("score.weight", (1, C)), ("score.bias", (1,))]
    return shapes


def random_params(cfg, seed, std=0.1):
    """Random weights with non-trivial biases and LayerNorm gains (float32)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in param_shapes(cfg):
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith(".bias"):
            t = 0.02 * torch.randn(shape, generator=g)
        else:
            s = std / math.sqrt(2 * cfg["n_layer"]) if "c_proj.weight" in name else std
            t = s * torch.randn(shape, generator=g)
        out[name] = t.float()
    return out


def write_ckpt(path, cfg, params):
    with h5py.File(path, "w") as f:
        f.attrs["rlaif_schema"] = np.int64(1)
        c = f.create_group("config")
        c.attrs["arch"] = np.bytes_("gpt2")
        for k in CONFIG_KEYS:
            c.attrs[k] = np.int64(cfg.get(k, 0))
        c.attrs["layer_norm_epsilon"] = 1e-5
        p = f.create_group("params")
        for name, _ in param_shapes(cfg):
            p.create_dataset(name, data=params[name].numpy().astype(np.float32))


def ln(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, 1e-5)


def trunk(P, cfg, tokens, pos, valid):
    """tokens, pos (B,T) long; valid (B,T) bool -> final LayerNorm output (B,T,C)."""
    B, T = tokens.shape
    C, NH = cfg["n_embd"], cfg["n_head"]
    hs = C // NH
    x = P["wte.weight"][tokens] + P["wpe.weight"][pos]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    mask = causal[None, None] & valid[:, None, None, :]
    for l in range(cfg["n_layer"]):
        p = "h.%d." % l
        h = ln(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"])
        qkv = h @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(~mask, float("-inf"))
        any_key = mask.any(-1, keepdim=True)
        att = torch.where(any_key, att, torch.zeros_like(att))
        att = torch.softmax(att, dim=-1) * any_key
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
        h = ln(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"])
        h = F.gelu(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
    return ln(x, P["ln_f.weight"], P["ln_f.bias"])


def heads(P, cfg, h, targets, scale=1.0):
    logits = (h @ P["wte.weight"].T) * scale
    logsm = torch.log_softmax(logits, dim=-1)
    entropy = -(logsm.exp() * logsm).sum(-1)
    t = targets.clamp(min=0)
    logp = logsm.gather(-1, t[..., None])[..., 0] * (targets >= 0)
    score = None
    if cfg.get("score_head"):
        score = (h @ P["score.weight"].T)[..., 0] + P["score.bias"][0]
    return logits, logp, entropy, score


def greedy(P, cfg, prompts, max_new, pad=0):
    """Greedy decoding without a cache: full forward each step, left padding."""
    G, Pn = len(prompts), max(len(p) for p in prompts)
    rows = [[pad] * (Pn - len(p)) + list(p) for p in prompts]
    out = [[] for _ in range(G)]
    margins = []
    with torch.no_grad():
        for s in range(max_new):
            tok = torch.tensor(rows)
            S = tok.shape[1]
            valid = torch.tensor([[t >= Pn - len(p) for t in range(S)] for p in prompts])
            pos = (valid.long().cumsum(1) - 1).clamp(min=0)
            h = trunk(P, cfg, tok, pos, valid)
            logits = h[:, -1] @ P["wte.weight"].T
            top2 = logits.topk(2, dim=-1).values
            margins.append(float((top2[:, 0] - top2[:, 1]).min()))
            nxt = logits.argmax(-1)
            for b in range(G):
                out[b].append(int(nxt[b]))
                rows[b].append(int(nxt[b]))
    return out, min(margins)


def rel(a, ref):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    d = np.linalg.norm((a - ref).ravel())
    n = np.linalg.norm(ref.ravel())
    return d / n if n > 0 else d
