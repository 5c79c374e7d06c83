"""tools/bench/bench-engine: rlaif's engine side by side with plain PyTorch.

Driver (default): runs tools/bench/bench_engine (C) and this file's --worker mode
(PyTorch) as separate processes, alternating, and reports medians and ratios.
PyTorch gets its best setting on this machine: tcmalloc (torch_allocator,
below), and each case first tries torch threads {1,2} x OpenBLAS threads
{1,2} and keeps the fastest; rlaif runs with
OpenBLAS 2 threads and OpenMP 2 threads.

Cases (issue #3): GPT-2 124M training step B=4 T=64 (forward + backward +
AdamW), tiny L=4 C=128 NH=4 V=256 B=16 T=64, GPT-2 124M greedy generation
(16-token prompt, 128 new tokens, KV cache) at batch 1 and 32, plus the sgemm
FLOP rate and copy bandwidth measured in the same run. Llama cases (issue
#14): a SmolLM-135M-shaped Llama (L=30 C=576, 9 query heads sharing 3 KV heads,
SwiGLU 1536, tied embeddings, V=49152: 134.5M parameters) train step B=4 T=64
and generation at batch 1 and 32, the PyTorch side a plain nn.Linear Llama
(RMSNorm, RoPE in rotate_half form, GQA by repeating K/V) with the same cache.
"""
import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import time

GPT2 = dict(L=12, C=768, NH=12, V=50257, maxT=1024)
TINY = dict(L=4, C=128, NH=4, V=256, maxT=64)
LLAMA = dict(L=30, C=576, NH=9, V=49152, maxT=1024, NKV=3, F=1536, arch="llama")
MODELS = {"gpt2": GPT2, "tiny": TINY, "llama": LLAMA}


# PyTorch's best setting includes its allocator. It allocates each large
# intermediate afresh; glibc serves blocks past its mmap threshold (32 MB at
# most) from fresh pages, and on a VM whose page faults are slow every such
# tensor costs its pages' faults: on the 2-core AMD EPYC VM (Zen 5,
# 2026-12-03; touching 1 GB takes 2.8-4.4 s) a GPT-2 124M train step took
# 5.4-5.7 s with glibc against 1.4-1.6 s with tcmalloc, the judge's 416-token
# forward at batch 16 47.7 against 8.6 s (jemalloc: no better than glibc).
# tcmalloc keeps freed memory for reuse, as Intel's PyTorch CPU guide advises.
TCMALLOC = "libtcmalloc_minimal.so.4"


