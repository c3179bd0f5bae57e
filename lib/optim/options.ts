/**
 * Resolving option objects against a spec: unknown keys (including PyTorch's snake_case names)
 * are refused with a hint instead of being ignored, every value is checked, defaults fill in.
 */
import { invalid } from '../errors';
import { describe } from '../core/describe';
import type { AnySpec } from './spec';

const HINTS: Record<string, string> = {
  weight_decay: 'weightDecay',
  wd_ratio: 'wdRatio',
  weightdecay: 'weightDecay',
  wdratio: 'wdRatio',
  learning_rate: 'lr',
  learningRate: 'lr',
};

/** A did-you-mean for `key` among `known` (snake_case, case, a letter or two off). */
export function suggest(key: string, known: readonly string[]): string | undefined {
  if (HINTS[key] !== undefined && known.includes(HINTS[key])) return HINTS[key];
  const flat = key.replace(/_/g, '').toLowerCase();
  const same = known.find((k) => k.toLowerCase() === flat);
  if (same) return same;
  let best: string | undefined;
  let bestD = 3;
  for (const k of known) {
    const d = editDistance(flat, k.toLowerCase());
    if (d < bestD && d <= Math.max(1, Math.floor(k.length / 4))) {
      best = k;
      bestD = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

/** Throws for the first key of `obj` that is not in `known` (`params` allowed when `allowParams`). */
export function rejectUnknown(obj: object, known: readonly string[], where: string, what = 'an option', allowParams = true): void {
  for (const key of Object.keys(obj)) {
    if ((allowParams && key === 'params') || known.includes(key)) continue;
    const hint = suggest(key, known);
    throw invalid(`${where}.${key} is not ${what}${hint ? `; did you mean '${hint}'?` : ''} (${what === 'an option' ? 'options' : 'keys'}: ${known.join(', ')})`);
  }
}

/** A plain object (`{...}` or `Object.create(null)`), not an array, a Map or a class instance. */
export function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === null || proto === Object.prototype || Object.getPrototypeOf(proto) === null;
}

/**
 * How missing values are treated:
 * - `'construct'`: a missing or `undefined` option takes the default (`defaults` when given, else the spec's);
 * - `'strict'`: every option must be present and defined (a group at step time, a state dict's group).
 */
export type ResolveMode = 'construct' | 'strict';

/** Validates and completes one set of options of `spec` (`where` prefixes messages). */
export function resolveOptions(spec: AnySpec, input: unknown, defaults: Readonly<Record<string, unknown>> | null, where: string,
  mode: ResolveMode): Record<string, unknown> {
  if (!isPlainObject(input)) throw invalid(`${where} must be a plain object of ${spec.name} options, got ${describe(input)}`);
  const keys = spec.options.map((o) => o.key);
  rejectUnknown(input, keys, where);
  const out: Record<string, unknown> = {};
  for (const def of spec.options) {
    const has = Object.prototype.hasOwnProperty.call(input, def.key);
    let value = has ? input[def.key] : undefined;
    if (value === undefined) {
      if (mode === 'strict') {
        throw invalid(has
          ? `${where}.${def.key} is undefined; set it to a value (${spec.name}'s default is ${describe(def.default)})`
          : `${where}.${def.key} is missing; every ${spec.name} option must be set`);
      }
      value = defaults ? defaults[def.key] : def.default;
      if (value === undefined) throw invalid(`${where}.${def.key} is required for ${spec.name} (it has no default, as in ${spec.projects ? 'the official code' : 'PyTorch'})`);
    }
    out[def.key] = def.check(value, `${where}.${def.key}`);
  }
  spec.crossCheck?.(out, where);
  return out;
}
