// The CPU inner loops as templates over the lane type of simd.h. Included by exactly two TUs,
// each inside its own namespace (kernels_portable.cpp, kernels_avx2.cpp), so the two builds never
// share a symbol. Vector body and tail run the same code: the tail loads zero-padded lanes and
// masks them out of every reduction and store, so FMA use cannot differ between them.
//
// Reduction order, fixed: within one call, element j goes to float lane j mod 8 of block
// j / kFoldElems, each block folded into double lanes (BSum and NormSums in simd.h: the decision's
// row sums and the info record's norms), or, in the Lanes layout, straight to a per-channel
// double; the lanes are summed by acc_sum's tree. Callers fix the order across calls. Rows whose
// float sums overflow or are tiny are summed again in double (row_sums_need_double, NormSums).
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

/**
 * Whether the blocked float sums of a row cannot be trusted: a product or a block overflowed
 * float (the double sums, and the js backend, stay finite up to ||x|| ~ 1e154), or ||g|| or ||p||
 * is so small (below 1e-10) that products may have lost bits as float subnormals. NaN/inf
 * inputs also land here; the double redo gives them their usual NaN/inf.
 * A gradient row that is exactly zero (every element +0 or -0: `g_zero`) is exact in float, its
 * g.p and g.g are 0 either way, so only p's range decides. Rows of an embedding's gradient are
 * mostly zero, and would otherwise be summed twice every step.
 */
static inline bool row_sums_need_double(const ChannelSums& c, bool g_zero) {
  const double kMinSq = 1e-20;
  const bool g_ok = g_zero || (c.gg >= kMinSq && c.gg <= 1e300);
  return !(std::isfinite(c.gp) && std::isfinite(c.pu) && g_ok && c.pp >= kMinSq && c.pp <= 1e300);
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
        using IO = decltype(io);
        const Vec gv = IO::ld(g + i, r), pv = IO::ld(p + i, r);
        Vec mv = IO::ld(m + i, r), vv = IO::ld(v + i, r);
        adamp_moments(mv, vv, gv, s);
        IO::st(m + i, mv, r);
        IO::st(v + i, vv, r);
        const Vec u = IO::keep(adamp_update<Nesterov>(mv, vv, gv, s), r);  // tail: 0/0 when eps == 0
        if (StoreU) IO::st(uo + i, u, r);
        acc.add(gv, pv, u);
      },
      [&](int64_t, int64_t) { acc.fold(); });
  return acc.finish(p, g, n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    const Vec gv = Nesterov ? IO::ld(g + i, r) : Vec(0.0f);
    return IO::keep(adamp_update<Nesterov>(IO::ld(m + i, r), IO::ld(v + i, r), gv, s), r);
  });
}

static ChannelSums adamp_pass1_row(const float* p, const float* g, float* m, float* v, int64_t n,
                                   const AdamPScalarsF& s, float* uo) {
  if (uo != nullptr)
    return s.nesterov ? adamp_pass1_row_t<true, true>(p, g, m, v, n, s, uo) : adamp_pass1_row_t<false, true>(p, g, m, v, n, s, uo);
  return s.nesterov ? adamp_pass1_row_t<true, false>(p, g, m, v, n, s, uo) : adamp_pass1_row_t<false, false>(p, g, m, v, n, s, uo);
}

template <bool Nesterov, bool StoreU>
static void adamp_pass1_lanes_t(const float* p, const float* g, float* m, float* v, int64_t n, const AdamPScalarsF& s_ref,
                                LaneSums acc, float* uo) {
  const AdamPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  for_lanes(n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    const Vec gv = IO::ld(g + i, r), pv = IO::ld(p + i, r);
    Vec mv = IO::ld(m + i, r), vv = IO::ld(v + i, r);
    adamp_moments(mv, vv, gv, s);
    IO::st(m + i, mv, r);
    IO::st(v + i, vv, r);
    const Vec u = IO::keep(adamp_update<Nesterov>(mv, vv, gv, s), r);
    if (StoreU) IO::st(uo + i, u, r);
    add_prod_to(acc.gp + i, gv, pv);
    add_prod_to(acc.gg + i, gv, gv);
    add_prod_to(acc.pp + i, pv, pv);
    add_prod_to(acc.pu + i, pv, u);
  });
}

