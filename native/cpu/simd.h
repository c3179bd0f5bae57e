// Eight float lanes, two ways: VecAvx2 (one __m256, only where the TU is compiled with -mavx2
// -mfma) and VecPortable (eight plain floats). Both provide the primitives of adamp/math.h
// (f_add, f_sub, f_mul, f_div, f_sqrt, f_fma), so the kernels instantiate the same math on
// either, and both accumulate the per-lane double sums with the same operations in the same
// order: the two paths give bit-identical results.
//
// Include this only from inside a TU-specific namespace (see kernels.h): the types and
// functions must not be shared between the AVX2 TU and the portable TU.
#ifndef ADAMP_CPU_SIMD_H_BODY
#define ADAMP_CPU_SIMD_H_BODY
#endif

#if defined(ADAMP_SIMD_AVX2)

struct Vec {
  __m256 x;
  Vec() = default;
  explicit Vec(float s) : x(_mm256_set1_ps(s)) {}
  explicit Vec(__m256 v) : x(v) {}
  static Vec load(const float* p) { return Vec(_mm256_loadu_ps(p)); }
  void store(float* p) const { _mm256_storeu_ps(p, x); }
};

static inline __m256i tail_mask(int n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}
/** Lanes [0, n) from p, the others 0; reads nothing past p[n-1]. */
static inline Vec load_partial(const float* p, int n) { return Vec(_mm256_maskload_ps(p, tail_mask(n))); }
static inline void store_partial(float* p, Vec v, int n) { _mm256_maskstore_ps(p, tail_mask(n), v.x); }
/** Lanes >= n set to +0. */
static inline Vec keep_lanes(Vec v, int n) { return Vec(_mm256_and_ps(v.x, _mm256_castsi256_ps(tail_mask(n)))); }
/**
 * A full vector to 32-byte aligned p with a streaming (non-temporal) store: no read for
 * ownership, the line goes to memory without displacing the cache. For data written once and
 * seldom read back (the speculative pass's saved rows). stream_fence() orders these stores
 * before later ones (another thread may read the data after the pool's handoff).
 */
static inline void stream_store(float* p, Vec v) { _mm256_stream_ps(p, v.x); }
static inline void stream_fence() { _mm_sfence(); }

static inline Vec f_add(Vec a, Vec b) { return Vec(_mm256_add_ps(a.x, b.x)); }
static inline Vec f_sub(Vec a, Vec b) { return Vec(_mm256_sub_ps(a.x, b.x)); }
static inline Vec f_mul(Vec a, Vec b) { return Vec(_mm256_mul_ps(a.x, b.x)); }
static inline Vec f_div(Vec a, Vec b) { return Vec(_mm256_div_ps(a.x, b.x)); }
static inline Vec f_sqrt(Vec a) { return Vec(_mm256_sqrt_ps(a.x)); }
static inline Vec f_fma(Vec a, Vec b, Vec c) { return Vec(_mm256_fmadd_ps(a.x, b.x, c.x)); }

/** Eight double accumulators, lane k for element k mod 8. */
struct DAcc {
  __m256d lo, hi;
  DAcc() : lo(_mm256_setzero_pd()), hi(_mm256_setzero_pd()) {}
};
/**
 * acc += a*b per lane. note: the product of two floats is exact in double, so the fused form
 * rounds exactly like the portable `acc + a*b`; the results stay bit-identical.
 */
