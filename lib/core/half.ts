/**
 * 16-bit storage types: bfloat16 and IEEE float16 bits <-> float32, rounding to nearest even
 * (docs/mixed-precision.md#conversions). Host arrays of 16-bit values are `Uint16Array`s of raw
 * bits (a runtime's `Float16Array` is read through its bits). Every function here is exact:
 * widening is exact, narrowing rounds once, to nearest, ties to even, as PyTorch's `.to(dtype)`.
 *
 * - bfloat16: the top 16 bits of a float32. Narrowing overflows to +-Infinity by rounding (a
 *   value at or above 0x7f7f8000 rounds up to Infinity); NaN becomes 0x7fc0 (PyTorch's
 *   `c10::BFloat16`: one positive quiet NaN).
 * - float16: subnormals kept (down to 2^-24); values of magnitude >= 65520 round to
 *   +-Infinity; NaN becomes sign | 0x7e00 (a quiet NaN, sign kept, as PyTorch's `c10::Half`).
 */

/** A param's storage type. */
export type StorageDtype = 'float32' | 'bfloat16' | 'float16';
/** The 16-bit storage types. */
export type HalfDtype = 'bfloat16' | 'float16';

export const DTYPES: readonly StorageDtype[] = ['float32', 'bfloat16', 'float16'];

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 bits of a number (rounded to float32 first). */
function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0];
}

function fromBits(b: number): number {
  u32[0] = b;
  return f32[0];
}

/** bfloat16 bits -> the float32 value (exact). */
export function bf16ToF32(h: number): number {
  return fromBits((h & 0xffff) << 16);
}

/** float32 bits -> bfloat16 bits, round to nearest even (NaN -> 0x7fc0). */
export function f32BitsToBf16(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** A number, rounded to float32, then to bfloat16 (nearest even): its bits. */
export function f32ToBf16(x: number): number {
  return f32BitsToBf16(bitsOf(x));
}

/** float16 bits -> the float32 value (exact). */
export function f16ToF32(h: number): number {
  const sign = (h & 0x8000) << 16;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return fromBits(sign | 0x7f800000 | (m << 13));
  if (e !== 0) return fromBits(sign | ((e + 112) << 23) | (m << 13));
  // subnormal or zero: m * 2^-24, exact in float32
  const v = m * 5.960464477539063e-8;
  return sign !== 0 ? -v : v;
}

/** float32 bits -> float16 bits, round to nearest even (NaN -> sign | 0x7e00). */
export function f32BitsToF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const a = b & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00;
  if (a >= 0x477ff000) return sign | 0x7c00; // >= 65520 (and Infinity): rounds to Infinity
  if (a >= 0x38800000) {
    // normal float16: rebias the exponent, round the 13 dropped mantissa bits to nearest even
    return sign | (((a - 0x38000000 + 0xfff + ((a >>> 13) & 1)) >>> 13) & 0xffff);
  }
  // subnormal float16 (or zero): round |x| * 2^24 to an integer, ties to even; 0x400 is the least normal
  const q = fromBits(a) * 16777216; // exact in double
  const fl = Math.floor(q);
  const d = q - fl;
  const r = d > 0.5 || (d === 0.5 && (fl & 1) === 1) ? fl + 1 : fl;
  return sign | r;
}

/** A number, rounded to float32, then to float16 (nearest even): its bits. */
export function f32ToF16(x: number): number {
  return f32BitsToF16(bitsOf(x));
}

/** Widening of one element of a dtype. */
export function widenFn(dtype: HalfDtype): (h: number) => number {
  return dtype === 'bfloat16' ? bf16ToF32 : f16ToF32;
}

/** Narrowing of float32 bits to a dtype. */
export function narrowBitsFn(dtype: HalfDtype): (b: number) => number {
  return dtype === 'bfloat16' ? f32BitsToBf16 : f32BitsToF16;
}

/** 16-bit bits -> a new Float32Array (exact). */
export function halfToFloat32(bits: Uint16Array, dtype: HalfDtype, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  if (dtype === 'bfloat16') {
    const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
    for (let i = 0; i < bits.length; i++) o[i] = bits[i] << 16;
  } else {
    for (let i = 0; i < bits.length; i++) out[i] = f16ToF32(bits[i]);
  }
  return out;
}

/** A Float32Array -> 16-bit bits, each rounded to nearest even. */
export function float32ToHalf(x: Float32Array, dtype: HalfDtype, out: Uint16Array = new Uint16Array(x.length)): Uint16Array {
  const b = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const narrow = narrowBitsFn(dtype);
  for (let i = 0; i < x.length; i++) out[i] = narrow(b[i]);
  return out;
}

/** Whether 16-bit bits are Infinity or NaN (exponent all ones). */
export function halfNonFinite(h: number, dtype: HalfDtype): boolean {
  return dtype === 'bfloat16' ? (h & 0x7f80) === 0x7f80 : (h & 0x7c00) === 0x7c00;
}

/** The runtime's Float16Array constructor, when it has one. */
export function float16ArrayCtor(): (new (n: number) => ArrayBufferView) | undefined {
  return (globalThis as { Float16Array?: new (n: number) => ArrayBufferView }).Float16Array;
}

/** Whether `x` is a Float16Array (from any realm). */
export function isFloat16Array(x: unknown): x is ArrayBufferView & { length: number } {
  return ArrayBuffer.isView(x) && Object.prototype.toString.call(x) === '[object Float16Array]';
}

/** Whether `x` is a Uint16Array (from any realm). */
export function isUint16Array(x: unknown): x is Uint16Array {
  return x instanceof Uint16Array || (ArrayBuffer.isView(x) && Object.prototype.toString.call(x) === '[object Uint16Array]');
}

/** The raw bits of a 16-bit host array (a Uint16Array itself, or a view over a Float16Array's memory). */
export function halfBits(x: Uint16Array | ArrayBufferView): Uint16Array {
  if (isUint16Array(x)) return x;
  return new Uint16Array(x.buffer, x.byteOffset, x.byteLength / 2);
}

/** murmur3's 32-bit finalizer: a bijective mix of a uint32. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The key of one tensor's stochastic rounding at one step: a mix of the seed, the param's step
 * count and its index over all groups (docs/mixed-precision.md#stochastic-rounding).
 */
export function roundingKey(seed: number, step: number, index: number): number {
  return fmix32((seed >>> 0) ^ fmix32((step >>> 0) ^ fmix32(index >>> 0)));
}

/**
 * A Float32Array -> bfloat16 bits, rounding stochastically: element i's magnitude bits get
 * `fmix32(key + i) & 0xffff` added before the low 16 bits are dropped, so it rounds away from zero
 * with probability (its distance to the lower neighbour) / ulp. Deterministic for a key; values
 * that are bfloat16 already (and Infinity) are unchanged; NaN becomes 0x7fc0.
 */
export function float32ToBf16Stochastic(x: Float32Array, key: number, out: Uint16Array): Uint16Array {
  const b = new Uint32Array(x.buffer, x.byteOffset, x.length);
  for (let i = 0; i < x.length; i++) {
    const v = b[i];
    const a = v & 0x7fffffff;
    if (a > 0x7f800000) {
      out[i] = 0x7fc0;
      continue;
    }
    out[i] = ((v >>> 16) & 0x8000) | ((a + (fmix32((key + i) >>> 0) & 0xffff)) >>> 16);
  }
  return out;
}
