// Scheduling of a step: tensors are split into tasks whose boundaries depend only on the
// tensor's shape, tasks run on the pool in any order, and every partial result is folded in
// task order afterwards. That is what makes the results identical for every thread count.
//
// Per eligible tensor: pass 1 (moments + per-channel sums; AdamP also stores u) -> decide ->
// pass 2 (apply from the stored u; tensors over kStoreU elements recompute it bit-identically).
// Tensors are processed in waves of about kWave elements: pass 1 of a wave, its decisions, then
// pass 2 of the wave, so a wave's data is still in the last-level cache for pass 2 and small
// tensors share one dispatch.
//
// AdamP's speculative single pass (eligible tensors with outer == 1 whose rows fit one task, up
// to kStoreU elements): pass 1 applies a predicted final update to each row right after the
// row's moments and sums, while the row and its u are in L1/L2, saving the old p to a per-wave
// scratch (u never leaves a per-thread row buffer).
// The prediction for a row is "channel projection" while this row's and every earlier row's
// |cos| are below the channel threshold (the decision's own float32 compare), else "none".
// After the real decision, pass 2 only redoes the rows whose applied update differs from it
// (restore from the scratch, then the exact pass-2 kernel). The apply of a row is the same
// kernel arithmetic as pass 2 with the same inputs (the row's own sums, wd factor), and each
// row's norms are kept and folded in the same order as pass 2 folds them, so p, the moments and
// the info record are bit-identical to the two-pass path (set_speculation(Speculation::Off)).
// Measured on the 2-core bench machine it pays at 2 threads (the apply's arithmetic runs under
// pass 1's memory stalls instead of after them) and was neutral at 1 thread while the reductions
// were in double (measured before the blocked float sums of simd.h). SGDP does not use it: its pass
// 2 is cheap and served from the last-level cache, and the extra store of the old p (plus the
// unprojected buffer without Nesterov) made it no faster at 2 threads and slower at 1.
#include "step.h"

#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "adamp/math.h"
#include "kernel_table.h"
#include "thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#define ADAMP_X86 1
#endif

