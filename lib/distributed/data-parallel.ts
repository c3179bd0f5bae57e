/**
 * Data-parallel helpers (docs/distributed.md, "Data parallel"): every rank computes the gradient
 * of its part of the batch, `averageGradients` turns them into the gradient of the whole batch on
 * every rank, with the same collective as the optimizer.
 *
 * With `order: 'rank'` (the default) the average is, element by element and in float32,
 *
 *   g = f32( f32( f32(g_0 + g_1) + g_2 ) + ... + g_{N-1} ) / N
 *
 * on every rank, for any world size: a single process that computes the N micro-batch gradients
 * of the same split and averages them with `rankOrderMean` gets the same bits, and then the same
 * weights after any number of steps. (Versus one gradient of the whole batch in one pass, the
 * difference is only the order of the additions.) `order: 'any'` takes the engine's fastest
 * reduction (MPI_Allreduce, NCCL), whose order is its own.
 */
import { invalid } from '../errors';
import { describe } from '../core/describe';
import { isFloat32Array } from '../validate';
import type { Param } from '../types';
import { CollectiveError, rankList, type CallSite, type Collective } from './collective';
import type { PartitionPlan } from './partition';

export interface AverageGradientsOptions {
  /** `'rank'` (default): rank-ordered sums, reproducible and equal to `rankOrderMean`; `'any'`: the engine's own order. */
  order?: 'rank' | 'any';
  /** Small gradients are packed into buckets of this many bytes (default 4 MiB); larger ones are reduced in place. */
  bucketBytes?: number;
  /** The step, for error messages. */
  step?: number;
}

type ParamSource = readonly Param[] | { paramGroups: ReadonlyArray<{ params: readonly Param[] }> };

function paramsOf(src: ParamSource): Param[] {
  if (Array.isArray(src)) return src.slice();
  const groups = (src as { paramGroups?: unknown }).paramGroups;
  if (!Array.isArray(groups)) throw invalid(`expected an array of params or an optimizer, got ${describe(src)}`);
  const out: Param[] = [];
  for (const g of groups as Array<{ params: Param[] }>) out.push(...g.params);
  return out;
}

/**
 * Checks that every rank has gradients for the same params (a tiny all-reduce of a digest);
 * throws on every rank otherwise.
 */
function checkSamePresence(c: Collective, params: Param[], at: CallSite): void {
  let h = 0x811c9dc5;
  params.forEach((p, i) => {
    if (!p.grad) return;
    h = Math.imul(h ^ i, 0x01000193) >>> 0;
    h = Math.imul(h ^ p.grad.length, 0x01000193) >>> 0;
  });
  const x = new Float64Array([h, -h]);
  c.allReduce(x, 'max', { at });
  if (x[0] !== h || x[1] !== -h) {
    // which ranks differ: gather the digests (every rank is here, so this cannot hang)
    const all = new Float64Array(c.size);
    c.allGather(new Float64Array([h]), all, null, at);
    const differ: number[] = [];
    for (let r = 0; r < c.size; r++) if (all[r] !== all[0]) differ.push(r);
    throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `averageGradients: the ranks have gradients for different params (or of different lengths): ${rankList(differ)} ${differ.length > 1 ? 'differ' : 'differs'} from rank 0`,
      { rank: c.rank, step: at.step, phase: at.phase, missing: differ });
  }
}

/**
 * Replaces every gradient by its average over the ranks, in place (collective). Params whose
 * gradient is null are skipped (on every rank alike: checked). Accepts params or an optimizer.
 */
