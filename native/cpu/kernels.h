// The CPU inner loops as templates over the lane type of simd.h and over the element policy P
// (native/include/adamp/optim/policy.h) with its compile-time variant V: one set of loops for every
// registered optimizer, instantiated per policy by make_table. Included by exactly two TUs, each
// inside its own namespace (kernels_portable.cpp, kernels_avx2.cpp), so the two builds never
// share a symbol. Vector body and tail run the same code: the tail loads zero-padded lanes and
// masks them out of every reduction and store, so FMA use cannot differ between them.
//
// Reduction order, fixed: within one row, element j goes to float lane j mod 8 of block
// j / kFoldElems, each block folded into double lanes (BSum and NormSums in simd.h: the decision's
// row sums and the info record's norms); the lanes are summed by acc_sum's tree. In the Lanes
// layout a channel's products go to a float partial per kLaneFoldRows rows, folded into the
// channel's double (lanes_pass1). Callers fix the order across calls. Sums whose float partials
// overflow or are tiny are summed again in double over the same range (row_sums_need_double,
// NormSums), so a kernel call reads nothing outside its range.
#include "simd.h"

// Full vectors use plain loads and stores; only the tail uses the masked ones (masked stores are
// slow on some CPUs). Both run the same arithmetic.
template <bool Full>
struct Io {
  static constexpr bool kFull = Full;
  static Vec ld(const float* p, int r) { return Full ? Vec::load(p) : load_partial(p, r); }
  static void st(float* p, Vec v, int r) {
    if (Full)
      v.store(p);
    else
      store_partial(p, v, r);
  }
  static Vec keep(Vec v, int r) { return Full ? v : keep_lanes(v, r); }
  /** A store to a save buffer (32-byte aligned rows): streaming for full vectors. */
  static void sv(float* p, Vec v, int r) {
    if (Full)
      stream_store(p, v);
    else
      store_partial(p, v, r);
  }
  /** `v` (loaded from p by ld) widened to double; full vectors convert straight from memory. */
  static DVec ldd(const float* p, Vec v) { return Full ? load_dvec(p) : to_dvec(v); }
};

/** Calls body(Io<true>(), i, 8) for each full vector of [0, n), then body(Io<false>(), i, r) for the tail. */
template <class Body>
static inline void for_lanes(int64_t n, const Body& body) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) body(Io<true>(), i, 8);
  if (i < n) body(Io<false>(), i, (int)(n - i));
}

/**
 * for_lanes, calling fold(b0, b1) at the end of every block [b0, b1): blocks of kFoldElems
 * elements from the start of the call (BSum's blocks), the last one ending with the tail.
 */
template <class Body, class Fold>
static inline void for_lanes_folded(int64_t n, const Body& body, const Fold& fold) {
  const int64_t full = n & ~int64_t(7);
  int64_t i = 0;
  while (i < n) {
    const int64_t b0 = i, end = full - i > kFoldElems ? i + kFoldElems : full;
    for (; i < end; i += 8) body(Io<true>(), i, 8);
    if (end - b0 < kFoldElems && i < n) {
      body(Io<false>(), i, (int)(n - i));
      i = n;
    }
    fold(b0, i);
  }
}

// ------------------------------------------------------------------------------------------------
// 16-bit lanes: eight elements widened or narrowed at once, bit for bit half.h's scalar reference
// (native/tests/test_half.cpp checks every pattern). AVX2 converts bfloat16 with integer shifts
// and float16 with F16C (NaN lanes patched to half.ts's patterns); elsewhere half.h runs per lane.

/** Eight 16-bit values (dtype 1 bfloat16, 2 float16) widened (exact). */
static inline Vec widen8(int dtype, const uint16_t* src) {
#if defined(ADAMP_SIMD_AVX2)
  const __m128i h = _mm_loadu_si128((const __m128i*)src);
  const __m256i w = _mm256_cvtepu16_epi32(h);
  if (dtype == (int)HalfType::BFloat16) return Vec(_mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
#if defined(__F16C__)
  // F16C quiets a signalling NaN; half.ts keeps the payload: sign | 0x7f800000 | m << 13.
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x7fff)), _mm256_set1_epi32(0x7c00));
  const __m256i nanv = _mm256_or_si256(_mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x8000)), 16),
                                                       _mm256_set1_epi32(0x7f800000)),
                                       _mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x3ff)), 13));
  return Vec(_mm256_blendv_ps(_mm256_cvtph_ps(h), _mm256_castsi256_ps(nanv), _mm256_castsi256_ps(nan)));
#endif
#endif
  alignas(32) float t[8];
  for (int k = 0; k < 8; ++k) t[k] = dtype == (int)HalfType::BFloat16 ? bf16_to_f32(src[k]) : f16_to_f32(src[k]);
  return Vec::load(t);
}

#if defined(ADAMP_SIMD_AVX2)
/** Eight 32-bit lanes holding values <= 0xffff, as eight uint16 at dst. */
static inline void half_store8(uint16_t* dst, __m256i r) {
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  _mm_storeu_si128((__m128i*)dst, _mm256_castsi256_si128(packed));
}
/** Lanes whose float32 bits are NaN (magnitude above Infinity's). */
static inline __m256i half_nan_lanes(__m256i b) {
  return _mm256_cmpgt_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
}
#endif

/** Eight floats rounded to nearest even (dtype 1 bfloat16, 2 float16), to dst. */
static inline void narrow8(int dtype, Vec v, uint16_t* dst) {
#if defined(ADAMP_SIMD_AVX2)
  const __m256i b = _mm256_castps_si256(v.x);
  if (dtype == (int)HalfType::BFloat16) {
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7fff)), odd), 16);
    half_store8(dst, _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), half_nan_lanes(b)));
    return;
  }
