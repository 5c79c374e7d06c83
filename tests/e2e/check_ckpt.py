#!/usr/bin/python3
"""Open a checkpoint written by the parallel writer with h5py and check it
independently: layout of src/storage/README.md, root attributes, every tensor's
checksum recomputed in numpy (sum of the float32 bit patterns and the sum
weighted by position + 1, both mod 2**64), and the helper's values.
usage: check_ckpt.py FILE STEP"""
import sys

import h5py
import numpy as np

path, step = sys.argv[1], int(sys.argv[2])
f = h5py.File(path, "r")
assert f.attrs["rlaif_kind"] == b"checkpoint" and f.attrs["rlaif_schema"] == 1
assert f.attrs["complete"] == 1 and f.attrs["step"] == step
assert f["state"].attrs["step"] == step and f["state"].attrs["data_cursor"] == 7 * step
total = 0
names = list(f["params"])
assert names, "no tensors"
for group in ("params", "optim/m", "optim/v"):
    assert list(f[group]) == names, group
    for name in names:
        d = f[group][name]
        assert d.dtype == np.float32
        w = d[:].ravel().view(np.uint32).astype(np.uint64)
        s1 = int(w.sum(dtype=np.uint64))
        s2 = int((w * (np.arange(1, len(w) + 1, dtype=np.uint64))).sum(dtype=np.uint64))
        want = [int(x) for x in d.attrs["checksum"]]
        assert [s1, s2] == want, (group, name, s1, s2, want)
        if group == "params":
            total += d.size
assert total == f.attrs["total_params"], (total, f.attrs["total_params"])
print(f"h5py: {path}: {len(names)} tensors x 3, {total} params, checksums match")
