/**
 * The js engine's TypeScript loops over one unit (./plan.ts), generic over a spec's element math
 * (lib/optim/spec.ts `ElementMath`). The WebAssembly kernel (./wasm.ts) runs the same arithmetic
 * for AdamP and SGDP in the same order, bit for bit; these loops run everything else, and
 * everything where WebAssembly SIMD is unavailable or turned off.
 *
 * Sums: per row of the channel view, g.p, g.g, p.p and p.u in double, each row in 4 interleaved
 * lanes (the element at offset j of the row goes to lane j % 4, each lane summed from 0 in element
 * order; the row's sum is (lane0 + lane2) + (lane1 + lane3)), rows added into their channel's unit
 * partial in order. The norms of the info record: per row in 4 lanes as well, for projected
 * tensors; element by element for one-pass tensors. The four interleaved sums do not wait on each
 * other, and V8 keeps them in registers only in a loop that does nothing else, which is why the
 * update and the sums are separate sweeps.
 *
 * Indices: a shard holds elements [offset, offset + length) of its tensor; loops take global
 * element ranges and index the shard's arrays at `global - offset`.
 */
import type { AnySpec } from '../../optim/spec';
import type { Geometry, Slot } from '../engine';

const f = Math.fround;

/** Doubles per channel in a projected unit's partial record: g.p, g.g, p.p, p.u. */
export const PART_STRIDE = 4;
/** Doubles per unit in a norm partial record: ||p_before||^2, ||p_after||^2, ||dp||^2. */
export const NORM_STRIDE = 3;

/**
 * Pass 1 of elements [e0, e1) (whole rows of `inner`): the state update, u into `u` (indexed like
 * the shard), and the per-channel sums into `part[po ..]` (channels `c0 ..` of the unit).
 */
export function statsRows(spec: AnySpec, sc: unknown, s: Slot, offset: number, g: Geometry, e0: number, e1: number,
  u: Float32Array, c0: number, part: Float64Array, po: number): void {
  const { p, g: gr, state } = s;
  spec.math.update(e0 - offset, e1 - offset, gr, p, state, sc, u);
  const { inner, channels } = g;
  let i = e0 - offset;
  for (let row = e0 / inner, rEnd = e1 / inner; row < rEnd; row++) {
    let gp0 = 0, gp1 = 0, gp2 = 0, gp3 = 0, gg0 = 0, gg1 = 0, gg2 = 0, gg3 = 0;
    let pp0 = 0, pp1 = 0, pp2 = 0, pp3 = 0, pu0 = 0, pu1 = 0, pu2 = 0, pu3 = 0;
    const end = i + inner;
    for (; i + 4 <= end; i += 4) {
      let gi = gr[i], pi = p[i], ui = u[i];
      gp0 += gi * pi; gg0 += gi * gi; pp0 += pi * pi; pu0 += pi * ui;
      gi = gr[i + 1]; pi = p[i + 1]; ui = u[i + 1];
      gp1 += gi * pi; gg1 += gi * gi; pp1 += pi * pi; pu1 += pi * ui;
      gi = gr[i + 2]; pi = p[i + 2]; ui = u[i + 2];
      gp2 += gi * pi; gg2 += gi * gi; pp2 += pi * pi; pu2 += pi * ui;
      gi = gr[i + 3]; pi = p[i + 3]; ui = u[i + 3];
      gp3 += gi * pi; gg3 += gi * gi; pp3 += pi * pi; pu3 += pi * ui;
    }
    // the last (inner % 4) elements: lanes 0, 1, 2
    if (i < end) {
      const gi = gr[i], pi = p[i], ui = u[i];
      gp0 += gi * pi; gg0 += gi * gi; pp0 += pi * pi; pu0 += pi * ui;
      i++;
    }
    if (i < end) {
      const gi = gr[i], pi = p[i], ui = u[i];
      gp1 += gi * pi; gg1 += gi * gi; pp1 += pi * pi; pu1 += pi * ui;
      i++;
    }
    if (i < end) {
      const gi = gr[i], pi = p[i], ui = u[i];
      gp2 += gi * pi; gg2 += gi * gi; pp2 += pi * pi; pu2 += pi * ui;
      i++;
    }
    const o = po + PART_STRIDE * ((row % channels) - c0);
    part[o] += (gp0 + gp2) + (gp1 + gp3);
    part[o + 1] += (gg0 + gg2) + (gg1 + gg3);
    part[o + 2] += (pp0 + pp2) + (pp1 + pp3);
    part[o + 3] += (pu0 + pu2) + (pu1 + pu3);
  }
}

/** What pass 2 needs from the decision. */
export interface ApplyArgs {
  projected: boolean;
  /** Per channel: the float32 divisor ||p_c|| + eps and coefficient (p_c . u_c) / div (the layer view's, repeated, when it fired). */
  div: Float64Array;
  scale: Float64Array;
  wdf: number;
  norms: boolean;
}

/**
 * Pass 2 of elements [e0, e1) (whole rows): u (from `u`, or recomputed from the state into `u`
 * when `recompute`), `u -= (p / div_c) * scale_c` where projected (written back into state slot 0
 * when the spec says so), decay and step. Adds ||p_after||^2 and ||dp||^2 (per row in 4 lanes)
 * into `norms[no + 1, 2]`.
 */
