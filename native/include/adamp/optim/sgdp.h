// SGDP (Heo et al., ICLR 2021; the official clovaai/AdamP v0.3.0): SGD with momentum whose update
// loses its radial component on scale-invariant weights. docs/numerics.md, "SGDP", is the
// specification; lib/optim/sgdp.ts is the same optimizer's TS spec.
//   buf = fma(g, f32(1-dampening), f32(buf*f32(momentum)))          (dampening from the first step)
//   d   = buf                                   (Nesterov: g + f32(momentum*buf))
//   p   = fma(d', f32(-lr), f32(p * f32(1 - lr*wd*ratio/(1-momentum))))
#ifndef ADAMP_OPTIM_SGDP_H
#define ADAMP_OPTIM_SGDP_H

#include "policy.h"

namespace adamp {

/** The float32 constants of one SGD-family tensor step. */
struct MomentumScalars {
  float mom;     // f32(momentum)
  float omd;     // f32(1 - dampening)
  float neg_lr;  // f32(-lr)
  float wd;      // f32(weight_decay): coupled decay (SGD); 0 for SGDP
  int variant;
};

/** `buf*momentum + (1-dampening)*d`: buf.mul_(momentum).add_(d, alpha=1-dampening). */
template <class F>
ADAMP_HD static inline F momentum_buffer(F buf, F d, const MomentumScalars& s) {
  return f_fma(d, f_splat<F>(s.omd), f_mul(buf, f_splat<F>(s.mom)));
}

struct SGDP {
  static constexpr const char* kName = "sgdp";
  static constexpr int kSlots = 1;  // momentum (the official code's name for the buffer)
  static constexpr bool kProjects = true;
  static constexpr int kVariants = 2;  // 1 = Nesterov
  static constexpr bool kStoreU = false;
  static constexpr bool kSpeculate = false;

  struct Hyper {
    double lr, momentum, dampening, weight_decay, nesterov, eps, delta, wd_ratio;
  };
  static constexpr int kHyperCount = 8;
  ADAMP_HD static inline const char* hyper_name(int i) {
    const char* const names[kHyperCount] = {"lr", "momentum", "dampening", "weightDecay", "nesterov", "eps", "delta", "wdRatio"};
    return i >= 0 && i < kHyperCount ? names[i] : "?";
  }
  ADAMP_HD static inline const char* check(const Hyper& h, int* field) {
    if (!is_nonneg(h.lr)) return check_fail(field, 0, "must be finite and >= 0");
    if (!is_nonneg(h.momentum)) return check_fail(field, 1, "must be finite and >= 0");
    if (!is_finite(h.dampening)) return check_fail(field, 2, "must be finite");
    if (!is_nonneg(h.weight_decay)) return check_fail(field, 3, "must be finite and >= 0");
    if (h.weight_decay > 0 && h.momentum >= 1) return check_fail(field, 1, "must be < 1 when weightDecay > 0");
    if (!is_flag(h.nesterov)) return check_fail(field, 4, "must be 0 or 1");
    if (!is_nonneg(h.eps)) return check_fail(field, 5, "must be finite and >= 0");
    if (!is_nonneg(h.delta)) return check_fail(field, 6, "must be finite and >= 0");
    if (!is_nonneg(h.wd_ratio)) return check_fail(field, 7, "must be finite and >= 0");
    return nullptr;
  }

  using Scalars = MomentumScalars;
  ADAMP_HD static inline Scalars scalars(const Hyper& h, double /*step*/) {
    Scalars s;
    s.mom = (float)h.momentum;
    s.omd = (float)(1.0 - h.dampening);
    s.neg_lr = (float)(-h.lr);
    s.wd = 0.0f;
    s.variant = h.nesterov != 0.0 ? 1 : 0;
    return s;
  }
  /** `f32(1 - lr*wd*ratio/(1-momentum))`; 1 unless wd > 0. */
  ADAMP_HD static inline float wd_factor(const Hyper& h, double ratio) {
    return h.weight_decay > 0 ? (float)(1.0 - (h.lr * h.weight_decay * ratio) / (1.0 - h.momentum)) : 1.0f;
  }
  ADAMP_HD static inline DecisionParams decision_params(const Hyper& h) { return DecisionParams{h.delta, h.wd_ratio, h.eps}; }

  template <int V, class F>
  ADAMP_HD static inline F stored(F g, const F (&st)[kSlots], const Scalars& s) {
    if (V == 1) return f_add(g, f_mul(f_splat<F>(s.mom), st[0]));
    return st[0];
  }
  template <int V, class F>
  ADAMP_HD static inline F update(F g, F /*p*/, F (&st)[kSlots], const Scalars& s) {
    st[0] = momentum_buffer(st[0], g, s);
    return stored<V>(g, st, s);
  }
  ADAMP_HD static constexpr bool stored_reads_g(int v) { return v == 1; }
  // note: without Nesterov the official `d` IS the momentum buffer and the projection runs in
  // place on it, so a projected update is written back into the buffer (docs/numerics.md, "SGDP").
  ADAMP_HD static constexpr bool writes_back(int v) { return v == 0; }
  template <class F>
  ADAMP_HD static inline F apply(F p, F u, F wdf, const Scalars& s) {
    return apply_step(p, u, wdf, f_splat<F>(s.neg_lr));
  }
};

}  // namespace adamp

#endif  // ADAMP_OPTIM_SGDP_H
