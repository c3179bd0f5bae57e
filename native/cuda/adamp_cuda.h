/*
 * The CUDA step of AdamP and SGDP behind a plain C interface.
 *
 * A context owns device copies of its tensors (p, g, m, v), their per-tensor state (AdamP's step
 * count, the decision of the last step) and one CUDA stream. Host code uploads a tensor once,
 * uploads its gradient before each step, steps any subset of the context's tensors as one group
 * (one set of hyperparameters), and downloads params, state or the per-tensor info record only
 * when it wants them. Nothing in a step waits for the device: the hyperparameters and the step
 * counts live in device memory, so a step can also be captured in a CUDA graph.
 *
 * Every function returns 0 on success or a cudaError_t value (or one of ADAMP_CUDA_E_* below);
 * adamp_cuda_error_string() turns either into text. Nothing here throws or prints.
 */
#ifndef ADAMP_CUDA_H
#define ADAMP_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Errors of this API (outside cudaError_t's range). */
#define ADAMP_CUDA_E_INVALID 100001 /* an argument is out of range (id, size, null pointer) */
#define ADAMP_CUDA_E_NOMEM 100002   /* host allocation failed */

#define ADAMP_CUDA_ADAMP 0
#define ADAMP_CUDA_SGDP 1

/* Which buffer of a tensor an upload or download names. */
#define ADAMP_CUDA_P 0 /* the param */
#define ADAMP_CUDA_G 1 /* the gradient */
#define ADAMP_CUDA_M 2 /* AdamP: exp_avg. SGDP: the momentum buffer */
#define ADAMP_CUDA_V 3 /* AdamP: exp_avg_sq (absent in SGDP contexts) */

/* Doubles per tensor in an info record (same layout as lib/backends/engine.ts). */
#define ADAMP_CUDA_INFO_STRIDE 8

typedef struct adamp_cuda_ctx adamp_cuda_ctx;

/* One tensor, with its channel view outer x channels x inner (see lib/backends/engine.ts Slot). */
typedef struct {
  int64_t numel;
  int64_t outer;
  int64_t channels;
  int64_t inner;
  int eligible; /* ndim > 1: the projection test runs */
} adamp_cuda_tensor_desc;

typedef struct {
  double lr, beta1, beta2, eps, weight_decay, delta, wd_ratio;
  int nesterov;
} adamp_cuda_adamp_hp;

typedef struct {
  double lr, momentum, dampening, weight_decay, eps, delta, wd_ratio;
  int nesterov;
} adamp_cuda_sgdp_hp;

/* Scheduling knobs; 0 (or a null config) means the default. They change only the order in which
   the per-channel double sums are added (last bits of the sums); a given config is bitwise
   deterministic run to run. */
typedef struct {
  int chunk;           /* elements per work item (default 8192) */
  int64_t group;       /* elements per scheduling group (default 1 << 20) */
  int lag;             /* groups between a group's pass 1 and its pass 2 (default 1) */
  int blocks_per_sm;   /* resident blocks per SM to launch (default: the occupancy maximum) */
} adamp_cuda_config;

/* What the runtime says about this machine: number of devices, or the error (35 = driver
   missing or too old, 100 = no device). Never fails otherwise, never prints. */
int adamp_cuda_device_count(int* count);
/* Name and compute capability of device `dev`. */
int adamp_cuda_device_info(int dev, char* name, size_t name_len, int* major, int* minor, size_t* total_mem);
const char* adamp_cuda_error_name(int code);
const char* adamp_cuda_error_string(int code);
/* Versions: runtime and driver as CUDA encodes them (e.g. 13000). */
int adamp_cuda_versions(int* runtime, int* driver);

int adamp_cuda_create(adamp_cuda_ctx** out, int optimizer, int device, const adamp_cuda_config* config);
void adamp_cuda_destroy(adamp_cuda_ctx* ctx);

/* Allocates the device buffers of one tensor (zeroed) and returns its id (0, 1, 2, ...). */
int adamp_cuda_add_tensor(adamp_cuda_ctx* ctx, const adamp_cuda_tensor_desc* desc, int* id);
int adamp_cuda_num_tensors(const adamp_cuda_ctx* ctx);

/* Host <-> device copies of `numel` floats. Uploads are queued on the context's stream and the
   host buffer may be reused when the call returns; downloads wait for the stream. */
int adamp_cuda_upload(adamp_cuda_ctx* ctx, int id, int which, const float* host, int64_t numel);
int adamp_cuda_download(adamp_cuda_ctx* ctx, int id, int which, float* host, int64_t numel);
/* The device address of a buffer (for tests, benchmarks and device-to-device copies). */
float* adamp_cuda_device_ptr(adamp_cuda_ctx* ctx, int id, int which);

/* AdamP: sets the step count a tensor has completed (the next step uses step + 1). */
int adamp_cuda_set_step(adamp_cuda_ctx* ctx, int id, int64_t completed_steps);

/* One step of the tensors `ids[0..n)` (each at most once) with one group's hyperparameters.
   Queued; no host sync. */
int adamp_cuda_step_adamp(adamp_cuda_ctx* ctx, const int* ids, int n, const adamp_cuda_adamp_hp* hp);
int adamp_cuda_step_sgdp(adamp_cuda_ctx* ctx, const int* ids, int n, const adamp_cuda_sgdp_hp* hp);

/* The info records of the last step of `ids[0..n)` (n * ADAMP_CUDA_INFO_STRIDE doubles). Waits. */
int adamp_cuda_info(adamp_cuda_ctx* ctx, const int* ids, int n, double* info);

/* Waits for everything queued on the context's stream. */
int adamp_cuda_sync(adamp_cuda_ctx* ctx);
/* The context's stream (a cudaStream_t), for timing with events or graph capture. */
void* adamp_cuda_stream(adamp_cuda_ctx* ctx);

#ifdef __cplusplus
}
#endif

#endif /* ADAMP_CUDA_H */
