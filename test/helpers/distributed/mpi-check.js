#!/usr/bin/env node
/**
 * One MPI rank of test/distributed-mpi.test.ts (and of .ci/run):
 *
 *   mpirun -np 4 node test/helpers/distributed/mpi-check.js '<tasks as JSON>'
 *
 * Runs the tasks (functions of ./flows.js, the same as the in-process tests) with the MPI
 * collective and prints one line `ADAMP-RESULT <json>` with this rank's results. A task that
 * throws ends the list (its error is in the results) unless it says `keepGoing`.
 */
'use strict';
const flows = require('./flows');
const { dist } = require('./scenario');

const tasks = JSON.parse(process.argv[2] ?? '[]');
const collective = dist.mpiCollective({ timeoutMs: Number(process.env.ADAMP_TEST_MPI_TIMEOUT_MS ?? 120000) });
const results = [];
for (const task of tasks) {
  const t0 = Date.now();
  try {
    results.push({ ok: true, value: flows[task.fn](collective, task.args), ms: Date.now() - t0 });
  } catch (e) {
    results.push({ ok: false, error: { message: e.message, code: e.code, stack: e.stack }, ms: Date.now() - t0 });
    if (!task.keepGoing) break;
  }
}
process.stdout.write(`ADAMP-RESULT ${JSON.stringify({ rank: collective.rank, size: collective.size, results })}\n`);
