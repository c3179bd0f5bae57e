// A step that runs out of memory is all or nothing (step.h, cpu::step over StepGroup): for every
// allocation a step makes, a std::bad_alloc there must leave every param and state array byte for
// byte as it was, and the next step (without a failure) must equal the step of a run that never
// failed, bit for bit.
//
// Two ways to fail an allocation:
//   - this program's operator new (below): the n-th heap allocation of the process, on any thread,
//     from the moment a test arms it, throws. It sees every allocation, the core's annotated ones
//     or not (std::function, the pool's threads, vectors grown anywhere);
//   - the core's own test hook, cpu::testing::fail_allocation (what the addon's test-only export
//     drives from JS, test/all-or-nothing.test.ts).
// Each case counts the allocations of a step from cold caches (cpu::testing::release_caches),
// then fails each of them in turn, again from cold caches, and once more from warm ones.
//
// Cases: AdamP and SGDP (and a step of both as two groups); the Rows (with and without the
// speculative pass), Lanes (one tile and several), Pieces and OnePass layouts; a 16-bit tensor;
// 1 and 2 threads; a step of two waves (not with --quick); the protocol's stats and apply.
#include <atomic>
#include <new>
#include <system_error>
#include <vector>

#include "check.h"
#include "step.h"
#include "tensors.h"
#include "thread_pool.h"

using namespace adamp;
using namespace adamp::cpu;

// ------------------------------------------------------------------------------------------------
// Allocation failures: operator new of this program.

static std::atomic<bool> g_armed{false};
static std::atomic<int64_t> g_seen{0};     // allocations since armed
static std::atomic<int64_t> g_fail_at{0};  // the allocation that throws (0: none, count only)

static void* counted_new(size_t n) {
  if (g_armed.load(std::memory_order_relaxed)) {
    const int64_t k = g_seen.fetch_add(1, std::memory_order_relaxed) + 1;
    if (k == g_fail_at.load(std::memory_order_relaxed)) throw std::bad_alloc();
  }
  void* p = malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* operator new(size_t n) { return counted_new(n); }
void* operator new[](size_t n) { return counted_new(n); }
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }
void operator delete[](void* p, size_t) noexcept { free(p); }

/** Which allocations fail: operator new (`Heap`) or the core's allocation points (`Hook`). */
enum class Via { Heap, Hook };

static void arm(Via via, int64_t fail_at) {
  if (via == Via::Hook) {
    cpu::testing::fail_allocation(fail_at);
    return;
  }
  g_armed.store(false);
  g_seen.store(0);
  g_fail_at.store(fail_at);
  g_armed.store(true);
}
/** Disarms both; returns the allocations (Heap) or allocation points (Hook) seen since armed. */
static int64_t disarm(Via via) {
  const int64_t n = via == Via::Hook ? cpu::testing::allocations() : g_seen.load();
  g_armed.store(false);
  cpu::testing::fail_allocation(-1);
  return n;
}

// ------------------------------------------------------------------------------------------------
// Tensors.

static std::vector<double> adamp_hyper() { return {1e-2, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1, 0.0}; }
static std::vector<double> sgdp_hyper() { return {1e-2, 0.9, 0.0, 1e-4, 1.0, 1e-8, 0.1, 0.1}; }

/** A tensor, optionally stored as bfloat16 (p16; then p is not used). */
struct T {
  Tensor t;
  std::vector<uint16_t> p16;
  HalfSlot h{};
  bool half = false;
  TensorSlot slot(double step) {
    TensorSlot s = t.slot(step);
    if (half) {
      h.dtype = 1;
      h.p16 = p16.data();
      h.g16 = nullptr;
      h.master = false;
      h.scaled = false;
      h.inv_scale = 1.0f;
      h.stochastic = false;
      h.key = 0;
      s.p = nullptr;
      s.half = &h;
    }
    return s;
  }
  /** The bytes a step may change: p (or p16) and the state. */
  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> b;
    auto add = [&](const void* d, size_t n) { b.insert(b.end(), (const uint8_t*)d, (const uint8_t*)d + n); };
    if (half)
      add(p16.data(), p16.size() * 2);
    else
      add(t.p.data(), t.p.size() * 4);
    for (const std::vector<float>& s : t.st) add(s.data(), s.size() * 4);
    return b;
  }
};

