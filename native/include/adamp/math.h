// The arithmetic every optimizer shares, for the CPU core and the CUDA kernels: float32
// primitives, the projection, the step, and the projection decision from per-channel sums. Each
// optimizer's own element code is its policy (adamp/optim/*.h, listed in adamp/optim/registry.h).
//
// Every function here is inline and compiles as host C++ and as CUDA device code (ADAMP_HD).
// The element-wise functions are templates on the value type: `float` on the GPU and in the
// CPU's scalar tail, an 8-lane vector type (native/cpu/simd.h) in the CPU's vector body, so
// both paths run literally the same sequence of float32 operations.
//
// Numerics follow docs/numerics.md (the official clovaai/AdamP v0.3.0 on PyTorch's AVX2 CPU
// kernels; #the-projection, #the-projection-decision):
//   u'  = u - f32(f32(p/div_c) * scale_c)                             (projection)
//   p   = fma(u', f32(-step_size), f32(p*wdf))                         (the step)
//
// note: the float primitives below never contract (a*b+c stays two roundings) except where
// f_fma says so. Host builds must use -ffp-contract=off; on the device the _rn intrinsics
// guarantee it whatever --fmad says.
//
// note: every function is `static` (internal linkage): the CPU core compiles this header once
// with -mavx2 -mfma and once without, and the linker must never merge the two copies (an AVX2
// copy picked for the portable path would crash on an older CPU).
#ifndef ADAMP_MATH_H
#define ADAMP_MATH_H

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define ADAMP_HD __host__ __device__
#else
#define ADAMP_HD
#endif

namespace adamp {

// ---------------------------------------------------------------------------------------------
// Constants shared with lib/core/info.ts.

// kDecisionNotApplicable: the optimizer has no projection (AdamW, SGD); its one pass writes it.
enum DecisionCode : int {
  kDecisionNone = 0,
  kDecisionChannel = 1,
  kDecisionLayer = 2,
  kDecisionNotEligible = 3,
  kDecisionNotApplicable = 4,
};

// Doubles per slot in the info record, and their offsets.
enum InfoField : int {
  kInfoDecision = 0,
  kInfoChannelMaxCos = 1,
  kInfoChannelThreshold = 2,
  kInfoLayerCos = 3,
  kInfoLayerThreshold = 4,
  kInfoNormSqBefore = 5,
  kInfoNormSqAfter = 6,
  kInfoDeltaSq = 7,
  kInfoStride = 8,
};

// ---------------------------------------------------------------------------------------------
// float32 primitives: one IEEE round-to-nearest operation each.

ADAMP_HD static inline float f_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
ADAMP_HD static inline float f_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
ADAMP_HD static inline float f_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
ADAMP_HD static inline float f_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
ADAMP_HD static inline float f_sqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return sqrtf(a);
#endif
}
/** a*b + c with one rounding. */
ADAMP_HD static inline float f_fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return fmaf(a, b, c);
#endif
}
/** Broadcast a float constant to the value type (identity for float). */
template <class F>
ADAMP_HD static inline F f_splat(float x) {
  return F(x);
}

// ---------------------------------------------------------------------------------------------
// Element-wise math shared by the policies (F = float or a SIMD vector of floats with the same
// primitives). Each optimizer's own element code is its policy (adamp/optim/*.h).

/** The projected update `u - (p / div) * scale` (per-channel div and scale from proj_coef). */
template <class F>
ADAMP_HD static inline F project(F u, F p, F div, F scale) {
  return f_sub(u, f_mul(f_div(p, div), scale));
}

/** Weight decay then the step: `fma(u, f32(-step_size), f32(p * wdf))`. */
template <class F>
ADAMP_HD static inline F apply_step(F p, F u, F wdf, F neg_step) {
  return f_fma(u, neg_step, f_mul(p, wdf));
}

// ---------------------------------------------------------------------------------------------
// Per-channel sums and the decision.
//
// note: g*p, g*g, p*p and p*u of two float32 values are exact in double, so `acc + a*b` gives the
// same double whether or not it is fused; only the order of the additions matters, and each
// caller fixes it (the CPU core: 8 lanes per row piece, pieces in order).

