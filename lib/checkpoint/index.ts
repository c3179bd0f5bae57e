/**
 * Optimizer checkpoints as safetensors files, with names a PyTorch user maps one to one onto
 * the official optimizer's `state_dict()`:
 *
 *   tensor `state.{i}.<slot>`      (F32, the param's shape)  <-> state_dict['state'][i]['<slot>'], one per
 *                                  state slot of the optimizer's spec, by its PyTorch name (AdamP and
 *                                  AdamW: exp_avg, exp_avg_sq; SGDP: momentum; SGD: momentum_buffer)
 *   tensor `state.{i}.step`        (I64, shape [])           <-> state_dict['state'][i]['step'] (AdamP, AdamW)
 *   tensor `params.{i}`            (F32, BF16 or F16, optional) <-> the i-th param of the optimizer, in its dtype
 *   tensor `state.{i}.master`      (F32, the param's shape)  the float32 master weights of a 16-bit param (masterWeights)
 *   metadata `param_dtypes`        (JSON)                    each param's dtype ('float32', 'bfloat16', 'float16');
 *                                  absent in files from before 16-bit params: all float32
 *   metadata `param_groups`        (JSON, snake_case names)  <-> state_dict['param_groups']
 *   metadata `checkpoint_sha256`   (hex)                     a SHA-256 of the whole file (integrity.ts)
 *
 * `i` is the param's index over all groups, in order (PyTorch's numbering). Writes are atomic;
 * loads are validated whole before anything changes. docs/checkpoints.md is the user's guide.
 */
import { AdampError, invalid } from '../errors';
import { describe } from '../core/describe';
import { dtypeOf, shapeOf } from '../validate';
import { float32ToHalf, halfToFloat32, type StorageDtype } from '../core/half';
import { DeviceTensor } from '../device/tensor';
import { Optimizer } from '../optimizer';
import { isPlainObject, rejectUnknown, resolveOptions } from '../optim/options';
import { SPECS } from '../optim/registry';
import type { AnySpec } from '../optim/spec';
import type { AnyParam } from '../types';
import { encodeSafetensors, parseSafetensors, readF32, readI64, readU16, type ParsedSafetensors, type TensorRecord, type TensorToWrite } from './safetensors';
import { writeFileAtomic, writeFileAtomicSync } from './atomic';
import { DIGEST_KEY, seal, sha256Hex, verify } from './integrity';
import { checkPath, readFileChecked, readFileSyncChecked } from './io';

export { encodeSafetensors, parseSafetensors } from './safetensors';
export type { ParsedSafetensors, SafetensorsDtype, TensorRecord, TensorToWrite } from './safetensors';
export { writeFileAtomic, writeFileAtomicSync } from './atomic';
export { DIGEST_KEY } from './integrity';
export type { CheckpointIoError } from './io';

/** The value of the `format` metadata key of files this version writes. */
export const CHECKPOINT_FORMAT = 'adamp-optimizer/2';

/**
 * The format adamp 0.1 wrote: its digest (`data_sha256`) covers the data section only, so the
 * header is unprotected. Such files load with `{ trust: 'foreign' }` (the data digest is still
 * checked); saving them again writes format 2.
 */
export const CHECKPOINT_FORMAT_1 = 'adamp-optimizer/1';

/** Metadata keys the checkpoint itself uses; user metadata may not use them. */
export const RESERVED_METADATA_KEYS = [
  'format', 'optimizer', 'param_groups', 'param_shapes', 'param_names', 'param_dtypes', 'includes_params', DIGEST_KEY, 'data_sha256',
] as const;

/** An optimizer a checkpoint can hold: any registered optimizer. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type CheckpointOptimizer = Optimizer<any, any, AnyParam>;

/** A param's values on the host in its dtype (device params are downloaded; 16-bit params as their bits). */
function hostData(p: AnyParam): Float32Array | Uint16Array {
  if (p.data instanceof DeviceTensor) return p.data.toHost();
  return dtypeOf(p) === 'float32' ? p.data : new Uint16Array(p.data.buffer, p.data.byteOffset, p.data.byteLength / 2);
}