export function averageGradients(params: ParamSource, collective: Collective, options: AverageGradientsOptions = {}): void {
  const order = options.order ?? 'rank';
  if (order !== 'rank' && order !== 'any') throw invalid(`averageGradients: order must be 'rank' or 'any', got ${describe(order)}`);
  const bucketBytes = options.bucketBytes ?? 4 << 20;
  if (!Number.isSafeInteger(bucketBytes) || bucketBytes < 4) throw invalid(`averageGradients: bucketBytes must be an integer >= 4, got ${describe(bucketBytes)}`);
  const list = paramsOf(params);
  list.forEach((p, i) => {
    if (p.grad !== null && p.grad !== undefined && !isFloat32Array(p.grad)) throw invalid(`averageGradients: the grad of param #${i} must be a Float32Array or null, got ${describe(p.grad)}`);
  });
  const at: CallSite = { step: options.step, phase: 'gradients' };
  checkSamePresence(collective, list, at);
  const N = collective.size;
  if (N === 1) return;
  const cap = Math.max(1, Math.floor(bucketBytes / 4));
  const bucket = new Float32Array(cap);
  let members: Float32Array[] = [];
  let fill = 0;
  const scale = (a: Float32Array) => { for (let i = 0; i < a.length; i++) a[i] = a[i] / N; };
  const flush = () => {
    if (members.length === 0) return;
    const view = bucket.subarray(0, fill);
    collective.allReduce(view, 'sum', { order, at });
    let o = 0;
    for (const g of members) {
      g.set(view.subarray(o, o + g.length));
      scale(g);
      o += g.length;
    }
    members = [];
    fill = 0;
  };
  for (const p of list) {
    const g = p.grad;
    if (!g) continue;
    if (g.length >= cap) {
      flush();
      for (let s = 0; s < g.length; s += cap) collective.allReduce(g.subarray(s, Math.min(g.length, s + cap)), 'sum', { order, at });
      scale(g);
      continue;
    }
    if (fill + g.length > cap) flush();
    bucket.set(g, fill);
    fill += g.length;
    members.push(g);
  }
  flush();
}

/** What `reduceScatterGradients` needs of a sharded optimizer. */
interface ShardedLike {
  readonly collective: Collective;
  readonly plan: PartitionPlan;
  paramList(): readonly Param[];
}

/**
 * ZeRO-2's gradient exchange for a sharded optimizer (collective): every rank receives the average
 * over the ranks of its own range of each gradient only, which is all its sharded step reads. Half
 * the traffic of `averageGradients` (a reduce-scatter instead of an all-reduce), and the same bits
 * in the range a rank owns (`order: 'rank'`). The rest of each gradient keeps this rank's own
 * values: do not read it afterwards.
 */
export function reduceScatterGradients(opt: ShardedLike, options: AverageGradientsOptions = {}): void {
  const c = opt.collective;
  const order = options.order ?? 'rank';
  if (order !== 'rank' && order !== 'any') throw invalid(`reduceScatterGradients: order must be 'rank' or 'any', got ${describe(order)}`);
  if (typeof c.reduceScatter !== 'function') throw invalid(`reduceScatterGradients: the '${c.backend}' collective has no reduceScatter; use averageGradients`);
  const bucketBytes = options.bucketBytes ?? 4 << 20;
  if (!Number.isSafeInteger(bucketBytes) || bucketBytes < 4) throw invalid(`reduceScatterGradients: bucketBytes must be an integer >= 4, got ${describe(bucketBytes)}`);
  const params = opt.paramList().slice();
  params.forEach((p, i) => {
    if (p.grad !== null && p.grad !== undefined && !isFloat32Array(p.grad)) throw invalid(`reduceScatterGradients: the grad of param #${i} must be a Float32Array or null, got ${describe(p.grad)}`);
  });
  const at: CallSite = { step: options.step, phase: 'gradients' };
  checkSamePresence(c, params, at);
  const N = c.size;
  if (N === 1) return;
  const cap = Math.max(N, Math.floor(bucketBytes / 4));
  const bucket = new Float32Array(cap);
  // Round j takes window j of every rank's range of the flat space (cap / N elements each): every
  // call spreads over all ranks, and the bucket is laid out rank by rank, as reduce-scatter wants.
  const per = Math.floor(cap / N);
  const cuts = opt.plan.cuts;
  const tensors = opt.plan.tensors;
  let rounds = 0;
  for (let r = 0; r < N; r++) rounds = Math.max(rounds, Math.ceil((cuts[r + 1] - cuts[r]) / per));
  const counts = new Array<number>(N).fill(0);
  for (let j = 0; j < rounds; j++) {
    counts.fill(0);
    let fill = 0;
    const mine: Array<{ g: Float32Array; b: number; e: number }> = [];
    for (let r = 0; r < N; r++) {
      const lo = Math.min(cuts[r + 1], cuts[r] + j * per), hi = Math.min(cuts[r + 1], cuts[r] + (j + 1) * per);
      if (hi <= lo) continue;
      // the tensors overlapping [lo, hi): binary search for the first
      let a = 0, z = tensors.length - 1;
      while (a < z) { const m = (a + z) >> 1; if (tensors[m].flat + tensors[m].numel <= lo) a = m + 1; else z = m; }
      for (let k = a; k < tensors.length && tensors[k].flat < hi; k++) {
        const t = tensors[k];
        const g = params[t.index].grad;
        if (!g || t.numel === 0) continue;
        const b = Math.max(lo, t.flat) - t.flat, e = Math.min(hi, t.flat + t.numel) - t.flat;
        if (e <= b) continue;
        bucket.set(g.subarray(b, e), fill);
        fill += e - b;
        counts[r] += e - b;
        if (r === c.rank) mine.push({ g, b, e });
      }
    }
    const recv = new Float32Array(counts[c.rank]);
    c.reduceScatter!(bucket.subarray(0, fill), recv, counts.slice(), { order, at });
    let o = 0;
    for (const { g, b, e } of mine) {
      for (let i = b; i < e; i++) g[i] = recv[o + i - b] / N;
      o += e - b;
    }
  }
}

