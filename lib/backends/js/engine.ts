/**
 * The pure TypeScript engine: the CPU fallback that runs everywhere.
 *
 * An eligible tensor (ndim > 1) takes three sweeps, because a projection decision needs the
 * whole tensor first:
 *   update  the moments (AdamP) or the buffer (SGDP), and the update u before projection
 *           (kept in a scratch array unless it is SGDP's buffer itself);
 *   sums    per output channel, g.p, g.g, p.p and p.u in double precision (each row summed in 4
 *           interleaved lanes, `rowSum` below: the order the SIMD kernel uses too);
 *   decide  channel view, then layer view (`decide()`), float32 compare;
 *   apply   remove the radial component of u where the test fired (SGDP without Nesterov writes
 *           it back into the buffer), weight decay, step.
 * The sums have a sweep of their own because V8 keeps four double accumulators in registers
 * only in a loop that does nothing else (measured: 1.6 ns/element alone, +4.4 ns fused into the
 * update). Never-projected tensors take one sweep.
 *
 * Element-wise arithmetic reproduces the official float32 operations one by one with
 * `Math.fround` (reference/SPEC.md s2-4): `fround(a + b * c)` on float32 inputs is the fused
 * multiply-add PyTorch's CPU kernels use. Division by a per-tensor or per-channel constant is a
 * multiplication by its double reciprocal, then rounding: the same float32 result, since the
 * double error is far below float32's rounding boundaries (checked on 2e7 random pairs).
 *
 * Where WebAssembly SIMD is available (every supported Node.js), the same steps run in a 128-bit
 * SIMD kernel with bit-identical results (`./wasm.ts`); these loops are the fallback, forced with
 * `ADAMP_JS_WASM=0` or `new JsEngine({ wasm: false })`.
 */
import { Decision, Info, INFO_STRIDE } from '../engine';
import type { AdamPScalars, Engine, SGDPScalars, Slot } from '../engine';
import { decide, type Sums } from '../../core/decision';
import { adampTensorWasm, DEFAULT_CHUNK, sgdpTensorWasm, wasmKernel, writeNotEligible, type WasmKernel, type WasmPlan } from './wasm';

const f = Math.fround;

/** Per-channel sums and coefficients, grown on demand and reused across tensors and steps. */
class SumsScratch implements Sums {
  gp = new Float64Array(16);
  gg = new Float64Array(16);
  pp = new Float64Array(16);
  pu = new Float64Array(16);
  div = new Float64Array(16);
  scale = new Float64Array(16);
  take(channels: number): this {
    if (this.gp.length < channels) {
      const n = Math.max(channels, this.gp.length * 2);
      for (const k of ['gp', 'gg', 'pp', 'pu', 'div', 'scale'] as const) this[k] = new Float64Array(n);
    } else {
      for (const k of ['gp', 'gg', 'pp', 'pu'] as const) this[k].fill(0, 0, channels);
    }
    return this;
  }
}

export interface JsEngineOptions {
  /**
   * Use the WebAssembly SIMD kernel where the runtime supports it (default: true, unless the
   * environment variable `ADAMP_JS_WASM` is `0`). Results are identical either way.
   */
  wasm?: boolean;
  /** Elements per chunk streamed through the kernel (default 16384; at most the kernel's capacity). For tests. */
  chunk?: number;
  /**
   * Largest tensor whose p and u stay in the kernel's memory between the two sweeps (default and
   * at most the kernel's capacity, 4M elements); larger ones are streamed twice. For tests.
   */
  whole?: number;
}

export class JsEngine implements Engine {
  readonly name = 'js' as const;
  private readonly sums = new SumsScratch();
  /** The update u of the tensor in flight (AdamP; SGDP with Nesterov). */
  private u = new Float32Array(0);
  private readonly kernel: WasmKernel | null;
  private readonly plan: WasmPlan;
  private readonly lend = (n: number): Float32Array => this.scratch(n);

  constructor(options: JsEngineOptions = {}) {
    const wanted = options.wasm ?? process.env.ADAMP_JS_WASM !== '0';
    this.kernel = wanted ? wasmKernel() : null;
    const k = this.kernel;
    this.plan = {
      chunk: Math.max(1, Math.min(Math.floor(options.chunk ?? DEFAULT_CHUNK), k?.chunk ?? DEFAULT_CHUNK)),
      whole: Math.max(0, Math.min(Math.floor(options.whole ?? Infinity), k?.cap ?? 0)),
    };
  }

