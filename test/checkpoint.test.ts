/**
 * Checkpoints as safetensors: the bytes read back by an independent parser (written here, from
 * the format's definition), PyTorch state_dict names, strict validation, atomic writes, resume.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync, spawn } from 'child_process';
import { AdamP, SGDP } from '../lib/index';
import {
  CHECKPOINT_FORMAT, deserializeCheckpoint, loadCheckpoint, loadCheckpointSync, saveCheckpoint, saveCheckpointSync, serializeCheckpoint,
} from '../lib/checkpoint';
import type { Param } from '../lib/types';
import { randn, rng } from './helpers/random';

// fs with a writeSync the atomic-write test can make fail part way (namespace imports are not spy-able).
jest.mock('fs', () => {
  const real = jest.requireActual('fs');
  return { ...real, writeSync: jest.fn(real.writeSync) };
});

const SHAPES: number[][] = [[8, 3, 3, 3], [10, 20], [10], [1, 16]];

function makeParams(seed: number, shapes = SHAPES): Param[] {
  const r = rng(seed);
  return shapes.map((shape, i) => ({ name: `layer${i}.${shape.length > 1 ? 'weight' : 'bias'}`, data: randn(r, shape.reduce((a, b) => a * b, 1)), grad: null, shape }));
}

/** Deterministic gradients: step k, param i. Every third step a gradient orthogonal to the weights (projection fires); param 2 has none at step 4. */
function setGrads(params: Param[], k: number): void {
  params.forEach((p, i) => {
    if (k === 4 && i === 2) { p.grad = null; return; }
    const g = randn(rng(7919 * (k + 1) + i), p.data.length, 0.1);
    if (k % 3 === 2) {
      let gw = 0, ww = 0;
      for (let j = 0; j < g.length; j++) { gw += g[j] * p.data[j]; ww += p.data[j] * p.data[j]; }
      for (let j = 0; j < g.length; j++) g[j] = Math.fround(g[j] - (gw / ww) * p.data[j]);
    }
    p.grad = g;
  });
}

type Opt = AdamP | SGDP;
const makers: { AdamP: (ps: Param[]) => AdamP; SGDP: (ps: Param[]) => SGDP } = {
  AdamP: (ps) => new AdamP([{ params: ps.slice(0, 2), weightDecay: 0.1 }, { params: ps.slice(2), weightDecay: 0 }], { lr: 0.01, nesterov: true }, { backend: 'js' }),
  SGDP: (ps) => new SGDP([{ params: ps.slice(0, 2), weightDecay: 1e-3 }, { params: ps.slice(2) }], { lr: 0.1, momentum: 0.9 }, { backend: 'js' }),
};

function train(opt: Opt, params: Param[], from: number, to: number): void {
  for (let k = from; k < to; k++) {
    setGrads(params, k);
    opt.step();
  }
}

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-ckpt-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// An independent minimal safetensors reader: u64 LE header length, JSON header, raw LE data.

interface Read {
  meta: Record<string, string>;
  tensors: Record<string, { dtype: string; shape: number[]; begin: number; end: number; values: number[] | bigint[] }>;
  headerLength: number;
}

function readSafetensors(buf: Buffer): Read {
  const headerLength = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.toString('utf8', 8, 8 + headerLength));
  const base = 8 + headerLength;
  const tensors: Read['tensors'] = {};
  for (const [name, entry] of Object.entries<any>(header)) {
    if (name === '__metadata__') continue;
    const [begin, end] = entry.data_offsets;
    const values: any[] = [];
    for (let o = base + begin; o < base + end; o += entry.dtype === 'I64' ? 8 : 4) {
      values.push(entry.dtype === 'F32' ? buf.readFloatLE(o) : buf.readBigInt64LE(o));
    }
    tensors[name] = { dtype: entry.dtype, shape: entry.shape, begin, end, values };
  }
  return { meta: header.__metadata__, tensors, headerLength };
}

