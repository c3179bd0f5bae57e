/**
 * Checkpoints as safetensors: the bytes read back by an independent parser (written here, from
 * the format's definition), PyTorch state_dict names, strict validation, atomic writes, resume.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createHash } from 'crypto';
import { execFileSync, spawn, spawnSync } from 'child_process';
import { AdamP, AdampError, SGDP } from '../lib/index';
import {
  CHECKPOINT_FORMAT, deserializeCheckpoint, loadCheckpoint, loadCheckpointSync, saveCheckpoint, saveCheckpointSync, serializeCheckpoint,
} from '../lib/checkpoint';
import type { Param } from '../lib/types';
import { randn, rng } from './helpers/random';
import { computeDigest, DIGEST, encode, flipBit, rewrite, split, tensorData } from './helpers/checkpoint-bytes';

// fs with writeSync, openSync and renameSync the atomic-write tests can make fail (namespace imports are not spy-able).
jest.mock('fs', () => {
  const real = jest.requireActual('fs');
  return { ...real, writeSync: jest.fn(real.writeSync), openSync: jest.fn(real.openSync), renameSync: jest.fn(real.renameSync) };
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
    expect(Object.keys(tensors).sort()).toEqual([...expectedNames].sort());
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
    expect(meta.checkpoint_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(meta.data_sha256).toBeUndefined();
    // The digest: SHA-256 of the whole file with its own 64 digits read as '0's.
    const digits = buf.indexOf(`"checkpoint_sha256":"${meta.checkpoint_sha256}"`) + '"checkpoint_sha256":"'.length;
    const masked = Buffer.from(buf);
    masked.write('0'.repeat(64), digits, 'latin1');
    expect(createHash('sha256').update(masked).digest('hex')).toBe(meta.checkpoint_sha256);
    // Data order: params, then each param's state in index order, step first, then the slots.
    const order = Object.keys(tensors).sort((a, b) => tensors[a].begin - tensors[b].begin);
    expect(order).toEqual(expectedNames);
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
    expect(info).toEqual({ optimizer: kind, includesParams: true, metadata: {}, verified: true });
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

describe('a mismatched, corrupt or altered file is refused with a clear error, changing nothing', () => {
  function setup() {
    const params = makeParams(6);
    const opt = makers.AdamP(params);
    train(opt, params, 0, 3);
    const bytes = serializeCheckpoint(opt, { params: true });
    return { params, opt, bytes };
  }

  /** Flips one bit of the first occurrence of `text` in the file, at character `char`, bit `bit`. */
  const flipIn = (text: string, char: number, bit: number) => (b: Buffer) => {
    const at = b.indexOf(text);
    if (at < 0) throw new Error(`'${text}' not in the file`);
    return flipBit(b, (at + char) * 8 + bit);
  };
  const groupsEdit = (edit: (g: any[]) => void) => (h: any) => { const g = JSON.parse(h.__metadata__.param_groups); edit(g); h.__metadata__.param_groups = JSON.stringify(g); };
  const BAD = 'ERR_ADAMP_BAD_CHECKPOINT';
  const MISFIT = 'ERR_ADAMP_INVALID_ARGUMENT';

  const cases: Array<[string, (b: Buffer) => Buffer, string, RegExp, (ps: Param[]) => Opt]> = [
    // Damage: the structure or the digest refuses it.
    ['truncated file', (b) => b.subarray(0, b.length - 100), BAD, /truncated|ends at byte/, makers.AdamP],
    ['shorter than its header length', (b) => b.subarray(0, 20), BAD, /header length/, makers.AdamP],
    ['header not JSON', (b) => { const c = Buffer.from(b); c[9] = 0x7b; c[10] = 0x7b; return c; }, BAD, /not valid UTF-8 JSON/, makers.AdamP],
    ['a flipped bit in the data', (b) => { const c = Buffer.from(b); c[c.length - 5] ^= 0x10; return c; }, BAD, /SHA-256 of its bytes does not match/, makers.AdamP],
    ['extra bytes after the data', (b) => Buffer.concat([b, Buffer.alloc(4)]), BAD, /cover .* bytes but the data section has/, makers.AdamP],
    ['overlapping tensors', (b) => { const { n, header: h } = split(b); const k = Object.keys(h).filter((x) => x !== '__metadata__'); h[k[1]].data_offsets = h[k[0]].data_offsets.slice(); h[k[1]].shape = h[k[0]].shape; h[k[1]].dtype = h[k[0]].dtype; const json = Buffer.from(JSON.stringify(h).padEnd(n, ' ')); return Buffer.concat([b.subarray(0, 8), json.subarray(0, n), b.subarray(8 + n)]); }, BAD, /overlaps|gap|cover/, makers.AdamP],
    // Single bit flips in the header (the digest covers it): the examples.
    ['eps 1e-8 -> 3e-8 (one bit of the header)', flipIn('\\"eps\\":1e-8', 8, 1), BAD, /SHA-256 of its bytes does not match/, makers.AdamP],
    ['delta 0.1 -> 0.9 (one bit of the header)', flipIn('\\"delta\\":0.1', 12, 3), BAD, /SHA-256 of its bytes does not match/, makers.AdamP],
    ['weight_decay 0.1 -> 0.3 (one bit of the header)', flipIn('\\"weight_decay\\":0.1', 19, 1), BAD, /SHA-256 of its bytes does not match/, makers.AdamP],
    ['one bit of the digest key name', flipIn(`"${DIGEST}"`, 3, 0), BAD, /has no digest .*trust: 'foreign'/, makers.AdamP],
    ['one bit of the digest', flipIn(`"${DIGEST}":"`, DIGEST.length + 10, 0), BAD, /SHA-256 of its bytes does not match|not 64 lowercase hex/, makers.AdamP],
    ['one bit of a data offset', flipIn('"data_offsets":[0,', 18, 0), BAD, /SHA-256|overlaps|gap|cover|spans/, makers.AdamP],
    ['the digest removed', (b) => rewrite(b, (h) => { delete h.__metadata__[DIGEST]; }), BAD, /has no digest .*trust: 'foreign'/, makers.AdamP],
    // Swapped offsets: the digest refuses the edit; with the digest recomputed, the order check does.
    ['exp_avg and exp_avg_sq swapped', (b) => rewrite(b, (h) => { const a = h['state.1.exp_avg']; const s = h['state.1.exp_avg_sq']; [a.data_offsets, s.data_offsets] = [s.data_offsets, a.data_offsets]; }, { offsets: 'keep', reseal: false }), BAD, /SHA-256 of its bytes does not match/, makers.AdamP],
    ['exp_avg and exp_avg_sq swapped, digest recomputed', (b) => rewrite(b, (h) => { const a = h['state.1.exp_avg']; const s = h['state.1.exp_avg_sq']; [a.data_offsets, s.data_offsets] = [s.data_offsets, a.data_offsets]; }, { offsets: 'keep' }), BAD, /'state.1.exp_avg' is stored after 'state.1.exp_avg_sq' \(data_offsets out of the order/, makers.AdamP],
    ['a param and its exp_avg swapped, digest recomputed', (b) => rewrite(b, (h) => { const a = h['params.1']; const s = h['state.1.exp_avg']; [a.data_offsets, s.data_offsets] = [s.data_offsets, a.data_offsets]; }, { offsets: 'keep' }), BAD, /data_offsets out of the order/, makers.AdamP],
    ['params.0 and state.0.exp_avg swapped, digest recomputed', (b) => rewrite(b, (h) => { const a = h['params.0']; const s = h['state.0.exp_avg']; [a.data_offsets, s.data_offsets] = [s.data_offsets, a.data_offsets]; }, { offsets: 'keep' }), BAD, /data_offsets out of the order/, makers.AdamP],
    // Malformed content with the digest recomputed: the structural checks refuse it.
    ['wrong dtype', (b) => rewrite(b, (h) => { h['state.1.exp_avg'].dtype = 'I32'; }), BAD, /dtype I32, expected F32/, makers.AdamP],
    ['wrong tensor shape', (b) => rewrite(b, (h) => { h['state.1.exp_avg'].shape = [20, 10]; }), BAD, /state.1.exp_avg' has shape \[20,10\], metadata 'param_shapes' gives param 1 \[10,20\]/, makers.AdamP],
    ['size not matching the shape', (b) => rewrite(b, (h, d) => { d.set('state.1.exp_avg', d.get('state.1.exp_avg')!.subarray(4)); }), BAD, /spans 796 bytes but shape \[10,20\] F32 needs 800/, makers.AdamP],
    ['missing tensor', (b) => rewrite(b, (h, d) => { delete h['state.1.exp_avg_sq']; d.delete('state.1.exp_avg_sq'); }), BAD, /lacks tensor 'state.1.exp_avg_sq'/, makers.AdamP],
    ['unexpected tensor', (b) => rewrite(b, (h, d) => { h['state.1.momentum_buffer'] = { dtype: 'F32', shape: [1] }; d.set('state.1.momentum_buffer', Buffer.alloc(4)); }), BAD, /unexpected tensor 'state.1.momentum_buffer'/, makers.AdamP],
    ['index out of range', (b) => rewrite(b, (h, d) => { h['params.7'] = { dtype: 'F32', shape: [1] }; d.set('params.7', Buffer.alloc(4)); }), BAD, /refers to param 7/, makers.AdamP],
    ['a param missing', (b) => rewrite(b, (h, d) => { delete h['params.2']; d.delete('params.2'); }), BAD, /holds some params but not 'params.2'/, makers.AdamP],
    ['includes_params contradicting the tensors', (b) => rewrite(b, (h) => { h.__metadata__.includes_params = 'false'; }), BAD, /'includes_params' is 'false' but the file holds params/, makers.AdamP],
    ['negative step', (b) => rewrite(b, (h, d) => { const x = Buffer.alloc(8); x.writeBigInt64LE(-1n); d.set('state.0.step', x); }), BAD, /tensor 'state.0.step' holds -1; a step count must be an integer/, makers.AdamP],
    ['step above 2^53', (b) => rewrite(b, (h, d) => { const x = Buffer.alloc(8); x.writeBigInt64LE(2n ** 53n + 1n); d.set('state.2.step', x); }), BAD, /tensor 'state.2.step' holds 9007199254740993/, makers.AdamP],
    ['step as F32 NaN', (b) => rewrite(b, (h, d) => { h['state.0.step'].dtype = 'F32'; d.set('state.0.step', Buffer.from(new Float32Array([NaN]).buffer)); }), BAD, /tensor 'state.0.step' must be an I64 scalar/, makers.AdamP],
    ['step as a vector', (b) => rewrite(b, (h) => { h['state.0.step'].shape = [1]; }), BAD, /tensor 'state.0.step' must be an I64 scalar \(shape \[\]\), got I64 \[1\]/, makers.AdamP],
    ['not an adamp checkpoint', (b) => rewrite(b, (h) => { h.__metadata__.format = 'pt'; }), BAD, /not an adamp optimizer checkpoint/, makers.AdamP],
    ['a hyperparameter missing', (b) => rewrite(b, groupsEdit((g) => { delete g[0].wd_ratio; })), BAD, /param_groups\[0\] lacks 'wd_ratio'/, makers.AdamP],
    ['an invalid hyperparameter', (b) => rewrite(b, groupsEdit((g) => { g[1].betas = [0.9, 2]; })), BAD, /param_groups\[1\]\.betas\[1\]/, makers.AdamP],
    ['a negative weight decay', (b) => rewrite(b, groupsEdit((g) => { g[0].weight_decay = -1; })), BAD, /param_groups\[0\]\.weight_decay must be >= 0/, makers.AdamP],
    ['a group key adamp does not write', (b) => rewrite(b, groupsEdit((g) => { g[0].initial_lr = 1; })), BAD, /param_groups\[0\] has 'initial_lr', which adamp does not write/, makers.AdamP],
    ['group indices out of order', (b) => rewrite(b, groupsEdit((g) => { g[0].params = [1, 0]; })), BAD, /param_groups\[0\]\.params must list the indices 0, 1\.\.\. in order/, makers.AdamP],
    ['param_shapes contradicting param_groups', (b) => rewrite(b, (h) => { h.__metadata__.param_shapes = '[[1]]'; }), BAD, /'param_shapes' lists 1 params, 'param_groups' 4/, makers.AdamP],
    ['param_groups not JSON', (b) => rewrite(b, (h) => { h.__metadata__.param_groups = '[{'; }), BAD, /'param_groups' is not valid JSON/, makers.AdamP],
    // A sound file that does not fit the optimizer.
    ['another optimizer', (b) => b, MISFIT, /saved from "AdamP"/, makers.SGDP],
    ['another model (shapes differ)', (b) => b, MISFIT, /shape/, (ps) => makers.AdamP([ps[0], { ...ps[1], shape: [20, 10] }, ps[2], ps[3]])],
    ['fewer params', (b) => b, MISFIT, /holds 4 params, the optimizer has 3/, (ps) => new AdamP(ps.slice(0, 3), {}, { backend: 'js' })],
    ['fewer groups', (b) => b, MISFIT, /2 param groups, the optimizer has 1/, (ps) => new AdamP(ps, {}, { backend: 'js' })],
    ['params moved between groups', (b) => rewrite(b, groupsEdit((g) => { g[0].params = [0, 1, 2]; g[1].params = [3]; })), MISFIT, /param_groups\[0\]\.params is \[0,1,2\], the optimizer's group 0 holds params \[0,1\]/, makers.AdamP],
    ['param_shapes and tensors of another model (digest recomputed)', (b) => rewrite(b, (h) => { h.__metadata__.param_shapes = JSON.stringify([[8, 3, 3, 3], [20, 10], [10], [1, 16]]); for (const k of ['params.1', 'state.1.exp_avg', 'state.1.exp_avg_sq']) h[k].shape = [20, 10]; }), MISFIT, /param 1 \('layer1.weight'\) has shape \[10,20\] here, \[20,10\] in the file/, makers.AdamP],
  ];

  test.each(cases)('%s', (_name, corrupt, code, message, make) => {
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
    expect(err).toBeInstanceOf(AdampError);
    expect(err!.message).toMatch(message);
    expect(err!.code).toBe(code);
    expect(err!.message).toContain('file.safetensors');
    expect(target.stateDict()).toEqual(before.sd);
    params.forEach((p, i) => expect(p.data).toEqual(before.data[i]));
    expect(JSON.stringify(target.paramGroups.map(({ params: _p, ...hp }) => hp))).toBe(before.groups);
  });

  test('the unmodified file loads, and so does one rewritten by the test helpers (the cases above fail for the reason they name)', () => {
    const { bytes, params } = setup();
    expect(computeDigest(bytes)!.hex).toBe(split(bytes).header.__metadata__[DIGEST]); // the digest as docs/checkpoints.md defines it
    expect(rewrite(bytes, () => undefined).equals(bytes)).toBe(true); // the helpers re-encode adamp's files byte for byte
    const target = makers.AdamP(params);
    expect(deserializeCheckpoint(target, bytes, { params: true }).verified).toBe(true);
    // User metadata is the file's own business: edited, with the digest recomputed, the file is sound.
    const edited = rewrite(bytes, (h) => { h.__metadata__.epoch = '7'; });
    expect(deserializeCheckpoint(makers.AdamP(params), edited, { params: true }).metadata).toEqual({ epoch: '7' });
  });
});

describe('foreign files ({ trust: \'foreign\' }): no digest needed, everything else checked', () => {
  /** A file as PyTorch's safetensors.torch.save_file would write it: no digest, float32 step (torch >= 1.12), tensors sorted by dtype size then name, extra group keys. */
  function torchStyle(opt: Opt, params: Param[]): Buffer {
    const sd = opt.stateDict();
    const tensors: Array<[string, string, number[], Buffer]> = [];
    params.forEach((p, i) => tensors.push([`params.${i}`, 'F32', p.shape as number[], Buffer.from(p.data.buffer.slice(0))]));
    for (const [i, s] of Object.entries<any>(sd.state)) {
      tensors.push([`state.${i}.step`, 'F32', [], Buffer.from(new Float32Array([s.step]).buffer)]);
      tensors.push([`state.${i}.exp_avg`, 'F32', params[+i].shape as number[], Buffer.from(s.expAvg.buffer.slice(0))]);
      tensors.push([`state.${i}.exp_avg_sq`, 'F32', params[+i].shape as number[], Buffer.from(s.expAvgSq.buffer.slice(0))]);
    }
    tensors.sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const groups = sd.paramGroups.map((g: any) => ({ lr: g.lr, betas: g.betas, eps: g.eps, weight_decay: g.weightDecay, delta: g.delta, wd_ratio: g.wdRatio, nesterov: g.nesterov, initial_lr: 0.5, foreach: null, params: g.params }));
    const header: any = { __metadata__: { format: 'adamp-optimizer/2', optimizer: 'AdamP', param_groups: JSON.stringify(groups) } };
    let off = 0;
    for (const [name, dtype, shape, d] of tensors) { header[name] = { dtype, shape, data_offsets: [off, off + d.length] }; off += d.length; }
    return encode(header, Buffer.concat(tensors.map((t) => t[3])));
  }

  test('a PyTorch-style file: refused by default, loaded with trust: foreign (verified: false), identical state', () => {
    const params = makeParams(11);
    const opt = makers.AdamP(params);
    train(opt, params, 0, 5);
    const bytes = torchStyle(opt, params);
    const target = makers.AdamP(makeParams(12));
    expect(() => deserializeCheckpoint(target, bytes, { params: true })).toThrow(expect.objectContaining({ code: 'ERR_ADAMP_BAD_CHECKPOINT', message: expect.stringMatching(/has no digest .*trust: 'foreign'/) }));
    const info = deserializeCheckpoint(target, bytes, { params: true, trust: 'foreign' });
    expect(info).toEqual({ optimizer: 'AdamP', includesParams: true, metadata: {}, verified: false });
    expect(target.stateDict()).toEqual(opt.stateDict());
    target.paramGroups.forEach((g, gi) => g.params.forEach((p, j) => expect(p.data).toEqual(opt.paramGroups[gi].params[j].data)));
  });

  const stepCases: Array<[string, number]> = [['NaN', NaN], ['-1', -1], ['1.5', 1.5], ['Infinity', Infinity], ['2^53', 2 ** 53 + 2]];
  test.each(stepCases)('a foreign float32 step of %s is refused naming the tensor', (_name, value) => {
    const params = makeParams(13);
    const opt = makers.AdamP(params);
    train(opt, params, 0, 2);
    const bytes = rewrite(torchStyle(opt, params), (h, d) => { d.set('state.3.step', Buffer.from(new Float32Array([value]).buffer)); });
    const target = makers.AdamP(makeParams(13));
    const before = target.stateDict();
    expect(() => deserializeCheckpoint(target, bytes, { trust: 'foreign', source: 'f' })).toThrow(expect.objectContaining({
      code: 'ERR_ADAMP_BAD_CHECKPOINT', message: expect.stringMatching(/tensor 'state.3.step' holds .*; a step count must be an integer from 0 to 2\^53 - 1/),
    }));
    expect(target.stateDict()).toEqual(before);
  });

  test('foreign files are still checked: names, dtypes, shapes, hyperparameters; a digest they carry is still verified', () => {
    const params = makeParams(14);
    const opt = makers.AdamP(params);
    train(opt, params, 0, 2);
    const base = torchStyle(opt, params);
    const refuse = (b: Buffer, re: RegExp, code = 'ERR_ADAMP_BAD_CHECKPOINT') => expect(() => deserializeCheckpoint(makers.AdamP(makeParams(14)), b, { trust: 'foreign' })).toThrow(expect.objectContaining({ code, message: expect.stringMatching(re) }));
    refuse(rewrite(base, (h) => { h['state.1.exp_avg'].dtype = 'F16'; h['state.1.exp_avg'].shape = [10, 40]; }), /dtype F16, expected F32/);
    refuse(rewrite(base, (h) => { h['state.1.exp_avg'].shape = [20, 10]; }), /'state.1.exp_avg' has shape \[20,10\], the param \('layer1.weight'\) has \[10,20\]/, 'ERR_ADAMP_INVALID_ARGUMENT');
    refuse(rewrite(base, (h, d) => { delete h['state.0.exp_avg_sq']; d.delete('state.0.exp_avg_sq'); }), /lacks tensor 'state.0.exp_avg_sq'/);
    refuse(rewrite(base, groupsEditForeign((g) => { delete g[1].eps; })), /param_groups\[1\] lacks 'eps'/);
    refuse(rewrite(base, groupsEditForeign((g) => { g[1].eps = 'x'; })), /param_groups\[1\]\.eps must be a finite number/);
    refuse(rewrite(base, (h) => { h.__metadata__.format = 'pt'; }), /not an adamp optimizer checkpoint/);
    // A digest present is verified even when trusting foreign files.
    const own = serializeCheckpoint(opt);
    refuse(flipBit(own, (own.length - 3) * 8), /SHA-256 of its bytes does not match/);
  });

  test('format 1 (adamp 0.1, digest of the data only): refused by default with a hint, loaded with trust: foreign, its data digest checked', () => {
    const params = makeParams(15);
    const opt = makers.AdamP(params);
    train(opt, params, 0, 3);
    const v1 = rewrite(serializeCheckpoint(opt), (h) => {
      const m = h.__metadata__;
      delete m[DIGEST];
      m.format = 'adamp-optimizer/1';
      m.data_sha256 = createHash('sha256').update(Buffer.concat([...tensorData(serializeCheckpoint(opt)).values()])).digest('hex');
    });
    const target = makers.AdamP(makeParams(16));
    expect(() => deserializeCheckpoint(target, v1)).toThrow(expect.objectContaining({ code: 'ERR_ADAMP_BAD_CHECKPOINT', message: expect.stringMatching(/adamp 0.1 .*trust: 'foreign'/) }));
    expect(deserializeCheckpoint(target, v1, { trust: 'foreign' }).verified).toBe(false);
    expect(target.stateDict()).toEqual(opt.stateDict());
    const { n } = split(v1);
    expect(() => deserializeCheckpoint(makers.AdamP(makeParams(16)), flipBit(v1, (8 + n + 3) * 8), { trust: 'foreign' }))
      .toThrow(expect.objectContaining({ code: 'ERR_ADAMP_BAD_CHECKPOINT', message: expect.stringMatching(/data does not match its metadata 'data_sha256'/) }));
    // Saved again, it is a format-2 file.
    expect(split(serializeCheckpoint(target)).header.__metadata__.format).toBe(CHECKPOINT_FORMAT);
  });
});

const groupsEditForeign = (edit: (g: any[]) => void) => (h: any) => { const g = JSON.parse(h.__metadata__.param_groups); edit(g); h.__metadata__.param_groups = JSON.stringify(g); };

describe('a step in flight', () => {
  test('loading or saving while a stepAsync() is in flight throws ERR_ADAMP_STEP_IN_FLIGHT before anything changes or is written', async () => {
    const params = makeParams(18);
    const opt = makers.AdamP(params);
    train(opt, params, 0, 2);
    const bytes = serializeCheckpoint(makers.AdamP(makeParams(19)), { params: true });
    const before = { sd: opt.stateDict(), data: params.map((p) => p.data.slice()) };
    // The js backend steps synchronously; a native stepAsync() holds this flag while it runs.
    (opt as unknown as { busy: boolean }).busy = true;
    const file = path.join(dir, 'busy.safetensors');
    try {
      const inFlight = expect.objectContaining({ code: 'ERR_ADAMP_STEP_IN_FLIGHT' });
      expect(() => deserializeCheckpoint(opt, bytes, { params: true })).toThrow(inFlight);
      expect(() => saveCheckpointSync(file, opt)).toThrow(inFlight);
      await expect(saveCheckpoint(file, opt)).rejects.toEqual(inFlight);
    } finally {
      (opt as unknown as { busy: boolean }).busy = false;
    }
    expect(fs.existsSync(file)).toBe(false);
    expect(opt.stateDict()).toEqual(before.sd);
    params.forEach((p, i) => expect(p.data).toEqual(before.data[i]));
  });
});

describe('bad arguments are refused with ERR_ADAMP_INVALID_ARGUMENT', () => {
  test('paths, options, bytes', async () => {
    const params = makeParams(17);
    const opt = makers.AdamP(params);
    const bad = expect.objectContaining({ code: 'ERR_ADAMP_INVALID_ARGUMENT' });
    for (const p of ['', 42, null, 'a\0b'] as unknown as string[]) {
      expect(() => saveCheckpointSync(p, opt)).toThrow(bad);
      expect(() => loadCheckpointSync(p, opt)).toThrow(bad);
      await expect(saveCheckpoint(p, opt)).rejects.toEqual(bad);
      await expect(loadCheckpoint(p, opt)).rejects.toEqual(bad);
    }
    const file = path.join(dir, 'x.safetensors');
    saveCheckpointSync(file, opt);
    expect(() => loadCheckpointSync(file, opt, { trust: 'yes' } as never)).toThrow(expect.objectContaining({ code: 'ERR_ADAMP_INVALID_ARGUMENT', message: expect.stringMatching(/options.trust must be 'verified' or 'foreign'/) }));
    expect(() => loadCheckpointSync(file, opt, { parms: true } as never)).toThrow(expect.objectContaining({ message: expect.stringMatching(/did you mean 'params'/) }));
    expect(() => loadCheckpointSync(file, opt, { params: 'yes' } as never)).toThrow(bad);
    expect(() => saveCheckpointSync(file, opt, { metadata: [] as never })).toThrow(bad);
    expect(() => loadCheckpointSync(file, {} as never)).toThrow(bad);
    expect(() => deserializeCheckpoint(opt, 'bytes' as never)).toThrow(bad);
    expect(() => deserializeCheckpoint(opt, [1, 2, 3] as never)).toThrow(bad);
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
      expect(() => saveCheckpointSync(file, opt, { metadata: { version: 'new' } })).toThrow(expect.objectContaining({
        code: 'ERR_ADAMP_IO', errnoCode: 'ENOSPC', path: file,
        message: `cannot save checkpoint '${file}': no space left on device (ENOSPC), writing it; any previous file is unchanged`,
      }));
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
      try { saveCheckpointSync(process.argv[2], opt, { params: true }); codes.push('saved'); } catch (e) { codes.push((e as any).code + ' ' + (e as any).errnoCode); }
      saveCheckpoint(process.argv[2], opt, { params: true }).then(() => codes.push('saved'), (e) => codes.push(e.code + ' ' + e.errnoCode))
        .then(() => console.log(JSON.stringify(codes)));
    `);
    const tsNode = require.resolve('ts-node/register/transpile-only');
    const out = execFileSync('/bin/sh', ['-c', 'ulimit -f 128 && exec "$0" -r "$1" "$2" "$3"', process.execPath, tsNode, child, target], {
      encoding: 'utf8', env: { ...process.env, TS_NODE_PROJECT: path.join(__dirname, '..', 'tsconfig.json') },
    });
    expect(JSON.parse(out.trim().split('\n').pop()!)).toEqual(['ERR_ADAMP_IO EFBIG', 'ERR_ADAMP_IO EFBIG']);
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

describe('file-system failures: ERR_ADAMP_IO naming the file (never the temporary file), errnoCode attached, previous file intact, no temporary file left', () => {
  const io = (file: string, errnoCode: string | RegExp, message: RegExp | string) => expect.objectContaining({
    code: 'ERR_ADAMP_IO', path: file, errnoCode: typeof errnoCode === 'string' ? errnoCode : expect.stringMatching(errnoCode),
    message: typeof message === 'string' ? message : expect.stringMatching(message),
  });
  const tmps = (d: string) => fs.readdirSync(d).filter((f) => f.endsWith('.tmp'));
  const opt = () => { const ps = makeParams(20); const o = makers.AdamP(ps); train(o, ps, 0, 1); return o; };

  test('loading a missing file, or a directory', async () => {
    const missing = path.join(dir, 'nope.safetensors');
    expect(() => loadCheckpointSync(missing, opt())).toThrow(io(missing, 'ENOENT', `cannot read checkpoint '${missing}': no such file or directory (ENOENT)`));
    await expect(loadCheckpoint(missing, opt())).rejects.toEqual(io(missing, 'ENOENT', `cannot read checkpoint '${missing}': no such file or directory (ENOENT)`));
    expect(() => loadCheckpointSync(dir, opt())).toThrow(io(dir, 'EISDIR', `cannot read checkpoint '${dir}': it is a directory, not a file (EISDIR)`));
    await expect(loadCheckpoint(dir, opt())).rejects.toEqual(io(dir, 'EISDIR', `cannot read checkpoint '${dir}': it is a directory, not a file (EISDIR)`));
    const err = (() => { try { loadCheckpointSync(missing, opt()); } catch (e) { return e as { cause?: { code?: string } }; } })();
    expect(err!.cause!.code).toBe('ENOENT');
  });

  test('saving over a directory: refused, the directory untouched', async () => {
    const target = path.join(dir, 'ckpt.safetensors');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'inside'), 'x');
    const m = `cannot save checkpoint '${target}': it is a directory, not a file (EISDIR)`;
    expect(() => saveCheckpointSync(target, opt())).toThrow(io(target, 'EISDIR', m));
    await expect(saveCheckpoint(target, opt())).rejects.toEqual(io(target, 'EISDIR', m));
    expect(fs.readdirSync(target)).toEqual(['inside']);
    expect(tmps(dir)).toEqual([]);
  });

  test('saving into a missing folder creates it (as mkdir -p)', async () => {
    const o = opt();
    const a = path.join(dir, 'runs', 'a', 'ckpt.safetensors');
    const b = path.join(dir, 'runs', 'b', 'c', 'ckpt.safetensors');
    saveCheckpointSync(a, o, { metadata: { v: 'a' } });
    await saveCheckpoint(b, o, { metadata: { v: 'b' } });
    expect(loadCheckpointSync(a, opt()).metadata).toEqual({ v: 'a' });
    expect((await loadCheckpoint(b, opt())).metadata).toEqual({ v: 'b' });
  });

  test('a file where a folder should be: refused naming the target and the folder', async () => {
    fs.writeFileSync(path.join(dir, 'plain'), 'x');
    const target = path.join(dir, 'plain', 'sub', 'ckpt.safetensors');
    const m = new RegExp(`^cannot save checkpoint '${target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}': .* \\((ENOTDIR|EEXIST)\\), creating its folder '.*sub'$`);
    expect(() => saveCheckpointSync(target, opt())).toThrow(io(target, /^(ENOTDIR|EEXIST)$/, m));
    await expect(saveCheckpoint(target, opt())).rejects.toEqual(io(target, /^(ENOTDIR|EEXIST)$/, m));
    expect(fs.readFileSync(path.join(dir, 'plain'), 'utf8')).toBe('x');
  });

  test('permission denied creating the temporary file, and a failed rename (mocked): the message names the target only', async () => {
    const target = path.join(dir, 'ckpt.safetensors');
    saveCheckpointSync(target, opt(), { metadata: { v: 'old' } });
    const previous = fs.readFileSync(target);
    const real = jest.requireActual('fs') as typeof fs;
    const eacces = (p: string) => Object.assign(new Error(`EACCES: permission denied, open '${p}'`), { code: 'EACCES', syscall: 'open', path: p });
    const exdev = (a: string, b: string) => Object.assign(new Error(`EXDEV: cross-device link not permitted, rename '${a}' -> '${b}'`), { code: 'EXDEV', syscall: 'rename' });
    const openSpy = fs.openSync as jest.Mock;
    const renameSpy = fs.renameSync as jest.Mock;
    const asyncOpen = jest.spyOn(fs.promises, 'open');
    const asyncRename = jest.spyOn(fs.promises, 'rename');
    try {
      openSpy.mockImplementation((p: string, ...rest: unknown[]) => { if (String(p).endsWith('.tmp')) throw eacces(String(p)); return (real.openSync as any)(p, ...rest); });
      asyncOpen.mockImplementation(async (p: any) => { throw eacces(String(p)); });
      const m = `cannot save checkpoint '${target}': permission denied (EACCES), creating a temporary file in its folder '${dir}'; any previous file is unchanged`;
      expect(() => saveCheckpointSync(target, opt())).toThrow(io(target, 'EACCES', m));
      await expect(saveCheckpoint(target, opt())).rejects.toEqual(io(target, 'EACCES', m));
      openSpy.mockImplementation(real.openSync);
      asyncOpen.mockRestore();
      renameSpy.mockImplementation((a: string, b: string) => { throw exdev(a, b); });
      asyncRename.mockImplementation(async (a: any, b: any) => { throw exdev(String(a), String(b)); });
      const r = `cannot save checkpoint '${target}': cross-device rename (EXDEV), renaming it into place; any previous file is unchanged`;
      expect(() => saveCheckpointSync(target, opt())).toThrow(io(target, 'EXDEV', r));
      await expect(saveCheckpoint(target, opt())).rejects.toEqual(io(target, 'EXDEV', r));
    } finally {
      openSpy.mockImplementation(real.openSync);
      renameSpy.mockImplementation(real.renameSync);
      asyncOpen.mockRestore();
      asyncRename.mockRestore();
    }
    expect(fs.readFileSync(target).equals(previous)).toBe(true);
    expect(tmps(dir)).toEqual([]);
  });

  test('permission denied, for real (an unprivileged process: a read-only folder, an unreadable file)', () => {
    if (process.platform === 'win32') return console.log('[checkpoint] skipped the real permission test: no POSIX permissions on Windows');
    const root = process.getuid!() === 0;
    fs.chmodSync(dir, 0o755);
    const ro = path.join(dir, 'ro');
    fs.mkdirSync(ro);
    const target = path.join(ro, 'ckpt.safetensors');
    saveCheckpointSync(target, opt(), { metadata: { v: 'old' } });
    const previous = fs.readFileSync(target);
    fs.chmodSync(target, 0o444);
    fs.chmodSync(ro, 0o555);
    const secret = path.join(dir, 'secret.safetensors');
    saveCheckpointSync(secret, opt());
    fs.chmodSync(secret, 0o000);
    const lib = path.join(__dirname, '..', 'lib');
    const child = path.join(dir, 'perm.ts');
    fs.writeFileSync(child, `
      import { AdamP } from ${JSON.stringify(path.join(lib, 'index'))};
      import { saveCheckpointSync, loadCheckpointSync } from ${JSON.stringify(path.join(lib, 'checkpoint'))};
      const p = { data: new Float32Array(4).fill(1), grad: new Float32Array(4).fill(0.5), shape: [4] };
      const opt = new AdamP([p], {}, { backend: 'js' });
      opt.step();
      const out: unknown[] = [];
      for (const f of [() => saveCheckpointSync(process.argv[2], opt), () => loadCheckpointSync(process.argv[3], opt)]) {
        try { f(); out.push('ok'); } catch (e: any) { out.push({ code: e.code, errnoCode: e.errnoCode, path: e.path, message: e.message }); }
      }
      console.log(JSON.stringify(out));
    `, { mode: 0o644 });
    const tsNode = require.resolve('ts-node/register/transpile-only');
    const r = spawnSync(process.execPath, ['-r', tsNode, child, target, secret], {
      encoding: 'utf8', env: { ...process.env, TS_NODE_PROJECT: path.join(__dirname, '..', 'tsconfig.json'), HOME: dir },
      ...(root ? { uid: 65534, gid: 65534 } : {}),
    });
    if (r.error) return console.log(`[checkpoint] skipped the real permission test: cannot run an unprivileged child (${r.error.message})`);
    expect(r.stderr).toBe('');
    const [save, load] = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(save).toEqual({ code: 'ERR_ADAMP_IO', errnoCode: 'EACCES', path: target, message: `cannot save checkpoint '${target}': permission denied (EACCES), creating a temporary file in its folder '${ro}'; any previous file is unchanged` });
    expect(load).toEqual({ code: 'ERR_ADAMP_IO', errnoCode: 'EACCES', path: secret, message: `cannot read checkpoint '${secret}': permission denied (EACCES)` });
    expect(fs.readFileSync(target).equals(previous)).toBe(true);
    expect(tmps(ro)).toEqual([]);
    fs.chmodSync(ro, 0o755);
  });
});