  /** True when steps run in the WebAssembly SIMD kernel (tensors it cannot take still use the TypeScript loops). */
  get usesWasm(): boolean {
    return this.kernel !== null;
  }

  private scratch(n: number): Float32Array {
    if (this.u.length < n) this.u = new Float32Array(n);
    return this.u;
  }

  stepAdamP(slots: readonly Slot[], hp: AdamPScalars, info: Float64Array): void {
    const kernel = this.kernel;
    for (let k = 0; k < slots.length; k++) {
      const s = slots[k];
      if (kernel && kernel.fits(s)) adampTensorWasm(kernel, this.plan, s, hp, info, k * INFO_STRIDE, this.lend);
      else adampTensor(s, hp, info, k * INFO_STRIDE, this.sums, s.eligible ? this.scratch(s.p.length) : this.u);
    }
  }

  stepSGDP(slots: readonly Slot[], hp: SGDPScalars, info: Float64Array): void {
    const kernel = this.kernel;
    for (let k = 0; k < slots.length; k++) {
      const s = slots[k];
      if (kernel && kernel.fits(s)) sgdpTensorWasm(kernel, this.plan, s, hp, info, k * INFO_STRIDE, this.lend);
      else sgdpTensor(s, hp, info, k * INFO_STRIDE, this.sums, s.eligible && hp.nesterov ? this.scratch(s.p.length) : this.u);
    }
  }
}

function adampTensor(s: Slot, hp: AdamPScalars, info: Float64Array, o: number, sums: SumsScratch, us: Float32Array): void {
  const { p, g, m, v } = s;
  const n = p.length;
  const b1 = f(hp.beta1), omb1 = f(1 - hp.beta1);
  const b2 = f(hp.beta2), omb2 = f(1 - hp.beta2);
  const bc1 = 1 - Math.pow(hp.beta1, s.step);
  const rSqrtBc2 = 1 / f(Math.sqrt(1 - Math.pow(hp.beta2, s.step)));
  const eps = f(hp.eps);
  const negStep = f(-(hp.lr / bc1));
  const nesterov = hp.nesterov;
  const decay = hp.weightDecay > 0;

  if (!s.eligible) {
    const wdf = decay ? f(1 - hp.lr * hp.weightDecay) : 1;
    let before = 0, after = 0, delta = 0;
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      const mi = f(f(m[i] * b1) + omb1 * gi);
      const vi = f(f(v[i] * b2) + f(omb2 * gi) * gi);
      m[i] = mi;
      v[i] = vi;
      const den = f(f(f(Math.sqrt(vi)) * rSqrtBc2) + eps);
      const u = nesterov ? f(f(f(b1 * mi) + f(omb1 * gi)) / den) : f(mi / den);
      const p0 = p[i];
      const p1 = f((decay ? f(p0 * wdf) : p0) + negStep * u);
      p[i] = p1;
      before += p0 * p0;
      after += p1 * p1;
      delta += (p1 - p0) * (p1 - p0);
    }
    writeNotEligible(info, o, before, after, delta);
    return;
  }

  for (let i = 0; i < n; i++) {
    const gi = g[i];
    const mi = f(f(m[i] * b1) + omb1 * gi);
    const vi = f(f(v[i] * b2) + f(omb2 * gi) * gi);
    m[i] = mi;
    v[i] = vi;
    const den = f(f(f(Math.sqrt(vi)) * rSqrtBc2) + eps);
    us[i] = nesterov ? f(f(f(b1 * mi) + f(omb1 * gi)) / den) : f(mi / den);
  }
  channelSums(s, us, sums.take(s.channels));
  const ratio = decide(sums, s.channels, n, hp.delta, hp.wdRatio, hp.eps, info, o);
  const wdf = decay ? f(1 - hp.lr * hp.weightDecay * ratio) : 1;
  apply(s, us, false, info, o, sums, decay, wdf, negStep);
}

