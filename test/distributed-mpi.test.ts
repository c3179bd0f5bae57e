/**
 * The distributed layer over MPI (docs/distributed.md): `mpirun -np 2` and `-np 4`
 * (oversubscribed) running test/helpers/distributed/mpi-check.js, which runs the same flows as the
 * in-process tests with the MPI collective: sharded AdamP, SGDP, AdamW and SGD bit-identical to
 * one process over many steps and random shapes, both partitionings, js and native; data-parallel
 * gradients; checkpoints saved by 4 ranks, merged, resharded onto 2; a killed rank and a stalled
 * rank producing a clear error on the others.
 *
 * Needs `mpirun` and an MPI library (Debian: `apt-get install openmpi-bin libopenmpi-dev`); skipped
 * with the reason when they are missing, unless ADAMP_TEST_MPI=1 (CI), which makes them required.
 * As root, Open MPI needs OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1: set here.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { mpiAvailable } from '../lib/distributed';
import { availableBackends } from './helpers/backends';

const SCRIPT = path.join(__dirname, 'helpers/distributed/mpi-check.js');
const BACKENDS = availableBackends().filter((b) => b === 'js' || b === 'native');
const OPTIMIZERS = ['AdamP', 'SGDP', 'AdamW', 'SGD'];

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

const mpirun = which('mpirun');
const report = mpiAvailable();
const why = mpirun === null ? 'mpirun is not on the PATH' : !report.available ? report.reason : null;
const required = process.env.ADAMP_TEST_MPI === '1';
if (why !== null) console.log(`[adamp tests] MPI tests ${required ? 'REQUIRED but cannot run' : 'skipped'}: ${why}`);

interface RankOut { rank: number; size: number; results: Array<{ ok: boolean; value?: any; error?: { message: string; code?: string; stack?: string }; ms: number }> } // eslint-disable-line @typescript-eslint/no-explicit-any

/** Runs the tasks on `np` MPI ranks; returns each rank's results (ranks that printed none are absent) and the run. */
function runMpi(np: number, tasks: unknown[], options: { extra?: string[]; timeoutMs?: number } = {}): { ranks: Map<number, RankOut>; status: number | null; output: string; seconds: number } {
  const env = { ...process.env };
  if (typeof process.getuid === 'function' && process.getuid() === 0) {
    env.OMPI_ALLOW_RUN_AS_ROOT = '1';
    env.OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = '1';
  }
  const t0 = Date.now();
  const r = spawnSync(mpirun!, ['--oversubscribe', ...(options.extra ?? []), '-np', String(np), process.execPath, SCRIPT, JSON.stringify(tasks)],
    { env, encoding: 'utf8', timeout: options.timeoutMs ?? 240_000, maxBuffer: 64 << 20 });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  const ranks = new Map<number, RankOut>();
  for (const line of (r.stdout ?? '').split('\n')) {
    if (!line.startsWith('ADAMP-RESULT ')) continue;
    const o = JSON.parse(line.slice('ADAMP-RESULT '.length)) as RankOut;
    ranks.set(o.rank, o);
  }
  return { ranks, status: r.status, output, seconds: (Date.now() - t0) / 1000 };
}

/** Every rank printed, every task succeeded; returns results by rank. */
function allOk(run: ReturnType<typeof runMpi>, np: number): RankOut[] {
  const out: RankOut[] = [];
  for (let r = 0; r < np; r++) {
    const o = run.ranks.get(r);
    if (!o) throw new Error(`rank ${r} printed no result (mpirun status ${run.status}):\n${run.output.slice(-4000)}`);
    const bad = o.results.find((x) => !x.ok);
    if (bad) throw new Error(`rank ${r}: ${bad.error!.message}\n${bad.error!.stack ?? ''}`);
    out.push(o);
  }
  return out;
}

function shardedTasks(np: number, steps: number): unknown[] {
  const tasks: unknown[] = [];
  BACKENDS.forEach((backend, b) => OPTIMIZERS.forEach((name, k) => (['slices', 'tensors'] as const).forEach((partition, m) => {
    tasks.push({ fn: 'sharded', args: { seed: 7000 + 100 * np + 20 * b + 4 * k + m, name, steps, big: (k + m + np) % 3 === 0, config: { partition, backend, diagnostics: (k + m) % 2 ? 'full' : 'decisions' } } });
  })));
  return tasks;
}

