/**
 * Mixed precision (docs/mixed-precision.md): 16-bit params with float32 state and master weights,
 * loss scaling with the found-inf skip, on every CPU backend.
 *
 * - the conversions against PyTorch's `tensor.to(dtype)` (test/fixtures/mixed/conversions.json)
 *   and exhaustively against themselves;
 * - parity with PyTorch (scripts/gen-mixed-fixtures.py): the official AdamP/SGDP and
 *   torch.optim.AdamW/SGD on float32 master params (or on the widened 16-bit param), with
 *   GradScaler sequences that overflow;
 * - js and native bit for bit on random shapes; a rejected or skipped step changes no byte;
 *   checkpoints carry dtypes and master weights and refuse another dtype; GradScaler's API.
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  AdamP, AdamW, GradScaler, SGD, SGDP, deserializeCheckpoint, serializeCheckpoint, halfToFloat32, float32ToHalf,
  bf16ToF32, f16ToF32, f32ToBf16, f32ToF16,
} from '../lib/index';
import type { AnyParam, BackendName, HalfDtype, HalfParam, Param } from '../lib/index';
import { float32ToBf16Stochastic, roundingKey } from '../lib/core/half';
import { ShardedOptimizer, SoloCollective } from '../lib/distributed';
import { availableBackends } from './helpers/backends';
import { randn, rng } from './helpers/random';

const DIR = path.join(__dirname, 'fixtures', 'mixed');
const TOL = 1e-6;
const backends = availableBackends().filter((b) => b !== 'cuda');

function u32(bits: number[]): Float32Array {
  return new Float32Array(Uint32Array.from(bits).buffer);
}

function bitsOf(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    const err = e as { name?: string; code?: string; message?: string };
    if (err.name !== 'AdampError') throw new Error(`not an AdampError: ${err.name}: ${err.message}`);
    return `${err.code}: ${err.message}`;
  }
  throw new Error('did not throw');
}

describe('conversions', () => {
  const c = JSON.parse(fs.readFileSync(path.join(DIR, 'conversions.json'), 'utf8')) as Record<string, number[]>;
  const x = u32(c.f32);

  test('float32 -> bfloat16 / float16 round to nearest even exactly as PyTorch (NaN, Infinity, subnormals, ties)', () => {
    expect(x.length).toBeGreaterThan(5000);
    // NaN: PyTorch's own bits depend on the path (its scalar bfloat16 gives 0x7fc0, its vectorized
    // CPU conversion 0xffff); ours are a quiet NaN, checked as a NaN here and by bits in the test below.
    const same = (got: Uint16Array, want: number[], isNan: (h: number) => boolean) => {
      let nans = 0;
      for (let i = 0; i < want.length; i++) {
        if (isNan(want[i])) {
          nans++;
          if (!isNan(got[i])) throw new Error(`element ${i} (0x${c.f32[i].toString(16)}): PyTorch gives a NaN, we 0x${got[i].toString(16)}`);
        } else if (got[i] !== want[i]) {
          throw new Error(`element ${i} (0x${c.f32[i].toString(16)}): PyTorch gives 0x${want[i].toString(16)}, we 0x${got[i].toString(16)}`);
        }
      }
      expect(nans).toBeGreaterThan(2);
    };
    same(float32ToHalf(x, 'bfloat16'), c.bf16, (h) => Number.isNaN(bf16ToF32(h)));
    same(float32ToHalf(x, 'float16'), c.f16, (h) => Number.isNaN(f16ToF32(h)));
    // the scalar helpers agree with the array ones (NaN payloads aside: a number's NaN is canonical)
    for (let i = 0; i < x.length; i++) {
      if (Number.isNaN(x[i])) {
        expect([f32ToBf16(x[i]), f32ToF16(x[i]) & 0x7fff]).toEqual([0x7fc0, 0x7e00]);
        continue;
      }
      if (f32ToBf16(x[i]) !== c.bf16[i] || f32ToF16(x[i]) !== c.f16[i]) throw new Error(`element ${i} (0x${c.f32[i].toString(16)})`);
    }
  });

  test('16-bit -> float32 is exact, as PyTorch', () => {
    expect(Array.from(bitsOf(halfToFloat32(Uint16Array.from(c.bf16), 'bfloat16')))).toEqual(c.bf16ToF32);
    expect(Array.from(bitsOf(halfToFloat32(Uint16Array.from(c.f16), 'float16')))).toEqual(c.f16ToF32);
  });

  test.each(['bfloat16', 'float16'] as const)('every %s bit pattern survives a round trip through float32', (dtype) => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = float32ToHalf(halfToFloat32(all, dtype), dtype);
    const widen = dtype === 'bfloat16' ? bf16ToF32 : f16ToF32;
    for (let h = 0; h < 65536; h++) {
      const nan = Number.isNaN(widen(h));
      const want = nan ? (dtype === 'bfloat16' ? 0x7fc0 : (h & 0x8000) | 0x7e00) : h;
      if (back[h] !== want) throw new Error(`${dtype} 0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Parity with PyTorch

interface FixtureStep {
  grads: number[][];
  skipped: boolean;
  params: number[][];
  master: number[][] | null;
  state: Array<{ step?: number; slots: Record<string, number[]> } | null>;
  scaleAfter: number | null;
  growthTrackerAfter: number | null;
}

interface Fixture {
  optimizer: 'adamp' | 'sgdp' | 'adamw' | 'sgd';
  dtype: HalfDtype;
  gradDtype: 'float32' | HalfDtype;
  masterWeights: boolean;
  options: Record<string, unknown>;
  scaler: Record<string, number> | null;
  params: Array<{ name: string; shape: number[]; data: number[] }>;
  steps: FixtureStep[];
}

const CLASSES = { adamp: AdamP, sgdp: SGDP, adamw: AdamW, sgd: SGD } as const;
const SLOT_KEYS: Record<string, Record<string, string>> = {
  adamp: { exp_avg: 'expAvg', exp_avg_sq: 'expAvgSq' }, adamw: { exp_avg: 'expAvg', exp_avg_sq: 'expAvgSq' },
  sgdp: { momentum: 'momentum' }, sgd: { momentum_buffer: 'momentumBuffer' },
};
const cases = fs.readdirSync(DIR).filter((f) => f.endsWith('.json') && f !== 'conversions.json').map((f) => f.slice(0, -5)).sort();

function maxDiff(got: Float32Array, want: Float32Array): { diff: number; scale: number } {
  let diff = 0, scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return { diff, scale };
}

/** The distance in ulps between two 16-bit values of one dtype (same sign; else a large number). */
function ulps(a: number, b: number): number {
  if ((a & 0x8000) !== (b & 0x8000)) return (a & 0x7fff) + (b & 0x7fff);
  return Math.abs(a - b);
}

