// The fused AdamP / SGDP step: one persistent kernel per launch that runs, per tensor,
//   pass 1   moments + deterministic partial sums of g.p, g.g, p.p, p.u per channel piece,
//   decide   by the block that finishes a tensor's last pass-1 item: fold the partials in a fixed
//            order, decide the projection, write per-channel coefficients,
//   pass 2   recompute the update, project, decay, step; partial sums of the info record.
// Tensors that are never projected take a single pass. Every element-wise operation and the
// decision's arithmetic come from adamp/math.h, the header the CPU core uses.
//
// note: determinism. No floating-point atomics anywhere: every partial sum has one writer and
// fixed-order folds. The only atomics are integer counters (the work queue, "items finished"),
// and what they choose (which block decides) does not change any value.
#ifndef ADAMP_CUDA_STEP_KERNEL_CUH
#define ADAMP_CUDA_STEP_KERNEL_CUH

#include <stdint.h>

#include "launch.cuh"

namespace adamp_cuda {

enum Opt : int { kAdamP = 0, kSGDP = 1 };

struct InfoSums {
  double before, after, delta;
};

/** What one block knows about the item it works on (shared memory). */
struct BlockCtx {
  Hyper h;
  adamp::AdamPScalarsF as;
  adamp::SGDPScalarsF ss;
  adamp::ProjCoef layer;
  float wdf;
  int decision;
  int item_global;
  int tensor;
  int pass;
  int last;  // this block finished the tensor's last item of the pass
  int64_t item;
};

// ---------------------------------------------------------------------------------------------
// Loads that bypass L1: data written by other blocks of the same launch.

__device__ __forceinline__ adamp::ChannelSums ldcg_sums(const adamp::ChannelSums* s) {
  const double2* q = reinterpret_cast<const double2*>(s);
  const double2 a = __ldcg(q), b = __ldcg(q + 1);
  adamp::ChannelSums r;
  r.gp = a.x;
  r.gg = a.y;
  r.pp = b.x;
  r.pu = b.y;
  return r;
}

__device__ __forceinline__ adamp::ProjCoef ldcg_coef(const adamp::ProjCoef* c) {
  const float2 x = __ldcg(reinterpret_cast<const float2*>(c));
  adamp::ProjCoef r;
  r.div = x.x;
  r.scale = x.y;
  return r;
}

// ---------------------------------------------------------------------------------------------
// Reductions in a fixed order.

__device__ __forceinline__ void warp_sum(adamp::ChannelSums& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    s.gp += __shfl_down_sync(0xffffffffu, s.gp, o);
    s.gg += __shfl_down_sync(0xffffffffu, s.gg, o);
    s.pp += __shfl_down_sync(0xffffffffu, s.pp, o);
    s.pu += __shfl_down_sync(0xffffffffu, s.pu, o);
  }
}

__device__ __forceinline__ void warp_sum(InfoSums& s) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    s.before += __shfl_down_sync(0xffffffffu, s.before, o);
    s.after += __shfl_down_sync(0xffffffffu, s.after, o);
    s.delta += __shfl_down_sync(0xffffffffu, s.delta, o);
  }
}

/** max that keeps NaN (any NaN wins), as the serial `if (!(c <= max))` loop of adamp::decide. */
__device__ __forceinline__ double max_nan(double a, double b) {
  if (a != a) return a;
  if (b != b) return b;
  return a < b ? b : a;
}

/** Block-wide sum of the info partials; the result is valid in thread 0. */
__device__ __forceinline__ InfoSums block_sum_info(InfoSums s, adamp::ChannelSums* red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  warp_sum(s);
  if (lane == 0) {
    red[warp].gp = s.before;
    red[warp].gg = s.after;
    red[warp].pp = s.delta;
  }
  __syncthreads();
  InfoSums r = {0.0, 0.0, 0.0};
  if (threadIdx.x == 0) {
    for (int w = 0; w < kWarps; ++w) {
      r.before += red[w].gp;
      r.after += red[w].gg;
      r.delta += red[w].pp;
    }
  }
  __syncthreads();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Groups of four elements at an index multiple of 4: one 128-bit access when the group is
// whole and the buffers are aligned, else element by element in [lo, hi).

__device__ __forceinline__ void load4(const float* a, int64_t base, int lo, int hi, bool full, float (&x)[4]) {
  if (full) {
    const float4 t = *reinterpret_cast<const float4*>(a + base);
    x[0] = t.x;
    x[1] = t.y;
    x[2] = t.z;
    x[3] = t.w;
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) x[j] = (j >= lo && j < hi) ? a[base + j] : 0.0f;
  }
}

