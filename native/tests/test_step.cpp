// The CPU core's step (native/cpu/step.h) for every registered optimizer: against plain
// one-element-at-a-time references written from the definitions (docs/numerics.md and the policy
// headers' comments, in plain float operations); bit-identity across thread counts, kernel sets,
// speculation modes and the norms switch; the channels-innermost layout against the same tensor
// stored channels-first; the float-range fallbacks.
#include "step.h"

#include <string.h>

#include <cmath>
#include <vector>

#include "adamp/math.h"
#include "check.h"
#include "tensors.h"

using namespace adamp;
using cpu::StepConfig;
using cpu::TensorSlot;

// ------------------------------------------------------------------------------------------------
// Hyperparameters in each policy's wire order.

static std::vector<double> adamp_hyper(double lr, double b1, double b2, double eps, double wd, double delta, double wdr,
                                       bool nesterov) {
  return {lr, b1, b2, eps, wd, delta, wdr, nesterov ? 1.0 : 0.0};
}
static std::vector<double> sgdp_hyper(double lr, double mom, double damp, double wd, bool nesterov, double eps,
                                      double delta, double wdr) {
  return {lr, mom, damp, wd, nesterov ? 1.0 : 0.0, eps, delta, wdr};
}
static std::vector<double> adamw_hyper(double lr, double b1, double b2, double eps, double wd) { return {lr, b1, b2, eps, wd}; }
static std::vector<double> sgd_hyper(double lr, double mom, double damp, double wd, bool nesterov) {
  return {lr, mom, damp, wd, nesterov ? 1.0 : 0.0};
}

static void run(OptKind kind, std::vector<Tensor>& ts, const std::vector<double>& hyper, double step, double* info,
                int threads, bool norms = true) {
  int field = -1;
  const char* bad = cpu::check_hyper(kind, hyper.data(), &field);
  if (bad != nullptr) fprintf(stderr, "  invalid test hyperparameters: %s %s\n", cpu::hyper_name(kind, field), bad);
  CHECK(bad == nullptr);
  std::vector<TensorSlot> slots;
  for (Tensor& t : ts) slots.push_back(t.slot(step));
  StepConfig cfg;
  cfg.threads = threads;
  cfg.norms = norms;
  cpu::step(kind, slots.data(), slots.size(), hyper.data(), info, cfg);
}

static void run1(OptKind kind, Tensor& t, const std::vector<double>& hyper, double step, double* info, int threads,
                 bool norms = true) {
  std::vector<Tensor> ts(1, t);
  run(kind, ts, hyper, step, info, threads, norms);
  t = ts[0];
}

// ------------------------------------------------------------------------------------------------
// References, one element at a time, sums in plain sequential order.

static int64_t chan(const Tensor& t, size_t i) { return (int64_t)(i / (size_t)t.inner) % t.channels; }

/** The decision of an eligible tensor from its elements' g, p and u (double sums in element order). */
static DecisionResult ref_decide(const Tensor& t, const std::vector<float>& u, double delta, double wdr, double eps,
                                 std::vector<ChannelSums>& cs) {
  cs.assign((size_t)t.channels, ChannelSums{0, 0, 0, 0});
  for (size_t i = 0; i < t.p.size(); ++i) sums_accumulate(cs[(size_t)chan(t, i)], t.g[i], t.p[i], u[i]);
  return decide(cs.data(), t.channels, (int64_t)t.p.size(), delta, wdr, eps);
}

/** ||p||^2 before, after and ||dp||^2 in double. */
static void ref_norms(const std::vector<float>& p0, const std::vector<float>& p1, double* info) {
  double b = 0, a = 0, d = 0;
  for (size_t i = 0; i < p0.size(); ++i) {
    b += (double)p0[i] * p0[i];
    a += (double)p1[i] * p1[i];
    d += ((double)p1[i] - p0[i]) * ((double)p1[i] - p0[i]);
  }
  info[kInfoNormSqBefore] = b;
  info[kInfoNormSqAfter] = a;
  info[kInfoDeltaSq] = d;
}

