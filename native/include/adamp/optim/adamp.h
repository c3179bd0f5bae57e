// AdamP (Heo et al., ICLR 2021; the official clovaai/AdamP v0.3.0): Adam with decoupled weight
// decay whose update loses its radial component on scale-invariant weights. docs/numerics.md,
// "AdamP", is the specification; lib/optim/adamp.ts is the same optimizer's TS spec.
//   u  = m / den                                   (Nesterov: f32(f32(b1*m) + f32((1-b1)*g)) / den)
//   p  = fma(u', f32(-lr/bc1), f32(p * f32(1 - lr*wd*ratio)))     u' = u after the projection
#ifndef ADAMP_OPTIM_ADAMP_H
#define ADAMP_OPTIM_ADAMP_H

#include "adam_moments.h"

namespace adamp {

struct AdamP {
  static constexpr const char* kName = "adamp";
  static constexpr int kSlots = 2;  // exp_avg, exp_avg_sq
  static constexpr bool kProjects = true;
  static constexpr int kVariants = 2;  // 1 = Nesterov
  static constexpr bool kStoreU = true;
  static constexpr bool kSpeculate = true;

  struct Hyper {
    double lr, beta1, beta2, eps, weight_decay, delta, wd_ratio, nesterov;
  };
  static constexpr int kHyperCount = 8;
  ADAMP_HD static inline const char* hyper_name(int i) {
    const char* const names[kHyperCount] = {"lr", "beta1", "beta2", "eps", "weightDecay", "delta", "wdRatio", "nesterov"};
    return i >= 0 && i < kHyperCount ? names[i] : "?";
  }
  ADAMP_HD static inline const char* check(const Hyper& h, int* field) {
    if (const char* bad = adam_check(h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, field)) return bad;
    if (!is_nonneg(h.delta)) return check_fail(field, 5, "must be finite and >= 0");
    if (!is_nonneg(h.wd_ratio)) return check_fail(field, 6, "must be finite and >= 0");
    if (!is_flag(h.nesterov)) return check_fail(field, 7, "must be 0 or 1");
    return nullptr;
  }

  using Scalars = AdamScalars;
  ADAMP_HD static inline Scalars scalars(const Hyper& h, double step) {
    return adam_scalars(h.lr, h.beta1, h.beta2, h.eps, step, h.nesterov != 0.0 ? 1 : 0);
  }
  /** `f32(1 - lr*wd*ratio)`; 1 unless wd > 0 (the official code decays only then). */
  ADAMP_HD static inline float wd_factor(const Hyper& h, double ratio) {
    return h.weight_decay > 0 ? (float)(1.0 - h.lr * h.weight_decay * ratio) : 1.0f;
  }
  ADAMP_HD static inline DecisionParams decision_params(const Hyper& h) { return DecisionParams{h.delta, h.wd_ratio, h.eps}; }

  /** u from the UPDATED m and the current g. */
  template <int V, class F>
  ADAMP_HD static inline F stored(F g, const F (&st)[kSlots], const Scalars& s) {
    const F den = adam_denom(st[1], s);
    if (V == 1) return f_div(f_add(f_mul(f_splat<F>(s.b1), st[0]), f_mul(f_splat<F>(s.omb1), g)), den);
    return f_div(st[0], den);
  }
  template <int V, class F>
  ADAMP_HD static inline F update(F g, F /*p*/, F (&st)[kSlots], const Scalars& s) {
    adam_moments(st[0], st[1], g, s);
    return stored<V>(g, st, s);
  }
  ADAMP_HD static constexpr bool stored_reads_g(int v) { return v == 1; }
  ADAMP_HD static constexpr bool writes_back(int) { return false; }  // exp_avg is never projected
  template <class F>
  ADAMP_HD static inline F apply(F p, F u, F wdf, const Scalars& s) {
    return apply_step(p, u, wdf, f_splat<F>(s.neg_step));
  }
};

}  // namespace adamp

#endif  // ADAMP_OPTIM_ADAMP_H
