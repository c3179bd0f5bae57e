/**
 * Loss scaling with `torch.cuda.amp.GradScaler`'s semantics (PyTorch 1.13), in camelCase
 * (docs/mixed-precision.md#loss-scaling). The scale is a float32 value; `update()` follows
 * `torch._amp_update_scale_`: after a step that found an Infinity/NaN grad, `scale *= backoffFactor`
 * and the growth tracker restarts; after `growthInterval` clean steps in a row,
 * `scale *= growthFactor` (kept only if finite).
 *
 * `step(optimizer)` without a prior `unscale(optimizer)` is the fused path: the optimizer checks
 * every grad for Infinity/NaN (in its storage type), skips the whole step if it finds one (no
 * param, state or step count changes; `optimizer.lastStepSkipped`), and otherwise reads each grad
 * as `f32(g * invScale)` in the step itself, where `invScale = f32(1 / scale)` (computed in double,
 * as PyTorch's `scale.double().reciprocal().float()`). Grads are left scaled, as PyTorch leaves
 * them after its fused optimizers.
 *
 * On the cuda backend the scale lives on the device (docs/mixed-precision.md#loss-scaling-on-the-device):
 * `step(optimizer)` queues the check of every grad into a device flag and the step, which does
 * nothing when the flag is set, and `update()` queues torch's `_amp_update_scale_` on the device;
 * neither waits for the device. `unscale(optimizer)` of float32 device grads queues the check into
 * that flag and the unscale in place (PyTorch's `_amp_foreach_non_finite_check_and_unscale_`), and
 * the `step(optimizer)` after it a step on the unscaled grads that does nothing when the flag is
 * set. `step()` then returns `true` (queued): whether it ran is
 * `optimizer.lastStepSkipped`, which reads the device. `getScale()`, `scale(loss)`, `stateDict()`
 * and a host optimizer's step read the scale back (they wait).
 */
import { AdampError, invalid } from '../errors';
import { describe, label } from '../core/describe';
import { isPlainObject, rejectUnknown } from '../optim/options';
import { DEVICE_ORDINAL, DEVICE_SCALED_STEP, DEVICE_SCALER_UPDATE, DEVICE_UNSCALE, MARK_SKIPPED, Optimizer, SCALED_STEP } from '../optimizer';
import { CUDA_SCALER } from '../backends/cuda/binding';
import { checkGrad, isFloat32Array } from '../validate';
import type { AnyParam } from '../types';
import { DeviceTensor, viewsOverlap } from '../device/tensor';

const f = Math.fround;

export interface GradScalerOptions {
  /** The first scale. Default `65536` (2^16). Finite, > 0. */
  initScale?: number;
  /** The scale's factor after `growthInterval` steps in a row without Infinity/NaN. Default `2`; must be > 1. */
  growthFactor?: number;
  /** The scale's factor after a step that found Infinity/NaN. Default `0.5`; must be in (0, 1). */
  backoffFactor?: number;
  /** Clean steps in a row before the scale grows. Default `2000`; a positive integer. */
  growthInterval?: number;
  /** `false`: every method is a pass-through (`scale(loss)` returns `loss`, `step` steps, `getScale()` is 1). Default `true`. */
  enabled?: boolean;
}

/** `GradScaler.stateDict()`: PyTorch's `state_dict()` in camelCase (`_growth_tracker` -> `growthTracker`); `{}` when disabled. */
export interface GradScalerState {
  scale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  growthTracker?: number;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyOptimizer = Optimizer<any, any, AnyParam>;

const enum Stage { ready, unscaled, stepped }

interface PerOptimizer {
  stage: Stage;
  /** Whether the inf check (unscale or the fused step) found a non-finite grad; undefined before one ran. */
  foundInf?: boolean;
  /** The check ran on the device into found flag `deviceSlot` of the device state. */
  deviceSlot?: number;
}

/** The scale, growth tracker and found flags in device memory (CUDA_SCALER layout). */
interface DeviceScale {
  t: DeviceTensor;
  /** A found flag per optimizer that stepped on the device. */
  slots: Map<AnyOptimizer, number>;
  /** The device changed the scale since the host last read it. */
  stale: boolean;
  /** The optimizer whose stream update() queues on (the last one stepped on the device). */
  owner: AnyOptimizer;
}

function positive(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw invalid(`${where} must be a finite number > 0, got ${describe(v)}`);
  return v;
}

export class GradScaler {
  private scaleValue: number;
  private growthFactor: number;
  private backoffFactor: number;
  private growthInterval: number;
  private growthTracker = 0;
  private readonly enabled: boolean;
  private perOptimizer = new Map<AnyOptimizer, PerOptimizer>();
  private dev: DeviceScale | null = null;