describe('file layout (read back by an independent parser)', () => {
  test('AdamP: PyTorch state_dict names, dtypes, shapes, values, hyperparameters', () => {
    const params = makeParams(1);
    const opt = makers.AdamP(params);
    train(opt, params, 0, 5); // param 2 skipped at step 4: its step count differs
    const file = path.join(dir, 'adamp.safetensors');
    saveCheckpointSync(file, opt, { params: true, metadata: { epoch: '3' } });
    const buf = fs.readFileSync(file);
    const { meta, tensors, headerLength } = readSafetensors(buf);
    expect((8 + headerLength) % 8).toBe(0); // data 8-byte aligned

    const sd = opt.stateDict();
    const expectedNames = [
      ...params.map((_, i) => `params.${i}`),
      ...params.flatMap((_, i) => [`state.${i}.step`, `state.${i}.exp_avg`, `state.${i}.exp_avg_sq`]),
    ];
    expect(Object.keys(tensors).sort()).toEqual(expectedNames.sort());
    // Data section fully covered, contiguous.
    const spans = Object.values(tensors).map((t) => [t.begin, t.end]).sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [b, e] of spans) { expect(b).toBe(at); at = e; }
    expect(8 + headerLength + at).toBe(buf.length);

    params.forEach((p, i) => {
      const st = sd.state[i];
      expect(tensors[`state.${i}.step`]).toMatchObject({ dtype: 'I64', shape: [] });
      expect(tensors[`state.${i}.step`].values).toEqual([BigInt(st.step)]);
      for (const [key, arr] of [['exp_avg', st.expAvg], ['exp_avg_sq', st.expAvgSq], [null, p.data]] as const) {
        const t = tensors[key ? `state.${i}.${key}` : `params.${i}`];
        expect(t.dtype).toBe('F32');
        expect(t.shape).toEqual(p.shape);
        expect(Float32Array.from(t.values as number[])).toEqual(arr);
      }
    });
    expect(tensors['state.2.step'].values).toEqual([4n]);
    expect(tensors['state.0.step'].values).toEqual([5n]);

    expect(meta.format).toBe(CHECKPOINT_FORMAT);
    expect(meta.optimizer).toBe('AdamP');
    expect(meta.epoch).toBe('3');
    expect(JSON.parse(meta.param_groups)).toEqual([
      { params: [0, 1], lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.1, delta: 0.1, wd_ratio: 0.1, nesterov: true },
      { params: [2, 3], lr: 0.01, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0, delta: 0.1, wd_ratio: 0.1, nesterov: true },
    ]);
    expect(JSON.parse(meta.param_shapes)).toEqual(SHAPES);
    expect(JSON.parse(meta.param_names)).toEqual(params.map((p) => p.name));
    expect(meta.includes_params).toBe('true');
    expect(meta.data_sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  test('SGDP: state.{i}.momentum only, params omitted by default, no state for params never stepped', () => {
    const params = makeParams(2);
    const opt = makers.SGDP(params);
    params.forEach((p, i) => { p.grad = i === 3 ? null : randn(rng(i), p.data.length); });
    opt.step();
    const { meta, tensors } = readSafetensors(serializeCheckpoint(opt));
    expect(Object.keys(tensors).sort()).toEqual(['state.0.momentum', 'state.1.momentum', 'state.2.momentum']);
    expect(Float32Array.from(tensors['state.1.momentum'].values as number[])).toEqual(opt.stateDict().state[1].momentum);
    expect(JSON.parse(meta.param_groups)[0]).toEqual({ params: [0, 1], lr: 0.1, momentum: 0.9, dampening: 0, weight_decay: 1e-3, nesterov: false, eps: 1e-8, delta: 0.1, wd_ratio: 0.1 });
    expect(meta.includes_params).toBe('false');
  });

  test('reserved or non-string user metadata is refused', () => {
    const opt = makers.AdamP(makeParams(3));
    expect(() => serializeCheckpoint(opt, { metadata: { format: 'x' } })).toThrow(/reserved/);
    expect(() => serializeCheckpoint(opt, { metadata: { epoch: 3 as unknown as string } })).toThrow(/epoch must be a string/);
  });
});

describe('resume', () => {
  test.each(['AdamP', 'SGDP'] as const)('%s: save at step 4, load into a fresh optimizer and params, continue: bit-identical to an uninterrupted run', async (kind) => {
    const straight = makeParams(10);
    const a = makers[kind](straight);
    train(a, straight, 0, 9);

    const first = makeParams(10);
    const b = makers[kind](first);
    train(b, first, 0, 4);
    const file = path.join(dir, `${kind}.safetensors`);
    await saveCheckpoint(file, b, { params: true });

    const fresh = makeParams(99); // different weights: the checkpoint must restore them
    const c = makers[kind](fresh);
    const info = await loadCheckpoint(file, c, { params: true });
    expect(info).toEqual({ optimizer: kind, includesParams: true, metadata: {} });
    train(c, fresh, 4, 9);
    fresh.forEach((p, i) => expect(p.data).toEqual(straight[i].data));
    expect(c.stateDict()).toEqual(a.stateDict());
    const decisions = a.lastStepInfo.map((x) => x.projection);
    expect(c.lastStepInfo.map((x) => x.projection)).toEqual(decisions);
  });

  test('hyperparameters come back from the file (as PyTorch load_state_dict does)', () => {
    const params = makeParams(4);
    const opt = makers.AdamP(params);
    opt.paramGroups[0].lr = 0.123;
    const bytes = serializeCheckpoint(opt);
    const other = makers.AdamP(makeParams(4));
    deserializeCheckpoint(other, bytes);
    expect(other.paramGroups[0].lr).toBe(0.123);
    expect(other.paramGroups[1].lr).toBe(0.01);
  });

  test('loading with { params: true } a file saved without params is refused', () => {
    const opt = makers.AdamP(makeParams(5));
    expect(() => deserializeCheckpoint(opt, serializeCheckpoint(opt), { params: true })).toThrow(/holds no params/);
  });
});

describe('a mismatched or corrupt file is refused with a clear error, changing nothing', () => {
  function setup() {
    const params = makeParams(6);
    const opt = makers.AdamP(params);
    train(opt, params, 0, 3);
    const bytes = serializeCheckpoint(opt, { params: true });
    const before = { sd: opt.stateDict(), data: params.map((p) => p.data.slice()), lr: opt.paramGroups.map((g) => g.lr) };
    return { params, opt, bytes, before };
  }

  /** Rewrites a valid file with an edited header (offsets recomputed), to build malformed-but-parseable files. */
  function rewrite(bytes: Buffer, edit: (header: any, data: Map<string, Buffer>) => void): Buffer {
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.toString('utf8', 8, 8 + n));
    const data = new Map<string, Buffer>();
    for (const [k, v] of Object.entries<any>(header)) if (k !== '__metadata__') data.set(k, bytes.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]));
    edit(header, data);
    let off = 0;
    const chunks: Buffer[] = [];
    for (const [k, v] of Object.entries<any>(header)) {
      if (k === '__metadata__') continue;
      const d = data.get(k)!;
      v.data_offsets = [off, off + d.length];
      off += d.length;
      chunks.push(d);
    }
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, json, ...chunks]);
  }
  const dropHash = (h: any) => { delete h.__metadata__.data_sha256; };

  const cases: Array<[string, (b: Buffer) => Buffer, RegExp, (ps: Param[]) => Opt]> = [
    ['truncated file', (b) => b.subarray(0, b.length - 100), /truncated|ends at byte/, makers.AdamP],
    ['shorter than its header length', (b) => b.subarray(0, 20), /header length/, makers.AdamP],
    ['header not JSON', (b) => { const c = Buffer.from(b); c[9] = 0x7b; c[10] = 0x7b; return c; }, /not valid UTF-8 JSON/, makers.AdamP],
    ['a flipped bit in the data', (b) => { const c = Buffer.from(b); c[c.length - 5] ^= 0x10; return c; }, /corrupt: the SHA-256/, makers.AdamP],
    ['extra bytes after the data', (b) => Buffer.concat([b, Buffer.alloc(4)]), /cover .* bytes but the data section has/, makers.AdamP],
    ['another optimizer', (b) => b, /saved from "AdamP"/, makers.SGDP],
    ['another model (shapes differ)', (b) => b, /shape/, (ps) => makers.AdamP([ps[0], { ...ps[1], shape: [20, 10] }, ps[2], ps[3]])],
    ['fewer params', (b) => b, /holds 4 params, the optimizer has 3/, (ps) => new AdamP(ps.slice(0, 3), {}, { backend: 'js' })],
    ['fewer groups', (b) => rewrite(b, (h) => { dropHash(h); h.__metadata__.param_shapes = undefined; h.__metadata__.param_groups = JSON.stringify(JSON.parse(h.__metadata__.param_groups).slice(0, 1)); }), /1 param groups, the optimizer has 2/, makers.AdamP],
    ['params moved between groups', (b) => rewrite(b, (h) => { dropHash(h); const g = JSON.parse(h.__metadata__.param_groups); g[0].params = [0, 1, 2]; g[1].params = [3]; h.__metadata__.param_groups = JSON.stringify(g); }), /param_groups\[0\]\.params is \[0,1,2\], the optimizer's group 0 holds params \[0,1\]/, makers.AdamP],
    ['wrong dtype', (b) => rewrite(b, (h, d) => { dropHash(h); h['state.1.exp_avg'].dtype = 'I32'; }), /dtype I32, expected F32/, makers.AdamP],
    ['wrong tensor shape', (b) => rewrite(b, (h) => { dropHash(h); h['state.1.exp_avg'].shape = [20, 10]; }), /state.1.exp_avg' has shape \[20,10\]/, makers.AdamP],
    ['size not matching the shape', (b) => rewrite(b, (h, d) => { dropHash(h); d.set('state.1.exp_avg', d.get('state.1.exp_avg')!.subarray(4)); }), /spans 796 bytes but shape \[10,20\] F32 needs 800/, makers.AdamP],
    ['missing tensor', (b) => rewrite(b, (h, d) => { dropHash(h); delete h['state.1.exp_avg_sq']; d.delete('state.1.exp_avg_sq'); }), /lacks tensor 'state.1.exp_avg_sq'/, makers.AdamP],
    ['unexpected tensor', (b) => rewrite(b, (h, d) => { dropHash(h); h['state.1.momentum_buffer'] = { dtype: 'F32', shape: [1] }; d.set('state.1.momentum_buffer', Buffer.alloc(4)); }), /unexpected tensor 'state.1.momentum_buffer'/, makers.AdamP],
    ['index out of range', (b) => rewrite(b, (h, d) => { dropHash(h); h['params.7'] = { dtype: 'F32', shape: [1] }; d.set('params.7', Buffer.alloc(4)); }), /refers to param 7/, makers.AdamP],
    ['negative step', (b) => rewrite(b, (h, d) => { dropHash(h); const x = Buffer.alloc(8); x.writeBigInt64LE(-1n); d.set('state.0.step', x); }), /non-negative integer/, makers.AdamP],
    ['overlapping tensors', (b) => { const n = Number(b.readBigUInt64LE(0)); const h = JSON.parse(b.toString('utf8', 8, 8 + n)); const k = Object.keys(h).filter((x) => x !== '__metadata__'); h[k[1]].data_offsets = h[k[0]].data_offsets.slice(); h[k[1]].shape = h[k[0]].shape; h[k[1]].dtype = h[k[0]].dtype; const json = Buffer.from(JSON.stringify(h).padEnd(n, ' ')); return Buffer.concat([b.subarray(0, 8), json.subarray(0, n), b.subarray(8 + n)]); }, /overlaps|gap|cover/, makers.AdamP],
    ['not an adamp checkpoint', (b) => rewrite(b, (h) => { h.__metadata__.format = 'pt'; }), /not an adamp optimizer checkpoint/, makers.AdamP],
    ['a hyperparameter missing', (b) => rewrite(b, (h) => { dropHash(h); const g = JSON.parse(h.__metadata__.param_groups); delete g[0].wd_ratio; h.__metadata__.param_groups = JSON.stringify(g); }), /lacks 'wd_ratio'/, makers.AdamP],
    ['an invalid hyperparameter', (b) => rewrite(b, (h) => { dropHash(h); const g = JSON.parse(h.__metadata__.param_groups); g[1].betas = [0.9, 2]; h.__metadata__.param_groups = JSON.stringify(g); }), /betas\[1\]/, makers.AdamP],
  ];

  test.each(cases)('%s', (_name, corrupt, message, make) => {
    const { bytes, params } = setup();
    const target = make(params);
    train(target, params, 0, 2);
    const before = { sd: target.stateDict(), data: params.map((p) => p.data.slice()), groups: JSON.stringify(target.paramGroups.map(({ params: _p, ...hp }) => hp)) };
    let err: { code?: string; message: string } | undefined;
    try {
      deserializeCheckpoint(target, corrupt(bytes), { params: true, source: 'file.safetensors' });
    } catch (e) {
      err = e as { code?: string; message: string };
    }
    expect(err).toBeDefined();
    expect(err!.code).toBe('ERR_ADAMP_INVALID_ARGUMENT');
    expect(err!.message).toMatch(message);
    expect(err!.message).toContain('file.safetensors');
    expect(target.stateDict()).toEqual(before.sd);
    params.forEach((p, i) => expect(p.data).toEqual(before.data[i]));
    expect(JSON.stringify(target.paramGroups.map(({ params: _p, ...hp }) => hp))).toBe(before.groups);
  });

  test('the unmodified file loads (the cases above fail for the reason they name)', () => {
    const { bytes, params } = setup();
    const target = makers.AdamP(params);
    expect(() => deserializeCheckpoint(target, bytes, { params: true })).not.toThrow();
    const rewritten = (b: Buffer) => { const n = Number(b.readBigUInt64LE(0)); const h = JSON.parse(b.toString('utf8', 8, 8 + n)); delete h.__metadata__.data_sha256; return h; };
    expect(rewritten(bytes).__metadata__.format).toBe(CHECKPOINT_FORMAT);
  });
});

