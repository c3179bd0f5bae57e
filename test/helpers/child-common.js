/**
 * What the crash children (crash-child.js, cuda-crash-child.js) share: their deterministic params,
 * how they fail and check an error's code, how they run one of their own worker roles, and the
 * entry point that runs argv[2]'s scenario on the main thread or workerData's role in a worker.
 * Plain JavaScript, as the children are.
 */
'use strict';
const { Worker, isMainThread, workerData } = require('node:worker_threads');

/** Deterministic host data: element i of param k, rows x cols. */
function param(k, rows, cols) {
  const n = rows * cols;
  const data = new Float32Array(n), grad = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    data[i] = Math.sin(i * 0.37 + k);
    grad[i] = Math.cos(i * 0.11 + 2 * k) * 0.1;
  }
  return { name: `p${k}`, data, grad, shape: [rows, cols] };
}

/** Ends the child with status 3 and the reason on stderr (the test reads both). */
function fail(msg) {
  console.error(`FAIL: ${msg}`);
  process.exit(3);
}

/** Runs fn, which must throw an error with `code`; returns that error. */
function expectCode(fn, code, what) {
  try {
    fn();
  } catch (e) {
    if (e.code !== code) fail(`${what}: expected ${code}, got ${e.name} ${e.code}: ${e.message}`);
    return e;
  }
  fail(`${what}: did not throw`);
}

/** Runs one worker of `role` (a worker of the child file `file`) and returns what it posted and how it ended. */
function runWorker(file, role, data = {}, onMessage) {
  return new Promise((resolve, reject) => {
    const w = new Worker(file, { workerData: { role, ...data } });
    const messages = [];
    w.on('message', (m) => {
      messages.push(m);
      if (onMessage) onMessage(w, m);
    });
    w.on('error', reject);
    w.on('exit', (code) => resolve({ code, messages }));
  });
}

/** The child's entry: argv[2]'s scenario on the main thread, workerData.role's role in a worker; any throw fails. */
function main(scenarios, roles) {
  if (isMainThread) {
    const name = process.argv[2];
    const run = scenarios[name];
    if (!run) fail(`unknown scenario '${name}'; one of ${Object.keys(scenarios).join(', ')}`);
    Promise.resolve(run()).catch((e) => fail(`${name}: ${e && e.stack ? e.stack : String(e)}`));
  } else {
    const { role, ...data } = workerData;
    roles[role](data).catch((e) => fail(`worker ${role}: ${e && e.stack ? e.stack : String(e)}`));
  }
}

module.exports = { param, fail, expectCode, runWorker, main };
