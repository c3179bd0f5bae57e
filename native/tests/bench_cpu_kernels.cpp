// The CPU core against its floors, step for step in one process: a kernel developer's benchmark.
//
// `adamp bench` (lib/bench/cpu.ts) is the product's benchmark: every backend, the official code,
// both parameter sets. This one links the core directly (no N-API, no JS heap) and alternates
// AdamP (info norms on, then off), the registered one-pass AdamW, SGDP (norms on, off) and the
// registered one-pass SGD each step, each on its own copy of the state, so the ratios it prints
// compare kernels under the same machine noise. The floors run without info norms. scripts/bench-kernels.sh builds it
// and compares two builds of the core (A/B) round by round.
//
//   bench_cpu_kernels [--set resnet50|gpt2-small] [--shapes 50257x768,...] [--threads N]
//                     [--grads fire|random] [--zero-rows F] [--steps N] [--shapes-file PATH]
//                     [--layout torch|tf] [--algos adamp,adampNoNorms,adam,sgdp,sgdpNoNorms,sgd]
//                     [--speculation on|off] [--same-memory] [--ab]
//   bench_cpu_kernels --digest N
//
// --algos runs only the named runs (ratios whose two runs both ran). --speculation on is
// setSpeculation('on') (off is the default). Times are wall clock and process CPU time (every thread's, so a step
// that lost its core to another process on a shared machine still counts only its own work).
// --digest: the random differential below, not a benchmark.
// --same-memory: every run steps the same p and state arrays (one copy instead of one per run),
// each step from the same values: p and the state are reset before every timed step (untimed),
// so every run of every step does the same work with the same decisions. On the bench VM one
// allocation can be 1.4x slower to stream than another for the life of the process (host memory
// placement), which moves ratios between runs on their own copies by up to 0.4; on one copy that
// placement cancels out. The caches are flushed after the reset (256 MB read), as a training
// step's forward and backward passes would leave them.
// --ab (a binary built by scripts/bench-kernels.sh --base REV --same-process): every run is made
// twice each step, by this tree's core and by REV's (bench_ab_base.cpp), in alternating order, so
// the comparison of two builds sees the same memory and the same neighbours; adds each run's
// ...BaseMs, the base's ratios (...Base) and this tree's time over the base's (...OverBaseMs).
// --zero-rows F gives a fraction F of every eligible tensor's rows an exactly zero gradient (the
// rows of an embedding the batch did not use). --layout tf stores every tensor with its first
// dimension innermost, as TensorFlow.js keeps a kernel's output channels (outer x channels x 1:
// the core's lanes layout); the default is PyTorch's (1 x channels x inner). Prints one JSON object: median ms/step per
// run and the medians of the per-step ratios AdamP/AdamW and SGDP/SGD, with the info norms on
// (adampOverAdam, sgdpOverSgd) and off (adampNoNormsOverAdam, sgdpNoNormsOverSgd), wall clock
// and (...Cpu) process CPU time.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "adamp/math.h"
#include "cuda/mini_json.h"
#include "step.h"

using namespace adamp;