static T make(Rng& r, const Geo& g, int slots, bool half) {
  T x;
  x.t = make_tensor(r, g, 1, slots);
  if (half) {
    x.half = true;
    x.p16.resize(x.t.p.size());
    for (size_t i = 0; i < x.p16.size(); ++i) {
      uint32_t u;
      memcpy(&u, &x.t.p[i], 4);
      x.p16[i] = (uint16_t)(u >> 16);  // truncation: any bfloat16 will do
    }
  }
  return x;
}

struct Group {
  OptKind kind;
  std::vector<double> hyper;
  std::vector<T> ts;
};

/** A step of every group; returns the info records. */
static std::vector<double> step_all(std::vector<Group>& gs, double step, int threads) {
  std::vector<std::vector<TensorSlot>> slots(gs.size());
  size_t n = 0;
  for (const Group& g : gs) n += g.ts.size();
  std::vector<double> info(n * kInfoStride, -1.0);
  std::vector<StepGroup> sg;
  size_t at = 0;
  for (size_t i = 0; i < gs.size(); ++i) {
    for (T& t : gs[i].ts) slots[i].push_back(t.slot(step));
    sg.push_back(StepGroup{gs[i].kind, slots[i].data(), slots[i].size(), gs[i].hyper.data(), info.data() + at * kInfoStride});
    at += gs[i].ts.size();
  }
  StepConfig cfg;
  cfg.threads = threads;
  cpu::step(sg.data(), sg.size(), cfg);
  return info;
}

static std::vector<uint8_t> bytes_of(const std::vector<Group>& gs) {
  std::vector<uint8_t> b;
  for (const Group& g : gs)
    for (const T& t : g.ts) {
      const std::vector<uint8_t> x = t.bytes();
      b.insert(b.end(), x.begin(), x.end());
    }
  return b;
}

