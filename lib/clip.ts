/**
 * `clipGradNorm`: `torch.nn.utils.clip_grad_norm_` (PyTorch 1.13) for adamp's params, with its
 * float32 results bit for bit.
 */
import { AdampError, invalid } from './errors';
import { describe } from './core/describe';
import { DeviceTensor, viewsOverlap } from './device/tensor';
import { isPlainObject, suggest } from './optim/options';

/** Anything with a gradient: a `Param` or `DeviceParam` (or an object `{ grad }`). */
export interface GradHolder {
  grad: Float32Array | DeviceTensor | null | undefined;
}

export interface ClipGradNormOptions {
  /** `2` (default, the L2 norm) or `Infinity` (also `'inf'`: the largest absolute value). */
  normType?: number | 'inf';
  /** Throw (an `AdampError`, before any gradient changes) when the total norm is NaN or infinite. Default `false`, as in PyTorch. */
  errorIfNonfinite?: boolean;
}

// ---------------------------------------------------------------------------------------------
// float32 arithmetic

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** The float32 next to `x` (a finite float32) towards `dir` (+1 or -1). */
function nextF32(x: number, dir: number): number {
  if (x === 0) return dir > 0 ? 1.401298464324817e-45 : -1.401298464324817e-45;
  F32[0] = x;
  U32[0] += (x > 0) === (dir > 0) ? 1 : -1;
  return F32[0];
}

/**
 * `fmaf(a, b, c)` of float32s: a * b + c rounded once to float32. The product is exact in double;
 * the sum is rounded to double once, and rounding that to float32 is right except when the double
 * sum lies exactly halfway between two float32s while the exact sum does not; the exact error of
 * the double sum (TwoSum) settles those.
 */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = Math.fround(s);
  if (r === s || !Number.isFinite(s) || !Number.isFinite(r)) return r;
  const bb = s - p;
  const err = (p - (s - bb)) + (c - bb);
  if (err === 0) return r;
  const other = nextF32(r, s > r ? 1 : -1);
  if (Math.abs(s - r) !== Math.abs(other - s)) return r; // not a tie: the double sum rounds right
  return err > 0 ? Math.max(r, other) : Math.min(r, other);
}

/**
 * `torch.linalg.vector_norm(g, 2)` of a float32 tensor as PyTorch 1.13's CPU kernel computes it
 * (`norm_kernel_tensor_iterator_impl`, the AVX2 build of Debian's python3-torch 1.13.1, GCC 12):
 * eight float32 lanes accumulate `fma(x, x, acc)` over the blocks of 8, the lanes are added
 * left to right, then the last `n % 8` elements go into that sum: when there are 4 or more of
 * them, the first 4 as `sum + f32(x * x)` and the rest as `fma(x, x, sum)`, else all as
 * `fma(x, x, sum)` (how the compiler built that loop; found against this PyTorch on 20,000 random
 * tensors of 1 to 3,000 elements, with no mismatch). Then a float32 square root. No shortcut
 * for one element: a scalar's norm is `sqrt(f32(x * x))`, so it underflows to 0 below ~1e-19.
 */
export function norm2f(g: Float32Array): number {
  const n = g.length;
  if (n === 0) return 0;
  const main = n - (n % 8);
  let a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
  for (let d = 0; d < main; d += 8) {
    a0 = fmaf(g[d], g[d], a0);
    a1 = fmaf(g[d + 1], g[d + 1], a1);
    a2 = fmaf(g[d + 2], g[d + 2], a2);
    a3 = fmaf(g[d + 3], g[d + 3], a3);
    a4 = fmaf(g[d + 4], g[d + 4], a4);
    a5 = fmaf(g[d + 5], g[d + 5], a5);
    a6 = fmaf(g[d + 6], g[d + 6], a6);
    a7 = fmaf(g[d + 7], g[d + 7], a7);
  }
  const f = Math.fround;
  let sum = f(f(f(f(f(f(f(a0 + a1) + a2) + a3) + a4) + a5) + a6) + a7);
  const rest = n - main;
  for (let k = 0; k < rest; k++) {
    const x = g[main + k];
    sum = rest >= 4 && k < 4 ? f(sum + f(x * x)) : fmaf(x, x, sum);
  }
  return f(Math.sqrt(sum));
}

