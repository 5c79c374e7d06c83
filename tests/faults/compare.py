#!/usr/bin/env python3
"""compare.py REF OUT PHASE... - does OUT hold the same results as REF?

For the fault matrix (tests/faults/run-matrix): after a fault and a rerun,
the results must equal an uninterrupted run's, bit for bit:
  sft, rm, dpo, ppo  the newest checkpoint of the phase: same step, every dataset
                (parameters and AdamW moments) identical;
  collect       preferences.h5, eval: eval.h5 - the same set of pairs, each
                pair (by pair id) with the same prompt, response texts,
                explanation, label, choice, outcomes, rubric, token counts and
                status. Row order and internal row numbers may differ (a
                resumed run commits in another order); content may not.
Prints one line per difference and exits 1 when there is any."""
import glob
import os
import re
import sys

import h5py
import numpy as np


def newest_ckpt(out, phase):
    files = glob.glob(os.path.join(out, "ckpt", "%s-*.h5" % phase))
    files = [f for f in files if re.search(r"-\d{8}\.h5$", f)]
    return max(files) if files else None


def datasets(f):
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def compare_ckpt(ref, out, phase, errs):
    a, b = newest_ckpt(ref, phase), newest_ckpt(out, phase)
    if not a or not b:
        errs.append("%s: no checkpoint (reference %s, run %s)" % (phase, a, b))
        return
    if os.path.basename(a) != os.path.basename(b):
        errs.append("%s: newest checkpoint %s, reference %s" % (phase, os.path.basename(b),
                                                                 os.path.basename(a)))
        return
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        da, db = datasets(fa), datasets(fb)
    if set(da) != set(db):
        errs.append("%s: datasets differ: %s" % (phase, sorted(set(da) ^ set(db))[:5]))
    for k in sorted(set(da) & set(db)):
        if da[k].shape != db[k].shape or da[k].tobytes() != db[k].tobytes():
            errs.append("%s: %s differs from the uninterrupted run" % (os.path.basename(b), k))


def text(f, group, i):
    off, n = int(f[group + "/offset"][i]), int(f[group + "/length"][i])
    return f[group + "/bytes"][off:off + n].tobytes()


def pairs(path):
    """pair id -> everything the pair says, row numbers resolved to text."""
    out = {}
    with h5py.File(path, "r") as f:
        p = f["pairs"][()]
        has_expl = "explanations" in f and len(f["explanations/length"]) == len(p)
        for row, r in enumerate(p):
            fields = {n: r[n].tobytes() for n in p.dtype.names
                      if n not in ("prompt_id", "response_a", "response_b")}
            fields["prompt"] = text(f, "prompts", int(r["prompt_id"]))
            for side in ("response_a", "response_b"):
                if r[side] >= 0 and len(f["responses/bytes"]):
                    fields[side] = text(f, "responses", int(r[side]))
            if has_expl:
                fields["explanation"] = text(f, "explanations", row)
            out[int(r["pair_id"])] = fields
    return out


def compare_pairs(ref, out, name, errs):
    a, b = os.path.join(ref, name), os.path.join(out, name)
    if not os.path.exists(b):
        errs.append("%s missing" % name)
        return
    pa, pb = pairs(a), pairs(b)
    if set(pa) != set(pb):
        errs.append("%s: %d pairs, reference %d; %d ids differ" %
                    (name, len(pb), len(pa), len(set(pa) ^ set(pb))))
    for k in sorted(set(pa) & set(pb)):
        diff = [n for n in pa[k] if pa[k][n] != pb[k].get(n)]
        if diff:
            errs.append("%s: pair %d differs in %s" % (name, k, ", ".join(diff)))


def main():
    ref, out, phases = sys.argv[1], sys.argv[2], sys.argv[3:]
    errs = []
    for ph in phases:
        if ph in ("sft", "rm", "dpo", "ppo"):
            compare_ckpt(ref, out, ph, errs)
        elif ph == "collect":
            compare_pairs(ref, out, "preferences.h5", errs)
        elif ph == "eval":
            compare_pairs(ref, out, "eval.h5", errs)
    for e in errs[:20]:
        print("  differs: " + e)
    if len(errs) > 20:
        print("  ... and %d more differences" % (len(errs) - 20))
    sys.exit(1 if errs else 0)


if __name__ == "__main__":
    main()
