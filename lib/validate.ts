/**
 * Checks on everything a user hands the optimizer. They run before any byte of params or
 * state changes, and each message names the parameter and says what was wrong.
 */
import { types } from 'node:util';
import { AdampError, invalid } from './errors';
import { describe, label, shapeNumel, shapeText } from './core/describe';
import { DeviceTensor, viewsOverlap } from './device/tensor';
import { DTYPES, isFloat16Array, isUint16Array, type StorageDtype } from './core/half';
import type { AnyParam, DeviceParam, HalfParam, Param } from './types';

/**
 * A Float32Array from any realm (a `vm` context's arrays are not `instanceof` this realm's
 * Float32Array), told by its internal type rather than its prototype or its toStringTag, which an
 * object can fake (`Object.create(Float32Array.prototype)`, a Uint8Array with a spoofed tag).
 */
export function isFloat32Array(x: unknown): x is Float32Array {
  return types.isFloat32Array(x);
}

/**
 * Checks that a host array holds `numel` floats in a buffer the step can use: attached (its byte
 * length, which a detached buffer reports as 0, matches; `length` can read stale in optimised
 * code), fixed-size (a resizable or growable buffer could change under the step). Plain and
 * shared (SharedArrayBuffer) buffers are both fine.
 */
function checkHostArray(a: ArrayBufferView, numel: number, what: string, who: string, shape: readonly number[], bytes = 4): void {
  const buf = a.buffer as ArrayBufferLike & { resizable?: boolean; growable?: boolean };
  if (buf.resizable === true || buf.growable === true) {
    throw invalid(`${what} of ${who} is backed by a ${buf.growable ? 'growable SharedArrayBuffer' : 'resizable ArrayBuffer'}; params, grads and state need fixed-size buffers`);
  }
  if (a.byteLength !== numel * bytes || buf.byteLength < a.byteOffset + a.byteLength) {
    const len = a.byteLength / bytes;
    throw invalid(`${what} length ${len} does not match shape ${shapeText(shape)} of ${who} (expected ${numel})` +
      (len === 0 && numel > 0 ? '; was its ArrayBuffer transferred or detached?' : ''));
  }
}

/** A param's storage type (`'float32'` unless it says otherwise). */
export function dtypeOf(p: AnyParam): StorageDtype {
  if (p.data instanceof DeviceTensor) return p.data.dtype; // a device param's dtype is its tensor's (checkParamStatic: they agree)
  return (p as { dtype?: StorageDtype }).dtype ?? 'float32';
}

/** A host param stored in 16 bits. */
export function isHalfParam(p: AnyParam): p is HalfParam {
  const d = (p as { dtype?: unknown }).dtype;
  return (d === 'bfloat16' || d === 'float16') && !(p.data instanceof DeviceTensor);
}

/** Whether `x` holds 16-bit elements of `dtype` (a Uint16Array of bits; for float16 also a Float16Array). */
function isHalfArray(x: unknown, dtype: StorageDtype): boolean {
  return isUint16Array(x) || (dtype === 'float16' && isFloat16Array(x));
}

function checkDtype(d: unknown, who: string): StorageDtype {
  if (d === undefined) return 'float32';
  if (typeof d !== 'string' || !(DTYPES as readonly string[]).includes(d)) {
    throw invalid(`dtype of ${who} must be 'float32', 'bfloat16' or 'float16', got ${describe(d)}`);
  }
  return d as StorageDtype;
}

/** A param whose data lives on the GPU. */
export function isDeviceParam(p: AnyParam): p is DeviceParam {
  return p.data instanceof DeviceTensor;
}

/** A param's shape (device params may leave it to their tensor). */
export function shapeOf(p: AnyParam): readonly number[] {
  return p.shape ?? (p.data as DeviceTensor).shape;
}

/** A param's element count. */
export function numelOf(p: AnyParam): number {
  return p.data instanceof DeviceTensor ? p.data.numel : (p.data as { length: number }).length;
}

