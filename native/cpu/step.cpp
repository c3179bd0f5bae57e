// Scheduling of a step, generic over the element policy P (native/include/adamp/optim): every
// registered optimizer runs through the same code, instantiated once per policy.
//
// Units. A tensor is cut into units whose boundaries depend only on its shape (make_units): each
// unit is a contiguous range of elements, and every partial result of the step (the stats of pass
// 1, the info norms of pass 2) is produced per unit and folded in unit order. Units are what the
// step protocol (step.h, namespace protocol) hands to shards, and the ordinary step below folds
// exactly the same per-unit partials in the same order: any split of a tensor's units into shards
// gives p, state and info bit-identical to `step`. Work items of the thread pool are units, runs
// of small units (Rows) or tiles of a unit (Lanes); which thread runs which item never matters.
//
// Layouts (outer x channels x inner; channel of element i: (i / inner) % channels):
//   OnePass  non-projecting policies, and 1-D tensors: units of kBlock elements, one pass.
//   Pieces   outer == 1 and rows longer than kBlock: a unit is a piece of one row.
//   Rows     inner > 1: a unit is a run of whole channel rows within one outer index a
//            (outer == 1: the PyTorch layout, a run of channels).
//   Lanes    inner == 1 (TensorFlow.js kernels, channels innermost): a unit is a chunk of whole
//            rows (every channel), cut into tiles of up to kLaneChannels channels for the pool;
//            vectorised across channels.
//
// Per eligible tensor of a projecting policy: pass 1 (state + per-channel sums; kStoreU policies
// also store u) -> decide -> pass 2 (apply from the stored u; tensors over kStoreU elements
// recompute it bit-identically). Tensors are processed in waves of about kWave elements: pass 1 of
// a wave, its decisions (each by the thread that ends the tensor's pass 1), then pass 2 of the
// wave, so a wave's data is still in the last-level cache for pass 2 and small tensors share one
// dispatch. Pass 2 of a wave runs in the same pool run as pass 1 of the next (see run_step): one
// wait for the threads per wave.
//
// The speculative single pass (policies with kSpeculate; eligible tensors with outer == 1 whose
// rows fit one unit, up to kSpecMax elements): pass 1 applies a predicted final update to each row
// right after the row's state update and sums, while the row and its u are in L1/L2, saving the
// old p to a per-wave scratch (u never leaves a per-thread row buffer).
// The prediction for a row is "channel projection" while this row's and every earlier row's
// |cos| are below the channel threshold (the decision's own float32 compare), else "none".
// After the real decision, pass 2 only redoes the rows whose applied update differs from it
// (restore from the scratch, then the exact pass-2 kernel). The apply of a row is the same
// kernel arithmetic as pass 2 with the same inputs (the row's own sums, wd factor), and each
// row's norms are kept and folded in the same order as pass 2 folds them, so p, the state and
// the info record are bit-identical to the two-pass path (set_speculation(Speculation::Off)).
// It is off by default (set_speculation(Speculation::On), ADAMP_SPECULATE=1, turns it on for
// steps on 2 threads or more). On the 2-core bench machine it lost at 1 thread, and at 2 threads
// it paid only while a tenth or more of the pass-2 items ran on the other core (thieves took
// them from the front); since pass 2 follows the thread that ran pass 1, the two passes were as
// fast or faster at 2 threads too (docs/performance.md, "Pass 2 on the thread that ran pass 1").
// SGDP does not use it: the extra store of the old p (plus the unprojected buffer without
// Nesterov) made it no faster at 2 threads and slower at 1.
//
// The info norms (StepConfig::norms) cost a second set of blocked sums in every pass that writes
// p and a copy of each block's old p for their double redo; with norms off none of it runs.
#include "step.h"

#include <math.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
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

constexpr int64_t kBlock = 32768;  // target elements per unit
#ifndef ADAMP_WAVE_ELEMS
#define ADAMP_WAVE_ELEMS (1 << 20)
#endif
constexpr int64_t kWave = ADAMP_WAVE_ELEMS;  // target elements per wave
constexpr int kMaxThreads = 256;
// kStoreU policies store u between the passes for tensors up to this size (the scratch is at most
// max(kWave, kStoreU) floats, reused across steps); larger tensors recompute u in pass 2. Storing
// pays: with ADAMP_STORE_U_MAX=0 (recompute always) AdamP took 1.34x as long, ResNet-50, fire,
// 1 thread, one copy of memory (scripts/bench-kernels.sh --base HEAD --same-process --flags-a
// "-DADAMP_STORE_U_MAX=0" -- --set resnet50 --threads 1 --grads fire --steps 20 --same-memory).
#ifndef ADAMP_STORE_U_MAX
#define ADAMP_STORE_U_MAX (int64_t(1) << 22)
#endif
constexpr int64_t kStoreU = ADAMP_STORE_U_MAX;
// The speculative single pass takes tensors up to this size (its scratch holds the old p: up to
// 256 MB for a tensor this large, reused across steps). Larger than kStoreU so that GPT-2's
// token embedding (38.6M elements) is also stepped in one pass instead of two passes that
// recompute u (44 bytes per element and the Adam division twice, against 32 and once).
constexpr int64_t kSpecMax = int64_t(1) << 26;
// The lanes layout (channels innermost): channels per tile, and at most this many row chunks (units).
constexpr int64_t kLaneChannels = 4096;
constexpr int64_t kLaneRowChunks = 64;

// Doubles per channel in a stats record (g.p, g.g, p.p, p.u), per unit in a norm record, and the
// decision record's header (see encode_decision).
constexpr int64_t kSumsLen = 4;
constexpr int64_t kNormLen = 3;
constexpr int64_t kDecisionHeader = 11;

// ------------------------------------------------------------------------------------------------
// Kernel selection. The environment is read by the TS loader (lib/backends/native/index.ts), which
// calls set_simd / set_speculation.

