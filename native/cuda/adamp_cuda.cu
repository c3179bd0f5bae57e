// Host side of the CUDA step: the registry's kinds, contexts, device buffers, the launch schedule.
//
// The schedule (one step of a group): tensors are taken in the caller's order and cut into
// groups of about `config.group` elements. A launch holds whole groups (at most kMaxTensors
// tensors) and hands out items in this order:
//     P1(g0) P1(g1) .. P1(g_lag) P2(g0) P1(g_lag+1) P2(g1) ... P2(g_last)
// so a tensor's pass 2 runs about `lag` groups after its pass 1, while its p and state (and g)
// are still in L2 when a group fits there (H100/H200: 50 MB; native/cuda/README.md has the bytes and bounds), and late
// enough that its decision is normally ready. Optimizers without a projection have no pass 2.
// Nothing here waits for the device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "adamp_cuda.h"
#include "device_memory.h"
#include "runtime.h"
#include "step_kernel.cuh"

using namespace adamp_cuda;

namespace adamp_cuda {

constexpr int kDefaultChunk = 8192;
constexpr int64_t kDefaultGroup = int64_t(1) << 20;
constexpr int kDefaultLag = 1;

// ADAMP_CUDA_WHOLE_CHANNEL_ITEMS=0 turns off the parallel decision of tensors whose items hold
// whole channels (TensorArgs::whole): the decider then folds every channel itself, as before.
// A build knob for measuring one against the other (scripts/gpu-validate-more.sh); results are
// bitwise the same for any grid either way (the fold orders differ, so the two may differ from
// each other in the last bits of a layer-view sum).
#ifndef ADAMP_CUDA_WHOLE_CHANNEL_ITEMS
#define ADAMP_CUDA_WHOLE_CHANNEL_ITEMS 1
#endif

/** What the host needs of one registered policy: its facts and its kernels' launches. */
struct KindOps {
  const char* name;
  int slots;
  int nhyper;
  bool projects;
  const char* (*hyper_name)(int);
  const char* (*check)(const double* hyper, int* field);
  int (*occupancy)(int* blocks_per_sm);
  int (*set_hyper)(void* dst, const double* hyper, cudaStream_t stream);
  int (*prep)(const LaunchArgs& a, cudaStream_t stream);
  int (*step)(const LaunchArgs& a, unsigned grid, cudaStream_t stream);
  // The mixed-precision kernels (step_kernel<Mixed<P>>): 16-bit storage, loss scaling on the device.
  int (*prep_mixed)(const LaunchArgs& a, cudaStream_t stream);
  int (*step_mixed)(const LaunchArgs& a, unsigned grid, cudaStream_t stream);
};

template <class P>
struct Kind {
  static_assert(P::kSlots >= 1 && P::kSlots <= kMaxSlots, "raise kMaxSlots in launch.cuh");
  static_assert(P::kHyperCount <= kMaxHyper, "raise kMaxHyper in launch.cuh");
  static_assert(sizeof(typename P::Hyper) == P::kHyperCount * sizeof(double), "P::Hyper must be kHyperCount doubles");
  using Hyper = typename P::Hyper;
  static Hyper unpack(const double* h) {
    Hyper x;
    std::memcpy(&x, h, sizeof(x));
    return x;
  }
  static const char* check(const double* h, int* field) { return P::check(unpack(h), field); }
  static int occupancy(int* n) { return (int)cudaOccupancyMaxActiveBlocksPerMultiprocessor(n, step_kernel<P>, kThreads, 0); }
  static int set_hyper(void* dst, const double* h, cudaStream_t s) {
    return (int)ADAMP_LAUNCH(set_hyper_kernel<P>, 1, 1, s, static_cast<Hyper*>(dst), unpack(h));
  }
  static int prep(const LaunchArgs& a, cudaStream_t s) { return (int)ADAMP_LAUNCH(prep_kernel<P>, 1, kMaxTensors, s, a); }
  static int step(const LaunchArgs& a, unsigned grid, cudaStream_t s) {
    return (int)ADAMP_LAUNCH(step_kernel<P>, grid, kThreads, s, a);
  }
  static int prep_mixed(const LaunchArgs& a, cudaStream_t s) { return (int)ADAMP_LAUNCH(prep_kernel<Mixed<P>>, 1, kMaxTensors, s, a); }
  static int step_mixed(const LaunchArgs& a, unsigned grid, cudaStream_t s) {
    return (int)ADAMP_LAUNCH(step_kernel<Mixed<P>>, grid, kThreads, s, a);
  }
  static constexpr KindOps ops() {
    return KindOps{P::kName, P::kSlots, P::kHyperCount, P::kProjects, &P::hyper_name, &check, &occupancy, &set_hyper, &prep, &step,
                   &prep_mixed, &step_mixed};
  }
};

#define ADAMP_CUDA_KIND_OPS(P) Kind<adamp::P>::ops(),
const KindOps kKinds[] = {ADAMP_OPTIMIZERS(ADAMP_CUDA_KIND_OPS)};
#undef ADAMP_CUDA_KIND_OPS
constexpr int kKindCount = (int)(sizeof(kKinds) / sizeof(kKinds[0]));
static_assert(kKindCount == (int)adamp::OptKind::Count, "one KindOps per registered policy, in registry order");

struct DevTensor {
  adamp_cuda_tensor_desc desc;
  TensorArgs args;  // pointers and geometry; copied into each launch
  void* aux = nullptr;
  int external = 0;  // ADAMP_CUDA_EXTERNAL_* buffers: bound by the caller, never allocated or freed here
  float* master = nullptr;  // 16-bit param with master weights (ADAMP_CUDA_MASTER): the float32 copy
};

/**
 * Pinned host memory for gradient uploads: a host copy from pageable memory makes the CUDA
 * runtime wait for the stream's earlier work first, so a step could not return before the last
 * one ran. Two generations alternate between steps; a generation is reused once the device has
 * done its copies (an event), so the host waits only when the device is two steps behind.
 */
struct Staging {
  struct Chunk {
    char* p;
    size_t cap;
  };
  std::vector<Chunk> chunks;
  size_t chunk = 0, offset = 0;
  cudaEvent_t done = nullptr;  // after the copies of this generation's last use
  bool open = false;           // copies of the current step are in it
};

}  // namespace adamp_cuda

