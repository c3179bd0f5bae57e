// Device memory of the adamp CUDA API: the counted allocator, device tensors' buffers, pointer
// queries for external memory, and copies between host arrays and (strided) device views.
#include <cuda_runtime.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "adamp_cuda.h"
#include "device_memory.h"
#include "runtime.h"

namespace adamp_cuda {

namespace {

struct Ledger {
  std::mutex mu;
  std::unordered_map<void*, size_t> live;
  int64_t live_bytes = 0;
  int64_t total = 0;
  int64_t peak = 0;
};

Ledger& ledger() {
  static Ledger* l = new Ledger;  // never destroyed: finalizers may run during process exit
  return *l;
}

/** The background thread that frees released buffers (see device_memory.h). */
struct Freer {
  struct Item {
    void* p;
    int device;
    bool pinned;
  };
  std::mutex mu;
  std::condition_variable wake, idle;
  std::deque<Item> queue;
  bool started = false, busy = false, stopping = false;

  void push(void* p, bool pinned) {
    int device = 0;
    cudaGetDevice(&device);
    std::lock_guard<std::mutex> lock(mu);
    if (stopping) return;  // the process is exiting: the driver frees everything
    queue.push_back(Item{p, device, pinned});
    if (!started) {
      started = true;
      std::thread([this] { run(); }).detach();
    }
    wake.notify_one();
  }
  void run() {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      wake.wait(lock, [&] { return !queue.empty() || stopping; });
      if (stopping) return;
      const Item it = queue.front();
      queue.pop_front();
      busy = true;
      lock.unlock();
      cudaSetDevice(it.device);
      forget_error(it.pinned ? (int)cudaFreeHost(it.p) : (int)cudaFree(it.p));
      lock.lock();
      busy = false;
      if (queue.empty()) idle.notify_all();
    }
  }
  void drain() {
    std::unique_lock<std::mutex> lock(mu);
    idle.wait(lock, [&] { return (queue.empty() && !busy) || stopping; });
  }
  void stop() {
    std::lock_guard<std::mutex> lock(mu);
    stopping = true;
    queue.clear();
    wake.notify_all();
    idle.notify_all();
  }
};

Freer& freer() {
  static Freer* f = [] {
    Freer* x = new Freer;  // never destroyed, like the ledger
    std::atexit([] { freer().stop(); });  // no CUDA calls while the runtime shuts down
    return x;
  }();
  return *f;
}

/** A strided view: dst[off_d(i)] = src[off_s(i)] for every multi-index i of `shape`. */
struct StridedArgs {
  int64_t shape[ADAMP_CUDA_MAX_DIMS];
  int64_t dst_stride[ADAMP_CUDA_MAX_DIMS];
  int64_t src_stride[ADAMP_CUDA_MAX_DIMS];
  int64_t numel;
  int ndim;
};

__global__ void strided_copy_kernel(float* dst, const float* src, StridedArgs a) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < a.numel; i += step) {
    int64_t rest = i, od = 0, os = 0;
    for (int d = a.ndim - 1; d >= 0; --d) {
      const int64_t k = rest % a.shape[d];
      rest /= a.shape[d];
      od += k * a.dst_stride[d];
      os += k * a.src_stride[d];
    }
    dst[od] = src[os];
  }
}

void row_major(const int64_t* shape, int ndim, int64_t* strides) {
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    strides[d] = s;
    s *= shape[d];
  }
}

int64_t numel_of(const int64_t* shape, int ndim) {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  return n;
}

/** Strides equal to row-major, ignoring dimensions of extent 1 (their stride is never used). */
bool contiguous(const int64_t* shape, const int64_t* strides, int ndim) {
  if (!strides) return true;
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != s) return false;
    s *= shape[d];
  }
  return true;
}

bool valid_shape(const int64_t* shape, int ndim) {
  if (ndim < 0 || ndim > ADAMP_CUDA_MAX_DIMS || (ndim > 0 && !shape)) return false;
  for (int d = 0; d < ndim; ++d)
    if (shape[d] < 0) return false;
  return true;
}

}  // namespace

int dev_alloc(void** p, size_t bytes) {
  *p = nullptr;
  if (bytes == 0) bytes = 1;
  cudaError_t e = cudaMalloc(p, bytes);
  if (e == cudaErrorMemoryAllocation) {  // memory released but not yet freed may be what is missing
    forget_error((int)e);
    freer().drain();
    e = cudaMalloc(p, bytes);
  }
  if (e != cudaSuccess) {
    *p = nullptr;
    return forget_error((int)e);  // an allocation failure is not sticky
  }
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lock(l.mu);
  l.live[*p] = bytes;
  l.live_bytes += (int64_t)bytes;
  l.total += 1;
  l.peak = std::max(l.peak, l.live_bytes);
  return 0;
}

