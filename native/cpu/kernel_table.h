// The CPU core's inner loops, one table per instruction set (portable, AVX2+FMA), chosen at run
// time. A table holds one PolicyKernels<P> per registered optimizer policy (registry.h); every
// entry works on one contiguous range and returns its reductions already summed in a fixed order,
// so the caller's unit split alone decides the order of every addition.
#ifndef ADAMP_CPU_KERNEL_TABLE_H
#define ADAMP_CPU_KERNEL_TABLE_H

#include <stdint.h>
#include <string.h>

#include "adamp/math.h"
#include "half.h"
#include "adamp/optim/registry.h"

namespace adamp {
namespace cpu {

/** The most state slots any registered policy has. */
constexpr int kMaxSlots = 2;

#define ADAMP_CHECK_SLOTS(P) static_assert(P::kSlots >= 1 && P::kSlots <= kMaxSlots, "kMaxSlots is too small for " #P);
ADAMP_OPTIMIZERS(ADAMP_CHECK_SLOTS)
#undef ADAMP_CHECK_SLOTS

/**
 * Reductions of a pass that writes p: ||p_before||^2 (one-pass kernels only; 0 from the others),
 * ||p_after||^2, ||dp||^2. A kernel run with `norms` off computes none and returns NaN in all three.
 */
struct Norms {
  double before, after, delta;
};

/**
 * The arrays of one tensor at the first element of a range: p, g and the policy's state slots
 * (st[k], k < kSlots). A 16-bit tensor (h not null: the kernels' H16 storage) also has p16 and
 * g16 there (g16 null: g is a float32 grad; p null without master weights) and e, the range's
 * first element counted from the tensor's (stochastic rounding's element index).
 */
struct Span {
  float* p;
  const float* g;
  float* st[kMaxSlots];
  uint16_t* p16 = nullptr;
  const uint16_t* g16 = nullptr;
  int64_t e = 0;
  const HalfSlot* h = nullptr;
};

/** One tile of the channels-innermost layout: `rows` rows of n channels, row a at a * stride floats. */
struct LaneRows {
  int64_t rows, n, stride;
};

/** Where a lanes tile's pass 1 writes its n channels' sums (n doubles each; the tile's part of a unit's partial record). */
struct LaneOut {
  double* gp;
  double* gg;
  double* pp;
  double* pu;
};

/**
 * A lanes tile's per-thread scratch, for npad = n rounded up to 8: `d` 4 x npad doubles (the
 * channels' double sums), `f` 4 x npad floats (the current block's float partials), `gbits` npad
 * floats (every g of a channel OR-ed).
 */
struct LaneScratch {
  double* d;
  float* f;
  float* gbits;
};

/** Per-channel projection coefficients of a lanes tile, padded to a multiple of 8 (div 1, scale 0). */
struct LaneCoefs {
  const float* div;
  const float* scale;
};

// Scalar checks shared by the kernels and the scheduler. `static`: every TU (the AVX2 one
// included) gets its own copy, so no AVX2-compiled copy can be linked into portable code.

/** Whether a float's bits are those of +0 or -0 (the zero test of many g OR-ed together). */
static inline bool bits_zero(float x) {
  uint32_t b;
  memcpy(&b, &x, 4);
  return (b & 0x7fffffffu) == 0;
}

/**
 * Whether the blocked float sums of a row, a piece or a lanes tile's channel cannot be trusted: a
 * product or a block overflowed float (the double sums, and the js backend, stay finite up to
 * ||x|| ~ 1e154), or ||g|| or ||p|| is so small (below 1e-10) that products may have lost bits as
 * float subnormals. NaN/inf inputs also land here; the double redo gives them their usual NaN/inf.
 * A gradient that is exactly zero (every element +0 or -0: `g_zero`) is exact in float, its g.p
 * and g.g are 0 either way, so only p's range decides. Rows of an embedding's gradient are mostly
 * zero, and would otherwise be summed twice every step.
 *
 * note: the test is applied to each range on its own (never to a channel's total), so the redo
 * reads only that range's memory: a unit of the step protocol stays self-contained. Summing the
 * ranges' bounds: a range that passes has error <= gamma_16 * ||x_r|| ||y_r|| (simd.h BSum), one
 * redone in double is exact to double rounding, and sum_r ||x_r|| ||y_r|| <= ||x|| ||y||
 * (Cauchy-Schwarz), so the channel's total keeps the bound gamma_16 * ||x|| ||y||.
 */
static inline bool row_sums_need_double(const ChannelSums& c, bool g_zero) {
  const double kMinSq = 1e-20;
  const bool g_ok = g_zero || (c.gg >= kMinSq && c.gg <= 1e300);
  const bool finite = c.gp - c.gp == 0.0 && c.pu - c.pu == 0.0;  // not inf or NaN
  return !(finite && g_ok && c.pp >= kMinSq && c.pp <= 1e300);
}

/**
 * The kernels of one policy P. Every entry dispatches once on the scalars' variant (with_variant)
 * and on its flags to a fully specialised loop. `norms` false: the info norms are skipped
 * entirely (no norm sums, no copies of the old p) and NaN is returned.
 *
 * note: the Span is passed by reference, and the kernels copy it field by field (kernels.h
 * local_span). Copied by value, it was read back with 16-byte loads that the caller's 8-byte
 * stores cannot forward to, and such a load waits for the store buffer to drain, the previous
 * row's streaming stores included: AdamP's speculative pass on ResNet-50 took 1.12x as long
 * (perf put the time on the call's argument copy).
 */
template <class P>
struct PolicyKernels {
  using S = typename P::Scalars;
  /** The one pass (non-projecting policies; 1-D tensors of projecting ones): update, decay, step; norms with `before`. */
  Norms (*one_pass)(const Span& x, int64_t n, const S& s, float wdf, bool norms);