namespace {

struct Options {
  std::string set = "resnet50";
  std::string shapes;  // overrides set: "50257x768,1024x768"
  std::string shapes_file = ADAMP_BENCH_SHAPES_FILE;
  int threads = 1;
  bool fire = true;
  double zero_rows = 0.0;
  int steps = 15;
  bool tf_layout = false;
  std::string algos;  // comma-separated subset of the runs (default: all)
  int digest = 0;     // > 0: the random differential instead of the benchmark
  int speculation = 0;  // cpu::Speculation: 0 off (the product's default), 1 on
  bool ab = false;      // also step the base build's core (ADAMP_BENCH_AB)
  bool same_memory = false;  // every run on one copy of p and state
};

[[noreturn]] void usage(const char* why) {
  fprintf(stderr, "bench_cpu_kernels: %s\n", why);
  fprintf(stderr,
          "usage: bench_cpu_kernels [--set resnet50|gpt2-small] [--shapes AxB,...] [--threads N]\n"
          "                         [--grads fire|random] [--zero-rows F] [--steps N] [--shapes-file PATH]\n"
          "                         [--layout torch|tf] [--algos adamp,adampNoNorms,adam,sgdp,sgdpNoNorms,sgd]\n"
          "                         [--speculation on|off] [--same-memory] [--ab]\n"
          "       bench_cpu_kernels --digest N\n");
  exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--ab") {
#ifdef ADAMP_BENCH_AB
      o.ab = true;
      continue;
#else
      usage("--ab needs the binary scripts/bench-kernels.sh --same-process builds");
#endif
    }
    if (a == "--same-memory") {
      o.same_memory = true;
      continue;
    }
    if (i + 1 >= argc) usage(("missing value after " + a).c_str());
    const char* v = argv[++i];
    if (a == "--set") o.set = v;
    else if (a == "--shapes") o.shapes = v;
    else if (a == "--shapes-file") o.shapes_file = v;
    else if (a == "--threads") o.threads = atoi(v);
    else if (a == "--grads") {
      if (strcmp(v, "fire") != 0 && strcmp(v, "random") != 0) usage("--grads must be fire or random");
      o.fire = strcmp(v, "fire") == 0;
    } else if (a == "--zero-rows") o.zero_rows = atof(v);
    else if (a == "--steps") o.steps = atoi(v);
    else if (a == "--algos") o.algos = v;
    else if (a == "--digest") o.digest = atoi(v);
    else if (a == "--speculation") {
      if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) usage("--speculation must be on or off");
      o.speculation = strcmp(v, "on") == 0 ? 1 : 0;
    }
    else if (a == "--layout") {
      if (strcmp(v, "torch") != 0 && strcmp(v, "tf") != 0) usage("--layout must be torch or tf");
      o.tf_layout = strcmp(v, "tf") == 0;
    }
    else usage(("unknown option " + a).c_str());
  }
  if (o.threads < 1 || o.steps < 1 || !(o.zero_rows >= 0.0 && o.zero_rows <= 1.0)) usage("bad --threads, --steps or --zero-rows");
  return o;
}

std::vector<std::vector<int64_t>> load_shapes(const Options& o) {
  std::vector<std::vector<int64_t>> out;
  if (!o.shapes.empty()) {
    std::stringstream ss(o.shapes);
    std::string item;
    while (std::getline(ss, item, ',')) {
      std::vector<int64_t> shape;
      std::stringstream ds(item);
      std::string d;
      while (std::getline(ds, d, 'x')) shape.push_back(atoll(d.c_str()));
      if (shape.empty() || *std::min_element(shape.begin(), shape.end()) < 1) usage("bad --shapes");
      out.push_back(shape);
    }
    return out;
  }
  std::ifstream f(o.shapes_file);
  if (!f) usage(("cannot read " + o.shapes_file).c_str());
  std::stringstream buf;
  buf << f.rdbuf();
  const mini_json::Value doc = mini_json::parse(buf.str());
  const mini_json::Value& set = doc[o.set];
  if (set.is_null()) usage(("no set " + o.set + " in " + o.shapes_file).c_str());
  for (const mini_json::Value& s : set["shapes"].arr) {
    std::vector<int64_t> shape;
    for (const mini_json::Value& d : s.arr) shape.push_back((int64_t)d.number());
    out.push_back(shape);
  }
  return out;
}

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> p, g;
  int64_t numel = 1;
};

