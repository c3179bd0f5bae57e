/**
 * Seeded, reproducible fuzzing of checkpoint bytes. Checkpoints of AdamP, SGDP, AdamW and SGD
 * (with and without params, three groups, a scalar param and a param never stepped) are mutated
 * thousands of ways, and every mutation is loaded into an optimizer that has params, grads and
 * state of its own:
 *
 * - damage and tampering (truncations at every region, bytes appended, bit flips in the length,
 *   the header and the data, bytes overwritten, offsets swapped, metadata edited, all without
 *   recomputing the digest): refused with ERR_ADAMP_BAD_CHECKPOINT;
 * - structural edits with the digest recomputed (so only the structural checks stand between
 *   the file and the optimizer): dtypes, shapes, tensors removed, added, renamed or reordered,
 *   step counts, metadata keys and values, hyperparameters, garbage JSON: refused with the code
 *   each one names (ERR_ADAMP_BAD_CHECKPOINT for a malformed file, ERR_ADAMP_INVALID_ARGUMENT for
 *   a sound one of another optimizer or model); the same edits without a digest, loaded with
 *   { trust: 'foreign' }, are refused the same way;
 * - every refusal leaves the optimizer's hyperparameters, state, params and grads byte-identical.
 *
 * Mutations the loader accepts are only the ones listed as VALID edits below: with the digest
 * recomputed they are checkpoints adamp could have written itself (the digest is a checksum, not
 * a signature), and the test checks that exactly the edited value changed. No damage or tampering
 * mutation is accepted: the digest covers every byte of the file but its own 64 digits, and a
 * change to those makes them differ from the hash.
 *
 * ADAMP_FUZZ_SEED picks another seed; ADAMP_FUZZ_SCALE (default 1) multiplies the sampled counts.
 */
import { AdamP, AdamW, AdampError, SGD, SGDP } from '../lib/index';
import { deserializeCheckpoint, loadCheckpoint, loadCheckpointSync, serializeCheckpoint } from '../lib/checkpoint';
import type { Param } from '../lib/types';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { randn, rng } from './helpers/random';
import { DIGEST, dataOrder, encode, flipBit, reseal, rewrite, split, tensorData } from './helpers/checkpoint-bytes';

const SEED = Number(process.env.ADAMP_FUZZ_SEED ?? 20250601);
const SCALE = Number(process.env.ADAMP_FUZZ_SCALE ?? 1);
const BAD = 'ERR_ADAMP_BAD_CHECKPOINT';
const MISFIT = 'ERR_ADAMP_INVALID_ARGUMENT';
type Kind = 'AdamP' | 'SGDP' | 'AdamW' | 'SGD';
const KINDS: Kind[] = ['AdamP', 'SGDP', 'AdamW', 'SGD'];
const SHAPES = [[3, 2, 2], [4, 3], [4], [], [3]];
/** Param 4 never gets a gradient: it has no state, as in PyTorch. */
const NEVER_STEPPED = 4;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyOpt = any;

function makeParams(seed: number): Param[] {
  const r = rng(seed);
  return SHAPES.map((shape, i) => ({ name: `p${i}`, data: randn(r, shape.reduce((a, b) => a * b, 1)), grad: null, shape }));
}

function makeOptimizer(kind: Kind, ps: Param[]): AnyOpt {
  const groups = (a: object, b: object, c: object) => [{ params: ps.slice(0, 2), ...a }, { params: ps.slice(2, 4), ...b }, { params: ps.slice(4), ...c }];
  const cfg = { backend: 'js' as const };
  switch (kind) {
    case 'AdamP': return new AdamP(groups({ weightDecay: 0.1 }, { nesterov: true }, { lr: 0.5 }), { lr: 0.01 }, cfg);
    case 'SGDP': return new SGDP(groups({ weightDecay: 1e-3 }, { nesterov: true }, { lr: 0.5 }), { lr: 0.1, momentum: 0.9 }, cfg);
    case 'AdamW': return new AdamW(groups({ weightDecay: 0.1 }, { weightDecay: 0 }, { eps: 1e-6 }), { lr: 1e-3 }, cfg);
    case 'SGD': return new SGD(groups({ weightDecay: 1e-4 }, { nesterov: true }, { dampening: 0.5 }), { lr: 0.1, momentum: 0.9 }, cfg);
  }
}

