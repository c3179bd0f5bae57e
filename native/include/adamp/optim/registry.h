// Every optimizer the native code knows, each an element policy (policy.h). One line per optimizer:
// the kind enum, the binding's kind names and every instantiation in the CPU core and the CUDA
// kernels derive from this list. The order is the wire order of kind numbers; keep it in step with
// lib/optim/registry.ts (test/registry.test.ts compares them).
#ifndef ADAMP_OPTIM_REGISTRY_H
#define ADAMP_OPTIM_REGISTRY_H

#include "adamp.h"
#include "adamw.h"
#include "sgd.h"
#include "sgdp.h"

#define ADAMP_OPTIMIZERS(X) \
  X(AdamP)                  \
  X(SGDP)                   \
  X(AdamW)                  \
  X(SGD)

namespace adamp {

enum class OptKind : int {
#define ADAMP_KIND_ENUM(P) P,
  ADAMP_OPTIMIZERS(ADAMP_KIND_ENUM)
#undef ADAMP_KIND_ENUM
  Count
};

/** Calls fn(P()) for the policy of `kind`; false when the kind is unknown. */
template <class Fn>
static inline bool with_policy(OptKind kind, const Fn& fn) {
  switch (kind) {
#define ADAMP_KIND_CASE(P) \
  case OptKind::P:         \
    fn(P());               \
    return true;
    ADAMP_OPTIMIZERS(ADAMP_KIND_CASE)
#undef ADAMP_KIND_CASE
    default:
      return false;
  }
}

}  // namespace adamp

#endif  // ADAMP_OPTIM_REGISTRY_H
