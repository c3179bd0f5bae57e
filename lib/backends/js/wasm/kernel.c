/*
 * The WebAssembly SIMD (128-bit) kernel of the js backend (driven by lib/backends/js/wasm.ts;
 * rebuilt by scripts/build-wasm.sh into kernel-wasm.ts).
 * Every operation reproduces the pure TypeScript engine (lib/backends/js/engine.ts) bit for bit:
 *   float ops (f32x4 add/sub/mul/div/sqrt) where the TS rounds each op with Math.fround;
 *   f64 ops then one rounding where the TS computes `fround(a + b * c)` or multiplies by a double;
 *   double sums per row of the channel view in 4 lanes, in the same order as the TS (below).
 *
 * Memory: u of a whole tensor of up to CAP elements (UR: kept from pass 1 to pass 2, no copy out
 * and in), or of one chunk of a larger one; p, g, m, v of one chunk (PR, G, M, VV). The kernel
 * functions take pointers into these areas, chosen by wasm.ts.
 */
#include <wasm_simd128.h>

#ifndef CHUNK
#define CHUNK (1 << 16)
#endif
#ifndef CAP
#define CAP (1 << 22)
#endif
#ifndef CHMAX
#define CHMAX (1 << 16)
#endif
/* elements per block of pass 1 (update, then the sums of the same block while it is in L1) and of flat tensors */
#ifndef BLOCK
#define BLOCK 1024
#endif

typedef v128_t V;

/*
 * Each area starts STAGE_OFF floats past a 4 KB boundary. Copying out of an area into a JS array
 * whose address is a little above the area's modulo 4 KB (typical: large arrays start 16 bytes
 * past a page) makes every load wait on an earlier store to the same 4 KB offset ("4K aliasing"):
 * 4-5x slower copies, measured in isolation. Half a page apart, the copies run at memory speed.
 */
#ifndef STAGE_OFF
#define STAGE_OFF 516
#endif
#define AREA(name, n) static float name##_[(n) + 1024] __attribute__((aligned(4096))); static float *const name = name##_ + STAGE_OFF;
AREA(PR, CHUNK)
AREA(UR, CAP)
AREA(G, CHUNK)
AREA(M, CHUNK)
AREA(VV, CHUNK)
static double SUMS[6 * CHMAX]; /* gp, gg, pp, pu, div, scale */
/* misc: 0 after, 1 delta, 2 before; 4..19 the pass-1 lanes of a row cut by a chunk, 20..27 the apply lanes */
static double MISC[32];

#define EXPORT(name) __attribute__((export_name(name)))
#define NOVEC _Pragma("clang loop vectorize(disable) interleave(disable)")

EXPORT("chunk") int chunk(void) { return CHUNK; }
EXPORT("cap") int cap(void) { return CAP; }
EXPORT("chmax") int chmax(void) { return CHMAX; }
EXPORT("p_ptr") float *p_ptr(void) { return PR; }
EXPORT("u_ptr") float *u_ptr(void) { return UR; }
EXPORT("g_ptr") float *g_ptr(void) { return G; }
EXPORT("m_ptr") float *m_ptr(void) { return M; }
EXPORT("v_ptr") float *v_ptr(void) { return VV; }
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
/* elements x[0..1] as doubles, straight from memory (one convert with a memory operand) */
static inline V ld64(const float *x) { return wasm_f64x2_promote_low_f32x4(wasm_v128_load64_zero(x)); }
static inline V join32(V lo, V hi) {
  return wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(lo), wasm_f32x4_demote_f64x2_zero(hi), 0, 1, 4, 5);
}
/* fround(a + b * c) for float32 a, b, c, with b and c given as double halves */
static inline V fma_h(V a, V bl, V bh, V cl, V ch) {
  return join32(wasm_f64x2_add(lo64(a), wasm_f64x2_mul(bl, cl)), wasm_f64x2_add(hi64(a), wasm_f64x2_mul(bh, ch)));
}
/* fround(a + b * c) for float32 a, b, c */
static inline V fma_d(V a, V b, V c) { return fma_h(a, lo64(b), hi64(b), lo64(c), hi64(c)); }
/* fround(a * d) for float32 a and a double d */
static inline V mul_d(V a, V d2) { return join32(wasm_f64x2_mul(lo64(a), d2), wasm_f64x2_mul(hi64(a), d2)); }

