/**
 * Registers the native CPU backend with the backend selection (import for the side effect), and
 * applies the environment switches of the native core once, when the addon is first used here:
 * ADAMP_SIMD=portable (the portable kernels) and ADAMP_SPECULATE=1 (AdamP's speculative single pass
 * on 2 threads or more; off by default).
 * Both leave results unchanged bit for bit; the C++ reads no environment itself.
 */
import { loadAddon, loadHints, type AddonLoadResult } from '../../binding/load';
import { readEnv } from '../../core/env';
import { AdampError } from '../../errors';
import { registerProvider, type BackendReport, type EngineProvider } from '../select';
import { NativeEngine } from './engine';

export { NativeEngine } from './engine';
export type { NativeEngineOptions } from './engine';

let envApplied = false;

/** The addon (memoized by loadAddon), with the environment switches applied the first time. */
export function loadNativeAddon(): AddonLoadResult {
  const r = loadAddon();
  if (!envApplied && 'addon' in r) {
    envApplied = true;
    if (readEnv('ADAMP_SIMD') === 'portable') r.addon.setSimd('portable');
    const spec = readEnv('ADAMP_SPECULATE');
    if (spec === '1') r.addon.setSpeculation('on');
    else if (spec === '0') r.addon.setSpeculation('off');
  }
  return r;
}

export const nativeProvider: EngineProvider = {
  report(): BackendReport {
    const r = loadNativeAddon();
    if ('errors' in r) {
      return {
        name: 'native',
        available: false,
        reason: `the native addon could not be loaded:\n  - ${r.errors.join('\n  - ')}\nPossible solutions:\n  - ${loadHints(r.errors).join('\n  - ')}`,
      };
    }
    const info = r.addon.info();
    return {
      name: 'native',
      available: true,
      reason: `C++ CPU core, ${info.simd} kernels, up to ${info.hardwareThreads} threads`,
      details: { path: r.path, version: info.version, simd: info.simd, hardwareThreads: info.hardwareThreads, cudaCompiledIn: info.cuda, compiler: info.compiler },
    };
  },
  create(options) {
    const r = loadNativeAddon();
    if ('errors' in r) throw new AdampError('ERR_ADAMP_BACKEND_UNAVAILABLE', `the native addon could not be loaded: ${r.errors.join('; ')}`);
    return new NativeEngine(r.addon, { threads: options.threads });
  },
};

registerProvider('native', () => nativeProvider);
