/**
 * The CUDA engine: the optimizer's state lives in device buffers of one context (one stream).
 *
 * Host params (Float32Array): a tensor is uploaded once, at its first step (p and its state);
 * each step uploads only the gradient and queues the fused kernels, without waiting for the
 * device. Params and state are written back into the host arrays by `flush()` (the facade calls
 * it before it reads them: `synchronize()`, `stateDict()`, `dispose()`).
 *
 * Device params (DeviceTensor, `Slot.device`): the kernels read and write the param (and a
 * device gradient) in place; the context owns only the state. A non-contiguous (strided) param
 * or gradient is gathered into a context buffer before the step and the param scattered back
 * after it, on the same stream. Their state is read back on request (`readDeviceState`).
 *
 * `flushInfo()` fills the info records of the last step (for `lastStepInfo`). `invalidate()`
 * drops every device copy after the facade replaced state on the host (`loadStateDict`); the
 * next step uploads again.
 *
 * note: between flushes the host `param.data` arrays are stale: the device holds the truth.
 */
import type { Engine, Slot, StepJob, StepOptions } from '../engine';
import { INFO_STRIDE } from '../../core/info';
import { CudaBuffer, CudaExternal, type CudaAddon, type CudaBufferHandle, type CudaConfig, type CudaHandle } from './binding';

interface Entry {
  id: number;
  /** Host params: the array written back by flush(). Device params: null. */
  p: Float32Array | null;
  m: Float32Array;
  v: Float32Array;
  numel: number;
  /** AdamP: steps the device copy has completed. */
  steps: number;
  /** Device params: which of p and g the kernels read from caller memory (CudaExternal flags, fixed at creation). */
  external: number;
  /** This step's p runs in a context buffer, gathered from the caller's view and scattered back after the step. */
  staged: bigint | null;
  /** Buffers standing in for an external p or g when this step's tensor is strided, or its gradient on the host. */
  scratch: { p?: CudaBufferHandle; g?: CudaBufferHandle };
}

export interface CudaEngineOptions {
  config?: CudaConfig;
  /** A caller's cudaStream_t to queue on (default: the context's own stream). */
  stream?: bigint;
}

export class CudaEngine implements Engine {
  readonly name = 'cuda' as const;
  private readonly addon: CudaAddon;
  private kind: 'adamp' | 'sgdp' | null = null;
  private readonly config: CudaConfig | undefined;
  private ctx: CudaHandle | null = null;
  private stream: bigint | null;
  /** Keyed by the host param's data array, or by the device param (`DeviceSlot.key`). */
  private entries = new Map<object, Entry>();
  /** Where the info record of each tensor's last step goes (filled on request): tensor id -> (array, slot index). */
  private pendingInfo = new Map<number, { info: Float64Array; index: number }>();
  /** Host params changed on the device since the last flush. */
  private dirty = false;

  constructor(addon: CudaAddon, options: CudaEngineOptions) {
    this.addon = addon;
    this.config = options.config;
    this.stream = options.stream ?? null;
  }

  step(job: StepJob, _options: StepOptions): void {
    const kind = job.spec.kind;
    if (kind !== 'adamp' && kind !== 'sgdp') throw new Error(`CudaEngine: ${job.spec.name} is not available on this build's CUDA engine`);
    if (this.kind === null) this.kind = kind;
    const { slots, info } = job;
    const ids = this.prepare(slots, kind);
    const o = job.options as { lr: number; betas: [number, number]; eps: number; weightDecay: number; delta: number; wdRatio: number; nesterov: boolean; momentum: number; dampening: number };
    if (kind === 'adamp') {
      this.addon.cudaStepAdamP(this.context(), ids, { lr: o.lr, beta1: o.betas[0], beta2: o.betas[1], eps: o.eps, weightDecay: o.weightDecay, delta: o.delta, wdRatio: o.wdRatio, nesterov: o.nesterov });
      for (const s of slots) this.entries.get(keyOf(s))!.steps = s.step;
    } else {
      this.addon.cudaStepSGDP(this.context(), ids, o);
    }
    this.finishStep(slots, ids, info);
  }

  /** Queues every group's step, then resolves when the device has finished them (waited off the JS thread). */
  async stepAsync(jobs: readonly StepJob[], options: StepOptions): Promise<void> {
    for (const j of jobs) this.step(j, options);
    if (this.ctx !== null) await this.addon.cudaWhenDone(this.ctx);
  }

