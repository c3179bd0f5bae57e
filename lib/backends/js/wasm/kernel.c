/*
 * The WebAssembly SIMD (128-bit) kernel of the js backend (driven by lib/backends/js/wasm.ts;
 * rebuilt by scripts/build-wasm.sh into kernel-wasm.ts).
 * Every operation reproduces the pure TypeScript engine (lib/backends/js/engine.ts) bit for bit:
 *   float ops (f32x4 add/sub/mul/div/sqrt) where the TS rounds each op with Math.fround;
 *   f64 ops then one rounding where the TS computes `fround(a + b * c)` or multiplies by a double;
 *   double sums accumulated serially in the same element order, per row of the channel view.
 */
#include <wasm_simd128.h>

#ifndef CHUNK
#define CHUNK (1 << 16)
#endif
#ifndef CHMAX
#define CHMAX (1 << 16)
#endif
#define BLOCK 256

typedef v128_t V;

/* Staging areas: a chunk of p, g, m (AdamP exp_avg / SGDP buffer), v, u; per-channel sums. */
static float P[CHUNK], G[CHUNK], M[CHUNK], VV[CHUNK], U[CHUNK];
static double SUMS[6 * CHMAX]; /* gp, gg, pp, pu, div, scale */
/* misc: 0 after, 1 delta, 2 before, 3..6 row carry of the sums, 7..8 row carry of the apply sums */
static double MISC[16];

#define EXPORT(name) __attribute__((export_name(name)))

EXPORT("chunk") int chunk(void) { return CHUNK; }
EXPORT("chmax") int chmax(void) { return CHMAX; }
EXPORT("p_ptr") float *p_ptr(void) { return P; }
EXPORT("g_ptr") float *g_ptr(void) { return G; }
EXPORT("m_ptr") float *m_ptr(void) { return M; }
EXPORT("v_ptr") float *v_ptr(void) { return VV; }
EXPORT("u_ptr") float *u_ptr(void) { return U; }
EXPORT("sums_ptr") double *sums_ptr(void) { return SUMS; }
EXPORT("misc_ptr") double *misc_ptr(void) { return MISC; }

static int inner_, channels_;
/* AdamP */
static float b1_, omb1_, b2_, omb2_, eps_;
static double rsbc2_;
static int nesterov_;
/* SGDP */
static float mom_, omd_;
/* apply */
static float wdf_, neg_;

EXPORT("set_shape") void set_shape(int inner, int channels) { inner_ = inner; channels_ = channels; }
EXPORT("set_adamp") void set_adamp(float b1, float omb1, float b2, float omb2, double rsbc2, float eps, int nesterov) {
  b1_ = b1; omb1_ = omb1; b2_ = b2; omb2_ = omb2; rsbc2_ = rsbc2; eps_ = eps; nesterov_ = nesterov;
}
EXPORT("set_sgdp") void set_sgdp(float mom, float omd, int nesterov) { mom_ = mom; omd_ = omd; nesterov_ = nesterov; }
EXPORT("set_apply") void set_apply(float wdf, float neg) { wdf_ = wdf; neg_ = neg; }

/* ---- vector helpers ---- */
static inline V lo64(V x) { return wasm_f64x2_promote_low_f32x4(x); }
static inline V hi64(V x) { return wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(x, x, 2, 3, 2, 3)); }
static inline V join32(V lo, V hi) {
  return wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(lo), wasm_f32x4_demote_f64x2_zero(hi), 0, 1, 4, 5);
}
/* fround(a + b * c) for float32 a, b, c: the product is exact in double, one double add, one rounding */
static inline V fma_d(V a, V b, V c) {
  return join32(wasm_f64x2_add(lo64(a), wasm_f64x2_mul(lo64(b), lo64(c))),
                wasm_f64x2_add(hi64(a), wasm_f64x2_mul(hi64(b), hi64(c))));
}
/* fround(a * d) for float32 a and a double d */
static inline V mul_d(V a, V d2) { return join32(wasm_f64x2_mul(lo64(a), d2), wasm_f64x2_mul(hi64(a), d2)); }

static inline float fma_s(float a, float b, float c) { return (float)((double)a + (double)b * (double)c); }

