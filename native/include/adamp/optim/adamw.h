// AdamW as torch.optim.AdamW (PyTorch 1.13, single-tensor path): a registered baseline with no
// projection. docs/numerics.md, "AdamW and SGD"; lib/optim/adamw.ts is its TS spec.
//   p = f32(p * f32(1 - lr*wd))                                     param.mul_(1 - lr*wd), always
//   m, v, den as AdamP
//   p = p + f32(f32(f32(-lr/bc1) * m) / den)                         param.addcdiv_(m, den, value=-lr/bc1)
#ifndef ADAMP_OPTIM_ADAMW_H
#define ADAMP_OPTIM_ADAMW_H

#include "adam_moments.h"

namespace adamp {

struct AdamW {
  static constexpr const char* kName = "adamw";
  static constexpr int kSlots = 2;  // exp_avg, exp_avg_sq
  static constexpr bool kProjects = false;
  static constexpr int kVariants = 1;

  struct Hyper {
    double lr, beta1, beta2, eps, weight_decay;
  };
  static constexpr int kHyperCount = 5;
  ADAMP_HD static inline const char* hyper_name(int i) {
    const char* const names[kHyperCount] = {"lr", "beta1", "beta2", "eps", "weightDecay"};
    return i >= 0 && i < kHyperCount ? names[i] : "?";
  }
  ADAMP_HD static inline const char* check(const Hyper& h, int* field) {
    return adam_check(h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, field);
  }

  using Scalars = AdamScalars;
  ADAMP_HD static inline Scalars scalars(const Hyper& h, double step) {
    return adam_scalars(h.lr, h.beta1, h.beta2, h.eps, step, 0);
  }
  /** `f32(1 - lr*wd)`, applied at every step as torch does (exactly 1 when wd == 0). */
  ADAMP_HD static inline float wd_factor(const Hyper& h, double /*ratio*/) { return (float)(1.0 - h.lr * h.weight_decay); }

  /** u = f32(f32(-step_size * m) / den): addcdiv's operation order, so `apply` adds it. */
  template <int V, class F>
  ADAMP_HD static inline F update(F g, F /*p*/, F (&st)[kSlots], const Scalars& s) {
    adam_moments(st[0], st[1], g, s);
    return f_div(f_mul(f_splat<F>(s.neg_step), st[0]), adam_denom(st[1], s));
  }
  template <class F>
  ADAMP_HD static inline F apply(F p, F u, F wdf, const Scalars&) {
    return f_add(f_mul(p, wdf), u);
  }
};

}  // namespace adamp

#endif  // ADAMP_OPTIM_ADAMW_H
