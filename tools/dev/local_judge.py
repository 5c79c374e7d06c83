#!/usr/bin/env python3
"""local_judge.py - the offline pieces of the demo's self-trained judge
(tools/dev/demo-local-judge): pairs out of a preferences.h5, and how often a
judge's labels agree with another's.

  local_judge.py pairs PREFS.h5 TRAIN.jsonl HELDOUT.jsonl [--heldout N]
      every pair of the file as {"id","prompt","response_a","response_b"};
      a prompt whose hash is 0 mod N (default 10) goes to HELDOUT, so no
      question the judge was taught on is among its held-out pairs (N = 1:
      every pair to HELDOUT); also LABELS.jsonl beside HELDOUT with the
      file's own labels as {"id","label"}
  local_judge.py judges PREFS.h5
      the judge names in the file, the endpoint of every labelled pair and
      why each unlabelled pair has no label (one line: JSON {"judges": [...],
      "pairs": n, "by_judge": {name: n}, "unlabelled": {status: n}})
  local_judge.py agree NAME=LABELS.jsonl ... [--json OUT]
      the first file's labels (rlaif judge --output) against each other's,
      pair by pair (by "id"): the share of the pairs the other decided on
      which the first chose the same response. Decided: a label more than
      0.05 from 0.5 (a tie of two orders is 0.5; the builtin judge's coin
      flip between two equally good answers is 0.55 or 0.45 in both orders)
"""
import argparse
import hashlib
import json
import math
import sys

import h5py


def texts(f, group):
    g = f[group]
    data = g["bytes"][:].tobytes()
    off, n = g["offset"][:], g["length"][:]
    return [data[o:o + k].decode("utf-8", "replace") for o, k in zip(off, n)]


def cmd_pairs(a):
    with h5py.File(a.prefs, "r") as f:
        prompts, responses = texts(f, "prompts"), texts(f, "responses")
        pairs = f["pairs"][:f.attrs["pairs_committed"]]
    n = [0, 0]
    labels_path = a.heldout.rsplit(".", 1)[0] + "-labels.jsonl"
    with open(a.train, "w") as tr, open(a.heldout, "w") as ho, open(labels_path, "w") as lab:
        for q in pairs:
            prompt = prompts[q["prompt_id"]]
            h = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
            held = a.heldout_every == 1 or h % a.heldout_every == 0
            rec = {"id": int(q["pair_id"]), "prompt": prompt,
                   "response_a": responses[q["response_a"]],
                   "response_b": responses[q["response_b"]]}
            (ho if held else tr).write(json.dumps(rec) + "\n")
            if held:
                lab.write(json.dumps({"id": rec["id"], "label": float(q["label"])}) + "\n")
            n[held] += 1
    print(f"{a.prefs}: {n[0]} pairs to teach the judge ({a.train}), {n[1]} held out "
          f"({a.heldout}; their questions are never taught)")


def cmd_judges(a):
    with h5py.File(a.prefs, "r") as f:
        names = [f.attrs[f"judge_{i}_name"] for i in range(int(f.attrs["n_judges"]))]
        names = [s.decode() if isinstance(s, bytes) else str(s) for s in names]
        pairs = f["pairs"][:f.attrs["pairs_committed"]]
        status_names = f.attrs["status_names"]
    status_names = status_names.decode() if isinstance(status_names, bytes) else str(status_names)
    status_names = status_names.split(",")
    by, unlabelled = {}, {}
    for q in pairs:
        if math.isnan(q["label"]):
            s = int(q["status"])
            why = status_names[s] if 0 <= s < len(status_names) else f"#{s}"
            unlabelled[why] = unlabelled.get(why, 0) + 1
            continue
        j = int(q["judge_id"])
        name = names[j] if 0 <= j < len(names) else f"#{j}"
        by[name] = by.get(name, 0) + 1
    print(json.dumps({"judges": names, "pairs": int(len(pairs)), "by_judge": by,
                      "unlabelled": unlabelled}))


def labels(path):
    out = {}
    for line in open(path):
        o = json.loads(line)
        out[o["id"]] = o["label"]
    return out


def decided(x):
    return x is not None and not math.isnan(x) and abs(x - 0.5) > 0.05


def cmd_agree(a):
    named = [s.split("=", 1) for s in a.files]
    (first, path), others = named[0], named[1:]
    mine = labels(path)
    result = {"judge": first, "pairs": len(mine),
              "labelled": sum(1 for v in mine.values() if decided(v))}
    print(f"{first}: {result['labelled']} of {len(mine)} pairs decided "
          f"(the rest: ties or no label)")
    for name, p in others:
        ref = labels(p)
        both = [k for k in mine if k in ref and decided(ref[k])]
        same = sum(1 for k in both if decided(mine[k]) and (mine[k] > 0.5) == (ref[k] > 0.5))
        rate = same / len(both) if both else float("nan")
        dec = [k for k in both if decided(mine[k])]
        rate_dec = same / len(dec) if dec else float("nan")
        result[name] = {"pairs": len(both), "agree": same, "rate": rate,
                        "both_decided": len(dec), "rate_decided": rate_dec}
        print(f"  agreement with {name}: {rate:.3f} ({same} of the {len(both)} pairs "
              f"{name} decided; a tie of {first} counts as disagreeing), {rate_dec:.3f} on "
              f"the {len(dec)} both decided")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pairs")
    p.add_argument("prefs")
    p.add_argument("train")
    p.add_argument("heldout")
    p.add_argument("--heldout", dest="heldout_every", type=int, default=10)
    p.set_defaults(fn=cmd_pairs)
    p = sub.add_parser("judges")
    p.add_argument("prefs")
    p.set_defaults(fn=cmd_judges)
    p = sub.add_parser("agree")
    p.add_argument("files", nargs="+", help="NAME=LABELS.jsonl, the judge under test first")
    p.add_argument("--json")
    p.set_defaults(fn=cmd_agree)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
