"""tools/bench/bench-pipeline: one PPO iteration of `rlaif ppo` side by side
with the same iteration in plain PyTorch.

Driver (default): makes a random-weight policy and reward model of the
chosen shape with `rlaif sft` / `rlaif rm` (0 steps), then alternates rounds
of
  rlaif: `rlaif ppo` on 1 learner + 2 rollout ranks + 1 judge rank (idle);
         the learner's per-rank log has each iteration's four parts
         (weight broadcast, generation = the wait for the samples past the
         broadcast, scoring, training);
  torch: this file's --worker mode, one process: generation with a KV cache,
         the policy (log-probs, values), reference and reward forward, the
         advantages, one epoch of one minibatch (PPO clipped policy and value
         losses, backward, clipped AdamW step);
each round runs 1 + ITERS iterations and its figure is the median of the
last ITERS (the first allocates). The report is the median over rounds.

Threads: the machine has 2 cores. rlaif's learner runs an OpenMP team of 2
(the rollout ranks sleep while it scores and trains) and each rollout rank 1
(they sample at the same time, the learner sleeps); PyTorch gets its best of
torch threads {1, 2} x OpenBLAS threads {1, 2} on a one-iteration probe, and
tcmalloc, as tools/bench/bench-engine does.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_engine_torch import torch_allocator, torch_model  # noqa: E402  (the same GPT-2 in torch)

SHAPES = {  # GPT-2 124M, and a ~30M one for a quick run (the 30M-124M range)
    "gpt2": dict(L=12, C=768, NH=12, V=50257, maxT=1024),
    "small": dict(L=6, C=384, NH=6, V=50257, maxT=1024),
}


# ---------------------------------------------------------------- PyTorch worker
def hidden(model, idx, caches=None, pos0=0):
    """The final-layer-norm activations (the LM head and the value/score heads read them)."""
    import torch
    x = model.wte(idx) + model.wpe(torch.arange(pos0, pos0 + idx.shape[1]))
    for i, blk in enumerate(model.h):
        x = blk(x, caches[i] if caches else None, pos0)
    return model.ln_f(x)


def worker(args):
    torch_allocator()
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    c = SHAPES[args.model]
    policy, ref, rm = torch_model(c), torch_model(c), torch_model(c)
    ref.load_state_dict(policy.state_dict())
    vhead, shead = torch.nn.Linear(c["C"], 1), torch.nn.Linear(c["C"], 1)
    for m in (ref, rm, shead):
        m.requires_grad_(False)
    params = list(policy.parameters()) + list(vhead.parameters())
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.0},
                             {"params": rest, "weight_decay": 0.0}], lr=1e-5)
    B, P, N, NH, hs = args.B, args.P, args.N, c["NH"], c["C"] // c["NH"]
    times = []
    for it in range(args.iters + 1 if args.iters else 1):
        prompts = torch.randint(0, c["V"], (B, P))
        t0 = time.perf_counter()
        with torch.no_grad():  # generation: sampling at temperature 1, KV cache
            caches = [(torch.empty(B, NH, P + N, hs), torch.empty(B, NH, P + N, hs))
                      for _ in range(c["L"])]
            logits = hidden(policy, prompts, caches, 0)[:, -1] @ policy.wte.weight.T
            out = []
            for i in range(N):
                nxt = torch.multinomial(torch.softmax(logits, -1), 1)
                out.append(nxt)
                if i < N - 1:
                    logits = hidden(policy, nxt, caches, P + i)[:, -1] @ policy.wte.weight.T
            seq = torch.cat([prompts] + out, 1)
        t1 = time.perf_counter()
        resp = seq[:, P:]

        def logp_of(h, model):  # log-probs of the response tokens, and the entropy
            lp = torch.log_softmax(h[:, P - 1:-1] @ model.wte.weight.T, -1)
            return lp.gather(-1, resp.unsqueeze(-1)).squeeze(-1), -(lp.exp() * lp).sum(-1)

        with torch.no_grad():  # scoring: policy + value, reference, reward model
            h = hidden(policy, seq)
            old_logp, _ = logp_of(h, policy)
            old_v = vhead(h[:, P - 1:-1]).squeeze(-1)
            ref_logp, _ = logp_of(hidden(ref, seq), ref)
            score = shead(hidden(rm, seq)[:, -1]).squeeze(-1)
            rew = -0.05 * (old_logp - ref_logp)  # per-token KL penalty, score at the end
            rew[:, -1] += score
            rew = (rew - rew.mean()) / (rew.std() + 1e-8)
            adv, last = torch.zeros_like(rew), torch.zeros(B)
            for t in reversed(range(N)):  # GAE, gamma 1, lambda 0.95
                nv = old_v[:, t + 1] if t + 1 < N else torch.zeros(B)
                last = rew[:, t] + nv - old_v[:, t] + 0.95 * last
                adv[:, t] = last
            ret = adv + old_v
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        t2 = time.perf_counter()
        # training: 1 epoch x 1 minibatch of the whole batch
        h = hidden(policy, seq)
        logp, ent = logp_of(h, policy)
        v = vhead(h[:, P - 1:-1]).squeeze(-1)
        ratio = torch.exp(logp - old_logp)
        pg = torch.max(-adv * ratio, -adv * ratio.clamp(0.8, 1.2)).mean()
        vc = old_v + (v - old_v).clamp(-0.2, 0.2)
        vf = 0.5 * torch.max((v - ret) ** 2, (vc - ret) ** 2).mean()
        loss = pg + 0.1 * vf
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        t3 = time.perf_counter()
        if it or not args.iters:  # 0 iterations asked: the probe times its only one
            times.append((0.0, t1 - t0, t2 - t1, t3 - t2))
    print_parts(times)


def print_parts(times):
    """key=value medians of the iterations' parts and totals (seconds)."""
    for k, name in enumerate(("broadcast", "generation", "scoring", "training")):
        print("%s=%.4f" % (name, statistics.median(t[k] for t in times)))
    print("iteration=%.4f" % statistics.median(sum(t) for t in times))