__device__ __forceinline__ void load4_ro(const float* a, int64_t base, int lo, int hi, bool full, float (&x)[4]) {
  if (full) {
    const float4 t = __ldg(reinterpret_cast<const float4*>(a + base));
    x[0] = t.x;
    x[1] = t.y;
    x[2] = t.z;
    x[3] = t.w;
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) x[j] = (j >= lo && j < hi) ? __ldg(a + base + j) : 0.0f;
  }
}

__device__ __forceinline__ void store4(float* a, int64_t base, int lo, int hi, bool full, const float (&x)[4]) {
  if (full) {
    *reinterpret_cast<float4*>(a + base) = make_float4(x[0], x[1], x[2], x[3]);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j >= lo && j < hi) a[base + j] = x[j];
  }
}

__device__ __forceinline__ void add_info(InfoSums& acc, float p0, float p1) {
  const double a = p0, b = p1;
  acc.before += a * a;
  acc.after += b * b;
  acc.delta += (b - a) * (b - a);
}

// ---------------------------------------------------------------------------------------------
// Element groups of each pass.

/** Pass 1: moments (written back) and the four per-channel products. */
template <int O>
__device__ __forceinline__ void pass1_group(const TensorArgs& T, int64_t base, int lo, int hi, bool full,
                                            const BlockCtx& b, adamp::ChannelSums& acc) {
  float p[4], g[4], m[4];
  load4(T.p, base, lo, hi, full, p);
  load4_ro(T.g, base, lo, hi, full, g);
  load4(T.m, base, lo, hi, full, m);
  if (O == kAdamP) {
    float v[4];
    load4(T.v, base, lo, hi, full, v);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= lo && j < hi) {
        adamp::adamp_moments(m[j], v[j], g[j], b.as);
        const float u = adamp::adamp_update(m[j], v[j], g[j], b.as);
        adamp::sums_accumulate(acc, g[j], p[j], u);
      }
    }
    store4(T.m, base, lo, hi, full, m);
    store4(T.v, base, lo, hi, full, v);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= lo && j < hi) {
        m[j] = adamp::sgdp_buffer(m[j], g[j], b.ss);
        const float d = adamp::sgdp_update(m[j], g[j], b.ss);
        adamp::sums_accumulate(acc, g[j], p[j], d);
      }
    }
    store4(T.m, base, lo, hi, full, m);
  }
}

/** Pass 2: the update from the stored moments, projected with (div, scale) when `proj`, then decay and step. */
template <int O>
__device__ __forceinline__ void pass2_group(const TensorArgs& T, int64_t base, int lo, int hi, bool full,
                                            const BlockCtx& b, bool proj, adamp::ProjCoef k, InfoSums& acc) {
  float p[4], g[4], m[4];
  load4(T.p, base, lo, hi, full, p);
  load4(T.m, base, lo, hi, full, m);
  const bool nesterov = (O == kAdamP) ? b.as.nesterov != 0 : b.ss.nesterov != 0;
  if (nesterov) {
    load4_ro(T.g, base, lo, hi, full, g);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) g[j] = 0.0f;
  }
  const float neg_step = (O == kAdamP) ? b.as.neg_step : b.ss.neg_lr;
  if (O == kAdamP) {
    float v[4];
    load4(T.v, base, lo, hi, full, v);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= lo && j < hi) {
        float u = adamp::adamp_update(m[j], v[j], g[j], b.as);
        if (proj) u = adamp::project(u, p[j], k.div, k.scale);
        const float p1 = adamp::apply_step(p[j], u, b.wdf, neg_step);
        add_info(acc, p[j], p1);
        p[j] = p1;
      }
    }
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= lo && j < hi) {
        float d = adamp::sgdp_update(m[j], g[j], b.ss);
        if (proj) d = adamp::project(d, p[j], k.div, k.scale);
        m[j] = d;
        const float p1 = adamp::apply_step(p[j], d, b.wdf, neg_step);
        add_info(acc, p[j], p1);
        p[j] = p1;
      }
    }
    // note: without Nesterov, the official `d` IS the momentum buffer and the projection is in
    // place, so the projected update is written back into the buffer (SPEC.md s3).
    if (proj && !nesterov) store4(T.m, base, lo, hi, full, m);
  }
  store4(T.p, base, lo, hi, full, p);
}