struct adamp_cuda_ctx {
  int kind = 0;
  const KindOps* ops = nullptr;
  int device = 0;
  cudaStream_t stream = nullptr;      // where work is queued now: own_stream or the caller's
  cudaStream_t own_stream = nullptr;  // created and destroyed with the context
  int sm_count = 1;
  int blocks_per_sm = 1;
  int max_blocks = 0;  // 0: no cap
  int chunk = kDefaultChunk;
  int64_t group = kDefaultGroup;
  int lag = kDefaultLag;
  void* d_hyper = nullptr;  // the group's P::Hyper
  bool hyper_set = false;
  unsigned* d_queue = nullptr;
  double* d_info = nullptr;
  int64_t d_info_cap = 0;
  std::vector<DevTensor> t;
  Staging staging[2];
  int staging_cur = 0;
  int broken = 0;  // a step failed after part of it was queued
};

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/** Lays out a tensor's items (see launch.cuh for the modes). */
void plan(TensorArgs& t, const adamp_cuda_tensor_desc& d, int64_t chunk, bool projects) {
  std::memset(&t, 0, sizeof(t));
  t.numel = d.numel;
  t.outer = d.outer;
  t.channels = d.channels;
  t.inner = d.inner;
  t.chunk = (int32_t)chunk;
  t.spi = t.nps = 1;
  t.tw = t.rp = 1;
  t.rows_per_item = t.nct = 1;
  t.width = d.channels * d.inner;
  if (d.numel == 0) {
    t.mode = kModeSingle;
    t.n_items = 0;
  } else if (!d.eligible || !projects) {
    t.mode = kModeSingle;
    t.n_items = ceil_div(d.numel, chunk);
  } else if (d.inner >= 32) {
    t.mode = kModeSegment;
    const int64_t nseg = d.outer * d.channels;
    if (d.inner <= chunk) {
      t.team_log2 = d.inner <= 256 ? 0 : d.inner <= 512 ? 1 : d.inner <= 1024 ? 2 : 3;
      const int64_t teams = kWarps >> t.team_log2;
      int64_t spi = std::max<int64_t>(1, chunk / d.inner);
      if (spi > teams) spi = spi / teams * teams;
      t.spi = (int32_t)spi;  // <= chunk
      t.nps = 1;
      t.plen = (int32_t)d.inner;  // <= chunk
      t.n_items = ceil_div(nseg, t.spi);
      t.whole = (ADAMP_CUDA_WHOLE_CHANNEL_ITEMS && d.outer == 1) ? 1 : 0;
    } else {
      t.team_log2 = 3;
      const int64_t pieces = ceil_div(d.inner, chunk);
      const int64_t plen = (ceil_div(d.inner, pieces) + 3) / 4 * 4;  // <= chunk + 3
      t.plen = (int32_t)plen;
      t.nps = (int32_t)ceil_div(d.inner, plen);  // <= n_items
      t.spi = 1;
      t.n_items = nseg * ceil_div(d.inner, plen);
    }
  } else {
    t.mode = kModeColumn;
    t.tw = (int32_t)std::min<int64_t>(t.width, kThreads);
    t.rp = kThreads / t.tw;
    t.rows_per_item = std::max<int64_t>(t.rp, (chunk / t.tw) / t.rp * t.rp);
    t.nct = ceil_div(t.width, t.tw);
    t.n_items = ceil_div(d.outer, t.rows_per_item) * t.nct;
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

bool aligned8(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 7u) == 0; }

/** Strides equal to row-major, ignoring dimensions of extent 1 (their stride is never used). */
bool contiguous_view(const int64_t* shape, const int64_t* strides, int ndim) {
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != s) return false;
    s *= shape[d];
  }
  return true;
}

void set_vec(TensorArgs& a, int slots, const float* master) {
  // 16-bit data is read 4 elements (8 bytes) at a time, float32 data 16 bytes at a time
  bool v = (store_p(a.storage) != kF32 ? aligned8(a.p) : aligned16(a.p)) && (store_g(a.storage) != kF32 ? aligned8(a.g) : aligned16(a.g));
  if (master) v = v && aligned16(master);
  for (int k = 0; k < slots; ++k) v = v && aligned16(a.st[k]);
  a.vec = v ? 1 : 0;
}

int64_t align256(int64_t x) { return (x + 255) / 256 * 256; }

/**
 * The launches of one step, planned on the host before anything is queued (a failure here
 * changes nothing): groups of consecutive tensors of about ctx->group elements, whole groups per
 * launch, at most kMaxTensors tensors each.
 */
int plan_launches(adamp_cuda_ctx* ctx, const std::vector<int>& ids, bool norms, std::vector<std::unique_ptr<LaunchArgs>>& out,
                  const float* scale = nullptr, const int* found = nullptr, bool mixed = false) {
  std::vector<std::vector<int>> groups;
  int64_t acc = 0;
  for (int id : ids) {
    if (groups.empty() || acc >= ctx->group || (int)groups.back().size() == kMaxTensors) {
      groups.emplace_back();
      acc = 0;
    }
    groups.back().push_back(id);
    acc += ctx->t[id].desc.numel;
  }
  size_t gi = 0;
  while (gi < groups.size()) {
    size_t ge = gi;
    int ntensors = 0;
    while (ge < groups.size() && ntensors + (int)groups[ge].size() <= kMaxTensors) ntensors += (int)groups[ge++].size();

    std::unique_ptr<LaunchArgs> a(new (std::nothrow) LaunchArgs);
    if (!a) return ADAMP_CUDA_E_NOMEM;
    std::memset(a.get(), 0, sizeof(LaunchArgs));
    std::vector<std::vector<int>> slot_of(ge - gi);  // launch-local tensor indices per group
    int nt = 0;
    for (size_t g = gi; g < ge; ++g)
      for (int id : groups[g]) {
        a->t[nt] = ctx->t[id].args;
        slot_of[g - gi].push_back(nt++);
      }
    int ne = 0;
    int64_t total = 0;
    auto add_entry = [&](int slot, int pass) {
      const int64_t n = a->t[slot].n_items;
      if (n == 0) return;
      total += n;
      a->entry_end[ne] = (int32_t)std::min<int64_t>(total, INT32_MAX);
      a->entry_tensor[ne] = (uint8_t)slot;
      a->entry_pass[ne] = (uint8_t)pass;
      ++ne;
    };
    auto add_pass2 = [&](size_t g) {
      for (int s : slot_of[g])
        if (a->t[s].mode != kModeSingle) add_entry(s, 1);
    };
    const size_t ng = ge - gi;
    for (size_t g = 0; g < ng; ++g) {
      for (int s : slot_of[g]) add_entry(s, 0);
      if (g >= (size_t)ctx->lag) add_pass2(g - ctx->lag);
    }
    for (size_t g = ng > (size_t)ctx->lag ? ng - ctx->lag : 0; g < ng; ++g) add_pass2(g);
    if (total > INT32_MAX) return ADAMP_CUDA_E_INVALID;
    a->n_entries = ne;
    a->total_items = (int32_t)total;
    a->n_tensors = nt;
    a->norms = norms ? 1 : 0;
    a->hp = ctx->d_hyper;
    a->queue = ctx->d_queue;
    a->denormal = 1e-40f;
    a->scale = scale;
    a->found_inf = found;
    a->mixed = mixed ? 1 : 0;
    if (total > 0) out.push_back(std::move(a));
    gi = ge;
  }
  return 0;
}