void dev_free(void* p) {
  if (!p) return;
  {
    Ledger& l = ledger();
    std::lock_guard<std::mutex> lock(l.mu);
    auto it = l.live.find(p);
    if (it != l.live.end()) {
      l.live_bytes -= (int64_t)it->second;
      l.live.erase(it);
    }
  }
  freer().push(p, false);
}

int pinned_alloc(void** p, size_t bytes) {
  *p = nullptr;
  const cudaError_t e = cudaMallocHost(p, bytes ? bytes : 1);
  if (e != cudaSuccess) *p = nullptr;
  return forget_error((int)e);
}

void pinned_free(void* p) {
  if (p) freer().push(p, true);
}

}  // namespace adamp_cuda

using namespace adamp_cuda;

extern "C" {

void adamp_cuda_get_memory_stats(adamp_cuda_memory_stats* out) {
  if (!out) return;
  Ledger& l = ledger();
  std::lock_guard<std::mutex> lock(l.mu);
  out->live_allocations = (int64_t)l.live.size();
  out->live_bytes = l.live_bytes;
  out->total_allocations = l.total;
  out->peak_bytes = l.peak;
}

int adamp_cuda_mem_info(int device, size_t* free_bytes, size_t* total_bytes) {
  int rc = cudaSetDevice(device);
  if (rc) return rc;
  size_t f = 0, t = 0;
  rc = cudaMemGetInfo(&f, &t);
  if (free_bytes) *free_bytes = f;
  if (total_bytes) *total_bytes = t;
  return rc;
}

int adamp_cuda_alloc(int device, int64_t bytes, void* stream, void** out) {
  if (!out || bytes < 0) return ADAMP_CUDA_E_INVALID;
  *out = nullptr;
  int rc = cudaSetDevice(device);
  if (rc) return forget_error(rc);
  void* p = nullptr;
  if ((rc = dev_alloc(&p, (size_t)bytes))) return rc;
  // Zeroed in stream order: no host wait, no device-wide synchronization.
  rc = cudaMemsetAsync(p, 0, (size_t)std::max<int64_t>(bytes, 1), static_cast<cudaStream_t>(stream));
  if (rc) {
    dev_free(p);
    return forget_error(rc);
  }
  *out = p;
  return 0;
}

int adamp_cuda_free(int device, void* ptr) {
  if (!ptr) return 0;
  const int rc = cudaSetDevice(device);
  dev_free(ptr);  // never waits: the worker's cudaFree waits for the work still using the buffer
  return forget_error(rc);
}

void adamp_cuda_drain_frees(void) { freer().drain(); }

int adamp_cuda_pointer_info(const void* ptr, int* kind, int* device) {
  if (!ptr || !kind || !device) return ADAMP_CUDA_E_INVALID;
  cudaPointerAttributes a;
  const cudaError_t e = cudaPointerGetAttributes(&a, ptr);
  if (e != cudaSuccess) return forget_error((int)e);
  *device = a.device;
  switch (a.type) {
    case cudaMemoryTypeHost: *kind = 1; break;
    case cudaMemoryTypeDevice: *kind = 2; break;
    case cudaMemoryTypeManaged: *kind = 3; break;
    default: *kind = 0; break;
  }
  return 0;
}

int adamp_cuda_copy_strided(int device, float* dst, const int64_t* dst_strides, const float* src,
                            const int64_t* src_strides, const int64_t* shape, int ndim, void* stream) {
  if (!valid_shape(shape, ndim)) return ADAMP_CUDA_E_INVALID;
  const int64_t n = numel_of(shape, ndim);
  if (n == 0) return 0;
  if (!dst || !src) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(device);
  if (rc) return rc;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (contiguous(shape, dst_strides, ndim) && contiguous(shape, src_strides, ndim))
    return (int)cudaMemcpyAsync(dst, src, (size_t)n * sizeof(float), cudaMemcpyDeviceToDevice, s);
  StridedArgs a;
  a.ndim = ndim;
  a.numel = n;
  for (int d = 0; d < ndim; ++d) a.shape[d] = shape[d];
  if (dst_strides) std::copy(dst_strides, dst_strides + ndim, a.dst_stride);
  else row_major(shape, ndim, a.dst_stride);
  if (src_strides) std::copy(src_strides, src_strides + ndim, a.src_stride);
  else row_major(shape, ndim, a.src_stride);
  int sms = 1;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int64_t grid = std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, (int64_t)sms * 8));
  return forget_error((int)ADAMP_LAUNCH(strided_copy_kernel, (unsigned)grid, 256, s, dst, src, a));
}

