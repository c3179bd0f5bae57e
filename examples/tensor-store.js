/**
 * Training from a store of named tensors, with checkpoints and resume.
 *
 * The store (here a Map, but anything with keys() and get(name) works) owns every Float32Array;
 * the optimizer updates them in place through `paramsFromStore`, nothing is copied. Halfway
 * through, the optimizer state and the weights are saved as a safetensors checkpoint; a fresh
 * store and optimizer resume from it and must end exactly where the uninterrupted run ends.
 *
 *   node examples/tensor-store.js [checkpoint-dir]
 *
 * Prints one JSON line with the results.
 */
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { AdamP, groupsFromStore, saveCheckpointSync, loadCheckpointSync } = require('adamp');

const IN = 8, HIDDEN = 16, OUT = 4, BATCH = 32, STEPS = 60;

/** Seeded normal samples, so every run is identical. */
function gaussian(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
}

function tensor(shape, init) {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  if (init) for (let i = 0; i < n; i++) data[i] = init();
  return { data, grad: new Float32Array(n), shape };
}

/** The store: names -> { data, grad, shape }, PyTorch layout ([out, in] weights). */
function makeStore(seed) {
  const r = gaussian(seed);
  const scaled = (s) => () => s * r();
  return new Map([
    ['fc1.weight', tensor([HIDDEN, IN], scaled(1 / Math.sqrt(IN)))],
    ['fc1.bias', tensor([HIDDEN])],
    ['fc2.weight', tensor([OUT, HIDDEN], scaled(1 / Math.sqrt(HIDDEN)))],
    ['fc2.bias', tensor([OUT])],
  ]);
}

/** A fixed regression task: y = sin(A x). */
function makeData() {
  const r = gaussian(12345);
  const A = Array.from({ length: OUT * IN }, () => r() / Math.sqrt(IN));
  const batches = [];
  for (let b = 0; b < 4; b++) {
    const x = Float32Array.from({ length: BATCH * IN }, () => r());
    const y = new Float32Array(BATCH * OUT);
    for (let n = 0; n < BATCH; n++) for (let o = 0; o < OUT; o++) {
      let s = 0;
      for (let i = 0; i < IN; i++) s += A[o * IN + i] * x[n * IN + i];
      y[n * OUT + o] = Math.sin(s);
    }
    batches.push({ x, y });
  }
  return batches;
}

/** Forward + backward of a 2-layer tanh MLP with MSE loss; writes every grad into the store. */
function lossAndGrads(store, { x, y }) {
  const W1 = store.get('fc1.weight'), b1 = store.get('fc1.bias');
  const W2 = store.get('fc2.weight'), b2 = store.get('fc2.bias');
  for (const t of store.values()) t.grad.fill(0);
  let loss = 0;
  const h = new Float64Array(HIDDEN), dh = new Float64Array(HIDDEN);
  for (let n = 0; n < BATCH; n++) {
    for (let j = 0; j < HIDDEN; j++) {
      let s = b1.data[j];
      for (let i = 0; i < IN; i++) s += W1.data[j * IN + i] * x[n * IN + i];
      h[j] = Math.tanh(s);
    }
    dh.fill(0);
    for (let o = 0; o < OUT; o++) {
      let s = b2.data[o];
      for (let j = 0; j < HIDDEN; j++) s += W2.data[o * HIDDEN + j] * h[j];
      const err = s - y[n * OUT + o];
      loss += (err * err) / (BATCH * OUT);
      const d = (2 * err) / (BATCH * OUT);
      b2.grad[o] += d;
      for (let j = 0; j < HIDDEN; j++) {
        W2.grad[o * HIDDEN + j] += d * h[j];
        dh[j] += d * W2.data[o * HIDDEN + j];
      }
    }
    for (let j = 0; j < HIDDEN; j++) {
      const d = dh[j] * (1 - h[j] * h[j]);
      b1.grad[j] += d;
      for (let i = 0; i < IN; i++) W1.grad[j * IN + i] += d * x[n * IN + i];
    }
  }
  return loss;
}

function makeOptimizer(store) {
  // Weight decay on the weights only: one param group per selection.
  return new AdamP(groupsFromStore(store, [
    { select: /\.weight$/, weightDecay: 1e-2 },
    { select: (name) => name.endsWith('.bias'), weightDecay: 0 },
  ]), { lr: 1e-2 });
}

function train(store, optimizer, data, from, to, losses) {
  for (let step = from; step < to; step++) {
    losses.push(lossAndGrads(store, data[step % data.length]));
    optimizer.step();
  }
}

function main() {
  const dir = process.argv[2] || fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-example-'));
  const checkpoint = path.join(dir, 'optimizer.safetensors');
  const data = makeData();

  // 1. Uninterrupted run.
  const store = makeStore(1);
  const weightArray = store.get('fc1.weight').data;
  const optimizer = makeOptimizer(store);
  const losses = [];
  train(store, optimizer, data, 0, STEPS, losses);

  // 2. Same run, stopped halfway with a checkpoint, resumed in a fresh store and optimizer.
  const first = makeStore(1);
  const firstOptimizer = makeOptimizer(first);
  train(first, firstOptimizer, data, 0, STEPS / 2, []);
  saveCheckpointSync(checkpoint, firstOptimizer, { params: true, metadata: { step: String(STEPS / 2) } });

  const resumed = makeStore(999); // other weights: the checkpoint restores them
  const resumedOptimizer = makeOptimizer(resumed);
  const info = loadCheckpointSync(checkpoint, resumedOptimizer, { params: true });
  train(resumed, resumedOptimizer, data, Number(info.metadata.step), STEPS, []);

  const identical = [...store.keys()].every((name) => {
    const a = store.get(name).data, b = resumed.get(name).data;
    return a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
  });
  console.log(JSON.stringify({
    backend: optimizer.backend,
    firstLoss: losses[0],
    lastLoss: losses[losses.length - 1],
    sameArrayUpdatedInPlace: store.get('fc1.weight').data === weightArray,
    resumedIdenticalToUninterrupted: identical,
    checkpointBytes: fs.statSync(checkpoint).size,
    lastStep: optimizer.lastStepInfo.map((s) => ({ name: s.name, projection: s.projection })),
  }));
}

main();
