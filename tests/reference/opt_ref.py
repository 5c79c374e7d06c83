"""Plain-PyTorch OPT reference (float64 by default), after Hugging Face's
modeling_opt.py: learned positions with HF's offset of 2, pre- or post-LN
(do_layer_norm_before), ReLU MLP, q scaled by head_dim^-0.5, optional
project_in / project_out (word_embed_proj_dim), LM head tied to embed_tokens.

P holds OPTDecoder's state dict (HF names without "model.decoder."), plus
score.weight / score.bias for the scalar head; conf is the config.json dict.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arch_ref  # noqa: E402

LM_HEAD = "embed_tokens.weight"


def lin(P, name, x):
    y = x @ P[name + ".weight"].T
    return y + P[name + ".bias"] if name + ".bias" in P else y


def ln(P, name, x):
    return F.layer_norm(x, (x.shape[-1],), P[name + ".weight"], P[name + ".bias"], 1e-5)


def trunk(P, conf, tokens, pos, valid):
    """tokens, pos (B,T) long; valid (B,T) bool -> the LM head's input (B,T,word_embed_dim)."""
    B, T = tokens.shape
    C, NH = conf["hidden_size"], conf["num_attention_heads"]
    hd = C // NH
    pre = conf.get("do_layer_norm_before", True)
    x = P["embed_tokens.weight"][tokens]
    if "project_in.weight" in P:
        x = lin(P, "project_in", x)
    x = x + P["embed_positions.weight"][pos + 2]
    mask = arch_ref.attn_mask(valid)
    for i in range(conf["num_hidden_layers"]):
        p = "layers.%d." % i
        h = ln(P, p + "self_attn_layer_norm", x) if pre else x
        q, k, v = (lin(P, p + "self_attn.%s_proj" % n, h).view(B, T, NH, hd).transpose(1, 2)
                   for n in "qkv")
        x = x + lin(P, p + "self_attn.out_proj", arch_ref.attend(q, k, v, mask, hd ** -0.5))
        if not pre:
            x = ln(P, p + "self_attn_layer_norm", x)
        h = ln(P, p + "final_layer_norm", x) if pre else x
        x = x + lin(P, p + "fc2", torch.relu(lin(P, p + "fc1", h)))
        if not pre:
            x = ln(P, p + "final_layer_norm", x)
    if "final_layer_norm.weight" in P:
        x = ln(P, "final_layer_norm", x)
    if "project_out.weight" in P:
        x = lin(P, "project_out", x)
    return x
