// hf_encode.js - the reference side of tests/reference/test_tokenizer_hf_ref.py
// and tools/bench/bench-tokenizer for Hugging Face tokenizer.json files: the npm
// package @lenml/tokenizers (transformers.js's tokenizers) run by node.
//
//   node hf_encode.js LENML DIR ids [bos]    < lines.jsonl > ids.txt  (one line of ids per record)
//   node hf_encode.js LENML DIR bench PIECES.jsonl REPEATS         (seconds per pass)
//
// LENML is the cache folder holding node_modules/@lenml/tokenizers; DIR holds
// tokenizer.json (and optionally tokenizer_config.json). "bos" encodes with
// add_special_tokens (the post-processor's BOS), else without.
//
// One patch, so the reference is Hugging Face's tokenizers: transformers.js's
// Digits pre-tokenizer splits JavaScript's \d (ASCII digits only), the Rust
// library's splits every char::is_numeric() character, i.e. \p{N}.
'use strict';
const fs = require('fs');
const path = require('path');

const [lenml, dir, mode, ...rest] = process.argv.slice(2);
const { TokenizerLoader } = require(path.resolve(lenml, 'node_modules/@lenml/tokenizers'));

function load() {
  const tj = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf-8'));
  const cfgPath = path.join(dir, 'tokenizer_config.json');
  const tc = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, 'utf-8')) : {};
  const t = TokenizerLoader.fromPreTrained({ tokenizerJSON: tj, tokenizerConfig: tc });
  patchDigits(t.pre_tokenizer, new Set());
  return t;
}

function patchDigits(o, seen) {
  if (!o || (typeof o !== 'object' && typeof o !== 'function') || seen.has(o)) return;
  seen.add(o);
  if (o.constructor && o.constructor.name === 'DigitsPreTokenizer' && o.config.individual_digits)
    o.pattern = /[^\p{N}]+|\p{N}/gu;
  for (const k of Object.keys(o)) patchDigits(o[k], seen);
}

function lines(text) {
  const out = text.split('\n');
  if (out.length && out[out.length - 1] === '') out.pop();
  return out.map((l) => JSON.parse(l));
}

const t = load();
if (mode === 'ids') {
  const opts = { add_special_tokens: rest[0] === 'bos' };
  const out = [];
  for (const s of lines(fs.readFileSync(0, 'utf-8'))) out.push(t.encode(s, opts).join(' '));
  process.stdout.write(out.join('\n') + '\n');
} else if (mode === 'bench') {
  // one line per pass: seconds, token count, checksum of the ids (as gpt3_encode.js)
  const pieces = lines(fs.readFileSync(rest[0], 'utf-8'));
  const opts = { add_special_tokens: false };
  for (let r = 0; r < +rest[1]; r++) {
    const t0 = process.hrtime.bigint();
    const all = [];
    for (const p of pieces) all.push(t.encode(p, opts));
    const t1 = process.hrtime.bigint();
    let n = 0, sum = 0;
    for (const ids of all)
      for (const id of ids) {
        n++;
        sum = (sum * 31 + id) % 1000000007;
      }
    console.log((Number(t1 - t0) / 1e9).toFixed(4), n, sum);
  }
} else {
  throw new Error('mode must be ids or bench');
}
