"""model.precision = bf16 against the float64 PyTorch references (gpt2_ref, opt_ref,
llama_ref), through the harness of test_engine.py / test_arch.py (engine_check.py).

The bound. In bf16 mode each linear layer's product (forward, and backward's
dX = dY W^T and dW = X^T dY) rounds both operands to bfloat16 (unit roundoff
u = 2^-8, round to nearest even) and sums the exact products in fp32, so per
output element
    |computed - exact| <= (2u + u^2 + gamma_K) sum_k |a_k| |b_k|,  gamma_K = K 2^-24 / (1 - K 2^-24)
i.e. c = 2 (each operand rounded once: (1 + d1)(1 + d2), |di| <= u; the product of
two 8-bit significands is exact in fp32; fp32 accumulation over K <= 4096 adds at
most 2^-12 = u/16, and u^2 = u/256). Norms, softmax, attention, activations and
losses are fp32 (errors of 2^-24 size). To first order the relative errors of
products in series add: a quantity behind P products is within 2u P of exact
(norm-wise, taking sum |a||b| ~ |sum ab|, true to small factors for these
layers), with P = 4 per layer (qkv, out, up, down) + the LM head + OPT's
project_in/out: P = 4 L + 3. So, relative L2 errors:
    logits, logprobs, entropy, heads, loss, ten AdamW losses   <= 2u (4L + 3)
    every gradient tensor (a forward and a backward chain)     <= 2u 2 (4L + 3)
    KV-cache logprobs vs a full forward (two bf16 results)     <= 2 * 2u (4L + 3)
and the logits error must be at least u / 16 (fp32 products give ~1e-6): the
products really are rounded. Greedy tokens must equal the reference's. The
bounds are loose by design (first order, worst-case signs): the measured errors
(printed) are 10-30x below them; a stale bf16 copy of the weights, a wrong
operand or layout is far outside them.
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import engine_check as ec  # noqa: E402
import hf_fixture as fx  # noqa: E402

U = 2.0 ** -8


def tol(n_layer):
    p = 4 * n_layer + 3
    return dict(fwd=2 * U * p, grad=2 * U * 2 * p, zero=2 * U * 2 * p, adamw=2 * U * p,
                kv=2 * 2 * U * p, floor=U / 16)


tiny = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=97, max_seq_len=32, score_head=1)
mid = dict(n_layer=4, n_embd=256, n_head=8, vocab_size=1000, max_seq_len=64, score_head=1)
ec.run_gpt2("gpt2 tiny", tiny, 3, 16, [[5, 17, 3, 88, 41], [9, 2, 60], [1, 2, 3, 4, 5, 6, 7]], 8,
            11, 3e-3, tol(2), "bf16")
ec.run_gpt2("gpt2 mid", mid, 2, 32, [[10, 200, 30, 999], [7, 7, 7, 7, 7, 7, 7, 7, 7], [512]], 12,
            23, 1e-4, tol(4), "bf16")
tmp = tempfile.mkdtemp(prefix="rlaif-bf16-")
prompts = [[5, 17, 3, 88, 41], [9, 2, 60], [1, 2, 3, 4, 5, 6, 7]]
for k, (name, key, lr) in enumerate([("opt", "opt", 3e-3),
                                     ("opt post-LN project_in/out", "opt-proj-postln", 1e-3),
                                     ("llama GQA 6/2 tied llama3-RoPE", "llama-gqa", 1e-3)]):
    L = fx.CONFIGS[key]["num_hidden_layers"]
    if not ec.run_hf(tmp, k, name, key, 3, 16, 8, 11 + 10 * k, lr, prompts, tol(L), "bf16"):
        ec.failures.append(name + " did not run")
shutil.rmtree(tmp)
if ec.failures:
    print("FAILED:", ", ".join(ec.failures))
    sys.exit(1)
print("all bf16 engine checks passed")
