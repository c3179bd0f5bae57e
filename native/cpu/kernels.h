// The CPU inner loops as templates over the lane type of simd.h. Included by exactly two TUs,
// each inside its own namespace (kernels_portable.cpp, kernels_avx2.cpp), so the two builds never
// share a symbol. Vector body and tail run the same code: the tail loads zero-padded lanes and
// masks them out of every reduction and store, so FMA use cannot differ between them.
//
// Reduction order, fixed: within one row, element j goes to float lane j mod 8 of block
// j / kFoldElems, each block folded into double lanes (BSum and NormSums in simd.h: the decision's
// row sums and the info record's norms); the lanes are summed by acc_sum's tree. In the Lanes
// layout a channel's products go to a float partial per kLaneFoldRows rows, folded into the
// channel's double (lanes_pass1). Callers fix the order across calls. Sums whose float partials
// overflow or are tiny are summed again in double (row_sums_need_double, NormSums).
#include "simd.h"

// Full vectors use plain loads and stores; only the tail uses the masked ones (masked stores are
// slow on some CPUs). Both run the same arithmetic.
template <bool Full>
struct Io {
  static Vec ld(const float* p, int r) { return Full ? Vec::load(p) : load_partial(p, r); }
  static void st(float* p, Vec v, int r) {
    if (Full)
      v.store(p);
    else
      store_partial(p, v, r);
  }
  static Vec keep(Vec v, int r) { return Full ? v : keep_lanes(v, r); }
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

/**
 * The four row sums in double lanes, from p, g and the update `upd(io, i, r)` recomputed from the
 * moments pass 1 already stored (bit-identical to pass 1's). The exact fallback of the blocked
 * float sums, for rows where float range is not enough (see row_sums_need_double).
 */
template <class Upd>
static ChannelSums row_sums_double(const float* p, const float* g, int64_t n, const Upd& upd) {
  DAcc agp, agg, app, apu;
  for_lanes(n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    const Vec gv = IO::ld(g + i, r), pv = IO::ld(p + i, r);
    const DVec gd = IO::ldd(g + i, gv), pd = IO::ldd(p + i, pv), ud = to_dvec(upd(io, i, r));
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
  template <class Upd>
  ChannelSums finish(const float* p, const float* g, int64_t n, const Upd& upd) const {
    ChannelSums out;
    out.gp = gp.sum();
    out.gg = gg.sum();
    out.pp = pp.sum();
    out.pu = pu.sum();
    return row_sums_need_double(out, all_zero(gbits)) ? row_sums_double(p, g, n, upd) : out;
  }
};

// Pass 1's work on the r elements at o, shared by the row and lanes layouts: update the moments,
// give g, p and u (and store u to uo when StoreU).
template <bool Nesterov, bool StoreU, class IO>
static inline void adamp_pass1_elem(IO, const float* p, const float* g, float* m, float* v, float* uo, int64_t o, int r,
                                    const AdamPScalarsF& s, Vec& gv, Vec& pv, Vec& u) {
  gv = IO::ld(g + o, r);
  pv = IO::ld(p + o, r);
  Vec mv = IO::ld(m + o, r), vv = IO::ld(v + o, r);
  adamp_moments(mv, vv, gv, s);
  IO::st(m + o, mv, r);
  IO::st(v + o, vv, r);
  u = IO::keep(adamp_update<Nesterov>(mv, vv, gv, s), r);  // tail: 0/0 when eps == 0
  if (StoreU) IO::st(uo + o, u, r);
}

/** u of the r elements at o again, from the moments pass 1 stored (bit-identical): the double redo's. */
template <bool Nesterov, class IO>
static inline Vec adamp_stored_u(IO, const float* g, const float* m, const float* v, int64_t o, int r,
                                 const AdamPScalarsF& s) {
  const Vec gv = Nesterov ? IO::ld(g + o, r) : Vec(0.0f);
  return IO::keep(adamp_update<Nesterov>(IO::ld(m + o, r), IO::ld(v + o, r), gv, s), r);
}

// Pass 1. When `uo` is not null the update u is also stored there, so pass 2 need not recompute
// it (no sqrt, no divisions: the floor's arithmetic is the bottleneck on a CPU).
template <bool Nesterov, bool StoreU>
static ChannelSums adamp_pass1_row_t(const float* p, const float* g, float* m, float* v, int64_t n,
                                     const AdamPScalarsF& s_ref, float* uo) {
  const AdamPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  RowSums acc;
  for_lanes_folded(
      n,
      [&](auto io, int64_t i, int r) {
        Vec gv, pv, u;
        adamp_pass1_elem<Nesterov, StoreU>(io, p, g, m, v, uo, i, r, s, gv, pv, u);
        acc.add(gv, pv, u);
      },
      [&](int64_t, int64_t) { acc.fold(); });
  return acc.finish(p, g, n, [&](auto io, int64_t i, int r) { return adamp_stored_u<Nesterov>(io, g, m, v, i, r, s); });
}

static ChannelSums adamp_pass1_row(const float* p, const float* g, float* m, float* v, int64_t n,
                                   const AdamPScalarsF& s, float* uo) {
  if (uo != nullptr)
    return s.nesterov ? adamp_pass1_row_t<true, true>(p, g, m, v, n, s, uo) : adamp_pass1_row_t<false, true>(p, g, m, v, n, s, uo);
  return s.nesterov ? adamp_pass1_row_t<true, false>(p, g, m, v, n, s, uo) : adamp_pass1_row_t<false, false>(p, g, m, v, n, s, uo);
}

/** Rows per float block of the lanes layout's channel sums (16 products per float partial, like BSum). */
constexpr int64_t kLaneFoldRows = 16;

/**
 * Pass 1 of one task of the channels-innermost layout (element a * stride + k is channel k).
 * step(io, o, r, g, p, u) updates the state of the r elements at o and gives their g, p and u.
 * Per channel, the products of kLaneFoldRows consecutive rows accumulate in a float partial
 * (acc.fblk), folded into the task's double accumulators (acc.gp ...) after every block: RowSums'
 * scheme and error bound, with the blocks along the rows. acc.gbits gets every g OR-ed per
 * channel. The scheduler adds the tasks' sums in order and redoes in double the channels whose
 * float sums cannot be trusted (lane_sums_double).
 */
template <class Step>
static void lanes_pass1(const LaneRows& lr, const LaneSums& acc, const Step& step) {
  const int64_t npad = (lr.n + 7) & ~int64_t(7);
  float* const fgp = acc.fblk;
  float* const fgg = fgp + npad;
  float* const fpp = fgg + npad;
  float* const fpu = fpp + npad;
  for (int64_t i = 0; i < npad; ++i) acc.gbits[i] = 0.0f;
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
        or_bits(Vec::load(acc.gbits + i), gv).store(acc.gbits + i);
      });
    }
    for (int64_t i = 0; i < npad; i += 8) {
      add_prod_to(acc.gp + i, Vec::load(fgp + i), one);
      add_prod_to(acc.gg + i, Vec::load(fgg + i), one);
      add_prod_to(acc.pp + i, Vec::load(fpp + i), one);
      add_prod_to(acc.pu + i, Vec::load(fpu + i), one);
    }
  }
}

