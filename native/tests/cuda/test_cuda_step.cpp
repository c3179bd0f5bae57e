// The CUDA step against the host: many shapes, seeds and options for AdamP and SGDP, the
// reference fixtures of the official implementation, run-to-run determinism and schedules.
//
// The host reference is a plain loop over adamp/math.h (the arithmetic the CPU core runs);
// when built with ADAMP_TEST_CPU_CORE it is also checked against the CPU core itself.
// Exit codes: 0 pass, 1 failures, 77 no usable GPU (CTest reports it as skipped).
//
//   test_cuda_step [--fixtures DIR] [--quick]
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "../../cuda/adamp_cuda.h"
#include "adamp/math.h"
#include "mini_json.h"
#if defined(ADAMP_TEST_CPU_CORE)
#include "../../cpu/step.h"
#endif

namespace {

int g_failures = 0;
int g_checks = 0;

#define EXPECT(cond, ...)                           \
  do {                                              \
    ++g_checks;                                     \
    if (!(cond)) {                                  \
      ++g_failures;                                 \
      std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);            \
      std::fprintf(stderr, "\n");                   \
    }                                               \
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

struct Tensor {
  std::vector<int64_t> shape;
  int channel_axis = 0;  // 0 = PyTorch, -1 = TensorFlow.js
  std::vector<float> p, m, v;
  int64_t numel = 1, outer = 1, channels = 1, inner = 1;
  bool eligible = false;
  double step = 0;  // AdamP completed steps
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
    t.outer = 1;
    for (size_t i = 0; i < ax; ++i) t.outer *= t.shape[i];
    t.inner = t.channels ? t.numel / (t.outer * t.channels) : 0;
  } else if (t.numel > 0) {
    t.channels = 1;
    t.inner = t.numel;
  }
}

struct AdamPHp {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0, delta = 0.1, wd_ratio = 0.1;
  bool nesterov = false;
};
struct SGDPHp {
  double lr = 0.1, momentum = 0, dampening = 0, weight_decay = 0, eps = 1e-8, delta = 0.1, wd_ratio = 0.1;
  bool nesterov = false;
};

// ---------------------------------------------------------------------------------------------
// Host reference: the JS engine's two passes, written over adamp/math.h.

void ref_adamp(Tensor& t, const std::vector<float>& g, const AdamPHp& hp, double* info) {
  t.step += 1;
  const adamp::AdamPScalarsF s = adamp::make_adamp_scalars(hp.lr, hp.beta1, hp.beta2, hp.eps, t.step, hp.nesterov);
  const int64_t n = t.numel;
  double before = 0, after = 0, delta = 0;
  if (!t.eligible) {
    const float wdf = adamp::adamp_wd_factor(hp.lr, hp.weight_decay, 1.0);
    for (int64_t i = 0; i < n; ++i) {
      adamp::adamp_moments(t.m[i], t.v[i], g[i], s);
      const float u = adamp::adamp_update(t.m[i], t.v[i], g[i], s);
      const float p0 = t.p[i], p1 = adamp::apply_step(p0, u, wdf, s.neg_step);
      t.p[i] = p1;
      before += (double)p0 * p0;
      after += (double)p1 * p1;
      delta += ((double)p1 - p0) * ((double)p1 - p0);
    }
    adamp::write_info_not_eligible(info, before, after, delta);
    return;
  }
  std::vector<adamp::ChannelSums> sums(t.channels);
  for (auto& x : sums) adamp::sums_zero(x);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = (i / t.inner) % t.channels;
    adamp::adamp_moments(t.m[i], t.v[i], g[i], s);
    const float u = adamp::adamp_update(t.m[i], t.v[i], g[i], s);
    adamp::sums_accumulate(sums[c], g[i], t.p[i], u);
  }
  const adamp::DecisionResult r = adamp::decide(sums.data(), t.channels, n, hp.delta, hp.wd_ratio, hp.eps);
  const float wdf = adamp::adamp_wd_factor(hp.lr, hp.weight_decay, r.ratio);
  const bool proj = adamp::is_projected(r.code);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = (i / t.inner) % t.channels;
    float u = adamp::adamp_update(t.m[i], t.v[i], g[i], s);
    const float p0 = t.p[i];
    if (proj) {
      const adamp::ProjCoef k = adamp::proj_coef_for(r, sums.data(), c, (float)hp.eps);
      u = adamp::project(u, p0, k.div, k.scale);
    }
    const float p1 = adamp::apply_step(p0, u, wdf, s.neg_step);
    t.p[i] = p1;
    after += (double)p1 * p1;
    delta += ((double)p1 - p0) * ((double)p1 - p0);
  }
  adamp::write_info(info, r, after, delta);
}

