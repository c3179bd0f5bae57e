// TRANSITIONAL: the pre-spine entry points adamp_step / sgdp_step, kept only because
// native/tests/cuda/test_cuda_step.cpp (ADAMP_TEST_CPU_CORE, owned by the CUDA port) still calls
// them. They forward to cpu::step with the policies' wire order. Delete this header (and its
// include at the end of step.h) together with the old element functions of adamp/math.h once the
// CUDA port has moved to cpu::step.
#ifndef ADAMP_CPU_STEP_LEGACY_H
#define ADAMP_CPU_STEP_LEGACY_H

namespace adamp {
namespace cpu {

struct AdamPHyper {
  double lr, beta1, beta2, eps, weight_decay, delta, wd_ratio;
  bool nesterov;
};

struct SGDPHyper {
  double lr, momentum, dampening, weight_decay, eps, delta, wd_ratio;
  bool nesterov;
};

inline void adamp_step(const TensorSlot* slots, size_t count, const AdamPHyper& hp, double* info, int threads) {
  const double wire[8] = {hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.delta, hp.wd_ratio, hp.nesterov ? 1.0 : 0.0};
  StepConfig cfg;
  cfg.threads = threads;
  step(OptKind::AdamP, slots, count, wire, info, cfg);
}

inline void sgdp_step(const TensorSlot* slots, size_t count, const SGDPHyper& hp, double* info, int threads) {
  const double wire[8] = {hp.lr, hp.momentum, hp.dampening, hp.weight_decay, hp.nesterov ? 1.0 : 0.0, hp.eps, hp.delta, hp.wd_ratio};
  StepConfig cfg;
  cfg.threads = threads;
  step(OptKind::SGDP, slots, count, wire, info, cfg);
}

}  // namespace cpu
}  // namespace adamp

#endif  // ADAMP_CPU_STEP_LEGACY_H
