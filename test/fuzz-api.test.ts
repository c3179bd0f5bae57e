/**
 * Seeded, reproducible fuzzing of everything a caller hands adamp except checkpoint bytes (those
 * are test/fuzz-checkpoint.test.ts): on the js and native backends, for AdamP, SGDP, AdamW and
 * SGD, thousands of generated bad inputs per run across
 *
 * - the constructor: params lists, param groups, options and config of every wrong type and value;
 * - params: wrong types, shapes (NaN, negative, fractional, huge, not matching), channel axes,
 *   names, detached, resizable and overlapping buffers, a grad that is another param's data;
 * - step-time mutations of a live optimizer with state: grads replaced (wrong length, type,
 *   detached, resizable, aliasing), data and shapes changed, channel axes, hyperparameters set to
 *   bad values, undefined or deleted, unknown keys, groups broken, added or replaced with bad
 *   params, a param in two groups; then step(), step(closure) or stepAsync();
 * - addParamGroup, zeroGrad, loadStateDict (malformed dicts, other optimizers' dicts, wrong
 *   lengths, steps and indices), stores (paramsFromStore / groupsFromStore: bad stores, selectors,
 *   entries, and a store whose get() answers differently at every call);
 * - the addon called directly (step, stepAsync, protocol*) with garbage in every argument and field,
 *   including getters that detach, transfer or shrink an array read before them.
 *
 * Every bad input must be refused with an AdampError carrying a code (the addon: a TypeError or
 * RangeError with code ERR_ADAMP_INVALID_ARGUMENT), and every param, grad and the optimizer's state
 * (its state dict: step counts, slots, hyperparameters) must be byte-identical afterwards; every
 * 400 trials the fuzzed optimizer and a twin that never saw a bad input take a valid step and must
 * agree bit for bit. Inputs that are valid by construction (foreign-realm and shared-memory
 * arrays, null-prototype options, a reshape that keeps the element count, ...) are generated on
 * purpose, counted as accepted, and must step exactly as their plain twins.
 *
 * ADAMP_FUZZ_SEED picks another seed; ADAMP_FUZZ_SCALE (default 1) multiplies the trial counts.
 */
import * as vm from 'vm';
import { AdamP, AdamW, AdampError, SGD, SGDP, groupsFromStore, paramsFromStore } from '../lib/index';
import type { Param } from '../lib/index';
import { loadAddon } from '../lib/binding/load';
import { availableBackends } from './helpers/backends';
import { randn, rng } from './helpers/random';

const SEED = Number(process.env.ADAMP_FUZZ_SEED ?? 20251201);
const SCALE = Number(process.env.ADAMP_FUZZ_SCALE ?? 1);
const BACKENDS = availableBackends().filter((b) => b === 'js' || b === 'native');

type Kind = 'AdamP' | 'SGDP' | 'AdamW' | 'SGD';
const KINDS: Kind[] = ['AdamP', 'SGDP', 'AdamW', 'SGD'];
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyOpt = any;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const CLASSES: Record<Kind, any> = { AdamP, SGDP, AdamW, SGD };
const OPTIONS: Record<Kind, Record<string, unknown>> = {
  AdamP: { lr: 0.01, weightDecay: 0.01 },
  SGDP: { lr: 0.1, momentum: 0.9, weightDecay: 1e-3 },
  AdamW: { lr: 0.01 },
  SGD: { lr: 0.1, momentum: 0.9 },
};
const GROUP2: Record<Kind, Record<string, unknown>> = {
  AdamP: { nesterov: true, lr: 0.02 }, SGDP: { nesterov: true }, AdamW: { weightDecay: 0 }, SGD: { nesterov: true },
};
/** Every option of each optimizer with values it refuses. */
const NUM_BAD: unknown[] = [NaN, Infinity, -Infinity, -1, -1e-30, '0.1', null, true, {}, [], [0.1], 1n, new Number(0.1), () => 0.1, Symbol('lr')];
const FINITE_BAD: unknown[] = [NaN, Infinity, -Infinity, '0', null, true, {}, [0], 0n, Symbol('d')];
const BOOL_BAD: unknown[] = [0, 1, 'true', 'false', null, {}, [], new Boolean(true), NaN, 1n];
const BETAS_BAD: unknown[] = [[0.9], [0.9, 0.999, 0.5], [1, 0.999], [0.9, 1], [-0.1, 0.9], [NaN, 0.9], [0.9, Infinity], ['0.9', 0.999], 0.9, null, {}, new Float64Array([0.9, 0.999]), '0.9,0.999', [0.9, null]];
function badValues(kind: Kind, key: string): unknown[] {
  if (key === 'betas') return BETAS_BAD;
  if (key === 'nesterov') return BOOL_BAD;
  if (key === 'dampening') return FINITE_BAD;
  return NUM_BAD;
}
const KEYS: Record<Kind, string[]> = {
  AdamP: ['lr', 'betas', 'eps', 'weightDecay', 'delta', 'wdRatio', 'nesterov'],
  SGDP: ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov', 'eps', 'delta', 'wdRatio'],
  AdamW: ['lr', 'betas', 'eps', 'weightDecay'],
  SGD: ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov'],
};
/** Option sets that are each fine alone and refused together. */
const CROSS_BAD: Partial<Record<Kind, Array<Record<string, unknown>>>> = {
  SGD: [{ nesterov: true, momentum: 0 }, { nesterov: true, dampening: 0.1 }],
  SGDP: [{ momentum: 1, weightDecay: 0.1 }, { momentum: 2.5, weightDecay: 1e-4 }],
};
const UNKNOWN_KEYS = ['weight_decay', 'wd_ratio', 'learningRate', 'Lr', 'beta1', 'foo', 'params2', 'momentum_', 'constructor', '__proto__', ''];
const SHAPES: number[][] = [[4, 6], [6], [], [3, 2, 2], [5, 1]];
const numel = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** Detached, resizable and foreign arrays. */
const realm = vm.createContext({});
function detached(n: number): Float32Array {
  const a = new Float32Array(n);
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
}
function resizable(n: number): Float32Array {
  const Ctor = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer;
  return new Float32Array(new Ctor(n * 4, { maxByteLength: n * 8 + 8 }));
}
function growable(n: number): Float32Array {
  const Ctor = SharedArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => SharedArrayBuffer;
  return new Float32Array(new Ctor(n * 4, { maxByteLength: n * 8 + 8 }));
}
function foreign(a: Float32Array): Float32Array {
  const f = vm.runInContext(`new Float32Array(${a.length})`, realm) as Float32Array;
  f.set(a);
  return f;
}
function shared(a: Float32Array): Float32Array {
  const s = new Float32Array(new SharedArrayBuffer(a.length * 4));
  s.set(a);
  return s;
}
/** Not a Float32Array: other views, arrays, buffers, look-alikes. */
function notF32(n: number, r: () => number): unknown {
  const pool: Array<() => unknown> = [
    () => new Float64Array(n), () => new Int32Array(n), () => new Uint8Array(n * 4), () => new DataView(new ArrayBuffer(n * 4)),
    () => Buffer.alloc(n * 4), () => Array.from({ length: n }, () => 0.5), () => new ArrayBuffer(n * 4), () => ({ length: n }),
    () => Object.defineProperty(Object.create(Float32Array.prototype), 'length', { value: n }), () => Object.defineProperty(new Uint8Array(n * 4), Symbol.toStringTag, { value: 'Float32Array' }), () => 'abc', () => n, () => true, () => Symbol('data'),
    () => 1n, () => new Map(), () => ({}), () => vm.runInContext(`new Float64Array(${n})`, realm), () => new Proxy({}, {}),
  ];
  return pool[Math.floor(r() * pool.length)]();
}
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];