function setData(p: AnyParam, values: Float32Array | Uint16Array): void {
  if (p.data instanceof DeviceTensor) p.data.copyFromHost(values as Float32Array);
  else if (values instanceof Uint16Array) new Uint16Array(p.data.buffer, p.data.byteOffset, p.data.byteLength / 2).set(values);
  else (p.data as Float32Array).set(values);
}

/** The safetensors dtype of a param's weights. */
const FILE_DTYPE: Record<StorageDtype, 'F32' | 'BF16' | 'F16'> = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' };

export interface SaveCheckpointOptions {
  /** Also store each param's weights as `params.{i}`. Default `false` (optimizer state only). */
  params?: boolean;
  /** Extra string metadata saved with the file (epoch, model id...). Reserved keys are refused. */
  metadata?: Record<string, string>;
}

/**
 * How far a load trusts the file:
 * - `'verified'` (the default): the file must carry adamp's digest (`checkpoint_sha256`, a
 *   SHA-256 of the whole file), and it must match. Every file adamp writes has it, so a file
 *   without it was altered or written by another program.
 * - `'foreign'`: a file without the digest is accepted (written by PyTorch or another program,
 *   or by adamp 0.1, format 1): its structure, names, dtypes, shapes, step counts and
 *   hyperparameters are still checked, but nothing proves its bytes are the ones its writer
 *   wrote. A digest the file does carry is still checked.
 */
export type CheckpointTrust = 'verified' | 'foreign';

export interface LoadCheckpointOptions {
  /** Also restore the params' weights from `params.{i}` (the file must hold them). Default `false`. */
  params?: boolean;
  /** `'verified'` (default) or `'foreign'`: see `CheckpointTrust`. */
  trust?: CheckpointTrust;
  /**
   * Convert, instead of refusing, a file saved for params of other dtypes (or with/without master
   * weights where this optimizer keeps the other): the state slots are float32 and carry over
   * unchanged; the float32 weights are the file's master weights, else its params (widened
   * exactly); a 16-bit param with master weights gets them as its master (else its own values
   * widened, as at a first step), and `{ params: true }` writes them rounded to nearest even into
   * 16-bit params. Default `false`: a dtype mismatch throws ERR_ADAMP_INVALID_ARGUMENT
   * (docs/mixed-precision.md#checkpoints).
   */
  convertDtypes?: boolean;
}

