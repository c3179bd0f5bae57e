#!/usr/bin/env node
/*
 * Converts reference cases produced by the official clovaai/AdamP v0.3.0 code under PyTorch
 * 1.13.1 (a harness runs it on `<case>.input.json` and writes `<case>.expected.json`; see
 * test/fixtures/README.md) into compact test fixtures: test/fixtures/<case>.json (structure,
 * hyperparameters, decisions) and <case>.f32 (every array, float32 little-endian; the JSON holds
 * [offset, length] pairs into it).
 *
 *   node scripts/convert-fixtures.js CASES_DIR [OUT_DIR]
 */
'use strict';
const fs = require('fs');
const path = require('path');

const casesDir = process.argv[2];
if (!casesDir) {
  process.stderr.write('usage: node scripts/convert-fixtures.js CASES_DIR [OUT_DIR]\n');
  process.exit(2);
}
const outDir = process.argv[3] || path.join(__dirname, '..', 'test', 'fixtures');

function num(x) {
  if (x === 'NaN') return NaN;
  if (x === 'Infinity') return Infinity;
  if (x === '-Infinity') return -Infinity;
  return x;
}

for (const file of fs.readdirSync(casesDir).filter((f) => f.endsWith('.input.json')).sort()) {
  const name = file.replace('.input.json', '');
  const input = JSON.parse(fs.readFileSync(path.join(casesDir, file), 'utf8'));
  const expected = JSON.parse(fs.readFileSync(path.join(casesDir, `${name}.expected.json`), 'utf8'));
  const chunks = [];
  let offset = 0;
  const put = (arr) => {
    const a = Float32Array.from(arr.map(num));
    if (a.some((v, i) => !Object.is(v, Math.fround(num(arr[i]))))) throw new Error(`${name}: value not float32`);
    chunks.push(Buffer.from(a.buffer));
    const ref = [offset, a.length];
    offset += a.length;
    return ref;
  };
  const out = {
    name,
    source: 'official clovaai/AdamP v0.3.0 (torch ' + expected.meta.torch_version + ', ' + expected.meta.dtype + ')',
    optimizer: input.optimizer,
    hyperparameters: input.hyperparameters,
    params: input.params.map((p) => ({ shape: p.shape, data: put(p.data) })),
    grads: input.grads.map((step) => step.map((g) => (g === null ? null : put(g)))),
    steps: expected.steps.map((s) => ({
      step: s.step,
      params: s.params.map((p) => ({
        projection: p.projection,
        channelMaxCos: p.decision && p.decision.channel ? num(p.decision.channel.max_abs_cos) : null,
        channelThreshold: p.decision && p.decision.channel ? p.decision.channel.threshold_in_dtype : null,
        layerMaxCos: p.decision && p.decision.layer ? num(p.decision.layer.max_abs_cos) : null,
        layerThreshold: p.decision && p.decision.layer ? p.decision.layer.threshold_in_dtype : null,
        data: put(p.data),
        state: p.state === null ? null : Object.fromEntries(Object.entries(p.state).map(([k, v]) => [k, Array.isArray(v) ? put(v) : v])),
      })),
    })),
  };
  fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(out));
  fs.writeFileSync(path.join(outDir, `${name}.f32`), Buffer.concat(chunks));
  console.log(`${name}: ${offset} floats`);
}
