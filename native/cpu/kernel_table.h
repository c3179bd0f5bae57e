// The CPU core's inner loops, one table per instruction set (portable, AVX2+FMA), chosen at run
// time. Every entry works on one contiguous range and returns its reductions already summed in
// a fixed order, so the caller's task split alone decides the order of every addition.
#ifndef ADAMP_CPU_KERNEL_TABLE_H
#define ADAMP_CPU_KERNEL_TABLE_H

#include <stdint.h>
#include <string.h>

#include "adamp/math.h"

namespace adamp {
namespace cpu {

/** Reductions of a pass that writes p: ||p_before||^2 (one-pass kernels only), ||p_after||^2, ||dp||^2. */
struct Norms {
  double before, after, delta;
};

/**
 * One lanes-layout task's per-channel double accumulators (its channels' sums over its rows) and
 * the kernel's float scratch: `fblk` 4 x padded floats (the current block's partial sums),
 * `gbits` padded floats (every g of a channel OR-ed). Padded: channels rounded up to 8.
 */
struct LaneSums {
  double* gp;
  double* gg;
  double* pp;
  double* pu;
  float* fblk;
  float* gbits;
};

/** One task of the channels-innermost layout: `rows` rows of n channels, row a at a * stride floats. */
struct LaneRows {
  int64_t rows, n, stride;
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
 * Whether the blocked float sums of a row or channel cannot be trusted: a product or a block
 * overflowed float (the double sums, and the js backend, stay finite up to ||x|| ~ 1e154), or
 * ||g|| or ||p|| is so small (below 1e-10) that products may have lost bits as float subnormals.
 * NaN/inf inputs also land here; the double redo gives them their usual NaN/inf.
 * A gradient that is exactly zero (every element +0 or -0: `g_zero`) is exact in float, its
 * g.p and g.g are 0 either way, so only p's range decides. Rows of an embedding's gradient are
 * mostly zero, and would otherwise be summed twice every step.
 */
static inline bool row_sums_need_double(const ChannelSums& c, bool g_zero) {
  const double kMinSq = 1e-20;
  const bool g_ok = g_zero || (c.gg >= kMinSq && c.gg <= 1e300);
  const bool finite = c.gp - c.gp == 0.0 && c.pu - c.pu == 0.0;  // not inf or NaN
  return !(finite && g_ok && c.pp >= kMinSq && c.pp <= 1e300);
}

/** Per-channel projection coefficients for the channels-innermost layout, padded to a multiple of 8 (div 1, scale 0). */
struct LaneCoefs {
  const float* div;
  const float* scale;
};

/** torch.optim.SGD-style momentum step used as the benchmark floor (coupled weight decay, 20 B/elem). */
struct SGDScalarsF {
  float mom, omd, neg_lr, wd;
  int nesterov;
};

struct KernelTable {
  const char* name;

  // AdamP. `row` entries treat [0, n) as one row of one channel; `lanes` entries run a whole task
  // of the channels-innermost layout (element a * stride + k is channel k) and accumulate into /
  // read per-channel arrays.
  // `uo` (may be null): where pass 1 also stores u for adamp_apply_u_*.
  ChannelSums (*adamp_pass1_row)(const float* p, const float* g, float* m, float* v, int64_t n, const AdamPScalarsF& s,
                                 float* uo);
  void (*adamp_pass1_lanes)(const float* p, const float* g, float* m, float* v, LaneRows lr, const AdamPScalarsF& s,
                            LaneSums acc, float* uo);
  // One channel's four sums in double, row by row (p, g, m, v at the channel's first element;
  // element a * stride): the exact fallback of the lanes layout's float partials.
  ChannelSums (*adamp_lane_sums_double)(const float* p, const float* g, const float* m, const float* v, int64_t rows,
                                        int64_t stride, const AdamPScalarsF& s);
  Norms (*adamp_pass2_row)(float* p, const float* g, const float* m, const float* v, int64_t n, const AdamPScalarsF& s,
                           int projected, ProjCoef k, float wdf);
  Norms (*adamp_pass2_lanes)(float* p, const float* g, const float* m, const float* v, LaneRows lr,
                             const AdamPScalarsF& s, int projected, LaneCoefs k, float wdf);
  // Pass 2 from the u stored by pass 1: reads p and u only.
  Norms (*adamp_apply_u_row)(float* p, const float* u, int64_t n, float neg_step, int projected, ProjCoef k, float wdf);
  Norms (*adamp_apply_u_lanes)(float* p, const float* u, LaneRows lr, float neg_step, int projected, LaneCoefs k,
                               float wdf);
  // The speculative single pass: adamp_apply_u_row that first copies the old p to psave.
  Norms (*adamp_apply_u_save_row)(float* p, const float* u, int64_t n, float neg_step, int projected, ProjCoef k,
                                  float wdf, float* psave);
  Norms (*adamp_one_pass)(float* p, const float* g, float* m, float* v, int64_t n, const AdamPScalarsF& s, float wdf);

  // SGDP (m = the momentum buffer).
  ChannelSums (*sgdp_pass1_row)(const float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s);
  void (*sgdp_pass1_lanes)(const float* p, const float* g, float* buf, LaneRows lr, const SGDPScalarsF& s, LaneSums acc);
  ChannelSums (*sgdp_lane_sums_double)(const float* p, const float* g, const float* buf, int64_t rows, int64_t stride,
                                       const SGDPScalarsF& s);
  Norms (*sgdp_pass2_row)(float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s, int projected,
                          ProjCoef k, float wdf);
  Norms (*sgdp_pass2_lanes)(float* p, const float* g, float* buf, LaneRows lr, const SGDPScalarsF& s, int projected,
                            LaneCoefs k, float wdf);
  Norms (*sgdp_one_pass)(float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s, float wdf);

  // One-pass floors for the benchmark: AdamW (28 B/elem) and SGD with momentum (20 B/elem).
  void (*adam_floor)(float* p, const float* g, float* m, float* v, int64_t n, const AdamPScalarsF& s, float wdf);
  void (*sgd_floor)(float* p, const float* g, float* buf, int64_t n, const SGDScalarsF& s);
};

const KernelTable& portable_kernels();
/** nullptr when the build has no AVX2 TU. */
const KernelTable* avx2_kernels();

}  // namespace cpu
}  // namespace adamp

#endif  // ADAMP_CPU_KERNEL_TABLE_H
