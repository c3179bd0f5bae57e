/**
 * 16-bit params stepped by the native core itself (issue 18; docs/mixed-precision.md): the core
 * converts each unit's bfloat16/float16 param and grad into per-thread float32 scratch and rounds
 * the param back, the js engine stages whole tensors (lib/backends/half-staging.ts). Here:
 *
 * - native equals js bit for bit (params, state with master weights, decisions) on random
 *   shapes and layouts (rows, outer > 1, channels innermost with several units, rows cut into
 *   pieces, 1-D, empty), for all four optimizers, Nesterov, master weights on and off, nearest and
 *   stochastic rounding, loss-scaled and not, 16-bit and float32 grads, for 1, 2 and 3 threads and
 *   both kernel sets;
 * - the step protocol on 16-bit shards equals the whole step, on both engines;
 * - the addon's checks of the new slot fields (`half`): every bad field is a TypeError or
 *   RangeError with a code, and nothing is written.
 */
import { AdamP, AdamW, GradScaler, SGD, SGDP, float32ToHalf } from '../lib/index';
import type { AnyParam, HalfDtype, HalfParam } from '../lib/index';
import type { HalfSlot, Shard, Slot, StepJob } from '../lib/backends/engine';
import { JsEngine } from '../lib/backends/js/engine';
import { NativeEngine } from '../lib/backends/native/engine';
import { loadAddon } from '../lib/binding/load';
import type { Addon, AddonSlot } from '../lib/binding/types';
import type { AnySpec } from '../lib/optim/spec';
import { adampSpec } from '../lib/optim/adamp';
import { availableBackends } from './helpers/backends';
import { randn, rng } from './helpers/random';

const loaded = loadAddon();
const addon: Addon | undefined = 'addon' in loaded ? loaded.addon : undefined;
const native = addon !== undefined && availableBackends().includes('native');
if (!native) {
  // eslint-disable-next-line no-console
  console.warn('half16-native tests skipped: the native backend is not available here');
  test.skip('the native backend is not available (npm run build:native)', () => {});
}
const d = native ? describe : describe.skip;

type Kind = 'adamp' | 'sgdp' | 'adamw' | 'sgd';
const CLASSES = { adamp: AdamP, sgdp: SGDP, adamw: AdamW, sgd: SGD } as const;

function bitsOf(a: ArrayBufferView): number[] {
  return Array.from(new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4));
}

/** The layouts the core schedules differently (channelAxis -1: channels innermost). */
const LAYOUTS: Array<{ shape: number[]; channelAxis?: number }> = [
  { shape: [7, 3, 3, 3] }, // rows, outer 1
  { shape: [33, 17] },
  { shape: [4, 6, 10], channelAxis: 1 }, // rows, outer > 1
  { shape: [40, 24], channelAxis: -1 }, // channels innermost
  { shape: [4100, 8], channelAxis: -1 }, // channels innermost, two units
  { shape: [1, 33000] }, // a row cut into pieces
  { shape: [129] }, // 1-D: one pass
  { shape: [32800] }, // 1-D, two units
  { shape: [1] },
  { shape: [0] },
];

interface Case {
  kind: Kind;
  dtype: HalfDtype;
  grad: 'same' | 'float32';
  master: boolean;
  stochastic: boolean;
  scaled: boolean;
  nesterov: boolean;
}

function params(seed: number, c: Case): HalfParam[] {
  const r = rng(seed);
  return LAYOUTS.map(({ shape, channelAxis }, k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const w = randn(r, n);
    const g = randn(r, n).map((v) => v * (c.scaled ? 256 : 1));
    if (k === 0) for (let i = 0; i < n; i += 13) g[i] *= 1e-6;
    return {
      name: `p${k}`, shape, dtype: c.dtype, data: float32ToHalf(w, c.dtype), ...(channelAxis !== undefined ? { channelAxis } : {}),
      grad: c.grad === 'float32' ? g : float32ToHalf(g, c.dtype),
    } as HalfParam;
  });
}

function options(c: Case): Record<string, unknown> {
  return c.kind === 'sgd' || c.kind === 'sgdp'
    ? { lr: 0.1, momentum: 0.9, weightDecay: 1e-3, nesterov: c.nesterov }
    : { lr: 0.01, weightDecay: 0.1, ...(c.kind === 'adamp' ? { nesterov: c.nesterov } : {}) };
}

