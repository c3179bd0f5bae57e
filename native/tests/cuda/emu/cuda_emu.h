// A CPU emulation of the small part of CUDA the step kernels use, so the kernels' logic (item
// layout, partial-sum slots, folds, the decision, the pass-2 hand-off, the info record) and their
// cross-block synchronisation run in the C++ tests on machines without a GPU. A test aid, not a
// simulator:
//   - blocks run concurrently, one OS thread per resident block (a pool of workers that take
//     block indices from a counter, as blocks become resident on a GPU); a block's threads are
//     cooperative fibers on its worker (switching at __syncthreads and warp shuffles), so
//     __shared__ is a function-local `static thread_local`;
//   - cross-block memory traffic follows CUDA's rules in a form ThreadSanitizer understands
//     (TSan models acquire/release atomics but not standalone fences):
//       atomicAdd / atomicExch   relaxed read-modify-writes, as on the device; the first one after
//                                a __threadfence(), with no __syncthreads() between, is a release
//                                (the fence's release half)
//       __ldcv                   a relaxed atomic load (the `volatile` spin on a flag)
//       __threadfence()          the acquire half: every atomic location this thread read since
//                                its last fence is read again with acquire order; then the next
//                                atomic write (before a barrier) is a release
//       __ldcg / __ldg / plain   plain accesses: TSan reports any of them that no fence orders
//     so a removed fence or a flag published before its data shows up as a data race in the
//     TSan build (native/tests/cuda/CMakeLists.txt, ADAMP_CUDA_EMU_TSAN);
//   - no timing, occupancy or caches: what the L1/L2 paths (__ldcg) and compute-sanitizer check
//     is only checked on a real GPU (scripts/gpu-validate.sh). Streams run everything when it is
//     queued.
// Knobs (env): ADAMP_EMU_SMS (emulated multiprocessors, default 2; 2 blocks per SM are resident);
// ADAMP_EMU_EVENT_WAIT_MS (default 0): cudaEventSynchronize sleeps this long first, as if the
// device were still busy, so a wait for queued work (cudaWhenDone) is in flight for a while.
// Build: g++ -x c++ -DADAMP_CUDA_EMULATION -I native/tests/cuda/emu native/cuda/adamp_cuda.cu ...
#pragma once

#include <sys/mman.h>
#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __grid_constant__
#define __shared__ static thread_local

#if defined(__SANITIZE_THREAD__)
#define ADAMP_EMU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ADAMP_EMU_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ADAMP_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ADAMP_EMU_ASAN 1
#endif
#endif
// note: a fiber switch is a handful of register moves (x86-64); swapcontext also swaps the signal
// mask with a system call, which made the emulated tests spend half their time in the kernel.
#if defined(__x86_64__) && !defined(ADAMP_EMU_ASAN)
#define ADAMP_EMU_ASM_SWITCH 1
#endif

#if defined(ADAMP_EMU_TSAN)
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
}
#endif

