// Adam's moments and denominator in PyTorch's float32 operation order, shared by AdamP and AdamW
// (docs/numerics.md, "AdamP"):
//   m   = fma(g, f32(1-b1), f32(m*f32(b1)))                      m.mul_(b1).add_(g, alpha=1-b1)
//   v   = fma(f32(f32(1-b2)*g), g, f32(v*f32(b2)))               v.mul_(b2).addcmul_(g, g, value=1-b2)
//   den = f32(f32(sqrt(v)) / f32(sqrt(bc2))) + f32(eps)           (v.sqrt() / sqrt(bc2)).add_(eps)
#ifndef ADAMP_OPTIM_ADAM_MOMENTS_H
#define ADAMP_OPTIM_ADAM_MOMENTS_H

#include "policy.h"

namespace adamp {

/** The float32 constants of one Adam-family tensor step. */
struct AdamScalars {
  float b1;        // f32(beta1)
  float omb1;      // f32(1 - beta1)
  float b2;        // f32(beta2)
  float omb2;      // f32(1 - beta2)
  float sqrt_bc2;  // f32(sqrt(1 - beta2^step))
  float eps;       // f32(eps)
  float neg_step;  // f32(-(lr / (1 - beta1^step)))
  int variant;
};

/** Scalars are doubles until they meet a tensor (docs/numerics.md, "Conventions"). */
ADAMP_HD static inline AdamScalars adam_scalars(double lr, double beta1, double beta2, double eps, double step, int variant) {
  AdamScalars s;
  const double bc1 = 1.0 - pow(beta1, step);
  const double bc2 = 1.0 - pow(beta2, step);
  s.b1 = (float)beta1;
  s.omb1 = (float)(1.0 - beta1);
  s.b2 = (float)beta2;
  s.omb2 = (float)(1.0 - beta2);
  s.sqrt_bc2 = (float)sqrt(bc2);
  s.eps = (float)eps;
  s.neg_step = (float)(-(lr / bc1));
  s.variant = variant;
  return s;
}

/**
 * The checks of the hyperparameters every Adam-family policy has, in its first five wire fields
 * (lr, beta1, beta2, eps, weightDecay); nullptr when they are valid.
 */
ADAMP_HD static inline const char* adam_check(double lr, double beta1, double beta2, double eps, double weight_decay, int* field) {
  if (!is_nonneg(lr)) return check_fail(field, 0, "must be finite and >= 0");
  if (!is_unit(beta1)) return check_fail(field, 1, "must be in [0, 1)");
  if (!is_unit(beta2)) return check_fail(field, 2, "must be in [0, 1)");
  if (!is_nonneg(eps)) return check_fail(field, 3, "must be finite and >= 0");
  if (!is_nonneg(weight_decay)) return check_fail(field, 4, "must be finite and >= 0");
  return nullptr;
}

/** Adam's moments, in place. */
template <class F>
ADAMP_HD static inline void adam_moments(F& m, F& v, F g, const AdamScalars& s) {
  m = f_fma(g, f_splat<F>(s.omb1), f_mul(m, f_splat<F>(s.b1)));
  v = f_fma(f_mul(f_splat<F>(s.omb2), g), g, f_mul(v, f_splat<F>(s.b2)));
}

/** `sqrt(v) / sqrt(bc2) + eps` (eps after the division: PyTorch's placement). */
template <class F>
ADAMP_HD static inline F adam_denom(F v, const AdamScalars& s) {
  return f_add(f_div(f_sqrt(v), f_splat<F>(s.sqrt_bc2)), f_splat<F>(s.eps));
}

}  // namespace adamp

#endif  // ADAMP_OPTIM_ADAM_MOMENTS_H
