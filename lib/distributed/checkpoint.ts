/**
 * Checkpoints of a sharded optimizer (docs/distributed.md, "Checkpoints"): each rank saves its
 * shard as a safetensors file (lib/checkpoint's container, digest and atomic writer), rank 0 a
 * manifest once every shard is on disk; a merge turns the N shards into one ordinary checkpoint
 * (docs/checkpoints.md: it loads into a single-process optimizer, or PyTorch), and an ordinary
 * checkpoint loads into any number of ranks. Shards saved by another world size (or another
 * partition) are refused unless the load is asked to reshard.
 *
 *   DIR/optimizer-rank-00000-of-00004.safetensors   rank 0's shard
 *   ...
 *   DIR/optimizer.shards.json                       the manifest: written last, by rank 0
 *
 * A shard holds, in this order: `params.{i}` (with `{ params: true }`: this rank's piece of param
 * i, F32 of shape [piece length]), then per param with state in index order `state.{i}.step` (I64
 * [], in every shard) and `state.{i}.<slot>` (F32 [piece length], where the rank holds a piece),
 * under the names of docs/checkpoints.md. Its metadata are an ordinary checkpoint's (`optimizer`,
 * `param_groups`, `param_shapes`, `param_names`, `includes_params`, `checkpoint_sha256`) with
 * `format: 'adamp-optimizer-shard/1'` and `shard`: `{ rank, world_size, partition, backend, cuts,
 * plan_sha256, pieces: [[i, begin, end], ...] }`.
 */
import * as fs from 'fs';
import * as path from 'path';
import { AdampError, invalid } from '../errors';
import { describe } from '../core/describe';
import { encodeSafetensors, parseSafetensors, readF32, readI64, type TensorRecord, type TensorToWrite } from '../checkpoint/safetensors';
import { writeFileAtomicSync } from '../checkpoint/atomic';
import { DIGEST_KEY, seal, verify } from '../checkpoint/integrity';
import { readFileSyncChecked } from '../checkpoint/io';
import { deserializeCheckpoint, RESERVED_METADATA_KEYS, serializeCheckpoint } from '../checkpoint';
import { classOf, specOf } from '../optim/registry';
import { resolveOptions } from '../optim/options';
import type { AnySpec } from '../optim/spec';
import type { Param } from '../types';
import { CollectiveError, rankList } from './collective';
import { agree } from './data-parallel';
import type { ShardedOptimizer } from './sharded';

export const SHARD_FORMAT = 'adamp-optimizer-shard/1';
export const MANIFEST_FORMAT = 'adamp-sharded-checkpoint/1';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnySharded = ShardedOptimizer<any, any>;

export interface SaveShardedOptions {
  /** Also save each rank's piece of the params (default false). */
  params?: boolean;
  /** User metadata (string values), saved in every shard. */
  metadata?: Record<string, string>;
  /** File names start with this (default 'optimizer'). */
  prefix?: string;
}

export interface LoadShardedOptions {
  /** Also restore the params (the checkpoint must hold them). */
  params?: boolean;
  /**
   * Shards saved by another world size or partition: read every shard file this rank needs and
   * cut them again (default false: such a checkpoint is refused).
   */
  reshard?: boolean;
  /** For a manifest in a folder with several checkpoints: their prefix (default 'optimizer'). */
  prefix?: string;
}

export interface ShardManifest {
  format: string;
  optimizer: string;
  world_size: number;
  partition: string;
  backend: string;
  includes_params: boolean;
  files: Array<{ rank: number; file: string; sha256: string }>;
}

function shardName(prefix: string, rank: number, size: number): string {
  return `${prefix}-rank-${String(rank).padStart(5, '0')}-of-${String(size).padStart(5, '0')}.safetensors`;
}

function manifestName(prefix: string): string {
  return `${prefix}.shards.json`;
}

function torchGroups(opt: AnySharded): Array<Record<string, unknown>> {
  const toTorch: Record<string, string> = {};
  for (const o of opt.spec.options) toTorch[o.key] = o.torch;
  return opt.groupsDict().map((g: Record<string, unknown>) => {
    const out: Record<string, unknown> = { params: g.params };
    for (const [k, v] of Object.entries(g)) if (k !== 'params') out[toTorch[k] ?? k] = v;
    return out;
  });
}