/** What a load found in the file. */
export interface CheckpointInfo {
  /** The optimizer's class name (`'AdamP'`). */
  optimizer: string;
  /** Whether the file holds the params' weights. */
  includesParams: boolean;
  /** The user metadata saved with the file (reserved keys removed). */
  metadata: Record<string, string>;
  /** Whether the file's digest covered it whole and matched (false: a foreign file without it). */
  verified: boolean;
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

/** The state tensors' PyTorch names of a spec, in the order the writer lays them out: `step` first when it has one, then its slots. */
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

function checkOptions(options: unknown, known: readonly string[], where: string): Record<string, unknown> {
  if (options === undefined) return {};
  if (!isPlainObject(options)) throw invalid(`${where} must be an object, got ${describe(options)}`);
  rejectUnknown(options, known, where, 'an option', false);
  if (options.params !== undefined && typeof options.params !== 'boolean') throw invalid(`${where}.params must be a boolean, got ${describe(options.params)}`);
  return options;
}

/**
 * The checkpoint of an optimizer as the bytes of a safetensors file (nothing is written).
 * Use `saveCheckpoint` to write it to disk atomically.
 */
export function serializeCheckpoint(optimizer: CheckpointOptimizer, options: SaveCheckpointOptions = {}): Buffer {
  const spec = specOfOptimizer(optimizer);
  optimizer = coreOf(optimizer);
  options = checkOptions(options, ['params', 'metadata'], 'options') as SaveCheckpointOptions;
  const toTorch = torchNames(spec);
  const user = options.metadata ?? {};
  if (!isPlainObject(user)) throw invalid(`options.metadata must be an object of strings, got ${describe(user)}`);
  for (const [k, v] of Object.entries(user)) {
    if ((RESERVED_METADATA_KEYS as readonly string[]).includes(k)) throw invalid(`options.metadata.${k} is reserved by the checkpoint format; choose another key`);
    if (typeof v !== 'string') throw invalid(`options.metadata.${k} must be a string, got ${describe(v)}`);
  }
  // stateDict() first: it flushes engines that keep copies elsewhere, so params read below are current.
  const sd = optimizer.stateDict() as { state: Record<number, Record<string, unknown>>; paramGroups: Array<Record<string, unknown>> };
  const params = flatParams(optimizer);
  // The canonical order, which loads check: params.0..n-1, then each param's state in index order, step first, then the spec's slots.
  const tensors: TensorToWrite[] = [];
  if (options.params) {
    params.forEach((p, i) => tensors.push({ name: `params.${i}`, dtype: FILE_DTYPE[dtypeOf(p)], shape: shapeOf(p), data: hostData(p) }));
  }
  for (let i = 0; i < params.length; i++) {
    const s = sd.state[i];
    if (s === undefined) continue;
    const shape = shapeOf(params[i]);
    if (spec.hasStep) tensors.push({ name: `state.${i}.step`, dtype: 'I64', shape: [], data: BigInt64Array.of(BigInt(s.step as number)) });
    for (const d of spec.slots) tensors.push({ name: `state.${i}.${d.torch}`, dtype: 'F32', shape, data: s[d.key] as Float32Array });
    if (s.master !== undefined) tensors.push({ name: `state.${i}.master`, dtype: 'F32', shape, data: s.master as Float32Array });
  }
  const groups = sd.paramGroups.map((g) => {
    const out: Record<string, unknown> = { params: g.params };
    for (const [k, v] of Object.entries(g)) if (k !== 'params') out[toTorch[k] ?? k] = v;
    return out;
  });
  const metadata: Record<string, string> = {
    ...user,
    format: CHECKPOINT_FORMAT,
    optimizer: spec.name,
    param_groups: JSON.stringify(groups),
    param_shapes: JSON.stringify(params.map((p) => Array.from(shapeOf(p)))),
    param_names: JSON.stringify(params.map((p) => p.name ?? null)),
    param_dtypes: JSON.stringify(params.map(dtypeOf)),
    includes_params: options.params ? 'true' : 'false',
    [DIGEST_KEY]: '0'.repeat(64), // the placeholder seal() overwrites with the file's digest
  };
  const bytes = encodeSafetensors(tensors, metadata);
  seal(bytes, Number(bytes.readBigUInt64LE(0)));
  return bytes;
}

/**
 * Saves the optimizer's checkpoint to `path` atomically (temporary file, fsync, rename, fsync of
 * the folder), creating the folder when it is missing. File-system failures throw `ERR_ADAMP_IO`
 * naming `path`, and leave any previous file as it was.
 */
export async function saveCheckpoint(path: string, optimizer: CheckpointOptimizer, options: SaveCheckpointOptions = {}): Promise<void> {
  checkPath(path);
  await writeFileAtomic(path, serializeCheckpoint(optimizer, options), 'cannot save checkpoint');
}

/** Synchronous `saveCheckpoint`. */
export function saveCheckpointSync(path: string, optimizer: CheckpointOptimizer, options: SaveCheckpointOptions = {}): void {
  checkPath(path);
  writeFileAtomicSync(path, serializeCheckpoint(optimizer, options), 'cannot save checkpoint');
}

/**
 * Loads a checkpoint file into the optimizer (see `deserializeCheckpoint`). A file that cannot be
 * read throws `ERR_ADAMP_IO` naming `path`.
 */
export async function loadCheckpoint(path: string, optimizer: CheckpointOptimizer, options: LoadCheckpointOptions = {}): Promise<CheckpointInfo> {
  checkPath(path);
  specOfOptimizer(optimizer);
  checkLoadOptions(options, false);
  return deserializeCheckpoint(optimizer, await readFileChecked(path, 'cannot read checkpoint'), { ...options, source: `checkpoint '${path}'` });
}

/** Synchronous `loadCheckpoint`. */
export function loadCheckpointSync(path: string, optimizer: CheckpointOptimizer, options: LoadCheckpointOptions = {}): CheckpointInfo {
  checkPath(path);
  specOfOptimizer(optimizer);
  checkLoadOptions(options, false);
  return deserializeCheckpoint(optimizer, readFileSyncChecked(path, 'cannot read checkpoint'), { ...options, source: `checkpoint '${path}'` });
}

function checkLoadOptions(options: unknown, withSource: boolean): LoadCheckpointOptions & { source?: string } {
  const o = checkOptions(options, withSource ? ['params', 'trust', 'convertDtypes', 'source'] : ['params', 'trust', 'convertDtypes'], 'options');
  if (o.convertDtypes !== undefined && typeof o.convertDtypes !== 'boolean') throw invalid(`options.convertDtypes must be a boolean, got ${describe(o.convertDtypes)}`);
  if (o.trust !== undefined && o.trust !== 'verified' && o.trust !== 'foreign') throw invalid(`options.trust must be 'verified' or 'foreign', got ${describe(o.trust)}`);
  if (o.source !== undefined && typeof o.source !== 'string') throw invalid(`options.source must be a string, got ${describe(o.source)}`);
  return o as LoadCheckpointOptions & { source?: string };
}

/**
 * Restores hyperparameters and state (and, with `params: true`, the weights) from checkpoint
 * bytes. The file is checked whole first, and on any failure nothing changes:
 * - `ERR_ADAMP_BAD_CHECKPOINT`: the bytes are not a checkpoint adamp would write: damaged,
 *   truncated, altered (the digest does not match, or is missing: see `trust`), or malformed
 *   (offsets, tensor names, dtypes and shapes, tensor order, step counts, hyperparameters);
 * - `ERR_ADAMP_INVALID_ARGUMENT`: a sound checkpoint that does not fit this optimizer (another
 *   optimizer, other params or shapes, other groups), or `{ params: true }` for a file without params.
 */
export function deserializeCheckpoint(
  optimizer: CheckpointOptimizer, bytes: Uint8Array, options: LoadCheckpointOptions & { source?: string } = {},
): CheckpointInfo {
  const spec = specOfOptimizer(optimizer);
  optimizer = coreOf(optimizer);
  const opts = checkLoadOptions(options, true);
  if (!(bytes instanceof Uint8Array)) throw invalid(`bytes must be a Uint8Array (or Buffer) holding a checkpoint, got ${describe(bytes)}`);
  const source = opts.source ?? 'checkpoint';
  const plan = readCheckpoint(spec, optimizer, bytes, opts.trust ?? 'verified', source, opts.convertDtypes === true);
  const params = flatParams(optimizer);
  const n = params.length;
  if (opts.convertDtypes === true) convertPlan(plan, params, (optimizer as { masterWeights: boolean }).masterWeights);
  if (opts.params && !plan.includesParams) {
    throw invalid(`${source} holds no params (it was saved without { params: true }); load it without { params: true }`);
  }

  // Everything checked. First the optimizer must be idle: a stepAsync() in flight throws
  // ERR_ADAMP_STEP_IN_FLIGHT here, before anything changes (and queued device steps complete).
  (optimizer as { synchronize(): void }).synchronize();
  // Params are written first so that loadStateDict's engine invalidation (backends that keep
  // copies, e.g. on a GPU) covers them; loadStateDict validates again and throws before
  // changing anything, and then the params written are put back. The backup is read before any
  // write, so a param that cannot be read (a disposed device tensor) fails before any change.
  const backup = opts.params ? params.map((p) => hostData(p).slice()) : null;
  let written = 0;
  try {
    if (opts.params) for (; written < n; written++) setData(params[written], plan.weights[written]);
    (optimizer as { loadStateDict(sd: unknown): void }).loadStateDict({ state: plan.state, paramGroups: plan.paramGroups });
  } catch (e) {
    if (backup) for (let i = 0; i < written; i++) setData(params[i], backup[i]);
    const err = e as { code?: string; message: string };
    throw err.code === 'ERR_ADAMP_INVALID_ARGUMENT' ? invalid(`${source} does not fit this ${spec.name} optimizer: ${err.message}`) : e;
  }
  return { optimizer: spec.name, includesParams: plan.includesParams, metadata: plan.metadata, verified: plan.verified };
}

interface LoadPlan {
  state: Record<number, Record<string, unknown>>;
  paramGroups: Array<Record<string, unknown>>;
  /** Params' weights by index (all of them when the file has them), in the file's dtypes. */
  weights: Array<Float32Array | Uint16Array>;
  /** Each param's dtype in the file. */
  dtypes: StorageDtype[];
  includesParams: boolean;
  metadata: Record<string, string>;
  verified: boolean;
}

const PARAM_NAME = /^params\.(0|[1-9]\d{0,8})$/;
const STATE_NAME = /^state\.(0|[1-9]\d{0,8})\.([a-z_]+)$/;
const MAX_STEP = Number.MAX_SAFE_INTEGER;

/**
 * Reads and checks a checkpoint against an optimizer, changing nothing. The file is first
 * checked on its own (ERR_ADAMP_BAD_CHECKPOINT), then against the optimizer
 * (ERR_ADAMP_INVALID_ARGUMENT).
 */
function readCheckpoint(spec: AnySpec, optimizer: CheckpointOptimizer, bytes: Uint8Array, trust: CheckpointTrust, source: string, convert: boolean): LoadPlan {
  const kind = spec.name;
  const bad = (why: string) => new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `${source} is not a valid ${kind} checkpoint: ${why}`);
  const misfit = (why: string) => invalid(`${source} does not fit this ${kind} optimizer: ${why}`);
  const file: ParsedSafetensors = parseSafetensors(bytes, source);
  const meta = file.metadata;