bool detect_avx2() {
#if defined(ADAMP_X86) && defined(ADAMP_HAVE_AVX2_TU)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

std::atomic<int>& simd_state() {
  static std::atomic<int> state(detect_avx2() ? (int)Simd::Avx2 : (int)Simd::Portable);
  return state;
}

std::atomic<int>& spec_state() {
  static std::atomic<int> state((int)Speculation::Off);
  return state;
}

const KernelTable& kernels() {
#if defined(ADAMP_HAVE_AVX2_TU)
  if (simd_state().load(std::memory_order_relaxed) == (int)Simd::Avx2) return *avx2_kernels();
#endif
  return portable_kernels();
}

// Policy traits that only projecting policies define.
template <class P>
constexpr bool stores_u() {
  if constexpr (P::kProjects)
    return P::kStoreU;
  else
    return false;
}
template <class P>
constexpr bool speculates() {
  if constexpr (P::kProjects)
    return P::kSpeculate;
  else
    return false;
}

template <class P>
typename P::Hyper hyper_of(const double* hyper) {
  static_assert(sizeof(typename P::Hyper) == sizeof(double) * P::kHyperCount, "Hyper must be kHyperCount doubles");
  typename P::Hyper h;
  memcpy(&h, hyper, sizeof h);
  return h;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up8(int64_t a) { return (a + 7) & ~int64_t(7); }
/** p rounded up to a multiple of 32 bytes (p must have 7 spare floats after it). */
float* align32(float* p) { return (float*)(((uintptr_t)p + 31) & ~(uintptr_t)31); }

void norms_add(Norms& acc, const Norms& x) {
  acc.before += x.before;
  acc.after += x.after;
  acc.delta += x.delta;
}

// ------------------------------------------------------------------------------------------------
// Units.

enum class Layout { OnePass, Pieces, Rows, Lanes };

struct Units {
  Layout layout = Layout::OnePass;
  int64_t numel = 0, outer = 0, channels = 0, inner = 0;
  int64_t count = 0;                        // units
  int64_t items = 0;                        // pool work items
  int64_t ppr = 0;                          // Pieces: pieces per row
  int64_t cpu = 0, chunks = 0, group = 1;   // Rows: channels per unit, units per outer index, units per item
  int64_t rpu = 0, cpt = 0, tiles = 0;      // Lanes: rows per unit, channels per tile, tiles (items) per unit

  /** The unit's first element; start(count) = numel. */
  int64_t start(int64_t u) const {
    if (u >= count) return numel;
    switch (layout) {
      case Layout::OnePass:
        return u * kBlock;
      case Layout::Pieces:
        return (u / ppr) * inner + (u % ppr) * kBlock;
      case Layout::Rows:
        return ((u / chunks) * channels + (u % chunks) * cpu) * inner;
      case Layout::Lanes:
        return u * rpu * channels;
    }
    return numel;
  }
  /** Doubles of the stats records before unit u's; rec_offset(count) = all of them. */
  int64_t rec_offset(int64_t u) const {
    switch (layout) {
      case Layout::OnePass:
        return 0;
      case Layout::Pieces:
        return kSumsLen * u;
      case Layout::Rows:
        if (u >= count) return kSumsLen * outer * channels;
        return kSumsLen * ((u / chunks) * channels + (u % chunks) * cpu);
      case Layout::Lanes:
        return kSumsLen * channels * u;
    }
    return 0;
  }
  /** Rows: unit u is outer index a, channels [c0, c1). */
  void rows_unit(int64_t u, int64_t& a, int64_t& c0, int64_t& c1) const {
    a = u / chunks;
    c0 = (u % chunks) * cpu;
    c1 = std::min(channels, c0 + cpu);
  }
  /** Lanes: unit u's rows [a0, a0 + rows). */
  void lanes_rows(int64_t u, int64_t& a0, int64_t& rows) const {
    a0 = u * rpu;
    rows = std::min(rpu, outer - a0);
  }
  /** Rows items: item t runs units [u0, u1). */
  void item_units(int64_t t, int64_t& u0, int64_t& u1) const {
    u0 = t * group;
    u1 = std::min(count, u0 + group);
  }
  bool projecting() const { return layout != Layout::OnePass; }
  /** Rows with outer == 1: every channel's sums come from one unit (the PyTorch layout). */
  bool channel_in_one_unit() const { return layout == Layout::Rows && outer == 1; }
};

Units make_units(const protocol::Geometry& g, bool projects) {
  Units U;
  U.numel = g.numel;
  U.outer = g.outer;
  U.channels = g.channels;
  U.inner = g.inner;
  if (!projects || !g.eligible) {
    U.layout = Layout::OnePass;
    U.count = ceil_div(g.numel, kBlock);
    U.items = U.count;
  } else if (g.inner == 1) {
    // Units are chunks of whole rows (contiguous memory); a unit's tiles of up to kLaneChannels
    // channels are the pool's items. At most kLaneRowChunks units bound the partials' memory.
    U.layout = Layout::Lanes;
    U.cpt = std::max<int64_t>(8, std::min(kLaneChannels, round_up8(g.channels)));
    U.tiles = ceil_div(g.channels, U.cpt);
    U.rpu = std::max<int64_t>({1, kBlock / U.cpt, ceil_div(g.outer, kLaneRowChunks)});
    U.count = g.channels == 0 ? 0 : ceil_div(g.outer, U.rpu);
    U.items = U.count * U.tiles;
  } else if (g.outer == 1 && g.inner > kBlock) {
    U.layout = Layout::Pieces;
    U.ppr = ceil_div(g.inner, kBlock);
    U.count = g.channels * U.ppr;
    U.items = U.count;
  } else {
    U.layout = Layout::Rows;
    U.cpu = std::max<int64_t>(1, kBlock / std::max<int64_t>(1, g.inner));
    U.chunks = ceil_div(g.channels, U.cpu);
    U.count = g.channels == 0 ? 0 : g.outer * U.chunks;
    // Small units (outer > 1, short rows) run several to an item; outer == 1 keeps item == unit
    // (the speculative pass works per item).
    if (g.outer > 1) U.group = std::max<int64_t>(1, kBlock / std::max<int64_t>(1, std::min(U.cpu, g.channels) * g.inner));
    U.items = ceil_div(U.count, U.group);
  }
  return U;
}

protocol::Geometry geometry_of(const TensorSlot& s) { return protocol::Geometry{s.numel, s.outer, s.channels, s.inner, s.eligible}; }

// ------------------------------------------------------------------------------------------------
// One tensor's (or shard's) arrays, its kernels and scalars: the unit functions both the step and
// the protocol run.

/** A decision as pass 2 uses it. */
struct Decided {
  DecisionResult r;
  float wdf = 1.0f;
  std::vector<float> div, scale;  // per channel, padded to 8 (div 1, scale 0); empty unless projected
  ProjCoef layer{1.0f, 0.0f};     // a layer projection's one coefficient pair
};

// ------------------------------------------------------------------------------------------------
// Memory. A step is all or nothing: everything it allocates (plans, records, every wave's scratch,
// the task lists, every thread's buffers) is allocated before its first kernel touches a param or
// a state array, so a std::bad_alloc (or a thread that cannot start) leaves them all unchanged.
// Every allocation of that phase goes through alloc_point(), the test-only fault injection
// (testing::fail_allocation in step.h); past it a step allocates nothing.

std::atomic<bool> g_fault_armed{false};   // testing only: alloc_point() counts and may fail
std::atomic<int64_t> g_fault_count{0};    // allocation points passed since armed
std::atomic<int64_t> g_fault_at{0};       // the allocation point that throws (1-based; 0: none)

[[gnu::noinline]] void alloc_point_slow() {
  const int64_t n = g_fault_count.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n == g_fault_at.load(std::memory_order_relaxed)) throw std::bad_alloc();
}
/** Called before each allocation of a step's preparation: one relaxed load unless a test armed it. */
inline void alloc_point() {
  if (__builtin_expect(g_fault_armed.load(std::memory_order_relaxed), 0)) alloc_point_slow();
}
template <class V>
void fit(V& v, size_t n) {  // v.size() >= n, contents not kept
  if (v.size() < n) {
    alloc_point();
    v.clear();
    v.resize(n);
  }
}
template <class V>
void reserve_for(V& v, size_t n) {
  if (v.capacity() < n) {
    alloc_point();
    v.reserve(n);
  }
}
template <class V, class T>
void assign_n(V& v, size_t n, const T& x) {
  if (v.capacity() < n) alloc_point();
  v.assign(n, x);
}

/**
 * One thread's buffers during a step, sized by the step before its first kernel (ThreadNeeds):
 * Lanes tiles' scratch (kernel_table.h LaneScratch) and the speculative pass's row buffers for u.
 */
struct ThreadScratch {
  std::vector<double> lane_d;
  std::vector<float> lane_f;
  std::vector<float> rows;
  std::vector<ChannelSums> sums;  // a decision's channel sums (the thread that ends a plan's pass 1 decides it)
};
/** The most a step's tasks ask of a thread's buffers. */
struct ThreadNeeds {
  int64_t lane = 0;   // channels of a Lanes tile
  int64_t pitch = 0;  // the speculative pass's row pitch (round_up8(inner))
  int64_t channels = 0;  // the most channels of a projecting tensor (a decision's sums)
  void max_with(const ThreadNeeds& o) {
    lane = std::max(lane, o.lane);
    pitch = std::max(pitch, o.pitch);
    channels = std::max(channels, o.channels);
  }
};
void size_scratch(ThreadScratch& t, const ThreadNeeds& n) {
  const int64_t npad = round_up8(n.lane);
  fit(t.lane_d, (size_t)(4 * npad));
  fit(t.lane_f, (size_t)(5 * npad));
  if (n.pitch > 0) fit(t.rows, (size_t)(2 * n.pitch + 8));
  fit(t.sums, (size_t)n.channels);
}

// The accessors below find their buffers sized (size_scratch); growing them here would allocate
// after the step has begun, so they only do it as a memory-safe fallback that no step takes.

/** Lanes tiles' scratch for tiles of up to n channels. */
LaneScratch lane_scratch(ThreadScratch& t, int64_t n) {
  const int64_t npad = round_up8(n);
  if ((int64_t)t.lane_d.size() < 4 * npad) t.lane_d.resize((size_t)(4 * npad));
  if ((int64_t)t.lane_f.size() < 5 * npad) t.lane_f.resize((size_t)(5 * npad));
  return LaneScratch{t.lane_d.data(), t.lane_f.data(), t.lane_f.data() + 4 * npad};
}

template <class P>
struct Run {
  using S = typename P::Scalars;
  const PolicyKernels<P>& k;
  const Units& U;
  // Element e of the whole tensor is at index e - base of these arrays.
  float* p;
  const float* g;
  float* st[kMaxSlots];
  int64_t base;
  S s;
  float* ustore;  // kStoreU: u stored by pass 1, indexed like p (null: pass 2 recomputes it)
  bool norms;
  const HalfSlot* half = nullptr;   // 16-bit storage (kernels.h H16), or null; its arrays indexed like p
  ThreadScratch* ts = nullptr;      // the buffers of the thread running this task

  Span at(int64_t e) const {
    Span x;
    const int64_t d = e - base;
    x.p = p != nullptr ? p + d : nullptr;
    x.g = g != nullptr ? g + d : nullptr;
    for (int j = 0; j < kMaxSlots; ++j) x.st[j] = j < P::kSlots ? st[j] + d : nullptr;
    if (half != nullptr) {
      x.h = half;
      x.p16 = half->p16 + d;
      x.g16 = half->g16 != nullptr ? half->g16 + d : nullptr;
      x.e = e;
    }
    return x;
  }
  float* u_at(int64_t e) const { return ustore != nullptr ? ustore + (e - base) : nullptr; }
  /** Whether pass 2 applies the u pass 1 stored (reading no g). */
  bool reads_stored_u() const {
    if constexpr (stores_u<P>()) return ustore != nullptr;
    return false;
  }
  /** A Rows or Pieces unit's elements: [unit_first(u), unit_end(u)), contiguous. */
  int64_t unit_first(int64_t u) const { return U.start(u); }
  int64_t unit_end(int64_t u) const {
    if (U.layout == Layout::Pieces) return U.start(u) + std::min(kBlock, U.inner - (u % U.ppr) * kBlock);
    int64_t a, c0, c1;
    U.rows_unit(u, a, c0, c1);
    return (a * U.channels + c1) * U.inner;
  }

  static void put(double* rec, const ChannelSums& c) {
    rec[0] = c.gp;
    rec[1] = c.gg;
    rec[2] = c.pp;
    rec[3] = c.pu;
  }

  /** Pass 1 of a Rows or Pieces unit; rec: the unit's stats record. */
  void stats_unit(int64_t u, double* rec) const {
    if (U.layout == Layout::Pieces) {
      const int64_t c = u / U.ppr, k0 = (u % U.ppr) * kBlock, e = c * U.inner + k0;
      put(rec, k.pass1_row(at(e), std::min(kBlock, U.inner - k0), s, u_at(e)));
      return;
    }
    int64_t a, c0, c1;
    U.rows_unit(u, a, c0, c1);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t e = (a * U.channels + c) * U.inner;
      put(rec + kSumsLen * (c - c0), k.pass1_row(at(e), U.inner, s, u_at(e)));
    }
  }

  /** Pass 1 of tile `tile` of Lanes unit u; rec: the unit's stats record (4 x channels). */
  void stats_tile(int64_t u, int64_t tile, double* rec) const {
    int64_t a0, rows;
    U.lanes_rows(u, a0, rows);
    const int64_t c0 = tile * U.cpt, n = std::min(U.cpt, U.channels - c0), C = U.channels;
    const int64_t e = a0 * C + c0;
    const LaneOut out{rec + c0, rec + C + c0, rec + 2 * C + c0, rec + 3 * C + c0};
    k.pass1_lanes(at(e), LaneRows{rows, n, C}, s, out, lane_scratch(*ts, n), u_at(e));
  }

  Norms pass2_row(int64_t e, int64_t n, int projected, ProjCoef c, float wdf) const {
    if constexpr (stores_u<P>()) {
      if (ustore != nullptr) return k.apply_u_row(at(e), u_at(e), n, s, projected, c, wdf, norms);
    }
    return k.pass2_row(at(e), n, s, projected, c, wdf, norms);
  }

  /** Pass 2 of a Rows or Pieces unit. */
  Norms apply_unit(int64_t u, const Decided& d) const {
    const int projected = is_projected(d.r.code) ? 1 : 0;
    auto coef = [&](int64_t c) { return projected ? ProjCoef{d.div[(size_t)c], d.scale[(size_t)c]} : ProjCoef{1.0f, 0.0f}; };
    if (U.layout == Layout::Pieces) {
      const int64_t c = u / U.ppr, k0 = (u % U.ppr) * kBlock;
      return pass2_row(c * U.inner + k0, std::min(kBlock, U.inner - k0), projected, coef(c), d.wdf);
    }
    int64_t a, c0, c1;
    U.rows_unit(u, a, c0, c1);
    Norms acc{0.0, 0.0, 0.0};
    for (int64_t c = c0; c < c1; ++c) norms_add(acc, pass2_row((a * U.channels + c) * U.inner, U.inner, projected, coef(c), d.wdf));
    return acc;
  }

  /** Pass 2 of tile `tile` of Lanes unit u. */
  Norms apply_tile(int64_t u, int64_t tile, const Decided& d) const {
    const int projected = is_projected(d.r.code) ? 1 : 0;
    int64_t a0, rows;
    U.lanes_rows(u, a0, rows);
    const int64_t c0 = tile * U.cpt, n = std::min(U.cpt, U.channels - c0), C = U.channels;
    const int64_t e = a0 * C + c0;
    const LaneCoefs coef = projected ? LaneCoefs{d.div.data() + c0, d.scale.data() + c0} : LaneCoefs{nullptr, nullptr};
    if constexpr (stores_u<P>()) {
      if (ustore != nullptr) return k.apply_u_lanes(at(e), u_at(e), LaneRows{rows, n, C}, s, projected, coef, d.wdf, norms);
    }
    return k.pass2_lanes(at(e), LaneRows{rows, n, C}, s, projected, coef, d.wdf, norms);
  }

  /** A OnePass unit. */
  Norms one_pass_unit(int64_t u, float wdf) const {
    const int64_t e = U.start(u);
    return k.one_pass(at(e), U.start(u + 1) - e, s, wdf, norms);
  }

  /** Pass 2 / the one pass of unit u, whole (the protocol's apply; Lanes: its tiles folded in order). */
  Norms apply_whole_unit(int64_t u, const Decided& d) const {
    switch (U.layout) {
      case Layout::OnePass:
        return one_pass_unit(u, d.wdf);
      case Layout::Lanes: {
        Norms acc{0.0, 0.0, 0.0};
        for (int64_t t = 0; t < U.tiles; ++t) norms_add(acc, apply_tile(u, t, d));
        return acc;
      }
      default:
        return apply_unit(u, d);
    }
  }
};

