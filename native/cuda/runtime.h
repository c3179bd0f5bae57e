// How this library calls the CUDA runtime (host code, included after <cuda_runtime.h>):
//   - every kernel launch goes through cudaLaunchKernelEx, whose return value is that launch's
//     own status: no cudaGetLastError() after a launch, which would also return (and clear) an
//     error some other library left in the runtime's last-error slot;
//   - after a failure of our own, forget_error() clears the slot only when it still holds our
//     error, so a later cudaGetLastError() elsewhere (PyTorch checks after its launches) does not
//     report it again.
// The CPU emulation (native/tests/cuda/emu) defines ADAMP_LAUNCH itself.
#ifndef ADAMP_CUDA_RUNTIME_H
#define ADAMP_CUDA_RUNTIME_H

#include <utility>

namespace adamp_cuda {

#ifndef ADAMP_LAUNCH
template <class... K, class... A>
inline cudaError_t launch_kernel(void (*kernel)(K...), unsigned grid, unsigned block, cudaStream_t stream, A&&... args) {
  cudaLaunchConfig_t c = {};
  c.gridDim = dim3(grid, 1, 1);
  c.blockDim = dim3(block, 1, 1);
  c.dynamicSmemBytes = 0;
  c.stream = stream;
  c.attrs = nullptr;
  c.numAttrs = 0;
  return cudaLaunchKernelEx(&c, kernel, std::forward<A>(args)...);
}
#define ADAMP_LAUNCH(kernel, grid, block, stream, ...) ::adamp_cuda::launch_kernel(kernel, (unsigned)(grid), (unsigned)(block), (stream), __VA_ARGS__)
#endif

/** Returns e; clears the runtime's last-error slot when it holds e (our own failure, already reported). */
inline int forget_error(int e) {
  if (e != 0 && cudaPeekAtLastError() == (cudaError_t)e) (void)cudaGetLastError();
  return e;
}

}  // namespace adamp_cuda

#endif  // ADAMP_CUDA_RUNTIME_H
