// The 16-bit conversions of the CPU core (native/cpu/half.h, the kernel tables' half_* entries in
// kernels.h): every one of the 65536 patterns of both dtypes widened, narrowed back and compared
// with the scalar reference, on the portable and the AVX2(+F16C) table, with vector bodies and
// scalar tails; random and tie-heavy float32 patterns narrowed to nearest even and stochastically;
// hand-checked values and (where the compiler has _Float16) an independent float16 rounding.
// Then whole steps of 16-bit tensors (TensorSlot::half) against widening the tensor, stepping it in
// float32 and rounding it back, for every optimizer and layout, 1/2/3 threads and both tables.
#include <stdint.h>
#include <string.h>

#include <vector>

#include "check.h"
#include "half.h"
#include "kernel_table.h"
#include "step.h"

using namespace adamp;
using namespace adamp::cpu;

static uint32_t bits(float f) { return adamp::half::f32_bits(f); }

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

// ------------------------------------------------------------------------------------------------
// Steps of 16-bit tensors.

struct Geo {
  int64_t outer, channels, inner;
  bool eligible;
};

static float frand() { return (float)((double)rnd() / 4294967296.0 - 0.5); }

/** p16 and state after one step of `kind`, and the info record, for a 16-bit tensor. */
struct Out {
  std::vector<uint16_t> p16;
  std::vector<float> master, s0, s1;
  std::vector<double> info;
};

static Out run_half(OptKind kind, const std::vector<double>& hyper, const Geo& g, int dtype, bool master, bool g16, bool scaled,
                    bool stochastic, const std::vector<uint16_t>& p0, const std::vector<uint16_t>& gb, const std::vector<float>& gf,
                    bool reference, int threads) {
  const int64_t n = g.outer * g.channels * g.inner;
  Out o;
  o.p16 = p0;
  o.s0.assign((size_t)n, 0.0f);
  o.s1.assign((size_t)n, 0.0f);
  o.info.assign(8, 0.0);
  const float inv = 1.0f / 64.0f;
  const uint32_t key = rounding_key(7, 1, 3);
  std::vector<float> p32((size_t)n), g32((size_t)n);
  for (int64_t i = 0; i < n; ++i) p32[(size_t)i] = ref_widen(dtype, p0[(size_t)i]);
  TensorSlot s;
  s.state[0] = o.s0.data();
  s.state[1] = o.s1.data();
  s.numel = n;
  s.outer = g.outer;
  s.channels = g.channels;
  s.inner = g.inner;
  s.eligible = g.eligible;
  s.step = 1;
  cpu::StepConfig cfg;
  cfg.threads = threads;
  HalfSlot h;
  if (reference) {
    // the definition: widen everything, a float32 step, round back (scalar half.h)
    for (int64_t i = 0; i < n; ++i) {
      const float x = g16 ? ref_widen(dtype, gb[(size_t)i]) : gf[(size_t)i];
      g32[(size_t)i] = scaled ? x * inv : x;
    }
    s.p = p32.data();
    s.g = g32.data();
    cpu::step(kind, &s, 1, hyper.data(), o.info.data(), cfg);
    for (int64_t i = 0; i < n; ++i)
      o.p16[(size_t)i] = stochastic ? f32_to_bf16_sr(p32[(size_t)i], key, (uint32_t)i) : ref_narrow(dtype, p32[(size_t)i]);
    if (master) o.master = p32;
    return o;
  }
  if (master) o.master = p32;
  h.dtype = dtype;
  h.p16 = o.p16.data();
  h.g16 = g16 ? gb.data() : nullptr;
  h.master = master;
  h.scaled = scaled;
  h.inv_scale = inv;
  h.stochastic = stochastic;
  h.key = key;
  s.p = master ? o.master.data() : nullptr;
  s.g = g16 ? nullptr : gf.data();
  s.half = &h;
  cpu::step(kind, &s, 1, hyper.data(), o.info.data(), cfg);
  return o;
}

static bool same_bits(const void* a, const void* b, size_t bytes) { return bytes == 0 || memcmp(a, b, bytes) == 0; }

