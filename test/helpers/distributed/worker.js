/**
 * One rank of an in-process group (test/distributed.test.ts): runs its tasks (functions of
 * ./flows.js) with the group's collective and posts their results. A task that throws ends the
 * rank's list (its error is posted) unless `keepGoing`.
 */
'use strict';
const { parentPort, workerData } = require('worker_threads');
const flows = require('./flows');
const { dist } = require('./scenario');

const { handle, rank, tasks } = workerData;
const collective = dist.InProcessGroup.join(handle, rank);
const out = [];
for (const task of tasks) {
  const t0 = Date.now();
  try {
    out.push({ ok: true, value: flows[task.fn](collective, task.args), ms: Date.now() - t0 });
  } catch (e) {
    out.push({ ok: false, error: { message: e.message, code: e.code, stack: e.stack }, ms: Date.now() - t0 });
    if (!task.keepGoing) break;
  }
}
parentPort.postMessage(out);