/** The four sums of a stats record. */
ChannelSums record_sums(const double* r) {
  ChannelSums c;
  c.gp = r[0], c.gg = r[1], c.pp = r[2], c.pu = r[3];
  return c;
}

/** A channel's sums as decide_records folds them when one unit holds the whole channel (0 + the record). */
ChannelSums channel_sums(const double* r) {
  ChannelSums c;
  sums_zero(c);
  sums_add(c, record_sums(r));
  return c;
}

/**
 * The tensor's channel sums from its units' stats records (in unit order), then the decision.
 * `sums`: scratch of at least U.channels; d.div and d.scale must have capacity for
 * round_up8(U.channels) (nothing is allocated here).
 */
template <class P>
void decide_records(const Units& U, const typename P::Hyper& h, const double* rec, ChannelSums* sums, Decided& d) {
  const int64_t C = U.channels;
  ChannelSums zero;
  sums_zero(zero);
  std::fill(sums, sums + C, zero);
  auto get = record_sums;
  for (int64_t u = 0; u < U.count; ++u) {
    const double* r = rec + U.rec_offset(u);
    switch (U.layout) {
      case Layout::Pieces:
        sums_add(sums[(size_t)(u / U.ppr)], get(r));
        break;
      case Layout::Rows: {
        int64_t a, c0, c1;
        U.rows_unit(u, a, c0, c1);
        for (int64_t c = c0; c < c1; ++c) sums_add(sums[(size_t)c], get(r + kSumsLen * (c - c0)));
        break;
      }
      case Layout::Lanes:
        for (int64_t c = 0; c < C; ++c) {
          ChannelSums& acc = sums[(size_t)c];
          acc.gp += r[c];
          acc.gg += r[C + c];
          acc.pp += r[2 * C + c];
          acc.pu += r[3 * C + c];
        }
        break;
      case Layout::OnePass:
        break;
    }
  }
  const DecisionParams dp = P::decision_params(h);
  d.r = decide(sums, C, U.numel, dp.delta, dp.wd_ratio, dp.eps);
  d.wdf = P::wd_factor(h, d.r.ratio);
  d.div.clear();
  d.scale.clear();
  if (is_projected(d.r.code)) {
    const float epsf = (float)dp.eps;
    d.layer = proj_coef(d.r.totals.pp, d.r.totals.pu, epsf);
    assign_n(d.div, (size_t)round_up8(C), 1.0f);  // within the plan's reserve in a step
    assign_n(d.scale, (size_t)round_up8(C), 0.0f);
    for (int64_t c = 0; c < C; ++c) {
      const ProjCoef k = proj_coef_for(d.r, sums, c, epsf);
      d.div[(size_t)c] = k.div;
      d.scale[(size_t)c] = k.scale;
    }
  }
}

/** The decision of a one-pass tensor (non-projecting policy, or not eligible). */
template <class P>
void decide_one_pass(const typename P::Hyper& h, Decided& d) {
  d.r.code = P::kProjects ? kDecisionNotEligible : kDecisionNotApplicable;
  d.r.channel_max_cos = d.r.channel_threshold = d.r.layer_cos = d.r.layer_threshold = NAN;
  d.r.ratio = 1.0;
  sums_zero(d.r.totals);
  d.wdf = P::wd_factor(h, 1.0);
  d.div.clear();
  d.scale.clear();
}

