/**
 * Params that live on the GPU (issue: device tensors, external device pointers, streams):
 * DeviceTensor allocation, copies, disposal and garbage collection with a count of device
 * allocations; external memory described DLPack-style (offsets into a store's arena, strides);
 * the CUDA backend stepping device params in place against the TypeScript engine; state dicts,
 * checkpoints, stepAsync and user streams.
 *
 * Runs wherever the addon has a usable CUDA device: a GPU (scripts/gpu-validate.sh), or the CPU
 * emulation of the kernels that CI builds (scripts/test-cuda-emulated.sh). Elsewhere it checks
 * that device tensors fail with the reason, and says why the rest is skipped.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AdamP, SGDP } from '../lib/optim/registry';
import { DeviceTensor, deviceMemory } from '../lib/device/tensor';
import { cudaProvider, hasCuda } from '../lib/backends/cuda';
import { loadAddon } from '../lib/binding/load';
import { loadCheckpointSync, saveCheckpointSync } from '../lib/checkpoint';
import type { DeviceParam, Param } from '../lib/types';
import { randn, rng } from './helpers/random';
import { expectClose } from './helpers/fixtures';
import { AdampError } from '../lib/errors';

const loaded = loadAddon();
const addon = 'addon' in loaded ? loaded.addon : undefined;
const cudaAddon = addon !== undefined && hasCuda(addon) ? addon : undefined;
const gpu = cudaAddon?.cudaStatus().available === true;
if (!gpu) {
  // eslint-disable-next-line no-console
  console.warn(`device-tensor tests skipped: ${cudaProvider.report().reason}`);
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

function messageOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

test('DeviceTensor works exactly where the CUDA backend is available, and otherwise says why', () => {
  let err: { code?: string; message?: string } | undefined;
  try {
    DeviceTensor.zeros([4]).dispose();
  } catch (e) {
    err = e as typeof err;
  }
  if (gpu) {
    expect(err).toBeUndefined();
  } else {
    expect(err?.code).toBe('ERR_ADAMP_BACKEND_UNAVAILABLE');
    expect(err?.message).toMatch(/DeviceTensor\.zeros\(\) needs/);
    expect(err?.message).toContain(cudaProvider.report().reason.split(';')[0].slice(0, 40));
  }
});

interface Spec { shape: number[]; axis?: number }
const SPECS: Spec[] = [
  { shape: [32, 3, 3, 3] }, { shape: [32] }, { shape: [10, 20] }, { shape: [1, 16] }, { shape: [10, 1] },
  { shape: [3, 3, 8, 16], axis: -1 }, { shape: [70, 50] }, { shape: [7] }, { shape: [] }, { shape: [2, 3000] },
];

function hostParams(seed: number): Param[] {
  const r = rng(seed);
  return SPECS.map((s, i) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    return { data: randn(r, n), grad: null, shape: s.shape, name: `p${i}`, ...(s.axis !== undefined ? { channelAxis: s.axis } : {}) };
  });
}

/** Gradients: random, or with the radial part removed (the projection fires); some params get none. */
function grads(ps: Param[], step: number): Array<Float32Array | null> {
  const r = rng(1000 + step);
  return ps.map((p, i) => {
    const g = randn(r, p.data.length, 0.1);
    if ((i + step) % 3 === 0 && p.data.length > 1) {
      let gp = 0, pp = 0;
      for (let k = 0; k < g.length; k++) { gp += g[k] * p.data[k]; pp += p.data[k] * p.data[k]; }
      for (let k = 0; k < g.length; k++) g[k] = Math.fround(g[k] - (gp / pp) * p.data[k]);
    }
    return (i + step) % 5 === 4 ? null : g;
  });
}


function expectSame(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) throw new Error(`${what}: element ${i} differs: ${got[i]} vs ${want[i]}`);
  }
}

type Kind = 'adamp' | 'sgdp';
function make<P extends Param | DeviceParam>(kind: Kind, ps: P[], backend: 'js' | 'cuda' | 'auto', extra: { stream?: bigint } = {}) {
  return kind === 'adamp'
    ? new AdamP<P>(ps, { lr: 1e-2, weightDecay: 0.05, nesterov: true }, { backend, ...extra })
    : new SGDP<P>(ps, { lr: 0.1, momentum: 0.9, weightDecay: 1e-3 }, { backend, ...extra });
}