static inline float fma_s(float a, float b, float c) { return (float)((double)a + (double)b * (double)c); }

/* ---- AdamP moments and update u over n elements ---- */
static inline float adamp_u1(float gi, float *m, float *v) {
  float mi = fma_s(*m * b1_, omb1_, gi);
  float vi = fma_s(*v * b2_, omb2_ * gi, gi);
  *m = mi; *v = vi;
  float den = (float)((double)__builtin_sqrtf(vi) * rsbc2_) + eps_;
  return nesterov_ ? (b1_ * mi + omb1_ * gi) / den : mi / den;
}

#define ADAMP_BODY(NEST)                                                                     \
  for (; i + 4 <= n; i += 4) {                                                               \
    V gv = wasm_v128_load(g + i), gl = lo64(gv), gh = hi64(gv);                    \
    V mv = fma_h(wasm_f32x4_mul(wasm_v128_load(m + i), b1), omb1d, omb1d, gl, gh);           \
    V og = wasm_f32x4_mul(omb2, gv);                                                         \
    V vv = fma_h(wasm_f32x4_mul(wasm_v128_load(v + i), b2), lo64(og), hi64(og), gl, gh);     \
    wasm_v128_store(m + i, mv);                                                              \
    wasm_v128_store(v + i, vv);                                                              \
    V den = wasm_f32x4_add(mul_d(wasm_f32x4_sqrt(vv), rs), eps);                             \
    V num = NEST ? wasm_f32x4_add(wasm_f32x4_mul(b1, mv), wasm_f32x4_mul(omb1, gv)) : mv;    \
    wasm_v128_store(u + i, wasm_f32x4_div(num, den));                                        \
  }

static inline __attribute__((always_inline)) void adamp_update(int n, const float *g, float *m, float *v, float *u) {
  const V b1 = wasm_f32x4_splat(b1_), omb1 = wasm_f32x4_splat(omb1_), omb1d = wasm_f64x2_splat(omb1_);
  const V b2 = wasm_f32x4_splat(b2_), omb2 = wasm_f32x4_splat(omb2_);
  const V eps = wasm_f32x4_splat(eps_), rs = wasm_f64x2_splat(rsbc2_);
  int i = 0;
  if (nesterov_) {
    ADAMP_BODY(1)
  } else {
    ADAMP_BODY(0)
  }
  NOVEC for (; i < n; i++) u[i] = adamp_u1(g[i], m + i, v + i);
}

/* ---- SGDP buffer m (and u = g + mom * m with Nesterov) over n elements ---- */
static inline __attribute__((always_inline)) void sgdp_update(int n, const float *g, float *m, float *u) {
  const V mom = wasm_f32x4_splat(mom_), omdd = wasm_f64x2_splat(omd_);
  int i = 0;
  if (nesterov_) {
    for (; i + 4 <= n; i += 4) {
      V gv = wasm_v128_load(g + i);
      V b = fma_h(wasm_f32x4_mul(wasm_v128_load(m + i), mom), omdd, omdd, lo64(gv), hi64(gv));
      wasm_v128_store(m + i, b);
      wasm_v128_store(u + i, wasm_f32x4_add(gv, wasm_f32x4_mul(mom, b)));
    }
    NOVEC for (; i < n; i++) {
      float b = fma_s(m[i] * mom_, omd_, g[i]);
      m[i] = b;
      u[i] = g[i] + mom_ * b;
    }
  } else {
    for (; i + 4 <= n; i += 4) {
      V b = fma_h(wasm_f32x4_mul(wasm_v128_load(m + i), mom), omdd, omdd, ld64(g + i), ld64(g + i + 2));
      wasm_v128_store(m + i, b);
    }
    NOVEC for (; i < n; i++) m[i] = fma_s(m[i] * mom_, omd_, g[i]);
  }
}