function checkUserMetadata(user: unknown): Record<string, string> {
  if (user === undefined) return {};
  if (user === null || typeof user !== 'object' || Array.isArray(user)) throw invalid(`options.metadata must be an object of strings, got ${describe(user)}`);
  for (const [k, v] of Object.entries(user)) {
    if ((RESERVED_METADATA_KEYS as readonly string[]).includes(k) || k === 'shard') throw invalid(`options.metadata.${k} is reserved by the checkpoint format; choose another key`);
    if (typeof v !== 'string') throw invalid(`options.metadata.${k} must be a string, got ${describe(v)}`);
  }
  return user as Record<string, string>;
}

/** This rank's shard file (bytes). */
export function serializeShard(opt: AnySharded, options: SaveShardedOptions = {}): Buffer {
  const spec = opt.spec;
  const user = checkUserMetadata(options.metadata);
  const params = opt.paramList();
  const tensors: TensorToWrite[] = [];
  const pieces: Array<[number, number, number]> = [];
  params.forEach((_, i) => {
    const pc = opt.pieceOf(i);
    if (pc) pieces.push([i, pc.begin, pc.end]);
  });
  if (options.params) {
    for (const [i, b, e] of pieces) tensors.push({ name: `params.${i}`, dtype: 'F32', shape: [e - b], data: params[i].data.slice(b, e) });
  }
  const state = opt.shardState();
  for (let i = 0; i < params.length; i++) {
    const s = state.get(i);
    if (s === undefined) continue;
    tensors.push({ name: `state.${i}.step`, dtype: 'I64', shape: [], data: BigInt64Array.of(BigInt(s.step)) });
    const pc = opt.pieceOf(i);
    if (pc) spec.slots.forEach((d, k) => tensors.push({ name: `state.${i}.${d.torch}`, dtype: 'F32', shape: [pc.end - pc.begin], data: s.slots[k] }));
  }
  const metadata: Record<string, string> = {
    ...user,
    format: SHARD_FORMAT,
    optimizer: spec.name,
    param_groups: JSON.stringify(torchGroups(opt)),
    param_shapes: JSON.stringify(params.map((p) => Array.from(p.shape))),
    param_names: JSON.stringify(params.map((p) => p.name ?? null)),
    includes_params: options.params ? 'true' : 'false',
    shard: JSON.stringify({
      rank: opt.rank, world_size: opt.size, partition: opt.partitioning, backend: opt.backend, cuts: opt.plan.cuts, plan_sha256: opt.plan.digest, pieces,
    }),
    [DIGEST_KEY]: '0'.repeat(64),
  };
  const bytes = encodeSafetensors(tensors, metadata);
  seal(bytes, Number(bytes.readBigUInt64LE(0)));
  return bytes;
}

/**
 * Saves every rank's shard into `dir` and, once every rank's file is on disk, rank 0's manifest
 * (collective). Returns on every rank when the checkpoint is complete; throws on every rank when
 * any rank failed (its own error there, `ERR_ADAMP_COLLECTIVE` naming it elsewhere), and then no
 * manifest is written: the previous checkpoint in `dir`, if any, stays the one a load finds.
 */
