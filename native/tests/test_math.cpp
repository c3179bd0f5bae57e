// The step's math on hand-computed cases: every registered policy's element code
// (adamp/optim/*.h: scalars, update, stored, apply, weight decay, checks) and every branch of the
// decision (adamp/math.h). The CPU core and the CUDA kernels call the same functions.
#include <string.h>

#include <cmath>
#include <initializer_list>
#include <vector>

#include "adamp/math.h"
#include "adamp/optim/registry.h"

#include "check.h"

using namespace adamp;

template <class P>
static typename P::Hyper hyper(std::initializer_list<double> v) {
  typename P::Hyper h;
  double* d = reinterpret_cast<double*>(&h);
  int i = 0;
  for (double x : v) d[i++] = x;
  CHECK(i == P::kHyperCount);
  return h;
}

static void test_adamp_policy() {
  const AdamP::Hyper h = hyper<AdamP>({1e-3, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.1, 0});
  const AdamP::Scalars s = AdamP::scalars(h, 1);
  CHECK_EQ_F(s.b1, 0.9f);
  CHECK_EQ_F(s.omb1, (float)(1.0 - 0.9));
  CHECK_EQ_F(s.sqrt_bc2, (float)sqrt(1.0 - 0.999));
  CHECK_EQ_F(s.neg_step, (float)(-(1e-3 / (1.0 - 0.9))));
  CHECK(s.variant == 0);
  CHECK(AdamP::scalars(hyper<AdamP>({1e-3, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.1, 1}), 1).variant == 1);

  // m = fma(g, f32(1-b1), f32(m*b1)); v = fma(f32(f32(1-b2)*g), g, f32(v*b2))
  float st[2] = {0.25f, 0.5f};
  const float g = 0.75f;
  const float u = AdamP::update<0>(g, 3.0f, st, s);
  CHECK_EQ_F(st[0], fmaf(g, s.omb1, 0.25f * s.b1));
  CHECK_EQ_F(st[1], fmaf(s.omb2 * g, g, 0.5f * s.b2));
  // u = m / (sqrt(v)/sqrt_bc2 + eps); nesterov u = (b1*m + (1-b1)*g) / denom
  const float den = sqrtf(st[1]) / s.sqrt_bc2 + s.eps;
  CHECK_EQ_F(u, st[0] / den);
  CHECK_EQ_F(AdamP::stored<0>(0.0f, st, s), u);
  CHECK_EQ_F(AdamP::stored<1>(g, st, s), (s.b1 * st[0] + s.omb1 * g) / den);
  CHECK(AdamP::stored_reads_g(1) && !AdamP::stored_reads_g(0) && !AdamP::writes_back(0));

  // step 1 from zero state: u ~ 0.1 sign(g) (the 1/(1-b1) bias correction is in neg_step)
  float z[2] = {0, 0};
  CHECK_NEAR(AdamP::update<0>(0.5f, 0.0f, z, s), 0.1, 1e-6);

  // p = fma(u, f32(-step), f32(p*wdf)); wdf = f32(1 - lr*wd*ratio) when wd > 0
  CHECK_EQ_F(AdamP::apply(2.0f, 0.5f, 0.99f, s), fmaf(0.5f, s.neg_step, 2.0f * 0.99f));
  const AdamP::Hyper hw = hyper<AdamP>({0.1, 0.9, 0.999, 1e-8, 0.5, 0.1, 0.1, 0});
  CHECK_EQ_F(AdamP::wd_factor(hw, 1.0), (float)(1.0 - 0.05));
  CHECK_EQ_F(AdamP::wd_factor(hw, 0.1), (float)(1.0 - 0.1 * 0.5 * 0.1));
  CHECK_EQ_F(AdamP::wd_factor(h, 1.0), 1.0f);
  const DecisionParams dp = AdamP::decision_params(hw);
  CHECK(dp.delta == 0.1 && dp.wd_ratio == 0.1 && dp.eps == 1e-8);

  int field = -1;
  CHECK(AdamP::check(h, &field) == nullptr);
  CHECK(AdamP::check(hyper<AdamP>({1e-3, 0.9, 0.999, -1e-8, 0, 0.1, 0.1, 0}), &field) != nullptr && field == 3);
  CHECK(AdamP::check(hyper<AdamP>({1e-3, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 0.5}), &field) != nullptr && field == 7);
  CHECK(AdamP::check(hyper<AdamP>({NAN, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, 0}), &field) != nullptr && field == 0);
  CHECK(strcmp(AdamP::hyper_name(4), "weightDecay") == 0);
}

