/**
 * What one rank does in the distributed tests, for any collective: the in-process workers
 * (test/distributed.test.ts) and the MPI ranks (mpi-check.js, test/distributed-mpi.test.ts) run
 * the same functions. Each returns a JSON-able summary or throws with what differed.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const { adamp, dist, makeScenario, makeParams, groupsOf, setGradients, gradient, checkSharded, bytesEqual } = require('./scenario');

/** Sharded vs single process, bit for bit. */
function sharded(c, a) {
  const sc = makeScenario(a.seed, a.name, { big: a.big });
  const r = checkSharded(c, sc, a.steps, a.config);
  if (!r.ok) throw new Error(r.message);
  return r;
}

/**
 * Data parallel: every rank's gradient is its micro-batch's; averageGradients, then a sharded
 * step. The reference, on every rank: the N micro-batch gradients averaged by rankOrderMean, then
 * the single-process step. Weights bit-identical after every step.
 */
function dataParallel(c, a) {
  const sc = makeScenario(a.seed, a.name, { big: a.big });
  const cls = adamp[sc.name];
  const mine = makeParams(sc);
  const ref = makeParams(sc);
  // replicas start from rank 0's weights
  if (c.rank !== 0) mine.forEach((p) => p.data.fill(0));
  dist.broadcastParams(mine, c, 0, { bucketBytes: 4096 });
  const opt = new dist.ShardedOptimizer(cls, groupsOf(sc, mine), sc.options, { collective: c, ...a.config });
  const single = new cls(groupsOf(sc, ref), sc.options, { backend: opt.backend });
  for (let t = 1; t <= a.steps; t++) {
    // no null gradients here: every rank has a gradient for every param
    mine.forEach((p, k) => { p.grad = gradient({ ...sc, seed: sc.seed * 31 + c.rank }, t, k, p) ?? new Float32Array(p.data.length); });
    if (a.reduceScatter) dist.reduceScatterGradients(opt, { order: a.order ?? 'rank', bucketBytes: a.bucketBytes ?? 1 << 12, step: t });
    else dist.averageGradients(mine, c, { order: a.order ?? 'rank', bucketBytes: a.bucketBytes ?? 1 << 12, step: t });
    ref.forEach((p, k) => {
      const parts = [];
      for (let r = 0; r < c.size; r++) parts.push(gradient({ ...sc, seed: sc.seed * 31 + r }, t, k, p) ?? new Float32Array(p.data.length));
      p.grad = dist.rankOrderMean(parts, new Float32Array(p.data.length));
    });
    // order 'any' over more than 2 ranks sums in MPI's order: close to the rank-ordered mean, not equal
    const exact = a.order !== 'any' || c.size <= 2;
    for (let k = 0; k < mine.length; k++) {
      const pc = a.reduceScatter ? opt.pieceOf(k) : { begin: 0, end: mine[k].grad.length };
      if (!pc) continue;
      const x = mine[k].grad.subarray(pc.begin, pc.end), y = ref[k].grad.subarray(pc.begin, pc.end);
      if (exact ? !bytesEqual(x, y) : x.some((v, i) => Math.abs(v - y[i]) > 1e-5 * (1 + Math.abs(y[i])))) throw new Error(`rank ${c.rank} step ${t}: averaged gradient ${k} differs from rankOrderMean`);
    }
    if (!exact) { ref.forEach((p, k) => p.grad.set(mine[k].grad)); ref.forEach((p, k) => p.data.set(mine[k].data)); }
    opt.step();
    single.step();
    if (!exact) continue;
    for (let k = 0; k < mine.length; k++) if (!bytesEqual(mine[k].data, ref[k].data)) throw new Error(`rank ${c.rank} step ${t}: weights ${k} differ from the single process`);
  }
  return { ok: true, steps: a.steps };
}

/**
 * A rank fails at a chosen call: `mode` 'exit' (the rank ends) or 'stall' (it sleeps past the
 * deadline). The other ranks must throw ERR_ADAMP_COLLECTIVE_TIMEOUT naming it, and, unless the
 * failure hit the final agreement, keep the state of the last committed step.
 */
