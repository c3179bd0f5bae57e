/**
 * The js engine's per-tensor records, shared by its TypeScript loops, its WebAssembly driver and
 * its protocol: the folded per-channel sums, the decision, and the info record.
 */
import { Decision, Info } from '../../core/info';
import { decide, type Sums } from '../../core/decision';
import type { AnySpec } from '../../optim/spec';
import type { Geometry } from '../engine';
import { PART_STRIDE, type ApplyArgs } from './loops';

/** Per-channel sums and coefficients of one tensor, grown on demand and reused. */
export class SumsScratch implements Sums {
  gp = new Float64Array(16);
  gg = new Float64Array(16);
  pp = new Float64Array(16);
  pu = new Float64Array(16);
  div = new Float64Array(16);
  scale = new Float64Array(16);
  /** Zeroed sums for `channels` channels. */
  take(channels: number): this {
    if (this.gp.length < channels) {
      const n = Math.max(channels, this.gp.length * 2);
      for (const k of ['gp', 'gg', 'pp', 'pu', 'div', 'scale'] as const) this[k] = new Float64Array(n);
    } else {
      for (const k of ['gp', 'gg', 'pp', 'pu'] as const) this[k].fill(0, 0, channels);
    }
    return this;
  }
  /** Adds a unit's partial record (channels c0 .. c0 + n) into the sums. */
  fold(part: Float64Array, po: number, c0: number, n: number): void {
    const { gp, gg, pp, pu } = this;
    for (let k = 0; k < n; k++) {
      const o = po + PART_STRIDE * k, c = c0 + k;
      gp[c] += part[o];
      gg[c] += part[o + 1];
      pp[c] += part[o + 2];
      pu[c] += part[o + 3];
    }
  }
}

/** Everything a decided tensor's pass 2 and its info record need. */
export interface Decided extends ApplyArgs {
  /** The info record's decision fields 0..5 (`Info.decision` .. `Info.normSqBefore`). */
  fields: Float64Array;
}

const NOT_EVALUATED = [NaN, NaN, NaN, NaN] as const;

/** acc += one unit's norm partial (in unit order: the fold a sharded step repeats). */
export function foldNorms(acc: Float64Array, part: Float64Array, po: number): void {
  acc[0] += part[po];
  acc[1] += part[po + 1];
  acc[2] += part[po + 2];
}

/** The decision of one tensor from its folded sums; fills `sums.div`/`sums.scale` for the view that fired. */
export function decideTensor(spec: AnySpec, opts: Readonly<Record<string, unknown>>, g: Geometry, sums: SumsScratch, norms: boolean): Decided {
  const dp = spec.decisionParams!(opts);
  const fields = new Float64Array(6);
  const ratio = decide(sums, g.channels, g.numel, dp.delta, dp.wdRatio, dp.eps, fields, 0);
  const code = fields[Info.decision];
  return {
    fields, projected: code === Decision.channel || code === Decision.layer,
    div: sums.div, scale: sums.scale, wdf: spec.wdFactor(opts, ratio), norms,
  };
}

/** The info record of a decided tensor; `norms` = the folded [before, after, delta] (NaN when not computed). */
export function writeDecided(info: Float64Array, o: number, fields: Float64Array, norms: Float64Array): void {
  for (let k = 0; k < 6; k++) info[o + k] = fields[k];
  info[o + Info.normSqAfter] = norms[1];
  info[o + Info.deltaSq] = norms[2];
}

/** The info record of a one-pass tensor: no projection (1-D tensor of a projecting optimizer, or an optimizer without one). */
export function writeOnePass(spec: AnySpec, info: Float64Array, o: number, norms: Float64Array): void {
  info[o + Info.decision] = spec.projects ? Decision.notEligible : Decision.notApplicable;
  info.set(NOT_EVALUATED, o + Info.channelMaxCos);
  info[o + Info.normSqBefore] = norms[0];
  info[o + Info.normSqAfter] = norms[1];
  info[o + Info.deltaSq] = norms[2];
}