// ------------------------------------------------------------------------------------------------
// Bookkeeping

interface Tally { tried: number; refused: Record<string, number>; accepted: number; acceptedWhy: Record<string, number> }
const tallies = new Map<string, Tally>(); // backend/category -> tally
const problems: string[] = [];
function tally(backend: string, cat: string): Tally {
  const key = `${backend}/${cat}`;
  let t = tallies.get(key);
  if (!t) tallies.set(key, (t = { tried: 0, refused: {}, accepted: 0, acceptedWhy: {} }));
  return t;
}

/** A param's arrays, by reference, with their bytes. */
type Captured = Array<[ArrayBufferView, Buffer]>;
function capture(ps: readonly Param[]): Captured {
  const out: Captured = [];
  for (const p of ps) {
    for (const a of [p.data, p.grad]) if (a && a.byteLength > 0) out.push([a, Buffer.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))]);
  }
  return out;
}
function unchanged(c: Captured): boolean {
  return c.every(([a, b]) => a.byteLength === b.length && Buffer.compare(Buffer.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)), b) === 0);
}
/** The optimizer's state dict as text (slots as their bytes), and its groups' hyperparameters. */
function stateText(opt: AnyOpt): string {
  return JSON.stringify(opt.stateDict(), (_k, v) => (ArrayBuffer.isView(v) ? Buffer.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)).toString('base64') : v));
}

/**
 * Judges one trial: `fn` applies a bad input (and undoes any mutation itself, in a finally) and
 * must throw an AdampError with a code (`addon`: a TypeError/RangeError with
 * ERR_ADAMP_INVALID_ARGUMENT), with `watch` byte-identical; `valid` names why an input is fine,
 * and then it must not throw (the caller checks its result).
 */
async function judge(backend: string, cat: string, name: string, fn: () => unknown, watch: { arrays: Captured; opt?: AnyOpt; before?: string }, opts: { addon?: boolean; valid?: string; either?: string } = {}): Promise<boolean> {
  const t = tally(backend, cat);
  t.tried++;
  let err: unknown;
  let threw = false;
  try {
    await fn();
  } catch (e) {
    threw = true;
    err = e;
  }
  const where = `${backend} ${cat}: ${name}`;
  if (opts.valid !== undefined) {
    if (threw) problems.push(`${where}: a valid input (${opts.valid}) was refused: ${(err as Error)?.name}: ${(err as Error)?.message}`);
    else {
      t.accepted++;
      t.acceptedWhy[opts.valid] = (t.acceptedWhy[opts.valid] ?? 0) + 1;
    }
    return !threw;
  }
  if (!threw && opts.either !== undefined) {
    t.accepted++;
    t.acceptedWhy[opts.either] = (t.acceptedWhy[opts.either] ?? 0) + 1;
    return true;
  }
  if (!threw) {
    problems.push(`${where}: accepted`);
    return false;
  }
  const e = err as { name?: unknown; code?: unknown; message?: unknown };
  const codeOk = typeof e?.code === 'string' && /^ERR_ADAMP_[A-Z_]+$/.test(e.code);
  const nameOk = opts.addon ? (e?.name === 'TypeError' || e?.name === 'RangeError') && e.code === 'ERR_ADAMP_INVALID_ARGUMENT' : e?.name === 'AdampError' && err instanceof AdampError;
  if (!codeOk || !nameOk) {
    problems.push(`${where}: refused without ${opts.addon ? 'a coded TypeError/RangeError' : 'an AdampError code'}: ${String(e?.name)} ${String(e?.code)}: ${String(e?.message)}`);
    return false;
  }
  t.refused[e.code as string] = (t.refused[e.code as string] ?? 0) + 1;
  if (!unchanged(watch.arrays)) problems.push(`${where}: refused (${String(e.code)}) but a param or grad changed`);
  if (watch.opt !== undefined) {
    let after: string;
    try {
      after = stateText(watch.opt);
    } catch (x) {
      problems.push(`${where}: the state dict cannot be read after the refusal: ${(x as Error).message}`);
      return false;
    }
    if (after !== watch.before) problems.push(`${where}: refused (${String(e.code)}) but the optimizer's state or hyperparameters changed`);
  }
  return true;
}

// ------------------------------------------------------------------------------------------------
// Fixtures

function makeParams(seed: number): Param[] {
  const r = rng(seed);
  return SHAPES.map((shape, i) => ({
    name: `p${i}`, data: randn(r, numel(shape)), grad: randn(r, numel(shape), 0.1), shape, ...(i === 3 ? { channelAxis: -1 } : {}),
  }));
}
function makeOptimizer(kind: Kind, ps: Param[], backend: string): AnyOpt {
  return new CLASSES[kind]([{ params: ps.slice(0, 2) }, { params: ps.slice(2), ...GROUP2[kind] }], OPTIONS[kind], { backend, threads: 1 });
}
function regrad(ps: Param[], seed: number): void {
  const r = rng(seed);
  ps.forEach((p, i) => { p.grad = i === 4 && seed % 3 === 0 ? null : randn(r, p.data.length, 0.1); });
}
function sameBytes(a: readonly Param[], b: readonly Param[]): boolean {
  return a.every((p, i) => Buffer.compare(Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength), Buffer.from(b[i].data.buffer, b[i].data.byteOffset, b[i].data.byteLength)) === 0);
}

interface Live { kind: Kind; backend: string; ps: Param[]; opt: AnyOpt; twinPs: Param[]; twin: AnyOpt; steps: number }
function live(kind: Kind, backend: string, seed: number): Live {
  const ps = makeParams(seed), twinPs = makeParams(seed);
  const opt = makeOptimizer(kind, ps, backend), twin = makeOptimizer(kind, twinPs, backend);
  for (let k = 0; k < 2; k++) {
    regrad(ps, seed + k);
    regrad(twinPs, seed + k);
    opt.step();
    twin.step();
  }
  return { kind, backend, ps, opt, twinPs, twin, steps: 2 };
}
/** A valid step on both; they must agree. */
function checkTwin(L: Live, where: string): void {
  L.steps++;
  regrad(L.ps, L.steps * 7919);
  regrad(L.twinPs, L.steps * 7919);
  L.opt.step();
  L.twin.step();
  if (!sameBytes(L.ps, L.twinPs) || stateText(L.opt) !== stateText(L.twin)) problems.push(`${L.backend} ${L.kind}: after ${where}, the fuzzed optimizer and its twin differ`);
}

// ------------------------------------------------------------------------------------------------
// Generators. Each returns [name, run, valid?]; run applies the input and restores what it mutated.

/** [name, run, valid: why it is fine, either: why accepting would be fine too] */
type Gen = [string, () => unknown, string?, string?];