/** Ids in range and, for a step, each at most once (a tensor's counters expect one pass per step). */
int check_ids(adamp_cuda_ctx* ctx, const int* ids, int n, bool unique) {
  if (!ctx || (n > 0 && !ids) || n < 0) return ADAMP_CUDA_E_INVALID;
  std::vector<char> seen(unique ? ctx->t.size() : 0, 0);
  for (int i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= (int)ctx->t.size()) return ADAMP_CUDA_E_INVALID;
    if (unique && seen[ids[i]]++) return ADAMP_CUDA_E_INVALID;
  }
  return 0;
}

int check_hyper(const KindOps& ops, const double* hyper, int nhyper) {
  if (!hyper || nhyper != ops.nhyper) return ADAMP_CUDA_E_INVALID;
  int field = -1;
  return ops.check(hyper, &field) ? ADAMP_CUDA_E_INVALID : 0;
}

float* buffer(adamp_cuda_ctx* ctx, int id, int which) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size()) return nullptr;
  TensorArgs& a = ctx->t[id].args;
  if (which == ADAMP_CUDA_P) return a.p;
  if (which == ADAMP_CUDA_G) return const_cast<float*>(a.g);
  const int k = which - ADAMP_CUDA_STATE(0);
  if (k == ctx->ops->slots) return ctx->t[id].master;  // the master weights (16-bit params), or null
  return k >= 0 && k < ctx->ops->slots ? a.st[k] : nullptr;
}

/** A float32 buffer of the tensor (the param and gradient only when stored as float32). */
bool valid_which(const adamp_cuda_ctx* ctx, int id, int which) {
  if (which < 0 || which > ADAMP_CUDA_STATE(ctx->ops->slots)) return false;
  const int st = ctx->t[id].args.storage;
  if (which == ADAMP_CUDA_P) return store_p(st) == kF32;
  if (which == ADAMP_CUDA_G) return store_g(st) == kF32;
  return true;
}

/** Copies `bytes` from pageable host memory through the current staging generation (see Staging). */
int staged_upload(adamp_cuda_ctx* ctx, void* dst, const void* src, size_t bytes) {
  Staging& s = ctx->staging[ctx->staging_cur];
  int rc = 0;
  if (!s.open) {
    // note: a host wait for the device only when it is two steps behind (this generation's copies
    // of two steps ago have not run yet); never a device-wide synchronization.
    if (s.done && (rc = (int)cudaEventSynchronize(s.done))) return forget_error(rc);
    s.chunk = 0;
    s.offset = 0;
    s.open = true;
  }
  while (s.chunk < s.chunks.size() && s.chunks[s.chunk].cap - s.offset < bytes) {
    ++s.chunk;
    s.offset = 0;
  }
  if (s.chunk == s.chunks.size()) {
    const size_t last = s.chunks.empty() ? 0 : s.chunks.back().cap;
    const size_t cap = std::max(bytes, std::max(size_t(1) << 20, 2 * last));
    void* p = nullptr;
    if (pinned_alloc(&p, cap) != 0) {  // no pinned memory: the pageable copy still works
      return forget_error((int)cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream));
    }
    s.chunks.push_back(Staging::Chunk{static_cast<char*>(p), cap});
  }
  char* h = s.chunks[s.chunk].p + s.offset;
  std::memcpy(h, src, bytes);
  s.offset += (size_t)align256((int64_t)bytes);
  return forget_error((int)cudaMemcpyAsync(dst, h, bytes, cudaMemcpyHostToDevice, ctx->stream));
}

/**
 * Ends the current staging generation: an event after its copies; the next step uses the other
 * one. Not while the stream is being captured into a graph (an event recorded there belongs to
 * the graph and cannot be waited for later): the copies were queued before the capture began, so
 * the generation stays open until a step outside a capture, or a synchronization, ends it.
 */
int staging_close(adamp_cuda_ctx* ctx) {
  Staging& s = ctx->staging[ctx->staging_cur];
  if (!s.open) return 0;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  int rc = (int)cudaStreamIsCapturing(ctx->stream, &capture);
  if (rc) return forget_error(rc);
  if (capture != cudaStreamCaptureStatusNone) return 0;
  if (!s.done) rc = (int)cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming);
  if (!rc) rc = (int)cudaEventRecord(s.done, ctx->stream);
  if (rc) return forget_error(rc);
  s.open = false;
  ctx->staging_cur ^= 1;
  return 0;
}

/** After the stream was synchronized every staged copy is done: both generations are free again. */
void staging_settle(adamp_cuda_ctx* ctx) {
  for (Staging& s : ctx->staging) s.open = false;
}

int step_impl(adamp_cuda_ctx* ctx, const int* ids, int n, const double* hyper, int nhyper, unsigned flags, const float* scale = nullptr,
              const int* found = nullptr) {
  int rc = check_ids(ctx, ids, n, true);
  if (rc) return rc;
  if (ctx->broken) return ADAMP_CUDA_E_BROKEN;
  if (hyper ? check_hyper(*ctx->ops, hyper, nhyper) != 0 : !ctx->hyper_set) return ADAMP_CUDA_E_INVALID;
  if ((rc = cudaSetDevice(ctx->device))) return forget_error(rc);
  std::vector<int> live;
  live.reserve(n);
  std::vector<int> live_mixed;  // 16-bit storage, or every tensor of a loss-scaled (or skippable) step: the mixed kernels
  for (int i = 0; i < n; ++i) {
    const DevTensor& t = ctx->t[ids[i]];
    if (t.desc.numel == 0) continue;
    if ((t.args.storage & kStoreMaster) && !t.master) return ADAMP_CUDA_E_INVALID;
    if (scale || found || t.args.storage != 0) live_mixed.push_back(ids[i]);
    else live.push_back(ids[i]);
  }
  for (const std::vector<int>* v : {&live, &live_mixed})  // external buffers must be bound
    for (int id : *v)
      if (!ctx->t[id].args.p || !ctx->t[id].args.g) return ADAMP_CUDA_E_INVALID;
  const bool norms = (flags & ADAMP_CUDA_NO_NORMS) == 0;
  std::vector<std::unique_ptr<LaunchArgs>> launches;
  if ((rc = plan_launches(ctx, live, norms, launches))) return rc;
  if ((rc = plan_launches(ctx, live_mixed, norms, launches, scale, found, true))) return rc;
  // Queued from here. A failure before the first prep_kernel leaves every tensor as it was.
  if (hyper) {
    if ((rc = ctx->ops->set_hyper(ctx->d_hyper, hyper, ctx->stream))) return forget_error(rc);
    ctx->hyper_set = true;
  }
  if ((rc = staging_close(ctx))) return rc;
  bool queued = false;
  for (const auto& a : launches) {
    int64_t grid = std::min<int64_t>(a->total_items, (int64_t)ctx->sm_count * ctx->blocks_per_sm);
    if (ctx->max_blocks > 0) grid = std::min<int64_t>(grid, ctx->max_blocks);
    rc = a->mixed ? ctx->ops->prep_mixed(*a, ctx->stream) : ctx->ops->prep(*a, ctx->stream);
    if (!rc) {
      queued = true;
      rc = a->mixed ? ctx->ops->step_mixed(*a, (unsigned)grid, ctx->stream) : ctx->ops->step(*a, (unsigned)grid, ctx->stream);
    }
    if (rc) {
      if (queued) ctx->broken = rc;  // some tensors have counted this step on the device
      return forget_error(rc);
    }
  }
  return 0;
}

}  // namespace

