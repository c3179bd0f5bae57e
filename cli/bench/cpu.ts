/**
 * The CPU benchmark behind `adamp bench` (and `scripts/bench-cpu.js`).
 *
 * Steps the ResNet-50 and GPT-2-small parameter sets (`bench/shapes.json`) with AdamP and SGDP
 * on every available CPU backend, with the projection firing (gradients orthogonal to every
 * output channel of the weights) and mostly not firing (random gradients); times the native
 * one-pass Adam/SGD floor kernels; and runs `scripts/bench_torch_cpu.py` (the official
 * algorithm in PyTorch, and torch's own Adam/SGD) as a child process, so every ratio comes from
 * the same run on the same machine state. Results are written as JSON.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AdamP, SGDP, backends } from '../../lib/index';
import { PACKAGE_ROOT } from '../../lib/core/package-root';
import type { Param } from '../../lib/types';
import { Rng } from '../rng';
import { fmt, formatTable } from '../demo/table';
import type { ProgressStream } from '../demo/progress';
import { loadFloor, type FloorKernels } from './floor';

/** The hyperparameters every implementation uses (tiny lr: weights, and decisions, stay put). */
export const BENCH_HP = { lrAdam: 1e-6, lrSgd: 1e-6, momentum: 0.9, weightDecay: 0 } as const;

/** glibc settings for the PyTorch child: no page faults from mmap'ed temporaries up to 32 MB. */
export const TORCH_MALLOC_ENV = { MALLOC_MMAP_THRESHOLD_: '33554432', MALLOC_TRIM_THRESHOLD_: '1073741824' } as const;

export interface CpuBenchOptions {
  /** A shapes file of the same format as `bench/shapes.json` (default: the packaged one). */
  shapes?: string;
  sets?: string[];
  backends?: ('js' | 'native')[];
  threads?: number[];
  steps?: number;
  warmup?: number;
  /** Run the PyTorch comparison (default true). */
  torch?: boolean;
  python?: string;
  /** `'tuned'` (default): TORCH_MALLOC_ENV; `'default'`: glibc's defaults. */
  torchMalloc?: 'tuned' | 'default';
  quick?: boolean;
  out?: string;
  /** The command line to record in the results (the CLI passes its own). */
  command?: string;
  progress?: ProgressStream | null;
  log?: (line: string) => void;
}

/** One timed case. */
export interface BenchRow {
  set: string;
  /** `js`, `native`, `native-floor`, `torch-official`, `torch`. */
  impl: string;
  /** `adamp`, `sgdp`, `adam`, `sgd`. */
  algo: string;
  /** `fire` (grads orthogonal to the weights), `random`, or `n/a` (no projection). */
  mode: string;
  /** Threads used (the JS backend is single-threaded: 1). */
  threads: number;
  numel: number;
  medianMs: number;
  timesMs: number[];
  elementsPerSec: number;
  /** Share of eligible tensors per decision at the last timed step. */
  projection?: Record<string, number>;
  /**
   * Native rows: the one-pass floor of the same family (adam for adamp, sgd for sgdp) stepped
   * alternately with this optimizer, step for step, so both see the same machine load.
   * `ratio` is the median of the per-step ratios (this step / the floor step right after it).
   */
  interleavedFloor?: { algo: string; medianMs: number; timesMs: number[]; ratio: number };
}

export interface BenchRatio {
  set: string;
  what: string;
  threads: number;
  mode: string;
  /** numerator median / denominator median. */
  ratio: number;
  numerator: string;
  denominator: string;
}

export interface CpuBenchResult {
  outPath: string;
  doc: {
    date: string;
    machine: Record<string, unknown>;
    settings: Record<string, unknown>;
    torch: Record<string, unknown> | null;
    rows: BenchRow[];
    ratios: BenchRatio[];
  };
}

interface ShapeSet { about?: string; shapes: number[][]; numel?: number }

/** The packaged shapes file (`bench/shapes.json` at the package root). */
export function shapesPath(): string {
  return path.join(PACKAGE_ROOT, 'bench', 'shapes.json');
}

