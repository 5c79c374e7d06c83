"""bench_judge.py - throughput and client CPU of one judge rank (see tools/bench/bench-judge).

With --slots N: adaptive concurrency against a server with N worker slots
where extra connections queue (mock --slots, like llama.cpp's llama-server):
`rlaif judge` with judge.adaptive (ceiling 16) vs fixed 16 vs fixed N, runs
alternating, medians and the ratios printed.

Each round: `rlaif judge` labels --requests pairs in one order each (one HTTP
request per pair, fresh journal) with max_inflight 64 against a mock judge
answering after 100 ms; then the curl command line tool sends the same number
of requests, 64 in parallel, with a body of the same size. Client CPU is user +
system time from getrusage: rlaif reports its own for the labelling loop
(after MPI start-up), and the whole process is also measured from outside.
"""
import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
import time


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_rlaif(a, pairs, out_dir, url, sets):
    p = subprocess.run([a.rlaif, "judge", "--input", pairs, "--output", out_dir + ".jsonl",
                        "--quiet", "--set", "run.out_dir=" + out_dir, "--set", "judge.backend=openai",
                        "--set", "judge.model=mock", "--set", "judge.base_url=" + url,
                        "--set", "judge.both_orders=0", "--set", "judge.api_key_env="] + [x for kv in sets for x in ("--set", kv)],
                       capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    if p.returncode:
        raise SystemExit("rlaif judge failed:\n" + p.stdout + p.stderr)
    return p.stdout


def bench_slots(a, tmp, pairs):
    """Adaptive vs fixed 16 vs fixed N against N worker slots."""
    port_file = os.path.join(tmp, "port-slots")
    mock = subprocess.Popen([a.mock, "--port-file", port_file, "--latency", str(a.latency),
                             "--slots", str(a.slots), "--idle-exit", "600"], stdout=subprocess.DEVNULL)
    for _ in range(300):
        if os.path.exists(port_file):
            break
        time.sleep(0.01)
    url = "http://127.0.0.1:%d/v1" % int(open(port_file).read())
    kinds = [("adaptive", ["judge.max_inflight=16"]),
             ("fixed 16", ["judge.max_inflight=16", "judge.adaptive=false"]),
             ("fixed %d" % a.slots, ["judge.max_inflight=%d" % a.slots, "judge.adaptive=false"])]
    rates = {k: [] for k, _ in kinds}
    for r in range(a.rounds):
        for k, sets in (kinds if r % 2 == 0 else kinds[::-1]):  # alternate the order
            out = run_rlaif(a, pairs, os.path.join(tmp, "slots-%d-%s" % (r, k.replace(" ", ""))), url, sets)
            m = re.search(r"([\d.]+) s wall, (\d+) HTTP requests = ([\d.]+) req/s", out)
            rates[k].append(float(m[3]))
        print("round %d: " % (r + 1) + ", ".join("%s %.1f req/s" % (k, rates[k][-1]) for k, _ in kinds))
    mock.terminate()
    mock.wait()
    med = {k: statistics.median(v) for k, v in rates.items()}
    best = "fixed %d" % a.slots
    print("median of %d rounds, %d requests each, %d worker slots, %.0f ms per request:"
          % (a.rounds, a.requests, a.slots, 1000 * a.latency))
    for k, _ in kinds:
        print("  %-9s %.1f req/s" % (k, med[k]))
    print("  ratio adaptive/fixed %d: %.2f; adaptive/fixed 16: %.2f"
          % (a.slots, med["adaptive"] / med[best], med["adaptive"] / med["fixed 16"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rlaif", required=True)
    ap.add_argument("--mock", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=3200)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--slots", type=int, default=0,
                    help="adaptive vs fixed against N worker slots (default: the CPU benchmark)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rlaif-bench-judge-")
    pairs = os.path.join(tmp, "pairs.jsonl")
    with open(pairs, "w") as f:
        for i in range(a.requests):
            x, y = 10 + i % 89, 10 + (7 * i) % 89
            f.write(json.dumps({"id": i, "prompt": "What is %d plus %d?" % (x, y),
                                "response_a": "The answer is %d." % (x + y),
                                "response_b": "It is %d." % (x + y + 1)}) + "\n")
    if a.slots:
        bench_slots(a, tmp, pairs)
        shutil.rmtree(tmp)
        return
    port_file = os.path.join(tmp, "port")
    mock = subprocess.Popen([a.mock, "--port-file", port_file, "--latency", str(a.latency),
                             "--idle-exit", "300"], stdout=subprocess.DEVNULL)
    for _ in range(300):
        if os.path.exists(port_file):
            break
        time.sleep(0.01)
    port = int(open(port_file).read())
    url = "http://127.0.0.1:%d/v1" % port
    ceiling = 64 / a.latency

    # the curl peer: same count, same concurrency, a body of the size rlaif sends
    body = os.path.join(tmp, "body.json")
    sample = {"model": "mock", "temperature": 0.0, "max_tokens": 512, "messages": [
        {"role": "system", "content": "x" * 700}, {"role": "user", "content": "y" * 500}]}
    with open(body, "w") as f:
        json.dump(sample, f)
    cfg = os.path.join(tmp, "curl.cfg")
    with open(cfg, "w") as f:
        for i in range(a.requests):
            f.write('url = "%s/chat/completions"\ndata-binary = "@%s"\n'
                    'header = "Content-Type: application/json"\noutput = "/dev/null"\n' % (url, body))
            if i + 1 < a.requests:
                f.write("next\n")

    ours, peer = [], []
    for r in range(a.rounds):
        out_dir = os.path.join(tmp, "run%d" % r)
        c0, t0 = child_cpu(), time.time()
        p = subprocess.run([a.rlaif, "judge", "--input", pairs, "--output", os.path.join(tmp, "out.jsonl"),
                            "--quiet", "--set", "run.out_dir=" + out_dir, "--set", "judge.backend=openai",
                            "--set", "judge.model=mock", "--set", "judge.base_url=" + url,
                            "--set", "judge.max_inflight=64", "--set", "judge.both_orders=0", "--set", "judge.api_key_env="],
                           capture_output=True, text=True, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
        wall, cpu = time.time() - t0, child_cpu() - c0
        if p.returncode:
            raise SystemExit("rlaif judge failed:\n" + p.stdout + p.stderr)
        m = re.search(r"([\d.]+) s wall, (\d+) HTTP requests = ([\d.]+) req/s, client CPU ([\d.]+) s = ([\d.]+)%", p.stdout)
        loop_wall, nreq, rate, loop_cpu, loop_pct = float(m[1]), int(m[2]), float(m[3]), float(m[4]), float(m[5])
        ours.append((rate, loop_pct, 100 * cpu / wall, nreq))
        c0, t0 = child_cpu(), time.time()
        q = subprocess.run(["curl", "-s", "--parallel", "--parallel-max", "64", "-K", cfg],
                           capture_output=True)
        wall, cpu = time.time() - t0, child_cpu() - c0
        if q.returncode:
            raise SystemExit("curl failed: %s" % q.stderr[:300])
        peer.append((a.requests / wall, 100 * cpu / wall))
        print("round %d: rlaif %.1f req/s, %.1f%% of a core in the loop (%.1f%% whole process); "
              "curl %.1f req/s, %.1f%% of a core" % (r + 1, rate, loop_pct, ours[-1][2], peer[-1][0], peer[-1][1]))
    mock.terminate()
    mock.wait()
    shutil.rmtree(tmp)
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    rate, pct, whole = med(ours, 0), med(ours, 1), med(ours, 2)
    prate, ppct = med(peer, 0), med(peer, 1)
    print("median of %d rounds, %d requests each, mock latency %.0f ms, max_inflight 64 (ceiling %.0f req/s):"
          % (a.rounds, a.requests, 1000 * a.latency, ceiling))
    print("  rlaif judge: %.1f req/s = %.1f%% of the ceiling; client CPU %.1f%% of a core "
          "(whole process incl. MPI start-up %.1f%%)" % (rate, 100 * rate / ceiling, pct, whole))
    print("  curl --parallel-max 64: %.1f req/s; CPU %.1f%% of a core" % (prate, ppct))
    print("  ratio rlaif/curl: throughput %.2f, CPU %.2f" % (rate / prate, pct / ppct if ppct else float("nan")))
    ok = rate >= 0.9 * ceiling and pct < 10
    print("  goal (>= 90%% of %.0f req/s with < 10%% of a core): %s" % (ceiling, "met" if ok else "NOT met"))


if __name__ == "__main__":
    main()
