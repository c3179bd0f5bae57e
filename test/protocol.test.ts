/**
 * The step protocol's seam (docs/architecture.md, "The step protocol"): a tensor's units split
 * into 2-4 shards, each shard in arrays of its own (as on different ranks), stats per shard, the
 * partials concatenated in unit order, one decision, apply per shard, the norm partials folded:
 * params, state and the info record byte-identical to the unsharded step, on every backend with a
 * protocol (js, native), for every registered optimizer, every layout, norms on and off.
 */
import { createEngine } from '../lib/backends/select';
import type { Engine, Geometry, Shard, Slot, StepJob, StepOptions } from '../lib/backends/engine';
import { INFO_STRIDE } from '../lib/core/info';
import { SPECS } from '../lib/optim/registry';
import type { AnySpec } from '../lib/optim/spec';
import { resolveOptions } from '../lib/optim/options';
import '../lib/backends/native';
import { availableBackends } from './helpers/backends';
import { gradOfKind, randn, rng } from './helpers/random';

/** Shapes as outer x channels x inner, covering each engine's layouts and unit kinds. */
const GEOMETRIES: Array<{ outer: number; channels: number; inner: number; eligible: boolean }> = [
  { outer: 1, channels: 37, inner: 45, eligible: true }, // rows (PyTorch layout)
  { outer: 1, channels: 3, inner: 70001, eligible: true }, // rows longer than a unit / a piece
  { outer: 300, channels: 41, inner: 1, eligible: true }, // channels innermost (TensorFlow.js)
  { outer: 16000, channels: 13, inner: 1, eligible: true }, // several row chunks (units), folded in order
  { outer: 400, channels: 5, inner: 100, eligible: true }, // a middle channel axis, several units
  { outer: 1, channels: 1, inner: 150000, eligible: false }, // one pass, several blocks
];

const OPTIONS: Record<string, Record<string, unknown>> = {
  adamp: { lr: 0.01, weightDecay: 0.1, nesterov: true },
  sgdp: { lr: 0.1, momentum: 0.9, weightDecay: 1e-3 },
  adamw: { lr: 0.01 },
  sgd: { lr: 0.1, momentum: 0.9, weightDecay: 1e-3, nesterov: true },
};

