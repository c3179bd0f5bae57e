/**
 * clipGradNorm against PyTorch 1.13's torch.nn.utils.clip_grad_norm_ (test/fixtures/torch/
 * clip_grad_norm.json): the returned norm's float32 bits and every gradient after the call, bit
 * for bit (NaN as NaN); bad inputs refused before any gradient changes; the device path with a
 * stand-in DeviceTensor (CUDA cannot run here).
 */
import { AdampError, DeviceTensor, clipGradNorm, type Param } from '../lib/index';
import { fmaf, norm2f } from '../lib/clip';
import { f32FromBits, loadClipFixtures, num, numel } from './helpers/torch-fixtures';
import { rng } from './helpers/random';

const fx = loadClipFixtures();

function bits(x: number): number {
  const a = new Float32Array([x]);
  return new Uint32Array(a.buffer)[0];
}

/** Same float32 values, NaN as NaN (PyTorch's x86 NaNs carry a sign bit JS does not keep). */
function sameF32(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Number.isNaN(e) ? !Number.isNaN(a) : bits(a) !== bits(e)) throw new Error(`${what}[${i}]: got ${a} (0x${bits(a).toString(16)}), PyTorch ${e} (0x${bits(e).toString(16)})`);
  }
}

function paramsOf(c: (typeof fx.cases)[number]): Param[] {
  return c.params.map((p, i) => {
    const ref = c.gradsIn[i];
    return { name: `p${i}`, shape: p.shape, data: new Float32Array(numel(p.shape)), grad: ref === null ? null : fx.get(ref) };
  });
}

function errorOf(fn: () => unknown): { code?: string; message: string } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AdampError);
    return { code: (e as AdampError).code, message: (e as Error).message };
  }
  throw new Error('expected a throw');
}