  constructor(options: GradScalerOptions = {}) {
    if (!isPlainObject(options)) throw invalid(`GradScaler options must be a plain object, got ${describe(options)}`);
    rejectUnknown(options, ['initScale', 'growthFactor', 'backoffFactor', 'growthInterval', 'enabled'], 'GradScaler options', 'an option', false);
    const o = options as GradScalerOptions;
    this.enabled = o.enabled ?? true;
    if (typeof this.enabled !== 'boolean') throw invalid(`GradScaler options.enabled must be a boolean, got ${describe(o.enabled)}`);
    this.scaleValue = f(positive(o.initScale ?? 65536, 'GradScaler options.initScale'));
    this.growthFactor = checkGrowth(o.growthFactor ?? 2, 'GradScaler options.growthFactor');
    this.backoffFactor = checkBackoff(o.backoffFactor ?? 0.5, 'GradScaler options.backoffFactor');
    this.growthInterval = checkInterval(o.growthInterval ?? 2000, 'GradScaler options.growthInterval');
  }

  /** Whether the scaler is enabled. */
  isEnabled(): boolean {
    return this.enabled;
  }

  /** `loss * scale` (the loss to backpropagate); `loss` itself when disabled. */
  scale(loss: number): number {
    if (typeof loss !== 'number') throw invalid(`GradScaler.scale(loss): loss must be a number, got ${describe(loss)}`);
    if (!this.enabled) return loss;
    this.readDevice();
    return loss * this.scaleValue;
  }

  /**
   * Unscales the optimizer's grads in place now (PyTorch's `unscale_`), e.g. before clipping
   * them, and records whether one is Infinity/NaN; the following `step(optimizer)` then steps
   * on the unscaled grads, or skips. Float32 grads only: 16-bit grads would lose bits in place,
   * so they are refused (as PyTorch refuses float16 grads); leave the unscale to `step()`.
   * At most once per optimizer between `update()`s, and not after `step(optimizer)`.
   *
   * Float32 `DeviceTensor` grads (cuda backend) are unscaled on the device with the scale on the
   * device (docs/mixed-precision.md#loss-scaling-on-the-device): the check into the optimizer's
   * device found flag and the product by `f32(1 / scale)` are queued on the optimizer's stream,
   * and nothing waits for the device; the next `step(optimizer)` queues a step that reads the
   * unscaled grads and changes nothing when the flag is set (`optimizer.lastStepSkipped`), and
   * `update()` reads the flag on the device. Host grads of the same optimizer are unscaled on the
   * host (reading the scale back when the device changed it).
   */
  unscale(optimizer: AnyOptimizer): void {
    if (!this.enabled) return;
    const st = this.stateOf(optimizer, 'unscale');
    if (st.stage === Stage.unscaled) throw invalid('GradScaler.unscale(optimizer) has already been called on this optimizer since the last update()');
    if (st.stage === Stage.stepped) throw invalid('GradScaler.unscale(optimizer) is being called after step(optimizer); call update() first');
    const params = allParams(optimizer);
    const host: Float32Array[] = [];
    const device: Array<{ g: DeviceTensor; who: string }> = [];
    params.forEach((p, i) => {
      checkGrad(p, i);
      const g = p.grad;
      if (g === null || g === undefined) return;
      const sixteen = g instanceof DeviceTensor ? g.dtype !== 'float32' : !isFloat32Array(g);
      if (sixteen) {
        throw invalid(`grad of ${label(p, i)} is a 16-bit grad; GradScaler.unscale() would round it again in place (PyTorch refuses float16 grads too): call step(optimizer) directly, which unscales as the step reads it`);
      }
      if (g instanceof DeviceTensor) {
        if (optimizer.backend !== 'cuda') throw new AdampError('ERR_ADAMP_UNSUPPORTED', `grad of ${label(p, i)} is a DeviceTensor; only the cuda backend unscales device grads`);
        const shared = device.find((d) => d.g === g || viewsOverlap(d.g.view(), g.view()));
        if (shared) throw invalid(`grad of ${label(p, i)} shares device memory with the grad of ${shared.who}; GradScaler.unscale() would unscale it twice`);
        device.push({ g, who: label(p, i) });
      } else {
        host.push(g as Float32Array);
      }
    });
    if (device.length > 0) {
      // the scale on the device: the check and the unscale queued; no host sync
      const k = this.deviceSlot(optimizer);
      const base = this.dev!.t.pointer;
      optimizer[DEVICE_UNSCALE](device.map((d) => d.g), { scale: base, found: base + BigInt(CUDA_SCALER.found(k)) });
      this.dev!.owner = optimizer;
      st.deviceSlot = k;
    }
    let found = false;
    if (host.length > 0) {
      this.readDevice();
      const inv = f(1 / this.scaleValue);
      for (const g of host) {
        for (let i = 0; i < g.length; i++) {
          const v = g[i];
          if (!Number.isFinite(v)) found = true;
          g[i] = v * inv;
        }
      }
    }
    st.stage = Stage.unscaled;
    st.foundInf = found;
  }