/** `g.abs().max()`: the largest |x|, NaN if any element is NaN (PyTorch propagates NaN); 0 for no elements. */
export function normInff(g: Float32Array): number {
  let m = 0;
  for (let i = 0; i < g.length; i++) {
    const a = Math.abs(g[i]);
    if (!(a <= m)) {
      if (a !== a) return NaN;
      m = a;
    }
  }
  return m;
}

// ---------------------------------------------------------------------------------------------

function collectParams(params: unknown): unknown[] {
  if (params !== null && typeof params === 'object' && !Array.isArray(params) && 'grad' in params) return [params]; // one param, as PyTorch's single tensor
  if (Array.isArray(params)) return params;
  if (params !== null && typeof params === 'object' && typeof (params as Iterable<unknown>)[Symbol.iterator] === 'function') return [...(params as Iterable<unknown>)];
  throw invalid(`clipGradNorm: params must be an array (or iterable) of params { grad }, or one param, got ${describe(params)}`);
}

function overlaps(a: Float32Array, b: Float32Array): boolean {
  return a.buffer === b.buffer && a.byteLength > 0 && b.byteLength > 0 &&
    a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/**
 * Clips the gradients of `params` together, as `torch.nn.utils.clip_grad_norm_`: the total norm
 * of every gradient (as if they were concatenated; params whose `grad` is null are skipped) is
 * computed, and every gradient is multiplied in place by `maxNorm / (total + 1e-6)` clamped to at
 * most 1. Returns the total norm (the float32 value PyTorch returns, as a number); 0, changing
 * nothing, when no param has a gradient. `maxNorm: Infinity` only measures the norm.
 *
 * Bit for bit PyTorch 1.13's float32 results (its CPU kernels; test/fixtures/torch/
 * clip_grad_norm.json): L2 is the norm of the per-gradient norms (`norm2f`, in float32, so
 * gradients around 1e-20 give 0 and around 1e20 give Infinity, as in PyTorch); Infinity is the
 * largest |x|; then `coef = f32(f32(1 / f32(total + f32(1e-6))) * f32(maxNorm))`, `min(coef, 1)`
 * (NaN stays NaN) and `g = f32(g * coef)`. So a NaN gradient makes every gradient NaN and an
 * infinite one makes the norm Infinity, the finite gradients 0 and the infinite entries NaN,
 * unless `errorIfNonfinite`.
 *
 * Differences from PyTorch: where the coefficient is exactly 1 the gradients are left as they
 * are rather than multiplied by 1 (the same values; NaN payloads are kept); a gradient with no
 * elements counts as norm 0 with `normType: Infinity` (PyTorch raises: `max()` of an empty
 * tensor); NaN results are NaN, not necessarily the bits PyTorch's x86 kernels write (the sign
 * of their default NaN); other norm types are refused. The bits are those of PyTorch's AVX2
 * CPU build: PyTorch on other CPUs (AVX-512) or on CUDA sums in another order and may differ in
 * the last bits of the norm.
 *
 * Device params (`grad` a DeviceTensor) are downloaded, measured and, when the coefficient is not
 * 1, scaled and uploaded back (`DeviceTensor.toHost` / `copyFromHost`, row-major), with the same
 * results as host gradients. Every gradient is checked, and every device gradient downloaded,
 * before any is changed; an upload that fails midway (a CUDA error) leaves the gradients before
 * it scaled and the rest not.
 *
 * Throws `ERR_ADAMP_INVALID_ARGUMENT` (before changing anything) for a bad argument, a gradient
 * that is not a Float32Array, a DeviceTensor or null, the same gradient memory twice, or a
 * non-finite norm with `errorIfNonfinite`; `ERR_ADAMP_DISPOSED` for a disposed DeviceTensor.
 */
export function clipGradNorm(params: readonly GradHolder[] | Iterable<GradHolder> | GradHolder, maxNorm: number, options: ClipGradNormOptions = {}): number {
  const list = collectParams(params);
  if (typeof maxNorm !== 'number' || Number.isNaN(maxNorm) || maxNorm < 0) {
    throw invalid(`clipGradNorm: maxNorm must be a number >= 0 (Infinity to only measure), got ${describe(maxNorm)}`);
  }
  if (!isPlainObject(options)) throw invalid(`clipGradNorm: options must be a plain object { normType, errorIfNonfinite }, got ${describe(options)}`);
  for (const k of Object.keys(options)) {
    if (k !== 'normType' && k !== 'errorIfNonfinite') {
      const hint = suggest(k, ['normType', 'errorIfNonfinite']);
      throw invalid(`clipGradNorm: options.${k} is not an option${hint ? `; did you mean '${hint}'?` : ''} (options: normType, errorIfNonfinite)`);
    }
  }
  const nt = options.normType ?? 2;
  const inf = nt === Infinity || nt === 'inf';
  if (!inf && nt !== 2) throw invalid(`clipGradNorm: options.normType must be 2 or Infinity ('inf'), got ${describe(nt)}; other p-norms are not implemented`);
  const errorIfNonfinite = options.errorIfNonfinite ?? false;
  if (typeof errorIfNonfinite !== 'boolean') throw invalid(`clipGradNorm: options.errorIfNonfinite must be a boolean, got ${describe(errorIfNonfinite)}`);

  // Check every gradient before touching any.
  const host: Float32Array[] = [];
  const device: DeviceTensor[] = [];
  const order: Array<{ kind: 'host' | 'device'; i: number }> = [];
  list.forEach((p, index) => {
    if (p === null || typeof p !== 'object' || !('grad' in p)) throw invalid(`clipGradNorm: params[${index}] must be a param { data, grad, ... }, got ${describe(p)}`);
    const g = (p as GradHolder).grad;
    const who = typeof (p as { name?: unknown }).name === 'string' ? `param '${(p as unknown as { name: string }).name}'` : `params[${index}]`;
    if (g === null || g === undefined) return;
    if (g instanceof Float32Array) {
      const j = host.findIndex((h) => overlaps(h, g));
      if (j >= 0) throw invalid(`clipGradNorm: the grad of ${who} shares memory with another param's grad; it would be counted and scaled twice`);
      order.push({ kind: 'host', i: host.length });
      host.push(g);
    } else if (g instanceof DeviceTensor) {
      if (g.disposed) throw new AdampError('ERR_ADAMP_DISPOSED', `clipGradNorm: the grad of ${who} is a DeviceTensor that was disposed; its memory is gone`);
      if (device.some((d) => d === g || viewsOverlap(d.view(), g.view()))) {
        throw invalid(`clipGradNorm: the grad of ${who} shares device memory with another param's grad; it would be counted and scaled twice`);
      }
      order.push({ kind: 'device', i: device.length });
      device.push(g);
    } else {
      throw invalid(`clipGradNorm: the grad of ${who} must be a Float32Array, a DeviceTensor or null, got ${describe(g)}`);
    }
  });
  if (order.length === 0) return 0;

  const downloaded = device.map((t) => t.toHost());
  const grads = order.map((o) => (o.kind === 'host' ? host[o.i] : downloaded[o.i]));

  let total: number;
  if (inf) {
    const norms = grads.map(normInff);
    total = norms.reduce((m, x) => (x !== x || m !== m ? NaN : Math.max(m, x)), 0);
  } else {
    total = norm2f(Float32Array.from(grads.map(norm2f)));
  }
  if (errorIfNonfinite && !Number.isFinite(total)) {
    throw invalid(`clipGradNorm: the total norm of order ${inf ? 'inf' : 2} of the gradients is ${total}, so it cannot be clipped; nothing was changed (errorIfNonfinite: false scales the gradients by it anyway, as PyTorch)`);
  }
  const f = Math.fround;
  let coef = f(f(1 / f(total + f(1e-6))) * f(maxNorm));
  if (coef > 1) coef = 1;
  if (coef !== 1) {
    for (const g of grads) for (let i = 0; i < g.length; i++) g[i] = f(g[i] * coef);
    device.forEach((t, k) => t.copyFromHost(downloaded[k]));
  }
  return total;
}
