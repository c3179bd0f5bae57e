/**
 * The CUDA backend's half of test/crash.test.ts: no timing crashes the process while a CUDA
 * stepAsync (the wait for the device, cudaWhenDone) is in flight. Every scenario runs in a child
 * process (test/helpers/cuda-crash-child.js), most of them with worker threads inside it, and the
 * child must exit 0 on no signal, print its `ok` line, and leave stderr free of the marks of a
 * crash (an uncaught C++ exception, a fault, a sanitizer report).
 *
 * Scenarios: a worker terminated or calling process.exit() while its stepAsync is in flight (host
 * params and DeviceTensor params, at several moments, several optimizers at once); nothing
 * disposed, so the contexts' and device tensors' finalizers run in the worker's teardown with
 * waits in flight; cudaWhenDone called directly (a destroyed context among them); dispose()
 * during and after; many workers at once while the main thread steps; process.exit() on the main
 * thread during a step, or the step left to settle on its own.
 *
 * Runs wherever the addon has a usable CUDA device: a GPU (scripts/gpu-validate.sh) or the CPU
 * emulation (scripts/test-cuda-emulated.sh, where ADAMP_EMU_EVENT_WAIT_MS makes each wait last
 * 30 ms, as a busy device would). Elsewhere it says why it is skipped.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { cudaAddonOrReport } from '../lib/backends/cuda/availability';

const CHILD = path.join(__dirname, 'helpers', 'cuda-crash-child.js');
const CRASH = /terminate called|Segmentation|Aborted|core dumped|AddressSanitizer|LeakSanitizer|runtime error:|FATAL ERROR|Fatal error|SIGSEGV|SIGABRT/;

const cuda = cudaAddonOrReport();
const gpu = 'addon' in cuda;
const d = gpu ? describe : describe.skip;
if (!gpu) {
  const reason = `the CUDA backend is not available: ${cuda.report.reason}`;
  // eslint-disable-next-line no-console
  console.warn(`cuda crash tests skipped: ${reason}`);
  // One test runs, so the suite (and the warning above) shows in jest's output with the reason.
  test('the CUDA backend is unavailable here and says why (the crash scenarios need it)', () => {
    expect(cuda.report.available).toBe(false);
    expect(cuda.report.reason).toMatch(/\S{3,}/);
  });
}

function run(scenario: string): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const env = { ...process.env, ADAMP_EMU_EVENT_WAIT_MS: process.env.ADAMP_EMU_EVENT_WAIT_MS ?? '30' };
  const r = spawnSync(process.execPath, [CHILD, scenario], { encoding: 'utf8', timeout: 120_000, env });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

const SCENARIOS: Array<[string, string]> = [
  ['worker-terminate-host', 'worker.terminate() while stepAsync on host params is in flight, at 7 moments, 1 and 3 optimizers'],
  ['worker-terminate-device', 'worker.terminate() while stepAsync on DeviceTensor params is in flight, at 7 moments'],
  ['worker-exit-host', 'process.exit() inside a worker with 1 or 3 host-param steps in flight, at once and a tick later'],
  ['worker-exit-device', 'process.exit() inside a worker with 1 or 3 device-param steps in flight, at once and a tick later'],
  ['worker-finalizers', 'nothing disposed: contexts and device tensors finalized in the worker\'s teardown with steps in flight'],
  ['worker-direct', 'cudaWhenDone called directly in a worker (a destroyed context among them), terminated or exiting'],
  ['worker-dispose', 'dispose() refused during stepAsync and fine after; device tensors disposed mid-step; then terminated'],
  ['worker-storm', '6 workers terminated or exiting at seeded moments while the main thread steps device params'],
  ['main-exit', 'process.exit() on the main thread right after stepAsync() (host and device params)'],
  ['main-exit-soon', 'process.exit() on the main thread while the waits are in flight'],
  ['main-natural-exit', 'a stepAsync() never awaited: the process waits for it, the step applies, exit 0'],
];

d('cuda: no crash, whatever the timing (child processes and worker threads)', () => {
  test.each(SCENARIOS)('%s: %s', (scenario) => {
    const r = run(scenario);
    const where = `${scenario}: status ${r.status}, signal ${r.signal}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    if (r.signal !== null || r.status !== 0 || CRASH.test(r.stderr)) throw new Error(where);
    expect(r.stdout).toContain(`ok ${scenario}`);
  });
});