extern "C" {

int adamp_cuda_kind_count(void) { return kKindCount; }

const char* adamp_cuda_kind_name(int kind) { return kind >= 0 && kind < kKindCount ? kKinds[kind].name : nullptr; }

int adamp_cuda_kind_info(int kind, int* slots, int* nhyper, int* projects) {
  if (kind < 0 || kind >= kKindCount) return ADAMP_CUDA_E_INVALID;
  if (slots) *slots = kKinds[kind].slots;
  if (nhyper) *nhyper = kKinds[kind].nhyper;
  if (projects) *projects = kKinds[kind].projects ? 1 : 0;
  return 0;
}

const char* adamp_cuda_kind_hyper_name(int kind, int i) {
  return kind >= 0 && kind < kKindCount ? kKinds[kind].hyper_name(i) : "?";
}

int adamp_cuda_kind_of(const char* name) {
  if (!name) return -1;
  for (int k = 0; k < kKindCount; ++k)
    if (std::strcmp(kKinds[k].name, name) == 0) return k;
  return -1;
}

int adamp_cuda_check_hyper(int kind, const double* hyper, int nhyper, int* field, const char** message) {
  if (field) *field = -1;
  if (message) *message = "wrong number of hyperparameters";
  if (kind < 0 || kind >= kKindCount || !hyper || nhyper != kKinds[kind].nhyper) return ADAMP_CUDA_E_INVALID;
  int f = -1;
  const char* m = kKinds[kind].check(hyper, &f);
  if (!m) return 0;
  if (field) *field = f;
  if (message) *message = m;
  return ADAMP_CUDA_E_INVALID;
}

int adamp_cuda_device_count(int* count) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (count) *count = e == cudaSuccess ? n : 0;
  return forget_error((int)e);
}

int adamp_cuda_device_info(int dev, char* name, size_t name_len, int* major, int* minor, size_t* total_mem) {
  cudaDeviceProp p;
  const cudaError_t e = cudaGetDeviceProperties(&p, dev);
  if (e != cudaSuccess) return forget_error((int)e);
  if (name && name_len > 0) {
    std::strncpy(name, p.name, name_len - 1);
    name[name_len - 1] = '\0';
  }
  if (major) *major = p.major;
  if (minor) *minor = p.minor;
  if (total_mem) *total_mem = p.totalGlobalMem;
  return 0;
}

const char* adamp_cuda_error_name(int code) {
  if (code == ADAMP_CUDA_E_INVALID) return "ADAMP_CUDA_E_INVALID";
  if (code == ADAMP_CUDA_E_NOMEM) return "ADAMP_CUDA_E_NOMEM";
  if (code == ADAMP_CUDA_E_BROKEN) return "ADAMP_CUDA_E_BROKEN";
  return cudaGetErrorName((cudaError_t)code);
}

const char* adamp_cuda_error_string(int code) {
  if (code == ADAMP_CUDA_E_INVALID) return "invalid argument to the adamp CUDA API (kind, tensor id, size, pointer or hyperparameter)";
  if (code == ADAMP_CUDA_E_NOMEM) return "out of host memory";
  if (code == ADAMP_CUDA_E_BROKEN)
    return "an earlier step of this context failed after part of it was queued; its state is inconsistent: "
           "destroy it and resume from a saved state";
  return cudaGetErrorString((cudaError_t)code);
}

int adamp_cuda_versions(int* runtime, int* driver) {
  int r = 0, d = 0;
  cudaRuntimeGetVersion(&r);
  const cudaError_t e = cudaDriverGetVersion(&d);
  if (runtime) *runtime = r;
  if (driver) *driver = d;
  return forget_error((int)e);
}

int adamp_cuda_create(adamp_cuda_ctx** out, const char* kind, int device, const adamp_cuda_config* config) {
  if (!out) return ADAMP_CUDA_E_INVALID;
  *out = nullptr;
  const int k = adamp_cuda_kind_of(kind);
  if (k < 0) return ADAMP_CUDA_E_INVALID;
  adamp_cuda_ctx* c = new (std::nothrow) adamp_cuda_ctx;
  if (!c) return ADAMP_CUDA_E_NOMEM;
  c->kind = k;
  c->ops = &kKinds[k];
  c->device = device;
  if (config) {
    if (config->chunk > 0) c->chunk = std::max(256, config->chunk / 4 * 4);
    if (config->group > 0) c->group = config->group;
    if (config->lag > 0) c->lag = config->lag;
    if (config->max_blocks > 0) c->max_blocks = config->max_blocks;
  }
  int rc = cudaSetDevice(device);
  // A blocking stream: ordered after work the caller queued on the legacy default stream (e.g. the
  // backward pass that wrote the gradients), as users of a GPU optimizer expect.
  if (!rc) rc = cudaStreamCreateWithFlags(&c->own_stream, cudaStreamDefault);
  c->stream = c->own_stream;
  if (!rc) rc = cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, device);
  if (!rc) rc = c->ops->occupancy(&c->blocks_per_sm);
  if (!rc && config && config->blocks_per_sm > 0) c->blocks_per_sm = std::min(c->blocks_per_sm, config->blocks_per_sm);
  if (!rc && c->blocks_per_sm < 1) c->blocks_per_sm = 1;
  if (!rc) rc = dev_alloc(&c->d_hyper, kMaxHyper * sizeof(double));
  if (!rc) rc = dev_alloc(reinterpret_cast<void**>(&c->d_queue), 2 * sizeof(unsigned));
  if (!rc) rc = cudaMemsetAsync(c->d_queue, 0, 2 * sizeof(unsigned), c->stream);
  if (!rc) rc = cudaMemsetAsync(c->d_hyper, 0, kMaxHyper * sizeof(double), c->stream);
  if (rc) {
    adamp_cuda_destroy(c);
    return forget_error(rc);
  }
  *out = c;
  return 0;
}

