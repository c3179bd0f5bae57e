/**
 * Seeded scenarios for the distributed tests, shared by the in-process workers
 * (test/distributed.test.ts) and the MPI ranks (test/helpers/distributed/mpi-check.js): random
 * models of every layout the protocol has, random hyperparameters and param groups, gradients of
 * every decision kind (and null ones), the same on every rank.
 *
 * `checkSharded` runs a sharded optimizer and, on the same rank, the single-process optimizer of
 * the same backend, and compares params, state and lastStepInfo byte for byte after every step.
 * Loads the built package (dist/), as the ranks are separate processes or threads.
 */
'use strict';
const path = require('path');
const root = path.resolve(__dirname, '../../..');
const adamp = require(path.join(root, 'dist/lib/index.js'));
const dist = require(path.join(root, 'dist/lib/distributed/index.js'));
const { Rng } = require(path.join(root, 'dist/cli/rng.js'));

const OPTIMIZERS = ['AdamP', 'SGDP', 'AdamW', 'SGD'];

function randn(r, n, scale = 1) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * r.normal();
  return out;
}

/** A random shape of one of the protocol's layouts; `big` adds tensors of several units per row or block. */
function randomTensor(r, big) {
  const kinds = ['conv', 'linear', 'tf', 'vector', 'scalar', 'conv', 'linear', 'tf'];
  if (big) kinds.push('onepass', 'longrows', 'tfmany');
  const kind = kinds[r.int(kinds.length)];
  switch (kind) {
    case 'conv': return { shape: [1 + r.int(40), 1 + r.int(8), 3, 3] };
    case 'linear': return { shape: [1 + r.int(64), 1 + r.int(64)] };
    case 'tf': return { shape: [1 + r.int(9), 3, 1 + r.int(200), 1 + r.int(40)], channelAxis: -1 };
    case 'vector': return { shape: [1 + r.int(300)] };
    case 'scalar': return { shape: [] };
    case 'onepass': return { shape: [65536 + 1 + r.int(140000)] };
    case 'longrows': return { shape: [2 + r.int(3), 65536 + r.int(9000)] };
    case 'tfmany': return { shape: [8000 + r.int(9000), 2 + r.int(14)], channelAxis: -1 };
    default: throw new Error(kind);
  }
}

function randomOptions(r, name) {
  switch (name) {
    case 'AdamP': return { lr: 0.002 + 0.02 * r.uniform(), weightDecay: r.uniform() < 0.5 ? 0 : 0.1, nesterov: r.uniform() < 0.5, delta: r.uniform() < 0.2 ? 0.5 : 0.1, wdRatio: 0.2 };
    case 'SGDP': {
      const momentum = r.uniform() < 0.2 ? 0 : 0.9, dampening = r.uniform() < 0.2 ? 0.1 : 0;
      return { lr: 0.01 + 0.1 * r.uniform(), momentum, dampening, weightDecay: r.uniform() < 0.5 ? 0 : 1e-3, nesterov: r.uniform() < 0.4 };
    }
    case 'AdamW': return { lr: 0.002 + 0.02 * r.uniform(), weightDecay: r.uniform() < 0.5 ? 0.01 : 0.1 };
    case 'SGD': {
      const momentum = r.uniform() < 0.2 ? 0 : 0.9, dampening = r.uniform() < 0.2 ? 0.1 : 0;
      return { lr: 0.01 + 0.1 * r.uniform(), momentum, dampening, weightDecay: r.uniform() < 0.5 ? 0 : 1e-3, nesterov: momentum > 0 && dampening === 0 && r.uniform() < 0.5 };
    }
    default: throw new Error(name);
  }
}

/** The model, options and groups of a seed: the same on every rank. */
function makeScenario(seed, name, opts = {}) {
  const r = new Rng(seed);
  const count = opts.count ?? 2 + r.int(7);
  const tensors = [];
  for (let k = 0; k < count; k++) tensors.push(randomTensor(r, opts.big === true));
  // an anchor: a projecting tensor large enough that rank boundaries fall inside it (PyTorch or channels-last layout)
  if (opts.anchor !== false) {
    const c = 64 + r.int(192), fan = 32 + r.int(32);
    tensors.splice(r.int(tensors.length + 1), 0, r.uniform() < 0.6 ? { shape: [c, fan, 3, 3] } : { shape: [3, 3, fan, c], channelAxis: -1 });
  }
  const init = tensors.map((t) => randn(r, t.shape.reduce((a, b) => a * b, 1)));
  const options = randomOptions(r, name);
  // one or two groups, the second with its own lr and weight decay
  const split = count > 2 && r.uniform() < 0.5 ? 1 + r.int(count - 1) : count;
  const second = split < count ? { lr: options.lr * 0.5, weightDecay: name === 'AdamW' ? 0.05 : 0 } : null;
  return { seed, name, tensors, init, options, split, second };
}

