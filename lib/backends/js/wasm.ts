/**
 * The WebAssembly SIMD path of the js backend: the same arithmetic as the TypeScript loops of
 * `./engine.ts`, bit for bit, four lanes at a time (kernel source: `./wasm/kernel.c`, rebuilt by
 * `scripts/build-wasm.sh` into `./wasm/kernel-wasm.ts`).
 *
 * WebAssembly f32x4 add/sub/mul/div/sqrt are IEEE float32 operations, as is `Math.fround` of the
 * same double operation; where the TS computes in double and rounds once (`fround(a + b * c)`,
 * a product with a double), the kernel does the same in f64x2. The per-row double sums use the
 * TS's order (4 interleaved lanes per row, folded in a fixed order: engine.ts `channelSums`), so
 * decisions and info records are identical.
 *
 * The kernel only sees its own linear memory: every tensor streams through fixed staging areas
 * (p, g, m, v) of `chunk` elements, copied in and out with `TypedArray.set`, so a chunk stays in
 * L2. The update u of a tensor of up to `cap` (4M) elements stays in the kernel's u area between
 * the two sweeps (the decision needs the whole tensor's sums first); a larger tensor keeps it in
 * the engine's scratch array. The module's memory never grows (about 21 MB, reserved up front;
 * pages are touched only as tensors use them). Tensors with more than `chmax` output channels
 * take the TypeScript loops.
 *
 * One module instance per thread, shared by every engine: steps are synchronous.
 */
import { Decision, Info } from '../engine';
import type { AdamPScalars, SGDPScalars, Slot } from '../engine';
import { decide, type Sums } from '../../core/decision';
import { KERNEL_WASM_BASE64 } from './wasm/kernel-wasm';

const f = Math.fround;

/** Elements per chunk by default: p, g, m, v and the u window of a chunk (320 KB) stay in L2. */
export const DEFAULT_CHUNK = 16384;

/** The part of the WebAssembly JS API used here (the project's TypeScript libs do not declare it). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: object };
}

/** Pointers are byte offsets into the module's memory. */
interface Exports {
  memory: { buffer: ArrayBuffer };
  chunk(): number;
  cap(): number;
  chmax(): number;
  p_ptr(): number;
  u_ptr(): number;
  g_ptr(): number;
  m_ptr(): number;
  v_ptr(): number;
  sums_ptr(): number;
  misc_ptr(): number;
  set_shape(inner: number, channels: number): void;
  set_adamp(b1: number, omb1: number, b2: number, omb2: number, rSqrtBc2: number, eps: number, nesterov: number): void;
  set_sgdp(mom: number, omd: number, nesterov: number): void;
  set_apply(wdf: number, neg: number): void;
  adamp_pass1(n: number, c: number, r: number, p: number, g: number, m: number, v: number, u: number): void;
  sgdp_pass1(n: number, c: number, r: number, p: number, g: number, m: number, u: number): void;
  apply(n: number, c: number, r: number, projected: number, writeBack: number, p: number, u: number): void;
  adamp_flat(n: number, p: number, g: number, m: number, v: number, u: number): void;
  sgdp_flat(n: number, p: number, g: number, m: number, u: number): void;
}

/** The instantiated kernel and typed views of its areas (the memory never grows: the views stay valid). */
export class WasmKernel {
  readonly x: Exports;
  /** Capacity of the p, g, m, v staging areas, in elements: the most a chunk may have. */
  readonly chunk: number;
  /** Capacity of the u area: a tensor of up to `cap` elements keeps its u there between the two sweeps. */
  readonly cap: number;
  /** Most output channels a tensor may have to run here. */
  readonly chmax: number;
  /** The u area (`cap` elements) and its byte offset. */
  readonly U: Float32Array;
  readonly uPtr: number;
  /** p, g, m, v staging areas (`chunk` elements) and their byte offsets. */
  readonly P: Float32Array;
  readonly pPtr: number;
  readonly G: Float32Array;
  readonly M: Float32Array;
  readonly V: Float32Array;
  readonly gPtr: number;
  readonly mPtr: number;
  readonly vPtr: number;
  /** Per-channel sums and coefficients, read and written by `decide()` in place. */
  readonly sums: Sums;
  /** 0: ||p_after||^2, 1: ||dp||^2, 2: ||p_before||^2 (flat tensors); then the kernel's row carries. */
  readonly misc: Float64Array;