/** A constructor call with one thing wrong (or, with `valid`, one unusual but valid thing). */
function constructorCase(kind: Kind, backend: string, r: () => number, ps: Param[]): Gen {
  const C = CLASSES[kind];
  const cfg = { backend };
  const base = OPTIONS[kind];
  const k = Math.floor(r() * 12);
  switch (k) {
    case 0: { // params not a list / empty / holes
      const v = pick(r, [undefined, null, 5, 'w', {}, new Map(), new Set(ps), ps[0], new Float32Array(4), [], [undefined], [null], [5], ['p0'], [ps[0], 3], [ps[0], undefined], Object.assign([], { length: 3 }), [[ps[0]]]] as unknown[]);
      return [`params = ${describeShort(v)}`, () => new C(v, base, cfg)];
    }
    case 1: { // an option bad
      const key = pick(r, KEYS[kind]);
      const v = pick(r, badValues(kind, key));
      return [`options.${key} = ${describeShort(v)}`, () => new C(ps, { ...base, [key]: v }, cfg)];
    }
    case 2: { // unknown option key / options not a plain object
      if (r() < 0.5) {
        const key = pick(r, UNKNOWN_KEYS);
        const o = JSON.parse(JSON.stringify({ ...base })) as Record<string, unknown>;
        Object.defineProperty(o, key, { value: 0.1, enumerable: true, writable: true, configurable: true });
        return [`options has key '${key}'`, () => new C(ps, o, cfg)];
      }
      const v = pick(r, [null, 5, 'lr', [], [0.1], new Map(), new (class Opts { lr = 0.1; })(), Object.create({ lr: 0.1 }), new Date(), /x/] as unknown[]);
      return [`options = ${describeShort(v)}`, () => new C(ps, v, cfg)];
    }
    case 3: { // cross-checked option pairs, missing required lr
      const cross = CROSS_BAD[kind];
      if (cross && r() < 0.6) {
        const o = pick(r, cross);
        return [`options ${JSON.stringify(o)}`, () => new C(ps, { ...base, ...o }, cfg)];
      }
      if (kind === 'SGD' || kind === 'SGDP') {
        const { lr: _lr, ...noLr } = base;
        return ['options without lr (required)', () => new C(ps, noLr, cfg)];
      }
      return ['options.lr = undefined in a group (the default applies): valid', () => new C([{ params: ps, lr: undefined }], base, cfg), 'an undefined option takes the default at construction'];
    }
    case 4: { // config
      const v = pick(r, [
        null, 5, 'native', [], { backend: 'gpu' }, { backend: 5 }, { backend: null }, { threads: 0 }, { threads: 257 }, { threads: 1.5 }, { threads: '2' },
        { threads: NaN }, { device: -1 }, { device: 1.5 }, { device: '0' }, { diagnostics: 'all' }, { diagnostics: true }, { stream: 1n }, { stream: 5 },
        { backnd: 'js' }, { thread: 1 }, { backend, extra: 1 }, new Map([['backend', 'js']]),
      ] as unknown[]);
      const c = v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Map) && !('backend' in v) ? { ...v, backend } : v;
      return [`config = ${describeShort(c)}`, () => new C(ps, base, c)];
    }
    case 5: { // a param with a bad field
      const i = Math.floor(r() * ps.length);
      const [what, bad] = badParam(ps[i], ps, r);
      const list = ps.map((p, j) => (j === i ? bad : p));
      return [`params[${i}] ${what}`, () => new C(list, base, cfg).step()];
    }
    case 6: { // groups: bad group entries
      const v = pick(r, [
        [{ params: ps.slice(0, 2) }, null], [{ params: ps.slice(0, 2) }, { params: 5 }], [{ params: ps.slice(0, 2) }, { params: ps[2] }],
        [{ params: ps.slice(0, 2) }, { params: [ps[2]], lr: -1 }], [{ params: ps.slice(0, 2) }, { params: [ps[2]], weight_decay: 0 }],
        [{ params: ps.slice(0, 2) }, { params: [ps[0]] }], [{ params: ps.slice(0, 2) }, ps[2]], [{ params: ps.slice(0, 2) }, new Map()],
        [{ params: ps.slice(0, 2) }, { params: [ps[2]], nesterov: 'yes' }], [{ params: ps.slice(0, 2) }, { params: [] , lr: NaN }],
        [{ params: ps.slice(0, 2), betas: [0.9] }], [{ params: [ps[0], ps[0]] }], [{ params: [5] }], [{ params: [{ data: ps[0].data }] }],
      ] as unknown[]);
      return [`groups ${describeShort(v)}`, () => new C(v, base, cfg)];
    }
    case 7: { // overlapping data across params / grad aliasing data
      const buf = new Float32Array(64);
      const a = { name: 'a', data: buf.subarray(0, 24), grad: new Float32Array(24), shape: [4, 6] };
      const b = pick(r, [
        { name: 'b', data: buf.subarray(20, 26), grad: new Float32Array(6), shape: [6] },
        { name: 'b', data: buf.subarray(30, 36), grad: buf.subarray(0, 6), shape: [6] },
        { name: 'b', data: buf.subarray(30, 36), grad: buf.subarray(33, 39), shape: [6] },
        { name: 'b', data: buf.subarray(0, 24), grad: new Float32Array(24), shape: [24] },
      ]);
      return [`overlapping arrays (${b.grad.buffer === buf.buffer ? 'grad aliases data' : 'data overlap'})`, () => new C([a, b], base, cfg).step()];
    }
    case 8: { // valid by construction: foreign-realm, shared memory, null-prototype options, reshape keeping numel
      const variant = Math.floor(r() * 4);
      const q: Array<{ data: Float32Array<ArrayBufferLike>; grad: Float32Array<ArrayBufferLike> | null; shape: readonly number[] }> = ps.map((p) => ({ ...p, data: p.data.slice(), grad: p.grad ? p.grad.slice() : null }));
      const twin = ps.map((p) => ({ ...p, data: p.data.slice(), grad: p.grad ? p.grad.slice() : null }));
      let why: string;
      if (variant === 0) { q.forEach((p) => { p.data = foreign(p.data); p.grad = p.grad ? foreign(p.grad) : null; }); why = 'arrays from another realm are Float32Arrays'; }
      else if (variant === 1) { q.forEach((p) => { p.data = shared(p.data); p.grad = p.grad ? shared(p.grad) : null; }); why = 'shared-memory arrays hold the floats in place'; }
      else if (variant === 2) { why = 'a null-prototype options object is a plain object'; }
      else { why = 'the same data in a shape with the same element count'; q[0].shape = [24]; twin[0].shape = [24]; }
      const opts = variant === 2 ? Object.assign(Object.create(null), base) : base;
      return [`valid: ${why}`, () => {
        const o = new C(q, opts, cfg), t = new C(twin, base, cfg);
        o.step(); t.step();
        if (!q.every((p, j) => Buffer.compare(Buffer.from(new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength)), Buffer.from(twin[j].data.buffer, twin[j].data.byteOffset, twin[j].data.byteLength)) === 0)) {
          throw new Error(`${why}: stepped differently from plain arrays`);
        }
      }, why];
    }
    case 9: { // a DeviceTensor-like object as data, or a param that is a class instance with getters
      const fake = pick(r, [
        { data: { numel: 24, shape: [4, 6], device: 0 }, grad: null, shape: [4, 6] },
        { data: ps[0].data, grad: ps[0].grad, shape: [4, 6], channelAxis: 2 },
        { data: ps[0].data, grad: ps[0].grad, shape: [4, 6], channelAxis: -3 },
        { data: ps[0].data, grad: ps[0].grad, shape: [4, 6], channelAxis: 0.5 },
        { data: ps[0].data, grad: ps[0].grad, shape: [4, 6], channelAxis: '0' },
        { data: ps[0].data, grad: ps[0].grad, shape: [4, 6], channelAxis: null },
        { data: ps[2].data, grad: ps[2].grad, shape: [], channelAxis: 1 },
        { data: ps[0].data, grad: ps[0].grad, shape: [4, 6], name: 5 },
      ] as unknown[]);
      return [`param ${describeShort(fake)}`, () => new C([fake], base, cfg)];
    }
    case 10: { // NaN / huge / fractional sizes
      const shape = pick(r, [[NaN], [4, NaN], [Infinity], [-4, -6], [2.5, 4], ['4', 6], [2 ** 53, 0], [4, 6, 1, 1, 0.5], [null], 24, '4,6', null, [1e308], [2 ** 31, 2 ** 31]] as unknown[]);
      return [`shape = ${describeShort(shape)}`, () => new C([{ data: new Float32Array(24), grad: new Float32Array(24), shape }], base, cfg)];
    }
    default: { // arrays in unusable buffers
      const variant = Math.floor(r() * 4);
      const n = 24;
      const data = variant === 0 ? detached(n) : variant === 1 ? resizable(n) : variant === 2 ? growable(n) : new Float32Array(n + 1);
      return [`data ${['detached', 'resizable', 'growable shared', 'one element too long'][variant]}`, () => new C([{ data, grad: new Float32Array(n), shape: [4, 6] }], base, cfg)];
    }
  }
}