#if defined(__F16C__)
  const __m128i h = _mm256_cvtps_ph(v.x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // F16C keeps a NaN's payload bits; half.ts gives sign | 0x7e00.
  const __m256i nanv = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(0x8000)), _mm256_set1_epi32(0x7e00));
  const __m256i nan = half_nan_lanes(b);
  const __m128i nan16 = _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packs_epi32(nan, nan), 0x08));
  const __m128i nanv16 = _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(nanv, nanv), 0x08));
  _mm_storeu_si128((__m128i*)dst, _mm_blendv_epi8(h, nanv16, nan16));
  return;
#endif
#endif
  alignas(32) float t[8];
  v.store(t);
  for (int k = 0; k < 8; ++k) dst[k] = dtype == (int)HalfType::BFloat16 ? f32_to_bf16(t[k]) : f32_to_f16(t[k]);
}

/** Eight floats rounded to bfloat16 stochastically as elements i0 ... i0 + 7 of a tensor with this key (uint32 arithmetic). */
static inline void narrow8_sr(Vec v, uint32_t key, uint32_t i0, uint16_t* dst) {
#if defined(ADAMP_SIMD_AVX2)
  __m256i h = _mm256_add_epi32(_mm256_set1_epi32((int)(key + i0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0x85ebca6bu));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)0xc2b2ae35u));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
  const __m256i b = _mm256_castps_si256(v.x);
  const __m256i a = _mm256_and_si256(b, _mm256_set1_epi32(0x7fffffff));
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(0x8000));
  const __m256i r = _mm256_or_si256(sign, _mm256_srli_epi32(_mm256_add_epi32(a, _mm256_and_si256(h, _mm256_set1_epi32(0xffff))), 16));
  half_store8(dst, _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), half_nan_lanes(b)));
#else
  alignas(32) float t[8];
  v.store(t);
  for (int k = 0; k < 8; ++k) dst[k] = f32_to_bf16_sr(t[k], key, i0 + (uint32_t)k);
#endif
}

/** The r elements of a 16-bit array at src, widened (lanes >= r are +0, as load_partial's); reads nothing past src[r-1]. */
template <class IO>
static inline Vec ld16(IO, int dtype, const uint16_t* src, int r) {
  if (IO::kFull) return widen8(dtype, src);
  uint16_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  memcpy(t, src, (size_t)r * 2);
  return widen8(dtype, t);
}

/** The first r lanes of v rounded into the 16-bit array at dst, as elements idx ... of the tensor (h's rounding). */
template <class IO>
static inline void st16(IO, const HalfSlot& h, uint16_t* dst, int64_t idx, Vec v, int r) {
  uint16_t t[8];
  uint16_t* const d = IO::kFull ? dst : t;
  if (h.stochastic)
    narrow8_sr(v, h.key, (uint32_t)idx, d);
  else
    narrow8(h.dtype, v, d);
  if (!IO::kFull) memcpy(dst, t, (size_t)r * 2);
}

// ------------------------------------------------------------------------------------------------
// Storage: where a kernel reads g and p and writes the new p, the kernels' template parameter M.
// Everything else (state, the stored u, the sums) is float32 for both.

/** float32 p and g (Span::p, Span::g). */
struct F32 {
  static constexpr bool kHalf = false;
  template <class IO>
  static Vec g(IO, const Span& x, int64_t o, int r) {
    return IO::ld(x.g + o, r);
  }
  template <class IO>
  static Vec p(IO, const Span& x, int64_t o, int r) {
    return IO::ld(x.p + o, r);
  }
  template <class IO>
  static void set_p(IO, const Span& x, int64_t o, Vec v, int r) {
    IO::st(x.p + o, v, r);
  }
};

/**
 * A 16-bit tensor (Span::h, docs/mixed-precision.md): g is g16 widened (or the float32 g), times
 * inv_scale when scaled: f32(f32(g) * inv); p is the float32 master, or p16 widened; a new p goes
 * to the master (when there is one) and, rounded, into p16.
 */
struct H16 {
  static constexpr bool kHalf = true;
  template <class IO>
  static Vec g(IO io, const Span& x, int64_t o, int r) {
    const HalfSlot& h = *x.h;
    const Vec v = x.g16 != nullptr ? ld16(io, h.dtype, x.g16 + o, r) : IO::ld(x.g + o, r);
    return h.scaled ? f_mul(v, Vec(h.inv_scale)) : v;
  }
  template <class IO>
  static Vec p(IO io, const Span& x, int64_t o, int r) {
    return x.h->master ? IO::ld(x.p + o, r) : ld16(io, x.h->dtype, x.p16 + o, r);
  }
  template <class IO>
  static void set_p(IO io, const Span& x, int64_t o, Vec v, int r) {
    if (x.h->master) IO::st(x.p + o, v, r);
    st16(io, *x.h, x.p16 + o, x.e + o, v, r);
  }
};

/**
 * The four row sums in double lanes, from p, g (read through the storage M) and the update
 * `upd(io, i, r)` recomputed from the moments pass 1 already stored (bit-identical to pass 1's).
 * The exact fallback of the blocked float sums, for rows where float range is not enough (see
 * row_sums_need_double).
 */