function train(opt: AnyOpt, ps: Param[], seed: number, steps: number): void {
  for (let k = 0; k < steps; k++) {
    ps.forEach((p, i) => { p.grad = i === NEVER_STEPPED || (k === 1 && i === 2) ? null : randn(rng(seed * 1000 + k * 10 + i), p.data.length, 0.1); });
    opt.step();
  }
}

/** Everything a load could change, as bytes: hyperparameters, state (steps and slots), params, grads. */
interface Snapshot { groups: string; state: Buffer; params: Buffer; grads: Buffer }
function snapshot(opt: AnyOpt, ps: Param[]): Snapshot {
  const sd = opt.stateDict();
  const state: Buffer[] = [];
  for (const i of Object.keys(sd.state).sort()) {
    for (const [k, v] of Object.entries<unknown>(sd.state[i]).sort(([a], [b]) => (a < b ? -1 : 1))) {
      state.push(Buffer.from(`${i}.${k}=`), v instanceof Float32Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : Buffer.from(String(v)));
    }
  }
  const bytes = (a: Float32Array | null) => (a === null ? Buffer.from('null') : Buffer.from(a.buffer, a.byteOffset, a.byteLength));
  return {
    groups: JSON.stringify(sd.paramGroups),
    state: Buffer.concat(state),
    params: Buffer.concat(ps.map((p) => Buffer.concat([Buffer.from('|'), bytes(p.data as Float32Array)]))),
    grads: Buffer.concat(ps.map((p) => Buffer.concat([Buffer.from('|'), bytes(p.grad as Float32Array | null)]))),
  };
}
const sameSnapshot = (a: Snapshot, b: Snapshot) => a.groups === b.groups && a.state.equals(b.state) && a.params.equals(b.params) && a.grads.equals(b.grads);

// ---------------------------------------------------------------------------------------------

/** What a mutation must do: be refused with a code, or (VALID edits only) load and change exactly one thing. */
type Expect =
  | { code: string }
  | { valid: string; changes: keyof Snapshot | 'metadata'; check: (opt: AnyOpt, info: { metadata: Record<string, string> }) => boolean };

interface Mutation { category: string; name: string; bytes: Buffer; expect: Expect; trust?: 'foreign' }

interface Source { kind: Kind; withParams: boolean; bytes: Buffer }

const refuse = (code = BAD): Expect => ({ code });

/** Header edits: applied with the digest recomputed (verified load) and with the digest removed (foreign load). */
interface StructuralEdit { name: string; edit: (h: any, d: Map<string, Buffer>) => void; code: string; foreignCode?: string | null; offsets?: 'keep' }