function faults(c, a) {
  const sc = makeScenario(a.seed, a.name, { count: 4 });
  const mine = makeParams(sc);
  const opt = new dist.ShardedOptimizer(adamp[sc.name], groupsOf(sc, mine), sc.options, { collective: c, partition: a.partition ?? 'slices', timeoutMs: a.timeoutMs });
  const original = c.allGather;
  const inner = { allGather: original.bind(c) };
  c.allGather = (send, recv, counts, at) => {
    if (c.rank === a.victim && at && at.step === a.step && at.phase === a.phase) {
      if (a.mode === 'exit') process.exit(7);
      if (a.mode === 'kill') process.kill(process.pid, 'SIGKILL');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, a.stallMs);
    }
    return inner.allGather(send, recv, counts, at);
  };
  let before = null;
  let steps = 0;
  try {
    for (let t = 1; t <= a.step; t++) {
      setGradients(sc, t, mine);
      if (t === a.step) before = { params: mine.map((p) => p.data.slice()), state: opt.shardStateDict(), count: opt.stepCount };
      opt.step();
      steps++;
    }
  } catch (e) {
    const unchanged = before !== null && mine.every((p, k) => bytesEqual(p.data, before.params[k])) && opt.stepCount === before.count
      && JSON.stringify(Object.keys(opt.shardStateDict().state)) === JSON.stringify(Object.keys(before.state.state))
      && Object.entries(opt.shardStateDict().state).every(([i, s]) => Object.entries(s).every(([k, v]) => (v instanceof Float32Array ? bytesEqual(v, before.state.state[i][k]) : JSON.stringify(v) === JSON.stringify(before.state.state[i][k]))));
    let after = null;
    try { opt.step(); } catch (e2) { after = e2.code; }
    return { threw: true, code: e.code, message: e.message, rank: e.rank, step: e.step, phase: e.phase, missing: e.missing, inDoubt: e.inDoubt, unchanged, steps, after };
  } finally {
    c.allGather = original;
  }
  return { threw: false, steps };
}

/** Ranks disagree (hyperparameters; one rank's invalid gradient): every rank throws, nothing changes, the next step works. */
function disagree(c, a) {
  const sc = makeScenario(a.seed, a.name, { count: 3 });
  const mine = makeParams(sc);
  const ref = makeParams(sc);
  const cls = adamp[sc.name];
  const opt = new dist.ShardedOptimizer(cls, groupsOf(sc, mine), sc.options, { collective: c });
  const single = new cls(groupsOf(sc, ref), sc.options, { backend: opt.backend });
  const out = {};
  setGradients(sc, 1, mine);
  const snapshot = mine.map((p) => p.data.slice());
  const lr = opt.paramGroups[0].lr;
  if (c.rank === 1) opt.paramGroups[0].lr = lr * 2;
  try { opt.step(); out.hyper = 'no error'; } catch (e) { out.hyper = { code: e.code, message: e.message }; }
  opt.paramGroups[0].lr = lr;
  const badGrad = mine[0].grad;
  if (c.rank === 1) mine[0].grad = new Float32Array(badGrad.length + 1);
  try { opt.step(); out.grad = 'no error'; } catch (e) { out.grad = { code: e.code, message: e.message }; }
  mine[0].grad = badGrad;
  out.unchanged = mine.every((p, k) => bytesEqual(p.data, snapshot[k])) && opt.stepCount === 0;
  setGradients(sc, 1, ref);
  opt.step();
  single.step();
  out.thenSame = mine.every((p, k) => bytesEqual(p.data, ref[k].data));
  return out;
}

/** Trains `steps` sharded steps of a scenario (all ranks) and saves a sharded checkpoint with params into `dir`. */
function trainAndSave(c, a) {
  const sc = makeScenario(a.seed, a.name, { big: a.big });
  const mine = makeParams(sc);
  const opt = new dist.ShardedOptimizer(adamp[sc.name], groupsOf(sc, mine), sc.options, { collective: c, ...a.config });
  for (let t = 1; t <= a.steps; t++) { setGradients(sc, t, mine); opt.step(); }
  const manifest = dist.saveShardedCheckpoint(a.dir, opt, { params: true, metadata: { epoch: String(a.steps) } });
  if (c.rank === 0 && a.merge) dist.mergeShardedCheckpoint(a.dir, path.join(a.dir, 'merged.safetensors'));
  dist.agree(c, true, { phase: 'barrier' });
  return { files: manifest.files.length, backend: opt.backend };
}

/** The single-process run of a scenario: `steps` steps, then `more` after a checkpoint round trip elsewhere. */
function reference(sc, steps, backend) {
  const params = makeParams(sc);
  const opt = new adamp[sc.name](groupsOf(sc, params), sc.options, { backend });
  for (let t = 1; t <= steps; t++) { setGradients(sc, t, params); opt.step(); }
  return { params, opt };
}

function sameState(a, b, where) {
  const ka = Object.keys(a.state).join(','), kb = Object.keys(b.state).join(',');
  if (ka !== kb) throw new Error(`${where}: state held for params ${ka} vs ${kb}`);
  for (const i of Object.keys(b.state)) {
    for (const [key, v] of Object.entries(b.state[i])) {
      const w = a.state[i][key];
      if (typeof v === 'number' ? v !== w : !bytesEqual(v, w)) throw new Error(`${where}: state ${i}.${key} differs`);
    }
  }
}