  // Projecting policies only (null otherwise). `row` entries treat [0, n) as one row of one
  // channel; `lanes` entries run a tile of the channels-innermost layout (element a * stride + k
  // is channel k).
  /** Pass 1 of a row: state update and the four sums (redone in double where float falls short); `uo` (may be null): store u there. */
  ChannelSums (*pass1_row)(const Span& x, int64_t n, const S& s, float* uo);
  /** Pass 1 of a lanes tile: per channel the four sums over the tile's rows (each channel redone in double over those rows where float falls short). */
  void (*pass1_lanes)(const Span& x, LaneRows lr, const S& s, LaneOut out, LaneScratch scratch, float* uo);
  /** Pass 2 recomputing u from the state pass 1 stored (bit-identical): project, write back (P::writes_back), decay, step. */
  Norms (*pass2_row)(const Span& x, int64_t n, const S& s, int projected, ProjCoef k, float wdf, bool norms);
  Norms (*pass2_lanes)(const Span& x, LaneRows lr, const S& s, int projected, LaneCoefs k, float wdf, bool norms);

  // P::kStoreU only: pass 2 from the u pass 1 stored; reads p and u only.
  Norms (*apply_u_row)(const Span& x, const float* u, int64_t n, const S& s, int projected, ProjCoef k, float wdf, bool norms);
  Norms (*apply_u_lanes)(const Span& x, const float* u, LaneRows lr, const S& s, int projected, LaneCoefs k, float wdf,
                         bool norms);
  // P::kSpeculate only (the speculative single pass). apply_u_row that first copies the old p to
  // psave (32-byte aligned; streaming stores).
  Norms (*apply_u_save_row)(float* p, const float* u, int64_t n, const S& s, int projected, ProjCoef k, float wdf,
                            float* psave, bool norms);
  /**
   * pass1_row of row x (u to uo) fused with apply_u_save_row of the previous row of the same
   * tensor (p at pp, u at up, saved to psave); its norms go to *nprev. Bit for bit the two calls.
   */
  ChannelSums (*spec_pair_row)(const Span& x, int64_t n, const S& s, float* uo, float* pp, const float* up, int projected,
                               ProjCoef k, float wdf, float* psave, bool norms, Norms* nprev);
};

/** One instruction set's kernels for every registered policy: `of(P())`. */
struct KernelTable {
  const char* name;
  // 16-bit storage (kernels.h; bit-identical on every table to half.h's scalar reference).
  /** dst = src widened (dtype 1 bfloat16, 2 float16, 0 float32), times inv when scaled: f32(f32(src) * inv). */
  void (*half_widen)(int dtype, const void* src, float* dst, int64_t n, bool scaled, float inv);
  /** dst = src rounded to nearest even (dtype 1 bfloat16, 2 float16). */
  void (*half_narrow)(int dtype, const float* src, uint16_t* dst, int64_t n);
  /** dst = src rounded to bfloat16 stochastically, as elements i0, i0 + 1, ... of a tensor with this key. */
  void (*half_narrow_sr)(const float* src, uint16_t* dst, int64_t n, uint32_t key, uint32_t i0);
#define ADAMP_KT_MEMBER(P) \
  PolicyKernels<P> k_##P;  \
  const PolicyKernels<P>& of(P) const { return k_##P; }
  ADAMP_OPTIMIZERS(ADAMP_KT_MEMBER)
#undef ADAMP_KT_MEMBER
};

const KernelTable& portable_kernels();
/** nullptr when the build has no AVX2 TU. */
const KernelTable* avx2_kernels();

}  // namespace cpu
}  // namespace adamp

#endif  // ADAMP_CPU_KERNEL_TABLE_H