/** The info record from the decision and the units' norms, folded in unit order. */
void write_finish(const Units& U, const DecisionResult& r, const Norms* unit_norms, double* info) {
  Norms total{0.0, 0.0, 0.0};
  for (int64_t u = 0; u < U.count; ++u) norms_add(total, unit_norms[u]);
  if (U.projecting()) {
    write_info(info, r, total.after, total.delta);
  } else {
    write_info_not_eligible(info, total.before, total.after, total.delta);
    info[kInfoDecision] = (double)r.code;  // kDecisionNotEligible, or kDecisionNotApplicable
  }
}

// ------------------------------------------------------------------------------------------------
// The step of a group.

template <class P>
struct Plan {
  const TensorSlot* s = nullptr;
  double* info = nullptr;
  Units U;
  typename P::Scalars sc{};
  std::vector<double> rec;        // stats records, rec_offset order
  std::vector<Norms> unit_norms;  // per unit
  std::vector<Norms> tile_norms;  // Lanes: per item (tile)
  float* u = nullptr;             // kStoreU: where pass 1 stores u for pass 2 (null: pass 2 recomputes it)
  Decided dec;
  // U.channel_in_one_unit(): the thread that runs an item's pass 1 also gives its channels' |cos|
  // and projection coefficients (dec.div, dec.scale), so deciding the tensor is a max and a sum
  // over channels (decide_items).
  bool item_cos = false;
  std::vector<double> chan_cos;  // per channel

  // The speculative single pass (Rows, outer == 1; items are units).
  bool spec = false;
  float* save_p = nullptr;       // the old p, row c at save_p + c * round_up8(inner) (32-byte aligned rows)
  std::vector<uint8_t> applied;  // per channel: 1 = applied with its channel projection, 0 = unprojected
  std::vector<Norms> row_norms;  // per channel: the norms of the applied row
  std::vector<uint8_t> redo;     // per unit: some row of it must be redone
  std::atomic<int> broken{0};    // some row's |cos| reached the channel threshold (prediction only)
  std::atomic<int64_t> left1{0};  // pass-1 items not yet run in this wave (the last one decides)
  float spec_thr = 0.0f;         // the channel threshold, as decide_reduced computes it
  double spec_cos_e = 0.0;       // cos_eps(eps)
  float spec_wdf_proj = 1.0f, spec_wdf_none = 1.0f;
  Speculation spec_mode = Speculation::Off;  // set with spec; tests: PredictNone / PredictChannel force every row

  /** Whether this plan qualifies for the speculative single pass (the shape alone decides). */
  bool spec_shape() const {
    return U.channel_in_one_unit() && s->numel > 0 && s->numel <= kSpecMax;
  }
};

template <class P>
Run<P> run_of(const PolicyKernels<P>& k, const Plan<P>& pl, bool norms, ThreadScratch* ts) {
  const TensorSlot& s = *pl.s;
  return Run<P>{k, pl.U, s.p, s.g, {s.state[0], s.state[1]}, 0, pl.sc, pl.u, norms, s.half, ts};
}

/** Per-thread row buffers for u in the speculative pass: two rows of `pitch` floats, 32-byte aligned. */
float* row_buffers(ThreadScratch& t, int64_t pitch) {
  const size_t need = (size_t)(2 * pitch + 8);
  if (t.rows.size() < need) t.rows.resize(need);  // sized by size_scratch: not taken
  return align32(t.rows.data());
}

// The speculative single pass over the rows of unit u (see the top of the file). Rows are
// pipelined: pass 1 of row c runs fused with the apply of row c - 1 (spec_pair_row), the last
// row's apply alone.
template <class P>
void run_spec_rows(const Run<P>& run, Plan<P>& plan, int64_t u, float epsf) {
  const TensorSlot& s = *plan.s;
  const int64_t n = s.inner, pitch = round_up8(n);
  float* const ubuf = row_buffers(*run.ts, pitch);
  const Speculation mode = plan.spec_mode;
  int64_t a, c0, c1;
  plan.U.rows_unit(u, a, c0, c1);
  double* rec = plan.rec.data() + plan.U.rec_offset(u);
  bool ok = mode == Speculation::PredictChannel ||
            (mode == Speculation::On && plan.broken.load(std::memory_order_relaxed) == 0);
  // The row waiting for its apply: its coefficients and wd factor.
  int prev_proj = 0;
  ProjCoef prev_k{1.0f, 0.0f};
  float prev_wdf = 1.0f;
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t off = c * n;
    float* const uc = ubuf + (c & 1) * pitch;
    ChannelSums cs;
    if (c == c0) {
      cs = run.k.pass1_row(run.at(off), n, run.s, uc);
    } else {
      Norms nr;
      cs = run.k.spec_pair_row(run.at(off), n, run.s, uc, s.p + off - n, ubuf + ((c - 1) & 1) * pitch, prev_proj, prev_k,
                               prev_wdf, plan.save_p + (c - 1) * pitch, run.norms, &nr);
      plan.row_norms[(size_t)(c - 1)] = nr;
    }
    Run<P>::put(rec + kSumsLen * (c - c0), cs);
    // f32(max_c |cos_c|) < thr  <=>  f32(|cos_c|) < thr for every c (rounding is monotone; NaN fails both).
    const float cosf = (float)abs_cos(cs.gp, cs.gg, cs.pp, plan.spec_cos_e);
    if (!(cosf < plan.spec_thr)) {
      plan.broken.store(1, std::memory_order_relaxed);
      if (mode != Speculation::PredictChannel) ok = false;
    } else if (ok && mode == Speculation::On && plan.broken.load(std::memory_order_relaxed) != 0) {
      ok = false;  // another unit saw a row at or over the threshold
    }
    prev_proj = ok ? 1 : 0;
    prev_k = ok ? proj_coef(cs.pp, cs.pu, epsf) : ProjCoef{1.0f, 0.0f};
    prev_wdf = ok ? plan.spec_wdf_proj : plan.spec_wdf_none;
    plan.applied[(size_t)c] = ok ? 1 : 0;
  }
  if (c1 > c0) {
    const int64_t c = c1 - 1;
    plan.row_norms[(size_t)c] = run.k.apply_u_save_row(s.p + c * n, ubuf + (c & 1) * pitch, n, run.s, prev_proj, prev_k,
                                                       prev_wdf, plan.save_p + c * pitch, run.norms);
  }
}

template <class P>
void run_pass1(const Run<P>& run, Plan<P>& plan, int64_t t, float epsf) {
  const Units& U = plan.U;
  switch (U.layout) {
    case Layout::OnePass:
      plan.unit_norms[(size_t)t] = run.one_pass_unit(t, plan.dec.wdf);
      break;
    case Layout::Pieces:
      run.stats_unit(t, plan.rec.data() + U.rec_offset(t));
      break;
    case Layout::Rows: {
      if constexpr (speculates<P>()) {
        if (plan.spec) {
          run_spec_rows(run, plan, t, epsf);
          break;
        }
      }
      int64_t u0, u1;
      U.item_units(t, u0, u1);
      for (int64_t u = u0; u < u1; ++u) run.stats_unit(u, plan.rec.data() + U.rec_offset(u));
      break;
    }
    case Layout::Lanes:
      run.stats_tile(t / U.tiles, t % U.tiles, plan.rec.data() + U.rec_offset(t / U.tiles));
      break;
  }
}

/** The |cos| and projection coefficients of item t's channels (item_cos plans, after its pass 1). */
template <class P>
void item_coefs(Plan<P>& plan, int64_t t, double cos_e, float epsf) {
  const Units& U = plan.U;
  int64_t u0, u1;
  U.item_units(t, u0, u1);
  for (int64_t u = u0; u < u1; ++u) {
    int64_t a, c0, c1;
    U.rows_unit(u, a, c0, c1);
    const double* r = plan.rec.data() + U.rec_offset(u);
    for (int64_t c = c0; c < c1; ++c) {
      const ChannelSums cs = channel_sums(r + kSumsLen * (c - c0));
      plan.chan_cos[(size_t)c] = abs_cos(cs.gp, cs.gg, cs.pp, cos_e);
      const ProjCoef k = proj_coef(cs.pp, cs.pu, epsf);
      plan.dec.div[(size_t)c] = k.div;
      plan.dec.scale[(size_t)c] = k.scale;
    }
  }
}

/**
 * decide_records of an item_cos plan, bit for bit (math.h decide: the same |cos| values, the
 * same NaN-sticky max, the totals added in channel order), from what its items gave.
 */