static void adamp_pass1_lanes(const float* p, const float* g, float* m, float* v, int64_t n, const AdamPScalarsF& s,
                              LaneSums acc, float* uo) {
  if (uo != nullptr) {
    if (s.nesterov)
      adamp_pass1_lanes_t<true, true>(p, g, m, v, n, s, acc, uo);
    else
      adamp_pass1_lanes_t<false, true>(p, g, m, v, n, s, acc, uo);
  } else if (s.nesterov) {
    adamp_pass1_lanes_t<true, false>(p, g, m, v, n, s, acc, uo);
  } else {
    adamp_pass1_lanes_t<false, false>(p, g, m, v, n, s, acc, uo);
  }
}

// Pass 2 from a stored u (bit-identical to recomputing it): project, decay, step.
// Save: also copy the old p to `psave` (the speculative single pass keeps it for a redo).
template <bool Projected, bool PerLane, bool Save = false>
static Norms adamp_apply_u_t(float* p, const float* uin, int64_t n, float neg_step, ProjCoef k, LaneCoefs kl,
                             float wdf, float* psave = nullptr) {
  NormSums ns;
  alignas(32) float p0blk[kFoldElems];  // the block's old p, for NormSums' double redo
  const Vec wv(wdf), nsv(neg_step), divc(k.div), scc(k.scale);
  for_lanes_folded(n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    const Vec p0 = IO::ld(p + i, r);
    if (Save)
      IO::st(psave + i, p0, r);
    else
      IO::st(p0blk + (i & (kFoldElems - 1)), p0, r);
    Vec u = IO::ld(uin + i, r);
    if (Projected) {
      if (PerLane)
        u = project(u, p0, Vec::load(kl.div + i), Vec::load(kl.scale + i));
      else
        u = project(u, p0, divc, scc);
    }
    const Vec p1 = IO::keep(apply_step(p0, u, wv, nsv), r);
    IO::st(p + i, p1, r);
    ns.add(p0, p1, false);
  }, [&](int64_t b0, int64_t b1) { ns.fold(p + b0, (Save ? psave + b0 : p0blk), b1 - b0, false); });
  return ns.norms();
}

static Norms adamp_apply_u_row(float* p, const float* u, int64_t n, float neg_step, int projected, ProjCoef k,
                               float wdf) {
  const LaneCoefs none = {nullptr, nullptr};
  return projected ? adamp_apply_u_t<true, false>(p, u, n, neg_step, k, none, wdf)
                   : adamp_apply_u_t<false, false>(p, u, n, neg_step, k, none, wdf);
}

// The speculative single pass: apply from u (a row buffer) and save the old p row first.
static Norms adamp_apply_u_save_row(float* p, const float* u, int64_t n, float neg_step, int projected, ProjCoef k,
                                    float wdf, float* psave) {
  const LaneCoefs none = {nullptr, nullptr};
  return projected ? adamp_apply_u_t<true, false, true>(p, u, n, neg_step, k, none, wdf, psave)
                   : adamp_apply_u_t<false, false, true>(p, u, n, neg_step, k, none, wdf, psave);
}

static Norms adamp_apply_u_lanes(float* p, const float* u, int64_t n, float neg_step, int projected, LaneCoefs kl,
                                 float wdf) {
  const ProjCoef k = {1.0f, 0.0f};
  return projected ? adamp_apply_u_t<true, true>(p, u, n, neg_step, k, kl, wdf)
                   : adamp_apply_u_t<false, true>(p, u, n, neg_step, k, kl, wdf);
}