  constructor(wa: WasmApi, bytes: Uint8Array) {
    const x = new wa.Instance(new wa.Module(bytes), {}).exports as unknown as Exports;
    this.x = x;
    const buf = x.memory.buffer;
    const ch = (this.chunk = x.chunk());
    const cap = (this.cap = x.cap());
    const cm = (this.chmax = x.chmax());
    this.P = new Float32Array(buf, (this.pPtr = x.p_ptr()), ch);
    this.U = new Float32Array(buf, (this.uPtr = x.u_ptr()), cap);
    this.G = new Float32Array(buf, (this.gPtr = x.g_ptr()), ch);
    this.M = new Float32Array(buf, (this.mPtr = x.m_ptr()), ch);
    this.V = new Float32Array(buf, (this.vPtr = x.v_ptr()), ch);
    const s = x.sums_ptr();
    const view = (k: number): Float64Array => new Float64Array(buf, s + k * cm * 8, cm);
    this.sums = { gp: view(0), gg: view(1), pp: view(2), pu: view(3), div: view(4), scale: view(5) };
    this.misc = new Float64Array(buf, x.misc_ptr(), 32);
  }

  /** Can this slot run here? */
  fits(s: Slot): boolean {
    return s.p.length <= 0x7fffffff && (!s.eligible || s.channels <= this.chmax);
  }
}

let shared: WasmKernel | null | undefined;
let failure = '';

/** The kernel of this thread, instantiated on first use; null where WebAssembly (with SIMD) is unavailable. */
export function wasmKernel(): WasmKernel | null {
  if (shared === undefined) {
    shared = null;
    try {
      const wa = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
      if (typeof wa !== 'object' || wa === null) {
        failure = 'WebAssembly is not available (e.g. node --jitless)';
      } else {
        const bytes = Buffer.from(KERNEL_WASM_BASE64, 'base64');
        if (!wa.validate(bytes)) failure = 'this runtime does not support WebAssembly SIMD (128-bit)';
        else shared = new WasmKernel(wa, bytes);
      }
    } catch (e) {
      failure = `the WebAssembly kernel could not be instantiated: ${(e as Error).message}`;
    }
  }
  return shared;
}

/** Why `wasmKernel()` returned null ('' when it did not). */
export function wasmKernelFailure(): string {
  wasmKernel();
  return failure;
}

/** How a tensor streams through the kernel: chunk size, and the largest tensor whose u stays whole in the u area. */
export interface WasmPlan {
  chunk: number;
  whole: number;
}

/** Row position (channel, offset in the row) of element `i0` of the channel view. */
function rowAt(i0: number, inner: number, channels: number): [number, number] {
  const row = Math.floor(i0 / inner);
  return [row % channels, i0 - row * inner];
}

function zeroSums(k: WasmKernel, channels: number): void {
  const { gp, gg, pp, pu } = k.sums;
  gp.fill(0, 0, channels);
  gg.fill(0, 0, channels);
  pp.fill(0, 0, channels);
  pu.fill(0, 0, channels);
}

function isProjected(info: Float64Array, o: number): number {
  const code = info[o + Info.decision];
  return code === Decision.channel || code === Decision.layer ? 1 : 0;
}

/**
 * One AdamP tensor, in two sweeps of chunks through the staging areas (p is copied in again for
 * the second sweep unless the tensor is a single chunk). A tensor of up to `plan.whole` elements
 * keeps its u in the kernel's u area between the sweeps; a larger one keeps it in `spill(n)`
 * (a scratch array of at least n elements).
 */
