#!/usr/bin/python3
"""`rlaif status OUT_DIR` on a short `rlaif run` (sft then collect, 2
colocated ranks; sft paced by RLAIF_TEST_STEP_DELAY, collect against
tools/dev/mock-judge answering after 0.8 s, 2 requests in flight; both slower when a status call
is slow, as in the sanitizer build):
  a. while sft runs: --json has the phase, step/total, ETA, the writer's pid
     and host and running = true; the step grows between two calls; the text
     form shows them; --watch 0.5 --json prints one object per refresh and
     ends cleanly on SIGINT;
  b. while collect runs: the judge's requests so far, sft "done" with its
     summary, the newest checkpoint is sft's final one;
  c. kill -9 of the job: status still reads the last state, says the job is
     not running (the out_dir lock is free) and how old the last update is;
  d. the same command reruns to the end: status says exited 0 and each
     phase's state, also when run from another folder;
  e. status never writes: after c and d, every file and folder under the
     out_dir has the same mtime, size and SHA-256 after `status` in each form
     (text, --json, job.ini, --watch);
  f. metrics.h5 /summary/sft and /summary/collect hold the phase summary with
     plausible values (times add up to wall x ranks, throughput = count / wall,
     judge usage), and the log has the summary block;
  g. bad arguments: a missing folder exits 66, a file that is not .ini 64."""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import h5py

RLAIF = os.environ["RLAIF"]
MPI = os.environ.get("MPIEXEC", "mpiexec")
MOCK = os.path.join(os.environ["top_builddir"], "tools", "dev", "mock_judge")
d = tempfile.mkdtemp(prefix="rlaif-status-")
out = os.path.join(d, "out")
children = []


def cleanup():
    for p in children:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(d, ignore_errors=True)


def fail(msg):
    print("FAIL: " + msg)
    cleanup()
    sys.exit(1)


with open(os.path.join(d, "job.ini"), "w") as f:
    f.write("""[run]
seed = 5
log_every = 5
phases = sft, collect
out_dir = out
[model]
n_layer = 2
n_embd = 32
n_head = 2
max_seq_len = 48
[data]
task = arithmetic
n_prompts = 32
max_operand = 9
[sft]
steps = 60
batch_size = 16
lr = 3e-3
warmup_steps = 2
eval_prompts = 0
[collect]
responses_per_prompt = 4
pairs_per_prompt = 2
max_new_tokens = 8
credit = 8
[checkpoint]
every = 20
""")
open(os.path.join(d, "job.txt"), "w").close()

env = dict(os.environ, OMP_NUM_THREADS="1", RLAIF_TEST_JUDGE_KEY="sk-test-status")