/** AdamP (docs/numerics.md "AdamP"; adamp.h). h: wire order. */
static void ref_adamp(Tensor& t, const std::vector<double>& h, double step, double* info) {
  const double lr = h[0], beta1 = h[1], beta2 = h[2], eps = h[3], wd = h[4], delta = h[5], wdr = h[6];
  const bool nesterov = h[7] != 0;
  const float b1 = (float)beta1, omb1 = (float)(1.0 - beta1), b2 = (float)beta2, omb2 = (float)(1.0 - beta2);
  const float sqbc2 = (float)sqrt(1.0 - pow(beta2, step)), epsf = (float)eps;
  const float neg_step = (float)(-(lr / (1.0 - pow(beta1, step))));
  const size_t n = t.p.size();
  std::vector<float> u(n), p0 = t.p;
  float* m = t.st[0].data();
  float* v = t.st[1].data();
  for (size_t i = 0; i < n; ++i) {
    const float g = t.g[i];
    m[i] = fmaf(g, omb1, m[i] * b1);
    v[i] = fmaf(omb2 * g, g, v[i] * b2);
    const float den = sqrtf(v[i]) / sqbc2 + epsf;
    u[i] = nesterov ? (b1 * m[i] + omb1 * g) / den : m[i] / den;
  }
  DecisionResult r;
  std::vector<ChannelSums> cs;
  if (t.eligible) {
    r = ref_decide(t, u, delta, wdr, eps, cs);
  } else {
    r.code = kDecisionNotEligible;
    r.ratio = 1.0;
  }
  const float wdf = wd > 0 ? (float)(1.0 - lr * wd * r.ratio) : 1.0f;
  for (size_t i = 0; i < n; ++i) {
    float ui = u[i];
    if (is_projected(r.code)) {
      const ProjCoef k = proj_coef_for(r, cs.data(), chan(t, i), epsf);
      ui = ui - (t.p[i] / k.div) * k.scale;
    }
    t.p[i] = fmaf(ui, neg_step, t.p[i] * wdf);
  }
  info[kInfoDecision] = r.code;
  ref_norms(p0, t.p, info);
}

/** SGDP (docs/numerics.md "SGDP"; sgdp.h). h: wire order. */
static void ref_sgdp(Tensor& t, const std::vector<double>& h, double* info) {
  const double lr = h[0], mom = h[1], damp = h[2], wd = h[3], eps = h[5], delta = h[6], wdr = h[7];
  const bool nesterov = h[4] != 0;
  const float momf = (float)mom, omd = (float)(1.0 - damp), neg_lr = (float)(-lr);
  const size_t n = t.p.size();
  std::vector<float> d(n), p0 = t.p;
  float* buf = t.st[0].data();
  for (size_t i = 0; i < n; ++i) {
    buf[i] = fmaf(t.g[i], omd, buf[i] * momf);
    d[i] = nesterov ? t.g[i] + momf * buf[i] : buf[i];
  }
  DecisionResult r;
  std::vector<ChannelSums> cs;
  if (t.eligible) {
    r = ref_decide(t, d, delta, wdr, eps, cs);
  } else {
    r.code = kDecisionNotEligible;
    r.ratio = 1.0;
  }
  const float wdf = wd > 0 ? (float)(1.0 - (lr * wd * r.ratio) / (1.0 - mom)) : 1.0f;
  for (size_t i = 0; i < n; ++i) {
    if (is_projected(r.code)) {
      const ProjCoef k = proj_coef_for(r, cs.data(), chan(t, i), (float)eps);
      d[i] = d[i] - (t.p[i] / k.div) * k.scale;
      if (!nesterov) buf[i] = d[i];  // the buffer IS d without Nesterov
    }
    t.p[i] = fmaf(d[i], neg_lr, t.p[i] * wdf);
  }
  info[kInfoDecision] = r.code;
  ref_norms(p0, t.p, info);
}

/** AdamW as torch.optim.AdamW 1.13 (adamw.h): p *= f32(1 - lr*wd); p += f32(f32(-lr/bc1) * m) / den. */
static void ref_adamw(Tensor& t, const std::vector<double>& h, double step, double* info) {
  const double lr = h[0], beta1 = h[1], beta2 = h[2], eps = h[3], wd = h[4];
  const float b1 = (float)beta1, omb1 = (float)(1.0 - beta1), b2 = (float)beta2, omb2 = (float)(1.0 - beta2);
  const float sqbc2 = (float)sqrt(1.0 - pow(beta2, step)), epsf = (float)eps;
  const float neg_step = (float)(-(lr / (1.0 - pow(beta1, step)))), wdf = (float)(1.0 - lr * wd);
  std::vector<float> p0 = t.p;
  float* m = t.st[0].data();
  float* v = t.st[1].data();
  for (size_t i = 0; i < t.p.size(); ++i) {
    const float g = t.g[i];
    const float pd = t.p[i] * wdf;
    m[i] = fmaf(g, omb1, m[i] * b1);
    v[i] = fmaf(omb2 * g, g, v[i] * b2);
    const float den = sqrtf(v[i]) / sqbc2 + epsf;
    t.p[i] = pd + (neg_step * m[i]) / den;
  }
  info[kInfoDecision] = kDecisionNotApplicable;
  ref_norms(p0, t.p, info);
}

/**
 * SGD as torch.optim.SGD 1.13 (sgd.h): d = g + wd*p (wd != 0); with momentum the buffer is a clone
 * of d at the tensor's first step, then buf*momentum + (1-dampening)*d; Nesterov d + momentum*buf.
 */
