// A CPU emulation of the small part of CUDA the step kernels use, so the kernels' logic (item
// layout, partial-sum slots, folds, the decision, the pass-2 hand-off, the info record) runs in
// the C++ test on machines without a GPU. It is a test aid, not a simulator:
//   - one block at a time, its threads are cooperative fibers on one OS thread (switching at
//     __syncthreads and warp shuffles), so __shared__ can be a function-local static;
//   - no memory model, timing or occupancy: fences are host fences; races between blocks and the
//     sanitizers' findings are only checked on a real GPU (scripts/gpu-validate.sh).
// Build: g++ -x c++ -DADAMP_CUDA_EMULATION -I native/tests/cuda/emu native/cuda/adamp_cuda.cu ...
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ucontext.h>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __shared__ static

struct dim3_emu {
  unsigned x = 0, y = 0, z = 0;
};

namespace emu {
// Cooperative threads: every CUDA thread of a block is a ucontext fiber on the calling OS thread.
// A fiber runs until it reaches a barrier; a warp barrier passes control to the next lane of the
// same warp, a block barrier to the next thread of the block, so a barrier costs a few switches.
inline thread_local dim3_emu tl_thread, tl_block, tl_grid, tl_bdim;

struct Barrier {
  unsigned expected = 0, arrived = 0, generation = 0;
};

struct Sched {
  unsigned n = 0;
  unsigned cur = 0;
  std::vector<ucontext_t> ctx;
  std::vector<std::vector<char>> stacks;
  std::vector<char> done;
  ucontext_t main;
  const std::function<void()>* body = nullptr;
  Barrier block;
  Barrier warp[32];
  double xchg[1024];
  unsigned live = 0;
};
inline Sched* g = nullptr;

inline void switch_to(unsigned next) {
  const unsigned prev = g->cur;
  if (next == prev) return;
  g->cur = next;
  tl_thread.x = next;
  swapcontext(&g->ctx[prev], &g->ctx[next]);
  tl_thread.x = g->cur;
}

/** Next runnable thread after `from`, within [lo, lo + count). */
inline unsigned next_in(unsigned from, unsigned lo, unsigned count) {
  for (unsigned k = 1; k <= count; ++k) {
    const unsigned t = lo + (from - lo + k) % count;
    if (!g->done[t]) return t;
  }
  return from;
}

inline void wait(Barrier& b, unsigned lo, unsigned count) {
  const unsigned gen = b.generation;
  if (++b.arrived == b.expected) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  unsigned spins = 0;
  while (b.generation == gen) {
    switch_to(next_in(g->cur, lo, count));
    if (++spins > 100000000u) {
      std::fprintf(stderr, "cuda_emu: deadlock at a barrier\n");
      std::abort();
    }
  }
}

inline void trampoline() {
  (*g->body)();
  g->done[g->cur] = 1;
  --g->live;
  // Hand over to any thread still running, or back to the launcher.
  if (g->live > 0) {
    const unsigned t = next_in(g->cur, 0, g->n);
    g->cur = t;
    tl_thread.x = t;
    setcontext(&g->ctx[t]);
  }
  setcontext(&g->main);
}

inline void launch(unsigned grid, unsigned block, const std::function<void()>& body) {
  if (block == 0 || block > 1024) std::abort();
  Sched s;
  Sched* saved = g;
  g = &s;
  s.n = block;
  s.body = &body;
  s.ctx.resize(block);
  s.stacks.resize(block);
  for (unsigned b = 0; b < grid; ++b) {  // blocks one after another: __shared__ is a static
    s.done.assign(block, 0);
    s.live = block;
    s.block = Barrier();
    s.block.expected = block;
    for (unsigned w = 0; w * 32 < block; ++w) {
      s.warp[w] = Barrier();
      s.warp[w].expected = std::min(32u, block - w * 32);
    }
    tl_block.x = b;
    tl_grid.x = grid;
    tl_bdim.x = block;
    for (unsigned t = 0; t < block; ++t) {
      s.stacks[t].resize(256 * 1024);
      getcontext(&s.ctx[t]);
      s.ctx[t].uc_stack.ss_sp = s.stacks[t].data();
      s.ctx[t].uc_stack.ss_size = s.stacks[t].size();
      s.ctx[t].uc_link = nullptr;
      makecontext(&s.ctx[t], trampoline, 0);
    }
    s.cur = 0;
    tl_thread.x = 0;
    swapcontext(&s.main, &s.ctx[0]);
  }
  g = saved;
}

inline void syncthreads() { wait(g->block, 0, g->n); }

template <class T>
inline T shfl_down(T v, unsigned delta) {
  static_assert(sizeof(T) <= sizeof(double), "shuffle of a wide type");
  const unsigned me = g->cur, lane = me & 31, w = me >> 5;
  const unsigned count = std::min(32u, g->n - w * 32);
  std::memcpy(&g->xchg[me], &v, sizeof(T));
  wait(g->warp[w], w * 32, count);
  T r = v;
  if (lane + delta < count) std::memcpy(&r, &g->xchg[me + delta], sizeof(T));
  wait(g->warp[w], w * 32, count);
  return r;
}
}  // namespace emu

