/**
 * The CUDA engine: params, gradients and state live in device buffers owned by the optimizer.
 *
 * A tensor is uploaded once, at its first step (p and its state); each step uploads only the
 * gradient and queues the fused kernels, without waiting for the device. Params and state are
 * written back into the host arrays by `flush()` (the facade calls it before it reads them:
 * `synchronize()`, `stateDict()`, `dispose()`), and the info records of the last step by
 * `flushInfo()` (for `lastStepInfo`). `invalidate()` drops the device copies after the facade
 * replaced state on the host (`loadStateDict`); the next step uploads again.
 *
 * note: between flushes the host `param.data` arrays are stale: the device holds the truth.
 */
import type { AdamPScalars, Engine, SGDPScalars, Slot } from '../engine';
import { INFO_STRIDE } from '../engine';
import { CudaBuffer, type CudaAddon, type CudaConfig, type CudaHandle } from './binding';

interface Entry {
  id: number;
  p: Float32Array;
  m: Float32Array;
  v: Float32Array;
  /** AdamP: steps the device copy has completed. */
  steps: number;
}

export interface CudaEngineOptions {
  kind: 'adamp' | 'sgdp';
  config?: CudaConfig;
}

export class CudaEngine implements Engine {
  readonly name = 'cuda' as const;
  private readonly addon: CudaAddon;
  private readonly kind: 'adamp' | 'sgdp';
  private readonly config: CudaConfig | undefined;
  private ctx: CudaHandle | null = null;
  private entries = new Map<Float32Array, Entry>();
  /** Where the info record of each tensor's last step goes (filled on request): tensor id -> (array, slot index). */
  private pendingInfo = new Map<number, { info: Float64Array; index: number }>();
  private dirty = false;

  constructor(addon: CudaAddon, options: CudaEngineOptions) {
    this.addon = addon;
    this.kind = options.kind;
    this.config = options.config;
  }

  stepAdamP(slots: readonly Slot[], hp: AdamPScalars, info: Float64Array): void {
    const ids = this.prepare(slots, 'adamp');
    this.addon.cudaStepAdamP(this.context(), ids, hp);
    for (const s of slots) this.entries.get(s.p)!.steps = s.step;
    this.queued(ids, info);
  }

  stepSGDP(slots: readonly Slot[], hp: SGDPScalars, info: Float64Array): void {
    const ids = this.prepare(slots, 'sgdp');
    this.addon.cudaStepSGDP(this.context(), ids, hp);
    this.queued(ids, info);
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

  /** Writes params and state back into the host arrays, and the pending info records. */
  flush(): void {
    if (this.ctx === null) return;
    this.flushInfo();
    if (!this.dirty) return;
    for (const e of this.entries.values()) {
      this.addon.cudaDownload(this.ctx, e.id, CudaBuffer.p, e.p);
      this.addon.cudaDownload(this.ctx, e.id, CudaBuffer.m, e.m);
      if (this.kind === 'adamp') this.addon.cudaDownload(this.ctx, e.id, CudaBuffer.v, e.v);
    }
    this.dirty = false;
  }

  /**
   * The facade replaced optimizer state on the host. Params keep their current values (as in
   * PyTorch's load_state_dict), which only the device has: write them back first, then drop
   * every device copy; the next step uploads params and the new state.
   */
  invalidate(): void {
    if (this.ctx !== null && this.dirty) {
      for (const e of this.entries.values()) this.addon.cudaDownload(this.ctx, e.id, CudaBuffer.p, e.p);
    }
    this.release();
  }

  dispose(): void {
    this.release();
  }

  private release(): void {
    if (this.ctx !== null) this.addon.cudaDestroy(this.ctx);
    this.ctx = null;
    this.entries = new Map();
    this.pendingInfo = new Map();
    this.dirty = false;
  }

  private context(): CudaHandle {
    if (this.ctx === null) this.ctx = this.addon.cudaCreate(this.kind, this.config);
    return this.ctx;
  }

  private queued(ids: Int32Array, info: Float64Array): void {
    this.dirty = true;
    if (info.length < ids.length * INFO_STRIDE) {
      throw new RangeError(`CudaEngine: info has ${info.length} doubles, ${ids.length * INFO_STRIDE} needed`);
    }
    // The device keeps one record per tensor (its last step): a tensor stepped again replaces its entry.
    for (let k = 0; k < ids.length; k++) this.pendingInfo.set(ids[k], { info, index: k });
  }

  /** Device ids of the slots: new tensors are uploaded, every gradient is uploaded. */
  private prepare(slots: readonly Slot[], kind: 'adamp' | 'sgdp'): Int32Array {
    if (kind !== this.kind) throw new Error(`CudaEngine: this engine steps ${this.kind}, not ${kind}`);
    const h = this.context();
    const ids = new Int32Array(slots.length);
    for (let k = 0; k < slots.length; k++) {
      const s = slots[k];
      let e = this.entries.get(s.p);
      if (e !== undefined && (e.m !== s.m || (kind === 'adamp' && e.v !== s.v))) e = undefined; // state replaced: upload again
      if (e === undefined) {
        const known = this.entries.get(s.p);
        const id = known?.id ?? this.addon.cudaAddTensor(h, s.p.length, s.outer, s.channels, s.inner, s.eligible);
        e = { id, p: s.p, m: s.m, v: s.v, steps: kind === 'adamp' ? s.step - 1 : 0 };
        this.addon.cudaUpload(h, id, CudaBuffer.p, s.p);
        this.addon.cudaUpload(h, id, CudaBuffer.m, s.m);
        if (kind === 'adamp') {
          this.addon.cudaUpload(h, id, CudaBuffer.v, s.v);
          this.addon.cudaSetStep(h, id, s.step - 1);
        }
        this.entries.set(s.p, e);
      } else if (kind === 'adamp' && e.steps !== s.step - 1) {
        this.addon.cudaSetStep(h, e.id, s.step - 1);
      }
      this.addon.cudaUpload(h, e.id, CudaBuffer.g, s.g);
      ids[k] = e.id;
    }
    return ids;
  }
}