def status(*args):
    r = subprocess.run([RLAIF, "status"] + list(args), cwd=d, env=env, capture_output=True,
                       text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


# The pace: a `status` call (an MPI start-up) takes 0.3-1 s here but up to
# 20 s in the sanitizer build on a loaded machine, and the test needs a few
# calls within each phase, so sft's steps and the judge's answers are slowed
# in proportion (at least 0.15 s a step, 0.8 s an answer). collect writes its
# status every 5 s: at 0.4 s an answer it lasted 13 s, and once (CI,
# 2026-12-06, plain build) the status calls were
# slow enough later in the run to miss both lines before its end.
t = time.time()
if status("job.ini")[0] != 0 or os.path.exists(out):
    fail("status of a job that never ran")
call = time.time() - t
step_delay = max(0.15, 4 * call / 60)
latency = max(0.8, (8 + 4 * call) / 30)
print(f"pace: a status call takes {call:.1f} s: sft {step_delay:.2f} s a step, judge {latency:.2f} s")
portf = os.path.join(d, "port")
children.append(subprocess.Popen([MOCK, "--port-file", portf, "--latency", str(latency),
                                  "--idle-exit", "300"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL))
for _ in range(200):
    if os.path.exists(portf) and open(portf).read().strip():
        break
    time.sleep(0.02)
port = open(portf).read().strip()
judge = ["--set", "judge.backend=openai", "--set", "judge.model=mock-judge",
         "--set", f"judge.base_url=http://127.0.0.1:{port}/v1",
         "--set", "judge.api_key_env=RLAIF_TEST_JUDGE_KEY", "--set", "judge.max_inflight=2"]


def start_job(log, **extra):
    e = dict(env, **extra)
    p = subprocess.Popen([MPI, "-n", "2", "--oversubscribe", RLAIF, "run", "job.ini"] + judge,
                         cwd=d, env=e, stdin=subprocess.DEVNULL, stdout=open(log, "w"),
                         stderr=subprocess.STDOUT)
    children.append(p)
    return p


def sj():
    rc, o, e = status("out", "--json")
    if rc != 0:
        fail(f"status --json exit {rc}: {e}")
    return json.loads(o.strip().splitlines()[-1])


def wait_for(what, pred, timeout=300):
    t = time.time()
    while time.time() - t < timeout:
        if os.path.exists(os.path.join(out, "status.json")):
            s = sj()
            if pred(s):
                return s
        time.sleep(0.3)
    fail(f"timed out waiting for {what}")


def snapshot():
    """mtime, size and SHA-256 of everything under the out_dir (folders: mtime)."""
    snap = {}
    for root, dirs, files in os.walk(out):
        for n in dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            h = ""
            if os.path.isfile(p):
                h = hashlib.sha256(open(p, "rb").read()).hexdigest()
            snap[p] = (st.st_mtime_ns, st.st_size, h)
    snap[out] = (os.stat(out).st_mtime_ns, 0, "")
    return snap


def never_writes(when):
    before = snapshot()
    calls = [("out",), ("out", "--json"), ("job.ini",), ("job.ini", "--json"),
             ("out", "--watch", "1")]
    for args in calls:  # --watch ends with a job that is not running (else: timeout)
        rc, o, e = status(*args)
        if rc != 0 or (args[-1] == "1" and len(o.strip().splitlines()) < 4):
            fail(f"{when}: status {' '.join(args)} exit {rc}: {o} {e}")
    after = snapshot()
    if before != after:
        diff = sorted(set(before.items()) ^ set(after.items()))
        fail(f"{when}: status changed the out_dir: {diff[:4]}")
    print(f"ok: {when}: status in 5 forms left {len(before)} files and folders unchanged")


# ---------------------------------------------------------------- a. sft
log1 = os.path.join(d, "run1.log")
job = start_job(log1, RLAIF_TEST_STEP_DELAY=str(step_delay))
s = wait_for("sft progress", lambda s: s.get("phase") == "sft" and "progress" in s)
p = s["progress"]
if not (s["running"] is True and p["total"] == 60 and 0 < p["step"] <= 60 and
        isinstance(p.get("eta_s"), (int, float)) and p["unit"] == "tok/s"):
    fail(f"sft progress fields: {s}")
if s["pid"] <= 0 or s["host"] != socket.gethostname() or s["phase_index"] != 1 or \
        s["phase_count"] != 2 or s["state"] != "running":
    fail(f"writer fields: {s}")
step0 = p["step"]
s = wait_for("sft to advance", lambda s: s.get("phase") != "sft" or s["progress"]["step"] > step0)
print(f"ok: a. sft step {step0} -> {s.get('progress', {}).get('step')} of 60, "
      f"ETA {p['eta_s']:.1f} s, pid {s['pid']} on {s['host']}")
rc, text, _ = status("out")
for want in ("running:    yes", "phase:", "progress:   step", "ETA", "last update"):
    if want not in text:
        fail(f"text form lacks '{want}':\n{text}")
w = subprocess.Popen([RLAIF, "status", "out", "--watch", "0.5", "--json"], cwd=d, env=env,
                     stdout=subprocess.PIPE, text=True)
lines = [json.loads(w.stdout.readline()) for _ in range(3)]  # MPI start-up may take seconds
t = [x["updated"] for x in lines]
w.send_signal(signal.SIGINT)
w.communicate(timeout=20)
if w.returncode != 0 or t != sorted(t) or any(x["running"] is not True for x in lines):
    fail(f"--watch 0.5: exit {w.returncode}, updates {t}")
print("ok: a. --watch 0.5 --json: one object per refresh, exit 0 on SIGINT")

# ---------------------------------------------------------------- b. collect
s = wait_for("collect with judge figures",
             lambda s: s.get("phase") == "collect" and s.get("judge", {}).get("requests", 0) > 0)
sft = s["phases"][0]
if sft["name"] != "sft" or sft["state"] != "done" or sft.get("summary", {}).get("steps") != 60:
    fail(f"sft entry while collect runs: {sft}")
if not s.get("newest_checkpoint", {}).get("path", "").endswith("sft-00000060.h5") or \
        s["newest_checkpoint"]["step"] != 60 or not s["newest_checkpoint"]["done"]:
    fail(f"newest checkpoint: {s.get('newest_checkpoint')}")
j = s["judge"]
print(f"ok: b. collect: {j['requests']:.0f} judge requests ({j['requests_per_s']:.2f}/s), "
      f"{j['failures']:.0f} failures, {j['tokens']:.0f} tokens; sft done, newest checkpoint "
      f"{os.path.basename(s['newest_checkpoint']['path'])}")

# ---------------------------------------------------------------- c. kill -9
if s["progress"]["step"] >= s["progress"]["total"]:
    fail(f"collect ended before the kill: make it longer ({s['progress']})")
os.kill(s["pid"], signal.SIGKILL)  # rank 0, which holds the lock and writes the file
for pid in os.listdir("/proc"):  # the other rank: a child of mpiexec
    try:
        if pid.isdigit() and open(f"/proc/{pid}/stat").read().split(") ")[1].split()[1] == str(job.pid):
            os.kill(int(pid), signal.SIGKILL)
    except (OSError, IndexError):
        pass
job.kill()
job.wait()
time.sleep(1.2)
s = sj()
if s["running"] is not False or s["state"] != "running" or "exit_code" in s or \
        not s["age_s"] >= 1 or s["phase"] != "collect":
    fail(f"after kill -9: {s}")
rc, text, _ = status("out")
if "NO: the job ended without recording an exit" not in text or "last update" not in text:
    fail(f"after kill -9, text:\n{text}")
print(f"ok: c. after kill -9: not running ({s['running_why']}), last update "
      f"{s['age_s']:.0f} s ago, phase {s['phase']} at {s['progress']['step']} of "
      f"{s['progress']['total']}")
never_writes("c. after kill -9")

# ---------------------------------------------------------------- d. rerun
log2 = os.path.join(d, "run2.log")
job = start_job(log2)
if job.wait(timeout=900) != 0:
    fail("rerun: " + open(log2).read())
s = sj()
states = {e["name"]: e["state"] for e in s["phases"]}
if s["running"] is not False or s["state"] != "exited" or s["exit_code"] != 0 or \
        states != {"sft": "skipped", "collect": "done"}:
    fail(f"finished run: {s}")
rc, text, _ = status("out")
if "no: exited 0 (done)" not in text:
    fail(f"finished run, text:\n{text}")
r = subprocess.run([RLAIF, "status", out, "--json"], cwd="/", env=env, capture_output=True,
                   text=True, timeout=300)  # from another folder: the same answer
s2 = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {}
if s2.get("newest_checkpoint", {}).get("path") != os.path.join(out, "ckpt", "sft-00000060.h5"):
    fail(f"status from /: {r.stdout} {r.stderr}")
print(f"ok: d. finished: exited 0, phases {states}; the same from another folder")
never_writes("e. after the finished run")

# ---------------------------------------------------------------- f. summaries
with h5py.File(os.path.join(out, "metrics.h5"), "r") as f:
    a = {ph: {k: float(v) for k, v in f["summary"][ph].attrs.items()} for ph in ("sft", "collect")}
for ph, v in a.items():
    times = v["compute_s"] + v["judge_wait_s"] + v["io_s"] + v["comm_s"]
    if not (v["ranks"] == 2 and v["wall_s"] > 0 and 0 < times <= v["wall_s"] * 2 + 1e-6 and
            abs(times + v["other_s"] - v["wall_s"] * 2) < 1e-6 * v["wall_s"] + 1e-9):
        fail(f"{ph} time split: {v}")
    for n in ("steps", "tokens", "pairs", "judge_requests"):
        if abs(v[n + "_per_s"] - v[n] / v["wall_s"]) > 1e-9 * v[n + "_per_s"] + 1e-12:
            fail(f"{ph} {n}_per_s is not {n} / wall_s: {v}")
S, C = a["sft"], a["collect"]
if not (S["steps"] == 60 and S["tokens"] > 0 and S["compute_s"] > 0 and S["comm_s"] > 0 and
        S["io_s"] > 0 and S["pairs"] == 0 and S["judge_requests"] == 0):
    fail(f"sft summary: {S}")
if not (C["pairs"] > 0 and C["steps"] == 0 and C["tokens"] > 0 and C["judge_wait_s"] > 0 and
        C["judge_requests"] + C["judge_replayed"] >= C["pairs"] and C["judge_tokens"] > 0 and
        C["judge_failures"] == 0 and C["judge_cost_usd"] == 0):
    fail(f"collect summary: {C}")
logs = open(log1).read() + open(log2).read()
for want in ("sft summary: ", "collect summary: judge "):
    if want not in logs:
        fail(f"no '{want}' block in the logs")
print(f"ok: f. sft {S['steps']:.0f} steps {S['steps_per_s']:.2f}/s, {S['tokens_per_s']:.0f} tok/s, "
      f"compute {S['compute_s']:.2f} comm {S['comm_s']:.2f} I/O {S['io_s']:.2f} of "
      f"{S['wall_s'] * 2:.1f} rank-s; collect {C['pairs']:.0f} pairs {C['pairs_per_s']:.2f}/s, "
      f"{C['judge_requests']:.0f} requests + {C['judge_replayed']:.0f} from the journal, judge wait "
      f"{C['judge_wait_s']:.1f} of {C['wall_s'] * 2:.1f} rank-s")

# ---------------------------------------------------------------- g. bad arguments
rc, _, e = status("no-such-dir")
if rc != 66 or e.count("ERROR") != 1:
    fail(f"missing folder: exit {rc}: {e}")
rc, _, e = status("job.txt")
if rc != 64 or e.count("ERROR") != 1:
    fail(f"a file that is not .ini: exit {rc}: {e}")
print("ok: g. a missing folder exits 66, a non-.ini file 64")
cleanup()
