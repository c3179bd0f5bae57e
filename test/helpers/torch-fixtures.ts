/**
 * Loads the PyTorch reference fixtures in test/fixtures/torch (made by
 * scripts/gen-torch-fixtures.py with Debian's PyTorch 1.13; schemas in test/fixtures/README.md):
 * torch.optim.AdamW / SGD runs, lr_scheduler sequences and clip_grad_norm_ cases.
 */
import * as fs from 'fs';
import * as path from 'path';

/** [offset, length] in floats into the case's .f32 file. */
export type Ref = [offset: number, length: number];
/** A JSON number, or "NaN" / "Infinity" / "-Infinity". */
export type JsonNum = number | 'NaN' | 'Infinity' | '-Infinity';

export const TORCH_FIXTURE_DIR = path.join(__dirname, '..', 'fixtures', 'torch');

export interface TorchMeta {
  generator: string;
  command: string;
  torch_version: string;
  torch_package: string;
  cpu_capability: string;
}

/** Decodes the strings the fixtures use for non-finite numbers. */
export function num(x: JsonNum): number {
  if (x === 'NaN') return NaN;
  if (x === 'Infinity') return Infinity;
  if (x === '-Infinity') return -Infinity;
  return x;
}

/** The float32 whose IEEE-754 bits are written as "0x%08x". */
export function f32FromBits(hex: string): number {
  const b = new DataView(new ArrayBuffer(4));
  b.setUint32(0, parseInt(hex, 16));
  return b.getFloat32(0);
}

/** "0x%08x" bits of a float32 value (NaNs: whatever the array held). */
export function f32Bits(a: Float32Array, i = 0): string {
  return '0x' + new Uint32Array(a.buffer, a.byteOffset, a.length)[i].toString(16).padStart(8, '0');
}

export function numel(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function readF32(file: string): Float32Array {
  const bin = fs.readFileSync(file);
  return new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
}

// ---------------------------------------------------------------------------------------------
// torch.optim.AdamW / torch.optim.SGD
// ---------------------------------------------------------------------------------------------

export interface AdamWState { step: number; exp_avg: Ref; exp_avg_sq: Ref }
export interface SgdState { momentum_buffer: Ref | null }

export interface TorchOptimCase {
  name: string;
  source: string;
  optimizer: 'adamw' | 'sgd';
  /** Constructor keyword arguments (PyTorch names) besides the param groups; foreach=False is not listed. */
  hyperparameters: Record<string, unknown>;
  /** Param groups in order: global param indices, the group's own options, and every setting after defaults. */
  groups: Array<{ params: number[]; options: Record<string, unknown>; resolved: Record<string, unknown> }>;
  params: Array<{ shape: number[]; data: Ref }>;
  /** grads[step][param]; null: p.grad is None at that step. */
  grads: Array<Array<Ref | null>>;
  /** After each step (step = 1, 2, ...): every param, and its state (null until its first grad). */
  steps: Array<{ step: number; params: Array<{ data: Ref; state: null | AdamWState | SgdState }> }>;
  note?: string;
  meta: TorchMeta;
  /** The array a Ref points at (a fresh copy). */
  get(ref: Ref): Float32Array;
  /** Number of floats in the .f32 file. */
  size: number;
}

export function torchOptimCaseNames(): string[] {
  return fs.readdirSync(path.join(TORCH_FIXTURE_DIR, 'optim')).filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -5)).sort();
}

export function loadTorchOptimCase(name: string): TorchOptimCase {
  const base = path.join(TORCH_FIXTURE_DIR, 'optim', name);
  const c = JSON.parse(fs.readFileSync(`${base}.json`, 'utf8'));
  const all = readF32(`${base}.f32`);
  c.get = (ref: Ref) => all.slice(ref[0], ref[0] + ref[1]);
  c.size = all.length;
  return c as TorchOptimCase;
}

// ---------------------------------------------------------------------------------------------
// torch.optim.lr_scheduler
// ---------------------------------------------------------------------------------------------

export interface SchedulerSpec {
  type: 'CosineAnnealingLR' | 'StepLR' | 'MultiStepLR' | 'ExponentialLR' | 'LinearLR' | 'OneCycleLR' | 'SequentialLR' | 'LambdaLR';
  /**
   * Keyword arguments as given to PyTorch. LambdaLR: lr_lambda is a lambda name (or one per
   * group) from SchedulerFixtures.lambdas. SequentialLR: schedulers is a list of SchedulerSpec.
   */
  args: Record<string, unknown>;
}