function makeOptimizer(c: Fixture, params: AnyParam[], backend: BackendName) {
  const cls = CLASSES[c.optimizer] as unknown as new (p: AnyParam[], o: unknown, cfg: unknown) => AdamP<AnyParam>;
  return new cls(params, { ...c.options, ...(c.options.betas ? { betas: c.options.betas } : {}) }, { backend, masterWeights: c.masterWeights });
}

test('the mixed-precision fixtures are present', () => {
  expect(cases.length).toBeGreaterThanOrEqual(8);
  for (const k of ['adamp', 'sgdp', 'adamw', 'sgd']) expect(cases.filter((n) => n.startsWith(`${k}_`)).length).toBeGreaterThanOrEqual(2);
});

describe.each(backends)('backend %s', (backend) => {
  test.each(cases)('%s matches PyTorch step by step', (name) => {
    const c = JSON.parse(fs.readFileSync(path.join(DIR, `${name}.json`), 'utf8')) as Fixture;
    const params: HalfParam[] = c.params.map((p) => ({ data: Uint16Array.from(p.data), grad: null, dtype: c.dtype, shape: p.shape, name: p.name }));
    const opt = makeOptimizer(c, params, backend);
    expect(opt.backend).toBe(backend);
    const scaler = c.scaler ? new GradScaler(c.scaler) : null;
    let skips = 0;
    c.steps.forEach((step, si) => {
      params.forEach((p, i) => { p.grad = c.gradDtype === 'float32' ? u32(step.grads[i]) : Uint16Array.from(step.grads[i]); });
      if (scaler) {
        const ran = scaler.step(opt);
        scaler.update();
        expect(`step ${si}: ran ${ran}, skipped ${opt.lastStepSkipped}`).toBe(`step ${si}: ran ${!step.skipped}, skipped ${step.skipped}`);
        expect(scaler.getScale()).toBe(step.scaleAfter);
        expect(scaler.stateDict().growthTracker).toBe(step.growthTrackerAfter);
        if (step.skipped) skips++;
      } else {
        opt.step();
      }
      const sd = opt.stateDict();
      params.forEach((p, i) => {
        const where = `${name} step ${si} param ${p.name}`;
        const exact = backend === 'js' && (c.optimizer === 'adamw' || c.optimizer === 'sgd');
        const check = (got: Float32Array, want: Float32Array, what: string) => {
          const { diff, scale } = maxDiff(got, want);
          if (!(diff <= TOL * scale)) throw new Error(`${where} ${what}: max|diff| ${diff} > ${TOL * scale}`);
          if (exact && diff !== 0) throw new Error(`${where} ${what}: the js backend differs from PyTorch by ${diff}`);
        };
        const st = sd.state[i] as unknown as Record<string, unknown> | undefined;
        const e = step.state[i];
        if (e === null) {
          expect(st).toBeUndefined();
        } else {
          expect(st?.dtype).toBe(c.dtype);
          if (e.step !== undefined) expect(`${where} step ${String(st!.step)}`).toBe(`${where} step ${e.step}`);
          for (const [torchName, key] of Object.entries(SLOT_KEYS[c.optimizer])) check(st![key] as Float32Array, u32(e.slots[torchName]), key);
          if (c.masterWeights) {
            const master = st!.master as Float32Array;
            check(master, u32(step.master![i]), 'master');
            // the param is its master rounded to nearest even, exactly
            expect(Array.from(p.data)).toEqual(Array.from(float32ToHalf(master, c.dtype)));
          } else {
            expect(st!.master).toBeUndefined();
          }
        }
        let worst = 0;
        for (let k = 0; k < p.data.length; k++) worst = Math.max(worst, ulps(p.data[k], step.params[i][k]));
        if (worst > (exact ? 0 : 1)) throw new Error(`${where}: the ${c.dtype} param is ${worst} ulps from PyTorch's`);
      });
    });
    if (scaler) expect(skips).toBe(c.steps.filter((s) => s.skipped).length);
  });
});

