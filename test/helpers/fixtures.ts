/**
 * Loads the reference fixtures (test/fixtures, converted from the official code's output by
 * scripts/convert-fixtures.js) and maps PyTorch hyperparameter names to adamp's.
 */
import * as fs from 'fs';
import * as path from 'path';

export type Ref = [offset: number, length: number];

export interface FixtureCase {
  name: string;
  optimizer: 'adamp' | 'sgdp';
  hyperparameters: Record<string, unknown>;
  params: Array<{ shape: number[]; data: Ref }>;
  grads: Array<Array<Ref | null>>;
  steps: Array<{
    step: number;
    params: Array<{
      projection: string;
      channelMaxCos: number | null;
      channelThreshold: number | null;
      layerMaxCos: number | null;
      layerThreshold: number | null;
      data: Ref;
      state: null | { step?: number; exp_avg?: Ref; exp_avg_sq?: Ref; momentum?: Ref };
    }>;
  }>;
  /** The array a Ref points at (a fresh copy). */
  get(ref: Ref): Float32Array;
}

export const FIXTURE_DIR = path.join(__dirname, '..', 'fixtures');

export function fixtureNames(): string[] {
  return fs.readdirSync(FIXTURE_DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
}

export function loadFixture(name: string): FixtureCase {
  const c = JSON.parse(fs.readFileSync(path.join(FIXTURE_DIR, `${name}.json`), 'utf8'));
  const bin = fs.readFileSync(path.join(FIXTURE_DIR, `${name}.f32`));
  const all = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
  c.get = (ref: Ref) => all.slice(ref[0], ref[0] + ref[1]);
  return c as FixtureCase;
}

const NAMES: Record<string, string> = {
  lr: 'lr', betas: 'betas', eps: 'eps', weight_decay: 'weightDecay', delta: 'delta', wd_ratio: 'wdRatio',
  nesterov: 'nesterov', momentum: 'momentum', dampening: 'dampening',
};

/** PyTorch-named hyperparameters -> adamp options. */
export function toOptions(hp: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(hp)) {
    if (!(k in NAMES)) throw new Error(`unknown hyperparameter ${k}`);
    out[NAMES[k]] = v;
  }
  return out;
}

/** max |a - b| and max |b| over a tensor. */
export function maxDiff(a: Float32Array, b: Float32Array): { diff: number; scale: number } {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > diff || Number.isNaN(d)) diff = Number.isNaN(d) && !(Number.isNaN(a[i]) && Number.isNaN(b[i])) ? Infinity : Math.max(diff, Number.isNaN(d) ? 0 : d);
    if (Math.abs(b[i]) > scale) scale = Math.abs(b[i]); // NaN expected elements are compared as NaN, not as a scale
  }
  return { diff, scale };
}

export function maxAbs(a: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Throws unless every |got - want| <= 1e-6 * max|want| (docs/numerics.md#tolerance, float32). */
export function expectClose(got: Float32Array, want: Float32Array, what: string): void {
  const tol = 1e-6 * Math.max(maxAbs(want), 1e-30);
  const { diff } = maxDiff(got, want);
  if (!(diff <= tol)) throw new Error(`${what}: max |got - want| = ${diff} > ${tol}`);
}