static void ref_sgd(Tensor& t, const std::vector<double>& h, double step, double* info) {
  const double lr = h[0], mom = h[1], damp = h[2], wd = h[3];
  const bool nesterov = h[4] != 0;
  const float momf = (float)mom, omd = (float)(1.0 - damp), neg_lr = (float)(-lr), wdf = (float)wd;
  std::vector<float> p0 = t.p;
  float* buf = t.st[0].data();
  for (size_t i = 0; i < t.p.size(); ++i) {
    float d = wd != 0 ? fmaf(t.p[i], wdf, t.g[i]) : t.g[i];
    if (mom != 0) {
      buf[i] = step <= 1 ? d : fmaf(d, omd, buf[i] * momf);
      d = nesterov ? fmaf(buf[i], momf, d) : buf[i];
    }
    t.p[i] = fmaf(d, neg_lr, t.p[i]);
  }
  info[kInfoDecision] = kDecisionNotApplicable;
  ref_norms(p0, t.p, info);
}

static double max_abs(const std::vector<float>& x) {
  double m = 0;
  for (float f : x) m = fabs(f) > m ? fabs(f) : m;
  return m;
}

static bool close(const std::vector<float>& a, const std::vector<float>& b) {
  const double tol = 1e-6 * max_abs(b);
  for (size_t i = 0; i < a.size(); ++i)
    if (!(fabs((double)a[i] - b[i]) <= tol)) {
      fprintf(stderr, "  element %zu: %.9g vs %.9g\n", i, a[i], b[i]);
      return false;
    }
  return true;
}

static bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

/** |x - y| <= rel * |y| (norms from blocked float sums against the double reference). */
static bool near_rel(double x, double y, double rel) { return fabs(x - y) <= rel * fabs(y) || x == y; }

static const Geo kGeos[] = {
    {1, 1, 128, false},  {1, 10, 20, true}, {1, 64, 27, true},      {1, 256, 128, true}, {1, 1, 16, true},
    {1, 10, 1, true},    {9, 16, 1, true},  {4, 6, 5, true},        {1, 2, 70001, true}, {20000, 3, 1, true},
    {3, 40001, 1, true}, {1, 1, 300000, false}, {8, 300, 30, true}, {1, 3, 7, true},     {70, 4100, 1, true},
    {1000, 3, 2, true},
};

