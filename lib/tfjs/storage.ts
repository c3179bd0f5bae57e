/**
 * Where a step reads the gradients and writes the weights: on the TensorFlow.js backend's own
 * storage when the backend exposes it, else through copies.
 *
 * - tfjs-backend-cpu keeps each tensor's values in a typed array (`backend.data.get(dataId)
 *   .values`). Gradients are read there. A variable's new values are computed into a fresh copy
 *   of its array that then replaces it in the backend's record: the old array is never written,
 *   because tfjs hands it out to others without copies (`dataSync()` returns it, a contiguous
 *   `slice` of the variable is a subarray of it, `tf.tensor(array)` keeps the caller's array).
 * - tfjs-backend-wasm keeps them on its WebAssembly heap (`backend.dataIdMap.get(dataId)
 *   .memoryOffset`); `dataSync()` and every kernel copy out of it. The step runs on views of the
 *   heap, made right before the core steps (a heap growth detaches views, and nothing allocates
 *   in between), and the variable's C++ tensor id is renewed afterwards, which drops the XNNPACK
 *   operators (conv, matmul) cached with packed copies of its old values, as `assign` does.
 * - Either way only a variable whose data no other tensor shares (`refCount` 1: no clone, no
 *   reshape, no tensor it was assigned from is alive) is stepped there, and only when it lives on
 *   the engine's current backend (reference counts are kept by the current backend). Every other
 *   case, and every other backend (webgl, webgpu, tfjs-node), takes the copying path: the values
 *   read back with `dataSync()`, the result uploaded with `variable.assign`.
 */
import * as tf from '@tensorflow/tfjs-core';

/** What one variable's step works on. */
export interface StepTarget {
  /** Filled by `open()` (after every allocation of the step), valid until `commit()`: the array the core steps in place. */
  p: Float32Array | null;
  /** The gradient's values, read-only (the backend's own or a copy); set by `open()`. */
  g: Float32Array | null;
  /** Makes the views (the wasm heap) or the copies the core steps. */
  open(): void;
  /** After the core stepped `p`: makes it the variable's value. */
  commit(): void;
  /** `'cpu'` or `'wasm'` (the backend's storage) or `'copy'`. */
  readonly path: 'cpu' | 'wasm' | 'copy';
}

// The parts of the backends' internals used here, checked at run time (they are not public API).
interface CpuRecord { values?: unknown; dtype?: string; complexTensorInfos?: unknown; refCount?: number }
interface CpuBackend {
  data: { has(id: object): boolean; get(id: object): CpuRecord };
  refCount(id: object): number;
}
interface WasmRecord { id: number; memoryOffset: number | null; dtype: string; shape: number[]; refCount: number }
interface WasmBackend {
  dataIdMap: { has(id: object): boolean; get(id: object): WasmRecord };
  dataIdNextNumber: number;
  wasm: { HEAPU8: Uint8Array; tfjs: { registerTensor(id: number, size: number, offset: number): void; disposeData(id: number): void } };
  refCount(id: object): number;
}

type Kind = { kind: 'cpu'; backend: CpuBackend } | { kind: 'wasm'; backend: WasmBackend } | null;

/** The current backend, when it is tfjs-backend-cpu or tfjs-backend-wasm (by name, and by the internals used here). */
export function currentStorage(): Kind {
  const engine = tf.engine();
  const name = engine.backendName;
  if (name !== 'cpu' && name !== 'wasm') return null;
  const b = engine.backend as unknown as Record<string, unknown>;
  if (b === null || typeof b !== 'object' || typeof b.refCount !== 'function') return null;
  const map = b.dataIdMap as { has?: unknown; get?: unknown } | undefined;
  const wasm = b.wasm as { HEAPU8?: unknown; tfjs?: { registerTensor?: unknown; disposeData?: unknown } } | undefined;
  if (map && typeof map.has === 'function' && typeof map.get === 'function' && wasm && wasm.HEAPU8 instanceof Uint8Array &&
    typeof wasm.tfjs?.registerTensor === 'function' && typeof wasm.tfjs?.disposeData === 'function' && typeof b.dataIdNextNumber === 'number') {
    return name === 'wasm' ? { kind: 'wasm', backend: b as unknown as WasmBackend } : null;
  }
  const data = b.data as { has?: unknown; get?: unknown } | undefined;
  if (name === 'cpu' && data && typeof data.has === 'function' && typeof data.get === 'function' && !map) {
    return { kind: 'cpu', backend: b as unknown as CpuBackend };
  }
  return null;
}

/** Whether `t`'s data lives on `backend` (the engine's record of where each data id is). */
function livesOn(t: tf.Tensor, backend: unknown): boolean {
  const info = (tf.engine().state as unknown as { tensorInfo: WeakMap<object, { backend: unknown }> }).tensorInfo.get(t.dataId as object);
  return info !== undefined && info.backend === backend;
}

