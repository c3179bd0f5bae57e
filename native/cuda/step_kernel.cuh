// The fused optimizer step: one persistent kernel per launch, a template on the element policy P
// (adamp/optim/policy.h), instantiated for every registered optimizer. Per tensor:
//   projecting P (P::kProjects: AdamP, SGDP), tensors with ndim > 1:
//     pass 1   P::update (the state, written back) + deterministic partial sums of g.p, g.g, p.p,
//              p.u per channel piece,
//     decide   by the block that finishes a tensor's last pass-1 item: fold the partials in a fixed
//              order, adamp::decide_reduced with P::decision_params, per-channel coefficients,
//              P::wd_factor of the decision's ratio,
//     pass 2   P::stored (the update again), projection, P::writes_back, P::apply; partial sums
//              of the info record;
//   otherwise one pass: P::update, P::apply with P::wd_factor(h, 1).
// Every element-wise operation comes from the policy and adamp/math.h, the headers the CPU core
// uses; this file only moves data and orders work.
//
// note: determinism. No floating-point atomics anywhere: every partial sum has one writer and
// fixed-order folds. The only atomics are integer counters (the work queue, "items finished"),
// and what they choose (which block decides) does not change any value.
//
// note: memory ordering between blocks. A block publishes with `__threadfence(); atomic` and a
// consumer reads the atomic (or spins on it with __ldcv), then `__threadfence()`, then the data
// with __ldcg (L2; a plain load may hit a line this SM's L1 cached before the producer wrote it).
// The CPU emulation maps exactly this pattern onto acquire/release for ThreadSanitizer.
#ifndef ADAMP_CUDA_STEP_KERNEL_CUH
#define ADAMP_CUDA_STEP_KERNEL_CUH

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "adamp/half.h"
#include "adamp/optim/registry.h"
#include "launch.cuh"

// note: parity with PyTorch needs IEEE float32 (denormals kept, no approximate division or
// square root). Host fast-math is caught here; nvcc 13 defines no macro for --use_fast_math or
// -ftz=true (checked with --dryrun), so prep_kernel also checks on the device that a denormal
// survives f_mul and traps otherwise.
#if defined(__FAST_MATH__) || (defined(__CUDA_FTZ) && __CUDA_FTZ)
#error "adamp's CUDA kernels must be built without fast math or flush-to-zero (parity with PyTorch needs IEEE float32)"
#endif

// How long a pass-2 item waits for its tensor's decision before the kernel traps with a message
// (a hang would otherwise cost the whole GPU session). In clock64() cycles: 2^36 is about 35 s at
// 2 GHz, far beyond any decision (the decider folds at most a few MB of partials).
#ifndef ADAMP_CUDA_SPIN_LIMIT_CYCLES
#define ADAMP_CUDA_SPIN_LIMIT_CYCLES (1ll << 36)
#endif

// ADAMP_CUDA_NOINLINE_ITEMS=1 compiles each item function (and the decider) as a call instead of
// inlining it into the kernel's loop. sm_90, MIN_BLOCKS 4 (64 registers): inlined, ptxas reports
// about 260 bytes of spills for the projecting policies (each variant's copy spills on its own;
// the AdamP/SGDP kernel before the spine change: 60-72 bytes); as calls, no spills but a 56-96
// byte call frame per item. Which is faster is for a GPU to say (scripts/gpu-validate-more.sh).
#if defined(ADAMP_CUDA_NOINLINE_ITEMS) && ADAMP_CUDA_NOINLINE_ITEMS
#define ADAMP_ITEM_FN __device__ __noinline__
#else
#define ADAMP_ITEM_FN __device__
#endif