template <class P>
void decide_items(const typename P::Hyper& h, Plan<P>& plan) {
  const Units& U = plan.U;
  Decided& d = plan.dec;
  const int64_t C = U.channels;
  double max_cos = 0.0;
  ChannelSums totals;
  sums_zero(totals);
  for (int64_t c = 0; c < C; ++c) {
    const double cs = plan.chan_cos[(size_t)c];
    if (!(cs <= max_cos)) max_cos = (max_cos != max_cos) ? max_cos : cs;
    sums_add(totals, channel_sums(plan.rec.data() + kSumsLen * c));
  }
  const DecisionParams dp = P::decision_params(h);
  d.r = decide_reduced(max_cos, totals, C, U.numel, dp.delta, dp.wd_ratio, dp.eps);
  d.wdf = P::wd_factor(h, d.r.ratio);
  if (!is_projected(d.r.code)) {
    d.div.clear();
    d.scale.clear();
    return;
  }
  d.layer = proj_coef(d.r.totals.pp, d.r.totals.pu, (float)dp.eps);
  if (d.r.code == kDecisionLayer) {
    std::fill(d.div.begin(), d.div.begin() + C, d.layer.div);
    std::fill(d.scale.begin(), d.scale.begin() + C, d.layer.scale);
  }
}

template <class P>
void decide_plan(const typename P::Hyper& h, Plan<P>& plan, ChannelSums* sums) {
  if (plan.item_cos)
    decide_items<P>(h, plan);
  else
    decide_records<P>(plan.U, h, plan.rec.data(), sums, plan.dec);
  if (plan.spec) {
    // Which rows were applied as the decision says: fold their norms now, in pass 2's order;
    // units with a wrong row go to pass 2.
    const int want = plan.dec.r.code == kDecisionChannel ? 1 : plan.dec.r.code == kDecisionNone ? 0 : -1;
    plan.redo.assign((size_t)plan.U.count, 0);  // reserved by the plan
    for (int64_t u = 0; u < plan.U.count; ++u) {
      int64_t a, c0, c1;
      plan.U.rows_unit(u, a, c0, c1);
      Norms acc{0.0, 0.0, 0.0};
      bool redo = false;
      for (int64_t c = c0; c < c1 && !redo; ++c) {
        if ((int)plan.applied[(size_t)c] != want)
          redo = true;
        else
          norms_add(acc, plan.row_norms[(size_t)c]);
      }
      plan.redo[(size_t)u] = redo ? 1 : 0;
      if (!redo) plan.unit_norms[(size_t)u] = acc;
    }
  }
}

// Pass 2 of a speculative unit: rows applied as decided keep their result and norms; the others
// get their old p back from the scratch and run the exact pass-2 kernel (which recomputes u).
template <class P>
void run_spec_redo(const Run<P>& run, Plan<P>& plan, int64_t u) {
  const TensorSlot& s = *plan.s;
  const int projected = is_projected(plan.dec.r.code) ? 1 : 0;
  const int want = plan.dec.r.code == kDecisionChannel ? 1 : plan.dec.r.code == kDecisionNone ? 0 : -1;
  const int64_t n = s.inner;
  int64_t a, c0, c1;
  plan.U.rows_unit(u, a, c0, c1);
  Norms acc{0.0, 0.0, 0.0};
  for (int64_t c = c0; c < c1; ++c) {
    if ((int)plan.applied[(size_t)c] == want) {
      norms_add(acc, plan.row_norms[(size_t)c]);
      continue;
    }
    const int64_t off = c * n;
    memcpy(s.p + off, plan.save_p + c * round_up8(n), (size_t)n * sizeof(float));
    const ProjCoef coef = projected ? ProjCoef{plan.dec.div[(size_t)c], plan.dec.scale[(size_t)c]} : ProjCoef{1.0f, 0.0f};
    norms_add(acc, run.pass2_row(off, n, projected, coef, plan.dec.wdf));
  }
  plan.unit_norms[(size_t)u] = acc;
}

template <class P>
void run_pass2(const Run<P>& run, Plan<P>& plan, int64_t t) {
  const Units& U = plan.U;
  if constexpr (speculates<P>()) {
    if (plan.spec) {
      run_spec_redo(run, plan, t);
      return;
    }
  }
  switch (U.layout) {
    case Layout::OnePass:
      return;
    case Layout::Pieces:
      plan.unit_norms[(size_t)t] = run.apply_unit(t, plan.dec);
      break;
    case Layout::Rows: {
      int64_t u0, u1;
      U.item_units(t, u0, u1);
      for (int64_t u = u0; u < u1; ++u) plan.unit_norms[(size_t)u] = run.apply_unit(u, plan.dec);
      break;
    }
    case Layout::Lanes:
      plan.tile_norms[(size_t)t] = run.apply_tile(t / U.tiles, t % U.tiles, plan.dec);
      break;
  }
}

template <class P>
void finish_plan(Plan<P>& plan) {
  const Units& U = plan.U;
  if (U.layout == Layout::Lanes) {
    // A unit's norms: its tiles' in order (as the protocol's apply folds them).
    for (int64_t u = 0; u < U.count; ++u) {
      Norms acc{0.0, 0.0, 0.0};
      for (int64_t t = 0; t < U.tiles; ++t) norms_add(acc, plan.tile_norms[(size_t)(u * U.tiles + t)]);
      plan.unit_norms[(size_t)u] = acc;
    }
  }
  write_finish(U, plan.dec.r, plan.unit_norms.data(), plan.info);
}

// Sequences of (plan, item) to hand to the pool.
struct TaskRef {
  int32_t plan;
  int64_t item;
  int pass;        // 1 or 2
  int64_t at = 0;  // pass 1: the item's place in its wave's items (Workspace::ran_by)
};

/** The most any task of a plan asks of a thread's buffers (ThreadScratch). */
ThreadNeeds thread_needs(const Units& U, const TensorSlot& s, bool spec) {
  ThreadNeeds n;
  if (U.layout == Layout::Lanes) n.lane = std::min(U.cpt, U.channels);
  if (spec) n.pitch = round_up8(s.inner);
  if (U.projecting() && !U.channel_in_one_unit()) n.channels = U.channels;  // decide_records' sums (item_cos plans need none)
  return n;
}

/**
 * Everything a step's waves use, sized before its first kernel and reused across steps
 * (WorkspacePool): the two waves' scratch (stored u, the speculative pass's old p), a pool run's
 * task lists and the buffers of every thread of the pool run (a decision's channel sums included).
 */
struct Workspace {
  std::vector<float> scratch[2];    // the two waves in flight use them in turn
  std::vector<TaskRef> refs;        // a pool run's tasks, by owner
  std::vector<TaskRef> items;       // this wave's items, in pass-1 order
  std::vector<TaskRef> prev_items;  // the previous wave's
  std::vector<int32_t> ran_by;      // per item of this wave: the pool slot that ran its pass 1
  std::vector<int32_t> prev_ran_by;  // the previous wave's
  std::vector<int64_t> starts;      // where each owner's tasks start in refs
  std::vector<ThreadScratch> threads;  // by ThreadPool::slot()
};

/** What the groups of a step need of a Workspace. */
struct WorkspaceNeeds {
  int64_t scratch[2] = {0, 0};  // floats (0: none)
  int64_t items = 0;            // the most items of a wave
  int64_t refs = 0;             // the most tasks of a pool run
  int threads = 1;              // pool slots
  ThreadNeeds thread;
  void max_with(const WorkspaceNeeds& o) {
    for (int i = 0; i < 2; ++i) scratch[i] = std::max(scratch[i], o.scratch[i]);
    items = std::max(items, o.items);
    refs = std::max(refs, o.refs);
    threads = std::max(threads, o.threads);
    thread.max_with(o.thread);
  }
};

void size_workspace(Workspace& ws, const WorkspaceNeeds& n) {
  for (int i = 0; i < 2; ++i) fit(ws.scratch[i], (size_t)n.scratch[i]);
  reserve_for(ws.refs, (size_t)n.refs);
  reserve_for(ws.items, (size_t)n.items);
  reserve_for(ws.prev_items, (size_t)n.items);
  fit(ws.ran_by, (size_t)n.items);
  fit(ws.prev_ran_by, (size_t)n.items);
  reserve_for(ws.starts, (size_t)n.threads + 1);
  if (ws.threads.size() < (size_t)n.threads) {
    alloc_point();
    ws.threads.resize((size_t)n.threads);
  }
  for (int t = 0; t < n.threads; ++t) size_scratch(ws.threads[(size_t)t], n.thread);
}

