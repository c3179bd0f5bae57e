/**
 * TensorFlow.js backends for the adapter's tests: tfjs-backend-cpu always, tfjs-backend-wasm when
 * it can be loaded (it is a devDependency; ADAMP_TEST_TFJS_WASM=DIR points at another copy, which
 * must resolve the same @tensorflow/tfjs-core). A backend that cannot run is reported once with
 * its reason, as test/helpers/backends.ts does for adamp's own backends.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import type * as tfl from '@tensorflow/tfjs-layers';
import { availableBackends } from './backends';

export type TfjsBackendName = 'cpu' | 'wasm';

let wasm: { ok: true } | { ok: false; why: string } | null = null;

function loadWasm(): { ok: true } | { ok: false; why: string } {
  if (wasm) return wasm;
  const where = process.env.ADAMP_TEST_TFJS_WASM || '@tensorflow/tfjs-backend-wasm';
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    require(where);
    wasm = tf.findBackendFactory('wasm') ? { ok: true } : { ok: false, why: `${where} loaded but registered no 'wasm' backend with this @tensorflow/tfjs-core (another copy of tfjs-core?)` };
  } catch (e) {
    wasm = { ok: false, why: `cannot load ${where}: ${(e as Error).message.split('\n')[0]}` };
  }
  return wasm;
}

const reported = new Set<string>();

/** The tfjs backends the suite steps on: 'cpu', and 'wasm' when it loads (ADAMP_TEST_TFJS_BACKENDS=cpu,wasm requires them). */
export function tfjsBackends(): TfjsBackendName[] {
  const out: TfjsBackendName[] = ['cpu'];
  const w = loadWasm();
  if (w.ok) out.push('wasm');
  else if (!reported.has('wasm')) {
    reported.add('wasm');
    console.log(`[adamp tests] tfjs backend 'wasm' skipped: ${w.why}`);
  }
  const want = process.env.ADAMP_TEST_TFJS_BACKENDS;
  if (want) {
    const list = want.split(',').map((s) => s.trim()).filter(Boolean) as TfjsBackendName[];
    for (const b of list) if (!out.includes(b)) throw new Error(`ADAMP_TEST_TFJS_BACKENDS requires '${b}', which is not available`);
    return list;
  }
  return out;
}

/** Switches tfjs to `name` (the cpu backend's banner recommending tfjs-node kept out of the output). */
export async function useTfjsBackend(name: TfjsBackendName): Promise<void> {
  const warn = console.warn;
  console.warn = () => undefined;
  try {
    if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed`);
    await tf.ready();
    tf.tensor([0]).dispose();
  } finally {
    console.warn = warn;
  }
}

/** adamp's CPU backends the adapter can run on here ('js' always, 'native' when the addon loads). */
export function adampCpuBackends(): Array<'js' | 'native'> {
  return availableBackends().filter((b): b is 'js' | 'native' => b === 'js' || b === 'native');
}

/** Every (tfjs backend, adamp backend) pair. */
export function backendPairs(): Array<[TfjsBackendName, 'js' | 'native']> {
  return tfjsBackends().flatMap((t) => adampCpuBackends().map((a) => [t, a] as [TfjsBackendName, 'js' | 'native']));
}

/** Where a tensor's data lives now ('cpu', 'wasm', ...), from the engine's records. */
export function ownerOf(t: tf.Tensor): string | undefined {
  const info = (tf.engine().state as unknown as { tensorInfo: WeakMap<object, { backend: unknown }> }).tensorInfo.get(t.dataId as object);
  if (!info) return undefined;
  const engine = tf.engine() as unknown as { registry: Record<string, unknown> };
  return Object.keys(engine.registry).find((k) => engine.registry[k] === info.backend);
}

/** What `model.save(..., { includeOptimizer: true })` writes, kept in memory (tf.io.fromMemory loads it back). */
export async function artifactsOf(m: tfl.LayersModel): Promise<tf.io.ModelArtifacts> {
  let out: tf.io.ModelArtifacts | undefined;
  await m.save(tf.io.withSaveHandler(async (a) => {
    out = a;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }), { includeOptimizer: true });
  return out!;
}