function cpuValues(s: CpuBackend, t: tf.Tensor, numel: number): Float32Array | null {
  const id = t.dataId as object;
  if (!s.data.has(id)) return null; // get() would move the data here
  const r = s.data.get(id);
  return r.values instanceof Float32Array && r.values.length === numel && r.complexTensorInfos == null ? r.values : null;
}

function wasmRecord(s: WasmBackend, t: tf.Tensor, numel: number): WasmRecord | null {
  const id = t.dataId as object;
  if (!s.dataIdMap.has(id)) return null;
  const r = s.dataIdMap.get(id);
  if (r.dtype !== 'float32' || typeof r.memoryOffset !== 'number' || r.memoryOffset % 4 !== 0 || tf.util.sizeFromShape(r.shape) !== numel) return null;
  return r;
}

function heapView(s: WasmBackend, r: WasmRecord, numel: number): Float32Array {
  return new Float32Array(s.wasm.HEAPU8.buffer, r.memoryOffset as number, numel);
}

/** The gradient's values for reading: the backend's own array when possible, else a copy. */
function gradientReader(storage: Kind, grad: tf.Tensor, numel: number, avoid: WasmRecord | null): () => Float32Array {
  if (storage && grad.dtype === 'float32' && livesOn(grad, storage.backend)) {
    if (storage.kind === 'cpu') {
      const v = cpuValues(storage.backend, grad, numel);
      if (v) return () => v;
    } else {
      const r = wasmRecord(storage.backend, grad, numel);
      // The gradient must not be the memory being stepped (applyGradients({ [v.name]: v })).
      if (r && !(avoid && overlaps(r, avoid, numel))) return () => heapView(storage.backend, r, numel);
    }
  }
  const data = grad.dataSync();
  const copy = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
  return () => copy;
}

function overlaps(a: WasmRecord, b: WasmRecord, numel: number): boolean {
  const a0 = a.memoryOffset as number, b0 = b.memoryOffset as number;
  return a0 < b0 + 4 * numel && b0 < a0 + 4 * numel;
}

/**
 * The step target of one variable and its gradient. Reads that may allocate on the backend
 * (`dataSync()` of tensors elsewhere) happen here; `open()` allocates nothing on the backend.
 * `inPlace: false` forces the copying path.
 */
export function stepTarget(variable: tf.Variable, grad: tf.Tensor, inPlace: boolean): StepTarget {
  const numel = variable.size;
  const storage = inPlace ? currentStorage() : null;
  const direct = storage !== null && livesOn(variable, storage.backend) && storage.backend.refCount(variable.dataId as object) === 1;
  if (direct && storage.kind === 'cpu') {
    const values = cpuValues(storage.backend, variable, numel);
    if (values) {
      const g = gradientReader(storage, grad, numel, null);
      const t: StepTarget = {
        path: 'cpu', p: null, g: null,
        open() { t.p = values.slice(); t.g = g(); },
        commit() {
          // Only the variable holds this data id (refCount 1): replacing its array changes no other tensor.
          storage.backend.data.get(variable.dataId as object).values = t.p;
          t.p = null;
          t.g = null;
        },
      };
      return t;
    }
  } else if (direct && storage.kind === 'wasm') {
    const s = storage.backend;
    const r = wasmRecord(s, variable, numel);
    if (r) {
      const g = gradientReader(storage, grad, numel, r);
      const t: StepTarget = {
        path: 'wasm', p: null, g: null,
        open() { t.p = heapView(s, r, numel); t.g = g(); },
        commit() {
          if (t.p !== null && t.p.length !== numel) throw new Error('adamp/tfjs: the wasm heap was detached during the step (internal error)');
          // A new C++ tensor id for the same memory: kernels that cached a packed copy of the old
          // values under the old id (XNNPACK conv and fully-connected operators) drop them.
          s.wasm.tfjs.disposeData(r.id);
          const id = s.dataIdNextNumber++;
          r.id = id;
          s.wasm.tfjs.registerTensor(id, numel, r.memoryOffset as number);
          t.p = null;
          t.g = null;
        },
      };
      return t;
    }
  }
  // The copying path. dataSync() may return the backend's own array (cpu): the step writes a copy.
  const read = variable.dataSync();
  const p0 = read instanceof Float32Array ? read.slice() : Float32Array.from(read as ArrayLike<number>);
  const g = gradientReader(null, grad, numel, null);
  const t: StepTarget = {
    path: 'copy', p: null, g: null,
    open() { t.p = p0; t.g = g(); },
    commit() {
      // tf.tensor keeps the array it is given (cpu): p0 is not used again here.
      const value = tf.tensor(t.p as Float32Array, variable.shape, 'float32');
      variable.assign(value);
      value.dispose();
      t.p = null;
      t.g = null;
    },
  };
  return t;
}