/** A param with one field made bad (a copy; the original is untouched). */
function badParam(p: Param, all: Param[], r: () => number): [string, unknown] {
  const n = p.data.length;
  const k = Math.floor(r() * 10);
  switch (k) {
    case 0: return ['data not a Float32Array', { ...p, data: notF32(n, r) }];
    case 1: return ['data detached', { ...p, data: detached(n) }];
    case 2: return ['data resizable', { ...p, data: resizable(n) }];
    case 3: return ['shape mismatch', { ...p, shape: [n + 1] }];
    case 4: return ['grad wrong length', { ...p, grad: new Float32Array(n + 1) }];
    case 5: return ['grad not a Float32Array', { ...p, grad: notF32(n, r) }];
    case 6: return ['grad detached', { ...p, grad: n === 0 ? notF32(1, r) : detached(n) }];
    case 7: return ['not an object', pick(r, [null, undefined, 5, 'p', p.data, [p]] as unknown[])];
    case 8: return ['grad is another param\'s data', { ...p, grad: all.find((q) => q !== p && q.data.length === n)?.data ?? notF32(n, r) }];
    default: return ['channelAxis out of range', { ...p, channelAxis: p.shape.length + 1 }];
  }
}

function describeShort(v: unknown): string {
  try {
    const s = JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : typeof x === 'symbol' ? x.toString() : ArrayBuffer.isView(x) ? `<${x.constructor.name}(${(x as Float32Array).length})>` : x));
    return (s ?? String(typeof v)).slice(0, 80);
  } catch {
    return typeof v;
  }
}

/** A step-time mutation of a live optimizer followed by step(), step(closure) or stepAsync(). */
function stepTimeCase(L: Live, r: () => number): Gen {
  const { opt, ps } = L;
  const i = Math.floor(r() * ps.length);
  const p = ps[i];
  const n = p.data.length;
  const groups = opt.paramGroups as Array<Record<string, unknown>>;
  const gi = Math.floor(r() * groups.length);
  const g = groups[gi];
  const ops: Array<[string, () => unknown]> = [['step()', () => opt.step()], ['step(closure)', () => opt.step(() => 1)], ['stepAsync()', () => opt.stepAsync()]];
  const [opName, op] = pick(r, ops);
  /** Sets obj[key] = v for the duration of the op. */
  const withProp = (obj: Record<string, unknown>, key: string, v: unknown, del = false) => async () => {
    const had = Object.prototype.hasOwnProperty.call(obj, key);
    const old = obj[key];
    if (del) delete obj[key];
    else obj[key] = v;
    try {
      return await op();
    } finally {
      if (had) obj[key] = old;
      else delete obj[key];
    }
  };
  const pr = p as unknown as Record<string, unknown>;
  const k = Math.floor(r() * 15);
  switch (k) {
    case 14: { // a state whose step count cannot advance (loaded as valid): the step is refused before anything changes
      if (L.kind !== 'AdamP' && L.kind !== 'AdamW') return [`${opName} with grad of p${i} = null and p${(i + 1) % ps.length} wrong`, withProp(ps[(i + 1) % ps.length] as unknown as Record<string, unknown>, 'grad', new Float32Array(ps[(i + 1) % ps.length].data.length + 1))];
      return [`${opName} with a state at step ${Number.MAX_SAFE_INTEGER} (loaded)`, async () => {
        const sd = opt.stateDict();
        // a param that has a gradient now (a param without one is not stepped: no count advances)
        const flat = (opt.paramGroups as Array<{ params: Param[] }>).flatMap((grp) => grp.params);
        const at = String(flat.findIndex((q, j) => q.grad !== null && sd.state[j] !== undefined));
        const edited = { ...sd, state: { ...sd.state, [at]: { ...sd.state[at], step: Number.MAX_SAFE_INTEGER } } };
        opt.loadStateDict(edited);
        try { return await op(); } finally { opt.loadStateDict(sd); }
      }];
    }
    case 0: return [`${opName} with grad of p${i} of length ${n + 1}`, withProp(pr, 'grad', new Float32Array(n + 1))];
    case 1: return [`${opName} with grad of p${i} not a Float32Array`, withProp(pr, 'grad', notF32(n, r))];
    case 2: return [`${opName} with grad of p${i} detached/resizable`, withProp(pr, 'grad', n > 0 && r() < 0.5 ? detached(n) : resizable(n === 0 ? 1 : n))];
    case 3: { // grad aliasing a param's data
      const other = ps.find((q) => q !== p && q.data.length === n);
      return [`${opName} with grad of p${i} = data of ${other ? other.name : 'itself'}`, withProp(pr, 'grad', (other ?? p).data)];
    }
    case 4: return [`${opName} with data of p${i} of another length`, withProp(pr, 'data', new Float32Array(n + 2 + Math.floor(r() * 3)))];
    case 5: return [`${opName} with data of p${i} ${n > 0 ? 'detached' : 'not a Float32Array'}`, withProp(pr, 'data', n > 0 ? detached(n) : notF32(1, r))];
    case 6: return [`${opName} with shape of p${i} bad`, withProp(pr, 'shape', pick(r, [[n + 1], [NaN], null, 'x', [-n], [n, 0.5], [n === 0 ? 1 : n, 2]] as unknown[]))];
    case 7: { const rank = Math.max(p.shape.length, 1); return [`${opName} with channelAxis of p${i} bad`, withProp(pr, 'channelAxis', pick(r, [rank, -rank - 1, 0.5, NaN, '0', null, {}, 99] as unknown[]))]; }
    case 8: { // a hyperparameter bad / undefined / deleted / unknown key
      const key = pick(r, KEYS[L.kind]);
      const mode = Math.floor(r() * 4);
      if (mode === 0) return [`${opName} with paramGroups[${gi}].${key} undefined`, withProp(g, key, undefined)];
      if (mode === 1) return [`${opName} with paramGroups[${gi}].${key} deleted`, withProp(g, key, undefined, true)];
      if (mode === 2) { const u = pick(r, ['weight_decay', 'lR', 'foo', 'beta1', 'wd_ratio']); return [`${opName} with paramGroups[${gi}].${u} set`, withProp(g, u, 0.1)]; }
      const v = pick(r, badValues(L.kind, key));
      return [`${opName} with paramGroups[${gi}].${key} = ${describeShort(v)}`, withProp(g, key, v)];
    }
    case 9: { // cross-field
      const cross = CROSS_BAD[L.kind];
      if (!cross) return [`${opName} with paramGroups[${gi}].lr = -0.5`, withProp(g, 'lr', -0.5)];
      const o = pick(r, cross);
      return [`${opName} with paramGroups[${gi}] ${JSON.stringify(o)}`, async () => {
        const old = { ...g };
        Object.assign(g, o);
        try { return await op(); } finally { for (const key of Object.keys(o)) g[key] = old[key]; }
      }];
    }
    case 10: { // the group's params list broken
      const v = pick(r, [5, null, 'p', {}, [5], [null], [ps[0], ps[0]], [...(g.params as Param[]), ps[(gi === 0 ? 2 : 0)]], [{ data: new Float32Array(3), grad: null, shape: [4] }], new Set(g.params as Param[])] as unknown[]);
      return [`${opName} with paramGroups[${gi}].params = ${describeShort(v)}`, withProp(g, 'params', v)];
    }
    case 11: { // a bad group pushed / a group replaced
      const v = pick(r, [null, 5, { params: [ps[0]] }, { params: 5 }, { ...g, params: [{ data: new Float32Array(2), grad: new Float32Array(3), shape: [2] }] }, { ...g, lr: -1, params: [] }, new Map()] as unknown[]);
      if (r() < 0.5) {
        return [`${opName} with paramGroups.push(${describeShort(v)})`, async () => { groups.push(v as Record<string, unknown>); try { return await op(); } finally { groups.pop(); } }];
      }
      return [`${opName} with paramGroups[${gi}] = ${describeShort(v)}`, async () => { groups[gi] = v as Record<string, unknown>; try { return await op(); } finally { groups[gi] = g; } }];
    }
    case 12: { // a bad param in the last group after good ones: nothing of the earlier groups may change
      const last = groups[groups.length - 1];
      const lp = (last.params as Param[])[(last.params as Param[]).length - 1] as unknown as Record<string, unknown>;
      return [`${opName} with the last param's grad of the wrong length`, withProp(lp, 'grad', new Float32Array(((lp.data as Float32Array).length) + 3))];
    }
    default: { // the param's name made bad, or the param replaced by garbage in its group
      if (r() < 0.5) return [`${opName} with name of p${i} = 5`, withProp(pr, 'name', 5)];
      const list = g.params as unknown[];
      const j = Math.floor(r() * list.length);
      const v = pick(r, [null, 5, 'p', {}, { data: new Float32Array(1) }, [ps[0]]] as unknown[]);
      return [`${opName} with paramGroups[${gi}].params[${j}] = ${describeShort(v)}`, async () => { const old = list[j]; list[j] = v; try { return await op(); } finally { list[j] = old; } }];
    }
  }
}

