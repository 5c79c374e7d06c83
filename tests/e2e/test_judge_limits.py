"""test_judge_limits.py - judge.connect_timeout and the rate limits split
over the judge ranks, against loopback only.

1. Connect timeout. A listening socket on 127.0.0.1 with backlog 0 that never
   calls accept(), its accept queue filled with a connection of our own: Linux
   then drops every further SYN, so a connect() to it stays in SYN_SENT until
   the client gives up. With judge.connect_timeout = 0.3 s, judge.timeout = 30 s
   and 3 attempts, every pair must come back as `exhausted` with the connect
   timeout as its reason after 3 x 0.3 s plus two backoffs: a few seconds.
   Without the connect timeout each attempt would last the whole 30 s
   (the run is cut at 25 s and fails).

2. judge.requests_per_minute / judge.tokens_per_minute are for the whole job:
   each of J judge ranks takes 1/J. The mock server records when each request
   arrived (GET /arrivals); over 40 requests the client's rate must be the
   configured one with 1 rank and with 2 (mpiexec -n 2), not J times it.
   Each rank's bucket starts full with one second of its share, so all ranks
   together may send R/60 requests at once and then R/60 per second:
   N requests take (N - R/60) / (R/60) seconds. With R = 600/min and N = 40
   that is 3 s, and the rate measured as (N - R/60) / span is 10/s; without
   the split (each rank the whole R) it is 30/s with 2 ranks. Tolerance:
   +5% above (timer rounding only slows the client down: a token bucket
   never lets it run ahead) and -15% below (the ranks do not start at the same
   instant, and a late wake-up costs a little when the bucket is empty).
   The steady rate after the burst (a least-squares slope) must be within 10%
   of R/60, and no 1 s window may see more than R/60 + R/60 (+1 for jitter).
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from test_judge_faults import KEY, KEY_ENV, MOCK, RLAIF, Mock, make_pairs

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def env():
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OPENBLAS_NUM_THREADS="1", **{KEY_ENV: KEY})


def judge_cmd(tmp, name, pairs, base_url, extra):
    return [RLAIF, "judge", "--input", pairs, "--output", os.path.join(tmp, name + ".jsonl"),
            "--set", "run.out_dir=" + os.path.join(tmp, name),
            "--set", "judge.backend=openai", "--set", "judge.model=mock-judge",
            "--set", "judge.base_url=" + base_url, "--set", "judge.api_key_env=" + KEY_ENV,
            "--set", "judge.both_orders=0"] + list(extra)


# ------------------------------------------------------- connect timeout

def black_hole():
    """A 127.0.0.1 port whose SYNs are dropped: backlog 0, never accepted,
    the queue filled by our own connections. Returns (listener, fillers,
    port), or None when this kernel answers the SYN anyway."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fillers = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
        time.sleep(0.05)
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        ok = False
    except socket.timeout:
        ok = True
    except OSError:
        ok = False
    probe.close()
    if not ok:
        ls.close()
        for s in fillers:
            s.close()
        return None
    return ls, fillers, port


