/**
 * Errors thrown by adamp. Every error has a stable `code` so callers (and tests in other
 * realms, where `instanceof` fails) can tell them apart.
 */
export type AdampErrorCode =
  | 'ERR_ADAMP_INVALID_ARGUMENT' // a hyperparameter, param, grad or state is malformed
  | 'ERR_ADAMP_BACKEND_UNAVAILABLE' // the requested backend cannot run here
  | 'ERR_ADAMP_STEP_IN_FLIGHT' // an async step of this optimizer has not finished
  | 'ERR_ADAMP_DISPOSED' // the optimizer or device tensor was disposed
  | 'ERR_ADAMP_CUDA' // a CUDA call failed (thrown by the addon; `cudaError` holds the code)
  | 'ERR_ADAMP_CUDA_OOM' // the GPU is out of memory (thrown by the addon, with the bytes requested and free)
  | 'ERR_ADAMP_BAD_CHECKPOINT' // a checkpoint file is damaged, altered, truncated or malformed (see docs/checkpoints.md)
  | 'ERR_ADAMP_IO' // a file-system call failed: `path` names the file, `errnoCode` holds Node's code ('ENOENT', 'EACCES'...)
  | 'ERR_ADAMP_COLLECTIVE' // a collective failed or the ranks disagree (lib/distributed; `rank`, `step`, `phase` say where)
  | 'ERR_ADAMP_COLLECTIVE_TIMEOUT' // a rank died or stalled: a collective did not complete in time (`missing` names the ranks)
  | 'ERR_ADAMP_UNSUPPORTED' // something this backend or this kind of param cannot do yet (16-bit params on CUDA, 16-bit device tensors, loss scaling of device grads) (docs/mixed-precision.md)
  | 'ERR_ADAMP_NATIVE' // the native CPU core could not run a step (out of memory, no thread): it changed no param and no state
  | 'ERR_ADAMP_DETACHED_DURING_STEP'; // an array was detached while an async step wrote it (only when the addon is called directly)

export class AdampError extends Error {
  readonly code: AdampErrorCode;
  constructor(code: AdampErrorCode, message: string) {
    super(message);
    this.name = 'AdampError';
    this.code = code;
  }
}

export function invalid(message: string): AdampError {
  return new AdampError('ERR_ADAMP_INVALID_ARGUMENT', message);
}