export function saveShardedCheckpoint(dir: string, opt: AnySharded, options: SaveShardedOptions = {}): ShardManifest {
  if (typeof dir !== 'string' || dir === '') throw invalid(`dir must be a folder path, got ${describe(dir)}`);
  const prefix = options.prefix ?? 'optimizer';
  if (!/^[A-Za-z0-9._-]+$/.test(prefix)) throw invalid(`options.prefix must be a file-name prefix (letters, digits, '.', '_', '-'), got ${describe(prefix)}`);
  const c = opt.collective;
  const at = { step: opt.stepCount, phase: 'checkpoint' };
  let local: Error | null = null;
  let digest = '';
  try {
    const bytes = serializeShard(opt, options);
    writeFileAtomicSync(path.join(dir, shardName(prefix, opt.rank, opt.size)), bytes, 'cannot save checkpoint shard');
    digest = parseSafetensors(bytes, 'shard').metadata[DIGEST_KEY];
  } catch (e) {
    local = e as Error;
  }
  // everyone's digest (8 x 32 bits each), and whether it succeeded
  const rec = new Float64Array(9);
  rec[0] = local === null ? 1 : 0;
  for (let k = 0; k < 8 && digest; k++) rec[1 + k] = parseInt(digest.slice(8 * k, 8 * k + 8), 16);
  const all = new Float64Array(9 * opt.size);
  opt.collect(() => c.allGather(rec, all, null, at));
  const failed: number[] = [];
  for (let r = 0; r < opt.size; r++) if (all[9 * r] !== 1) failed.push(r);
  if (failed.length > 0) {
    if (local !== null) throw local;
    throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `the sharded checkpoint in '${dir}' is incomplete: ${rankList(failed)} could not save ${failed.length > 1 ? 'their shards' : 'its shard'} (see the error there); no manifest was written`,
      { rank: opt.rank, step: at.step, phase: at.phase, missing: failed });
  }
  const manifest: ShardManifest = {
    format: MANIFEST_FORMAT, optimizer: opt.spec.name, world_size: opt.size, partition: opt.partitioning, backend: opt.backend,
    includes_params: options.params === true,
    files: Array.from({ length: opt.size }, (_, r) => ({
      rank: r, file: shardName(prefix, r, opt.size),
      sha256: Array.from({ length: 8 }, (_, k) => all[9 * r + 1 + k].toString(16).padStart(8, '0')).join(''),
    })),
  };
  let wrote: Error | null = null;
  if (opt.rank === 0) {
    try {
      writeFileAtomicSync(path.join(dir, manifestName(prefix)), Buffer.from(JSON.stringify(manifest, null, 1) + '\n'), 'cannot save checkpoint manifest');
    } catch (e) {
      wrote = e as Error;
    }
  }
  const bad = agree(c, wrote === null, at);
  if (bad.length > 0) {
    if (wrote !== null) throw wrote;
    throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `the sharded checkpoint in '${dir}' is incomplete: rank 0 could not write its manifest (see the error there)`,
      { rank: opt.rank, step: at.step, phase: at.phase, missing: bad });
  }
  return manifest;
}

// ---------------------------------------------------------------------------------------------
// Reading.

interface ShardInfo {
  rank: number;
  worldSize: number;
  partition: string;
  backend: string;
  cuts: number[];
  planDigest: string;
  pieces: Array<[number, number, number]>;
}

/** A shard file read and checked on its own. */
interface ReadShard {
  source: string;
  optimizer: string;
  groups: Array<Record<string, unknown>>;
  shapes: number[][];
  names: Array<string | null>;
  includesParams: boolean;
  shard: ShardInfo;
  user: Record<string, string>;
  steps: Map<number, number>;
  /** param -> slot key -> piece values */
  slots: Map<number, Map<string, Float32Array>>;
  params: Map<number, Float32Array>;
  digest: string;
}

const STATE = /^state\.(0|[1-9]\d{0,8})\.([a-z_]+)$/;
const PARAM = /^params\.(0|[1-9]\d{0,8})$/;

