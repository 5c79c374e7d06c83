#!/usr/bin/python3
"""Corpora for the tokenizer's reference test and benchmark, built from files
every Debian machine has plus generated edge cases. Deterministic for a given
machine (sorted file lists, a fixed seed).

    records(min_lines)  -> (texts, invalid): texts are str records (valid UTF-8)
                           for comparison with node; invalid are bytes records
                           that are not valid UTF-8 (round-trip checks only).
    bench_text(nbytes)  -> str of at least nbytes UTF-8 bytes, real text.

    /usr/bin/python3 tests/reference/tokenizer_corpus.py --bench OUT MB   writes bench_text
"""
import glob
import os
import random
import sys
import unicodedata

SEED = 20261126


def _files():
    """Debian text: licences (prose), copyright files (prose, names, URLs),
    C headers and the Python standard library (code)."""
    groups = [
        sorted(glob.glob("/usr/share/common-licenses/*")),
        sorted(glob.glob("/usr/share/doc/*/copyright")),
        sorted(glob.glob("/usr/include/*.h")) + sorted(glob.glob("/usr/include/*/*.h")),
        sorted(glob.glob("/usr/lib/python3*/*.py")),
    ]
    return [[f for f in g if os.path.isfile(f) and not os.path.islink(f)] for g in groups]


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _file_records(rng, per_group):
    """Single lines (with and without their newline) and multi-line chunks."""
    texts, invalid = [], []
    for files in _files():
        lines = []
        for path in files:
            lines.extend(_read(path).splitlines(keepends=True))
            if len(lines) > 40 * per_group:
                break
        if not lines:
            continue
        picks = rng.sample(range(len(lines)), min(per_group, len(lines)))
        for k, i in enumerate(sorted(picks)):
            if k % 5 == 0:  # a chunk of consecutive lines: indentation, blank lines
                rec = b"".join(lines[i:i + rng.randint(2, 8)])
            elif k % 2:
                rec = lines[i]
            else:
                rec = lines[i].rstrip(b"\n")
            if not rec:
                continue
            try:
                texts.append(rec.decode("utf-8"))
            except UnicodeDecodeError:
                invalid.append(rec)
    return texts, invalid


def _assigned(rng, n, cats):
    """n random code points assigned in Python's Unicode (14.0 on bookworm;
    node knows a newer Unicode, so avoid code points unassigned in ours)."""
    out = []
    while len(out) < n:
        cp = rng.choice((rng.randrange(0x80, 0x3000), rng.randrange(0x3000, 0x30000)))
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        if unicodedata.category(c) in cats:
            out.append(c)
    return "".join(out)