void ref_sgdp(Tensor& t, const std::vector<float>& g, const SGDPHp& hp, double* info) {
  const adamp::SGDPScalarsF s = adamp::make_sgdp_scalars(hp.lr, hp.momentum, hp.dampening, hp.nesterov);
  const int64_t n = t.numel;
  double before = 0, after = 0, delta = 0;
  if (!t.eligible) {
    const float wdf = adamp::sgdp_wd_factor(hp.lr, hp.weight_decay, 1.0, hp.momentum);
    for (int64_t i = 0; i < n; ++i) {
      t.m[i] = adamp::sgdp_buffer(t.m[i], g[i], s);
      const float d = adamp::sgdp_update(t.m[i], g[i], s);
      const float p0 = t.p[i], p1 = adamp::apply_step(p0, d, wdf, s.neg_lr);
      t.p[i] = p1;
      before += (double)p0 * p0;
      after += (double)p1 * p1;
      delta += ((double)p1 - p0) * ((double)p1 - p0);
    }
    adamp::write_info_not_eligible(info, before, after, delta);
    return;
  }
  std::vector<adamp::ChannelSums> sums(t.channels);
  for (auto& x : sums) adamp::sums_zero(x);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = (i / t.inner) % t.channels;
    t.m[i] = adamp::sgdp_buffer(t.m[i], g[i], s);
    const float d = adamp::sgdp_update(t.m[i], g[i], s);
    adamp::sums_accumulate(sums[c], g[i], t.p[i], d);
  }
  const adamp::DecisionResult r = adamp::decide(sums.data(), t.channels, n, hp.delta, hp.wd_ratio, hp.eps);
  const float wdf = adamp::sgdp_wd_factor(hp.lr, hp.weight_decay, r.ratio, hp.momentum);
  const bool proj = adamp::is_projected(r.code);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = (i / t.inner) % t.channels;
    float d = adamp::sgdp_update(t.m[i], g[i], s);
    const float p0 = t.p[i];
    if (proj) {
      const adamp::ProjCoef k = adamp::proj_coef_for(r, sums.data(), c, (float)hp.eps);
      d = adamp::project(d, p0, k.div, k.scale);
      if (!hp.nesterov) t.m[i] = d;  // the official d aliases the buffer
    }
    const float p1 = adamp::apply_step(p0, d, wdf, s.neg_lr);
    t.p[i] = p1;
    after += (double)p1 * p1;
    delta += ((double)p1 - p0) * ((double)p1 - p0);
  }
  adamp::write_info(info, r, after, delta);
}

// ---------------------------------------------------------------------------------------------
// The GPU side of a case.

struct Gpu {
  adamp_cuda_ctx* ctx = nullptr;
  std::vector<int> ids;
  bool adam;
  Gpu(bool adam_, const std::vector<Tensor>& ts, const adamp_cuda_config* cfg) : adam(adam_) {
    CUDA_OK(adamp_cuda_create(&ctx, adam ? ADAMP_CUDA_ADAMP : ADAMP_CUDA_SGDP, 0, cfg));
    for (const Tensor& t : ts) {
      adamp_cuda_tensor_desc d = {t.numel, t.outer, t.channels, t.inner, t.eligible ? 1 : 0};
      int id = -1;
      CUDA_OK(adamp_cuda_add_tensor(ctx, &d, &id));
      ids.push_back(id);
      CUDA_OK(adamp_cuda_upload(ctx, id, ADAMP_CUDA_P, t.p.data(), t.numel));
      CUDA_OK(adamp_cuda_upload(ctx, id, ADAMP_CUDA_M, t.m.data(), t.numel));
      if (adam) {
        CUDA_OK(adamp_cuda_upload(ctx, id, ADAMP_CUDA_V, t.v.data(), t.numel));
        CUDA_OK(adamp_cuda_set_step(ctx, id, (int64_t)t.step));
      }
    }
  }
  ~Gpu() { adamp_cuda_destroy(ctx); }
  void download(std::vector<Tensor>& out) {
    for (size_t i = 0; i < out.size(); ++i) {
      CUDA_OK(adamp_cuda_download(ctx, ids[i], ADAMP_CUDA_P, out[i].p.data(), out[i].numel));
      CUDA_OK(adamp_cuda_download(ctx, ids[i], ADAMP_CUDA_M, out[i].m.data(), out[i].numel));
      if (adam) CUDA_OK(adamp_cuda_download(ctx, ids[i], ADAMP_CUDA_V, out[i].v.data(), out[i].numel));
    }
  }
};