template <class M, class Upd>
static ChannelSums row_sums_double(const Span& x, int64_t n, const Upd& upd) {
  DAcc agp, agg, app, apu;
  for_lanes(n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    const Vec gv = M::g(io, x, i, r), pv = M::p(io, x, i, r);
    DVec gd, pd;
    if constexpr (M::kHalf) {
      gd = to_dvec(gv), pd = to_dvec(pv);
    } else {
      gd = IO::ldd(x.g + i, gv), pd = IO::ldd(x.p + i, pv);
    }
    const DVec ud = to_dvec(upd(io, i, r));
    acc_prod(agp, gd, pd);
    acc_prod(agg, gd, gd);
    acc_prod(app, pd, pd);
    acc_prod(apu, pd, ud);
  });
  ChannelSums out;
  out.gp = acc_sum(agp);
  out.gg = acc_sum(agg);
  out.pp = acc_sum(app);
  out.pu = acc_sum(apu);
  return out;
}

/** Pass 1's four row sums in BSum blocks; finish() redoes them in double where float falls short. */
struct RowSums {
  BSum gp, gg, pp, pu;
  Vec gbits = Vec(0.0f);  // every g OR-ed: all zero iff the gradient row is
  void add(Vec g, Vec p, Vec u) {
    gbits = or_bits(gbits, g);
    gp.prod(g, p);
    gg.prod(g, g);
    pp.prod(p, p);
    pu.prod(p, u);
  }
  void fold() { gp.fold(), gg.fold(), pp.fold(), pu.fold(); }
  /** The sums; upd(io, i, r) recomputes the update from what pass 1 stored (see row_sums_double). */
  template <class M, class Upd>
  ChannelSums finish(const Span& x, int64_t n, const Upd& upd) const {
    ChannelSums out;
    out.gp = gp.sum();
    out.gg = gg.sum();
    out.pp = pp.sum();
    out.pu = pu.sum();
    return row_sums_need_double(out, all_zero(gbits)) ? row_sums_double<M>(x, n, upd) : out;
  }
};

/** What a kernel with its norms switched off returns. */
static inline Norms nan_norms() { return Norms{(double)NAN, (double)NAN, (double)NAN}; }

/** x moved on by o elements (the policy's state slots only). */
template <class P>
static inline Span span_at(const Span& x, int64_t o) {
  Span y = x;
  if (y.p != nullptr) y.p += o;
  if (y.g != nullptr) y.g += o;
  for (int k = 0; k < P::kSlots; ++k) y.st[k] += o;
  if (y.h != nullptr) {
    if (y.p16 != nullptr) y.p16 += o;
    if (y.g16 != nullptr) y.g16 += o;
    y.e += o;
  }
  return y;
}

/** f(F32()) or, for a 16-bit tensor, f(H16()): the one run-time choice of a kernel's storage. */
template <class F>
static inline void with_storage(const Span& x, const F& f) {
  if (x.h != nullptr)
    f(H16());
  else
    f(F32());
}

/** v, loaded into a register as it is (the compiler cannot merge two such loads into one wider load). */
template <class T>
static inline T in_register(T v) {
#if defined(__GNUC__)
  __asm__("" : "+r"(v));
#endif
  return v;
}

/**
 * A kernel's own copy of its Span: stores through the kernels' float pointers (vector stores may
 * alias anything) cannot change a local, so the loops keep its pointers in registers instead of
 * reloading them every vector. Copied field by field, each an 8-byte load of the caller's 8-byte
 * store (see PolicyKernels on why a wider load must not read them). H16 also copies the 16-bit
 * storage's fields into `hl`.
 */
template <class M>
static inline Span local_span(const Span& r, HalfSlot& hl) {
  Span x;
  x.p = in_register(r.p);
  x.g = in_register(r.g);
  for (int k = 0; k < kMaxSlots; ++k) x.st[k] = in_register(r.st[k]);
  if constexpr (M::kHalf) {
    x.p16 = in_register(r.p16);
    x.g16 = in_register(r.g16);
    x.e = in_register(r.e);
    hl = *r.h;
    x.h = &hl;
  }
  return x;
}

// ------------------------------------------------------------------------------------------------
// The policy's element code on lanes.

/** The policy's state of the r elements at o. */
template <class P, class IO>
static inline void load_state(const Span& x, int64_t o, int r, Vec (&st)[P::kSlots]) {
  for (int k = 0; k < P::kSlots; ++k) st[k] = IO::ld(x.st[k] + o, r);
}

template <class P, class IO>
static inline void store_state(const Span& x, int64_t o, int r, const Vec (&st)[P::kSlots]) {
  for (int k = 0; k < P::kSlots; ++k) IO::st(x.st[k] + o, st[k], r);
}

// Pass 1's work on the r elements at o, shared by the row and lanes layouts: update the state,
// give g, p and u (and store u to uo when StoreU). The tail's padding lanes of u are zeroed (u may
// be 0/0 there when eps == 0) so they add nothing to the sums.
template <class P, int V, bool StoreU, class M, class IO>
static inline void pass1_elem(IO io, const Span& x, float* uo, int64_t o, int r, const typename P::Scalars& s, Vec& gv,
                              Vec& pv, Vec& u) {
  gv = M::g(io, x, o, r);
  pv = M::p(io, x, o, r);
  Vec st[P::kSlots];
  load_state<P, IO>(x, o, r, st);
  u = P::template update<V>(gv, pv, st, s);
  store_state<P, IO>(x, o, r, st);
  u = IO::keep(u, r);
  if (StoreU) IO::st(uo + o, u, r);
}

/** u of the r elements at o again, from the state pass 1 stored (bit-identical): the double redo's. */
template <class P, int V, class M, class IO>
static inline Vec stored_u(IO io, const Span& x, int64_t o, int r, const typename P::Scalars& s) {
  const Vec gv = P::stored_reads_g(V) ? M::g(io, x, o, r) : Vec(0.0f);
  Vec st[P::kSlots];
  load_state<P, IO>(x, o, r, st);
  return IO::keep(P::template stored<V>(gv, st, s), r);
}