/** Every typed array of a state dict, its bytes concatenated (with the rest as JSON). */
function stateBytes(sd: unknown): Buffer {
  const parts: Buffer[] = [];
  const json = JSON.stringify(sd, (_k, v) => {
    if (!ArrayBuffer.isView(v)) return v;
    parts.push(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    return `#${parts.length}`;
  });
  return Buffer.concat([Buffer.from(json), ...parts]);
}

/** Where two byte strings first differ (-1: equal). */
function firstDiff(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** Three steps of a fresh optimizer on the case's params: the params' bits, the state's bytes, the decisions. */
function run(c: Case, backend: 'js' | 'native', threads?: number): { ps: Buffer; sd: Buffer; proj: string[] } {
  const ps = params(1000 + c.kind.length * 7 + (c.master ? 1 : 0), c);
  const cls = CLASSES[c.kind] as unknown as new (p: AnyParam[], o: unknown, cfg: unknown) => AdamP<AnyParam>;
  const o = new cls(ps, options(c), {
    backend, masterWeights: c.master, diagnostics: 'full', seed: 7, rounding: c.stochastic ? 'stochastic' : 'nearest',
    ...(threads !== undefined ? { threads } : {}),
  });
  const sc = new GradScaler({ initScale: 256, growthInterval: 1000 });
  for (let s = 0; s < 3; s++) {
    if (c.scaled) {
      sc.step(o);
      sc.update();
    } else {
      o.step();
    }
  }
  return {
    ps: Buffer.concat(ps.map((p) => Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength))),
    sd: stateBytes(o.stateDict()),
    proj: o.lastStepInfo.map((e) => e.projection),
  };
}

function cases(): Case[] {
  const out: Case[] = [];
  const r = rng(18);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  for (const kind of ['adamp', 'sgdp', 'adamw', 'sgd'] as Kind[]) {
    for (const dtype of ['bfloat16', 'float16'] as HalfDtype[]) {
      for (const master of [true, false]) {
        out.push({
          kind, dtype, master, grad: pick(['same', 'float32'] as const), stochastic: dtype === 'bfloat16' && pick([true, false]),
          scaled: pick([true, false]), nesterov: pick([true, false]),
        });
      }
    }
  }
  // every switch both ways at least once
  out.push({ kind: 'adamp', dtype: 'bfloat16', grad: 'float32', master: false, stochastic: true, scaled: true, nesterov: true });
  out.push({ kind: 'sgdp', dtype: 'bfloat16', grad: 'same', master: true, stochastic: true, scaled: false, nesterov: false });
  out.push({ kind: 'adamp', dtype: 'float16', grad: 'same', master: true, stochastic: false, scaled: true, nesterov: false });
  return out;
}

const name = (c: Case): string =>
  `${c.kind} ${c.dtype} grad ${c.grad} master ${c.master} ${c.stochastic ? 'stochastic' : 'nearest'}${c.scaled ? ' scaled' : ''}${c.nesterov ? ' nesterov' : ''}`;

d('native 16-bit steps equal the js engine bit for bit', () => {
  afterAll(() => addon!.setSimd('auto'));
  const all = cases();
  test.each(all.map((c) => [name(c), c] as const))('%s: 1, 2, 3 threads x both kernel sets', (_n, c) => {
    const want = run(c, 'js');
    // the steps moved the params (else the comparison would prove little)
    const start = params(1000 + c.kind.length * 7 + (c.master ? 1 : 0), c);
    expect(want.ps.equals(Buffer.concat(start.map((p) => Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength))))).toBe(false);
    for (const simd of ['avx2', 'portable'] as const) {
      const got = addon!.setSimd(simd);
      if (got !== simd) console.log(`[half16] ${simd} kernels not available here (running ${got})`);
      for (const threads of [1, 2, 3]) {
        const r = run(c, 'native', threads);
        const where = `${simd}, ${threads} threads`;
        expect({ where, paramsFirstDiffAt: firstDiff(r.ps, want.ps) }).toEqual({ where, paramsFirstDiffAt: -1 });
        expect({ where, stateFirstDiffAt: firstDiff(r.sd, want.sd) }).toEqual({ where, stateFirstDiffAt: -1 });
        expect({ where, proj: r.proj }).toEqual({ where, proj: want.proj });
      }
    }
    addon!.setSimd('auto');
  });
});

// ------------------------------------------------------------------------------------------------
// The engines and the protocol on 16-bit slots directly.

const SPEC = adampSpec as unknown as AnySpec;
const HYPER = Float64Array.of(0.01, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1, 0);
const OPTS = { lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.1, delta: 0.1, wdRatio: 0.1, nesterov: false };