  // 1. What the file is, and whether its bytes are the ones adamp wrote.
  const format = meta.format;
  if (format !== CHECKPOINT_FORMAT && format !== CHECKPOINT_FORMAT_1) {
    throw new AdampError('ERR_ADAMP_BAD_CHECKPOINT',
      `${source} is not an adamp optimizer checkpoint: metadata 'format' is ${format === undefined ? 'missing' : JSON.stringify(format)}, expected '${CHECKPOINT_FORMAT}'`);
  }
  const own = meta[DIGEST_KEY] !== undefined;
  if (own) {
    verify(bytes, file.headerLength, meta[DIGEST_KEY], source);
    if (format !== CHECKPOINT_FORMAT) throw bad(`format '${format}' does not have '${DIGEST_KEY}'`);
  } else if (trust !== 'foreign') {
    throw new AdampError('ERR_ADAMP_BAD_CHECKPOINT', format === CHECKPOINT_FORMAT_1
      ? `${source} was written by adamp 0.1 (format '${CHECKPOINT_FORMAT_1}'), whose digest covers the tensor data but not the header; `
        + `load it with { trust: 'foreign' } if you trust it (then save it again to get a format-2 file)`
      : `${source} has no digest (metadata '${DIGEST_KEY}'), which every checkpoint adamp writes carries: it was altered, or written by `
        + `another program. If it comes from PyTorch or another program you trust, load it with { trust: 'foreign' }`);
  } else if (meta.data_sha256 !== undefined) {
    if (sha256Hex(bytes.subarray(bytes.length - file.dataLength)) !== meta.data_sha256) {
      throw new AdampError('ERR_ADAMP_BAD_CHECKPOINT', `${source} is damaged or was altered: the SHA-256 of its data does not match its metadata 'data_sha256'`);
    }
  }
  if (meta.optimizer === undefined) throw bad(`metadata 'optimizer' is missing`);
  if (!SPECS.some((s) => s.name === meta.optimizer)) {
    throw bad(`metadata 'optimizer' is ${JSON.stringify(meta.optimizer)}, which is not an adamp optimizer (${SPECS.map((s) => s.name).join(', ')})`);
  }
  if (meta.optimizer !== kind) throw misfit(`it was saved from ${JSON.stringify(meta.optimizer)}`);

