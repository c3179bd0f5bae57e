// Host side of the CUDA step: contexts, device buffers, the launch schedule.
//
// The schedule (one step of a group): tensors are taken in the caller's order and cut into
// groups of about `config.group` elements. A launch holds whole groups (at most kMaxTensors
// tensors) and hands out items in this order:
//     P1(g0) P1(g1) .. P1(g_lag) P2(g0) P1(g_lag+1) P2(g1) ... P2(g_last)
// so a tensor's pass 2 runs about `lag` groups after its pass 1, while its p, m, v (and g) are
// still in L2 when a group fits there (H100/H200: 50 MB; see shared/PERF-NOTES.md), and late
// enough that its decision is normally ready. Nothing here waits for the device.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "adamp_cuda.h"
#include "device_memory.h"
#include "step_kernel.cuh"

#ifndef ADAMP_LAUNCH
#define ADAMP_LAUNCH(kernel, grid, block, stream, ...) kernel<<<(grid), (block), 0, (stream)>>>(__VA_ARGS__)
#endif

using namespace adamp_cuda;

namespace adamp_cuda {

constexpr int kDefaultChunk = 8192;
constexpr int64_t kDefaultGroup = int64_t(1) << 20;
constexpr int kDefaultLag = 1;

struct DevTensor {
  adamp_cuda_tensor_desc desc;
  TensorArgs args;  // pointers and geometry; copied into each launch
  void* aux = nullptr;
  int external = 0;  // ADAMP_CUDA_EXTERNAL_* buffers: bound by the caller, never allocated or freed here
  double host_step = 0;  // AdamP: completed steps, mirrored (the device increments its own copy)
};

}  // namespace adamp_cuda

