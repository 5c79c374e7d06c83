#!/usr/bin/env python3
"""Arithmetic preference pairs for the rm tests, in the judge's input format.

  rm_pairs.py OUT.jsonl N SEED [MAX_OPERAND]

Each pair asks a question of the demo task ("What is 7 plus 12?", the form
the builtin judge parses) and offers the right answer, as the SFT policy
writes it ("19"), and a wrong one, in random order: an off-by-a-little
number (half the pairs), a refusal, or the right number wrapped in rudeness.
The builtin judge (with its configured noise) labels them; the truth is
recorded as "a_is_right" (the judge ignores unknown fields).
"""
import json
import random
import sys

out, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
top = int(sys.argv[4]) if len(sys.argv) > 4 else 19
rng = random.Random(seed)
ops = [("plus", lambda a, b: a + b), ("minus", lambda a, b: a - b), ("times", lambda a, b: a * b)]
with open(out, "w") as f:
    for i in range(n):
        a, b = rng.randint(0, top), rng.randint(0, top)
        name, fn = rng.choice(ops)
        good = str(fn(a, b))
        r = rng.random()
        if r < 0.5:
            bad = str(fn(a, b) + rng.choice([-10, -2, -1, 1, 2, 10]))
        elif r < 0.75:
            bad = rng.choice(["I don't know.", "No idea.", "Maybe."])
        else:
            bad = f"{good}, obviously. Go away."
        first = rng.random() < 0.5
        ra, rb = (good, bad) if first else (bad, good)
        f.write(json.dumps({"id": i, "prompt": f"What is {a} {name} {b}?", "response_a": ra,
                            "response_b": rb, "a_is_right": first}) + "\n")
