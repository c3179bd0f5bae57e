/**
 * Optimizer checkpoints as safetensors files, with names a PyTorch user maps one to one onto
 * the official optimizer's `state_dict()`:
 *
 *   tensor `state.{i}.<slot>`      (F32, the param's shape)  <-> state_dict['state'][i]['<slot>'], one per
 *                                  state slot of the optimizer's spec, by its PyTorch name (AdamP and
 *                                  AdamW: exp_avg, exp_avg_sq; SGDP: momentum; SGD: momentum_buffer)
 *   tensor `state.{i}.step`        (I64, shape [])           <-> state_dict['state'][i]['step'] (AdamP, AdamW)
 *   tensor `params.{i}`            (F32, optional)           <-> the i-th param of the optimizer
 *   metadata `param_groups`        (JSON, snake_case names)  <-> state_dict['param_groups']
 *
 * `i` is the param's index over all groups, in order (PyTorch's numbering). Writes are atomic;
 * loads are validated whole before anything changes.
 */
import * as fs from 'fs';
import { createHash } from 'crypto';
import { invalid } from '../errors';
import { describe } from '../core/describe';
import { shapeOf } from '../validate';
import { DeviceTensor } from '../device/tensor';
import { Optimizer } from '../optimizer';
import type { AnySpec } from '../optim/spec';
import type { AnyParam } from '../types';
import { encodeSafetensors, fileBytes, parseSafetensors, readF32, readI64, type TensorRecord, type TensorToWrite } from './safetensors';
import { writeFileAtomic, writeFileAtomicSync } from './atomic';

export { encodeSafetensors, parseSafetensors } from './safetensors';
export type { ParsedSafetensors, SafetensorsDtype, TensorRecord, TensorToWrite } from './safetensors';
export { writeFileAtomic, writeFileAtomicSync } from './atomic';

/** The value of the `format` metadata key of files this version writes. */
export const CHECKPOINT_FORMAT = 'adamp-optimizer/1';

/** Metadata keys the checkpoint itself uses; user metadata may not use them. */
export const RESERVED_METADATA_KEYS = [
  'format', 'optimizer', 'param_groups', 'param_shapes', 'param_names', 'includes_params', 'data_sha256',
] as const;

/** An optimizer a checkpoint can hold: any registered optimizer. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type CheckpointOptimizer = Optimizer<any, any, AnyParam>;

/** A param's values on the host (device params are downloaded). */
function hostData(p: AnyParam): Float32Array {
  return p.data instanceof DeviceTensor ? p.data.toHost() : p.data;
}

function setData(p: AnyParam, values: Float32Array): void {
  if (p.data instanceof DeviceTensor) p.data.copyFromHost(values);
  else p.data.set(values);
}

export interface SaveCheckpointOptions {
  /** Also store each param's weights as `params.{i}`. Default `false` (optimizer state only). */
  params?: boolean;
  /** Extra string metadata saved with the file (epoch, model id...). Reserved keys are refused. */
  metadata?: Record<string, string>;
}

export interface LoadCheckpointOptions {
  /** Also restore the params' weights from `params.{i}` (the file must hold them). Default `false`. */
  params?: boolean;
}

/** What a load found in the file. */
export interface CheckpointInfo {
  /** The optimizer's class name (`'AdamP'`). */
  optimizer: string;
  /** Whether the file holds the params' weights. */
  includesParams: boolean;
  /** The user metadata saved with the file (reserved keys removed). */
  metadata: Record<string, string>;
}

/** The spec of an optimizer instance (adamp's own; the TF.js adapter's optimizers hand over their core optimizer). */
function specOfOptimizer(optimizer: CheckpointOptimizer): AnySpec {
  const o = optimizer as unknown as { spec?: AnySpec; paramGroups?: unknown; stateDict?: unknown; adampCore?: () => CheckpointOptimizer };
  if (o !== null && typeof o === 'object' && typeof o.adampCore === 'function') return specOfOptimizer(o.adampCore());
  if (!(optimizer instanceof Optimizer) || o.spec === undefined) {
    throw invalid(`optimizer must be an optimizer from adamp (AdamP, SGDP, AdamW, SGD, or one of adamp/tfjs), got ${describe(optimizer)}`);
  }
  return o.spec;
}

/** The core optimizer behind `optimizer` (itself, or the TF.js adapter's). */
function coreOf(optimizer: CheckpointOptimizer): CheckpointOptimizer {
  const o = optimizer as unknown as { adampCore?: () => CheckpointOptimizer };
  return typeof o.adampCore === 'function' ? o.adampCore() : optimizer;
}