/** Workspaces kept between steps (one; a concurrent step makes its own), shared by every thread. */
class WorkspacePool {
 public:
  std::unique_ptr<Workspace> acquire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (kept_) return std::move(kept_);
    }
    alloc_point();
    return std::unique_ptr<Workspace>(new Workspace());
  }
  void drop() {
    std::lock_guard<std::mutex> lock(mu_);
    kept_.reset();
  }
  void release(std::unique_ptr<Workspace> ws) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!kept_) kept_ = std::move(ws);
  }
  static WorkspacePool& shared() {
    static WorkspacePool* pool = new WorkspacePool();  // leaked on purpose, like the thread pool
    return *pool;
  }

 private:
  std::mutex mu_;
  std::unique_ptr<Workspace> kept_;
};

/** A step's group, planned (all its memory allocated) and ready to run. */
struct GroupRun {
  virtual ~GroupRun() = default;
  virtual void needs(WorkspaceNeeds& n) const = 0;
  /** Runs the group in `ws` (sized for needs()): allocates nothing, throws nothing. */
  virtual void run(Workspace& ws) = 0;
};

template <class P>
struct GroupPlan final : GroupRun {
  const PolicyKernels<P>& k;
  const typename P::Hyper h;
  const TensorSlot* slots;
  size_t count;
  int owners;
  bool norms;
  float epsf = 0.0f;
  double cos_e = 0.0;  // cos_eps(eps)
  std::vector<Plan<P>> plans;
  Workspace* ws = nullptr;                // while run() runs
  std::function<void(int64_t)> task;      // a pool run's task i: ws->refs[i]

  GroupPlan(const TensorSlot* slots_, size_t count_, const double* hyper, double* info, const StepConfig& cfg)
      : k(kernels().of(P())), h(hyper_of<P>(hyper)), slots(slots_), count(count_) {
    owners = std::min(clamp_threads(cfg.threads), ThreadPool::kMaxOwners);
    norms = cfg.norms;
    const Speculation spec_mode = (Speculation)spec_state().load(std::memory_order_relaxed);
    // On (not the default, see the top of the file): at 2 threads and more only. At 1 thread the
    // two-pass path (u stored between the passes) was faster on every measured cell (AdamP / Adam,
    // fire and random, kernel benchmark, 2026-12-02: ResNet-50 1.47-1.51x two-pass against
    // 1.65-1.68x speculative; GPT-2 small 1.62x against 1.62-1.67x). The Predict modes (tests)
    // speculate at any thread count.
    const bool spec_on = spec_mode == Speculation::On ? owners > 1 : spec_mode != Speculation::Off;
    if constexpr (P::kProjects) {
      epsf = (float)P::decision_params(h).eps;
      cos_e = cos_eps(P::decision_params(h).eps);
    }
    alloc_point();
    plans = std::vector<Plan<P>>(count);
    for (size_t j = 0; j < count; ++j) {
      Plan<P>& pl = plans[j];
      const TensorSlot& s = slots[j];
      pl.s = &s;
      pl.info = info + j * kInfoStride;
      pl.U = make_units(geometry_of(s), P::kProjects);
      pl.sc = P::scalars(h, s.step);
      assign_n(pl.unit_norms, (size_t)pl.U.count, Norms{0.0, 0.0, 0.0});
      if (!pl.U.projecting()) {
        decide_one_pass<P>(h, pl.dec);
        continue;
      }
      assign_n(pl.rec, (size_t)pl.U.rec_offset(pl.U.count), 0.0);
      if (pl.U.layout == Layout::Lanes) assign_n(pl.tile_norms, (size_t)pl.U.items, Norms{0.0, 0.0, 0.0});
      pl.item_cos = pl.U.channel_in_one_unit();
      if (pl.item_cos) {
        // the items fill these in pass 1 (padding: div 1, scale 0)
        assign_n(pl.chan_cos, (size_t)s.channels, 0.0);
        assign_n(pl.dec.div, (size_t)round_up8(s.channels), 1.0f);
        assign_n(pl.dec.scale, (size_t)round_up8(s.channels), 0.0f);
      } else {
        // decide_records fills these after pass 1
        reserve_for(pl.dec.div, (size_t)round_up8(s.channels));
        reserve_for(pl.dec.scale, (size_t)round_up8(s.channels));
      }
      if constexpr (speculates<P>()) {
        pl.spec = spec_on && s.half == nullptr && pl.spec_shape();  // 16-bit tensors: two passes (same bits)
        if (pl.spec) {
          const DecisionParams dp = P::decision_params(h);
          pl.spec_mode = spec_mode;
          assign_n(pl.applied, (size_t)s.channels, (uint8_t)0);
          assign_n(pl.row_norms, (size_t)s.channels, Norms{0.0, 0.0, 0.0});
          reserve_for(pl.redo, (size_t)pl.U.count);  // decide_plan fills it
          pl.spec_thr = threshold_f32(dp.delta, s.channels > 0 ? (double)(s.numel / s.channels) : (double)NAN);
          pl.spec_cos_e = cos_eps(dp.eps);
          pl.spec_wdf_proj = P::wd_factor(h, dp.wd_ratio);
          pl.spec_wdf_none = P::wd_factor(h, 1.0);
        }
      }
    }
    alloc_point();
    task = [this](int64_t i) {
      const TaskRef& r = ws->refs[(size_t)i];
      Plan<P>& pl = plans[(size_t)r.plan];
      ThreadScratch* const ts = &ws->threads[(size_t)ThreadPool::slot()];
      if (r.pass == 1) {
        ws->ran_by[(size_t)r.at] = ThreadPool::slot();
        run_pass1(run_of(k, pl, norms, ts), pl, r.item, epsf);
        if (pl.item_cos) item_coefs(pl, r.item, cos_e, epsf);
        // The thread that ends a tensor's pass 1 decides it, while the others go on (acq_rel: it
        // sees every other item's records).
        if constexpr (P::kProjects)
          if (pl.U.projecting() && pl.left1.fetch_sub(1, std::memory_order_acq_rel) == 1) decide_plan<P>(h, pl, ts->sums.data());
      } else
        run_pass2(run_of(k, pl, norms, ts), pl, r.item);
    };
  }

  /**
   * A plan's part of its wave's scratch: the two-pass plans' stored u (kStoreU), the speculative
   * plans' old p (rows round_up8(inner) apart). Each part starts 32-byte aligned.
   */
  int64_t floats_for(size_t j) const {
    const Plan<P>& pl = plans[j];
    if (pl.spec) return slots[j].channels * round_up8(slots[j].inner);
    if (stores_u<P>() && pl.U.projecting() && slots[j].numel <= kStoreU) return round_up8(slots[j].numel);
    return 0;
  }
  /** The end of the wave that starts at tensor j0: consecutive tensors up to about kWave elements (at least one; none at the end). */
  size_t wave_end(size_t j0) const {
    size_t j1 = j0;
    int64_t elems = 0;
    while (j1 < count && (j1 == j0 || elems + slots[j1].numel <= kWave)) elems += slots[j1++].numel;
    return j1;
  }
  /** The wave's scratch: floats_for of its tensors and 8 for the alignment, or 0 when none needs any. */
  int64_t wave_scratch(size_t j0, size_t j1) const {
    int64_t need = 8;
    for (size_t j = j0; j < j1; ++j) need += floats_for(j);
    return need > 8 ? need : 0;
  }
  int64_t wave_items(size_t j0, size_t j1) const {
    int64_t n = 0;
    for (size_t j = j0; j < j1; ++j) n += plans[j].U.items;
    return n;
  }

  void needs(WorkspaceNeeds& out) const override {
    WorkspaceNeeds n;
    n.threads = owners;
    int64_t prev = 0;
    int wave = 0;
    for (size_t j0 = 0; j0 < count; ++wave) {
      const size_t j1 = wave_end(j0);
      n.scratch[wave & 1] = std::max(n.scratch[wave & 1], wave_scratch(j0, j1));
      const int64_t items = wave_items(j0, j1);
      n.items = std::max(n.items, items);
      n.refs = std::max(n.refs, prev + items);
      prev = items;
      j0 = j1;
    }
    n.refs = std::max(n.refs, prev);
    for (const Plan<P>& pl : plans) n.thread.max_with(thread_needs(pl.U, *pl.s, pl.spec));
    out.max_with(n);
  }

  /** The first of the n items of a wave that owner w runs (items go to owners in contiguous blocks). */
  int64_t owner_first(int w, int64_t n) const { return ((int64_t)w * n + owners - 1) / owners; }