struct ChannelSums {
  double gp, gg, pp, pu;
};

ADAMP_HD static inline void sums_zero(ChannelSums& s) { s.gp = s.gg = s.pp = s.pu = 0.0; }

ADAMP_HD static inline void sums_add(ChannelSums& acc, const ChannelSums& x) {
  acc.gp += x.gp;
  acc.gg += x.gg;
  acc.pp += x.pp;
  acc.pu += x.pu;
}

/** Add one element's products (float inputs). */
ADAMP_HD static inline void sums_accumulate(ChannelSums& acc, float g, float p, float u) {
  const double gd = g, pd = p;
  acc.gp += gd * pd;
  acc.gg += gd * gd;
  acc.pp += pd * pd;
  acc.pu += pd * (double)u;
}

/** The cosine's floor `sqrt(f32(eps*eps))` (torch >= 1.12 clamps the squared norms at eps^2 in float32). */
ADAMP_HD static inline double cos_eps(double eps) { return sqrt((double)(float)(eps * eps)); }

/** max(x, e) where a NaN x stays NaN (like JS Math.max and torch's clamp). */
ADAMP_HD static inline double max_keep_nan(double x, double e) { return x < e ? e : x; }

/**
 * Whether a squared norm overflows float32. The official code sums squares in float32, so there
 * the norm is inf: the cosine is 0 (x / inf) and the projection removes nothing (p / inf); the
 * cosine and the projection test this one boundary (docs/numerics.md#the-float32-edge).
 */
ADAMP_HD static inline bool sq_overflows_f32(double x) { return x > 3.4028234663852886e38; }

/**
 * |cos| of one row from its sums, as torch >= 1.12 F.cosine_similarity computes it in float32:
 * `|g.p| / (max(||g||, e) * max(||p||, e))`. A squared norm that overflows float32 makes every
 * x_i / inf = 0 (cos 0) unless an element itself is inf or NaN (then NaN).
 */
ADAMP_HD static inline double abs_cos(double gp, double gg, double pp, double e) {
  if (sq_overflows_f32(gg) || sq_overflows_f32(pp)) {
    const double inf = HUGE_VAL;
    return (gg == inf || pp == inf || gp != gp) ? (double)NAN : 0.0;
  }
  return fabs(gp) / (max_keep_nan(sqrt(gg), e) * max_keep_nan(sqrt(pp), e));
}

/** float32 threshold `f32(delta / sqrt(cols))`. */
ADAMP_HD static inline float threshold_f32(double delta, double cols) { return (float)(delta / sqrt(cols)); }

struct DecisionResult {
  int code;               // kDecisionNone / kDecisionChannel / kDecisionLayer
  float channel_max_cos;  // f32(max_c |cos_c|) (NaN is sticky)
  float channel_threshold;
  float layer_cos;  // NaN when the layer view was not evaluated
  float layer_threshold;
  double ratio;        // wd_ratio when projected, else 1
  ChannelSums totals;  // the layer view's sums (channel sums added in channel order)
};

/**
 * The decision once the channels are reduced: `max_cos` = max over channels of |cos| (NaN
 * sticky) and `totals` = the four sums added over channels (the layer view's sums). The channel
 * view first (all rows below the float32 threshold, strict <, so NaN never projects), then the
 * layer view; the first that fires wins (docs/numerics.md#the-projection-decision). The CUDA kernels reduce in parallel and
 * call this directly; `decide()` below is the sequential reduction.
 */
ADAMP_HD static inline DecisionResult decide_reduced(double max_cos, const ChannelSums& totals, int64_t channels,
                                                     int64_t numel, double delta, double wd_ratio, double eps) {
  DecisionResult r;
  r.totals = totals;
  r.channel_max_cos = (float)max_cos;
  r.channel_threshold = threshold_f32(delta, channels > 0 ? (double)(numel / channels) : (double)NAN);
  r.layer_cos = NAN;
  r.layer_threshold = NAN;
  if (r.channel_max_cos < r.channel_threshold) {
    r.code = kDecisionChannel;
    r.ratio = wd_ratio;
    return r;
  }
  r.layer_cos = (float)abs_cos(totals.gp, totals.gg, totals.pp, cos_eps(eps));
  r.layer_threshold = threshold_f32(delta, (double)numel);
  if (r.layer_cos < r.layer_threshold) {
    r.code = kDecisionLayer;
    r.ratio = wd_ratio;
    return r;
  }
  r.code = kDecisionNone;
  r.ratio = 1.0;
  return r;
}