/*
 * Per-row sums in 4 lanes: the element at offset j of its row goes to lane j % 4, each lane summed
 * serially from 0 in element order; the row's sum is (lane0 + lane2) + (lane1 + lane3), added into
 * its channel's sum. The TS does the same (engine.ts: channelSums, apply). Lanes 0-1 of a sum are
 * the f64x2 `..L`, lanes 2-3 `..H`.
 */
typedef struct { V gpL, gpH, ggL, ggH, ppL, ppH, puL, puH; int c, r; } Rows;

static inline void rows_zero(Rows *s) {
  s->gpL = s->gpH = s->ggL = s->ggH = s->ppL = s->ppH = s->puL = s->puH = wasm_f64x2_splat(0);
}
/* start at row position (c, r); a row cut by the previous chunk continues from its lanes in MISC */
static inline void rows_load(Rows *s, int c, int r) {
  s->c = c; s->r = r;
  if (!r) { rows_zero(s); return; }
  const double *q = MISC + 4;
  s->gpL = wasm_v128_load(q + 0); s->gpH = wasm_v128_load(q + 2);
  s->ggL = wasm_v128_load(q + 4); s->ggH = wasm_v128_load(q + 6);
  s->ppL = wasm_v128_load(q + 8); s->ppH = wasm_v128_load(q + 10);
  s->puL = wasm_v128_load(q + 12); s->puH = wasm_v128_load(q + 14);
}
static inline void rows_store(const Rows *s) {
  double *q = MISC + 4;
  wasm_v128_store(q + 0, s->gpL); wasm_v128_store(q + 2, s->gpH);
  wasm_v128_store(q + 4, s->ggL); wasm_v128_store(q + 6, s->ggH);
  wasm_v128_store(q + 8, s->ppL); wasm_v128_store(q + 10, s->ppH);
  wasm_v128_store(q + 12, s->puL); wasm_v128_store(q + 14, s->puH);
}

/* lane k of (L, H) += x */
#define LANE_ADD(L, H, k, x)                                                                        \
  do {                                                                                              \
    switch (k) {                                                                                    \
      case 0: L = wasm_f64x2_replace_lane(L, 0, wasm_f64x2_extract_lane(L, 0) + (x)); break;        \
      case 1: L = wasm_f64x2_replace_lane(L, 1, wasm_f64x2_extract_lane(L, 1) + (x)); break;        \
      case 2: H = wasm_f64x2_replace_lane(H, 0, wasm_f64x2_extract_lane(H, 0) + (x)); break;        \
      default: H = wasm_f64x2_replace_lane(H, 1, wasm_f64x2_extract_lane(H, 1) + (x)); break;       \
    }                                                                                               \
  } while (0)

static inline double fold(V L, V H) {
  V t = wasm_f64x2_add(L, H);
  return wasm_f64x2_extract_lane(t, 0) + wasm_f64x2_extract_lane(t, 1);
}

static inline void sums1(Rows *s, int k, double g, double p, double u) {
  LANE_ADD(s->gpL, s->gpH, k, g * p);
  LANE_ADD(s->ggL, s->ggH, k, g * g);
  LANE_ADD(s->ppL, s->ppH, k, p * p);
  LANE_ADD(s->puL, s->puH, k, p * u);
}

/*
 * Adds elements [0, n) of g, p, u (the continuation of the row position in s) into the row lanes;
 * a finished row is folded into the channel sums. A row segment starting at a lane other than 0
 * (a chunk or block cut the row) takes single elements up to lane 0; the last (length % 4) too.
 */
