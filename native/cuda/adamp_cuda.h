/*
 * The CUDA step of every registered optimizer (adamp/optim/registry.h) behind a plain C interface.
 *
 * A context steps one optimizer kind ("adamp", "sgdp", "adamw", "sgd"). It owns device copies of
 * its tensors (p, g and the optimizer's state slots), their per-tensor state (the step count, the
 * decision of the last step) and one CUDA stream. Host code uploads a tensor once, uploads its
 * gradient before each step, steps any subset of the context's tensors as one group (one set of
 * hyperparameters, a double array in the policy's `Hyper` order), and downloads params, state or
 * the per-tensor info record only when it wants them. Nothing in a step waits for the device.
 *
 * Every function returns 0 on success or a cudaError_t value (or one of ADAMP_CUDA_E_* below);
 * adamp_cuda_error_string() turns either into text. Nothing here throws or prints. No function
 * clears another library's pending CUDA error: after a failure of its own this library clears
 * the runtime's last-error slot only when it still holds that failure.
 */
#ifndef ADAMP_CUDA_H
#define ADAMP_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Errors of this API (outside cudaError_t's range). */
#define ADAMP_CUDA_E_INVALID 100001 /* an argument is out of range (kind, id, size, pointer, hyperparameter) */
#define ADAMP_CUDA_E_NOMEM 100002   /* host allocation failed */
#define ADAMP_CUDA_E_BROKEN 100003  /* an earlier step failed after part of it was queued: the context's state is
                                       inconsistent; destroy it and start from a saved state */

/* Which buffer of a tensor an upload, download or bind names: the param, its gradient, or state
   slot k of the optimizer (in its registry order: AdamP 0 = exp_avg, 1 = exp_avg_sq). */
#define ADAMP_CUDA_P 0
#define ADAMP_CUDA_G 1
#define ADAMP_CUDA_STATE(k) (2 + (k))

/* Doubles per tensor in an info record (same layout as lib/core/info.ts). */
#define ADAMP_CUDA_INFO_STRIDE 8

typedef struct adamp_cuda_ctx adamp_cuda_ctx;

/* One tensor, with its channel view outer x channels x inner (see lib/backends/engine.ts Slot). */
typedef struct {
  int64_t numel;
  int64_t outer;
  int64_t channels;
  int64_t inner;
  int eligible; /* ndim > 1: the projection test runs (projecting optimizers) */
} adamp_cuda_tensor_desc;

/* Scheduling knobs; 0 (or a null config) means the default. They change only the order in which
   the per-channel double sums are added (last bits of the sums); a given config is bitwise
   deterministic run to run. */
typedef struct {
  int chunk;           /* elements per work item (default 8192) */
  int64_t group;       /* elements per scheduling group (default 1 << 20) */
  int lag;             /* groups between a group's pass 1 and its pass 2 (default 1) */
  int blocks_per_sm;   /* resident blocks per SM to launch (default: the occupancy maximum) */
  int max_blocks;      /* a cap on the grid (tests: 1 runs every item on one block, which must give the same bits) */
} adamp_cuda_config;

/* ---- The registry ------------------------------------------------------------------------- */

/* Optimizer kinds in registry order (kind numbers). */
int adamp_cuda_kind_count(void);
/* Name, state slots, hyperparameter count and whether it projects, of kind `kind`; NULL name when out of range. */
const char* adamp_cuda_kind_name(int kind);
int adamp_cuda_kind_info(int kind, int* slots, int* nhyper, int* projects);
/* Name of hyperparameter `i` of kind `kind`, in wire order ("?" when out of range). */
const char* adamp_cuda_kind_hyper_name(int kind, int i);
/* The kind number of a name, or -1. */
int adamp_cuda_kind_of(const char* name);
/* 0 when `hyper[0..nhyper)` is valid for `kind` (the policy's check()); else ADAMP_CUDA_E_INVALID with
   *field the offending index (-1: wrong count) and *message what is wrong with it. */
int adamp_cuda_check_hyper(int kind, const double* hyper, int nhyper, int* field, const char** message);

/* ---- The machine ---------------------------------------------------------------------------- */

/* What the runtime says about this machine: number of devices, or the error (35 = driver
   missing or too old, 100 = no device). Never fails otherwise, never prints. */