function readShardBytes(spec: AnySpec | null, bytes: Uint8Array, source: string): ReadShard {
  const file = parseSafetensors(bytes, source);
  const meta = file.metadata;
  const bad = (why: string) => new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `${source} is not a valid optimizer shard: ${why}`);
  if (meta.format !== SHARD_FORMAT) {
    throw new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `${source} is not an adamp optimizer shard: metadata 'format' is ${meta.format === undefined ? 'missing' : JSON.stringify(meta.format)}, expected '${SHARD_FORMAT}'`);
  }
  if (meta[DIGEST_KEY] === undefined) throw bad(`it has no digest ('${DIGEST_KEY}'), which every shard adamp writes carries`);
  verify(bytes, file.headerLength, meta[DIGEST_KEY], source);
  const json = (k: string): unknown => {
    if (meta[k] === undefined) throw bad(`it lacks the metadata key '${k}'`);
    try { return JSON.parse(meta[k]); } catch (e) { throw bad(`metadata '${k}' is not valid JSON (${(e as Error).message})`); }
  };
  const optimizer = meta.optimizer;
  const s = specOf(optimizer ?? '');
  if (s === undefined || s.name !== optimizer) throw bad(`metadata 'optimizer' is ${JSON.stringify(optimizer)}, not an adamp optimizer`);
  if (spec !== null && spec.name !== optimizer) throw invalid(`${source} was saved from ${optimizer}, this optimizer is ${spec.name}`);
  const groups = json('param_groups') as Array<Record<string, unknown>>;
  const shapes = json('param_shapes') as number[][];
  const names = json('param_names') as Array<string | null>;
  const sh = json('shard') as Record<string, unknown>;
  if (!Array.isArray(groups) || !Array.isArray(shapes) || !Array.isArray(names) || shapes.length !== names.length) throw bad('param_groups, param_shapes or param_names are malformed');
  if (!shapes.every((x) => Array.isArray(x) && x.every((d) => Number.isSafeInteger(d) && d >= 0))) throw bad(`metadata 'param_shapes' must be an array of shapes`);
  const shard: ShardInfo = {
    rank: sh.rank as number, worldSize: sh.world_size as number, partition: sh.partition as string, backend: sh.backend as string,
    cuts: sh.cuts as number[], planDigest: sh.plan_sha256 as string, pieces: sh.pieces as Array<[number, number, number]>,
  };
  if (!Number.isSafeInteger(shard.worldSize) || shard.worldSize < 1 || !Number.isSafeInteger(shard.rank) || shard.rank < 0 || shard.rank >= shard.worldSize
    || !Array.isArray(shard.cuts) || shard.cuts.length !== shard.worldSize + 1 || !Array.isArray(shard.pieces)
    || !shard.pieces.every((p) => Array.isArray(p) && p.length === 3 && p.every((x) => Number.isSafeInteger(x) && x >= 0) && p[0] < shapes.length && p[1] < p[2]
      && p[2] <= shapes[p[0]].reduce((a, b) => a * b, 1))) {
    throw bad(`metadata 'shard' is malformed`);
  }
  const includesParams = meta.includes_params === 'true';
  if (!includesParams && meta.includes_params !== 'false') throw bad(`metadata 'includes_params' must be 'true' or 'false'`);
  const pieceOf = new Map(shard.pieces.map(([i, b, e]) => [i, e - b]));
  const slotKeys = s.slots.map((d) => d.torch);
  const steps = new Map<number, number>();
  const slots = new Map<number, Map<string, Float32Array>>();
  const params = new Map<number, Float32Array>();
  const order: number[] = [];
  const N = shapes.length;
  const expectLen = (t: TensorRecord, i: number) => {
    const want = pieceOf.get(i);
    if (want === undefined) throw bad(`tensor '${t.name}': this shard holds no piece of param ${i}`);
    if (t.dtype !== 'F32' || t.shape.length !== 1 || t.shape[0] !== want) throw bad(`tensor '${t.name}' must be F32 [${want}] (the piece's length), got ${t.dtype} [${t.shape.join(',')}]`);
  };
  for (const t of file.tensors) {
    const mp = PARAM.exec(t.name), ms = STATE.exec(t.name);
    if (!mp && !ms) throw bad(`unexpected tensor '${t.name}'`);
    const i = Number((mp ?? ms)![1]);
    if (i >= N) throw bad(`tensor '${t.name}' refers to param ${i}, the file lists ${N}`);
    if (mp) {
      if (!includesParams) throw bad(`it holds '${t.name}' but says includes_params is false`);
      expectLen(t, i);
      params.set(i, readF32(t));
      order.push(i);
      continue;
    }
    const key = ms![2];
    if (key === 'step') {
      if (t.dtype !== 'I64' || t.shape.length !== 0) throw bad(`tensor '${t.name}' must be an I64 scalar`);
      const v = readI64(t)[0];
      if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`tensor '${t.name}' holds ${v}; a step count must be an integer from 0 to 2^53 - 1`);
      steps.set(i, Number(v));
      order.push(N + i * (1 + slotKeys.length));
      continue;
    }
    const k = slotKeys.indexOf(key);
    if (k < 0) throw bad(`unexpected tensor '${t.name}' (${optimizer} state holds step, ${slotKeys.join(', ')})`);
    expectLen(t, i);
    if (!slots.has(i)) slots.set(i, new Map());
    slots.get(i)!.set(key, readF32(t));
    order.push(N + i * (1 + slotKeys.length) + 1 + k);
  }
  for (let k = 1; k < order.length; k++) if (order[k] <= order[k - 1]) throw bad(`tensor '${file.tensors[k].name}' is out of the order adamp writes`);
  if (includesParams) for (const [i] of pieceOf) if (!params.has(i)) throw bad(`it holds params but not 'params.${i}'`);
  for (const [i, m] of slots) {
    if (!steps.has(i)) throw bad(`param ${i} has state slots but no 'state.${i}.step'`);
    for (const key of slotKeys) if (!m.has(key)) throw bad(`the state of param ${i} lacks 'state.${i}.${key}'`);
  }
  for (const i of steps.keys()) if (pieceOf.has(i) && !slots.has(i) && slotKeys.length > 0) throw bad(`the state of param ${i} lacks its slots`);
  const user: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta)) if (!(RESERVED_METADATA_KEYS as readonly string[]).includes(k) && k !== 'shard') user[k] = v;
  return { source, optimizer, groups, shapes, names, includesParams, shard, user, steps, slots, params, digest: meta[DIGEST_KEY] };
}