#define threadIdx (emu::tl_thread)
#define blockIdx (emu::tl_block)
#define gridDim (emu::tl_grid)
#define blockDim (emu::tl_bdim)

inline void __syncthreads() { emu::syncthreads(); }
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta) { return emu::shfl_down(v, delta); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __nanosleep(unsigned) {
  // One block at a time: a pass-2 item can only wait for work this block already did.
  std::fprintf(stderr, "cuda_emu: a pass-2 item waits for a decision that no earlier item produced\n");
  std::abort();
}
template <class T>
inline T __ldcg(const T* p) { return *p; }
template <class T>
inline T __ldg(const T* p) { return *p; }

struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) double2 { double x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

// ---- runtime API ------------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
};
typedef void* cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
#define cudaStreamNonBlocking 1
struct cudaDeviceProp {
  char name[256];
  int major, minor;
  size_t totalGlobalMem;
};

inline cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : e == cudaErrorMemoryAllocation ? "cudaErrorMemoryAllocation" : "cudaErrorEmulated"; }
inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : e == cudaErrorMemoryAllocation ? "out of memory" : "emulated error"; }
inline cudaError_t cudaRuntimeGetVersion(int* v) { *v = 13000; return cudaSuccess; }
inline cudaError_t cudaDriverGetVersion(int* v) { *v = 0; return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof(*p));
  std::strcpy(p->name, "CPU emulation");
  p->major = 9;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) { *v = 2; return cudaSuccess; }
template <class K>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, K, int, size_t) { *n = 2; return cudaSuccess; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { *s = new char(0); return cudaSuccess; }  // distinct handles
inline cudaError_t cudaStreamDestroy(cudaStream_t s) { delete static_cast<char*>(s); return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
// Device memory: host memory from a ledger with an emulated capacity (so out-of-memory can be
// tested), and pointer queries that know which addresses it handed out.
namespace emu {
constexpr size_t kMemory = size_t(4) << 30;  // 4 GiB
struct Heap {
  std::map<uintptr_t, size_t> blocks;
  size_t used = 0;
};
inline Heap& heap() {
  static Heap* h = new Heap;
  return *h;
}
}  // namespace emu
template <class T>
inline cudaError_t cudaMalloc(T** p, size_t n) {
  emu::Heap& h = emu::heap();
  if (n > emu::kMemory - h.used) { *p = nullptr; return cudaErrorMemoryAllocation; }
  const size_t bytes = (n + 255) / 256 * 256 + 256;
  *p = static_cast<T*>(std::aligned_alloc(256, bytes));
  if (!*p) return cudaErrorMemoryAllocation;
  h.blocks[reinterpret_cast<uintptr_t>(*p)] = n;
  h.used += n;
  return cudaSuccess;
}
inline cudaError_t cudaFree(const void* p) {
  if (!p) return cudaSuccess;
  emu::Heap& h = emu::heap();
  auto it = h.blocks.find(reinterpret_cast<uintptr_t>(p));
  if (it == h.blocks.end()) return cudaErrorInvalidValue;
  h.used -= it->second;
  h.blocks.erase(it);
  std::free(const_cast<void*>(p));
  return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  *free_bytes = emu::kMemory - emu::heap().used;
  *total = emu::kMemory;
  return cudaSuccess;
}
enum cudaMemoryType { cudaMemoryTypeUnregistered = 0, cudaMemoryTypeHost = 1, cudaMemoryTypeDevice = 2, cudaMemoryTypeManaged = 3 };
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
};
inline cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(p);
  emu::Heap& h = emu::heap();
  a->type = cudaMemoryTypeUnregistered;
  a->device = -2;
  auto it = h.blocks.upper_bound(x);
  if (it != h.blocks.begin()) {
    --it;
    if (x < it->first + it->second) {
      a->type = cudaMemoryTypeDevice;
      a->device = 0;
    }
  }
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* p, int v, size_t n) { std::memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
// Streams and events: everything runs when it is queued, so they only need to exist.
typedef void* cudaEvent_t;
#define cudaStreamDefault 0
#define cudaEventDisableTiming 2
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { *e = new char(0); return cudaSuccess; }
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t = nullptr) { return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete static_cast<char*>(e); return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t = nullptr) { std::memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t = nullptr) {
  std::memcpy(d, s, n);
  return cudaSuccess;
}

#define ADAMP_LAUNCH(kernel, grid, block, stream, ...) emu::launch((unsigned)(grid), (unsigned)(block), [&] { kernel(__VA_ARGS__); })