function checkDeviceData(q: DeviceParam, who: string): number {
  const t = q.data;
  if (t.disposed) throw new AdampError('ERR_ADAMP_DISPOSED', `data of ${who} is a DeviceTensor that was disposed; its memory is gone`);
  if (q.shape !== undefined) {
    if (!Array.isArray(q.shape) || q.shape.length !== t.shape.length || q.shape.some((n, d) => n !== t.shape[d])) {
      throw invalid(`shape ${Array.isArray(q.shape) ? shapeText(q.shape) : describe(q.shape)} of ${who} does not match its DeviceTensor's shape ${shapeText(t.shape)}`);
    }
  }
  return t.numel;
}

/** Checks the shape, data and channel axis of a param; returns numel. Does not look at grad. */
export function checkParamStatic(p: unknown, index: number): number {
  if (p === null || typeof p !== 'object') throw invalid(`param #${index} must be an object { data, grad, shape }, got ${describe(p)}`);
  if ((p as AnyParam).data instanceof DeviceTensor) {
    const d = p as DeviceParam;
    const who = label(d, index);
    if (d.name !== undefined && typeof d.name !== 'string') throw invalid(`name of param #${index} must be a string, got ${describe(d.name)}`);
    const declared = (d as { dtype?: unknown }).dtype;
    if (declared !== undefined && checkDtype(declared, who) !== d.data.dtype) {
      throw invalid(`dtype of ${who} is '${String(declared)}', but its DeviceTensor holds ${d.data.dtype}; omit dtype or make them agree`);
    }
    const numel = checkDeviceData(d, who);
    checkChannelAxis(d.channelAxis, d.data.shape, who);
    return numel;
  }
  const q = p as Param;
  const who = label(q, index);
  const dtype = checkDtype((q as { dtype?: unknown }).dtype, who);
  const numel = shapeNumel(q.shape, `shape of ${who}`);
  if (dtype === 'float32') {
    if (!isFloat32Array(q.data)) {
      throw invalid(`data of ${who} must be a Float32Array, got ${describe(q.data)}` +
        (isUint16Array(q.data) || isFloat16Array(q.data) ? "; 16-bit params need dtype 'bfloat16' or 'float16'" : ''));
    }
    checkHostArray(q.data, numel, 'data', who, q.shape);
  } else {
    if (!isHalfArray(q.data, dtype)) {
      throw invalid(`data of ${who} (dtype '${dtype}') must be a Uint16Array of ${dtype} bits${dtype === 'float16' ? ' or a Float16Array' : ''}, got ${describe(q.data)}`);
    }
    checkHostArray(q.data as ArrayBufferView, numel, 'data', who, q.shape, 2);
  }
  checkChannelAxis(q.channelAxis, q.shape, who);
  if (q.name !== undefined && typeof q.name !== 'string') throw invalid(`name of param #${index} must be a string, got ${describe(q.name)}`);
  return numel;
}

function checkChannelAxis(a: unknown, shape: readonly number[], who: string): void {
  if (a === undefined) return;
  const r = shape.length;
  if (typeof a !== 'number' || !Number.isInteger(a) || (r > 0 && (a < -r || a >= r)) || (r === 0 && a !== 0 && a !== -1)) {
    throw invalid(`channelAxis of ${who} must be an integer in [${-Math.max(r, 1)}, ${Math.max(r, 1) - 1}] for shape ${shapeText(shape)}, got ${describe(a)}`);
  }
}

