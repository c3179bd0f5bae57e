/**
 * Nothing a caller does, and no timing, crashes the process: every scenario runs in a child
 * process (test/helpers/crash-child.js), most of them with worker threads inside it, and the
 * child must exit 0 on no signal, print its `ok` line, and leave stderr free of the marks of a
 * crash (an uncaught C++ exception, a fault, a sanitizer report).
 *
 * Scenarios: a worker terminated or calling process.exit() while its stepAsync is in flight (at
 * several moments, with steps still queued behind libuv's threads, through the engine and through
 * the addon directly, many workers at once while the main thread steps); process.exit() on the
 * main thread during a step, or the step left to finish on its own; several optimizers stepping
 * async at once in one thread and in workers (bit-identical to sync steps), dispose() during and
 * after; buffers transferred during a step and their copies collected under pressure
 * (ArrayBuffer.prototype.transfer too, where Node has it: flagged in Node 20); getters that
 * detach or shrink an array the addon read before them.
 *
 * Native backend only (the js backend has no worker thread to outlive); skipped without the addon.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { loadAddon } from '../lib/binding/load';

const CHILD = path.join(__dirname, 'helpers', 'crash-child.js');
const CRASH = /terminate called|Segmentation|Aborted|core dumped|AddressSanitizer|LeakSanitizer|runtime error:|FATAL ERROR|Fatal error|SIGSEGV|SIGABRT/;

const loaded = loadAddon();
const d = 'addon' in loaded ? describe : describe.skip;
if (!('addon' in loaded)) test.skip('the native addon is not built (npm run build:native)', () => {});

/** The Node flags that give ArrayBuffer.prototype.transfer where it is not on by default. */
function transferFlags(): string[] {
  if (typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function') return [];
  const probe = spawnSync(process.execPath, ['--harmony-rab-gsab-transfer', '-e', 'process.exit(typeof ArrayBuffer.prototype.transfer === "function" ? 0 : 1)']);
  return probe.status === 0 ? ['--harmony-rab-gsab-transfer'] : [];
}

function run(scenario: string, flags: string[] = []): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...flags, CHILD, scenario], { encoding: 'utf8', timeout: 120_000, env: process.env });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const SCENARIOS: Array<[string, string, string[]?]> = [
  ['worker-terminate', 'worker.terminate() while its stepAsync is in flight, at 5 moments'],
  ['worker-exit', 'process.exit() inside a worker with 1 or 3 steps in flight, at once and a tick later'],
  ['worker-terminate-queued', 'a worker terminated with more steps queued than libuv has threads'],
  ['worker-terminate-direct', 'a worker calling addon.stepAsync directly, terminated or exiting mid-step'],
  ['worker-storm', '6 workers terminated or exiting at seeded moments while the main thread steps'],
  ['main-exit', 'process.exit() on the main thread right after stepAsync()'],
  ['main-exit-soon', 'process.exit() on the main thread while 3 steps run'],
  ['main-natural-exit', 'a stepAsync() never awaited: the process waits for it and exits 0'],
  ['concurrent', '4 optimizers stepping async at once, here and in 2 workers: bit-identical to sync; dispose() during and after'],
  ['transfer-pressure', 'buffers transferred during stepAsync, copies collected under pressure; transfer() refused while in flight', ['--expose-gc']],
  ['getter-detach', 'direct addon calls whose getters detach, transfer or shrink arrays read before them', ['--expose-gc']],
];

d('no crash, whatever the timing (child processes and worker threads)', () => {
  const extra = transferFlags();
  test.each(SCENARIOS)('%s: %s', (scenario, _what, flags = []) => {
    const r = run(scenario, [...flags, ...(scenario === 'transfer-pressure' ? extra : [])]);
    const where = `${scenario}: status ${r.status}, signal ${r.signal}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    if (r.signal !== null || r.status !== 0 || CRASH.test(r.stderr)) throw new Error(where);
    expect(r.stdout).toContain(`ok ${scenario}`);
  });
});