function structuralEdits(src: Source, r: () => number): StructuralEdit[] {
  const { header } = split(src.bytes);
  const names = dataOrder(src.bytes);
  const meta = header.__metadata__;
  const groups = JSON.parse(meta.param_groups);
  const out: StructuralEdit[] = [];
  const groupEdit = (name: string, f: (g: any[]) => void, code = BAD, foreignCode: string | null = code) =>
    out.push({ name, edit: (h) => { const g = JSON.parse(h.__metadata__.param_groups); f(g); h.__metadata__.param_groups = JSON.stringify(g); }, code, foreignCode });
  const metaEdit = (name: string, f: (m: any) => void, code = BAD, foreignCode: string | null = code) => out.push({ name, edit: (h) => f(h.__metadata__), code, foreignCode });

  // Tensors: dtypes, shapes, presence, names, order.
  for (const t of names) {
    const e = header[t];
    const numel = e.shape.reduce((a: number, b: number) => a * b, 1);
    const same = e.dtype === 'F32' ? ['I32', 'U32'] : ['F64', 'U64'];
    for (const dt of same) out.push({ name: `${t} dtype ${dt}`, edit: (h) => { h[t].dtype = dt; }, code: BAD });
    out.push({ name: `${t} dtype F16, shape kept`, edit: (h) => { h[t].dtype = 'F16'; }, code: BAD });
    if (e.dtype === 'F32' && numel > 0) out.push({ name: `${t} dtype F16, twice the elements`, edit: (h) => { h[t].dtype = 'F16'; h[t].shape = [...h[t].shape, 2]; }, code: BAD });
    if (t.endsWith('.step')) {
      out.push({ name: `${t} shape [1]`, edit: (h) => { h[t].shape = [1]; }, code: BAD });
      out.push({ name: `${t} as F32 2.0 (torch style)`, edit: (h, d) => { h[t].dtype = 'F32'; d.set(t, Buffer.from(new Float32Array([2]).buffer)); }, code: BAD, foreignCode: null });
      for (const v of [NaN, -1, 1.5, Infinity, -Infinity, 2 ** 54]) {
        out.push({ name: `${t} as F32 ${v}`, edit: (h, d) => { h[t].dtype = 'F32'; d.set(t, Buffer.from(new Float32Array([v]).buffer)); }, code: BAD });
      }
      for (const v of [-1n, -(2n ** 63n), 2n ** 53n, 2n ** 63n - 1n]) {
        out.push({ name: `${t} = ${v}`, edit: (h, d) => { const b = Buffer.alloc(8); b.writeBigInt64LE(v); d.set(t, b); }, code: BAD });
      }
    } else if (e.shape.length >= 2) {
      const perm = [...e.shape].reverse();
      if (JSON.stringify(perm) !== JSON.stringify(e.shape)) out.push({ name: `${t} shape reversed`, edit: (h) => { h[t].shape = perm; }, code: BAD });
      out.push({ name: `${t} shape flattened`, edit: (h) => { h[t].shape = [numel]; }, code: BAD });
    } else {
      out.push({ name: `${t} shape with a 1 added`, edit: (h) => { h[t].shape = [...h[t].shape, 1]; }, code: BAD });
    }
    // Removing a state tensor leaves the param's state incomplete (malformed), unless it was the
    // param's only one (SGDP, SGD): that file is a VALID one, of a param never stepped (validEdits).
    const i = t.startsWith('state.') ? t.split('.')[1] : null;
    if (i === null || names.filter((x) => x.startsWith(`state.${i}.`)).length > 1) out.push({ name: `${t} removed`, edit: (h, d) => { delete h[t]; d.delete(t); }, code: BAD });
  }
  for (const extra of ['state.0.foo', 'params.99', 'state.01.step', 'params.-1', 'other', 'state.4.exp_avg', 'state.0.momentum_buffer', 'state.0.momentum', 'state.0.exp_avg']) {
    if (names.includes(extra)) continue;
    out.push({ name: `extra tensor ${extra}`, edit: (h, d) => { h[extra] = { dtype: 'F32', shape: [3] }; d.set(extra, Buffer.alloc(12)); }, code: BAD });
  }
  // Same-size tensors with their names (and so their data) exchanged, or their offsets swapped:
  // only the order check can see it once the digest is recomputed.
  for (let a = 0; a < names.length; a++) {
    for (let b = a + 1; b < names.length; b++) {
      const [ta, tb] = [header[names[a]], header[names[b]]];
      if (ta.dtype !== tb.dtype || JSON.stringify(ta.shape) !== JSON.stringify(tb.shape)) continue;
      out.push({ name: `offsets of ${names[a]} and ${names[b]} swapped`, offsets: 'keep', code: BAD, foreignCode: null, edit: (h) => { [h[names[a]].data_offsets, h[names[b]].data_offsets] = [h[names[b]].data_offsets, h[names[a]].data_offsets]; } });
    }
  }
  // Metadata.
  for (const key of ['format', 'optimizer', 'param_groups', 'param_shapes', 'param_names', 'includes_params']) {
    const foreign = ['param_shapes', 'param_names', 'includes_params'].includes(key) ? null : BAD;
    metaEdit(`metadata ${key} removed`, (m) => { delete m[key]; }, BAD, foreign);
    metaEdit(`metadata ${key} = ""`, (m) => { m[key] = ''; }, BAD, key === 'param_names' ? null : BAD);
  }
  metaEdit('format adamp-optimizer/1', (m) => { m.format = 'adamp-optimizer/1'; }, BAD, null);
  metaEdit('format adamp-optimizer/3', (m) => { m.format = 'adamp-optimizer/3'; });
  metaEdit('format pt', (m) => { m.format = 'pt'; });
  // Another registered optimizer: a sound file that does not fit; a name adamp does not have: malformed.
  for (const other of KINDS.filter((k) => k !== src.kind)) metaEdit(`optimizer ${other}`, (m) => { m.optimizer = other; }, MISFIT);
  for (const other of ['Adam', 'adamp', 'ADAMP', ' AdamP']) metaEdit(`optimizer ${JSON.stringify(other)}`, (m) => { m.optimizer = other; });
  metaEdit('includes_params negated', (m) => { m.includes_params = src.withParams ? 'false' : 'true'; });
  metaEdit('includes_params "yes"', (m) => { m.includes_params = 'yes'; });
  metaEdit('param_shapes one short', (m) => { m.param_shapes = JSON.stringify(JSON.parse(m.param_shapes).slice(1)); });
  metaEdit('param_shapes not JSON', (m) => { m.param_shapes = '[[3,2'; }, BAD);
  metaEdit('param_shapes with -1', (m) => { const s = JSON.parse(m.param_shapes); s[1] = [-1, 3]; m.param_shapes = JSON.stringify(s); });
  SHAPES.forEach((shape, i) => {
    // A param with tensors in the file: they contradict param_shapes (malformed); without (no state, no params): another model.
    const hasTensor = names.some((n) => n === `params.${i}` || n.startsWith(`state.${i}.`));
    metaEdit(`param_shapes[${i}] changed`, (m) => { const s = JSON.parse(m.param_shapes); s[i] = [...shape, 2]; m.param_shapes = JSON.stringify(s); }, hasTensor ? BAD : MISFIT);
  });
  metaEdit('param_names one short', (m) => { m.param_names = JSON.stringify(JSON.parse(m.param_names).slice(1)); }, BAD, null);
  metaEdit('param_names with a number', (m) => { const s = JSON.parse(m.param_names); s[0] = 7; m.param_names = JSON.stringify(s); }, BAD, null);
  metaEdit('param_groups []', (m) => { m.param_groups = '[]'; });
  metaEdit('param_groups an object', (m) => { m.param_groups = '{}'; });
  metaEdit('param_groups not JSON', (m) => { m.param_groups = m.param_groups.slice(0, -1); });
  groupEdit('a group dropped', (g) => { g.pop(); });
  groupEdit('groups merged', (g) => { g[0].params.push(...g[1].params); g.splice(1, 1); }, MISFIT);
  groupEdit('indices reordered', (g) => { g[0].params.reverse(); });
  groupEdit('an index added', (g) => { g[2].params.push(SHAPES.length); });
  groupEdit('indices as strings', (g) => { g[0].params = g[0].params.map(String); });
  groupEdit('a group null', (g) => { g[1] = null; });
  for (let gi = 0; gi < groups.length; gi++) {
    for (const key of Object.keys(groups[gi]).filter((k) => k !== 'params')) {
      groupEdit(`param_groups[${gi}].${key} removed`, (g) => { delete g[gi][key]; });
      for (const v of ['x', null, [], {}, -1e9, true]) {
        const current = groups[gi][key];
        // Values a hyperparameter may legitimately take are not malformed (dampening is any finite number; a boolean stays a boolean).
        if (typeof current === 'boolean' && typeof v === 'boolean') continue;
        if (key === 'dampening' && typeof v === 'number') continue;
        groupEdit(`param_groups[${gi}].${key} = ${JSON.stringify(v)}`, (g) => { g[gi][key] = v; });
      }
    }
    groupEdit(`param_groups[${gi}] extra key`, (g) => { g[gi].initial_lr = 1; }, BAD, null);
    groupEdit(`param_groups[${gi}] maximize`, (g) => { g[gi].maximize = true; }, BAD, MISFIT);
  }
  // Garbage in metadata values.
  for (let k = 0; k < 4; k++) {
    const key = ['param_groups', 'param_shapes', 'optimizer', 'format'][k];
    const junk = Array.from({ length: 1 + Math.floor(r() * 12) }, () => String.fromCharCode(32 + Math.floor(r() * 95))).join('');
    metaEdit(`metadata ${key} = junk ${JSON.stringify(junk)}`, (m) => { m[key] = junk; });
  }
  return out;
}

