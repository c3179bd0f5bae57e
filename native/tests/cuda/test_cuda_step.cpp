// The CUDA step of every registered optimizer (AdamP, SGDP, AdamW, SGD) against the host: many
// shapes, seeds and options, every compile-time variant of each policy (SGD's first step and
// Nesterov included), the reference fixtures (the official AdamP/SGDP code; PyTorch's AdamW/SGD
// when test/fixtures/torch is there), run-to-run determinism, one block against the full grid bit
// for bit over 200 steps, hyperparameters from device memory, info norms on request, the C API's
// refusals, device memory and external buffers.
//
// The host reference is a plain loop over the policies' element code (adamp/optim/*.h) and
// adamp/math.h's decision: the headers the CPU core and the kernels are written against.
// Exit codes: 0 pass, 1 failures, 77 no usable GPU (CTest reports it as skipped).
//
//   test_cuda_step [--fixtures DIR] [--quick | --sanitize | --tsan] [--seeds N] [--no-oom-probe]
// --sanitize: a small set that still reaches every item layout (compute-sanitizer slows kernels 10-100x);
// --tsan: smaller still, for the ThreadSanitizer build of the emulation;
// --seeds N: random seeds per case (default 3, 1 with --quick);
// --no-oom-probe (or ADAMP_TEST_NO_OOM_PROBE=1): skip the allocation larger than the device, which
//   compute-sanitizer reports as an API error.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../../cuda/adamp_cuda.h"
#include "adamp/half.h"
#include "adamp/optim/registry.h"
#include "mini_json.h"
#if !defined(ADAMP_CUDA_EMULATION)
#include <cuda_runtime.h>
#endif

namespace {

int g_failures = 0;
int g_checks = 0;

#define EXPECT(cond, ...)                                         \
  do {                                                            \
    ++g_checks;                                                   \
    if (!(cond)) {                                                \
      ++g_failures;                                               \
      std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);   \
      std::fprintf(stderr, __VA_ARGS__);                          \
      std::fprintf(stderr, "\n");                                 \
    }                                                             \
  } while (0)

