"""Shared by tools/user/hf-to-rlaif and tools/user/rlaif-to-hf (and the tests):
the checkpoint layout of each architecture (GPT-2, OPT, Llama), the mapping
between a Hugging Face config.json and rlaif's /config, and safetensors I/O.

rlaif's /params use Hugging Face names and layouts with the model prefix
dropped, so both conversions are copies; this module says which tensors an
architecture has, in the engine's table order, and refuses what it cannot run.
Needs only numpy and h5py (Debian's python3-numpy, python3-h5py).
"""
import json
import os
import struct

import numpy as np

SCHEMA = 1
ARCH_OF = {"gpt2": "gpt2", "opt": "opt", "llama": "llama", "mistral": "llama", "qwen2": "llama"}
INT_KEYS = ("n_layer", "n_embd", "n_head", "vocab_size", "max_seq_len", "score_head",
            "n_kv_head", "n_inner", "word_embed_dim", "norm_before", "tie_embeddings",
            "attn_bias", "rope_original_max_pos", "sliding_window")
FLOAT_KEYS = ("layer_norm_epsilon", "rope_theta", "rope_factor", "rope_low_freq_factor",
              "rope_high_freq_factor")
# What a checkpoint without the newer attributes (older rlaif, GPT-2 only) means.
NEUTRAL = dict(rope_original_max_pos=0, sliding_window=0, layer_norm_epsilon=1e-5,
               rope_theta=10000.0, rope_factor=1.0, rope_low_freq_factor=1.0,
               rope_high_freq_factor=4.0, rope_type="default")
PREFIX = {"gpt2": "transformer.", "opt": "model.decoder.", "llama": "model."}
CAUSAL_LM = {"gpt2": "GPT2LMHeadModel", "opt": "OPTForCausalLM", "llama": "LlamaForCausalLM",
             "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "generation_config.json", "vocab.json", "merges.txt", "tokenizer.model",
                   "added_tokens.json", "config.json")
DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "BF16": "<u2"}


class ConvertError(Exception):
    """Bad input; the message names the file and the key or tensor."""


def full_config(cfg):
    """cfg with the arch-neutral defaults filled in (GPT-2's when arch is absent)."""
    c = dict(NEUTRAL)
    c.update(arch="gpt2", n_kv_head=cfg["n_head"], n_inner=4 * cfg["n_embd"],
             word_embed_dim=cfg["n_embd"], norm_before=1, tie_embeddings=1, attn_bias=1,
             score_head=0)
    c.update(cfg)
    return c


# ------------------------------------------------------------------ layouts