/** Checks a device param's gradient: on the same device with the same shape, or a host array of numel. */
function checkDeviceGrad(p: DeviceParam, who: string): void {
  const g = p.grad;
  const t = p.data;
  if (isFloat32Array(g)) {
    checkHostArray(g, t.numel, 'grad', who, t.shape);
    return;
  }
  if (t.dtype !== 'float32' && isHalfArray(g, t.dtype)) {
    checkHostArray(g as unknown as ArrayBufferView, t.numel, 'grad', who, t.shape, 2);
    return;
  }
  if (!(g instanceof DeviceTensor)) {
    throw invalid(`grad of ${who} must be a DeviceTensor, a Float32Array${t.dtype !== 'float32' ? ` or Uint16Array of ${t.dtype} bits` : ''} or null, got ${describe(g)}`);
  }
  if (g.dtype !== 'float32' && g.dtype !== t.dtype) {
    throw invalid(`grad of ${who} is a ${g.dtype} DeviceTensor, its data ${t.dtype}; a device grad is float32 or the param's dtype`);
  }
  if (g.disposed) throw new AdampError('ERR_ADAMP_DISPOSED', `grad of ${who} is a DeviceTensor that was disposed; its memory is gone`);
  if (g.shape.length !== t.shape.length || g.shape.some((n, d) => n !== t.shape[d])) {
    throw invalid(`grad shape ${shapeText(g.shape)} does not match shape ${shapeText(t.shape)} of ${who}`);
  }
  if (g.device !== t.device) throw invalid(`grad of ${who} is on device ${g.device}, its data on device ${t.device}`);
  if (viewsOverlap(g.view(), t.view())) throw invalid(`grad of ${who} overlaps its data in device memory; they must be separate buffers`);
}

/** Checks a param's gradient (null is allowed: the param is skipped). */
export function checkGrad(p: AnyParam, index: number): void {
  const g = p.grad;
  if (g === null || g === undefined) return;
  const who = label(p, index);
  if (isDeviceParam(p)) {
    checkDeviceGrad(p, who);
    return;
  }
  if (g instanceof DeviceTensor) {
    throw invalid(`grad of ${who} is a DeviceTensor but its data is a Float32Array; put the data on the device too (DeviceTensor.fromHost), or download the gradient`);
  }
  const dtype = dtypeOf(p);
  const numel = p.data.byteLength / (dtype === 'float32' ? 4 : 2);
  if (dtype !== 'float32' && isHalfArray(g, dtype)) {
    checkHostArray(g as ArrayBufferView, numel, 'grad', who, p.shape, 2);
    return;
  }
  if (!isFloat32Array(g)) {
    throw invalid(`grad of ${who} must be ${dtype === 'float32' ? 'a Float32Array' : `a Uint16Array of ${dtype} bits${dtype === 'float16' ? ', a Float16Array' : ''}, a Float32Array`} or null, got ${describe(g)}`);
  }
  checkHostArray(g, numel, 'grad', who, p.shape);
}

/** One host array of a step, for the overlap check. */
export interface HostArray {
  a: ArrayBufferView;
  /** `data of param 'w'`, `grad of param #3`. */
  what: string;
  /** Grads are only read: two params may share one. */
  readOnly: boolean;
}

/**
 * No two host arrays of a step share memory, except grads with grads (both only read): a param
 * whose data overlaps another's, or whose grad is (part of) another param's data, would make the
 * result depend on param order.
 */
export function checkHostAliasing(arrays: readonly HostArray[]): void {
  const byBuffer = new Map<ArrayBufferLike, HostArray[]>();
  for (const x of arrays) {
    if (x.a.byteLength === 0) continue;
    const list = byBuffer.get(x.a.buffer);
    if (list) list.push(x);
    else byBuffer.set(x.a.buffer, [x]);
  }
  for (const list of byBuffer.values()) {
    if (list.length < 2) continue;
    list.sort((u, v) => u.a.byteOffset - v.a.byteOffset);
    // the writable array reaching furthest so far, and the furthest of any array
    let lastW: HostArray | null = null, lastAny: HostArray = list[0];
    for (const x of list) {
      const start = x.a.byteOffset;
      const clash = x.readOnly
        ? lastW !== null && start < lastW.a.byteOffset + lastW.a.byteLength ? lastW : null
        : start < lastAny.a.byteOffset + lastAny.a.byteLength && lastAny !== x ? lastAny : null;
      if (clash !== null) throw invalid(`${x.what} overlaps ${clash.what} in memory; every param's data needs its own memory, and a grad must not be a param's data`);
      if (!x.readOnly && (lastW === null || start + x.a.byteLength > lastW.a.byteOffset + lastW.a.byteLength)) lastW = x;
      if (start + x.a.byteLength > lastAny.a.byteOffset + lastAny.a.byteLength) lastAny = x;
    }
  }
}