/** Weights ~ N(0, 0.05); gradients N(0, 0.01), orthogonal to every row with --grads fire. */
std::vector<Tensor> make_tensors(const Options& o) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<Tensor> ts;
  for (const auto& shape : load_shapes(o)) {
    Tensor t;
    t.shape = shape;
    for (int64_t d : shape) t.numel *= d;
    t.p.resize((size_t)t.numel);
    t.g.resize((size_t)t.numel);
    for (float& x : t.p) x = nd(rng) * 0.05f;
    for (float& x : t.g) x = nd(rng) * 0.01f;
    if (shape.size() > 1) {
      // Channel c = shape[0]'s index: element i's is i / inner (torch) or i % channels (tf).
      const int64_t channels = shape[0], inner = t.numel / channels;
      auto chan = [&](int64_t i) { return o.tf_layout ? i % channels : i / inner; };
      std::vector<char> zero((size_t)channels);
      for (int64_t c = 0; c < channels; ++c) zero[(size_t)c] = (double)((uint64_t)c * 2654435761u % 1000) < o.zero_rows * 1000;
      std::vector<double> gp((size_t)channels, 0.0), pp((size_t)channels, 0.0);
      for (int64_t i = 0; i < t.numel; ++i) {
        const size_t c = (size_t)chan(i);
        if (zero[c]) t.g[(size_t)i] = 0.0f;
        gp[c] += (double)t.g[(size_t)i] * t.p[(size_t)i];
        pp[c] += (double)t.p[(size_t)i] * t.p[(size_t)i];
      }
      if (o.fire)
        for (int64_t i = 0; i < t.numel; ++i) {
          const size_t c = (size_t)chan(i);
          t.g[(size_t)i] -= (float)(gp[c] / pp[c]) * t.p[(size_t)i];
        }
    }
    ts.push_back(std::move(t));
  }
  return ts;
}

// ------------------------------------------------------------------------------------------------
// --digest N: a random differential of the core, not a benchmark. N cases, each a random group of
// tensors (every layout: 1-D, rows, long rows in pieces, outer > 1, channels innermost; a tensor
// over the stored-u limit now and then), random hyperparameters and gradients (random,
// orthogonal, parallel, zero rows, a late row that breaks the channel prediction, float-range
// extremes), three steps, run under random configurations (threads, kernels, speculation, norms).
// Prints one line per case and configuration: a digest of p, state and the info record. Every
// configuration of a case must print the same p/state digest (and the same info digest for the
// same norms switch), and two builds of the core must print the same lines (bench-kernels.sh --diff).

uint64_t fnv(uint64_t h, const void* data, size_t n) {
  const unsigned char* b = (const unsigned char*)data;
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

struct DRng {
  uint64_t s;
  explicit DRng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 12345) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  double unit() { return (double)(next() >> 11) / 9007199254740992.0; }  // [0, 1)
  int below(int n) { return (int)(next() % (uint64_t)n); }
  float normal() { return (float)((unit() + unit() + unit()) * 2.0 - 3.0); }
};

struct DTensor {
  int64_t outer, channels, inner;
  bool eligible;
  std::vector<float> p, g, st0, st1;
};