/** addParamGroup, zeroGrad and loadStateDict on a live optimizer. */
function methodCase(L: Live, r: () => number, other: Record<Kind, AnyOpt>): Gen {
  const { opt, ps, kind } = L;
  const k = Math.floor(r() * 3);
  if (k === 0) {
    const fresh: Param = { name: 'new', data: new Float32Array(6).fill(0.5), grad: new Float32Array(6).fill(0.1), shape: [6] };
    const v = pick(r, [
      null, 5, 'g', [], [fresh], { params: 5 }, { params: fresh }, { params: [ps[0]] }, { params: [fresh, fresh] }, { params: [fresh], lr: -1 },
      { params: [fresh], weight_decay: 0.1 }, { params: [fresh], betas: [2, 0.9] }, { params: [fresh], nesterov: 1 }, { params: [{ ...fresh, shape: [7] }] },
      { params: [{ ...fresh, data: detached(6) }] }, { params: [{ ...fresh, data: ps[1].data }] }, new Map([['params', [fresh]]]), { params: [null] },
    ] as unknown[]);
    // Memory overlap is a step-time check (as for the constructor): a group accepted here must make the next step refuse.
    return [`addParamGroup(${describeShort(v)})`, async () => {
      const before = opt.paramGroups.length;
      try {
        opt.addParamGroup(v);
        if (opt.paramGroups.length === before) throw new Error('addParamGroup returned without adding a group');
        await opt.step();
      } finally {
        opt.paramGroups.length = before;
      }
    }];
  }
  if (k === 1) {
    const i = Math.floor(r() * ps.length);
    const p = ps[i] as unknown as Record<string, unknown>;
    if (r() < 0.4) {
      const v = pick(r, ['yes', 1, 0, null, {}, [], 'true', new Boolean(false)] as unknown[]);
      return [`zeroGrad(${describeShort(v)})`, () => opt.zeroGrad(v)];
    }
    const bad = pick(r, [notF32((p.data as Float32Array).length, r), new Float32Array((p.data as Float32Array).length + 1), resizable(Math.max(1, (p.data as Float32Array).length)), 7] as unknown[]);
    return [`zeroGrad() with grad of p${i} = ${describeShort(bad)}`, () => { const old = p.grad; p.grad = bad; try { opt.zeroGrad(); } finally { p.grad = old; } }];
  }
  // loadStateDict
  const sd = opt.stateDict();
  const clone = (): AnyOpt => ({ state: Object.fromEntries(Object.entries(sd.state).map(([key, s]) => [key, { ...(s as object) }])), paramGroups: sd.paramGroups.map((g: object) => ({ ...g, params: (g as { params: number[] }).params.slice() })) });
  const m = Math.floor(r() * 16);
  const d = clone();
  const firstState = Object.keys(d.state)[0];
  const slotKey = Object.keys(d.state[firstState]).find((x) => x !== 'step')!;
  let name: string;
  let v: unknown = d;
  switch (m) {
    case 0: v = pick(r, [null, 5, 'sd', [], new Map(), { state: {} }, { paramGroups: [] }]); name = `not a state dict: ${describeShort(v)}`; break;
    case 1: d.extra = 1; name = 'an unknown key'; break;
    case 2: d.paramGroups = pick(r, [5, null, {}, d.paramGroups.slice(0, 1), [...d.paramGroups, d.paramGroups[0]]]); name = 'paramGroups wrong'; break;
    case 3: d.paramGroups[0].params = pick(r, [[0], [0, 1, 2], [0, 0], [-1, 1], [0.5, 1], ['0', 1], [NaN, 1], [2 ** 53, 1], 5]); name = `paramGroups[0].params = ${describeShort(d.paramGroups[0].params)}`; break;
    case 4: { const key = pick(r, KEYS[kind]); d.paramGroups[1][key] = pick(r, badValues(kind, key)); name = `paramGroups[1].${key} bad`; break; }
    case 5: { const key = pick(r, KEYS[kind]); delete d.paramGroups[0][key]; name = `paramGroups[0].${key} missing`; break; }
    case 6: d.paramGroups[0].foo = 1; name = 'paramGroups[0] has an unknown option'; break;
    case 7: d.state = pick(r, [null, 5, [], 'x']); name = `state = ${describeShort(d.state)}`; break;
    case 8: d.state[pick(r, ['9', '-1', 'x', '0.5', '1e3'])] = d.state[firstState]; name = 'state for an index no group lists'; break;
    case 9: d.state[firstState][slotKey] = pick(r, [new Float32Array(1), new Float64Array(d.state[firstState][slotKey].length), null, 5, detached(3), Array.from(d.state[firstState][slotKey] as Float32Array)]); name = `state.${firstState}.${slotKey} bad`; break;
    case 10: d.state[firstState].extra = new Float32Array(1); name = 'a state key of another optimizer'; break;
    case 11: {
      if (kind === 'AdamP' || kind === 'AdamW') { d.state[firstState].step = pick(r, [-1, 1.5, NaN, '2', null, 2 ** 53, Infinity]); name = `state step = ${describeShort(d.state[firstState].step)}`; }
      else { d.state[firstState].step = 3; name = 'a step count in a state without one'; }
      break;
    }
    case 12: case 13: { // another optimizer's state dict
      const o = pick(r, KINDS.filter((x) => x !== kind));
      v = other[o].stateDict(); name = `the state dict of ${o}`; break;
    }
    case 14: delete d.state[firstState][slotKey]; name = `state.${firstState}.${slotKey} missing`; break;
    default: { // a state array of another param's length
      const keys = Object.keys(d.state);
      const a = d.state[keys[0]], b = d.state[keys[keys.length - 1]];
      if (a[slotKey].length === b[slotKey].length) { a[slotKey] = new Float32Array(a[slotKey].length + 1); }
      else a[slotKey] = b[slotKey];
      name = 'a state array of the wrong length';
    }
  }
  return [`loadStateDict: ${name}`, () => opt.loadStateDict(v)];
}

