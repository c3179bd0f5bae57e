/**
 * `adamp demo --data-parallel`: the toy demo's network trained data-parallel with sharded AdamP
 * (docs/distributed.md, "The demo").
 *
 *   mpirun -np 2 npx adamp demo --data-parallel       # two MPI ranks
 *   npx adamp demo --data-parallel --ranks 2           # two worker threads (the in-process collective)
 *
 * A step's batch has `batch` samples (one noise stream each, as minibatch gradients of a
 * scale-invariant loss: tangent noise); rank r computes the mean gradient of its `batch / N`
 * samples, `averageGradients` averages them over the ranks in rank order, and the sharded AdamP
 * steps (each rank updates its slice of the params and keeps the state of that slice only). Rank
 * 0 then runs the single-process AdamP on the whole batch, averaged over the same micro-batches in
 * the same order, and compares the weights and the state bit for bit.
 */
import * as path from 'path';
import { Worker, isMainThread, parentPort, workerData } from 'worker_threads';
import { AdamP } from '../../lib/index';
import { PACKAGE_ROOT } from '../../lib/core/package-root';
import type { Param } from '../../lib/types';
import { averageGradients, broadcastParams, InProcessGroup, launchedByMpi, mpiCollective, rankOrderMean, ShardedOptimizer } from '../../lib/distributed';
import type { Collective, InProcessHandle } from '../../lib/distributed';
import { fmt } from './table';
import { DEFAULT_TOY, ToyProblem } from './toy';
import { cosineLr, TOY_DEFAULTS } from './toy-demo';

export interface DataParallelOptions {
  steps?: number;
  seed?: number;
  /** Samples per step over all ranks (a multiple of the world size; default 8). */
  batch?: number;
  /** Worker threads when not started by an MPI launcher (default 2). */
  ranks?: number;
  backend?: 'auto' | 'js' | 'native';
  partition?: 'slices' | 'tensors';
  weightDecay?: number;
  log?: (line: string) => void;
}

export interface DataParallelResult {
  collective: string;
  ranks: number;
  backend: string;
  steps: number;
  batch: number;
  initialLoss: number;
  finalLoss: number;
  /** Elements of the params that differ from the single-process run (0: bit-identical). */
  paramsDiffering: number;
  stateDiffering: number;
  numel: number;
  /** Elements whose AdamP state each rank keeps. */
  stateElements: number[];
  lines: string[];
}

const DEFAULTS = { steps: 200, seed: 1, batch: 8, ranks: 2 };

/** The micro-batch gradient of `samples` into the params' grads: the mean over its samples, in sample order. */
function microBatchGradient(prob: ToyProblem, params: Param[], seed: number, step: number, samples: number[]): number {
  const sums = params.map((p) => new Float32Array(p.data.length));
  let loss = 0;
  for (const s of samples) {
    prob.setNoiseSeed(((seed * 1_000_003) ^ (step * 7919 + s * 104729)) >>> 0);
    loss += prob.lossAndGrad(params);
    params.forEach((p, k) => { const g = p.grad!; const a = sums[k]; for (let i = 0; i < a.length; i++) a[i] = a[i] + g[i]; });
  }
  params.forEach((p, k) => { const g = p.grad!; const a = sums[k]; for (let i = 0; i < a.length; i++) g[i] = a[i] / samples.length; });
  return loss / samples.length;
}

function samplesOf(rank: number, size: number, batch: number): number[] {
  const per = batch / size;
  return Array.from({ length: per }, (_, i) => rank * per + i);
}

