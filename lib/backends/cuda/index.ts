/**
 * Registers the CUDA backend with the backend selection (import for the side effect).
 * Available when the addon loads, was built with the CUDA engine, and the runtime finds a device.
 */
import { loadAddon } from '../../binding/load';
import { registerProvider, type BackendReport, type EngineProvider } from '../select';
import { CUDA_FUNCTIONS, hasCuda } from './binding';
import { CudaEngine } from './engine';

export { CudaEngine } from './engine';
export type { CudaEngineOptions } from './engine';
export { hasCuda } from './binding';
export type { CudaAddon, CudaConfig, CudaKind, CudaStatus } from './binding';

export const cudaProvider: EngineProvider = {
  report(): BackendReport {
    const r = loadAddon();
    if ('errors' in r) {
      return { name: 'cuda', available: false, reason: `the native addon could not be loaded: ${r.errors.join('; ')}` };
    }
    if (!hasCuda(r.addon)) {
      const a = r.addon as unknown as Record<string, unknown>;
      const missing = CUDA_FUNCTIONS.filter((k) => typeof a[k] !== 'function');
      if (missing.length < CUDA_FUNCTIONS.length) {
        return {
          name: 'cuda', available: false,
          reason: `this build of the addon predates this version of the package (no ${missing.join(', ')}); rebuild it: npm run build:native:cuda`,
          details: { path: r.path },
        };
      }
      return {
        name: 'cuda', available: false,
        reason: 'this build of the addon has no CUDA engine (built without nvcc, or with ADAMP_WITH_CUDA=OFF); ' +
          'rebuild with the CUDA toolkit installed: npx cmake-js rebuild --CDADAMP_WITH_CUDA=ON',
        details: { path: r.path },
      };
    }
    const st = r.addon.cudaStatus();
    const versions = { runtime: st.runtimeVersion, driver: st.driverVersion, cudaError: st.code };
    if (!st.available) return { name: 'cuda', available: false, reason: st.reason, details: { path: r.path, ...versions } };
    const d = st.devices[0];
    return {
      name: 'cuda', available: true,
      reason: `fused CUDA kernels on ${d.name} (compute capability ${d.computeCapability})`,
      details: { path: r.path, devices: st.devices, ...versions },
    };
  },
  create(options) {
    const r = loadAddon();
    if ('errors' in r || !hasCuda(r.addon)) throw new Error('the CUDA backend is not available: ' + cudaProvider.report().reason);
    return new CudaEngine(r.addon, { kind: options.kind, config: { device: options.device ?? 0 }, stream: options.stream });
  },
};

registerProvider('cuda', () => cudaProvider);