  /**
   * Steps the optimizer unless a grad is Infinity/NaN (then nothing changes), unscaling the grads
   * as the step reads them (or stepping on grads `unscale()` already unscaled). Returns whether the
   * step ran; with the scale on the device (cuda), `true` when it was queued: the outcome is
   * `optimizer.lastStepSkipped`. A skipped step sets `lastStepSkipped`. Disabled: `optimizer.step()`.
   */
  step(optimizer: AnyOptimizer): boolean {
    if (!this.enabled) {
      optimizer.step();
      return true;
    }
    const st = this.stateOf(optimizer, 'step');
    if (st.stage === Stage.stepped) throw invalid('GradScaler.step(optimizer) has already been called on this optimizer since the last update()');
    let ran: boolean;
    if (st.stage === Stage.unscaled && st.deviceSlot !== undefined && !st.foundInf) {
      // grads unscaled on the device: the step reads them as they are and does nothing when unscale() set the flag; no host sync
      const base = this.dev!.t.pointer;
      optimizer[DEVICE_SCALED_STEP]({ found: base + BigInt(CUDA_SCALER.found(st.deviceSlot)) });
      this.dev!.owner = optimizer;
      st.stage = Stage.stepped;
      return true;
    } else if (st.stage === Stage.unscaled) {
      ran = !st.foundInf;
      if (ran) optimizer.step();
      else optimizer[MARK_SKIPPED]();
    } else if (optimizer.backend === 'cuda') {
      // the scale on the device: the check, the skip and the unscale are queued; no host sync
      const k = this.deviceSlot(optimizer);
      const base = this.dev!.t.pointer;
      optimizer[DEVICE_SCALED_STEP]({ scale: base, found: base + BigInt(CUDA_SCALER.found(k)) });
      this.dev!.owner = optimizer;
      st.deviceSlot = k;
      st.stage = Stage.stepped;
      return true;
    } else {
      this.readDevice();
      ran = optimizer[SCALED_STEP](f(1 / this.scaleValue));
      st.foundInf = !ran;
    }
    st.stage = Stage.stepped;
    return ran;
  }