static inline __attribute__((always_inline)) void rows_add(Rows *s, const float *g, const float *p, const float *u, int n) {
  int i = 0;
  while (i < n) {
    int k = inner_ - s->r;
    if (k > n - i) k = n - i;
    int e = i + k;
    NOVEC for (int l = s->r & 3; l != 0 && i < e; i++, l = (l + 1) & 3) sums1(s, l, g[i], p[i], u[i]);
    V gpL = s->gpL, gpH = s->gpH, ggL = s->ggL, ggH = s->ggH, ppL = s->ppL, ppH = s->ppH, puL = s->puL, puH = s->puH;
    for (; i + 4 <= e; i += 4) {
      V gl = ld64(g + i), gh = ld64(g + i + 2), pl = ld64(p + i), ph = ld64(p + i + 2), ul = ld64(u + i), uh = ld64(u + i + 2);
      gpL = wasm_f64x2_add(gpL, wasm_f64x2_mul(gl, pl));
      gpH = wasm_f64x2_add(gpH, wasm_f64x2_mul(gh, ph));
      ggL = wasm_f64x2_add(ggL, wasm_f64x2_mul(gl, gl));
      ggH = wasm_f64x2_add(ggH, wasm_f64x2_mul(gh, gh));
      ppL = wasm_f64x2_add(ppL, wasm_f64x2_mul(pl, pl));
      ppH = wasm_f64x2_add(ppH, wasm_f64x2_mul(ph, ph));
      puL = wasm_f64x2_add(puL, wasm_f64x2_mul(pl, ul));
      puH = wasm_f64x2_add(puH, wasm_f64x2_mul(ph, uh));
    }
    s->gpL = gpL; s->gpH = gpH; s->ggL = ggL; s->ggH = ggH; s->ppL = ppL; s->ppH = ppH; s->puL = puL; s->puH = puH;
    NOVEC for (int l = 0; i < e; i++, l++) sums1(s, l, g[i], p[i], u[i]);
    s->r += k;
    if (s->r == inner_) {
      int c = s->c;
      SUMS[c] += fold(s->gpL, s->gpH);
      SUMS[CHMAX + c] += fold(s->ggL, s->ggH);
      SUMS[2 * CHMAX + c] += fold(s->ppL, s->ppH);
      SUMS[3 * CHMAX + c] += fold(s->puL, s->puH);
      rows_zero(s);
      s->r = 0;
      if (++s->c == channels_) s->c = 0;
    }
  }
}

/*
 * Pass 1 of an eligible tensor over n elements starting at row position (c, r): per block, the
 * update (moments and u), then the per-row sums g.p, g.g, p.p, p.u of the block.
 */
EXPORT("adamp_pass1") void adamp_pass1(int n, int c, int r, const float *p, const float *g, float *m, float *v, float *u) {
  Rows s;
  rows_load(&s, c, r);
  for (int b = 0; b < n; b += BLOCK) {
    int k = n - b < BLOCK ? n - b : BLOCK;
    adamp_update(k, g + b, m + b, v + b, u + b);
    rows_add(&s, g + b, p + b, u + b, k);
  }
  rows_store(&s);
}

/* SGDP: u is the buffer m itself without Nesterov (pass m == u) */
EXPORT("sgdp_pass1") void sgdp_pass1(int n, int c, int r, const float *p, const float *g, float *m, float *u) {
  Rows s;
  rows_load(&s, c, r);
  for (int b = 0; b < n; b += BLOCK) {
    int k = n - b < BLOCK ? n - b : BLOCK;
    sgdp_update(k, g + b, m + b, u + b);
    rows_add(&s, g + b, p + b, u + b, k);
  }
  rows_store(&s);
}

