"""test_judge_local.py - judge.backend = local: a checkpoint run by the engine on
the judge ranks, through `rlaif judge` as a user runs it.

The judge is a constructed Llama (tests/reference/judge_fixture.py) whose
weights answer "The better response is: B" whatever it reads, so every label
is known in advance:
1. verdict mode, both orders: order 0 (response 0 as A) says B -> P(r0) 0,
   order 1 says B -> P(r0) 1; the orders always disagree, so drop leaves no
   label (status disagree), tie and average give 0.5; first-position wins 0.
2. logprob mode: P(A) ~ 0 in each order (soft [0, 1]), coverage ~ 1; score
   mode with a twin whose weights answer "Score: 7": both responses 7, label 0.5;
   d-RLAIF (ppo.reward = judge) with that twin on a judge rank: every reward 7.
3. kill -9 mid-run, rerun: every call the first run journaled is replayed, none
   is generated again (the rank logs name each generated call's key), and
   every pair is labelled.
4. two judge ranks (mpiexec -n 2) split the pairs; one output in input order;
   each rank's engine runs on its share of the CPUs.
5. model.gemm = auto times the judge model's product classes into the
   per-CPU cache once (a second run reuses them); fixed times nothing.
6. refusals with the numbers and the names: a model that does not fit under a
   real RLIMIT_AS (prlimit) is refused at open; a missing checkpoint, one
   without /tokenizer, a prompt longer than judge.local_context (status
   truncated with the reason, not a crash).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

RLAIF = os.path.abspath(os.environ.get("RLAIF", "src/rlaif"))
SRC = os.environ.get("top_srcdir", os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "reference"))
import judge_fixture as jf  # noqa: E402

failures = []
TEMPLATE = "[user]\nQ: {input}\nA: {response_a}\nB: {response_b}\nWhich is better?\n"


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def env():
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def make_pairs(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "prompt": "What is %d+%d?" % (i, i),
                                "response_a": "It is %d." % (2 * i),
                                "response_b": "I think %d" % (2 * i + 1)}) + "\n")


def judge(tmp, name, ckpt, extra=(), launch=(), wait=True, more_env=None):
    cmd = list(launch) + [RLAIF, "judge", "--input", os.path.join(tmp, "pairs.jsonl"),
                          "--output", os.path.join(tmp, name + ".jsonl"), "--quiet",
                          "--log-dir", os.path.join(tmp, name + "-logs"),
                          "--set", "run.out_dir=" + os.path.join(tmp, name),
                          "--set", "judge.backend=local", "--set", "judge.model=" + ckpt,
                          "--set", "judge.templates=" + os.path.join(tmp, "short.txt"),
                          "--set", "judge.max_tokens=12"] + list(extra)
    e = dict(env(), **(more_env or {}))
    if not wait:
        return subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, env=e, capture_output=True, text=True)


def gemm_choice(tmp, ckpt):
    """model.gemm = auto times the judge model's product classes (its shapes,
    not a job model's: `rlaif judge` has none) into the per-CPU cache once;
    a second run reuses them; fixed times nothing."""
    cache = os.path.join(tmp, "gemm-cache")
    runs = [judge(tmp, "gemm-%d" % i, ckpt, ["--set", "model.gemm=" + g],
                  more_env={"RLAIF_GEMM_CACHE": cache})
            for i, g in enumerate(("auto", "auto", "fixed"))]
    timed = [re.findall(r"gemm: choices from .*?(\d+) class\(es\) timed", r.stdout + r.stderr)
             for r in runs]
    check(all(r.returncode == 0 for r in runs), "gemm: the three runs exit 0")
    files = glob.glob(os.path.join(cache, "gemm-*.txt"))
    lines = [x for f in files for x in open(f) if not x.startswith("#")]
    check(timed[0] and int(timed[0][0]) > 0 and len(lines) == int(timed[0][0]),
          "gemm auto: the judge model's classes timed and cached (%s timed, %d cached)"
          % (timed[0], len(lines)))
    check(timed[1] == ["0"], "gemm auto again: the cache reused, nothing timed (%s)" % timed[1])
    check(not timed[2] and "gemm: the fixed rule" in runs[2].stdout + runs[2].stderr,
          "gemm fixed: nothing timed")


def rows(tmp, name):
    """The output of a run ([] when it wrote none: the checks then fail)."""
    if not os.path.exists(os.path.join(tmp, name + ".jsonl")):
        return []
    with open(os.path.join(tmp, name + ".jsonl")) as f:
        return [json.loads(line) for line in f]


def answered_keys(logdir):
    """The calls a run generated, from its rank logs (judge.c logs each one)."""
    keys = []
    for p in glob.glob(os.path.join(logdir, "*.log")):
        with open(p) as f:
            keys += re.findall(r"judge: local answer ([0-9a-f]{32})", f.read())
    return keys


def labels(tmp, ckpt):
    for dis, want in (("drop", None), ("tie", 0.5), ("average", 0.5)):
        r = judge(tmp, "verdict-" + dis, ckpt, ["--set", "judge.disagreement=" + dis])
        check(r.returncode == 0, "verdict %s: exit 0 (%d: %s)" % (dis, r.returncode, r.stderr[-300:]))
        out = rows(tmp, "verdict-" + dis)
        check(out and all(x["label"] == want for x in out), "verdict %s: every label %s" % (dis, want))
        check(all(x["outcome"] == [1, 0] and x["soft"] == [0.0, 1.0] for x in out),
              "verdict %s: both orders chose position B" % dis)
        if dis == "drop":
            check(all(x["status"] == "disagree" for x in out), "drop: status disagree")
        check("first-position wins 0.000" in r.stdout + r.stderr, "first-position win rate 0")
    r = judge(tmp, "logprob", ckpt, ["--set", "judge.mode=logprob",
                                     "--set", "judge.disagreement=average"])
    out = rows(tmp, "logprob")
    check(r.returncode == 0 and out and all(x["status"] == "ok" for x in out),
          "logprob: all labelled")
    check(all(x["soft"][0] < 1e-6 and x["soft"][1] > 1 - 1e-6 for x in out),
          "logprob: P(A) ~ 0 in each order")
    jnl = [json.loads(line) for p in glob.glob(os.path.join(tmp, "logprob", "journal", "*.jnl"))
           for line in open(p)]
    check(len(jnl) == 2 * len(out) and all(e["cv"] > 1 - 1e-6 for e in jnl),
          "logprob: coverage of A/B ~ 1 in every journaled call")
    # model.precision reaches `rlaif judge`'s local judge (it ran fp32
    # whatever the job said until 2026-12-04): logged, and the same labels
    r = judge(tmp, "logprob-bf16", ckpt, ["--set", "judge.mode=logprob", "--set",
                                          "judge.disagreement=average", "--set",
                                          "model.precision=bf16"])
    out = rows(tmp, "logprob-bf16")
    check(r.returncode == 0 and "precision: bf16" in r.stdout + r.stderr,
          "bf16: the local judge's precision set and logged (%s)" % (r.stdout + r.stderr)[-300:])
    check(out and all(x["status"] == "ok" and x["soft"][0] < 1e-3 and x["soft"][1] > 1 - 1e-3
                      for x in out), "bf16 logprob: P(A) ~ 0 in each order")
    jf.write_always_b(os.path.join(tmp, "hf-7"), jf.SCORE_CHAIN)
    seven = jf.import_ckpt(os.path.join(tmp, "hf-7"), os.path.join(tmp, "seven.h5"), RLAIF)
    r = judge(tmp, "score", seven, ["--set", "judge.mode=score",
                                    "--set", "judge.templates=" + os.path.join(tmp, "score.txt")])
    out = rows(tmp, "score")
    check(r.returncode == 0 and out and all(x["status"] == "ok" and x["score"] == [7, 7]
                                    and x["label"] == 0.5 for x in out),
          "score: every response 7, label 0.5 (%s)" % (out[:1] or r.stderr[-200:]))
    return seven


PPO_JOB = """[run]
seed = 7
[model]
n_layer = 1
n_embd = 16
n_head = 2
max_seq_len = 40
[data]
task = arithmetic
n_prompts = 24
max_operand = 9
[sft]
steps = 4
batch_size = 8
eval_prompts = 0
[ppo]
steps = 2
batch_size = 8
max_new_tokens = 6
reward = judge
missing_eos_penalty = 0
[judge]
backend = local
mode = score
max_tokens = 6
"""


def drlaif(tmp, seven):
    """d-RLAIF (ppo.reward = judge) with the local judge on its own rank: every
    response scored 7, so every iteration's mean score is (7 - 5.5) / 2.25."""
    d = os.path.join(tmp, "ppo")
    os.makedirs(d)
    with open(os.path.join(d, "job.ini"), "w") as f:
        f.write(PPO_JOB)
    sets = ["--set", "run.out_dir=" + d, "--set", "judge.model=" + seven,
            "--set", "judge.templates=" + os.path.join(tmp, "score.txt")]
    r = subprocess.run([RLAIF, "sft", os.path.join(d, "job.ini")] + sets, env=env(),
                       capture_output=True, text=True, cwd=d)
    check(r.returncode == 0, "d-RLAIF: sft (%s)" % r.stderr[-300:])
    r = subprocess.run(["mpiexec", "-n", "3", "--oversubscribe", RLAIF, "ppo",
                        os.path.join(d, "job.ini")] + sets, env=env(), capture_output=True,
                       text=True, cwd=d, timeout=600)
    check(r.returncode == 0, "d-RLAIF: ppo on 1 learner + 1 rollout + 1 local judge rank (%s)"
          % r.stderr[-300:])
    with open(os.path.join(d, "progress.jsonl")) as f:
        scores = [json.loads(line)["objective/scores"] for line in f if '"phase":"ppo"' in line]
    check(scores and all(abs(x - 1.5 / 2.25) < 1e-6 for x in scores),
          "d-RLAIF: every response's reward is the local judge's 7: %s" % scores)


