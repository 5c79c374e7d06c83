"""Plain-PyTorch Llama reference (float64 by default), after Hugging Face's
modeling_llama.py (also Mistral's sliding window and Qwen2's q/k/v biases):
RMSNorm, RoPE in the rotate_half convention with the default, linear and
llama3 inverse frequencies, grouped-query attention, SwiGLU MLP, the LM head
tied to embed_tokens or a separate lm_head.weight.

P holds LlamaModel's state dict (HF names without "model."), plus
lm_head.weight and score.weight / score.bias; conf is the config.json dict.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arch_ref  # noqa: E402
from opt_ref import lin  # noqa: E402


def lm_head(conf):
    return "embed_tokens.weight" if conf.get("tie_word_embeddings", False) else "lm_head.weight"


def rms(P, name, x, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * P[name + ".weight"]


def inv_freq(conf, hd):
    """transformers' rope init functions: default, linear, llama3."""
    j = torch.arange(0, hd, 2, dtype=torch.float64)
    f = 1.0 / (conf.get("rope_theta", 10000.0) ** (j / hd))
    r = conf.get("rope_scaling") or {}
    kind = r.get("rope_type", r.get("type", "default"))
    if kind == "linear":
        return f / r["factor"]
    if kind == "llama3":
        factor, lo, hi = r["factor"], r["low_freq_factor"], r["high_freq_factor"]
        old = r["original_max_position_embeddings"]
        wavelen = 2 * math.pi / f
        scaled = torch.where(wavelen > old / lo, f / factor, f)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        return torch.where(medium, smoothed, scaled)
    assert kind == "default", kind
    return f


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * sin


def window(conf):
    if conf["model_type"] == "mistral":
        return conf.get("sliding_window") or 0
    if conf["model_type"] == "qwen2" and conf.get("use_sliding_window"):
        return conf["sliding_window"]
    return 0


def trunk(P, conf, tokens, pos, valid):
    """tokens, pos (B,T) long; valid (B,T) bool -> final RMSNorm output (B,T,C)."""
    B, T = tokens.shape
    C, NH = conf["hidden_size"], conf["num_attention_heads"]
    NKV = conf.get("num_key_value_heads") or NH
    hd, eps = C // NH, conf.get("rms_norm_eps", 1e-6)
    freqs = pos[..., None].double() * inv_freq(conf, hd)
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # (B,1,T,hd)
    cos, sin = emb.cos(), emb.sin()
    mask = arch_ref.attn_mask(valid, window(conf))
    x = P["embed_tokens.weight"][tokens]
    for i in range(conf["num_hidden_layers"]):
        p = "layers.%d." % i
        h = rms(P, p + "input_layernorm", x, eps)
        q = lin(P, p + "self_attn.q_proj", h).view(B, T, NH, hd).transpose(1, 2)
        k = lin(P, p + "self_attn.k_proj", h).view(B, T, NKV, hd).transpose(1, 2)
        v = lin(P, p + "self_attn.v_proj", h).view(B, T, NKV, hd).transpose(1, 2)
        y = arch_ref.attend(rope(q, cos, sin), rope(k, cos, sin), v, mask, hd ** -0.5)
        x = x + lin(P, p + "self_attn.o_proj", y)
        h = rms(P, p + "post_attention_layernorm", x, eps)
        g = F.silu(lin(P, p + "mlp.gate_proj", h)) * lin(P, p + "mlp.up_proj", h)
        x = x + lin(P, p + "mlp.down_proj", g)
    return rms(P, "norm", x, eps)