  // 2. The file on its own: groups, shapes, tensors, values.
  const json = (key: string, required: boolean): unknown => {
    const text = meta[key];
    if (text === undefined) {
      if (required) throw bad(`it lacks the metadata key '${key}'`);
      return undefined;
    }
    try {
      return JSON.parse(text);
    } catch (e) {
      throw bad(`metadata '${key}' is not valid JSON (${(e as Error).message})`);
    }
  };
  const rawGroups = json('param_groups', true);
  if (!Array.isArray(rawGroups)) throw bad(`metadata 'param_groups' must be a JSON array`);
  let count = 0;
  rawGroups.forEach((g: unknown, gi: number) => {
    if (!isPlainObject(g)) throw bad(`param_groups[${gi}] is not an object`);
    const ps = g.params;
    // Indices run in order over the groups, as PyTorch numbers them (and as tensors are named here).
    if (!Array.isArray(ps) || !ps.every((x, j) => x === count + j)) {
      throw bad(`param_groups[${gi}].params must list the indices ${count}, ${count + 1}... in order, got ${JSON.stringify(ps)}`);
    }
    count += ps.length;
  });
  const N = count;
  const fileShapes = json('param_shapes', own) as unknown;
  if (fileShapes !== undefined) {
    if (!Array.isArray(fileShapes) || !fileShapes.every((s) => Array.isArray(s) && s.every((d) => Number.isSafeInteger(d) && d >= 0))) {
      throw bad(`metadata 'param_shapes' must be an array of shapes (arrays of non-negative integers)`);
    }
    if (fileShapes.length !== N) throw bad(`metadata 'param_shapes' lists ${fileShapes.length} params, 'param_groups' ${N}`);
  }
  if (own) {
    const names = json('param_names', true);
    if (!Array.isArray(names) || names.length !== N || !names.every((x) => x === null || typeof x === 'string')) {
      throw bad(`metadata 'param_names' must be an array of ${N} names (strings or null)`);
    }
  }
  const fileDtypes = json('param_dtypes', false) ?? new Array(N).fill('float32');
  if (!Array.isArray(fileDtypes) || fileDtypes.length !== N || !fileDtypes.every((d) => d === 'float32' || d === 'bfloat16' || d === 'float16')) {
    throw bad(`metadata 'param_dtypes' must be an array of ${N} dtypes ('float32', 'bfloat16' or 'float16')`);
  }
  const dtypes = fileDtypes as StorageDtype[];
  const declared = meta.includes_params;
  if (declared === undefined ? own : declared !== 'true' && declared !== 'false') {
    throw bad(`metadata 'includes_params' must be 'true' or 'false', got ${declared === undefined ? 'nothing' : JSON.stringify(declared)}`);
  }