  /**
   * Updates the scale from the steps since the last update (PyTorch's `update()`): backs off if
   * any optimizer found Infinity/NaN, else grows after `growthInterval` clean steps. `newScale`
   * sets the scale instead. Then every optimizer can be unscaled and stepped again.
   */
  update(newScale?: number): void {
    if (!this.enabled) return;
    if (newScale !== undefined) {
      const v = f(positive(newScale, 'GradScaler.update(newScale): newScale'));
      this.readDevice();
      this.scaleValue = v;
      this.writeDevice();
    } else if (this.dev !== null) {
      // the scale on the device: the found flags of this round's device steps, and the host checks, on the device
      const st = [...this.perOptimizer.values()];
      if (!st.some((s) => s.foundInf !== undefined || s.deviceSlot !== undefined)) {
        throw invalid('GradScaler.update(): no inf checks were recorded prior to update (call step(optimizer) first)');
      }
      let mask = 0;
      for (const s of st) if (s.deviceSlot !== undefined) mask |= 1 << s.deviceSlot;
      // note: queued on the last device optimizer's stream; other optimizers' device steps (their own streams) are waited for first
      for (const o of this.dev.slots.keys()) if (o !== this.dev.owner && this.perOptimizer.get(o)?.deviceSlot !== undefined) o.synchronize();
      this.dev.owner[DEVICE_SCALER_UPDATE](this.dev.t.pointer, mask, st.some((s) => s.foundInf === true), this.growthFactor, this.backoffFactor, this.growthInterval);
      this.dev.stale = true;
    } else {
      const checks = [...this.perOptimizer.values()].filter((s) => s.foundInf !== undefined);
      if (checks.length === 0) throw invalid('GradScaler.update(): no inf checks were recorded prior to update (call step(optimizer) first)');
      if (checks.some((s) => s.foundInf)) {
        this.scaleValue = f(this.scaleValue * this.backoffFactor);
        this.growthTracker = 0;
      } else {
        const successful = this.growthTracker + 1;
        if (successful === this.growthInterval) {
          const grown = f(this.scaleValue * this.growthFactor);
          if (Number.isFinite(grown)) this.scaleValue = grown;
          this.growthTracker = 0;
        } else {
          this.growthTracker = successful;
        }
      }
    }
    this.perOptimizer = new Map();
  }

  /** The current scale (1 when disabled). With the scale on the device: read from it (waits). */
  getScale(): number {
    if (!this.enabled) return 1;
    this.readDevice();
    return this.scaleValue;
  }

  /**
   * With the scale on the device (after a first `step` of a CUDA optimizer): the address of the
   * float32 scale in device memory, for a device training loop that multiplies its loss by it
   * without reading it back (`scale(loss)` waits for the device); `null` before, or on the host.
   */
  deviceScalePointer(): bigint | null {
    return this.enabled && this.dev !== null ? this.dev.t.pointer : null;
  }

  getGrowthFactor(): number { return this.growthFactor; }
  setGrowthFactor(v: number): void { this.growthFactor = checkGrowth(v, 'growthFactor'); }
  getBackoffFactor(): number { return this.backoffFactor; }
  setBackoffFactor(v: number): void { this.backoffFactor = checkBackoff(v, 'backoffFactor'); }
  getGrowthInterval(): number { return this.growthInterval; }
  setGrowthInterval(v: number): void { this.growthInterval = checkInterval(v, 'growthInterval'); }

  /** The scaler's state (`{}` when disabled), to save with the optimizer's. */
  stateDict(): GradScalerState {
    if (!this.enabled) return {};
    this.readDevice();
    return {
      scale: this.scaleValue, growthFactor: this.growthFactor, backoffFactor: this.backoffFactor,
      growthInterval: this.growthInterval, growthTracker: this.growthTracker,
    };
  }

  /** Restores `stateDict()`; checked whole before anything changes. */
  loadStateDict(sd: GradScalerState): void {
    if (!this.enabled) return;
    if (!isPlainObject(sd)) throw invalid(`GradScaler state dict must be an object, got ${describe(sd)}`);
    const keys = ['scale', 'growthFactor', 'backoffFactor', 'growthInterval', 'growthTracker'];
    if (Object.keys(sd).length === 0) throw invalid('the GradScaler state dict is empty, possibly because it was saved from a disabled GradScaler');
    rejectUnknown(sd, keys, 'GradScaler state dict', 'a GradScaler state key', false);
    for (const k of keys) if (!Object.prototype.hasOwnProperty.call(sd, k)) throw invalid(`GradScaler state dict lacks '${k}'`);
    const s = sd as Required<GradScalerState>;
    const scale = f(positive(s.scale, 'GradScaler state dict.scale'));
    const growth = checkGrowth(s.growthFactor, 'GradScaler state dict.growthFactor');
    const backoff = checkBackoff(s.backoffFactor, 'GradScaler state dict.backoffFactor');
    const interval = checkInterval(s.growthInterval, 'GradScaler state dict.growthInterval');
    if (!Number.isSafeInteger(s.growthTracker) || s.growthTracker < 0) throw invalid(`GradScaler state dict.growthTracker must be a non-negative integer, got ${describe(s.growthTracker)}`);
    this.scaleValue = scale;
    this.growthFactor = growth;
    this.backoffFactor = backoff;
    this.growthInterval = interval;
    this.growthTracker = s.growthTracker;
    if (this.dev !== null) {
      this.dev.stale = false;
      this.writeDevice();
    }
  }