struct adamp_cuda_ctx {
  int optimizer = 0;
  int device = 0;
  cudaStream_t stream = nullptr;      // where work is queued now: own_stream or the caller's
  cudaStream_t own_stream = nullptr;  // created and destroyed with the context
  int sm_count = 1;
  int blocks_per_sm = 1;
  int chunk = kDefaultChunk;
  int64_t group = kDefaultGroup;
  int lag = kDefaultLag;
  Hyper* d_hyper = nullptr;
  unsigned* d_queue = nullptr;
  double* d_info = nullptr;
  int64_t d_info_cap = 0;
  std::vector<DevTensor> t;
};

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/** Lays out a tensor's items (see launch.cuh for the modes). */
void plan(TensorArgs& t, const adamp_cuda_tensor_desc& d, int64_t chunk) {
  std::memset(&t, 0, sizeof(t));
  t.numel = d.numel;
  t.outer = d.outer;
  t.channels = d.channels;
  t.inner = d.inner;
  t.chunk = chunk;
  t.spi = t.nps = 1;
  t.tw = t.rp = 1;
  t.rows_per_item = t.nct = 1;
  t.width = d.channels * d.inner;
  if (d.numel == 0) {
    t.mode = kModeSingle;
    t.n_items = 0;
  } else if (!d.eligible) {
    t.mode = kModeSingle;
    t.n_items = ceil_div(d.numel, chunk);
  } else if (d.inner >= 32) {
    t.mode = kModeSegment;
    const int64_t nseg = d.outer * d.channels;
    if (d.inner <= chunk) {
      t.team_log2 = d.inner <= 256 ? 0 : d.inner <= 512 ? 1 : d.inner <= 1024 ? 2 : 3;
      const int64_t teams = kWarps >> t.team_log2;
      t.spi = std::max<int64_t>(1, chunk / d.inner);
      if (t.spi > teams) t.spi = t.spi / teams * teams;
      t.nps = 1;
      t.plen = d.inner;
      t.n_items = ceil_div(nseg, t.spi);
    } else {
      t.team_log2 = 3;
      const int64_t pieces = ceil_div(d.inner, chunk);
      t.plen = (ceil_div(d.inner, pieces) + 3) / 4 * 4;
      t.nps = ceil_div(d.inner, t.plen);
      t.spi = 1;
      t.n_items = nseg * t.nps;
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

void set_vec(TensorArgs& a, bool adam) {
  a.vec = aligned16(a.p) && aligned16(a.g) && aligned16(a.m) && (!adam || aligned16(a.v));
}

int64_t align256(int64_t x) { return (x + 255) / 256 * 256; }

int last_error() { return (int)cudaGetLastError(); }

template <int O>
int launch_step(adamp_cuda_ctx* ctx, const std::vector<int>& ids) {
  // Groups of consecutive tensors of about ctx->group elements, never more than kMaxTensors.
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
    // Whole groups into one launch, up to kMaxTensors tensors.
    size_t ge = gi;
    int ntensors = 0;
    while (ge < groups.size() && ntensors + (int)groups[ge].size() <= kMaxTensors) ntensors += (int)groups[ge++].size();

    LaunchArgs* a = new (std::nothrow) LaunchArgs;
    if (!a) return ADAMP_CUDA_E_NOMEM;
    std::memset(a, 0, sizeof(*a));
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
      a->entry_end[ne] = (int32_t)total;
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

    int rc = 0;
    if (total > INT32_MAX) rc = ADAMP_CUDA_E_INVALID;
    if (rc == 0 && total > 0) {
      a->n_entries = ne;
      a->total_items = (int32_t)total;
      a->n_tensors = nt;
      a->hp = ctx->d_hyper;
      a->queue = ctx->d_queue;
      const int64_t grid = std::min<int64_t>(total, (int64_t)ctx->sm_count * ctx->blocks_per_sm);
      ADAMP_LAUNCH(prep_kernel<O>, 1, kMaxTensors, ctx->stream, *a);
      rc = last_error();
      if (rc == 0) {
        ADAMP_LAUNCH(step_kernel<O>, (unsigned)grid, kThreads, ctx->stream, *a);
        rc = last_error();
      }
    }
    delete a;
    if (rc) return rc;
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

template <int O>
int step_impl(adamp_cuda_ctx* ctx, const int* ids, int n, const Hyper& h) {
  int rc = check_ids(ctx, ids, n, true);
  if (rc) return rc;
  if ((rc = cudaSetDevice(ctx->device))) return rc;
  ADAMP_LAUNCH(set_hyper_kernel, 1, 1, ctx->stream, ctx->d_hyper, h);
  if ((rc = last_error())) return rc;
  std::vector<int> live;
  live.reserve(n);
  for (int i = 0; i < n; ++i) {
    DevTensor& t = ctx->t[ids[i]];
    if (O == kAdamP) t.host_step += 1;
    if (t.desc.numel > 0) live.push_back(ids[i]);
    else if (O == kAdamP) ADAMP_LAUNCH(set_step_kernel, 1, 1, ctx->stream, t.args.st, t.host_step);
  }
  return launch_step<O>(ctx, live);
}

float* buffer(adamp_cuda_ctx* ctx, int id, int which) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size()) return nullptr;
  TensorArgs& a = ctx->t[id].args;
  switch (which) {
    case ADAMP_CUDA_P: return a.p;
    case ADAMP_CUDA_G: return const_cast<float*>(a.g);
    case ADAMP_CUDA_M: return a.m;
    case ADAMP_CUDA_V: return ctx->optimizer == ADAMP_CUDA_ADAMP ? a.v : nullptr;
    default: return nullptr;
  }
}

}  // namespace

extern "C" {

int adamp_cuda_device_count(int* count) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (count) *count = e == cudaSuccess ? n : 0;
  if (e != cudaSuccess) cudaGetLastError();  // not sticky, but leave nothing behind
  return (int)e;
}

int adamp_cuda_device_info(int dev, char* name, size_t name_len, int* major, int* minor, size_t* total_mem) {
  cudaDeviceProp p;
  const cudaError_t e = cudaGetDeviceProperties(&p, dev);
  if (e != cudaSuccess) return (int)e;
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
  return cudaGetErrorName((cudaError_t)code);
}

const char* adamp_cuda_error_string(int code) {
  if (code == ADAMP_CUDA_E_INVALID) return "invalid argument to the adamp CUDA API (tensor id, size or pointer)";
  if (code == ADAMP_CUDA_E_NOMEM) return "out of host memory";
  return cudaGetErrorString((cudaError_t)code);
}

int adamp_cuda_versions(int* runtime, int* driver) {
  int r = 0, d = 0;
  cudaRuntimeGetVersion(&r);
  const cudaError_t e = cudaDriverGetVersion(&d);
  if (runtime) *runtime = r;
  if (driver) *driver = d;
  return (int)e;
}

int adamp_cuda_create(adamp_cuda_ctx** out, int optimizer, int device, const adamp_cuda_config* config) {
  if (!out || (optimizer != ADAMP_CUDA_ADAMP && optimizer != ADAMP_CUDA_SGDP)) return ADAMP_CUDA_E_INVALID;
  *out = nullptr;
  adamp_cuda_ctx* c = new (std::nothrow) adamp_cuda_ctx;
  if (!c) return ADAMP_CUDA_E_NOMEM;
  c->optimizer = optimizer;
  c->device = device;
  if (config) {
    if (config->chunk > 0) c->chunk = std::max(256, config->chunk / 4 * 4);
    if (config->group > 0) c->group = config->group;
    if (config->lag > 0) c->lag = config->lag;
  }
  int rc = cudaSetDevice(device);
  // A blocking stream: ordered after work the caller queued on the legacy default stream (e.g. the
  // backward pass that wrote the gradients), as users of a GPU optimizer expect.
  if (!rc) rc = cudaStreamCreateWithFlags(&c->own_stream, cudaStreamDefault);
  c->stream = c->own_stream;
  if (!rc) rc = cudaDeviceGetAttribute(&c->sm_count, cudaDevAttrMultiProcessorCount, device);
  if (!rc) {
    rc = optimizer == ADAMP_CUDA_ADAMP
             ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&c->blocks_per_sm, step_kernel<kAdamP>, kThreads, 0)
             : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&c->blocks_per_sm, step_kernel<kSGDP>, kThreads, 0);
  }
  if (!rc && config && config->blocks_per_sm > 0) c->blocks_per_sm = std::min(c->blocks_per_sm, config->blocks_per_sm);
  if (!rc && c->blocks_per_sm < 1) c->blocks_per_sm = 1;
  if (!rc) rc = dev_alloc(reinterpret_cast<void**>(&c->d_hyper), sizeof(Hyper));
  if (!rc) rc = dev_alloc(reinterpret_cast<void**>(&c->d_queue), 2 * sizeof(unsigned));
  if (!rc) rc = cudaMemsetAsync(c->d_queue, 0, 2 * sizeof(unsigned), c->stream);
  if (!rc) rc = cudaMemsetAsync(c->d_hyper, 0, sizeof(Hyper), c->stream);
  if (rc) {
    adamp_cuda_destroy(c);
    cudaGetLastError();
    return rc;
  }
  *out = c;
  return 0;
}

