// The counted device allocator every device buffer of this library goes through (contexts and
// device tensors), so tests and users can see that nothing leaks (adamp_cuda_get_memory_stats),
// and the background thread that frees them.
//
// note: frees never wait. cudaFree and cudaFreeHost synchronize with the device (they wait for
// the work still using the memory), which must not happen on the JavaScript thread in a step or a
// garbage-collector finalizer; and a finalizer cannot know which stream last used a buffer, so
// stream-ordered frees (cudaFreeAsync) would need one it may not have. So a released buffer stops
// counting at once and a worker thread frees it.
#ifndef ADAMP_CUDA_DEVICE_MEMORY_H
#define ADAMP_CUDA_DEVICE_MEMORY_H

#include <stddef.h>

namespace adamp_cuda {

/** cudaMalloc on the current device, counted; *p is null on failure (out of memory: after the pending frees ran). */
int dev_alloc(void** p, size_t bytes);
/** Releases a pointer from dev_alloc (null is a no-op): uncounted now, freed by the worker. */
void dev_free(void* p);
/** Pinned host memory (cudaMallocHost), uncounted; freed by the worker with cudaFreeHost. */
int pinned_alloc(void** p, size_t bytes);
void pinned_free(void* p);

}  // namespace adamp_cuda

#endif  // ADAMP_CUDA_DEVICE_MEMORY_H