/* ---- AdamP moments and update u over [0, n) of the staging areas ---- */
static inline float adamp_u1(float gi, float *m, float *v) {
  float mi = fma_s(*m * b1_, omb1_, gi);
  float vi = fma_s(*v * b2_, omb2_ * gi, gi);
  *m = mi; *v = vi;
  float den = (float)((double)__builtin_sqrtf(vi) * rsbc2_) + eps_;
  return nesterov_ ? (b1_ * mi + omb1_ * gi) / den : mi / den;
}

static void adamp_update(int i0, int n) {
  const V b1 = wasm_f32x4_splat(b1_), omb1 = wasm_f32x4_splat(omb1_);
  const V b2 = wasm_f32x4_splat(b2_), omb2 = wasm_f32x4_splat(omb2_);
  const V eps = wasm_f32x4_splat(eps_), rs = wasm_f64x2_splat(rsbc2_);
  int i = i0, end = i0 + n;
  if (nesterov_) {
    for (; i + 4 <= end; i += 4) {
      V g = wasm_v128_load(G + i);
      V m = fma_d(wasm_f32x4_mul(wasm_v128_load(M + i), b1), omb1, g);
      V v = fma_d(wasm_f32x4_mul(wasm_v128_load(VV + i), b2), wasm_f32x4_mul(omb2, g), g);
      wasm_v128_store(M + i, m);
      wasm_v128_store(VV + i, v);
      V den = wasm_f32x4_add(mul_d(wasm_f32x4_sqrt(v), rs), eps);
      V num = wasm_f32x4_add(wasm_f32x4_mul(b1, m), wasm_f32x4_mul(omb1, g));
      wasm_v128_store(U + i, wasm_f32x4_div(num, den));
    }
  } else {
    for (; i + 4 <= end; i += 4) {
      V g = wasm_v128_load(G + i);
      V m = fma_d(wasm_f32x4_mul(wasm_v128_load(M + i), b1), omb1, g);
      V v = fma_d(wasm_f32x4_mul(wasm_v128_load(VV + i), b2), wasm_f32x4_mul(omb2, g), g);
      wasm_v128_store(M + i, m);
      wasm_v128_store(VV + i, v);
      V den = wasm_f32x4_add(mul_d(wasm_f32x4_sqrt(v), rs), eps);
      wasm_v128_store(U + i, wasm_f32x4_div(m, den));
    }
  }
  for (; i < end; i++) U[i] = adamp_u1(G[i], M + i, VV + i);
}

/* ---- SGDP buffer (and u = g + mom * buf with Nesterov) ---- */
static void sgdp_update(int i0, int n) {
  const V mom = wasm_f32x4_splat(mom_), omd = wasm_f32x4_splat(omd_);
  int i = i0, end = i0 + n;
  if (nesterov_) {
    for (; i + 4 <= end; i += 4) {
      V g = wasm_v128_load(G + i);
      V b = fma_d(wasm_f32x4_mul(wasm_v128_load(M + i), mom), omd, g);
      wasm_v128_store(M + i, b);
      wasm_v128_store(U + i, wasm_f32x4_add(g, wasm_f32x4_mul(mom, b)));
    }
    for (; i < end; i++) {
      float b = fma_s(M[i] * mom_, omd_, G[i]);
      M[i] = b;
      U[i] = G[i] + mom_ * b;
    }
  } else {
    for (; i + 4 <= end; i += 4) {
      V g = wasm_v128_load(G + i);
      wasm_v128_store(M + i, fma_d(wasm_f32x4_mul(wasm_v128_load(M + i), mom), omd, g));
    }
    for (; i < end; i++) M[i] = fma_s(M[i] * mom_, omd_, G[i]);
  }
}