DTensor digest_tensor(DRng& r, int64_t budget) {
  DTensor t;
  const int shape = r.below(10);
  t.eligible = true;
  t.outer = 1;
  if (shape == 0) {  // 1-D
    t.eligible = false;
    t.channels = 1;
    t.inner = 1 + r.below(r.below(2) ? 70000 : 300);
  } else if (shape <= 4) {  // PyTorch layout rows
    t.channels = 1 + r.below(r.below(3) == 0 ? 1500 : 200);
    t.inner = 1 + r.below(r.below(3) == 0 ? 6000 : 800);
  } else if (shape == 5) {  // long rows: pieces
    t.channels = 1 + r.below(4);
    t.inner = 32768 + r.below(90000);
  } else if (shape == 6) {  // outer > 1
    t.outer = 2 + r.below(6);
    t.channels = 1 + r.below(100);
    t.inner = 1 + r.below(700);
  } else if (shape <= 8) {  // channels innermost (TensorFlow.js)
    t.outer = 1 + r.below(r.below(2) ? 3000 : 60);
    t.channels = 1 + r.below(r.below(3) == 0 ? 9000 : 300);
    t.inner = 1;
  } else {  // one-row or one-column edge shapes
    t.channels = r.below(2) ? 1 : 1 + r.below(5000);
    t.inner = t.channels == 1 ? 1 + r.below(40000) : 1;
  }
  while (t.outer * t.channels * t.inner > budget) {
    if (t.inner > 1) t.inner = (t.inner + 1) / 2;
    else if (t.channels > 1) t.channels = (t.channels + 1) / 2;
    else t.outer = (t.outer + 1) / 2;
  }
  const int64_t n = t.outer * t.channels * t.inner;
  t.p.resize((size_t)n);
  t.g.resize((size_t)n);
  const int gk = r.below(9);
  const float pscale = gk == 7 ? 3e19f : gk == 8 ? 1e-12f : 1.0f;
  for (int64_t i = 0; i < n; ++i) t.p[(size_t)i] = r.normal() * pscale;
  for (int64_t i = 0; i < n; ++i) t.g[(size_t)i] = r.normal() * (gk == 8 ? 1e-13f : 0.1f);
  auto chan = [&](int64_t i) { return (i / t.inner) % t.channels; };
  if (gk == 1 || gk == 4 || gk == 5 || gk == 6) {  // orthogonal per channel
    std::vector<double> gp((size_t)t.channels, 0.0), pp((size_t)t.channels, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      gp[(size_t)chan(i)] += (double)t.g[(size_t)i] * t.p[(size_t)i];
      pp[(size_t)chan(i)] += (double)t.p[(size_t)i] * t.p[(size_t)i];
    }
    for (int64_t i = 0; i < n; ++i) {
      const size_t c = (size_t)chan(i);
      if (pp[c] > 0) t.g[(size_t)i] = (float)(t.g[(size_t)i] - gp[c] / pp[c] * t.p[(size_t)i]);
    }
  }
  if (gk == 2)
    for (int64_t i = 0; i < n; ++i) t.g[(size_t)i] = 0.5f * t.p[(size_t)i];
  if (gk == 4) {  // a late channel breaks the prediction
    const int64_t c = t.channels - 1 - r.below((int)std::min<int64_t>(t.channels, 3));
    for (int64_t i = 0; i < n; ++i)
      if (chan(i) == c) t.g[(size_t)i] = 100.0f * t.p[(size_t)i];
  }
  if (gk == 5 || gk == 3) {  // zero gradient rows
    for (int64_t i = 0; i < n; ++i)
      if ((uint64_t)chan(i) * 2654435761u % 7 < 5) t.g[(size_t)i] = 0.0f;
  }
  if (gk == 6 && n > 0) t.g[(size_t)r.below((int)n)] = 1e30f;  // one huge gradient element
  t.st0.assign((size_t)n, 0.0f);
  t.st1.assign((size_t)n, 0.0f);
  return t;
}

std::vector<double> digest_hyper(DRng& r, OptKind kind) {
  const double lr = r.below(4) == 0 ? 0.0 : std::pow(10.0, -1.0 - 4.0 * r.unit());
  const double wd = r.below(2) ? 0.0 : r.unit() * 0.1;
  const double eps = r.below(5) == 0 ? 0.0 : std::pow(10.0, -3.0 - 6.0 * r.unit());
  const double delta = r.below(4) == 0 ? 1.0 : 0.1, wdr = r.unit();
  const double nest = r.below(3) == 0 ? 1.0 : 0.0;
  switch (kind) {
    case OptKind::AdamP:
      return {lr, 0.5 + 0.49 * r.unit(), 0.9 + 0.0999 * r.unit(), eps, wd, delta, wdr, nest};
    case OptKind::SGDP: {
      const double mom = r.below(5) == 0 ? 0.0 : 0.5 + 0.49 * r.unit();
      return {lr, mom, r.below(3) == 0 ? 0.3 : 0.0, wd, nest, eps, delta, wdr};
    }
    case OptKind::AdamW:
      return {lr, 0.5 + 0.49 * r.unit(), 0.9 + 0.0999 * r.unit(), eps, wd};
    default: {
      const double mom = r.below(4) == 0 ? 0.0 : 0.5 + 0.49 * r.unit();
      const bool n = mom > 0 && r.below(3) == 0;
      return {lr, mom, n ? 0.0 : (r.below(3) == 0 ? 0.3 : 0.0), wd, n ? 1.0 : 0.0};
    }
  }
}