/** camelCase option -> PyTorch name, for a spec. */
function torchNames(spec: AnySpec): Record<string, string> {
  const out: Record<string, string> = {};
  for (const o of spec.options) out[o.key] = o.torch;
  return out;
}

/** The state tensors' PyTorch names of a spec, in order: `step` first when it has one, then its slots. */
function stateKeys(spec: AnySpec): string[] {
  return [...(spec.hasStep ? ['step'] : []), ...spec.slots.map((d) => d.torch)];
}

interface Groupish {
  params: AnyParam[];
  [k: string]: unknown;
}

function flatParams(optimizer: CheckpointOptimizer): AnyParam[] {
  const out: AnyParam[] = [];
  for (const g of optimizer.paramGroups as unknown as Groupish[]) out.push(...g.params);
  return out;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * The checkpoint of an optimizer as the bytes of a safetensors file (nothing is written).
 * Use `saveCheckpoint` to write it to disk atomically.
 */
export function serializeCheckpoint(optimizer: CheckpointOptimizer, options: SaveCheckpointOptions = {}): Buffer {
  const spec = specOfOptimizer(optimizer);
  optimizer = coreOf(optimizer);
  const toTorch = torchNames(spec);
  const user = options.metadata ?? {};
  if (user === null || typeof user !== 'object') throw invalid(`options.metadata must be an object of strings, got ${describe(user)}`);
  for (const [k, v] of Object.entries(user)) {
    if ((RESERVED_METADATA_KEYS as readonly string[]).includes(k)) throw invalid(`options.metadata.${k} is reserved by the checkpoint format; choose another key`);
    if (typeof v !== 'string') throw invalid(`options.metadata.${k} must be a string, got ${describe(v)}`);
  }
  // stateDict() first: it flushes engines that keep copies elsewhere, so params read below are current.
  const sd = optimizer.stateDict() as { state: Record<number, Record<string, unknown>>; paramGroups: Array<Record<string, unknown>> };
  const params = flatParams(optimizer);
  const tensors: TensorToWrite[] = [];
  if (options.params) {
    params.forEach((p, i) => tensors.push({ name: `params.${i}`, dtype: 'F32', shape: shapeOf(p), data: hostData(p) }));
  }
  for (let i = 0; i < params.length; i++) {
    const s = sd.state[i];
    if (s === undefined) continue;
    const shape = shapeOf(params[i]);
    if (spec.hasStep) tensors.push({ name: `state.${i}.step`, dtype: 'I64', shape: [], data: BigInt64Array.of(BigInt(s.step as number)) });
    for (const d of spec.slots) tensors.push({ name: `state.${i}.${d.torch}`, dtype: 'F32', shape, data: s[d.key] as Float32Array });
  }
  const groups = sd.paramGroups.map((g) => {
    const out: Record<string, unknown> = { params: g.params };
    for (const [k, v] of Object.entries(g)) if (k !== 'params') out[toTorch[k] ?? k] = v;
    return out;
  });
  // The digest covers the data section, which encodeSafetensors lays out in `tensors` order.
  const hash = createHash('sha256');
  for (const t of tensors) hash.update(fileBytes(t));
  const metadata: Record<string, string> = {
    ...user,
    format: CHECKPOINT_FORMAT,
    optimizer: spec.name,
    param_groups: JSON.stringify(groups),
    param_shapes: JSON.stringify(params.map((p) => Array.from(shapeOf(p)))),
    param_names: JSON.stringify(params.map((p) => p.name ?? null)),
    includes_params: options.params ? 'true' : 'false',
    data_sha256: hash.digest('hex'),
  };
  return encodeSafetensors(tensors, metadata);
}

/** Saves the optimizer's checkpoint to `path` atomically (temporary file, fsync, rename, fsync of the directory). */
export async function saveCheckpoint(path: string, optimizer: CheckpointOptimizer, options: SaveCheckpointOptions = {}): Promise<void> {
  await writeFileAtomic(path, serializeCheckpoint(optimizer, options));
}

/** Synchronous `saveCheckpoint`. */
export function saveCheckpointSync(path: string, optimizer: CheckpointOptimizer, options: SaveCheckpointOptions = {}): void {
  writeFileAtomicSync(path, serializeCheckpoint(optimizer, options));
}

/** Loads a checkpoint file into the optimizer (see `deserializeCheckpoint`). */
export async function loadCheckpoint(path: string, optimizer: CheckpointOptimizer, options: LoadCheckpointOptions = {}): Promise<CheckpointInfo> {
  return deserializeCheckpoint(optimizer, await fs.promises.readFile(path), { ...options, source: `checkpoint '${path}'` });
}

/** Synchronous `loadCheckpoint`. */
export function loadCheckpointSync(path: string, optimizer: CheckpointOptimizer, options: LoadCheckpointOptions = {}): CheckpointInfo {
  return deserializeCheckpoint(optimizer, fs.readFileSync(path), { ...options, source: `checkpoint '${path}'` });
}

/**
 * Restores hyperparameters and state (and, with `params: true`, the weights) from checkpoint
 * bytes. The file is checked whole against the optimizer first: format, digest, optimizer type,
 * groups, every tensor's name, dtype and shape. On any mismatch it throws
 * `ERR_ADAMP_INVALID_ARGUMENT` and nothing changes.
 */
export function deserializeCheckpoint(
  optimizer: CheckpointOptimizer, bytes: Uint8Array, options: LoadCheckpointOptions & { source?: string } = {},
): CheckpointInfo {
  const source = options.source ?? 'checkpoint';
  const spec = specOfOptimizer(optimizer);
  optimizer = coreOf(optimizer);
  const kind = spec.name;
  const toTorch = torchNames(spec);
  const file = parseSafetensors(bytes, source);
  const meta = file.metadata;
  const bad = (why: string) => invalid(`${source} does not fit this ${kind} optimizer: ${why}`);

  if (meta.format !== CHECKPOINT_FORMAT) {
    throw invalid(`${source} is not an adamp optimizer checkpoint: metadata 'format' is ${JSON.stringify(meta.format)}, expected '${CHECKPOINT_FORMAT}'`);
  }
  if (meta.data_sha256 !== undefined) {
    if (sha256Hex(bytes.subarray(bytes.length - file.dataLength)) !== meta.data_sha256) throw invalid(`${source} is corrupt: the SHA-256 of its data does not match the one recorded when it was saved`);
  }
  if (meta.optimizer !== kind) throw bad(`it was saved from ${JSON.stringify(meta.optimizer)}`);

  const params = flatParams(optimizer);
  const n = params.length;
  const shapeText = (i: number) => JSON.stringify(Array.from(shapeOf(params[i])));

  if (meta.param_shapes !== undefined) {
    const shapes = parseJson(meta.param_shapes, 'param_shapes', source) as unknown;
    if (!Array.isArray(shapes) || shapes.length !== n) {
      throw bad(`it holds ${Array.isArray(shapes) ? shapes.length : '?'} params, the optimizer has ${n}`);
    }
    shapes.forEach((s, i) => {
      if (JSON.stringify(s) !== shapeText(i)) throw bad(`param ${i}${nameOf(params[i])} has shape ${shapeText(i)} here, ${JSON.stringify(s)} in the file`);
    });
  }

  // Groups: PyTorch names back to camelCase; every option of this optimizer must be present.
  const rawGroups = parseJson(meta.param_groups, 'param_groups', source);
  if (!Array.isArray(rawGroups)) throw invalid(`${source}: metadata 'param_groups' must be a JSON array`);
  const mine = optimizer.paramGroups as unknown as Groupish[];
  if (rawGroups.length !== mine.length) throw bad(`it has ${rawGroups.length} param groups, the optimizer has ${mine.length}`);
  let first = 0;
  const paramGroups = rawGroups.map((g: unknown, gi: number) => {
    if (g === null || typeof g !== 'object') throw invalid(`${source}: param_groups[${gi}] is not an object`);
    const src = g as Record<string, unknown>;
    // Indices run in order over the groups, as PyTorch numbers them (and as tensors are named here).
    const expected = mine[gi].params.map((_, j) => first + j);
    first += expected.length;
    if (JSON.stringify(src.params) !== JSON.stringify(expected)) {
      throw bad(`param_groups[${gi}].params is ${JSON.stringify(src.params)}, the optimizer's group ${gi} holds params ${JSON.stringify(expected)}`);
    }
    // Keys this optimizer does not know (a scheduler's `initial_lr`, torch's `foreach`...) are ignored, as PyTorch keeps them aside.
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(mine[gi])) {
      const torchKey = key === 'params' ? key : toTorch[key] ?? key;
      if (!(torchKey in src)) throw bad(`param_groups[${gi}] lacks '${torchKey}'`);
      out[key] = src[torchKey];
    }
    return out;
  });

  // Tensors: every name known, every dtype and shape right, no state half present.
  const wanted = stateKeys(spec);
  const perParam = new Map<number, Map<string, TensorRecord>>();
  const weights = new Map<number, TensorRecord>();
  for (const t of file.tensors) {
    const ms = /^state\.(0|[1-9]\d*)\.([a-z_]+)$/.exec(t.name);
    const mp = /^params\.(0|[1-9]\d*)$/.exec(t.name);
    const i = Number(ms ? ms[1] : mp ? mp[1] : NaN);
    if (!(i >= 0 && i < n)) {
      throw bad(ms || mp ? `tensor '${t.name}' refers to param ${i}, the optimizer has ${n} params` : `unexpected tensor '${t.name}'`);
    }
    if (mp) {
      checkF32(t, params[i], bad);
      weights.set(i, t);
      continue;
    }
    const key = ms![2];
    if (!wanted.includes(key)) throw bad(`unexpected tensor '${t.name}' (${kind} state holds ${wanted.join(', ')})`);
    if (key === 'step') {
      if (t.shape.length !== 0 || (t.dtype !== 'I64' && t.dtype !== 'F32')) {
        throw bad(`tensor '${t.name}' must be an I64 scalar (shape []), got ${t.dtype} [${t.shape.join(',')}]`);
      }
    } else {
      checkF32(t, params[i], bad);
    }
    if (!perParam.has(i)) perParam.set(i, new Map());
    perParam.get(i)!.set(key, t);
  }
  const state: Record<number, Record<string, unknown>> = {};
  for (const [i, recs] of perParam) {
    for (const key of wanted) if (!recs.has(key)) throw bad(`state of param ${i}${nameOf(params[i])} lacks tensor 'state.${i}.${key}'`);
    const entry: Record<string, unknown> = {};
    if (spec.hasStep) {
      const st = recs.get('step')!;
      const step = st.dtype === 'I64' ? readI64(st)[0] : BigInt(Math.trunc(readF32(st)[0]));
      if (step < 0n || step > BigInt(Number.MAX_SAFE_INTEGER) || (st.dtype === 'F32' && !Number.isInteger(readF32(st)[0]))) {
        throw bad(`tensor 'state.${i}.step' must hold a non-negative integer`);
      }
      entry.step = Number(step);
    }
    for (const d of spec.slots) entry[d.key] = readF32(recs.get(d.torch)!);
    state[i] = entry;
  }
  const includesParams = weights.size > 0;
  if (options.params) {
    if (!includesParams) throw invalid(`${source} holds no params (it was saved without { params: true }); load it without { params: true }`);
    for (let i = 0; i < n; i++) if (!weights.has(i)) throw bad(`tensor 'params.${i}' is missing`);
  }

  // Everything checked. Params are written first so that loadStateDict's engine invalidation
  // (backends that keep copies, e.g. on a GPU) covers them; loadStateDict validates again and
  // throws before changing anything, and then the params are put back.
  const backup = options.params ? params.map((p) => hostData(p).slice()) : null;
  if (options.params) for (let i = 0; i < n; i++) setData(params[i], readF32(weights.get(i)!));
  try {
    (optimizer as { loadStateDict(sd: unknown): void }).loadStateDict({ state, paramGroups });
  } catch (e) {
    if (backup) for (let i = 0; i < n; i++) setData(params[i], backup[i]);
    const err = e as { code?: string; message: string };
    throw err.code === 'ERR_ADAMP_INVALID_ARGUMENT' ? bad(err.message) : e;
  }
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta)) if (!(RESERVED_METADATA_KEYS as readonly string[]).includes(k)) metadata[k] = v;
  return { optimizer: kind, includesParams, metadata };
}

function checkF32(t: TensorRecord, p: AnyParam, bad: (why: string) => Error): void {
  if (t.dtype !== 'F32') throw bad(`tensor '${t.name}' has dtype ${t.dtype}, expected F32`);
  if (JSON.stringify(t.shape) !== JSON.stringify(Array.from(shapeOf(p)))) {
    throw bad(`tensor '${t.name}' has shape [${t.shape.join(',')}], the param${nameOf(p)} has [${shapeOf(p).join(',')}]`);
  }
}

function nameOf(p: AnyParam): string {
  return p.name ? ` ('${p.name}')` : '';
}

function parseJson(text: string | undefined, key: string, source: string): unknown {
  if (text === undefined) throw invalid(`${source} lacks the metadata key '${key}'`);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalid(`${source}: metadata '${key}' is not valid JSON (${(e as Error).message})`);
  }
}
