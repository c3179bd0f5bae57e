// The portable kernel table: eight float lanes as plain arrays (any x86-64 or other CPU).
#include <math.h>
#include <string.h>

#include "kernel_table.h"

namespace adamp {
namespace cpu {
namespace portable {
#include "kernels.h"
}  // namespace portable

const KernelTable& portable_kernels() {
  static const KernelTable table = portable::make_table("portable");
  return table;
}

}  // namespace cpu
}  // namespace adamp