// ---------------------------------------------------------------------------------------------
// Backends agree, bit for bit

function randomHalfParams(seed: number, dtype: HalfDtype, gradDtype: 'float32' | HalfDtype): HalfParam[] {
  const r = rng(seed);
  const shapes: number[][] = [[7, 3, 3, 3], [33, 17], [129], [3, 70000 / 10 | 0], [1], [0]];
  return shapes.map((shape, k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const w = randn(r, n);
    const g = randn(r, n);
    if (k === 0) for (let i = 0; i < n; i += 13) g[i] *= 1e-6; // tiny grads: rounding-sensitive updates
    return {
      data: float32ToHalf(w, dtype), dtype, shape, name: `p${k}`,
      grad: gradDtype === 'float32' ? g.map((v) => v * 512) : float32ToHalf(g.map((v) => v * 512), gradDtype),
    };
  });
}

const bitIdentity = backends.includes('native') ? test.each : test.skip.each;
describe('js and native agree bit for bit', () => {
  const combos: Array<[string, HalfDtype, 'float32' | HalfDtype, boolean]> = [];
  for (const opt of ['adamp', 'sgdp', 'adamw', 'sgd']) {
    combos.push([opt, 'bfloat16', 'bfloat16', true], [opt, 'float16', 'float16', false], [opt, 'bfloat16', 'float32', false]);
  }
  bitIdentity(combos)('%s %s params, %s grads, master weights %s, loss-scaled', (kind, dtype, gradDtype, master) => {
    const runs = (['js', 'native'] as const).map((backend) => {
      const ps = randomHalfParams(42, dtype, gradDtype);
      const cls = CLASSES[kind as keyof typeof CLASSES] as unknown as new (p: AnyParam[], o: unknown, cfg: unknown) => AdamP<AnyParam>;
      const o = new cls(ps, kind === 'sgd' || kind === 'sgdp' ? { lr: 0.1, momentum: 0.9, weightDecay: 1e-3 } : { lr: 0.01, weightDecay: 0.1 },
        { backend, masterWeights: master, diagnostics: 'full' });
      const sc = new GradScaler({ initScale: 512, growthInterval: 2 });
      for (let s = 0; s < 4; s++) {
        sc.step(o);
        sc.update();
      }
      return { ps: ps.map((p) => Array.from(p.data)), sd: JSON.stringify(o.stateDict(), (_k, v) => (ArrayBuffer.isView(v) ? Array.from(bitsOf(v as Float32Array)) : v)), info: o.lastStepInfo };
    });
    expect(runs[1].ps).toEqual(runs[0].ps);
    expect(runs[1].sd).toBe(runs[0].sd);
    // decisions identical; the diagnostics' norms are double sums, within rounding (as for float32 params)
    expect(runs[1].info.map((e) => e.projection)).toEqual(runs[0].info.map((e) => e.projection));
    runs[0].info.forEach((e, i) => expect(Math.abs(runs[1].info[i].weightNorm! - e.weightNorm!)).toBeLessThanOrEqual(1e-6 * e.weightNorm!));
  });
});