function bytesEqual(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

function job(spec: AnySpec, slot: Slot, info: Float64Array): StepJob {
  const options = resolveOptions(spec, OPTIONS[spec.kind], null, 'options', 'construct');
  return { spec, options, hyper: spec.wire(options), slots: [slot], info };
}

/** Cut points (unit indices, first 0 and last `units`) splitting the units into `k` shards at random places. */
function cuts(r: () => number, units: number, k: number): number[] {
  const inner = new Set<number>();
  while (inner.size < Math.min(k - 1, units - 1)) inner.add(1 + Math.floor(r() * (units - 1)));
  return [0, ...[...inner].sort((a, b) => a - b), units];
}

/** One step of `slot` through the protocol, split at `at` (unit indices), each shard in its own arrays. */
function shardedStep(engine: Engine, j: StepJob, at: number[], options: StepOptions): void {
  const proto = engine.protocol!;
  const s = j.slots[0];
  const g: Geometry = { outer: s.outer, channels: s.channels, inner: s.inner, eligible: s.eligible, numel: s.p.length };
  const starts = proto.units(j.spec, g);
  const shards: Shard[] = [];
  for (let k = 0; k + 1 < at.length; k++) {
    const a = starts[at[k]], b = starts[at[k + 1]];
    shards.push({ ...s, p: s.p.slice(a, b), g: s.g.slice(a, b), state: s.state.map((x) => x.slice(a, b)), offset: a, numel: s.p.length });
  }
  const partials = shards.map((sh, k) => proto.stats({ spec: j.spec, options: j.options, hyper: j.hyper, shard: sh }, at[k], at[k + 1]));
  const all = new Float64Array(partials.reduce((n, x) => n + x.length, 0));
  partials.reduce((o, x) => (all.set(x, o), o + x.length), 0);
  const decision = proto.decide(j.spec, g, j.options, j.hyper, all);
  const norms = shards.map((sh, k) => proto.apply({ spec: j.spec, options: j.options, hyper: j.hyper, shard: sh }, decision, at[k], at[k + 1], options));
  const allNorms = new Float64Array(norms.reduce((n, x) => n + x.length, 0));
  norms.reduce((o, x) => (allNorms.set(x, o), o + x.length), 0);
  proto.finish(j.spec, g, decision, allNorms, j.info, 0);
  // gather the shards back
  shards.forEach((sh) => {
    s.p.set(sh.p, sh.offset);
    sh.state.forEach((x, i) => s.state[i].set(x, sh.offset));
  });
}

const backendsWithProtocol = availableBackends().filter((b) => b === 'js' || b === 'native');

describe.each(backendsWithProtocol)('backend %s', (backend) => {
  const engine = createEngine(backend, { threads: 2 });

  test('has the protocol', () => {
    expect(engine.protocol).toBeDefined();
  });

  for (const spec of SPECS) {
    test(`${spec.name}: 2-4 shards give the unsharded step byte for byte, every layout, norms on and off`, () => {
      const r = rng(spec.kind.length * 101 + (backend === 'js' ? 1 : 2));
      let compared = 0;
      for (const geo of GEOMETRIES) {
        const n = geo.outer * geo.channels * geo.inner;
        const g: Geometry = { ...geo, numel: n };
        const units = engine.protocol!.units(spec, g).length - 1;
        for (const norms of [true, false]) {
          const p0 = randn(r, n);
          const make = (): Slot => ({ p: p0.slice(), g: new Float32Array(n), state: spec.slots.map(() => new Float32Array(n)), step: 1, ...geo });
          const a = make(), b = make();
          for (let step = 1; step <= 3; step++) {
            // every decision kind over the steps: random, orthogonal per channel (PyTorch layout), parallel
            const grad = gradOfKind(r, a.p, geo.outer === 1 ? geo.channels : 1, ['random', 'channel', 'parallel'][step - 1]);
            a.g = grad; b.g = grad.slice();
            a.step = b.step = step;
            const ia = new Float64Array(INFO_STRIDE), ib = new Float64Array(INFO_STRIDE);
            engine.step(job(spec, a, ia), { norms });
            const at = cuts(r, units, 2 + Math.floor(r() * 3));
            shardedStep(engine, job(spec, b, ib), at, { norms });
            const where = `${spec.name} ${JSON.stringify(geo)} norms=${norms} step ${step} shards at ${at.join(',')} of ${units} units`;
            if (!bytesEqual(a.p, b.p)) throw new Error(`${where}: params differ`);
            a.state.forEach((x, i) => { if (!bytesEqual(x, b.state[i])) throw new Error(`${where}: state ${i} differs`); });
            if (!bytesEqual(ia, ib)) throw new Error(`${where}: info differs: ${Array.from(ia)} vs ${Array.from(ib)}`);
            compared++;
          }
        }
      }
      expect(compared).toBe(GEOMETRIES.length * 2 * 3);
    });
  }

  test('a shard that does not hold exactly its units is refused', () => {
    const spec = SPECS[0];
    const geo = GEOMETRIES[0];
    const n = geo.outer * geo.channels * geo.inner;
    const units = engine.protocol!.units(spec, { ...geo, numel: n });
    const slot: Slot = { p: new Float32Array(n), g: new Float32Array(n), state: [new Float32Array(n), new Float32Array(n)], step: 1, ...geo };
    const j = job(spec, slot, new Float64Array(INFO_STRIDE));
    const shard: Shard = { ...slot, p: slot.p.slice(0, units[2] + 1), g: slot.g.slice(0, units[2] + 1), state: slot.state.map((x) => x.slice(0, units[2] + 1)), offset: 0, numel: n };
    expect(() => engine.protocol!.stats({ spec, options: j.options, hyper: j.hyper, shard }, 0, 2)).toThrow();
  });
});