void adamp_cuda_destroy(adamp_cuda_ctx* ctx) {
  if (!ctx) return;
  cudaSetDevice(ctx->device);
  if (ctx->stream) cudaStreamSynchronize(ctx->stream);
  for (DevTensor& t : ctx->t) {
    if (!(t.external & ADAMP_CUDA_EXTERNAL_P)) dev_free(t.args.p);
    if (!(t.external & ADAMP_CUDA_EXTERNAL_G)) dev_free(const_cast<float*>(t.args.g));
    dev_free(t.args.m);
    dev_free(t.args.v);
    dev_free(t.aux);
  }
  dev_free(ctx->d_hyper);
  dev_free(ctx->d_queue);
  dev_free(ctx->d_info);
  if (ctx->own_stream) cudaStreamDestroy(ctx->own_stream);
  delete ctx;
}

int adamp_cuda_add_tensor(adamp_cuda_ctx* ctx, const adamp_cuda_tensor_desc* desc, int* id) {
  return adamp_cuda_add_tensor_ex(ctx, desc, 0, id);
}

int adamp_cuda_add_tensor_ex(adamp_cuda_ctx* ctx, const adamp_cuda_tensor_desc* desc, int external, int* id) {
  if (!ctx || !desc || !id || (external & ~(ADAMP_CUDA_EXTERNAL_P | ADAMP_CUDA_EXTERNAL_G))) return ADAMP_CUDA_E_INVALID;
  const adamp_cuda_tensor_desc& d = *desc;
  if (d.numel < 0 || d.outer < 1 || d.channels < 1 || d.inner < 1) {
    if (!(d.numel == 0)) return ADAMP_CUDA_E_INVALID;
  }
  if (d.numel > 0 && d.outer * d.channels * d.inner != d.numel) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(ctx->device);
  if (rc) return rc;
  DevTensor t;
  t.desc = d;
  t.external = external;
  plan(t.args, d, ctx->chunk);
  TensorArgs& a = t.args;
  const size_t bytes = (size_t)d.numel * sizeof(float);
  const bool adam = ctx->optimizer == ADAMP_CUDA_ADAMP;
  float* bufs[4] = {nullptr, nullptr, nullptr, nullptr};
  for (int b = 0; b < 4 && !rc && bytes > 0; ++b) {
    if (b == 3 && !adam) break;
    if ((b == 0 && (external & ADAMP_CUDA_EXTERNAL_P)) || (b == 1 && (external & ADAMP_CUDA_EXTERNAL_G))) continue;
    rc = dev_alloc(reinterpret_cast<void**>(&bufs[b]), bytes);
    if (!rc) rc = cudaMemsetAsync(bufs[b], 0, bytes, ctx->stream);
  }
  // Auxiliary block: state, partial sums, per-channel sums and coefficients, info partials.
  const bool elig = a.mode != kModeSingle;
  const int64_t off_state = 0;
  const int64_t off_part = align256(off_state + (int64_t)sizeof(TensorState));
  const int64_t off_chsum = align256(off_part + partial_slots(a) * (int64_t)sizeof(adamp::ChannelSums));
  const int64_t off_coef = align256(off_chsum + (elig ? d.channels : 0) * (int64_t)sizeof(adamp::ChannelSums));
  const int64_t off_info = align256(off_coef + (elig ? d.channels : 0) * (int64_t)sizeof(adamp::ProjCoef));
  const int64_t aux_bytes = align256(off_info + a.n_items * 3 * (int64_t)sizeof(double));
  if (!rc) rc = dev_alloc(&t.aux, (size_t)aux_bytes);
  if (!rc) rc = cudaMemsetAsync(t.aux, 0, (size_t)aux_bytes, ctx->stream);
  if (rc) {
    for (float* b : bufs) dev_free(b);
    dev_free(t.aux);
    cudaGetLastError();
    return rc;
  }
  char* base = static_cast<char*>(t.aux);
  a.p = bufs[0];
  a.g = bufs[1];
  a.m = bufs[2];
  a.v = bufs[3];
  a.st = reinterpret_cast<TensorState*>(base + off_state);
  a.part = reinterpret_cast<adamp::ChannelSums*>(base + off_part);
  a.chsum = reinterpret_cast<adamp::ChannelSums*>(base + off_chsum);
  a.coef = reinterpret_cast<adamp::ProjCoef*>(base + off_coef);
  a.info_part = reinterpret_cast<double*>(base + off_info);
  set_vec(a, adam);
  ctx->t.push_back(t);
  *id = (int)ctx->t.size() - 1;
  return 0;
}