function makeParams(sc) {
  return sc.tensors.map((t, k) => ({ name: `t${k}`, shape: t.shape, channelAxis: t.channelAxis, data: sc.init[k].slice(), grad: null }));
}

function groupsOf(sc, params) {
  if (sc.second === null) return params;
  return [{ params: params.slice(0, sc.split) }, { params: params.slice(sc.split), ...sc.second }];
}

/** The gradient of param k at step t: random, orthogonal per channel or layer, parallel, zero, or null. */
function gradient(sc, t, k, p) {
  const r = new Rng(sc.seed * 1000003 + t * 7919 + k);
  const u = r.uniform();
  if (u < 0.06) return null;
  const n = p.data.length;
  const g = randn(r, n);
  const kind = ['random', 'channel', 'layer', 'parallel', 'zero', 'random'][r.int(6)];
  if (kind === 'zero') return new Float32Array(n);
  if (kind === 'parallel') return p.data.map((x) => x * 0.5);
  if (kind === 'random' || p.shape.length < 2) return g;
  const rows = kind === 'channel' ? p.shape[0] : 1;
  const cols = n / rows;
  for (let a = 0; a < rows; a++) {
    let gp = 0, pp = 0;
    for (let j = 0; j < cols; j++) { gp += g[a * cols + j] * p.data[a * cols + j]; pp += p.data[a * cols + j] ** 2; }
    const c = pp > 0 ? gp / pp : 0;
    for (let j = 0; j < cols; j++) g[a * cols + j] -= c * p.data[a * cols + j];
  }
  return g;
}

function setGradients(sc, t, params) {
  params.forEach((p, k) => { p.grad = gradient(sc, t, k, p); });
}

function bytesEqual(a, b) {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

function infoText(info) {
  return JSON.stringify(info.map((e) => [e.projection, e.channelMaxCos, e.channelThreshold, e.layerCos, e.layerThreshold, e.wdRatio, e.weightNorm, e.updateNorm, e.effectiveStepSize]));
}

/**
 * Runs `steps` sharded steps of a scenario and the single-process steps beside them; returns
 * `{ ok, compared, message }`. `config`: { partition, backend, diagnostics, gatherParams, staging }.
 */
function checkSharded(collective, sc, steps, config) {
  const cls = adamp[sc.name];
  const mine = makeParams(sc);
  const ref = makeParams(sc);
  const opt = new dist.ShardedOptimizer(cls, groupsOf(sc, mine), sc.options, { collective, ...config });
  const single = new cls(groupsOf(sc, ref), sc.options, { backend: opt.backend, diagnostics: config.diagnostics ?? 'decisions' });
  let compared = 0;
  for (let t = 1; t <= steps; t++) {
    setGradients(sc, t, mine);
    setGradients(sc, t, ref);
    opt.step();
    single.step();
    if (config.gatherParams === false) opt.gatherParams();
    const whereText = `${sc.name} seed ${sc.seed} ${config.partition} ${opt.backend} rank ${collective.rank}/${collective.size} step ${t}`;
    for (let k = 0; k < mine.length; k++) {
      if (!bytesEqual(mine[k].data, ref[k].data)) return { ok: false, compared, message: `${whereText}: param ${k} ${JSON.stringify(sc.tensors[k])} differs` };
    }
    const a = infoText(opt.lastStepInfo), b = infoText(single.lastStepInfo);
    if (a !== b) return { ok: false, compared, message: `${whereText}: lastStepInfo differs:\n${a}\n${b}` };
    if (t === steps || t % 3 === 0) {
      const sa = opt.gatherStateDict(), sb = single.stateDict();
      const ka = Object.keys(sa.state).join(','), kb = Object.keys(sb.state).join(',');
      if (ka !== kb) return { ok: false, compared, message: `${whereText}: state held for params ${ka} vs ${kb}` };
      for (const i of Object.keys(sb.state)) {
        for (const [key, v] of Object.entries(sb.state[i])) {
          const w = sa.state[i][key];
          if (typeof v === 'number' ? v !== w : !bytesEqual(v, w)) return { ok: false, compared, message: `${whereText}: state ${i}.${key} differs` };
        }
      }
    }
    compared++;
  }
  return { ok: true, compared, message: '' };
}

module.exports = { OPTIMIZERS, makeScenario, makeParams, groupsOf, setGradients, gradient, checkSharded, bytesEqual, adamp, dist };
