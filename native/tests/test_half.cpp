// The 16-bit conversions of the CPU core (native/cpu/half.h, the kernel tables' half_* entries in
// kernels.h): every one of the 65536 patterns of both dtypes widened, narrowed back and compared
// with the scalar reference, on the portable and the AVX2(+F16C) table, with vector bodies and
// scalar tails; random and tie-heavy float32 patterns narrowed to nearest even and stochastically;
// hand-checked values and (where the compiler has _Float16) an independent float16 rounding.
#include <stdint.h>
#include <string.h>

#include <vector>

#include "check.h"
#include "half.h"
#include "kernel_table.h"
#include "step.h"

using namespace adamp;
using namespace adamp::cpu;

static uint32_t bits(float f) { return half_f32_bits(f); }

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd() {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

static float ref_widen(int dtype, uint16_t h) { return dtype == 1 ? bf16_to_f32(h) : f16_to_f32(h); }
static uint16_t ref_narrow(int dtype, float x) { return dtype == 1 ? f32_to_bf16(x) : f32_to_f16(x); }

static void check_table(const KernelTable& t) {
  fprintf(stderr, "table %s\n", t.name);
  std::vector<uint16_t> all(65536), back(65536);
  for (int i = 0; i < 65536; ++i) all[(size_t)i] = (uint16_t)i;
  std::vector<float> w(65536), ws(65536);
  for (int dtype = 1; dtype <= 2; ++dtype) {
    // Exhaustive widening, unscaled and scaled, starting at offsets 0 and 3 (vector body vs tail alignment).
    for (int off = 0; off < 4; off += 3) {
      const int64_t n = 65536 - off;
      t.half_widen(dtype, all.data() + off, w.data(), n, false, 1.0f);
      t.half_widen(dtype, all.data() + off, ws.data(), n, true, 0.3779f);
      int64_t bad = 0, bad_s = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float r = ref_widen(dtype, all[(size_t)(i + off)]);
        if (bits(w[(size_t)i]) != bits(r)) ++bad;
        if (bits(ws[(size_t)i]) != bits(r * 0.3779f)) ++bad_s;
      }
      CHECK(bad == 0);
      CHECK(bad_s == 0);
    }
    // Exhaustive round trip: every non-NaN pattern comes back unchanged, every NaN as half.ts's quiet NaN.
    t.half_widen(dtype, all.data(), w.data(), 65536, false, 1.0f);
    t.half_narrow(dtype, w.data(), back.data(), 65536);
    int64_t bad = 0;
    for (int i = 0; i < 65536; ++i) {
      const bool nan = dtype == 1 ? (i & 0x7fff) > 0x7f80 : (i & 0x7fff) > 0x7c00;
      const uint16_t want = nan ? (dtype == 1 ? 0x7fc0 : (uint16_t)((i & 0x8000) | 0x7e00)) : (uint16_t)i;
      if (back[(size_t)i] != want || ref_narrow(dtype, w[(size_t)i]) != want) ++bad;
    }
    CHECK(bad == 0);
    // Random float32 patterns, and patterns at and around the rounding ties of every 16-bit value.
    const int64_t n = 1 << 20;
    std::vector<float> x((size_t)n);
    std::vector<uint16_t> got((size_t)n), sr((size_t)n);
    for (int64_t i = 0; i < n; ++i) {
      uint32_t b;
      if (i < 65536 * 8) {
        const uint32_t h = (uint32_t)(i >> 3), k = (uint32_t)(i & 7);
        const uint32_t base = dtype == 1 ? h << 16 : bits(f16_to_f32((uint16_t)h));
        const uint32_t half_ulp = dtype == 1 ? 0x8000u : 0x1000u;  // f16 normals: 13 dropped bits
        const uint32_t deltas[8] = {0, half_ulp - 1, half_ulp, half_ulp + 1, 1, 2 * half_ulp - 1, half_ulp / 2, 3};
        b = base + deltas[k];
      } else {
        b = rnd();
      }
      memcpy(&x[(size_t)i], &b, 4);
    }
    t.half_narrow(dtype, x.data(), got.data(), n);
    bad = 0;
    for (int64_t i = 0; i < n; ++i)
      if (got[(size_t)i] != ref_narrow(dtype, x[(size_t)i])) ++bad;
    CHECK(bad == 0);
#if defined(__FLT16_MAX__)
    if (dtype == 2) {
      // An independent float16 rounding: the compiler's _Float16 conversion (nearest even).
      int64_t bad16 = 0;
      for (int64_t i = 0; i < n; ++i) {
        if (x[(size_t)i] != x[(size_t)i]) continue;
        const _Float16 h = (_Float16)x[(size_t)i];
        uint16_t hb;
        memcpy(&hb, &h, 2);
        if (hb != got[(size_t)i]) ++bad16;
      }
      CHECK(bad16 == 0);
    }
#endif
    if (dtype == 1) {
      // Stochastic rounding: the index wraps around 2^32 inside the call.
      const uint32_t key = 0xdeadbeefu, i0 = 0xfffffff0u;
      t.half_narrow_sr(x.data() + 5, sr.data(), n - 5, key, i0);
      bad = 0;
      for (int64_t i = 0; i < n - 5; ++i)
        if (sr[(size_t)i] != f32_to_bf16_sr(x[(size_t)(i + 5)], key, i0 + (uint32_t)i)) ++bad;
      CHECK(bad == 0);
    }
  }
  // float32 grads scaled, and copied.
  std::vector<float> g(1003), out(1003);
  for (size_t i = 0; i < g.size(); ++i) {
    const uint32_t b = rnd();
    memcpy(&g[i], &b, 4);
  }
  t.half_widen(0, g.data(), out.data(), 1003, true, 1.0f / 1024.0f);
  int64_t bad = 0;
  for (size_t i = 0; i < g.size(); ++i)
    if (bits(out[i]) != bits(g[i] * (1.0f / 1024.0f))) ++bad;
  CHECK(bad == 0);
  t.half_widen(0, g.data(), out.data(), 1003, false, 1.0f);
  CHECK(memcmp(out.data(), g.data(), g.size() * 4) == 0);
}

