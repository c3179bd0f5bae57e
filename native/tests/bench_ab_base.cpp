// The other build's entry point for `bench_cpu_kernels --ab` (scripts/bench-kernels.sh --base REV
// --same-process): this file and another revision's core are compiled with -Dadamp=adamp_base, so
// both cores live in one process under different names and the benchmark steps them alternately,
// under the same memory placement and the same neighbours. The TensorSlot layouts of the two
// revisions must agree (the benchmark checks the size).
#include "step.h"

extern "C" int adamp_base_slot_size() { return (int)sizeof(adamp::cpu::TensorSlot); }

extern "C" void adamp_base_step(int kind, const void* slots, size_t count, const double* hyper, double* info, int threads,
                                int norms, int speculation) {
  adamp::cpu::set_speculation((adamp::cpu::Speculation)speculation);
  adamp::cpu::StepConfig cfg;
  cfg.threads = threads;
  cfg.norms = norms != 0;
  adamp::cpu::step((adamp::OptKind)kind, static_cast<const adamp::cpu::TensorSlot*>(slots), count, hyper, info, cfg);
}