export function adampTensorWasm(k: WasmKernel, plan: WasmPlan, s: Slot, hp: AdamPScalars, info: Float64Array, o: number,
  spill: (n: number) => Float32Array): void {
  const { x, P, G, M, V, U, misc, pPtr, uPtr, gPtr, mPtr, vPtr } = k;
  const CH = plan.chunk;
  const { p, g, m, v } = s;
  const n = p.length;
  const bc1 = 1 - Math.pow(hp.beta1, s.step);
  const rSqrtBc2 = 1 / f(Math.sqrt(1 - Math.pow(hp.beta2, s.step)));
  const negStep = f(-(hp.lr / bc1));
  const decay = hp.weightDecay > 0;
  x.set_adamp(f(hp.beta1), f(1 - hp.beta1), f(hp.beta2), f(1 - hp.beta2), rSqrtBc2, f(hp.eps), hp.nesterov ? 1 : 0);

  if (!s.eligible) {
    x.set_apply(decay ? f(1 - hp.lr * hp.weightDecay) : 1, negStep);
    misc[0] = misc[1] = misc[2] = 0;
    for (let i0 = 0; i0 < n; i0 += CH) {
      const len = Math.min(CH, n - i0), i1 = i0 + len;
      P.set(p.subarray(i0, i1));
      G.set(g.subarray(i0, i1));
      M.set(m.subarray(i0, i1));
      V.set(v.subarray(i0, i1));
      x.adamp_flat(len, pPtr, gPtr, mPtr, vPtr, uPtr);
      p.set(P.subarray(0, len), i0);
      m.set(M.subarray(0, len), i0);
      v.set(V.subarray(0, len), i0);
    }
    writeNotEligible(info, o, misc[2], misc[0], misc[1]);
    return;
  }

  const { channels, inner } = s;
  x.set_shape(inner, channels);
  zeroSums(k, channels);
  const whole = n <= plan.whole;
  const us = whole ? U : spill(n);
  for (let i0 = 0; i0 < n; i0 += CH) {
    const len = Math.min(CH, n - i0), i1 = i0 + len;
    const w = whole ? i0 : 0;
    P.set(p.subarray(i0, i1));
    G.set(g.subarray(i0, i1));
    M.set(m.subarray(i0, i1));
    V.set(v.subarray(i0, i1));
    const [c, r] = rowAt(i0, inner, channels);
    x.adamp_pass1(len, c, r, pPtr, gPtr, mPtr, vPtr, uPtr + 4 * w);
    m.set(M.subarray(0, len), i0);
    v.set(V.subarray(0, len), i0);
    if (!whole) us.set(U.subarray(0, len), i0);
  }
  const ratio = decide(k.sums, channels, n, hp.delta, hp.wdRatio, hp.eps, info, o);
  x.set_apply(decay ? f(1 - hp.lr * hp.weightDecay * ratio) : 1, negStep);
  applySweep(k, plan, s, us, whole, null, info, o);
}

/**
 * Pass 2 of an eligible tensor, after decide() and set_apply(): p (and, when `buffer` is given,
 * the projected update written back into it: SGDP without Nesterov) from u, which is in the u area
 * when the tensor is whole, else in `us`. Writes the info record's norms.
 */
function applySweep(k: WasmKernel, plan: WasmPlan, s: Slot, us: Float32Array, whole: boolean, buffer: Float32Array | null,
  info: Float64Array, o: number): void {
  const { x, P, U, misc, pPtr, uPtr } = k;
  const CH = plan.chunk;
  const { p, channels, inner } = s;
  const n = p.length, multi = n > CH;
  const projected = isProjected(info, o);
  misc[0] = misc[1] = 0;
  for (let i0 = 0; i0 < n; i0 += CH) {
    const len = Math.min(CH, n - i0), i1 = i0 + len;
    const w = whole ? i0 : 0;
    if (multi) P.set(p.subarray(i0, i1));
    if (!whole) U.set(us.subarray(i0, i1));
    const [c, r] = rowAt(i0, inner, channels);
    x.apply(len, c, r, projected, buffer ? 1 : 0, pPtr, uPtr + 4 * w);
    p.set(P.subarray(0, len), i0);
    // the buffer: updated in pass 1 (copied out here when whole), projected in pass 2
    if (buffer && (whole || projected)) buffer.set(U.subarray(w, w + len), i0);
  }
  info[o + Info.normSqAfter] = misc[0];
  info[o + Info.deltaSq] = misc[1];
}