function readManifest(file: string): ShardManifest {
  const text = readFileSyncChecked(file, 'cannot read checkpoint manifest').toString('utf8');
  let m: ShardManifest;
  try { m = JSON.parse(text); } catch (e) { throw new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `${file} is not valid JSON (${(e as Error).message})`); }
  if (m === null || typeof m !== 'object' || m.format !== MANIFEST_FORMAT || !Array.isArray(m.files) || !Number.isSafeInteger(m.world_size) || m.files.length !== m.world_size
    || !m.files.every((f, r) => f && f.rank === r && typeof f.file === 'string' && !f.file.includes('/') && !f.file.includes('\\') && /^[0-9a-f]{64}$/.test(f.sha256))) {
    throw new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `${file} is not an adamp sharded-checkpoint manifest (format '${MANIFEST_FORMAT}', one file per rank)`);
  }
  return m;
}

/** Where a sharded checkpoint's manifest is: `source` is the manifest itself or its folder. */
function manifestPath(source: string, prefix: string): string {
  try {
    if (fs.statSync(source).isDirectory()) return path.join(source, manifestName(prefix));
  } catch { /* reported by the read */ }
  return source;
}

/** Reads shard `r` of a manifest, checking it is the file the manifest recorded. */
function readListed(dir: string, m: ShardManifest, r: number, spec: AnySpec | null): ReadShard {
  const f = path.join(dir, m.files[r].file);
  const s = readShardBytes(spec, readFileSyncChecked(f, 'cannot read checkpoint shard'), `shard '${f}'`);
  if (s.digest !== m.files[r].sha256) throw new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `shard '${f}' is not the one the manifest lists (its digest differs: saved by another checkpoint?)`);
  if (s.shard.rank !== r || s.shard.worldSize !== m.world_size) throw new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `shard '${f}' says rank ${s.shard.rank} of ${s.shard.worldSize}, the manifest lists it as rank ${r} of ${m.world_size}`);
  return s;
}

/** The whole state and params of a set of shards (checked against each other). */
interface Assembled {
  optimizer: string;
  groups: Array<Record<string, unknown>>;
  shapes: number[][];
  names: Array<string | null>;
  includesParams: boolean;
  user: Record<string, string>;
  state: Map<number, { step: number; slots: Map<string, Float32Array> }>;
  params: Float32Array[] | null;
}