#define CUDA_OK(call)                                                                            \
  do {                                                                                           \
    const int rc_ = (call);                                                                      \
    if (rc_ != 0) {                                                                              \
      std::fprintf(stderr, "FATAL %s:%d: %s -> %s (%d): %s\n", __FILE__, __LINE__, #call,         \
                   adamp_cuda_error_name(rc_), rc_, adamp_cuda_error_string(rc_));               \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

enum Mode { kQuick = 1, kSanitize = 2, kTsan = 4 };
int g_mode = 0;
bool has(int m) { return (g_mode & m) != 0; }

constexpr int kMaxSlots = 2;

/** A registered kind, as the C API reports it. */
struct Kind {
  int index;
  std::string name;
  int slots, nhyper;
  bool projects;
};

std::vector<Kind> kinds() {
  std::vector<Kind> out;
  for (int k = 0; k < adamp_cuda_kind_count(); ++k) {
    Kind x;
    x.index = k;
    x.name = adamp_cuda_kind_name(k);
    int projects = 0;
    adamp_cuda_kind_info(k, &x.slots, &x.nhyper, &projects);
    x.projects = projects != 0;
    out.push_back(x);
  }
  return out;
}

struct Tensor {
  std::vector<int64_t> shape;
  int channel_axis = 0;  // 0 = PyTorch, -1 = TensorFlow.js
  std::vector<float> p;
  std::vector<float> st[kMaxSlots];
  int64_t numel = 1, outer = 1, channels = 1, inner = 1;
  bool eligible = false;
  double step = 0;  // completed steps
};

void geometry(Tensor& t) {
  t.numel = 1;
  for (int64_t d : t.shape) t.numel *= d;
  t.eligible = t.shape.size() > 1;
  t.outer = 1;
  t.channels = 1;
  t.inner = t.numel;
  if (t.eligible) {
    const size_t ax = t.channel_axis < 0 ? t.shape.size() - 1 : (size_t)t.channel_axis;
    t.channels = t.shape[ax];
    for (size_t i = 0; i < ax; ++i) t.outer *= t.shape[i];
    t.inner = t.channels ? t.numel / (t.outer * t.channels) : 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Host reference: the policy's element code in a plain loop, two passes around adamp::decide.

/** Variants each kind's reference ran (bit v = variant v), to check coverage. */
uint32_t g_variants_seen[8];

template <class P>
void ref_step_policy(int kind, Tensor& t, const std::vector<float>& g, const double* hyper, double* info) {
  typename P::Hyper h;
  std::memcpy(&h, hyper, sizeof(h));
  t.step += 1;
  const typename P::Scalars s = P::scalars(h, t.step);
  g_variants_seen[kind] |= 1u << s.variant;
  const int64_t n = t.numel;
  double before = 0, after = 0, delta = 0;
  adamp::with_variant<P>(s.variant, [&](auto tag) {
    constexpr int V = decltype(tag)::value;
    bool done = false;
    if constexpr (P::kProjects) {
      if (t.eligible) {
        done = true;
        std::vector<adamp::ChannelSums> sums(t.channels);
        for (auto& x : sums) adamp::sums_zero(x);
        for (int64_t i = 0; i < n; ++i) {
          float e[P::kSlots];
          for (int k = 0; k < P::kSlots; ++k) e[k] = t.st[k][i];
          const float u = P::template update<V>(g[i], t.p[i], e, s);
          for (int k = 0; k < P::kSlots; ++k) t.st[k][i] = e[k];
          adamp::sums_accumulate(sums[(i / t.inner) % t.channels], g[i], t.p[i], u);
        }
        const adamp::DecisionParams dp = P::decision_params(h);
        const adamp::DecisionResult r = adamp::decide(sums.data(), t.channels, n, dp.delta, dp.wd_ratio, dp.eps);
        const float wdf = P::wd_factor(h, r.ratio);
        const bool proj = adamp::is_projected(r.code);
        for (int64_t i = 0; i < n; ++i) {
          float e[P::kSlots];
          for (int k = 0; k < P::kSlots; ++k) e[k] = t.st[k][i];
          float u = P::template stored<V>(g[i], e, s);
          const float p0 = t.p[i];
          if (proj) {
            const adamp::ProjCoef c = adamp::proj_coef_for(r, sums.data(), (i / t.inner) % t.channels, (float)dp.eps);
            u = adamp::project(u, p0, c.div, c.scale);
            if (P::writes_back(V)) t.st[0][i] = u;
          }
          const float p1 = P::apply(p0, u, wdf, s);
          t.p[i] = p1;
          after += (double)p1 * p1;
          delta += ((double)p1 - p0) * ((double)p1 - p0);
        }
        adamp::write_info(info, r, after, delta);
      }
    }
    if (!done) {
      const float wdf = P::wd_factor(h, 1.0);
      for (int64_t i = 0; i < n; ++i) {
        float e[P::kSlots];
        for (int k = 0; k < P::kSlots; ++k) e[k] = t.st[k][i];
        const float p0 = t.p[i];
        const float u = P::template update<V>(g[i], p0, e, s);
        const float p1 = P::apply(p0, u, wdf, s);
        for (int k = 0; k < P::kSlots; ++k) t.st[k][i] = e[k];
        t.p[i] = p1;
        before += (double)p0 * p0;
        after += (double)p1 * p1;
        delta += ((double)p1 - p0) * ((double)p1 - p0);
      }
      adamp::write_info_not_eligible(info, before, after, delta);
      if (!P::kProjects) info[adamp::kInfoDecision] = adamp::kDecisionNotApplicable;
    }
  });
}

void ref_step(const Kind& k, Tensor& t, const std::vector<float>& g, const std::vector<double>& hyper, double* info) {
  const bool found = adamp::with_policy((adamp::OptKind)k.index, [&](auto pol) {
    ref_step_policy<decltype(pol)>(k.index, t, g, hyper.data(), info);
  });
  if (!found) {
    std::fprintf(stderr, "FATAL: no policy for kind %d\n", k.index);
    std::exit(1);
  }
}

// ---------------------------------------------------------------------------------------------
// The GPU side of a case.

struct Gpu {
  adamp_cuda_ctx* ctx = nullptr;
  std::vector<int> ids;
  const Kind& kind;
  Gpu(const Kind& k, const std::vector<Tensor>& ts, const adamp_cuda_config* cfg) : kind(k) {
    CUDA_OK(adamp_cuda_create(&ctx, k.name.c_str(), 0, cfg));
    for (const Tensor& t : ts) {
      adamp_cuda_tensor_desc d = {t.numel, t.outer, t.channels, t.inner, t.eligible ? 1 : 0};
      int id = -1;
      CUDA_OK(adamp_cuda_add_tensor(ctx, &d, &id));
      ids.push_back(id);
      CUDA_OK(adamp_cuda_upload(ctx, id, ADAMP_CUDA_P, t.p.data(), t.numel));
      for (int s = 0; s < k.slots; ++s) CUDA_OK(adamp_cuda_upload(ctx, id, ADAMP_CUDA_STATE(s), t.st[s].data(), t.numel));
      CUDA_OK(adamp_cuda_set_step(ctx, id, (int64_t)t.step));
    }
  }
  ~Gpu() { adamp_cuda_destroy(ctx); }
  void download(std::vector<Tensor>& out) {
    for (size_t i = 0; i < out.size(); ++i) {
      CUDA_OK(adamp_cuda_download(ctx, ids[i], ADAMP_CUDA_P, out[i].p.data(), out[i].numel));
      for (int s = 0; s < kind.slots; ++s) CUDA_OK(adamp_cuda_download(ctx, ids[i], ADAMP_CUDA_STATE(s), out[i].st[s].data(), out[i].numel));
    }
  }
};

const char* decision_name(double d) {
  switch ((int)d) {
    case 0: return "none";
    case 1: return "channel";
    case 2: return "layer";
    case 3: return "not_eligible";
    case 4: return "not_applicable";
  }
  return "?";
}

double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (float x : a) m = std::fmax(m, std::fabs((double)x));
  return m;
}

/** max |a - b| <= tol_rel * scale (NaN must match NaN). */
bool close(const std::vector<float>& a, const std::vector<float>& b, double scale, double tol_rel, double* worst) {
  double w = 0;
  bool ok = a.size() == b.size();
  for (size_t i = 0; ok && i < a.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) {
      if (!(std::isnan(a[i]) && std::isnan(b[i]))) ok = false;
      continue;
    }
    if (std::isinf(a[i]) || std::isinf(b[i])) {
      if (a[i] != b[i]) ok = false;
      continue;
    }
    w = std::fmax(w, std::fabs((double)a[i] - b[i]));
  }
  if (worst) *worst = w;
  return ok && w <= tol_rel * scale + 1e-38;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

bool rel_close(double a, double b, double tol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::fabs(a - b) <= tol * std::fmax(std::fabs(a), std::fabs(b)) + 1e-300;
}

void compare_info(const char* what, size_t ti, const double* gi, const double* ri) {
  EXPECT(gi[0] == ri[0], "%s tensor %zu: decision gpu=%s ref=%s (max|cos| gpu %.9g ref %.9g, thr %.9g; layer %.9g / %.9g)",
         what, ti, decision_name(gi[0]), decision_name(ri[0]), gi[1], ri[1], ri[2], gi[3], ri[3]);
  // cos values: the same double sums in another order (parallel folds); the thresholds exact.
  const double cos_abs = 1e-6;
  EXPECT(rel_close(gi[1], ri[1], 1e-5) || std::fabs(gi[1] - ri[1]) < cos_abs, "%s tensor %zu: channel max|cos| %.9g vs %.9g", what, ti, gi[1], ri[1]);
  EXPECT(rel_close(gi[2], ri[2], 0), "%s tensor %zu: channel threshold %.9g vs %.9g", what, ti, gi[2], ri[2]);
  EXPECT(rel_close(gi[3], ri[3], 1e-5) || std::fabs(gi[3] - ri[3]) < cos_abs, "%s tensor %zu: layer |cos| %.9g vs %.9g", what, ti, gi[3], ri[3]);
  EXPECT(rel_close(gi[4], ri[4], 0), "%s tensor %zu: layer threshold %.9g vs %.9g", what, ti, gi[4], ri[4]);
  for (int f = 5; f < 8; ++f)
    EXPECT(rel_close(gi[f], ri[f], 1e-6) || std::fabs(gi[f] - ri[f]) < 1e-30, "%s tensor %zu: info[%d] %.17g vs %.17g", what, ti, f,
           gi[f], ri[f]);
}

/**
 * Whether the device must match the reference bit for bit: a one-pass optimizer runs the same
 * float32 operations; only the scalars' double pow (AdamW's bias corrections) may differ by an ulp
 * between the device's pow and the host's, so on a GPU that holds for SGD only.
 */
bool bitwise_expected(const Kind& k) {
#if defined(ADAMP_CUDA_EMULATION)
  return !k.projects;
#else
  return k.name == "sgd";
#endif
}

// ---------------------------------------------------------------------------------------------
// Hyperparameter presets per kind, in wire order (adamp/optim/<kind>.h `Hyper`).

std::vector<std::vector<double>> presets(const Kind& k) {
  if (k.name == "adamp")  // lr, beta1, beta2, eps, weightDecay, delta, wdRatio, nesterov
    return {{1e-3, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.1, 0},
            {1e-3, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.2, 1},
            {1e-3, 0.8, 0.99, 1e-6, 0, 3.0, 0.1, 0},
            {1e-2, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 1}};
  if (k.name == "sgdp")  // lr, momentum, dampening, weightDecay, nesterov, eps, delta, wdRatio
    return {{0.1, 0.9, 0, 1e-4, 0, 1e-8, 0.1, 0.1},
            {0.1, 0.9, 0, 1e-3, 1, 1e-8, 0.1, 0.1},
            {0.1, 0.5, 0.1, 0, 0, 1e-8, 3.0, 0.1},
            {0.1, 0, 0, 0.01, 0, 1e-6, 0.1, 0.1}};
  if (k.name == "adamw")  // lr, beta1, beta2, eps, weightDecay
    return {{1e-3, 0.9, 0.999, 1e-8, 0.01}, {1e-2, 0.9, 0.999, 1e-8, 0}, {1e-3, 0.8, 0.99, 1e-6, 0.1}, {0.5, 0.9, 0.999, 1e-8, 0.05}};
  if (k.name == "sgd")  // lr, momentum, dampening, weightDecay, nesterov: every reachable variant bit
    return {{0.1, 0, 0, 0, 0},        {0.1, 0, 0, 1e-3, 0},   {0.1, 0.9, 0, 0, 0},    {0.1, 0.9, 0, 1e-4, 0},
            {0.1, 0.9, 0, 0, 1},      {0.1, 0.9, 0, 1e-3, 1}, {0.05, 0.5, 0.1, 1e-2, 0}};
  std::fprintf(stderr, "FATAL: no presets for kind '%s': add them here\n", k.name.c_str());
  std::exit(1);
}

/** The variants a kind's presets reach (bit v = variant v). */
uint32_t reachable_variants(const Kind& k) {
  if (k.name == "sgd") {  // first step (4) with and without momentum; Nesterov (8) needs momentum
    uint32_t m = 0;
    for (int v : {0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 14, 15}) m |= 1u << v;
    return m;
  }
  if (k.name == "adamw") return 1u;
  return 3u;  // adamp, sgdp: 1 = Nesterov
}

// ---------------------------------------------------------------------------------------------
// Random cases.

enum GradKind { kRandom, kChannelOrth, kLayerOrth, kParallel, kZero, kZeroRow };

std::vector<float> make_grad(const Tensor& t, GradKind kind, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> g(t.numel);
  for (auto& x : g) x = nd(rng) * 0.1f;
  if (kind == kZero) std::fill(g.begin(), g.end(), 0.f);
  if (kind == kParallel)
    for (int64_t i = 0; i < t.numel; ++i) g[i] = 0.5f * t.p[i] + 1e-4f * g[i];
  if ((kind == kChannelOrth || kind == kLayerOrth) && t.numel > 0) {
    // Remove the radial part per channel (channel view) or over the whole tensor (layer view).
    const int64_t groups = kind == kChannelOrth ? t.channels : 1;
    std::vector<double> gp(groups, 0), pp(groups, 0);
    for (int64_t i = 0; i < t.numel; ++i) {
      const int64_t c = kind == kChannelOrth ? (i / t.inner) % t.channels : 0;
      gp[c] += (double)g[i] * t.p[i];
      pp[c] += (double)t.p[i] * t.p[i];
    }
    for (int64_t i = 0; i < t.numel; ++i) {
      const int64_t c = kind == kChannelOrth ? (i / t.inner) % t.channels : 0;
      if (pp[c] > 0) g[i] = (float)(g[i] - gp[c] / pp[c] * t.p[i]);
    }
  }
  if (kind == kZeroRow && t.eligible) {
    for (int64_t i = 0; i < t.numel; ++i)
      if ((i / t.inner) % t.channels == 0) g[i] = 0.f;
  }
  return g;
}

Tensor make_tensor(std::vector<int64_t> shape, int axis, std::mt19937_64& rng, const Kind& k, bool zero_weights = false) {
  Tensor t;
  t.shape = std::move(shape);
  t.channel_axis = axis;
  geometry(t);
  std::normal_distribution<float> nd(0.f, 1.f);
  t.p.resize(t.numel);
  for (auto& x : t.p) x = zero_weights ? 0.f : nd(rng);
  for (int s = 0; s < k.slots; ++s) t.st[s].assign(t.numel, 0.f);
  return t;
}

struct Shape {
  std::vector<int64_t> dims;
  int axis;
};

/** Shapes reaching every item layout: single chunks, whole rows, pieces of long rows, column tiles. */
const std::vector<Shape>& shapes() {
  static const std::vector<Shape> all = {
      {{64, 3, 7, 7}, 0},      {{64}, 0},            {{10, 20}, 0},        {{1, 16}, 0},        {{10, 1}, 0},
      {{7}, 0},                {{}, 0},              {{256, 64, 1, 1}, 0}, {{64, 64, 3, 3}, 0}, {{33, 37}, 0},
      {{3, 10001}, 0},         {{1, 70001}, 0},      {{20001, 1}, 0},      {{3, 3, 64, 128}, -1}, {{768, 3072}, -1},
      {{5, 7, 40}, 1},         {{3, 9, 35}, 1},      {{2048, 1000}, 0},    {{1000, 2048}, 0},   {{512, 512, 3, 3}, 0},
      {{50, 3, 5, 5}, 0},      {{4, 5}, 0},          {{8, 9}, 0},          {{130, 2, 3}, 0},
  };
  static const std::vector<Shape> small = {{{64, 3, 7, 7}, 0}, {{64}, 0},          {{10, 20}, 0}, {{1, 16}, 0},
                                           {{10, 1}, 0},       {{3, 3, 64, 128}, -1}, {{3, 10001}, 0}, {{5, 7, 40}, 1}};
  // --tsan: one tensor per item layout with several items each at chunk 256 (column tiles, whole
  // rows, pieces of a long row, single chunks).
  static const std::vector<Shape> tiny = {{{16, 3, 3, 3}, 0}, {{16}, 0}, {{3, 900}, 0}, {{12, 40}, 0}, {{40, 6}, -1}, {{}, 0}};
  return has(kTsan) ? tiny : has(kQuick) ? small : all;
}

const char* cfg_name(const adamp_cuda_config* c) { return c ? (c->chunk == 256 ? "chunk256" : "custom") : "default"; }

/** Steps `steps` times on the GPU and on the host reference and compares after every step. */
void run_random_case(const Kind& kind, uint64_t seed, size_t preset, const adamp_cuda_config* cfg) {
  std::mt19937_64 rng(seed);
  const std::vector<double> hyper = presets(kind)[preset];
  std::vector<Tensor> ts;
  for (const Shape& s : shapes()) ts.push_back(make_tensor(s.dims, s.axis, rng, kind, preset == 3 && ts.size() % 5 == 2));
  Gpu gpu(kind, ts, cfg);
  std::vector<Tensor> got = ts;
  const int steps = has(kTsan) ? 2 : 3;
  const GradKind gks[] = {kRandom, kChannelOrth, kLayerOrth, kParallel, kZero, kZeroRow};
  for (int st = 0; st < steps; ++st) {
    std::vector<std::vector<float>> grads(ts.size());
    std::vector<int> active;
    for (size_t i = 0; i < ts.size(); ++i) {
      grads[i] = make_grad(ts[i], gks[(i + st + preset) % 6], rng);
      if ((i + st) % 7 == 6) continue;  // no gradient this step: skipped entirely (its first step comes later)
      active.push_back(gpu.ids[i]);
      CUDA_OK(adamp_cuda_upload(gpu.ctx, gpu.ids[i], ADAMP_CUDA_G, grads[i].data(), ts[i].numel));
    }
    std::vector<double> ref_info(active.size() * 8), gpu_info(active.size() * 8);
    std::vector<Tensor> before = ts;
    size_t k = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      if ((i + st) % 7 == 6) continue;
      ref_step(kind, ts[i], grads[i], hyper, &ref_info[8 * k]);
      ++k;
    }
    CUDA_OK(adamp_cuda_step(gpu.ctx, active.data(), (int)active.size(), hyper.data(), (int)hyper.size()));
    CUDA_OK(adamp_cuda_info(gpu.ctx, active.data(), (int)active.size(), gpu_info.data()));
    gpu.download(got);
    char what[200];
    k = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      if ((i + st) % 7 == 6) continue;
      std::snprintf(what, sizeof(what), "%s seed %llu preset %zu [%s] step %d", kind.name.c_str(), (unsigned long long)seed,
                    preset, cfg_name(cfg), st + 1);
      compare_info(what, i, &gpu_info[8 * k], &ref_info[8 * k]);
      const double grad_scale = max_abs(grads[i]);
      double worst = 0;
      if (bitwise_expected(kind)) {
        EXPECT(same_bits(got[i].p, ts[i].p), "%s tensor %zu: p differs from the reference bitwise", what, i);
        for (int s = 0; s < kind.slots; ++s)
          EXPECT(same_bits(got[i].st[s], ts[i].st[s]), "%s tensor %zu: state %d differs from the reference bitwise", what, i, s);
      }
      const double sp = std::fmax(max_abs(ts[i].p), max_abs(before[i].p));
      EXPECT(close(got[i].p, ts[i].p, sp, 1e-6, &worst), "%s tensor %zu: p differs by %.3g (scale %.3g)", what, i, worst, sp);
      for (int s = 0; s < kind.slots; ++s) {
        // A buffer projected down to rounding noise (SGDP) is compared at its pre-projection size.
        const double sc = std::fmax(std::fmax(max_abs(ts[i].st[s]), max_abs(before[i].st[s])), s == 0 ? grad_scale : 0.0);
        EXPECT(close(got[i].st[s], ts[i].st[s], sc, 1e-6, &worst), "%s tensor %zu: state %d differs by %.3g (scale %.3g)", what, i, s,
               worst, sc);
      }
      ++k;
    }
    // Keep both sides on the same values so differences do not compound over steps.
    for (size_t i = 0; i < ts.size(); ++i) {
      ts[i].p = got[i].p;
      for (int s = 0; s < kind.slots; ++s) ts[i].st[s] = got[i].st[s];
    }
  }
}

/** Two fresh contexts, same inputs: every output bit identical. */
void run_determinism(const Kind& kind, const adamp_cuda_config* cfg) {
  std::mt19937_64 rng(1234);
  std::vector<Tensor> ts;
  for (const Shape& s : shapes()) ts.push_back(make_tensor(s.dims, s.axis, rng, kind));
  std::vector<std::vector<float>> grads;
  for (size_t i = 0; i < ts.size(); ++i) grads.push_back(make_grad(ts[i], (GradKind)(i % 6), rng));
  const std::vector<double> hyper = presets(kind)[0];
  std::vector<std::vector<float>> outs[2];
  std::vector<double> infos[2];
  for (int run = 0; run < 2; ++run) {
    Gpu gpu(kind, ts, cfg);
    for (int st = 0; st < 3; ++st) {
      for (size_t i = 0; i < ts.size(); ++i) CUDA_OK(adamp_cuda_upload(gpu.ctx, gpu.ids[i], ADAMP_CUDA_G, grads[i].data(), ts[i].numel));
      CUDA_OK(adamp_cuda_step(gpu.ctx, gpu.ids.data(), (int)gpu.ids.size(), hyper.data(), (int)hyper.size()));
    }
    infos[run].resize(ts.size() * 8);
    CUDA_OK(adamp_cuda_info(gpu.ctx, gpu.ids.data(), (int)gpu.ids.size(), infos[run].data()));
    std::vector<Tensor> got = ts;
    gpu.download(got);
    for (auto& t : got) {
      outs[run].push_back(t.p);
      for (int s = 0; s < kind.slots; ++s) outs[run].push_back(t.st[s]);
    }
  }
  bool same = std::memcmp(infos[0].data(), infos[1].data(), infos[0].size() * sizeof(double)) == 0;
  for (size_t i = 0; i < outs[0].size(); ++i) same = same && same_bits(outs[0][i], outs[1][i]);
  EXPECT(same, "%s [%s]: two runs of the same steps differ bitwise", kind.name.c_str(), cfg_name(cfg));
}

/**
 * One block against the full grid, bit for bit, over many steps with small items: every partial
 * has one writer and every fold a fixed order, so which block did which item (and when a pass-2
 * item found its decision ready) must not change a bit. On a GPU this exercises the cross-block
 * hand-off under real concurrency (the emulation runs 4 blocks).
 */
void run_one_block_vs_grid(const Kind& kind, int steps) {
  std::mt19937_64 rng(4242);
  std::vector<Tensor> ts;
  const std::vector<Shape> sh = {{{64, 3, 3, 3}, 0}, {{64}, 0},       {{10, 20}, 0},  {{3, 9, 35}, 1},
                                 {{3, 3, 16, 32}, -1}, {{1, 3000}, 0}, {{20, 1}, 0},   {{96, 40}, 0}};
  for (const Shape& s : sh) ts.push_back(make_tensor(s.dims, s.axis, rng, kind));
  adamp_cuda_config one = {256, 2048, 2, 0, 1}, full = {256, 2048, 2, 0, 0};
  Gpu a(kind, ts, &one), b(kind, ts, &full);
  const std::vector<std::vector<double>> ps = presets(kind);
  std::vector<double> ia(ts.size() * 8), ib(ts.size() * 8);
  int projected = 0;
  for (int st = 0; st < steps; ++st) {
    std::vector<int> active;
    for (size_t i = 0; i < ts.size(); ++i) {
      if ((i + st) % 5 == 4) continue;
      const std::vector<float> g = make_grad(ts[i], (GradKind)((i + st) % 4), rng);
      CUDA_OK(adamp_cuda_upload(a.ctx, a.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
      CUDA_OK(adamp_cuda_upload(b.ctx, b.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
      active.push_back((int)i);
    }
    const std::vector<double>& h = ps[(st / 10) % ps.size()];
    CUDA_OK(adamp_cuda_step(a.ctx, active.data(), (int)active.size(), h.data(), (int)h.size()));
    CUDA_OK(adamp_cuda_step(b.ctx, active.data(), (int)active.size(), h.data(), (int)h.size()));
    if (st % 50 == 49 || st == steps - 1) {
      CUDA_OK(adamp_cuda_info(a.ctx, active.data(), (int)active.size(), ia.data()));
      CUDA_OK(adamp_cuda_info(b.ctx, active.data(), (int)active.size(), ib.data()));
      EXPECT(std::memcmp(ia.data(), ib.data(), active.size() * 8 * sizeof(double)) == 0,
             "%s: one block and the full grid give different info records at step %d", kind.name.c_str(), st + 1);
      for (size_t j = 0; j < active.size(); ++j) projected += adamp::is_projected((int)ia[8 * j]) ? 1 : 0;
    }
  }
  std::vector<Tensor> ga = ts, gb = ts;
  a.download(ga);
  b.download(gb);
  bool same = true;
  for (size_t i = 0; i < ts.size(); ++i) {
    same = same && same_bits(ga[i].p, gb[i].p);
    for (int s = 0; s < kind.slots; ++s) same = same && same_bits(ga[i].st[s], gb[i].st[s]);
  }
  EXPECT(same, "%s: one block and the full grid differ bitwise after %d steps", kind.name.c_str(), steps);
  if (kind.projects) EXPECT(projected > 0, "%s: no projection fired in the one-block test (it would not test the hand-off)", kind.name.c_str());
}

/** More tensors than one launch holds (kMaxTensors = 168), steps repeated. */
void run_many_tensors(const Kind& kind) {
  std::mt19937_64 rng(99);
  std::vector<Tensor> ts;
  for (int i = 0; i < (has(kQuick) ? 180 : 300); ++i) {
    const int64_t c = 1 + (int64_t)(rng() % 96), k = 1 + (int64_t)(rng() % 200);
    if (i % 3 == 0) ts.push_back(make_tensor({c}, 0, rng, kind));
    else ts.push_back(make_tensor({c, k}, i % 5 == 0 ? -1 : 0, rng, kind));
  }
  adamp_cuda_config cfg = {1024, 4096, 2, 0, 0};
  Gpu gpu(kind, ts, &cfg);
  std::vector<Tensor> got = ts;
  const std::vector<double> hyper = presets(kind)[0];
  for (int st = 0; st < (has(kQuick) ? 2 : 4); ++st) {
    std::vector<double> ref_info(ts.size() * 8), gpu_info(ts.size() * 8);
    for (size_t i = 0; i < ts.size(); ++i) {
      std::vector<float> g = make_grad(ts[i], (GradKind)((i + st) % 4), rng);
      CUDA_OK(adamp_cuda_upload(gpu.ctx, gpu.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
      ref_step(kind, ts[i], g, hyper, &ref_info[8 * i]);
    }
    CUDA_OK(adamp_cuda_step(gpu.ctx, gpu.ids.data(), (int)gpu.ids.size(), hyper.data(), (int)hyper.size()));
    CUDA_OK(adamp_cuda_info(gpu.ctx, gpu.ids.data(), (int)gpu.ids.size(), gpu_info.data()));
    gpu.download(got);
    for (size_t i = 0; i < ts.size(); ++i) {
      char what[64];
      std::snprintf(what, sizeof(what), "%s many-tensors step %d", kind.name.c_str(), st + 1);
      compare_info(what, i, &gpu_info[8 * i], &ref_info[8 * i]);
      double worst = 0;
      EXPECT(close(got[i].p, ts[i].p, max_abs(ts[i].p), 1e-6, &worst), "%s tensor %zu: p differs by %.3g", what, i, worst);
      ts[i].p = got[i].p;
      for (int s = 0; s < kind.slots; ++s) ts[i].st[s] = got[i].st[s];
    }
  }
}

/**
 * Hyperparameters from device memory (a null `hyper` after adamp_cuda_set_hyper) and a step
 * without the info norms give the same params and state, bit for bit, as a plain step.
 */
void run_hyper_and_norms(const Kind& kind) {
  std::mt19937_64 rng(77);
  std::vector<Tensor> ts;
  for (const Shape& s : std::vector<Shape>{{{32, 3, 3, 3}, 0}, {{32}, 0}, {{4, 500}, 0}, {{12, 10}, -1}})
    ts.push_back(make_tensor(s.dims, s.axis, rng, kind));
  Gpu a(kind, ts, nullptr), b(kind, ts, nullptr);
  const std::vector<std::vector<double>> ps = presets(kind);
  EXPECT(adamp_cuda_step(b.ctx, b.ids.data(), (int)b.ids.size(), nullptr, 0) == ADAMP_CUDA_E_INVALID,
         "%s: a step from device hyperparameters that were never set is accepted", kind.name.c_str());
  std::vector<double> ia(ts.size() * 8), ib(ts.size() * 8);
  for (int st = 0; st < 3; ++st) {
    for (size_t i = 0; i < ts.size(); ++i) {
      const std::vector<float> g = make_grad(ts[i], (GradKind)((i + st) % 3), rng);
      CUDA_OK(adamp_cuda_upload(a.ctx, a.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
      CUDA_OK(adamp_cuda_upload(b.ctx, b.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
    }
    const std::vector<double>& h = ps[st % ps.size()];
    CUDA_OK(adamp_cuda_step(a.ctx, a.ids.data(), (int)a.ids.size(), h.data(), (int)h.size()));
    CUDA_OK(adamp_cuda_set_hyper(b.ctx, h.data(), (int)h.size()));
    CUDA_OK(adamp_cuda_step_ex(b.ctx, b.ids.data(), (int)b.ids.size(), nullptr, 0, ADAMP_CUDA_NO_NORMS));
  }
  CUDA_OK(adamp_cuda_info(a.ctx, a.ids.data(), (int)a.ids.size(), ia.data()));
  CUDA_OK(adamp_cuda_info(b.ctx, b.ids.data(), (int)b.ids.size(), ib.data()));
  std::vector<Tensor> ga = ts, gb = ts;
  a.download(ga);
  b.download(gb);
  for (size_t i = 0; i < ts.size(); ++i) {
    bool same = same_bits(ga[i].p, gb[i].p);
    for (int s = 0; s < kind.slots; ++s) same = same && same_bits(ga[i].st[s], gb[i].st[s]);
    EXPECT(same, "%s tensor %zu: device hyperparameters / no norms step differently", kind.name.c_str(), i);
    for (int f = 0; f < 5; ++f)
      EXPECT(std::memcmp(&ia[8 * i + f], &ib[8 * i + f], sizeof(double)) == 0, "%s tensor %zu: info[%d] depends on the norms flag",
             kind.name.c_str(), i, f);
    const bool decided = adamp::is_projected((int)ia[8 * i]) || (int)ia[8 * i] == adamp::kDecisionNone;
    EXPECT(std::isfinite(ia[8 * i + 5]) && std::isfinite(ia[8 * i + 6]) && std::isfinite(ia[8 * i + 7]),
           "%s tensor %zu: norms missing when asked for", kind.name.c_str(), i);
    if (decided) EXPECT(ib[8 * i + 5] == ia[8 * i + 5], "%s tensor %zu: the decision's ||p||^2 is not reported without norms", kind.name.c_str(), i);
    else EXPECT(std::isnan(ib[8 * i + 5]), "%s tensor %zu: ||p||^2 before computed although norms were off", kind.name.c_str(), i);
    EXPECT(std::isnan(ib[8 * i + 6]) && std::isnan(ib[8 * i + 7]), "%s tensor %zu: norms computed although they were off", kind.name.c_str(), i);
  }
}

#if !defined(ADAMP_CUDA_EMULATION)
/** A step captured in a CUDA graph from device hyperparameters replays with the lr set before each replay. */
void run_graph_replay(const Kind& kind) {
  std::mt19937_64 rng(5);
  std::vector<Tensor> ts;
  for (const Shape& s : std::vector<Shape>{{{32, 3, 3, 3}, 0}, {{32}, 0}, {{4, 500}, 0}}) ts.push_back(make_tensor(s.dims, s.axis, rng, kind));
  Gpu a(kind, ts, nullptr), b(kind, ts, nullptr);
  for (size_t i = 0; i < ts.size(); ++i) {
    const std::vector<float> g = make_grad(ts[i], kChannelOrth, rng);
    CUDA_OK(adamp_cuda_upload(a.ctx, a.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
    CUDA_OK(adamp_cuda_upload(b.ctx, b.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
  }
  std::vector<double> h = presets(kind)[0];
  CUDA_OK(adamp_cuda_set_hyper(b.ctx, h.data(), (int)h.size()));
  CUDA_OK(adamp_cuda_sync(b.ctx));
  cudaStream_t s = static_cast<cudaStream_t>(adamp_cuda_stream(b.ctx));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  bool ok = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
  if (ok) ok = adamp_cuda_step(b.ctx, b.ids.data(), (int)b.ids.size(), nullptr, 0) == 0;
  ok = cudaStreamEndCapture(s, &graph) == cudaSuccess && ok;
  ok = ok && cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
  EXPECT(ok, "%s: capturing a step in a CUDA graph failed", kind.name.c_str());
  if (!ok) return;
  for (double lr : {1e-3, 5e-3, 2e-2}) {
    h[0] = lr;
    CUDA_OK(adamp_cuda_step(a.ctx, a.ids.data(), (int)a.ids.size(), h.data(), (int)h.size()));
    CUDA_OK(adamp_cuda_set_hyper(b.ctx, h.data(), (int)h.size()));
    CUDA_OK(cudaGraphLaunch(exec, s));
  }
  std::vector<Tensor> ga = ts, gb = ts;
  a.download(ga);
  b.download(gb);
  for (size_t i = 0; i < ts.size(); ++i)
    EXPECT(same_bits(ga[i].p, gb[i].p), "%s tensor %zu: a replayed graph does not use the lr set before the replay", kind.name.c_str(), i);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}
#endif

/** The C API refuses what would corrupt a step, and says so with ADAMP_CUDA_E_INVALID. */
void run_api_checks() {
  adamp_cuda_ctx* ctx = nullptr;
  EXPECT(adamp_cuda_create(&ctx, "adam", 0, nullptr) == ADAMP_CUDA_E_INVALID && ctx == nullptr, "an unknown kind is accepted");
  EXPECT(adamp_cuda_kind_of("sgd") >= 0 && adamp_cuda_kind_of("nope") == -1, "kind lookup");
  for (const Kind& k : kinds()) {
    CUDA_OK(adamp_cuda_create(&ctx, k.name.c_str(), 0, nullptr));
    EXPECT(adamp_cuda_kind(ctx) == k.index, "%s: the context reports another kind", k.name.c_str());
    adamp_cuda_tensor_desc d = {12, 1, 3, 4, 1};
    int id = -1;
    CUDA_OK(adamp_cuda_add_tensor(ctx, &d, &id));
    adamp_cuda_tensor_desc bad = {12, 1, 5, 4, 1};  // 1 x 5 x 4 != 12
    int id2 = -1;
    EXPECT(adamp_cuda_add_tensor(ctx, &bad, &id2) == ADAMP_CUDA_E_INVALID, "a desc whose geometry does not match numel is accepted");
    std::vector<float> x(12, 1.f), y(11, 1.f);
    EXPECT(adamp_cuda_upload(ctx, id, ADAMP_CUDA_P, y.data(), 11) == ADAMP_CUDA_E_INVALID, "an upload of the wrong size is accepted");
    EXPECT(adamp_cuda_upload(ctx, id + 1, ADAMP_CUDA_P, x.data(), 12) == ADAMP_CUDA_E_INVALID, "an upload to an unknown id is accepted");
    EXPECT(adamp_cuda_upload(ctx, id, ADAMP_CUDA_STATE(k.slots), x.data(), 12) == ADAMP_CUDA_E_INVALID,
           "%s: an upload to state slot %d (it has %d) is accepted", k.name.c_str(), k.slots, k.slots);
    EXPECT(adamp_cuda_device_ptr(ctx, id, ADAMP_CUDA_STATE(k.slots - 1)) != nullptr, "%s: the last state slot has no buffer", k.name.c_str());
    EXPECT(adamp_cuda_device_ptr(ctx, id, ADAMP_CUDA_STATE(k.slots)) == nullptr, "%s: a state slot past the last has a buffer", k.name.c_str());
    std::vector<double> h = presets(k)[0];
    const int dup[2] = {id, id};
    EXPECT(adamp_cuda_step(ctx, dup, 2, h.data(), (int)h.size()) == ADAMP_CUDA_E_INVALID, "a step naming a tensor twice is accepted");
    EXPECT(adamp_cuda_step(ctx, &id, 1, h.data(), (int)h.size() - 1) == ADAMP_CUDA_E_INVALID, "%s: a short hyperparameter array is accepted", k.name.c_str());
    int field = 7;
    const char* why = nullptr;
    std::vector<double> wrong = h;
    wrong[0] = -1.0;  // every policy's lr: finite and >= 0
    EXPECT(adamp_cuda_step(ctx, &id, 1, wrong.data(), (int)wrong.size()) == ADAMP_CUDA_E_INVALID, "%s: lr = -1 is accepted", k.name.c_str());
    EXPECT(adamp_cuda_check_hyper(k.index, wrong.data(), (int)wrong.size(), &field, &why) == ADAMP_CUDA_E_INVALID && field == 0 && why,
           "%s: the check does not name lr (field %d)", k.name.c_str(), field);
    wrong[0] = NAN;
    EXPECT(adamp_cuda_step(ctx, &id, 1, wrong.data(), (int)wrong.size()) == ADAMP_CUDA_E_INVALID, "%s: lr = NaN is accepted", k.name.c_str());
    EXPECT(adamp_cuda_check_hyper(k.index, h.data(), (int)h.size(), &field, &why) == 0, "%s: a valid preset is refused", k.name.c_str());
    adamp_cuda_destroy(ctx);
  }
}

/** Device memory, external (bound) buffers, strided copies and streams (device_memory.cu). */
void run_device_memory_checks(bool oom_probe) {
  adamp_cuda_drain_frees();
  adamp_cuda_memory_stats before, now;
  adamp_cuda_get_memory_stats(&before);
  // Strided copies: a 4x6 tensor stored column-major (strides {1, 4}).
  const int64_t shape[2] = {4, 6}, colmajor[2] = {1, 4};
  std::vector<float> host(24), back(24), raw(24);
  for (int i = 0; i < 24; ++i) host[i] = (float)i - 3.5f;
  void* buf = nullptr;
  CUDA_OK(adamp_cuda_alloc(0, 24 * sizeof(float), nullptr, &buf));
  int kind = -1, dev = -1;
  CUDA_OK(adamp_cuda_pointer_info(buf, &kind, &dev));
  EXPECT(kind == 2 && dev == 0, "an allocation is not reported as device memory of device 0 (kind %d, device %d)", kind, dev);
  float* f = static_cast<float*>(buf);
  CUDA_OK(adamp_cuda_copy_to_host(0, raw.data(), f, shape, nullptr, 2, nullptr));
  EXPECT(raw == std::vector<float>(24, 0.f), "adamp_cuda_alloc's memory is not zeroed in stream order");
  CUDA_OK(adamp_cuda_copy_to_device(0, f, shape, colmajor, 2, host.data(), nullptr));
  CUDA_OK(adamp_cuda_copy_to_host(0, back.data(), f, shape, colmajor, 2, nullptr));
  CUDA_OK(adamp_cuda_copy_to_host(0, raw.data(), f, shape, nullptr, 2, nullptr));
  bool same = true, transposed = true;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 6; ++j) {
      same = same && back[i * 6 + j] == host[i * 6 + j];
      transposed = transposed && raw[j * 4 + i] == host[i * 6 + j];
    }
  EXPECT(same, "a strided view does not round-trip");
  EXPECT(transposed, "a column-major view is not stored column-major");
  // Out of memory: an error, and nothing counted.
  if (oom_probe) {
    size_t free_b = 0, total_b = 0;
    CUDA_OK(adamp_cuda_mem_info(0, &free_b, &total_b));
    void* huge = nullptr;
    adamp_cuda_memory_stats mid;
    adamp_cuda_get_memory_stats(&mid);
    EXPECT(adamp_cuda_alloc(0, (int64_t)total_b + ((int64_t)1 << 30), nullptr, &huge) == 2 && huge == nullptr,
           "an allocation beyond the device's memory succeeded");
    adamp_cuda_get_memory_stats(&now);
    EXPECT(now.live_allocations == mid.live_allocations && now.live_bytes == mid.live_bytes, "a failed allocation was counted");
  } else {
    std::printf("SKIP out-of-memory probe: --no-oom-probe / ADAMP_TEST_NO_OOM_PROBE (compute-sanitizer reports the failed cudaMalloc as an error)\n");
  }
  EXPECT(adamp_cuda_pointer_info(f, &kind, &dev) == 0, "pointer info");

  // A tensor whose p and g are the caller's buffers steps exactly like one the context owns.
  for (const Kind& k : kinds()) {
    adamp_cuda_tensor_desc d = {24, 1, 4, 6, 1};
    std::vector<float> p0(24), g0(24), a(24), b(24);
    for (int i = 0; i < 24; ++i) {
      p0[i] = std::sin(0.7f * i);
      g0[i] = 0.1f * std::cos(1.3f * i);
    }
    adamp_cuda_ctx *own = nullptr, *ext = nullptr;
    CUDA_OK(adamp_cuda_create(&own, k.name.c_str(), 0, nullptr));
    CUDA_OK(adamp_cuda_create(&ext, k.name.c_str(), 0, nullptr));
    int i1 = -1, i2 = -1;
    CUDA_OK(adamp_cuda_add_tensor(own, &d, &i1));
    CUDA_OK(adamp_cuda_add_tensor_ex(ext, &d, ADAMP_CUDA_EXTERNAL_P | ADAMP_CUDA_EXTERNAL_G, &i2));
    EXPECT(adamp_cuda_bind(ext, i2, ADAMP_CUDA_STATE(0), f) == ADAMP_CUDA_E_INVALID, "binding a state buffer is accepted");
    EXPECT(adamp_cuda_bind(own, i1, ADAMP_CUDA_P, f) == ADAMP_CUDA_E_INVALID, "binding a buffer the context owns is accepted");
    EXPECT(adamp_cuda_bind(ext, i2, ADAMP_CUDA_P, reinterpret_cast<float*>(reinterpret_cast<char*>(f) + 2)) == ADAMP_CUDA_E_INVALID,
           "binding a buffer that is not 4-byte aligned is accepted");
    void *pb = nullptr, *gb = nullptr;
    CUDA_OK(adamp_cuda_alloc(0, 24 * sizeof(float), nullptr, &pb));
    CUDA_OK(adamp_cuda_alloc(0, 24 * sizeof(float), nullptr, &gb));
    CUDA_OK(adamp_cuda_copy_to_device(0, static_cast<float*>(pb), shape, nullptr, 2, p0.data(), nullptr));
    CUDA_OK(adamp_cuda_copy_to_device(0, static_cast<float*>(gb), shape, nullptr, 2, g0.data(), nullptr));
    CUDA_OK(adamp_cuda_bind(ext, i2, ADAMP_CUDA_P, static_cast<float*>(pb)));
    CUDA_OK(adamp_cuda_bind(ext, i2, ADAMP_CUDA_G, static_cast<float*>(gb)));
    CUDA_OK(adamp_cuda_upload(own, i1, ADAMP_CUDA_P, p0.data(), 24));
    CUDA_OK(adamp_cuda_upload(own, i1, ADAMP_CUDA_G, g0.data(), 24));
    // The external context queues on the other context's stream: a caller's stream.
    CUDA_OK(adamp_cuda_set_stream(ext, adamp_cuda_stream(own)));
    EXPECT(adamp_cuda_stream(ext) == adamp_cuda_stream(own), "set_stream did not take");
    const std::vector<double> h = presets(k)[1];
    for (int s = 0; s < 3; ++s) {
      CUDA_OK(adamp_cuda_step(own, &i1, 1, h.data(), (int)h.size()));
      CUDA_OK(adamp_cuda_step(ext, &i2, 1, h.data(), (int)h.size()));
    }
    void* ev = nullptr;
    CUDA_OK(adamp_cuda_record(ext, &ev));
    CUDA_OK(adamp_cuda_event_wait(ev));
    CUDA_OK(adamp_cuda_set_stream(ext, nullptr));
    CUDA_OK(adamp_cuda_download(own, i1, ADAMP_CUDA_P, a.data(), 24));
    CUDA_OK(adamp_cuda_copy_to_host(0, b.data(), static_cast<const float*>(pb), shape, nullptr, 2, nullptr));
    EXPECT(same_bits(a, b), "%s: external buffers step differently from owned ones", k.name.c_str());
    EXPECT(a != p0, "%s: the step did not move the params", k.name.c_str());
    adamp_cuda_destroy(ext);  // must not free the caller's buffers
    adamp_cuda_drain_frees();
    CUDA_OK(adamp_cuda_copy_to_host(0, b.data(), static_cast<const float*>(pb), shape, nullptr, 2, nullptr));
    EXPECT(same_bits(a, b), "%s: destroying a context changed an external buffer", k.name.c_str());
    adamp_cuda_destroy(own);
    CUDA_OK(adamp_cuda_free(0, pb));
    CUDA_OK(adamp_cuda_free(0, gb));
  }
  CUDA_OK(adamp_cuda_free(0, buf));
  adamp_cuda_get_memory_stats(&now);
  EXPECT(now.live_allocations == before.live_allocations && now.live_bytes == before.live_bytes,
         "device allocations leaked: %lld live (%lld bytes) after, %lld (%lld) before", (long long)now.live_allocations,
         (long long)now.live_bytes, (long long)before.live_allocations, (long long)before.live_bytes);
  EXPECT(now.total_allocations > before.total_allocations + 8, "allocations were not counted");
  adamp_cuda_drain_frees();
}

// ---------------------------------------------------------------------------------------------
// Reference fixtures: test/fixtures/<case>.json + .f32 (the official AdamP/SGDP code) and
// test/fixtures/torch/optim/<case>.json + .f32 (torch.optim.AdamW / SGD), same binary layout.

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

const Kind* kind_named(const std::string& name) {
  static const std::vector<Kind> all = kinds();
  for (const Kind& k : all)
    if (k.name == name) return &k;
  return nullptr;
}

/** The wire array of a kind from a PyTorch-named options object (absent keys: `dflt`'s values). */
std::vector<double> wire_from(const Kind& k, const mini_json::Value& o, const std::vector<double>& dflt) {
  std::vector<double> h = dflt;
  const auto num = [&](const char* key, double d) { return o.has(key) ? o[key].number(d) : d; };
  if (k.name == "adamp" || k.name == "adamw") {
    h[0] = num("lr", h[0]);
    if (o.has("betas")) {
      h[1] = o["betas"][0].number();
      h[2] = o["betas"][1].number();
    }
    h[3] = num("eps", h[3]);
    h[4] = num("weight_decay", h[4]);
    if (k.name == "adamp") {
      h[5] = num("delta", h[5]);
      h[6] = num("wd_ratio", h[6]);
      h[7] = num("nesterov", h[7]);
    }
  } else {  // sgdp, sgd: lr, momentum, dampening, weight_decay, nesterov (then eps, delta, wd_ratio)
    h[0] = num("lr", h[0]);
    h[1] = num("momentum", h[1]);
    h[2] = num("dampening", h[2]);
    h[3] = num("weight_decay", h[3]);
    h[4] = num("nesterov", h[4]);
    if (k.name == "sgdp") {
      h[5] = num("eps", h[5]);
      h[6] = num("delta", h[6]);
      h[7] = num("wd_ratio", h[7]);
    }
  }
  return h;
}

/** PyTorch's defaults and the official code's, in wire order. */
std::vector<double> defaults(const Kind& k) {
  if (k.name == "adamp") return {1e-3, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 0};
  if (k.name == "adamw") return {1e-3, 0.9, 0.999, 1e-8, 1e-2};
  if (k.name == "sgdp") return {0, 0, 0, 0, 0, 1e-8, 0.1, 0.1};
  return {0, 0, 0, 0, 0};
}

/** State slot names in the fixtures, per kind. */
std::vector<std::string> slot_names(const Kind& k) {
  if (k.name == "adamp" || k.name == "adamw") return {"exp_avg", "exp_avg_sq"};
  if (k.name == "sgdp") return {"momentum"};
  return {"momentum_buffer"};
}

/** Runs one fixture; returns false when it cannot be read. */
bool run_fixture(const std::string& dir, const std::string& name, int* bitwise_tensors, int* tensors) {
  std::string js, bin;
  if (!read_file(dir + "/" + name + ".json", js) || !read_file(dir + "/" + name + ".f32", bin)) return false;
  const mini_json::Value c = mini_json::parse(js);
  const float* data = reinterpret_cast<const float*>(bin.data());
  const int64_t nfloats = (int64_t)(bin.size() / 4);
  auto slice = [&](const mini_json::Value& r) {
    const int64_t off = (int64_t)r[0].number(), len = (int64_t)r[1].number();
    if (off < 0 || off + len > nfloats) throw std::runtime_error("fixture slice out of range");
    return std::vector<float>(data + off, data + off + len);
  };
  const Kind* kp = kind_named(c["optimizer"].str);
  if (!kp) {
    EXPECT(false, "fixture %s: unknown optimizer '%s'", name.c_str(), c["optimizer"].str.c_str());
    return true;
  }
  const Kind& k = *kp;
  const std::vector<double> base = wire_from(k, c["hyperparameters"], defaults(k));
  // Param groups (PyTorch fixtures): each param's group options; else one group.
  std::vector<std::vector<double>> hyper_of(c["params"].size(), base);
  std::vector<int> group_of(c["params"].size(), 0);
  int ngroups = 1;
  if (c.has("groups")) {
    ngroups = (int)c["groups"].size();
    for (int gi = 0; gi < ngroups; ++gi) {
      const mini_json::Value& grp = c["groups"][gi];
      const std::vector<double> h = wire_from(k, grp["resolved"], base);
      for (const auto& pi : grp["params"].arr) {
        hyper_of[(size_t)pi.number()] = h;
        group_of[(size_t)pi.number()] = gi;
      }
    }
  }
  std::vector<Tensor> ts;
  for (size_t i = 0; i < c["params"].size(); ++i) {
    Tensor t;
    for (const auto& d : c["params"][i]["shape"].arr) t.shape.push_back((int64_t)d.number());
    geometry(t);
    t.p = slice(c["params"][i]["data"]);
    for (int s = 0; s < k.slots; ++s) t.st[s].assign(t.numel, 0.f);
    ts.push_back(t);
  }
  Gpu gpu(k, ts, nullptr);
  std::vector<Tensor> got = ts;
  const std::vector<std::string> slots = slot_names(k);
  for (size_t st = 0; st < c["steps"].size(); ++st) {
    std::vector<size_t> which;
    double gmax = 0;
    for (int gi = 0; gi < ngroups; ++gi) {
      std::vector<int> active;
      for (size_t i = 0; i < ts.size(); ++i) {
        const mini_json::Value& gr = c["grads"][st][i];
        if (group_of[i] != gi || gr.is_null()) continue;
        const std::vector<float> g = slice(gr);
        gmax = std::fmax(gmax, max_abs(g));
        CUDA_OK(adamp_cuda_upload(gpu.ctx, gpu.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
        active.push_back(gpu.ids[i]);
        which.push_back(i);
      }
      if (active.empty()) continue;
      const std::vector<double>& h = hyper_of[which.back()];
      CUDA_OK(adamp_cuda_step(gpu.ctx, active.data(), (int)active.size(), h.data(), (int)h.size()));
    }
    std::vector<int> ids;
    for (size_t i : which) ids.push_back(gpu.ids[i]);
    std::vector<double> info(ids.size() * 8);
    CUDA_OK(adamp_cuda_info(gpu.ctx, ids.data(), (int)ids.size(), info.data()));
    std::vector<Tensor> before = got;
    gpu.download(got);
    for (size_t a = 0; a < which.size(); ++a) {
      const size_t i = which[a];
      const mini_json::Value& e = c["steps"][st]["params"][i];
      char what[200];
      std::snprintf(what, sizeof(what), "fixture %s step %zu param %zu", name.c_str(), st + 1, i);
      if (e.has("projection")) EXPECT(e["projection"].str == decision_name(info[8 * a]), "%s: decision %s, expected %s", what,
                                      decision_name(info[8 * a]), e["projection"].str.c_str());
      else EXPECT((int)info[8 * a] == adamp::kDecisionNotApplicable, "%s: decision %s", what, decision_name(info[8 * a]));
      const std::vector<float> ep = slice(e["data"]);
      double worst = 0;
      const double sp = std::fmax(max_abs(ep), max_abs(before[i].p));
      EXPECT(close(got[i].p, ep, sp, 1e-6, &worst), "%s: p differs by %.3g (scale %.3g)", what, worst, sp);
      bool bits = same_bits(got[i].p, ep);
      const mini_json::Value& s = e["state"];
      for (int sl = 0; sl < k.slots; ++sl) {
        if (!s.has(slots[sl]) || s[slots[sl]].is_null()) continue;  // PyTorch keeps no buffer without momentum
        const std::vector<float> es = slice(s[slots[sl]]);
        // The buffer can be projected down to rounding noise: compare against its pre-projection size.
        const double sm = std::fmax(std::fmax(max_abs(es), max_abs(before[i].st[sl])), sl == 0 ? gmax : 0.0);
        EXPECT(close(got[i].st[sl], es, sm, 1e-6, &worst), "%s: %s differs by %.3g (scale %.3g)", what, slots[sl].c_str(), worst, sm);
        bits = bits && same_bits(got[i].st[sl], es);
      }
      *bitwise_tensors += bits ? 1 : 0;
      *tensors += 1;
    }
  }
  return true;
}

void run_fixtures(const std::string& dir) {
  const char* official[] = {"adamp_conv_bias_wd",          "adamp_custom_delta_eps_betas", "adamp_edge_zeros_tiny",
                            "adamp_nesterov_linear_layer", "sgdp_1x1conv_nesterov",        "sgdp_buffer_projection_dampening",
                            "sgdp_momentum0_wd0_nullgrads", "sgdp_tiny_grads_eps"};
  int bits = 0, n = 0;
  for (const char* c : official) {
    if (!run_fixture(dir, c, &bits, &n)) {
      EXPECT(false, "fixture %s: cannot read %s/%s.{json,f32} (pass --fixtures DIR)", c, dir.c_str(), c);
    }
  }
  std::printf("official AdamP/SGDP fixtures: done (%d of %d param steps bit-identical)\n", bits, n);
  const char* torch_cases[] = {"adamw_custom_wd0",  "adamw_defaults",  "adamw_large_lr_scales", "adamw_param_groups",
                               "sgd_momentum",      "sgd_momentum_dampening_wd", "sgd_momentum_scales", "sgd_nesterov_wd",
                               "sgd_param_groups",  "sgd_plain",       "sgd_weight_decay"};
  const std::string tdir = dir + "/torch/optim";
  std::string probe;
  if (!read_file(tdir + "/sgd_plain.json", probe)) {
    std::printf("SKIP PyTorch AdamW/SGD fixtures: %s/sgd_plain.json not found (they come with scripts/gen-torch-fixtures.py)\n",
                tdir.c_str());
    return;
  }
  bits = n = 0;
  for (const char* c : torch_cases)
    if (!run_fixture(tdir, c, &bits, &n)) EXPECT(false, "fixture %s: cannot read %s/%s.{json,f32}", c, tdir.c_str(), c);
  std::printf("PyTorch AdamW/SGD fixtures: done (%d of %d param steps bit-identical)\n", bits, n);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Mixed precision and loss scaling on the device: bfloat16 params and grads (master weights with
// nearest or stochastic rounding, or none), the found-inf check, the skip and the scale update,
// on one block and on the full grid (the emulation runs blocks concurrently), against the float32
// kernels stepping the same float32 values (lib/optimizer.ts's staging, done here on the host).

// The conversions of native/include/adamp/half.h (the kernels' own), on floats.
using adamp::half::bits_f32;
using adamp::half::f32_bits;
using adamp::half::fmix32;
uint16_t bf16_rne(float x) { return (uint16_t)adamp::half::bf16_rne(f32_bits(x)); }
float bf16_widen(uint16_t h) { return adamp::half::bf16_widen(h); }
uint16_t bf16_stochastic(float x, uint32_t key, uint32_t i) { return (uint16_t)adamp::half::bf16_stochastic(f32_bits(x), key, i); }

struct MixedCtx {
  adamp_cuda_ctx* ctx = nullptr;
  std::vector<int> ids;
  std::vector<void*> p16, g16;
  void* scaler = nullptr;
  MixedCtx(const Kind& k, const std::vector<Tensor>& ts, const adamp_cuda_config* cfg, const std::vector<uint16_t>* bits, float scale) {
    CUDA_OK(adamp_cuda_create(&ctx, k.name.c_str(), 0, cfg));
    for (size_t i = 0; i < ts.size(); ++i) {
      const Tensor& t = ts[i];
      adamp_cuda_tensor_desc d = {t.numel, t.outer, t.channels, t.inner, t.eligible ? 1 : 0};
      int id = -1;
      CUDA_OK(adamp_cuda_add_tensor_ex(ctx, &d, ADAMP_CUDA_EXTERNAL_P | ADAMP_CUDA_EXTERNAL_G, &id));
      ids.push_back(id);
      void *p = nullptr, *g = nullptr;
      CUDA_OK(adamp_cuda_alloc(0, t.numel * 2, nullptr, &p));
      CUDA_OK(adamp_cuda_alloc(0, t.numel * 2, nullptr, &g));
      p16.push_back(p);
      g16.push_back(g);
      CUDA_OK(adamp_cuda_set_storage(ctx, id, storage(i), 77, (uint32_t)i));
      CUDA_OK(adamp_cuda_bind(ctx, id, ADAMP_CUDA_P, static_cast<float*>(p)));
      CUDA_OK(adamp_cuda_bind(ctx, id, ADAMP_CUDA_G, static_cast<float*>(g)));
      CUDA_OK(adamp_cuda_copy_bytes(0, p, bits[i].data(), t.numel * 2, 1, nullptr));
      if (storage(i) & ADAMP_CUDA_MASTER) CUDA_OK(adamp_cuda_init_master(ctx, id));
      for (int s = 0; s < k.slots; ++s) CUDA_OK(adamp_cuda_upload(ctx, id, ADAMP_CUDA_STATE(s), t.st[s].data(), t.numel));
      CUDA_OK(adamp_cuda_set_step(ctx, id, (int64_t)t.step));
    }
    CUDA_OK(adamp_cuda_alloc(0, ADAMP_CUDA_SCALER_BYTES, nullptr, &scaler));
    CUDA_OK(adamp_cuda_copy_bytes(0, scaler, &scale, 4, 1, nullptr));
  }
  ~MixedCtx() {
    adamp_cuda_destroy(ctx);
    for (void* p : p16) adamp_cuda_free(0, p);
    for (void* g : g16) adamp_cuda_free(0, g);
    adamp_cuda_free(0, scaler);
  }
  /** Tensor i: bfloat16 param and grad; master weights rounded to nearest (i % 3 == 0), stochastically (1), none (2). */
  static int storage(size_t i) {
    return ADAMP_CUDA_BF16 | (ADAMP_CUDA_BF16 << 2) | (i % 3 != 2 ? ADAMP_CUDA_MASTER : 0) | (i % 3 == 1 ? ADAMP_CUDA_STOCHASTIC : 0);
  }
  int* found() { return reinterpret_cast<int*>(static_cast<char*>(scaler) + ADAMP_CUDA_SCALER_FOUND(0)); }
  std::vector<uint16_t> bits(size_t i, int64_t n) {
    std::vector<uint16_t> out((size_t)n);
    CUDA_OK(adamp_cuda_copy_bytes(0, out.data(), p16[i], n * 2, 0, nullptr));
    return out;
  }
};

void run_mixed(const Kind& kind, int steps) {
  std::mt19937_64 rng(777);
  std::vector<Tensor> ts;
  const std::vector<Shape> sh = {{{64, 3, 3, 3}, 0}, {{64}, 0}, {{10, 20}, 0}, {{3, 9, 35}, 1}, {{1, 3000}, 0}, {{96, 40}, 0}};
  for (const Shape& s : sh) ts.push_back(make_tensor(s.dims, s.axis, rng, kind));
  // the 16-bit params, and the float32 reference's start: their values widened
  std::vector<std::vector<uint16_t>> bits(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    bits[i].resize(ts[i].p.size());
    for (size_t j = 0; j < ts[i].p.size(); ++j) {
      bits[i][j] = bf16_rne(ts[i].p[j]);
      ts[i].p[j] = bf16_widen(bits[i][j]);
    }
  }
  float scale = 1024.0f;
  int64_t tracker = 0;
  const double growth = 2.0, backoff = 0.5;
  const int64_t interval = 3;
  adamp_cuda_config one = {256, 2048, 2, 0, 1}, full = {256, 2048, 2, 0, 0};
  MixedCtx a(kind, ts, &one, bits.data(), scale), b(kind, ts, &full, bits.data(), scale);
  Gpu ref(kind, ts, nullptr);
  const std::vector<double> h = presets(kind)[1];
  std::vector<int> all(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) all[i] = (int)i;
  int skipped = 0;
  for (int st = 0; st < steps; ++st) {
    bool bad = false;
    const float inv = (float)(1.0 / (double)scale);
    std::vector<std::vector<float>> gref(ts.size());
    for (size_t i = 0; i < ts.size(); ++i) {
      const std::vector<float> g = make_grad(ts[i], (GradKind)((i + st) % 4), rng);
      std::vector<uint16_t> g16(g.size());
      for (size_t j = 0; j < g.size(); ++j) g16[j] = bf16_rne(g[j] * scale);
      if (st % 4 == 2 && i == (size_t)st % ts.size()) g16[g16.size() / 2] = st % 8 == 2 ? 0x7f80 : 0xffc1;  // Infinity, NaN
      gref[i].resize(g.size());
      for (size_t j = 0; j < g.size(); ++j) {
        bad = bad || (g16[j] & 0x7f80) == 0x7f80;
        gref[i][j] = bf16_widen(g16[j]) * inv;
      }
      CUDA_OK(adamp_cuda_copy_bytes(0, a.g16[i], g16.data(), (int64_t)g16.size() * 2, 1, nullptr));
      CUDA_OK(adamp_cuda_copy_bytes(0, b.g16[i], g16.data(), (int64_t)g16.size() * 2, 1, nullptr));
    }
    for (MixedCtx* m : {&a, &b}) {
      CUDA_OK(adamp_cuda_check_grads(m->ctx, all.data(), (int)all.size(), m->found(), 1));
      CUDA_OK(adamp_cuda_step_scaled(m->ctx, all.data(), (int)all.size(), h.data(), (int)h.size(), 0, static_cast<float*>(m->scaler), m->found()));
      CUDA_OK(adamp_cuda_scaler_update(m->ctx, m->scaler, 1u, 0, growth, backoff, interval));
    }
    // the reference: the float32 kernels on the same float32 values, skipping the step on a non-finite grad
    if (!bad) {
      for (size_t i = 0; i < ts.size(); ++i) CUDA_OK(adamp_cuda_upload(ref.ctx, ref.ids[i], ADAMP_CUDA_G, gref[i].data(), ts[i].numel));
      CUDA_OK(adamp_cuda_step(ref.ctx, all.data(), (int)all.size(), h.data(), (int)h.size()));
      ref.download(ts);
      for (size_t i = 0; i < ts.size(); ++i) {
        const int sto = MixedCtx::storage(i);
        const uint32_t key = fmix32(77u ^ fmix32((uint32_t)(ts[i].step + st + 1 - skipped) ^ fmix32((uint32_t)i)));
        for (size_t j = 0; j < bits[i].size(); ++j)
          bits[i][j] = (sto & ADAMP_CUDA_STOCHASTIC) ? bf16_stochastic(ts[i].p[j], key, (uint32_t)j) : bf16_rne(ts[i].p[j]);
        if (!(sto & ADAMP_CUDA_MASTER)) {  // without master weights the param is what the next step widens
          for (size_t j = 0; j < bits[i].size(); ++j) ts[i].p[j] = bf16_widen(bits[i][j]);
          CUDA_OK(adamp_cuda_upload(ref.ctx, ref.ids[i], ADAMP_CUDA_P, ts[i].p.data(), ts[i].numel));
        }
      }
      const int64_t ok = tracker + 1;
      if (ok == interval) {
        const float grown = (float)((double)scale * growth);
        if (std::isfinite(grown)) scale = grown;
        tracker = 0;
      } else {
        tracker = ok;
      }
    } else {
      ++skipped;
      scale = (float)((double)scale * backoff);
      tracker = 0;
    }
    for (size_t i = 0; i < ts.size(); ++i) {
      const std::vector<uint16_t> ga = a.bits(i, ts[i].numel), gb = b.bits(i, ts[i].numel);
      EXPECT(ga == gb, "%s mixed: one block and the full grid differ on tensor %zu at step %d", kind.name.c_str(), i, st + 1);
      EXPECT(ga == bits[i], "%s mixed: tensor %zu's bfloat16 param differs from the float32 kernels' rounded at step %d (%s)",
             kind.name.c_str(), i, st + 1, bad ? "skipped" : "ran");
    }
  }
  // master weights, state and step counts: as the reference's
  for (size_t i = 0; i < ts.size(); ++i) {
    for (MixedCtx* m : {&a, &b}) {
      std::vector<float> x((size_t)ts[i].numel);
      if (MixedCtx::storage(i) & ADAMP_CUDA_MASTER) {
        CUDA_OK(adamp_cuda_download(m->ctx, m->ids[i], ADAMP_CUDA_STATE(kind.slots), x.data(), ts[i].numel));
        EXPECT(same_bits(x, ts[i].p), "%s mixed: tensor %zu's master weights differ from the float32 kernels' params", kind.name.c_str(), i);
      }
      for (int s = 0; s < kind.slots; ++s) {
        CUDA_OK(adamp_cuda_download(m->ctx, m->ids[i], ADAMP_CUDA_STATE(s), x.data(), ts[i].numel));
        EXPECT(same_bits(x, ts[i].st[s]), "%s mixed: tensor %zu state slot %d differs from the float32 kernels'", kind.name.c_str(), i, s);
      }
      double n = -1;
      CUDA_OK(adamp_cuda_get_steps(m->ctx, &m->ids[i], 1, &n));
      EXPECT(n == ts[i].step + steps - skipped, "%s mixed: tensor %zu counted %g steps, %g ran", kind.name.c_str(), i, n, ts[i].step + steps - skipped);
    }
  }
  for (MixedCtx* m : {&a, &b}) {
    float s = 0;
    int64_t tr = -1;
    CUDA_OK(adamp_cuda_copy_bytes(0, &s, m->scaler, 4, 0, nullptr));
    CUDA_OK(adamp_cuda_copy_bytes(0, &tr, static_cast<char*>(m->scaler) + 8, 8, 0, nullptr));
    EXPECT(s == scale && tr == tracker, "%s mixed: the device scale %g (tracker %lld), the host GradScaler's %g (%lld)", kind.name.c_str(), s,
           (long long)tr, scale, (long long)tracker);
  }
  EXPECT(skipped > 0 && skipped < steps, "%s mixed: %d of %d steps skipped (both kinds of step must occur)", kind.name.c_str(), skipped, steps);
}

// ---------------------------------------------------------------------------------------------
// GradScaler.unscale on the device (adamp_cuda_unscale_grads): float32 gradients, contiguous and
// strided, multiplied in place by f32(1 / scale) with the found flag from the values before the
// product; then a step reading them as they are (adamp_cuda_step_scaled with scale NULL) equals
// the fused loss-scaled step on the scaled gradients bit for bit, and is skipped when the flag is set.

float f32_inv(float scale) { return (float)(1.0 / (double)scale); }  // the host GradScaler's f(1 / scale)

void run_unscale(const Kind& kind) {
  std::mt19937_64 rng(4242);
  std::normal_distribution<float> nd(0.f, 1.f);
  void* st = nullptr;  // a ScalerState: scale at 0, found[0] at ADAMP_CUDA_SCALER_FOUND(0)
  CUDA_OK(adamp_cuda_alloc(0, ADAMP_CUDA_SCALER_BYTES, nullptr, &st));
  float* scale_at = static_cast<float*>(st);
  int* found_at = reinterpret_cast<int*>(static_cast<char*>(st) + ADAMP_CUDA_SCALER_FOUND(0));
  adamp_cuda_ctx* ctx = nullptr;
  CUDA_OK(adamp_cuda_create(&ctx, kind.name.c_str(), 0, nullptr));
  const auto set_found = [&](int v) { CUDA_OK(adamp_cuda_copy_bytes(0, found_at, &v, 4, 1, nullptr)); };
  const auto get_found = [&]() {
    int v = -1;
    CUDA_OK(adamp_cuda_sync(ctx));
    CUDA_OK(adamp_cuda_copy_bytes(0, &v, found_at, 4, 0, nullptr));
    return v;
  };

  // Views into one buffer: contiguous (one past the grid's reach), empty, and two strided ones
  // (a transpose, and a view with gaps whose skipped elements must stay as they are).
  const int64_t big = 70001, gap_n = 4 * 10;
  const int64_t total = big + 35 + gap_n + 7;
  float* buf = nullptr;
  CUDA_OK(adamp_cuda_alloc(0, total * 4, nullptr, reinterpret_cast<void**>(&buf)));
  const int64_t s_big[1] = {big}, s_empty[2] = {0, 5}, s_t[2] = {7, 5}, st_t[2] = {1, 7}, s_gap[2] = {4, 3}, st_gap[2] = {10, 3}, s_tail[1] = {7};
  adamp_cuda_grad_view views[5] = {
      {buf, s_big, nullptr, 1},
      {buf + big, s_empty, nullptr, 2},
      {buf + big, s_t, st_t, 2},
      {buf + big + 35, s_gap, st_gap, 2},
      {buf + big + 35 + gap_n, s_tail, nullptr, 1},
  };
  std::vector<char> in_view((size_t)total, 0);
  for (int64_t i = 0; i < big + 35; ++i) in_view[i] = 1;
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 3; ++c) in_view[big + 35 + r * 10 + c * 3] = 1;
  for (int64_t i = 0; i < 7; ++i) in_view[big + 35 + gap_n + i] = 1;

  struct Case {
    float scale;
    int poison;  // 0: finite; 1: +Infinity; 2: NaN; 3: -Infinity in a strided view; 4: a finite value the product overflows
    int reset;
  };
  const Case cases[] = {{65536.f, 0, 1}, {3.f, 0, 1}, {1024.f, 1, 1}, {0.125f, 2, 1}, {7.f, 3, 1}, {1e-3f, 4, 1}, {2.f, 0, 0}};
  for (const Case& c : cases) {
    std::vector<float> g((size_t)total);
    for (auto& x : g) x = nd(rng) * 100.f;
    g[5] = 1e-42f;  // a subnormal: no flush to zero
    if (c.poison == 1) g[big / 2] = INFINITY;
    if (c.poison == 2) g[big + 35 + gap_n + 6] = NAN;
    if (c.poison == 3) g[big + 35 + 2 * 10 + 3] = -INFINITY;
    if (c.poison == 4) g[9] = 3e38f;
    // an Infinity in a gap of the strided view is not a gradient element: neither flagged nor changed
    g[big + 35 + 1] = INFINITY;
    CUDA_OK(adamp_cuda_copy_bytes(0, buf, g.data(), total * 4, 1, nullptr));
    CUDA_OK(adamp_cuda_copy_bytes(0, scale_at, &c.scale, 4, 1, nullptr));
    set_found(c.reset ? 1 : 7);  // reset: zeroed first; else kept (7 stays 7 when nothing is found)
    CUDA_OK(adamp_cuda_unscale_grads(ctx, views, 5, scale_at, found_at, c.reset));
    const int f = get_found();
    std::vector<float> out((size_t)total);
    CUDA_OK(adamp_cuda_copy_bytes(0, out.data(), buf, total * 4, 0, nullptr));
    const float inv = f32_inv(c.scale);
    bool same = true;
    for (int64_t i = 0; i < total && same; ++i) {
      const float want = in_view[i] ? g[i] * inv : g[i];
      same = f32_bits(out[i]) == f32_bits(want) || (std::isnan(out[i]) && std::isnan(want));
      if (!same) std::printf("  element %lld: got %.9g want %.9g\n", (long long)i, out[i], want);
    }
    EXPECT(same, "%s unscale (scale %g, case %d): the gradients are not g * f32(1 / scale) bit for bit", kind.name.c_str(), c.scale, c.poison);
    const int want_found = c.poison == 1 || c.poison == 2 || c.poison == 3 ? 1 : c.reset ? 0 : 7;
    EXPECT(f == want_found, "%s unscale (scale %g, case %d): found flag %d, want %d", kind.name.c_str(), c.scale, c.poison, f, want_found);
  }
  // bad arguments change nothing
  std::vector<float> before((size_t)total), after((size_t)total);
  CUDA_OK(adamp_cuda_copy_bytes(0, before.data(), buf, total * 4, 0, nullptr));
  adamp_cuda_grad_view bad_dims = views[0];
  bad_dims.ndim = ADAMP_CUDA_MAX_DIMS + 1;
  adamp_cuda_grad_view odd = views[0];
  odd.g = reinterpret_cast<float*>(reinterpret_cast<char*>(buf) + 2);
  const int64_t zero_stride[2] = {0, 7};
  adamp_cuda_grad_view bad_stride = views[2];
  bad_stride.strides = zero_stride;
  EXPECT(adamp_cuda_unscale_grads(ctx, views, 5, nullptr, found_at, 1) == ADAMP_CUDA_E_INVALID, "unscale: a null scale accepted");
  EXPECT(adamp_cuda_unscale_grads(ctx, views, 5, scale_at, nullptr, 1) == ADAMP_CUDA_E_INVALID, "unscale: a null flag accepted");
  for (const adamp_cuda_grad_view* v : {&bad_dims, &odd, &bad_stride}) {
    const adamp_cuda_grad_view two[2] = {views[4], *v};
    EXPECT(adamp_cuda_unscale_grads(ctx, two, 2, scale_at, found_at, 1) == ADAMP_CUDA_E_INVALID, "unscale: a bad view accepted");
  }
  CUDA_OK(adamp_cuda_sync(ctx));
  CUDA_OK(adamp_cuda_copy_bytes(0, after.data(), buf, total * 4, 0, nullptr));
  EXPECT(same_bits(before, after), "unscale: a refused call changed a gradient (the views are checked before anything is queued)");
  adamp_cuda_destroy(ctx);
  adamp_cuda_free(0, buf);

  // unscale, then a step reading the unscaled grads (scale NULL) == the fused step on the scaled grads
  std::vector<Tensor> ts;
  for (const Shape& s : std::vector<Shape>{{{64, 3, 3, 3}, 0}, {{64}, 0}, {{10, 20}, 0}, {{1, 3000}, 0}}) ts.push_back(make_tensor(s.dims, s.axis, rng, kind));
  Gpu a(kind, ts, nullptr), b(kind, ts, nullptr);
  std::vector<int> all(ts.size());
  for (size_t i = 0; i < ts.size(); ++i) all[i] = (int)i;
  void* st_b = nullptr;
  CUDA_OK(adamp_cuda_alloc(0, ADAMP_CUDA_SCALER_BYTES, nullptr, &st_b));
  int* found_b = reinterpret_cast<int*>(static_cast<char*>(st_b) + ADAMP_CUDA_SCALER_FOUND(0));
  const std::vector<double> h = presets(kind)[1];
  int skipped = 0;
  std::vector<Tensor> prev = ts;
  for (int step = 0; step < 4; ++step) {
    const float scale = step == 1 ? 3.f : 4096.f;
    CUDA_OK(adamp_cuda_copy_bytes(0, scale_at, &scale, 4, 1, nullptr));
    CUDA_OK(adamp_cuda_copy_bytes(0, st_b, &scale, 4, 1, nullptr));
    std::vector<adamp_cuda_grad_view> gv(ts.size());
    std::vector<std::vector<int64_t>> n1(ts.size());
    for (size_t i = 0; i < ts.size(); ++i) {
      std::vector<float> g = make_grad(ts[i], (GradKind)((i + step) % 4), rng);
      for (auto& x : g) x *= scale;
      if (step == 2 && i == 1) g[3] = NAN;
      CUDA_OK(adamp_cuda_upload(a.ctx, a.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
      CUDA_OK(adamp_cuda_upload(b.ctx, b.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
      n1[i] = {ts[i].numel};
      gv[i] = {adamp_cuda_device_ptr(a.ctx, a.ids[i], ADAMP_CUDA_G), n1[i].data(), nullptr, 1};
    }
    CUDA_OK(adamp_cuda_unscale_grads(a.ctx, gv.data(), (int)gv.size(), scale_at, found_at, 1));
    CUDA_OK(adamp_cuda_step_scaled(a.ctx, all.data(), (int)all.size(), h.data(), (int)h.size(), 0, nullptr, found_at));
    CUDA_OK(adamp_cuda_check_grads(b.ctx, all.data(), (int)all.size(), found_b, 1));
    CUDA_OK(adamp_cuda_step_scaled(b.ctx, all.data(), (int)all.size(), h.data(), (int)h.size(), 0, static_cast<float*>(st_b), found_b));
    if (step == 2) ++skipped;
    std::vector<Tensor> ra = ts, rb = ts;
    a.download(ra);
    b.download(rb);
    for (size_t i = 0; i < ts.size(); ++i) {
      bool same = same_bits(ra[i].p, rb[i].p);
      for (int s = 0; s < kind.slots; ++s) same = same && same_bits(ra[i].st[s], rb[i].st[s]);
      EXPECT(same, "%s unscale then step: tensor %zu differs from the fused loss-scaled step at step %d", kind.name.c_str(), i, step + 1);
      int sk = -1;
      CUDA_OK(adamp_cuda_last_skipped(a.ctx, a.ids[i], &sk));
      EXPECT(sk == (step == 2 ? 1 : 0), "%s unscale then step: tensor %zu skipped %d at step %d", kind.name.c_str(), i, sk, step + 1);
      double n = -1;
      CUDA_OK(adamp_cuda_get_steps(a.ctx, &a.ids[i], 1, &n));
      EXPECT(n == ts[i].step + step + 1 - skipped, "%s unscale then step: tensor %zu counted %g steps", kind.name.c_str(), i, n);
    }
    if (step == 2) {  // the skipped step changed nothing
      bool same = true;
      for (size_t i = 0; i < ts.size(); ++i) same = same && same_bits(ra[i].p, prev[i].p) && same_bits(ra[i].st[0], prev[i].st[0]);
      EXPECT(same, "%s unscale then step: a step whose unscale found NaN changed a param or its state", kind.name.c_str());
    }
    prev = ra;
  }
  adamp_cuda_free(0, st_b);
  adamp_cuda_free(0, st);
}

int main(int argc, char** argv) {
  std::string fixtures = "test/fixtures";
  bool oom_probe = !(std::getenv("ADAMP_TEST_NO_OOM_PROBE") && std::strcmp(std::getenv("ADAMP_TEST_NO_OOM_PROBE"), "0") != 0);
  int seeds_arg = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--fixtures") && i + 1 < argc) fixtures = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) g_mode |= kQuick;
    else if (!std::strcmp(argv[i], "--sanitize")) g_mode |= kQuick | kSanitize;
    else if (!std::strcmp(argv[i], "--tsan")) g_mode |= kQuick | kTsan;
    else if (!std::strcmp(argv[i], "--no-oom-probe")) oom_probe = false;
    else if (!std::strcmp(argv[i], "--seeds") && i + 1 < argc && std::atoi(argv[i + 1]) > 0) seeds_arg = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--fixtures DIR] [--quick | --sanitize | --tsan] [--seeds N] [--no-oom-probe]\n", argv[0]);
      return 2;
    }
  }
  int count = 0;
  const int rc = adamp_cuda_device_count(&count);
  if (rc != 0 || count == 0) {
    std::printf("SKIP: no usable CUDA device (cudaGetDeviceCount: %s (%d): %s)\n", adamp_cuda_error_name(rc), rc,
                adamp_cuda_error_string(rc));
    return 77;
  }
  char name[256];
  int major = 0, minor = 0;
  adamp_cuda_device_info(0, name, sizeof(name), &major, &minor, nullptr);
  std::printf("device 0: %s (sm_%d%d)\n", name, major, minor);

  run_api_checks();
  if (has(kTsan)) std::printf("SKIP device memory checks: --tsan runs the cross-block cases only\n");
  else run_device_memory_checks(oom_probe);
  std::printf("API, device memory, external buffers, strided copies, streams: done (%d checks, %d failures so far)\n", g_checks, g_failures);
  const adamp_cuda_config small_cfg = {256, 2048, 2, 0, 0};
  const adamp_cuda_config one_per_sm = {8192, 1 << 20, 1, 1, 0};  // one block per SM
  const int seeds = seeds_arg > 0 ? seeds_arg : has(kQuick) ? 1 : 3;
  const int one_block_steps = has(kTsan) ? 4 : has(kSanitize) ? 20 : 200;
  for (const Kind& k : kinds()) {
    const size_t np = presets(k).size();
    const bool sub = has(kSanitize) || has(kTsan);
    if (has(kTsan) && !k.projects) {
      // No cross-block hand-off but the work queue: one preset on small items is enough for TSan.
      run_random_case(k, 5000, 2, &small_cfg);
      std::printf("%s: one random case (--tsan: no projection, no cross-block hand-off)\n", k.name.c_str());
      continue;
    }
    for (int s = 0; s < seeds; ++s)
      for (size_t p = 0; p < np; ++p) {
        // Full: every preset on both configs. Quick: every preset on the default config, two on
        // small items. Sanitize / TSan: small items only, two presets (every one for SGD, whose
        // presets are what reaches its variants).
        if (!sub) run_random_case(k, 1000 + 17 * s + p, p, nullptr);
        if (!has(kQuick) || p == 1 || p == 2 || (sub && k.name == "sgd")) run_random_case(k, 5000 + 17 * s + p, p, &small_cfg);
      }
    if (!sub) run_random_case(k, 42, 1, &one_per_sm);
    const uint32_t want = reachable_variants(k), seen = g_variants_seen[k.index];
    EXPECT((seen & want) == want, "%s: variants run 0x%x, every reachable one is 0x%x", k.name.c_str(), seen, want);
    std::printf("%s random cases: done, variants 0x%x (%d checks, %d failures so far)\n", k.name.c_str(), seen, g_checks, g_failures);
    run_one_block_vs_grid(k, one_block_steps);
    run_mixed(k, has(kTsan) ? 4 : 12);
    run_unscale(k);
    if (!has(kTsan)) {
      if (!has(kSanitize)) run_determinism(k, nullptr);
      run_determinism(k, &small_cfg);
      run_many_tensors(k);
      run_hyper_and_norms(k);
    }
#if !defined(ADAMP_CUDA_EMULATION)
    run_graph_replay(k);
#endif
    std::printf("%s one block vs grid (%d steps), bfloat16 with loss scaling on the device%s: done\n", k.name.c_str(), one_block_steps,
                has(kTsan) ? "" : ", determinism, many tensors, device hyperparameters, norms");
  }
#if defined(ADAMP_CUDA_EMULATION)
  std::printf("SKIP CUDA graph replay: the emulation has no CUDA graphs (runs on a GPU)\n");
#endif
  if (has(kTsan)) std::printf("SKIP fixtures, determinism, many tensors, device hyperparameters: --tsan runs the cross-block cases only\n");
  else run_fixtures(fixtures);
  adamp_cuda_drain_frees();  // nothing left for the freeing thread when the process exits (memcheck's leak check)
  std::printf("%d passed, %d failed\n", g_checks - g_failures, g_failures);
  return g_failures == 0 ? 0 : 1;
}
