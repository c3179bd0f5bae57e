/**
 * The child process (and its worker threads) of test/cuda-crash.test.ts: one scenario per run,
 * named by argv[2], on the CUDA backend (a GPU, or the CPU emulation that
 * scripts/test-cuda-emulated.sh builds; ADAMP_ADDON_PATH is inherited). Each scenario ends the way
 * it says (a worker terminated, process.exit, the process left to end...) and prints
 * `ok <scenario>` on success; the test checks the exit status, the signal and stderr.
 *
 * On the emulation, ADAMP_EMU_EVENT_WAIT_MS (set by the test) makes the wait for the device's
 * queued work (cudaWhenDone, which stepAsync awaits) last that long, as a busy GPU would.
 * Plain JavaScript on the built package (dist/, built by the tests' global setup).
 */
'use strict';
const path = require('node:path');
const { parentPort } = require('node:worker_threads');
const common = require('./child-common.js');

const { fail, expectCode, main } = common;
const runWorker = (role, data, onMessage) => common.runWorker(__filename, role, data, onMessage);

const root = path.join(__dirname, '..', '..');
const adamp = require(path.join(root, 'dist', 'lib', 'index.js'));
const { loadAddon } = require(path.join(root, 'dist', 'lib', 'binding', 'load.js'));

const KINDS = ['AdamP', 'SGDP'];
const OPTIONS = { AdamP: { lr: 1e-3, weightDecay: 0.01 }, SGDP: { lr: 0.1, momentum: 0.9 } };

/** Deterministic host data: element i of param k (64 x 48 by default). */
const param = (k, rows = 64, cols = 48) => common.param(k, rows, cols);

/** The same param with its data and gradient in device memory (DeviceTensor). */
function deviceParam(k) {
  const p = param(k);
  return { name: p.name, data: adamp.DeviceTensor.fromHost(p.data, p.shape), grad: adamp.DeviceTensor.fromHost(p.grad, p.shape) };
}

/** A CUDA-backed optimizer of kind KINDS[k % 2] over two params, on the host or the device. */
function optimizer(k, device) {
  const kind = KINDS[k % KINDS.length];
  const params = [0, 1].map((i) => (device ? deviceParam(2 * k + i) : param(2 * k + i)));
  return { params, opt: new adamp[kind](params, OPTIONS[kind], { backend: 'cuda' }) };
}

async function expectReject(promise, code, what) {
  let err = null;
  await promise.catch((e) => { err = e; });
  if (err === null) fail(`${what}: did not reject`);
  if (err.code !== code) fail(`${what}: expected ${code}, got ${err.name} ${err.code}: ${err.message}`);
}

/** Resolves after `ms` (a moment of the worker's own timeline). */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------------
// Worker roles

const roles = {
  /**
   * `count` optimizers (host or device params), a step each, then stepAsync on all of them; says
   * 'go' and then maybe exits from inside. `leak`: nothing is disposed (finalizers at teardown).
   */
  async inflight({ count = 1, device = false, exit = false, leak = false }) {
    const set = [];
    for (let k = 0; k < count; k++) set.push(optimizer(k, device));
    for (const { opt } of set) opt.step(); // contexts and uploads exist: the async step queues only the gradient
    const pending = set.map(({ opt }) => opt.stepAsync());
    parentPort.postMessage('go');
    if (exit === 'now') process.exit(0);
    if (exit === 'soon') setTimeout(() => process.exit(0), 1);
    await Promise.all(pending);
    if (!leak) {
      for (const { params, opt } of set) {
        opt.dispose();
        if (device) for (const p of params) { p.data.dispose(); p.grad.dispose(); }
      }
    }
    parentPort.postMessage('done');
  },

  /** The addon's cudaWhenDone called directly (no engine, no facade): several waits in flight, then exit or be terminated. */
  async direct({ exit = false }) {
    const r = loadAddon();
    if (!('addon' in r)) fail('no addon in the worker');
    const a = r.addon;
    const pending = [];
    for (let k = 0; k < 3; k++) {
      const h = a.cudaCreate('adamp');
      const id = a.cudaAddTensor(h, 64, 1, 8, 8, true);
      a.cudaUpload(h, id, 0, new Float32Array(64).fill(0.5));
      a.cudaUpload(h, id, 1, new Float32Array(64).fill(1));
      a.cudaStep(h, Int32Array.of(id), Float64Array.of(1e-3, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 0));
      pending.push(a.cudaWhenDone(h), a.cudaWhenDone(h));
      if (k === 1) a.cudaDestroy(h); // a destroyed context with waits in flight
    }
    parentPort.postMessage('go');
    if (exit === 'now') process.exit(0);
    await Promise.all(pending);
    parentPort.postMessage('done');
  },

  /** dispose() during stepAsync is refused, after it works; then a step in flight again when the worker goes. */
  async dispose({ device = false }) {
    const { params, opt } = optimizer(0, device);
    const pending = opt.stepAsync();
    expectCode(() => opt.dispose(), 'ERR_ADAMP_STEP_IN_FLIGHT', 'dispose during stepAsync');
    await pending;
    opt.dispose();
    opt.dispose();
    await expectReject(opt.stepAsync(), 'ERR_ADAMP_DISPOSED', 'stepAsync after dispose');
    if (device) for (const p of params) { p.data.dispose(); p.grad.dispose(); }
    // A second optimizer, its device tensors disposed while its step is in flight (the device keeps the memory until the step is done).
    const next = optimizer(1, device);
    const inflight = next.opt.stepAsync();
    if (device) for (const p of next.params) p.grad.dispose();
    parentPort.postMessage('go');
    await inflight;
    parentPort.postMessage('done');
  },
};