/**
 * After trainAndSave on another world size: (1) the merged file loads into a single-process
 * optimizer equal to the reference; (2) the shards are refused without reshard; (3) with reshard,
 * and from the merged file, this world size continues `more` steps bit-identical to the reference.
 */
function loadAndContinue(c, a) {
  const sc = makeScenario(a.seed, a.name, { big: a.big });
  const ref = reference(sc, a.steps, a.backend);
  const out = {};
  // (1) merged file -> single process
  const params = makeParams(sc);
  const single = new adamp[sc.name](groupsOf(sc, params), sc.options, { backend: a.backend });
  adamp.loadCheckpointSync(path.join(a.dir, 'merged.safetensors'), single, { params: true });
  sameState(single.stateDict(), ref.opt.stateDict(), 'merged checkpoint');
  if (!params.every((p, k) => bytesEqual(p.data, ref.params[k].data))) throw new Error('merged checkpoint: params differ');
  out.merged = 'ok';
  // (2) refused without reshard, unless this world size and partition are the saver's
  const mine = makeParams(sc);
  mine.forEach((p) => p.data.fill(0));
  const opt = new dist.ShardedOptimizer(adamp[sc.name], groupsOf(sc, mine), sc.options, { collective: c, ...a.config });
  try { dist.loadShardedCheckpoint(a.dir, opt, { params: true }); out.refused = false; } catch (e) { out.refused = { code: e.code, message: e.message }; }
  // (3) reshard (or the merged file), then continue
  const from = a.fromMerged ? path.join(a.dir, 'merged.safetensors') : a.dir;
  const info = dist.loadShardedCheckpoint(from, opt, { params: true, reshard: true });
  out.resharded = info.resharded;
  out.epoch = info.metadata.epoch;
  if (!mine.every((p, k) => bytesEqual(p.data, ref.params[k].data))) throw new Error(`rank ${c.rank}: params after loading differ`);
  sameState(opt.gatherStateDict(), ref.opt.stateDict(), `rank ${c.rank} after loading`);
  for (let t = a.steps + 1; t <= a.steps + a.more; t++) {
    setGradients(sc, t, mine); opt.step();
    setGradients(sc, t, ref.params); ref.opt.step();
    if (!mine.every((p, k) => bytesEqual(p.data, ref.params[k].data))) throw new Error(`rank ${c.rank} step ${t} after loading: params differ`);
  }
  sameState(opt.gatherStateDict(), ref.opt.stateDict(), `rank ${c.rank} at the end`);
  out.continued = a.more;
  return out;
}

/** A damaged shard: the rank that reads it throws ERR_ADAMP_BAD_CHECKPOINT, the others ERR_ADAMP_COLLECTIVE; nothing changes. */
function damagedShard(c, a) {
  const sc = makeScenario(a.seed, a.name, {});
  const mine = makeParams(sc);
  const opt = new dist.ShardedOptimizer(adamp[sc.name], groupsOf(sc, mine), sc.options, { collective: c, ...a.config });
  for (let t = 1; t <= 2; t++) { setGradients(sc, t, mine); opt.step(); }
  dist.saveShardedCheckpoint(a.dir, opt, {});
  if (c.rank === 0) {
    const m = JSON.parse(fs.readFileSync(path.join(a.dir, 'optimizer.shards.json'), 'utf8'));
    const f = path.join(a.dir, m.files[c.size - 1].file);
    const b = fs.readFileSync(f);
    b[b.length - 3] ^= 0x10;
    fs.writeFileSync(f, b);
  }
  dist.agree(c, true, { phase: 'barrier' });
  const before = JSON.stringify(opt.shardStateDict().state, (k, v) => (v instanceof Float32Array ? Array.from(v) : v));
  setGradients(sc, 3, mine); opt.step(); // state moves on, the load must not bring it back
  const moved = JSON.stringify(opt.shardStateDict().state, (k, v) => (v instanceof Float32Array ? Array.from(v) : v));
  let err = null;
  try { dist.loadShardedCheckpoint(a.dir, opt, {}); } catch (e) { err = { code: e.code, message: e.message }; }
  const after = JSON.stringify(opt.shardStateDict().state, (k, v) => (v instanceof Float32Array ? Array.from(v) : v));
  return { err, unchanged: after === moved && moved !== before };
}

module.exports = { sharded, dataParallel, faults, disagree, trainAndSave, loadAndContinue, damagedShard };
