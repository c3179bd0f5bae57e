// Checkpoints loaded into params of another dtype (or another master-weights setting) with
// { convertDtypes: true }: what carries over, what is rounded, and that a converted run continues
// exactly where the saved one would have.
import { AdamW, AdamP, deserializeCheckpoint, float32ToHalf, halfToFloat32, serializeCheckpoint } from '../lib';
import type { AnyParam, HalfParam } from '../lib';

type Dtype = 'float32' | 'bfloat16' | 'float16';

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out[i] = (x / 2147483648 - 0.5) * 2;
  }
  return out;
}

/** A [4, 6] weight and a [6] bias in `dtype`, with float32 grads (a 16-bit param takes them). */
function model(dtype: Dtype): AnyParam[] {
  const shapes = [[4, 6], [6]];
  return shapes.map((shape, k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = values(n, 11 + k);
    const grad = values(n, 101 + k).map((g) => g * 0.1);
    if (dtype === 'float32') return { name: `p${k}`, shape, data: v, grad };
    return { name: `p${k}`, shape, dtype, data: float32ToHalf(v, dtype), grad } as HalfParam;
  });
}

function setGrads(params: AnyParam[], step: number): void {
  params.forEach((p, k) => {
    (p.grad as Float32Array).set(values((p.grad as Float32Array).length, 1000 * step + k).map((g) => g * 0.1));
  });
}

function f32Of(p: AnyParam): Float32Array {
  const d = (p as { dtype?: Dtype }).dtype ?? 'float32';
  return d === 'float32' ? (p.data as Float32Array) : halfToFloat32(p.data as Uint16Array, d);
}

const OPTS = { lr: 1e-2, weightDecay: 0.01 };

describe('checkpoints: { convertDtypes: true }', () => {
  test('a bfloat16 run with master weights continues on float32 params exactly as its master would', () => {
    const a = model('bfloat16');
    const optA = new AdamW(a, OPTS);
    for (let s = 1; s <= 3; s++) {
      setGrads(a, s);
      optA.step();
    }
    const bytes = serializeCheckpoint(optA, { params: true });
    const masters = optA.stateDict().state;

    const b = model('float32');
    const optB = new AdamW(b, OPTS);
    expect(() => deserializeCheckpoint(optB, bytes, { params: true })).toThrow(/is float32 here, bfloat16 in the file.*convertDtypes/);
    expect(optB.stateDict().state).toEqual({}); // the refusal changed nothing
    deserializeCheckpoint(optB, bytes, { params: true, convertDtypes: true });
    b.forEach((p, i) => expect(Array.from(p.data as Float32Array)).toEqual(Array.from(masters[i].master!)));
    const sb = optB.stateDict().state;
    expect(sb[0].master).toBeUndefined();
    expect(sb[0].dtype).toBeUndefined();
    expect(Array.from(sb[0].expAvg)).toEqual(Array.from(masters[0].expAvg));
    expect(sb[0].step).toBe(3);

    for (let s = 4; s <= 6; s++) {
      setGrads(a, s);
      setGrads(b, s);
      optA.step();
      optB.step();
    }
    const after = optA.stateDict().state;
    b.forEach((p, i) => expect(Array.from(p.data as Float32Array)).toEqual(Array.from(after[i].master!)));
  });

  test('a float32 run onto bfloat16 params: the master is the saved float32 weights, the params their rounding', () => {
    const a = model('float32');
    const optA = new AdamP(a, OPTS);
    for (let s = 1; s <= 2; s++) {
      setGrads(a, s);
      optA.step();
    }
    const bytes = serializeCheckpoint(optA, { params: true });
    const b = model('bfloat16');
    const optB = new AdamP(b, OPTS);
    deserializeCheckpoint(optB, bytes, { params: true, convertDtypes: true });
    const sb = optB.stateDict().state;
    a.forEach((p, i) => {
      expect(Array.from(sb[i].master!)).toEqual(Array.from(p.data as Float32Array));
      expect(Array.from(b[i].data as Uint16Array)).toEqual(Array.from(float32ToHalf(p.data as Float32Array, 'bfloat16')));
      expect(sb[i].dtype).toBe('bfloat16');
    });
    for (let s = 3; s <= 5; s++) {
      setGrads(a, s);
      setGrads(b, s);
      optA.step();
      optB.step();
    }
    const masters = optB.stateDict().state;
    a.forEach((p, i) => expect(Array.from(masters[i].master!)).toEqual(Array.from(p.data as Float32Array)));
  });

  test('bfloat16 without a master onto float16 without master weights: the params are rounded once', () => {
    const a = model('bfloat16');
    const optA = new AdamW(a, OPTS, { masterWeights: false });
    setGrads(a, 1);
    optA.step();
    const bytes = serializeCheckpoint(optA, { params: true });
    const b = model('float16');
    const optB = new AdamW(b, OPTS, { masterWeights: false });
    deserializeCheckpoint(optB, bytes, { params: true, convertDtypes: true });
    a.forEach((p, i) => {
      expect(Array.from(b[i].data as Uint16Array)).toEqual(Array.from(float32ToHalf(f32Of(p), 'float16')));
    });
    expect(optB.stateDict().state[0].master).toBeUndefined();
    expect(optB.stateDict().state[0].dtype).toBe('float16');
  });

  test('master weights in the file, none in this optimizer: the state loads without them and the params keep their bits', () => {
    const a = model('bfloat16');
    const optA = new AdamW(a, OPTS);
    setGrads(a, 1);
    optA.step();
    const bytes = serializeCheckpoint(optA, { params: true });
    const b = model('bfloat16');
    const optB = new AdamW(b, OPTS, { masterWeights: false });
    expect(() => deserializeCheckpoint(optB, bytes, { params: true })).toThrow(/master weights/);
    deserializeCheckpoint(optB, bytes, { params: true, convertDtypes: true });
    a.forEach((p, i) => expect(Array.from(b[i].data as Uint16Array)).toEqual(Array.from(p.data as Uint16Array)));
    expect(optB.stateDict().state[0].master).toBeUndefined();
  });

  test('no params in the file: a 16-bit param with master weights gets its own values widened as its master', () => {
    const a = model('float32');
    const optA = new AdamW(a, OPTS);
    setGrads(a, 1);
    optA.step();
    const bytes = serializeCheckpoint(optA);
    const b = model('float16');
    const before = b.map((p) => (p.data as Uint16Array).slice());
    const optB = new AdamW(b, OPTS);
    deserializeCheckpoint(optB, bytes, { convertDtypes: true });
    const sb = optB.stateDict().state;
    b.forEach((p, i) => {
      expect(Array.from(p.data as Uint16Array)).toEqual(Array.from(before[i]));
      expect(Array.from(sb[i].master!)).toEqual(Array.from(halfToFloat32(before[i], 'float16')));
    });
  });

  test('convertDtypes must be a boolean', () => {
    const optB = new AdamW(model('float32'), OPTS);
    const bytes = serializeCheckpoint(optB);
    expect(() => deserializeCheckpoint(optB, bytes, { convertDtypes: 'yes' as never })).toThrow(
      expect.objectContaining({ code: 'ERR_ADAMP_INVALID_ARGUMENT', message: expect.stringMatching(/options\.convertDtypes must be a boolean/) }),
    );
  });
});
