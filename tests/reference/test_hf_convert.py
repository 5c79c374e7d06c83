"""tools/user/hf-to-rlaif and rlaif-to-hf on small model folders this test writes
(no download). GPT-2: values copied exactly (F32; F16 widened), the
"transformer." prefix, mask buffers and the tied lm_head handled, the C loader
accepts the result. OPT, Llama, Mistral, Qwen2 (hf_fixture.py: GQA, q/k/v
biases, untied heads, project_in/out, post-LN, odd shapes, sharded indexes,
F16/BF16): import copies bit-exactly and keeps the tokenizer files, export ->
import is bit-exact (params and /config), the reference (opt_ref / llama_ref)
gives identical logits on the exported folder; every bad input is refused
naming the file and the key or tensor, with nothing written. (The engine's
numerics: test_engine.py and test_arch.py.)"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref as ref  # noqa: E402
from arch_ref import rlaif_hf  # noqa: E402

SRC = os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("top_builddir", ".")
CONVERT = os.path.join(SRC, "tools", "user", "hf-to-rlaif")
ENGINE = os.path.join(BUILD, "tests", "reference", "engine_ref")
PY = sys.executable
failures = []


def expect(what, ok):
    print("%-60s %s" % (what, "ok" if ok else "FAIL"))
    if not ok:
        failures.append(what)


def hf_files(d, cfg, params, prefix, dtype, drop=None, reshape=None):
    os.makedirs(d, exist_ok=True)
    np_dtype = {"F32": "<f4", "F16": "<f2"}[dtype]
    t = {}
    for name, v in params.items():
        if name == drop:
            continue
        a = v.numpy().astype(np_dtype)
        if name == reshape:
            a = a.reshape(-1)
        t[prefix + name] = (dtype, a)
    for l in range(cfg["n_layer"]):  # the causal-mask buffer HF stores
        t[prefix + "h.%d.attn.bias" % l] = ("U8", np.tril(np.ones((4, 4), np.uint8)))
    t["lm_head.weight"] = (dtype, params["wte.weight"].numpy().astype(np_dtype))
    rlaif_hf.write_safetensors(os.path.join(d, "model.safetensors"),
                               [(n, dt, a.shape, a.tobytes()) for n, (dt, a) in t.items()])
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "gpt2", "n_layer": cfg["n_layer"], "n_embd": cfg["n_embd"],
                   "n_head": cfg["n_head"], "vocab_size": cfg["vocab_size"],
                   "n_positions": cfg["max_seq_len"], "layer_norm_epsilon": 1e-5,
                   "activation_function": "gelu_new"}, f)


def convert(d, out):
    return subprocess.run([PY, CONVERT, d, "-o", out], capture_output=True, text=True)


cfg = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=97, max_seq_len=32, score_head=0)
params = ref.random_params(cfg, 5)
tmp = tempfile.mkdtemp(prefix="rlaif-hf-")

# F32 with the "transformer." prefix: an exact copy
d32, out32 = os.path.join(tmp, "f32"), os.path.join(tmp, "f32.h5")
hf_files(d32, cfg, params, "transformer.", "F32")
r = convert(d32, out32)
expect("convert F32 model (exit 0)", r.returncode == 0)
print(r.stdout.strip(), r.stderr.strip())
with h5py.File(out32, "r") as f:
    expect("rlaif_schema = 1", int(f.attrs["rlaif_schema"]) == 1)
    expect("/config matches", all(int(f["config"].attrs[k]) == cfg[k] for k in ref.CONFIG_KEYS))
    expect("every tensor copied bit-exactly", all(
        np.array_equal(f["params"][n][...], params[n].numpy()) for n, _ in ref.param_shapes(cfg)))
    expect("no extra datasets", sorted(f["params"].keys()) ==
           sorted(n for n, _ in ref.param_shapes(cfg)))
r = subprocess.run([ENGINE, "load", out32], capture_output=True, text=True)
expect("C loader accepts the converted checkpoint", r.returncode == 0 and "n_layer 2" in r.stdout)

# GPT-2 export -> import: the same tensors and /config
e32, back32 = os.path.join(tmp, "f32-out"), os.path.join(tmp, "f32-back.h5")
r1 = subprocess.run([PY, os.path.join(SRC, "tools", "user", "rlaif-to-hf"), out32, "-o", e32],
                    capture_output=True, text=True)
r2 = convert(e32, back32)
with h5py.File(out32, "r") as a, h5py.File(back32, "r") as b:
    expect("GPT-2 import -> export -> import bit-exact", r1.returncode == 0 and r2.returncode == 0
           and dict(a["config"].attrs) == dict(b["config"].attrs) and sorted(a["params"]) ==
           sorted(b["params"]) and all(np.array_equal(a["params"][n][...], b["params"][n][...])
                                       for n in a["params"]))

# F16 without a prefix: widened values
d16, out16 = os.path.join(tmp, "f16"), os.path.join(tmp, "f16.h5")
hf_files(d16, cfg, params, "", "F16")
r = convert(d16, out16)
expect("convert F16 model (exit 0)", r.returncode == 0)
with h5py.File(out16, "r") as f:
    expect("F16 values widened to float32", all(np.array_equal(
        f["params"][n][...], params[n].numpy().astype(np.float16).astype(np.float32))
        for n, _ in ref.param_shapes(cfg)))

# errors name the tensor
dm = os.path.join(tmp, "missing")
hf_files(dm, cfg, params, "", "F32", drop="h.1.mlp.c_fc.bias")
r = convert(dm, os.path.join(tmp, "m.h5"))
expect("missing tensor: exit 1 naming h.1.mlp.c_fc.bias",
       r.returncode == 1 and "h.1.mlp.c_fc.bias is missing" in r.stderr)
ds = os.path.join(tmp, "shape")
hf_files(ds, cfg, params, "", "F32", reshape="h.0.attn.c_attn.weight")
r = convert(ds, os.path.join(tmp, "s.h5"))
expect("wrong shape: exit 1 naming h.0.attn.c_attn.weight",
       r.returncode == 1 and "h.0.attn.c_attn.weight has shape" in r.stderr)
print(r.stderr.strip())
expect("no checkpoint left behind on error", not os.path.exists(os.path.join(tmp, "s.h5")))

# ---------------------------------------------------------------- OPT, Llama, Mistral, Qwen2
import hf_fixture as fx  # noqa: E402
import llama_ref  # noqa: E402
import opt_ref  # noqa: E402
import arch_ref  # noqa: E402
import torch  # noqa: E402

EXPORT = os.path.join(SRC, "tools", "user", "rlaif-to-hf")
RLAIF = os.environ.get("RLAIF") or os.path.join(BUILD, "src", "rlaif")


def run(*cmd):
    return subprocess.run([PY] + list(cmd), capture_output=True, text=True)


def h5_state(path):
    """(/config attributes, {name: params}, {name: hf_files bytes}) of a checkpoint."""
    with h5py.File(path, "r") as f:
        attrs = {k: (v.tobytes() if hasattr(v, "tobytes") else v) for k, v in f["config"].attrs.items()}
        params = {n: f["params"][n][...] for n in f["params"]}
        files = {n: f["hf_files"][n][...].tobytes() for n in f.get("hf_files", {})}
        return attrs, params, files, "tokenizer" in f


def ref_logits(folder):
    conf, P = arch_ref.load_hf(folder)
    mod = opt_ref if conf["model_type"] == "opt" else llama_ref
    lm = "embed_tokens.weight" if mod is opt_ref else llama_ref.lm_head(conf)
    tok = torch.tensor([[5, 17, 3, 88, 41, 9, 2, 60], [0, 0, 7, 1, 200, 3, 4, 5]])
    valid = tok != 0
    pos = (valid.long().cumsum(1) - 1).clamp(min=0)
    return (mod.trunk(P, conf, tok, pos, valid) @ P[lm].T).numpy()


engine_archs = set()
for arch in ("opt", "llama"):  # what the C engine loads today (engine_ref load)
    d = os.path.join(tmp, "probe-" + arch)
    fx.write_hf(d, fx.CONFIGS[arch], 1, tokenizer=False)
    run(CONVERT, d, "-o", d + ".h5", "--rlaif", "")
    r = subprocess.run([ENGINE, "load", d + ".h5"], capture_output=True, text=True)
    if r.returncode == 0:
        engine_archs.add(arch)
print("C engine loads:", ", ".join(sorted(engine_archs)) or "gpt2 only")

CASES = [  # (name, config, write_hf options, rlaif-to-hf options)
    ("opt", "opt", dict(), []),
    ("opt post-LN, project_in/out, score, 3 shards, F16", "opt-proj-postln",
     dict(dtype="F16", shards=3, score=True), ["--dtype", "f16"]),
    ("llama untied, BF16", "llama", dict(dtype="BF16"), ["--dtype", "bf16"]),
    ("llama GQA 6/2, tied, llama3 RoPE, score, 2 shards", "llama-gqa",
     dict(shards=2, score=True), ["--head", "score"]),
    ("qwen2 q/k/v biases, MQA, linear RoPE, odd vocab, F64", "qwen2",
     dict(lm_head=False, dtype="F64"), []),
    ("mistral sliding window", "mistral", dict(dtype="BF16"), []),
]
for k, (name, key, opts, exp_opts) in enumerate(CASES):
    conf = fx.CONFIGS[key]
    d, h1, e, h2 = (os.path.join(tmp, "c%d%s" % (k, s)) for s in ("", ".h5", "-out", "-2.h5"))
    cfg, params = fx.write_hf(d, conf, 100 + k, **opts)
    r = run(CONVERT, d, "-o", h1, "--rlaif", RLAIF)
    expect("%s: import (exit 0)" % name, r.returncode == 0)
    if r.returncode:
        print(r.stderr)
        continue
    attrs, got, files, has_tok = h5_state(h1)
    expect("%s: /params bit-exact, nothing extra" % name,
           sorted(got) == sorted(n for n, _ in rlaif_hf.param_shapes(cfg)) and
           all(np.array_equal(got[n], params[n].numpy()) for n in got))
    c = rlaif_hf.read_config(h5py.File(h1, "r")["config"])
    expect("%s: /config (arch, heads, rope, window, tie, bias)" % name, all(
        c[x] == cfg[x] for x in cfg) and c["arch"] == rlaif_hf.ARCH_OF[conf["model_type"]])
    expect("%s: /hf_files verbatim" % name, all(
        files[n] == open(os.path.join(d, n), "rb").read() for n in
        ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")))
    expect("%s: /tokenizer written by rlaif tokenize --save" % name, has_tok)
    expect("%s: a WARNING that the tokenizer has 265 ids, the model %d" % (name, cfg["vocab_size"]),
           "the tokenizer has 265 ids, the model %d" % cfg["vocab_size"] in r.stderr)
    if rlaif_hf.ARCH_OF[conf["model_type"]] in engine_archs:
        r2 = subprocess.run([ENGINE, "load", h1], capture_output=True, text=True)
        expect("%s: the C engine loads it" % name, r2.returncode == 0)
    r = run(EXPORT, h1, "-o", e, *exp_opts)
    expect("%s: export (exit 0)" % name, r.returncode == 0)
    with open(os.path.join(e, "config.json")) as f:
        ec = json.load(f)
    head = "ForSequenceClassification" if "score" in exp_opts else "ForCausalLM"
    expect("%s: exported config.json (model_type, architectures, dtype)" % name,
           ec["model_type"] == conf["model_type"] and ec["architectures"][0].endswith(head) and
           ec["torch_dtype"] == {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[
               dict(f16="F16", bf16="BF16").get(exp_opts[-1] if "--dtype" in exp_opts else "", "F32")])
    names_in = set(rlaif_hf.Tensors(d).names()) - ({"lm_head.weight"} if cfg["tie_embeddings"] else set())
    expect("%s: exported tensor names are Hugging Face's (+ score.bias)" % name,
           set(rlaif_hf.Tensors(e).names()) == names_in | ({"score.bias"} if cfg["score_head"] else set()))
    r = run(CONVERT, e, "-o", h2, "--rlaif", "")
    a2, got2, files2, _ = h5_state(h2)
    expect("%s: import -> export -> import bit-exact (params, config)" % name,
           r.returncode == 0 and a2 == attrs and sorted(got2) == sorted(got) and
           all(np.array_equal(got[n], got2[n]) and got[n].dtype == got2[n].dtype for n in got))
    expect("%s: tokenizer files exported unchanged" % name, all(
        open(os.path.join(e, n), "rb").read() == files[n] for n in files if n != "config.json"))
    expect("%s: the reference gives identical logits on the exported folder" % name,
           np.array_equal(ref_logits(d), ref_logits(e)))

# transformers 5 keeps rope_theta inside rope_parameters
c = rlaif_hf.config_from_hf(dict(fx.CONFIGS["llama"], rope_theta=None, rope_parameters={
    "rope_type": "linear", "factor": 2.0, "rope_theta": 5e5}), "config.json")
expect("rope_parameters: rope_theta and the scaling read from it",
       c["rope_theta"] == 5e5 and c["rope_type"] == "linear" and c["rope_factor"] == 2.0)

# a tokenizer.json rlaif cannot read: a warning that the checkpoint has no /tokenizer, no error
d = os.path.join(tmp, "unigram")
fx.write_hf(d, fx.CONFIGS["llama"], 5)
with open(os.path.join(d, "tokenizer.json"), "w") as f:
    json.dump({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}, f)
r = run(CONVERT, d, "-o", d + ".h5", "--rlaif", RLAIF)
expect("unreadable tokenizer.json: exit 0, a WARNING that there is no /tokenizer",
       r.returncode == 0 and "WARNING" in r.stderr and "has no /tokenizer" in r.stderr and
       not h5_state(d + ".h5")[3] and "tokenizer.json" in h5_state(d + ".h5")[2])
print(r.stderr.strip())

# bad input: each refused naming the file and the key or tensor, nothing written
BAD = []


def bad(name, key, want, conf_edit=None, edit=None, after=None, **opts):
    BAD.append((name, key, want, conf_edit, edit, after, opts))


def set_conf(**kv):
    return lambda c: dict(c, **kv)


def shape_of(name, shape):
    return lambda t: [(n, dt, a.reshape(shape) if n == name else a) for n, dt, a in t]


bad("unknown model_type", "opt", "config.json: model_type", set_conf(model_type="gptj"))
bad("rope_scaling yarn", "llama", "config.json: rope_scaling type \"yarn\"",
    set_conf(rope_scaling={"rope_type": "yarn", "factor": 4.0}))
bad("rope_scaling dynamic (old key 'type')", "llama", "config.json: rope_scaling type \"dynamic\"",
    set_conf(rope_scaling={"type": "dynamic", "factor": 4.0}))
bad("llama3 RoPE without high_freq_factor", "llama",
    "config.json: rope_scaling has no high_freq_factor",
    set_conf(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                           "original_max_position_embeddings": 16}))
bad("rope_parameters (transformers 5) yarn", "llama", "config.json: rope_parameters type \"yarn\"",
    set_conf(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}))
bad("layer_types mixing full and sliding", "qwen2", "config.json: layer_types",
    set_conf(layer_types=["full_attention", "sliding_attention"]))
bad("hidden_act gelu", "llama", "config.json: hidden_act", set_conf(hidden_act="gelu"))
bad("head_dim mismatch", "llama", "config.json: head_dim = 16", set_conf(head_dim=16))
bad("mlp_bias", "llama", "config.json: mlp_bias", set_conf(mlp_bias=True))
bad("attention_bias (o_proj)", "llama", "config.json: attention_bias", set_conf(attention_bias=True))
bad("num_key_value_heads not dividing", "llama", "config.json: num_key_value_heads",
    set_conf(num_key_value_heads=3))
bad("qwen2 window on some layers", "qwen2", "config.json: max_window_layers",
    set_conf(use_sliding_window=True, max_window_layers=1))
bad("opt activation gelu", "opt", "config.json: activation_function", set_conf(activation_function="gelu"))
bad("opt enable_bias false", "opt", "config.json: enable_bias", set_conf(enable_bias=False))
bad("opt no LayerNorm gains", "opt", "config.json: layer_norm_elementwise_affine",
    set_conf(layer_norm_elementwise_affine=False))
bad("missing config key", "llama", "config.json: intermediate_size is missing",
    lambda c: {k: v for k, v in c.items() if k != "intermediate_size"})
bad("missing shard", "llama", "model.safetensors.index.json: shard model-00002-of-00002.safetensors",
    after=lambda d: os.remove(os.path.join(d, "model-00002-of-00002.safetensors")), shards=2)
bad("wrong shape", "llama", "tensor layers.1.self_attn.k_proj.weight has shape [16, 64]",
    edit=shape_of("model.layers.1.self_attn.k_proj.weight", (16, 64)))
bad("GQA k_proj as wide as q_proj", "llama-gqa", "tensor layers.0.self_attn.k_proj.weight has shape",
    edit=lambda t: [(n, dt, np.zeros((48, 48), np.float32) if n.endswith("0.self_attn.k_proj.weight")
                     else a) for n, dt, a in t])
bad("wrong dtype", "opt", "tensor model.decoder.layers.0.fc1.weight has unsupported dtype I32",
    edit=lambda t: [(n, "I32" if n.endswith("layers.0.fc1.weight") else dt,
                     a.astype(np.int32) if n.endswith("layers.0.fc1.weight") else a)
                    for n, dt, a in t])
bad("missing tensor", "opt", "tensor layers.1.fc2.bias is missing",
    edit=lambda t: [x for x in t if not x[0].endswith("layers.1.fc2.bias")])
bad("missing untied lm_head", "llama", "tensor lm_head.weight is missing",
    edit=lambda t: [x for x in t if x[0] != "lm_head.weight"])
bad("unexpected tensor", "llama", "unexpected tensor model.layers.0.self_attn.o_proj.bias",
    edit=lambda t: t + [("model.layers.0.self_attn.o_proj.bias", "F32", np.zeros(32, np.float32))])
bad("tied lm_head that differs", "opt", "tensor lm_head.weight differs from embed_tokens.weight",
    edit=lambda t: [(n, dt, a + 1 if n == "lm_head.weight" else a) for n, dt, a in t])
bad("score with num_labels 2", "llama", "tensor score.weight has shape [2, 32]",
    edit=lambda t: t + [("score.weight", "F32", np.zeros((2, 32), np.float32))])
for name, key, want, conf_edit, edit, after, opts in BAD:
    d = os.path.join(tmp, "bad-" + name.replace(" ", "_").replace("/", ""))
    conf = conf_edit(fx.CONFIGS[key]) if conf_edit else fx.CONFIGS[key]
    try:
        fx.write_hf(d, fx.CONFIGS[key], 7, edit=edit, tokenizer=False, **opts)
    except Exception as ex:  # noqa: BLE001  (a fixture that cannot be written is a test bug)
        expect("bad input %s: fixture written (%s)" % (name, ex), False)
        continue
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(conf, f)
    if after:
        after(d)
    r = run(CONVERT, d, "-o", d + ".h5", "--rlaif", "")
    ok = r.returncode == 1 and want in r.stderr and d in r.stderr and not os.path.exists(d + ".h5") \
        and not os.path.exists(d + ".h5.tmp") and "Traceback" not in r.stderr
    expect("refused: %s" % name, ok)
    if not ok:
        print("   want %r in: %s" % (want, r.stderr.strip()))

shutil.rmtree(tmp)
if failures:
    print("FAILED:", ", ".join(failures))
    sys.exit(1)
print("hf-to-rlaif checks passed")
