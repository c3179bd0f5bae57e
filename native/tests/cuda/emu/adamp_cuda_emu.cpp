// The CUDA step compiled as host C++ on the CPU emulation of cuda_emu.h (test builds only).
#include "../../../cuda/adamp_cuda.cu"
#include "../../../cuda/device_memory.cu"