// ------------------------------------------------------------------------------------------------
// Pass 1, rows. When `uo` is not null (P::kStoreU) the update u is also stored there, so pass 2
// need not recompute it (no sqrt, no divisions: the floor's arithmetic is the bottleneck on a CPU).

template <class P, int V, bool StoreU, class M>
static ChannelSums pass1_row_t(const Span& xr, int64_t n, const typename P::Scalars& s_ref, float* uo) {
  const typename P::Scalars s = s_ref;  // a local copy: stores through float* cannot alias it
  [[maybe_unused]] HalfSlot hl;
  const Span x = local_span<M>(xr, hl);  // likewise for the arrays and the 16-bit storage's fields
  RowSums acc;
  for_lanes_folded(
      n,
      [&](auto io, int64_t i, int r) {
        Vec gv, pv, u;
        pass1_elem<P, V, StoreU, M>(io, x, uo, i, r, s, gv, pv, u);
        acc.add(gv, pv, u);
      },
      [&](int64_t, int64_t) { acc.fold(); });
  return acc.template finish<M>(x, n, [&](auto io, int64_t i, int r) { return stored_u<P, V, M>(io, x, i, r, s); });
}

template <class P>
static ChannelSums pass1_row(const Span& x, int64_t n, const typename P::Scalars& s, float* uo) {
  ChannelSums out;
  with_variant<P>(s.variant, [&](auto tag) {
    constexpr int V = decltype(tag)::value;
    with_storage(x, [&](auto m) {
      using M = decltype(m);
      if constexpr (P::kStoreU) {
        if (uo != nullptr) {
          out = pass1_row_t<P, V, true, M>(x, n, s, uo);
          return;
        }
      }
      out = pass1_row_t<P, V, false, M>(x, n, s, nullptr);
    });
  });
  return out;
}

// ------------------------------------------------------------------------------------------------
// Pass 1, channels innermost.

/** Rows per float block of the lanes layout's channel sums (16 products per float partial, like BSum). */
constexpr int64_t kLaneFoldRows = 16;

/**
 * Pass 1 of one tile of the channels-innermost layout (element a * stride + k is channel k).
 * step(io, o, r, g, p, u) updates the state of the r elements at o and gives their g, p and u.
 * Per channel, the products of kLaneFoldRows consecutive rows accumulate in a float partial
 * (fblk: 4 x npad floats), folded into the tile's double accumulators (dgp ..., npad each, zeroed
 * by the caller) after every block: RowSums' scheme and error bound, with the blocks along the
 * rows. gbits gets every g OR-ed per channel.
 */
template <class Step>
static void lanes_pass1(const LaneRows& lr, double* dgp, double* dgg, double* dpp, double* dpu, float* fblk,
                        float* gbits, const Step& step) {
  const int64_t npad = (lr.n + 7) & ~int64_t(7);
  float* const fgp = fblk;
  float* const fgg = fgp + npad;
  float* const fpp = fgg + npad;
  float* const fpu = fpp + npad;
  for (int64_t i = 0; i < npad; ++i) gbits[i] = 0.0f;
  const Vec one(1.0f);
  for (int64_t a0 = 0; a0 < lr.rows; a0 += kLaneFoldRows) {
    const int64_t a1 = lr.rows - a0 < kLaneFoldRows ? lr.rows : a0 + kLaneFoldRows;
    for (int64_t i = 0; i < 4 * npad; ++i) fgp[i] = 0.0f;
    for (int64_t a = a0; a < a1; ++a) {
      const int64_t off = a * lr.stride;
      for_lanes(lr.n, [&](auto io, int64_t i, int r) {
        Vec gv, pv, u;
        step(io, off + i, r, gv, pv, u);
        f_fma(gv, pv, Vec::load(fgp + i)).store(fgp + i);
        f_fma(gv, gv, Vec::load(fgg + i)).store(fgg + i);
        f_fma(pv, pv, Vec::load(fpp + i)).store(fpp + i);
        f_fma(pv, u, Vec::load(fpu + i)).store(fpu + i);
        or_bits(Vec::load(gbits + i), gv).store(gbits + i);
      });
    }
    for (int64_t i = 0; i < npad; i += 8) {
      add_prod_to(dgp + i, Vec::load(fgp + i), one);
      add_prod_to(dgg + i, Vec::load(fgg + i), one);
      add_prod_to(dpp + i, Vec::load(fpp + i), one);
      add_prod_to(dpu + i, Vec::load(fpu + i), one);
    }
  }
}

/**
 * The four sums of one channel of a lanes tile in double, row by row (g1(o), p1(o): g and p of
 * element o = a * stride; upd1(o) recomputes u of element o from what pass 1 stored): the exact fallback of
 * lanes_pass1's float partials, over the tile's rows only.
 */
template <class G1, class P1, class Upd1>
static ChannelSums lane_sums_double(const G1& g1, const P1& p1, int64_t rows, int64_t stride, const Upd1& upd1) {
  double sgp = 0.0, sgg = 0.0, spp = 0.0, spu = 0.0;
  for (int64_t a = 0; a < rows; ++a) {
    const int64_t o = a * stride;
    const double gd = g1(o), pd = p1(o), ud = upd1(o);
    sgp = sgp + gd * pd;
    sgg = sgg + gd * gd;
    spp = spp + pd * pd;
    spu = spu + pd * ud;
  }
  ChannelSums c;
  c.gp = sgp, c.gg = sgg, c.pp = spp, c.pu = spu;
  return c;
}

