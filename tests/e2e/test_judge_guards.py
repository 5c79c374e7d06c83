"""test_judge_guards.py - the judge client's guards against damaged journals
and misbehaving servers (issue 12, items 5 and 9), each against the real
`rlaif judge` and tools/dev/mock-judge on loopback:

1. journal damage: one byte flipped inside a record and one record separator
   destroyed (two records glued into one line): the rerun asks again for
   exactly the two damaged calls (counted at the server), keeps every record
   after them, and warns with the count and place.
2. rubric mode: replies with a verdict but no scores are a parse failure
   (bad_reply, no label), not ok.
3. a server that cuts long prompts (--ctx) and reports it in
   usage.prompt_tokens: status "truncated", no label; the rerun pays nothing
   again (journaled); the same pairs against an honest server are ok.
4. a dead endpoint (closed port): one "unreachable since ...; retrying" line
   on the console, not one per retry.
5. a server with 3 worker slots where extra connections queue (--slots 3):
   adaptive concurrency (the default, ceiling 16) finishes in well under half
   the time of a fixed 16.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RLAIF = os.environ.get("RLAIF", "src/rlaif")
BUILD = os.environ.get("top_builddir", ".")
MOCK = os.path.join(BUILD, "tools", "dev", "mock_judge")

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def make_pairs(path, n, pad=0):
    with open(path, "w") as f:
        for i in range(n):
            a, b = 10 + i % 80, 11 + (7 * i) % 80
            right, wrong = "The answer is %d." % (a + b), "The answer is %d." % (a + b + 1)
            if pad:  # long responses: the prompt is well over the server's context
                right += " Let me explain step by step." * pad
                wrong += " Let me explain step by step." * pad
            ra, rb = (right, wrong) if i % 2 == 0 else (wrong, right)
            f.write(json.dumps({"id": i, "prompt": "What is %d plus %d?" % (a, b),
                                "response_a": ra, "response_b": rb}) + "\n")


class Mock:
    def __init__(self, tmp, *args):
        self.port_file = os.path.join(tmp, "port-%d" % time.time_ns())
        self.p = subprocess.Popen([MOCK, "--port-file", self.port_file, "--idle-exit", "120"]
                                  + list(args), stdout=subprocess.DEVNULL)
        for _ in range(500):
            if os.path.exists(self.port_file):
                break
            time.sleep(0.01)
        self.port = int(open(self.port_file).read())

    def stats(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/stats" % self.port, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        self.p.terminate()
        self.p.wait(timeout=10)


def run_judge(tmp, name, port, pairs, extra=(), timeout=300):
    """Returns (results, stdout + stderr, wall seconds)."""
    out = os.path.join(tmp, name + ".jsonl")
    cmd = [RLAIF, "judge", "--input", pairs, "--output", out,
           "--set", "run.out_dir=%s/%s" % (tmp, name),
           "--set", "judge.backend=openai", "--set", "judge.model=mock-judge",
           "--set", "judge.base_url=http://127.0.0.1:%d/v1" % port,
           "--set", "judge.timeout=30", "--set", "judge.connect_timeout=2",
           "--set", "judge.backoff_base=0.005", "--set", "judge.backoff_cap=0.05",
           "--set", "judge.both_orders=0",
           "--set", "judge.api_key_env="] + list(extra)  # the mock here wants no key
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    wall = time.time() - t0
    text = p.stdout + p.stderr
    with open(os.path.join(tmp, name + ".log"), "a") as f:
        f.write(text)
    check(p.returncode == 0, "%s: exit code %d:\n%s" % (name, p.returncode, text[-2000:]))
    res = [json.loads(l) for l in open(out)] if os.path.exists(out) else []
    return res, text, wall


def journal_damage(tmp):
    n = 200
    pairs = os.path.join(tmp, "pairs.jsonl")
    make_pairs(pairs, n)
    m = Mock(tmp)
    res, _, _ = run_judge(tmp, "jnl", m.port, pairs)
    check(len(res) == n and all(r["status"] == "ok" for r in res), "jnl: first run not all ok")
    jnl = os.path.join(tmp, "jnl", "journal", "judge-rank-00000.jnl")
    data = bytearray(open(jnl, "rb").read())
    starts = [0] + [i + 1 for i, c in enumerate(data) if c == ord("\n")][:-1]
    check(len(starts) == n, "jnl: %d records, want %d" % (len(starts), n))
    # a byte inside record 60's judge text (a letter becomes another letter:
    # still valid JSON, so only the record's check can see it)
    line = data[starts[60]:starts[61]]
    k = starts[60] + line.index(b'"t":"') + 8
    data[k] = ord("Q") if data[k] != ord("Q") else ord("R")
    # the separator after record 120: records 120 and 121 become one line
    data[starts[121] - 1] = ord(" ")
    open(jnl, "wb").write(bytes(data))
    before = m.stats()["requests"]
    res, text, _ = run_judge(tmp, "jnl", m.port, pairs)
    sent = m.stats()["requests"] - before
    check(sent == 2, "jnl: the rerun sent %d requests, want 2 (the two damaged records)" % sent)
    check(len(res) == n and sum(r["replayed"] for r in res) == n - 2,
          "jnl: rerun replayed %d calls, want %d" % (sum(r["replayed"] for r in res), n - 2))
    warn = [l for l in text.splitlines() if "damaged record" in l]
    check(len(warn) == 1 and "2 damaged record(s)" in warn[0] and "line 61" in warn[0],
          "jnl: want one warning naming 2 damaged records from line 61, got %s" % warn)
    # damaged lines stay; the calls asked again are appended: a third run pays nothing
    before = m.stats()["requests"]
    run_judge(tmp, "jnl", m.port, pairs)
    sent3 = m.stats()["requests"] - before
    check(sent3 == 0, "jnl: a third run sent %d requests" % sent3)
    st = m.stats()
    check(st["paid_repeats"] == 2, "jnl: %d paid repeats, want exactly the 2 damaged" % st["paid_repeats"])
    m.stop()
    print("journal damage: 1 flipped byte + 1 lost separator in %d records -> rerun sent %d "
          "requests, a third run %d; warning: %s" % (n, sent, sent3, warn[0] if warn else None))


def rubric_without_scores(tmp):
    pairs = os.path.join(tmp, "pairs-r.jsonl")
    make_pairs(pairs, 20)
    m = Mock(tmp, "--rule", "a")  # "The better response is: A" and no scores
    res, _, _ = run_judge(tmp, "rubric", m.port, pairs, ["--set", "judge.mode=rubric"])
    m.stop()
    check(len(res) == 20, "rubric: %d results" % len(res))
    bad = [r for r in res if r["status"] == "bad_reply" and r["label"] is None and "Scores" in r["reason"]]
    check(len(bad) == 20, "rubric: %d of 20 replies without scores are bad_reply (statuses %s)"
          % (len(bad), sorted(set(r["status"] for r in res))))
    print("rubric without scores: %d/20 bad_reply" % len(bad))


def truncated_prompts(tmp):
    pairs = os.path.join(tmp, "pairs-t.jsonl")
    make_pairs(pairs, 20, pad=60)  # ~3.6 KB of text per prompt, ~900 tokens
    m = Mock(tmp, "--ctx", "200")
    res, _, _ = run_judge(tmp, "trunc", m.port, pairs)
    sent = m.stats()["requests"]
    cut = [r for r in res if r["status"] == "truncated" and r["label"] is None and "cut the prompt" in r["reason"]]
    check(len(cut) == 20, "trunc: %d of 20 cut prompts recorded as truncated (statuses %s)"
          % (len(cut), sorted(set(r["status"] for r in res))))
    res, _, _ = run_judge(tmp, "trunc", m.port, pairs)
    again = m.stats()["requests"] - sent
    check(again == 0 and all(r["status"] == "truncated" for r in res),
          "trunc: the rerun sent %d requests (want 0: journaled)" % again)
    m.stop()
    m = Mock(tmp)  # an honest server: the same long prompts are fine
    res, _, _ = run_judge(tmp, "trunc-ok", m.port, pairs)
    m.stop()
    check(len(res) == 20 and all(r["status"] == "ok" for r in res),
          "trunc-ok: statuses %s against a server that reads the whole prompt"
          % sorted(set(r["status"] for r in res)))
    print("truncated prompts: %d/20 truncated, rerun sent %d; honest server: all ok" % (len(cut), again))


def dead_endpoint(tmp):
    pairs = os.path.join(tmp, "pairs-d.jsonl")
    make_pairs(pairs, 10)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    res, text, wall = run_judge(tmp, "dead", port, pairs,
                                ["--set", "judge.max_attempts=6", "--set", "judge.backoff_base=0.4",
                                 "--set", "judge.backoff_cap=1"])
    lines = [l for l in text.splitlines() if "unreachable since" in l]
    check(len(res) == 10 and all(r["status"] == "exhausted" for r in res),
          "dead: statuses %s" % sorted(set(r["status"] for r in res)))
    check(1 <= len(lines) <= 1 + int(wall / 30) and all("retrying" in l for l in lines),
          "dead: %d outage lines in %.1f s (want 1 per 30 s): %s" % (len(lines), wall, lines))
    print("dead endpoint: %d outage line(s) in %.1f s for 60 failed requests: %s"
          % (len(lines), wall, lines[0] if lines else None))


def few_workers(tmp):
    pairs = os.path.join(tmp, "pairs-w.jsonl")
    make_pairs(pairs, 120)
    walls = {}
    for name, extra in (("adaptive", []), ("fixed16", ["--set", "judge.adaptive=false"])):
        m = Mock(tmp, "--slots", "3", "--latency", "0.02")
        res, _, walls[name] = run_judge(tmp, "slots-" + name, m.port, pairs,
                                        ["--set", "judge.max_inflight=16"] + extra)
        m.stop()
        check(len(res) == 120 and all(r["status"] == "ok" for r in res), "slots-%s: not all ok" % name)
    check(walls["adaptive"] < 0.5 * walls["fixed16"],
          "slots: adaptive took %.1f s, fixed 16 %.1f s (want under half)" % (walls["adaptive"], walls["fixed16"]))
    print("3 worker slots, 120 requests: adaptive %.1f s, fixed 16 %.1f s"
          % (walls["adaptive"], walls["fixed16"]))


def main():
    if not os.access(MOCK, os.X_OK):
        print("SKIP: %s not built" % MOCK)
        return 77
    tmp = tempfile.mkdtemp(prefix="rlaif-judge-guards-")
    journal_damage(tmp)
    rubric_without_scores(tmp)
    truncated_prompts(tmp)
    dead_endpoint(tmp)
    few_workers(tmp)
    if failures:
        print("%d failure(s); files in %s" % (len(failures), tmp))
        return 1
    subprocess.call(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