  // Waves are pipelined: one pool run per wave holds pass 2 of the previous wave (first, walking
  // it backwards: what its pass 1 touched last is the likeliest still in cache) and then pass 1
  // of this wave; each tensor of this wave is decided by the thread that ran the last of its pass-1
  // items, while the other threads go on (no serial phase between the runs). A step thus waits for
  // its threads about once per wave, as the one-pass floor does, instead of twice, and the tail
  // of one pass overlaps the head of the next. The two waves in flight use the two scratch
  // buffers in turn. (The order of execution never changes a result: partials are folded in
  // unit order, and the two waves' tensors are disjoint.)
  void run(Workspace& w) override {
    ws = &w;
    ThreadPool& pool = ThreadPool::shared();
    w.prev_items.clear();
    size_t p0 = 0, p1 = 0;  // the previous wave, waiting for its pass 2
    size_t j0 = 0;
    int wave = 0;
    while (j0 < count || p1 > p0) {
      const size_t j1 = wave_end(j0);
      if (j1 > j0) {
        const int64_t need = wave_scratch(j0, j1);
        float* const base = need > 0 ? align32(w.scratch[wave & 1].data()) : nullptr;
        int64_t at = 0;
        for (size_t j = j0; j < j1; ++j) {
          Plan<P>& pl = plans[j];
          pl.u = pl.save_p = nullptr;
          if (floats_for(j) == 0) continue;
          if (pl.spec)
            pl.save_p = base + at;
          else
            pl.u = base + at;
          at += floats_for(j);
        }
      }

      // Pass-1 items go to owner threads in contiguous blocks of the wave's pass-1 order, and an
      // item's pass 2 goes to the thread that ran its pass 1 (its own or a thief, Workspace::ran_by):
      // the lines pass 1 dirtied are still in that core's caches (from another core, every one
      // would be fetched from this one's). Each owner's tasks: its pass-2 items of the previous
      // wave, last first, then its pass-1 items of this wave; a thread that runs out takes other
      // owners' tasks from the back (ThreadPool::run_owned), i.e. fresh pass-1 items, not cached
      // pass-2 ones. (Before thieves followed the data, at 2 threads 10% of SGDP's pass-2 items ran
      // on the other core on ResNet-50 with fire gradients, and 20% on a set of smaller tensors.)
      w.items.clear();
      for (size_t j = j0; j < j1; ++j) {
        plans[j].left1.store(plans[j].U.items, std::memory_order_relaxed);
        for (int64_t t = 0; t < plans[j].U.items; ++t) w.items.push_back(TaskRef{(int32_t)j, t, 1, (int64_t)w.items.size()});
      }
      const int64_t n2 = (int64_t)w.prev_items.size(), n1 = (int64_t)w.items.size();
      w.refs.clear();
      w.starts.assign((size_t)owners + 1, 0);
      for (int o = 0; o < owners; ++o) {
        for (int64_t idx = n2 - 1; idx >= 0; --idx) {
          const int32_t by = w.prev_ran_by[(size_t)idx];
          if ((by > 0 && by < owners ? by : 0) != o) continue;
          TaskRef r = w.prev_items[(size_t)idx];
          const Plan<P>& pl = plans[(size_t)r.plan];
          if (!pl.U.projecting() || (pl.spec && !pl.redo[(size_t)r.item])) continue;
          r.pass = 2;
          w.refs.push_back(r);
        }
        for (int64_t idx = owner_first(o, n1); idx < owner_first(o + 1, n1); ++idx) w.refs.push_back(w.items[(size_t)idx]);
        w.starts[(size_t)o + 1] = (int64_t)w.refs.size();
      }
      pool.run_owned(owners, w.starts.data(), task);

      for (size_t j = p0; j < p1; ++j) finish_plan(plans[j]);
      for (size_t j = j0; j < j1; ++j)  // a projecting tensor without items (no channels) has had no last item
        if constexpr (P::kProjects)
          if (plans[j].U.projecting() && plans[j].U.items == 0) decide_plan<P>(h, plans[j], w.threads[0].sums.data());
      std::swap(w.items, w.prev_items);
      std::swap(w.ran_by, w.prev_ran_by);
      p0 = j0;
      p1 = j1;
      j0 = j1;
      ++wave;
    }
    ws = nullptr;
  }
};

/** Holds a workspace from the pool and gives it back, grown or not, however the step ends. */
struct WorkspaceLease {
  std::unique_ptr<Workspace> ws = WorkspacePool::shared().acquire();
  ~WorkspaceLease() { WorkspacePool::shared().release(std::move(ws)); }
};

// ------------------------------------------------------------------------------------------------
// The protocol's records.
//
// Stats record of a unit: kSumsLen doubles per channel (Rows: the unit's channels, in order;
// Pieces: its one channel; Lanes: 4 arrays of `channels` doubles: g.p, g.g, p.p, p.u). One-pass
// tensors have none. Norm record: kNormLen doubles per unit. Decision record: code, channel max
// |cos|, channel threshold, layer |cos|, layer threshold, wd ratio, the layer sums (g.p, g.g, p.p,
// p.u), ncoef (channels for a channel projection, 1 for a layer projection, else 0), then ncoef
// divisors and ncoef scales (floats, exact as doubles).

/** ncoef of a decision record with this code, for this tensor. */
int64_t decision_ncoef(int code, const Units& U) { return code == kDecisionChannel ? U.channels : code == kDecisionLayer ? 1 : 0; }

void encode_decision(const Units& U, const Decided& d, std::vector<double>& out) {
  const DecisionResult& r = d.r;
  const int64_t ncoef = decision_ncoef(r.code, U);
  out.clear();
  out.reserve((size_t)(kDecisionHeader + 2 * ncoef));
  out.push_back((double)r.code);
  out.push_back((double)r.channel_max_cos);
  out.push_back((double)r.channel_threshold);
  out.push_back((double)r.layer_cos);
  out.push_back((double)r.layer_threshold);
  out.push_back(r.ratio);
  out.push_back(r.totals.gp);
  out.push_back(r.totals.gg);
  out.push_back(r.totals.pp);
  out.push_back(r.totals.pu);
  out.push_back((double)ncoef);
  for (int64_t c = 0; c < ncoef; ++c) out.push_back(r.code == kDecisionLayer ? (double)d.layer.div : (double)d.div[(size_t)c]);
  for (int64_t c = 0; c < ncoef; ++c) out.push_back(r.code == kDecisionLayer ? (double)d.layer.scale : (double)d.scale[(size_t)c]);
}

/** The inverse of encode_decision (after check_decision): the wd factor from the ratio, coefficients padded to 8. */
template <class P>
void decode_decision(const Units& U, const typename P::Hyper* h, const double* rec, Decided& d) {
  DecisionResult& r = d.r;
  r.code = (int)rec[0];
  r.channel_max_cos = (float)rec[1];
  r.channel_threshold = (float)rec[2];
  r.layer_cos = (float)rec[3];
  r.layer_threshold = (float)rec[4];
  r.ratio = rec[5];
  r.totals.gp = rec[6];
  r.totals.gg = rec[7];
  r.totals.pp = rec[8];
  r.totals.pu = rec[9];
  d.wdf = h != nullptr ? P::wd_factor(*h, r.ratio) : 1.0f;
  d.div.clear();
  d.scale.clear();
  if (!is_projected(r.code) || h == nullptr) return;
  const int64_t C = U.channels, ncoef = decision_ncoef(r.code, U);
  if (r.code == kDecisionLayer) d.layer = ProjCoef{(float)rec[kDecisionHeader], (float)rec[kDecisionHeader + 1]};
  assign_n(d.div, (size_t)round_up8(C), 1.0f);
  assign_n(d.scale, (size_t)round_up8(C), 0.0f);
  for (int64_t c = 0; c < C; ++c) {
    const int64_t i = ncoef == 1 ? 0 : c;
    d.div[(size_t)c] = (float)rec[kDecisionHeader + i];
    d.scale[(size_t)c] = (float)rec[kDecisionHeader + ncoef + i];
  }
}

template <class P>
Run<P> shard_run(const Units& U, const TensorSlot& shard, int64_t offset, const typename P::Hyper& h, bool norms,
                 ThreadScratch* ts) {
  const PolicyKernels<P>& k = kernels().of(P());
  return Run<P>{k, U, shard.p, shard.g, {shard.state[0], shard.state[1]}, offset, P::scalars(h, shard.step), nullptr, norms,
                shard.half, ts};
}

thread_local ThreadScratch t_protocol_scratch;  // kept between a thread's protocol calls