  const params = flatParams(optimizer);
  const shapeText = (s: readonly number[]) => `[${s.join(',')}]`;
  /** The shape tensor `t` of param i must have: param_shapes' (the file's own, BAD), else the param's (a misfit). */
  const checkShape = (t: TensorRecord, i: number) => {
    if (fileShapes !== undefined) {
      const want = (fileShapes as number[][])[i];
      if (shapeText(t.shape) !== shapeText(want)) throw bad(`tensor '${t.name}' has shape ${shapeText(t.shape)}, metadata 'param_shapes' gives param ${i} ${shapeText(want)}`);
    } else if (i < params.length && shapeText(t.shape) !== shapeText(shapeOf(params[i]))) {
      throw misfit(`tensor '${t.name}' has shape ${shapeText(t.shape)}, the param${nameOf(params[i])} has ${shapeText(shapeOf(params[i]))}`);
    }
  };
  const wanted = stateKeys(spec);
  const perParam = new Map<number, Map<string, TensorRecord>>();
  const weights = new Map<number, TensorRecord>();
  const orderKeys: number[] = [];
  for (const t of file.tensors) {
    const ms = STATE_NAME.exec(t.name);
    const mp = PARAM_NAME.exec(t.name);
    if (!ms && !mp) throw bad(`unexpected tensor '${t.name}'`);
    const i = Number(ms ? ms[1] : mp![1]);
    if (i >= N) throw bad(`tensor '${t.name}' refers to param ${i}, the file's param_groups list ${N} params`);
    if (mp) {
      if (t.dtype !== FILE_DTYPE[dtypes[i]]) throw bad(`tensor '${t.name}' has dtype ${t.dtype}, expected ${FILE_DTYPE[dtypes[i]]} (param_dtypes gives ${dtypes[i]})`);
      checkShape(t, i);
      weights.set(i, t);
      orderKeys.push(i);
      continue;
    }
    const key = ms![2];
    const slot = key === 'master' ? wanted.length : wanted.indexOf(key);
    if (slot < 0) throw bad(`unexpected tensor '${t.name}' (${kind} state holds ${wanted.join(', ')}, and master for 16-bit params)`);
    if (key === 'master' && dtypes[i] === 'float32') throw bad(`tensor '${t.name}' holds master weights, but param ${i} is float32 (param_dtypes)`);
    if (key === 'step') {
      // adamp writes I64; torch.optim (1.12 and later) keeps a float32 step tensor, accepted in foreign files.
      const dtypes = own ? ['I64'] : ['I64', 'F32'];
      if (t.shape.length !== 0 || !dtypes.includes(t.dtype)) {
        throw bad(`tensor '${t.name}' must be an ${dtypes.join(' or ')} scalar (shape []), got ${t.dtype} ${shapeText(t.shape)}`);
      }
    } else {
      if (t.dtype !== 'F32') throw bad(`tensor '${t.name}' has dtype ${t.dtype}, expected F32`);
      checkShape(t, i);
    }
    if (!perParam.has(i)) perParam.set(i, new Map());
    perParam.get(i)!.set(key, t);
    orderKeys.push(N + i * (wanted.length + 1) + slot);
  }
  const state: Record<number, Record<string, unknown>> = {};
  for (const [i, recs] of perParam) {
    for (const key of wanted) if (!recs.has(key)) throw bad(`the state of param ${i} lacks tensor 'state.${i}.${key}'`);
    const entry: Record<string, unknown> = {};
    if (spec.hasStep) entry.step = stepValue(recs.get('step')!, bad);
    for (const d of spec.slots) entry[d.key] = readF32(recs.get(d.torch)!);
    if (dtypes[i] !== 'float32') entry.dtype = dtypes[i];
    if (recs.has('master')) entry.master = readF32(recs.get('master')!);
    state[i] = entry;
  }
  const includesParams = weights.size > 0;
  if (includesParams && weights.size !== N) {
    const missing = Array.from({ length: N }, (_, i) => i).find((i) => !weights.has(i));
    throw bad(`it holds some params but not 'params.${missing}'`);
  }
  if (declared !== undefined && (declared === 'true') !== includesParams) {
    throw bad(`metadata 'includes_params' is '${declared}' but the file holds ${includesParams ? '' : 'no '}params.* tensors`);
  }
  if (own) {
    // The order the writer lays the data out in: params.0..N-1, then each param's state in index
    // order, step first, then the spec's slots. Two tensors whose data_offsets were swapped break it.
    for (let k = 1; k < orderKeys.length; k++) {
      if (orderKeys[k] <= orderKeys[k - 1]) {
        throw bad(`tensor '${file.tensors[k].name}' is stored after '${file.tensors[k - 1].name}' (data_offsets out of the order adamp writes: `
          + 'params.0..n-1, then each param\'s state in index order, step first, then the slots in the optimizer\'s order)');
      }
    }
  }