/* one element of pass 2 (lane l), as the TS apply */
#define APPLY1(PROJ)                                                                      \
  do {                                                                                    \
    float p0 = p[i], ui = u[i];                                                           \
    if (PROJ) {                                                                           \
      ui = ui - (float)((double)p0 * rdiv) * sc;                                          \
      if (writeBack) u[i] = ui;                                                           \
    }                                                                                     \
    float p1 = fma_s(p0 * wdf_, neg_, ui);                                                \
    p[i] = p1;                                                                            \
    double a_ = p1, d_ = (double)p1 - (double)p0;                                         \
    LANE_ADD(aL, aH, l, a_ * a_);                                                         \
    LANE_ADD(dL, dH, l, d_ * d_);                                                         \
  } while (0)

/* 4 elements of pass 2 from lane 0; DECAY: p * wdf rounded, else p itself */
#define APPLY4(PROJ, DECAY)                                                               \
  for (; i + 4 <= e; i += 4) {                                                            \
    V p0l = ld64(p + i), p0h = ld64(p + i + 2);                                              \
    V ui = wasm_v128_load(u + i);                                                         \
    if (PROJ) {                                                                           \
      V q = join32(wasm_f64x2_mul(p0l, rd), wasm_f64x2_mul(p0h, rd));                     \
      ui = wasm_f32x4_sub(ui, wasm_f32x4_mul(q, scv));                                    \
      if (writeBack) wasm_v128_store(u + i, ui);                                          \
    }                                                                                     \
    V al = p0l, ah = p0h;                                                                 \
    if (DECAY) {                                                                          \
      V a = wasm_f32x4_mul(wasm_v128_load(p + i), wdf);                                   \
      al = lo64(a); ah = hi64(a);                                                         \
    }                                                                                     \
    V xl = wasm_f32x4_demote_f64x2_zero(wasm_f64x2_add(al, wasm_f64x2_mul(negd, lo64(ui)))); \
    V xh = wasm_f32x4_demote_f64x2_zero(wasm_f64x2_add(ah, wasm_f64x2_mul(negd, hi64(ui)))); \
    wasm_v128_store(p + i, wasm_i32x4_shuffle(xl, xh, 0, 1, 4, 5));                       \
    V p1l = wasm_f64x2_promote_low_f32x4(xl), p1h = wasm_f64x2_promote_low_f32x4(xh);     \
    V dl = wasm_f64x2_sub(p1l, p0l), dh = wasm_f64x2_sub(p1h, p0h);                       \
    aL = wasm_f64x2_add(aL, wasm_f64x2_mul(p1l, p1l));                                    \
    aH = wasm_f64x2_add(aH, wasm_f64x2_mul(p1h, p1h));                                    \
    dL = wasm_f64x2_add(dL, wasm_f64x2_mul(dl, dl));                                      \
    dH = wasm_f64x2_add(dH, wasm_f64x2_mul(dh, dh));                                      \
  }

#define APPLY_SEG(PROJ, DECAY)                                                            \
  do {                                                                                    \
    { NOVEC for (int l = r & 3; l != 0 && i < e; i++, l = (l + 1) & 3) APPLY1(PROJ); }    \
    APPLY4(PROJ, DECAY)                                                                   \
    { NOVEC for (int l = 0; i < e; i++, l++) APPLY1(PROJ); }                              \
  } while (0)

/*
 * Pass 2 over n elements starting at row position (c, r): u -= fround(fround(p / div_c) * scale_c)
 * where projected (written back into u with writeBack: SGDP's buffer), p = fround(p * wdf + neg * u);
 * per-row sums of p1^2 and (p1 - p0)^2 in 4 lanes as in pass 1, added into ||p_after||^2 and
 * ||dp||^2 (MISC[0], [1]) when the row ends.
 */