int main() {
  // Hand-checked values (docs/mixed-precision.md#conversions).
  CHECK(bits(bf16_to_f32(0x3f80)) == 0x3f800000u);
  CHECK(bits(f16_to_f32(0x3c00)) == 0x3f800000u);
  CHECK(f16_to_f32(0x0001) == 5.9604644775390625e-8f);
  CHECK(f16_to_f32(0x7c00) == INFINITY);
  CHECK(f32_to_f16(65519.0f) == 0x7bff);
  CHECK(f32_to_f16(65520.0f) == 0x7c00);
  CHECK(f32_to_bf16(half_bits_f32(0x3f808000u)) == 0x3f80);  // tie to even (down)
  CHECK(f32_to_bf16(half_bits_f32(0x3f818000u)) == 0x3f82);  // tie to even (up)
  CHECK(f32_to_bf16(half_bits_f32(0x7f7f8000u)) == 0x7f80);  // overflows to Infinity
  CHECK(f32_to_bf16(NAN) == 0x7fc0);
  CHECK(f32_to_f16(-NAN) == 0xfe00);
  CHECK(f32_to_bf16_sr(1.0f, 123, 7) == 0x3f80);  // bfloat16 values are unchanged
  // half.ts roundingKey(1, 1, 0) and (7, 3, 2), computed with lib/core/half.ts's fmix32.
  CHECK(rounding_key(1, 1, 0) == 0x3d8ed02fu);
  CHECK(rounding_key(7, 3, 2) == 0x499ad5feu);
  check_table(portable_kernels());
  if (avx2_available() && avx2_kernels() != nullptr)
    check_table(*avx2_kernels());
  else
    fprintf(stderr, "note: no AVX2+F16C on this CPU/build; only the portable table was checked\n");
  return report("test_half");
}