const char* decision_name(double d) {
  switch ((int)d) {
    case 0: return "none";
    case 1: return "channel";
    case 2: return "layer";
    case 3: return "not_eligible";
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
  bool ok = true;
  for (size_t i = 0; i < a.size(); ++i) {
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

bool rel_close(double a, double b, double tol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::fabs(a - b) <= tol * std::fmax(std::fabs(a), std::fabs(b)) + 1e-300;
}

void compare_info(const char* what, size_t ti, const double* gi, const double* ri) {
  EXPECT(gi[0] == ri[0], "%s tensor %zu: decision gpu=%s ref=%s (max|cos| gpu %.9g ref %.9g, thr %.9g; layer %.9g / %.9g)",
         what, ti, decision_name(gi[0]), decision_name(ri[0]), gi[1], ri[1], ri[2], gi[3], ri[3]);
  // cos values: sums in another order and precision. The CPU core sums float32 products over
  // 16-term float lanes before folding blocks in double (simd.h BSum): its error on a dot product
  // is below gamma_16 * sum|x_i y_i| <= 9.6e-7 * ||x|| ||y||, i.e. 9.6e-7 absolute on a cos (the
  // official's own float32 reductions are of the same class). The norms: relative, the same bound.
  const double cos_abs = 1e-6;
  EXPECT(rel_close(gi[1], ri[1], 1e-5) || std::fabs(gi[1] - ri[1]) < cos_abs, "%s tensor %zu: channel max|cos| %.9g vs %.9g", what, ti, gi[1], ri[1]);
  EXPECT(rel_close(gi[2], ri[2], 0), "%s tensor %zu: channel threshold %.9g vs %.9g", what, ti, gi[2], ri[2]);
  EXPECT(rel_close(gi[3], ri[3], 1e-5) || std::fabs(gi[3] - ri[3]) < cos_abs, "%s tensor %zu: layer |cos| %.9g vs %.9g", what, ti, gi[3], ri[3]);
  EXPECT(rel_close(gi[4], ri[4], 0), "%s tensor %zu: layer threshold %.9g vs %.9g", what, ti, gi[4], ri[4]);
  for (int f = 5; f < 8; ++f)
    EXPECT(rel_close(gi[f], ri[f], 1e-6) || std::fabs(gi[f] - ri[f]) < 1e-30, "%s tensor %zu: info[%d] %.17g vs %.17g", what, ti, f,
           gi[f], ri[f]);
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

Tensor make_tensor(std::vector<int64_t> shape, int axis, std::mt19937_64& rng, bool adam, bool zero_weights = false) {
  Tensor t;
  t.shape = std::move(shape);
  t.channel_axis = axis;
  geometry(t);
  std::normal_distribution<float> nd(0.f, 1.f);
  t.p.resize(t.numel);
  t.m.assign(t.numel, 0.f);
  t.v.assign(adam ? t.numel : 0, 0.f);
  for (auto& x : t.p) x = zero_weights ? 0.f : nd(rng);
  return t;
}

struct Shape {
  std::vector<int64_t> dims;
  int axis;
};

const std::vector<Shape>& shapes(bool quick) {
  static const std::vector<Shape> all = {
      {{64, 3, 7, 7}, 0},      {{64}, 0},            {{10, 20}, 0},        {{1, 16}, 0},        {{10, 1}, 0},
      {{7}, 0},                {{}, 0},              {{256, 64, 1, 1}, 0}, {{64, 64, 3, 3}, 0}, {{33, 37}, 0},
      {{3, 10001}, 0},         {{1, 70001}, 0},      {{20001, 1}, 0},      {{3, 3, 64, 128}, -1}, {{768, 3072}, -1},
      {{5, 7, 40}, 1},         {{3, 9, 35}, 1},      {{2048, 1000}, 0},    {{1000, 2048}, 0},   {{512, 512, 3, 3}, 0},
      {{50, 3, 5, 5}, 0},      {{4, 5}, 0},          {{8, 9}, 0},          {{130, 2, 3}, 0},
  };
  static const std::vector<Shape> small = {{{64, 3, 7, 7}, 0}, {{64}, 0},          {{10, 20}, 0}, {{1, 16}, 0},
                                           {{10, 1}, 0},       {{3, 3, 64, 128}, -1}, {{3, 10001}, 0}, {{5, 7, 40}, 1}};
  return quick ? small : all;
}

/** Steps `steps` times on the GPU and on the host reference and compares after every step. */
void run_random_case(bool adam, uint64_t seed, int variant, const adamp_cuda_config* cfg, const char* cfg_name, bool quick) {
  std::mt19937_64 rng(seed);
  std::vector<Tensor> ts;
  for (const Shape& s : shapes(quick)) ts.push_back(make_tensor(s.dims, s.axis, rng, adam, variant == 3 && ts.size() % 5 == 2));
  AdamPHp ah;
  SGDPHp sh;
  switch (variant % 4) {
    case 0: ah.weight_decay = 0.01; sh.momentum = 0.9; sh.weight_decay = 1e-4; break;
    case 1: ah.nesterov = true; ah.weight_decay = 0.1; ah.wd_ratio = 0.2; sh.momentum = 0.9; sh.nesterov = true; sh.weight_decay = 1e-3; break;
    case 2: ah.delta = 3.0; ah.beta1 = 0.8; ah.beta2 = 0.99; ah.eps = 1e-6; sh.momentum = 0.5; sh.dampening = 0.1; sh.delta = 3.0; break;
    default: ah.weight_decay = -1; sh.momentum = 0; sh.weight_decay = 0.01; sh.eps = 1e-6; break;
  }
  Gpu gpu(adam, ts, cfg);
  std::vector<Tensor> got = ts;
  const int steps = 3;
  const GradKind kinds[] = {kRandom, kChannelOrth, kLayerOrth, kParallel, kZero, kZeroRow};
  for (int st = 0; st < steps; ++st) {
    std::vector<std::vector<float>> grads(ts.size());
    std::vector<int> active;
    for (size_t i = 0; i < ts.size(); ++i) {
      grads[i] = make_grad(ts[i], kinds[(i + st + variant) % 6], rng);
      if ((i + st) % 7 == 6) continue;  // no gradient this step: skipped entirely
      active.push_back(gpu.ids[i]);
      CUDA_OK(adamp_cuda_upload(gpu.ctx, gpu.ids[i], ADAMP_CUDA_G, grads[i].data(), ts[i].numel));
    }
    std::vector<double> ref_info(active.size() * 8), gpu_info(active.size() * 8);
    std::vector<Tensor> before = ts;
    size_t k = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      if ((i + st) % 7 == 6) continue;
      if (adam) ref_adamp(ts[i], grads[i], ah, &ref_info[8 * k]);
      else ref_sgdp(ts[i], grads[i], sh, &ref_info[8 * k]);
      ++k;
    }
    if (adam) {
      adamp_cuda_adamp_hp hp = {ah.lr, ah.beta1, ah.beta2, ah.eps, ah.weight_decay, ah.delta, ah.wd_ratio, ah.nesterov};
      CUDA_OK(adamp_cuda_step_adamp(gpu.ctx, active.data(), (int)active.size(), &hp));
    } else {
      adamp_cuda_sgdp_hp hp = {sh.lr, sh.momentum, sh.dampening, sh.weight_decay, sh.eps, sh.delta, sh.wd_ratio, sh.nesterov};
      CUDA_OK(adamp_cuda_step_sgdp(gpu.ctx, active.data(), (int)active.size(), &hp));
    }
    CUDA_OK(adamp_cuda_info(gpu.ctx, active.data(), (int)active.size(), gpu_info.data()));
    gpu.download(got);
    char what[160];
    k = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      if ((i + st) % 7 == 6) continue;
      std::snprintf(what, sizeof(what), "%s seed %llu variant %d [%s] step %d", adam ? "adamp" : "sgdp",
                    (unsigned long long)seed, variant, cfg_name, st + 1);
      compare_info(what, i, &gpu_info[8 * k], &ref_info[8 * k]);
      const double grad_scale = max_abs(grads[i]);
      double worst = 0;
      const double sp = std::fmax(max_abs(ts[i].p), max_abs(before[i].p));
      EXPECT(close(got[i].p, ts[i].p, sp, 1e-6, &worst), "%s tensor %zu: p differs by %.3g (scale %.3g)", what, i, worst, sp);
      const double sm = std::fmax(std::fmax(max_abs(ts[i].m), max_abs(before[i].m)), grad_scale);
      EXPECT(close(got[i].m, ts[i].m, sm, 1e-6, &worst), "%s tensor %zu: m differs by %.3g (scale %.3g)", what, i, worst, sm);
      if (adam) {
        const double sv = std::fmax(max_abs(ts[i].v), max_abs(before[i].v));
        EXPECT(close(got[i].v, ts[i].v, sv, 1e-6, &worst), "%s tensor %zu: v differs by %.3g", what, i, worst);
      }
      ++k;
    }
    // Keep both sides on the same values so differences do not compound over steps.
    for (size_t i = 0; i < ts.size(); ++i) {
      got[i].step = ts[i].step;
      ts[i].p = got[i].p;
      ts[i].m = got[i].m;
      ts[i].v = got[i].v;
    }
  }
}

/** Two fresh contexts, same inputs: every output bit identical. */
void run_determinism(bool adam, const adamp_cuda_config* cfg, bool quick) {
  std::mt19937_64 rng(1234);
  std::vector<Tensor> ts;
  for (const Shape& s : shapes(quick)) ts.push_back(make_tensor(s.dims, s.axis, rng, adam));
  std::vector<std::vector<float>> grads;
  for (size_t i = 0; i < ts.size(); ++i) grads.push_back(make_grad(ts[i], (GradKind)(i % 6), rng));
  std::vector<std::vector<float>> outs[2];
  std::vector<double> infos[2];
  for (int run = 0; run < 2; ++run) {
    Gpu gpu(adam, ts, cfg);
    for (int st = 0; st < 3; ++st) {
      for (size_t i = 0; i < ts.size(); ++i) CUDA_OK(adamp_cuda_upload(gpu.ctx, gpu.ids[i], ADAMP_CUDA_G, grads[i].data(), ts[i].numel));
      if (adam) {
        adamp_cuda_adamp_hp hp = {1e-3, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.1, 0};
        CUDA_OK(adamp_cuda_step_adamp(gpu.ctx, gpu.ids.data(), (int)gpu.ids.size(), &hp));
      } else {
        adamp_cuda_sgdp_hp hp = {0.1, 0.9, 0, 1e-4, 1e-8, 0.1, 0.1, 0};
        CUDA_OK(adamp_cuda_step_sgdp(gpu.ctx, gpu.ids.data(), (int)gpu.ids.size(), &hp));
      }
    }
    infos[run].resize(ts.size() * 8);
    CUDA_OK(adamp_cuda_info(gpu.ctx, gpu.ids.data(), (int)gpu.ids.size(), infos[run].data()));
    std::vector<Tensor> got = ts;
    gpu.download(got);
    for (auto& t : got) {
      outs[run].push_back(t.p);
      outs[run].push_back(t.m);
      outs[run].push_back(t.v);
    }
  }
  bool same = infos[0].size() == infos[1].size() &&
              std::memcmp(infos[0].data(), infos[1].data(), infos[0].size() * sizeof(double)) == 0;
  for (size_t i = 0; i < outs[0].size(); ++i)
    same = same && outs[0][i].size() == outs[1][i].size() &&
           (outs[0][i].empty() || std::memcmp(outs[0][i].data(), outs[1][i].data(), outs[0][i].size() * 4) == 0);
  EXPECT(same, "%s: two runs of the same steps differ bitwise", adam ? "adamp" : "sgdp");
}

/** More tensors than one launch holds (kMaxTensors = 128), steps repeated. */
void run_many_tensors(bool adam, bool quick) {
  std::mt19937_64 rng(99);
  std::vector<Tensor> ts;
  for (int i = 0; i < (quick ? 140 : 300); ++i) {
    const int64_t c = 1 + (int64_t)(rng() % 96), k = 1 + (int64_t)(rng() % 200);
    if (i % 3 == 0) ts.push_back(make_tensor({c}, 0, rng, adam));
    else ts.push_back(make_tensor({c, k}, i % 5 == 0 ? -1 : 0, rng, adam));
  }
  adamp_cuda_config cfg = {1024, 4096, 2, 0};
  Gpu gpu(adam, ts, &cfg);
  std::vector<Tensor> got = ts;
  AdamPHp ah;
  ah.weight_decay = 0.01;
  SGDPHp sh;
  sh.momentum = 0.9;
  sh.weight_decay = 1e-4;
  for (int st = 0; st < (quick ? 2 : 4); ++st) {
    std::vector<double> ref_info(ts.size() * 8), gpu_info(ts.size() * 8);
    for (size_t i = 0; i < ts.size(); ++i) {
      std::vector<float> g = make_grad(ts[i], (GradKind)((i + st) % 4), rng);
      CUDA_OK(adamp_cuda_upload(gpu.ctx, gpu.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
      if (adam) ref_adamp(ts[i], g, ah, &ref_info[8 * i]);
      else ref_sgdp(ts[i], g, sh, &ref_info[8 * i]);
    }
    if (adam) {
      adamp_cuda_adamp_hp hp = {ah.lr, ah.beta1, ah.beta2, ah.eps, ah.weight_decay, ah.delta, ah.wd_ratio, 0};
      CUDA_OK(adamp_cuda_step_adamp(gpu.ctx, gpu.ids.data(), (int)gpu.ids.size(), &hp));
    } else {
      adamp_cuda_sgdp_hp hp = {sh.lr, sh.momentum, sh.dampening, sh.weight_decay, sh.eps, sh.delta, sh.wd_ratio, 0};
      CUDA_OK(adamp_cuda_step_sgdp(gpu.ctx, gpu.ids.data(), (int)gpu.ids.size(), &hp));
    }
    CUDA_OK(adamp_cuda_info(gpu.ctx, gpu.ids.data(), (int)gpu.ids.size(), gpu_info.data()));
    gpu.download(got);
    for (size_t i = 0; i < ts.size(); ++i) {
      char what[64];
      std::snprintf(what, sizeof(what), "%s many-tensors step %d", adam ? "adamp" : "sgdp", st + 1);
      compare_info(what, i, &gpu_info[8 * i], &ref_info[8 * i]);
      double worst = 0;
      EXPECT(close(got[i].p, ts[i].p, max_abs(ts[i].p), 1e-6, &worst), "%s tensor %zu: p differs by %.3g", what, i, worst);
      ts[i].p = got[i].p;
      ts[i].m = got[i].m;
      ts[i].v = got[i].v;
    }
  }
}

/** The C API refuses what would corrupt a step, and says so with ADAMP_CUDA_E_INVALID. */
void run_api_checks() {
  adamp_cuda_ctx* ctx = nullptr;
  CUDA_OK(adamp_cuda_create(&ctx, ADAMP_CUDA_ADAMP, 0, nullptr));
  adamp_cuda_tensor_desc d = {12, 1, 3, 4, 1};
  int id = -1;
  CUDA_OK(adamp_cuda_add_tensor(ctx, &d, &id));
  adamp_cuda_tensor_desc bad = {12, 1, 5, 4, 1};  // 1 x 5 x 4 != 12
  int id2 = -1;
  EXPECT(adamp_cuda_add_tensor(ctx, &bad, &id2) == ADAMP_CUDA_E_INVALID, "a desc whose geometry does not match numel is accepted");
  std::vector<float> x(12, 1.f), y(11, 1.f);
  EXPECT(adamp_cuda_upload(ctx, id, ADAMP_CUDA_P, y.data(), 11) == ADAMP_CUDA_E_INVALID, "an upload of the wrong size is accepted");
  EXPECT(adamp_cuda_upload(ctx, id + 1, ADAMP_CUDA_P, x.data(), 12) == ADAMP_CUDA_E_INVALID, "an upload to an unknown id is accepted");
  const int dup[2] = {id, id};
  adamp_cuda_adamp_hp hp = {1e-3, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 0};
  EXPECT(adamp_cuda_step_adamp(ctx, dup, 2, &hp) == ADAMP_CUDA_E_INVALID, "a step naming a tensor twice is accepted");
  adamp_cuda_sgdp_hp sh = {0.1, 0, 0, 0, 1e-8, 0.1, 0.1, 0};
  EXPECT(adamp_cuda_step_sgdp(ctx, &id, 1, &sh) == ADAMP_CUDA_E_INVALID, "an SGDP step on an AdamP context is accepted");
  EXPECT(adamp_cuda_device_ptr(ctx, id, ADAMP_CUDA_V) != nullptr, "an AdamP tensor has no exp_avg_sq buffer");
  adamp_cuda_destroy(ctx);
  CUDA_OK(adamp_cuda_create(&ctx, ADAMP_CUDA_SGDP, 0, nullptr));
  CUDA_OK(adamp_cuda_add_tensor(ctx, &d, &id));
  EXPECT(adamp_cuda_device_ptr(ctx, id, ADAMP_CUDA_V) == nullptr, "an SGDP tensor has an exp_avg_sq buffer");
  EXPECT(adamp_cuda_upload(ctx, id, ADAMP_CUDA_V, x.data(), 12) == ADAMP_CUDA_E_INVALID, "an upload of v to SGDP is accepted");
  adamp_cuda_destroy(ctx);
}

/** Device memory, external (bound) buffers, strided copies and streams (device_memory.cu). */
void run_device_memory_checks() {
  adamp_cuda_memory_stats before, now;
  adamp_cuda_get_memory_stats(&before);
  // Strided copies: a 4x6 tensor stored column-major (strides {1, 4}).
  const int64_t shape[2] = {4, 6}, colmajor[2] = {1, 4};
  std::vector<float> host(24), back(24), raw(24);
  for (int i = 0; i < 24; ++i) host[i] = (float)i - 3.5f;
  void* buf = nullptr;
  CUDA_OK(adamp_cuda_alloc(0, 24 * sizeof(float), &buf));
  int kind = -1, dev = -1;
  CUDA_OK(adamp_cuda_pointer_info(buf, &kind, &dev));
  EXPECT(kind == 2 && dev == 0, "an allocation is not reported as device memory of device 0 (kind %d, device %d)", kind, dev);
  float* f = static_cast<float*>(buf);
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
  size_t free_b = 0, total_b = 0;
  CUDA_OK(adamp_cuda_mem_info(0, &free_b, &total_b));
  void* huge = nullptr;
  adamp_cuda_memory_stats mid;
  adamp_cuda_get_memory_stats(&mid);
  EXPECT(adamp_cuda_alloc(0, (int64_t)total_b + ((int64_t)1 << 30), &huge) == 2 && huge == nullptr, "an allocation beyond the device's memory succeeded");
  adamp_cuda_get_memory_stats(&now);
  EXPECT(now.live_allocations == mid.live_allocations && now.live_bytes == mid.live_bytes, "a failed allocation was counted");

  // A tensor whose p and g are the caller's buffers steps exactly like one the context owns.
  for (int adam = 1; adam >= 0; --adam) {
    adamp_cuda_tensor_desc d = {24, 1, 4, 6, 1};
    std::vector<float> p0(24), g0(24), a(24), b(24);
    for (int i = 0; i < 24; ++i) {
      p0[i] = std::sin(0.7f * i);
      g0[i] = 0.1f * std::cos(1.3f * i);
    }
    adamp_cuda_ctx *own = nullptr, *ext = nullptr;
    const int opt = adam ? ADAMP_CUDA_ADAMP : ADAMP_CUDA_SGDP;
    CUDA_OK(adamp_cuda_create(&own, opt, 0, nullptr));
    CUDA_OK(adamp_cuda_create(&ext, opt, 0, nullptr));
    int i1 = -1, i2 = -1;
    CUDA_OK(adamp_cuda_add_tensor(own, &d, &i1));
    CUDA_OK(adamp_cuda_add_tensor_ex(ext, &d, ADAMP_CUDA_EXTERNAL_P | ADAMP_CUDA_EXTERNAL_G, &i2));
    EXPECT(adamp_cuda_bind(ext, i2, ADAMP_CUDA_M, f) == ADAMP_CUDA_E_INVALID, "binding the state buffer is accepted");
    EXPECT(adamp_cuda_bind(own, i1, ADAMP_CUDA_P, f) == ADAMP_CUDA_E_INVALID, "binding a buffer the context owns is accepted");
    void *pb = nullptr, *gb = nullptr;
    CUDA_OK(adamp_cuda_alloc(0, 24 * sizeof(float), &pb));
    CUDA_OK(adamp_cuda_alloc(0, 24 * sizeof(float), &gb));
    CUDA_OK(adamp_cuda_copy_to_device(0, static_cast<float*>(pb), shape, nullptr, 2, p0.data(), nullptr));
    CUDA_OK(adamp_cuda_copy_to_device(0, static_cast<float*>(gb), shape, nullptr, 2, g0.data(), nullptr));
    CUDA_OK(adamp_cuda_bind(ext, i2, ADAMP_CUDA_P, static_cast<float*>(pb)));
    CUDA_OK(adamp_cuda_bind(ext, i2, ADAMP_CUDA_G, static_cast<float*>(gb)));
    CUDA_OK(adamp_cuda_upload(own, i1, ADAMP_CUDA_P, p0.data(), 24));
    CUDA_OK(adamp_cuda_upload(own, i1, ADAMP_CUDA_G, g0.data(), 24));
    // The external context queues on the other context's stream: a caller's stream.
    CUDA_OK(adamp_cuda_set_stream(ext, adamp_cuda_stream(own)));
    EXPECT(adamp_cuda_stream(ext) == adamp_cuda_stream(own), "set_stream did not take");
    adamp_cuda_adamp_hp hp = {1e-2, 0.9, 0.999, 1e-8, 0.05, 0.1, 0.1, 1};
    adamp_cuda_sgdp_hp sh = {0.1, 0.9, 0, 1e-3, 1e-8, 0.1, 0.1, 0};
    for (int k = 0; k < 3; ++k) {
      if (adam) {
        CUDA_OK(adamp_cuda_step_adamp(own, &i1, 1, &hp));
        CUDA_OK(adamp_cuda_step_adamp(ext, &i2, 1, &hp));
      } else {
        CUDA_OK(adamp_cuda_step_sgdp(own, &i1, 1, &sh));
        CUDA_OK(adamp_cuda_step_sgdp(ext, &i2, 1, &sh));
      }
    }
    void* ev = nullptr;
    CUDA_OK(adamp_cuda_record(ext, &ev));
    CUDA_OK(adamp_cuda_event_wait(ev));
    CUDA_OK(adamp_cuda_set_stream(ext, nullptr));
    CUDA_OK(adamp_cuda_download(own, i1, ADAMP_CUDA_P, a.data(), 24));
    CUDA_OK(adamp_cuda_copy_to_host(0, b.data(), static_cast<const float*>(pb), shape, nullptr, 2, nullptr));
    EXPECT(std::memcmp(a.data(), b.data(), sizeof(float) * 24) == 0, "%s: external buffers step differently from owned ones", adam ? "adamp" : "sgdp");
    EXPECT(a != p0, "the step did not move the params");
    adamp_cuda_destroy(ext);  // must not free the caller's buffers
    CUDA_OK(adamp_cuda_copy_to_host(0, b.data(), static_cast<const float*>(pb), shape, nullptr, 2, nullptr));
    EXPECT(std::memcmp(a.data(), b.data(), sizeof(float) * 24) == 0, "destroying a context changed an external buffer");
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
}

#if defined(ADAMP_TEST_CPU_CORE)
/** The host reference is the CPU core's arithmetic: check that once, so the GPU comparison above transfers. */
void run_ref_vs_cpu_core() {
  std::mt19937_64 rng(7);
  for (int adam = 0; adam < 2; ++adam) {
    std::vector<Tensor> a, b;
    for (const Shape& s : shapes(true)) a.push_back(make_tensor(s.dims, s.axis, rng, adam != 0));
    b = a;
    std::vector<std::vector<float>> grads;
    for (size_t i = 0; i < a.size(); ++i) grads.push_back(make_grad(a[i], (GradKind)(i % 6), rng));
    std::vector<double> ri(a.size() * 8), ci(a.size() * 8);
    std::vector<adamp::cpu::TensorSlot> slots;
    for (size_t i = 0; i < a.size(); ++i) {
      if (adam) ref_adamp(a[i], grads[i], AdamPHp(), &ri[8 * i]);
      else ref_sgdp(a[i], grads[i], SGDPHp(), &ri[8 * i]);
      adamp::cpu::TensorSlot s = {b[i].p.data(), grads[i].data(), b[i].m.data(), adam ? b[i].v.data() : nullptr,
                                  b[i].numel, b[i].outer, b[i].channels, b[i].inner, b[i].eligible, 1.0};
      slots.push_back(s);
    }
    if (adam) {
      adamp::cpu::AdamPHyper hp = {1e-3, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, false};
      adamp::cpu::adamp_step(slots.data(), slots.size(), hp, ci.data(), 1);
    } else {
      adamp::cpu::SGDPHyper hp = {0.1, 0, 0, 0, 1e-8, 0.1, 0.1, false};
      adamp::cpu::sgdp_step(slots.data(), slots.size(), hp, ci.data(), 1);
    }
    for (size_t i = 0; i < a.size(); ++i) {
      compare_info("host reference vs CPU core", i, &ri[8 * i], &ci[8 * i]);
      double worst = 0;
      EXPECT(close(a[i].p, b[i].p, max_abs(a[i].p), 1e-6, &worst), "reference vs CPU core tensor %zu: p differs by %.3g", i, worst);
    }
  }
}
#endif

// ---------------------------------------------------------------------------------------------
// Reference fixtures (official implementation): test/fixtures/<case>.json + <case>.f32.

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

void run_fixture(const std::string& dir, const std::string& name) {
  std::string js, bin;
  if (!read_file(dir + "/" + name + ".json", js) || !read_file(dir + "/" + name + ".f32", bin)) {
    EXPECT(false, "fixture %s: cannot read %s/%s.{json,f32}", name.c_str(), dir.c_str(), name.c_str());
    return;
  }
  const mini_json::Value c = mini_json::parse(js);
  const float* data = reinterpret_cast<const float*>(bin.data());
  const int64_t nfloats = (int64_t)(bin.size() / 4);
  auto slice = [&](const mini_json::Value& r) {
    const int64_t off = (int64_t)r[0].number(), len = (int64_t)r[1].number();
    if (off < 0 || off + len > nfloats) throw std::runtime_error("fixture slice out of range");
    return std::vector<float>(data + off, data + off + len);
  };
  const bool adam = c["optimizer"].str == "adamp";
  const mini_json::Value& h = c["hyperparameters"];
  AdamPHp ah;
  SGDPHp sh;
  if (adam) {
    ah.lr = h["lr"].number(ah.lr);
    if (h.has("betas")) {
      ah.beta1 = h["betas"][0].number();
      ah.beta2 = h["betas"][1].number();
    }
    ah.eps = h["eps"].number(ah.eps);
    ah.weight_decay = h["weight_decay"].number(0);
    ah.delta = h["delta"].number(ah.delta);
    ah.wd_ratio = h["wd_ratio"].number(ah.wd_ratio);
    ah.nesterov = h["nesterov"].number(0) != 0;
  } else {
    sh.lr = h["lr"].number();
    sh.momentum = h["momentum"].number(0);
    sh.dampening = h["dampening"].number(0);
    sh.weight_decay = h["weight_decay"].number(0);
    sh.eps = h["eps"].number(sh.eps);
    sh.delta = h["delta"].number(sh.delta);
    sh.wd_ratio = h["wd_ratio"].number(sh.wd_ratio);
    sh.nesterov = h["nesterov"].number(0) != 0;
  }
  std::vector<Tensor> ts;
  for (size_t i = 0; i < c["params"].size(); ++i) {
    Tensor t;
    for (const auto& d : c["params"][i]["shape"].arr) t.shape.push_back((int64_t)d.number());
    geometry(t);
    t.p = slice(c["params"][i]["data"]);
    t.m.assign(t.numel, 0.f);
    t.v.assign(adam ? t.numel : 0, 0.f);
    ts.push_back(t);
  }
  Gpu gpu(adam, ts, nullptr);
  std::vector<Tensor> got = ts;
  std::vector<float> prev_max(ts.size(), 0.f);
  for (size_t st = 0; st < c["steps"].size(); ++st) {
    std::vector<int> active;
    std::vector<size_t> which;
    double gmax = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      const mini_json::Value& gr = c["grads"][st][i];
      if (gr.is_null()) continue;
      std::vector<float> g = slice(gr);
      gmax = std::fmax(gmax, max_abs(g));
      CUDA_OK(adamp_cuda_upload(gpu.ctx, gpu.ids[i], ADAMP_CUDA_G, g.data(), ts[i].numel));
      active.push_back(gpu.ids[i]);
      which.push_back(i);
    }
    if (adam) {
      adamp_cuda_adamp_hp hp = {ah.lr, ah.beta1, ah.beta2, ah.eps, ah.weight_decay, ah.delta, ah.wd_ratio, ah.nesterov};
      CUDA_OK(adamp_cuda_step_adamp(gpu.ctx, active.data(), (int)active.size(), &hp));
    } else {
      adamp_cuda_sgdp_hp hp = {sh.lr, sh.momentum, sh.dampening, sh.weight_decay, sh.eps, sh.delta, sh.wd_ratio, sh.nesterov};
      CUDA_OK(adamp_cuda_step_sgdp(gpu.ctx, active.data(), (int)active.size(), &hp));
    }
    std::vector<double> info(active.size() * 8);
    CUDA_OK(adamp_cuda_info(gpu.ctx, active.data(), (int)active.size(), info.data()));
    std::vector<Tensor> before = got;
    gpu.download(got);
    for (size_t a = 0; a < which.size(); ++a) {
      const size_t i = which[a];
      const mini_json::Value& e = c["steps"][st]["params"][i];
      char what[160];
      std::snprintf(what, sizeof(what), "fixture %s step %zu param %zu", name.c_str(), st + 1, i);
      EXPECT(e["projection"].str == decision_name(info[8 * a]), "%s: decision %s, expected %s", what,
             decision_name(info[8 * a]), e["projection"].str.c_str());
      const std::vector<float> ep = slice(e["data"]);
      double worst = 0;
      const double sp = std::fmax(max_abs(ep), max_abs(before[i].p));
      EXPECT(close(got[i].p, ep, sp, 1e-6, &worst), "%s: p differs by %.3g (scale %.3g)", what, worst, sp);
      const mini_json::Value& s = e["state"];
      const std::vector<float> em = slice(adam ? s["exp_avg"] : s["momentum"]);
      // The buffer can be projected down to rounding noise: compare against its pre-projection size.
      const double sm = std::fmax(std::fmax(max_abs(em), max_abs(before[i].m)), gmax);
      EXPECT(close(got[i].m, em, sm, 1e-6, &worst), "%s: %s differs by %.3g (scale %.3g)", what, adam ? "exp_avg" : "momentum",
             worst, sm);
      if (adam) {
        const std::vector<float> ev = slice(s["exp_avg_sq"]);
        EXPECT(close(got[i].v, ev, std::fmax(max_abs(ev), max_abs(before[i].v)), 1e-6, &worst), "%s: exp_avg_sq differs by %.3g",
               what, worst);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string fixtures = "test/fixtures";
  bool quick = false;     // fewer shapes and cases
  bool sanitize = false;  // fewer still, for compute-sanitizer (every item layout is still reached)
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--fixtures") && i + 1 < argc) fixtures = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--sanitize")) quick = sanitize = true;
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

#if defined(ADAMP_TEST_CPU_CORE)
  run_ref_vs_cpu_core();
  std::printf("host reference vs CPU core: done\n");
#endif
  run_api_checks();
  run_device_memory_checks();
  std::printf("device memory, external buffers, strided copies, streams: done (%d checks, %d failures so far)\n", g_checks, g_failures);
  const adamp_cuda_config small_cfg = {256, 2048, 2, 0};
  const adamp_cuda_config one_block = {8192, 1 << 20, 1, 1};
  const int seeds = quick ? 1 : 3;
  for (int adam = 1; adam >= 0; --adam) {
    for (int s = 0; s < seeds; ++s)
      for (int variant = 0; variant < 4; ++variant) {
        if (sanitize && variant != 1 && variant != 2) continue;
        if (!sanitize || variant == 1) run_random_case(adam != 0, 1000 + 17 * s + variant, variant, nullptr, "default", quick);
        if (!quick || variant == 1 || variant == 2)
          run_random_case(adam != 0, 5000 + 17 * s + variant, variant, &small_cfg, "chunk256", quick);
      }
    if (!sanitize) run_random_case(adam != 0, 42, 1, &one_block, "1 block/SM", quick);
    std::printf("%s random cases: done (%d checks, %d failures so far)\n", adam ? "adamp" : "sgdp", g_checks, g_failures);
    if (!sanitize) run_determinism(adam != 0, nullptr, quick);
    run_determinism(adam != 0, &small_cfg, quick);
    run_many_tensors(adam != 0, quick);
    std::printf("%s determinism and many tensors: done\n", adam ? "adamp" : "sgdp");
  }
  const char* cases[] = {"adamp_conv_bias_wd",    "adamp_custom_delta_eps_betas",     "adamp_edge_zeros_tiny",
                         "adamp_nesterov_linear_layer", "sgdp_1x1conv_nesterov", "sgdp_buffer_projection_dampening",
                         "sgdp_momentum0_wd0_nullgrads", "sgdp_tiny_grads_eps"};
  {
    std::string probe;
    if (!read_file(fixtures + "/adamp_conv_bias_wd.json", probe)) {
      std::printf("fixtures: not found under %s (pass --fixtures DIR); FAILING\n", fixtures.c_str());
      ++g_failures;
    } else {
      for (const char* c : cases) run_fixture(fixtures, c);
      std::printf("fixtures: done\n");
    }
  }
  std::printf("%d passed, %d failed\n", g_checks - g_failures, g_failures);
  return g_failures == 0 ? 0 : 1;
}
