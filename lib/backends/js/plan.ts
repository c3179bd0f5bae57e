/**
 * The js engine's units (docs/architecture.md, "The step protocol"): how a tensor is cut for
 * stats and apply, fixed by its shape alone.
 *
 * - Projected (eligible tensor, projecting optimizer), `outer == 1`: one unit per row of the
 *   channel view (one channel each).
 * - Projected, `outer > 1` (TensorFlow.js kernels, channels innermost): runs of whole outer rows of
 *   about `UNIT` elements; a unit's per-channel sums start from 0 and units are folded in order.
 * - One pass (1-D tensors, AdamW, SGD): blocks of `UNIT` elements.
 * Norm partials are per unit too, folded in order.
 */
import type { AnySpec } from '../../optim/spec';
import type { Geometry } from '../engine';

/** Elements per unit, about (outer rows are never split). */
export const UNIT = 65536;

export interface JsPlan {
  /** One pass: no stats, no decision. */
  onePass: boolean;
  numel: number;
  /** Units and their first element, then numel. */
  starts: number[];
  /** Projected: rows of `inner` elements per unit (a run of rows of the channel view, `(a, c)` order). */
  rowsPerUnit: number;
}

export function planOf(spec: AnySpec, g: Geometry): JsPlan {
  const onePass = !spec.projects || !g.eligible;
  const starts: number[] = [];
  let rowsPerUnit = 0;
  if (onePass) {
    for (let i = 0; i < g.numel; i += UNIT) starts.push(i);
  } else if (g.numel > 0) {
    rowsPerUnit = g.outer === 1 ? 1 : g.channels * Math.max(1, Math.ceil(UNIT / (g.channels * g.inner)));
    const rows = g.outer * g.channels;
    for (let r = 0; r < rows; r += rowsPerUnit) starts.push(r * g.inner);
  }
  starts.push(g.numel);
  return { onePass, numel: g.numel, starts, rowsPerUnit };
}

/** The channels a projected unit's partial covers: [c0, c0 + n). */
export function unitChannels(plan: JsPlan, g: Geometry, u: number): { c0: number; n: number } {
  if (g.outer === 1) return { c0: u, n: 1 };
  return { c0: 0, n: g.channels };
}
