"""tools/user/hf-to-rlaif on small safetensors files this test writes (no download):
values copied exactly (F32; F16 widened), the "transformer." prefix, mask
buffers and the tied lm_head handled, the C loader accepts the result; a
missing tensor and a wrong shape are errors naming the tensor. (The engine's
numerics on such a checkpoint are tests/reference/test_engine.py's job.)"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_ref as ref  # noqa: E402

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


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        b = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


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
    write_safetensors(os.path.join(d, "model.safetensors"), t)
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

shutil.rmtree(tmp)
if failures:
    print("FAILED:", ", ".join(failures))
    sys.exit(1)
print("hf-to-rlaif checks passed")
