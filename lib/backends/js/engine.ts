/**
 * The js engine: the CPU fallback that runs everywhere, generic over the registered specs.
 *
 * A tensor's step follows the step protocol (docs/architecture.md): its plan (./plan.ts) cuts it
 * into units; stats runs pass 1 per unit (the spec's `update`, per-channel sums in double) and
 * folds the unit's partial into the tensor's sums in unit order; decide applies the projection
 * test (lib/core/decision.ts); apply runs pass 2 per unit (projection, decay, step) and folds its
 * norm partials in unit order. `protocol` exposes the same phases on shards, with the same folds,
 * so a sharded step is bit-identical to this one. One-pass tensors (1-D, AdamW, SGD) skip stats
 * and decide.
 *
 * Element-wise arithmetic reproduces the float32 operations one by one with `Math.fround`
 * (docs/numerics.md#conventions). Where WebAssembly SIMD is available, AdamP and SGDP run in a
 * 128-bit SIMD kernel with bit-identical results (./wasm.ts); the TypeScript loops (./loops.ts) are
 * the fallback, forced with `ADAMP_JS_WASM=0` or `new JsEngine({ wasm: false })`.
 */
import { readEnv } from '../../core/env';
import { Decision, Info, INFO_STRIDE } from '../../core/info';
import type { AnySpec } from '../../optim/spec';
import type { Engine, Geometry, Shard, ShardJob, Slot, StepJob, StepOptions, StepProtocol } from '../engine';
import { planOf, UNIT, unitChannels, type JsPlan } from './plan';
import { applyRows, NORM_STRIDE, onePass, PART_STRIDE, statsRows, type ApplyArgs } from './loops';
import { decideTensor, foldNorms, SumsScratch, writeDecided, writeOnePass } from './records';
import { DEFAULT_CHUNK, wasmKernel, wasmTensor, type WasmKernel, type WasmPlan } from './wasm';
import { stageHalfSlot } from '../half-staging';

export interface JsEngineOptions {
  /**
   * Use the WebAssembly SIMD kernel where the runtime supports it (default: true, unless the
   * environment variable `ADAMP_JS_WASM` is `0`). Results are identical either way.
   */
  wasm?: boolean;
  /** Elements per chunk streamed through the kernel (default 16384; at most the kernel's capacity). For tests. */
  chunk?: number;
  /**
   * Largest tensor whose u stays in the kernel's memory between the two sweeps (default and at
   * most the kernel's capacity, 4M elements); larger ones are streamed twice. For tests.
   */
  whole?: number;
}

export class JsEngine implements Engine {
  readonly name = 'js' as const;
  readonly protocol: StepProtocol;
  private readonly sums = new SumsScratch();
  private u = new Float32Array(0);
  private part = new Float64Array(0);
  private readonly norms = new Float64Array(NORM_STRIDE);
  private readonly unitNorms = new Float64Array(NORM_STRIDE);
  private readonly kernel: WasmKernel | null;
  private readonly wplan: WasmPlan;

  constructor(options: JsEngineOptions = {}) {
    const wanted = options.wasm ?? readEnv('ADAMP_JS_WASM') !== '0';
    this.kernel = wanted ? wasmKernel() : null;
    const k = this.kernel;
    this.wplan = {
      chunk: Math.max(1, Math.min(Math.floor(options.chunk ?? DEFAULT_CHUNK), k?.chunk ?? DEFAULT_CHUNK)),
      whole: Math.max(0, Math.min(Math.floor(options.whole ?? Infinity), k?.cap ?? 0)),
    };
    this.protocol = new JsProtocol(this.sums);
  }

  /** True when AdamP and SGDP steps run in the WebAssembly SIMD kernel (tensors it cannot take still use the TypeScript loops). */
  get usesWasm(): boolean {
    return this.kernel !== null;
  }

  step(job: StepJob, options: StepOptions): void {
    const { spec, slots, info } = job;
    const kernel = this.kernel;
    for (let k = 0; k < slots.length; k++) {
      // 16-bit slots: stepped on float32 scratch, rounded back after (./half.ts)
      const { slot: s, commit } = stageHalfSlot(slots[k]);
      const o = k * INFO_STRIDE;
      if (kernel !== null && kernel.takes(spec, s)) {
        wasmTensor(kernel, this.wplan, spec, job.options, s, info, o, options.norms, this.sums, (n) => this.scratch(n));
      } else {
        this.tensor(spec, job.options, s, info, o, options.norms);
      }
      commit();
    }
  }

