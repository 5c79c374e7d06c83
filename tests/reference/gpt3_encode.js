// gpt3_encode.js - the reference side of tests/reference/test_tokenizer_ref.py and
// tools/bench/bench-tokenizer: the npm package gpt-3-encoder run by node.
//
//   node gpt3_encode.js PKGDIR ids    < lines.jsonl  > ids.txt     (one line of ids per record)
//   node gpt3_encode.js PKGDIR pieces < lines.jsonl  > pieces.jsonl (the regex's pieces, JSON)
//   node gpt3_encode.js PKGDIR bench PIECES.jsonl REPEATS       (seconds per pass)
//
// Records are JSON strings, one per line. The pieces come from the package's
// own regex, read out of its Encoder.js, so they are exactly what it encodes.
'use strict';
const fs = require('fs');
const path = require('path');

const [pkg, mode, ...rest] = process.argv.slice(2);
const enc = require(path.resolve(pkg, 'Encoder.js'));

function packagePattern() {
  const src = fs.readFileSync(path.resolve(pkg, 'Encoder.js'), 'utf-8');
  const m = src.match(/const pat = \/(.*)\/(\w*)\n/);
  if (!m) throw new Error('cannot find the regex in ' + pkg + '/Encoder.js');
  return new RegExp(m[1], m[2]);
}

function lines() {
  const text = fs.readFileSync(0, 'utf-8');
  const out = text.split('\n');
  if (out.length && out[out.length - 1] === '') out.pop();
  return out.map((l) => JSON.parse(l));
}

if (mode === 'ids') {
  const out = [];
  for (const s of lines()) out.push(enc.encode(s).join(' '));
  process.stdout.write(out.join('\n') + '\n');
} else if (mode === 'pieces') {
  const pat = packagePattern();
  const out = [];
  for (const s of lines()) out.push(JSON.stringify(Array.from(s.matchAll(pat), (m) => m[0])));
  process.stdout.write(out.join('\n') + '\n');
} else if (mode === 'bench') {
  // Pieces (JSON strings, one per line, ~1 KB cut at line breaks: encode()
  // grows quadratically with its input) encoded REPEATS times; one line per
  // pass: seconds, token count, checksum of the ids.
  const [file, repeats] = [rest[0], +rest[1]];
  const pieces = fs.readFileSync(file, 'utf-8').split('\n').filter((l) => l).map((l) => JSON.parse(l));
  for (let r = 0; r < repeats; r++) {
    const t0 = process.hrtime.bigint();
    const all = [];
    for (const p of pieces) all.push(enc.encode(p));
    const t1 = process.hrtime.bigint();
    let n = 0, sum = 0;
    for (const ids of all) for (const id of ids) { n++; sum = (sum * 31 + id) % 1000000007; }
    console.log(Number(t1 - t0) / 1e9, n, sum);
  }
} else {
  console.error('usage: node gpt3_encode.js PKGDIR ids|pieces|bench ...');
  process.exit(64);
}