int run_digest(int cases) {
  const OptKind kinds[] = {OptKind::AdamP, OptKind::SGDP, OptKind::AdamW, OptKind::SGD};
  const bool avx2 = cpu::avx2_available();
  int bad = 0;
  long decisions[5] = {0, 0, 0, 0, 0};  // per decision code, at the canonical configuration's last step
  for (int c = 0; c < cases; ++c) {
    DRng r((uint64_t)c + 1);
    const OptKind kind = kinds[c % 4];
    std::vector<DTensor> base;
    const int ntens = 1 + r.below(6);
    const bool big = c % 23 == 5;  // a tensor over the stored-u limit (4M elements)
    for (int k = 0; k < ntens; ++k) base.push_back(digest_tensor(r, 600000));
    if (big) {
      DTensor t = digest_tensor(r, 1);
      t.outer = 1, t.channels = 1100 + r.below(100), t.inner = 3900, t.eligible = true;
      const int64_t n = t.channels * t.inner;
      t.p.resize((size_t)n), t.g.resize((size_t)n);
      for (int64_t i = 0; i < n; ++i) t.p[(size_t)i] = r.normal(), t.g[(size_t)i] = r.normal() * 0.01f;
      t.st0.assign((size_t)n, 0.0f), t.st1.assign((size_t)n, 0.0f);
      base.insert(base.begin() + r.below((int)base.size() + 1), std::move(t));
    }
    std::vector<std::vector<double>> hypers;
    for (int s = 0; s < 3; ++s) hypers.push_back(s == 0 || r.below(2) ? digest_hyper(r, kind) : hypers.back());
    // Configurations: the canonical one with norms on and off, then random ones.
    struct Cfg {
      int threads, simd, spec;
      bool norms;
    };
    std::vector<Cfg> cfgs = {{1, 1, 1, true}, {1, 1, 1, false}};
    for (int k = 0; k < 4; ++k) cfgs.push_back(Cfg{1 + r.below(5), r.below(2), r.below(4), r.below(2) == 0});
    uint64_t ref_state[2] = {0, 0}, ref_info[2] = {0, 0};
    bool have[2] = {false, false};
    for (const Cfg& cfg : cfgs) {
      std::vector<DTensor> ts = base;
      cpu::set_simd(cfg.simd == 1 && avx2 ? cpu::Simd::Avx2 : cpu::Simd::Portable);
      cpu::set_speculation((cpu::Speculation)cfg.spec);
      std::vector<double> info(ts.size() * kInfoStride);
      uint64_t hs = 1469598103934665603ull, hi = hs;
      for (int s = 0; s < 3; ++s) {
        std::vector<cpu::TensorSlot> slots;
        for (DTensor& t : ts) {
          cpu::TensorSlot sl;
          sl.p = t.p.data();
          sl.g = t.g.data();
          sl.state[0] = t.st0.data();
          sl.state[1] = t.st1.data();
          sl.numel = (int64_t)t.p.size();
          sl.outer = t.outer;
          sl.channels = t.channels;
          sl.inner = t.inner;
          sl.eligible = t.eligible;
          sl.step = s + 1;
          slots.push_back(sl);
        }
        cpu::StepConfig sc;
        sc.threads = cfg.threads;
        sc.norms = cfg.norms;
        cpu::step(kind, slots.data(), slots.size(), hypers[(size_t)s].data(), info.data(), sc);
        hi = fnv(hi, info.data(), info.size() * sizeof(double));
      }
      for (const DTensor& t : ts) {
        hs = fnv(hs, t.p.data(), t.p.size() * 4);
        hs = fnv(hs, t.st0.data(), t.st0.size() * 4);
        hs = fnv(hs, t.st1.data(), t.st1.size() * 4);
      }
      const int nm = cfg.norms ? 1 : 0;
      if (&cfg == &cfgs[0])
        for (size_t k = 0; k < ts.size(); ++k) {
          const int code = (int)info[k * kInfoStride + kInfoDecision];
          if (code >= 0 && code < 5) ++decisions[code];
        }
      if (!have[nm]) {
        have[nm] = true, ref_state[nm] = hs, ref_info[nm] = hi;
      } else if (ref_info[nm] != hi) {
        ++bad;
      }
      if (hs != ref_state[1] && have[1]) ++bad;
      if (hs != ref_state[0] && have[0]) ++bad;
      printf("case %d %s tensors %zu threads %d simd %s spec %d norms %d state %016llx info %016llx\n", c,
             cpu::kinds()[(size_t)kind].name, ts.size(), cfg.threads, cfg.simd && avx2 ? "avx2" : "portable", cfg.spec,
             nm, (unsigned long long)hs, (unsigned long long)hi);
    }
  }
  cpu::set_simd(cpu::Simd::Avx2);
  cpu::set_speculation(cpu::Speculation::Off);
  fprintf(stderr,
          "digest: %d cases (tensors decided none %ld, channel %ld, layer %ld, not eligible %ld, not applicable %ld), "
          "%d configurations disagreeing within a case\n",
          cases, decisions[0], decisions[1], decisions[2], decisions[3], decisions[4], bad);
  return bad == 0 ? 0 : 1;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? NAN : v[v.size() / 2];
}