int adamp_cuda_device_count(int* count);
/* Name and compute capability of device `dev`. */
int adamp_cuda_device_info(int dev, char* name, size_t name_len, int* major, int* minor, size_t* total_mem);
const char* adamp_cuda_error_name(int code);
const char* adamp_cuda_error_string(int code);
/* Versions: runtime and driver as CUDA encodes them (e.g. 13000). */
int adamp_cuda_versions(int* runtime, int* driver);

/* ---- Contexts -------------------------------------------------------------------------------- */

/* A context for optimizer `kind` (a registry name: "adamp", "sgdp", "adamw", "sgd"). */
int adamp_cuda_create(adamp_cuda_ctx** out, const char* kind, int device, const adamp_cuda_config* config);
/* Frees the context without waiting for the device and without touching a stream set with
   adamp_cuda_set_stream (it may be gone): device buffers go to a background thread whose cudaFree
   waits for the work still using them; safe from a garbage-collector finalizer. */
void adamp_cuda_destroy(adamp_cuda_ctx* ctx);
/* The context's kind number. */
int adamp_cuda_kind(const adamp_cuda_ctx* ctx);

/* Allocates the device buffers of one tensor (zeroed) and returns its id (0, 1, 2, ...). */
int adamp_cuda_add_tensor(adamp_cuda_ctx* ctx, const adamp_cuda_tensor_desc* desc, int* id);
int adamp_cuda_num_tensors(const adamp_cuda_ctx* ctx);

/* Host <-> device copies of `numel` floats. Uploads are queued on the context's stream and the
   host buffer may be reused when the call returns: a gradient (ADAMP_CUDA_G) goes through pinned
   staging memory of the context and the call returns before the copy ran (it waits only when the
   device is two steps behind); other buffers are copied from pageable memory. Downloads wait for
   the stream. */
int adamp_cuda_upload(adamp_cuda_ctx* ctx, int id, int which, const float* host, int64_t numel);
int adamp_cuda_download(adamp_cuda_ctx* ctx, int id, int which, float* host, int64_t numel);
/* The device address of a buffer (for tests, benchmarks and device-to-device copies). */
float* adamp_cuda_device_ptr(adamp_cuda_ctx* ctx, int id, int which);

/* Sets the step count a tensor has completed (the next step uses step + 1). */
int adamp_cuda_set_step(adamp_cuda_ctx* ctx, int id, int64_t completed_steps);

/* One step of the tensors `ids[0..n)` (each at most once) with one group's hyperparameters
   `hyper[0..nhyper)` in the kind's wire order (booleans as 0/1), checked by the policy. Queued; no
   host sync. A null `hyper` steps with the hyperparameters already in device memory (the last
   step's, or adamp_cuda_set_hyper's): capture such a step in a CUDA graph and call
   adamp_cuda_set_hyper on the stream before each replay to change lr between replays (a captured
   step with a non-null `hyper` replays that `hyper`). */
int adamp_cuda_step(adamp_cuda_ctx* ctx, const int* ids, int n, const double* hyper, int nhyper);
/* adamp_cuda_step with flags: ADAMP_CUDA_NO_NORMS skips the info record's norms (NaN in the record;
   the squared norm before the step of a projected tensor comes free with its decision). */
#define ADAMP_CUDA_NO_NORMS 1u
int adamp_cuda_step_ex(adamp_cuda_ctx* ctx, const int* ids, int n, const double* hyper, int nhyper, unsigned flags);
/* Queues a write of the hyperparameters into the context's device memory (what a step with a null
   `hyper` reads). */
int adamp_cuda_set_hyper(adamp_cuda_ctx* ctx, const double* hyper, int nhyper);

/* The info records of the last step of `ids[0..n)` (n * ADAMP_CUDA_INFO_STRIDE doubles). Waits. */
int adamp_cuda_info(adamp_cuda_ctx* ctx, const int* ids, int n, double* info);

/* Waits for everything queued on the context's stream. */
int adamp_cuda_sync(adamp_cuda_ctx* ctx);
/* The stream the context queues on now (a cudaStream_t): its own, or the one set below. */
void* adamp_cuda_stream(adamp_cuda_ctx* ctx);

/* ---- Tensors whose buffers the caller owns (device tensors, external device memory) --------- */