// ------------------------------------------------------------------------------------------------
// Scenarios (main thread of the child process)

/** worker.terminate() at several moments after the worker said 'go' (-1: at once, in the message handler). */
async function terminateAt(delays, data) {
  for (const delay of delays) {
    const { code } = await runWorker('inflight', data, (w, m) => {
      if (m !== 'go') return;
      if (delay < 0) w.terminate();
      else setTimeout(() => w.terminate(), delay);
    });
    if (code !== 1 && code !== 0) fail(`terminated worker exited ${code}`);
  }
}

/** process.exit() inside the worker, at once and a tick later, with 1 and 3 optimizers stepping. */
async function exitInside(data) {
  for (const exit of ['now', 'soon']) {
    for (const count of [1, 3]) {
      const { code } = await runWorker('inflight', { ...data, count, exit });
      if (code !== 0) fail(`worker exited ${code}`);
    }
  }
}

const DELAYS = [-1, 0, 2, 20, 60];

const scenarios = {
  async 'worker-terminate-host'() {
    await terminateAt(DELAYS, { count: 1 });
    await terminateAt([-1, 5], { count: 3 });
    console.log('ok worker-terminate-host');
  },

  async 'worker-terminate-device'() {
    await terminateAt(DELAYS, { count: 1, device: true });
    await terminateAt([-1, 5], { count: 3, device: true });
    console.log('ok worker-terminate-device');
  },

  async 'worker-exit-host'() {
    await exitInside({});
    console.log('ok worker-exit-host');
  },

  async 'worker-exit-device'() {
    await exitInside({ device: true });
    console.log('ok worker-exit-device');
  },

  /** Nothing disposed: the contexts' and device tensors' finalizers run in the worker's teardown, steps still in flight. */
  async 'worker-finalizers'() {
    for (const device of [false, true]) {
      await terminateAt([-1, 10], { count: 2, device, leak: true });
      const { code } = await runWorker('inflight', { count: 2, device, leak: true, exit: 'now' });
      if (code !== 0) fail(`worker exited ${code}`);
      const done = await runWorker('inflight', { count: 2, device, leak: true });
      if (done.code !== 0 || !done.messages.includes('done')) fail(`a worker left to finish exited ${done.code}`);
    }
    console.log('ok worker-finalizers');
  },

  /** cudaWhenDone called directly in a worker (a destroyed context among them), terminated or exiting. */
  async 'worker-direct'() {
    for (const exit of [false, 'now']) {
      const { code } = await runWorker('direct', { exit }, (w, m) => { if (m === 'go' && !exit) w.terminate(); });
      if (code !== 1 && code !== 0) fail(`worker exited ${code}`);
    }
    const { code, messages } = await runWorker('direct', {});
    if (code !== 0 || !messages.includes('done')) fail(`a worker left to finish exited ${code}`);
    console.log('ok worker-direct');
  },

  /** dispose() during and after stepAsync (host and device params); then the worker terminated or left to finish. */
  async 'worker-dispose'() {
    for (const device of [false, true]) {
      const t = await runWorker('dispose', { device }, (w, m) => { if (m === 'go') w.terminate(); });
      if (t.code !== 1 && t.code !== 0) fail(`terminated worker exited ${t.code}`);
      const f = await runWorker('dispose', { device });
      if (f.code !== 0 || !f.messages.includes('done')) fail(`worker exited ${f.code}`);
    }
    console.log('ok worker-dispose');
  },

  /** 6 workers terminated or exiting at seeded moments while the main thread steps on the device too. */
  async 'worker-storm'() {
    let s = 4242;
    const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const main = optimizer(9, true);
    const mainSteps = (async () => { for (let t = 0; t < 3; t++) await main.opt.stepAsync(); })();
    const runs = [];
    for (let i = 0; i < 6; i++) {
      const delay = Math.floor(rand() * 40);
      const exit = rand() < 0.3 ? 'soon' : false;
      runs.push(runWorker('inflight', { count: 1 + (i % 2), device: i % 3 === 0, exit }, (w, m) => {
        if (m === 'go' && !exit) setTimeout(() => w.terminate(), delay);
      }));
    }
    const ends = await Promise.all(runs);
    await mainSteps;
    if (ends.some((e) => e.code !== 0 && e.code !== 1)) fail(`exit codes ${ends.map((e) => e.code)}`);
    main.opt.dispose();
    console.log('ok worker-storm');
  },

  /** process.exit() on the main thread right after stepAsync(), host and device params. */
  'main-exit'() {
    for (const device of [false, true]) void optimizer(device ? 1 : 0, device).opt.stepAsync();
    console.log('ok main-exit');
    process.exit(0);
  },

  /** process.exit() a moment later, waits still in flight. */
  async 'main-exit-soon'() {
    for (const device of [false, true]) void optimizer(device ? 1 : 0, device).opt.stepAsync();
    await sleep(5);
    console.log('ok main-exit-soon');
    process.exit(0);
  },

  /** stepAsync never awaited: the process stays until it settles, with the step applied, and exits 0. */
  'main-natural-exit'() {
    const { params, opt } = optimizer(0, false);
    const before = params[0].data[0];
    void opt.stepAsync().then(() => {
      opt.synchronize();
      if (params[0].data[0] === before) fail('the step did not apply');
      console.log('ok main-natural-exit');
    });
  },
};

// ------------------------------------------------------------------------------------------------

main(scenarios, roles);