export function applyRows(spec: AnySpec, sc: unknown, s: Slot, offset: number, g: Geometry, e0: number, e1: number,
  u: Float32Array, recompute: boolean, a: ApplyArgs, norms: Float64Array, no: number): void {
  const math = spec.math;
  const { p, g: gr, state } = s;
  if (recompute) math.stored!(e0 - offset, e1 - offset, gr, state, sc, u);
  const buf = a.projected && math.writesBack !== undefined && math.writesBack(sc) ? state[0] : null;
  const k = math.stepScale(sc);
  const { inner, channels } = g;
  const { wdf, projected } = a;
  let after = 0, delta = 0;
  let i = e0 - offset;
  for (let row = e0 / inner, rEnd = e1 / inner; row < rEnd; row++) {
    const c = row % channels;
    const end = i + inner;
    const rdiv = projected ? 1 / a.div[c] : 0, scc = projected ? a.scale[c] : 0;
    if (!a.norms) {
      for (; i < end; i++) p[i] = f(f(p[i] * wdf) + k * (projected ? projectAt(p, u, buf, i, rdiv, scc) : u[i]));
      continue;
    }
    let sa0 = 0, sa1 = 0, sa2 = 0, sa3 = 0, sd0 = 0, sd1 = 0, sd2 = 0, sd3 = 0;
    let p0 = 0, p1 = 0;
    for (; i + 4 <= end; i += 4) {
      p0 = p[i]; p1 = p[i] = f(f(p0 * wdf) + k * (projected ? projectAt(p, u, buf, i, rdiv, scc) : u[i]));
      sa0 += p1 * p1; sd0 += (p1 - p0) * (p1 - p0);
      p0 = p[i + 1]; p1 = p[i + 1] = f(f(p0 * wdf) + k * (projected ? projectAt(p, u, buf, i + 1, rdiv, scc) : u[i + 1]));
      sa1 += p1 * p1; sd1 += (p1 - p0) * (p1 - p0);
      p0 = p[i + 2]; p1 = p[i + 2] = f(f(p0 * wdf) + k * (projected ? projectAt(p, u, buf, i + 2, rdiv, scc) : u[i + 2]));
      sa2 += p1 * p1; sd2 += (p1 - p0) * (p1 - p0);
      p0 = p[i + 3]; p1 = p[i + 3] = f(f(p0 * wdf) + k * (projected ? projectAt(p, u, buf, i + 3, rdiv, scc) : u[i + 3]));
      sa3 += p1 * p1; sd3 += (p1 - p0) * (p1 - p0);
    }
    // the last (inner % 4) elements: lanes 0, 1, 2
    for (let lane = 0; i < end; i++, lane++) {
      p0 = p[i]; p1 = p[i] = f(f(p0 * wdf) + k * (projected ? projectAt(p, u, buf, i, rdiv, scc) : u[i]));
      if (lane === 0) { sa0 += p1 * p1; sd0 += (p1 - p0) * (p1 - p0); }
      else if (lane === 1) { sa1 += p1 * p1; sd1 += (p1 - p0) * (p1 - p0); }
      else { sa2 += p1 * p1; sd2 += (p1 - p0) * (p1 - p0); }
    }
    after += (sa0 + sa2) + (sa1 + sa3);
    delta += (sd0 + sd2) + (sd1 + sd3);
  }
  norms[no + 1] += after;
  norms[no + 2] += delta;
}

/** u at j projected: `u - (p / div) * scale` (p not yet stepped), stored into `buf` too when given (SGDP's write-back). */
function projectAt(p: Float32Array, u: Float32Array, buf: Float32Array | null, j: number, rdiv: number, scc: number): number {
  const uj = f(u[j] - f(f(p[j] * rdiv) * scc));
  if (buf !== null) buf[j] = uj;
  return uj;
}

/**
 * The one pass over elements [e0, e1): update (u into `u` from index 0), decay (factor `wdf`),
 * step; norms element by element into `norms[no ..]`.
 */
export function onePass(spec: AnySpec, sc: unknown, s: Slot, offset: number, e0: number, e1: number, wdf: number,
  withNorms: boolean, u: Float32Array, norms: Float64Array, no: number): void {
  const a = e0 - offset, b = e1 - offset;
  const p = s.p.subarray(a, b);
  spec.math.update(0, b - a, s.g.subarray(a, b), p, s.state.map((x) => x.subarray(a, b)), sc, u);
  const k = spec.math.stepScale(sc);
  const i0 = 0, i1 = b - a;
  if (!withNorms) {
    for (let i = i0; i < i1; i++) p[i] = f(f(p[i] * wdf) + k * u[i]);
    return;
  }
  let before = 0, after = 0, delta = 0;
  for (let i = i0; i < i1; i++) {
    const p0 = p[i];
    const p1 = (p[i] = f(f(p0 * wdf) + k * u[i]));
    before += p0 * p0;
    after += p1 * p1;
    delta += (p1 - p0) * (p1 - p0);
  }
  norms[no] += before;
  norms[no + 1] += after;
  norms[no + 2] += delta;
}