  /** Writes the info records of the last step into the arrays the facade passed (waits for the device). */
  flushInfo(): void {
    if (this.ctx === null || this.pendingInfo.size === 0) return;
    const ids = Int32Array.from(this.pendingInfo.keys());
    const all = new Float64Array(ids.length * INFO_STRIDE);
    this.addon.cudaInfo(this.ctx, ids, all);
    let k = 0;
    for (const { info, index } of this.pendingInfo.values()) {
      info.set(all.subarray(k * INFO_STRIDE, (k + 1) * INFO_STRIDE), index * INFO_STRIDE);
      k++;
    }
    this.pendingInfo.clear();
  }

  /** Waits for the queued steps; writes host params and their state back, and the pending info records. */
  flush(): void {
    if (this.ctx === null) return;
    this.flushInfo();
    if (this.dirty) {
      for (const e of this.entries.values()) {
        if (e.p === null) continue;
        this.addon.cudaDownload(this.ctx, e.id, CudaBuffer.p, e.p);
        this.addon.cudaDownload(this.ctx, e.id, CudaBuffer.m, e.m);
        if (this.kind === 'adamp') this.addon.cudaDownload(this.ctx, e.id, CudaBuffer.v, e.v);
      }
      this.dirty = false;
    }
    this.addon.cudaSync(this.ctx);
  }

  readDeviceState(key: object): Float32Array[] | undefined {
    const e = this.entries.get(key);
    if (this.ctx === null || e === undefined || e.p !== null) return undefined;
    const m = new Float32Array(e.numel);
    this.addon.cudaDownload(this.ctx, e.id, CudaBuffer.m, m);
    if (this.kind !== 'adamp') return [m];
    const v = new Float32Array(e.numel);
    this.addon.cudaDownload(this.ctx, e.id, CudaBuffer.v, v);
    return [m, v];
  }

  setStream(stream: bigint | null): void {
    this.stream = stream;
    if (this.ctx !== null) this.addon.cudaSetStream(this.ctx, stream);
  }

  currentStream(): bigint {
    return this.addon.cudaGetStream(this.context());
  }

  /**
   * The facade replaced optimizer state on the host. Host params keep their current values (as
   * in PyTorch's load_state_dict), which only the device has: write them back first, then drop
   * every device copy; the next step uploads params and the new state. Device params stay where
   * they are (their memory is the caller's).
   */
  invalidate(): void {
    if (this.ctx !== null && this.dirty) {
      for (const e of this.entries.values()) if (e.p !== null) this.addon.cudaDownload(this.ctx, e.id, CudaBuffer.p, e.p);
    }
    this.release();
  }

  dispose(): void {
    this.release();
  }

  private release(): void {
    if (this.ctx !== null) this.addon.cudaDestroy(this.ctx); // waits for queued work, frees every buffer the context owns
    for (const e of this.entries.values()) {
      if (e.scratch.p) this.addon.cudaBufferFree(e.scratch.p);
      if (e.scratch.g) this.addon.cudaBufferFree(e.scratch.g);
    }
    this.ctx = null;
    this.entries = new Map();
    this.pendingInfo = new Map();
    this.dirty = false;
  }

  private context(): CudaHandle {
    if (this.ctx === null) {
      this.ctx = this.addon.cudaCreate(this.kind ?? 'adamp', this.config);
      if (this.stream !== null) this.addon.cudaSetStream(this.ctx, this.stream);
    }
    return this.ctx;
  }

  /**
   * The address of a buffer of ours for p or g of a device tensor: the context's own (not
   * external), or a scratch allocation bound in place of the caller's memory for this step.
   */
  private ownBuffer(h: CudaHandle, e: Entry, which: 'p' | 'g'): bigint {
    const sel = which === 'p' ? CudaBuffer.p : CudaBuffer.g;
    const flag = which === 'p' ? CudaExternal.p : CudaExternal.g;
    if (!(e.external & flag)) return this.addon.cudaDeviceAddress(h, e.id, sel);
    let buf = e.scratch[which];
    if (buf === undefined) buf = e.scratch[which] = this.addon.cudaAlloc(this.config?.device ?? 0, e.numel * 4);
    const addr = this.addon.cudaBufferAddress(buf);
    this.addon.cudaBind(h, e.id, sel, addr);
    return addr;
  }

