/**
 * The WebAssembly SIMD path of the js backend for AdamP and SGDP: the same arithmetic as the
 * TypeScript loops of `./loops.ts` with their specs' element math, in the same units, bit for bit, four lanes at a time (kernel source: `./wasm/kernel.c`, rebuilt by
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
import { Decision, Info } from '../../core/info';
import { decide, type Sums } from '../../core/decision';
import type { AnySpec } from '../../optim/spec';
import type { AdamScalars } from '../../optim/adam-moments';
import type { MomentumScalars } from '../../optim/momentum';
import type { Slot } from '../engine';
import { UNIT } from './plan';
import { NORM_STRIDE } from './loops';
import { writeDecided, writeOnePass, type SumsScratch } from './records';
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

  /** Can this tensor of this optimizer run here? (The kernel has AdamP's and SGDP's arithmetic.) */
  takes(spec: AnySpec, s: Slot): boolean {
    return (spec.kind === 'adamp' || spec.kind === 'sgdp') && s.p.length <= 0x7fffffff && (!s.eligible || s.channels <= this.chmax);
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

/**
 * One AdamP or SGDP tensor through the kernel, in the js engine's units (./plan.ts): one-pass
 * tensors in blocks of UNIT elements; projected tensors with `outer == 1` (one unit per row: the
 * kernel's running sums are the unit folds) in one stream; `outer > 1` unit by unit, each unit's
 * sums and norms from 0, folded into `acc` in order. Each unit streams through the staging areas
 * in chunks. A tensor of up to `plan.whole` elements keeps u in the kernel's u area between the
 * sweeps; a larger one in `spill(n)`. SGDP without Nesterov: u is the buffer, written back when
 * projected.
 */
export function wasmTensor(k: WasmKernel, plan: WasmPlan, spec: AnySpec, opts: Readonly<Record<string, unknown>>, s: Slot,
  info: Float64Array, o: number, norms: boolean, acc: SumsScratch, spill: (n: number) => Float32Array): void {
  const { x, P, G, M, V, U, misc, pPtr, uPtr, gPtr, mPtr, vPtr } = k;
  const CH = plan.chunk;
  const { p, g } = s;
  const m = s.state[0];
  const adam = spec.kind === 'adamp';
  const v = adam ? s.state[1] : m;
  const n = p.length;
  const sc = spec.scalars(opts, s.step);
  let neg: number, nesterov: boolean;
  if (adam) {
    const a = sc as AdamScalars;
    x.set_adamp(a.b1, a.omb1, a.b2, a.omb2, a.rSqrtBc2, a.eps, a.nesterov ? 1 : 0);
    neg = a.negStep;
    nesterov = a.nesterov;
  } else {
    const b = sc as MomentumScalars;
    x.set_sgdp(b.mom, b.omd, b.nesterov ? 1 : 0);
    neg = b.negLr;
    nesterov = b.nesterov;
  }
  const nacc = new Float64Array(NORM_STRIDE);

  if (!s.eligible) {
    x.set_apply(spec.wdFactor(opts, 1), neg);
    for (let u0 = 0; u0 < n; u0 += UNIT) {
      misc[0] = misc[1] = misc[2] = 0;
      for (let i0 = u0, uEnd = Math.min(n, u0 + UNIT); i0 < uEnd; i0 += CH) {
        const len = Math.min(CH, uEnd - i0), i1 = i0 + len;
        P.set(p.subarray(i0, i1));
        G.set(g.subarray(i0, i1));
        M.set(m.subarray(i0, i1));
        if (adam) {
          V.set(v.subarray(i0, i1));
          x.adamp_flat(len, pPtr, gPtr, mPtr, vPtr, uPtr);
          v.set(V.subarray(0, len), i0);
        } else {
          x.sgdp_flat(len, pPtr, gPtr, mPtr, uPtr);
        }
        p.set(P.subarray(0, len), i0);
        m.set(M.subarray(0, len), i0);
      }
      nacc[0] += misc[2];
      nacc[1] += misc[0];
      nacc[2] += misc[1];
    }
    writeOnePass(spec, info, o, norms ? nacc : nacc.fill(NaN));
    return;
  }

  const { channels, inner, outer } = s;
  x.set_shape(inner, channels);
  const unitLen = outer === 1 ? n : channels * inner * Math.max(1, Math.ceil(UNIT / (channels * inner)));
  const whole = n <= plan.whole;
  // where u stays between the sweeps when the tensor is not whole: the buffer itself, or a scratch array
  const us = whole ? U : adam || nesterov ? spill(n) : m;
  if (outer > 1) acc.take(channels);
  zeroSums(k, channels);
  for (let u0 = 0; u0 < n; u0 += unitLen) {
    const uEnd = Math.min(n, u0 + unitLen);
    if (outer > 1 && u0 > 0) zeroSums(k, channels);
    for (let i0 = u0; i0 < uEnd; i0 += CH) {
      const len = Math.min(CH, uEnd - i0), i1 = i0 + len;
      const w = whole ? i0 : 0;
      P.set(p.subarray(i0, i1));
      G.set(g.subarray(i0, i1));
      const [c, r] = rowAt(i0, inner, channels);
      if (adam) {
        M.set(m.subarray(i0, i1));
        V.set(v.subarray(i0, i1));
        x.adamp_pass1(len, c, r, pPtr, gPtr, mPtr, vPtr, uPtr + 4 * w);
        m.set(M.subarray(0, len), i0);
        v.set(V.subarray(0, len), i0);
      } else if (nesterov) {
        M.set(m.subarray(i0, i1));
        x.sgdp_pass1(len, c, r, pPtr, gPtr, mPtr, uPtr + 4 * w);
        m.set(M.subarray(0, len), i0);
      } else {
        U.set(m.subarray(i0, i1), w);
        x.sgdp_pass1(len, c, r, pPtr, gPtr, uPtr + 4 * w, uPtr + 4 * w);
      }
      if (!whole) us.set(U.subarray(0, len), i0);
    }
    if (outer > 1) foldKernelSums(k, acc, channels);
  }
  if (outer > 1) {
    k.sums.gp.set(acc.gp.subarray(0, channels));
    k.sums.gg.set(acc.gg.subarray(0, channels));
    k.sums.pp.set(acc.pp.subarray(0, channels));
    k.sums.pu.set(acc.pu.subarray(0, channels));
  }
  const dp = spec.decisionParams!(opts);
  const fields = new Float64Array(6);
  const ratio = decide(k.sums, channels, n, dp.delta, dp.wdRatio, dp.eps, fields, 0);
  x.set_apply(spec.wdFactor(opts, ratio), neg);
  const code = fields[Info.decision];
  const projected = code === Decision.channel || code === Decision.layer ? 1 : 0;
  const buffer = adam || nesterov ? null : m;
  const multi = n > CH;
  for (let u0 = 0; u0 < n; u0 += unitLen) {
    const uEnd = Math.min(n, u0 + unitLen);
    misc[0] = misc[1] = 0;
    for (let i0 = u0; i0 < uEnd; i0 += CH) {
      const len = Math.min(CH, uEnd - i0), i1 = i0 + len;
      const w = whole ? i0 : 0;
      if (multi) P.set(p.subarray(i0, i1));
      if (!whole) U.set(us.subarray(i0, i1));
      const [c, r] = rowAt(i0, inner, channels);
      x.apply(len, c, r, projected, buffer ? 1 : 0, pPtr, uPtr + 4 * w);
      p.set(P.subarray(0, len), i0);
      // the buffer: updated in pass 1 (copied out here when whole), projected in pass 2
      if (buffer && (whole || projected)) buffer.set(U.subarray(w, w + len), i0);
    }
    nacc[1] += misc[0];
    nacc[2] += misc[1];
  }
  writeDecided(info, o, fields, norms ? nacc : nacc.fill(NaN));
}

/** acc += the kernel's per-channel sums (one unit's partial). */
function foldKernelSums(k: WasmKernel, acc: SumsScratch, channels: number): void {
  const { gp, gg, pp, pu } = k.sums;
  for (let c = 0; c < channels; c++) {
    acc.gp[c] += gp[c];
    acc.gg[c] += gg[c];
    acc.pp[c] += pp[c];
    acc.pu[c] += pu[c];
  }
}