def connect_timeout(tmp):
    hole = black_hole()
    if not hole:
        print("SKIP connect timeout: this kernel completes connects to a full accept queue")
        return
    ls, fillers, port = hole
    pairs = os.path.join(tmp, "hole-pairs.jsonl")
    n, attempts, ct = 6, 3, 0.3
    make_pairs(pairs, n)
    cmd = judge_cmd(tmp, "hole", pairs, "http://127.0.0.1:%d/v1" % port,
                    ["--set", "judge.connect_timeout=%g" % ct, "--set", "judge.timeout=30",
                     "--set", "judge.max_attempts=%d" % attempts, "--set", "judge.max_inflight=8",
                     "--set", "judge.backoff_base=0.2", "--set", "judge.backoff_cap=0.4",
                     "--set", "run.verbose=true"])
    t0 = time.time()
    try:
        p = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=25)
        took, rc, out = time.time() - t0, p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        o = e.stdout or b""
        took, rc, out = time.time() - t0, -1, o.decode(errors="replace") if isinstance(o, bytes) else o
    ls.close()
    for s in fillers:
        s.close()
    with open(os.path.join(tmp, "hole.log"), "w") as f:
        f.write(out)
    # each pair: 3 connects of 0.3 s, backoffs 0.2 and 0.4 times (1 - U/4)
    least = attempts * ct + 0.75 * (0.2 + 0.4)
    check(rc == 0, "connect timeout: exit code %d after %.1f s (30 s per attempt: the "
          "connect timeout is not applied?)" % (rc, took))
    wall = re.search(r"judge: 1 rank, ([\d.]+) s wall", out)
    wall = float(wall.group(1)) if wall else -1
    check(least <= wall < 5, "connect timeout: %d pairs took %.2f s (%.2f s in the judge), want "
          "%.2f..5 s (the whole-request timeout is 30 s)" % (n, took, wall, least))
    # the retries, as the client logs them: backoff_base * 2^n * (1 - U/4)
    delays = {}
    for pair, k, d in re.findall(r"judge: pair (\d+) call \w+ retry (\d+) in ([\d.]+) s: transport", out):
        delays.setdefault(int(pair), []).append((int(k), float(d)))
    check(sorted(delays) == list(range(n)) and
          all([k for k, _ in v] == [1, 2] and 0.15 <= v[0][1] <= 0.2 and 0.3 <= v[1][1] <= 0.4
              for v in delays.values()),
          "connect timeout: retries are not 2 per pair with backoff 0.15..0.2 then 0.3..0.4 s: %s" % delays)
    res = [json.loads(l) for l in open(os.path.join(tmp, "hole.jsonl"))] if rc == 0 else []
    check(len(res) == n, "connect timeout: %d results for %d pairs" % (len(res), n))
    # curl's own words, e.g. "Failed to connect to 127.0.0.1 port 4242 after
    # 301 ms: Timeout was reached" (older: "Connection timed out after 301
    # milliseconds"): a connect that timed out after about 0.3 s, not 30
    for r in res:
        m = re.search(r"connect.* after (\d+) (ms|milliseconds).*|timed out after (\d+) milli", r["reason"], re.I)
        ms = int(m.group(1) or m.group(3)) if m else -1
        check(r["label"] is None and r["status"] == "exhausted" and
              r["reason"].startswith("gave up after %d attempts: transport: " % attempts) and
              re.search("time", r["reason"], re.I) and 1000 * ct <= ms < 1000 * ct + 200,
              "connect timeout: pair %d: status %s, reason %r" % (r["id"], r["status"], r["reason"]))
    want = "%d HTTP requests, %d retries, %d failed calls" % (n * attempts, n * (attempts - 1), n)
    check(want in out, "connect timeout: the report does not say %r:\n%s" % (want, out))
    print("connect timeout %.1f s, 30 s total, %d attempts: %d pairs exhausted in %.2f s (judge wall "
          "%.2f s, at least %.2f)" % (ct, attempts, len(res), took, wall, least))


# ---------------------------------------------------- rate limit per job

def slope(ts, ys):
    """Least-squares slope of ys over ts."""
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    num = sum((t - mt) * (y - my) for t, y in zip(ts, ys))
    den = sum((t - mt) ** 2 for t in ts)
    return num / den if den > 0 else float("inf")


