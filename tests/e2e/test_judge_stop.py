"""test_judge_stop.py - `rlaif judge` stopped by a signal, and redirects,
against tools/dev/mock-judge and small servers on loopback.

1. A stop and a rerun (README, Judge, "Command"): SIGTERM or SIGUSR1 mid-run
   (the mock answers after 50 ms, so the run lasts a few seconds; the signal
   goes once the server has delivered some answers). The stopped run exits 75,
   keeps its journal (holding every answer the server delivered: the stop
   loses none) and its part files, and leaves OUTPUT, which holds an earlier
   run's text, untouched. The rerun exits 0 with every pair in input order
   and no part left, sends exactly the calls the journal lacks, and the server
   counts 0 paid repeats (requests for an answer it had already delivered;
   judge.max_inflight is not in the journal key, so the rerun uses more).
   Three ways: SIGTERM to one rank; SIGUSR1 to mpiexec -n 2 (Open MPI's
   mpiexec forwards SIGUSR1 and SIGUSR2 to the ranks), rerun on 2 ranks;
   SIGTERM to both ranks of an mpiexec -n 2 run (as Slurm's scancel signals
   every task), rerun on 1 rank (it replays both journals). SIGTERM sent to
   mpiexec itself is not tried: Open MPI then terminates the job (it signals
   the ranks, which stop the same way) and exits 1 whatever they return.

2. Redirects are never followed: the endpoint answers 307 and 308 with a
   Location on another loopback port. That port is a bare listener recording
   every connection: it must see none (so neither a request nor the key), and
   every pair ends with status http, the 3xx code, and a reason naming the
   redirect and where it pointed.
"""
import json
import os
import http.server
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from test_judge_faults import KEY, KEY_ENV, MOCK, RLAIF, Mock, make_pairs

failures = []
N = 240


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def env():
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OPENBLAS_NUM_THREADS="1", **{KEY_ENV: KEY})


def judge_cmd(tmp, name, pairs, base_url, extra=()):
    return [RLAIF, "judge", "--input", pairs, "--output", os.path.join(tmp, name + ".jsonl"),
            "--quiet", "--set", "run.out_dir=" + os.path.join(tmp, name),
            "--set", "judge.backend=openai", "--set", "judge.model=mock-judge",
            "--set", "judge.base_url=" + base_url, "--set", "judge.api_key_env=" + KEY_ENV,
            "--set", "judge.both_orders=0", "--set", "judge.timeout=5"] + list(extra)


def children(pid):
    """The rlaif processes whose parent is pid (mpiexec's ranks)."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open("/proc/%s/stat" % d).read()
            cmd = open("/proc/%s/cmdline" % d, "rb").read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid and b"rlaif" in cmd:
            kids.append(int(d))
    return kids


def stop_and_rerun(tmp, name, launch, sig, to_ranks, relaunch):
    """Run, signal after some answers, check the stop; rerun, check the finish."""
    pairs = os.path.join(tmp, "pairs.jsonl")
    out = os.path.join(tmp, name + ".jsonl")
    m = Mock(tmp, "--latency", "0.05")
    url = "http://127.0.0.1:%d/v1" % m.port
    cmd = judge_cmd(tmp, name, pairs, url, ["--set", "judge.max_inflight=4"])
    earlier = "an earlier run's output: the stopped run must not touch it\n"
    open(out, "w").write(earlier)
    t0 = time.time()
    log = open(os.path.join(tmp, name + ".log"), "w")
    p = subprocess.Popen(launch + cmd, stdout=log, stderr=log, env=env())
    while p.poll() is None and m.stats()["delivered"] < 40 and time.time() - t0 < 60:
        time.sleep(0.01)
    targets = children(p.pid) if to_ranks else [p.pid]
    nranks = 2 if launch else 1
    check(p.poll() is None and len(targets) == (nranks if to_ranks else 1),
          "%s: the run ended before the signal, or %d ranks found" % (name, len(targets)))
    for pid in targets:
        os.kill(pid, sig)
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    log.close()
    st1 = m.stats(settled=True)
    text = open(os.path.join(tmp, name + ".log")).read()
    check(rc == 75, "%s: exit code %d after signal %d, want 75 (see %s.log)" % (name, rc, sig, name))
    signame = signal.Signals(sig).name
    check("stopping (%s)" % signame in text, "%s: the log does not name %s" % (name, signame))
    check(open(out).read() == earlier, "%s: the stopped run touched %s" % (name, out))
    jdir = os.path.join(tmp, name, "journal")
    jnls = sorted(os.listdir(jdir)) if os.path.isdir(jdir) else []
    journaled = sum(sum(1 for _ in open(os.path.join(jdir, f))) for f in jnls)
    check(len(jnls) == nranks, "%s: journal files %s" % (name, jnls))
    check(st1["delivered"] == journaled and 0 < journaled < N,
          "%s: the server delivered %d answers, the journal holds %d (of %d)"
          % (name, st1["delivered"], journaled, N))
    parts = sorted(f for f in os.listdir(tmp) if f.startswith(name + ".jsonl.part."))
    check(len(parts) == nranks, "%s: part files %s" % (name, parts))
    lines = [l for f in parts for l in open(os.path.join(tmp, f))]
    ids = [json.loads(l.split(" ", 1)[1])["id"] for l in lines if l.endswith("\n")]
    check(len(ids) == len(lines) and len(set(ids)) == len(ids) and 0 < len(ids) <= journaled,
          "%s: the parts hold %d lines, %d distinct pairs, journal %d"
          % (name, len(lines), len(set(ids)), journaled))
    stopped = time.time() - t0

    t1 = time.time()
    with open(os.path.join(tmp, name + ".log"), "a") as log:
        rc = subprocess.call(relaunch + cmd + ["--set", "judge.max_inflight=16"], stdout=log, stderr=log,
                             env=env(), timeout=60)
    st2 = m.stats(settled=True)
    m.stop()
    check(rc == 0, "%s: the rerun exited %d" % (name, rc))
    res = [json.loads(l) for l in open(out)] if rc == 0 else []
    check([r["id"] for r in res] == list(range(N)) and all(r["status"] == "ok" for r in res),
          "%s: the rerun's output is not the %d pairs, labelled, in input order" % (name, N))
    check(sum(r["replayed"] for r in res) == journaled,
          "%s: the rerun replayed %d calls, the journal had %d"
          % (name, sum(r["replayed"] for r in res), journaled))
    check(not [f for f in os.listdir(tmp) if f.startswith(name + ".jsonl.")],
          "%s: parts left after the rerun" % name)
    sent = st2["requests"] - st1["requests"]
    check(st2["paid_repeats"] == 0 and sent == N - journaled and st2["unauthorized"] == 0,
          "%s: the rerun sent %d requests for %d missing answers, %d paid repeats"
          % (name, sent, N - journaled, st2["paid_repeats"]))
    print("%s: stopped with %d of %d answers journaled (%.1f s), rerun sent %d requests, "
          "%d paid repeats (%.1f s)" % (name, journaled, N, stopped, sent, st2["paid_repeats"],
                                        time.time() - t1))


class Listener:
    """A bare TCP listener on loopback that records every connection and
    what first arrives on it, then hangs up (never answers)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.conns, self.data, self.done = 0, b"", False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.done:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.conns += 1
            c.settimeout(0.5)
            try:  # the request's head with its headers, then hang up
                self.data += c.recv(65536)
            except OSError:
                pass
            c.close()

    def stop(self):
        self.done = True
        self.t.join()
        self.sock.close()