// Pass 2: recompute u (bit-identical to pass 1's), project, decay, step.
template <bool Nesterov, bool Projected, bool PerLane>
static Norms adamp_pass2_t(float* p, const float* g, const float* m, const float* v, int64_t n, const AdamPScalarsF& s_ref,
                           ProjCoef k, LaneCoefs kl, float wdf) {
  const AdamPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  NormSums ns;
  alignas(32) float p0blk[kFoldElems];  // the block's old p, for NormSums' double redo
  const Vec wv(wdf), nsv(s.neg_step), divc(k.div), scc(k.scale);
  for_lanes_folded(n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    const Vec mv = IO::ld(m + i, r), vv = IO::ld(v + i, r), p0 = IO::ld(p + i, r);
    IO::st(p0blk + (i & (kFoldElems - 1)), p0, r);
    const Vec gv = Nesterov ? IO::ld(g + i, r) : Vec(0.0f);
    Vec u = adamp_update<Nesterov>(mv, vv, gv, s);
    if (Projected) {
      if (PerLane)
        u = project(u, p0, Vec::load(kl.div + i), Vec::load(kl.scale + i));
      else
        u = project(u, p0, divc, scc);
    }
    const Vec p1 = IO::keep(apply_step(p0, u, wv, nsv), r);
    IO::st(p + i, p1, r);
    ns.add(p0, p1, false);
  }, [&](int64_t b0, int64_t b1) { ns.fold(p + b0, p0blk, b1 - b0, false); });
  return ns.norms();
}

template <bool PerLane>
static Norms adamp_pass2_any(float* p, const float* g, const float* m, const float* v, int64_t n,
                             const AdamPScalarsF& s, int projected, ProjCoef k, LaneCoefs kl, float wdf) {
  if (s.nesterov)
    return projected ? adamp_pass2_t<true, true, PerLane>(p, g, m, v, n, s, k, kl, wdf)
                     : adamp_pass2_t<true, false, PerLane>(p, g, m, v, n, s, k, kl, wdf);
  return projected ? adamp_pass2_t<false, true, PerLane>(p, g, m, v, n, s, k, kl, wdf)
                   : adamp_pass2_t<false, false, PerLane>(p, g, m, v, n, s, k, kl, wdf);
}

static Norms adamp_pass2_row(float* p, const float* g, const float* m, const float* v, int64_t n,
                             const AdamPScalarsF& s, int projected, ProjCoef k, float wdf) {
  LaneCoefs none = {nullptr, nullptr};
  // The vector body is hot for rows: keep the PerLane=false instantiation.
  return adamp_pass2_any<false>(p, g, m, v, n, s, projected, k, none, wdf);
}

static Norms adamp_pass2_lanes(float* p, const float* g, const float* m, const float* v, int64_t n,
                               const AdamPScalarsF& s, int projected, LaneCoefs kl, float wdf) {
  ProjCoef k = {1.0f, 0.0f};
  return adamp_pass2_any<true>(p, g, m, v, n, s, projected, k, kl, wdf);
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

template <bool Nesterov>
static ChannelSums sgdp_pass1_row_t(const float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s_ref) {
  const SGDPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  RowSums acc;
  for_lanes_folded(
      n,
      [&](auto io, int64_t i, int r) {
        using IO = decltype(io);
        const Vec gv = IO::ld(g + i, r), pv = IO::ld(p + i, r);
        const Vec bv = sgdp_buffer(IO::ld(buf + i, r), gv, s);
        IO::st(buf + i, bv, r);
        acc.add(gv, pv, sgdp_update<Nesterov>(bv, gv, s));
      },
      [&](int64_t, int64_t) { acc.fold(); });
  return acc.finish(p, g, n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    return sgdp_update<Nesterov>(IO::ld(buf + i, r), Nesterov ? IO::ld(g + i, r) : Vec(0.0f), s);
  });
}

static ChannelSums sgdp_pass1_row(const float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s) {
  return s.nesterov ? sgdp_pass1_row_t<true>(p, g, buf, n, s) : sgdp_pass1_row_t<false>(p, g, buf, n, s);
}

template <bool Nesterov>
static void sgdp_pass1_lanes_t(const float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s_ref,
                               LaneSums acc) {
  const SGDPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  for_lanes(n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    const Vec gv = IO::ld(g + i, r), pv = IO::ld(p + i, r);
    const Vec bv = sgdp_buffer(IO::ld(buf + i, r), gv, s);
    IO::st(buf + i, bv, r);
    const Vec d = sgdp_update<Nesterov>(bv, gv, s);
    add_prod_to(acc.gp + i, gv, pv);
    add_prod_to(acc.gg + i, gv, gv);
    add_prod_to(acc.pp + i, pv, pv);
    add_prod_to(acc.pu + i, pv, d);
  });
}