  private scratch(n: number): Float32Array {
    if (this.u.length < n) this.u = new Float32Array(n);
    return this.u;
  }

  /** One tensor in the TypeScript loops: the four phases, unit by unit, folding as it goes. */
  private tensor(spec: AnySpec, opts: Readonly<Record<string, unknown>>, s: Slot, info: Float64Array, o: number, norms: boolean): void {
    const g = geometryOf(s);
    const plan = planOf(spec, g);
    const sc = spec.scalars(opts, s.step);
    const nacc = this.norms.fill(0);
    if (plan.onePass) {
      const wdf = spec.wdFactor(opts, 1);
      const u = this.scratch(Math.min(g.numel, UNIT));
      const np = this.unitNorms;
      for (let k = 0; k + 1 < plan.starts.length; k++) {
        // the unit's elements index u from 0: a view that starts at the unit
        onePass(spec, sc, s, 0, plan.starts[k], plan.starts[k + 1], wdf, norms, u, np.fill(0), 0);
        foldNorms(nacc, np, 0);
      }
      writeOnePass(spec, info, o, norms ? nacc : nacc.fill(NaN));
      return;
    }
    const u = this.scratch(g.numel);
    const sums = this.sums.take(g.channels);
    for (let k = 0; k + 1 < plan.starts.length; k++) {
      const { c0, n } = unitChannels(plan, g, k);
      const part = this.partial(n);
      statsRows(spec, sc, s, 0, g, plan.starts[k], plan.starts[k + 1], u, c0, part, 0);
      sums.fold(part, 0, c0, n);
    }
    const d = decideTensor(spec, opts, g, sums, norms);
    for (let k = 0; k + 1 < plan.starts.length; k++) {
      const np = this.unitNorms.fill(0);
      applyRows(spec, sc, s, 0, g, plan.starts[k], plan.starts[k + 1], u, false, d, np, 0);
      foldNorms(nacc, np, 0);
    }
    writeDecided(info, o, d.fields, norms ? nacc : nacc.fill(NaN));
  }

  /** A zeroed partial record for `channels` channels. */
  private partial(channels: number): Float64Array {
    const n = PART_STRIDE * channels;
    if (this.part.length < n) this.part = new Float64Array(Math.max(n, 2 * this.part.length));
    return this.part.fill(0, 0, n);
  }
}

function geometryOf(s: Slot): Geometry {
  return { outer: s.outer, channels: s.channels, inner: s.inner, eligible: s.eligible, numel: s.p.length };
}

/**
 * The protocol on shards: the same loops and folds as `JsEngine.step`, split at unit boundaries.
 * Decision record: the 6 decision fields, wdf, then div and scale per channel.
 */
class JsProtocol implements StepProtocol {
  constructor(private readonly sums: SumsScratch) {}

  units(spec: AnySpec, g: Geometry): number[] {
    return planOf(spec, g).starts.slice();
  }

  stats(job: ShardJob, u0: number, u1: number): Float64Array {
    const { spec } = job;
    const shard = stageHalfSlot(job.shard, job.shard.offset).slot; // pass 1 writes no param: nothing to round back
    const g = geometryOf(shard);
    g.numel = shard.numel;
    const plan = this.checkedPlan(spec, g, shard, u0, u1);
    if (plan.onePass) return new Float64Array(0);
    const sc = spec.scalars(job.options, shard.step);
    let size = 0;
    for (let k = u0; k < u1; k++) size += PART_STRIDE * unitChannels(plan, g, k).n;
    const out = new Float64Array(size);
    const u = new Float32Array(shard.p.length);
    let at = 0;
    for (let k = u0; k < u1; k++) {
      const { c0, n } = unitChannels(plan, g, k);
      statsRows(spec, sc, shard, shard.offset, g, plan.starts[k], plan.starts[k + 1], u, c0, out, at);
      at += PART_STRIDE * n;
    }
    return out;
  }

