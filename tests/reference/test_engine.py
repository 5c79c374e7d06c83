"""Engine parity against a plain-PyTorch GPT-2 (tests/reference/gpt2_ref.py, float64).

For a tiny and a mid-size config, random weights and tokens (with a
left-padded row, a loss mask and ignored targets): tests/reference/engine_ref computes
in C, PyTorch recomputes, and engine_check.py checks every tolerance of issue #3
(forward rel <= 1e-5, gradients <= 1e-4, ten AdamW steps <= 1e-5, greedy tokens
identical, KV cache vs full forward <= 1e-5, checkpoint round trip exact).
Exits 1 when any check fails. OPT and Llama: test_arch.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import engine_check as ec  # noqa: E402

tiny = dict(n_layer=2, n_embd=64, n_head=4, vocab_size=97, max_seq_len=32, score_head=1)
mid = dict(n_layer=4, n_embd=256, n_head=8, vocab_size=1000, max_seq_len=64, score_head=1)
ec.run_gpt2("tiny", tiny, 3, 16, [[5, 17, 3, 88, 41], [9, 2, 60], [1, 2, 3, 4, 5, 6, 7]], 8, 11, 3e-3)
ec.run_gpt2("mid", mid, 2, 32, [[10, 200, 30, 999], [7, 7, 7, 7, 7, 7, 7, 7, 7], [512]], 12, 23, 1e-4)
if ec.failures:
    print("FAILED:", ", ".join(ec.failures))
    sys.exit(1)
print("all engine parity checks passed")