/**
 * The four sums of one channel of the channels-innermost layout in double, row by row (element
 * a * stride of p and g; upd1(o) recomputes u of element o from what pass 1 stored): the exact
 * fallback of lanes_pass1's float partials.
 */
template <class Upd1>
static ChannelSums lane_sums_double(const float* p, const float* g, int64_t rows, int64_t stride, const Upd1& upd1) {
  double sgp = 0.0, sgg = 0.0, spp = 0.0, spu = 0.0;
  for (int64_t a = 0; a < rows; ++a) {
    const int64_t o = a * stride;
    const double gd = g[o], pd = p[o], ud = upd1(o);
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

template <bool Nesterov, bool StoreU>
static void adamp_pass1_lanes_t(const float* p, const float* g, float* m, float* v, LaneRows lr, const AdamPScalarsF& s_ref,
                                LaneSums acc, float* uo) {
  const AdamPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  lanes_pass1(lr, acc, [&](auto io, int64_t o, int r, Vec& gv, Vec& pv, Vec& u) {
    adamp_pass1_elem<Nesterov, StoreU>(io, p, g, m, v, uo, o, r, s, gv, pv, u);
  });
}

template <bool Nesterov>
static ChannelSums adamp_lane_sums_double_t(const float* p, const float* g, const float* m, const float* v, int64_t rows,
                                            int64_t stride, const AdamPScalarsF& s) {
  return lane_sums_double(p, g, rows, stride,
                          [&](int64_t o) { return lane0(adamp_stored_u<Nesterov>(Io<false>(), g, m, v, o, 1, s)); });
}

static ChannelSums adamp_lane_sums_double(const float* p, const float* g, const float* m, const float* v, int64_t rows,
                                          int64_t stride, const AdamPScalarsF& s) {
  return s.nesterov ? adamp_lane_sums_double_t<true>(p, g, m, v, rows, stride, s)
                    : adamp_lane_sums_double_t<false>(p, g, m, v, rows, stride, s);
}

static void adamp_pass1_lanes(const float* p, const float* g, float* m, float* v, LaneRows lr, const AdamPScalarsF& s,
                              LaneSums acc, float* uo) {
  if (uo != nullptr) {
    if (s.nesterov)
      adamp_pass1_lanes_t<true, true>(p, g, m, v, lr, s, acc, uo);
    else
      adamp_pass1_lanes_t<false, true>(p, g, m, v, lr, s, acc, uo);
  } else if (s.nesterov) {
    adamp_pass1_lanes_t<true, false>(p, g, m, v, lr, s, acc, uo);
  } else {
    adamp_pass1_lanes_t<false, false>(p, g, m, v, lr, s, acc, uo);
  }
}

/** The projection of pass 2: per channel lane (`kl` from channel i) or one coefficient per row. */
template <bool PerLane>
static inline Vec project_at(Vec u, Vec p0, const LaneCoefs& kl, int64_t i, Vec div, Vec scale) {
  if constexpr (PerLane) return project(u, p0, Vec::load(kl.div + i), Vec::load(kl.scale + i));
  return project(u, p0, div, scale);
}

/** Decays and steps p0 by u, stores the r lanes at dst and adds them to the info norms. */
template <class IO>
static inline void step_store(float* dst, Vec p0, Vec u, Vec wd, Vec neg_step, int r, NormSums& ns) {
  const Vec p1 = IO::keep(apply_step(p0, u, wd, neg_step), r);
  IO::st(dst, p1, r);
  ns.add(p0, p1, false);
}

// Pass 2 from a stored u (bit-identical to recomputing it): project, decay, step.
// Save: also copy the old p to `psave` (the speculative single pass keeps it for a redo).
template <bool Projected, bool PerLane, bool Save = false>
static Norms adamp_apply_u_t(float* p, const float* uin, LaneRows lr, float neg_step, ProjCoef k, LaneCoefs kl,
                             float wdf, float* psave = nullptr) {
  NormSums ns;
  alignas(32) float p0blk[kFoldElems];  // the block's old p, for NormSums' double redo
  const Vec wv(wdf), nsv(neg_step), divc(k.div), scc(k.scale);
  for (int64_t a = 0; a < lr.rows; ++a) {
    float* const pr = p + a * lr.stride;
    const float* const ur = uin + a * lr.stride;
    float* const sr = Save ? psave + a * lr.stride : nullptr;
    for_lanes_folded(lr.n, [&](auto io, int64_t i, int r) {
      using IO = decltype(io);
      const Vec p0 = IO::ld(pr + i, r);
      if (Save)
        IO::st(sr + i, p0, r);
      else
        IO::st(p0blk + (i & (kFoldElems - 1)), p0, r);
      Vec u = IO::ld(ur + i, r);
      if (Projected) u = project_at<PerLane>(u, p0, kl, i, divc, scc);
      step_store<IO>(pr + i, p0, u, wv, nsv, r, ns);
    }, [&](int64_t b0, int64_t b1) { ns.fold(pr + b0, (Save ? sr + b0 : p0blk), b1 - b0, false); });
  }
  return ns.norms();
}

static Norms adamp_apply_u_row(float* p, const float* u, int64_t n, float neg_step, int projected, ProjCoef k,
                               float wdf) {
  const LaneCoefs none = {nullptr, nullptr};
  const LaneRows one = {1, n, 0};
  return projected ? adamp_apply_u_t<true, false>(p, u, one, neg_step, k, none, wdf)
                   : adamp_apply_u_t<false, false>(p, u, one, neg_step, k, none, wdf);
}

// The speculative single pass: apply from u (a row buffer) and save the old p row first.
static Norms adamp_apply_u_save_row(float* p, const float* u, int64_t n, float neg_step, int projected, ProjCoef k,
                                    float wdf, float* psave) {
  const LaneCoefs none = {nullptr, nullptr};
  const LaneRows one = {1, n, 0};
  return projected ? adamp_apply_u_t<true, false, true>(p, u, one, neg_step, k, none, wdf, psave)
                   : adamp_apply_u_t<false, false, true>(p, u, one, neg_step, k, none, wdf, psave);
}

static Norms adamp_apply_u_lanes(float* p, const float* u, LaneRows lr, float neg_step, int projected, LaneCoefs kl,
                                 float wdf) {
  const ProjCoef k = {1.0f, 0.0f};
  return projected ? adamp_apply_u_t<true, true>(p, u, lr, neg_step, k, kl, wdf)
                   : adamp_apply_u_t<false, true>(p, u, lr, neg_step, k, kl, wdf);
}

// Pass 2: recompute u (bit-identical to pass 1's), project, decay, step.
template <bool Nesterov, bool Projected, bool PerLane>
static Norms adamp_pass2_t(float* p, const float* g, const float* m, const float* v, LaneRows lr,
                           const AdamPScalarsF& s_ref, ProjCoef k, LaneCoefs kl, float wdf) {
  const AdamPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  NormSums ns;
  alignas(32) float p0blk[kFoldElems];  // the block's old p, for NormSums' double redo
  const Vec wv(wdf), nsv(s.neg_step), divc(k.div), scc(k.scale);
  for (int64_t a = 0; a < lr.rows; ++a) {
    const int64_t off = a * lr.stride;
    float* const pr = p + off;
    for_lanes_folded(lr.n, [&](auto io, int64_t i, int r) {
      using IO = decltype(io);
      const Vec mv = IO::ld(m + off + i, r), vv = IO::ld(v + off + i, r), p0 = IO::ld(pr + i, r);
      IO::st(p0blk + (i & (kFoldElems - 1)), p0, r);
      const Vec gv = Nesterov ? IO::ld(g + off + i, r) : Vec(0.0f);
      Vec u = adamp_update<Nesterov>(mv, vv, gv, s);
      if (Projected) u = project_at<PerLane>(u, p0, kl, i, divc, scc);
      step_store<IO>(pr + i, p0, u, wv, nsv, r, ns);
    }, [&](int64_t b0, int64_t b1) { ns.fold(pr + b0, p0blk, b1 - b0, false); });
  }
  return ns.norms();
}

template <bool PerLane>
static Norms adamp_pass2_any(float* p, const float* g, const float* m, const float* v, LaneRows lr,
                             const AdamPScalarsF& s, int projected, ProjCoef k, LaneCoefs kl, float wdf) {
  if (s.nesterov)
    return projected ? adamp_pass2_t<true, true, PerLane>(p, g, m, v, lr, s, k, kl, wdf)
                     : adamp_pass2_t<true, false, PerLane>(p, g, m, v, lr, s, k, kl, wdf);
  return projected ? adamp_pass2_t<false, true, PerLane>(p, g, m, v, lr, s, k, kl, wdf)
                   : adamp_pass2_t<false, false, PerLane>(p, g, m, v, lr, s, k, kl, wdf);
}

static Norms adamp_pass2_row(float* p, const float* g, const float* m, const float* v, int64_t n,
                             const AdamPScalarsF& s, int projected, ProjCoef k, float wdf) {
  LaneCoefs none = {nullptr, nullptr};
  // The vector body is hot for rows: keep the PerLane=false instantiation.
  return adamp_pass2_any<false>(p, g, m, v, LaneRows{1, n, 0}, s, projected, k, none, wdf);
}

static Norms adamp_pass2_lanes(float* p, const float* g, const float* m, const float* v, LaneRows lr,
                               const AdamPScalarsF& s, int projected, LaneCoefs kl, float wdf) {
  ProjCoef k = {1.0f, 0.0f};
  return adamp_pass2_any<true>(p, g, m, v, lr, s, projected, k, kl, wdf);
}

template <bool Nesterov>
static Norms adamp_one_pass_t(float* p, const float* g, float* m, float* v, int64_t n, const AdamPScalarsF& s_ref,
                              float wdf) {
  const AdamPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  NormSums ns;
  alignas(32) float p0blk[kFoldElems];  // the block's old p, for NormSums' double redo
  const Vec wv(wdf), nsv(s.neg_step);
  for_lanes_folded(n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    const Vec gv = IO::ld(g + i, r), p0 = IO::ld(p + i, r);
    IO::st(p0blk + (i & (kFoldElems - 1)), p0, r);
    Vec mv = IO::ld(m + i, r), vv = IO::ld(v + i, r);
    adamp_moments(mv, vv, gv, s);
    IO::st(m + i, mv, r);
    IO::st(v + i, vv, r);
    const Vec u = adamp_update<Nesterov>(mv, vv, gv, s);
    const Vec p1 = IO::keep(apply_step(p0, u, wv, nsv), r);
    IO::st(p + i, p1, r);
    ns.add(p0, p1, true);
  }, [&](int64_t b0, int64_t b1) { ns.fold(p + b0, p0blk, b1 - b0, true); });
  return ns.norms();
}

static Norms adamp_one_pass(float* p, const float* g, float* m, float* v, int64_t n, const AdamPScalarsF& s,
                            float wdf) {
  return s.nesterov ? adamp_one_pass_t<true>(p, g, m, v, n, s, wdf) : adamp_one_pass_t<false>(p, g, m, v, n, s, wdf);
}

// ------------------------------------------------------------------------------------------------
// SGDP

// Pass 1's work on the r elements at o, shared by the row and lanes layouts: update the buffer,
// give g, p and the update d.
template <bool Nesterov, class IO>
static inline void sgdp_pass1_elem(IO, const float* p, const float* g, float* buf, int64_t o, int r,
                                   const SGDPScalarsF& s, Vec& gv, Vec& pv, Vec& d) {
  gv = IO::ld(g + o, r);
  pv = IO::ld(p + o, r);
  const Vec bv = sgdp_buffer(IO::ld(buf + o, r), gv, s);
  IO::st(buf + o, bv, r);
  d = sgdp_update<Nesterov>(bv, gv, s);
}

/** d of the r elements at o again, from the buffer pass 1 stored (bit-identical): the double redo's. */
template <bool Nesterov, class IO>
static inline Vec sgdp_stored_d(IO, const float* g, const float* buf, int64_t o, int r, const SGDPScalarsF& s) {
  return sgdp_update<Nesterov>(IO::ld(buf + o, r), Nesterov ? IO::ld(g + o, r) : Vec(0.0f), s);
}

template <bool Nesterov>
static ChannelSums sgdp_pass1_row_t(const float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s_ref) {
  const SGDPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  RowSums acc;
  for_lanes_folded(
      n,
      [&](auto io, int64_t i, int r) {
        Vec gv, pv, d;
        sgdp_pass1_elem<Nesterov>(io, p, g, buf, i, r, s, gv, pv, d);
        acc.add(gv, pv, d);
      },
      [&](int64_t, int64_t) { acc.fold(); });
  return acc.finish(p, g, n, [&](auto io, int64_t i, int r) { return sgdp_stored_d<Nesterov>(io, g, buf, i, r, s); });
}

static ChannelSums sgdp_pass1_row(const float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s) {
  return s.nesterov ? sgdp_pass1_row_t<true>(p, g, buf, n, s) : sgdp_pass1_row_t<false>(p, g, buf, n, s);
}

template <bool Nesterov>
static void sgdp_pass1_lanes_t(const float* p, const float* g, float* buf, LaneRows lr, const SGDPScalarsF& s_ref,
                               LaneSums acc) {
  const SGDPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  lanes_pass1(lr, acc, [&](auto io, int64_t o, int r, Vec& gv, Vec& pv, Vec& d) {
    sgdp_pass1_elem<Nesterov>(io, p, g, buf, o, r, s, gv, pv, d);
  });
}

template <bool Nesterov>
static ChannelSums sgdp_lane_sums_double_t(const float* p, const float* g, const float* buf, int64_t rows, int64_t stride,
                                           const SGDPScalarsF& s) {
  return lane_sums_double(p, g, rows, stride,
                          [&](int64_t o) { return lane0(sgdp_stored_d<Nesterov>(Io<false>(), g, buf, o, 1, s)); });
}

static ChannelSums sgdp_lane_sums_double(const float* p, const float* g, const float* buf, int64_t rows, int64_t stride,
                                         const SGDPScalarsF& s) {
  return s.nesterov ? sgdp_lane_sums_double_t<true>(p, g, buf, rows, stride, s)
                    : sgdp_lane_sums_double_t<false>(p, g, buf, rows, stride, s);
}

static void sgdp_pass1_lanes(const float* p, const float* g, float* buf, LaneRows lr, const SGDPScalarsF& s,
                             LaneSums acc) {
  if (s.nesterov)
    sgdp_pass1_lanes_t<true>(p, g, buf, lr, s, acc);
  else
    sgdp_pass1_lanes_t<false>(p, g, buf, lr, s, acc);
}

// note: without Nesterov the official `d` IS the momentum buffer and the projection runs in place
// on it, so a projected update is written back into the buffer (SPEC.md s3).
template <bool Nesterov, bool Projected, bool PerLane>
static Norms sgdp_pass2_t(float* p, const float* g, float* buf, LaneRows lr, const SGDPScalarsF& s_ref, ProjCoef k,
                          LaneCoefs kl, float wdf) {
  const SGDPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  NormSums ns;
  alignas(32) float p0blk[kFoldElems];  // the block's old p, for NormSums' double redo
  const Vec wv(wdf), nlr(s.neg_lr), divc(k.div), scc(k.scale);
  for (int64_t a = 0; a < lr.rows; ++a) {
    const int64_t off = a * lr.stride;
    float* const pr = p + off;
    float* const br = buf + off;
    for_lanes_folded(lr.n, [&](auto io, int64_t i, int r) {
      using IO = decltype(io);
      const Vec bv = IO::ld(br + i, r), p0 = IO::ld(pr + i, r);
      IO::st(p0blk + (i & (kFoldElems - 1)), p0, r);
      const Vec gv = Nesterov ? IO::ld(g + off + i, r) : Vec(0.0f);
      Vec d = sgdp_update<Nesterov>(bv, gv, s);
      if (Projected) {
        d = project_at<PerLane>(d, p0, kl, i, divc, scc);
        if (!Nesterov) IO::st(br + i, d, r);
      }
      step_store<IO>(pr + i, p0, d, wv, nlr, r, ns);
    }, [&](int64_t b0, int64_t b1) { ns.fold(pr + b0, p0blk, b1 - b0, false); });
  }
  return ns.norms();
}

template <bool PerLane>
static Norms sgdp_pass2_any(float* p, const float* g, float* buf, LaneRows lr, const SGDPScalarsF& s, int projected,
                            ProjCoef k, LaneCoefs kl, float wdf) {
  if (s.nesterov)
    return projected ? sgdp_pass2_t<true, true, PerLane>(p, g, buf, lr, s, k, kl, wdf)
                     : sgdp_pass2_t<true, false, PerLane>(p, g, buf, lr, s, k, kl, wdf);
  return projected ? sgdp_pass2_t<false, true, PerLane>(p, g, buf, lr, s, k, kl, wdf)
                   : sgdp_pass2_t<false, false, PerLane>(p, g, buf, lr, s, k, kl, wdf);
}

static Norms sgdp_pass2_row(float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s, int projected,
                            ProjCoef k, float wdf) {
  LaneCoefs none = {nullptr, nullptr};
  return sgdp_pass2_any<false>(p, g, buf, LaneRows{1, n, 0}, s, projected, k, none, wdf);
}

static Norms sgdp_pass2_lanes(float* p, const float* g, float* buf, LaneRows lr, const SGDPScalarsF& s, int projected,
                              LaneCoefs kl, float wdf) {
  ProjCoef k = {1.0f, 0.0f};
  return sgdp_pass2_any<true>(p, g, buf, lr, s, projected, k, kl, wdf);
}

template <bool Nesterov>
static Norms sgdp_one_pass_t(float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s_ref, float wdf) {
  const SGDPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  NormSums ns;
  alignas(32) float p0blk[kFoldElems];  // the block's old p, for NormSums' double redo
  const Vec wv(wdf), nlr(s.neg_lr);
  for_lanes_folded(n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    const Vec gv = IO::ld(g + i, r), p0 = IO::ld(p + i, r);
    IO::st(p0blk + (i & (kFoldElems - 1)), p0, r);
    const Vec bv = sgdp_buffer(IO::ld(buf + i, r), gv, s);
    IO::st(buf + i, bv, r);
    const Vec d = sgdp_update<Nesterov>(bv, gv, s);
    const Vec p1 = IO::keep(apply_step(p0, d, wv, nlr), r);
    IO::st(p + i, p1, r);
    ns.add(p0, p1, true);
  }, [&](int64_t b0, int64_t b1) { ns.fold(p + b0, p0blk, b1 - b0, true); });
  return ns.norms();
}