static void test_sgdp_policy() {
  const SGDP::Hyper h = hyper<SGDP>({0.1, 0.9, 0.25, 0.0, 0, 1e-8, 0.1, 0.1});
  const SGDP::Scalars s = SGDP::scalars(h, 1);
  CHECK_EQ_F(s.omd, 0.75f);
  CHECK_EQ_F(s.neg_lr, -0.1f);
  // dampening from the first step: buf = 0*0.9 + 0.75*g
  float st[1] = {0.0f};
  CHECK_EQ_F(SGDP::update<0>(2.0f, 1.0f, st, s), 1.5f);
  CHECK_EQ_F(st[0], 1.5f);
  st[0] = 1.0f;
  SGDP::update<0>(2.0f, 1.0f, st, s);
  CHECK_EQ_F(st[0], fmaf(2.0f, 0.75f, 1.0f * 0.9f));
  st[0] = 1.5f;
  CHECK_EQ_F(SGDP::stored<1>(2.0f, st, s), 2.0f + 0.9f * 1.5f);
  CHECK(SGDP::writes_back(0) && !SGDP::writes_back(1));
  // momentum 0 keeps a NaN buffer NaN (0 * NaN)
  const SGDP::Scalars z = SGDP::scalars(hyper<SGDP>({0.1, 0, 0, 0, 0, 1e-8, 0.1, 0.1}), 1);
  float nb[1] = {(float)NAN};
  CHECK(std::isnan(SGDP::update<0>(1.0f, 0.0f, nb, z)));
  // wdf = f32(1 - lr*wd*ratio/(1-momentum))
  const SGDP::Hyper hw = hyper<SGDP>({0.1, 0.9, 0, 1e-2, 0, 1e-8, 0.1, 0.1});
  CHECK_EQ_F(SGDP::wd_factor(hw, 1.0), (float)(1.0 - (0.1 * 1e-2) / (1.0 - 0.9)));
  CHECK_EQ_F(SGDP::apply(2.0f, 0.5f, 0.99f, s), fmaf(0.5f, -0.1f, 2.0f * 0.99f));
  int field = -1;
  CHECK(SGDP::check(hyper<SGDP>({0.1, 1.0, 0, 1e-2, 0, 1e-8, 0.1, 0.1}), &field) != nullptr && field == 1);
}

static void test_adamw_policy() {
  // torch.optim.AdamW: p *= 1 - lr*wd (always); p += f32(f32(-lr/bc1) * m) / den
  const AdamW::Hyper h = hyper<AdamW>({0.01, 0.9, 0.999, 1e-8, 0.1});
  const AdamW::Scalars s = AdamW::scalars(h, 2);
  CHECK_EQ_F(s.neg_step, (float)(-(0.01 / (1.0 - 0.81))));
  CHECK_EQ_F(s.sqrt_bc2, (float)sqrt(1.0 - 0.999 * 0.999));
  float st[2] = {0.25f, 0.5f};
  const float u = AdamW::update<0>(0.75f, 3.0f, st, s);
  const float den = sqrtf(st[1]) / s.sqrt_bc2 + s.eps;
  CHECK_EQ_F(u, (s.neg_step * st[0]) / den);
  const float wdf = AdamW::wd_factor(h, 0.5);  // the ratio does not apply
  CHECK_EQ_F(wdf, (float)(1.0 - 0.01 * 0.1));
  CHECK_EQ_F(AdamW::apply(3.0f, u, wdf, s), 3.0f * wdf + u);
  CHECK_EQ_F(AdamW::wd_factor(hyper<AdamW>({0.01, 0.9, 0.999, 1e-8, 0.0}), 1.0), 1.0f);
  CHECK(!AdamW::kProjects && AdamW::kVariants == 1);
}