def redirects(tmp):
    target = Listener()
    location = "http://127.0.0.1:%d/v1/chat/completions" % target.port
    seen = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 5

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            code = 307 if len(seen) % 2 == 0 else 308
            seen.append(code)
            body = b'{"error": {"message": "moved", "type": "moved"}}'
            self.send_response(code)
            self.send_header("Location", location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    pairs = os.path.join(tmp, "redirect-pairs.jsonl")
    make_pairs(pairs, 20, seed=3)
    out = os.path.join(tmp, "redirect.jsonl")
    with open(os.path.join(tmp, "redirect.log"), "w") as log:  # one attempt: a client that
        try:                                                       # follows fails fast too
            rc = subprocess.call(judge_cmd(tmp, "redirect", pairs,
                                           "http://127.0.0.1:%d/v1" % srv.server_address[1],
                                           ["--set", "judge.max_inflight=4", "--set", "judge.max_attempts=1"]),
                                 stdout=log, stderr=log, env=env(), timeout=60)
        except subprocess.TimeoutExpired:
            rc = -1
    time.sleep(0.2)  # a connection to the target would have been accepted by now
    srv.shutdown()
    srv.server_close()
    target.stop()
    res = [json.loads(l) for l in open(out)] if os.path.exists(out) else []
    check(rc == 0, "redirect: rlaif judge exit code %d" % rc)
    check(target.conns == 0 and KEY.encode() not in target.data,
          "redirect: the Location's server got %d connections (%d bytes%s)"
          % (target.conns, len(target.data), ", with the key" if KEY.encode() in target.data else ""))
    check(len(seen) == 20 and set(seen) == {307, 308},
          "redirect: the endpoint answered %d requests with %s" % (len(seen), sorted(set(seen))))
    bad = [r for r in res if not (r["status"] == "http" and r["http"] in (307, 308) and r["label"] is None
                                  and "redirect" in r["reason"] and location in r["reason"]
                                  and "not followed" in r["reason"])]
    check(len(res) == 20 and not bad,
          "redirect: %d results, %d without status http, the 3xx and a reason naming the redirect: %s"
          % (len(res), len(bad), [(r["status"], r["http"], r["reason"]) for r in bad[:2]]))
    print("redirect: 20 pairs, %d answered 307 and %d 308, failed with '%s'; the Location's server "
          "saw %d connections" % (seen.count(307), seen.count(308), res[0]["reason"] if res else "",
                                  target.conns))


def main():
    if not os.access(MOCK, os.X_OK):
        print("SKIP: %s not built" % MOCK)
        return 77
    tmp = tempfile.mkdtemp(prefix="rlaif-judge-stop-")
    make_pairs(os.path.join(tmp, "pairs.jsonl"), N)
    t0 = time.time()
    redirects(tmp)
    stop_and_rerun(tmp, "sigterm", [], signal.SIGTERM, False, [])
    mpiexec = os.environ.get("MPIEXEC", "")
    if mpiexec and shutil.which(mpiexec):
        two = [mpiexec, "-n", "2", "--oversubscribe"]
        stop_and_rerun(tmp, "mpi-sigusr1", two, signal.SIGUSR1, False, two)
        stop_and_rerun(tmp, "mpi-sigterm", two, signal.SIGTERM, True, [])
    else:
        print("mpiexec not found: the 2-rank stops not tried")
    print("total %.1f s" % (time.time() - t0))
    if failures:
        print("%d failures; files kept in %s" % (len(failures), tmp))
        return 1
    shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
