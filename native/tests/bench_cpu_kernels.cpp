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
//                     [--layout torch|tf]
//
// --zero-rows F gives a fraction F of every eligible tensor's rows an exactly zero gradient (the
// rows of an embedding the batch did not use). --layout tf stores every tensor with its first
// dimension innermost, as TensorFlow.js keeps a kernel's output channels (outer x channels x 1:
// the core's lanes layout); the default is PyTorch's (1 x channels x inner). Prints one JSON object: median ms/step per
// run and the medians of the per-step ratios AdamP/AdamW and SGDP/SGD, with the info norms on
// (adampOverAdam, sgdpOverSgd) and off (adampNoNormsOverAdam, sgdpNoNormsOverSgd).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
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
};

[[noreturn]] void usage(const char* why) {
  fprintf(stderr, "bench_cpu_kernels: %s\n", why);
  fprintf(stderr,
          "usage: bench_cpu_kernels [--set resnet50|gpt2-small] [--shapes AxB,...] [--threads N]\n"
          "                         [--grads fire|random] [--zero-rows F] [--steps N] [--shapes-file PATH]\n"
          "                         [--layout torch|tf]\n");
  exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? NAN : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
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
  std::vector<std::vector<float>> store;
  store.reserve(ts.size() * 3 * kAlgos);
  std::vector<cpu::TensorSlot> slots[kAlgos];
  for (int k = 0; k < kAlgos; ++k) {
    for (const Tensor& t : ts) {
      cpu::TensorSlot s;
      store.push_back(t.p);
      s.p = store.back().data();
      store.emplace_back((size_t)t.numel, 0.0f);
      s.state[0] = store.back().data();
      store.emplace_back((size_t)t.numel, 0.0f);
      s.state[1] = store.back().data();
      s.g = t.g.data();
      s.numel = t.numel;
      s.channels = t.shape[0];
      s.outer = o.tf_layout ? t.numel / t.shape[0] : 1;
      s.inner = o.tf_layout ? 1 : t.numel / t.shape[0];
      s.eligible = t.shape.size() > 1;
      s.step = 0;
      slots[k].push_back(s);
    }
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

  const int warmup = 2;
  std::vector<double> ms[kAlgos], ratio[4];
  int projected = 0;
  for (int r = 0; r < o.steps + warmup; ++r) {
    double t[kAlgos];
    for (int k = 0; k < kAlgos; ++k) {
      for (cpu::TensorSlot& s : slots[k]) s.step = r + 1;
      cpu::StepConfig cfg;
      cfg.threads = o.threads;
      cfg.norms = algos[k].norms;
      const auto t0 = std::chrono::steady_clock::now();
      cpu::step(algos[k].kind, slots[k].data(), slots[k].size(), hyper_of(algos[k].kind), info.data(), cfg);
      t[k] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      if (k == 3) {
        projected = 0;
        for (size_t i = 0; i < ts.size(); ++i) projected += is_projected((int)info[i * kInfoStride + kInfoDecision]);
      }
    }
    if (r < warmup) continue;
    for (int k = 0; k < kAlgos; ++k) ms[k].push_back(t[k]);
    ratio[0].push_back(t[0] / t[2]);
    ratio[1].push_back(t[1] / t[2]);
    ratio[2].push_back(t[3] / t[5]);
    ratio[3].push_back(t[4] / t[5]);
  }
  printf("{\"set\":\"%s\",\"layout\":\"%s\",\"tensors\":%zu,\"numel\":%lld,\"threads\":%d,\"grads\":\"%s\",\"zeroRows\":%g,\"steps\":%d,"
         "\"simd\":\"%s\",\"projectedSgdp\":%d",
         o.shapes.empty() ? o.set.c_str() : "custom", o.tf_layout ? "tf" : "torch", ts.size(), (long long)total, o.threads, o.fire ? "fire" : "random",
         o.zero_rows, o.steps, cpu::simd_name(cpu::simd()), projected);
  for (int k = 0; k < kAlgos; ++k) printf(",\"%sMs\":%.3f", algos[k].name, median(ms[k]));
  printf(",\"adampOverAdam\":%.4f,\"adampNoNormsOverAdam\":%.4f,\"sgdpOverSgd\":%.4f,\"sgdpNoNormsOverSgd\":%.4f}\n", median(ratio[0]),
         median(ratio[1]), median(ratio[2]), median(ratio[3]));
  return 0;
}
