/** Seeded random data for property tests (no Math.random: every failure reproduces). */
import { Rng } from '../../cli/rng';

/** Uniforms in [0, 1) from the project's one seeded generator (cli/rng.ts). */
export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.uniform();
}

/** Standard normal samples (Box-Muller), as float32. */
export function randn(r: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12), v = r();
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  return out;
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A random shape of rank 0-4 with small dimensions, sometimes with shape[0] == 1 or == numel. */
export function randomShape(r: () => number): number[] {
  const rank = Math.floor(r() * 5);
  const shape: number[] = [];
  for (let d = 0; d < rank; d++) shape.push(1 + Math.floor(r() * (d === 0 ? 24 : 7)));
  const k = r();
  if (rank >= 2 && k < 0.1) shape[0] = 1;
  else if (rank >= 2 && k < 0.2) shape.splice(1, rank - 1, ...new Array(rank - 1).fill(1));
  return shape;
}

/**
 * A gradient of a given kind for weights p viewed as rows x cols:
 * 'random', 'channel' (orthogonal to p row by row), 'layer' (orthogonal to p as a whole),
 * 'parallel' (a multiple of p), 'zero'.
 */
export function gradOfKind(r: () => number, p: Float32Array, rows: number, kind: string): Float32Array {
  const n = p.length;
  const g = randn(r, n);
  if (kind === 'zero') return new Float32Array(n);
  if (kind === 'parallel') return p.map((x) => x * 0.5);
  if (kind === 'random') return g;
  const cols = n / rows;
  const R = kind === 'channel' ? rows : 1;
  const C = kind === 'channel' ? cols : n;
  for (let rr = 0; rr < R; rr++) {
    let gp = 0, pp = 0;
    for (let j = 0; j < C; j++) { gp += g[rr * C + j] * p[rr * C + j]; pp += p[rr * C + j] * p[rr * C + j]; }
    const k = pp > 0 ? gp / pp : 0;
    for (let j = 0; j < C; j++) g[rr * C + j] = g[rr * C + j] - k * p[rr * C + j];
  }
  return g;
}
