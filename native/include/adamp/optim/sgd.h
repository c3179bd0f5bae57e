// SGD as torch.optim.SGD (PyTorch 1.13, single-tensor path): a registered baseline with no
// projection. docs/numerics.md, "AdamW and SGD"; lib/optim/sgd.ts is its TS spec.
//   d   = fma(p, f32(wd), g)                                        d_p = g.add(p, alpha=wd), when wd != 0
//   buf = d at the first step (a clone), then fma(d, f32(1-dampening), f32(buf*f32(momentum)))
//   d   = buf                                    (Nesterov: fma(buf, f32(momentum), d))
//   p   = fma(d, f32(-lr), p)
// Without momentum the buffer is not touched and d is the (decayed) gradient.
#ifndef ADAMP_OPTIM_SGD_H
#define ADAMP_OPTIM_SGD_H

#include "sgdp.h"

namespace adamp {

struct SGD {
  static constexpr const char* kName = "sgd";
  static constexpr int kSlots = 1;  // momentum_buffer
  static constexpr bool kProjects = false;
  // Variant bits: 1 = weight decay, 2 = momentum, 4 = first step (the buffer is a clone of d), 8 = Nesterov.
  static constexpr int kDecay = 1, kMomentum = 2, kFirst = 4, kNesterov = 8;
  static constexpr int kVariants = 16;

  struct Hyper {
    double lr, momentum, dampening, weight_decay, nesterov;
  };
  static constexpr int kHyperCount = 5;
  ADAMP_HD static inline const char* hyper_name(int i) {
    const char* const names[kHyperCount] = {"lr", "momentum", "dampening", "weightDecay", "nesterov"};
    return i >= 0 && i < kHyperCount ? names[i] : "?";
  }
  ADAMP_HD static inline const char* check(const Hyper& h, int* field) {
    if (!is_nonneg(h.lr)) return check_fail(field, 0, "must be finite and >= 0");
    if (!is_nonneg(h.momentum)) return check_fail(field, 1, "must be finite and >= 0");
    if (!is_finite(h.dampening)) return check_fail(field, 2, "must be finite");
    if (!is_nonneg(h.weight_decay)) return check_fail(field, 3, "must be finite and >= 0");
    if (!is_flag(h.nesterov)) return check_fail(field, 4, "must be 0 or 1");
    if (h.nesterov != 0 && (h.momentum <= 0 || h.dampening != 0)) return check_fail(field, 4, "needs momentum > 0 and dampening 0");
    return nullptr;
  }

  using Scalars = MomentumScalars;
  ADAMP_HD static inline Scalars scalars(const Hyper& h, double step) {
    Scalars s;
    s.mom = (float)h.momentum;
    s.omd = (float)(1.0 - h.dampening);
    s.neg_lr = (float)(-h.lr);
    s.wd = (float)h.weight_decay;
    s.variant = (h.weight_decay != 0 ? kDecay : 0) | (h.momentum != 0 ? kMomentum : 0) | (step <= 1 ? kFirst : 0) |
                (h.nesterov != 0 ? kNesterov : 0);
    return s;
  }
  ADAMP_HD static inline float wd_factor(const Hyper&, double) { return 1.0f; }  // the decay is coupled (in d)

  template <int V, class F>
  ADAMP_HD static inline F update(F g, F p, F (&st)[kSlots], const Scalars& s) {
    const F d = (V & kDecay) ? f_fma(p, f_splat<F>(s.wd), g) : g;
    if (!(V & kMomentum)) return d;
    st[0] = (V & kFirst) ? d : momentum_buffer(st[0], d, s);
    return (V & kNesterov) ? f_fma(st[0], f_splat<F>(s.mom), d) : st[0];
  }
  template <class F>
  ADAMP_HD static inline F apply(F p, F u, F /*wdf*/, const Scalars& s) {
    return f_fma(u, f_splat<F>(s.neg_lr), p);
  }
};

}  // namespace adamp

#endif  // ADAMP_OPTIM_SGD_H