  private finishStep(slots: readonly Slot[], ids: Int32Array, info: Float64Array): void {
    const h = this.context();
    // Strided device params: scatter the updated values back into the caller's view.
    for (let k = 0; k < slots.length; k++) {
      const d = slots[k].device;
      if (d === undefined) continue;
      const e = this.entries.get(d.key)!;
      if (e.staged !== null) this.addon.cudaCopyStrided(h, d.p.pointer, d.p.strides, e.staged, null, d.p.shape);
    }
    if (slots.some((s) => s.device === undefined)) this.dirty = true;
    if (info.length < ids.length * INFO_STRIDE) {
      throw new RangeError(`CudaEngine: info has ${info.length} doubles, ${ids.length * INFO_STRIDE} needed`);
    }
    // The device keeps one record per tensor (its last step): a tensor stepped again replaces its entry.
    for (let k = 0; k < ids.length; k++) this.pendingInfo.set(ids[k], { info, index: k });
  }

  /** Device ids of the slots: new tensors are added (state uploaded when the host has it), gradients uploaded or bound. */
  private prepare(slots: readonly Slot[], kind: 'adamp' | 'sgdp'): Int32Array {
    if (kind !== this.kind) throw new Error(`CudaEngine: this engine steps ${this.kind}, not ${kind}`);
    const h = this.context();
    const ids = new Int32Array(slots.length);
    for (let k = 0; k < slots.length; k++) {
      const s = slots[k];
      const d = s.device;
      const key = keyOf(s);
      let e = this.entries.get(key);
      const sm = s.state[0], sv = kind === 'adamp' ? s.state[1] : EMPTY_STATE;
      if (e !== undefined && (e.m !== sm || (kind === 'adamp' && e.v !== sv))) e = undefined; // state replaced: upload again
      if (e === undefined) {
        const known = this.entries.get(key);
        const numel = d ? d.numel : s.p.length;
        const external = d ? (d.p.strides === null ? CudaExternal.p : 0) | (d.g !== null && d.g.strides === null ? CudaExternal.g : 0) : 0;
        const id = known?.id ?? this.addon.cudaAddTensor(h, numel, s.outer, s.channels, s.inner, s.eligible, external);
        e = {
          id, p: d ? null : s.p, m: sm, v: sv, numel, steps: kind === 'adamp' ? s.step - 1 : 0,
          external: known?.external ?? external, staged: null, scratch: known?.scratch ?? {},
        };
        if (!d) this.addon.cudaUpload(h, id, CudaBuffer.p, s.p);
        // Device params start with zero state made on the device (empty arrays), or upload loaded state.
        if (sm.length === numel) this.addon.cudaUpload(h, id, CudaBuffer.m, sm);
        if (kind === 'adamp') {
          if (sv.length === numel) this.addon.cudaUpload(h, id, CudaBuffer.v, sv);
          this.addon.cudaSetStep(h, id, s.step - 1);
        }
        this.entries.set(key, e);
      } else if (kind === 'adamp' && e.steps !== s.step - 1) {
        this.addon.cudaSetStep(h, e.id, s.step - 1);
      }
      if (d) {
        // The param: bound in place when contiguous, else gathered into a buffer of ours (scattered back after the step).
        if (d.p.strides === null && e.external & CudaExternal.p) {
          this.addon.cudaBind(h, e.id, CudaBuffer.p, d.p.pointer);
          e.staged = null;
        } else {
          e.staged = this.ownBuffer(h, e, 'p');
          this.addon.cudaCopyStrided(h, e.staged, null, d.p.pointer, d.p.strides, d.p.shape);
        }
        // The gradient: bound in place when contiguous on the device, else copied into a buffer of ours.
        if (d.g !== null && d.g.strides === null && e.external & CudaExternal.g) {
          this.addon.cudaBind(h, e.id, CudaBuffer.g, d.g.pointer);
        } else {
          const buf = this.ownBuffer(h, e, 'g');
          if (d.g !== null) this.addon.cudaCopyStrided(h, buf, null, d.g.pointer, d.g.strides, d.g.shape);
          else this.addon.cudaUpload(h, e.id, CudaBuffer.g, s.g);
        }
      } else {
        this.addon.cudaUpload(h, e.id, CudaBuffer.g, s.g);
      }
      ids[k] = e.id;
    }
    return ids;
  }
}

const EMPTY_STATE = new Float32Array(0);

function keyOf(s: Slot): object {
  return s.device ? s.device.key : s.p;
}