int adamp_cuda_num_tensors(const adamp_cuda_ctx* ctx) { return ctx ? (int)ctx->t.size() : 0; }

int adamp_cuda_upload(adamp_cuda_ctx* ctx, int id, int which, const float* host, int64_t numel) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size()) return ADAMP_CUDA_E_INVALID;
  float* dst = buffer(ctx, id, which);
  const bool has = dst != nullptr || (which >= ADAMP_CUDA_P && which <= ADAMP_CUDA_M) ||
                   (which == ADAMP_CUDA_V && ctx->optimizer == ADAMP_CUDA_ADAMP);
  if (!has || numel != ctx->t[id].desc.numel || (!host && numel > 0)) return ADAMP_CUDA_E_INVALID;
  if (numel == 0) return 0;
  int rc = cudaSetDevice(ctx->device);
  if (rc) return rc;
  // From pageable memory the call returns once `host` has been staged: the caller may reuse it.
  return (int)cudaMemcpyAsync(dst, host, (size_t)numel * sizeof(float), cudaMemcpyHostToDevice, ctx->stream);
}

int adamp_cuda_download(adamp_cuda_ctx* ctx, int id, int which, float* host, int64_t numel) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size()) return ADAMP_CUDA_E_INVALID;
  float* src = buffer(ctx, id, which);
  const bool has = src != nullptr || (which >= ADAMP_CUDA_P && which <= ADAMP_CUDA_M) ||
                   (which == ADAMP_CUDA_V && ctx->optimizer == ADAMP_CUDA_ADAMP);
  if (!has || numel != ctx->t[id].desc.numel || (!host && numel > 0)) return ADAMP_CUDA_E_INVALID;
  if (numel == 0) return 0;
  int rc = cudaSetDevice(ctx->device);
  if (!rc) rc = cudaMemcpyAsync(host, src, (size_t)numel * sizeof(float), cudaMemcpyDeviceToHost, ctx->stream);
  if (!rc) rc = cudaStreamSynchronize(ctx->stream);
  return rc;
}