namespace adamp_cuda {

struct InfoSums {
  double before, after, delta;
};

/** The mixed-precision form of a policy: the same element functions, 16-bit storage around them. */
template <class P>
struct Mixed : P {
  static constexpr bool kMixed = true;
};
template <class P, class = void>
struct IsMixed {
  static constexpr bool value = false;
};
template <class P>
struct IsMixed<P, decltype((void)P::kMixed)> {
  static constexpr bool value = P::kMixed;
};

/** What a block of the mixed kernel also knows: the tensor's master weights, its stochastic
    rounding key at this step, and the loss scale's inverse when `scaled` (empty for float32). */
template <bool M>
struct BlockMixed {};
template <>
struct BlockMixed<true> {
  float* master;
  uint32_t rkey;
  float inv;
  int scaled;
};

/** What one block knows about the item it works on (shared memory). */
template <class P>
struct BlockCtx : BlockMixed<IsMixed<P>::value> {
  typename P::Scalars s;
  adamp::ProjCoef layer;
  float wdf;
  int decision;
  int item_global;
  int tensor;
  int pass;
  int last;  // this block finished the tensor's last pass-1 item
  int norms;
  int64_t item;
  double cos_e;    // whole-channel pass-1 items: adamp::cos_eps of the decision's eps
  float coef_eps;  // and the eps of the projection coefficients (float32)
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

/** This step's P::Scalars, as prep_kernel stored them. */
template <class P>
__device__ __forceinline__ void load_scalars(typename P::Scalars& s, const TensorState* ts) {
  static_assert(sizeof(s) % 4 == 0 && sizeof(s) <= sizeof(ts->scalars), "P::Scalars must fit TensorState::scalars");
  uint32_t w[sizeof(s) / 4];
#pragma unroll
  for (int i = 0; i < (int)(sizeof(s) / 4); ++i) w[i] = __ldcg(&ts->scalars[i]);
  memcpy(&s, w, sizeof(s));
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

/**
 * The block's fold of every thread's (sums, max |cos|): warps reduce by shuffles, then thread 0
 * folds the warps in order; on return thread 0's `tot` and `mx` hold the block's (the other
 * threads' are partial). `red` and `s_max` are the caller's kWarps records and doubles of shared
 * memory (each caller its own s_max: one array shared by both callers made ptxas spill more, 420
 * bytes against 236 in the AdamP kernel, sm_90). The barrier before thread 0's fold is the only one.
 */
__device__ __forceinline__ void block_fold(adamp::ChannelSums& tot, double& mx, adamp::ChannelSums* red, double* s_max) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  warp_sum(tot);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = max_nan(mx, __shfl_down_sync(0xffffffffu, mx, o));
  if (lane == 0) {
    red[warp] = tot;
    s_max[warp] = mx;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    tot = red[0];
    mx = s_max[0];
    for (int w = 1; w < kWarps; ++w) {
      adamp::sums_add(tot, red[w]);
      mx = max_nan(mx, s_max[w]);
    }
  }
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

/** An item's info partials (thread 0 writes; every thread of the block calls it, or none). */
__device__ __forceinline__ void write_info_part(const TensorArgs& T, int64_t k, const InfoSums& acc, adamp::ChannelSums* red) {
  const InfoSums r = block_sum_info(acc, red);
  if (threadIdx.x == 0) {
    T.info_part[3 * k + 0] = r.before;
    T.info_part[3 * k + 1] = r.after;
    T.info_part[3 * k + 2] = r.delta;
  }
}

// ---------------------------------------------------------------------------------------------
// Groups of four elements at an index multiple of 4: one 128-bit access when the group is
// whole and the buffers are aligned, else element by element in [lo, hi).

/** The three load paths: plain; read-only for the whole kernel (the gradient: the non-coherent
 * path, __ldg); written earlier in this launch, possibly by another block (pass 2: the L2 through
 * __ldcg, never a stale L1 line). */
enum class Ld { Plain, ReadOnly, L2 };

template <Ld L, class T>
__device__ __forceinline__ T ld(const T* p) {
  if constexpr (L == Ld::ReadOnly)
    return __ldg(p);
  else if constexpr (L == Ld::L2)
    return __ldcg(p);
  else
    return *p;
}

template <Ld L = Ld::Plain>
__device__ __forceinline__ void load4(const float* a, int64_t base, int lo, int hi, bool full, float (&x)[4]) {
  if (full) {
    const float4 t = ld<L>(reinterpret_cast<const float4*>(a + base));
    x[0] = t.x;
    x[1] = t.y;
    x[2] = t.z;
    x[3] = t.w;
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) x[j] = (j >= lo && j < hi) ? ld<L>(a + base + j) : 0.0f;
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

// ---------------------------------------------------------------------------------------------
// 16-bit storage (the mixed kernel): the conversions of lib/core/half.ts, bit for bit. Widening is
// exact; narrowing rounds once to nearest even (bfloat16 NaN -> 0x7fc0, float16 NaN -> sign|0x7e00),
// or for bfloat16 stochastically with the hash of float32ToBf16Stochastic.

// The conversions and the rounding hash: native/include/adamp/half.h, shared with the CPU core.
using adamp::half::bf16_rne;
using adamp::half::bf16_stochastic;
using adamp::half::bits_f32;
using adamp::half::f16_rne;
using adamp::half::f16_widen;
using adamp::half::f32_bits;
using adamp::half::fmix32;
using adamp::half::rounding_key;

ADAMP_HD inline float widen16(uint32_t h, int dt) { return dt == kBF16 ? bits_f32(h << 16) : f16_widen(h); }

ADAMP_HD inline bool nonfinite16(uint32_t h, int dt) { return dt == kBF16 ? (h & 0x7f80u) == 0x7f80u : (h & 0x7c00u) == 0x7c00u; }

/** Four 16-bit elements widened: one 64-bit access when whole and aligned. */
__device__ __forceinline__ void load4_16(const uint16_t* a, int64_t base, int lo, int hi, bool full, int dt, bool ro, float (&x)[4]) {
  uint32_t h[4];
  if (full) {
    const uint2* q = reinterpret_cast<const uint2*>(a + base);
    const uint2 t = ro ? __ldg(q) : *q;
    h[0] = t.x & 0xffffu;
    h[1] = t.x >> 16;
    h[2] = t.y & 0xffffu;
    h[3] = t.y >> 16;
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) h[j] = (j >= lo && j < hi) ? (uint32_t)(ro ? __ldg(a + base + j) : a[base + j]) : 0u;
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) x[j] = widen16(h[j], dt);
}

__device__ __forceinline__ void store4_16(uint16_t* a, int64_t base, int lo, int hi, bool full, const uint32_t (&h)[4]) {
  if (full) {
    uint2 t;
    t.x = h[0] | (h[1] << 16);
    t.y = h[2] | (h[3] << 16);
    *reinterpret_cast<uint2*>(a + base) = t;
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j >= lo && j < hi) a[base + j] = (uint16_t)h[j];
  }
}

// The param and gradient accesses of the element groups. The float32 kernel (P not Mixed) compiles
// exactly the float32 loads and stores; the mixed kernel branches once per group on the tensor's
// storage (uniform across the block).

/** p (pass 1 / the one pass: plain; pass 2: `cg`, written earlier in this launch). */
template <class P>
__device__ __forceinline__ void load_p(const TensorArgs& T, const BlockCtx<P>& b, int64_t base, int lo, int hi, bool full, bool cg,
                                       float (&x)[4]) {
  if constexpr (IsMixed<P>::value) {
    const int dt = store_p(T.storage);
    if (dt != kF32) {
      if (T.storage & kStoreMaster) {
        if (cg) load4<Ld::L2>(b.master, base, lo, hi, full, x);
        else load4(b.master, base, lo, hi, full, x);
      } else {
        // without master weights the 16-bit param is only written by this element's last pass
        load4_16(reinterpret_cast<const uint16_t*>(T.p), base, lo, hi, full, dt, false, x);
      }
      return;
    }
  }
  if (cg) load4<Ld::L2>(T.p, base, lo, hi, full, x);
  else load4(T.p, base, lo, hi, full, x);
}

/** g, widened, times the loss scale's inverse when scaled: f32(f32(g) * inv). */
template <class P>
__device__ __forceinline__ void load_g(const TensorArgs& T, const BlockCtx<P>& b, int64_t base, int lo, int hi, bool full, float (&x)[4]) {
  if constexpr (IsMixed<P>::value) {
    const int dt = store_g(T.storage);
    if (dt != kF32) load4_16(reinterpret_cast<const uint16_t*>(T.g), base, lo, hi, full, dt, true, x);
    else load4<Ld::ReadOnly>(T.g, base, lo, hi, full, x);
    if (b.scaled) {
#pragma unroll
      for (int j = 0; j < 4; ++j) x[j] = adamp::f_mul(x[j], b.inv);
    }
    return;
  }
  load4<Ld::ReadOnly>(T.g, base, lo, hi, full, x);
}

/** The stepped param: float32, or the master (float32) and the 16-bit param rounded from it. */
template <class P>
__device__ __forceinline__ void store_p_(const TensorArgs& T, const BlockCtx<P>& b, int64_t base, int lo, int hi, bool full,
                                         const float (&x)[4]) {
  if constexpr (IsMixed<P>::value) {
    const int dt = store_p(T.storage);
    if (dt != kF32) {
      if (T.storage & kStoreMaster) store4(b.master, base, lo, hi, full, x);
      const bool stoch = (T.storage & kStoreStochastic) != 0;
      uint32_t h[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const uint32_t v = f32_bits(x[j]);
        h[j] = dt == kF16 ? f16_rne(v) : stoch ? bf16_stochastic(v, b.rkey, (uint32_t)(base + j)) : bf16_rne(v);
      }
      store4_16(reinterpret_cast<uint16_t*>(T.p), base, lo, hi, full, h);
      return;
    }
  }
  store4(T.p, base, lo, hi, full, x);
}

__device__ __forceinline__ void add_info(InfoSums& acc, float p0, float p1) {
  const double a = p0, b = p1;
  acc.before += a * a;
  acc.after += b * b;
  acc.delta += (b - a) * (b - a);
}

// ---------------------------------------------------------------------------------------------
// Element groups of each pass: data movement around the policy's element functions.

/**
 * The element loop of every group: loads p, g (when `with_g`; else zeros) and the state (through
 * the L2 only when `pass2`: pass 1 wrote it), then runs f(p[j], g[j], e) on each element in
 * [lo, hi) with e the element's state, which f may change; the caller stores what it changed.
 */
template <class P, class F>
__device__ __forceinline__ void group_elements(const TensorArgs& T, int64_t base, int lo, int hi, bool full, const BlockCtx<P>& b,
                                               bool pass2, bool with_g, float (&p)[4], float (&st)[P::kSlots][4], F&& f) {
  float g[4];
  load_p<P>(T, b, base, lo, hi, full, pass2, p);
  if (with_g) {
    load_g<P>(T, b, base, lo, hi, full, g);
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) g[j] = 0.0f;
  }
#pragma unroll
  for (int k = 0; k < P::kSlots; ++k) {
    if (pass2)
      load4<Ld::L2>(T.st[k], base, lo, hi, full, st[k]);
    else
      load4(T.st[k], base, lo, hi, full, st[k]);
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (j >= lo && j < hi) {
      float e[P::kSlots];
#pragma unroll
      for (int k = 0; k < P::kSlots; ++k) e[k] = st[k][j];
      f(p[j], g[j], e);
#pragma unroll
      for (int k = 0; k < P::kSlots; ++k) st[k][j] = e[k];
    }
  }
}

template <class P>
__device__ __forceinline__ void store_state(const TensorArgs& T, int64_t base, int lo, int hi, bool full, float (&st)[P::kSlots][4]) {
#pragma unroll
  for (int k = 0; k < P::kSlots; ++k) store4(T.st[k], base, lo, hi, full, st[k]);
}

/** The one pass: P::update then P::apply; the state written back. */
template <class P, int V>
__device__ __forceinline__ void single_group(const TensorArgs& T, int64_t base, int lo, int hi, bool full,
                                             const BlockCtx<P>& b, InfoSums& acc) {
  float p[4], st[P::kSlots][4];
  group_elements<P>(T, base, lo, hi, full, b, false, true, p, st, [&](float& pj, float gj, float (&e)[P::kSlots]) {
    const float p1 = P::apply(pj, P::template update<V>(gj, pj, e, b.s), b.wdf, b.s);
    if (b.norms) add_info(acc, pj, p1);
    pj = p1;
  });
  store_state<P>(T, base, lo, hi, full, st);
  store_p_<P>(T, b, base, lo, hi, full, p);
}

/** Pass 1: P::update (the state written back) and the four per-channel products. */
template <class P, int V>
__device__ __forceinline__ void pass1_group(const TensorArgs& T, int64_t base, int lo, int hi, bool full,
                                            const BlockCtx<P>& b, adamp::ChannelSums& acc) {
  float p[4], st[P::kSlots][4];
  group_elements<P>(T, base, lo, hi, full, b, false, true, p, st, [&](float& pj, float gj, float (&e)[P::kSlots]) {
    adamp::sums_accumulate(acc, gj, pj, P::template update<V>(gj, pj, e, b.s));
  });
  store_state<P>(T, base, lo, hi, full, st);
}

/** Pass 2: P::stored from the state pass 1 wrote, projected with (div, scale) when `proj`, then P::apply. */
template <class P, int V>
__device__ __forceinline__ void pass2_group(const TensorArgs& T, int64_t base, int lo, int hi, bool full,
                                            const BlockCtx<P>& b, bool proj, adamp::ProjCoef kc, InfoSums& acc) {
  float p[4], st[P::kSlots][4];
  group_elements<P>(T, base, lo, hi, full, b, true, P::stored_reads_g(V), p, st, [&](float& pj, float gj, float (&e)[P::kSlots]) {
    float u = P::template stored<V>(gj, e, b.s);
    if (proj) u = adamp::project(u, pj, kc.div, kc.scale);
    if (P::writes_back(V)) e[0] = u;
    const float p1 = P::apply(pj, u, b.wdf, b.s);
    if (b.norms) add_info(acc, pj, p1);
    pj = p1;
  });
  // note: a policy that writes back (SGDP without Nesterov: the official `d` IS the momentum
  // buffer and the projection runs in place on it) stores the projected update into slot 0.
  if (P::writes_back(V) && proj) store4(T.st[0], base, lo, hi, full, st[0]);
  store_p_<P>(T, b, base, lo, hi, full, p);
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

template <class P, int V>
ADAMP_ITEM_FN void single_item(const TensorArgs& T, int64_t k, const BlockCtx<P>& b, adamp::ChannelSums* red) {
  const int64_t s0 = k * T.chunk;
  const int64_t s1 = s0 + T.chunk < T.numel ? s0 + T.chunk : T.numel;
  InfoSums acc = {0.0, 0.0, 0.0};
  for_groups(s0, s1, threadIdx.x, kThreads, T.vec != 0,
             [&](int64_t base, int lo, int hi, bool full) { single_group<P, V>(T, base, lo, hi, full, b, acc); });
  if (b.norms) write_info_part(T, k, acc, red);
}

/**
 * A whole-channel item's share of the decision (T.whole), after its last round's barrier: every
 * channel of the item has its sums in T.part; each thread takes channels in a stride, writes
 * their projection coefficients and reduces their |cos| and sums; the block folds warps in order
 * into the item's record. The per-channel operations are decide_tensor's serial path (0 + the
 * channel's sums, abs_cos, proj_coef), outside the element loop's registers.
 */
template <class P>
__device__ __forceinline__ void whole_item_record(const TensorArgs& T, int64_t k, int64_t seg0, int64_t npieces, const BlockCtx<P>& b,
                                                  adamp::ChannelSums* red) {
  __shared__ double s_max[kWarps];
  double mx = 0.0;
  adamp::ChannelSums tot;
  adamp::sums_zero(tot);
  for (int64_t i = threadIdx.x; i < npieces; i += kThreads) {
    adamp::ChannelSums f;
    adamp::sums_zero(f);
    adamp::sums_add(f, ldcg_sums(T.part + seg0 + i));
    T.coef[seg0 + i] = adamp::proj_coef(f.pp, f.pu, b.coef_eps);
    mx = max_nan(mx, adamp::abs_cos(f.gp, f.gg, f.pp, b.cos_e));
    adamp::sums_add(tot, f);
  }
  block_fold(tot, mx, red, s_max);
  if (threadIdx.x == 0) {
    ItemSums r;
    r.s = tot;
    r.max_cos = mx;
    r.pad = 0.0;
    item_records(T)[k] = r;
  }
  __syncthreads();
}

/** Segment mode: the item's pieces (whole rows, or one piece of a long row) go to teams of warps. */
template <class P, int V, int Pass>
ADAMP_ITEM_FN void segment_item(const TensorArgs& T, int64_t k, const BlockCtx<P>& b, adamp::ChannelSums* red) {
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
                   [&](int64_t base, int lo, int hi, bool full) { pass1_group<P, V>(T, base, lo, hi, full, b, acc); });
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
        pass2_group<P, V>(T, base, lo, hi, full, b, proj, kc, info);
      });
    }
  }
  if (Pass == 0 && T.whole) whole_item_record(T, k, seg0, npieces, b, red);
  if (Pass == 1 && b.norms) write_info_part(T, k, info, red);
}

