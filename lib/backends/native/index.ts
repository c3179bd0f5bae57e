/**
 * Registers the native CPU backend with the backend selection (import for the side effect).
 */
import { loadAddon, loadHints } from '../../binding/load';
import { registerProvider, type BackendReport, type EngineProvider } from '../select';
import { NativeEngine } from './engine';

export { NativeEngine } from './engine';
export type { NativeEngineOptions } from './engine';

export const nativeProvider: EngineProvider = {
  report(): BackendReport {
    const r = loadAddon();
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
    const r = loadAddon();
    if ('errors' in r) throw new Error(`the native addon could not be loaded: ${r.errors.join('; ')}`);
    return new NativeEngine(r.addon, { threads: options.threads });
  },
};

registerProvider('native', () => nativeProvider);