static void test_projecting_against_reference() {
  int k = 0;
  for (const Geo& geo : kGeos) {
    if (g_quick && geo.outer * geo.channels * geo.inner > 150000) {
      k += 3;
      continue;
    }
    for (int kind = 0; kind < 3; ++kind, ++k) {
      for (int opt = 0; opt < 2; ++opt) {
        Rng r(1000 + (uint64_t)k);
        Tensor a = make_tensor(r, geo, kind, opt == 0 ? 2 : 1), b = a;
        double ia[kInfoStride], ib[kInfoStride];
        double first_decision = -1;
        bool ok = true;
        for (int step = 1; step <= 2; ++step) {
          if (opt == 0) {
            const std::vector<double> hp = adamp_hyper(1e-2, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1, (k % 2) == 1);
            run1(OptKind::AdamP, a, hp, step, ia, 2);
            ref_adamp(b, hp, step, ib);
            ok = ok && close(a.st[1], b.st[1]);
          } else {
            const std::vector<double> hp = sgdp_hyper(0.1, 0.9, k % 3 == 0 ? 0.1 : 0.0, 1e-3, (k % 2) == 1, 1e-8, 0.1, 0.1);
            run1(OptKind::SGDP, a, hp, step, ia, 2);
            ref_sgdp(b, hp, ib);
          }
          if (step == 1) first_decision = ia[kInfoDecision];
          ok = ok && ia[kInfoDecision] == ib[kInfoDecision] && close(a.p, b.p) && close(a.st[0], b.st[0]);
          // Norms from blocked float sums (simd.h NormSums) vs the reference's double: relative
          // error below gamma_16 = 16 * 2^-24 / (1 - 16 * 2^-24) ~ 9.6e-7 for a sum of squares.
          ok = ok && near_rel(ia[kInfoNormSqAfter], ib[kInfoNormSqAfter], 1e-6) &&
               near_rel(ia[kInfoNormSqBefore], ib[kInfoNormSqBefore], 1e-6);
        }
        if (!ok)
          fprintf(stderr, "  geometry %lld x %lld x %lld, grad kind %d, %s\n", (long long)geo.outer,
                  (long long)geo.channels, (long long)geo.inner, kind, opt == 0 ? "adamp" : "sgdp");
        CHECK(ok);
        // step 1 (the gradient was built against the initial p)
        if (geo.eligible && kind == 1) CHECK(first_decision == kDecisionChannel);
        if (geo.eligible && kind == 2) CHECK(first_decision == kDecisionNone);
        if (!geo.eligible) CHECK(first_decision == kDecisionNotEligible);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// AdamW and SGD: bit-exact against their references over every variant, thread count and kernel set.

static void test_one_pass_optimizers() {
  const Geo geos[] = {{1, 1, 1, false}, {1, 1, 7, false}, {1, 1, 8, false},   {1, 1, 1001, false},
                      {1, 4, 9, true},  {9, 16, 1, true}, {1, 2, 70001, true}, {1, 1, 0, false}};
  std::vector<std::vector<double>> adamw_cases = {adamw_hyper(1e-2, 0.9, 0.999, 1e-8, 0.0), adamw_hyper(1e-2, 0.9, 0.999, 1e-8, 0.1),
                                                  adamw_hyper(0.05, 0.8, 0.99, 0.0, 0.01)};
  std::vector<std::vector<double>> sgd_cases;
  for (double wd : {0.0, 1e-2})
    for (double mom : {0.0, 0.9})
      for (double damp : {0.0, 0.1})
        for (int nesterov = 0; nesterov < 2; ++nesterov) {
          if (nesterov && (mom == 0 || damp != 0)) continue;  // torch refuses these
          sgd_cases.push_back(sgd_hyper(0.1, mom, damp, wd, nesterov != 0));
        }
  for (int opt = 0; opt < 2; ++opt) {
    const OptKind kind = opt == 0 ? OptKind::AdamW : OptKind::SGD;
    const auto& cases = opt == 0 ? adamw_cases : sgd_cases;
    int c = 0;
    for (const auto& hp : cases) {
      for (const Geo& geo : geos) {
        Rng r(77 + (uint64_t)c++);
        const Tensor init = make_tensor(r, geo, 0, opt == 0 ? 2 : 1);
        Tensor ref = init;
        std::vector<std::vector<double>> ref_info;
        for (int step = 1; step <= 3; ++step) {
          double ib[kInfoStride];
          for (size_t i = 0; i < ref.g.size(); ++i) ref.g[i] = init.g[i] * (float)step;
          if (opt == 0)
            ref_adamw(ref, hp, step, ib);
          else
            ref_sgd(ref, hp, step, ib);
          ref_info.push_back(std::vector<double>(ib, ib + kInfoStride));
        }
        for (int simd = 0; simd < 2; ++simd) {
          if (simd == 1 && !cpu::avx2_available()) continue;
          cpu::set_simd(simd == 0 ? cpu::Simd::Portable : cpu::Simd::Avx2);
          for (int threads : {1, 2, 3, 7}) {
            if (g_quick && (threads == 2 || threads == 7)) continue;
            Tensor t = init;
            bool ok = true;
            for (int step = 1; step <= 3; ++step) {
              for (size_t i = 0; i < t.g.size(); ++i) t.g[i] = init.g[i] * (float)step;
              double ia[kInfoStride];
              run1(kind, t, hp, step, ia, threads);
              const double* ib = ref_info[(size_t)step - 1].data();
              ok = ok && ia[kInfoDecision] == kDecisionNotApplicable && std::isnan(ia[kInfoChannelMaxCos]) &&
                   std::isnan(ia[kInfoChannelThreshold]) && std::isnan(ia[kInfoLayerCos]) && std::isnan(ia[kInfoLayerThreshold]);
              ok = ok && near_rel(ia[kInfoNormSqBefore], ib[kInfoNormSqBefore], 1e-6) &&
                   near_rel(ia[kInfoNormSqAfter], ib[kInfoNormSqAfter], 1e-6) &&
                   fabs(ia[kInfoDeltaSq] - ib[kInfoDeltaSq]) <= 1e-5 * ib[kInfoDeltaSq] + 1e-30;
            }
            ok = ok && same(t.p, ref.p) && same(t.st[0], ref.st[0]) && same(t.st[1], ref.st[1]);
            if (!ok)
              fprintf(stderr, "  %s hyper #%d geometry %lldx%lldx%lld simd %d threads %d\n", opt == 0 ? "adamw" : "sgd",
                      c, (long long)geo.outer, (long long)geo.channels, (long long)geo.inner, simd, threads);
            CHECK(ok);
          }
        }
        cpu::set_simd(cpu::Simd::Avx2);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// The float-range fallbacks of the blocked float sums (simd.h BSum, NormSums): weights whose
// squares overflow float (the info norms and the decision's sums must stay finite and match the
// double reference), and gradients or weights so small that products would be float subnormals.
// Decisions must match the reference, and the AVX2 and portable kernels (and every thread count)
// must still agree bit for bit on these paths.
static void test_float_range_fallbacks() {
  const Geo geos[] = {{1, 10, 300, true}, {1, 2, 70001, true}, {4, 6, 5, true},
                      {9, 16, 1, true},   {5000, 12, 1, true}, {1, 1, 3000, false}};  // 5000 x 12: three row chunks
  const struct {
    const char* name;
    double pscale, gscale;
    bool zero_rows;  // rows c % 4 == 0 get a zero gradient (+0 and -0), rows c % 4 == 1 p * 2^-81
  } cases[] = {{"huge weights", 0x1p66, 1.0, false}, {"huge grads", 1.0, 0x1p66, false},
               {"tiny grads", 1.0, 0x1p-40, false},  {"tiny weights", 0x1p-70, 1.0, false},
               {"zero-gradient rows", 1.0, 1.0, true}};
  int k = 0;
  for (const auto& c : cases) {
    for (const Geo& geo : geos) {
      for (int kind = 1; kind <= 2; ++kind, ++k) {
        for (int opt = 0; opt < 2; ++opt) {
          Rng r(5000 + (uint64_t)k);
          Tensor a = make_tensor(r, geo, kind, opt == 0 ? 2 : 1);
          for (float& x : a.p) x = (float)(x * c.pscale);
          for (float& x : a.g) x = (float)(x * c.gscale);
          if (c.zero_rows) {
            // An exactly zero row skips the double redo; a nonzero row whose squares underflow
            // float (p * 2^-81) must still take it. Both must match the double reference.
            for (size_t i = 0; i < a.g.size(); ++i) {
              const int64_t ch = (int64_t)(i / (size_t)geo.inner) % geo.channels;
              if (ch % 4 == 0) a.g[i] = (i % 3 == 0) ? -0.0f : 0.0f;
              if (ch % 4 == 1) a.g[i] = (float)(a.p[i] * 0x1p-81);
            }
          }
          Tensor b = a, e = a;
          double ia[kInfoStride], ib[kInfoStride], ie[kInfoStride];
          bool ok = true;
          for (int step = 1; step <= 2; ++step) {
            const OptKind kind_ = opt == 0 ? OptKind::AdamP : OptKind::SGDP;
            const std::vector<double> hp = opt == 0 ? adamp_hyper(1e-2, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1, false)
                                                    : sgdp_hyper(0.1, 0.9, 0.0, 1e-3, false, 1e-8, 0.1, 0.1);
            run1(kind_, a, hp, step, ia, 2);
            if (opt == 0)
              ref_adamp(b, hp, step, ib);
            else
              ref_sgdp(b, hp, ib);
            cpu::set_simd(cpu::Simd::Portable);
            run1(kind_, e, hp, step, ie, 1);
            cpu::set_simd(cpu::Simd::Avx2);
            ok = ok && std::isfinite(ia[kInfoNormSqAfter]) && std::isfinite(ia[kInfoDeltaSq]) &&
                 near_rel(ia[kInfoNormSqAfter], ib[kInfoNormSqAfter], 1e-6) &&
                 fabs(ia[kInfoDeltaSq] - ib[kInfoDeltaSq]) <= 1e-5 * ib[kInfoDeltaSq] + 1e-30;
            if (opt == 0) ok = ok && close(a.st[1], b.st[1]);
            ok = ok && ia[kInfoDecision] == ib[kInfoDecision] && close(a.p, b.p) && close(a.st[0], b.st[0]);
            ok = ok && memcmp(ia, ie, sizeof ia) == 0 && same(a.p, e.p);
          }
          if (!ok)
            fprintf(stderr, "  %s, geometry %lld x %lld x %lld, grad kind %d, %s: decision %g vs %g, |p|^2 %.17g vs %.17g\n", c.name,
                    (long long)geo.outer, (long long)geo.channels, (long long)geo.inner, kind, opt == 0 ? "adamp" : "sgdp",
                    ia[kInfoDecision], ib[kInfoDecision], ia[kInfoNormSqAfter], ib[kInfoNormSqAfter]);
          CHECK(ok);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Bit-identity across thread counts and kernel sets, and the norms switch, for every optimizer.

static const OptKind kKinds[] = {OptKind::AdamP, OptKind::SGDP, OptKind::AdamW, OptKind::SGD};

static std::vector<double> model_hyper(OptKind kind, int step) {
  switch (kind) {
    case OptKind::AdamP:
      return adamp_hyper(1e-2, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.1, step == 2);
    case OptKind::SGDP:
      return sgdp_hyper(0.1, 0.9, 0.0, 1e-4, false, 1e-8, 0.1, 0.1);
    case OptKind::AdamW:
      return adamw_hyper(1e-2, 0.9, 0.999, 1e-8, 0.01);
    default:
      return sgd_hyper(0.1, 0.9, 0.0, 1e-4, step == 2);
  }
}

static std::vector<Tensor> run_model(OptKind kind, int threads, bool norms, std::vector<double>& info) {
  Rng r(7);
  std::vector<Tensor> ts;
  for (const Geo& geo : kGeos) ts.push_back(make_tensor(r, geo, 0, cpu::kinds()[(size_t)kind].slots));
  info.assign(ts.size() * kInfoStride * 2, 0.0);
  for (int step = 1; step <= 2; ++step)
    run(kind, ts, model_hyper(kind, step), step, info.data() + (size_t)(step - 1) * ts.size() * kInfoStride, threads, norms);
  return ts;
}

static bool same_tensors(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  for (size_t j = 0; j < a.size(); ++j)
    if (!same(a[j].p, b[j].p) || !same(a[j].st[0], b[j].st[0]) || !same(a[j].st[1], b[j].st[1])) return false;
  return true;
}

static void test_thread_simd_and_norms_invariance() {
  for (OptKind kind : kKinds) {
    const bool projects = cpu::kinds()[(size_t)kind].projects;
    std::vector<double> i1, in;
    const std::vector<Tensor> one = run_model(kind, 1, true, i1);
    // 100: more threads than ThreadPool::run_owned's 64 owners (the step must still run every item)
    for (int threads : {2, 3, 7, 100}) {
      if (g_quick && threads != 3 && threads != 100) continue;
      const std::vector<Tensor> many = run_model(kind, threads, true, in);
      CHECK(same_tensors(one, many));
      CHECK(memcmp(i1.data(), in.data(), i1.size() * 8) == 0);
    }
    if (cpu::avx2_available()) {
      CHECK(cpu::set_simd(cpu::Simd::Portable) == cpu::Simd::Portable);
      const std::vector<Tensor> portable = run_model(kind, 2, true, in);
      cpu::set_simd(cpu::Simd::Avx2);
      CHECK(cpu::simd() == cpu::Simd::Avx2);
      CHECK(same_tensors(one, portable));
      CHECK(memcmp(i1.data(), in.data(), i1.size() * 8) == 0);
    } else {
      printf("test_step: AVX2 not available here, portable kernels only\n");
    }
    // Norms off: p and state bit-identical, the decision fields too; the norms NaN except the
    // decision's own p.p (normSqBefore) of eligible tensors of projecting optimizers.
    for (int threads : {1, 3}) {
      if (g_quick && threads == 1) continue;
      std::vector<double> ioff;
      const std::vector<Tensor> off = run_model(kind, threads, false, ioff);
      CHECK(same_tensors(one, off));
      bool ok = true;
      for (size_t s = 0; s < ioff.size() / kInfoStride; ++s) {
        const double* x = &ioff[s * kInfoStride];
        const double* y = &i1[s * kInfoStride];
        const bool eligible = kGeos[s % (sizeof kGeos / sizeof kGeos[0])].eligible;
        ok = ok && memcmp(x, y, 5 * sizeof(double)) == 0;
        if (projects && eligible)
          ok = ok && memcmp(&x[kInfoNormSqBefore], &y[kInfoNormSqBefore], 8) == 0;
        else
          ok = ok && std::isnan(x[kInfoNormSqBefore]);
        ok = ok && std::isnan(x[kInfoNormSqAfter]) && std::isnan(x[kInfoDeltaSq]);
        ok = ok && (projects ? x[kInfoDecision] != kDecisionNotApplicable : x[kInfoDecision] == kDecisionNotApplicable);
      }
      if (!ok) fprintf(stderr, "  norms off: info mismatch, kind %s threads %d\n", cpu::kinds()[(size_t)kind].name, threads);
      CHECK(ok);
    }
  }
}

// The same tensor stored channels-innermost (outer x C x 1) and channels-first (1 x C x outer)
// takes different code paths (lanes vs rows) but must decide the same and agree to rounding.
static void test_layouts_agree() {
  const int64_t outer = 37, channels = 21;
  for (int kind = 0; kind < 3; ++kind) {
    Rng r(99 + (uint64_t)kind);
    Tensor tf = make_tensor(r, Geo{outer, channels, 1, true}, kind, 2);
    Tensor pt = tf;
    pt.outer = 1;
    pt.inner = outer;
    for (int64_t a = 0; a < outer; ++a)
      for (int64_t c = 0; c < channels; ++c) {
        pt.p[(size_t)(c * outer + a)] = tf.p[(size_t)(a * channels + c)];
        pt.g[(size_t)(c * outer + a)] = tf.g[(size_t)(a * channels + c)];
      }
    double i1[kInfoStride], i2[kInfoStride];
    const std::vector<double> hp = adamp_hyper(1e-2, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1, false);
    run1(OptKind::AdamP, tf, hp, 1, i1, 1);
    run1(OptKind::AdamP, pt, hp, 1, i2, 1);
    CHECK(i1[kInfoDecision] == i2[kInfoDecision]);
    CHECK_NEAR(i1[kInfoChannelMaxCos], i2[kInfoChannelMaxCos], 1e-6);
    std::vector<float> back(tf.p.size());
    for (int64_t a = 0; a < outer; ++a)
      for (int64_t c = 0; c < channels; ++c) back[(size_t)(a * channels + c)] = pt.p[(size_t)(c * outer + a)];
    CHECK(close(tf.p, back));
  }
}

// ------------------------------------------------------------------------------------------------
// The speculative single pass (AdamP; outer == 1 row tensors) against the two-pass path, bit for
// bit: every speculation mode (On, and forced predictions so that every redo path runs), thread
// count, kernel set and the norms switch. SGDP does not speculate; it runs here too, to check the
// switch leaves it alone.

// Gradient patterns, per row c of a 1 x C x n tensor:
//   0 random; 1 orthogonal (channel); 2 parallel (none); 3 orthogonal but the last row 100 x p
//   (a late row breaks the channel prediction -> none); 4 orthogonal first half, then pairs of
//   equal p rows with g = +p / -p (late break, the layer view fires); 5 the +-p pairs from row 0
//   (layer, early break); 6 zero gradient (channel); 7 orthogonal, one zero p row, a middle row
//   parallel (none); 8 orthogonal but one row random (mostly none, some layer).
static Tensor make_spec_tensor(Rng& r, int64_t channels, int64_t n, int kind, int slots) {
  Tensor t = make_tensor(r, Geo{1, channels, n, true}, (kind == 0 || kind == 2) ? kind : 1, slots);
  auto row = [&](std::vector<float>& x, int64_t c) { return x.data() + c * n; };
  if (kind == 3) {
    for (int64_t j = 0; j < n; ++j) row(t.g, channels - 1)[j] = 100.0f * row(t.p, channels - 1)[j];
  } else if (kind == 4 || kind == 5) {
    for (int64_t c = kind == 4 ? channels / 2 : 0; c + 1 < channels; c += 2)
      for (int64_t j = 0; j < n; ++j) {
        row(t.p, c + 1)[j] = row(t.p, c)[j];
        row(t.g, c)[j] = row(t.p, c)[j];
        row(t.g, c + 1)[j] = -row(t.p, c)[j];
      }
    if (channels % 2 == 1 && kind == 5)
      for (int64_t j = 0; j < n; ++j) row(t.g, channels - 1)[j] = 0.0f;
  } else if (kind == 6) {
    for (float& x : t.g) x = 0.0f;
  } else if (kind == 7) {
    for (int64_t j = 0; j < n; ++j) {
      row(t.p, 0)[j] = 0.0f;
      row(t.g, channels / 2)[j] = 0.5f * row(t.p, channels / 2)[j];
    }
  } else if (kind == 8) {
    for (int64_t j = 0; j < n; ++j) row(t.g, channels / 3)[j] = r.normal();
  }
  return t;
}

struct SpecCase {
  int64_t channels, n;
  int kind;
  int expect;  // the step-1 decision, -1: any
};

static const SpecCase kSpecCases[] = {
    {64, 27, 1, kDecisionChannel},  {300, 500, 1, kDecisionChannel}, {64, 4608, 1, kDecisionChannel},
    {10, 20, 2, kDecisionNone},     {300, 500, 3, kDecisionNone},    {64, 1001, 3, kDecisionNone},
    {300, 500, 4, kDecisionLayer},  {33, 147, 4, kDecisionLayer},    {64, 4608, 5, kDecisionLayer},
    {21, 9, 5, kDecisionLayer},     {40, 64, 6, kDecisionChannel},   {200, 300, 7, kDecisionNone},
    {128, 1152, 0, -1},             {1, 16, 1, kDecisionChannel},    {1, 16, 0, -1},
    {3, 32768, 1, kDecisionChannel}, {500, 120, 8, -1},              {1000, 37, 0, -1},
    {256, 4608, 3, kDecisionNone},  // 1.18M elements: a wave of its own
};

/** --quick leaves out the cases of over 100,000 elements (each kind of case has a smaller one). */
static bool quick_skips(const SpecCase& c) { return g_quick && c.channels * c.n > 100000; }

static std::vector<Tensor> spec_model(uint64_t seed, bool with_others, int slots) {
  Rng r(seed);
  std::vector<Tensor> ts;
  for (const SpecCase& c : kSpecCases)
    if (!quick_skips(c)) ts.push_back(make_spec_tensor(r, c.channels, c.n, c.kind, slots));
  if (with_others)  // the other layouts in the same steps and waves
    for (const Geo& geo : kGeos)
      if (!g_quick || geo.outer * geo.channels * geo.inner <= 150000) ts.push_back(make_tensor(r, geo, (int)(seed % 3), slots));
  return ts;
}

// opt: 0 AdamP, 1 AdamP Nesterov, 2 SGDP, 3 SGDP Nesterov, 4 SGDP with dampening
static std::vector<Tensor> run_spec_model(cpu::Speculation mode, int threads, int opt, bool with_others, double wd,
                                          bool norms, std::vector<double>& info) {
  cpu::set_speculation(mode);
  std::vector<Tensor> ts = spec_model(11, with_others, opt >= 2 ? 1 : 2);
  info.assign(ts.size() * kInfoStride * 3, 0.0);
  for (int step = 1; step <= 3; ++step) {
    double* out = info.data() + (size_t)(step - 1) * ts.size() * kInfoStride;
    if (opt >= 2)
      run(OptKind::SGDP, ts, sgdp_hyper(0.05, 0.9, opt == 4 ? 0.1 : 0.0, wd, opt == 3, 1e-8, 0.1, 0.2), step, out, threads, norms);
    else
      run(OptKind::AdamP, ts, adamp_hyper(1e-2, 0.9, 0.999, 1e-8, wd, 0.1, 0.2, opt == 1), step, out, threads, norms);
  }
  cpu::set_speculation(cpu::Speculation::Off);  // the default
  return ts;
}

static void test_speculative_bit_identical() {
  const cpu::Speculation modes[] = {cpu::Speculation::On, cpu::Speculation::PredictNone, cpu::Speculation::PredictChannel};
  for (int opt = 0; opt < 5; ++opt) {
    if (g_quick && (opt == 1 || opt >= 3)) continue;  // AdamP and SGDP; their Nesterov and dampening variants in the full run
    for (int variant = 0; variant < 3; ++variant) {
      const bool with_others = variant == 1;
      const double wd = variant == 0 ? 0.1 : 0.0;
      const bool norms = variant != 2;
      std::vector<double> ref_info, info;
      const std::vector<Tensor> ref = run_spec_model(cpu::Speculation::Off, 1, opt, with_others, wd, norms, ref_info);
      // the cases cover what they claim (step 1)
      if (!with_others) {
        int k = 0;
        for (const SpecCase& c : kSpecCases) {
          if (quick_skips(c)) continue;
          if (c.expect >= 0 && ref_info[(size_t)k * kInfoStride + kInfoDecision] != c.expect) {
            fprintf(stderr, "  spec case %d (%lld x %lld kind %d): decision %g, expected %d\n", k, (long long)c.channels,
                    (long long)c.n, c.kind, ref_info[(size_t)k * kInfoStride + kInfoDecision], c.expect);
            CHECK(false);
          }
          ++k;
        }
      }
      for (int simd = 0; simd < 2; ++simd) {
        if (simd == 1) {
          if (!cpu::avx2_available()) continue;
          cpu::set_simd(cpu::Simd::Portable);
        }
        for (cpu::Speculation mode : modes) {
          // SGDP does not speculate: one mode and two thread counts show that the switch leaves it alone.
          if (opt >= 2 && mode != cpu::Speculation::On) continue;
          for (int threads : {1, 2, 3, 8}) {
            if ((opt >= 2 || !norms || g_quick) && (threads == 2 || threads == 8)) continue;
            const std::vector<Tensor> got = run_spec_model(mode, threads, opt, with_others, wd, norms, info);
            const bool ok = same_tensors(ref, got) && memcmp(ref_info.data(), info.data(), info.size() * 8) == 0;
            if (!ok)
              fprintf(stderr, "  speculative mismatch: opt %d, variant %d, simd %d, mode %d, threads %d\n", opt, variant,
                      simd, (int)mode, threads);
            CHECK(ok);
          }
        }
        if (simd == 1) cpu::set_simd(cpu::Simd::Avx2);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Registry facts and hyperparameter checks.

static void test_registry() {
  const auto& ks = cpu::kinds();
  CHECK(ks.size() == 4);
  const char* names[] = {"adamp", "sgdp", "adamw", "sgd"};
  for (size_t i = 0; i < ks.size() && i < 4; ++i) {
    CHECK(strcmp(ks[i].name, names[i]) == 0);
    OptKind k;
    CHECK(cpu::kind_from_name(names[i], &k) && k == ks[i].kind);
  }
  OptKind k;
  CHECK(!cpu::kind_from_name("adam", &k));
  CHECK(ks[0].projects && ks[1].projects && !ks[2].projects && !ks[3].projects);
  CHECK(ks[0].slots == 2 && ks[1].slots == 1 && ks[2].slots == 2 && ks[3].slots == 1);
  CHECK(strcmp(cpu::hyper_name(OptKind::SGDP, 3), "weightDecay") == 0);
  int field = -1;
  std::vector<double> h = sgd_hyper(0.1, 0.0, 0.0, 0.0, true);  // Nesterov without momentum
  CHECK(cpu::check_hyper(OptKind::SGD, h.data(), &field) != nullptr && field == 4);
  h = adamp_hyper(1e-3, 1.0, 0.999, 1e-8, 0, 0.1, 0.1, false);
  CHECK(cpu::check_hyper(OptKind::AdamP, h.data(), &field) != nullptr && field == 1);
  h = adamw_hyper(1e-3, 0.9, 0.999, 1e-8, 0.01);
  CHECK(cpu::check_hyper(OptKind::AdamW, h.data(), &field) == nullptr);
}

int main(int argc, char** argv) {
  parse_test_args(argc, argv);
  test_registry();
  test_projecting_against_reference();
  test_one_pass_optimizers();
  test_float_range_fallbacks();
  test_thread_simd_and_norms_invariance();
  test_layouts_agree();
  test_speculative_bit_identical();
  return report("test_step");
}