function sgdpTensor(s: Slot, hp: SGDPScalars, info: Float64Array, o: number, sums: SumsScratch, us: Float32Array): void {
  const { p, g, m: buf } = s;
  const n = p.length;
  const mom = f(hp.momentum);
  const omd = f(1 - hp.dampening);
  const negLr = f(-hp.lr);
  const nesterov = hp.nesterov;
  const decay = hp.weightDecay > 0;

  if (!s.eligible) {
    const wdf = decay ? f(1 - (hp.lr * hp.weightDecay) / (1 - hp.momentum)) : 1;
    let before = 0, after = 0, delta = 0;
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      const bi = f(f(buf[i] * mom) + omd * gi);
      buf[i] = bi;
      const d = nesterov ? f(gi + f(mom * bi)) : bi;
      const p0 = p[i];
      const p1 = f((decay ? f(p0 * wdf) : p0) + negLr * d);
      p[i] = p1;
      before += p0 * p0;
      after += p1 * p1;
      delta += (p1 - p0) * (p1 - p0);
    }
    writeNotEligible(info, o, before, after, delta);
    return;
  }

  if (nesterov) {
    for (let i = 0; i < n; i++) {
      const gi = g[i];
      const bi = f(f(buf[i] * mom) + omd * gi);
      buf[i] = bi;
      us[i] = f(gi + f(mom * bi));
    }
  } else {
    for (let i = 0; i < n; i++) buf[i] = f(f(buf[i] * mom) + omd * g[i]);
  }
  // note: without Nesterov the official `d` IS the momentum buffer and the projection is in
  // place, so the projected update is written back into the buffer (SPEC.md s3).
  const d = nesterov ? us : buf;
  channelSums(s, d, sums.take(s.channels));
  const ratio = decide(sums, s.channels, n, hp.delta, hp.wdRatio, hp.eps, info, o);
  const wdf = decay ? f(1 - (hp.lr * hp.weightDecay * ratio) / (1 - hp.momentum)) : 1;
  apply(s, d, !nesterov, info, o, sums, decay, wdf, negLr);
}

/**
 * Per output channel: g.p, g.g, p.p, p.u (double). Each row is summed in 4 lanes: the element at
 * offset j of the row goes to lane j % 4, each lane summed from 0 in element order, and the row's
 * sum is (lane0 + lane2) + (lane1 + lane3); rows are added into their channel's sums in order.
 * The WebAssembly kernel sums in exactly this order (two f64x2 per sum), so the two agree bit for
 * bit, and the four interleaved sums do not wait on each other.
 */
function channelSums(s: Slot, u: Float32Array, sums: SumsScratch): void {
  const { p, g, outer, channels, inner } = s;
  const { gp, gg, pp, pu } = sums;
  let i = 0;
  for (let a = 0; a < outer; a++) {
    for (let c = 0; c < channels; c++) {
      let gp0 = 0, gp1 = 0, gp2 = 0, gp3 = 0, gg0 = 0, gg1 = 0, gg2 = 0, gg3 = 0;
      let pp0 = 0, pp1 = 0, pp2 = 0, pp3 = 0, pu0 = 0, pu1 = 0, pu2 = 0, pu3 = 0;
      const end = i + inner;
      for (; i + 4 <= end; i += 4) {
        let gi = g[i], pi = p[i], ui = u[i];
        gp0 += gi * pi; gg0 += gi * gi; pp0 += pi * pi; pu0 += pi * ui;
        gi = g[i + 1]; pi = p[i + 1]; ui = u[i + 1];
        gp1 += gi * pi; gg1 += gi * gi; pp1 += pi * pi; pu1 += pi * ui;
        gi = g[i + 2]; pi = p[i + 2]; ui = u[i + 2];
        gp2 += gi * pi; gg2 += gi * gi; pp2 += pi * pi; pu2 += pi * ui;
        gi = g[i + 3]; pi = p[i + 3]; ui = u[i + 3];
        gp3 += gi * pi; gg3 += gi * gi; pp3 += pi * pi; pu3 += pi * ui;
      }
      // the last (inner % 4) elements: lanes 0, 1, 2
      if (i < end) {
        const gi = g[i], pi = p[i], ui = u[i];
        gp0 += gi * pi; gg0 += gi * gi; pp0 += pi * pi; pu0 += pi * ui;
        i++;
      }
      if (i < end) {
        const gi = g[i], pi = p[i], ui = u[i];
        gp1 += gi * pi; gg1 += gi * gi; pp1 += pi * pi; pu1 += pi * ui;
        i++;
      }
      if (i < end) {
        const gi = g[i], pi = p[i], ui = u[i];
        gp2 += gi * pi; gg2 += gi * gi; pp2 += pi * pi; pu2 += pi * ui;
        i++;
      }
      gp[c] += (gp0 + gp2) + (gp1 + gp3);
      gg[c] += (gg0 + gg2) + (gg1 + gg3);
      pp[c] += (pp0 + pp2) + (pp1 + pp3);
      pu[c] += (pu0 + pu2) + (pu1 + pu3);
    }
  }
}

