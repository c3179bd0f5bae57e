// The CPU core's entry points: whole optimizer steps over many tensors.
//
// Plain C++ with POD arguments and no exceptions: the binding validates everything before it
// calls in. The results are bit-identical for every thread count and for both kernel tables.
#ifndef ADAMP_CPU_STEP_H
#define ADAMP_CPU_STEP_H

#include <stddef.h>
#include <stdint.h>

namespace adamp {
namespace cpu {

/**
 * One tensor: element i belongs to output channel (i / inner) % channels, numel = outer *
 * channels * inner (see lib/backends/engine.ts Slot). AdamP: m = exp_avg, v = exp_avg_sq.
 * SGDP: m = the momentum buffer, v unused.
 */
struct TensorSlot {
  float* p;
  const float* g;
  float* m;
  float* v;
  int64_t numel;
  int64_t outer;
  int64_t channels;
  int64_t inner;
  bool eligible;
  double step;  // AdamP: the count after this step's increment
};

struct AdamPHyper {
  double lr, beta1, beta2, eps, weight_decay, delta, wd_ratio;
  bool nesterov;
};

struct SGDPHyper {
  double lr, momentum, dampening, weight_decay, eps, delta, wd_ratio;
  bool nesterov;
};

/** The benchmark floors: AdamW (decoupled decay) and torch.optim.SGD with momentum (coupled decay). */
struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
};
struct SGDHyper {
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
};

/** Steps every slot; writes adamp::kInfoStride doubles per slot into info. threads <= 0: all hardware threads. */
void adamp_step(const TensorSlot* slots, size_t count, const AdamPHyper& hp, double* info, int threads);
void sgdp_step(const TensorSlot* slots, size_t count, const SGDPHyper& hp, double* info, int threads);
void adam_step(const TensorSlot* slots, size_t count, const AdamHyper& hp, int threads);
void sgd_step(const TensorSlot* slots, size_t count, const SGDHyper& hp, int threads);

enum class Simd { Portable = 0, Avx2 = 1 };
/** Whether this CPU and this build can run the AVX2+FMA kernels. */
bool avx2_available();
/** The kernels in use: AVX2 when available unless ADAMP_SIMD=portable (read once) or set_simd said otherwise. */
Simd simd();
/** Choose the kernels (tests and benchmarks); returns what is in effect (AVX2 falls back to portable when unavailable). */
Simd set_simd(Simd want);
const char* simd_name(Simd s);

/**
 * AdamP's speculative single pass for row-layout tensors (On unless ADAMP_SPECULATE=0, read once).
 * Every mode gives the same results bit for bit: Off forces the two-pass path; PredictNone and
 * PredictChannel (tests) force every row's prediction, so every redo path runs.
 */
enum class Speculation { Off = 0, On = 1, PredictNone = 2, PredictChannel = 3 };
Speculation speculation();
void set_speculation(Speculation mode);

/** The default thread count (hardware threads) and the clamp applied to requests. */
int default_threads();
int clamp_threads(int threads);

}  // namespace cpu
}  // namespace adamp

#endif  // ADAMP_CPU_STEP_H