/** Stores: bad stores, selectors, entries, and a store whose answers change at every call. */
function storeCase(kind: Kind, backend: string, r: () => number, ps: Param[]): Gen {
  const C = CLASSES[kind];
  const cfg = { backend };
  const entries = (): Map<string, { data: Float32Array; grad: Float32Array | null; shape: readonly number[]; channelAxis?: number }> =>
    new Map(ps.map((p) => [p.name!, { data: p.data, grad: p.grad, shape: p.shape, ...(p.channelAxis !== undefined ? { channelAxis: p.channelAxis } : {}) }]));
  const k = Math.floor(r() * 8);
  switch (k) {
    case 0: { const v = pick(r, [null, 5, {}, { keys: 5, get: () => undefined }, { keys: () => [], get: 5 }, [], 'store'] as unknown[]); return [`paramsFromStore(${describeShort(v)})`, () => new C(paramsFromStore(v as never), OPTIONS[kind], cfg)]; }
    case 1: { const v = pick(r, [5, [5], ['nope'], /nomatch/, () => false, {}, 'p0', [null]] as unknown[]); return [`select = ${describeShort(v)}`, () => new C(paramsFromStore(entries(), { select: v as never }), OPTIONS[kind], cfg)]; }
    case 2: { // a bad entry
      const s = entries();
      const name = pick(r, ps).name!;
      const e = s.get(name)!;
      const bad = pick(r, [{ ...e, shape: [e.data.length + 1] }, { ...e, data: notF32(e.data.length, r) }, { ...e, grad: new Float32Array(e.data.length + 1) }, { ...e, channelAxis: 9 }, null, 5] as unknown[]);
      s.set(name, bad as never);
      return [`store entry '${name}' = ${describeShort(bad)}`, () => new C(paramsFromStore(s), OPTIONS[kind], cfg).step()];
    }
    case 3: { const v = pick(r, [5, null, [null], [{ select: 5 }], [{ select: /nomatch/ }], [{ select: /./ }, { select: /./ }], [{ select: /p0/, lr: -1 }], [{ select: /p0/, weight_decay: 1 }], {}] as unknown[]); return [`groupsFromStore(${describeShort(v)})`, () => new C(groupsFromStore(entries(), v as never), OPTIONS[kind], cfg)]; }
    case 4: return ['channelAxis option out of range', () => new C(paramsFromStore(entries(), { channelAxis: 7 }), OPTIONS[kind], cfg)];
    case 5: { // a tensor removed from the store after the params were made
      const s = entries();
      const params = paramsFromStore(s);
      return ['a tensor removed from the store before construction', () => { s.delete(ps[1].name!); return new C(params, OPTIONS[kind], cfg); }];
    }
    case 6: case 7: { // flaky: one get() during the step answers with a bad entry, every other with the good one
      let calls = 0;
      const good = entries();
      const badAt = 1 + Math.floor(r() * 12);
      const variant = Math.floor(r() * 4);
      const badEntry = (e: { data: Float32Array; grad: Float32Array | null; shape: readonly number[] }) => [
        { ...e, grad: new Float32Array(e.data.length + 5) }, { ...e, data: new Float32Array(e.data.length + 5) }, { ...e, shape: [e.data.length + 5] },
        { ...e, grad: notF32(e.data.length, r) },
      ][variant];
      let stepping = false;
      const flaky = { keys: () => good.keys(), get: (n: string) => { const e = good.get(n); if (stepping && e && ++calls === badAt) return badEntry(e); return e; } };
      const ref = ps.map((p) => ({ ...p, data: p.data.slice(), grad: p.grad ? p.grad.slice() : null }));
      return [`a store whose get() #${badAt} of the step answers ${['a long grad', 'a long data', 'a wrong shape', 'a grad of another type'][variant]}`, () => {
        const o = new C(paramsFromStore(flaky as never), OPTIONS[kind], cfg);
        const t = new C(ref, OPTIONS[kind], cfg);
        const before = capture(ps);
        stepping = true;
        try {
          o.step();
        } catch (e) {
          if (!unchanged(before)) throw new Error('a refused step changed a param (half applied)');
          throw e;
        } finally {
          stepping = false;
        }
        t.step();
        // accepted: then the bad answer was read where it changes nothing, and the step is the good one's
        if (!ps.every((p, j) => Buffer.compare(Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength), Buffer.from(ref[j].data.buffer, ref[j].data.byteOffset, ref[j].data.byteLength)) === 0)) {
          throw new Error('the step validated one answer and stepped with another');
        }
      }, undefined, 'the step used only good answers (read once each) and equals the plain step'];
    }
    default: return ['unreachable', () => undefined];
  }
}

/**
 * Lifecycle: a call while this optimizer's stepAsync() is in flight (native: ERR_ADAMP_STEP_IN_FLIGHT,
 * the step completing as if alone), or after dispose() (ERR_ADAMP_DISPOSED). Judged against a
 * twin that took the same valid step.
 */
async function lifecycleTrial(kind: Kind, backend: string, r: () => number, t: number): Promise<void> {
  const ps = makeParams(SEED + 7 + t), twinPs = makeParams(SEED + 7 + t);
  const opt = makeOptimizer(kind, ps, backend), twin = makeOptimizer(kind, twinPs, backend);
  const sd = opt.stateDict();
  const calls: Array<[string, () => unknown]> = [
    ['step()', () => opt.step()], ['step(closure)', () => opt.step(() => 1)], ['stepAsync()', () => opt.stepAsync()], ['zeroGrad()', () => opt.zeroGrad()],
    ['zeroGrad(true)', () => opt.zeroGrad(true)], ['stateDict()', () => opt.stateDict()], ['loadStateDict()', () => opt.loadStateDict(sd)],
    ['synchronize()', () => opt.synchronize()], ['dispose()', () => opt.dispose()], ['setStream(null)', () => opt.setStream(null)],
    ['addParamGroup()', () => opt.addParamGroup({ params: [{ data: new Float32Array(2), grad: null, shape: [2] }] })],
  ];
  const inFlight = backend === 'native' && r() < 0.6;
  if (inFlight) {
    const [name, call] = pick(r, calls);
    const pending = opt.stepAsync();
    // the worker thread is writing the params: only the grads (read) are compared now, the rest with the twin after the step
    const grads = capture(ps.map((p) => ({ ...p, data: new Float32Array(0) })));
    const before = tally(backend, 'in-flight').refused.ERR_ADAMP_STEP_IN_FLIGHT ?? 0;
    await judge(backend, 'in-flight', `${kind} #${t} ${name} during stepAsync()`, async () => { await call(); }, { arrays: grads });
    if ((tally(backend, 'in-flight').refused.ERR_ADAMP_STEP_IN_FLIGHT ?? 0) !== before + 1) problems.push(`${backend} ${kind} #${t}: ${name} during stepAsync() was not refused with ERR_ADAMP_STEP_IN_FLIGHT`);
    await pending;
    twin.step();
  } else {
    const [name, call] = pick(r, calls.filter(([n]) => /^(step|addParamGroup|setStream)/.test(n)));
    opt.dispose();
    await judge(backend, 'disposed', `${kind} #${t} ${name} after dispose()`, async () => { await call(); }, { arrays: capture(ps) });
  }
  if (!sameBytes(ps, twinPs) || stateText(opt) !== stateText(twin)) problems.push(`${backend} ${kind} #${t}: the lifecycle trial changed the optimizer`);
}