/** The projection decision of one tensor from its per-channel sums, reduced in channel order. */
ADAMP_HD static inline DecisionResult decide(const ChannelSums* sums, int64_t channels, int64_t numel, double delta,
                                             double wd_ratio, double eps) {
  const double e = cos_eps(eps);
  double max_cos = 0.0;
  ChannelSums totals;
  sums_zero(totals);
  for (int64_t c = 0; c < channels; ++c) {
    const double cs = abs_cos(sums[c].gp, sums[c].gg, sums[c].pp, e);
    if (!(cs <= max_cos)) max_cos = (max_cos != max_cos) ? max_cos : cs;  // NaN is sticky, as torch's max
    sums_add(totals, sums[c]);
  }
  return decide_reduced(max_cos, totals, channels, numel, delta, wd_ratio, eps);
}

ADAMP_HD static inline bool is_projected(int code) { return code == kDecisionChannel || code == kDecisionLayer; }

/**
 * Per-row projection coefficients: div = f32(f32(||p||) + f32(eps)), scale = f32((p.u) / div);
 * where ||p||^2 overflows float32, what the official code's inf norm gives (see sq_overflows_f32).
 */
struct ProjCoef {
  float div;
  float scale;
};

ADAMP_HD static inline ProjCoef proj_coef(double pp, double pu, float eps_f32) {
  ProjCoef k;
  if (sq_overflows_f32(pp)) {
    // The official ||p|| is inf: p / inf = 0 removes nothing, unless p.u is not finite (its float32
    // sum of 0 * inf is NaN, which makes the row NaN).
    k.div = HUGE_VALF;
    k.scale = pu - pu == 0.0 ? 0.0f : NAN;
    return k;
  }
  k.div = f_add((float)sqrt(pp), eps_f32);
  k.scale = (float)(pu / (double)k.div);
  return k;
}

/** The coefficients channel c uses after decision r (meaningful only when projected). */
ADAMP_HD static inline ProjCoef proj_coef_for(const DecisionResult& r, const ChannelSums* sums, int64_t c, float eps_f32) {
  return r.code == kDecisionChannel ? proj_coef(sums[c].pp, sums[c].pu, eps_f32)
                                    : proj_coef(r.totals.pp, r.totals.pu, eps_f32);
}

/** Fill one slot's info record. */
ADAMP_HD static inline void write_info(double* info, const DecisionResult& r, double norm_sq_after, double delta_sq) {
  info[kInfoDecision] = (double)r.code;
  info[kInfoChannelMaxCos] = (double)r.channel_max_cos;
  info[kInfoChannelThreshold] = (double)r.channel_threshold;
  info[kInfoLayerCos] = (double)r.layer_cos;
  info[kInfoLayerThreshold] = (double)r.layer_threshold;
  info[kInfoNormSqBefore] = r.totals.pp;
  info[kInfoNormSqAfter] = norm_sq_after;
  info[kInfoDeltaSq] = delta_sq;
}

ADAMP_HD static inline void write_info_not_eligible(double* info, double norm_sq_before, double norm_sq_after,
                                             double delta_sq) {
  info[kInfoDecision] = (double)kDecisionNotEligible;
  info[kInfoChannelMaxCos] = NAN;
  info[kInfoChannelThreshold] = NAN;
  info[kInfoLayerCos] = NAN;
  info[kInfoLayerThreshold] = NAN;
  info[kInfoNormSqBefore] = norm_sq_before;
  info[kInfoNormSqAfter] = norm_sq_after;
  info[kInfoDeltaSq] = delta_sq;
}

}  // namespace adamp

#endif  // ADAMP_MATH_H