namespace adamp {
namespace cpu {

namespace {

constexpr int64_t kBlock = 32768;   // target elements per task
#ifndef ADAMP_WAVE_ELEMS
#define ADAMP_WAVE_ELEMS (1 << 20)
#endif
constexpr int64_t kWave = ADAMP_WAVE_ELEMS;  // target elements per wave
constexpr int kMaxThreads = 256;
// AdamP stores u between the passes for tensors up to this size (the scratch is at most
// max(kWave, kStoreU) floats, reused across steps); larger tensors recompute u in pass 2.
constexpr int64_t kStoreU = int64_t(1) << 22;
// The lanes layout (channels innermost): channels per task, and at most this many row chunks.
constexpr int64_t kLaneChannels = 4096;
constexpr int64_t kLaneRowChunks = 64;

// ------------------------------------------------------------------------------------------------
// Kernel selection.

bool detect_avx2() {
#if defined(ADAMP_X86) && defined(ADAMP_HAVE_AVX2_TU)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

std::atomic<int>& simd_state() {
  static std::atomic<int> state([] {
    if (!detect_avx2()) return (int)Simd::Portable;
    const char* env = getenv("ADAMP_SIMD");
    if (env != nullptr && strcmp(env, "portable") == 0) return (int)Simd::Portable;
    return (int)Simd::Avx2;
  }());
  return state;
}

std::atomic<int>& spec_state() {
  static std::atomic<int> state([] {
    const char* env = getenv("ADAMP_SPECULATE");
    return (env != nullptr && strcmp(env, "0") == 0) ? (int)Speculation::Off : (int)Speculation::On;
  }());
  return state;
}

const KernelTable& kernels() {
#if defined(ADAMP_HAVE_AVX2_TU)
  if (simd_state().load(std::memory_order_relaxed) == (int)Simd::Avx2) return *avx2_kernels();
#endif
  return portable_kernels();
}

// ------------------------------------------------------------------------------------------------
// Plans.

enum class Layout {
  OnePass,  // not eligible: blocks of kBlock elements, one pass
  Pieces,   // outer == 1 and rows longer than kBlock: task = one piece of one row
  Rows,     // inner > 1: task = a run of channels, each over all its `outer` rows in order
  Lanes,    // inner == 1: task = a run of rows x a run of channels, vectorised across channels
};

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up8(int64_t a) { return (a + 7) & ~int64_t(7); }

struct Plan {
  const TensorSlot* s = nullptr;
  double* info = nullptr;
  Layout layout = Layout::OnePass;
  int64_t tasks = 0;
  int64_t piece_len = 0, pieces_per_row = 0;  // Pieces
  int64_t channels_per_task = 0;              // Rows, Lanes
  int64_t rows_per_task = 0, row_chunks = 0, channel_chunks = 0;  // Lanes

  std::vector<ChannelSums> sums;    // per channel
  std::vector<ChannelSums> pieces;  // Pieces: per (channel, piece)
  std::vector<double> lane_part;    // Lanes: per row chunk, 4 x padded channels (gp, gg, pp, pu)
  std::vector<float> lane_bits;     // Lanes: per row chunk, padded channels: g's bits OR-ed
  std::vector<Norms> partials;      // per task
  AdamPScalarsF asf{};  // AdamP: this tensor's float constants (its step count)
  float* u = nullptr;    // AdamP: where pass 1 stores u for pass 2 (null: pass 2 recomputes it)

  // The speculative single pass (Rows, outer == 1).
  bool spec = false;
  float* save_p = nullptr;       // the old p, indexed like p
  std::vector<uint8_t> applied;  // per channel: 1 = applied with its channel projection, 0 = unprojected
  std::vector<Norms> row_norms;  // per channel: the norms of the applied row
  std::vector<uint8_t> redo;     // per task: some row of it must be redone
  std::atomic<int> broken{0};    // some row's |cos| reached the channel threshold (prediction only)
  float spec_thr = 0.0f;         // the channel threshold, as decide_reduced computes it
  double spec_cos_e = 0.0;       // cos_eps(eps)
  float spec_wdf_proj = 1.0f, spec_wdf_none = 1.0f;
  Speculation spec_mode = Speculation::On;  // tests: PredictNone / PredictChannel force every row
  DecisionResult decision;
  float wdf = 1.0f;
  std::vector<float> div, scale;  // per channel (Lanes: padded with 1 / 0)

  void init(const TensorSlot& slot, double* info_rec) {
    s = &slot;
    info = info_rec;
    const int64_t n = slot.numel;
    if (!slot.eligible) {
      layout = Layout::OnePass;
      tasks = ceil_div(n, kBlock);
    } else if (slot.inner == 1) {
      // Tasks are tiles of whole rows (contiguous memory) by up to kLaneChannels channels. Each
      // task sums its rows per channel; decide_plan adds the row chunks in order. At most
      // kLaneRowChunks row chunks bound the partials' memory for tall tensors.
      layout = Layout::Lanes;
      channels_per_task = std::max<int64_t>(8, std::min(kLaneChannels, round_up8(slot.channels)));
      channel_chunks = ceil_div(slot.channels, channels_per_task);
      rows_per_task = std::max<int64_t>({1, kBlock / channels_per_task, ceil_div(slot.outer, kLaneRowChunks)});
      row_chunks = ceil_div(slot.outer, rows_per_task);
      tasks = slot.channels == 0 ? 0 : row_chunks * channel_chunks;
      lane_part.assign((size_t)(row_chunks * 4 * round_up8(slot.channels)), 0.0);
      lane_bits.assign((size_t)(row_chunks * round_up8(slot.channels)), 0.0f);
    } else if (slot.outer == 1 && slot.inner > kBlock) {
      layout = Layout::Pieces;
      piece_len = kBlock;
      pieces_per_row = ceil_div(slot.inner, kBlock);
      tasks = slot.channels * pieces_per_row;
      pieces.resize((size_t)tasks);
    } else {
      layout = Layout::Rows;
      const int64_t row_block = std::max<int64_t>(1, slot.outer * slot.inner);
      channels_per_task = std::max<int64_t>(1, kBlock / row_block);
      tasks = slot.channels == 0 ? 0 : ceil_div(slot.channels, channels_per_task);
    }
    if (slot.eligible) {
      ChannelSums zero;
      sums_zero(zero);
      sums.assign((size_t)slot.channels, zero);
    }
    partials.assign((size_t)tasks, Norms{0.0, 0.0, 0.0});
  }

  /** Whether this plan qualifies for the speculative single pass (the shape alone decides). */
  bool spec_shape() const {
    return s->eligible && layout == Layout::Rows && s->outer == 1 && s->numel > 0 && s->numel <= kStoreU;
  }
  int64_t row_offset(int64_t a, int64_t c) const { return (a * s->channels + c) * s->inner; }
  int64_t pad_channels() const { return round_up8(s->channels); }
  /** Lanes task t: rows [a0, a0 + rows) x channels [c0, c0 + n) of row chunk rc. */
  struct LaneTask {
    int64_t rc, a0, rows, c0, n;
  };
  LaneTask lane_task(int64_t t) const {
    LaneTask k;
    k.rc = t / channel_chunks;
    k.a0 = k.rc * rows_per_task;
    k.rows = std::min(rows_per_task, s->outer - k.a0);
    k.c0 = (t % channel_chunks) * channels_per_task;
    k.n = std::min(channels_per_task, s->channels - k.c0);
    return k;
  }
  /** A task's accumulators (its row chunk's slice of lane_part and lane_bits); scratch: 4 x round_up8(k.n) floats. */
  LaneSums lane_sums(const LaneTask& k, float* scratch) {
    const int64_t padc = pad_channels();
    double* base = lane_part.data() + k.rc * 4 * padc + k.c0;
    return LaneSums{base, base + padc, base + 2 * padc, base + 3 * padc, scratch,
                    lane_bits.data() + k.rc * padc + k.c0};
  }
};

// Sequences of (plan, task) to hand to the pool.
struct TaskRef {
  int32_t plan;
  int64_t task;
};

// ------------------------------------------------------------------------------------------------
// The per-optimizer parts, as small policy structs so one scheduler serves AdamP and SGDP.

struct AdamPOps {
  static constexpr bool kStoresU = true;
  static constexpr bool kSpeculates = true;
  const KernelTable& k;
  const AdamPHyper& hp;

  void prepare(Plan& pl) const { pl.asf = make_adamp_scalars(hp.lr, hp.beta1, hp.beta2, hp.eps, pl.s->step, hp.nesterov); }
  float wdf(double ratio) const { return adamp_wd_factor(hp.lr, hp.weight_decay, ratio); }
  double delta() const { return hp.delta; }
  double wd_ratio() const { return hp.wd_ratio; }
  double eps() const { return hp.eps; }

  Norms one_pass(const Plan& pl, int64_t off, int64_t n, float wdf) const {
    return k.adamp_one_pass(pl.s->p + off, pl.s->g + off, pl.s->m + off, pl.s->v + off, n, pl.asf, wdf);
  }
  ChannelSums pass1_row(const Plan& pl, int64_t off, int64_t n) const {
    return k.adamp_pass1_row(pl.s->p + off, pl.s->g + off, pl.s->m + off, pl.s->v + off, n, pl.asf,
                             pl.u ? pl.u + off : nullptr);
  }
  void pass1_lanes(const Plan& pl, int64_t off, LaneRows lr, LaneSums acc) const {
    k.adamp_pass1_lanes(pl.s->p + off, pl.s->g + off, pl.s->m + off, pl.s->v + off, lr, pl.asf, acc,
                        pl.u ? pl.u + off : nullptr);
  }
  // The speculative pass: pass 1 of a row storing u to a row buffer, then the apply from it.
  ChannelSums spec_pass1_row(const Plan& pl, int64_t off, int64_t n, float* ubuf) const {
    return k.adamp_pass1_row(pl.s->p + off, pl.s->g + off, pl.s->m + off, pl.s->v + off, n, pl.asf, ubuf);
  }
  Norms spec_apply_row(const Plan& pl, int64_t off, int64_t n, const float* ubuf, int projected, ProjCoef c, float wdf) const {
    return k.adamp_apply_u_save_row(pl.s->p + off, ubuf, n, pl.asf.neg_step, projected, c, wdf, pl.save_p + off);
  }
  Norms pass2_row(const Plan& pl, int64_t off, int64_t n, int projected, ProjCoef c, float wdf) const {
    if (pl.u) return k.adamp_apply_u_row(pl.s->p + off, pl.u + off, n, pl.asf.neg_step, projected, c, wdf);
    return k.adamp_pass2_row(pl.s->p + off, pl.s->g + off, pl.s->m + off, pl.s->v + off, n, pl.asf, projected, c, wdf);
  }
  ChannelSums lane_sums_double(const Plan& pl, int64_t c) const {
    const TensorSlot& s = *pl.s;
    return k.adamp_lane_sums_double(s.p + c, s.g + c, s.m + c, s.v + c, s.outer, s.channels, pl.asf);
  }
  Norms pass2_lanes(const Plan& pl, int64_t off, LaneRows lr, int projected, LaneCoefs c, float wdf) const {
    if (pl.u) return k.adamp_apply_u_lanes(pl.s->p + off, pl.u + off, lr, pl.asf.neg_step, projected, c, wdf);
    return k.adamp_pass2_lanes(pl.s->p + off, pl.s->g + off, pl.s->m + off, pl.s->v + off, lr, pl.asf, projected, c, wdf);
  }
};

struct SGDPOps {
  static constexpr bool kStoresU = false;
  static constexpr bool kSpeculates = false;
  const KernelTable& k;
  SGDPScalarsF sf;
  const SGDPHyper& hp;

  float wdf(double ratio) const { return sgdp_wd_factor(hp.lr, hp.weight_decay, ratio, hp.momentum); }
  void prepare(Plan&) const {}
  double delta() const { return hp.delta; }
  double wd_ratio() const { return hp.wd_ratio; }
  double eps() const { return hp.eps; }

  Norms one_pass(const Plan& pl, int64_t off, int64_t n, float wdf) const {
    return k.sgdp_one_pass(pl.s->p + off, pl.s->g + off, pl.s->m + off, n, sf, wdf);
  }
  ChannelSums pass1_row(const Plan& pl, int64_t off, int64_t n) const {
    return k.sgdp_pass1_row(pl.s->p + off, pl.s->g + off, pl.s->m + off, n, sf);
  }
  void pass1_lanes(const Plan& pl, int64_t off, LaneRows lr, LaneSums acc) const {
    k.sgdp_pass1_lanes(pl.s->p + off, pl.s->g + off, pl.s->m + off, lr, sf, acc);
  }
  Norms pass2_row(const Plan& pl, int64_t off, int64_t n, int projected, ProjCoef c, float wdf) const {
    return k.sgdp_pass2_row(pl.s->p + off, pl.s->g + off, pl.s->m + off, n, sf, projected, c, wdf);
  }
  ChannelSums lane_sums_double(const Plan& pl, int64_t c) const {
    const TensorSlot& s = *pl.s;
    return k.sgdp_lane_sums_double(s.p + c, s.g + c, s.m + c, s.outer, s.channels, sf);
  }
  Norms pass2_lanes(const Plan& pl, int64_t off, LaneRows lr, int projected, LaneCoefs c, float wdf) const {
    return k.sgdp_pass2_lanes(pl.s->p + off, pl.s->g + off, pl.s->m + off, lr, sf, projected, c, wdf);
  }
};

void norms_add(Norms& acc, const Norms& x) {
  acc.before += x.before;
  acc.after += x.after;
  acc.delta += x.delta;
}

/** Per-thread float scratch of the lanes layout's pass 1 (LaneSums::fblk, 4 x npad floats). */
float* lane_scratch(int64_t npad) {
  thread_local std::vector<float> buf;
  if ((int64_t)buf.size() < 4 * npad) buf.resize((size_t)(4 * npad));
  return buf.data();
}

/** A per-thread row buffer for AdamP's u in the speculative pass (rows are at most kBlock long). */
float* row_buffer(int64_t n) {
  thread_local std::vector<float> buf;
  if ((int64_t)buf.size() < n) buf.resize((size_t)std::max<int64_t>(n, 4096));
  return buf.data();
}

// The speculative single pass over the rows [c0, c1) of a task (see the top of the file).
template <class Ops>
void run_spec_rows(const Ops& ops, Plan& plan, int64_t c0, int64_t c1) {
  const TensorSlot& s = *plan.s;
  const int64_t n = s.inner;
  float* ubuf = row_buffer(n);
  const float epsf = (float)ops.eps();
  const Speculation mode = plan.spec_mode;
  bool ok = mode == Speculation::PredictChannel ||
            (mode == Speculation::On && plan.broken.load(std::memory_order_relaxed) == 0);
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t off = c * n;
    const ChannelSums cs = ops.spec_pass1_row(plan, off, n, ubuf);
    plan.sums[(size_t)c] = cs;
    // f32(max_c |cos_c|) < thr  <=>  f32(|cos_c|) < thr for every c (rounding is monotone; NaN fails both).
    const float cosf = (float)abs_cos(cs.gp, cs.gg, cs.pp, plan.spec_cos_e);
    if (!(cosf < plan.spec_thr)) {
      plan.broken.store(1, std::memory_order_relaxed);
      if (mode != Speculation::PredictChannel) ok = false;
    } else if (ok && mode == Speculation::On && plan.broken.load(std::memory_order_relaxed) != 0) {
      ok = false;  // another task saw a row at or over the threshold
    }
    const Norms nr = ok ? ops.spec_apply_row(plan, off, n, ubuf, 1, proj_coef(cs.pp, cs.pu, epsf), plan.spec_wdf_proj)
                        : ops.spec_apply_row(plan, off, n, ubuf, 0, ProjCoef{1.0f, 0.0f}, plan.spec_wdf_none);
    plan.applied[(size_t)c] = ok ? 1 : 0;
    plan.row_norms[(size_t)c] = nr;
  }
}

template <class Ops>
void run_pass1(const Ops& ops, Plan& plan, int64_t t) {
  const TensorSlot& s = *plan.s;
  switch (plan.layout) {
    case Layout::OnePass: {
      const int64_t off = t * kBlock;
      plan.partials[(size_t)t] = ops.one_pass(plan, off, std::min(kBlock, s.numel - off), ops.wdf(1.0));
      break;
    }
    case Layout::Pieces: {
      const int64_t c = t / plan.pieces_per_row, k = t % plan.pieces_per_row;
      const int64_t start = k * plan.piece_len;
      plan.pieces[(size_t)t] = ops.pass1_row(plan, c * s.inner + start, std::min(plan.piece_len, s.inner - start));
      break;
    }
    case Layout::Rows: {
      const int64_t c0 = t * plan.channels_per_task, c1 = std::min(s.channels, c0 + plan.channels_per_task);
      if constexpr (Ops::kSpeculates) {
        if (plan.spec) {
          run_spec_rows(ops, plan, c0, c1);
          break;
        }
      }
      for (int64_t c = c0; c < c1; ++c) {
        ChannelSums acc;
        sums_zero(acc);
        for (int64_t a = 0; a < s.outer; ++a) sums_add(acc, ops.pass1_row(plan, plan.row_offset(a, c), s.inner));
        plan.sums[(size_t)c] = acc;
      }
      break;
    }
    case Layout::Lanes: {
      const Plan::LaneTask k = plan.lane_task(t);
      ops.pass1_lanes(plan, k.a0 * s.channels + k.c0, LaneRows{k.rows, k.n, s.channels},
                      plan.lane_sums(k, lane_scratch(round_up8(k.n))));
      break;
    }
  }
}

template <class Ops>
void decide_plan(const Ops& ops, Plan& plan) {
  const TensorSlot& s = *plan.s;
  if (plan.layout == Layout::Pieces) {
    for (int64_t c = 0; c < s.channels; ++c) {
      ChannelSums acc;
      sums_zero(acc);
      for (int64_t k = 0; k < plan.pieces_per_row; ++k) sums_add(acc, plan.pieces[(size_t)(c * plan.pieces_per_row + k)]);
      plan.sums[(size_t)c] = acc;
    }
  }
  if (plan.layout == Layout::Lanes) {
    // Row chunks in order (rows outermost: the partials are read contiguously); a channel whose
    // float partials fall short is summed again in double.
    const int64_t padc = plan.pad_channels();
    std::vector<uint8_t> g_zero((size_t)s.channels, 1);
    for (int64_t rc = 0; rc < plan.row_chunks; ++rc) {
      const double* part = plan.lane_part.data() + rc * 4 * padc;
      const float* bits = plan.lane_bits.data() + rc * padc;
      for (int64_t c = 0; c < s.channels; ++c) {
        ChannelSums& acc = plan.sums[(size_t)c];
        acc.gp += part[c];
        acc.gg += part[padc + c];
        acc.pp += part[2 * padc + c];
        acc.pu += part[3 * padc + c];
        g_zero[(size_t)c] &= bits_zero(bits[c]) ? 1 : 0;
      }
    }
    for (int64_t c = 0; c < s.channels; ++c)
      if (row_sums_need_double(plan.sums[(size_t)c], g_zero[(size_t)c] != 0)) plan.sums[(size_t)c] = ops.lane_sums_double(plan, c);
  }
  plan.decision = decide(plan.sums.data(), s.channels, s.numel, ops.delta(), ops.wd_ratio(), ops.eps());
  plan.wdf = ops.wdf(plan.decision.ratio);
  const int64_t n = plan.layout == Layout::Lanes ? plan.pad_channels() : s.channels;
  plan.div.assign((size_t)n, 1.0f);
  plan.scale.assign((size_t)n, 0.0f);
  if (is_projected(plan.decision.code)) {
    const float epsf = (float)ops.eps();
    for (int64_t c = 0; c < s.channels; ++c) {
      const ProjCoef k = proj_coef_for(plan.decision, plan.sums.data(), c, epsf);
      plan.div[(size_t)c] = k.div;
      plan.scale[(size_t)c] = k.scale;
    }
  }
  if (plan.spec) {
    // Which rows were applied as the decision says: fold their norms now, in pass 2's order;
    // tasks with a wrong row go to pass 2.
    const int want = plan.decision.code == kDecisionChannel ? 1 : plan.decision.code == kDecisionNone ? 0 : -1;
    plan.redo.assign((size_t)plan.tasks, 0);
    for (int64_t t = 0; t < plan.tasks; ++t) {
      const int64_t c0 = t * plan.channels_per_task, c1 = std::min(s.channels, c0 + plan.channels_per_task);
      Norms acc{0.0, 0.0, 0.0};
      bool redo = false;
      for (int64_t c = c0; c < c1 && !redo; ++c) {
        if ((int)plan.applied[(size_t)c] != want) redo = true;
        else norms_add(acc, plan.row_norms[(size_t)c]);
      }
      plan.redo[(size_t)t] = redo ? 1 : 0;
      if (!redo) plan.partials[(size_t)t] = acc;
    }
  }
}

// Pass 2 of a speculative task: rows applied as decided keep their result and norms; the others
// get their old p back from the scratch and run the exact pass-2 kernel (which recomputes u).
template <class Ops>
void run_spec_redo(const Ops& ops, Plan& plan, int64_t t) {
  const TensorSlot& s = *plan.s;
  const int projected = is_projected(plan.decision.code) ? 1 : 0;
  const int want = plan.decision.code == kDecisionChannel ? 1 : plan.decision.code == kDecisionNone ? 0 : -1;
  const int64_t n = s.inner;
  const int64_t c0 = t * plan.channels_per_task, c1 = std::min(s.channels, c0 + plan.channels_per_task);
  Norms acc{0.0, 0.0, 0.0};
  for (int64_t c = c0; c < c1; ++c) {
    if ((int)plan.applied[(size_t)c] == want) {
      norms_add(acc, plan.row_norms[(size_t)c]);
      continue;
    }
    const int64_t off = c * n;
    memcpy(s.p + off, plan.save_p + off, (size_t)n * sizeof(float));
    const ProjCoef coef{plan.div[(size_t)c], plan.scale[(size_t)c]};
    norms_add(acc, ops.pass2_row(plan, off, n, projected, coef, plan.wdf));
  }
  plan.partials[(size_t)t] = acc;
}

template <class Ops>
void run_pass2(const Ops& ops, Plan& plan, int64_t t) {
  const TensorSlot& s = *plan.s;
  const int projected = is_projected(plan.decision.code) ? 1 : 0;
  Norms acc{0.0, 0.0, 0.0};
  if constexpr (Ops::kSpeculates) {
    if (plan.spec) {
      run_spec_redo(ops, plan, t);
      return;
    }
  }
  switch (plan.layout) {
    case Layout::OnePass:
      return;
    case Layout::Pieces: {
      const int64_t c = t / plan.pieces_per_row, k = t % plan.pieces_per_row;
      const int64_t start = k * plan.piece_len;
      const ProjCoef coef{plan.div[(size_t)c], plan.scale[(size_t)c]};
      acc = ops.pass2_row(plan, c * s.inner + start, std::min(plan.piece_len, s.inner - start), projected, coef, plan.wdf);
      break;
    }
    case Layout::Rows: {
      const int64_t c0 = t * plan.channels_per_task, c1 = std::min(s.channels, c0 + plan.channels_per_task);
      for (int64_t c = c0; c < c1; ++c) {
        const ProjCoef coef{plan.div[(size_t)c], plan.scale[(size_t)c]};
        for (int64_t a = 0; a < s.outer; ++a)
          norms_add(acc, ops.pass2_row(plan, plan.row_offset(a, c), s.inner, projected, coef, plan.wdf));
      }
      break;
    }
    case Layout::Lanes: {
      const Plan::LaneTask k = plan.lane_task(t);
      const LaneCoefs coef{plan.div.data() + k.c0, plan.scale.data() + k.c0};
      acc = ops.pass2_lanes(plan, k.a0 * s.channels + k.c0, LaneRows{k.rows, k.n, s.channels}, projected, coef, plan.wdf);
      break;
    }
  }
  plan.partials[(size_t)t] = acc;
}

template <class Ops>
void finish_plan(Plan& plan) {
  Norms total{0.0, 0.0, 0.0};
  for (const Norms& x : plan.partials) norms_add(total, x);
  if (plan.layout == Layout::OnePass)
    write_info_not_eligible(plan.info, total.before, total.after, total.delta);
  else
    write_info(plan.info, plan.decision, total.after, total.delta);
}

/** Reusable float scratch (AdamP's stored u), shared by concurrent steps. */
class ScratchPool {
 public:
  std::vector<float> acquire(size_t n) {
    std::vector<float> v;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        v = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (v.size() < n) v.resize(n);
    return v;
  }
  void release(std::vector<float>&& v) {
    std::lock_guard<std::mutex> lock(mu_);
    if (free_.size() < 2) free_.push_back(std::move(v));
  }
  static ScratchPool& shared() {
    static ScratchPool* pool = new ScratchPool();  // leaked on purpose, like the thread pool
    return *pool;
  }