function assemble(shards: ReadShard[]): Assembled {
  const first = shards[0];
  const bad = (why: string) => new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `the shards do not form one checkpoint: ${why}`);
  const same = (f: (s: ReadShard) => unknown, what: string) => {
    const a = JSON.stringify(f(first));
    for (const s of shards) if (JSON.stringify(f(s)) !== a) throw bad(`${s.source} has other ${what} than ${first.source}`);
  };
  same((s) => s.optimizer, 'an optimizer');
  same((s) => s.groups, 'param groups');
  same((s) => s.shapes, 'param shapes');
  same((s) => s.includesParams, 'includes_params');
  same((s) => [s.shard.worldSize, s.shard.partition, s.shard.backend, s.shard.cuts, s.shard.planDigest], 'partition');
  same((s) => [...s.steps.keys()], 'params with state');
  const numel = first.shapes.map((s) => s.reduce((a, b) => a * b, 1));
  const spec = specOf(first.optimizer)!;
  const covered = numel.map(() => [] as Array<[number, number]>);
  for (const s of shards) for (const [i, b, e] of s.shard.pieces) covered[i].push([b, e]);
  covered.forEach((list, i) => {
    list.sort((x, y) => x[0] - y[0]);
    let at = 0;
    for (const [b, e] of list) {
      if (b !== at) throw bad(`the pieces of param ${i} ${b < at ? 'overlap' : 'leave a gap'} at element ${Math.min(b, at)}`);
      at = e;
    }
    if (at !== numel[i]) throw bad(`the pieces of param ${i} cover ${at} of its ${numel[i]} elements`);
  });
  const state = new Map<number, { step: number; slots: Map<string, Float32Array> }>();
  for (const i of first.steps.keys()) {
    const step = first.steps.get(i)!;
    const slots = new Map<string, Float32Array>();
    for (const d of spec.slots) slots.set(d.torch, new Float32Array(numel[i]));
    for (const s of shards) {
      if (s.steps.get(i) !== step) throw bad(`param ${i} has step ${s.steps.get(i)} in ${s.source}, ${step} in ${first.source}`);
      const m = s.slots.get(i);
      const pc = s.shard.pieces.find((p) => p[0] === i);
      if (m && pc) for (const d of spec.slots) slots.get(d.torch)!.set(m.get(d.torch)!, pc[1]);
    }
    state.set(i, { step, slots });
  }
  let params: Float32Array[] | null = null;
  if (first.includesParams) {
    params = numel.map((n) => new Float32Array(n));
    for (const s of shards) for (const [i, b] of s.shard.pieces) params[i].set(s.params.get(i)!, b);
  }
  return { optimizer: first.optimizer, groups: first.groups, shapes: first.shapes, names: first.names, includesParams: first.includesParams, user: first.user, state, params };
}

/** A single-process optimizer holding an assembled checkpoint (to write it with lib/checkpoint's writer). */
function asOptimizer(a: Assembled) {
  const spec = specOf(a.optimizer)!;
  const torchToKey = new Map(spec.options.map((o) => [o.torch, o.key]));
  const groups = a.groups.map((g, gi) => {
    const opts: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(g)) if (k !== 'params') opts[torchToKey.get(k) ?? k] = v;
    return { params: g.params as number[], options: resolveOptions(spec, opts, null, `param_groups[${gi}]`, 'strict') };
  });
  const params: Param[] = a.shapes.map((shape, i) => ({
    shape, data: a.params ? a.params[i] : new Float32Array(shape.reduce((x, y) => x * y, 1)), grad: null, ...(a.names[i] !== null ? { name: a.names[i] as string } : {}),
  }));
  const cls = classOf(spec) as unknown as new (p: unknown, o: unknown, c: unknown) => { loadStateDict(sd: unknown): void };
  const opt = new cls(groups.map((g) => ({ params: g.params.map((i) => params[i]), ...g.options })), groups[0].options, { backend: 'js' });
  const state: Record<number, Record<string, unknown>> = {};
  for (const [i, s] of a.state) {
    const e: Record<string, unknown> = {};
    if (spec.hasStep) e.step = s.step;
    for (const d of spec.slots) e[d.key] = s.slots.get(d.torch)!;
    state[i] = e;
  }
  opt.loadStateDict({ state, paramGroups: groups.map((g) => ({ params: g.params, ...g.options })) });
  return opt;
}

/**
 * Merges the N shards of a sharded checkpoint (its manifest, or the folder holding it) into one
 * ordinary checkpoint file at `out` (docs/checkpoints.md). Not collective: any one process runs it.
 */
export function mergeShardedCheckpoint(source: string, out: string, options: { prefix?: string } = {}): { optimizer: string; worldSize: number; includesParams: boolean } {
  const mp = manifestPath(source, options.prefix ?? 'optimizer');
  const m = readManifest(mp);
  const dir = path.dirname(mp);
  const shards = m.files.map((_, r) => readListed(dir, m, r, null));
  const a = assemble(shards);
  const opt = asOptimizer(a);
  const bytes = serializeCheckpoint(opt as never, { params: a.includesParams, metadata: a.user });
  writeFileAtomicSync(out, bytes, 'cannot save merged checkpoint');
  return { optimizer: a.optimizer, worldSize: m.world_size, includesParams: a.includesParams };
}