/** Lane 0 of v (the scalar redo's one element). */
static inline double lane0(Vec v) {
  float x;
  store_partial(&x, v, 1);
  return (double)x;
}

// A tile's channel sums: the float partials of lanes_pass1, and for every channel whose float sums
// of this tile fall short (row_sums_need_double on the tile's sums and g bits) the exact double
// sum over the tile's rows. The tile reads only its own rows, so a unit of the step protocol (a
// row chunk: its tiles) needs no other memory.
template <class P, int V, bool StoreU, class M>
static void pass1_lanes_t(const Span& xr, LaneRows lr, const typename P::Scalars& s_ref, LaneOut out, LaneScratch scr, float* uo) {
  const typename P::Scalars s = s_ref;  // a local copy: stores through float* cannot alias it
  [[maybe_unused]] HalfSlot hl;
  const Span x = local_span<M>(xr, hl);  // likewise for the arrays and the 16-bit storage's fields
  const int64_t npad = (lr.n + 7) & ~int64_t(7);
  double* const d = scr.d;
  for (int64_t i = 0; i < 4 * npad; ++i) d[i] = 0.0;
  lanes_pass1(lr, d, d + npad, d + 2 * npad, d + 3 * npad, scr.f, scr.gbits,
              [&](auto io, int64_t o, int r, Vec& gv, Vec& pv, Vec& u) { pass1_elem<P, V, StoreU, M>(io, x, uo, o, r, s, gv, pv, u); });
  for (int64_t i = 0; i < lr.n; ++i) {
    ChannelSums c;
    c.gp = d[i];
    c.gg = d[npad + i];
    c.pp = d[2 * npad + i];
    c.pu = d[3 * npad + i];
    if (row_sums_need_double(c, bits_zero(scr.gbits[i]))) {
      const Span xc = span_at<P>(x, i);
      const Io<false> one;
      c = lane_sums_double([&](int64_t o) { return lane0(M::g(one, xc, o, 1)); }, [&](int64_t o) { return lane0(M::p(one, xc, o, 1)); },
                           lr.rows, lr.stride, [&](int64_t o) { return lane0(stored_u<P, V, M>(one, xc, o, 1, s)); });
    }
    out.gp[i] = c.gp;
    out.gg[i] = c.gg;
    out.pp[i] = c.pp;
    out.pu[i] = c.pu;
  }
}

template <class P>
static void pass1_lanes(const Span& x, LaneRows lr, const typename P::Scalars& s, LaneOut out, LaneScratch scr, float* uo) {
  with_variant<P>(s.variant, [&](auto tag) {
    constexpr int V = decltype(tag)::value;
    with_storage(x, [&](auto m) {
      using M = decltype(m);
      if constexpr (P::kStoreU) {
        if (uo != nullptr) {
          pass1_lanes_t<P, V, true, M>(x, lr, s, out, scr, uo);
          return;
        }
      }
      pass1_lanes_t<P, V, false, M>(x, lr, s, out, scr, nullptr);
    });
  });
}

// ------------------------------------------------------------------------------------------------
// Pass 2.

/** The projection of pass 2: per channel lane (`kl` from channel i) or one coefficient per row. */
template <bool PerLane>
static inline Vec project_at(Vec u, Vec p0, const LaneCoefs& kl, int64_t i, Vec div, Vec scale) {
  if constexpr (PerLane) return project(u, p0, Vec::load(kl.div + i), Vec::load(kl.scale + i));
  return project(u, p0, div, scale);
}

/**
 * Runs body over the lanes of [0, n); with the norms (Nm) it also ends every block [b0, b1) with
 * ns.fold(its new values from p1of(b0), its old values from p0of(b0), length). Without them there
 * is no folding at all: the plain loop.
 */
template <bool Nm, class Body, class P1Of, class P0Of>
static inline void for_lanes_norms(int64_t n, NormSums& ns, const P1Of& p1of, const P0Of& p0of, bool with_before,
                                   const Body& body) {
  if constexpr (Nm)
    for_lanes_folded(n, body, [&](int64_t b0, int64_t b1) { ns.fold(p1of(b0), p0of(b0), b1 - b0, with_before); });
  else
    for_lanes(n, body);
}

// Pass 2's two sources of u. A source gives u of the r elements at o (`get`) and says whether a
// projected u is also written back into state slot 0 (`writes_back`: SGDP without Nesterov).
/** The u pass 1 stored (`uin`, indexed like p): pass 2 reads p and u only. */
struct UStored {
  const float* uin;
  template <class P>
  static constexpr bool writes_back() { return false; }
  template <class P, class M, class IO>
  Vec get(IO, const Span&, int64_t o, int r, const typename P::Scalars&) const { return IO::ld(uin + o, r); }
};
/** u recomputed from the state pass 1 stored, bit-identical to pass 1's (variant V). */
template <int V>
struct URecomputed {
  template <class P>
  static constexpr bool writes_back() { return P::writes_back(V); }
  template <class P, class M, class IO>
  Vec get(IO io, const Span& x, int64_t o, int r, const typename P::Scalars& s) const {
    Vec st[P::kSlots];
    load_state<P, IO>(x, o, r, st);
    const Vec gv = P::stored_reads_g(V) ? M::g(io, x, o, r) : Vec(0.0f);
    return P::template stored<V>(gv, st, s);
  }
};