static void check_steps() {
  const Geo geos[] = {{1, 6, 300, true}, {3, 4, 50, true}, {2000, 24, 1, true}, {1, 2, 40000, true}, {1, 1, 33000, false}, {1, 1, 77, false}};
  const OptKind kinds[] = {OptKind::AdamP, OptKind::SGDP, OptKind::AdamW, OptKind::SGD};
  const std::vector<double> hypers[] = {
      {0.01, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1, 0.0},  // AdamP
      {0.1, 0.9, 0.0, 1e-3, 1.0, 1e-8, 0.1, 0.1},    // SGDP, Nesterov
      {0.01, 0.9, 0.999, 1e-8, 0.1},                 // AdamW
      {0.1, 0.9, 0.0, 1e-3, 0.0},                    // SGD
  };
  int64_t runs = 0, bad = 0;
  for (int k = 0; k < 4; ++k)
    for (const Geo& g : geos)
      for (int variant = 0; variant < 8; ++variant) {
        // variants 4-7: values that send the sums to their double redo (kernels.h
        // row_sums_need_double): all-zero gradient rows, weights too small or too large for
        // float products, spread over the tensor by element index
        const bool special = variant >= 4;
        const int dtype = variant & 1 ? 2 : 1;
        const bool master = (variant & 2) != 0, g16 = ((variant + k) & 1) == 0, scaled = ((variant + k) & 2) != 0;
        const bool stochastic = dtype == 1 && ((variant + k) % 3) == 0;
        const int64_t n = g.outer * g.channels * g.inner;
        std::vector<uint16_t> p0((size_t)n), gb((size_t)n);
        std::vector<float> gf((size_t)n);
        for (int64_t i = 0; i < n; ++i) {
          float pv = frand() * 2.0f, gv = frand() * (scaled ? 64.0f : 1.0f);
          if (special) {
            const int64_t zone = (i / 331) % 5;  // runs of 331 elements: whole rows of some layouts, parts of others
            if (zone == 1) gv = 0.0f;
            if (zone == 2) pv *= dtype == 1 ? 1e-30f : 1e-6f;   // p.p below 1e-20 (float16: subnormal weights)
            if (zone == 3) pv *= dtype == 1 ? 1e25f : 30000.0f;  // bfloat16: p.p overflows float
          }
          p0[(size_t)i] = ref_narrow(dtype, pv);
          gf[(size_t)i] = gv;
          gb[(size_t)i] = ref_narrow(dtype, gf[(size_t)i]);
        }
        const Out want = run_half(kinds[k], hypers[k], g, dtype, master, g16, scaled, stochastic, p0, gb, gf, true, 1);
        bool moved = false;
        for (int64_t i = 0; i < n && !moved; ++i) moved = want.p16[(size_t)i] != p0[(size_t)i];
        CHECK(moved);
        for (int simd = 0; simd < 2; ++simd) {
          if (simd == 1 && !avx2_available()) continue;
          set_simd(simd == 0 ? Simd::Portable : Simd::Avx2);
          for (int threads = 1; threads <= 3; ++threads) {
            const Out got = run_half(kinds[k], hypers[k], g, dtype, master, g16, scaled, stochastic, p0, gb, gf, false, threads);
            ++runs;
            const bool ok = same_bits(got.p16.data(), want.p16.data(), (size_t)n * 2) && same_bits(got.s0.data(), want.s0.data(), (size_t)n * 4) &&
                            same_bits(got.s1.data(), want.s1.data(), (size_t)n * 4) &&
                            same_bits(got.master.data(), want.master.data(), got.master.size() * 4) &&
                            same_bits(got.info.data(), want.info.data(), 8 * sizeof(double));
            if (!ok) {
              ++bad;
              fprintf(stderr, "step mismatch: kind %d geo %lldx%lldx%lld dtype %d master %d g16 %d scaled %d stochastic %d simd %d threads %d\n", k,
                      (long long)g.outer, (long long)g.channels, (long long)g.inner, dtype, master, g16, scaled, stochastic, simd, threads);
            }
          }
        }
        set_simd(Simd::Avx2);
      }
  fprintf(stderr, "16-bit steps: %lld runs, %lld mismatches\n", (long long)runs, (long long)bad);
  CHECK(bad == 0);
}

int main() {
  // Hand-checked values (docs/mixed-precision.md#conversions).
  CHECK(bits(bf16_to_f32(0x3f80)) == 0x3f800000u);
  CHECK(bits(f16_to_f32(0x3c00)) == 0x3f800000u);
  CHECK(f16_to_f32(0x0001) == 5.9604644775390625e-8f);
  CHECK(f16_to_f32(0x7c00) == INFINITY);
  CHECK(f32_to_f16(65519.0f) == 0x7bff);
  CHECK(f32_to_f16(65520.0f) == 0x7c00);
  CHECK(f32_to_bf16(adamp::half::bits_f32(0x3f808000u)) == 0x3f80);  // tie to even (down)
  CHECK(f32_to_bf16(adamp::half::bits_f32(0x3f818000u)) == 0x3f82);  // tie to even (up)
  CHECK(f32_to_bf16(adamp::half::bits_f32(0x7f7f8000u)) == 0x7f80);  // overflows to Infinity
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
  check_steps();
  return report("test_half");
}