#if defined(ADAMP_EMU_ASM_SWITCH)
// adamp_emu_switch(&save_sp, next_sp): saves the callee-saved registers, the x87 control word
// and MXCSR on this stack, stores the stack pointer, loads the other one and restores its state.
extern "C" void adamp_emu_switch(void** save_sp, void* next_sp);
asm(R"(
  .text
  .weak adamp_emu_switch
  .type adamp_emu_switch, @function
adamp_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr 8(%rsp)
  fnstcw (%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  fldcw (%rsp)
  ldmxcsr 8(%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size adamp_emu_switch, .-adamp_emu_switch
)");
#endif

struct dim3_emu {
  unsigned x = 0, y = 0, z = 0;
};

namespace emu {

inline thread_local dim3_emu tl_thread, tl_block, tl_grid, tl_bdim;

/** What a CUDA thread's fences and atomics have done since its last fence (see the header). */
struct FenceState {
  bool release_pending = false;
  int nread = 0;
  const unsigned* read[8];
};

struct Fiber {
  void* sp = nullptr;  // asm switch: the saved stack pointer
  ucontext_t uc;       // fallback switch
  void* stack = nullptr;
  size_t stack_size = 0;
  void* tsan = nullptr;
  bool done = true;
  FenceState fence;
};

struct Barrier {
  unsigned expected = 0, arrived = 0, generation = 0;
};

/** One OS thread that runs blocks, one at a time, each as fibers. */
struct Worker {
  std::vector<std::unique_ptr<Fiber>> fibers;
  Fiber main;  // the worker thread itself
  unsigned n = 0, cur = 0, live = 0;
  const std::function<void()>* body = nullptr;
  Barrier block;
  Barrier warp[32];
  double xchg[1024];
  FenceState host_fence;  // fences outside kernels (never used by the kernels)
};
inline thread_local Worker* tl_worker = nullptr;

inline FenceState& fence_state() {
  static thread_local FenceState outside;
  Worker* w = tl_worker;
  return (w && w->live > 0) ? w->fibers[w->cur]->fence : outside;
}

[[noreturn]] inline void fatal(const char* what) {
  std::fprintf(stderr, "cuda_emu: %s\n", what);
  std::fflush(stderr);
  std::abort();
}

inline void fiber_entry();

inline void switch_fiber(Fiber* from, Fiber* to) {
#if defined(ADAMP_EMU_TSAN)
  __tsan_switch_to_fiber(to->tsan, 0);  // 0: the switch orders everything before it (one block's threads)
#endif
#if defined(ADAMP_EMU_ASM_SWITCH)
  adamp_emu_switch(&from->sp, to->sp);
#else
  swapcontext(&from->uc, &to->uc);
#endif
}

inline void init_fiber(Fiber& f) {
  f.stack_size = size_t(256) << 10;
  f.stack = mmap(nullptr, f.stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (f.stack == MAP_FAILED) fatal("cannot map a fiber stack");
  mprotect(f.stack, 4096, PROT_NONE);  // guard page
#if defined(ADAMP_EMU_TSAN)
  f.tsan = __tsan_create_fiber(0);
#endif
#if defined(ADAMP_EMU_ASM_SWITCH)
  // The frame adamp_emu_switch pops: control words, six registers, then `ret` into fiber_entry
  // with the stack aligned as after a call.
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + f.stack_size) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top - 128);
  std::memset(sp, 0, 128);
  const uint16_t fpcw = 0x037F;
  const uint32_t mxcsr = 0x1F80;
  std::memcpy(&sp[0], &fpcw, sizeof(fpcw));
  std::memcpy(&sp[1], &mxcsr, sizeof(mxcsr));
  sp[8] = reinterpret_cast<uint64_t>(&fiber_entry);
  f.sp = sp;
#else
  getcontext(&f.uc);
  f.uc.uc_stack.ss_sp = f.stack;
  f.uc.uc_stack.ss_size = f.stack_size;
  f.uc.uc_link = nullptr;
  makecontext(&f.uc, fiber_entry, 0);
#endif
}

/** Next runnable thread after `from`, within [lo, lo + count). */
inline unsigned next_in(Worker& w, unsigned from, unsigned lo, unsigned count) {
  for (unsigned k = 1; k <= count; ++k) {
    const unsigned t = lo + (from - lo + k) % count;
    if (!w.fibers[t]->done) return t;
  }
  return from;
}

inline void switch_to(Worker& w, unsigned next) {
  const unsigned prev = w.cur;
  if (next == prev) return;
  w.cur = next;
  tl_thread.x = next;
  switch_fiber(w.fibers[prev].get(), w.fibers[next].get());
  tl_thread.x = w.cur;
}

/** A fiber runs the kernel body once per block it is part of, then parks. */
inline void fiber_entry() {
  for (;;) {
    Worker& w = *tl_worker;
    tl_thread.x = w.cur;
    (*w.body)();
    Fiber* me = w.fibers[w.cur].get();
    me->done = true;
    if (--w.live > 0) {
      const unsigned t = next_in(w, w.cur, 0, w.n);
      w.cur = t;
      tl_thread.x = t;
      switch_fiber(me, w.fibers[t].get());
    } else {
      switch_fiber(me, &w.main);
    }
  }
}

inline void wait(Barrier& b, unsigned lo, unsigned count) {
  Worker& w = *tl_worker;
  const unsigned gen = b.generation;
  if (++b.arrived == b.expected) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  unsigned spins = 0;
  while (b.generation == gen) {
    switch_to(w, next_in(w, w.cur, lo, count));
    if (++spins > 100000000u) fatal("deadlock at a barrier");
  }
}

inline void run_block(Worker& w, unsigned b, unsigned grid, unsigned block, const std::function<void()>& body) {
  while (w.fibers.size() < block) {
    w.fibers.emplace_back(new Fiber);
    init_fiber(*w.fibers.back());
  }
  w.n = block;
  w.body = &body;
  w.block = Barrier();
  w.block.expected = block;
  for (unsigned k = 0; k * 32 < block; ++k) {
    w.warp[k] = Barrier();
    w.warp[k].expected = std::min(32u, block - k * 32);
  }
  for (unsigned t = 0; t < block; ++t) {
    w.fibers[t]->done = false;
    w.fibers[t]->fence = FenceState();
  }
  w.live = block;
  tl_block.x = b;
  tl_grid.x = grid;
  tl_bdim.x = block;
  w.cur = 0;
  tl_thread.x = 0;
  switch_fiber(&w.main, w.fibers[0].get());
}

/** The emulated device: persistent workers, one kernel at a time. */
struct Device {
  std::mutex launch_mu;  // one kernel at a time (every stream is synchronous here)
  std::mutex mu;
  std::condition_variable start, finish;
  unsigned workers = 0;
  uint64_t generation = 0;
  const std::function<void()>* body = nullptr;
  unsigned grid = 0, block = 0, active = 0, finished = 0;
  std::atomic<unsigned> next{0};

  void work(unsigned index) {
    Worker w;
    tl_worker = &w;
#if defined(ADAMP_EMU_TSAN)
    w.main.tsan = __tsan_get_current_fiber();
#endif
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu);
        start.wait(lock, [&] { return generation != seen; });
        seen = generation;
        if (index >= active) continue;
      }
      for (unsigned b; (b = next.fetch_add(1)) < grid;) run_block(w, b, grid, block, *body);
      std::lock_guard<std::mutex> lock(mu);
      if (++finished == active) finish.notify_all();
    }
  }
};