// Pass 2 with u from `src`: project (writing the projected u back where src says), decay, step.
// Save (float32 only, stored u): also copy the old p to `psave` (the speculative single pass keeps
// it for a redo), with streaming stores (psave's rows are 32-byte aligned), fenced at the end.
template <class P, bool Projected, bool PerLane, bool Save, bool Nm, class M, class Src>
static Norms pass2_from(const Span& xr, const Src& src, LaneRows lr, const typename P::Scalars& s_ref, ProjCoef k,
                        LaneCoefs kl, float wdf, float* psave) {
  static_assert(!(Save && M::kHalf), "the speculative pass is float32 only");
  const typename P::Scalars s = s_ref;  // a local copy: stores through float* cannot alias it
  [[maybe_unused]] HalfSlot hl;
  const Span x = local_span<M>(xr, hl);  // likewise for the arrays and the 16-bit storage's fields
  NormSums ns;
  alignas(32) float p0blk[kFoldElems];  // the block's old p, for NormSums' double redo
  alignas(32) float p1blk[M::kHalf ? kFoldElems : 1];  // 16-bit: the block's new p as float32 (p16 holds it rounded)
  const Vec wv(wdf), divc(k.div), scc(k.scale);
  for (int64_t a = 0; a < lr.rows; ++a) {
    const int64_t off = a * lr.stride;
    float* const sr = Save ? psave + off : nullptr;
    for_lanes_norms<Nm>(
        lr.n, ns, [&](int64_t b0) { return M::kHalf ? p1blk : x.p + off + b0; },
        [&](int64_t b0) { return Save ? sr + b0 : p0blk; }, false,
        [&](auto io, int64_t i, int r) {
          using IO = decltype(io);
          const int64_t o = off + i;
          const Vec p0 = M::p(io, x, o, r);
          if (Save)
            IO::sv(sr + i, p0, r);
          else if (Nm)
            IO::st(p0blk + (i & (kFoldElems - 1)), p0, r);
          Vec u = src.template get<P, M>(io, x, o, r, s);
          if constexpr (Projected) {
            u = project_at<PerLane>(u, p0, kl, i, divc, scc);
            if constexpr (Src::template writes_back<P>()) IO::st(x.st[0] + o, u, r);
          }
          const Vec p1 = IO::keep(P::apply(p0, u, wv, s), r);
          M::set_p(io, x, o, p1, r);
          if (Nm && M::kHalf) IO::st(p1blk + (i & (kFoldElems - 1)), p1, r);
          if (Nm) ns.add(p0, p1, false);
        });
  }
  if (Save) stream_fence();
  return Nm ? ns.norms() : nan_norms();
}

template <class P, bool Projected, bool PerLane, bool Save, bool Nm, class M>
static Norms apply_u_t(const Span& x, const float* uin, LaneRows lr, const typename P::Scalars& s, ProjCoef k, LaneCoefs kl,
                       float wdf, float* psave) {
  return pass2_from<P, Projected, PerLane, Save, Nm, M>(x, UStored{uin}, lr, s, k, kl, wdf, psave);
}

template <class P, bool PerLane, bool Save, class M>
static Norms apply_u_m(const Span& x, const float* u, LaneRows lr, const typename P::Scalars& s, int projected, ProjCoef k,
                       LaneCoefs kl, float wdf, float* psave, bool norms) {
  if (norms)
    return projected ? apply_u_t<P, true, PerLane, Save, true, M>(x, u, lr, s, k, kl, wdf, psave)
                     : apply_u_t<P, false, PerLane, Save, true, M>(x, u, lr, s, k, kl, wdf, psave);
  return projected ? apply_u_t<P, true, PerLane, Save, false, M>(x, u, lr, s, k, kl, wdf, psave)
                   : apply_u_t<P, false, PerLane, Save, false, M>(x, u, lr, s, k, kl, wdf, psave);
}

template <class P, bool PerLane>
static Norms apply_u_any(const Span& x, const float* u, LaneRows lr, const typename P::Scalars& s, int projected, ProjCoef k,
                         LaneCoefs kl, float wdf, bool norms) {
  Norms out;
  with_storage(x, [&](auto m) { out = apply_u_m<P, PerLane, false, decltype(m)>(x, u, lr, s, projected, k, kl, wdf, nullptr, norms); });
  return out;
}

template <class P>
static Norms apply_u_row(const Span& x, const float* u, int64_t n, const typename P::Scalars& s, int projected, ProjCoef k,
                         float wdf, bool norms) {
  return apply_u_any<P, false>(x, u, LaneRows{1, n, 0}, s, projected, k, LaneCoefs{nullptr, nullptr}, wdf, norms);
}

// The speculative single pass: apply from u (a row buffer) and save the old p row first.
template <class P>
static Norms apply_u_save_row(float* p, const float* u, int64_t n, const typename P::Scalars& s, int projected,
                              ProjCoef k, float wdf, float* psave, bool norms) {
  Span x{};
  x.p = p;
  return apply_u_m<P, false, true, F32>(x, u, LaneRows{1, n, 0}, s, projected, k, LaneCoefs{nullptr, nullptr}, wdf, psave,
                                        norms);
}