/**
 * The common start of a copy or fill of a view: checks the shape, then (when there is anything to
 * do) the pointers, and selects the device. Returns an error code, or 0 with n = the element count
 * (0: nothing to do).
 */
static int begin_view_op(int device, const int64_t* shape, int ndim, bool ptrs_ok, int64_t* n) {
  if (!valid_shape(shape, ndim)) return ADAMP_CUDA_E_INVALID;
  *n = numel_of(shape, ndim);
  if (*n == 0) return 0;
  if (!ptrs_ok) return ADAMP_CUDA_E_INVALID;
  return cudaSetDevice(device);
}

int adamp_cuda_copy_to_device(int device, float* dst, const int64_t* shape, const int64_t* strides, int ndim,
                              const float* host, void* stream) {
  int64_t n = 0;
  int rc = begin_view_op(device, shape, ndim, dst && host, &n);
  if (rc || n == 0) return rc;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t bytes = (size_t)n * sizeof(float);
  if (contiguous(shape, strides, ndim)) {
    rc = cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, s);
    return rc ? rc : (int)cudaStreamSynchronize(s);
  }
  void* tmp = nullptr;  // contiguous staging, then scattered into the view
  if ((rc = dev_alloc(&tmp, bytes))) return rc;
  rc = cudaMemcpyAsync(tmp, host, bytes, cudaMemcpyHostToDevice, s);
  if (!rc) rc = adamp_cuda_copy_strided(device, dst, strides, static_cast<float*>(tmp), nullptr, shape, ndim, stream);
  if (!rc) rc = cudaStreamSynchronize(s);
  dev_free(tmp);
  return rc;
}

int adamp_cuda_zero(int device, float* dst, const int64_t* shape, const int64_t* strides, int ndim, void* stream) {
  int64_t n = 0;
  int rc = begin_view_op(device, shape, ndim, dst != nullptr, &n);
  if (rc || n == 0) return rc;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (contiguous(shape, strides, ndim)) {
    rc = cudaMemsetAsync(dst, 0, (size_t)n * sizeof(float), s);
    return rc ? rc : (int)cudaStreamSynchronize(s);
  }
  void* tmp = nullptr;  // zeros, scattered into the view
  if ((rc = adamp_cuda_alloc(device, n * (int64_t)sizeof(float), stream, &tmp))) return rc;
  rc = adamp_cuda_copy_strided(device, dst, strides, static_cast<float*>(tmp), nullptr, shape, ndim, stream);
  if (!rc) rc = cudaStreamSynchronize(s);
  dev_free(tmp);
  return rc;
}

int adamp_cuda_copy_to_host(int device, float* host, const float* src, const int64_t* shape, const int64_t* strides,
                            int ndim, void* stream) {
  int64_t n = 0;
  int rc = begin_view_op(device, shape, ndim, src && host, &n);
  if (rc || n == 0) return rc;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t bytes = (size_t)n * sizeof(float);
  if (contiguous(shape, strides, ndim)) {
    rc = cudaMemcpyAsync(host, src, bytes, cudaMemcpyDeviceToHost, s);
    return rc ? rc : (int)cudaStreamSynchronize(s);
  }
  void* tmp = nullptr;  // gathered from the view into contiguous staging, then copied
  if ((rc = dev_alloc(&tmp, bytes))) return rc;
  rc = adamp_cuda_copy_strided(device, static_cast<float*>(tmp), nullptr, src, strides, shape, ndim, stream);
  if (!rc) rc = cudaMemcpyAsync(host, tmp, bytes, cudaMemcpyDeviceToHost, s);
  if (!rc) rc = cudaStreamSynchronize(s);
  dev_free(tmp);
  return rc;
}

/* Contiguous copies and fills of raw bytes (16-bit device tensors); complete when they return. */
int adamp_cuda_copy_bytes(int device, void* dst, const void* src, int64_t bytes, int to_device, void* stream) {
  if (bytes < 0) return ADAMP_CUDA_E_INVALID;
  if (bytes == 0) return 0;
  if (!dst || !src) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(device);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (!rc) rc = cudaMemcpyAsync(dst, src, (size_t)bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, s);
  if (!rc) rc = cudaStreamSynchronize(s);
  return rc;
}

int adamp_cuda_zero_bytes(int device, void* dst, int64_t bytes, void* stream) {
  if (bytes < 0) return ADAMP_CUDA_E_INVALID;
  if (bytes == 0) return 0;
  if (!dst) return ADAMP_CUDA_E_INVALID;
  int rc = cudaSetDevice(device);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (!rc) rc = cudaMemsetAsync(dst, 0, (size_t)bytes, s);
  if (!rc) rc = cudaStreamSynchronize(s);
  return rc;
}

}  // extern "C"