// ------------------------------------------------------------------------------------------------
// The addon directly

interface AddonCase { name: string; run: () => unknown; arrays: Captured }
function addonCase(addon: NonNullable<ReturnType<typeof addonOf>>, r: () => number): AddonCase {
  const kinds = ['adamp', 'sgdp', 'adamw', 'sgd'] as const;
  const kind = pick(r, kinds);
  const slotsN = kind === 'adamp' || kind === 'adamw' ? 2 : 1;
  const hyperOf: Record<string, number[]> = {
    adamp: [1e-3, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 0], sgdp: [0.1, 0.9, 0, 0, 0, 1e-8, 0.1, 0.1], adamw: [1e-3, 0.9, 0.999, 1e-8, 0.01], sgd: [0.1, 0.9, 0, 0, 0],
  };
  const n = 12;
  const mkSlot = (): Record<string, unknown> => ({
    p: Float32Array.from({ length: n }, (_, i) => Math.sin(i)), g: Float32Array.from({ length: n }, (_, i) => Math.cos(i)),
    state: Array.from({ length: slotsN }, () => new Float32Array(n)), outer: 1, channels: 3, inner: 4, eligible: true, step: 1,
  });
  const slots = [mkSlot(), mkSlot()];
  const hyper = Float64Array.from(hyperOf[kind]);
  const info = new Float64Array(16);
  const arrays: Captured = [];
  for (const s of slots) for (const a of [s.p, s.g, ...(s.state as Float32Array[])] as Float32Array[]) arrays.push([a, Buffer.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))]);
  // garbage for one field
  const GARBAGE: unknown[] = [undefined, null, NaN, -1, 1.5, 2 ** 53, Infinity, -0.5, '1', 'adamp', true, 0n, Symbol('x'), {}, [], [1, 2], () => 1,
    new Float64Array(n), new Float32Array(n + 1), new Float32Array(0), new Int32Array(n), detached(n), new Proxy({}, {}), new Map(), Object.create(null), new Date(0)];
  const g = () => pick(r, GARBAGE);
  const field = Math.floor(r() * 18);
  const s0 = slots[Math.floor(r() * 2)];
  let name: string;
  const stepArgs: unknown[] = [kind, slots, hyper, info, { threads: 1 }];
  const set = (o: Record<string, unknown>, key: string, valid: (v: unknown) => boolean): string => {
    let v = g();
    for (let t = 0; t < 20 && valid(v); t++) v = g();
    if (valid(v)) v = Symbol('bad');
    o[key] = v;
    return `${key} = ${describeShort(v)}`;
  };
  const isF32n = (v: unknown) => v instanceof Float32Array && v.length === n && v.byteLength === n * 4;
  const isCount = (want: number) => (v: unknown) => v === want;
  switch (field) {
    case 0: { let v = g(); if (typeof v === 'string' && kinds.includes(v as never)) v = 'adam'; stepArgs[0] = v; name = `kind = ${describeShort(v)}`; break; }
    case 1: { let v = pick(r, [g(), [g()], [slots[0], g()]]); if (Array.isArray(v) && v.length === 0) v = [[]]; stepArgs[1] = v; name = `slots = ${describeShort(v)}`; break; } // [] is a valid empty step
    case 2: name = `slot.${set(s0, 'p', isF32n)}`; break;
    case 3: name = `slot.${set(s0, 'g', isF32n)}`; break;
    case 4: name = `slot.state = ${describeShort((s0.state = pick(r, [g(), [g()], Array.from({ length: slotsN + 1 }, () => new Float32Array(n))])))}`; break;
    case 5: { const st = s0.state as unknown[]; st[Math.floor(r() * slotsN)] = pick(r, [new Float64Array(n), new Float32Array(n - 1), detached(n), null, s0.p, s0.g]); name = 'slot.state[k] bad'; break; }
    case 6: name = `slot.${set(s0, 'outer', isCount(1))}`; break;
    case 7: name = `slot.${set(s0, 'channels', isCount(3))}`; break;
    case 8: name = `slot.${set(s0, 'inner', isCount(4))}`; break;
    case 9: name = `slot.${set(s0, 'eligible', (v) => typeof v === 'boolean')}`; break;
    case 10: name = `slot.${set(s0, 'step', (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1)}`; break;
    case 11: { const h = pick(r, [g(), Float64Array.from(hyperOf[kind]).fill(NaN), new Float64Array(hyperOf[kind].length + 1), Float64Array.from(hyperOf[kind], (x, i) => (i === 0 ? -x : x))]); stepArgs[2] = h; name = `hyper = ${describeShort(h)}`; break; }
    case 12: { let v = g(); if (v instanceof Float64Array && v.length >= 16) v = new Float64Array(15); stepArgs[3] = v; name = `info = ${describeShort(v)}`; break; }
    case 13: { const v = pick(r, [5, 'x', [], { threads: -1 }, { threads: 1.5 }, { threads: 257 }, { threads: '1' }, { norms: 1 }, { norms: 'yes' }, null]); stepArgs[4] = v; name = `options = ${describeShort(v)}`; break; }
    case 14: { // aliasing
      const b = new Float32Array(3 * n);
      const which = Math.floor(r() * 3);
      if (which === 0) s0.g = s0.p;
      else if (which === 1) { s0.p = b.subarray(0, n); (s0.state as Float32Array[])[0] = b.subarray(n - 1, 2 * n - 1); }
      else (s0.state as Float32Array[])[slotsN - 1] = s0.p as Float32Array;
      name = 'slot arrays overlap';
      break;
    }
    case 15: { // a getter that detaches an array read before it, or shrinks a resizable one
      const victim = new Float32Array(n);
      s0.p = victim;
      const st = s0.state;
      Object.defineProperty(s0, 'state', { enumerable: true, get() { structuredClone(victim.buffer, { transfer: [victim.buffer] }); return st; } });
      name = 'a getter detaching p after it was read';
      break;
    }
    case 16: { // empty geometry of many rows
      const e = { p: new Float32Array(0), g: new Float32Array(0), state: Array.from({ length: slotsN }, () => new Float32Array(0)), outer: pick(r, [2, 1e9, 2 ** 40]), channels: pick(r, [2, 1e9, 2 ** 40]), inner: 0, eligible: true, step: 1 };
      stepArgs[1] = [e];
      name = `an empty tensor of ${e.outer} x ${e.channels} rows`;
      break;
    }
    default: name = 'protocol'; break;
  }
  const entry = Math.floor(r() * 3);
  let run: () => unknown;
  if (field === 17 || (entry === 2 && field >= 2 && field <= 13)) {
    // the protocol exports with garbage
    const geo = { outer: 1, channels: 3, inner: 4, eligible: true, numel: n };
    const shard = { ...slots[0], offset: 0, numel: n };
    const p = Math.floor(r() * 5);
    const bad = g();
    const protoKind = kind === 'adamw' || kind === 'sgd' ? 'adamp' : kind;
    const h = Float64Array.from(hyperOf[protoKind]);
    const calls: Array<[string, () => unknown]> = [
      ['protocolUnits', () => addon.protocolUnits(protoKind, pick(r, [bad, { ...geo, numel: 13 }, { ...geo, outer: bad }, { ...geo, numel: 0, inner: 0, outer: 2 ** 40 }]) as never)],
      ['protocolStats', () => addon.protocolStats(protoKind, pick(r, [bad, { ...shard, offset: 1 }, { ...shard, p: bad }, { ...shard, numel: bad }]) as never, h, 0, pick(r, [bad, 99, -1]) as never)],
      // partials are opaque numbers: any Float64Array of the right length is valid, so a wrong length
      ['protocolDecide', () => addon.protocolDecide(protoKind, geo, h, pick(r, [bad instanceof Float64Array ? new Float64Array(bad.length + 1) : bad, new Float64Array(3)]) as never)],
      ['protocolApply', () => addon.protocolApply(protoKind, shard as never, h, pick(r, [bad, new Float64Array(2), Float64Array.of(99, 0, 0, 0)]) as never, 0, 1, pick(r, [true, bad]) as never)],
      ['protocolFinish', () => addon.protocolFinish(protoKind, geo, pick(r, [bad, new Float64Array(1)]) as never, new Float64Array(3), pick(r, [bad, new Float64Array(4)]) as never, pick(r, [0, bad, 1]) as never)],
    ];
    const [pn, call] = calls[p];
    name = `${pn} with garbage (${describeShort(bad)})`;
    run = call;
  } else if (entry === 1) {
    // the jobs form: stepAsync, or stepJobs (the facade's synchronous step of several groups)
    const jobs = [{ kind: stepArgs[0], slots: stepArgs[1], hyper: stepArgs[2], info: stepArgs[3] }] as never;
    if (r() < 0.5) {
      name = `stepAsync: ${name}`;
      run = () => addon.stepAsync(jobs, stepArgs[4] as never);
    } else {
      name = `stepJobs: ${name}`;
      run = () => addon.stepJobs(jobs, stepArgs[4] as never);
    }
  } else {
    name = `step: ${name}`;
    run = () => addon.step(...(stepArgs as Parameters<typeof addon.step>));
  }
  return { name, run, arrays };
}