  // Hyperparameters: PyTorch names back to camelCase; every option of this optimizer must be
  // present and valid. Keys this optimizer does not know (a scheduler's `initial_lr`, torch's
  // `foreach`...) are ignored in foreign files, as PyTorch keeps them aside; adamp never writes them.
  const torchToKey = new Map(spec.options.map((o) => [o.torch, o.key]));
  const paramGroups = rawGroups.map((g: Record<string, unknown>, gi: number) => {
    const where = `param_groups[${gi}]`;
    if (own) {
      const unknown = Object.keys(g).filter((k) => k !== 'params' && !torchToKey.has(k));
      if (unknown.length > 0) throw bad(`${where} has ${unknown.map((k) => `'${k}'`).join(', ')}, which adamp does not write for ${kind}`);
    }
    // torch.optim flags that change the update, which adamp's optimizers do not have: ignoring them would be wrong.
    for (const flag of ['maximize', 'amsgrad'] as const) {
      if (!torchToKey.has(flag) && g[flag] !== undefined && g[flag] !== false && g[flag] !== null) {
        throw misfit(`${where} has ${flag}=${JSON.stringify(g[flag])}; adamp's ${kind} has no '${flag}'`);
      }
    }
    const opts: Record<string, unknown> = {};
    for (const o of spec.options) {
      if (!Object.prototype.hasOwnProperty.call(g, o.torch)) throw bad(`${where} lacks '${o.torch}'`);
      opts[o.key] = g[o.torch];
    }
    try {
      resolveOptions(spec, opts, null, where, 'strict');
    } catch (e) {
      let message = (e as Error).message;
      for (const o of spec.options) message = message.split(`${where}.${o.key}`).join(`${where}.${o.torch}`);
      throw bad(message);
    }
    return { params: g.params, ...opts };
  });