/** The PyTorch side (`scripts/bench_torch_cpu.py` at the package root). */
export function torchScriptPath(): string {
  return path.join(PACKAGE_ROOT, 'scripts', 'bench_torch_cpu.py');
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Weights ~ U(-1, 1); gradients random, or orthogonal to each output channel (row of the channel view). */
export function makeBenchParams(shapes: readonly number[][], mode: 'fire' | 'random', seed: number): Param[] {
  const rng = new Rng(seed);
  return shapes.map((shape, k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const grad = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rng.uniform() * 2 - 1;
    for (let i = 0; i < n; i++) grad[i] = rng.uniform() * 2 - 1;
    if (mode === 'fire' && shape.length > 1) {
      const rows = shape[0], cols = n / rows;
      for (let r = 0; r < rows; r++) {
        const o = r * cols;
        let gp = 0, pp = 0;
        for (let j = 0; j < cols; j++) { gp += grad[o + j] * data[o + j]; pp += data[o + j] * data[o + j]; }
        const c = gp / pp;
        for (let j = 0; j < cols; j++) grad[o + j] -= c * data[o + j];
      }
    }
    return { data, grad, shape, name: `t${k}` };
  });
}

function decisionShares(info: readonly { projection: string }[], params: readonly Param[]): Record<string, number> {
  const counts: Record<string, number> = { channel: 0, layer: 0, none: 0 };
  let eligible = 0;
  info.forEach((pi, k) => {
    if (params[k].shape.length <= 1) return;
    eligible++;
    counts[pi.projection] = (counts[pi.projection] ?? 0) + 1;
  });
  for (const k of Object.keys(counts)) counts[k] = eligible ? counts[k] / eligible : 0;
  return counts;
}

/** Times two steps alternately (a, then b, per round); the per-round ratios a/b share the same load. */
async function timePaired(steps: number, warmup: number, a: () => void, b: () => void): Promise<{ a: number[]; b: number[]; ratios: number[] }> {
  for (let i = 0; i < warmup; i++) { a(); b(); }
  const out = { a: [] as number[], b: [] as number[], ratios: [] as number[] };
  for (let i = 0; i < steps; i++) {
    const t0 = nowMs();
    a();
    const t1 = nowMs();
    b();
    const t2 = nowMs();
    out.a.push(t1 - t0);
    out.b.push(t2 - t1);
    out.ratios.push((t1 - t0) / (t2 - t1));
    await new Promise((r) => setImmediate(r));
  }
  return out;
}

async function timeLoop(steps: number, warmup: number, step: () => void): Promise<number[]> {
  for (let i = 0; i < warmup; i++) step();
  const times: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = nowMs();
    step();
    times.push(nowMs() - t0);
    await new Promise((r) => setImmediate(r));
  }
  return times;
}