 private:
  std::mutex mu_;
  std::vector<std::vector<float>> free_;
};

template <class Ops>
void run_step(const Ops& ops, const TensorSlot* slots, size_t count, double* info, int threads) {
  threads = clamp_threads(threads);
  ThreadPool& pool = ThreadPool::shared();
  std::vector<Plan> plans(count);
  const Speculation spec_mode = (Speculation)spec_state().load(std::memory_order_relaxed);
  const bool spec_on = spec_mode != Speculation::Off;
  for (size_t j = 0; j < count; ++j) {
    Plan& pl = plans[j];
    pl.init(slots[j], info + j * kInfoStride);
    ops.prepare(pl);
    pl.spec = Ops::kSpeculates && spec_on && pl.spec_shape();
    if (pl.spec) {
      const TensorSlot& s = slots[j];
      pl.spec_mode = spec_mode;
      pl.applied.assign((size_t)s.channels, 0);
      pl.row_norms.assign((size_t)s.channels, Norms{0.0, 0.0, 0.0});
      pl.spec_thr = threshold_f32(ops.delta(), s.channels > 0 ? (double)(s.numel / s.channels) : (double)NAN);
      pl.spec_cos_e = cos_eps(ops.eps());
      pl.spec_wdf_proj = ops.wdf(ops.wd_ratio());
      pl.spec_wdf_none = ops.wdf(1.0);
    }
  }

  std::vector<TaskRef> refs;
  std::vector<float> scratch;
  size_t j0 = 0;
  while (j0 < count) {
    // One wave: consecutive tensors up to about kWave elements (at least one tensor).
    size_t j1 = j0;
    int64_t elems = 0;
    while (j1 < count && (j1 == j0 || elems + slots[j1].numel <= kWave)) elems += slots[j1++].numel;

    {
      // Scratch for the wave (AdamP): the two-pass plans' stored u, the speculative plans' old p.
      // At most max(kWave, kStoreU) floats, reused across waves and steps.
      auto floats_for = [&](size_t j) -> int64_t {
        const Plan& pl = plans[j];
        if (pl.spec) return slots[j].numel;
        if (Ops::kStoresU && pl.layout != Layout::OnePass && slots[j].numel <= kStoreU) return slots[j].numel;
        return 0;
      };
      int64_t need = 0;
      for (size_t j = j0; j < j1; ++j) need += floats_for(j);
      if (need > 0 && scratch.size() < (size_t)need) {
        if (scratch.empty()) scratch = ScratchPool::shared().acquire((size_t)need);
        if (scratch.size() < (size_t)need) scratch.resize((size_t)need);
      }
      int64_t at = 0;
      for (size_t j = j0; j < j1; ++j) {
        Plan& pl = plans[j];
        pl.u = pl.save_p = nullptr;
        if (floats_for(j) == 0) continue;
        if (pl.spec) {
          pl.save_p = scratch.data() + at;
          at += slots[j].numel;
        } else {
          pl.u = scratch.data() + at;
          at += slots[j].numel;
        }
      }
    }

    refs.clear();
    for (size_t j = j0; j < j1; ++j)
      for (int64_t t = 0; t < plans[j].tasks; ++t) refs.push_back(TaskRef{(int32_t)j, t});
    pool.run(threads, (int64_t)refs.size(), [&](int64_t i) { run_pass1(ops, plans[(size_t)refs[(size_t)i].plan], refs[(size_t)i].task); });

    // Pass 2 walks the wave backwards: what pass 1 touched last is the likeliest still in cache.
    // (The order of execution never changes a result: partials are folded in task order.)
    refs.clear();
    for (size_t j = j0; j < j1; ++j)
      if (plans[j].layout != Layout::OnePass) decide_plan(ops, plans[j]);
    for (size_t j = j1; j-- > j0;) {
      if (plans[j].layout == Layout::OnePass) continue;
      for (int64_t t = plans[j].tasks; t-- > 0;)
        if (!plans[j].spec || plans[j].redo[(size_t)t]) refs.push_back(TaskRef{(int32_t)j, t});
    }
    pool.run(threads, (int64_t)refs.size(), [&](int64_t i) { run_pass2(ops, plans[(size_t)refs[(size_t)i].plan], refs[(size_t)i].task); });

    for (size_t j = j0; j < j1; ++j) finish_plan<Ops>(plans[j]);
    j0 = j1;
  }
  if (!scratch.empty()) ScratchPool::shared().release(std::move(scratch));
}

}  // namespace

// ------------------------------------------------------------------------------------------------

void adamp_step(const TensorSlot* slots, size_t count, const AdamPHyper& hp, double* info, int threads) {
  const AdamPOps ops{kernels(), hp};
  run_step(ops, slots, count, info, threads);
}

void sgdp_step(const TensorSlot* slots, size_t count, const SGDPHyper& hp, double* info, int threads) {
  const SGDPOps ops{kernels(), make_sgdp_scalars(hp.lr, hp.momentum, hp.dampening, hp.nesterov), hp};
  run_step(ops, slots, count, info, threads);
}

namespace {
// The floors: pure element-wise, blocks of kBlock elements across all tensors.
template <class Fn>
void run_blocks(const TensorSlot* slots, size_t count, int threads, const Fn& fn) {
  std::vector<TaskRef> refs;
  for (size_t j = 0; j < count; ++j)
    for (int64_t t = 0; t < ceil_div(slots[j].numel, kBlock); ++t) refs.push_back(TaskRef{(int32_t)j, t});
  ThreadPool::shared().run(clamp_threads(threads), (int64_t)refs.size(), [&](int64_t i) {
    const TensorSlot& s = slots[refs[(size_t)i].plan];
    const int64_t off = refs[(size_t)i].task * kBlock;
    fn(s, off, std::min(kBlock, s.numel - off));
  });
}
}  // namespace

void adam_step(const TensorSlot* slots, size_t count, const AdamHyper& hp, int threads) {
  const KernelTable& k = kernels();
  const float wdf = adamp_wd_factor(hp.lr, hp.weight_decay, 1.0);
  run_blocks(slots, count, threads, [&](const TensorSlot& s, int64_t off, int64_t n) {
    const AdamPScalarsF sf = make_adamp_scalars(hp.lr, hp.beta1, hp.beta2, hp.eps, s.step, false);
    k.adam_floor(s.p + off, s.g + off, s.m + off, s.v + off, n, sf, wdf);
  });
}

void sgd_step(const TensorSlot* slots, size_t count, const SGDHyper& hp, int threads) {
  const KernelTable& k = kernels();
  SGDScalarsF sf;
  sf.mom = (float)hp.momentum;
  sf.omd = (float)(1.0 - hp.dampening);
  sf.neg_lr = (float)(-hp.lr);
  sf.wd = (float)hp.weight_decay;
  sf.nesterov = hp.nesterov ? 1 : 0;
  run_blocks(slots, count, threads, [&](const TensorSlot& s, int64_t off, int64_t n) {
    k.sgd_floor(s.p + off, s.g + off, s.m + off, n, sf);
  });
}

Speculation speculation() { return (Speculation)spec_state().load(std::memory_order_relaxed); }

void set_speculation(Speculation mode) { spec_state().store((int)mode, std::memory_order_relaxed); }

bool avx2_available() {
  static const bool ok = detect_avx2();
  return ok;
}

Simd simd() { return (Simd)simd_state().load(std::memory_order_relaxed); }

Simd set_simd(Simd want) {
  const Simd got = (want == Simd::Avx2 && !avx2_available()) ? Simd::Portable : want;
  simd_state().store((int)got, std::memory_order_relaxed);
  return got;
}

const char* simd_name(Simd s) { return s == Simd::Avx2 ? "avx2" : "portable"; }

int default_threads() { return hardware_threads(); }

int clamp_threads(int threads) {
  if (threads <= 0) return default_threads();
  return threads > kMaxThreads ? kMaxThreads : threads;
}

}  // namespace cpu
}  // namespace adamp
