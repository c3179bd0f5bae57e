/**
 * Which rank owns which elements of which param (docs/distributed.md, "Partitioning").
 *
 * The params are laid end to end in their order over the groups (the flat space of ZeRO), and
 * the flat space is cut into `size` contiguous ranges, one per rank, each about `total / size`
 * elements:
 *
 * - `'slices'`: cuts snap to the nearest *unit boundary* of the tensor they fall in (the units of
 *   the step protocol, `protocol.units`: rows of the channel view for PyTorch-layout tensors, runs
 *   of whole rows for channels-last ones, blocks for one-pass tensors). A rank's piece of a tensor
 *   is then a run of whole units, which the protocol steps on its own; a tensor cut by a boundary
 *   is stepped by several ranks, whose partial sums are exchanged.
 * - `'tensors'`: cuts snap to the nearest *tensor boundary*: every tensor belongs to one rank,
 *   which decides alone (no exchange of partial sums), at the price of a coarser balance.
 *
 * The plan depends on the shapes, the optimizer and the backend (whose units it uses), and is the
 * same on every rank; its digest is compared when a sharded optimizer is created.
 */
import { createHash } from 'crypto';
import { invalid } from '../errors';

export type Partitioning = 'slices' | 'tensors';

/** One rank's piece of one tensor: elements [begin, end) of the tensor, its units [u0, u1). */
export interface Piece {
  rank: number;
  begin: number;
  end: number;
  u0: number;
  u1: number;
}

export interface TensorPlacement {
  /** The param's index over all groups. */
  index: number;
  numel: number;
  /** Where the tensor starts in the flat space. */
  flat: number;
  /** The protocol's unit starts, then numel. */
  units: readonly number[];
  /** The non-empty pieces, in rank order (= unit order). */
  pieces: Piece[];
}

export interface PartitionPlan {
  mode: Partitioning;
  size: number;
  /** Elements of all params. */
  total: number;
  /** `size + 1` flat offsets: rank r owns [cuts[r], cuts[r + 1]). */
  cuts: number[];
  tensors: TensorPlacement[];
  /** A SHA-256 of the mode, the units and the cuts (hex), compared across ranks. */
  digest: string;
}

/** The nearest of the sorted `points` to `x` (ties to the lower one). */
function nearest(points: readonly number[], x: number): number {
  let lo = 0, hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (points[mid] <= x) lo = mid; else hi = mid - 1;
  }
  const a = points[lo];
  const b = lo + 1 < points.length ? points[lo + 1] : a;
  return x - a <= b - x ? a : b;
}

/**
 * The partition of tensors (each given by its numel and its protocol units) over `size` ranks.
 * `units[k]` are tensor k's unit starts followed by its numel.
 */
export function partition(units: readonly (readonly number[])[], size: number, mode: Partitioning): PartitionPlan {
  if (!Number.isSafeInteger(size) || size < 1) throw invalid(`partition: the world size must be a positive integer, got ${size}`);
  if (mode !== 'slices' && mode !== 'tensors') throw invalid(`partition must be 'slices' or 'tensors', got ${String(mode)}`);
  const flat: number[] = [];
  let total = 0;
  units.forEach((u, k) => {
    const numel = u[u.length - 1];
    if (u.length < 1 || u[0] !== 0 && numel !== 0) throw invalid(`partition: tensor ${k}'s units must start at 0 and end at its numel`);
    flat.push(total);
    total += numel;
  });
  const cuts: number[] = [0];
  let t = 0; // the tensor the last cut fell in: cuts are monotone
  for (let r = 1; r < size; r++) {
    const target = Math.floor((r * total) / size);
    while (t + 1 < units.length && flat[t] + units[t][units[t].length - 1] <= target) t++;
    let cut: number;
    if (units.length === 0) cut = 0;
    else {
      const numel = units[t][units[t].length - 1];
      const points = mode === 'tensors' ? [0, numel] : units[t];
      cut = flat[t] + nearest(points, Math.min(Math.max(target - flat[t], 0), numel));
    }
    cuts.push(Math.max(cut, cuts[cuts.length - 1]));
  }
  cuts.push(total);
  const tensors: TensorPlacement[] = units.map((u, k) => {
    const numel = u[u.length - 1];
    const pieces: Piece[] = [];
    for (let r = 0; r < size; r++) {
      const b = Math.max(cuts[r], flat[k]) - flat[k];
      const e = Math.min(cuts[r + 1], flat[k] + numel) - flat[k];
      if (e <= b) continue;
      const u0 = u.indexOf(b), u1 = u.indexOf(e);
      if (u0 < 0 || u1 < 0) throw new Error(`partition: internal error: a cut of tensor ${k} is not at a unit boundary`);
      pieces.push({ rank: r, begin: b, end: e, u0, u1 });
    }
    return { index: k, numel, flat: flat[k], units: u, pieces };
  });
  const h = createHash('sha256');
  h.update(`${mode};${size};${total};${cuts.join(',')};`);
  for (const u of units) h.update(`${u.length}:${u.join(',')};`);
  return { mode, size, total, cuts, tensors, digest: h.digest('hex') };
}

/** The pieces rank `rank` owns, in tensor order. */
export function piecesOf(plan: PartitionPlan, rank: number): Array<{ tensor: TensorPlacement; piece: Piece }> {
  const out: Array<{ tensor: TensorPlacement; piece: Piece }> = [];
  for (const t of plan.tensors) for (const p of t.pieces) if (p.rank === rank) out.push({ tensor: t, piece: p });
  return out;
}

/** Elements each rank owns (the counts of the flat all-gather of params). */
export function ownedCounts(plan: PartitionPlan): number[] {
  return plan.cuts.slice(1).map((c, r) => c - plan.cuts[r]);
}