// The speculative single pass of two consecutive rows of one tensor (n elements each): pass 1 of
// row x (state update, the four sums, u stored to uo) fused, element by element, with the apply of
// the previous row (its p at pp, its u at up, its old p saved to psave), so the previous row's
// arithmetic runs while this row's data streams in from memory. Each half does exactly what
// pass1_row and apply_u_save_row do to its own row, in the same order, and the blocks of the sums
// and of the norms both start at the rows' first elements: the results are theirs bit for bit.
template <class P, int V, bool Projected, bool Nm>
static ChannelSums spec_pair_t(const Span& xr, int64_t n, const typename P::Scalars& s_ref, float* uo, float* pp, const float* up,
                               ProjCoef k, float wdf, float* psave, Norms* nprev) {
  const typename P::Scalars s = s_ref;  // a local copy: stores through float* cannot alias it
  HalfSlot hl;
  const Span x = local_span<F32>(xr, hl);  // likewise
  RowSums acc;
  NormSums ns;
  const Vec wv(wdf), divc(k.div), scc(k.scale);
  for_lanes_folded(
      n,
      [&](auto io, int64_t i, int r) {
        using IO = decltype(io);
        Vec gv, pv, u;
        pass1_elem<P, V, true, F32>(io, x, uo, i, r, s, gv, pv, u);
        acc.add(gv, pv, u);
        const Vec p0 = IO::ld(pp + i, r);
        IO::sv(psave + i, p0, r);
        Vec w = IO::ld(up + i, r);
        if (Projected) w = project(w, p0, divc, scc);
        const Vec p1 = IO::keep(P::apply(p0, w, wv, s), r);
        IO::st(pp + i, p1, r);
        if (Nm) ns.add(p0, p1, false);
      },
      [&](int64_t b0, int64_t b1) {
        acc.fold();
        if (Nm) ns.fold(pp + b0, psave + b0, b1 - b0, false);
      });
  stream_fence();
  *nprev = Nm ? ns.norms() : nan_norms();
  return acc.template finish<F32>(x, n, [&](auto io, int64_t i, int r) { return stored_u<P, V, F32>(io, x, i, r, s); });
}

template <class P>
static ChannelSums spec_pair_row(const Span& x, int64_t n, const typename P::Scalars& s, float* uo, float* pp, const float* up,
                                 int projected, ProjCoef k, float wdf, float* psave, bool norms, Norms* nprev) {
  ChannelSums out;
  with_variant<P>(s.variant, [&](auto tag) {
    constexpr int V = decltype(tag)::value;
    if (norms)
      out = projected ? spec_pair_t<P, V, true, true>(x, n, s, uo, pp, up, k, wdf, psave, nprev)
                      : spec_pair_t<P, V, false, true>(x, n, s, uo, pp, up, k, wdf, psave, nprev);
    else
      out = projected ? spec_pair_t<P, V, true, false>(x, n, s, uo, pp, up, k, wdf, psave, nprev)
                      : spec_pair_t<P, V, false, false>(x, n, s, uo, pp, up, k, wdf, psave, nprev);
  });
  return out;
}

template <class P>
static Norms apply_u_lanes(const Span& x, const float* u, LaneRows lr, const typename P::Scalars& s, int projected,
                           LaneCoefs kl, float wdf, bool norms) {
  return apply_u_any<P, true>(x, u, lr, s, projected, ProjCoef{1.0f, 0.0f}, kl, wdf, norms);
}

// Pass 2: recompute u from the state (bit-identical to pass 1's), project (and write the projected
// u back into state slot 0 where P::writes_back: SGDP without Nesterov), decay, step.
template <class P, int V, bool Projected, bool PerLane, bool Nm, class M>
static Norms pass2_t(const Span& x, LaneRows lr, const typename P::Scalars& s, ProjCoef k, LaneCoefs kl, float wdf) {
  return pass2_from<P, Projected, PerLane, false, Nm, M>(x, URecomputed<V>{}, lr, s, k, kl, wdf, nullptr);
}

template <class P, bool PerLane, class M>
static Norms pass2_m(const Span& x, LaneRows lr, const typename P::Scalars& s, int projected, ProjCoef k, LaneCoefs kl,
                     float wdf, bool norms) {
  Norms out;
  with_variant<P>(s.variant, [&](auto tag) {
    constexpr int V = decltype(tag)::value;
    if (norms)
      out = projected ? pass2_t<P, V, true, PerLane, true, M>(x, lr, s, k, kl, wdf)
                      : pass2_t<P, V, false, PerLane, true, M>(x, lr, s, k, kl, wdf);
    else
      out = projected ? pass2_t<P, V, true, PerLane, false, M>(x, lr, s, k, kl, wdf)
                      : pass2_t<P, V, false, PerLane, false, M>(x, lr, s, k, kl, wdf);
  });
  return out;
}

template <class P, bool PerLane>
static Norms pass2_any(const Span& x, LaneRows lr, const typename P::Scalars& s, int projected, ProjCoef k, LaneCoefs kl,
                       float wdf, bool norms) {
  Norms out;
  with_storage(x, [&](auto m) { out = pass2_m<P, PerLane, decltype(m)>(x, lr, s, projected, k, kl, wdf, norms); });
  return out;
}

template <class P>
static Norms pass2_row(const Span& x, int64_t n, const typename P::Scalars& s, int projected, ProjCoef k, float wdf, bool norms) {
  // The vector body is hot for rows: keep the PerLane=false instantiation.
  return pass2_any<P, false>(x, LaneRows{1, n, 0}, s, projected, k, LaneCoefs{nullptr, nullptr}, wdf, norms);
}

template <class P>
static Norms pass2_lanes(const Span& x, LaneRows lr, const typename P::Scalars& s, int projected, LaneCoefs kl, float wdf,
                         bool norms) {
  return pass2_any<P, true>(x, lr, s, projected, ProjCoef{1.0f, 0.0f}, kl, wdf, norms);
}

// ------------------------------------------------------------------------------------------------
// The one pass: update, decay, step (every tensor of a non-projecting policy, 1-D tensors of a
// projecting one). With the norms it also sums ||p_before||^2.

