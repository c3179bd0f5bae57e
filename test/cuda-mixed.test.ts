/**
 * Mixed precision on the CUDA backend (docs/mixed-precision.md#cuda): 16-bit DeviceTensors
 * (bfloat16 / float16, DLPack codes, host round trips), 16-bit device params stepped in place by
 * the mixed kernels (16-bit loads and stores, float32 master weights in the device state or the
 * param widened and rounded back, bfloat16 stochastic rounding with lib/core/half.ts's hash), host
 * 16-bit params on the CUDA backend, loss scaling on the device (the found-inf flag and the skip,
 * GradScaler's update on the device), all compared bit for bit with the js backend; and the
 * binding's argument checks.
 *
 * Runs wherever the addon has a usable CUDA device: a GPU (scripts/gpu-validate.sh), or the CPU
 * emulation of the kernels (scripts/test-cuda-emulated.sh). Elsewhere every test is skipped and
 * the reason printed.
 */
import { AdamP, AdamW, SGD, SGDP } from '../lib/optim/registry';
import { GradScaler } from '../lib/amp/grad-scaler';
import { DeviceTensor } from '../lib/device/tensor';
import { cudaProvider, hasCuda } from '../lib/backends/cuda';
import { CudaBuffer, CUDA_SCALER, type CudaAddon } from '../lib/backends/cuda/binding';
import { cudaAddonOrReport } from '../lib/backends/cuda/availability';
import { loadAddon } from '../lib/binding/load';
import { float32ToHalf, halfToFloat32, type HalfDtype } from '../lib/core/half';
import { clipGradNorm } from '../lib/clip';
import type { AnyParam, DeviceParam, HalfParam } from '../lib/types';
import { randn, rng } from './helpers/random';

const loaded = loadAddon();
const addon = 'addon' in loaded ? loaded.addon : undefined;
const cuda = addon !== undefined && hasCuda(addon) ? addon : undefined;
const gpu = cuda?.cudaStatus().available === true;
if (!gpu) {
  // eslint-disable-next-line no-console
  console.warn(`CUDA mixed-precision tests skipped: ${cudaProvider.report().reason}`);
}
const onGpu = gpu ? describe : describe.skip;

type Kind = 'adamp' | 'sgdp' | 'adamw' | 'sgd';
const CLASSES = { adamp: AdamP, sgdp: SGDP, adamw: AdamW, sgd: SGD };
const OPTIONS: Record<Kind, object> = {
  adamp: { lr: 0.01, weightDecay: 0.1 },
  adamw: { lr: 0.01, weightDecay: 0.1 },
  sgdp: { lr: 0.1, momentum: 0.9, weightDecay: 1e-3 },
  sgd: { lr: 0.1, momentum: 0.9, weightDecay: 1e-3, nesterov: true },
};

function errOf(f: () => unknown): { code?: string; name?: string; message: string } {
  try {
    f();
  } catch (e) {
    return e as { code?: string; name?: string; message: string };
  }
  throw new Error('did not throw');
}

function bitsOf(a: ArrayBufferView): number[] {
  return Array.from(new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4));
}

/** The state dict with every array as its bits (NaN payloads and -0 compared exactly). */
function stateBits(opt: { stateDict(): unknown }): string {
  return JSON.stringify(opt.stateDict(), (_k, v) => (v instanceof Float32Array ? bitsOf(v) : ArrayBuffer.isView(v) ? Array.from(v as Uint16Array) : v));
}

const SHAPES: number[][] = [[7, 3, 3, 3], [33, 17], [129], [3, 7001], [5, 40, 3], [1], [2, 1, 9]];

interface Case {
  dtype: HalfDtype;
  /** The grad: a device tensor of the param's dtype, a float32 device tensor, or host bits. */
  grad: 'same' | 'float32' | 'host';
  master: boolean;
  stochastic: boolean;
}

/** Random 16-bit weights and per-step grads (scaled by `scale`), the same for every backend. */
function problem(seed: number, dtype: HalfDtype, steps: number, scale = 1) {
  const r = rng(seed);
  return SHAPES.map((shape, k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const w = float32ToHalf(randn(r, n), dtype);
    const grads = Array.from({ length: steps }, (_, s) => {
      const g = randn(r, n).map((v) => v * scale);
      if (k === 0 && s === 0) for (let i = 0; i < n; i += 13) g[i] *= 1e-6; // tiny grads: rounding-sensitive updates
      return g;
    });
    return { shape, w, grads };
  });
}

/** Steps the problem on the js backend (host 16-bit params) and on CUDA (device params); both results as bits. */
function runBoth(kind: Kind, c: Case, steps: number, scaler?: () => GradScaler, mutate?: (step: number, grads: Float32Array[]) => void) {
  const prob = problem(17, c.dtype, steps, scaler ? 256 : 1);
  const config = { masterWeights: c.master, ...(c.stochastic ? { rounding: 'stochastic' as const, seed: 12345 } : {}), diagnostics: 'full' as const };
  const cls = CLASSES[kind] as unknown as new (p: AnyParam[], o: unknown, cfg: unknown) => AdamP<AnyParam>;
  // js: host params; grads as the device would read them (16-bit grads rounded from the float32 ones)
  const hostPs: HalfParam[] = prob.map((q, k) => ({ data: q.w.slice(), dtype: c.dtype, shape: q.shape, grad: null, name: `p${k}` }));
  const js = new cls(hostPs, OPTIONS[kind], { backend: 'js', ...config });
  const devPs: DeviceParam[] = prob.map((q, k) => ({
    data: DeviceTensor.fromHost(q.w, q.shape, { dtype: c.dtype }), name: `p${k}`,
    grad: c.grad === 'same' ? DeviceTensor.zeros(q.shape, { dtype: c.dtype }) : c.grad === 'float32' ? DeviceTensor.zeros(q.shape) : null,
  }));
  const dev = new cls(devPs, OPTIONS[kind], { backend: 'cuda', ...config });
  expect(dev.backend).toBe('cuda');
  const jsScaler = scaler?.();
  const devScaler = scaler?.();
  const ran: boolean[][] = [[], []];
  for (let s = 0; s < steps; s++) {
    const grads = prob.map((q) => q.grads[s].slice());
    mutate?.(s, grads);
    prob.forEach((q, k) => {
      const g32 = grads[k];
      const g16 = float32ToHalf(g32, c.dtype);
      hostPs[k].grad = c.grad === 'float32' ? g32 : g16;
      if (c.grad === 'same') (devPs[k].grad as DeviceTensor).copyFromHost(g16);
      else if (c.grad === 'float32') (devPs[k].grad as DeviceTensor).copyFromHost(g32);
      else devPs[k].grad = g16;
    });
    if (jsScaler && devScaler) {
      ran[0].push(jsScaler.step(js));
      ran[1].push(devScaler.step(dev));
      jsScaler.update();
      devScaler.update();
      expect(devScaler.getScale()).toBe(jsScaler.getScale());
      expect(devScaler.stateDict()).toEqual(jsScaler.stateDict());
    } else {
      js.step();
      dev.step();
    }
  }
  const out = {
    rjs: { p: hostPs.map((p) => Array.from(p.data as Uint16Array)), sd: stateBits(js), info: js.lastStepInfo, skipped: js.lastStepSkipped },
    rdev: { p: devPs.map((p) => Array.from(p.data.toHost(new Uint16Array(p.data.numel)))), sd: stateBits(dev), info: dev.lastStepInfo, skipped: dev.lastStepSkipped },
    ran, devOpt: dev, devPs, jsOpt: js, hostPs,
  };
  return out;
}

