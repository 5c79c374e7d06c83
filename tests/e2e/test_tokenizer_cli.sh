#!/bin/sh
# rlaif tokenize / detokenize from the command line: job-file tokenizers,
# stdin and arguments, binary round trips, specials only with --special,
# --save and --checkpoint (the /tokenizer group, read back by h5py as an
# independent reader), and bad input: missing or malformed vocabulary files
# name the file (and line), bad ids are errors with the right exit code.
set -u
. "${top_srcdir:?set by make check}/tests/e2e/lib.sh"
PY=${PYTHON_REF:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # name, condition result
  if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fails=$((fails + 1)); fi
}
# expect_error NAME CODE TEXT -- command...: exit code and message text
expect_error() {
  name=$1 code=$2 text=$3
  shift 4
  "$@" >"$tmp/out" 2>&1 </dev/null
  got=$?
  if [ "$got" = "$code" ] && grep -qF -- "$text" "$tmp/out" && [ "$(grep -c '^ERROR' "$tmp/out")" = 1 ] &&
     ! grep -qE 'Segmentation|AddressSanitizer|runtime error' "$tmp/out"; then
    echo "ok   $name"
  else
    echo "FAIL $name: exit $got (want $code), want '$text' in:"; sed 's/^/     /' "$tmp/out"
    fails=$((fails + 1))
  fi
}

# byte tokenizer (the default): arguments joined by a space, specials only when asked
out=$("$RLAIF" tokenize "hi" "<|endoftext|>")
check "byte tokenize args" "$([ "$out" = "104 105 32 60 124 101 110 100 111 102 116 101 120 116 124 62" ]; echo $?)"
out=$("$RLAIF" tokenize --special "hi<|endoftext|>")
check "byte tokenize --special" "$([ "$out" = "104 105 256" ]; echo $?)"
out=$("$RLAIF" detokenize 104 105 256)
check "byte detokenize special" "$([ "$out" = "hi<|endoftext|>" ]; echo $?)"
out=$("$RLAIF" detokenize --skip-special "[104, 105, 256]")
check "byte detokenize --skip-special, brackets and commas" "$([ "$out" = "hi" ]; echo $?)"

# binary round trip through stdin: every byte value, invalid UTF-8 included
printf 'caf\303\251 \377\376\000 x\n\n\342\202' >"$tmp/bin"
head -c 3000 /dev/urandom >>"$tmp/bin"
"$RLAIF" tokenize <"$tmp/bin" | "$RLAIF" detokenize >"$tmp/back"
check "byte round trip of binary stdin" "$(cmp -s "$tmp/bin" "$tmp/back"; echo $?)"

# a job file with extra specials
printf '[tokenizer]\ntype = byte\nspecials = <|endoftext|>,<|pad|>\n' >"$tmp/job.ini"
out=$("$RLAIF" tokenize "$tmp/job.ini" --special "<|pad|>a")
check "job file specials" "$([ "$out" = "257 97" ]; echo $?)"

# --save then --checkpoint, read independently by h5py
"$RLAIF" tokenize "$tmp/job.ini" --save "$tmp/tok.h5"
check "--save" "$?"
out=$("$RLAIF" tokenize --checkpoint "$tmp/tok.h5" --special "<|pad|>a")
check "--checkpoint" "$([ "$out" = "257 97" ]; echo $?)"
"$PY" - "$tmp/tok.h5" <<'PYEOF'
import sys, h5py
g = h5py.File(sys.argv[1], "r")["tokenizer"]
assert g.attrs["type"] == b"byte" and g.attrs["n_vocab"] == 258 and g.attrs["eos_id"] == 256, dict(g.attrs)
b, off, sp = g["token_bytes"][()], g["token_offset"][()], g["special"][()]
toks = [bytes(b[off[i]:off[i + 1]]) for i in range(258)]
assert toks[:256] == [bytes([i]) for i in range(256)] and toks[256:] == [b"<|endoftext|>", b"<|pad|>"]
assert list(sp[256:]) == [1, 1] and sp[:256].sum() == 0 and "merges" not in g
PYEOF
check "h5py reads /tokenizer as documented" "$?"

# bad input
printf '[tokenizer]\ntype = bpe\nvocab = %s/nope.json\nmerges = %s/nope.bpe\n' "$tmp" "$tmp" >"$tmp/missing.ini"
expect_error "missing encoder.json" 66 "nope.json" -- "$RLAIF" tokenize "$tmp/missing.ini" x
printf '{"a": 0,\n "b": }' >"$tmp/broken.json"
expect_error "malformed encoder.json names file:line" 66 "broken.json:2:" -- \
  "$RLAIF" tokenize --set tokenizer.type=bpe --set "tokenizer.vocab=$tmp/broken.json" \
  --set "tokenizer.merges=$tmp/x.bpe" x
"$PY" -c '
import json, sys
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + n); n += 1
enc = {chr(c): b for b, c in zip(bs, cs)}
enc["ab"] = 256
json.dump(enc, open(sys.argv[1] + "/enc.json", "w"))
open(sys.argv[1] + "/bad.bpe", "w").write("#version: 0.2\na b\na b c\n")
open(sys.argv[1] + "/good.bpe", "w").write("#version: 0.2\na b\n")
' "$tmp"
expect_error "malformed vocab.bpe names file:line" 66 "bad.bpe:3:" -- \
  "$RLAIF" tokenize --set tokenizer.type=bpe --set "tokenizer.vocab=$tmp/enc.json" \
  --set "tokenizer.merges=$tmp/bad.bpe" x
