/**
 * The child process (and its worker threads) of test/crash.test.ts: one scenario per run, named
 * by argv[2]. Each ends the way the scenario says (exit 0, process.exit, a terminated worker...)
 * and prints `ok <scenario> ...` on success; the test checks the exit status, the signal and
 * stderr. Plain JavaScript on the built package (dist/, built by the tests' global setup), so
 * nothing but Node runs here; ADAMP_ADDON_PATH and LD_PRELOAD (the ASan leg) are inherited.
 */
'use strict';
const path = require('node:path');
const { parentPort } = require('node:worker_threads');
const common = require('./child-common.js');

const { param, fail, expectCode, main } = common;
const runWorker = (role, data, onMessage) => common.runWorker(__filename, role, data, onMessage);

const root = path.join(__dirname, '..', '..');
const adamp = require(path.join(root, 'dist', 'lib', 'index.js'));
const { loadAddon } = require(path.join(root, 'dist', 'lib', 'binding', 'load.js'));

const KINDS = ['AdamP', 'SGDP', 'AdamW', 'SGD'];
const OPTIONS = { AdamP: { lr: 1e-3, weightDecay: 0.01 }, SGDP: { lr: 0.1, momentum: 0.9 }, AdamW: { lr: 1e-3 }, SGD: { lr: 0.1, momentum: 0.9, nesterov: true } };

function optimizer(kind, params, threads = 1) {
  return new adamp[kind](params, OPTIONS[kind], { backend: 'native', threads });
}

/** A step big enough to be in flight for a while (2M elements: tens of ms). */
function bigOptimizer(k = 0, kind = 'AdamP') {
  const p = param(k, 1000, 2000);
  return { p, opt: optimizer(kind, [p]) };
}