// ---------------------------------------------------------------------------------------------
// All or nothing

function snapshot(ps: AnyParam[], opt: { stateDict(): unknown }): string {
  return JSON.stringify({ p: ps.map((p) => Array.from(p.data as Uint16Array)), g: ps.map((p) => (p.grad ? Array.from(p.grad as Uint16Array) : null)), sd: opt.stateDict() },
    (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Uint16Array) : v));
}

describe.each(backends)('all or nothing (%s)', (backend) => {
  test('a skipped step (Infinity or NaN in any grad) changes no param, state or step count, and says so', () => {
    for (const bad of [0x7f80, 0xff80, 0x7fc1]) {
      const ps = randomHalfParams(7, 'bfloat16', 'bfloat16').slice(0, 3);
      const opt = new AdamP(ps, { lr: 0.01, weightDecay: 0.1 }, { backend });
      const sc = new GradScaler({ initScale: 1024 });
      expect(sc.step(opt)).toBe(true);
      sc.update();
      (ps[2].grad as Uint16Array)[5] = bad; // the last param's grad
      const before = snapshot(ps, opt);
      expect(sc.step(opt)).toBe(false);
      expect(opt.lastStepSkipped).toBe(true);
      expect(opt.lastStepInfo.map((e) => e.projection)).toEqual(['no_grad', 'no_grad', 'no_grad']);
      expect(snapshot(ps, opt)).toBe(before);
      sc.update();
      expect(sc.getScale()).toBe(512);
      (ps[2].grad as Uint16Array)[5] = 0;
      expect(sc.step(opt)).toBe(true);
      expect(opt.lastStepSkipped).toBe(false);
      expect((opt.stateDict().state[0] as { step: number }).step).toBe(2);
    }
  });

  test('a float32 grad of a 16-bit param with Infinity skips too; float32 params skip the same way', () => {
    const ps: AnyParam[] = [
      { data: new Float32Array([1, 2, 3]), grad: new Float32Array([0.5, -0.5, Infinity]), shape: [3] },
      { data: float32ToHalf(new Float32Array([1, 2]), 'float16'), grad: new Float32Array([1, NaN]), dtype: 'float16', shape: [2] },
    ];
    const opt = new AdamW(ps, {}, { backend });
    const before = snapshot(ps, opt);
    expect(new GradScaler().step(opt)).toBe(false);
    expect(snapshot(ps, opt)).toBe(before);
  });

  test('invalid 16-bit params and grads are refused before anything changes, naming the param', () => {
    const good = randomHalfParams(3, 'float16', 'float16').slice(0, 2);
    const opt = new SGDP(good, { lr: 0.1, momentum: 0.9 }, { backend });
    opt.step();
    const cases: Array<[string, () => void, RegExp]> = [
      ['grad of the wrong length', () => { good[1].grad = new Uint16Array(3); }, /grad length 3 does not match shape \[33,17\] of param 'p1'/],
      ['grad as a Float64Array', () => { good[1].grad = new Float64Array(561) as never; }, /grad of param 'p1' must be a Uint16Array of float16 bits, .*a Float32Array or null/],
      ['a dtype that does not exist', () => { (good[1] as { dtype: string }).dtype = 'float64'; }, /dtype of param 'p1' must be 'float32', 'bfloat16' or 'float16', got "float64"/],
      ['the dtype changed after the state was made', () => { (good[1] as { dtype: string }).dtype = 'bfloat16'; }, /dtype of param 'p1' changed from float16 to bfloat16/],
      ['16-bit data without a dtype', () => { delete (good[1] as { dtype?: string }).dtype; }, /data of param 'p1' must be a Float32Array, got a Uint16Array of length 561; 16-bit params need dtype 'bfloat16' or 'float16'/],
      ['float32 data with a 16-bit dtype', () => { good[1].data = new Float32Array(561) as never; }, /data of param 'p1' \(dtype 'float16'\) must be a Uint16Array of float16 bits or a Float16Array, got a Float32Array of length 561/],
    ];
    for (const [what, breakIt, message] of cases) {
      const saved = { ...good[1] };
      breakIt();
      const before = snapshot([good[0]], opt);
      const err = codeOf(() => opt.step());
      expect(`${what}: ${err}`).toMatch(new RegExp(`^${what}: ERR_ADAMP_INVALID_ARGUMENT: .*${message.source}`));
      expect(snapshot([good[0]], opt)).toBe(before);
      Object.assign(good[1], saved);
      if (!('dtype' in saved)) delete (good[1] as { dtype?: string }).dtype;
    }
    opt.step(); // the restored params step again
  });

  test('stepAsync rounds 16-bit params back as step() does', async () => {
    const a = randomHalfParams(5, 'float16', 'float16').slice(0, 3);
    const b = randomHalfParams(5, 'float16', 'float16').slice(0, 3);
    const oa = new SGDP(a, { lr: 0.1, momentum: 0.9 }, { backend });
    const ob = new SGDP(b, { lr: 0.1, momentum: 0.9 }, { backend });
    for (let s = 0; s < 2; s++) {
      oa.step();
      await ob.stepAsync();
    }
    expect(b.map((p) => Array.from(p.data))).toEqual(a.map((p) => Array.from(p.data)));
    expect(snapshot(b, ob)).toBe(snapshot(a, oa));
  });

  test('without master weights the step runs on the widened param and rounds back', () => {
    const ps = randomHalfParams(11, 'bfloat16', 'bfloat16').slice(0, 2);
    const ref = ps.map((p) => ({ data: halfToFloat32(p.data, 'bfloat16'), grad: halfToFloat32(p.grad as Uint16Array, 'bfloat16'), shape: p.shape } as Param));
    const a = new AdamW(ps, { lr: 0.1 }, { backend, masterWeights: false });
    const b = new AdamW(ref, { lr: 0.1 }, { backend });
    for (let s = 0; s < 3; s++) {
      a.step();
      b.step();
      ref.forEach((r, i) => { r.data.set(halfToFloat32(float32ToHalf(r.data, 'bfloat16'), 'bfloat16')); expect(Array.from(ps[i].data)).toEqual(Array.from(float32ToHalf(r.data, 'bfloat16'))); });
    }
    expect(Object.keys(a.stateDict().state[0])).toEqual(['step', 'expAvg', 'expAvgSq', 'dtype']);
  });
});