/** Column mode: a tile of rows x columns; each thread owns one column (one channel) of it. */
template <class P, int V, int Pass>
ADAMP_ITEM_FN void column_item(const TensorArgs& T, int64_t k, const BlockCtx<P>& b, adamp::ChannelSums* red) {
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
      for (int64_t r = r0 + lr; r < r1; r += T.rp) pass1_group<P, V>(T, r * T.width + col, 0, 1, false, b, acc);
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
      for (int64_t r = r0 + lr; r < r1; r += T.rp) pass2_group<P, V>(T, r * T.width + col, 0, 1, false, b, proj, kc, info);
    }
    if (b.norms) write_info_part(T, k, info, red);
  }
}

/** One item of any mode; every thread of the block calls it. */
template <class P, int V>
__device__ __forceinline__ void run_item(const TensorArgs& T, int64_t k, int pass, const BlockCtx<P>& b, adamp::ChannelSums* red) {
  if (T.mode == kModeSingle) {
    single_item<P, V>(T, k, b, red);
    return;
  }
  if constexpr (P::kProjects) {
    if (T.mode == kModeSegment) {
      if (pass == 0) segment_item<P, V, 0>(T, k, b, red);
      else segment_item<P, V, 1>(T, k, b, red);
    } else {
      if (pass == 0) column_item<P, V, 0>(T, k, b, red);
      else column_item<P, V, 1>(T, k, b, red);
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
 * The decision of one tensor: the block reduces max |cos| and the totals in parallel, then
 * adamp::decide_reduced applies the same tests as on the CPU. When the tensor's items hold whole
 * channels (T.whole) pass 1 already computed each channel's |cos| and coefficients, and the block
 * folds one record per item (GPT-2's wte: 5,026 records instead of 50,257 channels and their
 * coefficients); otherwise it folds every channel from its pieces (adamp::decide's serial loop
 * would take milliseconds for an embedding).
 */
template <class P>
ADAMP_ITEM_FN void decide_tensor(const TensorArgs& T, const typename P::Hyper& h, BlockCtx<P>& b, adamp::ChannelSums* red) {
  __shared__ double s_max[kWarps];
  const adamp::DecisionParams dp = P::decision_params(h);
  const double e = adamp::cos_eps(dp.eps);
  double mx = 0.0;
  adamp::ChannelSums tot;
  adamp::sums_zero(tot);
  if (T.whole) {
    // The items did the per-channel work (|cos|, coefficients): fold their records.
    const ItemSums* ip = item_records(T);
    for (int64_t i = threadIdx.x; i < T.n_items; i += kThreads) {
      mx = max_nan(mx, __ldcg(&ip[i].max_cos));
      adamp::sums_add(tot, ldcg_sums(&ip[i].s));
    }
  } else {
    for (int64_t c = threadIdx.x; c < T.channels; c += kThreads) {
      const adamp::ChannelSums s = fold_channel(T, c);
      T.chsum[c] = s;
      mx = max_nan(mx, adamp::abs_cos(s.gp, s.gg, s.pp, e));
      adamp::sums_add(tot, s);
    }
  }
  block_fold(tot, mx, red, s_max);
  if (threadIdx.x == 0) {
    const adamp::DecisionResult r = adamp::decide_reduced(mx, tot, T.channels, T.numel, dp.delta, dp.wd_ratio, dp.eps);
    TensorState* ts = T.ts;
    ts->decision = r.code;
    ts->ch_max = r.channel_max_cos;
    ts->ch_thr = r.channel_threshold;
    ts->l_cos = r.layer_cos;
    ts->l_thr = r.layer_threshold;
    ts->pp_total = r.totals.pp;
    ts->layer = adamp::proj_coef(r.totals.pp, r.totals.pu, (float)dp.eps);
    ts->wdf = P::wd_factor(h, r.ratio);
    b.decision = r.code;
  }
  __syncthreads();
  if (b.decision == adamp::kDecisionChannel && !T.whole) {
    const float epsf = (float)dp.eps;
    // Each thread reads back only the channels it wrote above.
    for (int64_t c = threadIdx.x; c < T.channels; c += kThreads) {
      const adamp::ChannelSums s = T.chsum[c];
      T.coef[c] = adamp::proj_coef(s.pp, s.pu, epsf);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();  // the decision and the coefficients before the flag that publishes them
    atomicExch(&T.ts->ready, 1);
  }
}

// ---------------------------------------------------------------------------------------------
// The kernel.

// Resident blocks per SM the register allocation aims at: 4 caps registers at 64 (a few spills
// on cold paths, 1024 threads per SM); 3 allows 85 (no spills, 768 threads). Measure on the GPU
// (scripts/gpu-validate-more.sh builds the variants).
#ifndef ADAMP_CUDA_MIN_BLOCKS
#define ADAMP_CUDA_MIN_BLOCKS 4
#endif

/** Pass 2's wait for the decision of tensor `tensor`: bounded, so a lost decision traps instead of hanging. */
__device__ __forceinline__ void wait_ready(const TensorState* ts, int tensor, int item) {
  unsigned ns = 32;
  long long t0 = 0;
  for (unsigned it = 0; __ldcv(&ts->ready) == 0; ++it) {
    __nanosleep(ns);
    if (ns < 1024) ns <<= 1;
    if ((it & 255) == 255) {
      const long long now = clock64();
      if (t0 == 0) {
        t0 = now;
      } else if (now - t0 > (long long)ADAMP_CUDA_SPIN_LIMIT_CYCLES) {
        printf("adamp CUDA step: block %d waited %lld cycles for the decision of tensor %d (queue item %d); "
               "the kernel's hand-off is broken: trapping\n",
               (int)blockIdx.x, (long long)(now - t0), tensor, item);
        __trap();
      }
    }
  }
  __threadfence();  // the decision after the flag that said it is there
}

template <class P>
__global__ void __launch_bounds__(kThreads, ADAMP_CUDA_MIN_BLOCKS) step_kernel(const __grid_constant__ LaunchArgs a) {
  __shared__ adamp::ChannelSums red[kThreads];
  __shared__ BlockCtx<P> b;
  const typename P::Hyper& h = *static_cast<const typename P::Hyper*>(a.hp);
  if constexpr (IsMixed<P>::value) {
    // A loss-scaled step that found an Infinity/NaN gradient changes nothing (prep_kernel kept the step counts).
    if (a.found_inf != nullptr && __ldcg(a.found_inf) != 0) return;
  }

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
        // note: pass 2 walks a tensor's items last to first: the lines pass 1 touched last are the
        // likeliest still in L2 (a tensor a little larger than L2 still hits on its tail instead of
        // evicting it while reading the head). Results do not depend on the order.
        if (b.pass == 1) b.item = a.t[b.tensor].n_items - 1 - b.item;
        b.norms = a.norms;
        const TensorState* ts = a.t[b.tensor].ts;
        if (b.pass == 0) {
          b.decision = P::kProjects ? adamp::kDecisionNone : adamp::kDecisionNotApplicable;
          b.wdf = __ldcg(&ts->wdf1);
          if constexpr (P::kProjects) {
            if (a.t[b.tensor].whole) {
              const adamp::DecisionParams dp = P::decision_params(h);
              b.cos_e = adamp::cos_eps(dp.eps);
              b.coef_eps = (float)dp.eps;
            }
          }
        } else {
          // Pass 2 waits for the decision; only items handed out before this one produce it.
          wait_ready(ts, b.tensor, item);
          b.decision = __ldcg(&ts->decision);
          b.wdf = __ldcg(&ts->wdf);
          b.layer.div = __ldcg(&ts->layer.div);
          b.layer.scale = __ldcg(&ts->layer.scale);
        }
        load_scalars<P>(b.s, ts);
        if constexpr (IsMixed<P>::value) {
          b.master = ts->master;  // set by set_storage_kernel, an earlier launch
          b.rkey = rounding_key(__ldcg(&ts->seed), (uint32_t)(uint64_t)__ldcg(&ts->step), __ldcg(&ts->index));
          b.scaled = a.scale != nullptr;
          b.inv = a.scale != nullptr ? (float)(1.0 / (double)__ldcg(a.scale)) : 1.0f;
        }
      }
    }
    __syncthreads();
    if (b.item_global >= a.total_items) break;
    const TensorArgs& T = a.t[b.tensor];
    const int64_t k = b.item;
    const int pass = b.pass;
    adamp::with_variant<P>(b.s.variant, [&](auto tag) { run_item<P, decltype(tag)::value>(T, k, pass, b, red); });

    if (T.mode != kModeSingle && pass == 0) {  // the last pass-1 item of a tensor decides
      __syncthreads();
      if (threadIdx.x == 0) {
        __threadfence();  // this item's partials before the count that publishes them
        const bool last = atomicAdd(&T.ts->p1_done, 1u) == (unsigned)(T.n_items - 1);
        if (last) __threadfence();  // every other item's partials after the count that said so
        b.last = last ? 1 : 0;
      }
      __syncthreads();
      if constexpr (P::kProjects) {
        if (b.last) decide_tensor<P>(T, h, b, red);
      }
    }
    __syncthreads();
  }

  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(a.queue + 1, 1u) == gridDim.x - 1) {  // the last block out resets the queue
      __threadfence();
      atomicExch(a.queue, 0u);
      atomicExch(a.queue + 1, 0u);
      __threadfence();  // the reset before anything a later kernel on another stream does
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Small kernels.

/**
 * Per-tensor constants of this step, one thread per tensor of the launch, before step_kernel:
 * computed once (P::scalars: two double pow for Adam) instead of once per item. Reads the step
 * count and the hyperparameters from device memory and resets every counter of the launch.
 */
template <class P>
__global__ void __launch_bounds__(kMaxTensors) prep_kernel(const __grid_constant__ LaunchArgs a) {
  const int t = threadIdx.x;
  if (t == 0) {
    a.queue[0] = 0;
    a.queue[1] = 0;
    if (adamp::f_mul(a.denormal, 1.0f) == 0.0f) {
      printf("adamp CUDA step: these kernels were compiled to flush denormals to zero (-ftz=true or --use_fast_math); "
             "parity with PyTorch needs IEEE float32: rebuild without them. Trapping.\n");
      __trap();
    }
  }
  if (t >= a.n_tensors) return;
  TensorState* ts = a.t[t].ts;
  if constexpr (IsMixed<P>::value) {
    ts->skipped = a.found_inf != nullptr && *a.found_inf != 0;
    if (ts->skipped) return;  // the skip: the step count stays (step_kernel returns at once)
  }
  const typename P::Hyper h = *static_cast<const typename P::Hyper*>(a.hp);
  const double step = ts->step + 1.0;
  ts->step = step;
  const typename P::Scalars s = P::scalars(h, step);
  memcpy(ts->scalars, &s, sizeof(s));
  ts->wdf1 = P::wd_factor(h, 1.0);
  ts->p1_done = 0;
  ts->ready = 0;
  ts->norms = a.norms;
}

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
  double* out;       // ADAMP_CUDA_INFO_STRIDE doubles per tensor
  int32_t projects;  // the context's policy projects (single-mode tensors are 'not eligible', else 'not applicable')
};

/** The info record of one tensor per block, from the final pass's item partials (fixed order). */
__global__ void __launch_bounds__(kThreads) info_kernel(const __grid_constant__ InfoArgs a) {
  __shared__ adamp::ChannelSums red[kWarps];
  const InfoTensor& t = a.t[blockIdx.x];
  const bool norms = t.st->norms != 0;
  InfoSums s = {0.0, 0.0, 0.0};
  if (norms) {
    for (int64_t i = threadIdx.x; i < t.n_items; i += kThreads) {
      s.before += t.info_part[3 * i + 0];
      s.after += t.info_part[3 * i + 1];
      s.delta += t.info_part[3 * i + 2];
    }
  }
  InfoSums r = block_sum_info(s, red);
  if (threadIdx.x == 0) {
    if (!norms) r.before = r.after = r.delta = (double)NAN;
    double* o = a.out + (int64_t)t.out * adamp::kInfoStride;
    if (t.mode != kModeSingle) {
      adamp::DecisionResult d;
      d.code = t.st->decision;
      d.channel_max_cos = t.st->ch_max;
      d.channel_threshold = t.st->ch_thr;
      d.layer_cos = t.st->l_cos;
      d.layer_threshold = t.st->l_thr;
      d.totals.pp = t.st->pp_total;  // free with the decision, norms or not
      adamp::write_info(o, d, r.after, r.delta);
    } else {
      adamp::write_info_not_eligible(o, r.before, r.after, r.delta);
      if (!a.projects) o[adamp::kInfoDecision] = (double)adamp::kDecisionNotApplicable;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Mixed precision and loss scaling on the device.

/** The gradients check_kernel reads: each in its storage type. */
struct CheckTensor {
  const void* g;
  int64_t numel;
  int32_t dt;
  int32_t pad;
};
struct CheckArgs {
  CheckTensor t[kMaxTensors];
  int32_t n;
  int* found;  // set to 1 when a gradient holds an Infinity or a NaN (zeroed before the first check of a step)
};

/**
 * The non-finite check of a loss-scaled step (PyTorch's _amp_foreach_non_finite_check_and_unscale_
 * without the in-place unscale: the step kernel multiplies as it reads). Grid-stride over every
 * tensor; a thread that sees Infinity/NaN writes 1 (any writer, same value: no order matters).
 */
__global__ void __launch_bounds__(kThreads) check_kernel(const __grid_constant__ CheckArgs a) {
  const int64_t stride = (int64_t)gridDim.x * kThreads;
  bool bad = false;
  for (int k = 0; k < a.n && !bad; ++k) {
    const CheckTensor& c = a.t[k];
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < c.numel && !bad; i += stride) {
      if (c.dt == kF32) bad = (__ldg(static_cast<const uint32_t*>(c.g) + i) & 0x7f800000u) == 0x7f800000u;
      else bad = nonfinite16(__ldg(static_cast<const uint16_t*>(c.g) + i), c.dt);
    }
  }
  if (bad) atomicExch(a.found, 1);
}

/** A float32 gradient unscale_kernel multiplies in place: contiguous (ndim 0), or strided over `shape`. */
constexpr int kUnscaleDims = 8;  // ADAMP_CUDA_MAX_DIMS
struct UnscaleTensor {
  float* g;
  int64_t numel;
  int32_t ndim;  // 0: g[0 .. numel); else element i at the row-major multi-index of `shape`, times `stride`
  int32_t pad;
  int64_t shape[kUnscaleDims];
  int64_t stride[kUnscaleDims];
};
constexpr int kMaxUnscaleTensors = 64;  // 152 bytes each: about 9.5 KB of kernel parameters
struct UnscaleArgs {
  UnscaleTensor t[kMaxUnscaleTensors];
  int32_t n;
  const float* scale;  // the GradScaler's float32 scale (ScalerState::scale)
  int* found;          // set to 1 when a gradient holds an Infinity or a NaN
};

__device__ __forceinline__ int64_t unscale_offset(const UnscaleTensor& c, int64_t i) {
  if (c.ndim == 0) return i;
  int64_t off = 0;
  for (int d = c.ndim - 1; d >= 0; --d) {
    const int64_t k = i % c.shape[d];
    i /= c.shape[d];
    off += k * c.stride[d];
  }
  return off;
}

/**
 * PyTorch's _amp_foreach_non_finite_check_and_unscale_ on float32 gradients (GradScaler.unscale):
 * every element checked before the product (Infinity/NaN: 1 into *found, any writer, one value),
 * then multiplied in place by f32(1 / scale), the inverse step_kernel's mixed blocks compute
 * (b.inv), so an unscale followed by a step reads what the fused step reads. Grid-stride over
 * every tensor; no element is visited twice (strided views do not overlap).
 */
__global__ void __launch_bounds__(kThreads) unscale_kernel(const __grid_constant__ UnscaleArgs a) {
  const float inv = (float)(1.0 / (double)__ldg(a.scale));
  const int64_t stride = (int64_t)gridDim.x * kThreads;
  bool bad = false;
  for (int k = 0; k < a.n; ++k) {
    const UnscaleTensor& c = a.t[k];
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < c.numel; i += stride) {
      float* q = c.g + unscale_offset(c, i);
      const float v = *q;
      bad = bad || (f32_bits(v) & 0x7f800000u) == 0x7f800000u;
      *q = adamp::f_mul(v, inv);
    }
  }
  if (bad) atomicExch(a.found, 1);
}

/** Device state of a GradScaler (lib/amp/grad-scaler.ts, device mode). */
struct ScalerState {
  float scale;
  int32_t pad;
  int64_t tracker;  // growth tracker: clean steps in a row
  int found[kScalerSlots];  // per optimizer: the last loss-scaled step's check (check_kernel, or unscale_kernel)
};

/**
 * torch._amp_update_scale_ on the device, one thread: found = host_found or any found[k] of
 * `mask`; then back off (scale * backoff, tracker 0), or count a clean step and grow after
 * `interval` of them (kept only if finite). Products in double rounded to float32, as the host
 * GradScaler's Math.fround(scale * factor).
 */
__global__ void scaler_update_kernel(ScalerState* s, unsigned mask, int host_found, double growth, double backoff, int64_t interval) {
  bool found = host_found != 0;
  for (int k = 0; k < kScalerSlots; ++k)
    if ((mask >> k) & 1u) found = found || s->found[k] != 0;
  if (found) {
    s->scale = (float)((double)s->scale * backoff);
    s->tracker = 0;
  } else {
    const int64_t successful = s->tracker + 1;
    if (successful == interval) {
      const float grown = (float)((double)s->scale * growth);
      if ((f32_bits(grown) & 0x7f800000u) != 0x7f800000u) s->scale = grown;
      s->tracker = 0;
    } else {
      s->tracker = successful;
    }
  }
}

/** A tensor's master weights, seed and index (adamp_cuda_set_storage). */
__global__ void set_storage_kernel(TensorState* st, float* master, uint32_t seed, uint32_t index) {
  st->master = master;
  st->seed = seed;
  st->index = index;
}

/** master[i] = the 16-bit param widened (the first step's master weights). */
__global__ void widen_kernel(float* dst, const uint16_t* src, int64_t n, int dt) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) dst[i] = widen16(src[i], dt);
}

template <class P>
__global__ void set_hyper_kernel(typename P::Hyper* dst, typename P::Hyper h) {
  *dst = h;
}
__global__ void set_step_kernel(TensorState* st, double step) { st->step = step; }

}  // namespace adamp_cuda

#endif  // ADAMP_CUDA_STEP_KERNEL_CUH
