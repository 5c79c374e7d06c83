"""Tiny random Hugging Face model folders (config.json, safetensors, a small
byte-level BPE tokenizer.json) for the converter, engine and e2e tests: nothing
is downloaded. Run as a script to write one:

    hf_fixture.py FOLDER {opt|llama|...} [--seed N] [--set KEY=JSON]
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from arch_ref import random_params, rlaif_hf  # noqa: E402

# HF config.json of each test model (the keys a real one has; sizes small and odd).
CONFIGS = {
    "opt": dict(model_type="opt", hidden_size=32, num_attention_heads=4, ffn_dim=80,
                num_hidden_layers=2, vocab_size=300, max_position_embeddings=40,
                word_embed_proj_dim=32, do_layer_norm_before=True, activation_function="relu",
                enable_bias=True, layer_norm_elementwise_affine=True, bos_token_id=2,
                eos_token_id=2, pad_token_id=1),
    "opt-proj-postln": dict(model_type="opt", hidden_size=48, num_attention_heads=3, ffn_dim=72,
                            num_hidden_layers=3, vocab_size=301, max_position_embeddings=24,
                            word_embed_proj_dim=24, do_layer_norm_before=False,
                            activation_function="relu"),
    "llama": dict(model_type="llama", hidden_size=32, num_attention_heads=4,
                  num_key_value_heads=4, intermediate_size=56, num_hidden_layers=2,
                  vocab_size=300, max_position_embeddings=64, rms_norm_eps=1e-6,
                  hidden_act="silu", rope_theta=10000.0, tie_word_embeddings=False,
                  bos_token_id=1, eos_token_id=2),
    "llama-gqa": dict(model_type="llama", hidden_size=48, num_attention_heads=6,
                      num_key_value_heads=2, intermediate_size=88, num_hidden_layers=3,
                      vocab_size=301, max_position_embeddings=8192, rms_norm_eps=1e-5,
                      hidden_act="silu", rope_theta=500000.0, tie_word_embeddings=True,
                      head_dim=8, rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                "original_max_position_embeddings": 16}),
    "qwen2": dict(model_type="qwen2", hidden_size=40, num_attention_heads=5,
                  num_key_value_heads=1, intermediate_size=64, num_hidden_layers=2,
                  vocab_size=299, max_position_embeddings=48, rms_norm_eps=1e-6,
                  hidden_act="silu", rope_theta=1000000.0, tie_word_embeddings=False,
                  use_sliding_window=False, sliding_window=4096, max_window_layers=2,
                  rope_scaling={"type": "linear", "factor": 2.0}),
    "mistral": dict(model_type="mistral", hidden_size=32, num_attention_heads=4,
                    num_key_value_heads=2, intermediate_size=48, num_hidden_layers=2,
                    vocab_size=300, max_position_embeddings=64, rms_norm_eps=1e-5,
                    hidden_act="silu", rope_theta=10000.0, tie_word_embeddings=False,
                    sliding_window=5),
}


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: each byte as a printable character."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tokenizer_json():
    """A byte-level BPE over the 256 bytes, a few merges, and <|endoftext|>: 256 + 8 + 1 ids."""
    alphabet = bytes_to_unicode()
    vocab = {alphabet[b]: b for b in range(256)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"),
              ("o", "n"), ("Ġ", "s")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    eos = len(vocab)
    return {"version": "1.0", "normalizer": None,
            "added_tokens": [{"id": eos, "content": "<|endoftext|>", "special": True,
                              "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False}],
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                              "trim_offsets": True, "use_regex": True},
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": "", "end_of_word_suffix": "",
                      "fuse_unk": False, "vocab": vocab,
                      "merges": [a + " " + b for a, b in merges]}}


def hf_name(conf, name):
    if name == "lm_head.weight" or name.startswith("score."):
        return name
    prefix = {"gpt2": "transformer.", "opt": "model.decoder."}.get(conf["model_type"], "model.")
    return prefix + name


def write_hf(folder, conf, seed, dtype="F32", shards=1, score=False, lm_head=True,
             tokenizer=True, edit=None):
    """Write a random model folder. Returns (rlaif config, {rlaif name: float32 tensor}) with
    the values as stored (rounded to dtype; score.bias 0, as Hugging Face's score has none).
    edit(tensors) may change the [(HF name, dtype, array)] list before it is written."""
    os.makedirs(folder, exist_ok=True)
    cfg = rlaif_hf.config_from_hf(conf, "config.json", 4096)
    cfg["score_head"] = int(score)
    shapes = rlaif_hf.param_shapes(cfg)
    params = random_params(shapes, cfg["n_layer"], seed)
    tensors = []
    for name, _ in shapes:
        a = params[name].numpy()
        if dtype == "BF16":
            a = (rlaif_hf.bf16_bits(a).astype(np.uint32) << 16).view(np.float32)
        elif dtype == "F16":
            a = a.astype(np.float16).astype(np.float32)
        params[name] = torch.from_numpy(a.copy())
        if name == "score.bias":
            params[name].zero_()
            continue
        tensors.append((hf_name(conf, name), dtype, a))
    emb = rlaif_hf.embed_name(cfg["arch"])
    if cfg["tie_embeddings"] and lm_head:  # as some checkpoints store it: a copy
        tensors.append(("lm_head.weight", dtype, params[emb].numpy()))
    if edit:
        tensors = edit(tensors)
    raw = [(n, dt, np.shape(a), a.tobytes() if dt not in rlaif_hf.DTYPES
            else rlaif_hf.encode(a, dt)) for n, dt, a in tensors]
    if shards == 1:
        rlaif_hf.write_safetensors(os.path.join(folder, "model.safetensors"), raw)
    else:
        wmap, per = {}, -(-len(raw) // shards)
        for s in range(shards):
            fn = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
            part = raw[s * per:(s + 1) * per]
            rlaif_hf.write_safetensors(os.path.join(folder, fn), part)
            wmap.update({n: fn for n, _, _, _ in part})
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": sum(len(r[3]) for r in raw)},
                       "weight_map": wmap}, f, indent=2)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(dict(conf, architectures=[rlaif_hf.CAUSAL_LM[conf["model_type"]]],
                       torch_dtype="float32"), f, indent=2)
    if tokenizer:
        with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tokenizer_json(), f, ensure_ascii=False)
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump({"eos_token": "<|endoftext|>", "model_max_length": 64}, f)
        with open(os.path.join(folder, "generation_config.json"), "w") as f:
            json.dump({"eos_token_id": conf.get("eos_token_id", 2), "do_sample": False}, f)
    return cfg, params


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("model", choices=sorted(CONFIGS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--score", action="store_true")
    ap.add_argument("--tokenizer-vocab", action="store_true",
                    help="vocab_size = the tokenizer's (no ids it cannot decode)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a config.json key")
    a = ap.parse_args()
    conf = dict(CONFIGS[a.model])
    for kv in a.set:
        key, value = kv.split("=", 1)
        conf[key] = json.loads(value)
    if a.tokenizer_vocab:
        t = tokenizer_json()
        conf = dict(conf, vocab_size=len(t["model"]["vocab"]) + len(t["added_tokens"]))
    write_hf(a.folder, conf, a.seed, score=a.score)