/** Edits that make another valid checkpoint: loaded, and only the edited value changes. */
function validEdits(src: Source): Array<{ name: string; edit: (h: any, d: Map<string, Buffer>) => void; expect: Expect }> {
  const { header } = split(src.bytes);
  const out: Array<{ name: string; edit: (h: any, d: Map<string, Buffer>) => void; expect: Expect }> = [];
  out.push({
    name: 'user metadata added', edit: (h) => { h.__metadata__.epoch = '9'; },
    expect: { valid: 'user metadata belongs to the user: any string is a valid value', changes: 'metadata', check: (_o, info) => info.metadata.epoch === '9' },
  });
  out.push({
    name: 'param_names changed', edit: (h) => { h.__metadata__.param_names = JSON.stringify(SHAPES.map((_, i) => `renamed${i}`)); },
    expect: { valid: 'param_names are for people (the params are matched by index, as in PyTorch)', changes: 'metadata', check: () => true },
  });
  out.push({
    name: 'lr of group 1 doubled', edit: (h) => { const g = JSON.parse(h.__metadata__.param_groups); g[1].lr *= 2; h.__metadata__.param_groups = JSON.stringify(g); },
    expect: { valid: 'a hyperparameter within its range: a checkpoint adamp writes after a scheduler changed lr', changes: 'groups', check: (o) => o.paramGroups[1].lr === JSON.parse(header.__metadata__.param_groups)[1].lr * 2 },
  });
  // A param's whole state removed: the checkpoint of a param that has not stepped yet.
  const names = dataOrder(src.bytes);
  const first = names.find((x) => x.startsWith('state.'))!;
  const i = first.split('.')[1];
  const all = names.filter((x) => x.startsWith(`state.${i}.`));
  out.push({
    name: `the whole state of param ${i} removed (${all.join(', ')})`, edit: (h, d) => { for (const x of all) { delete h[x]; d.delete(x); } },
    expect: { valid: 'a param without state is one that has not stepped yet, as in PyTorch', changes: 'state', check: (o) => !(i in o.stateDict().state) && Object.keys(o.stateDict().state).length === 3 },
  });
  const step = names.find((n) => n.endsWith('.step'));
  if (step) {
    out.push({
      name: `${step} = 12345`, edit: (_h, d) => { const b = Buffer.alloc(8); b.writeBigInt64LE(12345n); d.set(step, b); },
      expect: { valid: 'any count from 0 to 2^53 - 1 is a step count adamp can write', changes: 'state', check: (o) => o.stateDict().state[Number(step.split('.')[1])].step === 12345 },
    });
  }
  return out;
}