/** The single pass of a tensor that is never projected. */
template <int O>
__device__ __forceinline__ void single_group(const TensorArgs& T, int64_t base, int lo, int hi, bool full,
                                             const BlockCtx& b, InfoSums& acc) {
  float p[4], g[4], m[4];
  load4(T.p, base, lo, hi, full, p);
  load4_ro(T.g, base, lo, hi, full, g);
  load4(T.m, base, lo, hi, full, m);
  if (O == kAdamP) {
    float v[4];
    load4(T.v, base, lo, hi, full, v);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= lo && j < hi) {
        adamp::adamp_moments(m[j], v[j], g[j], b.as);
        const float u = adamp::adamp_update(m[j], v[j], g[j], b.as);
        const float p1 = adamp::apply_step(p[j], u, b.wdf, b.as.neg_step);
        add_info(acc, p[j], p1);
        p[j] = p1;
      }
    }
    store4(T.v, base, lo, hi, full, v);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j >= lo && j < hi) {
        m[j] = adamp::sgdp_buffer(m[j], g[j], b.ss);
        const float d = adamp::sgdp_update(m[j], g[j], b.ss);
        const float p1 = adamp::apply_step(p[j], d, b.wdf, b.ss.neg_lr);
        add_info(acc, p[j], p1);
        p[j] = p1;
      }
    }
  }
  store4(T.m, base, lo, hi, full, m);
  store4(T.p, base, lo, hi, full, p);
}

// ---------------------------------------------------------------------------------------------
// Items.

/** Visits the groups of 4 overlapping [e0, e1) with `nthreads` threads; `t` is this thread's rank. */
template <class F>
__device__ __forceinline__ void for_groups(int64_t e0, int64_t e1, int t, int nthreads, bool vec, F&& f) {
  const int64_t gend = (e1 + 3) >> 2;
  for (int64_t gi = (e0 >> 2) + t; gi < gend; gi += nthreads) {
    const int64_t base = gi << 2;
    const int lo = e0 > base ? (int)(e0 - base) : 0;
    const int hi = e1 < base + 4 ? (int)(e1 - base) : 4;
    f(base, lo, hi, vec && lo == 0 && hi == 4);
  }
}

template <int O>
__device__ void single_item(const TensorArgs& T, int64_t k, const BlockCtx& b, adamp::ChannelSums* red) {
  const int64_t s0 = k * T.chunk;
  const int64_t s1 = s0 + T.chunk < T.numel ? s0 + T.chunk : T.numel;
  InfoSums acc = {0.0, 0.0, 0.0};
  for_groups(s0, s1, threadIdx.x, kThreads, T.vec != 0,
             [&](int64_t base, int lo, int hi, bool full) { single_group<O>(T, base, lo, hi, full, b, acc); });
  const InfoSums r = block_sum_info(acc, red);
  if (threadIdx.x == 0) {
    T.info_part[3 * k + 0] = r.before;
    T.info_part[3 * k + 1] = r.after;
    T.info_part[3 * k + 2] = r.delta;
  }
}

