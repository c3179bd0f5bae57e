/**
 * Whether the CUDA backend can run here, and why not: the report `backends()` prints and the
 * addon for device tensors. A leaf: it loads the addon and nothing of the engines, so importing
 * `DeviceTensor` stays cheap.
 */
import { loadAddon } from '../../binding/load';
import { guardAddon } from '../../binding/errors';
import type { BackendReport } from '../engine';
import { CUDA_FUNCTIONS, hasCuda, type CudaAddon } from './binding';

/** The CUDA backend's availability report. */
export function cudaReport(): BackendReport {
  return reportOf().report;
}

/** The addon with its CUDA functions when the backend can run, else the report saying why not. */
export function cudaAddonOrReport(): { addon: CudaAddon; report: BackendReport } | { report: BackendReport } {
  return reportOf();
}

function reportOf(): { addon: CudaAddon; report: BackendReport } | { report: BackendReport } {
  const r = loadAddon();
  if ('errors' in r) {
    return { report: { name: 'cuda', available: false, reason: `the native addon could not be loaded: ${r.errors.join('; ')}` } };
  }
  if (!hasCuda(r.addon)) {
    const a = r.addon as unknown as Record<string, unknown>;
    const missing = CUDA_FUNCTIONS.filter((k) => typeof a[k] !== 'function');
    if (missing.length < CUDA_FUNCTIONS.length) {
      return {
        report: {
          name: 'cuda', available: false,
          reason: `this build of the addon predates this version of the package (no ${missing.join(', ')}); rebuild it: npm run build:native:cuda`,
          details: { path: r.path },
        },
      };
    }
    return {
      report: {
        name: 'cuda', available: false,
        reason: 'this build of the addon has no CUDA engine (built without nvcc, or with ADAMP_WITH_CUDA=OFF); ' +
          'with the CUDA toolkit and cmake-js installed: ADAMP_FORCE_BUILD=1 ADAMP_WITH_CUDA=1 npm rebuild adamp (in a clone: npm run build:native:cuda)',
        details: { path: r.path },
      },
    };
  }
  const st = r.addon.cudaStatus();
  const versions = { runtime: st.runtimeVersion, driver: st.driverVersion, cudaError: st.code };
  if (!st.available) return { report: { name: 'cuda', available: false, reason: st.reason, details: { path: r.path, ...versions } } };
  const d = st.devices[0];
  return {
    addon: guarded(r.addon),
    report: {
      name: 'cuda', available: true,
      reason: `fused CUDA kernels on ${d.name} (compute capability ${d.computeCapability})`,
      details: { path: r.path, devices: st.devices, ...versions },
    },
  };
}

const guardedViews = new WeakMap<CudaAddon, CudaAddon>();
/** The addon's CUDA functions throwing AdampErrors (one view per addon). */
function guarded(addon: CudaAddon): CudaAddon {
  let g = guardedViews.get(addon);
  if (g === undefined) guardedViews.set(addon, (g = guardAddon(addon, CUDA_FUNCTIONS, 'ERR_ADAMP_CUDA')));
  return g;
}
