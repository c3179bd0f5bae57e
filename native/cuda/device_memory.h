// The counted device allocator every device buffer of this library goes through (contexts and
// device tensors), so tests and users can see that nothing leaks (adamp_cuda_get_memory_stats).
#ifndef ADAMP_CUDA_DEVICE_MEMORY_H
#define ADAMP_CUDA_DEVICE_MEMORY_H

#include <stddef.h>

namespace adamp_cuda {

/** cudaMalloc on the current device, counted; *p is null on failure. */
int dev_alloc(void** p, size_t bytes);
/** cudaFree of a pointer from dev_alloc (null is a no-op). */
void dev_free(void* p);

}  // namespace adamp_cuda

#endif  // ADAMP_CUDA_DEVICE_MEMORY_H
