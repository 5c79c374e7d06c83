"""Judge models for the local judge's tests (judge.backend = local), written as
Hugging Face folders by hf_fixture.write_hf and imported with tools/user/hf-to-rlaif:

  words_tokenizer()  a byte-level BPE whose merges make "The", " better",
                     " response", " is", " A" and " B" single tokens (so the
                     logprob prefix ends in ":" and " A" / " B" are the labels)
  write_always_b()   a Llama whose weights answer "The better response is: B"
                     whatever it reads: one-hot embeddings, every attention and
                     MLP output zero (the residual stream is the current token's
                     one-hot), and an LM head that is a bigram table: any token
                     -> "The", and along the chain The -> " better" -> " response"
                     -> " is" -> ":" -> " B" -> <|endoftext|> with a larger logit
  write_random()     a random Llama with the words tokenizer, or an OPT with
                     hf_fixture's tokenizer (no single-token " A": the prefix
                     then ends in the space and "A" / "a" are the labels)
  import_ckpt()      hf-to-rlaif into an rlaif checkpoint
"""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_fixture as fx  # noqa: E402

WORDS = ["The", "Ġbetter", "Ġresponse", "Ġis", "ĠA", "ĠB"]
CHAIN = ["The", "Ġbetter", "Ġresponse", "Ġis", ":", "ĠB", "<|endoftext|>"]


def words_tokenizer():
    t = fx.tokenizer_json()
    vocab = {k: v for k, v in t["model"]["vocab"].items() if v < 256}
    merges = []
    for w in WORDS:  # left to right: each prefix of a word is a token
        for i in range(2, len(w) + 1):
            a, b = w[:i - 1], w[i - 1]
            if w[:i] not in vocab:
                merges.append(a + " " + b)
                vocab[w[:i]] = len(vocab)
    eos = len(vocab)
    t["model"]["vocab"], t["model"]["merges"] = vocab, merges
    t["added_tokens"][0]["id"] = eos
    return t


def write_tokenizer(folder, t):
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(t, f, ensure_ascii=False)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>"}, f)


def vocab_of(t):
    v = dict(t["model"]["vocab"])
    v.update({a["content"]: a["id"] for a in t["added_tokens"]})
    return v


def llama_conf(V, C, layers=1, heads=4, inner=8):
    return dict(model_type="llama", hidden_size=C, num_attention_heads=heads,
                num_key_value_heads=heads, intermediate_size=inner, num_hidden_layers=layers,
                vocab_size=V, max_position_embeddings=4096, rms_norm_eps=1e-6,
                hidden_act="silu", rope_theta=10000.0, tie_word_embeddings=False,
                bos_token_id=0, eos_token_id=V - 1)


def write_always_b(folder):
    t = words_tokenizer()
    ids = vocab_of(t)
    V = len(ids)
    C = (V + 3) // 4 * 4
    conf = llama_conf(V, C)

    def edit(tensors):
        out = []
        for name, dt, a in tensors:
            a = np.zeros_like(a)
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                a[:] = 1.0
            elif name == "model.embed_tokens.weight":
                a[np.arange(V), np.arange(V)] = 1.0  # token v is the unit vector v
            elif name == "lm_head.weight":  # logit of next = row, given current = column
                a[ids["The"], :V] = 10.0
                for cur, nxt in zip(CHAIN, CHAIN[1:]):
                    a[ids[nxt], ids[cur]] = 30.0
            out.append((name, dt, a))
        return out

    fx.write_hf(folder, conf, 1, tokenizer=False, lm_head=False, edit=edit)
    write_tokenizer(folder, t)


def write_random(folder, arch, seed=5):
    if arch == "llama":
        t = words_tokenizer()
        conf = llama_conf(len(vocab_of(t)), 32, layers=2, heads=4, inner=56)
        fx.write_hf(folder, conf, seed, tokenizer=False)
        write_tokenizer(folder, t)
    else:
        t = fx.tokenizer_json()
        conf = dict(fx.CONFIGS["opt"], max_position_embeddings=4096,
                    vocab_size=len(vocab_of(t)))
        fx.write_hf(folder, conf, seed)
    return conf, t


def import_ckpt(folder, out, rlaif):
    tool = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "user",
                        "hf-to-rlaif")
    subprocess.run(["/usr/bin/python3", tool, folder, "-o", out, "--rlaif", rlaif], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def label_ids(t):
    """The label variants the local judge reads (judge_local.c setup_labels)."""
    v = vocab_of(t)
    spaced = "ĠA" in v and "ĠB" in v
    names = [["ĠA", "Ġa", "A", "a"], ["ĠB", "Ġb", "B", "b"]]
    return spaced, [[v[n] for n in names[k][0 if spaced else 2:] if n in v] for k in range(2)]
