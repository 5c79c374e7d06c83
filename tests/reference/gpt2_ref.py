"""Plain-PyTorch GPT-2 reference for the engine tests (float64 by default).

Parameters use Hugging Face GPT-2 names and layouts (Conv1D weights [in, out]),
read from and written to rlaif's HDF5 checkpoint layout (/config, /params).
Padding semantics match rlaif: keys with valid == 0 are never attended to, a
query with no key gets a zero attention output, positions come from `pos`.
"""
import math
import os
import sys

import h5py
import numpy as np
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from arch_ref import attend, attn_mask, rlaif_hf  # noqa: E402
import arch_ref  # noqa: E402

rel = arch_ref.rel  # the tests' relative error, kept under this module's name

CONFIG_KEYS = ("n_layer", "n_embd", "n_head", "vocab_size", "max_seq_len", "score_head")


def param_shapes(cfg):
    return rlaif_hf.param_shapes(dict(cfg, arch="gpt2"))


def random_params(cfg, seed, std=0.1):
    return arch_ref.random_params(param_shapes(cfg), cfg["n_layer"], seed, std)


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
    mask = attn_mask(valid)
    for l in range(cfg["n_layer"]):
        p = "h.%d." % l
        h = ln(x, P[p + "ln_1.weight"], P[p + "ln_1.bias"])
        qkv = h @ P[p + "attn.c_attn.weight"] + P[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
        y = attend(q, k, v, mask, 1 / math.sqrt(hs))
        x = x + y @ P[p + "attn.c_proj.weight"] + P[p + "attn.c_proj.bias"]
        h = ln(x, P[p + "ln_2.weight"], P[p + "ln_2.bias"])
        h = F.gelu(h @ P[p + "mlp.c_fc.weight"] + P[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ P[p + "mlp.c_proj.weight"] + P[p + "mlp.c_proj.bias"]
    return ln(x, P["ln_f.weight"], P["ln_f.bias"])


def heads(P, cfg, h, targets, scale=1.0):
    if not cfg.get("score_head"):
        P = {k: v for k, v in P.items() if not k.startswith("score.")}
    return arch_ref.heads(P, h, targets, "wte.weight", scale)


def greedy(P, cfg, prompts, max_new, pad=0):
    """Greedy decoding without a cache: full forward each step, left padding."""
    def last(tok, pos, valid):
        return trunk(P, cfg, tok, pos, valid)[:, -1] @ P["wte.weight"].T
    return arch_ref.greedy(last, prompts, max_new, pad)