describe('atomic writes', () => {
  test('a failure in the middle of writing leaves the previous file intact and no temporary file', () => {
    const params = makeParams(8);
    const opt = makers.AdamP(params);
    train(opt, params, 0, 2);
    const file = path.join(dir, 'ckpt.safetensors');
    saveCheckpointSync(file, opt, { metadata: { version: 'old' } });
    const previous = fs.readFileSync(file);
    train(opt, params, 2, 4);
    const realWrite = jest.requireActual('fs').writeSync as typeof fs.writeSync;
    let calls = 0;
    (fs.writeSync as jest.Mock).mockImplementation((fd: number, buf: Uint8Array, off: number, len: number) => {
      calls++;
      // Write part of the file, then fail as a full disk would.
      if (calls === 1) return realWrite(fd, buf, off, Math.min(len, 1000));
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    });
    try {
      expect(() => saveCheckpointSync(file, opt, { metadata: { version: 'new' } })).toThrow(/ENOSPC/);
    } finally {
      (fs.writeSync as jest.Mock).mockImplementation(realWrite);
    }
    expect(calls).toBe(2);
    expect(fs.readFileSync(file).equals(previous)).toBe(true);
    expect(fs.readdirSync(dir)).toEqual(['ckpt.safetensors']);
    const fresh = makers.AdamP(makeParams(8));
    expect(loadCheckpointSync(file, fresh).metadata).toEqual({ version: 'old' });
  });

  test('a real partial write (file size limit, EFBIG) fails both writers cleanly: previous file intact, no temporary file', () => {
    if (process.platform === 'win32') return console.log('[checkpoint] skipped the RLIMIT_FSIZE test: no ulimit on Windows');
    const lib = path.join(__dirname, '..', 'lib');
    const make = `
      const p = { data: new Float32Array(100_000).fill(2), grad: new Float32Array(100_000).fill(0.5), shape: [100, 1000] };
      const opt = new AdamP([p], {}, { backend: 'js' });
      opt.step();`;
    const target = path.join(dir, 'limited.safetensors');
    // The previous checkpoint, written without a limit.
    const prev = { data: new Float32Array(100_000).fill(2), grad: new Float32Array(100_000).fill(0.5), shape: [100, 1000] };
    const prevOpt = new AdamP([prev], {}, { backend: 'js' });
    saveCheckpointSync(target, prevOpt, { params: true, metadata: { version: 'old' } });
    const previous = fs.readFileSync(target);
    const child = path.join(dir, 'limited.ts');
    fs.writeFileSync(child, `
      import { AdamP } from ${JSON.stringify(path.join(lib, 'index'))};
      import { saveCheckpoint, saveCheckpointSync } from ${JSON.stringify(path.join(lib, 'checkpoint'))};
      process.on('SIGXFSZ', () => undefined); // so the write fails with EFBIG instead of killing the process
      ${make}
      const codes: string[] = [];
      try { saveCheckpointSync(process.argv[2], opt, { params: true }); codes.push('saved'); } catch (e) { codes.push((e as any).code); }
      saveCheckpoint(process.argv[2], opt, { params: true }).then(() => codes.push('saved'), (e) => codes.push(e.code))
        .then(() => console.log(JSON.stringify(codes)));
    `);
    const tsNode = require.resolve('ts-node/register/transpile-only');
    const out = execFileSync('/bin/sh', ['-c', 'ulimit -f 128 && exec "$0" -r "$1" "$2" "$3"', process.execPath, tsNode, child, target], {
      encoding: 'utf8', env: { ...process.env, TS_NODE_PROJECT: path.join(__dirname, '..', 'tsconfig.json') },
    });
    expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual(['EFBIG', 'EFBIG']);
    expect(fs.readFileSync(target).equals(previous)).toBe(true);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  test('a process killed (SIGKILL) in the middle of writing a checkpoint leaves the previous file, complete', async () => {
    // The child saves a ~48 MB checkpoint over and over. Its disk is made slow (1 MiB per write,
    // 5 ms each) and it announces each write phase, so the kill lands while the new file is
    // half written.
    const child = path.join(dir, 'child.ts');
    const lib = path.join(__dirname, '..', 'lib');
    fs.writeFileSync(child, `
      import * as fs from 'fs';
      import { AdamP } from ${JSON.stringify(path.join(lib, 'index'))};
      import { saveCheckpointSync } from ${JSON.stringify(path.join(lib, 'checkpoint'))};
      const realWrite = fs.writeSync;
      let announced = false;
      (require('fs') as any).writeSync = (fd: number, buf: Uint8Array, off: number, len: number) => {
        if (!announced) { announced = true; process.stdout.write('writing\\n'); }
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
        return realWrite(fd, buf, off, Math.min(len, 1 << 20));
      };
      const n = 4_000_000;
      const p = { data: new Float32Array(n).fill(1), grad: new Float32Array(n).fill(0.5), shape: [2000, 2000] };
      const opt = new AdamP([p], {}, { backend: 'js' });
      for (let version = 1; ; version++) {
        opt.paramGroups[0].lr = version * 1e-3;
        announced = false;
        saveCheckpointSync(process.argv[2], opt, { params: true, metadata: { version: String(version) } });
        process.stdout.write('saved ' + version + '\\n');
      }
    `);
    const target = path.join(dir, 'big.safetensors');
    const tsNode = require.resolve('ts-node/register/transpile-only');
    let torn = 0;
    for (let attempt = 0; attempt < 3 && torn === 0; attempt++) {
      for (const f of fs.readdirSync(dir)) if (f.endsWith('.tmp')) fs.unlinkSync(path.join(dir, f));
      const proc = spawn(process.execPath, ['-r', tsNode, child, target], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, TS_NODE_PROJECT: path.join(__dirname, '..', 'tsconfig.json') },
      });
      let lastSaved = 0;
      let buffered = '';
      await new Promise<void>((resolve, reject) => {
        proc.on('error', reject);
        proc.on('exit', (code) => (code === null ? resolve() : reject(new Error(`child exited with ${code}`))));
        proc.stdout!.on('data', (d: Buffer) => {
          buffered += d.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          for (const line of lines) {
            const m = /^saved (\d+)$/.exec(line);
            if (m) lastSaved = Number(m[1]);
            // Kill during the write phase of the save after the first complete one.
            if (line === 'writing' && lastSaved >= 1 && !proc.killed) proc.kill('SIGKILL');
          }
        });
      });
      const full = fs.statSync(target).size;
      const tmps = fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'));
      if (tmps.length === 1 && fs.statSync(path.join(dir, tmps[0])).size < full) torn++;
      // Whatever happened, the target is the complete checkpoint of the last announced save (or the one after it).
      const p = { data: new Float32Array(4_000_000), grad: null, shape: [2000, 2000] };
      const opt = new AdamP([p], {}, { backend: 'js' });
      const info = loadCheckpointSync(target, opt, { params: true });
      const version = Number(info.metadata.version);
      expect(version === lastSaved || version === lastSaved + 1).toBe(true);
      expect(opt.paramGroups[0].lr).toBeCloseTo(version * 1e-3, 12);
      expect(p.data[123]).toBe(1);
    }
    // A partial temporary file beside it shows the kill did land in the middle of a save.
    expect(torn).toBe(1);
  }, 120_000);
});