/* acc01 = [gp, gg], acc23 = [pp, pu] += the products of 4 elements, in element order */
#define SUMS4(g, p, u)                                                                   \
  do {                                                                                   \
    V gl_ = lo64(g), gh_ = hi64(g), pl_ = lo64(p), ph_ = hi64(p), ul_ = lo64(u), uh_ = hi64(u); \
    V gpl_ = wasm_f64x2_mul(gl_, pl_), ggl_ = wasm_f64x2_mul(gl_, gl_);                 \
    V ppl_ = wasm_f64x2_mul(pl_, pl_), pul_ = wasm_f64x2_mul(pl_, ul_);                 \
    V gph_ = wasm_f64x2_mul(gh_, ph_), ggh_ = wasm_f64x2_mul(gh_, gh_);                 \
    V pph_ = wasm_f64x2_mul(ph_, ph_), puh_ = wasm_f64x2_mul(ph_, uh_);                 \
    acc01 = wasm_f64x2_add(acc01, wasm_i64x2_shuffle(gpl_, ggl_, 0, 2));                \
    acc23 = wasm_f64x2_add(acc23, wasm_i64x2_shuffle(ppl_, pul_, 0, 2));                \
    acc01 = wasm_f64x2_add(acc01, wasm_i64x2_shuffle(gpl_, ggl_, 1, 3));                \
    acc23 = wasm_f64x2_add(acc23, wasm_i64x2_shuffle(ppl_, pul_, 1, 3));                \
    acc01 = wasm_f64x2_add(acc01, wasm_i64x2_shuffle(gph_, ggh_, 0, 2));                \
    acc23 = wasm_f64x2_add(acc23, wasm_i64x2_shuffle(pph_, puh_, 0, 2));                \
    acc01 = wasm_f64x2_add(acc01, wasm_i64x2_shuffle(gph_, ggh_, 1, 3));                \
    acc23 = wasm_f64x2_add(acc23, wasm_i64x2_shuffle(pph_, puh_, 1, 3));                \
  } while (0)

#define SUMS1(gi, pi, ui)                                                                 \
  do {                                                                                    \
    double g_ = (gi), p_ = (pi), u_ = (ui);                                               \
    acc01 = wasm_f64x2_add(acc01, wasm_f64x2_make(g_ * p_, g_ * g_));                     \
    acc23 = wasm_f64x2_add(acc23, wasm_f64x2_make(p_ * p_, p_ * u_));                     \
  } while (0)

static inline void row_done(int *c, V *acc01, V *acc23) {
  SUMS[*c] += wasm_f64x2_extract_lane(*acc01, 0);
  SUMS[CHMAX + *c] += wasm_f64x2_extract_lane(*acc01, 1);
  SUMS[2 * CHMAX + *c] += wasm_f64x2_extract_lane(*acc23, 0);
  SUMS[3 * CHMAX + *c] += wasm_f64x2_extract_lane(*acc23, 1);
  *acc01 = *acc23 = wasm_f64x2_splat(0);
  if (++*c == channels_) *c = 0;
}

/*
 * Pass 1 of an eligible tensor over a chunk of n elements starting at row position (c, r):
 * the update (moments and u), then per-row sums g.p, g.g, p.p, p.u, each row's sum from 0 in
 * element order, added into the per-channel sums when the row ends (a row cut by the chunk's end
 * is carried in MISC[3..6]).
 */
#define PASS1(UPDATE4, UPDATE1, UPTR)                                                     \
  V acc01 = r ? wasm_f64x2_make(MISC[3], MISC[4]) : wasm_f64x2_splat(0);                  \
  V acc23 = r ? wasm_f64x2_make(MISC[5], MISC[6]) : wasm_f64x2_splat(0);                  \
  int i = 0;                                                                              \
  while (i < n) {                                                                         \
    int k = inner_ - r;                                                                   \
    if (k > n - i) k = n - i;                                                             \
    int e = i + k;                                                                        \
    for (; i + 4 <= e; i += 4) {                                                          \
      V g = wasm_v128_load(G + i);                                                        \
      UPDATE4;                                                                            \
      SUMS4(g, wasm_v128_load(P + i), wasm_v128_load(UPTR + i));                          \
    }                                                                                     \
    for (; i < e; i++) {                                                                  \
      UPDATE1;                                                                            \
      SUMS1(G[i], P[i], UPTR[i]);                                                         \
    }                                                                                     \
    r += k;                                                                               \
    if (r == inner_) { row_done(&c, &acc01, &acc23); r = 0; }                             \
  }                                                                                       \
  MISC[3] = wasm_f64x2_extract_lane(acc01, 0); MISC[4] = wasm_f64x2_extract_lane(acc01, 1); \
  MISC[5] = wasm_f64x2_extract_lane(acc23, 0); MISC[6] = wasm_f64x2_extract_lane(acc23, 1);