def _gpt2_shapes(c):
    C, F = c["n_embd"], c["n_inner"]
    s = [("wte.weight", (c["vocab_size"], C)), ("wpe.weight", (c["max_seq_len"], C))]
    for i in range(c["n_layer"]):
        p = "h.%d." % i
        s += [(p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
              (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
              (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
              (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
              (p + "mlp.c_fc.weight", (C, F)), (p + "mlp.c_fc.bias", (F,)),
              (p + "mlp.c_proj.weight", (F, C)), (p + "mlp.c_proj.bias", (C,))]
    return s + [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]


def _opt_shapes(c):
    C, Cw, F = c["n_embd"], c["word_embed_dim"], c["n_inner"]
    s = [("embed_tokens.weight", (c["vocab_size"], Cw)),
         ("embed_positions.weight", (c["max_seq_len"] + 2, C))]
    if Cw != C:
        s.append(("project_in.weight", (C, Cw)))
    for i in range(c["n_layer"]):
        p = "layers.%d." % i
        a = p + "self_attn."
        s += [(p + "self_attn_layer_norm.weight", (C,)), (p + "self_attn_layer_norm.bias", (C,))]
        s += [(a + x + "_proj.weight", (C, C)) for x in "qkv"]
        s += [(a + x + "_proj.bias", (C,)) for x in "qkv"]
        s += [(a + "out_proj.weight", (C, C)), (a + "out_proj.bias", (C,)),
              (p + "final_layer_norm.weight", (C,)), (p + "final_layer_norm.bias", (C,)),
              (p + "fc1.weight", (F, C)), (p + "fc1.bias", (F,)),
              (p + "fc2.weight", (C, F)), (p + "fc2.bias", (C,))]
    if c["norm_before"]:
        s += [("final_layer_norm.weight", (C,)), ("final_layer_norm.bias", (C,))]
    if Cw != C:
        s.append(("project_out.weight", (Cw, C)))
    return s


def _llama_shapes(c):
    C, F = c["n_embd"], c["n_inner"]
    KV = c["n_kv_head"] * (C // c["n_head"])
    s = [("embed_tokens.weight", (c["vocab_size"], C))]
    for i in range(c["n_layer"]):
        p = "layers.%d." % i
        a = p + "self_attn."
        s += [(p + "input_layernorm.weight", (C,)), (a + "q_proj.weight", (C, C)),
              (a + "k_proj.weight", (KV, C)), (a + "v_proj.weight", (KV, C))]
        if c["attn_bias"]:
            s += [(a + "q_proj.bias", (C,)), (a + "k_proj.bias", (KV,)), (a + "v_proj.bias", (KV,))]
        s += [(a + "o_proj.weight", (C, C)), (p + "post_attention_layernorm.weight", (C,)),
              (p + "mlp.gate_proj.weight", (F, C)), (p + "mlp.up_proj.weight", (F, C)),
              (p + "mlp.down_proj.weight", (C, F))]
    s.append(("norm.weight", (C,)))
    if not c["tie_embeddings"]:
        s.append(("lm_head.weight", (c["vocab_size"], C)))
    return s


def param_shapes(cfg):
    """[(name, shape)] of an rlaif checkpoint's /params in the engine's table order."""
    c = full_config(cfg)
    s = {"gpt2": _gpt2_shapes, "opt": _opt_shapes, "llama": _llama_shapes}[c["arch"]](c)
    if c["score_head"]:
        s += [("score.weight", (1, score_dim(c))), ("score.bias", (1,))]
    return s


def score_dim(c):
    """The scalar head reads the LM head's input: OPT's is word_embed_dim wide."""
    return c["word_embed_dim"] if c["arch"] == "opt" else c["n_embd"]


def embed_name(arch):
    return "wte.weight" if arch == "gpt2" else "embed_tokens.weight"


# ------------------------------------------------------------------ config.json -> /config

class _Keys:
    """Reads config.json keys, naming the file and key in every refusal."""

    def __init__(self, hf, path):
        self.hf, self.path = hf, path

    def get(self, key, default=None):
        v = self.hf.get(key, default)
        return default if v is None else v

    def need(self, key):
        if self.hf.get(key) is None:
            self.fail(key, "is missing")
        return self.hf[key]

    def fail(self, key, why):
        raise ConvertError("%s: %s %s" % (self.path, key, why))

    def want(self, key, default, allowed, why):
        v = self.get(key, default)
        if v not in allowed:
            self.fail(key, "= %s is not supported (%s)" % (json.dumps(v), why))
        return v


def _gpt2_config(k):
    C = k.need("n_embd")
    k.want("activation_function", "gelu_new", ("gelu_new", "gelu_pytorch_tanh"),
           "rlaif's GPT-2 uses gelu_new")
    k.want("layer_norm_epsilon", 1e-5, (1e-5,), "rlaif's GPT-2 uses 1e-5")
    k.want("n_inner", 4 * C, (4 * C,), "rlaif's GPT-2 MLP is 4 * n_embd wide")
    for key in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        k.want(key, False, (False,), "not implemented")
    k.want("scale_attn_weights", True, (True,), "not implemented")
    return dict(n_layer=k.need("n_layer"), n_embd=C, n_head=k.need("n_head"),
                vocab_size=k.need("vocab_size"),
                max_seq_len=k.get("n_positions") or k.need("n_ctx"),
                n_kv_head=k.need("n_head"), n_inner=4 * C, word_embed_dim=C, norm_before=1,
                tie_embeddings=1, attn_bias=1)


def _opt_config(k):
    C = k.need("hidden_size")
    k.want("activation_function", "relu", ("relu",), "rlaif's OPT uses relu")
    k.want("enable_bias", True, (True,), "rlaif's OPT has every linear bias")
    k.want("layer_norm_elementwise_affine", True, (True,), "rlaif's OPT LayerNorms have gains")
    k.want("_remove_final_layer_norm", False, (False,), "not implemented")
    k.want("tie_word_embeddings", True, (True,), "rlaif's OPT ties the LM head")
    return dict(n_layer=k.need("num_hidden_layers"), n_embd=C,
                n_head=k.need("num_attention_heads"), vocab_size=k.need("vocab_size"),
                max_seq_len=k.need("max_position_embeddings"),
                n_kv_head=k.need("num_attention_heads"), n_inner=k.need("ffn_dim"),
                word_embed_dim=k.get("word_embed_proj_dim", C),
                norm_before=int(bool(k.get("do_layer_norm_before", True))), tie_embeddings=1,
                attn_bias=1)


def _rope(k):
    # transformers >= 5 writes rope_parameters (with rope_theta inside) instead
    key = "rope_scaling" if k.get("rope_scaling") else "rope_parameters"
    r = k.get(key)
    out = dict(rope_type="default", rope_factor=1.0, rope_low_freq_factor=1.0,
               rope_high_freq_factor=4.0, rope_original_max_pos=0)
    if not r:
        return out
    t = r.get("rope_type", r.get("type", "default"))
    if t not in ("default", "linear", "llama3"):
        k.fail(key, "type %s is not supported (linear, llama3)" % json.dumps(t))
    out["rope_type"] = t
    if t != "default":
        if r.get("factor") is None:
            k.fail(key, "has no factor")
        out["rope_factor"] = float(r["factor"])
    if t == "llama3":
        for hf_key, name in (("low_freq_factor", "rope_low_freq_factor"),
                             ("high_freq_factor", "rope_high_freq_factor"),
                             ("original_max_position_embeddings", "rope_original_max_pos")):
            if r.get(hf_key) is None:
                k.fail(key, "has no %s (llama3 needs it)" % hf_key)
            out[name] = r[hf_key] if name == "rope_original_max_pos" else float(r[hf_key])
    return out


def _llama_config(k, model_type, max_seq_len):
    C, NH = k.need("hidden_size"), k.need("num_attention_heads")
    NKV = k.get("num_key_value_heads", NH)
    k.want("hidden_act", "silu", ("silu",), "rlaif's Llama uses SwiGLU with silu")
    k.want("mlp_bias", False, (False,), "rlaif's Llama MLP has no biases")
    k.want("attention_bias", False, (False,), "an o_proj bias is not implemented")
    if C % NH:
        k.fail("num_attention_heads", "= %d does not divide hidden_size %d" % (NH, C))
    if k.get("head_dim", C // NH) != C // NH:
        k.fail("head_dim", "= %d is not hidden_size / num_attention_heads = %d"
               % (k.get("head_dim"), C // NH))
    if NH % NKV:
        k.fail("num_key_value_heads", "= %d does not divide num_attention_heads %d" % (NKV, NH))
    window = 0
    if model_type == "mistral":
        window = k.get("sliding_window", 0)
    elif model_type == "qwen2" and k.get("use_sliding_window", False):
        L, first = k.need("num_hidden_layers"), k.get("max_window_layers", 0)
        if 0 < first < L:
            k.fail("max_window_layers", "= %d: a window on some layers only is not implemented"
                   % first)
        window = k.need("sliding_window") if first <= 0 else 0
    kinds = set(k.get("layer_types", []))  # newer configs say per layer what the above implies
    if kinds - {"full_attention", "sliding_attention"} or len(kinds) > 1:
        k.fail("layer_types", "= %s: rlaif runs one attention kind on every layer (full or "
               "sliding)" % sorted(kinds))
    if kinds:
        window = k.need("sliding_window") if kinds == {"sliding_attention"} else 0
    c = dict(n_layer=k.need("num_hidden_layers"), n_embd=C, n_head=NH,
             vocab_size=k.need("vocab_size"),
             max_seq_len=min(k.need("max_position_embeddings"), max_seq_len), n_kv_head=NKV,
             n_inner=k.need("intermediate_size"), word_embed_dim=C, norm_before=1,
             tie_embeddings=int(bool(k.get("tie_word_embeddings", False))),
             attn_bias=int(model_type == "qwen2"),
             layer_norm_epsilon=float(k.get("rms_norm_eps", 1e-6)),
             rope_theta=float(k.get("rope_theta", (k.get("rope_parameters") or {}).get(
                 "rope_theta", 10000.0))), sliding_window=int(window))
    c.update(_rope(k))
    return c


def config_from_hf(hf, path, max_seq_len=4096):
    """A Hugging Face config.json (dict) -> rlaif /config (dict, no score_head yet)."""
    k = _Keys(hf, path)
    mt = k.get("model_type", "gpt2")
    if mt not in ARCH_OF:
        k.fail("model_type", "= %s is not supported (%s)"
               % (json.dumps(mt), ", ".join(sorted(ARCH_OF))))
    arch = ARCH_OF[mt]
    c = dict(NEUTRAL, arch=arch, score_head=0)
    if arch == "gpt2":
        c.update(_gpt2_config(k))
    elif arch == "opt":
        c.update(_opt_config(k))
    else:
        c.update(_llama_config(k, mt, max_seq_len))
    if c["n_embd"] % c["n_head"]:
        k.fail("n_head" if arch == "gpt2" else "num_attention_heads", "does not divide the width")
    return c


def _f(x):
    """A float for config.json: a value that went through a C float prints as one."""
    x = float(x)
    s = float(str(np.float32(x)))
    return s if float(np.float32(x)) == x else x


def config_to_hf(c, base=None, head="lm"):
    """rlaif /config -> a Hugging Face config.json (dict); base: the imported original,
    whose other keys (token ids, model_type mistral/qwen2, ...) are kept."""
    arch = c["arch"]
    hf = dict(base or {})
    mt = hf.get("model_type")
    if ARCH_OF.get(mt) != arch:
        mt = arch
    hf["model_type"] = mt
    stem = CAUSAL_LM[mt][:-len("LMHeadModel" if mt == "gpt2" else "ForCausalLM")]
    hf["architectures"] = [stem + "ForSequenceClassification" if head == "score" else CAUSAL_LM[mt]]
    if head == "score":
        hf["num_labels"] = 1
    hf["torch_dtype"] = "float32"
    if arch == "gpt2":
        hf.update(n_layer=c["n_layer"], n_embd=c["n_embd"], n_head=c["n_head"],
                  vocab_size=c["vocab_size"], n_positions=c["max_seq_len"], n_inner=None,
                  layer_norm_epsilon=_f(c["layer_norm_epsilon"]), activation_function="gelu_new")
        hf.setdefault("n_ctx", c["max_seq_len"])
    elif arch == "opt":
        hf.update(num_hidden_layers=c["n_layer"], hidden_size=c["n_embd"],
                  num_attention_heads=c["n_head"], vocab_size=c["vocab_size"],
                  max_position_embeddings=c["max_seq_len"], ffn_dim=c["n_inner"],
                  word_embed_proj_dim=c["word_embed_dim"],
                  do_layer_norm_before=bool(c["norm_before"]), activation_function="relu",
                  enable_bias=True, layer_norm_elementwise_affine=True, tie_word_embeddings=True)
    else:
        P = max(hf.get("max_position_embeddings") or 0, c["max_seq_len"])
        hf.update(num_hidden_layers=c["n_layer"], hidden_size=c["n_embd"],
                  num_attention_heads=c["n_head"], num_key_value_heads=c["n_kv_head"],
                  vocab_size=c["vocab_size"], max_position_embeddings=P,
                  intermediate_size=c["n_inner"], hidden_act="silu",
                  rms_norm_eps=_f(c["layer_norm_epsilon"]), rope_theta=_f(c["rope_theta"]),
                  tie_word_embeddings=bool(c["tie_embeddings"]))
        hf.pop("head_dim", None)
        hf.pop("rope_parameters", None)  # written below the older way, which transformers reads
        if mt == "llama":
            hf.update(attention_bias=False, mlp_bias=False)
        if c["rope_type"] == "default":
            hf["rope_scaling"] = None
        else:
            r = {"rope_type": c["rope_type"], "factor": _f(c["rope_factor"])}
            if c["rope_type"] == "llama3":
                r.update(low_freq_factor=_f(c["rope_low_freq_factor"]),
                         high_freq_factor=_f(c["rope_high_freq_factor"]),
                         original_max_position_embeddings=c["rope_original_max_pos"])
            hf["rope_scaling"] = r
        if mt == "mistral":
            hf["sliding_window"] = c["sliding_window"] or None
        elif mt == "qwen2":
            hf.update(use_sliding_window=bool(c["sliding_window"]),
                      sliding_window=c["sliding_window"] or hf.get("sliding_window"),
                      max_window_layers=0 if c["sliding_window"] else hf.get("max_window_layers"))
        elif c["sliding_window"]:
            raise ConvertError("a Llama with a sliding window exports as model_type mistral")
    return hf


# ------------------------------------------------------------------ /config in HDF5

def write_config(group, c):
    group.attrs["arch"] = np.bytes_(c["arch"])
    for key in INT_KEYS:
        group.attrs[key] = np.int64(c[key])
    for key in FLOAT_KEYS:
        group.attrs[key] = np.float64(c[key])
    group.attrs["rope_type"] = np.bytes_(c["rope_type"])


def read_config(group):
    def val(v):
        return v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v
    c = {k: val(v) for k, v in group.attrs.items()}
    return full_config(c)


# ------------------------------------------------------------------ safetensors

def read_header(path):
    """(header dict, byte offset of the data) of one safetensors file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ConvertError("%s: too short for a safetensors file" % path)
        (n,) = struct.unpack("<Q", head)
        if n > os.path.getsize(path) - 8:
            raise ConvertError("%s: header size %d exceeds the file" % (path, n))
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise ConvertError("%s: bad JSON header: %s" % (path, e))
    header.pop("__metadata__", None)
    return header, 8 + n


class Tensors:
    """The tensors of a safetensors file or a sharded index, read on demand as float32."""

    def __init__(self, folder_or_file):
        p = folder_or_file
        index = os.path.join(p, "model.safetensors.index.json") if os.path.isdir(p) else None
        self.where = {}  # name -> (file, header entry, data offset)
        if os.path.isdir(p) and not os.path.exists(os.path.join(p, "model.safetensors")) \
                and os.path.exists(index):
            self.source = index
            self._index(index)
        else:
            self.source = os.path.join(p, "model.safetensors") if os.path.isdir(p) else p
            self._file(self.source)

    def _file(self, path, names=None):
        if not os.path.exists(path):
            raise ConvertError("%s: no such file" % path)
        header, off = read_header(path)
        for name, info in header.items():
            self.where[name] = (path, info, off)
        for name in names or ():
            if name not in header:
                raise ConvertError("%s: tensor %s (listed in the index) is not in the shard"
                                   % (path, name))

    def _index(self, index):
        try:
            with open(index) as f:
                wmap = json.load(f)["weight_map"]
        except (ValueError, KeyError) as e:
            raise ConvertError("%s: not a safetensors index (%s)" % (index, e))
        shards = {}
        for name, shard in wmap.items():
            shards.setdefault(shard, []).append(name)
        for shard, names in sorted(shards.items()):
            path = os.path.join(os.path.dirname(index), shard)
            if not os.path.exists(path):
                raise ConvertError("%s: shard %s (holding %s) is missing"
                                   % (index, shard, names[0]))
            self._file(path, names)

    def names(self):
        return list(self.where)

    def file_of(self, name):
        return self.where[name][0]

    def shape(self, name):
        return tuple(self.where[name][1]["shape"])

    def dtype(self, name):
        return self.where[name][1]["dtype"]

    def load(self, name):
        path, info, off = self.where[name]
        dt = info["dtype"]
        if dt not in DTYPES:
            raise ConvertError("%s: tensor %s has unsupported dtype %s (F32, F16, BF16, F64)"
                               % (path, name, dt))
        begin, end = info["data_offsets"]
        count = int(np.prod(info["shape"]))
        if end - begin != count * np.dtype(DTYPES[dt]).itemsize or \
                off + end > os.path.getsize(path):
            raise ConvertError("%s: tensor %s: %d bytes for shape %s %s"
                               % (path, name, end - begin, info["shape"], dt))
        a = np.memmap(path, dtype=DTYPES[dt], mode="r", offset=off + begin, shape=(count,)) \
            if count else np.zeros(0, DTYPES[dt])
        if dt == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        return np.asarray(a, dtype=np.float32).reshape(info["shape"])


def bf16_bits(a):
    """float32 -> bfloat16 bit patterns, round to nearest even (NaN stays NaN)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def encode(a, dtype):
    """A float32 array in safetensors dtype F32 / F16 / BF16, as raw little-endian bytes."""
    if dtype == "BF16":
        return bf16_bits(a).astype("<u2").tobytes()
    return np.ascontiguousarray(a, dtype=DTYPES[dtype]).tobytes()


def write_safetensors(path, tensors, metadata=None):
    """tensors: [(name, dtype string, shape, raw bytes)] in file order."""
    header, off = {}, 0
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    header["__metadata__"] = metadata or {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the format aligns the data to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _, _, _, raw in tensors:
            f.write(raw)