/**
 * One SGDP tensor (the buffer is `s.m`); without Nesterov the projected update is written back
 * into the buffer, which then takes the u area (it is u); with Nesterov the buffer streams
 * through M and u takes the u area, as for AdamP.
 */
export function sgdpTensorWasm(k: WasmKernel, plan: WasmPlan, s: Slot, hp: SGDPScalars, info: Float64Array, o: number,
  spill: (n: number) => Float32Array): void {
  const { x, P, G, M, U, misc, pPtr, uPtr, gPtr, mPtr } = k;
  const CH = plan.chunk;
  const { p, g, m } = s;
  const n = p.length;
  const negLr = f(-hp.lr);
  const nesterov = hp.nesterov;
  const decay = hp.weightDecay > 0;
  x.set_sgdp(f(hp.momentum), f(1 - hp.dampening), nesterov ? 1 : 0);

  if (!s.eligible) {
    x.set_apply(decay ? f(1 - (hp.lr * hp.weightDecay) / (1 - hp.momentum)) : 1, negLr);
    misc[0] = misc[1] = misc[2] = 0;
    for (let i0 = 0; i0 < n; i0 += CH) {
      const len = Math.min(CH, n - i0), i1 = i0 + len;
      P.set(p.subarray(i0, i1));
      G.set(g.subarray(i0, i1));
      M.set(m.subarray(i0, i1));
      x.sgdp_flat(len, pPtr, gPtr, mPtr, uPtr);
      p.set(P.subarray(0, len), i0);
      m.set(M.subarray(0, len), i0);
    }
    writeNotEligible(info, o, misc[2], misc[0], misc[1]);
    return;
  }

  const { channels, inner } = s;
  x.set_shape(inner, channels);
  zeroSums(k, channels);
  const whole = n <= plan.whole;
  // the array u is kept in between the sweeps when the tensor is not whole: the buffer itself, or a scratch array
  const us = whole ? U : nesterov ? spill(n) : m;
  for (let i0 = 0; i0 < n; i0 += CH) {
    const len = Math.min(CH, n - i0), i1 = i0 + len;
    const w = whole ? i0 : 0;
    P.set(p.subarray(i0, i1));
    G.set(g.subarray(i0, i1));
    const [c, r] = rowAt(i0, inner, channels);
    if (nesterov) {
      M.set(m.subarray(i0, i1));
      x.sgdp_pass1(len, c, r, pPtr, gPtr, mPtr, uPtr + 4 * w);
      m.set(M.subarray(0, len), i0);
    } else {
      U.set(m.subarray(i0, i1), w);
      x.sgdp_pass1(len, c, r, pPtr, gPtr, uPtr + 4 * w, uPtr + 4 * w);
    }
    if (!whole) us.set(U.subarray(0, len), i0);
  }
  const ratio = decide(k.sums, channels, n, hp.delta, hp.wdRatio, hp.eps, info, o);
  x.set_apply(decay ? f(1 - (hp.lr * hp.weightDecay * ratio) / (1 - hp.momentum)) : 1, negLr);
  applySweep(k, plan, s, us, whole, nesterov ? null : m, info, o);
}

export function writeNotEligible(info: Float64Array, o: number, before: number, after: number, delta: number): void {
  info[o + Info.decision] = Decision.notEligible;
  info[o + Info.channelMaxCos] = NaN;
  info[o + Info.channelThreshold] = NaN;
  info[o + Info.layerCos] = NaN;
  info[o + Info.layerThreshold] = NaN;
  info[o + Info.normSqBefore] = before;
  info[o + Info.normSqAfter] = after;
  info[o + Info.deltaSq] = delta;
}