/* `external` flags of adamp_cuda_add_tensor_ex: these buffers are not allocated by the context;
   adamp_cuda_bind gives their device address before a step (it may change between steps). */
#define ADAMP_CUDA_EXTERNAL_P 1
#define ADAMP_CUDA_EXTERNAL_G 2
int adamp_cuda_add_tensor_ex(adamp_cuda_ctx* ctx, const adamp_cuda_tensor_desc* desc, int external, int* id);
/* Binds buffer `which` (ADAMP_CUDA_P or ADAMP_CUDA_G, declared external) of tensor `id` to a
   contiguous, 4-byte aligned float32 device buffer of the tensor's numel on the context's device. */
int adamp_cuda_bind(adamp_cuda_ctx* ctx, int id, int which, float* device_ptr);

/* Queues the context's work on `stream` (a cudaStream_t the caller owns and keeps alive while it
   is set) from now on; NULL goes back to the context's own stream. Work queued before is ordered
   before work queued after (an event joins the two streams). */
int adamp_cuda_set_stream(adamp_cuda_ctx* ctx, void* stream);
/* Records an event after everything queued so far on the context's stream; *event is freed by
   adamp_cuda_event_wait. */
int adamp_cuda_record(adamp_cuda_ctx* ctx, void** event);
/* Blocks the calling thread (any thread) until the event completed, then frees it. */
int adamp_cuda_event_wait(void* event);
/* Frees an event of adamp_cuda_record without waiting for it (released once it completes). */
void adamp_cuda_event_free(void* event);

/* ---- Mixed precision and loss scaling on the device ---------------------------------------- */

/* Storage types of a param or gradient. */
#define ADAMP_CUDA_F32 0
#define ADAMP_CUDA_BF16 1
#define ADAMP_CUDA_F16 2
/* adamp_cuda_set_storage flags. */
#define ADAMP_CUDA_MASTER 16     /* 16-bit param: float32 master weights in the context (a state buffer) */
#define ADAMP_CUDA_STOCHASTIC 32 /* bfloat16 param: stochastic rounding (key from seed, the device step count, index) */
/* storage = p_dtype | (g_dtype << 2) | flags. A 16-bit param or gradient must be external (bound
   with adamp_cuda_bind to 2-byte aligned 16-bit device data); with ADAMP_CUDA_MASTER the context
   allocates the master buffer (selector ADAMP_CUDA_STATE(slots)), which adamp_cuda_init_master
   fills from the param or an upload sets. Set before the tensor's first step (binding after). */
int adamp_cuda_set_storage(adamp_cuda_ctx* ctx, int id, int storage, uint32_t seed, uint32_t index);
int adamp_cuda_get_storage(const adamp_cuda_ctx* ctx, int id);
/* Queues master = the bound 16-bit param widened (exact). */
int adamp_cuda_init_master(adamp_cuda_ctx* ctx, int id);
/* Queues the non-finite check of the gradients of ids[0..n) (each in its storage type) into the
   device int *found: zeroed first when `reset`, set to 1 when an Infinity/NaN is seen. */
int adamp_cuda_check_grads(adamp_cuda_ctx* ctx, const int* ids, int n, int* found, int reset);
/* adamp_cuda_step_ex, loss-scaled on the device: gradients read as f32(g * f32(1 / *scale)), and
   when *found is nonzero nothing changes (params, state, step counts): no host synchronization.
   `scale` NULL: the gradients are read as they are (already unscaled: adamp_cuda_unscale_grads),
   the step still skipped when *found is nonzero. */
int adamp_cuda_step_scaled(adamp_cuda_ctx* ctx, const int* ids, int n, const double* hyper, int nhyper, unsigned flags,
                           const float* scale, const int* found);
/* A float32 gradient of adamp_cuda_unscale_grads: `ndim` (<= ADAMP_CUDA_MAX_DIMS) extents of
   `shape`, element strides `strides` (NULL: row-major contiguous; views must not overlap). */
typedef struct {
  float* g;
  const int64_t* shape;
  const int64_t* strides;
  int ndim;
} adamp_cuda_grad_view;
/* PyTorch's _amp_foreach_non_finite_check_and_unscale_, queued on the context's stream: the device
   int *found zeroed first when `reset`, set to 1 when an element is Infinity/NaN (checked before
   the product), and every element multiplied in place by f32(1 / *scale) (the inverse
   adamp_cuda_step_scaled reads with). No host synchronization. */