template <class P, int V, bool Nm, class M>
static Norms one_pass_t(const Span& xr, int64_t n, const typename P::Scalars& s_ref, float wdf) {
  const typename P::Scalars s = s_ref;  // a local copy: stores through float* cannot alias it
  [[maybe_unused]] HalfSlot hl;
  const Span x = local_span<M>(xr, hl);  // likewise for the arrays and the 16-bit storage's fields
  NormSums ns;
  alignas(32) float p0blk[kFoldElems];  // the block's old p, for NormSums' double redo
  alignas(32) float p1blk[M::kHalf ? kFoldElems : 1];  // 16-bit: the block's new p as float32 (p16 holds it rounded)
  const Vec wv(wdf);
  for_lanes_norms<Nm>(
      n, ns, [&](int64_t b0) { return M::kHalf ? p1blk : x.p + b0; }, [&](int64_t) { return p0blk; }, true,
      [&](auto io, int64_t i, int r) {
        using IO = decltype(io);
        const Vec gv = M::g(io, x, i, r), p0 = M::p(io, x, i, r);
        if (Nm) IO::st(p0blk + (i & (kFoldElems - 1)), p0, r);
        Vec st[P::kSlots];
        load_state<P, IO>(x, i, r, st);
        const Vec u = P::template update<V>(gv, p0, st, s);
        store_state<P, IO>(x, i, r, st);
        const Vec p1 = IO::keep(P::apply(p0, u, wv, s), r);
        M::set_p(io, x, i, p1, r);
        if (Nm && M::kHalf) IO::st(p1blk + (i & (kFoldElems - 1)), p1, r);
        if (Nm) ns.add(p0, p1, true);
      });
  return Nm ? ns.norms() : nan_norms();
}

template <class P>
static Norms one_pass(const Span& x, int64_t n, const typename P::Scalars& s, float wdf, bool norms) {
  Norms out;
  with_variant<P>(s.variant, [&](auto tag) {
    constexpr int V = decltype(tag)::value;
    with_storage(x, [&](auto m) {
      using M = decltype(m);
      out = norms ? one_pass_t<P, V, true, M>(x, n, s, wdf) : one_pass_t<P, V, false, M>(x, n, s, wdf);
    });
  });
  return out;
}


// ------------------------------------------------------------------------------------------------
// 16-bit conversions of whole arrays (the table's half_widen, half_narrow, half_narrow_sr: tests
// and tools): widen8 / narrow8 / narrow8_sr for full vectors, half.h's scalar code for the tail.

/** dst[i] = widen(src[i]) (dtype 1 bfloat16, 2 float16; 0: src is float32), times inv when `scaled`: f32(f32(g) * inv). */
static void half_widen(int dtype, const void* src_v, float* dst, int64_t n, bool scaled, float inv) {
  int64_t i = 0;
  if (dtype == 0) {
    const float* src = static_cast<const float*>(src_v);
    if (scaled)
      for (; i < n; ++i) dst[i] = src[i] * inv;
    else
      memcpy(dst, src, (size_t)n * sizeof(float));
    return;
  }
  const uint16_t* src = static_cast<const uint16_t*>(src_v);
  const Vec iv(inv);
  for (; i + 8 <= n; i += 8) {
    const Vec v = widen8(dtype, src + i);
    (scaled ? f_mul(v, iv) : v).store(dst + i);
  }
  if (dtype == (int)HalfType::BFloat16) {
    for (; i < n; ++i) dst[i] = scaled ? bf16_to_f32(src[i]) * inv : bf16_to_f32(src[i]);
  } else {
    for (; i < n; ++i) dst[i] = scaled ? f16_to_f32(src[i]) * inv : f16_to_f32(src[i]);
  }
}

/** dst[i] = src[i] rounded to nearest even (dtype 1 bfloat16, 2 float16). */
static void half_narrow(int dtype, const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) narrow8(dtype, Vec::load(src + i), dst + i);
  if (dtype == (int)HalfType::BFloat16) {
    for (; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
  } else {
    for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
  }
}

/** dst[i] = src[i] rounded to bfloat16 stochastically as element i0 + i of a tensor with this key (uint32 arithmetic). */
static void half_narrow_sr(const float* src, uint16_t* dst, int64_t n, uint32_t key, uint32_t i0) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) narrow8_sr(Vec::load(src + i), key, i0 + (uint32_t)i, dst + i);
  for (; i < n; ++i) dst[i] = f32_to_bf16_sr(src[i], key, i0 + (uint32_t)i);
}

// ------------------------------------------------------------------------------------------------
// The table: every registered policy's kernels.

template <class P>
static PolicyKernels<P> make_policy_kernels() {
  PolicyKernels<P> t;
  memset(&t, 0, sizeof t);
  t.one_pass = one_pass<P>;
  if constexpr (P::kProjects) {
    t.pass1_row = pass1_row<P>;
    t.pass1_lanes = pass1_lanes<P>;
    t.pass2_row = pass2_row<P>;
    t.pass2_lanes = pass2_lanes<P>;
    if constexpr (P::kStoreU) {
      t.apply_u_row = apply_u_row<P>;
      t.apply_u_lanes = apply_u_lanes<P>;
    }
    if constexpr (P::kSpeculate) {
      t.apply_u_save_row = apply_u_save_row<P>;
      t.spec_pair_row = spec_pair_row<P>;
    }
  }
  return t;
}

static KernelTable make_table(const char* name) {
  KernelTable t;
  t.name = name;
  t.half_widen = half_widen;
  t.half_narrow = half_narrow;
  t.half_narrow_sr = half_narrow_sr;
#define ADAMP_KT_FILL(P) t.k_##P = make_policy_kernels<P>();
  ADAMP_OPTIMIZERS(ADAMP_KT_FILL)
#undef ADAMP_KT_FILL
  return t;
}