void adamp_cuda_destroy(adamp_cuda_ctx* ctx) {
  if (!ctx) return;
  cudaSetDevice(ctx->device);
  // note: no synchronization here, and no use of ctx->stream (a caller's stream may be destroyed
  // by now, e.g. when a garbage-collector finalizer runs): the freeing thread's cudaFree waits for
  // the device's work still using these buffers.
  for (DevTensor& t : ctx->t) {
    if (!(t.external & ADAMP_CUDA_EXTERNAL_P)) dev_free(t.args.p);
    if (!(t.external & ADAMP_CUDA_EXTERNAL_G)) dev_free(const_cast<float*>(t.args.g));
    for (int k = 0; k < kMaxSlots; ++k) dev_free(t.args.st[k]);
    dev_free(t.master);
    dev_free(t.aux);
  }
  dev_free(ctx->d_hyper);
  dev_free(ctx->d_queue);
  dev_free(ctx->d_info);
  for (Staging& s : ctx->staging) {
    for (const Staging::Chunk& c : s.chunks) pinned_free(c.p);
    if (s.done) cudaEventDestroy(s.done);  // returns at once; released when the event completes
  }
  if (ctx->own_stream) cudaStreamDestroy(ctx->own_stream);  // returns at once; queued work still runs
  delete ctx;
}

int adamp_cuda_kind(const adamp_cuda_ctx* ctx) { return ctx ? ctx->kind : -1; }

int adamp_cuda_add_tensor(adamp_cuda_ctx* ctx, const adamp_cuda_tensor_desc* desc, int* id) {
  return adamp_cuda_add_tensor_ex(ctx, desc, 0, id);
}

int adamp_cuda_add_tensor_ex(adamp_cuda_ctx* ctx, const adamp_cuda_tensor_desc* desc, int external, int* id) {
  if (!ctx || !desc || !id || (external & ~(ADAMP_CUDA_EXTERNAL_P | ADAMP_CUDA_EXTERNAL_G))) return ADAMP_CUDA_E_INVALID;
  const adamp_cuda_tensor_desc& d = *desc;
  if (d.numel < 0 || (d.numel > 0 && (d.outer < 1 || d.channels < 1 || d.inner < 1))) return ADAMP_CUDA_E_INVALID;
  if (d.numel > 0 && d.outer * d.channels * d.inner != d.numel) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(ctx->device);
  if (rc) return forget_error(rc);
  DevTensor t;
  t.desc = d;
  t.external = external;
  plan(t.args, d, ctx->chunk, ctx->ops->projects);
  // A launch counts items in 32 bits (and TensorArgs keeps nps in 32): a tensor of more items
  // (over 2^31 x 256 elements) could never step.
  if (t.args.n_items > INT32_MAX) return ADAMP_CUDA_E_INVALID;
  TensorArgs& a = t.args;
  const size_t bytes = (size_t)d.numel * sizeof(float);
  const int nbuf = 2 + ctx->ops->slots;
  float* bufs[2 + kMaxSlots] = {};
  for (int b = 0; b < nbuf && !rc && bytes > 0; ++b) {
    if ((b == 0 && (external & ADAMP_CUDA_EXTERNAL_P)) || (b == 1 && (external & ADAMP_CUDA_EXTERNAL_G))) continue;
    rc = dev_alloc(reinterpret_cast<void**>(&bufs[b]), bytes);
    if (!rc) rc = cudaMemsetAsync(bufs[b], 0, bytes, ctx->stream);
  }
  // Auxiliary block: state, partial sums, per-channel sums and coefficients, info partials.
  const bool elig = a.mode != kModeSingle;
  const int64_t off_state = 0;
  const int64_t off_part = align256(off_state + (int64_t)sizeof(TensorState));
  const int64_t off_chsum = align256(off_part + partial_slots(a) * (int64_t)sizeof(adamp::ChannelSums));
  const int64_t off_coef = align256(off_chsum + (elig && !a.whole ? d.channels : 0) * (int64_t)sizeof(adamp::ChannelSums));
  const int64_t off_info = align256(off_coef + (elig ? d.channels : 0) * (int64_t)sizeof(adamp::ProjCoef));
  const int64_t aux_bytes = align256(off_info + a.n_items * 3 * (int64_t)sizeof(double));
  if (!rc) rc = dev_alloc(&t.aux, (size_t)aux_bytes);
  if (!rc) rc = cudaMemsetAsync(t.aux, 0, (size_t)aux_bytes, ctx->stream);
  if (rc) {
    for (float* b : bufs) dev_free(b);
    dev_free(t.aux);
    return forget_error(rc);
  }
  char* base = static_cast<char*>(t.aux);
  a.p = bufs[0];
  a.g = bufs[1];
  for (int k = 0; k < ctx->ops->slots; ++k) a.st[k] = bufs[2 + k];
  a.ts = reinterpret_cast<TensorState*>(base + off_state);
  a.part = reinterpret_cast<adamp::ChannelSums*>(base + off_part);
  a.chsum = reinterpret_cast<adamp::ChannelSums*>(base + off_chsum);
  a.coef = reinterpret_cast<adamp::ProjCoef*>(base + off_coef);
  a.info_part = reinterpret_cast<double*>(base + off_info);
  set_vec(a, ctx->ops->slots, nullptr);
  ctx->t.push_back(t);
  *id = (int)ctx->t.size() - 1;
  return 0;
}

int adamp_cuda_num_tensors(const adamp_cuda_ctx* ctx) { return ctx ? (int)ctx->t.size() : 0; }

int adamp_cuda_upload(adamp_cuda_ctx* ctx, int id, int which, const float* host, int64_t numel) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size() || !valid_which(ctx, id, which)) return ADAMP_CUDA_E_INVALID;
  if (numel != ctx->t[id].desc.numel || (!host && numel > 0)) return ADAMP_CUDA_E_INVALID;
  if (numel == 0) return 0;
  float* dst = buffer(ctx, id, which);
  if (!dst) return ADAMP_CUDA_E_INVALID;  // an external buffer that was never bound
  int rc = cudaSetDevice(ctx->device);
  if (rc) return forget_error(rc);
  const size_t bytes = (size_t)numel * sizeof(float);
  if (which == ADAMP_CUDA_G) return staged_upload(ctx, dst, host, bytes);
  // From pageable memory the call returns once `host` has been staged: the caller may reuse it.
  return forget_error((int)cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, ctx->stream));
}

