/**
 * Checks on everything a user hands the optimizer. They run before any byte of params or
 * state changes, and each message names the parameter and says what was wrong.
 */
import { AdampError, invalid } from './errors';
import { describe, label, shapeNumel, shapeText } from './core/describe';
import { DeviceTensor, viewsOverlap } from './device/tensor';
import type { AnyParam, DeviceParam, Param } from './types';

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
  return p.data instanceof DeviceTensor ? p.data.numel : p.data.length;
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
    const numel = checkDeviceData(d, who);
    checkChannelAxis(d.channelAxis, d.data.shape, who);
    return numel;
  }
  const q = p as Param;
  const who = label(q, index);
  const numel = shapeNumel(q.shape, `shape of ${who}`);
  if (!(q.data instanceof Float32Array)) {
    throw invalid(`data of ${who} must be a Float32Array, got ${describe(q.data)}`);
  }
  if (q.data.length !== numel) {
    throw invalid(`data length ${q.data.length} does not match shape ${shapeText(q.shape)} of ${who} (expected ${numel})` +
      (q.data.length === 0 && numel > 0 ? '; was its ArrayBuffer transferred or detached?' : ''));
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
  if (g instanceof Float32Array) {
    if (g.length !== t.numel) throw invalid(`grad length ${g.length} does not match shape ${shapeText(t.shape)} of ${who} (expected ${t.numel})`);
    return;
  }
  if (!(g instanceof DeviceTensor)) throw invalid(`grad of ${who} must be a DeviceTensor, a Float32Array or null, got ${describe(g)}`);
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
  if (!(g instanceof Float32Array)) throw invalid(`grad of ${who} must be a Float32Array or null, got ${describe(g)}`);
  if (g.length !== p.data.length) {
    throw invalid(`grad length ${g.length} does not match shape ${shapeText(p.shape)} of ${who} (expected ${p.data.length})` +
      (g.length === 0 && p.data.length > 0 ? '; was its ArrayBuffer transferred or detached?' : ''));
  }
  if (g.buffer === p.data.buffer && g.byteOffset < p.data.byteOffset + p.data.byteLength && p.data.byteOffset < g.byteOffset + g.byteLength) {
    throw invalid(`grad of ${who} overlaps its data in memory; they must be separate arrays`);
  }
}