static void test_sgd_policy() {
  // Variant bits from the hyperparameters and the step.
  CHECK(SGD::scalars(hyper<SGD>({0.1, 0.9, 0, 1e-2, 1}), 1).variant == (SGD::kDecay | SGD::kMomentum | SGD::kFirst | SGD::kNesterov));
  CHECK(SGD::scalars(hyper<SGD>({0.1, 0.9, 0, 0, 0}), 2).variant == SGD::kMomentum);
  CHECK(SGD::scalars(hyper<SGD>({0.1, 0, 0, 0, 0}), 1).variant == SGD::kFirst);
  const SGD::Scalars s = SGD::scalars(hyper<SGD>({0.1, 0.9, 0.5, 1e-2, 0}), 1);
  // d = fma(p, wd, g); first step: the buffer is d itself (no dampening)
  float st[1] = {123.0f};
  const float d = fmaf(2.0f, s.wd, 0.5f);
  CHECK_EQ_F((SGD::update<SGD::kDecay | SGD::kMomentum | SGD::kFirst>(0.5f, 2.0f, st, s)), d);
  CHECK_EQ_F(st[0], d);
  // later: buf*momentum + (1-dampening)*d
  st[0] = 1.0f;
  const float b = fmaf(d, 0.5f, 1.0f * 0.9f);
  CHECK_EQ_F((SGD::update<SGD::kDecay | SGD::kMomentum>(0.5f, 2.0f, st, s)), b);
  CHECK_EQ_F(st[0], b);
  // Nesterov: fma(buf, momentum, d)
  st[0] = 1.0f;
  CHECK_EQ_F((SGD::update<SGD::kMomentum | SGD::kNesterov>(0.5f, 2.0f, st, s)), fmaf(fmaf(0.5f, 0.5f, 0.9f), 0.9f, 0.5f));
  // no momentum: the buffer is untouched, d = g
  st[0] = 7.0f;
  CHECK_EQ_F(SGD::update<0>(0.5f, 2.0f, st, s), 0.5f);
  CHECK_EQ_F(st[0], 7.0f);
  CHECK_EQ_F(SGD::apply(2.0f, 0.5f, 1.0f, s), fmaf(0.5f, -0.1f, 2.0f));
  int field = -1;
  CHECK(SGD::check(hyper<SGD>({0.1, 0.9, 0.1, 0, 1}), &field) != nullptr && field == 4);  // Nesterov with dampening
  CHECK(SGD::check(hyper<SGD>({0.1, 0.9, 0.0, 0, 1}), &field) == nullptr);
}

static void test_variant_dispatch() {
  int seen = -1;
  with_variant<SGD>(13, [&](auto tag) { seen = decltype(tag)::value; });
  CHECK(seen == 13);
  seen = -1;
  with_variant<AdamP>(2, [&](auto tag) { seen = decltype(tag)::value; });  // out of range: nothing runs
  CHECK(seen == -1);
  int n = 0;
  CHECK(with_policy(OptKind::SGDP, [&](auto pol) { n = decltype(pol)::kSlots; }) && n == 1);
}

static ChannelSums sums_of(const std::vector<float>& g, const std::vector<float>& p, size_t b, size_t e) {
  ChannelSums s;
  sums_zero(s);
  for (size_t i = b; i < e; ++i) sums_accumulate(s, g[i], p[i], 0.0f);
  return s;
}