function halfSlot(seed: number, outer: number, channels: number, inner: number, master: boolean, key?: number): Slot {
  const r = rng(seed);
  const n = outer * channels * inner;
  const w = randn(r, n);
  const half: HalfSlot = { dtype: 'bfloat16', p16: float32ToHalf(w, 'bfloat16'), g16: float32ToHalf(randn(r, n), 'bfloat16'), master, invScale: 0.5 };
  if (key !== undefined) half.key = key;
  return {
    p: master ? Float32Array.from(w) : new Float32Array(0), g: new Float32Array(0), state: [new Float32Array(n), new Float32Array(n)],
    outer, channels, inner, eligible: true, step: 1, half,
  };
}

function sliceShard(s: Slot, a: number, b: number, numel: number): Shard {
  const h = s.half!;
  return {
    ...s, p: h.master ? s.p.subarray(a, b) : s.p, state: s.state.map((x) => x.subarray(a, b)), offset: a, numel,
    half: { ...h, p16: h.p16.subarray(a, b), g16: h.g16 === null ? null : h.g16.subarray(a, b) },
  };
}

d('the step protocol on 16-bit shards', () => {
  const geos: Array<[number, number, number]> = [[1, 6, 9000], [3000, 24, 1], [1, 3, 70000]];
  test.each(geos)('outer %d, channels %d, inner %d: two shards equal the whole step (native and js), master on and off', (outer, channels, inner) => {
    for (const master of [true, false]) {
      const whole = halfSlot(5, outer, channels, inner, master, 12345);
      const info = new Float64Array(8);
      new NativeEngine(addon!, { threads: 2 }).step({ spec: SPEC, options: OPTS, hyper: HYPER, slots: [whole], info } as StepJob, { norms: true });
      for (const eng of [new NativeEngine(addon!, { threads: 1 }), new JsEngine()]) {
        const s = halfSlot(5, outer, channels, inner, master, 12345);
        const numel = outer * channels * inner;
        const geo = { outer, channels, inner, eligible: true, numel };
        const starts = eng.protocol!.units(SPEC, geo);
        const units = starts.length - 1;
        expect(units).toBeGreaterThan(1);
        const mid = Math.floor(units / 2);
        const shards = [sliceShard(s, 0, starts[mid], numel), sliceShard(s, starts[mid], numel, numel)];
        const ranges: Array<[number, number]> = [[0, mid], [mid, units]];
        const parts = shards.map((sh, k) => eng.protocol!.stats({ spec: SPEC, options: OPTS, hyper: HYPER, shard: sh }, ranges[k][0], ranges[k][1]));
        const all = new Float64Array(parts.reduce((a, p) => a + p.length, 0));
        all.set(parts[0], 0);
        all.set(parts[1], parts[0].length);
        const dec = eng.protocol!.decide(SPEC, geo, OPTS, HYPER, all);
        shards.forEach((sh, k) => eng.protocol!.apply({ spec: SPEC, options: OPTS, hyper: HYPER, shard: sh }, dec, ranges[k][0], ranges[k][1], { norms: true }));
        expect(Array.from(s.half!.p16)).toEqual(Array.from(whole.half!.p16));
        expect(bitsOf(s.state[0])).toEqual(bitsOf(whole.state[0]));
        expect(bitsOf(s.state[1])).toEqual(bitsOf(whole.state[1]));
        if (master) expect(bitsOf(s.p)).toEqual(bitsOf(whole.p));
      }
    }
  });
});

// ------------------------------------------------------------------------------------------------
// The addon's checks of 16-bit slots.