/** Device params holding copies of host params; grads uploaded per step by `setGrads`. */
function toDevice(ps: Param[]): DeviceParam[] {
  return ps.map((p) => ({ data: DeviceTensor.fromHost(p.data, p.shape), grad: null, name: p.name, channelAxis: p.channelAxis }));
}

function setGrads(dev: DeviceParam[], gs: Array<Float32Array | null>): void {
  dev.forEach((p, i) => {
    const g = gs[i];
    if (g === null) p.grad = null;
    else if (p.grad instanceof DeviceTensor) p.grad.copyFromHost(g);
    else p.grad = DeviceTensor.fromHost(g, p.data.shape);
  });
}

function disposeAll(dev: DeviceParam[]): void {
  for (const p of dev) {
    p.data.dispose();
    if (p.grad instanceof DeviceTensor) p.grad.dispose();
  }
}

(gpu ? describe : describe.skip)('device tensors', () => {
  test('fromHost / toHost / copyFromHost / fill round-trip, and shapes are checked', () => {
    const x = Float32Array.from({ length: 24 }, (_, i) => i - 7.5);
    const t = DeviceTensor.fromHost(x, [2, 3, 4]);
    expect(t.shape).toEqual([2, 3, 4]);
    expect(t.numel).toBe(24);
    expect(t.contiguous).toBe(true);
    expect(t.external).toBe(false);
    expect(typeof t.pointer).toBe('bigint');
    expectSame(t.toHost(), x, 'toHost');
    t.copyFromHost(x.map((v) => v * 2));
    expectSame(t.toHost(), x.map((v) => v * 2), 'copyFromHost');
    t.fill(0);
    expectSame(t.toHost(), new Float32Array(24), 'fill(0)');
    expect(messageOf(() => DeviceTensor.fromHost(x, [5, 5]))).toMatch(/data length 24 does not match shape \[5,5\]/);
    expect(messageOf(() => DeviceTensor.zeros([2, -1]))).toMatch(/shape must hold non-negative integers/);
    expect(messageOf(() => t.copyFromHost(new Float32Array(3)))).toMatch(/src must be a Float32Array of 24 elements/);
    expect(messageOf(() => DeviceTensor.zeros([1, 1, 1, 1, 1, 1, 1, 1, 1]))).toMatch(/at most 8 are supported/);
    expect(DeviceTensor.zeros([0, 5]).toHost().length).toBe(0);
    t.dispose();
  });

  test('use after dispose throws ERR_ADAMP_DISPOSED; dispose is idempotent; Symbol.dispose frees', () => {
    const before = deviceMemory().liveAllocations;
    const t = DeviceTensor.zeros([8]);
    expect(deviceMemory().liveAllocations).toBe(before + 1);
    t[Symbol.dispose]();
    expect(deviceMemory().liveAllocations).toBe(before);
    t.dispose();
    expect(t.disposed).toBe(true);
    expect(codeOf(() => t.toHost())).toBe('ERR_ADAMP_DISPOSED');
    expect(codeOf(() => t.pointer)).toBe('ERR_ADAMP_DISPOSED');
    expect(messageOf(() => t.copyFromHost(new Float32Array(8)))).toMatch(/copyFromHost\(\) after dispose\(\)/);
  });

  test('out of device memory: ERR_ADAMP_CUDA_OOM with the bytes requested and free; nothing leaks', () => {
    const { total } = cudaAddon!.cudaMemInfo(0);
    const before = deviceMemory();
    let err: { code?: string; message?: string } | undefined;
    try {
      DeviceTensor.zeros([Math.ceil((total + 2 ** 30) / 4)]);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err?.code).toBe('ERR_ADAMP_CUDA_OOM');
    expect(err).toBeInstanceOf(AdampError); // the addon's error, wrapped (lib/binding/errors.ts); the original is the cause
    expect((err as { cause?: { code?: string } }).cause?.code).toBe('ERR_ADAMP_CUDA_OOM');
    expect(err?.message).toMatch(/requested \d+ bytes; \d+ of \d+ bytes free on device 0/);
    expect(deviceMemory().liveAllocations).toBe(before.liveAllocations);
    expect(deviceMemory().liveBytes).toBe(before.liveBytes);
  });

  test('external memory: offsets into a store arena, checked dtype / device / pointer / strides', () => {
    const arena = DeviceTensor.fromHost(Float32Array.from({ length: 64 }, (_, i) => i));
    const base = arena.pointer;
    const view = DeviceTensor.fromPointer({ pointer: base, byteOffset: 16 * 4, shape: [4, 4], keepAlive: arena });
    expect(view.external).toBe(true);
    expectSame(view.toHost(), Float32Array.from({ length: 16 }, (_, i) => 16 + i), 'view');
    view.copyFromHost(new Float32Array(16).fill(-1));
    expect(arena.toHost()[15]).toBe(15);
    expect(arena.toHost()[16]).toBe(-1);
    expect(arena.toHost()[32]).toBe(32);
    // A transposed view (column-major 4x4): logical order in and out.
    const t = DeviceTensor.fromPointer({ pointer: base, byteOffset: 32 * 4, shape: [4, 4], strides: [1, 4] });
    expect(t.contiguous).toBe(false);
    const logical = t.toHost();
    for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) expect(logical[i * 4 + j]).toBe(32 + j * 4 + i);
    t.fill(0); // zeroGrad() on a strided device gradient
    const after = arena.toHost();
    expect(Array.from(after.subarray(32, 48))).toEqual(new Array(16).fill(0));
    expect(after[31]).toBe(-1); // the earlier view's write
    expect(after[48]).toBe(48);
    // DLPack-style dtype and device objects.
    expect(DeviceTensor.fromPointer({ pointer: base, shape: [2], dtype: { code: 2, bits: 32, lanes: 1 }, device: { deviceType: 2, deviceId: 0 } }).numel).toBe(2);
    // Rejected, each with the parameter named.
    // 16-bit dtypes are accepted (test/cuda-mixed.test.ts); other types are not
    expect(DeviceTensor.fromPointer({ pointer: base, shape: [2], dtype: 'float16' }).dtype).toBe('float16');
    expect(DeviceTensor.fromPointer({ pointer: base, shape: [2], dtype: { code: 2, bits: 16, lanes: 1 } }).dtype).toBe('float16');
    expect(messageOf(() => DeviceTensor.fromPointer({ pointer: base, shape: [2], dtype: 'float64' }))).toMatch(/dtype 'float64' is not supported: adamp steps 'float32', 'bfloat16' and 'float16'/);
    expect(messageOf(() => DeviceTensor.fromPointer({ pointer: base, shape: [2], dtype: { code: 2, bits: 64, lanes: 1 } }))).toMatch(/descriptor\.dtype .* not supported/);
    expect(messageOf(() => DeviceTensor.fromPointer({ pointer: Number(base) as unknown as bigint, shape: [2] }))).toMatch(/pointer must be a bigint.*BigInt\(address\)/);
    expect(messageOf(() => DeviceTensor.fromPointer({ pointer: base, byteOffset: 2, shape: [2] }))).toMatch(/not 4-byte aligned/);
    expect(messageOf(() => DeviceTensor.fromPointer({ pointer: base, shape: [4, 4], strides: [2, 1] }))).toMatch(/overlap/);
    expect(messageOf(() => DeviceTensor.fromPointer({ pointer: base, shape: [4, 4], strides: [0, 1] }))).toMatch(/broadcast/);
    expect(messageOf(() => DeviceTensor.fromPointer({ pointer: base, shape: [4, 4], strides: [4] }))).toMatch(/strides must be an array of 2 integers/);
    expect(messageOf(() => DeviceTensor.fromPointer({ pointer: base, shape: [2], device: { deviceType: 1, deviceId: 0 } }))).toMatch(/not a CUDA device/);
    const hostAddr = 0x1000n; // an address CUDA never handed out
    expect(messageOf(() => DeviceTensor.fromPointer({ pointer: hostAddr, shape: [4] }))).toMatch(/is not CUDA device memory \(CUDA says: (unregistered|host)\)/);
    arena.dispose();
  });

  test('GC frees device tensors and optimizer state (counted allocations, in a child process)', () => {
    const script = `
      const { AdamP, DeviceTensor, deviceMemory } = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index'))});
      const settle = async () => { for (let k = 0; k < 20; k++) { global.gc(); await new Promise((r) => setImmediate(r)); } };
      (async () => {
        await settle();
        const base = deviceMemory().liveAllocations;
        (() => {
          const ps = [0, 1, 2].map((i) => ({ data: DeviceTensor.fromHost(new Float32Array(60).fill(i + 1), [6, 10]), grad: DeviceTensor.fromHost(new Float32Array(60).fill(0.1), [6, 10]) }));
          const opt = new AdamP(ps, { lr: 0.1 });
          opt.step();
          opt.synchronize();
          if (deviceMemory().liveAllocations <= base + 6) throw new Error('the step allocated no state');
        })();
        await settle();
        console.log(JSON.stringify({ base, after: deviceMemory().liveAllocations, total: deviceMemory().totalAllocations }));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    // The sources through ts-node (transpile only), so the child runs this tree, not a stale dist/.
    const tsNode = require.resolve('ts-node/register/transpile-only');
    const r = spawnSync(process.execPath, ['--expose-gc', '-r', tsNode, '-e', script], {
      encoding: 'utf8', env: { ...process.env, TS_NODE_PROJECT: path.join(__dirname, '..', 'tsconfig.json') }, timeout: 120000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.total).toBeGreaterThan(6);
    expect(out.after).toBe(out.base);
  });
});

(gpu ? describe : describe.skip)('the CUDA backend steps device params in place', () => {
  test.each(['adamp', 'sgdp'] as const)('%s: device params match the TypeScript engine and the host-param CUDA path bit for bit', (kind) => {
    const a = hostParams(5), b = hostParams(5);
    const dev = toDevice(hostParams(5));
    const js = make(kind, a, 'js'), hostCuda = make(kind, b, 'cuda'), cu = make(kind, dev, 'auto');
    expect(cu.backend).toBe('cuda');
    for (let step = 1; step <= 4; step++) {
      const gs = grads(a, step);
      a.forEach((p, i) => { p.grad = gs[i] && gs[i]!.slice(); });
      b.forEach((p, i) => { p.grad = gs[i] && gs[i]!.slice(); });
      setGrads(dev, gs);
      js.step();
      hostCuda.step();
      cu.step();
      const ij = js.lastStepInfo, ic = cu.lastStepInfo;
      ij.forEach((e, i) => expect(`${step}:${i}:${ic[i].projection}`).toBe(`${step}:${i}:${e.projection}`));
      expect(ij.some((e) => e.projection === 'channel' || e.projection === 'layer')).toBe(true);
    }
    hostCuda.synchronize();
    dev.forEach((p, i) => {
      const got = p.data.toHost();
      expectClose(got, a[i].data, `${kind} ${p.name}`);
      expectSame(got, b[i].data, `${kind} ${p.name} vs host-param cuda`);
    });
    const sdJ = js.stateDict(), sdC = cu.stateDict();
    for (const k of Object.keys(sdJ.state)) {
      const sj = sdJ.state[Number(k)] as unknown as Record<string, Float32Array | number>;
      const sc = sdC.state[Number(k)] as unknown as Record<string, Float32Array | number>;
      for (const key of Object.keys(sj)) {
        if (typeof sj[key] === 'number') expect(sc[key]).toBe(sj[key]);
        else expectClose(sc[key] as Float32Array, sj[key] as Float32Array, `state ${k}.${key}`);
      }
    }
    cu.dispose();
    hostCuda.dispose();
    disposeAll(dev);
  });

  test('strided views (transposed weights in a store arena) and host gradients step like their contiguous copies', () => {
    const shapes = [[12, 5], [6, 4, 3]];
    const arena = DeviceTensor.zeros([300]);
    const r = rng(9);
    const logical = shapes.map((s) => randn(r, s.reduce((x, y) => x * y, 1)));
    // [12,5] stored column-major at offset 0; [6,4,3] stored with axes reversed at offset 100.
    const views = [
      DeviceTensor.fromPointer({ pointer: arena.pointer, shape: [12, 5], strides: [1, 12], keepAlive: arena }),
      DeviceTensor.fromPointer({ pointer: arena.pointer, byteOffset: 400, shape: [6, 4, 3], strides: [1, 6, 24], keepAlive: arena }),
    ];
    views.forEach((v, i) => v.copyFromHost(logical[i]));
    const host: Param[] = shapes.map((s, i) => ({ data: logical[i].slice(), grad: null, shape: s }));
    const dev: DeviceParam[] = views.map((v) => ({ data: v, grad: null }));
    const js = make('adamp', host, 'js'), cu = make('adamp', dev, 'cuda');
    for (let step = 1; step <= 3; step++) {
      const gs = grads(host, step).map((g, i) => g ?? randn(r, host[i].data.length));
      host.forEach((p, i) => { p.grad = gs[i]; });
      // step 1: device grads, strided like the params; step 2: host grads; step 3: contiguous device grads.
      dev.forEach((p, i) => {
        if (step === 1 && i === 0) {
          // a strided gradient view in the same arena (elements 200..259; the params use 0..59 and 100..171)
          p.grad = DeviceTensor.fromPointer({ pointer: arena.pointer, byteOffset: 200 * 4, shape: shapes[0], strides: [1, 12] }).copyFromHost(gs[0]);
        } else if (step === 2) p.grad = gs[i].slice();
        else p.grad = DeviceTensor.fromHost(gs[i], shapes[i]);
      });
      js.step();
      cu.step();
    }
    views.forEach((v, i) => expectClose(v.toHost(), host[i].data, `strided ${i}`));
    cu.dispose();
    arena.dispose();
  });

  test('validation before anything changes: aliasing, disposed tensors, wrong shapes, wrong backend', () => {
    const p0 = DeviceTensor.fromHost(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
    const g0 = DeviceTensor.fromHost(Float32Array.from([1, 1, 1, 1, 1, 1]), [2, 3]);
    const alias = DeviceTensor.fromPointer({ pointer: p0.pointer + 8n, shape: [2] });
    const snapshot = p0.toHost();
    // backend
    expect(messageOf(() => new AdamP([{ data: p0, grad: g0, name: 'w' }], {}, { backend: 'native' }))).toMatch(/param 'w' lives on the GPU .* backend 'native'/);
    expect(messageOf(() => new AdamP([{ data: p0, grad: g0 }], {}, { backend: 'cuda', stream: 5 as unknown as bigint }))).toMatch(/config\.stream must be a cudaStream_t as a bigint/);
    expect(messageOf(() => new AdamP([{ data: new Float32Array(2), grad: null, shape: [2] }], {}, { backend: 'js', stream: 1n }))).toMatch(/config\.stream is a CUDA stream/);
    expect(messageOf(() => new AdamP([{ data: new Float32Array(6), grad: g0 as unknown as Float32Array, shape: [2, 3], name: 'h' }], {}, { backend: 'cuda' }).step()))
      .toMatch(/grad of param 'h' is a DeviceTensor but its data is a Float32Array/);
    // aliasing: two params over the same memory
    const opt = new AdamP<DeviceParam>([{ data: p0, grad: g0, name: 'a' }, { data: alias, grad: DeviceTensor.zeros([2]), name: 'b' }], { lr: 0.1 });
    expect(messageOf(() => opt.step())).toMatch(/data of param '(a|b)' overlaps the data of param '(a|b)' in device memory/);
    // grad overlapping its own data
    const opt2 = new AdamP<DeviceParam>([{ data: p0, grad: DeviceTensor.fromPointer({ pointer: p0.pointer, shape: [2, 3] }), name: 'c' }], { lr: 0.1 });
    expect(messageOf(() => opt2.step())).toMatch(/grad of param 'c' overlaps its data in device memory/);
    // wrong grad shape, shape mismatch
    const opt3 = new SGDP<DeviceParam>([{ data: p0, grad: DeviceTensor.zeros([3, 2]), name: 'd' }], { lr: 0.1 });
    expect(messageOf(() => opt3.step())).toMatch(/grad shape \[3,2\] does not match shape \[2,3\] of param 'd'/);
    expect(messageOf(() => new SGDP([{ data: p0, grad: null, shape: [6], name: 'e' }], { lr: 0.1 }))).toMatch(/shape \[6\] of param 'e' does not match its DeviceTensor's shape \[2,3\]/);
    // disposed grad: rejected with ERR_ADAMP_DISPOSED, nothing stepped
    const g1 = DeviceTensor.zeros([2, 3]);
    const opt4 = new AdamP<DeviceParam>([{ data: p0, grad: g1, name: 'f' }], { lr: 0.1 });
    g1.dispose();
    expect(codeOf(() => opt4.step())).toBe('ERR_ADAMP_DISPOSED');
    expect(messageOf(() => opt4.step())).toMatch(/grad of param 'f' is a DeviceTensor that was disposed/);
    expectSame(p0.toHost(), snapshot, 'params after rejected steps');
    expect(opt4.stateDict().state).toEqual({});
    [opt, opt2, opt3, opt4].forEach((o) => o.dispose());
    p0.dispose();
    g0.dispose();
  });

  test.each(['adamp', 'sgdp'] as const)('%s: stateDict / loadStateDict / checkpoints round-trip device state; resuming is bit-identical', (kind) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-dev-'));
    try {
      const ref = toDevice(hostParams(11)), res = toDevice(hostParams(11));
      const optRef = make(kind, ref, 'cuda');
      let opt = make(kind, res, 'cuda');
      for (let step = 1; step <= 5; step++) {
        const gs = grads(hostParams(11), step);
        setGrads(ref, gs);
        setGrads(res, gs);
        optRef.step();
        opt.step();
        if (step === 2) {
          const file = path.join(dir, 'ckpt.safetensors');
          saveCheckpointSync(file, opt, { params: true });
          // Scramble the params and start a new optimizer, then restore both from the file.
          res.forEach((p) => p.data.fill(0));
          opt.dispose();
          opt = make(kind, res, 'cuda');
          loadCheckpointSync(file, opt, { params: true });
        }
        if (step === 3) {
          const sd = opt.stateDict();
          opt.dispose();
          opt = make(kind, res, 'cuda');
          (opt as { loadStateDict(x: unknown): void }).loadStateDict(sd);
        }
      }
      ref.forEach((p, i) => expectSame(res[i].data.toHost(), p.data.toHost(), `resumed ${p.name}`));
      optRef.dispose();
      opt.dispose();
      disposeAll(ref);
      disposeAll(res);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('dispose() frees the optimizer state: device allocations counted', () => {
    const start = deviceMemory().liveAllocations;
    const dev = toDevice(hostParams(3));
    setGrads(dev, grads(hostParams(3), 1));
    const withTensors = deviceMemory().liveAllocations;
    expect(withTensors).toBeGreaterThan(start);
    const opt = make('adamp', dev, 'cuda');
    opt.step();
    expect(deviceMemory().liveAllocations).toBeGreaterThan(withTensors);
    opt.dispose();
    expect(deviceMemory().liveAllocations).toBe(withTensors);
    disposeAll(dev);
    expect(deviceMemory().liveAllocations).toBe(start);
  });

  test('stepAsync resolves after the device finished; user streams; synchronize', async () => {
    const a = toDevice(hostParams(21)), b = toDevice(hostParams(21));
    const other = make('adamp', toDevice(hostParams(1)).slice(0, 1), 'cuda');
    const userStream = other.stream!; // a live cudaStream_t owned by another optimizer
    expect(typeof userStream).toBe('bigint');
    const sync = make('adamp', a, 'cuda'), asyn = make('adamp', b, 'cuda', { stream: userStream });
    expect(asyn.stream).toBe(userStream);
    expect(sync.stream).not.toBe(userStream);
    for (let step = 1; step <= 3; step++) {
      const gs = grads(hostParams(21), step);
      setGrads(a, gs);
      setGrads(b, gs);
      sync.step();
      if (step === 2) asyn.setStream(null); // back to its own stream, ordered after the earlier work
      const pending = asyn.stepAsync();
      expect(codeOf(() => asyn.step())).toBe('ERR_ADAMP_STEP_IN_FLIGHT');
      await pending;
    }
    sync.synchronize();
    a.forEach((p, i) => expectSame(b[i].data.toHost(), p.data.toHost(), `async ${p.name}`));
    expect(asyn.lastStepInfo.length).toBe(SPECS.length);
    expect(messageOf(() => make('adamp', hostParams(1), 'js').setStream(1n))).toMatch(/setStream\(\) needs the CUDA backend/);
    [sync, asyn, other].forEach((o) => o.dispose());
    disposeAll(a);
    disposeAll(b);
  });
});
