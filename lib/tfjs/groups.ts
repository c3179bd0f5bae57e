/**
 * Per-variable groups of the TensorFlow.js optimizers: `groups: [{ select, ...options }]`, where
 * `select` is a RegExp tested on the variable's name (and, when that fails, on the name without
 * the `_N` suffix TensorFlow.js adds to names already taken) or a predicate `(name, shape) =>
 * boolean`. The first group whose `select` matches a variable gives it its options; the other variables
 * use the optimizer's options. In the core optimizer (state dicts, checkpoints) group 0 holds the
 * variables no group selected and group `k + 1` those of `groups[k]`.
 */
import { invalid } from '../errors';
import { describe } from '../core/describe';
import { isPlainObject, resolveOptions } from '../optim/options';
import type { AnySpec } from '../optim/spec';

/** Selects variables: a RegExp tested on the name, or a predicate of the name and shape. */
export type VariableSelector = RegExp | ((name: string, shape: readonly number[]) => boolean);

/** A group: which variables (`select`) and the options they take instead of the optimizer's. */
export type VariableGroup<O> = { select: VariableSelector } & Partial<O>;

/** A checked group: its selector and its option overrides (live: change them between steps, as `hyperparameters`). */
export interface ResolvedGroup<O> {
  readonly select: VariableSelector;
  /** The options this group sets (the others follow the optimizer's `hyperparameters`). */
  readonly options: Partial<O>;
}

/**
 * How a RegExp `select` is saved by `getConfig()`: its source cut at every underscore, and its
 * flags. (tfjs-layers camel-cases every string holding an underscore when it loads a saved
 * training config, `depthwise_kernel` -> `depthwiseKernel`; pieces without underscores survive.)
 */
export interface SerializedSelector {
  regexp: string[];
  flags: string;
}

/** Checks `options.groups` against a spec and the optimizer's resolved options. */
export function resolveGroups<O>(spec: AnySpec, groups: unknown, defaults: Record<string, unknown>): ResolvedGroup<O>[] {
  if (groups === undefined) return [];
  if (!Array.isArray(groups)) throw invalid(`options.groups must be an array of { select, ...options }, got ${describe(groups)}`);
  return groups.map((g, k) => {
    const where = `options.groups[${k}]`;
    if (!isPlainObject(g)) throw invalid(`${where} must be an object { select: RegExp | (name, shape) => boolean, ...options }, got ${describe(g)}`);
    const { select, ...options } = g;
    if (!(select instanceof RegExp) && typeof select !== 'function') {
      throw invalid(`${where}.select must be a RegExp (tested on the variable's name) or a function (name, shape) => boolean, got ${describe(select)}`);
    }
    // Every override is checked now, merged with the defaults as it will run (cross-option checks included).
    resolveOptions(spec, options, defaults, where, 'construct');
    return { select: select as VariableSelector, options: options as Partial<O> };
  });
}

/** Index of the first group selecting the variable, or -1. */
export function groupOf(groups: readonly ResolvedGroup<unknown>[], name: string, shape: readonly number[]): number {
  for (let k = 0; k < groups.length; k++) {
    const s = groups[k].select;
    let hit: unknown;
    if (s instanceof RegExp) {
      hit = test(s, name);
      // TensorFlow.js appends `_1`, `_2`... to a name taken before (a model built or loaded twice
      // in one process: `dense_Dense1/bias_1`): /bias$/ selects that variable too.
      const base = name.replace(/_\d+$/, '');
      if (!hit && base !== name) hit = test(s, base);
    } else {
      hit = s(name, shape.slice());
      if (typeof hit !== 'boolean') throw invalid(`options.groups[${k}].select returned ${describe(hit)} for variable '${name}'; it must return a boolean`);
    }
    if (hit) return k;
  }
  return -1;
}

function test(re: RegExp, text: string): boolean {
  re.lastIndex = 0; // a global or sticky RegExp keeps its position between tests
  const hit = re.test(text);
  re.lastIndex = 0;
  return hit;
}

export function serializeSelector(re: RegExp): SerializedSelector {
  return { regexp: re.source.split('_'), flags: re.flags };
}

/** A `select` read back from a config: a RegExp saved by `serializeSelector`. */
export function deserializeSelector(x: unknown, where: string): VariableSelector {
  if (isPlainObject(x) && Array.isArray(x.regexp) && x.regexp.every((s) => typeof s === 'string') && typeof x.flags === 'string') {
    try {
      return new RegExp((x.regexp as string[]).join('_'), x.flags);
    } catch (e) {
      throw invalid(`${where} is not a valid RegExp: ${(e as Error).message}`);
    }
  }
  if (x instanceof RegExp || typeof x === 'function') return x as VariableSelector;
  throw invalid(`${where} must be a saved RegExp { regexp: string[], flags: string } (what getConfig() writes), got ${describe(x)}`);
}