/** One element of the last sweep: the projection of u (written back when asked), the step; returns p1. */
function applyOne(p: Float32Array, u: Float32Array, i: number, projected: boolean, rdiv: number, sc: number,
  writeBack: boolean, decay: boolean, wdf: number, negStep: number): number {
  const p0 = p[i];
  let ui = u[i];
  if (projected) {
    ui = f(ui - f(f(p0 * rdiv) * sc));
    if (writeBack) u[i] = ui;
  }
  const p1 = f((decay ? f(p0 * wdf) : p0) + negStep * ui);
  p[i] = p1;
  return p1;
}

/**
 * The last sweep: `u -= (p / div_c) * scale_c` where projected (written back into `u` when it is
 * SGDP's buffer), then `p = fma(u, negStep, p * wdf)`; measures ||p_after||^2 and ||dp||^2, each
 * row in 4 lanes as in `channelSums`.
 */
function apply(s: Slot, u: Float32Array, writeBack: boolean, info: Float64Array, o: number, sums: SumsScratch,
  decay: boolean, wdf: number, negStep: number): void {
  const { p, outer, channels, inner } = s;
  const { div, scale } = sums;
  const code = info[o + Info.decision];
  const projected = code === Decision.channel || code === Decision.layer;
  let after = 0, delta = 0;
  let i = 0;
  for (let a = 0; a < outer; a++) {
    for (let c = 0; c < channels; c++) {
      const end = i + inner;
      const rdiv = projected ? 1 / div[c] : 0, sc = projected ? scale[c] : 0;
      let sa0 = 0, sa1 = 0, sa2 = 0, sa3 = 0, sd0 = 0, sd1 = 0, sd2 = 0, sd3 = 0;
      let p0 = 0, p1 = 0;
      for (; i + 4 <= end; i += 4) {
        p0 = p[i]; p1 = applyOne(p, u, i, projected, rdiv, sc, writeBack, decay, wdf, negStep);
        sa0 += p1 * p1; sd0 += (p1 - p0) * (p1 - p0);
        p0 = p[i + 1]; p1 = applyOne(p, u, i + 1, projected, rdiv, sc, writeBack, decay, wdf, negStep);
        sa1 += p1 * p1; sd1 += (p1 - p0) * (p1 - p0);
        p0 = p[i + 2]; p1 = applyOne(p, u, i + 2, projected, rdiv, sc, writeBack, decay, wdf, negStep);
        sa2 += p1 * p1; sd2 += (p1 - p0) * (p1 - p0);
        p0 = p[i + 3]; p1 = applyOne(p, u, i + 3, projected, rdiv, sc, writeBack, decay, wdf, negStep);
        sa3 += p1 * p1; sd3 += (p1 - p0) * (p1 - p0);
      }
      if (i < end) {
        p0 = p[i]; p1 = applyOne(p, u, i, projected, rdiv, sc, writeBack, decay, wdf, negStep);
        sa0 += p1 * p1; sd0 += (p1 - p0) * (p1 - p0);
        i++;
      }
      if (i < end) {
        p0 = p[i]; p1 = applyOne(p, u, i, projected, rdiv, sc, writeBack, decay, wdf, negStep);
        sa1 += p1 * p1; sd1 += (p1 - p0) * (p1 - p0);
        i++;
      }
      if (i < end) {
        p0 = p[i]; p1 = applyOne(p, u, i, projected, rdiv, sc, writeBack, decay, wdf, negStep);
        sa2 += p1 * p1; sd2 += (p1 - p0) * (p1 - p0);
        i++;
      }
      after += (sa0 + sa2) + (sa1 + sa3);
      delta += (sd0 + sd2) + (sd1 + sd3);
    }
  }
  info[o + Info.normSqAfter] = after;
  info[o + Info.deltaSq] = delta;
}