export interface SchedulerCase {
  name: string;
  /** torch.optim class, constructor keyword arguments, and one option dict per param group. */
  optimizer: { name: 'SGD' | 'AdamW'; defaults: Record<string, unknown>; groups: Array<Record<string, unknown>> };
  scheduler: SchedulerSpec;
  /** Number of scheduler.step() calls (each after an optimizer.step() that has no grads). */
  steps: number;
  /** Each param group's settings (PyTorch keys, without params) right after the scheduler was built. */
  groupsAfterInit: Array<Record<string, unknown>>;
  /** The scheduler's last_epoch at the end (= steps). */
  lastEpoch: number;
  /** lr[k][group]: get_last_lr() after construction (k = 0) and after the k-th step(). */
  lr: number[][];
  /** OneCycleLR with cycle_momentum: which group key it writes; else null. */
  momentumKey: 'momentum' | 'betas[0]' | null;
  /** momentum[k][group]: that key's value in each group, same rows as lr; null when momentumKey is null. */
  momentum: number[][] | null;
  /** OneCycleLR: the step() call (counting from 1) that raises ValueError. */
  raisesOnStepCall?: number;
  resume: {
    /** Row of lr/momentum the state was taken at (after that many step() calls). */
    atStep: number;
    lastEpoch: number;
    /** scheduler.state_dict() as JSON (Counter -> {"epoch": count}, anneal_func -> method name). */
    stateDict: Record<string, unknown>;
    /** optimizer.param_groups at that point, without params. */
    optimizerGroups: Array<Record<string, unknown>>;
    /**
     * Loading only stateDict into a fresh optimizer + scheduler (groups left as built) gives the
     * same rows atStep+1.. onwards. (Loading stateDict and optimizerGroups always does: checked.)
     */
    schedulerOnlyContinues: boolean;
  };
  note?: string;
}

export interface SchedulerFixtures {
  meta: TorchMeta;
  /** LambdaLR factors by name: a Python expression in e (last_epoch, an int); uses math.sqrt. */
  lambdas: Record<string, string>;
  cases: SchedulerCase[];
}

export function loadSchedulerFixtures(): SchedulerFixtures {
  return JSON.parse(fs.readFileSync(path.join(TORCH_FIXTURE_DIR, 'lr_scheduler.json'), 'utf8'));
}

/** The LambdaLR factors of the fixtures, as JS (same operations in the same order as the Python). */
export const LAMBDAS: Record<string, (e: number) => number> = {
  linear_warmup_10: (e) => Math.min(1.0, (e + 1) / 10),
  inverse_sqrt: (e) => 1.0 / Math.sqrt(e + 1),
  halve_every_10: (e) => 0.5 ** Math.floor(e / 10),
  exp_0_97: (e) => 0.97 ** e,
  warmup_5_then_inverse_sqrt: (e) => (e < 5 ? (e + 1) / 5 : Math.sqrt(5 / (e + 1))),
};

// ---------------------------------------------------------------------------------------------
// torch.nn.utils.clip_grad_norm_
// ---------------------------------------------------------------------------------------------

export interface ClipCase {
  name: string;
  maxNorm: number;
  /** 2 (2.0) or "inf". */
  normType: number | 'inf';
  errorIfNonfinite: false;
  params: Array<{ shape: number[] }>;
  /** Grads before the call; null: p.grad is None. */
  gradsIn: Array<Ref | null>;
  /** Grads after the call. */
  gradsOut: Array<Ref | null>;
  /** The returned float32 total norm, exactly (as a double). */
  totalNorm: JsonNum;
  totalNormBits: string;
  /** The same norm computed in float64 from the same float32 grads. */
  totalNormF64: JsonNum;
  /** float32 clamp(max_norm / (total_norm + 1e-6), max=1); null when there were no grads. */
  clipCoef: JsonNum | null;
  clipCoefBits: string | null;
  /** maxNorm was set to this case's own total norm. */
  maxNormIsTotalNorm?: true;
  note?: string;
}

export interface ClipFixtures {
  meta: TorchMeta;
  cases: ClipCase[];
  get(ref: Ref): Float32Array;
  size: number;
}

export function loadClipFixtures(): ClipFixtures {
  const c = JSON.parse(fs.readFileSync(path.join(TORCH_FIXTURE_DIR, 'clip_grad_norm.json'), 'utf8'));
  const all = readF32(path.join(TORCH_FIXTURE_DIR, 'clip_grad_norm.f32'));
  c.get = (ref: Ref) => all.slice(ref[0], ref[0] + ref[1]);
  c.size = all.length;
  return c as ClipFixtures;
}
