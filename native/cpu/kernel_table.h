// The CPU core's inner loops, one table per instruction set (portable, AVX2+FMA), chosen at run
// time. Every entry works on one contiguous range and returns its reductions already summed in
// a fixed order, so the caller's task split alone decides the order of every addition.
#ifndef ADAMP_CPU_KERNEL_TABLE_H
#define ADAMP_CPU_KERNEL_TABLE_H

#include <stdint.h>

#include "adamp/math.h"

namespace adamp {
namespace cpu {

/** Reductions of a pass that writes p: ||p_before||^2 (one-pass kernels only), ||p_after||^2, ||dp||^2. */
struct Norms {
  double before, after, delta;
};

/** Per-channel double accumulators for the channels-innermost layout (inner == 1), each padded to a multiple of 8. */
struct LaneSums {
  double* gp;
  double* gg;
  double* pp;
  double* pu;
};

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

  // AdamP. `row` entries treat [0, n) as one row of one channel; `lanes` entries treat element k
  // as channel k (the channels-innermost layout) and accumulate into / read per-channel arrays.
  // `uo` (may be null): where pass 1 also stores u for adamp_apply_u_*.
  ChannelSums (*adamp_pass1_row)(const float* p, const float* g, float* m, float* v, int64_t n, const AdamPScalarsF& s,
                                 float* uo);
  void (*adamp_pass1_lanes)(const float* p, const float* g, float* m, float* v, int64_t n, const AdamPScalarsF& s,
                            LaneSums acc, float* uo);
  Norms (*adamp_pass2_row)(float* p, const float* g, const float* m, const float* v, int64_t n, const AdamPScalarsF& s,
                           int projected, ProjCoef k, float wdf);
  Norms (*adamp_pass2_lanes)(float* p, const float* g, const float* m, const float* v, int64_t n,
                             const AdamPScalarsF& s, int projected, LaneCoefs k, float wdf);
  // Pass 2 from the u stored by pass 1: reads p and u only.
  Norms (*adamp_apply_u_row)(float* p, const float* u, int64_t n, float neg_step, int projected, ProjCoef k, float wdf);
  Norms (*adamp_apply_u_lanes)(float* p, const float* u, int64_t n, float neg_step, int projected, LaneCoefs k,
                               float wdf);
  // The speculative single pass: adamp_apply_u_row that first copies the old p to psave.
  Norms (*adamp_apply_u_save_row)(float* p, const float* u, int64_t n, float neg_step, int projected, ProjCoef k,
                                  float wdf, float* psave);
  Norms (*adamp_one_pass)(float* p, const float* g, float* m, float* v, int64_t n, const AdamPScalarsF& s, float wdf);

  // SGDP (m = the momentum buffer).
  ChannelSums (*sgdp_pass1_row)(const float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s);
  void (*sgdp_pass1_lanes)(const float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s, LaneSums acc);
  Norms (*sgdp_pass2_row)(float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s, int projected,
                          ProjCoef k, float wdf);
  Norms (*sgdp_pass2_lanes)(float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s, int projected,
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
