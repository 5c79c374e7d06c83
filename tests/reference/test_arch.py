"""Engine parity for OPT and Llama (with Mistral's window and Qwen2's biases)
against plain-PyTorch references that read the Hugging Face folder itself
(opt_ref.py, llama_ref.py, float64): hf_fixture.py writes a random folder,
tools/user/hf-to-rlaif imports it, tests/reference/engine_ref computes in C, and
engine_check.py checks every tolerance of issue #3:
  logits, logprobs, entropy, scalar head, masked loss   rel <= 1e-5
  every gradient tensor of three losses                 rel <= 1e-4
  ten AdamW steps, each loss                            rel <= 1e-5
  greedy tokens identical; KV-cache logprobs vs full forward rel <= 1e-5;
  checkpoint round trip bit-exact.
Runs the architectures the engine loads (engine_ref load); exits 77 (skip)
when it loads neither, 1 when any check fails.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arch_ref  # noqa: E402
import engine_check as ec  # noqa: E402
import hf_fixture as fx  # noqa: E402
import llama_ref  # noqa: E402
import opt_ref  # noqa: E402
from arch_ref import rlaif_hf  # noqa: E402

SRC = os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), "..", ".."))
CONVERT = os.path.join(SRC, "tools", "user", "hf-to-rlaif")
PROMPTS = ([[5, 17, 3, 88, 41], [9, 2, 60], [1, 2, 3, 4, 5, 6, 7]],
           [[10, 200, 30, 299], [7, 7, 7, 7, 7, 7, 7, 7, 7], [256]])
# (name, hf_fixture config, B, T, max_new, seed, lr): two sizes of each, GQA, biases, window
CASES = [("opt", "opt", 3, 16, 8, 11, 3e-3),
         ("opt post-LN project_in/out", "opt-proj-postln", 2, 20, 10, 23, 1e-3),
         ("llama", "llama", 3, 16, 8, 31, 3e-3),
         ("llama GQA 6/2 tied llama3-RoPE", "llama-gqa", 2, 24, 12, 41, 1e-3),
         ("qwen2 MQA q/k/v biases linear-RoPE", "qwen2", 3, 16, 8, 51, 3e-3),
         ("mistral window 5", "mistral", 2, 20, 10, 61, 1e-3)]

ran = 0
tmp = tempfile.mkdtemp(prefix="rlaif-arch-")
for k, (name, key, B, T, max_new, seed, lr) in enumerate(CASES):
    conf = fx.CONFIGS[key]
    d, ckpt = os.path.join(tmp, "m%d" % k), os.path.join(tmp, "m%d.h5" % k)
    fx.write_hf(d, conf, seed, score=True, tokenizer=False)
    r = subprocess.run([sys.executable, CONVERT, d, "-o", ckpt, "--max-seq-len", "64",
                        "--rlaif", ""], capture_output=True, text=True)
    if r.returncode:
        ec.failures.append(name + ": hf-to-rlaif failed: " + r.stderr.strip())
        continue
    r = subprocess.run([ec.ENGINE, "load", ckpt], capture_output=True, text=True)
    if r.returncode:
        print("== %s: SKIP, the engine does not load it: %s" % (name, r.stderr.strip()[:200]))
        continue
    ran += 1
    with h5py.File(ckpt, "r") as f:
        names = [n for n, _ in rlaif_hf.param_shapes(rlaif_hf.read_config(f["config"]))]
    conf, P = arch_ref.load_hf(d)
    P["score.bias"] = torch.zeros(1, dtype=torch.float64)  # HF's score has none: rlaif's is 0
    params = {n: P[n].float() for n in names}
    mod = opt_ref if conf["model_type"] == "opt" else llama_ref
    lm = opt_ref.LM_HEAD if mod is opt_ref else llama_ref.lm_head(conf)

    def trunk(P, tok, pos, valid, mod=mod, conf=conf):
        return mod.trunk(P, conf, tok, pos, valid)

    def heads(P, h, targets, lm=lm):
        return arch_ref.heads(P, h, targets, lm)

    def greedy(P, prompts, n, trunk=trunk, lm=lm):
        return arch_ref.greedy(lambda t, p, v: trunk(P, t, p, v)[:, -1] @ P[lm].T, prompts, n)

    print("== %s: %s" % (name, ", ".join("%s=%s" % (x, conf[x]) for x in (
        "hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size") if x in conf)))
    ec.run_config(name, ckpt, params, names, conf["vocab_size"], trunk, heads, greedy, B, T,
                  PROMPTS[k % 2], max_new, seed, lr)
shutil.rmtree(tmp)
if ec.failures:
    print("FAILED:", ", ".join(ec.failures))
    sys.exit(1)
if not ran:
    print("SKIP: the engine loads neither OPT nor Llama checkpoints yet")
    sys.exit(77)
print("all OPT / Llama engine parity checks passed (%d models)" % ran)