d('addon argument checks of 16-bit slots', () => {
  const N = 12;
  const base = (): AddonSlot & { half: NonNullable<AddonSlot['half']> } => ({
    p: null, g: null, state: [new Float32Array(N), new Float32Array(N)], outer: 1, channels: 3, inner: 4, eligible: true, step: 1,
    half: { dtype: 'bfloat16', p16: new Uint16Array(N).fill(0x3f80), g16: new Uint16Array(N).fill(0x3f80) },
  });
  const step = (s: unknown): void => addon!.step('adamp', [s as AddonSlot], HYPER, new Float64Array(8));
  const shared = new Uint16Array(2 * N);
  const cases: Array<[string, () => unknown, string, RegExp]> = [
    ['bad dtype', () => ({ ...base(), half: { ...base().half, dtype: 'float8' } }), 'TypeError', /half\.dtype must be 'bfloat16' or 'float16'/],
    ['half not an object', () => ({ ...base(), half: 3 }), 'TypeError', /half must be an object/],
    ['p16 a Float32Array', () => ({ ...base(), half: { ...base().half, p16: new Float32Array(N) } }), 'TypeError', /half\.p16 must be a Uint16Array/],
    ['g16 an Int16Array', () => ({ ...base(), half: { ...base().half, g16: new Int16Array(N) } }), 'TypeError', /half\.g16 must be a Uint16Array/],
    ['no grad at all', () => ({ ...base(), half: { ...base().half, g16: null } }), 'TypeError', /exactly one grad/],
    ['two grads', () => ({ ...base(), g: new Float32Array(N) }), 'TypeError', /exactly one grad/],
    ['g16 too short', () => ({ ...base(), half: { ...base().half, g16: new Uint16Array(N - 1) } }), 'RangeError', /half\.g16 has 11 elements but half\.p16 has 12/],
    ['master too long', () => ({ ...base(), p: new Float32Array(N + 1) }), 'RangeError', /\.p has 13 elements but half\.p16 has 12/],
    ['master not float32', () => ({ ...base(), p: new Float64Array(N) }), 'TypeError', /\.p must be a Float32Array/],
    ['state too short', () => ({ ...base(), state: [new Float32Array(N), new Float32Array(N - 2)] }), 'RangeError', /state\[1\] has 10 elements but half\.p16 has 12/],
    ['geometry', () => ({ ...base(), inner: 5 }), 'RangeError', /does not match half\.p16\.length = 12/],
    ['invScale 0', () => ({ ...base(), half: { ...base().half, invScale: 0 } }), 'RangeError', /invScale must be a finite float32 value > 0/],
    ['invScale NaN', () => ({ ...base(), half: { ...base().half, invScale: NaN } }), 'RangeError', /invScale must be a finite float32 value > 0/],
    ['invScale not float32', () => ({ ...base(), half: { ...base().half, invScale: 0.1 } }), 'RangeError', /invScale must be a finite float32 value > 0/],
    ['invScale past float32', () => ({ ...base(), half: { ...base().half, invScale: 1e39 } }), 'RangeError', /invScale must be a finite float32 value > 0/],
    ['invScale a string', () => ({ ...base(), half: { ...base().half, invScale: '1' } }), 'TypeError', /invScale must be a number/],
    ['key negative', () => ({ ...base(), half: { ...base().half, key: -1 } }), 'RangeError', /key must be an integer in \[0, 2\^32\)/],
    ['key 2^32', () => ({ ...base(), half: { ...base().half, key: 2 ** 32 } }), 'RangeError', /key must be an integer in \[0, 2\^32\)/],
    ['key fractional', () => ({ ...base(), half: { ...base().half, key: 1.5 } }), 'RangeError', /key must be an integer/],
    ['key on float16', () => ({ ...base(), half: { ...base().half, dtype: 'float16', key: 3 } }), 'RangeError', /bfloat16 only/],
    ['p16 and g16 overlap', () => ({ ...base(), half: { ...base().half, p16: shared.subarray(0, N), g16: shared.subarray(N / 2, N / 2 + N) } }), 'RangeError', /half\.p16 and half\.g16 overlap/],
    ['p16 over the state', () => {
      const b = base();
      return { ...b, half: { ...b.half, p16: new Uint16Array(b.state[0].buffer, 0, N) } };
    }, 'RangeError', /state\[0\] and half\.p16 overlap/],
  ];
  test.each(cases)('%s', (_name, make, errName, msg) => {
    const s = make() as { half?: { p16?: ArrayBufferView }; state: Float32Array[] };
    const before = s.half && ArrayBuffer.isView(s.half.p16) ? new Uint8Array(s.half.p16.buffer.slice(0)) : null;
    let err: { name?: string; message?: string; code?: string } | undefined;
    try {
      step(s);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err).toBeDefined();
    expect(err!.name).toBe(errName);
    expect(err!.message).toMatch(msg);
    expect(err!.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    if (before !== null) expect(new Uint8Array(s.half!.p16!.buffer.slice(0))).toEqual(before);
    expect(s.state.every((a) => a.every((x) => x === 0))).toBe(true);
  });

  test('a valid 16-bit slot steps; the same slot on stepAsync gives the same bits', async () => {
    const a = base(), b = base();
    step(a);
    expect(Array.from(a.half.p16).some((h) => h !== 0x3f80)).toBe(true);
    await addon!.stepAsync([{ kind: 'adamp', slots: [b], hyper: HYPER, info: new Float64Array(8) }], { threads: 2 });
    expect(Array.from(b.half.p16)).toEqual(Array.from(a.half.p16));
    expect(bitsOf(b.state[1])).toEqual(bitsOf(a.state[1]));
  });
});