# ---------------------------------------------------------------- driver
def run(cmd, env_extra=None, cwd=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        sys.exit("benchmark process failed: %s\n%s%s" % (" ".join(cmd), r.stdout[-3000:],
                                                         r.stderr[-3000:]))
    return r.stdout


def parse(out):
    return {k: float(v) for k, v in (x.split("=", 1) for x in out.split() if "=" in x)}


JOB = """[run]
seed = 1
log_every = 1000
[model]
n_layer = {L}
n_embd = {C}
n_head = {NH}
max_seq_len = {maxT}
[tokenizer]
type = bpe
vocab = {pkg}/encoder.json
merges = {pkg}/vocab.bpe
[data]
task = arithmetic
n_prompts = 64
[sft]
steps = 0
batch_size = 8
eval_prompts = 0
[rm]
steps = 0
batch_size = 8
[ppo]
batch_size = {B}
samples_per_prompt = {K}
epochs = 1
minibatches = 1
max_new_tokens = {N}
warmup_steps = 0
[checkpoint]
every = 0
[judge]
backend = builtin
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--model", default="gpt2", choices=sorted(SHAPES))
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--B", type=int, default=16, help="sequences (worker)")
    ap.add_argument("--P", type=int, default=7,
                    help="prompt tokens ('What is 12 plus 7?' + newline in GPT-2 BPE)")
    ap.add_argument("--N", type=int, default=16, help="new tokens")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per iteration (driver)")
    ap.add_argument("--samples", type=int, default=2, help="samples per prompt (driver)")
    ap.add_argument("--iters", type=int, default=2, help="measured iterations per round")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--quick", action="store_true",
                    help="the ~30M model, 4 prompts x 2 samples, 8 tokens, 1 iteration, 3 rounds")
    ap.add_argument("--rlaif", help="path of src/rlaif")
    ap.add_argument("--pkg", help="folder of the GPT-2 encoder.json and vocab.bpe")
    ap.add_argument("--srcdir", help="the source tree (tests/fixtures/rm_pairs.py)")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.quick:
        args.model, args.prompts, args.N, args.iters = "small", 4, 8, 1
    args.rounds = args.rounds or 3
    bench(args)


def bench(args):
    rl, c, me = args.rlaif, SHAPES[args.model], os.path.abspath(__file__)
    d = tempfile.mkdtemp(prefix="rlaif-bench-pipeline-")
    try:
        job = os.path.join(d, "job.ini")
        with open(job, "w") as f:
            f.write(JOB.format(pkg=args.pkg, B=args.prompts,
                               K=args.samples, N=args.N, **c))
        # a random-weight policy (SFT of 0 steps) and reward model (fresh head)
        run([rl, "sft", job, "--set", "run.out_dir=base"], cwd=d)
        run([sys.executable, os.path.join(args.srcdir, "tests", "fixtures", "rm_pairs.py"),
             os.path.join(d, "pairs.jsonl"), "16", "3"])
        run([rl, "judge", job, "--input", "pairs.jsonl", "--output", "labels.jsonl", "--prefs",
             "prefs.h5", "--journal", "journal", "--quiet"], cwd=d)
        run([rl, "rm", job, "--set", "run.out_dir=base", "--set", "rm.preferences=prefs.h5"],
            cwd=d)
        ckpt = os.path.join(d, "base", "ckpt")
        sft = [f for f in sorted(os.listdir(ckpt)) if f.startswith("sft-")][-1]
        rmc = [f for f in sorted(os.listdir(ckpt)) if f.startswith("rm-")][-1]
        mpi = [os.environ.get("MPIEXEC", "mpiexec"), "--oversubscribe"]
        ppo = [rl, "ppo", job, "--set", "model.init_from=base/ckpt/" + sft,
               "--set", "ppo.reward_model=base/ckpt/" + rmc, "--set", "ranks.learner=1",
               "--set", "ranks.rollout=2", "--set", "ranks.judge=1"]
        # MPMD: the learner (rank 0) with its threads, the rollouts and the judge with 1

        def rlaif_round(r, omp, iters):
            out = "r%d" % r
            tail = ppo + ["--set", "run.out_dir=" + out, "--log-dir", out + "/logs",
                          "--set", "ppo.steps=%d" % (iters + 1 if iters else 1)]
            cmd = (mpi + ["-n", "1", "env", "OMP_NUM_THREADS=%d" % omp] + tail +
                   [":", "-n", "3", "env", "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1"] + tail)
            log = run(cmd, cwd=d)
            m = re.search(r"parameters with the value head", log)
            text = open(os.path.join(d, out, "logs", "rank-00000.log")).read()
            its = re.findall(r"iteration (\d+): broadcast ([\d.]+) s, generation ([\d.]+) s, "
                             r"scoring ([\d.]+) s, training ([\d.]+) s", text)
            if len(its) != (iters + 1 if iters else 1) or not m:
                sys.exit("bench-pipeline: unexpected rlaif ppo output:\n" + log + text)
            shutil.rmtree(os.path.join(d, out))
            return [tuple(float(x) for x in t[1:]) for t in its[-max(1, iters):]]

        P = args.P

        def torch_cmd(tt, iters):
            return [sys.executable, me, "--worker", "--model", args.model, "--torch-threads",
                    str(tt), "--B", str(args.prompts * args.samples), "--P", str(P),
                    "--N", str(args.N), "--iters", str(iters)]

        print("machine: %s, %d cores (shared with other users); %s" % (
            open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0]
            .strip(), os.cpu_count(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
        print("config: %s (L=%d C=%d NH=%d V=%d), %d prompts x %d samples, %d new tokens, "
              "1 epoch x 1 minibatch; %d+1 iterations per round, %d rounds" % (
                  args.model, c["L"], c["C"], c["NH"], c["V"], args.prompts, args.samples,
                  args.N, args.iters, args.rounds), flush=True)
        best = None  # PyTorch's best threads: one-iteration probes
        for tt in (1, 2):
            for bt in (1, 2):
                v = parse(run(torch_cmd(tt, 0), {"OPENBLAS_NUM_THREADS": str(bt)}))["iteration"]
                if best is None or v < best[0]:
                    best = (v, tt, bt)
        _, tt, bt = best
        # rlaif the same way: the learner's OpenMP team of 2 or 1 (under other
        # users' load a team of 2 can lose to 1); the rollouts have 1 each
        omp = min((sum(rlaif_round(-1, n, 0)[0]), n) for n in (2, 1))[1]
        rl_its, th_its = [], []
        for r in range(args.rounds):  # alternate
            rl_its.append(rlaif_round(r, omp, args.iters))
            th_its.append(parse(run(torch_cmd(tt, args.iters),
                                    {"OPENBLAS_NUM_THREADS": str(bt)})))
            print("round %d: rlaif %.2f s/iteration, torch %.2f" % (
                r + 1, statistics.median(sum(t) for t in rl_its[-1]), th_its[-1]["iteration"]),
                flush=True)
        names = ("broadcast", "generation", "scoring", "training")
        # rlaif: medians over rounds of each round's median iteration
        rl = {n: statistics.median(statistics.median(t[k] for t in its) for its in rl_its)
              for k, n in enumerate(names)}
        rl["iteration"] = statistics.median(statistics.median(sum(t) for t in its)
                                            for its in rl_its)
        th = {n: statistics.median(x[n] for x in th_its) for n in names + ("iteration",)}
        for n in names + ("iteration",):
            print("%-10s rlaif %7.3f s  torch %7.3f s" % (n, rl[n], th[n]))
        print("weight broadcast: %.1f%% of the rlaif iteration (goal <= 5%%)" % (
            100 * rl["broadcast"] / rl["iteration"]))
        print("ratio (torch / rlaif per iteration, median of %d alternating rounds): %.2fx "
              "(goal >= 1.5x); torch %d threads + OpenBLAS %d, rlaif learner OMP %d + "
              "2 rollouts OMP 1" % (args.rounds, th["iteration"] / rl["iteration"], tt, bt, omp))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