/** Segment mode: the item's pieces (whole rows, or one piece of a long row) go to teams of warps. */
template <int O, int Pass>
__device__ void segment_item(const TensorArgs& T, int64_t k, const BlockCtx& b, adamp::ChannelSums* red) {
  const int64_t nseg = T.outer * T.channels;
  int64_t seg0, npieces;
  if (T.nps == 1) {
    seg0 = k * T.spi;
    npieces = nseg - seg0 < T.spi ? nseg - seg0 : T.spi;
  } else {
    seg0 = k / T.nps;
    npieces = 1;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int tlog = T.team_log2;
  const int teams = kWarps >> tlog;
  const int team = warp >> tlog;
  const int wit = warp & ((1 << tlog) - 1);
  const int tt = wit * 32 + lane;
  const int team_threads = 32 << tlog;
  const int64_t rounds = (npieces + teams - 1) / teams;
  const bool proj = adamp::is_projected(b.decision);
  InfoSums info = {0.0, 0.0, 0.0};

  for (int64_t r = 0; r < rounds; ++r) {
    const int64_t piece = r * teams + team;
    const bool active = piece < npieces;
    const int64_t seg = seg0 + (T.nps == 1 ? piece : 0);
    int64_t e0 = seg * T.inner, e1 = e0 + T.inner, slot = seg;
    if (T.nps > 1) {
      e0 += (k % T.nps) * T.plen;
      e1 = e0 + T.plen < e1 ? e0 + T.plen : e1;
      slot = k;
    }
    if (Pass == 0) {
      adamp::ChannelSums acc;
      adamp::sums_zero(acc);
      if (active) {
        for_groups(e0, e1, tt, team_threads, T.vec != 0,
                   [&](int64_t base, int lo, int hi, bool full) { pass1_group<O>(T, base, lo, hi, full, b, acc); });
      }
      warp_sum(acc);
      if (lane == 0) red[warp] = acc;
      __syncthreads();
      if (active && wit == 0 && lane == 0) {
        adamp::ChannelSums s = red[warp];
        for (int w = 1; w < (1 << tlog); ++w) adamp::sums_add(s, red[warp + w]);
        T.part[slot] = s;
      }
      __syncthreads();
    } else if (active) {
      adamp::ProjCoef kc = b.layer;
      if (b.decision == adamp::kDecisionChannel) kc = ldcg_coef(T.coef + (seg % T.channels));
      for_groups(e0, e1, tt, team_threads, T.vec != 0, [&](int64_t base, int lo, int hi, bool full) {
        pass2_group<O>(T, base, lo, hi, full, b, proj, kc, info);
      });
    }
  }
  if (Pass == 1) {
    const InfoSums s = block_sum_info(info, red);
    if (threadIdx.x == 0) {
      T.info_part[3 * k + 0] = s.before;
      T.info_part[3 * k + 1] = s.after;
      T.info_part[3 * k + 2] = s.delta;
    }
  }
}

/** Column mode: a tile of rows x columns; each thread owns one column (one channel) of it. */
template <int O, int Pass>
__device__ void column_item(const TensorArgs& T, int64_t k, const BlockCtx& b, adamp::ChannelSums* red) {
  const int64_t rb = k / T.nct, ct = k % T.nct;
  const int64_t c0 = ct * T.tw;
  const int64_t c1 = c0 + T.tw < T.width ? c0 + T.tw : T.width;
  const int64_t r0 = rb * T.rows_per_item;
  const int64_t r1 = r0 + T.rows_per_item < T.outer ? r0 + T.rows_per_item : T.outer;
  const int lc = threadIdx.x % T.tw, lr = threadIdx.x / T.tw;
  const int64_t col = c0 + lc;
  const bool active = lr < T.rp && col < c1;

  if (Pass == 0) {
    adamp::ChannelSums acc;
    adamp::sums_zero(acc);
    if (active) {
      for (int64_t r = r0 + lr; r < r1; r += T.rp) pass1_group<O>(T, r * T.width + col, 0, 1, false, b, acc);
    }
    red[threadIdx.x] = acc;
    __syncthreads();
    // Row lanes of a column, in order (thread q only writes red[q], q < tw; others read red[q + j*tw]).
    if ((int)threadIdx.x < T.tw) {
      adamp::ChannelSums s = red[threadIdx.x];
      for (int j = 1; j < T.rp; ++j) adamp::sums_add(s, red[threadIdx.x + j * T.tw]);
      red[threadIdx.x] = s;
    }
    __syncthreads();
    // Columns of a channel, in order: one partial per (row block, channel piece of this tile).
    const int64_t ch0 = c0 / T.inner, ch1 = (c1 - 1) / T.inner;
    if ((int64_t)threadIdx.x <= ch1 - ch0) {
      const int64_t ch = ch0 + threadIdx.x;
      const int64_t a = ch * T.inner > c0 ? ch * T.inner : c0;
      const int64_t z = (ch + 1) * T.inner < c1 ? (ch + 1) * T.inner : c1;
      adamp::ChannelSums s;
      adamp::sums_zero(s);
      for (int64_t c = a; c < z; ++c) adamp::sums_add(s, red[c - c0]);
      T.part[rb * (T.channels + T.nct) + ch + ct] = s;
    }
    __syncthreads();
  } else {
    InfoSums info = {0.0, 0.0, 0.0};
    if (active) {
      const bool proj = adamp::is_projected(b.decision);
      adamp::ProjCoef kc = b.layer;
      if (b.decision == adamp::kDecisionChannel) kc = ldcg_coef(T.coef + col / T.inner);
      for (int64_t r = r0 + lr; r < r1; r += T.rp) pass2_group<O>(T, r * T.width + col, 0, 1, false, b, proj, kc, info);
    }
    const InfoSums s = block_sum_info(info, red);
    if (threadIdx.x == 0) {
      T.info_part[3 * k + 0] = s.before;
      T.info_part[3 * k + 1] = s.after;
      T.info_part[3 * k + 2] = s.delta;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The decision of one tensor, by the block that finished its last pass-1 item.

/** The sums of channel c, folded from its pieces in a fixed order. */
__device__ __forceinline__ adamp::ChannelSums fold_channel(const TensorArgs& T, int64_t c) {
  adamp::ChannelSums s;
  adamp::sums_zero(s);
  if (T.mode == kModeSegment) {
    for (int64_t o = 0; o < T.outer; ++o) {
      const int64_t seg = o * T.channels + c;
      for (int64_t j = 0; j < T.nps; ++j) adamp::sums_add(s, ldcg_sums(T.part + seg * T.nps + j));
    }
  } else {
    const int64_t nrb = (T.outer + T.rows_per_item - 1) / T.rows_per_item;
    const int64_t ct0 = (c * T.inner) / T.tw, ct1 = ((c + 1) * T.inner - 1) / T.tw;
    for (int64_t rb = 0; rb < nrb; ++rb)
      for (int64_t ct = ct0; ct <= ct1; ++ct) adamp::sums_add(s, ldcg_sums(T.part + rb * (T.channels + T.nct) + c + ct));
  }
  return s;
}

/**
 * The decision of one tensor: the block reduces max |cos| and the totals over channels in
 * parallel (adamp::decide's serial loop would take milliseconds for an embedding's 50k
 * channels), then adamp::decide_reduced applies the same tests as on the CPU.
 */
template <int O>
__device__ void decide_tensor(const TensorArgs& T, BlockCtx& b, adamp::ChannelSums* red) {
  __shared__ double s_max[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const double e = adamp::cos_eps(b.h.eps);
  double mx = 0.0;
  adamp::ChannelSums tot;
  adamp::sums_zero(tot);
  for (int64_t c = threadIdx.x; c < T.channels; c += kThreads) {
    const adamp::ChannelSums s = fold_channel(T, c);
    T.chsum[c] = s;
    mx = max_nan(mx, adamp::abs_cos(s.gp, s.gg, s.pp, e));
    adamp::sums_add(tot, s);
  }
  warp_sum(tot);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = max_nan(mx, __shfl_down_sync(0xffffffffu, mx, o));
  if (lane == 0) {
    red[warp] = tot;
    s_max[warp] = mx;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    adamp::ChannelSums t = red[0];
    double m = s_max[0];
    for (int w = 1; w < kWarps; ++w) {
      adamp::sums_add(t, red[w]);
      m = max_nan(m, s_max[w]);
    }
    const adamp::DecisionResult r = adamp::decide_reduced(m, t, T.channels, T.numel, b.h.delta, b.h.wd_ratio, b.h.eps);
    TensorState* st = T.st;
    st->decision = r.code;
    st->ch_max = r.channel_max_cos;
    st->ch_thr = r.channel_threshold;
    st->l_cos = r.layer_cos;
    st->l_thr = r.layer_threshold;
    st->pp_total = r.totals.pp;
    st->layer = adamp::proj_coef(r.totals.pp, r.totals.pu, (float)b.h.eps);
    if (O == kAdamP) {
      st->wdf = adamp::adamp_wd_factor(b.h.lr, b.h.weight_decay, r.ratio);
      st->step = st->step + 1.0;
    } else {
      st->wdf = adamp::sgdp_wd_factor(b.h.lr, b.h.weight_decay, r.ratio, b.h.momentum);
    }
    b.decision = r.code;
  }
  __syncthreads();
  if (b.decision == adamp::kDecisionChannel) {
    const float epsf = (float)b.h.eps;
    // Each thread reads back only the channels it wrote above.
    for (int64_t c = threadIdx.x; c < T.channels; c += kThreads) {
      const adamp::ChannelSums s = T.chsum[c];
      T.coef[c] = adamp::proj_coef(s.pp, s.pu, epsf);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    T.st->p1_done = 0;
    atomicExch(&T.st->ready, 1);
  }
}

// ---------------------------------------------------------------------------------------------
// The kernel.

// Resident blocks per SM the register allocation aims at: 4 caps registers at 64 (a few spills
// on cold paths, 1024 threads per SM); 3 allows 85 (no spills, 768 threads). Measure on the GPU.
#ifndef ADAMP_CUDA_MIN_BLOCKS
#define ADAMP_CUDA_MIN_BLOCKS 4
#endif

template <int O>
__global__ void __launch_bounds__(kThreads, ADAMP_CUDA_MIN_BLOCKS) step_kernel(const __grid_constant__ LaunchArgs a) {
  __shared__ adamp::ChannelSums red[kThreads];
  __shared__ BlockCtx b;
  if (threadIdx.x == 0) b.h = *a.hp;

  for (;;) {
    if (threadIdx.x == 0) {
      const int item = (int)atomicAdd(a.queue, 1u);
      b.item_global = item;
      if (item < a.total_items) {
        int lo = 0, hi = a.n_entries - 1;  // first entry whose end exceeds item
        while (lo < hi) {
          const int mid = (lo + hi) >> 1;
          if (a.entry_end[mid] > item) hi = mid;
          else lo = mid + 1;
        }
        b.tensor = a.entry_tensor[lo];
        b.pass = a.entry_pass[lo];
        b.item = item - (lo > 0 ? a.entry_end[lo - 1] : 0);
        const TensorArgs& T = a.t[b.tensor];
        TensorState* st = T.st;
        if (b.pass == 0) {
          b.decision = adamp::kDecisionNone;
          b.wdf = __ldcg(&st->wdf1);
        } else {
          // Pass 2 waits for the decision; only items handed out before this one produce it.
          volatile int* ready = &st->ready;
          while (*ready == 0) __nanosleep(100);
          __threadfence();
          b.decision = __ldcg(&st->decision);
          b.wdf = __ldcg(&st->wdf);
          b.layer.div = __ldcg(&st->layer.div);
          b.layer.scale = __ldcg(&st->layer.scale);
        }
        {  // this step's constants, from prep_kernel
          if (O == kAdamP) {
            b.as.b1 = __ldcg(&st->as.b1);
            b.as.omb1 = __ldcg(&st->as.omb1);
            b.as.b2 = __ldcg(&st->as.b2);
            b.as.omb2 = __ldcg(&st->as.omb2);
            b.as.sqrt_bc2 = __ldcg(&st->as.sqrt_bc2);
            b.as.eps = __ldcg(&st->as.eps);
            b.as.neg_step = __ldcg(&st->as.neg_step);
            b.as.nesterov = __ldcg(&st->as.nesterov);
          } else {
            b.ss.mom = __ldcg(&st->ss.mom);
            b.ss.omd = __ldcg(&st->ss.omd);
            b.ss.neg_lr = __ldcg(&st->ss.neg_lr);
            b.ss.nesterov = __ldcg(&st->ss.nesterov);
          }
        }
      }
    }
    __syncthreads();
    if (b.item_global >= a.total_items) break;
    const TensorArgs& T = a.t[b.tensor];
    const int64_t k = b.item;

    if (T.mode == kModeSingle) single_item<O>(T, k, b, red);
    else if (T.mode == kModeSegment) {
      if (b.pass == 0) segment_item<O, 0>(T, k, b, red);
      else segment_item<O, 1>(T, k, b, red);
    } else {
      if (b.pass == 0) column_item<O, 0>(T, k, b, red);
      else column_item<O, 1>(T, k, b, red);
    }

    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence();  // this item's writes before the count that publishes them
      unsigned* done = b.pass == 0 ? &T.st->p1_done : &T.st->p2_done;
      const bool last = atomicAdd(done, 1u) == (unsigned)(T.n_items - 1);
      b.last = last ? 1 : 0;
      if (last) {
        __threadfence();
        if (b.pass == 1) {
          T.st->p2_done = 0;
          T.st->ready = 0;
        } else if (T.mode == kModeSingle) {
          if (O == kAdamP) T.st->step = T.st->step + 1.0;
          T.st->p1_done = 0;
        }
      }
    }
    __syncthreads();
    if (b.last && b.pass == 0 && T.mode != kModeSingle) decide_tensor<O>(T, b, red);
    __syncthreads();
  }

  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(a.queue + 1, 1u) == gridDim.x - 1) {
      a.queue[0] = 0;
      a.queue[1] = 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Small kernels.

struct InfoTensor {
  const TensorState* st;
  const double* info_part;
  int64_t n_items;
  int32_t mode;
  int32_t out;
};

constexpr int kMaxInfoTensors = 128;

struct InfoArgs {
  InfoTensor t[kMaxInfoTensors];
  double* out;  // ADAMP_CUDA_INFO_STRIDE doubles per tensor
};

/** The info record of one tensor per block, from the final pass's item partials (fixed order). */
__global__ void __launch_bounds__(kThreads) info_kernel(const __grid_constant__ InfoArgs a) {
  __shared__ adamp::ChannelSums red[kWarps];
  const InfoTensor& t = a.t[blockIdx.x];
  InfoSums s = {0.0, 0.0, 0.0};
  for (int64_t i = threadIdx.x; i < t.n_items; i += kThreads) {
    s.before += t.info_part[3 * i + 0];
    s.after += t.info_part[3 * i + 1];
    s.delta += t.info_part[3 * i + 2];
  }
  const InfoSums r = block_sum_info(s, red);
  if (threadIdx.x == 0) {
    double* o = a.out + (int64_t)t.out * adamp::kInfoStride;
    if (t.mode == kModeSingle) {
      adamp::write_info_not_eligible(o, r.before, r.after, r.delta);
    } else {
      adamp::DecisionResult d;
      d.code = t.st->decision;
      d.channel_max_cos = t.st->ch_max;
      d.channel_threshold = t.st->ch_thr;
      d.layer_cos = t.st->l_cos;
      d.layer_threshold = t.st->l_thr;
      d.totals.pp = t.st->pp_total;
      adamp::write_info(o, d, r.after, r.delta);
    }
  }
}

/**
 * Per-tensor constants of this step, one thread per tensor of the launch, before step_kernel:
 * computed once (two double pow per AdamP tensor) instead of once per item. Reads the step count
 * and the hyperparameters from device memory, so a captured graph replays correctly.
 */
template <int O>
__global__ void __launch_bounds__(kMaxTensors) prep_kernel(const __grid_constant__ LaunchArgs a) {
  const int t = threadIdx.x;
  if (t >= a.n_tensors) return;
  const Hyper h = *a.hp;
  TensorState* st = a.t[t].st;
  if (O == kAdamP) {
    st->as = adamp::make_adamp_scalars(h.lr, h.beta1, h.beta2, h.eps, st->step + 1.0, h.nesterov != 0);
    st->wdf1 = adamp::adamp_wd_factor(h.lr, h.weight_decay, 1.0);
  } else {
    st->ss = adamp::make_sgdp_scalars(h.lr, h.momentum, h.dampening, h.nesterov != 0);
    st->wdf1 = adamp::sgdp_wd_factor(h.lr, h.weight_decay, 1.0, h.momentum);
  }
}

__global__ void set_hyper_kernel(Hyper* dst, Hyper h) { *dst = h; }
__global__ void set_step_kernel(TensorState* st, double step) { st->step = step; }

}  // namespace adamp_cuda

#endif  // ADAMP_CUDA_STEP_KERNEL_CUH