static inline void acc_prod(DAcc& acc, Vec a, Vec b) {
  const __m256d alo = _mm256_cvtps_pd(_mm256_castps256_ps128(a.x)), ahi = _mm256_cvtps_pd(_mm256_extractf128_ps(a.x, 1));
  const __m256d blo = _mm256_cvtps_pd(_mm256_castps256_ps128(b.x)), bhi = _mm256_cvtps_pd(_mm256_extractf128_ps(b.x, 1));
  acc.lo = _mm256_fmadd_pd(alo, blo, acc.lo);
  acc.hi = _mm256_fmadd_pd(ahi, bhi, acc.hi);
}
/** acc += (a-b)^2 per lane, in double (subtract, square, add: three roundings). */
static inline void acc_diff_sq(DAcc& acc, Vec a, Vec b) {
  const __m256d dlo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a.x)), _mm256_cvtps_pd(_mm256_castps256_ps128(b.x)));
  const __m256d dhi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a.x, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(b.x, 1)));
  acc.lo = _mm256_add_pd(acc.lo, _mm256_mul_pd(dlo, dlo));
  acc.hi = _mm256_add_pd(acc.hi, _mm256_mul_pd(dhi, dhi));
}
/** Whether every lane is finite. */
static inline bool all_finite(Vec f) {
  const __m256 z = _mm256_sub_ps(f.x, f.x);  // 0, or NaN for inf/NaN lanes
  return _mm256_movemask_ps(_mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_EQ_OQ)) == 0xFF;
}
/** The lanes' bit patterns OR-ed (to find out whether any of many values is nonzero). */
static inline Vec or_bits(Vec a, Vec b) { return Vec(_mm256_or_ps(a.x, b.x)); }
/** Whether every lane is +0 or -0. */
static inline bool all_zero(Vec f) {
  const __m256i mag = _mm256_and_si256(_mm256_castps_si256(f.x), _mm256_set1_epi32(0x7fffffff));
  return _mm256_testz_si256(mag, mag) != 0;
}
/** acc lane k += x (k in [0, 8)). */
static inline void acc_add_lane(DAcc& acc, int k, double x) {
  alignas(32) double l[8];
  _mm256_store_pd(l, acc.lo);
  _mm256_store_pd(l + 4, acc.hi);
  l[k] = l[k] + x;
  acc.lo = _mm256_load_pd(l);
  acc.hi = _mm256_load_pd(l + 4);
}
/** acc += f per lane, f widened exactly to double. */
static inline void acc_add(DAcc& acc, Vec f) {
  acc.lo = _mm256_add_pd(acc.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(f.x)));
  acc.hi = _mm256_add_pd(acc.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(f.x, 1)));
}
static inline void acc_lanes(const DAcc& acc, double out[8]) {
  _mm256_storeu_pd(out, acc.lo);
  _mm256_storeu_pd(out + 4, acc.hi);
}
/** dst[k] += a[k]*b[k] for eight consecutive doubles. */
static inline void add_prod_to(double* dst, Vec a, Vec b) {
  DAcc t;
  t.lo = _mm256_loadu_pd(dst);
  t.hi = _mm256_loadu_pd(dst + 4);
  acc_prod(t, a, b);
  _mm256_storeu_pd(dst, t.lo);
  _mm256_storeu_pd(dst + 4, t.hi);
}

/** Eight doubles: a Vec widened exactly (float -> double), for the reductions. */
struct DVec {
  __m256d lo, hi;
};
static inline DVec to_dvec(Vec a) {
  return DVec{_mm256_cvtps_pd(_mm256_castps256_ps128(a.x)), _mm256_cvtps_pd(_mm256_extractf128_ps(a.x, 1))};
}
/** to_dvec(Vec::load(p)), converting straight from memory (no lane extract). */
static inline DVec load_dvec(const float* p) { return DVec{_mm256_cvtps_pd(_mm_loadu_ps(p)), _mm256_cvtps_pd(_mm_loadu_ps(p + 4))}; }
/** acc += a*b per lane (the same rounding as acc_prod on the float values). */
static inline void acc_prod(DAcc& acc, const DVec& a, const DVec& b) {
  acc.lo = _mm256_fmadd_pd(a.lo, b.lo, acc.lo);
  acc.hi = _mm256_fmadd_pd(a.hi, b.hi, acc.hi);
}
/** acc += (a-b)^2 per lane (the same rounding as acc_diff_sq on the float values). */
static inline void acc_diff_sq(DAcc& acc, const DVec& a, const DVec& b) {
  const __m256d dlo = _mm256_sub_pd(a.lo, b.lo), dhi = _mm256_sub_pd(a.hi, b.hi);
  acc.lo = _mm256_add_pd(acc.lo, _mm256_mul_pd(dlo, dlo));
  acc.hi = _mm256_add_pd(acc.hi, _mm256_mul_pd(dhi, dhi));
}

