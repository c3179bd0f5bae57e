// 16-bit storage, the one definition: bfloat16 and IEEE float16 bits <-> float32, exactly as
// lib/core/half.ts does it (docs/mixed-precision.md#conversions). Widening is exact; narrowing
// rounds to nearest even (bfloat16 NaN -> 0x7fc0, float16 NaN -> sign | 0x7e00), or, for
// bfloat16, stochastically with half.ts's key and hash (roundingKey, float32ToBf16Stochastic).
// Integer arithmetic on the bits only, ADAMP_HD and `static inline` (the AVX2 and portable TUs
// each keep their own copy, as math.h explains): the CPU core's scalar reference
// (native/cpu/half.h, which its vector conversions must match bit for bit) and the CUDA kernels
// (native/cuda/step_kernel.cuh) both use these.
#ifndef ADAMP_HALF_H
#define ADAMP_HALF_H

#include <stdint.h>
#include <string.h>

#include "math.h"  // ADAMP_HD

namespace adamp {
namespace half {

ADAMP_HD static inline uint32_t f32_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}
ADAMP_HD static inline float bits_f32(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

/** bfloat16 bits -> float32 (exact). */
ADAMP_HD static inline float bf16_widen(uint32_t h) { return bits_f32((h & 0xffffu) << 16); }

/** float16 bits -> float32 (exact; subnormals normalized; NaN keeps its payload bits). */
ADAMP_HD static inline float f16_widen(uint32_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  uint32_t m = h & 0x3ffu;
  if (e == 0x1fu) return bits_f32(sign | 0x7f800000u | (m << 13));
  if (e != 0) return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
  if (m == 0) return bits_f32(sign);
  uint32_t ex = 113;
  while (!(m & 0x400u)) {
    m <<= 1;
    --ex;
  }
  return bits_f32(sign | (ex << 23) | ((m & 0x3ffu) << 13));
}

/** float32 bits -> bfloat16 bits, nearest even; NaN -> 0x7fc0. */
ADAMP_HD static inline uint32_t bf16_rne(uint32_t b) {
  if ((b & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;
  return ((b + 0x7fffu + ((b >> 16) & 1u)) >> 16) & 0xffffu;
}

/** float32 bits -> float16 bits, nearest even; NaN -> sign | 0x7e00; overflow -> Infinity. */
ADAMP_HD static inline uint32_t f16_rne(uint32_t b) {
  const uint32_t sign = (b >> 16) & 0x8000u;
  const uint32_t a = b & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;
  if (a >= 0x477ff000u) return sign | 0x7c00u;
  if (a >= 0x38800000u) return sign | (((a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13) & 0xffffu);
  // float16 subnormal or zero: |x| * 2^24 rounded to an integer, ties to even
  const uint32_t e = a >> 23;
  if (e == 0) return sign;  // a float32 subnormal is far below half of float16's least subnormal
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  const uint32_t sh = 126u - e;  // >= 14
  if (sh >= 25u) return sign;
  uint32_t r = mant >> sh;
  const uint32_t rem = mant & ((1u << sh) - 1u), halfway = 1u << (sh - 1u);
  if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
  return sign | r;
}

/** murmur3's 32-bit finalizer (half.ts fmix32). */
ADAMP_HD static inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

/** half.ts roundingKey(seed, step, index): a tensor's key at one step. */
ADAMP_HD static inline uint32_t rounding_key(uint32_t seed, uint32_t step, uint32_t index) {
  return fmix32(seed ^ fmix32(step ^ fmix32(index)));
}

/** half.ts float32ToBf16Stochastic for element i of a tensor with this key (float32 bits in, bfloat16 bits out). */
ADAMP_HD static inline uint32_t bf16_stochastic(uint32_t b, uint32_t key, uint32_t i) {
  const uint32_t a = b & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fc0u;
  return ((b >> 16) & 0x8000u) | ((a + (fmix32(key + i) & 0xffffu)) >> 16);
}

}  // namespace half
}  // namespace adamp

#endif  // ADAMP_HALF_H