// ---------------------------------------------------------------------------------------------
// Checkpoints and state dicts

describe.each(backends)('checkpoints (%s)', (backend) => {
  test('a checkpoint round trip keeps dtypes, 16-bit params and master weights; resuming is bit-identical', () => {
    const mk = (seed: number) => randomHalfParams(seed, 'bfloat16', 'bfloat16').slice(0, 3);
    const a = mk(1);
    const optA = new AdamP(a, { lr: 0.01 }, { backend });
    for (let s = 0; s < 2; s++) optA.step();
    const bytes = serializeCheckpoint(optA, { params: true });
    const b = mk(2);
    const optB = new AdamP(b, { lr: 0.01 }, { backend });
    deserializeCheckpoint(optB, bytes, { params: true });
    b.forEach((p, i) => expect(Array.from(p.data)).toEqual(Array.from(a[i].data)));
    const sa = optA.stateDict().state[0] as unknown as { master: Float32Array; dtype: string };
    const sb = optB.stateDict().state[0] as unknown as { master: Float32Array; dtype: string };
    expect(sb.dtype).toBe('bfloat16');
    expect(Array.from(sb.master)).toEqual(Array.from(sa.master));
    // the master is not the param widened (it keeps the bits rounding drops), so resuming needs it
    expect(Array.from(sa.master)).not.toEqual(Array.from(halfToFloat32(a[0].data, 'bfloat16')));
    b.forEach((p, i) => { p.grad = a[i].grad; });
    optA.step();
    optB.step();
    b.forEach((p, i) => expect(Array.from(p.data)).toEqual(Array.from(a[i].data)));
  });

  test('loading into params of another dtype is refused, and nothing changes', () => {
    const a = randomHalfParams(1, 'bfloat16', 'bfloat16').slice(0, 2);
    const optA = new SGD(a, { lr: 0.1, momentum: 0.9 }, { backend });
    optA.step();
    const bytes = serializeCheckpoint(optA, { params: true });
    const c = randomHalfParams(1, 'float16', 'float16').slice(0, 2);
    const optC = new SGD(c, { lr: 0.1, momentum: 0.9 }, { backend });
    const before = snapshot(c, optC);
    expect(codeOf(() => deserializeCheckpoint(optC, bytes, { params: true }))).toMatch(
      /^ERR_ADAMP_INVALID_ARGUMENT: checkpoint does not fit this SGD optimizer: param 0 \('p0'\) is float16 here, bfloat16 in the file/);
    expect(snapshot(c, optC)).toBe(before);
    const f: Param[] = a.map((p) => ({ data: halfToFloat32(p.data, 'bfloat16'), grad: null, shape: p.shape, name: p.name }));
    expect(codeOf(() => deserializeCheckpoint(new SGD(f, { lr: 0.1 }, { backend }), bytes))).toMatch(/param 0 \('p0'\) is float32 here, bfloat16 in the file/);
    // a state dict too
    expect(codeOf(() => optC.loadStateDict(optA.stateDict() as never))).toMatch(/stateDict.state\[0\] \(param 'p0'\) was saved for a bfloat16 param, but this param is float16/);
    // master weights on one side only
    const d = randomHalfParams(1, 'bfloat16', 'bfloat16').slice(0, 2);
    const optD = new SGD(d, { lr: 0.1, momentum: 0.9 }, { backend, masterWeights: false });
    optD.step();
    expect(codeOf(() => deserializeCheckpoint(optD, bytes))).toMatch(/has master weights, but this optimizer was created with masterWeights: false/);
    expect(codeOf(() => optA.loadStateDict(optD.stateDict() as never))).toMatch(/^ERR_ADAMP_INVALID_ARGUMENT: /);
  });
});