function mutations(src: Source, r: () => number, exhaustiveHeader: boolean): Mutation[] {
  const out: Mutation[] = [];
  const b = src.bytes;
  const { n, header } = split(b);
  const dataStart = 8 + n;
  const names = dataOrder(b);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo)); // [lo, hi)
  const push = (category: string, name: string, bytes: Buffer, expect: Expect = refuse(), trust?: 'foreign') => out.push({ category, name, bytes, expect, trust });

  // Truncations: every byte of the length and the first 64 of the header, every tensor boundary +-1, samples elsewhere.
  const cuts = new Set<number>();
  for (let k = 0; k < 8 + 64; k++) cuts.add(k);
  for (const x of [dataStart - 1, dataStart, dataStart + 1]) cuts.add(x);
  for (const t of names) for (const o of header[t].data_offsets) for (const d of [-1, 0, 1]) cuts.add(dataStart + o + d);
  for (let k = 0; k < 40 * SCALE; k++) cuts.add(int(0, b.length));
  if (exhaustiveHeader) for (let k = 0; k < b.length; k++) cuts.add(k);
  for (const c of cuts) if (c >= 0 && c < b.length) push('truncation', `cut at ${c}`, b.subarray(0, c));
  // Appended bytes.
  for (const extra of [Buffer.alloc(1), Buffer.alloc(8), Buffer.from(' '), b.subarray(dataStart, dataStart + 16), Buffer.from(randn(r, 4).buffer)]) push('appended', `${extra.length} bytes appended`, Buffer.concat([b, extra]));
  // Bit flips: the length (all 64 bits), the header (every bit, or samples), the data (samples and every tensor's first and last byte).
  for (let bit = 0; bit < 64; bit++) push('bit flip: length', `bit ${bit}`, flipBit(b, bit));
  if (exhaustiveHeader) for (let bit = 64; bit < dataStart * 8; bit++) push('bit flip: header', `bit ${bit}`, flipBit(b, bit));
  else for (let k = 0; k < 300 * SCALE; k++) { const bit = int(64, dataStart * 8); push('bit flip: header', `bit ${bit}`, flipBit(b, bit)); }
  if (b.length > dataStart) {
    for (let k = 0; k < 60 * SCALE; k++) { const bit = int(dataStart * 8, b.length * 8); push('bit flip: data', `bit ${bit}`, flipBit(b, bit)); }
    for (const t of names) {
      const [s, e] = header[t].data_offsets;
      if (e > s) for (const at of [s, e - 1]) push('bit flip: data', `${t} byte ${at - s} bit 0`, flipBit(b, (dataStart + at) * 8));
    }
  }
  // Bytes overwritten with random values anywhere.
  for (let k = 0; k < 80 * SCALE; k++) {
    const at = int(0, b.length);
    const v = int(0, 256);
    if (v === b[at]) continue;
    const c = Buffer.from(b);
    c[at] = v;
    push('byte overwritten', `byte ${at} = ${v}`, c);
  }
  // Garbage headers: random bytes, JSON of the wrong shape, absurd lengths.
  const withHeader = (json: string | Buffer, data = b.subarray(dataStart)) => { const j = Buffer.isBuffer(json) ? json : Buffer.from(json); const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(j.length)); return Buffer.concat([len, j, data]); };
  for (let k = 0; k < 10 * SCALE; k++) push('garbage header', `random bytes ${k}`, withHeader(Buffer.from(Array.from({ length: n }, () => int(0, 256)))));
  const garbage = ['[]', 'null', '"x"', '5', '{}', '{"__metadata__":5}', '{"__metadata__":{"format":5}}', '{"x":1}', '{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}}',
    '{"x":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}', '{"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,6]}}', '{"x":{"dtype":"F32","shape":[1e300,1e300],"data_offsets":[0,4]}}',
    '{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}}', '{"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', '[' .repeat(100000) + ']'.repeat(100000),
    '{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', '\u00ff\u00fe', '{"a":"\\ud800"}'];
  garbage.forEach((g, k) => push('garbage header', `json ${k}: ${g.slice(0, 40)}`, withHeader(g)));
  for (const len of [0n, 1n, 2n, BigInt(b.length), 2n ** 63n, 2n ** 64n - 1n, 100_000_001n]) { const c = Buffer.from(b); c.writeBigUInt64LE(len); push('garbage header', `length ${len}`, c); }
  push('garbage header', 'empty file', Buffer.alloc(0));
  push('garbage header', '7 bytes', Buffer.alloc(7));

  // Tampering without recomputing the digest, then the same edits with the digest recomputed
  // (verified load) and with the digest removed (foreign load).
  for (const e of structuralEdits(src, r)) {
    let tampered: Buffer | null = null;
    try { tampered = rewrite(b, e.edit, { offsets: e.offsets, reseal: false }); } catch { /* the edit needs a field this file lacks */ }
    if (tampered === null || tampered.equals(b)) continue;
    push('tampered (digest kept)', e.name, tampered);
    push('structural (digest recomputed)', e.name, rewrite(b, e.edit, { offsets: e.offsets }), refuse(e.code));
    if (e.foreignCode !== null) {
      push('structural (foreign, no digest)', e.name, rewrite(b, (h, d) => { delete h.__metadata__[DIGEST]; e.edit(h, d); }, { offsets: e.offsets }), refuse(e.foreignCode ?? e.code), 'foreign');
    }
  }
  // The digest itself: removed, renamed, uppercased, zeroed, duplicated.
  push('digest', 'removed', rewrite(b, (h) => { delete h.__metadata__[DIGEST]; }));
  push('digest', 'renamed data_sha256', rewrite(b, (h) => { h.__metadata__.data_sha256 = h.__metadata__[DIGEST]; delete h.__metadata__[DIGEST]; }, { reseal: false }));
  push('digest', 'uppercase', rewrite(b, (h) => { h.__metadata__[DIGEST] = h.__metadata__[DIGEST].toUpperCase(); }, { reseal: false }));
  push('digest', 'zeros', rewrite(b, (h) => { h.__metadata__[DIGEST] = '0'.repeat(64); }, { reseal: false }));
  push('digest', 'escaped key', (() => { const j = Buffer.from(b.toString('latin1').replace(`"${DIGEST}"`, `"checkpoint\\u005fsha256"`), 'latin1'); return withHeader(j.subarray(8, 8 + n + 5), b.subarray(dataStart)); })());
  push('digest', 'a second copy in a user key', rewrite(b, (h) => { h.__metadata__.copy = `"${DIGEST}":"${h.__metadata__[DIGEST]}"`; }, { reseal: false }));

  // VALID edits, digest recomputed: accepted, changing only what they edit.
  for (const v of validEdits(src)) push('valid edit (digest recomputed)', v.name, rewrite(b, v.edit), v.expect);
  return out;
}