float* adamp_cuda_device_ptr(adamp_cuda_ctx* ctx, int id, int which) { return buffer(ctx, id, which); }

int adamp_cuda_set_step(adamp_cuda_ctx* ctx, int id, int64_t completed_steps) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size() || completed_steps < 0) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(ctx->device);
  if (rc) return rc;
  DevTensor& t = ctx->t[id];
  t.host_step = (double)completed_steps;
  ADAMP_LAUNCH(set_step_kernel, 1, 1, ctx->stream, t.args.st, t.host_step);
  return last_error();
}

int adamp_cuda_step_adamp(adamp_cuda_ctx* ctx, const int* ids, int n, const adamp_cuda_adamp_hp* hp) {
  if (!ctx || !hp || ctx->optimizer != ADAMP_CUDA_ADAMP) return ADAMP_CUDA_E_INVALID;
  Hyper h;
  std::memset(&h, 0, sizeof(h));
  h.lr = hp->lr;
  h.beta1 = hp->beta1;
  h.beta2 = hp->beta2;
  h.eps = hp->eps;
  h.weight_decay = hp->weight_decay;
  h.delta = hp->delta;
  h.wd_ratio = hp->wd_ratio;
  h.nesterov = hp->nesterov ? 1 : 0;
  return step_impl<kAdamP>(ctx, ids, n, h);
}

int adamp_cuda_step_sgdp(adamp_cuda_ctx* ctx, const int* ids, int n, const adamp_cuda_sgdp_hp* hp) {
  if (!ctx || !hp || ctx->optimizer != ADAMP_CUDA_SGDP) return ADAMP_CUDA_E_INVALID;
  Hyper h;
  std::memset(&h, 0, sizeof(h));
  h.lr = hp->lr;
  h.momentum = hp->momentum;
  h.dampening = hp->dampening;
  h.weight_decay = hp->weight_decay;
  h.eps = hp->eps;
  h.delta = hp->delta;
  h.wd_ratio = hp->wd_ratio;
  h.nesterov = hp->nesterov ? 1 : 0;
  return step_impl<kSGDP>(ctx, ids, n, h);
}

int adamp_cuda_info(adamp_cuda_ctx* ctx, const int* ids, int n, double* info) {
  int rc = check_ids(ctx, ids, n, false);
  if (rc) return rc;
  if (n == 0) return 0;
  if (!info) return ADAMP_CUDA_E_INVALID;
  if ((rc = cudaSetDevice(ctx->device))) return rc;
  if (ctx->d_info_cap < n) {
    dev_free(ctx->d_info);
    ctx->d_info = nullptr;
    ctx->d_info_cap = 0;
    if ((rc = dev_alloc(reinterpret_cast<void**>(&ctx->d_info), (size_t)n * adamp::kInfoStride * sizeof(double)))) return rc;
    ctx->d_info_cap = n;
  }
  if ((rc = cudaMemsetAsync(ctx->d_info, 0, (size_t)n * adamp::kInfoStride * sizeof(double), ctx->stream))) return rc;
  InfoArgs* a = new (std::nothrow) InfoArgs;
  if (!a) return ADAMP_CUDA_E_NOMEM;
  for (int i0 = 0; i0 < n && !rc; i0 += kMaxInfoTensors) {
    std::memset(a, 0, sizeof(*a));
    a->out = ctx->d_info;
    int cnt = 0;
    for (int i = i0; i < n && i < i0 + kMaxInfoTensors; ++i) {
      const DevTensor& t = ctx->t[ids[i]];
      if (t.desc.numel == 0) continue;
      InfoTensor& it = a->t[cnt++];
      it.st = t.args.st;
      it.info_part = t.args.info_part;
      it.n_items = t.args.n_items;
      it.mode = t.args.mode;
      it.out = i;
    }
    if (cnt > 0) {
      ADAMP_LAUNCH(info_kernel, cnt, kThreads, ctx->stream, *a);
      rc = last_error();
    }
  }
  delete a;
  if (!rc)
    rc = cudaMemcpyAsync(info, ctx->d_info, (size_t)n * adamp::kInfoStride * sizeof(double), cudaMemcpyDeviceToHost,
                         ctx->stream);
  if (!rc) rc = cudaStreamSynchronize(ctx->stream);
  if (rc) return rc;
  for (int i = 0; i < n; ++i) {
    const DevTensor& t = ctx->t[ids[i]];
    if (t.desc.numel != 0) continue;
    double* o = info + (int64_t)i * adamp::kInfoStride;
    if (t.desc.eligible) {
      adamp::DecisionResult d;
      std::memset(&d, 0, sizeof(d));
      d.code = adamp::kDecisionNone;
      d.channel_max_cos = d.channel_threshold = d.layer_cos = d.layer_threshold = NAN;
      adamp::write_info(o, d, 0.0, 0.0);
    } else {
      adamp::write_info_not_eligible(o, 0.0, 0.0, 0.0);
    }
  }
  return 0;
}