// ---------------------------------------------------------------------------------------------
// GradScaler

describe('GradScaler', () => {
  const one = (): Param[] => [{ data: new Float32Array([1, -2, 3, 0.5]), grad: new Float32Array([64, -128, 32, 16]), shape: [4], name: 'w' }];

  test('defaults, growth after growthInterval clean steps, backoff, state dict round trip', () => {
    const sc = new GradScaler();
    expect(sc.getScale()).toBe(65536);
    expect([sc.getGrowthFactor(), sc.getBackoffFactor(), sc.getGrowthInterval(), sc.isEnabled()]).toEqual([2, 0.5, 2000, true]);
    expect(sc.scale(1.5)).toBe(98304);
    const s2 = new GradScaler({ initScale: 4, growthInterval: 3 });
    const ps = one();
    const opt = new SGD(ps, { lr: 0.1 }, { backend: 'js' });
    const scales: number[] = [];
    for (let k = 0; k < 7; k++) {
      ps[0].grad![0] = k === 4 ? Infinity : 64;
      s2.step(opt);
      s2.update();
      scales.push(s2.getScale());
    }
    expect(scales).toEqual([4, 4, 8, 8, 4, 4, 4]);
    const sd = s2.stateDict();
    expect(sd).toEqual({ scale: 4, growthFactor: 2, backoffFactor: 0.5, growthInterval: 3, growthTracker: 2 });
    const s3 = new GradScaler();
    s3.loadStateDict(sd);
    expect(s3.stateDict()).toEqual(sd);
    expect(codeOf(() => s3.loadStateDict({}))).toMatch(/empty, possibly because it was saved from a disabled GradScaler/);
    expect(codeOf(() => s3.loadStateDict({ ...sd, growthFactor: 0.5 }))).toMatch(/growthFactor must be > 1/);
    expect(s3.stateDict()).toEqual(sd);
  });

  test('the fused unscale reads f32(g * invScale): the same step as unscaling first, and as the unscaled grads', () => {
    const run = (how: 'fused' | 'unscale' | 'plain') => {
      const ps = one();
      const opt = new AdamW(ps, { lr: 0.1 }, { backend: 'js' });
      const sc = new GradScaler({ initScale: 64 });
      if (how === 'plain') {
        ps[0].grad = ps[0].grad!.map((g) => g / 64);
        opt.step();
      } else {
        if (how === 'unscale') {
          sc.unscale(opt);
          expect(Array.from(ps[0].grad!)).toEqual([1, -2, 0.5, 0.25]);
        }
        expect(sc.step(opt)).toBe(true);
        if (how === 'fused') expect(Array.from(ps[0].grad!)).toEqual([64, -128, 32, 16]); // left scaled
      }
      return Array.from(ps[0].data);
    };
    expect(run('fused')).toEqual(run('plain'));
    expect(run('unscale')).toEqual(run('plain'));
  });

  test('an unscale() that finds Infinity/NaN: step() skips, lastStepSkipped says so, update() backs off', () => {
    const ps = one();
    const opt = new AdamW(ps, { lr: 0.1 }, { backend: 'js' });
    const sc = new GradScaler({ initScale: 64 });
    expect(sc.step(opt)).toBe(true);
    sc.update();
    const before = Array.from(ps[0].data);
    ps[0].grad![2] = NaN;
    sc.unscale(opt);
    expect(sc.step(opt)).toBe(false);
    expect(opt.lastStepSkipped).toBe(true);
    expect(opt.lastStepInfo[0].projection).toBe('no_grad');
    expect(Array.from(ps[0].data)).toEqual(before);
    sc.update();
    expect(sc.getScale()).toBe(32);
    ps[0].grad = new Float32Array([32, 32, 32, 32]);
    sc.unscale(opt);
    expect(sc.step(opt)).toBe(true);
    expect(opt.lastStepSkipped).toBe(false);
  });

  test('call order and inputs are checked as PyTorch checks them', () => {
    const ps = one();
    const opt = new SGD(ps, { lr: 0.1 }, { backend: 'js' });
    const sc = new GradScaler();
    expect(codeOf(() => sc.update())).toMatch(/no inf checks were recorded/);
    sc.unscale(opt);
    expect(codeOf(() => sc.unscale(opt))).toMatch(/already been called on this optimizer since the last update/);
    sc.step(opt);
    expect(codeOf(() => sc.step(opt))).toMatch(/step\(optimizer\) has already been called/);
    expect(codeOf(() => sc.unscale(opt))).toMatch(/after step\(optimizer\)/);
    sc.update();
    const h: HalfParam[] = [{ data: new Uint16Array(2), grad: new Uint16Array(2), dtype: 'bfloat16', shape: [2], name: 'h' }];
    expect(codeOf(() => sc.unscale(new SGD(h, { lr: 1 }, { backend: 'js' })))).toMatch(/grad of param 'h' is a 16-bit grad/);
    for (const o of [{ growthFactor: 1 }, { backoffFactor: 1 }, { growthInterval: 0.5 }, { initScale: -1 }, { enabld: true }]) {
      expect(codeOf(() => new GradScaler(o as never))).toMatch(/^ERR_ADAMP_INVALID_ARGUMENT: GradScaler/);
    }
  });

  test('disabled: a pass-through', () => {
    const ps = one();
    const opt = new SGD(ps, { lr: 0.5 }, { backend: 'js' });
    const sc = new GradScaler({ enabled: false });
    expect(sc.scale(3)).toBe(3);
    expect(sc.getScale()).toBe(1);
    ps[0].grad![0] = Infinity;
    expect(sc.step(opt)).toBe(true); // steps, as optimizer.step()
    expect(Number.isNaN(ps[0].data[0]) || !Number.isFinite(ps[0].data[0])).toBe(true);
    sc.update();
    expect(sc.stateDict()).toEqual({});
  });
});