static void sgdp_pass1_lanes(const float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s,
                             LaneSums acc) {
  if (s.nesterov)
    sgdp_pass1_lanes_t<true>(p, g, buf, n, s, acc);
  else
    sgdp_pass1_lanes_t<false>(p, g, buf, n, s, acc);
}

// note: without Nesterov the official `d` IS the momentum buffer and the projection runs in place
// on it, so a projected update is written back into the buffer (SPEC.md s3).
template <bool Nesterov, bool Projected, bool PerLane>
static Norms sgdp_pass2_t(float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s_ref, ProjCoef k,
                          LaneCoefs kl, float wdf) {
  const SGDPScalarsF s = s_ref;  // a local copy: stores through float* cannot alias it
  NormSums ns;
  alignas(32) float p0blk[kFoldElems];  // the block's old p, for NormSums' double redo
  const Vec wv(wdf), nlr(s.neg_lr), divc(k.div), scc(k.scale);
  for_lanes_folded(n, [&](auto io, int64_t i, int r) {
    using IO = decltype(io);
    const Vec bv = IO::ld(buf + i, r), p0 = IO::ld(p + i, r);
    IO::st(p0blk + (i & (kFoldElems - 1)), p0, r);
    const Vec gv = Nesterov ? IO::ld(g + i, r) : Vec(0.0f);
    Vec d = sgdp_update<Nesterov>(bv, gv, s);
    if (Projected) {
      if (PerLane)
        d = project(d, p0, Vec::load(kl.div + i), Vec::load(kl.scale + i));
      else
        d = project(d, p0, divc, scc);
      if (!Nesterov) IO::st(buf + i, d, r);
    }
    const Vec p1 = IO::keep(apply_step(p0, d, wv, nlr), r);
    IO::st(p + i, p1, r);
    ns.add(p0, p1, false);
  }, [&](int64_t b0, int64_t b1) { ns.fold(p + b0, p0blk, b1 - b0, false); });
  return ns.norms();
}

template <bool PerLane>
static Norms sgdp_pass2_any(float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s, int projected,
                            ProjCoef k, LaneCoefs kl, float wdf) {
  if (s.nesterov)
    return projected ? sgdp_pass2_t<true, true, PerLane>(p, g, buf, n, s, k, kl, wdf)
                     : sgdp_pass2_t<true, false, PerLane>(p, g, buf, n, s, k, kl, wdf);
  return projected ? sgdp_pass2_t<false, true, PerLane>(p, g, buf, n, s, k, kl, wdf)
                   : sgdp_pass2_t<false, false, PerLane>(p, g, buf, n, s, k, kl, wdf);
}

static Norms sgdp_pass2_row(float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s, int projected,
                            ProjCoef k, float wdf) {
  LaneCoefs none = {nullptr, nullptr};
  return sgdp_pass2_any<false>(p, g, buf, n, s, projected, k, none, wdf);
}

static Norms sgdp_pass2_lanes(float* p, const float* g, float* buf, int64_t n, const SGDPScalarsF& s, int projected,
                              LaneCoefs kl, float wdf) {
  ProjCoef k = {1.0f, 0.0f};
  return sgdp_pass2_any<true>(p, g, buf, n, s, projected, k, kl, wdf);
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
  t.adamp_pass2_row = adamp_pass2_row;
  t.adamp_pass2_lanes = adamp_pass2_lanes;
  t.adamp_apply_u_row = adamp_apply_u_row;
  t.adamp_apply_u_lanes = adamp_apply_u_lanes;
  t.adamp_apply_u_save_row = adamp_apply_u_save_row;
  t.adamp_one_pass = adamp_one_pass;
  t.sgdp_pass1_row = sgdp_pass1_row;
  t.sgdp_pass1_lanes = sgdp_pass1_lanes;
  t.sgdp_pass2_row = sgdp_pass2_row;
  t.sgdp_pass2_lanes = sgdp_pass2_lanes;
  t.sgdp_one_pass = sgdp_one_pass;
  t.adam_floor = adam_floor;
  t.sgd_floor = sgd_floor;
  return t;
}
