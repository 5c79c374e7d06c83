#!/usr/bin/python3
"""Read a preferences.h5 written by `storage_helper prefs-write` on N ranks
with h5py (independently of the C reader) and check every record, the
layout of src/storage/README.md and the root attributes.
usage: check_prefs.py FILE NRANKS"""
import math
import sys

import h5py
import numpy as np

path, nproc = sys.argv[1], int(sys.argv[2])
f = h5py.File(path, "r")
assert f.attrs["rlaif_schema"] == 1
assert f.attrs["rlaif_kind"] == b"preferences"
assert f.attrs["n_templates"] == 2 and f.attrs["template_1_text"] == b"Which is kinder?"
assert len(f.attrs["template_0_hash"]) == 16
assert f.attrs["judge_0_name"] == b"builtin"
assert b"api_key" not in f.attrs["judge_settings"]
for g in ("prompts", "responses", "explanations"):
    assert set(f[g]) >= {"bytes", "offset", "length", "tokens", "tok_offset", "tok_length"}, g
    assert f[g]["bytes"].chunks is not None and f[g]["bytes"].maxshape == (None,)

def text(g, i):
    o, n = int(f[g]["offset"][i]), int(f[g]["length"][i])
    return f[g]["bytes"][o:o + n].tobytes().decode()

def toks(g, i):
    o, n = int(f[g]["tok_offset"][i]), int(f[g]["tok_length"][i])
    return list(f[g]["tokens"][o:o + n])

pairs = f["pairs"][:]
want_fields = ["pair_id", "prompt_id", "response_a", "response_b", "label", "choice", "consistent",
               "source", "outcome_ab", "outcome_ba", "rubric_a", "rubric_b", "judge_id", "template_id",
               "prompt_tokens", "completion_tokens", "status"]
assert list(pairs.dtype.names) == want_fields, pairs.dtype.names
row = 0
for rnd in range(2):
    for r in range(nproc):
        n = 2 * r if rnd == 0 else (3 if r == nproc - 1 else 0)
        for i in range(n):
            t = text("prompts", row)
            assert t == f"r{r}-i{i}-p{rnd} \u00e9" + "x" * i, (row, t)
            assert toks("prompts", row) == [1000 * r + k for k in range(i % 4)]
            q = pairs[row]
            assert q["prompt_id"] == row
            assert q["pair_id"] == 1000 * rnd + 100 * r + i
            assert text("responses", q["response_a"]) == f"answer A of r{r} i{i}"
            assert toks("responses", q["response_a"]) == [1000 * r, 1000 * r + 1]
            assert text("responses", q["response_b"]) == f"B{i}" and toks("responses", q["response_b"]) == []
            assert f["responses/prompt_id"][q["response_a"]] == row
            if i % 3 == 2:
                assert math.isnan(q["label"]) and q["status"] == 3 and q["choice"] == -1
            else:
                assert q["label"] == 0.25 * (i % 5) and q["status"] == 0
            assert q["template_id"] == i % 2 and q["prompt_tokens"] == 100 + i
            assert q["rubric_a"][0] == 1 + i % 5 and np.isnan(q["rubric_a"][1:]).all()
            assert text("explanations", row) == f"answer A of r{r} i{i}"
            row += 1
assert row == len(pairs) == len(f["prompts/offset"]) == len(f["explanations/offset"])
assert len(f["responses/offset"]) == 2 * row
print(f"h5py: {row} prompts, {2 * row} responses, {len(pairs)} pairs as written by {nproc} ranks")
