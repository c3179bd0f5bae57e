// 16-bit storage on the CPU, scalar: the core's names for the one definition in
// native/include/adamp/half.h (shared with the CUDA kernels), which is lib/core/half.ts's
// (docs/mixed-precision.md#conversions). Widening is exact;
// narrowing rounds to nearest even (bfloat16 NaN -> 0x7fc0, float16 NaN -> sign | 0x7e00), or,
// for bfloat16, stochastically with half.ts's key and hash (float32ToBf16Stochastic). These are the
// reference the vector versions in kernels.h must match bit for bit (native/tests/test_half.cpp).
//
// `static inline`: every TU (the AVX2 one included) gets its own copy.
#ifndef ADAMP_CPU_HALF_H
#define ADAMP_CPU_HALF_H

#include <stdint.h>
#include <string.h>

#include "adamp/half.h"

namespace adamp {
namespace cpu {

/** A 16-bit storage type (the wire's numbering: lib/binding/types.ts AddonHalf.dtype). */
enum class HalfType : int { BFloat16 = 1, Float16 = 2 };

/**
 * The 16-bit storage of a tensor (docs/mixed-precision.md). The kernels read it through their
 * storage parameter (kernels.h H16): g widened (and unscaled), p from the master or widened, and
 * every new p rounded into p16 as it is stored (nearest even, or bfloat16 stochastic rounding of
 * element e with fmix32(key + e), e counted from the whole tensor's first element): bit-identical
 * to widening the whole tensor, stepping it in float32 and rounding it back (lib/core/half.ts).
 */
struct HalfSlot {
  int dtype;             // 1 bfloat16, 2 float16 (HalfType in half.h)
  uint16_t* p16;         // the param's bits, numel elements; rounded back after the step
  const uint16_t* g16;   // the grad's bits (same dtype), or null: TensorSlot::g is a float32 grad
  bool master;           // TensorSlot::p is a float32 master copy stepped in place; else p is null and p16 is stepped
  bool scaled;           // g is read as f32(f32(g) * inv_scale)
  float inv_scale;
  bool stochastic;       // bfloat16 only
  uint32_t key;          // the tensor's rounding key at this step (half.ts roundingKey)
};

/** bfloat16 bits -> float32 (exact). */
static inline float bf16_to_f32(uint16_t h) { return half::bf16_widen(h); }

/** float32 -> bfloat16 bits, nearest even; NaN -> 0x7fc0. */
static inline uint16_t f32_to_bf16(float x) { return (uint16_t)half::bf16_rne(half::f32_bits(x)); }

/** float16 bits -> float32 (exact; NaN keeps its payload bits, as half.ts). */
static inline float f16_to_f32(uint16_t h) { return half::f16_widen(h); }

/** float32 -> float16 bits, nearest even; NaN -> sign | 0x7e00. */
static inline uint16_t f32_to_f16(float x) { return (uint16_t)half::f16_rne(half::f32_bits(x)); }

/** half.ts roundingKey(seed, step, index). */
static inline uint32_t rounding_key(uint32_t seed, uint32_t step, uint32_t index) { return half::rounding_key(seed, step, index); }

/** float32 -> bfloat16 bits rounded stochastically: element `i` of its tensor, with the tensor's `key`. */
static inline uint16_t f32_to_bf16_sr(float x, uint32_t key, uint32_t i) { return (uint16_t)half::bf16_stochastic(half::f32_bits(x), key, i); }

}  // namespace cpu
}  // namespace adamp

#endif  // ADAMP_CPU_HALF_H
