/**
 * Backend selection: which engines can run here, why the others cannot, and the choice for
 * `backend: 'auto' | 'js' | 'native' | 'cuda'`.
 */
import { AdampError } from '../errors';
import type { BackendName } from '../types';
import type { Engine } from './engine';
import { JsEngine } from './js/engine';
import { wasmKernelFailure } from './js/wasm';

/** Availability of one backend, with the reason when it cannot run. */
export interface BackendReport {
  name: BackendName;
  available: boolean;
  /** Why it is unavailable (every load failure, in order), or what it runs on. */
  reason: string;
  /** Extra facts (SIMD level, threads, device name, addon path...). */
  details?: Record<string, unknown>;
}

/** What a native module must provide to be selectable; implemented in `./native` and `./cuda`. */
export interface EngineProvider {
  report(): BackendReport;
  create(options: EngineOptions): Engine;
}

export interface EngineOptions {
  threads?: number;
  kind: 'adamp' | 'sgdp';
  /** CUDA: the device to run on. */
  device?: number;
  /** CUDA: a caller's cudaStream_t to queue on. */
  stream?: bigint;
}

const providers: Partial<Record<'native' | 'cuda', () => EngineProvider>> = {};

/** Registers the provider of a native backend (called by the modules that implement them). */
export function registerProvider(name: 'native' | 'cuda', provider: () => EngineProvider): void {
  providers[name] = provider;
}

function providerReport(name: 'native' | 'cuda'): BackendReport {
  const make = providers[name];
  if (!make) return { name, available: false, reason: `the ${name} backend is not part of this build` };
  try {
    return make().report();
  } catch (e) {
    return { name, available: false, reason: (e as Error).message };
  }
}

/**
 * Which backends can run on this machine and why the others cannot, best first.
 * The CLI prints it: `npx adamp info`.
 */
export function backends(): BackendReport[] {
  return [
    providerReport('cuda'),
    providerReport('native'),
    jsReport(),
  ];
}

/** The js backend: always available; says whether its WebAssembly SIMD kernel runs the steps, and why not. */
function jsReport(): BackendReport {
  const why = process.env.ADAMP_JS_WASM === '0' ? 'turned off by ADAMP_JS_WASM=0' : wasmKernelFailure();
  return why
    ? { name: 'js', available: true, reason: `pure TypeScript, single-threaded (WebAssembly SIMD kernel not used: ${why})` }
    : { name: 'js', available: true, reason: 'TypeScript with a WebAssembly SIMD kernel, single-threaded' };
}

/** Creates the engine for a requested backend; throws `ERR_ADAMP_BACKEND_UNAVAILABLE` with the reasons when it cannot run. */
export function createEngine(requested: 'auto' | BackendName, options: EngineOptions): Engine {
  if (options.threads !== undefined && (!Number.isInteger(options.threads) || options.threads < 1)) {
    throw new AdampError('ERR_ADAMP_INVALID_ARGUMENT', `config.threads must be a positive integer, got ${String(options.threads)}`);
  }
  switch (requested) {
    case 'js':
      return new JsEngine();
    case 'native':
    case 'cuda': {
      const report = providerReport(requested);
      if (!report.available) {
        throw new AdampError('ERR_ADAMP_BACKEND_UNAVAILABLE',
          `backend '${requested}' is not available: ${report.reason}\n` +
          `Run \`npx adamp info\` for every backend's status; use { backend: 'auto' } to fall back automatically.`);
      }
      return providers[requested]!().create(options);
    }
    case 'auto': {
      // Host Float32Array params: the CPU engines. (CUDA is chosen explicitly, or by the facade for device params.)
      if (providerReport('native').available) return providers.native!().create(options);
      return new JsEngine();
    }
    default:
      throw new AdampError('ERR_ADAMP_INVALID_ARGUMENT', `config.backend must be 'auto', 'js', 'native' or 'cuda', got ${JSON.stringify(requested)}`);
  }
}