def kill_and_rerun(tmp, ckpt):
    extra = ["--set", "judge.local_batch=2", "--set", "judge.local_slice_tokens=16"]
    p = judge(tmp, "kill", ckpt, extra, wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and len(answered_keys(os.path.join(tmp, "kill-logs"))) < 6:
        time.sleep(0.05)
    p.kill()  # SIGKILL: no handler runs
    p.wait()
    first = answered_keys(os.path.join(tmp, "kill-logs"))
    check(6 <= len(first) < 2 * NPAIRS, "kill -9 after %d of %d calls" % (len(first), 2 * NPAIRS))
    shutil.move(os.path.join(tmp, "kill-logs"), os.path.join(tmp, "kill-logs-1"))
    r = judge(tmp, "kill", ckpt, extra)
    check(r.returncode == 0, "rerun: exit 0 (%s)" % r.stderr[-300:])
    second = answered_keys(os.path.join(tmp, "kill-logs"))
    again = set(first) & set(second)
    check(not again, "rerun: 0 repeated generations (%d of the %d journaled calls again)"
          % (len(again), len(first)))
    check(len(set(first) | set(second)) == 2 * NPAIRS and len(second) == len(set(second)),
          "every call generated exactly once over the two runs")
    out = rows(tmp, "kill")
    check(len(out) == NPAIRS and all(x["label"] == 0.5 for x in out), "rerun: all pairs labelled")


def two_ranks(tmp, ckpt):
    mpiexec = os.environ.get("MPIEXEC", "mpiexec")
    if not shutil.which(mpiexec):
        print("mpiexec not found: two judge ranks not tried")
        return
    r = judge(tmp, "two", ckpt, ["--set", "judge.local_batch=4"],
              launch=[mpiexec, "-n", "2", "--oversubscribe"])
    check(r.returncode == 0, "2 ranks: exit 0 (%s)" % r.stderr[-300:])
    out = rows(tmp, "two")
    check([x["id"] for x in out] == list(range(NPAIRS)) and all(x["label"] == 0.5 for x in out),
          "2 ranks: one output in input order, every pair labelled")
    per = [len(answered_keys_file(p)) for p in
           sorted(glob.glob(os.path.join(tmp, "two-logs", "*.log")))]
    check(len(per) == 2 and all(n > 0 for n in per) and sum(per) == 2 * NPAIRS,
          "2 ranks: both generated a share (%s)" % per)
    # the engine runs on each rank's share of the cores, never all of them per rank
    cpus = len(os.sched_getaffinity(0))
    team = [int(m) for p in glob.glob(os.path.join(tmp, "two-logs", "*.log"))
            for m in re.findall(r"threads: (\d+) on rank", open(p).read())]
    check(len(team) == 2 and sum(team) <= max(cpus, 2), "2 ranks: threads %s on %d CPUs"
          % (team, cpus))


def answered_keys_file(path):
    with open(path) as f:
        return re.findall(r"judge: local answer ([0-9a-f]{32})", f.read())


def refusals(tmp, ckpt):
    # a real limit: the address space this process may still map
    prlimit = shutil.which("prlimit")
    ldd = subprocess.run(["ldd", RLAIF], capture_output=True, text=True).stdout
    if "libasan" in ldd:  # its shadow memory alone is terabytes of address space
        print("sanitizer build: the RLIMIT_AS refusal not tried")
    elif prlimit:
        lim = 3 << 30
        r = judge(tmp, "mem", ckpt, ["--set", "judge.local_batch=4096",
                                     "--set", "judge.local_context=4096"],
                  launch=[prlimit, "--as=%d" % lim])
        msg = r.stdout + r.stderr
        check(r.returncode != 0 and "needs" in msg and "RLIMIT_AS" in msg and ckpt in msg,
              "memory: refused at open with the numbers (%s)"
              % msg.strip().splitlines()[-1][:300] if msg.strip() else "")
        r = judge(tmp, "mem-ok", ckpt, ["--set", "judge.local_batch=4"],
                  launch=[prlimit, "--as=%d" % lim])
        check(r.returncode == 0, "memory: a batch that fits runs under the same limit (%s)"
              % r.stderr[-200:])
    else:
        print("prlimit not found: the memory refusal not tried")
    r = judge(tmp, "missing", os.path.join(tmp, "no-such.h5"))
    check(r.returncode != 0 and "no-such.h5" in r.stderr, "missing checkpoint named: %s"
          % r.stderr.strip()[-200:])
    import h5py
    bare = os.path.join(tmp, "bare.h5")
    shutil.copy(ckpt, bare)
    with h5py.File(bare, "a") as f:
        del f["tokenizer"]
    r = judge(tmp, "bare", bare)
    check(r.returncode != 0 and "bare.h5" in r.stderr and "/tokenizer" in r.stderr,
          "checkpoint without /tokenizer named: %s" % r.stderr.strip()[-200:])
    r = judge(tmp, "short", ckpt, ["--set", "judge.local_context=40"])
    out = rows(tmp, "short") if r.returncode == 0 else []
    check(len(out) == NPAIRS and all(x["status"] == "truncated" and "local_context" in x["reason"]
                                     for x in out),
          "prompt longer than judge.local_context: status truncated with the reason")


NPAIRS = 12


def main():
    tmp = tempfile.mkdtemp(prefix="rlaif-jlocal-")
    try:
        with open(os.path.join(tmp, "short.txt"), "w") as f:
            f.write(TEMPLATE)
        with open(os.path.join(tmp, "score.txt"), "w") as f:
            f.write("[user]\nQ: {input}\nR: {response}\nRate it 1-10.\n")
        make_pairs(os.path.join(tmp, "pairs.jsonl"), NPAIRS)
        jf.write_always_b(os.path.join(tmp, "hf-b"))
        ckpt = jf.import_ckpt(os.path.join(tmp, "hf-b"), os.path.join(tmp, "always-b.h5"), RLAIF)
        seven = labels(tmp, ckpt)
        gemm_choice(tmp, ckpt)
        drlaif(tmp, seven)
        kill_and_rerun(tmp, ckpt)
        two_ranks(tmp, ckpt)
        refusals(tmp, ckpt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failures" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