/** One rank's run; rank 0 also runs the single-process reference and compares. */
export function runDataParallelRank(c: Collective, o: Required<Omit<DataParallelOptions, 'log' | 'ranks'>>): DataParallelResult | null {
  const { steps, seed, batch, backend, partition, weightDecay } = o;
  if (batch % c.size !== 0) throw new RangeError(`--batch ${batch} is not a multiple of the ${c.size} ranks`);
  const prob = new ToyProblem(seed, DEFAULT_TOY);
  const params = prob.makeParams();
  broadcastParams(params, c, 0); // every replica starts from rank 0's weights
  const lr = TOY_DEFAULTS.adam.lr;
  const opt = new ShardedOptimizer(AdamP, params, { lr, weightDecay }, { collective: c, backend, partition });
  const mine = samplesOf(c.rank, c.size, batch);
  let initialLoss = NaN, lastLoss = NaN;
  for (let t = 1; t <= steps; t++) {
    const local = new Float64Array([microBatchGradient(prob, params, seed, t, mine)]);
    averageGradients(params, c, { order: 'rank', step: t });
    c.allReduce(local, 'sum', { order: 'rank', at: { step: t, phase: 'other' } });
    lastLoss = local[0] / c.size;
    if (t === 1) initialLoss = lastLoss;
    opt.paramGroups[0].lr = cosineLr(lr, t, steps);
    opt.step();
  }
  const state = opt.gatherStateDict(); // collective: every rank takes part
  const stateElements = new Float64Array(c.size);
  const counts = opt.plan.cuts.slice(1).map((x, r) => x - opt.plan.cuts[r]);
  stateElements.set(counts);
  if (c.rank !== 0) return null;

  // The single process: the whole batch, as the same micro-batches averaged in rank order.
  const refProb = new ToyProblem(seed, DEFAULT_TOY);
  const ref = refProb.makeParams();
  const single = new AdamP(ref, { lr, weightDecay }, { backend: opt.backend });
  const parts = ref.map(() => [] as Float32Array[]);
  for (let t = 1; t <= steps; t++) {
    parts.forEach((x) => { x.length = 0; });
    for (let r = 0; r < c.size; r++) {
      microBatchGradient(refProb, ref, seed, t, samplesOf(r, c.size, batch));
      ref.forEach((p, k) => parts[k].push(p.grad!.slice()));
    }
    ref.forEach((p, k) => rankOrderMean(parts[k], p.grad!));
    single.paramGroups[0].lr = cosineLr(lr, t, steps);
    single.step();
  }
  let paramsDiffering = 0, stateDiffering = 0, numel = 0;
  params.forEach((p, k) => {
    numel += p.data.length;
    for (let i = 0; i < p.data.length; i++) if (!Object.is(p.data[i], ref[k].data[i])) paramsDiffering++;
  });
  const sd = single.stateDict();
  for (const [i, s] of Object.entries(sd.state)) {
    const mineState = state.state[Number(i)];
    for (const key of ['expAvg', 'expAvgSq'] as const) {
      const a = s[key], b = mineState[key];
      for (let j = 0; j < a.length; j++) if (!Object.is(a[j], b[j])) stateDiffering++;
    }
    if (s.step !== mineState.step) stateDiffering++;
  }
  const finalLoss = prob.loss(params);
  const d = c.describe();
  const via = c.backend === 'mpi' ? `MPI (${String(d.flavor)} ${String(d.version ?? '').match(/v?(\d+\.\d+(\.\d+)?)/)?.[1] ?? ''})`.replace(' )', ')') : c.backend === 'in-process' ? 'worker threads (in-process collective)' : c.backend;
  const share = Array.from(stateElements).map((n) => `${n} (${((100 * n) / numel).toFixed(1)}%)`).join(', ');
  const lines = [
    `Data-parallel toy demo: ${c.size} ranks over ${via}, sharded AdamP ('${partition}' partition, ${opt.backend} backend), ${steps} steps, batch of ${batch} samples (${batch / c.size} per rank), cosine lr from ${lr}.`,
    `AdamP state kept per rank: ${share} of ${numel} elements; each rank updated its slice, the params were all-gathered after every step.`,
    `Loss (rank-averaged batch loss, then the noiseless objective): ${fmt(initialLoss, 4)} at step 1 -> ${fmt(lastLoss, 4)} at step ${steps}; final ${fmt(finalLoss, 4)}.`,
    `Against the single-process AdamP on the whole batch (the same micro-batches averaged in rank order):`,
    `  weights: ${paramsDiffering === 0 ? `bit-identical (0 of ${numel} elements differ)` : `${paramsDiffering} of ${numel} elements DIFFER`}`,
    `  state:   ${stateDiffering === 0 ? 'bit-identical (exp_avg, exp_avg_sq, step)' : `${stateDiffering} values DIFFER`}`,
  ];
  return {
    collective: c.backend, ranks: c.size, backend: opt.backend, steps, batch, initialLoss, finalLoss, paramsDiffering, stateDiffering, numel,
    stateElements: Array.from(stateElements), lines,
  };
}

function complete(o: DataParallelOptions): Required<Omit<DataParallelOptions, 'log' | 'ranks'>> {
  return {
    steps: o.steps ?? DEFAULTS.steps, seed: o.seed ?? DEFAULTS.seed, batch: o.batch ?? DEFAULTS.batch,
    backend: o.backend ?? 'auto', partition: o.partition ?? 'slices', weightDecay: o.weightDecay ?? TOY_DEFAULTS.weightDecay,
  };
}

/**
 * Runs the demo: over MPI when this process was started by an MPI launcher (every rank calls
 * this; rank 0 gets the result, the others null), else on `ranks` worker threads.
 */
export async function runDataParallelDemo(options: DataParallelOptions = {}): Promise<DataParallelResult | null> {
  const o = complete(options);
  if (launchedByMpi()) return runDataParallelRank(mpiCollective(), o);
  const ranks = options.ranks ?? DEFAULTS.ranks;
  const group = InProcessGroup.create(ranks);
  const results = await Promise.all(Array.from({ length: ranks }, (_, rank) => new Promise<DataParallelResult | null>((resolve, reject) => {
    // from the sources (tests), the built twin of this file runs the workers
    const file = __filename.endsWith('.ts') ? path.join(PACKAGE_ROOT, 'dist', 'cli', 'demo', 'data-parallel.js') : __filename;
    const w = new Worker(file, { workerData: { adampDataParallel: true, handle: group.handle, rank, options: o } });
    w.on('message', resolve);
    w.on('error', reject);
    w.on('exit', (code) => { if (code !== 0) { group.fail(rank, `its worker exited with code ${code}`); reject(new Error(`rank ${rank} exited with code ${code}`)); } });
  })));
  return results[0];
}

// A worker thread of the in-process run.
if (!isMainThread && (workerData as { adampDataParallel?: boolean } | null)?.adampDataParallel) {
  const { handle, rank, options } = workerData as { handle: InProcessHandle; rank: number; options: Required<Omit<DataParallelOptions, 'log' | 'ranks'>> };
  parentPort!.postMessage(runDataParallelRank(InProcessGroup.join(handle, rank), options));
}