function expectSame(r: ReturnType<typeof runBoth>): void {
  r.rjs.p.forEach((p, k) => {
    const d = r.rdev.p[k];
    const bad = p.findIndex((v, i) => v !== d[i]);
    if (bad >= 0) throw new Error(`param ${k}, element ${bad}: js 0x${p[bad].toString(16)}, cuda 0x${d[bad].toString(16)}`);
  });
  expect(r.rdev.sd).toBe(r.rjs.sd);
  expect(r.rdev.info.map((e) => e.projection)).toEqual(r.rjs.info.map((e) => e.projection));
  r.rjs.info.forEach((e, i) => {
    if (e.weightNorm === null) expect(r.rdev.info[i].weightNorm).toBeNull();
    else expect(Math.abs(r.rdev.info[i].weightNorm! - e.weightNorm)).toBeLessThanOrEqual(1e-9 * e.weightNorm);
  });
}

function dispose(ps: DeviceParam[]): void {
  for (const p of ps) {
    p.data.dispose();
    if (p.grad instanceof DeviceTensor) p.grad.dispose();
  }
}

onGpu('16-bit DeviceTensors', () => {
  test.each(['bfloat16', 'float16'] as const)('%s: zeros, fromHost, toHost, fill, copyFromHost round trip the bits', (dtype) => {
    const bits = new Uint16Array(4099).map((_, i) => (i * 40503) & 0xffff);
    const t = DeviceTensor.fromHost(bits, [4099], { dtype });
    expect(t.dtype).toBe(dtype);
    expect(String(t)).toContain(dtype);
    expect(Array.from(t.toHost(new Uint16Array(4099)))).toEqual(Array.from(bits));
    t.fill(0);
    expect(t.toHost(new Uint16Array(4099)).every((v) => v === 0)).toBe(true);
    t.copyFromHost(bits.slice().reverse());
    expect(t.toHost(new Uint16Array(4099))[0]).toBe(bits[4098]);
    const z = DeviceTensor.zeros([3, 5], { dtype });
    expect(Array.from(z.toHost(new Uint16Array(15)))).toEqual(new Array(15).fill(0));
    // wrong host types are refused before anything is copied
    expect(errOf(() => t.copyFromHost(new Float32Array(4099))).code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(errOf(() => t.toHost(new Float32Array(4099) as unknown as Uint16Array)).code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(errOf(() => t.copyFromHost(new Uint16Array(4098))).code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(errOf(() => DeviceTensor.fromHost(new Float32Array(3), [3], { dtype })).code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(errOf(() => DeviceTensor.fromHost(new Uint16Array(3), [3])).message).toMatch(/options\.dtype 'bfloat16' or 'float16'/);
    expect(errOf(() => DeviceTensor.zeros([3], { dtype: 'int8' as unknown as HalfDtype })).code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    t.dispose();
    z.dispose();
  });

  test('DLPack: export and import keep the dtype codes (float16 {2,16}, bfloat16 {4,16}, float32 {2,32})', () => {
    for (const [dtype, code, bits] of [['float16', 2, 16], ['bfloat16', 4, 16], ['float32', 2, 32]] as const) {
      const t = DeviceTensor.zeros([4, 6], { dtype });
      const d = t.toDLPack();
      expect(d.dtype).toEqual({ code, bits, lanes: 1 });
      expect(d.device).toEqual({ deviceType: 2, deviceId: 0 });
      const u = DeviceTensor.fromPointer(d);
      expect(u.dtype).toBe(dtype);
      expect(u.external).toBe(true);
      expect(u.pointer).toBe(t.pointer);
      // by name too
      expect(DeviceTensor.fromPointer({ pointer: t.pointer, shape: [4, 6], dtype }).dtype).toBe(dtype);
      if (dtype !== 'float32') {
        const h = new Uint16Array(24).map((_, i) => 0x3f80 + i);
        u.copyFromHost(h);
        expect(Array.from(t.toHost(new Uint16Array(24)))).toEqual(Array.from(h));
        // a 2-byte offset is aligned for 16-bit data; strided 16-bit views are not supported
        expect(DeviceTensor.fromPointer({ pointer: t.pointer, byteOffset: 2, shape: [23], dtype }).numel).toBe(23);
        expect(errOf(() => DeviceTensor.fromPointer({ pointer: t.pointer, byteOffset: 1, shape: [2], dtype })).message).toMatch(/not 2-byte aligned/);
        expect(errOf(() => DeviceTensor.fromPointer({ pointer: t.pointer, shape: [6, 4], strides: [1, 6], dtype })).code).toBe('ERR_ADAMP_UNSUPPORTED');
      }
      t.dispose();
    }
    expect(errOf(() => DeviceTensor.fromPointer({ pointer: 1024n, shape: [1], dtype: { code: 4, bits: 32, lanes: 1 } })).message).toMatch(/not supported/);
    expect(errOf(() => DeviceTensor.fromPointer({ pointer: 1024n, shape: [1], dtype: { code: 2, bits: 16, lanes: 2 } })).message).toMatch(/not supported/);
  });

  test('a device param\'s dtype is its tensor\'s; grads are float32 or the param\'s dtype', () => {
    const p = DeviceTensor.zeros([4], { dtype: 'bfloat16' });
    const g16 = DeviceTensor.zeros([4], { dtype: 'float16' });
    expect(errOf(() => new AdamW([{ data: p, grad: null, dtype: 'float16' }], {}, { backend: 'cuda' }).step()).message).toMatch(/holds bfloat16/);
    expect(errOf(() => new AdamW([{ data: p, grad: g16 }], {}, { backend: 'cuda' }).step()).message).toMatch(/float32 or the param's dtype/);
    expect(errOf(() => new AdamW([{ data: p, grad: new Uint16Array(3) }], {}, { backend: 'cuda' }).step()).code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    const f = DeviceTensor.zeros([4]);
    expect(errOf(() => new AdamW([{ data: f, grad: DeviceTensor.zeros([4], { dtype: 'bfloat16' }) }], {}, { backend: 'cuda' }).step()).message).toMatch(/float32 or the param's dtype/);
    p.dispose();
    g16.dispose();
    f.dispose();
  });
});

const CASES: Case[] = [
  { dtype: 'bfloat16', grad: 'same', master: true, stochastic: false },
  { dtype: 'bfloat16', grad: 'same', master: false, stochastic: true },
  { dtype: 'bfloat16', grad: 'float32', master: true, stochastic: true },
  { dtype: 'float16', grad: 'same', master: true, stochastic: false },
  { dtype: 'float16', grad: 'host', master: false, stochastic: false },
  { dtype: 'bfloat16', grad: 'host', master: false, stochastic: false },
];

onGpu('16-bit device params step bit for bit as the js backend', () => {
  const combos: Array<[Kind, string, Case]> = [];
  for (const kind of ['adamp', 'sgdp', 'adamw', 'sgd'] as const) {
    for (const c of CASES) combos.push([kind, `${c.dtype} ${c.grad} grads, master ${c.master}, ${c.stochastic ? 'stochastic' : 'nearest'}`, c]);
  }
  test.each(combos)('%s: %s', (kind, _what, c) => {
    const r = runBoth(kind, c, 3);
    expectSame(r);
    // the device state holds the master weights exactly when asked
    const st = (r.devOpt.stateDict() as { state: Record<number, { master?: Float32Array }> }).state[0];
    expect(st.master instanceof Float32Array).toBe(c.master);
    dispose(r.devPs);
  });

  test('a checkpoint of 16-bit device params (master weights from the device) continues as the js backend', () => {
    const c: Case = { dtype: 'bfloat16', grad: 'same', master: true, stochastic: true };
    const r = runBoth('adamp', c, 2);
    expectSame(r);
    const sd = r.devOpt.stateDict();
    // a new CUDA optimizer on new device params loads it and steps as js does from the same point
    const devPs: DeviceParam[] = r.devPs.map((p, k) => ({ data: DeviceTensor.fromHost(Uint16Array.from(r.rjs.p[k]), p.data.shape, { dtype: 'bfloat16' }), grad: null, name: `p${k}` }));
    const cfg = { masterWeights: true, rounding: 'stochastic' as const, seed: 12345 };
    const dev2 = new AdamP<AnyParam>(devPs, OPTIONS.adamp, { backend: 'cuda', ...cfg });
    dev2.loadStateDict(sd);
    const g = r.hostPs.map((p) => new Float32Array(p.data.length).fill(0.25));
    devPs.forEach((p, k) => { p.grad = DeviceTensor.fromHost(float32ToHalf(g[k], 'bfloat16'), p.data.shape, { dtype: 'bfloat16' }); });
    r.hostPs.forEach((p, k) => { p.grad = float32ToHalf(g[k], 'bfloat16'); });
    r.jsOpt.step();
    dev2.step();
    r.hostPs.forEach((p, k) => expect(Array.from(devPs[k].data.toHost(new Uint16Array(p.data.length)))).toEqual(Array.from(p.data as Uint16Array)));
    expect(stateBits(dev2)).toBe(stateBits(r.jsOpt));
    dispose(r.devPs);
    dispose(devPs);
  });
});

onGpu('host 16-bit params on the CUDA backend', () => {
  test.each([
    ['adamp', 'bfloat16', true, true], ['sgdp', 'float16', false, false], ['adamw', 'bfloat16', false, true], ['sgd', 'float16', true, false],
  ] as const)('%s %s, master %s, stochastic %s: bit for bit as js', (kind, dtype, master, stochastic) => {
    const prob = problem(5, dtype, 3);
    const cfg = { masterWeights: master, ...(stochastic ? { rounding: 'stochastic' as const, seed: 7 } : {}) };
    const cls = CLASSES[kind] as unknown as new (p: AnyParam[], o: unknown, cfg: unknown) => AdamP<AnyParam>;
    const mk = (): HalfParam[] => prob.map((q, k) => ({ data: q.w.slice(), dtype, shape: q.shape, grad: null, name: `p${k}` }));
    const a = mk();
    const b = mk();
    const js = new cls(a, OPTIONS[kind], { backend: 'js', ...cfg });
    const cu = new cls(b, OPTIONS[kind], { backend: 'cuda', ...cfg });
    expect(cu.backend).toBe('cuda');
    for (let s = 0; s < 3; s++) {
      prob.forEach((q, k) => { a[k].grad = float32ToHalf(q.grads[s], dtype); b[k].grad = float32ToHalf(q.grads[s], dtype); });
      js.step();
      cu.step();
      // the 16-bit params are current after each step (rounded on the host from the device's values)
      a.forEach((p, k) => expect(Array.from(b[k].data as Uint16Array)).toEqual(Array.from(p.data as Uint16Array)));
    }
    expect(stateBits(cu)).toBe(stateBits(js));
    cu.dispose();
  });
});

onGpu('binding: the mixed-precision exports check their arguments', () => {
  test('cudaSetStorage, cudaInitMaster, cudaCheckGrads, cudaUnscaleGrads, cudaScalerUpdate, cudaCopyBytes refuse bad input with a code', () => {
    const c = cuda!;
    const h = c.cudaCreate('adamw');
    const id = c.cudaAddTensor(h, 8, 1, 1, 8, false, 3);
    const host = c.cudaAddTensor(h, 8, 1, 1, 8, false, 0);
    const bad = (f: () => unknown, code = 'ERR_ADAMP_INVALID_ARGUMENT'): void => expect(errOf(f).code).toBe(code);
    bad(() => c.cudaSetStorage(h, 99, 1, 0, 0));
    bad(() => c.cudaSetStorage(h, id, 3, 0, 0)); // dtype code 3
    bad(() => c.cudaSetStorage(h, id, 64, 0, 0));
    bad(() => c.cudaSetStorage(h, id, 16, 0, 0)); // master weights of a float32 param
    bad(() => c.cudaSetStorage(h, id, 2 | 32, 0, 0)); // stochastic float16
    bad(() => c.cudaSetStorage(h, host, 1, 0, 0)); // 16-bit data must be external
    bad(() => c.cudaSetStorage(h, id, 1, -1, 0));
    bad(() => c.cudaSetStorage(h, id, 1, 0, 2 ** 32));
    bad(() => c.cudaSetStorage(h, id, 1.5, 0, 0));
    bad(() => c.cudaInitMaster(h, id)); // no master weights yet
    c.cudaSetStorage(h, id, 1 | (1 << 2) | 16, 1, 2);
    expect(c.cudaGetStorage(h, id)).toBe(1 | 4 | 16);
    bad(() => c.cudaInitMaster(h, id)); // the param is not bound
    bad(() => c.cudaUpload(h, id, CudaBuffer.p, new Float32Array(8))); // a 16-bit param has no float32 upload
    bad(() => c.cudaStep(h, Int32Array.of(id), Float64Array.of(1e-3, 0.9, 0.999, 1e-8, 0))); // unbound
    const p = DeviceTensor.zeros([8], { dtype: 'bfloat16' });
    const q = DeviceTensor.zeros([9], { dtype: 'bfloat16' });
    bad(() => c.cudaBind(h, id, CudaBuffer.p, q.pointer + 1n)); // odd address
    c.cudaBind(h, id, CudaBuffer.p, q.pointer + 2n); // 2-byte aligned: accepted
    bad(() => c.cudaCheckGrads(h, Int32Array.of(id), 8n, true)); // host address
    bad(() => c.cudaCheckGrads(h, Int32Array.of(id), p.pointer, true)); // g not bound
    bad(() => c.cudaCheckGrads(h, [id] as unknown as Int32Array, p.pointer, true));
    bad(() => c.cudaScalerUpdate(h, 64n, 1, false, 2, 0.5, 10)); // host address
    const st = DeviceTensor.zeros([CUDA_SCALER.bytes / 4]);
    bad(() => c.cudaScalerUpdate(h, st.pointer, 1 << 16, false, 2, 0.5, 10));
    bad(() => c.cudaScalerUpdate(h, st.pointer, 1, false, 1, 0.5, 10));
    bad(() => c.cudaScalerUpdate(h, st.pointer, 1, false, 2, 1, 10));
    bad(() => c.cudaScalerUpdate(h, st.pointer, 1, false, 2, 0.5, 0));
    bad(() => c.cudaStep(h, Int32Array.of(host), Float64Array.of(1e-3, 0.9, 0.999, 1e-8, 0), { scale: st.pointer }));
    bad(() => c.cudaStep(h, Int32Array.of(host), Float64Array.of(1e-3, 0.9, 0.999, 1e-8, 0), { scale: 16n, found: 16n }));
    // cudaUnscaleGrads: device views, a device scale and flag
    const g = DeviceTensor.fromHost(new Float32Array(8).fill(4), [8]);
    const sc = st.pointer;
    const fl = st.pointer + BigInt(CUDA_SCALER.found(0));
    const v = (o: object): Array<{ pointer: bigint; shape: number[]; strides: number[] | null }> => [{ pointer: g.pointer, shape: [8], strides: null, ...o }];
    bad(() => c.cudaUnscaleGrads(h, v({ pointer: 8n }), sc, fl, true)); // host address
    bad(() => c.cudaUnscaleGrads(h, v({ shape: [2.5] }), sc, fl, true));
    bad(() => c.cudaUnscaleGrads(h, v({ shape: [2, 4], strides: [4] }), sc, fl, true));
    bad(() => c.cudaUnscaleGrads(h, v({ shape: [2, 4], strides: [0, 1] }), sc, fl, true));
    bad(() => c.cudaUnscaleGrads(h, v({ shape: new Array(9).fill(1) }), sc, fl, true));
    bad(() => c.cudaUnscaleGrads(h, v({ pointer: g.pointer + 2n }), sc, fl, true)); // not 4-byte aligned
    bad(() => c.cudaUnscaleGrads(h, v({}), 16n, fl, true));
    bad(() => c.cudaUnscaleGrads(h, v({}), sc, undefined as unknown as bigint, true));
    bad(() => c.cudaUnscaleGrads(h, {} as never, sc, fl, true));
    expect(Array.from(g.toHost())).toEqual(new Array(8).fill(4)); // nothing refused was queued
    c.cudaCopyBytes(0, st.pointer, new Uint16Array(new Float32Array([2]).buffer), true); // scale 2
    c.cudaUnscaleGrads(h, v({ shape: [4], strides: [2] }), sc, fl, true); // every other element
    expect(Array.from(g.toHost())).toEqual([2, 4, 2, 4, 2, 4, 2, 4]);
    g.dispose();
    bad(() => c.cudaCopyBytes(0, p.pointer, new Float32Array(8) as unknown as Uint16Array, true));
    bad(() => c.cudaCopyBytes(-1, p.pointer, new Uint16Array(8), true));
    bad(() => c.cudaZeroBytes(0, p.pointer, -2));
    bad(() => c.cudaCopyBytes(0, 8n, new Uint16Array(4), true)); // a host address: refused, not written
    bad(() => c.cudaZeroBytes(0, 8n, 8));
    // nothing above broke the context: a float32 tensor still steps
    c.cudaUpload(h, host, CudaBuffer.p, new Float32Array(8).fill(1));
    c.cudaUpload(h, host, CudaBuffer.g, new Float32Array(8).fill(1));
    c.cudaStep(h, Int32Array.of(host), Float64Array.of(0.5, 0.9, 0.999, 1e-8, 0));
    const out = new Float32Array(8);
    c.cudaDownload(h, host, CudaBuffer.p, out);
    expect(out[0]).toBeCloseTo(0.5, 5);
    c.cudaDestroy(h);
    p.dispose();
    q.dispose();
    st.dispose();
  });
});

// ---------------------------------------------------------------------------------------------
// Loss scaling on the device: the found-inf flag, the skip and the scale update stay on the device

onGpu('GradScaler with the scale on the device', () => {
  /** Non-finite values in some steps' grads (in the grad's own type): step 1 param 2 Infinity, step 3 param 0 NaN. */
  const inject = (s: number, grads: Float32Array[]): void => {
    if (s === 1) grads[2][5] = Infinity;
    if (s === 3) grads[0][0] = NaN;
  };

  test.each([
    ['adamp', { dtype: 'bfloat16', grad: 'same', master: true, stochastic: true }],
    ['sgdp', { dtype: 'float16', grad: 'same', master: false, stochastic: false }],
    ['adamw', { dtype: 'bfloat16', grad: 'float32', master: true, stochastic: false }],
    ['sgd', { dtype: 'bfloat16', grad: 'host', master: true, stochastic: false }],
  ] as Array<[Kind, Case]>)('%s: skips and scale updates match the host GradScaler bit for bit (%j)', (kind, c) => {
    const factory = (): GradScaler => new GradScaler({ initScale: 256, growthInterval: 2, backoffFactor: 0.25, growthFactor: 4 });
    const r = runBoth(kind, c, 6, factory, inject);
    expect(r.ran[0]).toEqual([true, false, true, false, true, true]); // the host scaler's outcomes
    expect(r.ran[1]).toEqual([true, true, true, true, true, true]); // the device scaler only queues
    expectSame(r);
    expect(r.rdev.skipped).toBe(false);
    dispose(r.devPs);
  });

  test('a step that finds Infinity/NaN leaves every device byte as it was; nothing waits until it is read', () => {
    const shapes = [[16, 8], [33], [4, 3, 5]];
    const r = rng(9);
    const ps: DeviceParam[] = shapes.map((shape, k) => {
      const n = shape.reduce((a, b) => a * b, 1);
      return { data: DeviceTensor.fromHost(float32ToHalf(randn(r, n), 'bfloat16'), shape, { dtype: 'bfloat16' }), grad: DeviceTensor.fromHost(float32ToHalf(randn(r, n, 64), 'bfloat16'), shape, { dtype: 'bfloat16' }), name: `w${k}` };
    });
    const opt = new AdamP<AnyParam>(ps, { lr: 0.01, weightDecay: 0.1 }, { backend: 'cuda', diagnostics: 'full' });
    const sc = new GradScaler({ initScale: 64 });
    expect(sc.deviceScalePointer()).toBeNull();
    expect(sc.step(opt)).toBe(true);
    sc.update();
    const at = sc.deviceScalePointer()!;
    expect(DeviceTensor.fromPointer({ pointer: at, shape: [1] }).toHost()[0]).toBe(64); // the scale, where a device loop reads it
    const bytes = (): string => JSON.stringify(ps.map((p) => Array.from(p.data.toHost(new Uint16Array(p.data.numel)))));
    const before = { p: bytes(), sd: stateBits(opt) };
    expect((opt.stateDict().state[0] as { step: number }).step).toBe(1);
    for (const bad of [0x7f80, 0xff80, 0x7fc1]) {
      const g = (ps[1].grad as DeviceTensor).toHost(new Uint16Array(33));
      const keep = g[7];
      g[7] = bad;
      (ps[1].grad as DeviceTensor).copyFromHost(g);
      expect(sc.step(opt)).toBe(true); // queued; the outcome is on the device
      sc.update();
      expect(opt.lastStepSkipped).toBe(true);
      expect(opt.lastStepInfo.map((e) => e.projection)).toEqual(['no_grad', 'no_grad', 'no_grad']);
      expect(bytes()).toBe(before.p);
      expect(stateBits(opt)).toBe(before.sd); // the step counts too (settled from the device)
      g[7] = keep;
      (ps[1].grad as DeviceTensor).copyFromHost(g);
    }
    expect(sc.getScale()).toBe(64 / 8);
    expect(sc.step(opt)).toBe(true);
    expect(opt.lastStepSkipped).toBe(false);
    expect((opt.stateDict().state[0] as { step: number }).step).toBe(2);
    expect(bytes()).not.toBe(before.p);
    dispose(ps);
  });

  test('a skipped first step creates no state, as on the host', () => {
    const p: DeviceParam = { data: DeviceTensor.zeros([8], { dtype: 'float16' }), grad: DeviceTensor.fromHost(new Uint16Array(8).fill(0x7c00), [8], { dtype: 'float16' }) };
    const opt = new AdamW<AnyParam>([p], {}, { backend: 'cuda' });
    const sc = new GradScaler();
    sc.step(opt);
    sc.update();
    expect(opt.stateDict().state).toEqual({});
    expect(sc.getScale()).toBe(32768);
    expect(sc.stateDict().growthTracker).toBe(0);
    dispose([p]);
  });

  test('the PyTorch GradScaler fixtures (test/fixtures/mixed) hold with the scale on the device', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fs = require('node:fs') as typeof import('node:fs');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const path = require('node:path') as typeof import('node:path');
    const dir = path.join(__dirname, 'fixtures', 'mixed');
    const names = fs.readdirSync(dir).filter((n) => n.endsWith('_scaler.json'));
    expect(names.length).toBeGreaterThanOrEqual(3);
    for (const name of names) {
      const c = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as {
        dtype: HalfDtype; gradDtype: string; masterWeights: boolean; optimizer: Kind; options: Record<string, unknown>;
        params: Array<{ data: number[]; shape: number[]; name: string }>; scaler: object;
        steps: Array<{ grads: number[][]; skipped: boolean; scaleAfter: number; growthTrackerAfter: number; params: number[][] }>;
      };
      const ps: DeviceParam[] = c.params.map((q) => ({ data: DeviceTensor.fromHost(Uint16Array.from(q.data), q.shape, { dtype: c.dtype }), grad: null, name: q.name }));
      const cls = CLASSES[c.optimizer] as unknown as new (p: AnyParam[], o: unknown, cfg: unknown) => AdamP<AnyParam>;
      const opt = new cls(ps, c.options, { backend: 'cuda', masterWeights: c.masterWeights });
      const sc = new GradScaler(c.scaler);
      c.steps.forEach((st, si) => {
        ps.forEach((p, i) => {
          p.grad = c.gradDtype === 'float32' ? new Float32Array(Uint32Array.from(st.grads[i]).buffer) : DeviceTensor.fromHost(Uint16Array.from(st.grads[i]), p.data.shape, { dtype: c.dtype });
        });
        sc.step(opt);
        sc.update();
        expect(`${name} step ${si}: skipped ${opt.lastStepSkipped}`).toBe(`${name} step ${si}: skipped ${st.skipped}`);
        expect(sc.getScale()).toBe(st.scaleAfter);
        expect(sc.stateDict().growthTracker).toBe(st.growthTrackerAfter);
        ps.forEach((p) => { if (p.grad instanceof DeviceTensor) p.grad.dispose(); });
      });
      dispose(ps);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// GradScaler.unscale with float32 device grads: unscaled on the device (the scale and the found
// flag stay there), then step / update as PyTorch's unscale_ -> step -> update

onGpu('GradScaler.unscale of float32 device grads', () => {
  const FSHAPES: number[][] = [[7, 3, 3, 3], [33, 17], [129], [5, 40, 3], [1]];
  /** Float32 bits with every NaN as one value (the device may keep a NaN's payload where JavaScript canonicalizes it). */
  const bitsNan = (a: Float32Array): number[] => bitsOf(a).map((b, i) => (Number.isNaN(a[i]) ? -1 : b));

  /** Float32 params on the js backend (host grads) and on CUDA (device grads, param 1's a transposed strided view). */
  function makePair(kind: Kind, seed: number) {
    const r = rng(seed);
    const ws = FSHAPES.map((shape) => randn(r, shape.reduce((a, b) => a * b, 1)));
    const cls = CLASSES[kind] as unknown as new (p: AnyParam[], o: unknown, cfg: unknown) => AdamP<AnyParam>;
    const hostPs = FSHAPES.map((shape, k) => ({ data: ws[k].slice(), grad: null as Float32Array | null, shape, name: `p${k}` }));
    const store = DeviceTensor.zeros([33 * 17]);
    const devPs: DeviceParam[] = FSHAPES.map((shape, k) => ({
      data: DeviceTensor.fromHost(ws[k], shape), name: `p${k}`,
      grad: k === 1 ? DeviceTensor.fromPointer({ pointer: store.pointer, shape: [33, 17], strides: [1, 33], keepAlive: store }) : DeviceTensor.zeros(shape),
    }));
    const js = new cls(hostPs, OPTIONS[kind], { backend: 'js', diagnostics: 'full' });
    const dev = new cls(devPs, OPTIONS[kind], { backend: 'cuda', diagnostics: 'full' });
    const setGrads = (gs: Float32Array[]): void => gs.forEach((g, k) => {
      hostPs[k].grad = g.slice();
      (devPs[k].grad as DeviceTensor).copyFromHost(g);
    });
    return { r, js, dev, hostPs, devPs, setGrads, dispose: () => { dispose(devPs); store.dispose(); } };
  }

  test.each(['adamp', 'sgdp', 'adamw', 'sgd'] as const)('%s: unscale -> clipGradNorm -> step -> update equals the js backend bit for bit', (kind) => {
    const t = makePair(kind, 31);
    const factory = (): GradScaler => new GradScaler({ initScale: 3, growthInterval: 2, backoffFactor: 0.25, growthFactor: 4 }); // 1 / 3 rounds
    const scJs = factory();
    const scDev = factory();
    const skipped: boolean[][] = [[], []];
    for (let s = 0; s < 7; s++) {
      const gs = FSHAPES.map((shape) => randn(t.r, shape.reduce((a, b) => a * b, 1), 50));
      gs[2][s] = 1e-41; // a subnormal, unscaled without flushing
      if (s === 1) gs[2][5] = Infinity;
      if (s === 3) gs[1][40] = NaN; // in the strided grad
      if (s === 5) gs[4][0] = -Infinity;
      t.setGrads(gs);
      scJs.unscale(t.js);
      scDev.unscale(t.dev);
      // the unscaled grads, as clipping reads them
      t.hostPs.forEach((p, k) => expect(bitsNan((t.devPs[k].grad as DeviceTensor).toHost())).toEqual(bitsNan(p.grad!)));
      if (s % 2 === 0) expect(clipGradNorm(t.devPs.map((p) => ({ grad: p.grad as DeviceTensor })), 40)).toBe(clipGradNorm(t.hostPs, 40));
      expect(scDev.step(t.dev)).toBe(true); // queued: the outcome is on the device
      const ran = scJs.step(t.js);
      expect(ran).toBe(s !== 1 && s !== 3 && s !== 5);
      scJs.update();
      scDev.update();
      skipped[0].push(t.js.lastStepSkipped);
      skipped[1].push(t.dev.lastStepSkipped);
      expect(scDev.getScale()).toBe(scJs.getScale());
      expect(scDev.stateDict()).toEqual(scJs.stateDict());
    }
    expect(skipped[0]).toEqual([false, true, false, true, false, true, false]);
    expect(skipped[1]).toEqual(skipped[0]);
    t.hostPs.forEach((p, k) => expect(bitsOf(t.devPs[k].data.toHost())).toEqual(bitsOf(p.data)));
    expect(stateBits(t.dev)).toBe(stateBits(t.js));
    expect(t.dev.lastStepInfo.map((e) => e.projection)).toEqual(t.js.lastStepInfo.map((e) => e.projection));
    t.dispose();
  });

  test('unscale then step equals the fused step (step without unscale) bit for bit', () => {
    const a = makePair('adamp', 8);
    const b = makePair('adamp', 8);
    const scA = new GradScaler({ initScale: 1000 });
    const scB = new GradScaler({ initScale: 1000 });
    for (let s = 0; s < 3; s++) {
      const gs = FSHAPES.map((shape) => randn(a.r, shape.reduce((x, y) => x * y, 1), 1000));
      if (s === 1) gs[0][3] = NaN;
      a.setGrads(gs);
      b.setGrads(gs);
      scA.unscale(a.dev);
      scA.step(a.dev);
      scA.update();
      scB.step(b.dev);
      scB.update();
      expect(a.dev.lastStepSkipped).toBe(s === 1);
      expect(b.dev.lastStepSkipped).toBe(s === 1);
    }
    a.devPs.forEach((p, k) => expect(bitsOf(p.data.toHost())).toEqual(bitsOf(b.devPs[k].data.toHost())));
    expect(stateBits(a.dev)).toBe(stateBits(b.dev));
    expect(scA.stateDict()).toEqual(scB.stateDict());
    a.dispose();
    b.dispose();
  });

  test('an Infinity/NaN grad: the step changes nothing, update() backs off, and nothing waits for the device', () => {
    const t = makePair('adamp', 12);
    const sc = new GradScaler({ initScale: 64 });
    const clean = FSHAPES.map((shape) => randn(t.r, shape.reduce((a, b) => a * b, 1), 64));
    t.setGrads(clean);
    sc.unscale(t.dev);
    sc.step(t.dev);
    sc.update();
    const bytes = (): string => JSON.stringify(t.devPs.map((p) => bitsOf(p.data.toHost())));
    const before = { p: bytes(), sd: stateBits(t.dev) };
    const c = (cudaAddonOrReport() as { addon: CudaAddon }).addon; // the (guarded) addon the engine calls
    const waits = ['cudaSync', 'cudaDownload', 'cudaGetSteps', 'cudaLastSkipped', 'cudaCopyToHost', 'cudaCopyBytes', 'cudaWhenDone', 'cudaInfo'] as const;
    let scale = 64;
    for (const [k, i, bad] of [[2, 7, Infinity], [1, 0, NaN], [4, 0, -Infinity]] as const) {
      const gs = clean.map((g) => g.slice());
      gs[k][i] = bad;
      t.setGrads(gs);
      const spies = waits.map((name) => jest.spyOn(c, name));
      const toHost = jest.spyOn(DeviceTensor.prototype, 'toHost');
      try {
        sc.unscale(t.dev);
        expect(sc.step(t.dev)).toBe(true);
        sc.update();
        for (const s of [...spies, toHost]) expect(s).not.toHaveBeenCalled();
        expect(t.dev.lastStepSkipped).toBe(true); // reading the outcome waits: the spies see it
        expect(spies.some((s) => s.mock.calls.length > 0)).toBe(true);
      } finally {
        for (const s of [...spies, toHost]) s.mockRestore();
      }
      scale /= 2;
      expect(t.dev.lastStepSkipped).toBe(true);
      expect(t.dev.lastStepInfo.every((e) => e.projection === 'no_grad')).toBe(true);
      expect(bytes()).toBe(before.p);
      expect(stateBits(t.dev)).toBe(before.sd); // the step counts too
      expect(sc.getScale()).toBe(scale);
      expect(sc.stateDict().growthTracker).toBe(0);
    }
    // the grads stay unscaled after the skip (as PyTorch leaves them); a clean round steps again
    t.setGrads(clean);
    sc.unscale(t.dev);
    expect(Array.from((t.devPs[0].grad as DeviceTensor).toHost())).toEqual(Array.from(clean[0].map((g) => Math.fround(g * Math.fround(1 / scale)))));
    sc.step(t.dev);
    sc.update();
    expect(t.dev.lastStepSkipped).toBe(false);
    expect((t.dev.stateDict().state[0] as { step: number }).step).toBe(2);
    // update() after an unscale alone sees its flag (PyTorch's found_inf_per_device)
    const gs = clean.map((g) => g.slice());
    gs[3][1] = NaN;
    t.setGrads(gs);
    sc.unscale(t.dev);
    sc.update();
    expect(sc.getScale()).toBe(scale / 2);
    t.dispose();
  });

  test('call order and inputs are checked before anything changes', () => {
    const t = makePair('sgd', 3);
    const sc = new GradScaler({ initScale: 8 });
    const gs = FSHAPES.map((shape) => new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(8));
    t.setGrads(gs);
    sc.unscale(t.dev);
    expect(errOf(() => sc.unscale(t.dev)).message).toMatch(/already been called on this optimizer since the last update/);
    expect((t.devPs[0].grad as DeviceTensor).toHost()[0]).toBe(1); // unscaled once
    sc.step(t.dev);
    const e = errOf(() => sc.unscale(t.dev));
    expect(e.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(e.message).toMatch(/after step\(optimizer\)/);
    expect(errOf(() => sc.step(t.dev)).message).toMatch(/step\(optimizer\) has already been called/);
    sc.update();
    // a 16-bit device grad is refused (PyTorch refuses float16 grads): no grad is touched
    const p16: DeviceParam = { data: DeviceTensor.zeros([4], { dtype: 'bfloat16' }), grad: DeviceTensor.zeros([4], { dtype: 'bfloat16' }), name: 'h' };
    const f: DeviceParam = { data: DeviceTensor.zeros([4]), grad: DeviceTensor.fromHost(new Float32Array(4).fill(8), [4]), name: 'f' };
    const mixed = new SGD<AnyParam>([f, p16], { lr: 0.1 }, { backend: 'cuda' });
    const e16 = errOf(() => sc.unscale(mixed));
    expect(e16.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(e16.message).toMatch(/grad of param 'h' is a 16-bit grad/);
    expect(Array.from((f.grad as DeviceTensor).toHost())).toEqual([8, 8, 8, 8]);
    // grads sharing device memory would be unscaled twice
    const shared = DeviceTensor.fromHost(new Float32Array(8).fill(8), [8]);
    const q1: DeviceParam = { data: DeviceTensor.zeros([4]), grad: DeviceTensor.fromPointer({ pointer: shared.pointer, shape: [4], keepAlive: shared }), name: 'q1' };
    const q2: DeviceParam = { data: DeviceTensor.zeros([4]), grad: DeviceTensor.fromPointer({ pointer: shared.pointer, byteOffset: 8, shape: [4], keepAlive: shared }), name: 'q2' };
    const twice = new SGD<AnyParam>([f, q1, q2], { lr: 0.1 }, { backend: 'cuda' });
    expect(errOf(() => sc.unscale(twice)).message).toMatch(/grad of param 'q2' shares device memory with the grad of param 'q1'/);
    expect(Array.from(shared.toHost())).toEqual(new Array(8).fill(8));
    expect(Array.from((f.grad as DeviceTensor).toHost())).toEqual([8, 8, 8, 8]);
    // disabled: a pass-through
    const off = new GradScaler({ enabled: false });
    off.unscale(twice);
    expect(Array.from(shared.toHost())).toEqual(new Array(8).fill(8));
    dispose([p16, f, q1, q2]);
    shared.dispose();
    t.dispose();
  });

  test('the PyTorch GradScaler fixtures hold with unscale() of float32 device grads (the fused step\'s params bit for bit)', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fs = require('node:fs') as typeof import('node:fs');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const path = require('node:path') as typeof import('node:path');
    const dir = path.join(__dirname, 'fixtures', 'mixed');
    const names = fs.readdirSync(dir).filter((n) => n.endsWith('_scaler.json'));
    expect(names.length).toBeGreaterThanOrEqual(3);
    for (const name of names) {
      const c = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as {
        dtype: HalfDtype; masterWeights: boolean; optimizer: Kind; options: Record<string, unknown>;
        params: Array<{ data: number[]; shape: number[]; name: string }>; scaler: object;
        steps: Array<{ grads: number[][]; skipped: boolean; scaleAfter: number; growthTrackerAfter: number }>;
      };
      const cls = CLASSES[c.optimizer] as unknown as new (p: AnyParam[], o: unknown, cfg: unknown) => AdamP<AnyParam>;
      // a: the fused step on the 16-bit grads; b: unscale() of the same grads widened to float32 device grads, then step
      const mk = (): DeviceParam[] => c.params.map((q) => ({ data: DeviceTensor.fromHost(Uint16Array.from(q.data), q.shape, { dtype: c.dtype }), grad: null, name: q.name }));
      const pa = mk();
      const pb = mk();
      const a = new cls(pa, c.options, { backend: 'cuda', masterWeights: c.masterWeights });
      const b = new cls(pb, c.options, { backend: 'cuda', masterWeights: c.masterWeights });
      const sa = new GradScaler(c.scaler);
      const sb = new GradScaler(c.scaler);
      c.steps.forEach((st, si) => {
        pa.forEach((p, i) => { p.grad = DeviceTensor.fromHost(Uint16Array.from(st.grads[i]), p.data.shape, { dtype: c.dtype }); });
        pb.forEach((p, i) => { p.grad = DeviceTensor.fromHost(halfToFloat32(Uint16Array.from(st.grads[i]), c.dtype), p.data.shape); });
        sa.step(a);
        sa.update();
        sb.unscale(b);
        sb.step(b);
        sb.update();
        expect(`${name} step ${si}: skipped ${b.lastStepSkipped}`).toBe(`${name} step ${si}: skipped ${st.skipped}`);
        expect(sb.getScale()).toBe(st.scaleAfter);
        expect(sb.stateDict().growthTracker).toBe(st.growthTrackerAfter);
        pb.forEach((p, i) => expect(Array.from(p.data.toHost(new Uint16Array(p.data.numel)))).toEqual(Array.from(pa[i].data.toHost(new Uint16Array(p.data.numel)))));
        for (const p of [...pa, ...pb]) (p.grad as DeviceTensor).dispose();
      });
      expect(stateBits(b)).toBe(stateBits(a));
      dispose(pa);
      dispose(pb);
    }
  });
});

onGpu('GradScaler.unscale with host and device grads in one CUDA optimizer', () => {
  test('device grads unscaled on the device, host grads on the host; either one\'s Infinity/NaN skips the step; bit for bit as js', () => {
    const r = rng(77);
    const shapes = [[9, 4], [17], [3, 5]];
    const ws = shapes.map((s) => randn(r, s.reduce((a, b) => a * b, 1)));
    // cuda: a device param with a device grad, a device param with a host grad, a host param
    const dp: DeviceParam = { data: DeviceTensor.fromHost(ws[0], shapes[0]), grad: DeviceTensor.zeros(shapes[0]), name: 'dev' };
    const dh = { data: DeviceTensor.fromHost(ws[1], shapes[1]), grad: null as Float32Array | null, name: 'devHostGrad' };
    const hp = { data: ws[2].slice(), shape: shapes[2], grad: null as Float32Array | null, name: 'host' };
    const hostPs = shapes.map((shape, k) => ({ data: ws[k].slice(), shape, grad: null as Float32Array | null, name: `p${k}` }));
    const dev = new AdamP<AnyParam>([dp, dh as unknown as DeviceParam, hp], OPTIONS.adamp, { backend: 'cuda' });
    const js = new AdamP<AnyParam>(hostPs, OPTIONS.adamp, { backend: 'js' });
    const scDev = new GradScaler({ initScale: 5, growthInterval: 1 });
    const scJs = new GradScaler({ initScale: 5, growthInterval: 1 });
    const outcomes: boolean[] = [];
    for (let s = 0; s < 6; s++) {
      const gs = shapes.map((shape) => randn(r, shape.reduce((a, b) => a * b, 1), 20));
      if (s === 1) gs[0][3] = Infinity; // a device grad
      if (s === 3) gs[2][1] = NaN; // a host grad
      if (s === 4) gs[1][0] = -Infinity; // a device param's host grad
      (dp.grad as DeviceTensor).copyFromHost(gs[0]);
      dh.grad = gs[1].slice();
      hp.grad = gs[2].slice();
      hostPs.forEach((p, k) => { p.grad = gs[k].slice(); });
      scDev.unscale(dev);
      scJs.unscale(js);
      expect(bitsOf(hp.grad)).toEqual(bitsOf(hostPs[2].grad!));
      scDev.step(dev);
      scJs.step(js);
      scDev.update();
      scJs.update();
      outcomes.push(dev.lastStepSkipped);
      expect(dev.lastStepSkipped).toBe(js.lastStepSkipped);
      expect(scDev.getScale()).toBe(scJs.getScale());
    }
    expect(outcomes).toEqual([false, true, false, true, true, false]);
    expect(bitsOf(dp.data.toHost())).toEqual(bitsOf(hostPs[0].data));
    expect(bitsOf(dh.data.toHost())).toEqual(bitsOf(hostPs[1].data));
    dev.synchronize();
    expect(bitsOf(hp.data)).toEqual(bitsOf(hostPs[2].data));
    expect(stateBits(dev)).toBe(stateBits(js));
    dispose([dp, dh as unknown as DeviceParam]);
  });
});
