// The CPU core's entry points: whole optimizer steps over many tensors, for every optimizer of the
// registry (native/include/adamp/optim/registry.h), and the step protocol on shards of a tensor.
//
// Plain C++ with POD arguments and no exceptions: the binding validates everything before it
// calls in (the protocol's checks of shards and records are functions here, so the binding and
// the tests share them). The results are bit-identical for every thread count and for both kernel
// tables.
#ifndef ADAMP_CPU_STEP_H
#define ADAMP_CPU_STEP_H

#include <stddef.h>
#include <stdint.h>

#include <vector>

#include "adamp/optim/registry.h"
#include "half.h"  // HalfSlot

namespace adamp {
namespace cpu {

/**
 * One tensor: element i belongs to output channel (i / inner) % channels, numel = outer *
 * channels * inner (see lib/backends/engine.ts Slot). `state` holds the policy's kSlots state
 * arrays in its spec's order (AdamP: exp_avg, exp_avg_sq; SGDP and SGD: the momentum buffer);
 * entries past kSlots are ignored.
 */
struct TensorSlot {
  float* p;
  const float* g;
  float* state[2];
  int64_t numel;
  int64_t outer;
  int64_t channels;
  int64_t inner;
  bool eligible;  // ndim > 1: the projection test runs (projecting policies only)
  double step;    // the tensor's count after this step's increment (1 at its first step)
  const HalfSlot* half = nullptr;  // 16-bit storage, or null (float32 p and g)
};

struct StepConfig {
  /** Threads, the caller's included; <= 0: all hardware threads. Results are identical for every count. */
  int threads = 0;
  /**
   * Compute the info record's norms (||p||^2 before and after, ||dp||^2). Off: none of that work
   * is done and the three fields are NaN, except normSqBefore of an eligible tensor of a
   * projecting policy, which is the decision's own p.p and costs nothing.
   */
  bool norms = true;
};

/** Policy facts the binding needs, from the registry. */
struct KindInfo {
  OptKind kind;
  const char* name;
  int slots;
  int hyper_count;
  bool projects;
};
/** Every registered policy, in kind order. */
const std::vector<KindInfo>& kinds();
/** The kind named `name` ("adamp"); false when none is. */
bool kind_from_name(const char* name, OptKind* out);
/** The name of hyperparameter i of `kind` (the TS spec's key, e.g. "weightDecay"). */
const char* hyper_name(OptKind kind, int i);
/**
 * nullptr when `hyper` (the policy's kHyperCount doubles, wire order) is valid, else a message
 * about field *field (the policy's check()).
 */
const char* check_hyper(OptKind kind, const double* hyper, int* field);

/**
 * Steps every slot of one group with one set of hyperparameters (`hyper`: the policy's kHyperCount
 * doubles in wire order, already checked); writes adamp::kInfoStride doubles per slot into info.
 */
void step(OptKind kind, const TensorSlot* slots, size_t count, const double* hyper, double* info, const StepConfig& cfg);

/** One group of a step: what `step` above takes. */
struct StepGroup {
  OptKind kind;
  const TensorSlot* slots;
  size_t count;
  const double* hyper;
  double* info;
};
/**
 * Steps every group, in order, as one step. All or nothing: every allocation the step needs (its
 * plans, scratch, task lists, every thread's buffers, the pool's threads) is made before the first
 * kernel touches a param or a state array. A std::bad_alloc or std::system_error (a thread that
 * cannot start) leaves every param and state array of every group unchanged; once the kernels
 * start, nothing allocates and nothing throws. `step` above is this with one group. (The protocol's
 * calls below are each all or nothing in the same way: stats and apply allocate before touching
 * their shard.)
 */
void step(const StepGroup* groups, size_t count, const StepConfig& cfg);

/**
 * TEST ONLY: fault injection for the all-or-nothing tests (native/tests/test_all_or_nothing.cpp,
 * test/all-or-nothing.test.ts through the addon's test-only `testOnlyFailAllocation`). Every
 * allocation of a step's (or a protocol call's) preparation passes an allocation point; a normal
 * step pays one relaxed atomic load per point, never more.
 */
namespace testing {
/**
 * n > 0: from now on, the n-th allocation point (on any thread) throws std::bad_alloc, once;
 * n == 0: count allocation points only; n < 0: off (the default). Restarts the count.
 */
void fail_allocation(int64_t n);
/** Allocation points passed since the last fail_allocation(n >= 0). */
int64_t allocations();
/** Frees the buffers kept between steps (the workspace, this thread's protocol buffers), so the next step allocates them all again. */
void release_caches();
}  // namespace testing

// ------------------------------------------------------------------------------------------------
// The step protocol (docs/architecture.md, "The step protocol"; lib/backends/engine.ts
// StepProtocol): one tensor's step as units -> stats -> decide -> apply -> finish, on shards that
// each hold whole units in separate arrays. Units are exactly the pieces `step` folds its partial
// results over, in the same order, so any split into shards gives p, state and info
// bit-identical to `step`. Records are vectors of doubles whose layout is private to this core.
// Every function here is single-threaded and runs on the caller's thread.
namespace protocol {

/** A whole tensor's shape. */
struct Geometry {
  int64_t numel, outer, channels, inner;
  bool eligible;
};

/** Element offsets where the tensor's units start, then numel (units + 1 numbers). */
std::vector<int64_t> units(OptKind kind, const Geometry& geo);

/**
 * nullptr when `shard` (whose p, g and state hold elements [offset, offset + shard.numel) of the
 * whole tensor) holds exactly units [u0, u1) of geo, else what is wrong.
 */
const char* check_shard(OptKind kind, const Geometry& geo, int64_t offset, int64_t shard_numel, int64_t u0, int64_t u1);

/** Pass 1 of units [u0, u1) of the shard: updates its state; appends their partial records to `out` (none for one-pass tensors). */
void stats(OptKind kind, const Geometry& geo, const TensorSlot& shard, int64_t offset, const double* hyper, int64_t u0,
           int64_t u1, std::vector<double>& out);

/** The length of all units' partial records together (what decide expects). */
size_t partials_length(OptKind kind, const Geometry& geo);

/** The decision record from every unit's partials concatenated in unit order (`n` must be partials_length). */
void decide(OptKind kind, const Geometry& geo, const double* hyper, const double* partials, size_t n,
            std::vector<double>& decision);

/** nullptr when `decision` (n doubles) is a decision record of this kind and geometry, else what is wrong. */
const char* check_decision(OptKind kind, const Geometry& geo, const double* decision, size_t n);

/**
 * Pass 2 (or the one pass) of units [u0, u1) of the shard; appends 3 doubles per unit (its norm
 * partials; NaN when `norms` is off) to `out`.
 */
void apply(OptKind kind, const Geometry& geo, const TensorSlot& shard, int64_t offset, const double* hyper,
           const double* decision, size_t decision_len, int64_t u0, int64_t u1, bool norms, std::vector<double>& out);

/** The info record (kInfoStride doubles) from the decision and every unit's norm partials in unit order (3 per unit). */
void finish(OptKind kind, const Geometry& geo, const double* decision, size_t decision_len, const double* norms,
            double* info);

}  // namespace protocol

// ------------------------------------------------------------------------------------------------

enum class Simd { Portable = 0, Avx2 = 1 };
/** Whether this CPU and this build can run the AVX2+FMA(+F16C) kernels. */
bool avx2_available();
/** The kernels in use: AVX2 when available unless set_simd said otherwise. */
Simd simd();
/** Choose the kernels; returns what is in effect (AVX2 falls back to portable when unavailable). */
Simd set_simd(Simd want);
const char* simd_name(Simd s);

/**
 * The speculative single pass of policies with kSpeculate, for row-layout tensors. Off (the
 * default): the two-pass path, the faster one on the machines measured (step.cpp explains). On:
 * in steps on 2 threads or more. Every mode gives the same results bit for bit; PredictNone and
 * PredictChannel (tests) force every row's prediction at any thread count, so every redo path runs.
 */
enum class Speculation { Off = 0, On = 1, PredictNone = 2, PredictChannel = 3 };
Speculation speculation();
void set_speculation(Speculation mode);

/** The default thread count (hardware threads) and the clamp applied to requests. */
int default_threads();
int clamp_threads(int threads);

}  // namespace cpu
}  // namespace adamp

// TRANSITIONAL, see the header: the old AdamP/SGDP entry points for the CUDA port's test.

#endif  // ADAMP_CPU_STEP_H
