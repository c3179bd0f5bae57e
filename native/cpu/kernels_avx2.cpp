// The AVX2+FMA(+F16C) kernel table. This TU alone is compiled with -mavx2 -mfma -mf16c (never -march=native);
// it is only called after the CPU was checked at run time (cpu_features.cpp), and it uses no
// std:: templates whose AVX2 copies the linker could pick for portable code.
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernel_table.h"

#if !defined(__AVX2__) || !defined(__FMA__)
#error "kernels_avx2.cpp must be compiled with -mavx2 -mfma"
#endif

#define ADAMP_SIMD_AVX2 1

namespace adamp {
namespace cpu {
namespace avx2 {
#include "kernels.h"
}  // namespace avx2

const KernelTable* avx2_kernels() {
  static const KernelTable table = avx2::make_table("avx2");
  return &table;
}

}  // namespace cpu
}  // namespace adamp