  decide(spec: AnySpec, g: Geometry, options: Readonly<Record<string, unknown>>, _hyper: Float64Array, partials: Float64Array): Float64Array {
    const plan = planOf(spec, g);
    if (plan.onePass) return new Float64Array(0);
    const sums = this.sums.take(g.channels);
    let at = 0;
    for (let k = 0; k + 1 < plan.starts.length; k++) {
      const { c0, n } = unitChannels(plan, g, k);
      sums.fold(partials, at, c0, n);
      at += PART_STRIDE * n;
    }
    if (at !== partials.length) throw new RangeError(`protocol.decide: partials hold ${partials.length} doubles, the tensor's units need ${at}`);
    const d = decideTensor(spec, options, g, sums, true);
    const rec = new Float64Array(7 + 2 * g.channels);
    rec.set(d.fields, 0);
    rec[6] = d.wdf;
    rec.set(d.div.subarray(0, g.channels), 7);
    rec.set(d.scale.subarray(0, g.channels), 7 + g.channels);
    return rec;
  }

  apply(job: ShardJob, decision: Float64Array, u0: number, u1: number, options: StepOptions): Float64Array {
    const { spec } = job;
    const { slot: shard, commit } = stageHalfSlot(job.shard, job.shard.offset);
    const out = this.applyShard(job, shard, decision, u0, u1, options);
    commit();
    return out;
  }

  private applyShard(job: ShardJob, shard: Shard, decision: Float64Array, u0: number, u1: number, options: StepOptions): Float64Array {
    const { spec } = job;
    const g = geometryOf(shard);
    g.numel = shard.numel;
    const plan = this.checkedPlan(spec, g, shard, u0, u1);
    const sc = spec.scalars(job.options, shard.step);
    const out = new Float64Array(NORM_STRIDE * (u1 - u0));
    if (plan.onePass) {
      const wdf = spec.wdFactor(job.options, 1);
      const u = new Float32Array(Math.min(UNIT, shard.p.length));
      for (let k = u0; k < u1; k++) onePass(spec, sc, shard, shard.offset, plan.starts[k], plan.starts[k + 1], wdf, options.norms, u, out, NORM_STRIDE * (k - u0));
      return options.norms ? out : out.fill(NaN);
    }
    const code = decision[Info.decision];
    const a: ApplyArgs = {
      projected: code === Decision.channel || code === Decision.layer,
      div: decision.subarray(7, 7 + g.channels), scale: decision.subarray(7 + g.channels, 7 + 2 * g.channels),
      wdf: decision[6], norms: options.norms,
    };
    const u = new Float32Array(shard.p.length);
    for (let k = u0; k < u1; k++) applyRows(spec, sc, shard, shard.offset, g, plan.starts[k], plan.starts[k + 1], u, true, a, out, NORM_STRIDE * (k - u0));
    return options.norms ? out : out.fill(NaN);
  }

  finish(spec: AnySpec, g: Geometry, decision: Float64Array, norms: Float64Array, info: Float64Array, at: number): void {
    const plan = planOf(spec, g);
    const units = plan.starts.length - 1;
    if (norms.length !== NORM_STRIDE * units) throw new RangeError(`protocol.finish: norms hold ${norms.length} doubles, the tensor's ${units} units need ${NORM_STRIDE * units}`);
    const acc = new Float64Array(NORM_STRIDE);
    for (let k = 0; k < units; k++) foldNorms(acc, norms, NORM_STRIDE * k);
    if (plan.onePass) writeOnePass(spec, info, at, acc);
    else writeDecided(info, at, decision.subarray(0, 6), acc);
  }

  /** The plan, after checking that the shard holds exactly units [u0, u1). */
  private checkedPlan(spec: AnySpec, g: Geometry, shard: { offset: number; p: Float32Array }, u0: number, u1: number): JsPlan {
    const plan = planOf(spec, g);
    const units = plan.starts.length - 1;
    if (!(Number.isInteger(u0) && Number.isInteger(u1) && 0 <= u0 && u0 <= u1 && u1 <= units)) {
      throw new RangeError(`protocol: units [${u0}, ${u1}) are not within the tensor's ${units} units`);
    }
    if (shard.offset !== plan.starts[u0] || shard.offset + shard.p.length !== plan.starts[u1]) {
      throw new RangeError(`protocol: the shard holds elements [${shard.offset}, ${shard.offset + shard.p.length}), units [${u0}, ${u1}) are [${plan.starts[u0]}, ${plan.starts[u1]})`);
    }
    return plan;
  }
}
