/**
 * The NCCL collective for device buffers: designed (docs/distributed.md, "NCCL"), not built yet.
 *
 * It waits for the CUDA engine to run the step protocol on device shards (stats into a device
 * buffer of partial records, apply from a decision), which the CUDA refactor in progress does not
 * expose yet (lib/backends/engine.ts: `protocol` is js and native only). Until then a sharded step
 * runs on host params, and device buffers go through a CUDA-aware MPI (`mpiCollective()`,
 * `memory.device`). `ncclAvailable()` says so; `ncclCollective()` throws it.
 */
import { AdampError } from '../errors';

export interface NcclOptions {
  /** libnccl to load (default: libnccl.so.2), as the CUDA driver is loaded: at run time. */
  library?: string;
  /** The CUDA device of this rank (default: local rank modulo the devices). */
  device?: number;
  /** Deadline of a call in milliseconds; a late call aborts the communicator (ncclCommAbort). */
  timeoutMs?: number;
}

const REASON = 'the NCCL collective is designed (docs/distributed.md#nccl) but not built: it needs the CUDA engine to expose the step protocol on device shards, '
  + 'which the CUDA refactor has not landed yet; use mpiCollective() (CUDA-aware MPI takes device buffers) or host params';

/** Whether NCCL can be used here: not in this version (see the module's comment). */
export function ncclAvailable(): { available: false; reason: string } {
  return { available: false, reason: REASON };
}

/** Throws `ERR_ADAMP_BACKEND_UNAVAILABLE` with the reason (see `ncclAvailable`). */
export function ncclCollective(_options: NcclOptions = {}): never {
  throw new AdampError('ERR_ADAMP_BACKEND_UNAVAILABLE', `NCCL is not available: ${REASON}`);
}