  /** The found flag of an optimizer stepping with the scale on the device (the device state made at the first one). */
  private deviceSlot(optimizer: AnyOptimizer): number {
    if (this.dev === null) {
      const t = DeviceTensor.zeros([CUDA_SCALER.bytes / 4], { device: optimizer[DEVICE_ORDINAL] });
      this.dev = { t, slots: new Map(), stale: false, owner: optimizer };
      this.writeDevice();
    }
    if (this.dev.t.device !== optimizer[DEVICE_ORDINAL]) {
      throw new AdampError('ERR_ADAMP_UNSUPPORTED', `GradScaler: this scaler keeps its scale on device ${this.dev.t.device}; an optimizer on device ${optimizer[DEVICE_ORDINAL]} needs its own GradScaler`);
    }
    let k = this.dev.slots.get(optimizer);
    if (k === undefined) {
      if (this.dev.slots.size >= CUDA_SCALER.slots) throw new AdampError('ERR_ADAMP_UNSUPPORTED', `GradScaler: at most ${CUDA_SCALER.slots} CUDA optimizers share one scaler`);
      k = this.dev.slots.size;
      this.dev.slots.set(optimizer, k);
    }
    return k;
  }

  /** The device's scale and growth tracker into the host fields, when the device changed them (waits). */
  private readDevice(): void {
    if (this.dev === null || !this.dev.stale) return;
    const a = this.dev.t.toHost();
    const w = new Uint32Array(a.buffer);
    this.scaleValue = a[0];
    this.growthTracker = w[2] + w[3] * 2 ** 32;
    this.dev.stale = false;
  }

  /** The host's scale and growth tracker into the device state (found flags cleared). */
  private writeDevice(): void {
    if (this.dev === null) return;
    const a = new Float32Array(CUDA_SCALER.bytes / 4);
    const w = new Uint32Array(a.buffer);
    a[0] = this.scaleValue;
    w[2] = this.growthTracker % 2 ** 32;
    w[3] = Math.floor(this.growthTracker / 2 ** 32);
    this.dev.t.copyFromHost(a);
  }

  private stateOf(optimizer: AnyOptimizer, what: string): PerOptimizer {
    if (!(optimizer instanceof Optimizer)) throw invalid(`GradScaler.${what}(optimizer): optimizer must be an adamp optimizer, got ${describe(optimizer)}`);
    let st = this.perOptimizer.get(optimizer);
    if (st === undefined) {
      st = { stage: Stage.ready };
      this.perOptimizer.set(optimizer, st);
    }
    return st;
  }
}

function allParams(optimizer: AnyOptimizer): AnyParam[] {
  const out: AnyParam[] = [];
  for (const g of optimizer.paramGroups) out.push(...(g.params as AnyParam[]));
  return out;
}

function checkGrowth(v: unknown, where: string): number {
  const x = positive(v, where);
  if (!(x > 1)) throw invalid(`${where} must be > 1, got ${x}`);
  return x;
}

function checkBackoff(v: unknown, where: string): number {
  const x = positive(v, where);
  if (!(x < 1)) throw invalid(`${where} must be < 1, got ${x}`);
  return x;
}

function checkInterval(v: unknown, where: string): number {
  if (!Number.isSafeInteger(v) || (v as number) <= 0) throw invalid(`${where} must be a positive integer, got ${describe(v)}`);
  return v as number;
}