/**
 * Loads a checkpoint into a sharded optimizer (collective: every rank loads, and either every rank
 * changed or none did). `source`:
 * - a sharded checkpoint (its manifest or folder) saved by the same world size and partition:
 *   every rank reads its own shard;
 * - one saved by another world size or partition: refused, unless `{ reshard: true }` (every rank
 *   then reads the shards and keeps its pieces);
 * - an ordinary checkpoint file (`saveCheckpoint`, or a merge): every rank reads it and keeps its
 *   pieces, for any world size.
 */
export function loadShardedCheckpoint(source: string, opt: AnySharded, options: LoadShardedOptions = {}): { metadata: Record<string, string>; resharded: boolean } {
  if (typeof source !== 'string' || source === '') throw invalid(`source must be a path, got ${describe(source)}`);
  const at = { step: opt.stepCount, phase: 'checkpoint' };
  let local: Error | null = null;
  let apply: (() => void) | null = null;
  let result = { metadata: {} as Record<string, string>, resharded: false };
  let gather = false;
  try {
    ({ apply, result, gather } = prepareLoad(source, opt, options));
  } catch (e) {
    local = e as Error;
  }
  const failed = agree(opt.collective, local === null, at);
  if (failed.length > 0) {
    if (local !== null) throw local;
    throw new CollectiveError('ERR_ADAMP_COLLECTIVE', `the checkpoint '${source}' was not loaded on any rank: ${rankList(failed)} could not load ${failed.length > 1 ? 'their parts' : 'its part'} (see the error there)`,
      { rank: opt.rank, step: at.step, phase: at.phase, missing: failed });
  }
  apply!();
  // a rank's own shard holds its piece of the params only: the others come from their ranks
  if (options.params && !result.resharded && gather) opt.gatherParams();
  return result;
}

