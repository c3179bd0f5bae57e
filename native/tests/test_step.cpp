// The CPU core's steps (native/cpu/step.h) against a plain one-element-at-a-time reference written
// from SPEC.md with the same math functions; bit-identity across thread counts and kernel sets;
// the channels-innermost layout against the same tensor stored channels-first.
#include "step.h"

#include <string.h>

#include <cmath>

#include <vector>

#include "adamp/math.h"
#include "check.h"

using namespace adamp;
using cpu::TensorSlot;

struct Tensor {
  std::vector<float> p, g, m, v;
  int64_t outer, channels, inner;
  bool eligible;
  TensorSlot slot(double step) {
    TensorSlot s;
    s.p = p.data();
    s.g = g.data();
    s.m = m.data();
    s.v = v.data();
    s.numel = (int64_t)p.size();
    s.outer = outer;
    s.channels = channels;
    s.inner = inner;
    s.eligible = eligible;
    s.step = step;
    return s;
  }
};

static Tensor make_tensor(Rng& r, int64_t outer, int64_t channels, int64_t inner, bool eligible, int grad_kind) {
  Tensor t;
  const size_t n = (size_t)(outer * channels * inner);
  t.p.resize(n);
  t.g.resize(n);
  t.m.assign(n, 0.0f);
  t.v.assign(n, 0.0f);
  t.outer = outer;
  t.channels = channels;
  t.inner = inner;
  t.eligible = eligible;
  for (size_t i = 0; i < n; ++i) {
    t.p[i] = r.normal();
    t.g[i] = r.normal();
  }
  if (grad_kind == 1) {  // orthogonal to p per channel -> channel projection
    std::vector<double> gp((size_t)channels, 0), pp((size_t)channels, 0);
    for (size_t i = 0; i < n; ++i) {
      const size_t c = (size_t)((i / (size_t)inner) % (size_t)channels);
      gp[c] += (double)t.g[i] * t.p[i];
      pp[c] += (double)t.p[i] * t.p[i];
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t c = (size_t)((i / (size_t)inner) % (size_t)channels);
      t.g[i] = (float)(t.g[i] - gp[c] / pp[c] * t.p[i]);
    }
  } else if (grad_kind == 2) {  // parallel -> none
    for (size_t i = 0; i < n; ++i) t.g[i] = 0.5f * t.p[i];
  }
  return t;
}

// ------------------------------------------------------------------------------------------------
// Reference: SPEC.md s2-4, one element at a time, sums in plain sequential order.

static void reference_adamp(Tensor& t, const cpu::AdamPHyper& hp, double step, double* info) {
  const AdamPScalarsF s = make_adamp_scalars(hp.lr, hp.beta1, hp.beta2, hp.eps, step, hp.nesterov);
  const size_t n = t.p.size();
  std::vector<float> u(n);
  std::vector<ChannelSums> cs((size_t)t.channels);
  for (auto& c : cs) sums_zero(c);
  for (size_t i = 0; i < n; ++i) {
    adamp_moments(t.m[i], t.v[i], t.g[i], s);
    u[i] = adamp_update(t.m[i], t.v[i], t.g[i], s);
    sums_accumulate(cs[(size_t)((i / (size_t)t.inner) % (size_t)t.channels)], t.g[i], t.p[i], u[i]);
  }
  DecisionResult r;
  if (t.eligible) {
    r = decide(cs.data(), t.channels, (int64_t)n, hp.delta, hp.wd_ratio, hp.eps);
  } else {
    r.code = kDecisionNotEligible;
    r.ratio = 1.0;
  }
  const float wdf = adamp_wd_factor(hp.lr, hp.weight_decay, r.ratio);
  double after = 0, dsq = 0;
  for (size_t i = 0; i < n; ++i) {
    float ui = u[i];
    if (is_projected(r.code)) {
      const ProjCoef k = proj_coef_for(r, cs.data(), (int64_t)((i / (size_t)t.inner) % (size_t)t.channels), (float)hp.eps);
      ui = project(ui, t.p[i], k.div, k.scale);
    }
    const float p1 = apply_step(t.p[i], ui, wdf, s.neg_step);
    after += (double)p1 * p1;
    dsq += ((double)p1 - t.p[i]) * ((double)p1 - t.p[i]);
    t.p[i] = p1;
  }
  info[kInfoDecision] = r.code;
  info[kInfoNormSqAfter] = after;
  info[kInfoDeltaSq] = dsq;
}