int adamp_cuda_download(adamp_cuda_ctx* ctx, int id, int which, float* host, int64_t numel) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size() || !valid_which(ctx, id, which)) return ADAMP_CUDA_E_INVALID;
  if (numel != ctx->t[id].desc.numel || (!host && numel > 0)) return ADAMP_CUDA_E_INVALID;
  if (numel == 0) return 0;
  float* src = buffer(ctx, id, which);
  if (!src) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(ctx->device);
  if (!rc) rc = cudaMemcpyAsync(host, src, (size_t)numel * sizeof(float), cudaMemcpyDeviceToHost, ctx->stream);
  if (!rc) rc = cudaStreamSynchronize(ctx->stream);
  return forget_error(rc);
}

float* adamp_cuda_device_ptr(adamp_cuda_ctx* ctx, int id, int which) { return buffer(ctx, id, which); }

int adamp_cuda_set_step(adamp_cuda_ctx* ctx, int id, int64_t completed_steps) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size() || completed_steps < 0) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(ctx->device);
  if (!rc) rc = (int)ADAMP_LAUNCH(set_step_kernel, 1, 1, ctx->stream, ctx->t[id].args.ts, (double)completed_steps);
  return forget_error(rc);
}

int adamp_cuda_step(adamp_cuda_ctx* ctx, const int* ids, int n, const double* hyper, int nhyper) {
  return step_impl(ctx, ids, n, hyper, nhyper, 0);
}

int adamp_cuda_step_ex(adamp_cuda_ctx* ctx, const int* ids, int n, const double* hyper, int nhyper, unsigned flags) {
  return step_impl(ctx, ids, n, hyper, nhyper, flags);
}

int adamp_cuda_set_hyper(adamp_cuda_ctx* ctx, const double* hyper, int nhyper) {
  if (!ctx || check_hyper(*ctx->ops, hyper, nhyper)) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(ctx->device);
  if (!rc) rc = ctx->ops->set_hyper(ctx->d_hyper, hyper, ctx->stream);
  if (!rc) ctx->hyper_set = true;
  return forget_error(rc);
}

int adamp_cuda_info(adamp_cuda_ctx* ctx, const int* ids, int n, double* info) {
  int rc = check_ids(ctx, ids, n, false);
  if (rc) return rc;
  if (n == 0) return 0;
  if (!info) return ADAMP_CUDA_E_INVALID;
  if ((rc = cudaSetDevice(ctx->device))) return forget_error(rc);
  if (ctx->d_info_cap < n) {
    dev_free(ctx->d_info);
    ctx->d_info = nullptr;
    ctx->d_info_cap = 0;
    if ((rc = dev_alloc(reinterpret_cast<void**>(&ctx->d_info), (size_t)n * adamp::kInfoStride * sizeof(double)))) return rc;
    ctx->d_info_cap = n;
  }
  if ((rc = cudaMemsetAsync(ctx->d_info, 0, (size_t)n * adamp::kInfoStride * sizeof(double), ctx->stream)))
    return forget_error(rc);
  std::unique_ptr<InfoArgs> a(new (std::nothrow) InfoArgs);
  if (!a) return ADAMP_CUDA_E_NOMEM;
  for (int i0 = 0; i0 < n && !rc; i0 += kMaxInfoTensors) {
    std::memset(a.get(), 0, sizeof(InfoArgs));
    a->out = ctx->d_info;
    a->projects = ctx->ops->projects ? 1 : 0;
    int cnt = 0;
    for (int i = i0; i < n && i < i0 + kMaxInfoTensors; ++i) {
      const DevTensor& t = ctx->t[ids[i]];
      if (t.desc.numel == 0) continue;
      InfoTensor& it = a->t[cnt++];
      it.st = t.args.ts;
      it.info_part = t.args.info_part;
      it.n_items = t.args.n_items;
      it.mode = t.args.mode;
      it.out = i;
    }
    if (cnt > 0) rc = (int)ADAMP_LAUNCH(info_kernel, cnt, kThreads, ctx->stream, *a);
  }
  if (!rc)
    rc = cudaMemcpyAsync(info, ctx->d_info, (size_t)n * adamp::kInfoStride * sizeof(double), cudaMemcpyDeviceToHost,
                         ctx->stream);
  if (!rc) rc = cudaStreamSynchronize(ctx->stream);
  if (rc) return forget_error(rc);
  for (int i = 0; i < n; ++i) {  // empty tensors never reach the device
    const DevTensor& t = ctx->t[ids[i]];
    if (t.desc.numel != 0) continue;
    double* o = info + (int64_t)i * adamp::kInfoStride;
    adamp::write_info_not_eligible(o, 0.0, 0.0, 0.0);
    if (!ctx->ops->projects) {
      o[adamp::kInfoDecision] = adamp::kDecisionNotApplicable;
    } else if (t.desc.eligible) {
      adamp::DecisionResult d;
      std::memset(&d, 0, sizeof(d));
      d.code = adamp::kDecisionNone;
      d.channel_max_cos = d.channel_threshold = d.layer_cos = d.layer_threshold = NAN;
      adamp::write_info(o, d, 0.0, 0.0);
    }
  }
  return 0;
}

int adamp_cuda_sync(adamp_cuda_ctx* ctx) {
  if (!ctx) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(ctx->device);
  if (!rc) rc = (int)cudaStreamSynchronize(ctx->stream);
  if (!rc) staging_settle(ctx);
  return forget_error(rc);
}

void* adamp_cuda_stream(adamp_cuda_ctx* ctx) { return ctx ? (void*)ctx->stream : nullptr; }

int adamp_cuda_bind(adamp_cuda_ctx* ctx, int id, int which, float* device_ptr) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size()) return ADAMP_CUDA_E_INVALID;
  DevTensor& t = ctx->t[id];
  const int flag = which == ADAMP_CUDA_P ? ADAMP_CUDA_EXTERNAL_P : which == ADAMP_CUDA_G ? ADAMP_CUDA_EXTERNAL_G : 0;
  if (!flag || !(t.external & flag) || (!device_ptr && t.desc.numel > 0)) return ADAMP_CUDA_E_INVALID;
  const bool half = (which == ADAMP_CUDA_P ? store_p(t.args.storage) : store_g(t.args.storage)) != kF32;
  // float32 needs 4-byte alignment, 16-bit data 2
  if ((reinterpret_cast<uintptr_t>(device_ptr) & (half ? 1u : 3u)) != 0) return ADAMP_CUDA_E_INVALID;
  if (which == ADAMP_CUDA_P) t.args.p = device_ptr;
  else t.args.g = device_ptr;
  set_vec(t.args, ctx->ops->slots, t.master);
  return 0;
}