static bool same_info(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

// ------------------------------------------------------------------------------------------------
// The sweep: fail each allocation of a step in turn.

/**
 * `gs` after one step (state not zero). For each allocation n of a step at state S: the step
 * throws std::bad_alloc and S is unchanged. Then a step without failures equals the step from S
 * of a copy that never failed (p, state and info, bit for bit). Returns the allocations counted.
 */
static int64_t sweep(const char* name, std::vector<Group> gs, int threads, Via via, bool cold) {
  step_all(gs, 1, threads);
  std::vector<Group> ref = gs;
  const std::vector<double> ref_info = step_all(ref, 2, threads);
  const std::vector<uint8_t> ref_bytes = bytes_of(ref), before = bytes_of(gs);

  std::vector<Group> probe = gs;
  if (cold) cpu::testing::release_caches();
  arm(via, 0);
  step_all(probe, 2, threads);
  const int64_t total = disarm(via);
  CHECK(total > 0);
  int failures = 0;
  for (int64_t n = 1; n <= total; ++n) {
    if (cold) cpu::testing::release_caches();
    bool threw = false;
    arm(via, n);
    try {
      step_all(gs, 2, threads);
    } catch (const std::bad_alloc&) {
      threw = true;
    } catch (...) {
      threw = false;
    }
    disarm(via);
    const bool same = bytes_of(gs) == before;
    if (!threw || !same) {
      if (++failures <= 3)
        fprintf(stderr, "%s (%s, %d threads, %s caches): allocation %lld of %lld: %s\n", name, via == Via::Hook ? "hook" : "heap",
                threads, cold ? "cold" : "warm", (long long)n, (long long)total,
                !threw ? "the step did not throw std::bad_alloc" : "params or state changed");
    }
    CHECK(threw);
    CHECK(same);
    if (!same) return total;  // the rest would compare against a changed state
  }
  // one more than the step makes: nothing fails
  arm(via, total + 1);
  const std::vector<double> info = step_all(gs, 2, threads);
  disarm(via);
  CHECK(bytes_of(gs) == ref_bytes);
  CHECK(same_info(info, ref_info));
  return total;
}

static Group group(OptKind kind, Rng& r, const std::vector<Geo>& geos, bool half_first) {
  Group g;
  g.kind = kind;
  g.hyper = kind == OptKind::AdamP ? adamp_hyper() : sgdp_hyper();
  const int slots = kind == OptKind::AdamP ? 2 : 1;
  for (size_t i = 0; i < geos.size(); ++i) g.ts.push_back(make(r, geos[i], slots, half_first && i == 0));
  return g;
}

static void test_steps() {
  Rng r(11);
  // Rows with the speculative pass (outer 1), Rows (outer > 1), Lanes (one tile; several), Pieces, OnePass.
  const std::vector<Geo> layouts = {{1, 24, 27, true}, {4, 16, 9, true}, {300, 20, 1, true}, {3, 4100, 1, true},
                                    {1, 2, 40000, true}, {1, 1, 1000, false}};
  for (int threads : {1, 2}) {
    for (OptKind kind : {OptKind::AdamP, OptKind::SGDP}) {
      const char* name = kind == OptKind::AdamP ? "adamp" : "sgdp";
      // each layout alone (the 16-bit variant of the Rows one), then all together
      for (size_t i = 0; i < layouts.size(); ++i) {
        std::vector<Group> gs{group(kind, r, {layouts[i]}, false)};
        sweep(name, gs, threads, Via::Heap, true);
      }
      std::vector<Group> half{group(kind, r, {{4, 16, 9, true}, {300, 20, 1, true}}, true)};
      sweep(name, half, threads, Via::Heap, true);
      std::vector<Group> all{group(kind, r, layouts, false)};
      const int64_t heap = sweep(name, all, threads, Via::Heap, true);
      sweep(name, all, threads, Via::Heap, false);
      const int64_t hook = sweep(name, all, threads, Via::Hook, true);
      sweep(name, all, threads, Via::Hook, false);
      CHECK(hook > 0 && hook <= heap);
      if (threads == 2 && kind == OptKind::AdamP)
        printf("  %s, every layout, 2 threads: %lld heap allocations, %lld allocation points\n", name, (long long)heap, (long long)hook);
    }
    // two groups as one step: a failure in the second leaves the first unchanged
    std::vector<Group> two{group(OptKind::AdamP, r, {{1, 24, 27, true}, {300, 20, 1, true}}, false),
                           group(OptKind::SGDP, r, {{4, 16, 9, true}, {1, 2, 40000, true}}, false)};
    sweep("adamp+sgdp", two, threads, Via::Heap, true);
    sweep("adamp+sgdp", two, threads, Via::Hook, true);
    // speculation on (the speculative single pass for the Rows tensor; off is the default)
    cpu::set_speculation(Speculation::On);
    std::vector<Group> on{group(OptKind::AdamP, r, layouts, false)};
    sweep("adamp, speculation on", on, threads, Via::Heap, true);
    cpu::set_speculation(Speculation::Off);
    if (!g_quick) {
      // two waves (about 1M elements each): the second wave's pass 1 runs with the first's pass 2
      std::vector<Group> waves{group(OptKind::AdamP, r, {{1, 512, 2304, true}, {1, 64, 9000, true}, {900, 20, 1, true}}, false)};
      sweep("adamp, two waves", waves, threads, Via::Heap, true);
      std::vector<Group> wsgdp{group(OptKind::SGDP, r, {{1, 512, 2304, true}, {4, 64, 2000, true}}, false)};
      sweep("sgdp, two waves", wsgdp, threads, Via::Heap, true);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// The protocol: stats and apply of a shard (here the whole tensor) are each all or nothing.

static void test_protocol() {
  Rng r(5);
  const std::vector<Geo> geos = {{1, 24, 27, true}, {300, 20, 1, true}, {3, 4100, 1, true}, {1, 2, 40000, true}, {1, 1, 1000, false}};
  for (OptKind kind : {OptKind::AdamP, OptKind::SGDP})
    for (const Geo& geo : geos)
      for (bool half : {false, true})
        for (Via via : {Via::Heap, Via::Hook}) {
          T x = make(r, geo, kind == OptKind::AdamP ? 2 : 1, half);
          const std::vector<double> hyper = kind == OptKind::AdamP ? adamp_hyper() : sgdp_hyper();
          const protocol::Geometry g{(int64_t)x.t.p.size(), geo.outer, geo.channels, geo.inner, geo.eligible};
          const int64_t units = (int64_t)protocol::units(kind, g).size() - 1;
          // stats: for each allocation, throws and the state is unchanged
          auto stats = [&](std::vector<double>& out) {
            const TensorSlot s = x.slot(1);
            protocol::stats(kind, g, s, 0, hyper.data(), 0, units, out);
          };
          auto apply = [&](const std::vector<double>& d, std::vector<double>& out) {
            const TensorSlot s = x.slot(1);
            protocol::apply(kind, g, s, 0, hyper.data(), d.data(), d.size(), 0, units, true, out);
          };
          for (int phase = 0; phase < 2; ++phase) {
            std::vector<double> partials, decision;
            if (phase == 1) {
              stats(partials);
              protocol::decide(kind, g, hyper.data(), partials.data(), partials.size(), decision);
            }
            const std::vector<uint8_t> before = x.bytes();
            cpu::testing::release_caches();
            std::vector<double> out;
            out.reserve(1);  // (the binding's vector: only the call's own growth of it is counted)
            arm(via, 0);
            phase == 0 ? stats(out) : apply(decision, out);
            const int64_t total = disarm(via);
            CHECK(total > 0 || (phase == 0 && !geo.eligible));  // a one-pass tensor has no stats
            {  // the counting call stepped the tensor: back to `before`
              size_t at = 0;
              auto put = [&](void* d, size_t n) {
                if (n > 0) memcpy(d, before.data() + at, n);
                at += n;
              };
              if (half)
                put(x.p16.data(), x.p16.size() * 2);
              else
                put(x.t.p.data(), x.t.p.size() * 4);
              for (std::vector<float>& s : x.t.st) put(s.data(), s.size() * 4);
            }
            for (int64_t n = 1; n <= total; ++n) {
              cpu::testing::release_caches();
              std::vector<double> o2;
              o2.reserve(1);
              bool threw = false;
              arm(via, n);
              try {
                phase == 0 ? stats(o2) : apply(decision, o2);
              } catch (const std::bad_alloc&) {
                threw = true;
              }
              disarm(via);
              if (!threw || x.bytes() != before)
                fprintf(stderr, "protocol %s of %s %lldx%lldx%lld%s (%s): allocation %lld of %lld: %s\n", phase == 0 ? "stats" : "apply",
                        kind == OptKind::AdamP ? "adamp" : "sgdp", (long long)geo.outer, (long long)geo.channels, (long long)geo.inner,
                        half ? " bf16" : "", via == Via::Hook ? "hook" : "heap", (long long)n, (long long)total,
                        !threw ? "did not throw std::bad_alloc" : "the shard changed");
              CHECK(threw);
              CHECK(x.bytes() == before);
            }
            std::vector<double> o3;
            phase == 0 ? stats(o3) : apply(decision, o3);
            CHECK(o3 == out);
          }
        }
}

int main(int argc, char** argv) {
  parse_test_args(argc, argv);
  // First, while the pool has no helper thread yet: a 2-thread step whose helper cannot start
  // (each allocation in turn, until the step runs) fails before it changes anything.
  {
    Rng r(3);
    std::vector<Group> gs{group(OptKind::AdamP, r, {{1, 24, 27, true}, {300, 20, 1, true}}, false)};
    std::vector<Group> ref = gs;
    step_all(ref, 1, 1);
    const std::vector<uint8_t> before = bytes_of(gs);
    int attempts = 0;
    for (int64_t n = 1;; ++n) {
      arm(Via::Heap, n);
      bool threw = false;
      try {
        step_all(gs, 1, 2);
      } catch (const std::bad_alloc&) {
        threw = true;
      } catch (const std::system_error&) {
        threw = true;
      }
      disarm(Via::Heap);
      if (!threw) break;
      ++attempts;
      CHECK(bytes_of(gs) == before);
      if (bytes_of(gs) != before) break;
    }
    CHECK(attempts > 0);
    CHECK(bytes_of(gs) == bytes_of(ref));
  }
  test_steps();
  test_protocol();
  return report("test_all_or_nothing");
}
