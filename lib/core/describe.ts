/**
 * Leaf helpers for messages and shapes, used by every layer (they import nothing but errors).
 */
import { invalid } from '../errors';

/** A short description of any value for error messages: `3`, `"abc"`, `a Float32Array of length 4`, `null`. */
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
export function label(p: { name?: unknown } | undefined, index: number): string {
  return p && typeof p.name === 'string' && p.name.length > 0 ? `param '${p.name}'` : `param #${index}`;
}

export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

/** Checks that `shape` is an array of non-negative integers (`where` names it); returns its element count. */
export function shapeNumel(shape: unknown, where: string): number {
  if (!Array.isArray(shape)) throw invalid(`${where} must be an array of non-negative integers, got ${describe(shape)}`);
  let numel = 1;
  for (let d = 0; d < shape.length; d++) {
    const s = shape[d];
    if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0) {
      throw invalid(`${where} must hold non-negative integers, got ${describe(s)} at dimension ${d} of ${JSON.stringify(shape)}`);
    }
    numel *= s;
  }
  return numel;
}