function addonOf() {
  const r = loadAddon();
  return 'addon' in r ? r.addon : undefined;
}

// ------------------------------------------------------------------------------------------------

const COUNTS = {
  construct: Math.round(500 * SCALE), params: Math.round(200 * SCALE), stepTime: Math.round(450 * SCALE), methods: Math.round(300 * SCALE), stores: Math.round(120 * SCALE), lifecycle: Math.round(60 * SCALE),
};
const ADDON_TRIALS = Math.round(3000 * SCALE);

afterAll(() => {
  const rows: string[] = [];
  let tried = 0, refused = 0, accepted = 0;
  const codes: Record<string, number> = {};
  const why: Record<string, number> = {};
  for (const [key, t] of [...tallies.entries()].sort()) {
    const ref = Object.values(t.refused).reduce((a, b) => a + b, 0);
    tried += t.tried; refused += ref; accepted += t.accepted;
    for (const [c, k] of Object.entries(t.refused)) codes[c] = (codes[c] ?? 0) + k;
    for (const [c, k] of Object.entries(t.acceptedWhy)) why[c] = (why[c] ?? 0) + k;
    rows.push(`  ${key.padEnd(28)} tried ${String(t.tried).padStart(6)}  refused by code ${String(ref).padStart(6)}  accepted ${String(t.accepted).padStart(4)}`);
  }
  // eslint-disable-next-line no-console
  console.log([
    `fuzz-api (seed ${SEED}, scale ${SCALE}): tried ${tried}, refused by code ${refused}, accepted ${accepted} (valid by construction), problems ${problems.length}`,
    `  refusals by code: ${Object.entries(codes).map(([c, k]) => `${c} ${k}`).join(', ')}`,
    `  accepted: ${Object.entries(why).map(([c, k]) => `${k} ${c}`).join('; ')}`,
    ...rows,
    ...problems.slice(0, 200).map((x) => `  PROBLEM ${x}`),
  ].join('\n'));
});

describe.each(BACKENDS)('backend %s', (backend) => {
  test.each(KINDS)('%s: constructor, params, step-time mutations, methods, stores', async (kind) => {
    const r = rng(SEED + KINDS.indexOf(kind) * 101 + (backend === 'native' ? 7 : 0));
    const ps = makeParams(SEED + 1);
    const watchPs = { arrays: capture(ps) };
    for (let t = 0; t < COUNTS.construct; t++) {
      const [name, run, valid] = constructorCase(kind, backend, r, ps);
      await judge(backend, 'constructor', `${kind} #${t} ${name}`, run, watchPs, { valid });
    }
    for (let t = 0; t < COUNTS.params; t++) {
      const i = Math.floor(r() * ps.length);
      const [what, bad] = badParam(ps[i], ps, r);
      const list = ps.map((p, j) => (j === i ? bad : p));
      await judge(backend, 'params', `${kind} #${t} params[${i}] ${what}`, () => new CLASSES[kind](list, OPTIONS[kind], { backend }).step(), watchPs);
    }
    for (let t = 0; t < COUNTS.stores; t++) {
      const sp = makeParams(SEED + 2);
      const [name, run, valid, either] = storeCase(kind, backend, r, sp);
      await judge(backend, 'stores', `${kind} #${t} ${name}`, run, { arrays: capture(sp) }, { valid, either });
    }
    const L = live(kind, backend, SEED + 3 + KINDS.indexOf(kind));
    const others = Object.fromEntries(KINDS.map((k2) => [k2, live(k2, backend, SEED + 50).opt])) as Record<Kind, AnyOpt>;
    for (let t = 0; t < COUNTS.stepTime + COUNTS.methods; t++) {
      const [name, run, valid] = t % 2 === 0 && t / 2 < COUNTS.methods ? methodCase(L, r, others) : stepTimeCase(L, r);
      const cat = name.startsWith('step') ? 'step-time' : name.split(/[:(]/)[0];
      const arrays = capture(L.ps);
      const before = stateText(L.opt);
      await judge(backend, cat, `${kind} #${t} ${name}`, run, { arrays, opt: L.opt, before }, { valid });
      if (t % 400 === 399) checkTwin(L, `trial ${t}`);
    }
    checkTwin(L, 'the last trial');
    for (let t = 0; t < COUNTS.lifecycle; t++) await lifecycleTrial(kind, backend, r, t);
    if (problems.length > 0) throw new Error(`${problems.length} problems, the first ones:\n  ${problems.slice(0, 15).join('\n  ')}`);
  });
});

const addon = addonOf();
(addon ? test : test.skip)('the addon called directly: garbage in every argument and field', async () => {
  const r = rng(SEED + 999);
  for (let t = 0; t < ADDON_TRIALS; t++) {
    const c = addonCase(addon!, r);
    await judge('addon', c.name.split(/[: ]/)[0], `#${t} ${c.name}`, () => { c.run(); }, { arrays: c.arrays }, { addon: true });
  }
  if (problems.length > 0) throw new Error(`${problems.length} problems, the first ones:\n  ${problems.slice(0, 15).join('\n  ')}`);
});