  // 3. The file against this optimizer.
  const mine = optimizer.paramGroups as unknown as Groupish[];
  if (N !== params.length) throw misfit(`it holds ${N} params, the optimizer has ${params.length}`);
  if (rawGroups.length !== mine.length) throw misfit(`it has ${rawGroups.length} param groups, the optimizer has ${mine.length}`);
  let first = 0;
  rawGroups.forEach((g: Record<string, unknown>, gi: number) => {
    const expected = mine[gi].params.map((_, j) => first + j);
    first += expected.length;
    if (JSON.stringify(g.params) !== JSON.stringify(expected)) {
      throw misfit(`param_groups[${gi}].params is ${JSON.stringify(g.params)}, the optimizer's group ${gi} holds params ${JSON.stringify(expected)}`);
    }
  });
  dtypes.forEach((d, i) => {
    const here = dtypeOf(params[i]);
    if (d !== here && !convert) throw misfit(`param ${i}${nameOf(params[i])} is ${here} here, ${d} in the file; a checkpoint loads only into params of the dtypes it was saved with, unless converted with { convertDtypes: true } (docs/mixed-precision.md#checkpoints)`);
  });
  if (fileShapes !== undefined) {
    (fileShapes as number[][]).forEach((s, i) => {
      if (shapeText(s) !== shapeText(shapeOf(params[i]))) throw misfit(`param ${i}${nameOf(params[i])} has shape ${shapeText(shapeOf(params[i]))} here, ${shapeText(s)} in the file`);
    });
  }

  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta)) if (!(RESERVED_METADATA_KEYS as readonly string[]).includes(k)) Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
  return {
    state,
    paramGroups,
    weights: includesParams ? Array.from({ length: N }, (_, i) => (dtypes[i] === 'float32' ? readF32 : readU16)(weights.get(i)!)) : [],
    dtypes,
    includesParams,
    metadata,
    verified: own,
  };
}

/**
 * `{ convertDtypes: true }`: rewrites a checked plan for this optimizer's params and master-weights
 * setting (see LoadCheckpointOptions.convertDtypes). Only the plan changes: loading it afterwards
 * is the ordinary all-or-nothing load.
 */
function convertPlan(plan: LoadPlan, params: AnyParam[], masterWeights: boolean): void {
  params.forEach((p, i) => {
    const from = plan.dtypes[i];
    const to = dtypeOf(p);
    const entry = plan.state[i];
    const saved = plan.includesParams ? plan.weights[i] : undefined;
    // The float32 weights: the file's master weights, else its params widened exactly.
    const master = entry?.master as Float32Array | undefined;
    const f32 = master ?? (saved === undefined ? undefined : from === 'float32' ? (saved as Float32Array) : halfToFloat32(saved as Uint16Array, from));
    // Weights: kept in the same dtype (a 16-bit param's bits may be stochastically rounded from its
    // master); widened to float32 from the master where there is one; otherwise rounded to nearest even.
    if (saved !== undefined && from !== to) plan.weights[i] = to === 'float32' ? f32!.slice() : float32ToHalf(f32!, to);
    if (entry === undefined) return;
    delete entry.master;
    delete entry.dtype;
    if (to === 'float32') return;
    entry.dtype = to;
    if (!masterWeights) return;
    // A master for this 16-bit param: the float32 weights from the file, else the param itself widened (as at a first step).
    if (f32 !== undefined) entry.master = f32.slice();
    else if (!(p.data instanceof DeviceTensor)) entry.master = halfToFloat32(hostData(p) as Uint16Array, to);
  });
}

/** A `step` tensor's count: an integer from 0 to 2^53 - 1, or ERR_ADAMP_BAD_CHECKPOINT naming the tensor. */
function stepValue(t: TensorRecord, bad: (why: string) => Error): number {
  let value: number | bigint;
  let ok: boolean;
  if (t.dtype === 'I64') {
    value = readI64(t)[0];
    ok = value >= 0n && value <= BigInt(MAX_STEP);
  } else {
    value = readF32(t)[0];
    ok = Number.isInteger(value) && value >= 0 && value <= MAX_STEP;
  }
  if (!ok) throw bad(`tensor '${t.name}' holds ${String(value)}; a step count must be an integer from 0 to 2^53 - 1`);
  return Number(value);
}

function nameOf(p: AnyParam): string {
  return p.name ? ` ('${p.name}')` : '';
}