/** The fastest step: on a machine whose neighbours take memory bandwidth in bursts, the least disturbed one. */
double minimum(const std::vector<double>& v) { return v.empty() ? NAN : *std::min_element(v.begin(), v.end()); }

/** Streams through 256 MB so that no run starts with the reset's last lines in the caches. */
void evict_caches() {
  static std::vector<float> junk((size_t)64 << 20, 1.0f);
  static std::atomic<float> sink{0.0f};  // keeps the reads
  float acc = 0.0f;
  for (size_t i = 0; i < junk.size(); i += 16) acc += junk[i];
  sink.store(acc, std::memory_order_relaxed);
}

/** CPU time of the whole process (every thread), in ms. */
double process_cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

#ifdef ADAMP_BENCH_AB
extern "C" int adamp_base_slot_size();
extern "C" void adamp_base_step(int kind, const void* slots, size_t count, const double* hyper, double* info, int threads,
                                int norms, int speculation);
#endif

/** One step of `slots` by this tree's core (base false) or the base build's (--ab). */
void step_with(bool base, OptKind kind, const std::vector<cpu::TensorSlot>& slots, const double* hyper, double* info, int threads,
               bool norms, int speculation) {
#ifdef ADAMP_BENCH_AB
  if (base) {
    adamp_base_step((int)kind, slots.data(), slots.size(), hyper, info, threads, norms ? 1 : 0, speculation);
    return;
  }
#else
  (void)base, (void)speculation;
#endif
  cpu::StepConfig cfg;
  cfg.threads = threads;
  cfg.norms = norms;
  cpu::step(kind, slots.data(), slots.size(), hyper, info, cfg);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  if (o.digest > 0) return run_digest(o.digest);
  cpu::set_speculation((cpu::Speculation)o.speculation);
#ifdef ADAMP_BENCH_AB
  if (o.ab && adamp_base_slot_size() != (int)sizeof(cpu::TensorSlot)) {
    fprintf(stderr, "bench_cpu_kernels: the base build's TensorSlot differs from this tree's (%d against %d bytes)\n",
            adamp_base_slot_size(), (int)sizeof(cpu::TensorSlot));
    return 2;
  }
#endif
  const std::vector<Tensor> ts = make_tensors(o);
  int64_t total = 0;
  for (const Tensor& t : ts) total += t.numel;

  // Each run steps its own p and state; g is shared (read-only). The floors are the registered
  // one-pass optimizers AdamW and SGD, without info norms.
  struct Algo {
    const char* name;
    OptKind kind;
    bool norms;
  };
  const Algo algos[] = {{"adamp", OptKind::AdamP, true},  {"adampNoNorms", OptKind::AdamP, false}, {"adam", OptKind::AdamW, false},
                        {"sgdp", OptKind::SGDP, true},    {"sgdpNoNorms", OptKind::SGDP, false},   {"sgd", OptKind::SGD, false}};
  constexpr int kAlgos = sizeof(algos) / sizeof(algos[0]);
  bool on[kAlgos];
  for (int k = 0; k < kAlgos; ++k) {
    on[k] = o.algos.empty() || ("," + o.algos + ",").find(std::string(",") + algos[k].name + ",") != std::string::npos;
  }
  // Run k + b * kAlgos: algorithm k on this tree's core (b 0) or the base build's (b 1, --ab).
  const int builds = o.ab ? 2 : 1;
  std::vector<std::vector<float>> store;
  store.reserve(ts.size() * 3 * kAlgos * builds);
  std::vector<cpu::TensorSlot> slots[2 * kAlgos];
  int first = -1;  // --same-memory: the run whose arrays every run uses
  for (int k = 0; k < kAlgos * builds; ++k) {
    if (!on[k % kAlgos]) continue;
    for (size_t i = 0; i < ts.size(); ++i) {
      const Tensor& t = ts[i];
      cpu::TensorSlot s;
      if (o.same_memory && first >= 0) {
        s = slots[first][i];
      } else {
        store.push_back(t.p);
        s.p = store.back().data();
        store.emplace_back((size_t)t.numel, 0.0f);
        s.state[0] = store.back().data();
        store.emplace_back((size_t)t.numel, 0.0f);
        s.state[1] = store.back().data();
      }
      s.g = t.g.data();
      s.numel = t.numel;
      s.channels = t.shape[0];
      s.outer = o.tf_layout ? t.numel / t.shape[0] : 1;
      s.inner = o.tf_layout ? 1 : t.numel / t.shape[0];
      s.eligible = t.shape.size() > 1;
      s.step = 0;
      slots[k].push_back(s);
    }
    if (first < 0) first = k;
  }
  std::vector<double> info(ts.size() * kInfoStride);
  // Wire order of each policy (native/include/adamp/optim/*.h).
  const double adamp_h[8] = {1e-6, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.1, 0};
  const double sgdp_h[8] = {1e-6, 0.9, 0.0, 0.0, 0, 1e-8, 0.1, 0.1};
  const double adamw_h[5] = {1e-6, 0.9, 0.999, 1e-8, 0.0};
  const double sgd_h[5] = {1e-6, 0.9, 0.0, 0.0, 0};
  auto hyper_of = [&](OptKind k) -> const double* {
    return k == OptKind::AdamP ? adamp_h : k == OptKind::SGDP ? sgdp_h : k == OptKind::AdamW ? adamw_h : sgd_h;
  };

  // Ratios: AdamP (norms on, off) / AdamW, SGDP (on, off) / SGD; per step, wall and process CPU time.
  const int pairs[4][2] = {{0, 2}, {1, 2}, {3, 5}, {4, 5}};
  const int warmup = 2;
  std::vector<double> ms[2 * kAlgos], cpums[2 * kAlgos], ratio[8], cpuratio[8], over_base[kAlgos];
  int projected = -1;
  for (int r = 0; r < o.steps + warmup; ++r) {
    double t[2 * kAlgos], c[2 * kAlgos];
    for (int k = 0; k < kAlgos; ++k) {
      if (!on[k]) continue;
      for (int i = 0; i < builds; ++i) {
        const int b = (i + r) % builds;  // --ab: this tree first on even steps, the base first on odd ones
        const int run = k + b * kAlgos;
        for (cpu::TensorSlot& s : slots[run]) s.step = r + 1;
        if (o.same_memory) {  // every step of every run from the same values, caches cold (untimed)
          for (size_t i = 0; i < ts.size(); ++i) {
            const cpu::TensorSlot& s = slots[run][i];
            memcpy(s.p, ts[i].p.data(), (size_t)ts[i].numel * sizeof(float));
            memset(s.state[0], 0, (size_t)ts[i].numel * sizeof(float));
            memset(s.state[1], 0, (size_t)ts[i].numel * sizeof(float));
          }
          evict_caches();  // as a training step's forward and backward passes would leave them
        }
        const double c0 = process_cpu_ms();
        const auto t0 = std::chrono::steady_clock::now();
        step_with(b == 1, algos[k].kind, slots[run], hyper_of(algos[k].kind), info.data(), o.threads, algos[k].norms, o.speculation);
        t[run] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        c[run] = process_cpu_ms() - c0;
        if (algos[k].kind == OptKind::SGDP && b == 0) {
          projected = 0;
          for (size_t i = 0; i < ts.size(); ++i) projected += is_projected((int)info[i * kInfoStride + kInfoDecision]);
        }
      }
    }
    if (r < warmup) continue;
    for (int k = 0; k < kAlgos * builds; ++k)
      if (on[k % kAlgos]) ms[k].push_back(t[k]), cpums[k].push_back(c[k]);
    for (int k = 0; k < kAlgos && builds == 2; ++k)
      if (on[k]) over_base[k].push_back(t[k] / t[k + kAlgos]);
    for (int b = 0; b < builds; ++b)
      for (int q = 0; q < 4; ++q)
        if (on[pairs[q][0]] && on[pairs[q][1]]) {
          const int x = pairs[q][0] + b * kAlgos, y = pairs[q][1] + b * kAlgos;
          ratio[q + 4 * b].push_back(t[x] / t[y]);
          cpuratio[q + 4 * b].push_back(c[x] / c[y]);
        }
  }
  printf("{\"set\":\"%s\",\"layout\":\"%s\",\"tensors\":%zu,\"numel\":%lld,\"threads\":%d,\"grads\":\"%s\",\"zeroRows\":%g,\"steps\":%d,"
         "\"simd\":\"%s\",\"speculation\":%d,\"sameMemory\":%s,\"projectedSgdp\":%d",
         o.shapes.empty() ? o.set.c_str() : "custom", o.tf_layout ? "tf" : "torch", ts.size(), (long long)total, o.threads, o.fire ? "fire" : "random",
         o.zero_rows, o.steps, cpu::simd_name(cpu::simd()), (int)cpu::speculation(), o.same_memory ? "true" : "false", projected);
  auto fmt = [](double x) {
    char b[32];
    if (std::isnan(x)) return std::string("null");
    snprintf(b, sizeof b, "%.4f", x);
    return std::string(b);
  };
  auto num = [&](const std::vector<double>& v) { return fmt(median(v)); };
  for (int k = 0; k < kAlgos; ++k) printf(",\"%sMs\":%s", algos[k].name, num(ms[k]).c_str());
  for (int k = 0; k < kAlgos; ++k) printf(",\"%sMinMs\":%s", algos[k].name, fmt(minimum(ms[k])).c_str());
  for (int k = 0; k < kAlgos; ++k) printf(",\"%sCpuMs\":%s", algos[k].name, num(cpums[k]).c_str());
  const char* rn[4] = {"adampOverAdam", "adampNoNormsOverAdam", "sgdpOverSgd", "sgdpNoNormsOverSgd"};
  for (int q = 0; q < 4; ++q) printf(",\"%s\":%s", rn[q], num(ratio[q]).c_str());
  for (int q = 0; q < 4; ++q) printf(",\"%sCpu\":%s", rn[q], num(cpuratio[q]).c_str());
  // The ratio of the fastest steps: the same comparison with the neighbours' bursts filtered out.
  for (int q = 0; q < 4; ++q) {
    const bool both = on[pairs[q][0]] && on[pairs[q][1]];
    printf(",\"%sOfMins\":%s", rn[q], both ? fmt(minimum(ms[pairs[q][0]]) / minimum(ms[pairs[q][1]])).c_str() : "null");
  }
  if (builds == 2) {
    for (int k = 0; k < kAlgos; ++k) printf(",\"%sBaseMs\":%s", algos[k].name, num(ms[k + kAlgos]).c_str());
    for (int q = 0; q < 4; ++q) printf(",\"%sBase\":%s", rn[q], num(ratio[q + 4]).c_str());
    for (int q = 0; q < 4; ++q) printf(",\"%sBaseCpu\":%s", rn[q], num(cpuratio[q + 4]).c_str());
    for (int k = 0; k < kAlgos; ++k) printf(",\"%sOverBaseMs\":%s", algos[k].name, num(over_base[k]).c_str());
  }
  printf("}\n");
  return 0;
}