def _edge_cases(rng, n):
    spaces = [" ", "  ", "\t", "\n", "\r\n", "\n\n", " \n", "\u00a0", "\u3000", "\u2028",
              "\ufeff", "\u0085", "\u2003", "\x0b", "\x0c", "\x1c", "   \t  "]
    words = ["hello", "Hello", "HELLO", "world", "RLAIF", "it's", "we're", "I'LL", "they've",
             "don't", "'s", "'", "''", "x'd", "naïve", "café", "Ångström", "straße", "日本語",
             "中文", "한국어", "русский", "ελληνικά", "עִבְרִית", "العربية", "हिन्दी", "ไทย",
             "e\u0301", "a\u0308\u0323", "Z\u0351\u0352\u0353", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵",
             "❤️", "1234567890", "3.14159", "1,000,000", "0x1F", "١٢٣", "１２３", "²³", "Ⅻ",
             "½", "$100", "#include", "<|endoftext|>", "<|endoftext", "\"a\",\"b\"", "],[",
             "','", "\",\"", ".\",\"", "},\"", "),\"", "', \"", "\\n", "\\", "/*", "*/", "->",
             "::", "===", "!==", "...", "…", "—", "«»", "「」", "©®™", "\u200b", "\u200d",
             "\ue000", "\U000f0000", "\x00", "\x7f", "\x1b[0m", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𐍈", "ﷺ", "ǅ"]
    out = []
    for k in range(n):
        kind = k % 8
        if kind == 0:  # words with mixed whitespace runs
            s = "".join(rng.choice(words) + rng.choice(spaces) for _ in range(rng.randint(1, 12)))
        elif kind == 1:  # random assigned letters, marks, numbers, symbols, spaces
            s = _assigned(rng, rng.randint(1, 30),
                          {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No",
                           "Zs", "Pc", "Pd", "Ps", "Pe", "Po", "Sm", "Sc", "Sk", "So"})
        elif kind == 2:  # numbers in many scripts and shapes
            s = " ".join(rng.choice(["", " ", "-", "+"]) + "".join(
                rng.choice("0123456789٠١٢٣٤٥٦٧٨٩０１２３४५६") for _ in range(rng.randint(1, 40)))
                for _ in range(rng.randint(1, 5)))
        elif kind == 3:  # long runs: letters, digits, punctuation, spaces (heap merge path)
            unit = rng.choice(["a", "ab", "the", "=", "-", "*", ",\"", "0", "12", " ", "\t",
                               "\n", "é", "語", "😀", "x'", "ha"])
            s = unit * rng.randint(50, 700) + rng.choice(["", "x", " y", "\n"])
        elif kind == 4:  # punctuation-heavy code-like text with commas and quotes
            s = "".join(rng.choice(["\"", ",", "'", "[", "]", "{", "}", "(", ")", ".", ":",
                                    " ", "a", "1", "\n", "_", "\\"])
                        for _ in range(rng.randint(1, 60)))
        elif kind == 5:  # contractions at every kind of boundary
            s = "".join(rng.choice(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'",
                                    " '", "x", " y", "!", "1", " "])
                        for _ in range(rng.randint(1, 20)))
        elif kind == 6:  # whitespace only, and whitespace at the ends
            s = "".join(rng.choice(spaces) for _ in range(rng.randint(1, 10)))
            if rng.random() < 0.5:
                s = s + rng.choice(words) + s
        else:  # mixed scripts without spaces
            s = "".join(rng.choice(words) for _ in range(rng.randint(2, 8)))
        out.append(s)
    return out


def _invalid_cases(rng, n):
    bad = [b"\xff", b"\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
           b"\x80", b"\xbf\xbf", b"\xf0\x9f\x98", b"\xc3"]
    good = [b"abc", b" ", b"\n", b"\xc3\xa9", b"\xe2\x82\xac", b"12", b"'s", b",", b"\xf0\x9f\x98\x80"]
    out = []
    for _ in range(n):
        s = b"".join(rng.choice(bad if rng.random() < 0.4 else good) for _ in range(rng.randint(1, 30)))
        out.append(s)
    for _ in range(n // 4):
        out.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))))
    return out


def records(min_lines=10000):
    rng = random.Random(SEED)
    texts, invalid = _file_records(rng, per_group=max(1000, min_lines // 4))
    texts += _edge_cases(rng, max(2000, min_lines // 5))
    invalid += _invalid_cases(rng, 400)
    rng.shuffle(texts)
    if len(texts) < min_lines:
        raise SystemExit("tokenizer_corpus: only %d lines (need %d): Debian files missing?"
                         % (len(texts), min_lines))
    return texts, invalid


def bench_text(nbytes):
    """Real text, whole files in a fixed order, repeated until nbytes."""
    parts, total = [], 0
    files = [f for g in _files() for f in g]
    while total < nbytes and files:
        for path in files:
            data = _read(path).decode("utf-8", errors="replace")
            parts.append(data)
            total += len(data.encode("utf-8"))
            if total >= nbytes:
                break
    return "".join(parts)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--bench":
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            f.write(bench_text(int(float(sys.argv[3]) * 1e6)))
    else:
        t, i = records()
        print("%d text records (%d bytes), %d invalid" % (
            len(t), sum(len(x.encode("utf-8")) for x in t), len(i)))