inline Device& device() {
  static Device* d = new Device;  // never destroyed: its workers live until the process exits
  return *d;
}

/** Resident blocks: ADAMP_EMU_SMS multiprocessors x 2. */
inline int emulated_sms() {
  static const int n = [] {
    const char* s = std::getenv("ADAMP_EMU_SMS");
    const int v = s ? std::atoi(s) : 2;
    return v >= 1 && v <= 64 ? v : 2;
  }();
  return n;
}

inline void launch(unsigned grid, unsigned block, const std::function<void()>& body) {
  if (block == 0 || block > 1024) fatal("bad block size");
  if (grid == 0) return;
  Device& d = device();
  std::lock_guard<std::mutex> one(d.launch_mu);
  std::unique_lock<std::mutex> lock(d.mu);
  const unsigned want = std::min<unsigned>(grid, 2u * (unsigned)emulated_sms());
  while (d.workers < want) {
    std::thread([&d, i = d.workers] { d.work(i); }).detach();
    ++d.workers;
  }
  d.body = &body;
  d.grid = grid;
  d.block = block;
  d.active = want;
  d.finished = 0;
  d.next.store(0);
  ++d.generation;
  d.start.notify_all();
  d.finish.wait(lock, [&] { return d.finished == d.active; });
}

inline void syncthreads() {
  // note: a fence's release half goes to the next atomic write *with no barrier between*: the
  // kernels publish with `__threadfence(); atomic` back to back, and a barrier means the thread
  // went on to other work whose writes that fence does not order (a pending release kept across
  // one once hid a removed fence before the decision's flag).
  tl_worker->fibers[tl_worker->cur]->fence.release_pending = false;
  wait(tl_worker->block, 0, tl_worker->n);
}

template <class T>
inline T shfl_down(T v, unsigned delta) {
  static_assert(sizeof(T) <= sizeof(double), "shuffle of a wide type");
  Worker& w = *tl_worker;
  const unsigned me = w.cur, lane = me & 31, k = me >> 5;
  const unsigned count = std::min(32u, w.n - k * 32);
  std::memcpy(&w.xchg[me], &v, sizeof(T));
  wait(w.warp[k], k * 32, count);
  T r = v;
  if (lane + delta < count) std::memcpy(&r, &w.xchg[me + delta], sizeof(T));
  wait(w.warp[k], k * 32, count);
  return r;
}

inline void note_read(const void* p) {
  FenceState& f = fence_state();
  if (f.nread < 8) f.read[f.nread++] = static_cast<const unsigned*>(p);
}

/** The release half of a pending fence goes to this atomic write. */
inline bool take_release() {
  FenceState& f = fence_state();
  const bool r = f.release_pending;
  f.release_pending = false;
  return r;
}

inline uint64_t now_ns() {
  return (uint64_t)std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace emu

#define threadIdx (emu::tl_thread)
#define blockIdx (emu::tl_block)
#define gridDim (emu::tl_grid)
#define blockDim (emu::tl_bdim)

inline void __syncthreads() { emu::syncthreads(); }
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta) { return emu::shfl_down(v, delta); }