function prepareLoad(source: string, opt: AnySharded, options: LoadShardedOptions): { apply: () => void; result: { metadata: Record<string, string>; resharded: boolean }; gather: boolean } {
  const spec = opt.spec;
  const params = opt.paramList();
  let isShardSet = false;
  try { isShardSet = fs.statSync(source).isDirectory() || source.endsWith('.json'); } catch { isShardSet = source.endsWith('.json'); }
  if (!isShardSet) {
    // an ordinary checkpoint: read it whole with lib/checkpoint (every check), keep this rank's pieces
    const temp = asOptimizerFor(opt);
    const info = deserializeCheckpoint(temp as never, readFileSyncChecked(source, 'cannot read checkpoint'), { params: options.params, source: `checkpoint '${source}'` });
    const sd = (temp as unknown as { stateDict(): unknown }).stateDict();
    const tempParams = (temp as unknown as { paramGroups: Array<{ params: Param[] }> }).paramGroups.flatMap((g) => g.params);
    return {
      apply: () => {
        opt.loadStateDict(sd as never);
        if (options.params) params.forEach((p, i) => p.data.set(tempParams[i].data));
      },
      result: { metadata: info.metadata, resharded: false },
      gather: false,
    };
  }
  const mp = manifestPath(source, options.prefix ?? 'optimizer');
  const m = readManifest(mp);
  const dir = path.dirname(mp);
  if (m.optimizer !== spec.name) throw invalid(`the sharded checkpoint '${mp}' was saved from ${m.optimizer}, this optimizer is ${spec.name}`);
  const samePlan = m.world_size === opt.size && m.partition === opt.partitioning && m.backend === opt.backend;
  let mineOnly: ReadShard | null = null;
  if (samePlan) {
    mineOnly = readListed(dir, m, opt.rank, spec);
    if (mineOnly.shard.planDigest !== opt.plan.digest) mineOnly = null; // same size, other shapes or units
  }
  if (mineOnly === null && !options.reshard) {
    throw invalid(`the sharded checkpoint '${mp}' was saved by ${m.world_size} rank${m.world_size > 1 ? 's' : ''} with the '${m.partition}' partition on the '${m.backend}' backend; `
      + `this optimizer runs on ${opt.size} rank${opt.size > 1 ? 's' : ''} with '${opt.partitioning}' on '${opt.backend}'${m.world_size === opt.size && m.partition === opt.partitioning && m.backend === opt.backend ? ' but its params differ' : ''}. `
      + `Load it with { reshard: true } (every rank reads the shards it needs), or merge it into one file first (mergeShardedCheckpoint)`);
  }
  const checkFits = (s: { groups: Array<Record<string, unknown>>; shapes: number[][] }, src: string) => {
    if (s.shapes.length !== params.length) throw invalid(`${src} holds ${s.shapes.length} params, this optimizer has ${params.length}`);
    s.shapes.forEach((sh, i) => {
      if (JSON.stringify(sh) !== JSON.stringify(Array.from(params[i].shape))) throw invalid(`${src}: param ${i} has shape [${sh.join(',')}] there, [${params[i].shape.join(',')}] here`);
    });
  };
  if (mineOnly !== null) {
    const s = mineOnly;
    checkFits(s, s.source);
    if (options.params && !s.includesParams) throw invalid(`${s.source} holds no params (saved without { params: true })`);
    const groups = toCamelGroups(spec, s.groups, s.source);
    const state = new Map<number, { step: number; slots: Float32Array[] }>();
    for (const [i, step] of s.steps) {
      const pc = opt.pieceOf(i);
      const m2 = s.slots.get(i);
      state.set(i, { step, slots: spec.slots.map((d) => (pc && m2 ? m2.get(d.torch)!.slice() : new Float32Array(0))) });
    }
    return {
      apply: () => {
        opt.replaceShard(state, groups);
        if (options.params) for (const [i, b] of s.shard.pieces.map((p) => [p[0], p[1]] as const)) params[i].data.set(s.params.get(i)!, b);
      },
      result: { metadata: s.user, resharded: false },
      gather: true,
    };
  }
  // reshard: read every shard, assemble, keep this rank's pieces
  const shards = m.files.map((_, r) => readListed(dir, m, r, spec));
  const a = assemble(shards);
  checkFits(a, `the sharded checkpoint '${mp}'`);
  if (options.params && !a.includesParams) throw invalid(`the sharded checkpoint '${mp}' holds no params (saved without { params: true })`);
  const groups = toCamelGroups(spec, a.groups, mp);
  const state = new Map<number, { step: number; slots: Float32Array[] }>();
  for (const [i, s] of a.state) {
    const pc = opt.pieceOf(i);
    state.set(i, { step: s.step, slots: spec.slots.map((d) => (pc ? s.slots.get(d.torch)!.slice(pc.begin, pc.end) : new Float32Array(0))) });
  }
  return {
    apply: () => {
      opt.replaceShard(state, groups);
      if (options.params) params.forEach((p, i) => p.data.set(a.params![i]));
    },
    result: { metadata: a.user, resharded: true },
    gather: false,
  };
}

function toCamelGroups(spec: AnySpec, groups: Array<Record<string, unknown>>, src: string): Array<Record<string, unknown>> {
  const torchToKey = new Map(spec.options.map((o) => [o.torch, o.key]));
  return groups.map((g) => {
    const out: Record<string, unknown> = { params: g.params };
    for (const [k, v] of Object.entries(g)) {
      if (k === 'params') continue;
      const key = torchToKey.get(k);
      if (key === undefined) throw new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `${src}: param group option '${k}' is not one of ${spec.name}'s`);
      out[key] = v;
    }
    return out;
  });
}

/** A single-process optimizer with the sharded one's groups and shapes (fresh params), to read an ordinary checkpoint into. */
function asOptimizerFor(opt: AnySharded) {
  const spec = opt.spec;
  const groups = opt.paramGroups.map((g: Record<string, unknown> & { params: Param[] }) => {
    const { params: ps, ...o } = g;
    return { ...o, params: ps.map((p) => ({ shape: p.shape, data: new Float32Array(p.data.length), grad: null, ...(p.name !== undefined ? { name: p.name } : {}) })) };
  });
  const cls = classOf(spec) as unknown as new (p: unknown, o: unknown, c: unknown) => unknown;
  return new cls(groups, opt.defaults, { backend: 'js' });
}