/** The calling thread's buffers for a protocol call on this shard, sized before its first kernel. */
ThreadScratch& protocol_scratch(const Units& U, const TensorSlot& shard) {
  size_scratch(t_protocol_scratch, thread_needs(U, shard, false));
  return t_protocol_scratch;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Registry facts.

const std::vector<KindInfo>& kinds() {
  static const std::vector<KindInfo> list = [] {
    std::vector<KindInfo> v;
#define ADAMP_KIND_INFO(P) v.push_back(KindInfo{OptKind::P, P::kName, P::kSlots, P::kHyperCount, P::kProjects});
    ADAMP_OPTIMIZERS(ADAMP_KIND_INFO)
#undef ADAMP_KIND_INFO
    return v;
  }();
  return list;
}

bool kind_from_name(const char* name, OptKind* out) {
  for (const KindInfo& k : kinds())
    if (strcmp(k.name, name) == 0) {
      *out = k.kind;
      return true;
    }
  return false;
}

const char* hyper_name(OptKind kind, int i) {
  const char* name = "?";
  with_policy(kind, [&](auto pol) { name = decltype(pol)::hyper_name(i); });
  return name;
}

const char* check_hyper(OptKind kind, const double* hyper, int* field) {
  const char* msg = "unknown optimizer kind";
  *field = -1;
  with_policy(kind, [&](auto pol) {
    using P = decltype(pol);
    msg = P::check(hyper_of<P>(hyper), field);
  });
  return msg;
}

void step(const StepGroup* groups, size_t count, const StepConfig& cfg) {
  // Everything is allocated first (see "Memory" above): the groups' plans, the pool's threads and
  // one workspace sized for the largest need of any group; then the groups run, allocating nothing.
  std::vector<std::unique_ptr<GroupRun>> runs;
  reserve_for(runs, count);
  WorkspaceNeeds need;
  for (size_t i = 0; i < count; ++i) {
    const StepGroup& g = groups[i];
    with_policy(g.kind, [&](auto pol) {
      using P = decltype(pol);
      alloc_point();
      runs.emplace_back(new GroupPlan<P>(g.slots, g.count, g.hyper, g.info, cfg));
    });
    runs.back()->needs(need);
  }
  ThreadPool::shared().reserve(need.threads);
  WorkspaceLease lease;
  size_workspace(*lease.ws, need);
  for (const std::unique_ptr<GroupRun>& r : runs) r->run(*lease.ws);
}

void step(OptKind kind, const TensorSlot* slots, size_t count, const double* hyper, double* info, const StepConfig& cfg) {
  const StepGroup g{kind, slots, count, hyper, info};
  step(&g, 1, cfg);
}

namespace testing {

void fail_allocation(int64_t n) {
  g_fault_armed.store(false, std::memory_order_relaxed);
  g_fault_count.store(0, std::memory_order_relaxed);
  g_fault_at.store(n > 0 ? n : 0, std::memory_order_relaxed);
  if (n >= 0) g_fault_armed.store(true, std::memory_order_relaxed);
}

int64_t allocations() { return g_fault_count.load(std::memory_order_relaxed); }

void release_caches() {
  WorkspacePool::shared().drop();
  t_protocol_scratch = ThreadScratch();
}

}  // namespace testing

// ------------------------------------------------------------------------------------------------
// The protocol.

namespace protocol {

namespace {
Units units_of(OptKind kind, const Geometry& geo) {
  bool projects = false;
  with_policy(kind, [&](auto pol) { projects = decltype(pol)::kProjects; });
  return make_units(geo, projects);
}
}  // namespace

std::vector<int64_t> units(OptKind kind, const Geometry& geo) {
  const Units U = units_of(kind, geo);
  std::vector<int64_t> out((size_t)U.count + 1);
  for (int64_t u = 0; u <= U.count; ++u) out[(size_t)u] = U.start(u);
  return out;
}

const char* check_shard(OptKind kind, const Geometry& geo, int64_t offset, int64_t shard_numel, int64_t u0, int64_t u1) {
  const Units U = units_of(kind, geo);
  if (!(u0 >= 0 && u0 <= u1 && u1 <= U.count)) return "units [u0, u1) must lie within the tensor's units";
  if (offset != U.start(u0)) return "offset must be where unit u0 starts";
  if (shard_numel != U.start(u1) - U.start(u0)) return "the shard's arrays must hold exactly the elements of units [u0, u1)";
  return nullptr;
}

void stats(OptKind kind, const Geometry& geo, const TensorSlot& shard, int64_t offset, const double* hyper, int64_t u0,
           int64_t u1, std::vector<double>& out) {
  with_policy(kind, [&](auto pol) {
    using P = decltype(pol);
    const Units U = make_units(geo, P::kProjects);
    if (!U.projecting()) return;  // one pass: nothing before apply
    const size_t at = out.size();
    reserve_for(out, at + (size_t)(U.rec_offset(u1) - U.rec_offset(u0)));
    out.resize(at + (size_t)(U.rec_offset(u1) - U.rec_offset(u0)), 0.0);
    const Run<P> run = shard_run<P>(U, shard, offset, hyper_of<P>(hyper), true, &protocol_scratch(U, shard));
    for (int64_t u = u0; u < u1; ++u) {
      double* rec = out.data() + at + (U.rec_offset(u) - U.rec_offset(u0));
      if (U.layout == Layout::Lanes)
        for (int64_t t = 0; t < U.tiles; ++t) run.stats_tile(u, t, rec);
      else
        run.stats_unit(u, rec);
    }
  });
}

size_t partials_length(OptKind kind, const Geometry& geo) {
  const Units U = units_of(kind, geo);
  return (size_t)U.rec_offset(U.count);
}

void decide(OptKind kind, const Geometry& geo, const double* hyper, const double* partials, size_t n,
            std::vector<double>& decision) {
  (void)n;
  with_policy(kind, [&](auto pol) {
    using P = decltype(pol);
    const Units U = make_units(geo, P::kProjects);
    const typename P::Hyper h = hyper_of<P>(hyper);
    Decided d;
    if constexpr (P::kProjects) {
      if (U.projecting()) {
        std::vector<ChannelSums> sums((size_t)U.channels);
        decide_records<P>(U, h, partials, sums.data(), d);
      }
      else
        decide_one_pass<P>(h, d);
    } else {
      decide_one_pass<P>(h, d);
    }
    encode_decision(U, d, decision);
  });
}

const char* check_decision(OptKind kind, const Geometry& geo, const double* rec, size_t n) {
  const char* err = nullptr;
  with_policy(kind, [&](auto pol) {
    using P = decltype(pol);
    const Units U = make_units(geo, P::kProjects);
    if (n < (size_t)kDecisionHeader) {
      err = "a decision record has at least 11 doubles";
      return;
    }
    const double code = rec[0];
    if (U.projecting()) {
      if (!(code == kDecisionNone || code == kDecisionChannel || code == kDecisionLayer)) {
        err = "the decision's code is not none, channel or layer";
        return;
      }
    } else if (code != (P::kProjects ? kDecisionNotEligible : kDecisionNotApplicable)) {
      err = P::kProjects ? "the decision's code must be notEligible for this tensor" : "the decision's code must be notApplicable for this optimizer";
      return;
    }
    const int64_t ncoef = decision_ncoef((int)code, U);
    if (rec[10] != (double)ncoef || n != (size_t)(kDecisionHeader + 2 * ncoef)) {
      err = "the decision record's length does not match its code and the tensor's channels";
      return;
    }
  });
  return err;
}

void apply(OptKind kind, const Geometry& geo, const TensorSlot& shard, int64_t offset, const double* hyper,
           const double* decision, size_t decision_len, int64_t u0, int64_t u1, bool norms, std::vector<double>& out) {
  (void)decision_len;
  with_policy(kind, [&](auto pol) {
    using P = decltype(pol);
    const Units U = make_units(geo, P::kProjects);
    const typename P::Hyper h = hyper_of<P>(hyper);
    Decided d;
    decode_decision<P>(U, &h, decision, d);
    reserve_for(out, out.size() + (size_t)(kNormLen * (u1 - u0)));
    const Run<P> run = shard_run<P>(U, shard, offset, h, norms, &protocol_scratch(U, shard));
    for (int64_t u = u0; u < u1; ++u) {
      const Norms nr = run.apply_whole_unit(u, d);
      out.push_back(nr.before);
      out.push_back(nr.after);
      out.push_back(nr.delta);
    }
  });
}

void finish(OptKind kind, const Geometry& geo, const double* decision, size_t decision_len, const double* norms,
            double* info) {
  (void)decision_len;
  with_policy(kind, [&](auto pol) {
    using P = decltype(pol);
    const Units U = make_units(geo, P::kProjects);
    Decided d;
    decode_decision<P>(U, nullptr, decision, d);
    std::vector<Norms> un((size_t)U.count);
    for (int64_t u = 0; u < U.count; ++u) un[(size_t)u] = Norms{norms[kNormLen * u], norms[kNormLen * u + 1], norms[kNormLen * u + 2]};
    write_finish(U, d.r, un.data(), info);
  });
}

}  // namespace protocol

// ------------------------------------------------------------------------------------------------

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