static Norms sgdp_one_pass(float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s, float wdf) {
  return s.nesterov ? sgdp_one_pass_t<true>(p, g, buf, n, s, wdf) : sgdp_one_pass_t<false>(p, g, buf, n, s, wdf);
}

// ------------------------------------------------------------------------------------------------
// Floors: the cheapest possible one-pass steps, same lanes and same math primitives.

static void adam_floor(float* p, const float* g, float* m, float* v, int64_t n, const AdamPScalarsF& s_ref, float wdf) {
  const AdamPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  const Vec wv(wdf), nsv(s.neg_step);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const Vec gv = Vec::load(g + i);
    Vec mv = Vec::load(m + i), vv = Vec::load(v + i);
    adamp_moments(mv, vv, gv, s);
    mv.store(m + i);
    vv.store(v + i);
    apply_step(Vec::load(p + i), adamp_update<false>(mv, vv, gv, s), wv, nsv).store(p + i);
  }
  if (i < n) {
    const int r = (int)(n - i);
    const Vec gv = load_partial(g + i, r);
    Vec mv = load_partial(m + i, r), vv = load_partial(v + i, r);
    adamp_moments(mv, vv, gv, s);
    store_partial(m + i, mv, r);
    store_partial(v + i, vv, r);
    store_partial(p + i, apply_step(load_partial(p + i, r), adamp_update<false>(mv, vv, gv, s), wv, nsv), r);
  }
}

