#!/usr/bin/env node
/**
 * Measures a sharded data-parallel step on this machine, for the model of docs/distributed.md
 * (scripts/distributed-model.js reads the results):
 *
 *   mpirun --oversubscribe -np 4 node scripts/distributed-measure.js --out bench/results/distributed-measured-4.json
 *
 * Every rank: a GPT-2-shaped model (--layers, --d, --vocab, --ctx; default 4 x 256, vocab 8192,
 * ctx 512: 5.4M params), random gradients, `--steps` timed steps of the gradient exchange
 * (--grads reducescatter: reduceScatterGradients, ZeRO-2, the default; allreduce: averageGradients)
 * and the sharded AdamP step (native backend when it loads), each collective call timed by phase
 * through a wrapper.
 * Rank 0 also times the single-process AdamP step of the whole model (same backend, 1 thread) and
 * the collective alone (latency: 8 doubles; bandwidth: 4 MiB), and writes the JSON.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const root = path.resolve(__dirname, '..');
const adamp = require(path.join(root, 'dist/lib/index.js'));
const dist = require(path.join(root, 'dist/lib/distributed/index.js'));

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const layers = Number(arg('layers', 4)), d = Number(arg('d', 256)), vocab = Number(arg('vocab', 8192)), ctx = Number(arg('ctx', 512));
const steps = Number(arg('steps', 6)), warmup = Number(arg('warmup', 2));
const backend = arg('backend', 'native');
const partitionMode = arg('partition', 'slices');
const out = arg('out', null);
const grads = arg('grads', 'reducescatter'); // 'allreduce' (averageGradients) or 'reducescatter' (ZeRO-2)

/** GPT-2's tensors with nn.Linear's [out, in] layout (the channel axis first). */
function gpt2Shapes(L, D, V, C) {
  const s = [[V, D], [C, D]];
  for (let l = 0; l < L; l++) s.push([D], [D], [3 * D, D], [3 * D], [D, D], [D], [D], [D], [4 * D, D], [4 * D], [D, 4 * D], [D]);
  s.push([D], [D]);
  return s;
}

function now() { return Number(process.hrtime.bigint()) / 1e9; }

const shapes = gpt2Shapes(layers, d, vocab, ctx);
const c = dist.mpiCollective({ timeoutMs: 600000 });
const numel = shapes.map((s) => s.reduce((a, b) => a * b, 1));
const P = numel.reduce((a, b) => a + b, 0);
let seed = 12345;
const rnd = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 2 ** 32 - 0.5; };
const params = shapes.map((shape, k) => ({ name: `t${k}`, shape, data: Float32Array.from({ length: numel[k] }, rnd), grad: new Float32Array(numel[k]) }));

// Time every collective call by phase. Each call is preceded by a barrier (a tiny all-gather),
// timed apart: `wait` is the time until every rank has arrived (skew, time slicing), `seconds`
// the call itself once they all have (what the model's transfer costs predict).
const timing = {};
const rawGather = c.allGather.bind(c);
const tiny = new Float64Array(1), tinyAll = new Float64Array(c.size);
const wrap = (name) => {
  const f = c[name].bind(c);
  c[name] = (...a) => {
    const at = name === 'allGather' ? a[3] : name === 'reduceScatter' ? a[3] && a[3].at : a[2] && a[2].at;
    const phase = (at && at.phase) || 'other';
    if (phase === 'barrier') return f(...a);
    const tw = now();
    rawGather(tiny, tinyAll, null, { phase: 'barrier' });
    const t0 = now();
    try { return f(...a); } finally {
      const t = timing[phase] || (timing[phase] = { seconds: 0, wait: 0, calls: 0, bytes: 0 });
      t.seconds += now() - t0;
      t.wait += t0 - tw;
      t.calls++;
      t.bytes += name === 'allGather' ? a[1].byteLength : a[0].byteLength;
    }
  };
};
wrap('allGather');
wrap('allReduce');
wrap('reduceScatter');

const opt = new dist.ShardedOptimizer(adamp.AdamP, params, { lr: 1e-3, weightDecay: 0.01 }, { collective: c, backend, partition: partitionMode });
const perStep = [];
for (let t = 1; t <= warmup + steps; t++) {
  for (const p of params) for (let i = 0; i < p.grad.length; i += 97) p.grad[i] = rnd();
  for (const k of Object.keys(timing)) delete timing[k];
  const t0 = now();
  if (grads === 'allreduce') dist.averageGradients(params, c, { order: 'rank', step: t });
  else dist.reduceScatterGradients(opt, { order: 'rank', step: t });
  const t1 = now();
  opt.step();
  const t2 = now();
  if (t > warmup) perStep.push({ gradients: t1 - t0, step: t2 - t1, phases: JSON.parse(JSON.stringify(timing)) });
}

const result = { ranks: c.size, rank: c.rank, model: { layers, d, vocab, ctx, params: P, tensors: shapes.length }, backend: opt.backend, partition: partitionMode, grads, steps: perStep };

// every rank: the collective alone (medians of per-call times); rank 0: the single-process step
const micro = {};
{
  const median = (f, reps) => { const t = []; for (let k = 0; k < reps; k++) { const t0 = now(); f(); t.push(now() - t0); } t.sort((a, b) => a - b); return t[reps >> 1]; };
  const lat = new Float64Array(8), latAll = new Float64Array(8 * c.size);
  for (let k = 0; k < 20; k++) c.allGather(lat, latAll, null, { phase: 'barrier' });
  micro.smallAllGatherSeconds = median(() => c.allGather(lat, latAll, null, { phase: 'barrier' }), 101);
  const big = new Float32Array((4 << 20) / 4 / c.size), bigAll = new Float32Array(big.length * c.size);
  for (let k = 0; k < 3; k++) c.allGather(big, bigAll, null, { phase: 'barrier' });
  micro.allGather4MiBSeconds = median(() => c.allGather(big, bigAll, null, { phase: 'barrier' }), 15);
  const red = new Float32Array((4 << 20) / 4);
  micro.allReduceRank4MiBSeconds = median(() => c.allReduce(red, 'sum', { order: 'rank', at: { phase: 'barrier' } }), 15);
  micro.allReduceAny4MiBSeconds = median(() => c.allReduce(red, 'sum', { order: 'any', at: { phase: 'barrier' } }), 15);
  const counts = Array.from({ length: c.size }, (_, r) => Math.floor(red.length / c.size) + (r < red.length % c.size ? 1 : 0));
  const part = new Float32Array(counts[c.rank]);
  micro.reduceScatterRank4MiBSeconds = median(() => c.reduceScatter(red, part, counts, { order: 'rank', at: { phase: 'barrier' } }), 15);
}
result.micro = micro;
if (c.rank === 0) {
  const ref = shapes.map((shape, k) => ({ shape, data: params[k].data.slice(), grad: params[k].grad.slice() }));
  const single = new adamp.AdamP(ref, { lr: 1e-3, weightDecay: 0.01 }, { backend: opt.backend, threads: 1 });
  for (let k = 0; k < warmup; k++) single.step();
  const times = [];
  for (let k = 0; k < steps; k++) { const t0 = now(); single.step(); times.push(now() - t0); }
  result.single = { seconds: times };
  result.machine = { cores: require('os').cpus().length, load: require('os').loadavg(), node: process.version, mpi: c.describe() };
  result.date = new Date().toISOString().slice(0, 10);
  const text = JSON.stringify(result, null, 1) + '\n';
  if (out) fs.writeFileSync(out, text);
  else process.stdout.write(text);
}
c.allGather(new Float64Array(1), new Float64Array(c.size), null, { phase: 'barrier' });
