/**
 * Registers the CUDA backend with the backend selection (import for the side effect).
 * Available when the addon loads, was built with the CUDA engine, and the runtime finds a device.
 */
import { AdampError } from '../../errors';
import { registerProvider, type EngineProvider } from '../select';
import { cudaAddonOrReport, cudaReport } from './availability';
import { CudaEngine } from './engine';

export { CudaEngine } from './engine';
export type { CudaEngineOptions } from './engine';
export { hasCuda } from './binding';
export type { CudaAddon, CudaConfig, CudaKind, CudaStatus } from './binding';

export const cudaProvider: EngineProvider = {
  report: cudaReport,
  create(options) {
    const r = cudaAddonOrReport();
    if (!('addon' in r)) throw new AdampError('ERR_ADAMP_BACKEND_UNAVAILABLE', `the CUDA backend is not available: ${r.report.reason}`);
    return new CudaEngine(r.addon, { config: { device: options.device ?? 0 }, stream: options.stream });
  },
};

registerProvider('cuda', () => cudaProvider);