int adamp_cuda_set_stream(adamp_cuda_ctx* ctx, void* stream) {
  if (!ctx) return ADAMP_CUDA_E_INVALID;
  cudaStream_t next = stream ? static_cast<cudaStream_t>(stream) : ctx->own_stream;
  if (next == ctx->stream) return 0;
  int rc = cudaSetDevice(ctx->device);
  if (rc) return forget_error(rc);
  // What was queued on the old stream (uploads, an earlier step) comes before what follows.
  cudaEvent_t ev = nullptr;
  rc = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
  if (!rc) rc = cudaEventRecord(ev, ctx->stream);
  if (!rc) rc = cudaStreamWaitEvent(next, ev, 0);
  if (ev) cudaEventDestroy(ev);
  if (rc) return forget_error(rc);
  ctx->stream = next;
  return 0;
}

int adamp_cuda_record(adamp_cuda_ctx* ctx, void** event) {
  if (!ctx || !event) return ADAMP_CUDA_E_INVALID;
  *event = nullptr;
  int rc = cudaSetDevice(ctx->device);
  if (rc) return forget_error(rc);
  cudaEvent_t ev = nullptr;
  rc = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
  if (!rc) rc = cudaEventRecord(ev, ctx->stream);
  if (rc) {
    if (ev) cudaEventDestroy(ev);
    return forget_error(rc);
  }
  *event = static_cast<void*>(ev);
  return 0;
}

int adamp_cuda_event_wait(void* event) {
  if (!event) return ADAMP_CUDA_E_INVALID;
  cudaEvent_t ev = static_cast<cudaEvent_t>(event);
  const int rc = (int)cudaEventSynchronize(ev);
  cudaEventDestroy(ev);
  return forget_error(rc);
}

void adamp_cuda_event_free(void* event) {
  if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));  // returns at once
}

}  // extern "C"

extern "C" {

int adamp_cuda_set_storage(adamp_cuda_ctx* ctx, int id, int storage, uint32_t seed, uint32_t index) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size()) return ADAMP_CUDA_E_INVALID;
  if (storage & ~(15 | ADAMP_CUDA_MASTER | ADAMP_CUDA_STOCHASTIC)) return ADAMP_CUDA_E_INVALID;
  const int pd = storage & 3, gd = (storage >> 2) & 3;
  if (pd > ADAMP_CUDA_F16 || gd > ADAMP_CUDA_F16) return ADAMP_CUDA_E_INVALID;
  if ((storage & ADAMP_CUDA_MASTER) && pd == ADAMP_CUDA_F32) return ADAMP_CUDA_E_INVALID;
  if ((storage & ADAMP_CUDA_STOCHASTIC) && pd != ADAMP_CUDA_BF16) return ADAMP_CUDA_E_INVALID;
  DevTensor& t = ctx->t[id];
  // 16-bit data lives in the caller's memory (bound); the context's own buffers are float32
  if (pd != ADAMP_CUDA_F32 && !(t.external & ADAMP_CUDA_EXTERNAL_P)) return ADAMP_CUDA_E_INVALID;
  if (gd != ADAMP_CUDA_F32 && !(t.external & ADAMP_CUDA_EXTERNAL_G)) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(ctx->device);
  if (rc) return forget_error(rc);
  float* master = t.master;
  if ((storage & ADAMP_CUDA_MASTER) && !master && t.desc.numel > 0) {
    if ((rc = dev_alloc(reinterpret_cast<void**>(&master), (size_t)t.desc.numel * sizeof(float)))) return rc;
    if ((rc = (int)cudaMemsetAsync(master, 0, (size_t)t.desc.numel * sizeof(float), ctx->stream))) {
      dev_free(master);
      return forget_error(rc);
    }
  }
  rc = (int)ADAMP_LAUNCH(set_storage_kernel, 1, 1, ctx->stream, t.args.ts, (storage & ADAMP_CUDA_MASTER) ? master : nullptr, seed, index);
  if (rc) {
    if (master != t.master) dev_free(master);
    return forget_error(rc);
  }
  if (!(storage & ADAMP_CUDA_MASTER) && t.master) {
    dev_free(t.master);
    master = nullptr;
  }
  t.master = master;
  // a bound p or g whose type changes is unbound (a step refuses it until adamp_cuda_bind binds it again)
  if ((t.external & ADAMP_CUDA_EXTERNAL_P) && pd != store_p(t.args.storage)) t.args.p = nullptr;
  if ((t.external & ADAMP_CUDA_EXTERNAL_G) && gd != store_g(t.args.storage)) t.args.g = nullptr;
  t.args.storage = (int16_t)storage;
  set_vec(t.args, ctx->ops->slots, t.master);
  return 0;
}

int adamp_cuda_get_storage(const adamp_cuda_ctx* ctx, int id) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size()) return -1;
  return ctx->t[id].args.storage;
}

int adamp_cuda_init_master(adamp_cuda_ctx* ctx, int id) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size()) return ADAMP_CUDA_E_INVALID;
  DevTensor& t = ctx->t[id];
  if (t.desc.numel == 0) return 0;
  if (!t.master || !t.args.p) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(ctx->device);
  if (rc) return forget_error(rc);
  const int64_t blocks = std::min<int64_t>(ceil_div(t.desc.numel, kThreads), 4096);
  return forget_error((int)ADAMP_LAUNCH(widen_kernel, (unsigned)blocks, kThreads, ctx->stream, t.master,
                                        reinterpret_cast<const uint16_t*>(t.args.p), t.desc.numel, store_p(t.args.storage)));
}

int adamp_cuda_check_grads(adamp_cuda_ctx* ctx, const int* ids, int n, int* found, int reset) {
  int rc = check_ids(ctx, ids, n, false);
  if (rc) return rc;
  if (!found || (reinterpret_cast<uintptr_t>(found) & 3u)) return ADAMP_CUDA_E_INVALID;
  for (int i = 0; i < n; ++i)
    if (ctx->t[ids[i]].desc.numel > 0 && !ctx->t[ids[i]].args.g) return ADAMP_CUDA_E_INVALID;
  if ((rc = cudaSetDevice(ctx->device))) return forget_error(rc);
  if (reset && (rc = (int)cudaMemsetAsync(found, 0, sizeof(int), ctx->stream))) return forget_error(rc);
  std::unique_ptr<CheckArgs> a(new (std::nothrow) CheckArgs);
  if (!a) return ADAMP_CUDA_E_NOMEM;
  for (int i0 = 0; i0 < n && !rc; i0 += kMaxTensors) {
    std::memset(a.get(), 0, sizeof(CheckArgs));
    a->found = found;
    int64_t most = 0;
    for (int i = i0; i < n && i < i0 + kMaxTensors; ++i) {
      const DevTensor& t = ctx->t[ids[i]];
      if (t.desc.numel == 0) continue;
      CheckTensor& c = a->t[a->n++];
      c.g = t.args.g;
      c.numel = t.desc.numel;
      c.dt = store_g(t.args.storage);
      most = std::max(most, t.desc.numel);
    }
    if (a->n == 0) continue;
    const int64_t grid = std::max<int64_t>(1, std::min<int64_t>(ceil_div(most, kThreads), (int64_t)ctx->sm_count * 8));
    rc = (int)ADAMP_LAUNCH(check_kernel, (unsigned)grid, kThreads, ctx->stream, *a);
  }
  return forget_error(rc);
}