#define ADAMP4(NEST)                                                                      \
  V m = fma_d(wasm_f32x4_mul(wasm_v128_load(M + i), b1), omb1, g);                        \
  V v = fma_d(wasm_f32x4_mul(wasm_v128_load(VV + i), b2), wasm_f32x4_mul(omb2, g), g);    \
  wasm_v128_store(M + i, m);                                                              \
  wasm_v128_store(VV + i, v);                                                             \
  V den = wasm_f32x4_add(mul_d(wasm_f32x4_sqrt(v), rs), eps);                             \
  wasm_v128_store(U + i, wasm_f32x4_div(NEST ? wasm_f32x4_add(wasm_f32x4_mul(b1, m), wasm_f32x4_mul(omb1, g)) : m, den))

EXPORT("adamp_pass1") void adamp_pass1(int n, int c, int r) {
  const V b1 = wasm_f32x4_splat(b1_), omb1 = wasm_f32x4_splat(omb1_);
  const V b2 = wasm_f32x4_splat(b2_), omb2 = wasm_f32x4_splat(omb2_);
  const V eps = wasm_f32x4_splat(eps_), rs = wasm_f64x2_splat(rsbc2_);
  if (nesterov_) {
    PASS1(ADAMP4(1), U[i] = adamp_u1(G[i], M + i, VV + i), U)
  } else {
    PASS1(ADAMP4(0), U[i] = adamp_u1(G[i], M + i, VV + i), U)
  }
}

static inline void sgdp1(int i) {
  float b = fma_s(M[i] * mom_, omd_, G[i]);
  M[i] = b;
  if (nesterov_) U[i] = G[i] + mom_ * b;
}

EXPORT("sgdp_pass1") void sgdp_pass1(int n, int c, int r) {
  const V mom = wasm_f32x4_splat(mom_), omd = wasm_f32x4_splat(omd_);
  if (nesterov_) {
    PASS1(V b = fma_d(wasm_f32x4_mul(wasm_v128_load(M + i), mom), omd, g); wasm_v128_store(M + i, b);
          wasm_v128_store(U + i, wasm_f32x4_add(g, wasm_f32x4_mul(mom, b))), sgdp1(i), U)
  } else {
    PASS1(wasm_v128_store(M + i, fma_d(wasm_f32x4_mul(wasm_v128_load(M + i), mom), omd, g)), sgdp1(i), M)
  }
}

/* [p1^2, (p1 - p0)^2] of 4 elements added into acc in element order */
#define APPLY_SUMS4(p0, p1)                                                               \
  do {                                                                                    \
    V al_ = lo64(p1), ah_ = hi64(p1);                                                     \
    V dl_ = wasm_f64x2_sub(al_, lo64(p0)), dh_ = wasm_f64x2_sub(ah_, hi64(p0));           \
    al_ = wasm_f64x2_mul(al_, al_); ah_ = wasm_f64x2_mul(ah_, ah_);                       \
    dl_ = wasm_f64x2_mul(dl_, dl_); dh_ = wasm_f64x2_mul(dh_, dh_);                       \
    acc = wasm_f64x2_add(acc, wasm_i64x2_shuffle(al_, dl_, 0, 2));                        \
    acc = wasm_f64x2_add(acc, wasm_i64x2_shuffle(al_, dl_, 1, 3));                        \
    acc = wasm_f64x2_add(acc, wasm_i64x2_shuffle(ah_, dh_, 0, 2));                        \
    acc = wasm_f64x2_add(acc, wasm_i64x2_shuffle(ah_, dh_, 1, 3));                        \
  } while (0)

#define APPLY_SUMS1(p0, p1)                                                               \
  do {                                                                                    \
    double a_ = (p1), d_ = (double)(p1) - (double)(p0);                                   \
    acc = wasm_f64x2_add(acc, wasm_f64x2_make(a_ * a_, d_ * d_));                         \
  } while (0)

/*
 * Pass 2 over a chunk: u -= fround(fround(p / div_c) * scale_c) where projected (written back
 * when u is SGDP's buffer), p = fround(p * wdf + neg * u); per-row sums of p1^2 and (p1 - p0)^2.
 * useM: u is the M area (SGDP without Nesterov, written back).
 */