int adamp_cuda_unscale_grads(adamp_cuda_ctx* ctx, const adamp_cuda_grad_view* grads, int n, const float* scale, int* found,
                             int reset);
/* The completed step counts of ids[0..n) as the device holds them (waits). */
int adamp_cuda_get_steps(adamp_cuda_ctx* ctx, const int* ids, int n, double* out);
/* Whether the tensor's last step was skipped (reads the device; waits). */
int adamp_cuda_last_skipped(adamp_cuda_ctx* ctx, int id, int* skipped);
/* The device GradScaler state: float scale, int32 pad, int64 growth tracker, int32 found[16]. */
#define ADAMP_CUDA_SCALER_BYTES 80
#define ADAMP_CUDA_SCALER_FOUND(k) (16 + 4 * (k))
/* Queues torch._amp_update_scale_ on the state (found: host_found or found[k] of `mask`). */
int adamp_cuda_scaler_update(adamp_cuda_ctx* ctx, void* state, unsigned mask, int host_found, double growth, double backoff,
                             int64_t interval);

/* ---- Device memory (device_memory.cu) ------------------------------------------------------- */

/* Every device allocation of this library (contexts and adamp_cuda_alloc) is counted here; a
   buffer stops counting when it is released (the background thread frees it shortly after). */
typedef struct {
  int64_t live_allocations;
  int64_t live_bytes;
  int64_t total_allocations;
  int64_t peak_bytes;
} adamp_cuda_memory_stats;
void adamp_cuda_get_memory_stats(adamp_cuda_memory_stats* out);
/* cudaMemGetInfo of a device. */
int adamp_cuda_mem_info(int device, size_t* free_bytes, size_t* total_bytes);
/* Device memory, zeroed in the order of `stream` (NULL: the legacy default stream, which every
   blocking stream waits for); returns without waiting. cudaErrorMemoryAllocation (2) when out of
   memory (after the buffers released so far have really been freed). */
int adamp_cuda_alloc(int device, int64_t bytes, void* stream, void** out);
/* Releases a buffer of adamp_cuda_alloc: never waits (the background thread's cudaFree waits for
   the work still using it), so a finalizer may call it. */
int adamp_cuda_free(int device, void* ptr);
/* What a pointer is: kind 0 = not known to CUDA (plain host memory), 1 = pinned host memory,
   2 = device memory (then *device is its device), 3 = managed memory. */
int adamp_cuda_pointer_info(const void* ptr, int* kind, int* device);

/* A float32 tensor view in device memory: shape and strides in elements (strides NULL = row-major). */
#define ADAMP_CUDA_MAX_DIMS 8
/* Host <-> device copies between a contiguous host array and a (possibly strided) device view,
   through `stream` (NULL: the legacy default stream). Complete when they return. */
int adamp_cuda_copy_to_device(int device, float* dst, const int64_t* shape, const int64_t* strides, int ndim,
                              const float* host, void* stream);
int adamp_cuda_copy_to_host(int device, float* host, const float* src, const int64_t* shape, const int64_t* strides,
                            int ndim, void* stream);
/* Sets every element of a (possibly strided) device view to zero; complete when it returns. */
int adamp_cuda_zero(int device, float* dst, const int64_t* shape, const int64_t* strides, int ndim, void* stream);
/* Queues dst[i] = src[i] over a shape, each side with its own strides (NULL = row-major). */
int adamp_cuda_copy_strided(int device, float* dst, const int64_t* dst_strides, const float* src,
                            const int64_t* src_strides, const int64_t* shape, int ndim, void* stream);
/* Contiguous copies (to_device: host -> device, else device -> host) and fills of raw bytes through
   `stream` (16-bit device tensors); complete when they return. */
int adamp_cuda_copy_bytes(int device, void* dst, const void* src, int64_t bytes, int to_device, void* stream);
int adamp_cuda_zero_bytes(int device, void* dst, int64_t bytes, void* stream);
/* Waits until every buffer released so far has really been freed (tests; out-of-memory retries). */
void adamp_cuda_drain_frees(void);

#ifdef __cplusplus
}
#endif

#endif /* ADAMP_CUDA_H */
