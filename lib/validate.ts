/**
 * Checks on everything a user hands the optimizer. They run before any byte of params or
 * state changes, and each message names the parameter and says what was wrong.
 */
import { invalid } from './errors';
import type { Param } from './types';

/** `where` prefixes messages, e.g. `paramGroups[1].lr`. */
export function finite(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw invalid(`${where} must be a finite number, got ${describe(value)}`);
  }
  return value;
}

export function nonNegative(value: unknown, where: string): number {
  const v = finite(value, where);
  if (v < 0) throw invalid(`${where} must be >= 0, got ${v}`);
  return v;
}

export function inUnitInterval(value: unknown, where: string): number {
  const v = finite(value, where);
  if (v < 0 || v >= 1) throw invalid(`${where} must be in [0, 1), got ${v}`);
  return v;
}

export function bool(value: unknown, where: string): boolean {
  if (typeof value !== 'boolean') throw invalid(`${where} must be a boolean, got ${describe(value)}`);
  return value;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '...' : value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as { length: number }).length}`;
  return `a ${typeof value === 'object' ? (value as object).constructor?.name ?? 'object' : typeof value}`;
}

/** The label used for a param in messages: its name, or its index over all groups. */
export function label(p: Param | undefined, index: number): string {
  return p && typeof p.name === 'string' && p.name.length > 0 ? `param '${p.name}'` : `param #${index}`;
}

export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/** Checks the shape, data and channel axis of a param; returns numel. Does not look at grad. */
export function checkParamStatic(p: unknown, index: number): number {
  if (p === null || typeof p !== 'object') throw invalid(`param #${index} must be an object { data, grad, shape }, got ${describe(p)}`);
  const q = p as Param;
  const who = label(q, index);
  if (!Array.isArray(q.shape)) throw invalid(`shape of ${who} must be an array of non-negative integers, got ${describe(q.shape)}`);
  let numel = 1;
  for (let d = 0; d < q.shape.length; d++) {
    const s = q.shape[d];
    if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0) {
      throw invalid(`shape of ${who} must hold non-negative integers, got ${describe(s)} at dimension ${d} of ${JSON.stringify(q.shape)}`);
    }
    numel *= s;
  }
  if (!(q.data instanceof Float32Array)) {
    throw invalid(`data of ${who} must be a Float32Array, got ${describe(q.data)}`);
  }
  if (q.data.length !== numel) {
    throw invalid(`data length ${q.data.length} does not match shape ${shapeText(q.shape)} of ${who} (expected ${numel})` +
      (q.data.length === 0 && numel > 0 ? '; was its ArrayBuffer transferred or detached?' : ''));
  }
  if (q.channelAxis !== undefined) {
    const a = q.channelAxis;
    const r = q.shape.length;
    if (typeof a !== 'number' || !Number.isInteger(a) || (r > 0 && (a < -r || a >= r)) || (r === 0 && a !== 0 && a !== -1)) {
      throw invalid(`channelAxis of ${who} must be an integer in [${-Math.max(r, 1)}, ${Math.max(r, 1) - 1}] for shape ${shapeText(q.shape)}, got ${describe(a)}`);
    }
  }
  if (q.name !== undefined && typeof q.name !== 'string') throw invalid(`name of param #${index} must be a string, got ${describe(q.name)}`);
  return numel;
}

/** Checks a param's gradient (null is allowed: the param is skipped). */
export function checkGrad(p: Param, index: number): void {
  const g = p.grad;
  if (g === null || g === undefined) return;
  const who = label(p, index);
  if (!(g instanceof Float32Array)) throw invalid(`grad of ${who} must be a Float32Array or null, got ${describe(g)}`);
  if (g.length !== p.data.length) {
    throw invalid(`grad length ${g.length} does not match shape ${shapeText(p.shape)} of ${who} (expected ${p.data.length})` +
      (g.length === 0 && p.data.length > 0 ? '; was its ArrayBuffer transferred or detached?' : ''));
  }
  if (g.buffer === p.data.buffer && g.byteOffset < p.data.byteOffset + p.data.byteLength && p.data.byteOffset < g.byteOffset + g.byteLength) {
    throw invalid(`grad of ${who} overlaps its data in memory; they must be separate arrays`);
  }
}