// ---------------------------------------------------------------------------------------------

describe('checkpoint fuzzing (seeded)', () => {
  test(`thousands of mutated checkpoints: refused with the right code, nothing changed; only valid re-encodings accepted (seed ${SEED})`, async () => {
    const t0 = Date.now();
    const r = rng(SEED);
    const tally = new Map<string, { tried: number; codes: Map<string, number>; accepted: number }>();
    const accepted: string[] = [];
    const failures: string[] = [];
    let tried = 0;
    let sources = 0;
    for (const kind of KINDS) {
      for (const withParams of [false, true]) {
        const ps = makeParams(SEED % 1000 + sources);
        const opt = makeOptimizer(kind, ps);
        train(opt, ps, 1 + sources, 3);
        const src: Source = { kind, withParams, bytes: serializeCheckpoint(opt, { params: withParams, ...(sources % 2 ? { metadata: { run: `fuzz ${sources}` } } : {}) }) };
        // The target: same structure, its own weights, state and grads.
        const tps = makeParams(SEED % 1000 + 500 + sources);
        const target = makeOptimizer(kind, tps);
        train(target, tps, 77 + sources, 1);
        tps.forEach((p, i) => { p.grad = i === 3 ? null : randn(rng(sources * 31 + i), p.data.length); });
        const initial = snapshot(target, tps);
        const initialBytes = serializeCheckpoint(target, { params: true });
        // The reference: the unmutated file loaded.
        const refOpt = makeOptimizer(kind, makeParams(SEED % 1000 + 500 + sources));
        deserializeCheckpoint(refOpt, src.bytes, { params: withParams });
        const ref = snapshot(refOpt, refOpt.paramGroups.flatMap((g: { params: Param[] }) => g.params));

        // Every bit of the header flipped for the first checkpoint (AdamP, state only), samples for the others.
        const list = mutations(src, r, sources === 0 || SCALE > 1);
        for (const m of list) {
          tried++;
          const row = tally.get(m.category) ?? { tried: 0, codes: new Map(), accepted: 0 };
          tally.set(m.category, row);
          row.tried++;
          const label = `${kind}${withParams ? '+params' : ''} / ${m.category} / ${m.name}`;
          let err: unknown;
          let info: any;
          try {
            info = deserializeCheckpoint(target, m.bytes, { params: withParams, trust: m.trust, source: 'fuzz.safetensors' });
          } catch (e) {
            err = e;
          }
          if (err !== undefined) {
            const code = (err as { code?: string }).code ?? `(not an AdampError: ${(err as Error)?.name}: ${(err as Error)?.message})`;
            row.codes.set(code, (row.codes.get(code) ?? 0) + 1);
            if (!(err instanceof AdampError) || !('code' in m.expect) || code !== m.expect.code || !(err as Error).message.includes('fuzz.safetensors')) {
              failures.push(`${label}: expected ${JSON.stringify(m.expect)}, got ${code}: ${(err as Error)?.message}`);
            }
            if (!sameSnapshot(snapshot(target, tps), initial)) {
              failures.push(`${label}: refused, but the optimizer changed`);
              deserializeCheckpoint(target, initialBytes, { params: true });
            }
            continue;
          }
          row.accepted++;
          const now = snapshot(target, tps);
          if (!('valid' in m.expect)) {
            failures.push(`${label}: ACCEPTED, expected ${JSON.stringify(m.expect)}`);
          } else {
            accepted.push(`${m.name}: ${m.expect.valid}`);
            const changes = m.expect.changes;
            for (const part of ['groups', 'state', 'params'] as const) {
              // Params come from the file only when it holds them; otherwise the target keeps its own.
              const expected = part === 'params' && !withParams ? initial : ref;
              const equal = part === 'groups' ? now.groups === expected.groups : now[part].equals(expected[part]);
              if (part !== changes && !equal) failures.push(`${label}: accepted as valid, but ${part} differs from the unmutated file's`);
            }
            if (!now.grads.equals(initial.grads)) failures.push(`${label}: the grads changed`);
            if (!m.expect.check(target, info)) failures.push(`${label}: accepted, but the edited value is not what the file says`);
          }
          deserializeCheckpoint(target, initialBytes, { params: true });
          if (!sameSnapshot(snapshot(target, tps), initial)) throw new Error('could not restore the target');
        }
        sources++;
      }
    }

    // A few through the file system too (sync and async loads of mutated files on disk).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'adamp-fuzz-'));
    try {
      const ps = makeParams(5);
      const opt = makeOptimizer('AdamP', ps);
      train(opt, ps, 5, 2);
      const bytes = serializeCheckpoint(opt, { params: true });
      const target = makeOptimizer('AdamP', makeParams(6));
      const before = snapshot(target, target.paramGroups.flatMap((g: { params: Param[] }) => g.params));
      for (let k = 0; k < 40; k++) {
        const file = path.join(dir, `m${k}.safetensors`);
        fs.writeFileSync(file, k % 2 ? flipBit(bytes, Math.floor(r() * bytes.length * 8)) : bytes.subarray(0, Math.floor(r() * bytes.length)));
        tried++;
        const row = tally.get('from disk') ?? { tried: 0, codes: new Map(), accepted: 0 };
        tally.set('from disk', row);
        row.tried++;
        let code = 'accepted';
        try {
          if (k % 4 < 2) loadCheckpointSync(file, target, { params: true }); else await loadCheckpoint(file, target, { params: true });
          row.accepted++;
        } catch (e) {
          code = (e as { code: string }).code;
          row.codes.set(code, (row.codes.get(code) ?? 0) + 1);
          if (!(e as Error).message.includes(file)) failures.push(`from disk ${k}: the message does not name the file`);
        }
        if (code !== BAD) failures.push(`from disk ${k}: ${code}`);
        if (!sameSnapshot(snapshot(target, target.paramGroups.flatMap((g: { params: Param[] }) => g.params)), before)) failures.push(`from disk ${k}: the optimizer changed`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }

    const codes = new Map<string, number>();
    let acceptedCount = 0;
    const lines = [...tally].map(([cat, row]) => {
      acceptedCount += row.accepted;
      for (const [c, k] of row.codes) codes.set(c, (codes.get(c) ?? 0) + k);
      return `  ${cat.padEnd(34)} ${String(row.tried).padStart(6)} tried  ${[...row.codes].map(([c, k]) => `${c.replace('ERR_ADAMP_', '')} ${k}`).join(', ')}${row.accepted ? `  accepted ${row.accepted}` : ''}`;
    });
    const reasons = [...new Set(accepted)].map((a) => `  accepted (valid): ${a}`);
    console.log([
      `[fuzz-checkpoint] seed ${SEED}: ${tried} mutations of ${sources} checkpoints (${KINDS.join(', ')}; with and without params) in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
      `  refused: ${[...codes].map(([c, k]) => `${c} ${k}`).join(', ')}; accepted: ${acceptedCount} (all VALID edits, each checked)`,
      ...lines, ...reasons,
    ].join('\n'));
    expect(failures.slice(0, 30)).toEqual([]);
    expect(tried).toBeGreaterThanOrEqual(3000);
    expect(acceptedCount).toBe(accepted.length);
  });
});