def torch_allocator():
    """Re-execute this worker with tcmalloc preloaded (once, before torch
    loads); exits with a message if it is not installed."""
    if TCMALLOC in os.environ.get("LD_PRELOAD", ""):
        return
    import ctypes.util
    if not ctypes.util.find_library("tcmalloc_minimal"):
        sys.exit("the PyTorch peer runs with tcmalloc (its best setting on a VM with slow page "
                 "faults): install libtcmalloc-minimal4 (tools/dev/install-deps)")
    env = dict(os.environ, LD_PRELOAD=(TCMALLOC + " " + os.environ.get("LD_PRELOAD", "")).strip())
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def torch_llama(c):
    """Plain PyTorch Llama with GQA (what a user without transformers would write)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    C, NH, NKV, hs = c["C"], c["NH"], c["NKV"], c["C"] // c["NH"]
    inv = 1.0 / (10000.0 ** (torch.arange(0, hs, 2).float() / hs))
    ang = torch.outer(torch.arange(c["maxT"]).float(), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(x, pos0):  # x (B, H, T, hs), rotate_half form
        T = x.shape[2]
        x1, x2 = x[..., : hs // 2], x[..., hs // 2:]
        return x * cos[pos0:pos0 + T] + torch.cat([-x2, x1], -1) * sin[pos0:pos0 + T]

    class RMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(C))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.n2 = RMSNorm(), RMSNorm()
            self.q = nn.Linear(C, C, bias=False)
            self.kv = nn.Linear(C, 2 * NKV * hs, bias=False)
            self.o = nn.Linear(C, C, bias=False)
            self.gate_up = nn.Linear(C, 2 * c["F"], bias=False)
            self.down = nn.Linear(c["F"], C, bias=False)

        def attn(self, x, cache, pos0):
            B, T, _ = x.shape
            q = rope(self.q(x).view(B, T, NH, hs).transpose(1, 2), pos0)
            k, v = self.kv(x).view(B, T, 2, NKV, hs).permute(2, 0, 3, 1, 4)
            k = rope(k, pos0)
            if cache is not None:
                cache[0][:, :, pos0:pos0 + T] = k
                cache[1][:, :, pos0:pos0 + T] = v
                k, v = cache[0][:, :, :pos0 + T], cache[1][:, :, :pos0 + T]
            k = k.repeat_interleave(NH // NKV, dim=1)
            v = v.repeat_interleave(NH // NKV, dim=1)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            if T > 1:
                S = k.shape[2]
                mask = torch.ones(T, S, dtype=torch.bool).tril(S - T)
                att = att.masked_fill(~mask, float("-inf"))
            y = torch.softmax(att, dim=-1) @ v
            return self.o(y.transpose(1, 2).reshape(B, T, C))

        def forward(self, x, cache=None, pos0=0):
            x = x + self.attn(self.n1(x), cache, pos0)
            g, u = self.gate_up(self.n2(x)).chunk(2, dim=-1)
            return x + self.down(F.silu(g) * u)

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(c["V"], C)
            self.h = nn.ModuleList([Block() for _ in range(c["L"])])
            self.norm = RMSNorm()
            for p in self.parameters():
                if p.dim() >= 2:
                    nn.init.normal_(p, std=0.02)

        def forward(self, idx, caches=None, pos0=0, head_at=None):
            x = self.embed(idx)
            for i, blk in enumerate(self.h):
                x = blk(x, caches[i] if caches else None, pos0)
            if head_at is not None:  # one position per row (a judge's next token)
                x = x[torch.arange(x.shape[0]), head_at]
            return self.norm(x) @ self.embed.weight.T  # tied LM head

    return Llama()


# ---------------------------------------------------------------- PyTorch worker
def torch_model(cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self, C, NH):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.c_fc, self.mlp_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
            self.NH = NH

        def attn(self, x, cache=None, pos0=0):
            B, T, C = x.shape
            NH, hs = self.NH, C // self.NH
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in (q, k, v))
            if cache is not None:  # preallocated KV cache (B, NH, maxT, hs)
                cache[0][:, :, pos0:pos0 + T] = k
                cache[1][:, :, pos0:pos0 + T] = v
                k, v = cache[0][:, :, :pos0 + T], cache[1][:, :, :pos0 + T]
            if hasattr(F, "scaled_dot_product_attention"):
                y = F.scaled_dot_product_attention(q, k, v, is_causal=(T > 1))
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
                if T > 1:
                    S = k.shape[2]
                    mask = torch.ones(T, S, dtype=torch.bool).tril(S - T)
                    att = att.masked_fill(~mask, float("-inf"))
                y = torch.softmax(att, dim=-1) @ v
            return self.c_proj(y.transpose(1, 2).reshape(B, T, C))

        def forward(self, x, cache=None, pos0=0):
            x = x + self.attn(self.ln_1(x), cache, pos0)
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(c["V"], c["C"]), nn.Embedding(c["maxT"], c["C"])
            self.h = nn.ModuleList([Block(c["C"], c["NH"]) for _ in range(c["L"])])
            self.ln_f = nn.LayerNorm(c["C"])
            for p in self.parameters():
                if p.dim() >= 2:
                    nn.init.normal_(p, std=0.02)

        def forward(self, idx, caches=None, pos0=0, head_at=None):
            T = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(pos0, pos0 + T))
            for i, blk in enumerate(self.h):
                x = blk(x, caches[i] if caches else None, pos0)
            if head_at is not None:  # one position per row (a judge's next token)
                x = x[torch.arange(x.shape[0]), head_at]
            return self.ln_f(x) @ self.wte.weight.T  # tied LM head

    return GPT(cfg)


def worker(args):
    torch_allocator()
    import contextlib
    import torch
    torch.set_num_threads(args.torch_threads)
    # --autocast: bf16 matrix products (oneDNN), PyTorch's mixed precision on the CPU
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.autocast else \
        contextlib.nullcontext
    torch.manual_seed(0)
    cfg = MODELS[args.model]
    model = torch_llama(cfg) if cfg.get("arch") == "llama" else torch_model(cfg)
    times = []
    if args.case == "train":
        import torch.nn.functional as F
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                 {"params": rest, "weight_decay": 0.0}], lr=1e-4)
        for s in range(args.reps + 1):
            x = torch.randint(0, cfg["V"], (args.B, args.T + 1))
            t0 = time.perf_counter()
            with cast():
                logits = model(x[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, cfg["V"]), x[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if s:
                times.append(1e3 * (time.perf_counter() - t0))
        print("step_ms=%.3f" % statistics.median(times))
    else:
        model.eval()
        C, NH = cfg["C"], cfg["NH"]
        KV = cfg.get("NKV", NH)  # the cache holds the KV heads only (GQA)
        prompt = torch.randint(0, cfg["V"], (args.B, args.P))
        with torch.no_grad(), cast():
            for s in range(args.reps + 1):
                t0 = time.perf_counter()
                caches = [(torch.empty(args.B, KV, args.P + args.N, C // NH),
                           torch.empty(args.B, KV, args.P + args.N, C // NH))
                          for _ in range(cfg["L"])]
                logits = model(prompt, caches, 0)[:, -1]
                pos = args.P
                for i in range(args.N):
                    nxt = logits.argmax(-1, keepdim=True)
                    if i == args.N - 1:
                        break
                    logits = model(nxt, caches, pos)[:, -1]
                    pos += 1
                if s:
                    times.append(args.B * args.N / (time.perf_counter() - t0))
        print("tok_s=%.2f" % statistics.median(times))
    print("peak_rss_mb=%.1f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))


# ---------------------------------------------------------------- driver
def run(cmd, env_extra):
    env = dict(os.environ)
    env.update(env_extra)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("benchmark process failed: %s\n%s" % (" ".join(cmd), r.stderr))
    return dict(line.split("=", 1) for line in r.stdout.split() if "=" in line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--case", default="train")
    ap.add_argument("--model", default="gpt2")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--autocast", type=int, default=0)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--P", type=int, default=16)
    ap.add_argument("--N", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rlaif", help="path of tools/bench/bench_engine")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--vs-fixed", action="store_true",
                    help="each round also runs rlaif with model.gemm = fixed (RLAIF_BENCH_GEMM): "
                    "the chooser's paths against the built-in rule, side by side")
    ap.add_argument("--only", help="comma list of cases: train124m,tiny,gen1,gen32,"
                    "llama-train,llama-gen1,llama-gen32, and train124m-bf16,gen1-bf16,"
                    "gen32-bf16 (rlaif bf16 and fp32 against PyTorch's best incl. autocast)")
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    me = os.path.abspath(__file__)
    rl = args.rlaif
    R = args.rounds
    rl_env = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}  # sgemm, copy probes

    def rl_env_of(case, env, prec=None, gemm="auto"):  # the architecture travels in the environment
        c = MODELS[case["model"]]
        env = dict(env, RLAIF_BENCH_PRECISION=prec or case.get("prec", "fp32"),
                   RLAIF_BENCH_GEMM=gemm)
        if c.get("arch") == "llama":
            env = dict(env, RLAIF_BENCH_ARCH="llama", RLAIF_BENCH_KV_HEADS=str(c["NKV"]),
                       RLAIF_BENCH_INNER=str(c["F"]))
        return env

    def rl_cmd(case):
        c = MODELS[case["model"]]
        arch = [str(c[k]) for k in ("L", "C", "NH", "V", "maxT")]
        if case["case"] == "train":
            return [rl, "train"] + arch + [str(case["B"]), str(case["T"]), str(case["reps"])]
        return [rl, "gen"] + arch + [str(case["B"]), "16", str(case.get("N", 128)),
                                     str(case["reps"])]

    def probe(case):  # a shorter run to choose thread settings
        return dict(case, reps=max(1, case["reps"] // 3), N=32)

    def torch_cmd(case, tt, ac=0):
        return [sys.executable, me, "--worker", "--case", case["case"], "--model", case["model"],
                "--torch-threads", str(tt), "--autocast", str(ac), "--B", str(case["B"]), "--T", str(case.get("T", 64)),
                "--N", str(case.get("N", 128)), "--reps", str(case["reps"])]

    cases = {
        "train124m": dict(name="GPT-2 124M train step B=4 T=64", case="train", model="gpt2",
                          B=4, T=64, reps=3, key="step_ms"),
        "tiny": dict(name="tiny L4 C128 train step B=16 T=64", case="train", model="tiny",
                     B=16, T=64, reps=10, key="step_ms"),
        "gen1": dict(name="GPT-2 124M generate B=1 128 tok", case="gen", model="gpt2", B=1,
                     reps=1, key="tok_s"),
        "gen32": dict(name="GPT-2 124M generate B=32 128 tok", case="gen", model="gpt2", B=32,
                      reps=1, key="tok_s"),
        "llama-train": dict(name="Llama 135M GQA train step B=4 T=64", case="train",
                            model="llama", B=4, T=64, reps=3, key="step_ms"),
        "llama-gen1": dict(name="Llama 135M GQA generate B=1 128 tok", case="gen",
                           model="llama", B=1, reps=1, key="tok_s"),
        "llama-gen32": dict(name="Llama 135M GQA generate B=32 128 tok", case="gen",
                            model="llama", B=32, reps=1, key="tok_s"),
    }
    for k in ("train124m", "gen1", "gen32"):  # model.precision = bf16
        cases[k + "-bf16"] = dict(cases[k], name=cases[k]["name"] + " bf16", prec="bf16")
    only = args.only.split(",") if args.only else list(cases)
    print("machine: %s, %d cores; %s" % (
        open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip(),
        os.cpu_count(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    # The machine may be shared: the sgemm rate and the copy bandwidth are
    # measured inside every round too, next to the runs they are compared with.
    sg, sg_big, bw = [], [], []

    def probe_machine():
        sg.append(float(run([rl, "sgemm", "256", "3072", "768", "20"], rl_env)["gflops"]))
        sg_big.append(float(run([rl, "sgemm", "1024", "1024", "1024", "10"], rl_env)["gflops"]))
        bw.append(float(run([rl, "copy", "512", "5"], rl_env)["copy_gbs"]))

    def machine_rates():
        return (max(statistics.median(sg), statistics.median(sg_big)), statistics.median(bw))

    rows, ratios = [], []
    for key in only:
        case = cases[key]
        # PyTorch at its best: torch threads x OpenBLAS threads, one quick run each
        # (bf16 cases: also under autocast, where oneDNN runs on torch's threads)
        best, best_tt = None, None
        settings = [(tt, bt, 0) for tt in (1, 2) for bt in (1, 2)]
        if case.get("prec"):
            settings = [(1, 2, 0), (2, 1, 0), (1, 1, 1), (2, 1, 1)]
        for tt, bt, ac in settings:
            v = float(run(torch_cmd(probe(case), tt, ac),
                          {"OPENBLAS_NUM_THREADS": str(bt)})[case["key"]])
            better = best is None or (v < best[0] if case["key"] == "step_ms" else v > best[0])
            if better:
                best, best_tt = (v, tt, bt), (tt, bt, ac)
        tt, bt, ac = best_tt
        # rlaif the same way: one OpenMP team (OpenBLAS inside at 1 thread), or
        # single-threaded kernels with OpenBLAS's 2 threads
        rl_best = None
        for env in ({"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"},
                    {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "2"}):
            v = float(run(rl_cmd(probe(case)), rl_env_of(case, env))[case["key"]])
            if rl_best is None or (v < rl_best[0] if case["key"] == "step_ms" else v > rl_best[0]):
                rl_best = (v, env)
        rl_env = rl_best[1]
        rl_v, th_v, rl_mem, th_mem, rl32, rlfix = [], [], [], [], [], []
        for r in range(R):  # alternate
            probe_machine()
            a = run(rl_cmd(case), rl_env_of(case, rl_env))
            if case.get("prec"):  # the same engine in fp32, for bf16 / fp32
                rl32.append(float(run(rl_cmd(case), rl_env_of(case, rl_env, "fp32"))[case["key"]]))
            if args.vs_fixed:  # the same engine on the fixed rule
                rlfix.append(float(run(rl_cmd(case), rl_env_of(case, rl_env, None, "fixed"))
                                   [case["key"]]))
            b = run(torch_cmd(case, tt, ac), {"OPENBLAS_NUM_THREADS": str(bt)})
            rl_v.append(float(a[case["key"]]))
            th_v.append(float(b[case["key"]]))
            rl_mem.append(float(a["peak_rss_mb"]))
            th_mem.append(float(b["peak_rss_mb"]))
        rv, tv = statistics.median(rl_v), statistics.median(th_v)
        sgemm_rate, copy_bw = machine_rates()
        ratio = tv / rv if case["key"] == "step_ms" else rv / tv
        extra = ""
        if key in ("train124m", "llama-train"):
            n = int(a["params"])
            tokens = case["B"] * case["T"]
            c = MODELS[case["model"]]
            flops = 6 * n * tokens + 12 * c["L"] * case["T"] * c["C"] * tokens
            rate = flops / (rv / 1e3) / 1e9
            extra = "%.1f GFLOP/s = %.0f%% of sgemm" % (rate, 100 * rate / sgemm_rate)
            ratios.append("%s %.2fx (%.0f%% sgemm)" % (key, ratio, 100 * rate / sgemm_rate))
        elif key in ("gen1", "llama-gen1"):
            bound = copy_bw * 1e9 / float(a["param_bytes"])
            extra = "bandwidth bound %.1f tok/s: %.0f%% of it" % (bound, 100 * rv / bound)
            ratios.append("%s %.2fx (%.0f%% bw)" % (key, ratio, 100 * rv / bound))
        else:
            ratios.append("%s %.2fx" % (key, ratio))
        if rl32:
            r32 = statistics.median(rl32)
            vs32 = r32 / rv if case["key"] == "step_ms" else rv / r32
            extra += " rlaif fp32 %.2f: bf16 %.2fx fp32" % (r32, vs32)
            ratios[-1] += " (bf16 %.2fx rlaif fp32)" % vs32
        if rlfix:
            rf = statistics.median(rlfix)
            vsf = rf / rv if case["key"] == "step_ms" else rv / rf
            extra += " rlaif fixed rule %.2f: chooser %.2fx fixed (rounds: %s vs %s; paths %s)" % (
                rf, vsf, " ".join("%.2f" % x for x in rl_v), " ".join("%.2f" % x for x in rlfix),
                a.get("gemm_paths", "?"))
            ratios[-1] += " (chooser %.2fx fixed rule)" % vsf
        if case["case"] == "train":
            ratios[-1] += " mem %.2f" % (statistics.median(rl_mem) / statistics.median(th_mem))
        unit = "ms/step" if case["key"] == "step_ms" else "tok/s"
        rows.append((case["name"], rv, tv, unit, ratio, statistics.median(rl_mem),
                     statistics.median(th_mem), "rlaif OMP %s" % rl_env["OMP_NUM_THREADS"],
                     "torch %d thr + OpenBLAS %d%s" % (tt, bt, " + bf16 autocast" if ac else ""),
                     extra))
        print("%-34s rlaif %9.2f  torch %9.2f %-7s  %.2fx  peak RSS %6.0f / %6.0f MB  (%s; %s) %s"
              % rows[-1], flush=True)
    sgemm_rate, copy_bw = machine_rates()
    print("machine during the rounds: sgemm (OpenBLAS, 2 threads) %.1f GFLOP/s at 256x3072x768, "
          "%.1f at 1024^3; copy bandwidth %.1f GB/s (medians)" % (
              statistics.median(sg), statistics.median(sg_big), copy_bw))
    print("ratios (rlaif vs torch, median of %d alternating rounds): %s" % (R, "; ".join(ratios)))


if __name__ == "__main__":
    main()
