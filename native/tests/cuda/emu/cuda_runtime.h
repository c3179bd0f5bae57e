// Stand-in for <cuda_runtime.h> in the CPU emulation build (see cuda_emu.h).
#pragma once
#include "cuda_emu.h"
