/**
 * 16-bit host slots on the js and cuda engines (docs/mixed-precision.md): the engine widens the param (unless the
 * slot's `p` is its float32 master copy) and the grad (times `invScale` when loss-scaled) into
 * float32 scratch, runs its float32 step on them, and rounds the param back into its bits, with
 * the conversions of lib/core/half.ts: bit-identical to the native core, whose kernels convert
 * as they load and store (native/cpu/kernels.h H16).
 */
import { float32ToBf16Stochastic, float32ToHalf, halfToFloat32, widenFn } from '../core/half';
import type { Slot } from './engine';

/** Scratch per 16-bit param (keyed by its bits array), reused across steps. */
const scratch = new WeakMap<Uint16Array, { p?: Float32Array; g?: Float32Array }>();

function sized(a: Float32Array | undefined, n: number): Float32Array {
  return a !== undefined && a.length === n ? a : new Float32Array(n);
}

/**
 * A 16-bit slot as a float32 one, and the write-back of its param's bits to run after the step.
 * `offset`: where the slot's elements start in the whole tensor (a protocol shard's), which
 * stochastic rounding counts element indices from.
 */
export function stageHalfSlot<S extends Slot>(s: S, offset = 0): { slot: S; commit: () => void } {
  const h = s.half;
  if (h === undefined) return { slot: s, commit: () => undefined };
  const n = h.p16.length;
  const sc = scratch.get(h.p16) ?? {};
  scratch.set(h.p16, sc);
  let p = s.p;
  if (!h.master) {
    sc.p = sized(sc.p, n);
    p = halfToFloat32(h.p16, h.dtype, sc.p);
  }
  let g = s.g;
  const inv = h.invScale;
  if (h.g16 !== null || inv !== undefined) {
    const out = (sc.g = sized(sc.g, n));
    if (h.g16 !== null) {
      const bits = h.g16;
      const widen = widenFn(h.dtype);
      if (inv === undefined) for (let i = 0; i < n; i++) out[i] = widen(bits[i]);
      else for (let i = 0; i < n; i++) out[i] = widen(bits[i]) * inv;
    } else {
      for (let i = 0; i < n; i++) out[i] = g[i] * (inv as number);
    }
    g = out;
  }
  const { half: _h, ...rest } = s;
  const slot = { ...rest, p, g } as S;
  const key = h.key === undefined ? undefined : (h.key + offset) >>> 0; // fmix32(key + offset + i): i counts from the shard's start
  return {
    slot,
    commit: () => {
      if (key === undefined) float32ToHalf(p, h.dtype, h.p16);
      else float32ToBf16Stochastic(p, key, h.p16);
    },
  };
}