EXPORT("apply") void apply(int n, int c, int r, int projected, int useM) {
  const double *divs = SUMS + 4 * CHMAX, *scales = SUMS + 5 * CHMAX;
  float *u = useM ? M : U;
  const V wdf = wasm_f32x4_splat(wdf_), neg = wasm_f32x4_splat(neg_);
  V acc = r ? wasm_f64x2_make(MISC[7], MISC[8]) : wasm_f64x2_splat(0);
  V tot = wasm_f64x2_make(MISC[0], MISC[1]);
  int i = 0;
  while (i < n) {
    int k = inner_ - r;
    if (k > n - i) k = n - i;
    int e = i + k;
    if (projected) {
      const double rdiv = 1 / divs[c];
      const float sc = (float)scales[c];
      const V rd = wasm_f64x2_splat(rdiv), scv = wasm_f32x4_splat(sc);
      for (; i + 4 <= e; i += 4) {
        V p0 = wasm_v128_load(P + i);
        V ui = wasm_f32x4_sub(wasm_v128_load(u + i), wasm_f32x4_mul(mul_d(p0, rd), scv));
        if (useM) wasm_v128_store(u + i, ui);
        V p1 = fma_d(wasm_f32x4_mul(p0, wdf), neg, ui);
        wasm_v128_store(P + i, p1);
        APPLY_SUMS4(p0, p1);
      }
      for (; i < e; i++) {
        float p0 = P[i];
        float ui = u[i] - (float)((double)p0 * rdiv) * sc;
        if (useM) u[i] = ui;
        float p1 = fma_s(p0 * wdf_, neg_, ui);
        P[i] = p1;
        APPLY_SUMS1(p0, p1);
      }
    } else {
      for (; i + 4 <= e; i += 4) {
        V p0 = wasm_v128_load(P + i);
        V p1 = fma_d(wasm_f32x4_mul(p0, wdf), neg, wasm_v128_load(u + i));
        wasm_v128_store(P + i, p1);
        APPLY_SUMS4(p0, p1);
      }
      for (; i < e; i++) {
        float p0 = P[i];
        float p1 = fma_s(p0 * wdf_, neg_, u[i]);
        P[i] = p1;
        APPLY_SUMS1(p0, p1);
      }
    }
    r += k;
    if (r == inner_) {
      tot = wasm_f64x2_add(tot, acc);
      acc = wasm_f64x2_splat(0);
      r = 0;
      if (++c == channels_) c = 0;
    }
  }
  MISC[0] = wasm_f64x2_extract_lane(tot, 0); MISC[1] = wasm_f64x2_extract_lane(tot, 1);
  MISC[7] = wasm_f64x2_extract_lane(acc, 0); MISC[8] = wasm_f64x2_extract_lane(acc, 1);
}

/* A never-projected tensor (ndim <= 1): one sweep; ||p||^2 before/after and ||dp||^2 over the whole tensor in MISC[2], [0], [1]. */
static void flat_apply(const float *u, int i0, int n) {
  const V wdf = wasm_f32x4_splat(wdf_), neg = wasm_f32x4_splat(neg_);
  double before = MISC[2], after = MISC[0], delta = MISC[1];
  float tp[4], tq[4];
  int i = i0, end = i0 + n;
  for (; i + 4 <= end; i += 4) {
    V p0 = wasm_v128_load(P + i);
    V p1 = fma_d(wasm_f32x4_mul(p0, wdf), neg, wasm_v128_load(u + i));
    wasm_v128_store(P + i, p1);
    wasm_v128_store(tp, p0);
    wasm_v128_store(tq, p1);
    for (int j = 0; j < 4; j++) {
      double b = tp[j], a = tq[j], d = (double)tq[j] - (double)tp[j];
      before += b * b;
      after += a * a;
      delta += d * d;
    }
  }
  for (; i < end; i++) {
    float p0 = P[i];
    float p1 = fma_s(p0 * wdf_, neg_, u[i]);
    P[i] = p1;
    double b = p0, a = p1, d = (double)p1 - (double)p0;
    before += b * b;
    after += a * a;
    delta += d * d;
  }
  MISC[2] = before; MISC[0] = after; MISC[1] = delta;
}

EXPORT("adamp_flat") void adamp_flat(int n) {
  for (int b = 0; b < n; b += BLOCK) {
    int k = n - b < BLOCK ? n - b : BLOCK;
    adamp_update(b, k);
    flat_apply(U, b, k);
  }
}

EXPORT("sgdp_flat") void sgdp_flat(int n) {
  for (int b = 0; b < n; b += BLOCK) {
    int k = n - b < BLOCK ? n - b : BLOCK;
    sgdp_update(b, k);
    flat_apply(nesterov_ ? U : M, b, k);
  }
}