template <class T>
inline T emu_rmw_add(T* p, T v) {
  static_assert(sizeof(T) == 4, "32-bit atomics only");
  const T r = emu::take_release() ? __atomic_fetch_add(p, v, __ATOMIC_RELEASE) : __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
  emu::note_read(p);
  return r;
}
template <class T>
inline T emu_rmw_exch(T* p, T v) {
  static_assert(sizeof(T) == 4, "32-bit atomics only");
  const T r = emu::take_release() ? __atomic_exchange_n(p, v, __ATOMIC_RELEASE) : __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
  emu::note_read(p);
  return r;
}
inline unsigned atomicAdd(unsigned* p, unsigned v) { return emu_rmw_add(p, v); }
inline int atomicAdd(int* p, int v) { return emu_rmw_add(p, v); }
inline unsigned atomicExch(unsigned* p, unsigned v) { return emu_rmw_exch(p, v); }
inline int atomicExch(int* p, int v) { return emu_rmw_exch(p, v); }
inline void __threadfence() {
  emu::FenceState& f = emu::fence_state();
  for (int i = 0; i < f.nread; ++i) (void)__atomic_load_n(f.read[i], __ATOMIC_ACQUIRE);
  f.nread = 0;
  f.release_pending = true;
#if !defined(ADAMP_EMU_TSAN)  // TSan models the acquire/release above, not standalone fences
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}
/** A load that always goes to memory (the device's spin on a flag): a relaxed atomic load here. */
inline int __ldcv(const int* p) {
  const int v = __atomic_load_n(p, __ATOMIC_RELAXED);
  emu::note_read(p);
  return v;
}
inline unsigned __ldcv(const unsigned* p) {
  const unsigned v = __atomic_load_n(p, __ATOMIC_RELAXED);
  emu::note_read(p);
  return v;
}
inline void __nanosleep(unsigned) { std::this_thread::yield(); }
inline long long clock64() { return (long long)emu::now_ns(); }
[[noreturn]] inline void __trap() { emu::fatal("__trap() in a kernel"); }
template <class T>
inline T __ldcg(const T* p) { return *p; }
template <class T>
inline T __ldg(const T* p) { return *p; }

struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(8) uint2 { unsigned x, y; };
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
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaPeekAtLastError() { return cudaSuccess; }
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
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) { *v = emu::emulated_sms(); return cudaSuccess; }
template <class K>
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, K, int, size_t) { *n = 2; return cudaSuccess; }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { *s = new char(0); return cudaSuccess; }  // distinct handles
inline cudaError_t cudaStreamDestroy(cudaStream_t s) { delete static_cast<char*>(s); return cudaSuccess; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1 };
inline cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus* s) { *s = cudaStreamCaptureStatusNone; return cudaSuccess; }
// Device memory: host memory from a ledger with an emulated capacity (so out-of-memory can be
// tested), and pointer queries that know which addresses it handed out. Any thread may call these
// (the library frees on a worker thread).
namespace emu {
constexpr size_t kMemory = size_t(4) << 30;  // 4 GiB
struct Heap {
  std::mutex mu;
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
  std::lock_guard<std::mutex> lock(h.mu);
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
  std::lock_guard<std::mutex> lock(h.mu);
  auto it = h.blocks.find(reinterpret_cast<uintptr_t>(p));
  if (it == h.blocks.end()) return cudaErrorInvalidValue;
  h.used -= it->second;
  h.blocks.erase(it);
  std::free(const_cast<void*>(p));
  return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void** p, size_t n) {
  *p = std::malloc(n ? n : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFreeHost(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  emu::Heap& h = emu::heap();
  std::lock_guard<std::mutex> lock(h.mu);
  *free_bytes = emu::kMemory - h.used;
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
  std::lock_guard<std::mutex> lock(h.mu);
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
inline cudaError_t cudaEventSynchronize(cudaEvent_t) {
  static const long wait_ms = [] {
    const char* v = std::getenv("ADAMP_EMU_EVENT_WAIT_MS");
    return v ? std::max(0L, std::strtol(v, nullptr, 10)) : 0L;
  }();
  if (wait_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
  return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete static_cast<char*>(e); return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t = nullptr) { std::memset(p, v, n); return cudaSuccess; }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t = nullptr) {
  std::memcpy(d, s, n);
  return cudaSuccess;
}

// A launch runs the kernel on the emulated device and returns when it finished (cudaSuccess).
#define ADAMP_LAUNCH(kernel, grid, block, stream, ...) \
  ((void)(stream), emu::launch((unsigned)(grid), (unsigned)(block), [&] { kernel(__VA_ARGS__); }), cudaSuccess)
