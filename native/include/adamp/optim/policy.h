// What an optimizer is to the native code: an element policy. The CPU core (native/cpu) and the
// CUDA kernels (native/cuda) are written once against this concept and instantiate every
// registered policy (registry.h); neither knows which optimizer it runs.
//
// A policy P is a struct of static members (all ADAMP_HD, so host, SIMD lanes and device share
// them; F is `float` or an 8-lane vector with the primitives of math.h):
//
//   kName        the kind string the binding and TS use ("adamp")
//   kSlots       float state slots per element, in the TS spec's order (AdamP: exp_avg, exp_avg_sq)
//   kProjects    true: the step is stats -> decide -> apply (AdamP, SGDP); false: one pass
//   kVariants    compile-time variants of the element code (Nesterov, first step, ...): the kernels
//                dispatch once per tensor with `with_variant` and instantiate every one
//   kStoreU      scheduling hint (projecting only): u costs a sqrt and a division, store it
//                between the passes instead of recomputing it
//   kSpeculate   scheduling hint (projecting only): apply rows with a predicted decision in pass 1
//   Hyper        the group's hyperparameters, kHyperCount doubles in wire order (booleans as
//                0/1): the TS spec's `wire()` writes this order; hyper_name(i) names field i
//   check(h, &i) nullptr when h is valid, else a message about field i (the binding's guard
//                for direct callers; the TS facade has already validated)
//   Scalars      float32 constants of one tensor's step, with `variant`; scalars(h, step) builds
//                them (`step`: the tensor's count after this step's increment, 1 at the first)
//   wd_factor(h, ratio)  the decoupled weight-decay factor of this step (1 when there is none)
//   decision_params(h)   delta, wd_ratio, eps of the projection test (projecting only)
//   update<V>(g, p, st, s) -> u   pass 1 / the one pass: updates the state st[0..kSlots) in place
//                and returns the update before projection
//   stored<V>(g, st, s) -> u      (projecting) u again from the state pass 1 stored, bit-identical
//   stored_reads_g(V)             (projecting) whether `stored` needs g
//   writes_back(V)                (projecting) whether a projected u is stored into st[0]
//                                 (SGDP without Nesterov: the official code projects its buffer)
//   apply(p, u, wdf, s) -> p1     weight decay and the step
//
// Adding an optimizer: a header like adamp.h beside this one and one line in registry.h (plus,
// in TS, a spec under lib/optim/ and one line in its registry).
#ifndef ADAMP_OPTIM_POLICY_H
#define ADAMP_OPTIM_POLICY_H

#include "../math.h"

namespace adamp {

/** The projection test's hyperparameters. */
struct DecisionParams {
  double delta, wd_ratio, eps;
};

/** x is 0 or 1 (a boolean on the wire). */
ADAMP_HD static inline bool is_flag(double x) { return x == 0.0 || x == 1.0; }
/** x is finite and >= 0. */
ADAMP_HD static inline bool is_nonneg(double x) { return x >= 0.0 && x - x == 0.0; }
/** x is in [0, 1). */
ADAMP_HD static inline bool is_unit(double x) { return x >= 0.0 && x < 1.0; }
ADAMP_HD static inline bool is_finite(double x) { return x - x == 0.0; }
/** A policy's check(): records the bad field and returns the message. */
ADAMP_HD static inline const char* check_fail(int* field, int i, const char* message) {
  *field = i;
  return message;
}

/** A variant number as a type: `[&](auto tag) { constexpr int V = decltype(tag)::value; ... }`. */
template <int V>
struct VariantTag {
  static constexpr int value = V;
};

namespace detail {
template <int V, int N>
struct VariantDispatch {
  template <class Fn>
  ADAMP_HD static inline void run(int v, const Fn& fn) {
    if (v == V)
      fn(VariantTag<V>());
    else
      VariantDispatch<V + 1, N>::run(v, fn);
  }
};
template <int N>
struct VariantDispatch<N, N> {
  template <class Fn>
  ADAMP_HD static inline void run(int, const Fn&) {}
};
}  // namespace detail

/**
 * Calls fn(VariantTag<V>()) for the runtime variant v in [0, P::kVariants): the one switch from a
 * tensor's scalars to the compile-time element code (every variant is instantiated).
 */
template <class P, class Fn>
ADAMP_HD static inline void with_variant(int v, const Fn& fn) {
  detail::VariantDispatch<0, P::kVariants>::run(v, fn);
}

}  // namespace adamp

#endif  // ADAMP_OPTIM_POLICY_H