#else  // portable

struct Vec {
  float x[8];
  Vec() = default;
  explicit Vec(float s) {
    for (int k = 0; k < 8; ++k) x[k] = s;
  }
  static Vec load(const float* p) {
    Vec v;
    for (int k = 0; k < 8; ++k) v.x[k] = p[k];
    return v;
  }
  void store(float* p) const {
    for (int k = 0; k < 8; ++k) p[k] = x[k];
  }
};

static inline Vec load_partial(const float* p, int n) {
  Vec v;
  for (int k = 0; k < 8; ++k) v.x[k] = k < n ? p[k] : 0.0f;
  return v;
}
static inline void store_partial(float* p, Vec v, int n) {
  for (int k = 0; k < n; ++k) p[k] = v.x[k];
}
static inline Vec keep_lanes(Vec v, int n) {
  for (int k = n; k < 8; ++k) v.x[k] = 0.0f;
  return v;
}
static inline void stream_store(float* p, Vec v) { v.store(p); }
static inline void stream_fence() {}

#define ADAMP_VEC_OP2(name, expr)             \
  static inline Vec name(Vec a, Vec b) {      \
    Vec r;                                    \
    for (int k = 0; k < 8; ++k) r.x[k] = expr; \
    return r;                                 \
  }
ADAMP_VEC_OP2(f_add, a.x[k] + b.x[k])
ADAMP_VEC_OP2(f_sub, a.x[k] - b.x[k])
ADAMP_VEC_OP2(f_mul, a.x[k] * b.x[k])
ADAMP_VEC_OP2(f_div, a.x[k] / b.x[k])
#undef ADAMP_VEC_OP2
static inline Vec f_sqrt(Vec a) {
  Vec r;
  for (int k = 0; k < 8; ++k) r.x[k] = sqrtf(a.x[k]);
  return r;
}
static inline Vec f_fma(Vec a, Vec b, Vec c) {
  Vec r;
  for (int k = 0; k < 8; ++k) r.x[k] = fmaf(a.x[k], b.x[k], c.x[k]);
  return r;
}

struct DAcc {
  double l[8];
  DAcc() {
    for (int k = 0; k < 8; ++k) l[k] = 0.0;
  }
};
static inline void acc_prod(DAcc& acc, Vec a, Vec b) {
  for (int k = 0; k < 8; ++k) acc.l[k] = acc.l[k] + (double)a.x[k] * (double)b.x[k];
}
static inline void acc_diff_sq(DAcc& acc, Vec a, Vec b) {
  for (int k = 0; k < 8; ++k) {
    const double d = (double)a.x[k] - (double)b.x[k];
    acc.l[k] = acc.l[k] + d * d;
  }
}
static inline void acc_add(DAcc& acc, Vec f) {
  for (int k = 0; k < 8; ++k) acc.l[k] = acc.l[k] + (double)f.x[k];
}
static inline bool all_finite(Vec f) {
  for (int k = 0; k < 8; ++k)
    if (!(f.x[k] - f.x[k] == 0.0f)) return false;
  return true;
}
static inline Vec or_bits(Vec a, Vec b) {
  Vec r;
  for (int k = 0; k < 8; ++k) {
    uint32_t x, y;
    memcpy(&x, &a.x[k], 4);
    memcpy(&y, &b.x[k], 4);
    x |= y;
    memcpy(&r.x[k], &x, 4);
  }
  return r;
}
static inline bool all_zero(Vec f) {
  for (int k = 0; k < 8; ++k) {
    uint32_t x;
    memcpy(&x, &f.x[k], 4);
    if ((x & 0x7fffffffu) != 0) return false;
  }
  return true;
}
static inline void acc_add_lane(DAcc& acc, int k, double x) { acc.l[k] = acc.l[k] + x; }
static inline void acc_lanes(const DAcc& acc, double out[8]) {
  for (int k = 0; k < 8; ++k) out[k] = acc.l[k];
}
static inline void add_prod_to(double* dst, Vec a, Vec b) {
  for (int k = 0; k < 8; ++k) dst[k] = dst[k] + (double)a.x[k] * (double)b.x[k];
}

