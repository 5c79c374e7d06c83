"""test_judge_local.py - the local judge's soft labels (judge.backend = local,
judge.mode = logprob) against a plain-PyTorch float64 forward of the same
checkpoint on the same token ids.

Two small random checkpoints: a Llama whose tokenizer has single tokens " A"
and " B" (the reply prefix ends in ":" and the label variants are " A", " a",
"A", "a"), and an OPT with hf_fixture's tokenizer, which has no single-token
" A" (the prefix ends in the space and the variants are "A", "a"). `rlaif
judge` labels pairs in both orders; each journal record holds the prompt ids
the model read (raw.prompt_ids) and the P(A) and coverage it computed. The calls
share the judge's system prompt, computed once and copied (the report's
count of copied tokens must be above 0): at judge.local_batch 3 within a
batch and from the prefix kept from the last batch, at 1 from the kept
prefix alone (the last call's prompt). The
reference runs the Hugging Face folder itself (llama_ref.py / opt_ref.py, float64) on
those ids, takes the softmax of the last position and sums the variants.

Tolerance 1e-5 absolute on P(A) and on the coverage: the engine computes the
logits in float32 (relative error ~1e-6 after a few hundred positions, as
test_arch.py measures), and P(A) = 1 / (1 + mass(B)/mass(A)) moves by at most
p (1 - p) times the error of the logit difference, so 1e-5 is met with margin
by fp32 and fails for any wrong token, position, mask or variant.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arch_ref  # noqa: E402
import judge_fixture as jf  # noqa: E402
import llama_ref  # noqa: E402
import opt_ref  # noqa: E402

torch.set_num_threads(1)
RLAIF = os.path.abspath(os.environ.get("RLAIF", "src/rlaif"))
TOL = 1e-5
failures = []


def reference(conf, P, ids, variants):
    """P(A), coverage from a float64 forward of one prompt."""
    tok = torch.tensor([ids])
    pos = torch.arange(len(ids))[None]
    valid = torch.ones_like(tok, dtype=torch.bool)
    with torch.no_grad():
        if conf["model_type"] == "opt":
            h = opt_ref.trunk(P, conf, tok, pos, valid)
            head = "embed_tokens.weight"
        else:
            h = llama_ref.trunk(P, conf, tok, pos, valid)
            head = llama_ref.lm_head(conf)
        p = torch.softmax(h[0, -1] @ P[head].T, dim=-1)
    mass = [float(p[v].sum()) for v in variants]
    cov = mass[0] + mass[1]
    return mass[0] / cov, cov


def run(tmp, arch):
    folder = os.path.join(tmp, "hf-" + arch)
    conf, tok = jf.write_random(folder, arch)
    ckpt = jf.import_ckpt(folder, os.path.join(tmp, arch + ".h5"), RLAIF)
    spaced, variants = jf.label_ids(tok)
    pairs = os.path.join(tmp, "pairs.jsonl")
    with open(pairs, "w") as f:
        for i in range(4):
            f.write(json.dumps({"id": i, "prompt": "What is %d times 3?" % i,
                                "response_a": "It is %d." % (3 * i),
                                "response_b": "Perhaps %d, or so" % (3 * i + 1)}) + "\n")
    _, P = arch_ref.load_hf(folder)
    # batches of 3: each batch's system prompt computed once and copied into
    # its other calls, and kept for the next batch; batches of 1: only the
    # kept prefix (the last call's prompt) serves the next call
    for batch in (3, 1):
        out = os.path.join(tmp, "%s-b%d" % (arch, batch))
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        r = subprocess.run([RLAIF, "judge", "--input", pairs, "--output", out + ".jsonl",
                            "--set", "run.out_dir=" + out, "--set", "judge.backend=local",
                            "--set", "judge.model=" + ckpt, "--set", "judge.mode=logprob",
                            "--set", "judge.min_coverage=0",
                            "--set", "judge.local_batch=%d" % batch,
                            "--set", "judge.local_slice_tokens=100"],
                           env=env, capture_output=True, text=True)
        if r.returncode:
            print(r.stdout, r.stderr)
            failures.append("%s batch %d: rlaif judge failed" % (arch, batch))
            continue
        worst = [0.0, 0.0]
        records = [json.loads(line) for p in glob.glob(os.path.join(out, "journal", "*.jnl"))
                   for line in open(p)]
        for e in records:
            ids = json.loads(e["raw"])["prompt_ids"]
            pa, cov = reference(conf, P, ids, variants)
            worst[0] = max(worst[0], abs(e["pa"] - pa))
            worst[1] = max(worst[1], abs(e["cv"] - cov))
        # the calls begin with the same system prompt: its tokens are computed
        # once and copied (generate.h, share_min and rlaif_gen_keep), so the
        # labels above hold for copied keys and values too
        m = re.search(r"(\d+) more copied from shared prefixes", r.stdout)
        shared = int(m[1]) if m else 0
        ok = len(records) == 8 and worst[0] <= TOL and worst[1] <= TOL and shared > 0
        print("%-6s batch %d, %d calls, prefix ends %s, variants %s: |P(A) - ref| <= %.2e, "
              "|coverage - ref| <= %.2e (tol %.0e), %d prompt tokens copied from a shared "
              "prefix %s" % (arch, batch, len(records), "':'" if spaced else "' '", variants,
                             worst[0], worst[1], TOL, shared, "ok" if ok else "FAIL"))
        if not ok:
            failures.append("%s batch %d" % (arch, batch))


def main():
    tmp = tempfile.mkdtemp(prefix="rlaif-jlref-")
    try:
        for arch in ("llama", "opt"):
            run(tmp, arch)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
