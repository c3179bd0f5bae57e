// 16-bit storage on the CPU: bfloat16 and IEEE float16 bits <-> float32, exactly as
// lib/core/half.ts does it (docs/mixed-precision.md#conversions), scalar. Widening is exact;
// narrowing rounds to nearest even (bfloat16 NaN -> 0x7fc0, float16 NaN -> sign | 0x7e00), or,
// for bfloat16, stochastically with half.ts's key and hash (float32ToBf16Stochastic). These are the
// reference the vector versions in kernels.h must match bit for bit (native/tests/test_half.cpp).
//
// `static inline`: every TU (the AVX2 one included) gets its own copy.
#ifndef ADAMP_CPU_HALF_H
#define ADAMP_CPU_HALF_H

#include <stdint.h>
#include <string.h>

namespace adamp {
namespace cpu {

/** A 16-bit storage type (the wire's numbering: lib/binding/types.ts AddonHalf.dtype). */
enum class HalfType : int { BFloat16 = 1, Float16 = 2 };

static inline float half_bits_f32(uint32_t b) {
  float f;
  memcpy(&f, &b, 4);
  return f;
}
static inline uint32_t half_f32_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return b;
}

/** bfloat16 bits -> float32 (exact). */
static inline float bf16_to_f32(uint16_t h) { return half_bits_f32((uint32_t)h << 16); }

/** float32 -> bfloat16 bits, nearest even; NaN -> 0x7fc0. */
static inline uint16_t f32_to_bf16(float x) {
  const uint32_t b = half_f32_bits(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

/** float16 bits -> float32 (exact; NaN keeps its payload bits, as half.ts). */
static inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return half_bits_f32(sign | 0x7f800000u | (m << 13));
  if (e != 0) return half_bits_f32(sign | ((e + 112) << 23) | (m << 13));
  const float v = (float)m * 5.9604644775390625e-8f;  // m * 2^-24, exact
  return sign ? -v : v;
}

/** float32 -> float16 bits, nearest even; NaN -> sign | 0x7e00. */
static inline uint16_t f32_to_f16(float x) {
  const uint32_t b = half_f32_bits(x);
  const uint32_t sign = (b >> 16) & 0x8000u, a = b & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
  if (a >= 0x38800000u) return (uint16_t)(sign | ((a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13));
  // subnormal or zero: |x| * 2^24 rounded to an integer, ties to even (exact in double)
  const double q = (double)half_bits_f32(a) * 16777216.0;
  const uint32_t fl = (uint32_t)q;
  const double d = q - (double)fl;
  const uint32_t r = (d > 0.5 || (d == 0.5 && (fl & 1u))) ? fl + 1 : fl;
  return (uint16_t)(sign | r);
}

/** murmur3's 32-bit finalizer (half.ts fmix32). */
static inline uint32_t half_fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

/** half.ts roundingKey(seed, step, index). */
static inline uint32_t rounding_key(uint32_t seed, uint32_t step, uint32_t index) {
  return half_fmix32(seed ^ half_fmix32(step ^ half_fmix32(index)));
}

/** float32 -> bfloat16 bits rounded stochastically: element `i` of its tensor, with the tensor's `key`. */
static inline uint16_t f32_to_bf16_sr(float x, uint32_t key, uint32_t i) {
  const uint32_t v = half_f32_bits(x), a = v & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fc0;
  return (uint16_t)(((v >> 16) & 0x8000u) | ((a + (half_fmix32(key + i) & 0xffffu)) >> 16));
}

}  // namespace cpu
}  // namespace adamp

#endif  // ADAMP_CPU_HALF_H