def rate_run(tmp, name, ranks, pairs, n, settings):
    """Run the judge on `ranks` ranks; the arrival times and billed tokens
    seen by the server, or None."""
    m = Mock(tmp)
    cmd = judge_cmd(tmp, name, pairs, "http://127.0.0.1:%d/v1" % m.port,
                    ["--set", "judge.max_inflight=16", "--quiet"] + settings)
    if ranks > 1:
        cmd = [os.environ["MPIEXEC"], "-n", str(ranks), "--oversubscribe"] + cmd
    with open(os.path.join(tmp, name + ".log"), "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=log, env=env(), timeout=120)
    with urllib.request.urlopen("http://127.0.0.1:%d/arrivals" % m.port, timeout=5) as r:
        arr = json.loads(r.read())
    m.stop()
    check(rc == 0, "%s: exit code %d" % (name, rc))
    check(len(arr["t"]) == n, "%s: the server got %d requests for %d pairs" % (name, len(arr["t"]), n))
    return (arr["t"], arr["tokens"]) if rc == 0 and len(arr["t"]) == n else None


def requests_rate(tmp, pairs, n, ranks, rpm):
    got = rate_run(tmp, "rpm-%d" % ranks, ranks, pairs, n, ["--set", "judge.requests_per_minute=%g" % rpm])
    if not got:
        return
    t = [x - got[0][0] for x in got[0]]
    r, burst = rpm / 60.0, rpm / 60.0  # all ranks together: 1/J of the rate and of the burst each
    span = t[-1]
    run_rate = (n - burst) / span if span > 0 else float("inf")
    late = [x for x in t if x > 0.5]  # after the burst
    steady = slope(late, list(range(n - len(late), n)))
    window = max(sum(1 for y in t if x <= y <= x + 1.0) for x in t)
    print("requests_per_minute=%g on %d rank%s: %d requests in %.2f s: %.2f/s after the burst of %g "
          "(want %.2f), steady slope %.2f/s, at most %d in 1 s"
          % (rpm, ranks, "s" if ranks > 1 else "", n, span, run_rate, burst, r, steady, window))
    check(0.85 * r <= run_rate <= 1.05 * r,
          "rpm %d ranks: rate %.2f/s over the run, want %.2f/s (-15%%..+5%%)" % (ranks, run_rate, r))
    check(0.9 * r <= steady <= 1.1 * r,
          "rpm %d ranks: steady rate %.2f/s, want %.2f/s (+-10%%)" % (ranks, steady, r))
    check(window <= burst + r + 1, "rpm %d ranks: %d requests in 1 s, at most %g allowed"
          % (ranks, window, burst + r + 1))


def tokens_rate(tmp, pairs, n, ranks, tpm):
    """The billed tokens (prompt + completion) per second. The client takes
    each request's estimate (prompt bytes / 4 + max_tokens) and refunds the
    unused part when the answer arrives, so its steady rate of billed tokens
    is the configured one; the start is a burst of at most one second's
    worth."""
    got = rate_run(tmp, "tpm-%d" % ranks, ranks, pairs, n, ["--set", "judge.tokens_per_minute=%g" % tpm])
    if not got:
        return
    t = [x - got[0][0] for x in got[0]]
    cum, total = [], 0
    for k in got[1]:
        total += k
        cum.append(total)
    r, burst = tpm / 60.0, tpm / 60.0
    span = t[-1]
    run_rate = (total - burst) / span if span > 0 else float("inf")
    late = [i for i, x in enumerate(t) if x > 0.5]
    steady = slope([t[i] for i in late], [cum[i] for i in late])
    window = max(sum(k for y, k in zip(t, got[1]) if x <= y <= x + 1.0) for x in t)
    print("tokens_per_minute=%g on %d rank%s: %d tokens in %.2f s: %.0f/s after the burst of %g "
          "(want %.0f), steady slope %.0f/s, at most %d in 1 s"
          % (tpm, ranks, "s" if ranks > 1 else "", total, span, run_rate, burst, r, steady, window))
    # (total - burst) / span: the burst in billed tokens is below `burst` (the
    # estimates are held while the requests are in flight), so the rate over
    # the run may come out lower; never higher
    check(0.8 * r <= run_rate <= 1.05 * r,
          "tpm %d ranks: %.0f tokens/s over the run, want %.0f (-20%%..+5%%)" % (ranks, run_rate, r))
    check(0.9 * r <= steady <= 1.1 * r,
          "tpm %d ranks: steady %.0f tokens/s, want %.0f (+-10%%)" % (ranks, steady, r))
    check(window <= 2 * burst + max(got[1]),
          "tpm %d ranks: %d tokens in 1 s, at most %.0f allowed" % (ranks, window, 2 * burst + max(got[1])))


def main():
    if not os.access(MOCK, os.X_OK):
        print("SKIP: %s not built" % MOCK)
        return 77
    tmp = tempfile.mkdtemp(prefix="rlaif-judge-limits-")
    t0 = time.time()
    connect_timeout(tmp)

    n = 40
    pairs = os.path.join(tmp, "pairs.jsonl")
    make_pairs(pairs, n)
    mpiexec = os.environ.get("MPIEXEC", "")
    ranks = [1, 2] if mpiexec and shutil.which(mpiexec) else [1]
    if len(ranks) == 1:
        print("no mpiexec: the 2-rank runs are skipped")
    for j in ranks:
        requests_rate(tmp, pairs, n, j, 600)
    # about 377 billed tokens per request (the mock bills request bytes / 4
    # for the prompt): 40 requests = 15,000 tokens, 2 s at 300,000 per minute
    for j in ranks:
        tokens_rate(tmp, pairs, n, j, 300000)

    print("total %.1f s" % (time.time() - t0))
    if failures:
        print("%d failures; files kept in %s" % (len(failures), tmp))
        return 1
    shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