struct DVec {
  double l[8];
};
static inline DVec to_dvec(Vec a) {
  DVec d;
  for (int k = 0; k < 8; ++k) d.l[k] = (double)a.x[k];
  return d;
}
static inline DVec load_dvec(const float* p) {
  DVec d;
  for (int k = 0; k < 8; ++k) d.l[k] = (double)p[k];
  return d;
}
static inline void acc_prod(DAcc& acc, const DVec& a, const DVec& b) {
  for (int k = 0; k < 8; ++k) acc.l[k] = acc.l[k] + a.l[k] * b.l[k];
}
static inline void acc_diff_sq(DAcc& acc, const DVec& a, const DVec& b) {
  for (int k = 0; k < 8; ++k) {
    const double d = a.l[k] - b.l[k];
    acc.l[k] = acc.l[k] + d * d;
  }
}

#endif

/** The eight lanes summed in a fixed tree order. */
static inline double acc_sum(const DAcc& acc) {
  double l[8];
  acc_lanes(acc, l);
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/**
 * A blocked sum for the decision's dot products, the scheme of PyTorch's own float reductions
 * made cheap to fold: products accumulate in eight float lanes (one FMA per vector) over a block
 * of kFoldElems elements, then the block's lanes are added, widened exactly, to eight double
 * lanes. Each float lane sums at most 16 terms, so a dot product's error stays below
 * gamma_16 * sum|x_i y_i| <= 9.6e-7 * ||x|| ||y|| and the blocks add in double. The order is
 * fixed by the element's position in the call: element j goes to lane j mod 8 of block
 * j / kFoldElems (the caller folds at block ends: for_lanes_folded in kernels.h). Float range is
 * the price: callers redo a row in double when a sum overflows or is tiny (kernels.h).
 */
constexpr int64_t kFoldElems = 128;
struct BSum {
  Vec f;
  DAcc d;
  BSum() : f(0.0f) {}
  void prod(Vec a, Vec b) { f = f_fma(a, b, f); }
  void fold() {
    acc_add(d, f);
    f = Vec(0.0f);
  }
  double sum() const { return acc_sum(d); }
};

/**
 * The info record's sums of a pass that writes p (||p_before||^2 for the one-pass kernels,
 * ||p_after||^2, ||p_after - p_before||^2), blocked like BSum. A block whose float partial is not
 * finite (a square overflowed: ||p|| beyond ~1.8e19, or a NaN/inf value) is summed again in
 * double from its old and new values, exactly as a double accumulator would, so huge weights keep
 * finite norms. Squares below float's normal range lose at most 2^-150 each (n * 7e-46 absolute).
 */
struct NormSums {
  BSum before, after, delta;
  void add(Vec p0, Vec p1, bool with_before) {
    if (with_before) before.prod(p0, p0);
    after.prod(p1, p1);
    const Vec t = f_sub(p1, p0);
    delta.prod(t, t);
  }
  /** Ends a block of len values: p1 = the new values (stored), p0 = the old ones. */
  void fold(const float* p1, const float* p0, int64_t len, bool with_before) {
    if (all_finite(f_add(f_add(before.f, after.f), delta.f))) {
      before.fold(), after.fold(), delta.fold();
      return;
    }
    before.f = after.f = delta.f = Vec(0.0f);
    for (int64_t k = 0; k < len; ++k) {
      const double a = p0[k], b = p1[k];
      if (with_before) acc_add_lane(before.d, (int)(k & 7), a * a);
      acc_add_lane(after.d, (int)(k & 7), b * b);
      acc_add_lane(delta.d, (int)(k & 7), (b - a) * (b - a));
    }
  }
  Norms norms() const { return Norms{before.sum(), after.sum(), delta.sum()}; }
};
