/**
 * Backend selection: which engines can run here, why the others cannot, and the choice for
 * `backend: 'auto' | 'js' | 'native' | 'cuda'`.
 */
import { AdampError, invalid } from '../errors';
import { describe } from '../core/describe';
import { readEnv } from '../core/env';
import { warnNativeFallback } from '../binding/load';
import { isPlainObject, rejectUnknown } from '../optim/options';
import type { BackendName, OptimizerConfig } from '../types';
import type { BackendReport, Engine } from './engine';

export type { BackendReport } from './engine';
import { JsEngine } from './js/engine';
import { wasmKernelFailure } from './js/wasm';

/** What a native module must provide to be selectable; implemented in `./native` and `./cuda`. */
export interface EngineProvider {
  report(): BackendReport;
  create(options: EngineOptions): Engine;
}

export interface EngineOptions {
  threads?: number;
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
  const why = readEnv('ADAMP_JS_WASM') === '0' ? 'turned off by ADAMP_JS_WASM=0' : wasmKernelFailure();
  return why
    ? { name: 'js', available: true, reason: `pure TypeScript, single-threaded (WebAssembly SIMD kernel not used: ${why})` }
    : { name: 'js', available: true, reason: 'TypeScript with a WebAssembly SIMD kernel, single-threaded' };
}

/** Creates the engine for a requested backend; throws `ERR_ADAMP_BACKEND_UNAVAILABLE` with the reasons when it cannot run. */
export function createEngine(requested: 'auto' | BackendName, options: EngineOptions): Engine {
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
      warnNativeFallback(); // once per process, when the addon did not load (ADAMP_QUIET silences it)
      return new JsEngine();
    }
    default:
      throw invalid(`config.backend must be 'auto', 'js', 'native' or 'cuda', got ${describe(requested)}`);
  }
}

/** Most worker threads a native step may ask for. */
export const MAX_THREADS = 256;

/** A checked `OptimizerConfig` with its defaults. */
export interface ParsedConfig {
  backend: 'auto' | BackendName;
  threads?: number;
  stream?: bigint;
  device?: number;
  diagnostics: 'decisions' | 'full';
  masterWeights: boolean;
  rounding: 'nearest' | 'stochastic';
  seed: number;
}

const CONFIG_KEYS = ['backend', 'threads', 'stream', 'device', 'diagnostics', 'masterWeights', 'rounding', 'seed'] as const satisfies readonly (keyof OptimizerConfig)[];

/** Checks an optimizer's `config` (keys as strictly as options: a typo is an error with a hint). */
export function parseConfig(config: unknown): ParsedConfig {
  if (config === undefined) return { backend: 'auto', diagnostics: 'decisions', masterWeights: true, rounding: 'nearest', seed: 0 };
  if (!isPlainObject(config)) throw invalid(`config must be a plain object like { backend: 'auto' }, got ${describe(config)}`);
  rejectUnknown(config, CONFIG_KEYS, 'config', 'a config key', false);
  const c = config as OptimizerConfig;
  const backend = c.backend === undefined ? 'auto' : c.backend; // null is refused, as for options
  if (!['auto', 'js', 'native', 'cuda'].includes(backend as string)) {
    throw invalid(`config.backend must be 'auto', 'js', 'native' or 'cuda', got ${describe(backend)}`);
  }
  if (c.threads !== undefined && (!Number.isInteger(c.threads) || c.threads < 1 || c.threads > MAX_THREADS)) {
    throw invalid(`config.threads must be an integer in [1, ${MAX_THREADS}], got ${describe(c.threads)}`);
  }
  if (c.stream !== undefined && typeof c.stream !== 'bigint') {
    throw invalid(`config.stream must be a cudaStream_t as a bigint, got ${describe(c.stream)}`);
  }
  if (c.device !== undefined && (!Number.isSafeInteger(c.device) || c.device < 0)) {
    throw invalid(`config.device must be a non-negative integer, got ${describe(c.device)}`);
  }
  const diagnostics = c.diagnostics === undefined ? 'decisions' : c.diagnostics;
  if (diagnostics !== 'decisions' && diagnostics !== 'full') {
    throw invalid(`config.diagnostics must be 'decisions' or 'full', got ${describe(diagnostics)}`);
  }
  const masterWeights = c.masterWeights ?? true;
  if (typeof masterWeights !== 'boolean') throw invalid(`config.masterWeights must be a boolean, got ${describe(masterWeights)}`);
  const rounding = c.rounding ?? 'nearest';
  if (rounding !== 'nearest' && rounding !== 'stochastic') throw invalid(`config.rounding must be 'nearest' or 'stochastic', got ${describe(rounding)}`);
  const seed = c.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff) throw invalid(`config.seed must be an integer in [0, 2^32 - 1], got ${describe(c.seed)}`);
  return { backend, threads: c.threads, stream: c.stream, device: c.device, diagnostics, masterWeights, rounding, seed };
}