// ---------------------------------------------------------------------------------------------
// Stochastic rounding (bfloat16)

describe('stochastic rounding', () => {
  test('rounds to one of the two neighbours, unbiased, deterministic for a key; bfloat16 values, Infinity and NaN as nearest', () => {
    const n = 80000;
    const x = new Float32Array(n).fill(1 + 2 ** -10); // 1/8 of the way from 1 to 1 + 2^-7
    x[0] = -(1 + 2 ** -10);
    const a = float32ToBf16Stochastic(x, roundingKey(7, 1, 0), new Uint16Array(n));
    const up = Array.from(a.subarray(1)).filter((h) => h === 0x3f81).length;
    expect(Array.from(new Set(a.subarray(1))).sort()).toEqual([0x3f80, 0x3f81]);
    expect(Math.abs(up / (n - 1) - 0.125)).toBeLessThan(0.01);
    expect([0xbf80, 0xbf81]).toContain(a[0]);
    expect(Array.from(float32ToBf16Stochastic(x, roundingKey(7, 1, 0), new Uint16Array(n)))).toEqual(Array.from(a));
    expect(Array.from(float32ToBf16Stochastic(x, roundingKey(8, 1, 0), new Uint16Array(n)))).not.toEqual(Array.from(a));
    expect(Array.from(float32ToBf16Stochastic(x, roundingKey(7, 2, 0), new Uint16Array(n)))).not.toEqual(Array.from(a));
    const edge = new Float32Array([1.5, -0, Infinity, -Infinity, NaN, 3.3895313892515355e38]);
    expect(Array.from(float32ToBf16Stochastic(edge, 12345, new Uint16Array(6)))).toEqual([0x3fc0, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0x7f7f]);
  });

  test.each(backends)('config.rounding: \'stochastic\' on %s: the same bits as the js backend, seeded, float16 left to nearest', (backend) => {
    const run = (b: BackendName, seed: number) => {
      const ps = [...randomHalfParams(3, 'bfloat16', 'bfloat16').slice(0, 2), ...randomHalfParams(3, 'float16', 'float16').slice(0, 1)];
      const o = new AdamW(ps, { lr: 1e-3 }, { backend: b, masterWeights: false, rounding: 'stochastic', seed });
      for (let k = 0; k < 3; k++) o.step();
      return ps.map((p) => Array.from(p.data));
    };
    const mine = run(backend, 1);
    expect(mine).toEqual(run('js', 1));
    const other = run(backend, 2);
    expect(other[0]).not.toEqual(mine[0]);
    expect(other[2]).toEqual(mine[2]); // float16: nearest, whatever the seed
    expect(codeOf(() => new AdamW([], {}, { rounding: 'up' as never }))).toMatch(/config.rounding must be 'nearest' or 'stochastic'/);
    expect(codeOf(() => new AdamW(randomHalfParams(3, 'bfloat16', 'bfloat16'), {}, { seed: -1 }))).toMatch(/config.seed must be an integer in \[0, 2\^32 - 1\]/);
  });
});