int adamp_cuda_step_scaled(adamp_cuda_ctx* ctx, const int* ids, int n, const double* hyper, int nhyper, unsigned flags,
                           const float* scale, const int* found) {
  if (!found || (reinterpret_cast<uintptr_t>(scale) & 3u) || (reinterpret_cast<uintptr_t>(found) & 3u)) return ADAMP_CUDA_E_INVALID;
  return step_impl(ctx, ids, n, hyper, nhyper, flags, scale, found);
}

int adamp_cuda_unscale_grads(adamp_cuda_ctx* ctx, const adamp_cuda_grad_view* grads, int n, const float* scale, int* found,
                             int reset) {
  static_assert(kUnscaleDims == ADAMP_CUDA_MAX_DIMS, "UnscaleTensor dimensions (step_kernel.cuh)");
  if (!ctx || n < 0 || (n > 0 && !grads) || !scale || !found) return ADAMP_CUDA_E_INVALID;
  if ((reinterpret_cast<uintptr_t>(scale) & 3u) || (reinterpret_cast<uintptr_t>(found) & 3u)) return ADAMP_CUDA_E_INVALID;
  // Every view checked before anything is queued.
  for (int i = 0; i < n; ++i) {
    const adamp_cuda_grad_view& v = grads[i];
    if (v.ndim < 0 || v.ndim > ADAMP_CUDA_MAX_DIMS || (v.ndim > 0 && !v.shape)) return ADAMP_CUDA_E_INVALID;
    int64_t numel = 1;
    for (int d = 0; d < v.ndim; ++d) {
      if (v.shape[d] < 0 || (v.strides && v.strides[d] < 1)) return ADAMP_CUDA_E_INVALID;
      numel = v.shape[d] == 0 ? 0 : (numel > INT64_MAX / v.shape[d] ? -1 : numel * v.shape[d]);
      if (numel < 0) return ADAMP_CUDA_E_INVALID;
    }
    if (numel > 0 && (!v.g || (reinterpret_cast<uintptr_t>(v.g) & 3u))) return ADAMP_CUDA_E_INVALID;
  }
  int rc = cudaSetDevice(ctx->device);
  if (rc) return forget_error(rc);
  if (reset && (rc = (int)cudaMemsetAsync(found, 0, sizeof(int), ctx->stream))) return forget_error(rc);
  std::unique_ptr<UnscaleArgs> a(new (std::nothrow) UnscaleArgs);
  if (!a) return ADAMP_CUDA_E_NOMEM;
  int i = 0;
  while (i < n && !rc) {
    std::memset(a.get(), 0, sizeof(UnscaleArgs));
    a->scale = scale;
    a->found = found;
    int64_t most = 0;
    for (; i < n && a->n < kMaxUnscaleTensors; ++i) {
      const adamp_cuda_grad_view& v = grads[i];
      int64_t numel = 1;
      for (int d = 0; d < v.ndim; ++d) numel *= v.shape[d];
      if (numel == 0) continue;
      UnscaleTensor& c = a->t[a->n++];
      c.g = v.g;
      c.numel = numel;
      if (v.strides && !contiguous_view(v.shape, v.strides, v.ndim)) {
        c.ndim = v.ndim;
        for (int d = 0; d < v.ndim; ++d) {
          c.shape[d] = v.shape[d];
          c.stride[d] = v.strides[d];
        }
      }
      most = std::max(most, numel);
    }
    if (a->n == 0) continue;
    const int64_t grid = std::max<int64_t>(1, std::min<int64_t>(ceil_div(most, kThreads), (int64_t)ctx->sm_count * 8));
    rc = (int)ADAMP_LAUNCH(unscale_kernel, (unsigned)grid, kThreads, ctx->stream, *a);
  }
  return forget_error(rc);
}

int adamp_cuda_get_steps(adamp_cuda_ctx* ctx, const int* ids, int n, double* out) {
  int rc = check_ids(ctx, ids, n, false);
  if (rc) return rc;
  if (n == 0) return 0;
  if (!out) return ADAMP_CUDA_E_INVALID;
  if ((rc = cudaSetDevice(ctx->device))) return forget_error(rc);
  for (int i = 0; i < n && !rc; ++i)
    rc = (int)cudaMemcpyAsync(out + i, &ctx->t[ids[i]].args.ts->step, sizeof(double), cudaMemcpyDeviceToHost, ctx->stream);
  if (!rc) rc = (int)cudaStreamSynchronize(ctx->stream);
  return forget_error(rc);
}

int adamp_cuda_last_skipped(adamp_cuda_ctx* ctx, int id, int* skipped) {
  if (!ctx || !skipped || id < 0 || id >= (int)ctx->t.size()) return ADAMP_CUDA_E_INVALID;
  *skipped = 0;
  if (ctx->t[id].desc.numel == 0) return 0;
  int rc = cudaSetDevice(ctx->device);
  int v = 0;
  if (!rc) rc = (int)cudaMemcpyAsync(&v, &ctx->t[id].args.ts->skipped, sizeof(int), cudaMemcpyDeviceToHost, ctx->stream);
  if (!rc) rc = (int)cudaStreamSynchronize(ctx->stream);
  if (rc) return forget_error(rc);
  *skipped = v != 0;
  return 0;
}

int adamp_cuda_scaler_update(adamp_cuda_ctx* ctx, void* state, unsigned mask, int host_found, double growth, double backoff,
                             int64_t interval) {
  static_assert(sizeof(ScalerState) == ADAMP_CUDA_SCALER_BYTES && offsetof(ScalerState, found) == ADAMP_CUDA_SCALER_FOUND(0),
                "ScalerState layout (adamp_cuda.h)");
  if (!ctx || !state || (reinterpret_cast<uintptr_t>(state) & 7u)) return ADAMP_CUDA_E_INVALID;
  if (!(growth > 1.0) || !(backoff > 0.0 && backoff < 1.0) || interval < 1 || (mask >> kScalerSlots) != 0) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(ctx->device);
  if (!rc) rc = (int)ADAMP_LAUNCH(scaler_update_kernel, 1, 1, ctx->stream, static_cast<ScalerState*>(state), mask, host_found, growth, backoff, interval);
  return forget_error(rc);
}

}  // extern "C"
