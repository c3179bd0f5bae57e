// The step's math (adamp/math.h) on hand-computed cases: every float32 operation of SPEC.md s2-4
// and every branch of the decision. The CUDA kernels call the same functions.
#include "adamp/math.h"

#include <vector>

#include "check.h"

using namespace adamp;

static void test_adamp_elementwise() {
  const AdamPScalarsF s = make_adamp_scalars(1e-3, 0.9, 0.999, 1e-8, 1, false);
  CHECK_EQ_F(s.b1, 0.9f);
  CHECK_EQ_F(s.omb1, (float)(1.0 - 0.9));
  CHECK_EQ_F(s.sqrt_bc2, (float)sqrt(1.0 - 0.999));
  CHECK_EQ_F(s.neg_step, (float)(-(1e-3 / (1.0 - 0.9))));

  // m = fma(g, f32(1-b1), f32(m*b1)); v = fma(f32(f32(1-b2)*g), g, f32(v*b2))
  float m = 0.25f, v = 0.5f;
  const float g = 0.75f;
  adamp_moments(m, v, g, s);
  CHECK_EQ_F(m, fmaf(g, s.omb1, 0.25f * s.b1));
  CHECK_EQ_F(v, fmaf(s.omb2 * g, g, 0.5f * s.b2));

  // u = m / (sqrt(v)/sqrt_bc2 + eps); nesterov u = (b1*m + (1-b1)*g) / denom
  const float den = sqrtf(v) / s.sqrt_bc2 + s.eps;
  CHECK_EQ_F(adamp_denom(v, s), den);
  CHECK_EQ_F(adamp_update<false>(m, v, g, s), m / den);
  CHECK_EQ_F(adamp_update<true>(m, v, g, s), (s.b1 * m + s.omb1 * g) / den);
  AdamPScalarsF sn = s;
  sn.nesterov = 1;
  CHECK_EQ_F(adamp_update(m, v, g, sn), adamp_update<true>(m, v, g, s));

  // step 1 from zero state: u = (0.1 g) / (sqrt(0.001 g^2)/sqrt(0.001) + eps) ~ 0.1 sign(g)
  // (the 1/(1-b1) bias correction is in neg_step, not in u)
  float m0 = 0, v0 = 0;
  adamp_moments(m0, v0, 0.5f, s);
  CHECK_NEAR(adamp_update<false>(m0, v0, 0.5f, s), 0.1, 1e-6);

  // p = fma(u, f32(-step), f32(p*wdf))
  CHECK_EQ_F(apply_step(2.0f, 0.5f, 0.99f, s.neg_step), fmaf(0.5f, s.neg_step, 2.0f * 0.99f));
}

static void test_sgdp_elementwise() {
  const SGDPScalarsF s = make_sgdp_scalars(0.1, 0.9, 0.25, false);
  CHECK_EQ_F(s.omd, 0.75f);
  CHECK_EQ_F(s.neg_lr, -0.1f);
  // dampening from the first step: buf = 0*0.9 + 0.75*g
  CHECK_EQ_F(sgdp_buffer(0.0f, 2.0f, s), 1.5f);
  CHECK_EQ_F(sgdp_buffer(1.0f, 2.0f, s), fmaf(2.0f, 0.75f, 1.0f * 0.9f));
  CHECK_EQ_F(sgdp_update<false>(1.5f, 2.0f, s), 1.5f);
  CHECK_EQ_F(sgdp_update<true>(1.5f, 2.0f, s), 2.0f + 0.9f * 1.5f);
  // momentum 0 keeps a NaN buffer NaN (0 * NaN)
  const SGDPScalarsF z = make_sgdp_scalars(0.1, 0.0, 0.0, false);
  CHECK(sgdp_buffer((float)NAN, 1.0f, z) != sgdp_buffer((float)NAN, 1.0f, z));
}

static void test_weight_decay() {
  CHECK_EQ_F(adamp_wd_factor(0.1, 0.5, 1.0), (float)(1.0 - 0.05));
  CHECK_EQ_F(adamp_wd_factor(0.1, 0.5, 0.1), (float)(1.0 - 0.1 * 0.5 * 0.1));
  CHECK_EQ_F(adamp_wd_factor(0.1, 0.0, 1.0), 1.0f);
  CHECK_EQ_F(adamp_wd_factor(0.1, -0.5, 1.0), 1.0f);  // wd < 0 ignored
  CHECK_EQ_F(sgdp_wd_factor(0.1, 1e-2, 1.0, 0.9), (float)(1.0 - (0.1 * 1e-2) / (1.0 - 0.9)));
  CHECK_EQ_F(sgdp_wd_factor(0.1, -1e-2, 1.0, 0.9), 1.0f);
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
  test_adamp_elementwise();
  test_sgdp_elementwise();
  test_weight_decay();
  test_decision();
  test_projection();
  return report("test_math");
}