/**
 * The single-process twin of `averageGradients(..., { order: 'rank' })`: the average of
 * `parts` (the gradients of the ranks' micro-batches, in rank order), written into `out`.
 */
export function rankOrderMean(parts: readonly Float32Array[], out: Float32Array): Float32Array {
  if (parts.length === 0) throw invalid('rankOrderMean: no parts');
  out.set(parts[0]);
  for (let k = 1; k < parts.length; k++) {
    const x = parts[k];
    for (let i = 0; i < out.length; i++) out[i] = out[i] + x[i];
  }
  const N = parts.length;
  for (let i = 0; i < out.length; i++) out[i] = out[i] / N;
  return out;
}

/** Copies `root`'s params into every rank's params (collective): replicas start from the same weights. */
export function broadcastParams(params: ParamSource, collective: Collective, root = 0, options: { bucketBytes?: number } = {}): void {
  if (!Number.isSafeInteger(root) || root < 0 || root >= collective.size) throw invalid(`broadcastParams: root must be a rank in [0, ${collective.size - 1}], got ${describe(root)}`);
  const list = paramsOf(params);
  const cap = Math.max(1, Math.floor((options.bucketBytes ?? 4 << 20) / 4));
  const at: CallSite = { phase: 'broadcast' };
  const counts = new Array<number>(collective.size).fill(0);
  for (const p of list) {
    const d = p.data;
    for (let s = 0; s === 0 || s < d.length; s += cap) {
      const part = d.subarray(s, Math.min(d.length, s + cap));
      counts[root] = part.length;
      const recv = new Float32Array(part.length);
      collective.allGather(collective.rank === root ? part : new Float32Array(0), recv, counts, at);
      if (collective.rank !== root) part.set(recv);
    }
  }
}

/**
 * Every rank says whether it succeeded; returns the ranks that did not (the same list on every
 * rank). A barrier with a vote: checkpoint writers use it so that a checkpoint is complete on
 * every rank or reported failed on every rank.
 */
export function agree(collective: Collective, ok: boolean, at: CallSite): number[] {
  const all = new Float64Array(collective.size);
  collective.allGather(new Float64Array([ok ? 1 : 0]), all, null, at);
  const failed: number[] = [];
  for (let r = 0; r < collective.size; r++) if (all[r] !== 1) failed.push(r);
  return failed;
}