static void reference_sgdp(Tensor& t, const cpu::SGDPHyper& hp, double* info) {
  const SGDPScalarsF s = make_sgdp_scalars(hp.lr, hp.momentum, hp.dampening, hp.nesterov);
  const size_t n = t.p.size();
  std::vector<float> d(n);
  std::vector<ChannelSums> cs((size_t)t.channels);
  for (auto& c : cs) sums_zero(c);
  for (size_t i = 0; i < n; ++i) {
    t.m[i] = sgdp_buffer(t.m[i], t.g[i], s);
    d[i] = sgdp_update(t.m[i], t.g[i], s);
    sums_accumulate(cs[(size_t)((i / (size_t)t.inner) % (size_t)t.channels)], t.g[i], t.p[i], d[i]);
  }
  DecisionResult r;
  if (t.eligible) {
    r = decide(cs.data(), t.channels, (int64_t)n, hp.delta, hp.wd_ratio, hp.eps);
  } else {
    r.code = kDecisionNotEligible;
    r.ratio = 1.0;
  }
  const float wdf = sgdp_wd_factor(hp.lr, hp.weight_decay, r.ratio, hp.momentum);
  for (size_t i = 0; i < n; ++i) {
    if (is_projected(r.code)) {
      const ProjCoef k = proj_coef_for(r, cs.data(), (int64_t)((i / (size_t)t.inner) % (size_t)t.channels), (float)hp.eps);
      d[i] = project(d[i], t.p[i], k.div, k.scale);
      if (!hp.nesterov) t.m[i] = d[i];  // the buffer IS d without Nesterov
    }
    t.p[i] = apply_step(t.p[i], d[i], wdf, s.neg_lr);
  }
  info[kInfoDecision] = r.code;
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

struct Geo {
  int64_t outer, channels, inner;
  bool eligible;
};

static const Geo kGeos[] = {
    {1, 1, 128, false},   {1, 10, 20, true},  {1, 64, 27, true},   {1, 256, 128, true}, {1, 1, 16, true},
    {1, 10, 1, true},     {9, 16, 1, true},   {4, 6, 5, true},     {1, 2, 70001, true}, {20000, 3, 1, true},
    {3, 40001, 1, true},  {1, 1, 300000, false}, {8, 300, 30, true}, {1, 3, 7, true},
};

static void test_against_reference() {
  int k = 0;
  for (const Geo& geo : kGeos) {
    for (int kind = 0; kind < 3; ++kind, ++k) {
      for (int opt = 0; opt < 2; ++opt) {
        Rng r(1000 + (uint64_t)k);
        Tensor a = make_tensor(r, geo.outer, geo.channels, geo.inner, geo.eligible, kind), b = a;
        double ia[kInfoStride], ib[kInfoStride];
        double first_decision = -1;
        bool ok = true;
        if (opt == 0) {
          const cpu::AdamPHyper hp = {1e-2, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1, (k % 2) == 1};
          for (int step = 1; step <= 2; ++step) {
            TensorSlot s = a.slot(step);
            cpu::adamp_step(&s, 1, hp, ia, 2);
            reference_adamp(b, hp, step, ib);
            if (step == 1) first_decision = ia[kInfoDecision];
            ok = ok && ia[kInfoDecision] == ib[kInfoDecision] && close(a.p, b.p) && close(a.m, b.m) && close(a.v, b.v);
            // ||p||^2 from blocked float sums (simd.h NormSums) vs the reference's double: relative
            // error below gamma_16 = 16 * 2^-24 / (1 - 16 * 2^-24) ~ 9.6e-7 for a sum of squares.
            ok = ok && fabs(ia[kInfoNormSqAfter] - ib[kInfoNormSqAfter]) <= 1e-6 * ib[kInfoNormSqAfter];
          }
        } else {
          const cpu::SGDPHyper hp = {0.1, 0.9, k % 3 == 0 ? 0.1 : 0.0, 1e-3, 1e-8, 0.1, 0.1, (k % 2) == 1};
          for (int step = 1; step <= 2; ++step) {
            TensorSlot s = a.slot(step);
            cpu::sgdp_step(&s, 1, hp, ia, 2);
            reference_sgdp(b, hp, ib);
            if (step == 1) first_decision = ia[kInfoDecision];
            ok = ok && ia[kInfoDecision] == ib[kInfoDecision] && close(a.p, b.p) && close(a.m, b.m);
          }
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

static std::vector<Tensor> model(uint64_t seed) {
  Rng r(seed);
  std::vector<Tensor> ts;
  for (const Geo& geo : kGeos) ts.push_back(make_tensor(r, geo.outer, geo.channels, geo.inner, geo.eligible, (int)(seed % 3)));
  return ts;
}

static bool same_bits(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  for (size_t j = 0; j < a.size(); ++j) {
    if (memcmp(a[j].p.data(), b[j].p.data(), a[j].p.size() * 4) != 0) return false;
    if (memcmp(a[j].m.data(), b[j].m.data(), a[j].m.size() * 4) != 0) return false;
    if (memcmp(a[j].v.data(), b[j].v.data(), a[j].v.size() * 4) != 0) return false;
  }
  return true;
}

static std::vector<Tensor> run_model(int threads, bool sgdp, std::vector<double>& info) {
  std::vector<Tensor> ts = model(7);
  info.assign(ts.size() * kInfoStride, 0.0);
  for (int step = 1; step <= 2; ++step) {
    std::vector<TensorSlot> slots;
    for (Tensor& t : ts) slots.push_back(t.slot(step));
    if (sgdp)
      cpu::sgdp_step(slots.data(), slots.size(), {0.1, 0.9, 0.0, 1e-4, 1e-8, 0.1, 0.1, false}, info.data(), threads);
    else
      cpu::adamp_step(slots.data(), slots.size(), {1e-2, 0.9, 0.999, 1e-8, 0.01, 0.1, 0.1, step == 2}, info.data(), threads);
  }
  return ts;
}

// The blocked float sums (simd.h BSum, NormSums) fall back to double where float range is not
// enough: weights whose squares overflow float (the info norms and the decision's sums must stay
// finite and match the double reference), and gradients or weights so small that products would
// be float subnormals. Decisions must match the reference, and the AVX2 and portable kernels (and
// every thread count) must still agree bit for bit on these paths.
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
          Tensor a = make_tensor(r, geo.outer, geo.channels, geo.inner, geo.eligible, kind);
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
            TensorSlot sa = a.slot(step), se = e.slot(step);
            if (opt == 0) {
              const cpu::AdamPHyper hp = {1e-2, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1, false};
              cpu::adamp_step(&sa, 1, hp, ia, 2);
              reference_adamp(b, hp, step, ib);
              cpu::set_simd(cpu::Simd::Portable);
              cpu::adamp_step(&se, 1, hp, ie, 1);
              cpu::set_simd(cpu::Simd::Avx2);
              ok = ok && std::isfinite(ia[kInfoNormSqAfter]) && std::isfinite(ia[kInfoDeltaSq]) &&
                   fabs(ia[kInfoNormSqAfter] - ib[kInfoNormSqAfter]) <= 1e-6 * ib[kInfoNormSqAfter] &&
                   fabs(ia[kInfoDeltaSq] - ib[kInfoDeltaSq]) <= 1e-5 * ib[kInfoDeltaSq] + 1e-30 && close(a.v, b.v);
            } else {
              const cpu::SGDPHyper hp = {0.1, 0.9, 0.0, 1e-3, 1e-8, 0.1, 0.1, false};
              cpu::sgdp_step(&sa, 1, hp, ia, 2);
              reference_sgdp(b, hp, ib);
              cpu::set_simd(cpu::Simd::Portable);
              cpu::sgdp_step(&se, 1, hp, ie, 1);
              cpu::set_simd(cpu::Simd::Avx2);
              ok = ok && std::isfinite(ia[kInfoNormSqAfter]);
            }
            ok = ok && ia[kInfoDecision] == ib[kInfoDecision] && close(a.p, b.p) && close(a.m, b.m);
            ok = ok && memcmp(ia, ie, sizeof ia) == 0 && memcmp(a.p.data(), e.p.data(), a.p.size() * 4) == 0;
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

static void test_thread_and_simd_invariance() {
  for (int sgdp = 0; sgdp < 2; ++sgdp) {
    std::vector<double> i1, in;
    const std::vector<Tensor> one = run_model(1, sgdp, i1);
    for (int threads : {2, 3, 7}) {
      const std::vector<Tensor> many = run_model(threads, sgdp, in);
      CHECK(same_bits(one, many));
      CHECK(memcmp(i1.data(), in.data(), i1.size() * 8) == 0);
    }
    if (cpu::avx2_available()) {
      CHECK(cpu::set_simd(cpu::Simd::Portable) == cpu::Simd::Portable);
      const std::vector<Tensor> portable = run_model(2, sgdp, in);
      cpu::set_simd(cpu::Simd::Avx2);
      CHECK(cpu::simd() == cpu::Simd::Avx2);
      CHECK(same_bits(one, portable));
      CHECK(memcmp(i1.data(), in.data(), i1.size() * 8) == 0);
    } else {
      printf("test_step: AVX2 not available here, portable kernels only\n");
    }
  }
}

// The same tensor stored channels-innermost (outer x C x 1) and channels-first (1 x C x outer)
// takes different code paths (lanes vs rows) but must decide the same and agree to rounding.
static void test_layouts_agree() {
  const int64_t outer = 37, channels = 21;
  for (int kind = 0; kind < 3; ++kind) {
    Rng r(99 + (uint64_t)kind);
    Tensor tf = make_tensor(r, outer, channels, 1, true, kind);
    Tensor pt = tf;
    pt.outer = 1;
    pt.inner = outer;
    for (int64_t a = 0; a < outer; ++a)
      for (int64_t c = 0; c < channels; ++c) {
        pt.p[(size_t)(c * outer + a)] = tf.p[(size_t)(a * channels + c)];
        pt.g[(size_t)(c * outer + a)] = tf.g[(size_t)(a * channels + c)];
      }
    double i1[kInfoStride], i2[kInfoStride];
    const cpu::AdamPHyper hp = {1e-2, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1, false};
    TensorSlot s1 = tf.slot(1), s2 = pt.slot(1);
    cpu::adamp_step(&s1, 1, hp, i1, 1);
    cpu::adamp_step(&s2, 1, hp, i2, 1);
    CHECK(i1[kInfoDecision] == i2[kInfoDecision]);
    CHECK_NEAR(i1[kInfoChannelMaxCos], i2[kInfoChannelMaxCos], 1e-6);
    std::vector<float> back(tf.p.size());
    for (int64_t a = 0; a < outer; ++a)
      for (int64_t c = 0; c < channels; ++c) back[(size_t)(a * channels + c)] = pt.p[(size_t)(c * outer + a)];
    CHECK(close(tf.p, back));
  }
}

// ------------------------------------------------------------------------------------------------
// AdamP's speculative single pass (outer == 1 row tensors) against the two-pass path, bit for bit:
// every speculation mode (On, and forced predictions so that every redo path runs), thread count
// and kernel set. SGDP does not speculate; it runs here too, to check the switch leaves it alone.

// Gradient patterns, per row c of a 1 x C x n tensor:
//   0 random; 1 orthogonal (channel); 2 parallel (none); 3 orthogonal but the last row 100 x p
//   (a late row breaks the channel prediction -> none); 4 orthogonal first half, then pairs of
//   equal p rows with g = +p / -p (late break, the layer view fires); 5 the +-p pairs from row 0
//   (layer, early break); 6 zero gradient (channel); 7 orthogonal, one zero p row, a middle row
//   parallel (none); 8 orthogonal but one row random (mostly none, some layer).
static Tensor make_spec_tensor(Rng& r, int64_t channels, int64_t n, int kind) {
  Tensor t = make_tensor(r, 1, channels, n, true, (kind == 0 || kind == 2) ? kind : 1);
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

static std::vector<Tensor> spec_model(uint64_t seed, bool with_others) {
  Rng r(seed);
  std::vector<Tensor> ts;
  for (const SpecCase& c : kSpecCases) ts.push_back(make_spec_tensor(r, c.channels, c.n, c.kind));
  if (with_others)  // the other layouts in the same steps and waves
    for (const Geo& geo : kGeos) ts.push_back(make_tensor(r, geo.outer, geo.channels, geo.inner, geo.eligible, (int)(seed % 3)));
  return ts;
}

// opt: 0 AdamP, 1 AdamP Nesterov, 2 SGDP, 3 SGDP Nesterov, 4 SGDP with dampening
static std::vector<Tensor> run_spec_model(cpu::Speculation mode, int threads, int opt, bool with_others, double wd,
                                          std::vector<double>& info) {
  cpu::set_speculation(mode);
  std::vector<Tensor> ts = spec_model(11, with_others);
  info.assign(ts.size() * kInfoStride * 3, 0.0);
  for (int step = 1; step <= 3; ++step) {
    std::vector<TensorSlot> slots;
    for (Tensor& t : ts) slots.push_back(t.slot(step));
    double* out = info.data() + (size_t)(step - 1) * ts.size() * kInfoStride;
    if (opt >= 2)
      cpu::sgdp_step(slots.data(), slots.size(), {0.05, 0.9, opt == 4 ? 0.1 : 0.0, wd, 1e-8, 0.1, 0.2, opt == 3}, out,
                     threads);
    else
      cpu::adamp_step(slots.data(), slots.size(), {1e-2, 0.9, 0.999, 1e-8, wd, 0.1, 0.2, opt == 1}, out, threads);
  }
  cpu::set_speculation(cpu::Speculation::On);
  return ts;
}

static void test_speculative_bit_identical() {
  const cpu::Speculation modes[] = {cpu::Speculation::On, cpu::Speculation::PredictNone, cpu::Speculation::PredictChannel};
  for (int opt = 0; opt < 5; ++opt) {
    for (int variant = 0; variant < 2; ++variant) {
      const bool with_others = variant == 1;
      const double wd = variant == 0 ? 0.1 : 0.0;
      std::vector<double> ref_info, info;
      const std::vector<Tensor> ref = run_spec_model(cpu::Speculation::Off, 1, opt, with_others, wd, ref_info);
      // the cases cover what they claim (step 1)
      if (!with_others) {
        int k = 0;
        for (const SpecCase& c : kSpecCases) {
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
          for (int threads : {1, 2, 3, 7, 8}) {
            const std::vector<Tensor> got = run_spec_model(mode, threads, opt, with_others, wd, info);
            const bool ok = same_bits(ref, got) && memcmp(ref_info.data(), info.data(), info.size() * 8) == 0;
            if (!ok)
              fprintf(stderr, "  speculative mismatch: opt %d, variant %d, simd %d, mode %d, threads %d\n", opt, variant,
                      simd, (int)mode, threads);
            CHECK(ok);
          }
          if (simd == 0 && mode == cpu::Speculation::On) {
            // and the two-pass path itself does not depend on the thread count
            const std::vector<Tensor> off3 = run_spec_model(cpu::Speculation::Off, 3, opt, with_others, wd, info);
            CHECK(same_bits(ref, off3) && memcmp(ref_info.data(), info.data(), info.size() * 8) == 0);
          }
        }
        if (simd == 1) cpu::set_simd(cpu::Simd::Avx2);
      }
    }
  }
}

static void test_floors() {
  Rng r(5);
  Tensor t = make_tensor(r, 1, 1, 1001, false, 0), u = t;
  TensorSlot s = t.slot(1), su = u.slot(1);
  cpu::adam_step(&s, 1, {1e-2, 0.9, 0.999, 1e-8, 0.1}, 2);
  double info[kInfoStride];
  cpu::adamp_step(&su, 1, {1e-2, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.1, false}, info, 2);
  CHECK(memcmp(t.p.data(), u.p.data(), t.p.size() * 4) == 0);  // AdamP on a 1-D tensor is AdamW
  Tensor q = make_tensor(r, 1, 1, 77, false, 0);
  const std::vector<float> p0 = q.p;
  TensorSlot sq = q.slot(1);
  cpu::sgd_step(&sq, 1, {0.1, 0.9, 0.0, 0.0, false}, 1);
  for (size_t i = 0; i < q.p.size(); ++i) CHECK_EQ_F(q.p[i], fmaf(q.m[i], -0.1f, p0[i]));
}

int main() {
  test_against_reference();
  test_float_range_fallbacks();
  test_thread_and_simd_invariance();
  test_layouts_agree();
  test_floors();
  test_speculative_bit_identical();
  return report("test_step");
}