function bytes(a) {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

// ------------------------------------------------------------------------------------------------
// Worker roles

const roles = {
  /** Starts async steps (optionally several optimizers), says 'go', then maybe exits from inside. */
  async inflight({ count = 1, exit = false, direct = false }) {
    const pending = [];
    if (direct) {
      // The addon without the engine: nothing marks the buffers, nothing wraps the errors.
      const r = loadAddon();
      const n = 2_000_000;
      for (let k = 0; k < count; k++) {
        const slot = { p: new Float32Array(n).fill(0.5), g: new Float32Array(n).fill(1), state: [new Float32Array(n), new Float32Array(n)], outer: 1, channels: 1000, inner: n / 1000, eligible: true, step: 1 };
        const hyper = Float64Array.of(1e-3, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 0);
        pending.push(r.addon.stepAsync([{ kind: 'adamp', slots: [slot], hyper, info: new Float64Array(8) }], { threads: 1 }));
      }
    } else {
      for (let k = 0; k < count; k++) pending.push(bigOptimizer(k, KINDS[k % 4]).opt.stepAsync());
    }
    parentPort.postMessage('go');
    if (exit === 'now') process.exit(0);
    if (exit === 'soon') setTimeout(() => process.exit(0), 1);
    await Promise.all(pending);
    parentPort.postMessage('done');
  },

  /** Steps several optimizers async at once, `steps` times; posts every param's bytes. */
  async concurrent({ steps, seed }) {
    const { results } = await concurrentSteps(steps, seed);
    parentPort.postMessage(results);
  },
};

/** Four optimizers (one per kind, two params each) stepping async at once; returns their params' bytes and a sync reference. */
async function concurrentSteps(steps, seed) {
  const make = () => KINDS.map((kind, k) => {
    const ps = [param(seed + 2 * k, 300, 200), param(seed + 2 * k + 1, 64, 3)];
    return { ps, opt: optimizer(kind, ps, 2) };
  });
  const a = make(), b = make();
  for (let t = 0; t < steps; t++) {
    await Promise.all(a.map(({ opt }) => opt.stepAsync()));
    for (const { opt } of b) opt.step();
  }
  const flat = (set) => set.map(({ ps }) => ps.map((p) => Array.from(bytes(p.data)).join(',')).join(';'));
  return { results: flat(a), reference: flat(b), a };
}

// ------------------------------------------------------------------------------------------------
// Scenarios (main thread of the child process)

const scenarios = {
  /** worker.terminate() while the worker's stepAsync is in flight, at several moments. */
  async 'worker-terminate'() {
    for (const delay of [-1, 0, 2, 20, 60]) {
      const { code } = await runWorker('inflight', { count: 1 }, (w, m) => {
        if (m !== 'go') return;
        if (delay < 0) w.terminate();
        else setTimeout(() => w.terminate(), delay);
      });
      if (code !== 1 && code !== 0) fail(`terminated worker exited ${code}`);
    }
    console.log('ok worker-terminate');
  },

  /** process.exit() inside the worker, at once and a tick later, with one and with several steps in flight. */
  async 'worker-exit'() {
    for (const exit of ['now', 'soon']) {
      for (const count of [1, 3]) {
        const { code } = await runWorker('inflight', { count, exit });
        if (code !== 0) fail(`worker exited ${code}`);
      }
    }
    console.log('ok worker-exit');
  },

  /** More steps queued than libuv has threads (4): some have not started when the worker goes. */
  async 'worker-terminate-queued'() {
    const { code } = await runWorker('inflight', { count: 6 }, (w, m) => { if (m === 'go') w.terminate(); });
    if (code !== 1 && code !== 0) fail(`worker exited ${code}`);
    console.log('ok worker-terminate-queued');
  },

  /** The addon called directly (no engine) in a worker terminated mid-step. */
  async 'worker-terminate-direct'() {
    for (const exit of [false, 'now']) {
      const { code } = await runWorker('inflight', { count: 2, direct: true, exit }, (w, m) => { if (m === 'go' && !exit) w.terminate(); });
      if (code !== 1 && code !== 0) fail(`worker exited ${code}`);
    }
    console.log('ok worker-terminate-direct');
  },

  /** Many workers stepping, terminated at seeded random moments, while the main thread steps too. */
  async 'worker-storm'() {
    let s = 12345;
    const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const main = bigOptimizer(9, 'SGDP');
    const mainSteps = (async () => { for (let t = 0; t < 3; t++) await main.opt.stepAsync(); })();
    const runs = [];
    for (let i = 0; i < 6; i++) {
      const delay = Math.floor(rand() * 40);
      const exit = rand() < 0.3 ? 'soon' : false;
      runs.push(runWorker('inflight', { count: 1 + (i % 2), exit }, (w, m) => { if (m === 'go' && !exit) setTimeout(() => w.terminate(), delay); }));
    }
    const ends = await Promise.all(runs);
    await mainSteps;
    if (ends.some((e) => e.code !== 0 && e.code !== 1)) fail(`exit codes ${ends.map((e) => e.code)}`);
    console.log('ok worker-storm');
  },

  /** stepAsync, then process.exit() on the main thread while it runs. */
  'main-exit'() {
    const { opt } = bigOptimizer();
    void opt.stepAsync();
    console.log('ok main-exit');
    process.exit(0);
  },

  /** stepAsync, then process.exit() a moment later (the step is running on the worker thread). */
  'main-exit-soon'() {
    for (let k = 0; k < 3; k++) void bigOptimizer(k).opt.stepAsync();
    setTimeout(() => { console.log('ok main-exit-soon'); process.exit(0); }, 5);
  },

  /** stepAsync never awaited: the process stays until it is done, then exits 0 with the step applied. */
  'main-natural-exit'() {
    const { p, opt } = bigOptimizer();
    const before = p.data[0];
    void opt.stepAsync().then(() => {
      if (p.data[0] === before) fail('the step did not apply');
      console.log('ok main-natural-exit');
    });
  },

  /** Several optimizers stepping async at once in this thread and in two workers: bit-identical to sync steps; dispose during and after. */
  async concurrent() {
    const seed = 3;
    const here = concurrentSteps(3, seed);
    const workers = [runWorker('concurrent', { steps: 3, seed }), runWorker('concurrent', { steps: 3, seed })];
    const { results, reference, a } = await here;
    if (results.join('|') !== reference.join('|')) fail('async steps differ from sync steps');
    for (const w of await Promise.all(workers)) {
      if (w.code !== 0) fail(`worker exited ${w.code}`);
      if (w.messages[0].join('|') !== reference.join('|')) fail('a worker\'s async steps differ from sync steps');
    }
    // dispose while in flight: refused, the step completes; after: disposed for good
    const { opt } = a[0];
    const pending = opt.stepAsync();
    expectCode(() => opt.dispose(), 'ERR_ADAMP_STEP_IN_FLIGHT', 'dispose during stepAsync');
    expectCode(() => opt.step(), 'ERR_ADAMP_STEP_IN_FLIGHT', 'step during stepAsync');
    expectCode(() => opt.stateDict(), 'ERR_ADAMP_STEP_IN_FLIGHT', 'stateDict during stepAsync');
    await pending;
    opt.dispose();
    opt.dispose();
    let e = null;
    await opt.stepAsync().catch((x) => { e = x; });
    if (!e || e.code !== 'ERR_ADAMP_DISPOSED') fail(`stepAsync after dispose: ${e && e.code}`);
    console.log('ok concurrent');
  },

  /**
   * Params and grads transferred (postMessage, structuredClone, ArrayBuffer.prototype.transfer
   * where it exists) during stepAsync, their new owners dropped and collected under allocation
   * pressure: the step keeps its memory and gives the bits of an undisturbed step.
   */
  async 'transfer-pressure'() {
    if (typeof global.gc !== 'function') fail('run with --expose-gc');
    const { port1, port2 } = new MessageChannel();
    port2.on('message', () => {});
    for (let round = 0; round < 3; round++) {
      const a = bigOptimizer(round), b = bigOptimizer(round);
      const pending = a.opt.stepAsync();
      const copies = [];
      copies.push(structuredClone(a.p.grad.buffer, { transfer: [a.p.grad.buffer] }));
      port1.postMessage(a.p.data.buffer, [a.p.data.buffer]);
      if (a.p.data.byteLength === 0 || a.p.grad.byteLength === 0) fail('a buffer of the step was detached');
      if (typeof ArrayBuffer.prototype.transfer === 'function') {
        expectCode(() => a.p.data.buffer.transfer(4), 'ERR_ADAMP_STEP_IN_FLIGHT', 'transfer() during stepAsync');
        expectCode(() => a.p.grad.buffer.transferToFixedLength(), 'ERR_ADAMP_STEP_IN_FLIGHT', 'transferToFixedLength() during stepAsync');
      }
      copies.length = 0;
      for (let i = 0; i < 30; i++) new Float32Array(1 << 20);
      global.gc();
      await pending;
      b.opt.step();
      if (Buffer.compare(bytes(a.p.data), bytes(b.p.data)) !== 0) fail('the step under transfer differs');
      if (typeof ArrayBuffer.prototype.transfer === 'function') {
        // settled: the built-in again, for these buffers too
        const moved = a.p.grad.buffer.transfer();
        if (a.p.grad.byteLength !== 0 || moved.byteLength !== 2_000_000 * 4) fail('transfer() after the step did not transfer');
      }
    }
    port1.close();
    console.log(`ok transfer-pressure (transfer(): ${typeof ArrayBuffer.prototype.transfer === 'function' ? 'guarded' : 'absent'})`);
  },

  /**
   * The addon called directly with getters that detach, transfer or shrink arrays read before them:
   * refused (the arrays are bound after every getter ran), never a write into freed memory.
   */
  'getter-detach'() {
    const r = loadAddon();
    if (!('addon' in r)) fail('no addon');
    const { addon } = r;
    const hyper = Float64Array.of(1e-3, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 0);
    const n = 1 << 20;
    let refused = 0;
    for (let round = 0; round < 20; round++) {
      const p = new Float32Array(n).fill(1), g = new Float32Array(n).fill(1);
      const slot = {
        p, g, outer: 1, channels: 1024, inner: n / 1024, eligible: true, step: 1,
        get state() {
          structuredClone(p.buffer, { transfer: [p.buffer] }); // p detached after it was read
          for (let i = 0; i < 8; i++) new Float32Array(1 << 20);
          if (global.gc) global.gc();
          return [new Float32Array(n), new Float32Array(n)];
        },
      };
      try {
        if (round % 2 === 0) addon.step('adamp', [slot], hyper, new Float64Array(8), { threads: 1 });
        else void addon.stepAsync([{ kind: 'adamp', slots: [slot], hyper, info: new Float64Array(8) }], { threads: 1 });
        fail('a detached p was accepted');
      } catch (e) {
        if (e.code !== 'ERR_ADAMP_INVALID_ARGUMENT' || !/detached/.test(e.message)) fail(`unexpected ${e.name} ${e.code}: ${e.message}`);
        refused++;
      }
    }
    // A resizable buffer shrunk by a getter after it was read: its new length is the one checked.
    const rab = new ArrayBuffer(4 * 64, { maxByteLength: 4 * 128 });
    const rp = new Float32Array(rab);
    const shrinking = { p: rp, g: new Float32Array(64), outer: 1, channels: 8, inner: 8, eligible: true, step: 1, get state() { rab.resize(16); return [new Float32Array(64), new Float32Array(64)]; } };
    try {
      addon.step('adamp', [shrinking], hyper, new Float64Array(8));
      fail('a shrunk p was accepted');
    } catch (e) {
      if (e.code !== 'ERR_ADAMP_INVALID_ARGUMENT') fail(`unexpected ${e.name}: ${e.message}`);
      refused++;
    }
    // stepAsync refuses resizable buffers outright (a shrink during the step would fault).
    const rab2 = new ArrayBuffer(4 * 64, { maxByteLength: 4 * 128 });
    try {
      void addon.stepAsync([{ kind: 'adamp', slots: [{ p: new Float32Array(rab2), g: new Float32Array(64), state: [new Float32Array(64), new Float32Array(64)], outer: 1, channels: 8, inner: 8, eligible: true, step: 1 }], hyper, info: new Float64Array(8) }]);
      fail('a resizable p was accepted by stepAsync');
    } catch (e) {
      if (e.code !== 'ERR_ADAMP_INVALID_ARGUMENT' || !/resizable/.test(e.message)) fail(`unexpected ${e.name}: ${e.message}`);
      refused++;
    }
    console.log(`ok getter-detach (${refused} refused)`);
  },
};

main(scenarios, roles);