describe('sharded steps', () => {
  test('a ShardedOptimizer refuses 16-bit params (ERR_ADAMP_UNSUPPORTED), naming the param', () => {
    const h: HalfParam = { name: 'h', shape: [2, 2], dtype: 'bfloat16', data: new Uint16Array(4), grad: new Uint16Array(4) };
    expect(codeOf(() => new ShardedOptimizer(AdamP, [h as never], {}, { collective: new SoloCollective() }))).toBe(
      "ERR_ADAMP_UNSUPPORTED: param 'h' has dtype 'bfloat16'; sharded steps run on float32 params only (docs/mixed-precision.md)");
  });
});

// ---------------------------------------------------------------------------------------------
// The cuda backend takes 16-bit host params as every engine does, as HalfSlots (last in this file:
// it replaces the cuda provider here; the CUDA engine's staging and kernels: test/cuda-mixed.test.ts)

describe('cuda', () => {
  test('16-bit host params reach the cuda engine as HalfSlots (bits, grad bits, master), and the facade writes no bit itself', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const select = require('../lib/backends/select') as typeof import('../lib/backends/select');
    const seen: Array<{ p: Float32Array; half?: { dtype: string; p16: Uint16Array; g16: Uint16Array | null; master: boolean } }> = [];
    select.registerProvider('cuda', () => ({
      report: () => ({ name: 'cuda', available: true, reason: 'a stand-in for this test' }),
      create: () => ({
        name: 'cuda',
        step: (job: { slots: readonly (typeof seen)[number][] }) => { seen.push(...job.slots); },
      }),
    }));
    const h: HalfParam = { name: 'h', shape: [2], dtype: 'bfloat16', data: float32ToHalf(new Float32Array([1, 2]), 'bfloat16'), grad: new Uint16Array(2) };
    const before = (h.data as Uint16Array).slice();
    const opt = new AdamP([h], {}, { backend: 'cuda' });
    opt.step();
    expect(seen).toHaveLength(1);
    expect(seen[0].half?.dtype).toBe('bfloat16');
    expect(seen[0].half?.p16).toBe(h.data);
    expect(seen[0].half?.g16).toBe(h.grad);
    expect(seen[0].half?.master).toBe(true);
    expect(Array.from(seen[0].p)).toEqual([1, 2]); // the master weights, made from the param's bits
    expect(Array.from(h.data as Uint16Array)).toEqual(Array.from(before)); // the stand-in wrote nothing, so neither did the facade
  });
});