template <bool Nesterov>
static void sgd_floor_t(float* p, const float* g, float* buf, int64_t n, const SGDScalarsF& s) {
  const Vec wd(s.wd), mom(s.mom), omd(s.omd), nlr(s.neg_lr);
  for_lanes(n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    const Vec p0 = IO::ld(p + i, r);
    const Vec dp = f_fma(p0, wd, IO::ld(g + i, r));  // torch: d_p = g + wd * p
    const Vec bv = f_fma(dp, omd, f_mul(IO::ld(buf + i, r), mom));
    IO::st(buf + i, bv, r);
    const Vec d = Nesterov ? f_fma(bv, mom, dp) : bv;
    IO::st(p + i, f_fma(d, nlr, p0), r);
  });
}

static void sgd_floor(float* p, const float* g, float* buf, int64_t n, const SGDScalarsF& s) {
  if (s.nesterov)
    sgd_floor_t<true>(p, g, buf, n, s);
  else
    sgd_floor_t<false>(p, g, buf, n, s);
}

static KernelTable make_table(const char* name) {
  KernelTable t;
  t.name = name;
  t.adamp_pass1_row = adamp_pass1_row;
  t.adamp_pass1_lanes = adamp_pass1_lanes;
  t.adamp_lane_sums_double = adamp_lane_sums_double;
  t.adamp_pass2_row = adamp_pass2_row;
  t.adamp_pass2_lanes = adamp_pass2_lanes;
  t.adamp_apply_u_row = adamp_apply_u_row;
  t.adamp_apply_u_lanes = adamp_apply_u_lanes;
  t.adamp_apply_u_save_row = adamp_apply_u_save_row;
  t.adamp_one_pass = adamp_one_pass;
  t.sgdp_pass1_row = sgdp_pass1_row;
  t.sgdp_pass1_lanes = sgdp_pass1_lanes;
  t.sgdp_lane_sums_double = sgdp_lane_sums_double;
  t.sgdp_pass2_row = sgdp_pass2_row;
  t.sgdp_pass2_lanes = sgdp_pass2_lanes;
  t.sgdp_one_pass = sgdp_one_pass;
  t.adam_floor = adam_floor;
  t.sgd_floor = sgd_floor;
  return t;
}