const maybe = why === null || required ? describe : describe.skip;
/** MPICH's launcher, when MPICH is installed beside Open MPI (Debian: mpich libmpich12): the MPICH ABI of the addon. */
const mpich = which('mpiexec.mpich');

maybe('MPI (mpirun --oversubscribe)', () => {
  let dir: string;
  beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-mpi-')); });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('mpi is available', () => {
    expect(why).toBeNull();
  });

  test('-np 2: every optimizer, both partitionings, js and native: bit-identical to one process over 8 steps; data parallel; disagreement', () => {
    const tasks = [
      ...shardedTasks(2, 8),
      { fn: 'dataParallel', args: { seed: 7301, name: 'AdamP', steps: 5, big: true, config: { partition: 'slices' } } },
      { fn: 'dataParallel', args: { seed: 7302, name: 'SGD', steps: 5, order: 'any', config: { partition: 'tensors' } } },
      { fn: 'disagree', args: { seed: 7303, name: 'SGDP' } },
    ];
    const run = runMpi(2, tasks);
    const out = allOk(run, 2);
    for (const o of out) expect(o.results.filter((x) => x.value?.compared === 8)).toHaveLength(BACKENDS.length * 8);
    console.log(`[adamp tests] mpirun -np 2: ${tasks.length} tasks in ${run.seconds.toFixed(1)} s`);
  });

  test('-np 4: every optimizer, both partitionings, js and native: bit-identical over 8 steps; data parallel; a sharded checkpoint saved and merged', () => {
    const tasks = [
      ...shardedTasks(4, 8),
      { fn: 'dataParallel', args: { seed: 7401, name: 'SGDP', steps: 5, config: { partition: 'slices' } } },
      { fn: 'dataParallel', args: { seed: 7403, name: 'AdamP', steps: 5, big: true, reduceScatter: true, bucketBytes: 1 << 16, config: { partition: 'slices' } } },
      { fn: 'dataParallel', args: { seed: 7404, name: 'SGD', steps: 4, reduceScatter: true, order: 'any', config: { partition: 'tensors' } } },
      ...BACKENDS.map((backend) => ({ fn: 'trainAndSave', args: { seed: 7402, name: 'AdamP', big: true, steps: 4, dir: path.join(dir, backend), merge: true, config: { partition: 'slices', backend } } })),
    ];
    const run = runMpi(4, tasks);
    const out = allOk(run, 4);
    for (const o of out) expect(o.results.filter((x) => x.value?.compared === 8)).toHaveLength(BACKENDS.length * 8);
    for (const backend of BACKENDS) expect(fs.existsSync(path.join(dir, backend, 'optimizer.shards.json'))).toBe(true);
    console.log(`[adamp tests] mpirun -np 4: ${tasks.length} tasks in ${run.seconds.toFixed(1)} s`);
  });

  test('-np 2: the 4-rank checkpoint is refused, then resharded (and loaded from the merged file) and training continues bit-identical', () => {
    const tasks = BACKENDS.flatMap((backend) => [
      { fn: 'loadAndContinue', args: { seed: 7402, name: 'AdamP', big: true, steps: 4, more: 3, dir: path.join(dir, backend), backend, config: { partition: 'tensors', backend } } },
      { fn: 'loadAndContinue', args: { seed: 7402, name: 'AdamP', big: true, steps: 4, more: 2, dir: path.join(dir, backend), backend, fromMerged: true, config: { partition: 'slices', backend } } },
    ]);
    const out = allOk(runMpi(2, tasks), 2);
    for (const o of out) {
      const first = o.results[0].value;
      expect(first.refused.message).toMatch(/saved by 4 ranks.*this optimizer runs on 2 ranks.*reshard: true/);
      expect(first.resharded).toBe(true);
      expect(first.merged).toBe('ok');
    }
  });

  test('mpirun -np 2 adamp demo --data-parallel: the weights match the single-process run', () => {
    const env = { ...process.env };
    if (typeof process.getuid === 'function' && process.getuid() === 0) Object.assign(env, { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' });
    const r = spawnSync(mpirun!, ['--oversubscribe', '-np', '2', process.execPath, path.join(__dirname, '../dist/cli/main.js'), 'demo', '--data-parallel', '--steps', '60'],
      { env, encoding: 'utf8', timeout: 120_000 });
    expect(r.stdout).toMatch(/2 ranks over MPI/);
    expect(r.stdout).toMatch(/weights: bit-identical \(0 of 8160 elements differ\)/);
    expect(r.status).toBe(0);
  });

  test('-np 4: a rank killed mid-step (SIGKILL, mpirun --enable-recovery): the others throw ERR_ADAMP_COLLECTIVE_TIMEOUT naming it and the step, and keep the last committed step', () => {
    const task = { fn: 'faults', args: { seed: 7501, name: 'AdamP', victim: 2, step: 3, phase: 'partials', mode: 'kill', timeoutMs: 3000 } };
    const run = runMpi(4, [task], { extra: ['--enable-recovery'], timeoutMs: 60_000 });
    expect(run.ranks.has(2)).toBe(false);
    for (const r of [0, 1, 3]) {
      const o = run.ranks.get(r);
      if (!o) throw new Error(`rank ${r} printed no result:\n${run.output.slice(-3000)}`);
      const f = o.results[0].value;
      expect(f.threw).toBe(true);
      expect(f.code).toBe('ERR_ADAMP_COLLECTIVE_TIMEOUT');
      expect(f.message).toMatch(new RegExp(`rank ${r} at step 3 \\('partials'\\): the MPI all-gather did not complete within 3000 ms; rank 2 did not answer \\(dead or stalled\\)`));
      expect(f.missing).toEqual([2]);
      expect(f.step).toBe(3);
      expect(f.unchanged).toBe(true);
      expect(f.after).toBe('ERR_ADAMP_COLLECTIVE');
    }
    expect(run.seconds).toBeLessThan(45);
  });

  (mpich ? test : test.skip)('MPICH (mpiexec.mpich -n 3, when installed): sharded steps, data parallel, ZeRO-2, a stalled rank named by the census', () => {
    const tasks = [
      { fn: 'sharded', args: { seed: 7601, name: 'AdamP', steps: 5, big: true, config: { partition: 'slices', backend: BACKENDS[BACKENDS.length - 1] } } },
      { fn: 'sharded', args: { seed: 7602, name: 'SGDP', steps: 5, config: { partition: 'tensors', backend: 'js' } } },
      { fn: 'dataParallel', args: { seed: 7603, name: 'AdamW', steps: 3, reduceScatter: true, config: {} } },
      { fn: 'faults', args: { seed: 7604, name: 'SGD', victim: 1, step: 2, phase: 'params', mode: 'stall', stallMs: 15_000, timeoutMs: 2000 } },
    ];
    const env = { ...process.env, ADAMP_MPI_LIBRARY: '' };
    const r = spawnSync(mpich!, ['-n', '3', process.execPath, SCRIPT, JSON.stringify(tasks)], { env, encoding: 'utf8', timeout: 180_000 });
    const ranks = (r.stdout ?? '').split('\n').filter((l) => l.startsWith('ADAMP-RESULT ')).map((l) => JSON.parse(l.slice(13)) as RankOut);
    for (const rank of [0, 2]) {
      const o = ranks.find((x) => x.rank === rank);
      if (!o) throw new Error(`rank ${rank} printed no result:\n${(r.stdout ?? '') + (r.stderr ?? '')}`);
      expect(o.size).toBe(3);
      const [a, b, c, f] = o.results;
      expect([a.ok, b.ok, c.ok]).toEqual([true, true, true]);
      expect(f.value.code).toBe('ERR_ADAMP_COLLECTIVE_TIMEOUT');
      expect(f.value.message).toMatch(new RegExp(`rank 1 did not answer \\(dead or stalled\\); rank ${2 - rank} is waiting in the same call`));
    }
  });

  test('-np 2: a stalled rank (default mpirun): the other times out naming it', () => {
    const task = { fn: 'faults', args: { seed: 7502, name: 'SGDP', victim: 1, step: 2, phase: 'params', mode: 'stall', stallMs: 20_000, timeoutMs: 2000 } };
    const run = runMpi(2, [task], { timeoutMs: 60_000 });
    const f = run.ranks.get(0)?.results[0].value;
    if (!f) throw new Error(`rank 0 printed no result:\n${run.output.slice(-3000)}`);
    expect(f.code).toBe('ERR_ADAMP_COLLECTIVE_TIMEOUT');
    expect(f.message).toMatch(/rank 0 at step 2 \('params'\): the MPI all-gather did not complete within 2000 ms; rank 1 did not answer/);
    expect(f.unchanged).toBe(true);
    // mpirun ends the stalled rank once rank 0 has left: nothing waits for the stall to end
    expect(run.seconds).toBeLessThan(19);
  });
});