describe('PyTorch cases', () => {
  test('all cases are here', () => {
    expect(fx.cases.map((c) => c.name)).toHaveLength(18);
  });

  test.each(fx.cases.map((c) => [c.name, c] as const))('%s', (_n, c) => {
    const params = paramsOf(c);
    const total = clipGradNorm(params, c.maxNorm, { normType: c.normType === 'inf' ? Infinity : c.normType });
    const expected = num(c.totalNorm);
    if (Number.isNaN(expected)) expect(total).toBeNaN();
    else {
      expect(total).toBe(expected);
      expect('0x' + bits(total).toString(16).padStart(8, '0')).toBe(c.totalNormBits);
    }
    expect(f32FromBits(c.totalNormBits)).toEqual(expected);
    c.gradsOut.forEach((ref, i) => {
      if (ref === null) expect(params[i].grad).toBeNull();
      else sameF32(params[i].grad!, fx.get(ref), `${c.name} grad ${i}`);
    });
    // 'inf' is accepted as PyTorch spells it; the result is the same
    if (c.normType === 'inf') expect(Object.is(clipGradNorm(paramsOf(c), c.maxNorm, { normType: 'inf' }), total)).toBe(true);
  });

  test('float32 accumulation: the documented cases differ from a double sum', () => {
    const under = fx.cases.find((c) => c.name === 'l2_float32_underflow')!;
    expect(clipGradNorm(paramsOf(under), 1)).toBe(0);
    expect(num(under.totalNormF64)).toBeGreaterThan(0);
    const over = fx.cases.find((c) => c.name === 'l2_float32_overflow')!;
    expect(clipGradNorm(paramsOf(over), 1)).toBe(Infinity);
    expect(Number.isFinite(num(over.totalNormF64))).toBe(true);
  });

  test('errorIfNonfinite throws before any gradient changes', () => {
    for (const name of ['l2_nonfinite_inf', 'l2_nonfinite_nan', 'inf_nonfinite_inf', 'l2_float32_overflow']) {
      const c = fx.cases.find((x) => x.name === name)!;
      const params = paramsOf(c);
      const before = params.map((p) => p.grad!.slice());
      const e = errorOf(() => clipGradNorm(params, c.maxNorm, { normType: c.normType === 'inf' ? Infinity : 2, errorIfNonfinite: true }));
      expect(e.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
      expect(e.message).toMatch(/total norm .* is (Infinity|NaN)/);
      params.forEach((p, i) => expect(Buffer.from(p.grad!.buffer).equals(Buffer.from(before[i].buffer))).toBe(true));
    }
    // a finite norm does not throw
    const ok = fx.cases.find((x) => x.name === 'l2_clipped')!;
    expect(clipGradNorm(paramsOf(ok), ok.maxNorm, { errorIfNonfinite: true })).toBe(num(ok.totalNorm));
  });
});

describe('the float32 primitives', () => {
  test('fmaf rounds once (ties of the double sum settled by its exact error)', () => {
    // 1 + 2^-24 is a float32 tie; a tiny positive product tips it up, a negative one down
    const one = 1;
    const tiny = Math.fround(2 ** -40);
    expect(fmaf(tiny, tiny, one)).toBe(1); // 1 + 2^-80: below the tie
    const half = Math.fround(2 ** -12); // half*half = 2^-24: exactly the tie, to even (1)
    expect(fmaf(half, half, one)).toBe(1);
    const a = Math.fround(1 + 2 ** -23); // a*a = 1 + 2^-22 + 2^-46: 1 + 2^-22 (+ a hair)
    expect(fmaf(a, a, 0)).toBe(Math.fround(1 + 2 ** -22));
    // a double-rounding case: the double sum lands on the float32 tie, the exact sum is just above it
    const x = Math.fround(1 + 2 ** -12); // x*x = 1 + 2^-11 + 2^-24 exactly
    const c = Math.fround(2 ** -60);
    // x*x + c = 1 + 2^-11 + 2^-24 + 2^-60: the double sum rounds to the tie 1 + 2^-11 + 2^-24, the exact one is above
    expect(fmaf(x, x, c)).toBe(Math.fround(1 + 2 ** -11 + 2 ** -23));
    expect(Math.fround(x * x + c)).toBe(Math.fround(1 + 2 ** -11)); // what a double sum alone gives
  });

  test('norm2f of a scalar underflows and overflows as PyTorch\'s', () => {
    expect(norm2f(new Float32Array([1e-30]))).toBe(0);
    expect(norm2f(new Float32Array([1e20]))).toBe(Infinity);
    expect(norm2f(new Float32Array([3]))).toBe(3);
    expect(norm2f(new Float32Array(0))).toBe(0);
  });
});

describe('arguments', () => {
  const good = (): Param[] => [
    { name: 'a', shape: [3], data: new Float32Array(3), grad: new Float32Array([3, 4, 12]) },
    { name: 'b', shape: [1], data: new Float32Array(1), grad: null },
  ];

  const bad: Array<[string, (p: Param[]) => unknown, RegExp]> = [
    ['maxNorm NaN', (p) => clipGradNorm(p, NaN), /maxNorm must be a number >= 0/],
    ['maxNorm -1', (p) => clipGradNorm(p, -1), /maxNorm/],
    ['maxNorm a string', (p) => clipGradNorm(p, '1' as never), /maxNorm/],
    ['normType 1', (p) => clipGradNorm(p, 1, { normType: 1 }), /normType must be 2 or Infinity/],
    ['normType "2"', (p) => clipGradNorm(p, 1, { normType: '2' as never }), /normType/],
    ['norm_type', (p) => clipGradNorm(p, 1, { norm_type: 2 } as never), /options.norm_type is not an option; did you mean 'normType'/],
    ['errorIfNonfinite 1', (p) => clipGradNorm(p, 1, { errorIfNonfinite: 1 as never }), /errorIfNonfinite must be a boolean/],
    ['a grad of numbers', (p) => clipGradNorm([...p, { shape: [2], data: new Float32Array(2), grad: [1, 2] as never }], 1), /grad of params\[2\] must be a Float32Array, a DeviceTensor or null/],
    ['a Float64Array grad', (p) => clipGradNorm([...p, { name: 'c', shape: [2], data: new Float32Array(2), grad: new Float64Array(2) as never }], 1), /grad of param 'c'/],
    ['the same grad twice', (p) => clipGradNorm([...p, { shape: [3], data: new Float32Array(3), grad: p[0].grad }], 1), /shares memory/],
    ['overlapping grads', (p) => clipGradNorm([...p, { shape: [2], data: new Float32Array(2), grad: p[0].grad!.subarray(1) }], 1), /shares memory/],
    ['not a param', (p) => clipGradNorm([...p, 5 as never], 1), /params\[2\] must be a param/],
    ['not a list', () => clipGradNorm(5 as never, 1), /params must be an array/],
  ];
  test.each(bad)('%s is refused before any grad changes', (_n, call, message) => {
    const p = good();
    const before = p[0].grad!.slice();
    const e = errorOf(() => call(p));
    expect(e.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(e.message).toMatch(message);
    expect(p[0].grad).toEqual(before);
  });

  test('one param, an iterable, Infinity to measure only, no grads', () => {
    const p = good();
    expect(clipGradNorm(p[0], 1)).toBe(13);
    expect(p[0].grad).toEqual(new Float32Array([3, 4, 12].map((x) => Math.fround(x * Math.fround(Math.fround(1 / Math.fround(13 + Math.fround(1e-6))) * 1)))));
    const q = good();
    expect(clipGradNorm(new Set(q), Infinity)).toBe(13);
    expect(q[0].grad).toEqual(new Float32Array([3, 4, 12]));
    expect(clipGradNorm([{ grad: null }, { grad: undefined }], 1)).toBe(0);
    expect(clipGradNorm([], 1)).toBe(0);
  });

  test('matches a double-precision norm closely on random gradients of many sizes', () => {
    const r = rng(11);
    for (let t = 0; t < 50; t++) {
      const grads = Array.from({ length: 1 + (t % 9) }, (_, k) => Float32Array.from({ length: (t * 7 + k * 13) % 300 }, () => (r() - 0.5) * 10));
      let sq = 0;
      for (const g of grads) for (const x of g) sq += x * x;
      const total = clipGradNorm(grads.map((g) => ({ grad: g })), Infinity);
      expect(Math.abs(total - Math.sqrt(sq))).toBeLessThanOrEqual(1e-5 * Math.sqrt(sq) + 1e-30);
    }
  });
});

describe('device gradients (a stand-in DeviceTensor: CUDA cannot run here)', () => {
  /** An object that is a DeviceTensor to instanceof, holding its values on the host. */
  function fakeDevice(values: Float32Array, pointer: bigint, log: string[]): DeviceTensor {
    const t = Object.create(DeviceTensor.prototype) as DeviceTensor;
    let disposed = false;
    const data = values.slice();
    Object.defineProperties(t, {
      disposed: { get: () => disposed },
      numel: { value: data.length },
      shape: { value: [data.length] },
      strides: { value: null },
      device: { value: 0 },
      view: { value: () => ({ pointer, device: 0, shape: [data.length], strides: null }) },
      toHost: { value: () => { log.push(`download ${pointer}`); return data.slice(); } },
      copyFromHost: { value: (src: Float32Array) => { log.push(`upload ${pointer}`); data.set(src); return t; } },
      dispose: { value: () => { disposed = true; } },
      values: { value: data },
    });
    return t;
  }

  test('download, compute, upload: the same results as host gradients', () => {
    const c = fx.cases.find((x) => x.name === 'l2_clipped')!;
    const log: string[] = [];
    const host = paramsOf(c);
    const mixed = paramsOf(c).map((p, i) => (i % 2 === 0 && p.grad ? { ...p, grad: fakeDevice(p.grad, BigInt(4096 * (i + 1)), log) } : p));
    const t1 = clipGradNorm(host, c.maxNorm);
    const t2 = clipGradNorm(mixed as never, c.maxNorm);
    expect(t2).toBe(t1);
    mixed.forEach((p, i) => {
      const g = p.grad instanceof DeviceTensor ? (p.grad as unknown as { values: Float32Array }).values : p.grad;
      if (host[i].grad === null) expect(g).toBeNull();
      else sameF32(g as Float32Array, host[i].grad!, `grad ${i}`);
    });
    // every download before any upload
    expect(log.findIndex((l) => l.startsWith('upload'))).toBeGreaterThan(log.filter((l) => l.startsWith('download')).length - 1);
    // coefficient 1: nothing is uploaded
    log.length = 0;
    clipGradNorm(mixed as never, 1e9);
    expect(log.every((l) => l.startsWith('download'))).toBe(true);
  });

  test('a disposed or aliased device gradient is refused before anything changes', () => {
    const log: string[] = [];
    const a = fakeDevice(new Float32Array([3, 4]), 4096n, log);
    const b = fakeDevice(new Float32Array([1, 1]), 8192n, log);
    b.dispose();
    const e = errorOf(() => clipGradNorm([{ grad: a }, { grad: b }], 1));
    expect(e.code).toBe('ERR_ADAMP_DISPOSED');
    const same = errorOf(() => clipGradNorm([{ grad: a }, { grad: fakeDevice(new Float32Array([1, 1]), 4100n, log) }], 1));
    expect(same.message).toMatch(/shares device memory/);
    expect(log).toEqual([]);
  });
});
