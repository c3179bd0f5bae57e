/**
 * The addon's errors as AdampErrors. The C++ side throws TypeError/RangeError/Error objects with a
 * `code` property; callers of this package only ever see an AdampError with that code (the
 * message unchanged, the addon's other properties such as `cudaError` or `bytesRequested` kept,
 * the original as `cause`). An error without a known code is the native side's own failure.
 */
import { AdampError, type AdampErrorCode } from '../errors';

const ADDON_CODES: ReadonlySet<string> = new Set<AdampErrorCode>([
  'ERR_ADAMP_INVALID_ARGUMENT', 'ERR_ADAMP_NATIVE', 'ERR_ADAMP_DETACHED_DURING_STEP',
  'ERR_ADAMP_CUDA', 'ERR_ADAMP_CUDA_OOM', 'ERR_ADAMP_DISPOSED', 'ERR_ADAMP_STEP_IN_FLIGHT',
]);

/** What an addon call threw, as an AdampError; `fallback` is the code for an error without one. */
export function fromAddon(e: unknown, fallback: 'ERR_ADAMP_NATIVE' | 'ERR_ADAMP_CUDA' = 'ERR_ADAMP_NATIVE'): AdampError {
  if (e instanceof AdampError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  const message = String((e as { message?: unknown } | null)?.message ?? e);
  const known = typeof code === 'string' && ADDON_CODES.has(code);
  const err = known
    ? new AdampError(code as AdampErrorCode, message)
    : new AdampError(fallback, `adamp: the ${fallback === 'ERR_ADAMP_CUDA' ? 'CUDA engine' : 'native addon'} failed: ${message}`);
  if (known && e !== null && typeof e === 'object') {
    for (const [k, v] of Object.entries(e)) if (k !== 'code' && k !== 'message' && k !== 'stack') (err as unknown as Record<string, unknown>)[k] = v;
  }
  (err as { cause?: unknown }).cause = e;
  return err;
}

/**
 * A view of `addon` whose listed functions throw (or reject with) AdampErrors: every call into
 * the addon from the engines and device tensors goes through it.
 */
export function guardAddon<T extends object>(addon: T, names: readonly (keyof T & string)[], fallback: 'ERR_ADAMP_NATIVE' | 'ERR_ADAMP_CUDA'): T {
  const view = Object.create(addon) as Record<string, unknown>;
  const src = addon as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const name of names) {
    const f = src[name];
    view[name] = (...args: unknown[]): unknown => {
      let r: unknown;
      try {
        r = f.apply(addon, args);
      } catch (e) {
        throw fromAddon(e, fallback);
      }
      return r instanceof Promise ? r.catch((e: unknown) => { throw fromAddon(e, fallback); }) : r;
    };
  }
  return view as T;
}