/** Runs the PyTorch script; resolves with its JSON document. */
function runTorch(python: string, args: string[], env: NodeJS.ProcessEnv, progress: ProgressStream | null): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [torchScriptPath(), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => { out += d; });
    child.stderr.on('data', (d: string) => { err += d; progress?.write(d); });
    child.on('error', (e) => reject(new Error(`could not start ${python}: ${e.message}`)));
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new Error(`${python} ${path.basename(torchScriptPath())} exited with status ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
        return;
      }
      try {
        resolve(JSON.parse(out) as Record<string, unknown>);
      } catch {
        reject(new Error(`the PyTorch benchmark printed no JSON: ${out.slice(0, 200)}`));
      }
    });
  });
}

/** Checks that `python` can import torch; returns the reason when it cannot. */
function torchUnavailable(python: string): Promise<string | null> {
  return new Promise((resolve) => {
    const child = spawn(python, ['-c', 'import torch; print(torch.__version__)'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => { err += d; });
    child.on('error', (e) => resolve(`${python} could not be started (${e.message})`));
    child.on('close', (code) => resolve(code === 0 ? null : `${python} cannot import torch: ${err.trim().split('\n').pop() ?? ''}`));
  });
}

/** Runs the benchmark and writes its JSON. */
export async function runCpuBench(o: CpuBenchOptions = {}): Promise<CpuBenchResult> {
  const log = o.log ?? ((s: string) => process.stdout.write(s + '\n'));
  const progress = o.progress === undefined ? process.stderr : o.progress;
  const note = (s: string): void => { progress?.write(s + '\n'); };
  const quick = o.quick === true;
  const sets = o.sets ?? (quick ? ['resnet50'] : ['resnet50', 'gpt2-small']);
  // Timed and warm-up steps per set: the GPT-2 set takes seconds per step on one thread, so it
  // gets fewer (the first step allocates the optimizer state: always at least one warm-up).
  const stepsFor = (set: string): { steps: number; warmup: number } => ({
    steps: o.steps ?? (quick ? 2 : set === 'gpt2-small' ? 3 : 7),
    warmup: o.warmup ?? (quick ? 1 : set === 'gpt2-small' ? 1 : 2),
  });
  const threadList = o.threads ?? [1, 2];
  const python = o.python ?? '/usr/bin/python3';
  const shapesFile = o.shapes ?? shapesPath();
  let all: Record<string, ShapeSet>;
  try {
    all = JSON.parse(fs.readFileSync(shapesFile, 'utf8')) as Record<string, ShapeSet>;
  } catch (e) {
    throw new Error(`cannot read the parameter sets from ${shapesFile}: ${(e as Error).message}`);
  }
  for (const s of sets) {
    if (!all[s] || !Array.isArray(all[s].shapes)) throw new Error(`unknown parameter set '${s}'; ${shapesFile} has ${Object.keys(all).join(', ')}`);
  }

  const report = backends();
  const nativeReport = report.find((b) => b.name === 'native');
  const nativeOk = nativeReport?.available === true;
  const wanted = o.backends ?? (nativeOk ? ['js', 'native'] : ['js']);
  if (wanted.includes('native') && !nativeOk) throw new Error(`backend 'native' is not available: ${nativeReport?.reason ?? 'unknown'}`);
  const floor: FloorKernels | null = wanted.includes('native') ? loadFloor() : null;
  if (wanted.includes('native') && !floor) note('note: the native backend cannot run here; the one-pass floor is skipped');

  let torchEnabled = o.torch !== false;
  let torchSkipReason: string | null = null;
  if (torchEnabled) {
    torchSkipReason = await torchUnavailable(python);
    if (torchSkipReason) {
      note(`note: skipping the PyTorch comparison: ${torchSkipReason}`);
      torchEnabled = false;
    }
  }
  const malloc = o.torchMalloc ?? 'tuned';
  const torchEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(torchEnv)) if (k.startsWith('MALLOC_')) delete torchEnv[k];
  if (malloc === 'tuned') Object.assign(torchEnv, TORCH_MALLOC_ENV);

  const rows: BenchRow[] = [];
  const torchDocs: Record<string, unknown>[] = [];
  const loadStart = os.loadavg();
  for (const set of sets) {
    const shapes = all[set].shapes;
    const { steps, warmup } = stepsFor(set);
    const numel = shapes.reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
    note(`== ${set}: ${shapes.length} tensors, ${numel.toLocaleString('en-US')} elements`);

    if (torchEnabled) {
      const doc = await runTorch(python, [
        '--shapes', path.resolve(shapesFile), '--set', set, '--threads', threadList.join(','),
        '--steps', String(steps), '--warmup', String(warmup), '--weight-decay', String(BENCH_HP.weightDecay),
      ], torchEnv, progress);
      torchDocs.push(doc);
      for (const r of doc.results as BenchRow[]) rows.push(r);
    }

    // The floor's own params for the interleaved runs (its steps never touch the optimizer's).
    let floorParams: Param[] | null = null;
    for (const mode of ['fire', 'random'] as const) {
      const params = makeBenchParams(shapes, mode, 0);
      // Every case starts from the same weights (the steps move them a little, and decisions near
      // the threshold, as with random gradients, would otherwise depend on the case order).
      const pristine = params.map((p) => Float32Array.from(p.data));
      for (const algo of ['adamp', 'sgdp'] as const) {
        for (const backend of wanted) {
          for (const threads of backend === 'js' ? [1] : threadList) {
            params.forEach((p, k) => p.data.set(pristine[k]));
            const opt = algo === 'adamp'
              ? new AdamP(params, { lr: BENCH_HP.lrAdam, weightDecay: BENCH_HP.weightDecay }, { backend, threads: backend === 'js' ? undefined : threads })
              : new SGDP(params, { lr: BENCH_HP.lrSgd, momentum: BENCH_HP.momentum, weightDecay: BENCH_HP.weightDecay }, { backend, threads: backend === 'js' ? undefined : threads });
            const floorAlgo = algo === 'adamp' ? 'adam' : 'sgd';
            const floorRun = backend === 'native' && floor
              ? floor.prepare(floorAlgo, floorParams ??= makeBenchParams(shapes, 'random', 1), { lr: algo === 'adamp' ? BENCH_HP.lrAdam : BENCH_HP.lrSgd, momentum: BENCH_HP.momentum, threads })
              : null;
            try {
              let times: number[];
              let interleavedFloor: BenchRow['interleavedFloor'];
              if (floorRun) {
                const t = await timePaired(steps, warmup, () => opt.step(), floorRun.step);
                times = t.a;
                interleavedFloor = { algo: floorAlgo, medianMs: median(t.b), timesMs: t.b, ratio: median(t.ratios) };
              } else {
                times = await timeLoop(steps, warmup, () => opt.step());
              }
              const med = median(times);
              const row: BenchRow = {
                set, impl: backend, algo, mode, threads, numel, medianMs: med, timesMs: times,
                elementsPerSec: numel / (med / 1e3), projection: decisionShares(opt.lastStepInfo, params),
                ...(interleavedFloor ? { interleavedFloor } : {}),
              };
              rows.push(row);
              note(`${backend.padEnd(6)} ${set} ${algo.padEnd(5)} ${mode.padEnd(6)} threads=${threads}: ${med.toFixed(1).padStart(8)} ms/step`);
            } finally {
              opt.dispose();
              floorRun?.dispose();
            }
          }
        }
      }
    }

    if (floor) {
      const params = makeBenchParams(shapes, 'random', 0);
      for (const algo of ['adam', 'sgd'] as const) {
        for (const threads of threadList) {
          const run = floor.prepare(algo, params, { lr: algo === 'adam' ? BENCH_HP.lrAdam : BENCH_HP.lrSgd, momentum: BENCH_HP.momentum, threads });
          try {
            const times = await timeLoop(steps, warmup, run.step);
            const med = median(times);
            rows.push({ set, impl: 'native-floor', algo, mode: 'n/a', threads, numel, medianMs: med, timesMs: times, elementsPerSec: numel / (med / 1e3) });
            note(`floor  ${set} ${algo.padEnd(5)} n/a    threads=${threads}: ${med.toFixed(1).padStart(8)} ms/step`);
          } finally {
            run.dispose();
          }
        }
      }
    }
  }

  const ratios = computeRatios(rows, sets, threadList);
  const doc: CpuBenchResult['doc'] = {
    date: new Date().toISOString(),
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, memGB: +(os.totalmem() / 2 ** 30).toFixed(1),
      node: process.version, platform: `${process.platform}-${process.arch}`,
      loadavgStart: loadStart, loadavgEnd: os.loadavg(),
      backends: report,
    },
    settings: {
      shapes: shapesFile, sets, steps: Object.fromEntries(sets.map((x) => [x, stepsFor(x)])), threads: threadList, backends: wanted, hp: BENCH_HP,
      gradientModes: { fire: 'gradients orthogonal to every output channel of the weights: the channel projection fires on every eligible tensor', random: 'random gradients: the projection mostly does not fire' },
      torchMalloc: torchEnabled ? (malloc === 'tuned' ? TORCH_MALLOC_ENV : 'glibc defaults') : null,
      torchSkipped: torchEnabled ? null : (torchSkipReason ?? 'disabled with --no-torch'),
      command: o.command ?? null,
    },
    torch: torchDocs.length ? { version: torchDocs[0].torch, python: torchDocs[0].python, malloc: torchDocs[0].malloc } : null,
    rows,
    ratios,
  };

  log('');
  log(formatResults(rows, ratios));
  const outPath = o.out ?? path.join('bench', 'results', `cpu-${doc.date.replace(/[:.]/g, '-')}.json`);
  fs.mkdirSync(path.dirname(path.resolve(outPath)), { recursive: true });
  fs.writeFileSync(outPath, JSON.stringify(doc, null, 1) + '\n');
  return { outPath, doc };
}

function find(rows: BenchRow[], q: Partial<BenchRow>): BenchRow | undefined {
  return rows.find((r) => (Object.keys(q) as (keyof BenchRow)[]).every((k) => r[k] === q[k]));
}

/** The ratios the issues ask for, from rows of the same run. */
export function computeRatios(rows: BenchRow[], sets: string[], threads: number[]): BenchRatio[] {
  const out: BenchRatio[] = [];
  const add = (set: string, what: string, t: number, mode: string, num?: BenchRow, den?: BenchRow): void => {
    if (!num || !den) return;
    out.push({ set, what, threads: t, mode, ratio: num.medianMs / den.medianMs,
      numerator: `${num.impl} ${num.algo}`, denominator: `${den.impl} ${den.algo}` });
  };
  for (const set of sets) {
    for (const mode of ['fire', 'random']) {
      // The TS fallback (single-threaded) against the official AdamP on one torch thread: < 1 is faster.
      for (const algo of ['adamp', 'sgdp']) {
        add(set, `js ${algo} / torch-official ${algo} (1 thread)`, 1, mode,
          find(rows, { set, impl: 'js', algo, mode }), find(rows, { set, impl: 'torch-official', algo, mode, threads: 1 }));
      }
      for (const t of threads) {
        add(set, 'torch-official adamp / native adamp (speedup)', t, mode,
          find(rows, { set, impl: 'torch-official', algo: 'adamp', mode, threads: t }), find(rows, { set, impl: 'native', algo: 'adamp', mode, threads: t }));
        add(set, 'torch-official sgdp / native sgdp (speedup)', t, mode,
          find(rows, { set, impl: 'torch-official', algo: 'sgdp', mode, threads: t }), find(rows, { set, impl: 'native', algo: 'sgdp', mode, threads: t }));
        add(set, 'native adamp / native one-pass adam', t, mode,
          find(rows, { set, impl: 'native', algo: 'adamp', mode, threads: t }), find(rows, { set, impl: 'native-floor', algo: 'adam', threads: t }));
        add(set, 'native sgdp / native one-pass sgd', t, mode,
          find(rows, { set, impl: 'native', algo: 'sgdp', mode, threads: t }), find(rows, { set, impl: 'native-floor', algo: 'sgd', threads: t }));
        // The same two, stepped alternately (median of per-step ratios): the figure to quote.
        for (const algo of ['adamp', 'sgdp']) {
          const r = find(rows, { set, impl: 'native', algo, mode, threads: t });
          if (!r?.interleavedFloor) continue;
          out.push({ set, what: `native ${algo} / native one-pass ${r.interleavedFloor.algo}, interleaved`, threads: t, mode, ratio: r.interleavedFloor.ratio,
            numerator: `native ${algo}`, denominator: `native-floor ${r.interleavedFloor.algo} (interleaved)` });
        }
      }
    }
  }
  return out;
}

/** The results as two plain-text tables. */
export function formatResults(rows: BenchRow[], ratios: BenchRatio[]): string {
  const t1 = formatTable(
    ['set', 'impl', 'algo', 'grads', 'threads', 'ms/step (median)', 'Melem/s', 'projected'],
    rows.map((r) => [
      r.set, r.impl, r.algo, r.mode, r.threads, fmt(r.medianMs, 4), fmt(r.elementsPerSec / 1e6, 4),
      r.projection ? `${Math.round((r.projection.channel + (r.projection.layer ?? 0)) * 100)}%` : '-',
    ]),
  );
  const t2 = ratios.length
    ? formatTable(['set', 'ratio', 'grads', 'threads', 'value'], ratios.map((q) => [q.set, q.what, q.mode, q.threads, `${q.ratio.toFixed(2)}x`]))
    : '(no ratios: only one implementation ran)';
  return `${t1}\n\n${t2}`;
}