EXPORT("apply") void apply(int n, int c, int r, int projected, int writeBack, float *p, float *u) {
  const double *divs = SUMS + 4 * CHMAX, *scales = SUMS + 5 * CHMAX;
  const V wdf = wasm_f32x4_splat(wdf_), negd = wasm_f64x2_splat(neg_);
  const int decay = wdf_ != 1.0f; /* fround(p * 1) == p */
  const V zero = wasm_f64x2_splat(0);
  V aL = r ? wasm_v128_load(MISC + 20) : zero, aH = r ? wasm_v128_load(MISC + 22) : zero;
  V dL = r ? wasm_v128_load(MISC + 24) : zero, dH = r ? wasm_v128_load(MISC + 26) : zero;
  double after = MISC[0], delta = MISC[1];
  int i = 0;
  while (i < n) {
    int k = inner_ - r;
    if (k > n - i) k = n - i;
    int e = i + k;
    if (projected) {
      const double rdiv = 1 / divs[c];
      const float sc = (float)scales[c];
      const V rd = wasm_f64x2_splat(rdiv), scv = wasm_f32x4_splat(sc);
      if (decay) APPLY_SEG(1, 1); else APPLY_SEG(1, 0);
    } else {
      const double rdiv = 0;
      const float sc = 0;
      const V rd = zero, scv = zero;
      (void)rdiv; (void)sc; (void)rd; (void)scv;
      if (decay) APPLY_SEG(0, 1); else APPLY_SEG(0, 0);
    }
    r += k;
    if (r == inner_) {
      after += fold(aL, aH);
      delta += fold(dL, dH);
      aL = aH = dL = dH = zero;
      r = 0;
      if (++c == channels_) c = 0;
    }
  }
  MISC[0] = after; MISC[1] = delta;
  wasm_v128_store(MISC + 20, aL); wasm_v128_store(MISC + 22, aH);
  wasm_v128_store(MISC + 24, dL); wasm_v128_store(MISC + 26, dH);
}

/* A never-projected tensor (ndim <= 1): ||p||^2 before/after and ||dp||^2 over the whole tensor, serially, in MISC[2], [0], [1]. */
static void flat_apply(float *p, const float *u, int n) {
  const V wdf = wasm_f32x4_splat(wdf_), neg = wasm_f32x4_splat(neg_);
  double before = MISC[2], after = MISC[0], delta = MISC[1];
  float tp[4], tq[4];
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    V p0 = wasm_v128_load(p + i);
    V p1 = fma_d(wasm_f32x4_mul(p0, wdf), neg, wasm_v128_load(u + i));
    wasm_v128_store(p + i, p1);
    wasm_v128_store(tp, p0);
    wasm_v128_store(tq, p1);
    NOVEC for (int j = 0; j < 4; j++) {
      double b = tp[j], a = tq[j], d = (double)tq[j] - (double)tp[j];
      before += b * b;
      after += a * a;
      delta += d * d;
    }
  }
  NOVEC for (; i < n; i++) {
    float p0 = p[i];
    float p1 = fma_s(p0 * wdf_, neg_, u[i]);
    p[i] = p1;
    double b = p0, a = p1, d = (double)p1 - (double)p0;
    before += b * b;
    after += a * a;
    delta += d * d;
  }
  MISC[2] = before; MISC[0] = after; MISC[1] = delta;
}

/* u: a scratch area of BLOCK elements */
EXPORT("adamp_flat") void adamp_flat(int n, float *p, const float *g, float *m, float *v, float *u) {
  for (int b = 0; b < n; b += BLOCK) {
    int k = n - b < BLOCK ? n - b : BLOCK;
    adamp_update(k, g + b, m + b, v + b, u);
    flat_apply(p + b, u, k);
  }
}

EXPORT("sgdp_flat") void sgdp_flat(int n, float *p, const float *g, float *m, float *u) {
  for (int b = 0; b < n; b += BLOCK) {
    int k = n - b < BLOCK ? n - b : BLOCK;
    sgdp_update(k, g + b, m + b, u);
    flat_apply(p + b, nesterov_ ? u : m + b, k);
  }
}