static void test_decision() {
  const double delta = 0.1, wdr = 0.1, eps = 1e-8;
  // Two channels of 4: g parallel to p -> none (|cos| = 1 on both views).
  std::vector<float> p = {1, 2, 3, 4, -1, 0.5f, 2, 1}, g(8);
  for (int i = 0; i < 8; ++i) g[i] = 0.5f * p[i];
  ChannelSums cs[2] = {sums_of(g, p, 0, 4), sums_of(g, p, 4, 8)};
  DecisionResult r = decide(cs, 2, 8, delta, wdr, eps);
  CHECK(r.code == kDecisionNone);
  CHECK_EQ_F(r.ratio, 1.0);
  CHECK_NEAR(r.channel_max_cos, 1.0, 1e-6);
  CHECK_EQ_F(r.channel_threshold, (float)(0.1 / 2.0));
  CHECK_EQ_F(r.layer_threshold, (float)(0.1 / sqrt(8.0)));

  // Orthogonal within each channel -> channel; the layer view is not evaluated.
  g = {2, -1, 0, 0, 0.5f, 1, 0, 0};
  cs[0] = sums_of(g, p, 0, 4);
  cs[1] = sums_of(g, p, 4, 8);
  r = decide(cs, 2, 8, delta, wdr, eps);
  CHECK(r.code == kDecisionChannel);
  CHECK_EQ_F(r.ratio, wdr);
  CHECK(r.layer_cos != r.layer_cos);  // NaN: not evaluated

  // Orthogonal as a whole but not per channel -> layer.
  ChannelSums a = {1.0, 1.0, 1.0, 0.0}, b = {-1.0, 1.0, 1.0, 0.0};
  ChannelSums ab[2] = {a, b};
  r = decide(ab, 2, 8, delta, wdr, eps);
  CHECK(r.code == kDecisionLayer);
  CHECK_EQ_F(r.layer_cos, 0.0f);

  // NaN never projects (strict <), and NaN stays the max.
  ChannelSums n[2] = {{0.0, 1.0, 1.0, 0.0}, {NAN, NAN, 1.0, 0.0}};
  r = decide(n, 2, 8, delta, wdr, eps);
  CHECK(r.code == kDecisionNone);
  CHECK(r.channel_max_cos != r.channel_max_cos);

  // Zero gradient: cos 0 everywhere -> channel.
  ChannelSums z[2] = {{0, 0, 4, 0}, {0, 0, 9, 0}};
  CHECK(decide(z, 2, 8, delta, wdr, eps).code == kDecisionChannel);

  // A squared norm that overflows float32 gives cos 0 (torch: x / inf = 0); an inf element gives NaN.
  const double e = cos_eps(eps);
  CHECK_EQ_F(abs_cos(1e39, 1e40, 1e38, e), 0.0);
  CHECK(abs_cos(1.0, HUGE_VAL, 1.0, e) != abs_cos(1.0, HUGE_VAL, 1.0, e));
  // Tiny gradients: ||g|| < eps scales cos down by ||g|| / eps (torch >= 1.12).
  CHECK_NEAR(abs_cos(1e-10 * 1.0, 1e-20, 1.0, e), 1e-10 / e, 1e-12);
  CHECK_EQ_F(e, sqrt((double)(float)(1e-16)));

  // Strict compare in float32: cos exactly at the threshold does not project.
  const float thr = threshold_f32(0.1, 4.0);
  ChannelSums at[1] = {{(double)thr, 1.0, 1.0, 0.0}};
  r = decide(at, 1, 4, 0.1, wdr, eps);
  CHECK_EQ_F(r.channel_max_cos, thr);
  CHECK(r.code == kDecisionNone);

  // No channels (an empty tensor) does not divide by zero.
  r = decide(nullptr, 0, 0, delta, wdr, eps);
  CHECK(r.channel_threshold != r.channel_threshold);
}

static void test_projection() {
  // div = f32(f32(||p||) + eps), scale = f32(p.u / div); u' = u - (p/div)*scale removes the radial part.
  const std::vector<float> p = {3, 4}, u = {1, 2};
  const double pp = 25, pu = 11;
  const ProjCoef k = proj_coef(pp, pu, 1e-8f);
  CHECK_EQ_F(k.div, 5.0f + 1e-8f);
  CHECK_EQ_F(k.scale, (float)(11.0 / (double)k.div));
  const float u0 = project(u[0], p[0], k.div, k.scale), u1 = project(u[1], p[1], k.div, k.scale);
  CHECK_EQ_F(u0, u[0] - (p[0] / k.div) * k.scale);
  CHECK_NEAR(u0 * p[0] + u1 * p[1], 0.0, 1e-5);
  // Zero weights: div = eps, scale = 0, u unchanged.
  const ProjCoef z = proj_coef(0, 0, 1e-8f);
  CHECK_EQ_F(project(0.5f, 0.0f, z.div, z.scale), 0.5f);

  // proj_coef_for picks the channel's or the layer's sums.
  ChannelSums cs[2] = {{0, 0, 25, 11}, {0, 0, 9, 3}};
  DecisionResult r = decide(cs, 2, 4, 0.1, 0.1, 1e-8);  // gp = 0 -> channel
  CHECK(r.code == kDecisionChannel);
  CHECK_EQ_F(proj_coef_for(r, cs, 1, 1e-8f).scale, proj_coef(9, 3, 1e-8f).scale);
  r.code = kDecisionLayer;
  CHECK_EQ_F(proj_coef_for(r, cs, 1, 1e-8f).div, proj_coef(34, 14, 1e-8f).div);

  double info[kInfoStride];
  write_info(info, r, 1.5, 0.25);
  CHECK_EQ_F(info[kInfoDecision], 2.0);
  CHECK_EQ_F(info[kInfoNormSqBefore], 34.0);
  CHECK_EQ_F(info[kInfoDeltaSq], 0.25);
  write_info_not_eligible(info, 1, 2, 3);
  CHECK_EQ_F(info[kInfoDecision], 3.0);
  CHECK(info[kInfoChannelMaxCos] != info[kInfoChannelMaxCos]);
}

int main() {
  test_adamp_policy();
  test_sgdp_policy();
  test_adamw_policy();
  test_sgd_policy();
  test_variant_dispatch();
  test_decision();
  test_projection();
  return report("test_math");
}