int adamp_cuda_sync(adamp_cuda_ctx* ctx) {
  if (!ctx) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(ctx->device);
  return rc ? rc : (int)cudaStreamSynchronize(ctx->stream);
}

void* adamp_cuda_stream(adamp_cuda_ctx* ctx) { return ctx ? (void*)ctx->stream : nullptr; }

int adamp_cuda_bind(adamp_cuda_ctx* ctx, int id, int which, float* device_ptr) {
  if (!ctx || id < 0 || id >= (int)ctx->t.size()) return ADAMP_CUDA_E_INVALID;
  DevTensor& t = ctx->t[id];
  const int flag = which == ADAMP_CUDA_P ? ADAMP_CUDA_EXTERNAL_P : which == ADAMP_CUDA_G ? ADAMP_CUDA_EXTERNAL_G : 0;
  if (!flag || !(t.external & flag) || (!device_ptr && t.desc.numel > 0)) return ADAMP_CUDA_E_INVALID;
  if (which == ADAMP_CUDA_P) t.args.p = device_ptr;
  else t.args.g = device_ptr;
  set_vec(t.args, ctx->optimizer == ADAMP_CUDA_ADAMP);
  return 0;
}

int adamp_cuda_set_stream(adamp_cuda_ctx* ctx, void* stream) {
  if (!ctx) return ADAMP_CUDA_E_INVALID;
  cudaStream_t next = stream ? static_cast<cudaStream_t>(stream) : ctx->own_stream;
  if (next == ctx->stream) return 0;
  int rc = cudaSetDevice(ctx->device);
  if (rc) return rc;
  // What was queued on the old stream (uploads, an earlier step) comes before what follows.
  cudaEvent_t ev = nullptr;
  rc = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
  if (!rc) rc = cudaEventRecord(ev, ctx->stream);
  if (!rc) rc = cudaStreamWaitEvent(next, ev, 0);
  if (ev) cudaEventDestroy(ev);
  if (rc) return rc;
  ctx->stream = next;
  return 0;
}

int adamp_cuda_record(adamp_cuda_ctx* ctx, void** event) {
  if (!ctx || !event) return ADAMP_CUDA_E_INVALID;
  *event = nullptr;
  int rc = cudaSetDevice(ctx->device);
  if (rc) return rc;
  cudaEvent_t ev = nullptr;
  rc = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
  if (!rc) rc = cudaEventRecord(ev, ctx->stream);
  if (rc) {
    if (ev) cudaEventDestroy(ev);
    return rc;
  }
  *event = static_cast<void*>(ev);
  return 0;
}

int adamp_cuda_event_wait(void* event) {
  if (!event) return ADAMP_CUDA_E_INVALID;
  cudaEvent_t ev = static_cast<cudaEvent_t>(event);
  const int rc = (int)cudaEventSynchronize(ev);
  cudaEventDestroy(ev);
  return rc;
}

}  // extern "C"