out=$("$RLAIF" tokenize --set tokenizer.type=bpe --set "tokenizer.vocab=$tmp/enc.json" \
  --set "tokenizer.merges=$tmp/good.bpe" "abab ab")
check "tiny BPE from files" "$([ "$out" = "256 256 32 256" ]; echo $?)"
expect_error "bpe without vocab" 64 "tokenizer.vocab" -- "$RLAIF" tokenize --set tokenizer.type=bpe x
expect_error "id out of range" 1 "outside the vocabulary" -- "$RLAIF" detokenize 104 300
expect_error "id not a number" 64 "not a token id" -- "$RLAIF" detokenize 104 1x
"$PY" -c "import h5py,sys; h5py.File(sys.argv[1],'w').create_group('x')" "$tmp/empty.h5"
expect_error "checkpoint without /tokenizer" 66 "no /tokenizer group" -- \
  "$RLAIF" tokenize --checkpoint "$tmp/empty.h5" x
expect_error "checkpoint missing" 66 "nothere.h5" -- "$RLAIF" tokenize --checkpoint "$tmp/nothere.h5" x
expect_error "unknown option" 64 "--bogus" -- "$RLAIF" tokenize --bogus x

# --tokenizer: a Hugging Face tokenizer.json without a job file (the form a model
# converter uses), SentencePiece-style with byte fallback, BOS from the
# tokenizer_config.json beside it; --save writes a format-2 /tokenizer group.
mkdir -p "$tmp/sp"
"$PY" - "$tmp/sp" <<'PYEOF'
import json, sys
d = sys.argv[1]
vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
vocab.update({"<0x%02X>" % b: 3 + b for b in range(256)})
vocab.update({"\u2581": 259, "h": 260, "i": 261, "\u2581h": 262, "\u2581hi": 263})
tj = {"added_tokens": [{"id": i, "content": c, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])],
      "normalizer": {"type": "Sequence", "normalizers": [
          {"type": "Prepend", "prepend": "\u2581"},
          {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
      "pre_tokenizer": None, "post_processor": None,
      "decoder": {"type": "Sequence", "decoders": [
          {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
          {"type": "ByteFallback"}, {"type": "Fuse"},
          {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
      "model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>", "vocab": vocab,
                "merges": ["\u2581 h", "\u2581h i"]}}
json.dump(tj, open(d + "/tokenizer.json", "w"))
json.dump({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True,
           "model_max_length": 10 ** 30}, open(d + "/tokenizer_config.json", "w"))
PYEOF
out=$("$RLAIF" tokenize --tokenizer "$tmp/sp/tokenizer.json" "hi hx")
check "--tokenizer tokenizer.json (SentencePiece, byte fallback)" "$([ "$out" = "263 262 123" ]; echo $?)"
out=$("$RLAIF" tokenize --tokenizer "$tmp/sp" --bos "hi")
check "--tokenizer FOLDER --bos" "$([ "$out" = "1 263" ]; echo $?)"
out=$("$RLAIF" detokenize --tokenizer "$tmp/sp" 1 263 262 123)
check "--tokenizer detokenize keeps <s>, strips nothing after it" "$([ "$out" = "<s> hi hx" ]; echo $?)"
out=$("$RLAIF" detokenize --tokenizer "$tmp/sp" --skip-special 1 263 262 123)
check "--tokenizer detokenize --skip-special strips the leading space" "$([ "$out" = "hi hx" ]; echo $?)"
"$RLAIF" tokenize --tokenizer "$tmp/sp/tokenizer.json" --save "$tmp/sp.h5" >/dev/null
out=$("$RLAIF" tokenize --checkpoint "$tmp/sp.h5" --bos "hi hx")
check "--save then --checkpoint: same ids and BOS" "$([ "$out" = "1 263 262 123" ]; echo $?)"
out=$("$PY" -c "
import h5py, sys
g = h5py.File(sys.argv[1], 'r')['tokenizer']
print(g.attrs['format'], g.attrs['sentencepiece'], g.attrs['bos_id'], g.attrs['add_bos'], int(g['special'][3]))
" "$tmp/sp.h5")
check "format-2 group as documented (h5py)" "$([ "$out" = "2 1 1 1 2" ]; echo $?)"
"$PY" -c "
import json, sys
tj = json.load(open(sys.argv[1] + '/tokenizer.json'))
tj['model']['type'] = 'Unigram'
json.dump(tj, open(sys.argv[1] + '/unigram.json', 'w'))
" "$tmp/sp"
expect_error "--tokenizer refuses Unigram naming file and key" 66 "unigram.json: model.type: Unigram" -- \
  "$RLAIF" tokenize --tokenizer "$tmp/sp/unigram.json" x

[ "$fails" = 0 ] || { echo "$fails checks failed"; exit 1; }
echo "all tokenizer command checks passed"
