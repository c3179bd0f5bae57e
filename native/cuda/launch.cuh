// Launch plumbing of the CUDA step: what the host packs into kernel arguments and what lives
// in device memory per tensor. Kept apart from the arithmetic (step_kernel.cuh) as apex keeps
// multi_tensor_apply apart from its functors. Nothing here knows which optimizer runs: the kernels
// are templates on an element policy (adamp/optim/policy.h).
//
// One launch steps up to kMaxTensors tensors. Its work is a list of items (a few thousand
// elements each) in a fixed order: pass 1 of every tensor of a group, then pass 2 of the group
// `lag` groups earlier (see adamp_cuda.cu), so that pass 2 of a tensor runs while its data is
// still in L2. Blocks take items from a queue in that order; a pass-2 item waits (spins) until
// its tensor's decision exists, which only items taken earlier produce, so the wait always ends.
#ifndef ADAMP_CUDA_LAUNCH_CUH
#define ADAMP_CUDA_LAUNCH_CUH

#include <stdint.h>

#include "adamp/math.h"

namespace adamp_cuda {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
// ResNet-50 (161 tensors) and GPT-2 small (148) take one launch (three kernels a step: the
// hyperparameters, prep, step) instead of two; what bounds it is the 32 KB of kernel parameters.
constexpr int kMaxTensors = 168;
constexpr int kMaxEntries = 2 * kMaxTensors;
constexpr int kMaxSlots = 2;       // state slots of the largest registered policy (checked in adamp_cuda.cu)
constexpr int kMaxHyper = 16;      // hyperparameters of the largest policy (checked in adamp_cuda.cu)
constexpr int kScalerSlots = 16;  // optimizers one device GradScaler tracks (ScalerState::found)
constexpr int kScalarWords = 12;   // 4-byte words of the largest P::Scalars (checked in step_kernel.cuh)

/** How a tensor's items are laid out. */
enum Mode : int32_t {
  kModeSingle = 0,   // one pass over flat chunks (non-projecting policies, and tensors never projected)
  kModeSegment = 1,  // projected, inner >= 32: items are whole rows (segments of `inner` elements) or pieces of one
  kModeColumn = 2,   // projected, inner < 32: items are tiles of the (outer) x (channels*inner) matrix
};

/**
 * Per-tensor state in device memory; survives across steps. Everything a launch counts is reset
 * by prep_kernel at its start, so a launch that died (a trap, a killed process) leaves nothing
 * that breaks the next one.
 */
struct TensorState {
  double step;                     // completed steps; prep_kernel adds this step's 1
  uint32_t scalars[kScalarWords];  // P::Scalars of this step (prep_kernel)
  float wdf1;                      // P::wd_factor(h, 1): the decay when nothing is projected (prep_kernel)
  adamp::ProjCoef layer;           // the one coefficient pair when the layer view fired
  double pp_total;                 // ||p||^2 before the step (projected tensors)
  float wdf;                       // weight-decay factor of this step (the decider)
  int decision;                    // adamp::DecisionCode
  float ch_max, ch_thr, l_cos, l_thr;
  unsigned p1_done;                // pass-1 items finished in this launch
  int ready;                       // 1 once the decision is written (pass 2 waits for it)
  int norms;                       // this step computed the info norms
  int skipped;                     // this step was skipped (a non-finite gradient, LaunchArgs::found_inf)
  float* master;                   // 16-bit params with master weights: the float32 master copy (state)
  uint32_t seed;                   // bfloat16 stochastic rounding: the optimizer's seed
  uint32_t index;                  // and the param's index over all groups (lib/core/half.ts roundingKey)
};

/** Storage of a tensor's param and gradient (TensorArgs::storage bits). */
enum Dtype : int32_t { kF32 = 0, kBF16 = 1, kF16 = 2 };
constexpr int kStoreP = 0;          // bits 0-1: the param's Dtype (16-bit: TensorArgs::p points at 16-bit data)
constexpr int kStoreG = 2;          // bits 2-3: the gradient's Dtype (16-bit: TensorArgs::g points at 16-bit data)
constexpr int kStoreMaster = 1 << 4;  // 16-bit param with float32 master weights in TensorState::master
constexpr int kStoreStochastic = 1 << 5;  // bfloat16 param rounded stochastically
ADAMP_HD inline int store_p(int s) { return s & 3; }
ADAMP_HD inline int store_g(int s) { return (s >> kStoreG) & 3; }

/** One tensor of a launch (kernel argument). */
struct TensorArgs {
  float* p;
  const float* g;
  float* st[kMaxSlots];       // the policy's state slots (st[k] for k < P::kSlots)
  TensorState* ts;
  adamp::ChannelSums* part;   // pass-1 partial sums, one per piece slot
  adamp::ChannelSums* chsum;  // folded per-channel sums (decider scratch)
  adamp::ProjCoef* coef;      // per-channel projection coefficients
  double* info_part;          // 3 doubles per final-pass item: ||p||^2 before, after, ||dp||^2
  int64_t numel, outer, channels, inner;
  int64_t n_items;  // at most INT32_MAX (adamp_cuda_add_tensor refuses more)
  // column mode: the matrix is `outer` rows x `width` columns; an item is `rows_per_item` rows x
  // `tw` columns, processed by `rp` row lanes of `tw` threads.
  int64_t width, rows_per_item, nct;
  // note: 32-bit where the value is bounded by the chunk or by n_items, so that kMaxTensors
  // tables fit the kernel parameters.
  int32_t chunk;  // single mode: elements per item
  // segment mode: either `spi` whole segments per item (nps == 1) or `nps` items per segment
  // (spi == 1), each a piece of `plen` elements.
  int32_t spi, nps, plen;
  int32_t tw, rp;
  int16_t team_log2;  // segment mode: log2(warps per piece)
  int16_t mode;
  int16_t vec;  // p, g and every state slot aligned (16 bytes; 8 for 16-bit data): vector accesses for whole groups of 4
  // segment mode with outer == 1 and nps == 1: every item holds whole channels. Its pass 1 then
  // computes each channel's |cos| and projection coefficients itself and leaves one ItemSums per
  // item after the per-channel partials (item_records: max |cos| and the totals over its
  // channels), so the decider folds n_items records instead of walking every channel (GPT-2's
  // wte: 50,257 channels, 5,026 items).
  int16_t whole;
  // Mixed precision (step_kernel<P, true> only): Dtype of p and g and the kStore* flags. 0 for
  // float32 tensors, which the float32 kernel steps.
  int16_t storage;
};

/** What a whole-channel item (TensorArgs::whole) leaves for the decider, in `part` memory. */
struct ItemSums {
  adamp::ChannelSums s;  // the sums over the item's channels (a thread's channels in order, warp trees, warps in order)
  double max_cos;        // max |cos| over the item's channels (NaN sticky)
  double pad;
};

/** Everything one launch needs, passed by value (a __grid_constant__ kernel parameter). */
struct LaunchArgs {
  TensorArgs t[kMaxTensors];
  int32_t entry_end[kMaxEntries];  // inclusive-scan of item counts
  uint8_t entry_tensor[kMaxEntries];
  uint8_t entry_pass[kMaxEntries];  // 0 = pass 1 (or the single pass), 1 = pass 2
  int32_t n_entries;
  int32_t total_items;
  int32_t n_tensors;
  int32_t norms;       // compute the info record's norms
  const void* hp;      // the group's P::Hyper in device memory (set_hyper_kernel, or adamp_cuda_set_hyper)
  unsigned* queue;     // [0] next item, [1] blocks finished (reset by prep_kernel)
  float denormal;      // 1e-40f: prep_kernel's check that the kernels were not built to flush denormals
  // Loss scaling on the device (mixed kernel): every gradient is read as f32(g * inv) with
  // inv = f32(1 / *scale) (double division, as torch's scale.double().reciprocal().float()), and
  // when *found_inf is nonzero (check_kernel found an Infinity/NaN gradient) the launch changes
  // nothing: no param, state or step count. Null: not scaled.
  const float* scale;
  const int* found_inf;
  int32_t mixed;       // the launch runs step_kernel<P, true> (storage != 0 or loss scaling)
};

static_assert(sizeof(LaunchArgs) < 32000, "kernel parameters are limited to 32764 bytes");

/** Whole-channel tensors: the items' records, after the channels' partial sums. */
ADAMP_HD inline ItemSums* item_records(const TensorArgs& t) { return reinterpret_cast<ItemSums*>(t.part + t.channels); }

/** Slots of pass-1 partial sums a tensor needs. */
inline int64_t partial_slots(const TensorArgs& t) {
  if (t.mode == kModeSegment && t.whole)
    return t.channels + (t.n_items * (int64_t)sizeof(ItemSums) + sizeof(adamp::ChannelSums) - 1) / sizeof(adamp::ChannelSums);
  if (t.mode == kModeSegment) return t.outer * t.channels * t.nps;
  if (t.mode == kModeColumn) {
    const int64_t nrb = (t.outer + t.rows_per_item - 1) / t.rows_per_item;
    return nrb * (t.channels + t.nct);
  }
  return 0;
}

}  // namespace adamp_cuda

#endif  // ADAMP_CUDA_LAUNCH_CUH
